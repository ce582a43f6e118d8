//! TLS uprobe targets: any bytes (the daemon reads files a local user controls); no panic, and
//! every target found lies inside the input and is probed at entry unless it is a read return.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::tls_targets::{TlsLibrary, find_targets};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(targets)) = find_targets(data) {
        assert!(!targets.probes.is_empty());
        for probe in &targets.probes {
            assert!(probe.file_offset < data.len() as u64);
            assert!(!(targets.library == TlsLibrary::Go && probe.kind.is_return()));
        }
    }
});
