//! Connection capture end to end: real clients, the real kernel programs, exact record fields.
use std::{process::Command, time::Duration};

use integration_tests::{Daemon, LoopbackServer, PYTHON, TestNet, real_executable, run_client};
use serde_json::{Value, json};

const LOOPBACK_ARGS: &[&str] = &["--include-loopback", "--log-connections"];
const WAIT: Duration = Duration::from_secs(10);

/// The one record for `pid`, after waiting for it; fails if there are several.
fn only_record(daemon: &Daemon, pid: u32) -> Value {
    let records = daemon.wait_records(pid, 1, WAIT);
    assert_eq!(
        records.len(),
        1,
        "expected exactly one record for pid {pid}, got {records:#?}\nstderr:\n{}",
        daemon.stderr()
    );
    records.into_iter().next().unwrap()
}

/// The positive control for "no more records": a datagram from a fresh process to `host:port`,
/// sent after the client under test. Its record is written when its repeat window closes; once
/// it is there, every window the client opened earlier has closed too.
fn udp_control(daemon: &Daemon, host: &str, port: u16) {
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\nh=sys.argv[1]\nu=socket.socket(socket.AF_INET6 if ':' in h else socket.AF_INET, socket.SOCK_DGRAM)\nu.sendto(b'c', (h, int(sys.argv[2])))",
        host,
        &port.to_string(),
    ]));
    let r = only_record(daemon, pid);
    assert_eq!(r["destination"]["port"], port, "{r:#}");
}

fn assert_identity(r: &Value, pid: u32, name: &str, executable: &str) {
    assert_eq!(r["process"]["pid"], pid, "{r:#}");
    assert_eq!(
        r["process"]["thread"]["id"], pid,
        "single-threaded client: thread id is the pid; {r:#}"
    );
    assert_eq!(r["process"]["name"], name, "{r:#}");
    assert_eq!(r["process"]["executable"], executable, "{r:#}");
    assert_eq!(
        r["process"]["parent"]["pid"],
        std::process::id(),
        "the test spawned it; {r:#}"
    );
    assert_eq!(r["user"]["id"], "0", "{r:#}");
    assert_eq!(r["user"]["name"], "root", "{r:#}");
    assert_eq!(r["event"]["kind"], "event");
    assert_eq!(r["event"]["category"], json!(["network"]));
    assert_eq!(r["event"]["type"], json!(["connection", "start"]));
    assert_eq!(r["network"]["direction"], "egress");
    assert!(
        r["@timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() >= 20),
        "{r:#}"
    );
    assert!(
        r["relaywatch"]["socket_cookie"]
            .as_u64()
            .is_some_and(|c| c > 0),
        "{r:#}"
    );
}

fn assert_destination(r: &Value, ip: &str, port: u16, transport: &str, network_type: &str) {
    assert_eq!(r["destination"]["ip"], ip, "{r:#}");
    assert_eq!(r["destination"]["port"], port, "{r:#}");
    assert_eq!(r["network"]["transport"], transport, "{r:#}");
    assert_eq!(r["network"]["type"], network_type, "{r:#}");
}

fn python_tcp_connect(host: &str, port: u16) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-c", "import socket,sys,time\ns=socket.create_connection((sys.argv[1], int(sys.argv[2])))\ntime.sleep(0.3)\ns.close()", host, &port.to_string()]);
    cmd
}

#[test]
fn python_tcp_ipv4_connect_is_attributed() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let server = LoopbackServer::start("127.0.0.1");
    let pid = run_client(&mut python_tcp_connect("127.0.0.1", server.port));
    let r = only_record(&daemon, pid);
    assert_identity(&r, pid, "python3", &real_executable(PYTHON));
    assert_destination(&r, "127.0.0.1", server.port, "tcp", "ipv4");
    assert_eq!(r["event"]["action"], "connect");
    assert_eq!(r["process"]["args"][0], PYTHON);
    assert_eq!(r["process"]["args"][1], "-c");
    assert_eq!(r["process"]["args"][4], server.port.to_string());
}

#[test]
fn python_tcp_ipv6_connect_is_attributed() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let server = LoopbackServer::start("::1");
    let pid = run_client(&mut python_tcp_connect("::1", server.port));
    let r = only_record(&daemon, pid);
    assert_identity(&r, pid, "python3", &real_executable(PYTHON));
    assert_destination(&r, "::1", server.port, "tcp", "ipv6");
}

