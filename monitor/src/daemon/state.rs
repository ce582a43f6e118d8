//! What the control API sees of the running daemon: its status (refreshed by the event loop,
//! `status.rs`), and reloads of the lists (SIGHUP, `relaywatch reload`, feed updates), one at a
//! time, swapped in atomically.
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::{
    clock,
    config::{Config, Overrides},
    control::api,
    intel::classify::{self, SharedLists},
    output::store::StoreHandle,
};

/// What the control API reports; refreshed by the main loop.
pub(super) struct DaemonState {
    pub(super) started: std::time::Instant,
    pub(super) status: Mutex<Value>,
    pub(super) store: StoreHandle,
    pub(super) lists: SharedLists,
    pub(super) list_history: Mutex<ListHistory>,
    pub(super) resolve_updates: crate::intel::resolve::NameSetUpdater,
    pub(super) flags: Overrides,
    pub(super) feeds: crate::intel::feeds::Feeds,
    /// Held through a reload: reloads (SIGHUP, API, feeds) never interleave.
    pub(super) reloading: Mutex<()>,
    /// The `[blocklists]` settings in force: a feed's update reloads with these, so that an
    /// edit of the configuration file takes effect only when the operator reloads.
    pub(super) applied: Mutex<crate::config::Blocklists>,
}

impl DaemonState {
    /// Re-read the configuration file, the lists it names and its feeds' cached lists; swap the
    /// lists in atomically. On any error the running lists stay and the error is returned
    /// (`FILE:LINE: reason`).
    pub(super) fn reload_lists(&self, reread_config: bool) -> Result<Value, String> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .map_err(|_| "internal: lock poisoned".to_string())?;
        let settings = if reread_config {
            Config::for_run(&self.flags)
                .map(|c| c.blocklists)
                .map_err(|e| e.to_string())
        } else {
            self.applied
                .lock()
                .map(|a| a.clone())
                .map_err(|_| "internal: lock poisoned".to_string())
        };
        let result = settings.and_then(|settings| {
            let feeds = settings.feeds.clone();
            classify::load_lists(&settings, &self.feeds.lists(&feeds))
                .map(|lists| (lists, feeds, settings))
        });
        let mut history = self
            .list_history
            .lock()
            .map_err(|_| "internal: lock poisoned".to_string())?;
        let (lists, feeds, settings) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                history.last_error =
                    Some(json!({ "at": clock::rfc3339(std::time::SystemTime::now()), "error": e }));
                return Err(e);
            }
        };
        let summary = lists_status(&lists);
        self.resolve_updates.replace(lists.resolvable_names());
        match self.lists.write() {
            Ok(mut current) => *current = Arc::new(lists),
            Err(_) => return Err("internal: blocklist lock poisoned".into()),
        }
        history.loaded_at = std::time::SystemTime::now();
        history.active = summary.clone();
        drop(history);
        self.feeds.configure(&feeds);
        if let Ok(mut applied) = self.applied.lock() {
            *applied = settings;
        }
        Ok(json!({ "reloaded": true, "lists": summary }))
    }

    /// A reload the operator asked for (SIGHUP, `relaywatch reload`): the lists, then every
    /// feed checked now.
    pub(super) fn reload_requested(&self) -> Result<Value, String> {
        let result = self.reload_lists(true);
        if result.is_ok() {
            self.feeds.check_all_now();
        }
        result
    }

    /// Active lists for `relaywatch status`: each list's source, rule count, sha256, version,
    /// when the set was loaded, and the last refused reload.
    pub(super) fn lists_report(&self) -> Value {
        match self.list_history.lock() {
            Ok(h) => json!({
                "active": h.active,
                "loaded_at": clock::rfc3339(h.loaded_at),
                "last_error": h.last_error.clone().unwrap_or(Value::Null),
                "feeds": self.feeds.report(&h.active),
            }),
            Err(_) => Value::Null,
        }
    }
}

/// The active lists' summary (made once per load, not per status refresh), when they were
/// loaded, and the last reload that was refused.
pub(super) struct ListHistory {
    pub(super) active: Value,
    pub(super) loaded_at: std::time::SystemTime,
    pub(super) last_error: Option<Value>,
}

pub(super) fn lists_status(lists: &crate::intel::blocklist::Blocklists) -> Value {
    serde_json::to_value(lists.lists()).unwrap_or(Value::Null)
}

impl api::Daemon for DaemonState {
    fn status(&self) -> Value {
        let mut s = self.status.lock().map(|s| s.clone()).unwrap_or(Value::Null);
        s["uptime_seconds"] = json!(self.started.elapsed().as_secs());
        s
    }

    fn reload(&self) -> Result<Value, String> {
        let result = self.reload_requested();
        match &result {
            Ok(_) => log::info!("reloaded blocklists (API request)"),
            Err(e) => log::error!("reload refused, previous lists stay active: {e}"),
        }
        result
    }

    fn subscribe_alerts(&self) -> tokio::sync::broadcast::Receiver<Value> {
        self.store.subscribe_alerts()
    }

    fn subscribe_connections(&self) -> tokio::sync::broadcast::Receiver<Value> {
        self.store.subscribe_connections()
    }
}
