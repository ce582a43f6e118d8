//! The file sink: alerts as JSON lines in a local file, rotated by size.
//!
//! `path` grows until the next line would take it past `max_bytes`; then `path.N` is deleted,
//! `path.N-1` .. `path.1` move up by one, `path` becomes `path.1` and a new `path` starts
//! (N = `max_files`). So at most `max_files + 1` files exist, each at most `max_bytes` (a single
//! longer line gets a file of its own).
//!
//! Durability: each batch of lines is one write(2) on a file opened with O_APPEND, so lines are
//! whole and survive the process dying. The file is fsync'ed before it is rotated and at
//! shutdown, not per line: a power loss can lose the last seconds of lines, the price of not
//! stalling on every alert. Files are created 0640: alerts name users and command lines.
use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: Option<File>,
    len: u64,
}

impl RotatingFile {
    /// Open `path` for appending (creating its directory if needed).
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> Result<RotatingFile> {
        let mut f = RotatingFile {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            max_files,
            file: None,
            len: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        self.len = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            let _ = f.sync_all();
        }
        let _ = fs::remove_file(self.numbered(self.max_files));
        for n in (1..self.max_files).rev() {
            let from = self.numbered(n);
            if from.exists() {
                fs::rename(&from, self.numbered(n + 1))
                    .with_context(|| format!("rotating {}", from.display()))?;
            }
        }
        fs::rename(&self.path, self.numbered(1))
            .with_context(|| format!("rotating {}", self.path.display()))?;
        self.reopen()
    }

    /// Append `lines` (JSON text without newlines), rotating where a line would not fit.
    pub fn write_lines<S: AsRef<str>>(&mut self, lines: &[S]) -> Result<()> {
        let mut buf = Vec::new();
        for line in lines {
            let line = line.as_ref();
            let size = line.len() as u64 + 1;
            if self.len + buf.len() as u64 > 0
                && self.len + buf.len() as u64 + size > self.max_bytes
            {
                self.flush_buf(&mut buf)?;
                self.rotate()?;
            }
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        self.flush_buf(&mut buf)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let result = file
            .write_all(buf)
            .with_context(|| format!("writing {}", self.path.display()));
        if result.is_err() {
            // Reopen next time (the file may have been removed or the disk remounted).
            self.file = None;
        }
        // O_APPEND: the length is whatever the file has now.
        self.len = fs::metadata(&self.path)
            .map(|m| m.len())
            .unwrap_or(self.len + buf.len() as u64);
        buf.clear();
        result
    }

    pub fn sync(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_max_bytes_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("relaywatch-file-sink-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub/alerts.jsonl");
        // 10-byte lines (9 + newline), 25-byte files: two lines each.
        let mut f = RotatingFile::open(&path, 25, 2).unwrap();
        let lines: Vec<String> = (0..7).map(|i| format!("{{\"n\":{i:03}}}")).collect();
        f.write_lines(&lines[..3]).unwrap();
        f.write_lines(&lines[3..]).unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), format!("{}\n", lines[6]));
        assert_eq!(read(f.numbered(1)), format!("{}\n{}\n", lines[4], lines[5]));
        assert_eq!(read(f.numbered(2)), format!("{}\n{}\n", lines[2], lines[3]));
        assert!(!f.numbered(3).exists(), "only max_files old files are kept");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // Reopening continues the current file.
        drop(f);
        let mut f = RotatingFile::open(&path, 25, 2).unwrap();
        f.write_lines(&[&lines[0]]).unwrap();
        assert_eq!(read(path.clone()), format!("{}\n{}\n", lines[6], lines[0]));
        // A line longer than max_bytes gets a file of its own.
        f.write_lines(&["x".repeat(40)]).unwrap();
        assert_eq!(read(path.clone()).len(), 41);
    }
}
