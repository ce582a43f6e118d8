//! Relay discovery beyond any list: the base-URL variables AI clients are configured with.
//!
//! A relay no list knows is still named on the client side: `OPENAI_BASE_URL=https://relay.example/v1`,
//! `ANTHROPIC_BASE_URL=...`. When a program starts (exec tracepoint) and once for every process
//! running when the agent starts, the named variables — and only those — are taken from
//! /proc/PID/environ, and only the host of each URL is kept. A host that no list knows (not a
//! first-party provider, not an allowed gateway, not already listed) is a suspected relay:
//! connections to it are classified `ai-relay` with `relaywatch.name_source: relay_config`.
//!
//! Secrets: /proc/PID/environ is read through a small buffer and scanned entry by entry; an
//! entry whose name is not on the configured list is skipped without being copied anywhere, and
//! the buffers are cleared after the scan. Of a wanted entry only the URL's host survives (user
//! info, path and query — where keys sometimes hide — are dropped). Variable names that look
//! like secrets (KEY, TOKEN, SECRET, PASSWORD) are refused by the configuration check.
use std::{
    collections::HashMap,
    io::{self, Read},
    net::IpAddr,
    time::SystemTime,
};

use serde::Serialize;

use crate::intel::blocklist::{
    Action, Blocklists,
    name::{canonical_query_name, canonical_rule_name},
};

/// The variables read by default: the base-URL settings of the common AI SDKs and CLIs.
pub const DEFAULT_VARIABLES: &[&str] = &[
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_URL",
    "GOOGLE_GEMINI_BASE_URL",
    "GEMINI_BASE_URL",
    "GEMINI_API_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "OPENROUTER_BASE_URL",
    "DEEPSEEK_BASE_URL",
    "MISTRAL_BASE_URL",
    "GROQ_BASE_URL",
    "XAI_BASE_URL",
];

/// Parts of a variable name that mark a secret: such variables are never read.
const SECRET_MARKERS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
];

/// Whether `name` may be configured as a discovery variable; the reason otherwise.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "\"{name}\" is not a variable name (A-Z, 0-9 and _, at most 128)"
        ));
    }
    if let Some(marker) = SECRET_MARKERS.iter().find(|m| name.contains(*m)) {
        return Err(format!(
            "\"{name}\" looks like a secret ({marker}): only base-URL variables may be read"
        ));
    }
    Ok(())
}

/// The longest value kept while scanning (a URL; longer values are skipped).
const MAX_VALUE: usize = 2048;
/// The most environ bytes scanned per process. The read happens on the event loop at exec (so a
/// process's first connection is classified with its own variables), so it is kept short: real
/// environments are a few KiB; a process that hides its base URL past 256 KiB is not scanned
/// there.
const MAX_ENVIRON: usize = 256 << 10;

/// Scan a NUL-separated environment block for the `wanted` variables. Returns (name, value)
/// for each wanted entry, in block order; every other entry is skipped without being kept.
pub fn scan_environ<R: Read>(
    mut reader: R,
    wanted: &[String],
) -> io::Result<Vec<(String, String)>> {
    let longest = wanted.iter().map(String::len).max().unwrap_or(0);
    let mut found = Vec::new();
    let mut buf = [0u8; 4096];
    // The current entry: its name so far (only while it can still be a wanted name), then its
    // value (only for a wanted name).
    let mut name: Vec<u8> = Vec::with_capacity(longest + 1);
    // Sized up front: growing by reallocation would leave copies of a value in freed memory.
    let mut value: Vec<u8> = Vec::with_capacity(MAX_VALUE);
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Name,
        Value(usize),
        Skip,
    }
    let mut state = State::Name;
    let mut total = 0usize;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.fill(0);
                value.fill(0);
                return Err(e);
            }
        };
        total += n;
        for &b in &buf[..n] {
            if b == 0 {
                if let (State::Value(i), Ok(v)) = (state, std::str::from_utf8(&value)) {
                    found.push((wanted[i].clone(), v.to_owned()));
                }
                value.fill(0);
                value.clear();
                name.clear();
                state = State::Name;
                continue;
            }
            match state {
                State::Name if b == b'=' => {
                    state = match wanted.iter().position(|w| w.as_bytes() == name.as_slice()) {
                        Some(i) => State::Value(i),
                        None => State::Skip,
                    };
                }
                State::Name => {
                    name.push(b);
                    if name.len() > longest {
                        state = State::Skip;
                    }
                }
                State::Value(_) if value.len() >= MAX_VALUE => {
                    value.fill(0);
                    value.clear();
                    state = State::Skip;
                }
                State::Value(_) => value.push(b),
                State::Skip => {}
            }
        }
        if total >= MAX_ENVIRON {
            break;
        }
    }
    // A last entry without its NUL terminator.
    if let (State::Value(i), Ok(v)) = (state, std::str::from_utf8(&value)) {
        found.push((wanted[i].clone(), v.to_owned()));
    }
    buf.fill(0);
    value.fill(0);
    Ok(found)
}

