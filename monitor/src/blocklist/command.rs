//! `relaywatch blocklist check` and `relaywatch blocklist test`.
//!
//! These read list files directly: they are offline tools for list authors and for checking what
//! a name would match, not queries of the running daemon.
use std::{net::IpAddr, process::ExitCode};

use serde_json::{Value, json};

use super::{Blocklists, Category, ListFile, RuleMatch, Verdict, name::canonical_rule_name};
use crate::cli::{BlocklistCheckArgs, BlocklistCommand, BlocklistTestArgs};

const EXIT_NO_MATCH: u8 = 1;
const EXIT_USAGE: u8 = 2;

pub fn run(command: &BlocklistCommand) -> ExitCode {
    match command {
        BlocklistCommand::Check(args) => check(args),
        BlocklistCommand::Test(args) => test(args),
    }
}

fn fallback_category(arg: Option<&str>) -> Result<Option<Category>, String> {
    arg.map(str::parse::<Category>).transpose()
}

fn check(args: &BlocklistCheckArgs) -> ExitCode {
    let category = match fallback_category(args.category.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let mut failed = false;
    for path in &args.files {
        match Blocklists::load_files(&[ListFile { path: path.clone(), category }], false) {
            Ok(lists) => {
                for list in lists.lists() {
                    let kinds: Vec<String> = list.rules_by_kind.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
                    println!(
                        "{}: ok, {} rules ({}); category={} severity={} action={} version={}",
                        path.display(),
                        list.rules,
                        if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") },
                        list.category,
                        list.severity,
                        list.action,
                        list.version
                    );
                }
            }
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn test(args: &BlocklistTestArgs) -> ExitCode {
    let category = match fallback_category(args.category.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let target = args.target.trim();
    let ip = target.parse::<IpAddr>().ok();
    if ip.is_none()
        && let Err(why) = canonical_rule_name(target)
    {
        return usage_error(&format!("'{target}' is neither an IP address nor a domain name: {why}"));
    }
    let files: Vec<ListFile> = args.lists.iter().map(|p| ListFile { path: p.clone(), category }).collect();
    let lists = match Blocklists::load_files(&files, !args.no_builtin) {
        Ok(lists) => lists,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let verdict = match ip {
        Some(ip) => lists.match_ip(ip),
        None => lists.match_name(target),
    };
    if args.json {
        println!("{}", verdict_json(target, verdict.as_ref()));
    } else {
        print_verdict(target, verdict.as_ref());
    }
    if verdict.is_some() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NO_MATCH) }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("relaywatch: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// The match that decided the verdict.
fn decisive(verdict: &Verdict) -> Option<&RuleMatch> {
    verdict.matches.iter().find(|m| m.rule == verdict.rule && m.file == verdict.file && m.line == verdict.line)
}

fn print_verdict(target: &str, verdict: Option<&Verdict>) {
    let Some(v) = verdict else {
        println!("{target}: no match");
        return;
    };
    println!("{target}: {} (severity {}, action {}) by {} at {}:{}", v.category, v.severity, v.action, v.rule, v.file, v.line);
    for m in &v.matches {
        println!(
            "  {:<40} {:<13} {:<6} {:<6} {}:{} [{}]",
            m.rule, m.category.as_str(), m.severity.as_str(), m.action.as_str(), m.file, m.line, m.list_version
        );
    }
}

pub fn verdict_json(target: &str, verdict: Option<&Verdict>) -> Value {
    let Some(v) = verdict else {
        return json!({
            "target": target, "matched": false, "category": null, "severity": null, "action": null,
            "rule": null, "source": null, "matches": [],
        });
    };
    let list = decisive(v).map(|m| m.list.as_str());
    json!({
        "target": target,
        "matched": true,
        "category": v.category,
        "severity": v.severity,
        "action": v.action,
        "rule": v.rule,
        "source": {
            "location": format!("{}:{}", v.file, v.line),
            "file": v.file,
            "line": v.line,
            "list": list,
            "version": v.list_version,
        },
        "matches": v.matches,
    })
}
