//! Address rules: a binary prefix trie per address family.
//!
//! Data model: `nodes[0]` is the root (the empty prefix). A node's `child[b]` is the index of the
//! node one bit longer whose next address bit is `b` (0 = none: the root is never a child). A node
//! carries `value` when some rule's prefix ends exactly there. A lookup walks from the root along
//! the address bits and collects every value it passes, so all covering prefixes are found, and
//! the last one collected is the longest. The walk is at most 32 (IPv4) or 128 (IPv6) steps.
//! Nodes are 12 bytes and live in one vector, so there are no per-node allocations.
use std::net::IpAddr;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    child: [u32; 2],
    value: u32,
}

/// Maps prefixes of one address width (32 or 128 bits, left-aligned in a u128) to a `u32`.
pub struct PrefixTrie {
    nodes: Vec<Node>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie { nodes: vec![Node { child: [0, 0], value: NONE }] }
    }
}

impl PrefixTrie {
    /// Stores `value` at `bits/len` and returns the value that was there before, if any.
    pub fn insert(&mut self, bits: u128, len: u8, value: u32) -> Option<u32> {
        let mut at = 0usize;
        for depth in 0..u32::from(len) {
            let b = bit(bits, depth);
            let next = self.nodes[at].child[b];
            at = if next == 0 {
                let fresh = u32::try_from(self.nodes.len()).unwrap_or(NONE);
                self.nodes.push(Node { child: [0, 0], value: NONE });
                self.nodes[at].child[b] = fresh;
                fresh as usize
            } else {
                next as usize
            };
        }
        let old = std::mem::replace(&mut self.nodes[at].value, value);
        (old != NONE).then_some(old)
    }

    /// Every value whose prefix covers `bits` (an address `width` bits wide), longest prefix first.
    pub fn covering(&self, bits: u128, width: u8, out: &mut Vec<(u8, u32)>) {
        let start = out.len();
        let mut at = 0usize;
        for depth in 0..=u32::from(width) {
            let node = self.nodes[at];
            if node.value != NONE {
                out.push((depth as u8, node.value));
            }
            if depth == u32::from(width) {
                break;
            }
            let next = node.child[bit(bits, depth)];
            if next == 0 {
                break;
            }
            at = next as usize;
        }
        out[start..].reverse();
    }

    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
    }
}

fn bit(bits: u128, depth: u32) -> usize {
    ((bits >> (127 - depth)) & 1) as usize
}

/// An address left-aligned in a u128, with its width in bits.
pub fn address_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => ((u128::from(u32::from(v4))) << 96, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> u128 {
        address_bits(s.parse().unwrap()).0
    }

    #[test]
    fn longest_prefix_first_v4() {
        let mut t = PrefixTrie::default();
        t.insert(bits("10.0.0.0"), 8, 1);
        t.insert(bits("10.1.0.0"), 16, 2);
        t.insert(bits("10.1.2.3"), 32, 3);
        t.insert(0, 0, 4);
        let mut out = Vec::new();
        t.covering(bits("10.1.2.3"), 32, &mut out);
        assert_eq!(out, [(32, 3), (16, 2), (8, 1), (0, 4)]);
        out.clear();
        t.covering(bits("10.2.0.1"), 32, &mut out);
        assert_eq!(out, [(8, 1), (0, 4)]);
    }

    #[test]
    fn longest_prefix_first_v6() {
        let mut t = PrefixTrie::default();
        t.insert(bits("2001:db8::"), 32, 1);
        t.insert(bits("2001:db8:1::"), 48, 2);
        let mut out = Vec::new();
        t.covering(bits("2001:db8:1::5"), 128, &mut out);
        assert_eq!(out, [(48, 2), (32, 1)]);
        out.clear();
        t.covering(bits("2001:db9::1"), 128, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn reinsert_reports_previous() {
        let mut t = PrefixTrie::default();
        assert_eq!(t.insert(bits("192.0.2.0"), 24, 7), None);
        assert_eq!(t.insert(bits("192.0.2.0"), 24, 8), Some(7));
    }
}
