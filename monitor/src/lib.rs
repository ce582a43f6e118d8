//! relaywatch's daemon and CLI as a library: the `relaywatch` binary (`main.rs`) is a thin
//! front end; fuzz targets, benchmarks and the integration tests reach the pure parsers and the
//! list engine through here.
//!
//! Folders follow the data, kernel to SIEM, each one concern:
//! - `kernel/`: preflight checks, loading and attaching the eBPF programs, BTF offsets, and
//!   decoding ring-buffer records into typed observations.
//! - `process/`: who made a connection: /proc reader, the exec-fed process table, cgroup paths,
//!   command-line redaction.
//! - `naming/`: pure parsers of first bytes (TLS, QUIC, HTTP, SOCKS, DNS) and the naming model.
//! - `correlate/`: records waiting for their first bytes, DNS answer caches.
//! - `intel/`: the list engine, classification, relay discovery, list-name resolution, feeds.
//! - `report/`: the typed record and alert model, ECS and OCSF, dedupe.
//! - `output/`: SIEM sinks and the SQLite store.
//! - `transport/`: TCP/TLS connections and the small HTTP client the sinks and feeds share.
//! - `control/`: the local API, Prometheus metrics, sd_notify.
//! - `daemon/`: the event loop, the pipeline that ties the folders above together, the API's
//!   state, the status snapshot.
//! - `config/`: the TOML configuration, its checks and the default file.
//! - `cli/`: argument parsing, queries of the running daemon, rendering, list commands.
//!
//! `naming/` and `intel/blocklist/` depend on nothing else in this crate.
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod control;
pub(crate) mod correlate;
pub(crate) mod daemon;
pub(crate) mod dirs;
pub mod intel;
pub(crate) mod kernel;
// The pure ELF reader of the kernel side, for its fuzz target; the loader wires it next.
pub use kernel::tls_targets;
pub mod naming;
pub(crate) mod output;
pub(crate) mod process;
pub(crate) mod report;
#[cfg(test)]
pub(crate) mod testutil;
pub(crate) mod transport;
