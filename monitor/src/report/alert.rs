//! From a connection record and a finding to an alert document (ECS).
use super::{
    host::HostInfo,
    record::{BlocklistSource, Enrichment, Indicator, IndicatorUrl, Matched, Record, Rule, Threat},
};
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

/// The list severity an ECS `event.severity` number stands for: the inverse of
/// `severity_number`, by range (a record from another writer may carry any number).
pub fn severity_of_number(n: u64) -> Severity {
    match n {
        0..=20 => Severity::Info,
        21..=46 => Severity::Low,
        47..=72 => Severity::Medium,
        _ => Severity::High,
    }
}

/// Turn a connection record into an alert.
pub fn alert_document(record: &Record, finding: &Finding, host: &HostInfo) -> Record {
    let mut alert = record.clone();
    let v = &finding.verdict;
    let category = v.category.as_str();
    alert.event.kind = "alert".into();
    // Enforcement is not built yet: a `block` category is reported (relaywatch.action), but the
    // connection went through, so the record must not claim "denied".
    alert.event.kind_type = vec!["connection".into(), "start".into()];
    alert.event.action = format!("{category}-connection");
    alert.event.dataset = "relaywatch.alert".into();
    alert.event.severity = Some(severity_number(v.severity));
    alert.rule = Some(Rule {
        name: v.rule.clone(),
        category: category.into(),
        ruleset: v.file.to_string(),
    });
    let (indicator_type, field) = match finding.field {
        MatchedField::Domain => ("domain-name", "destination.domain"),
        MatchedField::Ip if finding.value.contains(':') => ("ipv6-addr", "destination.ip"),
        MatchedField::Ip => ("ipv4-addr", "destination.ip"),
    };
    let (url, ip) = match finding.field {
        MatchedField::Domain => (
            Some(IndicatorUrl {
                domain: finding.value.clone(),
            }),
            None,
        ),
        MatchedField::Ip => (None, Some(finding.value.clone())),
    };
    alert.threat = Some(Threat {
        enrichments: vec![Enrichment {
            indicator: Indicator {
                kind: indicator_type.into(),
                url,
                ip,
                provider: "relaywatch".into(),
            },
            matched: Matched {
                atomic: finding.value.clone(),
                field: field.into(),
                kind: "indicator_match_rule".into(),
            },
        }],
    });
    alert.host = Some(host.to_host());
    if let Some(args) = &alert.process.args {
        alert.process.command_line = Some(args.join(" "));
    }
    alert.relaywatch.severity = Some(v.severity.as_str().into());
    alert.relaywatch.action = Some(v.action.as_str().into());
    alert.relaywatch.blocklist = Some(BlocklistSource {
        file: v.file.to_string(),
        line: u64::from(v.line),
        version: v.list_version.to_string(),
    });
    alert
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        intel::{blocklist::Blocklists, classify::classify},
        report::record::sample_record as record,
    };

    #[test]
    fn alert_document_has_the_ecs_alert_fields() {
        let lists = Blocklists::builtin();
        let f = classify(&lists, Some("api.openai.com"), None).unwrap();
        let host = HostInfo {
            name: "build-7".into(),
            id: Some("abc".into()),
        };
        let a: Value =
            alert_document(&record("/usr/bin/curl", "api.openai.com"), &f, &host).to_ecs();
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
