//! The `relaywatch` command line: arguments (`args`, clap), queries of the running daemon
//! (`query`), tables and summaries (`render`), list commands (`blocklist`), man pages and
//! completions (`generate`), and diagnostic commands for the test suite (`diag`, only with the
//! `diagnostics` feature).
pub(crate) mod args;
pub(crate) mod blocklist;
#[cfg(feature = "diagnostics")]
pub mod diag;
pub(crate) mod generate;
pub(crate) mod query;
pub(crate) mod render;

pub use args::{Cli, Command, ConfigCommand, RunFlags};

use std::process::ExitCode;

use clap::Parser as _;

use crate::config::{self, Config};

/// `relaywatch`'s entry point: parse the arguments, set up logging, run the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();
    let result = match cli.command {
        Command::Run(flags) => {
            let overrides = flags.overrides();
            Config::for_run(&overrides)
                .map_err(anyhow::Error::from)
                .and_then(|config| crate::daemon::run(config, overrides))
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::default_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { files }) => return check_config(&files),
        Command::GenerateMan { dir } => generate::man_pages(&dir).map(|_| ()),
        Command::GenerateCompletions { dir } => generate::completions(&dir).map(|_| ()),
        // The query commands print their own one-line errors and choose their exit codes.
        Command::Status(args) => return query::status(args),
        Command::Alerts(args) => return query::alerts(args),
        Command::Connections(args) => return query::connections(args),
        Command::Relays(args) => return query::relays(args),
        Command::Reload(args) => return query::reload(args),
        // Has its own exit statuses (`test`: 0 match, 1 none, 2 error).
        Command::Blocklist(command) => return blocklist::run(&command),
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
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
