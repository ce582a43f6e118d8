//! Remote blocklist feeds: lists fetched over HTTPS (`[[blocklists.feed]]`), refreshed on an
//! interval, cached in the state directory and used from there.
//!
//! Data model. The lists in force are always built from files: local list files and each feed's
//! cached body (`cache`). A feed therefore changes the lists only through its cache, and only by
//! the reload every other change uses (`DaemonState::reload_lists`: all lists rebuilt, swapped
//! atomically, refused whole on any error). A feed with no cache yet contributes nothing.
//!
//! `Feeds` is the registry of configured feeds, shared by the daemon (which configures it on
//! every successful reload and reads it for `relaywatch status`) and the refresh task. Per feed
//! it holds the configuration, the usable cache's metadata, the last check and the last error,
//! and when the next check is due. One task checks the feeds one after another:
//! - a conditional GET (`fetch`) with the cache's ETag / Last-Modified;
//! - 304: the cache is current; its confirmation time is written;
//! - 200: the body is accepted only if it matches the pin, is UTF-8 and is a valid list on its
//!   own (`accept`, errors as `URL:LINE: reason`). Then it replaces the cache and the feed's URL
//!   is sent on the update channel, on which the daemon reloads the lists;
//! - anything else (unreachable, TLS, a status other than 200/304, pin, invalid list) leaves the
//!   cache and the lists as they are (used stale) and becomes the feed's last error, logged when
//!   it differs from the previous one.
//!
//! Next check: `interval_s` after a success, sooner after a failure (`RETRY_AFTER_FAILURE` at
//! most); every feed at start and when the operator reloads (SIGHUP, `relaywatch reload`).
pub mod cache;
pub mod fetch;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    clock,
    config::Feed,
    intel::blocklist::{Blocklists, ListText},
};
use cache::{CacheMeta, from_unix_seconds, unix_seconds};
use fetch::{Fetched, Validators};

/// Longest wait before trying a failing feed again (its interval, if shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);
/// List errors kept in a feed's last error (a web page served instead of a list has thousands).
const MAX_ERRORS_SHOWN: usize = 10;

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a feed is named in reports (list errors, match evidence, status): its URL, with the
/// user info and query, which may carry credentials, left out.
pub fn display_name(url: &str) -> String {
    crate::config::redacted_url(url)
}

/// A body that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sha256: String,
    pub rules: usize,
}

