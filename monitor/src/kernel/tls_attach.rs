//! The per-process TLS probes, on a thread of their own.
//!
//! A process's write and read probes are attached when it becomes a TLS client the daemon
//! records, and dropped when it exits. How that is done decides the cost (measured on this VM,
//! `cargo xtask bench` and the notes in `tls_probes.rs`):
//! - one uprobe perf event per process and function (`perf_event_open` on the `uprobe` PMU with
//!   a target pid, as aya's `UProbeScope::OneProcess` does): 8 to 25 ms to attach a process
//!   (an RCU grace period), and about 90 ms to *close* each event, serialised in the kernel
//!   (6 probes: half a second per exited process). A host starting a few TLS clients a second
//!   could never catch up;
//! - what is done here: one *named* uprobe event per function in tracefs
//!   (`uprobe_events`: `p:relaywatch_PID/NAME PATH:OFFSET`, `r:` for a return probe), made once
//!   per file. Its BPF program is linked once, with its cookie, to an *anchor* perf event on that
//!   trace event bound to the daemon's own process (never a TLS client of these files: the
//!   anchor plants no breakpoint anywhere). A process is then read by opening one plain
//!   perf event per function for its pid: the kernel adds the process to the uprobe's filter
//!   and plants the breakpoints in its memory, 0.1 to 0.6 ms in all; closing one is about free.
//!   The BPF program runs for every hit that passes the filter, i.e. in the processes read.
//!
//! The event group is `relaywatch_<daemon pid>`, so that daemons side by side (tests) do not
//! meet; groups of daemons that are gone are removed at start. Everything is closed and the
//! events removed when the daemon stops (the `Attacher` is dropped).
//!
//! Commands (bounded queue, `QUEUE`):
//! - `AddFile { file, probes }`: make the file's events and anchors;
//! - `Scope { pid, files }`: open the per-process events, then mark the process in
//!   `TLS_SCOPED` (its client start probe stops asking) and clear its `TLS_CLIENT_PENDING`;
//! - `Unscope { pid }`: close them, unmark it.
use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
};

use aya::maps::{HashMap as BpfHashMap, MapData};

/// Commands waiting for the thread at most.
const QUEUE: usize = 1024;
const TRACEFS: &str = "/sys/kernel/tracing";
const GROUP_PREFIX: &str = "relaywatch_";

/// One function to probe in a file.
#[derive(Debug, Clone)]
pub struct ProcessProbe {
    /// A read probe (the answer's head): attached only while an answer is wanted.
    pub read: bool,
    pub offset: u64,
    pub retprobe: bool,
    /// Index of the program in the fds given to `Attacher::spawn`.
    pub program: usize,
    pub cookie: u64,
}

enum Command {
    AddFile {
        file: u64,
        path: String,
        probes: Vec<ProcessProbe>,
    },
    Scope {
        pid: u32,
        files: Vec<u64>,
    },
    Unscope {
        pid: u32,
    },
    Reads {
        pid: u32,
        on: bool,
    },
}

/// What the thread did, for `relaywatch status`.
#[derive(Debug, Default)]
pub struct AttachCounts {
    pub processes_attached: AtomicU64,
    pub probes_attached: AtomicU64,
    pub attach_errors: AtomicU64,
    /// Microseconds spent attaching processes, summed (divide by `processes_attached`).
    pub attach_us: AtomicU64,
}

pub struct Attacher {
    tx: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    pub counts: Arc<AttachCounts>,
}

impl Attacher {
    /// Start the thread with the per-process programs' fds (indexed by
    /// `ProcessProbe::program`) and the two maps it keeps.
    pub fn spawn(
        programs: Vec<OwnedFd>,
        scoped: BpfHashMap<MapData, u32, u8>,
        pending: BpfHashMap<MapData, u32, u64>,
    ) -> io::Result<Attacher> {
        let group = format!("{GROUP_PREFIX}{}", std::process::id());
        remove_stale_groups();
        // Checked here, not at the first file: a kernel without uprobe events says so once.
        std::fs::metadata(format!("{TRACEFS}/uprobe_events"))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let counts = Arc::new(AttachCounts::default());
        let worker = Worker {
            group,
            programs,
            scoped,
            pending,
            files: HashMap::new(),
            events: Vec::new(),
            attached: HashMap::new(),
            counts: counts.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tls-attach".into())
            .spawn(move || worker.run(rx))?;
        Ok(Attacher {
            tx: Some(tx),
            thread: Some(thread),
            counts,
        })
    }

    fn send(&self, command: Command) -> bool {
        match self.tx.as_ref().map(|tx| tx.try_send(command)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    /// Make the events of a file (`file`: the caller's key for it); false when the queue is
    /// full.
    pub fn add_file(&self, file: u64, path: &str, probes: Vec<ProcessProbe>) -> bool {
        self.send(Command::AddFile {
            file,
            path: path.to_string(),
            probes,
        })
    }

    /// Read `pid` through the events of `files`; false when the queue is full (not read).
    pub fn scope(&self, pid: u32, files: Vec<u64>) -> bool {
        self.send(Command::Scope { pid, files })
    }

    /// Read (or stop reading) the answers of `pid`, which is read already; false when the
    /// queue is full.
    pub fn reads(&self, pid: u32, on: bool) -> bool {
        self.send(Command::Reads { pid, on })
    }

    /// Stop reading `pid`. Never dropped for a full queue: a blocking send (the thread only
    /// waits on quick syscalls).
    pub fn unscope(&self, pid: u32) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Command::Unscope { pid });
        }
    }
}

