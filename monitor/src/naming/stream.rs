//! Reassembling the first bytes of a TCP stream from captured chunks.
//!
//! The kernel copies each payload-bearing packet (in chunks of up to 4 KiB) with the TCP
//! sequence number of its first byte. Chunks of one socket arrive in send order, except that a
//! retransmission repeats bytes already seen and a lost chunk leaves a gap. The buffer keeps
//! the contiguous prefix from the first sequence number seen, up to a fixed limit, holds a few
//! chunks that arrive beyond a gap until the gap fills, and drops anything past the limit.
use monitor_common::capture::CAPTURE_MAX_BYTES;

/// Most chunks held beyond a gap.
const MAX_PENDING: usize = 8;

#[derive(Default)]
pub struct StreamPrefix {
    base: Option<u32>,
    data: Vec<u8>,
    /// (offset from base, bytes) of chunks beyond a gap.
    pending: Vec<(usize, Vec<u8>)>,
}

impl StreamPrefix {
    pub fn limit() -> usize {
        CAPTURE_MAX_BYTES as usize
    }

    /// Add a chunk that starts at sequence number `seq`.
    pub fn insert(&mut self, seq: u32, bytes: &[u8]) {
        let base = *self.base.get_or_insert(seq);
        // Sequence numbers wrap; a chunk "before" the base (seq - base huge) is ignored.
        let offset = seq.wrapping_sub(base) as usize;
        if offset >= Self::limit() {
            return;
        }
        if offset > self.data.len() {
            if self.pending.len() < MAX_PENDING {
                self.pending.push((offset, bytes.to_vec()));
            }
            return;
        }
        self.append_at(offset, bytes);
        // Chunks held beyond the gap may now connect.
        loop {
            let len = self.data.len();
            let Some(i) = self.pending.iter().position(|(off, _)| *off <= len) else {
                break;
            };
            let (off, bytes) = self.pending.swap_remove(i);
            self.append_at(off, &bytes);
        }
    }

    fn append_at(&mut self, offset: usize, bytes: &[u8]) {
        let have = self.data.len();
        let end = (offset + bytes.len()).min(Self::limit());
        if end > have {
            self.data
                .extend_from_slice(&bytes[have - offset..end - offset]);
        }
    }

    /// The contiguous bytes from the start of the stream.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_chunks_concatenate() {
        let mut s = StreamPrefix::default();
        s.insert(100, b"hello ");
        s.insert(106, b"world");
        assert_eq!(s.bytes(), b"hello world");
    }

    #[test]
    fn retransmission_and_overlap_add_nothing_twice() {
        let mut s = StreamPrefix::default();
        s.insert(100, b"hello ");
        s.insert(100, b"hello ");
        s.insert(103, b"lo wor");
        s.insert(109, b"ld");
        assert_eq!(s.bytes(), b"hello world");
    }

    #[test]
    fn gap_is_filled_later() {
        let mut s = StreamPrefix::default();
        s.insert(0, b"ab");
        s.insert(4, b"ef");
        assert_eq!(s.bytes(), b"ab");
        s.insert(2, b"cd");
        assert_eq!(s.bytes(), b"abcdef");
    }

    #[test]
    fn sequence_wraparound() {
        let mut s = StreamPrefix::default();
        s.insert(u32::MAX - 1, b"ab");
        s.insert(0, b"cd");
        assert_eq!(s.bytes(), b"abcd");
    }

    #[test]
    fn bounded_by_limit_and_pending_count() {
        let mut s = StreamPrefix::default();
        let big = vec![7u8; StreamPrefix::limit() + 100];
        s.insert(0, &big);
        assert_eq!(s.bytes().len(), StreamPrefix::limit());
        s.insert(StreamPrefix::limit() as u32 + 5, b"beyond");
        assert_eq!(s.bytes().len(), StreamPrefix::limit());

        let mut g = StreamPrefix::default();
        g.insert(0, b"a");
        for i in 0..100u32 {
            g.insert(10 + i * 2, b"x");
        }
        assert!(g.pending.len() <= MAX_PENDING);
        // A chunk from before the first one seen is ignored.
        g.insert(u32::MAX, b"zz");
        assert_eq!(g.bytes(), b"a");
    }
}