#[test]
fn ipv4_mapped_ipv6_destination_is_reported_as_ipv4() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let server = LoopbackServer::start("127.0.0.1");
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\ns=socket.socket(socket.AF_INET6)\ns.connect(('::ffff:127.0.0.1', int(sys.argv[1])))\ns.close()",
        &server.port.to_string(),
    ]));
    let r = only_record(&daemon, pid);
    assert_destination(&r, "127.0.0.1", server.port, "tcp", "ipv4");
}

#[test]
fn curl_to_loopback_http_server_is_attributed() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let server = LoopbackServer::start("127.0.0.1");
    let url = format!("http://127.0.0.1:{}/v1/models", server.port);
    let pid =
        run_client(Command::new("curl").args(["-sS", "--max-time", "5", "-o", "/dev/null", &url]));
    let r = only_record(&daemon, pid);
    assert_identity(&r, pid, "curl", &real_executable("/usr/bin/curl"));
    assert_destination(&r, "127.0.0.1", server.port, "tcp", "ipv4");
    assert_eq!(
        r["process"]["args"],
        json!(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", url])
    );
}

/// A client that starts, connects and is reaped while the daemon is frozen (SIGSTOP): /proc has
/// nothing left when the daemon reads the exec event, so parent and arguments can only come from
/// what the kernel program read at exec, and the service (here a cgroup of the test's own, named
/// like a systemd unit) from the event's cgroup id. Secrets in the arguments are still redacted.
#[test]
fn client_gone_before_the_daemon_looks_keeps_parent_args_and_unit() {
    let cgroup_root = cgroup2_root();
    let unit = format!("relaywatch-test-{}.service", std::process::id());
    let cgroup = cgroup_root.join(&unit);
    std::fs::create_dir(&cgroup).unwrap();
    let _cleanup = RemoveDir(cgroup.clone());
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let server = LoopbackServer::start("127.0.0.1");
    let url = format!("http://127.0.0.1:{}/v1/chat", server.port);
    let signal = |sig| assert_eq!(unsafe { libc::kill(daemon.pid() as i32, sig) }, 0);
    signal(libc::SIGSTOP);
    // kill() returns before the stop takes effect: wait until every thread of the daemon is
    // stopped, or the daemon could still read /proc and the test would prove nothing.
    let stopped = || {
        std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
            .unwrap()
            .flatten()
            .all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
    };
    integration_tests::wait_until("the daemon to stop", WAIT, stopped);
    let secret = "sk-frozen-daemon-secret-0123456789";
    let auth = format!("Authorization: Bearer {secret}");
    // The shell moves itself into the cgroup, then becomes curl (same pid, parent: this test).
    let script = format!("echo $$ > {}/cgroup.procs && exec \"$@\"", cgroup.display());
    // A padding header last makes the command line longer than the 1 KiB the kernel carries.
    let pad = format!("X-Pad: {}", "p".repeat(1500));
    let pid = run_client(Command::new("sh").args(["-c", &script, "sh"]).args([
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-H",
        &auth,
        &url,
        "-H",
        &pad,
    ]));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the client is reaped"
    );
    signal(libc::SIGCONT);
    let r = only_record(&daemon, pid);
    assert_identity(&r, pid, "curl", &real_executable("/usr/bin/curl"));
    let args: Vec<&str> = r["process"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..4], ["curl", "-sS", "--max-time", "5"], "{r:#}");
    assert_eq!(
        args[args.len() - 2..],
        [url.as_str(), "-H"],
        "arguments read whole are kept, the cut one is dropped: {r:#}"
    );
    assert_eq!(r["relaywatch"]["args_truncated"], true, "{r:#}");
    assert!(
        !r.to_string().contains(secret),
        "the bearer token is redacted: {r:#}"
    );
    assert!(!daemon.stderr().contains(secret));
    assert_eq!(r["relaywatch"]["cgroup"], format!("/{unit}"), "{r:#}");
    assert_eq!(r["relaywatch"]["systemd_unit"], unit.as_str(), "{r:#}");
}

/// Removes an (emptied) cgroup directory however the test ends.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(2) == Some("cgroup2"))
        .expect("a cgroup2 mount (the agent needs one)");
    line.split(' ').nth(1).unwrap().into()
}

#[test]
fn unconnected_udp_sendto_is_attributed() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys,time\nu=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.sendto(b'q', ('127.0.0.1', int(sys.argv[1])))\ntime.sleep(0.3)",
        &port.to_string(),
    ]));
    // The record waits for the repeat window (2 s by default) to carry its count.
    let r = only_record(&daemon, pid);
    assert_identity(&r, pid, "python3", &real_executable(PYTHON));
    assert_destination(&r, "127.0.0.1", port, "udp", "ipv4");
    assert_eq!(r["event"]["action"], "sendmsg");
    assert_eq!(r["relaywatch"]["repeat_count"], 1);
}

