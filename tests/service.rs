//! The service around the agent: the Debian package, the systemd unit, the configuration file.
//!
//! All real: the .deb that `cargo xtask package` built (`cargo xtask test` passes it in
//! RELAYWATCH_DEB) is unpacked with dpkg and installed with dpkg, the unit is checked by
//! systemd-analyze, and the unit's capability set is tried by running the agent under setpriv
//! with exactly that bounding set.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    Daemon, LoopbackServer, PYTHON, fresh_dir, output_ok, real_executable, relaywatch_bin,
    require_root, run_client, text,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The package under test: $RELAYWATCH_DEB (relative to the workspace, as cargo runs tests in
/// tests/), else the newest one `cargo xtask package` left in target/debian/.
fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("RELAYWATCH_DEB") {
        return workspace().join(p);
    }
    let dir = workspace().join("target/debian");
    let newest = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    });
    newest.unwrap_or_else(|| {
        panic!(
            "no .deb in {}: run `cargo xtask test` or `cargo xtask package` first",
            dir.display()
        )
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    text(&output_ok(cmd).stdout)
}

fn scratch(name: &str) -> PathBuf {
    fresh_dir(&format!("service-{name}"))
}

/// The package unpacked once per test binary: files under `root`, control files in `control`.
struct Unpacked {
    root: PathBuf,
    control: PathBuf,
    /// (mode string, path) of every entry, from `dpkg-deb -c`.
    listing: Vec<(String, String)>,
}

fn unpacked() -> &'static Unpacked {
    static UNPACKED: OnceLock<Unpacked> = OnceLock::new();
    UNPACKED.get_or_init(|| {
        let deb = deb();
        let dir = scratch("unpacked");
        let (root, control) = (dir.join("root"), dir.join("control"));
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
        let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb))
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_owned(), f[5].trim_start_matches('.').to_owned())
            })
            .collect();
        Unpacked {
            root,
            control,
            listing,
        }
    })
}

/// Paths in the README's "Packaging" table (`/usr/...`), possibly with one `*`.
fn readme_package_paths() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("\n## Packaging")
        .nth(1)
        .expect("README has a Packaging section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `/"))
        .map(|rest| format!("/{}", rest.split('`').next().unwrap()))
        .collect()
}

fn matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            path.starts_with(head) && path.ends_with(tail) && path.len() >= head.len() + tail.len()
        }
        None => pattern == path,
    }
}

#[test]
fn package_files_are_where_the_readme_says() {
    let u = unpacked();
    let files: Vec<&(String, String)> = u
        .listing
        .iter()
        .filter(|(mode, _)| mode.starts_with('-'))
        .collect();
    let documented = readme_package_paths();
    assert!(
        documented.len() >= 8,
        "README Packaging table: {documented:?}"
    );
    for pattern in &documented {
        assert!(
            files.iter().any(|(_, p)| matches(pattern, p)),
            "README lists {pattern}, the package has no such file: {files:?}"
        );
    }
    for (mode, path) in &files {
        assert!(
            documented.iter().any(|d| matches(d, path)),
            "{path} is in the package but not in the README"
        );
        let expected = if path == "/usr/bin/relaywatch" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, expected, "{path}");
    }
    let man: Vec<&str> = files
        .iter()
        .map(|(_, p)| p.as_str())
        .filter(|p| p.starts_with("/usr/share/man/man1/"))
        .collect();
    for page in [
        "relaywatch.1.gz",
        "relaywatch-run.1.gz",
        "relaywatch-config.1.gz",
        "relaywatch-config-check.1.gz",
        "relaywatch-config-default.1.gz",
    ] {
        assert!(
            man.contains(&format!("/usr/share/man/man1/{page}").as_str()),
            "{page} missing: {man:?}"
        );
    }
    // Man pages are gzipped roff that man renders.
    let page = u.root.join("usr/share/man/man1/relaywatch-run.1.gz");
    let rendered = run_ok(
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "200")
            .env("LANG", "C"),
    );
    // Drop overstrike (bold: `X\bX`) so the plain text can be searched.
    let mut plain = String::new();
    for c in rendered.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    assert!(
        plain.contains("--include-loopback") && plain.contains("--config <PATH>"),
        "{plain}"
    );

    let control = std::fs::read_to_string(u.control.join("control")).unwrap();
    assert!(
        control.lines().any(|l| l == "Package: relaywatch"),
        "{control}"
    );
    assert_eq!(
        std::fs::read_to_string(u.control.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/relaywatch/config.toml"
    );
    let version = run_ok(Command::new(u.root.join("usr/bin/relaywatch")).arg("--version"));
    assert!(version.starts_with("relaywatch "), "{version}");
}

