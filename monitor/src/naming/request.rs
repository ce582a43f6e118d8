//! The first plaintext bytes of a TLS connection, as a uprobe on the TLS library's write
//! function sees them (at most a few KiB): which API request they start, and, for the bytes a
//! server writes back, which relay software answered.
//!
//! Input: one byte slice, which may be
//! - an HTTP/1.x request: request line (must be complete), header lines, and after the blank
//!   line the start of the body;
//! - an HTTP/2 connection start: the client preface, then frames (SETTINGS, WINDOW_UPDATE,
//!   PRIORITY, PING and unknown types skipped), the first HEADERS frame of a client stream with
//!   its CONTINUATION frames (PADDED and PRIORITY flags handled), decoded with HPACK, and DATA
//!   frames of that stream that follow (the body);
//! - HTTP/2 frames without the preface, when the slice starts with a HEADERS frame: Go's
//!   crypto/tls client writes the preface and its SETTINGS in one write and the request in the
//!   next, so a caller can pass either that later write alone or the concatenation of both.
//!
//! The HPACK dynamic table starts empty with the default size (4096): the first request on a
//! connection is encoded before the server's SETTINGS can have been acknowledged. (The client's
//! own SETTINGS_HEADER_TABLE_SIZE bounds the server's encoder, not the client's, so it is
//! validated but changes nothing here.)
//!
//! Output: a [`RequestHead`] that keeps only what names the API: method, path (no query string
//! or fragment, where Gemini's `?key=` lives), authority, the NAMES of API-identifying headers
//! (values only for three short, non-secret Stainless SDK headers), which provider's key format
//! a credential has (a `&'static str` from a fixed list, never a byte of the key), the
//! User-Agent's first product token, and the body's top-level `"model"`. There is no field that
//! could hold a header value or body text beyond these, so a secret cannot end up in a result.
//!
//! Truncation: the capture may stop anywhere. An HTTP/1 head or an HTTP/2 header block cut
//! short still gives the fields that are complete, with `truncated` set; the request line (or
//! `:method` and `:path`) must be there, else the answer is `Incomplete`.
//!
//! Limits: at most [`MAX_INPUT`] bytes are looked at, [`MAX_HEADER_LINES`] HTTP/1 header lines,
//! [`MAX_FRAMES`] HTTP/2 frames, the HPACK limits of `hpack`, a path of [`MAX_PATH_LEN`] bytes
//! (longer paths are cut), a model of [`MAX_MODEL_LEN`] bytes, JSON nesting of
//! [`MAX_JSON_DEPTH`]. The JSON scanner is not a parser: it tracks strings, escapes and depth
//! only, enough to find a key of the top-level object.
use serde::Serialize;

use super::{ParseError, cursor::Cursor, hpack, http};

/// Bytes of the input looked at; the rest is ignored.
pub const MAX_INPUT: usize = 64 * 1024;
/// The most HTTP/1 header lines accepted.
pub const MAX_HEADER_LINES: usize = hpack::MAX_FIELDS;
/// The most HTTP/2 frames walked.
pub const MAX_FRAMES: usize = 64;
/// Longest path kept; a longer path is cut to this length.
pub const MAX_PATH_LEN: usize = 512;
/// Longest User-Agent product token kept.
pub const MAX_USER_AGENT_LEN: usize = 64;
/// Longest model name kept.
pub const MAX_MODEL_LEN: usize = 128;
/// Most API header names kept.
pub const MAX_API_HEADERS: usize = 32;
/// Deepest JSON nesting the body scanner follows.
pub const MAX_JSON_DEPTH: usize = 64;
const MAX_METHOD_LEN: usize = 16;
const MAX_STAINLESS_NAME_LEN: usize = 48;
const MAX_STAINLESS_VALUE_LEN: usize = 32;
/// Shorter tokens are not taken for keys (real ones are 39 bytes and more).
const MIN_KEY_LEN: usize = 20;
/// The default SETTINGS_MAX_FRAME_SIZE: a HEADERS frame without a preface must fit in it.
const DEFAULT_MAX_FRAME_SIZE: usize = 16_384;
/// 1xx responses skipped before the final one.
const MAX_INTERIM_RESPONSES: usize = 4;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Provider key formats, most specific first. Only these strings are ever reported.
pub const KEY_PREFIXES: [&str; 5] = ["sk-ant-", "sk-proj-", "sk-or-", "sk-", "AIza"];

/// Header names kept (names only).
const API_HEADER_NAMES: [&str; 8] = [
    "anthropic-version",
    "anthropic-beta",
    "x-api-key",
    "x-goog-api-key",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "authorization",
];
/// Stainless SDK headers whose short values are kept: they name a language and a version.
const STAINLESS_VALUED: [&str; 3] = [
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-runtime",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http1,
    Http2,
}

/// An API-identifying header that was present: its lowercase name, and a value only for the
/// Stainless headers that name the SDK's language, version and runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiHeader {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What a request's first bytes say about the API it calls. Holds no credential and no body
/// text but the model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub protocol: Protocol,
    pub method: String,
    /// Printable ASCII, without query string or fragment, at most [`MAX_PATH_LEN`] bytes.
    pub path: String,
    /// From Host or `:authority`: lowercase, no port, no brackets around IPv6.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub api_headers: Vec<ApiHeader>,
    /// Which of [`KEY_PREFIXES`] a credential in Authorization (Bearer), x-api-key or
    /// x-goog-api-key starts with.
    pub key_prefix: Option<&'static str>,
    /// The first User-Agent token (`OpenAI/Python`, `curl/8.5.0`).
    pub user_agent: Option<String>,
    /// The top-level `"model"` of a JSON body, or the model of a `/models/{m}:action` path.
    pub model: Option<String>,
    /// The head (or header block) was cut short: fields after the cut are unknown.
    pub truncated: bool,
}

/// What a response's first bytes say: its status and the relay software that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub protocol: Protocol,
    pub status: u16,
    pub relay_software: Option<&'static str>,
    pub truncated: bool,
}

/// Reads an HTTP/1.x or HTTP/2 request from the first bytes a client wrote.
pub fn parse_request(bytes: &[u8]) -> Result<RequestHead, ParseError> {
    let bytes = &bytes[..bytes.len().min(MAX_INPUT)];
    if bytes.is_empty() {
        return Err(ParseError::Incomplete { needed: None });
    }
    if let Some(frames) = bytes.strip_prefix(H2_PREFACE) {
        return parse_h2_request(Frames::new(frames, H2_PREFACE.len()));
    }
    if H2_PREFACE.starts_with(bytes) {
        return Err(ParseError::Incomplete {
            needed: Some(H2_PREFACE.len()),
        });
    }
    if starts_with_frame(bytes, &[HEADERS]) {
        return parse_h2_request(Frames::new(bytes, 0));
    }
    parse_h1_request(bytes)
}

/// Reads the status and relay markers from the first bytes a server wrote back.
pub fn parse_response(bytes: &[u8]) -> Result<ResponseHead, ParseError> {
    let bytes = &bytes[..bytes.len().min(MAX_INPUT)];
    if bytes.is_empty() {
        return Err(ParseError::Incomplete { needed: None });
    }
    if starts_with_frame(bytes, &[SETTINGS, HEADERS]) {
        return parse_h2_response(bytes);
    }
    if !(bytes.starts_with(b"HTTP/1.") || b"HTTP/1.".starts_with(bytes)) {
        return Err(ParseError::Invalid("not an HTTP response"));
    }
    parse_h1_response(bytes)
}

// ---- What the headers say, shared by both protocols ----

/// The evidence gathered from header fields, in either protocol.
#[derive(Default)]
struct Evidence {
    authority: Option<(String, Option<u16>)>,
    api_headers: Vec<ApiHeader>,
    key_prefix: Option<&'static str>,
    user_agent: Option<String>,
    chunked: bool,
    encoded_body: bool,
}

