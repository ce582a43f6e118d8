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
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The `relaywatch` binary under test: $RELAYWATCH_BIN (set by `cargo xtask test`), else the
/// workspace's debug build.
pub fn relaywatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RELAYWATCH_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/relaywatch");
    assert!(p.is_file(), "{} missing: run the suite with `cargo xtask test`", p.display());
    p
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "integration tests load eBPF programs: run as root (`cargo xtask test`)");
}

/// A running `relaywatch run` with its stdout records collected.
pub struct Daemon {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Start `relaywatch run ARGS` and wait until its programs are attached.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::spawn(&[], args, true)
    }

    /// Like `start`, but records are read and thrown away (benchmarks: no memory growth).
    pub fn start_discarding_records(args: &[&str]) -> Daemon {
        Daemon::spawn(&[], args, false)
    }

    /// Like `start`, under a wrapper that execs its last argument (`setpriv ... --`), so the
    /// pid is still the daemon's.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Daemon {
        Daemon::spawn(wrapper, args, true)
    }

    fn spawn(wrapper: &[&str], args: &[&str], keep_records: bool) -> Daemon {
        require_root();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(relaywatch_bin());
                c
            }
            None => Command::new(relaywatch_bin()),
        };
        let mut child = command
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relaywatch");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = records.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("relaywatch wrote a line that is not JSON ({e}): {line}"));
                if keep_records {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let log = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut daemon = Daemon { child, records, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon.stderr().contains("attached") {
            if Instant::now() > deadline {
                panic!("relaywatch did not attach within 30 s; stderr:\n{}", daemon.stderr());
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("relaywatch exited early ({status}); stderr:\n{}", daemon.stderr());
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
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Records so far whose `process.pid` is `pid`.
    pub fn records_for(&self, pid: u32) -> Vec<Value> {
        self.records.lock().unwrap().iter().filter(|r| r["process"]["pid"] == pid).cloned().collect()
    }

    /// Wait (up to `timeout`) until at least `n` records for `pid` arrived; return them all.
    pub fn wait_records(&self, pid: u32, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.records_for(pid);
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `signal` and wait for the exit; returns the status and the whole stderr.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait relaywatch") {
                break s;
            }
            assert!(Instant::now() < deadline, "relaywatch did not exit within 20 s of signal {signal}");
            thread::sleep(Duration::from_millis(20));
        };
        // Let the reader threads see EOF.
        thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
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
/// answers HTTP requests with a small 200 response (enough for curl).
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
                    if buf[..n].starts_with(b"GET ") || buf[..n].starts_with(b"HEAD ") {
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
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn client");
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
    std::fs::canonicalize(path).unwrap().to_string_lossy().into_owned()
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
            vec!["link".into(), "add".into(), host_if.clone(), "type".into(), "veth".into(), "peer".into(), "name".into(), peer_if.clone(), "netns".into(), ns.clone()],
            vec!["addr".into(), "add".into(), format!("10.231.{index}.1/24"), "dev".into(), host_if.clone()],
            vec!["-6".into(), "addr".into(), "add".into(), format!("fd00:231:{index}::1/64"), "dev".into(), host_if.clone(), "nodad".into()],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec!["-n".into(), ns.clone(), "addr".into(), "add".into(), format!("10.231.{index}.2/24"), "dev".into(), peer_if.clone()],
            vec!["-n".into(), ns.clone(), "-6".into(), "addr".into(), "add".into(), format!("fd00:231:{index}::2/64"), "dev".into(), peer_if.clone(), "nodad".into()],
            vec!["-n".into(), ns.clone(), "link".into(), "set".into(), peer_if.clone(), "up".into()],
            vec!["-n".into(), ns.clone(), "link".into(), "set".into(), "lo".into(), "up".into()],
        ];
        for args in cmds {
            let out = Command::new("ip").args(&args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        net
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
