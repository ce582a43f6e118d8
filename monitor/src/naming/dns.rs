//! DNS messages: which names a process asked for, and which addresses the answers bound to them.
//!
//! Reads an RFC 1035 message (a UDP payload, or a TCP one after its 2-byte length prefix with
//! [`parse_tcp_message`]): the header, the question section and the answer section (authority
//! and additional records are not read). Names follow compression pointers; A, AAAA and CNAME
//! data are decoded, other types are kept as their type number. [`address_names`] then says, for
//! each answered address, the name that was asked for, walking the CNAME chain back
//! (`api.example.com CNAME edge.cdn.example`, `edge.cdn.example A 192.0.2.1` gives
//! 192.0.2.1 → api.example.com, with the smallest TTL along the way).
//!
//! Names are lowercase without the trailing dot ("" is the root); a name with a byte outside
//! letters, digits, `-` and `_` makes the message invalid (no host name looks like that).
//! Limits: names at most 255 bytes on the wire (253 as text), at most [`MAX_POINTERS`]
//! compression pointers per name (which also ends pointer loops), at most [`MAX_QUESTIONS`]
//! questions, the first [`MAX_ANSWERS`] answers read (the rest ignored), CNAME chains followed
//! for at most [`MAX_CHAIN`] links.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ParseError;
use super::cursor::Cursor;

pub const MAX_QUESTIONS: usize = 8;
pub const MAX_ANSWERS: usize = 128;
pub const MAX_POINTERS: usize = 16;
pub const MAX_CHAIN: usize = 16;
const MAX_WIRE_NAME_LEN: usize = 255;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const TRUNCATED: ParseError = ParseError::Invalid("DNS message truncated");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    /// The 4-bit response code (0 no error, 3 NXDOMAIN...).
    pub rcode: u8,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    /// Seconds; values with the top bit set count as 0 (RFC 2181 section 8).
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// An IN-class A record.
    A(Ipv4Addr),
    /// An IN-class AAAA record.
    Aaaa(Ipv6Addr),
    /// A CNAME's target name.
    Cname(String),
    /// Any other record, by type number.
    Other(u16),
}

/// An address from an answer and the name a client asked for to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressName {
    pub ip: IpAddr,
    /// The name in the question, found by walking the CNAME chain back from the address record.
    pub name: String,
    /// The smallest TTL along the chain.
    pub ttl: u32,
}

/// Parses one DNS message (the payload of a UDP datagram). A short message is `Invalid`: a
/// datagram does not continue.
pub fn parse_message(buf: &[u8]) -> Result<DnsMessage, ParseError> {
    let mut r = Cursor::new(buf, TRUNCATED);
    let id = r.u16()?;
    let flags = r.u16()?;
    let question_count = usize::from(r.u16()?);
    let answer_count = usize::from(r.u16()?);
    r.u16()?; // authority records, not read
    r.u16()?; // additional records, not read
    if question_count > MAX_QUESTIONS {
        return Err(ParseError::Invalid("more DNS questions than the limit"));
    }
    let mut questions = Vec::with_capacity(question_count);
    for _ in 0..question_count {
        let name = read_name(buf, &mut r)?;
        let qtype = r.u16()?;
        r.u16()?; // class
        questions.push(Question { name, qtype });
    }
    let mut answers = Vec::with_capacity(answer_count.min(MAX_ANSWERS));
    for _ in 0..answer_count.min(MAX_ANSWERS) {
        let name = read_name(buf, &mut r)?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        let ttl = r.u32()?;
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        let data_start = r.pos();
        let data = r.u16_prefixed()?;
        let data = record_data(buf, rtype, class, data_start + 2, data)?;
        answers.push(Record {
            name,
            rtype,
            ttl,
            data,
        });
    }
    Ok(DnsMessage {
        id,
        is_response: flags & 0x8000 != 0,
        rcode: (flags & 0x000f) as u8,
        questions,
        answers,
    })
}

