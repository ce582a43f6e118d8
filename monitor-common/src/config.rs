//! The daemon's settings for the kernel programs: the single entry of the `CONFIG` array map,
//! written before anything is attached and read on every hook run.

use crate::udp::DEFAULT_UDP_WINDOW_NS;

/// Settings the daemon writes into the `CONFIG` array (index 0) before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// Non-zero: report loopback, unspecified and link-local destinations too
    /// (`--include-loopback`).
    pub include_loopback: u32,
    /// Milliseconds between exec events that wake the daemon (0: exec events never wake it and
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
