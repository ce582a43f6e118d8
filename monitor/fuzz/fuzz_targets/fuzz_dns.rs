//! DNS: UDP and TCP forms; no panic; names and lists within limits; address_names terminates.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::naming::{ParseError, dns};

fuzz_target!(|data: &[u8]| {
    check(dns::parse_message(data));
    match dns::parse_tcp_message(data) {
        Err(ParseError::Incomplete { needed: Some(n) }) => assert!(n > data.len()),
        other => check(other),
    }
});

fn check(result: Result<dns::DnsMessage, ParseError>) {
    let Ok(message) = result else { return };
    assert!(message.questions.len() <= dns::MAX_QUESTIONS && message.answers.len() <= dns::MAX_ANSWERS);
    for name in message.questions.iter().map(|q| &q.name).chain(message.answers.iter().map(|a| &a.name)) {
        assert!(name.len() <= 253, "{name}");
    }
    let names = dns::address_names(&message);
    assert!(names.len() <= message.answers.len());
}
