//! SOCKS client stream: which destination a program asked a SOCKS proxy to connect to.
//!
//! The kernel captures only what the client sends, concatenated, so this reads the client's half
//! of the handshake without the proxy's replies in between:
//! - SOCKS4 `04 01 port ipv4 userid 00`; SOCKS4a the same with ipv4 `0.0.0.x` (x != 0) and the
//!   host name after the user id, `name 00`;
//! - SOCKS5 (RFC 1928) greeting `05 n methods[n]`, then optionally the RFC 1929 username/password
//!   sub-negotiation `01 ulen user plen password` (skipped, nothing kept), then the request
//!   `05 01 00 atyp addr port` with atyp 1 (IPv4), 3 (domain) or 4 (IPv6).
//!
//! Only CONNECT is accepted (BIND and UDP ASSOCIATE name no destination of the client's data).
//! `consumed` says where the tunnelled payload (often a TLS ClientHello) starts in the stream.
//! The user id, user name and password are never copied. Limits: names at most
//! [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes, a SOCKS4 user id at most 255 bytes.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cursor::Cursor;
use super::{MAX_NAME_LEN, ParseError, host_name};

const MAX_USER_ID_LEN: usize = 255;
const CMD_CONNECT: u8 = 1;
const METHOD_USER_PASSWORD: u8 = 2;

/// The destination a client asked its SOCKS proxy for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// 4 (SOCKS4 and SOCKS4a) or 5.
    pub version: u8,
    pub target: SocksTarget,
    pub port: u16,
    /// Bytes of the client stream that belong to the proxy protocol; the tunnelled payload
    /// starts at this offset.
    pub consumed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksTarget {
    /// A host name for the proxy to resolve (SOCKS4a, SOCKS5 atyp 3), lowercase.
    Domain(String),
    Ip(IpAddr),
}

/// Parses the SOCKS handshake at the start of a client→proxy byte stream.
pub fn parse_client_stream(buf: &[u8]) -> Result<SocksRequest, ParseError> {
    match buf.first() {
        None => Err(ParseError::Incomplete { needed: None }),
        Some(4) => socks4(buf),
        Some(5) => socks5(buf),
        Some(_) => Err(ParseError::Invalid("not a SOCKS handshake")),
    }
}

/// Whether a stream starts a proxy request (SOCKS4/4a/5 or HTTP CONNECT, the streams a local
/// proxy such as Clash, V2Ray or sing-box receives): the rule the kernel applies, defined once in
/// monitor-common. Kept under this name for the fuzz target.
pub use monitor_common::first_payload::stream_proxy_start as looks_like_proxy_start;

fn stream_short() -> ParseError {
    ParseError::Incomplete { needed: None }
}

fn socks4(buf: &[u8]) -> Result<SocksRequest, ParseError> {
    let mut r = Cursor::new(buf, stream_short());
    r.u8()?; // version
    if r.u8()? != CMD_CONNECT {
        return Err(ParseError::Invalid("SOCKS4 command is not CONNECT"));
    }
    let port = r.u16()?;
    let ip = Ipv4Addr::from(r.array::<4>()?);
    nul_terminated(
        &mut r,
        MAX_USER_ID_LEN,
        "SOCKS4 user id longer than 255 bytes",
    )?;
    let target = match ip.octets() {
        // SOCKS4a: "0.0.0.x" with x non-zero means "the name follows".
        [0, 0, 0, x] if x != 0 => {
            let name = nul_terminated(&mut r, MAX_NAME_LEN, "SOCKS4a host name too long")?;
            SocksTarget::Domain(
                host_name(name).ok_or(ParseError::Invalid("SOCKS4a host name malformed"))?,
            )
        }
        _ => SocksTarget::Ip(IpAddr::V4(ip)),
    };
    Ok(SocksRequest {
        version: 4,
        target,
        port,
        consumed: r.pos(),
    })
}

/// Bytes up to a NUL (which is consumed), at most `max` of them.
fn nul_terminated<'a>(
    r: &mut Cursor<'a>,
    max: usize,
    too_long: &'static str,
) -> Result<&'a [u8], ParseError> {
    let rest = r.peek_rest();
    match rest.iter().take(max + 1).position(|b| *b == 0) {
        Some(len) => {
            let bytes = r.take(len)?;
            r.u8()?;
            Ok(bytes)
        }
        None if rest.len() > max => Err(ParseError::Invalid(too_long)),
        None => Err(stream_short()),
    }
}

