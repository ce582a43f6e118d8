//! What the destinations are: the list engine (`blocklist`, depends on nothing else here),
//! whether a request read from TLS plaintext is an AI API call (`api_shape`, public for the
//! fuzz target; depends only on `naming`), classification of a named connection against the
//! lists (`classify`), relays that processes are configured with (`discovery`) and relays named
//! in AI clients' configuration files (`relay_files`), relays learned from the requests sent to
//! them and the gateways allowed to look like one (`relays`), resolving the lists' names to
//! addresses (`resolve`) and remote lists (`feeds`).
pub mod api_shape;
pub mod blocklist;
pub(crate) mod classify;
pub(crate) mod discovery;
pub(crate) mod feeds;
pub(crate) mod relay_files;
pub(crate) mod relays;
pub(crate) mod resolve;
