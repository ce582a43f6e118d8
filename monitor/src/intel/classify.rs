//! Classification of a named destination against the blocklists: the destination name first
//! (it is what the process meant), then the address. An allow match on either wins over
//! everything. Only categories whose action is `alert` or `block` produce findings. Also the
//! loading of the configured lists with their per-category actions.
use std::{net::IpAddr, sync::Arc};

use crate::{
    config,
    intel::{
        blocklist::{Action, Blocklists, Category, ListFile, ListText, Verdict},
        discovery::RelayEvidence,
    },
};

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
pub fn classification(
    lists: &Blocklists,
    domain: Option<&str>,
    ip: Option<IpAddr>,
) -> Classification {
    let by_name = domain.and_then(|d| {
        lists
            .match_name(d)
            .map(|v| (v, MatchedField::Domain, d.to_owned()))
    });
    let by_ip = ip.and_then(|a| {
        lists
            .match_ip(a)
            .map(|v| (v, MatchedField::Ip, a.to_string()))
    });
    if [&by_name, &by_ip].iter().any(|m| {
        m.as_ref()
            .is_some_and(|(v, _, _)| v.action == Action::Allow)
    }) {
        return Classification::Allowed;
    }
    match by_name.or(by_ip) {
        Some((verdict, field, value))
            if matches!(verdict.action, Action::Alert | Action::Block) =>
        {
            Classification::Alert(Finding {
                verdict,
                field,
                value,
            })
        }
        _ => Classification::Quiet,
    }
}

#[cfg(test)]
/// The finding that calls for an alert, if any (see `classification`).
pub fn classify(lists: &Blocklists, domain: Option<&str>, ip: Option<IpAddr>) -> Option<Finding> {
    match classification(lists, domain, ip) {
        Classification::Alert(f) => Some(f),
        Classification::Allowed | Classification::Quiet => None,
    }
}

/// The finding for a connection to a suspected relay no list knows (discovery.rs): category
/// `ai-relay`, with the configured action for that category.
pub fn relay_config_finding(
    evidence: &RelayEvidence,
    action: Action,
    field: MatchedField,
) -> Finding {
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

/// `rule.name` of an alert for a relay recognised by the API requests sent to it.
pub const API_SHAPE_RULE: &str = "api-shape";

/// The finding for a connection to `host`, a relay recognised by the AI API requests sent to
/// it (this one, or an earlier one): ai-relay, severity high.
pub fn api_shape_finding(host: &str, action: Action) -> Finding {
    Finding {
        verdict: Verdict {
            action,
            category: Category::AiRelay,
            severity: crate::intel::blocklist::Severity::High,
            rule: API_SHAPE_RULE.into(),
            file: RELAY_CONFIG_RULESET.into(),
            line: 0,
            list_version: "".into(),
            matches: Vec::new(),
        },
        field: MatchedField::Domain,
        value: host.to_string(),
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
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.len() >= prefix.len() + suffix.len()
                        && n.starts_with(prefix)
                        && n.ends_with(suffix)
                })
            })
            .collect();
        matched.sort();
        out.extend(matched);
    }
    out
}

/// Load the lists a configuration names, plus the feeds' cached lists, with its per-category
/// actions. Every list error is reported (`FILE:LINE: reason`, one per line).
pub fn load_lists(config: &config::Blocklists, feeds: &[ListText]) -> Result<Blocklists, String> {
    let files: Vec<ListFile> = expand_list_files(&config.files)
        .into_iter()
        .map(|path| ListFile {
            path,
            category: None,
        })
        .collect();
    let lists = Blocklists::load_all(&files, feeds, config.builtin).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let a = &config.actions;
    Ok(lists
        .with_action(Category::AiRelay, action(a.ai_relay))
        .with_action(Category::AiProvider, action(a.ai_provider))
        .with_action(Category::AiAggregator, action(a.ai_aggregator))
        .with_action(Category::AiTool, action(a.ai_tool))
        .with_action(Category::AiDomestic, action(a.ai_domestic)))
}

/// The engine's action for a configured one.
pub fn action(configured: config::Action) -> Action {
    use config::Action as Configured;
    match configured {
        Configured::Ignore => Action::Ignore,
        Configured::Alert => Action::Alert,
        Configured::Block => Action::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_lists_classify_providers_and_leave_others_alone() {
        let lists = Blocklists::builtin();
        let f = classify(&lists, Some("api.openai.com"), None).expect("openai is an AI provider");
        assert_eq!(f.verdict.category.as_str(), "ai-provider");
        assert_eq!(f.field, MatchedField::Domain);
        assert!(classify(&lists, Some("example.com"), "93.184.216.34".parse().ok()).is_none());
        assert!(
            classify(&lists, Some("gemini.com"), None).is_none(),
            "gemini.com is an exchange"
        );
        assert!(classify(&lists, None, None).is_none());
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
        assert_eq!(
            got,
            vec![
                dir.join("a.list"),
                dir.join("b.list"),
                std::path::PathBuf::from(plain)
            ]
        );
        assert!(expand_list_files(&["/nonexistent-dir/*.list".into()]).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configured_actions_apply() {
        let mut cfg = crate::config::Blocklists {
            files: vec![],
            ..Default::default()
        };
        cfg.actions.ai_provider = crate::config::Action::Ignore;
        let lists = load_lists(&cfg, &[]).unwrap();
        assert!(
            classify(&lists, Some("api.openai.com"), None).is_none(),
            "ignored category"
        );
        cfg.actions.ai_provider = crate::config::Action::Block;
        let lists = load_lists(&cfg, &[]).unwrap();
        assert_eq!(
            classify(&lists, Some("api.openai.com"), None)
                .unwrap()
                .verdict
                .action,
            Action::Block
        );
        // The per-category action is readable from the lists (relay discovery uses ai-relay's).
        cfg.actions.ai_relay = crate::config::Action::Ignore;
        let lists = load_lists(&cfg, &[]).unwrap();
        assert_eq!(
            lists.category_action(crate::intel::blocklist::Category::AiRelay),
            Some(Action::Ignore)
        );
        assert_eq!(
            lists.category_action(crate::intel::blocklist::Category::AiProvider),
            Some(Action::Block)
        );
    }
}
