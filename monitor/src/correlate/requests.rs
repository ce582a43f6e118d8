//! Requests read from TLS plaintext (uprobes), joined per connection and paired with the
//! connection record they belong to.
//!
//! Data model:
//! - `partial`: (tgid, library connection object) -> the writes copied so far (at most
//!   `TLS_BYTES_CAPTURED` bytes, `TLS_WRITES_CAPTURED` writes). A request is read once its
//!   evidence is complete (an API request with its model, or the last write the kernel copies)
//!   or `JOIN_WAIT` after its first write, whichever comes first; then the bytes are dropped.
//! - `held`: TLS connection records (SNI read) of processes whose TLS library is read, waiting
//!   up to `HOLD` for their request, so that the record and its alert carry the API evidence
//!   (and an unlisted host can be judged by it). A record whose request does not come in time
//!   is written without it.
//! - `recent`: connections already written, kept for a while: a request that arrives after its
//!   record was written (a slow server, a pooled connection used later) still counts.
//!
//! Pairing: the kernel does not see which socket a TLS library writes to, so a request is
//! paired by its process (tgid) and its Host / :authority against the connection's name (SNI),
//! then by the thread that made the connection, then the process's most recent TLS connection.
//! The request's own Host names the destination either way.
//!
//! Bounds: every map is an LRU with a fixed capacity; the bytes of at most `MAX_PARTIAL`
//! requests are held (4 KiB each).
use std::{
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use monitor_common::tls::{TLS_BYTES_CAPTURED, TLS_WRITES_CAPTURED};

use super::Finished;
use crate::{
    intel::api_shape::{self, ApiEvidence},
    kernel::decode::{TlsData, TlsLibrary},
    naming::request::{self, RequestHead},
    report::record::{ApiRequest, Record},
};

/// How long a request's writes are joined after its first.
pub const JOIN_WAIT: Duration = Duration::from_millis(150);
/// How long a TLS connection's record waits for its request (the handshake's round trip and
/// the client's think time come first).
pub const HOLD: Duration = Duration::from_millis(1500);
/// How long a written connection can still be paired with a late request.
pub const RECENT: Duration = Duration::from_secs(120);
const MAX_PARTIAL: usize = 1024;
const MAX_HELD: usize = 4096;
const MAX_RECENT: usize = 8192;

/// A request read from a connection's plaintext.
#[derive(Debug, Clone)]
pub struct PlainRequest {
    pub tgid: u32,
    pub tid: u32,
    /// The TLS library's connection object.
    pub conn: u64,
    pub library: TlsLibrary,
    pub head: RequestHead,
    /// Set when the request is shaped like an AI API call.
    pub api: Option<ApiEvidence>,
}

struct Partial {
    bytes: Vec<u8>,
    first: Instant,
    tid: u32,
    library: TlsLibrary,
    writes: u8,
}

/// A TLS connection whose record waits for its request (and then, briefly, for the answer's
/// head, which may name the relay software).
pub struct Held {
    pub finished: Finished,
    pub until: Instant,
    /// The API request read from it, once read.
    pub api: Option<ApiRequest>,
    /// (tgid, library connection object) whose answer is awaited.
    pub answer_of: Option<(u32, u64)>,
}

/// How long a record with an API request waits for the answer's head after the request.
pub const ANSWER_WAIT: Duration = Duration::from_millis(1000);

/// A TLS connection already written.
#[derive(Clone)]
pub struct Recent {
    pub tgid: u32,
    pub tid: u32,
    pub domain: Option<String>,
    pub at: Instant,
    /// Its record (the connection document), to build a late alert from.
    pub record: Record,
    /// It already raised an alert (a late request adds nothing then).
    pub alerted: bool,
    /// A request was already paired with it.
    pub paired: bool,
}

/// Where a request was paired.
pub enum Paired {
    Held(Box<Held>),
    Recent(Box<Recent>),
    Unpaired,
}

pub struct Requests {
    partial: LruCache<(u32, u64), Partial>,
    held: LruCache<u64, Held>,
    recent: LruCache<u64, Recent>,
    /// Requests that found no connection (counted for status).
    pub unpaired: u64,
    /// Requests read, and those shaped like AI API calls.
    pub read: u64,
    pub api_shaped: u64,
}

impl Default for Requests {
    fn default() -> Self {
        let cap = |n| NonZeroUsize::new(n).expect("non-zero");
        Requests {
            partial: LruCache::new(cap(MAX_PARTIAL)),
            held: LruCache::new(cap(MAX_HELD)),
            recent: LruCache::new(cap(MAX_RECENT)),
            unpaired: 0,
            read: 0,
            api_shaped: 0,
        }
    }
}

impl Requests {
    /// A copied write; the request, when its evidence is complete.
    pub fn on_data(&mut self, data: &TlsData, now: Instant) -> Option<PlainRequest> {
        if !data.written {
            return None; // answers: see `answer`
        }
        let key = (data.header.tgid, data.header.conn);
        if data.header.index == 0 {
            // A connection's first write (a reused connection object starts again).
            self.partial.pop(&key);
        }
        let partial = self.partial.get_or_insert_mut(key, || Partial {
            bytes: Vec::new(),
            first: now,
            tid: data.header.tid,
            library: data.library,
            writes: 0,
        });
        let room = (TLS_BYTES_CAPTURED as usize).saturating_sub(partial.bytes.len());
        partial
            .bytes
            .extend_from_slice(&data.data[..data.data.len().min(room)]);
        partial.writes = partial.writes.saturating_add(1);
        let last = partial.writes >= TLS_WRITES_CAPTURED
            || partial.bytes.len() >= TLS_BYTES_CAPTURED as usize;
        let read = read_request(key.0, key.1, partial);
        let complete = read
            .as_ref()
            .is_some_and(|r| r.api.as_ref().is_some_and(|a| a.model.is_some()));
        if !(last || complete) {
            return None;
        }
        self.partial.pop(&key);
        self.count(read)
    }

    /// Requests whose join wait is over.
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<PlainRequest> {
        let mut out = Vec::new();
        while let Some((_, p)) = self.partial.peek_lru() {
            if !all && now.duration_since(p.first) < JOIN_WAIT {
                // LRU order is touch order, close enough to arrival order: a touched entry
                // got a write recently and waits for more anyway.
                break;
            }
            let Some(((tgid, conn), p)) = self.partial.pop_lru() else {
                break;
            };
            if let Some(r) = self.count(read_request(tgid, conn, &p)) {
                out.push(r);
            }
        }
        out
    }

    /// The relay software an answer's head names, if any (the bytes are dropped).
    pub fn answer(data: &TlsData) -> Option<&'static str> {
        if data.written {
            return None;
        }
        request::parse_response(&data.data).ok()?.relay_software
    }

    fn count(&mut self, read: Option<PlainRequest>) -> Option<PlainRequest> {
        let r = read?;
        self.read += 1;
        if r.api.is_some() {
            self.api_shaped += 1;
        }
        Some(r)
    }

    /// Hold a TLS connection's record for its request. Returns it back when too many wait.
    pub fn hold(&mut self, finished: Finished, now: Instant) -> Option<Finished> {
        if self.held.len() >= MAX_HELD {
            return Some(finished);
        }
        let cookie = finished.observation.raw.cookie;
        self.held.put(
            cookie,
            Held {
                finished,
                until: now + HOLD,
                api: None,
                answer_of: None,
            },
        );
        None
    }

    /// A held record got its API request: it waits a little longer for the answer's head.
    pub fn await_answer(
        &mut self,
        mut held: Box<Held>,
        api: ApiRequest,
        request: &PlainRequest,
        now: Instant,
    ) {
        held.api = Some(api);
        held.answer_of = Some((request.tgid, request.conn));
        held.until = now + ANSWER_WAIT;
        let cookie = held.finished.observation.raw.cookie;
        self.held.put(cookie, *held);
    }

    /// The answer's head of (tgid, conn) was read: the held record waiting for it.
    pub fn answered(&mut self, tgid: u32, conn: u64) -> Option<Held> {
        let cookie = self
            .held
            .iter()
            .find(|(_, h)| h.answer_of == Some((tgid, conn)))
            .map(|(c, _)| *c)?;
        self.held.pop(&cookie)
    }

    /// Records whose wait for a request (or an answer) is over.
    pub fn released(&mut self, now: Instant, all: bool) -> Vec<Held> {
        let due: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| all || h.until <= now)
            .map(|(c, _)| *c)
            .collect();
        due.into_iter().filter_map(|c| self.held.pop(&c)).collect()
    }

    /// The earliest moment something here is due.
    pub fn next_due(&self) -> Option<Instant> {
        let held = self.held.iter().map(|(_, h)| h.until).min();
        let joined = self.partial.peek_lru().map(|(_, p)| p.first + JOIN_WAIT);
        match (held, joined) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Remember a written TLS connection for late requests.
    pub fn written(&mut self, cookie: u64, recent: Recent) {
        self.recent.put(cookie, recent);
    }

    /// The connection `request` was sent on: held first, then recently written.
    pub fn pair(&mut self, request: &PlainRequest, now: Instant) -> Paired {
        let host = request.head.host.as_deref();
        let held = best(
            self.held
                .iter()
                .filter(|(_, h)| h.api.is_none())
                .map(|(c, h)| {
                    let o = &h.finished.observation;
                    (
                        *c,
                        o.raw.tgid,
                        o.raw.tid,
                        h.finished.naming.domain.as_deref(),
                    )
                }),
            request,
            host,
        );
        if let Some(cookie) = held
            && let Some(h) = self.held.pop(&cookie)
        {
            return Paired::Held(Box::new(h));
        }
        let recent = best(
            self.recent
                .iter()
                .filter(|(_, r)| !r.paired && now.duration_since(r.at) < RECENT)
                .map(|(c, r)| (*c, r.tgid, r.tid, r.domain.as_deref())),
            request,
            host,
        );
        if let Some(cookie) = recent
            && let Some(r) = self.recent.get_mut(&cookie)
        {
            r.paired = true;
            return Paired::Recent(Box::new(r.clone()));
        }
        self.unpaired += 1;
        Paired::Unpaired
    }
}

