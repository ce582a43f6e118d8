//! `relaywatch run`: the agent in the foreground.
//!
//! One task owns the loaded programs and reads the ring buffer; records are written in the
//! order events are finalised. Data flows one way: kernel event -> decode -> process details ->
//! record -> stdout.
//!
//! Connect events are reported at once. An unconnected datagram opens a repeat window in the
//! kernel; its record waits until the window has closed so it can carry the window's final count
//! (read from UDP_FLOWS). Windows all have the same length, so pending records are finalised in
//! FIFO order. On shutdown every pending record is written with the count so far.
use std::{
    collections::VecDeque,
    io::Write as _,
    time::Duration,
};

use anyhow::{Context as _, Result};
use monitor_common::{COUNTER_RINGBUF_LOST, FilterConfig};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep_until},
};

use crate::{
    cli::RunArgs,
    ingest::{self, Hook, Observation},
    loader::{Agent, PROGRAMS},
    preflight,
    process::{ProcReader, ProcessDetails, UserNames},
    record::ConnectionRecord,
};

/// Extra wait after a window closes, so that the last datagrams' counts have landed.
const WINDOW_GRACE: Duration = Duration::from_millis(100);
/// How often lost-event counters are checked.
const STATS_INTERVAL: Duration = Duration::from_secs(10);

pub fn run(args: RunArgs) -> Result<()> {
    let host = preflight::check()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, host))
}

/// A datagram record waiting for its repeat window to close.
struct PendingDatagram {
    due: Instant,
    observation: Observation,
    process: Option<ProcessDetails>,
}

struct Reporter {
    args: RunArgs,
    procs: ProcReader,
    users: UserNames,
    pending: VecDeque<PendingDatagram>,
    window: Duration,
    stdout_failed: bool,
    malformed: u64,
}

impl Reporter {
    fn on_record(&mut self, agent: &Agent, bytes: &[u8]) {
        let observation = match ingest::decode(bytes) {
            Ok(o) => o,
            Err(e) => {
                self.malformed += 1;
                if self.malformed == 1 || self.malformed.is_power_of_two() {
                    log::warn!("ring buffer: refused record ({e}); {} so far", self.malformed);
                }
                return;
            }
        };
        // Read /proc now, while the process most likely still exists.
        let process = self.procs.details(
            observation.raw.tgid,
            observation.raw.tid,
            &observation.comm,
            observation.raw.ts_boot_ns,
        );
        match observation.hook {
            Hook::Connect => self.emit(&observation, process.as_ref(), None),
            Hook::Sendmsg => self.pending.push_back(PendingDatagram {
                due: Instant::now() + self.window + WINDOW_GRACE,
                observation,
                process,
            }),
        }
        let _ = agent;
    }

    fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.due)
    }

    /// Write every pending datagram record whose window has closed (all of them if `all`).
    fn finalise_due(&mut self, agent: &Agent, all: bool) {
        let now = Instant::now();
        while let Some(p) = self.pending.front() {
            if !all && p.due > now {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            let key = p.observation.udp_flow_key();
            let count = agent
                .udp_flows
                .get(&key, 0)
                .ok()
                .and_then(|w| w.count_for(p.observation.raw.ts_boot_ns))
                // Evicted from the LRU map (or two windows later): at least this datagram.
                .unwrap_or(1);
            self.emit(&p.observation, p.process.as_ref(), Some(count));
        }
    }

    fn emit(&mut self, observation: &Observation, process: Option<&ProcessDetails>, repeat_count: Option<u64>) {
        if !self.args.log_connections {
            return;
        }
        let user_name = self.users.name(observation.raw.uid);
        let record = ConnectionRecord { observation, process, user_name: user_name.as_deref(), repeat_count };
        let line = record.to_ecs().to_string();
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            if !self.stdout_failed {
                log::error!("writing records to stdout failed: {e}; further records are dropped");
                self.stdout_failed = true;
            }
        }
    }
}

/// Register a map's file descriptor with the runtime for readiness.
fn watch<T: std::os::fd::AsRawFd>(inner: T, what: &str) -> Result<AsyncFd<T>> {
    // SAFETY: `inner` (a RingBuf or EbpfLogger) owns its map's fd and keeps it open and
    // unchanged until it is dropped, which only happens through the AsyncFd.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling {what}: {e}"))
}

async fn serve(args: RunArgs, host: preflight::Host) -> Result<()> {
    let window = Duration::from_millis(args.udp_window_ms);
    let config = FilterConfig {
        include_loopback: u32::from(args.include_loopback),
        udp_window_ns: window.as_nanos() as u64,
        ..FilterConfig::DEFAULT
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    let mut agent = Agent::load_and_attach(&host, config)?;
    let events = agent.events.take().context("ring buffer already taken")?;
    let mut events = watch(events, "the ring buffer")?;
    let mut logs = match agent.logger.take() {
        Some(l) => Some(watch(l, "the eBPF log buffer")?),
        None => None,
    };
    log::info!(
        "attached {} programs to {} (loopback {}, UDP repeat window {} ms)",
        PROGRAMS.len(),
        host.cgroup2.display(),
        if args.include_loopback { "included" } else { "skipped" },
        args.udp_window_ms
    );

    let mut reporter = Reporter {
        args,
        procs: ProcReader::new(),
        users: UserNames::default(),
        pending: VecDeque::new(),
        window,
        stdout_failed: false,
        malformed: 0,
    };
    let mut stats = tokio::time::interval(STATS_INTERVAL);
    let mut lost_reported = 0u64;

    loop {
        let due = reporter.next_due();
        tokio::select! {
            _ = sigint.recv() => { log::info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { log::info!("SIGTERM: shutting down"); break; }
            ready = events.readable_mut() => {
                let mut guard = ready.context("waiting on the ring buffer")?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    reporter.on_record(&agent, &item);
                }
                guard.clear_ready();
            }
            ready = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                let mut guard = ready.context("waiting on the eBPF log buffer")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                reporter.finalise_due(&agent, false);
            }
            _ = stats.tick() => {
                let lost = agent.counter(COUNTER_RINGBUF_LOST);
                if lost > lost_reported {
                    log::warn!("{} events lost to a full ring buffer ({} in total)", lost - lost_reported, lost);
                    lost_reported = lost;
                }
            }
        }
    }

    // Drain what the kernel already wrote, then write every pending record.
    {
        let ring = events.get_mut();
        while let Some(item) = ring.next() {
            reporter.on_record(&agent, &item);
        }
    }
    reporter.finalise_due(&agent, true);
    let lost = agent.counter(COUNTER_RINGBUF_LOST);
    if lost > 0 {
        log::warn!("{lost} events were lost to a full ring buffer during this run");
    }
    drop(events);
    drop(logs);
    drop(agent);
    log::info!("detached; exiting");
    Ok(())
}
