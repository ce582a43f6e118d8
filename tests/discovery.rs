//! Relay discovery beyond any list: a process configured with a base-URL variable
//! (OPENAI_BASE_URL...) names a relay that no list knows. Real processes with real environments,
//! real TLS to a loopback server and real TCP to a test host in its own network namespace; the
//! daemon reads only the named variables and keeps only the URL's host: the secrets set beside
//! them never reach its output, its log or its store.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use integration_tests::{
    Daemon, Fixture, KillOnDrop, TestNet, curl_resolving, fresh_dir, relaywatch_bin, run_client,
    wait_until,
};
use serde_json::{Value, json};

/// Secrets set next to the base URLs (and inside one): none may appear anywhere.
const SECRETS: &[&str] = &[
    "sk-proj-NEVERLOGGED1",
    "pw-NEVERLOGGED2",
    "q-NEVERLOGGED3",
    "hf_NEVERLOGGED4",
];

fn alerts(daemon: &Daemon, pid: u32) -> Vec<Value> {
    daemon
        .everything_for(pid)
        .into_iter()
        .filter(|r| {
            r["event"]["kind"] == "alert" && r["event"]["type"] == json!(["connection", "start"])
        })
        .collect()
}

fn wait_alert(daemon: &Daemon, pid: u32) -> Value {
    wait_until("an alert for the client", Duration::from_secs(10), || {
        !alerts(daemon, pid).is_empty()
    });
    alerts(daemon, pid).remove(0)
}

