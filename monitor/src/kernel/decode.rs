//! Decoding ring-buffer records into connection observations.
//!
//! The ring buffer holds raw `#[repr(C)]` records written by the kernel programs. A record that
//! is too short or of an unknown kind (a newer kernel object than this daemon, say) is refused
//! with a reason, never read past its end.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use monitor_common::event::{Hook, Transport};

pub use crate::kernel::tls_targets::TlsLibrary;
use monitor_common::{
    ConnectEvent, ExitEvent, FlowEndEvent, PayloadHeader, ProcessEvent, TlsClientEvent,
    TlsDataHeader, UdpFlowKey,
    event::{EventKind, FLAG_LOCAL_PROXY, FLAG_LOCAL_REQUEST, Family},
    payload::{Direction, PAYLOAD_CHUNK},
    tls::{TLS_DATA_MAX, TLS_DIR_READ, TLS_DIR_WRITE, TLS_LIB_GNUTLS, TLS_LIB_GO, TLS_LIB_OPENSSL},
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
    /// Reported when its first bytes showed a proxy request on a local connection.
    pub local_proxy: bool,
    /// Reported when its first bytes were an HTTP POST on a local connection (a client of a
    /// local forwarding proxy).
    pub local_request: bool,
}

/// A piece of captured payload. The bytes stay inside the daemon: only names parsed from them
/// are ever written out.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadChunk {
    pub header: PayloadHeader,
    pub egress: bool,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for PayloadChunk {
    // Never print payload bytes (they may hold secrets), even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadChunk")
            .field("cookie", &self.header.cookie)
            .field("egress", &self.egress)
            .field("seq", &self.header.seq)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl PayloadChunk {
    pub fn source(&self) -> IpAddr {
        ip_of(self.header.family, &self.header.saddr)
    }

    pub fn destination(&self) -> IpAddr {
        ip_of(self.header.family, &self.header.daddr)
    }
}

/// Plaintext a process wrote (or read) on a TLS connection, from the TLS uprobes. Like
/// [`PayloadChunk`], the bytes stay inside the daemon: only the API evidence parsed from them
/// is ever written out.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsData {
    pub header: TlsDataHeader,
    pub library: TlsLibrary,
    /// The process wrote it (a request) rather than read it.
    pub written: bool,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for TlsData {
    // Never print plaintext (it holds API keys and prompts), even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsData")
            .field("tgid", &self.header.tgid)
            .field("conn", &self.header.conn)
            .field("library", &self.library)
            .field("written", &self.written)
            .field("index", &self.header.index)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

fn decode_tls(bytes: &[u8]) -> Result<TlsData, DecodeError> {
    let need = std::mem::size_of::<TlsDataHeader>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; TlsDataHeader is plain old data valid for any bit pattern.
    let header: TlsDataHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let len = header.len as usize;
    if len == 0 || len > TLS_DATA_MAX {
        return Err(DecodeError::BadField("TLS data length", len as u64));
    }
    if bytes.len() < need + len {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need: need + len,
        });
    }
    let library = match header.library {
        TLS_LIB_OPENSSL => TlsLibrary::OpenSsl,
        TLS_LIB_GNUTLS => TlsLibrary::GnuTls,
        TLS_LIB_GO => TlsLibrary::Go,
        other => return Err(DecodeError::BadField("TLS library", other.into())),
    };
    let written = match header.direction {
        TLS_DIR_WRITE => true,
        TLS_DIR_READ => false,
        other => return Err(DecodeError::BadField("TLS direction", other.into())),
    };
    Ok(TlsData {
        header,
        library,
        written,
        data: bytes[need..need + len].to_vec(),
    })
}

/// A record's address; an unknown family (refused at decoding) reads as IPv6.
fn ip_of(family: u8, addr: &[u8; 16]) -> IpAddr {
    match Family::try_from(family) {
        Ok(Family::Ipv4) => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        Ok(Family::Ipv6) | Err(_) => IpAddr::V6(Ipv6Addr::from(*addr)),
    }
}

/// A process started a new program image, or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// `ppid` and `args` as the kernel read them at exec (`None`: not known). `args` holds only
    /// arguments read whole: an argument block longer than the event carries loses its tail.
    Exec {
        tgid: u32,
        ts_boot_ns: u64,
        comm: String,
        filename: String,
        ppid: Option<u32>,
        args: Option<Vec<String>>,
        args_truncated: bool,
    },
    Exit {
        tgid: u32,
        ts_boot_ns: u64,
    },
}

