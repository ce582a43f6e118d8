//! Types and constants shared by relaywatch's kernel programs (`monitor-ebpf`) and its daemon
//! (`monitor`).
//!
//! Everything that crosses the kernel/user boundary is defined here once, `#[repr(C)]`, with
//! explicit padding so both sides agree on every byte (`event_layout_is_stable` pins the sizes).
//! The shared types, re-exported at the crate root:
//!
//! - [`ConnectEvent`]: one outbound destination seen by a connect hook (TCP, connected UDP) or a
//!   sendmsg hook (unconnected UDP), with the identity of the process that chose it.
//! - [`PayloadHeader`]: where a captured payload chunk sits in its packet and stream.
//! - [`PayloadEvent`]: a payload chunk on the ring buffer, header and data.
//! - [`ProcessEvent`]: a program image started (exec), with its parent and arguments.
//! - [`ExitEvent`]: a process ended.
//! - [`FlowEndEvent`]: a socket whose bytes were counted was released, with the counts.
//! - [`TlsDataEvent`]: plaintext a process wrote on a TLS connection (uprobes), with
//!   [`TlsConnKey`] / [`TlsConnState`] of the `TLS_CONNS` map that bounds what is read.
//! - [`TaskLayout`]: `task_struct`/`mm_struct` field offsets from BTF for the exec program.
//! - [`CaptureState`]: the `CAPTURE` map's per-socket state (capture mode, watch, DNS owner).
//! - [`FilterConfig`]: the single entry of the `CONFIG` array, written by the daemon before it
//!   attaches anything.
//! - [`UdpFlowKey`] / [`UdpFlowWindow`]: key and value of the `UDP_FLOWS` map that folds
//!   repeated unconnected datagrams to one destination into one event with a count.
//! - [`Destination`]: a hook's destination, normalised and classified (local or not).
//!
//! The modules, one domain each (constants live only there):
//!
//! - [`event`]: record kinds, hook / family / transport codes and their typed enums (`user`).
//! - [`payload`]: payload chunk size and directions (`payload::Direction` with `user`).
//! - [`process`]: exec record limits (file name, argument block).
//! - [`capture`]: capture modes, watch flags and the budgets that bound a capture.
//! - [`ring`]: the ring buffer's size and when writers wake the daemon.
//! - [`counters`]: indices of the per-CPU `COUNTERS` array.
//! - [`tls`]: TLS plaintext records, libraries, directions and read budgets.
//! - [`udp`]: the UDP repeat window and the `UDP_FLOWS` capacity.
//! - [`config`]: [`FilterConfig`] and its defaults.
//! - [`destination`]: [`Destination`]'s normalisation and locality rule.
//! - [`first_payload`]: the proxy-request and TLS-record rules over a payload's first bytes,
//!   one rule each for the kernel and the daemon.
//!
//! The functions here are pure, `no_std`, inlined into the kernel programs and unit-tested from
//! userspace. Feature `user` adds `aya::Pod` for the map and record types, and the typed enums.
#![no_std]

pub mod capture;
pub mod config;
pub mod counters;
pub mod destination;
pub mod event;
pub mod first_payload;
pub mod payload;
pub mod process;
pub mod ring;
pub mod tls;
pub mod udp;

