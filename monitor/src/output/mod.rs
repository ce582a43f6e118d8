//! Where records go besides stdout: the SIEM sinks with their on-disk queues (`sinks`) and the
//! local SQLite store the API and CLI read (`store`).
pub(crate) mod sinks;
pub(crate) mod store;
