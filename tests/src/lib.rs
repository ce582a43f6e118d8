//! Shared harness for relaywatch's integration tests and benchmarks.
//!
//! Everything here is real: `Daemon` runs the built `relaywatch` binary (which loads the real
//! eBPF programs into this kernel), clients are real programs (python3, curl, bash), and the
//! network peers are loopback listeners or test hosts in network namespaces that `TestNet`
//! creates and removes. Tests must run as root (`cargo xtask test`).
//!
//! Several daemons may run at once (the test harness runs tests in parallel): each one sees all
//! traffic, so every assertion selects records by the pid of the client its test spawned.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod schema;

/// ECS 9.4.0 as carried in `tests/schemas/`, with relaywatch's own namespace allowed; loaded once.
pub fn ecs_schema() -> &'static schema::Ecs {
    static ECS: std::sync::OnceLock<schema::Ecs> = std::sync::OnceLock::new();
    ECS.get_or_init(|| {
        schema::Ecs::load(&schemas_dir().join("ecs_flat-9.4.0.yml"))
            .expect("the carried ECS schema loads")
            .with_custom_namespaces(&["relaywatch"])
    })
}

/// OCSF 1.8.0 as carried in `tests/schemas/`; loaded once.
pub fn ocsf_schema() -> &'static schema::Ocsf {
    static OCSF: std::sync::OnceLock<schema::Ocsf> = std::sync::OnceLock::new();
    OCSF.get_or_init(|| {
        schema::Ocsf::load(&schemas_dir().join("ocsf-1.8.0"))
            .expect("the carried OCSF schema loads")
    })
}

/// The schema files the tests carry.
pub fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// The `relaywatch` binary under test: $RELAYWATCH_BIN (set by `cargo xtask test`), else the
/// workspace's debug build.
pub fn relaywatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RELAYWATCH_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/relaywatch");
    assert!(
        p.is_file(),
        "{} missing: run the suite with `cargo xtask test`",
        p.display()
    );
    p
}

/// The test suite's `relaywatch-diag` binary (store soak, sink send): built
/// beside the test executables by `cargo test`.
pub fn diag_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/TEST-HASH -> target/debug/relaywatch-diag
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .join("relaywatch-diag");
    assert!(
        p.is_file(),
        "{} missing: run the suite with `cargo xtask test`",
        p.display()
    );
    p
}

/// Record that the calling test cannot run its scenario, and why; the test then returns. libtest
/// has no skipped state, so the line goes to `$RELAYWATCH_SKIP_LOG` (set by `cargo xtask test`,
/// which counts and lists skips and fails the run on any: setup installs every prerequisite) and
/// to stderr.
pub fn skip(reason: &str) {
    use std::io::Write as _;
    let name = thread::current().name().unwrap_or("?").to_owned();
    eprintln!("SKIPPED {name}: {reason}");
    if let Some(log) = std::env::var_os("RELAYWATCH_SKIP_LOG") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the skip log");
        // One write per line: appends from parallel test binaries do not interleave.
        f.write_all(format!("{name}: {reason}\n").as_bytes())
            .expect("write the skip log");
    }
}

/// Proxy variables a client would obey: cleared for every process the tests start, so a
/// developer's proxy never carries test traffic off the machine or hides it from the daemon.
pub const PROXY_VARIABLES: [&str; 10] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "ftp_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
];

/// `cmd` without any proxy variable in its environment.
pub fn without_proxies(cmd: &mut Command) -> &mut Command {
    for var in PROXY_VARIABLES {
        cmd.env_remove(var);
    }
    cmd
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "integration tests load eBPF programs: run as root (`cargo xtask test`)"
    );
}

/// Where test daemons resolve blocklist names: a closed loopback port, so that no query for a
/// listed name ever reaches the machine's resolver.
pub const NO_NAMESERVER: &str = "127.0.0.1:1";

/// A running `relaywatch run` with its stdout records collected.
pub struct Daemon {
    child: Child,
    /// This daemon's own state directory and control socket (so tests can run side by side).
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    records: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr (joined by `stop_collecting`).
    readers: Vec<thread::JoinHandle<()>>,
}

