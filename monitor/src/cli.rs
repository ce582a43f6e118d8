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

    /// How long a connection's record waits for its first bytes to name it (TLS SNI, HTTP
    /// Host, proxy target) before it is written with DNS evidence or none.
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub name_wait_ms: u64,
}
