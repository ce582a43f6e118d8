//! Overhead of the agent on the traffic it watches, as ratios measured in one run.
//!
//! Each workload runs without the agent, then with it in each configuration; the printed ratio
//! is (time per operation without the agent) / (time with it): 1.00 means no measurable cost,
//! 0.95 means 5% slower. Ratios use criterion's medians. Run with `cargo xtask bench` (root: the
//! agent attaches to the kernel).
//!
//! Workloads (all bounded by criterion's sample count and measurement time):
//! - `tcp_connect_loopback`: connect(2) to a loopback listener, close with RST (SO_LINGER 0, so
//!   no TIME_WAIT piles up). Every iteration runs the cgroup connect4 hook.
//! - `file_write_64`, `pipe_write_64`: 64-byte write(2) to a file and to a pipe. No socket: the
//!   agent's programs must not run at all.
//! - `tcp_write_64`: 64-byte write(2) on an established loopback TCP connection (TCP_NODELAY, so
//!   one packet per write): the cgroup_skb egress and ingress programs run per packet.
//! - `udp_sendto_64`: 64-byte sendto(2) on an unconnected UDP socket to loopback: the sendmsg
//!   hook and the skb programs run per datagram.
//! - `tcp_write_64_veth`, `udp_sendto_64_veth`: the same to a test host in its own network
//!   namespace over a veth pair: real egress, reported in the default configuration (the UDP
//!   repeat-window folding and the TCP connection's capture and gate run as in production).
//! - `tls_client_veth`: a new TLS connection (CPython's ssl, i.e. OpenSSL's libssl, which the
//!   agent probes) to an HTTPS server (CPython) on the test host, one small API request (an OpenAI
//!   chat completion POST to a host on no list, so the request is read, judged and the host
//!   learned), its answer, close. Driven one step per line through a pipe.
//! - `tls_keepalive_loopback`: a TLS server on the host (loopback) and one kept-alive client
//!   connection, 100 small request/answer round trips per step: the uprobes' cost on
//!   long-lived connections and on servers (every SSL_write/SSL_read still traps).
//!
//! The workload runs pinned to one CPU and the agent to the other (see `WORKLOAD_CPU`); each
//! agent configuration is measured once the agent is idle after its start-up work, between two
//! baseline runs (before and after), whose mean is the reference.
//!
//! Configurations: the default (loopback is not egress: filtered in the kernel hooks) and
//! `--include-loopback` (loopback treated as egress, so the full per-packet path runs: repeat
//! folding, capture lookups). `--log-connections` on top adds a /proc read and a JSON line per
//! reported connection, which only the connect workload exercises.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _},
    thread,
    time::Duration,
};

use criterion::{Criterion, black_box};
use integration_tests::{Daemon, KillOnDrop, spawn_announcing};
use serde_json::Value;

const WITHOUT: &str = "without_agent";
/// The baseline again after the agent runs: machine drift (thermal, other tenants) during a
/// workload's runs then shows up as a difference between the two baselines instead of as
/// overhead. Ratios use their mean.
const WITHOUT_AFTER: &str = "without_agent_after";

struct Workload {
    name: &'static str,
    configs: &'static [(&'static str, &'static [&'static str])],
}

const DEFAULT: (&str, &[&str]) = ("agent_default", &[]);
const LOOPBACK: (&str, &[&str]) = ("agent_include_loopback", &["--include-loopback"]);
/// `[discovery] api_requests = true` (TLS uprobes), from the file `main` writes.
const API_REQUESTS_CONFIG: &str = "/tmp/relaywatch-bench-api-requests.toml";
const API_REQUESTS: (&str, &[&str]) = ("agent_api_requests", &["--config", API_REQUESTS_CONFIG]);
const LOGGING: (&str, &[&str]) = (
    "agent_loopback_logging",
    &["--include-loopback", "--log-connections"],
);

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "tcp_connect_loopback",
        configs: &[DEFAULT, LOGGING],
    },
    Workload {
        name: "file_write_64",
        configs: &[DEFAULT, LOOPBACK],
    },
    Workload {
        name: "pipe_write_64",
        configs: &[DEFAULT, LOOPBACK],
    },
    Workload {
        name: "tcp_write_64",
        configs: &[DEFAULT, LOOPBACK],
    },
    Workload {
        name: "udp_sendto_64",
        configs: &[DEFAULT, LOOPBACK],
    },
    Workload {
        name: "tcp_write_64_veth",
        configs: &[DEFAULT],
    },
    Workload {
        name: "udp_sendto_64_veth",
        configs: &[DEFAULT],
    },
    Workload {
        name: "tls_client_veth",
        configs: &[DEFAULT, API_REQUESTS],
    },
    Workload {
        name: "tls_keepalive_loopback",
        configs: &[DEFAULT, API_REQUESTS],
    },
];

