//! Outbound connections the agent itself makes: TCP and TLS endpoints (`net`) and the small
//! bounded HTTP/1.1 client (`http`) that the HTTPS sinks and the list feeds share.
pub(crate) mod http;
pub(crate) mod net;
