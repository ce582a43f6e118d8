//! Maps shared with the daemon. Names are the contract with `monitor/src/loader.rs`.
//!
//! - `EVENTS` (ring buffer, 1 MiB): `ConnectEvent` records, one per outbound destination choice
//!   (per connect, and per UDP repeat window). A full buffer drops the event and counts it.
//! - `CONFIG` (array, 1 entry): `FilterConfig`, written by the daemon before it attaches. Read
//!   on every hook run; an absent entry (never the case once loaded) means the defaults.
//! - `COUNTERS` (per-CPU array, `COUNTER_COUNT` u64s): events lost to a full ring buffer,
//!   events written, datagrams folded into an open window, local destinations skipped. Per-CPU
//!   so that counting never contends; the daemon sums the CPUs.
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
//! - `CAPTURE_GATE` (socket-local storage, u32): 1 while the socket may have a `CAPTURE`
//!   entry (gate.rs).
use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    CAPTURE_CAPACITY, COUNTER_COUNT, COUNTER_EVENTS, COUNTER_RINGBUF_LOST, ConnectEvent, GAUGE_RINGBUF_PENDING, CaptureState, EVENTS_RINGBUF_BYTES,
    FilterConfig, UDP_FLOWS_CAPACITY, UdpFlowKey, UdpFlowWindow,
};

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RINGBUF_BYTES, 0);

#[map(name = "CONFIG")]
pub static CONFIG: Array<FilterConfig> = Array::with_max_entries(1, 0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map(name = "UDP_FLOWS")]
pub static UDP_FLOWS: LruHashMap<UdpFlowKey, UdpFlowWindow> =
    LruHashMap::with_max_entries(UDP_FLOWS_CAPACITY, 0);

#[map(name = "CAPTURE")]
pub static CAPTURE: LruHashMap<u64, CaptureState> = LruHashMap::with_max_entries(CAPTURE_CAPACITY, 0);

/// One `CaptureState` per CPU to build a new entry in: the BPF stack (512 bytes) is too small
/// to hold one next to everything else the sock_addr programs keep there.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<CaptureState> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch entry, zeroed: `CaptureState::empty()` except that the event's `kind` is
/// 0 (the caller fills the event in, kind included, when it reports one).
#[inline(always)]
pub fn scratch() -> Option<&'static mut CaptureState> {
    let p = SCRATCH.get_ptr_mut(0)?;
    unsafe {
        core::ptr::write_bytes(p, 0, 1);
        Some(&mut *p)
    }
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

/// Copy a connect event to the ring buffer, counting it or its loss.
#[inline(always)]
pub fn output_event(event: &ConnectEvent) {
    match EVENTS.output::<ConnectEvent>(event, 0) {
        Ok(()) => {
            count(COUNTER_EVENTS);
            // How full the ring is, for the daemon's fill gauge (BPF_RB_AVAIL_DATA = 0).
            if let Some(p) = COUNTERS.get_ptr_mut(GAUGE_RINGBUF_PENDING) {
                unsafe { *p = EVENTS.query(0) };
            }
        }
        Err(_) => count(COUNTER_RINGBUF_LOST),
    }
}
