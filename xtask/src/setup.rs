//! Installing build and test prerequisites, idempotently.
//!
//! Two ways to build the eBPF object are accepted (see monitor/build.rs):
//! - a rustup nightly that has rust-src, plus bpf-linker on PATH (the usual aya set-up on a
//!   machine with internet): accepted as is, nothing installed for the build;
//! - otherwise Debian's rustc-web + cargo-web + rust-web-src (a matched compiler and `core`
//!   source), linked into rustup as the `debian` toolchain, and bpf-linker 0.13 built against
//!   Debian's llvm-22 (the LLVM major of rustc-web).
//!
//! What is present is checked first (one dpkg-query, one rustup call, a few file lookups), so a
//! complete machine costs well under a second.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::RunChecked as _;

/// Debian packages for the `debian` toolchain route and for building bpf-linker against llvm-22.
const BUILD_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "zlib1g-dev",
    "libffi-dev",
    "libxml2-dev",
    "libzstd-dev",
];

/// Debian packages the test suite and benchmarks drive: real clients and kernel inspection;
/// dnsmasq for the DNS tests; systemd (systemd-analyze), man-db and adduser for the packaging
/// tests.
const TEST_PACKAGES: &[&str] = &[
    "bpftool",
    "curl",
    "python3",
    "python3-venv",
    "iproute2",
    "util-linux",
    "openssl",
    "procps",
    "dnsmasq-base",
    "systemd",
    "man-db",
    "adduser",
    // The sinks test runs a private rsyslogd (UDP, TCP, and TLS through the gtls driver).
    "rsyslog",
    "rsyslog-gnutls",
    // The system trust store: sinks and feeds must refuse a loopback server it does not vouch for.
    "ca-certificates",
    // libFuzzer (C++), built into the fuzz targets `cargo xtask test` runs.
    "g++",
    // A Go HTTP/2 client (crypto/tls, found through .gopclntab) for the API-request tests.
    "golang-go",
];

/// Python packages the tests drive from the test virtualenv (target/test-venv).
const TEST_PYTHON_PACKAGES: &[&str] = &["aioquic", "openai"];

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn ensure(tests: bool) -> Result<()> {
    let nightly = nightly_with_rust_src();
    let linker = bpf_linker_path();
    let debian_route = !(nightly.is_some() && linker.is_some());

    let mut wanted: Vec<&str> = Vec::new();
    if debian_route {
        wanted.extend(BUILD_PACKAGES);
    }
    if tests {
        wanted.extend(TEST_PACKAGES);
    }
    let missing = missing_packages(&wanted)?;
    if !missing.is_empty() {
        eprintln!("xtask setup: installing {}", missing.join(" "));
        apt_install(&missing)?;
    }
    if tests {
        ensure_node()?;
        ensure_test_venv()?;
    }
    if !debian_route {
        return Ok(());
    }
    if !rustup_toolchains()?.iter().any(|t| t == "debian") {
        eprintln!("xtask setup: linking Debian's rustc-web as rustup toolchain `debian`");
        Command::new("rustup")
            .args(["toolchain", "link", "debian", "/usr"])
            .run("rustup toolchain link")?;
    }
    if linker.is_none() {
        eprintln!(
            "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against {LLVM_PREFIX} (about a minute)"
        );
        crate::cargo_anywhere()
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .run("cargo install bpf-linker")?;
        if bpf_linker_path().is_none() {
            bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
        }
    }
    Ok(())
}

/// node for the TLS client tests: the machine's own if it has one, else Debian's.
fn ensure_node() -> Result<()> {
    if which("node").is_some() {
        return Ok(());
    }
    eprintln!("xtask setup: installing nodejs");
    apt_install(&["nodejs".to_string()])
}

/// target/test-venv with the Python packages the tests use (a QUIC client, the OpenAI SDK).
fn ensure_test_venv() -> Result<()> {
    let venv = crate::workspace_root().join("target/test-venv");
    let python = venv.join("bin/python");
    let have = python.is_file()
        && TEST_PYTHON_PACKAGES.iter().all(|p| {
            Command::new(&python)
                .args(["-c", &format!("import {p}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    if have {
        return Ok(());
    }
    eprintln!(
        "xtask setup: creating {} with {}",
        venv.display(),
        TEST_PYTHON_PACKAGES.join(" ")
    );
    Command::new("/usr/bin/python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .run("python3 -m venv")?;
    Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(TEST_PYTHON_PACKAGES)
        .run("pip install")
}

const CARGO_DEB_VERSION: &str = "3.8.0";

/// cargo-deb, for `cargo xtask package` (and `test`, which checks the package).
pub fn ensure_cargo_deb() -> Result<()> {
    let installed = crate::cargo_anywhere()
        .args(["deb", "--version"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask setup: installing cargo-deb {CARGO_DEB_VERSION} (about a minute)");
    crate::cargo_anywhere()
        .args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ])
        .run("cargo install cargo-deb")?;
    if which("cargo-deb").is_none() {
        bail!("cargo-deb was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// Packages from `wanted` that dpkg does not report as installed.
fn missing_packages(wanted: &[&str]) -> Result<Vec<String>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    if which("dpkg-query").is_none() {
        bail!(
            "automatic set-up needs a Debian or Ubuntu host (dpkg/apt). Elsewhere install a \
             rustup nightly with rust-src and `cargo install bpf-linker`, then build again"
        );
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
        .args(wanted)
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            // "ii" installed; "it"/"iW": installed with dpkg triggers still pending (another
            // dpkg run, e.g. a package test, is processing man-db's trigger right now).
            matches!(f.next()?, "ii" | "it" | "iW").then_some(name)
        })
        .collect();
    Ok(wanted
        .iter()
        .filter(|p| !installed.contains(p))
        .map(|p| p.to_string())
        .collect())
}

fn apt_install(packages: &[String]) -> Result<()> {
    let sudo = !crate::is_root();
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    apt(&["update", "-qq"]).run("apt-get update")?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(packages);
    install.run("apt-get install")
}

fn rustup_toolchains() -> Result<Vec<String>> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context(
            "running `rustup toolchain list` (the build uses rustup to pick the eBPF toolchain)",
        )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// A rustup nightly whose sysroot has the `core` sources, if any.
fn nightly_with_rust_src() -> Option<String> {
    rustup_toolchains()
        .ok()?
        .into_iter()
        .filter(|t| t.starts_with("nightly"))
        .find(|t| {
            Command::new("rustup")
                .args(["run", t, "rustc", "--print", "sysroot"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .is_some_and(|root| {
                    Path::new(&root)
                        .join("lib/rustlib/src/rust/library/core")
                        .is_dir()
                })
        })
}

fn bpf_linker_path() -> Option<PathBuf> {
    which("bpf-linker")
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