impl Daemon {
    /// Start `relaywatch run ARGS` and wait until its programs are attached.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::spawn(&[], args, true)
    }

    /// Like `start`, with the state directory of an earlier daemon (a restart).
    pub fn start_with_state(state_dir: &Path, args: &[&str]) -> Daemon {
        Daemon::spawn_in(&[], args, true, Some(state_dir))
    }

    /// Like `start`, but records are read and thrown away (benchmarks: no memory growth).
    pub fn start_discarding_records(args: &[&str]) -> Daemon {
        Daemon::spawn(&[], args, false)
    }

    /// `start_discarding_records` under a wrapper (`taskset -c 0`, say).
    pub fn start_under_discarding_records(wrapper: &[&str], args: &[&str]) -> Daemon {
        Daemon::spawn(wrapper, args, false)
    }

    /// Like `start`, under a wrapper that execs its last argument (`setpriv ... --`), so the
    /// pid is still the daemon's.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Daemon {
        Daemon::spawn(wrapper, args, true)
    }

    fn spawn(wrapper: &[&str], args: &[&str], keep_records: bool) -> Daemon {
        Daemon::spawn_in(wrapper, args, keep_records, None)
    }

    fn spawn_in(
        wrapper: &[&str],
        args: &[&str],
        keep_records: bool,
        state_dir: Option<&Path>,
    ) -> Daemon {
        require_root();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = fresh_dir(&format!("test-{n}"));
        let state_dir = state_dir.map_or_else(|| dir.join("state"), Path::to_path_buf);
        // A test may place the socket itself (`--socket PATH` in ARGS); its own directory else.
        let own_socket = !args.contains(&"--socket");
        let socket = args
            .iter()
            .position(|a| *a == "--socket")
            .and_then(|i| args.get(i + 1))
            .map_or_else(|| dir.join("relaywatch.sock"), PathBuf::from);
        // Never the host's /etc/relaywatch/config.toml: its sinks or feeds would receive test
        // alerts or be fetched. A test that needs settings passes its own file.
        let own_config = if args.contains(&"--config") {
            None
        } else {
            let path = dir.join("config.toml");
            std::fs::write(&path, "# test daemon: built-in defaults\n").expect("write config");
            Some(path)
        };
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(relaywatch_bin());
                c
            }
            None => Command::new(relaywatch_bin()),
        };
        let mut child = without_proxies(&mut command)
            .arg("run")
            .arg("--state-dir")
            .arg(&state_dir)
            .args(
                own_socket
                    .then(|| [Path::new("--socket"), socket.as_path()])
                    .into_iter()
                    .flatten(),
            )
            // Blocklist names are resolved only through loopback (here: a closed port, unless
            // the test passes its own loopback DNS server), never through the machine's
            // resolver.
            .args(
                (!args.contains(&"--nameserver"))
                    .then_some(["--nameserver", NO_NAMESERVER])
                    .into_iter()
                    .flatten(),
            )
            .args(own_config.iter().flat_map(|c| [Path::new("--config"), c.as_path()]))
            .args(args)
            .stdin(Stdio::null())
            // Benchmarks: records go straight to /dev/null. A reader thread here would inherit the
            // benchmark's CPU pinning and charge every record's pipe wake-up to the workload.
            .stdout(if keep_records { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relaywatch");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = records.clone();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("relaywatch wrote a line that is not JSON ({e}): {line}")
                    });
                    sink.lock().unwrap().push(v);
                }
            }));
        }
        let err = child.stderr.take().unwrap();
        let log = stderr.clone();
        readers.push(thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }));
        let mut daemon = Daemon {
            child,
            state_dir,
            socket,
            records,
            stderr,
            readers,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon.stderr().contains("attached") {
            if Instant::now() > deadline {
                panic!(
                    "relaywatch did not attach within 30 s; stderr:\n{}",
                    daemon.stderr()
                );
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "relaywatch exited early ({status}); stderr:\n{}",
                    daemon.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the daemon so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// CPU time (user + system, in clock ticks) the daemon has used so far.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let mut fields = stat[stat.rfind(')')? + 2..].split_ascii_whitespace();
        // After the comm: state is field 3; utime and stime are fields 14 and 15.
        let utime: u64 = fields.nth(11)?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(utime + stime)
    }

    /// Wait until the daemon's start-up work (the first resolution round of the lists' names,
    /// the scan of running processes) is over: no more than one clock tick of CPU in a second,
    /// or `limit`. Returns the ticks used until then.
    pub fn wait_idle(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        let mut last = self.cpu_ticks().unwrap_or(0);
        loop {
            thread::sleep(Duration::from_secs(1));
            let now = self.cpu_ticks().unwrap_or(last);
            if now.saturating_sub(last) <= 1 || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Connection records (`event.kind: "event"`) so far whose `process.pid` is `pid`.
    pub fn records_for(&self, pid: u32) -> Vec<Value> {
        self.everything_for(pid)
            .into_iter()
            .filter(|r| r["event"]["kind"] == "event")
            .collect()
    }

    /// Every line written so far, whatever its format.
    pub fn all_lines(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    /// Every line so far (connection records and alerts) whose `process.pid` is `pid`.
    pub fn everything_for(&self, pid: u32) -> Vec<Value> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["process"]["pid"] == pid)
            .cloned()
            .collect()
    }

    /// Wait (up to `timeout`) until at least `n` connection records for `pid` arrived; return
    /// them all.
    pub fn wait_records(&self, pid: u32, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_matching(pid, n, timeout, |r| r["event"]["kind"] == "event")
    }

    /// Wait (up to `timeout`) until at least `n` lines for `pid` satisfy `keep`; return those
    /// (fewer when the time is up).
    pub fn wait_matching(
        &self,
        pid: u32,
        n: usize,
        timeout: Duration,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self
                .everything_for(pid)
                .into_iter()
                .filter(|r| keep(r))
                .collect();
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `relaywatch ARGS --socket SOCKET`: the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(relaywatch_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run relaywatch")
    }

    /// Send `signal` and wait for the exit; returns the status and the whole stderr.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        let status = self.signal_and_wait(signal);
        // Let the reader threads see EOF.
        thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
    }

    /// Send `signal`, wait for the exit and for the daemon's stdout and stderr to be read to
    /// their end; returns the status, the whole stderr and every line written to stdout
    /// (records written on the way out included).
    pub fn stop_collecting(mut self, signal: i32) -> (ExitStatus, String, Vec<Value>) {
        let status = self.signal_and_wait(signal);
        for reader in std::mem::take(&mut self.readers) {
            reader.join().expect("a reader thread panicked");
        }
        (status, self.stderr(), self.all_lines())
    }

    fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait relaywatch") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "relaywatch did not exit within 20 s of signal {signal}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `relaywatch status --json` against this daemon, parsed (asserting it answered).
    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "relaywatch status failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    pub fn stop(self) -> (ExitStatus, String) {
        self.stop_with(libc::SIGTERM)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP listener on loopback that accepts and closes connections in the background, and
/// answers anything that looks like an HTTP request with a small 200 response (enough for curl).
pub struct LoopbackServer {
    pub port: u16,
}

impl LoopbackServer {
    pub fn start(addr: &str) -> LoopbackServer {
        let listener = TcpListener::bind((addr, 0)).expect("bind loopback listener");
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
                    let mut buf = [0u8; 4096];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    if n > 0 && buf[0].is_ascii_uppercase() {
                        use std::io::Write as _;
                        let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
                    }
                });
            }
        });
        LoopbackServer { port }
    }
}

