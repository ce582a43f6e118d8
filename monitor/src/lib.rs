//! relaywatch's daemon and CLI as a library: the `relaywatch` binary (`main.rs`) is a thin
//! front end, and fuzz targets and benchmarks reach the pure parsers through here.
pub mod alert;
pub mod api;
pub mod blocklist;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod correlate;
pub mod daemon;
pub mod diag;
pub mod dns_cache;
pub mod generate;
pub mod ingest;
pub mod loader;
pub mod metrics;
pub mod naming;
pub mod preflight;
pub mod process;
pub mod proctable;
pub mod record;
pub mod redact;
pub mod render;
pub mod sdnotify;
pub mod sinks;
pub mod store;
pub mod stream;
