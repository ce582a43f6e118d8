//! `cargo xtask package`: the Debian package, built with cargo-deb from the metadata in
//! monitor/Cargo.toml.
//!
//! Files generated from the binary itself, so that they always match it, are written first into
//! target/<profile>/packaging/ (where the asset list expects them):
//! - `config.toml`: `relaywatch config default`, installed as the conffile
//!   /etc/relaywatch/config.toml;
//! - `man/*.1.gz`: `relaywatch generate-man`, gzipped as Debian wants man pages;
//! - `completions/`: `relaywatch generate-completions` (bash, zsh, fish).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{RunChecked as _, build, cargo, setup};

/// Build the binary and the .deb; returns the .deb's path.
pub fn build_deb(root: &Path, release: bool) -> Result<PathBuf> {
    setup::ensure(false)?;
    setup::ensure_cargo_deb()?;
    let bin = build(root, release)?;
    let generated = bin
        .parent()
        .expect("binary has a directory")
        .join("packaging");
    generate(&bin, &generated)?;

    let out_dir = root.join("target/debian");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut cmd = cargo(root);
    cmd.args(["deb", "-p", "monitor", "--no-build", "--quiet", "--output"])
        .arg(&out_dir);
    if !release {
        cmd.args(["--profile", "dev"]);
    }
    let out = cmd.output().context("starting cargo deb")?;
    if !out.status.success() {
        bail!(
            "cargo deb failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // cargo-deb prints the path of the package it wrote.
    let printed = String::from_utf8_lossy(&out.stdout);
    let deb = printed
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from);
    match deb {
        Some(deb) if deb.is_file() => Ok(deb),
        _ => bail!("cargo deb succeeded but printed no .deb path (stdout: {printed:?})"),
    }
}

fn generate(bin: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let config = Command::new(bin)
        .args(["config", "default"])
        .output()
        .context("running relaywatch config default")?;
    if !config.status.success() {
        bail!("relaywatch config default failed ({})", config.status);
    }
    fs::write(dir.join("config.toml"), &config.stdout)
        .context("writing the default config.toml")?;

    let man = dir.join("man");
    Command::new(bin)
        .arg("generate-man")
        .arg(&man)
        .run("relaywatch generate-man")?;
    for page in fs::read_dir(&man).context("listing generated man pages")? {
        let page = page?.path();
        // -n: no name or time stamp in the header, so the same page gives the same bytes.
        Command::new("gzip")
            .args(["-9", "-n", "-f"])
            .arg(&page)
            .run("gzip")?;
    }
    Command::new(bin)
        .arg("generate-completions")
        .arg(dir.join("completions"))
        .run("relaywatch generate-completions")
}
