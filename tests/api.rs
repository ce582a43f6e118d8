//! The control API and the query commands against the real daemon: `relaywatch run` (real
//! eBPF programs, its own config, state directory and socket) sees real clients (curl, python's
//! ssl, run as root and as nobody) reach loopback TLS servers under names it lists
//! (`*.api.openai.com` from the built-in lists, `*.relay-test.example` from a list file of the
//! test), stores the alerts and connection summaries, and is queried over its unix socket by
//! curl, raw socket requests and the real CLI, as root, as an unprivileged uid (nobody) and as
//! members of a group made for the test (`socket_group` in the config; removed again on drop).
//!
//! Every daemon sees every test's loopback traffic: assertions select items by the names,
//! ports and pids of the test's own clients. Needs root.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        net::UnixStream,
    },
    path::Path,
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use integration_tests::{
    Daemon, Fixture, KillOnDrop, PYTHON, TempDir, curl_resolving, poll, real_executable,
    relaywatch_bin, run_client, without_proxies,
};
use serde_json::Value;

const NOBODY: u32 = 65534;
/// The socket, in the test's directory (0755: unprivileged clients reach it).
const SOCKET: &str = "relaywatch.sock";
/// How long a positive result (a record, an alert in the store, a streamed line) may take.
const WAIT: Duration = Duration::from_secs(20);

/// A host group made for one test (`rwt-PID-N`), removed with groupdel on drop, so the host is
/// left as found.
struct TestGroup {
    name: String,
    gid: u32,
}

