//! Man pages and shell completions, generated from the clap definitions in `cli.rs` so they can
//! never disagree with `--help`. Packaging runs the hidden `relaywatch generate-man DIR` and
//! `relaywatch generate-completions DIR` against the binary it ships.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::args::Cli;

/// Write `relaywatch.1` and one page per visible subcommand (`relaywatch-config-check.1`...)
/// into `dir`; returns the files written.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    write_page(dir, cmd, &mut written)?;
    Ok(written)
}

fn write_page(dir: &Path, cmd: clap::Command, written: &mut Vec<PathBuf>) -> Result<()> {
    let name = cmd.get_name().to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("rendering a man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    // `build()` added a `help` subcommand to each level; its page would say nothing new.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // A subcommand page is named after its full invocation, as git's are.
        let sub = sub.clone().name(format!("{name}-{}", sub.get_name()));
        write_page(dir, sub, written)?;
    }
    Ok(())
}

/// Write `relaywatch.bash`, `_relaywatch` (zsh) and `relaywatch.fish` into `dir`.
pub fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cmd, "relaywatch", dir)
                .with_context(|| format!("writing {shell} completions into {}", dir.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("relaywatch-generate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let dir = scratch("man");
        let pages = man_pages(&dir).unwrap();
        let names: Vec<_> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        let expected_pages = [
            "relaywatch.1",
            "relaywatch-run.1",
            "relaywatch-config.1",
            "relaywatch-config-check.1",
            "relaywatch-config-default.1",
            "relaywatch-status.1",
            "relaywatch-alerts.1",
            "relaywatch-connections.1",
            "relaywatch-relays.1",
            "relaywatch-reload.1",
            "relaywatch-blocklist.1",
            "relaywatch-blocklist-check.1",
            "relaywatch-blocklist-test.1",
            "relaywatch-blocklist-resolve.1",
            "relaywatch-blocklist-list.1",
        ];
        for expected in expected_pages {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        let hidden = ["generate", "help", "store-soak", "sink-send"];
        assert!(
            !names.iter().any(|n| hidden.iter().any(|h| n.contains(h))),
            "hidden or help commands got pages: {names:?}"
        );
        assert_eq!(names.len(), expected_pages.len(), "{names:?}");
        let run = std::fs::read_to_string(dir.join("relaywatch-run.1")).unwrap();
        assert!(
            run.starts_with(".ie") || run.contains(".TH"),
            "not roff: {}",
            &run[..80.min(run.len())]
        );
        assert!(
            run.contains("include\\-loopback") && run.contains("config"),
            "{run}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_for_three_shells() {
        let dir = scratch("completions");
        let files = completions(&dir).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["relaywatch.bash", "_relaywatch", "relaywatch.fish"]);
        let bash = std::fs::read_to_string(dir.join("relaywatch.bash")).unwrap();
        assert!(bash.contains("--include-loopback") && bash.contains("check"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
