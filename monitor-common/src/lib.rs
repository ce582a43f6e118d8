//! Types shared by relaywatch's kernel programs (`monitor-ebpf`) and its daemon (`monitor`).
//!
//! Everything that crosses the kernel/user boundary is defined here once, `#[repr(C)]`, with
//! explicit padding so both sides agree on every byte:
//!
//! - [`ConnectEvent`]: one outbound destination seen by a connect hook (TCP, connected UDP) or by
//!   a sendmsg hook (unconnected UDP), with the identity of the process that asked for it.
//! - [`FilterConfig`]: the single entry of the `CONFIG` array map, written by the daemon before it
//!   attaches anything (`--include-loopback`, the UDP repeat window).
//! - [`UdpFlowKey`] / [`UdpFlowWindow`]: the `UDP_FLOWS` LRU map that folds repeated unconnected
//!   datagrams from one process to one destination into one event with a count.
//! - Counter indices of the per-CPU `COUNTERS` array.
//!
//! The address helpers ([`Destination`]) are pure functions used by the kernel programs to
//! normalise and filter destinations, and unit-tested here from userspace.
#![no_std]

/// Event kinds, the first field of every ring-buffer record.
pub const EVENT_CONNECT: u32 = 1;
pub const EVENT_PAYLOAD: u32 = 2;
pub const EVENT_EXEC: u32 = 3;
pub const EVENT_EXIT: u32 = 4;
pub const EVENT_FLOW_END: u32 = 5;

/// Bytes of the exec'd file name kept (longer paths are cut; userspace prefers /proc/PID/exe).
pub const EXEC_FILENAME_LEN: usize = 256;

/// Bytes of the argument block (argv, NUL-separated) an exec event carries; longer command
/// lines are cut here (`args_total` says by how much).
pub const EXEC_ARGS_LEN: usize = 1024;

/// Which hook produced a [`ConnectEvent`].
pub const HOOK_CONNECT: u8 = 1;
pub const HOOK_SENDMSG: u8 = 2;

/// Address families as relaywatch reports them (after IPv4-mapped IPv6 was folded into IPv4).
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Indices into the per-CPU `COUNTERS` array.
pub const COUNTER_RINGBUF_LOST: u32 = 0;
pub const COUNTER_EVENTS: u32 = 1;
pub const COUNTER_UDP_FOLDED: u32 = 2;
pub const COUNTER_LOCAL_SKIPPED: u32 = 3;
/// Payload chunks written (egress captures and DNS answers).
pub const COUNTER_PAYLOAD_CHUNKS: u32 = 4;
/// Payload chunks lost to a full ring buffer.
pub const COUNTER_PAYLOAD_LOST: u32 = 5;
/// Not a counter: bytes waiting in the ring buffer when this CPU last wrote an event (the
/// daemon reports the fill ratio from the largest).
pub const GAUGE_RINGBUF_PENDING: u32 = 6;
pub const COUNTER_COUNT: u32 = 7;

/// Default window in which repeated datagrams to one destination are folded into one event.
pub const DEFAULT_UDP_WINDOW_NS: u64 = 2_000_000_000;

/// Capacity of the UDP repeat-folding map; least recently used entries are evicted.
pub const UDP_FLOWS_CAPACITY: u32 = 16_384;

/// Size of the ring buffer the kernel programs write events to (payload chunks are ~4 KiB).
pub const EVENTS_RINGBUF_BYTES: u32 = 4 << 20;

