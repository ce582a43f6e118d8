//! What the destinations are: the list engine (`blocklist`, depends on nothing else here),
//! classification of a named connection against the lists (`classify`), relays that processes
//! are configured with (`discovery`) and relays named in AI clients' configuration files
//! (`relay_files`), resolving the lists' names to addresses (`resolve`) and
//! remote lists (`feeds`).
pub mod blocklist;
pub(crate) mod classify;
pub(crate) mod discovery;
pub(crate) mod feeds;
pub(crate) mod relay_files;
pub(crate) mod resolve;
