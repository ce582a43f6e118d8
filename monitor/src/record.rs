//! Connection records as JSON with ECS field names (nested objects, as Elastic ingests them).
//!
//! Only what is known goes in: process details that failed the identity checks in `process`
//! are left out, never guessed.
use serde_json::{Map, Value, json};

use crate::{
    clock,
    ingest::{Hook, Observation},
    process::ProcessDetails,
};

/// Everything known about one reported connection.
pub struct ConnectionRecord<'a> {
    pub observation: &'a Observation,
    pub process: Option<&'a ProcessDetails>,
    pub user_name: Option<&'a str>,
    /// For unconnected UDP: datagrams sent in the repeat window this record stands for.
    pub repeat_count: Option<u64>,
}

impl ConnectionRecord<'_> {
    pub fn to_ecs(&self) -> Value {
        let o = self.observation;
        let e = &o.raw;
        let network_type = if o.destination.is_ipv4() { "ipv4" } else { "ipv6" };
        let action = match o.hook {
            Hook::Connect => "connect",
            Hook::Sendmsg => "sendmsg",
        };

        let mut process = Map::new();
        process.insert("pid".into(), json!(e.tgid));
        process.insert("thread".into(), json!({ "id": e.tid, "name": o.comm }));
        let name = self.process.and_then(|p| p.name.clone()).unwrap_or_else(|| o.comm.clone());
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

        let mut user = Map::new();
        user.insert("id".into(), json!(e.uid.to_string()));
        if let Some(n) = self.user_name {
            user.insert("name".into(), json!(n));
        }

        let mut relaywatch = Map::new();
        relaywatch.insert("socket_cookie".into(), json!(e.cookie));
        relaywatch.insert("cgroup_id".into(), json!(e.cgroup_id));
        if let Some(n) = self.repeat_count {
            relaywatch.insert("repeat_count".into(), json!(n));
        }

        json!({
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
            "destination": {
                "ip": o.destination.to_string(),
                "port": o.port,
            },
            "process": process,
            "user": user,
            "group": { "id": e.gid.to_string() },
            "relaywatch": relaywatch,
        })
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{ConnectEvent, FAMILY_IPV4, HOOK_SENDMSG, PROTO_UDP};

    use super::*;
    use crate::ingest::decode;

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
        decode(unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<ConnectEvent>()) }).unwrap()
    }

    #[test]
    fn full_record_has_ecs_fields() {
        let o = observation();
        let details = ProcessDetails {
            executable: Some("/usr/bin/resolve".into()),
            args: Some(vec!["resolve".into(), "-x".into()]),
            parent_pid: Some(1),
            name: Some("resolve".into()),
        };
        let v = ConnectionRecord { observation: &o, process: Some(&details), user_name: Some("alice"), repeat_count: Some(7) }.to_ecs();
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["type"], json!(["connection", "start"]));
        assert_eq!(v["network"], json!({"transport": "udp", "type": "ipv4", "direction": "egress"}));
        assert_eq!(v["destination"], json!({"ip": "9.9.9.9", "port": 53}));
        assert_eq!(v["process"]["pid"], 4242);
        assert_eq!(v["process"]["thread"]["id"], 4243);
        assert_eq!(v["process"]["executable"], "/usr/bin/resolve");
        assert_eq!(v["process"]["args"], json!(["resolve", "-x"]));
        assert_eq!(v["process"]["parent"]["pid"], 1);
        assert_eq!(v["user"], json!({"id": "1000", "name": "alice"}));
        assert_eq!(v["relaywatch"]["repeat_count"], 7);
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn gone_process_leaves_fields_out() {
        let o = observation();
        let v = ConnectionRecord { observation: &o, process: None, user_name: None, repeat_count: None }.to_ecs();
        assert_eq!(v["process"]["name"], "resolve", "name falls back to the kernel's comm");
        for absent in ["executable", "args", "parent"] {
            assert!(v["process"].get(absent).is_none(), "{absent} must be left out");
        }
        assert!(v["user"].get("name").is_none());
        assert!(v["relaywatch"].get("repeat_count").is_none());
    }
}
