//! Command-line interface. Every flag is defined once here, with its documentation.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::UDP_WINDOW_MS;

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
}

/// The settings the daemon loop runs with: the configuration file with `RunFlags` applied
/// (`config::Config::for_run(..).run_args()`).
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub include_loopback: bool,
    pub log_connections: bool,
    pub udp_window_ms: u64,
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
