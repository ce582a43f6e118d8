//! Relay discovery from AI clients' configuration files, per user.
//!
//! `discovery` reads base-URL variables from process environments; users also configure relays in
//! application settings. For every user in the passwd file this reads the base URLs AI clients keep
//! in files, keeps only each URL's host (through `discovery::url_host`), and scopes the finding to
//! the user the file belongs to:
//! - Claude Code: `~/.claude/settings.json`, `~/.claude/settings.local.json` (`env.<VAR>`), the same
//!   two files under `<project>/.claude/` for the projects `~/.claude.json` lists (at most
//!   `MAX_PROJECTS` per user), and `/etc/claude-code/managed-settings.json`.
//! - Codex CLI: `~/.codex/config.toml` (`model_providers.<id>.base_url`, top-level
//!   `openai_base_url` / `chatgpt_base_url`, `profiles.<id>.*base_url`) and the per-profile files
//!   `~/.codex/<profile>.config.toml` of Codex 0.134 and later.
//! - Gemini CLI: `~/.gemini/.env` and `~/.env` (dotenv lines).
//! - cc-switch: `~/.cc-switch/config.json` (v1 and v2 layouts) and `~/.cc-switch/cc-switch.db`
//!   (SQLite: `providers.settings_config` JSON, `provider_endpoints.url`).
//! - Cursor: `~/.config/Cursor/User/globalStorage/state.vscdb` (SQLite `ItemTable`: the
//!   `applicationUser` JSON's `openAIBaseUrl` / `anthropicBaseUrl`, and keys naming
//!   `openAIBaseUrl`).
//! - systemd: `Environment=` of `*.service` units and their `*.service.d/*.conf` drop-ins in the
//!   system unit directories (scoped to the unit's `User=`) and in `~/.config/systemd/user/`.
//!
//! Variables: a key counts when it is on the configured discovery list (`DEFAULT_VARIABLES` by
//! default, each passing `check_variable_name`), plus Claude Code's own
//! `ANTHROPIC_BEDROCK_BASE_URL` and `ANTHROPIC_VERTEX_BASE_URL`.
//!
//! Scope. A finding carries the uid whose processes the file configures. System-wide files
//! (`managed-settings.json`, a unit with `DynamicUser=` or a `User=` the passwd file does not name)
//! configure every user's processes: their uid is `ANY_UID`, and `hosts_for_uid` / `finding`
//! return them for every uid. A system unit without `User=` runs as root: uid 0.
//!
//! Hostile users write these files, so:
//! - Users whose home does not exist, or is not owned by their uid (system accounts sharing `/`,
//!   `/nonexistent`), are skipped. At most `MAX_USERS` users are read.
//! - A user's file is opened below the (canonical) home or project directory one component at a
//!   time with `O_NOFOLLOW`: a symbolic link anywhere below it is not followed (reported). The
//!   last component is opened `O_PATH` and examined first: only a regular file is then opened
//!   for reading (through /proc/self/fd, the same inode), so a FIFO or device node planted there
//!   is never opened. The file must be owned by the user, or by root and world-readable (root
//!   wrote it, and the user could read it anyway, so nothing leaks). Another owner: ignored
//!   (reported). System files must be owned by root; links in root's directories are followed.
//! - Every read is capped (`MAX_FILE`, `MAX_CLAUDE_JSON`, `MAX_SQLITE`), and so are the files read
//!   per scan, the rows read per database and the findings per user.
//! - Of a value only the URL's host is kept, with the file and the key name. API keys sit next to
//!   base URLs in these files: no other value is stored, logged or put into a problem. Parse
//!   errors give the line and column, never the text (`toml` quotes the source in its `Display`;
//!   only its message and span are used). The raw bytes read are zeroed after parsing; the parsed
//!   trees are dropped (not wiped) when the file is done.
//! - SQLite files are opened read-only, `immutable=1` (no locks, so a running app is not
//!   disturbed; a write still in the WAL is seen once the app checkpoints it) and
//!   `SQLITE_OPEN_NOFOLLOW`. SQLite opens by path, so the file checked (as above) and the file
//!   SQLite opens could differ if swapped in between: NOFOLLOW refuses a link anywhere in the
//!   path at SQLite's open, and a hard link to a file the user does not own needs
//!   `fs.protected_hardlinks=0`. Only ordinary tables are read (no views, virtual tables or
//!   generated columns: code a crafted file could run on read), strings and blobs are limited to
//!   `MAX_SQLITE_VALUE`, and a query stops after `MAX_SQLITE_STEPS` thousand steps.
//!
//! Hosts: loopback, unspecified and `localhost` hosts are returned with `local: true` (cc-switch's
//! own proxy on 127.0.0.1:15721 is configured there); the caller decides. `finding` compares
//! canonical hosts exactly (lower case, no trailing dot, IPv4-mapped addresses as IPv4): a relay
//! configured as `relay.example` says nothing about `api.relay.example`.
//!
//! Problems (malformed files, refused files, limits) are collected as "path: reason" lines for
//! status and logs; no problem stops the scan.
//!
//! Change detection (`watch` / `changed`): inotify on the directories the last scan visited:
//! each home (for the creation of `.claude`, `.claude.json`, `.codex`, `.gemini`, `.cc-switch`,
//! `.env`, `.config`), the client directories that exist (only the names read there count: Claude
//! Code rewrites `~/.claude/` and `~/.claude.json` often, the former is filtered, the latter is
//! not), the projects' `.claude/` directories, `/etc/claude-code`, and the unit directories with
//! their `.service.d` drop-in directories. At most `MAX_WATCHES`. Not noticed until the next scan:
//! directories created deeper than a watched one (`~/.config/Cursor/...`, `~/.config/systemd/user`,
//! a project's new `.claude/`), users added to passwd, and writes to an SQLite file the app keeps
//! open (only its close, rename or deletion is seen): the caller also rescans periodically.
//! The intended loop: `scan`, `watch`; then on readability of `as_raw_fd`, if `changed`, wait a
//! moment (editors and apps write in bursts), `scan` and `watch` again.
//!
//! Not read: Cherry Studio (where it keeps provider API hosts on Linux could not be verified: not
//! in a plain settings file); `EnvironmentFile=` of units (such files often hold the keys
//! themselves).
#![allow(dead_code)] // The daemon wires this module next; until then only the tests use it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::CString,
    fs::File,
    io::{self, Read},
    net::IpAddr,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::{ffi::OsStrExt, fs::MetadataExt, fs::OpenOptionsExt},
    },
    path::{Component, Path, PathBuf},
};

use serde::Serialize;

use crate::intel::discovery::{DEFAULT_VARIABLES, check_variable_name, is_local, url_host};

/// The uid of a finding from a system-wide file: it applies to every user.
pub const ANY_UID: u32 = u32::MAX;