/// Run a client to completion and return its pid (asserting it succeeded).
pub fn run_client(cmd: &mut Command) -> u32 {
    let child = without_proxies(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait client");
    assert!(
        out.status.success(),
        "client {cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

/// Debian's python3 (not a pyenv shim, whose pid would be a shell's).
pub const PYTHON: &str = "/usr/bin/python3";

/// The path /proc/PID/exe shows for a program started as `path`.
pub fn real_executable(path: &str) -> String {
    std::fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A test host in its own network namespace, reached over a veth pair: the only non-loopback
/// peer tests may talk to. Removed on drop.
pub struct TestNet {
    pub ns: String,
    host_if: String,
    /// Address of the test host (inside the namespace).
    pub peer_v4: String,
    pub peer_v6: String,
}

impl TestNet {
    /// `index` (0..=250) keeps concurrently running tests on separate subnets.
    pub fn create(index: u8) -> TestNet {
        // A run that was killed (no Drop) leaves its veth with this subnet behind: the new
        // route would lose to it. Remove it first.
        let stale = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for line in stale
            .lines()
            .filter(|l| l.contains(&format!(" 10.231.{index}.1/24 ")))
        {
            if let Some(dev) = line.split_whitespace().nth(1) {
                let _ = Command::new("ip").args(["link", "del", dev]).output();
            }
        }
        let tag = format!("{}{}", std::process::id() % 10_000, index);
        let ns = format!("rwtest{tag}");
        let host_if = format!("rwh{tag}");
        let peer_if = format!("rwp{tag}");
        let net = TestNet {
            ns: ns.clone(),
            host_if: host_if.clone(),
            peer_v4: format!("10.231.{index}.2"),
            peer_v6: format!("fd00:231:{index}::2"),
        };
        let cmds: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                peer_if.clone(),
                "netns".into(),
                ns.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("10.231.{index}.1/24"),
                "dev".into(),
                host_if.clone(),
            ],
            vec![
                "-6".into(),
                "addr".into(),
                "add".into(),
                format!("fd00:231:{index}::1/64"),
                "dev".into(),
                host_if.clone(),
                "nodad".into(),
            ],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                ns.clone(),
                "addr".into(),
                "add".into(),
                format!("10.231.{index}.2/24"),
                "dev".into(),
                peer_if.clone(),
            ],
            vec![
                "-n".into(),
                ns.clone(),
                "-6".into(),
                "addr".into(),
                "add".into(),
                format!("fd00:231:{index}::2/64"),
                "dev".into(),
                peer_if.clone(),
                "nodad".into(),
            ],
            vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                peer_if.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for args in cmds {
            output_ok(Command::new("ip").args(&args));
        }
        net
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A loopback peer from `fixtures/servers.py` (TLS server, CONNECT or SOCKS5 proxy, sink).
/// Killed on drop.
pub struct Fixture {
    _child: KillOnDrop,
    pub port: u16,
}

impl Fixture {
    pub fn start(args: &[&str]) -> Fixture {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/servers.py");
        let (child, line) = spawn_announcing(
            Command::new(PYTHON)
                .arg(script)
                .args(args)
                .stderr(Stdio::inherit()),
        );
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("fixture {args:?} printed {line:?}"));
        Fixture {
            _child: child,
            port,
        }
    }

    /// A TLS server with a throwaway certificate for `api.openai.com` and friends.
    pub fn tls() -> Fixture {
        let (cert, key) = test_certificate();
        Fixture::start(&["tls", &cert, &key])
    }
}

/// A self-signed certificate (made once per test process with the openssl CLI).
pub fn test_certificate() -> (String, String) {
    static CERT: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let dir = fresh_dir("test-cert");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        output_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "1",
                ])
                .args([
                    "-subj",
                    "/CN=relaywatch-test",
                    "-addext",
                    "subjectAltName=DNS:api.openai.com,DNS:api.anthropic.com",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        (
            cert.to_string_lossy().into_owned(),
            key.to_string_lossy().into_owned(),
        )
    })
    .clone()
}

/// The test virtualenv's python (aioquic), made by `cargo xtask setup --tests`.
pub fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing: run `cargo xtask setup --tests`",
        p.display()
    );
    p
}

