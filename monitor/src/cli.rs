//! Command-line interface. Every flag is defined once here, with its documentation.
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "relaywatch", version, about = "Which process sent data to an AI relay or an overseas AI API", long_about = None)]
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
    Run(RunArgs),
    /// Check list files and look names or addresses up in the blocklists.
    #[command(subcommand)]
    Blocklist(BlocklistCommand),
}

#[derive(Subcommand, Debug)]
pub enum BlocklistCommand {
    /// Check list files: print a summary per valid file, or every error as FILE:LINE: reason on
    /// stderr (exit status 1).
    Check(BlocklistCheckArgs),
    /// Look a name or an address up in the built-in lists and any --list files; exit status 0 on
    /// a match, 1 on none, 2 on a usage or list error.
    Test(BlocklistTestArgs),
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
    /// An extra list file to check against (repeatable).
    #[arg(long = "list", value_name = "FILE")]
    pub lists: Vec<std::path::PathBuf>,

    /// Leave the built-in lists out.
    #[arg(long)]
    pub no_builtin: bool,

    /// Category for --list files whose header names none.
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// The domain name or IP address to look up.
    #[arg(value_name = "NAME|IP")]
    pub target: String,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Treat loopback, unspecified and link-local destinations as egress (normally skipped in
    /// the kernel). For tests and for watching local proxies.
    #[arg(long)]
    pub include_loopback: bool,

    /// Print one JSON record (ECS field names) on stdout for every outbound connection, not
    /// only for alerts.
    #[arg(long)]
    pub log_connections: bool,

    /// Window in milliseconds in which repeated unconnected datagrams from one process to one
    /// destination are reported as one record with a count.
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub udp_window_ms: u64,
}
