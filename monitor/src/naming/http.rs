//! HTTP/1.x request head: which host a plaintext request or a proxy request is for.
//!
//! Reads the request line and the header lines up to the blank line that ends the head (CRLF or
//! bare LF line ends). The host comes from an absolute-form target (`GET http://host/ ...`, a
//! request to a forward proxy), from a `CONNECT host:port` target (a tunnel through a proxy), or
//! else from the Host header; ports are split off and IPv6 brackets removed.
//!
//! Secrets: only the Host header's value is ever looked at. Other headers (Authorization, API
//! keys, cookies) are skipped by name and their values never copied. The target keeps its path
//! only: query strings (Gemini's `?key=`) and userinfo (`user:password@`) are dropped.
//!
//! Limits: the head must end within [`MAX_HEAD_LEN`] bytes, with at most [`MAX_HEADERS`] header
//! lines and a method of at most 16 bytes; obsolete line folding is rejected.
use std::net::Ipv6Addr;

use super::{ParseError, host_name};

/// The longest request head (request line, headers, blank line) accepted.
pub const MAX_HEAD_LEN: usize = 8 * 1024;
/// The most header lines accepted.
pub const MAX_HEADERS: usize = 100;
const MAX_METHOD_LEN: usize = 16;

/// The parts of a request head that name its destination. Holds no header value but Host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The request target without query, fragment or userinfo: `/v1/chat/completions`,
    /// `http://host:8080/path`, `host:443` (CONNECT) or `*`.
    pub target: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// The destination host (lowercase, no port, IPv6 without brackets).
    pub host: Option<String>,
    /// For `CONNECT host:port`, the tunnel's destination.
    pub connect_target: Option<(String, u16)>,
}

/// Parses the request head at the start of `buf` (bytes after the head, a body, are ignored).
pub fn parse_request(buf: &[u8]) -> Result<HttpRequest, ParseError> {
    let Some(head_len) = head_len(buf) else {
        let first_line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
        if first_line.len() < buf.len() {
            request_line(trim_cr(first_line))?;
        } else if !plausible_request_line_start(first_line) {
            return Err(ParseError::Invalid("not an HTTP/1.x request"));
        }
        return Err(if buf.len() >= MAX_HEAD_LEN {
            ParseError::Invalid("HTTP request head longer than 8 KiB")
        } else {
            ParseError::Incomplete { needed: None }
        });
    };
    let mut lines = buf[..head_len].split(|b| *b == b'\n').map(trim_cr);
    let (method, raw_target, version) = request_line(lines.next().unwrap_or_default())?;

    let mut host_header: Option<&[u8]> = None;
    for (count, line) in lines.take_while(|l| !l.is_empty()).enumerate() {
        if count == MAX_HEADERS {
            return Err(ParseError::Invalid("more HTTP header lines than the limit"));
        }
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(ParseError::Invalid("obsolete HTTP header line folding"));
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(ParseError::Invalid("HTTP header line without a colon"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
            return Err(ParseError::Invalid("malformed HTTP header name"));
        }
        if name.eq_ignore_ascii_case(b"host") {
            if host_header.is_some() {
                return Err(ParseError::Invalid("more than one Host header"));
            }
            host_header = Some(line[colon + 1..].trim_ascii());
        }
    }

    let (target, host, connect_target) = if method == "CONNECT" {
        let (host, port) = authority(raw_target)?;
        let port = port.ok_or(ParseError::Invalid("CONNECT target without a port"))?;
        (
            join_host_port(&host, Some(port)),
            Some(host.clone()),
            Some((host, port)),
        )
    } else if let Some((scheme, rest)) = split_scheme(raw_target) {
        let end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let (host, port) = authority(&rest[..end])?;
        let target = format!(
            "{scheme}://{}{}",
            join_host_port(&host, port),
            path_of(&rest[end..])
        );
        (target, Some(host), None)
    } else {
        let host = match host_header {
            Some([]) | None => None,
            Some(value) => Some(
                authority(value)
                    .map_err(|_| ParseError::Invalid("malformed Host header"))?
                    .0,
            ),
        };
        (path_of(raw_target), host, None)
    };
    Ok(HttpRequest {
        method: method.to_owned(),
        target,
        version: version.to_owned(),
        host,
        connect_target,
    })
}

/// The length of the head, through its blank line, if it ends within the limit.
fn head_len(buf: &[u8]) -> Option<usize> {
    let window = &buf[..buf.len().min(MAX_HEAD_LEN)];
    let mut start = 0;
    while let Some(nl) = window[start..].iter().position(|b| *b == b'\n') {
        let line = trim_cr(&window[start..start + nl]);
        if line.is_empty() && start > 0 {
            return Some(start + nl + 1);
        }
        start += nl + 1;
    }
    None
}

pub(super) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `method SP target SP HTTP/1.x`, each part checked.
pub(super) fn request_line(line: &[u8]) -> Result<(&str, &[u8], &'static str), ParseError> {
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Invalid("not an HTTP/1.x request line"));
    };
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.iter().all(|b| is_tchar(*b)) {
        return Err(ParseError::Invalid("not an HTTP/1.x request line"));
    }
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return Err(ParseError::Invalid("malformed HTTP request target"));
    }
    let version = match version {
        b"HTTP/1.1" => "HTTP/1.1",
        b"HTTP/1.0" => "HTTP/1.0",
        _ => return Err(ParseError::Invalid("not an HTTP/1.x request line")),
    };
    // Tokens are ASCII, so this conversion cannot fail.
    let method = std::str::from_utf8(method)
        .map_err(|_| ParseError::Invalid("not an HTTP/1.x request line"))?;
    Ok((method, target, version))
}

