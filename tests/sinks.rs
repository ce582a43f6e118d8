//! SIEM sinks against real collectors.
//!
//! Through the running daemon: `relaywatch run` with `[[sink]]` tables sends the alerts real
//! clients (curl to a loopback TLS server it takes for api.openai.com) raise to HTTPS collectors
//! the test runs: a recording HTTP server behind a TLS front (`fixtures/servers.py tls-front`)
//! whose certificate comes from a throwaway CA, standing in for Splunk HEC and Elasticsearch.
//! Every daemon sees every test's traffic, so documents are picked by the pid of this test's
//! client, and the collectors' answers depend only on those pids.
//!
//! The HEC queue across restarts runs through the daemon too, against the recording server on
//! plain HTTP: daemons started one after another on one state directory (the sink's on-disk
//! queue is under it), with the collector stopped and started again in between.
//!
//! Through `relaywatch-diag sink-send` (crafted alert JSON lines on stdin, the final health as
//! one JSON line on stdout; no kernel programs): a real rsyslogd (UDP, TCP with octet counting,
//! TLS through rsyslog's gtls driver). The stand-in is used there only because those tests check
//! each RFC 5424 line field by field against the alert that was sent, which needs alerts the
//! daemon cannot be made to raise on demand: a fixed `@timestamp` (the header's TIMESTAMP) and an
//! executable path containing `"` and `]` (the structured-data escaping).
//!
//! Every wait is bounded in time.
use std::{
    collections::{HashMap, HashSet},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, Fixture, KeyType, Rsyslog, TempDir, curl_tls, diag_bin, free_port, openssl_ca,
    real_executable, text, wait_until,
};
use serde_json::{Value, json};

fn alert(n: u64) -> Value {
    json!({
        "@timestamp": format!("2026-09-01T08:15:{:02}.123456Z", n % 60),
        "message": format!("alert number {n}"),
        "event": { "kind": "alert", "severity": 47, "action": "ai-provider-connection", "sequence": n },
        "rule": { "name": "openai.com", "category": "ai-provider" },
        "process": { "pid": 1000 + n, "name": "curl", "executable": "/usr/bin/cu\"rl]" },
        "user": { "id": "1000", "name": "alice" },
        "host": { "name": "build-01" },
        "destination": { "ip": "203.0.113.7", "port": 443, "domain": "api.openai.com" },
        "relaywatch": { "severity": "medium", "name_source": "sni" }
    })
}

