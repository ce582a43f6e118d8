//! Human output of the query commands: aligned tables, relative times, optional colour, the
//! status summary. Pure functions over values; `query` decides where the text goes.
//!
//! Everything shown comes from the daemon, and much of it from watched processes (names,
//! paths, arguments) or from the network (domains, list feeds): control characters in it are
//! printed as `\u{1b}`-style escapes so that no value can move the cursor or recolour the
//! terminal.
use std::{
    borrow::Cow, collections::HashMap, fmt::Write as _, io::IsTerminal as _, time::SystemTime,
};

use serde_json::Value;

use crate::{output::store::ConnectionRow, report::record::Record};

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
    /// A cell showing `text` with its control characters escaped.
    fn plain(text: impl AsRef<str>) -> Cell {
        Cell {
            text: escape(text.as_ref()).into_owned(),
            style: None,
        }
    }
}

/// Characters a terminal acts on rather than shows: C0 and C1 controls (ESC, CSI, BEL,
/// backspace, carriage return, ...) and the bidirectional overrides that reorder what follows.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every character a terminal would act on written as `\u{1b}`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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
    left("SENT / RECEIVED"),
];

/// The alert table's SENT / RECEIVED column, filled from the flow's end record.
const ALERT_BYTES: usize = 8;

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
pub const ALERT_FOLLOW_WIDTHS: &[usize] = &[8, 8, 12, 15, 7, 10, 30, 5, 19];
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

const KNOWN_RELAY_COLUMNS: &[Column] = &[
    left("HOST"),
    left("FIRST SEEN"),
    left("LAST SEEN"),
    right("REQUESTS"),
    left("API"),
    left("MODEL"),
    left("SOFTWARE"),
    right("PID"),
    left("USER"),
    left("EXECUTABLE"),
];

/// `relaywatch relays`: relays learned from the API requests sent to them.
pub fn relays(relays: &[Value]) -> String {
    if relays.is_empty() {
        return "no relays learned yet: an AI API request to a host on no list makes one\n".into();
    }
    let s = |v: &Value| {
        Cell::plain(match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        })
    };
    let rows: Vec<Vec<Cell>> = relays
        .iter()
        .map(|r| {
            let api = &r["api"];
            let what = format!(
                "{} {} {}",
                api["family"].as_str().unwrap_or("-"),
                api["method"].as_str().unwrap_or("-"),
                api["route"].as_str().unwrap_or("-")
            );
            vec![
                s(&r["host"]),
                s(&r["first_seen"]),
                s(&r["last_seen"]),
                s(&r["requests"]),
                Cell::plain(what),
                s(&api["model"]),
                s(&r["software"]),
                s(&r["pid"]),
                s(&r["user"]),
                s(&r["executable"]),
            ]
        })
        .collect();
    let mut out = table(KNOWN_RELAY_COLUMNS, &rows, false);
    out.push_str(&format!("{} relays\n", rows.len()));
    out
}

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

fn or_dash(s: Option<String>) -> Cell {
    Cell::plain(s.unwrap_or_else(|| "-".into()))
}

fn when(t: Option<SystemTime>, now: SystemTime) -> Cell {
    Cell {
        text: t.map_or_else(|| "-".into(), |t| relative(t, now)),
        style: Some(DIM),
    }
}

/// The alert's severity as a word: the list's (`relaywatch.severity`), else ECS
/// `event.severity` read back through the numbers `report::alert` writes (73 high, 47 medium,
/// 21 low, 1 info).
pub fn severity_word(alert: &Record) -> Option<String> {
    if let Some(word) = alert
        .relaywatch
        .severity
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        return Some(word.to_ascii_lowercase());
    }
    let n = alert.event.severity?;
    Some(crate::report::alert::severity_of_number(n).as_str().into())
}

fn severity_style(severity: &str) -> Option<&'static str> {
    match severity {
        "critical" | "high" => Some(RED),
        "medium" => Some(YELLOW),
        _ => None,
    }
}

/// A flow-end record (`event.type` includes "end"): the alert's connection closed, with the
/// bytes it carried.
fn is_flow_end(alert: &Record) -> bool {
    alert.event.kind_type.iter().any(|t| t == "end")
}

/// The socket an alert or a flow end is about (`relaywatch.socket_cookie`).
fn socket_cookie(alert: &Record) -> Option<u64> {
    Some(alert.relaywatch.socket_cookie).filter(|&c| c != 0)
}

