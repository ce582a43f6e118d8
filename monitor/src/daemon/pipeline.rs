//! The pipeline from a decoded kernel record to what is written: attribution to a process,
//! correlation (waiting for first bytes), the verdict of the lists and of relay discovery, the
//! typed record and alert, dedupe, flow volume, and delivery to stdout, sinks and store.
//!
//! What it asks of the kernel's maps is the small `KernelMaps` trait (the loader's `Agent` in the
//! daemon), and the verdict is the pure `judge`, so both are unit-tested without a kernel.
use std::{io::Write as _, net::IpAddr, sync::Arc};

use monitor_common::{UdpFlowKey, UdpFlowWindow};
use tokio::time::Instant;

use crate::{
    config::{Config, Format},
    control::metrics::Metrics,
    correlate::{
        Correlator, Finished,
        requests::{Paired, PlainRequest, Recent, Requests},
    },
    intel::{
        blocklist::{Action, Blocklists, Category},
        classify::{self, Classification, Finding, MatchedField, SharedLists},
        discovery::{RelayDiscovery, RelayEvidence},
        relays::{KnownRelay, KnownRelays, RelayAllow},
    },
    kernel::{
        decode::{self as ingest, Lifecycle},
        loader::Agent,
    },
    naming::model::{NameSource, Naming},
    output::store::{ConnectionSummaryUpdate, StoreHandle},
    process::{ProcReader, UserNames, table::ProcessTable},
    report::{
        connection::ConnectionRecord,
        dedupe::Deduper,
        host::HostInfo,
        record::{Ancestor, ApiRequest, Lineage, Parent, Record, RelayConfig, RelayFacts},
    },
};

/// What the pipeline asks of the kernel's maps.
pub(crate) trait KernelMaps {
    /// Datagrams counted in the repeat window that `ts_boot_ns` fell in, if the window is known.
    fn udp_window_count(&self, key: &UdpFlowKey, ts_boot_ns: u64) -> Option<u64>;
    /// Keep counting a stream's bytes until it closes (an alerted TCP connection).
    fn watch(&mut self, cookie: u64, now_ns: u64);
    /// Nothing more is wanted from this socket.
    fn stop_capture(&mut self, cookie: u64);
    /// Whether the TLS plaintext of this process is read (its TLS library or executable is
    /// probed; probes new ones it maps on the way).
    fn tls_readable(&mut self, tgid: u32) -> bool;
    /// A program started: probe its executable if it carries its own TLS (Go, a Node.js build
    /// with OpenSSL inside).
    fn tls_exec(&mut self, tgid: u32);
    /// A recorded TCP connection; `tls_client`: flagged `FLAG_TLS_CLIENT` (read the process now).
    fn tls_connect(&mut self, tgid: u32, tls_client: bool);
    /// A process not read yet started a TLS client connection.
    fn tls_client(&mut self, tgid: u32);
    /// A process exited.
    fn tls_exit(&mut self, tgid: u32);
    /// Read the answers of a process (whose TLS is read), or stop.
    fn tls_answers(&mut self, tgid: u32, on: bool);
}

impl KernelMaps for Agent {
    fn udp_window_count(&self, key: &UdpFlowKey, ts_boot_ns: u64) -> Option<u64> {
        let window: UdpFlowWindow = self.udp_flows.get(key, 0).ok()?;
        window.count_for(ts_boot_ns)
    }

    fn watch(&mut self, cookie: u64, now_ns: u64) {
        Agent::watch(self, cookie, now_ns);
    }

    fn stop_capture(&mut self, cookie: u64) {
        Agent::stop_capture(self, cookie);
    }

    fn tls_readable(&mut self, tgid: u32) -> bool {
        Agent::tls_readable(self, tgid)
    }

    fn tls_exec(&mut self, tgid: u32) {
        Agent::tls_exec(self, tgid);
    }

    fn tls_connect(&mut self, tgid: u32, tls_client: bool) {
        Agent::tls_connect(self, tgid, tls_client);
    }

    fn tls_client(&mut self, tgid: u32) {
        Agent::tls_client(self, tgid);
    }

    fn tls_exit(&mut self, tgid: u32) {
        Agent::tls_exit(self, tgid);
    }

    fn tls_answers(&mut self, tgid: u32, on: bool) {
        Agent::tls_answers(self, tgid, on);
    }
}

/// What the lists and relay discovery say about one finished connection.
#[derive(Debug)]
pub(crate) struct Judgement {
    /// The naming to report: its source becomes `relay_config` when the destination is a host
    /// some process's base-URL setting names (that setting is the evidence of its name).
    pub naming: Naming,
    /// The finding that calls for an alert, if any.
    pub finding: Option<Finding>,
    /// The discovery evidence, when the destination is a suspected relay.
    pub relay: Option<RelayEvidence>,
    /// An allow rule of the lists matched (a sanctioned gateway): nothing else may alert.
    pub allowed: bool,
}

