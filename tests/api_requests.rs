//! Unknown relays recognised by the requests sent to them: real clients (the official OpenAI
//! Python SDK, Node.js fetch, Go net/http over HTTP/2, curl) send AI API requests over TLS to a
//! test host in a network namespace of the test's own, under names no list knows. The daemon
//! reads each request's head from the TLS library's write (uprobes) before encryption and must
//! raise an ai-relay alert with the API evidence, learn the host, and never keep the key or the
//! prompt. A plain page fetch to an unlisted host, and an API request to an allowed gateway,
//! must raise nothing; an API request to a provider name alerts as a provider, with evidence.
//!
//! Names resolve through a hosts file bind-mounted over /etc/hosts in a private mount
//! namespace of each client (`unshare -m`): no DNS query leaves the machine, and the clients
//! resolve the names the way they normally do.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use integration_tests::{
    Daemon, KillOnDrop, TempDir, TestNet, ca_and_server_cert, real_executable, run_client,
    serve_in, venv_python,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// The tests whose daemon reads TLS requests run one at a time. A process's probes are planted
/// when it starts a TLS client and take one RCU grace period (5 to 20 ms here); the test hosts
/// answer a handshake after 150 ms, as a relay far away does. With several daemons planting at
/// once on two CPUs, grace periods stretch past that, and a one-request client (curl, the SDK
/// script) is then done before its probes are in place: a missed request, not what these tests
/// are about.
static ONE_READER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_reader_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_READER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const OPENAI_KEY: &str = "sk-proj-PYSECRETKEY0123456789abcdef";
const ANTHROPIC_KEY: &str = "sk-ant-api03-NODESECRETKEY0123456789";
const CURL_KEY: &str = "sk-CURLSECRETKEY0123456789";
const PROMPT: &str = "secret prompt text";

/// A client's pid, the relay host, API family and route its alert names, and more fields
/// (JSON pointer, value) the alert must carry.
type Expected<'a> = (u32, &'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

fn is_start_alert(r: &Value) -> bool {
    r["event"]["kind"] == "alert" && r["event"]["type"] == json!(["connection", "start"])
}

/// `program args...` with `hosts` bind-mounted over /etc/hosts, in its own mount namespace
/// (the pid is the program's: unshare and sh exec it).
fn with_hosts(hosts: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
        .arg(hosts)
        .arg(program)
        .args(args);
    cmd
}

fn alert_for(daemon: &Daemon, pid: u32) -> Value {
    let alerts = daemon.wait_matching(pid, 1, WAIT, is_start_alert);
    assert_eq!(
        alerts.len(),
        1,
        "expected one alert for pid {pid}: {alerts:#?}\nits records: {:#?}\nTLS status: {:#}\nstderr:\n{}",
        daemon.everything_for(pid),
        daemon.status()["tls_plaintext"],
        daemon.stderr()
    );
    alerts.into_iter().next().unwrap()
}

fn assert_relay_alert(a: &Value, pid: u32, host: &str, family: &str, route: &str) {
    assert_eq!(a["process"]["pid"], pid, "{a:#}");
    assert_eq!(a["rule"]["category"], "ai-relay", "{a:#}");
    assert_eq!(a["rule"]["name"], "api-shape", "{a:#}");
    assert_eq!(a["event"]["action"], "ai-relay-connection", "{a:#}");
    assert_eq!(a["relaywatch"]["severity"], "high", "{a:#}");
    assert_eq!(a["destination"]["domain"], host, "{a:#}");
    assert_eq!(a["relaywatch"]["name_source"], "sni", "{a:#}");
    assert_eq!(a["tls"]["client"]["server_name"], host, "{a:#}");
    let api = &a["relaywatch"]["api"];
    assert_eq!(api["family"], family, "{a:#}");
    assert_eq!(api["route"], route, "{a:#}");
    assert_eq!(api["host"], host, "{a:#}");
    assert_eq!(
        a["relaywatch"]["relay"]["discovered_by"], "api-shape",
        "{a:#}"
    );
}

