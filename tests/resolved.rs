//! `relaywatch.name_source: "resolved_blocklist"` end to end (docs/blocklists.md, "Resolving
//! list names"): the daemon resolves the `full:` and `domain:` names of its lists through the
//! configured nameserver (here dnsmasq on a loopback address of its own, answering from a fixed
//! table), and a connection made by address alone (nothing sent, no DNS answer seen by the
//! client) to one of those addresses is named after the list name and alerts on its rule.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, DnsServer, KillOnDrop, PYTHON, TempDir, TestNet, poll, real_executable, run_client,
    serve_in, unique_loopback_ip,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// A TCP listener on port `port` (IPv4 and IPv6) inside the test host's namespace, accepting
/// and holding connections; killed on drop.
fn listener_in(net: &TestNet, port: u16) -> KillOnDrop {
    let script = "import socket,sys,threading\n\
                  s=socket.create_server(('::', int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)\n\
                  held=[]\n\
                  while True:\n\
                  \x20   c,_=s.accept(); held.append(c)\n";
    serve_in(
        net,
        Path::new("/"),
        port,
        &[PYTHON, "-c", script, &port.to_string()],
    )
}

/// A python client that connects to `ip:port` and closes without sending a byte.
fn bare_tcp(ip: &str, port: u16) -> u32 {
    run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys,time\n\
         s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n\
         time.sleep(0.2); s.close()\n",
        ip,
        &port.to_string(),
    ]))
}

/// A python client that sends one datagram to `ip:port` from an unconnected socket.
fn bare_datagram(ip: &str, port: u16) -> u32 {
    run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\n\
         socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'?', (sys.argv[1], int(sys.argv[2])))\n",
        ip,
        &port.to_string(),
    ]))
}

fn is_start_alert(r: &Value) -> bool {
    r["event"]["kind"] == "alert" && r["event"]["type"] == json!(["connection", "start"])
}

/// The one connection record and the one alert of `pid`.
fn record_and_alert(daemon: &Daemon, pid: u32) -> (Value, Value) {
    let alerts = daemon.wait_matching(pid, 1, WAIT, is_start_alert);
    let records = daemon.wait_records(pid, 1, WAIT);
    assert_eq!(
        (records.len(), alerts.len()),
        (1, 1),
        "pid {pid}: records {records:#?}\nalerts {alerts:#?}\nstderr:\n{}",
        daemon.stderr()
    );
    (records[0].clone(), alerts[0].clone())
}

