//! Who sent it: process details from /proc, read when the event arrives, and user names.
//!
//! The kernel event carries the tgid, tid, comm and a boot-clock timestamp. /proc is read
//! afterwards, so the pid may have exited, or been reused by another process, or the process may
//! have exec'd another program. Rules that keep us from ever attributing one process's data to
//! another:
//! - `/proc/PID/stat` start time (boot clock, truncated to a clock tick) must not be later than
//!   the event: a later start means the pid now belongs to a newer process.
//! - the thread's (or, if it is gone, the process's) current comm must equal the comm the kernel
//!   recorded: a different comm means an exec (or a rename) since, so exe and args may be another
//!   program's.
//! - the start time is read again after exe and cmdline; a change means the pid turned over
//!   while we read.
//!
//! Anything that fails a rule is left out of the record rather than guessed.
use std::{collections::HashMap, ffi::CStr, fs, path::PathBuf};

/// Details of a live process that passed the identity checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessDetails {
    pub executable: Option<String>,
    pub args: Option<Vec<String>>,
    pub parent_pid: Option<u32>,
    /// The process's (main thread's) comm, which can differ from the sending thread's.
    pub name: Option<String>,
    /// cgroup v2 path (`/system.slice/ollama.service`, `/kubepods.slice/.../cri-containerd-ID.scope`).
    pub cgroup: Option<String>,
    /// `args` came from the kernel's exec event and the command line was longer than it carries.
    pub args_truncated: bool,
}

impl ProcessDetails {
    pub fn unknown() -> ProcessDetails {
        ProcessDetails {
            executable: None,
            args: None,
            parent_pid: None,
            name: None,
            cgroup: None,
            args_truncated: false,
        }
    }
}

/// The cgroup v2 path from /proc/PID/cgroup (the `0::PATH` line).
pub fn parse_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .filter(|p| !p.is_empty())
}

/// The systemd unit a cgroup path belongs to: the innermost `.service` (else `.scope`) component.
pub fn systemd_unit(cgroup: &str) -> Option<&str> {
    let parts: Vec<&str> = cgroup.split('/').collect();
    parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service"))
        .or_else(|| parts.iter().rev().find(|p| p.ends_with(".scope")))
        .copied()
}

/// A container id in a cgroup path: 64 hex digits as Docker, containerd, CRI-O and Podman name
/// their cgroups (`docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`, `libpod-ID.scope`,
/// `/docker/ID`).
pub fn container_id(cgroup: &str) -> Option<&str> {
    cgroup.split('/').rev().find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let id = part.rsplit('-').next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    })
}

/// Fields of /proc/PID/stat that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// 'R', 'S', 'Z' (zombie: exited, not yet reaped), ...
    pub state: char,
    pub ppid: u32,
    pub start_ticks: u64,
}

/// Parse /proc/PID/stat. The comm field is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last ')'.
pub fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After comm: state(3) ppid(4) ... starttime(22); `rest` starts at field 3.
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let start_ticks = fields.nth(22 - 5)?.parse().ok()?;
    Some(StatFields {
        state,
        ppid,
        start_ticks,
    })
}

/// Split /proc/PID/cmdline (NUL-separated, usually NUL-terminated) into arguments.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

pub struct ProcReader {
    root: PathBuf,
    ns_per_tick: u64,
}

impl Default for ProcReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcReader {
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as u64 } else { 100 };
        ProcReader {
            root: PathBuf::from("/proc"),
            ns_per_tick: 1_000_000_000 / hz,
        }
    }

    fn stat(&self, tgid: u32) -> Option<StatFields> {
        parse_stat(&fs::read_to_string(self.root.join(format!("{tgid}/stat"))).ok()?)
    }

    fn comm_now(&self, tgid: u32, tid: u32) -> Option<String> {
        let thread = self.root.join(format!("{tgid}/task/{tid}/comm"));
        let comm = fs::read_to_string(thread)
            .or_else(|_| fs::read_to_string(self.root.join(format!("{tgid}/comm"))))
            .ok()?;
        Some(comm.trim_end_matches('\n').to_owned())
    }

    /// Details of the process that was `tgid` (thread `tid`, comm `comm`) at `ts_boot_ns`, or
    /// `None` when it is gone or /proc now describes something else.
    pub fn details(
        &self,
        tgid: u32,
        tid: u32,
        comm: &str,
        ts_boot_ns: u64,
    ) -> Option<ProcessDetails> {
        let stat = self.stat(tgid)?;
        if stat.start_ticks.saturating_mul(self.ns_per_tick) > ts_boot_ns {
            return None; // pid reused by a process that started after the event
        }
        if self.comm_now(tgid, tid)? != comm {
            return None; // exec'd (or renamed) since the event
        }
        if matches!(stat.state, 'Z' | 'X') {
            // Exited but not yet reaped: the pid and parent are still this process's, but its
            // memory (cmdline) and exe link are gone.
            return Some(ProcessDetails {
                parent_pid: Some(stat.ppid),
                ..ProcessDetails::unknown()
            });
        }
        let base = self.root.join(tgid.to_string());
        let executable = fs::read_link(base.join("exe")).ok().map(|p| {
            let s = p.to_string_lossy().into_owned();
            // A deleted or replaced binary still identifies the process; keep the path.
            s.strip_suffix(" (deleted)").map(str::to_owned).unwrap_or(s)
        });
        // An empty cmdline (a kernel thread, or a process tearing down) says nothing: leave it out.
        let args = fs::read(base.join("cmdline"))
            .ok()
            .map(|raw| parse_cmdline(&raw))
            .filter(|a| !a.is_empty())
            // Credentials on command lines never reach a record.
            .map(|a| crate::process::redact::redact_args(&a));
        let name = fs::read_to_string(base.join("comm"))
            .ok()
            .map(|c| c.trim_end_matches('\n').to_owned());
        if self.stat(tgid)?.start_ticks != stat.start_ticks {
            return None; // turned over while we read
        }
        let cgroup = fs::read_to_string(base.join("cgroup"))
            .ok()
            .and_then(|c| parse_cgroup(&c));
        Some(ProcessDetails {
            executable,
            args,
            parent_pid: Some(stat.ppid),
            name,
            cgroup,
            args_truncated: false,
        })
    }
}