/// The TLS server on the test host for `tls_client_veth`: (certificate directory, port).
static TLS_PEER: std::sync::OnceLock<(std::path::PathBuf, u16)> = std::sync::OnceLock::new();
const TLS_NAME: &str = "bench-relay.example";

/// A `tls_bench.py` worker (see tests/fixtures) answering "ok" per step.
fn tls_worker(args: &[&str]) -> Box<dyn FnMut()> {
    use std::io::BufRead as _;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls_bench.py");
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 tls_bench.py");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "tls_bench.py did not start");
    let guard = KillOnDrop(child);
    Box::new(move || {
        let _keep = &guard;
        stdin.write_all(b"go\n").unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "tls_bench.py step failed");
    })
}

/// The test host in its own network namespace that the `_veth` workloads talk to: real egress
/// (not loopback), so the default configuration reports it and runs every hook's full path.
static PEER: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// A TCP server in the test host's namespace that reads and discards; returns it (killed when
/// the workload is dropped) and its port.
fn remote_drain_server(ns: &str, ip: &str) -> (KillOnDrop, u16) {
    let script = "import socket,sys,threading\n\
        l=socket.socket(); l.bind((sys.argv[1],0)); l.listen(64); print(l.getsockname()[1], flush=True)\n\
        def drain(c):\n\
        \x20   while c.recv(65536): pass\n\
        while True:\n\
        \x20   c,_=l.accept(); threading.Thread(target=drain,args=(c,),daemon=True).start()\n";
    let (server, line) = spawn_announcing(
        std::process::Command::new("ip").args(["netns", "exec", ns, "python3", "-c", script, ip]),
    );
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("drain server printed {line:?}"));
    (server, port)
}

fn drain_listener(listener: TcpListener, keep_reading: bool) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if keep_reading {
                thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        }
    });
}

fn connect_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The client can outrun accept(2) (the handshake completes in the kernel); with std's
    // backlog of 128 the queue then overflows and a SYN waits a whole second for its
    // retransmit. A deep backlog keeps the loop measuring connect, not SYN drops.
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    drain_listener(listener, false);
    addr
}

fn connect_and_reset(addr: &SocketAddr) {
    let s = TcpStream::connect(addr).expect("loopback connect");
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and option struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    drop(black_box(s));
}

