//! The `EVENTS` ring buffer: its size, and when a writer wakes the daemon.
//!
//! Waking the daemon for a record costs the writer an irq_work (a self-IPI: measured 24-28 us per
//! record in a VM, against 0.8-1.5 us for the whole program run without it), so records are
//! written without a wake-up and the daemon drains the ring on a tick (every 10 ms while records
//! flow, backing off to 200 ms when idle). Writers force a wake-up as the pending bytes cross
//! [`WAKE_BYTES`] (the records that land within [`WAKE_WINDOW`] past it: a burst must not wait for
//! the tick), for every record past [`WAKE_ALWAYS_BYTES`], and for exec events at most once per
//! `FilterConfig::exec_wake_gap_ms`.

/// Size of the ring buffer the kernel programs write every record to: 4 MiB (a payload chunk
/// takes a little over 4 KiB of it, a connect record 88 bytes).
pub const EVENTS_RINGBUF_BYTES: u32 = 4 << 20;

/// Pending bytes (an eighth of the ring, 512 KiB) past which a writer wakes the daemon.
pub const WAKE_BYTES: u64 = (EVENTS_RINGBUF_BYTES / 8) as u64;
/// Bytes past [`WAKE_BYTES`] in which records still wake the daemon (16 KiB): wider than two of
/// the largest records, so that a growing backlog puts a record in it.
pub const WAKE_WINDOW: u64 = 16 << 10;
/// Past this backlog (half the ring, 2 MiB) every record wakes the daemon (writers on several
/// CPUs can step over the window together).
pub const WAKE_ALWAYS_BYTES: u64 = (EVENTS_RINGBUF_BYTES / 2) as u64;

/// `bpf_ringbuf_output`/`submit`/`discard` flags.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
