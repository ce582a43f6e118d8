//! TLS ClientHello: the server name (SNI), the ALPN list and the JA4 fingerprint of a client.
//!
//! Reads the first bytes of a TCP stream: TLS records of type handshake (22) whose fragments,
//! concatenated, start with a ClientHello handshake message. A ClientHello may span several
//! records (the handshake length is larger than a record) and often exceeds 1,500 bytes since
//! clients send post-quantum key shares (X25519MLKEM768 is 1,216 bytes), which puts the SNI far
//! from the start; parsing works on whatever bytes are there and says `Incomplete` otherwise.
//! QUIC carries the same handshake message in CRYPTO frames, without records:
//! [`parse_client_hello_handshake`] reads that form.
//!
//! Limits: a record holds at most 2^14 bytes (RFC 8446 section 5.1); the handshake message at most
//! [`MAX_HANDSHAKE_LEN`]; at most [`MAX_EXTENSIONS`] extensions and [`MAX_ALPN`] ALPN values.
//!
//! JA4 follows the FoxIO specification (technical_details/JA4.md in github.com/FoxIO-LLC/ja4) and,
//! where the spec is silent or FoxIO's own tool prints something else, what that tool prints (the
//! expected outputs of its Rust version): fingerprints in SIEMs and shared lists come from it, and
//! one that differs matches nothing. The exceptions are cases where the tool's output would not be
//! a usable fingerprint; the comments in `ja4` and `alpn_chars` say which rule each case follows.
//! `t`/`q` by transport; the version: the highest non-GREASE value of supported_versions when the
//! extension is there (`00` if it holds none), else legacy_version, `00` when unknown; `d`/`i` for
//! an SNI extension, whatever it holds; cipher and extension counts (GREASE removed, repeats and
//! SNI and ALPN counted, at most 99); two characters for the first ALPN value (see `alpn_chars`);
//! then the first 12 hex digits of SHA-256 over the sorted ciphers, and over the sorted extensions
//! without SNI and ALPN joined by `_` to the signature algorithms in wire order (GREASE removed, no
//! `_` when there are none). An empty list hashes to twelve zeros instead. Lists the RFCs forbid to
//! be empty (the cipher suites, an ALPN name) are read anyway, since JA4 defines a value for them.
use sha2::{Digest, Sha256};

use super::cursor::{Cursor, u16_list};
use super::{ParseError, host_name};

/// The largest ClientHello accepted, handshake header included. Real ones with post-quantum key
/// shares are 2-3 KiB; the protocol allows ~130 KiB, which nobody sends.
pub const MAX_HANDSHAKE_LEN: usize = 64 * 1024;
/// The most extensions accepted (browsers send about 20).
pub const MAX_EXTENSIONS: usize = 128;
/// The most ALPN values kept (browsers send 2 or 3).
pub const MAX_ALPN: usize = 16;

const RECORD_HEADER_LEN: usize = 5;
const MAX_RECORD_LEN: usize = 1 << 14;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// What a ClientHello says about its destination and client.
///
/// `cipher_suites`, `extensions`, `signature_algorithms` and `supported_versions` are as sent,
/// in wire order, GREASE values included; `ja4` has them removed as the spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The host_name entry of the server_name extension, if it is a valid host name (lowercase).
    pub sni: Option<String>,
    /// ALPN protocol names (non-UTF-8 bytes replaced), at most [`MAX_ALPN`].
    pub alpn: Vec<String>,
    pub ja4: String,
    pub legacy_version: u16,
    pub supported_versions: Vec<u16>,
    pub cipher_suites: Vec<u16>,
    pub extensions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
}

/// Total bytes of the first TLS record, header included, if `buf` starts with the header of a
/// handshake record. The caller can wait for that many bytes before calling
/// [`parse_client_hello`] (a ClientHello may still continue in further records).
pub fn record_needed(buf: &[u8]) -> Option<usize> {
    let &[content, major, minor, hi, lo] = buf.first_chunk::<RECORD_HEADER_LEN>()?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    let plausible = content == CONTENT_HANDSHAKE
        && major == 3
        && minor <= 4
        && (1..=MAX_RECORD_LEN).contains(&len);
    plausible.then_some(RECORD_HEADER_LEN + len)
}

/// Parses a ClientHello from the start of a TLS stream (`buf` starts at a record header).
pub fn parse_client_hello(buf: &[u8]) -> Result<ClientHello, ParseError> {
    let message = handshake_message_from_records(buf)?;
    parse_client_hello_handshake(&message, false)
}

/// Parses a bare ClientHello handshake message (type 1, 3-byte length, body), as QUIC carries it
/// in CRYPTO frames. `quic` selects the JA4 protocol letter (`q` instead of `t`). Bytes after the
/// message are ignored.
pub fn parse_client_hello_handshake(msg: &[u8], quic: bool) -> Result<ClientHello, ParseError> {
    let total = handshake_message_len(msg)?;
    let body = msg.get(4..total).ok_or(ParseError::Incomplete {
        needed: Some(total),
    })?;
    parse_body(body, quic)
}

