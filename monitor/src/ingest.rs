//! Decoding ring-buffer records into connection observations.
//!
//! The ring buffer holds raw `#[repr(C)]` records written by the kernel programs. A record that
//! is too short or of an unknown kind (a newer kernel object than this daemon, say) is refused
//! with a reason, never read past its end.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitor_common::{
    ConnectEvent, EVENT_CONNECT, FAMILY_IPV4, FAMILY_IPV6, HOOK_CONNECT, HOOK_SENDMSG, PROTO_TCP,
    PROTO_UDP, UdpFlowKey,
};

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { len: usize, need: usize },
    UnknownKind(u32),
    BadField(&'static str, u64),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short { len, need } => write!(f, "record of {len} bytes, need {need}"),
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::BadField(name, v) => write!(f, "bad {name} {v}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// connect(2): TCP, or UDP on a socket that is then connected.
    Connect,
    /// sendmsg/sendto with an explicit destination: unconnected UDP.
    Sendmsg,
}

/// One outbound destination choice, decoded and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub raw: ConnectEvent,
    pub destination: IpAddr,
    pub port: u16,
    pub transport: Transport,
    pub hook: Hook,
    /// The sending thread's comm (lossy UTF-8).
    pub comm: String,
}

impl Observation {
    /// Key of this observation's entry in the kernel's UDP_FLOWS map.
    pub fn udp_flow_key(&self) -> UdpFlowKey {
        UdpFlowKey {
            tgid: self.raw.tgid,
            dport: self.raw.dport,
            family: self.raw.family,
            protocol: self.raw.protocol,
            daddr: self.raw.daddr,
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Observation, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Short { len: bytes.len(), need: 4 });
    }
    let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if kind != EVENT_CONNECT {
        return Err(DecodeError::UnknownKind(kind));
    }
    let need = std::mem::size_of::<ConnectEvent>();
    if bytes.len() < need {
        return Err(DecodeError::Short { len: bytes.len(), need });
    }
    // SAFETY: length checked; ConnectEvent is plain old data valid for any bit pattern;
    // read_unaligned because ring-buffer records are only 8-byte aligned by convention.
    let raw: ConnectEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let destination = match raw.family {
        FAMILY_IPV4 => IpAddr::V4(Ipv4Addr::new(raw.daddr[0], raw.daddr[1], raw.daddr[2], raw.daddr[3])),
        FAMILY_IPV6 => IpAddr::V6(Ipv6Addr::from(raw.daddr)),
        other => return Err(DecodeError::BadField("family", other.into())),
    };
    let transport = match raw.protocol {
        PROTO_TCP => Transport::Tcp,
        PROTO_UDP => Transport::Udp,
        other => return Err(DecodeError::BadField("protocol", other.into())),
    };
    let hook = match raw.hook {
        HOOK_CONNECT => Hook::Connect,
        HOOK_SENDMSG => Hook::Sendmsg,
        other => return Err(DecodeError::BadField("hook", other.into())),
    };
    let end = raw.comm.iter().position(|&b| b == 0).unwrap_or(raw.comm.len());
    let comm = String::from_utf8_lossy(&raw.comm[..end]).into_owned();
    Ok(Observation { raw, destination, port: raw.dport, transport, hook, comm })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(e: &ConnectEvent) -> Vec<u8> {
        let p = (e as *const ConnectEvent).cast::<u8>();
        unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<ConnectEvent>()) }.to_vec()
    }

    fn sample() -> ConnectEvent {
        let mut e = ConnectEvent::zeroed();
        e.tgid = 100;
        e.tid = 101;
        e.family = FAMILY_IPV4;
        e.protocol = PROTO_TCP;
        e.hook = HOOK_CONNECT;
        e.dport = 443;
        e.daddr[..4].copy_from_slice(&[104, 18, 32, 47]);
        e.comm[..4].copy_from_slice(b"curl");
        e
    }

    #[test]
    fn decodes_ipv4_tcp() {
        let o = decode(&bytes_of(&sample())).unwrap();
        assert_eq!(o.destination, "104.18.32.47".parse::<IpAddr>().unwrap());
        assert_eq!((o.port, o.transport, o.hook, o.comm.as_str()), (443, Transport::Tcp, Hook::Connect, "curl"));
    }

    #[test]
    fn decodes_ipv6_udp_sendmsg() {
        let mut e = sample();
        e.family = FAMILY_IPV6;
        e.protocol = PROTO_UDP;
        e.hook = HOOK_SENDMSG;
        e.daddr = "2606:4700::6810:1f2f".parse::<Ipv6Addr>().unwrap().octets();
        let o = decode(&bytes_of(&e)).unwrap();
        assert_eq!(o.destination.to_string(), "2606:4700::6810:1f2f");
        assert_eq!((o.transport, o.hook), (Transport::Udp, Hook::Sendmsg));
        assert_eq!(o.udp_flow_key().daddr, e.daddr);
    }

    #[test]
    fn refuses_short_unknown_and_bad_records() {
        let b = bytes_of(&sample());
        assert_eq!(decode(&b[..2]), Err(DecodeError::Short { len: 2, need: 4 }));
        assert_eq!(decode(&b[..40]), Err(DecodeError::Short { len: 40, need: b.len() }));
        let mut e = sample();
        e.kind = 99;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::UnknownKind(99)));
        let mut e = sample();
        e.family = 2;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::BadField("family", 2)));
        let mut e = sample();
        e.protocol = 1;
        assert!(decode(&bytes_of(&e)).is_err());
        let mut e = sample();
        e.hook = 0;
        assert!(decode(&bytes_of(&e)).is_err());
    }

    #[test]
    fn non_utf8_comm_is_lossy_not_fatal() {
        let mut e = sample();
        e.comm = [0xff; 16];
        assert!(decode(&bytes_of(&e)).unwrap().comm.contains('\u{fffd}'));
    }
}
