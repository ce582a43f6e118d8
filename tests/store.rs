//! The store keeps every committed alert when the process dies abruptly: `relaywatch-diag
//! store-soak` (the test suite's diagnostic binary, built beside the tests; not the `relaywatch`
//! daemon) commits alerts one transaction at a time and prints each committed id; it is
//! SIGKILLed at a random moment after its first commit, and after each kill the database must
//! pass `PRAGMA integrity_check` and hold every id that was printed. Bounded: 5 rounds, each
//! killed at most 1.3 s after its first commit (which is waited for, up to 30 s).
//!
//! Why a stand-in and not `relaywatch run`: the assertion is "every alert whose commit was
//! acknowledged before the SIGKILL is still there", so the test must know exactly which alert
//! ids were committed at the moment of each kill. Only the soak's per-commit acknowledgement (the
//! store id printed right after that alert's own transaction commits) gives that. The daemon
//! acknowledges no commit: it writes an alert on stdout before its store thread commits it (in
//! batches, in the background), and nothing it answers says which store ids are committed at a
//! given moment. (Its `alerts --follow` stream sends documents after their batch commits, but
//! without store ids, as a broadcast a slow reader can fall behind, and only as fast as real
//! connections raise alerts, so a kill at a random moment would seldom land during a commit; the
//! soak commits back to back.)
use std::{
    collections::HashSet,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use integration_tests::diag_bin;

/// A few pseudo-random numbers (no rand crate needed): xorshift seeded from the clock.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Jitter(nanos | 1)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[test]
fn committed_alerts_survive_sigkill() {
    let dir = PathBuf::from(format!("/tmp/relaywatch-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("relaywatch.db");
    let mut jitter = Jitter::new();
    let mut committed: HashSet<i64> = HashSet::new();
    for round in 0..5 {
        let mut child = Command::new(diag_bin())
            .args(["store-soak", "--state-dir"])
            .arg(&dir)
            .args(["--count", "100000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relaywatch-diag store-soak");
        // Lines as they come: the kill waits for a first commit, so a slow start (a busy
        // machine) never makes the round meaningless, then lands at a random moment after it.
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = Vec::new();
            // Only complete lines: a number cut off by the kill was never reported as committed.
            while out.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) && line.ends_with(b"\n") {
                let id = String::from_utf8_lossy(&line).trim_end().to_owned();
                if tx.send(id).is_err() {
                    break;
                }
                line.clear();
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30));
        let wait = jitter.between(0, 1300);
        thread::sleep(Duration::from_millis(wait));
        child.kill().expect("SIGKILL store-soak");
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let first = first.unwrap_or_else(|e| {
            panic!("round {round}: no commit printed within 30 s ({e}): {stderr}")
        });
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: store-soak ended on its own: {stderr}"
        );
        reader.join().unwrap();
        let lines: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
        let printed: Vec<i64> = lines
            .iter()
            .map(|l| l.parse().expect("an id per line"))
            .collect();

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let mut stmt = conn.prepare("SELECT id FROM alerts").unwrap();
        let present: HashSet<i64> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        committed.extend(&printed);
        let mut missing: Vec<&i64> = committed.difference(&present).collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "round {round} (killed {wait} ms after the first commit): committed ids lost: {missing:?}"
        );
        eprintln!(
            "round {round}: killed {wait} ms after the first commit, {} committed this round, {} in the file",
            printed.len(),
            present.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
