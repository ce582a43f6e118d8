//! QUIC across two datagrams, as a UDP flow's first two are examined: the first byte splits the
//! input in two. Both halves go through the Initial parser and the flow-level reassembly
//! (`examine_datagrams`), and, taken as decrypted payloads, through the CRYPTO frame walk whose
//! fragments are joined before the ClientHello is read (overlaps, gaps and duplicates included).
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::naming::{examine, quic};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let (a, b) = rest.split_at((split as usize * rest.len()) / 256);
    let verdict = examine::examine_datagrams(&[a, b]);
    assert!(verdict.complete, "two datagrams always settle a flow");
    let _ = examine::examine_datagrams(&[a]);
    if let (Ok(mut first), Ok(second)) = (quic::crypto_frames(a), quic::crypto_frames(b)) {
        first.extend(second);
        if let Ok(Some(hello)) = quic::client_hello_from_crypto(&first) {
            assert!(hello.ja4.starts_with('q'));
        }
    }
});
