//! Naming: which destination a connection is for, read from the first bytes it carried.
//!
//! The kernel side hands userspace the first client payload of each outbound socket (and the DNS
//! answers a host receives). Each file here reads one protocol from a byte slice and returns only
//! the names it found, never the payload:
//! - `tls`: a TLS ClientHello (SNI, ALPN, JA4 fingerprint), also spread over several records;
//! - `http`: an HTTP/1.x request head (Host, absolute-form target, CONNECT target);
//! - `request`: the first plaintext bytes of a TLS connection (HTTP/1.x or HTTP/2, as a uprobe
//!   on the TLS library's write sees them): the API request they start, or the response's
//!   status and relay software; `hpack` decodes HTTP/2's header blocks for it;
//! - `socks`: the client side of a SOCKS4, SOCKS4a or SOCKS5 handshake (the proxied target);
//! - `dns`: a DNS message (questions, A/AAAA/CNAME answers, which name each address answers);
//! - `quic`: a QUIC v1/v2 client Initial packet, decrypted with the keys every observer can derive,
//!   whose CRYPTO frames hold a ClientHello;
//! - `stream`: the contiguous first bytes of a TCP stream, from captured chunks;
//! - `examine`: which of the parsers above reads a flow's first bytes, and the naming they give;
//! - `model`: that naming (`Naming`, `NameSource`), as every later stage reads it.
//!
//! Every parser is a pure function: no I/O, no logging, no panics on any input, bounded work and
//! allocation (names at most [`MAX_NAME_LEN`] bytes, lists capped, no unbounded recursion). They
//! answer [`ParseError::Incomplete`] when more bytes of the same stream could complete the message,
//! and [`ParseError::Invalid`] when the bytes are not that protocol. Secrets seen in plaintext
//! (Authorization headers, API keys in query strings, SOCKS passwords) are skipped over, never
//! copied into a result.
pub mod dns;
pub mod examine;
pub mod hpack;
pub mod http;
pub mod model;
pub mod quic;
pub mod request;
pub mod socks;
pub mod stream;
pub mod tls;

mod cursor;

use std::fmt;

pub use dns::{AddressName, DnsMessage, Question, Record, RecordData};
pub use http::HttpRequest;
pub use quic::QuicInitial;
pub use socks::{SocksRequest, SocksTarget};
pub use tls::ClientHello;

/// Longest host name kept, in its text form without the trailing dot (RFC 1035: 255 octets on
/// the wire, which is 253 characters of text).
pub const MAX_NAME_LEN: usize = 253;

/// Why a parser gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes so far are a valid beginning: more bytes of the same stream may complete it.
    /// `needed` is the total length (counted from the start of the input) the message needs,
    /// when the bytes so far say so.
    Incomplete { needed: Option<usize> },
    /// Not this protocol, or malformed, or over a limit; the text says which.
    Invalid(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete { needed: Some(n) } => write!(f, "incomplete: {n} bytes needed"),
            ParseError::Incomplete { needed: None } => write!(f, "incomplete: more bytes needed"),
            ParseError::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A host name as the parsers keep it: ASCII letters, digits, `-`, `_` and `.` (so IPv4 literals
/// pass too), lowercased, without a trailing dot, 1 to [`MAX_NAME_LEN`] bytes, no empty label.
/// `None` for anything else.
pub(crate) fn host_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > MAX_NAME_LEN {
        return None;
    }
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !raw.iter().all(allowed)
        || raw
            .split(|b| *b == b'.')
            .any(|label| label.is_empty() || label.len() > 63)
    {
        return None;
    }
    // All bytes are ASCII, so this cannot fail; the fallback only avoids an unwrap.
    std::str::from_utf8(raw).ok().map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_normalises_and_rejects() {
        assert_eq!(
            host_name(b"API.OpenAI.com.").as_deref(),
            Some("api.openai.com")
        );
        assert_eq!(host_name(b"10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(
            host_name(b"_dmarc.example.com").as_deref(),
            Some("_dmarc.example.com")
        );
        assert_eq!(host_name(b""), None);
        assert_eq!(host_name(b"."), None);
        assert_eq!(host_name(b"a..b"), None);
        assert_eq!(host_name(b"exa mple.com"), None);
        assert_eq!(host_name("bücher.de".as_bytes()), None);
        assert_eq!(host_name(&[b'a'; 64]), None);
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert_eq!(host_name(long.as_bytes()), Some(long.clone()));
        assert_eq!(host_name(format!("{long}x").as_bytes()), None);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            ParseError::Incomplete { needed: Some(9) }.to_string(),
            "incomplete: 9 bytes needed"
        );
        assert_eq!(
            ParseError::Invalid("not TLS").to_string(),
            "invalid: not TLS"
        );
    }
}
