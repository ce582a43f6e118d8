//! Folding repeated unconnected datagrams (the `UDP_FLOWS` LRU map): per process and
//! destination, the first datagram of a window is reported and later ones inside the window are
//! only counted, so a DNS- or QUIC-heavy process does not flood the ring buffer.

/// Default window in which repeated datagrams to one destination are folded into one event:
/// 2 s, in nanoseconds (`FilterConfig::udp_window_ns`).
pub const DEFAULT_UDP_WINDOW_NS: u64 = 2_000_000_000;

/// Capacity of the UDP repeat-folding map; least recently used entries are evicted.
pub const UDP_FLOWS_CAPACITY: u32 = 16_384;

/// Key of the `UDP_FLOWS` map: one process sending to one destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    pub tgid: u32,
    /// Host byte order.
    pub dport: u16,
    /// `crate::event::FAMILY_*`.
    pub family: u8,
    /// `crate::event::PROTO_*`.
    pub protocol: u8,
    /// Network byte order; IPv4 in the first 4 bytes.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
