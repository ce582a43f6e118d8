//! From a named connection to an alert: classification against the blocklists, the alert
//! document (ECS), and dedupe.
//!
//! Classification: the destination name first (it is what the process meant), then the address.
//! An allow match on either wins over everything. Only categories whose action is `alert` or
//! `block` produce alerts.
//!
//! Dedupe: the first connection for (executable, user, destination name, rule) alerts at once;
//! repeats within the window are counted, and when the window closes one summary record carries
//! the count (`event.type: ["connection", "info"]`, `relaywatch.dedupe`), instead of one alert
//! each.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};

use crate::blocklist::{Action, Blocklists, Severity, Verdict};

/// Which field of the record matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedField {
    Domain,
    Ip,
}

/// A verdict that calls for an alert, and what it matched.
#[derive(Debug, Clone)]
pub struct Finding {
    pub verdict: Verdict,
    pub field: MatchedField,
    pub value: String,
}

/// What the lists say about a destination.
#[derive(Debug)]
pub enum Classification {
    /// A match whose category alerts (or blocks).
    Alert(Finding),
    /// An allow rule matched the name or the address (a sanctioned gateway): nothing else counts.
    Allowed,
    /// Nothing matched, or the category's action is `ignore`.
    Quiet,
}

/// Classify a destination: its name first (what the process meant), then its address; each is
/// looked up once.
pub fn classification(lists: &Blocklists, domain: Option<&str>, ip: Option<IpAddr>) -> Classification {
    let by_name = domain.and_then(|d| lists.match_name(d).map(|v| (v, MatchedField::Domain, d.to_owned())));
    let by_ip = ip.and_then(|a| lists.match_ip(a).map(|v| (v, MatchedField::Ip, a.to_string())));
    if [&by_name, &by_ip].iter().any(|m| m.as_ref().is_some_and(|(v, _, _)| v.action == Action::Allow)) {
        return Classification::Allowed;
    }
    match by_name.or(by_ip) {
        Some((verdict, field, value)) if matches!(verdict.action, Action::Alert | Action::Block) => {
            Classification::Alert(Finding { verdict, field, value })
        }
        _ => Classification::Quiet,
    }
}

/// The finding that calls for an alert, if any (see `classification`).
pub fn classify(lists: &Blocklists, domain: Option<&str>, ip: Option<IpAddr>) -> Option<Finding> {
    match classification(lists, domain, ip) {
        Classification::Alert(f) => Some(f),
        Classification::Allowed | Classification::Quiet => None,
    }
}

/// The finding for a connection to a suspected relay no list knows (discovery.rs): category
/// `ai-relay`, with the configured action for that category.
pub fn relay_config_finding(evidence: &crate::discovery::RelayEvidence, action: Action, field: MatchedField) -> Finding {
    use crate::blocklist::Category;
    Finding {
        verdict: Verdict {
            action,
            category: Category::AiRelay,
            severity: Category::AiRelay.default_severity(),
            rule: format!("relay_config:{}", evidence.host),
            file: RELAY_CONFIG_RULESET.into(),
            line: 0,
            list_version: "".into(),
            matches: Vec::new(),
        },
        field,
        value: evidence.host.clone(),
    }
}

/// `rule.ruleset` of relay-discovery alerts.
pub const RELAY_CONFIG_RULESET: &str = "relay-discovery";

/// ECS `event.severity` (a number) for a list severity.
pub fn severity_number(s: Severity) -> u64 {
    match s {
        Severity::High => 73,
        Severity::Medium => 47,
        Severity::Low => 21,
        Severity::Info => 1,
    }
}

/// Host facts every alert carries.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub id: Option<String>,
}

impl HostInfo {
    pub fn read() -> HostInfo {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default();
        let id = std::fs::read_to_string("/etc/machine-id").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        HostInfo { name, id }
    }
}

