//! Reading the destination of a connect/sendmsg out of a `bpf_sock_addr` context.
//!
//! The verifier only allows 4-byte loads of `user_ip4`, `user_ip6[i]` and `user_port`, so each
//! word is read on its own with a volatile load (the compiler must not merge two words into one
//! 8-byte load). Addresses stay in network byte order; the port is converted to host order.
use aya_ebpf::programs::SockAddrContext;
use monitor_common::{
    Destination,
    event::{PROTO_TCP, PROTO_UDP},
};

/// A destination ready to report: normalised address, port, protocol.
pub struct Target {
    pub dest: Destination,
    pub port: u16,
    pub protocol: u8,
}

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;

#[inline(always)]
fn protocol(ctx: &SockAddrContext) -> Option<u8> {
    let sa = ctx.sock_addr;
    // `type` tells stream from datagram; `protocol` may be 0 ("default for the type").
    let ty = unsafe { core::ptr::read_volatile(&(*sa).type_) };
    match ty {
        SOCK_STREAM => Some(PROTO_TCP),
        SOCK_DGRAM => Some(PROTO_UDP),
        _ => None,
    }
}

#[inline(always)]
fn port(ctx: &SockAddrContext) -> u16 {
    let raw = unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).user_port) };
    // The port sits in network byte order in the low 16 bits of the word as stored in memory.
    u16::from_be(raw as u16)
}

#[inline(always)]
pub fn ipv4(ctx: &SockAddrContext) -> Option<Target> {
    let protocol = protocol(ctx)?;
    let raw = unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).user_ip4) };
    Some(Target {
        dest: Destination::from_ipv4_raw(raw),
        port: port(ctx),
        protocol,
    })
}

#[inline(always)]
pub fn ipv6(ctx: &SockAddrContext) -> Option<Target> {
    let protocol = protocol(ctx)?;
    let sa = ctx.sock_addr;
    let words = unsafe {
        [
            core::ptr::read_volatile(&(*sa).user_ip6[0]),
            core::ptr::read_volatile(&(*sa).user_ip6[1]),
            core::ptr::read_volatile(&(*sa).user_ip6[2]),
            core::ptr::read_volatile(&(*sa).user_ip6[3]),
        ]
    };
    Some(Target {
        dest: Destination::from_ipv6_raw(words),
        port: port(ctx),
        protocol,
    })
}
