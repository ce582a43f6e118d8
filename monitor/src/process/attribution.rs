//! Attribution: which process a connection event belongs to, from the best source still there.
//!
//! 1. The exec-fed process table knows every program started since the agent did, with what the
//!    kernel read at exec (path, parent, arguments), even once it has exited; an entry is used
//!    only for the same comm within the process's lifetime (pid reuse never mixes processes).
//! 2. Otherwise /proc is read now, while the process most likely still exists (programs that
//!    predate the agent); `ProcReader::details` refuses a pid that turned over since the event.
//! 3. A process gone before either could answer still has its service or container: the
//!    event's cgroup id names a directory in the cgroup2 tree.
use super::{ProcReader, ProcessDetails, cgroups::CgroupPaths, table::ProcessTable};
use crate::kernel::decode::Observation;

/// Everything known about the process behind `observation`, or `None` when nothing is.
pub(crate) fn attribute(
    table: &ProcessTable,
    procs: &ProcReader,
    cgroups: &mut CgroupPaths,
    observation: &Observation,
) -> Option<ProcessDetails> {
    let e = &observation.raw;
    let mut process = match table.lookup(e.tgid, &observation.comm, e.ts_boot_ns) {
        Some(d) => Some(d.clone()),
        None => procs.details(e.tgid, e.tid, &observation.comm, e.ts_boot_ns),
    };
    if process.as_ref().is_none_or(|p| p.cgroup.is_none())
        && let Some(path) = cgroups.path_of(e.cgroup_id)
    {
        process.get_or_insert_with(ProcessDetails::unknown).cgroup = Some(path);
    }
    process
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::{
        process::table::ExecFacts,
        testutil::{ConnectEventBuilder, TempDir},
    };

    /// A pid no process has (pid_max is at most 2^22).
    const GONE: u32 = u32::MAX - 11;

    fn observation(tgid: u32, comm: &str, cgroup_id: u64) -> Observation {
        ConnectEventBuilder::tcp_v4(tgid, [203, 0, 113, 7], 443)
            .thread(tgid)
            .comm(comm)
            .cgroup(cgroup_id)
            .at(crate::clock::boot_ns())
            .observation()
    }

    #[test]
    fn the_table_answers_for_a_process_already_gone() {
        let procs = ProcReader::new();
        let mut table = ProcessTable::new(16);
        table.on_exec(&procs, GONE, "curl", &ExecFacts::path("/usr/bin/curl"), 1);
        let dir = TempDir::new("attribution");
        let mut cgroups = CgroupPaths::new(dir.path());
        let d = attribute(&table, &procs, &mut cgroups, &observation(GONE, "curl", 0))
            .expect("known from its exec");
        assert_eq!(d.executable.as_deref(), Some("/usr/bin/curl"));
        // Another comm on that pid is another process: not this entry.
        assert!(attribute(&table, &procs, &mut cgroups, &observation(GONE, "wget", 0)).is_none());
    }

    #[test]
    fn a_process_the_table_missed_is_read_from_proc() {
        let procs = ProcReader::new();
        let table = ProcessTable::new(16);
        let dir = TempDir::new("attribution");
        let mut cgroups = CgroupPaths::new(dir.path());
        let me = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
            .to_owned();
        let d = attribute(&table, &procs, &mut cgroups, &observation(me, &comm, 0))
            .expect("this process is alive");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(d.executable.as_deref(), exe.to_str());
        assert!(d.parent_pid.is_some());
    }

    #[test]
    fn a_vanished_process_keeps_its_service_from_the_cgroup_id() {
        let procs = ProcReader::new();
        let table = ProcessTable::new(16);
        let root = TempDir::new("attribution-cgroups");
        let unit = root.path().join("system.slice/ollama.service");
        std::fs::create_dir_all(&unit).unwrap();
        let id = std::fs::metadata(&unit).unwrap().ino();
        let mut cgroups = CgroupPaths::new(root.path());
        let d = attribute(
            &table,
            &procs,
            &mut cgroups,
            &observation(GONE, "ollama", id),
        )
        .expect("the cgroup names it");
        assert_eq!(d.cgroup.as_deref(), Some("/system.slice/ollama.service"));
        assert_eq!(d.executable, None, "nothing else is guessed");
        assert!(
            attribute(
                &table,
                &procs,
                &mut cgroups,
                &observation(GONE, "ollama", 0)
            )
            .is_none()
        );
    }
}
