//! One kept-alive HTTP/1.1 connection (hyper's connection-level client) over a `net::Connector`:
//! the HTTPS sinks POST through it and the list feeds GET through it. Every exchange is bounded
//! in time and in the size of the answer it reads.
use std::time::Duration;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::{Request, StatusCode, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;

use super::net::Connector;

/// One HTTP/1.1 connection, opened on demand and kept alive. The HTTP sinks POST through it;
/// the blocklist feeds (`feeds`) GET through it.
pub struct Client {
    connector: Connector,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Bytes,
}

/// Bounds of one exchange: the whole of it (sending, waiting, reading) and the answer's body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_body: usize,
}

impl Client {
    pub fn new(connector: Connector) -> Client {
        Client {
            connector,
            sender: None,
        }
    }

    /// Send `request` (its Host and User-Agent headers are set here) and read the answer.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
        limits: Limits,
    ) -> Result<Answer> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let io = self.connector.connect().await?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        log::debug!("HTTP connection: {e}");
                    }
                });
                sender
            }
        };
        let authority = self.connector.endpoint().authority();
        let headers = request.headers_mut();
        headers.insert(header::HOST, header::HeaderValue::from_str(&authority)?);
        headers.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static(concat!("relaywatch/", env!("CARGO_PKG_VERSION"))),
        );
        let max = limits.max_body;
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max).collect().await.map_err(|e| match e
                .downcast_ref::<LengthLimitError>()
            {
                Some(_) => anyhow!("the response is larger than {max} bytes"),
                None => anyhow!("reading the response: {e}"),
            })?;
            anyhow::Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body: body.to_bytes(),
            })
        };
        let answer = tokio::time::timeout(limits.timeout, exchange)
            .await
            .map_err(|_| anyhow!("{authority}: no complete response in {:?}", limits.timeout))??;
        self.sender = Some(sender);
        Ok(answer)
    }
}