/// The length of the ClientHello message at the start of `msg`, header included.
fn handshake_message_len(msg: &[u8]) -> Result<usize, ParseError> {
    match msg.first() {
        None => return Err(ParseError::Incomplete { needed: None }),
        Some(&HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => {
            return Err(ParseError::Invalid(
                "handshake message is not a ClientHello",
            ));
        }
    }
    let Some(&[_, a, b, c]) = msg.first_chunk::<4>() else {
        return Err(ParseError::Incomplete { needed: None });
    };
    let total = 4 + u32::from_be_bytes([0, a, b, c]) as usize;
    if total > MAX_HANDSHAKE_LEN {
        return Err(ParseError::Invalid("ClientHello larger than the limit"));
    }
    Ok(total)
}

/// Concatenates the fragments of consecutive handshake records until the first handshake message
/// is complete, and returns that message (header included).
fn handshake_message_from_records(buf: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut message = Vec::new();
    let mut total: Option<usize> = None;
    let mut pos = 0;
    // Each pass consumes a record header and at least one byte of fragment, so this ends.
    loop {
        let rest = &buf[pos..];
        check_record_header_prefix(rest, pos == 0)?;
        let Some(len) = record_needed(rest).map(|n| n - RECORD_HEADER_LEN) else {
            return Err(if rest.len() < RECORD_HEADER_LEN {
                ParseError::Incomplete { needed: None }
            } else {
                ParseError::Invalid("TLS record length out of range")
            });
        };
        let start = pos + RECORD_HEADER_LEN;
        let end = start + len;
        let fragment = &buf[start..end.min(buf.len())];
        let before = message.len();
        message.extend_from_slice(fragment);
        if total.is_none() && message.len() >= 4 {
            total = Some(handshake_message_len(&message)?);
        }
        if let Some(t) = total {
            if message.len() >= t {
                message.truncate(t);
                return Ok(message);
            }
            if end > buf.len() {
                // Cut inside this record: the total is known if the message ends in it.
                let still = t - before;
                let needed = (still <= len).then_some(start + still);
                return Err(ParseError::Incomplete { needed });
            }
        } else if end > buf.len() {
            return Err(ParseError::Incomplete { needed: None });
        }
        pos = end;
    }
}

/// Rejects early whatever record header bytes are present that cannot start a handshake record,
/// so a non-TLS stream is `Invalid` even when it is shorter than a header.
fn check_record_header_prefix(rest: &[u8], first: bool) -> Result<(), ParseError> {
    match rest {
        [] => Ok(()),
        [content, ..] if *content != CONTENT_HANDSHAKE => Err(ParseError::Invalid(if first {
            "not a TLS handshake record"
        } else {
            "non-handshake record inside the ClientHello"
        })),
        [_, major, ..] if *major != 3 => Err(ParseError::Invalid("not a TLS record version")),
        [_, _, minor, ..] if *minor > 4 => Err(ParseError::Invalid("not a TLS record version")),
        _ => Ok(()),
    }
}

fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// Everything of a ClientHello body that the fingerprint and the names need.
struct Fields<'a> {
    sni: Option<String>,
    has_sni: bool,
    alpn: Vec<&'a [u8]>,
    has_supported_versions: bool,
    supported_versions: Vec<u16>,
    extensions: Vec<u16>,
    signature_algorithms: Vec<u16>,
}

fn parse_body(body: &[u8], quic: bool) -> Result<ClientHello, ParseError> {
    let mut r = Cursor::new(
        body,
        ParseError::Invalid("ClientHello field runs past its end"),
    );
    let legacy_version = r.u16()?;
    r.take(32)?; // random
    if r.u8_prefixed()?.len() > 32 {
        return Err(ParseError::Invalid(
            "ClientHello session id longer than 32 bytes",
        ));
    }
    let ciphers = r.u16_prefixed()?;
    // An empty list breaks RFC 8446 (at least one suite) but is read anyway: the server will
    // refuse it, and JA4 defines its fingerprint (count `00`, cipher hash all zeros), which is
    // what a scanner sending it should be recognised by.
    if ciphers.len() % 2 != 0 {
        return Err(ParseError::Invalid(
            "ClientHello cipher suite list malformed",
        ));
    }
    let cipher_suites = u16_list(ciphers);
    if r.u8_prefixed()?.is_empty() {
        return Err(ParseError::Invalid(
            "ClientHello without compression methods",
        ));
    }
    // Extensions are optional before TLS 1.3: a body may end right after the compression methods.
    let extension_block = if r.is_empty() {
        &[][..]
    } else {
        r.u16_prefixed()?
    };
    if !r.is_empty() {
        return Err(ParseError::Invalid(
            "bytes after the ClientHello extensions",
        ));
    }
    let fields = parse_extensions(extension_block)?;
    let ja4 = ja4(quic, legacy_version, &cipher_suites, &fields);
    Ok(ClientHello {
        sni: fields.sni,
        alpn: fields
            .alpn
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        ja4,
        legacy_version,
        supported_versions: fields.supported_versions,
        cipher_suites,
        extensions: fields.extensions,
        signature_algorithms: fields.signature_algorithms,
    })
}

