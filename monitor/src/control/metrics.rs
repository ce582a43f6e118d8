//! Prometheus metrics: counters and gauges the daemon updates, and a small HTTP/1.1 endpoint
//! serving them in the text exposition format (version 0.0.4) at `GET /metrics`.
//!
//! Off by default (`[metrics] enabled`). The endpoint has no authentication, so it listens on a
//! loopback address unless configured otherwise. The server answers one request per connection
//! and closes it; requests are read with a size and time limit, at most `MAX_CONNECTIONS` at
//! once, so a slow or hostile client costs a bounded amount. Malformed requests get 400, other
//! paths 404, other methods 405.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::accept;

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 16;
const LINGER_MAX_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Everything the endpoint reports. Shared as `Arc<Metrics>`; every update is lock-free except
/// the labelled families, which take a short mutex.
#[derive(Debug, Default)]
pub struct Metrics {
    events: AtomicU64,
    events_lost: AtomicU64,
    /// f64 bits.
    ringbuf_fill_ratio: AtomicU64,
    alerts: Labelled,
    sink_queue_depth: Labelled,
    sink_errors: Labelled,
}

/// One metric family with a single label, values by label value.
#[derive(Debug, Default)]
struct Labelled(Mutex<BTreeMap<String, u64>>);

impl Labelled {
    fn update(&self, label: &str, f: impl FnOnce(&mut u64)) {
        // A poisoned lock only means another thread panicked mid-update of a plain integer.
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(label.to_owned()).or_default());
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Events read from the ring buffer.
    pub fn add_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }

    /// The kernel's running total of events lost to a full ring buffer.
    pub fn set_events_lost(&self, total: u64) {
        self.events_lost.fetch_max(total, Ordering::Relaxed);
    }

    /// How full the ring buffer was when last looked at, 0.0 to 1.0.
    pub fn set_ringbuf_fill_ratio(&self, ratio: f64) {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ringbuf_fill_ratio
            .store(ratio.to_bits(), Ordering::Relaxed);
    }

    /// One alert raised in a blocklist category (`ai-relay`, `ai-provider`...).
    pub fn add_alert(&self, category: &str) {
        self.alerts.update(category, |v| *v += 1);
    }

    /// Make a sink's series appear (at 0) before anything happens to it.
    pub fn register_sink(&self, sink: &str) {
        self.sink_queue_depth.update(sink, |_| ());
        self.sink_errors.update(sink, |_| ());
    }

    /// Bytes waiting in a sink's queue.
    pub fn set_sink_queue_depth(&self, sink: &str, bytes: u64) {
        self.sink_queue_depth.update(sink, |v| *v = bytes);
    }

    /// One failed delivery attempt of a sink.
    pub fn add_sink_error(&self, sink: &str) {
        self.sink_errors.update(sink, |v| *v += 1);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str,
                          kind: &str,
                          help: &str,
                          label: Option<&str>,
                          samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (label_value, value) in samples {
                match label {
                    Some(label) => {
                        let _ = writeln!(
                            out,
                            "{name}{{{label}=\"{}\"}} {value}",
                            escape_label(&label_value)
                        );
                    }
                    None => {
                        let _ = writeln!(out, "{name} {value}");
                    }
                }
            }
        };
        let single = |v: u64| vec![(String::new(), v.to_string())];
        let labelled = |l: &Labelled| {
            l.snapshot()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect()
        };
        family(
            "relaywatch_events_total",
            "counter",
            "Events read from the kernel ring buffer.",
            None,
            single(self.events.load(Ordering::Relaxed)),
        );
        family(
            "relaywatch_events_lost_total",
            "counter",
            "Events the kernel dropped because the ring buffer was full.",
            None,
            single(self.events_lost.load(Ordering::Relaxed)),
        );
        family(
            "relaywatch_alerts_total",
            "counter",
            "Alerts raised, by blocklist category.",
            Some("category"),
            labelled(&self.alerts),
        );
        family(
            "relaywatch_sink_queue_depth",
            "gauge",
            "Bytes waiting in a sink's queue.",
            Some("sink"),
            labelled(&self.sink_queue_depth),
        );
        family(
            "relaywatch_sink_errors_total",
            "counter",
            "Failed delivery attempts, by sink.",
            Some("sink"),
            labelled(&self.sink_errors),
        );
        let ratio = f64::from_bits(self.ringbuf_fill_ratio.load(Ordering::Relaxed));
        family(
            "relaywatch_ringbuf_fill_ratio",
            "gauge",
            "How full the kernel ring buffer was when last sampled (0 to 1).",
            None,
            vec![(String::new(), ratio.to_string())],
        );
        out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Bind the endpoint's socket (separate from `serve_on` so the caller learns a port-0 address
/// and bind errors before spawning).
pub async fn bind(listen: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics endpoint: binding {listen}"))
}