/// Whether an unfinished first line can still become a request line.
pub(super) fn plausible_request_line_start(line: &[u8]) -> bool {
    let line = trim_cr(line);
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let method_ok = method.len() <= MAX_METHOD_LEN && method.iter().all(|b| is_tchar(*b));
    match (parts.next(), parts.next(), parts.next()) {
        (None, ..) => method_ok,
        (Some(target), None, _) => {
            method_ok && !method.is_empty() && target.iter().all(u8::is_ascii_graphic)
        }
        (Some(target), Some(version), None) => {
            method_ok
                && !method.is_empty()
                && !target.is_empty()
                && target.iter().all(u8::is_ascii_graphic)
                && (b"HTTP/1.1".starts_with(version) || b"HTTP/1.0".starts_with(version))
        }
        _ => false,
    }
}

/// RFC 9110 token characters.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `scheme://rest` of an absolute-form target.
pub(super) fn split_scheme(target: &[u8]) -> Option<(&str, &[u8])> {
    let sep = target.windows(3).position(|w| w == b"://")?;
    let scheme = &target[..sep];
    let valid = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let scheme = std::str::from_utf8(scheme)
        .ok()
        .filter(|_| valid && scheme.len() <= 16)?;
    Some((scheme, &target[sep + 3..]))
}

/// The path of a target: everything before `?` or `#` (ASCII, as the request line was checked).
fn path_of(target: &[u8]) -> String {
    let end = target
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(target.len());
    String::from_utf8_lossy(&target[..end]).into_owned()
}

/// `[userinfo@]host[:port]` with host a name, an IPv4 address or a bracketed IPv6 address.
/// Userinfo is dropped; an empty port counts as none.
pub(super) fn authority(raw: &[u8]) -> Result<(String, Option<u16>), ParseError> {
    let raw = raw
        .iter()
        .rposition(|b| *b == b'@')
        .map_or(raw, |at| &raw[at + 1..]);
    let (host, port) = if let Some(rest) = raw.strip_prefix(b"[") {
        let close = rest
            .iter()
            .position(|b| *b == b']')
            .ok_or(ParseError::Invalid("unclosed IPv6 literal"))?;
        let address = std::str::from_utf8(&rest[..close])
            .ok()
            .and_then(|text| text.parse::<Ipv6Addr>().ok())
            .ok_or(ParseError::Invalid("malformed IPv6 literal"))?;
        let port = match &rest[close + 1..] {
            [] => None,
            [b':', digits @ ..] => Some(digits),
            _ => return Err(ParseError::Invalid("bytes after an IPv6 literal")),
        };
        (address.to_string(), port)
    } else {
        let (name, port) = match raw.iter().position(|b| *b == b':') {
            Some(colon) => (&raw[..colon], Some(&raw[colon + 1..])),
            None => (raw, None),
        };
        (
            host_name(name).ok_or(ParseError::Invalid("malformed host name"))?,
            port,
        )
    };
    let port = match port {
        None | Some([]) => None,
        Some(digits) if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {
            let number = digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            Some(u16::try_from(number).map_err(|_| ParseError::Invalid("port out of range"))?)
        }
        Some(_) => return Err(ParseError::Invalid("malformed port")),
    };
    Ok((host, port))
}