/// Check a fetched body: the pin, UTF-8, and a valid list on its own (every error located as
/// `URL:LINE: reason`, at most `MAX_ERRORS_SHOWN` of them).
pub fn accept(feed: &Feed, body: &[u8]) -> Result<Accepted, String> {
    let sha256 = sha256_hex(body);
    if let Some(pin) = feed.sha256.as_deref().filter(|pin| *pin != sha256) {
        return Err(format!(
            "the list's sha256 is {sha256}, not the pinned {pin}"
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.valid_up_to()))?;
    let list = ListText {
        name: display_name(&feed.url),
        text: text.to_owned(),
        category: feed.category,
    };
    let lists = Blocklists::load_all(&[], &[list], false).map_err(|errors| {
        let mut lines: Vec<String> = errors
            .iter()
            .take(MAX_ERRORS_SHOWN)
            .map(ToString::to_string)
            .collect();
        if errors.len() > MAX_ERRORS_SHOWN {
            lines.push(format!(
                "... and {} more errors",
                errors.len() - MAX_ERRORS_SHOWN
            ));
        }
        lines.join("\n")
    })?;
    Ok(Accepted {
        sha256,
        rules: lists.lists().iter().map(|l| l.rules).sum(),
    })
}

/// A usable cached copy of `feed`: it must still match the feed's pin.
fn usable_cache(state_dir: &Path, feed: &Feed) -> Result<Option<cache::Cached>, String> {
    let cached = cache::read(state_dir, &feed.url)?;
    match (cached, feed.sha256.as_deref()) {
        (Some(c), Some(pin)) if c.meta.sha256 != pin => Err(format!(
            "the cached list's sha256 {} is not the pinned {pin}",
            c.meta.sha256
        )),
        (cached, _) => Ok(cached),
    }
}

/// What the refresh task knows of one feed.
struct Tracked {
    feed: Feed,
    /// The usable cache's metadata; None: nothing cached (yet), or the cache is unusable.
    meta: Option<CacheMeta>,
    last_check: Option<SystemTime>,
    last_error: Option<(SystemTime, String)>,
    /// The last check failed.
    failing: bool,
    /// The error last logged, so that a feed failing the same way is logged once.
    logged: Option<String>,
    next_check: Instant,
    checking: bool,
}

impl Tracked {
    fn new(state_dir: &Path, feed: &Feed) -> Tracked {
        let mut t = Tracked {
            feed: feed.clone(),
            meta: None,
            last_check: None,
            last_error: None,
            failing: false,
            logged: None,
            next_check: Instant::now(),
            checking: false,
        };
        match usable_cache(state_dir, feed) {
            Ok(cached) => t.meta = cached.map(|c| c.meta),
            Err(e) => t.fail(format!("{e}; fetching it again")),
        }
        t
    }

    fn fail(&mut self, error: String) {
        let url = display_name(&self.feed.url);
        if self.logged.as_deref() != Some(error.as_str()) {
            let kept = if self.meta.is_some() {
                "the cached list stays in use"
            } else {
                "no cached list to use"
            };
            log::warn!("feed {url}: {error} ({kept})");
            self.logged = Some(error.clone());
        }
        self.failing = true;
        self.last_error = Some((SystemTime::now(), error));
    }

    fn succeed(&mut self) {
        if self.logged.take().is_some() {
            log::info!(
                "feed {}: checked successfully again",
                display_name(&self.feed.url)
            );
        }
        self.failing = false;
    }

    /// `never_fetched`: no usable cache. `stale`: the cache is in use but the last check failed,
    /// or the server has not confirmed it for two intervals. `fresh` otherwise.
    fn state(&self, now: SystemTime) -> &'static str {
        let Some(meta) = &self.meta else {
            return "never_fetched";
        };
        let confirmed = from_unix_seconds(meta.checked_at);
        let overdue = now
            .duration_since(confirmed)
            .is_ok_and(|age| age > Duration::from_secs(self.feed.interval_s.saturating_mul(2)));
        if self.failing || overdue {
            "stale"
        } else {
            "fresh"
        }
    }

    fn report(&self, active: &Value, now: SystemTime, now_instant: Instant) -> Value {
        let name = display_name(&self.feed.url);
        let time = |t: Option<SystemTime>| t.map_or(Value::Null, |t| json!(clock::rfc3339(t)));
        let loaded = active
            .as_array()
            .and_then(|lists| lists.iter().find(|l| l["path"] == name.as_str()));
        let meta = self.meta.as_ref();
        let next = if self.checking {
            None
        } else {
            Some(now + self.next_check.saturating_duration_since(now_instant))
        };
        json!({
            "url": name,
            "state": self.state(now),
            "interval_s": self.feed.interval_s,
            "pinned": self.feed.sha256.is_some(),
            "rules": loaded.map_or(Value::Null, |l| l["rules"].clone()),
            "sha256": meta.map(|m| m.sha256.clone()),
            "bytes": meta.map(|m| m.bytes),
            "etag": meta.and_then(|m| m.etag.clone()),
            "last_modified": meta.and_then(|m| m.last_modified.clone()),
            "fetched_at": time(meta.map(|m| from_unix_seconds(m.fetched_at))),
            "last_success": time(meta.map(|m| from_unix_seconds(m.checked_at))),
            "last_check": time(self.last_check),
            "next_check": time(next),
            "last_error": self.last_error.as_ref().map_or(Value::Null, |(at, e)| json!({ "at": clock::rfc3339(*at), "error": e })),
        })
    }
}

/// The feed registry and a handle on its refresh task. Cloning shares both.
#[derive(Clone)]
pub struct Feeds {
    state_dir: PathBuf,
    tracked: Arc<Mutex<Vec<Tracked>>>,
    wake: Arc<Notify>,
}

