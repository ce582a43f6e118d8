//! Which TLS libraries and executables carry the uprobes, found as processes use them.
//!
//! Uprobes live on a file (inode) and an offset. A probe for every process that maps the file
//! would trap on every `SSL_write`/`SSL_read` of every TLS server on the host (about 14 us a trap
//! on a VM), so probes come in two tiers:
//! - *client start* (`SSL_set_connect_state`, `gnutls_init`, Go's `clientHandshake`), for every
//!   process: functions a server never calls, once per client connection. The kernel program
//!   asks the daemon to read a process that is not read yet (`Record::TlsClient`, a wake-up);
//! - *per process* (writes, reads, Go's `Close`, `gnutls_deinit`): attached for one process
//!   (`UProbeScope::OneProcess`: the kernel plants the breakpoints in that process's memory
//!   only) when it is a TLS client whose connections the daemon records: a TCP connect record
//!   of it came before its client start, or a connect record flagged `FLAG_TLS_CLIENT` after.
//!   Detached when the process exits or execs.
//!
//! Files get their client start probes:
//! - at start, the TLS libraries in the usual library directories, and every TLS library or
//!   self-contained executable (Go, a Node.js with OpenSSL inside) mapped by a running process;
//! - when a program starts (exec), its executable, if it carries its own TLS;
//! - when a process is read, whatever it maps that is new (a library loaded late; a
//!   container's own libssl, reached through `/proc/PID/root` so the container's file is
//!   probed, not the host's).
//!
//! The race: the per-process probes must be in place before the first request is written, one
//! TLS handshake (a round trip and the key exchange) after the client start. The daemon is
//! woken for it and attaches in well under a millisecond of work; a request written sooner (a
//! server on the same host or LAN answering the handshake at once, on the process's very first
//! connection) is not read, and the connection keeps its SNI/DNS naming.
//!
//! Data model:
//! - `files`: file identity (device, inode as `/proc/PID/maps` shows them) -> `ProbedFile`:
//!   what was found in it (`tls_targets`), whether the probes are attached or why not, and a
//!   few of the processes seen using it (for `relaywatch status`). At most `MAX_FILES`;
//!   files that carry no TLS are remembered too, so each file is read once.
//! - `scoped`: tgid -> the per-process probes attached for it (at most `MAX_SCOPED` processes,
//!   `SCOPES_PER_SECOND` new ones a second; the kernel's `TLS_SCOPED` mirrors the keys).
//! - `ended`: processes that were read and are gone (LRU): their records still wait for the
//!   requests already on the ring buffer.
//! - `outbound`: tgids with a recorded TCP connection (LRU, reset at exec).
//!
//! Bounds: reading a file to find its TLS functions is the expensive step (up to
//! `tls_targets::MAX_FILE_SIZE`); at most `NEW_FILES_PER_MINUTE` new files are examined a
//! minute, so a user who execs thousands of fresh binaries cannot keep the daemon reading.
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::Read as _,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::HashMap as BpfHashMap,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use monitor_common::tls::{TLS_COOKIE_READ_EX, TLS_LIB_GNUTLS, TLS_LIB_GO, TLS_LIB_OPENSSL};
use serde::Serialize;

use crate::kernel::{
    tls_attach::{Attacher, ProcessProbe},
    tls_targets::{self, ProbeKind, TlsLibrary, TlsTargets},
};

/// The uprobe programs, by what they read.
pub const WRITE_PROGRAM: &str = "relaywatch_tls_write";
pub const GO_WRITE_PROGRAM: &str = "relaywatch_go_tls_write";
pub const FORGET_PROGRAM: &str = "relaywatch_tls_forget";
pub const GO_FORGET_PROGRAM: &str = "relaywatch_go_tls_forget";
pub const READ_PROGRAM: &str = "relaywatch_tls_read";
pub const READ_RETURN_PROGRAM: &str = "relaywatch_tls_read_return";
pub const CLIENT_PROGRAM: &str = "relaywatch_tls_client";
/// Every TLS program: the client start, attached for every process, then the per-process ones.
pub fn programs() -> impl Iterator<Item = &'static str> {
    std::iter::once(CLIENT_PROGRAM).chain(PROCESS_PROGRAMS.iter().copied())
}

