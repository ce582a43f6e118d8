//! The process table: what each live (and recently ended) process is, from exec/exit events.
//!
//! An exec event arrives as a program starts, so /proc is read while the process certainly
//! exists: a curl that lives 5 ms still gets its executable and arguments. The exit event closes
//! the entry, so a connect event is matched only to the process that held the pid at that moment:
//! - the entry started (exec) at or before the event, and had not exited before it;
//! - its comm equals the event's (a fork that has not exec'd yet carries its parent's image and
//!   comm; a process renamed itself: either way /proc decides instead).
//!
//! Processes that were running before the agent started have no entry; the caller falls back to
//! reading /proc at event time. Ended entries are kept for a grace period (late events) and the
//! table is bounded: the oldest ended entries go first, then the oldest of all.
use std::collections::HashMap;

use crate::process::{ProcReader, ProcessDetails};

/// How long an ended process stays resolvable (events are read within milliseconds; this covers
/// a stalled daemon).
const ENDED_GRACE_NS: u64 = 60_000_000_000;

#[derive(Debug, Clone)]
struct Entry {
    comm: String,
    started_ns: u64,
    ended_ns: Option<u64>,
    details: ProcessDetails,
}

/// What the kernel's exec event says of the new image.
#[derive(Debug, Clone, Default)]
pub struct ExecFacts {
    pub filename: String,
    pub ppid: Option<u32>,
    pub args: Option<Vec<String>>,
    /// The kernel read only the start of a longer command line.
    pub args_truncated: bool,
}

impl ExecFacts {
    #[cfg(test)]
    pub fn path(filename: &str) -> ExecFacts {
        ExecFacts {
            filename: filename.to_owned(),
            ..ExecFacts::default()
        }
    }
}

pub struct ProcessTable {
    entries: HashMap<u32, Entry>,
    capacity: usize,
}

impl ProcessTable {
    pub fn new(capacity: usize) -> ProcessTable {
        ProcessTable {
            entries: HashMap::new(),
            capacity: capacity.max(16),
        }
    }

    /// A program image started in `tgid`. `kernel` is what the exec event carried (execve's
    /// path, and the parent and arguments when the kernel could read them): used for whatever
    /// /proc cannot tell any more (the process already exited).
    pub fn on_exec(
        &mut self,
        procs: &ProcReader,
        tgid: u32,
        comm: &str,
        kernel: &ExecFacts,
        ts_ns: u64,
    ) {
        let filename = kernel.filename.as_str();
        let mut details = procs
            .details(tgid, tgid, comm, ts_ns)
            .unwrap_or_else(ProcessDetails::unknown);
        if details.parent_pid.is_none() {
            details.parent_pid = kernel.ppid;
        }
        if details.args.is_none() {
            // Credentials on command lines never reach a record, whoever read them.
            details.args = kernel
                .args
                .as_deref()
                .map(crate::process::redact::redact_args);
            details.args_truncated = details.args.is_some() && kernel.args_truncated;
        }
        if details.executable.is_none() && filename.starts_with('/') {
            // /proc/PID/exe shows the file with symlinks resolved (/bin/bash is /usr/bin/bash
            // on merged-/usr systems); resolve the execve path the same way when it still exists.
            let resolved =
                std::fs::canonicalize(filename).map(|p| p.to_string_lossy().into_owned());
            details.executable = Some(resolved.unwrap_or_else(|_| filename.to_owned()));
        }
        details.name.get_or_insert_with(|| comm.to_owned());
        if self.entries.len() >= self.capacity {
            self.evict(ts_ns);
        }
        self.entries.insert(
            tgid,
            Entry {
                comm: comm.to_owned(),
                started_ns: ts_ns,
                ended_ns: None,
                details,
            },
        );
    }

    pub fn on_exit(&mut self, tgid: u32, ts_ns: u64) {
        if let Some(e) = self.entries.get_mut(&tgid) {
            e.ended_ns = Some(ts_ns);
        }
    }

    /// Details of the process that was `tgid` at `ts_ns`, sending from a thread named `comm`.
    pub fn lookup(&self, tgid: u32, comm: &str, ts_ns: u64) -> Option<&ProcessDetails> {
        let e = self.entries.get(&tgid)?;
        let alive = e.started_ns <= ts_ns && e.ended_ns.is_none_or(|end| end >= ts_ns);
        (alive && e.comm == comm).then_some(&e.details)
    }

