//! The one typed model of everything relaywatch writes: a connection record, an alert (a
//! record with a finding and the host), a dedupe summary (an alert with `relaywatch.dedupe`) and
//! a flow end (an alert with bytes, duration and end time).
//!
//! The structs mirror Elastic Common Schema's nesting, with relaywatch's own facts under
//! `relaywatch.*`, so that `to_ecs()` is serde's rendering of the struct and nothing else: a field
//! that is not here cannot be written, and a typo in a field name does not compile. Everything
//! that reads a record back (the store's columns, dedupe keys, OCSF, syslog structured data, the
//! CLI's tables) deserializes it into these structs and reads typed fields. Optional parts are
//! left out when unknown, never guessed. Reading back is lenient: a missing field takes its
//! default and an unknown one is ignored, so a document from another writer (the API stores
//! what it is given) still reads; only a field of the wrong type makes it unreadable.
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    #[serde(default, rename = "@timestamp")]
    pub timestamp: String,
    /// The ECS version the record conforms to (ECS requires it on every document).
    #[serde(default)]
    pub ecs: EcsVersion,
    #[serde(default)]
    pub event: Event,
    #[serde(default, skip_serializing_if = "Network::is_unknown")]
    pub network: Network,
    #[serde(default, skip_serializing_if = "Destination::is_unknown")]
    pub destination: Destination,
    #[serde(default, skip_serializing_if = "Source::is_empty")]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Process::is_unknown")]
    pub process: Process,
    #[serde(default, skip_serializing_if = "User::is_unknown")]
    pub user: User,
    #[serde(default, skip_serializing_if = "Group::is_unknown")]
    pub group: Group,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<Threat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    #[serde(default)]
    pub relaywatch: Relaywatch,
    /// Records that are not about a connection (a sink's drop report) say what they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The Elastic Common Schema version records are written in.
pub const ECS_VERSION: &str = "9.4.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EcsVersion {
    pub version: String,
}

