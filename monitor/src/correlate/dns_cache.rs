//! Address -> name evidence from DNS answers the host received.
//!
//! Answers are read by the kernel on the sockets that asked (see the ingress program). Each
//! address in an answer maps to the name the client asked for (the CNAME chain is followed back
//! to the question), valid for the record's TTL. Two views:
//! - per process (tgid, address): what this process itself resolved: the strongest DNS evidence;
//! - host-wide (address): what anyone on the host resolved, e.g. systemd-resolved's upstream
//!   answers, used when the process's own lookup was not seen.
//!
//! Both are bounded LRU maps; expired entries are ignored on lookup and replaced on insert.
use std::{
    net::IpAddr,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;

/// TTLs are clamped to this range: a 0 TTL answer was still what the client connected to
/// right after, and a week-long TTL should not outlive a reassignment for that long.
const MIN_TTL: Duration = Duration::from_secs(30);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

struct Entry {
    name: String,
    expires: Instant,
}

pub struct DnsCache {
    per_process: LruCache<(u32, IpAddr), Entry>,
    host: LruCache<IpAddr, Entry>,
}

/// Where a cached name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsScope {
    Process,
    Host,
}

impl DnsCache {
    pub fn new(capacity: usize) -> DnsCache {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity >= 1");
        DnsCache {
            per_process: LruCache::new(cap),
            host: LruCache::new(cap),
        }
    }

    /// Record that `tgid` (0 if unknown) received `ip` as an answer for `name`.
    pub fn insert(&mut self, tgid: u32, ip: IpAddr, name: &str, ttl_secs: u32, now: Instant) {
        let ttl = Duration::from_secs(ttl_secs.into()).clamp(MIN_TTL, MAX_TTL);
        let expires = now + ttl;
        if tgid != 0 {
            self.per_process.put(
                (tgid, ip),
                Entry {
                    name: name.to_owned(),
                    expires,
                },
            );
        }
        self.host.put(
            ip,
            Entry {
                name: name.to_owned(),
                expires,
            },
        );
    }

    /// The name `tgid` most likely meant by `ip`, and how sure that is.
    pub fn lookup(&mut self, tgid: u32, ip: IpAddr, now: Instant) -> Option<(String, DnsScope)> {
        if let Some(e) = self.per_process.get(&(tgid, ip))
            && e.expires > now
        {
            return Some((e.name.clone(), DnsScope::Process));
        }
        if let Some(e) = self.host.get(&ip)
            && e.expires > now
        {
            return Some((e.name.clone(), DnsScope::Host));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn process_answer_beats_host_answer() {
        let mut c = DnsCache::new(16);
        let now = Instant::now();
        c.insert(0, ip("104.18.7.192"), "host-view.example", 300, now);
        c.insert(42, ip("104.18.7.192"), "api.openai.com", 300, now);
        assert_eq!(
            c.lookup(42, ip("104.18.7.192"), now),
            Some(("api.openai.com".into(), DnsScope::Process))
        );
        // Another process only gets the host-wide view (the latest answer for that address).
        assert_eq!(
            c.lookup(7, ip("104.18.7.192"), now),
            Some(("api.openai.com".into(), DnsScope::Host))
        );
    }

    #[test]
    fn entries_expire_with_their_ttl() {
        let mut c = DnsCache::new(16);
        let now = Instant::now();
        c.insert(1, ip("2606:4700::1"), "a.example", 60, now);
        assert!(
            c.lookup(1, ip("2606:4700::1"), now + Duration::from_secs(59))
                .is_some()
        );
        assert!(
            c.lookup(1, ip("2606:4700::1"), now + Duration::from_secs(61))
                .is_none()
        );
        // TTL 0 is clamped up, so a connect right after the answer is still named.
        c.insert(1, ip("1.2.3.4"), "b.example", 0, now);
        assert!(
            c.lookup(1, ip("1.2.3.4"), now + Duration::from_secs(5))
                .is_some()
        );
    }

    #[test]
    fn bounded_by_capacity() {
        let mut c = DnsCache::new(2);
        let now = Instant::now();
        for i in 0..10u8 {
            c.insert(1, IpAddr::from([10, 0, 0, i]), "x.example", 300, now);
        }
        assert_eq!(c.per_process.len(), 2);
        assert_eq!(c.host.len(), 2);
        assert!(c.lookup(1, IpAddr::from([10, 0, 0, 9]), now).is_some());
        assert!(c.lookup(1, IpAddr::from([10, 0, 0, 0]), now).is_none());
    }
}
