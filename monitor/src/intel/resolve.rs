//! Resolving the blocklists' names to addresses, so that a connection made by address alone (no
//! SNI, no Host header, no DNS answer seen) can still be named: the last fallback of naming,
//! `relaywatch.name_source: "resolved_blocklist"`.
//!
//! Data model. `ResolvedNames` is a shared table address -> the list names that resolved to it,
//! each with its category and the instant its DNS answer expires (now + the smallest TTL of the
//! answer's records, CNAMEs included). An expired entry is never returned and is pruned at the
//! next round; a round that resolves the name again puts it back with a new expiry. One address
//! may carry several names (a CDN address serves many sites): at most `MAX_NAMES_PER_ADDRESS`
//! are kept, `lookup` returns the one of the most specific category (ai-relay first, allow last).
//!
//! Rounds. `resolve_round` looks a set of names up (A and AAAA) with at most `MAX_IN_FLIGHT`
//! queries outstanding, and at most `MAX_NAMES_PER_ROUND` names: the rest are reported as
//! skipped. The task started by `spawn` keeps, per name, when it is next due: when its answer
//! expires (but not sooner than `MIN_ROUND_SPACING` from now, nor later than the configured
//! interval), or one interval later after a failure. Each round takes the due names, oldest due
//! first, so a list longer than the per-round cap is covered over several rounds.
//!
//! Errors (NXDOMAIN, no records, timeouts, an unreadable /etc/resolv.conf) are counted and
//! logged at debug level; none of them stops the task.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
};
use tokio::{sync::watch, task::JoinHandle};

use crate::intel::blocklist::Category;

/// Queries outstanding at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Names looked up per round. The built-in lists have about 550; a longer user list is covered
/// over several rounds.
pub const MAX_NAMES_PER_ROUND: usize = 10_000;
/// Rounds start at least this far apart, however short the TTLs.
pub const MIN_ROUND_SPACING: Duration = Duration::from_secs(30);
/// Names kept per address (a CDN address can serve thousands of names).
pub const MAX_NAMES_PER_ADDRESS: usize = 16;
/// Time allowed for one query to one server (attempted twice).
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A list name an address resolved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedName {
    pub name: String,
    pub category: Category,
    /// When the DNS answer stops being valid.
    pub expires: Instant,
}

/// The address -> list name table, shared between the resolving task and the naming code.
/// Cloning shares the table.
#[derive(Debug, Clone, Default)]
pub struct ResolvedNames {
    table: Arc<RwLock<HashMap<IpAddr, Vec<ResolvedName>>>>,
}

impl ResolvedNames {
    pub fn new() -> ResolvedNames {
        ResolvedNames::default()
    }

    /// The list name `ip` resolved from, if an unexpired answer says so (IPv4-mapped IPv6
    /// addresses are looked up as IPv4).
    pub fn lookup(&self, ip: IpAddr) -> Option<ResolvedName> {
        self.lookup_all_at(ip, Instant::now()).into_iter().next()
    }

    fn lookup_all_at(&self, ip: IpAddr, now: Instant) -> Vec<ResolvedName> {
        let table = self
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut names: Vec<ResolvedName> = table
            .get(&ip.to_canonical())
            .map(|v| v.iter().filter(|e| e.expires > now).cloned().collect())
            .unwrap_or_default();
        names.sort_by(|a, b| {
            a.category
                .cmp(&b.category)
                .then_with(|| a.name.cmp(&b.name))
        });
        names
    }

    /// Addresses with at least one unexpired name.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let table = self
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table
            .values()
            .filter(|v| v.iter().any(|e| e.expires > now))
            .count()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, ip: IpAddr, name: &str, category: Category, expires: Instant) {
        let mut table = self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = table.entry(ip.to_canonical()).or_default();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.name == name && e.category == category)
        {
            e.expires = expires;
            return;
        }
        let entry = ResolvedName {
            name: name.to_owned(),
            category,
            expires,
        };
        if entries.len() < MAX_NAMES_PER_ADDRESS {
            entries.push(entry);
        } else if let Some(soonest) = entries.iter_mut().min_by_key(|e| e.expires) {
            *soonest = entry;
        }
    }

    /// Drop expired entries (and names no longer on the lists, when `keep` is given).
    fn prune(&self, now: Instant, keep: Option<&HashMap<String, Category>>) {
        let mut table = self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.retain(|_, entries| {
            entries.retain(|e| {
                e.expires > now && keep.is_none_or(|k| k.get(&e.name) == Some(&e.category))
            });
            !entries.is_empty()
        });
    }
}

