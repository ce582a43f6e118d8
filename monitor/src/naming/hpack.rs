//! HPACK (RFC 7541): the header compression of HTTP/2, decoded far enough to read the first
//! header block a client sends (its request) and the first one a server answers with.
//!
//! Data model: a [`Decoder`] holds one direction's dynamic table, newest entry first, as the
//! RFC numbers it (index 62 is the newest, after the 61 static entries). An entry's size is its
//! name and value lengths plus 32; inserting evicts the oldest entries until the new one fits,
//! and an entry larger than the whole table empties it (not an error). The table's maximum is
//! the peer's SETTINGS_HEADER_TABLE_SIZE, at most [`MAX_TABLE_SIZE`] (4096, the RFC 9113
//! default that an encoder must assume until its peer's SETTINGS arrive, which is the case for
//! a connection's first request); a size update above it is an error, and size updates are only
//! accepted before the first field of a block. An encoder that believed in a larger table can
//! only make an index point past our table, which is an error, never a wrong field.
//!
//! Fields are handed to a callback in order instead of being collected, so a caller keeps only
//! what it wants (request.rs keeps no credential); the only copies are the dynamic table's.
//!
//! Limits: integers of at most 4 continuation bytes (values below 2^28), strings of at most
//! [`MAX_STRING_LEN`] bytes raw or decoded, at most [`MAX_FIELDS`] fields and
//! [`MAX_DECODED_LEN`] bytes of names and values per block (an indexed field repeated many times
//! costs its size each time). Running out of bytes inside a field answers `Incomplete`: the
//! caller knows whether the block was complete (then it is malformed) or cut short by the
//! capture (then the fields already delivered stand).
//!
//! Huffman: the code of Appendix B is written below as data (code, bit length) for the 257
//! symbols. It is canonical (codes of one length are consecutive in symbol order, and each
//! length starts where the shorter ones end), so decoding walks the bits with the first code
//! and count of each length; a test checks the table against that derivation and the Kraft sum.
use std::collections::VecDeque;

use super::{ParseError, cursor::Cursor};

/// The largest dynamic table accepted (the default SETTINGS_HEADER_TABLE_SIZE).
pub const MAX_TABLE_SIZE: usize = 4096;
/// The most fields one header block may carry.
pub const MAX_FIELDS: usize = 128;
/// The most bytes of names and values one header block may decode to.
pub const MAX_DECODED_LEN: usize = 32 * 1024;
/// The longest string literal, raw or Huffman-decoded.
pub const MAX_STRING_LEN: usize = 8 * 1024;

/// RFC 7541 section 4.1: each entry costs 32 bytes beyond its name and value.
const ENTRY_OVERHEAD: usize = 32;
/// Continuation bytes of an integer: 4 of them carry 28 bits, more than any length here needs.
const MAX_INTEGER_SHIFT: u32 = 21;

const SHORT: ParseError = ParseError::Incomplete { needed: None };

/// One direction's decoding state: the dynamic table and its size limits.
#[derive(Debug, Clone)]
pub struct Decoder {
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_TABLE_SIZE)
    }
}