/// Users read from the passwd file at most.
pub const MAX_USERS: usize = 4096;
/// Projects read from one user's `~/.claude.json` at most.
pub const MAX_PROJECTS: usize = 256;
/// The largest JSON, TOML, .env or unit file read.
pub const MAX_FILE: u64 = 1 << 20;
/// `~/.claude.json` also holds per-project history, so it is larger; it is parsed as a stream
/// (only the project names are kept), so the cap bounds time, not memory.
pub const MAX_CLAUDE_JSON: u64 = 64 << 20;
/// The largest SQLite file opened.
pub const MAX_SQLITE: u64 = 64 << 20;
/// The longest string or blob SQLite returns (one provider's settings, Cursor's settings JSON).
const MAX_SQLITE_VALUE: i32 = 4 << 20;
/// Rows read per SQLite query.
pub const MAX_ROWS: usize = 1024;
/// SQLite virtual-machine steps per query (in thousands, see the progress handler).
const MAX_SQLITE_STEPS: u64 = 20_000;
/// Providers read from one cc-switch `config.json`.
const MAX_PROVIDERS: usize = 1024;
/// Files opened per scan.
pub const MAX_FILES: usize = 32_768;
/// Directory entries read per directory (unit directories, `~/.codex`).
const MAX_DIR_ENTRIES: usize = 8192;
/// Codex profile files (`~/.codex/<name>.config.toml`) read per user.
const MAX_CODEX_PROFILES: usize = 64;
/// Findings kept per uid, and in all.
pub const MAX_FINDINGS_PER_USER: usize = 256;
pub const MAX_FINDINGS: usize = 16_384;
/// inotify watches at most.
pub const MAX_WATCHES: usize = 1024;
/// The longest segment of a key name taken from a file (a provider id): longer ones are cut.
const MAX_KEY_SEGMENT: usize = 64;

/// Claude Code's base-URL settings beyond the discovery list.
const CLAUDE_EXTRA_VARIABLES: &[&str] =
    &["ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL"];

/// Cursor's `ItemTable` key holding the user's settings as JSON.
const CURSOR_APPLICATION_USER: &str = "src.vs.platform.reactivestorage.browser.reactiveStorageServiceImpl.persistentStorage.applicationUser";

/// Unit directories, most important first (a unit in /etc hides the same name below).
const SYSTEM_UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
const MANAGED_SETTINGS: &str = "/etc/claude-code/managed-settings.json";

/// A relay host named in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ConfigFinding {
    /// The user whose processes the file configures; `ANY_UID` for system-wide files.
    pub uid: u32,
    /// The URL's host only (canonical, see `discovery::url_host`).
    pub host: String,
    pub file: PathBuf,
    /// Where in the file: `env.ANTHROPIC_BASE_URL`, `model_providers.myrelay.base_url`...
    pub key: String,
    /// "claude-code", "codex", "gemini-cli", "cc-switch", "cursor" or "systemd".
    pub client: &'static str,
    /// The systemd unit, for "systemd" findings.
    pub unit: Option<String>,
    /// Loopback, unspecified or `localhost`: a local gateway.
    pub local: bool,
}

/// The outcome of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub findings: Vec<ConfigFinding>,
    /// "path: reason" for each file not read or not understood, and each limit reached.
    pub problems: Vec<String>,
    pub files_read: usize,
}

/// One passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    name: String,
    uid: u32,
    home: PathBuf,
}

/// Which entries of a watched directory matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    Exact(&'static [&'static str]),
    Suffix(&'static [&'static str]),
}

impl Names {
    fn matches(self, name: &[u8]) -> bool {
        match self {
            Names::Exact(names) => names.iter().any(|n| n.as_bytes() == name),
            Names::Suffix(suffixes) => suffixes.iter().any(|s| name.ends_with(s.as_bytes())),
        }
    }
}

const HOME_NAMES: Names = Names::Exact(&[
    ".claude",
    ".claude.json",
    ".codex",
    ".gemini",
    ".cc-switch",
    ".env",
    ".config",
]);
const CLAUDE_NAMES: Names = Names::Exact(&["settings.json", "settings.local.json"]);
const CODEX_NAMES: Names = Names::Suffix(&["config.toml"]);
const GEMINI_NAMES: Names = Names::Exact(&[".env"]);
const CC_SWITCH_NAMES: Names = Names::Exact(&["config.json", "cc-switch.db"]);
const CURSOR_NAMES: Names = Names::Exact(&["state.vscdb"]);
const MANAGED_NAMES: Names = Names::Exact(&["managed-settings.json"]);
const UNIT_NAMES: Names = Names::Suffix(&[".service", ".service.d", ".conf"]);

/// Whose file: decides the ownership rule and whether symbolic links are followed.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// A user's file: owned by this uid, or by root and world-readable; no symbolic link below
    /// the base directory.
    User(u32),
    /// A system file: owned by root (links in root's directories are followed).
    System,
}

/// Why a file was not read: absent files are normal and not reported.
enum OpenError {
    Absent,
    /// Not a regular file (a FIFO, a device, a masked unit's link to /dev/null): skipped quietly.
    NotRegular,
    Refused(String),
}

pub struct RelayFiles {
    root: PathBuf,
    passwd: PathBuf,
    variables: Vec<String>,
    /// `variables` plus Claude Code's extra ones.
    claude_variables: Vec<String>,
    findings: Vec<ConfigFinding>,
    /// The directories the last scan looked into, with the names that matter there.
    watch_dirs: Vec<(PathBuf, Names)>,
    inotify: Option<Inotify>,
    /// Tests cannot chown: files under these paths (longest prefix) owned by the test's own uid
    /// count as owned by the given uid.
    #[cfg(test)]
    test_owners: Vec<(PathBuf, u32)>,
}

impl std::fmt::Debug for RelayFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayFiles")
            .field("root", &self.root)
            .field("findings", &self.findings.len())
            .field("watching", &self.inotify.as_ref().map(|i| i.watches.len()))
            .finish()
    }
}

impl RelayFiles {
    /// `root` is "/" in production (tests build a fake tree); the passwd file is
    /// `root/etc/passwd` unless `with_passwd` names another. Variables failing
    /// `check_variable_name` are dropped (logged).
    pub fn new(root: PathBuf, variables: &[String]) -> RelayFiles {
        let mut kept: Vec<String> = Vec::new();
        for v in variables {
            match check_variable_name(v) {
                Ok(()) if !kept.contains(v) => kept.push(v.clone()),
                Ok(()) => {}
                Err(e) => log::warn!("configuration-file discovery: {e}"),
            }
        }
        let mut claude_variables = kept.clone();
        for v in CLAUDE_EXTRA_VARIABLES {
            if !claude_variables.iter().any(|k| k == v) {
                claude_variables.push(v.to_string());
            }
        }
        RelayFiles {
            passwd: root.join("etc/passwd"),
            root,
            variables: kept,
            claude_variables,
            findings: Vec::new(),
            watch_dirs: Vec::new(),
            inotify: None,
            #[cfg(test)]
            test_owners: Vec::new(),
        }
    }

    /// With discovery's default variables.
    pub fn with_default_variables(root: PathBuf) -> RelayFiles {
        let vars: Vec<String> = DEFAULT_VARIABLES.iter().map(|v| v.to_string()).collect();
        RelayFiles::new(root, &vars)
    }

    /// Read users from this passwd file instead (a path on the host, not below `root`).
    pub fn with_passwd(mut self, passwd: PathBuf) -> RelayFiles {
        self.passwd = passwd;
        self
    }

    /// Read every user's files and the system ones; the findings replace the previous set.
    pub fn scan(&mut self) -> ScanReport {
        let mut scan = Scan {
            files: self,
            findings: Vec::new(),
            problems: Vec::new(),
            files_read: 0,
            files_opened: 0,
            watch_dirs: Vec::new(),
            uid_by_name: HashMap::new(),
        };
        let users = scan.users();
        scan.managed_settings();
        scan.system_units();
        for user in &users {
            scan.user(user);
        }
        let Scan {
            mut findings,
            mut problems,
            files_read,
            watch_dirs,
            ..
        } = scan;
        findings.sort();
        findings.dedup();
        bound_findings(&mut findings, &mut problems);
        self.findings = findings.clone();
        self.watch_dirs = watch_dirs;
        ScanReport {
            findings,
            problems,
            files_read,
        }
    }