/// The verdict on a connection to `destination` named `naming`: the lists first (an alerting
/// match alerts, an allow rule silences everything); only where they are silent, relay
/// discovery, with the `ai-relay` action in force (`relay_action` when the lists have none).
pub(crate) fn judge(
    lists: Option<&Blocklists>,
    discovery: &RelayDiscovery,
    naming: &Naming,
    destination: IpAddr,
    relay_action: Action,
) -> Judgement {
    let quiet = || Judgement {
        naming: naming.clone(),
        finding: None,
        relay: None,
        allowed: false,
    };
    let Some(lists) = lists else { return quiet() };
    let domain = naming.domain.as_deref();
    // Through a proxy, the address that matters is the proxy's target.
    let ip = match &naming.proxy {
        Some(p) => p.host.parse().ok(),
        None => Some(destination),
    };
    match classify::classification(lists, domain, ip) {
        Classification::Alert(finding) => Judgement {
            finding: Some(finding),
            ..quiet()
        },
        Classification::Allowed => Judgement {
            allowed: true,
            ..quiet()
        },
        Classification::Quiet => {
            let evidence = match discovery.enabled() {
                true => discovery.suspected(lists, domain, ip),
                false => None,
            };
            let Some(evidence) = evidence else {
                return quiet();
            };
            let field = if evidence.by_name {
                MatchedField::Domain
            } else {
                MatchedField::Ip
            };
            // The ai-relay action in force (reloads change it along with the lists).
            let action = lists
                .category_action(Category::AiRelay)
                .unwrap_or(relay_action);
            let finding = (action != Action::Ignore)
                .then(|| classify::relay_config_finding(&evidence, action, field));
            Judgement {
                naming: Naming {
                    source: NameSource::RelayConfig,
                    ..naming.clone()
                },
                finding,
                relay: Some(evidence),
                allowed: false,
            }
        }
    }
}

/// An alerted connection whose bytes the kernel counts until it closes.
pub(super) struct Watched {
    pub(super) alert: Record,
    pub(super) captured_bytes: u64,
    pub(super) connect_ns: u64,
}

/// Alerted connections watched at once at most (the kernel map bounds them too).
pub(super) const WATCHED_CONNECTIONS: usize = 8_192;

pub(super) struct Reporter {
    pub(super) config: Config,
    pub(super) sinks: crate::output::sinks::Sinks,
    pub(super) watched: lru::LruCache<u64, Watched>,
    /// Ends of reported streams that closed before their record was finished (short
    /// connections): used when the record then raises an alert.
    pub(super) early_ends: lru::LruCache<u64, monitor_common::FlowEndEvent>,
    pub(super) store: StoreHandle,
    pub(super) lists: SharedLists,
    pub(super) dedupe: Deduper,
    pub(super) host_info: HostInfo,
    pub(super) cgroups: crate::process::cgroups::CgroupPaths,
    pub(super) metrics: Arc<Metrics>,
    pub(super) procs: ProcReader,
    pub(super) processes: ProcessTable,
    pub(super) users: UserNames,
    pub(super) correlator: Correlator,
    /// Hosts named in base-URL variables (OPENAI_BASE_URL...): suspected relays.
    pub(super) discovery: crate::intel::discovery::RelayDiscovery,
    pub(super) resolve_updates: crate::intel::resolve::NameSetUpdater,
    /// The lists the suspected hosts were last resolved for (their address, to notice a reload).
    pub(super) discovered_for: usize,
    pub(super) stdout_failed: bool,
    pub(super) malformed: u64,
    /// The last alert raised, for `relaywatch status` (rendered there, once a second at most).
    pub(super) last_alert: Option<Record>,
    /// This daemon's pid: records of its own sockets are not the host's traffic.
    pub(super) own_pid: u32,
    /// Requests read from TLS plaintext, and TLS records waiting for theirs.
    pub(super) requests: Requests,
    /// Hosts learned to be relays from the requests sent to them.
    pub(super) relays: KnownRelays,
    /// Sanctioned gateways and programs (`[discovery] allow_*`).
    pub(super) relay_allow: RelayAllow,
    /// Clients of local forwarding proxies, for the proxies' alerts.
    pub(super) local_clients: crate::correlate::local_clients::LocalClients,
    /// Processes whose answers are read now, for a request to this host.
    pub(super) answers_wanted: lru::LruCache<u32, String>,
    /// Hosts an answer was read from (the relay software is known, or there is none to show).
    pub(super) answered_hosts: lru::LruCache<String, ()>,
    /// The latest scan of AI clients' configuration files (off: `None`).
    pub(super) config_files:
        Option<tokio::sync::watch::Receiver<Arc<crate::intel::relay_files::ScanReport>>>,
}

