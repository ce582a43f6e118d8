//! Blocklists: which destinations are AI relays, overseas AI providers, aggregators, AI tools or
//! domestic AI services, and what to do about a connection to one.
//!
//! Data model. A `Blocklists` is built once (from the lists compiled into the binary and any list
//! files) and then only read, so it is shared as is across threads. Every rule lives in `rules`;
//! its texts (the canonical name or pattern, and the rule as written) are spans of one string
//! arena, so a million rules cost a few allocations, not millions. Rules are found through:
//! - `names`: hash of a canonical name -> the `domain:` and `full:` rules with that hash (see
//!   `NameIndex`). A name lookup probes the hash of each of its label suffixes, O(labels) probes.
//! - `keywords`: one Aho-Corasick automaton over every distinct keyword.
//! - `regexps`: one `RegexSet` over every distinct regexp.
//! - `v4`, `v6`: binary prefix tries over address rules; duplicates chain through `Rule::next`.
//!
//! Each rule belongs to a list (`ListMeta`): the category, severity and action come from there.
//! A match reports every rule that matched, most specific first; the verdict is the first `allow`
//! rule if any (an allow list overrides every other match), otherwise the most severe match.
mod builtin;
mod load;
pub mod name;
mod prefix_trie;
mod syntax;

use std::{
    collections::HashSet,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use aho_corasick::AhoCorasick;
use regex::RegexSet;
use serde::{Deserialize, Serialize};

use name::{NameIndex, canonical_query_name, name_hash, suffix_hashes};
use prefix_trie::PrefixTrie;
pub(crate) use prefix_trie::address_bits;
use syntax::Pattern;

/// What a list is about. A list file names it in its header (`# relaywatch: category=ai-relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// AI relay and reseller endpoints ("中转 API").
    AiRelay,
    /// Overseas first-party AI APIs and apps.
    AiProvider,
    /// Gateways that front many providers (OpenRouter and the like).
    AiAggregator,
    /// AI tools' backends (coding assistants, local-model tools, creative tools).
    AiTool,
    /// Domestic (Chinese) AI providers.
    AiDomestic,
    /// Sanctioned destinations: a match here overrides every other match.
    Allow,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::AiRelay,
        Category::AiProvider,
        Category::AiAggregator,
        Category::AiTool,
        Category::AiDomestic,
        Category::Allow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::AiRelay => "ai-relay",
            Category::AiProvider => "ai-provider",
            Category::AiAggregator => "ai-aggregator",
            Category::AiTool => "ai-tool",
            Category::AiDomestic => "ai-domestic",
            Category::Allow => "allow",
        }
    }

    pub fn default_severity(self) -> Severity {
        match self {
            Category::AiRelay | Category::AiProvider => Severity::High,
            Category::AiAggregator => Severity::Medium,
            Category::AiTool => Severity::Low,
            Category::AiDomestic | Category::Allow => Severity::Info,
        }
    }

    pub fn default_action(self) -> Action {
        match self {
            Category::AiRelay
            | Category::AiProvider
            | Category::AiAggregator
            | Category::AiTool => Action::Alert,
            Category::AiDomestic => Action::Ignore,
            Category::Allow => Action::Allow,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// What the daemon does with a connection that matched. `Allow` belongs to the `allow` category
/// only; the other categories take `ignore`, `alert` or `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Ignore,
    Alert,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Ignore => "ignore",
            Action::Alert => "alert",
            Action::Block => "block",
        }
    }
}

macro_rules! from_str_by_as_str {
    ($t:ty, $all:expr, $what:literal) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $all.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = $all.iter().map(|v| v.as_str()).collect();
                    format!(
                        "unknown {} '{s}' (expected one of: {})",
                        $what,
                        names.join(", ")
                    )
                })
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
from_str_by_as_str!(Category, Category::ALL, "category");
from_str_by_as_str!(
    Severity,
    [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High
    ],
    "severity"
);
from_str_by_as_str!(
    Action,
    [Action::Allow, Action::Ignore, Action::Alert, Action::Block],
    "action"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Domain,
    Full,
    Keyword,
    Regexp,
    Cidr,
}

impl RuleKind {
    const ALL: [RuleKind; 5] = [
        RuleKind::Domain,
        RuleKind::Full,
        RuleKind::Keyword,
        RuleKind::Regexp,
        RuleKind::Cidr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Domain => "domain",
            RuleKind::Full => "full",
            RuleKind::Keyword => "keyword",
            RuleKind::Regexp => "regexp",
            RuleKind::Cidr => "cidr",
        }
    }
}