/// One name that resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub name: String,
    pub category: Category,
    pub addresses: Vec<IpAddr>,
    /// The smallest TTL of the answer's records.
    pub ttl: Duration,
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub resolutions: Vec<Resolution>,
    /// NXDOMAIN, or no A/AAAA records.
    pub not_found: usize,
    pub timed_out: usize,
    /// Other errors (server failure, refused, a name DNS cannot carry).
    pub failed: usize,
    /// Names left for a later round (over `MAX_NAMES_PER_ROUND`).
    pub skipped: usize,
}

impl RoundReport {
    pub fn addresses(&self) -> usize {
        self.resolutions.iter().map(|r| r.addresses.len()).sum()
    }
}

/// A stub resolver for list names: the configured nameserver, or the system's (/etc/resolv.conf,
/// and /etc/hosts first).
#[derive(Clone)]
pub struct ListResolver {
    resolver: TokioResolver,
}

impl ListResolver {
    pub fn new(nameserver: Option<SocketAddr>) -> Result<ListResolver, String> {
        let mut builder = match nameserver {
            Some(addr) => {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                let config = ResolverConfig::from_name_servers(vec![server]);
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("system resolver configuration (/etc/resolv.conf): {e}"))?,
        };
        let options = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = QUERY_TIMEOUT;
        options.attempts = 2;
        // Every round asks the server: the TTL of each answer is what the table honours.
        options.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(ListResolver { resolver })
    }

    async fn resolve(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), NetError> {
        // Fully qualified: no search domains appended.
        let lookup = self
            .resolver
            .lookup_ip(format!("{}.", name.trim_end_matches('.')))
            .await?;
        let addresses: Vec<IpAddr> = lookup.iter().collect();
        let ttl = lookup
            .as_lookup()
            .answers()
            .iter()
            .map(|r| r.ttl)
            .min()
            .unwrap_or(0);
        Ok((addresses, Duration::from_secs(u64::from(ttl))))
    }
}

/// Resolve `names` (at most `MAX_NAMES_PER_ROUND` of them, in order; the rest are counted as
/// skipped), `MAX_IN_FLIGHT` at a time, and put every address in `table` until its TTL expires.
pub async fn resolve_round(
    resolver: &ListResolver,
    names: &[(String, Category)],
    table: &ResolvedNames,
) -> RoundReport {
    let mut report = RoundReport {
        skipped: names.len().saturating_sub(MAX_NAMES_PER_ROUND),
        ..Default::default()
    };
    let mut pending = names.iter().take(MAX_NAMES_PER_ROUND).cloned();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while in_flight.len() < MAX_IN_FLIGHT {
            let Some((name, category)) = pending.next() else {
                break;
            };
            let resolver = resolver.clone();
            in_flight.spawn(async move {
                let result = resolver.resolve(&name).await;
                (name, category, result)
            });
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let (name, category, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                log::debug!("resolving a list name: task failed: {e}");
                report.failed += 1;
                continue;
            }
        };
        match result {
            Ok((addresses, ttl)) if !addresses.is_empty() => {
                let expires = Instant::now() + ttl;
                for ip in &addresses {
                    table.insert(*ip, &name, category, expires);
                }
                report.resolutions.push(Resolution {
                    name,
                    category,
                    addresses,
                    ttl,
                });
            }
            Ok(_) => {
                log::debug!("resolving list name {name}: no addresses");
                report.not_found += 1;
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                log::debug!("resolving list name {name}: {e}");
                report.not_found += 1;
            }
            Err(NetError::Timeout) => {
                log::debug!("resolving list name {name}: timed out");
                report.timed_out += 1;
            }
            Err(e) => {
                log::debug!("resolving list name {name}: {e}");
                report.failed += 1;
            }
        }
    }
    report
        .resolutions
        .sort_by(|a, b| (a.category, &a.name).cmp(&(b.category, &b.name)));
    report
}

