//! Where a remote sink connects: its URL taken apart, TCP or TLS streams, and the trust store.
//!
//! TLS uses rustls with the ring provider. Trusted roots come from the system bundle
//! (`/etc/ssl/certs/ca-certificates.crt`, Debian's ca-certificates) or, when a sink sets
//! `ca_file`, from that PEM file alone (a private SIEM CA should not also trust every public CA).
use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, ServerName, pem::PemObject as _},
    },
};

pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A sink URL: `SCHEME://HOST[:PORT][/PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    /// Without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// Starts with '/'; "/" when the URL has none.
    pub path: String,
}

impl Endpoint {
    /// Parse a URL already checked by `config` (errors are still reported, never panics).
    pub fn parse(url: &str) -> Result<Endpoint> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| anyhow!("\"{url}\" is not a URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, tail) = v6
                    .split_once(']')
                    .ok_or_else(|| anyhow!("\"{url}\": bad [IPv6] host"))?;
                (h, tail.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let default_port = match scheme {
            "udp" | "tcp" => 514,
            "tls" => 6514,
            "http" => 80,
            "https" => 443,
            other => bail!("\"{url}\": unsupported scheme \"{other}\""),
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| anyhow!("\"{url}\": bad port \"{p}\""))?,
            None => default_port,
        };
        if host.is_empty() {
            bail!("\"{url}\": missing host");
        }
        Ok(Endpoint {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.scheme.as_str(), "tls" | "https")
    }

    /// `host:port` as an HTTP Host header writes it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A byte stream to a collector, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to one endpoint, with TLS when its scheme says so.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    pub fn new(endpoint: Endpoint, ca_file: Option<&Path>) -> Result<Connector> {
        let tls = if endpoint.is_tls() {
            let config = client_config(ca_file)?;
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                anyhow!("\"{}\" is not a valid TLS server name: {e}", endpoint.host)
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Connector { endpoint, tls })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub async fn connect(&self) -> Result<Box<dyn Io>> {
        let e = &self.endpoint;
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((e.host.as_str(), e.port)),
        )
        .await
        .map_err(|_| anyhow!("connecting to {}: timed out", e.authority()))?
        .with_context(|| format!("connecting to {}", e.authority()))?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake with {}: timed out", e.authority()))?
            .with_context(|| format!("TLS handshake with {}", e.authority()))?;
        Ok(Box::new(tls))
    }
}

/// A rustls client configuration trusting `ca_file`, or the system bundle.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig> {
    let bundle = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let pem = std::fs::read(bundle)
        .with_context(|| format!("reading CA certificates {}", bundle.display()))?;
    let mut roots = RootCertStore::empty();
    let mut bad = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert
            .map_err(|e| e.to_string())
            .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
        {
            Ok(()) => {}
            Err(_) => bad += 1,
        }
    }
    if roots.is_empty() {
        bail!(
            "{}: no usable CA certificate (PEM \"CERTIFICATE\" blocks){}",
            bundle.display(),
            if bad > 0 {
                format!(", {bad} unusable")
            } else {
                String::new()
            }
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart_with_default_ports() {
        let e = Endpoint::parse("tls://siem.example.com").unwrap();
        assert_eq!(
            (e.scheme.as_str(), e.host.as_str(), e.port, e.path.as_str()),
            ("tls", "siem.example.com", 6514, "/")
        );
        let e = Endpoint::parse("https://[::1]:8088/services/collector").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str(), e.authority()),
            ("::1", 8088, "/services/collector", "[::1]:8088".to_owned())
        );
        assert_eq!(Endpoint::parse("udp://10.0.0.1").unwrap().port, 514);
        assert_eq!(Endpoint::parse("http://h").unwrap().port, 80);
        assert!(Endpoint::parse("ftp://h").is_err());
        assert!(Endpoint::parse("tcp://h:x").is_err());
        assert!(Endpoint::parse("h:1").is_err());
    }

    #[test]
    fn ca_file_problems_are_named() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("reading CA certificates /nonexistent/ca.pem: "),
            "{e:#}"
        );
        let f =
            std::env::temp_dir().join(format!("relaywatch-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = client_config(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("no usable CA certificate"), "{e}");
    }
}
