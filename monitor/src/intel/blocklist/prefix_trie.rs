//! Address rules: binary prefix tries per address family, with a jump table over the first
//! 16 bits and path compression below it.
//!
//! Data model: a `Trie`'s `nodes[0]` is the root (the empty prefix). A node's `child[b]` is the
//! index of the node one bit longer whose next address bit is `b` (0 = none: the root is never a
//! child). A node carries `value` when some rule's prefix ends exactly there. A walk from the root
//! along the address bits passes every prefix that covers the address; the last one is the
//! longest.
//!
//! Each walk step is a dependent memory load, and with 100,000 prefixes the top 16 levels alone
//! are 16 of them. So prefixes of 16 bits or more live in `long`, and `jump[first 16 bits]` is
//! the subtree at depth 16 on that path (0: no such prefix): a lookup starts there. Shorter
//! prefixes are few in real lists and live in the small `short` trie, which stays in cache.
//!
//! Below depth 16, real lists are sparse: a /24 under a /16 bucket of its own is a chain of 8
//! single-child nodes, an IPv6 /48 a chain of 32. `freeze` therefore rebuilds the subtrees below
//! the jump table path-compressed (`Packed`): a node is kept only where a prefix ends or the
//! paths branch, and it carries its whole prefix, which the lookup compares in one step. A lookup
//! in 100,000 random prefixes then touches the jump table and one or two nodes instead of up to
//! 16 (IPv4) or 48 (IPv6). Packed nodes are laid out depth-first (a node's 0-child follows it).
use std::net::IpAddr;

const NONE: u32 = u32::MAX;
const JUMP_BITS: u32 = 16;

#[derive(Clone, Copy)]
struct Node {
    child: [u32; 2],
    value: u32,
}

struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node {
                child: [0, 0],
                value: NONE,
            }],
        }
    }
}

impl Trie {
    fn insert(&mut self, bits: u128, len: u8, value: u32) -> Option<u32> {
        let mut at = 0usize;
        for depth in 0..u32::from(len) {
            let b = bit(bits, depth);
            let next = self.nodes[at].child[b];
            at = if next == 0 {
                let fresh = u32::try_from(self.nodes.len()).unwrap_or(NONE);
                self.nodes.push(Node {
                    child: [0, 0],
                    value: NONE,
                });
                self.nodes[at].child[b] = fresh;
                fresh as usize
            } else {
                next as usize
            };
        }
        let old = std::mem::replace(&mut self.nodes[at].value, value);
        (old != NONE).then_some(old)
    }

    /// Walks from node `at` (at `depth`) down to depth `last`, calling `found(depth, value)`.
    fn walk(
        &self,
        mut at: usize,
        mut depth: u32,
        bits: u128,
        last: u32,
        found: &mut impl FnMut(u8, u32),
    ) {
        loop {
            let node = self.nodes[at];
            if node.value != NONE {
                found(depth as u8, node.value);
            }
            if depth == last {
                return;
            }
            let next = node.child[bit(bits, depth)];
            if next == 0 {
                return;
            }
            at = next as usize;
            depth += 1;
        }
    }

    fn layout_depth_first(&mut self) {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut new_index = vec![0u32; self.nodes.len()];
        let mut stack = vec![0u32];
        while let Some(at) = stack.pop() {
            new_index[at as usize] = order.len() as u32;
            order.push(at);
            let [zero, one] = self.nodes[at as usize].child;
            // Pushed second, visited first: a 0-child directly follows its parent.
            for child in [one, zero] {
                if child != 0 {
                    stack.push(child);
                }
            }
        }
        let renumber = |c: u32| if c == 0 { 0 } else { new_index[c as usize] };
        self.nodes = order
            .iter()
            .map(|&old| {
                let node = self.nodes[old as usize];
                Node {
                    child: [renumber(node.child[0]), renumber(node.child[1])],
                    value: node.value,
                }
            })
            .collect();
    }

    /// The node at depth `JUMP_BITS` for every `JUMP_BITS`-bit path (0 where there is none).
    fn jump_table(&self) -> Vec<u32> {
        let mut jump = vec![0u32; 1 << JUMP_BITS];
        let mut stack = vec![(0u32, 0u32, 0usize)]; // (node, depth, path bits so far)
        while let Some((at, depth, path)) = stack.pop() {
            if depth == JUMP_BITS {
                jump[path] = at;
                continue;
            }
            for b in 0..2 {
                let child = self.nodes[at as usize].child[b];
                if child != 0 {
                    stack.push((child, depth + 1, (path << 1) | b));
                }
            }
        }
        jump
    }
}

