//! The connect record and the codes every ring-buffer record is read by.
//!
//! Every record on the `EVENTS` ring buffer starts with a `u32` kind ([`EVENT_CONNECT`] ...
//! [`EVENT_TLS_DATA`]); the daemon reads the kind first and refuses records of a kind it does
//! not know. A [`ConnectEvent`] carries the hook that saw the destination, its address family
//! and its transport as raw codes (`HOOK_*`, `FAMILY_*`, `PROTO_*`); the daemon turns them into
//! the typed `EventKind`, `Hook`, `Family` and `Transport` (feature `user`), refusing any
//! other value.

/// Record kinds: the first field of every ring-buffer record.
pub const EVENT_CONNECT: u32 = 1;
pub const EVENT_PAYLOAD: u32 = 2;
pub const EVENT_EXEC: u32 = 3;
pub const EVENT_EXIT: u32 = 4;
pub const EVENT_FLOW_END: u32 = 5;
pub const EVENT_TLS_DATA: u32 = 6;
pub const EVENT_TLS_CLIENT: u32 = 7;

/// Which hook produced a [`ConnectEvent`].
pub const HOOK_CONNECT: u8 = 1;
pub const HOOK_SENDMSG: u8 = 2;

/// Address families as relaywatch reports them (after IPv4-mapped IPv6 was folded into IPv4).
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `ConnectEvent.flags`: emitted when a local connection's first bytes showed a proxy protocol
/// (HTTP CONNECT, SOCKS4/4a/5, see [`crate::first_payload::proxy_start`]), rather
/// than at connect time.
pub const FLAG_LOCAL_PROXY: u8 = 1;
/// `ConnectEvent.flags`: emitted when a local connection's first bytes were an HTTP POST (see
/// [`crate::first_payload::local_api_request`]): a client talking to a local forwarding proxy
/// (cc-switch, LiteLLM), which the daemon pairs with the proxy's own outbound request.
pub const FLAG_LOCAL_REQUEST: u8 = 2;
/// `ConnectEvent.flags`: the process started a TLS client connection before this connect (Node.js
/// sets up its `SSL *` before the TCP connect) and waits to have its TLS plaintext read: the
/// record wakes the daemon, which attaches that process's TLS probes (see
/// [`crate::tls::TlsClientEvent`]).
pub const FLAG_TLS_CLIENT: u8 = 4;

/// One outbound destination with the identity of the process that chose it.
///
/// Layout: 8-byte fields first, then 4-byte, then bytes; `_pad` keeps the size a multiple of 8
/// so the ring buffer and userspace read it without unaligned access.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    /// Always [`EVENT_CONNECT`].
    pub kind: u32,
    /// Thread group id (the process id userspace sees).
    pub tgid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds when the hook ran: monotonic, and comparable with
    /// `/proc/PID/stat` start times, which is how userspace refuses to attribute an event to a
    /// process that reused the pid later.
    pub ts_boot_ns: u64,
    /// Socket cookie: stable identity of the socket for its whole life.
    pub cookie: u64,
    /// cgroup v2 id of the task (names the systemd unit or container).
    pub cgroup_id: u64,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Destination port, host byte order.
    pub dport: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub protocol: u8,
    /// Destination address in network byte order; IPv4 uses the first 4 bytes, the rest is zero.
    pub daddr: [u8; 16],
    /// Task command name (the thread's comm), NUL-padded.
    pub comm: [u8; 16],
    /// [`HOOK_CONNECT`] or [`HOOK_SENDMSG`].
    pub hook: u8,
    /// [`FLAG_LOCAL_PROXY`], [`FLAG_LOCAL_REQUEST`] or 0.
    pub flags: u8,
    pub _pad: [u8; 6],
}

impl ConnectEvent {
    pub const fn zeroed() -> Self {
        ConnectEvent {
            kind: EVENT_CONNECT,
            tgid: 0,
            ts_boot_ns: 0,
            cookie: 0,
            cgroup_id: 0,
            tid: 0,
            uid: 0,
            gid: 0,
            dport: 0,
            family: 0,
            protocol: 0,
            daddr: [0; 16],
            comm: [0; 16],
            hook: 0,
            flags: 0,
            _pad: [0; 6],
        }
    }

    /// The comm as a string slice, up to the first NUL (lossy: invalid UTF-8 yields `None`).
    pub fn comm_str(&self) -> Option<&str> {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        core::str::from_utf8(&self.comm[..end]).ok()
    }
}

#[cfg(feature = "user")]
pub use self::user::{EventKind, Family, Hook, Transport};

#[cfg(feature = "user")]
mod user {
    use super::*;

