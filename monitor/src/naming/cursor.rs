//! A bounds-checked reader over a byte slice, shared by the binary parsers (TLS, DNS, QUIC,
//! SOCKS). Every read either returns the bytes or the error the cursor was made with, so a
//! parser says once what running out of bytes means for it: `Invalid` inside a structure whose
//! length is already known to be present, `Incomplete` at the edge of a stream.
use super::ParseError;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    short: ParseError,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], short: ParseError) -> Self {
        Cursor { buf, pos: 0, short }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(self.short)?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let bytes = self.take(N)?;
        // `take` returned exactly N bytes.
        bytes.try_into().map_err(|_| self.short)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A vector with a one-byte length prefix.
    pub(crate) fn u8_prefixed(&mut self) -> Result<&'a [u8], ParseError> {
        self.atomic(|c| {
            let len = c.u8()?;
            c.take(usize::from(len))
        })
    }

    /// A vector with a two-byte length prefix.
    pub(crate) fn u16_prefixed(&mut self) -> Result<&'a [u8], ParseError> {
        self.atomic(|c| {
            let len = c.u16()?;
            c.take(usize::from(len))
        })
    }

    /// A QUIC variable-length integer (RFC 9000 section 16).
    pub(crate) fn varint(&mut self) -> Result<u64, ParseError> {
        self.atomic(|c| {
            let first = c.u8()?;
            let extra = (1usize << (first >> 6)) - 1;
            let mut value = u64::from(first & 0x3f);
            for byte in c.take(extra)? {
                value = (value << 8) | u64::from(*byte);
            }
            Ok(value)
        })
    }

    /// Runs a read of several parts; if any part fails, nothing is consumed.
    fn atomic<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        let start = self.pos;
        let result = read(self);
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    /// The bytes not read yet, without consuming them.
    pub(crate) fn peek_rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// Big-endian u16 values from a byte string of even length.
pub(crate) fn u16_list(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: ParseError = ParseError::Invalid("short");

    #[test]
    fn reads_and_runs_out() {
        let mut c = Cursor::new(&[1, 0, 2, 0, 0, 3, 9], SHORT);
        assert_eq!(c.u8(), Ok(1));
        assert_eq!(c.u16(), Ok(2));
        assert_eq!(c.array::<3>(), Ok([0, 0, 3]));
        assert_eq!(c.remaining(), 1);
        assert_eq!(c.u16(), Err(SHORT));
        assert_eq!(c.pos(), 6, "a failed read consumes nothing");
        assert_eq!(c.take(usize::MAX), Err(SHORT));
        assert_eq!(c.peek_rest(), &[9]);
        assert_eq!(c.u8_prefixed(), Err(SHORT));
        assert_eq!(c.take(1), Ok(&[9][..]));
        assert!(c.is_empty());
    }

    #[test]
    fn varints_of_each_width() {
        // The four examples of RFC 9000 appendix A.1.
        let bytes = [
            0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c, 0x9d, 0x7f, 0x3e, 0x7d, 0x7b, 0xbd,
            0x25,
        ];
        let mut c = Cursor::new(&bytes, SHORT);
        assert_eq!(c.varint(), Ok(151_288_809_941_952_652));
        assert_eq!(c.varint(), Ok(494_878_333));
        assert_eq!(c.varint(), Ok(15_293));
        assert_eq!(c.varint(), Ok(37));
        assert_eq!(Cursor::new(&[0x40], SHORT).varint(), Err(SHORT));
    }
}
