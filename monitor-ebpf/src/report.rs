//! Turning a destination and the current task into a `ConnectEvent` on the ring buffer.
//!
//! Filtering happens here, before anything is written: local destinations are skipped unless
//! the daemon asked for them, and unconnected datagrams inside an open repeat window are only
//! counted (see `udp_fold`). The event is built on the stack (88 bytes) and copied with
//! `bpf_ringbuf_output`, so no path holds a reservation across a helper call that can fail.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_socket_cookie, bpf_ktime_get_boot_ns},
    },
    programs::SockAddrContext,
};
use monitor_common::{
    COUNTER_EVENTS, COUNTER_LOCAL_SKIPPED, COUNTER_RINGBUF_LOST, COUNTER_UDP_FOLDED, ConnectEvent,
    HOOK_CONNECT, HOOK_SENDMSG,
};

use crate::{
    maps::{self, EVENTS},
    sock_addr::Target,
    udp_fold,
};

/// TCP connect or UDP connect: always one event (unless local and not asked for).
#[inline(always)]
pub fn connect(ctx: &SockAddrContext, target: &Target) {
    if skipped_as_local(target) {
        return;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    emit(ctx, target, HOOK_CONNECT, bpf_get_current_pid_tgid(), now);
}

/// Unconnected datagram: one event per (process, destination) and repeat window.
#[inline(always)]
pub fn datagram(ctx: &SockAddrContext, target: &Target) {
    if skipped_as_local(target) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let window = maps::config().udp_window_ns;
    if udp_fold::fold_into_open_window(ctx, (pid_tgid >> 32) as u32, target, now, window) {
        maps::count(COUNTER_UDP_FOLDED);
        return;
    }
    emit(ctx, target, HOOK_SENDMSG, pid_tgid, now);
}

#[inline(always)]
fn skipped_as_local(target: &Target) -> bool {
    if maps::config().include_loopback == 0 && target.dest.is_local() {
        maps::count(COUNTER_LOCAL_SKIPPED);
        return true;
    }
    false
}

#[inline(always)]
fn emit(ctx: &SockAddrContext, target: &Target, hook: u8, pid_tgid: u64, now: u64) {
    let uid_gid = bpf_get_current_uid_gid();
    let mut event = ConnectEvent::zeroed();
    event.tgid = (pid_tgid >> 32) as u32;
    event.tid = pid_tgid as u32;
    event.uid = uid_gid as u32;
    event.gid = (uid_gid >> 32) as u32;
    event.ts_boot_ns = now;
    event.cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    event.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    event.family = target.dest.family;
    event.daddr = target.dest.addr;
    event.dport = target.port;
    event.protocol = target.protocol;
    event.hook = hook;
    if let Ok(comm) = bpf_get_current_comm() {
        event.comm = comm;
    }
    match EVENTS.output::<ConnectEvent>(&event, 0) {
        Ok(()) => maps::count(COUNTER_EVENTS),
        Err(_) => maps::count(COUNTER_RINGBUF_LOST),
    }
}
