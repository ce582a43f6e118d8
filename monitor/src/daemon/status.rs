//! The status the control API serves (`relaywatch status`), refreshed once a second by the event
//! loop, with the counters behind it: events read, lost to a full ring buffer, payload chunks,
//! malformed records, records pending and written early (over the pending bound), addresses
//! the lists' names resolved to. Losses are also logged as they grow and exported as metrics.
use std::time::Instant;

use monitor_common::{
    counters::{
        COUNTER_EVENTS, COUNTER_PAYLOAD_CHUNKS, COUNTER_PAYLOAD_LOST, COUNTER_RINGBUF_LOST,
        COUNTER_TLS_LOST, COUNTER_TLS_RECORDS, GAUGE_RINGBUF_PENDING,
    },
    ring::EVENTS_RINGBUF_BYTES,
};
use serde::Serialize;
use serde_json::Value;

use super::{pipeline::Reporter, state::DaemonState};
use crate::{
    control::metrics::Metrics,
    kernel::loader::{Agent, PROGRAM_COUNT},
    output::sinks::SinkHealth,
    report::record::Record,
};

/// What `GET /v1/status` answers (the API adds `uptime_seconds` and the store's `store`).
#[derive(Debug, Serialize)]
pub(super) struct Status {
    version: &'static str,
    programs_attached: usize,
    cgroup: String,
    events_total: u64,
    events_per_second: f64,
    events_lost: u64,
    ringbuf_fill_ratio: f64,
    payload_chunks_total: u64,
    payload_chunks_lost: u64,
    records_malformed: u64,
    /// Records waiting for their name or for their UDP window to close.
    records_pending: usize,
    /// Records written before their wait was over: more than the bound were waiting.
    records_written_early: u64,
    /// Addresses the lists' names (and suspected relays) resolve to, with an unexpired answer.
    resolved_addresses: usize,
    processes_tracked: usize,
    blocklists: Value,
    relay_discovery: Value,
    /// TLS plaintext: which libraries are read in which processes, requests read.
    tls_plaintext: Value,
    /// Relays learned from the requests sent to them (`relaywatch relays` lists them).
    known_relays: usize,
    /// Base URLs found in AI clients' configuration files (per user), and the files not read.
    relay_config_files: Value,
    sinks: Vec<SinkHealth>,
    last_alert: Value,
}

/// Counter readings for status and rates.
#[derive(Default, Clone, Copy)]
struct Counters {
    events: u64,
    lost: u64,
    payload_chunks: u64,
    payload_lost: u64,
}

fn read_counters(agent: &Agent) -> Counters {
    Counters {
        events: agent.counter(COUNTER_EVENTS),
        lost: agent.counter(COUNTER_RINGBUF_LOST),
        payload_chunks: agent.counter(COUNTER_PAYLOAD_CHUNKS),
        payload_lost: agent.counter(COUNTER_PAYLOAD_LOST),
    }
}

/// The previous reading, for rates and for logging losses as they grow.
pub(super) struct Stats {
    cgroup: String,
    previous: (Instant, Counters),
    lost_reported: u64,
    early_reported: u64,
}

impl Stats {
    pub(super) fn new(cgroup: String) -> Stats {
        Stats {
            cgroup,
            previous: (Instant::now(), Counters::default()),
            lost_reported: 0,
            early_reported: 0,
        }
    }

    /// Read the counters, update the metrics, log new losses and refresh the API's status.
    pub(super) fn tick(
        &mut self,
        agent: &Agent,
        reporter: &Reporter,
        state: &DaemonState,
        metrics: &Metrics,
    ) {
        let now = (Instant::now(), read_counters(agent));
        let (before, counters) = (self.previous.1, now.1);
        metrics.add_events(counters.events.saturating_sub(before.events));
        let lost = counters.lost + counters.payload_lost;
        metrics.set_events_lost(lost);
        let fill = agent.gauge_max(GAUGE_RINGBUF_PENDING) as f64 / f64::from(EVENTS_RINGBUF_BYTES);
        metrics.set_ringbuf_fill_ratio(fill);
        if lost > self.lost_reported {
            log::warn!(
                "{} events lost to a full ring buffer ({lost} in total)",
                lost - self.lost_reported
            );
            self.lost_reported = lost;
        }
        let early = reporter.correlator.written_early;
        if early > self.early_reported {
            log::warn!(
                "{} records written before their name wait was over: more than {} of a kind were \
                 waiting ({early} in total)",
                early - self.early_reported,
                crate::correlate::MAX_PENDING_STREAMS
            );
            self.early_reported = early;
        }
        let secs = now
            .0
            .duration_since(self.previous.0)
            .as_secs_f64()
            .max(0.001);
        let rate = counters.events.saturating_sub(before.events) as f64 / secs;
        let status = Status {
            version: env!("CARGO_PKG_VERSION"),
            programs_attached: PROGRAM_COUNT,
            cgroup: self.cgroup.clone(),
            events_total: counters.events,
            events_per_second: (rate * 10.0).round() / 10.0,
            events_lost: counters.lost,
            ringbuf_fill_ratio: (fill * 1000.0).round() / 1000.0,
            payload_chunks_total: counters.payload_chunks,
            payload_chunks_lost: counters.payload_lost,
            records_malformed: reporter.malformed,
            records_pending: reporter.correlator.pending(),
            records_written_early: reporter.correlator.written_early,
            resolved_addresses: reporter.correlator.resolved.as_ref().map_or(0, |r| r.len()),
            processes_tracked: reporter.processes.len(),
            blocklists: state.lists_report(),
            relay_discovery: state
                .lists
                .read()
                .map(|l| reporter.discovery.report(&l))
                .unwrap_or(Value::Null),
            tls_plaintext: serde_json::json!({
                "enabled": agent.tls.enabled(),
                "records": agent.counter(COUNTER_TLS_RECORDS),
                "records_lost": agent.counter(COUNTER_TLS_LOST),
                "requests_read": reporter.requests.read,
                "api_requests": reporter.requests.api_shaped,
                "requests_unpaired": reporter.requests.unpaired,
                "records_waiting_for_request": reporter.requests.held(),
                "files_not_examined": agent.tls.skipped,
                "processes_reading": agent.tls.processes_reading(),
                "processes_read": agent.tls.processes_read,
                "processes_not_read": agent.tls.processes_refused,
                "attached": agent.tls.attach_report(),
                "libraries": agent.tls.report(),
            }),
            known_relays: reporter.relays.len(),
            relay_config_files: match &reporter.config_files {
                None => serde_json::json!({ "enabled": false }),
                Some(rx) => {
                    let scan = rx.borrow().clone();
                    serde_json::json!({
                        "enabled": true,
                        "files_read": scan.files_read,
                        "findings": scan.findings.iter().take(100).collect::<Vec<_>>(),
                        "findings_total": scan.findings.len(),
                        "problems": scan.problems.iter().take(20).collect::<Vec<_>>(),
                        "problems_total": scan.problems.len(),
                    })
                }
            },
            sinks: reporter.sinks.health(),
            last_alert: reporter
                .last_alert
                .as_ref()
                .map_or(Value::Null, Record::to_ecs),
        };
        if let Ok(mut s) = state.status.lock() {
            *s = serde_json::to_value(status).unwrap_or(Value::Null);
        }
        self.previous = now;
    }
}