    /// The findings that apply to `uid`: its own and the system-wide ones.
    pub fn hosts_for_uid(&self, uid: u32) -> impl Iterator<Item = &ConfigFinding> {
        self.findings
            .iter()
            .filter(move |f| f.uid == uid || f.uid == ANY_UID)
    }

    /// The finding that names `host` for `uid` (the user's own first, then a system-wide one).
    /// `host` is compared canonically and exactly: no parent-domain matching.
    pub fn finding(&self, uid: u32, host: &str) -> Option<&ConfigFinding> {
        finding_in(&self.findings, uid, host)
    }
}

/// The finding among `findings` that names `host` for `uid` (see `RelayFiles::finding`): for
/// a scan's snapshot held elsewhere (the daemon scans on a thread of its own).
pub fn finding_in<'a>(
    findings: &'a [ConfigFinding],
    uid: u32,
    host: &str,
) -> Option<&'a ConfigFinding> {
    let host = canonical_host(host)?;
    let mut system = None;
    for f in findings.iter().filter(|f| f.host == host) {
        if f.uid == uid {
            return Some(f);
        }
        if f.uid == ANY_UID && system.is_none() {
            system = Some(f);
        }
    }
    system
}

impl RelayFiles {
    /// All findings of the last scan.
    pub fn findings(&self) -> &[ConfigFinding] {
        &self.findings
    }

    /// Watch the directories the last scan looked into (call after `scan`, and again after each
    /// rescan so new directories are watched). Returns the number of directories watched;
    /// beyond `MAX_WATCHES` the rest are not (logged).
    pub fn watch(&mut self) -> io::Result<usize> {
        if self.inotify.is_none() {
            self.inotify = Some(Inotify::new()?);
        }
        let inotify = self.inotify.as_mut().expect("created above");
        let mut kept: HashMap<i32, (PathBuf, Names)> = HashMap::new();
        let mut seen: HashSet<&Path> = HashSet::new();
        let mut skipped = 0usize;
        for (dir, names) in &self.watch_dirs {
            if !seen.insert(dir) {
                continue;
            }
            if kept.len() >= MAX_WATCHES {
                skipped += 1;
                continue;
            }
            match inotify.add(dir) {
                Ok(wd) => {
                    kept.insert(wd, (dir.clone(), *names));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
                Err(e) => log::debug!("{}: not watched: {e}", dir.display()),
            }
        }
        if skipped > 0 {
            log::warn!(
                "configuration-file discovery: {skipped} directories not watched (limit {MAX_WATCHES}); \
                 changes there are seen at the next periodic scan"
            );
        }
        let stale: Vec<i32> = inotify
            .watches
            .keys()
            .filter(|wd| !kept.contains_key(wd))
            .copied()
            .collect();
        for wd in stale {
            inotify.remove(wd);
        }
        inotify.watches = kept;
        Ok(inotify.watches.len())
    }

    /// Drain the pending inotify events without blocking: true when one concerns a file the
    /// scan reads (or the queue overflowed, or a watched directory went away). The caller then
    /// rescans (debounced) and calls `watch` again.
    pub fn changed(&mut self) -> bool {
        self.inotify.as_mut().is_some_and(Inotify::drain)
    }

    /// The inotify descriptor, readable when events are pending (for tokio's `AsyncFd`).
    pub fn as_raw_fd(&self) -> Option<RawFd> {
        self.inotify.as_ref().map(|i| i.fd.as_raw_fd())
    }

    /// `abs` (an absolute path on the host) below `root`; None for a relative path or one with
    /// `..`.
    fn host_path(&self, abs: &Path) -> Option<PathBuf> {
        let rel = abs.strip_prefix("/").ok()?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        Some(self.root.join(rel))
    }

    /// The owner a file counts as having.
    fn owner_of(&self, _path: &Path, st_uid: u32) -> u32 {
        // SAFETY: geteuid cannot fail.
        #[cfg(test)]
        if st_uid == unsafe { libc::geteuid() }
            && let Some((_, uid)) = self
                .test_owners
                .iter()
                .filter(|(p, _)| _path.starts_with(p))
                .max_by_key(|(p, _)| p.as_os_str().len())
        {
            return *uid;
        }
        st_uid
    }
}

/// Keep at most `MAX_FINDINGS_PER_USER` per uid and `MAX_FINDINGS` in all (findings are sorted
/// by uid, so each uid's first ones stay).
fn bound_findings(findings: &mut Vec<ConfigFinding>, problems: &mut Vec<String>) {
    let mut per_uid: HashMap<u32, usize> = HashMap::new();
    let mut over: BTreeMap<u32, usize> = BTreeMap::new();
    findings.retain(|f| {
        let n = per_uid.entry(f.uid).or_default();
        *n += 1;
        if *n > MAX_FINDINGS_PER_USER {
            *over.entry(f.uid).or_default() += 1;
            false
        } else {
            true
        }
    });
    for (uid, n) in over {
        problems.push(format!(
            "uid {uid}: {n} findings beyond the first {MAX_FINDINGS_PER_USER} ignored"
        ));
    }
    if findings.len() > MAX_FINDINGS {
        problems.push(format!(
            "{} findings beyond the first {MAX_FINDINGS} ignored",
            findings.len() - MAX_FINDINGS
        ));
        findings.truncate(MAX_FINDINGS);
    }
}

/// A host as `url_host` keeps it: lower case, no trailing dot, addresses canonical.
fn canonical_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.to_canonical().to_string());
    }
    Some(host.to_ascii_lowercase())
}

/// One scan's state.
struct Scan<'a> {
    files: &'a RelayFiles,
    findings: Vec<ConfigFinding>,
    problems: Vec<String>,
    files_read: usize,
    files_opened: usize,
    watch_dirs: Vec<(PathBuf, Names)>,
    /// Every passwd name (with a home or not: a unit's `User=` may name a system account).
    uid_by_name: HashMap<String, u32>,
}

/// What a parser found: a key and the host of its value (None: the value is not a URL).
type Found = Vec<(String, Option<String>)>;

