//! Naming each connection from its evidence: payload first, then DNS answers.
//!
//! The kernel reports a connection (connect or window-opening datagram) before any of its
//! payload, so each record waits here until it is named or a bounded wait runs out:
//! - a stream (TCP, connected UDP) waits up to `name_wait` (default 2 s) for its first bytes:
//!   TLS ClientHello (`sni`), HTTP request (`http_host`), a proxy request (`proxy_target`, or
//!   `sni` when the ClientHello inside the tunnel was read), QUIC Initial (`quic_sni`);
//! - an unconnected datagram waits for its repeat window to close (it carries the window's
//!   count) and is named from its first datagram when that is a QUIC Initial;
//! - whatever the payload did not name falls back to the DNS answers this process received for
//!   the address (`dns_answer_process`), then those anyone on the host received
//!   (`dns_answer_host`), then the addresses the blocklists' own names resolve to
//!   (`resolved_blocklist`), else `none`.
//!
//! Each record leaves exactly once. Payload bytes are parsed here and dropped: only names,
//! TLS fingerprints and proxy targets leave this module.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use self::dns_cache::{DnsCache, DnsScope};
use crate::{
    kernel::decode::{Hook, Observation, PayloadChunk, Transport},
    naming::{
        self,
        examine::{DATAGRAMS_CAPTURED, examine_datagrams, examine_stream},
        model::{NameSource, Naming},
        stream::StreamPrefix,
    },
    process::ProcessDetails,
};

pub(crate) mod dns_cache;
pub(crate) mod local_clients;
pub(crate) mod requests;

/// A record ready to be written.
pub struct Finished {
    pub observation: Observation,
    pub process: Option<ProcessDetails>,
    pub naming: Naming,
    /// Unconnected UDP: the window's datagram count, filled in by the caller from the kernel.
    pub is_datagram: bool,
    /// Stream bytes captured before the record was finished (counted into its flow volume).
    pub captured_bytes: u64,
}

/// The first DNS message of a TCP stream's bytes from port 53, if they hold it whole.
fn tcp_dns_message(segment: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*segment.first()?, *segment.get(1)?]));
    segment.get(2..2 + len)
}

struct PendingStream {
    observation: Observation,
    process: Option<ProcessDetails>,
    prefix: StreamPrefix,
    best: Option<Naming>,
    /// Connected UDP: its first datagrams (at most `DATAGRAMS_CAPTURED`).
    datagrams: Vec<Vec<u8>>,
}

struct PendingDatagram {
    observation: Observation,
    process: Option<ProcessDetails>,
    /// The window's first datagrams (at most `DATAGRAMS_CAPTURED`), examined when it closes.
    datagrams: Vec<Vec<u8>>,
}

/// Streams waiting for their first bytes at most; beyond, the oldest are written early.
pub const MAX_PENDING_STREAMS: usize = 16_384;
/// Datagram windows waiting to close at most (the kernel's `UDP_FLOWS` forgets counts beyond as
/// many destinations anyway); beyond, the oldest are written early with their count so far.
pub const MAX_PENDING_DATAGRAMS: usize = 16_384;

/// (socket cookie, destination, port): a datagram flow's first datagram is matched by these.
type DatagramKey = (u64, IpAddr, u16);

pub struct Correlator {
    name_wait: Duration,
    datagram_wait: Duration,
    streams: HashMap<u64, PendingStream>,
    /// Stream deadlines in arrival order (all waits are equal, so this is deadline order).
    stream_deadlines: VecDeque<(Instant, u64)>,
    datagrams: HashMap<DatagramKey, PendingDatagram>,
    /// Deadlines in arrival order, each with the `ts_boot_ns` of the window it is for: a key's
    /// record can leave before its deadline (the next window began), and a later window of the
    /// same key must not leave at the earlier one's deadline.
    datagram_deadlines: VecDeque<(Instant, DatagramKey, u64)>,
    /// Records finished outside `due` (a window closed by the next one), handed out by
    /// `overflow`.
    ready: Vec<Finished>,
    /// Records written before their wait was over because more than the bound were waiting.
    pub written_early: u64,
    pub dns: DnsCache,
    /// Addresses the blocklists' names resolve to (the last fallback), when resolution runs.
    pub resolved: Option<crate::intel::resolve::ResolvedNames>,
    /// The agent's own pid: answers to its own queries (resolving the lists' names) are not
    /// DNS the host saw, and must not pass for `dns_answer_host` evidence (0: none).
    pub own_pid: u32,
    /// DNS over TCP answers longer than their first chunk, reassembled per socket (bounded:
    /// the least recently fed goes first).
    dns_tcp: lru::LruCache<u64, StreamPrefix>,
}