impl Evidence {
    /// One regular header field; `name` is lowercase.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        let value = value.trim_ascii();
        match name {
            b"user-agent" if self.user_agent.is_none() => {
                self.user_agent = product_token(value);
            }
            b"transfer-encoding" => {
                self.chunked = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            b"content-encoding" => {
                self.encoded_body = !value.eq_ignore_ascii_case(b"identity") && !value.is_empty();
            }
            _ => {}
        }
        if let Some(known) = API_HEADER_NAMES
            .iter()
            .find(|known| known.as_bytes() == name)
        {
            self.keep(known, None);
            let key = match name {
                b"authorization" => bearer_token(value),
                b"x-api-key" | b"x-goog-api-key" => Some(value),
                _ => None,
            };
            if self.key_prefix.is_none() {
                self.key_prefix = key.and_then(key_prefix);
            }
        } else if name.starts_with(b"x-stainless-")
            && name.len() <= MAX_STAINLESS_NAME_LEN
            && name
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            // Checked above: ASCII.
            let name = String::from_utf8_lossy(name);
            let value = if STAINLESS_VALUED.contains(&&*name) {
                short_value(value)
            } else {
                None
            };
            self.keep(&name, value);
        }
    }

    fn keep(&mut self, name: &str, value: Option<String>) {
        if self.api_headers.len() < MAX_API_HEADERS
            && !self.api_headers.iter().any(|h| h.name == name)
        {
            self.api_headers.push(ApiHeader {
                name: name.to_owned(),
                value,
            });
        }
    }

    fn set_authority(&mut self, value: &[u8]) -> Result<(), ParseError> {
        if self.authority.is_some() {
            return Err(ParseError::Invalid("more than one authority"));
        }
        self.authority = Some(authority(value)?);
        Ok(())
    }

    fn into_head(
        self,
        protocol: Protocol,
        method: String,
        path: String,
        body: Option<&[u8]>,
        truncated: bool,
    ) -> RequestHead {
        let body_model = match body {
            Some(body) if !self.encoded_body => {
                let body = if self.chunked {
                    first_chunk(body)
                } else {
                    body
                };
                json_model(body)
            }
            _ => None,
        };
        let (host, port) = self.authority.map_or((None, None), |(h, p)| (Some(h), p));
        RequestHead {
            protocol,
            method,
            model: body_model.or_else(|| path_model(&path)),
            path,
            host,
            port,
            api_headers: self.api_headers,
            key_prefix: self.key_prefix,
            user_agent: self.user_agent,
            truncated,
        }
    }
}

/// `host[:port]`, a bracketed IPv6 literal allowed; user-info is refused.
fn authority(value: &[u8]) -> Result<(String, Option<u16>), ParseError> {
    if value.contains(&b'@') {
        return Err(ParseError::Invalid("user-info in the request authority"));
    }
    http::authority(value.trim_ascii())
        .map_err(|_| ParseError::Invalid("malformed request authority"))
}

/// The credential of `Bearer <token>`.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    value[..space]
        .eq_ignore_ascii_case(b"bearer")
        .then(|| value[space + 1..].trim_ascii())
}

/// Which provider format a key has; never any of the key's own bytes.
fn key_prefix(key: &[u8]) -> Option<&'static str> {
    if key.len() < MIN_KEY_LEN
        || !key
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return None;
    }
    KEY_PREFIXES
        .iter()
        .copied()
        .find(|prefix| key.starts_with(prefix.as_bytes()))
}

/// The first product of a User-Agent (`name` or `name/version`, RFC 9110 tokens), if it is
/// short and does not look like a key.
fn product_token(value: &[u8]) -> Option<String> {
    let token = value.split(|b| *b == b' ' || *b == b'\t').next()?;
    let mut parts = token.split(|b| *b == b'/');
    let name = parts.next()?;
    let version = parts.next();
    let token_ok = |part: &[u8]| !part.is_empty() && part.iter().all(|b| http::is_tchar(*b));
    if token.len() > MAX_USER_AGENT_LEN
        || parts.next().is_some()
        || !token_ok(name)
        || version.is_some_and(|v| !token_ok(v))
        || KEY_PREFIXES
            .iter()
            .any(|prefix| token.starts_with(prefix.as_bytes()))
    {
        return None;
    }
    Some(String::from_utf8_lossy(token).into_owned())
}

/// A Stainless header's value, when it is a short version-like word.
fn short_value(value: &[u8]) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_STAINLESS_VALUE_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    ok.then(|| String::from_utf8_lossy(value).into_owned())
}

/// The path of a request target: no query, no fragment, printable ASCII, cut to
/// [`MAX_PATH_LEN`]. Origin form (`/...`) or `*`.
fn request_path(target: &[u8]) -> Result<String, ParseError> {
    let end = target
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(target.len());
    let path = &target[..end];
    if !path.iter().all(u8::is_ascii_graphic) {
        return Err(ParseError::Invalid(
            "non-printable byte in the request path",
        ));
    }
    if !(path.starts_with(b"/") || path == b"*") {
        return Err(ParseError::Invalid("request path not in origin form"));
    }
    Ok(String::from_utf8_lossy(&path[..path.len().min(MAX_PATH_LEN)]).into_owned())
}

fn valid_method(method: &[u8]) -> bool {
    !method.is_empty()
        && method.len() <= MAX_METHOD_LEN
        && method.iter().all(|b| http::is_tchar(*b))
}

/// A model name as kept: `[A-Za-z0-9._:/@+-]{1,128}`.
fn model_name(raw: &[u8]) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_MODEL_LEN
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(b));
    ok.then(|| String::from_utf8_lossy(raw).into_owned())
}

/// Gemini names the model in the path: `.../models/{model}:{action}`.
fn path_model(path: &str) -> Option<String> {
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        if segment == "models" {
            let (model, _action) = segments.next()?.split_once(':')?;
            return model_name(model.as_bytes());
        }
    }
    None
}

/// The top-level `"model"` string of a JSON object, scanning strings, escapes and depth only.
/// `None` when the body is not an object, the key is absent (or past the end of the bytes), its
/// value is not a string, or the name is not a plausible model name.
fn json_model(body: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut model_next = false;
    let mut i = 0;
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'{' {
        return None;
    }
    while i < body.len() {
        let byte = body[i];
        i += 1;
        match byte {
            b'{' | b'[' => {
                model_next = false;
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return None;
                }
                expect_key = byte == b'{' && depth == 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
                expect_key = false;
            }
            b',' => expect_key = depth == 1,
            b'"' => {
                let begin = i;
                let mut escaped = false;
                loop {
                    let b = *body.get(i)?;
                    i += 1;
                    match (escaped, b) {
                        (false, b'\\') => escaped = true,
                        (false, b'"') => break,
                        _ => escaped = false,
                    }
                }
                let text = &body[begin..i - 1];
                if depth == 1 && expect_key {
                    expect_key = false;
                    model_next = text == b"model";
                } else if depth == 1 && model_next {
                    return model_name(text);
                }
            }
            b':' => {}
            b if b.is_ascii_whitespace() => {}
            _ => {
                if depth == 1 {
                    // A number, true, false or null where the value goes.
                    model_next = false;
                }
            }
        }
    }
    None
}

/// The data of the first chunk of a chunked body (its size line skipped).
fn first_chunk(body: &[u8]) -> &[u8] {
    let Some(nl) = body.iter().position(|b| *b == b'\n') else {
        return &[];
    };
    let size_line = http::trim_cr(&body[..nl]);
    let digits = size_line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return &[];
    }
    &body[nl + 1..]
}

// ---- HTTP/1.x ----

/// The header lines after the first line: each complete line is handed to `field` (name as
/// written, value untrimmed). Returns the body after the blank line, or `None` when the head
/// was cut short.
fn h1_header_lines(
    mut rest: &[u8],
    mut field: impl FnMut(&[u8], &[u8]) -> Result<(), ParseError>,
) -> Result<Option<&[u8]>, ParseError> {
    let mut lines = 0;
    while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
        let line = http::trim_cr(&rest[..nl]);
        rest = &rest[nl + 1..];
        if line.is_empty() {
            return Ok(Some(rest));
        }
        lines += 1;
        if lines > MAX_HEADER_LINES {
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
        if name.is_empty() || !name.iter().all(|b| http::is_tchar(*b)) {
            return Err(ParseError::Invalid("malformed HTTP header name"));
        }
        field(name, &line[colon + 1..])?;
    }
    Ok(None)
}