fn parse_extensions(block: &[u8]) -> Result<Fields<'_>, ParseError> {
    let mut fields = Fields {
        sni: None,
        has_sni: false,
        alpn: Vec::new(),
        has_supported_versions: false,
        supported_versions: Vec::new(),
        extensions: Vec::new(),
        signature_algorithms: Vec::new(),
    };
    let mut r = Cursor::new(
        block,
        ParseError::Invalid("TLS extension runs past the extension block"),
    );
    while !r.is_empty() {
        if fields.extensions.len() == MAX_EXTENSIONS {
            return Err(ParseError::Invalid("more TLS extensions than the limit"));
        }
        let kind = r.u16()?;
        let data = r.u16_prefixed()?;
        // Only the first of a duplicated extension counts (servers reject duplicates anyway).
        let first = !fields.extensions.contains(&kind);
        fields.extensions.push(kind);
        match kind {
            EXT_SERVER_NAME if first => {
                fields.has_sni = true;
                fields.sni = server_name(data)?;
            }
            EXT_ALPN if first => fields.alpn = alpn(data)?,
            EXT_SUPPORTED_VERSIONS if first => {
                fields.has_supported_versions = true;
                fields.supported_versions = u16_vector(data, true, "supported_versions malformed")?;
            }
            EXT_SIGNATURE_ALGORITHMS if first => {
                fields.signature_algorithms =
                    u16_vector(data, false, "signature_algorithms malformed")?;
            }
            _ => {}
        }
    }
    Ok(fields)
}

/// The first host_name of a server_name extension (RFC 6066 section 3); `None` if it is not a
/// valid host name (the hello is still read: JA4 does not depend on the name).
fn server_name(data: &[u8]) -> Result<Option<String>, ParseError> {
    let malformed = "server_name extension malformed";
    let mut list = Cursor::new(
        sole_vector(data, false, malformed)?,
        ParseError::Invalid(malformed),
    );
    while !list.is_empty() {
        let name_type = list.u8()?;
        let name = list.u16_prefixed()?;
        if name_type == 0 {
            return Ok(host_name(name));
        }
    }
    Ok(None)
}

/// ALPN protocol names (RFC 7301 section 3.1), at most [`MAX_ALPN`] kept. An empty name breaks
/// RFC 7301 but is kept, not fatal: JA4 defines its value (`00` when it comes first), and
/// refusing the hello would lose its SNI too.
fn alpn(data: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    let malformed = "ALPN extension malformed";
    let mut list = Cursor::new(
        sole_vector(data, false, malformed)?,
        ParseError::Invalid(malformed),
    );
    let mut names = Vec::new();
    while !list.is_empty() {
        let name = list.u8_prefixed()?;
        if names.len() < MAX_ALPN {
            names.push(name);
        }
    }
    Ok(names)
}

/// The data of an extension that is exactly one vector with a one- or two-byte length prefix,
/// without the prefix.
fn sole_vector<'a>(
    data: &'a [u8],
    one_byte_length: bool,
    malformed: &'static str,
) -> Result<&'a [u8], ParseError> {
    let mut r = Cursor::new(data, ParseError::Invalid(malformed));
    let vector = if one_byte_length {
        r.u8_prefixed()?
    } else {
        r.u16_prefixed()?
    };
    if !r.is_empty() {
        return Err(ParseError::Invalid(malformed));
    }
    Ok(vector)
}

/// An extension that is one vector of u16 values (supported_versions, signature_algorithms).
fn u16_vector(
    data: &[u8],
    one_byte_length: bool,
    malformed: &'static str,
) -> Result<Vec<u16>, ParseError> {
    let vector = sole_vector(data, one_byte_length, malformed)?;
    if vector.len() % 2 != 0 {
        return Err(ParseError::Invalid(malformed));
    }
    Ok(u16_list(vector))
}

