//! `relaywatch blocklist resolve`, run as the real binary against a dnsmasq of each test's own
//! on loopback (a fixed table, 2 s TTL, nothing forwarded): the lists' names are never sent to the machine's
//! own resolver. Root is needed only to start dnsmasq as `--user=root`.
use std::{
    path::PathBuf,
    process::{Command, Output},
};

use integration_tests::{DnsServer, relaywatch_bin, require_root, text};
use serde_json::Value;

fn dns_server() -> DnsServer {
    require_root();
    DnsServer::start_with_ttl(
        2,
        &[
            ("api.openai.com", "127.0.0.91"),
            ("relay.example", "127.0.0.92"),
        ],
    )
}

/// A list file in the temp dir, named after the test.
fn list(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "relaywatch-resolver-{name}-{}.list",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// A relay list naming one name dnsmasq knows and one it does not.
fn relay_list(test: &str) -> PathBuf {
    list(
        test,
        "# relaywatch: category=ai-relay\nfull:relay.example\ndomain:unknown-relay.invalid\n",
    )
}

fn resolve(dns: &DnsServer, args: &[&str]) -> Output {
    Command::new(relaywatch_bin())
        .args(["blocklist", "resolve", "--nameserver", &dns.addr()])
        .args(args)
        .output()
        .expect("run relaywatch")
}

#[test]
fn resolve_prints_each_address_with_its_name_category_and_ttl() {
    let dns = dns_server();
    let relays = relay_list("text");
    // The built-in lists name openai.com (domain:, resolved as itself), not api.openai.com: a
    // provider list adds it. dnsmasq refuses the built-in lists' ~540 names, which must not fail
    // the command.
    let providers = list(
        "providers",
        "# relaywatch: category=ai-provider\nfull:api.openai.com\n",
    );
    let out = resolve(
        &dns,
        &[
            "--list",
            relays.to_str().unwrap(),
            "--list",
            providers.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "127.0.0.91 api.openai.com ai-provider 2",
            "127.0.0.92 relay.example ai-relay 2"
        ],
        "stderr:\n{stderr}"
    );
    // The summary counts the names that did not resolve (unknown-relay.invalid among them).
    let summary = stderr.lines().last().unwrap_or("");
    assert!(summary.contains(" resolved to 2 addresses"), "{stderr}");
    let unresolved: usize = ["not found", "timed out", "failed"]
        .iter()
        .map(|what| {
            summary
                .split(", ")
                .find_map(|part| part.strip_suffix(what)?.trim().parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum();
    let total: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(total > 500, "built-in and --list names: {summary}");
    assert_eq!(unresolved, total - 2, "{summary}");
    let _ = std::fs::remove_file(relays);
    let _ = std::fs::remove_file(providers);
}

#[test]
fn resolve_json_and_a_list_alone() {
    let dns = dns_server();
    let relays = relay_list("json");
    let out = resolve(
        &dns,
        &["--no-builtin", "--json", "--list", relays.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let records: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records,
        [
            serde_json::json!({"ip": "127.0.0.92", "name": "relay.example", "category": "ai-relay", "ttl": 2})
        ]
    );
    assert!(
        text(&out.stderr).starts_with("2 names: 1 resolved to 1 addresses"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_file(relays);
}

#[test]
fn resolve_with_nothing_resolved_exits_1_and_bad_input_2() {
    let dns = dns_server();
    let nothing = list(
        "none",
        "# relaywatch: category=ai-relay\nfull:nothing-here.invalid\n",
    );
    let out = resolve(&dns, &["--no-builtin", "--list", nothing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_file(nothing);

    let out = resolve(
        &dns,
        &["--no-builtin", "--list", "/nonexistent/relays.list"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/relays.list"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(relaywatch_bin())
        .args(["blocklist", "resolve", "--nameserver", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "not IP:PORT is a usage error");
}