fn parse_h1_request(bytes: &[u8]) -> Result<RequestHead, ParseError> {
    let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
        return Err(if http::plausible_request_line_start(bytes) {
            ParseError::Incomplete { needed: None }
        } else {
            ParseError::Invalid("not an HTTP request")
        });
    };
    let (method, target, _version) = http::request_line(http::trim_cr(&bytes[..nl]))?;
    if method == "CONNECT" {
        return Err(ParseError::Invalid(
            "CONNECT opens a tunnel, not an API call",
        ));
    }
    let mut evidence = Evidence::default();
    let path = match http::split_scheme(target) {
        Some((_scheme, rest)) => {
            // Absolute form, as sent to a forward proxy.
            let end = rest
                .iter()
                .position(|b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            evidence.set_authority(&rest[..end])?;
            match &rest[end..] {
                [] => "/".to_owned(),
                [b'?' | b'#', ..] => "/".to_owned(),
                path => request_path(path)?,
            }
        }
        None => request_path(target)?,
    };
    let absolute = evidence.authority.is_some();
    let mut host_seen = false;
    let body = h1_header_lines(&bytes[nl + 1..], |name, value| {
        let name = name.to_ascii_lowercase();
        if name == b"host" {
            if host_seen {
                return Err(ParseError::Invalid("more than one Host header"));
            }
            host_seen = true;
            // The absolute-form target wins over Host (RFC 9112 section 3.2.2).
            if !absolute && !value.trim_ascii().is_empty() {
                evidence.set_authority(value)?;
            }
            return Ok(());
        }
        evidence.field(&name, value);
        Ok(())
    })?;
    Ok(evidence.into_head(
        Protocol::Http1,
        method.to_owned(),
        path,
        body,
        body.is_none(),
    ))
}

/// `HTTP/1.x NNN reason`: the status code.
fn status_line(line: &[u8]) -> Result<u16, ParseError> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or(ParseError::Invalid("not an HTTP/1.x status line"))?;
    let (code, reason) = rest.split_at(rest.len().min(3));
    if !(reason.is_empty() || reason.starts_with(b" ")) {
        return Err(ParseError::Invalid("not an HTTP/1.x status line"));
    }
    status_code(code).ok_or(ParseError::Invalid("malformed HTTP status code"))
}

fn status_code(code: &[u8]) -> Option<u16> {
    match code {
        [a @ b'1'..=b'5', b, c] if b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

fn parse_h1_response(bytes: &[u8]) -> Result<ResponseHead, ParseError> {
    let mut rest = bytes;
    let mut relay = RelayMarker::default();
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            return Err(ParseError::Incomplete { needed: None });
        };
        let status = status_line(http::trim_cr(&rest[..nl]))?;
        let body = h1_header_lines(&rest[nl + 1..], |name, _| {
            relay.see(&name.to_ascii_lowercase());
            Ok(())
        })?;
        match body {
            Some(after) if (100..200).contains(&status) && status != 101 => rest = after,
            _ => {
                return Ok(ResponseHead {
                    protocol: Protocol::Http1,
                    status,
                    relay_software: relay.software,
                    truncated: body.is_none(),
                });
            }
        }
    }
    Err(ParseError::Invalid("too many interim HTTP responses"))
}

/// Relay and gateway software recognised from the names of its response headers. Each marker
/// is set by the project's own code:
/// - new-api (QuantumNous/new-api) sets `X-New-Api-Version` on every response (middleware
///   `PoweredBy`); it is a fork of one-api and also sets `X-Oneapi-Request-Id`, so it wins;
/// - one-api (songquanpeng/one-api) sets `X-Oneapi-Request-Id` (`common.RequestIdKey`);
/// - LiteLLM's proxy sets `x-litellm-version`, `x-litellm-call-id` and other `x-litellm-*`;
/// - Helicone's proxy sets `Helicone-Id` on the responses it relays.
#[derive(Default)]
struct RelayMarker {
    software: Option<&'static str>,
}

impl RelayMarker {
    /// One response header name, lowercase.
    fn see(&mut self, name: &[u8]) {
        let found = match name {
            b"x-new-api-version" => "new-api",
            b"x-oneapi-request-id" => "one-api",
            b"helicone-id" => "helicone",
            _ if name.starts_with(b"x-litellm-") => "litellm",
            _ => return,
        };
        match self.software {
            None | Some("one-api") => self.software = Some(found),
            Some(_) => {}
        }
    }
}

// ---- HTTP/2 ----

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// One frame: its header, and as much of its payload as the bytes hold.
struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream: u32,
    len: usize,
    payload: &'a [u8],
}

impl Frame<'_> {
    fn complete(&self) -> bool {
        self.payload.len() == self.len
    }
}

/// Frames one after another; the last may be partial. `None` when not even a frame header is
/// left.
struct Frames<'a> {
    cursor: Cursor<'a>,
    /// Where the frames start in the input (after a preface).
    base: usize,
    seen: usize,
}

impl<'a> Frames<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Frames {
            cursor: Cursor::new(bytes, ParseError::Incomplete { needed: None }),
            base,
            seen: 0,
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'a>>, ParseError> {
        if self.cursor.remaining() < 9 {
            return Ok(None);
        }
        self.seen += 1;
        if self.seen > MAX_FRAMES {
            return Err(ParseError::Invalid("more HTTP/2 frames than the limit"));
        }
        let header: [u8; 9] = self.cursor.array()?;
        let len = frame_len(&header);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let payload = self.cursor.take(len.min(self.cursor.remaining()))?;
        Ok(Some(Frame {
            kind: header[3],
            flags: header[4],
            stream,
            len,
            payload,
        }))
    }

    /// The total length the input needs to hold the frame just read.
    fn needed_for(&self, frame: &Frame<'_>) -> Option<usize> {
        Some(self.base + self.cursor.pos() - frame.payload.len() + frame.len)
    }
}

/// The 24-bit length at the start of a frame header.
fn frame_len(header: &[u8]) -> usize {
    match header {
        [a, b, c, ..] => (usize::from(*a) << 16) | (usize::from(*b) << 8) | usize::from(*c),
        _ => 0,
    }
}

/// Whether the bytes start with a plausible frame header of one of `kinds` (no preface): a
/// length within the default maximum frame size, and for HEADERS an odd client stream.
fn starts_with_frame(bytes: &[u8], kinds: &[u8]) -> bool {
    let Some(header) = bytes.get(..9) else {
        return false;
    };
    let len = frame_len(header);
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let kind = header[3];
    kinds.contains(&kind)
        && len <= DEFAULT_MAX_FRAME_SIZE
        && match kind {
            HEADERS => {
                stream % 2 == 1
                    && stream >> 31 == 0
                    && header[4] & !(END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG) == 0
            }
            _ => stream == 0 && header[4] & !ACK == 0 && len.is_multiple_of(6),
        }
}

/// Checks a control frame met before the header block: what may be skipped, what ends the
/// search.
fn control_frame(frame: &Frame<'_>) -> Result<(), ParseError> {
    let (fixed_len, on_stream_zero) = match frame.kind {
        SETTINGS => {
            if frame.stream != 0
                || (frame.flags & ACK != 0 && frame.len != 0)
                || !frame.len.is_multiple_of(6)
            {
                return Err(ParseError::Invalid("malformed HTTP/2 SETTINGS frame"));
            }
            // SETTINGS_HEADER_TABLE_SIZE is the sender's decoder limit: it bounds the peer's
            // encoder, not the sender's, so it changes nothing here (see the design note).
            for setting in frame.payload.chunks_exact(6) {
                let id = u16::from_be_bytes([setting[0], setting[1]]);
                let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                let valid = match id {
                    SETTINGS_ENABLE_PUSH => value <= 1,
                    SETTINGS_INITIAL_WINDOW_SIZE => value <= 0x7fff_ffff,
                    SETTINGS_MAX_FRAME_SIZE => (16_384..=0xff_ffff).contains(&value),
                    _ => true,
                };
                if !valid {
                    return Err(ParseError::Invalid("HTTP/2 setting out of range"));
                }
            }
            return Ok(());
        }
        WINDOW_UPDATE => (Some(4), None),
        PRIORITY => (Some(5), Some(false)),
        PING => (Some(8), Some(true)),
        RST_STREAM | GOAWAY => {
            return Err(ParseError::Invalid("HTTP/2 stream or connection closed"));
        }
        DATA | CONTINUATION => {
            return Err(ParseError::Invalid("HTTP/2 frame out of order"));
        }
        // Unknown frame types are ignored (RFC 9113 section 4.1).
        _ => (None, None),
    };
    if fixed_len.is_some_and(|len| len != frame.len)
        || on_stream_zero.is_some_and(|zero| zero != (frame.stream == 0))
    {
        return Err(ParseError::Invalid("malformed HTTP/2 control frame"));
    }
    Ok(())
}

