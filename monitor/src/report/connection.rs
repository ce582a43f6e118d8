//! Connection records as JSON with ECS field names (nested objects, as Elastic ingests them).
//!
//! Only what is known goes in: process details that failed the identity checks in `process`
//! are left out, never guessed.
#[cfg(test)]
use serde_json::Value;

use super::record::{
    ClientHelloFacts, Container, Destination, EcsVersion, Endpoint, Event, Group, Network, Parent,
    Process, Record, Relaywatch, Source, Thread, Tls, TlsClient, User,
};
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
    /// The connection record (an `event`, ECS field names when rendered).
    pub fn to_record(&self) -> Record {
        let o = self.observation;
        let e = &o.raw;
        let details = self.process;
        let cgroup = details.and_then(|p| p.cgroup.clone());
        let naming = self.naming;
        let proxy = naming.and_then(|n| n.proxy.as_ref());
        // Through a proxy, the destination is the proxy's target; the proxy is kept apart.
        let mut destination = match proxy {
            Some(p) => Destination {
                ip: p
                    .host
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| ip.to_string()),
                port: Some(p.port),
                ..Destination::default()
            },
            None => Destination {
                ip: Some(o.destination.to_string()),
                port: Some(o.port),
                ..Destination::default()
            },
        };
        destination.domain = naming
            .and_then(|n| n.domain.clone())
            .filter(|d| d.parse::<std::net::IpAddr>().is_err());
        let hello = naming.and_then(|n| n.tls.as_ref());
        let tls = hello
            .and_then(|t| t.server_name.clone())
            .map(|server_name| Tls {
                client: TlsClient {
                    server_name: Some(server_name),
                },
            });
        let hello = hello.map(|t| ClientHelloFacts {
            ja4: t.ja4.clone(),
            alpn: t.alpn.clone(),
        });
        Record {
            timestamp: clock::rfc3339(clock::wall_time(e.ts_boot_ns)),
            ecs: EcsVersion::default(),
            event: Event {
                kind: "event".into(),
                category: vec!["network".into()],
                kind_type: vec!["connection".into(), "start".into()],
                action: match o.hook {
                    Hook::Connect => "connect",
                    Hook::Sendmsg => "sendmsg",
                }
                .into(),
                module: "relaywatch".into(),
                dataset: "relaywatch.connection".into(),
                ..Event::default()
            },
            network: Network {
                transport: o.transport.as_str().into(),
                ip_version: if o.destination.is_ipv4() {
                    "ipv4"
                } else {
                    "ipv6"
                }
                .into(),
                direction: "egress".into(),
            },
            destination,
            source: Source::default(),
            process: Process {
                pid: e.tgid,
                thread: Thread {
                    id: e.tid,
                    name: o.comm.clone(),
                },
                name: details
                    .and_then(|p| p.name.clone())
                    .unwrap_or_else(|| o.comm.clone()),
                executable: details.and_then(|p| p.executable.clone()),
                args_count: details.and_then(|p| p.args.as_ref()).map(Vec::len),
                args: details.and_then(|p| p.args.clone()),
                parent: details.and_then(|p| p.parent_pid).map(|pid| Parent {
                    pid: Some(pid),
                    executable: None,
                }),
                command_line: None,
            },
            user: User {
                id: e.uid.to_string(),
                name: self.user_name.map(str::to_owned),
            },
            group: Group {
                id: e.gid.to_string(),
            },
            tls,
            container: cgroup
                .as_deref()
                .and_then(crate::process::container_id)
                .map(|id| Container { id: id.to_owned() }),
            rule: None,
            threat: None,
            host: None,
            relaywatch: Relaywatch {
                socket_cookie: e.cookie,
                cgroup_id: e.cgroup_id,
                systemd_unit: cgroup
                    .as_deref()
                    .and_then(crate::process::systemd_unit)
                    .map(str::to_owned),
                cgroup,
                repeat_count: self.repeat_count,
                // process.args holds only the start of a longer command line (read in the
                // kernel at exec; the process was gone before /proc could give the rest).
                args_truncated: details.is_some_and(|p| p.args_truncated),
                name_source: naming
                    .map_or(NameSource::None, |n| n.source)
                    .as_str()
                    .into(),
                tls: hello,
                proxy: proxy.map(|_| Endpoint {
                    ip: o.destination.to_string(),
                    port: o.port,
                }),
                ..Relaywatch::default()
            },
            message: None,
        }
    }

    #[cfg(test)]
    fn to_ecs(&self) -> Value {
        self.to_record().to_ecs()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::ConnectEventBuilder;

    fn observation() -> Observation {
        ConnectEventBuilder::tcp_v4(4242, [9, 9, 9, 9], 53)
            .udp_sendmsg()
            .thread(4243)
            .user(1000, 1000)
            .comm("resolve")
            .at(clock::boot_ns())
            .observation()
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
            v["tls"],
            json!({"client": {"server_name": "api.openai.com"}})
        );
        assert_eq!(
            v["relaywatch"]["tls"],
            json!({"ja4": "t13d1516h2_x_y", "alpn": ["h2"]})
        );
        assert_eq!(v["ecs"]["version"], "9.4.0");
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
