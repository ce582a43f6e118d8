//! `relaywatch blocklist check` and `relaywatch blocklist test`, run as the real binary.
//! No root needed: these commands only read list files.
use std::{
    path::Path,
    process::{Command, Output},
};

use integration_tests::{TempDir, relaywatch_bin, text};
use serde_json::Value;

fn relaywatch(args: &[&str]) -> Output {
    Command::new(relaywatch_bin())
        .args(args)
        .output()
        .expect("run relaywatch")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `blocklist test --json ARGS`: (exit status, the JSON object).
fn test_json(args: &[&str]) -> (i32, Value) {
    let out = relaywatch(&[&["blocklist", "test", "--json"], args].concat());
    let stdout = text(&out.stdout);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {}", text(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn check_accepts_a_valid_list() {
    let dir = TempDir::new("cli-check-ok");
    let good = dir.write(
        "relays.list",
        "# relaywatch: category=ai-relay severity=high\n\
         domain:relay.example # src=test\n\
         full:api.other.example\n\
         keyword:tokenrelay\n\
         regexp:^gw[0-9]+\\.relay\\.example$\n\
         0.0.0.0 hosts.example\n\
         *.wild.example\n\
         192.0.2.0/24\n\
         2001:db8::/32\n",
    );
    let out = relaywatch(&["blocklist", "check", s(&good)]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{}: ok, 8 rules (domain 2, full 2, keyword 1, regexp 1, cidr 2); category=ai-relay severity=high action=alert version=sha256:",
            s(&good)
        )),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let dir = TempDir::new("cli-check-bad");
    let good = dir.write(
        "good.list",
        "# relaywatch: category=allow\nfull:gw.corp.example\n",
    );
    let bad = dir.write(
        "bad.list",
        "# relaywatch: category=ai-relay\n\
         domain:\n\
         domian:openai.com\n\
         domain:open ai.com\n\
         regexp:^(unclosed\n\
         include:not-there\n\
         10.0.0.0/33\n\
         ok.example\n",
    );
    let out = relaywatch(&["blocklist", "check", s(&good), s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let b = s(&bad);
    let d = s(&dir);
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 6, "{stderr}");
    assert_eq!(lines[0], format!("{b}:2: empty domain: rule"));
    assert_eq!(
        lines[1],
        format!(
            "{b}:3: unknown rule prefix 'domian:' (expected domain:, full:, keyword:, regexp: or include:)"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{b}:4: unexpected 'ai.com' after the rule: a name cannot contain spaces, and attributes start with '@'"
        )
    );
    assert!(
        lines[3].starts_with(&format!("{b}:5: bad regexp '^(unclosed': ")),
        "{}",
        lines[3]
    );
    assert_eq!(
        lines[4],
        format!("{b}:6: include:not-there: cannot read {d}/not-there: no such file")
    );
    assert_eq!(
        lines[5],
        format!("{b}:7: bad CIDR prefix length '/33' in '10.0.0.0/33' (IPv4 allows /0 to /32)")
    );
    // The valid file still gets its summary.
    assert!(text(&out.stdout).starts_with(&format!(
        "{}: ok, 1 rules (full 1); category=allow",
        s(&good)
    )));
}

#[test]
fn check_requires_a_category() {
    let dir = TempDir::new("cli-check-nocat");
    let upstream = dir.write("upstream", "example.com\n");
    let out = relaywatch(&["blocklist", "check", s(&upstream)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with(&format!(
        "{}:1: no category: add a header line",
        s(&upstream)
    )));
    let out = relaywatch(&["blocklist", "check", "--category", "ai-tool", s(&upstream)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = relaywatch(&["blocklist", "check", s(&dir.join("absent"))]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("{}/absent: cannot read: no such file\n", s(&dir))
    );
}

#[test]
fn test_finds_a_first_party_provider() {
    let (code, v) = test_json(&["api.openai.com"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["matched"], true);
    assert_eq!(v["category"], "ai-provider");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["action"], "alert");
    assert_eq!(v["rule"], "openai.com");
    assert_eq!(v["source"]["file"], "builtin:v2fly/openai");
    assert!(
        v["source"]["location"]
            .as_str()
            .unwrap()
            .starts_with("builtin:v2fly/openai:")
    );
    assert!(
        v["source"]["version"]
            .as_str()
            .unwrap()
            .contains("c975ccef9c19"),
        "{v:#}"
    );
    assert_eq!(v["matches"].as_array().unwrap().len(), 1);
}

#[test]
fn test_finds_a_curated_relay() {
    let (code, v) = test_json(&["API.ChatAnywhere.org."]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["category"], "ai-relay");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["rule"], "domain:api.chatanywhere.org");
    assert_eq!(v["source"]["file"], "builtin:ai-relay.list");
}

#[test]
fn test_gemini_exchange_does_not_match() {
    let (code, v) = test_json(&["gemini.com"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["matched"], false);
    assert_eq!(v["matches"].as_array().unwrap().len(), 0);
    let out = relaywatch(&["blocklist", "test", "gemini.com"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "gemini.com: no match\n");
}

#[test]
fn test_matches_an_address_in_a_list_cidr() {
    let dir = TempDir::new("cli-test-cidr");
    let list = dir.write(
        "nets.list",
        "# relaywatch: category=ai-relay action=block\n203.0.113.0/24\n203.0.113.128/25\n",
    );
    let (code, v) = test_json(&["--no-builtin", "--list", s(&list), "203.0.113.200"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["category"], "ai-relay");
    assert_eq!(v["action"], "block");
    assert_eq!(v["rule"], "203.0.113.128/25");
    assert_eq!(v["source"]["location"], format!("{}:3", s(&list)));
    let matches = v["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[1]["rule"], "203.0.113.0/24");
    assert_eq!(matches[1]["line"], 2);
    let (code, _) = test_json(&["--no-builtin", "--list", s(&list), "198.51.100.1"]);
    assert_eq!(code, 1);
}

#[test]
fn test_allow_list_overrides_builtin() {
    let dir = TempDir::new("cli-test-allow");
    let allow = dir.write(
        "allow.list",
        "# relaywatch: category=allow\nfull:api.openai.com\n",
    );
    let (code, v) = test_json(&["--list", s(&allow), "api.openai.com"]);
    assert_eq!(code, 0);
    assert_eq!(v["category"], "allow");
    assert_eq!(v["action"], "allow");
    assert_eq!(v["matches"].as_array().unwrap().len(), 2);
}

#[test]
fn test_usage_and_list_errors_exit_2() {
    let dir = TempDir::new("cli-test-errors");
    let bad = dir.write("bad.list", "# relaywatch: category=ai-relay\nfull:\n");
    let out = relaywatch(&["blocklist", "test", "--list", s(&bad), "example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!("{}:2: empty full: rule\n", s(&bad))
    );
    let out = relaywatch(&["blocklist", "test", "not a name"]);
    assert_eq!(out.status.code(), Some(2));
    let out = relaywatch(&["blocklist", "test", "--category", "nonsense", "example.com"]);
    assert_eq!(out.status.code(), Some(2));
}
