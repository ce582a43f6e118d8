//! The default configuration file: every key commented out at its default, explained
//! (`relaywatch config default`, installed by the package as /etc/relaywatch/config.toml).
/// The configuration file shipped in /etc/relaywatch/config.toml and printed by
/// `relaywatch config default`: every key, commented out at its default value, with its meaning.
///
/// Lines `#key = value` are settings (uncommenting them all gives the same configuration, which
/// the tests check); lines `# ...` are prose and examples.
pub fn default_toml() -> String {
    DEFAULT_TOML.to_owned()
}

pub(super) const DEFAULT_TOML: &str = r#"# relaywatch configuration (TOML).
#
# Every setting below is commented out at its built-in default: relaywatch runs the same with this
# file empty or absent. Uncomment and change what you need. Flags of `relaywatch run` override the
# values here. Check a file with `relaywatch config check FILE`; reload a running agent with
# `systemctl reload relaywatch` (or `relaywatch reload`).

[agent]
# Treat loopback, unspecified and link-local destinations as egress (normally skipped in the
# kernel). Local proxies (Clash, V2Ray, sing-box) are named through the proxy either way.
#include_loopback = false
# Write a record for every outbound connection, not only for alerts.
#log_connections = false
# Repeated unconnected datagrams from one process to one destination within this window (ms)
# are one record with a count. 10 to 600000.
#udp_window_ms = 2000
# How long (ms) a connection record waits for its destination name (TLS SNI, HTTP Host, DNS
# answer) before it is written without one. 0 to 60000.
#name_wait_ms = 2000
# Where the local store and queues live.
#state_dir = "/var/lib/relaywatch"
# The local API socket used by `relaywatch status`, `alerts`, `connections`, `reload`.
#socket = "/run/relaywatch/relaywatch.sock"
# Members of this group may use the local API socket.
#socket_group = "relaywatch"

[output]
# Field names of the JSON records on stdout: "ecs" (Elastic Common Schema) or "ocsf".
#format = "ecs"
# Write records on stdout (the journal, under systemd).
#stdout = true

# Sinks: where alerts are forwarded, one [[sink]] table each. None by default. Examples:
#
# [[sink]]
# kind = "syslog"                 # RFC 5424; url is udp://, tcp:// or tls:// HOST[:PORT]
# url = "tls://siem.example.com:6514"
# ca_file = "/etc/relaywatch/siem-ca.pem"   # optional: trust this CA instead of the system's
# queue_max_bytes = 67108864      # on-disk buffer while the collector is down (default 64 MiB)
#
# [[sink]]
# kind = "file"                   # JSON lines; path is required
# path = "/var/log/relaywatch/alerts.json"
# max_bytes = 104857600           # rotate at this size (default 100 MiB)
# max_files = 5                   # rotated files kept (default 5)
#
# [[sink]]
# kind = "splunk-hec"             # url and token_file are required
# url = "https://splunk.example.com:8088"
# token_file = "/etc/relaywatch/hec.token"
# index = "security"              # optional; the token's default index otherwise
# ca_file = "/etc/relaywatch/siem-ca.pem"   # optional (https://): trust this CA instead of the system's
#
# [[sink]]
# kind = "elasticsearch"          # also OpenSearch; url is required
# url = "https://elastic.example.com:9200"
# token_file = "/etc/relaywatch/elastic.apikey"   # optional API key
# index = "logs-relaywatch-default"               # the default
# ca_file = "/etc/relaywatch/siem-ca.pem"         # optional (https://), as above

[blocklists]
# List files: absolute paths or glob patterns.
#files = ["/etc/relaywatch/blocklist.d/*.list"]
# Also use the lists compiled into relaywatch.
#builtin = true
# How often (s) names on the lists are resolved to addresses again.
#resolve_interval_s = 3600
# DNS server ("IP:PORT") for resolving list names; the system resolver when unset. Example:
# nameserver = "127.0.0.1:53"