fn socks5(buf: &[u8]) -> Result<SocksRequest, ParseError> {
    let mut r = Cursor::new(buf, stream_short());
    r.u8()?; // version
    let methods = r.u8_prefixed()?;
    if methods.is_empty() {
        return Err(ParseError::Invalid("SOCKS5 greeting offers no method"));
    }
    // The proxy's choice is not in the client stream: a sub-negotiation shows by its version byte
    // (1), where a request starts with 5.
    match r.peek_rest().first() {
        None => return Err(stream_short()),
        Some(1) if methods.contains(&METHOD_USER_PASSWORD) => {
            r.u8()?;
            r.u8_prefixed()?; // user name, not kept
            r.u8_prefixed()?; // password, not kept
        }
        Some(1) => {
            return Err(ParseError::Invalid(
                "SOCKS5 authentication the greeting did not offer",
            ));
        }
        Some(_) => {}
    }
    let request_start = r.pos();
    let atyp = socks5_request_header(&mut r)?;
    // The request's total length is known once its address type (and a name's length) is:
    // 4 header bytes, the address, 2 port bytes.
    let needed = |address_len: usize| ParseError::Incomplete {
        needed: Some(request_start + 4 + address_len + 2),
    };
    let target = match atyp {
        1 => SocksTarget::Ip(IpAddr::V4(Ipv4Addr::from(
            r.array::<4>().map_err(|_| needed(4))?,
        ))),
        4 => SocksTarget::Ip(IpAddr::V6(Ipv6Addr::from(
            r.array::<16>().map_err(|_| needed(16))?,
        ))),
        3 => {
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Err(ParseError::Invalid("SOCKS5 host name empty"));
            }
            domain_target(r.take(len).map_err(|_| needed(1 + len))?)?
        }
        _ => return Err(ParseError::Invalid("SOCKS5 address type unknown")),
    };
    let port = r.u16().map_err(|_| needed(r.pos() - request_start - 4))?;
    Ok(SocksRequest {
        version: 5,
        target,
        port,
        consumed: r.pos(),
    })
}

/// `05 cmd 00 atyp`: checks the first three, returns the address type.
fn socks5_request_header(r: &mut Cursor<'_>) -> Result<u8, ParseError> {
    if r.u8()? != 5 {
        return Err(ParseError::Invalid("SOCKS5 request has the wrong version"));
    }
    if r.u8()? != CMD_CONNECT {
        return Err(ParseError::Invalid("SOCKS5 command is not CONNECT"));
    }
    if r.u8()? != 0 {
        return Err(ParseError::Invalid(
            "SOCKS5 request reserved byte is not zero",
        ));
    }
    r.u8()
}

