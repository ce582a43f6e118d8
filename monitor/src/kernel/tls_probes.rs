//! Which TLS libraries and executables carry the uprobes, found as processes use them.
//!
//! Uprobes live on a file (inode) and an offset, for every process that maps it: a library is
//! probed once, whoever loads it, now or later. So the daemon probes:
//! - at start, the TLS libraries in the usual library directories, and every TLS library or
//!   self-contained executable (Go, a Node.js with OpenSSL inside) mapped by a running process;
//! - when a program starts (exec), its executable, if it carries its own TLS;
//! - when a process makes its first TLS connection, whatever it maps that is new (a library
//!   loaded late, as Python loads `_ssl` on first use; a container's own libssl, reached
//!   through `/proc/PID/root` so the container's file is probed, not the host's).
//!
//! Data model:
//! - `files`: file identity (device, inode as `/proc/PID/maps` shows them) -> `ProbedFile`:
//!   what was found in it (`tls_targets`), whether the probes are attached or why not, and a
//!   few of the processes seen using it (for `relaywatch status`). At most `MAX_FILES`;
//!   files that carry no TLS are remembered too, so each file is read once.
//! - `readable`: tgid -> whether the process maps a probed file (LRU, reset at exec).
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
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use monitor_common::tls::{TLS_COOKIE_READ_EX, TLS_LIB_GNUTLS, TLS_LIB_GO, TLS_LIB_OPENSSL};
use serde::Serialize;

use crate::kernel::tls_targets::{self, ProbeKind, TlsLibrary, TlsTargets};

/// The uprobe programs, by what they read.
pub const WRITE_PROGRAM: &str = "relaywatch_tls_write";
pub const GO_WRITE_PROGRAM: &str = "relaywatch_go_tls_write";
pub const FORGET_PROGRAM: &str = "relaywatch_tls_forget";
pub const GO_FORGET_PROGRAM: &str = "relaywatch_go_tls_forget";
pub const READ_PROGRAM: &str = "relaywatch_tls_read";
pub const READ_RETURN_PROGRAM: &str = "relaywatch_tls_read_return";
pub const PROGRAMS: &[&str] = &[
    WRITE_PROGRAM,
    GO_WRITE_PROGRAM,
    FORGET_PROGRAM,
    GO_FORGET_PROGRAM,
    READ_PROGRAM,
    READ_RETURN_PROGRAM,
];

const MAX_FILES: usize = 4096;
const MAX_PIDS_SHOWN: usize = 8;
const NEW_FILES_PER_MINUTE: u32 = 120;
const READABLE_CACHE: usize = 16_384;
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
    /// The functions probed.
    pub probes: Vec<String>,
    /// Why it is not read, when it carries TLS but could not be probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A few processes seen using it.
    pub pids: BTreeSet<u32>,
    #[serde(skip)]
    attached: bool,
}

pub struct TlsProbes {
    enabled: bool,
    files: HashMap<FileId, ProbedFile>,
    readable: lru::LruCache<u32, bool>,
    budget: (Instant, u32),
    /// New files not examined because the budget was spent.
    pub skipped: u64,
}

