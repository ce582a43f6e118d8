//! Per-socket capture state (the `CAPTURE` map, keyed by socket cookie): what the kernel still
//! wants from a socket's outgoing payload (`CAPTURE_*` modes), the daemon's watch (`STATE_*`
//! flags, byte counts reported as a [`FlowEndEvent`] when the socket goes), and the budgets that
//! bound a capture.

use crate::event::ConnectEvent;

/// Capacity of the per-socket capture state map (LRU).
pub const CAPTURE_CAPACITY: u32 = 16_384;
/// Per connection, capture stops after this many payload bytes or payload-bearing packets.
pub const CAPTURE_MAX_BYTES: u32 = 16_384;
pub const CAPTURE_MAX_SEGMENTS: u16 = 8;
/// Datagrams captured per UDP flow (connected socket, or unconnected repeat window): a QUIC
/// ClientHello with a post-quantum key share spans two Initial packets, each in a datagram of
/// its own. The kernel stops after these; the daemon examines as many.
pub const DATAGRAMS_CAPTURED: u16 = 2;
/// DNS over TCP: answer segments copied per socket at most.
pub const DNS_TCP_SEGMENTS_MAX: u16 = 8;

/// `CaptureState.mode`: what the kernel still wants from a socket's outgoing payload.
/// No payload wanted (the entry exists for DNS answers or byte counting).
pub const CAPTURE_NONE: u8 = 0;
/// Non-local stream (TCP / connected UDP) whose first payload has not been seen yet.
pub const CAPTURE_NEW: u8 = 1;
/// Local TCP connection: looked at once, reported only if it speaks a proxy protocol.
pub const CAPTURE_LOCAL_PROBE: u8 = 2;
/// TLS handshake record being captured until `need` bytes are in.
pub const CAPTURE_TLS: u8 = 3;
/// Proxy connection: capture client payloads (request, then the tunnelled first bytes) up to
/// the byte and segment budget, or until the daemon deletes the entry once it has the name.
pub const CAPTURE_PROXY: u8 = 4;
/// UDP: capture the next two datagrams from this socket (from the one whose sendmsg opened a
/// repeat window) and stop.
pub const CAPTURE_DATAGRAM: u8 = 5;

/// `CaptureState.flags`: count the socket's payload bytes both ways and report them when it is
/// released (set by the daemon for connections that raised an alert).
pub const STATE_WATCH: u8 = 1;
/// `CaptureState.flags`: a reported stream whose capture is over, kept until the daemon decides
/// (watch it, or end it): while the entry exists the socket's gate stays open, so the daemon's
/// watch is seen by the packet programs (see `CAPTURE_GATE` in monitor-ebpf's maps.rs).
pub const STATE_AWAIT: u8 = 2;

/// Value of the `CAPTURE` map, keyed by socket cookie: everything the kernel keeps per socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureState {
    /// The connect event. For [`CAPTURE_LOCAL_PROBE`] it has not been reported yet and is
    /// emitted (with [`crate::event::FLAG_LOCAL_PROXY`]) if the first bytes show a proxy
    /// protocol.
    pub event: ConnectEvent,
    /// Payload bytes captured so far.
    pub captured: u32,
    /// TLS: bytes of the first record (header included) the capture waits for.
    pub need: u32,
    /// Payload-bearing packets seen so far.
    pub segments: u16,
    /// `CAPTURE_*`.
    pub mode: u8,
    /// [`STATE_WATCH`], [`STATE_AWAIT`], both, or 0.
    pub flags: u8,
    /// The tgid that sent to port 53 on this socket (0: not a DNS socket): answers arriving on
    /// it are read on ingress.
    pub dns_owner: u32,
    /// Payload bytes counted while [`CaptureState::counts_bytes`]: sent, received.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Boot-clock nanoseconds when the daemon started watching (written by the daemon).
    pub watch_start_ns: u64,
    /// DNS over TCP: answer segments copied so far (bounded by [`DNS_TCP_SEGMENTS_MAX`]: a zone
    /// transfer or a hostile server must not flood the ring buffer).
    pub dns_tcp_segments: u16,
    pub _pad: [u8; 6],
}

impl CaptureState {
    /// An entry that captures nothing (yet): for a DNS socket, or one the daemon watches.
    pub const fn empty() -> CaptureState {
        CaptureState {
            event: ConnectEvent::zeroed(),
            captured: 0,
            need: 0,
            segments: 0,
            mode: CAPTURE_NONE,
            flags: 0,
            dns_owner: 0,
            bytes_out: 0,
            bytes_in: 0,
            watch_start_ns: 0,
            dns_tcp_segments: 0,
            _pad: [0; 6],
        }
    }

    /// Whether the socket's payload bytes are counted both ways: the daemon watches it, or has yet
    /// to decide on a reported stream (so a connection that closes before the daemon's watch
    /// still reports its volume).
    pub const fn counts_bytes(&self) -> bool {
        self.flags & (STATE_WATCH | STATE_AWAIT) != 0
    }

    /// Whether the entry still has a job once capture is over.
    pub const fn outlives_capture(&self) -> bool {
        self.dns_owner != 0 || self.flags & STATE_WATCH != 0
    }
}

/// A socket whose bytes were counted was released: its payload byte counts (flow volume
/// without a per-packet record).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEndEvent {
    /// Always [`crate::event::EVENT_FLOW_END`].
    pub kind: u32,
    pub _pad: u32,
    pub cookie: u64,
    /// Payload bytes sent and received while counted (see [`CaptureState::counts_bytes`]).
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Boot-clock nanoseconds: when the daemon started watching (0 if it never did), and when
    /// the socket was released.
    pub watch_start_ns: u64,
    pub end_ns: u64,
}
