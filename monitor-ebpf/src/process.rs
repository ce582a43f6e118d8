//! Process lifecycle for the daemon's process table: exec and exit, from scheduler tracepoints.
//!
//! Why: a connect event is attributed from /proc, read after the fact; a process that lives a
//! few milliseconds (a curl) may be gone by then. An exec event reaches the daemon as the new
//! image starts, so its executable and arguments are read while it certainly exists, and the
//! exit event tells the daemon when a pid stops being that process (so a reused pid is never
//! given the old process's details). Tracepoints fire per exec and per exit only: no cost on
//! any I/O path.
//!
//! Offsets are those of the tracepoint formats, stable since Linux 3.x:
//! sched_process_exec: `__data_loc char[] filename` at 8; the exit event needs no fields
//! (the exiting task is current).
//!
//! The exec event also carries what /proc would say of the new image, read in the kernel so that
//! it survives a process that exits before the daemon gets to it: the parent's tgid
//! (`current->real_parent->tgid`) and the argument block (`current->mm->arg_start..arg_end`, user
//! memory of the new image, up to `EXEC_ARGS_LEN` bytes). The field offsets come from the
//! kernel's BTF via `TASK_LAYOUT`; without it both are left out (0).
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
        generated::{bpf_ktime_get_boot_ns, bpf_probe_read_user},
    },
    programs::TracePointContext,
};
use monitor_common::{
    ExitEvent, ProcessEvent,
    counters::COUNTER_RINGBUF_LOST,
    event::{EVENT_EXEC, EVENT_EXIT},
    process::EXEC_ARGS_LEN,
    ring::BPF_RB_FORCE_WAKEUP,
};

use crate::maps::{self, EVENTS, EXEC_WOKE, TASK_LAYOUT};

const EXEC_FILENAME_LOC: usize = 8;

#[inline(always)]
pub fn exec(ctx: &TracePointContext) {
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        maps::count(COUNTER_RINGBUF_LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    unsafe {
        (*ev).kind = EVENT_EXEC;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).ts_boot_ns = bpf_ktime_get_boot_ns();
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let filename = &mut (*ev).filename;
        filename[0] = 0;
        if let Ok(loc) = ctx.read_at::<u32>(EXEC_FILENAME_LOC) {
            let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
            let _ = bpf_probe_read_kernel_str_bytes(src, filename);
        }
        (*ev).ppid = 0;
        (*ev).args_len = 0;
        (*ev).args_total = 0;
        read_parent_and_args(ev);
    }
    entry.submit(exec_wakeup());
}

/// Exec events wake the daemon at most once per `exec_wake_gap_ms` (it reads the new program's
/// environment for relay discovery while the program runs), and never when that is off.
#[inline(always)]
fn exec_wakeup() -> u64 {
    let gap_ns = u64::from(maps::config().exec_wake_gap_ms) * 1_000_000;
    if gap_ns == 0 {
        return maps::lazy_wakeup();
    }
    let Some(last) = EXEC_WOKE.get_ptr_mut(0) else {
        return maps::lazy_wakeup();
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // Racy across CPUs on purpose: two wake-ups in one gap are harmless.
    unsafe {
        if now.wrapping_sub(*last) < gap_ns {
            return maps::lazy_wakeup();
        }
        *last = now;
    }
    BPF_RB_FORCE_WAKEUP
}

/// Fill `ppid`, `args_total`, `args_len` and `args` from the current task (see the module notes).
#[inline(always)]
unsafe fn read_parent_and_args(ev: *mut ProcessEvent) {
    let Some(layout) = TASK_LAYOUT.get(0) else {
        return;
    };
    if layout.known == 0 {
        return;
    }
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        if let Ok(parent) =
            bpf_probe_read_kernel(task.add(layout.task_real_parent as usize) as *const u64)
            && let Ok(tgid) = bpf_probe_read_kernel(
                (parent as *const u8).add(layout.task_tgid as usize) as *const i32,
            )
        {
            (*ev).ppid = tgid as u32;
        }
        let Ok(mm) = bpf_probe_read_kernel(task.add(layout.task_mm as usize) as *const u64) else {
            return;
        };
        if mm == 0 {
            return;
        }
        let mm = mm as *const u8;
        let (Ok(start), Ok(end)) = (
            bpf_probe_read_kernel(mm.add(layout.mm_arg_start as usize) as *const u64),
            bpf_probe_read_kernel(mm.add(layout.mm_arg_end as usize) as *const u64),
        ) else {
            return;
        };
        let total = end.saturating_sub(start);
        (*ev).args_total = total;
        // The min is what bounds the length for the verifier.
        let len = if total > EXEC_ARGS_LEN as u64 {
            EXEC_ARGS_LEN as u32
        } else {
            total as u32
        };
        if len == 0 {
            return;
        }
        let dst = &raw mut (*ev).args as *mut core::ffi::c_void;
        if bpf_probe_read_user(dst, len, start as *const core::ffi::c_void) == 0 {
            (*ev).args_len = len;
        }
    }
}

#[inline(always)]
pub fn exit(_ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != pid_tgid as u32 {
        return; // a thread other than the main one: the process lives on
    }
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        maps::count(COUNTER_RINGBUF_LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).kind = EVENT_EXIT;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).ts_boot_ns = bpf_ktime_get_boot_ns();
    }
    entry.submit(maps::lazy_wakeup());
}