/// Serve `metrics` on an already bound listener, forever.
pub async fn serve_on(listener: TcpListener, metrics: Arc<Metrics>) -> Result<()> {
    let limits = accept::Limits {
        name: "metrics endpoint",
        max_connections: MAX_CONNECTIONS,
        retry_after: Duration::from_millis(100),
        // A scraper flood is not worth a warning per connection.
        full_log_level: log::Level::Debug,
    };
    match accept::serve(listener, limits, |stream| {
        let metrics = metrics.clone();
        async move {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &metrics))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            {
                log::debug!("metrics endpoint: {peer}: {e}");
            }
        }
    })
    .await {}
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_REQUEST_HEAD {
            break false;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(&buf[..n]);
    };
    let (status, body) = if complete {
        route(&head, metrics)
    } else {
        (Status::BadRequest, "bad request\n".to_owned())
    };
    let head_only = head.starts_with(b"HEAD ");
    let mut response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status.line(),
        if status == Status::Ok {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    // Lingering close: closing with unread input makes the kernel send a reset, which can
    // destroy the response before the client reads it (an oversized head is answered early).
    let mut drained = 0;
    while drained < LINGER_MAX_BYTES {
        match tokio::time::timeout(LINGER_TIME, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
        }
    }
}

/// Decide the answer from the request line; headers are not needed.
fn route(head: &[u8], metrics: &Metrics) -> (Status, String) {
    let bad = (Status::BadRequest, "bad request\n".to_owned());
    let Ok(text) = std::str::from_utf8(head) else {
        return bad;
    };
    let line = text.lines().next().unwrap_or("");
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return bad;
    };
    if !target.starts_with('/') || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return bad;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return (
            Status::NotFound,
            "not found: the metrics are at /metrics\n".to_owned(),
        );
    }
    if !matches!(method, "GET" | "HEAD") {
        return (Status::MethodNotAllowed, "method not allowed\n".to_owned());
    }
    (Status::Ok, metrics.render())
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        io::{Read as _, Write as _},
        net::TcpStream as StdTcpStream,
    };

    use super::*;

    /// A server on an ephemeral loopback port, on its own runtime thread.
    fn start() -> (SocketAddr, Arc<Metrics>) {
        let metrics = Metrics::new();
        let served = metrics.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                serve_on(listener, served).await.unwrap();
            });
        });
        (rx.recv().unwrap(), metrics)
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = StdTcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Samples of a text-format body: `name{labels}` to value; checks every family is typed.
    fn parse(body: &str) -> HashMap<String, f64> {
        let typed: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(typed.contains(&name), "{name} has no TYPE line");
                (series.to_owned(), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn get_metrics_serves_every_family() {
        let (addr, m) = start();
        m.add_events(5);
        m.add_events(2);
        m.set_events_lost(3);
        m.set_events_lost(1); // a lower reading never lowers a counter
        m.add_alert("ai-relay");
        m.add_alert("ai-relay");
        m.add_alert("ai-provider");
        m.register_sink("siem");
        m.set_sink_queue_depth("file \"a\"", 4096);
        m.add_sink_error("file \"a\"");
        m.set_ringbuf_fill_ratio(0.25);

        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let samples = parse(body);
        let expect = [
            ("relaywatch_events_total", 7.0),
            ("relaywatch_events_lost_total", 3.0),
            ("relaywatch_alerts_total{category=\"ai-relay\"}", 2.0),
            ("relaywatch_alerts_total{category=\"ai-provider\"}", 1.0),
            ("relaywatch_sink_queue_depth{sink=\"siem\"}", 0.0),
            ("relaywatch_sink_errors_total{sink=\"siem\"}", 0.0),
            (
                "relaywatch_sink_queue_depth{sink=\"file \\\"a\\\"\"}",
                4096.0,
            ),
            ("relaywatch_sink_errors_total{sink=\"file \\\"a\\\"\"}", 1.0),
            ("relaywatch_ringbuf_fill_ratio", 0.25),
        ];
        for (series, value) in expect {
            assert_eq!(samples.get(series), Some(&value), "{series} in\n{body}");
        }
        assert_eq!(samples.len(), expect.len(), "{body}");
    }

    #[test]
    fn other_requests_get_errors_not_panics() {
        let (addr, _) = start();
        let status = |req: &[u8]| exchange(addr, req).lines().next().unwrap_or("").to_owned();
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        assert_eq!(
            status(b"GET /metricsx HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            status(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(status(b"garbage\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status(b"GET metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(b"GET /metrics SPDY/9\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(b"GET /metrics HTTP/1.1\r\n"),
            "HTTP/1.1 400 Bad Request"
        ); // closed mid-head
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 3 * MAX_REQUEST_HEAD));
        assert_eq!(status(&huge), "HTTP/1.1 400 Bad Request");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        // Still serving after all that.
        assert!(
            exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").contains("relaywatch_events_total 0")
        );
    }

    #[test]
    fn fill_ratio_is_clamped() {
        let m = Metrics::default();
        m.set_ringbuf_fill_ratio(f64::NAN);
        assert!(m.render().contains("relaywatch_ringbuf_fill_ratio 0\n"));
        m.set_ringbuf_fill_ratio(7.0);
        assert!(m.render().contains("relaywatch_ringbuf_fill_ratio 1\n"));
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let taken = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr).await.unwrap_err();
        assert!(
            format!("{e:#}").starts_with(&format!("metrics endpoint: binding {addr}: ")),
            "{e:#}"
        );
    }
}
