//! First-payload capture on egress, and DNS answers on ingress (cgroup_skb programs).
//!
//! Why cgroup_skb rather than syscall tracepoints: it runs only for packets of sockets, so
//! writes to files and pipes never reach it, and whatever syscall the client used (write, send,
//! sendto, sendmsg, writev) the bytes arrive here as a packet. It is keyed by the socket cookie,
//! the same id the connect/sendmsg hooks record, so the process is known from the connect event
//! even when TCP transmits later from softirq context.
//!
//! Egress: one `CAPTURE` lookup per packet; absent (the common case) means nothing to do. When
//! present, the first payload decides what to keep (modes in `monitor_common::capture`, rules
//! in `monitor_common::first_payload`):
//! - `16 03 0x` TLS handshake: capture until the whole first record (`need` bytes) is in, over
//!   as many segments as the client used (a ClientHello split over two sends is read whole);
//! - a proxy request (HTTP CONNECT, SOCKS4/4a/5): capture client payloads up to 16 KiB or 8
//!   segments, so the tunnelled ClientHello after the proxy's reply is read too;
//! - UDP: the first two datagrams (a QUIC ClientHello can span two Initials);
//! - anything else: that one packet.
//!
//! Then the entry is removed, and later packets cost one failed lookup. A packet is copied in
//! chunks of 4 KiB (at most 4 per packet) with its TCP sequence number, and the daemon
//! reassembles by sequence number (retransmissions repeat a sequence number and are dropped).
//!
//! Ingress: for sockets that talk to port 53 (UDP, or TCP), packets from port 53 are copied (one
//! chunk: answers up to 4 KiB, the EDNS default).
//!
//! Flow volume: for sockets the daemon marks `STATE_WATCH` (connections that raised an alert),
//! and for reported streams it has yet to decide on (`STATE_AWAIT`: a short connection may close
//! first), both programs add each packet's payload bytes to the entry, and the sock_release
//! program reports the totals when the socket goes (`FlowEndEvent`; the daemon keeps an early
//! one until the record it belongs to is finished). Counted at the cgroup hook, so
//! retransmitted bytes count again; loopback has none.
use aya_ebpf::programs::SockContext;
use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes},
    programs::SkBuffContext,
};
use monitor_common::{
    CaptureState, FlowEndEvent, PayloadEvent,
    capture::{
        CAPTURE_DATAGRAM, CAPTURE_LOCAL_PROBE, CAPTURE_MAX_BYTES, CAPTURE_MAX_SEGMENTS,
        CAPTURE_NEW, CAPTURE_NONE, CAPTURE_PROXY, CAPTURE_TLS, DATAGRAMS_CAPTURED,
        DNS_TCP_SEGMENTS_MAX, STATE_AWAIT,
    },
    counters::{COUNTER_PAYLOAD_CHUNKS, COUNTER_PAYLOAD_LOST, COUNTER_RINGBUF_LOST},
    event::{
        EVENT_FLOW_END, EVENT_PAYLOAD, FLAG_LOCAL_PROXY, FLAG_LOCAL_REQUEST, HOOK_CONNECT,
        PROTO_UDP,
    },
    first_payload::{local_api_request, proxy_start, tls_record_need},
    payload::{DIR_EGRESS, DIR_INGRESS, PAYLOAD_CHUNK, PAYLOAD_CHUNKS_PER_PACKET},
    ring::BPF_RB_NO_WAKEUP,
};

use crate::{
    gate,
    maps::{self, CAPTURE, EVENTS},
    packet::{self, Packet},
};

const DNS_PORT: u16 = 53;

