//! Human output of the query commands: aligned tables, relative times, optional colour.
//! Pure functions over values; `client` decides where the text goes.
use std::{io::IsTerminal as _, time::SystemTime};

use serde_json::Value;

use crate::output::store::ConnectionRow;

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Colour only on a terminal, and never when NO_COLOR is set to anything non-empty.
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub style: Option<&'static str>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            style: None,
        }
    }
}

pub struct Column {
    pub title: &'static str,
    pub right: bool,
}

const fn left(title: &'static str) -> Column {
    Column {
        title,
        right: false,
    }
}

const fn right(title: &'static str) -> Column {
    Column { title, right: true }
}

pub const ALERT_COLUMNS: &[Column] = &[
    left("TIME"),
    left("SEVERITY"),
    left("CATEGORY"),
    left("PROCESS"),
    right("PID"),
    left("USER"),
    left("DESTINATION"),
    right("PORT"),
];

pub const CONNECTION_COLUMNS: &[Column] = &[
    left("LAST SEEN"),
    left("FIRST SEEN"),
    left("PROCESS"),
    right("PID"),
    left("USER"),
    left("DESTINATION"),
    right("PORT"),
    right("COUNT"),
    right("SENT"),
    right("RECEIVED"),
];

/// Column widths for streamed rows, which cannot be measured in advance (longer cells shift
/// the rest of their line).
pub const ALERT_FOLLOW_WIDTHS: &[usize] = &[8, 8, 12, 15, 7, 10, 30, 5];
pub const CONNECTION_FOLLOW_WIDTHS: &[usize] = &[9, 10, 30, 7, 10, 30, 5, 5, 9, 9];

/// Column widths that fit the titles and every row.
pub fn widths(columns: &[Column], rows: &[Vec<Cell>]) -> Vec<usize> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| cell.text.chars().count())
                .fold(c.title.len(), usize::max)
        })
        .collect()
}

/// One line: cells padded to `widths`, two spaces apart, no trailing blanks.
pub fn line(columns: &[Column], widths: &[usize], cells: &[Cell], color: bool) -> String {
    let mut out = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        let width = widths.get(i).copied().unwrap_or(0);
        let pad = " ".repeat(width.saturating_sub(cell.text.chars().count()));
        let right_aligned = columns.get(i).is_some_and(|c| c.right);
        if right_aligned {
            out.push_str(&pad);
        }
        match cell.style.filter(|_| color) {
            Some(style) => out.extend([style, cell.text.as_str(), RESET]),
            None => out.push_str(&cell.text),
        }
        if !right_aligned && i != last {
            out.push_str(&pad);
        }
        if i != last {
            out.push_str("  ");
        }
    }
    out
}

pub fn header(columns: &[Column], widths: &[usize], color: bool) -> String {
    let cells: Vec<Cell> = columns
        .iter()
        .map(|c| Cell {
            text: c.title.into(),
            style: Some(BOLD),
        })
        .collect();
    line(columns, widths, &cells, color)
}

/// Header and rows, each line ending in a newline.
pub fn table(columns: &[Column], rows: &[Vec<Cell>], color: bool) -> String {
    let w = widths(columns, rows);
    let mut out = header(columns, &w, color);
    out.push('\n');
    for row in rows {
        out.push_str(&line(columns, &w, row, color));
        out.push('\n');
    }
    out
}

const LIST_COLUMNS: &[Column] = &[
    left("LIST"),
    left("CATEGORY"),
    left("SEVERITY"),
    left("ACTION"),
    right("RULES"),
    left("VERSION"),
    left("SHA256"),
    left("SOURCE"),
];
const FEED_COLUMNS: &[Column] = &[
    left("FEED"),
    left("STATE"),
    right("RULES"),
    left("LAST SUCCESS"),
    left("LAST CHECK"),
    left("LAST ERROR"),
];
const RELAY_COLUMNS: &[Column] = &[
    left("HOST"),
    left("STATUS"),
    left("VARIABLE"),
    right("PID"),
    left("EXECUTABLE"),
    right("PROCESSES"),
    left("FIRST SEEN"),
];

