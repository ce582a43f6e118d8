//! Uprobes on TLS libraries' write functions: the first plaintext a process writes on each TLS
//! connection (its request head), before encryption. Data model and budgets in
//! `monitor_common::tls`; the daemon decides where the probes go (`kernel/tls_probes.rs`).
//!
//! Programs (attached by the daemon to every supported library and executable it finds):
//! - `write`: `SSL_write(ssl, buf, num)`, `SSL_write_ex(ssl, buf, num, written)`,
//!   `gnutls_record_send(session, data, size)`: the connection object, the buffer and its
//!   length are the first three arguments (rdi, rsi, rdx); the library is the attach cookie.
//! - `go_write`: Go's `crypto/tls.(*Conn).Write(b []byte)` under the register ABI (Go >= 1.17):
//!   receiver in rax, `b`'s pointer in rbx and length in rcx. Entry probes only: a uretprobe
//!   rewrites a return address on a goroutine stack the Go runtime may move.
//! - `forget_connection` / `go_forget_connection`: a connection object is freed or starts a
//!   new handshake (`SSL_free`, `SSL_do_handshake`, `gnutls_deinit`, Go's `(*Conn).Close`):
//!   forget what was read of it, so a new connection reusing its memory is read again. Not Go's
//!   `handshakeContext`: every `(*Conn).Write` calls it, after the write probe ran.
//! - `read` / `read_return`: `SSL_read(ssl, buf, num)`, `SSL_read_ex(ssl, buf, num, &count)`,
//!   `gnutls_record_recv(session, data, size)`: on a client connection whose request was read
//!   and whose answer was not, the entry notes the buffer (by thread) and the return copies what
//!   was read: the answer's head, for the relay software's own headers. Attached to a process
//!   only while the daemon wants an answer of it (an AI API request to a host no answer was
//!   read from yet): every read costs two traps.
//!
//! - `client_start`: `SSL_set_connect_state(ssl)`, `gnutls_init(session, flags)` with
//!   GNUTLS_CLIENT, Go's `(*Conn).clientHandshake`: the only probes attached for every process
//!   (servers never call them). A process whose write/read probes are not attached yet
//!   (`TLS_SCOPED`) asks the daemon for them with a `TlsClientEvent` that wakes it, at most once
//!   per `TLS_CLIENT_ASK_GAP_NS`; the daemon attaches them for that process alone when it
//!   records the process's connections, before the handshake ends. A process that set up its
//!   TLS client before connecting (Node.js) is marked in `TLS_CLIENT_PENDING`, and its next
//!   reported TCP connect wakes the daemon instead (`connecting`). For OpenSSL the call also
//!   starts the `SSL *` afresh (a reused object is read again), so no `SSL_free` probe is needed.
//!
//! Cost: a write on a connection already read costs the probe's trap and one LRU lookup; the
//! copy (at most `TLS_DATA_MAX` bytes) happens at most `TLS_WRITES_CAPTURED` times per
//! connection.
use aya_ebpf::{
    EbpfContext as _,
    bindings::pt_regs,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_attach_cookie, bpf_ktime_get_boot_ns, bpf_probe_read_user},
    },
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{
    TlsClientEvent, TlsConnKey, TlsConnState, TlsDataEvent, TlsPendingRead,
    counters::{COUNTER_TLS_LOST, COUNTER_TLS_RECORDS},
    event::EVENT_TLS_DATA,
    event::{EVENT_TLS_CLIENT, FLAG_TLS_CLIENT},
    ring::BPF_RB_FORCE_WAKEUP,
    tls::{
        GNUTLS_CLIENT_FLAG, TLS_CLIENT_ASK_GAP_NS, TLS_COOKIE_READ_EX, TLS_DATA_MAX, TLS_DIR_READ,
        TLS_DIR_WRITE, TLS_LIB_GNUTLS, TLS_LIB_GO, TLS_LIB_OPENSSL, TLS_SCOPED_WAKE,
    },
};

use crate::maps::{self, EVENTS, TLS_CLIENT_PENDING, TLS_CONNS, TLS_READS, TLS_SCOPED};