/// Per-name due times of the background task.
struct Schedule {
    due: HashMap<String, (Category, Instant)>,
}

impl Schedule {
    fn new(names: &[(String, Category)], now: Instant) -> Schedule {
        Schedule {
            due: names.iter().map(|(n, c)| (n.clone(), (*c, now))).collect(),
        }
    }

    /// Replace the name set: names already known keep their due time, new ones are due now.
    fn replace(&mut self, names: &[(String, Category)], now: Instant) {
        let mut due = HashMap::with_capacity(names.len());
        for (name, category) in names {
            let when = self
                .due
                .get(name)
                .filter(|(c, _)| c == category)
                .map_or(now, |(_, t)| *t);
            due.insert(name.clone(), (*category, when));
        }
        self.due = due;
    }

    fn take_due(&self, now: Instant) -> Vec<(String, Category)> {
        let mut due: Vec<(&String, Category, Instant)> = self
            .due
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(n, (c, t))| (n, *c, *t))
            .collect();
        due.sort_by_key(|(_, _, t)| *t);
        due.into_iter()
            .take(MAX_NAMES_PER_ROUND)
            .map(|(n, c, _)| (n.clone(), c))
            .collect()
    }

    /// After a round over `batch`: a resolved name is due when its answer expires, a failed one
    /// an interval later.
    fn update(
        &mut self,
        batch: &[(String, Category)],
        report: &RoundReport,
        now: Instant,
        interval: Duration,
    ) {
        for (name, _) in batch {
            if let Some((_, t)) = self.due.get_mut(name) {
                *t = now + interval;
            }
        }
        for r in &report.resolutions {
            if let Some((_, t)) = self.due.get_mut(&r.name) {
                *t = now
                    + r.ttl
                        .clamp(MIN_ROUND_SPACING, interval.max(MIN_ROUND_SPACING));
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(_, t)| *t).min()
    }

    fn names(&self) -> HashMap<String, Category> {
        self.due.iter().map(|(n, (c, _))| (n.clone(), *c)).collect()
    }
}

/// Replaces the name set of a running resolving task: the lists' names (on reload) and the
/// suspected relays found in base-URL variables (discovery.rs), resolved as one set.
#[derive(Debug, Clone)]
pub struct NameSetUpdater {
    names: watch::Sender<Vec<(String, Category)>>,
    parts: Arc<std::sync::Mutex<NameParts>>,
}

#[derive(Debug, Default)]
struct NameParts {
    lists: Vec<(String, Category)>,
    discovered: Vec<(String, Category)>,
}

impl NameParts {
    fn union(&self) -> Vec<(String, Category)> {
        let mut seen = std::collections::HashSet::new();
        self.lists
            .iter()
            .chain(&self.discovered)
            .filter(|e| seen.insert((*e).clone()))
            .cloned()
            .collect()
    }
}

impl NameSetUpdater {
    /// Resolve these list names from now on. New names are resolved at once; entries of names
    /// no longer on the lists are dropped.
    pub fn replace(&self, names: Vec<(String, Category)>) {
        self.update(|p| p.lists = names);
    }

    /// Resolve these suspected relay hosts too (as `ai-relay` names).
    pub fn set_discovered(&self, hosts: Vec<String>) {
        self.update(|p| p.discovered = hosts.into_iter().map(|h| (h, Category::AiRelay)).collect());
    }

    fn update(&self, change: impl FnOnce(&mut NameParts)) {
        let mut parts = self
            .parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut parts);
        self.names.send_replace(parts.union());
    }
}