/// "1.2 KiB / 340 B" from `source.bytes` (sent) and `destination.bytes` (received).
fn flow_bytes(alert: &Record) -> Option<String> {
    let (sent, received) = (alert.source.bytes, alert.destination.bytes);
    if sent.is_none() && received.is_none() {
        return None;
    }
    let b = |n: Option<u64>| n.map_or_else(|| "?".into(), bytes);
    Some(format!("{} / {}", b(sent), b(received)))
}

/// Non-empty text, for a cell.
fn some(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

/// One alert (or a flow end standing alone) as a table row. A stored document that is not a
/// record shows as a row of dashes.
pub fn alert_cells(alert: &Value, now: SystemTime) -> Vec<Cell> {
    record_cells(&Record::from_ecs(alert).unwrap_or_default(), now)
}

fn record_cells(a: &Record, now: SystemTime) -> Vec<Cell> {
    let at = humantime::parse_rfc3339_weak(&a.timestamp).ok();
    let severity = severity_word(a);
    let p = &a.process;
    vec![
        when(at, now),
        Cell {
            style: severity.as_deref().and_then(severity_style),
            ..or_dash(severity)
        },
        or_dash(a.category().and_then(some)),
        or_dash(some(&p.name).or_else(|| p.executable.clone())),
        or_dash(
            Some(p.pid)
                .filter(|&pid| pid != 0)
                .map(|pid| pid.to_string()),
        ),
        or_dash(a.user.name.clone().or_else(|| some(&a.user.id))),
        or_dash(a.destination_name().and_then(some)),
        or_dash(a.destination.port.map(|p| p.to_string())),
        or_dash(flow_bytes(a)),
    ]
}

/// The rows of an alert listing (oldest first): one per alert. A flow end is folded into the
/// row of the earlier alert about the same socket (its bytes fill SENT / RECEIVED); one whose
/// alert is outside the listing stays a row of its own.
pub fn alert_rows(alerts: &[Value], now: SystemTime) -> Vec<Vec<Cell>> {
    let mut rows: Vec<Vec<Cell>> = Vec::with_capacity(alerts.len());
    // Socket cookie -> the row of its alert, while that row still waits for its end.
    let mut open: HashMap<u64, usize> = HashMap::new();
    for alert in alerts {
        let alert = Record::from_ecs(alert).unwrap_or_default();
        let cookie = socket_cookie(&alert);
        if is_flow_end(&alert) {
            if let Some(row) = cookie.and_then(|c| open.remove(&c)) {
                rows[row][ALERT_BYTES] = or_dash(flow_bytes(&alert));
                continue;
            }
        } else if let Some(c) = cookie {
            open.insert(c, rows.len());
        }
        rows.push(record_cells(&alert, now));
    }
    rows
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

/// "45s", "5m 3s", "2h 5m", "3d 4h".
pub fn uptime(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// "1 rule", "2 rules".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A string value, escaped; numbers as written.
fn shown(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(escape(s).into_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first line of a (possibly multi-line) message, escaped.
fn first_line(v: &Value) -> Option<String> {
    v.as_str()
        .and_then(|s| s.lines().next())
        .filter(|s| !s.is_empty())
        .map(|s| escape(s).into_owned())
}

/// Width of the labels of `relaywatch status`.
const LABEL: usize = 12;

/// One `label      text` line of the status summary.
fn labelled(out: &mut String, label: &str, text: &str) {
    let line = format!("{label:LABEL$}{text}");
    out.push_str(line.trim_end());
    out.push('\n');
}

/// `requests` lines: the TLS libraries read (and in how many processes), requests read, relays
/// learned.
fn tls_summary(out: &mut String, t: &Value, relays: Option<u64>) {
    if t["enabled"] == Value::Bool(false) {
        labelled(
            out,
            "requests",
            "not read ([discovery] api_requests = false, or no uprobes)",
        );
        return;
    }
    let n = |k: &str| t[k].as_u64().unwrap_or(0);
    labelled(
        out,
        "requests",
        &format!(
            "{} read from TLS, {} AI API requests, {} relays learned",
            n("requests_read"),
            n("api_requests"),
            relays.unwrap_or(0)
        ),
    );
    let refused = match n("processes_not_read") {
        0 => String::new(),
        r => format!(", {r} not read (limit)"),
    };
    labelled(
        out,
        "tls clients",
        &format!(
            "{} processes read now, {} since start{refused}",
            n("processes_reading"),
            n("processes_read")
        ),
    );
    for lib in t["libraries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let what = lib["library"].as_str().unwrap_or("?");
        let path = lib["path"].as_str().unwrap_or("?");
        let line = match lib["error"].as_str() {
            Some(e) => format!("{what:<8} {path}: not read ({e})"),
            None => match lib["pids"].as_array().map_or(0, Vec::len) {
                0 => format!("{what:<8} {path}"),
                1 => format!("{what:<8} {path}, read in 1 process"),
                n => format!("{what:<8} {path}, read in {n} processes (at least)"),
            },
        };
        out.push_str(&format!("{:LABEL$}{line}\n", ""));
    }
}

/// `relaywatch status`: what an operator asks first (is it running, is it losing events, what
/// does it match against, where do alerts go), in a screenful. Keys the daemon did not send
/// are left out; `status --raw` and `--json` show everything.
pub fn status_summary(v: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let u = |key: &str| v.get(key).and_then(Value::as_u64);

    out.push_str(&match v.get("version").and_then(shown) {
        Some(version) => format!("relaywatch {version}: running"),
        None => "relaywatch: running".to_owned(),
    });
    if let Some(secs) = u("uptime_seconds") {
        out.push_str(&format!(", up {}", uptime(secs)));
    }
    out.push('\n');

    if let Some(n) = u("programs_attached") {
        let mut t = format!("{n} attached");
        if let Some(cgroup) = v.get("cgroup").and_then(shown) {
            t.push_str(&format!(" to cgroup {cgroup}"));
        }
        labelled(&mut out, "programs", &t);
    }

    let mut events = Vec::new();
    if let Some(rate) = v.get("events_per_second").and_then(Value::as_f64) {
        events.push(format!("{rate}/s"));
    }
    if let Some(total) = u("events_total") {
        events.push(format!("{total} total"));
    }
    if let Some(fill) = v.get("ringbuf_fill_ratio").and_then(Value::as_f64) {
        events.push(format!("ring buffer {:.1}% full", fill * 100.0));
    }
    if let Some(n) = u("processes_tracked") {
        events.push(format!("{n} processes tracked"));
    }
    if let Some(n) = u("records_pending") {
        let s = if n == 1 { "" } else { "s" };
        events.push(format!("{n} record{s} waiting for a name"));
    }
    if !events.is_empty() {
        labelled(&mut out, "events", &events.join(", "));
    }

    let known: Vec<(u64, &str)> = [
        ("events_lost", "ring-buffer events"),
        ("payload_chunks_lost", "payload chunks"),
        ("records_malformed", "malformed records"),
        // Not lost, but written before their name could arrive (the pending bound was hit).
        ("records_written_early", "records written unnamed early"),
    ]
    .into_iter()
    .filter_map(|(key, what)| u(key).map(|n| (n, what)))
    .collect();
    if !known.is_empty() {
        let text = if known.iter().all(|(n, _)| *n == 0) {
            "none".to_owned()
        } else {
            known
                .iter()
                .map(|(n, what)| match n {
                    0 => format!("{what} none"),
                    n => format!("{what} {n}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        labelled(&mut out, "losses", &text);
    }

    if let Some(lists) = v.get("blocklists").filter(|l| l.is_object()) {
        lists_summary(&mut out, lists);
    }
    if let Some(sinks) = v.get("sinks").and_then(Value::as_array) {
        sinks_summary(&mut out, sinks);
    }
    if let Some(d) = v.get("relay_discovery").filter(|d| d.is_object()) {
        discovery_summary(&mut out, d);
    }
    if let Some(t) = v.get("tls_plaintext").filter(|t| t.is_object()) {
        tls_summary(&mut out, t, u("known_relays"));
    }
    if let Some(c) = v.get("relay_config_files").filter(|c| c["enabled"] == true) {
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        labelled(
            &mut out,
            "ai configs",
            &format!(
                "{} relay hosts named in AI clients' files ({} files read, {} not readable)",
                n("findings_total"),
                n("files_read"),
                n("problems_total")
            ),
        );
    }
    if let Some(store) = v.get("store").filter(|s| s.is_object()) {
        labelled(&mut out, "store", &store_summary(store));
    }
    match v.get("last_alert") {
        Some(a @ Value::Object(_)) => labelled(&mut out, "last alert", &alert_line(a, now)),
        Some(other) => {
            if let Some(t) = shown(other) {
                labelled(&mut out, "last alert", &t);
            }
        }
        None => {}
    }
    out
}

/// The `lists` line (totals, when loaded), one line per category (rules, lists, versions),
/// the last refused reload, and one line per remote feed.
fn lists_summary(out: &mut String, lists: &Value) {
    let active = lists["active"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // (category, lists, rules, versions), in the order the categories first appear.
    let mut categories: Vec<(String, u64, u64, Vec<String>)> = Vec::new();
    for list in active {
        let category = list["category"].as_str().unwrap_or("-");
        let i = match categories.iter().position(|c| c.0 == category) {
            Some(i) => i,
            None => {
                categories.push((category.to_owned(), 0, 0, Vec::new()));
                categories.len() - 1
            }
        };
        let c = &mut categories[i];
        c.1 += 1;
        c.2 += list["rules"].as_u64().unwrap_or(0);
        if let Some(version) = list["version"].as_str().filter(|s| !s.is_empty()) {
            // Whole when it fits (a cut "v2fly/domain-list-commun" names nothing), else cut
            // visibly.
            let version: String = match version.chars().count() {
                0..=64 => version.to_owned(),
                _ => version.chars().take(63).chain(['…']).collect(),
            };
            if !c.3.contains(&version) {
                c.3.push(version);
            }
        }
    }
    let total: u64 = categories.iter().map(|c| c.2).sum();
    let mut t = if active.is_empty() {
        "none active".to_owned()
    } else {
        format!(
            "{} in {}",
            count(total, "rule", "rules"),
            count(active.len() as u64, "list", "lists")
        )
    };
    if let Some(at) = lists["loaded_at"].as_str() {
        t.push_str(&format!(", loaded {}", escape(at)));
    }
    labelled(out, "lists", &t);
    let name_width = categories
        .iter()
        .map(|c| escape(&c.0).chars().count())
        .max()
        .unwrap_or(0);
    let rules_width = categories
        .iter()
        .map(|c| c.2.to_string().len())
        .max()
        .unwrap_or(0);
    for (category, n, rules, versions) in &categories {
        let mut t = format!(
            "{:name_width$}  {rules:>rules_width$} {}",
            escape(category),
            if *rules == 1 { "rule " } else { "rules" }
        );
        if *n > 1 {
            t.push_str(&format!(" in {n} lists"));
        }
        match versions.as_slice() {
            [] => {}
            [one] => t.push_str(&format!(", version {}", escape(one))),
            [a, b] => t.push_str(&format!(", versions {}, {}", escape(a), escape(b))),
            [a, b, rest @ ..] => t.push_str(&format!(
                ", versions {}, {} and {} more",
                escape(a),
                escape(b),
                rest.len()
            )),
        }
        labelled(out, "", &format!("  {t}"));
    }
    if let Some(e) = lists["last_error"].as_object() {
        let t = format!(
            "last reload refused at {}: {}",
            e.get("at").and_then(shown).unwrap_or_else(|| "-".into()),
            e.get("error")
                .and_then(first_line)
                .unwrap_or_else(|| "-".into())
        );
        labelled(out, "", &t);
    }
    for (i, feed) in lists["feeds"].as_array().into_iter().flatten().enumerate() {
        let mut t = format!(
            "{}: {}",
            shown(&feed["url"]).unwrap_or_else(|| "-".into()),
            shown(&feed["state"]).unwrap_or_else(|| "-".into())
        );
        if let Some(rules) = feed["rules"].as_u64() {
            t.push_str(&format!(", {}", count(rules, "rule", "rules")));
        }
        if let Some(at) = shown(&feed["last_success"]) {
            t.push_str(&format!(", last success {at}"));
        }
        if let Some(e) = first_line(&feed["last_error"]["error"]) {
            t.push_str(&format!(", last error: {e}"));
        }
        labelled(out, if i == 0 { "feeds" } else { "" }, &t);
    }
}

/// One line per sink: queue depth, losses, the last error.
fn sinks_summary(out: &mut String, sinks: &[Value]) {
    if sinks.is_empty() {
        labelled(out, "sinks", "none");
    }
    for (i, sink) in sinks.iter().enumerate() {
        let n = |key: &str| sink[key].as_u64().unwrap_or(0);
        let mut t = format!(
            "{}: {} queued",
            shown(&sink["name"]).unwrap_or_else(|| "-".into()),
            n("queued")
        );
        if n("queued_bytes") > 0 {
            t.push_str(&format!(" ({})", bytes(n("queued_bytes"))));
        }
        for (key, what) in [("dropped", "dropped"), ("failed", "failed")] {
            if n(key) > 0 {
                t.push_str(&format!(", {} {what}", n(key)));
            }
        }
        match first_line(&sink["last_error"]) {
            Some(e) => t.push_str(&format!(", last error: {e}")),
            None => t.push_str(", no errors"),
        }
        labelled(out, if i == 0 { "sinks" } else { "" }, &t);
    }
}

/// Hosts found in base-URL variables (`OPENAI_BASE_URL`, ...), by status.
fn discovery_summary(out: &mut String, d: &Value) {
    if d["enabled"] == false {
        labelled(out, "relay hosts", "discovery off");
        return;
    }
    let hosts = d["hosts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut t = format!(
        "{} discovered in base-URL variables",
        count(hosts.len() as u64, "host", "hosts")
    );
    let mut statuses: Vec<(String, u64)> = Vec::new();
    for h in hosts {
        let status = h["status"].as_str().unwrap_or("-");
        match statuses.iter_mut().find(|s| s.0 == status) {
            Some(s) => s.1 += 1,
            None => statuses.push((status.to_owned(), 1)),
        }
    }
    if !statuses.is_empty() {
        let parts: Vec<String> = statuses
            .iter()
            .map(|(status, n)| format!("{n} {}", escape(status)))
            .collect();
        t.push_str(&format!(" ({})", parts.join(", ")));
    }
    if let Some(n) = d["hosts_forgotten"].as_u64().filter(|n| *n > 0) {
        t.push_str(&format!(", {n} forgotten"));
    }
    labelled(out, "relay hosts", &t);
}

/// "12 alerts, 340 connection rows, 1.2 MiB in /var/lib/relaywatch/relaywatch.db".
fn store_summary(store: &Value) -> String {
    if let Some(e) = first_line(&store["error"]) {
        return format!("unreadable: {e}");
    }
    let mut parts = Vec::new();
    if let Some(n) = store["alerts"].as_u64() {
        parts.push(count(n, "alert", "alerts"));
    }
    if let Some(n) = store["connections"].as_u64() {
        parts.push(count(n, "connection row", "connection rows"));
    }
    if let Some(n) = store["db_bytes"].as_u64() {
        let wal = store["wal_bytes"].as_u64().unwrap_or(0);
        parts.push(bytes(n + wal));
    }
    if let Some(n) = store["dropped_writes"].as_u64().filter(|n| *n > 0) {
        parts.push(format!("{n} writes dropped"));
    }
    let mut t = parts.join(", ");
    if let Some(path) = shown(&store["path"]) {
        t.push_str(&format!(" in {path}"));
    }
    t
}

/// "3m ago  high  ai-relay  curl (pid 7) -> relay.example.net:443".
fn alert_line(alert: &Value, now: SystemTime) -> String {
    let c = alert_cells(alert, now);
    let mut t = format!("{}  {}  {}  {}", c[0].text, c[1].text, c[2].text, c[3].text);
    if c[4].text != "-" {
        t.push_str(&format!(" (pid {})", c[4].text));
    }
    t.push_str(&format!(" -> {}", c[6].text));
    if c[7].text != "-" {
        t.push_str(&format!(":{}", c[7].text));
    }
    t
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
            Value::String(s) => out.push((escape(prefix).into_owned(), escape(s).into_owned())),
            other => out.push((escape(prefix).into_owned(), other.to_string())),
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
                "high",
                "ai_relay",
                "curl",
                "7",
                "1000",
                "203.0.113.9",
                "443",
                "-"
            ]
        );
        assert_eq!(alert_cells(&alert, now)[1].style, Some(RED));
        assert_eq!(alert_cells(&json!({}), now)[2].text, "-");
        assert_eq!(alert_cells(&json!({}), now).len(), ALERT_COLUMNS.len());
    }

    #[test]
    fn severity_is_a_word() {
        let sev = |v: Value| severity_word(&Record::from_ecs(&v).expect("a record"));
        // The list's word first, whatever the number says.
        assert_eq!(
            sev(json!({ "relaywatch": { "severity": "medium" }, "event": { "severity": 73 } })),
            Some("medium".into())
        );
        // Else the numbers report::alert writes.
        for (n, word) in [
            (73, "high"),
            (47, "medium"),
            (21, "low"),
            (1, "info"),
            (99, "high"),
        ] {
            assert_eq!(
                sev(json!({ "event": { "severity": n } })),
                Some(word.into()),
                "{n}"
            );
        }
        // A document whose fields have the wrong types is not a record: a row of dashes.
        let now = SystemTime::now();
        let junk = alert_cells(&json!({ "event": { "severity": "High" } }), now);
        assert!(junk.iter().all(|c| c.text == "-"), "{junk:?}");
        assert_eq!(sev(json!({})), None);
        let cell = |v: Value| alert_cells(&v, now)[1].clone();
        assert_eq!(
            cell(json!({ "event": { "severity": 47 } })).style,
            Some(YELLOW)
        );
        assert_eq!(cell(json!({ "event": { "severity": 21 } })).style, None);
        assert_eq!(cell(json!({})).text, "-");
    }

    /// An alert and its flow end as the daemon stores them (`daemon::flow_end` copies the alert).
    fn sample_alert(now: SystemTime, secs: u64, cookie: u64, process: &str, domain: &str) -> Value {
        json!({
            "@timestamp": crate::clock::rfc3339(ago(now, secs)),
            "event": { "kind": "alert", "type": ["connection", "start"], "severity": 73 },
            "rule": { "category": "ai-relay" },
            "process": { "name": process, "pid": 4242 },
            "user": { "name": "alice" },
            "destination": { "domain": domain, "ip": "203.0.113.9", "port": 443 },
            "relaywatch": { "severity": "high", "socket_cookie": cookie },
        })
    }

    fn sample_end(alert: &Value, now: SystemTime, secs: u64, sent: u64, received: u64) -> Value {
        let mut end = alert.clone();
        end["@timestamp"] = json!(crate::clock::rfc3339(ago(now, secs)));
        end["event"]["type"] = json!(["connection", "end"]);
        end["source"]["bytes"] = json!(sent);
        end["destination"]["bytes"] = json!(received);
        end
    }

    fn sample_alerts(now: SystemTime) -> Vec<Value> {
        let curl = sample_alert(now, 600, 11, "curl", "relay.example.net");
        let mut python = sample_alert(now, 300, 12, "python3", "api.openai.com");
        python["relaywatch"]["severity"] = json!("medium");
        python["event"]["severity"] = json!(47);
        python["rule"]["category"] = json!("ai-provider");
        // The alert of cookie 10 is older than the listed window: its end stands alone.
        let orphan = sample_alert(now, 7200, 10, "node", "chat.example.org");
        vec![
            sample_end(&orphan, now, 900, 52, 1 << 20),
            curl.clone(),
            python,
            sample_end(&curl, now, 240, 1229, 340),
        ]
    }

    #[test]
    fn flow_ends_fold_into_their_alert_row() {
        let now = SystemTime::now();
        let rows = alert_rows(&sample_alerts(now), now);
        let text = table(ALERT_COLUMNS, &rows, false);
        println!("{text}");
        let texts: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(|c| c.text.as_str()).collect())
            .collect();
        assert_eq!(
            texts.len(),
            3,
            "one row per alert, the orphan end on its own\n{text}"
        );
        assert_eq!(
            texts[0],
            [
                "15m ago",
                "high",
                "ai-relay",
                "node",
                "4242",
                "alice",
                "chat.example.org",
                "443",
                "52 B / 1.0 MiB"
            ]
        );
        assert_eq!(
            texts[1],
            [
                "10m ago",
                "high",
                "ai-relay",
                "curl",
                "4242",
                "alice",
                "relay.example.net",
                "443",
                "1.2 KiB / 340 B"
            ],
            "the alert keeps its own time; its end adds the bytes"
        );
        assert_eq!(texts[2][1], "medium");
        assert_eq!(texts[2][3], "python3");
        assert_eq!(texts[2][8], "-", "no end yet");
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap()
            .split("  ")
            .filter(|s| !s.is_empty())
            .map(str::trim)
            .collect();
        assert_eq!(header.last(), Some(&"SENT / RECEIVED"));
        // An end listed before its alert, or a second end for one socket, is not folded.
        let curl = sample_alert(now, 600, 11, "curl", "relay.example.net");
        let end = sample_end(&curl, now, 500, 1, 2);
        assert_eq!(alert_rows(&[end.clone(), curl.clone()], now).len(), 2);
        assert_eq!(alert_rows(&[curl, end.clone(), end], now).len(), 2);
        // Without a cookie nothing can be matched.
        let mut bare = sample_alert(now, 60, 0, "curl", "x");
        bare["relaywatch"] = json!({});
        let bare_end = sample_end(&bare, now, 30, 1, 2);
        assert_eq!(alert_rows(&[bare, bare_end], now).len(), 2);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("curl"), "curl");
        assert!(matches!(escape("/usr/bin/curl"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb\x07"), "a\\u{1b}[2Jb\\u{7}");
        assert_eq!(
            escape("x\r\ny\u{9b}\u{202e}z"),
            "x\\u{d}\\u{a}y\\u{9b}\\u{202e}z"
        );
        assert_eq!(escape("名前"), "名前", "printable non-ASCII stays");

        let now = SystemTime::now();
        let mut alert = sample_alert(
            now,
            60,
            1,
            "evil\x1b]0;pwned\x07\x1b[2J",
            "a\x1b[31m.example",
        );
        alert["user"]["name"] = json!("bob\rroot");
        let rows = alert_rows(&[alert], now);
        let text = table(ALERT_COLUMNS, &rows, true);
        // With colour on, the only escape sequences are the table's own styles.
        let data_line = [BOLD, RED, YELLOW, DIM, RESET]
            .iter()
            .fold(text.lines().nth(1).unwrap().to_owned(), |l, style| {
                l.replace(style, "")
            });
        for c in ['\x1b', '\x07', '\r'] {
            assert!(!data_line.contains(c), "{data_line:?}");
        }
        assert!(
            data_line.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
            "{data_line}"
        );
        assert!(data_line.contains("a\\u{1b}[31m.example"), "{data_line}");
        assert!(data_line.contains("bob\\u{d}root"), "{data_line}");
        // Widths count the escapes, so the columns stay aligned.
        let plain = table(ALERT_COLUMNS, &rows, false);
        let lines: Vec<&str> = plain.lines().collect();
        let col = lines[0].find("DESTINATION").unwrap();
        assert_eq!(&lines[1][col..col + 6], "a\\u{1b", "{plain}");

        let row = ConnectionRow {
            executable: Some("/tmp/\x1b[8mhidden".into()),
            process_name: None,
            last_pid: Some(9),
            user_name: Some("u\u{202e}toor".into()),
            destination_domain: Some("x\x08.example".into()),
            destination_ip: "198.51.100.4".into(),
            destination_port: 443,
            first_seen: ago(now, 300),
            last_seen: ago(now, 60),
            count: 2,
            bytes_sent: 1536,
            bytes_received: 20 * 1024 * 1024,
        };
        let texts: Vec<String> = connection_cells(&row, now)
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(
            texts,
            [
                "1m ago",
                "5m ago",
                "/tmp/\\u{1b}[8mhidden",
                "9",
                "u\\u{202e}toor",
                "x\\u{8}.example",
                "443",
                "2",
                "1.5 KiB",
                "20.0 MiB"
            ]
        );

        let lists = json!({ "active": [{ "path": "https://h/\x1b[2J.list", "category": "ai-relay", "rules": 1 }] });
        assert!(!blocklists(&lists, &Value::Null).contains('\x1b'));
        assert!(!key_values(&json!({ "sinks": [{ "last_error": "\x1b[2J" }] })).contains('\x1b'));
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(45), "45s");
        assert_eq!(uptime(303), "5m 3s");
        assert_eq!(uptime(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(uptime(3 * 86400 + 4 * 3600 + 59), "3d 4h");
    }

    /// A status answer as `daemon::run` and the API's status handler build it.
    fn sample_status(now: SystemTime) -> Value {
        json!({
            "version": "0.1.0",
            "programs_attached": 11,
            "cgroup": "/sys/fs/cgroup",
            "events_total": 48213,
            "events_per_second": 12.5,
            "events_lost": 0,
            "ringbuf_fill_ratio": 0.003,
            "payload_chunks_total": 3120,
            "payload_chunks_lost": 0,
            "records_malformed": 0,
            "processes_tracked": 37,
            "blocklists": {
                "active": [
                    { "path": "builtin:ai-relay.list", "category": "ai-relay", "severity": "high", "action": "alert",
                      "source": "builtin", "version": "2026.11.20", "sha256": "ab12", "rules": 1834,
                      "rules_by_kind": [["domain", 1830], ["cidr", 4]] },
                    { "path": "https://h/relays.list", "category": "ai-relay", "severity": "high", "action": "alert",
                      "source": "https://h/relays.list", "version": "2026.11.26", "sha256": "cd34", "rules": 2 },
                    { "path": "builtin:ai-provider.list", "category": "ai-provider", "severity": "medium", "action": "alert",
                      "source": "builtin", "version": "2026.11.20", "sha256": "ef56", "rules": 212 },
                    { "path": "/etc/relaywatch/allow.list", "category": "allow", "severity": "info", "action": "allow",
                      "source": "/etc/relaywatch/allow.list", "version": "", "sha256": "0789", "rules": 1 },
                ],
                "loaded_at": "2026-11-26T03:20:11Z",
                "last_error": null,
                "feeds": [
                    { "url": "https://h/relays.list", "state": "stale", "rules": 2,
                      "last_success": "2026-11-26T03:20:11Z", "last_check": "2026-11-26T04:20:11Z",
                      "last_error": { "at": "2026-11-26T04:20:11Z", "error": "https://h/relays.list: HTTP 503\nsecond line" } },
                ],
            },
            "relay_discovery": {
                "enabled": true, "variables": 6, "hosts_forgotten": 0,
                "hosts": [
                    { "host": "relay.example.net", "status": "suspected-relay", "variable": "OPENAI_BASE_URL", "pid": 4242 },
                    { "host": "127.0.0.1", "status": "local", "variable": "ANTHROPIC_BASE_URL", "pid": 4243 },
                ],
            },
            "sinks": [
                { "name": "syslog tcp://127.0.0.1:6514", "queued": 0, "queued_bytes": 0, "delivered": 12,
                  "failed": 0, "dropped": 0, "errors": 0, "last_error": null, "last_delivery": "2026-11-26T04:00:00Z" },
                { "name": "http https://siem.example/bulk", "queued": 3, "queued_bytes": 4096, "delivered": 9,
                  "failed": 0, "dropped": 0, "errors": 5, "last_error": "connection refused", "last_delivery": null },
            ],
            "uptime_seconds": 2 * 3600 + 5 * 60 + 9,
            "store": { "path": "/var/lib/relaywatch/relaywatch.db", "schema_version": 1, "alerts": 12,
                       "connections": 340, "db_bytes": 1_200_000, "wal_bytes": 32768, "dropped_writes": 0 },
            "last_alert": sample_alert(now, 180, 11, "curl", "relay.example.net"),
        })
    }

    #[test]
    fn status_summary_from_a_daemon_answer() {
        let now = SystemTime::now();
        let text = status_summary(&sample_status(now), now);
        println!("{text}");
        let expected = "\
relaywatch 0.1.0: running, up 2h 5m
programs    11 attached to cgroup /sys/fs/cgroup
events      12.5/s, 48213 total, ring buffer 0.3% full, 37 processes tracked
losses      none
lists       2049 rules in 4 lists, loaded 2026-11-26T03:20:11Z
              ai-relay     1836 rules in 2 lists, versions 2026.11.20, 2026.11.26
              ai-provider   212 rules, version 2026.11.20
              allow           1 rule
feeds       https://h/relays.list: stale, 2 rules, last success 2026-11-26T03:20:11Z, last error: https://h/relays.list: HTTP 503
sinks       syslog tcp://127.0.0.1:6514: 0 queued, no errors
            http https://siem.example/bulk: 3 queued (4.0 KiB), last error: connection refused
relay hosts 2 hosts discovered in base-URL variables (1 suspected-relay, 1 local)
store       12 alerts, 340 connection rows, 1.2 MiB in /var/lib/relaywatch/relaywatch.db
last alert  3m ago  high  ai-relay  curl (pid 4242) -> relay.example.net:443
";
        assert_eq!(text, expected);
        assert!(text.lines().count() <= 25);
    }

    #[test]
    fn status_summary_shows_losses_and_what_is_there() {
        let now = SystemTime::now();
        let mut v = sample_status(now);
        v["events_lost"] = json!(7);
        v["records_malformed"] = json!(1);
        v["blocklists"]["last_error"] = json!({ "at": "2026-11-26T05:00:00Z", "error": "a.list:3: bad rule\na.list:4: bad rule" });
        let text = status_summary(&v, now);
        assert!(
            text.contains(
                "\nlosses      ring-buffer events 7, payload chunks none, malformed records 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n            last reload refused at 2026-11-26T05:00:00Z: a.list:3: bad rule\n"
            ),
            "{text}"
        );
        // The pending bound was hit: records waiting, and those written before their name.
        v["records_pending"] = json!(16384);
        v["records_written_early"] = json!(600);
        let text = status_summary(&v, now);
        assert!(
            text.contains(", 16384 records waiting for a name\n"),
            "{text}"
        );
        assert!(
            text.contains(", malformed records 1, records written unnamed early 600\n"),
            "{text}"
        );

        // Before the daemon's first statistics: only what it has.
        assert_eq!(
            status_summary(&json!({ "uptime_seconds": 3 }), now),
            "relaywatch: running, up 3s\n"
        );
        assert_eq!(status_summary(&Value::Null, now), "relaywatch: running\n");
        // The shape of every key wrong: nothing shown, nothing panics.
        let odd = json!({
            "version": 1, "programs_attached": "x", "blocklists": { "active": "x", "feeds": 3 },
            "sinks": [1, "x", null], "relay_discovery": { "hosts": 5 }, "store": { "error": "locked" },
            "last_alert": "yesterday", "events_lost": -1,
        });
        let text = status_summary(&odd, now);
        assert!(text.starts_with("relaywatch 1: running\n"), "{text}");
        assert!(text.contains("\nlists       none active\n"), "{text}");
        assert!(
            text.contains("\nstore       unreadable: locked\n"),
            "{text}"
        );
        assert!(text.contains("\nlast alert  yesterday\n"), "{text}");
        assert!(
            text.contains("\nrelay hosts 0 hosts discovered in base-URL variables\n"),
            "{text}"
        );
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
