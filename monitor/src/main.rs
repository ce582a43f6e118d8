//! `relaywatch`: which process on this host sent data to an AI relay or an overseas AI API.
//!
//! The binary is both the daemon (`relaywatch run`) and, as the project grows, its CLI. `main`
//! only parses arguments and hands off; errors are printed as one line, never as a panic.
use std::process::ExitCode;

use clap::Parser as _;
use monitor::{blocklist, cli, daemon};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => daemon::run(args),
        // Has its own exit statuses (`test`: 0 match, 1 none, 2 error).
        cli::Command::Blocklist(command) => return blocklist::command::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, the whole causal chain, no backtrace.
            eprintln!("relaywatch: {err:#}");
            ExitCode::FAILURE
        }
    }
}
