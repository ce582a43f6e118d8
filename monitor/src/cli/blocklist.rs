//! `relaywatch blocklist check`, `relaywatch blocklist test` and `relaywatch blocklist resolve`.
//!
//! These read list files directly: they are offline tools for list authors and for checking what
//! a name would match, not queries of the running daemon. `resolve` asks DNS (the nameserver
//! given, or the system's) once, as the daemon's resolving task would.
use std::{net::IpAddr, process::ExitCode};

use serde_json::{Value, json};

use super::args::{
    BlocklistCheckArgs, BlocklistCommand, BlocklistResolveArgs, BlocklistTestArgs, ListSelection,
};
use crate::intel::blocklist::{
    Blocklists, Category, ListFile, RuleMatch, Verdict, name::canonical_rule_name,
};

const EXIT_NO_MATCH: u8 = 1;
const EXIT_USAGE: u8 = 2;

pub fn run(command: &BlocklistCommand) -> ExitCode {
    match command {
        BlocklistCommand::Check(args) => check(args),
        BlocklistCommand::Test(args) => test(args),
        BlocklistCommand::Resolve(args) => resolve(args),
        BlocklistCommand::List(args) => super::query::blocklist_list(args.clone()),
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
        match Blocklists::load_files(
            &[ListFile {
                path: path.clone(),
                category,
            }],
            false,
        ) {
            Ok(lists) => {
                for list in lists.lists() {
                    let kinds: Vec<String> = list
                        .rules_by_kind
                        .iter()
                        .map(|(k, n)| format!("{} {n}", k.as_str()))
                        .collect();
                    println!(
                        "{}: ok, {} rules ({}); category={} severity={} action={} version={}",
                        path.display(),
                        list.rules,
                        if kinds.is_empty() {
                            "none".to_string()
                        } else {
                            kinds.join(", ")
                        },
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
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test(args: &BlocklistTestArgs) -> ExitCode {
    let target = args.target.trim();
    let ip = target.parse::<IpAddr>().ok();
    if ip.is_none()
        && let Err(why) = canonical_rule_name(target)
    {
        return usage_error(&format!(
            "'{target}' is neither an IP address nor a domain name: {why}"
        ));
    }
    let lists = match load_selected(&args.lists) {
        Ok(lists) => lists,
        Err(code) => return code,
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
    if verdict.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO_MATCH)
    }
}

/// The built-in lists (unless `--no-builtin`) and the `--list` files; a bad `--category` or list
/// errors (one per line) are printed and give the usage exit status.
fn load_selected(selection: &ListSelection) -> Result<Blocklists, ExitCode> {
    let category = fallback_category(selection.category.as_deref()).map_err(|e| usage_error(&e))?;
    let files: Vec<ListFile> = selection
        .files
        .iter()
        .map(|p| ListFile {
            path: p.clone(),
            category,
        })
        .collect();
    Blocklists::load_files(&files, !selection.no_builtin).map_err(|errors| {
        for e in errors {
            eprintln!("{e}");
        }
        ExitCode::from(EXIT_USAGE)
    })
}

fn resolve(args: &BlocklistResolveArgs) -> ExitCode {
    use crate::intel::resolve::{ListResolver, MAX_NAMES_PER_ROUND, ResolvedNames, resolve_round};
    let lists = match load_selected(&args.lists) {
        Ok(lists) => lists,
        Err(code) => return code,
    };
    let names = lists.resolvable_names();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relaywatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(async {
        let resolver = ListResolver::new(args.nameserver)?;
        Ok::<_, String>(resolve_round(&resolver, &names, &ResolvedNames::new()).await)
    }) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("relaywatch: {e}");
            return ExitCode::FAILURE;
        }
    };
    for r in &report.resolutions {
        for ip in &r.addresses {
            if args.json {
                println!(
                    "{}",
                    json!({ "ip": ip, "name": r.name, "category": r.category, "ttl": r.ttl.as_secs() })
                );
            } else {
                println!("{ip} {} {} {}", r.name, r.category, r.ttl.as_secs());
            }
        }
    }
    eprintln!(
        "{} names: {} resolved to {} addresses, {} not found, {} timed out, {} failed{}",
        names.len(),
        report.resolutions.len(),
        report.addresses(),
        report.not_found,
        report.timed_out,
        report.failed,
        if report.skipped > 0 {
            format!(
                ", {} skipped (at most {MAX_NAMES_PER_ROUND} per round)",
                report.skipped
            )
        } else {
            String::new()
        }
    );
    if names.is_empty() || !report.resolutions.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO_MATCH)
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("relaywatch: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// The match that decided the verdict.
fn decisive(verdict: &Verdict) -> Option<&RuleMatch> {
    verdict
        .matches
        .iter()
        .find(|m| m.rule == verdict.rule && m.file == verdict.file && m.line == verdict.line)
}

fn print_verdict(target: &str, verdict: Option<&Verdict>) {
    let Some(v) = verdict else {
        println!("{target}: no match");
        return;
    };
    println!(
        "{target}: {} (severity {}, action {}) by {} at {}:{}",
        v.category, v.severity, v.action, v.rule, v.file, v.line
    );
    for m in &v.matches {
        println!(
            "  {:<40} {:<13} {:<6} {:<6} {}:{} [{}]",
            m.rule,
            m.category.as_str(),
            m.severity.as_str(),
            m.action.as_str(),
            m.file,
            m.line,
            m.list_version
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
    let list = decisive(v).map(|m| &*m.list);
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
