//! Dedupe: the first connection for (executable, user, destination name, rule) alerts at once;
//! repeats within the window are counted, and when the window closes one summary record carries
//! the count (`event.type: ["connection", "info"]`, `relaywatch.dedupe`), instead of one alert
//! each.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Dedupe key: (executable or name, user, destination name, rule).
type Key = (String, String, String, String);

struct Window {
    opened: Instant,
    repeats: u64,
    last: Value,
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

    fn key(alert: &Value) -> Key {
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let process = if alert["process"]["executable"].is_string() {
            &alert["process"]["executable"]
        } else {
            &alert["process"]["name"]
        };
        let destination = if alert["destination"]["domain"].is_string() {
            &alert["destination"]["domain"]
        } else {
            &alert["destination"]["ip"]
        };
        (
            s(process),
            s(&alert["user"]["id"]),
            s(destination),
            s(&alert["rule"]["name"]),
        )
    }

    /// Whether this alert is the first of its window (to be written now); repeats are counted.
    pub fn admit(&mut self, alert: &Value, now: Instant) -> bool {
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
    pub fn close_due(&mut self, now: Instant, all: bool) -> Vec<Value> {
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
            summary["event"]["type"] = json!(["connection", "info"]);
            summary["event"]["action"] = json!(format!(
                "{}-repeated",
                summary["rule"]["category"].as_str().unwrap_or("alert")
            ));
            summary["relaywatch"]["dedupe"] = json!({
                "repeats": w.repeats,
                "window_seconds": window.as_secs(),
            });
            out.push(summary);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(exe: &str, domain: &str) -> Value {
        json!({
            "event": {"kind": "event", "type": ["connection", "start"]},
            "destination": {"domain": domain, "ip": "104.18.7.192", "port": 443},
            "process": {"pid": 42, "name": "curl", "executable": exe, "args": ["curl", "-s", "https://x/"]},
            "user": {"id": "1000", "name": "alice"},
            "relaywatch": {"name_source": "sni"},
        })
    }

    #[test]
    fn dedupe_counts_repeats_and_summarises_once() {
        let mut d = Deduper::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut a = record("/usr/bin/curl", "api.openai.com");
        a["rule"] = json!({"name": "domain:openai.com", "category": "ai-provider"});
        assert!(d.admit(&a, t0));
        assert!(!d.admit(&a, t0 + Duration::from_secs(1)));
        assert!(!d.admit(&a, t0 + Duration::from_secs(2)));
        let mut other = a.clone();
        other["process"]["executable"] = json!("/usr/bin/python3.11");
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
        assert_eq!(summaries[0]["relaywatch"]["dedupe"]["repeats"], 2);
        assert_eq!(summaries[0]["event"]["type"], json!(["connection", "info"]));
        assert!(
            d.admit(&a, t0 + Duration::from_secs(12)),
            "a new window alerts again"
        );
    }
}
