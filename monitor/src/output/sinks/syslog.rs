//! RFC 5424 syslog: message format and the udp:// (RFC 5426), tcp:// (RFC 6587 octet counting)
//! and tls:// (RFC 5425) transports.
//!
//! Message: `<PRI>1 TIMESTAMP HOSTNAME relaywatch PROCID MSGID [relaywatch@32473 ...] JSON`.
//! - PRI: facility authpriv (10): the alerts name users, commands and destinations, and
//!   standard syslog configurations keep authpriv out of world-readable files. Severity from
//!   the record's `event.severity`: >= 73 error (3), >= 47 warning (4), >= 21 notice (5), else
//!   informational (6); none: notice.
//! - TIMESTAMP: the alert's `@timestamp` (RFC 3339, at most microseconds), else now.
//! - HOSTNAME: the alert's `host.name`, else this host's name; printable ASCII only.
//! - MSGID: `AI_EGRESS` for alerts, `SINK_DROPPED` for the sink's own drop reports.
//! - STRUCTURED-DATA: SD-ID `relaywatch@32473` (32473 is the example Private Enterprise Number
//!   of RFC 5424; an organisation with its own PEN changes `SD_ID`) with the fields SIEM rules
//!   filter on: category, severity, rule, pid, exe, user, dst, dport, domain, name_source.
//!   Values escape `"`, `\` and `]` with a backslash (RFC 5424 6.3.3); control characters (a
//!   process can put a newline in its executable name) become U+FFFD.
//! - MSG: the record as JSON in the configured format (ECS or OCSF), without a BOM (MSG-ANY), so
//!   collectors can parse it as JSON directly. The header and structured data are read from the
//!   typed record (the queue holds ECS), so they are the same in either format.
//!
//! Size: receivers commonly cut messages at 8 KiB (rsyslog's default maxMessageSize), which would
//! break the JSON. A longer message first loses the bulky fields (process.args,
//! process.command_line, threat), marked by `relaywatch.truncated: true`; if it is still too
//! long, the JSON is left out and the structured data carries the alert. The whole document is
//! always in the local store.
//!
//! Delivery: udp:// is best effort: a datagram that left the host counts as delivered (UDP
//! reports an unreachable collector, at best, on a later send). tcp:// and tls:// count a
//! message as delivered once written to the socket; before each batch the connection is checked
//! for a close by the collector, so a collector restart does not swallow a batch, but messages
//! in flight when a connection breaks can be lost (syslog over TCP has no acknowledgements).
use std::net::SocketAddr;

use anyhow::{Context as _, Result, anyhow};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::UdpSocket,
};

use super::{Outcome, Rendered};
use crate::{
    config::Format,
    intel::blocklist::Severity,
    report::alert::severity_of_number,
    report::record::Record,
    transport::net::{Connector, Io},
};

pub const SD_ID: &str = "relaywatch@32473";
pub const APP_NAME: &str = "relaywatch";
pub const MSGID_ALERT: &str = "AI_EGRESS";
pub const MSGID_DROPPED: &str = "SINK_DROPPED";
const FACILITY_AUTHPRIV: u8 = 10;
/// Longest message sent (see the module comment).
pub const MAX_MESSAGE: usize = 8192;

