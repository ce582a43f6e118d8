//! TLS: a stream start (records) and a bare handshake message; no panic, and results within limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::naming::{ParseError, tls};

fuzz_target!(|data: &[u8]| {
    if let Some(n) = tls::record_needed(data) {
        assert!((6..=5 + (1 << 14)).contains(&n));
    }
    check(tls::parse_client_hello(data), data.len());
    check(tls::parse_client_hello_handshake(data, data.first().is_some_and(|b| b & 1 == 1)), data.len());
});

fn check(result: Result<tls::ClientHello, ParseError>, len: usize) {
    match result {
        Ok(hello) => {
            assert!(hello.sni.as_ref().is_none_or(|s| !s.is_empty() && s.len() <= monitor::naming::MAX_NAME_LEN));
            assert_eq!(hello.ja4.len(), 36, "{}", hello.ja4);
            // a_b_c with only letters and digits around the two `_`, whatever the ALPN bytes.
            let well_formed = hello.ja4.bytes().enumerate().all(|(i, b)| match i {
                10 | 23 => b == b'_',
                _ => b.is_ascii_alphanumeric(),
            });
            assert!(well_formed, "{}", hello.ja4);
            assert!(hello.alpn.len() <= tls::MAX_ALPN && hello.extensions.len() <= tls::MAX_EXTENSIONS);
        }
        Err(ParseError::Incomplete { needed: Some(n) }) => assert!(n > len, "needed {n} of {len}"),
        Err(_) => {}
    }
}