/// Turn a connection record (ECS, from `record.rs`) into an alert document.
pub fn alert_document(record: &Value, finding: &Finding, host: &HostInfo) -> Value {
    let mut doc = record.clone();
    let v = &finding.verdict;
    let category = v.category.as_str();
    doc["event"]["kind"] = json!("alert");
    // Enforcement is not built yet: a `block` category is reported (relaywatch.action), but the
    // connection went through, so the record must not claim "denied".
    doc["event"]["type"] = json!(["connection", "start"]);
    doc["event"]["action"] = json!(format!("{category}-connection"));
    doc["event"]["dataset"] = json!("relaywatch.alert");
    doc["event"]["severity"] = json!(severity_number(v.severity));
    doc["rule"] = json!({
        "name": v.rule,
        "category": category,
        "ruleset": v.file,
    });
    let (indicator_type, field) = match finding.field {
        MatchedField::Domain => ("domain-name", "destination.domain"),
        MatchedField::Ip if finding.value.contains(':') => ("ipv6-addr", "destination.ip"),
        MatchedField::Ip => ("ipv4-addr", "destination.ip"),
    };
    let mut indicator = Map::new();
    indicator.insert("type".into(), json!(indicator_type));
    match finding.field {
        MatchedField::Domain => indicator.insert("url".into(), json!({ "domain": finding.value })),
        MatchedField::Ip => indicator.insert("ip".into(), json!(finding.value)),
    };
    indicator.insert("provider".into(), json!("relaywatch"));
    doc["threat"] = json!({
        "enrichments": [{
            "indicator": indicator,
            "matched": { "atomic": finding.value, "field": field, "type": "indicator_match_rule" },
        }]
    });
    doc["host"] = json!({ "name": host.name });
    if let Some(id) = &host.id {
        doc["host"]["id"] = json!(id);
    }
    if let Some(args) = doc["process"]["args"].as_array() {
        let line: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        doc["process"]["command_line"] = json!(line.join(" "));
    }
    doc["relaywatch"]["severity"] = json!(v.severity.as_str());
    doc["relaywatch"]["action"] = json!(v.action.as_str());
    doc["relaywatch"]["blocklist"] = json!({ "file": v.file, "line": v.line, "version": v.list_version });
    doc
}

/// Dedupe key: (executable or name, user, destination name, rule).
type Key = (String, String, String, String);

struct Window {
    opened: Instant,
    repeats: u64,
    last: Value,
}

pub struct Deduper {
    window: Duration,
    open: HashMap<Key, Window>,
}

impl Deduper {
    pub fn new(window: Duration) -> Deduper {
        Deduper { window, open: HashMap::new() }
    }

    fn key(alert: &Value) -> Key {
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let process = if alert["process"]["executable"].is_string() { &alert["process"]["executable"] } else { &alert["process"]["name"] };
        let destination = if alert["destination"]["domain"].is_string() { &alert["destination"]["domain"] } else { &alert["destination"]["ip"] };
        (s(process), s(&alert["user"]["id"]), s(destination), s(&alert["rule"]["name"]))
    }

    /// Whether this alert is the first of its window (to be written now); repeats are counted.
    pub fn admit(&mut self, alert: &Value, now: Instant) -> bool {
        if self.window.is_zero() {
            return true;
        }
        let key = Deduper::key(alert);
        match self.open.get_mut(&key) {
            Some(w) => {
                w.repeats += 1;
                w.last = alert.clone();
                false
            }
            None => {
                self.open.insert(key, Window { opened: now, repeats: 0, last: alert.clone() });
                true
            }
        }
    }