/// The payload of a HEADERS, PUSH_PROMISE or DATA frame without padding and the priority or
/// promised-stream fields; of a partial frame, what is there.
fn fragment<'a>(frame: &Frame<'a>) -> Result<&'a [u8], ParseError> {
    let mut skip = 0;
    let mut pad = 0;
    if frame.flags & PADDED != 0 && frame.kind != CONTINUATION {
        pad = usize::from(
            *frame
                .payload
                .first()
                .ok_or(ParseError::Incomplete { needed: None })?,
        );
        skip = 1;
    }
    match frame.kind {
        HEADERS if frame.flags & PRIORITY_FLAG != 0 => skip += 5,
        PUSH_PROMISE => skip += 4,
        _ => {}
    }
    if skip + pad > frame.len {
        return Err(ParseError::Invalid("HTTP/2 padding longer than its frame"));
    }
    let end = (frame.len - pad).min(frame.payload.len());
    Ok(frame.payload.get(skip..end).unwrap_or_default())
}

/// A header block: the fragment of `first` and of the CONTINUATION frames that follow.
struct Block {
    bytes: Vec<u8>,
    complete: bool,
    end_stream: bool,
}

fn header_block(first: &Frame<'_>, frames: &mut Frames<'_>) -> Result<Block, ParseError> {
    let mut block = Block {
        bytes: fragment(first)?.to_vec(),
        complete: first.complete() && first.flags & END_HEADERS != 0,
        end_stream: first.flags & END_STREAM != 0,
    };
    let mut more = first.complete() && first.flags & END_HEADERS == 0;
    while more {
        let Some(next) = frames.next_frame()? else {
            break;
        };
        if next.kind != CONTINUATION || next.stream != first.stream {
            return Err(ParseError::Invalid(
                "HTTP/2 header block without its CONTINUATION",
            ));
        }
        block.bytes.extend_from_slice(next.payload);
        block.complete = next.complete() && next.flags & END_HEADERS != 0;
        more = next.complete() && next.flags & END_HEADERS == 0;
    }
    Ok(block)
}

/// Decodes a header block; an end inside a field is an error only when the block was complete.
fn decode_block(
    decoder: &mut hpack::Decoder,
    block: &Block,
    field: impl FnMut(&[u8], &[u8]),
) -> Result<bool, ParseError> {
    match decoder.decode(&block.bytes, field) {
        Ok(()) => Ok(!block.complete),
        Err(ParseError::Incomplete { .. }) if block.complete => {
            Err(ParseError::Invalid("HPACK block ends inside a field"))
        }
        Err(ParseError::Incomplete { .. }) => Ok(true),
        Err(invalid) => Err(invalid),
    }
}

/// The request's pseudo-header fields.
#[derive(Default)]
struct Pseudo {
    method: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    regular_seen: bool,
}

fn parse_h2_request(mut frames: Frames<'_>) -> Result<RequestHead, ParseError> {
    let (first, block) = loop {
        let Some(frame) = frames.next_frame()? else {
            return Err(ParseError::Incomplete { needed: None });
        };
        match frame.kind {
            HEADERS => {
                if frame.stream % 2 == 0 {
                    return Err(ParseError::Invalid("HTTP/2 request on a server stream"));
                }
                let block = header_block(&frame, &mut frames)?;
                break (frame.stream, block);
            }
            PUSH_PROMISE => return Err(ParseError::Invalid("HTTP/2 PUSH_PROMISE from a client")),
            _ => {
                control_frame(&frame)?;
                if !frame.complete() {
                    return Err(ParseError::Incomplete {
                        needed: frames.needed_for(&frame),
                    });
                }
            }
        }
    };

    let mut decoder = hpack::Decoder::default();
    let mut evidence = Evidence::default();
    let mut pseudo = Pseudo::default();
    let mut error = None;
    let mut host_header: Option<Vec<u8>> = None;
    let truncated = decode_block(&mut decoder, &block, |name, value| {
        if error.is_none() {
            error =
                h2_request_field(name, value, &mut pseudo, &mut evidence, &mut host_header).err();
        }
    })?;
    if let Some(error) = error {
        return Err(error);
    }
    if evidence.authority.is_none()
        && let Some(host) = host_header.filter(|h| !h.trim_ascii().is_empty())
    {
        evidence.set_authority(&host)?;
    }
    let (Some(method), Some(path)) = (pseudo.method, pseudo.path) else {
        return Err(if truncated {
            ParseError::Incomplete { needed: None }
        } else {
            ParseError::Invalid("HTTP/2 request without :method or :path")
        });
    };
    if method == b"CONNECT" {
        return Err(ParseError::Invalid(
            "CONNECT opens a tunnel, not an API call",
        ));
    }
    let path = request_path(&path)?;
    let body = if block.complete && !block.end_stream {
        Some(h2_body(&mut frames, first))
    } else {
        None
    };
    Ok(evidence.into_head(
        Protocol::Http2,
        String::from_utf8_lossy(&method).into_owned(),
        path,
        body.as_deref(),
        truncated,
    ))
}

/// One decoded request field: pseudo-headers first, lowercase names (RFC 9113 section 8.2).
fn h2_request_field(
    name: &[u8],
    value: &[u8],
    pseudo: &mut Pseudo,
    evidence: &mut Evidence,
    host_header: &mut Option<Vec<u8>>,
) -> Result<(), ParseError> {
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err(ParseError::Invalid("uppercase HTTP/2 field name"));
    }
    if let Some(pseudo_name) = name.strip_prefix(b":") {
        if pseudo.regular_seen {
            return Err(ParseError::Invalid(
                "HTTP/2 pseudo-header after a regular field",
            ));
        }
        let slot = match pseudo_name {
            b"method" => {
                if !valid_method(value) {
                    return Err(ParseError::Invalid("malformed HTTP/2 :method"));
                }
                &mut pseudo.method
            }
            b"path" => &mut pseudo.path,
            b"authority" => return evidence.set_authority(value),
            b"scheme" | b"protocol" => return Ok(()),
            _ => return Err(ParseError::Invalid("unknown HTTP/2 request pseudo-header")),
        };
        if slot.is_some() {
            return Err(ParseError::Invalid("repeated HTTP/2 pseudo-header"));
        }
        *slot = Some(value.to_vec());
        return Ok(());
    }
    pseudo.regular_seen = true;
    if name == b"host" {
        if host_header.is_some() {
            return Err(ParseError::Invalid("more than one Host header"));
        }
        *host_header = Some(value.to_vec());
        return Ok(());
    }
    evidence.field(name, value);
    Ok(())
}

/// The stream's DATA that the bytes hold, up to END_STREAM; frames of other kinds or streams in
/// between are passed over, and anything malformed ends the body where it is.
fn h2_body(frames: &mut Frames<'_>, stream: u32) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(frame)) = frames.next_frame() {
        if frame.kind != DATA || frame.stream != stream {
            continue;
        }
        let Ok(data) = fragment(&frame) else {
            break;
        };
        body.extend_from_slice(data);
        if !frame.complete() || frame.flags & END_STREAM != 0 {
            break;
        }
    }
    body
}

