//! `relaywatch run`: the agent in the foreground.
//!
//! One task owns the loaded programs and reads the ring buffer; records are written in the
//! order events are finalised. Data flows one way: kernel event -> decode -> process details ->
//! record -> stdout.
//!
//! Records wait in the `Correlator` until named from their payload or until their wait is over
//! (see correlate.rs). An unconnected datagram opens a repeat window in the kernel; its record
//! waits until the window has closed so it can carry the window's final count (read from
//! UDP_FLOWS). On shutdown every pending record is written with what is known so far.
mod config_files;
mod pacer;
mod pipeline;
mod state;
mod status;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use monitor_common::{FilterConfig, counters::COUNTER_RINGBUF_LOST};
use serde_json::json;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{Instant, sleep_until},
};

use self::{
    pacer::{DRAIN_BUSY, DrainPacer},
    pipeline::{Reporter, WATCHED_CONNECTIONS},
    state::{DaemonState, ListHistory, lists_status},
    status::Stats,
};
use crate::{
    config::{Config, Overrides},
    control::{api, metrics::Metrics, sdnotify},
    correlate::Correlator,
    intel::classify::{self, SharedLists},
    kernel::{
        loader::{Agent, PROGRAM_COUNT},
        preflight,
    },
    output::store::StoreHandle,
    process::{ProcReader, UserNames, table::ProcessTable},
    report::{dedupe::Deduper, host::HostInfo},
};

/// Extra wait after a window closes, so that the last datagrams' counts have landed.
const WINDOW_GRACE: Duration = Duration::from_millis(100);
/// Addresses remembered from DNS answers (per process and host-wide, each).
const DNS_CACHE_ENTRIES: usize = 65_536;
/// Processes remembered from exec events.
const PROCESS_TABLE_ENTRIES: usize = 32_768;
/// How often the store's retention limits are applied.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// How often lost-event counters are checked.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Processes whose TLS answers are read at once, and hosts remembered as answered (see
/// `Reporter::answers_wanted`).
const ANSWER_WAITERS: usize = 1024;
const ANSWERED_HOSTS: usize = 4096;

pub fn run(config: Config, flags: Overrides) -> Result<()> {
    let host = preflight::check()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, flags, host))
}

/// sd_notify failures are worth a warning, never a stop.
fn notify(what: &str, result: std::io::Result<()>) {
    if let Err(e) = result {
        log::warn!("sd_notify {what}: {e}");
    }
}

/// Register a map's file descriptor with the runtime for readiness.
fn watch<T: std::os::fd::AsRawFd>(inner: T, what: &str) -> Result<AsyncFd<T>> {
    // SAFETY: `inner` (a RingBuf or EbpfLogger) owns its map's fd and keeps it open and
    // unchanged until it is dropped, which only happens through the AsyncFd.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling {what}: {e}"))
}