impl Scan<'_> {
    fn problem(&mut self, path: &Path, reason: impl std::fmt::Display) {
        self.problems.push(format!("{}: {reason}", path.display()));
    }

    /// Record what a parser found in `file`.
    fn record(
        &mut self,
        uid: u32,
        file: &Path,
        client: &'static str,
        unit: Option<&str>,
        found: Found,
    ) {
        for (key, host) in found {
            match host {
                Some(host) => self.findings.push(ConfigFinding {
                    uid,
                    local: is_local(&host),
                    host,
                    file: file.to_path_buf(),
                    key,
                    client,
                    unit: unit.map(str::to_owned),
                }),
                None => self.problem(file, format_args!("{key}: not a URL (value not shown)")),
            }
        }
    }

    /// The users of the passwd file whose home exists and is theirs, canonical.
    fn users(&mut self) -> Vec<User> {
        let passwd = self.files.passwd.clone();
        let text = match std::fs::File::open(&passwd).and_then(|f| {
            let mut s = String::new();
            f.take(16 << 20).read_to_string(&mut s)?;
            Ok(s)
        }) {
            Ok(text) => text,
            Err(e) => {
                self.problem(&passwd, format_args!("not read: {e}"));
                return Vec::new();
            }
        };
        let (entries, dropped) = parse_passwd(&text);
        if dropped > 0 {
            self.problem(
                &passwd,
                format_args!("{dropped} users beyond the first {MAX_USERS} not read"),
            );
        }
        self.uid_by_name = entries.iter().map(|u| (u.name.clone(), u.uid)).collect();
        let mut users = Vec::new();
        let mut homes = HashSet::new();
        for entry in entries {
            let Some(home) = self.files.host_path(&entry.home) else {
                continue;
            };
            let Ok(home) = home.canonicalize() else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&home) else {
                continue;
            };
            if !meta.is_dir() || self.files.owner_of(&home, meta.uid()) != entry.uid {
                continue;
            }
            if !homes.insert(home.clone()) {
                continue;
            }
            users.push(User { home, ..entry });
        }
        users
    }

    /// Open `base/rel` as `owner`'s file and read it whole (at most `cap` bytes).
    fn read(&mut self, base: &Path, rel: &str, owner: Owner, cap: u64) -> Option<Vec<u8>> {
        let path = base.join(rel);
        let mut file = self.open(base, rel, owner, cap)?;
        let mut buf = Vec::new();
        match (&mut file).take(cap + 1).read_to_end(&mut buf) {
            Ok(n) if n as u64 > cap => {
                buf.fill(0);
                self.problem(&path, format_args!("larger than {cap} bytes; not read"));
                None
            }
            Ok(_) => {
                self.files_read += 1;
                Some(buf)
            }
            Err(e) => {
                buf.fill(0);
                self.problem(&path, format_args!("not read: {e}"));
                None
            }
        }
    }

    /// Open `base/rel` for `owner` and check it: a regular file, at most `cap` bytes, owned as
    /// the rule for `owner` says. Absent files give None quietly; others are reported.
    fn open(&mut self, base: &Path, rel: &str, owner: Owner, cap: u64) -> Option<File> {
        let path = base.join(rel);
        if self.files_opened >= MAX_FILES {
            if self.files_opened == MAX_FILES {
                self.problems
                    .push(format!("more than {MAX_FILES} files: the rest not read"));
                self.files_opened += 1;
            }
            return None;
        }
        let opened = match owner {
            Owner::User(_) => open_beneath(base, rel),
            // Root's directories: links are followed (a unit linked into /etc), the file is
            // still checked as root's.
            Owner::System => open_system(&path),
        };
        let file = match opened {
            Ok(f) => f,
            Err(OpenError::Absent | OpenError::NotRegular) => return None,
            Err(OpenError::Refused(reason)) => {
                self.problem(&path, reason);
                return None;
            }
        };
        self.files_opened += 1;
        match self.check(&file, &path, owner, cap) {
            Ok(()) => Some(file),
            Err(None) => None,
            Err(Some(reason)) => {
                self.problem(&path, reason);
                None
            }
        }
    }

    /// The checks on an opened file. Err(None): skip quietly (not a regular file: a masked unit
    /// is a link to /dev/null).
    fn check(
        &self,
        file: &File,
        path: &Path,
        owner: Owner,
        cap: u64,
    ) -> Result<(), Option<String>> {
        let meta = file
            .metadata()
            .map_err(|e| Some(format!("not examined: {e}")))?;
        if !meta.is_file() {
            return Err(None);
        }
        let file_owner = self.files.owner_of(path, meta.uid());
        let trusted = match owner {
            Owner::User(uid) => file_owner == uid || (file_owner == 0 && meta.mode() & 0o004 != 0),
            Owner::System => file_owner == 0,
        };
        if !trusted {
            return Err(Some(match owner {
                Owner::User(uid) => {
                    format!("owned by uid {file_owner}, not by uid {uid} (or root); ignored")
                }
                Owner::System => format!("owned by uid {file_owner}, not by root; ignored"),
            }));
        }
        if meta.len() > cap {
            return Err(Some(format!("larger than {cap} bytes; not read")));
        }
        Ok(())
    }

    fn managed_settings(&mut self) {
        let Some(path) = self.files.host_path(Path::new(MANAGED_SETTINGS)) else {
            return;
        };
        let (dir, name) = split(&path);
        self.watch_dirs.push((dir.to_path_buf(), MANAGED_NAMES));
        if let Some(mut bytes) = self.read(dir, name, Owner::System, MAX_FILE) {
            let found = claude_settings(&bytes, &self.files.claude_variables);
            bytes.fill(0);
            self.parsed(ANY_UID, &path, "claude-code", None, found);
        }
    }

    /// Record a parser's result, or report its error.
    fn parsed(
        &mut self,
        uid: u32,
        path: &Path,
        client: &'static str,
        unit: Option<&str>,
        found: Result<Found, String>,
    ) {
        match found {
            Ok(found) => self.record(uid, path, client, unit, found),
            Err(reason) => self.problem(path, reason),
        }
    }

    fn user(&mut self, user: &User) {
        let home = user.home.as_path();
        let owner = Owner::User(user.uid);
        self.watch_dirs.push((home.to_path_buf(), HOME_NAMES));
        self.claude(user);
        self.codex(user);
        for rel in [".gemini/.env", ".env"] {
            if let Some(mut bytes) = self.read(home, rel, owner, MAX_FILE) {
                let found = dotenv(&bytes, &self.files.variables);
                bytes.fill(0);
                self.record(user.uid, &home.join(rel), "gemini-cli", None, found);
            }
        }
        self.watch_dirs.push((home.join(".gemini"), GEMINI_NAMES));
        self.cc_switch(user);
        self.cursor(user);
        self.user_units(user);
    }

    fn claude_settings_in(&mut self, base: &Path, dir: &str, uid: u32) {
        self.watch_dirs.push((base.join(dir), CLAUDE_NAMES));
        for name in ["settings.json", "settings.local.json"] {
            let rel = format!("{dir}/{name}");
            if let Some(mut bytes) = self.read(base, &rel, Owner::User(uid), MAX_FILE) {
                let found = claude_settings(&bytes, &self.files.claude_variables);
                bytes.fill(0);
                self.parsed(uid, &base.join(&rel), "claude-code", None, found);
            }
        }
    }

    fn claude(&mut self, user: &User) {
        self.claude_settings_in(&user.home, ".claude", user.uid);
        let path = user.home.join(".claude.json");
        let Some(file) = self.open(
            &user.home,
            ".claude.json",
            Owner::User(user.uid),
            MAX_CLAUDE_JSON,
        ) else {
            return;
        };
        self.files_read += 1;
        let reader = io::BufReader::new(file.take(MAX_CLAUDE_JSON));
        let projects = match claude_projects(reader) {
            Ok(p) => p,
            Err(reason) => return self.problem(&path, reason),
        };
        if projects.dropped > 0 {
            self.problem(
                &path,
                format_args!(
                    "{} projects beyond the first {MAX_PROJECTS} not read",
                    projects.dropped
                ),
            );
        }
        let mut seen = HashSet::from([user.home.clone()]); // ~/.claude is read above
        for project in projects.dirs {
            let Some(dir) = self.files.host_path(Path::new(&project)) else {
                continue;
            };
            // The project directory itself is followed (it may sit below a linked path); below
            // it nothing is, and the files must be the user's.
            let Ok(dir) = dir.canonicalize() else {
                continue;
            };
            if !seen.insert(dir.clone()) {
                continue;
            }
            self.claude_settings_in(&dir, ".claude", user.uid);
        }
    }

    fn codex(&mut self, user: &User) {
        let home = user.home.as_path();
        let owner = Owner::User(user.uid);
        self.watch_dirs.push((home.join(".codex"), CODEX_NAMES));
        let mut names = vec!["config.toml".to_string()];
        // Codex 0.134+: one file per profile, `<name>.config.toml`.
        if let Some(entries) = self.list_dir(home, ".codex", owner) {
            let mut profiles: Vec<String> = entries
                .into_iter()
                .filter(|(n, is_file)| *is_file && n.ends_with(".config.toml"))
                .map(|(n, _)| n)
                .collect();
            profiles.sort();
            if profiles.len() > MAX_CODEX_PROFILES {
                self.problem(
                    &home.join(".codex"),
                    format_args!(
                        "{} profile files beyond the first {MAX_CODEX_PROFILES} not read",
                        profiles.len() - MAX_CODEX_PROFILES
                    ),
                );
                profiles.truncate(MAX_CODEX_PROFILES);
            }
            names.extend(profiles);
        }
        for name in names {
            let rel = format!(".codex/{name}");
            if let Some(mut bytes) = self.read(home, &rel, owner, MAX_FILE) {
                let found = codex_config(&bytes);
                bytes.fill(0);
                self.parsed(user.uid, &home.join(&rel), "codex", None, found);
            }
        }
    }

    /// The entries of `base/rel` (name, is a regular file — links are not), reached without
    /// following links for a user's directory. None when absent or unreadable (reported).
    fn list_dir(&mut self, base: &Path, rel: &str, owner: Owner) -> Option<Vec<(String, bool)>> {
        let path = base.join(rel);
        let iter = match owner {
            Owner::User(_) => {
                let dir = match open_dir_beneath(base, rel) {
                    Ok(d) => d,
                    Err(OpenError::Absent | OpenError::NotRegular) => return None,
                    Err(OpenError::Refused(reason)) => {
                        self.problem(&path, reason);
                        return None;
                    }
                };
                // Listing through the descriptor: the directory checked is the one read.
                std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            }
            Owner::System => std::fs::read_dir(&path),
        };
        let iter = match iter {
            Ok(i) => i,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.problem(&path, format_args!("not listed: {e}"));
                return None;
            }
        };
        let mut out = Vec::new();
        for entry in iter.flatten() {
            if out.len() >= MAX_DIR_ENTRIES {
                self.problem(
                    &path,
                    format_args!("more than {MAX_DIR_ENTRIES} entries: the rest not read"),
                );
                break;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(ft) = entry.file_type() else { continue };
            let is_file = ft.is_file() || (ft.is_symlink() && matches!(owner, Owner::System));
            if ft.is_dir() || is_file {
                out.push((name, is_file));
            }
        }
        out.sort();
        Some(out)
    }

    fn cc_switch(&mut self, user: &User) {
        let home = user.home.as_path();
        let owner = Owner::User(user.uid);
        self.watch_dirs
            .push((home.join(".cc-switch"), CC_SWITCH_NAMES));
        let rel = ".cc-switch/config.json";
        if let Some(mut bytes) = self.read(home, rel, owner, MAX_FILE) {
            let found = cc_switch_config(&bytes, &self.files.claude_variables);
            bytes.fill(0);
            self.parsed(user.uid, &home.join(rel), "cc-switch", None, found);
        }
        let rel = ".cc-switch/cc-switch.db";
        if self.open(home, rel, owner, MAX_SQLITE).is_some() {
            self.files_read += 1;
            let path = home.join(rel);
            let found = cc_switch_db(&path, &self.files.claude_variables);
            self.parsed(user.uid, &path, "cc-switch", None, found);
        }
    }

    fn cursor(&mut self, user: &User) {
        let home = user.home.as_path();
        let dir = ".config/Cursor/User/globalStorage";
        self.watch_dirs.push((home.join(dir), CURSOR_NAMES));
        let rel = format!("{dir}/state.vscdb");
        if self
            .open(home, &rel, Owner::User(user.uid), MAX_SQLITE)
            .is_some()
        {
            self.files_read += 1;
            let path = home.join(&rel);
            let found = cursor_db(&path);
            self.parsed(user.uid, &path, "cursor", None, found);
        }
    }

    fn system_units(&mut self) {
        let mut units: BTreeMap<String, UnitFiles> = BTreeMap::new();
        for dir in SYSTEM_UNIT_DIRS {
            let Some(dir) = self.files.host_path(Path::new(dir)) else {
                continue;
            };
            self.collect_units(&dir, "", Owner::System, &mut units);
        }
        let by_name = std::mem::take(&mut self.uid_by_name);
        self.read_units(units, Owner::System, |user, dynamic| match user {
            _ if dynamic => ANY_UID,
            None => 0,
            Some(u) => u
                .parse::<u32>()
                .ok()
                .or_else(|| by_name.get(u).copied())
                .unwrap_or(ANY_UID),
        });
    }

    /// A user's own units, `~/.config/systemd/user/`.
    fn user_units(&mut self, user: &User) {
        let mut units = BTreeMap::new();
        let owner = Owner::User(user.uid);
        self.collect_units(&user.home, ".config/systemd/user", owner, &mut units);
        self.read_units(units, owner, |_, _| user.uid);
    }

    /// Add the unit files and drop-ins of the directory `base/rel`. A unit file, or a drop-in of
    /// the same name, found in a more important directory (collected earlier) wins.
    fn collect_units(
        &mut self,
        base: &Path,
        rel: &str,
        owner: Owner,
        units: &mut BTreeMap<String, UnitFiles>,
    ) {
        let join = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                format!("{a}/{b}")
            }
        };
        self.watch_dirs.push((base.join(rel), UNIT_NAMES));
        let Some(entries) = self.list_dir(base, rel, owner) else {
            return;
        };
        for (name, is_file) in entries {
            if is_file && name.ends_with(".service") {
                let unit = units.entry(name.clone()).or_default();
                if unit.main.is_none() {
                    unit.main = Some((base.to_path_buf(), join(rel, &name)));
                }
            } else if !is_file && name.ends_with(".service.d") {
                let drop_rel = join(rel, &name);
                self.watch_dirs.push((base.join(&drop_rel), UNIT_NAMES));
                let Some(confs) = self.list_dir(base, &drop_rel, owner) else {
                    continue;
                };
                let unit = units
                    .entry(name.trim_end_matches(".d").to_string())
                    .or_default();
                for (conf, is_file) in confs {
                    if is_file && conf.ends_with(".conf") {
                        let rel = join(&drop_rel, &conf);
                        unit.dropins
                            .entry(conf)
                            .or_insert_with(|| (base.to_path_buf(), rel));
                    }
                }
            }
        }
    }

    /// Read each unit's files (the unit file, then its drop-ins by name) and record its
    /// variables, scoped by `uid_of(User=, DynamicUser=)`.
    fn read_units(
        &mut self,
        units: BTreeMap<String, UnitFiles>,
        owner: Owner,
        uid_of: impl Fn(Option<&str>, bool) -> u32,
    ) {
        for (name, files) in units {
            let mut settings = UnitSettings::default();
            for (base, rel) in files.main.iter().chain(files.dropins.values()) {
                if let Some(mut bytes) = self.read(base, rel, owner, MAX_FILE) {
                    parse_unit(
                        &bytes,
                        &self.files.variables,
                        &base.join(rel),
                        &mut settings,
                    );
                    bytes.fill(0);
                }
            }
            let uid = uid_of(settings.user.as_deref(), settings.dynamic_user);
            for (file, key, host) in settings.env {
                self.record(uid, &file, "systemd", Some(&name), vec![(key, host)]);
            }
        }
    }
}