const MAX_FILES: usize = 4096;
const MAX_PIDS_SHOWN: usize = 8;
const NEW_FILES_PER_MINUTE: u32 = 120;
/// Processes read at once, and new ones a second (each costs a few uprobe attachments).
const MAX_SCOPED: usize = 1024;
const SCOPES_PER_SECOND: u32 = 100;
const ENDED_CACHE: usize = 4096;
const OUTBOUND_CACHE: usize = 16_384;
/// Longest a process's answers are read for one request.
const ANSWERS_FOR: Duration = Duration::from_secs(30);
/// Most bytes of /proc/PID/maps read (a process with more mappings is read in part).
const MAX_MAPS_BYTES: u64 = 4 << 20;
/// Where TLS libraries usually live, probed at start.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/lib64",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FileId {
    dev: (u32, u32),
    ino: u64,
}

impl FileId {
    /// The identity of the file `meta` describes, as /proc/PID/maps shows it.
    fn of(meta: &fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt as _;
        FileId {
            dev: (libc::major(meta.dev()), libc::minor(meta.dev())),
            ino: meta.ino(),
        }
    }
}

/// A file examined for TLS functions, as `relaywatch status` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbedFile {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<TlsLibrary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The functions probed in every process (a TLS client starts).
    pub probes: Vec<String>,
    /// The functions probed in the processes read (requests; answers while one is wanted).
    pub per_process: Vec<String>,
    /// Why it is not read, when it carries TLS but could not be probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A few processes whose TLS is read through it.
    pub pids: BTreeSet<u32>,
    #[serde(skip)]
    attached: bool,
    /// What to attach per process.
    #[serde(skip)]
    targets: Option<TlsTargets>,
    /// Its key with the attach thread.
    #[serde(skip)]
    key: u64,
}

/// The per-process probes of one process.
struct Scoped {
    /// Its start time (/proc/PID/stat), so that a reused pid is not taken for it.
    start: Option<u64>,
    files: Vec<FileId>,
}

pub struct TlsProbes {
    enabled: bool,
    /// Attaches and detaches the per-process probes (`tls_attach.rs`); set by `start`.
    attacher: Option<Attacher>,
    files: HashMap<FileId, ProbedFile>,
    scoped: HashMap<u32, Scoped>,
    ended: lru::LruCache<u32, ()>,
    outbound: lru::LruCache<u32, ()>,
    /// Processes whose answers are read now, since when.
    answers: lru::LruCache<u32, Instant>,
    budget: (Instant, u32),
    scope_budget: (Instant, u32),
    /// New files not examined because the budget was spent.
    pub skipped: u64,
    /// Processes read since start.
    pub processes_read: u64,
    /// Processes not read: too many at once or too many a second.
    pub processes_refused: u64,
}

