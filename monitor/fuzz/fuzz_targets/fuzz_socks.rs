//! SOCKS: no panic; `consumed` stays inside the input; Incomplete asks for more than there is.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::naming::{ParseError, SocksTarget, socks};

fuzz_target!(|data: &[u8]| {
    let _ = socks::looks_like_proxy_start(data);
    match socks::parse_client_stream(data) {
        Ok(request) => {
            assert!(request.consumed <= data.len() && request.consumed >= 8);
            assert!(request.version == 4 || request.version == 5);
            if let SocksTarget::Domain(name) = &request.target {
                assert!(!name.is_empty() && name.len() <= 253);
            }
        }
        Err(ParseError::Incomplete { needed: Some(n) }) => assert!(n > data.len(), "needed {n} of {}", data.len()),
        Err(_) => {}
    }
});
