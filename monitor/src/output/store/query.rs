//! Reading the store: query filters (matched in SQL and, for live streams, in memory), the
//! columns an alert is indexed by, and connection summary rows.
use std::time::SystemTime;

use rusqlite::{Row, types::Value as SqlValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{from_micros, to_micros};
use crate::report::record::Record;

/// Filters shared by alert and connection queries. `None` means "no filter".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Alerts at or after this time; connections last seen at or after it.
    pub since: Option<SystemTime>,
    /// Alerts at or before this time; connections first seen at or before it.
    pub until: Option<SystemTime>,
    /// Alert rule category (alerts only).
    pub category: Option<String>,
    /// Process name or full executable path.
    pub process: Option<String>,
    /// Process id (for connections: the last process seen on that row).
    pub pid: Option<u32>,
    pub user: Option<String>,
    /// Destination domain: the name itself or any subdomain of it.
    pub domain: Option<String>,
    /// At most this many items: the most recent ones, returned oldest first.
    pub limit: Option<u32>,
}

/// The filterable facts about one alert or connection row, for matching items of a live
/// stream against a `Query` (the SQL in `Store` applies the same rules to stored rows).
#[derive(Debug, Default)]
pub struct Subject<'a> {
    pub first_seen: i64,
    pub last_seen: i64,
    pub category: Option<&'a str>,
    pub process_name: Option<&'a str>,
    pub executable: Option<&'a str>,
    pub pid: Option<u32>,
    pub user: Option<&'a str>,
    pub domain: Option<&'a str>,
}

/// Lower-case, without the trailing root dot.
pub(super) fn normalise_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

impl Query {
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.since.is_none_or(|t| s.last_seen >= to_micros(t))
            && self.until.is_none_or(|t| s.first_seen <= to_micros(t))
            && eq(&self.category, s.category)
            && self
                .process
                .as_deref()
                .is_none_or(|p| s.process_name == Some(p) || s.executable == Some(p))
            && self.pid.is_none_or(|p| s.pid == Some(p))
            && eq(&self.user, s.user)
            && self.domain.as_deref().is_none_or(|want| {
                let want = normalise_domain(want);
                s.domain.map(normalise_domain).is_some_and(|have| {
                    have == want
                        || have
                            .strip_suffix(&want)
                            .is_some_and(|head| head.ends_with('.'))
                })
            })
    }

    /// SQL conditions and their parameters. `first`/`last` name the time columns.
    pub(super) fn sql_filter(&self, first: &str, last: &str, pid: &str) -> (String, Vec<SqlValue>) {
        let mut clauses: Vec<String> = Vec::new();
        let mut params: Vec<SqlValue> = Vec::new();
        // Anonymous `?` parameters are numbered left to right, in the order they are pushed.
        let mut add = |clause: &str, values: Vec<SqlValue>| {
            clauses.push(clause.to_owned());
            params.extend(values);
        };
        if let Some(t) = self.since {
            add(
                &format!("{last} >= ?"),
                vec![SqlValue::Integer(to_micros(t))],
            );
        }
        if let Some(t) = self.until {
            add(
                &format!("{first} <= ?"),
                vec![SqlValue::Integer(to_micros(t))],
            );
        }
        if let Some(c) = &self.category {
            add("category = ?", vec![SqlValue::Text(c.clone())]);
        }
        if let Some(p) = &self.process {
            add(
                "(process_name = ? OR executable = ?)",
                vec![SqlValue::Text(p.clone()), SqlValue::Text(p.clone())],
            );
        }
        if let Some(p) = self.pid {
            add(&format!("{pid} = ?"), vec![SqlValue::Integer(p.into())]);
        }
        if let Some(u) = &self.user {
            add("user_name = ?", vec![SqlValue::Text(u.clone())]);
        }
        if let Some(d) = &self.domain {
            let d = normalise_domain(d);
            // The name itself, or ".name" at the end of a longer one.
            add(
                "(destination_domain = ? OR substr(destination_domain, -length(?) - 1) = '.' || ?)",
                vec![
                    SqlValue::Text(d.clone()),
                    SqlValue::Text(d.clone()),
                    SqlValue::Text(d),
                ],
            );
        }
        let filter = if clauses.is_empty() {
            "1".to_owned()
        } else {
            clauses.join(" AND ")
        };
        (filter, params)
    }

    pub(super) fn sql_limit(&self) -> i64 {
        self.limit.map_or(-1, i64::from)
    }
}

/// The indexed columns of an alert, read from its ECS document.
#[derive(Debug, Default)]
pub(super) struct AlertColumns {
    pub(super) ts: i64,
    pub(super) category: Option<String>,
    pub(super) severity: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) process_name: Option<String>,
    pub(super) executable: Option<String>,
    pub(super) pid: Option<u32>,
    pub(super) user_name: Option<String>,
    pub(super) destination_domain: Option<String>,
    pub(super) destination_ip: Option<String>,
    pub(super) destination_port: Option<u16>,
}

/// `@timestamp` as microseconds, or now when it is missing or unreadable.
fn timestamp_of(record: &Record) -> i64 {
    humantime::parse_rfc3339_weak(&record.timestamp)
        .map_or_else(|_| to_micros(SystemTime::now()), to_micros)
}

