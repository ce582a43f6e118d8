//! The naming model: a destination's name and the evidence it came from, as every later stage
//! (classification, records, alerts) reads it.

/// Where a record's destination name came from (`relaywatch.name_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    Sni,
    HttpHost,
    ProxyTarget,
    QuicSni,
    DnsAnswerProcess,
    DnsAnswerHost,
    ResolvedBlocklist,
    /// The destination is a host named in a base-URL variable of some process (discovery.rs).
    RelayConfig,
    None,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Sni => "sni",
            NameSource::HttpHost => "http_host",
            NameSource::ProxyTarget => "proxy_target",
            NameSource::QuicSni => "quic_sni",
            NameSource::DnsAnswerProcess => "dns_answer_process",
            NameSource::DnsAnswerHost => "dns_answer_host",
            NameSource::ResolvedBlocklist => "resolved_blocklist",
            NameSource::RelayConfig => "relay_config",
            NameSource::None => "none",
        }
    }
}

/// What the TLS ClientHello said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsEvidence {
    pub server_name: Option<String>,
    pub ja4: String,
    pub alpn: Vec<String>,
}

/// The real destination of a connection through a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    pub host: String,
    pub port: u16,
}

/// Everything known about a destination's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    pub domain: Option<String>,
    pub source: NameSource,
    pub tls: Option<TlsEvidence>,
    pub proxy: Option<ProxyTarget>,
}

impl Naming {
    pub fn unnamed() -> Naming {
        Naming {
            domain: None,
            source: NameSource::None,
            tls: None,
            proxy: None,
        }
    }
}
