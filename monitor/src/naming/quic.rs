//! QUIC Initial: the ClientHello (SNI, ALPN, JA4 with `q`) inside a client's first QUIC packet.
//!
//! Initial packets are encrypted, but with keys derived only from the Destination Connection ID
//! in their header (RFC 9001 section 5.2), so any observer can open them. This reads one long-
//! header Initial packet of QUIC v1 (RFC 9000) or v2 (RFC 9369: other salt, key labels and
//! packet-type bits), derives the client Initial keys with HKDF-SHA256, removes header
//! protection (AES-128-ECB on a 16-byte sample), opens the payload (AES-128-GCM), walks its
//! frames (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE; any other type ends the walk, as no
//! other may appear in an Initial) and reassembles the CRYPTO frames by offset: Chrome cuts its
//! ClientHello into several frames in shuffled order.
//!
//! A ClientHello with post-quantum key shares is larger than one packet: the first Initial then
//! holds only part of it and `client_hello` is `None`. The CRYPTO fragments are returned so the
//! caller can add those of the next Initial with the same DCID and call
//! [`client_hello_from_crypto`].
//!
//! Limits: connection IDs at most 20 bytes, the packet at most [`MAX_DATAGRAM_LEN`], CRYPTO
//! data only below offset [`MAX_CRYPTO_LEN`] and at most [`MAX_CRYPTO_FRAMES`] frames. Only the
//! first packet of a coalesced datagram is read.
use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_gcm::aead::{Nonce, Tag};
use aes_gcm::{AeadInOut, Aes128Gcm};
use hkdf::Hkdf;
use sha2::Sha256;

use super::ParseError;
use super::cursor::Cursor;
use super::tls::{self, ClientHello};

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;
/// The largest UDP payload: no packet is longer.
pub const MAX_DATAGRAM_LEN: usize = 65_527;
/// CRYPTO data past this offset is refused (a ClientHello is at most this long, see `tls`).
pub const MAX_CRYPTO_LEN: usize = tls::MAX_HANDSHAKE_LEN;
/// The most CRYPTO frames read from one packet (Chrome sends about ten).
pub const MAX_CRYPTO_FRAMES: usize = 64;

const MAX_CID_LEN: usize = 20;
const SAMPLE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// RFC 9001 section 5.2.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 section 3.3.1.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// A client Initial packet, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicInitial {
    pub version: u32,
    /// The Destination Connection ID the keys came from; the client's next Initials carry the same.
    pub dcid: Vec<u8>,
    /// The ClientHello, if this packet's CRYPTO frames hold all of it from offset 0.
    pub client_hello: Option<ClientHello>,
    /// This packet's CRYPTO frames, in packet order.
    pub crypto: Vec<CryptoFragment>,
}