#[test]
fn postinst_creates_the_group_and_starts_nothing() {
    let postinst = std::fs::read_to_string(unpacked().control.join("postinst")).unwrap();
    assert!(
        postinst.contains("addgroup --system --quiet relaywatch"),
        "{postinst}"
    );
    assert!(
        postinst.contains("groupadd --system relaywatch"),
        "{postinst}"
    );
    assert!(postinst.contains("systemctl daemon-reload"), "{postinst}");
    let code: Vec<&str> = postinst
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(
        !code
            .iter()
            .any(|l| l.contains("enable") || l.contains("systemctl start")),
        "postinst must not enable or start: {code:?}"
    );
    // Syntax-check every maintainer script with the shell that runs them.
    for script in ["postinst", "prerm", "postrm"] {
        run_ok(
            Command::new("sh")
                .arg("-n")
                .arg(unpacked().control.join(script)),
        );
    }
}

#[test]
fn shipped_config_is_what_config_default_prints() {
    let u = unpacked();
    let shipped = std::fs::read(u.root.join("etc/relaywatch/config.toml")).unwrap();
    let printed = run(Command::new(relaywatch_bin()).args(["config", "default"]));
    assert!(printed.status.success());
    assert!(
        shipped == printed.stdout,
        "the packaged config.toml differs from `relaywatch config default`"
    );
    let path = u.root.join("etc/relaywatch/config.toml");
    let checked = run_ok(
        Command::new(relaywatch_bin())
            .args(["config", "check"])
            .arg(&path),
    );
    assert_eq!(checked, format!("{}: ok\n", path.display()));
}

/// A copy of the packaged unit whose /usr/bin/relaywatch is the unpacked binary (verify checks
/// that every Exec binary exists and is executable), with `edit` applied.
fn unit_copy(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let u = unpacked();
    let text =
        std::fs::read_to_string(u.root.join("usr/lib/systemd/system/relaywatch.service")).unwrap();
    let text = text.replace(
        "/usr/bin/relaywatch",
        u.root.join("usr/bin/relaywatch").to_str().unwrap(),
    );
    let dir = scratch(name);
    let path = dir.join("relaywatch.service");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn verify(unit: &Path) -> Output {
    // Documentation=man:relaywatch(1) is checked with `man`: point it at the packaged pages.
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", unpacked().root.join("usr/share/man")))
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let out = verify(&unit_copy("unit", |t| t));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );

    // The check has teeth: a misspelt directive and a bad value are reported.
    let broken = unit_copy("unit-broken", |t| {
        t.replace("Type=notify", "Type=notifyy")
            .replace("NoNewPrivileges=", "NoNewPrivilege=")
    });
    let out = verify(&broken);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("notifyy") && said.contains("NoNewPrivilege"),
        "verify missed the errors:\n{said}"
    );

    let unit = std::fs::read_to_string(
        unpacked()
            .root
            .join("usr/lib/systemd/system/relaywatch.service"),
    )
    .unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/bin/relaywatch run --config /etc/relaywatch/config.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=30",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
}