/// The best candidate for `request` among (cookie, tgid, tid, domain): same process required;
/// then the name matching the request's host, then the same thread; the most recent first
/// (iteration order of an LRU is most recent first).
fn best<'a>(
    candidates: impl Iterator<Item = (u64, u32, u32, Option<&'a str>)>,
    request: &PlainRequest,
    host: Option<&str>,
) -> Option<u64> {
    let mut best: Option<(u8, u64)> = None;
    for (cookie, tgid, tid, domain) in candidates {
        if tgid != request.tgid {
            continue;
        }
        let named = matches!((host, domain), (Some(h), Some(d)) if h.eq_ignore_ascii_case(d));
        let score = 1 + 2 * u8::from(named) + u8::from(tid == request.tid);
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, cookie));
        }
    }
    best.map(|(_, c)| c)
}

fn read_request(tgid: u32, conn: u64, p: &Partial) -> Option<PlainRequest> {
    let head = request::parse_request(&p.bytes).ok()?;
    let api = api_shape::classify(&head);
    Some(PlainRequest {
        tgid,
        conn,
        tid: p.tid,
        library: p.library,
        head,
        api,
    })
}

/// The record's `relaywatch.api` for an AI API request: names and shapes only.
pub fn api_record(request: &PlainRequest) -> Option<ApiRequest> {
    let api = request.api.as_ref()?;
    Some(ApiRequest {
        family: api.family.as_str().into(),
        // Identified by its headers only: the path as it was (without its query).
        route: api
            .route
            .clone()
            .unwrap_or_else(|| request.head.path.clone()),
        prefix: api.prefix.clone(),
        method: api.method.clone(),
        host: api.host.clone(),
        protocol: match request.head.protocol {
            request::Protocol::Http1 => "http/1.1",
            request::Protocol::Http2 => "h2",
        }
        .into(),
        headers: api.api_headers.iter().map(|h| h.name.clone()).collect(),
        key_prefix: api.key_prefix.map(str::to_string),
        user_agent: api.user_agent.clone(),
        model: api.model.clone(),
        library: request.library.as_str().into(),
    })
}
