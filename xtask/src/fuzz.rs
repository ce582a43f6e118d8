//! `cargo xtask test` runs every fuzz target of `monitor/fuzz` briefly on its seeds: the naming
//! parsers see inputs the unit tests never wrote, on every run, and a crash fails the suite.
//!
//! The targets are libFuzzer binaries (libfuzzer-sys). They are built the way cargo-fuzz builds
//! them (SanitizerCoverage instrumentation, `--cfg fuzzing`, debug assertions and overflow checks
//! on, release optimisation) but without a sanitizer, so stable rustc and no extra tool suffice;
//! the flags go through `--target` so that build scripts are not instrumented. Each target gets a
//! fresh corpus under target/fuzz/corpus/ seeded from `seeds/` (the seeds directory stays as it
//! is in git) and runs for a bounded time and count; a crashing input is written to
//! target/fuzz/artifacts/TARGET/ and named in the error.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::RunChecked as _;

/// How long each target runs (seconds), and at most how many inputs.
const SECONDS_PER_TARGET: u32 = 10;
const MAX_RUNS: u32 = 2_000_000;

const INSTRUMENTATION: &[&str] = &[
    "--cfg fuzzing",
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

pub fn run_all(root: &Path) -> Result<()> {
    let fuzz_dir = root.join("monitor/fuzz");
    let target_dir = root.join("target/fuzz");
    let triple = crate::host_triple()?;
    crate::cargo(&fuzz_dir)
        .args(["build", "--release", "--bins", "--target", &triple])
        .env("RUSTFLAGS", INSTRUMENTATION.join(" "))
        .env("CARGO_TARGET_DIR", &target_dir)
        .run("building the fuzz targets")?;
    let bins = target_dir.join(&triple).join("release");
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir.join("fuzz_targets"))
        .context("reading monitor/fuzz/fuzz_targets")?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    targets.sort();
    if targets.is_empty() {
        bail!("no fuzz targets in monitor/fuzz/fuzz_targets");
    }
    for target in &targets {
        run_one(&bins.join(target), target, &fuzz_dir, &target_dir)?;
    }
    println!(
        "fuzz: {} targets, {SECONDS_PER_TARGET} s each on their seeds, no crash",
        targets.len()
    );
    Ok(())
}

fn run_one(bin: &Path, target: &str, fuzz_dir: &Path, target_dir: &Path) -> Result<()> {
    let seeds = fuzz_dir.join("seeds").join(target);
    if !seeds.is_dir() {
        bail!(
            "fuzz target {target} has no seeds directory {}",
            seeds.display()
        );
    }
    let corpus: PathBuf = target_dir.join("corpus").join(target);
    let artifacts = target_dir.join("artifacts").join(target);
    let _ = std::fs::remove_dir_all(&corpus);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let out = Command::new(bin)
        .arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={SECONDS_PER_TARGET}"))
        .arg(format!("-runs={MAX_RUNS}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let runs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map_or("?", str::trim);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} failed ({}) after {runs} inputs; crashing input in {}:\n{}",
            out.status,
            artifacts.display(),
            tail.join("\n")
        );
    }
    println!("fuzz: {target}: {runs} inputs, no crash");
    Ok(())
}
