//! Blocklist engine benchmarks: loading 1,000,000 generated domain rules (time and peak memory),
//! name lookups against them, and address lookups against 100,000 CIDRs.
//!
//! Run with `cargo bench -p monitor --bench blocklist`. The load figures are printed as
//! `load:` lines (one cold load, measured before anything else grows the process), the lookup
//! medians by criterion.
use std::{
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use monitor::intel::blocklist::Blocklists;

const NAME_RULES: usize = 1_000_000;
const V4_CIDRS: usize = 90_000;
const V6_CIDRS: usize = 10_000;

/// Deterministic pseudo-random numbers (xorshift64*), so every run measures the same lists.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "api", "relay", "gpt", "claude", "cloud", "proxy", "code", "router", "chat", "model", "token",
    "hub",
];
const TLDS: &[&str] = &[
    "com", "net", "org", "ai", "cc", "top", "xyz", "dev", "io", "cn", "vip", "site",
];

fn rule_name(i: usize, rng: &mut Rng) -> String {
    let r = rng.next() as usize;
    let word = WORDS[r % WORDS.len()];
    let tld = TLDS[(r >> 8) % TLDS.len()];
    match (r >> 16) % 3 {
        0 => format!("{word}{i}.{tld}"),
        1 => format!("{word}-{i:x}.example{}.{tld}", (r >> 20) % 1000),
        _ => format!("node{i}.{word}.{tld}"),
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of this thread: the machine may be shared, and wall time then says little.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn write_list(name: &str, header: &str, body: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("relaywatch-bench-{}-{name}", std::process::id()));
    std::fs::write(&path, format!("{header}\n{body}")).expect("write benchmark list");
    path
}

fn name_list() -> (PathBuf, Vec<String>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut body = String::with_capacity(NAME_RULES * 28);
    let mut queries = Vec::new();
    for i in 0..NAME_RULES {
        let name = rule_name(i, &mut rng);
        match i % 10 {
            0 => writeln!(body, "full:{name}"),
            _ => writeln!(body, "domain:{name}"),
        }
        .expect("write to String");
        if i % 1000 == 1 {
            // A hit on a subdomain, and a miss that shares most labels with a rule.
            queries.push(format!("edge.v1.{name}"));
            queries.push(format!("edge.v1.x{name}"));
        }
    }
    (
        write_list("names", "# relaywatch: category=ai-relay", &body),
        queries,
    )
}

/// 100,000 distinct prefixes, /16 to /32 for IPv4 and /24 to /64 for IPv6 (the sizes real
/// address lists hold), and queries: one address inside each prefix, and as many random ones.
fn cidr_list() -> (PathBuf, Vec<IpAddr>) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut body = String::new();
    let mut queries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < V4_CIDRS {
        let len = 16 + (rng.next() % 17) as u32;
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        let addr = (rng.next() as u32) & mask;
        if seen.insert((u128::from(addr), len)) {
            writeln!(body, "{}/{len}", Ipv4Addr::from(addr)).expect("write to String");
            queries.push(IpAddr::V4(Ipv4Addr::from(
                addr | (rng.next() as u32 & !mask),
            )));
        }
    }
    while seen.len() < V4_CIDRS + V6_CIDRS {
        let len = 24 + (rng.next() % 41) as u32;
        let addr = (u128::from(rng.next()) << 64) & (u128::MAX << (128 - len));
        if seen.insert((addr, len + 1000)) {
            writeln!(body, "{}/{len}", Ipv6Addr::from(addr)).expect("write to String");
            queries.push(IpAddr::V6(Ipv6Addr::from(addr | 1)));
        }
    }
    for _ in 0..queries.len() {
        queries.push(IpAddr::V4(Ipv4Addr::from(rng.next() as u32)));
    }
    (
        write_list("cidrs", "# relaywatch: category=ai-relay", &body),
        queries,
    )
}

