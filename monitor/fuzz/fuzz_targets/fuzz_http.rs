//! HTTP: no panic; a result names a host within limits and never more than the head holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::naming::{ParseError, http};

fuzz_target!(|data: &[u8]| match http::parse_request(data) {
    Ok(request) => {
        assert!(request.host.as_ref().is_none_or(|h| !h.is_empty() && h.len() <= 253));
        assert!(request.target.len() <= http::MAX_HEAD_LEN && request.method.len() <= 16);
        if let Some((host, _)) = &request.connect_target {
            assert_eq!(request.host.as_ref(), Some(host));
        }
    }
    Err(ParseError::Incomplete { needed }) => {
        assert!(data.len() < http::MAX_HEAD_LEN);
        assert_eq!(needed, None);
    }
    Err(ParseError::Invalid(_)) => {}
});
