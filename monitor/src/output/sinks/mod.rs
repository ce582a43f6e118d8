//! SIEM sinks: every alert goes to each configured `[[sink]]`, reliably and without ever
//! blocking the caller.
//!
//! Shape, per sink:
//! - `Sinks::send` serializes the alert once and offers it to each sink's bounded in-memory
//!   channel (`CHANNEL_CAPACITY`); a full channel (the sink's disk is stuck) drops the alert
//!   and counts it. Nothing else happens on the caller's task.
//! - Remote sinks (syslog, splunk-hec, elasticsearch) have two tasks: the intake appends
//!   what arrives to the sink's on-disk queue (`queue.rs`, under `<state_dir>/queue/<sink-id>/`),
//!   and the delivery task takes batches from the queue in order, sends them, retries transient
//!   failures with capped exponential backoff, and moves the queue's cursor once a batch is done
//!   (delivered, or refused for good by the collector). File I/O runs on tokio's blocking pool,
//!   so the daemon's single-threaded runtime never waits for a disk.
//! - The file sink has one task writing batches of lines (`file.rs`).
//! - Drops (queue bound reached, channel full) are counted in `health()`, logged, and reported
//!   to the collector itself: once the sink delivers again, a record with `event.kind: "event"`,
//!   `event.action: "sink-dropped"` and the count (`relaywatch.sink.dropped`) is queued, so the
//!   SIEM sees the gap.
//!
//! Guarantees: in order; a restart (a new `Sinks::start` on the same state directory) resumes
//! from the committed cursor, so queued alerts survive restarts and crashes, and an alert is
//! sent twice only if the process stops between the collector accepting its batch and the
//! cursor write (at-least-once within one batch). udp:// syslog is best effort.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use crate::{
    config::{Format, Sink as SinkConfig},
    control::metrics::Metrics,
    report::record::{Event, Host, Record, Relaywatch, SinkDrops},
    transport::net::Connector,
};

pub mod file;
pub mod http;
pub mod queue;
pub mod syslog;

use self::{file::RotatingFile, http::Secret, queue::DiskQueue};

/// Alerts waiting in memory per sink before they reach its queue or file.
const CHANNEL_CAPACITY: usize = 4096;
/// Most records per delivered batch, and most bytes (at least one record is always sent).
const BATCH_RECORDS: usize = 500;
const BATCH_BYTES: u64 = 1024 * 1024;
/// Retry backoff: first wait, and the cap.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What a transport did with a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Indices (into the batch) to send again: a transient failure.
    pub retry: Vec<usize>,
    /// Records the collector refused for good.
    pub rejected: usize,
    /// Why the `retry` records failed, for health and logs.
    pub error: Option<String>,
    /// Why the `rejected` records were refused (kept apart from `error`: one bulk answer can
    /// refuse some items for good and ask for others again).
    pub refused: Option<String>,
}

/// One sink's state, as `health()` reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SinkHealth {
    /// Kind and destination: `syslog tcp://127.0.0.1:6514`, `file /var/log/relaywatch/a.jsonl`.
    pub name: String,
    /// Alerts waiting for delivery in the on-disk queue (always 0 for the file sink).
    pub queued: u64,
    pub queued_bytes: u64,
    /// Alerts the collector accepted (for udp: sent).
    pub delivered: u64,
    /// Alerts the collector refused for good (a 4xx, a bulk item error), or that could not be
    /// written (file sink).
    pub failed: u64,
    /// Alerts dropped before delivery: queue full (oldest first) or channel full.
    pub dropped: u64,
    /// Failed delivery attempts (each is retried).
    pub errors: u64,
    pub last_error: Option<String>,
    /// RFC 3339 time of the last delivery.
    pub last_delivery: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    queued_bytes: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Dropped by `send` (channel full), not yet handed to the queue's report.
    channel_drops: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_delivery: Mutex<Option<SystemTime>>,
}

/// What the tasks of one sink share.
struct Shared {
    name: String,
    counters: Counters,
    metrics: Arc<Metrics>,
    local_host: String,
    /// What the collector is sent: ECS or OCSF (the queue always holds ECS records).
    format: Format,
}

