//! The configuration file (TOML, /etc/relaywatch/config.toml by default).
//!
//! Every key has a default, so the daemon runs with no file at all. Loading happens in two
//! stages:
//! 1. serde reads the text into the section structs. Syntax errors, unknown keys (every table
//!    denies unknown fields: a typo must not silently fall back to a default) and wrong types stop
//!    here, reported with line, column and key path.
//! 2. `validate` checks ranges, the per-kind rules of `[[sink]]` tables and the
//!    `[[blocklists.feed]]` tables, collecting every problem, and turns each raw sink into a
//!    typed [`Sink`].
//!
//! Command-line flags of `relaywatch run` override the file (see [`Config::apply_run_flags`]).
use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

mod default;
mod parse;

pub use default::default_toml;
pub use parse::redacted_url;
use parse::{parse, validate};

pub const DEFAULT_PATH: &str = "/etc/relaywatch/config.toml";

const MIB: u64 = 1024 * 1024;

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub agent: Agent,
    pub output: Output,
    pub sinks: Vec<Sink>,
    pub blocklists: Blocklists,
    pub alerts: Alerts,
    pub store: Store,
    pub metrics: Metrics,
    pub discovery: Discovery,
}

/// `[agent]`: what the kernel side reports and where the daemon keeps its state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Agent {
    pub include_loopback: bool,
    pub log_connections: bool,
    pub udp_window_ms: u64,
    pub name_wait_ms: u64,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_group: String,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            include_loopback: false,
            log_connections: false,
            udp_window_ms: 2000,
            name_wait_ms: 2000,
            state_dir: PathBuf::from("/var/lib/relaywatch"),
            socket: PathBuf::from("/run/relaywatch/relaywatch.sock"),
            socket_group: "relaywatch".into(),
        }
    }
}

pub const UDP_WINDOW_MS: (u64, u64) = (10, 600_000);
pub const NAME_WAIT_MS: (u64, u64) = (0, 60_000);

/// `[output]`: the records written on stdout.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    pub format: Format,
    pub stdout: bool,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            format: Format::Ecs,
            stdout: true,
        }
    }
}

/// Field naming of output records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Elastic Common Schema.
    Ecs,
    /// Open Cybersecurity Schema Framework.
    Ocsf,
}

/// One `[[sink]]`: where alerts are forwarded, validated per kind. `ca_file` (PEM) replaces the
/// system's trust store (/etc/ssl/certs/ca-certificates.crt) for tls:// and https:// URLs.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// RFC 5424 syslog; `url` is udp://, tcp:// or tls:// HOST[:PORT].
    Syslog {
        url: String,
        ca_file: Option<PathBuf>,
        queue_max_bytes: u64,
    },
    /// JSON lines in a local file, rotated at `max_bytes`, keeping `max_files` old files.
    File {
        path: PathBuf,
        max_bytes: u64,
        max_files: u32,
    },
    /// Splunk HTTP Event Collector; the token is read from `token_file`.
    SplunkHec {
        url: String,
        token_file: PathBuf,
        index: Option<String>,
        ca_file: Option<PathBuf>,
        queue_max_bytes: u64,
    },
    /// Elasticsearch / OpenSearch bulk API; `token_file` holds an API key if the cluster needs one.
    Elasticsearch {
        url: String,
        token_file: Option<PathBuf>,
        index: String,
        ca_file: Option<PathBuf>,
        queue_max_bytes: u64,
    },
}

pub const SINK_QUEUE_MAX_BYTES: u64 = 64 * MIB;
pub const FILE_SINK_MAX_BYTES: u64 = 100 * MIB;
pub const FILE_SINK_MAX_FILES: u32 = 5;
pub const ELASTICSEARCH_INDEX: &str = "logs-relaywatch-default";

