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
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes,
        generated::bpf_ktime_get_boot_ns,
    },
    programs::TracePointContext,
    EbpfContext as _,
};
use monitor_common::{COUNTER_RINGBUF_LOST, EVENT_EXEC, EVENT_EXIT, ProcessEvent};

use crate::maps::{self, EVENTS};

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
        let filename = &mut *(&raw mut (*ev).filename);
        filename[0] = 0;
        if let Ok(loc) = ctx.read_at::<u32>(EXEC_FILENAME_LOC) {
            let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
            let _ = bpf_probe_read_kernel_str_bytes(src, filename);
        }
    }
    entry.submit(0);
}

#[inline(always)]
pub fn exit(_ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != pid_tgid as u32 {
        return; // a thread other than the main one: the process lives on
    }
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        maps::count(COUNTER_RINGBUF_LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).kind = EVENT_EXIT;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).ts_boot_ns = bpf_ktime_get_boot_ns();
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*(&raw mut (*ev).filename))[0] = 0;
    }
    entry.submit(0);
}