impl Shared {
    fn set_error(&self, e: &str) {
        *self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_owned());
    }

    fn delivered(&self, n: u64) {
        if n > 0 {
            self.counters.delivered.fetch_add(n, Ordering::Relaxed);
            *self
                .counters
                .last_delivery
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now());
        }
    }

    fn set_depth(&self, records: usize, bytes: u64) {
        self.counters
            .queued
            .store(records as u64, Ordering::Relaxed);
        self.counters.queued_bytes.store(bytes, Ordering::Relaxed);
        self.metrics.set_sink_queue_depth(&self.name, bytes);
    }

    /// Count drops; log the first and then at powers of two, so a flood is one line per doubling.
    fn dropped(&self, n: u64, why: &str) {
        if n == 0 {
            return;
        }
        let before = self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        // The bit length changes when the count passes a power of two.
        if before == 0 || before.ilog2() != after.ilog2() {
            log::warn!(
                "sink {}: dropped {n} alerts ({why}); {after} dropped so far",
                self.name
            );
        }
    }

    fn health(&self) -> SinkHealth {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkHealth {
            name: self.name.clone(),
            queued: get(&c.queued),
            queued_bytes: get(&c.queued_bytes),
            delivered: get(&c.delivered),
            failed: get(&c.failed),
            dropped: get(&c.dropped),
            errors: get(&c.errors),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            last_delivery: c
                .last_delivery
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(crate::clock::rfc3339),
        }
    }

    /// The record that tells the collector about drops.
    fn drop_report(&self, dropped: u64) -> Record {
        Record {
            timestamp: crate::clock::rfc3339(SystemTime::now()),
            message: Some(format!(
                "relaywatch dropped {dropped} alerts bound for sink {} (queue full)",
                self.name
            )),
            event: Event {
                kind: "event".into(),
                category: vec!["host".into()],
                kind_type: vec!["info".into()],
                action: "sink-dropped".into(),
                module: "relaywatch".into(),
                dataset: DROP_DATASET.into(),
                severity: Some(47),
                ..Event::default()
            },
            host: Some(Host {
                name: self.local_host.clone(),
                id: None,
            }),
            relaywatch: Relaywatch {
                sink: Some(SinkDrops {
                    name: self.name.clone(),
                    dropped,
                }),
                ..Relaywatch::default()
            },
            ..Record::default()
        }
    }
}

/// A running sink: its channel and tasks.
struct Running {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Arc<str>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Every configured sink, running.
pub struct Sinks {
    running: Vec<Running>,
}

/// How a sink delivers.
enum Transport {
    Syslog(syslog::SyslogTransport),
    Hec(http::SplunkHec),
    Elasticsearch(http::Elasticsearch),
}

impl Transport {
    async fn deliver(&mut self, batch: &[&Rendered]) -> Outcome {
        let bodies = || batch.iter().map(|r| r.body.as_str()).collect::<Vec<_>>();
        match self {
            Transport::Syslog(t) => t.deliver(batch).await,
            Transport::Hec(t) => t.deliver(&bodies()).await,
            Transport::Elasticsearch(t) => t.deliver(&bodies()).await,
        }
    }
}

/// `event.dataset` of a sink's own drop reports: always written as ECS (they are not network
/// activity, so they have no OCSF rendering here).
const DROP_DATASET: &str = "relaywatch.sink";

/// A queued line as the collector gets it.
pub(crate) struct Rendered {
    /// The record, when the line is one (lines queued by an older version may not be).
    pub record: Option<Record>,
    /// What is sent: the record in the sink's format, else the line as queued.
    pub body: String,
    /// The line is JSON at all (what is not is refused by every transport).
    pub is_json: bool,
}

/// A record's body in `format` (drop reports stay ECS).
pub(crate) fn body_of(record: &Record, format: Format) -> String {
    if record.event.dataset == DROP_DATASET {
        record.to_ecs().to_string()
    } else {
        crate::report::ocsf::format(record, format).to_string()
    }
}

/// Read a queued line back into the model and render it for the collector. The queue holds
/// ECS, so an ECS sink sends the line as queued.
fn render(line: &str, format: Format) -> Rendered {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return Rendered {
            record: None,
            body: line.to_owned(),
            is_json: false,
        };
    };
    let record = Record::from_ecs(&value).filter(|r| !r.event.kind.is_empty());
    let body = match (&record, format) {
        (Some(record), Format::Ocsf) => body_of(record, format),
        _ => line.to_owned(),
    };
    Rendered {
        record,
        body,
        is_json: true,
    }
}