/// One ring-buffer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Connect(Observation),
    Payload(PayloadChunk),
    Process(Lifecycle),
    /// A watched socket was released, with its payload byte counts.
    FlowEnd(FlowEndEvent),
    /// Plaintext of a TLS connection (uprobes).
    Tls(TlsData),
    /// A process not read yet started a TLS client connection: the tgid.
    TlsClient(u32),
}

fn nul_terminated(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The complete arguments in an exec event's argument block (a cut last one is dropped).
fn exec_args(e: &ProcessEvent) -> Option<Vec<String>> {
    let read = &e.args[..(e.args_len as usize).min(e.args.len())];
    let whole = if e.args_total > u64::from(e.args_len) {
        // Cut: keep what ends with a NUL.
        &read[..read.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1)]
    } else {
        read
    };
    let args = crate::process::reader::parse_cmdline(whole);
    (!args.is_empty()).then_some(args)
}

fn decode_process(bytes: &[u8], kind: EventKind) -> Result<Lifecycle, DecodeError> {
    if kind == EventKind::Exit {
        let need = std::mem::size_of::<ExitEvent>();
        if bytes.len() < need {
            return Err(DecodeError::Short {
                len: bytes.len(),
                need,
            });
        }
        // SAFETY: length checked; ExitEvent is plain old data valid for any bit pattern.
        let e: ExitEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        return Ok(Lifecycle::Exit {
            tgid: e.tgid,
            ts_boot_ns: e.ts_boot_ns,
        });
    }
    let need = std::mem::size_of::<ProcessEvent>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; ProcessEvent is plain old data valid for any bit pattern.
    let e: ProcessEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Ok(Lifecycle::Exec {
        tgid: e.tgid,
        ts_boot_ns: e.ts_boot_ns,
        comm: nul_terminated(&e.comm),
        filename: nul_terminated(&e.filename),
        ppid: (e.ppid != 0).then_some(e.ppid),
        args: exec_args(&e),
        args_truncated: e.args_total > u64::from(e.args_len),
    })
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

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need: 4,
        });
    }
    let kind = EventKind::try_from(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        .map_err(DecodeError::UnknownKind)?;
    match kind {
        EventKind::Connect => decode_connect(bytes).map(Record::Connect),
        EventKind::Payload => decode_payload(bytes).map(Record::Payload),
        EventKind::TlsData => decode_tls(bytes).map(Record::Tls),
        EventKind::TlsClient => {
            let need = std::mem::size_of::<TlsClientEvent>();
            if bytes.len() < need {
                return Err(DecodeError::Short {
                    len: bytes.len(),
                    need,
                });
            }
            // The tgid, right after the kind (`TlsClientEvent`'s layout, checked in
            // monitor-common).
            Ok(Record::TlsClient(u32::from_ne_bytes([
                bytes[4], bytes[5], bytes[6], bytes[7],
            ])))
        }
        EventKind::Exec | EventKind::Exit => decode_process(bytes, kind).map(Record::Process),
        EventKind::FlowEnd => {
            let need = std::mem::size_of::<FlowEndEvent>();
            if bytes.len() < need {
                return Err(DecodeError::Short {
                    len: bytes.len(),
                    need,
                });
            }
            // SAFETY: length checked; FlowEndEvent is plain old data valid for any bit pattern.
            Ok(Record::FlowEnd(unsafe {
                std::ptr::read_unaligned(bytes.as_ptr().cast())
            }))
        }
    }
}

fn decode_payload(bytes: &[u8]) -> Result<PayloadChunk, DecodeError> {
    let need = std::mem::size_of::<PayloadHeader>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; PayloadHeader is plain old data valid for any bit pattern.
    let header: PayloadHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let len = header.len as usize;
    if len == 0 || len > PAYLOAD_CHUNK {
        return Err(DecodeError::BadField("payload length", len as u64));
    }
    if bytes.len() < need + len {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need: need + len,
        });
    }
    let egress = match Direction::try_from(header.direction) {
        Ok(Direction::Egress) => true,
        Ok(Direction::Ingress) => false,
        Err(other) => return Err(DecodeError::BadField("direction", other.into())),
    };
    if let Err(other) = Family::try_from(header.family) {
        return Err(DecodeError::BadField("family", other.into()));
    }
    Ok(PayloadChunk {
        header,
        egress,
        data: bytes[need..need + len].to_vec(),
    })
}

