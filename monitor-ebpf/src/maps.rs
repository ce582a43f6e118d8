//! Maps shared with the daemon. Names are the contract with `monitor/src/kernel/loader.rs`.
//!
//! - `EVENTS` (ring buffer, 4 MiB, `ring::EVENTS_RINGBUF_BYTES`): every record for the daemon:
//!   `ConnectEvent`s, one per outbound destination choice (per connect, and per UDP repeat
//!   window), payload chunks, exec/exit and flow-end records. A full buffer drops the record and
//!   counts it.
//! - `CONFIG` (array, 1 entry): `FilterConfig`, written by the daemon before it attaches. Read
//!   on every hook run; an absent entry (never the case once loaded) means the defaults.
//! - `COUNTERS` (per-CPU array, `COUNTER_COUNT` u64s, indices in `monitor_common::counters`):
//!   records lost to a full ring buffer, connect records written, datagrams folded into an open
//!   window, local destinations skipped, payload chunks written and lost, and the ring's fill
//!   gauge. Per-CPU so that counting never contends; the daemon sums the CPUs.
//! - `UDP_FLOWS` (LRU hash, 16,384 entries): key `UdpFlowKey` (tgid, destination), value
//!   `UdpFlowWindow`. The first datagram of a window emits an event; later ones within
//!   `udp_window_ns` only bump `cur_count`. A datagram after the window rolls `cur` into `prev`
//!   and opens a new window. Entries age out by LRU eviction; the daemon only reads them.
//! - `CAPTURE` (LRU hash, 16,384 entries): socket cookie -> `CaptureState`, everything kept per
//!   socket, so that every packet costs exactly one lookup. Present while the kernel still wants
//!   the socket's outgoing payload (capture modes, see `payload.rs`), while it is a DNS socket
//!   (`dns_owner`: answers are read on ingress), or while the daemon watches it (`STATE_WATCH`:
//!   payload bytes are counted both ways). Inserted by the connect/sendmsg hooks; capture ends
//!   in the egress program (the entry goes unless it has another job); the daemon sets the watch
//!   flag or ends capture early; the sock_release program removes the entry when the socket
//!   goes (reporting the byte counts of watched sockets). Absent is the common case, and the
//!   packet programs only look here behind an open `CAPTURE_GATE`.
//! - `TASK_LAYOUT` (array, 1 entry): `TaskLayout`, field offsets from the kernel's BTF for the
//!   exec program (parent pid, argument block). Written by the daemon before it attaches.
//! - `CAPTURE_GATE` (socket-local storage, u32): 1 while the socket may have a `CAPTURE`
//!   entry (gate.rs).
//! - `TLS_CONNS` (LRU hash, `TLS_CONNS_CAPACITY`): `TlsConnKey` (tgid, the TLS library's
//!   connection object) -> `TlsConnState`, what the TLS uprobes have read of a connection
//!   (tls.rs; absent: nothing yet).
//! - `TLS_READS` (LRU hash, `TLS_READS_CAPACITY`): pid_tgid -> `TlsPendingRead`, a read of an
//!   answer's head between the read function's entry and its return (tls.rs).
//! - `TLS_SCOPED` (hash, `TLS_SCOPED_CAPACITY`): tgid -> 1 while the daemon has that process's
//!   TLS write/read probes attached (inserted after attaching, removed when the process is
//!   gone). `TLS_CLIENT_PENDING` (LRU hash): tgid -> when a process that is not read yet last
//!   asked to be (tls.rs `client_start`); the connect hook looks here to wake the daemon for a
//!   process that set up its TLS client before connecting.
use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    CaptureState, ConnectEvent, FilterConfig, TaskLayout, TlsConnKey, TlsConnState, TlsPendingRead,
    UdpFlowKey, UdpFlowWindow,
    capture::CAPTURE_CAPACITY,
    counters::{COUNTER_COUNT, COUNTER_EVENTS, COUNTER_RINGBUF_LOST, GAUGE_RINGBUF_PENDING},
    event::FLAG_TLS_CLIENT,
    ring::{
        BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, EVENTS_RINGBUF_BYTES, WAKE_ALWAYS_BYTES, WAKE_BYTES,
        WAKE_WINDOW,
    },
    tls::{
        TLS_CLIENT_PENDING_CAPACITY, TLS_CONNS_CAPACITY, TLS_READS_CAPACITY, TLS_SCOPED_CAPACITY,
    },
    udp::UDP_FLOWS_CAPACITY,
};

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RINGBUF_BYTES, 0);

#[map(name = "CONFIG")]
pub static CONFIG: Array<FilterConfig> = Array::with_max_entries(1, 0);

#[map(name = "TASK_LAYOUT")]
pub static TASK_LAYOUT: Array<TaskLayout> = Array::with_max_entries(1, 0);

