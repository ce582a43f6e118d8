//! Naming destinations from real clients' first bytes and from DNS answers.
//!
//! Every client here talks only to loopback peers: a TLS server with a throwaway certificate,
//! HTTP CONNECT and SOCKS5 proxies that send every tunnel to that server whatever host was asked
//! (no name is ever resolved by a real resolver), dnsmasq on a loopback address of its own answering from a fixed
//! table, and a UDP socket that receives a QUIC Initial.
use std::{process::Command, time::Duration};

use integration_tests::{
    Daemon, DnsServer, Fixture, KillOnDrop, PYTHON, curl_resolving, curl_tls, fresh_dir, poll,
    real_executable, run_client, run_client_any_exit, spawn_announcing, venv_python,
};
use serde_json::{Value, json};

const ARGS: &[&str] = &["--include-loopback", "--log-connections"];
const WAIT: Duration = Duration::from_secs(10);

/// The one record of `pid` to `port`.
fn record_to(daemon: &Daemon, pid: u32, port: u16) -> Value {
    poll(
        std::time::Instant::now() + WAIT,
        Duration::from_millis(20),
        || {
            let found: Vec<Value> = daemon
                .records_for(pid)
                .into_iter()
                .filter(|r| {
                    r["destination"]["port"] == port || r["relaywatch"]["proxy"]["port"] == port
                })
                .collect();
            if found.len() > 1 {
                panic!("several records for pid {pid} port {port}: {found:#?}");
            }
            found.into_iter().next().ok_or_else(|| {
                format!(
                    "no record for pid {pid} port {port}; all: {:#?}\nstderr:\n{}",
                    daemon.records_for(pid),
                    daemon.stderr()
                )
            })
        },
    )
}

fn assert_named(r: &Value, domain: &str, source: &str) {
    assert_eq!(r["destination"]["domain"], domain, "{r:#}");
    assert_eq!(r["relaywatch"]["name_source"], source, "{r:#}");
}

fn assert_tls(r: &Value, server_name: &str) {
    assert_eq!(r["tls"]["client"]["server_name"], server_name, "{r:#}");
    let ja4 = r["relaywatch"]["tls"]["ja4"].as_str().unwrap_or_default();
    assert!(
        ja4.starts_with("t13d") || ja4.starts_with("t12d"),
        "JA4 {ja4:?} in {r:#}"
    );
    assert_eq!(
        ja4.len(),
        36,
        "JA4 a_b_c is 10+1+12+1+12 characters: {ja4:?}"
    );
}

#[test]
fn curl_tls_sni_names_the_destination() {
    let daemon = Daemon::start(ARGS);
    let server = Fixture::tls();
    let port = server.port;
    let pid = curl_tls("api.openai.com", port, "/v1/models");
    let r = record_to(&daemon, pid, port);
    assert_eq!(r["process"]["executable"], real_executable("/usr/bin/curl"));
    assert_eq!(r["destination"]["ip"], "127.0.0.1");
    assert_named(&r, "api.openai.com", "sni");
    assert_tls(&r, "api.openai.com");
    assert!(
        r["relaywatch"]["tls"]["alpn"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == "http/1.1")),
        "{r:#}"
    );
}

#[test]
fn python_ssl_client_hello_written_with_write2_is_read() {
    let daemon = Daemon::start(ARGS);
    let server = Fixture::tls();
    let script = "import socket,ssl,sys\n\
        ctx=ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE\n\
        s=ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='api.anthropic.com')\n\
        s.sendall(b'GET / HTTP/1.1\\r\\nHost: api.anthropic.com\\r\\n\\r\\n'); s.recv(100); s.close()";
    let pid = run_client(Command::new(PYTHON).args(["-c", script, &server.port.to_string()]));
    let r = record_to(&daemon, pid, server.port);
    assert_named(&r, "api.anthropic.com", "sni");
    assert_tls(&r, "api.anthropic.com");
}

#[test]
fn openssl_s_client_servername_is_read() {
    let daemon = Daemon::start(ARGS);
    let server = Fixture::tls();
    let connect = format!("127.0.0.1:{}", server.port);
    let pid = run_client(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "generativelanguage.googleapis.com",
                "-brief",
            ])
            .stdin(std::process::Stdio::null()),
    );
    let r = record_to(&daemon, pid, server.port);
    assert_named(&r, "generativelanguage.googleapis.com", "sni");
    assert_eq!(r["process"]["name"], "openssl");
}