#[inline(always)]
pub fn egress(ctx: &SkBuffContext) {
    let Some(gate) = gate::packet(ctx) else {
        return; // the common case: a socket without capture state
    };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let Some(state) = CAPTURE.get_ptr_mut(&cookie) else {
        gate::close(gate, &cookie);
        return;
    };
    let state = unsafe { &mut *state };
    if state.mode == CAPTURE_NONE && !state.counts_bytes() {
        return; // a DNS socket: nothing to do on egress
    }
    let Some(p) = packet::parse(ctx) else {
        return;
    };
    if p.payload_len == 0 {
        return; // SYN, pure ACK, FIN
    }
    if state.counts_bytes() {
        state.bytes_out = state.bytes_out.saturating_add(p.payload_len as u64);
    }
    if state.mode == CAPTURE_NONE {
        return;
    }
    let mut done = false;
    match state.mode {
        CAPTURE_DATAGRAM => {
            // Only datagrams of the flow that was reported (an unconnected socket may send
            // anywhere next, a skipped local destination included).
            let e = &state.event;
            if p.protocol != PROTO_UDP
                || p.family != e.family
                || p.dport != e.dport
                || !same_address(&p.daddr, &e.daddr)
            {
                return;
            }
            done = state.segments + 1 >= DATAGRAMS_CAPTURED;
        }
        CAPTURE_NEW | CAPTURE_LOCAL_PROBE => {
            let first = packet::first_bytes(ctx, &p);
            let proxy = proxy_start(&first, p.payload_len).is_some();
            if state.mode == CAPTURE_LOCAL_PROBE {
                let request = !proxy && local_api_request(&first, p.payload_len);
                if !proxy && !request {
                    // Local traffic that is neither a proxy request nor a POST to a local
                    // forwarding proxy: never reported, never copied.
                    end_capture(cookie, state, false);
                    return;
                }
                state.event.flags = if proxy {
                    FLAG_LOCAL_PROXY
                } else {
                    FLAG_LOCAL_REQUEST
                };
                if !maps::output_event(&state.event) {
                    end_capture(cookie, state, false); // lost: no record will ask for it
                    return;
                }
            }
            if proxy {
                state.mode = CAPTURE_PROXY;
            } else if let Some(need) = tls_record_need(&first, p.payload_len) {
                state.mode = CAPTURE_TLS;
                state.need = need;
            } else if p.protocol == PROTO_UDP {
                // Connected UDP (QUIC): this datagram and the next, as for unconnected UDP.
                state.mode = CAPTURE_DATAGRAM;
            } else {
                done = true; // HTTP request or unknown: this packet
            }
        }
        _ => {}
    }
    let copied = copy_packet(ctx, &p, cookie, DIR_EGRESS, state.mode, 0);
    state.captured = state.captured.saturating_add(copied);
    state.segments = state.segments.saturating_add(1);
    if state.mode == CAPTURE_TLS && state.captured >= state.need {
        done = true;
    }
    if state.captured >= CAPTURE_MAX_BYTES || state.segments >= CAPTURE_MAX_SEGMENTS {
        done = true;
    }
    if done {
        // A reported stream (TCP, connected UDP) awaits the daemon; a datagram flow does not.
        let stream = state.event.hook == HOOK_CONNECT;
        end_capture(cookie, state, stream);
    }
}

/// Two addresses equal, compared as two 64-bit words (a 16-byte array comparison compiles to
/// 128-bit arithmetic, which BPF does not have).
#[inline(always)]
fn same_address(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let word = |x: &[u8; 16], at: usize| unsafe {
        core::ptr::read_volatile(x.as_ptr().add(at).cast::<[u8; 8]>())
    };
    u64::from_ne_bytes(word(a, 0)) == u64::from_ne_bytes(word(b, 0))
        && u64::from_ne_bytes(word(a, 8)) == u64::from_ne_bytes(word(b, 8))
}

/// Capture is over: the entry goes, unless it is also a DNS socket or watched, or it is a
/// reported stream the daemon has yet to decide on (`STATE_AWAIT`: it will watch or end it).
#[inline(always)]
fn end_capture(cookie: u64, state: &mut CaptureState, awaits_daemon: bool) {
    if awaits_daemon {
        state.flags |= STATE_AWAIT;
    }
    if state.outlives_capture() || awaits_daemon {
        state.mode = CAPTURE_NONE;
    } else {
        let _ = CAPTURE.remove(&cookie);
    }
}

#[inline(always)]
pub fn ingress(ctx: &SkBuffContext) {
    let Some(gate) = gate::packet(ctx) else {
        return;
    };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let Some(state) = CAPTURE.get_ptr_mut(&cookie) else {
        gate::close(gate, &cookie);
        return;
    };
    let state = unsafe { &mut *state };
    if !state.outlives_capture() && !state.counts_bytes() {
        return; // capturing this socket's outgoing bytes only
    }
    let Some(p) = packet::parse(ctx) else {
        return;
    };
    if p.payload_len == 0 {
        return;
    }
    if state.counts_bytes() {
        state.bytes_in = state.bytes_in.saturating_add(p.payload_len as u64);
    }
    // DNS answers: a UDP datagram, or a TCP segment (the daemon joins an answer split over
    // segments).
    if state.dns_owner != 0 && p.sport == DNS_PORT {
        if p.protocol != PROTO_UDP {
            if state.dns_tcp_segments >= DNS_TCP_SEGMENTS_MAX {
                return;
            }
            state.dns_tcp_segments += 1;
        }
        copy_chunk(ctx, &p, cookie, DIR_INGRESS, 0, state.dns_owner, 0);
    }
}