impl Decoder {
    /// A decoder for a peer whose table may grow to `limit` bytes (capped at [`MAX_TABLE_SIZE`]).
    pub fn new(limit: usize) -> Self {
        let limit = limit.min(MAX_TABLE_SIZE);
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
        }
    }

    /// The dynamic table's current size in RFC 7541 terms.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Number of entries in the dynamic table.
    pub fn table_len(&self) -> usize {
        self.entries.len()
    }

    /// Decodes one header block (a HEADERS fragment and its CONTINUATIONs, joined), handing each
    /// field to `field` as (name, value) in order. On an error the fields before it have been
    /// delivered and the table holds the insertions made so far.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), ParseError> {
        let mut c = Cursor::new(block, SHORT);
        let mut fields = 0usize;
        let mut decoded = 0usize;
        while !c.is_empty() {
            let first = c.u8()?;
            if first & 0xe0 == 0x20 {
                // Dynamic table size update (section 6.3).
                if fields > 0 {
                    return Err(ParseError::Invalid(
                        "HPACK table size update after the first field",
                    ));
                }
                let size = integer(&mut c, first, 5)?;
                if size > self.limit {
                    return Err(ParseError::Invalid(
                        "HPACK table size update above the limit",
                    ));
                }
                self.max_size = size;
                self.evict(0);
                continue;
            }
            if fields == MAX_FIELDS {
                return Err(ParseError::Invalid("more HPACK fields than the limit"));
            }
            fields += 1;
            if first & 0x80 != 0 {
                // Indexed field (section 6.1).
                let index = integer(&mut c, first, 7)?;
                let (name, value) = self.entry(index)?;
                decoded = charge(decoded, name.len() + value.len())?;
                field(name, value);
                continue;
            }
            // Literals (section 6.2): with incremental indexing (01), never indexed (0001),
            // without indexing (0000).
            let (prefix, indexing) = if first & 0xc0 == 0x40 {
                (6, true)
            } else {
                (4, false)
            };
            let index = integer(&mut c, first, prefix)?;
            let name = if index == 0 {
                string(&mut c)?
            } else {
                self.entry(index)?.0.to_vec()
            };
            let value = string(&mut c)?;
            decoded = charge(decoded, name.len() + value.len())?;
            field(&name, &value);
            if indexing {
                self.insert(name, value);
            }
        }
        Ok(())
    }

    /// The field at a 1-based HPACK index: static table, then dynamic table newest first.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), ParseError> {
        if index == 0 {
            return Err(ParseError::Invalid("HPACK index 0"));
        }
        if let Some((name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok((name.as_bytes(), value.as_bytes()));
        }
        self.entries
            .get(index - 1 - STATIC_TABLE.len())
            .map(|(name, value)| (name.as_slice(), value.as_slice()))
            .ok_or(ParseError::Invalid("HPACK index beyond the tables"))
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.entries.push_front((name, value));
    }

    /// Evicts the oldest entries until `room` more bytes fit under the maximum.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((name, value)) = self.entries.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

fn charge(decoded: usize, more: usize) -> Result<usize, ParseError> {
    let total = decoded + more;
    if total > MAX_DECODED_LEN {
        return Err(ParseError::Invalid(
            "HPACK block decodes to more than the limit",
        ));
    }
    Ok(total)
}

/// An integer with an N-bit prefix (section 5.1); `first` is the byte holding the prefix.
fn integer(c: &mut Cursor<'_>, first: u8, prefix_bits: u32) -> Result<usize, ParseError> {
    let mask = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        if shift > MAX_INTEGER_SHIFT {
            return Err(ParseError::Invalid("HPACK integer too large"));
        }
        let byte = c.u8()?;
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// A string literal (section 5.2), Huffman-decoded when its H bit is set.
fn string(c: &mut Cursor<'_>) -> Result<Vec<u8>, ParseError> {
    let first = c.u8()?;
    let len = integer(c, first, 7)?;
    if len > MAX_STRING_LEN {
        return Err(ParseError::Invalid("HPACK string longer than the limit"));
    }
    let raw = c.take(len)?;
    if first & 0x80 == 0 {
        return Ok(raw.to_vec());
    }
    huffman_decode(raw)
}

/// Decodes a Huffman-coded string: EOS inside, padding longer than 7 bits or padding that is
/// not a prefix of EOS (all ones) are errors (section 5.2).
pub(crate) fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    let mut code = 0u32;
    let mut len = 0usize;
    for byte in raw {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > MAX_CODE_LEN {
                return Err(ParseError::Invalid("Huffman code longer than any symbol"));
            }
            let offset = code.wrapping_sub(CANONICAL.first[len]);
            if code >= CANONICAL.first[len] && offset < u32::from(CANONICAL.count[len]) {
                let symbol = CANONICAL.symbols[usize::from(CANONICAL.start[len]) + offset as usize];
                let Ok(symbol) = u8::try_from(symbol) else {
                    return Err(ParseError::Invalid("Huffman EOS inside a string"));
                };
                if out.len() == MAX_STRING_LEN {
                    return Err(ParseError::Invalid("HPACK string longer than the limit"));
                }
                out.push(symbol);
                code = 0;
                len = 0;
            }
        }
    }
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(ParseError::Invalid(
            "Huffman padding is not a prefix of EOS",
        ));
    }
    Ok(out)
}