/// A path-compressed node: the whole prefix it stands for, its value, its children.
#[derive(Clone, Copy)]
struct Packed {
    /// The prefix's bits, left-aligned (bits past `len` are zero).
    prefix: u128,
    value: u32,
    /// Indices into `PrefixTrie::packed` (0 = none: index 0 is never a child).
    child: [u32; 2],
    len: u8,
}

/// Compress the subtree of `trie` under `at` (at `depth`, reached along `path`) into `out`;
/// returns its root's index. Single-child nodes without a value are skipped.
fn pack(trie: &Trie, mut at: usize, mut depth: u32, mut path: u128, out: &mut Vec<Packed>) -> u32 {
    let node = loop {
        let node = trie.nodes[at];
        let only = match node.child {
            [c, 0] if c != 0 => 0,
            [0, c] if c != 0 => 1,
            _ => break node,
        };
        if node.value != NONE {
            break node;
        }
        path |= (only as u128) << (127 - depth);
        at = node.child[only] as usize;
        depth += 1;
    };
    let index = out.len();
    out.push(Packed {
        prefix: path,
        value: node.value,
        child: [0, 0],
        len: depth as u8,
    });
    for b in 0..2 {
        if node.child[b] != 0 {
            let child = pack(
                trie,
                node.child[b] as usize,
                depth + 1,
                path | ((b as u128) << (127 - depth)),
                out,
            );
            out[index].child[b] = child;
        }
    }
    index as u32
}

/// Maps prefixes of one address width (32 or 128 bits, left-aligned in a u128) to a `u32`.
#[derive(Default)]
pub struct PrefixTrie {
    short: Trie,
    long: Trie,
    /// Empty until `freeze`; lookups then walk `long` from its root. Afterwards: the `packed`
    /// subtree root for each first 16 bits (0: none).
    jump: Vec<u32>,
    /// The compressed subtrees below depth 16 (index 0 unused), built by `freeze`.
    packed: Vec<Packed>,
}

impl PrefixTrie {
    /// Stores `value` at `bits/len` and returns the value that was there before, if any.
    pub fn insert(&mut self, bits: u128, len: u8, value: u32) -> Option<u32> {
        self.jump.clear();
        self.packed.clear();
        if u32::from(len) < JUMP_BITS {
            self.short.insert(bits, len, value)
        } else {
            self.long.insert(bits, len, value)
        }
    }

    /// Every value whose prefix covers `bits` (an address `width` bits wide), longest prefix first.
    #[cfg(test)]
    pub fn covering(&self, bits: u128, width: u8, out: &mut Vec<(u8, u32)>) {
        let start = out.len();
        self.for_each_covering(bits, width, |len, value| out.push((len, value)));
        out[start..].reverse();
    }

    /// Calls `found(prefix length, value)` for every prefix that covers `bits` (an address
    /// `width` bits wide), shortest first; nothing is allocated.
    pub fn for_each_covering(&self, bits: u128, width: u8, mut found: impl FnMut(u8, u32)) {
        let width = u32::from(width);
        // Both walks go in ascending depth, and every `short` prefix is shorter than every
        // `long` one.
        self.short
            .walk(0, 0, bits, width.min(JUMP_BITS - 1), &mut found);
        match self.jump.get((bits >> (128 - JUMP_BITS)) as usize) {
            Some(&0) => {}
            Some(&at) => self.walk_packed(at, bits, width, &mut found),
            None => self.long.walk(0, 0, bits, width, &mut found),
        }
    }

    /// Walks the packed subtree from `at` in ascending depth, calling `found(depth, value)`.
    fn walk_packed(&self, mut at: u32, bits: u128, width: u32, found: &mut impl FnMut(u8, u32)) {
        loop {
            let node = &self.packed[at as usize];
            let len = u32::from(node.len);
            // Packed nodes are at depth >= JUMP_BITS > 0, so the shift is below 128.
            if len > width || (bits ^ node.prefix) >> (128 - len) != 0 {
                return;
            }
            if node.value != NONE {
                found(node.len, node.value);
            }
            if len == width {
                return;
            }
            match node.child[bit(bits, len)] {
                0 => return,
                next => at = next,
            }
        }
    }