fn bench(c: &mut Criterion) {
    let (names_path, name_queries) = name_list();
    let (cidr_path, ip_queries) = cidr_list();

    // One cold load first, so the peak-RSS delta is this load's and nothing else's.
    let rss_before = status_kib("VmRSS:");
    let (start, cpu_start) = (Instant::now(), thread_cpu());
    let names =
        Blocklists::load(std::slice::from_ref(&names_path), false).expect("generated list loads");
    let (elapsed, cpu) = (start.elapsed(), thread_cpu() - cpu_start);
    let (hwm, rss_after) = (status_kib("VmHWM:"), status_kib("VmRSS:"));
    println!(
        "load: {NAME_RULES} domain rules in {:.3} s wall, {:.3} s CPU; peak RSS +{} MiB (VmHWM {} MiB - VmRSS before {} MiB), retained +{} MiB, index heap {} MiB",
        elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        hwm.saturating_sub(rss_before) / 1024,
        hwm / 1024,
        rss_before / 1024,
        rss_after.saturating_sub(rss_before) / 1024,
        names.heap_bytes() / (1 << 20),
    );
    let start = Instant::now();
    let cidrs =
        Blocklists::load(std::slice::from_ref(&cidr_path), false).expect("generated list loads");
    println!(
        "load: {} CIDRs in {:.3} s, index heap {} MiB",
        V4_CIDRS + V6_CIDRS,
        start.elapsed().as_secs_f64(),
        cidrs.heap_bytes() / (1 << 20)
    );
    let hits = name_queries
        .iter()
        .filter(|q| names.match_name(q).is_some())
        .count();
    assert_eq!(hits * 2, name_queries.len(), "every other query is a hit");

    // Per-lookup CPU time over many passes: on a shared machine criterion's wall-clock figures
    // include time this thread was not running.
    let per_lookup = |passes: usize, n: usize, f: &mut dyn FnMut()| {
        let cpu = thread_cpu();
        for _ in 0..passes {
            f();
        }
        (thread_cpu() - cpu).as_nanos() as f64 / (passes * n) as f64
    };
    let name_ns = per_lookup(500, name_queries.len(), &mut || {
        for q in &name_queries {
            black_box(names.match_name(q));
        }
    });
    let ip_ns = per_lookup(20, ip_queries.len(), &mut || {
        for q in &ip_queries {
            black_box(cidrs.match_ip(*q));
        }
    });
    println!(
        "cpu: match_name {name_ns:.0} ns, match_ip {ip_ns:.0} ns per lookup (mean CPU time, half hits)"
    );
    let (ip_hits, ip_misses): (Vec<IpAddr>, Vec<IpAddr>) = ip_queries
        .iter()
        .partition(|q| cidrs.match_ip(**q).is_some());
    let hit_ns = per_lookup(20, ip_hits.len(), &mut || {
        for q in &ip_hits {
            black_box(cidrs.match_ip(*q));
        }
    });
    let miss_ns = per_lookup(20, ip_misses.len(), &mut || {
        for q in &ip_misses {
            black_box(cidrs.match_ip(*q));
        }
    });
    println!(
        "cpu: match_ip hits {hit_ns:.0} ns ({}), misses {miss_ns:.0} ns ({})",
        ip_hits.len(),
        ip_misses.len()
    );

    let mut group = c.benchmark_group("blocklist");
    let mut i = 0;
    group.bench_function("match_name, 1M domain rules (half hits)", |b| {
        b.iter(|| {
            i = (i + 1) % name_queries.len();
            black_box(names.match_name(black_box(&name_queries[i])))
        })
    });
    let mut i = 0;
    group.bench_function("match_ip, 100k CIDRs (half hits)", |b| {
        b.iter(|| {
            i = (i + 1) % ip_queries.len();
            black_box(cidrs.match_ip(black_box(ip_queries[i])))
        })
    });
    let builtin = Blocklists::builtin();
    group.bench_function("match_name, built-in lists (api.openai.com)", |b| {
        b.iter(|| black_box(builtin.match_name(black_box("api.openai.com"))))
    });
    group.sample_size(10);
    group.bench_function("load, 1M domain rules", |b| {
        b.iter(|| {
            black_box(
                Blocklists::load(std::slice::from_ref(&names_path), false)
                    .map(|l| l.heap_bytes())
                    .ok(),
            )
        })
    });
    group.finish();
    let _ = std::fs::remove_file(names_path);
    let _ = std::fs::remove_file(cidr_path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