impl TlsProbes {
    /// `enabled`: the programs loaded (else nothing is ever probed, and nothing is readable).
    pub fn new(enabled: bool) -> TlsProbes {
        TlsProbes {
            enabled,
            files: HashMap::new(),
            readable: lru::LruCache::new(NonZeroUsize::new(READABLE_CACHE).expect("non-zero")),
            budget: (Instant::now(), 0),
            skipped: 0,
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
        self.readable.pop(&pid);
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

    /// Whether the process maps a probed file (probing what it maps that is new). A process
    /// that is already gone (a short client: curl connects, asks and exits before its record is
    /// finished) counts as readable: its request, if read, is on the ring buffer already.
    pub fn readable(&mut self, ebpf: &mut Ebpf, pid: u32) -> bool {
        if !self.enabled {
            return false;
        }
        if let Some(r) = self.readable.get(&pid) {
            return *r;
        }
        let r = self.scan(ebpf, pid).unwrap_or(true);
        self.readable.put(pid, r);
        r
    }

    /// Examine what `pid` maps: TLS libraries by name, and the executable itself. `None` when
    /// the process is gone.
    fn scan(&mut self, ebpf: &mut Ebpf, pid: u32) -> Option<bool> {
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
        let mut readable = false;
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
            if self.examine(ebpf, id, &via_root, path, Some(pid)) {
                readable = true;
            }
        }
        Some(readable)
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
        if let Some(f) = self.files.get_mut(&id) {
            if let Some(pid) = pid
                && f.attached
                && f.pids.len() < MAX_PIDS_SHOWN
            {
                f.pids.insert(pid);
            }
            return f.attached;
        }
        if self.files.len() >= MAX_FILES || !self.spend_budget() {
            self.skipped += 1;
            return false;
        }
        let mut file = ProbedFile {
            path: shown.to_string(),
            library: None,
            version: None,
            probes: Vec::new(),
            error: None,
            pids: pid.into_iter().collect(),
            attached: false,
        };
        match tls_targets::find_targets_in_file(std::path::Path::new(open_path)) {
            Ok(Some(targets)) => {
                file.library = Some(targets.library);
                file.version = targets.version.clone();
                match attach(ebpf, open_path, &targets) {
                    Ok(probes) => {
                        file.probes = probes;
                        file.attached = true;
                        log::info!(
                            "TLS plaintext: probing {} ({}: {})",
                            shown,
                            targets.library.as_str(),
                            file.probes.join(", ")
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
        if file.library.is_none() {
            file.pids.clear();
        }
        let attached = file.attached;
        self.files.insert(id, file);
        attached
    }

    fn spend_budget(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.budget.0) >= Duration::from_secs(60) {
            self.budget = (now, 0);
        }
        if self.budget.1 >= NEW_FILES_PER_MINUTE {
            return false;
        }
        self.budget.1 += 1;
        true
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

/// Attach the programs for `targets` in the file at `path`; the functions probed.
fn attach(ebpf: &mut Ebpf, path: &str, targets: &TlsTargets) -> Result<Vec<String>, String> {
    let cookie = match targets.library {
        TlsLibrary::OpenSsl => TLS_LIB_OPENSSL,
        TlsLibrary::GnuTls => TLS_LIB_GNUTLS,
        TlsLibrary::Go => TLS_LIB_GO,
    };
    let mut probed = Vec::new();
    let mut writes = 0;
    for target in &targets.probes {
        let mut cookie = u64::from(cookie);
        let program = match target.kind {
            ProbeKind::Write | ProbeKind::WriteEx => WRITE_PROGRAM,
            ProbeKind::Handshake | ProbeKind::Free => FORGET_PROGRAM,
            ProbeKind::GoWrite => GO_WRITE_PROGRAM,
            // Not GoHandshake: every (*Conn).Write calls handshakeContext after the write
            // probe ran, which would forget the write just read.
            ProbeKind::GoClose => GO_FORGET_PROGRAM,
            ProbeKind::Read => READ_PROGRAM,
            ProbeKind::ReadEx => {
                cookie |= TLS_COOKIE_READ_EX;
                READ_PROGRAM
            }
            ProbeKind::ReadReturn | ProbeKind::ReadExReturn => READ_RETURN_PROGRAM,
            // Go answers are not read (no return probes in Go); its record writer is covered
            // by Write.
            _ => continue,
        };
        let uprobe: &mut UProbe = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing"))?
            .try_into()
            .map_err(|e| format!("program {program}: {e}"))?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(target.file_offset),
            cookie: Some(cookie),
        };
        uprobe
            .attach(point, path, UProbeScope::AllProcesses)
            .map_err(|e| format!("{} at {:#x}: {e}", target.symbol, target.file_offset))?;
        if matches!(
            target.kind,
            ProbeKind::Write | ProbeKind::WriteEx | ProbeKind::GoWrite
        ) {
            writes += 1;
        }
        probed.push(target.symbol.clone());
    }
    if writes == 0 {
        return Err("no write function found".into());
    }
    Ok(probed)
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
}