/// A SOCKS5 domain field: some clients put an IP address literal there.
fn domain_target(name: &[u8]) -> Result<SocksTarget, ParseError> {
    if let Some(ip) = std::str::from_utf8(name)
        .ok()
        .and_then(|text| text.parse::<IpAddr>().ok())
    {
        return Ok(SocksTarget::Ip(ip));
    }
    host_name(name)
        .map(SocksTarget::Domain)
        .ok_or(ParseError::Invalid("SOCKS5 host name malformed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_HELLO_START: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];

    fn with_payload(handshake: &[u8]) -> Vec<u8> {
        [handshake, CLIENT_HELLO_START].concat()
    }

    #[test]
    fn socks4_ipv4() {
        let stream = with_payload(&[4, 1, 0x01, 0xbb, 104, 18, 7, 192, b'b', b'o', b'b', 0]);
        let req = parse_client_stream(&stream).unwrap();
        assert_eq!(req.version, 4);
        assert_eq!(req.target, SocksTarget::Ip("104.18.7.192".parse().unwrap()));
        assert_eq!(req.port, 443);
        assert_eq!(&stream[req.consumed..], CLIENT_HELLO_START);
        assert!(!format!("{req:?}").contains("bob"));
    }

    #[test]
    fn socks4a_domain() {
        let mut stream = vec![4, 1, 0x01, 0xbb, 0, 0, 0, 1, 0];
        stream.extend_from_slice(b"API.Anthropic.com\0");
        let stream = with_payload(&stream);
        let req = parse_client_stream(&stream).unwrap();
        assert_eq!(
            req.target,
            SocksTarget::Domain("api.anthropic.com".to_owned())
        );
        assert_eq!(&stream[req.consumed..], CLIENT_HELLO_START);
        for cut in 0..req.consumed {
            assert_eq!(
                parse_client_stream(&stream[..cut]),
                Err(ParseError::Incomplete { needed: None }),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn socks5_domain_without_authentication() {
        let mut stream = vec![5, 1, 0, 5, 1, 0, 3, 14];
        stream.extend_from_slice(b"api.openai.com");
        stream.extend_from_slice(&443u16.to_be_bytes());
        let stream = with_payload(&stream);
        let req = parse_client_stream(&stream).unwrap();
        assert_eq!((req.version, req.port), (5, 443));
        assert_eq!(req.target, SocksTarget::Domain("api.openai.com".to_owned()));
        assert_eq!(req.consumed, 3 + 4 + 1 + 14 + 2);
        assert_eq!(
            parse_client_stream(&stream[..10]),
            Err(ParseError::Incomplete {
                needed: Some(req.consumed)
            })
        );
        assert_eq!(
            parse_client_stream(&stream[..23]),
            Err(ParseError::Incomplete {
                needed: Some(req.consumed)
            })
        );
        assert_eq!(
            parse_client_stream(&stream[..3]),
            Err(ParseError::Incomplete { needed: None })
        );
    }

    #[test]
    fn socks5_with_password_keeps_no_credentials() {
        let mut stream = vec![5, 2, 0, 2, 1, 5];
        stream.extend_from_slice(b"alice");
        stream.push(9);
        stream.extend_from_slice(b"s3cr3tpwd");
        stream.extend_from_slice(&[5, 1, 0, 4]);
        stream.extend_from_slice(&"2606:4700::6810:1".parse::<Ipv6Addr>().unwrap().octets());
        stream.extend_from_slice(&8443u16.to_be_bytes());
        let stream = with_payload(&stream);
        let req = parse_client_stream(&stream).unwrap();
        assert_eq!(
            req.target,
            SocksTarget::Ip("2606:4700::6810:1".parse().unwrap())
        );
        assert_eq!(req.port, 8443);
        assert_eq!(&stream[req.consumed..], CLIENT_HELLO_START);
        let debug = format!("{req:?}");
        assert!(
            !debug.contains("alice") && !debug.contains("s3cr3t"),
            "{debug}"
        );
    }

    #[test]
    fn socks5_ipv4_and_ip_literal_domain() {
        let req = parse_client_stream(&[5, 1, 0, 5, 1, 0, 1, 1, 1, 1, 1, 0, 53]).unwrap();
        assert_eq!(
            (req.target, req.port, req.consumed),
            (SocksTarget::Ip("1.1.1.1".parse().unwrap()), 53, 13)
        );
        let mut stream = vec![5, 1, 0, 5, 1, 0, 3, 7];
        stream.extend_from_slice(b"8.8.4.4");
        stream.extend_from_slice(&[0, 80]);
        assert_eq!(
            parse_client_stream(&stream).unwrap().target,
            SocksTarget::Ip("8.8.4.4".parse().unwrap())
        );
    }

    #[test]
    fn rejects_what_is_not_a_connect() {
        assert_eq!(
            parse_client_stream(b"GET / HTTP/1.1"),
            Err(ParseError::Invalid("not a SOCKS handshake"))
        );
        assert_eq!(
            parse_client_stream(&[4, 2, 0, 80, 1, 2, 3, 4, 0]),
            Err(ParseError::Invalid("SOCKS4 command is not CONNECT"))
        );
        assert_eq!(
            parse_client_stream(&[5, 0, 5]),
            Err(ParseError::Invalid("SOCKS5 greeting offers no method"))
        );
        assert_eq!(
            parse_client_stream(&[5, 1, 0, 1, 3, 1, b'a', 1, b'b']),
            Err(ParseError::Invalid(
                "SOCKS5 authentication the greeting did not offer"
            ))
        );
        assert_eq!(
            parse_client_stream(&[5, 1, 0, 5, 3, 0, 1, 1, 2, 3, 4, 0, 53]),
            Err(ParseError::Invalid("SOCKS5 command is not CONNECT"))
        );
        assert_eq!(
            parse_client_stream(&[5, 1, 0, 5, 1, 0, 9]),
            Err(ParseError::Invalid("SOCKS5 address type unknown"))
        );
        assert_eq!(
            parse_client_stream(&[5, 1, 0, 5, 1, 0, 3, 0, 0, 80]),
            Err(ParseError::Invalid("SOCKS5 host name empty"))
        );
        let mut long_user = vec![4, 1, 0, 80, 1, 2, 3, 4];
        long_user.extend([b'u'; 300]);
        assert_eq!(
            parse_client_stream(&long_user),
            Err(ParseError::Invalid("SOCKS4 user id longer than 255 bytes"))
        );
        let mut bad_name = vec![4, 1, 0, 80, 0, 0, 0, 9, 0];
        bad_name.extend_from_slice(b"bad name\0");
        assert_eq!(
            parse_client_stream(&bad_name),
            Err(ParseError::Invalid("SOCKS4a host name malformed"))
        );
    }
}