/// A socket is released: report a watched socket's byte counts, and drop its entry.
#[inline(always)]
pub fn release(ctx: &SockContext) {
    if !gate::released(ctx) {
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    let Some(state) = CAPTURE.get_ptr(&cookie) else {
        return;
    };
    let state = unsafe { &*state };
    if state.counts_bytes() {
        let end = FlowEndEvent {
            kind: EVENT_FLOW_END,
            _pad: 0,
            cookie,
            bytes_out: state.bytes_out,
            bytes_in: state.bytes_in,
            watch_start_ns: state.watch_start_ns,
            end_ns: unsafe { bpf_ktime_get_boot_ns() },
        };
        if EVENTS
            .output::<FlowEndEvent>(&end, maps::lazy_wakeup())
            .is_err()
        {
            maps::count(COUNTER_RINGBUF_LOST);
        }
    }
    let _ = CAPTURE.remove(&cookie);
}

/// Copy a packet's payload in chunks; returns the bytes copied.
#[inline(always)]
fn copy_packet(
    ctx: &SkBuffContext,
    p: &Packet,
    cookie: u64,
    direction: u8,
    mode: u8,
    owner: u32,
) -> u32 {
    let mut copied = 0u32;
    let mut i = 0u32;
    while i < PAYLOAD_CHUNKS_PER_PACKET {
        let offset = i * PAYLOAD_CHUNK as u32;
        if offset >= p.payload_len {
            break;
        }
        copied += copy_chunk(ctx, p, cookie, direction, mode, owner, offset);
        i += 1;
    }
    copied
}

/// Copy one chunk starting at `offset` into the payload; returns the bytes copied (0 on loss).
#[inline(always)]
fn copy_chunk(
    ctx: &SkBuffContext,
    p: &Packet,
    cookie: u64,
    direction: u8,
    mode: u8,
    owner: u32,
    offset: u32,
) -> u32 {
    let mut len = p.payload_len.wrapping_sub(offset);
    if len == 0 || len > p.payload_len {
        return 0;
    }
    if len > PAYLOAD_CHUNK as u32 {
        len = PAYLOAD_CHUNK as u32;
    }
    // The verifier needs 1..=PAYLOAD_CHUNK in a form it can track through the compiler's
    // rewrites: mask len - 1 to 0..CHUNK-1 (len >= 1 was checked), then add one back.
    let len = ((len - 1) & (PAYLOAD_CHUNK as u32 - 1)) + 1;
    let Some(mut entry) = EVENTS.reserve::<PayloadEvent>(0) else {
        maps::count(COUNTER_PAYLOAD_LOST);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        let h = &raw mut (*ev).header;
        (*h).kind = EVENT_PAYLOAD;
        (*h).seq = p.seq.wrapping_add(offset);
        (*h).ts_boot_ns = bpf_ktime_get_boot_ns();
        (*h).cookie = cookie;
        (*h).len = len;
        (*h).offset = offset;
        (*h).packet_len = p.payload_len;
        (*h).owner_tgid = owner;
        (*h).sport = p.sport;
        (*h).dport = p.dport;
        (*h).direction = direction;
        (*h).protocol = p.protocol;
        (*h).family = p.family;
        (*h).mode = mode;
        (*h).saddr = p.saddr;
        (*h).daddr = p.daddr;
        let data = (&raw mut (*ev).data).cast::<u8>();
        let rc = bpf_skb_load_bytes(ctx.skb.skb.cast(), p.payload_off + offset, data.cast(), len);
        if rc != 0 {
            entry.discard(BPF_RB_NO_WAKEUP);
            return 0;
        }
    }
    entry.submit(maps::lazy_wakeup());
    maps::count(COUNTER_PAYLOAD_CHUNKS);
    len
}
