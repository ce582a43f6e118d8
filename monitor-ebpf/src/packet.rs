//! Reading IP and TCP/UDP headers out of a `cgroup_skb` packet.
//!
//! cgroup_skb programs see the packet from the network header on. Headers are copied with
//! `bpf_skb_load_bytes`, which also works when the packet is not linear. IPv6 packets with
//! extension headers before TCP/UDP are not parsed (returns `None`): connect-time capture of
//! ordinary client traffic never carries them.
use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext};
use monitor_common::event::{FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP};

pub struct Packet {
    pub family: u8,
    pub protocol: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// TCP sequence number of the first payload byte (0 for UDP).
    pub seq: u32,
    /// Offset of the payload from the start of the packet.
    pub payload_off: u32,
    pub payload_len: u32,
}

#[inline(always)]
fn load<const N: usize>(ctx: &SkBuffContext, offset: u32) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            offset,
            buf.as_mut_ptr().cast(),
            N as u32,
        )
    };
    (rc == 0).then_some(buf)
}

#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<Packet> {
    let total = ctx.len();
    let first: [u8; 1] = load(ctx, 0)?;
    let mut p = Packet {
        family: 0,
        protocol: 0,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        seq: 0,
        payload_off: 0,
        payload_len: 0,
    };
    let l4_off: u32;
    match first[0] >> 4 {
        4 => {
            let ip: [u8; 20] = load(ctx, 0)?;
            l4_off = ((ip[0] & 0x0f) as u32) * 4;
            p.family = FAMILY_IPV4;
            p.protocol = ip[9];
            p.saddr[0] = ip[12];
            p.saddr[1] = ip[13];
            p.saddr[2] = ip[14];
            p.saddr[3] = ip[15];
            p.daddr[0] = ip[16];
            p.daddr[1] = ip[17];
            p.daddr[2] = ip[18];
            p.daddr[3] = ip[19];
        }
        6 => {
            let ip: [u8; 40] = load(ctx, 0)?;
            l4_off = 40;
            p.family = FAMILY_IPV6;
            p.protocol = ip[6];
            let mut i = 0;
            while i < 16 {
                p.saddr[i] = ip[8 + i];
                p.daddr[i] = ip[24 + i];
                i += 1;
            }
        }
        _ => return None,
    }
    match p.protocol {
        PROTO_TCP => {
            let tcp: [u8; 14] = load(ctx, l4_off)?;
            p.sport = u16::from_be_bytes([tcp[0], tcp[1]]);
            p.dport = u16::from_be_bytes([tcp[2], tcp[3]]);
            p.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            p.payload_off = l4_off + ((tcp[12] >> 4) as u32) * 4;
        }
        PROTO_UDP => {
            let udp: [u8; 4] = load(ctx, l4_off)?;
            p.sport = u16::from_be_bytes([udp[0], udp[1]]);
            p.dport = u16::from_be_bytes([udp[2], udp[3]]);
            p.payload_off = l4_off + 8;
        }
        _ => return None,
    }
    p.payload_len = total.saturating_sub(p.payload_off);
    Some(p)
}

/// The first (up to) 8 payload bytes, zero-padded.
#[inline(always)]
pub fn first_bytes(ctx: &SkBuffContext, p: &Packet) -> [u8; 8] {
    let mut out = [0u8; 8];
    if p.payload_len >= 8 {
        if let Some(b) = load::<8>(ctx, p.payload_off) {
            out = b;
        }
    } else if p.payload_len >= 2 {
        // Short payloads (a SOCKS5 greeting is 3 bytes): copy byte by byte, bounded by 8.
        let mut i = 0u32;
        while i < 8 {
            if i >= p.payload_len {
                break;
            }
            if let Some(b) = load::<1>(ctx, p.payload_off + i) {
                out[i as usize] = b[0];
            }
            i += 1;
        }
    }
    out
}
