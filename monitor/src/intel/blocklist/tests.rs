//! Engine tests: lists written to a temporary directory, loaded the way the daemon loads them.
use std::path::Path;

use super::*;
use crate::testutil::TempDir;

fn load_one(text: &str) -> Blocklists {
    let dir = TempDir::new("blocklist");
    let p = dir.write("list", text);
    Blocklists::load(&[p], false).unwrap_or_else(|e| panic!("{e:?}"))
}

fn errors_of(dir: &TempDir, name: &str, text: &str) -> Vec<String> {
    let p = dir.write(name, text);
    match Blocklists::load(&[p], false) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn rule_of(lists: &Blocklists, name: &str) -> Option<String> {
    lists.match_name(name).map(|v| v.rule)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const RELAY: &str = "# relaywatch: category=ai-relay\n";

#[test]
fn label_boundaries() {
    let l = load_one(&format!("{RELAY}openai.com\n"));
    assert_eq!(rule_of(&l, "openai.com").as_deref(), Some("openai.com"));
    assert!(l.match_name("api.openai.com").is_some());
    assert!(l.match_name("a.b.api.openai.com").is_some());
    assert!(l.match_name("notopenai.com").is_none());
    assert!(l.match_name("openai.com.evil.example").is_none());
    assert!(l.match_name("com").is_none());
    assert!(l.match_name("").is_none());
}

#[test]
fn full_is_exact_only() {
    let l = load_one(&format!("{RELAY}full:ai.google.dev\n"));
    assert!(l.match_name("ai.google.dev").is_some());
    assert!(l.match_name("x.ai.google.dev").is_none());
    assert!(l.match_name("google.dev").is_none());
}

#[test]
fn case_trailing_dot_idn() {
    let l = load_one(&format!("{RELAY}domain:Bücher.Example\nfull:例え.jp\n"));
    assert!(l.match_name("API.OPENAI.COM").is_none());
    assert!(l.match_name("xn--bcher-kva.example").is_some());
    assert!(l.match_name("shop.XN--BCHER-KVA.example.").is_some());
    assert!(l.match_name("shop.bücher.example").is_some());
    assert!(l.match_name("xn--r8jz45g.jp.").is_some());
    assert!(l.match_name("a.xn--r8jz45g.jp").is_none());
    let l = load_one(&format!("{RELAY}OpenAI.com.\n"));
    assert!(l.match_name("API.OpenAI.Com.").is_some());
}

#[test]
fn keyword_and_regexp() {
    let l = load_one(&format!(
        "{RELAY}keyword:Relay\nregexp:^chatgpt-async-webps-prod-\\S+-\\d+\\.webpubsub\\.azure\\.com$\n"
    ));
    assert_eq!(
        rule_of(&l, "myrelay.example").as_deref(),
        Some("keyword:Relay")
    );
    assert_eq!(
        rule_of(&l, "RELAY.example").as_deref(),
        Some("keyword:Relay")
    );
    assert!(l.match_name("rela.example").is_none());
    assert!(
        l.match_name("chatgpt-async-webps-prod-eastus-12.webpubsub.azure.com")
            .is_some()
    );
    assert!(
        l.match_name("chatgpt-async-webps-prod-eastus-x.webpubsub.azure.com")
            .is_none()
    );
}

#[test]
fn most_specific_first_and_highest_severity_wins() {
    let dir = TempDir::new("blocklist");
    let tool = dir.write(
        "tool",
        "# relaywatch: category=ai-tool\nexample.com\nfull:api.example.com\n",
    );
    let relay = dir.write("relay", "# relaywatch: category=ai-relay\nkeyword:exam\n");
    let l = Blocklists::load(&[tool, relay], false).unwrap();
    let v = l.match_name("api.example.com").unwrap();
    let rules: Vec<&str> = v.matches.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["full:api.example.com", "example.com", "keyword:exam"]
    );
    assert_eq!(
        (v.category, v.severity, v.rule.as_str()),
        (Category::AiRelay, Severity::High, "keyword:exam")
    );
    assert_eq!(v.line, 2);
    assert!(v.file.ends_with("relay"));
    assert!(v.list_version.starts_with("sha256:"));
}

#[test]
fn allow_overrides_everything() {
    let dir = TempDir::new("blocklist");
    let relay = dir.write(
        "relay",
        "# relaywatch: category=ai-relay action=block\nexample.com\n10.0.0.0/8\n",
    );
    let allow = dir.write(
        "allow",
        "# relaywatch: category=allow\nfull:gw.example.com\n10.1.0.0/16\n",
    );
    let l = Blocklists::load(&[relay, allow], false).unwrap();
    let v = l.match_name("gw.example.com").unwrap();
    assert_eq!((v.action, v.category), (Action::Allow, Category::Allow));
    assert_eq!(v.matches.len(), 2);
    assert_eq!(
        l.match_name("other.example.com").unwrap().action,
        Action::Block
    );
    assert_eq!(l.match_ip(ip("10.1.2.3")).unwrap().action, Action::Allow);
    assert_eq!(l.match_ip(ip("10.2.2.3")).unwrap().action, Action::Block);
}

#[test]
fn cidr_longest_prefix_v4_v6() {
    let l = load_one(&format!(
        "{RELAY}10.0.0.0/8\n10.1.0.0/16\n192.0.2.7\n2001:db8::/32\n2001:db8:1::/48\n"
    ));
    let v = l.match_ip(ip("10.1.2.3")).unwrap();
    assert_eq!(v.rule, "10.1.0.0/16");
    assert_eq!(
        v.matches
            .iter()
            .map(|m| m.rule.as_str())
            .collect::<Vec<_>>(),
        ["10.1.0.0/16", "10.0.0.0/8"]
    );
    assert_eq!(l.match_ip(ip("192.0.2.7")).unwrap().rule, "192.0.2.7");
    assert!(l.match_ip(ip("192.0.2.8")).is_none());
    assert_eq!(
        l.match_ip(ip("2001:db8:1::9")).unwrap().rule,
        "2001:db8:1::/48"
    );
    assert_eq!(
        l.match_ip(ip("2001:db8:2::9")).unwrap().rule,
        "2001:db8::/32"
    );
    assert!(l.match_ip(ip("2001:db9::1")).is_none());
    // IPv4-mapped IPv6 is the IPv4 address.
    assert_eq!(
        l.match_ip(ip("::ffff:10.1.0.1")).unwrap().rule,
        "10.1.0.0/16"
    );
}

#[test]
fn hosts_file_and_wildcards() {
    let l = load_one(&format!(
        "{RELAY}0.0.0.0 relay.example other.example\n127.0.0.1 x.example # c\n*.wild.example\n"
    ));
    assert!(l.match_name("relay.example").is_some());
    assert!(
        l.match_name("sub.relay.example").is_none(),
        "hosts-file entries are exact"
    );
    assert!(l.match_name("x.example").is_some());
    assert!(l.match_name("a.wild.example").is_some());
    assert!(
        l.match_ip(ip("0.0.0.0")).is_none(),
        "the sink address is not a rule"
    );
}

#[test]
fn include_with_attribute_filters() {
    let dir = TempDir::new("blocklist");
    dir.write(
        "sub",
        "a.example @ads\nb.example @cn\nc.example @cn @ads\nd.example\n",
    );
    dir.write("nested", "include:sub @-cn\n");
    let all = dir.write("all", "# relaywatch: category=ai-provider\ninclude:sub\n");
    let cn = dir.write(
        "cn",
        "# relaywatch: category=ai-provider\ninclude:sub @cn @-ads\n",
    );
    let noads = dir.write(
        "noads",
        "# relaywatch: category=ai-provider\ninclude:nested @-ads\n",
    );
    let names = |p: &Path| {
        let l = Blocklists::load(&[p.to_path_buf()], false).unwrap();
        ["a", "b", "c", "d"]
            .into_iter()
            .filter(|n| l.match_name(&format!("{n}.example")).is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&all), ["a", "b", "c", "d"]);
    assert_eq!(names(&cn), ["b"]);
    assert_eq!(names(&noads), ["d"]);
    let l = Blocklists::load(&[all], false).unwrap();
    let v = l.match_name("d.example").unwrap();
    assert!(v.file.ends_with("/sub"), "{}", v.file);
    assert_eq!(v.line, 4);
}

#[test]
fn every_error_kind_is_located() {
    let dir = TempDir::new("blocklist");
    let d = dir.display().to_string();
    let errors = errors_of(
        &dir,
        "bad",
        "# relaywatch: category=ai-relay\n\
         regexp:^(unclosed\n\
         domain:\n\
         domain:open ai.com\n\
         include:missing\n\
         10.0.0.0/33\n\
         domian:openai.com\n\
         ok.example\n",
    );
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{d}/bad:2: bad regexp '^(unclosed': ")),
        "{}",
        errors[0]
    );
    assert_eq!(errors[1], format!("{d}/bad:3: empty domain: rule"));
    assert!(errors[2].starts_with(&format!("{d}/bad:4: unexpected 'ai.com' after the rule")));
    assert_eq!(
        errors[3],
        format!("{d}/bad:5: include:missing: cannot read {d}/missing: no such file")
    );
    assert_eq!(
        errors[4],
        format!("{d}/bad:6: bad CIDR prefix length '/33' in '10.0.0.0/33' (IPv4 allows /0 to /32)")
    );
    assert!(errors[5].starts_with(&format!("{d}/bad:7: unknown rule prefix 'domian:'")));

    let errors = errors_of(&dir, "nohdr", "example.com\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with(&format!("{d}/nohdr:1: no category: add a header line")));
    let errors = errors_of(
        &dir,
        "badhdr",
        "# relaywatch: category=ai-relai colour=red\n",
    );
    assert!(
        errors[0].starts_with(&format!("{d}/badhdr:1: unknown category 'ai-relai'")),
        "{errors:?}"
    );
    assert!(errors[1].starts_with(&format!("{d}/badhdr:1: unknown header key 'colour'")));
    dir.write("loop-a", "include:loop-b\n");
    dir.write("loop-b", "include:loop-a\n");
    let errors = errors_of(
        &dir,
        "loop",
        "# relaywatch: category=ai-relay\ninclude:loop-a\n",
    );
    assert_eq!(
        errors,
        [format!(
            "{d}/loop-b:1: include:loop-a: include cycle {d}/loop -> {d}/loop-a -> {d}/loop-b -> {d}/loop-a"
        )]
    );
    let missing = dir.join("absent");
    let errors = Blocklists::load(&[missing], false).err().unwrap();
    assert_eq!(
        errors[0].to_string(),
        format!("{d}/absent: cannot read: no such file")
    );
}

#[test]
fn caller_category_for_headerless_lists() {
    let dir = TempDir::new("blocklist");
    let p = dir.write("upstream", "example.com\n");
    let l = Blocklists::load_files(
        &[ListFile {
            path: p,
            category: Some(Category::AiTool),
        }],
        false,
    )
    .unwrap();
    let v = l.match_name("example.com").unwrap();
    assert_eq!(
        (v.category, v.severity, v.action),
        (Category::AiTool, Severity::Low, Action::Alert)
    );
    let l = l.with_action(Category::AiTool, Action::Block);
    assert_eq!(l.match_name("example.com").unwrap().action, Action::Block);
}

#[test]
fn text_lists_are_named_and_keep_a_fixed_category() {
    let text = |text: &str, category| ListText {
        name: "https://lists.example/a.list".into(),
        text: text.into(),
        category,
    };
    let l = Blocklists::load_all(
        &[],
        &[text("full:relay.example\n", Some(Category::AiRelay))],
        false,
    )
    .unwrap();
    let v = l.match_name("relay.example").unwrap();
    assert_eq!(
        (v.category, &*v.file, v.line),
        (Category::AiRelay, "https://lists.example/a.list", 1)
    );
    assert_eq!(l.lists()[0].path, "https://lists.example/a.list");
    // The header may repeat the fixed category, not change it; `include:` has nowhere to look.
    assert!(
        Blocklists::load_all(
            &[],
            &[text(
                "# relaywatch: category=ai-relay\nx.example\n",
                Some(Category::AiRelay)
            )],
            false
        )
        .is_ok()
    );
    let errors = |t: &str, c| {
        Blocklists::load_all(&[], &[text(t, c)], false)
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        errors(
            "x.example\n# relaywatch: category=allow\n",
            Some(Category::AiRelay)
        ),
        [
            "https://lists.example/a.list:2: the header says category=allow, but this list is configured as ai-relay"
        ]
    );
    assert_eq!(
        errors("# relaywatch: category=ai-tool\ninclude:other\n", None),
        ["https://lists.example/a.list:2: include:other: a remote list cannot include other lists"]
    );
    assert!(
        errors("x.example\n", None)[0].starts_with("https://lists.example/a.list:1: no category")
    );
}

#[test]
fn builtin_lists_load_and_classify() {
    let l = Blocklists::load(&[], true).unwrap_or_else(|e| panic!("{e:#?}"));
    let category = |n: &str| l.match_name(n).map(|v| v.category);
    assert_eq!(category("api.openai.com"), Some(Category::AiProvider));
    assert_eq!(category("api.anthropic.com"), Some(Category::AiProvider));
    assert_eq!(
        category("generativelanguage.googleapis.com"),
        Some(Category::AiProvider)
    );
    assert_eq!(category("gemini.google.com"), Some(Category::AiProvider));
    assert_eq!(category("openrouter.ai"), Some(Category::AiAggregator));
    assert_eq!(category("poe.com"), Some(Category::AiAggregator));
    assert_eq!(category("api2.cursor.sh"), Some(Category::AiTool));
    assert_eq!(
        category("copilot-proxy.githubusercontent.com"),
        Some(Category::AiTool)
    );
    assert_eq!(category("api.deepseek.com"), Some(Category::AiDomestic));
    assert_eq!(
        l.match_name("api.deepseek.com").unwrap().action,
        Action::Ignore
    );
    assert_eq!(category("aihubmix.com"), Some(Category::AiRelay));
    assert_eq!(category("jp.duckcoding.com"), Some(Category::AiRelay));
    assert_eq!(
        l.match_ip(ip("106.75.146.14")).map(|v| v.category),
        Some(Category::AiRelay)
    );
    let v = l.match_name("api.openai.com").unwrap();
    assert_eq!(&*v.file, "builtin:v2fly/openai");
    assert!(v.list_version.contains("c975ccef9c19"));
}

#[test]
fn gemini_exchange_is_not_google_gemini() {
    let l = Blocklists::builtin();
    assert!(l.match_name("gemini.com").is_none());
    assert!(l.match_name("api.gemini.com").is_none());
    assert!(l.match_name("gemini.google.com").is_some());
}

#[test]
fn builtin_drops_ads_rules() {
    let l = Blocklists::builtin();
    for host in [
        "browser-intake-datadoghq.com",
        "o33249.ingest.sentry.io",
        "openai.qualtrics.com",
        "copilot-telemetry.githubusercontent.com",
    ] {
        assert!(l.match_name(host).is_none(), "{host} must not match");
    }
}

#[test]
fn builtin_relay_list_has_no_first_party_hosts() {
    let l = Blocklists::builtin();
    for (name, category) in l.resolvable_names() {
        if category == Category::AiRelay {
            let others: Vec<Category> = l
                .match_name(&name)
                .unwrap()
                .matches
                .iter()
                .map(|m| m.category)
                .filter(|c| *c != Category::AiRelay)
                .collect();
            assert!(others.is_empty(), "relay host {name} is also {others:?}");
        }
    }
    assert!(l.match_name("www.sophnet.com").is_none());
}

#[test]
fn builtin_every_v2fly_file_is_mapped() {
    let l = Blocklists::builtin();
    let mut files: Vec<&str> = l
        .files
        .iter()
        .filter_map(|f| f.strip_prefix("builtin:v2fly/"))
        .collect();
    files.sort_unstable();
    files.dedup();
    let domestic = [
        "category-ai-cn",
        "askdiandian",
        "deepseek",
        "doubao",
        "trae",
        "xiaomi-ai",
    ];
    for f in files.into_iter().filter(|f| !domestic.contains(f)) {
        assert!(
            builtin::FILE_CATEGORIES.iter().any(|(n, _)| *n == f),
            "v2fly file {f} has no category mapping"
        );
    }
    for (name, _) in builtin::DIRECT_RULE_CATEGORIES {
        let v = l
            .match_name(name)
            .unwrap_or_else(|| panic!("{name} is not in category-ai-!cn"));
        assert_eq!(&*v.file, "builtin:v2fly/category-ai-!cn", "{name}");
    }
}

#[test]
fn lists_and_resolvable_names() {
    let l = load_one(&format!(
        "{RELAY}a.example\nfull:b.example\nkeyword:x\n10.0.0.0/8\na.example\n"
    ));
    let info = l.lists();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].rules, 5);
    assert_eq!(
        info[0].rules_by_kind,
        [
            (RuleKind::Domain, 2),
            (RuleKind::Full, 1),
            (RuleKind::Keyword, 1),
            (RuleKind::Cidr, 1)
        ]
    );
    assert_eq!(info[0].sha256.len(), 64);
    let mut names = l.resolvable_names();
    names.sort();
    assert_eq!(
        names,
        [
            ("a.example".to_string(), Category::AiRelay),
            ("b.example".to_string(), Category::AiRelay)
        ]
    );
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Blocklists>();
}

#[test]
fn builtin_rule_counts() {
    let l = Blocklists::builtin();
    let count = |c: Category| {
        l.lists()
            .iter()
            .filter(|i| i.category == c)
            .map(|i| i.rules)
            .sum::<usize>()
    };
    // category-ai-!cn resolves to 180 rules, 5 of them @ads (data/blocklists/v2fly README).
    assert_eq!(
        count(Category::AiProvider) + count(Category::AiAggregator) + count(Category::AiTool),
        175
    );
    assert_eq!(
        (
            count(Category::AiProvider),
            count(Category::AiAggregator),
            count(Category::AiTool)
        ),
        (126, 6, 43)
    );
    assert_eq!(count(Category::AiDomestic), 113);
    assert_eq!(count(Category::AiRelay), 254);
}