    /// A ring-buffer record's kind, from its first `u32`; an unknown value is the `Err`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u32)]
    pub enum EventKind {
        /// [`ConnectEvent`].
        Connect = EVENT_CONNECT,
        /// [`crate::PayloadHeader`] and its data.
        Payload = EVENT_PAYLOAD,
        /// [`crate::ProcessEvent`].
        Exec = EVENT_EXEC,
        /// [`crate::ExitEvent`].
        Exit = EVENT_EXIT,
        /// [`crate::FlowEndEvent`].
        FlowEnd = EVENT_FLOW_END,
        /// [`crate::TlsDataHeader`] and its data.
        TlsData = EVENT_TLS_DATA,
        /// [`crate::TlsClientEvent`].
        TlsClient = EVENT_TLS_CLIENT,
    }

    impl TryFrom<u32> for EventKind {
        type Error = u32;

        fn try_from(raw: u32) -> Result<Self, u32> {
            Ok(match raw {
                EVENT_CONNECT => EventKind::Connect,
                EVENT_PAYLOAD => EventKind::Payload,
                EVENT_EXEC => EventKind::Exec,
                EVENT_EXIT => EventKind::Exit,
                EVENT_FLOW_END => EventKind::FlowEnd,
                EVENT_TLS_DATA => EventKind::TlsData,
                EVENT_TLS_CLIENT => EventKind::TlsClient,
                other => return Err(other),
            })
        }
    }

    /// Which hook saw a destination (`ConnectEvent.hook`); an unknown value is the `Err`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Hook {
        /// connect(2): TCP, or UDP on a socket that is then connected.
        Connect = HOOK_CONNECT,
        /// sendmsg/sendto with an explicit destination: unconnected UDP.
        Sendmsg = HOOK_SENDMSG,
    }

    impl TryFrom<u8> for Hook {
        type Error = u8;

        fn try_from(raw: u8) -> Result<Self, u8> {
            match raw {
                HOOK_CONNECT => Ok(Hook::Connect),
                HOOK_SENDMSG => Ok(Hook::Sendmsg),
                other => Err(other),
            }
        }
    }

    /// Address family of a record's addresses (`family` fields); an unknown value is the `Err`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Family {
        /// The first 4 bytes of the address field hold the address.
        Ipv4 = FAMILY_IPV4,
        Ipv6 = FAMILY_IPV6,
    }

    impl TryFrom<u8> for Family {
        type Error = u8;

        fn try_from(raw: u8) -> Result<Self, u8> {
            match raw {
                FAMILY_IPV4 => Ok(Family::Ipv4),
                FAMILY_IPV6 => Ok(Family::Ipv6),
                other => Err(other),
            }
        }
    }

    /// Transport protocol of a record (`protocol` fields, IP protocol numbers); an unknown value
    /// is the `Err`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Transport {
        Tcp = PROTO_TCP,
        Udp = PROTO_UDP,
    }

    impl Transport {
        /// The name records and alerts use.
        pub fn as_str(self) -> &'static str {
            match self {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            }
        }
    }

    impl TryFrom<u8> for Transport {
        type Error = u8;

        fn try_from(raw: u8) -> Result<Self, u8> {
            match raw {
                PROTO_TCP => Ok(Transport::Tcp),
                PROTO_UDP => Ok(Transport::Udp),
                other => Err(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        let mut e = ConnectEvent::zeroed();
        e.comm[..4].copy_from_slice(b"curl");
        assert_eq!(e.comm_str(), Some("curl"));
        e.comm = [b'x'; 16];
        assert_eq!(e.comm_str(), Some("xxxxxxxxxxxxxxxx"));
    }

    #[cfg(feature = "user")]
    #[test]
    fn codes_convert_both_ways_and_refuse_the_rest() {
        for kind in [
            EventKind::Connect,
            EventKind::Payload,
            EventKind::Exec,
            EventKind::Exit,
            EventKind::FlowEnd,
        ] {
            assert_eq!(EventKind::try_from(kind as u32), Ok(kind));
        }
        assert_eq!(EventKind::try_from(0), Err(0));
        assert_eq!(EventKind::try_from(99), Err(99));
        for hook in [Hook::Connect, Hook::Sendmsg] {
            assert_eq!(Hook::try_from(hook as u8), Ok(hook));
        }
        assert_eq!(Hook::try_from(0), Err(0));
        assert_eq!(Family::try_from(FAMILY_IPV4), Ok(Family::Ipv4));
        assert_eq!(Family::try_from(FAMILY_IPV6), Ok(Family::Ipv6));
        assert_eq!(
            Family::try_from(2),
            Err(2),
            "AF_INET is not a relaywatch family code"
        );
        assert_eq!(Transport::try_from(PROTO_TCP), Ok(Transport::Tcp));
        assert_eq!(Transport::try_from(PROTO_UDP), Ok(Transport::Udp));
        assert_eq!(Transport::try_from(1), Err(1), "ICMP");
        assert_eq!(Transport::Udp.as_str(), "udp");
    }
}
