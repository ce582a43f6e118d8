//! `relaywatch`: which process on this host sent data to an AI relay or an overseas AI API.
//!
//! The binary is both the daemon (`relaywatch run`) and, as the project grows, its CLI. `main`
//! only parses arguments and hands off; errors are printed as one line, never as a panic.
use std::process::ExitCode;

use clap::Parser as _;
use monitor::{
    blocklist,
    cli::{self, Command, ConfigCommand},
    client,
    config::{self, Config},
    daemon, diag, generate,
};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
    let result = match cli.command {
        Command::Run(flags) => Config::for_run(&flags)
            .map_err(anyhow::Error::from)
            .and_then(|config| daemon::run(config, flags)),
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::default_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { files }) => return check_config(&files),
        Command::GenerateMan { dir } => generate::man_pages(&dir).map(|_| ()),
        Command::GenerateCompletions { dir } => generate::completions(&dir).map(|_| ()),
        // The query commands print their own one-line errors and choose their exit codes.
        Command::Status(args) => return client::status(args),
        Command::Alerts(args) => return client::alerts(args),
        Command::Connections(args) => return client::connections(args),
        Command::Reload(args) => return client::reload(args),
        Command::StoreSoak(args) => diag::store_soak(args),
        Command::ApiServe(args) => diag::api_serve(args),
        Command::SinkSend(args) => diag::sink_send(args),
        // Has its own exit statuses (`test`: 0 match, 1 none, 2 error).
        Command::Blocklist(command) => return blocklist::command::run(&command),
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

/// `relaywatch config check FILE...`: "FILE: ok" on stdout, or every problem on stderr.
fn check_config(files: &[std::path::PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match Config::load(file) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
