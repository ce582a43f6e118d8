//! OCSF output: a record (`record.rs`: connection, alert, summary, flow end) rendered as an OCSF
//! 1.8.0 Network Activity event (class_uid 4001).
//!
//! The typed record is the one source of truth; OCSF is a view of it computed when a record is
//! written out (`[output] format = "ocsf"`, `relaywatch run --format ocsf`). Nothing is
//! guessed: an ECS field that is absent leaves its OCSF attribute out, except the attributes the
//! class requires, which always get a value (`time` falls back to the moment of conversion,
//! `severity_id` to Informational).
//!
//! Profiles declared in `metadata.profiles`:
//! - `host`: always (`device`, `actor` are filled from `host.*`, `process.*`, `user.*`).
//! - `security_control`: for alerts (`event.kind: alert`): `action_id`, `disposition_id`,
//!   `is_alert`, `firewall_rule` (the blocklist rule that matched).
//! - `container`: when the record names a container (`container.id`).
//!
//! Everything relaywatch-specific that OCSF has no attribute for (name evidence, blocklist file
//! and line, dedupe counts, cgroup, JA4, ALPN, argv) goes under `unmapped`, with the ECS names.
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::record::Record;
use crate::config::Format;
use crate::intel::blocklist::Severity;

/// The OCSF schema version this module writes.
pub const OCSF_VERSION: &str = "1.8.0";

const CLASS_UID: u64 = 4001;
const CATEGORY_UID: u64 = 4;

/// The record as it is written out: ECS, or its OCSF rendering.
pub fn format(record: &Record, format: Format) -> Value {
    match format {
        Format::Ecs => record.to_ecs(),
        Format::Ocsf => from_record(record),
    }
}

/// An ECS document read into the model, then rendered as OCSF (a document that is not a record
/// gives an event with only the attributes the class requires).
#[cfg(test)]
pub fn from_ecs(doc: &Value) -> Value {
    from_record(&Record::from_ecs(doc).unwrap_or_default())
}

/// What the record reports, as a Network Activity activity.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Activity {
    /// A connection was made (connect hook, or a datagram sent).
    Open,
    /// A watched connection closed: bytes, duration and end time.
    Close,
    /// Repeats of an alert counted over a dedupe window.
    Traffic,
    /// The kernel refused the connection (enforcement: `event.type` "denied").
    Refuse,
}

impl Activity {
    fn of(r: &Record) -> Activity {
        let has = |t: &str| r.event.kind_type.iter().any(|k| k == t);
        if has("denied") {
            Activity::Refuse
        } else if has("end") {
            Activity::Close
        } else if has("info") {
            Activity::Traffic
        } else {
            Activity::Open
        }
    }

    fn id_and_name(self) -> (u64, &'static str) {
        match self {
            Activity::Open => (1, "Open"),
            Activity::Close => (2, "Close"),
            Activity::Refuse => (5, "Refuse"),
            Activity::Traffic => (6, "Traffic"),
        }
    }
}