impl Default for EcsVersion {
    fn default() -> Self {
        EcsVersion {
            version: ECS_VERSION.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `event` (a connection record) or `alert`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub category: Vec<String>,
    /// `["connection", "start"]`, `["connection", "end"]` (flow end) or
    /// `["connection", "info"]` (dedupe summary).
    #[serde(default, rename = "type")]
    pub kind_type: Vec<String>,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub module: String,
    #[serde(default)]
    pub dataset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<u64>,
    /// Dedupe summary: the first repeat counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Flow end: nanoseconds from connect to close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Flow end: when the socket closed. Dedupe summary: the last repeat counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    #[serde(default)]
    pub transport: String,
    #[serde(default, rename = "type")]
    pub ip_version: String,
    #[serde(default)]
    pub direction: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Destination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Flow end: bytes received from the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Source {
    /// Flow end: bytes sent to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl Source {
    fn is_empty(&self) -> bool {
        self.bytes.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub thread: Thread,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Alerts: the (redacted) arguments joined with spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thread {
    #[serde(default)]
    pub id: u32,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// The numeric uid, as text (ECS keyword).
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    #[serde(default)]
    pub id: String,
}

/// ECS `tls.*`: only the server name, the one ClientHello fact ECS has a field for (its
/// `tls.version` and `tls.next_protocol` are what the handshake negotiated, which the agent does
/// not see). The fingerprint and the offered protocols are in `relaywatch.tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tls {
    pub client: TlsClient,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsClient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// What the ClientHello offered, beyond its server name: `relaywatch.tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientHelloFacts {
    /// JA4 fingerprint (FoxIO's JA4 TLS client fingerprint; `q` prefix for QUIC).
    pub ja4: String,
    /// Application protocols offered (ALPN), in the client's order.
    pub alpn: Vec<String>,
}

impl ClientHelloFacts {
    /// The highest TLS version the client offered, from the JA4 version field (`1.3`...).
    pub fn offered_version(&self) -> Option<&'static str> {
        Some(match self.ja4.get(1..3)? {
            "13" => "1.3",
            "12" => "1.2",
            "11" => "1.1",
            "10" => "1.0",
            "s3" => "SSL 3.0",
            "s2" => "SSL 2.0",
            "d1" => "DTLS 1.0",
            "d2" => "DTLS 1.2",
            "d3" => "DTLS 1.3",
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rule {
    pub name: String,
    /// The list category (`ai-provider`, `ai-relay`...).
    pub category: String,
    /// The list file (or `relay-discovery`).
    pub ruleset: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Threat {
    pub enrichments: Vec<Enrichment>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Enrichment {
    pub indicator: Indicator,
    pub matched: Matched,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Indicator {
    /// `domain-name`, `ipv4-addr` or `ipv6-addr`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<IndicatorUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub provider: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndicatorUrl {
    pub domain: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Matched {
    pub atomic: String,
    /// `destination.domain` or `destination.ip`.
    pub field: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// relaywatch's own namespace: evidence and facts ECS has no field for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Relaywatch {
    #[serde(default)]
    pub socket_cookie: u64,
    #[serde(default)]
    pub cgroup_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// Unconnected UDP: datagrams in the repeat window this record stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_count: Option<u64>,
    /// `process.args` holds only the start of a longer command line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    /// Where the destination's name came from (`sni`, `http_host`, ..., `none`).
    #[serde(default)]
    pub name_source: String,
    /// A TLS (or QUIC) ClientHello was read: its fingerprint and offered protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientHelloFacts>,
    /// Through a proxy: the proxy itself (the destination is the proxy's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Endpoint>,
    /// Alerts: the list severity as a word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Alerts: the configured action (`alert`, `block`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocklist: Option<BlocklistSource>,
    /// Relay-discovery alerts: the base-URL variable that named the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_config: Option<RelayConfig>,
    /// The AI API request read from the connection's plaintext (TLS uprobes): what makes it
    /// an API call, never a credential or the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiRequest>,
    /// What is known of the relay: the software its answer named, how it was discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayFacts>,
    /// The process is a local forwarding proxy: the client whose request it forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<crate::correlate::local_clients::LocalClient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Lineage>,
    /// Dedupe summaries: repeats counted in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<Dedupe>,
    /// A sink's drop report: which sink, how many alerts it dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkDrops>,
    /// The syslog sink left bulky fields out to fit the collector's message size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkDrops {
    pub name: String,
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlocklistSource {
    pub file: String,
    pub line: u64,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayConfig {
    pub host: String,
    pub variable: String,
    pub pid: u32,
    /// Written as null when unknown (the process was gone).
    pub executable: Option<String>,
}

/// `relaywatch.api`: an AI API request seen in a connection's plaintext.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiRequest {
    /// `openai`, `anthropic` or `gemini`.
    pub family: String,
    /// The route as a template (`/v1/chat/completions`, `/v1beta/models/{model}:generateContent`).
    pub route: String,
    /// A path prefix before the route (`/openai`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub method: String,
    /// The request's Host / :authority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `http/1.1` or `h2`.
    pub protocol: String,
    /// Names of the API-identifying headers present (never their values).
    pub headers: Vec<String>,
    /// The provider-style prefix of the key the request carried (`sk-ant-`, `AIza`), never
    /// the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// The User-Agent's product token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The `model` the request asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The TLS library whose write was read (`openssl`, `gnutls`, `go`).
    pub library: String,
}

/// `relaywatch.relay`: what is known of a relay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayFacts {
    /// Relay software named by its response headers (`one-api`, `new-api`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// How the host became a known relay: `api-shape` (a request to it), `relay_config`
    /// (a client's configuration file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovered_by: Option<String>,
    /// When it was first seen as a relay (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// The configuration file that names the host (`relay_config` from a file)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// ...where in it (`env.ANTHROPIC_BASE_URL`, `model_providers.myrelay.base_url`), and the
    /// client it configures (`claude-code`, `codex`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// Who started the process, nearest first, up to pid 1.
    #[serde(default)]
    pub ancestors: Vec<Ancestor>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dedupe {
    pub repeats: u64,
    pub window_seconds: u64,
}

// A record that is not about a connection (a sink's drop report) has no network, destination,
// process, user or group: those are left out rather than written empty.
impl Network {
    fn is_unknown(&self) -> bool {
        self == &Network::default()
    }
}

impl Destination {
    fn is_unknown(&self) -> bool {
        self == &Destination::default()
    }
}

impl Process {
    fn is_unknown(&self) -> bool {
        self == &Process::default()
    }
}

impl User {
    fn is_unknown(&self) -> bool {
        self == &User::default()
    }
}

impl Group {
    fn is_unknown(&self) -> bool {
        self == &Group::default()
    }
}

impl Record {
    /// The ECS document (nested objects, as Elastic ingests them).
    pub fn to_ecs(&self) -> Value {
        serde_json::to_value(self).expect("a record always serializes")
    }

    /// A stored or queued ECS document read back; `None` when it is not one.
    pub fn from_ecs(doc: &Value) -> Option<Record> {
        Record::deserialize(doc).ok()
    }

    /// The rule category of an alert (`ai-provider`...).
    pub fn category(&self) -> Option<&str> {
        self.rule.as_ref().map(|r| r.category.as_str())
    }

    /// What the process reached: the destination's name, else its address.
    pub fn destination_name(&self) -> Option<&str> {
        self.destination
            .domain
            .as_deref()
            .or(self.destination.ip.as_deref())
    }

    /// Who made it: the executable, else the process name.
    pub fn process_identity(&self) -> &str {
        self.process
            .executable
            .as_deref()
            .unwrap_or(&self.process.name)
    }
}

/// A connection record of a curl to `domain` (for unit tests of what builds on records).
#[cfg(test)]
pub(crate) fn sample_record(exe: &str, domain: &str) -> Record {
    Record::from_ecs(&serde_json::json!({
        "@timestamp": "2026-12-03T12:00:00.000Z",
        "event": {"kind": "event", "type": ["connection", "start"]},
        "destination": {"domain": domain, "ip": "104.18.7.192", "port": 443},
        "process": {"pid": 42, "name": "curl", "executable": exe, "args": ["curl", "-s", "https://x/"]},
        "user": {"id": "1000", "name": "alice"},
        "relaywatch": {"name_source": "sni"},
    }))
    .expect("an ECS record")
}