const MAX_CODE_LEN: usize = 30;

/// The Huffman code in canonical form: for each bit length, the first code, how many symbols
/// have it, and where they start in `symbols` (sorted by length, then symbol).
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u16; MAX_CODE_LEN + 1],
    start: [u16; MAX_CODE_LEN + 1],
    symbols: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut table = Canonical {
        first: [0; MAX_CODE_LEN + 1],
        count: [0; MAX_CODE_LEN + 1],
        start: [0; MAX_CODE_LEN + 1],
        symbols: [0; 257],
    };
    let mut code = 0u32;
    let mut next = 0usize;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        table.first[len] = code;
        table.start[len] = next as u16;
        let mut symbol = 0;
        while symbol < HUFFMAN.len() {
            if HUFFMAN[symbol].1 as usize == len {
                table.symbols[next] = symbol as u16;
                next += 1;
                code += 1;
            }
            symbol += 1;
        }
        table.count[len] = (next - table.start[len] as usize) as u16;
        code <<= 1;
        len += 1;
    }
    table
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// RFC 7541 Appendix B: (code aligned to the least significant bit, length in bits) of symbols
/// 0 to 255 and EOS (256).
#[rustfmt::skip]
const HUFFMAN: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    (0x3fffffff, 30),
];

/// A small HPACK encoder for building test inputs (request.rs's tests use it too).
#[cfg(test)]
pub(crate) mod encode {
    use super::HUFFMAN;

