//! One conditional GET of a feed over HTTPS, with the sinks' HTTP client (hyper over rustls,
//! system roots or the feed's `ca_file`).
//!
//! Bounds: connecting and the TLS handshake `net::CONNECT_TIMEOUT` each, the whole exchange
//! `REQUEST_TIMEOUT`, the body `MAX_BODY`. Redirects are not followed (the configured URL is the
//! one trusted). Error messages name the status, never the body: a server's answer is not logged.
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, header};

use crate::{
    config::Feed,
    transport::{
        http::{Client, Limits},
        net::{Connector, Endpoint},
    },
};

/// The largest list body accepted.
pub const MAX_BODY: usize = 64 << 20;
/// Time allowed for one exchange, from sending the request to the end of the body.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Validators of the cached copy, sent so that an unchanged list costs a 304.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What the server answered.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the cached copy is current.
    NotModified,
    /// 200: a body, with the validators to send next time.
    Body { body: Bytes, validators: Validators },
}

pub async fn fetch(feed: &Feed, cached: Option<&Validators>) -> Result<Fetched, String> {
    let endpoint = Endpoint::parse(&feed.url).map_err(|e| e.to_string())?;
    let path = endpoint.path.clone();
    let connector =
        Connector::new(endpoint, feed.ca_file.as_deref()).map_err(|e| format!("{e:#}"))?;
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::ACCEPT, "text/plain, */*;q=0.5");
    if let Some(v) = cached {
        for (name, value) in [
            (header::IF_NONE_MATCH, &v.etag),
            (header::IF_MODIFIED_SINCE, &v.last_modified),
        ] {
            if let Some(value) = value
                .as_deref()
                .and_then(|s| header::HeaderValue::from_str(s).ok())
            {
                request = request.header(name, value);
            }
        }
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad request: {e}"))?;
    let answer = Client::new(connector)
        .send(
            request,
            Limits {
                timeout: REQUEST_TIMEOUT,
                max_body: MAX_BODY,
            },
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    let text = |name| {
        answer
            .headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    match answer.status {
        StatusCode::OK => Ok(Fetched::Body {
            validators: Validators {
                etag: text(header::ETAG),
                last_modified: text(header::LAST_MODIFIED),
            },
            body: answer.body,
        }),
        StatusCode::NOT_MODIFIED if cached.is_some() => Ok(Fetched::NotModified),
        s if s.is_redirection() => Err(format!(
            "HTTP {s} (redirects are not followed: configure the list's final URL)"
        )),
        s => Err(format!("HTTP {s}")),
    }
}