/// A record as an OCSF Network Activity event; the result always has the attributes the class
/// requires.
pub fn from_record(r: &Record) -> Value {
    let is_alert = r.event.kind == "alert";
    let activity = Activity::of(r);
    let (activity_id, activity_name) = activity.id_and_name();
    let (severity_id, severity) = severity(r);
    let now_ms = epoch_ms(SystemTime::now());
    let time = rfc3339_ms(&r.timestamp).unwrap_or(now_ms);

    let container_id = r.container.as_ref().map(|c| c.id.as_str());
    let mut profiles = vec!["host"];
    if is_alert {
        profiles.push("security_control");
    }
    if container_id.is_some() {
        profiles.push("container");
    }

    let mut out = Map::new();
    out.insert("class_uid".into(), json!(CLASS_UID));
    out.insert("class_name".into(), json!("Network Activity"));
    out.insert("category_uid".into(), json!(CATEGORY_UID));
    out.insert("category_name".into(), json!("Network Activity"));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity_name));
    out.insert("type_uid".into(), json!(CLASS_UID * 100 + activity_id));
    out.insert(
        "type_name".into(),
        json!(format!("Network Activity: {activity_name}")),
    );
    out.insert("time".into(), json!(time));
    out.insert("severity_id".into(), json!(severity_id));
    out.insert("severity".into(), json!(severity));
    let (status_id, status) = status(r);
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status));
    out.insert("message".into(), json!(message(r)));
    out.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": {
                "name": "relaywatch",
                "vendor_name": "relaywatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": profiles,
            "uid": event_uid(r),
            "logged_time": now_ms,
        }),
    );
    if let Some(n) = r
        .relaywatch
        .dedupe
        .as_ref()
        .map(|d| d.repeats)
        .or(r.relaywatch.repeat_count)
    {
        out.insert("count".into(), json!(n));
    }
    period(r, activity, &mut out);

    if let Some(host) = r.host.as_ref().filter(|h| !h.name.is_empty()) {
        out.insert("src_endpoint".into(), json!({ "hostname": host.name }));
    }
    out.insert("dst_endpoint".into(), dst_endpoint(r));
    out.insert("connection_info".into(), connection_info(r));
    if let Some(tls) = tls(r) {
        out.insert("tls".into(), tls);
    }
    if let Some(ja4) = r.relaywatch.tls.as_ref().map(|t| t.ja4.as_str()) {
        out.insert("ja4_fingerprint_list".into(), ja4_fingerprints(ja4));
    }
    out.insert("actor".into(), actor(r, container_id));
    if let Some(device) = device(r) {
        out.insert("device".into(), device);
    }

    if is_alert {
        // Enforcement is not built yet: an alert reports a connection that was seen, not stopped
        // (3 Observed / 15 Detected), whatever action its category is configured with; only a
        // record of a refused connection says Denied / Blocked.
        let (action_id, action, disposition_id, disposition) = if activity == Activity::Refuse {
            (2, "Denied", 2, "Blocked")
        } else {
            (3, "Observed", 15, "Detected")
        };
        out.insert("is_alert".into(), json!(true));
        out.insert("action_id".into(), json!(action_id));
        out.insert("action".into(), json!(action));
        out.insert("disposition_id".into(), json!(disposition_id));
        out.insert("disposition".into(), json!(disposition));
        if let Some(rule) = firewall_rule(r) {
            out.insert("firewall_rule".into(), rule);
        }
        let enrichments = enrichments(r);
        if !enrichments.is_empty() {
            out.insert("enrichments".into(), Value::Array(enrichments));
        }
    }
    let observables = observables(r);
    if !observables.is_empty() {
        out.insert("observables".into(), Value::Array(observables));
    }
    out.insert("unmapped".into(), unmapped(r));
    Value::Object(out)
}

/// Epoch milliseconds of an RFC 3339 time.
fn rfc3339_ms(text: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(text).ok().map(epoch_ms)
}

/// The period a Close or Traffic event covers, and a Close's volume: `start_time`, `end_time`,
/// `duration` (ms), `traffic`.
fn period(r: &Record, activity: Activity, out: &mut Map<String, Value>) {
    let end = r.event.end.as_deref().and_then(rfc3339_ms);
    let start = match (activity, r.event.start.as_deref(), end, r.event.duration) {
        (_, Some(start), _, _) => rfc3339_ms(start),
        // A flow end knows when it closed and how long it was open.
        (Activity::Close, None, Some(end), Some(ns)) => Some(end.saturating_sub(ns / 1_000_000)),
        _ => None,
    };
    if let Some(start) = start {
        out.insert("start_time".into(), json!(start));
    }
    if let Some(end) = end {
        out.insert("end_time".into(), json!(end));
    }
    if let Some(ns) = r.event.duration {
        out.insert("duration".into(), json!(ns / 1_000_000));
    } else if let (Some(start), Some(end)) = (start, end) {
        out.insert("duration".into(), json!(end.saturating_sub(start)));
    }
    let (out_bytes, in_bytes) = (r.source.bytes, r.destination.bytes);
    if out_bytes.is_some() || in_bytes.is_some() {
        let mut traffic = Map::new();
        if let Some(b) = out_bytes {
            traffic.insert("bytes_out".into(), json!(b));
        }
        if let Some(b) = in_bytes {
            traffic.insert("bytes_in".into(), json!(b));
        }
        traffic.insert(
            "bytes".into(),
            json!(out_bytes.unwrap_or(0).saturating_add(in_bytes.unwrap_or(0))),
        );
        out.insert("traffic".into(), Value::Object(traffic));
    }
}

/// `tls`: the server name and the highest version the ClientHello offered (OCSF requires a
/// version; the agent reads the ClientHello, not the server's answer). Left out when the
/// offered version is not one JA4 names.
fn tls(r: &Record) -> Option<Value> {
    let hello = r.relaywatch.tls.as_ref()?;
    let version = hello.offered_version()?;
    let mut tls = Map::new();
    tls.insert("version".into(), json!(version));
    if let Some(sni) = r.tls.as_ref().and_then(|t| t.client.server_name.as_deref()) {
        tls.insert("sni".into(), json!(sni));
    }
    Some(Value::Object(tls))
}

