//! Command-line interface. Every flag is defined once here, with its documentation.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{NAME_WAIT_MS, UDP_WINDOW_MS};
use crate::control::api::{DEFAULT_SOCKET, MAX_LIMIT};

const EXIT_CODES: &str = "\
Exit codes of the query commands (status, alerts, connections, reload):
  0  ok
  1  the daemon answered with an error (or another error)
  2  usage error (bad flag or value)
  3  the daemon cannot be reached (not running, wrong --socket)
  4  permission denied (only root and members of the socket's group, relaywatch by default,
     may query the agent)";

#[derive(Parser, Debug)]
#[command(
    name = "relaywatch",
    version,
    about = "Which process sent data to an AI relay or an overseas AI API",
    long_about = None,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent in the foreground: load and attach the kernel programs, report connections.
    Run(RunFlags),
    /// Print or check the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write man pages (relaywatch.1 and one per subcommand) into DIR. Used by packaging.
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
    /// Write bash, zsh and fish completions into DIR. Used by packaging.
    #[command(hide = true)]
    GenerateCompletions { dir: PathBuf },
    /// Show the running agent's status: uptime, events and losses, lists, feeds, sinks, store.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// List stored alerts (most recent last), optionally following new ones.
    #[command(after_help = EXIT_CODES)]
    Alerts(AlertsArgs),
    /// List connection summaries: one row per executable, user and destination.
    #[command(after_help = EXIT_CODES)]
    Connections(ListArgs),
    /// List AI relays learned from the requests sent to them (hosts on no list): host, first
    /// seen, by which process and user, the API evidence.
    #[command(after_help = EXIT_CODES)]
    Relays(ConnectArgs),
    /// Ask the running agent to reload its configuration and blocklists.
    #[command(after_help = EXIT_CODES)]
    Reload(ConnectArgs),
    /// Check list files and look names or addresses up in the blocklists.
    #[command(subcommand)]
    Blocklist(BlocklistCommand),
}

/// How to reach the daemon.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Print JSON instead of a table: the status object, or one object per line for lists.
    #[arg(long)]
    pub json: bool,
}

/// `relaywatch status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Print every status field as a `key.sub: value` line instead of the summary.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
}