/// DNS-over-TCP answers being reassembled at once.
const DNS_TCP_PENDING: usize = 256;

impl Correlator {
    pub fn new(name_wait: Duration, datagram_wait: Duration, dns_capacity: usize) -> Correlator {
        Correlator {
            name_wait,
            datagram_wait,
            streams: HashMap::new(),
            stream_deadlines: VecDeque::new(),
            datagrams: HashMap::new(),
            datagram_deadlines: VecDeque::new(),
            ready: Vec::new(),
            written_early: 0,
            dns: DnsCache::new(dns_capacity),
            resolved: None,
            own_pid: 0,
            dns_tcp: lru::LruCache::new(
                std::num::NonZeroUsize::new(DNS_TCP_PENDING).expect("non-zero"),
            ),
        }
    }

    /// A new connection: held until it is named or its wait is over.
    pub fn on_connection(
        &mut self,
        observation: Observation,
        process: Option<ProcessDetails>,
        now: Instant,
    ) {
        let cookie = observation.raw.cookie;
        match observation.hook {
            Hook::Connect => {
                if self.streams.contains_key(&cookie) {
                    // A UDP socket connected again before its record was written: the first
                    // destination keeps its record, the second is not reported separately.
                    log::debug!("socket {cookie:#x} reconnected before its record was written");
                    return;
                }
                self.streams.insert(
                    cookie,
                    PendingStream {
                        observation,
                        process,
                        prefix: StreamPrefix::default(),
                        best: None,
                        datagrams: Vec::new(),
                    },
                );
                self.stream_deadlines
                    .push_back((now + self.name_wait, cookie));
            }
            Hook::Sendmsg => {
                let key = (cookie, observation.destination, observation.port);
                let window = observation.raw.ts_boot_ns;
                let previous = self.datagrams.insert(
                    key,
                    PendingDatagram {
                        observation,
                        process,
                        datagrams: Vec::new(),
                    },
                );
                // The kernel opened the next window of this flow: the previous one is closed
                // (its final count is kept beside the new one), so its record is complete.
                if let Some(previous) = previous {
                    let finished = self.finish_datagram(previous, now);
                    self.ready.push(finished);
                }
                self.datagram_deadlines
                    .push_back((now + self.datagram_wait, key, window));
            }
        }
    }

    /// A chunk of captured payload. Returns a finished record when this chunk named it.
    pub fn on_payload(&mut self, chunk: &PayloadChunk, now: Instant) -> Option<Finished> {
        if !chunk.egress {
            if self.own_pid == 0 || chunk.header.owner_tgid != self.own_pid {
                self.on_dns_answer(chunk, now);
            }
            return None;
        }
        let cookie = chunk.header.cookie;
        if let Some(stream) = self.streams.get_mut(&cookie) {
            if stream.observation.transport == Transport::Udp {
                // Connected UDP: the first datagrams (QUIC Initials, if anything) decide.
                if chunk.header.offset != 0 || stream.datagrams.len() >= DATAGRAMS_CAPTURED {
                    return None;
                }
                stream.datagrams.push(chunk.data.clone());
                let verdict = examine_datagrams(&stream.datagrams);
                stream.best = verdict.naming;
                return if verdict.complete {
                    self.finish_stream(cookie, now)
                } else {
                    None
                };
            }
            stream.prefix.insert(chunk.header.seq, &chunk.data);
            let verdict = examine_stream(stream.prefix.bytes());
            if verdict.naming.is_some() {
                stream.best = verdict.naming;
            }
            if verdict.complete || stream.prefix.bytes().len() >= StreamPrefix::limit() {
                return self.finish_stream(cookie, now);
            }
            return None;
        }
        let key = (cookie, chunk.destination(), chunk.header.dport);
        // Only each datagram's first chunk: a QUIC Initial fits in one.
        if let Some(d) = self.datagrams.get_mut(&key)
            && chunk.header.offset == 0
            && d.datagrams.len() < DATAGRAMS_CAPTURED
        {
            d.datagrams.push(chunk.data.clone());
        }
        None
    }