impl TlsProbes {
    /// `enabled`: the programs loaded (else nothing is ever probed, and nothing is readable).
    pub fn new(enabled: bool) -> TlsProbes {
        TlsProbes {
            enabled,
            attacher: None,
            files: HashMap::new(),
            scoped: HashMap::new(),
            ended: lru::LruCache::new(NonZeroUsize::new(ENDED_CACHE).expect("non-zero")),
            outbound: lru::LruCache::new(NonZeroUsize::new(OUTBOUND_CACHE).expect("non-zero")),
            answers: lru::LruCache::new(NonZeroUsize::new(MAX_SCOPED).expect("non-zero")),
            budget: (Instant::now(), 0),
            scope_budget: (Instant::now(), 0),
            skipped: 0,
            processes_read: 0,
            processes_refused: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The libraries in the usual directories, and what every running process maps.
    pub fn start(&mut self, ebpf: &mut Ebpf) {
        if !self.enabled {
            return;
        }
        match start_attacher(ebpf) {
            Ok(a) => self.attacher = Some(a),
            Err(e) => {
                log::warn!("TLS plaintext is not read: {e}");
                self.enabled = false;
                return;
            }
        }
        for dir in LIBRARY_DIRS {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if !tls_targets::is_tls_library_name(name) {
                    continue;
                }
                // Symlinks (libssl.so -> libssl.so.3) resolve to the same inode: probed once,
                // shown by the file's own name.
                let path = fs::canonicalize(e.path()).unwrap_or_else(|_| e.path());
                let Ok(meta) = fs::metadata(&path) else {
                    continue;
                };
                let id = FileId::of(&meta);
                self.examine(
                    ebpf,
                    id,
                    &path.to_string_lossy(),
                    &path.to_string_lossy(),
                    None,
                );
            }
        }
        let pids: Vec<u32> = fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for pid in pids {
            let _ = self.scan(ebpf, pid);
        }
        let probed = self.files.values().filter(|f| f.attached).count();
        log::info!("TLS plaintext: {probed} libraries and executables probed");
    }

    /// A program started: its executable may carry its own TLS.
    pub fn on_exec(&mut self, ebpf: &mut Ebpf, pid: u32) {
        if !self.enabled {
            return;
        }
        self.outbound.pop(&pid);
        // A new program image: its probes are found again at its next client start.
        self.unscope(pid, false);
        let exe = format!("/proc/{pid}/exe");
        let Ok(meta) = fs::metadata(&exe) else {
            return;
        };
        let id = FileId::of(&meta);
        let shown = fs::read_link(&exe)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| exe.clone());
        self.examine(ebpf, id, &exe, &shown, Some(pid));
    }

    /// Whether the TLS plaintext of the process is read: its probes are attached, or it was read
    /// and is gone (a short client: curl connects, asks and exits before its record is
    /// finished; its request, if read, is on the ring buffer already).
    pub fn readable(&self, pid: u32) -> bool {
        self.enabled && (self.scoped.contains_key(&pid) || self.ended.contains(&pid))
    }

    /// A recorded TCP connection of `pid`; `tls_client`: its record says the process started a
    /// TLS client before (`FLAG_TLS_CLIENT`), so it is read now.
    pub fn on_connect(&mut self, ebpf: &mut Ebpf, pid: u32, tls_client: bool) {
        if !self.enabled {
            return;
        }
        self.outbound.put(pid, ());
        if tls_client {
            self.scope(ebpf, pid);
        }
    }

    /// `pid` started a TLS client connection and is not read: read it if its connections are
    /// recorded (a client of loopback servers only, with loopback skipped, is left alone; if it
    /// connects out later, that connect record asks again).
    pub fn on_client(&mut self, ebpf: &mut Ebpf, pid: u32) {
        if !self.enabled {
            return;
        }
        if self.outbound.contains(&pid) {
            self.scope(ebpf, pid);
        } else {
            log::trace!("TLS plaintext: pid {pid} starts a TLS client, no recorded connection yet");
        }
    }

    /// Read (or stop reading) the answers of `pid` (see `tls_attach`): on while an AI API
    /// request of it waits for the answer that may name the relay software. Answers are read for
    /// at most `ANSWERS_FOR` before they are dropped anyway.
    pub fn answers(&mut self, pid: u32, on: bool) {
        let Some(a) = &self.attacher else {
            return;
        };
        if !self.scoped.contains_key(&pid) {
            return;
        }
        if on {
            if self.answers.contains(&pid) {
                return;
            }
            if a.reads(pid, true) {
                self.answers.put(pid, Instant::now());
            }
        } else if self.answers.pop(&pid).is_some() {
            a.reads(pid, false);
        }
    }

    /// A process exited.
    pub fn on_exit(&mut self, pid: u32) {
        self.outbound.pop(&pid);
        self.unscope(pid, true);
    }