impl Feeds {
    /// The registry for `feeds` (their caches read now) and its refresh task, which checks every
    /// feed at once. The receiver yields the URL of each feed whose cache got a new list.
    pub fn start(
        state_dir: &Path,
        feeds: &[Feed],
    ) -> (Feeds, mpsc::UnboundedReceiver<String>, JoinHandle<()>) {
        let handle = Feeds {
            state_dir: state_dir.to_owned(),
            tracked: Arc::default(),
            wake: Arc::default(),
        };
        handle.configure(feeds);
        let (updates, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(refresh(handle.clone(), updates));
        (handle, received, task)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Tracked>> {
        self.tracked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached lists of `feeds`, to load with the other lists. A feed without a usable cache
    /// contributes nothing (its state says why).
    pub fn lists(&self, feeds: &[Feed]) -> Vec<ListText> {
        feeds
            .iter()
            .filter_map(|feed| match usable_cache(&self.state_dir, feed) {
                Ok(cached) => cached.map(|c| ListText {
                    name: display_name(&feed.url),
                    text: c.text,
                    category: feed.category,
                }),
                Err(e) => {
                    log::warn!("feed {}: {e}; not used", display_name(&feed.url));
                    None
                }
            })
            .collect()
    }

    /// Take `feeds` as the configured set (after a reload): a feed configured as before keeps its
    /// state and schedule; a new or changed one is checked now.
    pub fn configure(&self, feeds: &[Feed]) {
        // Caches are read without the lock (status must not wait for that); the swap is one step
        // under it, so that a check in progress finds its feed when it ends.
        let known: Vec<Feed> = self.lock().iter().map(|t| t.feed.clone()).collect();
        let mut added: Vec<Tracked> = feeds
            .iter()
            .filter(|f| !known.contains(f))
            .map(|f| Tracked::new(&self.state_dir, f))
            .collect();
        let mut tracked = self.lock();
        let mut previous = std::mem::take(&mut *tracked);
        *tracked = feeds
            .iter()
            .map(|feed| {
                let take = |from: &mut Vec<Tracked>| {
                    from.iter()
                        .position(|t| t.feed == *feed)
                        .map(|i| from.swap_remove(i))
                };
                take(&mut previous)
                    .or_else(|| take(&mut added))
                    .unwrap_or_else(|| Tracked::new(&self.state_dir, feed))
            })
            .collect();
        drop(tracked);
        self.wake.notify_one();
    }

    /// Check every feed now (the operator reloaded).
    pub fn check_all_now(&self) {
        let now = Instant::now();
        for t in self.lock().iter_mut() {
            t.next_check = now;
        }
        self.wake.notify_one();
    }

    /// The reload that was to put `url`'s new list in force was refused.
    pub fn reload_refused(&self, url: &str, error: &str) {
        if let Some(t) = self.lock().iter_mut().find(|t| t.feed.url == url) {
            t.fail(format!(
                "the new list is cached but the reload was refused: {error}"
            ));
        }
    }

    /// Every feed's state for `relaywatch status`; `active` is the active lists' summary (the
    /// rule count of a feed's list in force comes from there).
    pub fn report(&self, active: &Value) -> Value {
        let (now, now_instant) = (SystemTime::now(), Instant::now());
        Value::Array(
            self.lock()
                .iter()
                .map(|t| t.report(active, now, now_instant))
                .collect(),
        )
    }

    /// The next feed due, marked as being checked, with the validators of its cache.
    fn take_due(&self, now: Instant) -> Option<(Feed, Option<Validators>, Option<CacheMeta>)> {
        let mut tracked = self.lock();
        let t = tracked
            .iter_mut()
            .filter(|t| !t.checking && t.next_check <= now)
            .min_by_key(|t| t.next_check)?;
        t.checking = true;
        t.last_check = Some(SystemTime::now());
        let validators = t.meta.as_ref().map(|m| Validators {
            etag: m.etag.clone(),
            last_modified: m.last_modified.clone(),
        });
        Some((t.feed.clone(), validators, t.meta.clone()))
    }

    fn next_due(&self) -> Option<Instant> {
        self.lock()
            .iter()
            .filter(|t| !t.checking)
            .map(|t| t.next_check)
            .min()
    }

    /// Record the outcome of checking `feed` (unless it was reconfigured meanwhile).
    fn finish(&self, feed: &Feed, outcome: Result<Option<CacheMeta>, String>) {
        let mut tracked = self.lock();
        let Some(t) = tracked.iter_mut().find(|t| t.feed == *feed && t.checking) else {
            return;
        };
        t.checking = false;
        let interval = Duration::from_secs(feed.interval_s);
        match outcome {
            Ok(meta) => {
                t.meta = meta.or(t.meta.take());
                t.succeed();
                t.next_check = Instant::now() + interval;
            }
            Err(e) => {
                t.fail(e);
                t.next_check = Instant::now() + interval.min(RETRY_AFTER_FAILURE);
            }
        }
    }
}

/// The refresh task: check each feed when it is due, until the daemon stops.
async fn refresh(feeds: Feeds, updates: mpsc::UnboundedSender<String>) {
    loop {
        while let Some((feed, validators, meta)) = feeds.take_due(Instant::now()) {
            let outcome = check(&feeds.state_dir, &feed, validators.as_ref(), meta).await;
            let new_list = matches!(&outcome, Ok((_, true)));
            feeds.finish(&feed, outcome.map(|(meta, _)| meta));
            if new_list {
                let _ = updates.send(feed.url.clone());
            }
        }
        let due = feeds.next_due();
        tokio::select! {
            _ = feeds.wake.notified() => {}
            _ = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {}
        }
    }
}

/// One check of `feed`: the cache's new metadata (None: unchanged) and whether it holds a new
/// list.
async fn check(
    state_dir: &Path,
    feed: &Feed,
    validators: Option<&Validators>,
    meta: Option<CacheMeta>,
) -> Result<(Option<CacheMeta>, bool), String> {
    // A conditional request is only right while the cached body is there and intact: a 304
    // would otherwise keep a missing or damaged copy "fresh" forever.
    let intact = {
        let (state_dir, feed) = (state_dir.to_owned(), feed.clone());
        tokio::task::spawn_blocking(move || matches!(usable_cache(&state_dir, &feed), Ok(Some(_))))
            .await
            .unwrap_or(false)
    };
    if validators.is_some() && !intact {
        log::warn!(
            "feed {}: the cached copy is missing or damaged; fetching it whole",
            display_name(&feed.url)
        );
    }
    let fetched = fetch::fetch(feed, validators.filter(|_| intact)).await?;
    let now = unix_seconds(SystemTime::now());
    let (state_dir, feed) = (state_dir.to_owned(), feed.clone());
    // Checking a list of up to 64 MiB and writing it are blocking work.
    let blocking = tokio::task::spawn_blocking(move || match fetched {
        Fetched::NotModified => {
            let Some(mut meta) = meta else {
                return Err("HTTP 304 without a cached copy".to_owned());
            };
            meta.checked_at = now;
            cache::write(&state_dir, &meta, None)?;
            Ok((Some(meta), false))
        }
        Fetched::Body { body, validators } => {
            let accepted = accept(&feed, &body)?;
            let unchanged = meta.as_ref().is_some_and(|m| m.sha256 == accepted.sha256);
            let fetched_at = meta
                .as_ref()
                .filter(|_| unchanged)
                .map_or(now, |m| m.fetched_at);
            let new_meta = CacheMeta {
                url: feed.url.clone(),
                etag: validators.etag,
                last_modified: validators.last_modified,
                fetched_at,
                checked_at: now,
                sha256: accepted.sha256,
                bytes: body.len() as u64,
            };
            // The body is written when it changed, or when the cached copy was lost (then the
            // lists are reloaded too: the reload that found it missing went without it).
            let rewrite = !unchanged || !intact;
            cache::write(&state_dir, &new_meta, rewrite.then_some(&body[..]))?;
            if !unchanged {
                log::info!(
                    "feed {}: new list, {} rules, sha256 {}",
                    display_name(&feed.url),
                    accepted.rules,
                    new_meta.sha256
                );
            }
            Ok((Some(new_meta), rewrite))
        }
    });
    blocking
        .await
        .map_err(|e| format!("internal: the check stopped: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(url: &str) -> Feed {
        Feed {
            url: url.into(),
            category: None,
            sha256: None,
            interval_s: 3600,
            ca_file: None,
            max_bytes: Feed::default_max_bytes(),
            timeout_s: Feed::default_timeout_s(),
        }
    }

    const LIST: &[u8] = b"# relaywatch: category=ai-relay\nfull:relay.example\ndomain:gw.example\n";

    #[test]
    fn display_names_leave_the_query_out() {
        assert_eq!(
            display_name("https://lists.example.com/a.list"),
            "https://lists.example.com/a.list"
        );
        assert_eq!(
            display_name("https://lists.example.com/a.list?token=s3cret"),
            "https://lists.example.com/a.list?…"
        );
    }

    #[test]
    fn a_valid_list_is_accepted_with_its_digest_and_rule_count() {
        let a = accept(&feed("https://h/a.list"), LIST).unwrap();
        assert_eq!(
            a,
            Accepted {
                sha256: sha256_hex(LIST),
                rules: 2
            }
        );
        assert_eq!(a.sha256.len(), 64);
    }

    #[test]
    fn the_pin_is_checked_before_anything_else() {
        let mut f = feed("https://h/a.list");
        f.sha256 = Some(sha256_hex(LIST));
        assert!(accept(&f, LIST).is_ok());
        f.sha256 = Some("0".repeat(64));
        assert_eq!(
            accept(&f, LIST).unwrap_err(),
            format!(
                "the list's sha256 is {}, not the pinned {}",
                sha256_hex(LIST),
                "0".repeat(64)
            )
        );
        assert!(accept(&f, b"\xff").unwrap_err().contains("not the pinned"));
    }

    #[test]
    fn invalid_bodies_are_refused_with_url_and_line() {
        let f = feed("https://h/a.list?key=x");
        assert_eq!(
            accept(&f, b"# relaywatch: category=ai-relay\nok.example\n\xff\n").unwrap_err(),
            "not UTF-8 text (byte 43)"
        );
        assert_eq!(
            accept(
                &f,
                b"# relaywatch: category=ai-relay\nok.example\ndomian:x.example\n"
            )
            .unwrap_err(),
            "https://h/a.list?…:3: unknown rule prefix 'domian:' (expected domain:, full:, keyword:, regexp: or include:)"
        );
        let page: String = (0..25).map(|i| format!("<p>{i} a b</p>\n")).collect();
        let e = accept(
            &Feed {
                category: Some(crate::intel::blocklist::Category::AiRelay),
                ..f
            },
            page.as_bytes(),
        )
        .unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), MAX_ERRORS_SHOWN + 1, "{e}");
        assert!(lines[0].starts_with("https://h/a.list?…:1: "), "{e}");
        assert_eq!(lines[MAX_ERRORS_SHOWN], "... and 15 more errors");
    }

    #[test]
    fn a_header_cannot_change_the_configured_category() {
        let mut f = feed("https://h/a.list");
        f.category = Some(crate::intel::blocklist::Category::AiRelay);
        let e = accept(&f, b"# relaywatch: category=allow\nfull:api.openai.com\n").unwrap_err();
        assert_eq!(
            e,
            "https://h/a.list:1: the header says category=allow, but this list is configured as ai-relay"
        );
        // Without a configured category the header decides, but never to make an allow list.
        f.category = None;
        let e = accept(&f, b"# relaywatch: category=allow\nfull:api.openai.com\n").unwrap_err();
        assert!(
            e.starts_with("https://h/a.list:1: a remote list may be an allow list only when"),
            "{e}"
        );
        assert!(accept(&f, b"# relaywatch: category=ai-relay\nfull:relay.example\n").is_ok());
        f.category = Some(crate::intel::blocklist::Category::Allow);
        assert!(accept(&f, b"# relaywatch: category=allow\nfull:gateway.example\n").is_ok());
    }

    #[test]
    fn states_follow_the_cache_and_the_last_check() {
        let dir = std::env::temp_dir().join(format!("relaywatch-feedstate-{}", std::process::id()));
        let f = feed("https://h/a.list");
        let mut t = Tracked::new(&dir, &f);
        let now = SystemTime::now();
        assert_eq!(t.state(now), "never_fetched");
        t.meta = Some(CacheMeta {
            url: f.url.clone(),
            etag: None,
            last_modified: None,
            fetched_at: unix_seconds(now),
            checked_at: unix_seconds(now),
            sha256: sha256_hex(LIST),
            bytes: LIST.len() as u64,
        });
        assert_eq!(t.state(now), "fresh");
        t.fail("HTTP 500 Internal Server Error".into());
        assert_eq!(t.state(now), "stale");
        t.succeed();
        assert_eq!(t.state(now), "fresh");
        assert_eq!(
            t.state(now + Duration::from_secs(2 * 3600 + 1)),
            "stale",
            "not confirmed for two intervals"
        );
        let r = t.report(
            &json!([{ "path": "https://h/a.list", "rules": 2 }]),
            now,
            Instant::now(),
        );
        assert_eq!(
            (r["state"].as_str(), r["rules"].as_u64(), r["url"].as_str()),
            (Some("fresh"), Some(2), Some("https://h/a.list"))
        );
        assert_eq!(
            r["last_error"]["error"], "HTTP 500 Internal Server Error",
            "the last error stays visible after a success"
        );
    }
}
