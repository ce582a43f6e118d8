//! What a connection's first payload is, from its first bytes: a proxy request, or a TLS
//! handshake record and its length. One rule each, cheap enough for the kernel (a fixed 8-byte
//! head, no loops beyond it) and the same in the daemon: the egress program decides from a
//! packet's head what to capture ([`proxy_start`] also decides whether a local connection is
//! reported at all), and the daemon decides from the captured stream's head which parser reads
//! it ([`stream_proxy_start`]). Userspace parses the request fully; these only pick the parser.
//!
//! The kernel decides on the first packet, the daemon on a stream that starts with that packet,
//! so the rules hold for a prefix the way they hold for the whole: a head that matches still
//! matches with more bytes after it (a client that splits a request before the bytes a rule
//! needs is recognised by neither). One exception: once the byte after a SOCKS5 greeting is in
//! view it must continue the handshake; a stream where it does not cannot be read as SOCKS
//! either, so the daemon names it no proxy target whichever way the kernel decided.

/// Bytes of a payload's head the rules look at.
pub const HEAD_LEN: usize = 8;

/// Most methods a SOCKS5 greeting may offer to be taken for one. Real clients offer one to
/// three (no authentication, user name/password, GSSAPI); the bound keeps a binary protocol
/// whose first byte happens to be 5 from passing for SOCKS.
pub const SOCKS5_MAX_METHODS: u8 = 9;

/// The proxy protocol a stream's first bytes speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// An HTTP `CONNECT host:port` request.
    HttpConnect,
    /// A SOCKS4 or SOCKS4a CONNECT request.
    Socks4,
    /// A SOCKS5 greeting (the CONNECT request follows after the proxy's answer).
    Socks5,
}

/// Whether a payload starts a proxy request, and which. `head` holds the first (up to)
/// [`HEAD_LEN`] bytes, zero-padded; `len` is the payload's length (of the first packet in the
/// kernel, of the captured stream in the daemon). The rule:
///
/// - HTTP CONNECT: `CONNECT ` (8 bytes).
/// - SOCKS4/4a: `04 01` (version 4, CONNECT; BIND names no destination of the client's data)
///   and at least 9 bytes, the shortest request (port, IPv4 address, empty user id, NUL).
/// - SOCKS5 greeting `05 n m1..mn`: 1 <= n <= [`SOCKS5_MAX_METHODS`], the whole greeting
///   present (2 + n bytes), no offered method 0xFF (that is the proxy's "no acceptable
///   methods" answer, never an offer), and, when the byte after the greeting is within the
///   head, it is 1 (an authentication sub-negotiation, RFC 1929) or 5 (the request): a client
///   may send its request without waiting for the proxy's answer.
#[inline(always)]
pub fn proxy_start(head: &[u8; HEAD_LEN], len: u32) -> Option<ProxyProtocol> {
    if len >= HEAD_LEN as u32 && head == b"CONNECT " {
        return Some(ProxyProtocol::HttpConnect);
    }
    match head[0] {
        4 if head[1] == 1 && len >= 9 => Some(ProxyProtocol::Socks4),
        5 if socks5_greeting(head, len) => Some(ProxyProtocol::Socks5),
        _ => None,
    }
}

/// Whether a local connection's first bytes are an HTTP POST (`POST /`): what an AI client
/// sends to a local forwarding proxy (cc-switch, LiteLLM, CLIProxyAPI). Reported so the daemon
/// can name the client behind the proxy's own request; other local traffic stays unreported.
#[inline(always)]
pub fn local_api_request(head: &[u8; HEAD_LEN], len: u32) -> bool {
    len >= 6
        && head[0] == b'P'
        && head[1] == b'O'
        && head[2] == b'S'
        && head[3] == b'T'
        && head[4] == b' '
        && head[5] == b'/'
}

#[inline(always)]
fn socks5_greeting(head: &[u8; HEAD_LEN], len: u32) -> bool {
    let methods = head[1];
    if methods == 0 || methods > SOCKS5_MAX_METHODS {
        return false;
    }
    let greeting = 2 + methods as u32;
    if len < greeting {
        return false;
    }
    // Bounded by the head: at most 6 methods and the byte after the greeting are in view.
    let mut i = 2;
    while i < HEAD_LEN {
        let at = i as u32;
        if at >= len {
            break;
        }
        if at < greeting {
            if head[i] == 0xff {
                return false;
            }
        } else {
            return head[i] == 1 || head[i] == 5;
        }
        i += 1;
    }
    true
}

