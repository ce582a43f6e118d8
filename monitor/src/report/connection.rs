//! Connection records as JSON with ECS field names (nested objects, as Elastic ingests them).
//!
//! Only what is known goes in: process details that failed the identity checks in `process`
//! are left out, never guessed.
use serde_json::{Map, Value, json};

use crate::{
    clock,
    kernel::decode::{Hook, Observation},
    naming::model::{NameSource, Naming},
    process::ProcessDetails,
};

/// Everything known about one reported connection.
pub struct ConnectionRecord<'a> {
    pub observation: &'a Observation,
    pub process: Option<&'a ProcessDetails>,
    pub user_name: Option<&'a str>,
    /// For unconnected UDP: datagrams sent in the repeat window this record stands for.
    pub repeat_count: Option<u64>,
    /// The destination's name and its evidence.
    pub naming: Option<&'a Naming>,
}

impl ConnectionRecord<'_> {
    pub fn to_ecs(&self) -> Value {
        let o = self.observation;
        let e = &o.raw;
        let network_type = if o.destination.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        };
        let action = match o.hook {
            Hook::Connect => "connect",
            Hook::Sendmsg => "sendmsg",
        };

        let mut process = Map::new();
        process.insert("pid".into(), json!(e.tgid));
        process.insert("thread".into(), json!({ "id": e.tid, "name": o.comm }));
        let name = self
            .process
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| o.comm.clone());
        process.insert("name".into(), json!(name));
        if let Some(p) = self.process {
            if let Some(exe) = &p.executable {
                process.insert("executable".into(), json!(exe));
            }
            if let Some(args) = &p.args {
                process.insert("args".into(), json!(args));
                process.insert("args_count".into(), json!(args.len()));
            }
            if let Some(ppid) = p.parent_pid {
                process.insert("parent".into(), json!({ "pid": ppid }));
            }
        }
        let cgroup = self.process.and_then(|p| p.cgroup.as_deref());

        let mut user = Map::new();
        user.insert("id".into(), json!(e.uid.to_string()));
        if let Some(n) = self.user_name {
            user.insert("name".into(), json!(n));
        }

        let mut relaywatch = Map::new();
        relaywatch.insert("socket_cookie".into(), json!(e.cookie));
        relaywatch.insert("cgroup_id".into(), json!(e.cgroup_id));
        if let Some(path) = cgroup {
            relaywatch.insert("cgroup".into(), json!(path));
            if let Some(unit) = crate::process::systemd_unit(path) {
                relaywatch.insert("systemd_unit".into(), json!(unit));
            }
        }
        if let Some(n) = self.repeat_count {
            relaywatch.insert("repeat_count".into(), json!(n));
        }
        if self.process.is_some_and(|p| p.args_truncated) {
            // process.args holds only the start of a longer command line (read in the kernel
            // at exec; the process was gone before /proc could give the rest).
            relaywatch.insert("args_truncated".into(), json!(true));
        }

        let mut destination = Map::new();
        destination.insert("ip".into(), json!(o.destination.to_string()));
        destination.insert("port".into(), json!(o.port));
        let source = self.naming.map_or(NameSource::None, |n| n.source);
        relaywatch.insert("name_source".into(), json!(source.as_str()));
        let mut tls = None;
        if let Some(n) = self.naming {
            if let Some(p) = &n.proxy {
                // Through a proxy, the destination is the proxy's target; the proxy is kept apart.
                relaywatch.insert(
                    "proxy".into(),
                    json!({ "ip": o.destination.to_string(), "port": o.port }),
                );
                destination.clear();
                if let Ok(ip) = p.host.parse::<std::net::IpAddr>() {
                    destination.insert("ip".into(), json!(ip.to_string()));
                }
                destination.insert("port".into(), json!(p.port));
            }
            if let Some(d) = &n.domain
                && d.parse::<std::net::IpAddr>().is_err()
            {
                destination.insert("domain".into(), json!(d));
            }
            if let Some(t) = &n.tls {
                let mut client = Map::new();
                if let Some(sn) = &t.server_name {
                    client.insert("server_name".into(), json!(sn));
                }
                client.insert("ja4".into(), json!(t.ja4));
                client.insert("alpn".into(), json!(t.alpn));
                tls = Some(json!({ "client": client }));
            }
        }

        let mut doc = json!({
            "@timestamp": clock::rfc3339(clock::wall_time(e.ts_boot_ns)),
            "event": {
                "kind": "event",
                "category": ["network"],
                "type": ["connection", "start"],
                "action": action,
                "module": "relaywatch",
                "dataset": "relaywatch.connection",
            },
            "network": {
                "transport": o.transport.as_str(),
                "type": network_type,
                "direction": "egress",
            },
            "destination": destination,
            "process": process,
            "user": user,
            "group": { "id": e.gid.to_string() },
            "relaywatch": relaywatch,
        });
        if let Some(tls) = tls {
            doc["tls"] = tls;
        }
        if let Some(id) = cgroup.and_then(crate::process::container_id) {
            doc["container"] = json!({ "id": id });
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{ConnectEvent, FAMILY_IPV4, HOOK_SENDMSG, PROTO_UDP};

    use super::*;
    use crate::kernel::decode::decode;

    fn observation() -> Observation {
        let mut e = ConnectEvent::zeroed();
        e.tgid = 4242;
        e.tid = 4243;
        e.uid = 1000;
        e.gid = 1000;
        e.family = FAMILY_IPV4;
        e.protocol = PROTO_UDP;
        e.hook = HOOK_SENDMSG;
        e.dport = 53;
        e.daddr[..4].copy_from_slice(&[9, 9, 9, 9]);
        e.comm[..7].copy_from_slice(b"resolve");
        e.ts_boot_ns = clock::boot_ns();
        let p = (&e as *const ConnectEvent).cast::<u8>();
        match decode(unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<ConnectEvent>()) })
            .unwrap()
        {
            crate::kernel::decode::Record::Connect(o) => o,
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn full_record_has_ecs_fields() {
        let o = observation();
        let details = ProcessDetails {
            executable: Some("/usr/bin/resolve".into()),
            args: Some(vec!["resolve".into(), "-x".into()]),
            parent_pid: Some(1),
            name: Some("resolve".into()),
            cgroup: Some("/system.slice/docker-4f5c2e0b9d1a7c3e8f6b2a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e.scope".into()),
            args_truncated: false,
        };
        let v = ConnectionRecord {
            observation: &o,
            process: Some(&details),
            user_name: Some("alice"),
            repeat_count: Some(7),
            naming: None,
        }
        .to_ecs();
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["type"], json!(["connection", "start"]));
        assert_eq!(
            v["network"],
            json!({"transport": "udp", "type": "ipv4", "direction": "egress"})
        );
        assert_eq!(v["destination"], json!({"ip": "9.9.9.9", "port": 53}));
        assert_eq!(v["process"]["pid"], 4242);
        assert_eq!(v["process"]["thread"]["id"], 4243);
        assert_eq!(v["process"]["executable"], "/usr/bin/resolve");
        assert_eq!(v["process"]["args"], json!(["resolve", "-x"]));
        assert_eq!(v["process"]["parent"]["pid"], 1);
        assert_eq!(v["user"], json!({"id": "1000", "name": "alice"}));
        assert_eq!(v["relaywatch"]["repeat_count"], 7);
        assert!(
            v["relaywatch"].get("args_truncated").is_none(),
            "whole command line: no marker"
        );
        let cut = ProcessDetails {
            args_truncated: true,
            ..details.clone()
        };
        let v2 = ConnectionRecord {
            observation: &o,
            process: Some(&cut),
            user_name: None,
            repeat_count: None,
            naming: None,
        }
        .to_ecs();
        assert_eq!(v2["relaywatch"]["args_truncated"], true);
        assert_eq!(
            v["container"]["id"],
            "4f5c2e0b9d1a7c3e8f6b2a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e"
        );
        assert!(
            v["relaywatch"]["systemd_unit"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker-"))
        );
        assert_eq!(v["relaywatch"]["name_source"], "none");
        assert!(v.get("tls").is_none());
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn proxied_tls_record_names_the_target_and_keeps_the_proxy_apart() {
        use crate::naming::model::{ProxyTarget, TlsEvidence};
        let o = observation();
        let naming = Naming {
            domain: Some("api.openai.com".into()),
            source: NameSource::Sni,
            tls: Some(TlsEvidence {
                server_name: Some("api.openai.com".into()),
                ja4: "t13d1516h2_x_y".into(),
                alpn: vec!["h2".into()],
            }),
            proxy: Some(ProxyTarget {
                host: "api.openai.com".into(),
                port: 443,
            }),
        };
        let v = ConnectionRecord {
            observation: &o,
            process: None,
            user_name: None,
            repeat_count: None,
            naming: Some(&naming),
        }
        .to_ecs();
        assert_eq!(
            v["destination"],
            json!({"domain": "api.openai.com", "port": 443})
        );
        assert_eq!(
            v["relaywatch"]["proxy"],
            json!({"ip": "9.9.9.9", "port": 53})
        );
        assert_eq!(v["relaywatch"]["name_source"], "sni");
        assert_eq!(
            v["tls"]["client"],
            json!({"server_name": "api.openai.com", "ja4": "t13d1516h2_x_y", "alpn": ["h2"]})
        );
    }

    #[test]
    fn socks_target_ip_becomes_destination_ip() {
        use crate::naming::model::ProxyTarget;
        let o = observation();
        let naming = Naming {
            domain: Some("203.0.113.9".into()),
            source: NameSource::ProxyTarget,
            tls: None,
            proxy: Some(ProxyTarget {
                host: "203.0.113.9".into(),
                port: 8443,
            }),
        };
        let v = ConnectionRecord {
            observation: &o,
            process: None,
            user_name: None,
            repeat_count: None,
            naming: Some(&naming),
        }
        .to_ecs();
        assert_eq!(v["destination"], json!({"ip": "203.0.113.9", "port": 8443}));
    }

    #[test]
    fn gone_process_leaves_fields_out() {
        let o = observation();
        let v = ConnectionRecord {
            observation: &o,
            process: None,
            user_name: None,
            repeat_count: None,
            naming: None,
        }
        .to_ecs();
        assert_eq!(
            v["process"]["name"], "resolve",
            "name falls back to the kernel's comm"
        );
        for absent in ["executable", "args", "parent"] {
            assert!(
                v["process"].get(absent).is_none(),
                "{absent} must be left out"
            );
        }
        assert!(v["user"].get("name").is_none());
        assert!(v["relaywatch"].get("repeat_count").is_none());
    }
}
