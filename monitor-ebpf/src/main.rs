//! relaywatch's kernel programs. This file only declares the programs and hands off; each
//! concern lives in its own module:
//!
//! - `maps`: every map the programs share with the daemon, and what its keys and values mean.
//! - `sock_addr`: reading a normalised destination out of a `bpf_sock_addr` context.
//! - `report`: turning a destination plus the current task into a ring-buffer event.
//! - `udp_fold`: folding repeated unconnected datagrams into one event with a count.
//! - `packet`, `payload`: cgroup_skb egress/ingress programs capturing the first payload of
//!   each reported socket and DNS answers (see `payload.rs` for the capture design).
//! - `process`: exec/exit tracepoints feeding the daemon's process table.
//! - `tls`: uprobes on TLS libraries reading the first plaintext request of each connection.
//!
//! Hook choice: cgroup `sock_addr` programs attached to the cgroup v2 root. They run for every
//! process on the host (all cgroups descend from the root), exist since Linux 4.17 (connect) and
//! 4.18 (sendmsg), see the destination before the kernel routes it, give the socket cookie, and
//! can later refuse a connection (return 0) for the block action. connect4/connect6 cover TCP and
//! connected UDP; sendmsg4/sendmsg6 fire only for datagrams that carry an explicit destination,
//! i.e. unconnected UDP.
#![no_std]
#![no_main]
// Atomic add on map values (see udp_fold.rs); the build runs with RUSTC_BOOTSTRAP=1 or nightly.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// Map helpers take `impl Borrow<K>`: keys and values are passed by reference on purpose, so the
// generated code keeps one copy of each on the 512-byte BPF stack whatever the helper inlines.
#![allow(clippy::needless_borrows_for_generic_args)]

mod gate;
mod maps;
mod packet;
mod payload;
mod process;
mod report;
mod sock_addr;
mod tls;
mod udp_fold;

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, tracepoint, uprobe, uretprobe},
    programs::{
        ProbeContext, RetProbeContext, SkBuffContext, SockAddrContext, SockContext,
        TracePointContext,
    },
};

/// Verdict for cgroup sock_addr programs: let the operation proceed.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn relaywatch_connect4(ctx: SockAddrContext) -> i32 {
    if let Some(target) = sock_addr::ipv4(&ctx) {
        report::connect(&ctx, &target);
    }
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn relaywatch_connect6(ctx: SockAddrContext) -> i32 {
    if let Some(target) = sock_addr::ipv6(&ctx) {
        report::connect(&ctx, &target);
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn relaywatch_sendmsg4(ctx: SockAddrContext) -> i32 {
    if let Some(target) = sock_addr::ipv4(&ctx) {
        report::datagram(&ctx, &target);
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn relaywatch_sendmsg6(ctx: SockAddrContext) -> i32 {
    if let Some(target) = sock_addr::ipv6(&ctx) {
        report::datagram(&ctx, &target);
    }
    ALLOW
}

/// Verdict for cgroup_skb programs: let the packet through.
const PASS: i32 = 1;

#[cgroup_skb(egress)]
pub fn relaywatch_egress(ctx: SkBuffContext) -> i32 {
    payload::egress(&ctx);
    PASS
}

#[cgroup_skb(ingress)]
pub fn relaywatch_ingress(ctx: SkBuffContext) -> i32 {
    payload::ingress(&ctx);
    PASS
}

#[cgroup_sock(sock_release)]
pub fn relaywatch_release(ctx: SockContext) -> i32 {
    payload::release(&ctx);
    PASS
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn relaywatch_exec(ctx: TracePointContext) -> u32 {
    process::exec(&ctx);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn relaywatch_exit(ctx: TracePointContext) -> u32 {
    process::exit(&ctx);
    0
}

#[uprobe]
pub fn relaywatch_tls_write(ctx: ProbeContext) -> u32 {
    tls::write(&ctx);
    0
}

#[uprobe]
pub fn relaywatch_go_tls_write(ctx: ProbeContext) -> u32 {
    tls::go_write(&ctx);
    0
}

#[uprobe]
pub fn relaywatch_tls_forget(ctx: ProbeContext) -> u32 {
    tls::forget_connection(&ctx);
    0
}

#[uprobe]
pub fn relaywatch_tls_read(ctx: ProbeContext) -> u32 {
    tls::read(&ctx);
    0
}

#[uretprobe]
pub fn relaywatch_tls_read_return(ctx: RetProbeContext) -> u32 {
    tls::read_return(&ctx);
    0
}

#[uprobe]
pub fn relaywatch_tls_client(ctx: ProbeContext) -> u32 {
    tls::client_start(&ctx);
    0
}

#[uprobe]
pub fn relaywatch_go_tls_forget(ctx: ProbeContext) -> u32 {
    tls::go_forget_connection(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // eBPF programs cannot panic at run time: the verifier rejects any path that could reach here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
