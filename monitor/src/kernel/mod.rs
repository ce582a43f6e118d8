//! The kernel side as the daemon sees it: checks before loading (`preflight`), loading and
//! attaching the programs (`loader`, with field offsets from the kernel's BTF in `btf`), and
//! turning ring-buffer bytes into typed records (`decode`).
pub(crate) mod btf;
pub(crate) mod decode;
pub(crate) mod loader;
pub(crate) mod preflight;
