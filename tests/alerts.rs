//! Alerts end to end: real clients reach "AI" names on loopback peers, the daemon classifies
//! them against its lists and raises ECS alerts on stdout and in its store, deduplicated;
//! lists reload on SIGHUP and through `relaywatch reload`, and a broken list is refused.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, Fixture, free_port, fresh_dir, poll, real_executable, run_client, text,
};
use serde_json::{Value, json};

/// An alert or a dedupe summary (not a follow-up "connection end" record).
fn is_alert(r: &Value) -> bool {
    r["event"]["kind"] == "alert" && r["event"]["type"] != json!(["connection", "end"])
}

/// Alerts and dedupe summaries of `pid`.
fn alerts_for(daemon: &Daemon, pid: u32) -> Vec<Value> {
    daemon
        .everything_for(pid)
        .into_iter()
        .filter(is_alert)
        .collect()
}

fn wait_alerts(daemon: &Daemon, pid: u32, n: usize) -> Vec<Value> {
    daemon.wait_matching(pid, n, Duration::from_secs(10), is_alert)
}

fn curl_tls(name: &str, port: u16) -> u32 {
    integration_tests::curl_tls(name, port, "/v1/models")
}

/// The positive control for a "nothing happened" check: a curl to a listed name no other
/// connection uses (so no dedupe window holds it back), started after the clients under test,
/// whose alert must arrive. Once it has, the daemon has judged every connection made before it.
fn control_alert(daemon: &Daemon, port: u16) -> Value {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("control-{}-{n}.api.openai.com", std::process::id());
    let pid = curl_tls(&name, port);
    let alerts = wait_alerts(daemon, pid, 1);
    assert_eq!(
        alerts.len(),
        1,
        "the control connection to {name} raised no alert: {alerts:#?}\n{}",
        daemon.stderr()
    );
    assert_eq!(alerts[0]["destination"]["domain"], name.as_str());
    alerts[0].clone()
}

/// A config file in its own directory, with a blocklist.d beside it.
struct Setup {
    dir: std::path::PathBuf,
}

impl Setup {
    fn new(tag: &str, extra: &str) -> Setup {
        Setup::with_window(tag, extra, 3)
    }

    /// With a dedupe window of `window_s` seconds.
    fn with_window(tag: &str, extra: &str, window_s: u64) -> Setup {
        let dir = fresh_dir(&format!("alerts-{tag}"));
        std::fs::create_dir_all(dir.join("blocklist.d")).unwrap();
        let config = format!(
            "[blocklists]\nfiles = [\"{}/blocklist.d/*.list\"]\n\n[alerts]\ndedupe_window_s = {window_s}\n{extra}",
            dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Setup { dir }
    }

    fn config(&self) -> String {
        self.dir.join("config.toml").to_string_lossy().into_owned()
    }

    fn write_list(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("blocklist.d").join(name), text).unwrap();
    }
}