# Remote lists fetched over HTTPS, one [[blocklists.feed]] table each. None by default. Each is
# checked every interval_s (and at start and on reload) with If-None-Match / If-Modified-Since,
# kept under state_dir/feeds/, and used from there while its server is unreachable. A body that
# is not a valid list (or fails the pin) is refused; the previous copy stays in use. Example:
#
# [[blocklists.feed]]
# url = "https://lists.example.com/ai-relay.list"   # https:// only
# category = "ai-relay"           # optional if the list's header names one; if both, they must agree
# sha256 = "0000000000000000000000000000000000000000000000000000000000000000"   # optional pin
# interval_s = 3600               # 10 to 604800 (default 3600)
# ca_file = "/etc/relaywatch/feed-ca.pem"   # optional: trust this CA instead of the system's
# max_bytes = 67108864            # largest list accepted: 1024 to 67108864 (default 64 MiB)
# timeout_s = 120                 # one check, connecting to the end of the body: 1 to 600 (default 120)

[blocklists.actions]
# What a match in each category does: "ignore", "alert", or "block" (enforcement, opt-in).
#ai-relay = "alert"
#ai-provider = "alert"
#ai-aggregator = "alert"
#ai-tool = "alert"
#ai-domestic = "ignore"

[alerts]
# Repeated alerts for the same process, destination and rule within this many seconds are one.
#dedupe_window_s = 600

[store]
# The local store (SQLite, under state_dir): records older than this are deleted...
#retention_days = 30
# ...and the oldest are deleted when it grows past this size (bytes; default 512 MiB).
#max_bytes = 536870912

[discovery]
# Relays no list knows are often configured on the client side, in a base-URL variable. When a
# program starts (and for every process running when the agent starts) these variables, and no
# others, are read from its environment; only the URL's host is kept. A host no list knows is a
# suspected relay: connections to it alert as ai-relay (name_source "relay_config"), and
# `relaywatch status` lists it. Names that look like secrets (KEY, TOKEN...) are refused.
#enabled = true
#variables = ["OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_URL", "GOOGLE_GEMINI_BASE_URL", "GEMINI_BASE_URL", "GEMINI_API_BASE_URL", "AZURE_OPENAI_ENDPOINT", "OPENROUTER_BASE_URL", "DEEPSEEK_BASE_URL", "MISTRAL_BASE_URL", "GROQ_BASE_URL", "XAI_BASE_URL"]
# The request itself: the first request head of each TLS connection is read before encryption
# (uprobes on OpenSSL, GnuTLS and Go's crypto/tls). An OpenAI / Anthropic / Gemini API request
# (route, API headers) to a host no list names raises an ai-relay alert (rule "api-shape") and
# the host becomes a known relay (`relaywatch relays`). Kept: method, route, Host, the names of
# API headers, the key's provider prefix (sk-, sk-ant-, AIza), the User-Agent product, the
# model. Never a header value that carries a credential, never the body or prompt.
# Off by default: a uprobe traps on every SSL_write / SSL_read of every process (about 15 us
# each on the development VM), which slows kept-alive TLS traffic and TLS servers a lot. Turn it
# on where finding unknown relays is worth that cost.
#api_requests = false
# AI clients' configuration files of every user (Claude Code settings.json, Codex config.toml,
# Gemini CLI .env, cc-switch, Cursor, systemd Environment=): their base URLs name relays for
# that user's processes only. Only the host and the file's path are kept.
#config_files = true
# Sanctioned AI gateways (a company LiteLLM, a cloud AI gateway): API requests to them, or by
# these programs / systemd units, are not relay traffic. Loopback is never a relay. E.g.
# allow_hosts = ["llm-gateway.corp.example"], allow_cidrs = ["10.20.0.0/16"],
# allow_executables = ["/opt/litellm/bin/litellm"], allow_units = ["litellm.service"].
#allow_hosts = []
#allow_cidrs = []
#allow_executables = []
#allow_units = []

[metrics]
# Prometheus text-format endpoint at http://LISTEN/metrics. Off by default. It has no
# authentication: keep it on a loopback address unless the port is firewalled.
#enabled = false
#listen = "127.0.0.1:9464"
"#;
