//! From a connection record and a finding to an alert document (ECS).
use serde_json::{Map, Value, json};

use super::host::HostInfo;
use crate::intel::{
    blocklist::Severity,
    classify::{Finding, MatchedField},
};

/// ECS `event.severity` (a number) for a list severity.
pub fn severity_number(s: Severity) -> u64 {
    match s {
        Severity::High => 73,
        Severity::Medium => 47,
        Severity::Low => 21,
        Severity::Info => 1,
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
    doc["relaywatch"]["blocklist"] =
        json!({ "file": v.file, "line": v.line, "version": v.list_version });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::{blocklist::Blocklists, classify::classify};

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
    fn alert_document_has_the_ecs_alert_fields() {
        let lists = Blocklists::builtin();
        let f = classify(&lists, Some("api.openai.com"), None).unwrap();
        let host = HostInfo {
            name: "build-7".into(),
            id: Some("abc".into()),
        };
        let a = alert_document(&record("/usr/bin/curl", "api.openai.com"), &f, &host);
        assert_eq!(a["event"]["kind"], "alert");
        assert_eq!(a["event"]["type"], json!(["connection", "start"]));
        assert_eq!(a["event"]["severity"], 73);
        assert_eq!(a["rule"]["category"], "ai-provider");
        assert!(
            a["rule"]["name"]
                .as_str()
                .is_some_and(|r| r.contains("openai")),
            "{a}"
        );
        assert_eq!(
            a["threat"]["enrichments"][0]["matched"]["field"],
            "destination.domain"
        );
        assert_eq!(
            a["threat"]["enrichments"][0]["matched"]["atomic"],
            "api.openai.com"
        );
        assert_eq!(
            a["threat"]["enrichments"][0]["indicator"]["type"],
            "domain-name"
        );
        assert_eq!(a["host"], json!({"name": "build-7", "id": "abc"}));
        assert_eq!(a["process"]["command_line"], "curl -s https://x/");
        assert!(
            a["relaywatch"]["blocklist"]["line"]
                .as_u64()
                .is_some_and(|l| l > 0)
        );
    }
}
