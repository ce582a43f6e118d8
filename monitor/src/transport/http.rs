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

/// Bounds of one exchange: the whole of it (connecting when the connection is not open yet,
/// sending, waiting, reading) and the answer's body.
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

    /// Send `request` (its Host and User-Agent headers are set here) and read the answer. An
    /// answer whose Content-Length is over `max_body` is refused before its body is read, one
    /// without when `max_body` bytes have come; either way the connection is closed, not read
    /// to its end.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
        limits: Limits,
    ) -> Result<Answer> {
        let authority = self.connector.endpoint().authority();
        let headers = request.headers_mut();
        headers.insert(header::HOST, header::HeaderValue::from_str(&authority)?);
        headers.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static(concat!("relaywatch/", env!("CARGO_PKG_VERSION"))),
        );
        let max = limits.max_body;
        let exchange = async {
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
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let declared = hyper::body::Body::size_hint(&body).lower();
            if declared > max as u64 {
                return Err(anyhow!(
                    "the response is {declared} bytes (Content-Length), larger than the limit of {max} bytes"
                ));
            }
            let body = Limited::new(body, max).collect().await.map_err(|e| match e
                .downcast_ref::<LengthLimitError>()
            {
                Some(_) => anyhow!("the response is larger than the limit of {max} bytes"),
                None => anyhow!("reading the response: {e}"),
            })?;
            anyhow::Ok((
                sender,
                Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body: body.to_bytes(),
                },
            ))
        };
        let (sender, answer) = tokio::time::timeout(limits.timeout, exchange)
            .await
            .map_err(|_| anyhow!("{authority}: no complete response in {:?}", limits.timeout))??;
        // Kept for the next exchange only after a complete one: a connection left mid-answer
        // (an error, a timeout) is dropped, which closes it.
        self.sender = Some(sender);
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpListener,
        thread,
    };

    use super::*;
    use crate::transport::net::Endpoint;

    /// A one-connection HTTP server on loopback: reads the request head, writes `head`, then
    /// up to `body_bytes` bytes of body in 64 KiB writes (or nothing, and waits for the client
    /// to close). Returns the port and a handle giving how many body bytes were written and
    /// whether the client closed the connection before all of them were.
    fn server(head: String, body_bytes: usize) -> (u16, thread::JoinHandle<(usize, bool)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before its request");
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(head.as_bytes()).unwrap();
            if body_bytes == 0 {
                // Stall: wait for the client to give up.
                let closed = matches!(conn.read(&mut buf), Ok(0) | Err(_));
                return (0, closed);
            }
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 0;
            while sent < body_bytes {
                match conn.write(&chunk[..chunk.len().min(body_bytes - sent)]) {
                    Ok(n) => sent += n,
                    Err(_) => return (sent, true),
                }
            }
            (sent, false)
        });
        (port, handle)
    }

    fn client(port: u16) -> Client {
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/list")).unwrap();
        Client::new(Connector::new(endpoint, None).unwrap())
    }

    fn get() -> Request<Full<Bytes>> {
        Request::get("/list").body(Full::new(Bytes::new())).unwrap()
    }

    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(60),
        max_body: 4096,
    };

    // Bodies the server offers: far more than the socket buffers between the two ends hold, so
    // that a client reading it whole would let the server finish.
    const HUGE: usize = 256 << 20;

    #[tokio::test]
    async fn a_content_length_over_the_limit_is_refused_before_the_body() {
        let (port, server) = server(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n"),
            HUGE,
        );
        let e = client(port).send(get(), LIMITS).await.err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "the response is {HUGE} bytes (Content-Length), larger than the limit of 4096 bytes"
            )
        );
        let (sent, closed) = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        assert!(closed && sent < HUGE, "the client read it all: {sent}");
    }

    #[tokio::test]
    async fn a_body_without_length_is_cut_at_the_limit() {
        let (port, server) = server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned(),
            HUGE,
        );
        let e = client(port).send(get(), LIMITS).await.err().unwrap();
        assert_eq!(
            e.to_string(),
            "the response is larger than the limit of 4096 bytes"
        );
        let (sent, closed) = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        assert!(closed && sent < HUGE, "the client read it all: {sent}");
    }

    #[tokio::test]
    async fn a_stalled_answer_is_abandoned_at_the_timeout() {
        let (port, server) = server(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart of it".to_owned(),
            0,
        );
        let limits = Limits {
            timeout: Duration::from_millis(300),
            max_body: 4096,
        };
        let e = client(port).send(get(), limits).await.err().unwrap();
        assert_eq!(
            e.to_string(),
            format!("127.0.0.1:{port}: no complete response in 300ms")
        );
        let (_, closed) = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        assert!(closed, "the connection is closed");
    }

    #[tokio::test]
    async fn a_complete_answer_is_read_and_the_connection_kept() {
        let (port, server) = server("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_owned(), 5);
        let mut c = client(port);
        let a = c.send(get(), LIMITS).await.unwrap();
        assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"xxxxx"[..]));
        assert!(c.sender.is_some());
        tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
    }
}