/// A unit's files: (base directory, path below it) of its unit file and of its drop-ins by name.
#[derive(Debug, Default)]
struct UnitFiles {
    main: Option<(PathBuf, String)>,
    dropins: BTreeMap<String, (PathBuf, String)>,
}

/// `path`'s directory and file name.
fn split(path: &Path) -> (&Path, &str) {
    (
        path.parent().unwrap_or(Path::new("/")),
        path.file_name().and_then(|n| n.to_str()).unwrap_or(""),
    )
}

fn cstring(s: &[u8]) -> Result<CString, OpenError> {
    CString::new(s).map_err(|_| OpenError::Refused("a NUL byte in the path".into()))
}

fn open_error(errno: i32, what: &str) -> OpenError {
    match errno {
        libc::ENOENT => OpenError::Absent,
        libc::ELOOP => OpenError::Refused(format!("{what} is a symbolic link; not followed")),
        libc::ENOTDIR => OpenError::Refused(format!("{what} is not a directory")),
        e => OpenError::Refused(format!(
            "{what} not opened: {}",
            io::Error::from_raw_os_error(e)
        )),
    }
}

/// Open the directory `base` (links followed: the caller trusts it), then each component of
/// `rel` with `O_NOFOLLOW`; the last with `last_flags`.
fn walk_beneath(base: &Path, rel: &str, last_flags: i32) -> Result<OwnedFd, OpenError> {
    let c = cstring(base.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(open_error(
            io::Error::last_os_error().raw_os_error().unwrap_or(0),
            "the base directory",
        ));
    }
    // SAFETY: fd was just opened and is owned here.
    let mut dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(OpenError::Refused("a relative path with . or ..".into()));
    }
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let flags = libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | if last {
                last_flags
            } else {
                libc::O_RDONLY | libc::O_DIRECTORY
            };
        let c = cstring(part.as_bytes())?;
        // SAFETY: dir is an open directory; c is NUL-terminated; the result is checked.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            let mut errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            // O_DIRECTORY on a link gives ENOTDIR: say which it is.
            if errno == libc::ENOTDIR && is_symlink_at(&dir, &c) {
                errno = libc::ELOOP;
            }
            return Err(open_error(errno, &format!("'{}'", parts[..=i].join("/"))));
        }
        // SAFETY: as above.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(dir)
}

