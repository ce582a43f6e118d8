//! Real egress with the DEFAULT configuration (no `--include-loopback`, no `--log-connections`):
//! clients in the root namespace reach a test host in a network namespace of the test's own
//! (the only non-loopback peer tests may talk to) believing it is an AI provider, and the daemon
//! must name each connection from its first bytes and ALERT on it.
//!
//! The test host runs `openssl s_server` (TLS, a certificate for the test names signed by a
//! throwaway CA the clients trust, so every handshake completes and each client writes its
//! request) and python's `http.server` (plain HTTP). The clients are three TLS stacks (curl's,
//! CPython's `ssl`, node's `tls`) and curl over plain HTTP. No name is ever resolved: curl gets
//! `--resolve`, python and node connect to the address and send the name as SNI.
use std::{path::PathBuf, process::Command, time::Duration};

use integration_tests::{
    Daemon, PYTHON, TempDir, TestNet, ca_and_server_cert, curl_to, real_executable, run_client,
    serve_in,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// An alert that a connection started (not a flow end or a dedupe summary).
fn is_start_alert(r: &Value) -> bool {
    r["event"]["kind"] == "alert" && r["event"]["type"] == json!(["connection", "start"])
}

/// The one start alert for `pid`, waiting for it.
fn only_alert(daemon: &Daemon, pid: u32) -> Value {
    let alerts = daemon.wait_matching(pid, 1, WAIT, is_start_alert);
    assert_eq!(
        alerts.len(),
        1,
        "expected exactly one alert for pid {pid}: {alerts:#?}\nstderr:\n{}",
        daemon.stderr()
    );
    alerts.into_iter().next().unwrap()
}

fn assert_alert(
    a: &Value,
    pid: u32,
    executable: &str,
    (ip, port, network_type): (&str, u16, &str),
    (domain, source): (&str, &str),
    rule: &str,
) {
    assert_eq!(a["event"]["kind"], "alert", "{a:#}");
    assert_eq!(a["event"]["action"], "ai-provider-connection", "{a:#}");
    assert_eq!(a["event"]["severity"], 73, "{a:#}");
    assert_eq!(a["rule"]["category"], "ai-provider", "{a:#}");
    assert_eq!(a["rule"]["name"], rule, "{a:#}");
    assert_eq!(a["destination"]["ip"], ip, "{a:#}");
    assert_eq!(a["destination"]["port"], port, "{a:#}");
    assert_eq!(a["destination"]["domain"], domain, "{a:#}");
    assert_eq!(a["relaywatch"]["name_source"], source, "{a:#}");
    assert_eq!(a["relaywatch"]["severity"], "high", "{a:#}");
    assert_eq!(a["relaywatch"]["action"], "alert", "{a:#}");
    assert_eq!(a["network"]["transport"], "tcp", "{a:#}");
    assert_eq!(a["network"]["type"], network_type, "{a:#}");
    assert_eq!(a["network"]["direction"], "egress", "{a:#}");
    assert_eq!(a["process"]["pid"], pid, "{a:#}");
    assert_eq!(a["process"]["executable"], executable, "{a:#}");
    assert_eq!(
        a["process"]["parent"]["pid"],
        std::process::id(),
        "the test spawned it; {a:#}"
    );
    assert_eq!(a["user"]["id"], "0", "{a:#}");
    assert_eq!(
        a["threat"]["enrichments"][0]["matched"]["atomic"], domain,
        "{a:#}"
    );
    assert_eq!(
        a["threat"]["enrichments"][0]["matched"]["field"], "destination.domain",
        "{a:#}"
    );
    if source == "sni" {
        assert_eq!(a["tls"]["client"]["server_name"], domain, "{a:#}");
    } else {
        assert!(a["tls"].is_null(), "no TLS on plain HTTP: {a:#}");
    }
}

#[test]
fn tls_clients_reaching_a_test_host_as_ai_providers_alert_by_sni_with_the_default_config() {
    let net = TestNet::create(71);
    let dir = TempDir::new("egress-tls");
    ca_and_server_cert(
        &dir,
        &[
            "api.openai.com",
            "api.anthropic.com",
            "api.x.ai",
            "www.example.org",
        ],
    );
    let ca: PathBuf = dir.join("ca.pem");
    let _server = serve_in(
        &net,
        &dir,
        443,
        &[
            "openssl",
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            "443",
            "-cert",
            "server.pem",
            "-key",
            "server.key",
        ],
    );
    // Only the daemon's own config file of built-in defaults (the harness writes it).
    let daemon = Daemon::start(&[]);
    let v4 = net.peer_v4.as_str();
    let v6 = net.peer_v6.as_str();

    // The negative first: a name no list knows, same server, same client program.
    let quiet = run_client(&mut curl_to(
        "www.example.org",
        443,
        v4,
        "https://www.example.org/",
        Some(&ca),
    ));

    let curl = run_client(&mut curl_to(
        "api.openai.com",
        443,
        v4,
        "https://api.openai.com/v1/models",
        Some(&ca),
    ));
    let curl6 = run_client(&mut curl_to(
        "api.x.ai",
        443,
        v6,
        "https://api.x.ai/v1/models",
        Some(&ca),
    ));
    let python = run_client(Command::new(PYTHON).args([
        "-c",
        "import socket,ssl,sys\n\
         ctx=ssl.create_default_context(cafile=sys.argv[3])\n\
         raw=socket.create_connection((sys.argv[1], 443), timeout=10)\n\
         s=ctx.wrap_socket(raw, server_hostname=sys.argv[2])\n\
         s.sendall(b'GET /v1/messages HTTP/1.0\\r\\nHost: '+sys.argv[2].encode()+b'\\r\\n\\r\\n')\n\
         assert s.recv(4096).startswith(b'HTTP/1.0 200')\n\
         s.close()\n",
        v4,
        "api.anthropic.com",
        ca.to_str().unwrap(),
    ]));
    let node = run_client(Command::new("node").args([
        "-e",
        "const tls=require('tls'),fs=require('fs');\
         const [ip,name,ca]=process.argv.slice(1);\
         const s=tls.connect({host:ip,port:443,servername:name,ca:fs.readFileSync(ca)},()=>{\
           s.write('GET /v1/models HTTP/1.0\\r\\nHost: '+name+'\\r\\n\\r\\n');});\
         let got='';s.on('data',d=>{got+=d;});\
         s.on('error',e=>{console.error(e);process.exit(1);});\
         s.on('end',()=>process.exit(got.startsWith('HTTP/1.0 200')?0:2));",
        v4,
        "api.openai.com",
        ca.to_str().unwrap(),
    ]));

    let curl_exe = real_executable("/usr/bin/curl");
    let a = only_alert(&daemon, curl);
    assert_alert(
        &a,
        curl,
        &curl_exe,
        (v4, 443, "ipv4"),
        ("api.openai.com", "sni"),
        "openai.com",
    );
    assert_eq!(a["process"]["name"], "curl", "{a:#}");
    assert!(
        a["relaywatch"]["blocklist"]["file"]
            .as_str()
            .is_some_and(|f| f.contains("openai")),
        "{a:#}"
    );

    let a = only_alert(&daemon, curl6);
    assert_alert(
        &a,
        curl6,
        &curl_exe,
        (v6, 443, "ipv6"),
        ("api.x.ai", "sni"),
        "x.ai",
    );

    let a = only_alert(&daemon, python);
    assert_alert(
        &a,
        python,
        &real_executable(PYTHON),
        (v4, 443, "ipv4"),
        ("api.anthropic.com", "sni"),
        "anthropic.com",
    );
    assert_eq!(a["process"]["name"], "python3", "{a:#}");

    let a = only_alert(&daemon, node);
    assert_alert(
        &a,
        node,
        &real_executable("/usr/bin/node"),
        (v4, 443, "ipv4"),
        ("api.openai.com", "sni"),
        "openai.com",
    );

    // The positives arrived, and the unlisted connection was made before all of them: it has
    // been judged, and raised nothing.
    assert_eq!(
        daemon.everything_for(quiet),
        Vec::<Value>::new(),
        "an unlisted name raised something"
    );
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn plain_http_to_a_test_host_alerts_by_its_host_header_with_the_default_config() {
    let net = TestNet::create(72);
    let dir = TempDir::new("egress-http");
    let _server = serve_in(
        &net,
        &dir,
        80,
        &[PYTHON, "-m", "http.server", "80", "--bind", &net.peer_v4],
    );
    let daemon = Daemon::start(&[]);
    let v4 = net.peer_v4.as_str();
    let plain = |name: &str| curl_to(name, 80, v4, &format!("http://{name}/"), None);
    let quiet = run_client(&mut plain("www.example.org"));
    let pid = run_client(&mut plain("api.anthropic.com"));
    let a = only_alert(&daemon, pid);
    assert_alert(
        &a,
        pid,
        &real_executable("/usr/bin/curl"),
        (v4, 80, "ipv4"),
        ("api.anthropic.com", "http_host"),
        "anthropic.com",
    );
    assert_eq!(
        daemon.everything_for(quiet),
        Vec::<Value>::new(),
        "an unlisted Host raised something"
    );
    let (status, stderr) = daemon.stop();
    assert!(status.success(), "{status}: {stderr}");
}