/// A sink's name as health and metrics show it.
pub fn sink_name(config: &SinkConfig) -> String {
    match config {
        SinkConfig::Syslog { url, .. }
        | SinkConfig::SplunkHec { url, .. }
        | SinkConfig::Elasticsearch { url, .. } => format!("{} {url}", config.kind()),
        SinkConfig::File { path, .. } => format!("file {}", path.display()),
    }
}

/// The queue directory name of a remote sink: kind and a digest of where it delivers, so the
/// same configuration finds its queue again after a restart.
pub fn queue_id(config: &SinkConfig) -> String {
    let index = match config {
        SinkConfig::Elasticsearch { index, .. } => index.as_str(),
        SinkConfig::SplunkHec { index, .. } => index.as_deref().unwrap_or(""),
        _ => "",
    };
    let digest = Sha256::digest(format!("{}\n{index}", sink_name(config)).as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", config.kind())
}

/// Run a queue operation on the blocking pool.
async fn on_queue<T: Send + 'static>(
    queue: &Arc<Mutex<DiskQueue>>,
    f: impl FnOnce(&mut DiskQueue) -> Result<T> + Send + 'static,
) -> Result<T> {
    let queue = queue.clone();
    tokio::task::spawn_blocking(move || f(&mut queue.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|e| anyhow!("queue task: {e}"))?
}

impl Sinks {
    /// Start every sink in `configs`. Must run inside a tokio runtime. Problems that would make
    /// a sink useless (unreadable token_file or ca_file, a queue directory that cannot be
    /// created or is in use, a file that cannot be opened, two sinks with the same destination)
    /// fail the start, naming `sink[i]`; collectors being down does not (alerts queue).
    pub async fn start(
        configs: &[SinkConfig],
        state_dir: &Path,
        metrics: Arc<Metrics>,
        format: Format,
    ) -> Result<Sinks> {
        let local_host = crate::report::host::HostInfo::read().name;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut running = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let name = sink_name(config);
            let key = match config {
                SinkConfig::File { path, .. } => format!("file {}", path.display()),
                _ => queue_id(config),
            };
            if let Some(first) = seen.insert(key, i) {
                bail!("sink[{i}] ({name}): same destination as sink[{first}]");
            }
            let sink = Sinks::start_one(
                config,
                &name,
                state_dir,
                metrics.clone(),
                &local_host,
                format,
            )
            .await
            .with_context(|| format!("sink[{i}] ({name})"))?;
            log::info!("sink {name}: started");
            running.push(sink);
        }
        Ok(Sinks { running })
    }

    async fn start_one(
        config: &SinkConfig,
        name: &str,
        state_dir: &Path,
        metrics: Arc<Metrics>,
        local_host: &str,
        format: Format,
    ) -> Result<Running> {
        metrics.register_sink(name);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            counters: Counters::default(),
            metrics,
            local_host: local_host.to_owned(),
            format,
        });
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let tasks = match config {
            SinkConfig::File {
                path,
                max_bytes,
                max_files,
            } => {
                let file = RotatingFile::open(path, *max_bytes, *max_files)?;
                vec![tokio::spawn(run_file(file, rx, shared.clone()))]
            }
            SinkConfig::Syslog {
                url,
                ca_file,
                queue_max_bytes,
            } => {
                let connector = Connector::new(
                    crate::transport::net::Endpoint::parse(url)?,
                    ca_file.as_deref(),
                )?;
                let transport = Transport::Syslog(syslog::SyslogTransport::new(
                    connector,
                    local_host.to_owned(),
                    format,
                ));
                start_remote(config, transport, *queue_max_bytes, state_dir, rx, &shared).await?
            }
            SinkConfig::SplunkHec {
                url,
                token_file,
                index,
                ca_file,
                queue_max_bytes,
            } => {
                let connector = Connector::new(
                    crate::transport::net::Endpoint::parse(url)?,
                    ca_file.as_deref(),
                )?;
                let token = Secret::read(token_file)?;
                let transport = Transport::Hec(http::SplunkHec::new(
                    connector,
                    token,
                    index.clone(),
                    local_host.to_owned(),
                ));
                start_remote(config, transport, *queue_max_bytes, state_dir, rx, &shared).await?
            }
            SinkConfig::Elasticsearch {
                url,
                token_file,
                index,
                ca_file,
                queue_max_bytes,
            } => {
                let connector = Connector::new(
                    crate::transport::net::Endpoint::parse(url)?,
                    ca_file.as_deref(),
                )?;
                let key = token_file.as_deref().map(Secret::read).transpose()?;
                let transport = Transport::Elasticsearch(http::Elasticsearch::new(
                    connector,
                    key,
                    index.clone(),
                ));
                start_remote(config, transport, *queue_max_bytes, state_dir, rx, &shared).await?
            }
        };
        Ok(Running { shared, tx, tasks })
    }

    /// Hand one alert, an ECS record as a JSON line, to every sink: queued as it is, each sink
    /// renders it in its format on delivery. Never blocks: a sink whose channel is full drops it
    /// (counted).
    pub fn send_line(&self, line: &str) {
        if self.running.is_empty() {
            return;
        }
        let line: Arc<str> = Arc::from(line);
        for sink in &self.running {
            if sink.tx.try_send(line.clone()).is_err() {
                sink.shared
                    .counters
                    .channel_drops
                    .fetch_add(1, Ordering::Relaxed);
                sink.shared.dropped(1, "sink busy: in-memory channel full");
            }
        }
    }

    /// A snapshot of every sink's counters, in configuration order.
    pub fn health(&self) -> Vec<SinkHealth> {
        self.running.iter().map(|s| s.shared.health()).collect()
    }

    /// Stop accepting alerts, deliver what can be delivered within `timeout`, then stop. What
    /// is not delivered stays in the on-disk queues for the next start. Returns the final health.
    pub async fn shutdown(self, timeout: Duration) -> Vec<SinkHealth> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending = Vec::new();
        let mut last = Vec::new();
        for sink in self.running {
            drop(sink.tx);
            pending.push((sink.shared, sink.tasks));
        }
        for (shared, tasks) in pending {
            for mut task in tasks {
                if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                    task.abort();
                    let _ = task.await;
                }
            }
            let h = shared.health();
            if h.queued > 0 {
                log::info!(
                    "sink {}: {} alerts stay queued for the next start",
                    h.name,
                    h.queued
                );
            }
            last.push(h);
        }
        last
    }
}

