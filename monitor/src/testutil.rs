//! Fixtures shared by the unit tests: a temporary directory, and connect events as the kernel
//! programs write them (raw, as ring-buffer bytes, or decoded into an observation).
use std::{
    ops::Deref,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use monitor_common::{
    ConnectEvent,
    event::{FAMILY_IPV4, HOOK_CONNECT, HOOK_SENDMSG, PROTO_TCP, PROTO_UDP},
};

use crate::kernel::decode::{Observation, Record, decode};

/// A fresh, empty directory under `std::env::temp_dir()`, its name unique to this process and
/// this call; removed with everything in it on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// `tag` (the test's subject, say) only makes the name readable.
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "relaywatch-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Write `text` to the file `name` in the directory; returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds a `ConnectEvent`: an IPv4 TCP connect(2), every field not set here zero.
#[derive(Clone, Copy)]
pub(crate) struct ConnectEventBuilder(ConnectEvent);

impl ConnectEventBuilder {
    /// connect(2) of a TCP socket by process `tgid` to `ip:port`.
    pub(crate) fn tcp_v4(tgid: u32, ip: [u8; 4], port: u16) -> Self {
        let mut e = ConnectEvent::zeroed();
        e.tgid = tgid;
        e.family = FAMILY_IPV4;
        e.protocol = PROTO_TCP;
        e.hook = HOOK_CONNECT;
        e.daddr[..4].copy_from_slice(&ip);
        e.dport = port;
        ConnectEventBuilder(e)
    }

    /// A sendto(2) on an unconnected UDP socket instead.
    pub(crate) fn udp_sendmsg(mut self) -> Self {
        self.0.protocol = PROTO_UDP;
        self.0.hook = HOOK_SENDMSG;
        self
    }

    pub(crate) fn thread(mut self, tid: u32) -> Self {
        self.0.tid = tid;
        self
    }

    pub(crate) fn user(mut self, uid: u32, gid: u32) -> Self {
        self.0.uid = uid;
        self.0.gid = gid;
        self
    }

    /// The thread's comm (at most 16 bytes).
    pub(crate) fn comm(mut self, comm: &str) -> Self {
        self.0.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        self
    }

    /// The cgroup (v2 directory inode) the process was in.
    pub(crate) fn cgroup(mut self, id: u64) -> Self {
        self.0.cgroup_id = id;
        self
    }

    pub(crate) fn cookie(mut self, cookie: u64) -> Self {
        self.0.cookie = cookie;
        self
    }

    /// When the hook ran (CLOCK_BOOTTIME nanoseconds).
    pub(crate) fn at(mut self, ts_boot_ns: u64) -> Self {
        self.0.ts_boot_ns = ts_boot_ns;
        self
    }

    pub(crate) fn event(self) -> ConnectEvent {
        self.0
    }

    /// The event decoded as the daemon decodes the ring buffer's records.
    pub(crate) fn observation(self) -> Observation {
        match decode(&event_bytes(&self.0)).unwrap() {
            Record::Connect(o) => o,
            other => unreachable!("{other:?}"),
        }
    }
}

/// The bytes of `e` as a ring-buffer record.
pub(crate) fn event_bytes(e: &ConnectEvent) -> Vec<u8> {
    let p = (e as *const ConnectEvent).cast::<u8>();
    // SAFETY: ConnectEvent is plain old data (`#[repr(C)]`, no padding left uninitialised:
    // `_pad` is a field), read within its own size.
    unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<ConnectEvent>()) }.to_vec()
}