/// Run a client that may fail (a TLS client against a peer that is not a TLS server, say);
/// returns its pid.
pub fn run_client_any_exit(cmd: &mut Command) -> u32 {
    let child = without_proxies(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    let _ = child.wait_with_output();
    pid
}

/// A loopback address no other test uses (lo answers for all of 127.0.0.0/8): 127.53.X.Y from
/// this process's pid and a counter, so servers that must listen on a fixed port (DNS on 53) do
/// not collide with other tests; a server that still finds its address taken tries the next.
pub fn unique_loopback_ip() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let v = (std::process::id().wrapping_mul(97).wrapping_add(n)) % (250 * 250);
    format!("127.53.{}.{}", v / 250 + 1, v % 250 + 1)
}

/// dnsmasq answering from a fixed table (`--address=/name/ip`), never forwarding, on port 53 of
/// an address of its own (`unique_loopback_ip`), with a 300 s TTL (`start`) or the TTL a test
/// needs (`start_with_ttl`).
pub struct DnsServer {
    _child: KillOnDrop,
    pub ip: String,
    pub port: u16,
}

impl DnsServer {
    pub fn start(records: &[(&str, &str)]) -> DnsServer {
        DnsServer::start_with_ttl(300, records)
    }

    pub fn start_with_ttl(ttl: u32, records: &[(&str, &str)]) -> DnsServer {
        for _ in 0..10 {
            if let Some(server) = DnsServer::try_start(unique_loopback_ip(), 53, ttl, records) {
                return server;
            }
        }
        panic!("dnsmasq could not listen on any of 10 loopback addresses");
    }

