//! Builds the kernel programs (`monitor-ebpf`) for bpfel-unknown-none with aya-build, so that a
//! plain `cargo build` produces a `relaywatch` binary with its eBPF object embedded.
//!
//! The eBPF side needs a compiler with the `core` sources (`-Z build-std=core`). Two routes work:
//! - `debian`: Debian's rustc-web + rust-web-src linked into rustup as `debian` (what
//!   `cargo xtask setup` installs on machines without internet). It calls itself stable, so
//!   RUSTC_BOOTSTRAP=1 unlocks `-Z build-std`.
//! - a rustup nightly with the rust-src component (the usual aya route on a machine with internet).
//!
//! Override with RELAYWATCH_EBPF_TOOLCHAIN=<rustup toolchain name>.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

const SETUP_HINT: &str = "run `cargo xtask setup` (installs Debian's rustc-web/rust-web-src, \
    llvm-22 and bpf-linker), or install a rustup nightly with rust-src and `cargo install bpf-linker`";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=RELAYWATCH_EBPF_TOOLCHAIN");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = Path::new(&manifest_dir).join("../monitor-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .context("non-UTF-8 path to monitor-ebpf")?
        .to_owned();

    if std::env::var_os("AYA_BUILD_SKIP").is_none() && which("bpf-linker").is_none() {
        bail!("bpf-linker is not on PATH: {SETUP_HINT}");
    }
    let toolchain = choose_toolchain()?;
    // SAFETY: build scripts are single-threaded; aya-build and its child cargo read these.
    unsafe {
        if toolchain == "debian" {
            std::env::set_var("RUSTC_BOOTSTRAP", "1");
        }
        // aya-build replays the child cargo's stderr as build-script warnings, which cargo then
        // repeats on every build; keep the child to errors and warnings only.
        std::env::set_var("CARGO_TERM_QUIET", "true");
    }
    aya_build::build_ebpf(
        [Package {
            name: "monitor-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!("building the eBPF programs with toolchain `{toolchain}` failed; {SETUP_HINT}")
    })
}

fn choose_toolchain() -> anyhow::Result<String> {
    if let Ok(name) = std::env::var("RELAYWATCH_EBPF_TOOLCHAIN") {
        return Ok(name);
    }
    let listed = Command::new("rustup").args(["toolchain", "list"]).output();
    let listed = match listed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => bail!("rustup is not available to pick the eBPF toolchain: {SETUP_HINT}"),
    };
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if names.contains(&"debian") {
        return Ok("debian".into());
    }
    for name in names.iter().filter(|n| n.starts_with("nightly")) {
        let sysroot = Command::new("rustup")
            .args(["run", name, "rustc", "--print", "sysroot"])
            .output();
        if let Ok(out) = sysroot {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if Path::new(&root)
                .join("lib/rustlib/src/rust/library/core")
                .exists()
            {
                return Ok((*name).to_owned());
            }
        }
    }
    bail!(
        "no toolchain can build the eBPF programs (need `debian` or a nightly with rust-src): {SETUP_HINT}"
    )
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