#[test]
fn connected_udp_is_reported_at_connect() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let receiver = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\nu=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\nu.connect(('::1', int(sys.argv[1])))\n[u.send(b'q') for _ in range(50)]",
        &port.to_string(),
    ]));
    let r = only_record(&daemon, pid);
    assert_destination(&r, "::1", port, "udp", "ipv6");
    assert_eq!(r["event"]["action"], "connect");
    // Sends on a connected socket carry no destination: they add no records.
    udp_control(&daemon, "::1", port);
    assert_eq!(daemon.records_for(pid).len(), 1);
}

#[test]
fn process_that_connects_and_exits_at_once_is_never_misattributed() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let server = LoopbackServer::start("127.0.0.1");
    // bash opens the connection through /dev/tcp and exits immediately.
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{}", server.port);
    let pid = run_client(Command::new("/bin/bash").args(["-c", &script]));
    let r = only_record(&daemon, pid);
    assert_eq!(r["process"]["pid"], pid);
    assert_eq!(r["process"]["name"], "bash");
    assert_destination(&r, "127.0.0.1", server.port, "tcp", "ipv4");
    // The exec event (read in the kernel at exec) gives the image, the arguments and the parent
    // even though bash is gone before the daemon looks: all of them are this bash's own.
    assert_eq!(
        r["process"]["executable"],
        json!(real_executable("/bin/bash")),
        "{r:#}"
    );
    assert_eq!(
        r["process"]["args"],
        json!(["/bin/bash", "-c", script]),
        "{r:#}"
    );
    assert_eq!(r["process"]["parent"]["pid"], std::process::id(), "{r:#}");
}

#[test]
fn udp_burst_is_one_record_with_its_count() {
    let daemon = Daemon::start(LOOPBACK_ARGS);
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\nu=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nd=('127.0.0.1', int(sys.argv[1]))\nfor _ in range(10000): u.sendto(b'x', d)",
        &port.to_string(),
    ]));
    let r = only_record(&daemon, pid);
    assert_destination(&r, "127.0.0.1", port, "udp", "ipv4");
    assert_eq!(r["relaywatch"]["repeat_count"], 10_000, "{r:#}");
    // Nothing more arrives for it later.
    udp_control(&daemon, "127.0.0.1", port);
    assert_eq!(daemon.records_for(pid).len(), 1);
}

#[test]
fn default_config_skips_loopback_but_reports_egress() {
    let daemon = Daemon::start(&["--log-connections"]);
    let net = TestNet::create(1);
    let server4 = LoopbackServer::start("127.0.0.1");
    let server6 = LoopbackServer::start("::1");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let script = "import socket,sys\n\
        a=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); a.close()\n\
        b=socket.create_connection(('::1', int(sys.argv[2]))); b.close()\n\
        u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', ('127.0.0.1', int(sys.argv[3])))\n\
        u6=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.sendto(b'x', ('::1', int(sys.argv[3])))\n\
        for host in (sys.argv[4], sys.argv[5]):\n\
        \x20   s=socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET); s.settimeout(2)\n\
        \x20   try: s.connect((host, 9))\n\
        \x20   except OSError: pass\n\
        import time; time.sleep(0.3)\n";
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        script,
        &server4.port.to_string(),
        &server6.port.to_string(),
        &udp_port.to_string(),
        &net.peer_v4,
        &net.peer_v6,
    ]));
    // The two connects to the test host are egress. A datagram to the test host from another
    // process, sent afterwards, is egress too: once its record is there (its repeat window
    // closed), the loopback datagrams' windows, opened before, have closed as well.
    let records = daemon.wait_records(pid, 2, WAIT);
    udp_control(&daemon, &net.peer_v4, 9);
    let records_after = daemon.records_for(pid);
    assert_eq!(
        records.len(),
        records_after.len(),
        "late records: {records_after:#?}"
    );
    let ips: Vec<&str> = records_after
        .iter()
        .map(|r| r["destination"]["ip"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips,
        vec![net.peer_v4.as_str(), net.peer_v6.as_str()],
        "only the test host is egress: {records_after:#?}"
    );
    for r in &records_after {
        assert_identity(r, pid, "python3", &real_executable(PYTHON));
        assert_eq!(r["destination"]["port"], 9);
    }
}