    fn on_dns_answer(&mut self, chunk: &PayloadChunk, now: Instant) {
        if Transport::try_from(chunk.header.protocol) != Ok(Transport::Tcp) {
            self.on_dns_message(chunk, &chunk.data, now);
            return;
        }
        // DNS over TCP: a 2-byte length, then the message, which may continue over further
        // segments (the kernel sends up to DNS_TCP_SEGMENTS_MAX of a DNS socket's segments).
        let cookie = chunk.header.cookie;
        if let Some(prefix) = self.dns_tcp.get_mut(&cookie) {
            prefix.insert(chunk.header.seq, &chunk.data);
            if let Some(message) = tcp_dns_message(prefix.bytes()).map(<[u8]>::to_vec) {
                self.dns_tcp.pop(&cookie);
                self.on_dns_message(chunk, &message, now);
            } else if prefix.bytes().len() >= StreamPrefix::limit() {
                log::debug!(
                    "DNS answer over TCP from {} longer than {} bytes: not read",
                    chunk.source(),
                    StreamPrefix::limit()
                );
                self.dns_tcp.pop(&cookie);
            }
            return;
        }
        match tcp_dns_message(&chunk.data) {
            Some(message) => self.on_dns_message(chunk, message, now),
            None => {
                // The start of a message longer than this chunk: wait for the rest.
                let mut prefix = StreamPrefix::default();
                prefix.insert(chunk.header.seq, &chunk.data);
                self.dns_tcp.put(cookie, prefix);
            }
        }
    }

    fn on_dns_message(&mut self, chunk: &PayloadChunk, message: &[u8], now: Instant) {
        match naming::dns::parse_message(message) {
            Ok(msg) if msg.is_response => {
                for a in naming::dns::address_names(&msg) {
                    self.dns
                        .insert(chunk.header.owner_tgid, a.ip, &a.name, a.ttl, now);
                }
            }
            Ok(_) => {}
            Err(e) => log::debug!("DNS answer from {} not parsed: {e}", chunk.source()),
        }
    }

    fn fallback(
        &mut self,
        observation: &Observation,
        best: Option<Naming>,
        now: Instant,
    ) -> Naming {
        let tls = match best {
            Some(n) if n.domain.is_some() => return n,
            Some(n) => n.tls,
            None => None,
        };
        match self
            .dns
            .lookup(observation.raw.tgid, observation.destination, now)
        {
            Some((name, scope)) => Naming {
                domain: Some(name),
                source: match scope {
                    DnsScope::Process => NameSource::DnsAnswerProcess,
                    DnsScope::Host => NameSource::DnsAnswerHost,
                },
                tls,
                proxy: None,
            },
            None => match self
                .resolved
                .as_ref()
                .and_then(|r| r.lookup(observation.destination))
            {
                // The address is one a listed name resolves to: weaker evidence (shared CDNs),
                // but the only one for a process that resolved it out of our sight (DoH, say).
                Some(r) => Naming {
                    domain: Some(r.name),
                    source: NameSource::ResolvedBlocklist,
                    tls,
                    proxy: None,
                },
                None => Naming {
                    tls,
                    ..Naming::unnamed()
                },
            },
        }
    }

    fn finish_datagram(&mut self, d: PendingDatagram, now: Instant) -> Finished {
        let naming = self.fallback(&d.observation, examine_datagrams(&d.datagrams).naming, now);
        Finished {
            observation: d.observation,
            process: d.process,
            naming,
            is_datagram: true,
            captured_bytes: 0,
        }
    }

