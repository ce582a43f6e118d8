//! The feed cache: the last list each feed served that was accepted, kept across restarts so that
//! an unreachable server leaves the agent with the list it had (used stale), not with none.
//!
//! Layout. Under `STATE_DIR/feeds/`, per feed, two files named by a key derived from the URL (the
//! first 32 hex digits of its SHA-256, so any URL makes a safe, fixed-length name):
//! - `KEY.list`: the body exactly as served. Only a body that passed every check is written here.
//! - `KEY.json`: [`CacheMeta`]: the URL, the validators for the next conditional GET (ETag,
//!   Last-Modified), when the body was fetched and last confirmed, and the body's SHA-256.
//!
//! Each file is replaced atomically (written beside, fsynced, renamed). A new body is written
//! before its metadata, and the metadata's digest ties the two: a body that does not match it (a
//! crash between the renames, a hand edit) is not used, and without usable metadata the next
//! check fetches the list whole.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::sha256_hex;

/// What is known about a cached body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When this body was downloaded (Unix seconds).
    pub fetched_at: u64,
    /// When the server last confirmed it, with this body or a 304 (Unix seconds).
    pub checked_at: u64,
    /// SHA-256 of the body, hex.
    pub sha256: String,
    pub bytes: u64,
}

/// A cached body that matches its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub meta: CacheMeta,
    pub text: String,
}

/// Where a state directory keeps its feeds.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("feeds")
}

/// The file-name key of a feed URL.
pub fn key(url: &str) -> String {
    sha256_hex(url.as_bytes())[..32].to_owned()
}

/// The body and metadata files of the feed at `url`.
pub fn paths(state_dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    let base = dir(state_dir).join(key(url));
    (base.with_extension("list"), base.with_extension("json"))
}

pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn from_unix_seconds(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// The cached copy of the feed at `url`: `Ok(None)` when there is none yet, an error (to report,
/// not to stop on) when the files are there but unusable.
pub fn read(state_dir: &Path, url: &str) -> Result<Option<Cached>, String> {
    let (body_path, meta_path) = paths(state_dir, url);
    let meta = match std::fs::read(&meta_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cache {}: cannot read: {e}", meta_path.display())),
    };
    let meta: CacheMeta = serde_json::from_slice(&meta)
        .map_err(|e| format!("cache {}: unreadable: {e}", meta_path.display()))?;
    if meta.url != url {
        return Err(format!(
            "cache {}: made for another URL",
            meta_path.display()
        ));
    }
    let body = std::fs::read(&body_path)
        .map_err(|e| format!("cache {}: cannot read: {e}", body_path.display()))?;
    if sha256_hex(&body) != meta.sha256 {
        return Err(format!(
            "cache {}: does not match its metadata (sha256)",
            body_path.display()
        ));
    }
    let text = String::from_utf8(body)
        .map_err(|_| format!("cache {}: not UTF-8 text", body_path.display()))?;
    Ok(Some(Cached { meta, text }))
}

/// Store `meta`, and first `body` when there is a new one.
pub fn write(state_dir: &Path, meta: &CacheMeta, body: Option<&[u8]>) -> Result<(), String> {
    let dir = dir(state_dir);
    crate::dirs::ensure_dir(&dir, 0o750, "the feed cache").map_err(|e| format!("{e:#}"))?;
    let (body_path, meta_path) = paths(state_dir, &meta.url);
    if let Some(body) = body {
        replace(&body_path, body)?;
    }
    let json = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    replace(&meta_path, &json)?;
    // The renames are durable once the directory is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing {}: {e}", dir.display()))
}

/// Replace `path` with `bytes` atomically.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn meta(url: &str, body: &[u8]) -> CacheMeta {
        CacheMeta {
            url: url.into(),
            etag: Some("\"v1\"".into()),
            last_modified: None,
            fetched_at: 1_700_000_000,
            checked_at: 1_700_000_100,
            sha256: sha256_hex(body),
            bytes: body.len() as u64,
        }
    }

    #[test]
    fn file_names_come_from_a_hash_of_the_url() {
        let (body, meta) = paths(
            Path::new("/var/lib/relaywatch"),
            "https://lists.example.com/a.list",
        );
        let k = key("https://lists.example.com/a.list");
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            body,
            PathBuf::from(format!("/var/lib/relaywatch/feeds/{k}.list"))
        );
        assert_eq!(
            meta,
            PathBuf::from(format!("/var/lib/relaywatch/feeds/{k}.json"))
        );
        assert_ne!(key("https://lists.example.com/a.list?x=1"), k);
        assert_eq!(key("https://lists.example.com/a.list"), k, "stable");
    }

    #[test]
    fn written_copies_read_back_and_metadata_alone_can_change() {
        let dir = TempDir::new("feedcache-rw");
        let url = "https://127.0.0.1:1/a.list";
        assert_eq!(read(dir.path(), url), Ok(None));
        let body = b"# relaywatch: category=ai-relay\nfull:a.example\n";
        let mut m = meta(url, body);
        write(dir.path(), &m, Some(body)).unwrap();
        assert_eq!(
            read(dir.path(), url),
            Ok(Some(Cached {
                meta: m.clone(),
                text: String::from_utf8(body.to_vec()).unwrap()
            }))
        );
        // A 304: new times, same body.
        m.checked_at += 3600;
        write(dir.path(), &m, None).unwrap();
        assert_eq!(
            read(dir.path(), url).unwrap().unwrap().meta.checked_at,
            1_700_003_700
        );
        let names: Vec<String> = std::fs::read_dir(super::dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_body_that_does_not_match_its_metadata_is_refused() {
        let dir = TempDir::new("feedcache-mismatch");
        let url = "https://127.0.0.1:1/b.list";
        let body = b"full:a.example\n";
        write(dir.path(), &meta(url, body), Some(body)).unwrap();
        std::fs::write(paths(dir.path(), url).0, b"full:b.example\n").unwrap();
        let e = read(dir.path(), url).unwrap_err();
        assert!(e.ends_with("does not match its metadata (sha256)"), "{e}");
        // Metadata written for another URL (a hash collision, or a copied file) is not used.
        let other = "https://127.0.0.1:1/c.list";
        let (_, other_meta) = paths(dir.path(), other);
        std::fs::write(other_meta, serde_json::to_vec(&meta(url, body)).unwrap()).unwrap();
        assert!(
            read(dir.path(), other)
                .unwrap_err()
                .ends_with("made for another URL")
        );
    }
}