#[test]
fn tls_connection_to_an_ai_provider_raises_one_ecs_alert_then_a_summary() {
    // A window long enough that the repeats and the control below all fall inside it on a busy
    // machine.
    let setup = Setup::with_window("provider", "", 10);
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    // A name no other test of this file connects to: every test's daemon sees every test's
    // connections, and another curl to the same name would share this dedupe window.
    let name = format!("dedupe-{}.api.openai.com", std::process::id());
    let name = name.as_str();
    let pid = curl_tls(name, server.port);
    let alerts = wait_alerts(&daemon, pid, 1);
    assert_eq!(alerts.len(), 1, "{alerts:#?}\n{}", daemon.stderr());
    let a = &alerts[0];
    assert_eq!(a["event"]["type"], json!(["connection", "start"]));
    assert_eq!(a["event"]["severity"], 73);
    assert_eq!(a["rule"]["category"], "ai-provider");
    assert_eq!(a["destination"]["domain"], name);
    assert_eq!(a["tls"]["client"]["server_name"], name);
    assert_eq!(a["relaywatch"]["name_source"], "sni");
    assert_eq!(a["process"]["pid"], pid);
    assert_eq!(a["process"]["executable"], real_executable("/usr/bin/curl"));
    assert!(
        a["process"]["command_line"]
            .as_str()
            .is_some_and(|c| c.starts_with("curl ")),
        "{a:#}"
    );
    // Ancestry: curl's parent is this test binary, and the chain ends at pid 1.
    assert_eq!(a["process"]["parent"]["pid"], std::process::id());
    assert_eq!(
        a["process"]["parent"]["executable"],
        std::env::current_exe().unwrap().to_string_lossy().as_ref(),
        "{a:#}"
    );
    let chain = a["relaywatch"]["process"]["ancestors"]
        .as_array()
        .expect("ancestors");
    assert_eq!(chain[0]["pid"], std::process::id());
    assert_eq!(chain.last().unwrap()["pid"], 1, "{a:#}");
    assert_eq!(
        a["threat"]["enrichments"][0]["matched"]["field"],
        "destination.domain"
    );
    assert_eq!(a["threat"]["enrichments"][0]["matched"]["atomic"], name);
    assert!(
        a["relaywatch"]["blocklist"]["file"]
            .as_str()
            .is_some_and(|f| f.contains("openai")),
        "{a:#}"
    );
    assert!(a["host"]["name"].is_string(), "{a:#}");
    // Connection records were not asked for: only the alert is on stdout.
    assert!(
        daemon
            .everything_for(pid)
            .iter()
            .all(|r| r["event"]["kind"] == "alert")
    );

    // Two more within the window: no new alert, one summary with the count when it closes.
    let pid2 = curl_tls(name, server.port);
    let pid3 = curl_tls(name, server.port);
    control_alert(&daemon, server.port);
    let starts = |pid| {
        daemon
            .everything_for(pid)
            .into_iter()
            .filter(|r| r["event"]["type"] == json!(["connection", "start"]))
            .count()
    };
    assert_eq!(
        (starts(pid2), starts(pid3)),
        (0, 0),
        "repeats raise no alert"
    );
    // The summary comes when the window closes.
    let summary = daemon.wait_matching(pid3, 1, Duration::from_secs(30), is_alert);
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(
        summary[0]["relaywatch"]["dedupe"]["repeats"], 2,
        "{:#}",
        summary[0]
    );
    assert_eq!(summary[0]["event"]["type"], json!(["connection", "info"]));

    // The first connection's end record (its volume) came too; repeats have none.
    let ends: Vec<Value> = daemon
        .everything_for(pid)
        .into_iter()
        .filter(|r| r["event"]["type"] == json!(["connection", "end"]))
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert!(
        ends[0]["source"]["bytes"].as_u64().is_some_and(|b| b > 200),
        "{:#}",
        ends[0]
    );
    assert!(daemon.everything_for(pid2).is_empty());

    // The store has the alert, its end record and the summary, for `relaywatch alerts` (it
    // commits in the background: wait for it).
    let stored = poll(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let out = daemon.cli(&["alerts", "--json", "--category", "ai-provider"]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            // Only this test's name: the daemon also sees concurrent tests' loopback connections.
            let stored: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|a| a["destination"]["domain"] == name)
                .collect();
            if stored.len() >= 3 {
                Ok(stored)
            } else {
                Err(format!("{} of 3 stored: {stored:#?}", stored.len()))
            }
        },
    );
    assert_eq!(stored.len(), 3, "{stored:#?}");
}

#[test]
fn unlisted_names_raise_nothing() {
    let setup = Setup::new("quiet", "");
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    // gemini.com is a crypto exchange, not Google Gemini.
    let pids = [
        curl_tls("www.example.org", server.port),
        curl_tls("gemini.com", server.port),
    ];
    control_alert(&daemon, server.port);
    for pid in pids {
        assert!(
            alerts_for(&daemon, pid).is_empty(),
            "{:#?}",
            alerts_for(&daemon, pid)
        );
    }
}