/// Ring-buffer wake-ups. Waking the daemon for a record costs the writer an irq_work (a self-IPI:
/// measured 24-28 us per record in a VM, against 0.8-1.5 us for the whole program run without
/// it), so records are written without a wake-up and the daemon drains the ring on a tick
/// (every 10 ms while records flow, backing off to 200 ms when idle); writers force a wake-up as
/// the pending bytes cross [`WAKE_BYTES`] (the records that land within [`WAKE_WINDOW`] past it:
/// a burst must not wait for the tick), and exec events per `FilterConfig::exec_wake_gap_ms`.
pub const WAKE_BYTES: u64 = (EVENTS_RINGBUF_BYTES / 8) as u64;
/// Wider than two of the largest records, so that a growing backlog puts a record in it.
pub const WAKE_WINDOW: u64 = 16 << 10;
/// Past this backlog every record wakes the daemon (writers on several CPUs can step over the
/// window together).
pub const WAKE_ALWAYS_BYTES: u64 = (EVENTS_RINGBUF_BYTES / 2) as u64;
/// `bpf_ringbuf_output`/`submit` flags.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Bytes of payload one ring-buffer chunk carries.
pub const PAYLOAD_CHUNK: usize = 4096;
/// Chunks taken from one packet at most (a GSO packet on loopback can hold a whole flight).
pub const PAYLOAD_CHUNKS_PER_PACKET: u32 = 4;
/// Per connection, capture stops after this many payload bytes or segments.
pub const CAPTURE_MAX_BYTES: u32 = 16_384;
pub const CAPTURE_MAX_SEGMENTS: u16 = 8;
/// Capacity of the per-socket capture state map (LRU).
pub const CAPTURE_CAPACITY: u32 = 16_384;

/// Payload direction.
pub const DIR_EGRESS: u8 = 1;
pub const DIR_INGRESS: u8 = 2;

/// `ConnectEvent.flags`: emitted when a local connection's first bytes showed a proxy protocol
/// (HTTP CONNECT, SOCKS4/4a/5), rather than at connect time.
pub const FLAG_LOCAL_PROXY: u8 = 1;

/// `CaptureState.mode`: no payload wanted (the entry exists for DNS answers or byte counting).
pub const CAPTURE_NONE: u8 = 0;
/// `CaptureState.flags`: count the socket's payload bytes both ways and report them when it is
/// released (set by the daemon for connections that raised an alert).
pub const STATE_WATCH: u8 = 1;
/// `CaptureState.flags`: a reported stream whose capture is over, kept until the daemon decides
/// (watch it, or end it): while the entry exists the socket's gate stays open, so the daemon's
/// watch is seen by the packet programs (see `CAPTURE_GATE` in monitor-ebpf's maps.rs).
pub const STATE_AWAIT: u8 = 2;

/// `CaptureState.mode`: what the kernel still wants from a socket's outgoing payload.
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
/// Datagrams captured per UDP flow (connected socket, or unconnected repeat window): a QUIC
/// ClientHello with a post-quantum key share spans two Initial packets, each in a datagram of
/// its own. The kernel stops after these; the daemon examines as many.
pub const DATAGRAMS_CAPTURED: u16 = 2;

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
    /// [`FLAG_LOCAL_PROXY`] or 0.
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