/// The operation a workload repeats, set up fresh for each configuration (a new TCP connection
/// is made after the agent starts, as real connections are).
fn operation(name: &str) -> Box<dyn FnMut()> {
    let payload = [0x42u8; 64];
    match name {
        "tcp_connect_loopback" => {
            let addr = connect_listener();
            Box::new(move || connect_and_reset(&addr))
        }
        "file_write_64" => {
            let mut file = tempfile_in_tmp();
            let mut n = 0u32;
            Box::new(move || {
                file.write_all(black_box(&payload)).unwrap();
                n += 1;
                if n.is_multiple_of(65_536) {
                    // Keep the file small: rewind (one lseek per 64k writes).
                    // SAFETY: valid fd.
                    unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_SET) };
                }
            })
        }
        "pipe_write_64" => {
            let mut fds = [0i32; 2];
            // SAFETY: fds has room for two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: pipe() returned two fresh descriptors we now own.
            let (mut reader, mut writer) =
                unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            });
            Box::new(move || writer.write_all(black_box(&payload)).unwrap())
        }
        "tcp_write_64" => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drain_listener(listener, true);
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            Box::new(move || s.write_all(black_box(&payload)).unwrap())
        }
        "udp_sendto_64" => {
            let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = receiver.local_addr().unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while receiver.recv(&mut buf).is_ok() {}
            });
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            Box::new(move || {
                // A full receive buffer makes sendto fail with ENOBUFS/EAGAIN at worst; the
                // cost measured is the send path either way.
                let _ = sender.send_to(black_box(&payload), to);
            })
        }
        "tcp_write_64_veth" => {
            let (ns, ip) = PEER.get().expect("test namespace");
            let (server, port) = remote_drain_server(ns, ip);
            let mut s = TcpStream::connect((ip.as_str(), port)).unwrap();
            s.set_nodelay(true).unwrap();
            Box::new(move || {
                let _keep = &server;
                s.write_all(black_box(&payload)).unwrap()
            })
        }
        "udp_sendto_64_veth" => {
            let (_, ip) = PEER.get().expect("test namespace");
            // Nobody listens on the test host's discard port: it drops the datagrams (and
            // answers a rate-limited few with ICMP, which unconnected UDP ignores).
            let to: SocketAddr = format!("{ip}:9").parse().unwrap();
            let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
            Box::new(move || {
                let _ = sender.send_to(black_box(&payload), to);
            })
        }
        "tls_client_veth" => {
            let (_, ip) = PEER.get().expect("test namespace");
            let (dir, port) = TLS_PEER.get().expect("TLS test host");
            let ca = dir.join("ca.pem");
            tls_worker(&[
                "client",
                ip,
                &port.to_string(),
                TLS_NAME,
                ca.to_str().unwrap(),
            ])
        }
        "tls_keepalive_loopback" => {
            let (dir, _) = TLS_PEER.get().expect("TLS certificates");
            let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
            tls_worker(&[
                "keepalive",
                cert.to_str().unwrap(),
                key.to_str().unwrap(),
                "100",
            ])
        }
        other => panic!("unknown workload {other}"),
    }
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// (program, mean ns per run, runs) of relaywatch's loaded programs (bpftool, bpf_stats on).
fn program_stats() -> Vec<(String, f64, u64)> {
    let Ok(out) = std::process::Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
    else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut stats = Vec::new();
    for p in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = p["name"].as_str().unwrap_or("");
        if !name.starts_with("relaywatch") {
            continue;
        }
        let (ns, runs) = (
            p["run_time_ns"].as_u64().unwrap_or(0),
            p["run_cnt"].as_u64().unwrap_or(0),
        );
        stats.push((name.to_string(), ns as f64 / runs.max(1) as f64, runs));
    }
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    stats
}

fn tempfile_in_tmp() -> File {
    let path = std::env::temp_dir().join(format!("relaywatch-bench-{}", std::process::id()));
    let f = File::create(&path).unwrap();
    let _ = std::fs::remove_file(&path); // unlinked: vanishes when the bench ends
    f
}

fn median_ns(group: &str, function: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
    let path = format!("{dir}/criterion/{group}/{function}/new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    // The median: robust to the odd scheduling stall on a shared 2-core machine.
    v["median"]["point_estimate"].as_f64()
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1)
}

