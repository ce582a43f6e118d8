//! Turning a destination and the current task into a `ConnectEvent` on the ring buffer, and
//! arming payload capture for the socket.
//!
//! Filtering happens here, before anything is written: local destinations are skipped unless
//! the daemon asked for them, and unconnected datagrams inside an open repeat window are only
//! counted (see `udp_fold`). The event is built on the stack (inside a `CaptureState`, 104
//! bytes) and copied with `bpf_ringbuf_output`, so no path holds a reservation across a helper
//! call that can fail.
//!
//! Capture arming (read by `payload.rs`): every reported stream socket gets `CAPTURE_NEW`, every
//! window-opening datagram `CAPTURE_DATAGRAM`. A local TCP connection that is not reported gets
//! `CAPTURE_LOCAL_PROBE` with its event kept in the state: if its first bytes are a proxy
//! request, the event is reported then. Sockets that talk to port 53 are remembered in
//! `DNS_SOCKETS` so their answers can be read on ingress.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_socket_cookie, bpf_ktime_get_boot_ns},
    },
    programs::SockAddrContext,
};
use monitor_common::{
    CAPTURE_DATAGRAM, CAPTURE_LOCAL_PROBE, CAPTURE_NEW, COUNTER_LOCAL_SKIPPED, COUNTER_UDP_FOLDED,
    CaptureState, ConnectEvent, HOOK_CONNECT, HOOK_SENDMSG, PROTO_TCP, PROTO_UDP,
};

use crate::{
    maps::{self, CAPTURE, DNS_SOCKETS},
    sock_addr::Target,
    udp_fold,
};

const DNS_PORT: u16 = 53;

/// TCP connect or UDP connect: always one event (unless local and not asked for).
#[inline(always)]
pub fn connect(ctx: &SockAddrContext, target: &Target) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    remember_dns_socket(target, cookie, pid_tgid);
    let local = is_skipped_local(target);
    if local && target.protocol != PROTO_TCP {
        return;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let state = CaptureState {
        event: event(target, HOOK_CONNECT, pid_tgid, now, cookie),
        captured: 0,
        need: 0,
        segments: 0,
        mode: if local { CAPTURE_LOCAL_PROBE } else { CAPTURE_NEW },
        _pad: [0; 5],
    };
    if !local {
        maps::output_event(&state.event);
    }
    let _ = CAPTURE.insert(&cookie, &state, 0);
}

/// Unconnected datagram: one event per (process, destination) and repeat window.
#[inline(always)]
pub fn datagram(ctx: &SockAddrContext, target: &Target) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    remember_dns_socket(target, cookie, pid_tgid);
    if is_skipped_local(target) {
        return;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let window = maps::config().udp_window_ns;
    if udp_fold::fold_into_open_window(ctx, (pid_tgid >> 32) as u32, target, now, window) {
        maps::count(COUNTER_UDP_FOLDED);
        return;
    }
    let state = CaptureState {
        event: event(target, HOOK_SENDMSG, pid_tgid, now, cookie),
        captured: 0,
        need: 0,
        segments: 0,
        mode: CAPTURE_DATAGRAM,
        _pad: [0; 5],
    };
    maps::output_event(&state.event);
    let _ = CAPTURE.insert(&cookie, &state, 0);
}

/// A socket sending to port 53 over UDP: its answers are read on ingress (even when the
/// resolver is local, e.g. systemd-resolved on 127.0.0.53, and so not reported as egress).
#[inline(always)]
fn remember_dns_socket(target: &Target, cookie: u64, pid_tgid: u64) {
    if target.port == DNS_PORT && target.protocol == PROTO_UDP {
        let _ = DNS_SOCKETS.insert(&cookie, &((pid_tgid >> 32) as u32), 0);
    }
}

#[inline(always)]
fn is_skipped_local(target: &Target) -> bool {
    if maps::config().include_loopback == 0 && target.dest.is_local() {
        maps::count(COUNTER_LOCAL_SKIPPED);
        return true;
    }
    false
}

#[inline(always)]
fn event(target: &Target, hook: u8, pid_tgid: u64, now: u64, cookie: u64) -> ConnectEvent {
    let uid_gid = bpf_get_current_uid_gid();
    let mut event = ConnectEvent::zeroed();
    event.tgid = (pid_tgid >> 32) as u32;
    event.tid = pid_tgid as u32;
    event.uid = uid_gid as u32;
    event.gid = (uid_gid >> 32) as u32;
    event.ts_boot_ns = now;
    event.cookie = cookie;
    event.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    event.family = target.dest.family;
    event.daddr = target.dest.addr;
    event.dport = target.port;
    event.protocol = target.protocol;
    event.hook = hook;
    if let Ok(comm) = bpf_get_current_comm() {
        event.comm = comm;
    }
    event
}