fn ja4(quic: bool, legacy_version: u16, cipher_suites: &[u16], fields: &Fields<'_>) -> String {
    // The highest value of supported_versions, numerically: an unknown value above 0x0304 (a
    // TLS 1.3 draft such as 0x7f1c) wins and gives `00`, as in FoxIO's tools. When the extension
    // is there but holds nothing but GREASE, the spec gives no rule and FoxIO's tools print no
    // JA4 at all; `00` (unknown) is written rather than falling back to legacy_version, which a
    // client offering supported_versions pins at 0x0303 whatever it speaks.
    let version = if fields.has_supported_versions {
        fields
            .supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
    } else {
        Some(legacy_version)
    };
    // The spec's table also maps the DTLS versions (d1, d2, d3), for its `d` fingerprints. This
    // parser only sees TLS over TCP and QUIC, where FoxIO's tools print `00` for them.
    let version = match version {
        Some(0x0304) => "13",
        Some(0x0303) => "12",
        Some(0x0302) => "11",
        Some(0x0301) => "10",
        Some(0x0300) => "s3",
        Some(0x0002) => "s2",
        _ => "00",
    };
    let mut ciphers: Vec<u16> = cipher_suites
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let extensions: Vec<u16> = fields
        .extensions
        .iter()
        .copied()
        .filter(|e| !is_grease(*e))
        .collect();
    let mut hashed_extensions: Vec<u16> = extensions
        .iter()
        .copied()
        .filter(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN)
        .collect();
    // GREASE is removed here too, as the spec says (and FoxIO's Python tool does). Their Rust
    // tool keeps it in this one list; that is not followed: RFC 8701 lets a client GREASE its
    // signature algorithms, and random values in the hash would give it a new fingerprint on
    // every connection, which is what the spec's rule is for.
    let signature_algorithms: Vec<u16> = fields
        .signature_algorithms
        .iter()
        .copied()
        .filter(|s| !is_grease(*s))
        .collect();
    ciphers.sort_unstable();
    hashed_extensions.sort_unstable();

    let cipher_hash = if ciphers.is_empty() {
        "000000000000".to_owned()
    } else {
        truncated_sha256(&hex_list(&ciphers))
    };
    let extension_hash = if hashed_extensions.is_empty() {
        "000000000000".to_owned()
    } else if signature_algorithms.is_empty() {
        truncated_sha256(&hex_list(&hashed_extensions))
    } else {
        truncated_sha256(&format!(
            "{}_{}",
            hex_list(&hashed_extensions),
            hex_list(&signature_algorithms)
        ))
    };
    // `q` by transport, as the spec says. FoxIO's Rust tool looks for quic_transport_parameters
    // (0x0039) instead, which every QUIC v1 and v2 ClientHello carries (RFC 9001 section 8.2),
    // so both agree on the traffic this parser reads.
    format!(
        "{}{}{}{:02}{:02}{}_{}_{}",
        if quic { 'q' } else { 't' },
        version,
        if fields.has_sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        extensions.len().min(99),
        alpn_chars(fields.alpn.first().copied()),
        cipher_hash,
        extension_hash,
    )
}

/// The two characters of JA4_a for the first ALPN value (`None`: no ALPN extension or no name).
///
/// No value or an empty one: `00`, as the spec and FoxIO's tools agree. Otherwise one character
/// for each end of the value, as FoxIO's tool prints it: an ASCII letter or digit is itself
/// (`h2`, `h1` for http/1.1), a byte above 0x7f is `9`. Their tool reads the value as text,
/// where such a byte becomes a replacement character, and writes `9` for any non-ASCII one.
/// Here the spec differs, giving the first hex digit of the first byte and the last one of the
/// last byte instead: FoxIO's capture tls-non-ascii-alpn (0xba 0xad) reads `bd` by the spec and
/// `99` in the expected output of both their Rust and Python tools, which is what SIEMs fed by
/// those tools hold. FoxIO calls the spec's rule the intended one (github.com/FoxIO-LLC/ja4
/// issue 178, and 326 for their Python tool): when their tools change, this should follow.
///
/// A value of one byte gives its character then `0`, as FoxIO's tool prints it (the spec, since
/// 2024, repeats the character).
///
/// An ASCII byte that is neither letter nor digit at either end (a space, `_`, `/`, a control
/// byte) takes the spec's hex digits for the whole value: FoxIO's tool writes that byte into the
/// fingerprint as text, and a `_` or a space there breaks the `a_b_c` form, so nothing could
/// match it anyway. Every result is two ASCII letters or digits.
fn alpn_chars(first: Option<&[u8]>) -> String {
    let (head, tail) = match first.unwrap_or_default() {
        [] => return "00".to_owned(),
        [only] => (*only, None),
        [head, .., tail] => (*head, Some(*tail)),
    };
    let symbol = |b: u8| b.is_ascii() && !b.is_ascii_alphanumeric();
    if symbol(head) || tail.is_some_and(symbol) {
        let last = tail.unwrap_or(head);
        return format!("{:x}{:x}", head >> 4, last & 0x0f);
    }
    let shown = |b: u8| {
        if b.is_ascii_alphanumeric() {
            char::from(b)
        } else {
            '9'
        }
    };
    format!("{}{}", shown(head), tail.map_or('0', shown))
}