fn config_dir(tag: &str, text: &str) -> String {
    let dir = fresh_dir(&format!("discovery-{tag}"));
    let path = dir.join("config.toml");
    // No extra lists: the built-in ones only. Every alert is written (no dedupe window).
    std::fs::write(
        &path,
        format!("[blocklists]\nfiles = []\n[alerts]\ndedupe_window_s = 0\n{text}"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn relaywatch(daemon: &Daemon, args: &[&str]) -> (bool, String) {
    let out = daemon.cli(args);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn status(daemon: &Daemon) -> Value {
    let (ok, out) = relaywatch(daemon, &["status", "--json"]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

fn discovered(daemon: &Daemon, host: &str) -> Option<Value> {
    host_in(&status(daemon), host)
}

/// The entry of `host` in a status's `relay_discovery.hosts`.
fn host_in(status: &Value, host: &str) -> Option<Value> {
    status["relay_discovery"]["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
}

/// curl to `name` (resolved to the loopback TLS server) with `env` set.
fn curl(name: &str, port: u16, env: &[(&str, String)]) -> u32 {
    let mut cmd = curl_resolving(name, port, true);
    cmd.arg(format!("https://{name}:{port}/v1/models"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_client(&mut cmd)
}

/// The positive control for a "nothing happened" check: a curl to a listed name no other
/// connection uses (`control-PID-N.api.openai.com`, under the built-in `openai.com` rule), started
/// after the clients under test, whose alert must arrive. Once it has, the daemon has judged
/// every connection made before it. Returns the control's alert.
fn control_alert(daemon: &Daemon, port: u16) -> Value {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("control-{}-{n}.api.openai.com", std::process::id());
    let pid = curl(&name, port, &[]);
    let a = wait_alert(daemon, pid);
    assert_eq!(
        (
            a["destination"]["domain"].as_str(),
            a["rule"]["category"].as_str()
        ),
        (Some(name.as_str()), Some("ai-provider")),
        "the control connection's alert: {a:#}"
    );
    a
}

/// The daemon's status from a refresh (the event loop makes one a second) done after `control`
/// was raised: its `last_alert` is the control or an alert the daemon wrote after it (other
/// tests' connections raise alerts too). A snapshot from before the control could not show what
/// the connections judged before the control did to the status.
fn status_after(daemon: &Daemon, control: &Value) -> Value {
    let mut last = Value::Null;
    wait_until(
        "a status refreshed after the control alert",
        Duration::from_secs(10),
        || {
            last = status(daemon);
            let lines = daemon.all_lines();
            lines
                .iter()
                .position(|l| l == control)
                .is_some_and(|at| lines[at..].contains(&last["last_alert"]))
        },
    );
    last
}

/// Every byte the daemon wrote or stored: stdout records, stderr log, files under its state dir.
fn assert_no_secret_anywhere(daemon: &Daemon) {
    let mut haystacks = vec![(
        "stdout".to_string(),
        daemon
            .all_lines()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )];
    haystacks.push(("stderr".into(), daemon.stderr()));
    for entry in std::fs::read_dir(&daemon.state_dir).unwrap().flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            haystacks.push((
                entry.path().display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    for (what, text) in &haystacks {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} found in {what}");
        }
        assert!(
            !text.contains("OPENAI_API_KEY"),
            "another variable's name found in {what}"
        );
    }
}

#[test]
fn a_base_url_variable_makes_its_host_a_suspected_relay_for_every_process() {
    let daemon = Daemon::start(&["--include-loopback", "--config", &config_dir("relay", "")]);
    let server = Fixture::tls();
    let relay = "gpt-bridge.relay.test";
    let configured = [
        // The key sits in the URL's user info and query too: only the host may survive.
        (
            "OPENAI_BASE_URL",
            format!(
                "https://user:{}@{relay}:{}/v1?key={}",
                SECRETS[1], server.port, SECRETS[2]
            ),
        ),
        ("OPENAI_API_KEY", SECRETS[0].to_string()),
        ("HF_TOKEN", SECRETS[3].to_string()),
        // A first-party provider in a base-URL variable is not a relay.
        (
            "ANTHROPIC_BASE_URL",
            "https://api.anthropic.com".to_string(),
        ),
    ];
    let pid = curl(relay, server.port, &configured);
    let a = wait_alert(&daemon, pid);
    assert_eq!(a["rule"]["category"], "ai-relay", "{a:#}");
    assert_eq!(a["relaywatch"]["name_source"], "relay_config", "{a:#}");
    assert_eq!(a["destination"]["domain"], relay);
    assert_eq!(
        a["tls"]["client"]["server_name"], relay,
        "the SNI stays as evidence"
    );
    assert_eq!(a["event"]["severity"], 73);
    assert_eq!(a["rule"]["ruleset"], "relay-discovery");
    assert_eq!(a["rule"]["name"], format!("relay_config:{relay}"));
    assert_eq!(
        a["relaywatch"]["relay_config"]["variable"],
        "OPENAI_BASE_URL"
    );
    assert_eq!(a["relaywatch"]["relay_config"]["host"], relay);
    assert_eq!(a["relaywatch"]["relay_config"]["pid"], pid);
    assert_eq!(
        a["threat"]["enrichments"][0]["matched"]["field"],
        "destination.domain"
    );
    assert!(
        a["relaywatch"]["blocklist"].is_null(),
        "no list matched: {a:#}"
    );

    // Another program without the variable reaches the same relay: the host is suspected
    // host-wide, with the evidence of the process that named it.
    let script = "import socket,ssl,sys\n\
        c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE\n\
        s=c.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[2]))), server_hostname=sys.argv[1]); s.close()\n";
    let py =
        run_client(Command::new("python3").args(["-c", script, relay, &server.port.to_string()]));
    let b = wait_alert(&daemon, py);
    assert_eq!(
        (
            b["rule"]["category"].as_str(),
            b["relaywatch"]["name_source"].as_str()
        ),
        (Some("ai-relay"), Some("relay_config")),
        "{b:#}"
    );
    assert_eq!(b["relaywatch"]["relay_config"]["pid"], pid);

    // A name nobody configured stays quiet: once the control (started after it) has alerted,
    // its connection has been judged.
    let quiet = curl("unconfigured.relay.test", server.port, &[]);
    let control = control_alert(&daemon, server.port);
    assert!(
        alerts(&daemon, quiet).is_empty(),
        "{:#?}",
        alerts(&daemon, quiet)
    );

    // Status lists every host seen, with what it is (from a refresh after the control).
    let st = status_after(&daemon, &control);
    let h = host_in(&st, relay).unwrap_or_else(|| panic!("relay host in status: {st:#}"));
    assert_eq!(
        (
            h["status"].as_str(),
            h["variable"].as_str(),
            h["pid"].as_u64()
        ),
        (
            Some("suspected-relay"),
            Some("OPENAI_BASE_URL"),
            Some(u64::from(pid))
        ),
        "{h:#}"
    );
    assert_eq!(
        host_in(&st, "api.anthropic.com")
            .unwrap_or_else(|| panic!("first-party host in status: {st:#}"))["status"],
        "listed"
    );
    let (ok, table) = relaywatch(&daemon, &["blocklist", "list"]);
    assert!(ok, "{table}");
    assert!(
        table.contains("builtin:") && table.contains(relay) && table.contains("suspected-relay"),
        "{table}"
    );

    // The stored alerts, the store file, stdout and the log: no secret, no other variable.
    let (ok, stored) = relaywatch(&daemon, &["alerts", "--json", "--category", "ai-relay"]);
    assert!(ok, "{stored}");
    let ours = stored
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| {
            a["event"]["type"] == json!(["connection", "start"])
                && (a["process"]["pid"] == pid || a["process"]["pid"] == py)
        })
        .count();
    assert_eq!(ours, 2, "{stored}");
    for secret in SECRETS {
        assert!(!stored.contains(secret));
    }
    let (status_ok, text) = relaywatch(&daemon, &["status"]);
    assert!(
        status_ok && !SECRETS.iter().any(|s| text.contains(s)),
        "{text}"
    );
    let (_, log) = daemon.stop();
    assert!(!SECRETS.iter().any(|s| log.contains(s)));
}

#[test]
fn processes_running_before_the_agent_are_read_at_start_and_an_address_relay_matches_by_address() {
    let net = TestNet::create(60);
    // Started before the daemon: found by the start-up scan of /proc.
    // Killed on drop, also when an assertion fails.
    let early = KillOnDrop(
        Command::new("sleep")
            .arg("60")
            .env("OPENAI_API_BASE", format!("http://{}:9/v1", net.peer_v4))
            .env("OPENAI_API_KEY", SECRETS[0])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let early_pid = early.0.id();
    let daemon = Daemon::start(&["--config", &config_dir("early", "")]);
    wait_until(
        "the early process's host in status",
        Duration::from_secs(10),
        || discovered(&daemon, &net.peer_v4).is_some(),
    );
    let h = discovered(&daemon, &net.peer_v4).unwrap();
    assert_eq!(
        (
            h["pid"].as_u64(),
            h["variable"].as_str(),
            h["status"].as_str()
        ),
        (
            Some(u64::from(early_pid)),
            Some("OPENAI_API_BASE"),
            Some("suspected-relay")
        )
    );

    // A bare TCP connection to that address (no name on the wire): classified by the address.
    let script = "import socket,sys\ns=socket.socket(); s.settimeout(2)\ntry: s.connect((sys.argv[1], 9))\nexcept OSError: pass\n";
    let pid = run_client(Command::new("python3").args(["-c", script, &net.peer_v4]));
    let a = wait_alert(&daemon, pid);
    assert_eq!(a["rule"]["category"], "ai-relay", "{a:#}");
    assert_eq!(a["relaywatch"]["name_source"], "relay_config");
    assert_eq!(a["destination"]["ip"], net.peer_v4.as_str());
    assert_eq!(
        a["threat"]["enrichments"][0]["matched"]["field"],
        "destination.ip"
    );
    assert_eq!(a["relaywatch"]["relay_config"]["pid"], early_pid);
    assert!(a["destination"]["domain"].is_null(), "{a:#}");
    drop(early);
    assert_no_secret_anywhere(&daemon);
}

#[test]
fn discovery_off_or_an_allow_rule_keeps_a_configured_host_quiet() {
    let server = Fixture::tls();
    let relay = "bridge.relay.test";
    let env = [("OPENAI_BASE_URL", format!("https://{relay}/v1"))];

    let off = Daemon::start(&[
        "--include-loopback",
        "--config",
        &config_dir("off", "[discovery]\nenabled = false\n"),
    ]);
    let pid = curl(relay, server.port, &env);
    // The control, started after the client: once it has alerted, the client's connection (and
    // the variables of its process) have been through this daemon.
    let control = control_alert(&off, server.port);
    assert!(alerts(&off, pid).is_empty(), "{:#?}", alerts(&off, pid));
    let st = status_after(&off, &control);
    assert_eq!(st["relay_discovery"]["hosts"], json!([]), "{st:#}");
    drop(off);

    // A sanctioned gateway on an allow list: seen, shown as allowed, never alerted.
    let config = config_dir("allow", "");
    let dir = std::path::Path::new(&config).parent().unwrap();
    std::fs::write(
        dir.join("allow.list"),
        format!("# relaywatch: category=allow\nfull:{relay}\n"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "files = []",
        &format!("files = [\"{}/allow.list\"]", dir.display()),
    );
    std::fs::write(&config, text).unwrap();
    let allowed = Daemon::start(&["--include-loopback", "--config", &config]);
    let pid = curl(relay, server.port, &env);
    wait_until(
        "the allowed host in status",
        Duration::from_secs(10),
        || discovered(&allowed, relay).is_some(),
    );
    // The host in the status says the variable was read, not that the connection was judged:
    // the control, started after the client, says that.
    control_alert(&allowed, server.port);
    assert!(
        alerts(&allowed, pid).is_empty(),
        "{:#?}",
        alerts(&allowed, pid)
    );
    assert_eq!(discovered(&allowed, relay).unwrap()["status"], "allowed");
}

#[test]
fn a_secret_looking_variable_in_the_configuration_is_refused() {
    let config = config_dir(
        "refused",
        "[discovery]\nvariables = [\"OPENAI_BASE_URL\", \"OPENAI_API_KEY\"]\n",
    );
    let out = Command::new(relaywatch_bin())
        .args(["config", "check", &config])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("discovery.variables[1]") && text.contains("looks like a secret"),
        "{text}"
    );
}
