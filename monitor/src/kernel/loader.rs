//! Loading the embedded eBPF object, configuring it and attaching its programs.
//!
//! Every program is attached to the cgroup v2 root, so it sees every process on the host. Links
//! belong to the `Ebpf` value: dropping the `Agent` detaches everything (nothing is pinned).
use std::fs::File;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, TracePoint,
        UProbe,
    },
};
use monitor_common::{
    CaptureState, FilterConfig, TaskLayout, UdpFlowKey, UdpFlowWindow,
    capture::{CAPTURE_NONE, STATE_WATCH},
    counters::COUNTER_COUNT,
};

use crate::kernel::{preflight::Host, tls_probes::TlsProbes};

/// cgroup sock_addr programs (destination and process at connect/sendmsg time).
const SOCK_ADDR_PROGRAMS: &[&str] = &[
    "relaywatch_connect4",
    "relaywatch_connect6",
    "relaywatch_sendmsg4",
    "relaywatch_sendmsg6",
];

/// cgroup_skb programs (first-payload capture on egress, DNS answers on ingress).
const SKB_PROGRAMS: &[(&str, CgroupSkbAttachType)] = &[
    ("relaywatch_egress", CgroupSkbAttachType::Egress),
    ("relaywatch_ingress", CgroupSkbAttachType::Ingress),
];

/// Tracepoint programs (process table: exec and exit).
const TRACEPOINT_PROGRAMS: &[(&str, &str, &str)] = &[
    ("relaywatch_exec", "sched", "sched_process_exec"),
    ("relaywatch_exit", "sched", "sched_process_exit"),
];

/// cgroup sock programs (socket release: flow volume of watched sockets, map hygiene).
const SOCK_PROGRAMS: &[&str] = &["relaywatch_release"];

/// Number of programs attached.
pub const PROGRAM_COUNT: usize =
    SOCK_ADDR_PROGRAMS.len() + SKB_PROGRAMS.len() + SOCK_PROGRAMS.len() + TRACEPOINT_PROGRAMS.len();

pub struct Agent {
    // Field order is drop order: the maps we took out go before the object and its links.
    pub events: Option<RingBuf<MapData>>,
    pub udp_flows: HashMap<MapData, UdpFlowKey, UdpFlowWindow>,
    pub capture: HashMap<MapData, u64, CaptureState>,
    counters: PerCpuArray<MapData, u64>,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Where the TLS uprobes are (attached as libraries and programs are found).
    pub tls: TlsProbes,
    ebpf: Ebpf,
}