/// The test host (`index`: its subnet) serving the API stand-in for `names`, with a CA the
/// clients trust and a hosts file naming it. Drop order: the server before the namespace.
struct ApiHost {
    _server: KillOnDrop,
    net: TestNet,
    dir: TempDir,
    hosts_file: PathBuf,
}

impl ApiHost {
    fn start(index: u8, tag: &str, names: &[&str]) -> ApiHost {
        let net = TestNet::create(index);
        let dir = TempDir::new(tag);
        ca_and_server_cert(&dir, names);
        let hosts: String = names
            .iter()
            .map(|n| format!("{} {n}\n", net.peer_v4))
            .collect();
        let hosts_file = dir.write("hosts", &format!("127.0.0.1 localhost\n{hosts}"));
        let server_js = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/api_server.js");
        let server = serve_in(
            &net,
            &dir,
            443,
            &[
                "node",
                server_js.to_str().unwrap(),
                "443",
                "server.pem",
                "server.key",
            ],
        );
        ApiHost {
            _server: server,
            net,
            dir,
            hosts_file,
        }
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").to_string_lossy().into_owned()
    }

    /// curl (trusting the test CA, resolving through the hosts file) with `args`; its pid.
    fn curl(&self, args: &[&str]) -> u32 {
        let ca = self.ca();
        let mut all = vec!["-sS", "--fail", "-o", "/dev/null", "--cacert", ca.as_str()];
        all.extend_from_slice(args);
        run_client(&mut with_hosts(&self.hosts_file, "curl", &all))
    }
}