    /// Drop the probes of read processes that are gone (an exit record lost to a full ring).
    pub fn sweep(&mut self) {
        let stale: Vec<u32> = self
            .answers
            .iter()
            .filter(|(_, since)| since.elapsed() > ANSWERS_FOR)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in stale {
            self.answers(pid, false);
        }
        let gone: Vec<u32> = self
            .scoped
            .iter()
            .filter(|(pid, s)| start_time(**pid) != s.start || s.start.is_none())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            self.unscope(pid, true);
        }
    }

    /// Processes read now.
    pub fn processes_reading(&self) -> usize {
        self.scoped.len()
    }

    /// What the attach thread did: processes and probes attached, errors (a process gone before
    /// its probes were in place, mostly), and the mean time to attach a process's probes.
    pub fn attach_report(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(a) = &self.attacher else {
            return serde_json::Value::Null;
        };
        let c = &a.counts;
        let processes = c.processes_attached.load(Relaxed);
        serde_json::json!({
            "processes": processes,
            "probes": c.probes_attached.load(Relaxed),
            "errors": c.attach_errors.load(Relaxed),
            "mean_us": c.attach_us.load(Relaxed).checked_div(processes).unwrap_or(0),
        })
    }

    /// Attach the per-process probes for `pid`, for every TLS file it maps.
    fn scope(&mut self, ebpf: &mut Ebpf, pid: u32) {
        if self.scoped.contains_key(&pid) {
            return;
        }
        if self.scoped.len() >= MAX_SCOPED || !spend(&mut self.scope_budget, SCOPES_PER_SECOND, 1) {
            self.processes_refused += 1;
            if self.processes_refused.is_power_of_two() {
                log::warn!(
                    "TLS plaintext: pid {pid} not read ({} processes read now, at most {MAX_SCOPED}, {SCOPES_PER_SECOND} new a second); {} refused so far",
                    self.scoped.len(),
                    self.processes_refused
                );
            }
            return;
        }
        let Some(found) = self.scan(ebpf, pid) else {
            return; // gone already
        };
        let mut keys = Vec::new();
        let mut files = Vec::new();
        for id in found {
            let Some(f) = self.files.get_mut(&id) else {
                continue;
            };
            if f.targets.is_none() {
                continue;
            }
            keys.push(f.key);
            files.push(id);
            if f.pids.len() < MAX_PIDS_SHOWN {
                f.pids.insert(pid);
            }
        }
        if keys.is_empty() {
            return;
        }
        let Some(attacher) = &self.attacher else {
            return;
        };
        if !attacher.scope(pid, keys) {
            self.processes_refused += 1;
            return;
        }
        self.processes_read += 1;
        self.scoped.insert(
            pid,
            Scoped {
                start: start_time(pid),
                files,
            },
        );
    }

    /// Detach the per-process probes of `pid`; `ended`: it is gone (its records stay readable).
    fn unscope(&mut self, pid: u32, ended: bool) {
        self.answers.pop(&pid);
        let Some(scoped) = self.scoped.remove(&pid) else {
            return;
        };
        if let Some(a) = &self.attacher {
            a.unscope(pid);
        }
        for id in scoped.files {
            if let Some(f) = self.files.get_mut(&id) {
                f.pids.remove(&pid);
            }
        }
        if ended {
            self.ended.put(pid, ());
        }
    }

    /// Examine what `pid` maps: TLS libraries by name, and the executable itself; the probed
    /// files, each with the path that reaches it from the daemon. `None` when the process is
    /// gone.
    fn scan(&mut self, ebpf: &mut Ebpf, pid: u32) -> Option<Vec<FileId>> {
        let Ok(file) = fs::File::open(format!("/proc/{pid}/maps")) else {
            return None;
        };
        let mut text = String::new();
        // A zombie (exited, not yet reaped) has an empty map: gone too.
        if file.take(MAX_MAPS_BYTES).read_to_string(&mut text).is_err() || text.is_empty() {
            return None;
        }
        let exe = fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for line in text.lines() {
            let Some((id, path)) = parse_maps_line(line) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(path);
            let is_exe = exe.as_deref() == Some(path);
            if !(tls_targets::is_tls_library_name(name) || is_exe) {
                continue;
            }
            // Through the process's root: a container's file, not the host's.
            let via_root = format!("/proc/{pid}/root{path}");
            if self.examine(ebpf, id, &via_root, path, None) {
                found.push(id);
            }
        }
        Some(found)
    }

    /// Examine a file once (by identity); whether its probes are attached.
    fn examine(
        &mut self,
        ebpf: &mut Ebpf,
        id: FileId,
        open_path: &str,
        shown: &str,
        pid: Option<u32>,
    ) -> bool {
        if let Some(f) = self.files.get(&id) {
            return f.attached;
        }
        if self.files.len() >= MAX_FILES || !spend(&mut self.budget, NEW_FILES_PER_MINUTE, 60) {
            self.skipped += 1;
            return false;
        }
        let mut file = ProbedFile {
            path: shown.to_string(),
            library: None,
            version: None,
            probes: Vec::new(),
            per_process: Vec::new(),
            error: None,
            pids: BTreeSet::new(),
            attached: false,
            targets: None,
            key: self.files.len() as u64,
        };
        match tls_targets::find_targets_in_file(std::path::Path::new(open_path)) {
            Ok(Some(targets)) => {
                file.library = Some(targets.library);
                file.version = targets.version.clone();
                match attach_client_start(ebpf, open_path, &targets) {
                    Ok((probes, per_process)) => {
                        file.probes = probes;
                        file.per_process = per_process;
                        file.attached = true;
                        file.targets = Some(targets.clone());
                        if let Some(a) = &self.attacher
                            && !a.add_file(file.key, open_path, process_probes(&targets))
                        {
                            log::warn!("TLS plaintext: {shown}: the attach queue is full");
                        }
                        log::info!(
                            "TLS plaintext: probing {} ({}: {} in every process; {} in the processes read)",
                            shown,
                            targets.library.as_str(),
                            file.probes.join(", "),
                            file.per_process.join(", ")
                        );
                    }
                    Err(e) => {
                        log::warn!("TLS plaintext: cannot probe {shown}: {e}");
                        file.error = Some(e);
                    }
                }
            }
            Ok(None) => {}
            Err(e @ tls_targets::TargetError::GoStackAbi { .. })
            | Err(e @ tls_targets::TargetError::GoAbiUnknown)
            | Err(e @ tls_targets::TargetError::GoUnsupportedArch { .. }) => {
                file.library = Some(TlsLibrary::Go);
                file.error = Some(e.to_string());
            }
            Err(e) => log::debug!("TLS plaintext: {shown}: {e}"),
        }
        let _ = pid;
        let attached = file.attached;
        self.files.insert(id, file);
        attached
    }

    /// The TLS libraries and executables found, for `relaywatch status`.
    pub fn report(&self) -> Vec<ProbedFile> {
        let mut v: Vec<ProbedFile> = self
            .files
            .values()
            .filter(|f| f.library.is_some())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }
}

