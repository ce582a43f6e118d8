//! Test and diagnostic commands, built only with the `diagnostics` feature into the test
//! suite's own `relaywatch-diag` binary (never into `relaywatch` or the package): they exercise
//! the store and the sinks as real processes, without loading kernel programs.
//!
//! - `relaywatch-diag store-soak --state-dir DIR [--count N]`: inserts alerts, each in its own
//!   committed transaction, printing every committed id on stdout. The `store` integration
//!   test SIGKILLs it at random moments and checks that every printed id survived.
//! - `relaywatch-diag sink-send --config FILE --state-dir DIR [--timeout-ms MS]`: reads alert JSON
//!   lines on stdin, sends each through `sinks::Sinks` built from the file's `[[sink]]` tables,
//!   shuts the sinks down (delivering for at most MS) and prints their health as one JSON line.
//!   The `sinks` integration test drives real collectors with it.
use std::{
    io::{BufRead as _, Write as _},
    path::PathBuf,
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use clap::{Args, Parser, Subcommand};

use crate::{clock, output::store::Store};

#[derive(Parser, Debug)]
#[command(
    name = "relaywatch-diag",
    about = "relaywatch's test and diagnostic commands"
)]
struct DiagCli {
    #[command(subcommand)]
    command: DiagCommand,
}

#[derive(Subcommand, Debug)]
enum DiagCommand {
    /// Insert alerts into the store in DIR one committed transaction at a time, printing each
    /// committed id (used to check the store survives kill -9).
    StoreSoak(StoreSoakArgs),
    /// Send the alert JSON lines read on stdin through the `[[sink]]`s of a configuration file
    /// (queues under DIR), shut the sinks down, and print their health as one JSON line.
    SinkSend(SinkSendArgs),
}

#[derive(Args, Debug, Clone)]
pub struct StoreSoakArgs {
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,

    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub count: u64,
}

#[derive(Args, Debug, Clone)]
pub struct SinkSendArgs {
    /// Configuration file whose `[[sink]]` tables are used.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,

    /// State directory: the sinks' queues are under DIR/queue.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,

    /// How long the shutdown may take to deliver what is queued, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// `relaywatch-diag`'s entry point.
pub fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match DiagCli::parse().command {
        DiagCommand::StoreSoak(args) => store_soak(args),
        DiagCommand::SinkSend(args) => sink_send(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("relaywatch-diag: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn sink_send(args: SinkSendArgs) -> Result<()> {
    let config = crate::config::Config::load(&args.config)?;
    let mut alerts = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let alert: Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not JSON", n + 1))?;
        alerts.push(alert);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let health = runtime.block_on(async {
        let sinks = crate::output::sinks::Sinks::start(
            &config.sinks,
            &args.state_dir,
            crate::control::metrics::Metrics::new(),
            config.output.format,
        )
        .await?;
        for alert in &alerts {
            sinks.send_line(&alert.to_string());
        }
        anyhow::Ok(
            sinks
                .shutdown(std::time::Duration::from_millis(args.timeout_ms))
                .await,
        )
    })?;
    drop(runtime);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&health)?)
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(())
}

fn store_soak(args: StoreSoakArgs) -> Result<()> {
    let mut store = Store::open(&args.state_dir)?;
    let mut out = std::io::stdout().lock();
    // Some bulk, so that the WAL reaches its auto-checkpoint size within a run and kills
    // also land during checkpoints.
    let padding = "relaywatch-soak ".repeat(64);
    for i in 0..args.count {
        let alert = json!({
            "@timestamp": clock::rfc3339(std::time::SystemTime::now()),
            "event": { "kind": "alert", "severity": 73, "sequence": i },
            "rule": { "category": "soak", "name": "store soak" },
            "process": { "name": "store-soak", "pid": std::process::id() },
            "destination": { "domain": "soak.invalid", "ip": "192.0.2.1", "port": 443 },
            "message": padding,
        });
        let id = store.insert_alert(&alert)?;
        writeln!(out, "{id}")
            .and_then(|()| out.flush())
            .context("writing to stdout")?;
    }
    Ok(())
}