/// Whether `name` in the directory `dir` is a symbolic link.
fn is_symlink_at(dir: &OwnedFd, name: &CString) -> bool {
    // SAFETY: a zeroed stat is a valid out-buffer; dir is open, name NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Open the file `base/rel` for reading without following a link below `base`. The last
/// component is first opened with `O_PATH` and examined: only a regular file is opened for
/// reading, so a FIFO or a device node planted there is never opened (no stall, no side effect).
fn open_beneath(base: &Path, rel: &str) -> Result<File, OpenError> {
    reopen_regular(walk_beneath(base, rel, libc::O_PATH)?)
}

/// Open a system file (links followed), the same way.
fn open_system(path: &Path) -> Result<File, OpenError> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(open_error(
            io::Error::last_os_error().raw_os_error().unwrap_or(0),
            "the file",
        ));
    }
    // SAFETY: fd was just opened and is owned here.
    reopen_regular(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open an `O_PATH` descriptor's file for reading if it is a regular file: through
/// /proc/self/fd, which reaches the very inode examined (no path is resolved again).
fn reopen_regular(fd: OwnedFd) -> Result<File, OpenError> {
    // SAFETY: a zeroed stat is a valid out-buffer; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(OpenError::Refused(format!(
            "not examined: {}",
            io::Error::last_os_error()
        )));
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => {}
        // O_PATH with O_NOFOLLOW opens a link itself rather than failing.
        libc::S_IFLNK => {
            return Err(OpenError::Refused("a symbolic link; not followed".into()));
        }
        _ => return Err(OpenError::NotRegular),
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| OpenError::Refused(format!("not opened: {e}")))
}

/// Open the directory `base/rel` without following a link below `base`.
fn open_dir_beneath(base: &Path, rel: &str) -> Result<OwnedFd, OpenError> {
    walk_beneath(base, rel, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// The users of a passwd file (at most `MAX_USERS`), and how many more there were.
fn parse_passwd(text: &str) -> (Vec<User>, usize) {
    let mut users = Vec::new();
    let mut dropped = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || line.starts_with('#') {
            continue;
        }
        let Ok(uid) = fields[2].parse::<u32>() else {
            continue;
        };
        if fields[5].is_empty() || !fields[5].starts_with('/') {
            continue;
        }
        if users.len() >= MAX_USERS {
            dropped += 1;
            continue;
        }
        users.push(User {
            name: fields[0].to_string(),
            uid,
            home: PathBuf::from(fields[5]),
        });
    }
    (users, dropped)
}

/// A JSON syntax error, without the text: serde_json's messages for a `Value` name the line and
/// column and what was expected, never the input.
fn json_error(e: serde_json::Error) -> String {
    format!("not valid JSON: {e}")
}

/// A TOML error, without the text: `toml`'s `Display` quotes the source line, so only its
/// message and the line of its span are used.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e.span().map(|s| {
        let before = &text.as_bytes()[..s.start.min(text.len())];
        before.iter().filter(|b| **b == b'\n').count() + 1
    });
    let mut message: String = e.message().chars().take(120).collect();
    message.retain(|c| !c.is_control());
    match line {
        Some(line) => format!("not valid TOML: line {line}: {message}"),
        None => format!("not valid TOML: {message}"),
    }
}

/// Prefixes of API keys: an id starting so was probably pasted in the wrong field.
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "AIza", "ghp_", "xai-", "gsk_", "pk-", "Bearer",
];

/// A key segment taken from a file (a provider or profile id): printable and short. An id that
/// looks like an API key, or is too long to be a name, is not kept.
fn segment(s: &str) -> String {
    if s.chars().count() > MAX_KEY_SEGMENT || KEY_PREFIXES.iter().any(|p| s.starts_with(p)) {
        return "<id not shown>".into();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Add `key` with the host of `value`; an empty value is "not set" and skipped.
fn push_url(out: &mut Found, key: String, value: &str) {
    if !value.trim().is_empty() {
        out.push((key, url_host(value)));
    }
}

/// Add `key` for a JSON value: a string as `push_url`, any other value as not a URL (null is
/// "not set").
fn push_json(out: &mut Found, key: String, v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => push_url(out, key, s),
        serde_json::Value::Null => {}
        _ => out.push((key, None)),
    }
}

/// The wanted variables of a JSON `env` object, as `prefix.NAME`.
fn env_object(env: &serde_json::Value, wanted: &[String], prefix: &str, out: &mut Found) {
    let Some(env) = env.as_object() else { return };
    for name in wanted {
        if let Some(v) = env.get(name.as_str()) {
            push_json(out, format!("{prefix}.{name}"), v);
        }
    }
}

/// Claude Code's settings.json: the base-URL variables of its `env` object.
fn claude_settings(bytes: &[u8], wanted: &[String]) -> Result<Found, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(json_error)?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let mut out = Found::new();
    if let Some(env) = v.get("env") {
        env_object(env, wanted, "env", &mut out);
    }
    Ok(out)
}

/// The project directories `~/.claude.json` lists (the keys of its `projects` object).
#[derive(Debug, Default)]
struct ClaudeProjects {
    dirs: Vec<String>,
    dropped: usize,
}