impl Drop for Attacher {
    /// Close everything and remove the events before the daemon goes.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A process read: its files, its write-side events, its read events (while answers are
/// wanted).
struct Process {
    files: Vec<u64>,
    _writes: Vec<OwnedFd>,
    reads: Vec<OwnedFd>,
}

/// One trace event made for a function of a file, and the anchor that links its program.
struct Event {
    name: String,
    id: u64,
    _anchor: OwnedFd,
    _link: OwnedFd,
}

struct Worker {
    group: String,
    programs: Vec<OwnedFd>,
    scoped: BpfHashMap<MapData, u32, u8>,
    pending: BpfHashMap<MapData, u32, u64>,
    /// file key -> trace event ids of its write-side probes, and of its read probes.
    files: HashMap<u64, (Vec<u64>, Vec<u64>)>,
    /// Every event made, for the removal at the end (after every perf event on it is closed).
    events: Vec<Event>,
    /// pid -> what is attached for it. Dropping closes the events: no longer read.
    attached: HashMap<u32, Process>,
    counts: Arc<AttachCounts>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Command>) {
        while let Ok(command) = rx.recv() {
            match command {
                Command::AddFile { file, path, probes } => self.add_file(file, &path, &probes),
                Command::Scope { pid, files } => self.scope(pid, &files),
                Command::Unscope { pid } => {
                    let _ = self.scoped.remove(&pid);
                    self.attached.remove(&pid);
                }
                Command::Reads { pid, on } => self.reads(pid, on),
            }
        }
        // Stopping: per-process events first, then anchors and links, then the events.
        self.attached.clear();
        let names: Vec<String> = self.events.drain(..).map(|e| e.name).collect();
        for name in names {
            if let Err(e) = write_uprobe_events(&format!("-:{}/{name}\n", self.group)) {
                log::debug!("removing uprobe event {}/{name}: {e}", self.group);
            }
        }
    }

    fn add_file(&mut self, file: u64, path: &str, probes: &[ProcessProbe]) {
        if self.files.contains_key(&file) {
            return;
        }
        let (mut writes, mut reads) = (Vec::new(), Vec::new());
        for p in probes {
            match self.make_event(file, path, p) {
                Ok(event) => {
                    if p.read {
                        reads.push(event.id);
                    } else {
                        writes.push(event.id);
                    }
                    self.events.push(event);
                }
                Err(e) => {
                    self.counts.attach_errors.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "TLS plaintext: {path} at {:#x}: cannot make its uprobe event: {e}",
                        p.offset
                    );
                }
            }
        }
        self.files.insert(file, (writes, reads));
    }

    /// The trace event for one function, and its program linked through an anchor.
    fn make_event(&self, file: u64, path: &str, p: &ProcessProbe) -> io::Result<Event> {
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "white space in the path",
            ));
        }
        let program = self
            .programs
            .get(p.program)
            .ok_or_else(|| io::Error::other("no such program"))?;
        let name = format!(
            "f{file:x}_{:x}{}",
            p.offset,
            if p.retprobe { "_r" } else { "" }
        );
        let kind = if p.retprobe { 'r' } else { 'p' };
        write_uprobe_events(&format!(
            "{kind}:{}/{name} {path}:{:#x}\n",
            self.group, p.offset
        ))?;
        let id: u64 =
            std::fs::read_to_string(format!("{TRACEFS}/events/{}/{name}/id", self.group))?
                .trim()
                .parse()
                .map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("event id: {e}"))
                })?;
        let anchor = open_trace_event(id, std::process::id())?;
        let link = link_program(program, &anchor, p.cookie)?;
        Ok(Event {
            name,
            id,
            _anchor: anchor,
            _link: link,
        })
    }

    fn scope(&mut self, pid: u32, files: &[u64]) {
        if self.attached.contains_key(&pid) {
            return;
        }
        let started = std::time::Instant::now();
        let ids: Vec<u64> = files
            .iter()
            .filter_map(|f| self.files.get(f))
            .flat_map(|(writes, _)| writes)
            .copied()
            .collect();
        let Some(fds) = self.open_all(pid, &ids) else {
            return;
        };
        if fds.is_empty() {
            return;
        }
        let flags = monitor_common::tls::TLS_SCOPED_READ | monitor_common::tls::TLS_SCOPED_WAKE;
        if let Err(e) = self.scoped.insert(pid, flags, 0) {
            log::debug!("TLS_SCOPED: {pid}: {e}");
        }
        let _ = self.pending.remove(&pid);
        let us = started.elapsed().as_micros() as u64;
        self.counts
            .probes_attached
            .fetch_add(fds.len() as u64, Ordering::Relaxed);
        self.counts
            .processes_attached
            .fetch_add(1, Ordering::Relaxed);
        self.counts.attach_us.fetch_add(us, Ordering::Relaxed);
        log::debug!(
            "TLS plaintext: reading pid {pid} ({} probes attached in {us} us)",
            fds.len()
        );
        self.attached.insert(
            pid,
            Process {
                files: files.to_vec(),
                _writes: fds,
                reads: Vec::new(),
            },
        );
    }

    /// Attach (or drop) the read probes of a process that is read.
    fn reads(&mut self, pid: u32, on: bool) {
        let Some(process) = self.attached.get(&pid) else {
            return;
        };
        if !on {
            if let Some(p) = self.attached.get_mut(&pid) {
                p.reads.clear();
            }
            return;
        }
        if !process.reads.is_empty() {
            return;
        }
        let ids: Vec<u64> = process
            .files
            .iter()
            .filter_map(|f| self.files.get(f))
            .flat_map(|(_, reads)| reads)
            .copied()
            .collect();
        if let Some(fds) = self.open_all(pid, &ids)
            && let Some(p) = self.attached.get_mut(&pid)
        {
            log::debug!("TLS plaintext: reading the answers of pid {pid}");
            p.reads = fds;
        }
    }

    /// A perf event per trace event id for `pid`; `None` (nothing kept open) on an error.
    fn open_all(&self, pid: u32, ids: &[u64]) -> Option<Vec<OwnedFd>> {
        let mut fds = Vec::with_capacity(ids.len());
        for &id in ids {
            match open_trace_event(id, pid) {
                Ok(fd) => fds.push(fd),
                Err(e) => {
                    // A process that is gone by now is the usual reason (ESRCH).
                    self.counts.attach_errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("TLS plaintext: pid {pid}: event {id}: {e}");
                    return None;
                }
            }
        }
        Some(fds)
    }
}