async fn serve(config: Config, flags: Overrides, host: preflight::Host) -> Result<()> {
    let window = Duration::from_millis(config.agent.udp_window_ms);
    let filter = FilterConfig {
        include_loopback: u32::from(config.agent.include_loopback),
        // Relay discovery reads each new program's environment: exec events wake the daemon, at
        // most once per busy tick (a burst keeps it on that tick). Without it they wait for it.
        exec_wake_gap_ms: if config.discovery.enabled {
            DRAIN_BUSY.as_millis() as u32
        } else {
            0
        },
        udp_window_ns: window.as_nanos() as u64,
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    // Feeds are checked in the background; their cached lists load with the others.
    let (feeds, mut feed_updates, feed_task) =
        crate::intel::feeds::Feeds::start(&config.agent.state_dir, &config.blocklists.feeds);
    let applied_blocklists = config.blocklists.clone();
    let lists = classify::load_lists(&config.blocklists, &feeds.lists(&config.blocklists.feeds))
        .map_err(|e| anyhow::anyhow!("blocklists: {e}"))?;
    let resolvable = lists.resolvable_names();
    let active_lists = lists_status(&lists);
    let lists: SharedLists = Arc::new(std::sync::RwLock::new(Arc::new(lists)));
    // Resolve the lists' names in the background: addresses -> names, the last naming fallback.
    let (resolved, resolve_updates, resolve_task) = crate::intel::resolve::spawn(
        resolvable,
        config.blocklists.nameserver,
        Duration::from_secs(config.blocklists.resolve_interval_s),
    );
    let store = StoreHandle::open(&config.agent.state_dir)?;
    let metrics = Metrics::new();
    let sinks = crate::output::sinks::Sinks::start(
        &config.sinks,
        &config.agent.state_dir,
        metrics.clone(),
        config.output.format,
    )
    .await?;
    if config.metrics.enabled {
        let listener = crate::control::metrics::bind(config.metrics.listen).await?;
        tokio::spawn(crate::control::metrics::serve_on(listener, metrics.clone()));
    }
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let socket = config.agent.socket.clone();
    let socket_group = config.agent.socket_group.clone();

    let mut agent = Agent::load_and_attach(
        &host,
        filter,
        config.discovery.enabled && config.discovery.api_requests,
    )?;
    let events = agent.events.take().context("ring buffer already taken")?;
    let mut events = watch(events, "the ring buffer")?;
    let mut logs = match agent.logger.take() {
        Some(l) => Some(watch(l, "the eBPF log buffer")?),
        None => None,
    };

    let daemon_state = Arc::new(DaemonState {
        started: std::time::Instant::now(),
        status: Mutex::new(json!({})),
        store: store.clone(),
        lists: lists.clone(),
        list_history: Mutex::new(ListHistory {
            active: active_lists,
            loaded_at: std::time::SystemTime::now(),
            last_error: None,
        }),
        resolve_updates,
        flags,
        feeds,
        reloading: Mutex::new(()),
        applied: Mutex::new(applied_blocklists),
    });
    // Bound now, before the agent says it is up (the log line below, READY=1): a client that
    // sees it up finds the socket. Requests are answered once the status is complete (below):
    // until then a client waits in the listen backlog.
    let listener = api::listen(&socket, &socket_group);
    log::info!(
        "attached {} programs to {} (loopback {}, UDP repeat window {} ms)",
        PROGRAM_COUNT,
        host.cgroup2.display(),
        if config.agent.include_loopback {
            "included"
        } else {
            "skipped"
        },
        config.agent.udp_window_ms
    );

    let name_wait = Duration::from_millis(config.agent.name_wait_ms);
    // Relays learned in earlier runs stay known.
    let relays = match store.relays().await {
        Ok(rows) => crate::intel::relays::KnownRelays::from_store(rows),
        Err(e) => {
            log::error!("store: reading the known relays: {e:#}");
            crate::intel::relays::KnownRelays::default()
        }
    };
    let relay_allow = crate::intel::relays::RelayAllow::new(&config.discovery);
    // AI clients' configuration files (per user), scanned on a thread of their own.
    let config_files = (config.discovery.enabled && config.discovery.config_files).then(|| {
        config_files::spawn(
            std::path::PathBuf::from("/"),
            config.discovery.variables.clone(),
        )
    });
    let discovery_variables = config.discovery.active_variables();
    let dedupe_window = Duration::from_secs(config.alerts.dedupe_window_s);
    let mut reporter = Reporter {
        sinks,
        watched: lru::LruCache::new(
            std::num::NonZeroUsize::new(WATCHED_CONNECTIONS).expect("non-zero"),
        ),
        early_ends: lru::LruCache::new(
            std::num::NonZeroUsize::new(WATCHED_CONNECTIONS).expect("non-zero"),
        ),
        lists: lists.clone(),
        dedupe: Deduper::new(dedupe_window),
        host_info: HostInfo::read(),
        cgroups: crate::process::cgroups::CgroupPaths::new(&host.cgroup2),
        metrics: metrics.clone(),
        store: store.clone(),
        config,
        procs: ProcReader::new(),
        processes: ProcessTable::new(PROCESS_TABLE_ENTRIES),
        users: UserNames::default(),
        correlator: {
            let mut c = Correlator::new(name_wait, window + WINDOW_GRACE, DNS_CACHE_ENTRIES);
            c.resolved = Some(resolved);
            c.own_pid = std::process::id();
            c
        },
        discovery: crate::intel::discovery::RelayDiscovery::new(discovery_variables),
        resolve_updates: daemon_state.resolve_updates.clone(),
        discovered_for: 0,
        stdout_failed: false,
        malformed: 0,
        last_alert: None,
        own_pid: std::process::id(),
        requests: crate::correlate::requests::Requests::default(),
        relays,
        relay_allow,
        config_files,
        local_clients: Default::default(),
        answers_wanted: lru::LruCache::new(
            std::num::NonZeroUsize::new(ANSWER_WAITERS).expect("non-zero"),
        ),
        answered_hosts: lru::LruCache::new(
            std::num::NonZeroUsize::new(ANSWERED_HOSTS).expect("non-zero"),
        ),
    };
    // Programs started before the agent: their base-URL variables are read once now (exec
    // events cover every later start).
    reporter.discover_running();
    notify("ready", sdnotify::ready());
    notify(
        "status",
        sdnotify::status(&format!("watching: {PROGRAM_COUNT} programs attached")),
    );
    let mut watchdog = sdnotify::watchdog_interval().map(|i| tokio::time::interval(i / 2));
    let mut stats = tokio::time::interval(STATS_INTERVAL);
    // Retention runs at start and then hourly, on the store's own thread.
    let mut retention = tokio::time::interval(RETENTION_INTERVAL);
    let retention_age =
        Duration::from_secs(reporter.config.store.retention_days.saturating_mul(86_400));
    let retention_bytes = reporter.config.store.max_bytes;
    // The status is complete from the first request on: a client asking right after start
    // (`relaywatch status` in a unit's ExecStartPost, a test) must not see a partial one.
    let mut status = Stats::new(host.cgroup2.display().to_string());
    status.tick(&agent, &reporter, &daemon_state, &metrics);
    let api_task = {
        let (daemon, store) = (daemon_state.clone(), store.clone());
        tokio::spawn(async move {
            if let Err(e) = async { listener?.serve(daemon, store).await }.await {
                log::error!("control API on {}: {e:#}", socket.display());
            }
        })
    };
    // Most records are written without waking us (see monitor_common::ring): drain on a tick.
    let mut pacer = DrainPacer::default();
    let mut next_drain = Instant::now() + pacer.interval;

    loop {
        let due = reporter.next_due().map(Instant::from_std);
        tokio::select! {
            _ = sigint.recv() => { log::info!("SIGINT: shutting down"); notify("stopping", sdnotify::stopping()); break; }
            _ = sigterm.recv() => { log::info!("SIGTERM: shutting down"); notify("stopping", sdnotify::stopping()); break; }
            _ = sighup.recv() => {
                notify("reloading", sdnotify::reloading());
                // Reading and hashing the lists (feed caches of up to 64 MiB included) happens
                // off this loop, which keeps draining the ring buffer meanwhile.
                let state = daemon_state.clone();
                tokio::spawn(async move {
                    match tokio::task::spawn_blocking(move || state.reload_requested()).await {
                        Ok(Ok(_)) => log::info!("SIGHUP: reloaded blocklists"),
                        Ok(Err(e)) => log::error!("SIGHUP: reload refused, previous lists stay active: {e}"),
                        Err(e) => log::error!("SIGHUP: the reload task failed: {e}"),
                    }
                    notify("ready", sdnotify::ready());
                });
            }
            Some(url) = feed_updates.recv() => {
                // A feed's cache has a new list: the same reload, off the event loop.
                let state = daemon_state.clone();
                tokio::task::spawn_blocking(move || match state.reload_lists(false) {
                    Ok(_) => log::info!("feed {}: reloaded blocklists", crate::intel::feeds::display_name(&url)),
                    Err(e) => {
                        log::error!("feed {}: reload refused, previous lists stay active: {e}", crate::intel::feeds::display_name(&url));
                        state.feeds.reload_refused(&url, &e);
                    }
                });
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                notify("watchdog", sdnotify::watchdog());
            }
            ready = events.readable_mut() => {
                let mut guard = ready.context("waiting on the ring buffer")?;
                let found = reporter.drain(&mut agent, guard.get_inner_mut());
                guard.clear_ready();
                next_drain = Instant::now() + pacer.after_drain(found);
            }
            _ = sleep_until(next_drain) => {
                let found = reporter.drain(&mut agent, events.get_mut());
                next_drain = Instant::now() + pacer.after_drain(found);
            }
            ready = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                let mut guard = ready.context("waiting on the eBPF log buffer")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                reporter.finish_due(&mut agent, false);
            }
            _ = retention.tick() => {
                let store = store.clone();
                tokio::spawn(async move {
                    match store.apply_retention(retention_age, retention_bytes).await {
                        Ok(r) if r.alerts_deleted + r.connections_deleted > 0 => log::info!(
                            "store retention: deleted {} alerts and {} connection rows ({} -> {} bytes)",
                            r.alerts_deleted, r.connections_deleted, r.bytes_before, r.bytes_after
                        ),
                        Ok(_) => {}
                        Err(e) => log::error!("store retention: {e:#}"),
                    }
                });
            }
            _ = stats.tick() => {
                reporter.close_dedupe_windows(false);
                reporter.refresh_suspected();
                agent.tls_sweep();
                status.tick(&agent, &reporter, &daemon_state, &metrics);
            }
        }
    }

    // Drain what the kernel already wrote, then write every pending record.
    reporter.drain(&mut agent, events.get_mut());
    reporter.finish_due(&mut agent, true);
    reporter.close_dedupe_windows(true);
    let Reporter { sinks, .. } = reporter;
    // What cannot be delivered in time stays queued on disk for the next start.
    for h in sinks.shutdown(Duration::from_secs(5)).await {
        if h.queued > 0 {
            log::warn!("sink {}: {} alerts still queued on disk", h.name, h.queued);
        }
    }
    let lost = agent.counter(COUNTER_RINGBUF_LOST);
    if lost > 0 {
        log::warn!("{lost} events were lost to a full ring buffer during this run");
    }
    drop(events);
    drop(logs);
    drop(agent);
    log::info!("detached; exiting");
    api_task.abort();
    let _ = api_task.await;
    resolve_task.abort();
    feed_task.abort();
    if let Err(e) = store.flush().await {
        log::error!("flushing the store: {e:#}");
    }
    Ok(())
}
