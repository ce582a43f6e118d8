//! The per-socket gate: a `u32` in socket-local storage (`CAPTURE_GATE`) saying "this socket may
//! have a `CAPTURE` entry". The packet programs run for every packet of every socket on the host;
//! reading socket-local storage is a pointer walk from the socket (no hashing), so sockets that
//! were never reported, or whose capture is over, cost that walk and nothing else. Only behind an
//! open gate do the programs look the socket up in `CAPTURE` (a hash map, because the daemon
//! addresses entries by socket cookie).
//!
//! Opened (created with value 1) by the connect/sendmsg hooks whenever they insert a `CAPTURE`
//! entry. Closed (set to 0) by a packet program that finds no entry behind an open gate: the
//! entry ended (capture done, the daemon ended it, LRU eviction). The storage itself goes with the
//! socket. Reported streams keep their entry after capture (`STATE_AWAIT`) until the daemon
//! decides, so a later `watch` is never hidden behind a closed gate.
use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_SK_STORAGE_GET_F_CREATE, bpf_sock, bpf_sock_addr},
    helpers::generated::bpf_sk_storage_get,
    programs::{SkBuffContext, SockAddrContext, SockContext},
};

use crate::maps::{CAPTURE, CAPTURE_GATE};

const OPEN: u32 = 1;

/// The socket's gate; with `BPF_SK_STORAGE_GET_F_CREATE`, created (zeroed: closed) if absent.
#[inline(always)]
fn storage(sk: *mut bpf_sock, flags: u64) -> *mut u32 {
    let map = core::ptr::from_ref(&CAPTURE_GATE).cast_mut().cast();
    unsafe { bpf_sk_storage_get(map, sk.cast(), core::ptr::null_mut(), flags) }.cast()
}

/// Open the gate of the socket a connect/sendmsg hook runs for.
#[inline(always)]
pub fn open(ctx: &SockAddrContext) {
    let sk = unsafe { (*ctx.as_ptr().cast::<bpf_sock_addr>()).__bindgen_anon_1.sk };
    if sk.is_null() {
        return;
    }
    let p = storage(sk, u64::from(BPF_SK_STORAGE_GET_F_CREATE));
    if !p.is_null() {
        unsafe { *p = OPEN };
    }
}

/// The open gate of a packet's socket, if it has one.
#[inline(always)]
pub fn packet(ctx: &SkBuffContext) -> Option<*mut u32> {
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let p = storage(sk, 0);
    (!p.is_null() && unsafe { *p } == OPEN).then_some(p)
}

/// Whether a released socket's gate is open.
#[inline(always)]
pub fn released(ctx: &SockContext) -> bool {
    let map = core::ptr::from_ref(&CAPTURE_GATE).cast_mut().cast();
    // The cgroup sock helper variant takes the context itself as the socket.
    let p: *mut u32 =
        unsafe { bpf_sk_storage_get(map, ctx.sock.cast(), core::ptr::null_mut(), 0) }.cast();
    !p.is_null() && unsafe { *p } == OPEN
}

/// No entry behind the gate any more: close it. Then look once more: a sendmsg or connect on
/// another CPU may have inserted an entry (and opened the gate) between our lookup and the close;
/// its gate must not stay shut.
#[inline(always)]
pub fn close(gate: *mut u32, cookie: &u64) {
    unsafe { *gate = 0 };
    if CAPTURE.get_ptr(cookie).is_some() {
        unsafe { *gate = OPEN };
    }
}
