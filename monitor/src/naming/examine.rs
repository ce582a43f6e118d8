//! Protocol dispatch over a flow's first bytes: which parser reads them (proxy request and the
//! tunnel behind it, TLS ClientHello, HTTP request, QUIC Initials) and what naming they give.
//! Pure functions over byte slices; the correlator calls them as bytes arrive.
use monitor_common::first_payload::{ProxyProtocol, stream_proxy_start};

use super::{
    ParseError,
    model::{NameSource, Naming, ProxyTarget, TlsEvidence},
};

/// What the first bytes of a stream say so far.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamVerdict {
    /// The best naming so far (for example the proxy target while the tunnel is still silent).
    pub naming: Option<Naming>,
    /// No more bytes can improve it.
    pub complete: bool,
}

fn tls_evidence(hello: &super::tls::ClientHello) -> TlsEvidence {
    TlsEvidence {
        server_name: hello.sni.clone(),
        ja4: hello.ja4.clone(),
        alpn: hello.alpn.clone(),
    }
}

fn from_tls(
    hello: &super::tls::ClientHello,
    source: NameSource,
    proxy: Option<ProxyTarget>,
) -> Naming {
    Naming {
        domain: hello.sni.clone(),
        source: if hello.sni.is_some() {
            source
        } else {
            NameSource::None
        },
        tls: Some(tls_evidence(hello)),
        proxy,
    }
}

/// Where the header block of an HTTP request ends (after CRLF CRLF).
fn http_header_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// Name a stream from its first bytes (client to server direction).
pub fn examine_stream(bytes: &[u8]) -> StreamVerdict {
    let pending = |naming| StreamVerdict {
        naming,
        complete: false,
    };
    let settled = |naming| StreamVerdict {
        naming,
        complete: true,
    };
    if bytes.is_empty() {
        return pending(None);
    }
    // The kernel's rule: a stream it captured as a proxy request is read as one here.
    if let Some(proxy) = stream_proxy_start(bytes) {
        let parsed = if proxy == ProxyProtocol::HttpConnect {
            super::http::parse_request(bytes).and_then(|req| {
                let (host, port) = req
                    .connect_target
                    .ok_or(ParseError::Invalid("CONNECT without host:port"))?;
                let consumed =
                    http_header_end(bytes).ok_or(ParseError::Incomplete { needed: None })?;
                Ok((ProxyTarget { host, port }, consumed))
            })
        } else {
            super::socks::parse_client_stream(bytes).map(|req| {
                let host = match req.target {
                    super::socks::SocksTarget::Domain(d) => d,
                    super::socks::SocksTarget::Ip(ip) => ip.to_string(),
                };
                (
                    ProxyTarget {
                        host,
                        port: req.port,
                    },
                    req.consumed,
                )
            })
        };
        let (target, consumed) = match parsed {
            Ok(p) => p,
            Err(ParseError::Incomplete { .. }) => return pending(None),
            Err(ParseError::Invalid(_)) => return settled(None),
        };
        let by_target = Naming {
            domain: Some(target.host.clone()),
            source: NameSource::ProxyTarget,
            tls: None,
            proxy: Some(target.clone()),
        };
        let tunnel = bytes.get(consumed..).unwrap_or_default();
        if tunnel.is_empty() {
            return pending(Some(by_target));
        }
        if tunnel[0] != 0x16 {
            return settled(Some(by_target)); // plain HTTP or another protocol in the tunnel
        }
        return match super::tls::parse_client_hello(tunnel) {
            Ok(hello) if hello.sni.is_some() => {
                settled(Some(from_tls(&hello, NameSource::Sni, Some(target))))
            }
            Ok(hello) => settled(Some(Naming {
                tls: Some(tls_evidence(&hello)),
                ..by_target
            })),
            Err(ParseError::Incomplete { .. }) => pending(Some(by_target)),
            Err(ParseError::Invalid(_)) => settled(Some(by_target)),
        };
    }
    if bytes[0] == 0x16 {
        return match super::tls::parse_client_hello(bytes) {
            Ok(hello) => settled(Some(from_tls(&hello, NameSource::Sni, None))),
            Err(ParseError::Incomplete { .. }) => pending(None),
            Err(ParseError::Invalid(_)) => settled(None),
        };
    }
    match super::http::parse_request(bytes) {
        Ok(req) => settled(req.host.map(|h| Naming {
            domain: Some(h),
            source: NameSource::HttpHost,
            tls: None,
            proxy: None,
        })),
        Err(ParseError::Incomplete { .. }) => pending(None),
        Err(ParseError::Invalid(_)) => settled(None),
    }
}