#[test]
fn ai_api_requests_to_unlisted_hosts_are_unknown_relay_alerts_with_their_evidence() {
    let _serial = one_reader_at_a_time();
    let names = [
        "relay-one.example",
        "relay-two.example",
        "relay-three.example",
        "relay-four.example",
        "newapi-relay.example",
        "plain.example",
        "gateway.corp.example",
        "api.openai.com",
    ];
    let host = ApiHost::start(80, "api-requests", &names);
    let (dir, hosts_file) = (&host.dir, &host.hosts_file);
    let ca = host.ca();
    // The Go client is built before the daemon starts (a fresh binary, probed when it runs).
    let go_dir = dir.join("go");
    std::fs::create_dir_all(&go_dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/go_client.go"),
        go_dir.join("main.go"),
    )
    .unwrap();
    let go_bin = go_dir.join("goclient");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg("main.go")
        .current_dir(&go_dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GO111MODULE", "off")
        .output()
        .expect("go build (run `cargo xtask setup --tests` for golang-go)");
    assert!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let config = dir.write(
        "config.toml",
        "[discovery]\napi_requests = true\nallow_hosts = [\"gateway.corp.example\"]\n",
    );
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    let ca_s = ca.as_str();

    // Negatives first: a page fetch to an unlisted host, an API request to the allowed gateway.
    let plain = host.curl(&["https://plain.example/"]);
    let gateway = host.curl(&[
        "-H",
        &format!("Authorization: Bearer {CURL_KEY}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
        "https://gateway.corp.example/v1/chat/completions",
    ]);

    // The official OpenAI SDK, base_url passed in code (no variable in its environment).
    let python = venv_python();
    let sdk = run_client(
        with_hosts(
            hosts_file,
            python.to_str().unwrap(),
            &[
                "-c",
                &format!(
                    "import openai,os\n\
                     c=openai.OpenAI(base_url='https://relay-one.example/v1', api_key='{OPENAI_KEY}', max_retries=0)\n\
                     r=c.chat.completions.create(model='gpt-4o-mini', messages=[{{'role':'user','content':os.environ['RW_PROMPT']}}])\n\
                     assert r.choices[0].message.content=='ok'\n"
                ),
            ],
        )
        .env("SSL_CERT_FILE", ca_s)
        .env("RW_PROMPT", PROMPT)
        .env_remove("OPENAI_BASE_URL"),
    );
    // Node.js fetch, an Anthropic Messages request.
    let node = run_client(
        with_hosts(
            hosts_file,
            "node",
            &[
                "-e",
                &format!(
                    "fetch('https://relay-two.example/v1/messages',{{method:'POST',\
                     headers:{{'content-type':'application/json','anthropic-version':'2023-06-01','x-api-key':'{ANTHROPIC_KEY}'}},\
                     body:JSON.stringify({{model:'claude-sonnet-4-5',max_tokens:16,messages:[{{role:'user',content:process.env.RW_PROMPT}}]}})}})\
                     .then(r=>r.text().then(()=>process.exit(r.status===200?0:2))).catch(e=>{{console.error(e);process.exit(1)}})"
                ),
            ],
        )
        .env("NODE_EXTRA_CA_CERTS", ca_s)
        .env("RW_PROMPT", PROMPT),
    );
    // curl with an OpenAI-style key (the prompt in a file: command lines are reported).
    let curl_body = dir.write(
        "body.json",
        &format!(r#"{{"model":"gpt-4.1","messages":[{{"role":"user","content":"{PROMPT}"}}]}}"#),
    );
    let curl = host.curl(&[
        "--http1.1",
        "-H",
        &format!("Authorization: Bearer {CURL_KEY}"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", curl_body.display()),
        "https://relay-three.example/v1/chat/completions",
    ]);
    // Go net/http over HTTP/2.
    let go = run_client(&mut with_hosts(
        hosts_file,
        go_bin.to_str().unwrap(),
        &[
            "https://relay-four.example/v1/chat/completions",
            ca_s,
            "1000",
        ],
    ));
    // A relay whose answer names its software (new-api's version header).
    let newapi = host.curl(&[
        "--http1.1",
        "-H",
        "x-goog-api-key: AIzaSyTESTKEY0123456789abcdef",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"contents":[]}"#,
        "https://newapi-relay.example/v1beta/models/gemini-2.0-flash:generateContent",
    ]);
    // A provider name: the provider alert, with the evidence.
    let provider = host.curl(&[
        "-H",
        &format!("Authorization: Bearer {CURL_KEY}"),
        "-d",
        r#"{"model":"gpt-4o","input":"hi"}"#,
        "https://api.openai.com/v1/responses",
    ]);

    // Each client: its unknown-relay alert and the evidence fields it must carry.
    let python_exe = real_executable(python.to_str().unwrap());
    let expected: [Expected; 5] = [
        (
            sdk,
            "relay-one.example",
            "openai",
            "/v1/chat/completions",
            &[
                ("/process/executable", &python_exe),
                ("/relaywatch/api/model", "gpt-4o-mini"),
                ("/relaywatch/api/method", "POST"),
                ("/relaywatch/api/key_prefix", "sk-proj-"),
                ("/relaywatch/api/library", "openssl"),
            ],
        ),
        (
            node,
            "relay-two.example",
            "anthropic",
            "/v1/messages",
            &[
                ("/relaywatch/api/model", "claude-sonnet-4-5"),
                ("/relaywatch/api/key_prefix", "sk-ant-"),
            ],
        ),
        (
            curl,
            "relay-three.example",
            "openai",
            "/v1/chat/completions",
            &[
                ("/relaywatch/api/model", "gpt-4.1"),
                ("/relaywatch/api/key_prefix", "sk-"),
                ("/relaywatch/api/protocol", "http/1.1"),
            ],
        ),
        (
            go,
            "relay-four.example",
            "openai",
            "/v1/chat/completions",
            &[
                ("/relaywatch/api/model", "gpt-4o"),
                ("/relaywatch/api/protocol", "h2"),
                ("/relaywatch/api/library", "go"),
            ],
        ),
        (
            newapi,
            "newapi-relay.example",
            "gemini",
            "/v1beta/models/{model}:generateContent",
            &[
                ("/relaywatch/api/model", "gemini-2.0-flash"),
                ("/relaywatch/api/key_prefix", "AIza"),
                ("/relaywatch/relay/software", "new-api"),
            ],
        ),
    ];
    let mut alerts = std::collections::HashMap::new();
    for (pid, host, family, route, fields) in expected {
        let a = alert_for(&daemon, pid);
        assert_relay_alert(&a, pid, host, family, route);
        for (pointer, value) in fields {
            assert_eq!(
                a.pointer(pointer).and_then(Value::as_str),
                Some(*value),
                "{pointer}: {a:#}"
            );
        }
        alerts.insert(pid, a);
    }
    let has = |pid: u32, header: &str| {
        alerts[&pid]["relaywatch"]["api"]["headers"]
            .as_array()
            .is_some_and(|h| h.iter().any(|n| n == header))
    };
    assert!(has(sdk, "authorization") && has(node, "anthropic-version") && has(node, "x-api-key"));
    assert!(
        alerts[&sdk]["relaywatch"]["api"]["user_agent"]
            .as_str()
            .is_some_and(|u| u.starts_with("OpenAI/Python")),
        "{:#}",
        alerts[&sdk]
    );

    let a = alert_for(&daemon, provider);
    assert_eq!(a["rule"]["category"], "ai-provider", "{a:#}");
    assert_eq!(
        a["relaywatch"]["api"]["family"],
        "openai",
        "{a:#}\n{}",
        daemon.stderr()
    );
    assert_eq!(a["relaywatch"]["api"]["route"], "/v1/responses", "{a:#}");
    assert_eq!(a["relaywatch"]["api"]["model"], "gpt-4o", "{a:#}");

    // A learned relay alerts by name from then on, whatever the request (another program than
    // the one that taught it: the dedupe key includes the executable).
    let again = run_client(
        with_hosts(
            hosts_file,
            python.to_str().unwrap(),
            &[
                "-c",
                "import urllib.request\n\
                 assert urllib.request.urlopen('https://relay-three.example/', timeout=10).status == 200\n",
            ],
        )
        .env("SSL_CERT_FILE", ca_s),
    );
    let a = alert_for(&daemon, again);
    assert_eq!(a["rule"]["name"], "api-shape", "{a:#}");
    assert_eq!(a["destination"]["domain"], "relay-three.example", "{a:#}");
    assert!(
        a["relaywatch"]["api"].is_null(),
        "GET / is no API request: {a:#}"
    );

    // The negatives: nothing for them (their records came long before the alerts above).
    for (pid, what) in [(plain, "a page fetch"), (gateway, "the allowed gateway")] {
        let alerts: Vec<Value> = daemon
            .everything_for(pid)
            .into_iter()
            .filter(|r| r["event"]["kind"] == "alert")
            .collect();
        assert!(alerts.is_empty(), "{what} raised alerts: {alerts:#?}");
    }

    // `relaywatch relays` lists what was learned, with who and what.
    let out = daemon.cli(&["relays", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relays: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let hosts: Vec<&str> = relays.iter().filter_map(|r| r["host"].as_str()).collect();
    for h in [
        "relay-one.example",
        "relay-two.example",
        "relay-three.example",
        "relay-four.example",
    ] {
        assert!(hosts.contains(&h), "{h} not in {relays:#?}");
    }
    assert!(!hosts.contains(&"plain.example") && !hosts.contains(&"gateway.corp.example"));
    let one = relays
        .iter()
        .find(|r| r["host"] == "relay-one.example")
        .unwrap();
    assert_eq!(one["pid"], sdk, "{one:#}");
    assert_eq!(one["api"]["model"], "gpt-4o-mini", "{one:#}");
    let table = daemon.cli(&["relays"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("relay-two.example"));

    // Which TLS libraries are read, in which processes.
    let status = daemon.status();
    let libs = status["tls_plaintext"]["libraries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        libs.iter().any(|l| l["library"] == "openssl"
            && l["path"].as_str().is_some_and(|p| p.contains("libssl.so"))),
        "{:#}",
        status["tls_plaintext"]
    );
    assert!(
        libs.iter().any(|l| l["library"] == "go"),
        "{:#}",
        status["tls_plaintext"]
    );

    // No key and no prompt anywhere: stdout, the store (alerts, relays), the log.
    let mut everything = String::new();
    for r in daemon.all_lines() {
        everything.push_str(&r.to_string());
    }
    everything.push_str(&daemon.stderr());
    everything.push_str(&String::from_utf8_lossy(
        &daemon.cli(&["alerts", "--json", "--limit", "1000"]).stdout,
    ));
    everything.push_str(&String::from_utf8_lossy(&out.stdout));
    // (The keys passed on command lines are redacted from process.args; the prompts never were
    // on a command line.)
    for secret in [
        OPENAI_KEY,
        ANTHROPIC_KEY,
        CURL_KEY,
        "GOSECRETKEY",
        "AIzaSyTESTKEY0123456789abcdef",
        PROMPT,
    ] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    let db = std::fs::read(daemon.state_dir.join("relaywatch.db")).unwrap_or_default();
    let db = String::from_utf8_lossy(&db);
    for secret in [OPENAI_KEY, ANTHROPIC_KEY, CURL_KEY, "GOSECRETKEY", PROMPT] {
        assert!(!db.contains(secret), "{secret} is in the store");
    }
}

/// A TLS stack whose plaintext is not read (rustls: no symbol to probe) keeps everything else:
/// a listed name still alerts by its SNI, without API evidence.
#[test]
fn a_tls_stack_that_is_not_read_still_alerts_by_sni() {
    let _serial = one_reader_at_a_time();
    let host = ApiHost::start(81, "api-rustls", &["api.openai.com"]);
    let config = host
        .dir
        .write("config.toml", "[discovery]\napi_requests = true\n");
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    let pid = run_client(Command::new(env!("CARGO_BIN_EXE_rustls-client")).args([
        host.net.peer_v4.as_str(),
        "443",
        "api.openai.com",
        &host.ca(),
    ]));
    let a = alert_for(&daemon, pid);
    assert_eq!(a["rule"]["category"], "ai-provider", "{a:#}");
    assert_eq!(a["destination"]["domain"], "api.openai.com", "{a:#}");
    assert_eq!(a["relaywatch"]["name_source"], "sni", "{a:#}");
    assert!(
        a["relaywatch"]["api"].is_null(),
        "rustls is not read: {a:#}"
    );
}

/// A test user (removed on drop) whose home the configuration-file scan reads.
struct TestUser {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl TestUser {
    fn create(dir: &Path) -> TestUser {
        let name = format!("rwt-cfg-{}", std::process::id());
        let home = dir.join("home");
        let out = Command::new("useradd")
            .args(["--no-create-home", "--home-dir"])
            .arg(&home)
            .args(["--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("useradd");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uid: u32 = String::from_utf8_lossy(
            &Command::new("id")
                .args(["-u", &name])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .parse()
        .expect("the user's uid");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        let user = TestUser { name, uid, home };
        user.chown(&user.home);
        user.chown(&user.home.join(".claude"));
        user
    }

    fn chown(&self, path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; the uid and gid are the user's.
        assert_eq!(
            unsafe { libc::chown(c.as_ptr(), self.uid, self.uid_gid()) },
            0
        );
    }

    fn uid_gid(&self) -> u32 {
        String::from_utf8_lossy(
            &Command::new("id")
                .args(["-g", &self.name])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .parse()
        .expect("the user's gid")
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.home.join(relative);
        std::fs::write(&path, text).unwrap();
        self.chown(&path);
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A relay configured in one user's Claude Code settings.json (not in any environment): that
/// user's connection to it alerts with the file as evidence; another user's does not.
#[test]
fn a_relay_in_a_users_claude_settings_alerts_for_that_user_only() {
    let relay = "claude-relay.example";
    let host = ApiHost::start(82, "api-config", &[relay]);
    let user = TestUser::create(&host.dir);
    user.write(
        ".claude/settings.json",
        &format!(
            r#"{{"env": {{"ANTHROPIC_BASE_URL": "https://{relay}/api", "ANTHROPIC_AUTH_TOKEN": "sk-ant-CONFIGSECRET0123456789"}}}}"#
        ),
    );
    let daemon = Daemon::start(&[]);
    let settings = user.home.join(".claude/settings.json");
    integration_tests::wait_until("the settings file in the status", WAIT, || {
        daemon.status()["relay_config_files"]["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["host"] == relay && f["uid"] == user.uid))
    });
    let ca = host.ca();
    // A page fetch (not an API request: only the configuration names the host).
    let fetch = |as_user: bool| {
        let mut args: Vec<String> = Vec::new();
        if as_user {
            args.extend(
                [
                    "setpriv",
                    "--reuid",
                    &user.uid.to_string(),
                    "--regid",
                    &user.uid_gid().to_string(),
                    "--clear-groups",
                ]
                .map(String::from),
            );
        }
        args.extend(
            [
                "curl",
                "-sS",
                "--fail",
                "-o",
                "/dev/null",
                "--cacert",
                &ca,
                &format!("https://{relay}/"),
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client(&mut with_hosts(&host.hosts_file, refs[0], &refs[1..]))
    };
    let users_pid = fetch(true);
    let roots_pid = fetch(false);

    let a = alert_for(&daemon, users_pid);
    assert_eq!(a["rule"]["category"], "ai-relay", "{a:#}");
    assert_eq!(a["relaywatch"]["name_source"], "relay_config", "{a:#}");
    assert_eq!(a["user"]["id"], user.uid.to_string(), "{a:#}");
    assert_eq!(
        a["relaywatch"]["relay"]["config_file"],
        settings.to_str().unwrap(),
        "{a:#}"
    );
    assert_eq!(
        a["relaywatch"]["relay"]["config_key"], "env.ANTHROPIC_BASE_URL",
        "{a:#}"
    );
    assert_eq!(a["relaywatch"]["relay"]["client"], "claude-code", "{a:#}");
    assert_eq!(a["relaywatch"]["relay_config"]["host"], relay, "{a:#}");

    // Root's connection to the same host: that user's setting says nothing about it.
    std::thread::sleep(Duration::from_secs(3));
    let roots: Vec<Value> = daemon
        .everything_for(roots_pid)
        .into_iter()
        .filter(|r| r["event"]["kind"] == "alert")
        .collect();
    assert!(
        roots.is_empty(),
        "another user's setting applied to root: {roots:#?}"
    );
    let everything: String = daemon.all_lines().iter().map(Value::to_string).collect();
    assert!(
        !everything.contains("CONFIGSECRET"),
        "the token next to the URL leaked"
    );
    assert!(!daemon.stderr().contains("CONFIGSECRET"));
}

/// A client talking to a local forwarding proxy (plain HTTP on loopback, as cc-switch's) that
/// calls the relay itself: the relay alert names the proxy, and the client behind it.
#[test]
fn a_local_forwarding_proxys_relay_alert_names_the_client_behind_it() {
    let _serial = one_reader_at_a_time();
    let relay = "proxied-relay.example";
    let host = ApiHost::start(83, "api-local-proxy", &[relay]);
    let config = host
        .dir
        .write("config.toml", "[discovery]\napi_requests = true\n");
    let daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    let port = integration_tests::free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/local_proxy.py");
    let ca = host.ca();
    let mut cmd = with_hosts(
        &host.hosts_file,
        "/usr/bin/python3",
        &[script.to_str().unwrap(), &port.to_string(), relay, &ca],
    );
    let (proxy, ready) = integration_tests::spawn_announcing(&mut cmd);
    assert_eq!(ready.trim(), "ready");
    let proxy_pid = proxy.0.id();
    let client = run_client(Command::new("curl").args([
        "-sS",
        "--fail",
        "-o",
        "/dev/null",
        "-H",
        "anthropic-version: 2023-06-01",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[]}"#,
        &format!("http://127.0.0.1:{port}/v1/messages"),
    ]));
    let a = alert_for(&daemon, proxy_pid);
    assert_relay_alert(&a, proxy_pid, relay, "anthropic", "/v1/messages");
    let c = &a["relaywatch"]["client"];
    assert_eq!(c["pid"], client, "{a:#}");
    assert_eq!(c["executable"], real_executable("/usr/bin/curl"), "{a:#}");
    assert_eq!(c["port"], port, "{a:#}");
    assert_eq!(c["route"], "/v1/messages", "{a:#}");
    assert_eq!(c["user_id"], "0", "{a:#}");
}

/// The contents of tracefs's uprobe_events (the daemon's per-process probes are events there).
fn uprobe_events() -> String {
    std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").expect("tracefs uprobe_events")
}

/// Every pid `relaywatch status` shows as read, over all TLS libraries.
fn pids_read(daemon: &Daemon) -> Vec<u64> {
    let status = daemon.status();
    status["tls_plaintext"]["libraries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|l| l["pids"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_u64())
        .collect()
}

/// Probes go where requests are written: a TLS client (which starts its connections with
/// `SSL_set_connect_state`) is read, a TLS server on the same host (which never calls it) is
/// not, whatever it serves; a client that exits is dropped; a stopped daemon leaves no probe
/// behind (its uprobe events in tracefs are removed).
#[test]
fn only_tls_clients_are_read_and_nothing_is_left_behind() {
    let _serial = one_reader_at_a_time();
    let dir = TempDir::new("api-scope");
    ca_and_server_cert(&dir, &["scoped.example"]);
    let config = dir.write("config.toml", "[discovery]\napi_requests = true\n");
    let daemon = Daemon::start(&["--include-loopback", "--config", config.to_str().unwrap()]);
    let group = format!("relaywatch_{}/", daemon.pid());
    assert!(
        uprobe_events().contains(&group),
        "the per-process probes' events of {group}:\n{}",
        uprobe_events()
    );
    // A kept-alive TLS server on loopback (CPython, the same libssl as the client).
    let (server, line) = integration_tests::spawn_announcing(
        Command::new("/usr/bin/python3")
            .current_dir(&*dir)
            .args([
                "-c",
                "import socket,ssl,threading\n\
                 ctx=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain('server.pem','server.key')\n\
                 s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(8)\n\
                 print(s.getsockname()[1], flush=True)\n\
                 def serve(c):\n\
                 \x20   t=ctx.wrap_socket(c, server_side=True)\n\
                 \x20   while t.recv(65536): t.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')\n\
                 while True:\n\
                 \x20   c,_=s.accept(); threading.Thread(target=serve,args=(c,),daemon=True).start()\n",
            ]),
    );
    let port = line.trim().to_string();
    // Its client: ten requests on one connection, then it waits to be told to go.
    let (mut client, done) = integration_tests::spawn_announcing(
        Command::new("/usr/bin/python3")
            .current_dir(&*dir)
            .stdin(std::process::Stdio::piped())
            .args([
                "-c",
                "import socket,ssl,sys\n\
                 ctx=ssl.create_default_context(cafile='ca.pem')\n\
                 t=ctx.wrap_socket(socket.create_connection(('127.0.0.1',int(sys.argv[1]))), server_hostname='scoped.example')\n\
                 for i in range(10):\n\
                 \x20   t.sendall(b'GET /%d HTTP/1.1\\r\\nHost: scoped.example\\r\\n\\r\\n' % i); t.recv(65536)\n\
                 print('done', flush=True)\n\
                 sys.stdin.read()\n",
                &port,
            ]),
    );
    assert_eq!(done.trim(), "done");
    let (server_pid, client_pid) = (u64::from(server.0.id()), u64::from(client.0.id()));
    integration_tests::wait_until("the client is read", WAIT, || {
        pids_read(&daemon).contains(&client_pid)
    });
    let read = pids_read(&daemon);
    assert!(
        !read.contains(&server_pid),
        "the server (pid {server_pid}) is read: {read:?}\n{:#}",
        daemon.status()["tls_plaintext"]
    );
    let tls = daemon.status()["tls_plaintext"].clone();
    assert!(tls["processes_reading"].as_u64() >= Some(1), "{tls:#}");
    assert!(tls["requests_read"].as_u64() >= Some(1), "{tls:#}");
    // The client goes: it is no longer read.
    drop(client.0.stdin.take());
    let _ = client.0.wait();
    integration_tests::wait_until("the gone client is dropped", WAIT, || {
        !pids_read(&daemon).contains(&client_pid)
    });
    drop(server);
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        !uprobe_events().contains(&group),
        "events of {group} left behind:\n{}",
        uprobe_events()
    );
}