/// RFC 5424 severity for the record's ECS `event.severity`; none: notice.
fn severity(record: Option<&Record>) -> u8 {
    match record
        .and_then(|r| r.event.severity)
        .map(severity_of_number)
    {
        Some(Severity::High) => 3,
        Some(Severity::Medium) => 4,
        Some(Severity::Low) => 5,
        Some(Severity::Info) => 6,
        None => 5,
    }
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped and control characters replaced.
fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A header field: printable US-ASCII without spaces, at most `max` bytes, or NILVALUE.
fn header_field(value: &str, max: usize) -> String {
    let clean: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() {
        "-".to_owned()
    } else {
        clean
    }
}

/// The record's `@timestamp` if RFC 5424 accepts it as is (RFC 3339, at most 6 fraction
/// digits), else now.
fn timestamp(record: Option<&Record>) -> String {
    let given = record.map(|r| r.timestamp.as_str()).filter(|t| {
        let fraction = t.split_once('.').map_or(0, |(_, f)| {
            f.chars().take_while(char::is_ascii_digit).count()
        });
        humantime::parse_rfc3339(t).is_ok() && fraction <= 6
    });
    match given {
        Some(t) => t.to_owned(),
        None => crate::clock::rfc3339(std::time::SystemTime::now()),
    }
}

/// The structured-data element: the fields SIEM rules filter on, from the record.
fn structured_data(record: Option<&Record>) -> String {
    let mut sd = format!("[{SD_ID}");
    if let Some(r) = record {
        let nonempty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        let params = [
            ("category", r.category().and_then(nonempty)),
            (
                "severity",
                r.relaywatch
                    .severity
                    .clone()
                    .or(r.event.severity.map(|n| n.to_string())),
            ),
            (
                "rule",
                r.rule.as_ref().and_then(|rule| nonempty(&rule.name)),
            ),
            (
                "pid",
                Some(r.process.pid)
                    .filter(|&p| p != 0)
                    .map(|p| p.to_string()),
            ),
            (
                "exe",
                r.process
                    .executable
                    .clone()
                    .or_else(|| nonempty(&r.process.name)),
            ),
            ("user", r.user.name.clone().or_else(|| nonempty(&r.user.id))),
            ("dst", r.destination.ip.clone()),
            ("dport", r.destination.port.map(|p| p.to_string())),
            ("domain", r.destination.domain.clone()),
            ("name_source", nonempty(&r.relaywatch.name_source)),
        ];
        for (name, value) in params {
            if let Some(v) = value {
                sd.push_str(&format!(" {name}=\"{}\"", escape_param(&v)));
            }
        }
    }
    sd.push(']');
    sd
}

/// The record without its bulky fields, marked as such.
fn slimmed(record: &Record) -> Record {
    let mut slim = record.clone();
    slim.process.args = None;
    slim.process.command_line = None;
    slim.threat = None;
    slim.relaywatch.truncated = true;
    slim
}

/// One RFC 5424 message for a queued line rendered as `body` (the record, when it is one, in
/// `format`). `local_host` stands in for a missing `host.name`.
pub fn format_message(
    record: Option<&Record>,
    body: &str,
    format: Format,
    local_host: &str,
    procid: u32,
) -> String {
    let pri = FACILITY_AUTHPRIV * 8 + severity(record);
    let host = header_field(
        record
            .and_then(|r| r.host.as_ref())
            .map_or(local_host, |h| h.name.as_str()),
        255,
    );
    let msgid = if record.is_some_and(|r| r.event.action == "sink-dropped") {
        MSGID_DROPPED
    } else {
        MSGID_ALERT
    };
    let head = format!(
        "<{pri}>1 {} {host} {APP_NAME} {procid} {msgid} {}",
        timestamp(record),
        structured_data(record)
    );
    let full = format!("{head} {body}");
    if full.len() <= MAX_MESSAGE {
        return full;
    }
    let slim = record.map(|r| format!("{head} {}", super::body_of(&slimmed(r), format)));
    match slim {
        Some(slim) if slim.len() <= MAX_MESSAGE => slim,
        _ => head,
    }
}

/// RFC 6587 octet-counting frame: `LEN SP MSG`.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

enum Link {
    Udp {
        socket: Option<UdpSocket>,
    },
    Stream {
        connector: Connector,
        conn: Option<Box<dyn Io>>,
    },
}

/// A syslog collector and the connection to it.
pub struct SyslogTransport {
    link: Link,
    host: String,
    port: u16,
    local_host: String,
    procid: u32,
    format: Format,
}

impl SyslogTransport {
    pub fn new(connector: Connector, local_host: String, format: Format) -> SyslogTransport {
        let e = connector.endpoint().clone();
        let link = if e.scheme == "udp" {
            Link::Udp { socket: None }
        } else {
            Link::Stream {
                connector,
                conn: None,
            }
        };
        SyslogTransport {
            link,
            host: e.host,
            port: e.port,
            local_host,
            procid: std::process::id(),
            format,
        }
    }

    async fn udp_socket(host: &str, port: u16) -> Result<UdpSocket> {
        let addr: SocketAddr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host}: no address"))?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .context("binding a UDP socket")?;
        socket
            .connect(addr)
            .await
            .with_context(|| format!("connecting UDP to {addr}"))?;
        Ok(socket)
    }

    /// Send `batch` (alert documents as JSON text), in order.
    pub async fn deliver(&mut self, batch: &[&Rendered]) -> Outcome {
        let mut messages = Vec::with_capacity(batch.len());
        let mut rejected = 0;
        for line in batch {
            if line.is_json {
                messages.push(Some(format_message(
                    line.record.as_ref(),
                    &line.body,
                    self.format,
                    &self.local_host,
                    self.procid,
                )));
            } else {
                rejected += 1;
                messages.push(None);
            }
        }
        let mut outcome = Outcome {
            retry: Vec::new(),
            rejected,
            error: None,
            refused: (rejected > 0).then(|| "a queued record is not JSON".to_owned()),
        };
        let failed_at = match &mut self.link {
            Link::Udp { socket } => send_datagrams(socket, &self.host, self.port, &messages).await,
            Link::Stream { connector, conn } => send_frames(connector, conn, &messages).await,
        };
        if let Some((i, e)) = failed_at {
            outcome.retry = (i..messages.len())
                .filter(|&j| messages[j].is_some())
                .collect();
            outcome.error = Some(e);
        }
        outcome
    }
}

