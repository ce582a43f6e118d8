//! Dedupe: the first connection for (executable, user, destination name, rule) alerts at once;
//! repeats within the window are counted, and when the window closes one summary record carries
//! the count (`event.type: ["connection", "info"]`, `relaywatch.dedupe`), instead of one alert
//! each.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::record::{Dedupe, Record};

/// Dedupe key: (executable or name, user, destination name, rule).
type Key = (String, String, String, String);

struct Window {
    opened: Instant,
    repeats: u64,
    last: Record,
}

pub struct Deduper {
    window: Duration,
    open: HashMap<Key, Window>,
}

impl Deduper {
    pub fn new(window: Duration) -> Deduper {
        Deduper {
            window,
            open: HashMap::new(),
        }
    }

    fn key(alert: &Record) -> Key {
        (
            alert.process_identity().to_owned(),
            alert.user.id.clone(),
            alert.destination_name().unwrap_or_default().to_owned(),
            alert
                .rule
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
        )
    }

    /// Whether this alert is the first of its window (to be written now); repeats are counted.
    pub fn admit(&mut self, alert: &Record, now: Instant) -> bool {
        if self.window.is_zero() {
            return true;
        }
        let key = Deduper::key(alert);
        match self.open.get_mut(&key) {
            Some(w) => {
                w.repeats += 1;
                w.last = alert.clone();
                false
            }
            None => {
                self.open.insert(
                    key,
                    Window {
                        opened: now,
                        repeats: 0,
                        last: alert.clone(),
                    },
                );
                true
            }
        }
    }

    /// Close windows that are over (all of them if `all`); returns one summary per window that
    /// had repeats.
    pub fn close_due(&mut self, now: Instant, all: bool) -> Vec<Record> {
        let window = self.window;
        let due: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, w)| all || now.duration_since(w.opened) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            let Some(w) = self.open.remove(&key) else {
                continue;
            };
            if w.repeats == 0 {
                continue;
            }
            let mut summary = w.last;
            summary.event.kind_type = vec!["connection".into(), "info".into()];
            summary.event.action = format!("{}-repeated", summary.category().unwrap_or("alert"));
            summary.relaywatch.dedupe = Some(Dedupe {
                repeats: w.repeats,
                window_seconds: window.as_secs(),
            });
            out.push(summary);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(exe: &str, domain: &str) -> Record {
        Record::from_ecs(&json!({
            "@timestamp": "2026-12-03T12:00:00.000Z",
            "event": {"kind": "event", "type": ["connection", "start"]},
            "destination": {"domain": domain, "ip": "104.18.7.192", "port": 443},
            "process": {"pid": 42, "name": "curl", "executable": exe, "args": ["curl", "-s", "https://x/"]},
            "user": {"id": "1000", "name": "alice"},
            "relaywatch": {"name_source": "sni"},
            "rule": {"name": "domain:openai.com", "category": "ai-provider", "ruleset": "builtin"},
        }))
        .expect("an ECS record")
    }

    #[test]
    fn dedupe_counts_repeats_and_summarises_once() {
        let mut d = Deduper::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let a = record("/usr/bin/curl", "api.openai.com");
        assert!(d.admit(&a, t0));
        assert!(!d.admit(&a, t0 + Duration::from_secs(1)));
        assert!(!d.admit(&a, t0 + Duration::from_secs(2)));
        let mut other = a.clone();
        other.process.executable = Some("/usr/bin/python3.11".into());
        assert!(
            d.admit(&other, t0 + Duration::from_secs(2)),
            "another executable alerts on its own"
        );
        assert!(d.close_due(t0 + Duration::from_secs(5), false).is_empty());
        let summaries = d.close_due(t0 + Duration::from_secs(11), false);
        assert_eq!(
            summaries.len(),
            1,
            "only the window with repeats: {summaries:?}"
        );
        let summary = summaries[0].to_ecs();
        assert_eq!(summary["relaywatch"]["dedupe"]["repeats"], 2);
        assert_eq!(summary["event"]["type"], json!(["connection", "info"]));
        assert_eq!(summary["event"]["action"], "ai-provider-repeated");
        assert!(
            d.admit(&a, t0 + Duration::from_secs(12)),
            "a new window alerts again"
        );
    }
}
