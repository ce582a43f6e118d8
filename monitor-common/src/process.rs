//! Process lifecycle records (exec and exit tracepoints) and the task layout the exec program
//! reads the parent and the argument block with.

/// Bytes of the exec'd file name kept (longer paths are cut; userspace prefers /proc/PID/exe).
pub const EXEC_FILENAME_LEN: usize = 256;

/// Bytes of the argument block (argv, NUL-separated) an exec event carries; longer command
/// lines are cut here (`args_total` says by how much).
pub const EXEC_ARGS_LEN: usize = 1024;

/// A process image started (tracepoint sched/sched_process_exec).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    /// Always [`crate::event::EVENT_EXEC`].
    pub kind: u32,
    pub tgid: u32,
    pub ts_boot_ns: u64,
    pub comm: [u8; 16],
    /// The path given to execve, NUL-terminated.
    pub filename: [u8; EXEC_FILENAME_LEN],
    /// tgid of the parent (`task->real_parent->tgid`); 0 when unknown (no kernel layout).
    pub ppid: u32,
    /// Bytes of `args` read (0 when unknown or unreadable).
    pub args_len: u32,
    /// Length of the whole argument block (`mm->arg_end - arg_start`): more than `args_len`
    /// means the command line was cut.
    pub args_total: u64,
    /// The argument block as the new image sees it at exec: argv, each NUL-terminated.
    pub args: [u8; EXEC_ARGS_LEN],
}

/// A process ended (tracepoint sched/sched_process_exit of its main thread). Small on purpose:
/// process churn (a `make -j`) must not take the ring space connect records need.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    /// Always [`crate::event::EVENT_EXIT`].
    pub kind: u32,
    pub tgid: u32,
    pub ts_boot_ns: u64,
}

/// Field offsets (bytes) the exec program needs, from the running kernel's BTF (written by the
/// daemon into `TASK_LAYOUT` before attaching). `known == 0`: no layout, parent and args are
/// left out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TaskLayout {
    /// `task_struct.real_parent`.
    pub task_real_parent: u32,
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`.
    pub mm_arg_end: u32,
    /// Non-zero when the offsets above were found.
    pub known: u32,
}