#[test]
fn lists_reload_on_sighup_and_through_the_cli_and_bad_lists_are_refused() {
    let setup = Setup::new("reload", "");
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    // Names of this run's own (the pid): another run's daemon would share their dedupe windows.
    let relay = format!("chat.relay-test-{}.example", std::process::id());
    let gateway = format!("gateway-test-{}.example", std::process::id());
    let before = curl_tls(&relay, server.port);
    control_alert(&daemon, server.port);
    assert!(alerts_for(&daemon, before).is_empty());

    setup.write_list(
        "relays.list",
        &format!("# relaywatch: category=ai-relay source=test version=1\nfull:{relay}\n"),
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    poll(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let stderr = daemon.stderr();
            if stderr.contains("SIGHUP: reloaded") {
                Ok(())
            } else {
                Err(stderr)
            }
        },
    );
    let pid = curl_tls(&relay, server.port);
    let a = wait_alerts(&daemon, pid, 1);
    assert_eq!(a.len(), 1, "{}", daemon.stderr());
    assert_eq!(a[0]["rule"]["category"], "ai-relay");
    assert_eq!(a[0]["rule"]["name"], format!("full:{relay}"));
    assert_eq!(a[0]["relaywatch"]["blocklist"]["line"], 2);

    // A broken list: `relaywatch reload` fails naming FILE:LINE and the old lists stay.
    setup.write_list(
        "broken.list",
        "# relaywatch: category=ai-relay\nregexp:([unclosed\n",
    );
    let out = daemon.cli(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.list:2:"), "{err}");
    // `relaywatch status` shows the refusal and the lists still active (refreshed every second).
    let status = poll(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(200),
        || {
            let out = daemon.cli(&["status", "--json"]);
            let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if status["blocklists"]["last_error"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("broken.list:2:"))
            {
                Ok(status)
            } else {
                Err(format!("{status:#}"))
            }
        },
    );
    let active = status["blocklists"]["active"].as_array().unwrap();
    let relays = active
        .iter()
        .find(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("relays.list"))
        })
        .expect("relays.list active");
    assert_eq!(relays["rules"], 1, "{relays}");
    assert_eq!(relays["category"], "ai-relay");
    assert_eq!(
        relays["sha256"].as_str().map(str::len),
        Some(64),
        "{relays}"
    );
    assert!(
        active.iter().any(|l| l["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("builtin:"))),
        "built-in lists active"
    );
    assert!(status["blocklists"]["loaded_at"].is_string());
    std::fs::remove_file(setup.dir.join("blocklist.d/broken.list")).unwrap();
    setup.write_list(
        "more.list",
        &format!("# relaywatch: category=ai-aggregator\ndomain:{gateway}\n"),
    );
    let out = daemon.cli(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = curl_tls(&format!("api.{gateway}"), server.port);
    let a = wait_alerts(&daemon, pid, 1);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["rule"]["category"], "ai-aggregator");
    assert_eq!(a[0]["event"]["severity"], 47);
}

#[test]
fn a_closed_alerted_connection_reports_its_volume() {
    let setup = Setup::new("volume", "");
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::start(&["bulk", "50000"]);
    // Plain HTTP to a name under api.anthropic.com: named by its Host header, then 100,000 bytes of body
    // up and 50,000 down, sent after a pause so that the whole transfer is counted.
    let script = "import socket,sys,time\n\
        s=socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
        body=b'p'*100000\n\
        s.sendall(b'POST /v1/messages HTTP/1.1\\r\\nHost: %s\\r\\nContent-Length: %d\\r\\n\\r\\n' % (sys.argv[2].encode(), len(body)))\n\
        time.sleep(0.5)\n\
        s.sendall(body)\n\
        got=b''\n\
        while True:\n\
        \x20   c=s.recv(65536)\n\
        \x20   if not c: break\n\
        \x20   got+=c\n\
        assert len(got) > 50000, len(got)\n\
        s.close()";
    // A name of this run's own under anthropic.com: other python clients would share its
    // dedupe window.
    let host = format!("volume-{}.api.anthropic.com", std::process::id());
    let pid = run_client(Command::new(integration_tests::PYTHON).args([
        "-c",
        script,
        &server.port.to_string(),
        &host,
    ]));
    let end = poll(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            daemon
                .everything_for(pid)
                .into_iter()
                .find(|a| a["event"]["type"] == json!(["connection", "end"]))
                .ok_or_else(|| {
                    format!(
                        "no end record: {:#?}\n{}",
                        daemon.everything_for(pid),
                        daemon.stderr()
                    )
                })
        },
    );
    assert_eq!(end["rule"]["category"], "ai-provider");
    assert_eq!(end["destination"]["domain"], host.as_str());
    assert_eq!(end["relaywatch"]["name_source"], "http_host");
    let sent = end["source"]["bytes"].as_u64().unwrap();
    let received = end["destination"]["bytes"].as_u64().unwrap();
    // Request head (~80 bytes) + body; response head (~70 bytes) + body.
    assert!((100_000..100_200).contains(&sent), "sent {sent}: {end:#}");
    assert!(
        (50_000..50_200).contains(&received),
        "received {received}: {end:#}"
    );
    assert!(
        end["event"]["duration"]
            .as_u64()
            .is_some_and(|d| d >= 500_000_000),
        "{end:#}"
    );
}

