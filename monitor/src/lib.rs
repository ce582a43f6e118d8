//! relaywatch's daemon and CLI as a library: the `relaywatch` binary (`main.rs`) is a thin
//! front end, and fuzz targets and benchmarks reach the pure parsers through here.
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod generate;
pub mod ingest;
pub mod loader;
pub mod metrics;
pub mod preflight;
pub mod process;
pub mod record;
pub mod sdnotify;