/// CPUs: the workload (its writer and its reader threads) runs on one CPU and the daemon on
/// another. The kernel hooks run in the workload's context either way, so their cost is
/// measured in full; what pinning removes is the scheduler's choice of placing the reader on the
/// writer's CPU or not, which on a 2-core machine moved these loops by up to a factor of two
/// from run to run, with or without the agent.
const WORKLOAD_CPU: usize = 1;
const DAEMON_CPU: &str = "0";

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "could not pin the benchmark to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn main() {
    // Threads started later (the workloads' readers) inherit the mask.
    pin_to_cpu(WORKLOAD_CPU);
    let net = integration_tests::TestNet::create(201);
    PEER.set((net.ns.clone(), net.peer_v4.clone()))
        .expect("set once");
    std::fs::write(API_REQUESTS_CONFIG, "[discovery]\napi_requests = true\n")
        .expect("the api_requests configuration");
    let tls_dir = integration_tests::TempDir::new("bench-tls");
    integration_tests::ca_and_server_cert(&tls_dir, &[TLS_NAME]);
    let tls_script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls_bench.py");
    let _tls_server = integration_tests::serve_in(
        &net,
        &tls_dir,
        8443,
        &[
            "/usr/bin/python3",
            tls_script.to_str().unwrap(),
            "serve",
            "8443",
            "server.pem",
            "server.key",
        ],
    );
    TLS_PEER
        .set((tls_dir.to_path_buf(), 8443))
        .expect("set once");
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut memory = Vec::new();
    let mut startup = Vec::new();
    let mut cpu = Vec::new();
    let mut programs = Vec::new();
    // Per-program run time (bpf_stats), restored when done.
    let stats_before = std::fs::read_to_string(BPF_STATS).unwrap_or_default();
    let _ = std::fs::write(BPF_STATS, "1");
    for w in WORKLOADS {
        let mut group = criterion.benchmark_group(w.name);
        let mut op = operation(w.name);
        group.bench_function(WITHOUT, |b| b.iter(&mut op));
        drop(op);
        for (config, args) in w.configs {
            let daemon =
                Daemon::start_under_discarding_records(&["taskset", "-c", DAEMON_CPU], args);
            // Steady state: measured once the daemon's start-up work is done (reported below).
            startup.push((w.name, *config, daemon.wait_idle(Duration::from_secs(30))));
            let mut op = operation(w.name);
            let ticks_before = daemon.cpu_ticks().unwrap_or(0);
            let started = std::time::Instant::now();
            group.bench_function(*config, |b| b.iter(&mut op));
            drop(op);
            let ticks = daemon.cpu_ticks().unwrap_or(0).saturating_sub(ticks_before);
            cpu.push((w.name, *config, ticks, started.elapsed()));
            programs.push((w.name, *config, program_stats()));
            memory.push((w.name, *config, daemon.peak_rss_kib()));
            let (status, stderr) = daemon.stop();
            assert!(
                status.success(),
                "agent failed during the benchmark: {stderr}"
            );
        }
        let mut op = operation(w.name);
        group.bench_function(WITHOUT_AFTER, |b| b.iter(&mut op));
        drop(op);
        group.finish();
    }
    criterion.final_summary();

    println!(
        "\nrelaywatch overhead: operations per second with the agent relative to without (criterion medians, same run;"
    );
    println!(
        "'without' is the mean of the baselines measured before and after the agent's runs, 'drift' their ratio)"
    );
    println!(
        "  {:<22} {:<24} {:>6}   {:>10} -> {:>10}",
        "workload", "configuration", "ratio", "without", "with"
    );
    for w in WORKLOADS {
        let base = match (median_ns(w.name, WITHOUT), median_ns(w.name, WITHOUT_AFTER)) {
            (Some(a), Some(b)) => {
                println!(
                    "  {:<22} {:<24} {:>6.3}   {:>8.0}ns -> {:>8.0}ns",
                    w.name,
                    "(baseline drift)",
                    a / b,
                    a,
                    b
                );
                Some((a + b) / 2.0)
            }
            (a, b) => a.or(b),
        };
        for (config, _) in w.configs {
            match (base, median_ns(w.name, config)) {
                (Some(b), Some(t)) => println!(
                    "  {:<22} {:<24} {:>6.3}   {:>8.0}ns -> {:>8.0}ns",
                    w.name,
                    config,
                    b / t,
                    b,
                    t
                ),
                _ => println!(
                    "  {:<22} {:<24} (no estimate: filtered out?)",
                    w.name, config
                ),
            }
        }
    }
    if let Some((_, _, ticks)) = startup.iter().max_by_key(|s| s.2) {
        println!(
            "  agent start-up CPU before measuring (most of any run): {} ms",
            ticks * 1000 / clock_ticks_per_second()
        );
    }
    println!("\n  agent CPU while each workload was measured (share of one CPU):");
    for (w, config, ticks, elapsed) in &cpu {
        let secs = *ticks as f64 / clock_ticks_per_second() as f64;
        println!(
            "  {:<22} {:<24} {:>5.1}%",
            w,
            config,
            100.0 * secs / elapsed.as_secs_f64().max(0.001)
        );
    }
    println!(
        "\n  kernel programs: ns per run (bpf_stats run_time_ns / run_cnt) over each workload's agent runs:"
    );
    for (w, config, stats) in &programs {
        for (name, ns, runs) in stats.iter().filter(|s| s.2 > 0) {
            println!(
                "  {:<22} {:<24} {:<32} {:>7.0} ns x {}",
                w, config, name, ns, runs
            );
        }
    }
    let _ = std::fs::write(BPF_STATS, stats_before.trim());
    drop(net);
    let peak = memory.iter().filter_map(|m| m.2).max();
    if let Some(kib) = peak {
        println!(
            "  agent peak RSS (VmHWM) over all runs: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}