/// Send each message as a datagram; on failure, the index it failed at and why.
async fn send_datagrams(
    socket: &mut Option<UdpSocket>,
    host: &str,
    port: u16,
    messages: &[Option<String>],
) -> Option<(usize, String)> {
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m else { continue };
        let s = match socket {
            Some(s) => s,
            None => match SyslogTransport::udp_socket(host, port).await {
                Ok(s) => socket.insert(s),
                Err(e) => return Some((i, format!("{e:#}"))),
            },
        };
        if let Err(e) = s.send(m.as_bytes()).await {
            *socket = None;
            return Some((i, format!("sending to {host}:{port}: {e}")));
        }
    }
    None
}

/// Write each message as an octet-counted frame; on failure, the index it failed at and why.
async fn send_frames(
    connector: &Connector,
    conn: &mut Option<Box<dyn Io>>,
    messages: &[Option<String>],
) -> Option<(usize, String)> {
    if let Some(c) = conn
        && peer_closed(c).await
    {
        *conn = None;
    }
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m else { continue };
        let c = match conn {
            Some(c) => c,
            None => match connector.connect().await {
                Ok(c) => conn.insert(c),
                Err(e) => return Some((i, format!("{e:#}"))),
            },
        };
        if let Err(e) = async {
            c.write_all(&frame(m)).await?;
            c.flush().await
        }
        .await
        {
            *conn = None;
            return Some((
                i,
                format!("writing to {}: {e}", connector.endpoint().authority()),
            ));
        }
    }
    None
}