    /// Drop ended entries past their grace period; if still full, the oldest entries.
    fn evict(&mut self, now_ns: u64) {
        self.entries.retain(|_, e| {
            e.ended_ns
                .is_none_or(|end| now_ns.saturating_sub(end) < ENDED_GRACE_NS)
        });
        if self.entries.len() >= self.capacity {
            let mut starts: Vec<u64> = self.entries.values().map(|e| e.started_ns).collect();
            starts.sort_unstable();
            let cutoff = starts[starts.len() / 4];
            self.entries.retain(|_, e| e.started_ns > cutoff);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(tgid: u32, comm: &str, started: u64) -> ProcessTable {
        let mut t = ProcessTable::new(16);
        // A pid that does not exist: details come from the exec event alone.
        t.on_exec(
            &ProcReader::new(),
            tgid,
            comm,
            &ExecFacts::path("/usr/bin/curl"),
            started,
        );
        t
    }

    const GONE: u32 = u32::MAX - 7;

    #[test]
    fn short_lived_process_keeps_its_exec_details() {
        let mut t = table_with(GONE, "curl", 1_000);
        t.on_exit(GONE, 5_000);
        let d = t.lookup(GONE, "curl", 3_000).expect("alive at 3000");
        assert_eq!(d.executable.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(d.name.as_deref(), Some("curl"));
    }

    #[test]
    fn exited_process_gets_parent_and_args_from_the_exec_event() {
        let mut t = ProcessTable::new(16);
        let args = ["curl", "-H", "Authorization: Bearer sk-secret", "http://x/"]
            .map(String::from)
            .to_vec();
        let facts = ExecFacts {
            filename: "/usr/bin/curl".into(),
            ppid: Some(4321),
            args: Some(args),
            args_truncated: true,
        };
        t.on_exec(&ProcReader::new(), GONE, "curl", &facts, 1_000);
        let d = t.lookup(GONE, "curl", 2_000).unwrap();
        assert_eq!(d.parent_pid, Some(4321));
        let kept = d.args.clone().unwrap();
        assert_eq!(kept[0], "curl");
        assert!(
            !kept.concat().contains("sk-secret"),
            "kernel-read arguments are redacted too: {kept:?}"
        );
        assert!(d.args_truncated);
    }

    #[test]
    fn events_outside_the_lifetime_do_not_match() {
        let mut t = table_with(GONE, "curl", 1_000);
        assert!(
            t.lookup(GONE, "curl", 999).is_none(),
            "before exec: the pid was something else"
        );
        t.on_exit(GONE, 5_000);
        assert!(
            t.lookup(GONE, "curl", 5_001).is_none(),
            "after exit: the pid was reused"
        );
    }

    #[test]
    fn other_comm_does_not_match() {
        let t = table_with(GONE, "curl", 1_000);
        assert!(t.lookup(GONE, "bash", 2_000).is_none());
    }

    #[test]
    fn live_process_details_come_from_proc() {
        let mut t = ProcessTable::new(16);
        let pid = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let comm = comm.trim_end();
        let now = crate::clock::boot_ns();
        t.on_exec(
            &ProcReader::new(),
            pid,
            comm,
            &ExecFacts::path("ignored"),
            now,
        );
        let d = t.lookup(pid, comm, now + 1).expect("entry");
        assert_eq!(d.parent_pid, Some(std::os::unix::process::parent_id()));
        assert!(d.args.as_ref().is_some_and(|a| !a.is_empty()));
    }

    #[test]
    fn bounded() {
        let mut t = ProcessTable::new(16);
        let procs = ProcReader::new();
        for i in 0..200u32 {
            t.on_exec(
                &procs,
                GONE - i,
                "x",
                &ExecFacts::path("/bin/x"),
                u64::from(i) * 10,
            );
            if i % 2 == 0 {
                t.on_exit(GONE - i, u64::from(i) * 10 + 1);
            }
        }
        assert!(t.len() <= 16, "{}", t.len());
        assert!(
            t.lookup(GONE - 199, "x", 1_995).is_some(),
            "the newest entry survives"
        );
    }
}