/// Read `~/.claude.json` as a stream, keeping only the keys of `projects` (the file also holds
/// an account and per-project history: everything else is skipped unread).
fn claude_projects<R: Read>(reader: R) -> Result<ClaudeProjects, String> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    struct Top;
    impl<'de> Visitor<'de> for Top {
        type Value = ClaudeProjects;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaudeProjects, A::Error> {
            let mut out = ClaudeProjects::default();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "projects" {
                    out = map.next_value::<ProjectsSeed>()?.0;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    struct ProjectsSeed(ClaudeProjects);
    impl<'de> serde::Deserialize<'de> for ProjectsSeed {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Keys;
            impl<'de> Visitor<'de> for Keys {
                type Value = ClaudeProjects;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object of projects")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<ClaudeProjects, A::Error> {
                    let mut out = ClaudeProjects::default();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<IgnoredAny>()?;
                        if out.dirs.len() < MAX_PROJECTS {
                            out.dirs.push(key);
                        } else {
                            out.dropped += 1;
                        }
                    }
                    Ok(out)
                }
            }
            d.deserialize_map(Keys).map(ProjectsSeed)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let out = de.deserialize_map(Top).map_err(json_error)?;
    de.end().map_err(json_error)?;
    Ok(out)
}

/// Codex's config.toml (or a profile file): provider base URLs, the top-level and per-profile
/// base-URL overrides.
fn codex_config(bytes: &[u8]) -> Result<Found, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 (at byte {})", e.valid_up_to()))?;
    codex_toml(text, "")
}

fn codex_toml(text: &str, prefix: &str) -> Result<Found, String> {
    let table: toml::Table = text.parse().map_err(|e| toml_error(text, &e))?;
    let mut out = Found::new();
    let push = |out: &mut Found, key: String, v: &toml::Value| match v.as_str() {
        Some(s) => push_url(out, key, s),
        None => out.push((key, None)),
    };
    for key in ["openai_base_url", "chatgpt_base_url"] {
        if let Some(v) = table.get(key) {
            push(&mut out, format!("{prefix}{key}"), v);
        }
    }
    if let Some(providers) = table.get("model_providers").and_then(|v| v.as_table()) {
        for (id, p) in providers {
            if let Some(v) = p.as_table().and_then(|p| p.get("base_url")) {
                let key = format!("{prefix}model_providers.{}.base_url", segment(id));
                push(&mut out, key, v);
            }
        }
    }
    if let Some(profiles) = table.get("profiles").and_then(|v| v.as_table()) {
        for (id, p) in profiles {
            let Some(p) = p.as_table() else { continue };
            for (k, v) in p {
                if k.ends_with("base_url") {
                    let key = format!("{prefix}profiles.{}.{}", segment(id), segment(k));
                    push(&mut out, key, v);
                }
            }
        }
    }
    Ok(out)
}

/// The wanted variables of a dotenv file: `KEY=value`, optional `export `, single or double
/// quotes, `#` comments (whole-line, or after whitespace in an unquoted value). Malformed lines
/// are skipped like the clients' loaders do.
fn dotenv(bytes: &[u8], wanted: &[String]) -> Found {
    let mut out = Found::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|r| r.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if !wanted.iter().any(|w| w == name) {
            continue;
        }
        let value = value.trim_start();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &value[1..];
                inner.find(q).map_or(inner, |end| &inner[..end])
            }
            _ => {
                let end = value
                    .char_indices()
                    .find(|&(i, c)| c == '#' && value[..i].ends_with([' ', '\t']))
                    .map_or(value.len(), |(i, _)| i);
                value[..end].trim_end()
            }
        };
        push_url(&mut out, name.to_string(), value);
    }
    out
}

/// One cc-switch provider's `settingsConfig`: `env` (Claude Code, Gemini CLI) and `config` (for
/// Codex, the config.toml text; for others an object, not read).
fn cc_switch_provider(
    app: &str,
    id: &str,
    settings: &serde_json::Value,
    wanted: &[String],
    out: &mut Found,
) {
    let prefix = format!("{}.providers.{}", segment(app), segment(id));
    if let Some(env) = settings.get("env") {
        env_object(env, wanted, &format!("{prefix}.env"), out);
    }
    if let Some(config) = settings.get("config").and_then(|c| c.as_str()) {
        match codex_toml(config, &format!("{prefix}.config.")) {
            Ok(found) => out.extend(found),
            Err(reason) => out.push((format!("{prefix}.config ({reason})"), None)),
        }
    }
}

/// cc-switch's config.json: v2 `{"claude": {"providers": {id: {"settingsConfig": ...}}}, ...}`
/// or v1 `{"providers": {...}, "current": id}` (Claude only).
fn cc_switch_config(bytes: &[u8], wanted: &[String]) -> Result<Found, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(json_error)?;
    let top = v.as_object().ok_or("not a JSON object")?;
    let apps: Vec<(&str, &serde_json::Value)> =
        if top.get("providers").is_some_and(|p| p.is_object()) {
            vec![("claude", &v)]
        } else {
            top.iter().map(|(k, v)| (k.as_str(), v)).collect()
        };
    let mut out = Found::new();
    let mut n = 0;
    for (app, manager) in apps {
        let Some(providers) = manager.get("providers").and_then(|p| p.as_object()) else {
            continue;
        };
        for (id, p) in providers {
            n += 1;
            if n > MAX_PROVIDERS {
                return Ok(out);
            }
            if let Some(settings) = p.get("settingsConfig") {
                cc_switch_provider(app, id, settings, wanted, &mut out);
            }
        }
    }
    Ok(out)
}

/// The `file:` URI SQLite opens `path` by: read-only, immutable (no locks, no journal).
fn sqlite_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// SQLite's progress callback: counts thousands of steps, interrupts past the limit.
extern "C" fn sqlite_progress(steps: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the pointer is the `u64` counter `open_sqlite`'s caller keeps alive for as long as
    // the handler is set.
    let steps = unsafe { &mut *(steps as *mut u64) };
    *steps += 1;
    (*steps > MAX_SQLITE_STEPS) as libc::c_int
}

/// A read-only connection to a user's SQLite file, bounded. The file was checked by `open`
/// already; SQLite refuses a link anywhere in the path (a swap after the check).
fn with_sqlite<T>(
    path: &Path,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> Result<T, String> {
    use rusqlite::{OpenFlags, ffi};
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(sqlite_uri(path), flags)
        .map_err(|e| format!("not opened as SQLite: {e}"))?;
    let mut steps: u64 = 0;
    // SAFETY: the handle is valid while `conn` lives; the progress handler's argument is
    // `steps`, which outlives every statement run below, and the handler is removed before
    // `steps` goes out of scope.
    unsafe {
        let db = conn.handle();
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, MAX_SQLITE_VALUE);
        ffi::sqlite3_progress_handler(
            db,
            1000,
            Some(sqlite_progress),
            &mut steps as *mut u64 as *mut libc::c_void,
        );
    }
    let _ = conn.pragma_update(None, "trusted_schema", false);
    let result = f(&conn).map_err(|e| format!("not read: {e}"));
    // SAFETY: as above; removes the handler.
    unsafe { ffi::sqlite3_progress_handler(conn.handle(), 0, None, std::ptr::null_mut()) };
    result
}

/// Whether `name` is an ordinary table (not a view or virtual table a crafted file could use to
/// run code on read).
fn is_plain_table(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(sql.is_some_and(|s| {
        let s = s.trim_start().to_ascii_uppercase();
        s.starts_with("CREATE TABLE") && !s.contains("GENERATED") && !s.contains(" AS ")
    }))
}