    /// `IP:PORT`, for `--nameserver`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// dnsmasq on ip:port, once it answers; `None` if it exits first (the address is taken).
    fn try_start(ip: String, port: u16, ttl: u32, records: &[(&str, &str)]) -> Option<DnsServer> {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
        ])
        .arg(format!("--listen-address={ip}"))
        .arg(format!("--port={port}"))
        .args(["--pid-file=", "--user=root", "--log-facility=-"])
        .arg(format!("--local-ttl={ttl}"))
        .arg("--cache-size=0");
        for (name, ip) in records {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        let mut child = KillOnDrop(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq (cargo xtask setup --tests installs dnsmasq-base)"),
        );
        // Ready when it answers a query.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.0.try_wait() {
                return None;
            }
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            // A query for "ready.invalid" (type A): dnsmasq answers NXDOMAIN or REFUSED.
            let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x07invalid\x00\x00\x01\x00\x01";
            let _ = sock.send_to(q, (ip.as_str(), port));
            let mut buf = [0u8; 512];
            if sock.recv(&mut buf).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not answer on {ip}:{port}"
            );
        }
        Some(DnsServer {
            _child: child,
            ip,
            port,
        })
    }
}

/// Wait (bounded) until `done` holds.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A private rsyslogd in the foreground: its own config, pid file and work directory; no
/// local inputs (imuxsock, imklog are not loaded), nothing under /var/log.
pub struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Rsyslog {
    /// `inputs`: rsyslog config lines defining inputs bound to rulesets that write files.
    pub fn start(dir: &Path, globals: &str, inputs: &str, tcp_ready_port: u16) -> Rsyslog {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\" {globals})\n\
                 template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n{inputs}\n",
                work = work.display()
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rsyslogd (apt package rsyslog; `cargo xtask setup` installs it)");
        let mut r = Rsyslog {
            child,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", tcp_ready_port)).is_err() {
            if let Some(status) = r.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = r.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("rsyslogd exited ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {tcp_ready_port}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn lines(&self, file: &str, n: usize) -> Vec<String> {
        let path = self.dir.join(file);
        let mut lines = Vec::new();
        wait_until(
            &format!("{n} lines in {}", path.display()),
            Duration::from_secs(20),
            || {
                lines = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                lines.len() >= n
            },
        );
        lines
    }

    /// The first line of `file` that contains `needle` (the test's own unique name or pid:
    /// other tests' daemons write to their own collectors, but a daemon sees every test's
    /// traffic), waiting for it.
    pub fn line_containing(&self, file: &str, needle: &str) -> String {
        let path = self.dir.join(file);
        let mut found = None;
        wait_until(
            &format!("a line with {needle} in {}", path.display()),
            Duration::from_secs(20),
            || {
                found = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_owned);
                found.is_some()
            },
        );
        found.expect("waited for it")
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = wait_output_quiet(&mut self.child);
    }
}

fn wait_output_quiet(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// A fresh, empty directory `relaywatch-TAG-PID` under the system temp dir (whatever an earlier
/// run left there is removed first). It stays after the test: see `TempDir` for one that goes.
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relaywatch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `fresh_dir` for one test, removed on drop when the test passed (kept for a look when it
/// failed).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(fresh_dir(tag))
    }

    /// Write `text` to the file `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A loopback port for a server the test starts later (rsyslogd, a metrics listener), which
/// nothing else will take in between: it lies below the kernel's ephemeral range (so no client's
/// connect is given it), comes from this process's own sequence (so tests in parallel, in this
/// binary or another, pick different ones), and is free for TCP and UDP when handed out.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let (low, high) = ephemeral_range();
    // Ports 10000 up to the ephemeral range, spread by pid.
    let span = low.saturating_sub(10_000).max(1000);
    let start = std::process::id().wrapping_mul(7919) % span;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < span, "no free port left below {low}");
        let port = 10_000 + (start + n * 13) % span;
        let port = u16::try_from(port).expect("below 65536");
        if (u32::from(port) < low || u32::from(port) > high)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`).
fn ephemeral_range() -> (u32, u32) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|v| v.parse().ok());
    match (it.next(), it.next()) {
        (Some(low), Some(high)) => (low, high),
        _ => (32_768, 60_999),
    }
}

/// Poll until `attempt` succeeds (every `every`) and return its value; an attempt that fails
/// after `deadline` fails the test with the attempt's own message.
pub fn poll<T>(
    deadline: Instant,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        thread::sleep(every);
    }
}

/// Run `cmd` to completion, asserting that it succeeded; its output.
pub fn output_ok(cmd: &mut Command) -> std::process::Output {
    let out = without_proxies(cmd)
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Lossy UTF-8 text of a program's output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `curl -sS [-k] --max-time 5 -o /dev/null --resolve NAME:PORT:127.0.0.1`, so that a URL naming
/// NAME:PORT reaches a loopback server with the real name on the wire (Host header, SNI); `-k`
/// when `tls` (loopback servers have throwaway certificates). The caller adds the URL.
pub fn curl_resolving(name: &str, port: u16, tls: bool) -> Command {
    let mut cmd = Command::new("curl");
    cmd.arg("-sS");
    if tls {
        cmd.arg("-k");
    }
    cmd.args(["--max-time", "5", "-o", "/dev/null", "--resolve"])
        .arg(format!("{name}:{port}:127.0.0.1"));
    cmd
}

/// curl to `https://NAME:PORT/PATH` on a loopback TLS server (see `curl_resolving`); returns
/// curl's pid.
pub fn curl_tls(name: &str, port: u16, path: &str) -> u32 {
    run_client(curl_resolving(name, port, true).arg(format!("https://{name}:{port}{path}")))
}

/// The key of a certificate `openssl_ca` makes.
#[derive(Clone, Copy)]
pub enum KeyType {
    EcP256,
    Rsa2048,
}

impl KeyType {
    fn newkey(self) -> &'static [&'static str] {
        match self {
            KeyType::EcP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyType::Rsa2048 => &["-newkey", "rsa:2048"],
        }
    }
}

