//! SIEM sinks against real collectors: a real rsyslogd (UDP, TCP with octet counting, TLS
//! through rsyslog's gtls driver), and loopback HTTP servers standing in for Splunk HEC and
//! Elasticsearch that record every request.
//!
//! The sinks are driven through the test suite's `relaywatch-diag sink-send` command
//! (alert JSON lines on stdin, final health as one JSON line on stdout), so restarts are real
//! process restarts over the same state directory. No kernel programs are loaded. Every wait
//! is bounded in time.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use integration_tests::{KeyType, Rsyslog, TempDir, diag_bin, free_port, openssl_ca, wait_until};
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
    thread::sleep(Duration::from_millis(300));
    assert_eq!(rsyslog.lines("tcp.log", 3).len(), 3, "nothing sent twice");
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

fn hec_events(requests: &[Request]) -> Vec<Value> {
    requests
        .iter()
        .flat_map(|r| {
            r.body
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn sequences(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e["event"]["event"]["sequence"].as_u64())
        .collect()
}

#[test]
fn splunk_hec_queue_survives_restarts_and_delivers_exactly_once() {
    let dir = TempDir::new("sinks-hec");
    let port = free_port();
    let token = dir.join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[[sink]]\nkind = \"splunk-hec\"\nurl = \"http://127.0.0.1:{port}\"\ntoken_file = \"{}\"\nindex = \"security\"\n", token.display()),
    )
    .unwrap();
    let state = dir.join("state");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let ok: Responder = Arc::new(|_| (200, r#"{"text":"Success","code":0}"#.into()));
    let mut stderr_all = String::new();

    // Collector up: delivered at once.
    let server = HttpServer::start(port, requests.clone(), ok.clone());
    let (health, err) = sink_send(&config, &state, &[alert(0), alert(1)], 10_000);
    stderr_all += &err;
    assert_eq!(
        (
            health[0]["delivered"].as_u64(),
            health[0]["queued"].as_u64()
        ),
        (Some(2), Some(0)),
        "{}",
        health[0]
    );
    server.stop();

    // Collector down: alerts queue on disk, across two process runs.
    let (health, err) = sink_send(&config, &state, &[alert(2), alert(3), alert(4)], 700);
    stderr_all += &err;
    assert_eq!(
        (
            health[0]["delivered"].as_u64(),
            health[0]["queued"].as_u64()
        ),
        (Some(0), Some(3)),
        "{}",
        health[0]
    );
    assert!(health[0]["errors"].as_u64().unwrap() >= 1);
    let (health, err) = sink_send(&config, &state, &[alert(5), alert(6)], 300);
    stderr_all += &err;
    assert_eq!(health[0]["queued"].as_u64(), Some(5), "{}", health[0]);

    // Collector back: a new run delivers the queue, in order, once.
    let server = HttpServer::start(port, requests.clone(), ok);
    let (health, err) = sink_send(&config, &state, &[], 20_000);
    stderr_all += &err;
    assert_eq!(
        (
            health[0]["delivered"].as_u64(),
            health[0]["queued"].as_u64()
        ),
        (Some(5), Some(0)),
        "{}",
        health[0]
    );
    let (health, _) = sink_send(&config, &state, &[], 2_000);
    assert_eq!(
        health[0]["delivered"].as_u64(),
        Some(0),
        "nothing left to send: {}",
        health[0]
    );
    server.stop();

    let requests = requests.lock().unwrap().clone();
    let events = hec_events(&requests);
    assert_eq!(
        sequences(&events),
        [0, 1, 2, 3, 4, 5, 6],
        "every alert exactly once, in order"
    );
    for r in &requests {
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Splunk {TOKEN}").as_str())
        );
    }
    let e = &events[0];
    assert_eq!(
        (
            e["source"].as_str(),
            e["sourcetype"].as_str(),
            e["host"].as_str(),
            e["index"].as_str()
        ),
        (
            Some("relaywatch"),
            Some("relaywatch:alert"),
            Some("build-01"),
            Some("security")
        )
    );
    assert_eq!(e["time"].as_f64(), Some(1788250500.123));
    assert_eq!(e["event"], alert(0));
    assert!(
        !stderr_all.contains(TOKEN),
        "the token must never be logged:\n{stderr_all}"
    );
}

#[test]
fn splunk_hec_4xx_is_a_permanent_failure_not_retried() {
    let dir = TempDir::new("sinks-hec-4xx");
    let port = free_port();
    let token = dir.join("hec.token");
    std::fs::write(&token, TOKEN).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[[sink]]\nkind = \"splunk-hec\"\nurl = \"http://127.0.0.1:{port}/services/collector\"\ntoken_file = \"{}\"\n", token.display())).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let server = HttpServer::start(
        port,
        requests.clone(),
        Arc::new(|_| (400, r#"{"text":"Invalid data format","code":6}"#.into())),
    );
    let state = dir.join("state");
    let (health, stderr) = sink_send(&config, &state, &[alert(0), alert(1)], 10_000);
    let h = &health[0];
    assert_eq!(
        (
            h["failed"].as_u64(),
            h["delivered"].as_u64(),
            h["queued"].as_u64()
        ),
        (Some(2), Some(0), Some(0)),
        "{h}"
    );
    assert!(
        h["last_error"]
            .as_str()
            .unwrap()
            .contains("Invalid data format"),
        "{h}"
    );
    assert!(stderr.contains("refused by the collector"), "{stderr}");
    // One request, and a later run does not send the refused batch again.
    let (health, _) = sink_send(&config, &state, &[], 1_000);
    server.stop();
    assert_eq!(health[0]["failed"].as_u64(), Some(0));
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].path, "/services/collector");
    assert!(!stderr.contains(TOKEN));
}