fn decode_connect(bytes: &[u8]) -> Result<Observation, DecodeError> {
    let need = std::mem::size_of::<ConnectEvent>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; ConnectEvent is plain old data valid for any bit pattern;
    // read_unaligned because ring-buffer records are only 8-byte aligned by convention.
    let raw: ConnectEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let destination = match Family::try_from(raw.family) {
        Ok(Family::Ipv4) => IpAddr::V4(Ipv4Addr::new(
            raw.daddr[0],
            raw.daddr[1],
            raw.daddr[2],
            raw.daddr[3],
        )),
        Ok(Family::Ipv6) => IpAddr::V6(Ipv6Addr::from(raw.daddr)),
        Err(other) => return Err(DecodeError::BadField("family", other.into())),
    };
    let transport = Transport::try_from(raw.protocol)
        .map_err(|other| DecodeError::BadField("protocol", other.into()))?;
    let hook =
        Hook::try_from(raw.hook).map_err(|other| DecodeError::BadField("hook", other.into()))?;
    let comm = nul_terminated(&raw.comm);
    let local_proxy = raw.flags & FLAG_LOCAL_PROXY != 0;
    let local_request = raw.flags & FLAG_LOCAL_REQUEST != 0;
    Ok(Observation {
        raw,
        destination,
        port: raw.dport,
        transport,
        hook,
        comm,
        local_proxy,
        local_request,
    })
}

#[cfg(test)]
mod tests {
    use monitor_common::{
        event::{
            EVENT_EXEC, EVENT_EXIT, EVENT_PAYLOAD, FAMILY_IPV4, FAMILY_IPV6, HOOK_SENDMSG,
            PROTO_TCP, PROTO_UDP,
        },
        payload::DIR_EGRESS,
        process::{EXEC_ARGS_LEN, EXEC_FILENAME_LEN},
    };

    use super::*;
    use crate::testutil::{ConnectEventBuilder, event_bytes as bytes_of};

    fn sample() -> ConnectEvent {
        ConnectEventBuilder::tcp_v4(100, [104, 18, 32, 47], 443)
            .thread(101)
            .comm("curl")
            .event()
    }

    fn connect(bytes: &[u8]) -> Result<Observation, DecodeError> {
        match decode(bytes)? {
            Record::Connect(o) => Ok(o),
            other => panic!("expected a connect record, got {other:?}"),
        }
    }