/// Datagrams examined per UDP flow: as many as the kernel captures.
pub const DATAGRAMS_CAPTURED: usize = monitor_common::capture::DATAGRAMS_CAPTURED as usize;

/// What a UDP flow's first datagrams say: the QUIC ClientHello's naming, reassembled from the
/// CRYPTO frames of up to two Initials with the same Destination Connection ID. `complete` once
/// no further datagram can help (named, not QUIC, or both datagrams seen).
pub fn examine_datagrams<D: AsRef<[u8]>>(datagrams: &[D]) -> StreamVerdict {
    let settled = |naming| StreamVerdict {
        naming,
        complete: true,
    };
    let Some(Ok(first)) = datagrams
        .first()
        .map(|d| super::quic::parse_initial(d.as_ref()))
    else {
        return settled(None);
    };
    if let Some(hello) = &first.client_hello {
        return settled(Some(from_tls(hello, NameSource::QuicSni, None)));
    }
    let Some(second) = datagrams.get(1) else {
        return StreamVerdict {
            naming: None,
            complete: false,
        };
    };
    let hello = match super::quic::parse_initial(second.as_ref()) {
        Ok(next) if next.dcid == first.dcid => {
            let mut crypto = first.crypto;
            crypto.extend(next.crypto);
            super::quic::client_hello_from_crypto(&crypto)
                .ok()
                .flatten()
        }
        _ => None,
    };
    settled(hello.map(|h| from_tls(&h, NameSource::QuicSni, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_that_are_not_quic_settle_at_once() {
        for seen in [
            &[][..],
            &[&b"\x01\x02 not quic"[..]][..],
            &[&[0xc0u8, 0, 0, 0, 1][..]][..],
        ] {
            let v = examine_datagrams(seen);
            assert!(v.complete && v.naming.is_none(), "{seen:?}");
        }
    }

    #[test]
    fn http_host_names_a_plain_request() {
        let v = examine_stream(
            b"POST /v1/chat HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer x\r\n\r\n",
        );
        assert!(v.complete);
        let n = v.naming.unwrap();
        assert_eq!(
            (n.domain.as_deref(), n.source),
            (Some("api.openai.com"), NameSource::HttpHost)
        );
    }

    #[test]
    fn partial_request_waits_and_garbage_settles_unnamed() {
        assert_eq!(
            examine_stream(b"GET / HTTP/1.1\r\nHo"),
            StreamVerdict {
                naming: None,
                complete: false
            }
        );
        assert_eq!(
            examine_stream(b"SSH-2.0-OpenSSH_9.2\r\n"),
            StreamVerdict {
                naming: None,
                complete: true
            }
        );
        assert_eq!(
            examine_stream(b""),
            StreamVerdict {
                naming: None,
                complete: false
            }
        );
    }

    #[test]
    fn connect_proxy_target_then_tunnel() {
        let head = b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n"
            .to_vec();
        // Tunnel still silent: the target so far, and keep waiting for the ClientHello.
        let v = examine_stream(&head);
        assert!(!v.complete);
        let n = v.naming.unwrap();
        assert_eq!(
            (n.domain.as_deref(), n.source),
            (Some("api.anthropic.com"), NameSource::ProxyTarget)
        );
        assert_eq!(
            n.proxy,
            Some(ProxyTarget {
                host: "api.anthropic.com".into(),
                port: 443
            })
        );
        // A TLS record that is still incomplete keeps waiting; plain bytes settle on the target.
        let mut partial_tls = head.clone();
        partial_tls.extend_from_slice(&[0x16, 3, 1, 0x02, 0x00, 1, 0, 1]);
        assert!(!examine_stream(&partial_tls).complete);
        let mut plain = head;
        plain.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let v = examine_stream(&plain);
        assert!(v.complete);
        assert_eq!(v.naming.unwrap().source, NameSource::ProxyTarget);
    }

    #[test]
    fn socks5_greeting_alone_waits_then_the_request_names() {
        assert_eq!(
            examine_stream(&[5, 1, 0]),
            StreamVerdict {
                naming: None,
                complete: false
            }
        );
        let mut stream = vec![5, 1, 0, 5, 1, 0, 3, 14];
        stream.extend_from_slice(b"api.mistral.ai");
        stream.extend_from_slice(&443u16.to_be_bytes());
        let n = examine_stream(&stream).naming.unwrap();
        assert_eq!(
            (n.domain.as_deref(), n.source),
            (Some("api.mistral.ai"), NameSource::ProxyTarget)
        );
    }
}
