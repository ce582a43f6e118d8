//! Relays learned from the requests themselves, and the gateways that are allowed to look like
//! one.
//!
//! A relay is a host that is not the provider but receives the provider's API requests. When a
//! process sends an OpenAI / Anthropic / Gemini API request (read from its TLS plaintext, see
//! `correlate::requests`) to a host that no list names and that is not allowed here, the host
//! becomes a *known relay*: the alert says `rule.name: api-shape`, and from then on every
//! connection to it alerts by name (also from processes whose TLS library is not read, and
//! without plaintext). Known relays are kept in the store (`relays` table) across restarts and
//! listed by `relaywatch relays`.
//!
//! Data model: host (canonical, lowercase) -> `KnownRelay` (first/last seen, by which process
//! and user, the API evidence, the relay software when its answer named it). At most
//! `MAX_RELAYS`; past that the least recently seen is forgotten (also in the store).
//!
//! What never counts as a relay: loopback and other local destinations (local model servers,
//! Ollama and vLLM on localhost, a local forwarding proxy), hosts and addresses of the
//! `[discovery] allow_*` settings, and requests made by allowed programs or systemd units.
use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    config::Discovery,
    intel::blocklist::{address_bits, name::canonical_query_name},
    output::store::MAX_RELAYS,
    report::record::{ApiRequest, RelayFacts},
};

/// A host learned to be an AI relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownRelay {
    pub host: String,
    /// How it was learned: `api-shape`.
    pub discovered_by: String,
    /// RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
    /// Requests seen to it since it was learned (this run and before).
    pub requests: u64,
    /// The process and user of the first request.
    pub pid: u32,
    pub executable: Option<String>,
    pub user: Option<String>,
    pub uid: u32,
    /// The first request's API evidence.
    pub api: ApiRequest,
    /// The relay software, once an answer named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
}