/// `relaywatch blocklist list`: the active lists (status `blocklists`), then the hosts found in
/// base-URL variables (status `relay_discovery`).
pub fn blocklists(lists: &Value, discovery: &Value) -> String {
    let s = |v: &Value| {
        Cell::plain(match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        })
    };
    let short = |v: &Value, n: usize| {
        Cell::plain(
            v.as_str()
                .map_or("-".into(), |s| s.chars().take(n).collect::<String>()),
        )
    };
    let rows: Vec<Vec<Cell>> = lists["active"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            vec![
                s(&l["path"]),
                s(&l["category"]),
                s(&l["severity"]),
                s(&l["action"]),
                s(&l["rules"]),
                short(&l["version"], 24),
                short(&l["sha256"], 12),
                s(&l["source"]),
            ]
        })
        .collect();
    let total: u64 = lists["active"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|l| l["rules"].as_u64()).sum());
    let mut out = table(LIST_COLUMNS, &rows, false);
    out.push_str(&format!(
        "{} lists, {total} rules, loaded at {}\n",
        rows.len(),
        lists["loaded_at"].as_str().unwrap_or("-")
    ));
    if let Some(e) = lists["last_error"].as_object() {
        out.push_str(&format!(
            "last refused reload at {}: {}\n",
            e.get("at").and_then(Value::as_str).unwrap_or("-"),
            e.get("error").and_then(Value::as_str).unwrap_or("-")
        ));
    }
    if let Some(feeds) = lists["feeds"].as_array().filter(|f| !f.is_empty()) {
        // A list refused by its feed has one error per line: the first says where.
        let first_line =
            |v: &Value| Cell::plain(v.as_str().and_then(|e| e.lines().next()).unwrap_or("-"));
        let rows: Vec<Vec<Cell>> = feeds
            .iter()
            .map(|f| {
                vec![
                    s(&f["url"]),
                    s(&f["state"]),
                    s(&f["rules"]),
                    s(&f["last_success"]),
                    s(&f["last_check"]),
                    first_line(&f["last_error"]["error"]),
                ]
            })
            .collect();
        out.push_str("\nfeeds:\n");
        out.push_str(&table(FEED_COLUMNS, &rows, false));
    }
    if let Some(hosts) = discovery["hosts"].as_array().filter(|h| !h.is_empty()) {
        let rows: Vec<Vec<Cell>> = hosts
            .iter()
            .map(|h| {
                vec![
                    s(&h["host"]),
                    s(&h["status"]),
                    s(&h["variable"]),
                    s(&h["pid"]),
                    s(&h["executable"]),
                    s(&h["processes"]),
                    s(&h["first_seen"]),
                ]
            })
            .collect();
        out.push_str("\nhosts in base-URL variables:\n");
        out.push_str(&table(RELAY_COLUMNS, &rows, false));
    }
    out
}

/// "now", "42s ago", "3m ago", "5h ago", "2d ago" (or "in 3m" for a time ahead of `now`).
pub fn relative(then: SystemTime, now: SystemTime) -> String {
    let (d, ahead) = match now.duration_since(then) {
        Ok(d) => (d, false),
        Err(e) => (e.duration(), true),
    };
    let s = d.as_secs();
    let amount = match s {
        0 => return "now".into(),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    };
    if ahead {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// 1023 B, 1.5 KiB, 20.0 MiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn or_dash(s: Option<String>) -> Cell {
    Cell::plain(s.unwrap_or_else(|| "-".into()))
}

fn when(t: Option<SystemTime>, now: SystemTime) -> Cell {
    Cell {
        text: t.map_or_else(|| "-".into(), |t| relative(t, now)),
        style: Some(DIM),
    }
}

/// ECS severity is a number (higher is worse); names are accepted too.
fn severity_style(severity: &str) -> Option<&'static str> {
    match severity.parse::<u32>() {
        Ok(n) if n >= 70 => Some(RED),
        Ok(n) if n >= 40 => Some(YELLOW),
        Ok(_) => None,
        Err(_) => match severity.to_ascii_lowercase().as_str() {
            "critical" | "high" => Some(RED),
            "medium" => Some(YELLOW),
            _ => None,
        },
    }
}

pub fn alert_cells(alert: &Value, now: SystemTime) -> Vec<Cell> {
    let at = alert
        .get("@timestamp")
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok());
    let severity = text(alert, "/event/severity");
    vec![
        when(at, now),
        Cell {
            style: severity.as_deref().and_then(severity_style),
            ..or_dash(severity)
        },
        or_dash(text(alert, "/rule/category")),
        or_dash(text(alert, "/process/name").or_else(|| text(alert, "/process/executable"))),
        or_dash(text(alert, "/process/pid")),
        or_dash(text(alert, "/user/name").or_else(|| text(alert, "/user/id"))),
        or_dash(text(alert, "/destination/domain").or_else(|| text(alert, "/destination/ip"))),
        or_dash(text(alert, "/destination/port")),
    ]
}

pub fn connection_cells(row: &ConnectionRow, now: SystemTime) -> Vec<Cell> {
    vec![
        when(Some(row.last_seen), now),
        when(Some(row.first_seen), now),
        or_dash(row.executable.clone().or_else(|| row.process_name.clone())),
        or_dash(row.last_pid.map(|p| p.to_string())),
        or_dash(row.user_name.clone()),
        Cell::plain(
            row.destination_domain
                .clone()
                .unwrap_or_else(|| row.destination_ip.clone()),
        ),
        Cell::plain(row.destination_port.to_string()),
        Cell::plain(row.count.to_string()),
        Cell::plain(bytes(row.bytes_sent)),
        Cell::plain(bytes(row.bytes_received)),
    ]
}