    /// Close windows that are over (all of them if `all`); returns one summary per window that
    /// had repeats.
    pub fn close_due(&mut self, now: Instant, all: bool) -> Vec<Value> {
        let window = self.window;
        let due: Vec<Key> = self.open.iter().filter(|(_, w)| all || now.duration_since(w.opened) >= window).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::new();
        for key in due {
            let Some(w) = self.open.remove(&key) else { continue };
            if w.repeats == 0 {
                continue;
            }
            let mut summary = w.last;
            summary["event"]["type"] = json!(["connection", "info"]);
            summary["event"]["action"] = json!(format!("{}-repeated", summary["rule"]["category"].as_str().unwrap_or("alert")));
            summary["relaywatch"]["dedupe"] = json!({
                "repeats": w.repeats,
                "window_seconds": window.as_secs(),
            });
            out.push(summary);
        }
        out
    }
}

/// Blocklists shared with the reload paths (SIGHUP, `relaywatch reload`).
pub type SharedLists = Arc<std::sync::RwLock<Arc<Blocklists>>>;

/// Expand `[blocklists] files`: plain paths, and `*` in the file-name part
/// (`/etc/relaywatch/blocklist.d/*.list`). A pattern that matches nothing is fine (an empty
/// directory); a plain path that does not exist is an error later, when it is read.
pub fn expand_list_files(patterns: &[String]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for pattern in patterns {
        let path = std::path::Path::new(pattern);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((prefix, suffix)) = name.split_once('*') else {
            out.push(path.to_path_buf());
            continue;
        };
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let mut matched: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix))
            })
            .collect();
        matched.sort();
        out.extend(matched);
    }
    out
}

/// Load the lists a configuration names, plus the feeds' cached lists, with its per-category
/// actions. Every list error is reported (`FILE:LINE: reason`, one per line).
pub fn load_lists(config: &crate::config::Blocklists, feeds: &[crate::blocklist::ListText]) -> Result<Blocklists, String> {
    use crate::blocklist::{Category, ListFile};
    let files: Vec<ListFile> = expand_list_files(&config.files).into_iter().map(|path| ListFile { path, category: None }).collect();
    let lists = Blocklists::load_all(&files, feeds, config.builtin)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))?;
    let a = &config.actions;
    Ok(lists
        .with_action(Category::AiRelay, action(a.ai_relay))
        .with_action(Category::AiProvider, action(a.ai_provider))
        .with_action(Category::AiAggregator, action(a.ai_aggregator))
        .with_action(Category::AiTool, action(a.ai_tool))
        .with_action(Category::AiDomestic, action(a.ai_domestic)))
}