/// Parses a DNS message from a TCP stream, which prefixes each message with its 2-byte length.
pub fn parse_tcp_message(buf: &[u8]) -> Result<DnsMessage, ParseError> {
    let Some(&[hi, lo]) = buf.first_chunk::<2>() else {
        return Err(ParseError::Incomplete { needed: None });
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len < 12 {
        return Err(ParseError::Invalid(
            "DNS over TCP length shorter than a header",
        ));
    }
    let message = buf.get(2..2 + len).ok_or(ParseError::Incomplete {
        needed: Some(2 + len),
    })?;
    parse_message(message)
}

/// For each A/AAAA answer, the asked name behind it (see the module doc).
pub fn address_names(msg: &DnsMessage) -> Vec<AddressName> {
    let mut out = Vec::new();
    for record in &msg.answers {
        let ip = match record.data {
            RecordData::A(v4) => IpAddr::V4(v4),
            RecordData::Aaaa(v6) => IpAddr::V6(v6),
            _ => continue,
        };
        let (mut name, mut ttl) = (record.name.as_str(), record.ttl);
        for _ in 0..MAX_CHAIN {
            if msg.questions.iter().any(|q| q.name == name) {
                break;
            }
            let Some(link) = msg
                .answers
                .iter()
                .find(|r| matches!(&r.data, RecordData::Cname(target) if target == name))
            else {
                break;
            };
            name = &link.name;
            ttl = ttl.min(link.ttl);
        }
        out.push(AddressName {
            ip,
            name: name.to_owned(),
            ttl,
        });
    }
    out
}

fn record_data(
    msg: &[u8],
    rtype: u16,
    class: u16,
    start: usize,
    data: &[u8],
) -> Result<RecordData, ParseError> {
    Ok(match (rtype, class) {
        (TYPE_A, CLASS_IN) => {
            RecordData::A(Ipv4Addr::from(<[u8; 4]>::try_from(data).map_err(|_| {
                ParseError::Invalid("DNS A record data is not 4 bytes")
            })?))
        }
        (TYPE_AAAA, CLASS_IN) => RecordData::Aaaa(Ipv6Addr::from(
            <[u8; 16]>::try_from(data)
                .map_err(|_| ParseError::Invalid("DNS AAAA record data is not 16 bytes"))?,
        )),
        (TYPE_CNAME, _) => {
            let (name, end) = name_at(msg, start)?;
            if end != start + data.len() {
                return Err(ParseError::Invalid(
                    "DNS CNAME data does not hold exactly one name",
                ));
            }
            RecordData::Cname(name)
        }
        _ => RecordData::Other(rtype),
    })
}

/// Reads the name at the cursor and moves the cursor past its in-place part.
fn read_name(msg: &[u8], r: &mut Cursor<'_>) -> Result<String, ParseError> {
    let (name, end) = name_at(msg, r.pos())?;
    r.take(end - r.pos())?;
    Ok(name)
}

/// The name starting at `start`, and where its in-place part ends (after the zero label or the
/// first compression pointer).
fn name_at(msg: &[u8], start: usize) -> Result<(String, usize), ParseError> {
    let mut text = String::new();
    let mut pos = start;
    let mut end = None;
    let mut pointers = 0;
    let mut wire_len = 1; // the zero-length root label
    loop {
        let len = *msg.get(pos).ok_or(TRUNCATED)?;
        match len >> 6 {
            0 if len == 0 => return Ok((text, end.unwrap_or(pos + 1))),
            0 => {
                let len = usize::from(len);
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(TRUNCATED)?;
                wire_len += 1 + len;
                if wire_len > MAX_WIRE_NAME_LEN {
                    return Err(ParseError::Invalid("DNS name longer than 255 bytes"));
                }
                if !text.is_empty() {
                    text.push('.');
                }
                for &b in label {
                    if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                        return Err(ParseError::Invalid(
                            "DNS name with a byte outside host-name characters",
                        ));
                    }
                    text.push(char::from(b.to_ascii_lowercase()));
                }
                pos += 1 + len;
            }
            3 => {
                let low = *msg.get(pos + 1).ok_or(TRUNCATED)?;
                end.get_or_insert(pos + 2);
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(ParseError::Invalid(
                        "DNS compression pointers loop or chain too long",
                    ));
                }
                pos = usize::from(len & 0x3f) << 8 | usize::from(low);
            }
            _ => return Err(ParseError::Invalid("DNS extended label type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in text.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
        [id, flags, qd, an, 0, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn record(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut out = owner.to_vec();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A resolver's answer for API.OpenAI.com: a CNAME to a CDN name, then two A records for
    /// it, all owners written as compression pointers.
    fn cname_response() -> Vec<u8> {
        let mut msg = header(0x1234, 0x8180, 1, 4);
        msg.extend(name("API.OpenAI.com"));
        msg.extend([0, 1, 0, 1]);
        // The CNAME target is written after the question at offset 12 + 16 + 4 + 12 = 44.
        let cname_target = [&[3, b'c', b'd', b'n'][..], &name("cloudflare.net")].concat();
        msg.extend(record(&[0xc0, 12], TYPE_CNAME, 300, &cname_target));
        msg.extend(record(&[0xc0, 44], TYPE_A, 60, &[104, 18, 7, 192]));
        msg.extend(record(&[0xc0, 44], TYPE_A, 120, &[104, 18, 6, 192]));
        msg.extend(record(&[0xc0, 12], 65, 300, &[0, 1, 0]));
        msg
    }

    #[test]
    fn response_with_cname_chain_and_compression() {
        let bytes = cname_response();
        let msg = parse_message(&bytes).unwrap();
        assert_eq!((msg.id, msg.is_response, msg.rcode), (0x1234, true, 0));
        assert_eq!(
            msg.questions,
            vec![Question {
                name: "api.openai.com".to_owned(),
                qtype: 1
            }]
        );
        assert_eq!(msg.answers.len(), 4);
        assert_eq!(
            msg.answers[0].data,
            RecordData::Cname("cdn.cloudflare.net".to_owned())
        );
        assert_eq!(msg.answers[1].name, "cdn.cloudflare.net");
        assert_eq!(msg.answers[3].data, RecordData::Other(65));
        let names = address_names(&msg);
        assert_eq!(
            names,
            vec![
                AddressName {
                    ip: "104.18.7.192".parse().unwrap(),
                    name: "api.openai.com".to_owned(),
                    ttl: 60
                },
                AddressName {
                    ip: "104.18.6.192".parse().unwrap(),
                    name: "api.openai.com".to_owned(),
                    ttl: 120
                },
            ]
        );
        // Over TCP, and cut short.
        let mut tcp = (bytes.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&bytes);
        assert_eq!(parse_tcp_message(&tcp).unwrap(), msg);
        assert_eq!(
            parse_tcp_message(&tcp[..1]),
            Err(ParseError::Incomplete { needed: None })
        );
        assert_eq!(
            parse_tcp_message(&tcp[..40]),
            Err(ParseError::Incomplete {
                needed: Some(tcp.len())
            })
        );
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse_message(&bytes[..cut]), Err(ParseError::Invalid(_))),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn query_and_aaaa() {
        let mut query = header(7, 0x0100, 1, 0);
        query.extend(name("generativelanguage.googleapis.com."));
        query.extend([0, 28, 0, 1]);
        let msg = parse_message(&query).unwrap();
        assert!(!msg.is_response);
        assert_eq!(msg.questions[0].name, "generativelanguage.googleapis.com");
        assert_eq!(msg.questions[0].qtype, 28);
        assert!(address_names(&msg).is_empty());

        let mut answer = header(7, 0x8180, 1, 1);
        answer.extend(&query[12..]);
        let v6: Ipv6Addr = "2404:6800:4005:80a::200a".parse().unwrap();
        answer.extend(record(&[0xc0, 12], TYPE_AAAA, 0x8000_0000, &v6.octets()));
        let msg = parse_message(&answer).unwrap();
        assert_eq!(
            msg.answers[0].ttl, 0,
            "a TTL with the top bit set counts as 0"
        );
        assert_eq!(
            address_names(&msg),
            vec![AddressName {
                ip: IpAddr::V6(v6),
                name: "generativelanguage.googleapis.com".to_owned(),
                ttl: 0
            }]
        );
    }

    #[test]
    fn nxdomain_has_rcode() {
        let mut msg = header(1, 0x8183, 1, 0);
        msg.extend(name("nope.example"));
        msg.extend([0, 1, 0, 1]);
        assert_eq!(parse_message(&msg).unwrap().rcode, 3);
    }

    #[test]
    fn pointer_loops_and_bad_names_are_invalid() {
        // A name that points at itself.
        let mut msg = header(1, 0x8180, 1, 0);
        msg.extend([0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_message(&msg),
            Err(ParseError::Invalid(
                "DNS compression pointers loop or chain too long"
            ))
        );
        // Two names pointing at each other.
        let mut msg = header(1, 0x8180, 2, 0);
        msg.extend([1, b'a', 0xc0, 20, 0, 1, 0, 1, 1, b'b', 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_message(&msg),
            Err(ParseError::Invalid(
                "DNS compression pointers loop or chain too long"
            ))
        );
        // A pointer past the end.
        let mut msg = header(1, 0x8180, 1, 0);
        msg.extend([0xff, 0xff, 0, 1, 0, 1]);
        assert_eq!(parse_message(&msg), Err(TRUNCATED));
        // Extended label type, odd bytes, a name over 255 bytes.
        let mut msg = header(1, 0x8180, 1, 0);
        msg.extend([0x41, 0, 0, 1, 0, 1]);
        assert_eq!(
            parse_message(&msg),
            Err(ParseError::Invalid("DNS extended label type"))
        );
        let mut msg = header(1, 0x8180, 1, 0);
        msg.extend([3, b'a', b'.', b'b', 0, 0, 1, 0, 1]);
        assert!(matches!(parse_message(&msg), Err(ParseError::Invalid(_))));
        let mut msg = header(1, 0x8180, 1, 0);
        for _ in 0..5 {
            msg.push(63);
            msg.extend([b'x'; 63]);
        }
        msg.extend([0, 0, 1, 0, 1]);
        assert_eq!(
            parse_message(&msg),
            Err(ParseError::Invalid("DNS name longer than 255 bytes"))
        );
        // Too many questions; A data of the wrong size.
        assert_eq!(
            parse_message(&header(1, 0, 9, 0)),
            Err(ParseError::Invalid("more DNS questions than the limit"))
        );
        let mut msg = header(1, 0x8180, 0, 1);
        msg.extend(record(&name("a.example"), TYPE_A, 5, &[1, 2, 3]));
        assert_eq!(
            parse_message(&msg),
            Err(ParseError::Invalid("DNS A record data is not 4 bytes"))
        );
    }

    #[test]
    fn cname_loops_end() {
        // a CNAME b, b CNAME a, b A 192.0.2.1, and a question for neither.
        let mut msg = header(1, 0x8180, 1, 3);
        msg.extend(name("q.example"));
        msg.extend([0, 1, 0, 1]);
        msg.extend(record(
            &name("a.example"),
            TYPE_CNAME,
            9,
            &name("b.example"),
        ));
        msg.extend(record(
            &name("b.example"),
            TYPE_CNAME,
            9,
            &name("a.example"),
        ));
        msg.extend(record(&name("b.example"), TYPE_A, 9, &[192, 0, 2, 1]));
        let names = address_names(&parse_message(&msg).unwrap());
        assert_eq!(names.len(), 1);
        assert!(names[0].name == "a.example" || names[0].name == "b.example");
    }

    #[test]
    fn many_answers_are_capped() {
        let mut msg = header(1, 0x8180, 0, 300);
        for i in 0..300u32 {
            msg.extend(record(&[0], TYPE_A, i, &i.to_be_bytes()));
        }
        assert_eq!(parse_message(&msg).unwrap().answers.len(), MAX_ANSWERS);
    }
}
