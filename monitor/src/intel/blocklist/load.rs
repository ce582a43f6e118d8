//! Reading list files: headers, `include:` resolution with attribute filters, and feeding the
//! rules to the builder. All I/O of the blocklist engine is here.
//!
//! A list is a top-level file plus everything it includes, transitively. `include:NAME` is looked
//! up beside the including file (v2fly's `data/` layout); for built-in lists, in the embedded
//! files. Only the top-level file's header counts; headers in included files are ignored, so that
//! an upstream file keeps its meaning wherever it is included from.
//!
//! Header keys (`# relaywatch: key=value ...`, anywhere in the top-level file):
//! `category` (required unless the caller supplies one), `severity` and `action` (default: the
//! category's), `source` (where the list comes from) and `version` (default: `sha256:` of the
//! list's text).
//!
//! A list given as text (a remote feed's body, see `feeds`) has no directory to include from:
//! `include:` is an error there, and a category the caller fixed cannot be changed by the
//! header (whoever serves the list must not be able to turn it into an allow list).
use std::{borrow::Cow, path::Path};

use sha2::{Digest, Sha256};

use super::{
    Action, Builder, Category, ListError, Origin, Severity, display_path,
    syntax::{IncludeLine, Line, RuleLine, parse_line},
};

/// Bound on include nesting; deeper chains are reported (a cycle is caught before this).
const MAX_INCLUDE_DEPTH: usize = 32;

/// Where included lists are found.
pub(super) trait ListFiles {
    /// The display name and text of list `name` included from `including` (a display name).
    fn include(&self, including: &str, name: &str) -> Result<(String, Cow<'static, str>), String>;
}

/// Lists on disk: includes resolve beside the including file.
struct DiskFiles;

impl ListFiles for DiskFiles {
    fn include(&self, including: &str, name: &str) -> Result<(String, Cow<'static, str>), String> {
        if name.contains('/') || name == ".." || name == "." {
            return Err(format!(
                "include:{name}: a list name, not a path, is expected"
            ));
        }
        let dir = Path::new(including).parent().unwrap_or(Path::new(""));
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((display_path(&path), Cow::Owned(text))),
            Err(e) => Err(format!(
                "include:{name}: cannot read {}: {}",
                display_path(&path),
                io_reason(&e)
            )),
        }
    }
}

pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

/// A list given as text: nothing to include.
struct NoFiles;

impl ListFiles for NoFiles {
    fn include(&self, _including: &str, name: &str) -> Result<(String, Cow<'static, str>), String> {
        Err(format!(
            "include:{name}: a remote list cannot include other lists"
        ))
    }
}

/// How a list's category is decided.
#[derive(Debug, Clone, Copy)]
pub(super) enum CategoryRule {
    /// The header's; this one when the header names none.
    HeaderOr(Option<Category>),
    /// This one; a header naming another is an error.
    Fixed(Category),
    /// A remote list with no configured category: the header's, but never `allow` (whoever
    /// serves the list must not be able to silence alerts; configure `category = "allow"` for an
    /// allow feed).
    Remote,
}

/// Loads one list file from disk into `builder` as its own list.
pub(super) fn load_file(
    builder: &mut Builder,
    path: &Path,
    fallback: Option<Category>,
) -> Vec<ListError> {
    let display = display_path(path);
    match std::fs::read_to_string(path) {
        Ok(text) => load_list(
            builder,
            &DiskFiles,
            &display,
            &text,
            CategoryRule::HeaderOr(fallback),
        ),
        Err(e) => vec![ListError {
            file: display,
            line: 0,
            reason: format!("cannot read: {}", io_reason(&e)),
        }],
    }
}

/// Loads a list given as text (named `name` in reports) into `builder` as its own list.
pub(super) fn load_text(
    builder: &mut Builder,
    name: &str,
    text: &str,
    category: Option<Category>,
) -> Vec<ListError> {
    let rule = match category {
        Some(c) => CategoryRule::Fixed(c),
        None => CategoryRule::Remote,
    };
    load_list(builder, &NoFiles, name, text, rule)
}