/// Header of a payload chunk on the ring buffer; `PAYLOAD_CHUNK` bytes of data follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHeader {
    /// Always [`EVENT_PAYLOAD`].
    pub kind: u32,
    /// TCP sequence number of the packet's first payload byte (0 for UDP).
    pub seq: u32,
    pub ts_boot_ns: u64,
    /// Cookie of the socket that sent (egress) or receives (ingress) the packet.
    pub cookie: u64,
    /// Valid bytes in this chunk's data.
    pub len: u32,
    /// Offset of this chunk within the packet's payload.
    pub offset: u32,
    /// Payload bytes in the whole packet.
    pub packet_len: u32,
    /// Ingress DNS answers: the tgid that sent the query on this socket (0 when unknown).
    pub owner_tgid: u32,
    /// Ports in host byte order.
    pub sport: u16,
    pub dport: u16,
    /// [`DIR_EGRESS`] or [`DIR_INGRESS`].
    pub direction: u8,
    pub protocol: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`] (IPv4-mapped addresses are not folded here).
    pub family: u8,
    /// The capture mode the chunk was taken in (`CAPTURE_*`).
    pub mode: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// A payload chunk as written to the ring buffer.
#[repr(C)]
pub struct PayloadEvent {
    pub header: PayloadHeader,
    pub data: [u8; PAYLOAD_CHUNK],
}

/// A process ended (tracepoint sched/sched_process_exit of its main thread). Small on purpose:
/// process churn (a `make -j`) must not take the ring space connect records need.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    /// Always [`EVENT_EXIT`].
    pub kind: u32,
    pub tgid: u32,
    pub ts_boot_ns: u64,
}

/// A process image started (tracepoint sched/sched_process_exec).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    /// Always [`EVENT_EXEC`].
    pub kind: u32,
    pub tgid: u32,
    pub ts_boot_ns: u64,
    pub comm: [u8; 16],
    /// The path given to execve, NUL-terminated.
    pub filename: [u8; EXEC_FILENAME_LEN],
    /// tgid of the parent (`task->real_parent->tgid`); 0 when unknown (no kernel layout).
    pub ppid: u32,
    /// Bytes of `args` read (0 when unknown or unreadable).
    pub args_len: u32,
    /// Length of the whole argument block (`mm->arg_end - arg_start`): more than `args_len`
    /// means the command line was cut.
    pub args_total: u64,
    /// The argument block as the new image sees it at exec: argv, each NUL-terminated.
    pub args: [u8; EXEC_ARGS_LEN],
}

/// Field offsets the exec program needs, from the running kernel's BTF (written by the daemon
/// into `TASK_LAYOUT` before attaching). `known == 0`: no layout, parent and args are left out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TaskLayout {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub known: u32,
}

/// A watched socket was released: its payload byte counts (tracepoint-free flow volume).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEndEvent {
    /// Always [`EVENT_FLOW_END`].
    pub kind: u32,
    pub _pad: u32,
    pub cookie: u64,
    /// Payload bytes sent and received since the daemon started watching.
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub watch_start_ns: u64,
    pub end_ns: u64,
}

/// Value of the `CAPTURE` map, keyed by socket cookie: everything the kernel keeps per socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureState {
    /// The connect event. For [`CAPTURE_LOCAL_PROBE`] it has not been reported yet and is
    /// emitted (with [`FLAG_LOCAL_PROXY`]) if the first bytes show a proxy protocol.
    pub event: ConnectEvent,
    /// Payload bytes captured so far.
    pub captured: u32,
    /// TLS: bytes of the first record (header included) the capture waits for.
    pub need: u32,
    /// Payload-bearing packets seen so far.
    pub segments: u16,
    /// `CAPTURE_*`.
    pub mode: u8,
    /// `STATE_WATCH` or 0.
    pub flags: u8,
    /// The tgid that sent to port 53 on this socket (0: not a DNS socket): answers arriving on
    /// it are read on ingress.
    pub dns_owner: u32,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub watch_start_ns: u64,
    /// DNS over TCP: answer segments copied so far (bounded: a zone transfer or a hostile server
    /// must not flood the ring buffer).
    pub dns_tcp_segments: u16,
    pub _pad: [u8; 6],
}

/// DNS over TCP: answer segments copied per socket at most.
pub const DNS_TCP_SEGMENTS_MAX: u16 = 8;

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

/// Settings the daemon writes into the `CONFIG` array (index 0) before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// Non-zero: report loopback, unspecified and link-local destinations too.
    pub include_loopback: u32,
    /// Nanoseconds between exec events that wake the daemon (0: exec events never wake it and
    /// wait for the drain tick like the rest). The daemon reads a new program's environment for
    /// relay discovery while it runs; more than one wake-up per gap is not needed for that (a
    /// burst of execs keeps the daemon on its busy tick) and each costs the exec'ing process an
    /// irq_work.
    pub exec_wake_gap_ms: u32,
    /// Window for folding repeated unconnected datagrams, nanoseconds.
    pub udp_window_ns: u64,
}

impl FilterConfig {
    pub const DEFAULT: FilterConfig = FilterConfig {
        include_loopback: 0,
        exec_wake_gap_ms: 0,
        udp_window_ns: DEFAULT_UDP_WINDOW_NS,
    };
}

/// Key of the `UDP_FLOWS` map: one process sending to one destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    pub tgid: u32,
    pub dport: u16,
    pub family: u8,
    pub protocol: u8,
    pub daddr: [u8; 16],
}

/// Value of the `UDP_FLOWS` map. The current window and the one before it are both kept, so
/// the daemon can read the final count of a window even after the next one has started.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UdpFlowWindow {
    /// `ts_boot_ns` of the event that opened the current window.
    pub cur_start: u64,
    /// Datagrams sent in the current window (including the first).
    pub cur_count: u64,
    pub prev_start: u64,
    pub prev_count: u64,
}

impl UdpFlowWindow {
    /// Final or running count of the window opened at `start`, if this entry still knows it.
    pub fn count_for(&self, start: u64) -> Option<u64> {
        if self.cur_start == start {
            Some(self.cur_count)
        } else if self.prev_start == start {
            Some(self.prev_count)
        } else {
            None
        }
    }
}

/// A destination as the hooks see it, normalised: IPv4-mapped IPv6 becomes IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    pub family: u8,
    /// Network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl Destination {
    /// From `bpf_sock_addr.user_ip4`: the u32 as it sits in memory (network byte order).
    #[inline(always)]
    pub fn from_ipv4_raw(raw: u32) -> Self {
        let b = raw.to_ne_bytes();
        let mut addr = [0u8; 16];
        addr[0] = b[0];
        addr[1] = b[1];
        addr[2] = b[2];
        addr[3] = b[3];
        Destination {
            family: FAMILY_IPV4,
            addr,
        }
    }

    /// From `bpf_sock_addr.user_ip6`: four u32 words as they sit in memory. `::ffff:a.b.c.d`
    /// is reported as the IPv4 address a.b.c.d.
    #[inline(always)]
    pub fn from_ipv6_raw(words: [u32; 4]) -> Self {
        let w0 = words[0].to_ne_bytes();
        let w1 = words[1].to_ne_bytes();
        let w2 = words[2].to_ne_bytes();
        let w3 = words[3].to_ne_bytes();
        if words[0] == 0 && words[1] == 0 && w2 == [0, 0, 0xff, 0xff] {
            return Destination::from_ipv4_raw(words[3]);
        }
        let addr = [
            w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3],
            w3[0], w3[1], w3[2], w3[3],
        ];
        Destination {
            family: FAMILY_IPV6,
            addr,
        }
    }

    /// Loopback, unspecified or link-local: not egress from this host.
    #[inline(always)]
    pub fn is_local(&self) -> bool {
        let a = &self.addr;
        if self.family == FAMILY_IPV4 {
            // 127.0.0.0/8, 0.0.0.0/8 (unspecified / "this network"), 169.254.0.0/16
            return a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254);
        }
        let mut head_zero = true;
        let mut i = 0;
        while i < 15 {
            if a[i] != 0 {
                head_zero = false;
            }
            i += 1;
        }
        // ::, ::1
        if head_zero && (a[15] == 0 || a[15] == 1) {
            return true;
        }
        // fe80::/10
        a[0] == 0xfe && (a[1] & 0xc0) == 0x80
    }
}

/// Whether the first bytes of a connection's first payload start a proxy request: an HTTP
/// `CONNECT `, a SOCKS5 greeting (`05 n m1..mn`, exactly 2 + n bytes long) or a SOCKS4/4a
/// CONNECT (`04 01 port ip ...`). `first` holds the first (up to) 8 bytes, `len` the payload
/// length. Cheap enough for the kernel; userspace parses the request fully.
#[inline(always)]
pub fn looks_like_proxy_start(first: &[u8; 8], len: u32) -> bool {
    if len >= 8 && first == b"CONNECT " {
        return true;
    }
    if first[0] == 5 && first[1] >= 1 && first[1] <= 9 && len == 2 + first[1] as u32 {
        return true;
    }
    first[0] == 4 && first[1] == 1 && len >= 9
}

/// If the payload starts a TLS handshake record (`16 03 0x len len`), the bytes of that record
/// including its 5-byte header.
#[inline(always)]
pub fn tls_record_need(first: &[u8; 8], len: u32) -> Option<u32> {
    if len >= 5 && first[0] == 0x16 && first[1] == 3 && first[2] <= 4 {
        let body = ((first[3] as u32) << 8) | first[4] as u32;
        return Some(5 + body);
    }
    None
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are #[repr(C)], contain only integers and byte arrays, and have
    // explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::ConnectEvent {}
    unsafe impl aya::Pod for super::FilterConfig {}
    unsafe impl aya::Pod for super::UdpFlowKey {}
    unsafe impl aya::Pod for super::UdpFlowWindow {}
    unsafe impl aya::Pod for super::PayloadHeader {}
    unsafe impl aya::Pod for super::CaptureState {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::FlowEndEvent {}
    unsafe impl aya::Pod for super::TaskLayout {}
    unsafe impl aya::Pod for super::ExitEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> Destination {
        Destination::from_ipv4_raw(u32::from_ne_bytes(a))
    }

    fn v6(bytes: [u8; 16]) -> Destination {
        let mut words = [0u32; 4];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u32::from_ne_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ]);
        }
        Destination::from_ipv6_raw(words)
    }

    #[test]
    fn event_layout_is_stable() {
        assert_eq!(core::mem::size_of::<ConnectEvent>(), 88);
        assert_eq!(core::mem::size_of::<ConnectEvent>() % 8, 0);
        assert_eq!(core::mem::size_of::<FilterConfig>(), 16);
        assert_eq!(core::mem::size_of::<UdpFlowKey>(), 24);
        assert_eq!(core::mem::size_of::<UdpFlowWindow>(), 32);
        assert_eq!(core::mem::size_of::<PayloadHeader>(), 80);
        assert_eq!(core::mem::size_of::<PayloadEvent>(), 80 + PAYLOAD_CHUNK);
        assert_eq!(core::mem::size_of::<CaptureState>(), 136);
        assert_eq!(core::mem::size_of::<FlowEndEvent>(), 48);
        assert_eq!(
            core::mem::size_of::<ProcessEvent>(),
            32 + EXEC_FILENAME_LEN + 16 + EXEC_ARGS_LEN
        );
        assert_eq!(core::mem::size_of::<TaskLayout>(), 24);
        assert_eq!(core::mem::size_of::<ExitEvent>(), 16);
    }

    #[test]
    fn ipv4_bytes_keep_network_order() {
        let d = v4([93, 184, 216, 34]);
        assert_eq!(d.family, FAMILY_IPV4);
        assert_eq!(&d.addr[..4], &[93, 184, 216, 34]);
        assert_eq!(&d.addr[4..], &[0u8; 12]);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_reported_as_ipv4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[203, 0, 113, 7]);
        let d = v6(b);
        assert_eq!(d.family, FAMILY_IPV4);
        assert_eq!(&d.addr[..4], &[203, 0, 113, 7]);
        assert!(!d.is_local());

        b[12] = 127;
        assert!(v6(b).is_local(), "::ffff:127.x is loopback");
    }

    #[test]
    fn ipv4_compatible_is_not_mapped() {
        // ::1.2.3.4 (deprecated IPv4-compatible) is not ::ffff:1.2.3.4 and stays IPv6.
        let mut b = [0u8; 16];
        b[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(v6(b).family, FAMILY_IPV6);
    }

    #[test]
    fn local_destinations() {
        assert!(v4([127, 0, 0, 1]).is_local());
        assert!(v4([127, 0, 0, 53]).is_local());
        assert!(v4([0, 0, 0, 0]).is_local());
        assert!(v4([169, 254, 169, 254]).is_local());
        assert!(!v4([10, 0, 0, 1]).is_local());
        assert!(!v4([128, 0, 0, 1]).is_local());
        assert!(!v4([169, 253, 0, 1]).is_local());

        let mut lo = [0u8; 16];
        lo[15] = 1;
        assert!(v6(lo).is_local());
        assert!(v6([0u8; 16]).is_local());
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        ll[15] = 9;
        assert!(v6(ll).is_local());
        let mut global = [0u8; 16];
        global[0] = 0x20;
        global[1] = 0x01;
        global[2] = 0x0d;
        global[3] = 0xb8;
        global[15] = 1;
        assert!(!v6(global).is_local());
        let mut two = [0u8; 16];
        two[15] = 2;
        assert!(!v6(two).is_local(), "::2 is not loopback");
    }

    #[test]
    fn udp_window_counts_current_and_previous() {
        let w = UdpFlowWindow {
            cur_start: 20,
            cur_count: 3,
            prev_start: 10,
            prev_count: 10_000,
        };
        assert_eq!(w.count_for(20), Some(3));
        assert_eq!(w.count_for(10), Some(10_000));
        assert_eq!(w.count_for(5), None);
    }

    #[test]
    fn proxy_starts() {
        assert!(looks_like_proxy_start(b"CONNECT ", 40));
        assert!(!looks_like_proxy_start(b"CONNECT ", 7));
        assert!(!looks_like_proxy_start(b"GET / HT", 40));
        // SOCKS5 greeting: one method (no auth), two methods.
        assert!(looks_like_proxy_start(&[5, 1, 0, 0, 0, 0, 0, 0], 3));
        assert!(looks_like_proxy_start(&[5, 2, 0, 2, 0, 0, 0, 0], 4));
        assert!(
            !looks_like_proxy_start(&[5, 1, 0, 0, 0, 0, 0, 0], 40),
            "greeting has its exact length"
        );
        assert!(!looks_like_proxy_start(&[5, 0, 0, 0, 0, 0, 0, 0], 2));
        // SOCKS4 CONNECT to port 443, 1.2.3.4, empty user id.
        assert!(looks_like_proxy_start(&[4, 1, 1, 187, 1, 2, 3, 4], 9));
        assert!(
            !looks_like_proxy_start(&[4, 2, 1, 187, 1, 2, 3, 4], 9),
            "BIND is not CONNECT"
        );
        assert!(!looks_like_proxy_start(&[0x16, 3, 1, 2, 0, 1, 0, 1], 517));
    }

    #[test]
    fn tls_record_lengths() {
        assert_eq!(
            tls_record_need(&[0x16, 3, 1, 0x06, 0x00, 1, 0, 0], 1200),
            Some(5 + 0x600)
        );
        assert_eq!(
            tls_record_need(&[0x16, 3, 3, 0x00, 0x50, 1, 0, 0], 85),
            Some(85)
        );
        assert_eq!(
            tls_record_need(&[0x17, 3, 3, 0x00, 0x50, 0, 0, 0], 85),
            None,
            "application data"
        );
        assert_eq!(
            tls_record_need(&[0x16, 3, 1, 0, 0, 0, 0, 0], 4),
            None,
            "too short to hold a header"
        );
        assert_eq!(tls_record_need(b"GET / HT", 100), None);
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut e = ConnectEvent::zeroed();
        e.comm[..4].copy_from_slice(b"curl");
        assert_eq!(e.comm_str(), Some("curl"));
        e.comm = [b'x'; 16];
        assert_eq!(e.comm_str(), Some("xxxxxxxxxxxxxxxx"));
    }
}