#[test]
fn node_tls_connect_servername_is_read() {
    let daemon = Daemon::start(ARGS);
    let server = Fixture::tls();
    let script = "const tls=require('tls');\
        const s=tls.connect({host:'127.0.0.1',port:+process.argv[1],servername:'api.x.ai',rejectUnauthorized:false},()=>{s.end();});\
        s.on('error',()=>{}); s.on('close',()=>process.exit(0));";
    let pid = run_client(Command::new("node").args(["-e", script, &server.port.to_string()]));
    let r = record_to(&daemon, pid, server.port);
    assert_named(&r, "api.x.ai", "sni");
    assert_eq!(r["process"]["name"], "node");
}

#[test]
fn post_quantum_sized_client_hello_in_two_sends_is_read_whole() {
    let daemon = Daemon::start(ARGS);
    let sink = Fixture::start(&["sink"]);
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/pq_client_hello.py");
    let pid = run_client(
        Command::new(PYTHON)
            .arg(script)
            .args([&sink.port.to_string(), "api.openai.com"]),
    );
    let r = record_to(&daemon, pid, sink.port);
    assert_named(&r, "api.openai.com", "sni");
    assert_tls(&r, "api.openai.com");
    assert_eq!(r["relaywatch"]["tls"]["alpn"], json!(["h2", "http/1.1"]));
}

#[test]
fn plain_http_host_is_read_and_secrets_never_leave_the_daemon() {
    let daemon = Daemon::start(ARGS);
    let server = integration_tests::LoopbackServer::start("127.0.0.1");
    let port = server.port;
    let url = format!("http://api.deepseek.com:{port}/v1/chat/completions");
    // The secret header and the prompt travel only in the request bytes (read from files), so
    // anything of them in the output would be captured payload leaking.
    let secret = "sk-relaywatch-test-0123456789abcdef";
    let dir = fresh_dir("http");
    let headers = dir.join("headers");
    let body = dir.join("body");
    std::fs::write(&headers, format!("Authorization: Bearer {secret}\n")).unwrap();
    std::fs::write(&body, "{\"prompt\":\"confidential-prompt-text\"}").unwrap();
    let pid = run_client(
        curl_resolving("api.deepseek.com", port, false)
            .arg("-H")
            .arg(format!("@{}", headers.display()))
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&url),
    );
    let r = record_to(&daemon, pid, port);
    assert_named(&r, "api.deepseek.com", "http_host");

    // A key on the command line itself is process context: kept in shape, value redacted.
    let auth = format!("Authorization: Bearer {secret}");
    let pid2 =
        run_client(curl_resolving("api.deepseek.com", port, false).args(["-H", &auth, &url]));
    let r2 = record_to(&daemon, pid2, port);
    assert_eq!(
        r2["process"]["args"][9], "Authorization: [REDACTED]",
        "{r2:#}"
    );

    let (status, stderr) = daemon.stop();
    assert!(status.success());
    let everything = format!("{r}{r2}{stderr}");
    for leaked in [secret, "Bearer", "confidential-prompt-text"] {
        assert!(
            !everything.contains(leaked),
            "{leaked} leaked: {everything}"
        );
    }
}

#[test]
fn curl_through_a_local_http_connect_proxy_is_named_by_the_tunnelled_sni() {
    // Default configuration: loopback is not egress, but a proxy connection still is.
    let daemon = Daemon::start(&["--log-connections"]);
    let server = Fixture::tls();
    let proxy = Fixture::start(&["connect-proxy", &server.port.to_string()]);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let pid = run_client(Command::new("curl").args([
        "-sS",
        "-k",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-x",
        &proxy_url,
        "https://api.openai.com/v1/models",
    ]));
    let r = record_to(&daemon, pid, proxy.port);
    assert_named(&r, "api.openai.com", "sni");
    assert_eq!(r["destination"]["port"], 443, "{r:#}");
    assert!(
        r["destination"].get("ip").is_none(),
        "the target's address is the proxy's business: {r:#}"
    );
    assert_eq!(
        r["relaywatch"]["proxy"],
        json!({"ip": "127.0.0.1", "port": proxy.port})
    );
    assert_eq!(r["process"]["name"], "curl");
    assert_tls(&r, "api.openai.com");
}