/// A problem in a list, located. Displays as `FILE:LINE: reason` (`FILE: reason` when it concerns
/// the whole file, such as a file that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    pub file: String,
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for ListError {}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// The rule as written in its file.
    pub rule: String,
    pub kind: RuleKind,
    pub category: Category,
    pub severity: Severity,
    pub action: Action,
    /// The file the rule is written in (for an `include:`d rule, the included file).
    pub file: Arc<str>,
    pub line: u32,
    /// The list the rule was loaded through (its top-level file).
    pub list: Arc<str>,
    /// The list's version: the upstream commit for built-in v2fly data, else `sha256:...`.
    pub list_version: Arc<str>,
}

/// The outcome of a lookup: the deciding rule, and every rule that matched (most specific first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub action: Action,
    pub category: Category,
    pub severity: Severity,
    pub rule: String,
    pub file: Arc<str>,
    pub line: u32,
    pub list_version: Arc<str>,
    pub matches: Vec<RuleMatch>,
}

/// A loaded list, for `status` and `blocklist check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListInfo {
    /// The list's top-level file (`builtin:...` for lists compiled into the binary).
    pub path: String,
    pub category: Category,
    pub severity: Severity,
    pub action: Action,
    /// Where the list comes from (header `source=`, or the file).
    pub source: String,
    pub version: String,
    /// SHA-256 of the list's text, included files appended in the order they were read.
    pub sha256: String,
    pub rules: usize,
    /// Rule counts by kind (domain, full, keyword, regexp, cidr), zero counts left out.
    pub rules_by_kind: Vec<(RuleKind, usize)>,
}

/// A list file to load, with the category to use when its header names none.
#[derive(Debug, Clone)]
pub struct ListFile {
    pub path: PathBuf,
    pub category: Option<Category>,
}

/// A list given as text rather than as a file: a remote feed's body. `name` stands for a file
/// name in reports (`NAME:LINE: reason`, match evidence). When `category` is given, the list is
/// of that category and a header naming another is an error; `include:` is an error.
#[derive(Debug, Clone)]
pub struct ListText {
    pub name: String,
    pub text: String,
    pub category: Option<Category>,
}

struct ListMeta {
    path: Arc<str>,
    category: Category,
    severity: Severity,
    action: Action,
    source: String,
    version: Arc<str>,
    sha256: String,
    counts: [usize; 5],
}

/// A byte range of `Blocklists::text`.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

const NO_RULE: u32 = u32::MAX;

struct Rule {
    /// The canonical name or pattern (empty for address rules).
    key: Span,
    /// The rule as written.
    written: Span,
    list: u32,
    /// Index into `files`.
    file: u32,
    line: u32,
    kind: RuleKind,
    /// Next rule with the same keyword, regexp or prefix; `NO_RULE` ends the chain.
    next: u32,
}

/// The lists in force. Immutable once built; `Send + Sync`, share it in an `Arc`.
pub struct Blocklists {
    lists: Vec<ListMeta>,
    /// Shared with every match reported (a match clones a pointer, not the text).
    files: Vec<Arc<str>>,
    text: String,
    rules: Vec<Rule>,
    names: NameIndex,
    keywords: Option<AhoCorasick>,
    keyword_heads: Vec<u32>,
    regexps: Option<RegexSet>,
    regexp_heads: Vec<u32>,
    v4: PrefixTrie,
    v6: PrefixTrie,
}

impl Blocklists {
    /// The lists compiled into the binary (v2fly `category-ai-!cn` split into ai-provider,
    /// ai-aggregator and ai-tool; the curated ai-relay list; v2fly `category-ai-cn` as
    /// ai-domestic). Their validity is checked by the unit tests; if they failed to load anyway,
    /// the error is logged and the result is empty rather than a crash.
    pub fn builtin() -> Blocklists {
        match Blocklists::load(&[], true) {
            Ok(lists) => lists,
            Err(errors) => {
                for e in &errors {
                    log::error!("built-in blocklist: {e}");
                }
                Builder::default().empty()
            }
        }
    }

    /// The built-in lists (when `include_builtin`) plus `extra_files`, each of which must name its
    /// category in its header. Every problem in every file is returned, located.
    pub fn load(
        extra_files: &[PathBuf],
        include_builtin: bool,
    ) -> Result<Blocklists, Vec<ListError>> {
        let files: Vec<ListFile> = extra_files
            .iter()
            .map(|p| ListFile {
                path: p.clone(),
                category: None,
            })
            .collect();
        Blocklists::load_files(&files, include_builtin)
    }

