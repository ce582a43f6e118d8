//! AI clients' configuration files, scanned on a thread of their own (`intel::relay_files` does
//! the reading): at start, when inotify reports a change (debounced), and every `RESCAN` (what
//! inotify does not see: new users, directories created deeper than a watched one, databases an
//! application keeps open). Each scan's result replaces the previous one as an immutable
//! snapshot the pipeline reads without waiting.
use std::{
    os::fd::RawFd,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::intel::relay_files::{RelayFiles, ScanReport};

/// A full rescan at least this often.
const RESCAN: Duration = Duration::from_secs(300);
/// After a change, wait this long for the writes that follow it (editors, apps) before reading.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Start the scanner; the receiver holds the latest scan (empty until the first is done).
pub fn spawn(root: PathBuf, variables: Vec<String>) -> watch::Receiver<Arc<ScanReport>> {
    let (tx, rx) = watch::channel(Arc::new(ScanReport::default()));
    let spawned = std::thread::Builder::new()
        .name("relaywatch-config-files".into())
        .spawn(move || {
            let mut files = RelayFiles::new(root, &variables);
            loop {
                let report = files.scan();
                if let Err(e) = files.watch() {
                    log::debug!("configuration files: inotify: {e}");
                }
                if tx.send(Arc::new(report)).is_err() {
                    return; // the daemon is gone
                }
                let deadline = Instant::now() + RESCAN;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    let readable = match files.as_raw_fd() {
                        Some(fd) => wait_readable(fd, left),
                        None => {
                            std::thread::sleep(left);
                            false
                        }
                    };
                    if readable && files.changed() {
                        std::thread::sleep(DEBOUNCE);
                        files.changed(); // what the debounce collected
                        break;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("configuration files: cannot start the scanner: {e}");
    }
    rx
}

/// Whether `fd` became readable within `timeout`.
fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}