/// Spend one of `limit` allowed per `period_s` seconds from `budget` (period start, spent).
fn spend(budget: &mut (Instant, u32), limit: u32, period_s: u64) -> bool {
    let now = Instant::now();
    if now.duration_since(budget.0) >= Duration::from_secs(period_s) {
        *budget = (now, 0);
    }
    if budget.1 >= limit {
        return false;
    }
    budget.1 += 1;
    true
}

/// A process's start time (field 22 of /proc/PID/stat, clock ticks since boot).
fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(19)?.parse().ok()
}

/// The program and cookie for one probe, or `None` for probes not used. `client_start`: the
/// probes every process gets; else the per-process ones.
fn program_for(kind: ProbeKind, library: TlsLibrary) -> Option<(&'static str, u64, bool)> {
    let cookie = u64::from(match library {
        TlsLibrary::OpenSsl => TLS_LIB_OPENSSL,
        TlsLibrary::GnuTls => TLS_LIB_GNUTLS,
        TlsLibrary::Go => TLS_LIB_GO,
    });
    Some(match kind {
        ProbeKind::ClientStart | ProbeKind::GoClientStart => (CLIENT_PROGRAM, cookie, true),
        ProbeKind::Write | ProbeKind::WriteEx => (WRITE_PROGRAM, cookie, false),
        ProbeKind::GoWrite => (GO_WRITE_PROGRAM, cookie, false),
        // OpenSSL's client start forgets the `SSL *` (a reused one is read again), so SSL_free
        // is not probed; GnuTLS's init gives no session yet, so gnutls_deinit is.
        ProbeKind::Free if library == TlsLibrary::GnuTls => (FORGET_PROGRAM, cookie, false),
        // Not GoHandshake: every (*Conn).Write calls handshakeContext after the write probe
        // ran, which would forget the write just read.
        ProbeKind::GoClose => (GO_FORGET_PROGRAM, cookie, false),
        ProbeKind::Read => (READ_PROGRAM, cookie, false),
        ProbeKind::ReadEx => (READ_PROGRAM, cookie | TLS_COOKIE_READ_EX, false),
        ProbeKind::ReadReturn | ProbeKind::ReadExReturn => (READ_RETURN_PROGRAM, cookie, false),
        // Go answers are not read (no return probes in Go); its record writer is covered by
        // Write; handshakes are covered by the client start.
        _ => return None,
    })
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> Result<&'a mut UProbe, String> {
    ebpf.program_mut(program)
        .ok_or_else(|| format!("program {program} missing"))?
        .try_into()
        .map_err(|e| format!("program {program}: {e}"))
}

