//! The control API and the query commands, end to end: `relaywatch-diag api-serve` (the real
//! `api::serve` over a real store, with a stand-in daemon) on a real unix socket, queried by
//! curl, raw sockets and the real CLI, as root, as an unprivileged uid and as members of the
//! `relaywatch` group (created with groupadd when missing). Needs root.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant, SystemTime},
};

use integration_tests::{diag_bin, poll, relaywatch_bin, require_root};
use serde_json::{Value, json};

const GROUP: &str = "relaywatch";
const NOBODY: u32 = 65534;

fn group_gid() -> u32 {
    let out = Command::new("getent")
        .args(["group", GROUP])
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    line.split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("group relaywatch exists")
}

/// Create the group once (groupadd -f is idempotent and safe to race).
fn ensure_group() -> u32 {
    let status = Command::new("groupadd")
        .args(["-f", "-r", GROUP])
        .status()
        .expect("run groupadd");
    assert!(status.success(), "groupadd -f -r {GROUP} failed");
    group_gid()
}

/// A running `relaywatch-diag api-serve` in its own directory.
struct Server {
    child: Child,
    stdin: ChildStdin,
    answers: BufReader<ChildStdout>,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Server {
    fn start(tag: &str) -> Server {
        require_root();
        ensure_group();
        let dir = PathBuf::from(format!("/tmp/relaywatch-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Unprivileged test clients must be able to reach the socket's directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("run/relaywatch.sock");
        let mut child = Command::new(diag_bin())
            .args(["api-serve", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relaywatch-diag api-serve");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let mut err = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let server = Server {
            stdin: child.stdin.take().unwrap(),
            answers: BufReader::new(child.stdout.take().unwrap()),
            child,
            log,
            dir,
            socket,
        };
        poll(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                UnixStream::connect(&server.socket)
                    .map_err(|_| format!("api-serve did not start: {}", server.log()))
            },
        );
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn feed(&mut self, line: Value) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut answer = String::new();
        self.answers.read_line(&mut answer).unwrap();
        assert!(!answer.starts_with("error"), "{line} -> {answer}");
        answer.trim().to_owned()
    }

    fn alert(&mut self, alert: Value) -> i64 {
        let answer = self.feed(json!({ "alert": alert }));
        answer
            .strip_prefix("alert ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{answer}"))
    }

    fn connection(&mut self, record: Value) {
        assert_eq!(self.feed(json!({ "connection": record })), "connection");
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(relaywatch_bin());
        cmd.args(args)
            .arg("--socket")
            .arg(&self.socket)
            .env_remove("NO_COLOR");
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().unwrap()
    }

    /// The CLI run through `setpriv` with other credentials.
    fn cli_as(&self, setpriv: &[&str], args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(setpriv)
            .arg(relaywatch_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run setpriv")
    }

    /// One raw request; the whole answer (the server closes after it).
    fn raw(&self, request: &[u8]) -> String {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn at(secs_ago: u64) -> String {
    humantime::format_rfc3339_micros(SystemTime::now() - Duration::from_secs(secs_ago)).to_string()
}

fn alert(
    secs_ago: u64,
    category: &str,
    process: &str,
    pid: u32,
    user: &str,
    domain: &str,
) -> Value {
    json!({
        "@timestamp": at(secs_ago),
        "event": { "kind": "alert", "severity": 73 },
        "rule": { "category": category, "name": format!("{category} destination") },
        "process": { "name": process, "executable": format!("/usr/bin/{process}"), "pid": pid },
        "user": { "name": user },
        "destination": { "domain": domain, "ip": "203.0.113.7", "port": 443 },
    })
}

fn connection(secs_ago: u64, process: &str, pid: u32, domain: &str, sent: u64) -> Value {
    json!({
        "@timestamp": at(secs_ago),
        "process": { "name": process, "executable": format!("/usr/bin/{process}"), "pid": pid },
        "user": { "id": "0", "name": "root" },
        "destination": { "domain": domain, "ip": "198.51.100.4", "port": 443, "bytes": 2 * sent },
        "source": { "bytes": sent },
    })
}

fn pids(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|a| a["process"]["pid"].as_u64().unwrap())
        .collect()
}

#[test]
fn status_and_reload_over_curl_and_cli() {
    let server = Server::start("status");
    let gid = group_gid();
    let meta = std::fs::metadata(&server.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&meta),
        gid,
        "socket belongs to group relaywatch"
    );
    let run_dir = std::fs::metadata(server.socket.parent().unwrap()).unwrap();
    assert_eq!(run_dir.permissions().mode() & 0o777, 0o755);

    let out = Command::new("curl")
        .args(["-s", "--fail", "--unix-socket"])
        .arg(&server.socket)
        .arg("http://localhost/v1/status")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["daemon"], "relaywatch api-serve (test harness)");
    assert_eq!(status["store"]["alerts"], 0);
    assert_eq!(status["store"]["schema_version"], 1);

    let out = server.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let via_cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_cli["daemon"], status["daemon"]);
    // The summary: state, version and uptime first, then what the daemon sent (the harness
    // sends no counters, lists or sinks: those lines are left out).
    let out = server.cli(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    let version = status["version"].as_str().unwrap();
    assert!(
        first.starts_with(&format!("relaywatch {version}: running, up ")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("store ")
            && l.contains(" 0 alerts, 0 connection rows, ")
            && l.ends_with(&format!(
                " in {}",
                status["store"]["path"].as_str().unwrap()
            ))),
        "{text}"
    );
    assert!(!text.contains("daemon:"), "no key dump by default: {text}");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    // The dotted key dump is behind --raw.
    let out = server.cli(&["status", "--raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("daemon:") && l.ends_with("relaywatch api-serve (test harness)")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("store.alerts:") && l.ends_with(" 0")),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    assert_eq!(
        server.cli(&["status", "--raw", "--json"]).status.code(),
        Some(2),
        "--raw and --json exclude each other"
    );

    let out = server.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "reloaded\nreloaded: true\n");
    let out = server.cli(&["reload", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!({"reloaded": true})
    );
}

#[test]
fn alert_and_connection_queries() {
    let mut server = Server::start("queries");
    server.alert(alert(
        7200,
        "ai_provider",
        "curl",
        100,
        "alice",
        "api.openai.com",
    ));
    server.alert(alert(
        600,
        "ai_relay",
        "python3",
        200,
        "bob",
        "relay.example.net",
    ));
    server.alert(alert(
        60,
        "ai_provider",
        "node",
        300,
        "alice",
        "chat.openai.com",
    ));

    let q = |args: &[&str]| {
        pids(&json_lines(
            &server.cli(&[&["alerts", "--json"], args].concat()),
        ))
    };
    assert_eq!(q(&[]), [100, 200, 300], "oldest first");
    assert_eq!(q(&["--since", "1h"]), [200, 300]);
    assert_eq!(q(&["--until", "30m"]), [100]);
    assert_eq!(q(&["--category", "ai_relay"]), [200]);
    assert_eq!(q(&["--process", "node"]), [300]);
    assert_eq!(q(&["--process", "/usr/bin/curl"]), [100]);
    assert_eq!(q(&["--pid", "200"]), [200]);
    assert_eq!(q(&["--user", "alice"]), [100, 300]);
    assert_eq!(q(&["--domain", "openai.com"]), [100, 300]);
    assert_eq!(
        q(&["--domain", "example.net", "--user", "alice"]),
        Vec::<u64>::new()
    );
    assert_eq!(q(&["--limit", "1"]), [300], "the most recent");
    assert_eq!(q(&["--limit", "2", "--user", "alice"]), [100, 300]);
    // The whole document comes back.
    let all = json_lines(&server.cli(&["alerts", "--json", "--pid", "200"]));
    assert_eq!(all[0]["rule"]["name"], "ai_relay destination");

    let out = server.cli(&["alerts", "--since", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "TIME",
            "SEVERITY",
            "CATEGORY",
            "PROCESS",
            "PID",
            "USER",
            "DESTINATION",
            "PORT",
            "SENT",
            "/",
            "RECEIVED"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [
            "10m",
            "ago",
            "high",
            "ai_relay",
            "python3",
            "200",
            "bob",
            "relay.example.net",
            "443",
            "-"
        ]
    );
    assert!(lines[2].starts_with("1m ago"), "{text}");
    // Columns are aligned: every field starts where its title does.
    let col = lines[0].find("CATEGORY").unwrap();
    assert_eq!(&lines[1][col..col + 8], "ai_relay");
    assert_eq!(&lines[2][col..col + 11], "ai_provider");
    assert_eq!(
        stdout(&server.cli(&["alerts", "--user", "nobody"])),
        "no alerts match\n"
    );

    server.connection(connection(300, "curl", 41, "api.openai.com", 100));
    server.connection(connection(100, "curl", 42, "api.openai.com", 50));
    server.connection(connection(30, "wget", 43, "relay.example.net", 7));
    let rows = json_lines(&server.cli(&["connections", "--json"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["executable"], "/usr/bin/curl");
    assert_eq!(
        (
            rows[0]["count"].as_u64(),
            rows[0]["bytes_sent"].as_u64(),
            rows[0]["bytes_received"].as_u64()
        ),
        (Some(2), Some(150), Some(300))
    );
    assert_eq!(rows[0]["last_pid"], 42);
    assert_eq!(rows[1]["destination_domain"], "relay.example.net");
    let rows = json_lines(&server.cli(&["connections", "--json", "--domain", "openai.com"]));
    assert_eq!(rows.len(), 1);
    let rows = json_lines(&server.cli(&["connections", "--json", "--since", "1m"]));
    assert_eq!(rows.len(), 1, "a summary counts as recent by its last_seen");
    assert_eq!(
        json_lines(&server.cli(&["connections", "--json", "--limit", "1"]))[0]["process_name"],
        "wget"
    );

    let out = server.cli(&["connections"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "LAST",
            "SEEN",
            "FIRST",
            "SEEN",
            "PROCESS",
            "PID",
            "USER",
            "DESTINATION",
            "PORT",
            "COUNT",
            "SENT",
            "RECEIVED"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [
            "1m",
            "ago",
            "5m",
            "ago",
            "/usr/bin/curl",
            "42",
            "root",
            "api.openai.com",
            "443",
            "2",
            "150",
            "B",
            "300",
            "B"
        ]
    );

    // Usage errors are caught by the CLI (exit 2) and by the server (400).
    let out = server.cli(&["alerts", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("relaywatch: --since: 'yesterday' is neither"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&["connections", "--category", "ai_relay"]);
    assert_eq!(out.status.code(), Some(2), "connections take no --category");
}

#[test]
fn only_root_and_the_group_are_served() {
    let server = Server::start("peers");
    let gid = group_gid().to_string();
    let nobody = NOBODY.to_string();

    // The socket's mode already keeps others out.
    let out = server.cli_as(
        &["--reuid", &nobody, "--regid", &nobody, "--clear-groups"],
        &["status"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied connecting to"),
        "{}",
        stderr(&out)
    );

    // Loosen the mode: the server's own peer-credential check still refuses, and logs it.
    std::fs::set_permissions(&server.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = server.cli_as(
        &["--reuid", &nobody, "--regid", &nobody, "--clear-groups"],
        &["alerts"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "relaywatch: the daemon refused: permission denied: only root and members of group relaywatch may use this API\n"
    );
    poll(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let log = server.log();
            if log.contains(&format!("refused uid {NOBODY} gid {NOBODY} pid ")) {
                Ok(())
            } else {
                Err(format!("refusal not logged: {log}"))
            }
        },
    );
    std::fs::set_permissions(&server.socket, std::fs::Permissions::from_mode(0o660)).unwrap();

    // Members of the group, by primary or by supplementary group, are served.
    let out = server.cli_as(
        &["--reuid", &nobody, "--regid", &gid, "--clear-groups"],
        &["status", "--json"],
    );
    assert!(out.status.success(), "primary group: {}", stderr(&out));
    let out = server.cli_as(
        &["--reuid", &nobody, "--regid", &nobody, "--groups", &gid],
        &["alerts", "--json"],
    );
    assert!(
        out.status.success(),
        "supplementary group: {}",
        stderr(&out)
    );
}

#[test]
fn unreachable_daemon_is_one_line_and_exit_3() {
    let socket = format!(
        "/tmp/relaywatch-api-absent-{}/relaywatch.sock",
        std::process::id()
    );
    for command in ["status", "alerts", "connections", "reload"] {
        let out = Command::new(relaywatch_bin())
            .args([command, "--socket", &socket])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{command}");
        assert_eq!(
            stderr(&out),
            format!(
                "relaywatch: cannot reach the daemon at {socket}: No such file or directory (is relaywatch running?)\n"
            )
        );
        assert!(out.stdout.is_empty());
    }
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn bad_requests_get_errors_and_the_server_stays_up() {
    let server = Server::start("bad");
    let answer = server.raw(b"GARBAGE \x00\xff\r\n\r\n");
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{answer}");

    let answer = server
        .raw(b"GET /v1/alerts?since=fortnight HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"since: 'fortnight' is neither"#),
        "{answer}"
    );
    let answer =
        server.raw(b"GET /v1/alerts?limit=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains(r#""error":"limit: "#),
        "{answer}"
    );
    let answer =
        server.raw(b"GET /v1/alerts?bogus=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains(r#""error":"bogus: unknown parameter"#),
        "{answer}"
    );

    let answer = server.raw(b"GET /v2/everything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(&answer), "HTTP/1.1 404 Not Found", "{answer}");
    let answer = server.raw(b"DELETE /v1/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 405 Method Not Allowed",
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("allow: get"),
        "{answer}"
    );
    let answer = server.raw(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 413 Payload Too Large",
        "{answer}"
    );
    let huge = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = server.raw(huge.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized head: {answer}"
    );
    // A client that connects and says nothing does not block others.
    let _silent = UnixStream::connect(&server.socket).unwrap();

    let out = server.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "server still serves: {} / {}",
        stderr(&out),
        server.log()
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

fn spawn_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn follow_streams_new_matching_items() {
    let mut server = Server::start("follow");
    server.alert(alert(
        60,
        "ai_relay",
        "curl",
        1,
        "alice",
        "relay.example.net",
    ));
    let mut follower = server
        .cli_command(&["alerts", "--follow", "--json", "--category", "ai_relay"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = spawn_lines(&mut follower);
    let first: Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(first["process"]["pid"], 1, "history first");
    server.alert(alert(
        0,
        "ai_provider",
        "curl",
        2,
        "alice",
        "api.openai.com",
    ));
    server.alert(alert(
        0,
        "ai_relay",
        "curl",
        3,
        "alice",
        "relay.example.net",
    ));
    let next: Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(
        next["process"]["pid"], 3,
        "the non-matching alert is filtered out"
    );
    assert!(
        lines.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing duplicated"
    );

    // A human-readable follower of connections gets a header, then a row per update.
    let mut table = server
        .cli_command(&["connections", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rows = spawn_lines(&mut table);
    let header = rows.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(header.starts_with("LAST SEEN"), "{header}");
    server.connection(connection(0, "curl", 9, "api.openai.com", 10));
    let row = rows.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        row.contains("/usr/bin/curl") && row.contains("api.openai.com"),
        "{row}"
    );

    let _ = follower.kill();
    let _ = follower.wait();
    let _ = table.kill();
    let _ = table.wait();
    assert!(
        server.cli(&["status"]).status.success(),
        "server survives clients going away"
    );
}