impl Sink {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Syslog { .. } => SinkKind::Syslog.name(),
            Sink::File { .. } => SinkKind::File.name(),
            Sink::SplunkHec { .. } => SinkKind::SplunkHec.name(),
            Sink::Elasticsearch { .. } => SinkKind::Elasticsearch.name(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SinkKind {
    Syslog,
    File,
    SplunkHec,
    Elasticsearch,
}

impl SinkKind {
    fn name(self) -> &'static str {
        match self {
            SinkKind::Syslog => "syslog",
            SinkKind::File => "file",
            SinkKind::SplunkHec => "splunk-hec",
            SinkKind::Elasticsearch => "elasticsearch",
        }
    }
}

/// A `[[sink]]` table as written, before the per-kind rules are applied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: SinkKind,
    url: Option<String>,
    path: Option<PathBuf>,
    token_file: Option<PathBuf>,
    max_bytes: Option<u64>,
    max_files: Option<u32>,
    queue_max_bytes: Option<u64>,
    index: Option<String>,
    ca_file: Option<PathBuf>,
}

/// `[blocklists]`: where the lists of AI relays and providers come from and what each category does.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Blocklists {
    /// Paths or glob patterns of list files.
    pub files: Vec<String>,
    /// Use the lists compiled into the binary.
    pub builtin: bool,
    pub resolve_interval_s: u64,
    /// DNS server for resolving list names; None: the system resolver.
    pub nameserver: Option<SocketAddr>,
    pub actions: Actions,
    /// Remote lists, `[[blocklists.feed]]`.
    #[serde(rename = "feed", skip_serializing_if = "Vec::is_empty")]
    pub feeds: Vec<Feed>,
}

impl Default for Blocklists {
    fn default() -> Self {
        Blocklists {
            files: vec!["/etc/relaywatch/blocklist.d/*.list".into()],
            builtin: true,
            resolve_interval_s: 3600,
            nameserver: None,
            actions: Actions::default(),
            feeds: Vec::new(),
        }
    }
}

/// One `[[blocklists.feed]]`: a list fetched over HTTPS every `interval_s` (see `feeds`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// `https://HOST[:PORT]/PATH`; plain http:// is refused.
    pub url: String,
    /// The list's category. Optional when the list's header names one; when set, a header
    /// naming another category is an error.
    #[serde(default)]
    pub category: Option<crate::intel::blocklist::Category>,
    /// Pin: only a body with this SHA-256 (64 hex digits, stored in lower case) is accepted.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default = "Feed::default_interval_s")]
    pub interval_s: u64,
    /// PEM file of the CA to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The largest body accepted: a longer answer is refused as soon as its Content-Length says
    /// so, or when this many bytes have been read.
    #[serde(default = "Feed::default_max_bytes")]
    pub max_bytes: u64,
    /// Time allowed for one check, from connecting to the end of the body.
    #[serde(default = "Feed::default_timeout_s")]
    pub timeout_s: u64,
}

impl Feed {
    fn default_interval_s() -> u64 {
        3600
    }

    pub fn default_max_bytes() -> u64 {
        FEED_MAX_BYTES.1
    }

    pub fn default_timeout_s() -> u64 {
        120
    }
}

/// Bounds of `[[blocklists.feed]] max_bytes`: the default is the most, since the body is held
/// in memory while it is checked.
pub const FEED_MAX_BYTES: (u64, u64) = (1024, 64 << 20);

/// Bounds of `[[blocklists.feed]] timeout_s`.
pub const FEED_TIMEOUT_S: (u64, u64) = (1, 600);

/// Bounds of `[[blocklists.feed]] interval_s`: often enough to be useful in tests and for
/// fast-moving lists, never so often that a fleet of agents hammers the list's server.
pub const FEED_INTERVAL_S: (u64, u64) = (10, 604_800);

/// `[blocklists.actions]`: the action per blocklist category.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Actions {
    pub ai_relay: Action,
    pub ai_provider: Action,
    pub ai_aggregator: Action,
    pub ai_tool: Action,
    pub ai_domestic: Action,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            ai_relay: Action::Alert,
            ai_provider: Action::Alert,
            ai_aggregator: Action::Alert,
            ai_tool: Action::Alert,
            ai_domestic: Action::Ignore,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Ignore,
    Alert,
    Block,
}