/// Attach the client start probes of `targets` in the file at `path`, for every process; the
/// functions probed in every process, and those to probe per process.
fn attach_client_start(
    ebpf: &mut Ebpf,
    path: &str,
    targets: &TlsTargets,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut per_process: Vec<String> = targets
        .probes
        .iter()
        .filter(|t| program_for(t.kind, targets.library).is_some_and(|(_, _, start)| !start))
        .map(|t| t.symbol.clone())
        .collect();
    if !targets.probes.iter().any(|t| {
        matches!(
            t.kind,
            ProbeKind::Write | ProbeKind::WriteEx | ProbeKind::GoWrite
        )
    }) {
        return Err("no write function found".into());
    }
    let mut probed = Vec::new();
    for target in &targets.probes {
        let Some((program, cookie, true)) = program_for(target.kind, targets.library) else {
            continue;
        };
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(target.file_offset),
            cookie: Some(cookie),
        };
        uprobe(ebpf, program)?
            .attach(point, path, UProbeScope::AllProcesses)
            .map_err(|e| format!("{} at {:#x}: {e}", target.symbol, target.file_offset))?;
        probed.push(target.symbol.clone());
    }
    if probed.is_empty() {
        return Err("no client start function found (SSL_set_connect_state, gnutls_init, crypto/tls.(*Conn).clientHandshake)".into());
    }
    per_process.dedup();
    Ok((probed, per_process))
}

/// The programs attached per process, in the order `tls_attach` indexes them.
const PROCESS_PROGRAMS: &[&str] = &[
    WRITE_PROGRAM,
    GO_WRITE_PROGRAM,
    FORGET_PROGRAM,
    GO_FORGET_PROGRAM,
    READ_PROGRAM,
    READ_RETURN_PROGRAM,
];

/// The per-process probes of `targets`.
fn process_probes(targets: &TlsTargets) -> Vec<ProcessProbe> {
    targets
        .probes
        .iter()
        .filter_map(|t| {
            let (program, cookie, false) = program_for(t.kind, targets.library)? else {
                return None;
            };
            Some(ProcessProbe {
                read: matches!(
                    t.kind,
                    ProbeKind::Read
                        | ProbeKind::ReadEx
                        | ProbeKind::ReadReturn
                        | ProbeKind::ReadExReturn
                ),
                offset: t.file_offset,
                retprobe: t.kind.is_return(),
                program: PROCESS_PROGRAMS.iter().position(|p| *p == program)?,
                cookie,
            })
        })
        .collect()
}

