//! Remote blocklist feeds end to end. A loopback HTTPS server (`fixtures/servers.py feed`, with a
//! throwaway CA made by openssl) serves lists; the real daemon fetches them, caches them in its
//! state directory, loads them with its other lists and alerts on real TLS connections to the
//! names they list. Refreshes are conditional (304); a pin mismatch, an invalid list, an error
//! status, an unreachable server, a redirect, a body over the feed's `max_bytes` and a server that
//! stalls past the feed's `timeout_s` leave the previous list in force, shown in `relaywatch
//! status`.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use integration_tests::{
    Daemon, Fixture, KeyType, curl_tls, fresh_dir, openssl_ca, text, wait_until,
};
use serde_json::{Value, json};

/// A feed server on 127.0.0.1 serving the files of its own directory, with a CA for `ca_file`.
struct FeedServer {
    dir: PathBuf,
    fixture: Option<Fixture>,
    port: u16,
}

impl FeedServer {
    fn start(tag: &str) -> FeedServer {
        let dir = fresh_dir(&format!("feeds-{tag}"));
        // A CA and a certificate for 127.0.0.1 signed by it (webpki refuses a self-signed leaf).
        openssl_ca(&dir, KeyType::EcP256);
        let root = dir.join("www");
        std::fs::create_dir_all(&root).unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let fixture = Fixture::start(&[
            "feed",
            &path(&root),
            &path(&dir.join("server.pem")),
            &path(&dir.join("server.key")),
        ]);
        let port = fixture.port;
        FeedServer {
            dir,
            fixture: Some(fixture),
            port,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").to_string_lossy().into_owned()
    }

    /// Serve `text` as /NAME from now on (replaced atomically: a request sees one or the other).
    fn serve(&self, name: &str, text: &str) {
        let tmp = self.dir.join("www").join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join("www").join(name)).unwrap();
    }

    /// Answer /NAME with this status and no body from now on.
    fn fail_with(&self, name: &str, status: u16) {
        std::fs::write(
            self.dir.join("www").join(format!("{name}.status")),
            status.to_string(),
        )
        .unwrap();
    }

    /// Misbehave on /NAME from now on (`servers.py feed`: a redirect, a stall, an oversized body).
    fn behave(&self, name: &str, behavior: Value) {
        std::fs::write(
            self.dir.join("www").join(format!("{name}.behavior")),
            behavior.to_string(),
        )
        .unwrap();
    }

