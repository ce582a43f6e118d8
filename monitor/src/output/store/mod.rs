//! The local store: alerts and per-destination connection summaries in SQLite
//! (`<state_dir>/relaywatch.db`).
//!
//! Data model:
//! - `alerts`: one row per alert, append-only. The indexed columns (time, category, process,
//!   user, destination) are copied out of the alert document for filtering; `json` is the whole
//!   document exactly as written to the sinks. Alert documents never carry raw payload or
//!   secrets (that is the alert builder's contract); the store additionally refuses documents
//!   over `MAX_ALERT_BYTES`.
//! - `connections`: one row per (executable, user, destination domain, IP, port). Each reported
//!   connection bumps `count`, adds its byte counts and widens `first_seen..last_seen`. Unknown
//!   key parts are stored as '' (not NULL: NULLs are all distinct in a UNIQUE key).
//! - `relays`: one row per host learned to be an AI relay (an API request to it, see
//!   `intel::relays`), the daemon's `KnownRelay` as JSON; read back at start so a relay stays
//!   known across restarts.
//! - Times are microseconds since the Unix epoch (UTC).
//!
//! Durability: WAL journal with `synchronous=NORMAL`. A transaction that has committed is in the
//! WAL file (in the kernel's page cache), so it survives the process being killed (kill -9, OOM,
//! panic); the `store` integration test checks exactly that. A power loss or kernel crash may
//! lose the transactions committed since the last checkpoint, but never corrupts the file.
//! That trade is right here: every alert also goes to the sinks (the SIEM holds the fleet's
//! record), and FULL would cost an fsync per batch on busy hosts.
//!
//! Concurrency: a `Store` is one connection, used from one thread. The daemon uses
//! `StoreHandle`, which owns the `Store` on a dedicated thread and batches queued writes into
//! one transaction; replies and broadcasts happen only after the commit.
use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail};
use rusqlite::{Connection, OpenFlags, params, types::Value as SqlValue};
use serde::Serialize;
use serde_json::Value;

mod handle;
mod query;

pub use handle::StoreHandle;
use query::{AlertColumns, CONNECTION_COLUMNS, normalise_domain};
pub use query::{ConnectionRow, ConnectionSummaryUpdate, Query, alert_matches};
pub const DB_FILE: &str = "relaywatch.db";
/// Alert documents are small (names, ids, counters); anything bigger is a bug upstream.
pub const MAX_ALERT_BYTES: usize = 64 * 1024;
/// Writes queued for the store thread; beyond this, fire-and-forget writes are dropped and
/// counted (the daemon must never stall on a slow disk).
const QUEUE_CAPACITY: usize = 8192;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; migration `i` takes the schema from version `i` to `i + 1`
/// (`PRAGMA user_version`). Append only.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        category TEXT,
        severity TEXT,
        rule TEXT,
        process_name TEXT,
        executable TEXT,
        pid INTEGER,
        user_name TEXT,
        destination_domain TEXT,
        destination_ip TEXT,
        destination_port INTEGER,
        json TEXT NOT NULL
    );
    CREATE INDEX alerts_ts ON alerts (ts);
    CREATE TABLE connections (
        id INTEGER PRIMARY KEY,
        executable TEXT NOT NULL,
        user_name TEXT NOT NULL,
        destination_domain TEXT NOT NULL,
        destination_ip TEXT NOT NULL,
        destination_port INTEGER NOT NULL,
        process_name TEXT NOT NULL,
        last_pid INTEGER,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count INTEGER NOT NULL,
        bytes_sent INTEGER NOT NULL,
        bytes_received INTEGER NOT NULL,
        UNIQUE (executable, user_name, destination_domain, destination_ip, destination_port)
    );
    CREATE INDEX connections_last_seen ON connections (last_seen);
",
    "
    CREATE TABLE relays (
        host TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        json TEXT NOT NULL
    );
",
];

/// Known relays kept at most (the daemon bounds its own set the same way).
pub const MAX_RELAYS: usize = 4096;

pub fn to_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