    /// Like `load`, with a fallback category per file for lists without a header (such as
    /// unmodified upstream v2fly files).
    pub fn load_files(
        extra_files: &[ListFile],
        include_builtin: bool,
    ) -> Result<Blocklists, Vec<ListError>> {
        Blocklists::load_all(extra_files, &[], include_builtin)
    }

    /// Like `load_files`, plus lists given as text (after the files).
    pub fn load_all(
        extra_files: &[ListFile],
        texts: &[ListText],
        include_builtin: bool,
    ) -> Result<Blocklists, Vec<ListError>> {
        let mut builder = Builder::default();
        let mut errors = Vec::new();
        if include_builtin {
            errors.extend(builtin::load(&mut builder));
        }
        for file in extra_files {
            errors.extend(load::load_file(&mut builder, &file.path, file.category));
        }
        for list in texts {
            errors.extend(load::load_text(
                &mut builder,
                &list.name,
                &list.text,
                list.category,
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        builder.finish().map_err(|e| vec![e])
    }

    /// Sets the action of every list in `category` (from the daemon's configuration). The `allow`
    /// category always allows and is left alone.
    pub fn with_action(mut self, category: Category, action: Action) -> Blocklists {
        if category != Category::Allow && action != Action::Allow {
            for list in self.lists.iter_mut().filter(|l| l.category == category) {
                list.action = action;
            }
        }
        self
    }

    /// The action of the loaded lists of `category` (the configuration sets it per category), if
    /// any list of it is loaded.
    pub fn category_action(&self, category: Category) -> Option<Action> {
        self.lists
            .iter()
            .find(|l| l.category == category)
            .map(|l| l.action)
    }

    /// Looks a destination name up (any case, trailing dot or not, Unicode or `xn--`).
    pub fn match_name(&self, name: &str) -> Option<Verdict> {
        let name = canonical_query_name(name)?;
        let name = name.as_ref();
        // (rule, rank, length): rank orders kinds by specificity, length within a kind.
        let mut hits: Vec<(u32, u8, usize)> = Vec::new();
        suffix_hashes(name, |start, hash| {
            let suffix = &name[start..];
            self.names.candidates(hash, |i| {
                let rule = &self.rules[i as usize];
                let exact_only = rule.kind == RuleKind::Full;
                if self.span(rule.key) == suffix && (start == 0 || !exact_only) {
                    hits.push((i, if exact_only { 4 } else { 3 }, suffix.len()));
                }
            });
        });
        if let Some(set) = &self.regexps {
            for pattern in set.matches(name).iter() {
                self.for_chain(self.regexp_heads[pattern], |i, _| hits.push((i, 2, 0)));
            }
        }
        if let Some(ac) = &self.keywords {
            let mut seen = Vec::new();
            for m in ac.find_overlapping_iter(name) {
                let pattern = m.pattern().as_usize();
                if !seen.contains(&pattern) {
                    seen.push(pattern);
                    self.for_chain(self.keyword_heads[pattern], |i, _| {
                        hits.push((i, 1, m.len()))
                    });
                }
            }
        }
        self.verdict(hits)
    }

    /// Looks a destination address up (IPv4-mapped IPv6 addresses as IPv4).
    pub fn match_ip(&self, ip: IpAddr) -> Option<Verdict> {
        let ip = ip.to_canonical();
        let (bits, width) = address_bits(ip);
        let trie = if width == 32 { &self.v4 } else { &self.v6 };
        let mut hits = Vec::new();
        trie.for_each_covering(bits, width, |len, head| {
            self.for_chain(head, |i, _| hits.push((i, 0, usize::from(len))))
        });
        self.verdict(hits)
    }

    pub fn lists(&self) -> Vec<ListInfo> {
        self.lists
            .iter()
            .map(|l| ListInfo {
                path: l.path.to_string(),
                category: l.category,
                severity: l.severity,
                action: l.action,
                source: l.source.clone(),
                version: l.version.to_string(),
                sha256: l.sha256.clone(),
                rules: l.counts.iter().sum(),
                rules_by_kind: RuleKind::ALL
                    .iter()
                    .zip(l.counts)
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| (*k, n))
                    .collect(),
            })
            .collect()
    }

    /// Every `full:` and `domain:` name with its list's category, once per (name, category): the
    /// names the resolver looks up so that connections by address can be classified too.
    pub fn resolvable_names(&self) -> Vec<(String, Category)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for rule in &self.rules {
            if matches!(rule.kind, RuleKind::Domain | RuleKind::Full) {
                let entry = (self.span(rule.key), self.lists[rule.list as usize].category);
                if seen.insert(entry) {
                    out.push((entry.0.to_string(), entry.1));
                }
            }
        }
        out
    }

    /// Heap memory held by the index (approximate; for benchmarks and status).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.rules.capacity() * std::mem::size_of::<Rule>()
            + self.names.heap_bytes()
            + self.v4.heap_bytes()
            + self.v6.heap_bytes()
    }

