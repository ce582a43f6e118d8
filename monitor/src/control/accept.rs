//! The connection-limited accept loop of the local servers (the control API on its unix socket,
//! the Prometheus endpoint on TCP): each accepted connection is handled on its own task, at most
//! `max_connections` at once; a connection beyond that is closed as soon as it is accepted, and
//! a failing accept (out of file descriptors, say) is retried after a pause instead of spinning.
use std::{convert::Infallible, future::Future, io, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::Semaphore,
};

/// A listening socket the loop takes connections from.
pub(crate) trait Listener {
    type Stream: Send + 'static;

    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    async fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// How one server's loop behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Names the server in log lines ("api", "metrics endpoint").
    pub name: &'static str,
    /// Connections handled at once.
    pub max_connections: usize,
    /// The pause after a failed accept.
    pub retry_after: Duration,
    /// The level of the line logged when a connection is closed for want of a slot.
    pub full_log_level: log::Level,
}

/// Accept connections from `listener` forever, handling each with `handle` on a task of its own
/// while it holds one of `limits.max_connections` slots.
pub(crate) async fn serve<L, H, F>(listener: L, limits: Limits, mut handle: H) -> Infallible
where
    L: Listener,
    H: FnMut(L::Stream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept_stream().await {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("{}: accepting a connection failed: {e}", limits.name);
                tokio::time::sleep(limits.retry_after).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::log!(
                limits.full_log_level,
                "{}: {} connections already open; closing a new one",
                limits.name,
                limits.max_connections
            );
            continue;
        };
        let connection = handle(stream);
        tokio::spawn(async move {
            connection.await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpStream as StdTcpStream,
    };

    use super::*;

    /// A loop with two slots whose connections echo one byte once `release` has a permit, on
    /// its own runtime thread; returns its address.
    fn start(release: Arc<Semaphore>) -> std::net::SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let limits = Limits {
                    name: "test",
                    max_connections: 2,
                    retry_after: Duration::from_millis(10),
                    full_log_level: log::Level::Debug,
                };
                serve(listener, limits, move |mut stream: TcpStream| {
                    let release = release.clone();
                    async move {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let mut byte = [0u8; 1];
                        if stream.read_exact(&mut byte).await.is_ok() {
                            let _ = release.acquire().await.map(|p| p.forget());
                            let _ = stream.write_all(&byte).await;
                        }
                    }
                })
                .await
            });
        });
        rx.recv().unwrap()
    }

    fn connect(addr: std::net::SocketAddr, byte: u8) -> StdTcpStream {
        let mut s = StdTcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[byte]).unwrap();
        s
    }

    /// What the server sent before closing (or nothing: closed unanswered).
    fn answer(mut s: StdTcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        // A connection closed with our byte unread may end in a reset instead of EOF.
        let _ = s.read_to_end(&mut out);
        out
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_and_slots_come_back() {
        let release = Arc::new(Semaphore::new(0));
        let addr = start(release.clone());
        // Two connections take both slots and wait.
        // Accepted in order, so both hold their slots when the third one is accepted.
        let (a, b) = (connect(addr, b'a'), connect(addr, b'b'));
        assert_eq!(answer(connect(addr, b'c')), b"", "a third is closed");
        release.add_permits(2);
        assert_eq!(answer(a), b"a");
        assert_eq!(answer(b), b"b");
        // The slots were given back when those connections ended.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            release.add_permits(1);
            if answer(connect(addr, b'd')) == b"d" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no slot came back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