    fn payload_bytes(h: &PayloadHeader, data: &[u8]) -> Vec<u8> {
        let p = (h as *const PayloadHeader).cast::<u8>();
        let mut v =
            unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<PayloadHeader>()) }.to_vec();
        v.extend_from_slice(data);
        v.resize(std::mem::size_of::<PayloadHeader>() + PAYLOAD_CHUNK, 0xAA);
        v
    }

    fn header(len: u32) -> PayloadHeader {
        PayloadHeader {
            kind: EVENT_PAYLOAD,
            seq: 1000,
            ts_boot_ns: 1,
            cookie: 77,
            len,
            offset: 0,
            packet_len: len,
            owner_tgid: 0,
            sport: 40000,
            dport: 443,
            direction: DIR_EGRESS,
            protocol: PROTO_TCP,
            family: FAMILY_IPV4,
            mode: 0,
            saddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn decodes_payload_chunk_and_never_prints_its_bytes() {
        let b = payload_bytes(&header(6), b"secret");
        let Record::Payload(c) = decode(&b).unwrap() else {
            panic!("payload expected")
        };
        assert_eq!(c.data, b"secret");
        assert!(c.egress);
        assert_eq!(c.destination().to_string(), "10.0.0.2");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn refuses_bad_payload_chunks() {
        assert!(matches!(
            decode(&payload_bytes(&header(0), b"")),
            Err(DecodeError::BadField("payload length", 0))
        ));
        assert!(decode(&payload_bytes(&header(PAYLOAD_CHUNK as u32 + 1), b"")).is_err());
        let b = payload_bytes(&header(100), &[1; 100]);
        assert!(matches!(decode(&b[..120]), Err(DecodeError::Short { .. })));
        let mut h = header(4);
        h.direction = 9;
        assert!(decode(&payload_bytes(&h, b"abcd")).is_err());
    }

    #[test]
    fn decodes_a_tls_client_start_and_refuses_a_short_one() {
        let event = monitor_common::TlsClientEvent {
            kind: monitor_common::event::EVENT_TLS_CLIENT,
            tgid: 4242,
            ts_boot_ns: 7,
            library: monitor_common::tls::TLS_LIB_OPENSSL,
            _pad: [0; 7],
        };
        // SAFETY: a plain-old-data struct viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw const event).cast::<u8>(),
                std::mem::size_of::<monitor_common::TlsClientEvent>(),
            )
        };
        assert!(matches!(decode(bytes), Ok(Record::TlsClient(4242))));
        assert_eq!(
            decode(&bytes[..8]).err(),
            Some(DecodeError::Short { len: 8, need: 24 })
        );
    }

    #[test]
    fn decodes_exec_and_exit() {
        let mut e = ProcessEvent {
            kind: EVENT_EXEC,
            tgid: 9,
            ts_boot_ns: 5,
            comm: [0; 16],
            filename: [0; EXEC_FILENAME_LEN],
            ppid: 0,
            args_len: 0,
            args_total: 0,
            args: [0; EXEC_ARGS_LEN],
        };
        e.comm[..4].copy_from_slice(b"curl");
        e.filename[..13].copy_from_slice(b"/usr/bin/curl");
        let exec = |ppid, args: Option<Vec<&str>>, args_truncated| {
            Record::Process(Lifecycle::Exec {
                tgid: 9,
                ts_boot_ns: 5,
                comm: "curl".into(),
                filename: "/usr/bin/curl".into(),
                ppid,
                args: args.map(|a| a.into_iter().map(String::from).collect()),
                args_truncated,
            })
        };
        let bytes = |e: &ProcessEvent| {
            let p = (e as *const ProcessEvent).cast::<u8>();
            unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<ProcessEvent>()) }.to_vec()
        };
        assert_eq!(
            decode(&bytes(&e)).unwrap(),
            exec(None, None, false),
            "no layout: nothing from the kernel"
        );
        let block = b"curl\0-sS\0http://x/\0";
        e.args[..block.len()].copy_from_slice(block);
        e.ppid = 77;
        (e.args_len, e.args_total) = (block.len() as u32, block.len() as u64);
        assert_eq!(
            decode(&bytes(&e)).unwrap(),
            exec(Some(77), Some(vec!["curl", "-sS", "http://x/"]), false)
        );
        // A cut block keeps the arguments read whole.
        (e.args_len, e.args_total) = (12, 5000);
        assert_eq!(
            decode(&bytes(&e)).unwrap(),
            exec(Some(77), Some(vec!["curl", "-sS"]), true)
        );
        (e.args_len, e.args_total) = (3, 5000);
        assert_eq!(
            decode(&bytes(&e)).unwrap(),
            exec(Some(77), None, true),
            "not even the first argument whole"
        );
        // A lying length is clamped to the buffer.
        (e.args_len, e.args_total) = (u32::MAX, 1);
        assert!(decode(&bytes(&e)).is_ok());
        assert!(matches!(
            decode(&bytes(&e)[..300]),
            Err(DecodeError::Short { .. })
        ));
        let exit = ExitEvent {
            kind: EVENT_EXIT,
            tgid: 9,
            ts_boot_ns: 5,
        };
        let p = (&exit as *const ExitEvent).cast::<u8>();
        let b = unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<ExitEvent>()) };
        assert_eq!(
            decode(b).unwrap(),
            Record::Process(Lifecycle::Exit {
                tgid: 9,
                ts_boot_ns: 5
            })
        );
        assert!(matches!(decode(&b[..12]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn decodes_ipv4_tcp() {
        let o = connect(&bytes_of(&sample())).unwrap();
        assert_eq!(o.destination, "104.18.32.47".parse::<IpAddr>().unwrap());
        assert_eq!(
            (o.port, o.transport, o.hook, o.comm.as_str()),
            (443, Transport::Tcp, Hook::Connect, "curl")
        );
    }

    #[test]
    fn decodes_ipv6_udp_sendmsg() {
        let mut e = sample();
        e.family = FAMILY_IPV6;
        e.protocol = PROTO_UDP;
        e.hook = HOOK_SENDMSG;
        e.daddr = "2606:4700::6810:1f2f".parse::<Ipv6Addr>().unwrap().octets();
        let o = connect(&bytes_of(&e)).unwrap();
        assert_eq!(o.destination.to_string(), "2606:4700::6810:1f2f");
        assert_eq!((o.transport, o.hook), (Transport::Udp, Hook::Sendmsg));
        assert_eq!(o.udp_flow_key().daddr, e.daddr);
    }

    #[test]
    fn refuses_short_unknown_and_bad_records() {
        let b = bytes_of(&sample());
        assert_eq!(decode(&b[..2]), Err(DecodeError::Short { len: 2, need: 4 }));
        assert_eq!(
            decode(&b[..40]),
            Err(DecodeError::Short {
                len: 40,
                need: b.len()
            })
        );
        let mut e = sample();
        e.kind = 99;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::UnknownKind(99)));
        let mut e = sample();
        e.family = 2;
        assert_eq!(
            decode(&bytes_of(&e)),
            Err(DecodeError::BadField("family", 2))
        );
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
        assert!(connect(&bytes_of(&e)).unwrap().comm.contains('\u{fffd}'));
    }
}
