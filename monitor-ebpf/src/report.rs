//! Turning a destination and the current task into a `ConnectEvent` on the ring buffer, and
//! arming payload capture for the socket.
//!
//! Filtering happens here, before anything is written: local destinations are skipped unless
//! the daemon asked for them, and unconnected datagrams inside an open repeat window are only
//! counted (see `udp_fold`). The event is built in place in the socket's new `CAPTURE` entry
//! (the stack is too small for one) and copied with `bpf_ringbuf_output`, so no path holds a
//! reservation across a helper call that can fail.
//!
//! Capture arming (read by `payload.rs`): every reported stream socket gets `CAPTURE_NEW`, every
//! window-opening datagram `CAPTURE_DATAGRAM`. A local TCP connection that is not reported gets
//! `CAPTURE_LOCAL_PROBE` with its event kept in the state: if its first bytes are a proxy
//! request, the event is reported then. Sockets that talk to UDP port 53 get `dns_owner` set so
//! their answers can be read on ingress.
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_socket_cookie, bpf_ktime_get_boot_ns},
    },
    programs::SockAddrContext,
};
use monitor_common::{
    ConnectEvent,
    capture::{CAPTURE_DATAGRAM, CAPTURE_LOCAL_PROBE, CAPTURE_NEW},
    counters::{COUNTER_LOCAL_SKIPPED, COUNTER_UDP_FOLDED},
    event::{EVENT_CONNECT, HOOK_CONNECT, HOOK_SENDMSG, PROTO_TCP, PROTO_UDP},
};

use crate::{
    gate,
    maps::{self, CAPTURE},
    sock_addr::Target,
    udp_fold,
};

const DNS_PORT: u16 = 53;

/// TCP connect or UDP connect: always one event (unless local and not asked for).
#[inline(always)]
pub fn connect(ctx: &SockAddrContext, target: &Target) {
    let local = is_skipped_local(target);
    if local && target.protocol != PROTO_TCP {
        if is_dns(target) {
            mark_dns_socket(ctx, bpf_get_current_pid_tgid());
        }
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let Some(state) = maps::new_capture_entry(&cookie) else {
        return;
    };
    fill_event(
        &mut state.event,
        target,
        HOOK_CONNECT,
        pid_tgid,
        now,
        cookie,
    );
    state.mode = if local {
        CAPTURE_LOCAL_PROBE
    } else {
        CAPTURE_NEW
    };
    state.dns_owner = dns_owner(target, pid_tgid);
    if !local && target.protocol == PROTO_TCP {
        crate::tls::connecting((pid_tgid >> 32) as u32, &mut state.event);
    }
    // A reported connection whose event was lost has no record to finish: nothing to capture.
    if !local && !maps::output_event(&state.event) {
        let _ = CAPTURE.remove(&cookie);
        return;
    }
    gate::open(ctx);
}

/// Unconnected datagram: one event per (process, destination) and repeat window. A datagram to
/// a skipped local destination costs the filter check only (plus, for DNS, marking the socket).
#[inline(always)]
pub fn datagram(ctx: &SockAddrContext, target: &Target) {
    if is_skipped_local(target) {
        if is_dns(target) {
            mark_dns_socket(ctx, bpf_get_current_pid_tgid());
        }
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let window = maps::config().udp_window_ns;
    if udp_fold::fold_into_open_window(ctx, (pid_tgid >> 32) as u32, target, now, window) {
        maps::count(COUNTER_UDP_FOLDED);
        if is_dns(target) {
            mark_dns_socket(ctx, pid_tgid);
        }
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(state) = maps::new_capture_entry(&cookie) else {
        return;
    };
    fill_event(
        &mut state.event,
        target,
        HOOK_SENDMSG,
        pid_tgid,
        now,
        cookie,
    );
    state.mode = CAPTURE_DATAGRAM;
    state.dns_owner = dns_owner(target, pid_tgid);
    if !maps::output_event(&state.event) {
        let _ = CAPTURE.remove(&cookie);
        return;
    }
    gate::open(ctx);
}

#[inline(always)]
fn is_dns(target: &Target) -> bool {
    target.port == DNS_PORT && target.protocol == PROTO_UDP
}

/// The sender's tgid when the destination is a DNS server (UDP port 53), else 0: answers on
/// such a socket are read on ingress, even when the resolver is local (systemd-resolved on
/// 127.0.0.53) and so not reported as egress.
#[inline(always)]
fn dns_owner(target: &Target, pid_tgid: u64) -> u32 {
    // UDP, and TCP (large answers, DNS over TCP): answers from port 53 are read on ingress.
    if target.port == DNS_PORT {
        (pid_tgid >> 32) as u32
    } else {
        0
    }
}

/// Mark a socket whose entry is not being (re)created here as a DNS socket (sending to port 53).
#[inline(always)]
fn mark_dns_socket(ctx: &SockAddrContext, pid_tgid: u64) {
    let owner = (pid_tgid >> 32) as u32;
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(state) = CAPTURE.get_ptr_mut(&cookie) {
        unsafe { (*state).dns_owner = owner };
    } else {
        let Some(state) = maps::new_capture_entry(&cookie) else {
            return;
        };
        state.dns_owner = owner;
    }
    gate::open(ctx);
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
fn fill_event(
    event: &mut ConnectEvent,
    target: &Target,
    hook: u8,
    pid_tgid: u64,
    now: u64,
    cookie: u64,
) {
    let uid_gid = bpf_get_current_uid_gid();
    event.kind = EVENT_CONNECT;
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
}
