//! relaywatch's daemon and CLI as a library: the `relaywatch` binary (`main.rs`) is a thin
//! front end, and fuzz targets and benchmarks reach the pure parsers through here.
pub mod blocklist;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod ingest;
pub mod loader;
pub mod preflight;
pub mod process;
pub mod record;