/// When an exec event last woke the daemon (boot clock, ns; see `FilterConfig::exec_wake_gap_ms`).
#[map(name = "EXEC_WOKE")]
pub static EXEC_WOKE: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map(name = "UDP_FLOWS")]
pub static UDP_FLOWS: LruHashMap<UdpFlowKey, UdpFlowWindow> =
    LruHashMap::with_max_entries(UDP_FLOWS_CAPACITY, 0);

#[map(name = "CAPTURE")]
pub static CAPTURE: LruHashMap<u64, CaptureState> =
    LruHashMap::with_max_entries(CAPTURE_CAPACITY, 0);

#[map(name = "TLS_CONNS")]
pub static TLS_CONNS: LruHashMap<TlsConnKey, TlsConnState> =
    LruHashMap::with_max_entries(TLS_CONNS_CAPACITY, 0);

/// Processes whose TLS probes are attached (the daemon inserts and removes them): the client
/// start probe has nothing to ask for them.
#[map(name = "TLS_SCOPED")]
pub static TLS_SCOPED: HashMap<u32, u8> = HashMap::with_max_entries(TLS_SCOPED_CAPACITY, 0);

/// tgid -> when it last asked the daemon to be read (boot clock, ns): a process that started a
/// TLS client connection and is not read yet.
#[map(name = "TLS_CLIENT_PENDING")]
pub static TLS_CLIENT_PENDING: LruHashMap<u32, u64> =
    LruHashMap::with_max_entries(TLS_CLIENT_PENDING_CAPACITY, 0);

#[map(name = "TLS_READS")]
pub static TLS_READS: LruHashMap<u64, TlsPendingRead> =
    LruHashMap::with_max_entries(TLS_READS_CAPACITY, 0);

/// An all-zero `CaptureState` (per CPU, never written): what a new `CAPTURE` entry is inserted
/// from before its fields are filled in place. Building entries in a shared scratch slot instead
/// would race on preemptible kernels (sock_addr programs only disable migration), and the stack
/// is too small to hold one next to everything else.
#[map(name = "ZERO_STATE")]
pub static ZERO_STATE: PerCpuArray<CaptureState> = PerCpuArray::with_max_entries(1, 0);

/// Insert a zeroed entry for `cookie` and return it for filling in place.
#[inline(always)]
pub fn new_capture_entry(cookie: &u64) -> Option<&'static mut CaptureState> {
    let zero = ZERO_STATE.get(0)?;
    CAPTURE.insert(cookie, zero, 0).ok()?;
    CAPTURE.get_ptr_mut(cookie).map(|p| unsafe { &mut *p })
}

/// Socket-local "may have a CAPTURE entry" gate (see gate.rs): the packet programs' fast path.
#[btf_map]
pub static CAPTURE_GATE: SkStorage<u32> = SkStorage::new();

/// Settings in force; the defaults if the daemon has not written them (it always does first).
#[inline(always)]
pub fn config() -> FilterConfig {
    match CONFIG.get(0) {
        Some(c) => *c,
        None => FilterConfig::DEFAULT,
    }
}

/// Add one to a per-CPU counter. Per-CPU values are only touched by their own CPU with
/// preemption disabled during a program run, so a plain add is race-free.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        unsafe { *p += 1 };
    }
}

/// Flags for a ring-buffer write that can wait for the daemon's drain tick: no wake-up, except
/// for the records written as the pending bytes cross `WAKE_BYTES` (a burst must not wait for
/// the tick). Not every record past the mark: a forced wake-up is an irq_work each time, and a
/// daemon that far behind is usually awake and draining. Writers on several CPUs can all step
/// over the window at once, so past `WAKE_ALWAYS_BYTES` (half the ring) every record wakes:
/// losing events is worse than the cost. BPF_RB_AVAIL_DATA = 0.
#[inline(always)]
pub fn lazy_wakeup() -> u64 {
    let pending = EVENTS.query(0);
    if pending >= WAKE_ALWAYS_BYTES || (WAKE_BYTES..WAKE_BYTES + WAKE_WINDOW).contains(&pending) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Copy a connect event to the ring buffer, counting it or its loss; whether it was written.
#[inline(always)]
pub fn output_event(event: &ConnectEvent) -> bool {
    // A TLS client waiting for its probes: the daemon must attach them before the handshake
    // ends, so this record wakes it.
    let wakeup = if event.flags & FLAG_TLS_CLIENT != 0 {
        BPF_RB_FORCE_WAKEUP
    } else {
        lazy_wakeup()
    };
    match EVENTS.output::<ConnectEvent>(event, wakeup) {
        Ok(()) => {
            count(COUNTER_EVENTS);
            // How full the ring is, for the daemon's fill gauge (BPF_RB_AVAIL_DATA = 0).
            if let Some(p) = COUNTERS.get_ptr_mut(GAUGE_RINGBUF_PENDING) {
                unsafe { *p = EVENTS.query(0) };
            }
            true
        }
        Err(_) => {
            count(COUNTER_RINGBUF_LOST);
            false
        }
    }
}
