//! Alerts end to end: real clients reach "AI" names on loopback peers, the daemon classifies
//! them against its lists and raises ECS alerts on stdout and in its store, deduplicated;
//! lists reload on SIGHUP and through `relaywatch reload`, and a broken list is refused.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{Daemon, Fixture, real_executable, relaywatch_bin, run_client};
use serde_json::{Value, json};

fn alerts_for(daemon: &Daemon, pid: u32) -> Vec<Value> {
    daemon.everything_for(pid).into_iter().filter(|r| r["event"]["kind"] == "alert").collect()
}

fn wait_alerts(daemon: &Daemon, pid: u32, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = alerts_for(daemon, pid);
        if a.len() >= n || Instant::now() > deadline {
            return a;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn curl_tls(name: &str, port: u16) -> u32 {
    let url = format!("https://{name}:{port}/v1/models");
    let resolve = format!("{name}:{port}:127.0.0.1");
    run_client(Command::new("curl").args(["-sS", "-k", "--max-time", "5", "-o", "/dev/null", "--resolve", &resolve, &url]))
}

/// A config file in its own directory, with a blocklist.d beside it.
struct Setup {
    dir: std::path::PathBuf,
}

impl Setup {
    fn new(tag: &str, extra: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("relaywatch-alerts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("blocklist.d")).unwrap();
        let config = format!(
            "[blocklists]\nfiles = [\"{}/blocklist.d/*.list\"]\n\n[alerts]\ndedupe_window_s = 3\n{extra}",
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
    let setup = Setup::new("provider", "");
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    let pid = curl_tls("api.openai.com", server.port);
    let alerts = wait_alerts(&daemon, pid, 1);
    assert_eq!(alerts.len(), 1, "{alerts:#?}\n{}", daemon.stderr());
    let a = &alerts[0];
    assert_eq!(a["event"]["type"], json!(["connection", "start"]));
    assert_eq!(a["event"]["severity"], 73);
    assert_eq!(a["rule"]["category"], "ai-provider");
    assert_eq!(a["destination"]["domain"], "api.openai.com");
    assert_eq!(a["tls"]["client"]["server_name"], "api.openai.com");
    assert_eq!(a["relaywatch"]["name_source"], "sni");
    assert_eq!(a["process"]["pid"], pid);
    assert_eq!(a["process"]["executable"], real_executable("/usr/bin/curl"));
    assert!(a["process"]["command_line"].as_str().is_some_and(|c| c.starts_with("curl ")), "{a:#}");
    assert_eq!(a["threat"]["enrichments"][0]["matched"]["field"], "destination.domain");
    assert_eq!(a["threat"]["enrichments"][0]["matched"]["atomic"], "api.openai.com");
    assert!(a["relaywatch"]["blocklist"]["file"].as_str().is_some_and(|f| f.contains("openai")), "{a:#}");
    assert!(a["host"]["name"].is_string(), "{a:#}");
    // Connection records were not asked for: only the alert is on stdout.
    assert!(daemon.everything_for(pid).iter().all(|r| r["event"]["kind"] == "alert"));

    // Two more within the window: no new alert, one summary with the count when it closes.
    let pid2 = curl_tls("api.openai.com", server.port);
    let pid3 = curl_tls("api.openai.com", server.port);
    std::thread::sleep(Duration::from_millis(500));
    assert!(alerts_for(&daemon, pid2).is_empty() && alerts_for(&daemon, pid3).is_empty());
    let summary = wait_alerts(&daemon, pid3, 1);
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(summary[0]["relaywatch"]["dedupe"]["repeats"], 2, "{:#}", summary[0]);
    assert_eq!(summary[0]["event"]["type"], json!(["connection", "info"]));

    // The store has both, for `relaywatch alerts`.
    let out = Command::new(relaywatch_bin())
        .args(["alerts", "--json", "--category", "ai-provider", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stored.len(), 2, "{stored:#?}");
}

#[test]
fn unlisted_names_raise_nothing() {
    let setup = Setup::new("quiet", "");
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    // gemini.com is a crypto exchange, not Google Gemini.
    let pids = [curl_tls("www.example.org", server.port), curl_tls("gemini.com", server.port)];
    std::thread::sleep(Duration::from_millis(2500));
    for pid in pids {
        assert!(alerts_for(&daemon, pid).is_empty(), "{:#?}", alerts_for(&daemon, pid));
    }
}

#[test]
fn lists_reload_on_sighup_and_through_the_cli_and_bad_lists_are_refused() {
    let setup = Setup::new("reload", "");
    let daemon = Daemon::start(&["--include-loopback", "--config", &setup.config()]);
    let server = Fixture::tls();
    assert!(alerts_for(&daemon, curl_tls("chat.relay-test.example", server.port)).is_empty());

    setup.write_list("relays.list", "# relaywatch: category=ai-relay source=test version=1\nfull:chat.relay-test.example\n");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.stderr().contains("SIGHUP: reloaded") {
        assert!(Instant::now() < deadline, "{}", daemon.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = curl_tls("chat.relay-test.example", server.port);
    let a = wait_alerts(&daemon, pid, 1);
    assert_eq!(a.len(), 1, "{}", daemon.stderr());
    assert_eq!(a[0]["rule"]["category"], "ai-relay");
    assert_eq!(a[0]["rule"]["name"], "full:chat.relay-test.example");
    assert_eq!(a[0]["relaywatch"]["blocklist"]["line"], 2);

    // A broken list: `relaywatch reload` fails naming FILE:LINE and the old lists stay.
    setup.write_list("broken.list", "# relaywatch: category=ai-relay\nregexp:([unclosed\n");
    let out = Command::new(relaywatch_bin()).args(["reload", "--socket"]).arg(&daemon.socket).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.list:2:"), "{err}");
    std::fs::remove_file(setup.dir.join("blocklist.d/broken.list")).unwrap();
    setup.write_list("more.list", "# relaywatch: category=ai-aggregator\ndomain:gateway-test.example\n");
    let out = Command::new(relaywatch_bin()).args(["reload", "--socket"]).arg(&daemon.socket).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = curl_tls("api.gateway-test.example", server.port);
    let a = wait_alerts(&daemon, pid, 1);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["rule"]["category"], "ai-aggregator");
    assert_eq!(a[0]["event"]["severity"], 47);
}
