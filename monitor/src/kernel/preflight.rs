//! What the host must offer before anything is loaded, each failure as one actionable line.
use std::{fs, path::PathBuf};

use anyhow::{Result, bail};

/// Facts found while checking, needed to attach.
pub struct Host {
    /// Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
    pub cgroup2: PathBuf,
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

pub fn check() -> Result<Host> {
    check_kernel_version(&fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default())?;
    check_capabilities(&fs::read_to_string("/proc/self/status").unwrap_or_default())?;
    let cgroup2 = find_cgroup2(&fs::read_to_string("/proc/mounts").unwrap_or_default())?;
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "kernel BTF is missing (/sys/kernel/btf/vmlinux): relaywatch needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y (standard on current distribution kernels)"
        );
    }
    ensure_tracefs()?;
    Ok(Host { cgroup2 })
}

/// Tracepoints are attached by id, read from tracefs; mount it where it belongs if nobody has.
fn ensure_tracefs() -> Result<()> {
    let mounted = || {
        let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
        mounts
            .lines()
            .any(|l| l.split_ascii_whitespace().nth(2) == Some("tracefs"))
    };
    if mounted() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; mount(2) has no other preconditions.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    // EBUSY when another agent starting at the same moment (or the kernel's automount) mounted
    // it between our look and our mount: what we wanted is there.
    if rc != 0 && !mounted() {
        bail!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({}): mount it \
             with `mount -t tracefs nodev /sys/kernel/tracing` (kernel needs CONFIG_TRACING)",
            std::io::Error::last_os_error()
        );
    }
    log::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

fn check_kernel_version(osrelease: &str) -> Result<()> {
    let mut parts = osrelease.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < (5, 8) {
        bail!(
            "Linux {} is too old: relaywatch needs 5.8 or newer (BPF ring buffer, cgroup hooks)",
            osrelease.trim()
        );
    }
    Ok(())
}

fn check_capabilities(status: &str) -> Result<()> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    // Before 5.8 CAP_SYS_ADMIN covered BPF and perf; it still does.
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !missing.is_empty() {
        bail!(
            "missing privileges ({}): run as root (sudo relaywatch run) or grant \
             CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (AmbientCapabilities= under systemd)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn find_cgroup2(mounts: &str) -> Result<PathBuf> {
    let found = mounts.lines().find_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (_src, target, fstype) = (f.next()?, f.next()?, f.next()?);
        // /proc/mounts escapes spaces and friends as octal (\040).
        (fstype == "cgroup2").then(|| PathBuf::from(target.replace("\\040", " ")))
    });
    match found {
        Some(path) => Ok(path),
        None => bail!(
            "cgroup v2 is not mounted: mount it with `mount -t cgroup2 none /sys/fs/cgroup` \
             (systemd hosts: boot with systemd.unified_cgroup_hierarchy=1)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(check_kernel_version("6.18.44-fc-v669\n").is_ok());
        assert!(check_kernel_version("5.8.0").is_ok());
        let err = check_kernel_version("5.4.0-150-generic")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("5.4.0-150-generic") && err.contains("5.8"),
            "{err}"
        );
        assert!(check_kernel_version("").is_err());
    }

    #[test]
    fn capabilities() {
        assert!(check_capabilities("CapEff:\t000001ffffffffff\n").is_ok());
        // CAP_BPF | CAP_PERFMON | CAP_NET_ADMIN only
        let minimal = (1u64 << 39) | (1u64 << 38) | (1u64 << 12);
        assert!(check_capabilities(&format!("CapEff:\t{minimal:016x}\n")).is_ok());
        let err = check_capabilities("CapEff:\t0000000000000000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && err.contains("CAP_NET_ADMIN"),
            "{err}"
        );
        let err = check_capabilities(&format!("CapEff:\t{:016x}\n", 1u64 << 21))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(CAP_NET_ADMIN)"), "{err}");
    }

    #[test]
    fn cgroup2_mount_point() {
        let hybrid = "cgroup /sys/fs/cgroup/memory cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            find_cgroup2(hybrid).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            find_cgroup2("none /my\\040cg cgroup2 rw 0 0").unwrap(),
            PathBuf::from("/my cg")
        );
        let err = find_cgroup2("proc /proc proc rw 0 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cgroup v2 is not mounted"), "{err}");
    }
}