impl Agent {
    pub fn load_and_attach(
        host: &Host,
        config: FilterConfig,
        tls_plaintext: bool,
    ) -> Result<Agent> {
        raise_memlock_limit();
        let mut ebpf = Ebpf::load(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/monitor"
        )))
        .context("loading the eBPF object into the kernel")?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::debug!("eBPF logging unavailable: {e}");
                None
            }
        };

        let mut cfg: Array<_, FilterConfig> = Array::try_from(
            ebpf.map_mut("CONFIG")
                .context("map CONFIG missing from the eBPF object")?,
        )?;
        cfg.set(0, config, 0).context("writing the CONFIG map")?;
        // Parent pid and arguments at exec, read in the kernel: a process that exits before the
        // daemon reads /proc still has them. Without the offsets they come from /proc only.
        let layout = crate::kernel::btf::KernelBtf::read_running_kernel().and_then(|btf| btf.task_layout()).unwrap_or_else(|e| {
            log::warn!("kernel BTF: {e}; exec events carry no parent or arguments (read from /proc instead)");
            TaskLayout::default()
        });
        let mut task_layout: Array<_, TaskLayout> = Array::try_from(
            ebpf.map_mut("TASK_LAYOUT")
                .context("map TASK_LAYOUT missing from the eBPF object")?,
        )?;
        task_layout
            .set(0, layout, 0)
            .context("writing the TASK_LAYOUT map")?;

        let cgroup = File::open(&host.cgroup2)
            .with_context(|| format!("opening cgroup v2 root {}", host.cgroup2.display()))?;
        // `Single` is the mode aya 0.14 can request here (`AllowMultiple` fails with EINVAL);
        // through bpf_link the kernel still lets other tools attach beside us.
        let on_cgroup = |name: &str| format!("attaching {name} to {}", host.cgroup2.display());
        for name in SOCK_ADDR_PROGRAMS {
            let program: &mut CgroupSockAddr = loaded(&mut ebpf, name)?;
            program
                .attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| on_cgroup(name))?;
        }
        for (name, attach_type) in SKB_PROGRAMS {
            let program: &mut CgroupSkb = loaded(&mut ebpf, name)?;
            program
                .attach(&cgroup, *attach_type, CgroupAttachMode::Single)
                .with_context(|| on_cgroup(name))?;
        }
        for name in SOCK_PROGRAMS {
            let program: &mut CgroupSock = loaded(&mut ebpf, name)?;
            program
                .attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| on_cgroup(name))?;
        }
        for (name, category, tracepoint) in TRACEPOINT_PROGRAMS {
            let program: &mut TracePoint = loaded(&mut ebpf, name)?;
            program.attach(category, tracepoint).with_context(|| {
                format!("attaching {name} to tracepoint {category}/{tracepoint}")
            })?;
        }

        // TLS plaintext (optional: a kernel without uprobes keeps everything else).
        let tls_loaded = tls_plaintext
            && crate::kernel::tls_probes::programs().all(|name| {
                match loaded::<UProbe>(&mut ebpf, name) {
                    Ok(_) => true,
                    Err(e) => {
                        log::warn!("TLS plaintext is not read: {e:#}");
                        false
                    }
                }
            });
        let mut tls = TlsProbes::new(tls_loaded);
        tls.start(&mut ebpf);

        let events = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS missing")?)?;
        let udp_flows = HashMap::try_from(
            ebpf.take_map("UDP_FLOWS")
                .context("map UDP_FLOWS missing")?,
        )?;
        let capture = HashMap::try_from(ebpf.take_map("CAPTURE").context("map CAPTURE missing")?)?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(Agent {
            events: Some(events),
            udp_flows,
            capture,
            counters,
            logger,
            tls,
            ebpf,
        })
    }

    /// Stop capturing a socket's payload (it is named, or its record was written). An entry that
    /// also marks a DNS socket or a watched one stays, with capture off.
    pub fn stop_capture(&mut self, cookie: u64) {
        // Absent already is the usual case: the kernel removes entries when it has enough.
        let Ok(mut state) = self.capture.get(&cookie, 0) else {
            return;
        };
        if state.outlives_capture() {
            state.mode = CAPTURE_NONE;
            let _ = self.capture.insert(cookie, state, 0);
        } else {
            let _ = self.capture.remove(&cookie);
        }
    }

    /// Count a socket's payload bytes from now on and report them when it is released.
    /// Only an existing entry is updated: a socket that is gone (its end already on the ring
    /// buffer) or evicted gets no new entry.
    pub fn watch(&mut self, cookie: u64, now_ns: u64) {
        /// BPF_EXIST: update only.
        const EXISTING: u64 = 2;
        let Ok(mut state) = self.capture.get(&cookie, 0) else {
            return;
        };
        state.mode = CAPTURE_NONE;
        state.flags |= STATE_WATCH;
        state.watch_start_ns = now_ns;
        if let Err(e) = self.capture.insert(cookie, state, EXISTING) {
            log::debug!("watching socket {cookie:#x}: {e}");
        }
    }

    /// Whether the TLS plaintext of `tgid` is read (see `TlsProbes::readable`).
    pub fn tls_readable(&mut self, tgid: u32) -> bool {
        self.tls.readable(tgid)
    }

    /// A recorded TCP connection (see `TlsProbes::on_connect`).
    pub fn tls_connect(&mut self, tgid: u32, tls_client: bool) {
        self.tls.on_connect(&mut self.ebpf, tgid, tls_client);
    }

    /// A process started a TLS client (see `TlsProbes::on_client`).
    pub fn tls_client(&mut self, tgid: u32) {
        self.tls.on_client(&mut self.ebpf, tgid);
    }

    /// Read a process's answers, or stop (see `TlsProbes::answers`).
    pub fn tls_answers(&mut self, tgid: u32, on: bool) {
        self.tls.answers(tgid, on);
    }

    /// A process exited (see `TlsProbes::on_exit`).
    pub fn tls_exit(&mut self, tgid: u32) {
        self.tls.on_exit(tgid);
    }

    /// Drop the probes of gone processes (see `TlsProbes::sweep`).
    pub fn tls_sweep(&mut self) {
        self.tls.sweep();
    }

    /// A program started (see `TlsProbes::on_exec`).
    pub fn tls_exec(&mut self, tgid: u32) {
        self.tls.on_exec(&mut self.ebpf, tgid);
    }

    /// Largest per-CPU value of a gauge (indices in `monitor_common::counters`).
    pub fn gauge_max(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().copied().max().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Sum over CPUs of one counter (indices in `monitor_common::counters`).
    pub fn counter(&self, index: u32) -> u64 {
        debug_assert!(index < COUNTER_COUNT);
        match self.counters.get(&index, 0) {
            Ok(values) => values.iter().copied().fold(0u64, u64::wrapping_add),
            Err(e) => {
                log::debug!("reading counter {index}: {e}");
                0
            }
        }
    }
}

/// The program `name` of the object, as its type, loaded into the kernel (verified).
fn loaded<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    P: LoadProgram,
{
    let program: &mut P = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()?;
    program
        .load_program()
        .with_context(|| format!("loading program {name} (verifier)"))?;
    Ok(program)
}

/// `load()` of the program types the agent uses (aya has no common trait for it).
trait LoadProgram {
    fn load_program(&mut self) -> Result<(), aya::programs::ProgramError>;
}

macro_rules! load_program {
    ($($t:ty),*) => {$(
        impl LoadProgram for $t {
            fn load_program(&mut self) -> Result<(), aya::programs::ProgramError> {
                self.load()
            }
        }
    )*};
}
load_program!(CgroupSockAddr, CgroupSkb, CgroupSock, TracePoint, UProbe);

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use memcg and ignore it.
/// Raising it needs CAP_SYS_RESOURCE, which some sandboxes lack: not fatal.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "setrlimit(RLIMIT_MEMLOCK): {}",
            std::io::Error::last_os_error()
        );
    }
}