/// One traversal of a list and its includes.
pub(super) struct Walk<'f> {
    files: &'f dyn ListFiles,
    pub errors: Vec<ListError>,
    digest: Sha256,
    /// Header fields of the top-level file, with their line.
    header: Vec<(String, String, u32)>,
    /// Files being read, outermost first (for cycle detection).
    stack: Vec<String>,
    /// Attribute filters of the includes being read, outermost first.
    filters: Vec<(Vec<String>, Vec<String>)>,
}

impl<'f> Walk<'f> {
    pub fn new(files: &'f dyn ListFiles) -> Walk<'f> {
        Walk {
            files,
            errors: Vec::new(),
            digest: Sha256::new(),
            header: Vec::new(),
            stack: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// Reads `text` (the file `name`) and its includes; `root_filter` applies to every rule (the
    /// built-in lists drop `@ads` this way). `list_of(file, rule)` picks the list each rule joins.
    pub fn run(
        &mut self,
        builder: &mut Builder,
        name: &str,
        text: &str,
        root_excluded: &[&str],
        mut list_of: impl FnMut(&str, &RuleLine<'_>) -> u32,
    ) {
        self.filters.push((
            Vec::new(),
            root_excluded.iter().map(|s| s.to_string()).collect(),
        ));
        self.read(builder, name, text, &mut list_of);
        self.filters.pop();
    }

    fn read(
        &mut self,
        builder: &mut Builder,
        name: &str,
        text: &str,
        list_of: &mut dyn FnMut(&str, &RuleLine<'_>) -> u32,
    ) {
        self.digest.update(text.as_bytes());
        let is_root = self.stack.is_empty();
        self.stack.push(name.to_string());
        let file = builder.add_file(name);
        builder.reserve(text);
        for (n, line) in text.lines().enumerate() {
            let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
            match parse_line(line) {
                Ok(Line::Nothing) => {}
                Ok(Line::Header(fields)) => {
                    if is_root {
                        self.header.extend(
                            fields
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v.to_string(), line_no)),
                        );
                    }
                }
                Ok(Line::Include(include)) => {
                    self.include(builder, name, line_no, &include, list_of)
                }
                Ok(Line::Rule(rule)) => self.add(builder, name, file, line_no, &rule, list_of),
                Ok(Line::Hosts(rules)) => {
                    for rule in &rules {
                        self.add(builder, name, file, line_no, rule, list_of);
                    }
                }
                Err(reason) => self.error(name, line_no, reason),
            }
        }
        self.stack.pop();
    }

    fn include(
        &mut self,
        builder: &mut Builder,
        from: &str,
        line: u32,
        include: &IncludeLine<'_>,
        list_of: &mut dyn FnMut(&str, &RuleLine<'_>) -> u32,
    ) {
        let (name, text) = match self.files.include(from, include.list) {
            Ok(found) => found,
            Err(reason) => return self.error(from, line, reason),
        };
        if self.stack.contains(&name) {
            let mut chain = self.stack.clone();
            chain.push(name);
            return self.error(
                from,
                line,
                format!(
                    "include:{}: include cycle {}",
                    include.list,
                    chain.join(" -> ")
                ),
            );
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return self.error(
                from,
                line,
                format!(
                    "include:{}: includes nested deeper than {MAX_INCLUDE_DEPTH}",
                    include.list
                ),
            );
        }
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.filters
            .push((owned(&include.required), owned(&include.excluded)));
        self.read(builder, &name, &text, list_of);
        self.filters.pop();
    }

    fn add(
        &self,
        builder: &mut Builder,
        name: &str,
        file: u32,
        line: u32,
        rule: &RuleLine<'_>,
        list_of: &mut dyn FnMut(&str, &RuleLine<'_>) -> u32,
    ) {
        if self.passes(&rule.attrs) {
            let list = list_of(name, rule);
            builder.add_rule(&rule.pattern, rule.written, Origin { list, file, line });
        }
    }

    fn passes(&self, attrs: &[&str]) -> bool {
        self.filters.iter().all(|(required, excluded)| {
            required.iter().all(|r| attrs.contains(&r.as_str()))
                && !excluded.iter().any(|x| attrs.contains(&x.as_str()))
        })
    }

    fn error(&mut self, file: &str, line: u32, reason: String) {
        self.errors.push(ListError {
            file: file.to_string(),
            line,
            reason,
        });
    }

    /// SHA-256 of everything read so far, hex.
    pub fn sha256(&self) -> String {
        self.digest
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The top-level file's header; problems in it are recorded as errors.
    pub fn take_header(&mut self, file: &str) -> Header {
        let mut h = Header::default();
        for (key, value, line) in std::mem::take(&mut self.header) {
            let result = match key.as_str() {
                "category" => {
                    h.category_line = line;
                    set(&mut h.category, value.parse::<Category>())
                }
                "severity" => set(&mut h.severity, value.parse::<Severity>()),
                "action" => set(&mut h.action, value.parse::<Action>()),
                "source" => set(&mut h.source, Ok(value)),
                "version" => set(&mut h.version, Ok(value)),
                _ => Err(format!(
                    "unknown header key '{key}' (expected category, severity, action, source, version)"
                )),
            };
            if let Err(reason) = result {
                self.error(file, line, reason);
            }
        }
        h
    }
}

#[derive(Default)]
pub(super) struct Header {
    pub category: Option<Category>,
    /// Where `category` is written.
    pub category_line: u32,
    pub severity: Option<Severity>,
    pub action: Option<Action>,
    pub source: Option<String>,
    pub version: Option<String>,
}

fn set<T>(slot: &mut Option<T>, value: Result<T, String>) -> Result<(), String> {
    if slot.is_some() {
        return Err("header key given twice".into());
    }
    *slot = Some(value?);
    Ok(())
}

/// Loads one list (`text`, named `name`, includes found through `files`) into `builder` as its
/// own list, configured by its header; `category` says what the header may decide.
pub(super) fn load_list(
    builder: &mut Builder,
    files: &dyn ListFiles,
    name: &str,
    text: &str,
    category: CategoryRule,
) -> Vec<ListError> {
    let given = match category {
        CategoryRule::HeaderOr(c) => c,
        CategoryRule::Fixed(c) => Some(c),
        CategoryRule::Remote => None,
    };
    let list = builder.add_list(name, given.unwrap_or(Category::AiRelay));
    let mut walk = Walk::new(files);
    walk.run(builder, name, text, &[], |_, _| list);
    let header = walk.take_header(name);
    if let (CategoryRule::Fixed(fixed), Some(written)) = (category, header.category)
        && written != fixed
    {
        walk.error(
            name,
            header.category_line,
            format!("the header says category={written}, but this list is configured as {fixed}"),
        );
        return walk.errors;
    }
    if let (CategoryRule::Remote, Some(Category::Allow)) = (category, header.category) {
        walk.error(
            name,
            header.category_line,
            "a remote list may be an allow list only when its configuration says category = \"allow\"".into(),
        );
        return walk.errors;
    }
    let Some(category) = header.category.or(given) else {
        walk.error(name, 1, format!(
            "no category: add a header line such as '# relaywatch: category=ai-relay' (categories: {})",
            Category::ALL.map(Category::as_str).join(", ")
        ));
        return walk.errors;
    };
    let action = match header.action {
        _ if category == Category::Allow => Action::Allow,
        Some(Action::Allow) => {
            walk.error(
                name,
                1,
                "action=allow is only for category=allow (an allow list)".into(),
            );
            return walk.errors;
        }
        Some(a) => a,
        None => category.default_action(),
    };
    let sha256 = walk.sha256();
    let meta = &mut builder.lists[list as usize];
    meta.category = category;
    meta.severity = header.severity.unwrap_or(category.default_severity());
    meta.action = action;
    meta.source = header.source.unwrap_or_else(|| name.to_string());
    meta.version = header
        .version
        .unwrap_or_else(|| format!("sha256:{}", &sha256[..16]))
        .into();
    meta.sha256 = sha256;
    walk.errors
}
