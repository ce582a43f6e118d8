//! Indices into the per-CPU `COUNTERS` array (`COUNTER_COUNT` u64s per CPU). Counters only grow
//! and the daemon sums them over the CPUs; the gauge is a level and the daemon takes the largest.

/// Records (connect, exec, exit, flow end) lost to a full ring buffer; payload chunks are
/// counted apart, in [`COUNTER_PAYLOAD_LOST`].
pub const COUNTER_RINGBUF_LOST: u32 = 0;
/// Connect records written.
pub const COUNTER_EVENTS: u32 = 1;
/// Unconnected datagrams folded into an open repeat window (no record written).
pub const COUNTER_UDP_FOLDED: u32 = 2;
/// Local destinations (loopback, unspecified, link-local) skipped without `--include-loopback`.
pub const COUNTER_LOCAL_SKIPPED: u32 = 3;
/// Payload chunks written (egress captures and DNS answers).
pub const COUNTER_PAYLOAD_CHUNKS: u32 = 4;
/// Payload chunks lost to a full ring buffer.
pub const COUNTER_PAYLOAD_LOST: u32 = 5;
/// Not a counter: bytes waiting in the ring buffer when this CPU last wrote a connect record
/// (the daemon reports the fill ratio from the largest).
pub const GAUGE_RINGBUF_PENDING: u32 = 6;
/// TLS plaintext records written (uprobes, see `crate::tls`).
pub const COUNTER_TLS_RECORDS: u32 = 7;
/// TLS plaintext records lost to a full ring buffer or an unreadable user buffer.
pub const COUNTER_TLS_LOST: u32 = 8;
/// Entries of the array.
pub const COUNTER_COUNT: u32 = 9;