pub fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// What `apply_retention` removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetentionReport {
    pub alerts_deleted: u64,
    pub connections_deleted: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    pub path: PathBuf,
    pub schema_version: u32,
    pub alerts: u64,
    pub connections: u64,
    /// Database size (page_count * page_size), excluding the WAL file.
    pub db_bytes: u64,
    pub wal_bytes: u64,
    /// Fire-and-forget writes dropped because the store's queue was full (`StoreHandle` only).
    pub dropped_writes: u64,
}

/// A write, as queued to the store thread.
#[derive(Debug, Clone)]
pub enum Write {
    Alert(Value),
    Connection(ConnectionSummaryUpdate),
    /// A known relay, inserted or replaced by host.
    Relay(Value),
}

/// A committed write: the alert with its id, or the connection row after the update.
#[derive(Debug, Clone)]
pub enum Written {
    Alert(i64, Value),
    Connection(ConnectionRow),
    Relay,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (or create) `<dir>/relaywatch.db`, check it and bring its schema up to date.
    pub fn open(dir: &Path) -> Result<Store> {
        crate::dirs::ensure_dir(dir, 0o750, "the state directory")?;
        let path = dir.join(DB_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| anyhow!("opening the store {}: {e}", path.display()))?;
        let mut store = Store { conn, path };
        store.prepare().map_err(|e| {
            anyhow!(
                "the store {} is unusable: {e:#} (if it is corrupt, move it aside and restart: a new one is created)",
                store.path.display()
            )
        })?;
        Ok(store)
    }

