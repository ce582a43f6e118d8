//! The kernel side as the daemon sees it: checks before loading (`preflight`), loading and
//! attaching the programs (`loader`, with field offsets from the kernel's BTF in `btf`), and
//! turning ring-buffer bytes into typed records (`decode`); where to put uprobes on TLS
//! libraries and Go binaries (`tls_targets`), which files and processes carry them
//! (`tls_probes`), and the thread that attaches them per process (`tls_attach`).
pub(crate) mod btf;
pub(crate) mod decode;
pub(crate) mod loader;
pub(crate) mod preflight;
pub(crate) mod tls_attach;
pub(crate) mod tls_probes;
// `pub` (not `pub(crate)`) so that lib.rs can re-export it for its fuzz target.
pub mod tls_targets;