/// `[alerts]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alerts {
    /// One alert per (process, destination, rule) within this many seconds.
    pub dedupe_window_s: u64,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            dedupe_window_s: 600,
        }
    }
}

/// `[store]`: the local SQLite store under the state directory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    pub retention_days: u64,
    pub max_bytes: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            retention_days: 30,
            max_bytes: 512 * MIB,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[discovery]`: relays named in the base-URL variables of AI clients (OPENAI_BASE_URL...).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Discovery {
    pub enabled: bool,
    /// The variables read from /proc/PID/environ; nothing else is read.
    pub variables: Vec<String>,
    /// Read the first request of TLS connections (uprobes on TLS libraries) and alert on AI
    /// API requests to hosts no list names (`rule.name: api-shape`).
    pub api_requests: bool,
    /// Read AI clients' configuration files (Claude Code, Codex, Gemini CLI, cc-switch,
    /// Cursor, systemd units) for base URLs, per user.
    pub config_files: bool,
    /// Sanctioned AI gateways: an API request to one of these is not a relay.
    pub allow_hosts: Vec<String>,
    /// Sanctioned gateways by address (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
    pub allow_cidrs: Vec<String>,
    /// Programs whose API requests never count as relay traffic (absolute paths).
    pub allow_executables: Vec<String>,
    /// systemd units whose API requests never count as relay traffic (`litellm.service`).
    pub allow_units: Vec<String>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            enabled: true,
            variables: crate::intel::discovery::DEFAULT_VARIABLES
                .iter()
                .map(|v| v.to_string())
                .collect(),
            // Off until the per-call cost of uprobes is bounded (every SSL_write/SSL_read of
            // every process traps; see README "Measured overhead").
            api_requests: false,
            config_files: true,
            allow_hosts: Vec::new(),
            allow_cidrs: Vec::new(),
            allow_executables: Vec::new(),
            allow_units: Vec::new(),
        }
    }
}

impl Discovery {
    /// The variables to read: none when disabled.
    pub fn active_variables(&self) -> Vec<String> {
        if self.enabled {
            self.variables.clone()
        } else {
            Vec::new()
        }
    }
}

/// The file as deserialized: sinks still raw.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    agent: Agent,
    output: Output,
    #[serde(rename = "sink")]
    sinks: Vec<RawSink>,
    blocklists: Blocklists,
    alerts: Alerts,
    store: Store,
    metrics: Metrics,
    discovery: Discovery,
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column, when the parser knows them.
    pub position: Option<(usize, usize)>,
    /// The message, starting with the key path where there is one (`agent.udp_window_ms: ...`).
    pub message: String,
}

/// Everything wrong with one configuration file; displayed as one line per problem, each
/// starting with the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.position {
                Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, p.message)?,
                None => write!(f, "{}: {}", self.file, p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and validate the file at `path`. A missing file is an error here; see
    /// [`Config::load_or_default`] for the daemon's rule.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            problems: vec![Problem {
                position: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::from_str_named(&text, &name)
    }

    /// The daemon's rule: an explicit `--config PATH` must exist; without one, the default path
    /// is read if it exists, and built-in defaults are used if it does not.
    pub fn load_or_default(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Config::load(path),
            None if Path::new(DEFAULT_PATH).exists() => Config::load(Path::new(DEFAULT_PATH)),
            None => Ok(Config::default()),
        }
    }

    /// Parse and validate `text`; `name` (usually the path) starts every error line.
    pub fn from_str_named(text: &str, name: &str) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: name.to_owned(),
            problems,
        };
        let raw = parse(text).map_err(|p| fail(vec![p]))?;
        validate(raw).map_err(fail)
    }

    /// The configuration `relaywatch run` uses: the file named by `--config` (or the default
    /// file, or built-in defaults), then the flags on top of it.
    pub fn for_run(flags: &Overrides) -> Result<Config, ConfigError> {
        let mut config = Config::load_or_default(flags.config.as_deref())?;
        config.apply_run_flags(flags);
        Ok(config)
    }

    /// Let `relaywatch run` flags override the file. A boolean flag can only switch a feature
    /// on (its absence says nothing, so a `true` in the file stays); a valued flag overrides
    /// when it is given.
    pub fn apply_run_flags(&mut self, flags: &Overrides) {
        self.agent.include_loopback |= flags.include_loopback;
        self.agent.log_connections |= flags.log_connections;
        if let Some(ms) = flags.udp_window_ms {
            self.agent.udp_window_ms = ms;
        }
        if let Some(ns) = flags.nameserver {
            self.blocklists.nameserver = Some(ns);
        }
        if let Some(ms) = flags.name_wait_ms {
            self.agent.name_wait_ms = ms;
        }
        if let Some(dir) = &flags.state_dir {
            self.agent.state_dir = dir.clone();
        }
        if let Some(socket) = &flags.socket {
            self.agent.socket = socket.clone();
        }
        if let Some(format) = flags.format {
            self.output.format = format;
        }
    }
}

/// What `relaywatch run`'s flags say (`cli::RunFlags` turns into this), laid over the file by
/// `Config::for_run`. `None` and `false` say nothing.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub include_loopback: bool,
    pub log_connections: bool,
    pub udp_window_ms: Option<u64>,
    pub name_wait_ms: Option<u64>,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub format: Option<Format>,
    pub nameserver: Option<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default::DEFAULT_TOML, parse::line_col};

    fn errors(text: &str) -> Vec<String> {
        Config::from_str_named(text, "c.toml")
            .unwrap_err()
            .to_string()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Uncomment every `#key = value` line of the default file.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every key path of the default configuration, from its serialized form.
    fn key_paths(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => key_paths(&path, t, out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(
            Config::from_str_named("", "c.toml").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn default_file_parses_to_the_default_as_is_and_uncommented() {
        let text = default_toml();
        assert_eq!(
            Config::from_str_named(&text, "default").unwrap(),
            Config::default()
        );
        let active = uncommented(&text);
        assert_eq!(
            Config::from_str_named(&active, "uncommented").unwrap(),
            Config::default()
        );
        // Every key with a value by default is set in it (nameserver, unset, has an example).
        let d = Config::default();
        let mut table = toml::Table::new();
        for (name, section) in [
            ("agent", toml::Table::try_from(&d.agent).unwrap()),
            ("output", toml::Table::try_from(&d.output).unwrap()),
            ("blocklists", toml::Table::try_from(&d.blocklists).unwrap()),
            ("alerts", toml::Table::try_from(&d.alerts).unwrap()),
            ("store", toml::Table::try_from(&d.store).unwrap()),
            ("metrics", toml::Table::try_from(&d.metrics).unwrap()),
            ("discovery", toml::Table::try_from(&d.discovery).unwrap()),
        ] {
            table.insert(name.into(), toml::Value::Table(section));
        }
        let mut expected = Vec::new();
        key_paths("", &table, &mut expected);
        let mut written = Vec::new();
        key_paths("", &active.parse::<toml::Table>().unwrap(), &mut written);
        assert!(expected.len() >= 22, "{expected:?}");
        for key in &expected {
            assert!(
                written.contains(key),
                "default_toml() does not document {key}"
            );
        }
    }

    /// The commented example of the default file that starts with the line `# FIRST`, uncommented.
    fn example(first: &str) -> String {
        DEFAULT_TOML
            .lines()
            .skip_while(|l| l.strip_prefix("# ") != Some(first))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect()
    }

    #[test]
    fn sink_examples_in_the_default_file_are_valid() {
        let c = Config::from_str_named(&example("[[sink]]"), "examples").unwrap();
        let kinds: Vec<_> = c.sinks.iter().map(Sink::kind).collect();
        assert_eq!(kinds, ["syslog", "file", "splunk-hec", "elasticsearch"]);
    }

    #[test]
    fn url_errors_never_show_credentials() {
        assert_eq!(
            redacted_url("https://u:pw@h.example:8443/a/b?token=s3cret#x"),
            "https://…@h.example:8443/a/b?…"
        );
        assert_eq!(
            redacted_url("https://h.example/list"),
            "https://h.example/list"
        );
        assert_eq!(redacted_url("https://h?token=s3cret"), "https://h?…");
        let e = errors("[[blocklists.feed]]\nurl = \"http://u:pw@h.example/l?token=s3cret\"\n")
            .join("\n");
        assert!(!e.contains("s3cret") && !e.contains("pw@"), "{e}");
        let e =
            errors("[[blocklists.feed]]\nurl = \"https://h.example?token=s3cret\"\n").join("\n");
        assert!(!e.contains("s3cret") && e.contains("bad host"), "{e}");
    }

    #[test]
    fn discovery_refuses_secret_looking_variables() {
        let e = errors(
            "[discovery]\nvariables = [\"OPENAI_BASE_URL\", \"OPENAI_API_KEY\", \"bad name\"]\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with(
                "c.toml: discovery.variables[1]: \"OPENAI_API_KEY\" looks like a secret"
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("c.toml: discovery.variables[2]: \"bad name\" is not a variable name"),
            "{e:?}"
        );
        let off = Config::from_str_named("[discovery]\nenabled = false\n", "c.toml").unwrap();
        assert!(off.discovery.active_variables().is_empty());
    }

    #[test]
    fn feed_example_in_the_default_file_is_valid() {
        let c = Config::from_str_named(&example("[[blocklists.feed]]"), "example").unwrap();
        assert_eq!(
            c.blocklists.feeds,
            [Feed {
                url: "https://lists.example.com/ai-relay.list".into(),
                category: Some(crate::intel::blocklist::Category::AiRelay),
                sha256: Some("0".repeat(64)),
                interval_s: 3600,
                ca_file: Some("/etc/relaywatch/feed-ca.pem".into()),
                max_bytes: 64 << 20,
                timeout_s: 120,
            }]
        );
    }

    #[test]
    fn feeds_are_checked() {
        let c = Config::from_str_named(
            &format!(
                "[[blocklists.feed]]\nurl = \"https://127.0.0.1:8443/a.list\"\nsha256 = \"{}\"\n",
                "AB".repeat(32)
            ),
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            c.blocklists.feeds[0].sha256.as_deref(),
            Some("ab".repeat(32).as_str()),
            "the pin is stored in lower case"
        );
        assert_eq!(
            (
                c.blocklists.feeds[0].interval_s,
                c.blocklists.feeds[0].category,
                c.blocklists.feeds[0].max_bytes,
                c.blocklists.feeds[0].timeout_s,
            ),
            (3600, None, 64 << 20, 120)
        );
        assert_eq!(
            errors(
                "[[blocklists.feed]]\nurl = \"http://lists.example.com/a.list\"\nsha256 = \"abc\"\ninterval_s = 5\nca_file = \"ca.pem\"\n\
                 [[blocklists.feed]]\nurl = \"https://h/a\"\ninterval_s = 604801\nmax_bytes = 67108865\ntimeout_s = 601\n\
                 [[blocklists.feed]]\nurl = \"https://h/a\"\nmax_bytes = 1023\ntimeout_s = 0\n"
            ),
            [
                "c.toml: blocklists.feed[0].url: \"http://lists.example.com/a.list\": scheme \"http\" is not supported here (expected https://)",
                "c.toml: blocklists.feed[0].sha256: \"abc\" is not a SHA-256 digest (64 hex digits)",
                "c.toml: blocklists.feed[0].interval_s: 5 is outside 10 to 604800",
                "c.toml: blocklists.feed[0].ca_file: \"ca.pem\" is not an absolute path",
                "c.toml: blocklists.feed[1].interval_s: 604801 is outside 10 to 604800",
                "c.toml: blocklists.feed[1].max_bytes: 67108865 is outside 1024 to 67108864",
                "c.toml: blocklists.feed[1].timeout_s: 601 is outside 1 to 600",
                "c.toml: blocklists.feed[2].max_bytes: 1023 is outside 1024 to 67108864",
                "c.toml: blocklists.feed[2].timeout_s: 0 is outside 1 to 600",
                "c.toml: blocklists.feed[2].url: \"https://h/a\" is already a feed",
            ]
        );
        assert!(
            errors("[[blocklists.feed]]\ncategory = \"ai-relay\"\n")[0]
                .contains("blocklists.feed[0]: missing field `url`"),
            "{:?}",
            errors("[[blocklists.feed]]\ncategory = \"ai-relay\"\n")
        );
        let e = errors("[[blocklists.feed]]\nurl = \"https://h/a\"\ncategory = \"ai-relays\"\n");
        assert!(
            e[0].starts_with(
                "c.toml:3:12: blocklists.feed[0].category: unknown variant `ai-relays`"
            ),
            "{e:?}"
        );
        let e = errors("[[blocklists.feed]]\nurl = \"https://h/a\"\nsha = \"x\"\n");
        assert!(
            e[0].starts_with("c.toml:3:1: unknown key \"blocklists.feed[0].sha\""),
            "{e:?}"
        );
    }

    #[test]
    fn values_are_read() {
        let c = Config::from_str_named(
            "[agent]\nudp_window_ms = 10\nname_wait_ms = 0\n[output]\nformat = \"ocsf\"\n\
             [blocklists]\nnameserver = \"127.0.0.1:5353\"\n[blocklists.actions]\nai-domestic = \"block\"\n\
             [metrics]\nenabled = true\nlisten = \"[::1]:9000\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.agent.udp_window_ms, 10);
        assert_eq!(c.agent.name_wait_ms, 0);
        assert_eq!(c.output.format, Format::Ocsf);
        assert_eq!(
            c.blocklists.nameserver,
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(c.blocklists.actions.ai_domestic, Action::Block);
        assert_eq!(c.blocklists.actions.ai_relay, Action::Alert);
        assert_eq!(c.metrics.listen, "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn unknown_key_names_its_path_and_line() {
        assert_eq!(
            errors("[agent]\n\ninclude_loopbak = true\n"),
            [
                "c.toml:3:1: unknown key \"agent.include_loopbak\" (expected one of `include_loopback`, `log_connections`, `udp_window_ms`, `name_wait_ms`, `state_dir`, `socket`, `socket_group`)"
            ]
        );
        assert!(
            errors("[agnet]\n")[0].starts_with("c.toml:1:2: unknown key \"agnet\""),
            "{:?}",
            errors("[agnet]\n")
        );
        assert!(
            errors("[[sink]]\nkind = \"file\"\npath = \"/x\"\nurl2 = 1\n")[0]
                .starts_with("c.toml:4:1: unknown key \"sink[0].url2\"")
        );
        assert!(
            errors("[blocklists.actions]\nai-relays = \"alert\"\n")[0]
                .starts_with("c.toml:2:1: unknown key \"blocklists.actions.ai-relays\"")
        );
    }

    #[test]
    fn wrong_types_and_values_name_the_key() {
        assert_eq!(
            errors("[agent]\nudp_window_ms = \"5\"\n"),
            ["c.toml:2:17: agent.udp_window_ms: invalid type: string \"5\", expected u64"]
        );
        assert_eq!(
            errors("[output]\nformat = \"xml\"\n"),
            ["c.toml:2:10: output.format: unknown variant `xml`, expected `ecs` or `ocsf`"]
        );
        assert_eq!(
            errors("[metrics]\nlisten = \"localhost\"\n"),
            ["c.toml:2:10: metrics.listen: invalid socket address syntax"]
        );
        assert_eq!(
            errors("[agent]\nudp_window_ms = -1\n"),
            ["c.toml:2:17: agent.udp_window_ms: invalid value: integer `-1`, expected u64"]
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = errors("[agent]\ninclude_loopback = \n");
        assert!(e[0].starts_with("c.toml:2:"), "{e:?}");
        let e = errors("[agent]\nsocket = \"/a\"\nsocket = \"/b\"\n");
        assert!(
            e[0].starts_with("c.toml:3:") && e[0].contains("duplicate"),
            "{e:?}"
        );
    }

    #[test]
    fn ranges_are_checked_and_all_problems_reported() {
        assert_eq!(
            errors(
                "[agent]\nudp_window_ms = 5\nname_wait_ms = 60001\nstate_dir = \"var/lib\"\n[blocklists]\nfiles = [\"x.list\"]\n"
            ),
            [
                "c.toml: agent.udp_window_ms: 5 is below the minimum 10",
                "c.toml: agent.name_wait_ms: 60001 is above the maximum 60000",
                "c.toml: agent.state_dir: \"var/lib\" is not an absolute path",
                "c.toml: blocklists.files[0]: \"x.list\" is not an absolute path",
            ]
        );
    }

    #[test]
    fn sinks_are_checked_per_kind() {
        assert_eq!(
            errors(
                "[[sink]]\nkind = \"file\"\npath = \"/var/log/a.json\"\n\
                 [[sink]]\nkind = \"syslog\"\ntoken_file = \"/t\"\n\
                 [[sink]]\nkind = \"splunk-hec\"\nurl = \"udp://h:1\"\n\
                 [[sink]]\nkind = \"syslog\"\nurl = \"tcp://h:99999\"\n\
                 [[sink]]\nkind = \"elasticsearch\"\nurl = \"https://:9200\"\nmax_files = 0\n"
            ),
            [
                "c.toml: sink[1].url: missing (required for kind \"syslog\")",
                "c.toml: sink[1].token_file: not allowed for kind \"syslog\"",
                "c.toml: sink[2].token_file: missing (required for kind \"splunk-hec\")",
                "c.toml: sink[2].url: \"udp://h:1\": scheme \"udp\" is not supported here (expected http://, https://)",
                "c.toml: sink[3].url: \"tcp://h:99999\": bad port \"99999\"",
                "c.toml: sink[4].max_files: not allowed for kind \"elasticsearch\"",
                "c.toml: sink[4].url: \"https://:9200\": missing or bad host",
                "c.toml: sink[4].max_files: must be greater than 0",
            ]
        );
        assert!(
            errors("[[sink]]\nkind = \"kafka\"\n")[0]
                .starts_with("c.toml:2:8: sink[0].kind: unknown variant `kafka`")
        );
        assert_eq!(
            errors("[[sink]]\nkind = \"syslog\"\nurl = \"tcp://h:1\"\nca_file = \"ca.pem\"\n"),
            [
                "c.toml: sink[0].ca_file: only used with tls:// or https:// URLs",
                "c.toml: sink[0].ca_file: \"ca.pem\" is not an absolute path"
            ]
        );
        let c = Config::from_str_named(
            "[[sink]]\nkind = \"syslog\"\nurl = \"tls://h\"\nca_file = \"/ca.pem\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            c.sinks,
            [Sink::Syslog {
                url: "tls://h".into(),
                ca_file: Some("/ca.pem".into()),
                queue_max_bytes: SINK_QUEUE_MAX_BYTES
            }]
        );
    }

    #[test]
    fn sinks_get_their_defaults() {
        let c = Config::from_str_named(
            "[[sink]]\nkind = \"syslog\"\nurl = \"udp://[::1]:514\"\n\
             [[sink]]\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200/prefix\"\n\
             [[sink]]\nkind = \"file\"\npath = \"/var/log/relaywatch/a.json\"\nmax_files = 2\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            c.sinks,
            [
                Sink::Syslog {
                    url: "udp://[::1]:514".into(),
                    ca_file: None,
                    queue_max_bytes: SINK_QUEUE_MAX_BYTES
                },
                Sink::Elasticsearch {
                    url: "http://127.0.0.1:9200/prefix".into(),
                    token_file: None,
                    index: ELASTICSEARCH_INDEX.into(),
                    ca_file: None,
                    queue_max_bytes: SINK_QUEUE_MAX_BYTES
                },
                Sink::File {
                    path: "/var/log/relaywatch/a.json".into(),
                    max_bytes: FILE_SINK_MAX_BYTES,
                    max_files: 2
                },
            ]
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Config::load(Path::new("/nonexistent/relaywatch.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/relaywatch.toml: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\nbé c", 6), (2, 4));
        assert_eq!(line_col("", 10), (1, 1));
    }
}
