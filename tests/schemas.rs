//! Every record kind the running daemon writes, in both output formats, checked against the
//! official schemas carried in `tests/schemas/`: ECS 9.4.0 (`relaywatch.*` is the product's own
//! namespace) and OCSF 1.8.0 class 4001 Network Activity with the profiles each event lists.
//!
//! One real scenario per format, in one daemon with loopback included, every connection logged,
//! a file sink, a 5 s dedupe window and the `ai-provider` category set to `block`: two curls to a
//! name on the built-in provider list (a TCP connection record each, an alert, the alerted
//! connection's end record, and the dedupe summary of the repeat), a curl over IPv6 and a python
//! UDP sender (connection records). The same checks run on what the file sink wrote and, for ECS,
//! on what the store gives back through `relaywatch alerts --json`.
use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, Fixture, LoopbackServer, PYTHON, TempDir, curl_tls, ecs_schema, ocsf_schema, poll,
    run_client,
};
use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ecs,
    Ocsf,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
        }
    }

    fn pid(self, r: &Value) -> Option<u64> {
        match self {
            Format::Ecs => r["process"]["pid"].as_u64(),
            Format::Ocsf => r["actor"]["process"]["pid"].as_u64(),
        }
    }

    /// Which kind of record this is, read the way a SIEM would.
    fn kind(self, r: &Value) -> String {
        match self {
            Format::Ecs => {
                let t: Vec<&str> = r["event"]["type"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match (r["event"]["kind"].as_str(), t.as_slice()) {
                    (Some("alert"), [.., "end"]) => "flow end".into(),
                    (Some("alert"), [.., "info"]) => "dedupe summary".into(),
                    (Some("alert"), _) => "alert".into(),
                    _ => format!(
                        "connection {}/{}",
                        r["network"]["transport"].as_str().unwrap_or("?"),
                        r["network"]["type"].as_str().unwrap_or("?")
                    ),
                }
            }
            Format::Ocsf => match (r["is_alert"].as_bool(), r["activity_id"].as_u64()) {
                (Some(true), Some(2)) => "flow end".into(),
                (Some(true), Some(6)) => "dedupe summary".into(),
                (Some(true), _) => "alert".into(),
                _ => format!(
                    "connection {}/ipv{}",
                    r["connection_info"]["protocol_name"]
                        .as_str()
                        .unwrap_or("?"),
                    r["connection_info"]["protocol_ver_id"]
                        .as_u64()
                        .unwrap_or(0)
                ),
            },
        }
    }

    fn violations(self, r: &Value) -> Vec<String> {
        match self {
            Format::Ecs => ecs_schema().violations(r),
            Format::Ocsf => ocsf_schema().violations(r),
        }
    }
}

const EXPECTED_KINDS: [&str; 6] = [
    "alert",
    "flow end",
    "dedupe summary",
    "connection tcp/ipv4",
    "connection tcp/ipv6",
    "connection udp/ipv4",
];

/// Every violation of every record, one line each, with the record's kind.
fn check_all(format: Format, records: &[Value], place: &str) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| {
            let kind = format.kind(r);
            format
                .violations(r)
                .into_iter()
                .map(move |v| format!("{place}, {kind}: {v}"))
        })
        .collect()
}

