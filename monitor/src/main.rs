//! `relaywatch`: which process on this host sent data to an AI relay or an overseas AI API.
//!
//! The binary is both the daemon (`relaywatch run`) and, as the project grows, its CLI. `main`
//! only parses arguments and hands off; errors are printed as one line, never as a panic.
use std::process::ExitCode;

use clap::Parser as _;
use monitor::{blocklist, cli, client, daemon, diag};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => daemon::run(args),
        // The query commands print their own one-line errors and choose their exit codes.
        cli::Command::Status(args) => return client::status(args),
        cli::Command::Alerts(args) => return client::alerts(args),
        cli::Command::Connections(args) => return client::connections(args),
        cli::Command::Reload(args) => return client::reload(args),
        cli::Command::StoreSoak(args) => diag::store_soak(args),
        cli::Command::ApiServe(args) => diag::api_serve(args),
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
