//! A TLS client on rustls, the stack relaywatch cannot read plaintext from (no symbols to
//! probe): POST an OpenAI chat completion to NAME at IP:PORT, trusting the CA file.
//! args: IP PORT NAME CA-FILE
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::Arc,
};

use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ip, port, name, ca] = args.as_slice() else {
        eprintln!("usage: rustls-client IP PORT NAME CA-FILE");
        std::process::exit(2);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server = ServerName::try_from(name.clone()).expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("TLS client");
    let mut sock = TcpStream::connect(format!("{ip}:{port}")).expect("connect");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    write!(
        tls,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {name}\r\nAuthorization: Bearer sk-RUSTLSKEY0123456789\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    if !answer.starts_with(b"HTTP/1.1 200") {
        eprintln!("unexpected answer: {}", String::from_utf8_lossy(&answer));
        std::process::exit(1);
    }
}