/// The agent's alerts reach a real rsyslogd over TCP (RFC 5424, octet counting) with the
/// alert's facts in the structured data; the same run also writes a file sink.
#[test]
fn the_daemon_delivers_alerts_to_rsyslog_and_a_file_sink() {
    let port = free_port();
    let setup = Setup::new(
        "syslog",
        &format!(
            "\n[[sink]]\nkind = \"syslog\"\nurl = \"tcp://127.0.0.1:{port}\"\n\n[[sink]]\nkind = \"file\"\npath = \"{}/alerts.jsonl\"\n",
            std::env::temp_dir()
                .join(format!("relaywatch-alerts-syslog-{}", std::process::id()))
                .display()
        ),
    );
    let rsyslog = integration_tests::Rsyslog::start(
        &setup.dir,
        "",
        &format!(
            "module(load=\"imtcp\")\nruleset(name=\"in\") {{ action(type=\"omfile\" file=\"{}/received.log\" template=\"raw\") }}\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"in\")",
            setup.dir.display()
        ),
        port,
    );
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    // A name of this test's own: the daemon also alerts on other tests' curls, and the lines it
    // sends are read by this name, never by their order.
    let name = format!("syslog-{}.api.openai.com", std::process::id());
    let pid = curl_tls(&name, server.port);
    assert_eq!(wait_alerts(&daemon, pid, 1).len(), 1);

    let line = rsyslog.line_containing("received.log", &format!("domain=\"{name}\""));
    assert!(line.starts_with("<"), "{line}");
    let (_, rest) = line.split_once(">1 ").unwrap();
    let fields: Vec<&str> = rest.splitn(6, ' ').collect();
    assert_eq!(fields[2], "relaywatch", "APP-NAME: {line}");
    assert_eq!(fields[4], "AI_EGRESS", "MSGID: {line}");
    let sd = fields[5];
    for param in [
        "category=\"ai-provider\"",
        &format!("pid=\"{pid}\""),
        &format!("domain=\"{name}\""),
        "name_source=\"sni\"",
    ] {
        assert!(sd.contains(param), "{param} missing from {line}");
    }
    let json_start = line.find("{\"").expect("JSON MSG");
    let msg: Value = serde_json::from_str(&line[json_start..]).unwrap();
    assert_eq!(msg["process"]["pid"], pid);
    assert_eq!(msg["rule"]["category"], "ai-provider");

    let file = std::env::temp_dir()
        .join(format!("relaywatch-alerts-syslog-{}", std::process::id()))
        .join("alerts.jsonl");
    integration_tests::wait_until("the file sink", Duration::from_secs(10), || {
        std::fs::read_to_string(&file).is_ok_and(|s| s.contains(&name))
    });
    let text = std::fs::read_to_string(&file).unwrap();
    let stored: Value =
        serde_json::from_str(text.lines().find(|l| l.contains(&name)).unwrap()).unwrap();
    assert_eq!(stored["process"]["pid"], pid);
    assert_eq!(stored["destination"]["domain"], name.as_str());
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
}

/// `--format ocsf`: stdout carries OCSF 1.x Network Activity alerts for the same real scenario.
#[test]
fn ocsf_format_writes_network_activity_alerts() {
    let setup = Setup::new("ocsf", "");
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--format",
        "ocsf",
        "--config",
        &setup.config(),
    ]);
    let server = Fixture::tls();
    // A name of this test's own, so no other test's curl opens its dedupe window first.
    let name = format!("ocsf-{}.api.anthropic.com", std::process::id());
    let pid = curl_tls(&name, server.port);
    let alert = poll(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            daemon
                .all_lines()
                .into_iter()
                .find(|r| r["actor"]["process"]["pid"] == pid)
                .ok_or_else(|| format!("no OCSF alert for {pid}: {}", daemon.stderr()))
        },
    );
    assert_eq!(alert["class_uid"], 4001, "{alert:#}");
    assert_eq!(alert["category_uid"], 4);
    assert_eq!(alert["type_uid"], 400101);
    assert_eq!(alert["tls"]["sni"], name.as_str());
    assert_eq!(alert["dst_endpoint"]["port"], server.port);
    assert_eq!(alert["is_alert"], true);
    assert_eq!(
        alert["actor"]["process"]["file"]["path"],
        real_executable("/usr/bin/curl")
    );
    let profiles = alert["metadata"]["profiles"].as_array().unwrap();
    assert!(
        profiles.contains(&json!("host")) && profiles.contains(&json!("security_control")),
        "{profiles:?}"
    );
    for required in [
        "activity_id",
        "severity_id",
        "time",
        "metadata",
        "dst_endpoint",
        "action_id",
        "disposition_id",
    ] {
        assert!(!alert[required].is_null(), "{required} missing: {alert:#}");
    }
}

/// With `[metrics] enabled`, a real scrape of the Prometheus endpoint shows the events seen
/// and the alerts raised by category.
#[test]
fn prometheus_metrics_count_events_and_alerts() {
    let port = free_port();
    let setup = Setup::new(
        "metrics",
        &format!("\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    // A name of its own: other tests' connections to api.openai.com (this daemon sees all
    // loopback traffic) must not dedupe this one away.
    let pid = curl_tls(
        &format!("metrics-{}.api.openai.com", std::process::id()),
        server.port,
    );
    assert_eq!(wait_alerts(&daemon, pid, 1).len(), 1);
    let scrape = || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    // Counters are refreshed every second.
    let text = poll(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let text = scrape();
            if value(&text, "relaywatch_events_total").is_some_and(|v| v >= 1.0) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // At least this test's alert (concurrent tests may add theirs).
    assert!(
        value(&text, "relaywatch_alerts_total{category=\"ai-provider\"}").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        value(&text, "relaywatch_ringbuf_fill_ratio").is_some_and(|v| (0.0..=1.0).contains(&v)),
        "{text}"
    );
}