fn hex_list(values: &[u16]) -> String {
    values
        .iter()
        .map(|v| format!("{v:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn truncated_sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Test helpers: ClientHellos built field by field, shared with the QUIC tests.
#[cfg(test)]
pub(crate) mod build {
    /// One extension: type and data.
    pub(crate) fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    pub(crate) fn u16_vec(items: &[u16]) -> Vec<u8> {
        let body: Vec<u8> = items.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    pub(crate) fn sni_ext(name: &str) -> Vec<u8> {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend(entry);
        ext(0x0000, &data)
    }

    pub(crate) fn alpn_ext(names: &[&str]) -> Vec<u8> {
        let list: Vec<u8> = names
            .iter()
            .flat_map(|n| [&[n.len() as u8][..], n.as_bytes()].concat())
            .collect();
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        ext(0x0010, &data)
    }

    /// A ClientHello handshake message (header included) with these ciphers and extensions.
    pub(crate) fn client_hello(ciphers: &[u16], extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend((0u8..32).collect::<Vec<_>>());
        body.push(32);
        body.extend([0x5au8; 32]);
        body.extend(u16_vec(ciphers));
        body.extend([1, 0]);
        let block: Vec<u8> = extensions.concat();
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend(block);
        let mut msg = vec![1u8];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    /// `msg` cut into TLS handshake records of at most `max` bytes of fragment each.
    pub(crate) fn records(msg: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in msg.chunks(max) {
            out.extend([22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// A Chrome-like ClientHello: GREASE, an X25519MLKEM768 key share of 1,216 bytes plus X25519,
    /// and the SNI after the key share, so the name sits past byte 1,300.
    pub(crate) fn chrome_like(name: &str) -> Vec<u8> {
        let ciphers = [
            0x7a7a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let mut key_shares = Vec::new();
        for (group, len) in [(0x2a2au16, 1usize), (0x11ec, 1216), (0x001d, 32)] {
            key_shares.extend_from_slice(&group.to_be_bytes());
            key_shares.extend_from_slice(&(len as u16).to_be_bytes());
            key_shares.extend(std::iter::repeat_n(0x42u8, len));
        }
        let mut key_share = (key_shares.len() as u16).to_be_bytes().to_vec();
        key_share.extend(key_shares);
        let extensions = vec![
            ext(0x3a3a, &[]),
            ext(0x0033, &key_share),
            ext(0x002b, &[6, 0x8a, 0x8a, 0x03, 0x04, 0x03, 0x03]),
            ext(
                0x000d,
                &u16_vec(&[
                    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                ]),
            ),
            ext(0x000a, &u16_vec(&[0x2a2a, 0x11ec, 0x001d, 0x0017, 0x0018])),
            ext(0x000b, &[1, 0]),
            ext(0x0005, &[1, 0, 0, 0, 0]),
            ext(0x0012, &[]),
            ext(0x0017, &[]),
            ext(0x001b, &[2, 0, 2]),
            ext(0x0023, &[]),
            ext(0x002d, &[1, 1]),
            ext(0x44cd, &[0, 3, 2, b'h', b'2']),
            ext(0xfe0d, &[0; 32]),
            ext(0xff01, &[0]),
            alpn_ext(&["h2", "http/1.1"]),
            sni_ext(name),
            ext(0x0a0a, &[0]),
        ];
        client_hello(&ciphers, &extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn unhex(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// RFC 8448 section 3 ("Simple 1-RTT Handshake"): the client's ClientHello, record included.
    const RFC8448_CLIENT_HELLO: &str = "
        16 03 01 00 c4 01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d
        99 12 ec 18 a2 ef 62 83 02 4d ec e7 00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09
        00 00 06 73 65 72 76 65 72 ff 01 00 01 00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01
        01 01 02 01 03 01 04 00 23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d
        8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d
        00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05 02 06
        02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01";

    #[test]
    fn rfc8448_client_hello() {
        let bytes = unhex(RFC8448_CLIENT_HELLO);
        assert_eq!(record_needed(&bytes), Some(bytes.len()));
        let hello = parse_client_hello(&bytes).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("server"));
        assert!(hello.alpn.is_empty());
        assert_eq!(hello.legacy_version, 0x0303);
        assert_eq!(hello.supported_versions, vec![0x0304]);
        assert_eq!(hello.cipher_suites, vec![0x1301, 0x1303, 0x1302]);
        assert_eq!(
            hello.extensions,
            vec![
                0x0000, 0xff01, 0x000a, 0x0023, 0x0033, 0x002b, 0x000d, 0x002d, 0x001c
            ]
        );
        assert_eq!(hello.signature_algorithms.len(), 15);
        assert!(
            hello
                .ja4
                .starts_with("t13d0309" /* 3 ciphers, 9 extensions */)
        );
        assert!(
            hello.ja4.starts_with("t13d030900_"),
            "no ALPN gives 00: {}",
            hello.ja4
        );
        // Every strict prefix is incomplete, never an error or a panic.
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    parse_client_hello(&bytes[..cut]),
                    Err(ParseError::Incomplete { .. })
                ),
                "cut {cut}"
            );
        }
        assert_eq!(
            parse_client_hello(&bytes[..100]),
            Err(ParseError::Incomplete {
                needed: Some(bytes.len())
            })
        );
    }

    /// ClientHellos (TLS records, as the client sent them) cut from FoxIO's own captures in
    /// github.com/FoxIO-LLC/ja4 `pcap/`, with the JA4 that FoxIO expects for them: the snapshot
    /// files of their Rust tool (`rust/ja4/src/snapshots/ja4__insta@<capture>.snap`), which
    /// their Python tool's `python/test/testdata/<capture>.json` agree with. Each covers a rule
    /// the Chrome-like examples do not.
    const FOXIO_VECTORS: [(&str, &str, &str); 5] = [
        // TLS 1.0 in legacy_version and no supported_versions; SNI is the only extension, so
        // the extension hash is the all-zero value and there is no ALPN (`00`).
        (
            include_str!("testdata/foxio_https3_301_get.hex"),
            "www.github.com",
            "t10d230100_6a57a6f57151_000000000000",
        ),
        // TLS 1.2 without supported_versions or ALPN (latest.pcapng, stream 3).
        (
            include_str!("testdata/foxio_latest_tls12_no_alpn.hex"),
            "discovery.cem.cloud.us",
            "t12d190800_d83cc789557e_7af1ed941c26",
        ),
        // 46 cipher suites, TLS 1.2 (also FoxIO's ipv6.pcapng).
        (
            include_str!("testdata/foxio_tls_alpn_h2.hex"),
            "www.cloudflare.com",
            "t12d4605h2_85626a9a5f7f_aaf95bb78ec9",
        ),
        // Firefox: no GREASE, record_size_limit, 11 signature algorithms in its own order.
        (
            include_str!("testdata/foxio_tls12_firefox.hex"),
            "contile.services.mozilla.com",
            "t13d1715h2_5b57614c22b0_3d5424432f57",
        ),
        // Chrome without ALPN (mtalk.google.com in tls-handshake.pcapng).
        (
            include_str!("testdata/foxio_tls_handshake_no_alpn.hex"),
            "mtalk.google.com",
            "t13d151400_8daaf6152771_de4a06bb82e3",
        ),
    ];

    #[test]
    fn ja4_matches_foxio_captures() {
        for (hex, sni, ja4) in FOXIO_VECTORS {
            let bytes = unhex(hex);
            let hello = parse_client_hello(&bytes).unwrap();
            assert_eq!(hello.sni.as_deref(), Some(sni));
            assert_eq!(hello.ja4, ja4, "{sni}");
        }
    }

    /// FoxIO's capture tls-non-ascii-alpn.pcapng: a Chrome hello whose first ALPN value is the
    /// two bytes 0xba 0xad; FoxIO's Rust snapshot and Python test data both expect `99`.
    const FOXIO_NON_ASCII_ALPN: &str = include_str!("testdata/foxio_tls_non_ascii_alpn.hex");

    #[test]
    fn ja4_alpn_characters() {
        let hello = parse_client_hello(&unhex(FOXIO_NON_ASCII_ALPN)).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("clientservices.googleapis.com"));
        assert_eq!(hello.alpn, vec!["\u{fffd}\u{fffd}", "http/1.1"]);
        assert_eq!(hello.ja4, "t13d151699_8daaf6152771_e5627efa2ab1");

        let cases: [(&[u8], &str); 17] = [
            (b"h2", "h2"),
            (b"http/1.1", "h1"),
            (b"h3", "h3"),
            // Bytes above 0x7f: `9` at that end (FoxIO's tool); the spec's hex digits on the right.
            (&[0xba, 0xad], "99"), // spec: bd
            (&[0xab, 0xcd], "99"), // spec: ad
            (&[0x30, 0xab], "09"), // spec: 3b
            (b"h\xff", "h9"),      // spec: 6f
            (b"\xc3\xa9t", "9t"),  // spec: c4
            (b"0\xab\xcd1", "01"), // both ends digits
            // One byte: its character then `0` (FoxIO's tool; the spec repeats it).
            (b"h", "h0"),
            (&[0xab], "90"),
            // An ASCII symbol at an end: the spec's hex digits (the tool would print the byte).
            (&[0x20], "20"),
            (b" a", "21"),
            (b"a ", "60"),
            (b"_x_", "5f"),
            (b"h2/", "6f"),
            (&[0x01, 0xab], "0b"),
        ];
        for (value, expected) in cases {
            assert_eq!(alpn_chars(Some(value)), expected, "{value:02x?}");
        }
        assert_eq!(alpn_chars(None), "00");
        assert_eq!(alpn_chars(Some(b"")), "00");
        // Whatever the bytes, two ASCII letters or digits: the fingerprint keeps its form.
        for a in 0..=255u8 {
            for value in (0..=255u8).map(|b| [a, b]) {
                let chars = alpn_chars(Some(&value));
                assert!(chars.len() == 2 && chars.bytes().all(|c| c.is_ascii_alphanumeric()));
            }
            let chars = alpn_chars(Some(&[a]));
            assert!(chars.len() == 2 && chars.bytes().all(|c| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn ja4_matches_the_spec_example() {
        // The JA4 README's example: its raw form lists these ciphers, extensions and signature
        // algorithms for t13d1516h2_8daaf6152771_e5627efa2ab1. Wire order and GREASE are shuffled
        // in here; the fingerprint must not depend on either.
        let ciphers = [
            0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let sig = u16_vec(&[
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ]);
        let mut extensions = vec![
            ext(0x2a2a, &[]),
            sni_ext("example.com"),
            alpn_ext(&["h2", "http/1.1"]),
        ];
        for kind in [
            0x0005u16, 0x000a, 0x000b, 0x0012, 0x0015, 0x0017, 0x001b, 0x0023, 0x002d, 0x0033,
            0x4469, 0xff01,
        ] {
            extensions.push(ext(kind, &[]));
        }
        extensions.push(ext(0x000d, &sig));
        extensions.push(ext(0x002b, &[4, 0x3a, 0x3a, 0x03, 0x04]));
        let msg = client_hello(&ciphers, &extensions);
        let hello = parse_client_hello_handshake(&msg, false).unwrap();
        assert_eq!(hello.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(hello.alpn, vec!["h2", "http/1.1"]);
        let quic = parse_client_hello_handshake(&msg, true).unwrap();
        assert_eq!(quic.ja4, "q13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn ja4_edge_cases() {
        // No SNI, no ALPN, no supported_versions, no signature algorithms.
        let msg = client_hello(&[0x002f], &[ext(0x000a, &u16_vec(&[0x0017]))]);
        let hello = parse_client_hello_handshake(&msg, false).unwrap();
        assert_eq!(hello.sni, None);
        let ext_hash = truncated_sha256("000a");
        assert_eq!(
            hello.ja4,
            format!("t12i010100_{}_{ext_hash}", truncated_sha256("002f"))
        );
        // Only SNI and ALPN: the extension hash is all zeros.
        let msg = client_hello(&[0x1301], &[sni_ext("a.example"), alpn_ext(&["http/1.1"])]);
        let hello = parse_client_hello_handshake(&msg, false).unwrap();
        assert!(hello.ja4.ends_with("_000000000000"), "{}", hello.ja4);
        assert!(hello.ja4.starts_with("t12d0102h1_"), "{}", hello.ja4);
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a) && !is_grease(0x1301));
    }

    fn ja4_of(ciphers: &[u16], extensions: &[Vec<u8>]) -> String {
        parse_client_hello_handshake(&client_hello(ciphers, extensions), false)
            .unwrap()
            .ja4
    }

    #[test]
    fn ja4_version_rules() {
        let versions = |list: &[u16]| {
            let mut data = vec![(list.len() * 2) as u8];
            data.extend(list.iter().flat_map(|v| v.to_be_bytes()));
            ext(0x002b, &data)
        };
        let version = |extensions: &[Vec<u8>]| ja4_of(&[0x1301], extensions)[1..3].to_owned();
        // Highest non-GREASE value, wherever it sits in the list.
        assert_eq!(version(&[versions(&[0x0303, 0x0a0a, 0x0304])]), "13");
        assert_eq!(version(&[versions(&[0x0301, 0x0302])]), "11");
        // An unknown value above TLS 1.3 (a draft) is the highest: unknown.
        assert_eq!(version(&[versions(&[0x7f1c, 0x0304])]), "00");
        // Present but empty or only GREASE: unknown, not legacy_version's 0x0303.
        assert_eq!(version(&[versions(&[0x1a1a])]), "00");
        assert_eq!(version(&[versions(&[])]), "00");
        // DTLS numbers are not TLS versions here.
        assert_eq!(version(&[versions(&[0xfefd])]), "00");
        // Without the extension, legacy_version (0x0303 in these hellos).
        assert_eq!(version(&[]), "12");
        let mut msg = client_hello(&[0x1301], &[]);
        msg[4..6].copy_from_slice(&[0x03, 0x00]);
        let hello = parse_client_hello_handshake(&msg, false).unwrap();
        assert_eq!(&hello.ja4[1..3], "s3");
    }

    #[test]
    fn ja4_counts_and_empty_lists() {
        let zeros = "000000000000";
        let groups = ext(0x000a, &u16_vec(&[0x0017]));
        let groups_hash = truncated_sha256("000a");
        // No cipher suites at all (against RFC 8446, still fingerprinted), or only GREASE ones.
        for ciphers in [&[][..], &[0x0a0a, 0xfafa][..]] {
            let hello = parse_client_hello_handshake(
                &client_hello(ciphers, std::slice::from_ref(&groups)),
                false,
            )
            .unwrap();
            assert_eq!(hello.cipher_suites, ciphers);
            assert_eq!(hello.ja4, format!("t12i000100_{zeros}_{groups_hash}"));
        }
        // An ALPN extension whose first name is empty (against RFC 7301, still read), or that
        // lists no name: `00`, as without the extension.
        let msg = client_hello(&[0x1301], &[ext(0x0010, &[0, 4, 0, 2, b'h', b'2'])]);
        let hello = parse_client_hello_handshake(&msg, false).unwrap();
        assert_eq!(hello.alpn, vec!["", "h2"]);
        assert!(hello.ja4.starts_with("t12i010100_"), "{}", hello.ja4);
        assert!(ja4_of(&[0x1301], &[ext(0x0010, &[0, 0])]).starts_with("t12i010100_"));
        // No extensions at all.
        let c = truncated_sha256("1301");
        assert_eq!(ja4_of(&[0x1301], &[]), format!("t12i010000_{c}_{zeros}"));
        // signature_algorithms present but empty, or only GREASE: no `_` before an empty list.
        for sig in [u16_vec(&[]), u16_vec(&[0x0a0a])] {
            assert_eq!(
                ja4_of(&[0x1301], &[groups.clone(), ext(0x000d, &sig)]),
                format!("t12i010200_{c}_{}", truncated_sha256("000a,000d"))
            );
        }
        // GREASE signature algorithms are dropped, the rest keep their wire order.
        assert_eq!(
            ja4_of(
                &[0x1301],
                &[ext(0x000d, &u16_vec(&[0x0804, 0x2a2a, 0x0403]))]
            ),
            format!("t12i010100_{c}_{}", truncated_sha256("000d_0804,0403"))
        );
        // A repeated extension counts and is hashed each time it appears.
        assert_eq!(
            ja4_of(&[0x1301], &[groups.clone(), groups.clone()]),
            format!("t12i010200_{c}_{}", truncated_sha256("000a,000a"))
        );
        // Counts stop at 99; SNI and ALPN count but are not hashed.
        let ciphers: Vec<u16> = (0x0100..0x0100 + 120).collect();
        let mut extensions: Vec<Vec<u8>> = (0x0100..0x0100 + 108).map(|k| ext(k, &[])).collect();
        extensions.push(sni_ext("a.example"));
        extensions.push(alpn_ext(&["h2"]));
        let ja4 = ja4_of(&ciphers, &extensions);
        assert!(ja4.starts_with("t12d9999h2_"), "{ja4}");
        let hashed: Vec<u16> = (0x0100..0x0100 + 108).collect();
        assert!(
            ja4.ends_with(&truncated_sha256(&hex_list(&hashed))),
            "{ja4}"
        );
    }

    #[test]
    fn large_post_quantum_hello_in_one_record_and_in_several() {
        let msg = chrome_like("api.openai.com");
        assert!(msg.len() > 1500, "{}", msg.len());
        let one = records(&msg, MAX_RECORD_LEN);
        let at = one
            .windows(14)
            .position(|w| w == b"api.openai.com")
            .unwrap();
        assert!(at > 1300, "SNI at {at}");
        let hello = parse_client_hello(&one).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(hello.alpn, vec!["h2", "http/1.1"]);
        assert_eq!(hello.supported_versions, vec![0x8a8a, 0x0304, 0x0303]);
        assert!(
            hello.ja4.starts_with("t13d1516h2_8daaf6152771_"),
            "{}",
            hello.ja4
        );
        assert_eq!(record_needed(&one[..5]), Some(one.len()));

        // The same message over records of 700 bytes (a handshake message longer than a record).
        let split = records(&msg, 700);
        assert_eq!(parse_client_hello(&split).unwrap(), hello);
        // Cut after the first record: more is needed, total unknown until the last record.
        assert_eq!(
            parse_client_hello(&split[..705]),
            Err(ParseError::Incomplete { needed: None })
        );
        // Cut inside the last record: the total is known.
        let cut = split.len() - 10;
        assert_eq!(
            parse_client_hello(&split[..cut]),
            Err(ParseError::Incomplete {
                needed: Some(split.len())
            })
        );
        // A stream continues after the hello (e.g. early data): ignored.
        let mut more = one.clone();
        more.extend([23, 3, 3, 0, 1, 0]);
        assert_eq!(parse_client_hello(&more).unwrap(), hello);
    }

    #[test]
    fn rejects_what_is_not_a_client_hello() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(ParseError::Invalid("not a TLS handshake record"))
        );
        assert_eq!(
            parse_client_hello(&[22, 9]),
            Err(ParseError::Invalid("not a TLS record version"))
        );
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 0]),
            Err(ParseError::Invalid("TLS record length out of range"))
        );
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0x40, 1]),
            Err(ParseError::Invalid("TLS record length out of range"))
        );
        // A ServerHello (type 2).
        assert_eq!(
            parse_client_hello(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
            Err(ParseError::Invalid(
                "handshake message is not a ClientHello"
            ))
        );
        // An alert record in the middle of a ClientHello.
        let msg = chrome_like("x.example");
        let mut split = records(&msg, 1000);
        split.truncate(1005);
        split.extend([21, 3, 3, 0, 2, 2, 40]);
        assert_eq!(
            parse_client_hello(&split),
            Err(ParseError::Invalid(
                "non-handshake record inside the ClientHello"
            ))
        );
        // A handshake length over the limit.
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 4, 1, 0x10, 0, 0]),
            Err(ParseError::Invalid("ClientHello larger than the limit"))
        );
        // An extension claiming more bytes than the block holds.
        let mut msg = client_hello(&[0x1301], &[sni_ext("a.example")]);
        let n = msg.len();
        msg[n - 14] = 0xff;
        assert!(matches!(
            parse_client_hello_handshake(&msg, false),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn odd_server_names_are_dropped_not_fatal() {
        let msg = client_hello(&[0x1301], &[sni_ext("bad name\0.example")]);
        let hello = parse_client_hello_handshake(&msg, false).unwrap();
        assert_eq!(hello.sni, None);
        assert!(
            hello.ja4.starts_with("t12d"),
            "an SNI extension is present: {}",
            hello.ja4
        );
        let msg = client_hello(&[0x1301], &[sni_ext("API.Example.COM.")]);
        assert_eq!(
            parse_client_hello_handshake(&msg, false)
                .unwrap()
                .sni
                .as_deref(),
            Some("api.example.com")
        );
    }
}