/// The attach thread, with the per-process programs' fds and the maps it keeps.
fn start_attacher(ebpf: &mut Ebpf) -> Result<Attacher, String> {
    let mut fds = Vec::new();
    for name in PROCESS_PROGRAMS {
        let program = uprobe(ebpf, name)?;
        let fd = program
            .fd()
            .map_err(|e| format!("program {name}: {e}"))?
            .try_clone()
            .map_err(|e| format!("program {name}: {e}"))?;
        fds.push(
            std::os::fd::AsFd::as_fd(&fd)
                .try_clone_to_owned()
                .map_err(|e| format!("program {name}: {e}"))?,
        );
    }
    let mut map = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| format!("map {name} missing"))
    };
    let scoped = BpfHashMap::try_from(map("TLS_SCOPED")?).map_err(|e| e.to_string())?;
    let pending = BpfHashMap::try_from(map("TLS_CLIENT_PENDING")?).map_err(|e| e.to_string())?;
    Attacher::spawn(fds, scoped, pending).map_err(|e| format!("the TLS attach thread: {e}"))
}

/// `/proc/PID/maps`: `addr perms offset dev inode path` -> ((major, minor), inode), path, for
/// executable file mappings.
fn parse_maps_line(line: &str) -> Option<(FileId, &str)> {
    let mut fields = line.splitn(6, ' ');
    let _range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let dev = fields.next()?;
    let ino: u64 = fields.next()?.parse().ok()?;
    let path = fields.next()?.trim_start();
    if ino == 0 || !perms.contains('x') || !path.starts_with('/') || path.ends_with(" (deleted)") {
        return None;
    }
    let (major, minor) = dev.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    Some((FileId { dev, ino }, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_executable_file_mappings() {
        let line = "7f2a1c000000-7f2a1c080000 r-xp 00022000 fd:01 1183748                    /usr/lib/x86_64-linux-gnu/libssl.so.3";
        let (id, path) = parse_maps_line(line).unwrap();
        assert_eq!(id.dev, (0xfd, 1));
        assert_eq!(id.ino, 1183748);
        assert_eq!(path, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert!(
            parse_maps_line("7f-80 rw-p 00000000 fd:01 1183748 /usr/lib/libssl.so.3").is_none()
        );
        assert!(parse_maps_line("7f-80 r-xp 00000000 00:00 0 [vdso]").is_none());
        assert!(parse_maps_line("7f-80 r-xp 00000000 fd:01 12 /tmp/x (deleted)").is_none());
        assert!(parse_maps_line("garbage").is_none());
    }

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(
            parse_start_time(&std::fs::read_to_string("/proc/self/stat").unwrap()).map(|t| t > 0),
            Some(true)
        );
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn servers_pay_nothing_clients_get_their_probes_per_process() {
        use ProbeKind::*;
        let every = |k, l| program_for(k, l).is_some_and(|(_, _, every)| every);
        let per = |k, l| program_for(k, l).is_some_and(|(_, _, every)| !every);
        // Only functions servers never call are probed in every process.
        for l in [TlsLibrary::OpenSsl, TlsLibrary::GnuTls] {
            assert!(every(ClientStart, l));
            for k in [Write, WriteEx, Read, ReadEx, ReadReturn, ReadExReturn] {
                assert!(per(k, l), "{k:?} {l:?}");
            }
            assert!(program_for(Handshake, l).is_none(), "{l:?}");
        }
        assert!(every(GoClientStart, TlsLibrary::Go));
        assert!(per(GoWrite, TlsLibrary::Go) && per(GoClose, TlsLibrary::Go));
        assert!(program_for(GoHandshake, TlsLibrary::Go).is_none());
        assert!(program_for(GoRead, TlsLibrary::Go).is_none());
        // OpenSSL's client start forgets the `SSL *`; GnuTLS's gives no session to forget.
        assert!(program_for(Free, TlsLibrary::OpenSsl).is_none());
        assert!(per(Free, TlsLibrary::GnuTls));
        // SSL_read_ex's cookie says where its count is.
        let (_, cookie, _) = program_for(ReadEx, TlsLibrary::OpenSsl).unwrap();
        assert_eq!(cookie, u64::from(TLS_LIB_OPENSSL) | TLS_COOKIE_READ_EX);
    }
}