    /// The pending record of the window `window` of datagram flow `key`, if it still waits.
    fn take_datagram(&mut self, key: &DatagramKey, window: u64) -> Option<PendingDatagram> {
        match self.datagrams.get(key) {
            Some(d) if d.observation.raw.ts_boot_ns == window => self.datagrams.remove(key),
            _ => None,
        }
    }

    fn finish_stream(&mut self, cookie: u64, now: Instant) -> Option<Finished> {
        let s = self.streams.remove(&cookie)?;
        let naming = self.fallback(&s.observation, s.best, now);
        let captured_bytes = s.prefix.bytes().len() as u64;
        Some(Finished {
            observation: s.observation,
            process: s.process,
            naming,
            is_datagram: false,
            captured_bytes,
        })
    }

    /// Records whose wait is over (all pending records if `all`), oldest first.
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<Finished> {
        let mut out = std::mem::take(&mut self.ready);
        while let Some(&(deadline, cookie)) = self.stream_deadlines.front() {
            if !all && deadline > now {
                break;
            }
            self.stream_deadlines.pop_front();
            if let Some(f) = self.finish_stream(cookie, now) {
                out.push(f);
            }
        }
        while let Some(&(deadline, key, window)) = self.datagram_deadlines.front() {
            if !all && deadline > now {
                break;
            }
            self.datagram_deadlines.pop_front();
            if let Some(d) = self.take_datagram(&key, window) {
                let finished = self.finish_datagram(d, now);
                out.push(finished);
            }
        }
        out
    }

    /// Records to write now, outside their deadline: windows closed by the next one, and, when
    /// more streams wait than `MAX_PENDING_STREAMS` or more datagram windows than
    /// `MAX_PENDING_DATAGRAMS` (a connect or send storm), the oldest, with what is known so far
    /// (counted in `written_early`), so memory stays bounded whatever the rate.
    pub fn overflow(&mut self, now: Instant) -> Vec<Finished> {
        let mut out = std::mem::take(&mut self.ready);
        while self.streams.len() > MAX_PENDING_STREAMS {
            let Some((_, cookie)) = self.stream_deadlines.pop_front() else {
                break;
            };
            if let Some(f) = self.finish_stream(cookie, now) {
                self.written_early += 1;
                out.push(f);
            }
        }
        while self.datagrams.len() > MAX_PENDING_DATAGRAMS {
            let Some((_, key, window)) = self.datagram_deadlines.pop_front() else {
                break;
            };
            if let Some(d) = self.take_datagram(&key, window) {
                self.written_early += 1;
                out.push(self.finish_datagram(d, now));
            }
        }
        out
    }

    /// Records waiting for their name or their window to close.
    pub fn pending(&self) -> usize {
        self.streams.len() + self.datagrams.len()
    }

    /// The earliest moment a pending record is due.
    pub fn next_due(&self) -> Option<Instant> {
        let s = self.stream_deadlines.front().map(|d| d.0);
        let d = self.datagram_deadlines.front().map(|d| d.0);
        match (s, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::event::{FAMILY_IPV4, PROTO_TCP};

    use super::*;
    use crate::testutil::ConnectEventBuilder;

    #[test]
    fn a_dns_message_over_tcp_is_read_only_when_whole() {
        assert_eq!(tcp_dns_message(&[0, 3, 1, 2, 3, 9]), Some(&[1u8, 2, 3][..]));
        assert_eq!(
            tcp_dns_message(&[0, 4, 1, 2, 3]),
            None,
            "split over segments"
        );
        assert_eq!(tcp_dns_message(&[0]), None);
        assert_eq!(tcp_dns_message(&[]), None);
        assert_eq!(tcp_dns_message(&[0, 0]), Some(&[][..]));
    }

    fn observation(cookie: u64) -> Observation {
        ConnectEventBuilder::tcp_v4(7, [10, 0, 0, 1], 443)
            .cookie(cookie)
            .comm("t")
            .observation()
    }

    /// An ingress TCP chunk from 127.0.0.53:53 to socket `cookie` (owner tgid 7).
    fn dns_tcp_chunk(cookie: u64, seq: u32, data: &[u8]) -> PayloadChunk {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 53]);
        PayloadChunk {
            header: monitor_common::PayloadHeader {
                kind: monitor_common::event::EVENT_PAYLOAD,
                seq,
                ts_boot_ns: 1,
                cookie,
                len: data.len() as u32,
                offset: 0,
                packet_len: data.len() as u32,
                owner_tgid: 7,
                sport: 53,
                dport: 40000,
                direction: monitor_common::payload::DIR_INGRESS,
                protocol: PROTO_TCP,
                family: FAMILY_IPV4,
                mode: 0,
                saddr,
                daddr: [0; 16],
            },
            egress: false,
            data: data.to_vec(),
        }
    }

