//! Developer workflows: `cargo xtask setup | build | run | test | bench | package`.
//! `test` is: setup, lint (fmt, clippy), the fuzz targets briefly (`fuzz.rs`), build, package,
//! then every test binary, with skips counted as failures.
//!
//! `setup` is the only place that installs anything. It is idempotent and checks before it
//! acts, so `run`, `test` and `bench` call it every time at the cost of a few file lookups.
mod fuzz;
mod package;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "relaywatch developer workflows")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building relaywatch needs (apt packages, the `debian` toolchain link,
    /// bpf-linker). Does nothing when all is in place; a rustup nightly with rust-src plus
    /// bpf-linker on PATH is accepted as is.
    Setup {
        /// Also install what the test suite uses (curl, python3, bpftool, iproute2...).
        #[arg(long)]
        tests: bool,
    },
    /// Build the `relaywatch` binary (with its eBPF object embedded).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up, build (release) and run the agent as root with built-in defaults. Arguments after
    /// `--` go to `relaywatch run`, e.g. `cargo xtask run -- --log-connections`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up (build and test prerequisites), build, and run the whole test suite as root:
    /// unit tests and the integration tests that load the real eBPF programs.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the Debian package (target/debian/relaywatch_VERSION-1_ARCH.deb) with cargo-deb,
    /// installing cargo-deb first if it is missing. See packaging/ and monitor/Cargo.toml.
    Package {
        /// Package the debug build instead of the release build (what `test` does, to reuse
        /// the binary it already built).
        #[arg(long)]
        debug: bool,
    },
    /// Criterion benchmarks of the agent's overhead, as ratios against a run without it.
    Bench {
        /// Extra arguments for the criterion harness (e.g. a benchmark name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    let root = workspace_root();
    match task {
        Task::Setup { tests } => setup::ensure(tests),
        Task::Build { release } => {
            setup::ensure(false)?;
            build(&root, release).map(|_| ())
        }
        Task::Run { args } => {
            setup::ensure(false)?;
            let bin = build(&root, true)?;
            let mut cmd = as_root(&bin);
            cmd.arg("run").args(args);
            // Replace nothing: stay the parent so Ctrl-C reaches the agent and we report its exit.
            let status = cmd
                .status()
                .with_context(|| format!("starting {}", bin.display()))?;
            if !status.success() {
                bail!("relaywatch exited with {status}");
            }
            Ok(())
        }
        Task::Test { args } => {
            require_root("the integration tests load eBPF programs")?;
            setup::ensure(true)?;
            lint(&root)?;
            fuzz::run_all(&root)?;
            let bin = build(&root, false)?;
            // The packaging tests (tests/service.rs) inspect and install this .deb.
            let deb = package::build_deb(&root, false)?;
            let mut cmd = cargo(&root);
            // --no-fail-fast: every test binary runs, so the closing count covers the whole suite.
            cmd.args([
                "test",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--no-fail-fast",
            ])
            .args(args)
            .env("RELAYWATCH_BIN", &bin)
            .env("RELAYWATCH_DEB", &deb);
            // Clients the tests start must reach the loopback servers directly, whatever proxy
            // the developer's shell names.
            for var in PROXY_VARIABLES {
                cmd.env_remove(var);
            }
            let skip_log = root.join("target/tmp/skipped-tests.log");
            std::fs::create_dir_all(root.join("target/tmp"))?;
            let _ = std::fs::remove_file(&skip_log);
            cmd.env("RELAYWATCH_SKIP_LOG", &skip_log);
            run_tests_with_summary(cmd, &skip_log)
        }
        Task::Package { debug } => {
            let deb = package::build_deb(&root, !debug)?;
            println!("{}", deb.display());
            Ok(())
        }
        Task::Bench { args } => {
            require_root("the benchmarks attach the agent")?;
            setup::ensure(true)?;
            let bin = build(&root, true)?;
            cargo(&root)
                .args([
                    "bench",
                    "-p",
                    "integration-tests",
                    "--bench",
                    "overhead",
                    "--",
                ])
                .args(args)
                .env("RELAYWATCH_BIN", &bin)
                .run("cargo bench")
        }
    }
}

/// The gates CI enforces before any test runs: formatting (rustfmt.toml) and clippy with
/// warnings denied, for the userspace crates (all targets) and for the kernel crate. The kernel
/// crate is linted for the host target (clippy needs no BPF backend), with `panic=abort` and its
/// `core_intrinsics` feature allowed, in a target directory of its own so that these flags do
/// not invalidate the main build.
fn lint(root: &Path) -> Result<()> {
    cargo(root)
        .args(["fmt", "--all", "--check"])
        .run("cargo fmt --check (run `cargo fmt --all`)")?;
    cargo(root)
        .args([
            "clippy",
            "--workspace",
            "--exclude",
            "monitor-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .run("cargo clippy")?;
    cargo(root)
        .args([
            "clippy",
            "-p",
            "monitor-ebpf",
            "--target",
            &host_triple()?,
            "--",
            "-D",
            "warnings",
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", "-C panic=abort")
        .env("CARGO_TARGET_DIR", root.join("target/ebpf-clippy"))
        .run("cargo clippy (kernel crate)")
}

/// The triple rustc builds for by default (`host:` of `rustc -vV`).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host triple")
}

/// Run `cargo test`, echoing its output, and close with one line totalling every test binary's
/// `test result:` line (cargo's own last line is often a doc-test run with 0 tests).
///
/// A test that cannot run its scenario calls `integration_tests::skip`, which appends a line to
/// `skip_log`: those are counted and listed as skipped, and any skip fails the run, since setup
/// installs every prerequisite (a skip means something is broken). `RELAYWATCH_ALLOW_SKIPS=1`
/// lets a developer's partial run through.
fn run_tests_with_summary(mut cmd: Command, skip_log: &Path) -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |label: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(label)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
            ignored += count("ignored");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    let skipped: Vec<String> = std::fs::read_to_string(skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    // A skipped test returned early and libtest counted it as passed.
    let skips = skipped.len() as u64 + ignored;
    println!(
        "\ntests: {} passed, {failed} failed, {skips} skipped",
        passed.saturating_sub(skipped.len() as u64)
    );
    for line in &skipped {
        println!("  skipped: {line}");
    }
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if skips > 0 && std::env::var_os("RELAYWATCH_ALLOW_SKIPS").is_none() {
        bail!(
            "{skips} test(s) skipped: setup installs every prerequisite, so a skip means \
             something is broken (RELAYWATCH_ALLOW_SKIPS=1 to accept skips locally)"
        );
    }
    Ok(())
}

/// Proxy variables a client would obey (curl, python, node, git read both spellings).
const PROXY_VARIABLES: [&str; 10] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "ftp_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo` in the workspace root.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = cargo_anywhere();
    cmd.current_dir(root);
    cmd
}

/// The cargo that runs xtask (so the same toolchain), in the current directory.
pub(crate) fn cargo_anywhere() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Build `relaywatch` and return the path of the binary.
pub(crate) fn build(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo(root);
    cmd.args(["build", "-p", "monitor", "--bin", "relaywatch"]);
    if release {
        cmd.arg("--release");
    }
    cmd.run("cargo build")?;
    let bin = root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("relaywatch");
    if !bin.is_file() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("run this as root ({why}): sudo -E cargo xtask ...");
    }
    Ok(())
}

/// The agent needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN); use sudo when not root.
fn as_root(bin: &Path) -> Command {
    if is_root() {
        Command::new(bin)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg(bin);
        cmd
    }
}

trait RunChecked {
    fn run(&mut self, what: &str) -> Result<()>;
}

impl RunChecked for Command {
    fn run(&mut self, what: &str) -> Result<()> {
        let status = self.status().with_context(|| format!("starting {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    }
}