    /// Call once all prefixes are in: lays `short` out depth-first and compresses what lies
    /// below the jump table. Inserting afterwards undoes it (lookups walk `long` again).
    pub fn freeze(&mut self) {
        self.short.layout_depth_first();
        let roots = self.long.jump_table();
        let mut packed = vec![Packed {
            prefix: 0,
            value: NONE,
            child: [0, 0],
            len: 0,
        }];
        let mut jump = vec![0u32; roots.len()];
        for (path, &at) in roots.iter().enumerate() {
            if at != 0 {
                jump[path] = pack(
                    &self.long,
                    at as usize,
                    JUMP_BITS,
                    (path as u128) << (128 - JUMP_BITS),
                    &mut packed,
                );
            }
        }
        packed.shrink_to_fit();
        self.packed = packed;
        self.jump = jump;
    }

    pub fn heap_bytes(&self) -> usize {
        (self.short.nodes.capacity() + self.long.nodes.capacity()) * std::mem::size_of::<Node>()
            + self.packed.capacity() * std::mem::size_of::<Packed>()
            + self.jump.capacity() * 4
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
        t.freeze();
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

    /// A xorshift64 generator: reproducible pseudo-random test input.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The bits below a prefix of `len` bits.
    fn host_mask(len: u8) -> u128 {
        u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }

    /// A trie and, beside it, the prefixes it holds, as the reference for a linear scan.
    #[derive(Default)]
    struct Tracked {
        trie: PrefixTrie,
        prefixes: Vec<(u128, u8, u32)>,
    }

    impl Tracked {
        /// Insert `bits` cut to `len` bits; a repeated prefix takes the new value.
        fn insert(&mut self, bits: u128, len: u8, value: u32) {
            let bits = bits & !host_mask(len);
            if self.trie.insert(bits, len, value).is_some() {
                self.prefixes.retain(|p| (p.0, p.1) != (bits, len));
            }
            self.prefixes.push((bits, len, value));
        }

        /// The trie's answer for `addr` equals a linear scan's, longest prefix first.
        fn check(&self, addr: u128, width: u8) {
            let mut want: Vec<(u8, u32)> = self
                .prefixes
                .iter()
                .filter(|(bits, len, _)| *len == 0 || (addr ^ bits) >> (128 - u32::from(*len)) == 0)
                .map(|&(_, len, v)| (len, v))
                .collect();
            want.sort_by_key(|w| std::cmp::Reverse(w.0));
            let mut got = Vec::new();
            self.trie.covering(addr, width, &mut got);
            assert_eq!(got, want, "{addr:x}");
        }
    }

    #[test]
    fn frozen_lookups_agree_with_a_linear_scan() {
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut t = Tracked::default();
        for i in 0..3000u32 {
            let len = (rand() % 33) as u8;
            // Few distinct top bits, so that prefixes nest and share paths.
            t.insert(u128::from(rand() as u32 & 0xc0ff_ffff) << 96, len, i);
        }
        t.trie.freeze();
        for _ in 0..3000 {
            t.check(u128::from(rand() as u32 & 0xc0ff_ffff) << 96, 32);
        }
    }

    #[test]
    fn sparse_v6_lookups_agree_with_a_linear_scan() {
        let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
        let mut t = Tracked::default();
        for i in 0..2000u32 {
            let len = 16 + (rand() % 113) as u8;
            // Few distinct top 20 bits: long single-child chains, some nesting and branching.
            let raw =
                (u128::from(rand() & 0xf) << 108) | (u128::from(rand()) << 44) | u128::from(rand());
            t.insert(raw | (0x2001u128 << 112), len, i);
        }
        t.trie.freeze();
        for k in 0..4000 {
            // Half the queries inside a known prefix, half anywhere near.
            let addr = if k % 2 == 0 {
                let (bits, len, _) = t.prefixes[(rand() as usize) % t.prefixes.len()];
                bits | (((u128::from(rand()) << 64) | u128::from(rand())) & host_mask(len))
            } else {
                (0x2001u128 << 112) | (u128::from(rand() & 0xf) << 108) | (u128::from(rand()) << 44)
            };
            t.check(addr, 128);
        }
    }

    #[test]
    fn reinsert_reports_previous() {
        let mut t = PrefixTrie::default();
        assert_eq!(t.insert(bits("192.0.2.0"), 24, 7), None);
        assert_eq!(t.insert(bits("192.0.2.0"), 24, 8), Some(7));
    }
}
