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
    /// When the first repeat happened (its record's timestamp).
    first_repeat: Option<String>,
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
                w.first_repeat
                    .get_or_insert_with(|| alert.timestamp.clone());
                w.last = alert.clone();
                false
            }
            None => {
                self.open.insert(
                    key,
                    Window {
                        opened: now,
                        repeats: 0,
                        first_repeat: None,
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
            // The period the count covers: from the first repeat to the last.
            summary.event.start = w.first_repeat;
            summary.event.end = Some(summary.timestamp.clone());
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

    /// A curl alert for `domain` by rule `domain:openai.com`.
    fn record(exe: &str, domain: &str) -> Record {
        let mut r = super::super::record::sample_record(exe, domain);
        r.rule = Some(super::super::record::Rule {
            name: "domain:openai.com".into(),
            category: "ai-provider".into(),
            ruleset: "builtin".into(),
        });
        r
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