/// The capabilities the unit grants, as setpriv names them (`+bpf,+perfmon,...`).
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(workspace().join("packaging/relaywatch.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("unit has CapabilityBoundingSet=");
    let ambient = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("unit has AmbientCapabilities=");
    assert_eq!(line, ambient, "bounding and ambient sets differ");
    line.split_whitespace()
        .map(|c| c.strip_prefix("CAP_").unwrap().to_lowercase())
        .collect()
}

/// Run the agent as root with only `caps` (setpriv drops the rest from the bounding set before
/// exec, as systemd does), connect to a loopback port as user nobody, return that record.
fn record_of_other_users_connect(caps: &[String]) -> serde_json::Value {
    let bounding = format!(
        "-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let daemon = Daemon::start_under(
        &[
            "setpriv",
            "--bounding-set",
            &bounding,
            "--inh-caps",
            "-all",
            "--",
        ],
        &["--include-loopback", "--log-connections"],
    );
    // The agent really runs with exactly these capabilities (those of them this machine has:
    // a container may lack some, CAP_SYS_RESOURCE here).
    let wanted = caps
        .iter()
        .fold(0u64, |mask, c| mask | 1 << capability_number(c));
    let available = capability_set(std::process::id(), "CapBnd");
    assert_eq!(
        capability_set(daemon.pid(), "CapEff"),
        wanted & available,
        "for {caps:?}"
    );

    let server = LoopbackServer::start("127.0.0.1");
    let script = format!(
        "import socket; socket.create_connection(('127.0.0.1', {}), timeout=5).close()",
        server.port
    );
    let pid = run_client(Command::new("setpriv").args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        PYTHON,
        "-c",
        &script,
    ]));
    let records = daemon.wait_records(pid, 1, Duration::from_secs(10));
    assert_eq!(
        records.len(),
        1,
        "records for nobody's python (pid {pid}): {records:?}\n{}",
        daemon.stderr()
    );
    assert_eq!(records[0]["user"]["id"], "65534");
    records[0].clone()
}

fn capability_number(name: &str) -> u32 {
    match name {
        "chown" => 0,
        "net_admin" => 12,
        "sys_ptrace" => 19,
        "sys_admin" => 21,
        "sys_resource" => 24,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("capability {other}: add its number (linux/capability.h)"),
    }
}

/// A capability set of a process from /proc/PID/status (`CapEff`, `CapBnd`...).
fn capability_set(pid: u32, which: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(which)?.strip_prefix(':'))
        .unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn unit_capabilities_are_enough() {
    require_root();
    let caps = unit_capabilities();
    assert!(!caps.iter().any(|c| c == "sys_admin"), "{caps:?}");
    let with_all = record_of_other_users_connect(&caps);
    assert_eq!(
        with_all["process"]["executable"],
        real_executable(PYTHON),
        "{with_all}"
    );

    // Without CAP_SYS_PTRACE the kernel refuses /proc/PID/exe of another user's process, but a
    // program started while the agent runs is still named: its exec event carries the path.
    // (CAP_SYS_PTRACE stays in the unit for processes that were running before the agent.)
    let without: Vec<String> = caps
        .iter()
        .filter(|c| *c != "sys_ptrace")
        .cloned()
        .collect();
    let lacking = record_of_other_users_connect(&without);
    assert_eq!(
        lacking["process"]["executable"],
        real_executable(PYTHON),
        "{lacking}"
    );
}

fn group_exists(name: &str) -> bool {
    run(Command::new("getent").args(["group", name]))
        .status
        .success()
}

/// dpkg, retried while another dpkg or apt holds the lock (the machine is shared).
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || Instant::now() > deadline {
            return out;
        }
        thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn dpkg_install_creates_the_group_and_purge_removes_the_files() {
    require_root();
    if run(Command::new("dpkg-query").args(["-W", "relaywatch"]))
        .status
        .success()
        || Path::new("/usr/bin/relaywatch").exists()
    {
        // Never replace or remove an installation the test did not make: that leaves this test
        // unable to run, which is a skip (and fails CI), never a pass.
        integration_tests::skip(
            "relaywatch is already installed on this machine: not installing the package over it",
        );
        return;
    }
    // postinst creates the group; the host is left as found, so it goes again after the purge
    // when it was not there before (no other test uses this name: the API tests make their own).
    let group_was_there = group_exists("relaywatch");
    let deb = deb();
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    let installed = out.status.success();
    let check = std::panic::catch_unwind(|| {
        assert!(
            installed,
            "dpkg -i: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            group_exists("relaywatch"),
            "postinst did not create the relaywatch group"
        );
        let conffiles =
            run_ok(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", "relaywatch"]));
        assert!(
            conffiles.contains("/etc/relaywatch/config.toml"),
            "{conffiles}"
        );
        assert_eq!(
            run_ok(Command::new("/usr/bin/relaywatch").args([
                "config",
                "check",
                "/etc/relaywatch/config.toml"
            ])),
            "/etc/relaywatch/config.toml: ok\n"
        );
        let man = run_ok(Command::new("man").args(["-w", "relaywatch-run"]));
        assert_eq!(man.trim(), "/usr/share/man/man1/relaywatch-run.1.gz");
        assert!(
            Path::new("/lib/systemd/system/relaywatch.service").exists()
                || Path::new("/usr/lib/systemd/system/relaywatch.service").exists()
        );
    });
    let purged = dpkg(&["--purge", "relaywatch"]);
    // A real purge keeps the group (files may still belong to it); the test removes what it made,
    // retrying while another groupadd/groupdel on the machine holds /etc/group (exit 10): a
    // group left behind would make every later run believe it was the host's own.
    let mut group_removed = true;
    if !group_was_there {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = run(Command::new("groupdel").arg("relaywatch"));
            if out.status.success() || out.status.code() != Some(10) || Instant::now() > deadline {
                group_removed = out.status.success();
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
    if let Err(panic) = check {
        std::panic::resume_unwind(panic);
    }
    assert!(
        purged.status.success(),
        "dpkg --purge: {}",
        String::from_utf8_lossy(&purged.stderr)
    );
    assert!(
        group_was_there || (group_removed && !group_exists("relaywatch")),
        "the relaywatch group the package created is still there"
    );
    for gone in [
        "/usr/bin/relaywatch",
        "/etc/relaywatch/config.toml",
        "/usr/lib/systemd/system/relaywatch.service",
    ] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} left behind by dpkg --purge"
        );
    }
}