/// One step of a process's ancestry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

/// Most ancestors listed (deeper chains are cut; pid 1 is usually reached long before).
const MAX_ANCESTORS: usize = 32;

impl ProcReader {
    /// The chain from `parent` up to pid 1, as /proc shows it now (a parent that has exited
    /// ends the chain: its pid may already be another process's).
    /// The chain starts at `parent` of a process that was running at `child_seen_ns` (boot clock);
    /// it stops at a pid whose process started later than the one below it (the real parent
    /// exited and its pid went to a newer process: that one's data must not be shown).
    pub fn ancestors(&self, parent: u32, child_seen_ns: u64) -> Vec<Ancestor> {
        let mut out = Vec::new();
        let mut pid = parent;
        let mut not_after_ns = child_seen_ns;
        while pid != 0 && out.len() < MAX_ANCESTORS {
            let Some(stat) = self.stat(pid) else { break };
            let started_ns = stat.start_ticks.saturating_mul(self.ns_per_tick);
            if started_ns > not_after_ns {
                break;
            }
            not_after_ns = started_ns;
            let executable = fs::read_link(self.root.join(format!("{pid}/exe")))
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
            out.push(Ancestor { pid, executable });
            if pid == 1 || stat.ppid == pid {
                break;
            }
            pid = stat.ppid;
        }
        out
    }
}

/// uid -> user name through the system's user database (NSS), cached.
#[derive(Default)]
pub struct UserNames {
    cache: HashMap<u32, Option<String>>,
}

impl UserNames {
    pub fn name(&mut self, uid: u32) -> Option<String> {
        self.cache
            .entry(uid)
            .or_insert_with(|| lookup_user(uid))
            .clone()
    }
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the duration of the call; buf outlives its use.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in buf.
        return Some(
            unsafe { CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let line = "4242 (a) b) (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(StatFields {
                state: 'S',
                ppid: 17,
                start_ticks: 98765
            })
        );
    }

    #[test]
    fn stat_truncated_is_none() {
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(
            parse_cmdline(b"curl\0-s\0http://x/\0"),
            vec!["curl", "-s", "http://x/"]
        );
        assert_eq!(parse_cmdline(b"kworker"), vec!["kworker"]);
        assert!(parse_cmdline(b"").is_empty());
        assert_eq!(parse_cmdline(b"a\0\0b\0"), vec!["a", "", "b"]);
    }

    #[test]
    fn own_process_passes_identity_checks() {
        let reader = ProcReader::new();
        let pid = std::process::id();
        let comm = fs::read_to_string("/proc/thread-self/comm").unwrap();
        let tid = unsafe { libc::gettid() } as u32;
        let d = reader
            .details(pid, tid, comm.trim_end(), crate::clock::boot_ns())
            .expect("details");
        assert_eq!(
            d.executable.as_deref(),
            std::env::current_exe()
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned))
                .as_deref()
        );
        assert_eq!(d.parent_pid, Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn event_before_process_start_is_refused() {
        let reader = ProcReader::new();
        let pid = std::process::id();
        let comm = fs::read_to_string("/proc/self/comm").unwrap();
        // An event at boot time 1 ns cannot belong to a process that started later.
        assert_eq!(reader.details(pid, pid, comm.trim_end(), 1), None);
    }

    #[test]
    fn other_comm_is_refused() {
        let reader = ProcReader::new();
        let pid = std::process::id();
        assert_eq!(
            reader.details(pid, pid, "not-this-one", crate::clock::boot_ns()),
            None
        );
    }

    #[test]
    fn cgroup_paths_name_units_and_containers() {
        assert_eq!(
            parse_cgroup("0::/system.slice/ollama.service\n").as_deref(),
            Some("/system.slice/ollama.service")
        );
        assert_eq!(
            parse_cgroup("1:name=systemd:/x\n0::/user.slice\n").as_deref(),
            Some("/user.slice")
        );
        assert_eq!(parse_cgroup("0::\n"), None);
        assert_eq!(
            systemd_unit("/system.slice/ollama.service"),
            Some("ollama.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/session-3.scope"),
            Some("session-3.scope")
        );
        assert_eq!(systemd_unit("/"), None);
        let id = "4f5c2e0b9d1a7c3e8f6b2a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";
        assert_eq!(
            container_id(&format!("/system.slice/docker-{id}.scope")),
            Some(id)
        );
        assert_eq!(
            container_id(&format!(
                "/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope"
            )),
            Some(id)
        );
        assert_eq!(container_id(&format!("/docker/{id}")), Some(id));
        assert_eq!(container_id("/system.slice/ssh.service"), None);
    }

    #[test]
    fn ancestors_reach_pid_1() {
        let now = crate::clock::boot_ns();
        let chain = ProcReader::new().ancestors(std::os::unix::process::parent_id(), now);
        assert_eq!(
            chain.first().map(|a| a.pid),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(chain.last().map(|a| a.pid), Some(1), "{chain:?}");
        assert!(ProcReader::new().ancestors(u32::MAX - 3, now).is_empty());
        // A "parent" that started after the child was seen is a reused pid: no chain at all.
        assert!(
            ProcReader::new()
                .ancestors(std::process::id(), 1)
                .is_empty()
        );
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(UserNames::default().name(0).as_deref(), Some("root"));
    }
}