pub use capture::{CaptureState, FlowEndEvent};
pub use config::FilterConfig;
pub use destination::Destination;
pub use event::ConnectEvent;
pub use payload::{PayloadEvent, PayloadHeader};
pub use process::{ExitEvent, ProcessEvent, TaskLayout};
pub use tls::{
    TlsClientEvent, TlsConnKey, TlsConnState, TlsDataEvent, TlsDataHeader, TlsPendingRead,
};
pub use udp::{UdpFlowKey, UdpFlowWindow};

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are #[repr(C)], contain only integers and byte arrays, and have
    // explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::ConnectEvent {}
    unsafe impl aya::Pod for super::FilterConfig {}
    unsafe impl aya::Pod for super::UdpFlowKey {}
    unsafe impl aya::Pod for super::UdpFlowWindow {}
    unsafe impl aya::Pod for super::PayloadHeader {}
    unsafe impl aya::Pod for super::CaptureState {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::FlowEndEvent {}
    unsafe impl aya::Pod for super::TaskLayout {}
    unsafe impl aya::Pod for super::ExitEvent {}
    unsafe impl aya::Pod for super::TlsConnKey {}
    unsafe impl aya::Pod for super::TlsConnState {}
    unsafe impl aya::Pod for super::TlsDataHeader {}
    unsafe impl aya::Pod for super::TlsPendingRead {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout_is_stable() {
        assert_eq!(core::mem::size_of::<ConnectEvent>(), 88);
        assert_eq!(core::mem::size_of::<ConnectEvent>() % 8, 0);
        assert_eq!(core::mem::size_of::<FilterConfig>(), 16);
        assert_eq!(core::mem::size_of::<UdpFlowKey>(), 24);
        assert_eq!(core::mem::size_of::<UdpFlowWindow>(), 32);
        assert_eq!(core::mem::size_of::<PayloadHeader>(), 80);
        assert_eq!(
            core::mem::size_of::<PayloadEvent>(),
            80 + payload::PAYLOAD_CHUNK
        );
        assert_eq!(core::mem::size_of::<CaptureState>(), 136);
        assert_eq!(core::mem::size_of::<FlowEndEvent>(), 48);
        assert_eq!(
            core::mem::size_of::<ProcessEvent>(),
            32 + process::EXEC_FILENAME_LEN + 16 + process::EXEC_ARGS_LEN
        );
        assert_eq!(core::mem::size_of::<TaskLayout>(), 24);
        assert_eq!(core::mem::size_of::<ExitEvent>(), 16);
        assert_eq!(core::mem::size_of::<TlsConnKey>(), 16);
        assert_eq!(core::mem::size_of::<TlsConnState>(), 8);
        assert_eq!(core::mem::size_of::<TlsDataHeader>(), 48);
        assert_eq!(core::mem::size_of::<TlsPendingRead>(), 32);
        assert_eq!(core::mem::size_of::<TlsClientEvent>(), 24);
        assert_eq!(core::mem::size_of::<TlsDataEvent>(), 48 + tls::TLS_DATA_MAX);
    }

    #[test]
    fn field_offsets_are_stable() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(ConnectEvent, cgroup_id), 24);
        assert_eq!(offset_of!(ConnectEvent, dport), 44);
        assert_eq!(offset_of!(ConnectEvent, family), 46);
        assert_eq!(offset_of!(ConnectEvent, protocol), 47);
        assert_eq!(offset_of!(ConnectEvent, daddr), 48);
        assert_eq!(offset_of!(ConnectEvent, comm), 64);
        assert_eq!(offset_of!(ConnectEvent, hook), 80);
        assert_eq!(offset_of!(ConnectEvent, flags), 81);
        assert_eq!(offset_of!(PayloadHeader, len), 24);
        assert_eq!(offset_of!(PayloadHeader, sport), 40);
        assert_eq!(offset_of!(PayloadHeader, direction), 44);
        assert_eq!(offset_of!(PayloadHeader, mode), 47);
        assert_eq!(offset_of!(PayloadHeader, saddr), 48);
        assert_eq!(offset_of!(CaptureState, captured), 88);
        assert_eq!(offset_of!(CaptureState, mode), 98);
        assert_eq!(offset_of!(CaptureState, flags), 99);
        assert_eq!(offset_of!(CaptureState, dns_owner), 100);
        assert_eq!(offset_of!(CaptureState, watch_start_ns), 120);
        assert_eq!(offset_of!(CaptureState, dns_tcp_segments), 128);
        assert_eq!(offset_of!(ProcessEvent, filename), 32);
        assert_eq!(offset_of!(ProcessEvent, ppid), 288);
        assert_eq!(offset_of!(ProcessEvent, args_total), 296);
        assert_eq!(offset_of!(ProcessEvent, args), 304);
    }
}