#[test]
fn curl_through_a_local_socks5_proxy_with_remote_resolution_is_named() {
    let daemon = Daemon::start(&["--log-connections"]);
    let server = Fixture::tls();
    let proxy = Fixture::start(&["socks5", &server.port.to_string()]);
    let socks = format!("127.0.0.1:{}", proxy.port);
    let pid = run_client(Command::new("curl").args([
        "-sS",
        "-k",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "--socks5-hostname",
        &socks,
        "https://api.anthropic.com:8443/v1/messages",
    ]));
    let r = record_to(&daemon, pid, proxy.port);
    assert_named(&r, "api.anthropic.com", "sni");
    assert_eq!(r["destination"]["port"], 8443, "{r:#}");
    assert_eq!(
        r["relaywatch"]["proxy"],
        json!({"ip": "127.0.0.1", "port": proxy.port})
    );
}

#[test]
fn socks5_target_without_tls_is_named_by_the_proxy_target() {
    let daemon = Daemon::start(&["--log-connections", "--name-wait-ms", "1000"]);
    let sink = Fixture::start(&["sink"]);
    let proxy = Fixture::start(&["socks5", &sink.port.to_string()]);
    // A SOCKS5 client that opens a tunnel to api.mistral.ai:443 and then sends nothing.
    let script = "import socket,sys,time\n\
        s=socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
        s.sendall(b'\\x05\\x01\\x00'); s.recv(2)\n\
        n=b'api.mistral.ai'; s.sendall(b'\\x05\\x01\\x00\\x03'+bytes([len(n)])+n+(443).to_bytes(2,'big')); s.recv(10)\n\
        time.sleep(1.5)";
    let pid = run_client(Command::new(PYTHON).args(["-c", script, &proxy.port.to_string()]));
    let r = record_to(&daemon, pid, proxy.port);
    assert_named(&r, "api.mistral.ai", "proxy_target");
    assert_eq!(r["destination"]["port"], 443);
}

#[test]
fn local_traffic_that_is_not_a_proxy_stays_unreported() {
    let daemon = Daemon::start(&["--log-connections"]);
    let server = Fixture::tls();
    let pid = curl_tls("api.openai.com", server.port, "/");
    // The positive control: a curl through a local HTTP CONNECT proxy afterwards is reported
    // under the same configuration; once its record is there, the plain one was judged.
    let proxy = Fixture::start(&["connect-proxy", &server.port.to_string()]);
    let control = run_client(Command::new("curl").args([
        "-sS",
        "-k",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-x",
        &format!("http://127.0.0.1:{}", proxy.port),
        "https://api.openai.com/v1/models",
    ]));
    let r = record_to(&daemon, control, proxy.port);
    assert_named(&r, "api.openai.com", "sni");
    assert!(
        daemon.records_for(pid).is_empty(),
        "{:#?}",
        daemon.records_for(pid)
    );
}

#[test]
fn dns_answer_names_a_bare_tcp_connection() {
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--name-wait-ms",
        "500",
    ]);
    let sink = Fixture::start(&["sink"]);
    let dns = DnsServer::start(&[
        ("api.deepseek.com", "127.0.0.77"),
        ("chat.relay.example", "127.0.0.78"),
    ]);
    // The client asks dnsmasq itself, then opens a bare TCP connection and sends nothing.
    let script = "import socket,struct,sys,time\n\
        name=sys.argv[2]\n\
        q=b'\\xab\\xcd\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'+b''.join(bytes([len(p)])+p.encode() for p in name.split('.'))+b'\\x00\\x00\\x01\\x00\\x01'\n\
        u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3); u.sendto(q, (sys.argv[1], 53)); a=u.recv(512)\n\
        ip=socket.inet_ntoa(a[-4:])\n\
        c=socket.socket(); c.settimeout(2)\n\
        try: c.connect((ip, int(sys.argv[3])))\n\
        except OSError: pass\n\
        time.sleep(0.8)";
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        script,
        &dns.ip,
        "api.deepseek.com",
        &sink.port.to_string(),
    ]));
    let r = record_to(&daemon, pid, sink.port);
    assert_eq!(r["destination"]["ip"], "127.0.0.77", "{r:#}");
    assert_named(&r, "api.deepseek.com", "dns_answer_process");

    // Another process connecting to an address someone else resolved: host-wide evidence.
    let script2 = "import socket,sys,time\n\
        c=socket.socket(); c.settimeout(2)\n\
        try: c.connect(('127.0.0.77', int(sys.argv[1])))\n\
        except OSError: pass\n\
        time.sleep(0.8)";
    let pid2 = run_client(Command::new(PYTHON).args(["-c", script2, &sink.port.to_string()]));
    let r2 = record_to(&daemon, pid2, sink.port);
    assert_named(&r2, "api.deepseek.com", "dns_answer_host");
}