/// `openssl ARGS` in `dir`, asserting success.
pub fn openssl(dir: &Path, args: &[&str]) {
    output_ok(Command::new("openssl").args(args).current_dir(dir));
}

/// A throwaway CA (`ca.pem`, `ca.key`) in `dir` and a certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`): clients that refuse a self-signed leaf (webpki) trust the CA.
pub fn openssl_ca(dir: &Path, key: KeyType) {
    signed_server_cert(
        dir,
        key,
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
}

/// A throwaway CA (`ca.pem`, `ca.key`) and a server certificate it signed (`server.pem`,
/// `server.key`) with the extensions in `ext` (an openssl extfile), in `dir`.
fn signed_server_cert(dir: &Path, key: KeyType, subject: &str, ext: &str) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            key.newkey(),
            &["-nodes", "-keyout", "ca.key", "-out", "ca.pem"],
            &days,
            &["-subj", "/CN=relaywatch test CA"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            key.newkey(),
            &["-nodes", "-keyout", "server.key", "-out", "server.csr"],
            &["-subj", subject],
        ]
        .concat(),
    );
    std::fs::write(dir.join("ext.cnf"), ext).unwrap();
    openssl(
        dir,
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
            ][..],
            &days,
            &["-extfile", "ext.cnf"],
        ]
        .concat(),
    );
}

/// A child process, killed and reaped on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` with its stdout piped and read the first line it prints (a server saying it is
/// ready, or its port); the rest of its stdout is not read.
pub fn spawn_announcing(cmd: &mut Command) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("the first line of {cmd:?}: {e}"));
    (child, line)
}

/// A throwaway CA and a server certificate it signed for `names` (`ca.pem`, `server.pem`,
/// `server.key` in `dir`).
pub fn ca_and_server_cert(dir: &Path, names: &[&str]) {
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    signed_server_cert(
        dir,
        KeyType::EcP256,
        "/CN=relaywatch test host",
        &format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid:always\n",
            san.join(",")
        ),
    );
}

/// A server started inside the test host's namespace, killed on drop (before the namespace
/// goes: declare it after the `TestNet`).
pub fn serve_in(net: &TestNet, dir: &Path, port: u16, program: &[&str]) -> KillOnDrop {
    let child = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &net.ns])
            .args(program)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a server in the test namespace"),
    );
    // Ready when it listens (asked inside the namespace: no probe connection the daemon sees).
    wait_until(
        &format!("a listener on port {port} in {}", net.ns),
        Duration::from_secs(15),
        || {
            let out = Command::new("ip")
                .args(["netns", "exec", &net.ns, "ss", "-Hltn"])
                .arg(format!("sport = :{port}"))
                .output()
                .expect("ss");
            !out.stdout.is_empty()
        },
    );
    child
}

/// `curl` reaching `name:port` at `ip` (the test host), verifying the test CA (`ca`) for https.
pub fn curl_to(name: &str, port: u16, ip: &str, url: &str, ca: Option<&Path>) -> Command {
    let ip = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "10", "-o", "/dev/null"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.arg("--resolve")
        .arg(format!("{name}:{port}:{ip}"))
        .arg(url);
    cmd
}