impl KnownRelay {
    /// What an alert says of this relay (`relaywatch.relay`).
    pub fn facts(&self) -> RelayFacts {
        RelayFacts {
            software: self.software.clone(),
            discovered_by: Some(self.discovered_by.clone()),
            first_seen: Some(self.first_seen.clone()),
            ..RelayFacts::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct KnownRelays {
    hosts: HashMap<String, KnownRelay>,
}

/// The canonical form hosts are compared in.
pub fn canonical_host(host: &str) -> Option<String> {
    canonical_query_name(host).map(|h| h.into_owned())
}

impl KnownRelays {
    /// Start from the relays the store kept; a row that does not read is skipped.
    pub fn from_store(rows: Vec<serde_json::Value>) -> KnownRelays {
        let mut known = KnownRelays::default();
        for row in rows.into_iter().take(MAX_RELAYS) {
            match serde_json::from_value::<KnownRelay>(row) {
                Ok(r) => {
                    if let Some(h) = canonical_host(&r.host) {
                        known.hosts.insert(h, r);
                    }
                }
                Err(e) => log::warn!("store: a known relay does not read ({e}); skipped"),
            }
        }
        known
    }

    pub fn get(&self, host: &str) -> Option<&KnownRelay> {
        self.hosts.get(&canonical_host(host)?)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// A request to `relay.host` was seen: learn the host or count the request. Returns the
    /// relay as it now stands, and whether it is new.
    pub fn note(&mut self, mut relay: KnownRelay) -> Option<(KnownRelay, bool)> {
        let host = canonical_host(&relay.host)?;
        if let Some(known) = self.hosts.get_mut(&host) {
            known.requests = known.requests.saturating_add(1);
            known.last_seen = relay.last_seen;
            if known.software.is_none() {
                known.software = relay.software;
            }
            return Some((known.clone(), false));
        }
        if self.hosts.len() >= MAX_RELAYS
            && let Some(oldest) = self
                .hosts
                .values()
                .min_by(|a, b| a.last_seen.cmp(&b.last_seen))
                .map(|r| r.host.clone())
        {
            self.hosts.remove(&oldest);
        }
        relay.host = host.clone();
        self.hosts.insert(host, relay.clone());
        Some((relay, true))
    }

    /// The relay software an answer named, for a known relay.
    pub fn set_software(&mut self, host: &str, software: &str) -> Option<KnownRelay> {
        let known = self.hosts.get_mut(&canonical_host(host)?)?;
        if known.software.as_deref() == Some(software) {
            return None;
        }
        known.software = Some(software.to_string());
        Some(known.clone())
    }
}

/// `[discovery] allow_*`: sanctioned gateways and programs.
#[derive(Debug, Default, Clone)]
pub struct RelayAllow {
    hosts: Vec<String>,
    cidrs: Vec<(IpAddr, u8)>,
    executables: Vec<String>,
    units: Vec<String>,
}

impl RelayAllow {
    /// The problems of the `allow_*` settings, each naming its key and index.
    pub fn check(d: &Discovery) -> Vec<String> {
        let mut out = Vec::new();
        for (i, h) in d.allow_hosts.iter().enumerate() {
            let is_name = canonical_host(h).is_some_and(|c| {
                c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            });
            if !is_name {
                out.push(format!("allow_hosts[{i}]: \"{h}\" is not a host name"));
            }
        }
        for (i, c) in d.allow_cidrs.iter().enumerate() {
            if let Err(why) = parse_cidr(c) {
                out.push(format!("allow_cidrs[{i}]: {why}"));
            }
        }
        for (i, e) in d.allow_executables.iter().enumerate() {
            if !e.starts_with('/') {
                out.push(format!(
                    "allow_executables[{i}]: \"{e}\" is not an absolute path"
                ));
            }
        }
        for (i, u) in d.allow_units.iter().enumerate() {
            if u.is_empty() || u.contains('/') || u.len() > 256 {
                out.push(format!("allow_units[{i}]: \"{u}\" is not a unit name"));
            }
        }
        out
    }

    /// From a checked configuration (entries that do not parse were refused by the check).
    pub fn new(d: &Discovery) -> RelayAllow {
        RelayAllow {
            hosts: d
                .allow_hosts
                .iter()
                .filter_map(|h| canonical_host(h))
                .collect(),
            cidrs: d
                .allow_cidrs
                .iter()
                .filter_map(|c| parse_cidr(c).ok())
                .collect(),
            executables: d.allow_executables.clone(),
            units: d.allow_units.clone(),
        }
    }

    /// Whether an API request to `host` at `ip`, by `executable` in `unit`, is sanctioned (or
    /// local, which is never a relay).
    pub fn allows(
        &self,
        host: Option<&str>,
        ip: Option<IpAddr>,
        executable: Option<&str>,
        unit: Option<&str>,
    ) -> bool {
        if let Some(ip) = ip
            && (is_local_ip(ip) || self.cidrs.iter().any(|(net, len)| in_net(ip, *net, *len)))
        {
            return true;
        }
        if let Some(h) = host.and_then(canonical_host)
            && (h == "localhost"
                || h.ends_with(".localhost")
                || h.parse::<IpAddr>().is_ok_and(is_local_ip)
                || self
                    .hosts
                    .iter()
                    .any(|a| h == *a || h.ends_with(&format!(".{a}"))))
        {
            return true;
        }
        executable.is_some_and(|e| self.executables.iter().any(|a| a == e))
            || unit.is_some_and(|u| self.units.iter().any(|a| a == u))
    }
}

fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("\"{text}\" is not an address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("\"{text}\": prefix length must be 0..={max}"))?,
        None => max,
    };
    Ok((ip, len))
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ((a, fa), (b, fb)) = (address_bits(ip), address_bits(net));
    if fa != fb {
        return false;
    }
    if len == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(len));
    a & mask == b & mask
}