    fn span(&self, s: Span) -> &str {
        &self.text[s.start as usize..(s.start + s.len) as usize]
    }

    fn for_chain(&self, head: u32, mut f: impl FnMut(u32, &Rule)) {
        let mut i = head;
        while let Some(rule) = self.rules.get(i as usize) {
            f(i, rule);
            i = rule.next;
        }
    }

    fn verdict(&self, mut hits: Vec<(u32, u8, usize)>) -> Option<Verdict> {
        if hits.is_empty() {
            return None;
        }
        hits.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        hits.dedup_by_key(|h| h.0);
        let matches: Vec<RuleMatch> = hits.iter().map(|&(i, _, _)| self.rule_match(i)).collect();
        let decisive = matches
            .iter()
            .find(|m| m.category == Category::Allow)
            .or_else(|| {
                matches
                    .iter()
                    .reduce(|best, m| if m.severity > best.severity { m } else { best })
            })?;
        Some(Verdict {
            action: decisive.action,
            category: decisive.category,
            severity: decisive.severity,
            rule: decisive.rule.clone(),
            file: decisive.file.clone(),
            line: decisive.line,
            list_version: decisive.list_version.clone(),
            matches,
        })
    }

    fn rule_match(&self, i: u32) -> RuleMatch {
        let rule = &self.rules[i as usize];
        let list = &self.lists[rule.list as usize];
        RuleMatch {
            rule: self.span(rule.written).to_string(),
            kind: rule.kind,
            category: list.category,
            severity: list.severity,
            action: list.action,
            file: self.files[rule.file as usize].clone(),
            line: rule.line,
            list: list.path.clone(),
            list_version: list.version.clone(),
        }
    }
}

/// Collects rules, then builds the automata. Loaders (`load`, `builtin`) drive it.
#[derive(Default)]
struct Builder {
    lists: Vec<ListMeta>,
    files: Vec<String>,
    text: String,
    rules: Vec<Rule>,
    /// (name hash, rule) of `domain:` and `full:` rules, indexed by `finish`.
    names: Vec<(u64, u32)>,
    keywords: Vec<String>,
    keyword_heads: Vec<u32>,
    keyword_index: std::collections::HashMap<String, usize>,
    regexps: Vec<String>,
    regexp_heads: Vec<u32>,
    regexp_index: std::collections::HashMap<String, usize>,
    v4: PrefixTrie,
    v6: PrefixTrie,
}

/// Where a rule comes from, for reports.
#[derive(Clone, Copy)]
struct Origin {
    list: u32,
    file: u32,
    line: u32,
}

impl Builder {
    fn add_list(&mut self, path: &str, category: Category) -> u32 {
        self.lists.push(ListMeta {
            path: path.into(),
            category,
            severity: category.default_severity(),
            action: category.default_action(),
            source: path.to_string(),
            version: "".into(),
            sha256: String::new(),
            counts: [0; 5],
        });
        (self.lists.len() - 1) as u32
    }

    fn add_file(&mut self, name: &str) -> u32 {
        self.files.push(name.to_string());
        (self.files.len() - 1) as u32
    }

