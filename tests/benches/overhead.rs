//! Overhead of the agent on the traffic it watches, as ratios measured in one run.
//!
//! Each workload runs without the agent, then with it in each configuration; the printed ratio
//! is (time per operation without the agent) / (time with it): 1.00 means no measurable cost,
//! 0.95 means 5% slower. Run with `cargo xtask bench` (root: the agent attaches to the kernel).
//!
//! Workloads:
//! - `tcp_connect_loopback`: connect(2) to a loopback listener and close with RST (SO_LINGER 0,
//!   so no TIME_WAIT piles up). Every iteration runs the cgroup connect4 hook. With the default
//!   configuration loopback is filtered in the kernel; with `--include-loopback
//!   --log-connections` every connect becomes a ring-buffer event, a /proc read and a JSON line.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    thread,
    time::Duration,
};

use criterion::{Criterion, black_box};
use integration_tests::Daemon;
use serde_json::Value;

const MODES: &[(&str, &[&str])] = &[
    ("without_agent", &[]),
    ("agent_default", &[]),
    ("agent_loopback_logging", &["--include-loopback", "--log-connections"]),
];

fn loopback_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The client can outrun accept(2) (the handshake completes in the kernel); with std's
    // backlog of 128 the queue then overflows and a SYN waits a whole second for its
    // retransmit. A deep backlog keeps the loop measuring connect, not SYN drops.
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    addr
}

fn connect_and_reset(addr: &SocketAddr) {
    let s = TcpStream::connect(addr).expect("loopback connect");
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
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

fn median_ns(group: &str, function: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
    let path = format!("{dir}/criterion/{group}/{function}/new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    // The median: robust to the odd scheduling stall on a shared 2-core machine.
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let group_name = "tcp_connect_loopback";
    let addr = loopback_listener();
    let mut memory = Vec::new();
    {
        let mut group = criterion.benchmark_group(group_name);
        for (mode, args) in MODES {
            let daemon = (*mode != "without_agent").then(|| Daemon::start_discarding_records(args));
            group.bench_function(*mode, |b| b.iter(|| connect_and_reset(&addr)));
            if let Some(d) = daemon {
                memory.push((*mode, d.peak_rss_kib()));
                let (status, stderr) = d.stop();
                assert!(status.success(), "agent failed during the benchmark: {stderr}");
            }
        }
        group.finish();
    }
    criterion.final_summary();

    println!("\nrelaywatch overhead ({group_name}: ops/s with the agent relative to without, same run)");
    let base = median_ns(group_name, "without_agent");
    for (mode, _) in &MODES[1..] {
        match (base, median_ns(group_name, mode)) {
            (Some(b), Some(t)) => println!("  {mode:<26} ratio {:.3}  ({b:.0} ns -> {t:.0} ns per connect, medians)", b / t),
            _ => println!("  {mode:<26} (no estimate: benchmark filtered out?)"),
        }
    }
    for (mode, rss) in memory {
        if let Some(kib) = rss {
            println!("  {mode:<26} agent peak RSS {:.1} MiB", kib as f64 / 1024.0);
        }
    }
}
