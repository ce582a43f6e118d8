//! Directories the agent creates for its own state (store, sink queues, feed cache, socket).
use std::{
    fs,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::Path,
};

use anyhow::{Context as _, Result};

/// Create `dir` and its missing parents with exactly `mode` (not narrowed by the umask) if it
/// is missing; `what` names it in errors ("the state directory").
pub fn ensure_dir(dir: &Path, mode: u32, what: &str) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating {what} {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}