/// `relaywatch-diag sink-send`: returns the final health and stderr.
fn sink_send(
    config: &Path,
    state: &Path,
    alerts: &[Value],
    timeout_ms: u64,
) -> (Vec<Value>, String) {
    let mut child = Command::new(diag_bin())
        .args(["sink-send", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(["--timeout-ms", &timeout_ms.to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relaywatch-diag sink-send");
    let mut stdin = child.stdin.take().unwrap();
    for a in alerts {
        writeln!(stdin, "{a}").unwrap();
    }
    drop(stdin);
    let out = wait_output(
        child,
        Duration::from_millis(timeout_ms) + Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "sink-send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "health is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (health, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Wait for a child with a time limit (killed past it).
fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Take apart `<PRI>1 TS HOST APP PROCID MSGID [SD] MSG` and check it against `expected`.
fn check_rfc5424(line: &str, expected: &Value) {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once(">1 ").unwrap();
    assert_eq!(pri, "84", "authpriv.warning for event.severity 47: {line}");
    let fields: Vec<&str> = rest.splitn(6, ' ').collect();
    let [ts, host, app, procid, msgid, rest] = fields[..] else {
        panic!("short header: {line}")
    };
    assert_eq!(ts, expected["@timestamp"].as_str().unwrap());
    assert_eq!((host, app, msgid), ("build-01", "relaywatch", "AI_EGRESS"));
    assert!(procid.parse::<u32>().is_ok(), "{procid}");
    // Structured data: parse params with RFC 5424 escapes.
    let sd_body = rest
        .strip_prefix("[relaywatch@32473 ")
        .unwrap_or_else(|| panic!("no SD: {line}"));
    let mut params = std::collections::BTreeMap::new();
    let mut chars = sd_body.char_indices().peekable();
    let mut end = None;
    while let Some((_, c)) = chars.next() {
        if c == ']' {
            end = chars.peek().map(|&(i, _)| i);
            break;
        }
        if c == ' ' {
            continue;
        }
        let mut name = c.to_string();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
        let mut value = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break,
                c => value.push(c),
            }
        }
        params.insert(name, value);
    }
    let pid = expected["process"]["pid"].to_string();
    let want = [
        ("category", "ai-provider"),
        ("severity", "medium"),
        ("rule", "openai.com"),
        ("pid", pid.as_str()),
        ("exe", "/usr/bin/cu\"rl]"),
        ("user", "alice"),
        ("dst", "203.0.113.7"),
        ("dport", "443"),
        ("domain", "api.openai.com"),
        ("name_source", "sni"),
    ];
    for (k, v) in want {
        assert_eq!(
            params.get(k).map(String::as_str),
            Some(v),
            "param {k} in {line}"
        );
    }
    let msg = &sd_body[end.expect("SD closed")..];
    let msg: Value = serde_json::from_str(msg.trim_start())
        .unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {line}"));
    assert_eq!(&msg, expected);
}

#[test]
fn syslog_udp_and_tcp_reach_rsyslog() {
    let dir = TempDir::new("sinks-syslog");
    let (udp, tcp) = (free_port(), free_port());
    let inputs = format!(
        "module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\" ruleset=\"udp\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\" ruleset=\"tcp\")\n\
         ruleset(name=\"udp\") {{ action(type=\"omfile\" file=\"{d}/udp.log\" template=\"raw\") }}\n\
         ruleset(name=\"tcp\") {{ action(type=\"omfile\" file=\"{d}/tcp.log\" template=\"raw\") }}",
        d = dir.display()
    );
    let rsyslog = Rsyslog::start(&dir, "", &inputs, tcp);
    // A datagram sent before imudp binds would be lost (UDP is best effort): wait for the socket.
    let bound = format!("0100007F:{udp:04X} ");
    wait_until("rsyslogd's UDP socket", Duration::from_secs(15), || {
        std::fs::read_to_string("/proc/net/udp")
            .unwrap_or_default()
            .contains(&bound)
    });
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[[sink]]\nkind = \"syslog\"\nurl = \"udp://127.0.0.1:{udp}\"\n[[sink]]\nkind = \"syslog\"\nurl = \"tcp://127.0.0.1:{tcp}\"\n")).unwrap();
    let alerts: Vec<Value> = (0..5).map(alert).collect();
    let (health, stderr) = sink_send(&config, &dir.join("state"), &alerts, 10_000);
    assert_eq!(
        health.len(),
        2,
        "one health per sink: {health:#?}\n{stderr}"
    );
    for h in &health {
        assert_eq!(
            (
                h["delivered"].as_u64(),
                h["queued"].as_u64(),
                h["failed"].as_u64()
            ),
            (Some(5), Some(0), Some(0)),
            "{h}\n{stderr}"
        );
    }
    assert_eq!(health[0]["name"], format!("syslog udp://127.0.0.1:{udp}"));
    for file in ["udp.log", "tcp.log"] {
        let lines = rsyslog.lines(file, 5);
        assert_eq!(lines.len(), 5, "{file}: {lines:#?}");
        for (line, expected) in lines.iter().zip(&alerts) {
            check_rfc5424(line, expected);
        }
    }
}

#[test]
fn syslog_tcp_queues_while_rsyslog_is_down() {
    let dir = TempDir::new("sinks-syslog-down");
    let tcp = free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[[sink]]\nkind = \"syslog\"\nurl = \"tcp://127.0.0.1:{tcp}\"\n"),
    )
    .unwrap();
    let state = dir.join("state");
    let alerts: Vec<Value> = (0..3).map(alert).collect();
    let (health, _) = sink_send(&config, &state, &alerts, 500);
    assert_eq!(
        (
            health[0]["queued"].as_u64(),
            health[0]["delivered"].as_u64()
        ),
        (Some(3), Some(0)),
        "{}",
        health[0]
    );
    assert!(health[0]["errors"].as_u64().unwrap() >= 1);
    let inputs = format!(
        "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\" ruleset=\"tcp\")\n\
         ruleset(name=\"tcp\") {{ action(type=\"omfile\" file=\"{d}/tcp.log\" template=\"raw\") }}",
        d = dir.display()
    );
    let rsyslog = Rsyslog::start(&dir, "", &inputs, tcp);
    let (health, _) = sink_send(&config, &state, &[], 15_000);
    assert_eq!(
        (
            health[0]["queued"].as_u64(),
            health[0]["delivered"].as_u64()
        ),
        (Some(0), Some(3)),
        "{}",
        health[0]
    );
    let lines = rsyslog.lines("tcp.log", 3);
    for (line, expected) in lines.iter().zip(&alerts) {
        check_rfc5424(line, expected);
    }
    // Nothing sent twice: a marker alert sent through the same sink (same queue) afterwards must
    // arrive; once rsyslog has written it, whatever the earlier runs sent is in the file before
    // it, and that is exactly the three queued alerts.
    let marker = alert(42);
    let (health, stderr) = sink_send(&config, &state, std::slice::from_ref(&marker), 15_000);
    assert_eq!(
        (
            health[0]["queued"].as_u64(),
            health[0]["delivered"].as_u64()
        ),
        (Some(0), Some(1)),
        "{}\n{stderr}",
        health[0]
    );
    rsyslog.line_containing("tcp.log", "alert number 42");
    let lines = rsyslog.lines("tcp.log", 4);
    assert_eq!(
        lines.len(),
        4,
        "the three alerts, then the marker: {lines:#?}"
    );
    for (line, expected) in lines.iter().zip(alerts.iter().chain([&marker])) {
        check_rfc5424(line, expected);
    }
}

#[test]
fn syslog_tls_reaches_rsyslog_gtls() {
    let dir = TempDir::new("sinks-syslog-tls");
    // A throwaway CA and a server certificate for 127.0.0.1 signed by it.
    openssl_ca(&dir, KeyType::Rsa2048);
    let port = free_port();
    let d = dir.display();
    let globals = format!(
        "DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" \
         DefaultNetstreamDriverCertFile=\"{d}/server.pem\" DefaultNetstreamDriverKeyFile=\"{d}/server.key\""
    );
    let inputs = format!(
        "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"tls\")\n\
         ruleset(name=\"tls\") {{ action(type=\"omfile\" file=\"{d}/tls.log\" template=\"raw\") }}"
    );
    let rsyslog = Rsyslog::start(&dir, &globals, &inputs, port);
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[[sink]]\nkind = \"syslog\"\nurl = \"tls://127.0.0.1:{port}\"\nca_file = \"{d}/ca.pem\"\n")).unwrap();
    let alerts: Vec<Value> = (0..3).map(alert).collect();
    let (health, stderr) = sink_send(&config, &dir.join("state"), &alerts, 10_000);
    assert_eq!(
        health[0]["delivered"].as_u64(),
        Some(3),
        "{}\n{stderr}",
        health[0]
    );
    let lines = rsyslog.lines("tls.log", 3);
    for (line, expected) in lines.iter().zip(&alerts) {
        check_rfc5424(line, expected);
    }

    // Without the CA the system trust store (installed by setup) is used, and the handshake is
    // refused.
    assert!(
        Path::new("/etc/ssl/certs/ca-certificates.crt").exists(),
        "no system CA bundle: `cargo xtask setup` installs ca-certificates"
    );
    std::fs::write(
        &config,
        format!("[[sink]]\nkind = \"syslog\"\nurl = \"tls://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let (health, _) = sink_send(&config, &dir.join("state2"), &alerts[..1], 500);
    assert_eq!(health[0]["delivered"].as_u64(), Some(0), "{}", health[0]);
    assert!(
        health[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("TLS handshake"),
        "{}",
        health[0]
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP collectors

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Responder = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

/// A loopback HTTP/1.1 server (keep-alive, Content-Length bodies) recording every request.
struct HttpServer {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start(port: u16, requests: Arc<Mutex<Vec<Request>>>, respond: Responder) -> HttpServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        HttpServer::serve(listener, requests, respond)
    }

    /// A server on a port the system picks; returns it with the port.
    fn bind(requests: Arc<Mutex<Vec<Request>>>, respond: Responder) -> (HttpServer, u16) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        (HttpServer::serve(listener, requests, respond), port)
    }

    fn serve(
        listener: TcpListener,
        requests: Arc<Mutex<Vec<Request>>>,
        respond: Responder,
    ) -> HttpServer {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = thread::spawn(move || {
            let mut conns = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (flag, requests, respond) =
                            (flag.clone(), requests.clone(), respond.clone());
                        conns.push(thread::spawn(move || {
                            serve_conn(s, &flag, &requests, &*respond)
                        }));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        HttpServer {
            stop,
            threads: vec![accept],
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn serve_conn(
    stream: TcpStream,
    stop: &AtomicBool,
    requests: &Mutex<Vec<Request>>,
    respond: &(dyn Fn(&Request) -> (u16, String) + Send + Sync),
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        // Request line and headers.
        let mut head = Vec::new();
        // A line read in part before a timeout is kept and completed by the next read.
        let mut line = String::new();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push(std::mem::take(&mut line).trim_end().to_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let path = head
            .first()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_owned();
        let headers: Vec<(String, String)> = head[1..]
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < len && Instant::now() < deadline {
            match reader.read(&mut body[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let request = Request {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (status, text) = respond(&request);
        requests.lock().unwrap().push(request);
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

const TOKEN: &str = "hec-secret-0123456789";

/// The number in the daemon's log line `sink NAME: N alerts WHAT` (the last one), if any.
fn queued_in_log(stderr: &str, sink: &str, what: &str) -> Option<u64> {
    let prefix = format!("sink {sink}: ");
    let suffix = format!(" alerts {what}");
    stderr.lines().rev().find_map(|l| {
        let rest = &l[l.find(&prefix)? + prefix.len()..];
        rest.strip_suffix(&suffix)?.parse().ok()
    })
}

/// A curl to the unique name `hec-restart-TAG-PID.api.openai.com` through `daemon`: its pid,
/// once its alert and its flow end are on the daemon's stdout.
fn hec_client(daemon: &Daemon, tls_port: u16, tag: &str) -> u32 {
    let name = format!("hec-restart-{tag}-{}.api.openai.com", std::process::id());
    let pid = curl_tls(&name, tls_port, "/v1/models");
    let docs = daemon.wait_matching(pid, 2, Duration::from_secs(15), is_alert);
    assert_eq!(
        docs.len(),
        2,
        "an alert and its flow end for curl {pid}: {docs:#?}\n{}",
        daemon.stderr()
    );
    check_ecs(&docs[0], pid, &name, tls_port);
    assert_eq!(
        docs[1]["event"]["type"],
        json!(["connection", "end"]),
        "{:#}",
        docs[1]
    );
    pid
}

/// The alert documents of `pids` in `lines` (a daemon's stdout), in the order written.
fn docs_of(lines: &[Value], pids: &[u32]) -> Vec<Value> {
    lines
        .iter()
        .filter(|r| is_alert(r) && pids.iter().any(|p| r["process"]["pid"] == *p))
        .cloned()
        .collect()
}

/// The HEC envelopes of `pids`' documents the collector received, in the order received.
fn envelopes_of(requests: &[Request], pids: &[u32]) -> Vec<(Value, Request)> {
    hec_envelopes(requests, "/services/collector/event")
        .into_iter()
        .filter(|(e, _)| pids.iter().any(|p| e["event"]["process"]["pid"] == *p))
        .collect()
}

/// Through the real daemon, restarted on one state directory: alerts raised while the collector
/// is down wait in the sink's on-disk queue across a stop and a start (two daemons, one of them
/// started while the collector is still down), the next daemon delivers them in order once the
/// collector is back, and a restart after that sends none of them again.
#[test]
fn splunk_hec_queue_survives_daemon_restarts_and_delivers_exactly_once() {
    let dir = TempDir::new("sinks-hec");
    let port = free_port();
    let token = dir.write("hec.token", &format!("{TOKEN}\n"));
    let config = dir.write(
        "config.toml",
        &format!(
            "[blocklists]\nfiles = []\n\n[[sink]]\nkind = \"splunk-hec\"\nurl = \"http://127.0.0.1:{port}\"\ntoken_file = \"{}\"\nindex = \"security\"\n",
            token.display()
        ),
    );
    let config = config.to_string_lossy().into_owned();
    let sink = format!("splunk-hec http://127.0.0.1:{port}");
    // One state directory for every daemon of the test: the sink's queue lives under it.
    let state = dir.join("state");
    let start = || Daemon::start_with_state(&state, &["--include-loopback", "--config", &config]);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let ok: Responder = Arc::new(|_| (200, r#"{"text":"Success","code":0}"#.into()));
    let tls = Fixture::tls();
    // This test's clients, and every alert document the daemons wrote for them, in order.
    let mut pids: Vec<u32> = Vec::new();
    let mut raised: Vec<Value> = Vec::new();
    let mut stderr_all = String::new();
    let collected = |pids: &[u32]| envelopes_of(&requests.lock().unwrap(), pids);
    // Until the collector has as many of `pids`' documents as `want` (their content and order
    // are checked at the end, once nothing more can come).
    let wait_collected = |what: &str, pids: &[u32], want: &[Value]| {
        wait_until(what, Duration::from_secs(30), || {
            collected(pids).len() >= want.len()
        });
    };

    // Collector up: delivered at once.
    let server = HttpServer::start(port, requests.clone(), ok.clone());
    let daemon = start();
    for tag in ["a0", "a1"] {
        pids.push(hec_client(&daemon, tls.port, tag));
    }
    let so_far = docs_of(&daemon.all_lines(), &pids);
    wait_collected(
        "the first two clients' alerts at the collector",
        &pids,
        &so_far,
    );

    // Collector down: the next alerts fail to go, and stay queued on disk when the daemon stops.
    server.stop();
    for tag in ["a2", "a3", "a4"] {
        pids.push(hec_client(&daemon, tls.port, tag));
    }
    let h = wait_health(
        &daemon,
        &sink,
        "a failed delivery, the three clients' alerts queued",
        |h| {
            h["errors"].as_u64() >= Some(1)
                && h["last_error"].is_string()
                && h["queued"].as_u64() >= Some(6)
        },
    );
    assert_eq!(h["failed"].as_u64(), Some(0), "nothing refused: {h:#}");
    let (status, stderr, lines) = daemon.stop_collecting(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    raised.extend(docs_of(&lines, &pids));
    assert!(
        queued_in_log(&stderr, &sink, "stay queued for the next start") >= Some(6),
        "{stderr}"
    );
    stderr_all += &stderr;

    // A daemon started while the collector is still down: the queue from before, and more.
    let daemon = start();
    assert!(
        queued_in_log(&daemon.stderr(), &sink, "queued from before") >= Some(6),
        "{}",
        daemon.stderr()
    );
    for tag in ["b0", "b1"] {
        pids.push(hec_client(&daemon, tls.port, tag));
    }
    let (status, stderr, lines) = daemon.stop_collecting(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    raised.extend(docs_of(&lines, &pids[5..]));
    assert!(
        queued_in_log(&stderr, &sink, "stay queued for the next start") >= Some(10),
        "{stderr}"
    );
    stderr_all += &stderr;
    assert_eq!(
        raised.len(),
        14,
        "seven clients, an alert and a flow end each: {raised:#?}"
    );

    // Collector back: the next daemon delivers the queue.
    let server = HttpServer::start(port, requests.clone(), ok);
    let daemon = start();
    assert!(
        queued_in_log(&daemon.stderr(), &sink, "queued from before") >= Some(10),
        "{}",
        daemon.stderr()
    );
    wait_collected("the queued alerts at the collector", &pids, &raised);
    // A client of this daemon, delivered after the queue: then a clean stop, and a restart that
    // must not send any of it again (the positive control: the last client's alerts, raised by
    // the restarted daemon, arrive).
    pids.push(hec_client(&daemon, tls.port, "c0"));
    let mut so_far = raised.clone();
    so_far.extend(docs_of(&daemon.all_lines(), &pids[7..]));
    wait_collected("the queue and the next client's alerts", &pids, &so_far);
    let (status, stderr, lines) = daemon.stop_collecting(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    raised.extend(docs_of(&lines, &pids[7..]));
    stderr_all += &stderr;
    let daemon = start();
    pids.push(hec_client(&daemon, tls.port, "d0"));
    let mut so_far = raised.clone();
    so_far.extend(docs_of(&daemon.all_lines(), &pids[8..]));
    wait_collected("the restarted daemon's client's alerts", &pids, &so_far);
    let (status, stderr, lines) = daemon.stop_collecting(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
    raised.extend(docs_of(&lines, &pids[8..]));
    stderr_all += &stderr;
    server.stop();

    // Every document of this test's clients exactly once, in the order the daemons wrote them.
    let envelopes = collected(&pids);
    let got: Vec<Value> = envelopes.iter().map(|(e, _)| e["event"].clone()).collect();
    assert_eq!(got, raised, "every alert exactly once, in order");
    for (e, r) in &envelopes {
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Splunk {TOKEN}").as_str())
        );
        let doc = &e["event"];
        assert_eq!(
            (
                e["source"].as_str(),
                e["sourcetype"].as_str(),
                &e["host"],
                e["index"].as_str()
            ),
            (
                Some("relaywatch"),
                Some("relaywatch:alert"),
                &doc["host"]["name"],
                Some("security")
            ),
            "{e:#}"
        );
        assert_eq!(
            e["time"].as_f64(),
            Some(epoch_ms(doc["@timestamp"].as_str().unwrap())),
            "{e:#}"
        );
    }
    assert!(
        !stderr_all.contains(TOKEN),
        "the token must never be logged:\n{stderr_all}"
    );
}

// ---------------------------------------------------------------------------------------------
// Through the running daemon, over HTTPS

/// An HTTPS collector on 127.0.0.1: the recording `HttpServer` behind a TLS front whose
/// certificate (for IP 127.0.0.1) is signed by a throwaway CA, `ca.pem` in the test's directory.
struct HttpsCollector {
    front: Option<Fixture>,
    server: Option<HttpServer>,
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpsCollector {
    fn start(dir: &Path, respond: Responder) -> HttpsCollector {
        openssl_ca(dir, KeyType::EcP256);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (server, upstream) = HttpServer::bind(requests.clone(), respond);
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let front = Fixture::start(&[
            "tls-front",
            &path("server.pem"),
            &path("server.key"),
            &upstream.to_string(),
        ]);
        HttpsCollector {
            port: front.port,
            front: Some(front),
            server: Some(server),
            requests,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpsCollector {
    fn drop(&mut self) {
        self.front = None;
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// A daemon (loopback included, the built-in lists only) with these `[[sink]]` tables.
fn daemon_with_sinks(dir: &Path, sinks: &str) -> Daemon {
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[blocklists]\nfiles = []\n\n{sinks}")).unwrap();
    Daemon::start(&["--include-loopback", "--config", config.to_str().unwrap()])
}

fn is_alert(r: &Value) -> bool {
    r["event"]["kind"] == "alert"
}

/// The documents the daemon delivered for `pid` (on its stdout; the sinks get the same).
fn alert_docs(daemon: &Daemon, pid: u32) -> Vec<Value> {
    daemon
        .everything_for(pid)
        .into_iter()
        .filter(is_alert)
        .collect()
}

/// curl to `https://NAME:PORT/v1/models` on a loopback TLS server (the real SNI is sent); its
/// pid and the alert the daemon raised for it.
fn curl_alert(daemon: &Daemon, port: u16, name: &str) -> (u32, Value) {
    let pid = curl_tls(name, port, "/v1/models");
    let alerts = daemon.wait_matching(pid, 1, Duration::from_secs(15), |r| {
        is_alert(r) && r["event"]["type"] == json!(["connection", "start"])
    });
    assert_eq!(alerts.len(), 1, "one alert for curl {pid}: {alerts:#?}");
    (pid, alerts[0].clone())
}

/// The ECS fields of the alert for curl `pid` to NAME on the loopback TLS server at `port`.
fn check_ecs(doc: &Value, pid: u32, name: &str, port: u16) {
    assert_eq!(doc["event"]["kind"], "alert", "{doc:#}");
    assert_eq!(
        doc["event"]["type"],
        json!(["connection", "start"]),
        "{doc:#}"
    );
    assert_eq!(doc["process"]["pid"], pid, "{doc:#}");
    assert_eq!(
        doc["process"]["executable"],
        real_executable("/usr/bin/curl"),
        "{doc:#}"
    );
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(doc["user"]["id"], uid.to_string(), "{doc:#}");
    assert_eq!(
        (
            doc["destination"]["domain"].as_str(),
            doc["destination"]["ip"].as_str(),
            doc["destination"]["port"].as_u64(),
        ),
        (Some(name), Some("127.0.0.1"), Some(u64::from(port))),
        "{doc:#}"
    );
    assert_eq!(doc["tls"]["client"]["server_name"], name, "{doc:#}");
    assert_eq!(doc["rule"]["category"], "ai-provider", "{doc:#}");
    assert_eq!(doc["relaywatch"]["name_source"], "sni", "{doc:#}");
}

/// `relaywatch status --json`'s health of the sink named `name`.
fn sink_health(daemon: &Daemon, name: &str) -> Value {
    let out = daemon.cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    status["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Wait until the health of sink `name` satisfies `done`; return it.
fn wait_health(daemon: &Daemon, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(
        &format!("sink {name}: {what}"),
        Duration::from_secs(30),
        || {
            last = sink_health(daemon, name);
            done(&last)
        },
    );
    last
}

/// The HEC envelopes of the requests to `path`, with their request.
fn hec_envelopes(requests: &[Request], path: &str) -> Vec<(Value, Request)> {
    requests
        .iter()
        .filter(|r| r.path == path)
        .flat_map(|r| {
            r.body
                .lines()
                .map(|l| (serde_json::from_str::<Value>(l).unwrap(), r.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Epoch seconds, millisecond precision, of an RFC 3339 time.
fn epoch_ms(rfc3339: &str) -> f64 {
    let t = humantime::parse_rfc3339_weak(rfc3339).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64 / 1000.0
}

#[test]
fn splunk_hec_over_https_gets_the_daemons_alerts_and_refusals_are_not_retried() {
    let dir = TempDir::new("sinks-hec-https");
    let respond: Responder = Arc::new(|r: &Request| match r.path.as_str() {
        "/services/collector/event" => (200, r#"{"text":"Success","code":0}"#.into()),
        "/refuse/collector" => (400, r#"{"text":"Invalid data format","code":6}"#.into()),
        _ => (
            404,
            r#"{"text":"The requested URL was not found","code":404}"#.into(),
        ),
    });
    let collector = HttpsCollector::start(&dir, respond);
    let port = collector.port;
    let token = dir.write("hec.token", &format!("{TOKEN}\n"));
    let (t, ca) = (token.display(), dir.join("ca.pem"));
    let ca = ca.display();
    // Three sinks at the one collector: trusted (the CA in ca_file), trusted but refused with
    // 400 on its path, and one with no ca_file (the system's trust store, which does not know
    // the test CA).
    let daemon = daemon_with_sinks(
        &dir,
        &format!(
            "[[sink]]\nkind = \"splunk-hec\"\nurl = \"https://127.0.0.1:{port}\"\ntoken_file = \"{t}\"\nindex = \"security\"\nca_file = \"{ca}\"\n\n\
             [[sink]]\nkind = \"splunk-hec\"\nurl = \"https://127.0.0.1:{port}/refuse/collector\"\ntoken_file = \"{t}\"\nca_file = \"{ca}\"\n\n\
             [[sink]]\nkind = \"splunk-hec\"\nurl = \"https://127.0.0.1:{port}/untrusted/collector\"\ntoken_file = \"{t}\"\n"
        ),
    );
    let good = format!("splunk-hec https://127.0.0.1:{port}");
    let refusing = format!("splunk-hec https://127.0.0.1:{port}/refuse/collector");
    let untrusted = format!("splunk-hec https://127.0.0.1:{port}/untrusted/collector");

    let tls = Fixture::tls();
    let name = "hec-https-first.api.openai.com";
    let (pid, alert) = curl_alert(&daemon, tls.port, name);
    check_ecs(&alert, pid, name, tls.port);
    // A second client after the first: each sink delivers in order and retries a batch before
    // it takes the next, so once this one's alert has come, the first one's will not come again.
    let (pid2, alert2) = curl_alert(&daemon, tls.port, "hec-https-second.api.openai.com");

    let of_pid = |envelopes: &[(Value, Request)], pid: u32| -> Vec<(Value, Request)> {
        envelopes
            .iter()
            .filter(|(e, _)| e["event"]["process"]["pid"] == pid && is_alert(&e["event"]))
            .cloned()
            .collect()
    };
    // Every alert document of both clients reaches both trusted paths (the daemon raises one
    // when the connection starts and one when it ends).
    let sorted = |mut docs: Vec<Value>| {
        docs.sort_by_key(Value::to_string);
        docs
    };
    let docs_at = |path: &str, p: u32| -> Vec<Value> {
        of_pid(&hec_envelopes(&collector.requests(), path), p)
            .into_iter()
            .map(|(e, _)| e["event"].clone())
            .collect()
    };
    wait_until(
        "both clients' alerts at both trusted paths",
        Duration::from_secs(30),
        || {
            ["/services/collector/event", "/refuse/collector"]
                .iter()
                .all(|path| {
                    [pid, pid2]
                        .iter()
                        .all(|&p| sorted(docs_at(path, p)) == sorted(alert_docs(&daemon, p)))
                })
        },
    );
    let requests = collector.requests();

    // Delivered: the daemon's alert documents for the client, each exactly once (the lists
    // are equal, duplicates included), in HEC envelopes, with the token.
    let delivered = hec_envelopes(&requests, "/services/collector/event");
    for (p, first) in [(pid, &alert), (pid2, &alert2)] {
        let envelopes = of_pid(&delivered, p);
        let (e, request) = envelopes
            .iter()
            .find(|(e, _)| e["event"] == *first)
            .expect("the alert was delivered");
        assert_eq!(
            (
                e["source"].as_str(),
                e["sourcetype"].as_str(),
                e["index"].as_str(),
                &e["host"],
            ),
            (
                Some("relaywatch"),
                Some("relaywatch:alert"),
                Some("security"),
                &first["host"]["name"],
            ),
            "{e:#}"
        );
        assert_eq!(
            e["time"].as_f64(),
            Some(epoch_ms(first["@timestamp"].as_str().unwrap()))
        );
        for (_, r) in &envelopes {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Splunk {TOKEN}").as_str())
            );
        }
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    let h = wait_health(&daemon, &good, "both delivered", |h| {
        h["delivered"].as_u64() >= Some(2)
    });
    assert_eq!(
        (h["failed"].as_u64(), &h["last_error"]),
        (Some(0), &Value::Null),
        "{h:#}"
    );

    // Refused with 400: sent once (the second alert's request came after it), counted as
    // failed, not delivered, and the log says why.
    let refused = hec_envelopes(&requests, "/refuse/collector");
    assert_eq!(
        of_pid(&refused, pid).len(),
        alert_docs(&daemon, pid).len(),
        "not retried: {refused:#?}"
    );
    for (_, r) in &refused {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Splunk {TOKEN}").as_str())
        );
    }
    let h = wait_health(&daemon, &refusing, "every refused alert counted", |h| {
        h["failed"].as_u64()
            == Some(hec_envelopes(&collector.requests(), "/refuse/collector").len() as u64)
    });
    assert_eq!(
        (h["delivered"].as_u64(), h["last_error"].as_str(),),
        (
            Some(0),
            Some(r#"HTTP 400 Bad Request: {"text":"Invalid data format","code":6}"#)
        ),
        "{h:#}"
    );
    // The count per line depends on how many alerts (other tests' too: the daemon sees all
    // loopback traffic) shared a batch.
    let stderr = daemon.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("sink {refusing}: "))
                && l.contains(
                    " alerts refused by the collector, not retried: HTTP 400 Bad Request"
                )),
        "{stderr}"
    );

    // No trust in the collector's certificate: the handshake is refused, nothing reaches the
    // collector on that sink's path, and the alerts stay queued.
    assert!(
        Path::new("/etc/ssl/certs/ca-certificates.crt").exists(),
        "no system CA bundle: `cargo xtask setup` installs ca-certificates"
    );
    let h = wait_health(&daemon, &untrusted, "a TLS handshake error", |h| {
        h["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("TLS handshake with 127.0.0.1:{port}")))
    });
    assert!(
        h["last_error"].as_str().unwrap().contains("UnknownIssuer"),
        "{h:#}"
    );
    assert_eq!(
        (h["delivered"].as_u64(), h["failed"].as_u64()),
        (Some(0), Some(0)),
        "{h:#}"
    );
    assert!(h["queued"].as_u64() >= Some(2), "both alerts wait: {h:#}");
    assert!(h["errors"].as_u64() >= Some(1), "{h:#}");
    assert!(
        collector
            .requests()
            .iter()
            .all(|r| r.path != "/untrusted/collector"),
        "{:#?}",
        collector.requests()
    );

    // `relaywatch status` shows each sink's state on its line.
    let out = daemon.cli(&["status"]);
    let summary = text(&out.stdout);
    assert!(
        summary.lines().any(|l| l.contains(&format!("{refusing}: "))
            && l.contains(" failed, last error: HTTP 400 Bad Request")),
        "{summary}"
    );
    assert!(
        summary
            .lines()
            .any(|l| l.contains(&format!("{untrusted}: "))
                && l.contains("last error: TLS handshake with")),
        "{summary}"
    );
    let stderr = daemon.stderr();
    assert!(
        !stderr.contains(TOKEN),
        "the token must never be logged:\n{stderr}"
    );
}

/// How the test's Elasticsearch answers a client's documents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// 400 mapper_parsing_exception: refused for good.
    Refused,
    /// 429 the first time a document is seen, then 201.
    Busy,
    /// 503 the first time a document is seen, then 201.
    Unavailable,
    /// 201.
    Created,
}

/// Holds bulk requests while closed (at most 30 s each), counting them.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    held: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        let open = self.open.lock().unwrap();
        if !*open {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _ = self
                .opened
                .wait_timeout_while(open, Duration::from_secs(30), |open| !*open)
                .unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// The documents of a bulk request (every second line).
fn bulk_docs(r: &Request) -> Vec<Value> {
    r.body
        .lines()
        .skip(1)
        .step_by(2)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn elasticsearch_over_https_gets_the_daemons_alerts_and_bulk_items_are_handled_one_by_one() {
    let dir = TempDir::new("sinks-es-https");
    let roles: Arc<Mutex<HashMap<u64, Role>>> = Arc::default();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let gate: Arc<Gate> = Arc::default();
    let respond: Responder = {
        let (roles, seen, gate) = (roles.clone(), seen.clone(), gate.clone());
        Arc::new(move |r: &Request| {
            if r.path != "/_bulk" {
                return (404, "{}".into());
            }
            gate.pass();
            let roles = roles.lock().unwrap();
            let mut seen = seen.lock().unwrap();
            let mut errors = false;
            let items: Vec<Value> = bulk_docs(r)
                .iter()
                .map(|doc| {
                    let role = doc["process"]["pid"]
                        .as_u64()
                        .and_then(|p| roles.get(&p).copied())
                        .unwrap_or(Role::Created);
                    let first = seen.insert(doc.to_string());
                    let item = match role {
                        Role::Refused => json!({"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [process.pid]"}}),
                        Role::Busy if first => json!({"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}),
                        Role::Unavailable if first => json!({"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}),
                        _ => json!({"status": 201, "result": "created"}),
                    };
                    errors |= item["status"] != 201;
                    json!({ "create": item })
                })
                .collect();
            (
                200,
                json!({"took": 3, "errors": errors, "items": items}).to_string(),
            )
        })
    };
    let collector = HttpsCollector::start(&dir, respond);
    let port = collector.port;
    let key = dir.write("es.key", "ZXMta2V5OnNlY3JldA==\n");
    let daemon = daemon_with_sinks(
        &dir,
        &format!(
            "[[sink]]\nkind = \"elasticsearch\"\nurl = \"https://127.0.0.1:{port}/\"\ntoken_file = \"{}\"\nindex = \"logs-relaywatch-test\"\nca_file = \"{}\"\n",
            key.display(),
            dir.join("ca.pem").display()
        ),
    );
    let sink = format!("elasticsearch https://127.0.0.1:{port}/");
    let tls = Fixture::tls();

    // So that the documents of several clients are answered in one bulk response, the
    // collector holds the first request it gets until they are all queued behind it.
    let (warm_up, _) = curl_alert(&daemon, tls.port, "es-https-hold.api.openai.com");
    wait_until("a bulk request held", Duration::from_secs(30), || {
        gate.held.load(Ordering::SeqCst) >= 1
    });
    let mut clients = Vec::new();
    for (role, name) in [
        (Role::Refused, "es-https-refused.api.openai.com"),
        (Role::Busy, "es-https-busy.api.openai.com"),
        (Role::Created, "es-https-created.api.openai.com"),
        (Role::Unavailable, "es-https-unavailable.api.openai.com"),
    ] {
        let (pid, alert) = curl_alert(&daemon, tls.port, name);
        check_ecs(&alert, pid, name, tls.port);
        roles.lock().unwrap().insert(u64::from(pid), role);
        clients.push((role, pid, alert));
    }
    // Everything the daemon has raised so far is in the sink's queue (the one request held
    // included): the sinks get each alert after it is written on stdout.
    let raised = daemon.all_lines().iter().filter(|r| is_alert(r)).count() as u64;
    wait_health(&daemon, &sink, "every alert so far queued", |h| {
        h["queued"].as_u64() >= Some(raised)
    });
    gate.open();

    // A last client: delivery is in order and a batch's retries come before the next batch, so
    // once this one's alert has come, the earlier ones will not be sent again.
    let (last, _) = curl_alert(&daemon, tls.port, "es-https-last.api.openai.com");
    let received = |pid: u32| -> Vec<Value> {
        collector
            .requests()
            .iter()
            .filter(|r| r.path == "/_bulk")
            .flat_map(bulk_docs)
            .filter(|d| d["process"]["pid"] == pid)
            .collect()
    };
    let distinct = |docs: Vec<Value>| -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for d in docs {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    };
    let sorted = |mut docs: Vec<Value>| {
        docs.sort_by_key(Value::to_string);
        docs
    };
    let refused_pid = clients[0].1;
    let mut h = Value::Null;
    wait_until(
        "every client's alerts at the collector, the refused ones counted",
        Duration::from_secs(60),
        || {
            h = sink_health(&daemon, &sink);
            !received(last).is_empty()
                && clients.iter().all(|(_, pid, _)| {
                    sorted(distinct(received(*pid))) == sorted(alert_docs(&daemon, *pid))
                })
                && h["failed"].as_u64() == Some(received(refused_pid).len() as u64)
        },
    );
    for (role, pid, _) in &clients {
        let docs = received(*pid);
        let times = match role {
            Role::Busy | Role::Unavailable => 2,
            Role::Refused | Role::Created => 1,
        };
        for doc in distinct(docs.clone()) {
            assert_eq!(
                docs.iter().filter(|d| **d == doc).count(),
                times,
                "{role:?} documents are sent {times} times: {doc:#}"
            );
        }
    }
    assert!(!received(refused_pid).is_empty());
    assert!(
        h["delivered"].as_u64()
            >= Some(
                clients
                    .iter()
                    .filter(|(role, ..)| *role != Role::Refused)
                    .map(|(_, pid, _)| alert_docs(&daemon, *pid).len() as u64)
                    .sum()
            ),
        "{h:#}"
    );

    // One bulk request carried the four clients' alerts and got the mixed answer; the next
    // one carried only the two to send again.
    let requests: Vec<Request> = collector
        .requests()
        .into_iter()
        .filter(|r| r.path == "/_bulk")
        .collect();
    let carries = |r: &Request, alert: &Value| bulk_docs(r).contains(alert);
    let mixed = requests
        .iter()
        .position(|r| carries(r, &clients[0].2))
        .expect("the refused client's alert was sent");
    for (role, _, alert) in &clients {
        assert!(
            carries(&requests[mixed], alert),
            "{role:?} is in the batch: {:#?}",
            requests[mixed]
        );
    }
    let retry = &requests[mixed + 1];
    // Of this test's clients (the daemon also alerts on other tests' loopback traffic, and a
    // new alert of theirs may share the retry's request).
    let ours: Vec<u64> = clients.iter().map(|c| u64::from(c.1)).collect();
    let retried: Vec<u64> = bulk_docs(retry)
        .iter()
        .filter_map(|d| d["process"]["pid"].as_u64())
        .filter(|p| ours.contains(p))
        .collect();
    assert!(
        retried
            .iter()
            .all(|p| [clients[1].1, clients[3].1].contains(&(*p as u32)))
            && carries(retry, &clients[1].2)
            && carries(retry, &clients[3].2),
        "only the 429 and 503 items are sent again: {retried:?}"
    );
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some("ApiKey ZXMta2V5OnNlY3JldA==")
        );
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        for action in r.body.lines().step_by(2) {
            assert_eq!(
                serde_json::from_str::<Value>(action).unwrap(),
                json!({"create": {"_index": "logs-relaywatch-test"}})
            );
        }
    }
    assert!(!received(warm_up).is_empty());

    // The log names each kind of failure with its own reason.
    let stderr = daemon.stderr();
    let refusals: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("refused by the collector, not retried"))
        .collect();
    assert!(
        !refusals.is_empty()
            && refusals.iter().all(|l| l.ends_with(
                "not retried: item 400: mapper_parsing_exception failed to parse field [process.pid]"
            )),
        "{stderr}"
    );
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("delivery failed (attempt 1), retrying: "))
        .collect();
    assert!(
        !retries.is_empty()
            && retries.iter().all(|l| l
                .contains("retrying: item 429: es_rejected_execution_exception")
                || l.contains("retrying: item 503: unavailable_shards_exception")),
        "{stderr}"
    );
    assert!(!stderr.contains("ZXMta2V5OnNlY3JldA=="), "{stderr}");
    let out = daemon.cli(&["status"]);
    let summary = text(&out.stdout);
    assert!(
        summary.lines().any(|l| l.contains(&format!("{sink}: "))
            && l.contains(&format!(", {} failed, ", h["failed"]))),
        "{summary}"
    );
}
