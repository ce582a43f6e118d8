//! One conditional GET of a feed over HTTPS, with the sinks' HTTP client (hyper over rustls,
//! system roots or the feed's `ca_file`).
//!
//! Bounds: connecting and the TLS handshake `net::CONNECT_TIMEOUT` each, and the whole check
//! (connecting, the handshake, the request and the body) the feed's `timeout_s`; the body the
//! feed's `max_bytes` (an answer whose Content-Length is larger is refused before its body is
//! read, one without Content-Length when that many bytes have come). Redirects are not followed
//! (the configured URL is the one trusted). Error messages name the status, never the body: a
//! server's answer is not logged.
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
                timeout: std::time::Duration::from_secs(feed.timeout_s),
                max_body: usize::try_from(feed.max_bytes).unwrap_or(usize::MAX),
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
        s if is_redirect(s) => Err(redirect_refused(
            s,
            &feed.url,
            text(header::LOCATION).as_deref(),
        )),
        s => Err(format!("HTTP {s}")),
    }
}

/// The statuses that send a client elsewhere (with a Location).
fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The error for a redirect: the feed's URL and where it points, without their queries (which
/// may hold a token).
fn redirect_refused(status: StatusCode, url: &str, location: Option<&str>) -> String {
    let to = location.map_or_else(
        || "elsewhere (no Location header)".to_owned(),
        crate::config::redacted_url,
    );
    format!(
        "HTTP {status}: {} redirects to {to}; redirects are not followed (configure the list's final URL)",
        crate::config::redacted_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_refused_naming_both_urls() {
        for code in [301, 302, 303, 307, 308] {
            assert!(is_redirect(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        // 304 (to an unconditional request) and 300 do not point anywhere.
        for code in [300, 304, 305] {
            assert!(!is_redirect(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        assert_eq!(
            redirect_refused(
                StatusCode::FOUND,
                "https://h/a.list?token=s3cret",
                Some("https://mirror.example/b.list?sig=x")
            ),
            "HTTP 302 Found: https://h/a.list?… redirects to https://mirror.example/b.list?…; \
             redirects are not followed (configure the list's final URL)"
        );
        assert_eq!(
            redirect_refused(StatusCode::PERMANENT_REDIRECT, "https://h/a.list", None),
            "HTTP 308 Permanent Redirect: https://h/a.list redirects to elsewhere (no Location \
             header); redirects are not followed (configure the list's final URL)"
        );
    }
}