    fn prepare(&mut self) -> Result<()> {
        let c = &self.conn;
        c.busy_timeout(BUSY_TIMEOUT)?;
        if c.is_readonly("main")? {
            bail!("not writable");
        }
        // Only takes effect before the first table exists, i.e. for a new file: lets
        // retention hand freed pages back to the file system without a full VACUUM.
        c.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("cannot switch to WAL journal mode (got {mode})");
        }
        c.pragma_update(None, "synchronous", "NORMAL")?;
        let check: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            bail!("corrupt (quick_check: {check})");
        }
        self.migrate()
    }

    fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<()> {
        let current = self.schema_version()? as usize;
        if current > MIGRATIONS.len() {
            bail!(
                "schema version {current} was written by a newer relaywatch (this one knows {})",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("schema migration {} -> {}", i, i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)?;
            tx.commit()?;
        }
        Ok(())
    }

    #[cfg(any(test, feature = "diagnostics"))]
    /// Store one alert document (committed on return). Returns its id.
    pub fn insert_alert(&mut self, alert: &Value) -> Result<i64> {
        insert_alert_in(&self.conn, alert)
    }

    #[cfg(test)]
    /// Fold one connection into its summary row (committed on return).
    pub fn record_connection(&mut self, update: &ConnectionSummaryUpdate) -> Result<ConnectionRow> {
        record_connection_in(&self.conn, update)
    }

    /// Apply `writes` in one transaction. The outer error means nothing was committed; the
    /// inner results say how each write fared.
    pub fn write_batch(&mut self, writes: Vec<Write>) -> Result<Vec<Result<Written>>> {
        let tx = self.conn.transaction()?;
        let results = writes
            .into_iter()
            .map(|w| match w {
                Write::Alert(v) => insert_alert_in(&tx, &v).map(|id| Written::Alert(id, v)),
                Write::Connection(u) => record_connection_in(&tx, &u).map(Written::Connection),
                Write::Relay(v) => upsert_relay_in(&tx, &v).map(|()| Written::Relay),
            })
            .collect();
        tx.commit()
            .with_context(|| format!("committing to {}", self.path.display()))?;
        Ok(results)
    }

    /// The known relays, most recently seen first (at most `MAX_RELAYS`).
    pub fn relays(&self) -> Result<Vec<Value>> {
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM relays ORDER BY last_seen DESC LIMIT ?1")?;
        let rows = stmt.query_map([MAX_RELAYS as i64], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            // A row this version cannot read is skipped, not fatal: the rest still counts.
            match serde_json::from_str(&row?) {
                Ok(v) => out.push(v),
                Err(e) => log::warn!("store: a relays row is not JSON ({e}); skipped"),
            }
        }
        Ok(out)
    }

    /// The most recent alerts matching `query` (up to its limit), oldest first.
    pub fn alerts(&self, query: &Query) -> Result<Vec<Value>> {
        let (filter, mut params) = query.sql_filter("ts", "ts", "pid");
        params.push(SqlValue::Integer(query.sql_limit()));
        let sql = format!(
            "SELECT json FROM (SELECT id, ts, json FROM alerts WHERE {filter} ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts, id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|json| Ok(serde_json::from_str(&json?)?)).collect()
    }

    /// The most recently seen connection summaries matching `query`, oldest first.
    pub fn connections(&self, query: &Query) -> Result<Vec<ConnectionRow>> {
        if query.category.is_some() {
            bail!("category: connections have no category (it filters alerts)");
        }
        let (filter, mut params) = query.sql_filter("first_seen", "last_seen", "last_pid");
        params.push(SqlValue::Integer(query.sql_limit()));
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM (SELECT * FROM connections WHERE {filter} \
             ORDER BY last_seen DESC, id DESC LIMIT ?) ORDER BY last_seen, id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), ConnectionRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn db_bytes(&self) -> Result<u64> {
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    fn count(&self, table: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Hand free pages back to the file system.
    fn shrink(&self) -> Result<()> {
        // Each step of the statement frees some pages: run it to completion.
        let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = stmt.query([])?;
        while steps.next()?.is_some() {}
        Ok(())
    }

    /// Delete rows older than `max_age`, then the oldest rows of both tables until the database
    /// is at most `max_bytes` (or empty).
    ///
    /// Size is `page_count * page_size` after `PRAGMA incremental_vacuum` (the file is created
    /// with `auto_vacuum=INCREMENTAL`): it returns freed pages without VACUUM's full rewrite and
    /// its need for twice the disk space. The WAL is checkpointed and truncated at the end.
    pub fn apply_retention(
        &mut self,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport {
            bytes_before: self.db_bytes()?,
            ..RetentionReport::default()
        };
        let cutoff = to_micros(SystemTime::now().checked_sub(max_age).unwrap_or(UNIX_EPOCH));
        {
            let tx = self.conn.transaction()?;
            report.alerts_deleted +=
                tx.execute("DELETE FROM alerts WHERE ts < ?1", [cutoff])? as u64;
            report.connections_deleted +=
                tx.execute("DELETE FROM connections WHERE last_seen < ?1", [cutoff])? as u64;
            tx.commit()?;
        }
        self.shrink()?;
        loop {
            let size = self.db_bytes()?;
            if size <= max_bytes {
                break;
            }
            let (alerts, connections) = (self.count("alerts")?, self.count("connections")?);
            if alerts + connections == 0 {
                break;
            }
            // Delete the share of rows by which the file is too big (at least 5%, at least one
            // row): pages are not freed in proportion to rows, so this converges over a few rounds.
            let share = ((size - max_bytes) as f64 / size as f64).max(0.05);
            let batch = |n: u64| ((n as f64 * share).ceil() as i64).max(1);
            let tx = self.conn.transaction()?;
            report.alerts_deleted += tx.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts ORDER BY ts, id LIMIT ?1)",
                [batch(alerts)],
            )? as u64;
            report.connections_deleted += tx.execute(
                "DELETE FROM connections WHERE id IN (SELECT id FROM connections ORDER BY last_seen, id LIMIT ?1)",
                [batch(connections)],
            )? as u64;
            tx.commit()?;
            self.shrink()?;
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        report.bytes_after = self.db_bytes()?;
        Ok(report)
    }

    pub fn stats(&self) -> Result<StoreStats> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(StoreStats {
            path: self.path.clone(),
            schema_version: self.schema_version()?,
            alerts: self.count("alerts")?,
            connections: self.count("connections")?,
            db_bytes: self.db_bytes()?,
            wal_bytes: fs::metadata(&wal).map_or(0, |m| m.len()),
            dropped_writes: 0,
        })
    }

    #[cfg(test)]
    /// `PRAGMA integrity_check`'s first line ("ok" when sound).
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// Insert or replace a known relay (by its `host`), keeping its first-seen time.
fn upsert_relay_in(conn: &Connection, relay: &Value) -> Result<()> {
    let host = relay["host"]
        .as_str()
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .ok_or_else(|| anyhow!("a relay without a host"))?;
    let json = relay.to_string();
    if json.len() > MAX_ALERT_BYTES {
        bail!("relay {host}: document of {} bytes", json.len());
    }
    let now = to_micros(SystemTime::now());
    conn.execute(
        "INSERT INTO relays (host, first_seen, last_seen, json) VALUES (?1, ?2, ?2, ?3)
         ON CONFLICT (host) DO UPDATE SET last_seen = ?2, json = ?3",
        params![host, now, json],
    )?;
    // Bounded: the least recently seen go first.
    conn.execute(
        "DELETE FROM relays WHERE host NOT IN
         (SELECT host FROM relays ORDER BY last_seen DESC LIMIT ?1)",
        [MAX_RELAYS as i64],
    )?;
    Ok(())
}

fn insert_alert_in(conn: &Connection, alert: &Value) -> Result<i64> {
    if !alert.is_object() {
        bail!("an alert must be a JSON object");
    }
    let json = alert.to_string();
    if json.len() > MAX_ALERT_BYTES {
        bail!(
            "alert document of {} bytes refused (limit {MAX_ALERT_BYTES})",
            json.len()
        );
    }
    let c = AlertColumns::of(alert);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO alerts (ts, category, severity, rule, process_name, executable, pid, user_name, \
         destination_domain, destination_ip, destination_port, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    stmt.execute(params![
        c.ts,
        c.category,
        c.severity,
        c.rule,
        c.process_name,
        c.executable,
        c.pid,
        c.user_name,
        c.destination_domain,
        c.destination_ip,
        c.destination_port,
        json
    ])?;
    Ok(conn.last_insert_rowid())
}

fn record_connection_in(conn: &Connection, u: &ConnectionSummaryUpdate) -> Result<ConnectionRow> {
    let sql = format!(
        "INSERT INTO connections (executable, user_name, destination_domain, destination_ip, destination_port, \
         process_name, last_pid, first_seen, last_seen, count, bytes_sent, bytes_received) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?11, ?9, ?10) \
         ON CONFLICT (executable, user_name, destination_domain, destination_ip, destination_port) DO UPDATE SET \
           process_name = CASE WHEN excluded.process_name = '' THEN process_name ELSE excluded.process_name END, \
           last_pid = coalesce(excluded.last_pid, last_pid), \
           first_seen = min(first_seen, excluded.first_seen), \
           last_seen = max(last_seen, excluded.last_seen), \
           count = count + excluded.count, \
           bytes_sent = bytes_sent + excluded.bytes_sent, \
           bytes_received = bytes_received + excluded.bytes_received \
         RETURNING {CONNECTION_COLUMNS}"
    );
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&sql)?;
    let row = stmt.query_row(
        params![
            u.executable.as_deref().unwrap_or(""),
            u.user_name.as_deref().unwrap_or(""),
            u.destination_domain
                .as_deref()
                .map(normalise_domain)
                .unwrap_or_default(),
            u.destination_ip,
            u.destination_port,
            u.process_name.as_deref().unwrap_or(""),
            u.pid,
            to_micros(u.ts),
            clamp(u.bytes_sent),
            clamp(u.bytes_received),
            clamp(u.connections),
        ],
        ConnectionRow::from_row,
    )?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;

    use super::*;
    use crate::testutil::TempDir;

    fn ago(secs: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(secs)
    }

    fn alert(
        at: SystemTime,
        category: &str,
        process: &str,
        pid: u32,
        user: &str,
        domain: &str,
    ) -> Value {
        json!({
            "@timestamp": crate::clock::rfc3339(at),
            "event": { "kind": "alert", "severity": 73 },
            "rule": { "category": category, "name": format!("{category} endpoint") },
            "process": { "name": process, "executable": format!("/usr/bin/{process}"), "pid": pid },
            "user": { "name": user },
            "destination": { "domain": domain, "ip": "203.0.113.7", "port": 443 },
        })
    }

    fn seeded(tag: &str) -> (TempDir, Store) {
        let dir = TempDir::new(tag);
        let mut s = Store::open(dir.path()).unwrap();
        s.insert_alert(&alert(
            ago(7200),
            "ai_provider",
            "curl",
            100,
            "alice",
            "api.openai.com",
        ))
        .unwrap();
        s.insert_alert(&alert(
            ago(600),
            "ai_relay",
            "python3",
            200,
            "bob",
            "relay.example.net",
        ))
        .unwrap();
        s.insert_alert(&alert(
            ago(60),
            "ai_provider",
            "node",
            300,
            "alice",
            "OpenAI.com.",
        ))
        .unwrap();
        (dir, s)
    }

    fn pids(alerts: &[Value]) -> Vec<u64> {
        alerts
            .iter()
            .map(|a| a["process"]["pid"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn open_creates_private_dir_and_wal_file() {
        let dir = TempDir::new("store-open");
        let nested = dir.join("state");
        let s = Store::open(&nested).unwrap();
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
            0o750
        );
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let vacuum: i64 = s
            .conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(vacuum, 2, "incremental");
        assert_eq!(s.stats().unwrap().schema_version, MIGRATIONS.len() as u32);
        drop(s);
        // Reopening an up-to-date store runs no migration and keeps the data.
        let s = Store::open(&nested).unwrap();
        assert_eq!(s.stats().unwrap().alerts, 0);
    }

    #[test]
    fn corrupt_file_is_refused_naming_the_path() {
        let dir = TempDir::new("store-corrupt");
        fs::write(dir.join(DB_FILE), vec![0x5a; 8192]).unwrap();
        let err = format!(
            "{:#}",
            Store::open(dir.path())
                .err()
                .expect("garbage must be refused")
        );
        assert!(
            err.contains(&dir.join(DB_FILE).display().to_string()),
            "{err}"
        );
        assert!(err.contains("move it aside"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("store-newer");
        let s = Store::open(dir.path()).unwrap();
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let err = format!("{:#}", Store::open(dir.path()).err().unwrap());
        assert!(err.contains("newer relaywatch"), "{err}");
    }

    #[test]
    fn unwritable_dir_is_named() {
        let err = format!(
            "{:#}",
            Store::open(Path::new("/proc/relaywatch-state"))
                .err()
                .unwrap()
        );
        assert!(err.contains("/proc/relaywatch-state"), "{err}");
    }

    #[test]
    fn alert_filters() {
        let (_dir, s) = seeded("filters");
        let q = |q: Query| pids(&s.alerts(&q).unwrap());
        assert_eq!(q(Query::default()), [100, 200, 300], "oldest first");
        assert_eq!(
            q(Query {
                since: Some(ago(3600)),
                ..Default::default()
            }),
            [200, 300]
        );
        assert_eq!(
            q(Query {
                until: Some(ago(300)),
                ..Default::default()
            }),
            [100, 200]
        );
        assert_eq!(
            q(Query {
                category: Some("ai_relay".into()),
                ..Default::default()
            }),
            [200]
        );
        assert_eq!(
            q(Query {
                process: Some("node".into()),
                ..Default::default()
            }),
            [300]
        );
        assert_eq!(
            q(Query {
                process: Some("/usr/bin/curl".into()),
                ..Default::default()
            }),
            [100]
        );
        assert_eq!(
            q(Query {
                pid: Some(200),
                ..Default::default()
            }),
            [200]
        );
        assert_eq!(
            q(Query {
                user: Some("alice".into()),
                ..Default::default()
            }),
            [100, 300]
        );
        assert_eq!(
            q(Query {
                domain: Some("openai.com".into()),
                ..Default::default()
            }),
            [100, 300],
            "name and subdomains"
        );
        assert_eq!(
            q(Query {
                domain: Some("penai.com".into()),
                ..Default::default()
            }),
            Vec::<u64>::new(),
            "label boundary"
        );
        assert_eq!(
            q(Query {
                limit: Some(2),
                ..Default::default()
            }),
            [200, 300],
            "the most recent two"
        );
        assert_eq!(
            q(Query {
                user: Some("alice".into()),
                limit: Some(1),
                ..Default::default()
            }),
            [300]
        );
        // The stored document comes back unchanged.
        assert_eq!(
            s.alerts(&Query {
                pid: Some(100),
                ..Default::default()
            })
            .unwrap()[0]["rule"]["name"],
            "ai_provider endpoint"
        );
    }

    #[test]
    fn in_memory_matching_agrees_with_sql() {
        let (_dir, s) = seeded("agree");
        let all = s.alerts(&Query::default()).unwrap();
        let queries = [
            Query {
                since: Some(ago(3600)),
                ..Default::default()
            },
            Query {
                until: Some(ago(300)),
                ..Default::default()
            },
            Query {
                category: Some("ai_relay".into()),
                ..Default::default()
            },
            Query {
                process: Some("/usr/bin/node".into()),
                ..Default::default()
            },
            Query {
                pid: Some(100),
                user: Some("alice".into()),
                ..Default::default()
            },
            Query {
                domain: Some("OPENAI.com".into()),
                ..Default::default()
            },
            Query {
                domain: Some("example.net".into()),
                ..Default::default()
            },
        ];
        for q in queries {
            let in_memory: Vec<Value> = all
                .iter()
                .filter(|a| alert_matches(&q, a))
                .cloned()
                .collect();
            assert_eq!(in_memory, s.alerts(&q).unwrap(), "{q:?}");
        }
    }

    fn update(
        secs_ago: u64,
        exe: &str,
        domain: Option<&str>,
        sent: u64,
    ) -> ConnectionSummaryUpdate {
        ConnectionSummaryUpdate {
            ts: ago(secs_ago),
            executable: Some(exe.into()),
            process_name: Some(exe.rsplit('/').next().unwrap().into()),
            pid: Some(42),
            user_name: Some("alice".into()),
            destination_domain: domain.map(str::to_owned),
            destination_ip: "198.51.100.1".into(),
            destination_port: 443,
            bytes_sent: sent,
            bytes_received: 2 * sent,
            connections: 1,
        }
    }

    #[test]
    fn connections_are_summarised_per_key() {
        let dir = TempDir::new("store-conn");
        let mut s = Store::open(dir.path()).unwrap();
        s.record_connection(&update(300, "/usr/bin/curl", Some("api.openai.com"), 10))
            .unwrap();
        let row = s
            .record_connection(&update(100, "/usr/bin/curl", Some("api.openai.com"), 5))
            .unwrap();
        assert_eq!((row.count, row.bytes_sent, row.bytes_received), (2, 15, 30));
        assert!(row.first_seen < row.last_seen);
        // A flow end adds its bytes to the row without counting another connection.
        let end = ConnectionSummaryUpdate {
            connections: 0,
            ..update(90, "/usr/bin/curl", Some("api.openai.com"), 100)
        };
        let row = s.record_connection(&end).unwrap();
        assert_eq!(
            (row.count, row.bytes_sent, row.bytes_received),
            (2, 115, 230)
        );
        s.record_connection(&update(50, "/usr/bin/curl", None, 1))
            .unwrap();
        s.record_connection(&update(10, "/usr/bin/wget", Some("api.openai.com"), 1))
            .unwrap();
        let all = s.connections(&Query::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[1].destination_domain, None,
            "unknown domain is its own row"
        );
        let openai = s
            .connections(&Query {
                domain: Some("openai.com".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            openai
                .iter()
                .map(|r| r.process_name.as_deref().unwrap())
                .collect::<Vec<_>>(),
            ["curl", "wget"]
        );
        let recent = s
            .connections(&Query {
                since: Some(ago(200)),
                process: Some("curl".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(recent.len(), 2, "a row counts as recent by its last_seen");
        assert!(
            s.connections(&Query {
                category: Some("x".into()),
                ..Default::default()
            })
            .is_err()
        );
        let v = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(
            serde_json::from_value::<ConnectionRow>(v).unwrap().count,
            all[0].count,
            "JSON round trip"
        );
        for r in &all {
            assert!(
                Query {
                    domain: Some("openai.com".into()),
                    ..Default::default()
                }
                .matches(&r.subject())
                    == r.destination_domain.is_some()
            );
        }
    }

    #[test]
    fn connection_update_from_ecs_record() {
        let record = json!({
            "@timestamp": "2026-01-02T03:04:05.000006Z",
            "process": { "pid": 7, "name": "curl", "executable": "/usr/bin/curl" },
            "user": { "id": "0", "name": "root" },
            "destination": { "ip": "127.0.0.1", "port": 443, "domain": "API.openai.com", "bytes": 900 },
            "source": { "bytes": 120 },
        });
        let u = ConnectionSummaryUpdate::from_ecs(&record).unwrap();
        assert_eq!(u.destination_domain.as_deref(), Some("api.openai.com"));
        assert_eq!((u.bytes_sent, u.bytes_received, u.pid), (120, 900, Some(7)));
        assert_eq!(crate::clock::rfc3339(u.ts), "2026-01-02T03:04:05.000006Z");
        assert!(ConnectionSummaryUpdate::from_ecs(&json!({"process": {"pid": 1}})).is_none());
    }

    #[test]
    fn bad_alerts_are_refused() {
        let dir = TempDir::new("store-bad");
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.insert_alert(&json!([1, 2])).is_err());
        let huge = json!({ "message": "x".repeat(MAX_ALERT_BYTES) });
        assert!(format!("{:#}", s.insert_alert(&huge).unwrap_err()).contains("refused"));
        // Missing fields are stored as unknown, with the current time.
        let id = s
            .insert_alert(&json!({"event": {"kind": "alert"}}))
            .unwrap();
        assert!(id > 0);
        assert_eq!(
            s.alerts(&Query {
                since: Some(ago(5)),
                ..Default::default()
            })
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn retention_by_age_and_size() {
        let dir = TempDir::new("store-retention");
        let mut s = Store::open(dir.path()).unwrap();
        let padding = "p".repeat(2000);
        for i in 0..400u32 {
            let mut a = alert(
                ago(u64::from(4000 - i * 10)),
                "ai_provider",
                "curl",
                i,
                "alice",
                "api.openai.com",
            );
            a["message"] = json!(padding);
            s.insert_alert(&a).unwrap();
            s.record_connection(&update(
                u64::from(4000 - i * 10),
                &format!("/usr/bin/c{i}"),
                None,
                1,
            ))
            .unwrap();
        }
        // By age: everything older than one hour (i < 40) goes.
        let r = s
            .apply_retention(Duration::from_secs(3600), u64::MAX)
            .unwrap();
        assert_eq!((r.alerts_deleted, r.connections_deleted), (41, 41));
        let before = s.stats().unwrap();
        assert_eq!(before.alerts, 359);
        // By size: the oldest go until the file fits.
        let limit = before.db_bytes / 2;
        let r = s
            .apply_retention(Duration::from_secs(86400), limit)
            .unwrap();
        let after = s.stats().unwrap();
        assert!(after.db_bytes <= limit, "{after:?} over {limit}");
        assert!(r.bytes_after <= limit && r.bytes_before > limit);
        assert!(after.alerts < 359 && after.alerts > 50, "{after:?}");
        let left = pids(&s.alerts(&Query::default()).unwrap());
        assert_eq!(*left.last().unwrap(), 399, "the newest stay");
        assert_eq!(left.len() as u64, after.alerts);
        assert_eq!(s.integrity_check().unwrap(), "ok");
        // A limit below an empty database's size empties it and stops.
        s.apply_retention(Duration::from_secs(86400), 1).unwrap();
        let empty = s.stats().unwrap();
        assert_eq!((empty.alerts, empty.connections), (0, 0));
    }

    #[tokio::test]
    async fn handle_batches_answers_and_broadcasts_after_commit() {
        let dir = TempDir::new("store-handle");
        let h = StoreHandle::open(dir.path()).unwrap();
        let mut alerts = h.subscribe_alerts();
        let mut rows = h.subscribe_connections();
        for i in 0..50 {
            h.record_connection(update(10, "/usr/bin/curl", Some("api.openai.com"), i));
        }
        let id = h
            .insert_alert(alert(ago(1), "ai_relay", "curl", 9, "bob", "relay.example"))
            .await
            .unwrap();
        assert!(id > 0);
        assert_eq!(alerts.recv().await.unwrap()["process"]["pid"], 9);
        let mut last = Value::Null;
        for _ in 0..50 {
            last = rows.recv().await.unwrap();
        }
        assert_eq!(last["count"], 50);
        assert_eq!(last["bytes_sent"], (0..50).sum::<u64>());
        h.flush().await.unwrap();
        let stats = h.stats().await.unwrap();
        assert_eq!(
            (stats.alerts, stats.connections, stats.dropped_writes),
            (1, 1, 0)
        );
        assert_eq!(
            h.alerts(Query {
                user: Some("bob".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
            1
        );
        assert!(h.insert_alert(json!("not an object")).await.is_err());
    }
}