/// Filters of `alerts` and `connections`.
#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Only items since this long ago (30s, 15m, 1h, 2d) or since this RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Only items until this long ago or until this RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,

    /// Only this process: its name (curl) or its executable (/usr/bin/curl).
    #[arg(long, value_name = "NAME|PATH")]
    pub process: Option<String>,

    /// Only this process id.
    #[arg(long)]
    pub pid: Option<u32>,

    /// Only this user name.
    #[arg(long)]
    pub user: Option<String>,

    /// Only this destination domain or its subdomains (openai.com matches api.openai.com).
    #[arg(long)]
    pub domain: Option<String>,

    /// At most this many items, the most recent ones (the daemon's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_LIMIT as i64))]
    pub limit: Option<u32>,

    /// Keep running and print new items as they arrive (Ctrl-C to stop).
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub list: ListArgs,

    /// Only alerts of this rule category.
    #[arg(long)]
    pub category: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum BlocklistCommand {
    /// Check list files: print a summary per valid file, or every error as FILE:LINE: reason on
    /// stderr (exit status 1).
    Check(BlocklistCheckArgs),
    /// Look a name or an address up in the built-in lists and any --list files; exit status 0 on
    /// a match, 1 on none, 2 on a usage or list error.
    Test(BlocklistTestArgs),
    /// Resolve the lists' full: and domain: names once and print one line per address:
    /// IP NAME CATEGORY TTL. Exit status 0 when some name resolved (or there are no names), 1
    /// when none did, 2 on a usage or list error.
    Resolve(BlocklistResolveArgs),
    /// The running agent's active lists: file, category, action, rule count, source, version,
    /// sha256, when they were loaded, the last refused reload, each remote feed's state, and the
    /// suspected relays found in base-URL variables. Asks the daemon over its socket (exit status 3 when unreachable).
    List(ConnectArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BlocklistResolveArgs {
    /// DNS server to ask, IP:PORT. Without it the system resolver (/etc/resolv.conf, and
    /// /etc/hosts first) is used.
    #[arg(long, value_name = "IP:PORT")]
    pub nameserver: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub lists: ListSelection,

    /// Print one JSON object per address instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which lists `blocklist test` and `blocklist resolve` use.
#[derive(Args, Debug, Clone)]
pub struct ListSelection {
    /// An extra list file (repeatable).
    #[arg(long = "list", value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,

    /// Leave the built-in lists out.
    #[arg(long)]
    pub no_builtin: bool,

    /// Category for --list files whose header names none.
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BlocklistCheckArgs {
    /// Category for files whose header names none (for unmodified upstream v2fly files).
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,

    /// List files to check.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BlocklistTestArgs {
    #[command(flatten)]
    pub lists: ListSelection,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// The domain name or IP address to look up.
    #[arg(value_name = "NAME|IP")]
    pub target: String,
}

/// Flags of `relaywatch run`. They override the configuration file: a flag given on the
/// command line wins over the same setting in the file.
#[derive(Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Configuration file. Without this flag /etc/relaywatch/config.toml is read if it exists;
    /// built-in defaults are used otherwise. A file named here must exist.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Treat loopback, unspecified and link-local destinations as egress (normally skipped in
    /// the kernel). For tests and for watching local proxies. [file: agent.include_loopback]
    #[arg(long)]
    pub include_loopback: bool,

    /// Print one JSON record (ECS field names) on stdout for every outbound connection, not
    /// only for alerts. [file: agent.log_connections]
    #[arg(long)]
    pub log_connections: bool,

    /// Window in milliseconds in which repeated unconnected datagrams from one process to one
    /// destination are reported as one record with a count. [default: 2000; file:
    /// agent.udp_window_ms]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(UDP_WINDOW_MS.0..=UDP_WINDOW_MS.1))]
    pub udp_window_ms: Option<u64>,

    /// How long a connection's record waits for its first bytes to name it (TLS SNI, HTTP
    /// Host, proxy target) before it is written with DNS evidence or none. [default: 2000;
    /// file: agent.name_wait_ms]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(NAME_WAIT_MS.0..=NAME_WAIT_MS.1))]
    pub name_wait_ms: Option<u64>,

    /// Directory of the local store (relaywatch.db). [default: /var/lib/relaywatch; file:
    /// agent.state_dir]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where to serve the control API used by `relaywatch status`, `alerts`, ...
    /// [default: /run/relaywatch/relaywatch.sock; file: agent.socket]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Field names of the JSON records written on stdout and to sinks: ecs (Elastic Common
    /// Schema) or ocsf (OCSF 1.8.0 Network Activity). [default: ecs; file: output.format]
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub format: Option<crate::config::Format>,

    /// DNS server (IP:PORT) for resolving the blocklists' names in the background.
    /// [default: the system resolver; file: blocklists.nameserver]
    #[arg(long, value_name = "IP:PORT")]
    pub nameserver: Option<std::net::SocketAddr>,
}

impl RunFlags {
    /// What these flags lay over the configuration file.
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            config: self.config.clone(),
            include_loopback: self.include_loopback,
            log_connections: self.log_connections,
            udp_window_ms: self.udp_window_ms,
            name_wait_ms: self.name_wait_ms,
            state_dir: self.state_dir.clone(),
            socket: self.socket.clone(),
            format: self.format,
            nameserver: self.nameserver,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the default configuration file, every key commented out at its default and
    /// explained (the file installed as /etc/relaywatch/config.toml).
    Default,
    /// Check configuration files: print "FILE: ok", or each problem (file, line, key, reason)
    /// on stderr and exit 1.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_format_flag_overrides_the_file() {
        use clap::Parser as _;
        let flags = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Run(flags) => flags,
            other => unreachable!("{other:?}"),
        };
        let mut c =
            crate::config::Config::from_str_named("[output]\nformat = \"ocsf\"\n", "c.toml")
                .unwrap();
        c.apply_run_flags(&flags(&["relaywatch", "run"]).overrides());
        assert_eq!(
            c.output.format,
            crate::config::Format::Ocsf,
            "no flag: the file's value stays"
        );
        c.apply_run_flags(&flags(&["relaywatch", "run", "--format", "ecs"]).overrides());
        assert_eq!(c.output.format, crate::config::Format::Ecs);
        c.apply_run_flags(&flags(&["relaywatch", "run", "--format", "ocsf"]).overrides());
        assert_eq!(c.output.format, crate::config::Format::Ocsf);
        assert!(Cli::try_parse_from(["relaywatch", "run", "--format", "xml"]).is_err());
    }
}