/// A python client that asks `argv[1]`:53 over TCP for `argv[2]` (type A), reads the whole
/// answer however it is segmented, then opens a bare TCP connection to the answer on port
/// `argv[3]` and sends nothing.
const TCP_DNS_CLIENT: &str = "import socket,struct,sys,time\n\
    name=sys.argv[2]\n\
    q=b'\\xab\\xcd\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'+b''.join(bytes([len(p)])+p.encode() for p in name.split('.'))+b'\\x00\\x00\\x01\\x00\\x01'\n\
    t=socket.create_connection((sys.argv[1], 53), timeout=3); t.sendall(struct.pack('!H', len(q))+q)\n\
    h=b''\n\
    while len(h)<2: h+=t.recv(2-len(h))\n\
    n=struct.unpack('!H', h)[0]; a=b''\n\
    while len(a)<n: a+=t.recv(n-len(a))\n\
    t.close(); ip=socket.inet_ntoa(a[-4:])\n\
    c=socket.socket(); c.settimeout(2)\n\
    try: c.connect((ip, int(sys.argv[3])))\n\
    except OSError: pass\n\
    time.sleep(0.8)";

#[test]
fn dns_answer_over_tcp_names_a_bare_tcp_connection() {
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--name-wait-ms",
        "500",
    ]);
    let sink = Fixture::start(&["sink"]);
    let dns = DnsServer::start_with_ttl(600, &[("tcp-only.relay.example", "127.0.0.79")]);
    // The query goes to dnsmasq over TCP (2-byte length prefix), as resolvers do for large
    // answers or with `options use-vc`; then a bare connection to the answer.
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        TCP_DNS_CLIENT,
        &dns.ip,
        "tcp-only.relay.example",
        &sink.port.to_string(),
    ]));
    let r = record_to(&daemon, pid, sink.port);
    assert_eq!(r["destination"]["ip"], "127.0.0.79", "{r:#}");
    assert_named(&r, "tcp-only.relay.example", "dns_answer_process");
}

/// A DNS server on loopback that answers over TCP in two segments: the length and the first
/// bytes, then (after a pause, TCP_NODELAY) the rest. Killed on drop.
struct SplittingDnsServer {
    _server: KillOnDrop,
}

impl SplittingDnsServer {
    fn start(ip: &str, answer_ip: &str) -> SplittingDnsServer {
        let script = "import socket,struct,sys,time\n\
            l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((sys.argv[1], 53)); l.listen(8)\n\
            print('ready', flush=True)\n\
            while True:\n\
            \x20   c,_=l.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
            \x20   n=struct.unpack('!H', c.recv(2))[0]; q=b''\n\
            \x20   while len(q)<n: q+=c.recv(n-len(q))\n\
            \x20   qd=q[12:]; end=qd.index(b'\\x00')+5\n\
            \x20   m=q[:2]+b'\\x81\\x80\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x00'+qd[:end]+b'\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x01\\x2c\\x00\\x04'+socket.inet_aton(sys.argv[2])\n\
            \x20   f=struct.pack('!H', len(m))+m\n\
            \x20   c.sendall(f[:9]); time.sleep(0.2); c.sendall(f[9:]); time.sleep(0.2); c.close()\n";
        let (child, line) =
            spawn_announcing(Command::new(PYTHON).args(["-c", script, ip, answer_ip]));
        assert_eq!(line.trim(), "ready", "splitting DNS server did not start");
        SplittingDnsServer { _server: child }
    }
}

