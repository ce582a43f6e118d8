//! The on-disk queue of a remote sink: alerts wait here until the collector has them.
//!
//! Data model, one directory per sink (`<state_dir>/queue/<sink-id>/`):
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: append-only segments numbered upwards. Each record is one alert
//!   document as one JSON line (serde_json escapes every newline inside strings, so a line is a
//!   record). A segment is closed when it reaches `segment_bytes`; the next one is opened.
//! - `cursor`: `SEQ OFFSET DROPPED`: everything before byte OFFSET of segment SEQ has been
//!   delivered (or refused for good, or dropped); DROPPED counts drops not yet reported to the
//!   collector. Replaced atomically (write `cursor.tmp`, rename), after every delivered batch.
//!   Segments wholly before the cursor are deleted.
//! - `lock`: flock'ed while a process uses the queue, so two never share it.
//! - `sink.txt`: the sink's name, for people looking at the directory.
//!
//! In memory: the position and length of every record not yet handed out (rebuilt at open by
//! scanning from the cursor), and at most one batch in flight. The bound (`max_bytes`) counts
//! the records not handed out; when an append would pass it, the OLDEST waiting records are
//! dropped: the freshest alerts matter most to whoever reads the SIEM now, and every alert is
//! also in the local store (`relaywatch alerts`). A batch in flight is never dropped, so disk use
//! can pass the bound by one batch plus the delivered head of one segment.
//!
//! Delivery guarantee: the cursor moves only after the collector accepted a batch, so a crash
//! or kill at any moment loses nothing queued; the batch in flight at that moment is sent again
//! (at-least-once, with a window of one batch). Nothing is fsync'ed: writes survive the process
//! dying (they are in the page cache), while a power loss can lose the latest records or resend
//! the latest batch. A torn last line (killed mid-write) is cut off at open.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufRead as _, BufReader, Seek as _, SeekFrom, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{DirBuilderExt as _, FileExt as _},
    },
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

const CURSOR: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const SEGMENT_MIN: u64 = 64 * 1024;
const SEGMENT_MAX: u64 = 8 * 1024 * 1024;

/// A place in the queue: byte `offset` of segment `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Pos {
    seq: u64,
    offset: u64,
}

/// One waiting record: where its line starts, and its length without the newline.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: Pos,
    len: u64,
}

pub(crate) struct DiskQueue {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Existing segments, oldest first, with their lengths.
    segments: VecDeque<(u64, u64)>,
    /// Records not handed out, oldest first.
    waiting: VecDeque<Entry>,
    /// Sum of `waiting` lengths (with newlines).
    waiting_bytes: u64,
    /// Bytes and records of the batch in flight, if there is one.
    in_flight: Option<(u64, usize)>,
    /// What `cursor` says.
    committed: Pos,
    unreported_drops: u64,
    writer: Option<File>,
    _lock: File,
}

/// Records handed out for delivery, oldest first.
#[derive(Debug)]
pub(crate) struct Batch {
    pub records: Vec<String>,
}