/// Start resolving `names` (from `Blocklists::resolvable_names`) in the background, through
/// `nameserver` or the system resolver, each name again when its answer expires and at least
/// every `interval`. Must be called within a tokio runtime. The task runs until aborted; once
/// every `NameSetUpdater` is dropped it keeps resolving the names it has.
pub fn spawn(
    names: Vec<(String, Category)>,
    nameserver: Option<SocketAddr>,
    interval: Duration,
) -> (ResolvedNames, NameSetUpdater, JoinHandle<()>) {
    let table = ResolvedNames::new();
    let parts = Arc::new(std::sync::Mutex::new(NameParts {
        lists: names.clone(),
        discovered: Vec::new(),
    }));
    let (sender, mut receiver) = watch::channel(names);
    receiver.mark_changed();
    let shared = table.clone();
    let task = tokio::spawn(async move {
        let mut schedule = Schedule::new(&[], Instant::now());
        let mut updates_open = true;
        loop {
            let now = Instant::now();
            if receiver.has_changed().unwrap_or(false) {
                let names = receiver.borrow_and_update().clone();
                schedule.replace(&names, now);
                shared.prune(now, Some(&schedule.names()));
                log::debug!("resolving {} list names", names.len());
            }
            let batch = schedule.take_due(now);
            if !batch.is_empty() {
                let report = match ListResolver::new(nameserver) {
                    Ok(resolver) => resolve_round(&resolver, &batch, &shared).await,
                    Err(e) => {
                        log::warn!("list names not resolved this round: {e}");
                        RoundReport {
                            failed: batch.len(),
                            ..Default::default()
                        }
                    }
                };
                schedule.update(&batch, &report, Instant::now(), interval);
                log::debug!(
                    "list names resolved: {} names to {} addresses; {} not found, {} timed out, {} failed; {} addresses known",
                    report.resolutions.len(),
                    report.addresses(),
                    report.not_found,
                    report.timed_out,
                    report.failed,
                    shared.len()
                );
            }
            let now = Instant::now();
            shared.prune(now, None);
            let next = schedule.next_due().unwrap_or(now + interval).clamp(
                now + MIN_ROUND_SPACING,
                now + interval.max(MIN_ROUND_SPACING),
            );
            if !updates_open {
                tokio::time::sleep_until(next.into()).await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                changed = receiver.changed() => match changed {
                    // Marked seen by the next turn's borrow_and_update.
                    Ok(()) => receiver.mark_changed(),
                    // Every updater dropped: keep resolving the names we have.
                    Err(_) => updates_open = false,
                },
            }
        }
    });
    (
        table,
        NameSetUpdater {
            names: sender,
            parts,
        },
        task,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[(&str, Category)]) -> Vec<(String, Category)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn resolve_table_expires_and_prefers_the_most_specific_category() {
        let t = ResolvedNames::new();
        let now = Instant::now();
        let ip: IpAddr = "104.18.7.192".parse().unwrap();
        t.insert(
            ip,
            "openai.com",
            Category::AiProvider,
            now + Duration::from_secs(60),
        );
        t.insert(
            ip,
            "relay.example",
            Category::AiRelay,
            now + Duration::from_secs(10),
        );
        t.insert(
            ip,
            "ok.example",
            Category::Allow,
            now + Duration::from_secs(60),
        );
        let all = t.lookup_all_at(ip, now);
        let order: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(order, ["relay.example", "openai.com", "ok.example"]);
        let later: Vec<String> = t
            .lookup_all_at(ip, now + Duration::from_secs(11))
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            later,
            ["openai.com", "ok.example"],
            "the relay entry expired"
        );
        // IPv4-mapped IPv6 finds the IPv4 entry.
        assert_eq!(
            t.lookup_all_at("::ffff:104.18.7.192".parse().unwrap(), now)
                .len(),
            3
        );
        t.prune(now + Duration::from_secs(61), None);
        assert!(t.table.read().unwrap().is_empty());
    }

    #[test]
    fn resolve_table_refresh_extends_and_bounds_names_per_address() {
        let t = ResolvedNames::new();
        let now = Instant::now();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        t.insert(
            ip,
            "a.example",
            Category::AiTool,
            now + Duration::from_secs(1),
        );
        t.insert(
            ip,
            "a.example",
            Category::AiTool,
            now + Duration::from_secs(100),
        );
        assert_eq!(t.lookup_all_at(ip, now + Duration::from_secs(50)).len(), 1);
        for i in 0..40 {
            t.insert(
                ip,
                &format!("n{i}.example"),
                Category::AiRelay,
                now + Duration::from_secs(200 + i),
            );
        }
        let all = t.lookup_all_at(ip, now);
        assert_eq!(all.len(), MAX_NAMES_PER_ADDRESS);
        assert!(
            all.iter().any(|e| e.name == "n39.example"),
            "the newest answers are kept"
        );
    }

    #[test]
    fn resolve_prune_drops_names_no_longer_listed() {
        let t = ResolvedNames::new();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        t.insert(
            ip,
            "gone.example",
            Category::AiRelay,
            now + Duration::from_secs(60),
        );
        t.insert(
            ip,
            "kept.example",
            Category::AiRelay,
            now + Duration::from_secs(60),
        );
        let keep: HashMap<String, Category> = names(&[("kept.example", Category::AiRelay)])
            .into_iter()
            .collect();
        t.prune(now, Some(&keep));
        let left: Vec<String> = t
            .lookup_all_at(ip, now)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(left, ["kept.example"]);
    }

    #[test]
    fn resolve_schedule_follows_ttls_within_bounds() {
        let now = Instant::now();
        let interval = Duration::from_secs(3600);
        let list = names(&[
            ("a.example", Category::AiRelay),
            ("b.example", Category::AiRelay),
            ("c.example", Category::AiTool),
        ]);
        let mut s = Schedule::new(&list, now);
        let batch = s.take_due(now);
        assert_eq!(batch.len(), 3);
        let report = RoundReport {
            resolutions: vec![
                Resolution {
                    name: "a.example".into(),
                    category: Category::AiRelay,
                    addresses: vec![],
                    ttl: Duration::from_secs(2),
                },
                Resolution {
                    name: "b.example".into(),
                    category: Category::AiRelay,
                    addresses: vec![],
                    ttl: Duration::from_secs(600),
                },
            ],
            not_found: 1,
            ..Default::default()
        };
        s.update(&batch, &report, now, interval);
        assert_eq!(
            s.due["a.example"].1,
            now + MIN_ROUND_SPACING,
            "short TTLs do not make rounds closer than the spacing"
        );
        assert_eq!(s.due["b.example"].1, now + Duration::from_secs(600));
        assert_eq!(
            s.due["c.example"].1,
            now + interval,
            "a failed name is retried an interval later"
        );
        assert!(s.take_due(now + Duration::from_secs(29)).is_empty());
        assert_eq!(s.take_due(now + Duration::from_secs(601)).len(), 2);
        // Reload: known names keep their times, new ones are due at once.
        s.replace(
            &names(&[
                ("b.example", Category::AiRelay),
                ("d.example", Category::AiRelay),
            ]),
            now,
        );
        let due: Vec<String> = s.take_due(now).into_iter().map(|(n, _)| n).collect();
        assert_eq!(due, ["d.example"]);
    }

    #[test]
    fn resolve_schedule_caps_a_round_and_takes_the_oldest_first() {
        let now = Instant::now();
        let list: Vec<(String, Category)> = (0..MAX_NAMES_PER_ROUND + 5)
            .map(|i| (format!("n{i}.example"), Category::AiRelay))
            .collect();
        let mut s = Schedule::new(&list, now);
        s.due.get_mut("n10004.example").unwrap().1 = now - Duration::from_secs(5);
        let batch = s.take_due(now);
        assert_eq!(batch.len(), MAX_NAMES_PER_ROUND);
        assert_eq!(batch[0].0, "n10004.example");
    }

    /// dnsmasq on 127.0.0.3:5354 (not :53, not the integration test's :5353), answering from a
    /// fixed table with a 2 s TTL and REFUSED for anything else; killed on drop.
    struct Dnsmasq(std::process::Child);

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    const DNSMASQ: &str = "127.0.0.3:5354";

    /// The dnsmasq tests share one address: one at a time.
    static DNSMASQ_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Start dnsmasq and wait until it answers.
    async fn dnsmasq() -> Dnsmasq {
        let child = std::process::Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.3", "--port=5354"])
            .args(["--address=/api.openai.com/127.0.0.91", "--address=/relay.example/127.0.0.92", "--local-ttl=2", "--cache-size=0"])
            .args(["--pid-file=", "--user=root", "--log-facility=-"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the resolver tests need dnsmasq (Debian: dnsmasq-base; `cargo xtask setup --tests` installs it)");
        let server = Dnsmasq(child);
        let resolver = ListResolver::new(Some(DNSMASQ.parse().unwrap())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while resolver.resolve("api.openai.com").await.is_err() {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not answer on {DNSMASQ}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// A real DNS server on loopback (never the machine's resolver): answers land in the table
    /// with their TTL, expire without a refresh, come back with the next round; an unknown name
    /// leaves no entry and no error escapes.
    #[tokio::test]
    async fn resolve_round_against_dnsmasq_honours_ttls() {
        let _one_at_a_time = DNSMASQ_LOCK.lock().await;
        let _server = dnsmasq().await;
        let resolver = ListResolver::new(Some(DNSMASQ.parse().unwrap())).unwrap();
        let table = ResolvedNames::new();
        let list = names(&[
            ("api.openai.com", Category::AiProvider),
            ("relay.example", Category::AiRelay),
            ("unknown.invalid", Category::AiRelay),
        ]);
        let openai: IpAddr = "127.0.0.91".parse().unwrap();
        let relay: IpAddr = "127.0.0.92".parse().unwrap();
        let report = resolve_round(&resolver, &list, &table).await;
        assert_eq!(
            report.resolutions,
            [
                Resolution {
                    name: "relay.example".into(),
                    category: Category::AiRelay,
                    addresses: vec![relay],
                    ttl: Duration::from_secs(2)
                },
                Resolution {
                    name: "api.openai.com".into(),
                    category: Category::AiProvider,
                    addresses: vec![openai],
                    ttl: Duration::from_secs(2)
                },
            ]
        );
        assert_eq!(
            report.not_found + report.timed_out + report.failed,
            1,
            "unknown.invalid: {report:?}"
        );
        assert_eq!(
            table.lookup(openai).map(|e| (e.name, e.category)),
            Some(("api.openai.com".into(), Category::AiProvider))
        );
        assert_eq!(
            table.lookup(relay).map(|e| e.name).as_deref(),
            Some("relay.example")
        );
        assert_eq!(table.len(), 2, "nothing for unknown.invalid");

        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            table.lookup(openai),
            None,
            "expired after its 2 s TTL without a refresh"
        );
        assert!(table.is_empty());

        let again = resolve_round(&resolver, &list, &table).await;
        assert_eq!(again.resolutions.len(), 2, "{again:?}");
        assert_eq!(
            table.lookup(openai).map(|e| e.name).as_deref(),
            Some("api.openai.com"),
            "refreshed by the next round"
        );
    }

    /// The background task resolves at once, and a new name set replaces the old one.
    #[tokio::test]
    async fn resolve_spawned_task_resolves_and_takes_a_new_name_set() {
        let _one_at_a_time = DNSMASQ_LOCK.lock().await;
        let _server = dnsmasq().await;
        let list = names(&[("api.openai.com", Category::AiProvider)]);
        let (table, updater, task) = spawn(
            list,
            Some(DNSMASQ.parse().unwrap()),
            Duration::from_secs(3600),
        );
        let openai: IpAddr = "127.0.0.91".parse().unwrap();
        let relay: IpAddr = "127.0.0.92".parse().unwrap();
        let wait_for = |ip: IpAddr| {
            let table = table.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while table.lookup(ip).is_none() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                table.lookup(ip).is_some()
            }
        };
        assert!(wait_for(openai).await, "the first round runs at once");
        updater.replace(names(&[("relay.example", Category::AiRelay)]));
        assert!(
            wait_for(relay).await,
            "the new name is resolved at once, not an interval later"
        );
        assert!(
            table.lookup(openai).is_none(),
            "a name no longer listed is dropped"
        );
        task.abort();
    }

    /// No DNS server at all (a closed loopback port): every name fails, nothing escapes.
    #[tokio::test]
    async fn resolve_round_with_a_dead_server_counts_errors() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let resolver = ListResolver::new(Some(addr)).unwrap();
        let table = ResolvedNames::new();
        let report = resolve_round(
            &resolver,
            &names(&[("relay.example", Category::AiRelay)]),
            &table,
        )
        .await;
        assert!(report.resolutions.is_empty());
        assert_eq!(
            report.not_found + report.timed_out + report.failed,
            1,
            "{report:?}"
        );
        assert!(table.is_empty());
    }
}