/// Run groupadd/groupdel, retrying while another one holds the lock on /etc/group (exit 10:
/// "cannot lock", with tests and other runs adding groups in parallel).
fn group_tool(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
        if out.status.code() != Some(10) || Instant::now() > deadline {
            return out;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

impl TestGroup {
    fn new() -> TestGroup {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rwt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = group_tool(&["groupadd", "--system", &name]);
        assert!(
            out.status.success(),
            "groupadd {name} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = Command::new("getent")
            .args(["group", &name])
            .output()
            .unwrap();
        let gid = String::from_utf8_lossy(&entry.stdout)
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .unwrap_or_else(|| panic!("group {name} has no gid: {entry:?}"));
        TestGroup { name, gid }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let out = group_tool(&["groupdel", &self.name]);
        if !out.status.success() {
            eprintln!(
                "groupdel {} failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A test's daemon, its directory (config, list file) and the names only its clients use.
struct Setup {
    /// First, so that it stops before its directory goes.
    daemon: Daemon,
    dir: TempDir,
    /// Under the built-in `openai.com` rule (ai-provider).
    provider: String,
    /// Under this test's `domain:` rule of category ai-relay.
    relay: String,
}

impl Setup {
    /// A daemon with `--include-loopback`, a list file for `self.relay` and its socket (at
    /// `socket` in the test's directory) served to `group` (to a group that does not exist, so
    /// to root only, when `None`).
    fn start(tag: &str, group: Option<&TestGroup>, socket: &str) -> Setup {
        let dir = TempDir::new(&format!("api-{tag}"));
        // Unprivileged clients must reach the socket inside it.
        std::fs::set_permissions(&*dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let unique = format!("{tag}-{}", std::process::id());
        let provider = format!("{unique}.api.openai.com");
        let relay = format!("{unique}.relay-test.example");
        std::fs::create_dir(dir.join("lists")).unwrap();
        dir.write(
            "lists/relay.list",
            &format!("# relaywatch: category=ai-relay source=api-test version=1\ndomain:{relay}\n"),
        );
        let group_name = group.map_or_else(|| format!("rwt-absent-{unique}"), |g| g.name.clone());
        let config = dir.write(
            "config.toml",
            &format!(
                "[agent]\nsocket_group = \"{group_name}\"\n\n[blocklists]\nfiles = [\"{}/lists/*.list\"]\n",
                dir.display()
            ),
        );
        let config = config.to_string_lossy().into_owned();
        let socket = dir.join(socket).to_string_lossy().into_owned();
        let daemon = Daemon::start(&[
            "--include-loopback",
            "--config",
            &config,
            "--socket",
            &socket,
        ]);
        Setup {
            daemon,
            dir,
            provider,
            relay,
        }
    }

    fn socket(&self) -> &Path {
        &self.daemon.socket
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        cli_command(self.socket(), args)
    }

    fn cli(&self, args: &[&str]) -> Output {
        cli_at(self.socket(), args)
    }

    /// The CLI run through `setpriv SETPRIV` (other credentials).
    fn cli_as_command(&self, setpriv: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(setpriv)
            .arg(relaywatch_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket());
        cmd
    }

    fn cli_as(&self, setpriv: &[&str], args: &[&str]) -> Output {
        self.cli_as_command(setpriv, args)
            .output()
            .expect("run setpriv")
    }

    /// `alerts --json ARGS` (or `connections`): the items.
    fn list(&self, what: &str, args: &[&str]) -> Vec<Value> {
        json_lines(&self.cli(&[&[what, "--json"], args].concat()))
    }

    /// curl --unix-socket SOCKET ARGS, with ARGS ending in the URL.
    fn curl(&self, args: &[&str]) -> Output {
        without_proxies(&mut Command::new("curl"))
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run curl")
    }

    /// One raw request on a new connection; the whole answer (read until the server closes).
    fn raw(&self, request: &[u8]) -> String {
        let mut s = UnixStream::connect(self.socket()).expect("connect to the API socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // A server that answers an oversized head early may close before all of it is written.
        let _ = s.write_all(request);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// The positive control for a "nothing happened" check: a curl to a listed name no other
    /// connection uses (`control-PID-N.api.openai.com`, under the built-in `openai.com` rule),
    /// started after the clients under test, whose alert must arrive. Once it has, the daemon
    /// has judged every connection made before it. Returns the control's alert.
    fn control_alert(&self, port: u16) -> Value {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("control-{}-{n}.api.openai.com", std::process::id());
        let pid = curl_tls(&name, port);
        let alerts = self.daemon.wait_matching(pid, 1, WAIT, |r| {
            r["event"]["kind"] == "alert" && kind_of(r) == "start"
        });
        assert_eq!(
            alerts.len(),
            1,
            "the control connection to {name} raised no alert: {alerts:#?}\n{}",
            self.daemon.stderr()
        );
        assert_eq!(alerts[0]["destination"]["domain"], name.as_str());
        alerts[0].clone()
    }

    /// `status --json` from a refresh (once a second) made after `control` was raised: its
    /// `last_alert` is the control or an alert the daemon wrote after it (other tests'
    /// connections raise alerts too).
    fn status_after(&self, control: &Value) -> Value {
        poll(Instant::now() + WAIT, Duration::from_millis(100), || {
            let out = self.cli(&["status", "--json"]);
            let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let lines = self.daemon.all_lines();
            let fresh = lines
                .iter()
                .position(|l| l == control)
                .is_some_and(|at| lines[at..].contains(&status["last_alert"]));
            if fresh {
                Ok(status)
            } else {
                Err(format!(
                    "no status refreshed after the control alert: {status:#}"
                ))
            }
        })
    }

    /// Wait until `pid`'s alert and its flow-end record are on stdout and in the store; returns
    /// (alert, end).
    fn alert_and_end(&self, pid: u32) -> (Value, Value) {
        let lines = self
            .daemon
            .wait_matching(pid, 2, WAIT, |r| r["event"]["kind"] == "alert");
        assert_eq!(
            lines.len(),
            2,
            "pid {pid}: an alert and its end: {lines:#?}\n{}",
            self.daemon.stderr()
        );
        let (start, end) = (lines[0].clone(), lines[1].clone());
        assert_eq!(kind_of(&start), "start", "{start:#}");
        assert_eq!(kind_of(&end), "end", "{end:#}");
        let pid_text = pid.to_string();
        poll(Instant::now() + WAIT, Duration::from_millis(50), || {
            let stored = self.list("alerts", &["--pid", &pid_text]);
            if stored.len() == 2 {
                Ok(())
            } else {
                Err(format!("pid {pid}: not both in the store: {stored:#?}"))
            }
        });
        (start, end)
    }
}

/// `relaywatch ARGS --socket SOCKET` (colour left to the CLI: NO_COLOR cleared).
fn cli_command(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(relaywatch_bin());
    cmd.args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("NO_COLOR");
    cmd
}

fn cli_at(socket: &Path, args: &[&str]) -> Output {
    cli_command(socket, args).output().expect("run relaywatch")
}

/// curl to https://NAME:PORT/v1/models on a loopback TLS server; pid.
fn curl_tls(name: &str, port: u16) -> u32 {
    integration_tests::curl_tls(name, port, "/v1/models")
}

/// The same curl run as nobody (setpriv execs curl: the pid is curl's).
fn curl_tls_as_nobody(name: &str, port: u16) -> u32 {
    let curl = curl_resolving(name, port, true);
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ])
    .arg(curl.get_program())
    .args(curl.get_args())
    .arg(format!("https://{name}:{port}/v1/models"));
    run_client(&mut cmd)
}

/// Python's ssl (another TLS stack) sending one HTTP request to NAME on 127.0.0.1:PORT; pid.
fn python_tls(name: &str, port: u16) -> u32 {
    let script = "import socket, ssl, sys\n\
        name, port = sys.argv[1], int(sys.argv[2])\n\
        ctx = ssl.create_default_context()\n\
        ctx.check_hostname = False\n\
        ctx.verify_mode = ssl.CERT_NONE\n\
        with ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=5), server_hostname=name) as s:\n\
        \x20   s.sendall(b'GET /v1/models HTTP/1.1\\r\\nHost: ' + name.encode() + b'\\r\\nConnection: close\\r\\n\\r\\n')\n\
        \x20   assert s.recv(4096).startswith(b'HTTP/1.1 200')\n";
    run_client(
        Command::new(PYTHON)
            .args(["-c", script, name])
            .arg(port.to_string()),
    )
}

/// "start" for an alert, "end" for its flow end (from `event.type`).
fn kind_of(item: &Value) -> &'static str {
    let types = item["event"]["type"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if types.iter().any(|t| t == "end") {
        "end"
    } else if types.iter().any(|t| t == "start") {
        "start"
    } else {
        "other"
    }
}

/// The severity word the CLI shows: the list's, else ECS `event.severity` by the ranges
/// relaywatch writes (73 high, 47 medium, 21 low, 1 info).
fn severity_word(alert: &Value) -> String {
    if let Some(word) = alert["relaywatch"]["severity"].as_str() {
        return word.to_ascii_lowercase();
    }
    match alert["event"]["severity"].as_u64().expect("event.severity") {
        0..=20 => "info",
        21..=46 => "low",
        47..=72 => "medium",
        _ => "high",
    }
    .to_owned()
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

/// The cells of a table line: columns are two or more spaces apart, cells have single spaces.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A time strictly between everything that happened before the call and everything after.
fn boundary() -> String {
    thread::sleep(Duration::from_millis(2));
    let t = SystemTime::now();
    thread::sleep(Duration::from_millis(2));
    rfc3339(t)
}

#[test]
fn status_and_reload_over_curl_and_cli() {
    // The socket in a directory the daemon creates (0755, whatever the umask).
    let s = Setup::start("status", None, "run/relaywatch.sock");
    let meta = std::fs::metadata(s.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 0, "no such group: the socket stays root's");
    let run_dir = std::fs::metadata(s.socket().parent().unwrap()).unwrap();
    assert_eq!(run_dir.permissions().mode() & 0o777, 0o755);
    assert!(
        s.daemon
            .stderr()
            .contains(&format!("group rwt-absent-status-{}", std::process::id())),
        "the missing group is named in the log: {}",
        s.daemon.stderr()
    );

    // Asked right after start: the status is complete from the first answer.
    let out = s.curl(&["--fail", "http://localhost/v1/status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(status["version"], version, "{status:#}");
    assert!(
        status["programs_attached"].as_u64().is_some_and(|n| n > 0),
        "{status:#}"
    );
    assert!(status["uptime_seconds"].is_u64(), "{status:#}");
    let db = s.daemon.state_dir.join("relaywatch.db");
    assert_eq!(
        status["store"]["path"],
        db.to_string_lossy().as_ref(),
        "{status:#}"
    );
    assert_eq!(status["store"]["schema_version"], 2);
    assert!(status["store"]["alerts"].is_u64(), "{status:#}");

    let out = s.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let via_cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_cli["version"], version);
    assert_eq!(via_cli["store"]["path"], status["store"]["path"]);
    assert_eq!(via_cli["cgroup"], status["cgroup"]);

    // The summary: state, version and uptime first, then the daemon's sections.
    let out = s.cli(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("relaywatch {version}: running, up ")),
        "{text}"
    );
    for section in ["programs ", "events ", "losses ", "lists ", "store "] {
        assert!(
            text.lines().any(|l| l.starts_with(section)),
            "no {section:?} line: {text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("store ") && l.ends_with(&format!(" in {}", db.display()))),
        "{text}"
    );
    assert!(!text.contains("version:"), "no key dump by default: {text}");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    // The dotted key dump is behind --raw.
    let out = s.cli(&["status", "--raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("version:") && l.ends_with(version)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("store.schema_version:") && l.ends_with(" 2")),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    assert_eq!(
        s.cli(&["status", "--raw", "--json"]).status.code(),
        Some(2),
        "--raw and --json exclude each other"
    );

    // Reload: a list file added after start is active only once reloaded.
    // The paths of `blocklists.active`; `None` when it is not an array (a status that lacks it
    // must fail the test, not read as "no list").
    let active_paths = |status: &Value| -> Option<Vec<String>> {
        status["blocklists"]["active"].as_array().map(|a| {
            a.iter()
                .map(|l| {
                    l["path"]
                        .as_str()
                        .unwrap_or_else(|| panic!("an active list without a path: {l:#}"))
                        .to_owned()
                })
                .collect()
        })
    };
    let active = |status: &Value| -> Vec<String> {
        active_paths(status)
            .unwrap_or_else(|| panic!("blocklists.active is not an array: {status:#}"))
    };
    let added = s.dir.join("lists/added.list");
    let added_path = added.to_string_lossy().into_owned();
    let relay_list = s
        .dir
        .join("lists/relay.list")
        .to_string_lossy()
        .into_owned();
    assert!(active(&status).contains(&relay_list), "{status:#}");
    let added_name = format!("added.{}", s.relay.replacen("status-", "added-", 1));
    std::fs::write(
        &added,
        format!("# relaywatch: category=ai-relay source=api-test version=2\nfull:{added_name}\n"),
    )
    .unwrap();
    // Not used before the reload: a client reaches the added name, then the control (a listed
    // name, started after it) must alert; only then does "no alert" say the name was judged
    // without the new file. The status from a refresh after the control does not list it either.
    let server = Fixture::tls();
    let unlisted = curl_tls(&added_name, server.port);
    let control = s.control_alert(server.port);
    let early = s
        .daemon
        .everything_for(unlisted)
        .into_iter()
        .filter(|r| r["event"]["kind"] == "alert")
        .collect::<Vec<_>>();
    assert!(
        early.is_empty(),
        "{added_name} alerted before the reload: {early:#?}"
    );
    let before = s.status_after(&control);
    assert!(!active(&before).contains(&added_path), "{before:#}");

    let out = s.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("reloaded\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("reloaded:") && l.ends_with(" true")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("].path:") && l.ends_with(&format!(" {added_path}"))),
        "the new list is among those loaded: {text}"
    );
    // The status shows it from its next refresh (once a second).
    let status_where = |what: &str, want: &dyn Fn(&Value) -> bool| {
        poll(Instant::now() + WAIT, Duration::from_millis(100), || {
            let out = s.cli(&["status", "--json"]);
            let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if want(&status) {
                Ok(status)
            } else {
                Err(format!("status never showed {what}: {status:#}"))
            }
        })
    };
    status_where("the added list", &|st| {
        active_paths(st).is_some_and(|a| a.contains(&added_path))
    });
    // ... and classifies with it.
    let pid = curl_tls(&added_name, server.port);
    let (alert, _) = s.alert_and_end(pid);
    assert_eq!(alert["rule"]["category"], "ai-relay", "{alert:#}");
    assert_eq!(
        alert["rule"]["name"],
        format!("full:{added_name}"),
        "{alert:#}"
    );

    // The same over curl and with --json.
    let out = s.curl(&["--fail", "-X", "POST", "http://localhost/v1/reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["reloaded"], true, "{answer:#}");
    assert!(
        answer["lists"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["path"] == added_path.as_str())),
        "{answer:#}"
    );
    let out = s.cli(&["reload", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["reloaded"],
        true
    );

    // A broken list: the daemon's 500 names FILE:LINE, the CLI exits 1, the old lists stay.
    s.dir.write(
        "lists/broken.list",
        "# relaywatch: category=ai-relay\nregexp:([unclosed\n",
    );
    let out = s.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("relaywatch: the daemon answered 500: reload failed: ")
            && err.contains("broken.list:2:")
            && err.ends_with('\n')
            && err.lines().count() == 1,
        "{err}"
    );
    let out = s.curl(&["-i", "-X", "POST", "http://localhost/v1/reload"]);
    let answer = stdout(&out);
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"reload failed: "#) && answer.contains("broken.list:2:"),
        "{answer}"
    );
    let refused = status_where("the refusal", &|st| {
        st["blocklists"]["last_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("broken.list:2:"))
    });
    let still = active(&refused);
    assert!(
        still.contains(&added_path) && still.contains(&relay_list),
        "{refused:#}"
    );
    assert!(
        !still.iter().any(|p| p.ends_with("broken.list")),
        "{refused:#}"
    );
}

#[test]
fn alert_and_connection_queries() {
    let s = Setup::start("queries", None, SOCKET);
    let server = Fixture::tls();
    let (prov, relay) = (s.provider.clone(), s.relay.clone());
    let curl_exe = real_executable("/usr/bin/curl");
    let port = server.port;

    // A: curl as root to a provider; B: python as root to a relay; C: curl as nobody to a
    // relay; one after the other, each once its alert and flow end are stored (so the store's
    // order is A, A-end, B, B-end, C, C-end).
    let a = curl_tls(&format!("a.{prov}"), port);
    let (a_alert, a_end) = s.alert_and_end(a);
    let b = python_tls(&format!("b.{relay}"), port);
    let (b_alert, _) = s.alert_and_end(b);
    let t1 = boundary();
    let c = curl_tls_as_nobody(&format!("c.{relay}"), port);
    let (c_alert, _) = s.alert_and_end(c);
    assert_eq!(a_alert["rule"]["category"], "ai-provider", "{a_alert:#}");
    assert_eq!(b_alert["rule"]["category"], "ai-relay", "{b_alert:#}");
    assert_eq!(b_alert["process"]["name"], "python3", "{b_alert:#}");
    assert_eq!(c_alert["user"]["name"], "nobody", "{c_alert:#}");
    assert_eq!(c_alert["process"]["executable"], curl_exe.as_str());

    let mine = |item: &Value| {
        item["destination"]["domain"]
            .as_str()
            .is_some_and(|d| d.ends_with(&format!(".{prov}")) || d.ends_with(&format!(".{relay}")))
    };
    // Items of this test that the daemon answered, as (pid, start|end), oldest first.
    let q = |args: &[&str]| -> Vec<(u64, &'static str)> {
        s.list("alerts", &[&["--limit", "10000"], args].concat())
            .iter()
            .filter(|i| mine(i))
            .map(|i| (i["process"]["pid"].as_u64().unwrap(), kind_of(i)))
            .collect()
    };
    // Everything the daemon answered (for filters that select this test's items only).
    let q_all = |args: &[&str]| -> Vec<(u64, &'static str)> {
        let items = s.list("alerts", args);
        assert!(items.iter().all(mine), "{args:?}: {items:#?}");
        items
            .iter()
            .map(|i| (i["process"]["pid"].as_u64().unwrap(), kind_of(i)))
            .collect()
    };
    let (a, b, c) = (u64::from(a), u64::from(b), u64::from(c));
    let both = |p: u64| [(p, "start"), (p, "end")];
    let all: Vec<_> = [both(a), both(b), both(c)].concat();
    assert_eq!(q(&[]), all, "oldest first");
    assert_eq!(q(&["--since", "1h"]), all);
    assert_eq!(
        q(&["--until", "1h"]),
        [],
        "nothing of this test is an hour old"
    );
    assert_eq!(q(&["--since", &t1]), both(c));
    assert_eq!(q(&["--until", &t1]), [both(a), both(b)].concat());
    assert_eq!(q(&["--category", "ai-relay"]), [both(b), both(c)].concat());
    assert_eq!(q(&["--category", "ai-provider"]), both(a));
    assert_eq!(q(&["--process", "python3"]), both(b));
    assert_eq!(q(&["--process", &curl_exe]), [both(a), both(c)].concat());
    assert_eq!(q(&["--user", "nobody"]), both(c));
    assert_eq!(q(&["--user", "root"]), [both(a), both(b)].concat());
    assert_eq!(q(&["--domain", "openai.com"]), both(a));
    assert_eq!(q_all(&["--pid", &b.to_string()]), both(b));
    assert_eq!(q_all(&["--domain", &relay]), [both(b), both(c)].concat());
    assert_eq!(q_all(&["--domain", &format!("c.{relay}")]), both(c));
    assert_eq!(q_all(&["--domain", &relay, "--user", "root"]), both(b));
    assert_eq!(q_all(&["--domain", &prov, "--user", "root"]), both(a));
    assert_eq!(q_all(&["--domain", &prov, "--user", "nobody"]), []);
    assert_eq!(
        q_all(&["--domain", &relay, "--limit", "1"]),
        [(c, "end")],
        "the most recent"
    );
    assert_eq!(
        q_all(&["--domain", &relay, "--limit", "3"]),
        [(b, "end"), (c, "start"), (c, "end")]
    );
    // The whole document comes back, as written on stdout.
    let stored = s.list("alerts", &["--pid", &b.to_string()]);
    assert_eq!(stored[0], b_alert);
    assert_eq!(stored[0]["rule"]["name"], format!("domain:{relay}"));

    // The table: one row per alert, its flow end folded in (SENT / RECEIVED).
    let out = s.cli(&["alerts", "--domain", &relay]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        cells(lines[0]),
        [
            "TIME",
            "SEVERITY",
            "CATEGORY",
            "PROCESS",
            "PID",
            "USER",
            "DESTINATION",
            "PORT",
            "SENT / RECEIVED"
        ]
    );
    let row = cells(lines[1]);
    assert_eq!(row.len(), 9, "{text}");
    assert_eq!(row[1], severity_word(&b_alert), "{text}");
    assert_eq!(
        &row[2..8],
        [
            "ai-relay",
            "python3",
            &b.to_string(),
            "root",
            &format!("b.{relay}"),
            &port.to_string()
        ],
        "{text}"
    );
    assert!(
        row[8].contains(" / ") && row[8] != "-",
        "flow end folded in: {text}"
    );
    let row = cells(lines[2]);
    assert_eq!(&row[3..6], ["curl", &c.to_string(), "nobody"], "{text}");
    // Columns are aligned: every left-aligned field starts where its title does.
    let col = lines[0].find("CATEGORY").unwrap();
    assert!(lines[1][col..].starts_with("ai-relay"), "{text}");
    let col = lines[0].find("DESTINATION").unwrap();
    assert!(lines[2][col..].starts_with(&format!("c.{relay}")), "{text}");
    assert_eq!(
        stdout(&s.cli(&["alerts", "--domain", &prov, "--user", "nobody"])),
        "no alerts match\n"
    );
    assert_eq!(
        stdout(&s.cli(&["alerts", "--domain", &relay, "--user", "nobody", "--json"]))
            .lines()
            .count(),
        2,
        "positive control of the empty answer"
    );

    // Connections: one row per executable, user and destination. E repeats A's connection
    // (a repeat inside the dedupe window: no alert, but counted on A's row).
    let t2 = boundary();
    let e = u64::from(curl_tls(&format!("a.{prov}"), port));
    let e_text = e.to_string();
    let a_row = poll(Instant::now() + WAIT, Duration::from_millis(50), || {
        let rows = s.list("connections", &["--pid", &e_text]);
        match rows.as_slice() {
            [row] if row["count"] == 2 => Ok(row.clone()),
            _ => Err(format!("no row with pid {e} and count 2: {rows:#?}")),
        }
    });
    assert_eq!(a_row["executable"], curl_exe.as_str(), "{a_row:#}");
    assert_eq!(a_row["process_name"], "curl", "{a_row:#}");
    assert_eq!(a_row["user_name"], "root", "{a_row:#}");
    assert_eq!(
        a_row["destination_domain"],
        format!("a.{prov}"),
        "{a_row:#}"
    );
    assert_eq!(a_row["destination_ip"], "127.0.0.1", "{a_row:#}");
    assert_eq!(a_row["destination_port"], port, "{a_row:#}");
    // The bytes are those of A's flow end (E raised no alert: its volume is not counted).
    assert_eq!(
        a_row["bytes_sent"], a_end["source"]["bytes"],
        "{a_row:#} {a_end:#}"
    );
    assert_eq!(
        a_row["bytes_received"], a_end["destination"]["bytes"],
        "{a_row:#} {a_end:#}"
    );
    assert!(
        a_row["bytes_sent"].as_u64().is_some_and(|n| n > 0),
        "{a_row:#}"
    );

    let row_mine = |row: &Value| {
        row["destination_port"] == port
            && row["destination_domain"].as_str().is_some_and(|d| {
                d.ends_with(&format!(".{prov}")) || d.ends_with(&format!(".{relay}"))
            })
    };
    let rows = |args: &[&str]| -> Vec<String> {
        s.list("connections", &[&["--limit", "10000"], args].concat())
            .iter()
            .filter(|r| row_mine(r))
            .map(|r| r["destination_domain"].as_str().unwrap().to_owned())
            .collect()
    };
    let (ra, rb, rc) = (
        format!("a.{prov}"),
        format!("b.{relay}"),
        format!("c.{relay}"),
    );
    let (ra, rb, rc) = (ra.as_str(), rb.as_str(), rc.as_str());
    assert_eq!(rows(&[]), [rb, rc, ra], "by last seen, oldest first");
    assert_eq!(rows(&["--domain", "openai.com"]), [ra]);
    assert_eq!(rows(&["--domain", &relay]), [rb, rc]);
    assert_eq!(rows(&["--user", "nobody"]), [rc]);
    assert_eq!(rows(&["--process", "python3"]), [rb]);
    assert_eq!(
        rows(&["--since", &t2]),
        [ra],
        "a row is recent by its last_seen"
    );
    assert_eq!(
        rows(&["--until", &t1]),
        [rb, ra],
        "and old by its first_seen"
    );
    assert_eq!(
        rows(&["--pid", &a.to_string()]),
        Vec::<String>::new(),
        "pid: the row's last"
    );
    assert_eq!(rows(&["--pid", &e_text]), [ra], "positive control");
    let latest = s.list("connections", &["--domain", &relay, "--limit", "1"]);
    assert_eq!(latest.len(), 1, "{latest:#?}");
    assert_eq!(latest[0]["destination_domain"], rc, "the most recent");

    let out = s.cli(&["connections", "--domain", &prov]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        cells(lines[0]),
        [
            "LAST SEEN",
            "FIRST SEEN",
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
    let row = cells(lines[1]);
    assert_eq!(
        &row[2..8],
        [
            curl_exe.as_str(),
            &e_text,
            "root",
            ra,
            &port.to_string(),
            "2"
        ],
        "{text}"
    );
    assert!(row[8].ends_with('B') && row[9].ends_with('B'), "{text}");

    // Usage errors are caught by the CLI (exit 2) before asking the daemon.
    let out = s.cli(&["alerts", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("relaywatch: --since: 'yesterday' is neither"),
        "{}",
        stderr(&out)
    );
    let out = s.cli(&["connections", "--category", "ai-relay"]);
    assert_eq!(out.status.code(), Some(2), "connections take no --category");
}

#[test]
fn only_root_and_the_group_are_served() {
    let group = TestGroup::new();
    let s = Setup::start("peers", Some(&group), SOCKET);
    let gid = group.gid.to_string();
    let nobody = NOBODY.to_string();
    let as_nobody = ["--reuid", &nobody, "--regid", &nobody, "--clear-groups"];
    let as_primary = ["--reuid", &nobody, "--regid", &gid, "--clear-groups"];
    let as_supplementary = ["--reuid", &nobody, "--regid", &nobody, "--groups", &gid];

    let meta = std::fs::metadata(s.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(
        meta.gid(),
        group.gid,
        "the socket belongs to the configured group"
    );

    // Something to read: an alert of this test's curl.
    let server = Fixture::tls();
    let pid = curl_tls(&format!("p.{}", s.provider), server.port);
    let (alert, _) = s.alert_and_end(pid);
    let by_pid = ["alerts", "--json", "--pid", &pid.to_string()];

    // Root and members of the group (primary or supplementary) are served, and read the data.
    for (who, creds) in [
        ("primary group", &as_primary[..]),
        ("supplementary group", &as_supplementary[..]),
    ] {
        let out = s.cli_as(creds, &["status", "--json"]);
        assert!(out.status.success(), "{who}: {}", stderr(&out));
        let items = json_lines(&s.cli_as(creds, &by_pid));
        assert_eq!(items.len(), 2, "{who}: {items:#?}");
        assert_eq!(items[0], alert, "{who}");
    }
    assert_eq!(json_lines(&s.cli(&by_pid)).len(), 2, "root");

    // Others: the socket's mode already keeps them out.
    let out = s.cli_as(&as_nobody, &["status"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "relaywatch: permission denied connecting to {}: only root and members of group {} may query the agent\n",
            s.socket().display(),
            group.name
        )
    );
    assert!(out.stdout.is_empty());

    // Loosen the mode: the daemon's own peer-credential check still refuses, and logs it.
    std::fs::set_permissions(s.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let child = s
        .cli_as_command(&as_nobody, &by_pid)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "relaywatch: the daemon refused: permission denied: only root and members of group {} may use this API\n",
            group.name
        )
    );
    assert!(
        out.stdout.is_empty(),
        "no data for others: {}",
        stdout(&out)
    );
    poll(Instant::now() + WAIT, Duration::from_millis(20), || {
        let log = s.daemon.stderr();
        let want = format!(
            "api: refused uid {NOBODY} gid {NOBODY} pid {cli_pid} ({})",
            real_executable(&relaywatch_bin().to_string_lossy())
        );
        if log.contains(&want) {
            Ok(())
        } else {
            Err(format!("refusal not logged ({want}): {log}"))
        }
    });
    // curl as nobody gets the 403 with its JSON error; as a member, the alert.
    let curl_as = |creds: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(creds)
            .args([
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(s.socket())
            .arg(format!("http://localhost/v1/alerts?pid={pid}"));
        let out = without_proxies(&mut cmd).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let denied = curl_as(&as_nobody);
    assert_eq!(
        denied,
        format!(
            "{{\"error\":\"permission denied: only root and members of group {} may use this API\"}}\n\n403",
            group.name
        )
    );
    let served = curl_as(&as_supplementary);
    let (body, code) = served.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{served}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["alerts"][0], alert);
    std::fs::set_permissions(s.socket(), std::fs::Permissions::from_mode(0o660)).unwrap();

    // A member's follow stream is served too (and is the same as root's).
    let mut follower = Follower::spawn(s.cli_as_command(
        &as_supplementary,
        &["alerts", "--follow", "--json", "--pid", &pid.to_string()],
    ));
    let first = follower.next_matching(|v| v["process"]["pid"] == pid);
    assert_eq!(first, alert);
}

#[test]
fn unreachable_daemon_is_one_line_and_exit_3() {
    let commands: [&[&str]; 5] = [
        &["status"],
        &["alerts"],
        &["connections", "--json"],
        &["reload"],
        &["blocklist", "list"],
    ];
    let check = |socket: &Path, reason: &str| {
        for command in commands {
            let out = cli_at(socket, command);
            assert_eq!(out.status.code(), Some(3), "{command:?}: {}", stderr(&out));
            assert_eq!(
                stderr(&out),
                format!(
                    "relaywatch: cannot reach the daemon at {}: {reason} (is relaywatch running?)\n",
                    socket.display()
                ),
                "{command:?}"
            );
            assert!(out.stdout.is_empty(), "{command:?}");
        }
    };
    // Each daemon answers every command while it runs (the positive control).
    let answers = |s: &Setup| {
        for command in commands {
            let out = s.cli(command);
            assert!(
                out.status.success(),
                "{command:?} while running: {}",
                stderr(&out)
            );
        }
    };

    // Stopped cleanly: the socket is removed.
    let stopped = Setup::start("stopped", None, SOCKET);
    answers(&stopped);
    let socket = stopped.socket().to_owned();
    let (status, log) = stopped.daemon.stop();
    assert!(status.success(), "{log}");
    assert!(!socket.exists(), "the socket is removed on exit");
    check(&socket, "No such file or directory");

    // Killed: the socket file stays behind, and nothing listens on it.
    let killed = Setup::start("killed", None, SOCKET);
    answers(&killed);
    let socket = killed.socket().to_owned();
    let (status, _) = killed.daemon.stop_with(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(socket.exists(), "a killed daemon leaves its socket");
    check(&socket, "Connection refused");
}

#[test]
fn bad_requests_get_errors_and_the_server_stays_up() {
    let s = Setup::start("bad", None, SOCKET);
    // The positive control: a well-formed request on a raw connection is answered.
    let answer = s.raw(b"GET /v1/alerts?limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");
    assert!(answer.contains(r#"{"alerts":["#), "{answer}");

    let answer = s.raw(b"GARBAGE \x00\xff\r\n\r\n");
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{answer}");

    let get = |target: &str| {
        s.raw(format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
    };
    let answer = get("/v1/alerts?since=fortnight");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"since: 'fortnight' is neither"#),
        "{answer}"
    );
    let answer = get("/v1/alerts?limit=0");
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains(r#""error":"limit: "#),
        "{answer}"
    );
    let answer = get("/v1/alerts?bogus=1");
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains(r#""error":"bogus: unknown parameter"#),
        "{answer}"
    );
    let answer = get("/v1/connections?category=ai-relay");
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains(r#""error":"category: connections have no category"#),
        "{answer}"
    );
    let answer = get("/v1/alerts?pid=1&pid=2");
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("given more than once"),
        "{answer}"
    );

    let answer = get("/v2/everything");
    assert_eq!(status_line(&answer), "HTTP/1.1 404 Not Found", "{answer}");
    assert!(
        answer.contains(r#""error":"no such endpoint: /v2/everything"#),
        "{answer}"
    );
    let answer = s.raw(b"DELETE /v1/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 405 Method Not Allowed",
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("allow: get"),
        "{answer}"
    );
    let answer = s.raw(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 413 Payload Too Large",
        "{answer}"
    );
    let huge = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = s.raw(huge.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized head: {answer}"
    );
    // curl sees the same errors.
    let out = s.curl(&["-i", "http://localhost/v1/alerts?limit=zero"]);
    let answer = stdout(&out);
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains(r#""error":"limit: 'zero' is not a number"#),
        "{answer}"
    );

    // A client that connects and says nothing does not block others.
    let _silent = UnixStream::connect(s.socket()).unwrap();
    let out = s.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "the daemon still serves: {} / {}",
        stderr(&out),
        s.daemon.stderr()
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        !s.daemon.stderr().contains("panicked"),
        "{}",
        s.daemon.stderr()
    );
}

/// A streaming CLI (`--follow`), its stdout lines read on a thread; killed on drop.
struct Follower {
    _child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    /// Every line received so far.
    seen: Vec<String>,
}

impl Follower {
    fn spawn(mut cmd: Command) -> Follower {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the follower");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower {
            _child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line (within WAIT).
    fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no line within {WAIT:?} ({e}); so far: {:#?}", self.seen));
        self.seen.push(line.clone());
        line
    }

    /// Read until a line satisfies `want`; that line.
    fn next_line_with(&mut self, want: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.next_line();
            if want(&line) {
                return line;
            }
        }
    }

    /// Read JSON lines until one satisfies `want`; that item.
    fn next_matching(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let line =
            self.next_line_with(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| want(&v)));
        serde_json::from_str(&line).unwrap()
    }

    /// The JSON items received so far.
    fn items(&self) -> Vec<Value> {
        self.seen
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[test]
fn follow_streams_new_matching_items() {
    let group = TestGroup::new();
    let s = Setup::start("follow", Some(&group), SOCKET);
    let server = Fixture::tls();
    let (prov, relay) = (s.provider.clone(), s.relay.clone());
    let of = |pid: u32| move |v: &Value| v["process"]["pid"] == pid;

    // History: a relay alert stored before the follower starts.
    let h = curl_tls(&format!("h.{relay}"), server.port);
    let (h_alert, h_end) = s.alert_and_end(h);

    // A member of the socket's group follows relay alerts; root follows everything (the
    // positive control for what the filter leaves out).
    let member = [
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--groups",
        &group.gid.to_string(),
    ];
    // (The largest history: this test's items are in it whatever other tests do meanwhile.)
    let mut relays = Follower::spawn(s.cli_as_command(
        &member,
        &[
            "alerts",
            "--follow",
            "--json",
            "--limit",
            "10000",
            "--category",
            "ai-relay",
        ],
    ));
    let mut everything =
        Follower::spawn(s.cli_command(&["alerts", "--follow", "--json", "--limit", "10000"]));
    // History first: the follower has subscribed once it sends it.
    assert_eq!(relays.next_matching(of(h)), h_alert, "history first");
    assert_eq!(relays.next_matching(of(h)), h_end);
    everything.next_matching(of(h));
    everything.next_matching(of(h));

    // A provider alert (filtered out), then relay alerts R and S (streamed, in commit order).
    let p = curl_tls(&format!("p.{prov}"), server.port);
    let (p_alert, p_end) = s.alert_and_end(p);
    let r = curl_tls(&format!("r.{relay}"), server.port);
    let (r_alert, r_end) = s.alert_and_end(r);
    let s_pid = curl_tls(&format!("s.{relay}"), server.port);
    let (_, s_end) = s.alert_and_end(s_pid);
    assert_eq!(everything.next_matching(of(p)), p_alert, "positive control");
    assert_eq!(everything.next_matching(of(p)), p_end);
    assert_eq!(relays.next_matching(of(r)), r_alert);
    assert_eq!(relays.next_matching(of(r)), r_end);
    let last = relays.next_matching(|v| v["process"]["pid"] == s_pid && kind_of(v) == "end");
    assert_eq!(last, s_end);
    // Everything up to S's end has arrived: P was left out, nothing came twice.
    let items = relays.items();
    assert!(
        items.iter().all(|i| i["rule"]["category"] == "ai-relay"),
        "{items:#?}"
    );
    assert!(
        !items.iter().any(of(p)),
        "the provider alert is filtered out: {items:#?}"
    );
    for (pid, what) in [(h, "start"), (h, "end"), (r, "start"), (r, "end")] {
        let n = items
            .iter()
            .filter(|i| i["process"]["pid"] == pid && kind_of(i) == what)
            .count();
        assert_eq!(n, 1, "{pid} {what} once: {items:#?}");
    }

    // A table follower of connections: a header, then a row per update.
    let mut table = Follower::spawn(s.cli_command(&["connections", "--follow"]));
    let header = table.next_line();
    assert_eq!(
        cells(&header),
        [
            "LAST SEEN",
            "FIRST SEEN",
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
    let u = curl_tls(&format!("u.{prov}"), server.port);
    let row = table.next_line_with(|l| l.contains(&format!("u.{prov}")));
    let row = cells(&row);
    assert_eq!(
        &row[2..8],
        [
            real_executable("/usr/bin/curl").as_str(),
            &u.to_string(),
            "root",
            &format!("u.{prov}"),
            &server.port.to_string(),
            "1"
        ],
        "{row:?}"
    );

    drop((relays, everything, table));
    let out = s.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "the daemon survives followers going away: {}",
        stderr(&out)
    );
}