#[allow(clippy::too_many_arguments)]
fn assert_resolved(
    (record, alert): &(Value, Value),
    pid: u32,
    ip: &str,
    port: u16,
    transport: &str,
    name: &str,
    category: &str,
    (rule, ruleset): (&str, &str),
) {
    for r in [record, alert] {
        assert_eq!(r["process"]["pid"], pid, "{r:#}");
        assert_eq!(r["process"]["executable"], real_executable(PYTHON), "{r:#}");
        assert_eq!(r["destination"]["ip"], ip, "{r:#}");
        assert_eq!(r["destination"]["port"], port, "{r:#}");
        assert_eq!(r["network"]["transport"], transport, "{r:#}");
        assert_eq!(r["destination"]["domain"], name, "{r:#}");
        assert_eq!(
            r["relaywatch"]["name_source"], "resolved_blocklist",
            "{r:#}"
        );
        assert!(r["tls"].is_null(), "nothing was sent: {r:#}");
    }
    let a = alert;
    assert_eq!(a["rule"]["category"], category, "{a:#}");
    assert_eq!(a["rule"]["name"], rule, "{a:#}");
    assert!(
        a["rule"]["ruleset"]
            .as_str()
            .is_some_and(|r| r.contains(ruleset)),
        "ruleset {ruleset}: {a:#}"
    );
    assert_eq!(
        a["threat"]["enrichments"][0]["matched"]["field"], "destination.domain",
        "{a:#}"
    );
    assert_eq!(a["threat"]["enrichments"][0]["matched"]["atomic"], name);
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn a_bare_connection_to_a_listed_name_s_address_is_named_resolved_blocklist() {
    let tag = std::process::id();
    let net = TestNet::create(75);
    let _listener = listener_in(&net, 7000);
    // A custom list: a `full:` relay name answered with the test host's IPv4 address, and a
    // `domain:` provider name answered with its IPv6 address. A built-in relay name, answered
    // with a loopback address of this test's own (a datagram to it).
    let relay = format!("rw-{tag}.relay.test");
    let provider = format!("rw6-{tag}.provider.test");
    let builtin = "1xm.ai";
    let builtin_ip = unique_loopback_ip();
    let unresolved_ip = unique_loopback_ip();
    let dns = DnsServer::start(&[
        (relay.as_str(), net.peer_v4.as_str()),
        (provider.as_str(), net.peer_v6.as_str()),
        (builtin, builtin_ip.as_str()),
    ]);
    let dir = TempDir::new("resolved");
    write(
        &dir,
        "relay.list",
        &format!("# relaywatch: category=ai-relay\nfull:{relay}\n"),
    );
    write(
        &dir,
        "provider.list",
        &format!("# relaywatch: category=ai-provider\ndomain:{provider}\n"),
    );
    let config = write(
        &dir,
        "config.toml",
        &format!(
            "[blocklists]\nfiles = [\"{}/*.list\"]\n",
            dir.to_string_lossy()
        ),
    );
    let daemon = Daemon::start(&[
        "--config",
        &config,
        "--nameserver",
        &dns.addr(),
        "--include-loopback",
        "--log-connections",
    ]);
    // The three names resolved (dnsmasq knows no other name: the built-in lists' other names
    // get no answer).
    let status = poll(
        Instant::now() + Duration::from_secs(60),
        Duration::from_millis(250),
        || -> Result<Value, String> {
            let s = daemon.status();
            match s["resolved_addresses"].as_u64() {
                Some(n) if n >= 3 => Ok(s),
                _ => Err(format!("list names not resolved: {s:#}")),
            }
        },
    );
    assert_eq!(status["resolved_addresses"], 3, "{status:#}");

    // The negative first: a datagram to a loopback address no list name resolves to.
    let quiet = bare_datagram(&unresolved_ip, 9);
    let v4 = bare_tcp(&net.peer_v4, 7000);
    let v6 = bare_tcp(&net.peer_v6, 7000);
    let udp = bare_datagram(&builtin_ip, 9);

    assert_resolved(
        &record_and_alert(&daemon, v4),
        v4,
        &net.peer_v4,
        7000,
        "tcp",
        &relay,
        "ai-relay",
        (&format!("full:{relay}"), "relay.list"),
    );
    assert_resolved(
        &record_and_alert(&daemon, v6),
        v6,
        &net.peer_v6,
        7000,
        "tcp",
        &provider,
        "ai-provider",
        (&format!("domain:{provider}"), "provider.list"),
    );
    assert_resolved(
        &record_and_alert(&daemon, udp),
        udp,
        &builtin_ip,
        9,
        "udp",
        builtin,
        "ai-relay",
        ("domain:1xm.ai", "ai-relay"),
    );

    // The positives are out, the negative was sent before them: its record is there, unnamed,
    // and it raised nothing.
    let q = daemon.records_for(quiet);
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["destination"]["ip"], unresolved_ip.as_str());
    assert_eq!(q[0]["relaywatch"]["name_source"], "none", "{:#}", q[0]);
    assert!(q[0]["destination"]["domain"].is_null(), "{:#}", q[0]);
    assert_eq!(
        daemon
            .everything_for(quiet)
            .iter()
            .filter(|r| r["event"]["kind"] == "alert")
            .count(),
        0
    );
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{exit}: {stderr}");
}