/// Loopback, unspecified or link-local (the kernel's own rule, `Destination::is_local`).
fn is_local_ip(ip: IpAddr) -> bool {
    let d = match ip {
        IpAddr::V4(v) => monitor_common::Destination::from_ipv4_raw(u32::from_ne_bytes(v.octets())),
        IpAddr::V6(v) => {
            let o = v.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            monitor_common::Destination::from_ipv6_raw([w(0), w(4), w(8), w(12)])
        }
    };
    d.is_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(host: &str, seen: &str) -> KnownRelay {
        KnownRelay {
            host: host.into(),
            discovered_by: "api-shape".into(),
            first_seen: seen.into(),
            last_seen: seen.into(),
            requests: 1,
            pid: 42,
            executable: Some("/usr/bin/python3".into()),
            user: Some("alice".into()),
            uid: 1000,
            api: ApiRequest::default(),
            software: None,
        }
    }

    #[test]
    fn a_relay_is_learned_once_and_counted_after() {
        let mut k = KnownRelays::default();
        let (r, new) = k
            .note(relay("Relay.Example.", "2026-12-03T10:00:00Z"))
            .unwrap();
        assert!(new);
        assert_eq!(r.host, "relay.example");
        let (r, new) = k
            .note(relay("relay.example", "2026-12-03T11:00:00Z"))
            .unwrap();
        assert!(!new);
        assert_eq!(
            (r.requests, r.first_seen.as_str()),
            (2, "2026-12-03T10:00:00Z")
        );
        assert!(k.get("RELAY.example").is_some());
        assert_eq!(
            k.set_software("relay.example", "new-api")
                .unwrap()
                .software
                .as_deref(),
            Some("new-api")
        );
        assert!(
            k.set_software("relay.example", "new-api").is_none(),
            "no change, nothing to store"
        );
    }

    #[test]
    fn the_store_rows_come_back_and_bad_rows_are_skipped() {
        let good = serde_json::to_value(relay("relay.example", "2026-12-03T10:00:00Z")).unwrap();
        let k = KnownRelays::from_store(vec![good, serde_json::json!({"host": 7})]);
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn the_set_is_bounded() {
        let mut k = KnownRelays::default();
        for i in 0..MAX_RELAYS + 10 {
            k.note(relay(
                &format!("r{i}.example"),
                &format!("2026-12-03T10:{:02}:{:02}Z", i / 3600 % 60, i % 60),
            ));
        }
        assert_eq!(k.len(), MAX_RELAYS);
    }

    #[test]
    fn allowed_gateways_programs_units_and_local_destinations() {
        let d = Discovery {
            allow_hosts: vec!["gateway.corp.example".into()],
            allow_cidrs: vec!["10.20.0.0/16".into(), "2001:db8::/32".into()],
            allow_executables: vec!["/opt/litellm/bin/litellm".into()],
            allow_units: vec!["litellm.service".into()],
            ..Discovery::default()
        };
        assert!(RelayAllow::check(&d).is_empty());
        let a = RelayAllow::new(&d);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(a.allows(Some("gateway.corp.example"), ip("203.0.113.1"), None, None));
        assert!(a.allows(Some("eu.gateway.corp.example"), None, None, None));
        assert!(!a.allows(Some("evilgateway.corp.example.net"), None, None, None));
        assert!(a.allows(Some("x.example"), ip("10.20.3.4"), None, None));
        assert!(a.allows(Some("x.example"), ip("2001:db8::5"), None, None));
        assert!(!a.allows(Some("x.example"), ip("10.21.0.1"), None, None));
        assert!(
            a.allows(Some("x.example"), ip("127.0.0.1"), None, None),
            "loopback is never a relay"
        );
        assert!(a.allows(Some("localhost"), None, None, None));
        assert!(a.allows(
            None,
            ip("203.0.113.1"),
            Some("/opt/litellm/bin/litellm"),
            None
        ));
        assert!(a.allows(None, ip("203.0.113.1"), None, Some("litellm.service")));
        assert!(!a.allows(
            Some("relay.example"),
            ip("203.0.113.1"),
            Some("/usr/bin/python3"),
            Some("user@1000.service")
        ));
    }

    #[test]
    fn bad_allow_settings_name_the_key_and_reason() {
        let d = Discovery {
            allow_hosts: vec!["not a host".into()],
            allow_cidrs: vec!["10.0.0.0/40".into(), "nonsense".into()],
            allow_executables: vec!["litellm".into()],
            allow_units: vec!["a/b".into()],
            ..Discovery::default()
        };
        let problems = RelayAllow::check(&d);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].starts_with("allow_hosts[0]"));
        assert!(problems[1].contains("0..=32"));
        assert!(problems[3].contains("absolute"));
    }
}
