//! What the destinations are: the list engine (`blocklist`, depends on nothing else here),
//! whether a request read from TLS plaintext is an AI API call (`api_shape`, public for the
//! fuzz target; depends only on `naming`), classification of a named connection against the lists (`classify`), relays that processes
//! are configured with (`discovery`), resolving the lists' names to addresses (`resolve`) and
//! remote lists (`feeds`).
pub mod api_shape;
pub mod blocklist;
pub(crate) mod classify;
pub(crate) mod discovery;
pub(crate) mod feeds;
pub(crate) mod resolve;