    pub(crate) fn integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, mut value: usize) {
        let mask = (1usize << prefix_bits) - 1;
        if value < mask {
            out.push(flags | value as u8);
            return;
        }
        out.push(flags | mask as u8);
        value -= mask;
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub(crate) fn huffman(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u64, 0u32);
        for byte in text {
            let (code, len) = HUFFMAN[usize::from(*byte)];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            // Pad with the most significant bits of EOS (ones).
            out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
        }
        out
    }

    pub(crate) fn string(out: &mut Vec<u8>, text: &[u8], huffman_coded: bool) {
        if huffman_coded {
            let coded = huffman(text);
            integer(out, 0x80, 7, coded.len());
            out.extend_from_slice(&coded);
        } else {
            integer(out, 0, 7, text.len());
            out.extend_from_slice(text);
        }
    }

    /// A literal field without indexing and with a literal name.
    pub(crate) fn literal(out: &mut Vec<u8>, name: &str, value: &str, huffman_coded: bool) {
        out.push(0x00);
        string(out, name.as_bytes(), huffman_coded);
        string(out, value.as_bytes(), huffman_coded);
    }

    /// A literal field with incremental indexing and a literal name.
    pub(crate) fn literal_indexed(out: &mut Vec<u8>, name: &str, value: &str) {
        out.push(0x40);
        string(out, name.as_bytes(), true);
        string(out, value.as_bytes(), true);
    }

    /// A literal value for an indexed name (static or dynamic), without indexing.
    pub(crate) fn literal_with_name(out: &mut Vec<u8>, index: usize, value: &str) {
        integer(out, 0x00, 4, index);
        string(out, value.as_bytes(), true);
    }

    pub(crate) fn indexed(out: &mut Vec<u8>, index: usize) {
        integer(out, 0x80, 7, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
        let mut out = Vec::new();
        decoder.decode(block, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })?;
        Ok(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn huffman_table_is_the_canonical_complete_code() {
        // Kraft equality: a complete prefix code, so no typo turned a code into a gap or overlap.
        let kraft: u64 = HUFFMAN.iter().map(|(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(kraft, 1 << 30);
        // Every listed code is the one the canonical construction assigns.
        for len in 1..=MAX_CODE_LEN {
            for k in 0..usize::from(CANONICAL.count[len]) {
                let symbol = usize::from(CANONICAL.symbols[usize::from(CANONICAL.start[len]) + k]);
                assert_eq!(
                    HUFFMAN[symbol],
                    (CANONICAL.first[len] + k as u32, len as u8),
                    "symbol {symbol}"
                );
            }
        }
        // Spot checks against the RFC's hex column.
        assert_eq!(HUFFMAN[usize::from(b' ')], (0x14, 6));
        assert_eq!(HUFFMAN[usize::from(b'a')], (0x3, 5));
        assert_eq!(HUFFMAN[usize::from(b'\\')], (0x7fff0, 19));
        assert_eq!(HUFFMAN[256], (0x3fff_ffff, 30));
    }

    #[test]
    fn huffman_rfc_strings() {
        for (coded, text) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("9bd9 ab", "gzip"),
            (
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ] {
            assert_eq!(
                huffman_decode(&hex(coded)).unwrap(),
                text.as_bytes(),
                "{text}"
            );
            assert_eq!(encode::huffman(text.as_bytes()), hex(coded), "{text}");
        }
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for window in all.chunks(37) {
            assert_eq!(huffman_decode(&encode::huffman(window)).unwrap(), window);
        }
        assert_eq!(huffman_decode(&[]).unwrap(), b"");
    }

    #[test]
    fn huffman_rejects_bad_padding_and_eos() {
        // Zero padding: '0' is 00000, then three zero bits are not a prefix of EOS.
        assert!(huffman_decode(&[0x00]).is_err());
        // Eight one bits of padding (a whole byte) is too long.
        assert!(huffman_decode(&[0x1f, 0xff]).is_err());
        // EOS itself (30 ones) inside the string.
        assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xfc]).is_err());
        assert!(huffman_decode(&[0xff; 8]).is_err());
    }

    #[test]
    fn integers_of_rfc_c1_and_overflow() {
        let read = |bytes: &[u8], prefix| {
            let mut c = Cursor::new(&bytes[1..], SHORT);
            integer(&mut c, bytes[0], prefix)
        };
        assert_eq!(read(&[0x0a], 5), Ok(10));
        assert_eq!(read(&[0x1f, 0x9a, 0x0a], 5), Ok(1337));
        assert_eq!(read(&[0x2a], 8), Ok(42));
        assert_eq!(read(&[0x1f, 0x9a], 5), Err(SHORT));
        assert_eq!(
            read(&[0x1f, 0xff, 0xff, 0xff, 0x7f], 5),
            Ok(31 + (1 << 28) - 1)
        );
        assert_eq!(
            read(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x01], 5),
            Err(ParseError::Invalid("HPACK integer too large"))
        );
        assert_eq!(
            read(
                &[
                    0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01
                ],
                7
            ),
            Err(ParseError::Invalid("HPACK integer too large"))
        );
    }

    #[test]
    fn literal_examples_of_rfc_c2() {
        let mut d = Decoder::default();
        let got = fields(
            &mut d,
            &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
        )
        .unwrap();
        assert_eq!(got, pairs(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_size(), 55);
        let mut d = Decoder::default();
        let got = fields(&mut d, &hex("040c 2f73 616d 706c 652f 7061 7468")).unwrap();
        assert_eq!(got, pairs(&[(":path", "/sample/path")]));
        assert_eq!(d.table_len(), 0);
        let got = fields(&mut d, &hex("1008 7061 7373 776f 7264 0673 6563 7265 74")).unwrap();
        assert_eq!(got, pairs(&[("password", "secret")]));
        assert_eq!(d.table_len(), 0);
        assert_eq!(
            fields(&mut d, &[0x82]).unwrap(),
            pairs(&[(":method", "GET")])
        );
    }

    #[test]
    fn request_sequences_of_rfc_c3_and_c4() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::default();
            let base = [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ];
            assert_eq!(fields(&mut d, &hex(blocks[0])).unwrap(), pairs(&base));
            assert_eq!((d.table_len(), d.table_size()), (1, 57));
            let mut second = base.to_vec();
            second.push(("cache-control", "no-cache"));
            assert_eq!(fields(&mut d, &hex(blocks[1])).unwrap(), pairs(&second));
            assert_eq!((d.table_len(), d.table_size()), (2, 110));
            assert_eq!(
                fields(&mut d, &hex(blocks[2])).unwrap(),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value"),
                ])
            );
            assert_eq!((d.table_len(), d.table_size()), (3, 164));
        }
    }

    #[test]
    fn response_sequence_of_rfc_c6_evicts() {
        let mut d = Decoder::new(256);
        let first = fields(
            &mut d,
            &hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3"),
        )
        .unwrap();
        assert_eq!(
            first,
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.table_size(), 222);
        let second = fields(&mut d, &hex("4883 640e ffc1 c0bf")).unwrap();
        assert_eq!(second[0], (":status".to_owned(), "307".to_owned()));
        assert_eq!(second[3].1, "https://www.example.com");
        assert_eq!((d.table_len(), d.table_size()), (4, 222));
        let third = fields(
            &mut d,
            &hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"),
        )
        .unwrap();
        assert_eq!(
            third,
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                ),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (3, 215));
    }

    #[test]
    fn table_size_updates() {
        let mut d = Decoder::default();
        fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
        assert_eq!(d.table_len(), 1);
        // Size 0 empties the table, then 4096 restores the room; both at the block's start.
        assert_eq!(
            fields(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82])
                .unwrap()
                .len(),
            1
        );
        assert_eq!(d.table_len(), 0);
        assert_eq!(
            fields(&mut d, &[0x3f, 0xe2, 0x1f]),
            Err(ParseError::Invalid(
                "HPACK table size update above the limit"
            ))
        );
        assert_eq!(
            fields(&mut d, &[0x82, 0x20]),
            Err(ParseError::Invalid(
                "HPACK table size update after the first field"
            ))
        );
        // A smaller SETTINGS limit bounds the updates too.
        let mut small = Decoder::new(100);
        assert!(fields(&mut small, &[0x3f, 0x46]).is_err());
        assert!(fields(&mut small, &[0x3f, 0x45]).is_ok());
        // An entry larger than the table empties it without error.
        let mut tiny = Decoder::new(40);
        let mut block = Vec::new();
        encode::literal_indexed(&mut block, "a", "b");
        encode::literal_indexed(&mut block, "name", "a value longer than the table");
        fields(&mut tiny, &block).unwrap();
        assert_eq!((tiny.table_len(), tiny.table_size()), (0, 0));
    }

    #[test]
    fn bad_indices_and_lengths() {
        let mut d = Decoder::default();
        assert_eq!(
            fields(&mut d, &[0x80]),
            Err(ParseError::Invalid("HPACK index 0"))
        );
        assert_eq!(
            fields(&mut d, &[0xbe]),
            Err(ParseError::Invalid("HPACK index beyond the tables"))
        );
        assert_eq!(
            fields(&mut d, &[0x00, 0x7f, 0xff, 0xff, 0xff, 0x0f]),
            Err(ParseError::Invalid("HPACK string longer than the limit"))
        );
        assert_eq!(fields(&mut d, &[0x00, 0x05, b'a']), Err(SHORT));
        assert_eq!(fields(&mut d, &[0x00, 0x01, b'a']), Err(SHORT));
    }

    #[test]
    fn field_and_size_caps() {
        let mut d = Decoder::default();
        assert_eq!(
            fields(&mut d, &[0x82; MAX_FIELDS]).unwrap().len(),
            MAX_FIELDS
        );
        assert_eq!(
            fields(&mut d, &[0x82; MAX_FIELDS + 1]),
            Err(ParseError::Invalid("more HPACK fields than the limit"))
        );
        // One large entry referenced many times is charged each time.
        let mut block = Vec::new();
        encode::literal_indexed(&mut block, "x", &"v".repeat(3000));
        for _ in 0..20 {
            encode::indexed(&mut block, 62);
        }
        let mut seen = 0;
        let result = d.decode(&block, |_, _| seen += 1);
        assert_eq!(
            result,
            Err(ParseError::Invalid(
                "HPACK block decodes to more than the limit"
            ))
        );
        assert!(seen < 12, "{seen}");
        // Ten thousand fields: stops at the cap, bounded work.
        let many = [0x82u8; 10_000];
        assert!(fields(&mut Decoder::default(), &many).is_err());
    }

    #[test]
    fn every_prefix_decodes_or_asks_for_more() {
        let block = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        for cut in 0..block.len() {
            let mut d = Decoder::default();
            fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
            fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
            match fields(&mut d, &block[..cut]) {
                Ok(_) | Err(SHORT) => {}
                Err(other) => panic!("cut {cut}: {other}"),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target does the real work.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut block = Vec::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                block.push(state as u8);
            }
            let _ = fields(&mut Decoder::new(state as usize % 5000), &block);
        }
    }
}