/// A byte stream's head as the kernel reads a packet's: its first (up to) [`HEAD_LEN`] bytes,
/// zero-padded, and its length (saturated).
pub fn head(bytes: &[u8]) -> ([u8; HEAD_LEN], u32) {
    let mut head = [0u8; HEAD_LEN];
    let n = bytes.len().min(HEAD_LEN);
    head[..n].copy_from_slice(&bytes[..n]);
    (head, u32::try_from(bytes.len()).unwrap_or(u32::MAX))
}

/// [`proxy_start`] over the start of a byte stream (the daemon's captured client bytes).
pub fn stream_proxy_start(stream: &[u8]) -> Option<ProxyProtocol> {
    let (head, len) = head(stream);
    proxy_start(&head, len)
}

/// If the payload starts a TLS handshake record (`16 03 0x len len`), the bytes of that record
/// including its 5-byte header.
#[inline(always)]
pub fn tls_record_need(first: &[u8; HEAD_LEN], len: u32) -> Option<u32> {
    if len >= 5 && first[0] == 0x16 && first[1] == 3 && first[2] <= 4 {
        let body = ((first[3] as u32) << 8) | first[4] as u32;
        return Some(5 + body);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_to_a_local_proxy_is_an_api_request_and_nothing_else_is() {
        let head = |b: &[u8]| {
            let mut h = [0u8; HEAD_LEN];
            h[..b.len().min(HEAD_LEN)].copy_from_slice(&b[..b.len().min(HEAD_LEN)]);
            h
        };
        assert!(local_api_request(&head(b"POST /v1/messages"), 200));
        assert!(
            !local_api_request(&head(b"POST /"), 5),
            "shorter than the prefix"
        );
        assert!(!local_api_request(&head(b"GET /v1/models"), 200));
        assert!(!local_api_request(&head(b"POSTX /"), 200));
        assert!(!local_api_request(&head(b"\x16\x03\x01\x02\x00"), 200));
    }

    fn proxy(bytes: &[u8]) -> Option<ProxyProtocol> {
        stream_proxy_start(bytes)
    }

    #[test]
    fn http_connect() {
        assert_eq!(
            proxy(b"CONNECT api.openai.com:443 HTTP/1.1\r\n\r\n"),
            Some(ProxyProtocol::HttpConnect)
        );
        assert_eq!(proxy(b"CONNECT "), Some(ProxyProtocol::HttpConnect));
        assert_eq!(proxy(b"CONNECT"), None, "not the whole method and space");
        assert_eq!(
            proxy(b"connect x:443 HTTP/1.1\r\n"),
            None,
            "methods are case-sensitive"
        );
        assert_eq!(proxy(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(proxy(b"POST /v1/chat HTTP/1.1\r\n"), None);
    }

    #[test]
    fn socks4_and_4a() {
        // CONNECT to 1.2.3.4:443, empty user id: the shortest request.
        assert_eq!(
            proxy(&[4, 1, 1, 187, 1, 2, 3, 4, 0]),
            Some(ProxyProtocol::Socks4)
        );
        // With a user id.
        assert_eq!(
            proxy(b"\x04\x01\x00\x50\x5d\xb8\xd8\x22alice\x00"),
            Some(ProxyProtocol::Socks4)
        );
        // SOCKS4a: 0.0.0.1, then the host name.
        assert_eq!(
            proxy(b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.com\x00"),
            Some(ProxyProtocol::Socks4)
        );
        assert_eq!(
            proxy(&[4, 1, 1, 187, 1, 2, 3, 4]),
            None,
            "no user id terminator yet"
        );
        assert_eq!(proxy(&[4, 1, 0]), None);
        assert_eq!(
            proxy(&[4, 2, 1, 187, 1, 2, 3, 4, 0]),
            None,
            "BIND is not CONNECT"
        );
    }

    #[test]
    fn socks5_greetings() {
        // No authentication; no authentication or user name/password; GSSAPI and both.
        assert_eq!(proxy(&[5, 1, 0]), Some(ProxyProtocol::Socks5));
        assert_eq!(proxy(&[5, 2, 0, 2]), Some(ProxyProtocol::Socks5));
        assert_eq!(proxy(&[5, 3, 0, 1, 2]), Some(ProxyProtocol::Socks5));
        // Private methods, and more than fit in the head.
        assert_eq!(proxy(&[5, 2, 0x80, 0xfe]), Some(ProxyProtocol::Socks5));
        assert_eq!(
            proxy(&[5, 9, 0, 1, 2, 3, 5, 6, 7, 8, 9]),
            Some(ProxyProtocol::Socks5)
        );
        // The greeting followed by what the client sends next (the daemon's view of the stream,
        // or a client that does not wait for the proxy's answer).
        assert_eq!(
            proxy(b"\x05\x01\x00\x05\x01\x00\x03\x0aexample.com\x01\xbb"),
            Some(ProxyProtocol::Socks5)
        );
        assert_eq!(
            proxy(b"\x05\x01\x02\x01\x05alice\x06secret\x05\x01\x00\x01\x01\x02\x03\x04\x01\xbb"),
            Some(ProxyProtocol::Socks5)
        );

        assert_eq!(proxy(&[5]), None);
        assert_eq!(proxy(&[5, 1]), None, "the method is not in yet");
        assert_eq!(proxy(&[5, 2, 0]), None, "one of two methods");
        assert_eq!(proxy(&[5, 0]), None, "no method offered");
        assert_eq!(proxy(&[5, 0, 0, 0]), None);
        assert_eq!(
            proxy(&[5, 1, 0xff]),
            None,
            "0xFF is an answer, not an offer"
        );
        assert_eq!(proxy(&[5, 3, 0, 2, 0xff]), None);
        assert_eq!(
            proxy(&[5, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            None,
            "too many methods"
        );
        assert_eq!(
            proxy(&[5, 1, 0, 0x16, 3, 1]),
            None,
            "not a request after the greeting"
        );
        assert_eq!(proxy(&[5, 255, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn other_protocols_are_not_proxies() {
        assert_eq!(proxy(b""), None);
        assert_eq!(
            proxy(&[0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3]),
            None,
            "TLS ClientHello"
        );
        assert_eq!(
            proxy(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            None,
            "HTTP/2 preface"
        );
        assert_eq!(proxy(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
        assert_eq!(
            proxy(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
            None,
            "PostgreSQL SSLRequest"
        );
        assert_eq!(proxy(b"*1\r\n$4\r\nPING\r\n"), None, "Redis");
        assert_eq!(proxy(&[0; 40]), None);
    }

    #[test]
    fn the_kernel_and_the_daemon_agree() {
        // The kernel decides on the first packet; the daemon on a stream that starts with it.
        let first_packets: [&[u8]; 6] = [
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
            &[4, 1, 1, 187, 1, 2, 3, 4, 0],
            &[5, 1, 0],
            &[5, 2, 0, 2],
            &[5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 1, 187],
            &[0x16, 3, 1, 0, 5, 1, 0, 0, 1],
        ];
        let rest = b"\x05\x01\x00\x01\x01\x02\x03\x04\x01\xbb\x16\x03\x01\x02\x00";
        for packet in first_packets {
            let mut head = [0u8; HEAD_LEN];
            let n = packet.len().min(HEAD_LEN);
            head[..n].copy_from_slice(&packet[..n]);
            let kernel = proxy_start(&head, packet.len() as u32);
            let mut stream = [0u8; 64];
            stream[..packet.len()].copy_from_slice(packet);
            stream[packet.len()..packet.len() + rest.len()].copy_from_slice(rest);
            let daemon = stream_proxy_start(&stream[..packet.len() + rest.len()]);
            assert_eq!(kernel, daemon, "{packet:?}");
        }
    }

    #[test]
    fn tls_record_lengths() {
        assert_eq!(
            tls_record_need(&[0x16, 3, 1, 0x06, 0x00, 1, 0, 0], 1200),
            Some(5 + 0x600)
        );
        assert_eq!(
            tls_record_need(&[0x16, 3, 3, 0x00, 0x50, 1, 0, 0], 85),
            Some(85)
        );
        assert_eq!(
            tls_record_need(&[0x17, 3, 3, 0x00, 0x50, 0, 0, 0], 85),
            None,
            "application data"
        );
        assert_eq!(
            tls_record_need(&[0x16, 3, 1, 0, 0, 0, 0, 0], 4),
            None,
            "too short to hold a header"
        );
        assert_eq!(tls_record_need(b"GET / HT", 100), None);
    }
}