impl DiskQueue {
    /// Open (or create) the queue in `dir`, bounded by `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DiskQueue> {
        // 0700: queued alerts name users, command lines and destinations.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .with_context(|| format!("opening {}/lock", dir.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!("{} is in use by another relaywatch process", dir.display());
        }
        let max_bytes = max_bytes.max(1);
        let mut q = DiskQueue {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(SEGMENT_MIN, SEGMENT_MAX),
            segments: VecDeque::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            in_flight: None,
            committed: Pos::default(),
            unreported_drops: 0,
            writer: None,
            _lock: lock,
        };
        q.read_cursor()?;
        q.scan()?;
        // The bound may have shrunk since the records were written.
        if q.enforce_bound(0) > 0 {
            q.commit_waiting_front()?;
        }
        Ok(q)
    }

    fn read_cursor(&mut self) -> Result<()> {
        let path = self.dir.join(CURSOR);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let fields: Vec<u64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        match fields[..] {
            [seq, offset, drops] => {
                self.committed = Pos { seq, offset };
                self.unreported_drops = drops;
            }
            // A cursor that cannot be read would mean resending or skipping everything; start
            // from the oldest segment (resending) and say so.
            _ => log::warn!(
                "{}: unreadable cursor {text:?}; delivering the whole queue again",
                path.display()
            ),
        }
        Ok(())
    }

    /// List the segments, delete delivered ones, and index the records after the cursor.
    fn scan(&mut self) -> Result<()> {
        let mut seqs = Vec::new();
        for entry in
            fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))?
        {
            let name = entry?.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if seq < self.committed.seq {
                let _ = fs::remove_file(self.segment_path(seq));
            } else {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let last = seqs.last().copied();
        for seq in seqs {
            let path = self.segment_path(seq);
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let mut reader = BufReader::new(file);
            let file_len = reader.get_ref().metadata()?.len();
            if seq == self.committed.seq && self.committed.offset > file_len {
                // A cursor past the end (a power loss lost the tail): the end it is.
                self.committed.offset = file_len;
            }
            let mut offset = if seq == self.committed.seq {
                self.committed.offset
            } else {
                0
            };
            reader.seek(SeekFrom::Start(offset))?;
            let mut line = Vec::new();
            let mut torn = false;
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("reading {}", path.display()))?
                    as u64;
                if n == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    torn = true;
                    break;
                }
                if n > 1 {
                    self.waiting.push_back(Entry {
                        at: Pos { seq, offset },
                        len: n - 1,
                    });
                    self.waiting_bytes += n;
                }
                offset += n;
            }
            let mut len = file_len;
            if torn {
                log::warn!(
                    "{}: cutting off a torn last record ({} bytes)",
                    path.display(),
                    line.len()
                );
                if Some(seq) == last {
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(offset)?;
                    len = offset;
                }
            }
            self.segments.push_back((seq, len));
        }
        Ok(())
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.seg"))
    }

    /// Append records (JSON text without newlines) at the tail. Returns how many records were
    /// dropped to stay within the bound (older ones, or a single record larger than the bound).
    pub fn append<S: AsRef<str>>(&mut self, records: &[S]) -> Result<u64> {
        let mut dropped = 0;
        let mut buf = Vec::new();
        for record in records {
            let record = record.as_ref().trim_end_matches('\n');
            if record.contains('\n') || record.is_empty() {
                // Not a record this queue can hold; callers pass serde_json output.
                dropped += 1;
                continue;
            }
            let size = record.len() as u64 + 1;
            if size > self.max_bytes {
                dropped += 1;
                continue;
            }
            dropped += self.enforce_bound(size);
            let (seq, len) = self.tail_segment_for(size)?;
            buf.clear();
            buf.extend_from_slice(record.as_bytes());
            buf.push(b'\n');
            let path = self.segment_path(seq);
            let writer = match &mut self.writer {
                Some(w) => w,
                None => self.writer.insert(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("opening {}", path.display()))?,
                ),
            };
            if let Err(e) = writer.write_all(&buf) {
                // Whatever part was written is cut off at the next open (no newline); here,
                // put the length back so the next record starts a clean line.
                self.writer = None;
                let _ = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(len));
                return Err(e).with_context(|| format!("writing {}", path.display()));
            }
            if let Some(last) = self.segments.back_mut() {
                last.1 += size;
            }
            self.waiting.push_back(Entry {
                at: Pos { seq, offset: len },
                len: size - 1,
            });
            self.waiting_bytes += size;
        }
        if dropped > 0 {
            self.unreported_drops += dropped;
            self.commit_waiting_front()?;
        }
        Ok(dropped)
    }

    /// The segment to write the next `size` bytes into: the last one, or a new one.
    fn tail_segment_for(&mut self, size: u64) -> Result<(u64, u64)> {
        match self.segments.back() {
            Some(&(seq, len)) if len == 0 || len + size <= self.segment_bytes => Ok((seq, len)),
            other => {
                let seq = other.map_or(self.committed.seq, |&(seq, _)| seq + 1);
                self.writer = None;
                let path = self.segment_path(seq);
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                self.segments.push_back((seq, 0));
                Ok((seq, 0))
            }
        }
    }

    /// Drop the oldest waiting records until `incoming` more bytes fit; returns how many.
    fn enforce_bound(&mut self, incoming: u64) -> u64 {
        let mut dropped = 0;
        while self.waiting_bytes + incoming > self.max_bytes {
            let Some(e) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_bytes -= e.len + 1;
            dropped += 1;
        }
        dropped
    }

    /// Hand out up to `max_records` records (and `max_bytes`, but at least one) for delivery.
    /// `None` when nothing waits. Only one batch may be in flight; take another only after
    /// `commit`.
    pub fn take(&mut self, max_records: usize, max_bytes: u64) -> Result<Option<Batch>> {
        if self.in_flight.is_some() {
            bail!("a batch is already in flight");
        }
        let mut records = Vec::new();
        let mut bytes = 0;
        let mut file: Option<(u64, File)> = None;
        while let Some(e) = self.waiting.front().copied() {
            if records.len() >= max_records
                || (!records.is_empty() && bytes + e.len + 1 > max_bytes)
            {
                break;
            }
            let f = match &file {
                Some((seq, f)) if *seq == e.at.seq => f,
                _ => {
                    let path = self.segment_path(e.at.seq);
                    &file
                        .insert((
                            e.at.seq,
                            File::open(&path)
                                .with_context(|| format!("opening {}", path.display()))?,
                        ))
                        .1
                }
            };
            let mut buf = vec![0; e.len as usize];
            f.read_exact_at(&mut buf, e.at.offset)
                .with_context(|| format!("reading {}", self.segment_path(e.at.seq).display()))?;
            self.waiting.pop_front();
            self.waiting_bytes -= e.len + 1;
            bytes += e.len + 1;
            match String::from_utf8(buf) {
                Ok(s) => records.push(s),
                // Only a damaged disk gets here; the record cannot be sent as text.
                Err(_) => log::warn!(
                    "{}: record at {}:{} is not UTF-8; skipped",
                    self.dir.display(),
                    e.at.seq,
                    e.at.offset
                ),
            }
        }
        if bytes == 0 {
            return Ok(None);
        }
        self.in_flight = Some((bytes, records.len()));
        Ok(Some(Batch { records }))
    }

    /// The batch in flight is done with (delivered or refused for good): move the cursor past
    /// it (and past anything dropped meanwhile) and delete delivered segments.
    pub fn commit(&mut self) -> Result<()> {
        self.in_flight = None;
        self.commit_waiting_front()
    }

    /// Write the cursor at the oldest waiting record (or the tail), unless a batch is in flight.
    fn commit_waiting_front(&mut self) -> Result<()> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let next = match self.waiting.front() {
            Some(e) => e.at,
            // Caught up: the next record starts a new segment, so every delivered one can go
            // and an idle queue takes no disk space.
            None => {
                self.writer = None;
                self.segments
                    .back()
                    .map_or(self.committed, |&(seq, _)| Pos {
                        seq: seq + 1,
                        offset: 0,
                    })
            }
        };
        self.committed = next;
        self.write_cursor()?;
        while self
            .segments
            .front()
            .is_some_and(|&(seq, _)| seq < next.seq)
        {
            if let Some((seq, _)) = self.segments.pop_front() {
                let _ = fs::remove_file(self.segment_path(seq));
            }
        }
        Ok(())
    }

    fn write_cursor(&self) -> Result<()> {
        let tmp = self.dir.join(CURSOR_TMP);
        let text = format!(
            "{} {} {}\n",
            self.committed.seq, self.committed.offset, self.unreported_drops
        );
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, self.dir.join(CURSOR)))
            .with_context(|| format!("writing {}", tmp.display()))
    }

    /// Drops not yet reported to the collector; resets the count (persisted at the next commit).
    pub fn take_unreported_drops(&mut self) -> u64 {
        std::mem::take(&mut self.unreported_drops)
    }

    /// Count drops that happened before records reached the queue, to be reported with the rest.
    pub fn note_drops(&mut self, n: u64) {
        self.unreported_drops += n;
    }

    /// Records waiting (not counting a batch in flight).
    #[cfg(test)]
    pub fn waiting_records(&self) -> usize {
        self.waiting.len()
    }

    /// Records queued, including a batch in flight.
    pub fn queued_records(&self) -> usize {
        self.waiting.len() + self.in_flight.map_or(0, |(_, n)| n)
    }

    /// Bytes queued, including a batch in flight.
    pub fn queued_bytes(&self) -> u64 {
        self.waiting_bytes + self.in_flight.map_or(0, |(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("relaywatch-queue-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn rec(i: usize) -> String {
        format!("{{\"n\":{i}}}")
    }

    fn drain(q: &mut DiskQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(b) = q.take(3, 1 << 20).unwrap() {
            out.extend(b.records);
            q.commit().unwrap();
        }
        out
    }

    #[test]
    fn append_take_commit_in_order() {
        let d = dir("order");
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        assert!(q.take(10, 1000).unwrap().is_none());
        q.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!(q.waiting_records(), 5);
        let b = q.take(2, 1 << 20).unwrap().unwrap();
        assert_eq!(b.records, [rec(0), rec(1)]);
        assert!(q.take(2, 1 << 20).is_err(), "one batch in flight at a time");
        q.commit().unwrap();
        assert_eq!(read_all(&d.join(CURSOR)), "0 16 0\n");
        assert_eq!(drain(&mut q), [rec(2), rec(3), rec(4)]);
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(read_all(&d.join(CURSOR)), "1 0 0\n");
        assert!(
            !d.join(format!("{:020}.seg", 0)).exists(),
            "a caught-up queue keeps no delivered segment"
        );
        q.append(&[rec(5)]).unwrap();
        drop(q);
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        assert_eq!(drain(&mut q), [rec(5)]);
    }

    #[test]
    fn reopen_resumes_after_the_cursor_and_resends_the_uncommitted_batch() {
        let d = dir("reopen");
        {
            let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
            q.append(&(0..6).map(rec).collect::<Vec<_>>()).unwrap();
            q.take(2, 1 << 20).unwrap();
            q.commit().unwrap();
            // In flight when the process dies: not committed.
            q.take(2, 1 << 20).unwrap();
        }
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        assert_eq!(q.waiting_records(), 4);
        assert_eq!(drain(&mut q), [rec(2), rec(3), rec(4), rec(5)]);
        drop(q);
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        assert!(
            q.take(10, 1 << 20).unwrap().is_none(),
            "delivered records are not sent twice"
        );
    }

    #[test]
    fn second_opener_is_refused() {
        let d = dir("lock");
        let _q = DiskQueue::open(&d, 1000).unwrap();
        let e = DiskQueue::open(&d, 1000).err().unwrap().to_string();
        assert!(e.contains("in use by another relaywatch process"), "{e}");
    }

    #[test]
    fn bound_drops_the_oldest_and_remembers_the_count() {
        let d = dir("bound");
        // Each record is 8 bytes with its newline: room for 4.
        let mut q = DiskQueue::open(&d, 32).unwrap();
        q.append(&(0..6).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!(q.waiting_records(), 4);
        assert_eq!(
            read_all(&d.join(CURSOR)),
            "0 16 2\n",
            "drops move the cursor and are counted"
        );
        // A batch in flight is not dropped; the bound applies to what waits.
        let b = q.take(2, 1 << 20).unwrap().unwrap();
        assert_eq!(b.records, [rec(2), rec(3)]);
        assert_eq!(q.append(&[rec(6), rec(7), rec(8)]).unwrap(), 1);
        q.commit().unwrap();
        assert_eq!(q.take_unreported_drops(), 3);
        assert_eq!(drain(&mut q), [rec(5), rec(6), rec(7), rec(8)]);
        // Too big for the queue at all.
        assert_eq!(q.append(&["x".repeat(40)]).unwrap(), 1);
        drop(q);
        let q = DiskQueue::open(&d, 32).unwrap();
        assert_eq!(q.unreported_drops, 1);
    }

    #[test]
    fn segments_roll_and_delivered_ones_are_deleted() {
        let d = dir("segments");
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        q.segment_bytes = 20; // two records per segment
        q.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let segs = |d: &Path| {
            let mut v: Vec<_> = fs::read_dir(d)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".seg"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(segs(&d).len(), 3);
        q.take(3, 1 << 20).unwrap();
        q.commit().unwrap();
        assert_eq!(
            segs(&d),
            ["00000000000000000001.seg", "00000000000000000002.seg"]
        );
        drop(q);
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        assert_eq!(drain(&mut q), [rec(3), rec(4)]);
    }

    #[test]
    fn torn_tail_is_cut_off_and_appends_continue_cleanly() {
        let d = dir("torn");
        {
            let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
            q.append(&[rec(0), rec(1)]).unwrap();
        }
        let seg = d.join(format!("{:020}.seg", 0));
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(b"{\"n\":2")
            .unwrap();
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        assert_eq!(q.waiting_records(), 2);
        q.append(&[rec(3)]).unwrap();
        assert_eq!(
            read_all(&seg),
            format!("{}\n{}\n{}\n", rec(0), rec(1), rec(3))
        );
        assert_eq!(drain(&mut q), [rec(0), rec(1), rec(3)]);
    }

    #[test]
    fn batch_respects_byte_limit_but_takes_at_least_one() {
        let d = dir("bytes");
        let mut q = DiskQueue::open(&d, 1 << 20).unwrap();
        q.append(&[rec(0), rec(1), rec(2)]).unwrap();
        assert_eq!(q.take(10, 3).unwrap().unwrap().records.len(), 1);
        q.commit().unwrap();
        assert_eq!(q.take(10, 16).unwrap().unwrap().records.len(), 2);
    }
}
