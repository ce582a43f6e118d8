//! Request and response heads of TLS plaintext: no panic; a result stays within its limits and
//! its model is a model name; the classification of any request head holds together.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::intel::api_shape;
use monitor::naming::{ParseError, request};

fuzz_target!(|data: &[u8]| {
    match request::parse_request(data) {
        Ok(head) => {
            assert!(head.path.len() <= request::MAX_PATH_LEN);
            assert!(head.path.starts_with('/') || head.path == "*");
            assert!(
                head.path
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
            );
            assert!(head.method.len() <= 16 && !head.method.is_empty());
            assert!(
                head.host
                    .as_ref()
                    .is_none_or(|h| !h.is_empty() && h.len() <= 253)
            );
            assert!(head.api_headers.len() <= request::MAX_API_HEADERS);
            assert!(
                head.user_agent
                    .as_ref()
                    .is_none_or(|u| u.len() <= request::MAX_USER_AGENT_LEN)
            );
            assert!(head.model.as_ref().is_none_or(|m| {
                !m.is_empty()
                    && m.len() <= request::MAX_MODEL_LEN
                    && m.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b))
            }));
            assert!(
                head.key_prefix
                    .is_none_or(|k| request::KEY_PREFIXES.contains(&k))
            );
            if let Some(evidence) = api_shape::classify(&head) {
                assert_eq!(evidence.method, head.method);
                assert!(
                    evidence
                        .prefix
                        .as_ref()
                        .is_none_or(|p| p.len() <= api_shape::MAX_PREFIX_LEN)
                );
                assert!(evidence.route.is_some() || evidence.prefix.is_none());
                assert!(evidence.route.as_ref().is_none_or(|r| r.starts_with('/')));
            }
        }
        Err(ParseError::Incomplete { needed }) => {
            assert!(needed.is_none_or(|n| n > data.len().min(request::MAX_INPUT)));
        }
        Err(ParseError::Invalid(_)) => {}
    }
    if let Ok(response) = request::parse_response(data) {
        assert!((100..600).contains(&response.status));
    }
});