    /// What happened so far to the connections that misbehaved on /NAME ("stalling", "peer
    /// closed", "closed by peer", "sent all").
    fn events(&self, name: &str) -> Vec<Value> {
        let log = std::fs::read_to_string(self.dir.join("www/events.log")).unwrap_or_default();
        log.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["path"] == format!("/{name}"))
            .collect()
    }

    /// Every request for /NAME so far.
    fn requests(&self, name: &str) -> Vec<Value> {
        let log = std::fs::read_to_string(self.dir.join("www/requests.log")).unwrap_or_default();
        log.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["path"] == format!("/{name}"))
            .collect()
    }

    /// Stop serving: the port is closed from now on.
    fn stop(&mut self) {
        self.fixture = None;
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.fixture = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config file with no local lists, the built-in ones, and these `[[blocklists.feed]]` tables.
fn config(server: &FeedServer, tag: &str, feeds: &[String]) -> String {
    let path = server.dir.join(format!("config-{tag}.toml"));
    std::fs::write(
        &path,
        format!("[blocklists]\nfiles = []\n\n{}", feeds.concat()),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

/// One `[[blocklists.feed]]` table trusting the server's CA.
fn feed(server: &FeedServer, name: &str, extra: &str) -> String {
    format!(
        "[[blocklists.feed]]\nurl = \"{}\"\nca_file = \"{}\"\n{extra}\n",
        server.url(name),
        server.ca()
    )
}

/// A feed server serving `body` as /NAME, and a daemon (loopback included) whose one feed is
/// that list, with `extra` keys; the daemon's arguments are returned for a restart.
fn one_feed(
    tag: &str,
    name: &str,
    body: &str,
    extra: &str,
) -> (FeedServer, String, Daemon, Vec<String>) {
    let server = FeedServer::start(tag);
    server.serve(name, body);
    let config = config(&server, tag, &[feed(&server, name, extra)]);
    let args = vec![
        "--include-loopback".to_owned(),
        "--config".to_owned(),
        config,
    ];
    let daemon = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let url = server.url(name);
    (server, url, daemon, args)
}

fn sha256(text: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", text])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn status(daemon: &Daemon) -> Value {
    serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap_or(Value::Null)
}

/// Wait (generously) until the status of the feed at `url` satisfies `done`; return it.
fn wait_feed(daemon: &Daemon, url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(
        &format!("feed {url}: {what}"),
        Duration::from_secs(60),
        || {
            let s = status(daemon);
            last = s["blocklists"]["feeds"]
                .as_array()
                .and_then(|f| f.iter().find(|f| f["url"] == url).cloned())
                .unwrap_or(Value::Null);
            done(&last)
        },
    );
    last
}

fn reload(daemon: &Daemon) {
    let out = daemon.cli(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// curl to NAME on a loopback TLS server (the real SNI is sent); returns curl's pid.
fn curl(name: &str, port: u16) -> u32 {
    curl_tls(name, port, "/")
}

/// The alert raised for `pid`.
fn alert_for(daemon: &Daemon, pid: u32) -> Value {
    let mut found = None;
    wait_until(
        &format!("an alert for pid {pid}"),
        Duration::from_secs(15),
        || {
            found = daemon
                .everything_for(pid)
                .into_iter()
                .find(|r| r["event"]["kind"] == "alert");
            found.is_some()
        },
    );
    found.unwrap()
}

fn cached_body(daemon: &Daemon) -> String {
    let dir = daemon.state_dir.join("feeds");
    let list = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "list"));
    std::fs::read_to_string(list.expect("a cached list")).unwrap()
}

#[test]
fn a_feed_is_fetched_cached_and_matched_and_a_refresh_is_conditional() {
    let body = "# relaywatch: source=feed-test version=7\nfull:chat.feed-test.example\n";
    let (server, url, daemon, _) =
        one_feed("fetch", "relays.list", body, "category = \"ai-relay\"");

    let f = wait_feed(&daemon, &url, "fresh with 1 rule", |f| {
        f["state"] == "fresh" && f["rules"] == 1
    });
    assert_eq!(f["sha256"], sha256(body), "{f:#}");
    assert_eq!(f["bytes"], body.len());
    assert_eq!(
        (
            f["pinned"].as_bool(),
            f["interval_s"].as_u64(),
            &f["last_error"]
        ),
        (Some(false), Some(3600), &Value::Null),
        "{f:#}"
    );
    let etag = f["etag"]
        .as_str()
        .expect("the server's ETag is kept")
        .to_owned();
    for key in [
        "fetched_at",
        "last_success",
        "last_check",
        "next_check",
        "last_modified",
    ] {
        assert!(f[key].is_string(), "{key}: {f:#}");
    }
    let requests = server.requests("relays.list");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (
            &requests[0]["if_none_match"],
            requests[0]["status"].as_u64()
        ),
        (&Value::Null, Some(200))
    );
    // The cache: the body as served, and its metadata, named by a hash of the URL.
    assert_eq!(cached_body(&daemon), body);
    let mut names: Vec<String> = std::fs::read_dir(daemon.state_dir.join("feeds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".json")
            && names[1].ends_with(".list")
            && names[0][..32] == names[1][..32],
        "{names:?}"
    );
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(daemon.state_dir.join("feeds").join(&names[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            meta["url"].as_str(),
            meta["etag"].as_str(),
            meta["sha256"].as_str()
        ),
        (
            Some(url.as_str()),
            Some(etag.as_str()),
            f["sha256"].as_str()
        )
    );

    // The feed's list is in force: a real connection to the name it lists raises an alert whose
    // evidence names the feed and the line.
    let tls = Fixture::tls();
    let a = alert_for(&daemon, curl("chat.feed-test.example", tls.port));
    assert_eq!(a["rule"]["category"], "ai-relay", "{a:#}");
    assert_eq!(a["rule"]["name"], "full:chat.feed-test.example");
    assert_eq!(a["rule"]["ruleset"], url.as_str());
    assert_eq!(a["relaywatch"]["blocklist"]["file"], url.as_str());
    assert_eq!(a["relaywatch"]["blocklist"]["line"], 2);
    assert_eq!(a["relaywatch"]["blocklist"]["version"], "7");
    let s = status(&daemon);
    let active = s["blocklists"]["active"].as_array().unwrap();
    let list = active
        .iter()
        .find(|l| l["path"] == url.as_str())
        .expect("the feed is an active list");
    assert_eq!(
        (
            list["source"].as_str(),
            list["rules"].as_u64(),
            list["sha256"].as_str()
        ),
        (Some("feed-test"), Some(1), f["sha256"].as_str())
    );

    // `relaywatch reload` checks it again, conditionally: the server answers 304 and nothing
    // changes but the confirmation time.
    reload(&daemon);
    wait_until("a second request", Duration::from_secs(30), || {
        server.requests("relays.list").len() >= 2
    });
    let again = &server.requests("relays.list")[1];
    assert_eq!(again["if_none_match"], etag.as_str(), "{again}");
    assert_eq!(again["if_modified_since"], f["last_modified"], "{again}");
    assert_eq!(again["status"], 304);
    let f2 = wait_feed(&daemon, &url, "checked again", |f2| {
        f2["last_check"] != f["last_check"] && f2["next_check"].is_string()
    });
    assert_eq!(
        (&f2["state"], &f2["sha256"], &f2["fetched_at"], &f2["rules"]),
        (&f["state"], &f["sha256"], &f["fetched_at"], &f["rules"]),
        "{f2:#}"
    );

    // A cached body that went missing is not kept "fresh" by a 304: the next check fetches the
    // list whole (no validators) and writes it again.
    let list_file = std::fs::read_dir(daemon.state_dir.join("feeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "list"))
        .unwrap();
    std::fs::remove_file(&list_file).unwrap();
    reload(&daemon);
    wait_until("a third request", Duration::from_secs(30), || {
        server.requests("relays.list").len() >= 3
    });
    let third = &server.requests("relays.list")[2];
    assert_eq!(
        (&third["if_none_match"], third["status"].as_u64()),
        (&Value::Null, Some(200)),
        "{third}"
    );
    wait_until(
        "the cached body written again",
        Duration::from_secs(30),
        || list_file.exists(),
    );
    assert_eq!(cached_body(&daemon), body);
    wait_until(
        "the feed's list in force again",
        Duration::from_secs(30),
        || {
            status(&daemon)["blocklists"]["active"]
                .as_array()
                .is_some_and(|a| a.iter().any(|l| l["path"] == url.as_str()))
        },
    );

    // The status summary names the feed and its state on its feeds line...
    let summary = String::from_utf8_lossy(&daemon.cli(&["status"]).stdout).into_owned();
    assert!(
        summary
            .lines()
            .any(|l| l.contains(&format!("{url}: fresh, 1 rule"))),
        "{summary}"
    );
    // ...and the raw dump has it one line per field.
    let out = daemon.cli(&["status", "--raw"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("blocklists.feeds[0].{key}:")))
            .map(|l| l.split_whitespace().last().unwrap().to_owned())
    };
    assert_eq!(line("url").as_deref(), Some(url.as_str()), "{text}");
    assert_eq!(line("state").as_deref(), Some("fresh"), "{text}");
    assert_eq!(line("rules").as_deref(), Some("1"), "{text}");
    // `relaywatch blocklist list`: the feed is an active list and has a row of its own.
    let out = daemon.cli(&["blocklist", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{url} ")) && l.contains("ai-relay")),
        "{text}"
    );
    let feeds: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "feeds:")
        .skip(2)
        .collect();
    assert_eq!(
        feeds
            .first()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>()),
        Some(vec![url.as_str(), "fresh", "1"]),
        "{text}"
    );

    // A feed added to the configuration is fetched on the reload that reads it, and loaded.
    server.serve("more.list", "# relaywatch: category=ai-tool\nfull:tool.feed-test.example\ndomain:tools.feed-test.example\n");
    config(
        &server,
        "fetch",
        &[
            feed(&server, "relays.list", "category = \"ai-relay\""),
            feed(&server, "more.list", ""),
        ],
    );
    reload(&daemon);
    wait_feed(
        &daemon,
        &server.url("more.list"),
        "fetched after the reload",
        |f| f["state"] == "fresh" && f["rules"] == 2,
    );
    let a = alert_for(&daemon, curl("api.tools.feed-test.example", tls.port));
    assert_eq!(
        (
            a["rule"]["category"].as_str(),
            a["relaywatch"]["blocklist"]["line"].as_u64()
        ),
        (Some("ai-tool"), Some(3)),
        "{a:#}"
    );
    assert_eq!(
        wait_feed(&daemon, &url, "still in force", |f| f["state"] == "fresh")["rules"],
        1
    );
}

#[test]
fn a_changed_feed_is_picked_up_on_its_interval() {
    let (server, url, daemon, _) = one_feed(
        "interval",
        "tools.list",
        "full:one.feed-test.example\n",
        "category = \"ai-tool\"\ninterval_s = 10",
    );
    let f = wait_feed(&daemon, &url, "fresh", |f| {
        f["state"] == "fresh" && f["rules"] == 1
    });
    assert_eq!(f["interval_s"], 10);

    // No reload asked for: the next scheduled check fetches the new list and loads it.
    let v2 = "full:one.feed-test.example\nfull:two.feed-test.example\n";
    server.serve("tools.list", v2);
    let f2 = wait_feed(&daemon, &url, "the new list in force", |f| f["rules"] == 2);
    assert_eq!(
        (f2["state"].as_str(), f2["sha256"].as_str()),
        (Some("fresh"), Some(sha256(v2).as_str())),
        "{f2:#}"
    );
    let requests = server.requests("tools.list");
    assert!(
        requests
            .iter()
            .any(|r| r["status"] == 200 && r["if_none_match"] == f["etag"]),
        "a conditional GET fetched it: {requests:?}"
    );
    assert_eq!(cached_body(&daemon), v2);
    let tls = Fixture::tls();
    let a = alert_for(&daemon, curl("two.feed-test.example", tls.port));
    assert_eq!(
        (
            a["rule"]["category"].as_str(),
            a["relaywatch"]["blocklist"]["line"].as_u64()
        ),
        (Some("ai-tool"), Some(2)),
        "{a:#}"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(&format!("feed {url}: new list, 2 rules")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("feed {url}: reloaded blocklists")),
        "{stderr}"
    );
}

#[test]
fn pin_mismatches_and_invalid_lists_are_refused_and_the_previous_lists_stay() {
    let server = FeedServer::start("refuse");
    let pinned_v1 = "full:pinned.feed-test.example\n";
    let plain_v1 = "# relaywatch: category=ai-relay\nfull:plain.feed-test.example\n";
    server.serve("pinned.list", pinned_v1);
    server.serve("plain.list", plain_v1);
    let (pinned, plain) = (server.url("pinned.list"), server.url("plain.list"));
    // A third feed trusts the system's roots, which do not know the test CA.
    let untrusted = server.url("plain.list?untrusted");
    let config = config(
        &server,
        "refuse",
        &[
            feed(
                &server,
                "pinned.list",
                &format!(
                    "category = \"ai-relay\"\nsha256 = \"{}\"",
                    sha256(pinned_v1)
                ),
            ),
            feed(&server, "plain.list", ""),
            format!("[[blocklists.feed]]\nurl = \"{untrusted}\"\n"),
        ],
    );
    let daemon = Daemon::start(&["--include-loopback", "--config", &config]);
    for url in [&pinned, &plain] {
        wait_feed(&daemon, url, "fresh", |f| {
            f["state"] == "fresh" && f["rules"] == 1
        });
    }
    let shown_untrusted = server.url("plain.list?…");
    let u = wait_feed(&daemon, &shown_untrusted, "an error", |f| {
        !f["last_error"].is_null()
    });
    assert_eq!(
        (u["state"].as_str(), &u["rules"]),
        (Some("never_fetched"), &Value::Null),
        "{u:#}"
    );
    // setup installs ca-certificates: the system trust store is what refused the server.
    assert!(
        Path::new("/etc/ssl/certs/ca-certificates.crt").exists(),
        "no system CA bundle: `cargo xtask setup` installs ca-certificates"
    );
    assert!(
        u["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("TLS handshake with 127.0.0.1"),
        "{u:#}"
    );

    // New bodies: one that fails its pin, one that is not a valid list.
    server.serve(
        "pinned.list",
        "full:pinned.feed-test.example\nfull:sneaked-in.feed-test.example\n",
    );
    server.serve(
        "plain.list",
        "# relaywatch: category=ai-relay\nfull:plain.feed-test.example\ndomian:typo.example\n",
    );
    reload(&daemon);
    let p = wait_feed(&daemon, &pinned, "the pin refused", |f| {
        f["last_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not the pinned"))
    });
    assert_eq!(
        (
            p["state"].as_str(),
            p["rules"].as_u64(),
            p["sha256"].as_str()
        ),
        (Some("stale"), Some(1), Some(sha256(pinned_v1).as_str())),
        "{p:#}"
    );
    let q = wait_feed(&daemon, &plain, "the list refused", |f| {
        !f["last_error"].is_null()
    });
    assert_eq!(
        q["last_error"]["error"],
        format!(
            "{plain}:3: unknown rule prefix 'domian:' (expected domain:, full:, keyword:, regexp: or include:)"
        ),
        "{q:#}"
    );
    assert_eq!(
        (
            q["state"].as_str(),
            q["rules"].as_u64(),
            q["sha256"].as_str()
        ),
        (Some("stale"), Some(1), Some(sha256(plain_v1).as_str())),
        "{q:#}"
    );
    // The status table shows the reason with the URL and line.
    let text = String::from_utf8_lossy(&daemon.cli(&["status", "--raw"]).stdout).into_owned();
    assert!(text.lines().any(|l| l.starts_with("blocklists.feeds[1].last_error.error:") && l.ends_with(&format!("{plain}:3: unknown rule prefix 'domian:' (expected domain:, full:, keyword:, regexp: or include:)"))), "{text}");
    // Each failure is logged once.
    let stderr = daemon.stderr();
    assert_eq!(
        stderr
            .matches(&format!("feed {plain}: {plain}:3: unknown rule prefix"))
            .count(),
        1,
        "{stderr}"
    );

    // The previous lists are still the ones in force: the old names alert, the name the refused
    // body added does not (checked before an alert that comes after it).
    let tls = Fixture::tls();
    let sneaked = curl("sneaked-in.feed-test.example", tls.port);
    let old = alert_for(&daemon, curl("pinned.feed-test.example", tls.port));
    assert_eq!(old["relaywatch"]["blocklist"]["file"], pinned.as_str());
    assert!(
        daemon
            .everything_for(sneaked)
            .iter()
            .all(|r| r["event"]["kind"] != "alert"),
        "{:#?}",
        daemon.everything_for(sneaked)
    );
    assert_eq!(
        alert_for(&daemon, curl("plain.feed-test.example", tls.port))["relaywatch"]["blocklist"]["file"],
        plain.as_str()
    );
}

#[test]
fn an_unreachable_feed_is_used_stale_from_its_cache_even_after_a_restart() {
    let body = "# relaywatch: category=ai-aggregator\nfull:gw.feed-test.example\n";
    let (mut server, url, daemon, args) = one_feed("stale", "gw.list", body, "");
    wait_feed(&daemon, &url, "fresh", |f| f["state"] == "fresh");

    // The server fails: 500 is an error, the cached list stays in force.
    server.fail_with("gw.list", 500);
    reload(&daemon);
    let f = wait_feed(&daemon, &url, "HTTP 500", |f| {
        f["last_error"]["error"] == "HTTP 500 Internal Server Error"
    });
    assert_eq!(
        (f["state"].as_str(), f["rules"].as_u64()),
        (Some("stale"), Some(1)),
        "{f:#}"
    );
    let state_dir = daemon.state_dir.clone();
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");

    // Then it is gone altogether, and the agent restarts: the cached list is loaded at start.
    server.stop();
    let daemon = Daemon::start_with_state(
        &state_dir,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let f = wait_feed(&daemon, &url, "unreachable", |f| {
        f["last_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connecting to 127.0.0.1"))
    });
    assert_eq!(
        (
            f["state"].as_str(),
            f["rules"].as_u64(),
            f["sha256"].as_str()
        ),
        (Some("stale"), Some(1), Some(sha256(body).as_str())),
        "{f:#}"
    );
    let tls = Fixture::tls();
    let a = alert_for(&daemon, curl("gw.feed-test.example", tls.port));
    assert_eq!(
        (
            a["rule"]["category"].as_str(),
            a["relaywatch"]["blocklist"]["file"].as_str()
        ),
        (Some("ai-aggregator"), Some(url.as_str())),
        "{a:#}"
    );

    // Failing the same way again is not logged again.
    reload(&daemon);
    wait_feed(&daemon, &url, "checked again", |g| {
        g["last_error"]["at"] != f["last_error"]["at"]
    });
    let stderr = daemon.stderr();
    assert_eq!(
        stderr
            .matches(&format!("feed {url}: connecting to"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("(the cached list stays in use)"),
        "{stderr}"
    );
}

/// A list in category ai-relay naming `full:NAME`.
fn list_of(names: &[&str]) -> String {
    let mut list = "# relaywatch: category=ai-relay\n".to_owned();
    for n in names {
        list.push_str(&format!("full:{n}\n"));
    }
    list
}

/// No alert for `pid`, checked after `control`'s alert came (a name the same daemon must alert
/// on, connected to after `pid`'s).
fn no_alert_before(daemon: &Daemon, pid: u32, control: u32) {
    alert_for(daemon, control);
    let records = daemon.everything_for(pid);
    assert!(
        records.iter().all(|r| r["event"]["kind"] != "alert"),
        "{records:#?}"
    );
}

/// The previous list of the feed at `url` is in force: its state, rule count and digest, and a
/// real connection to the name it lists alerts with the feed as evidence.
fn previous_list_stays(daemon: &Daemon, f: &Value, url: &str, body: &str, name: &str, port: u16) {
    assert_eq!(
        (
            f["state"].as_str(),
            f["rules"].as_u64(),
            f["sha256"].as_str()
        ),
        (Some("stale"), Some(1), Some(sha256(body).as_str())),
        "{f:#}"
    );
    let a = alert_for(daemon, curl(name, port));
    assert_eq!(a["relaywatch"]["blocklist"]["file"], url, "{a:#}");
}

#[test]
fn redirects_are_refused_and_the_previous_lists_stay() {
    let server = FeedServer::start("redirect");
    let good_v1 = list_of(&["good.redirect-test.example"]);
    server.serve("good.list", &good_v1);
    // What the redirects point to: a valid list, which must never be fetched.
    server.serve("target.list", &list_of(&["target.redirect-test.example"]));
    let codes = [301u16, 302, 307, 308];
    let body = |code: u16| list_of(&[&format!("r{code}.redirect-test.example")]);
    let mut feeds = vec![feed(&server, "good.list", "")];
    for code in codes {
        server.serve(&format!("r{code}.list"), &body(code));
        feeds.push(feed(&server, &format!("r{code}.list"), ""));
    }
    let config = config(&server, "redirect", &feeds);
    let daemon = Daemon::start(&["--include-loopback", "--config", &config]);
    let good = server.url("good.list");
    let url = |code: u16| server.url(&format!("r{code}.list"));
    wait_feed(&daemon, &good, "fresh", |f| f["state"] == "fresh");
    for code in codes {
        wait_feed(&daemon, &url(code), "fresh", |f| {
            f["state"] == "fresh" && f["rules"] == 1
        });
    }

    // Every feed but the good one now redirects to the target list; the good one has a new
    // list, which the same round of checks must load.
    let target = server.url("target.list");
    for code in codes {
        server.behave(
            &format!("r{code}.list"),
            json!({"status": code, "location": target}),
        );
    }
    server.serve(
        "good.list",
        &list_of(&["good.redirect-test.example", "good2.redirect-test.example"]),
    );
    reload(&daemon);
    wait_feed(&daemon, &good, "the new list in force", |f| {
        f["state"] == "fresh" && f["rules"] == 2
    });
    let tls = Fixture::tls();
    let reasons = [
        (301, "Moved Permanently"),
        (302, "Found"),
        (307, "Temporary Redirect"),
        (308, "Permanent Redirect"),
    ];
    for (code, reason) in reasons {
        let u = url(code);
        let expected = format!(
            "HTTP {code} {reason}: {u} redirects to {target}; redirects are not followed (configure the list's final URL)"
        );
        let f = wait_feed(&daemon, &u, "the redirect refused", |f| {
            !f["last_error"].is_null()
        });
        assert_eq!(f["last_error"]["error"], expected.as_str(), "{f:#}");
        previous_list_stays(
            &daemon,
            &f,
            &u,
            &body(code),
            &format!("r{code}.redirect-test.example"),
            tls.port,
        );
        let requests = server.requests(&format!("r{code}.list"));
        assert_eq!(
            requests.last().and_then(|r| r["status"].as_u64()),
            Some(u64::from(code)),
            "{requests:?}"
        );
        let stderr = daemon.stderr();
        assert_eq!(
            stderr.matches(&format!("feed {u}: {expected}")).count(),
            1,
            "logged once, with the feed's URL: {stderr}"
        );
    }
    // Not followed: the target was never asked for, and its name does not alert (checked after
    // the alert for the good feed's new name, connected to after it).
    assert_eq!(server.requests("target.list"), Vec::<Value>::new());
    let targeted = curl("target.redirect-test.example", tls.port);
    no_alert_before(
        &daemon,
        targeted,
        curl("good2.redirect-test.example", tls.port),
    );
    let summary = text(&daemon.cli(&["status"]).stdout);
    assert!(
        summary
            .lines()
            .any(|l| l.contains(&format!("{}: stale, 1 rule", url(302)))
                && l.contains("last error: HTTP 302 Found: ")
                && l.contains("redirects are not followed")),
        "{summary}"
    );
}

#[test]
fn lists_over_max_bytes_are_refused_without_being_read_whole() {
    let server = FeedServer::start("oversize");
    // The good feed's next list is exactly max_bytes long (accepted); the other two answer with
    // 64 MiB and one byte, one saying so in Content-Length, the other not.
    let good_v1 = list_of(&["good.size-test.example"]);
    let announced_v1 = list_of(&["announced.size-test.example"]);
    let streamed_v1 = list_of(&["streamed.size-test.example"]);
    server.serve("good.list", &good_v1);
    server.serve("announced.list", &announced_v1);
    server.serve("streamed.list", &streamed_v1);
    let limit = "max_bytes = 4096";
    let config = config(
        &server,
        "oversize",
        &[
            feed(&server, "good.list", limit),
            feed(&server, "announced.list", limit),
            feed(&server, "streamed.list", limit),
        ],
    );
    let daemon = Daemon::start(&["--include-loopback", "--config", &config]);
    let (good, announced, streamed) = (
        server.url("good.list"),
        server.url("announced.list"),
        server.url("streamed.list"),
    );
    for url in [&good, &announced, &streamed] {
        wait_feed(&daemon, url, "fresh", |f| {
            f["state"] == "fresh" && f["rules"] == 1
        });
    }

    let total = (64 << 20) + 1;
    server.behave(
        "announced.list",
        json!({"oversize": "content-length", "bytes": total}),
    );
    server.behave(
        "streamed.list",
        json!({"oversize": "stream", "bytes": total}),
    );
    let mut good_v2 = list_of(&["good.size-test.example", "good2.size-test.example"]);
    while good_v2.len() < 4096 {
        good_v2.push('#');
    }
    good_v2.pop();
    good_v2.push('\n');
    assert_eq!(good_v2.len(), 4096);
    server.serve("good.list", &good_v2);
    reload(&daemon);

    let g = wait_feed(&daemon, &good, "the new list in force", |f| {
        f["state"] == "fresh" && f["rules"] == 2
    });
    assert_eq!(g["bytes"], 4096, "{g:#}");
    let tls = Fixture::tls();
    for (url, name, body, error) in [
        (
            &announced,
            "announced",
            &announced_v1,
            format!(
                "the response is {total} bytes (Content-Length), larger than the limit of 4096 bytes"
            ),
        ),
        (
            &streamed,
            "streamed",
            &streamed_v1,
            "the response is larger than the limit of 4096 bytes".to_owned(),
        ),
    ] {
        let f = wait_feed(&daemon, url, "the body refused", |f| {
            !f["last_error"].is_null()
        });
        assert_eq!(f["last_error"]["error"], error.as_str(), "{f:#}");
        previous_list_stays(
            &daemon,
            &f,
            url,
            body,
            &format!("{name}.size-test.example"),
            tls.port,
        );
        // The daemon closed the connection long before the end of the body: what the server
        // got out is what the sockets between them hold, not 64 MiB.
        let file = format!("{name}.list");
        wait_until(
            &format!("the server's account of /{file}"),
            Duration::from_secs(30),
            || !server.events(&file).is_empty(),
        );
        let events = server.events(&file);
        assert_eq!(events[0]["event"], "closed by peer", "{events:?}");
        assert!(events[0]["sent"].as_u64() < Some(total), "{events:?}");
        assert!(
            daemon.stderr().contains(&format!(
                "feed {url}: {error} (the cached list stays in use)"
            )),
            "{}",
            daemon.stderr()
        );
    }
    alert_for(&daemon, curl("good2.size-test.example", tls.port));
    let summary = text(&daemon.cli(&["status"]).stdout);
    assert!(
        summary
            .lines()
            .any(|l| l.contains(&format!("{streamed}: stale, 1 rule"))
                && l.contains("last error: the response is larger than the limit of 4096 bytes")),
        "{summary}"
    );
}

#[test]
fn stalled_feeds_are_abandoned_at_their_timeout_while_the_daemon_keeps_answering() {
    let server = FeedServer::start("stall");
    let good_v1 = list_of(&["good.stall-test.example"]);
    let head_v1 = list_of(&["head.stall-test.example"]);
    let body_v1 = list_of(&["body.stall-test.example"]);
    let long_v1 = list_of(&["long.stall-test.example"]);
    server.serve("good.list", &good_v1);
    server.serve("head.list", &head_v1);
    server.serve("body.list", &body_v1);
    server.serve("long.list", &long_v1);
    // A TCP server that accepts and never says a word (not even the TLS handshake).
    let silent = Fixture::start(&["sink"]);
    let silent_url = format!("https://127.0.0.1:{}/silent.list", silent.port);
    let short = "timeout_s = 2";
    let config = config(
        &server,
        "stall",
        &[
            feed(&server, "good.list", ""),
            feed(&server, "head.list", short),
            feed(&server, "body.list", short),
            format!(
                "[[blocklists.feed]]\nurl = \"{silent_url}\"\nca_file = \"{}\"\n{short}\n",
                server.ca()
            ),
            // Checked last, and stalled for longer than the test lasts.
            feed(&server, "long.list", "timeout_s = 600"),
        ],
    );
    let daemon = Daemon::start(&["--include-loopback", "--config", &config]);
    let url = |name: &str| server.url(&format!("{name}.list"));
    for name in ["good", "head", "body", "long"] {
        wait_feed(&daemon, &url(name), "fresh", |f| {
            f["state"] == "fresh" && f["rules"] == 1
        });
    }
    let timed_out = format!("127.0.0.1:{}: no complete response in 2s", silent.port);
    let s = wait_feed(&daemon, &silent_url, "timed out", |f| {
        !f["last_error"].is_null()
    });
    assert_eq!(
        (s["state"].as_str(), s["last_error"]["error"].as_str()),
        (Some("never_fetched"), Some(timed_out.as_str())),
        "{s:#}"
    );

    server.behave("head.list", json!({"stall": "head"}));
    server.behave(
        "body.list",
        json!({"stall": "body", "length": 1000, "send": "# relaywatch: category=ai-relay\nfull:"}),
    );
    server.behave("long.list", json!({"stall": "head"}));
    server.serve(
        "good.list",
        &list_of(&["good.stall-test.example", "good2.stall-test.example"]),
    );
    reload(&daemon);
    wait_feed(&daemon, &url("good"), "the new list in force", |f| {
        f["state"] == "fresh" && f["rules"] == 2
    });
    let tls = Fixture::tls();
    let expected = format!("127.0.0.1:{}: no complete response in 2s", server.port);
    for (name, body) in [("head", &head_v1), ("body", &body_v1)] {
        let f = wait_feed(&daemon, &url(name), "abandoned", |f| {
            !f["last_error"].is_null()
        });
        assert_eq!(f["last_error"]["error"], expected.as_str(), "{f:#}");
        previous_list_stays(
            &daemon,
            &f,
            &url(name),
            body,
            &format!("{name}.stall-test.example"),
            tls.port,
        );
        // The daemon hung up: the server saw its connection closed while it stalled.
        let file = format!("{name}.list");
        wait_until(
            &format!("/{file}'s connection closed"),
            Duration::from_secs(30),
            || server.events(&file).len() >= 2,
        );
        let events: Vec<Value> = server
            .events(&file)
            .iter()
            .map(|e| e["event"].clone())
            .collect();
        assert_eq!(events, [json!("stalling"), json!("peer closed")]);
    }

    // The last feed's server stalls for as long as the test lasts. Meanwhile the daemon
    // answers `relaywatch status` (showing the feed being checked: no next check yet), and
    // alerts.
    wait_until("the long stall", Duration::from_secs(60), || {
        !server.events("long.list").is_empty()
    });
    let f = wait_feed(&daemon, &url("long"), "being checked", |f| {
        f["next_check"].is_null()
    });
    assert_eq!(
        (f["state"].as_str(), f["rules"].as_u64(), &f["last_error"]),
        (Some("fresh"), Some(1), &Value::Null),
        "{f:#}"
    );
    let out = daemon.cli(&["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.contains(&format!("{}: stale, 1 rule", url("head")))
                && l.contains("no complete response in 2s")),
        "{}",
        text(&out.stdout)
    );
    alert_for(&daemon, curl("good2.stall-test.example", tls.port));
    assert_eq!(
        server
            .events("long.list")
            .iter()
            .map(|e| e["event"].clone())
            .collect::<Vec<_>>(),
        [json!("stalling")],
        "still stalled"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(&format!(
            "feed {}: {expected} (the cached list stays in use)",
            url("body")
        )),
        "{stderr}"
    );
}
