//! The daemon under more than it can hold, driven by bounded bursts:
//! - a ring buffer filled while the daemon is frozen (SIGSTOP): the events that did not fit are
//!   counted and reported in `relaywatch status`, every event of the burst is either written or
//!   counted as lost, and the daemon recovers;
//! - more connections waiting for their name than the daemon keeps pending
//!   (`MAX_PENDING_STREAMS`, `MAX_PENDING_DATAGRAMS`, 16,384 each in `monitor/src/correlate`):
//!   the oldest are written early, with what is known, and counted in status
//!   (`records_written_early`); none is lost or written twice.
//!
//! Each test ends with a positive control: a connection made after the burst is recorded
//! normally. Memory is observed (VmHWM) and printed, not asserted.
use std::{
    collections::HashSet,
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, Fixture, PYTHON, curl_tls, poll, real_executable, run_client, unique_loopback_ip,
    wait_until,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// One burst at a time: every daemon sees every burst, so a frozen daemon's ring could fill with
/// another test's events first.
static ONE_BURST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_burst_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_BURST_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// The daemon's bound on records waiting for their name, of each kind (streams and
/// unconnected datagrams): `correlate::MAX_PENDING_STREAMS` / `MAX_PENDING_DATAGRAMS`.
const MAX_PENDING: u64 = 16_384;

/// A status counter, as a number.
fn counter(status: &Value, key: &str) -> u64 {
    status[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no number {key}: {status:#}"))
}

/// Freeze the daemon (SIGSTOP) until dropped (SIGCONT), waiting until every thread of it is
/// stopped: kill() returns before the stop takes effect.
struct Frozen(u32);

impl Frozen {
    fn new(daemon: &Daemon) -> Frozen {
        let pid = daemon.pid();
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        let frozen = Frozen(pid);
        wait_until("every daemon thread stopped", WAIT, || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .flatten()
                .all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .unwrap_or_default()
                        .rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
        });
        frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// After a burst: a new connection (a curl TLS handshake to a loopback server, named by its
/// SNI at once) is recorded normally, with its process and name.
fn new_connection_is_recorded(daemon: &Daemon, server: &Fixture) {
    let pid = curl_tls("api.openai.com", server.port, "/after-the-burst");
    let records = daemon.wait_records(pid, 1, WAIT);
    assert_eq!(
        records.len(),
        1,
        "the control connection after the burst: {records:#?}\n{}",
        daemon.stderr()
    );
    let r = &records[0];
    assert_eq!(r["process"]["executable"], real_executable("/usr/bin/curl"));
    assert_eq!(r["destination"]["port"], server.port, "{r:#}");
    assert_eq!(r["destination"]["domain"], "api.openai.com", "{r:#}");
    assert_eq!(r["relaywatch"]["name_source"], "sni", "{r:#}");
}

/// One unconnected UDP socket sends one 1-byte datagram to each of `n` ports of `ip` (each
/// opens a repeat window: a record and a captured payload chunk of a little over 4 KiB of ring
/// buffer), 100 at a time with a 10 ms pause so that daemons that are not frozen keep up.
fn datagram_burst(ip: &str, first_port: u16, n: u32) -> u32 {
    run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys,time\n\
         ip, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n\
         u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(n):\n\
         \x20   u.sendto(b'x', (ip, first + i))\n\
         \x20   if i % 100 == 99: time.sleep(0.01)\n",
        ip,
        &first_port.to_string(),
        &n.to_string(),
    ]))
}

#[test]
fn events_lost_to_a_full_ring_buffer_are_counted_and_the_daemon_recovers() {
    let _serial = one_burst_at_a_time();
    let server = Fixture::tls();
    let daemon = Daemon::start(&["--include-loopback", "--log-connections"]);
    let rss_before = daemon.peak_rss_kib();
    let before = daemon.status();
    let (lost_before, chunks_lost_before) = (
        counter(&before, "events_lost"),
        counter(&before, "payload_chunks_lost"),
    );
    // 3,000 window-opening datagrams with their payload chunks: about 12.6 MiB of records for
    // a 4 MiB ring buffer that nobody reads.
    const BURST: u32 = 3_000;
    let ip = unique_loopback_ip();
    let burst = {
        let _frozen = Frozen::new(&daemon);
        datagram_burst(&ip, 20_000, BURST)
    };
    // Thawed. A datagram sent now is read after everything the burst left in the ring, and its
    // record is due after theirs: once it is out, the burst's records that exist are out.
    let control = datagram_burst(&ip, 19_999, 1);
    let c = daemon.wait_records(control, 1, WAIT);
    assert_eq!(c.len(), 1, "control datagram: {c:#?}\n{}", daemon.stderr());
    assert_eq!(c[0]["relaywatch"]["repeat_count"], 1, "{:#}", c[0]);

    let written = daemon.records_for(burst);
    let status = poll(
        Instant::now() + WAIT,
        Duration::from_millis(200),
        || -> Result<Value, String> {
            let s = daemon.status();
            match counter(&s, "events_lost") > lost_before {
                true => Ok(s),
                false => Err(format!("no loss in status yet: {s:#}")),
            }
        },
    );
    let lost = counter(&status, "events_lost") - lost_before;
    let chunks_lost = counter(&status, "payload_chunks_lost") - chunks_lost_before;
    eprintln!(
        "burst of {BURST}: {} written, {lost} events and {chunks_lost} payload chunks lost; \
         ring fill ratio {}; peak RSS {rss_before:?} -> {:?} KiB",
        written.len(),
        status["ringbuf_fill_ratio"],
        daemon.peak_rss_kib()
    );
    assert!(
        !written.is_empty() && written.len() < BURST as usize,
        "the ring held part of the burst, not all of it: {} of {BURST}",
        written.len()
    );
    // Every datagram of the burst is accounted for: written, or counted as lost (the counter
    // may also hold other processes' events lost meanwhile, never fewer than ours).
    assert!(
        written.len() as u64 + lost >= u64::from(BURST),
        "{} written + {lost} counted as lost < {BURST} sent",
        written.len()
    );
    let mut ports = HashSet::new();
    for r in &written {
        assert_eq!(r["destination"]["ip"], ip.as_str(), "{r:#}");
        assert_eq!(r["relaywatch"]["repeat_count"], 1, "{r:#}");
        let port = r["destination"]["port"].as_u64().unwrap();
        assert!((20_000..20_000 + u64::from(BURST)).contains(&port), "{r:#}");
        assert!(ports.insert(port), "written twice: {r:#}");
    }
    // The loss is logged too, and the daemon still answers and records.
    wait_until("the loss logged", WAIT, || {
        daemon
            .stderr()
            .contains("events lost to a full ring buffer")
    });
    new_connection_is_recorded(&daemon, &server);
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{exit}: {stderr}");
}

/// The early writes of a burst of `n` waiting records of `pid`, once at least `n - MAX_PENDING`
/// of them are out; then the rest on SIGTERM: every one exactly once.
fn burst_beyond_the_pending_bound(
    daemon: Daemon,
    server: &Fixture,
    pid: u32,
    n: u64,
    action: &str,
) {
    let beyond = n - MAX_PENDING;
    // They wait 60 s (600 s) for a name that never comes: only the bound writes them now.
    let early = daemon.wait_records(pid, beyond as usize, Duration::from_secs(30));
    // Status is refreshed once a second.
    let status = poll(
        Instant::now() + WAIT,
        Duration::from_millis(200),
        || -> Result<Value, String> {
            let s = daemon.status();
            match counter(&s, "records_written_early") >= beyond {
                true => Ok(s),
                false => Err(format!(
                    "status does not count {beyond} early writes: {s:#}"
                )),
            }
        },
    );
    eprintln!(
        "{n} {action} records waiting: {} written early, status records_pending {}, \
         records_written_early {}; peak RSS {:?} KiB",
        early.len(),
        status["records_pending"],
        status["records_written_early"],
        daemon.peak_rss_kib()
    );
    assert!(
        early.len() as u64 >= beyond,
        "{} of {n} written before their wait was over, expected at least {beyond}",
        early.len()
    );
    for r in &early {
        assert_eq!(r["event"]["action"], action, "{r:#}");
        assert_eq!(r["relaywatch"]["name_source"], "none", "{r:#}");
    }
    assert!(
        counter(&status, "records_pending") <= 2 * MAX_PENDING,
        "pending records are bounded per kind: {status:#}"
    );
    new_connection_is_recorded(&daemon, server);

    let (exit, stderr, lines) = daemon.stop_collecting(libc::SIGTERM);
    assert!(exit.success(), "{exit}: {stderr}");
    let mine: Vec<&Value> = lines
        .iter()
        .filter(|r| r["process"]["pid"] == pid && r["event"]["kind"] == "event")
        .collect();
    let distinct: HashSet<(u64, u64)> = mine
        .iter()
        .map(|r| {
            (
                r["relaywatch"]["socket_cookie"].as_u64().unwrap(),
                r["destination"]["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        (mine.len() as u64, distinct.len() as u64),
        (n, n),
        "every waiting record written exactly once by the end"
    );
}

#[test]
fn streams_beyond_the_pending_bound_are_written_early_and_counted() {
    let _serial = one_burst_at_a_time();
    let server = Fixture::tls();
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--name-wait-ms",
        "60000",
    ]);
    // Connected UDP sockets that never send: each is a stream waiting for its first bytes.
    const N: u64 = MAX_PENDING + 600;
    let ip = unique_loopback_ip();
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys,time\n\
         ip, n = sys.argv[1], int(sys.argv[2])\n\
         for i in range(n):\n\
         \x20   s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.connect((ip, 1024 + i % 60000)); s.close()\n\
         \x20   if i % 1000 == 999: time.sleep(0.01)\n",
        &ip,
        &N.to_string(),
    ]));
    burst_beyond_the_pending_bound(daemon, &server, pid, N, "connect");
}

#[test]
fn datagrams_beyond_the_pending_bound_are_written_early_and_counted() {
    let _serial = one_burst_at_a_time();
    let server = Fixture::tls();
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--udp-window-ms",
        "600000",
    ]);
    // Empty datagrams (no payload to capture) to as many destinations: each opens a window.
    const N: u64 = MAX_PENDING + 600;
    let ip = unique_loopback_ip();
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys,time\n\
         ip, n = sys.argv[1], int(sys.argv[2])\n\
         u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(n):\n\
         \x20   u.sendto(b'', (ip, 1024 + i))\n\
         \x20   if i % 1000 == 999: time.sleep(0.01)\n",
        &ip,
        &N.to_string(),
    ]));
    burst_beyond_the_pending_bound(daemon, &server, pid, N, "sendmsg");
}