/// The data of one CRYPTO frame and its offset in the handshake stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoFragment {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Parses, opens and reads the QUIC client Initial packet at the start of `buf` (a UDP payload).
pub fn parse_initial(buf: &[u8]) -> Result<QuicInitial, ParseError> {
    let mut r = Cursor::new(buf, ParseError::Incomplete { needed: None });
    let first = r.u8()?;
    if first & 0x80 == 0 {
        return Err(ParseError::Invalid("not a QUIC long-header packet"));
    }
    let version = r.u32()?;
    let initial_type = match version {
        VERSION_1 => 0,
        VERSION_2 => 1,
        0 => return Err(ParseError::Invalid("QUIC version negotiation packet")),
        _ => return Err(ParseError::Invalid("QUIC version not supported")),
    };
    if (first >> 4) & 0x03 != initial_type {
        return Err(ParseError::Invalid("QUIC packet is not an Initial"));
    }
    let dcid = r.u8_prefixed()?;
    let scid = r.u8_prefixed()?;
    if dcid.len() > MAX_CID_LEN || scid.len() > MAX_CID_LEN {
        return Err(ParseError::Invalid(
            "QUIC connection ID longer than 20 bytes",
        ));
    }
    let token_len = bounded(r.varint()?)?;
    r.take(token_len)?;
    let length = bounded(r.varint()?)?;
    let pn_offset = r.pos();
    if length < 4 + SAMPLE_LEN {
        return Err(ParseError::Invalid(
            "QUIC Initial too short for a header protection sample",
        ));
    }
    let total = pn_offset + length;
    let packet = buf.get(..total).ok_or(ParseError::Incomplete {
        needed: Some(total),
    })?;

    let keys = client_initial_keys(version, dcid)?;
    let sample = &packet[pn_offset + 4..pn_offset + 4 + SAMPLE_LEN];
    let mask = header_protection_mask(&keys.hp, sample)?;
    let first = first ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let mut header = packet[..pn_offset + pn_len].to_vec();
    header[0] = first;
    for (byte, m) in header[pn_offset..].iter_mut().zip(&mask[1..]) {
        *byte ^= m;
    }
    let packet_number = header[pn_offset..]
        .iter()
        .fold(0u64, |n, b| (n << 8) | u64::from(*b));
    let (ciphertext, tag) = packet[pn_offset + pn_len..].split_at(length - pn_len - TAG_LEN);
    let payload = open(&keys, packet_number, &header, ciphertext, tag)?;
    if first & 0x0c != 0 {
        return Err(ParseError::Invalid("QUIC reserved header bits set"));
    }
    let crypto = crypto_frames(&payload)?;
    let client_hello = client_hello_from_crypto(&crypto)?;
    Ok(QuicInitial {
        version,
        dcid: dcid.to_vec(),
        client_hello,
        crypto,
    })
}

/// The CRYPTO frames of a decrypted Initial payload, in packet order. Frames of a type that may
/// not appear in an Initial end the walk.
pub fn crypto_frames(payload: &[u8]) -> Result<Vec<CryptoFragment>, ParseError> {
    let mut r = Cursor::new(
        payload,
        ParseError::Invalid("QUIC frame runs past the packet"),
    );
    let mut fragments = Vec::new();
    while !r.is_empty() {
        match r.varint()? {
            0x00 | 0x01 => {} // PADDING, PING
            kind @ (0x02 | 0x03) => {
                // ACK: largest, delay, range count, first range, (gap, length) per range, and
                // three ECN counts for 0x03. Each loop pass reads at least two bytes.
                r.varint()?;
                r.varint()?;
                let ranges = r.varint()?;
                r.varint()?;
                for _ in 0..ranges {
                    r.varint()?;
                    r.varint()?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        r.varint()?;
                    }
                }
            }
            0x06 => {
                let offset = r.varint()?;
                let len = bounded(r.varint()?)?;
                let data = r.take(len)?;
                if offset.saturating_add(len as u64) > MAX_CRYPTO_LEN as u64 {
                    return Err(ParseError::Invalid("QUIC CRYPTO data beyond the limit"));
                }
                if fragments.len() == MAX_CRYPTO_FRAMES {
                    return Err(ParseError::Invalid(
                        "more QUIC CRYPTO frames than the limit",
                    ));
                }
                fragments.push(CryptoFragment {
                    offset,
                    data: data.to_vec(),
                });
            }
            0x1c => {
                // CONNECTION_CLOSE: error code, frame type, reason phrase.
                r.varint()?;
                r.varint()?;
                let reason = bounded(r.varint()?)?;
                r.take(reason)?;
            }
            _ => break,
        }
    }
    Ok(fragments)
}