impl Reporter {
    pub(super) fn on_record(&mut self, kernel: &mut impl KernelMaps, bytes: &[u8]) {
        let record = match ingest::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.malformed += 1;
                if self.malformed == 1 || self.malformed.is_power_of_two() {
                    log::warn!(
                        "ring buffer: refused record ({e}); {} so far",
                        self.malformed
                    );
                }
                return;
            }
        };
        let now = Instant::now().into_std();
        match record {
            ingest::Record::Connect(observation) => {
                let process = crate::process::attribution::attribute(
                    &self.processes,
                    &self.procs,
                    &mut self.cgroups,
                    &observation,
                );
                if observation.local_request {
                    let user = self.users.name(observation.raw.uid);
                    let (exe, name) = process
                        .as_ref()
                        .map_or((None, None), |p| (p.executable.clone(), p.name.clone()));
                    self.local_clients
                        .on_connection(&observation, exe, name, user);
                }
                log::trace!(
                    "pid {} connects to {}:{} (flags {})",
                    observation.raw.tgid,
                    observation.destination,
                    observation.port,
                    observation.raw.flags
                );
                if self.config.discovery.api_requests
                    && observation.transport == crate::kernel::decode::Transport::Tcp
                    && observation.hook == crate::kernel::decode::Hook::Connect
                {
                    kernel.tls_connect(
                        observation.raw.tgid,
                        observation.raw.flags & monitor_common::event::FLAG_TLS_CLIENT != 0,
                    );
                }
                self.correlator.on_connection(observation, process, now);
                for finished in self.correlator.overflow(now) {
                    self.finish(kernel, finished);
                }
            }
            ingest::Record::Process(Lifecycle::Exec {
                tgid,
                ts_boot_ns,
                comm,
                filename,
                ppid,
                args,
                args_truncated,
            }) => {
                let facts = crate::process::table::ExecFacts {
                    filename,
                    ppid,
                    args,
                    args_truncated,
                };
                self.processes
                    .on_exec(&self.procs, tgid, &comm, &facts, ts_boot_ns);
                if self.config.discovery.api_requests {
                    kernel.tls_exec(tgid);
                }
                if self.discovery.enabled() {
                    let exe = self
                        .processes
                        .lookup(tgid, &comm, ts_boot_ns)
                        .and_then(|d| d.executable.clone());
                    self.discover(tgid, exe.as_deref());
                }
            }
            ingest::Record::Process(Lifecycle::Exit { tgid, ts_boot_ns }) => {
                self.processes.on_exit(tgid, ts_boot_ns);
                if self.config.discovery.api_requests {
                    self.answers_wanted.pop(&tgid);
                    kernel.tls_exit(tgid);
                }
            }
            ingest::Record::TlsClient(tgid) => {
                log::trace!("pid {tgid} starts a TLS client");
                if self.config.discovery.api_requests {
                    kernel.tls_client(tgid);
                }
            }
            ingest::Record::FlowEnd(end) => self.flow_end(&end),
            ingest::Record::Tls(data) if data.written => {
                log::trace!("{data:?}");
                if let Some(request) = self.requests.on_data(&data, now) {
                    self.on_request(kernel, request);
                }
            }
            ingest::Record::Tls(data) => {
                log::trace!("{data:?}");
                if let Some(host) = self.answers_wanted.pop(&data.header.tgid) {
                    self.answered_hosts.put(host, ());
                    kernel.tls_answers(data.header.tgid, false);
                }
                let Some(software) = Requests::answer(&data) else {
                    log::debug!(
                        "an answer's head of pid {} names no relay software",
                        data.header.tgid
                    );
                    return;
                };
                self.on_answer(kernel, data.header.tgid, data.header.conn, software);
            }
            ingest::Record::Payload(chunk) => {
                self.local_clients.on_payload(&chunk, now);
                if let Some(finished) = self.correlator.on_payload(&chunk, now) {
                    self.finish(kernel, finished);
                }
            }
        }
    }

    /// Read a process's base-URL variables; a new suspected relay is also resolved to its
    /// addresses, so that a connection to it by bare address is named too.
    pub(super) fn discover(&mut self, pid: u32, executable: Option<&str>) {
        let new = self
            .discovery
            .on_process(pid, executable, std::time::SystemTime::now());
        if new.is_empty() {
            return;
        }
        let Ok(lists) = self.lists.read().map(|l| Arc::clone(&l)) else {
            return;
        };
        for host in &new {
            let status = crate::intel::discovery::RelayDiscovery::status(&lists, host);
            log::info!(
                "relay discovery: pid {pid} ({}) is configured with host {host}: {status:?}",
                executable.unwrap_or("?")
            );
        }
        self.resolve_suspected(&lists);
    }

    /// Resolve the hosts that are suspected relays under `lists` (alongside the lists' names).
    pub(super) fn resolve_suspected(&mut self, lists: &Arc<crate::intel::blocklist::Blocklists>) {
        self.discovered_for = Arc::as_ptr(lists) as usize;
        self.resolve_updates
            .set_discovered(self.discovery.suspected_hosts(lists));
    }

    /// After a reload a discovered host may have become (or stopped being) a suspected relay.
    pub(super) fn refresh_suspected(&mut self) {
        let Ok(lists) = self.lists.read().map(|l| Arc::clone(&l)) else {
            return;
        };
        if Arc::as_ptr(&lists) as usize != self.discovered_for && self.discovery.enabled() {
            self.resolve_suspected(&lists);
        }
    }

    /// Every running process's base-URL variables (at start: programs started before the agent).
    pub(super) fn discover_running(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let pids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        for pid in pids {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
            self.discover(pid, exe.as_deref());
        }
    }

    /// Write every record whose wait is over (all of them if `all`).
    pub(super) fn finish_due(&mut self, kernel: &mut impl KernelMaps, all: bool) {
        let now = Instant::now().into_std();
        for finished in self.correlator.due(now, all) {
            self.finish(kernel, finished);
        }
        for request in self.requests.due(now, all) {
            self.on_request(kernel, request);
        }
        for held in self.requests.released(now, all) {
            self.finish_now(kernel, held.finished, held.api, None);
        }
    }

    /// When something waiting here is next due: a record's name wait, a request's join, a TLS
    /// record's wait for its request.
    pub(super) fn next_due(&self) -> Option<std::time::Instant> {
        match (self.correlator.next_due(), self.requests.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A request read from a TLS connection's plaintext: paired with its connection, whose
    /// record (if still held) is written with the evidence, or (if already written) may now
    /// raise the relay alert it could not raise without it.
    pub(super) fn on_request(&mut self, kernel: &mut impl KernelMaps, request: PlainRequest) {
        if request.tgid == self.own_pid {
            return;
        }
        let now = Instant::now().into_std();
        let Some(api) = crate::correlate::requests::api_record(&request) else {
            // Not an AI API request: a held record goes out as it is, now.
            if let Paired::Held(h) = self.requests.pair(&request, now) {
                self.finish_now(kernel, h.finished, None, None);
            }
            return;
        };
        match self.requests.pair(&request, now) {
            // Go's answers are not read (no return probes in Go programs): no wait for one.
            Paired::Held(h) if request.library == crate::kernel::decode::TlsLibrary::Go => {
                self.finish_now(kernel, h.finished, Some(api), None)
            }
            Paired::Held(h) => {
                // The answer may name the relay software: read this process's answers until one
                // from this host is read (once per host: its software is then known, or it
                // has none to show).
                if let Some(host) = &request.head.host
                    && !self.answered_hosts.contains(host.as_str())
                {
                    self.answers_wanted.put(request.tgid, host.clone());
                    kernel.tls_answers(request.tgid, true);
                }
                self.requests.await_answer(h, api, &request, now)
            }
            Paired::Recent(recent) => self.late_request(*recent, api),
            Paired::Unpaired => log::debug!(
                "an AI API request by pid {} ({} {}) matched no TLS connection",
                request.tgid,
                api.method,
                api.route
            ),
        }
    }

    /// An answer's head named the relay software: the record waiting for it goes out with it,
    /// and the known relay learns it.
    fn on_answer(
        &mut self,
        kernel: &mut impl KernelMaps,
        tgid: u32,
        conn: u64,
        software: &'static str,
    ) {
        match self.requests.answered(tgid, conn) {
            Some(held) => self.finish_now(kernel, held.finished, held.api, Some(software)),
            None => log::debug!("pid {tgid}: an answer from {software} with no record waiting"),
        }
    }

    /// An API request on a connection whose record was already written without it.
    fn late_request(&mut self, recent: Recent, api: ApiRequest) {
        if recent.alerted {
            return;
        }
        let Some((finding, facts)) = self.relay_verdict(&recent.record, Some(&api), None) else {
            return;
        };
        let mut alert =
            crate::report::alert::alert_document(&recent.record, &finding, &self.host_info);
        alert.relaywatch.blocklist = None;
        alert.relaywatch.api = Some(api);
        alert.relaywatch.relay = Some(facts);
        alert.relaywatch.client = self
            .local_clients
            .client_of(alert.process.pid, Instant::now().into_std());
        if self.dedupe.admit(&alert, std::time::Instant::now()) {
            self.raise(alert);
        }
    }

    /// Where the lists are silent: a known relay (by name), or an AI API request to a host that
    /// is neither local nor a sanctioned gateway (which makes it a known relay from now on).
    fn relay_verdict(
        &mut self,
        doc: &Record,
        api: Option<&ApiRequest>,
        software: Option<&'static str>,
    ) -> Option<(Finding, RelayFacts)> {
        let lists = self.lists.read().ok().map(|l| Arc::clone(&l))?;
        let action = lists
            .category_action(Category::AiRelay)
            .unwrap_or(classify::action(self.config.blocklists.actions.ai_relay));
        if action == Action::Ignore {
            return None;
        }
        let domain = doc.destination.domain.clone();
        let ip = doc.destination.ip.as_deref().and_then(|i| i.parse().ok());
        if let Some(found) = self.config_file_verdict(doc, action) {
            return Some(found);
        }
        if let Some(host) = domain.as_deref().filter(|d| self.relays.get(d).is_some()) {
            let host = host.to_string();
            if let Some(software) = software
                && let Some(updated) = self.relays.set_software(&host, software)
                && let Ok(v) = serde_json::to_value(&updated)
            {
                self.store.record_relay(v);
            }
            let known = self.relays.get(&host)?;
            let facts = known.facts();
            let host = known.host.clone();
            if let Some(api) = api {
                self.learn_relay(doc, &host, api);
            }
            return Some((classify::api_shape_finding(&host, action), facts));
        }
        let api = api?;
        let host = domain.or_else(|| api.host.clone())?;
        if self.relay_allow.allows(
            Some(&host),
            ip,
            doc.process.executable.as_deref(),
            doc.relaywatch.systemd_unit.as_deref(),
        ) {
            return None;
        }
        let mut known = self.learn_relay(doc, &host, api)?;
        if let Some(software) = software
            && let Some(updated) = self.relays.set_software(&host, software)
        {
            if let Ok(v) = serde_json::to_value(&updated) {
                self.store.record_relay(v);
            }
            known = updated;
        }
        Some((
            classify::api_shape_finding(&known.host, action),
            known.facts(),
        ))
    }

    /// A host that a configuration file of this connection's user (or a system-wide one) names
    /// as its AI endpoint: the file is the evidence (`relay_config`). Local hosts (a local
    /// forwarding proxy such as cc-switch's) are not relays themselves.
    fn config_file_verdict(&self, doc: &Record, action: Action) -> Option<(Finding, RelayFacts)> {
        let scan = self.config_files.as_ref()?.borrow().clone();
        let uid: u32 = doc.user.id.parse().ok()?;
        let host = doc
            .destination
            .domain
            .as_deref()
            .or(doc.destination.ip.as_deref())?;
        let found = crate::intel::relay_files::finding_in(&scan.findings, uid, host)
            .filter(|f| !f.local)?;
        let evidence = RelayEvidence {
            host: found.host.clone(),
            variable: found.key.clone(),
            pid: doc.process.pid,
            executable: doc.process.executable.clone(),
            by_name: doc.destination.domain.is_some(),
        };
        let field = if evidence.by_name {
            MatchedField::Domain
        } else {
            MatchedField::Ip
        };
        let facts = RelayFacts {
            software: None,
            discovered_by: Some("relay_config".into()),
            first_seen: None,
            config_file: Some(found.file.display().to_string()),
            config_key: Some(found.key.clone()),
            client: Some(found.client.into()),
        };
        Some((
            classify::relay_config_finding(&evidence, action, field),
            facts,
        ))
    }

    /// Learn (or count a request to) a relay; stored when new.
    fn learn_relay(&mut self, doc: &Record, host: &str, api: &ApiRequest) -> Option<KnownRelay> {
        let now = crate::clock::rfc3339(std::time::SystemTime::now());
        let (known, new) = self.relays.note(KnownRelay {
            host: host.to_string(),
            discovered_by: classify::API_SHAPE_RULE.into(),
            first_seen: now.clone(),
            last_seen: now,
            requests: 1,
            pid: doc.process.pid,
            executable: doc.process.executable.clone(),
            user: doc.user.name.clone(),
            uid: doc.user.id.parse().unwrap_or(0),
            api: api.clone(),
            software: None,
        })?;
        if new {
            log::info!(
                "new AI relay {}: {} {} ({}) by pid {} ({})",
                known.host,
                api.method,
                api.route,
                api.family,
                known.pid,
                known.executable.as_deref().unwrap_or("?")
            );
        }
        if let Ok(v) = serde_json::to_value(&known) {
            self.store.record_relay(v);
        }
        Some(known)
    }

    pub(super) fn finish(&mut self, kernel: &mut impl KernelMaps, f: Finished) {
        // The agent's own traffic (its resolver queries, feed fetches, sink deliveries) is not
        // something the host did: no record, and the kernel stops looking at the socket.
        if f.observation.raw.tgid == self.own_pid {
            if !f.is_datagram {
                kernel.stop_capture(f.observation.raw.cookie);
            }
            return;
        }
        // A TLS connection of a process whose TLS library is read waits for its request: the
        // record and its alert then say what was asked (and an unlisted host can be judged).
        if self.config.discovery.api_requests
            && !f.is_datagram
            && f.observation.transport == crate::kernel::decode::Transport::Tcp
            && f.naming.tls.is_some()
            && kernel.tls_readable(f.observation.raw.tgid)
        {
            match self.requests.hold(f, Instant::now().into_std()) {
                None => return,
                Some(f) => return self.finish_now(kernel, f, None, None),
            }
        }
        self.finish_now(kernel, f, None, None);
    }

    /// Write a finished record (with the API request read from it, if any).
    pub(super) fn finish_now(
        &mut self,
        kernel: &mut impl KernelMaps,
        f: Finished,
        api: Option<ApiRequest>,
        software: Option<&'static str>,
    ) {
        let repeat_count = if f.is_datagram {
            let count = kernel
                .udp_window_count(&f.observation.udp_flow_key(), f.observation.raw.ts_boot_ns)
                // Evicted from the LRU map (or two windows later): at least this datagram.
                .unwrap_or(1);
            Some(count)
        } else {
            None
        };
        let alert = self.emit(&f, repeat_count, api, software);
        if f.is_datagram {
            return;
        }
        // The kernel keeps a stream's entry until told what to do with it: a TCP connection
        // that raised an alert has its bytes counted until it closes (the entry is updated in
        // place, so the socket's gate never closes in between); every other stream is done.
        let cookie = f.observation.raw.cookie;
        let early_end = self.early_ends.pop(&cookie);
        match alert.filter(|_| f.observation.transport == crate::kernel::decode::Transport::Tcp) {
            Some(alert) => {
                self.watched.put(
                    cookie,
                    Watched {
                        alert,
                        captured_bytes: f.captured_bytes,
                        connect_ns: f.observation.raw.ts_boot_ns,
                    },
                );
                match early_end {
                    Some(end) => self.flow_end(&end),
                    None => kernel.watch(cookie, crate::clock::boot_ns()),
                }
            }
            None => kernel.stop_capture(cookie),
        }
    }

    /// A watched socket closed: the follow-up record with the flow's volume and duration.
    pub(super) fn flow_end(&mut self, end: &monitor_common::FlowEndEvent) {
        let Some(w) = self.watched.pop(&end.cookie) else {
            // Its record is still waiting (or raises no alert and the end ages out).
            self.early_ends.put(end.cookie, *end);
            return;
        };
        let mut doc = w.alert;
        let ended = crate::clock::rfc3339(crate::clock::wall_time(end.end_ns));
        doc.event.kind_type = vec!["connection".into(), "end".into()];
        doc.event.action = format!("{}-connection-end", doc.category().unwrap_or("ai"));
        doc.event.duration = Some(end.end_ns.saturating_sub(w.connect_ns));
        doc.event.end = Some(ended.clone());
        doc.timestamp = ended;
        doc.source.bytes = Some(end.bytes_out + w.captured_bytes);
        doc.destination.bytes = Some(end.bytes_in);
        // The connection's row in the store learns its volume (`relaywatch connections`).
        if let Some(update) = ConnectionSummaryUpdate::from_record(&doc) {
            self.store.record_connection(update);
        }
        self.deliver(&doc);
    }

    /// Write the record (and store its summary); returns the alert document if it raised one
    /// (a repeat inside a dedupe window raises none: it is counted into the window's summary).
    pub(super) fn emit(
        &mut self,
        f: &Finished,
        repeat_count: Option<u64>,
        api: Option<ApiRequest>,
        software: Option<&'static str>,
    ) -> Option<Record> {
        let lists = self.lists.read().ok().map(|l| Arc::clone(&l));
        let user_name = self.users.name(f.observation.raw.uid);
        let judgement = judge(
            lists.as_deref(),
            &self.discovery,
            &f.naming,
            f.observation.destination,
            classify::action(self.config.blocklists.actions.ai_relay),
        );
        let record = ConnectionRecord {
            observation: &f.observation,
            process: f.process.as_ref(),
            user_name: user_name.as_deref(),
            repeat_count,
            naming: Some(&judgement.naming),
        };
        let mut doc = record.to_record();
        doc.host = Some(self.host_info.to_host());
        doc.relaywatch.api = api.clone();
        if let Some(update) = ConnectionSummaryUpdate::from_record(&doc) {
            self.store.record_connection(update);
        }
        if self.config.agent.log_connections {
            self.write_line(&doc);
        }
        let mut relay_facts = None;
        let finding = match judgement.finding {
            Some(finding) => Some(finding),
            None if !judgement.allowed && judgement.relay.is_none() => self
                .relay_verdict(&doc, api.as_ref(), software)
                .map(|(finding, facts)| {
                    relay_facts = Some(facts);
                    finding
                }),
            None => None,
        };
        let tls_stream = !f.is_datagram && f.naming.tls.is_some();
        let Some(finding) = finding else {
            if tls_stream {
                self.remember_tls(f, doc, false);
            }
            return None;
        };
        let mut alert = crate::report::alert::alert_document(&doc, &finding, &self.host_info);
        if let Some(facts) = relay_facts {
            alert.relaywatch.blocklist = None;
            if let Some(key) = &facts.config_key {
                // Named by a client's configuration file: that file is the name's evidence.
                alert.relaywatch.name_source = NameSource::RelayConfig.as_str().into();
                alert.relaywatch.relay_config = Some(RelayConfig {
                    host: finding.value.clone(),
                    variable: key.clone(),
                    pid: alert.process.pid,
                    executable: alert.process.executable.clone(),
                });
            }
            alert.relaywatch.relay = Some(facts);
        }
        if let Some(software) = software {
            // A listed relay (or a provider answered through one) named by its answer too.
            alert
                .relaywatch
                .relay
                .get_or_insert_with(RelayFacts::default)
                .software = Some(software.into());
        }
        if tls_stream {
            self.remember_tls(f, doc, true);
        }
        if let Some(evidence) = &judgement.relay {
            alert.relaywatch.blocklist = None;
            alert.relaywatch.relay_config = Some(RelayConfig {
                host: evidence.host.clone(),
                variable: evidence.variable.clone(),
                pid: evidence.pid,
                executable: evidence.executable.clone(),
            });
        }
        if let Some(parent) = f.process.as_ref().and_then(|p| p.parent_pid) {
            // Who started it, up to pid 1: a script run by cron, by a CI runner, by an IDE...
            let chain = self.procs.ancestors(parent, f.observation.raw.ts_boot_ns);
            if let Some(exe) = chain.first().and_then(|a| a.executable.clone()) {
                alert
                    .process
                    .parent
                    .get_or_insert_with(Parent::default)
                    .executable = Some(exe);
            }
            let ancestors = chain
                .into_iter()
                .map(|a| Ancestor {
                    pid: a.pid,
                    executable: a.executable,
                })
                .collect();
            alert.relaywatch.process = Some(Lineage { ancestors });
        }
        alert.relaywatch.client = self
            .local_clients
            .client_of(alert.process.pid, Instant::now().into_std());
        if !self.dedupe.admit(&alert, std::time::Instant::now()) {
            return None; // counted into the window's summary
        }
        self.raise(alert.clone());
        Some(alert)
    }

    /// A written TLS connection, for a request that comes after its record.
    fn remember_tls(&mut self, f: &Finished, record: Record, alerted: bool) {
        if !self.config.discovery.api_requests {
            return;
        }
        self.requests.written(
            f.observation.raw.cookie,
            Recent {
                tgid: f.observation.raw.tgid,
                tid: f.observation.raw.tid,
                domain: f.naming.domain.clone(),
                at: Instant::now().into_std(),
                record,
                alerted,
                paired: false,
            },
        );
    }

    /// An alert (or a dedupe summary): counted, then delivered.
    pub(super) fn raise(&mut self, alert: Record) {
        self.metrics
            .add_alert(alert.category().unwrap_or("unknown"));
        self.deliver(&alert);
        self.last_alert = Some(alert);
    }

    /// An alert-kind document to every output: stdout (if enabled), the sinks in the configured
    /// format, and the store (ECS).
    pub(super) fn deliver(&mut self, doc: &Record) {
        if self.config.output.stdout {
            self.write_line(doc);
        }
        let ecs = doc.to_ecs();
        self.sinks.send_line(&ecs.to_string());
        self.store.submit_alert(ecs);
    }

    pub(super) fn close_dedupe_windows(&mut self, all: bool) {
        for summary in self.dedupe.close_due(std::time::Instant::now(), all) {
            self.raise(summary);
        }
    }

    /// One JSON line on stdout, in the configured format (ECS, or OCSF Network Activity). The
    /// store keeps ECS, which the API and CLI read.
    pub(super) fn write_line(&mut self, doc: &Record) {
        // ECS is the record serialized as it is, without an intermediate JSON tree: with every
        // connection logged this is the daemon's busiest path.
        let mut line = match self.config.output.format {
            Format::Ecs => serde_json::to_vec(doc).unwrap_or_default(),
            Format::Ocsf => crate::report::ocsf::from_record(doc)
                .to_string()
                .into_bytes(),
        };
        line.push(b'\n');
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush())
            && !self.stdout_failed
        {
            log::error!("writing records to stdout failed: {e}; further records are dropped");
            self.stdout_failed = true;
        }
    }

    /// Handle every record the ring buffer holds now; how many there were.
    pub(super) fn drain(
        &mut self,
        kernel: &mut impl KernelMaps,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    ) -> usize {
        let mut found = 0;
        while let Some(item) = ring.next() {
            self.on_record(kernel, &item);
            found += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::naming::model::ProxyTarget;

    fn named(domain: &str) -> Naming {
        Naming {
            domain: Some(domain.into()),
            source: NameSource::Sni,
            tls: None,
            proxy: None,
        }
    }

    fn discovery_of(host: &str) -> RelayDiscovery {
        let mut d = RelayDiscovery::new(vec!["OPENAI_BASE_URL".into()]);
        let mut new = Vec::new();
        d.note(
            host.into(),
            "OPENAI_BASE_URL",
            (42, 1000),
            Some("/usr/bin/python3"),
            SystemTime::now(),
            &mut new,
        );
        assert_eq!(new, [host]);
        d
    }

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

    #[test]
    fn a_listed_name_alerts_and_keeps_its_evidence() {
        let lists = Blocklists::builtin();
        let j = judge(
            Some(&lists),
            &discovery_of("relay.example"),
            &named("api.openai.com"),
            ADDR,
            Action::Alert,
        );
        let f = j.finding.expect("api.openai.com is an AI provider");
        assert_eq!(f.verdict.category, Category::AiProvider);
        assert_eq!(f.field, MatchedField::Domain);
        assert_eq!(
            j.naming.source,
            NameSource::Sni,
            "a list match does not relabel the name"
        );
        assert!(j.relay.is_none());
    }

    #[test]
    fn an_unlisted_name_is_quiet_unless_a_base_url_names_it() {
        let lists = Blocklists::builtin();
        let none = RelayDiscovery::new(vec!["OPENAI_BASE_URL".into()]);
        let j = judge(
            Some(&lists),
            &none,
            &named("relay.example"),
            ADDR,
            Action::Alert,
        );
        assert!(j.finding.is_none() && j.relay.is_none());
        assert_eq!(j.naming.source, NameSource::Sni);

        // The relay override: the host a process is configured with alerts as ai-relay, and its
        // name's evidence becomes that configuration.
        let j = judge(
            Some(&lists),
            &discovery_of("relay.example"),
            &named("relay.example"),
            ADDR,
            Action::Alert,
        );
        let f = j.finding.expect("a suspected relay alerts");
        assert_eq!(f.verdict.category, Category::AiRelay);
        assert_eq!(f.verdict.file.as_ref(), classify::RELAY_CONFIG_RULESET);
        assert_eq!(j.naming.source, NameSource::RelayConfig);
        assert_eq!(j.relay.expect("evidence").variable, "OPENAI_BASE_URL");
    }

    #[test]
    fn the_relay_override_follows_the_ai_relay_action_and_yields_to_allow_rules() {
        let ignoring = Blocklists::builtin().with_action(Category::AiRelay, Action::Ignore);
        let j = judge(
            Some(&ignoring),
            &discovery_of("relay.example"),
            &named("relay.example"),
            ADDR,
            Action::Alert,
        );
        assert!(j.finding.is_none(), "ai-relay ignored: no alert");
        assert_eq!(
            j.naming.source,
            NameSource::RelayConfig,
            "the evidence is still reported"
        );

        let lists = Blocklists::load_all(
            &[],
            &[crate::intel::blocklist::ListText {
                name: "allow.list".into(),
                text: "# relaywatch: category=allow\nfull:relay.example\n".into(),
                category: Some(Category::Allow),
            }],
            true,
        )
        .expect("an allow list");
        let j = judge(
            Some(&lists),
            &discovery_of("relay.example"),
            &named("relay.example"),
            ADDR,
            Action::Alert,
        );
        assert!(
            j.finding.is_none() && j.relay.is_none(),
            "an allow rule silences discovery"
        );
        assert_eq!(j.naming.source, NameSource::Sni);
    }

    #[test]
    fn through_a_proxy_the_target_address_is_judged() {
        let lists = Blocklists::builtin();
        let d = discovery_of("198.51.100.9");
        let naming = Naming {
            domain: Some("198.51.100.9".into()),
            source: NameSource::ProxyTarget,
            tls: None,
            proxy: Some(ProxyTarget {
                host: "198.51.100.9".into(),
                port: 443,
            }),
        };
        let j = judge(
            Some(&lists),
            &d,
            &naming,
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            Action::Alert,
        );
        let f = j.finding.expect("the proxy target is the suspected relay");
        assert_eq!(
            (f.verdict.category, f.value.as_str()),
            (Category::AiRelay, "198.51.100.9")
        );
        let direct = judge(
            Some(&lists),
            &d,
            &named("example.org"),
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            Action::Alert,
        );
        assert!(
            direct.finding.is_none(),
            "the proxy's own address is not the target"
        );
    }

    #[test]
    fn without_lists_nothing_is_judged() {
        let j = judge(
            None,
            &discovery_of("relay.example"),
            &named("api.openai.com"),
            ADDR,
            Action::Alert,
        );
        assert!(j.finding.is_none() && j.relay.is_none());
    }
}