/// A text or blob column as bytes.
fn column_bytes(row: &rusqlite::Row, i: usize) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(i)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
        _ => Vec::new(),
    })
}

/// cc-switch's database: every provider's `settings_config` JSON and its extra endpoints.
fn cc_switch_db(path: &Path, wanted: &[String]) -> Result<Found, String> {
    with_sqlite(path, |conn| {
        let mut out = Found::new();
        if is_plain_table(conn, "providers")? {
            let mut stmt = conn.prepare(&format!(
                "SELECT id, app_type, settings_config FROM providers LIMIT {MAX_ROWS}"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get::<_, Option<String>>(0)?.unwrap_or_default();
                let app: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
                let mut settings = column_bytes(row, 2)?;
                match serde_json::from_slice::<serde_json::Value>(&settings) {
                    Ok(v) => cc_switch_provider(&app, &id, &v, wanted, &mut out),
                    Err(e) => out.push((
                        format!(
                            "{}.providers.{}.settings_config ({})",
                            segment(&app),
                            segment(&id),
                            json_error(e)
                        ),
                        None,
                    )),
                }
                settings.fill(0);
            }
        }
        if is_plain_table(conn, "provider_endpoints")? {
            let mut stmt = conn.prepare(&format!(
                "SELECT provider_id, app_type, url FROM provider_endpoints LIMIT {MAX_ROWS}"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get::<_, Option<String>>(0)?.unwrap_or_default();
                let app: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
                let url = column_bytes(row, 2)?;
                let key = format!("{}.providers.{}.endpoints.url", segment(&app), segment(&id));
                push_url(&mut out, key, std::str::from_utf8(&url).unwrap_or("?"));
            }
        }
        Ok(out)
    })
}

/// Cursor's global state: the `applicationUser` JSON's base-URL overrides, and any other key
/// naming `openAIBaseUrl` whose value is a URL (as text or a JSON string).
fn cursor_db(path: &Path) -> Result<Found, String> {
    with_sqlite(path, |conn| {
        let mut out = Found::new();
        if !is_plain_table(conn, "ItemTable")? {
            return Ok(out);
        }
        let mut stmt = conn.prepare(
            "SELECT key, value FROM ItemTable WHERE key = ?1 OR key LIKE '%openAIBaseUrl%' \
             LIMIT 64",
        )?;
        let mut rows = stmt.query([CURSOR_APPLICATION_USER])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get::<_, Option<String>>(0)?.unwrap_or_default();
            let mut value = column_bytes(row, 1)?;
            if key == CURSOR_APPLICATION_USER {
                match serde_json::from_slice::<serde_json::Value>(&value) {
                    Ok(v) => {
                        for name in ["openAIBaseUrl", "anthropicBaseUrl"] {
                            if let Some(u) = v.get(name) {
                                push_json(&mut out, format!("applicationUser.{name}"), u);
                            }
                        }
                    }
                    Err(e) => out.push((format!("applicationUser ({})", json_error(e)), None)),
                }
            } else {
                let text = std::str::from_utf8(&value).unwrap_or("").trim();
                let text = serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned());
                push_url(&mut out, segment(&key), &text);
            }
            value.fill(0);
        }
        Ok(out)
    })
}

/// What a unit's files set, read in order.
#[derive(Debug, Default)]
struct UnitSettings {
    /// (file, key, host) per wanted variable, in the order set.
    env: Vec<(PathBuf, String, Option<String>)>,
    user: Option<String>,
    dynamic_user: bool,
}

/// Read one unit file or drop-in into `settings`: `User=`, `DynamicUser=` and the wanted
/// variables of `Environment=` in the `[Service]` section. An empty `Environment=` resets the
/// list, as systemd does; a variable set again replaces the earlier value.
fn parse_unit(bytes: &[u8], wanted: &[String], file: &Path, settings: &mut UnitSettings) {
    let text = String::from_utf8_lossy(bytes);
    let mut section = String::new();
    let mut logical = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        // Continuation lines: a trailing backslash joins the next line.
        logical.clear();
        let mut line = line;
        loop {
            match line.strip_suffix('\\') {
                Some(head) => {
                    logical.push_str(head);
                    logical.push(' ');
                    match lines.next() {
                        Some(next) => line = next,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(line);
                    break;
                }
            }
        }
        let l = logical.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            section = l[1..l.len() - 1].to_string();
            continue;
        }
        if section != "Service" {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "User" => settings.user = (!v.is_empty()).then(|| v.to_string()),
            "DynamicUser" => {
                settings.dynamic_user = matches!(v, "yes" | "true" | "on" | "1");
            }
            "Environment" if v.is_empty() => settings.env.clear(),
            "Environment" => {
                for word in unit_words(v) {
                    let Some((name, value)) = word.split_once('=') else {
                        continue;
                    };
                    if !wanted.iter().any(|w| w == name) {
                        continue;
                    }
                    let key = format!("Environment.{name}");
                    settings.env.retain(|(_, k, _)| *k != key);
                    if !value.trim().is_empty() {
                        settings
                            .env
                            .push((file.to_path_buf(), key, url_host(value)));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Split an `Environment=` value into assignments: whitespace separates, double or single
/// quotes group, a backslash escapes the next character.
fn unit_words(v: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// An inotify instance: non-blocking, close-on-exec; watch descriptors with the directory and
/// the names that matter there.
struct Inotify {
    fd: OwnedFd,
    watches: HashMap<i32, (PathBuf, Names)>,
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Inotify {
            // SAFETY: fd was just created and is owned here.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            watches: HashMap::new(),
        })
    }

    /// Watch a directory (not through a final symbolic link). Adding a directory already
    /// watched returns its descriptor.
    fn add(&mut self, dir: &Path) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR
            | libc::IN_DONT_FOLLOW;
        // SAFETY: a valid fd and NUL-terminated path; the result is checked.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    fn remove(&mut self, wd: i32) {
        // SAFETY: plain syscall; an already removed descriptor gives EINVAL, ignored.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
        self.watches.remove(&wd);
    }

    /// Read every pending event; true if one matters.
    fn drain(&mut self) -> bool {
        let mut relevant = false;
        // u64s: aligned for the event header.
        let mut buf = [0u64; 1024];
        loop {
            // SAFETY: reading into a buffer of the stated size.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    std::mem::size_of_val(&buf),
                )
            };
            if n <= 0 {
                break; // EAGAIN: drained (or an error: nothing more to read now)
            }
            // SAFETY: the kernel wrote n bytes into buf.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n as usize) };
            let header = std::mem::size_of::<libc::inotify_event>();
            let mut at = 0;
            while at + header <= bytes.len() {
                // SAFETY: a whole header lies at `at`; read_unaligned copes with any offset.
                let ev: libc::inotify_event = unsafe {
                    std::ptr::read_unaligned(bytes[at..].as_ptr() as *const libc::inotify_event)
                };
                let name_end = (at + header + ev.len as usize).min(bytes.len());
                let name = &bytes[at + header..name_end];
                let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
                at = name_end;
                if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                    relevant = true;
                    continue;
                }
                let Some((_, names)) = self.watches.get(&ev.wd) else {
                    continue;
                };
                if ev.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0
                    || names.matches(name)
                {
                    relevant = true;
                }
            }
        }
        relevant
    }
}

#[cfg(test)]
mod tests;