#[test]
fn dns_answer_over_tcp_split_over_segments_names_a_bare_tcp_connection() {
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--name-wait-ms",
        "500",
    ]);
    let sink = Fixture::start(&["sink"]);
    let dns_ip = integration_tests::unique_loopback_ip();
    let _dns = SplittingDnsServer::start(&dns_ip, "127.0.0.80");
    // The client reads the whole answer (its two segments), then connects to the address.
    let pid = run_client(Command::new(PYTHON).args([
        "-c",
        TCP_DNS_CLIENT,
        &dns_ip,
        "split.relay.example",
        &sink.port.to_string(),
    ]));
    let r = record_to(&daemon, pid, sink.port);
    assert_eq!(r["destination"]["ip"], "127.0.0.80", "{r:#}");
    assert_named(&r, "split.relay.example", "dns_answer_process");
}

#[test]
fn a_quic_client_hello_spanning_two_initials_is_reassembled() {
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--udp-window-ms",
        "300",
    ]);
    let receivers: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<String> = receivers
        .iter()
        .map(|r| r.local_addr().unwrap().port().to_string())
        .collect();
    // A ClientHello over 1,200 bytes (here: a long ALPN list, as a post-quantum key share makes
    // it) goes out as two Initial packets in two datagrams; sent once from an unconnected socket
    // and once from a connected one (as most QUIC stacks do).
    let script = "import socket,sys,time\n\
        from aioquic.quic.configuration import QuicConfiguration\n\
        from aioquic.quic.connection import QuicConnection\n\
        alpn=['h3']+['x-padding-%02d-%s' % (i, 'p'*200) for i in range(5)]\n\
        for connected, port in ((False, int(sys.argv[1])), (True, int(sys.argv[2]))):\n\
        \x20   c=QuicConnection(configuration=QuicConfiguration(is_client=True, server_name='api.anthropic.com', alpn_protocols=alpn))\n\
        \x20   c.connect(('127.0.0.1', port), now=time.time())\n\
        \x20   d=c.datagrams_to_send(now=time.time()); assert len(d) == 2, len(d)\n\
        \x20   u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        \x20   if connected: u.connect(('127.0.0.1', port))\n\
        \x20   for data, addr in d: u.send(data) if connected else u.sendto(data, addr)\n\
        time.sleep(0.5)";
    let pid = run_client(Command::new(venv_python()).args(["-c", script, &ports[0], &ports[1]]));
    for (port, action) in [(&ports[0], "sendmsg"), (&ports[1], "connect")] {
        let r = record_to(&daemon, pid, port.parse().unwrap());
        assert_eq!(
            (
                r["network"]["transport"].as_str(),
                r["event"]["action"].as_str()
            ),
            (Some("udp"), Some(action)),
            "{r:#}"
        );
        assert_named(&r, "api.anthropic.com", "quic_sni");
        assert!(
            r["relaywatch"]["tls"]["alpn"]
                .as_array()
                .is_some_and(|a| a.len() == 6),
            "{r:#}"
        );
    }
}

#[test]
fn quic_initial_from_aioquic_is_named_by_its_sni() {
    let daemon = Daemon::start(&[
        "--include-loopback",
        "--log-connections",
        "--udp-window-ms",
        "300",
    ]);
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let script = "import socket,sys,time\n\
        from aioquic.quic.configuration import QuicConfiguration\n\
        from aioquic.quic.connection import QuicConnection\n\
        c=QuicConnection(configuration=QuicConfiguration(is_client=True, server_name='api.openai.com', alpn_protocols=['h3']))\n\
        c.connect(('127.0.0.1', int(sys.argv[1])), now=time.time())\n\
        u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        for data, addr in c.datagrams_to_send(now=time.time()): u.sendto(data, addr)\n\
        time.sleep(0.3)";
    let pid =
        run_client_any_exit(Command::new(venv_python()).args(["-c", script, &port.to_string()]));
    let r = record_to(&daemon, pid, port);
    assert_eq!(r["network"]["transport"], "udp");
    assert_named(&r, "api.openai.com", "quic_sni");
    let ja4 = r["relaywatch"]["tls"]["ja4"].as_str().unwrap_or_default();
    assert!(ja4.starts_with("q13d"), "QUIC JA4 {ja4:?}");
    assert!(
        r["relaywatch"]["tls"]["alpn"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == "h3")),
        "{r:#}"
    );
}