/// Whether the collector closed the connection (syslog collectors send nothing, so anything
/// readable right now is an end of stream or an error).
async fn peer_closed(conn: &mut Box<dyn Io>) -> bool {
    let mut buf = [0u8; 512];
    tokio::select! {
        biased;
        r = conn.read(&mut buf) => matches!(r, Ok(0) | Err(_)),
        () = std::future::ready(()) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The message for an ECS document read into the model and sent in `format`.
    fn message_in(doc: &Value, format: Format, local_host: &str, procid: u32) -> String {
        let line = super::super::render(&doc.to_string(), format);
        format_message(line.record.as_ref(), &line.body, format, local_host, procid)
    }

    fn message(doc: &Value, local_host: &str, procid: u32) -> String {
        message_in(doc, Format::Ecs, local_host, procid)
    }

    fn sample() -> Value {
        json!({
            "@timestamp": "2026-09-01T08:15:30.123456Z",
            "event": { "kind": "alert", "severity": 47, "action": "ai-provider-connection" },
            "rule": { "name": "openai.com", "category": "ai-provider" },
            "process": { "pid": 1234, "name": "curl", "executable": "/usr/bin/curl" },
            "user": { "id": "1000", "name": "alice" },
            "host": { "name": "build-01" },
            "destination": { "ip": "203.0.113.7", "port": 443, "domain": "api.openai.com" },
            "relaywatch": { "severity": "medium", "name_source": "sni" }
        })
    }

    #[test]
    fn alert_becomes_an_exact_rfc5424_message() {
        let alert = sample();
        let m = message(&alert, "fallback", 4242);
        let expected = format!(
            "<84>1 2026-09-01T08:15:30.123456Z build-01 relaywatch 4242 AI_EGRESS \
             [relaywatch@32473 category=\"ai-provider\" severity=\"medium\" rule=\"openai.com\" pid=\"1234\" \
             exe=\"/usr/bin/curl\" user=\"alice\" dst=\"203.0.113.7\" dport=\"443\" domain=\"api.openai.com\" name_source=\"sni\"] {}",
            serde_json::to_string(&alert).unwrap()
        );
        assert_eq!(m, expected);
    }

    #[test]
    fn an_ocsf_alert_gets_the_same_header_and_structured_data() {
        let ecs = sample();
        let head = |m: &str| m.split_once("] ").map(|(h, _)| h.to_owned()).unwrap();
        let from_ecs = message(&ecs, "fallback", 4242);
        let from_ocsf = message_in(&ecs, Format::Ocsf, "fallback", 4242);
        assert_eq!(head(&from_ocsf), head(&from_ecs));
        let body: Value = serde_json::from_str(from_ocsf.split_once("] ").unwrap().1).unwrap();
        assert_eq!(
            body["class_uid"], 4001,
            "the message body is the OCSF event"
        );
    }

    #[test]
    fn severity_maps_to_pri() {
        let pri = |s: Value| {
            let mut a = sample();
            a["event"]["severity"] = s;
            message(&a, "h", 1)
                .split('>')
                .next()
                .unwrap()
                .trim_start_matches('<')
                .parse::<u8>()
                .unwrap()
        };
        assert_eq!(pri(json!(73)), 83);
        assert_eq!(pri(json!(47)), 84);
        assert_eq!(pri(json!(21)), 85);
        assert_eq!(pri(json!(1)), 86);
        assert_eq!(pri(Value::Null), 85);
    }

    #[test]
    fn params_are_escaped_and_header_fields_sanitized() {
        assert_eq!(escape_param(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(escape_param("x\ny\u{7f}é"), "x\u{FFFD}y\u{FFFD}é");
        let mut a = sample();
        a["process"]["executable"] = json!("/tmp/evil\"] [x@1 a=\"b");
        a["host"]["name"] = json!("bad host\n");
        a["@timestamp"] = json!("yesterday");
        let m = message(&a, "h", 1);
        assert!(m.contains(r#" exe="/tmp/evil\"\] [x@1 a=\"b" "#), "{m}");
        assert!(m.contains(" badhost relaywatch "), "{m}");
        let ts = m.split(' ').nth(1).unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        // Missing host name: the local one; missing fields: no params.
        let m = message(
            &json!({"event": {"kind": "event", "action": "sink-dropped", "severity": 47}}),
            "local-1",
            1,
        );
        assert!(
            m.contains(" local-1 relaywatch 1 SINK_DROPPED [relaywatch@32473 severity=\"47\"] {"),
            "{m}"
        );
    }

    #[test]
    fn long_alerts_are_slimmed_then_cut_to_structured_data() {
        let mut a = sample();
        a["process"]["args"] = json!(vec!["x".repeat(100); 100]);
        let m = message(&a, "h", 1);
        assert!(m.len() <= MAX_MESSAGE);
        let json_part: Value = serde_json::from_str(&m[m.find("] {").unwrap() + 2..]).unwrap();
        assert_eq!(json_part["relaywatch"]["truncated"], true);
        assert!(json_part["process"].get("args").is_none());
        a["message"] = json!("y".repeat(MAX_MESSAGE));
        let m = message(&a, "h", 1);
        assert!(m.ends_with("name_source=\"sni\"]"), "{m}");
    }

    #[test]
    fn octet_counting_counts_bytes() {
        assert_eq!(
            frame("<13>1 - - - - - - é"),
            "20 <13>1 - - - - - - é".as_bytes()
        );
    }
}