/// Open the sink's queue and spawn its intake and delivery tasks.
async fn start_remote(
    config: &SinkConfig,
    transport: Transport,
    queue_max_bytes: u64,
    state_dir: &Path,
    rx: mpsc::Receiver<Arc<str>>,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>> {
    let dir: PathBuf = state_dir.join("queue").join(queue_id(config));
    let name = shared.name.clone();
    let queue = tokio::task::spawn_blocking(move || -> Result<DiskQueue> {
        let q = DiskQueue::open(&dir, queue_max_bytes)?;
        let _ = std::fs::write(dir.join("sink.txt"), format!("{name}\n"));
        Ok(q)
    })
    .await
    .map_err(|e| anyhow!("queue task: {e}"))??;
    shared.set_depth(queue.queued_records(), queue.queued_bytes());
    if queue.queued_records() > 0 {
        log::info!(
            "sink {}: {} alerts queued from before",
            shared.name,
            queue.queued_records()
        );
    }
    let queue = Arc::new(Mutex::new(queue));
    let wake = Arc::new(Notify::new());
    let intake_done = Arc::new(AtomicBool::new(false));
    Ok(vec![
        tokio::spawn(run_intake(
            rx,
            queue.clone(),
            shared.clone(),
            wake.clone(),
            intake_done.clone(),
        )),
        tokio::spawn(run_delivery(
            transport,
            queue,
            shared.clone(),
            wake,
            intake_done,
        )),
    ])
}

/// Move alerts from the channel into the on-disk queue.
async fn run_intake(
    mut rx: mpsc::Receiver<Arc<str>>,
    queue: Arc<Mutex<DiskQueue>>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    done: Arc<AtomicBool>,
) {
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 512).await > 0 {
        let lines = std::mem::take(&mut buf);
        let n = lines.len() as u64;
        let channel_drops = shared.counters.channel_drops.swap(0, Ordering::Relaxed);
        match on_queue(&queue, move |q| {
            q.note_drops(channel_drops);
            let dropped = q.append(&lines)?;
            Ok((dropped, q.queued_records(), q.queued_bytes()))
        })
        .await
        {
            Ok((dropped, records, bytes)) => {
                shared.dropped(dropped, "queue full: oldest alerts dropped");
                shared.set_depth(records, bytes);
            }
            Err(e) => {
                let e = format!("{e:#}");
                log::error!("sink {}: queueing {n} alerts failed: {e}", shared.name);
                shared.set_error(&e);
                shared.dropped(n, "queue write failed");
            }
        }
        wake.notify_one();
    }
    done.store(true, Ordering::SeqCst);
    wake.notify_one();
}