    fn push_text(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    /// The rule texts: the written form once, the canonical key as its tail when it is one
    /// (`domain:openai.com` holds `openai.com`), otherwise stored separately.
    fn push_texts(&mut self, written: &str, key: &str) -> (Span, Span) {
        let w = self.push_text(written);
        let k = if written.ends_with(key) {
            Span {
                start: w.start + w.len - key.len() as u32,
                len: key.len() as u32,
            }
        } else {
            self.push_text(key)
        };
        (w, k)
    }

    /// Makes room for the rules of `text` (about one per line) up front: growing the tables
    /// while loading a large list would cost rehashing and, at the moment of each doubling,
    /// twice the memory.
    fn reserve(&mut self, text: &str) {
        let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
        self.rules.reserve(lines);
        self.names.reserve(lines);
        self.text.reserve(text.len());
    }

    fn add_rule(&mut self, pattern: &Pattern<'_>, written: &str, at: Origin) {
        let index = self.rules.len() as u32;
        let (kind, key) = match pattern {
            Pattern::Domain(n) => (RuleKind::Domain, n.as_ref()),
            Pattern::Full(n) => (RuleKind::Full, n.as_ref()),
            Pattern::Keyword(k) => (RuleKind::Keyword, k.as_ref()),
            Pattern::Regexp(r) => (RuleKind::Regexp, *r),
            Pattern::Cidr { .. } => (RuleKind::Cidr, ""),
        };
        let next = match pattern {
            Pattern::Domain(n) | Pattern::Full(n) => {
                self.names.push((name_hash(n), index));
                NO_RULE
            }
            Pattern::Keyword(k) => chain_pattern(
                k,
                index,
                &mut self.keywords,
                &mut self.keyword_heads,
                &mut self.keyword_index,
            ),
            Pattern::Regexp(r) => chain_pattern(
                r,
                index,
                &mut self.regexps,
                &mut self.regexp_heads,
                &mut self.regexp_index,
            ),
            &Pattern::Cidr { bits, len, width } => {
                let trie = if width == 32 {
                    &mut self.v4
                } else {
                    &mut self.v6
                };
                trie.insert(bits, len, index).unwrap_or(NO_RULE)
            }
        };
        let (written, key) = self.push_texts(written, key);
        self.rules.push(Rule {
            key,
            written,
            list: at.list,
            file: at.file,
            line: at.line,
            kind,
            next,
        });
        self.lists[at.list as usize].counts[kind as usize] += 1;
    }

    fn finish(self) -> Result<Blocklists, ListError> {
        let keywords = if self.keywords.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::new(&self.keywords)
                    .map_err(|e| self.set_error(RuleKind::Keyword, e.to_string()))?,
            )
        };
        let regexps = if self.regexps.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(&self.regexps)
                    .size_limit(1 << 28)
                    .build()
                    .map_err(|e| self.set_error(RuleKind::Regexp, e.to_string()))?,
            )
        };
        let (mut v4, mut v6) = (self.v4, self.v6);
        v4.freeze();
        v6.freeze();
        let mut text = self.text;
        text.shrink_to_fit();
        let mut rules = self.rules;
        rules.shrink_to_fit();
        Ok(Blocklists {
            lists: self.lists,
            files: self.files.into_iter().map(Arc::from).collect(),
            text,
            rules,
            names: NameIndex::build(self.names),
            keywords,
            keyword_heads: self.keyword_heads,
            regexps,
            regexp_heads: self.regexp_heads,
            v4,
            v6,
        })
    }

    /// An automaton that fails to build is blamed on the last rule of that kind.
    fn set_error(&self, kind: RuleKind, reason: String) -> ListError {
        let rule = self.rules.iter().rev().find(|r| r.kind == kind);
        ListError {
            file: rule
                .map(|r| self.files[r.file as usize].clone())
                .unwrap_or_default(),
            line: rule.map_or(0, |r| r.line),
            reason: format!("cannot build the {} matcher: {reason}", kind.as_str()),
        }
    }

    fn empty(self) -> Blocklists {
        Blocklists {
            lists: Vec::new(),
            files: Vec::new(),
            text: String::new(),
            rules: Vec::new(),
            names: NameIndex::build(Vec::new()),
            keywords: None,
            keyword_heads: Vec::new(),
            regexps: None,
            regexp_heads: Vec::new(),
            v4: PrefixTrie::default(),
            v6: PrefixTrie::default(),
        }
    }
}

/// Adds `pattern` to a deduplicated pattern table; returns the rule that was its chain head.
fn chain_pattern(
    pattern: &str,
    rule: u32,
    patterns: &mut Vec<String>,
    heads: &mut Vec<u32>,
    index: &mut std::collections::HashMap<String, usize>,
) -> u32 {
    match index.get(pattern) {
        Some(&p) => std::mem::replace(&mut heads[p], rule),
        None => {
            index.insert(pattern.to_string(), patterns.len());
            patterns.push(pattern.to_string());
            heads.push(rule);
            NO_RULE
        }
    }
}

/// A path as reports show it.
fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests;