fn join_host_port(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_with_host_header() {
        let req = parse_request(
            b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: API.Relay.example:8080\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/v1/chat/completions");
        assert_eq!(req.version, "HTTP/1.1");
        assert_eq!(req.host.as_deref(), Some("api.relay.example"));
        assert_eq!(req.connect_target, None);
    }

    #[test]
    fn host_header_forms() {
        let host = |h: &str| {
            parse_request(format!("GET / HTTP/1.1\r\nhOsT:  {h} \r\n\r\n").as_bytes())
                .map(|r| r.host)
        };
        assert_eq!(
            host("[2001:DB8::1]:8443"),
            Ok(Some("2001:db8::1".to_owned()))
        );
        assert_eq!(host("[::1]"), Ok(Some("::1".to_owned())));
        assert_eq!(host("10.1.2.3:80"), Ok(Some("10.1.2.3".to_owned())));
        assert_eq!(host("example.com:"), Ok(Some("example.com".to_owned())));
        assert_eq!(host(""), Ok(None));
        assert_eq!(
            host("2001:db8::1"),
            Err(ParseError::Invalid("malformed Host header"))
        );
        assert_eq!(
            host("[::1"),
            Err(ParseError::Invalid("malformed Host header"))
        );
        assert_eq!(
            host("a.example:99999"),
            Err(ParseError::Invalid("malformed Host header"))
        );
        assert_eq!(
            host("bad host"),
            Err(ParseError::Invalid("malformed Host header"))
        );
        // No Host header at all (HTTP/1.0).
        assert_eq!(parse_request(b"GET / HTTP/1.0\n\n").unwrap().host, None);
    }

    #[test]
    fn absolute_form_drops_userinfo_and_query() {
        let req =
            parse_request(b"GET http://user:hunter2@Gemini.Example:8080/v1beta/models?key=AIzaSECRET HTTP/1.1\r\nHost: other.example\r\n\r\n")
                .unwrap();
        assert_eq!(req.host.as_deref(), Some("gemini.example"));
        assert_eq!(req.target, "http://gemini.example:8080/v1beta/models");
        let debug = format!("{req:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("AIza"),
            "{debug}"
        );
        let req = parse_request(b"GET http://[2001:db8::2] HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(req.host.as_deref(), Some("2001:db8::2"));
        assert_eq!(req.target, "http://[2001:db8::2]");
    }

    #[test]
    fn connect_names_the_tunnel() {
        let req = parse_request(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n\x16\x03\x01").unwrap();
        assert_eq!(req.connect_target, Some(("api.openai.com".to_owned(), 443)));
        assert_eq!(req.host.as_deref(), Some("api.openai.com"));
        assert_eq!(req.target, "api.openai.com:443");
        assert!(!format!("{req:?}").contains("dXNlcjpwYXNz"));
        let req = parse_request(b"CONNECT [2606:4700::1]:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(req.connect_target, Some(("2606:4700::1".to_owned(), 443)));
        assert_eq!(req.target, "[2606:4700::1]:443");
        assert_eq!(
            parse_request(b"CONNECT api.openai.com HTTP/1.1\r\n\r\n"),
            Err(ParseError::Invalid("CONNECT target without a port"))
        );
    }

    #[test]
    fn authorization_never_leaves_the_parser() {
        let raw = b"POST /v1/messages HTTP/1.1\r\nHost: relay.example\r\nAuthorization: Bearer sk-ant-api03-SECRETSECRET\r\nx-api-key: sk-proj-OTHERSECRET\r\nCookie: session=abc123\r\n\r\n{\"prompt\":\"hi\"}";
        let req = parse_request(raw).unwrap();
        assert_eq!(req.host.as_deref(), Some("relay.example"));
        let debug = format!("{req:?}");
        for secret in ["sk-", "SECRET", "Bearer", "abc123", "prompt"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
    }

    #[test]
    fn incomplete_until_the_blank_line() {
        let full = b"GET /x HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse_request(&full[..cut]),
                Err(ParseError::Incomplete { needed: None }),
                "cut {cut}"
            );
        }
        assert!(parse_request(full).is_ok());
    }

    #[test]
    fn rejects_non_http_early() {
        assert_eq!(
            parse_request(b"\x16\x03\x01\x02\x00"),
            Err(ParseError::Invalid("not an HTTP/1.x request"))
        );
        assert_eq!(
            parse_request(b"\x05\x01\x00"),
            Err(ParseError::Invalid("not an HTTP/1.x request"))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/2"),
            Err(ParseError::Invalid("not an HTTP/1.x request"))
        );
        assert_eq!(
            parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Err(ParseError::Invalid("not an HTTP/1.x request line"))
        );
        assert_eq!(
            parse_request(b"\r\n\r\n"),
            Err(ParseError::Invalid("not an HTTP/1.x request line"))
        );
        assert_eq!(
            parse_request(b"GET  / HTTP/1.1\r\n"),
            Err(ParseError::Invalid("not an HTTP/1.x request line"))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(ParseError::Invalid("more than one Host header"))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"),
            Err(ParseError::Invalid("obsolete HTTP header line folding"))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"),
            Err(ParseError::Invalid("HTTP header line without a colon"))
        );
    }

    #[test]
    fn limits() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD_LEN + 100 {
            big.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        assert_eq!(
            parse_request(&big),
            Err(ParseError::Invalid("HTTP request head longer than 8 KiB"))
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&many),
            Err(ParseError::Invalid("more HTTP header lines than the limit"))
        );
        let long_method = format!("{} / HTTP/1.1\r\n\r\n", "A".repeat(17));
        assert!(matches!(
            parse_request(long_method.as_bytes()),
            Err(ParseError::Invalid(_))
        ));
    }
}
