//! Start-up, shutdown and refusal: what is attached while running, that nothing of ours stays
//! attached after SIGTERM/SIGINT, and one-line errors when the host lacks what the agent needs.
use std::{
    io::Read as _,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, KillOnDrop, NO_NAMESERVER, TempDir, curl_resolving, output_ok, poll, relaywatch_bin,
    require_root, run_client,
};
use serde_json::Value;

fn bpftool_json(args: &[&str]) -> Value {
    // (cargo xtask setup --tests installs bpftool)
    let out = output_ok(Command::new("bpftool").arg("-j").args(args));
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Array(Vec::new()); // `cgroup show` prints nothing when nothing is attached
    }
    serde_json::from_slice(&out.stdout).expect("bpftool JSON")
}

/// Ids and names of the eBPF programs that process `pid` holds open, from the kernel's
/// /proc/PID/fdinfo (prog and link fds carry `prog_id:`), named by bpftool.
fn programs_of(pid: u32) -> Vec<(u64, String)> {
    let mut ids: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    let progs = bpftool_json(&["prog", "show"]);
    ids.into_iter()
        .map(|id| {
            let p = progs
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == id)
                .expect("program listed by bpftool");
            (id, p["name"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn all_program_ids() -> Vec<u64> {
    bpftool_json(&["prog", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

fn cgroup2_root() -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_owned())
        })
        .expect("cgroup2 mounted")
}

fn cgroup_attached_ids(cgroup: &str) -> Vec<u64> {
    bpftool_json(&["cgroup", "show", cgroup])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect()
}

fn shutdown_leaves_nothing_attached(signal: i32) {
    let daemon = Daemon::start(&[]);
    let progs = programs_of(daemon.pid());
    let mut names: Vec<&str> = progs.iter().map(|(_, n)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "relaywatch_connect4",
            "relaywatch_connect6",
            "relaywatch_egress",
            "relaywatch_exec",
            "relaywatch_exit",
            "relaywatch_ingress",
            "relaywatch_release",
            "relaywatch_sendmsg4",
            "relaywatch_sendmsg6"
        ],
        "{progs:?}"
    );
    // Tracepoints (and TLS uprobes, `[discovery] api_requests`, off by default) hang off
    // perf_event links; the rest off the cgroup.
    let on_perf_event =
        |n: &str| n.ends_with("_exec") || n.ends_with("_exit") || n.contains("_tls_");
    let cgroup = cgroup2_root();
    let attached = cgroup_attached_ids(&cgroup);
    for (id, name) in progs.iter().filter(|(_, n)| !on_perf_event(n)) {
        assert!(
            attached.contains(id),
            "{name} ({id}) not attached to {cgroup}: {attached:?}"
        );
    }
    let links = bpftool_json(&["link", "show"]);
    for (id, name) in progs
        .iter()
        .filter(|(_, n)| on_perf_event(n) && !n.contains("_go_"))
    {
        assert!(
            links
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["prog_id"] == *id && l["type"] == "perf_event"),
            "{name} ({id}) has no perf_event link: {links}"
        );
    }

    let (status, stderr) = daemon.stop_with(signal);
    assert!(
        status.success(),
        "exit status {status} after signal {signal}; stderr:\n{stderr}"
    );
    assert!(stderr.contains("detached"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let remaining = all_program_ids();
    let links = bpftool_json(&["link", "show"]);
    for (id, name) in &progs {
        assert!(
            !links
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["prog_id"] == *id),
            "{name} ({id}) still has a link after exit"
        );
    }
    let attached = cgroup_attached_ids(&cgroup);
    for (id, name) in &progs {
        assert!(
            !remaining.contains(id),
            "{name} ({id}) still loaded after exit"
        );
        assert!(
            !attached.contains(id),
            "{name} ({id}) still attached to {cgroup} after exit"
        );
    }
}

#[test]
fn sigterm_detaches_everything() {
    shutdown_leaves_nothing_attached(libc::SIGTERM);
}

#[test]
fn sigint_detaches_everything() {
    shutdown_leaves_nothing_attached(libc::SIGINT);
}

/// How long a `relaywatch run` the test expects to refuse (or to stop) may take before it is
/// killed and the test fails: a bound on a hang, not a measure of speed.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// `relaywatch run`'s own paths for a daemon a test starts itself (not through `Daemon`): a
/// config file, state directory and control socket in `dir` (never the host's /etc/relaywatch
/// or /run/relaywatch), and names resolved only through a closed loopback port.
fn own_paths(dir: &Path) -> Vec<String> {
    let config = dir.join("config.toml");
    std::fs::write(&config, "# test daemon: built-in defaults\n").unwrap();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--config".into(),
        path(&config),
        "--state-dir".into(),
        path(&dir.join("state")),
        "--socket".into(),
        path(&dir.join("relaywatch.sock")),
        "--nameserver".into(),
        NO_NAMESERVER.into(),
    ]
}

/// Wait for `child` until `limit`; past it, kill it and return `None`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run `cmd` (stdout discarded, stderr collected) and wait for it at most `EXIT_LIMIT` (killed
/// past it, failing the test); returns (status, stderr).
fn run_bounded(cmd: &mut Command) -> (ExitStatus, String) {
    // In a process group of its own, so that a hang is ended with whatever the wrapper's shell
    // started (which would otherwise hold stderr open).
    let mut child = KillOnDrop(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    );
    // Read in the background: a child that writes more than a pipe holds is not blocked.
    let mut err = child.0.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let status = wait_bounded(&mut child.0, EXIT_LIMIT);
    if status.is_none() {
        // SAFETY: kill(2) on the process group our own child leads.
        unsafe { libc::kill(-(child.0.id() as i32), libc::SIGKILL) };
    }
    let stderr = reader.join().expect("stderr reader");
    let status = status.unwrap_or_else(|| {
        panic!("{cmd:?} still ran after {EXIT_LIMIT:?} (killed); stderr:\n{stderr}")
    });
    (status, stderr)
}

/// Run `relaywatch run` through `WRAPPER` (which ends in `sh -c 'SCRIPT; exec "$RW_BIN" run
/// "$@"' sh`: the daemon gets its own config file, state directory and socket in a temporary
/// directory), bounded in time; returns (success, stderr).
fn run_refused(tag: &str, wrapper: &[&str]) -> (bool, String) {
    require_root();
    let dir = TempDir::new(&format!("lifecycle-{tag}"));
    let (status, stderr) = run_bounded(
        Command::new(wrapper[0])
            .args(&wrapper[1..])
            .args(own_paths(&dir))
            .env("RW_BIN", relaywatch_bin()),
    );
    (status.success(), stderr)
}

fn assert_one_line_error(stderr: &str, expected: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(lines[0].starts_with("relaywatch: "), "{stderr}");
    assert!(
        lines[0].contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    for forbidden in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(forbidden), "{stderr}");
    }
}