/// The wait before retry number `attempt` (0-based): doubling from BACKOFF_START up to
/// BACKOFF_CAP, with up to 25% jitter so a fleet does not retry in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_START
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Deliver batches from the queue, in order, until the intake is closed and the queue empty.
async fn run_delivery(
    mut transport: Transport,
    queue: Arc<Mutex<DiskQueue>>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    intake_done: Arc<AtomicBool>,
) {
    loop {
        // Read before taking: if the intake was done then, every append happened before this
        // take, so an empty take means an empty queue (read after, an append racing with the
        // take could be left behind).
        let intake_was_done = intake_done.load(Ordering::SeqCst);
        let batch = match on_queue(&queue, |q| q.take(BATCH_RECORDS, BATCH_BYTES)).await {
            Ok(b) => b,
            Err(e) => {
                let e = format!("{e:#}");
                log::error!("sink {}: reading the queue failed: {e}", shared.name);
                shared.set_error(&e);
                tokio::time::sleep(BACKOFF_CAP).await;
                continue;
            }
        };
        let Some(batch) = batch else {
            if intake_was_done {
                return;
            }
            wake.notified().await;
            continue;
        };
        deliver_batch(&mut transport, &batch.records, &shared).await;
        let report = on_queue(&queue, {
            let shared = shared.clone();
            move |q| {
                q.commit()?;
                let unreported = q.take_unreported_drops();
                if unreported > 0 {
                    let report = shared.drop_report(unreported).to_ecs().to_string();
                    q.append(&[report])?;
                }
                Ok((q.queued_records(), q.queued_bytes()))
            }
        })
        .await;
        match report {
            Ok((records, bytes)) => shared.set_depth(records, bytes),
            Err(e) => {
                let e = format!("{e:#}");
                log::error!("sink {}: moving the queue cursor failed: {e}", shared.name);
                shared.set_error(&e);
            }
        }
    }
}

/// Send one batch until every record is delivered or refused for good.
async fn deliver_batch(transport: &mut Transport, records: &[String], shared: &Shared) {
    let rendered: Vec<Rendered> = records.iter().map(|l| render(l, shared.format)).collect();
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut attempt = 0u32;
    loop {
        let subset: Vec<&Rendered> = pending.iter().map(|&i| &rendered[i]).collect();
        let outcome = transport.deliver(&subset).await;
        let retry: Vec<usize> = outcome
            .retry
            .iter()
            .filter_map(|&j| pending.get(j).copied())
            .collect();
        shared.delivered(subset.len().saturating_sub(retry.len() + outcome.rejected) as u64);
        if outcome.rejected > 0 {
            shared
                .counters
                .failed
                .fetch_add(outcome.rejected as u64, Ordering::Relaxed);
            let e = outcome.refused.as_deref().unwrap_or("refused");
            log::error!(
                "sink {}: {} alerts refused by the collector, not retried: {e}",
                shared.name,
                outcome.rejected
            );
            shared.set_error(e);
        }
        if retry.is_empty() {
            if attempt > 0 {
                log::info!(
                    "sink {}: delivering again after {attempt} failed attempts",
                    shared.name
                );
            }
            return;
        }
        let e = outcome.error.unwrap_or_else(|| "delivery failed".into());
        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        shared.metrics.add_sink_error(&shared.name);
        if attempt == 0 || attempt.is_power_of_two() {
            log::warn!(
                "sink {}: delivery failed (attempt {}), retrying: {e}",
                shared.name,
                attempt + 1
            );
        }
        shared.set_error(&e);
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
        pending = retry;
    }
}