fn parse_h2_response(bytes: &[u8]) -> Result<ResponseHead, ParseError> {
    let mut frames = Frames::new(bytes, 0);
    let mut decoder = hpack::Decoder::default();
    let mut relay = RelayMarker::default();
    let mut interim = 0;
    loop {
        let Some(frame) = frames.next_frame()? else {
            return Err(ParseError::Incomplete { needed: None });
        };
        match frame.kind {
            HEADERS | PUSH_PROMISE => {
                let block = header_block(&frame, &mut frames)?;
                let mut status = None;
                let mut error = None;
                let truncated = decode_block(&mut decoder, &block, |name, value| {
                    if frame.kind == PUSH_PROMISE || error.is_some() {
                        // A promised request's fields: decoded to keep the table in step only.
                        return;
                    }
                    if name == b":status" {
                        if status.is_some() {
                            error = Some(ParseError::Invalid("repeated HTTP/2 :status"));
                        }
                        status = status_code(value);
                        if status.is_none() {
                            error = Some(ParseError::Invalid("malformed HTTP/2 :status"));
                        }
                    } else {
                        relay.see(name);
                    }
                })?;
                if let Some(error) = error {
                    return Err(error);
                }
                if frame.kind == PUSH_PROMISE {
                    if truncated {
                        return Err(ParseError::Incomplete { needed: None });
                    }
                    continue;
                }
                let Some(status) = status else {
                    return Err(if truncated {
                        ParseError::Incomplete { needed: None }
                    } else {
                        ParseError::Invalid("HTTP/2 response without :status")
                    });
                };
                if (100..200).contains(&status) && !truncated && interim < MAX_INTERIM_RESPONSES {
                    interim += 1;
                    continue;
                }
                return Ok(ResponseHead {
                    protocol: Protocol::Http2,
                    status,
                    relay_software: relay.software,
                    truncated,
                });
            }
            DATA => {}
            _ => {
                control_frame(&frame)?;
                if !frame.complete() {
                    return Err(ParseError::Incomplete {
                        needed: frames.needed_for(&frame),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::hpack::encode;

    const OPENAI_PYTHON: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: api.openai.com\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.3\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.3\r\n\
X-Stainless-OS: Linux\r\n\
X-Stainless-Arch: x64\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Runtime-Version: 3.12.3\r\n\
Authorization: Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\r\n\
X-Stainless-Async: false\r\n\
x-stainless-retry-count: 0\r\n\
Content-Length: 143\r\n\
\r\n\
{\"messages\":[{\"role\":\"user\",\"content\":\"Say \\\"model\\\": \\\"leak\\\" {\",\"model\":\"inner\"}],\"model\":\"gpt-4o-mini\",\"temperature\":0.2}";

    const ANTHROPIC_PYTHON: &[u8] = b"POST /v1/messages HTTP/1.1\r\n\
Host: api.anthropic.com\r\n\
accept: application/json\r\n\
anthropic-version: 2023-06-01\r\n\
content-type: application/json\r\n\
user-agent: Anthropic/Python 0.39.0\r\n\
x-api-key: sk-ant-api03-SECRETSECRETSECRETSECRET-AAAA\r\n\
x-stainless-lang: python\r\n\
x-stainless-package-version: 0.39.0\r\n\
content-length: 99\r\n\
\r\n\
{\"max_tokens\":1024,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"model\":\"claude-3-5-sonnet-latest\"}";

    const CURL_GEMINI: &[u8] = b"POST /v1beta/models/gemini-2.0-flash:generateContent?key=AIzaSyQUERYSECRET0123456789abcdefghij HTTP/1.1\r\n\
Host: generativelanguage.googleapis.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Content-Type: application/json\r\n\
x-goog-api-key: AIzaSyHEADERSECRET0123456789abcdefghij\r\n\
Content-Length: 59\r\n\
\r\n\
{\"contents\":[{\"parts\":[{\"text\":\"Explain how AI works\"}]}]}";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &payload)
    }

    /// The header block Go's net/http h2 transport writes for a POST (pseudo-headers in Go's
    /// order, then lowercase headers), partly Huffman-coded, with indexed static names.
    fn go_block() -> Vec<u8> {
        let mut block = Vec::new();
        encode::literal_with_name(&mut block, 1, "relay.example.net:8443");
        encode::indexed(&mut block, 3); // :method POST
        encode::literal_with_name(&mut block, 4, "/openai/v1/chat/completions?api-version=1");
        encode::indexed(&mut block, 7); // :scheme https
        encode::literal(&mut block, "content-type", "application/json", true);
        encode::literal_with_name(&mut block, 58, "Go-http-client/2.0");
        encode::literal_with_name(
            &mut block,
            23,
            "Bearer sk-or-v1-0123456789abcdef0123456789abcdef",
        );
        encode::literal(&mut block, "openai-organization", "org-SECRETORG123", false);
        encode::literal(&mut block, "accept-encoding", "gzip", true);
        block
    }

    fn go_frames() -> Vec<u8> {
        let mut out = frame(HEADERS, END_HEADERS, 1, &go_block());
        out.extend(frame(
            DATA,
            END_STREAM,
            1,
            b"{\"model\": \"openai/gpt-4o\", \"stream\": true}",
        ));
        out
    }

    /// Go's first write (preface, SETTINGS, WINDOW_UPDATE), then its second (the request).
    fn go_connection() -> Vec<u8> {
        let mut out = H2_PREFACE.to_vec();
        out.extend(settings(&[
            (2, 0),
            (4, 4_194_304),
            (5, 16_384),
            (6, 10_485_760),
            (1, 4096),
        ]));
        out.extend(frame(WINDOW_UPDATE, 0, 0, &1_073_741_824u32.to_be_bytes()));
        out.extend(go_frames());
        out
    }

    fn names(head: &RequestHead) -> Vec<&str> {
        head.api_headers.iter().map(|h| h.name.as_str()).collect()
    }

    /// The fuzz seeds are these tests' samples, written by the encoder above; they must read.
    #[test]
    fn fuzz_seeds_read() {
        let seed = |name: &str| {
            std::fs::read(format!(
                "{}/fuzz/seeds/fuzz_request/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        assert_eq!(seed("h1_openai_chat_completions"), OPENAI_PYTHON);
        assert_eq!(seed("h1_anthropic_messages"), ANTHROPIC_PYTHON);
        assert_eq!(seed("h2_preface_settings_headers_data"), go_connection());
        assert_eq!(seed("h2_headers_without_preface"), go_frames());
        let h2 = parse_response(&seed("h2_response_new_api")).unwrap();
        assert_eq!((h2.status, h2.relay_software), (200, Some("new-api")));
        let h1 = parse_response(&seed("h1_response_one_api")).unwrap();
        assert_eq!((h1.status, h1.relay_software), (200, Some("one-api")));
    }

    #[test]
    fn openai_python_sdk_request() {
        let head = parse_request(OPENAI_PYTHON).unwrap();
        assert_eq!(head.protocol, Protocol::Http1);
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/v1/chat/completions");
        assert_eq!(head.host.as_deref(), Some("api.openai.com"));
        assert_eq!(head.port, None);
        assert_eq!(head.key_prefix, Some("sk-proj-"));
        assert_eq!(head.user_agent.as_deref(), Some("OpenAI/Python"));
        assert_eq!(head.model.as_deref(), Some("gpt-4o-mini"));
        assert!(!head.truncated);
        assert_eq!(
            names(&head),
            [
                "x-stainless-lang",
                "x-stainless-package-version",
                "x-stainless-os",
                "x-stainless-arch",
                "x-stainless-runtime",
                "x-stainless-runtime-version",
                "authorization",
                "x-stainless-async",
                "x-stainless-retry-count",
            ]
        );
        let value = |name: &str| {
            head.api_headers
                .iter()
                .find(|h| h.name == name)
                .and_then(|h| h.value.as_deref())
        };
        assert_eq!(value("x-stainless-lang"), Some("python"));
        assert_eq!(value("x-stainless-package-version"), Some("1.54.3"));
        assert_eq!(value("x-stainless-runtime"), Some("CPython"));
        assert_eq!(value("x-stainless-os"), None);
        assert_eq!(value("authorization"), None);
    }

    #[test]
    fn anthropic_python_sdk_request() {
        let head = parse_request(ANTHROPIC_PYTHON).unwrap();
        assert_eq!(head.path, "/v1/messages");
        assert_eq!(head.host.as_deref(), Some("api.anthropic.com"));
        assert_eq!(head.key_prefix, Some("sk-ant-"));
        assert_eq!(head.user_agent.as_deref(), Some("Anthropic/Python"));
        assert_eq!(head.model.as_deref(), Some("claude-3-5-sonnet-latest"));
        assert_eq!(
            names(&head),
            [
                "anthropic-version",
                "x-api-key",
                "x-stainless-lang",
                "x-stainless-package-version"
            ]
        );
    }

    #[test]
    fn curl_gemini_request_takes_the_model_from_the_path() {
        let head = parse_request(CURL_GEMINI).unwrap();
        assert_eq!(head.path, "/v1beta/models/gemini-2.0-flash:generateContent");
        assert_eq!(head.model.as_deref(), Some("gemini-2.0-flash"));
        assert_eq!(head.key_prefix, Some("AIza"));
        assert_eq!(head.user_agent.as_deref(), Some("curl/8.5.0"));
        assert_eq!(names(&head), ["x-goog-api-key"]);
    }

    #[test]
    fn secrets_never_reach_the_result() {
        let mut h1 = b"POST /v1/messages?key=AIzaQUERYSECRETQUERYSECRET#frag HTTP/1.1\r\n\
Host: relay.example\r\n\
Authorization: Bearer sk-ant-oat01-TOKENSECRETTOKENSECRET\r\n\
X-Api-Key: sk-proj-APIKEYSECRETAPIKEYSECRET\r\n\
x-goog-api-key: AIzaGOOGSECRETGOOGSECRETGOOG\r\n\
Cookie: session=COOKIESECRET\r\n\
Proxy-Authorization: Basic UFJPWFlTRUNSRVQ=\r\n\
OpenAI-Organization: org-ORGSECRET\r\n\
OpenAI-Project: proj_PROJSECRET\r\n\
anthropic-beta: BETASECRET\r\n\
x-stainless-lang: LANGSECRET!\r\n\
x-stainless-helper: HELPERSECRET\r\n\
User-Agent: sk-ant-UASECRETUASECRETUASECRET\r\n\
\r\n\
{\"system\":\"BODYSECRET\",\"messages\":[{\"content\":\"PROMPTSECRET\"}],\"model\":\"claude-3-haiku\"}"
            .to_vec();
        let head = parse_request(&h1).unwrap();
        let debug = format!("{head:?}");
        for secret in [
            "SECRET", "AIza", "Bearer", "oat01", "Basic", "session", "org-", "proj_", "frag",
            "system",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert_eq!(head.key_prefix, Some("sk-ant-"));
        assert_eq!(head.model.as_deref(), Some("claude-3-haiku"));
        // The same secrets over HTTP/2, with the credential never-indexed.
        let mut block = Vec::new();
        encode::indexed(&mut block, 3);
        encode::literal_with_name(&mut block, 4, "/v1/messages?key=AIzaQUERYSECRETQUERYSECRET");
        encode::literal_with_name(&mut block, 1, "relay.example");
        block.push(0x10);
        encode::string(&mut block, b"authorization", true);
        encode::string(
            &mut block,
            b"Bearer sk-ant-oat01-TOKENSECRETTOKENSECRET",
            true,
        );
        encode::literal_indexed(&mut block, "cookie", "session=COOKIESECRET");
        encode::literal(
            &mut block,
            "x-api-key",
            "sk-proj-APIKEYSECRETAPIKEYSECRET",
            false,
        );
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend(frame(HEADERS, END_HEADERS, 1, &block));
        h2.extend(frame(DATA, END_STREAM, 1, b"{\"prompt\":\"PROMPTSECRET\"}"));
        let debug = format!("{:?}", parse_request(&h2).unwrap());
        for secret in ["SECRET", "AIza", "Bearer", "session", "prompt"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        h1.truncate(200);
        assert!(!format!("{:?}", parse_request(&h1)).contains("SECRET"));
    }

    #[test]
    fn go_http2_connection() {
        let head = parse_request(&go_connection()).unwrap();
        assert_eq!(head.protocol, Protocol::Http2);
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/openai/v1/chat/completions");
        assert_eq!(head.host.as_deref(), Some("relay.example.net"));
        assert_eq!(head.port, Some(8443));
        assert_eq!(head.user_agent.as_deref(), Some("Go-http-client/2.0"));
        assert_eq!(head.key_prefix, Some("sk-or-"));
        assert_eq!(head.model.as_deref(), Some("openai/gpt-4o"));
        assert_eq!(names(&head), ["authorization", "openai-organization"]);
        assert!(!head.truncated);
        // The later write alone (no preface) reads the same.
        assert_eq!(parse_request(&go_frames()), Ok(head));
        // Go's first write alone: the request is still to come.
        let first_write = &go_connection()[..go_connection().len() - go_frames().len()];
        assert_eq!(
            parse_request(first_write),
            Err(ParseError::Incomplete { needed: None })
        );
        assert_eq!(
            parse_request(&H2_PREFACE[..10]),
            Err(ParseError::Incomplete { needed: Some(24) })
        );
        // Cut inside the SETTINGS frame: the length that completes it, from the input's start.
        assert_eq!(
            parse_request(&first_write[..40]),
            Err(ParseError::Incomplete {
                needed: Some(24 + 9 + 30)
            })
        );
    }

    #[test]
    fn padded_priority_and_continuation_frames() {
        let block = go_block();
        let (one, two) = block.split_at(20);
        let (two, three) = two.split_at(15);
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0x80, 0, 0, 0, 15]); // exclusive dependency, weight
        payload.extend_from_slice(one);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(settings(&[]));
        bytes.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 200]));
        bytes.extend(frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &payload));
        bytes.extend(frame(CONTINUATION, 0, 1, two));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, three));
        bytes.extend(frame(WINDOW_UPDATE, 0, 1, &[0, 0, 1, 0]));
        bytes.extend(frame(DATA, PADDED, 1, b"\x02{\"model\":\"gpt-4.1\"\0\0"));
        let head = parse_request(&bytes).unwrap();
        assert_eq!(head.path, "/openai/v1/chat/completions");
        assert_eq!(head.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(head.key_prefix, Some("sk-or-"));
        // A CONTINUATION that never comes, replaced by another frame, is malformed.
        let mut broken = frame(HEADERS, 0, 1, one);
        broken.extend(frame(DATA, 0, 1, b"x"));
        assert_eq!(
            parse_request(&broken),
            Err(ParseError::Invalid(
                "HTTP/2 header block without its CONTINUATION"
            ))
        );
        // Padding longer than the frame.
        assert_eq!(
            parse_request(&frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 0x82])),
            Err(ParseError::Invalid("HTTP/2 padding longer than its frame"))
        );
    }

    #[test]
    fn dynamic_table_within_the_request() {
        let mut block = Vec::new();
        encode::indexed(&mut block, 3);
        encode::literal_indexed(&mut block, ":path", "/v1/messages");
        encode::literal_with_name(&mut block, 1, "api.anthropic.com");
        encode::literal_indexed(&mut block, "x-stainless-lang", "js");
        encode::literal(&mut block, "anthropic-version", "2023-06-01", true);
        encode::indexed(&mut block, 62); // x-stainless-lang: js again, from the table
        let head = parse_request(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).unwrap();
        assert_eq!(head.path, "/v1/messages");
        assert_eq!(
            head.api_headers,
            [
                ApiHeader {
                    name: "x-stainless-lang".into(),
                    value: Some("js".into())
                },
                ApiHeader {
                    name: "anthropic-version".into(),
                    value: None
                },
            ]
        );
        // Index 64 is past the two entries inserted.
        block.push(0xc0);
        assert_eq!(
            parse_request(&frame(HEADERS, END_HEADERS, 1, &block)),
            Err(ParseError::Invalid("HPACK index beyond the tables"))
        );
    }

    #[test]
    fn http2_request_rules() {
        let with = |fields: &[(&str, &str)]| {
            let mut block = Vec::new();
            for (name, value) in fields {
                encode::literal(&mut block, name, value, false);
            }
            parse_request(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        };
        let ok = [
            (":method", "GET"),
            (":path", "/v1/models"),
            (":authority", "a.example"),
        ];
        assert!(with(&ok).is_ok());
        assert_eq!(
            with(&[(":method", "GET"), ("Accept", "*/*"), (":path", "/")]),
            Err(ParseError::Invalid("uppercase HTTP/2 field name"))
        );
        assert_eq!(
            with(&[(":method", "GET"), ("accept", "*/*"), (":path", "/")]),
            Err(ParseError::Invalid(
                "HTTP/2 pseudo-header after a regular field"
            ))
        );
        assert_eq!(
            with(&[(":method", "GET")]),
            Err(ParseError::Invalid(
                "HTTP/2 request without :method or :path"
            ))
        );
        assert_eq!(
            with(&[(":method", "GET"), (":method", "POST"), (":path", "/")]),
            Err(ParseError::Invalid("repeated HTTP/2 pseudo-header"))
        );
        assert_eq!(
            with(&[(":status", "200")]),
            Err(ParseError::Invalid("unknown HTTP/2 request pseudo-header"))
        );
        assert_eq!(
            with(&[(":method", "GET"), (":path", "/a\x01b")]),
            Err(ParseError::Invalid(
                "non-printable byte in the request path"
            ))
        );
        assert_eq!(
            with(&[
                (":method", "GET"),
                (":path", "/"),
                (":authority", "u:p@a.example")
            ]),
            Err(ParseError::Invalid("user-info in the request authority"))
        );
        assert_eq!(
            with(&[(":method", "CONNECT"), (":authority", "a.example:443")]),
            Err(ParseError::Invalid(
                "HTTP/2 request without :method or :path"
            ))
        );
        // Host stands in for a missing :authority.
        let head = with(&[(":method", "GET"), (":path", "/x"), ("host", "[::1]:8080")]).unwrap();
        assert_eq!((head.host.as_deref(), head.port), (Some("::1"), Some(8080)));
        // Frames before the request that end the search.
        assert!(parse_request(&[H2_PREFACE, &frame(GOAWAY, 0, 0, &[0; 8])].concat()).is_err());
        assert!(parse_request(&[H2_PREFACE, &frame(DATA, 0, 1, b"x")].concat()).is_err());
        assert!(parse_request(&[H2_PREFACE, &frame(HEADERS, 4, 2, &[0x82])].concat()).is_err());
        assert!(parse_request(&[H2_PREFACE, &frame(SETTINGS, 0, 0, &[0; 5])].concat()).is_err());
        // An unknown frame type is skipped.
        let mut bytes = [H2_PREFACE, &frame(0xfa, 0xff, 7, b"whatever")].concat();
        bytes.extend(go_frames());
        assert!(parse_request(&bytes).is_ok());
    }

    #[test]
    fn truncated_at_every_length() {
        for sample in [
            OPENAI_PYTHON,
            ANTHROPIC_PYTHON,
            CURL_GEMINI,
            &go_connection(),
        ] {
            let full = parse_request(sample).unwrap();
            for cut in 0..sample.len() {
                match parse_request(&sample[..cut]) {
                    Ok(head) => {
                        assert_eq!(head.method, full.method, "cut {cut}");
                        assert!(full.path.starts_with(&head.path), "cut {cut}");
                        assert!(head.api_headers.len() <= full.api_headers.len());
                        assert!(head.model.is_none() || head.model == full.model);
                    }
                    Err(ParseError::Incomplete { .. }) => {}
                    Err(ParseError::Invalid(why)) => panic!("cut {cut}: {why}"),
                }
            }
        }
        // A head cut inside the headers keeps the complete lines and says so.
        let cut = OPENAI_PYTHON
            .windows(9)
            .position(|w| w == b"X-Stainle")
            .unwrap();
        let head = parse_request(&OPENAI_PYTHON[..cut + 4]).unwrap();
        assert!(head.truncated);
        assert_eq!(head.user_agent.as_deref(), Some("OpenAI/Python"));
        assert!(head.api_headers.is_empty());
        assert_eq!(head.model, None);
        // The frames alone, cut anywhere after a whole frame header.
        let frames = go_frames();
        for cut in 0..frames.len() {
            let result = parse_request(&frames[..cut]);
            if cut >= 9 {
                assert!(
                    !matches!(result, Err(ParseError::Invalid(_))),
                    "cut {cut}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn http1_forms() {
        let head = parse_request(
            b"POST http://relay.example:3000/api/claude/v1/messages?x=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.path, "/api/claude/v1/messages");
        assert_eq!(
            (head.host.as_deref(), head.port),
            (Some("relay.example"), Some(3000))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: user:pw@a.example\r\n\r\n"),
            Err(ParseError::Invalid("user-info in the request authority"))
        );
        assert_eq!(
            parse_request(b"GET http://user:pw@a.example/ HTTP/1.1\r\n\r\n"),
            Err(ParseError::Invalid("user-info in the request authority"))
        );
        assert_eq!(
            parse_request(b"CONNECT a.example:443 HTTP/1.1\r\n\r\n"),
            Err(ParseError::Invalid(
                "CONNECT opens a tunnel, not an API call"
            ))
        );
        assert_eq!(
            parse_request(b"POST /v1/chat/comp"),
            Err(ParseError::Incomplete { needed: None })
        );
        assert_eq!(
            parse_request(b"\x16\x03\x01\x00\xa5\x01"),
            Err(ParseError::Invalid("not an HTTP request"))
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000));
        assert_eq!(
            parse_request(long.as_bytes()).unwrap().path.len(),
            MAX_PATH_LEN
        );
        // A chunked body: the first chunk's data is scanned.
        let chunked = b"POST /v1/responses HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\n{\"model\":\"o3\",\"input\":\"hi\"}\r\n0\r\n\r\n";
        assert_eq!(parse_request(chunked).unwrap().model.as_deref(), Some("o3"));
        // A compressed body is not read.
        let gzip =
            b"POST /v1/responses HTTP/1.1\r\nContent-Encoding: gzip\r\n\r\n{\"model\":\"o3\"}";
        assert_eq!(parse_request(gzip).unwrap().model, None);
    }

    #[test]
    fn hostile_inputs() {
        // Ten thousand header lines: stops at the limit.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..10_000 {
            many.extend_from_slice(b"x-stainless-a: b\r\n");
        }
        assert_eq!(
            parse_request(&many),
            Err(ParseError::Invalid("more HTTP header lines than the limit"))
        );
        // Ten thousand fields in one HPACK block.
        let mut h2 = frame(HEADERS, END_HEADERS, 1, &[0x82; 10_000]);
        assert_eq!(
            parse_request(&h2),
            Err(ParseError::Invalid("more HPACK fields than the limit"))
        );
        // A frame length far beyond the bytes: a partial frame, not a read past the end.
        h2[0] = 0xff;
        assert!(parse_request(&[H2_PREFACE, &h2[..100]].concat()).is_err());
        let mut huge = frame(HEADERS, END_HEADERS, 1, &go_block());
        huge[0] = 0xff;
        let head = parse_request(&[H2_PREFACE, &huge].concat()).unwrap();
        assert!(head.truncated);
        assert_eq!(head.path, "/openai/v1/chat/completions");
        assert!(parse_request(&[H2_PREFACE, &huge[..40]].concat()).is_ok_or_incomplete());
        // Ten thousand tiny frames before the request.
        let mut pings = H2_PREFACE.to_vec();
        for _ in 0..10_000 {
            pings.extend(frame(PING, 0, 0, &[0; 8]));
        }
        assert_eq!(
            parse_request(&pings),
            Err(ParseError::Invalid("more HTTP/2 frames than the limit"))
        );
        // An HPACK integer that overflows, a string longer than the block.
        assert!(
            parse_request(&frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
            ))
            .is_err()
        );
        assert_eq!(
            parse_request(&frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0x82, 0x04, 0x7f, 0x10, b'/']
            )),
            Err(ParseError::Invalid("HPACK block ends inside a field"))
        );
        // Deep nesting in the body.
        let mut deep = b"POST /v1/chat/completions HTTP/1.1\r\n\r\n{\"a\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 50_000));
        deep.extend_from_slice(b"\"model\":\"x\"");
        assert_eq!(parse_request(&deep).unwrap().model, None);
        // Arbitrary bytes never panic.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let seeds = [OPENAI_PYTHON.to_vec(), go_connection(), go_frames()];
        for round in 0..3000 {
            let mut bytes = seeds[round % 3].clone();
            for _ in 0..(1 + round % 8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = state as usize % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            let _ = parse_request(&bytes);
            let _ = parse_response(&bytes);
        }
    }

    trait OkOrIncomplete {
        fn is_ok_or_incomplete(&self) -> bool;
    }

    impl<T> OkOrIncomplete for Result<T, ParseError> {
        fn is_ok_or_incomplete(&self) -> bool {
            matches!(self, Ok(_) | Err(ParseError::Incomplete { .. }))
        }
    }

    #[test]
    fn json_model_scanner() {
        let model = |body: &str| json_model(body.as_bytes());
        assert_eq!(
            model(r#" { "model" : "gpt-4o" } "#).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            model("{\n\t\"model\":\n\"a/b:c@d+e-f_g.h\"}").as_deref(),
            Some("a/b:c@d+e-f_g.h")
        );
        assert_eq!(
            model(r#"{"x":"\"model\":\"no\"","y":{"model":"nested"},"model":"yes"}"#).as_deref(),
            Some("yes")
        );
        assert_eq!(
            model(r#"{"messages":[{"model":"no"}],"model":"yes"}"#).as_deref(),
            Some("yes")
        );
        assert_eq!(model(r#"{"a":"model","b":"gpt"}"#), None);
        assert_eq!(model(r#"{"model":{"name":"gpt"}}"#), None);
        assert_eq!(model(r#"{"model":null,"x":"gpt"}"#), None);
        assert_eq!(model(r#"{"model":"has space"}"#), None);
        assert_eq!(model(r#"{"model":"esc\"aped"}"#), None);
        assert_eq!(
            model(&format!(r#"{{"model":"{}"}}"#, "m".repeat(129))),
            None
        );
        assert_eq!(model(r#"["model","gpt"]"#), None);
        assert_eq!(model(r#"{"model""#), None);
        assert_eq!(model(r#"{"model":"gpt"#), None);
        assert_eq!(model(r#"{}"model":"gpt""#), None);
        assert_eq!(model(r#"{"model":""}"#), None);
        assert_eq!(model(""), None);
    }

    #[test]
    fn header_value_rules() {
        assert_eq!(
            product_token(b"OpenAI/Python 1.54.3"),
            Some("OpenAI/Python".into())
        );
        assert_eq!(product_token(b"curl/8.5.0"), Some("curl/8.5.0".into()));
        assert_eq!(
            product_token(b"Mozilla/5.0 (X11; Linux)"),
            Some("Mozilla/5.0".into())
        );
        assert_eq!(
            product_token(b"claude-cli/1.0.3 (external, cli)"),
            Some("claude-cli/1.0.3".into())
        );
        assert_eq!(product_token(b"a/b/c"), None);
        assert_eq!(product_token(b"(comment)"), None);
        assert_eq!(product_token(b"/1.0"), None);
        assert_eq!(product_token("héllo/1".as_bytes()), None);
        assert_eq!(product_token(&[b'a'; 65]), None);
        assert_eq!(product_token(b"sk-proj-abc/1"), None);
        assert_eq!(product_token(b""), None);

        assert_eq!(
            key_prefix(b"sk-ant-api03-abcdefghijklmnop"),
            Some("sk-ant-")
        );
        assert_eq!(
            key_prefix(b"sk-proj-abcdefghijklmnopqrst"),
            Some("sk-proj-")
        );
        assert_eq!(key_prefix(b"sk-or-v1-abcdefghijklmnopqrst"), Some("sk-or-"));
        assert_eq!(key_prefix(b"sk-abcdefghijklmnopqrstuvwx"), Some("sk-"));
        assert_eq!(key_prefix(b"AIzaSyAbcdefghijklmnopqrstu"), Some("AIza"));
        assert_eq!(key_prefix(b"sk-short"), None);
        assert_eq!(key_prefix(b"sk-has space in it but long"), None);
        assert_eq!(key_prefix(b"eyJhbGciOiJIUzI1NiIsInR5cCI6"), None);
        assert_eq!(bearer_token(b"bearer  tok"), Some(&b"tok"[..]));
        assert_eq!(bearer_token(b"Basic dXNlcg=="), None);

        assert_eq!(short_value(b"1.54.3"), Some("1.54.3".into()));
        assert_eq!(short_value(b"Linux; x"), None);
        assert_eq!(short_value(&[b'a'; 33]), None);
    }

    #[test]
    fn responses_over_http1() {
        let one = parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Oneapi-Request-Id: 2024\r\n\r\n{").unwrap();
        assert_eq!((one.status, one.relay_software), (200, Some("one-api")));
        let new = parse_response(b"HTTP/1.1 401 Unauthorized\r\nX-Oneapi-Request-Id: 1\r\nX-New-Api-Version: v0.4.0\r\n\r\n").unwrap();
        assert_eq!((new.status, new.relay_software), (401, Some("new-api")));
        let lite = parse_response(
            b"HTTP/1.1 200 OK\r\nx-litellm-call-id: abc\r\nx-oneapi-request-id: 1\r\n",
        )
        .unwrap();
        assert_eq!(lite.relay_software, Some("litellm"));
        assert!(lite.truncated);
        let helicone = parse_response(b"HTTP/1.0 200 OK\nHelicone-Id: x\n\n").unwrap();
        assert_eq!(helicone.relay_software, Some("helicone"));
        let plain = parse_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: nginx\r\n\r\n",
        )
        .unwrap();
        assert_eq!((plain.status, plain.relay_software), (204, None));
        assert_eq!(
            parse_response(b"HTTP/1.1 2"),
            Err(ParseError::Incomplete { needed: None })
        );
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH"),
            Err(ParseError::Invalid("not an HTTP response"))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 999 Nope\r\n\r\n"),
            Err(ParseError::Invalid("malformed HTTP status code"))
        );
    }

    #[test]
    fn responses_over_http2() {
        let mut block = Vec::new();
        encode::indexed(&mut block, 8); // :status 200
        encode::literal(&mut block, "x-new-api-version", "v0.0.0", true);
        encode::literal_indexed(&mut block, "x-oneapi-request-id", "20250101");
        let mut bytes = settings(&[(3, 250), (4, 1_048_576)]);
        bytes.extend(frame(SETTINGS, ACK, 0, &[]));
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0xf, 0, 1]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let head = parse_response(&bytes).unwrap();
        assert_eq!(head.protocol, Protocol::Http2);
        assert_eq!((head.status, head.relay_software), (200, Some("new-api")));
        // A 103 Early Hints first, then the final response.
        let mut hints = Vec::new();
        encode::literal_with_name(&mut hints, 8, "103");
        encode::literal(&mut hints, "link", "</a.css>", false);
        let mut last = Vec::new();
        encode::literal_with_name(&mut last, 8, "429");
        encode::literal(&mut last, "x-litellm-version", "1.83.14", false);
        let bytes = [
            frame(HEADERS, END_HEADERS, 1, &hints),
            frame(HEADERS, END_HEADERS, 1, &last),
        ]
        .concat();
        let head = parse_response(&bytes).unwrap();
        assert_eq!((head.status, head.relay_software), (429, Some("litellm")));
        // Only SETTINGS so far.
        assert_eq!(
            parse_response(&settings(&[(3, 100)])),
            Err(ParseError::Incomplete { needed: None })
        );
        let mut no_status = Vec::new();
        encode::literal(&mut no_status, "server", "x", false);
        assert_eq!(
            parse_response(&frame(HEADERS, END_HEADERS, 1, &no_status)),
            Err(ParseError::Invalid("HTTP/2 response without :status"))
        );
        for cut in 0..bytes.len() {
            let _ = parse_response(&bytes[..cut]);
        }
    }
}