/// Nested objects flattened to aligned `a.b: value` lines.
pub fn key_values(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, child, out);
                }
            }
            // A list of objects (the active blocklists, sink health): one line each, indexed.
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), item, out);
                }
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut pairs = Vec::new();
    walk("", v, &mut pairs);
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    pairs
        .iter()
        .map(|(k, v)| format!("{:width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::time::Duration;

    use super::*;

    fn ago(now: SystemTime, secs: u64) -> SystemTime {
        now - Duration::from_secs(secs)
    }

    #[test]
    fn blocklist_list_shows_feeds_with_their_first_error_line() {
        let lists = json!({
            "active": [{ "path": "https://h/a.list", "category": "ai-relay", "rules": 2 }],
            "loaded_at": "2026-11-26T03:20:11Z",
            "last_error": null,
            "feeds": [
                { "url": "https://h/a.list", "state": "stale", "rules": 2, "last_success": "2026-11-26T03:20:11Z", "last_check": "2026-11-26T04:20:11Z",
                  "last_error": { "at": "2026-11-26T04:20:11Z", "error": "https://h/a.list:3: bad rule\nhttps://h/a.list:4: bad rule" } },
                { "url": "https://h/b.list", "state": "never_fetched", "rules": null, "last_success": null, "last_check": null, "last_error": null },
            ],
        });
        let text = blocklists(&lists, &Value::Null);
        let feeds: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "feeds:")
            .skip(1)
            .collect();
        assert_eq!(feeds.len(), 3, "{text}");
        assert!(
            feeds[0].starts_with("FEED") && feeds[0].ends_with("LAST ERROR"),
            "{text}"
        );
        let a: Vec<&str> = feeds[1].split_whitespace().collect();
        assert_eq!(a[..3], ["https://h/a.list", "stale", "2"], "{text}");
        assert!(feeds[1].ends_with("https://h/a.list:3: bad rule"), "{text}");
        assert_eq!(
            feeds[2].split_whitespace().collect::<Vec<_>>(),
            ["https://h/b.list", "never_fetched", "-", "-", "-", "-"]
        );
    }

    #[test]
    fn relative_times() {
        let now = SystemTime::now();
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(ago(now, 42), now), "42s ago");
        assert_eq!(relative(ago(now, 180), now), "3m ago");
        assert_eq!(relative(ago(now, 5 * 3600 + 5), now), "5h ago");
        assert_eq!(relative(ago(now, 2 * 86400), now), "2d ago");
        assert_eq!(relative(now + Duration::from_secs(120), now), "in 2m");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 * 1024 * 1024), "20.0 MiB");
    }

    #[test]
    fn table_is_aligned_without_colour() {
        let cols = &[left("NAME"), right("N")];
        let rows = vec![
            vec![Cell::plain("a"), Cell::plain("1000")],
            vec![Cell::plain("longer"), Cell::plain("7")],
        ];
        assert_eq!(
            table(cols, &rows, false),
            "NAME       N\na       1000\nlonger     7\n"
        );
        let coloured = table(cols, &rows, true);
        assert!(coloured.starts_with("\x1b[1mNAME\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn alert_row() {
        let now = SystemTime::now();
        let alert = json!({
            "@timestamp": crate::clock::rfc3339(ago(now, 180)),
            "event": { "severity": 73 }, "rule": { "category": "ai_relay" },
            "process": { "name": "curl", "pid": 7 }, "user": { "id": "1000" },
            "destination": { "ip": "203.0.113.9", "port": 443 },
        });
        let texts: Vec<String> = alert_cells(&alert, now)
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(
            texts,
            [
                "3m ago",
                "73",
                "ai_relay",
                "curl",
                "7",
                "1000",
                "203.0.113.9",
                "443"
            ]
        );
        assert_eq!(alert_cells(&alert, now)[1].style, Some(RED));
        assert_eq!(alert_cells(&json!({}), now)[2].text, "-");
    }

    #[test]
    fn status_lines() {
        let v = json!({ "version": "0.1.0", "store": { "alerts": 3, "path": "/x" } });
        assert_eq!(
            key_values(&v),
            "store.alerts: 3\nstore.path:   /x\nversion:      0.1.0\n"
        );
        let lists = json!({ "active": [{ "path": "a.list", "rules": 2 }, { "path": "b.list", "rules": 5 }] });
        assert_eq!(
            key_values(&lists),
            "active[0].path:  a.list\nactive[0].rules: 2\nactive[1].path:  b.list\nactive[1].rules: 5\n"
        );
    }
}