/// Reassembles CRYPTO fragments (of one Initial or of several with the same DCID) from offset 0
/// and parses the ClientHello they hold. `Ok(None)` while the ClientHello is not complete
/// (a gap, or its end is in a packet not given).
pub fn client_hello_from_crypto(
    fragments: &[CryptoFragment],
) -> Result<Option<ClientHello>, ParseError> {
    let mut ordered: Vec<&CryptoFragment> = fragments.iter().collect();
    ordered.sort_by_key(|f| f.offset);
    let mut stream = Vec::new();
    for fragment in ordered {
        let Some(offset) = usize::try_from(fragment.offset)
            .ok()
            .filter(|o| *o <= stream.len())
        else {
            break; // a gap: what follows is in a packet not given
        };
        let end = offset.saturating_add(fragment.data.len());
        if end > MAX_CRYPTO_LEN {
            return Err(ParseError::Invalid("QUIC CRYPTO data beyond the limit"));
        }
        if end > stream.len() {
            stream.extend_from_slice(&fragment.data[stream.len() - offset..]);
        }
    }
    match tls::parse_client_hello_handshake(&stream, true) {
        Ok(hello) => Ok(Some(hello)),
        Err(ParseError::Incomplete { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A length from a varint, refused when no datagram could hold it.
fn bounded(value: u64) -> Result<usize, ParseError> {
    usize::try_from(value)
        .ok()
        .filter(|v| *v <= MAX_DATAGRAM_LEN)
        .ok_or(ParseError::Invalid("QUIC length larger than a datagram"))
}

/// The client's Initial packet protection keys (RFC 9001 section 5.2, RFC 9369 section 3.3).
#[derive(Debug, PartialEq, Eq)]
struct InitialKeys {
    key: [u8; 16],
    iv: [u8; 12],
    hp: [u8; 16],
}

const KEY_DERIVATION_FAILED: ParseError = ParseError::Invalid("QUIC key derivation failed");

fn client_initial_keys(version: u32, dcid: &[u8]) -> Result<InitialKeys, ParseError> {
    let (salt, labels): (&[u8], [&[u8]; 3]) = if version == VERSION_2 {
        (&SALT_V2, [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"])
    } else {
        (&SALT_V1, [b"quic key", b"quic iv", b"quic hp"])
    };
    let (_, initial) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let mut client_secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut client_secret)?;
    let client = Hkdf::<Sha256>::from_prk(&client_secret).map_err(|_| KEY_DERIVATION_FAILED)?;
    let mut keys = InitialKeys {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    expand_label(&client, labels[0], &mut keys.key)?;
    expand_label(&client, labels[1], &mut keys.iv)?;
    expand_label(&client, labels[2], &mut keys.hp)?;
    Ok(keys)
}

/// TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 section 7.1).
fn expand_label(secret: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Result<(), ParseError> {
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend_from_slice(
        &u16::try_from(out.len())
            .map_err(|_| KEY_DERIVATION_FAILED)?
            .to_be_bytes(),
    );
    info.push(u8::try_from(6 + label.len()).map_err(|_| KEY_DERIVATION_FAILED)?);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    secret.expand(&info, out).map_err(|_| KEY_DERIVATION_FAILED)
}

fn header_protection_mask(hp: &[u8; 16], sample: &[u8]) -> Result<[u8; 16], ParseError> {
    let cipher = Aes128::new_from_slice(hp).map_err(|_| KEY_DERIVATION_FAILED)?;
    let mut block = aes::Block::try_from(sample)
        .map_err(|_| ParseError::Invalid("QUIC sample is not 16 bytes"))?;
    cipher.encrypt_block(&mut block);
    Ok(block.into())
}

/// The nonce of a packet: the IV with the packet number XORed into its low bytes.
fn nonce(iv: &[u8; 12], packet_number: u64) -> [u8; 12] {
    let mut nonce = *iv;
    for (n, p) in nonce[4..].iter_mut().zip(packet_number.to_be_bytes()) {
        *n ^= p;
    }
    nonce
}

fn open(
    keys: &InitialKeys,
    packet_number: u64,
    header: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, ParseError> {
    const NOT_OPENED: ParseError =
        ParseError::Invalid("QUIC Initial does not open with the client Initial keys");
    let aead = Aes128Gcm::new_from_slice(&keys.key).map_err(|_| KEY_DERIVATION_FAILED)?;
    let tag = Tag::<Aes128Gcm>::try_from(tag).map_err(|_| NOT_OPENED)?;
    let mut payload = ciphertext.to_vec();
    aead.decrypt_inout_detached(
        &Nonce::<Aes128Gcm>::from(nonce(&keys.iv, packet_number)),
        header,
        payload.as_mut_slice().into(),
        &tag,
    )
    .map_err(|_| NOT_OPENED)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::tls::build;

    fn unhex(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    const RFC9001_DCID: &str = "8394c8f03e515708";
    /// RFC 9001 appendix A.2: the client's first Initial packet, protected (1,200 bytes).
    const RFC9001_A2: &str = include_str!("testdata/rfc9001_a2_client_initial.hex");
    /// RFC 9369 appendix A.2: the same Initial in QUIC version 2.
    const RFC9369_A2: &str = include_str!("testdata/rfc9369_a2_client_initial.hex");

    /// Protects a client Initial (test-only inverse of `parse_initial`): a 4-byte packet number,
    /// no token, no source connection ID.
    fn seal(version: u32, dcid: &[u8], packet_number: u32, plaintext: &[u8]) -> Vec<u8> {
        let keys = client_initial_keys(version, dcid).unwrap();
        let packet_type = if version == VERSION_2 { 1 } else { 0 };
        let mut packet = vec![0xc0 | (packet_type << 4) | 0x03];
        packet.extend(version.to_be_bytes());
        packet.push(dcid.len() as u8);
        packet.extend(dcid);
        packet.extend([0, 0]);
        let length = 4 + plaintext.len() + TAG_LEN;
        packet.extend((0x4000 | length as u16).to_be_bytes());
        let pn_offset = packet.len();
        packet.extend(packet_number.to_be_bytes());
        let aead = Aes128Gcm::new_from_slice(&keys.key).unwrap();
        let mut body = plaintext.to_vec();
        let tag = aead
            .encrypt_inout_detached(
                &Nonce::<Aes128Gcm>::from(nonce(&keys.iv, u64::from(packet_number))),
                &packet,
                body.as_mut_slice().into(),
            )
            .unwrap();
        packet.extend(body);
        packet.extend(tag.as_slice());
        let mask =
            header_protection_mask(&keys.hp, &packet[pn_offset + 4..pn_offset + 20]).unwrap();
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            packet[pn_offset + i] ^= mask[1 + i];
        }
        packet
    }

    fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x06];
        frame.extend((0x8000_0000u32 | offset as u32).to_be_bytes());
        frame.extend((0x4000u16 | data.len() as u16).to_be_bytes());
        frame.extend(data);
        frame
    }

    #[test]
    fn rfc9001_a1_client_initial_keys() {
        let keys = client_initial_keys(VERSION_1, &unhex(RFC9001_DCID)).unwrap();
        assert_eq!(keys.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(keys.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(keys.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn rfc9001_a2_client_initial() {
        let packet = unhex(RFC9001_A2);
        assert_eq!(packet.len(), 1200);
        let initial = parse_initial(&packet).unwrap();
        assert_eq!(initial.version, VERSION_1);
        assert_eq!(initial.dcid, unhex(RFC9001_DCID));
        let hello = initial.client_hello.unwrap();
        assert_eq!(hello.sni.as_deref(), Some("example.com"));
        assert_eq!(hello.alpn, vec!["alpn"]);
        assert_eq!(hello.cipher_suites, vec![0x1301, 0x1302]);
        assert!(hello.ja4.starts_with("q13d0211an_"), "{}", hello.ja4);
        assert_eq!(initial.crypto.len(), 1);
        assert_eq!(initial.crypto[0].data.len(), 241);
    }

    #[test]
    fn rfc9369_a2_client_initial_v2() {
        let initial = parse_initial(&unhex(RFC9369_A2)).unwrap();
        assert_eq!(initial.version, VERSION_2);
        assert_eq!(
            initial.client_hello.unwrap().sni.as_deref(),
            Some("example.com")
        );
        // The v1 packet type bits mean Handshake in v2, and the other way round.
        let mut v1 = unhex(RFC9001_A2);
        v1[1..5].copy_from_slice(&VERSION_2.to_be_bytes());
        assert_eq!(
            parse_initial(&v1),
            Err(ParseError::Invalid("QUIC packet is not an Initial"))
        );
    }

    #[test]
    fn truncated_or_corrupted_packets() {
        let packet = unhex(RFC9001_A2);
        assert_eq!(
            parse_initial(&packet[..600]),
            Err(ParseError::Incomplete { needed: Some(1200) })
        );
        for cut in 0..18 {
            assert_eq!(
                parse_initial(&packet[..cut]),
                Err(ParseError::Incomplete { needed: None }),
                "cut {cut}"
            );
        }
        let mut corrupted = packet.clone();
        corrupted[700] ^= 1;
        assert_eq!(
            parse_initial(&corrupted),
            Err(ParseError::Invalid(
                "QUIC Initial does not open with the client Initial keys"
            ))
        );
        let mut other_dcid = packet.clone();
        other_dcid[6] ^= 1;
        assert!(matches!(
            parse_initial(&other_dcid),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn not_a_client_initial() {
        assert_eq!(
            parse_initial(&[0x40, 1, 2, 3]),
            Err(ParseError::Invalid("not a QUIC long-header packet"))
        );
        assert_eq!(
            parse_initial(&[0xc0, 0, 0, 0, 0, 8]),
            Err(ParseError::Invalid("QUIC version negotiation packet"))
        );
        assert_eq!(
            parse_initial(&[0xc0, 0xff, 0, 0, 0x1d, 8]),
            Err(ParseError::Invalid("QUIC version not supported"))
        );
        assert_eq!(
            parse_initial(&[0xe0, 0, 0, 0, 1, 8]),
            Err(ParseError::Invalid("QUIC packet is not an Initial"))
        );
        assert_eq!(
            parse_initial(&[0xc0, 0, 0, 0, 1, 21]),
            Err(ParseError::Incomplete { needed: None })
        );
        let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
        long_cid.extend([7; 21]);
        long_cid.push(0);
        assert_eq!(
            parse_initial(&long_cid),
            Err(ParseError::Invalid(
                "QUIC connection ID longer than 20 bytes"
            ))
        );
        // A token length no datagram can hold.
        assert_eq!(
            parse_initial(&[
                0xc0, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            Err(ParseError::Invalid("QUIC length larger than a datagram"))
        );
    }

    /// Chrome's first Initial (one UDP payload, 1,250 bytes) from FoxIO's capture
    /// `pcap/quic-with-several-tls-frames.pcapng` in github.com/FoxIO-LLC/ja4; the JA4 is the
    /// one in their Rust tool's snapshot for that capture.
    const FOXIO_CHROME_INITIAL: &str =
        include_str!("testdata/foxio_quic_several_tls_frames_initial.hex");

    #[test]
    fn ja4_matches_foxio_quic_capture() {
        let initial = parse_initial(&unhex(FOXIO_CHROME_INITIAL)).unwrap();
        assert!(
            initial.crypto.len() > 1,
            "the hello comes in several frames"
        );
        let hello = initial.client_hello.unwrap();
        assert_eq!(hello.sni.as_deref(), Some("ogs.google.com"));
        assert_eq!(hello.ja4, "q13d0310h3_55b375c5d22e_cd85d2d88918");
    }

    #[test]
    fn shuffled_crypto_frames_like_chrome() {
        let hello = build::chrome_like("api.anthropic.com");
        // Cut into five pieces, sent last-first, with PING, PADDING and an ACK between them.
        let pieces: Vec<(usize, &[u8])> = hello
            .chunks(400)
            .enumerate()
            .map(|(i, c)| (i * 400, c))
            .collect();
        let mut plaintext = vec![0x01, 0x02, 0x05, 0x00, 0x01, 0x03, 0x01, 0x02];
        for (offset, data) in pieces.iter().rev() {
            plaintext.extend(crypto_frame(*offset, data));
            plaintext.extend([0x00, 0x00]);
        }
        let dcid = [0x11u8; 8];
        let packet = seal(VERSION_1, &dcid, 0, &plaintext);
        let initial = parse_initial(&packet).unwrap();
        let parsed = initial.client_hello.unwrap();
        assert_eq!(parsed.sni.as_deref(), Some("api.anthropic.com"));
        assert!(
            parsed.ja4.starts_with("q13d1516h2_8daaf6152771_"),
            "{}",
            parsed.ja4
        );
        assert_eq!(initial.crypto.len(), pieces.len());
    }

    #[test]
    fn client_hello_over_two_initials() {
        let hello = build::chrome_like("api.x.ai");
        let (head, tail) = hello.split_at(1100);
        let dcid = [0x22u8; 8];
        let first = parse_initial(&seal(VERSION_1, &dcid, 0, &crypto_frame(0, head))).unwrap();
        assert_eq!(first.client_hello, None, "the rest is in the next packet");
        let second = parse_initial(&seal(VERSION_1, &dcid, 1, &crypto_frame(1100, tail))).unwrap();
        assert_eq!(second.client_hello, None, "a gap before this packet's data");
        let both: Vec<CryptoFragment> = first.crypto.into_iter().chain(second.crypto).collect();
        let parsed = client_hello_from_crypto(&both).unwrap().unwrap();
        assert_eq!(parsed.sni.as_deref(), Some("api.x.ai"));
    }

    #[test]
    fn frame_walk_limits() {
        // Overlapping fragments: the first bytes seen win; the stream stays consistent.
        let hello = build::chrome_like("a.example");
        let fragments = vec![
            CryptoFragment {
                offset: 0,
                data: hello[..300].to_vec(),
            },
            CryptoFragment {
                offset: 200,
                data: hello[200..].to_vec(),
            },
        ];
        assert_eq!(
            client_hello_from_crypto(&fragments)
                .unwrap()
                .unwrap()
                .sni
                .as_deref(),
            Some("a.example")
        );
        // CRYPTO data beyond the limit, a frame past the end, a frame type not allowed.
        let far = [0x06, 0x80, 0x01, 0x00, 0x00, 0x01, 0x01];
        assert_eq!(
            crypto_frames(&far),
            Err(ParseError::Invalid("QUIC CRYPTO data beyond the limit"))
        );
        assert_eq!(
            crypto_frames(&[0x06, 0x00, 0x05, 1, 2]),
            Err(ParseError::Invalid("QUIC frame runs past the packet"))
        );
        let stream_frame_after_crypto = [0x06, 0x00, 0x01, 0x01, 0x08, 0x00];
        assert_eq!(crypto_frames(&stream_frame_after_crypto).unwrap().len(), 1);
        // Too many CRYPTO frames.
        let many: Vec<u8> = (0..=MAX_CRYPTO_FRAMES)
            .flat_map(|_| [0x06, 0x00, 0x01, 0x00])
            .collect();
        assert_eq!(
            crypto_frames(&many),
            Err(ParseError::Invalid(
                "more QUIC CRYPTO frames than the limit"
            ))
        );
        // CRYPTO data that is not a ClientHello.
        let not_hello = vec![CryptoFragment {
            offset: 0,
            data: vec![2, 0, 0, 1, 0],
        }];
        assert!(matches!(
            client_hello_from_crypto(&not_hello),
            Err(ParseError::Invalid(_))
        ));
        assert_eq!(client_hello_from_crypto(&[]), Ok(None));
        // An ACK with a range count far beyond the bytes there is an error, not a long loop.
        assert_eq!(
            crypto_frames(&[
                0x02, 0x00, 0x00, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00
            ]),
            Err(ParseError::Invalid("QUIC frame runs past the packet"))
        );
    }
}