#[test]
fn config_check_names_file_line_key_and_reason() {
    let dir = scratch("check");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[agent]\nlog_connections = true\n").unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "[agent]\n# a comment\ninclude_loopbak = true\n").unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[agent]\nudp_window_ms = 5\n\n[[sink]]\nkind = \"syslog\"\n\n[[sink]]\nkind = \"splunk-hec\"\nurl = \"tcp://siem:514\"\ntoken_file = \"/etc/relaywatch/hec.token\"\n").unwrap();

    let out = run(Command::new(relaywatch_bin())
        .args(["config", "check"])
        .args([&good, &typo, &bad]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok\n", good.display())
    );
    let (t, b) = (typo.display(), bad.display());
    let expected = [
        format!(
            "{t}:3:1: unknown key \"agent.include_loopbak\" (expected one of `include_loopback`, `log_connections`, `udp_window_ms`, `name_wait_ms`, `state_dir`, `socket`, `socket_group`)"
        ),
        format!("{b}: agent.udp_window_ms: 5 is below the minimum 10"),
        format!("{b}: sink[0].url: missing (required for kind \"syslog\")"),
        format!(
            "{b}: sink[1].url: \"tcp://siem:514\": scheme \"tcp\" is not supported here (expected http://, https://)"
        ),
    ];
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .collect::<Vec<_>>(),
        expected
    );

    let only_good = run(Command::new(relaywatch_bin())
        .args(["config", "check"])
        .arg(&good));
    assert_eq!(only_good.status.code(), Some(0));
}

#[test]
fn run_refuses_a_bad_or_missing_config_file() {
    let dir = scratch("run-refuses");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[metrics]\nlisten = \"localhost\"\n").unwrap();
    let out = run(Command::new(relaywatch_bin())
        .args(["run", "--config"])
        .arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "relaywatch: {}:2:10: metrics.listen: invalid socket address syntax\n",
            bad.display()
        )
    );
    let missing = dir.join("missing.toml");
    let out = run(Command::new(relaywatch_bin())
        .args(["run", "--config"])
        .arg(&missing));
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with(&format!(
            "relaywatch: {}: cannot read: No such file",
            missing.display()
        )),
        "{said}"
    );
}

#[test]
fn run_takes_its_settings_from_the_config_file() {
    require_root();
    let dir = scratch("run-config");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[agent]\ninclude_loopback = true\nlog_connections = true\n",
    )
    .unwrap();
    // No flags: loopback connections are reported only because the file says so.
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    assert!(
        daemon.stderr().contains("loopback included"),
        "{}",
        daemon.stderr()
    );
    let server = LoopbackServer::start("127.0.0.1");
    let script = format!(
        "import socket; socket.create_connection(('127.0.0.1', {}), timeout=5).close()",
        server.port
    );
    let pid = run_client(Command::new(PYTHON).args(["-c", &script]));
    let records = daemon.wait_records(pid, 1, Duration::from_secs(10));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["destination"]["port"], server.port);
}
