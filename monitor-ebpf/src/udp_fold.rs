//! Folding repeated unconnected datagrams into one event with a count.
//!
//! A DNS- or QUIC-heavy process sends thousands of datagrams to one destination; reporting each
//! would flood the ring buffer and say nothing new. Per (tgid, destination) the `UDP_FLOWS` map
//! keeps the open window's start and count. Inside the window a datagram only bumps the count
//! (an atomic add: two CPUs may send for the same process at once). After the window the entry
//! rolls over (current -> previous) and the caller emits a fresh event; keeping the previous
//! window lets the daemon read a window's final count even after the next one has opened.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::programs::SockAddrContext;
use aya_log_ebpf::warn;
use monitor_common::{UdpFlowKey, UdpFlowWindow};

use crate::{maps::UDP_FLOWS, sock_addr::Target};

/// Returns true when the datagram belongs to an open window (nothing to emit).
#[inline(always)]
pub fn fold_into_open_window(
    ctx: &SockAddrContext,
    tgid: u32,
    target: &Target,
    now: u64,
    window_ns: u64,
) -> bool {
    let key = UdpFlowKey {
        tgid,
        dport: target.port,
        family: target.dest.family,
        protocol: target.protocol,
        daddr: target.dest.addr,
    };
    if let Some(entry) = UDP_FLOWS.get_ptr_mut(&key) {
        let entry = unsafe { &mut *entry };
        if now.wrapping_sub(entry.cur_start) < window_ns {
            // The bpfel target declares no atomic read-modify-write, so `AtomicU64::fetch_add`
            // does not exist there; the intrinsic with its result unused compiles to BPF's
            // plain atomic add (BPF_XADD), which every kernel with eBPF accepts.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut entry.cur_count, 1)
            };
            return true;
        }
        entry.prev_start = entry.cur_start;
        entry.prev_count = entry.cur_count;
        entry.cur_start = now;
        entry.cur_count = 1;
        return false;
    }
    let fresh = UdpFlowWindow {
        cur_start: now,
        cur_count: 1,
        prev_start: 0,
        prev_count: 0,
    };
    if let Err(err) = UDP_FLOWS.insert(&key, &fresh, 0) {
        // Not fatal: the datagram is still reported, only its repeats will not be folded.
        warn!(
            ctx,
            "relaywatch: UDP_FLOWS insert failed ({}), pid {}", err, tgid
        );
    }
    false
}
