//! cgroup id -> cgroup v2 path, for events whose process is gone before /proc could be read.
//!
//! Every connect event carries the sender's cgroup id (`bpf_get_current_cgroup_id`), which on
//! cgroup v2 is the inode number of the cgroup's directory. When /proc/PID/cgroup cannot be read
//! any more, the path (and with it the systemd unit or container) is found by walking the cgroup2
//! mount. Walks are bounded (directories and depth) and at most one per second (an id missed
//! because its cgroup appeared within a second of the last walk stays unnamed for that record);
//! what a walk found is cached, and the cache is bounded too (cleared when full).
use std::{
    collections::HashMap,
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

const MAX_DIRS: usize = 20_000;
const MAX_DEPTH: usize = 16;
const CACHE_ENTRIES: usize = 50_000;
const WALK_INTERVAL: Duration = Duration::from_secs(1);

pub struct CgroupPaths {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
    root_id: Option<u64>,
}

impl CgroupPaths {
    pub fn new(root: &Path) -> CgroupPaths {
        let root_id = std::fs::metadata(root).ok().map(|m| m.ino());
        CgroupPaths {
            root: root.to_path_buf(),
            paths: HashMap::new(),
            last_walk: None,
            root_id,
        }
    }

    /// The path of cgroup `id` as /proc/PID/cgroup shows it (`/system.slice/x.service`);
    /// `None` for the root cgroup (no unit, no container) and for ids not found.
    pub fn path_of(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        if self.root_id == Some(id) {
            return None;
        }
        if self.last_walk.is_some_and(|t| t.elapsed() < WALK_INTERVAL) {
            return None;
        }
        self.last_walk = Some(Instant::now());
        if self.paths.len() > CACHE_ENTRIES {
            self.paths.clear();
        }
        self.walk();
        self.paths.get(&id).cloned()
    }

    fn walk(&mut self) {
        let mut stack = vec![(self.root.clone(), 0usize)];
        let mut seen = 0;
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // d_type and d_ino from the directory listing: no stat per entry (a cgroup
                // directory holds dozens of control files).
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                seen += 1;
                if seen > MAX_DIRS {
                    return;
                }
                let path = entry.path();
                if let Ok(rel) = path.strip_prefix(&self.root) {
                    self.paths
                        .insert(entry.ino(), format!("/{}", rel.to_string_lossy()));
                }
                if depth + 1 < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_directories_by_inode() {
        let root = std::env::temp_dir().join(format!("relaywatch-cgroups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("system.slice/ollama.service")).unwrap();
        let ino = std::fs::metadata(root.join("system.slice/ollama.service"))
            .unwrap()
            .ino();
        let mut paths = CgroupPaths::new(&root);
        assert_eq!(
            paths.path_of(ino).as_deref(),
            Some("/system.slice/ollama.service")
        );
        assert_eq!(
            paths.path_of(std::fs::metadata(&root).unwrap().ino()),
            None,
            "the root itself has no path"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