#[test]
fn unprivileged_user_gets_one_line_naming_the_capabilities() {
    let (ok, stderr) = run_refused(
        "unprivileged",
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "sh",
            "-c",
            "exec \"$RW_BIN\" run \"$@\"",
            "sh",
        ],
    );
    assert!(!ok);
    assert_one_line_error(
        &stderr,
        "missing privileges (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)",
    );
    assert!(stderr.contains("run as root"), "{stderr}");
}

#[test]
fn missing_cgroup2_is_one_line() {
    // A private mount namespace: unmounting cgroup2 there leaves the host untouched.
    let (ok, stderr) = run_refused(
        "no-cgroup2",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "for m in $(awk '$3==\"cgroup2\"{print $2}' /proc/mounts); do umount -l \"$m\" || exit 90; done; exec \"$RW_BIN\" run \"$@\"",
            "sh",
        ],
    );
    assert!(!ok);
    assert_one_line_error(&stderr, "cgroup v2 is not mounted");
}

#[test]
fn missing_btf_is_one_line() {
    let (ok, stderr) = run_refused(
        "no-btf",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /sys/kernel/btf || exit 90; exec \"$RW_BIN\" run \"$@\"",
            "sh",
        ],
    );
    assert!(!ok);
    assert_one_line_error(&stderr, "kernel BTF is missing");
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    // Its own paths all the same, and bounded: were the flag accepted, the daemon would run.
    let dir = TempDir::new("lifecycle-bad-arguments");
    let (status, stderr) = run_bounded(
        Command::new(relaywatch_bin())
            .arg("run")
            .args(own_paths(&dir))
            .args(["--udp-window-ms", "0"]),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("--udp-window-ms") && stderr.contains("0"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `relaywatch CMD --socket S --json ARGS` against a running daemon.
fn cli_json(daemon: &Daemon, cmd: &str, args: &[&str]) -> Value {
    let out = daemon.cli(&[&[cmd, "--json"], args].concat());
    assert!(
        out.status.success(),
        "relaywatch {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Status is one (pretty-printed) object; lists are JSON lines, one object per row.
    if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
        return Value::Array(vec![v]);
    }
    let items: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{cmd} --json line {l:?}: {e}")))
        .collect();
    Value::Array(items)
}

#[test]
fn cli_reads_status_and_connections_from_the_running_daemon() {
    let daemon = Daemon::start(&["--include-loopback"]);
    let server = integration_tests::LoopbackServer::start("127.0.0.1");
    let url = format!("http://api.openai.com:{}/v1/models", server.port);
    for _ in 0..2 {
        run_client(curl_resolving("api.openai.com", server.port, false).arg(&url));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = poll(deadline, Duration::from_millis(100), || {
        let rows = cli_json(&daemon, "connections", &["--domain", "api.openai.com"]);
        let found = rows.as_array().and_then(|r| {
            r.iter()
                .find(|r| r["destination_port"] == server.port)
                .cloned()
        });
        found
            .filter(|r| r["count"] == 2)
            .ok_or_else(|| format!("no summary row with count 2: {rows}"))
    });
    assert_eq!(
        row["executable"],
        integration_tests::real_executable("/usr/bin/curl"),
        "{row}"
    );
    assert_eq!(row["user_name"], "root", "{row}");
    assert_eq!(row["destination_ip"], "127.0.0.1", "{row}");

    // Counters in the status are refreshed every second.
    let status = poll(deadline, Duration::from_millis(200), || {
        let status = cli_json(&daemon, "status", &[])[0].clone();
        if status["events_total"].as_u64().is_some_and(|n| n >= 2) {
            Ok(status)
        } else {
            Err(format!("events_total never reached 2: {status}"))
        }
    });
    assert_eq!(status["programs_attached"], 9, "{status}");
    // At least this test's row: with loopback included the daemon also stores the connections
    // of tests running beside it (and their daemons' resolver queries to 127.0.0.1:1).
    assert!(
        status["store"]["connections"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{status}"
    );
    assert!(status["uptime_seconds"].is_u64(), "{status}");

    let (ok, stderr) = daemon.stop();
    assert!(ok.success(), "{stderr}");
}

/// The daemon speaks sd_notify to a real NOTIFY_SOCKET datagram listener: READY=1 once the
/// programs are attached, RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM,
/// and WATCHDOG=1 keepalives when WATCHDOG_USEC asks for them.
#[test]
fn sd_notify_protocol_against_a_real_notify_socket() {
    require_root();
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    // Killed on drop: a failed assertion does not leave it running with its programs attached.
    let mut child = KillOnDrop(
        Command::new(relaywatch_bin())
            .arg("run")
            .args(own_paths(&dir))
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "1000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut received: Vec<String> = Vec::new();
    let read_until = |want: &str, received: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        loop {
            let n = listener
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {want}: {e}; got {received:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            received.push(msg.clone());
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    };
    read_until("READY=1", &mut received);
    // The programs are attached by the time READY=1 is sent (the TLS uprobe programs are not
    // loaded: `[discovery] api_requests` is off by default).
    assert_eq!(programs_of(pid).len(), 9);
    read_until("WATCHDOG=1", &mut received);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let reloading = read_until("RELOADING=1", &mut received);
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    read_until("READY=1", &mut received);
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    read_until("STOPPING=1", &mut received);
    let status = wait_bounded(&mut child.0, EXIT_LIMIT)
        .unwrap_or_else(|| panic!("still running {EXIT_LIMIT:?} after SIGTERM (killed)"));
    assert!(status.success(), "{status}");
}