fn every_record_kind_is_valid(format: Format) {
    let dir = TempDir::new(&format!("schemas-{}", format.name()));
    let sink = dir.join("sink.jsonl");
    let config = dir.write(
        "config.toml",
        &format!(
            "[alerts]\ndedupe_window_s = 5\n\n[blocklists.actions]\nai-provider = \"block\"\n\n\
             [[sink]]\nkind = \"file\"\npath = \"{}\"\n",
            sink.display()
        ),
    );
    let mut args = vec![
        "--include-loopback",
        "--log-connections",
        "--config",
        config.to_str().unwrap(),
    ];
    if format == Format::Ocsf {
        args.extend(["--format", "ocsf"]);
    }
    let daemon = Daemon::start(&args);

    let server = Fixture::tls();
    // A name of this run's own: no other test's curl shares its dedupe window.
    let name = format!(
        "schema-{}-{}.api.openai.com",
        format.name(),
        std::process::id()
    );
    let first = curl_tls(&name, server.port, "/v1/models");
    let repeat = curl_tls(&name, server.port, "/v1/models");
    // The IPv6 client runs in a cgroup named as Docker names a container's: its records carry
    // `container.id` (OCSF: the container profile, on actor.process).
    let container_id = format!(
        "{:064x}",
        u64::from(std::process::id()) << 8 | format as u64
    );
    let cgroup = Cgroup::create(&format!("docker-{container_id}.scope"));
    let v6 = LoopbackServer::start("::1");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec \"$@\"",
        cgroup.0.display()
    );
    let ipv6 = run_client(Command::new("sh").args(["-c", &script, "sh"]).args([
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        &format!("http://[::1]:{}/", v6.port),
    ]));
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,sys\nu=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         [u.sendto(b'q', ('127.0.0.1', int(sys.argv[1]))) for _ in range(3)]",
        &receiver.local_addr().unwrap().port().to_string(),
    ]));
    let ours = [first, repeat, ipv6, udp].map(u64::from);

    let expected: BTreeSet<String> = EXPECTED_KINDS.iter().map(|k| (*k).to_owned()).collect();
    let records = poll(
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let records: Vec<Value> = daemon
                .all_lines()
                .into_iter()
                .filter(|r| format.pid(r).is_some_and(|p| ours.contains(&p)))
                .collect();
            let seen: BTreeSet<String> = records.iter().map(|r| format.kind(r)).collect();
            if expected.is_subset(&seen) {
                Ok(records)
            } else {
                Err(format!(
                    "{} records: seen {seen:?}, expected {expected:?}: {records:#?}\n{}",
                    format.name(),
                    daemon.stderr()
                ))
            }
        },
    );
    // The alert is the one a block category gives (not enforced yet: seen, not refused).
    let alert = records.iter().find(|r| format.kind(r) == "alert").unwrap();
    match format {
        Format::Ecs => {
            assert_eq!(alert["relaywatch"]["action"], "block", "{alert:#}");
            assert_eq!(alert["ecs"]["version"], "9.4.0", "{alert:#}");
        }
        Format::Ocsf => {
            assert_eq!(
                alert["unmapped"]["relaywatch"]["action"], "block",
                "{alert:#}"
            );
            assert_eq!(alert["action_id"], 3, "{alert:#}");
            assert_eq!(alert["tls"]["sni"], name.as_str(), "{alert:#}");
        }
    }

    let in_container = records
        .iter()
        .find(|r| format.kind(r) == "connection tcp/ipv6")
        .unwrap();
    match format {
        Format::Ecs => assert_eq!(in_container["container"]["id"], container_id.as_str()),
        Format::Ocsf => {
            assert_eq!(
                in_container["actor"]["process"]["container"]["uid"],
                container_id.as_str()
            );
            assert!(
                in_container["metadata"]["profiles"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::from("container")),
                "{in_container:#}"
            );
        }
    }

    let mut problems = check_all(format, &records, "stdout");

    // The file sink writes the same records in the configured format.
    let alerts_in_sink: Vec<Value> = poll(
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let text = std::fs::read_to_string(&sink).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .filter(|l| l.contains(&name))
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= 3 {
                Ok(lines)
            } else {
                Err(format!(
                    "sink has {} of 3 records for {name}: {text}",
                    lines.len()
                ))
            }
        },
    );
    problems.extend(check_all(format, &alerts_in_sink, "file sink"));

    // The store keeps ECS whatever the output format; `relaywatch alerts --json` gives it back.
    let out = daemon.cli(&["alerts", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["destination"]["domain"] == name.as_str())
        .collect();
    assert!(!stored.is_empty(), "no stored alert for {name}");
    problems.extend(check_all(Format::Ecs, &stored, "store"));

    assert!(
        problems.is_empty(),
        "{} schema violations:\n{}\n\nrecords: {records:#?}",
        problems.len(),
        problems.join("\n")
    );
}

/// A cgroup of the test's own under the cgroup2 root, removed (once empty) however the test ends.
struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn create(name: &str) -> Cgroup {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let root = mounts
            .lines()
            .find(|l| l.split(' ').nth(2) == Some("cgroup2"))
            .and_then(|l| l.split(' ').nth(1))
            .expect("a cgroup2 mount (the agent needs one)");
        let path = std::path::Path::new(root).join(name);
        std::fs::create_dir(&path).unwrap();
        Cgroup(path)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn every_ecs_record_kind_is_valid_ecs_9_4_0() {
    every_record_kind_is_valid(Format::Ecs);
}

#[test]
fn every_ocsf_record_kind_is_valid_ocsf_1_8_0_network_activity() {
    every_record_kind_is_valid(Format::Ocsf);
}