/// Append a definition (or a `-:` removal) to tracefs's `uprobe_events`.
fn write_uprobe_events(line: &str) -> io::Result<()> {
    use std::io::Write as _;
    // O_APPEND without truncation: the other events (other tools', other daemons') stay.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("{TRACEFS}/uprobe_events"))?;
    f.write_all(line.as_bytes())
}

/// Remove the event groups of relaywatch daemons that are gone (a crash leaves them).
fn remove_stale_groups() {
    let Ok(text) = std::fs::read_to_string(format!("{TRACEFS}/uprobe_events")) else {
        return;
    };
    for line in text.lines() {
        // "p:relaywatch_1234/f1a_35980 /path:0x..."
        let Some((group, name)) = line
            .split_whitespace()
            .next()
            .and_then(|d| d.get(2..))
            .and_then(|d| d.split_once('/'))
        else {
            continue;
        };
        let Some(pid) = group.strip_prefix(GROUP_PREFIX) else {
            continue;
        };
        if pid
            .parse::<u32>()
            .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        {
            let _ = write_uprobe_events(&format!("-:{group}/{name}\n"));
        }
    }
}

/// A perf event on trace event `id` for process `pid` (counting only, never sampled).
fn open_trace_event(id: u64, pid: u32) -> io::Result<OwnedFd> {
    // struct perf_event_attr, PERF_ATTR_SIZE_VER5 (112 bytes), zeroed: type @0
    // (PERF_TYPE_TRACEPOINT = 2), size @4, config @8 (the trace event id).
    let mut attr = [0u8; 112];
    attr[0..4].copy_from_slice(&2u32.to_ne_bytes());
    attr[4..8].copy_from_slice(&112u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: perf_event_open(attr, pid, cpu -1 (any), group -1, PERF_FLAG_FD_CLOEXEC = 8);
    // `attr` is valid for the size it declares.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            pid as libc::pid_t,
            -1,
            -1,
            8u64,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Link `program` to perf event `event` with `cookie` (BPF_LINK_CREATE, BPF_PERF_EVENT).
fn link_program(program: &OwnedFd, event: &OwnedFd, cookie: u64) -> io::Result<OwnedFd> {
    // union bpf_attr, link_create: prog_fd @0, target_fd @4, attach_type @8 (BPF_PERF_EVENT
    // = 41), flags @12, perf_event.bpf_cookie @16.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&(program.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(event.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&41u32.to_ne_bytes());
    attr[16..24].copy_from_slice(&cookie.to_ne_bytes());
    // SAFETY: bpf(BPF_LINK_CREATE = 28, attr, size) with a zeroed attr of that size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 28, attr.as_ptr(), attr.len() as u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