/// A TLS client connection starts (see the module notes).
#[inline(always)]
pub fn client_start(ctx: &ProbeContext) {
    let library = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u8;
    match library {
        TLS_LIB_OPENSSL => {
            if let Some(conn) = ctx.arg::<u64>(0) {
                forget(conn);
            }
        }
        TLS_LIB_GNUTLS => match ctx.arg::<u64>(1) {
            Some(flags) if flags & GNUTLS_CLIENT_FLAG != 0 => {}
            _ => return,
        },
        _ => {}
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if unsafe { TLS_SCOPED.get(&tgid) }.is_some() {
        return; // read already: the common case
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(asked) = unsafe { TLS_CLIENT_PENDING.get(&tgid) }
        && now.wrapping_sub(*asked) < TLS_CLIENT_ASK_GAP_NS
    {
        return;
    }
    let _ = TLS_CLIENT_PENDING.insert(&tgid, &now, 0);
    let event = TlsClientEvent {
        kind: EVENT_TLS_CLIENT,
        tgid,
        ts_boot_ns: now,
        library,
        _pad: [0; 7],
    };
    if EVENTS
        .output::<TlsClientEvent>(&event, BPF_RB_FORCE_WAKEUP)
        .is_err()
    {
        maps::count(COUNTER_TLS_LOST);
    }
}

/// A reported TCP connect of `tgid`: if the process started a TLS client before connecting and
/// is not read yet, its record wakes the daemon (`FLAG_TLS_CLIENT`).
#[inline(always)]
pub fn connecting(tgid: u32, event: &mut monitor_common::ConnectEvent) {
    if unsafe { TLS_CLIENT_PENDING.get(&tgid) }.is_some() {
        event.flags |= FLAG_TLS_CLIENT;
        let _ = TLS_CLIENT_PENDING.remove(&tgid);
    }
}

/// A write through `SSL_write`-shaped functions.
#[inline(always)]
pub fn write(ctx: &ProbeContext) {
    let library = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u8;
    let (Some(conn), Some(buf), Some(len)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2))
    else {
        return;
    };
    copy_write(library, conn, buf, len);
}

/// A write through Go's `(*tls.Conn).Write`.
#[inline(always)]
pub fn go_write(ctx: &ProbeContext) {
    let regs = unsafe { &*ctx.regs.cast::<pt_regs>() };
    copy_write(TLS_LIB_GO, regs.rax, regs.rbx, regs.rcx);
}

/// A connection object is freed or handshakes anew (first argument).
#[inline(always)]
pub fn forget_connection(ctx: &ProbeContext) {
    if let Some(conn) = ctx.arg::<u64>(0) {
        forget(conn);
    }
}

/// A Go `*tls.Conn` is closed (receiver in rax).
#[inline(always)]
pub fn go_forget_connection(ctx: &ProbeContext) {
    let regs = unsafe { &*ctx.regs.cast::<pt_regs>() };
    forget(regs.rax);
}

/// A read starts: note its buffer if it is the answer's head on a client connection.
#[inline(always)]
pub fn read(ctx: &ProbeContext) {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let (Some(conn), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let wanted = match TLS_CONNS.get_ptr(&key(conn)) {
        Some(s) => unsafe { (*s).wants_read() },
        None => false,
    };
    if !wanted || buf == 0 {
        return;
    }
    let count_at = if cookie & TLS_COOKIE_READ_EX != 0 {
        match ctx.arg::<u64>(3) {
            Some(p) => p,
            None => return,
        }
    } else {
        0
    };
    let pending = TlsPendingRead {
        conn,
        buf,
        count_at,
        library: cookie as u8,
        _pad: [0; 7],
    };
    let _ = TLS_READS.insert(&bpf_get_current_pid_tgid(), &pending, 0);
}

/// A read returns: copy what it read, if its entry was noted.
#[inline(always)]
pub fn read_return(ctx: &RetProbeContext) {
    let id = bpf_get_current_pid_tgid();
    let Some(pending) = TLS_READS.get_ptr(&id).map(|p| unsafe { *p }) else {
        return; // the common case: nothing noted
    };
    let _ = TLS_READS.remove(&id);
    // SSL_read returns an int (eax; the upper half of rax is not part of it), gnutls_record_recv
    // an ssize_t: a positive count fits 31 bits either way (reads are at most 2 GiB).
    let ret = ctx.ret::<i64>() as i32 as i64;
    let n: u64 = if pending.count_at != 0 {
        if ret != 1 {
            return;
        }
        match unsafe { aya_ebpf::helpers::bpf_probe_read_user(pending.count_at as *const u64) } {
            Ok(n) => n,
            Err(_) => return,
        }
    } else if ret > 0 {
        ret as u64
    } else {
        return;
    };
    let Some(state) = TLS_CONNS.get_ptr_mut(&key(pending.conn)) else {
        return;
    };
    let state = unsafe { &mut *state };
    if !state.wants_read() {
        return;
    }
    state.reads = 1;
    emit(
        pending.library,
        pending.conn,
        pending.buf,
        n,
        TLS_DIR_READ,
        0,
    );
}

#[inline(always)]
fn key(conn: u64) -> TlsConnKey {
    TlsConnKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        conn,
    }
}

#[inline(always)]
fn forget(conn: u64) {
    let _ = TLS_CONNS.remove(&key(conn));
}

#[inline(always)]
fn copy_write(library: u8, conn: u64, buf: u64, len: u64) {
    if conn == 0 || buf == 0 || len == 0 {
        return;
    }
    let key = key(conn);
    let state = match TLS_CONNS.get_ptr_mut(&key) {
        Some(s) => {
            let s = unsafe { &mut *s };
            if !s.wants_write() {
                return; // the common case on a long-lived connection
            }
            s
        }
        None => {
            let fresh = TlsConnState {
                copied: 0,
                writes: 0,
                reads: 0,
                _pad: [0; 2],
            };
            if TLS_CONNS.insert(&key, &fresh, 0).is_err() {
                return;
            }
            match TLS_CONNS.get_ptr_mut(&key) {
                Some(s) => unsafe { &mut *s },
                None => return,
            }
        }
    };
    let index = state.writes;
    state.writes = state.writes.saturating_add(1);
    let n = emit(library, conn, buf, len, TLS_DIR_WRITE, index);
    state.copied = state.copied.saturating_add(n);
}

/// Copy `len` bytes at `buf` (at most `TLS_DATA_MAX`) to the ring; the bytes copied (0 when
/// lost).
#[inline(always)]
fn emit(library: u8, conn: u64, buf: u64, len: u64, direction: u8, index: u8) -> u32 {
    if len == 0 {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<TlsDataEvent>(0) else {
        maps::count(COUNTER_TLS_LOST);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    let mut n = len;
    if n > TLS_DATA_MAX as u64 {
        n = TLS_DATA_MAX as u64;
    }
    // 1..=TLS_DATA_MAX in a form the verifier tracks (len >= 1 was checked above).
    let n = ((n as u32 - 1) & (TLS_DATA_MAX as u32 - 1)) + 1;
    unsafe {
        let h = &raw mut (*ev).header;
        let tgid_pid = bpf_get_current_pid_tgid();
        (*h).kind = EVENT_TLS_DATA;
        (*h).tgid = (tgid_pid >> 32) as u32;
        (*h).ts_boot_ns = bpf_ktime_get_boot_ns();
        (*h).conn = conn;
        (*h).tid = tgid_pid as u32;
        (*h).uid = bpf_get_current_uid_gid() as u32;
        (*h).len = n;
        (*h).call_len = if len > u32::MAX as u64 {
            u32::MAX
        } else {
            len as u32
        };
        (*h).library = library;
        (*h).direction = direction;
        (*h).index = index;
        (*h)._pad = [0; 5];
        let data = (&raw mut (*ev).data).cast::<u8>();
        if bpf_probe_read_user(data.cast(), n, buf as *const _) != 0 {
            entry.discard(0);
            maps::count(COUNTER_TLS_LOST);
            return 0;
        }
    }
    // A process's first request wakes the daemon: if it is an AI API request, the process's
    // answer probes are attached before the answer comes. Only the first: a forced wake-up costs
    // about 60 us on a VM (an interrupt to the daemon's CPU), later ones wait for the daemon's
    // next look (at most 200 ms), still well before a model answers.
    let mut wakeup = maps::lazy_wakeup();
    if direction == TLS_DIR_WRITE
        && index == 0
        && let Some(flags) = TLS_SCOPED.get_ptr_mut(&((bpf_get_current_pid_tgid() >> 32) as u32))
        && unsafe { *flags } & TLS_SCOPED_WAKE != 0
    {
        unsafe { *flags &= !TLS_SCOPED_WAKE };
        wakeup = BPF_RB_FORCE_WAKEUP;
    }
    entry.submit(wakeup);
    maps::count(COUNTER_TLS_RECORDS);
    n
}