/// The engine's action for a configured one.
pub fn action(configured: crate::config::Action) -> Action {
    use crate::config::Action as Configured;
    match configured {
        Configured::Ignore => Action::Ignore,
        Configured::Alert => Action::Alert,
        Configured::Block => Action::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(exe: &str, domain: &str) -> Value {
        json!({
            "event": {"kind": "event", "type": ["connection", "start"]},
            "destination": {"domain": domain, "ip": "104.18.7.192", "port": 443},
            "process": {"pid": 42, "name": "curl", "executable": exe, "args": ["curl", "-s", "https://x/"]},
            "user": {"id": "1000", "name": "alice"},
            "relaywatch": {"name_source": "sni"},
        })
    }

    #[test]
    fn builtin_lists_classify_providers_and_leave_others_alone() {
        let lists = Blocklists::builtin();
        let f = classify(&lists, Some("api.openai.com"), None).expect("openai is an AI provider");
        assert_eq!(f.verdict.category.as_str(), "ai-provider");
        assert_eq!(f.field, MatchedField::Domain);
        assert!(classify(&lists, Some("example.com"), "93.184.216.34".parse().ok()).is_none());
        assert!(classify(&lists, Some("gemini.com"), None).is_none(), "gemini.com is an exchange");
        assert!(classify(&lists, None, None).is_none());
    }

    #[test]
    fn alert_document_has_the_ecs_alert_fields() {
        let lists = Blocklists::builtin();
        let f = classify(&lists, Some("api.openai.com"), None).unwrap();
        let host = HostInfo { name: "build-7".into(), id: Some("abc".into()) };
        let a = alert_document(&record("/usr/bin/curl", "api.openai.com"), &f, &host);
        assert_eq!(a["event"]["kind"], "alert");
        assert_eq!(a["event"]["type"], json!(["connection", "start"]));
        assert_eq!(a["event"]["severity"], 73);
        assert_eq!(a["rule"]["category"], "ai-provider");
        assert!(a["rule"]["name"].as_str().is_some_and(|r| r.contains("openai")), "{a}");
        assert_eq!(a["threat"]["enrichments"][0]["matched"]["field"], "destination.domain");
        assert_eq!(a["threat"]["enrichments"][0]["matched"]["atomic"], "api.openai.com");
        assert_eq!(a["threat"]["enrichments"][0]["indicator"]["type"], "domain-name");
        assert_eq!(a["host"], json!({"name": "build-7", "id": "abc"}));
        assert_eq!(a["process"]["command_line"], "curl -s https://x/");
        assert!(a["relaywatch"]["blocklist"]["line"].as_u64().is_some_and(|l| l > 0));
    }

    #[test]
    fn list_file_patterns_expand_in_order() {
        let dir = std::env::temp_dir().join(format!("relaywatch-expand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["b.list", "a.list", "notes.txt"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let pattern = format!("{}/*.list", dir.display());
        let plain = "/etc/relaywatch/extra.list".to_string();
        let got = expand_list_files(&[pattern, plain.clone()]);
        assert_eq!(got, vec![dir.join("a.list"), dir.join("b.list"), std::path::PathBuf::from(plain)]);
        assert!(expand_list_files(&["/nonexistent-dir/*.list".into()]).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configured_actions_apply() {
        let mut cfg = crate::config::Blocklists { files: vec![], ..Default::default() };
        cfg.actions.ai_provider = crate::config::Action::Ignore;
        let lists = load_lists(&cfg, &[]).unwrap();
        assert!(classify(&lists, Some("api.openai.com"), None).is_none(), "ignored category");
        cfg.actions.ai_provider = crate::config::Action::Block;
        let lists = load_lists(&cfg, &[]).unwrap();
        assert_eq!(classify(&lists, Some("api.openai.com"), None).unwrap().verdict.action, Action::Block);
        // The per-category action is readable from the lists (relay discovery uses ai-relay's).
        cfg.actions.ai_relay = crate::config::Action::Ignore;
        let lists = load_lists(&cfg, &[]).unwrap();
        assert_eq!(lists.category_action(crate::blocklist::Category::AiRelay), Some(Action::Ignore));
        assert_eq!(lists.category_action(crate::blocklist::Category::AiProvider), Some(Action::Block));
    }

    #[test]
    fn dedupe_counts_repeats_and_summarises_once() {
        let mut d = Deduper::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut a = record("/usr/bin/curl", "api.openai.com");
        a["rule"] = json!({"name": "domain:openai.com", "category": "ai-provider"});
        assert!(d.admit(&a, t0));
        assert!(!d.admit(&a, t0 + Duration::from_secs(1)));
        assert!(!d.admit(&a, t0 + Duration::from_secs(2)));
        let mut other = a.clone();
        other["process"]["executable"] = json!("/usr/bin/python3.11");
        assert!(d.admit(&other, t0 + Duration::from_secs(2)), "another executable alerts on its own");
        assert!(d.close_due(t0 + Duration::from_secs(5), false).is_empty());
        let summaries = d.close_due(t0 + Duration::from_secs(11), false);
        assert_eq!(summaries.len(), 1, "only the window with repeats: {summaries:?}");
        assert_eq!(summaries[0]["relaywatch"]["dedupe"]["repeats"], 2);
        assert_eq!(summaries[0]["event"]["type"], json!(["connection", "info"]));
        assert!(d.admit(&a, t0 + Duration::from_secs(12)), "a new window alerts again");
    }
}