/// The host of a base URL (`https://user:pw@Relay.Example:8443/v1?key=...` -> `relay.example`),
/// canonical (lower case, no trailing dot, IDN as xn--); an IP address in its canonical text form.
/// A value without a scheme is read as `host[:port][/path]`.
pub fn url_host(value: &str) -> Option<String> {
    let value = value.trim();
    let rest = match value.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            rest
        }
        Some(_) => return None,
        None => value,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    // User info can carry credentials: whatever precedes the last '@' is dropped.
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    if host.is_empty() {
        return None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.to_canonical().to_string());
    }
    // A single label is no destination, and may be a mistake worth not keeping (an API key
    // pasted into the base-URL variable): only dotted names and `localhost` are hosts.
    let name = canonical_rule_name(host).ok()?.into_owned();
    (name.contains('.') || name == "localhost").then_some(name)
}

/// What a discovered host is, given the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    /// No list knows it: connections to it are classified `ai-relay`.
    SuspectedRelay,
    /// A list already classifies it (a first-party provider, a listed relay...): the list decides.
    Listed,
    /// An allow rule matches it (a sanctioned gateway).
    Allowed,
    /// A loopback or unspecified address, or `localhost`: a local gateway, not a destination.
    Local,
}

/// One host seen in a base-URL variable.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredHost {
    pub host: String,
    /// The variable it was first seen in.
    pub variable: String,
    /// The first process seen with it.
    pub pid: u32,
    pub executable: Option<String>,
    /// The effective uid of that process.
    pub uid: u32,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: SystemTime,
    /// Processes seen with it (exec events and the start-up scan).
    pub processes: u64,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*t))
}

/// Discovered hosts kept at most; beyond, the one seen longest ago is forgotten (and counted).
pub const MAX_HOSTS: usize = 1024;
/// Hosts kept per user (the effective uid of the processes they were seen in).
pub const MAX_HOSTS_PER_USER: usize = 64;

/// Overwrite a value read from another process's environment before its memory is freed.
fn wipe(value: String) {
    let mut bytes = value.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// The evidence a `relay_config` classification carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEvidence {
    pub host: String,
    pub variable: String,
    pub pid: u32,
    pub executable: Option<String>,
    /// The destination's name matched the host (else its address did).
    pub by_name: bool,
}

#[derive(Debug)]
pub struct RelayDiscovery {
    variables: Vec<String>,
    hosts: HashMap<String, DiscoveredHost>,
    dropped: u64,
}

