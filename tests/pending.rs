//! Records that wait for their name (`name_wait_ms`) or for their UDP repeat window to close
//! (`udp_window_ms`) before they are written: a clean stop (SIGTERM, SIGINT) writes them on the
//! way out, and a sender that keeps one socket busy over several windows gets one record per
//! window whose counts add up to what it sent.
use std::{process::Command, time::Duration};

use integration_tests::{Daemon, Fixture, PYTHON, TestNet, curl_tls, real_executable, run_client};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// A stream with no first bytes waits 60 s for them, a datagram 600 s for its window to close:
/// far longer than the test takes, so they are still pending when the daemon is stopped.
const LONG_WAITS: &[&str] = &[
    "--include-loopback",
    "--log-connections",
    "--name-wait-ms",
    "60000",
    "--udp-window-ms",
    "600000",
];

/// A client that opens a TCP connection to `ip:9` of the test host (refused: nothing is sent,
/// so nothing can name it) and sends three datagrams to the same address from one unconnected
/// socket (one record for the window, with a count).
fn waiting_client(ip: &str) -> u32 {
    run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\n\
         t=socket.socket(); t.settimeout(5)\n\
         try: t.connect((sys.argv[1], 9))\n\
         except OSError: pass\n\
         t.close()\n\
         u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(3): u.sendto(b'pending', (sys.argv[1], 9))\n",
        ip,
    ]))
}

/// Connection records of `pid` among `lines`.
fn records_of(lines: &[Value], pid: u32) -> Vec<Value> {
    lines
        .iter()
        .filter(|r| r["process"]["pid"] == pid && r["event"]["kind"] == "event")
        .cloned()
        .collect()
}

fn stop_writes_pending_records(signal: i32, net_index: u8) {
    let net = TestNet::create(net_index);
    let server = Fixture::tls();
    let daemon = Daemon::start(LONG_WAITS);
    let waiting = waiting_client(&net.peer_v4);
    // Positive control: a TLS connection is named by its ClientHello and written at once. It
    // started after the waiting client's connections, so once its record is out the daemon has
    // read theirs from the ring buffer: they are pending, not unseen.
    let control = curl_tls("api.openai.com", server.port, "/");
    let c = daemon.wait_records(control, 1, WAIT);
    assert_eq!(c.len(), 1, "control record: {c:#?}\n{}", daemon.stderr());
    assert_eq!(c[0]["relaywatch"]["name_source"], "sni", "{:#}", c[0]);
    assert_eq!(
        daemon.records_for(waiting),
        Vec::<Value>::new(),
        "written before their wait was over"
    );

    let (status, stderr, lines) = daemon.stop_collecting(signal);
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    let mut records = records_of(&lines, waiting);
    records.sort_by_key(|r| r["network"]["transport"].as_str().unwrap_or("").to_owned());
    assert_eq!(
        records.len(),
        2,
        "one TCP and one UDP record on the way out: {records:#?}\nstderr:\n{stderr}"
    );
    let (tcp, udp) = (&records[0], &records[1]);
    for r in [tcp, udp] {
        assert_eq!(r["process"]["pid"], waiting, "{r:#}");
        assert_eq!(r["process"]["executable"], real_executable(PYTHON), "{r:#}");
        assert_eq!(r["process"]["parent"]["pid"], std::process::id(), "{r:#}");
        assert_eq!(r["destination"]["ip"], net.peer_v4.as_str(), "{r:#}");
        assert_eq!(r["destination"]["port"], 9, "{r:#}");
        assert_eq!(r["relaywatch"]["name_source"], "none", "{r:#}");
    }
    assert_eq!(tcp["network"]["transport"], "tcp", "{tcp:#}");
    assert_eq!(tcp["event"]["action"], "connect", "{tcp:#}");
    assert_eq!(udp["network"]["transport"], "udp", "{udp:#}");
    assert_eq!(udp["event"]["action"], "sendmsg", "{udp:#}");
    assert_eq!(
        udp["relaywatch"]["repeat_count"], 3,
        "the window's count so far: {udp:#}"
    );
    // The control was written once, not again on the way out.
    assert_eq!(records_of(&lines, control).len(), 1);
}

#[test]
fn sigterm_writes_records_still_waiting_for_their_name_and_exits_0() {
    stop_writes_pending_records(libc::SIGTERM, 73);
}

#[test]
fn sigint_writes_records_still_waiting_for_their_name_and_exits_0() {
    stop_writes_pending_records(libc::SIGINT, 74);
}

/// One socket sends a datagram to one destination every 100 ms for 5 s: 50 datagrams over at
/// least three 2 s repeat windows. The kernel opens a new window with the first datagram after
/// the previous one ended, so each window's record is still waiting (for the window to close,
/// plus a grace) when the next window's event arrives. Every window must be written once, and
/// the counts must add up to the datagrams sent.
#[test]
fn a_steady_sender_gets_one_record_per_window_and_the_counts_add_up() {
    let daemon = Daemon::start(&["--include-loopback", "--log-connections"]);
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    const SENT: u64 = 50;
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys,time\n\
         u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(int(sys.argv[2])):\n\
         \x20   u.sendto(b'tick', ('127.0.0.1', int(sys.argv[1])))\n\
         \x20   time.sleep(0.1)\n",
        &port.to_string(),
        &SENT.to_string(),
    ]));
    // Positive control: a datagram sent after the last one; its record is due after every
    // window of the steady sender has closed and been written.
    let control = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\n\
         socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'c', ('127.0.0.1', int(sys.argv[1])))\n",
        &port.to_string(),
    ]));
    let c = daemon.wait_records(control, 1, WAIT);
    assert_eq!(c.len(), 1, "control record: {c:#?}\n{}", daemon.stderr());

    let records = daemon.records_for(pid);
    let counts: Vec<u64> = records
        .iter()
        .map(|r| {
            assert_eq!(r["destination"]["port"], port, "{r:#}");
            assert_eq!(r["event"]["action"], "sendmsg", "{r:#}");
            r["relaywatch"]["repeat_count"]
                .as_u64()
                .unwrap_or_else(|| panic!("no repeat_count: {r:#}"))
        })
        .collect();
    assert!(
        counts.len() >= 3,
        "5 s of sending spans at least three 2 s windows: {counts:?}\n{records:#?}"
    );
    assert_eq!(
        counts.iter().sum::<u64>(),
        SENT,
        "every datagram is counted in exactly one window's record: {counts:?}\n{records:#?}"
    );
    let mut cookies_and_times: Vec<(u64, String)> = records
        .iter()
        .map(|r| {
            (
                r["relaywatch"]["socket_cookie"].as_u64().unwrap(),
                r["@timestamp"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let n = cookies_and_times.len();
    cookies_and_times.dedup();
    assert_eq!(
        cookies_and_times.len(),
        n,
        "a window written twice: {records:#?}"
    );
    assert!(
        cookies_and_times
            .iter()
            .all(|(cookie, _)| *cookie == cookies_and_times[0].0),
        "one socket: {records:#?}"
    );
}