/// The JA4 TLS client fingerprint (`ja4_fingerprint` type 1) with its three sections.
fn ja4_fingerprints(ja4: &str) -> Value {
    let mut fp = Map::new();
    fp.insert("type_id".into(), json!(1));
    fp.insert("type".into(), json!("JA4"));
    fp.insert("value".into(), json!(ja4));
    let sections: Vec<&str> = ja4.split('_').collect();
    if let [a, b, c] = sections[..] {
        fp.insert("section_a".into(), json!(a));
        fp.insert("section_b".into(), json!(b));
        fp.insert("section_c".into(), json!(c));
    }
    json!([fp])
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// OCSF severity from the list severity (`relaywatch.severity`), else from ECS `event.severity`
/// (the numbers `alert::severity_number` writes), else Informational.
fn severity(r: &Record) -> (u64, &'static str) {
    let by_name = match r.relaywatch.severity.as_deref() {
        Some("high") => Some(4),
        Some("medium") => Some(3),
        Some("low") => Some(2),
        Some("info") => Some(1),
        _ => None,
    };
    let by_number = r
        .event
        .severity
        .map(|n| match super::alert::severity_of_number(n) {
            Severity::Info => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
        });
    match by_name.or(by_number).unwrap_or(1) {
        4 => (4, "High"),
        3 => (3, "Medium"),
        2 => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// Success when the record shows data went out (a datagram sent, or a name read from the first
/// bytes of the connection); Unknown otherwise: the connect hook fires before the handshake.
fn status(r: &Record) -> (u64, &'static str) {
    // A relay_config record keeps its TLS evidence: a ClientHello read is data sent too.
    let payload_named = matches!(
        r.relaywatch.name_source.as_str(),
        "sni" | "http_host" | "proxy_target" | "quic_sni"
    ) || r.relaywatch.tls.is_some();
    if payload_named || r.network.transport == "udp" {
        (1, "Success")
    } else {
        (0, "Unknown")
    }
}

fn message(r: &Record) -> String {
    let p = &r.process;
    let who = if p.name.is_empty() {
        "unknown process"
    } else {
        p.name.as_str()
    };
    let pid = if p.pid == 0 {
        String::new()
    } else {
        format!("pid {}, ", p.pid)
    };
    let uid = if r.user.id.is_empty() {
        "?"
    } else {
        r.user.id.as_str()
    };
    let d = &r.destination;
    let port = d.port.map_or(String::new(), |p| format!(":{p}"));
    let whom = match (d.domain.as_deref(), d.ip.as_deref()) {
        (Some(name), Some(ip)) => format!("{name} ({ip}{port})"),
        (Some(name), None) => format!("{name}{port}"),
        (None, Some(ip)) => format!("{ip}{port}"),
        (None, None) => "an unknown destination".into(),
    };
    let mut m = format!("{who} ({pid}uid {uid}) connected to {whom}");
    if let Some(rule) = &r.rule {
        m.push_str(&format!(
            "; matched blocklist category {} ({})",
            rule.category, rule.name
        ));
    }
    m
}

/// A stable id for the event: the same record always gives the same uid, so a record sent twice
/// (sink retry) can be recognised downstream.
fn event_uid(r: &Record) -> String {
    let digest = Sha256::digest(r.to_ecs().to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn dst_endpoint(r: &Record) -> Value {
    let d = &r.destination;
    let mut dst = Map::new();
    if let Some(ip) = &d.ip {
        dst.insert("ip".into(), json!(ip));
    }
    if let Some(port) = d.port {
        dst.insert("port".into(), json!(port));
    }
    if let Some(domain) = &d.domain {
        dst.insert("hostname".into(), json!(domain));
    }
    Value::Object(dst)
}

fn connection_info(r: &Record) -> Value {
    let mut c = Map::new();
    c.insert("direction_id".into(), json!(2));
    c.insert("direction".into(), json!("Outbound"));
    match r.network.transport.as_str() {
        "" => {}
        "tcp" => {
            c.insert("protocol_name".into(), json!("tcp"));
            c.insert("protocol_num".into(), json!(6));
        }
        "udp" => {
            c.insert("protocol_name".into(), json!("udp"));
            c.insert("protocol_num".into(), json!(17));
        }
        other => {
            c.insert("protocol_name".into(), json!(other));
        }
    }
    match r.network.ip_version.as_str() {
        "ipv4" => {
            c.insert("protocol_ver_id".into(), json!(4));
            c.insert(
                "protocol_ver".into(),
                json!("Internet Protocol version 4 (IPv4)"),
            );
        }
        "ipv6" => {
            c.insert("protocol_ver_id".into(), json!(6));
            c.insert(
                "protocol_ver".into(),
                json!("Internet Protocol version 6 (IPv6)"),
            );
        }
        _ => {}
    }
    Value::Object(c)
}

fn user(r: &Record) -> Option<Value> {
    let mut u = Map::new();
    if !r.user.id.is_empty() {
        u.insert("uid".into(), json!(r.user.id));
    }
    if let Some(name) = &r.user.name {
        u.insert("name".into(), json!(name));
    }
    if !r.group.id.is_empty() {
        u.insert("groups".into(), json!([{ "uid": r.group.id }]));
    }
    (!u.is_empty()).then_some(Value::Object(u))
}

fn actor(r: &Record, container_id: Option<&str>) -> Value {
    let p = &r.process;
    let mut process = Map::new();
    if p.pid != 0 {
        process.insert("pid".into(), json!(p.pid));
    }
    // `tid` is deprecated since 1.8.0 in favour of `ptid`.
    if p.thread.id != 0 {
        process.insert("ptid".into(), json!(p.thread.id));
    }
    // The container profile puts the container on the process (and endpoints), not the event.
    if let Some(id) = container_id {
        process.insert("container".into(), json!({ "uid": id }));
    }
    if !p.name.is_empty() {
        process.insert("name".into(), json!(p.name));
    }
    let cmd_line = p
        .command_line
        .clone()
        .or_else(|| p.args.as_ref().map(|a| a.join(" ")));
    if let Some(line) = cmd_line {
        process.insert("cmd_line".into(), json!(line));
    }
    if let Some(path) = &p.executable {
        let name = path.rsplit('/').next().unwrap_or(path);
        // type_id 1: Regular File.
        process.insert(
            "file".into(),
            json!({ "name": name, "path": path, "type_id": 1, "type": "Regular File" }),
        );
    }
    if let Some(ppid) = p.parent.as_ref().and_then(|p| p.pid) {
        process.insert("parent_process".into(), json!({ "pid": ppid }));
    }
    let user = user(r);
    if let Some(u) = &user {
        process.insert("user".into(), u.clone());
    }
    let mut actor = Map::new();
    actor.insert("process".into(), Value::Object(process));
    if let Some(u) = user {
        actor.insert("user".into(), u);
    }
    Value::Object(actor)
}

/// The host the agent runs on (every record the daemon writes names it). Whether it is a server
/// or a workstation is not known here: type_id 0 (Unknown). Left out when the record names no
/// host: a device needs at least a hostname or an id.
fn device(r: &Record) -> Option<Value> {
    let host = r.host.as_ref()?;
    let mut d = Map::new();
    d.insert("type_id".into(), json!(0));
    d.insert("type".into(), json!("Unknown"));
    if !host.name.is_empty() {
        d.insert("hostname".into(), json!(host.name));
    }
    if let Some(id) = &host.id {
        d.insert("uid".into(), json!(id));
    }
    if d.len() == 2 {
        return None;
    }
    d.insert(
        "os".into(),
        json!({ "name": "Linux", "type_id": 200, "type": "Linux" }),
    );
    Some(Value::Object(d))
}

/// The blocklist rule that matched, located by file and line.
fn firewall_rule(r: &Record) -> Option<Value> {
    let rule = r.rule.as_ref();
    let list = r.relaywatch.blocklist.as_ref();
    if rule.is_none() && list.is_none() {
        return None;
    }
    let mut out = Map::new();
    if let Some(rule) = rule {
        out.insert("name".into(), json!(rule.name));
        out.insert("category".into(), json!(rule.category));
    }
    if let Some(list) = list {
        out.insert("uid".into(), json!(format!("{}:{}", list.file, list.line)));
        out.insert("version".into(), json!(list.version));
    }
    out.insert("type".into(), json!("blocklist"));
    Some(Value::Object(out))
}

/// ECS field that matched -> the OCSF attribute holding the same value.
fn ocsf_field(ecs: &str) -> &str {
    match ecs {
        "destination.domain" | "tls.client.server_name" => "dst_endpoint.hostname",
        "destination.ip" => "dst_endpoint.ip",
        other => other,
    }
}

fn enrichments(r: &Record) -> Vec<Value> {
    let Some(threat) = &r.threat else {
        return Vec::new();
    };
    threat
        .enrichments
        .iter()
        .map(|e| {
            json!({
                "name": ocsf_field(&e.matched.field),
                "value": e.matched.atomic,
                "type": "blocklist",
                "provider": e.indicator.provider,
                "data": {
                    "indicator": e.indicator,
                    "rule": r.rule,
                    "blocklist": r.relaywatch.blocklist,
                },
            })
        })
        .collect()
}

/// Observables: the destination (type 1 Hostname, 2 IP Address), the process (9 Process Name)
/// and the user (4 User Name).
fn observables(r: &Record) -> Vec<Value> {
    let process_name = Some(r.process.name.as_str()).filter(|n| !n.is_empty());
    let candidates = [
        (
            "dst_endpoint.hostname",
            1,
            "Hostname",
            r.destination.domain.as_deref(),
        ),
        (
            "dst_endpoint.ip",
            2,
            "IP Address",
            r.destination.ip.as_deref(),
        ),
        ("actor.process.name", 9, "Process Name", process_name),
        ("actor.user.name", 4, "User Name", r.user.name.as_deref()),
    ];
    candidates
        .into_iter()
        .filter_map(|(name, type_id, type_name, value)| {
            Some(json!({ "name": name, "type_id": type_id, "type": type_name, "value": value? }))
        })
        .collect()
}

/// What OCSF has no attribute for, with its ECS name.
fn unmapped(r: &Record) -> Value {
    let mut u = Map::new();
    u.insert(
        "relaywatch".into(),
        serde_json::to_value(&r.relaywatch).unwrap_or(Value::Null),
    );
    u.insert(
        "event".into(),
        json!({ "action": r.event.action, "dataset": r.event.dataset, "type": r.event.kind_type }),
    );
    if let Some(args) = &r.process.args {
        u.insert("process.args".into(), json!(args));
    }
    if let Some(rule) = &r.rule {
        u.insert("rule.ruleset".into(), json!(rule.ruleset));
    }
    Value::Object(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        intel::{
            blocklist::{Action, Blocklists},
            classify::classify,
        },
        report::{alert::alert_document, host::HostInfo},
    };

    /// An ECS connection record as `record.rs` writes it for a curl to api.openai.com.
    fn record() -> Value {
        json!({
            "@timestamp": "2026-09-01T08:15:30.123Z",
            "ecs": {"version": "9.4.0"},
            "event": {"kind": "event", "category": ["network"], "type": ["connection", "start"],
                      "action": "connect", "module": "relaywatch", "dataset": "relaywatch.connection"},
            "network": {"transport": "tcp", "type": "ipv4", "direction": "egress"},
            "destination": {"domain": "api.openai.com", "ip": "203.0.113.7", "port": 443},
            "process": {"pid": 1234, "thread": {"id": 1234, "name": "curl"}, "name": "curl",
                        "executable": "/usr/bin/curl", "args": ["curl", "https://api.openai.com/v1/models"],
                        "args_count": 2, "parent": {"pid": 1200}},
            "user": {"id": "1000", "name": "alice"},
            "group": {"id": "1000"},
            "tls": {"client": {"server_name": "api.openai.com"}},
            "container": {"id": "4f5c2e0b9d1a"},
            "host": {"name": "build-01", "id": "0123abcd"},
            "relaywatch": {"socket_cookie": 77, "cgroup_id": 9, "name_source": "sni",
                           "tls": {"ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1", "alpn": ["h2"]}},
        })
    }

    fn alert(lists: &Blocklists) -> Value {
        let finding =
            classify(lists, Some("api.openai.com"), None).expect("openai is on the built-in lists");
        alert_document(
            &Record::from_ecs(&record()).expect("an ECS record"),
            &finding,
            &HostInfo {
                name: "build-01".into(),
                id: Some("0123abcd".into()),
            },
        )
        .to_ecs()
    }

    /// Dotted paths; `[]` steps into every element of an array.
    fn has(v: &Value, path: &str) -> bool {
        let mut cur = vec![v];
        for step in path.split('.') {
            let mut next = Vec::new();
            for c in cur {
                if let Some(field) = step.strip_suffix("[]") {
                    match c[field].as_array() {
                        Some(a) if !a.is_empty() => next.extend(a.iter()),
                        _ => return false,
                    }
                } else if c.get(step).is_some_and(|x| !x.is_null()) {
                    next.push(&c[step]);
                } else {
                    return false;
                }
            }
            cur = next;
        }
        true
    }

    /// OCSF 1.8.0: required by the base event and Network Activity, then by the objects used
    /// (metadata, product, device, os, file, enrichment, observable), then the attributes the
    /// host and security_control profiles add (recommended there; relaywatch always writes them
    /// for an alert), then the recommended ones this agent always knows.
    const REQUIRED: &[&str] = &[
        // Base event + class
        "activity_id",
        "category_uid",
        "class_uid",
        "type_uid",
        "time",
        "severity_id",
        "metadata",
        // metadata and product
        "metadata.version",
        "metadata.product",
        "metadata.product.vendor_name",
        "metadata.product.name",
        // class constraint at_least_one(src_endpoint, dst_endpoint): relaywatch writes both
        "dst_endpoint",
        "src_endpoint",
        // host profile
        "device",
        "device.type_id",
        "device.os.name",
        "device.os.type_id",
        "actor",
        "actor.process",
        // security_control profile
        "action_id",
        "disposition_id",
        "is_alert",
        // objects' own required attributes
        "actor.process.file.name",
        "actor.process.file.type_id",
        "enrichments[].name",
        "enrichments[].value",
        "enrichments[].data",
        "observables[].name",
        "observables[].type_id",
        // recommended, always known here
        "activity_name",
        "category_name",
        "class_name",
        "type_name",
        "severity",
        "status_id",
        "message",
        "metadata.profiles",
        "metadata.uid",
        "metadata.logged_time",
        "connection_info.direction_id",
        "connection_info.protocol_ver_id",
        "connection_info.protocol_num",
        "dst_endpoint.ip",
        "dst_endpoint.port",
        "actor.process.pid",
        "actor.user.uid",
        "device.hostname",
    ];

    #[test]
    fn ocsf_alert_has_every_required_attribute() {
        let lists = Blocklists::builtin();
        let o = from_ecs(&alert(&lists));
        let missing: Vec<&&str> = REQUIRED.iter().filter(|p| !has(&o, p)).collect();
        assert!(missing.is_empty(), "missing {missing:?} in {o:#}");
        assert_eq!(
            o["metadata"]["profiles"],
            json!(["host", "security_control", "container"])
        );
    }

    #[test]
    fn ocsf_alert_maps_the_ecs_fields() {
        let lists = Blocklists::builtin();
        let ecs = alert(&lists);
        let o = from_ecs(&ecs);
        assert_eq!(
            (o["class_uid"].as_u64(), o["category_uid"].as_u64()),
            (Some(4001), Some(4))
        );
        assert_eq!(
            (o["activity_id"].as_u64(), o["type_uid"].as_u64()),
            (Some(1), Some(400101))
        );
        assert_eq!(o["time"], 1_788_250_530_123u64);
        assert_eq!(
            (o["severity_id"].as_u64(), o["severity"].as_str()),
            (Some(4), Some("High"))
        );
        assert_eq!(o["metadata"]["version"], OCSF_VERSION);
        assert_eq!(o["metadata"]["product"]["name"], "relaywatch");
        assert_eq!(o["status_id"], 1, "named from the SNI: data went out");
        assert_eq!(
            o["dst_endpoint"],
            json!({"ip": "203.0.113.7", "port": 443, "hostname": "api.openai.com"})
        );
        assert_eq!(o["src_endpoint"], json!({"hostname": "build-01"}));
        assert_eq!(
            o["connection_info"],
            json!({"direction_id": 2, "direction": "Outbound", "protocol_name": "tcp", "protocol_num": 6,
                   "protocol_ver_id": 4, "protocol_ver": "Internet Protocol version 4 (IPv4)"})
        );
        assert_eq!(o["tls"], json!({"version": "1.3", "sni": "api.openai.com"}));
        assert_eq!(
            o["ja4_fingerprint_list"],
            json!([{"type_id": 1, "type": "JA4", "value": "t13d1516h2_8daaf6152771_e5627efa2ab1",
                    "section_a": "t13d1516h2", "section_b": "8daaf6152771", "section_c": "e5627efa2ab1"}])
        );
        let p = &o["actor"]["process"];
        assert_eq!(p["pid"], 1234);
        assert_eq!(p["ptid"], 1234);
        assert!(p.get("tid").is_none(), "tid is deprecated in 1.8.0");
        assert_eq!(p["name"], "curl");
        assert_eq!(p["cmd_line"], "curl https://api.openai.com/v1/models");
        assert_eq!(p["file"]["path"], "/usr/bin/curl");
        assert_eq!(p["file"]["name"], "curl");
        assert_eq!(p["parent_process"], json!({"pid": 1200}));
        assert_eq!(
            p["user"],
            json!({"uid": "1000", "name": "alice", "groups": [{"uid": "1000"}]})
        );
        assert_eq!(o["actor"]["user"]["name"], "alice");
        assert_eq!(o["device"]["hostname"], "build-01");
        assert_eq!(o["device"]["uid"], "0123abcd");
        assert!(o.get("container").is_none(), "not an event attribute");
        assert_eq!(p["container"], json!({"uid": "4f5c2e0b9d1a"}));
        assert_eq!(
            (o["action_id"].as_u64(), o["disposition_id"].as_u64()),
            (Some(3), Some(15)),
            "seen, not stopped: Observed / Detected"
        );
        assert_eq!(o["is_alert"], true);
        assert_eq!(o["firewall_rule"]["name"], ecs["rule"]["name"]);
        assert_eq!(o["firewall_rule"]["category"], "ai-provider");
        let uid = o["firewall_rule"]["uid"].as_str().unwrap();
        assert!(
            uid.starts_with(ecs["relaywatch"]["blocklist"]["file"].as_str().unwrap()),
            "{uid}"
        );
        assert_eq!(o["enrichments"][0]["name"], "dst_endpoint.hostname");
        assert_eq!(o["enrichments"][0]["value"], "api.openai.com");
        assert_eq!(
            o["observables"][0],
            json!({"name": "dst_endpoint.hostname", "type_id": 1, "type": "Hostname", "value": "api.openai.com"})
        );
        assert_eq!(o["observables"][1]["type_id"], 2);
        let u = &o["unmapped"];
        assert_eq!(u["relaywatch"]["name_source"], "sni");
        assert_eq!(u["relaywatch"]["blocklist"], ecs["relaywatch"]["blocklist"]);
        assert_eq!(u["relaywatch"]["tls"]["alpn"], json!(["h2"]));
        assert_eq!(
            u["process.args"],
            json!(["curl", "https://api.openai.com/v1/models"])
        );
        assert_eq!(
            from_ecs(&ecs)["metadata"]["uid"],
            o["metadata"]["uid"],
            "uid is stable"
        );
    }

    #[test]
    fn ocsf_blocked_connection_is_refused_and_denied() {
        let lists = Blocklists::builtin()
            .with_action(crate::intel::blocklist::Category::AiProvider, Action::Block);
        // A block category without enforcement: the connection went through, and says so.
        let reported = from_ecs(&alert(&lists));
        assert_eq!(
            (
                reported["activity_id"].as_u64(),
                reported["action_id"].as_u64(),
                reported["disposition_id"].as_u64()
            ),
            (Some(1), Some(3), Some(15))
        );
        assert_eq!(reported["unmapped"]["relaywatch"]["action"], "block");
        // What an enforcing agent writes (event.type "denied") maps to Refuse / Denied / Blocked.
        let mut denied = alert(&lists);
        denied["event"]["type"] = json!(["connection", "start", "denied"]);
        let o = from_ecs(&denied);
        assert_eq!(
            (o["activity_id"].as_u64(), o["type_uid"].as_u64()),
            (Some(5), Some(400105))
        );
        assert_eq!(
            (o["action_id"].as_u64(), o["action"].as_str()),
            (Some(2), Some("Denied"))
        );
        assert_eq!(
            (o["disposition_id"].as_u64(), o["disposition"].as_str()),
            (Some(2), Some("Blocked"))
        );
    }

    #[test]
    fn ocsf_dedupe_summary_carries_the_count() {
        let lists = Blocklists::builtin();
        let mut a = alert(&lists);
        a["relaywatch"]["dedupe"] = json!({"repeats": 5, "window_seconds": 600});
        a["event"]["type"] = json!(["connection", "info"]);
        a["event"]["start"] = json!("2026-09-01T08:16:00.000Z");
        a["event"]["end"] = json!("2026-09-01T08:20:00.000Z");
        let o = from_ecs(&a);
        assert_eq!(o["count"], 5);
        assert_eq!(
            (o["activity_id"].as_u64(), o["activity_name"].as_str()),
            (Some(6), Some("Traffic"))
        );
        assert_eq!(
            (&o["start_time"], &o["end_time"], &o["duration"]),
            (
                &json!(1_788_250_560_000u64),
                &json!(1_788_250_800_000u64),
                &json!(240_000)
            )
        );
        assert_eq!(o["unmapped"]["relaywatch"]["dedupe"]["repeats"], 5);
    }

    #[test]
    fn ocsf_flow_end_is_a_close_with_traffic_and_duration() {
        let lists = Blocklists::builtin();
        let mut a = alert(&lists);
        a["event"]["type"] = json!(["connection", "end"]);
        a["event"]["duration"] = json!(2_500_000_000u64);
        a["event"]["end"] = json!("2026-09-01T08:15:33.123Z");
        a["@timestamp"] = json!("2026-09-01T08:15:33.123Z");
        a["source"] = json!({"bytes": 900});
        a["destination"]["bytes"] = json!(4100);
        let o = from_ecs(&a);
        assert_eq!(
            (o["activity_id"].as_u64(), o["type_uid"].as_u64()),
            (Some(2), Some(400102))
        );
        assert_eq!(
            o["traffic"],
            json!({"bytes_out": 900, "bytes_in": 4100, "bytes": 5000})
        );
        assert_eq!(o["duration"], 2500);
        assert_eq!(o["end_time"], 1_788_250_533_123u64);
        assert_eq!(o["start_time"], 1_788_250_530_623u64);
        assert_eq!(o["time"], o["end_time"]);
    }

    #[test]
    fn ocsf_connection_record_has_no_security_control() {
        let mut r = record();
        r.as_object_mut().unwrap().remove("container");
        r["relaywatch"]["name_source"] = json!("relay_config");
        assert_eq!(
            from_ecs(&r)["status_id"],
            1,
            "a ClientHello was read: data went out"
        );
        r.as_object_mut().unwrap().remove("tls");
        r["relaywatch"].as_object_mut().unwrap().remove("tls");
        r.as_object_mut().unwrap().remove("host");
        r["relaywatch"]["name_source"] = json!("dns_answer_process");
        let o = from_ecs(&r);
        assert_eq!(o["metadata"]["profiles"], json!(["host"]));
        for absent in [
            "is_alert",
            "action_id",
            "disposition_id",
            "firewall_rule",
            "enrichments",
            "container",
        ] {
            assert!(o.get(absent).is_none(), "{absent} in a plain record");
        }
        assert_eq!(
            (o["severity_id"].as_u64(), o["status_id"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(
            o["message"],
            "curl (pid 1234, uid 1000) connected to api.openai.com (203.0.113.7:443)"
        );
        assert!(
            o.get("src_endpoint").is_none() && o.get("device").is_none(),
            "no host.* in a record: nothing to say about the source or the device"
        );
        assert!(o.get("tls").is_none() && o.get("ja4_fingerprint_list").is_none());
    }

    #[test]
    fn ocsf_garbage_in_still_gives_the_required_attributes() {
        for doc in [
            json!(null),
            json!({}),
            json!([1, 2]),
            json!({"event": 3, "@timestamp": "yesterday", "process": "x"}),
        ] {
            let o = from_ecs(&doc);
            for p in [
                "activity_id",
                "category_uid",
                "class_uid",
                "type_uid",
                "time",
                "severity_id",
                "metadata.version",
                "metadata.product.vendor_name",
                "dst_endpoint",
            ] {
                assert!(has(&o, p), "{p} missing for {doc}: {o}");
            }
        }
    }

    #[test]
    fn ocsf_format_chooses() {
        let r = record();
        let typed = Record::from_ecs(&r).expect("an ECS record");
        assert_eq!(
            format(&typed, Format::Ecs),
            r,
            "the typed record renders the same ECS"
        );
        assert_eq!(format(&typed, Format::Ocsf)["class_uid"], 4001);
    }

    #[test]
    fn ocsf_udp_ipv6_record() {
        let mut r = record();
        r["network"] = json!({"transport": "udp", "type": "ipv6", "direction": "egress"});
        r["relaywatch"]["repeat_count"] = json!(3);
        let o = from_ecs(&r);
        assert_eq!(o["connection_info"]["protocol_num"], 17);
        assert_eq!(o["connection_info"]["protocol_ver_id"], 6);
        assert_eq!(o["status_id"], 1);
        assert_eq!(o["count"], 3);
    }
}
