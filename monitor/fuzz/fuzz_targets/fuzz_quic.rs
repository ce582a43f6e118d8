//! QUIC: the packet parser (header, keys, header protection; random bytes rarely pass the AEAD
//! tag) and, on the same bytes, the frame walk and CRYPTO reassembly that run after decryption.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::naming::{ParseError, quic};

fuzz_target!(|data: &[u8]| {
    match quic::parse_initial(data) {
        Ok(initial) => assert!(initial.dcid.len() <= 20),
        Err(ParseError::Incomplete { needed: Some(n) }) => assert!(n > data.len()),
        Err(_) => {}
    }
    if let Ok(fragments) = quic::crypto_frames(data) {
        assert!(fragments.len() <= quic::MAX_CRYPTO_FRAMES);
        if let Ok(Some(hello)) = quic::client_hello_from_crypto(&fragments) {
            assert!(hello.ja4.starts_with('q'));
        }
    }
});