impl AlertColumns {
    /// An alert document's columns; a document that is not a record (the API stores what it is
    /// given) has none but its time of arrival.
    pub(super) fn of(alert: &Value) -> AlertColumns {
        let a = Record::from_ecs(alert).unwrap_or_default();
        AlertColumns {
            ts: timestamp_of(&a),
            severity: a.event.severity.map(|s| s.to_string()),
            rule: a.rule.as_ref().map(|r| r.name.clone()),
            category: a.rule.map(|r| r.category),
            process_name: Some(a.process.name).filter(|n| !n.is_empty()),
            executable: a.process.executable,
            pid: Some(a.process.pid).filter(|&p| p != 0),
            user_name: a.user.name,
            destination_domain: a.destination.domain.map(|d| normalise_domain(&d)),
            destination_ip: a.destination.ip,
            destination_port: a.destination.port,
        }
    }

    pub(super) fn subject(&self) -> Subject<'_> {
        Subject {
            first_seen: self.ts,
            last_seen: self.ts,
            category: self.category.as_deref(),
            process_name: self.process_name.as_deref(),
            executable: self.executable.as_deref(),
            pid: self.pid,
            user: self.user_name.as_deref(),
            domain: self.destination_domain.as_deref(),
        }
    }
}

/// Does this alert document (as stored and broadcast) pass the query's filters?
pub fn alert_matches(query: &Query, alert: &Value) -> bool {
    query.matches(&AlertColumns::of(alert).subject())
}

/// One reported connection, to be folded into its summary row.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSummaryUpdate {
    pub ts: SystemTime,
    pub executable: Option<String>,
    pub process_name: Option<String>,
    pub pid: Option<u32>,
    pub user_name: Option<String>,
    pub destination_domain: Option<String>,
    pub destination_ip: String,
    pub destination_port: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// 1 for a new connection; 0 for a flow end, which only adds the bytes of one already
    /// counted.
    pub connections: u64,
}

impl ConnectionSummaryUpdate {
    /// From a connection record. Byte counts come from `source.bytes` (sent) and
    /// `destination.bytes` (received) when present. `None` when the record has no destination
    /// IP and port (a proxied connection whose target is a name).
    pub fn from_record(record: &Record) -> Option<ConnectionSummaryUpdate> {
        Some(ConnectionSummaryUpdate {
            ts: from_micros(timestamp_of(record)),
            executable: record.process.executable.clone(),
            process_name: Some(record.process.name.clone()).filter(|n| !n.is_empty()),
            pid: Some(record.process.pid).filter(|&p| p != 0),
            user_name: record.user.name.clone(),
            destination_domain: record.destination.domain.as_deref().map(normalise_domain),
            destination_ip: record.destination.ip.clone()?,
            destination_port: record.destination.port?,
            bytes_sent: record.source.bytes.unwrap_or(0),
            bytes_received: record.destination.bytes.unwrap_or(0),
            // A flow end reports the volume of a connection its start already counted.
            connections: u64::from(!record.event.kind_type.iter().any(|t| t == "end")),
        })
    }

    /// From a connection record's ECS document (see `from_record`).
    #[cfg(test)]
    pub fn from_ecs(record: &Value) -> Option<ConnectionSummaryUpdate> {
        ConnectionSummaryUpdate::from_record(&Record::from_ecs(record)?)
    }
}

mod rfc3339_time {
    use std::time::SystemTime;

    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::clock::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(D::Error::custom)
    }
}

/// A connection summary as stored, queried and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_domain: Option<String>,
    pub destination_ip: String,
    pub destination_port: u16,
    #[serde(with = "rfc3339_time")]
    pub first_seen: SystemTime,
    #[serde(with = "rfc3339_time")]
    pub last_seen: SystemTime,
    pub count: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

pub(super) const CONNECTION_COLUMNS: &str = "executable, process_name, last_pid, user_name, destination_domain, destination_ip, \
     destination_port, first_seen, last_seen, count, bytes_sent, bytes_received";

fn none_if_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl ConnectionRow {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<ConnectionRow> {
        Ok(ConnectionRow {
            executable: none_if_empty(r.get(0)?),
            process_name: none_if_empty(r.get(1)?),
            last_pid: r.get(2)?,
            user_name: none_if_empty(r.get(3)?),
            destination_domain: none_if_empty(r.get(4)?),
            destination_ip: r.get(5)?,
            destination_port: r.get(6)?,
            first_seen: from_micros(r.get(7)?),
            last_seen: from_micros(r.get(8)?),
            count: r.get::<_, i64>(9)?.max(0) as u64,
            bytes_sent: r.get::<_, i64>(10)?.max(0) as u64,
            bytes_received: r.get::<_, i64>(11)?.max(0) as u64,
        })
    }

    pub fn subject(&self) -> Subject<'_> {
        Subject {
            first_seen: to_micros(self.first_seen),
            last_seen: to_micros(self.last_seen),
            category: None,
            process_name: self.process_name.as_deref(),
            executable: self.executable.as_deref(),
            pid: self.last_pid,
            user: self.user_name.as_deref(),
            domain: self.destination_domain.as_deref(),
        }
    }
}
