//! Clients of local forwarding proxies: an AI client that talks to a proxy on loopback
//! (cc-switch on 127.0.0.1:15721, LiteLLM, CLIProxyAPI), which then calls the relay itself.
//! The relay alert names the proxy (it made the connection); this names the client behind it.
//!
//! Data model:
//! - `conns`: socket cookie -> the client process of a local connection whose first bytes were an
//!   HTTP POST (the kernel reports only those, `FLAG_LOCAL_REQUEST`), until its first bytes
//!   arrive (LRU, `MAX_CONNS`).
//! - `requests`: the AI API requests read from those first bytes, newest last, kept
//!   `CLIENT_WINDOW` (at most `MAX_REQUESTS`).
//!
//! Pairing: when the proxy process raises an alert, the loopback ports it listens on are read
//! from /proc (its network namespace's TCP tables, and its own socket descriptors), and the most
//! recent API request to one of those ports within `CLIENT_WINDOW` is its client. Done only for
//! alerts, and only when such a request is waiting.
use std::{
    collections::{HashSet, VecDeque},
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::{
    intel::api_shape,
    kernel::decode::{Observation, PayloadChunk},
    naming::request,
};

/// How long a request to a local proxy can explain the proxy's own request.
pub const CLIENT_WINDOW: Duration = Duration::from_secs(30);
const MAX_CONNS: usize = 1024;
const MAX_REQUESTS: usize = 256;
/// Descriptors of the proxy process looked at, at most.
const MAX_FDS: usize = 65_536;

/// `relaywatch.client`: the process that sent the request to the local proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalClient {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The proxy's loopback port it sent to.
    pub port: u16,
    /// The AI API route of its request (`/v1/messages`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

struct LocalRequest {
    client: LocalClient,
    at: Instant,
}

pub struct LocalClients {
    conns: LruCache<u64, LocalClient>,
    requests: VecDeque<LocalRequest>,
}

impl Default for LocalClients {
    fn default() -> Self {
        LocalClients {
            conns: LruCache::new(NonZeroUsize::new(MAX_CONNS).expect("non-zero")),
            requests: VecDeque::new(),
        }
    }
}

impl LocalClients {
    /// A local connection reported for its POST: remember who made it.
    pub fn on_connection(
        &mut self,
        observation: &Observation,
        executable: Option<String>,
        name: Option<String>,
        user_name: Option<String>,
    ) {
        if !observation.local_request {
            return;
        }
        self.conns.put(
            observation.raw.cookie,
            LocalClient {
                pid: observation.raw.tgid,
                executable,
                name,
                user_id: observation.raw.uid.to_string(),
                user_name,
                port: observation.port,
                route: None,
            },
        );
    }

    /// A payload chunk: the first bytes of a remembered local connection are its request.
    pub fn on_payload(&mut self, chunk: &PayloadChunk, now: Instant) {
        if !chunk.egress || chunk.header.offset != 0 || self.conns.is_empty() {
            return;
        }
        let Some(mut client) = self.conns.pop(&chunk.header.cookie) else {
            return;
        };
        let Some(api) = request::parse_request(&chunk.data)
            .ok()
            .and_then(|head| api_shape::classify(&head))
        else {
            return; // a POST that is not an AI API call
        };
        client.route = api.route;
        self.expire(now);
        if self.requests.len() >= MAX_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(LocalRequest { client, at: now });
    }

    fn expire(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|r| now.duration_since(r.at) > CLIENT_WINDOW)
        {
            self.requests.pop_front();
        }
    }

    /// The client behind `proxy_pid`'s request: the latest API request to a loopback port that
    /// process listens on.
    pub fn client_of(&mut self, proxy_pid: u32, now: Instant) -> Option<LocalClient> {
        self.expire(now);
        if self.requests.is_empty() {
            return None;
        }
        let ports = listening_ports(proxy_pid);
        self.requests
            .iter()
            .rev()
            .find(|r| ports.contains(&r.client.port) && r.client.pid != proxy_pid)
            .map(|r| r.client.clone())
    }
}

/// The TCP ports `pid` listens on (any address: a proxy on 0.0.0.0 serves loopback too).
fn listening_ports(pid: u32) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten().take(MAX_FDS) {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    let mut ports = HashSet::new();
    if inodes.is_empty() {
        return ports;
    }
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        ports.extend(
            text.lines()
                .skip(1)
                .filter_map(parse_listener)
                .filter(|(_, inode)| inodes.contains(inode))
                .map(|(port, _)| port),
        );
    }
    ports
}

/// A `/proc/net/tcp{,6}` line of a listening socket: (local port, inode).
fn parse_listener(line: &str) -> Option<(u16, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(1)?;
    let state = fields.get(3)?;
    if *state != "0A" {
        return None; // TCP_LISTEN
    }
    let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((port, inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_the_tcp_tables() {
        let listen = "   1: 0100007F:3D71 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 812345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listener(listen), Some((0x3d71, 812345)));
        let established = "   2: 0100007F:3D71 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 812346 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(parse_listener(established), None);
        assert_eq!(parse_listener("garbage"), None);
    }

    #[test]
    fn this_process_listening_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id()).contains(&port));
    }
}