#[test]
fn elasticsearch_bulk_items_are_read_one_by_one() {
    let dir = TempDir::new("sinks-es");
    let port = free_port();
    let key = dir.join("es.key");
    std::fs::write(&key, "ZXMta2V5").unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[[sink]]\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:{port}/\"\ntoken_file = \"{}\"\nindex = \"logs-relaywatch-test\"\n", key.display()),
    )
    .unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0u32));
    // Document 1 has a mapping error (refused for good); document 2 is refused with 429 the
    // first time (sent again); the rest are created.
    let respond: Responder = Arc::new(move |r: &Request| {
        let mut items = Vec::new();
        for doc in r.body.lines().skip(1).step_by(2) {
            let n = serde_json::from_str::<Value>(doc).unwrap()["event"]["sequence"]
                .as_u64()
                .unwrap();
            let item = match n {
                1 => {
                    json!({"create": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}}})
                }
                2 => {
                    let mut a = attempts.lock().unwrap();
                    *a += 1;
                    if *a == 1 {
                        json!({"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "busy"}}})
                    } else {
                        json!({"create": {"status": 201}})
                    }
                }
                _ => json!({"create": {"status": 201}}),
            };
            items.push(item);
        }
        (
            200,
            json!({"took": 1, "errors": true, "items": items}).to_string(),
        )
    });
    let server = HttpServer::start(port, requests.clone(), respond);
    let (health, _) = sink_send(
        &config,
        &dir.join("state"),
        &(0..4).map(alert).collect::<Vec<_>>(),
        15_000,
    );
    server.stop();
    let h = &health[0];
    assert_eq!(
        (
            h["delivered"].as_u64(),
            h["failed"].as_u64(),
            h["queued"].as_u64()
        ),
        (Some(3), Some(1), Some(0)),
        "{h}"
    );
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "the batch, then the one retried item");
    let mut sent = Vec::new();
    for r in requests.iter() {
        assert_eq!(r.path, "/_bulk");
        assert_eq!(r.header("authorization"), Some("ApiKey ZXMta2V5"));
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<Value> = r
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for pair in lines.chunks(2) {
            assert_eq!(
                pair[0],
                json!({"create": {"_index": "logs-relaywatch-test"}})
            );
            sent.push(pair[1]["event"]["sequence"].as_u64().unwrap());
        }
    }
    assert_eq!(sent, [0, 1, 2, 3, 2]);
}