pub(crate) fn is_local(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

impl RelayDiscovery {
    pub fn new(variables: Vec<String>) -> RelayDiscovery {
        RelayDiscovery {
            variables,
            hosts: HashMap::new(),
            dropped: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.variables.is_empty()
    }

    /// Read process `pid`'s base-URL variables (exec event or start-up scan). Returns the hosts
    /// seen for the first time. A process that is gone or unreadable is skipped quietly.
    pub fn on_process(
        &mut self,
        pid: u32,
        executable: Option<&str>,
        now: SystemTime,
    ) -> Vec<String> {
        if !self.enabled() {
            return Vec::new();
        }
        let found = match std::fs::File::open(format!("/proc/{pid}/environ"))
            .and_then(|f| scan_environ(f, &self.variables))
        {
            Ok(found) => found,
            Err(e) => {
                log::debug!("environment of pid {pid} not read: {e}");
                return Vec::new();
            }
        };
        // The owner of /proc/PID: the process's effective uid (each user's hosts are bounded).
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(u32::MAX);
        let mut new = Vec::new();
        for (variable, value) in found {
            let host = url_host(&value);
            wipe(value);
            let Some(host) = host else {
                log::debug!("pid {pid}: {variable} is not a URL; ignored");
                continue;
            };
            self.note(host, &variable, (pid, uid), executable, now, &mut new);
        }
        new
    }

    pub(crate) fn note(
        &mut self,
        host: String,
        variable: &str,
        (pid, uid): (u32, u32),
        executable: Option<&str>,
        now: SystemTime,
        new: &mut Vec<String>,
    ) {
        if let Some(h) = self.hosts.get_mut(&host) {
            h.last_seen = now;
            h.processes += 1;
            return;
        }
        // Bounded: one user's processes hold at most MAX_HOSTS_PER_USER hosts, and a full table
        // forgets the host seen longest ago. So no user can fill the table and hide the relays
        // other users' processes are configured with.
        let per_user = self.hosts.values().filter(|h| h.uid == uid).count();
        if per_user >= MAX_HOSTS_PER_USER || self.hosts.len() >= MAX_HOSTS {
            let oldest = self
                .hosts
                .values()
                .filter(|h| per_user < MAX_HOSTS_PER_USER || h.uid == uid)
                .min_by_key(|h| h.last_seen)
                .map(|h| h.host.clone());
            if let Some(oldest) = oldest {
                self.hosts.remove(&oldest);
                self.dropped += 1;
            }
        }
        new.push(host.clone());
        self.hosts.insert(
            host.clone(),
            DiscoveredHost {
                host,
                variable: variable.to_owned(),
                pid,
                executable: executable.map(str::to_owned),
                uid,
                first_seen: now,
                last_seen: now,
                processes: 1,
            },
        );
    }

    /// The status of `host` against `lists`.
    pub fn status(lists: &Blocklists, host: &str) -> HostStatus {
        if is_local(host) {
            return HostStatus::Local;
        }
        let verdict = match host.parse::<IpAddr>() {
            Ok(ip) => lists.match_ip(ip),
            Err(_) => lists.match_name(host),
        };
        match verdict {
            Some(v) if v.action == Action::Allow => HostStatus::Allowed,
            Some(_) => HostStatus::Listed,
            None => HostStatus::SuspectedRelay,
        }
    }

    /// A suspected relay this destination (name, else address) is, with the evidence. Only
    /// hosts no list knows qualify: the caller classifies by the lists first.
    pub fn suspected(
        &self,
        lists: &Blocklists,
        domain: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Option<RelayEvidence> {
        let by_name = domain
            .and_then(canonical_query_name)
            .and_then(|d| self.hosts.get(d.as_ref()));
        let by_ip = || ip.and_then(|a| self.hosts.get(&a.to_canonical().to_string()));
        let (h, by_name) = match by_name {
            Some(h) => (h, true),
            None => (by_ip()?, false),
        };
        (RelayDiscovery::status(lists, &h.host) == HostStatus::SuspectedRelay).then(|| {
            RelayEvidence {
                host: h.host.clone(),
                variable: h.variable.clone(),
                pid: h.pid,
                executable: h.executable.clone(),
                by_name,
            }
        })
    }

    /// The hosts that are suspected relays now (to be resolved to addresses like list names).
    pub fn suspected_hosts(&self, lists: &Blocklists) -> Vec<String> {
        let mut out: Vec<String> = self
            .hosts
            .keys()
            .filter(|h| {
                h.parse::<IpAddr>().is_err()
                    && RelayDiscovery::status(lists, h) == HostStatus::SuspectedRelay
            })
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// For `relaywatch status`: every discovered host with its status, and the variables read.
    pub fn report(&self, lists: &Blocklists) -> serde_json::Value {
        let mut hosts: Vec<&DiscoveredHost> = self.hosts.values().collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        let hosts: Vec<serde_json::Value> = hosts
            .into_iter()
            .map(|h| {
                let mut v = serde_json::to_value(h).unwrap_or_default();
                v["status"] = serde_json::to_value(RelayDiscovery::status(lists, &h.host))
                    .unwrap_or_default();
                v
            })
            .collect();
        serde_json::json!({
            "enabled": self.enabled(),
            "variables": self.variables.len(),
            "hosts": hosts,
            "hosts_forgotten": self.dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Vec<String> {
        DEFAULT_VARIABLES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_wanted_variables_are_returned() {
        let block =
            b"PATH=/usr/bin\0OPENAI_API_KEY=sk-secret\0OPENAI_BASE_URL=https://relay.example/v1\0\
OPENAI_BASE_URL_EXTRA=x\0XOPENAI_BASE_URL=y\0ANTHROPIC_BASE_URL=https://a.example\0";
        let found = scan_environ(&block[..], &wanted()).unwrap();
        assert_eq!(
            found,
            [
                (
                    "OPENAI_BASE_URL".to_string(),
                    "https://relay.example/v1".to_string()
                ),
                (
                    "ANTHROPIC_BASE_URL".to_string(),
                    "https://a.example".to_string()
                )
            ]
        );
    }

    #[test]
    fn scanning_survives_any_read_boundaries_and_a_missing_terminator() {
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let block = b"A=1\0GEMINI_BASE_URL=http://[2001:db8::1]:8080/x\0=weird\0OPENAI_API_BASE=relay.example";
        let found = scan_environ(Dribble(block), &wanted()).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[1],
            ("OPENAI_API_BASE".to_string(), "relay.example".to_string())
        );
    }

    #[test]
    fn overlong_values_and_binary_garbage_are_skipped() {
        let mut block = b"OPENAI_BASE_URL=".to_vec();
        block.extend(std::iter::repeat_n(b'a', MAX_VALUE + 10));
        block.extend(b"\0ANTHROPIC_BASE_URL=\xff\xfe\0GROQ_BASE_URL=https://g.example\0");
        let found = scan_environ(&block[..], &wanted()).unwrap();
        assert_eq!(
            found,
            [("GROQ_BASE_URL".to_string(), "https://g.example".to_string())]
        );
    }

    #[test]
    fn url_host_keeps_only_the_host() {
        assert_eq!(
            url_host("https://user:sk-123@Relay.Example.:8443/v1?key=abc").as_deref(),
            Some("relay.example")
        );
        assert_eq!(
            url_host("http://[::ffff:10.1.2.3]:80/").as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            url_host("https://[2001:db8::1]/v1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            url_host("relay.example:443/v1").as_deref(),
            Some("relay.example")
        );
        assert_eq!(
            url_host("https://中转.example/v1").as_deref(),
            Some("xn--fiqq40n.example")
        );
        assert_eq!(
            url_host("https://10.0.0.5:3000").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            url_host("http://localhost:4000").as_deref(),
            Some("localhost")
        );
        for bad in [
            "",
            "https://",
            "https:///v1",
            "://x",
            "ht tp://x",
            "https://bad host/",
            "https://user@/",
            "sk-proj-abc123",
            "https://intranet/v1",
        ] {
            assert_eq!(url_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secret_looking_variable_names_are_refused() {
        assert!(check_variable_name("OPENAI_BASE_URL").is_ok());
        assert!(
            check_variable_name("OPENAI_API_KEY")
                .unwrap_err()
                .contains("KEY")
        );
        assert!(check_variable_name("HF_TOKEN").is_err());
        assert!(check_variable_name("lower").is_err());
        assert!(check_variable_name("").is_err());
        for v in DEFAULT_VARIABLES {
            check_variable_name(v).unwrap();
        }
    }

    #[test]
    fn only_hosts_no_list_knows_are_suspected_relays() {
        let lists = Blocklists::builtin();
        let mut d = RelayDiscovery::new(wanted());
        let now = SystemTime::now();
        let mut new = Vec::new();
        for host in [
            "relay.example",
            "api.openai.com",
            "127.0.0.1",
            "localhost",
            "203.0.113.7",
        ] {
            d.note(
                host.into(),
                "OPENAI_BASE_URL",
                (42, 1000),
                Some("/usr/bin/python3"),
                now,
                &mut new,
            );
        }
        d.note(
            "relay.example".into(),
            "OPENAI_BASE_URL",
            (43, 1000),
            None,
            now,
            &mut new,
        );
        assert_eq!(new.len(), 5, "a host is new once");
        assert_eq!(
            RelayDiscovery::status(&lists, "api.openai.com"),
            HostStatus::Listed
        );
        assert_eq!(
            RelayDiscovery::status(&lists, "127.0.0.1"),
            HostStatus::Local
        );
        let e = d
            .suspected(&lists, Some("Relay.Example."), None)
            .expect("suspected by name");
        assert_eq!(
            (e.host.as_str(), e.variable.as_str(), e.pid, e.by_name),
            ("relay.example", "OPENAI_BASE_URL", 42, true)
        );
        assert!(
            d.suspected(&lists, Some("api.openai.com"), None).is_none(),
            "first-party: the list decides"
        );
        assert!(
            d.suspected(&lists, Some("sub.relay.example"), None)
                .is_none(),
            "exact host only"
        );
        assert!(
            d.suspected(&lists, None, "203.0.113.7".parse().ok())
                .is_some_and(|e| !e.by_name),
            "an address host matches the address"
        );
        assert!(
            d.suspected(&lists, None, "::ffff:203.0.113.7".parse().ok())
                .is_some()
        );
        assert_eq!(d.suspected_hosts(&lists), ["relay.example"]);
        let report = d.report(&lists);
        assert_eq!(report["hosts"].as_array().unwrap().len(), 5);
        let relay = report["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == "relay.example")
            .unwrap();
        assert_eq!(
            (relay["status"].as_str(), relay["processes"].as_u64()),
            (Some("suspected-relay"), Some(2))
        );
    }

    #[test]
    fn one_user_cannot_crowd_out_the_others() {
        let mut d = RelayDiscovery::new(wanted());
        let mut new = Vec::new();
        let t0 = SystemTime::UNIX_EPOCH;
        d.note(
            "real-relay.example".into(),
            "OPENAI_BASE_URL",
            (1, 1000),
            None,
            t0,
            &mut new,
        );
        for i in 0..MAX_HOSTS * 2 {
            let t = t0 + std::time::Duration::from_secs(i as u64 + 1);
            d.note(
                format!("r{i}.example"),
                "OPENAI_BASE_URL",
                (2, 2000),
                None,
                t,
                &mut new,
            );
        }
        assert!(
            d.hosts.contains_key("real-relay.example"),
            "another user's host stays"
        );
        assert_eq!(
            d.hosts.values().filter(|h| h.uid == 2000).count(),
            MAX_HOSTS_PER_USER
        );
        assert!(
            d.hosts
                .contains_key(&format!("r{}.example", MAX_HOSTS * 2 - 1)),
            "the newest stays"
        );
        // Many users: the table as a whole stays bounded, forgetting the oldest.
        for u in 0..(MAX_HOSTS as u32) {
            let t = t0 + std::time::Duration::from_secs(10_000 + u64::from(u));
            d.note(
                format!("u{u}.example"),
                "OPENAI_BASE_URL",
                (3, 3000 + u),
                None,
                t,
                &mut new,
            );
        }
        assert_eq!(d.hosts.len(), MAX_HOSTS);
        assert!(
            !d.hosts.contains_key("real-relay.example"),
            "the oldest is forgotten when full"
        );
    }
}