/// Write alerts to the file sink.
async fn run_file(file: RotatingFile, mut rx: mpsc::Receiver<Arc<str>>, shared: Arc<Shared>) {
    let file = Arc::new(Mutex::new(file));
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 512).await > 0 {
        let mut lines: Vec<Arc<str>> = std::mem::take(&mut buf);
        let dropped = shared.counters.channel_drops.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            lines.push(Arc::from(shared.drop_report(dropped).to_ecs().to_string()));
        }
        let lines: Vec<String> = lines
            .iter()
            .map(|l| render(l, shared.format).body)
            .collect();
        let n = lines.len() as u64;
        let f = file.clone();
        let result = tokio::task::spawn_blocking(move || {
            f.lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_lines(&lines)
        })
        .await
        .map_err(|e| anyhow!("file task: {e}"))
        .and_then(|r| r);
        match result {
            Ok(()) => shared.delivered(n),
            Err(e) => {
                let e = format!("{e:#}");
                log::error!("sink {}: {n} alerts not written: {e}", shared.name);
                shared.counters.failed.fetch_add(n, Ordering::Relaxed);
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                shared.metrics.add_sink_error(&shared.name);
                shared.set_error(&e);
            }
        }
    }
    let _ =
        tokio::task::spawn_blocking(move || file.lock().unwrap_or_else(|p| p.into_inner()).sync())
            .await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Sink;

    fn temp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("relaywatch-sinks-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert!(backoff(0) >= BACKOFF_START && backoff(0) <= BACKOFF_START.mul_f64(1.25));
        assert!(backoff(1) >= BACKOFF_START * 2);
        assert!(backoff(30) >= BACKOFF_CAP && backoff(30) <= BACKOFF_CAP.mul_f64(1.25));
    }

    #[test]
    fn queue_ids_are_stable_and_distinct() {
        let a = Sink::Elasticsearch {
            url: "http://h:9200".into(),
            token_file: None,
            index: "a".into(),
            ca_file: None,
            queue_max_bytes: 1,
        };
        let b = Sink::Elasticsearch {
            url: "http://h:9200".into(),
            token_file: None,
            index: "b".into(),
            ca_file: None,
            queue_max_bytes: 1,
        };
        assert_eq!(queue_id(&a), queue_id(&a.clone()));
        assert_ne!(queue_id(&a), queue_id(&b));
        assert!(
            queue_id(&a).starts_with("elasticsearch-"),
            "{}",
            queue_id(&a)
        );
        assert_eq!(sink_name(&a), "elasticsearch http://h:9200");
    }

    #[tokio::test]
    async fn bad_configs_name_the_sink_and_reason() {
        let state = temp("bad");
        let hec = Sink::SplunkHec {
            url: "http://127.0.0.1:1".into(),
            token_file: "/nonexistent/hec.token".into(),
            index: None,
            ca_file: None,
            queue_max_bytes: 1000,
        };
        let e = Sinks::start(&[hec], &state, Metrics::new(), Format::Ecs)
            .await
            .err()
            .unwrap();
        assert_eq!(
            format!("{e:#}").split(": cannot read").next().unwrap(),
            "sink[0] (splunk-hec http://127.0.0.1:1): token_file /nonexistent/hec.token"
        );
        let syslog = Sink::Syslog {
            url: "tcp://127.0.0.1:1".into(),
            ca_file: None,
            queue_max_bytes: 1000,
        };
        let e = Sinks::start(
            &[syslog.clone(), syslog],
            &state,
            Metrics::new(),
            Format::Ecs,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "sink[1] (syslog tcp://127.0.0.1:1): same destination as sink[0]"
        );
        let tls = Sink::Syslog {
            url: "tls://127.0.0.1:1".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            queue_max_bytes: 1000,
        };
        let e = Sinks::start(&[tls], &state, Metrics::new(), Format::Ecs)
            .await
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").starts_with(
                "sink[0] (syslog tls://127.0.0.1:1): reading CA certificates /nonexistent/ca.pem"
            ),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn file_sink_writes_lines_and_reports_health() {
        let dir = temp("file");
        let path = dir.join("alerts.jsonl");
        let metrics = Metrics::new();
        let sinks = Sinks::start(
            &[Sink::File {
                path: path.clone(),
                max_bytes: 1 << 20,
                max_files: 2,
            }],
            &dir,
            metrics.clone(),
            Format::Ecs,
        )
        .await
        .unwrap();
        for i in 0..3 {
            sinks.send_line(&json!({"n": i}).to_string());
        }
        sinks.shutdown(Duration::from_secs(10)).await;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        assert!(metrics.render().contains(&format!(
            "relaywatch_sink_errors_total{{sink=\"file {}\"}} 0",
            path.display()
        )));
    }

    #[tokio::test]
    async fn remote_sink_queues_while_down_and_resumes_after_restart() {
        let state = temp("remote");
        // A port with no listener: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = [Sink::Syslog {
            url: format!("tcp://127.0.0.1:{port}"),
            ca_file: None,
            queue_max_bytes: 1 << 20,
        }];
        let sinks = Sinks::start(&config, &state, Metrics::new(), Format::Ecs)
            .await
            .unwrap();
        for i in 0..4 {
            sinks.send_line(&json!({"n": i}).to_string());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sinks.health()[0].errors == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let h = sinks.health();
        assert_eq!(
            (h[0].queued, h[0].delivered, h[0].dropped),
            (4, 0, 0),
            "{h:?}"
        );
        assert!(
            h[0].last_error
                .as_deref()
                .unwrap_or("")
                .contains("connecting to 127.0.0.1"),
            "{h:?}"
        );
        sinks.shutdown(Duration::from_millis(100)).await;

        // Now a collector; a new start delivers the queue, in order.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let sinks = Sinks::start(&config, &state, Metrics::new(), Format::Ecs)
            .await
            .unwrap();
        assert_eq!(sinks.health()[0].queued, 4);
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        sinks.shutdown(Duration::from_secs(10)).await;
        let mut received = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut received)
            .await
            .unwrap();
        let text = String::from_utf8(received).unwrap();
        let numbers: Vec<u64> = text
            .match_indices("{\"n\":")
            .map(|(i, _)| text[i + 5..].split('}').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers, [0, 1, 2, 3], "{text}");
        // Nothing left for a third start.
        let sinks = Sinks::start(&config, &state, Metrics::new(), Format::Ecs)
            .await
            .unwrap();
        assert_eq!(sinks.health()[0].queued, 0);
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest_and_tells_the_collector() {
        let state = temp("drops");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Records of 200 bytes with the newline; the queue holds five.
        let config = [Sink::Syslog {
            url: format!("tcp://127.0.0.1:{port}"),
            ca_file: None,
            queue_max_bytes: 1000,
        }];
        let record = |i: u64| json!({"n": i, "pad": "x".repeat(200 - 17)});
        assert_eq!(record(0).to_string().len() + 1, 200);
        let metrics = Metrics::new();
        let sinks = Sinks::start(&config, &state, metrics.clone(), Format::Ecs)
            .await
            .unwrap();
        for i in 0..10 {
            sinks.send_line(&record(i).to_string());
        }
        let h = sinks.shutdown(Duration::from_millis(300)).await;
        assert_eq!(
            (h[0].queued, h[0].dropped, h[0].delivered),
            (5, 5, 0),
            "{h:?}"
        );
        assert!(
            metrics.render().contains(&format!(
                "relaywatch_sink_queue_depth{{sink=\"syslog tcp://127.0.0.1:{port}\"}} 1000"
            )),
            "{}",
            metrics.render()
        );

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let sinks = Sinks::start(&config, &state, Metrics::new(), Format::Ecs)
            .await
            .unwrap();
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let h = sinks.shutdown(Duration::from_secs(10)).await;
        assert_eq!(
            (h[0].queued, h[0].delivered),
            (0, 6),
            "five alerts and the drop report: {h:?}"
        );
        let mut received = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut received)
            .await
            .unwrap();
        let text = String::from_utf8(received).unwrap();
        let numbers: Vec<u64> = text
            .match_indices("{\"n\":")
            .map(|(i, _)| text[i + 5..].split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers, [5, 6, 7, 8, 9], "the oldest were dropped");
        let report = text.lines().last().unwrap_or("");
        let report: Value =
            serde_json::from_str(&text[text.rfind(" {\"@timestamp\"").unwrap() + 1..])
                .unwrap_or_else(|e| panic!("{e}: {report}"));
        assert!(
            text.contains(" SINK_DROPPED [relaywatch@32473 severity=\"47\"] "),
            "{text}"
        );
        assert_eq!(report["event"]["action"], "sink-dropped");
        assert_eq!(report["event"]["kind"], "event");
        assert_eq!(report["relaywatch"]["sink"]["dropped"], 5);
        assert_eq!(report["ecs"]["version"], "9.4.0");
        // Not about a connection: no empty network, destination, process, user or group.
        for absent in ["network", "destination", "process", "user", "group"] {
            assert!(report.get(absent).is_none(), "{absent} in {report}");
        }
    }
}