    /// `name` A `ip` as a DNS response, framed for TCP (2-byte length first).
    fn tcp_dns_response(name: &str, ip: [u8; 4]) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
        m.extend_from_slice(&ip);
        let mut framed = (m.len() as u16).to_be_bytes().to_vec();
        framed.extend(m);
        framed
    }

    #[test]
    fn dns_over_tcp_answer_split_over_segments_is_reassembled() {
        let mut c = Correlator::new(Duration::from_secs(2), Duration::from_secs(2), 64);
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let framed = tcp_dns_response("split.relay.example", [10, 0, 0, 9]);
        // The length and part of the header, then the rest (a retransmitted overlap included).
        c.on_payload(&dns_tcp_chunk(5, 1000, &framed[..9]), now);
        assert!(c.dns.lookup(7, ip, now).is_none(), "not whole yet");
        c.on_payload(&dns_tcp_chunk(5, 1005, &framed[5..]), now);
        assert_eq!(
            c.dns.lookup(7, ip, now),
            Some(("split.relay.example".into(), DnsScope::Process))
        );
        assert!(c.dns_tcp.is_empty(), "a finished answer is not kept");

        // A whole answer in one chunk needs no buffer; garbage that never completes is bounded.
        let framed = tcp_dns_response("whole.relay.example", [10, 0, 0, 10]);
        c.on_payload(&dns_tcp_chunk(6, 1, &framed), now);
        assert!(c.dns.lookup(7, "10.0.0.10".parse().unwrap(), now).is_some());
        for cookie in 0..(DNS_TCP_PENDING as u64 + 5) {
            c.on_payload(&dns_tcp_chunk(100 + cookie, 1, &[0xff, 0xff, 1, 2, 3]), now);
        }
        assert_eq!(c.dns_tcp.len(), DNS_TCP_PENDING);
    }

    #[test]
    fn answers_to_the_agent_s_own_queries_are_not_host_dns_evidence() {
        let mut c = Correlator::new(Duration::from_secs(2), Duration::from_secs(2), 64);
        c.own_pid = 7; // the owner of `dns_tcp_chunk`'s socket
        let now = Instant::now();
        let framed = tcp_dns_response("listed.relay.example", [10, 0, 0, 1]);
        c.on_payload(&dns_tcp_chunk(5, 1, &framed), now);
        assert!(c.dns.lookup(8, "10.0.0.1".parse().unwrap(), now).is_none());
        // Another process's answer is.
        c.own_pid = 99;
        c.on_payload(&dns_tcp_chunk(6, 1, &framed), now);
        assert_eq!(
            c.dns.lookup(8, "10.0.0.1".parse().unwrap(), now),
            Some(("listed.relay.example".into(), DnsScope::Host))
        );
    }

    #[test]
    fn dns_answer_names_what_the_payload_did_not_and_pending_streams_are_bounded() {
        let mut c = Correlator::new(Duration::from_secs(2), Duration::from_secs(2), 64);
        let now = Instant::now();
        c.dns
            .insert(7, "10.0.0.1".parse().unwrap(), "api.deepseek.com", 300, now);
        c.on_connection(observation(1), None, now);
        assert!(
            c.due(now, false).is_empty(),
            "still waiting for its first bytes"
        );
        let done = c.due(now + Duration::from_secs(3), false);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].naming.source, NameSource::DnsAnswerProcess);
        assert_eq!(done[0].naming.domain.as_deref(), Some("api.deepseek.com"));

        for cookie in 0..(MAX_PENDING_STREAMS as u64 + 10) {
            c.on_connection(observation(100 + cookie), None, now);
        }
        let early = c.overflow(now);
        assert_eq!(
            early.len(),
            10,
            "the oldest beyond the bound are written now"
        );
        assert_eq!(early[0].observation.raw.cookie, 100);
        assert_eq!(c.streams.len(), MAX_PENDING_STREAMS);
        assert_eq!(c.written_early, 10, "counted");
        assert_eq!(c.pending(), MAX_PENDING_STREAMS);
    }

    /// An unconnected datagram from socket `cookie` to 10.0.0.1:`port`, opening the window
    /// that starts at `ts`.
    fn datagram(cookie: u64, port: u16, ts: u64) -> Observation {
        ConnectEventBuilder::tcp_v4(7, [10, 0, 0, 1], port)
            .udp_sendmsg()
            .cookie(cookie)
            .at(ts)
            .comm("t")
            .observation()
    }

    #[test]
    fn pending_datagram_windows_are_bounded_and_the_early_ones_counted() {
        let mut c = Correlator::new(Duration::from_secs(2), Duration::from_secs(600), 64);
        let now = Instant::now();
        for port in 0..(MAX_PENDING_DATAGRAMS as u16 + 10) {
            c.on_connection(datagram(1, 1024 + port, 1), None, now);
        }
        let early = c.overflow(now);
        assert_eq!(
            early.len(),
            10,
            "the oldest beyond the bound are written now"
        );
        assert!(early.iter().all(|f| f.is_datagram));
        assert_eq!(early[0].observation.port, 1024);
        assert_eq!(early[9].observation.port, 1033);
        assert_eq!(c.written_early, 10);
        assert_eq!(c.pending(), MAX_PENDING_DATAGRAMS);
        // The rest leave at their deadline, each once.
        assert!(c.due(now + Duration::from_secs(1), false).is_empty());
        let rest = c.due(now + Duration::from_secs(601), false);
        assert_eq!(rest.len(), MAX_PENDING_DATAGRAMS);
        assert_eq!(rest[0].observation.port, 1034);
        assert_eq!(c.pending(), 0);
        assert_eq!(c.written_early, 10, "leaving at the deadline is not early");
    }

    #[test]
    fn the_next_window_of_a_flow_writes_the_previous_one_and_not_the_other_way_round() {
        let wait = Duration::from_millis(2100);
        let mut c = Correlator::new(Duration::from_secs(2), wait, 64);
        let t0 = Instant::now();
        // Window 1 of the flow, then (the daemon a little behind) window 2 of the same socket
        // and destination while window 1's record still waits.
        c.on_connection(datagram(5, 443, 1_000), None, t0);
        let t1 = t0 + Duration::from_millis(2000);
        c.on_connection(datagram(5, 443, 2_000_001_000), None, t1);
        let closed = c.overflow(t1);
        assert_eq!(closed.len(), 1, "window 1 is closed: written now");
        assert_eq!(closed[0].observation.raw.ts_boot_ns, 1_000);
        assert_eq!(c.written_early, 0, "not early: its window is over");
        assert_eq!(c.pending(), 1);
        // Window 1's deadline passes: window 2 is still open and keeps waiting.
        assert!(c.due(t0 + wait, false).is_empty());
        assert_eq!(c.pending(), 1);
        let done = c.due(t1 + wait, false);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].observation.raw.ts_boot_ns, 2_000_001_000);
        assert_eq!(c.pending(), 0);

        // On shutdown (`all`), a window closed by the next one comes out too, once.
        c.on_connection(datagram(6, 443, 10), None, t1);
        c.on_connection(datagram(6, 443, 20), None, t1);
        let all = c.due(t1, true);
        let windows: Vec<u64> = all.iter().map(|f| f.observation.raw.ts_boot_ns).collect();
        assert_eq!(windows, [10, 20]);
    }
}
