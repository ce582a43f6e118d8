//! The query commands (`status`, `alerts`, `connections`, `reload`): one request to the
//! daemon's control API over its unix socket, answered as a table or as JSON.
//!
//! Every failure is one line on stderr and an exit code (documented in `--help`):
//! 1 the daemon answered with an error, 2 usage, 3 daemon unreachable, 4 permission denied.
use std::{
    io::{self, Write as _},
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header::HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use super::{
    args::{AlertsArgs, ConnectArgs, ListArgs, StatusArgs},
    render::{self, Cell},
};
use crate::{
    control::api::{self, ListKind},
    output::store::ConnectionRow,
};

/// How long to wait for the daemon to accept and to answer (follow streams excepted).
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (10000 alerts of a few KiB each fit easily).
const MAX_ANSWER: usize = 256 << 20;

enum Failure {
    /// The daemon answered with an error, or something else went wrong.
    Reply(String),
    Usage(String),
    Unreachable(String),
    Denied(String),
    /// stdout was closed (`relaywatch alerts | head`): stop quietly.
    StdoutClosed,
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::StdoutClosed => 0,
            Failure::Reply(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Denied(_) => 4,
        }
    }
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if let Failure::Reply(m)
            | Failure::Usage(m)
            | Failure::Unreachable(m)
            | Failure::Denied(m) = &f
            {
                eprintln!("relaywatch: {m}");
            }
            ExitCode::from(f.exit_code())
        }
    }
}

/// An io error's message without the "(os error N)" suffix.
fn reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn unreachable(socket: &Path, why: &str) -> Failure {
    Failure::Unreachable(format!(
        "cannot reach the daemon at {}: {why} (is relaywatch running?)",
        socket.display()
    ))
}

fn print(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Failure::StdoutClosed,
            _ => Failure::Reply(format!("writing to stdout: {}", reason(&e))),
        })
}

fn block_on<F: Future<Output = Result<(), Failure>>>(f: F) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Reply(format!("starting the async runtime: {}", reason(&e))))?;
    runtime.block_on(f)
}

/// The group the daemon gave its socket (`agent.socket_group`), for the permission message;
/// the default group's name when the socket is still root's (that group does not exist yet).
fn socket_group(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(socket)
        .ok()
        .map(|m| m.gid())
        .filter(|&gid| gid != 0)
        .and_then(api::group_name)
        .unwrap_or_else(|| api::DEFAULT_GROUP.to_owned())
}

async fn request(
    socket: &Path,
    method: Method,
    target: &str,
) -> Result<Response<Incoming>, Failure> {
    let stream = match tokio::time::timeout(TIMEOUT, UnixStream::connect(socket)).await {
        Err(_) => return Err(unreachable(socket, "no answer within 10 s")),
        Ok(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(Failure::Denied(format!(
                "permission denied connecting to {}: only root and members of group {} may query the agent",
                socket.display(),
                socket_group(socket)
            )));
        }
        Ok(Err(e)) => return Err(unreachable(socket, &reason(&e))),
        Ok(Ok(s)) => s,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(socket, &e.to_string()))?;
    tokio::spawn(connection);
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header(HOST, "relaywatch")
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Usage(format!("bad request {target}: {e}")))?;
    let response = match tokio::time::timeout(TIMEOUT, sender.send_request(req)).await {
        Err(_) => return Err(unreachable(socket, "no answer within 10 s")),
        Ok(Err(e)) => return Err(unreachable(socket, &format!("the connection failed: {e}"))),
        Ok(Ok(r)) => r,
    };
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let message = match read_json(response).await {
        Ok(v) => v
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_owned),
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    Err(match status {
        StatusCode::FORBIDDEN => Failure::Denied(format!("the daemon refused: {message}")),
        _ => Failure::Reply(format!(
            "the daemon answered {}: {message}",
            status.as_u16()
        )),
    })
}

async fn read_json(response: Response<Incoming>) -> Result<Value, Failure> {
    let body = tokio::time::timeout(
        TIMEOUT,
        Limited::new(response.into_body(), MAX_ANSWER).collect(),
    )
    .await
    .map_err(|_| Failure::Reply("the daemon's answer did not arrive within 10 s".into()))?
    .map_err(|e| Failure::Reply(format!("reading the daemon's answer: {e}")))?
    .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| Failure::Reply(format!("the daemon's answer is not JSON: {e}")))
}

/// GET or POST `target` and print the JSON object it answers.
fn show_object(
    args: &ConnectArgs,
    method: Method,
    target: &str,
    title: Option<&str>,
) -> Result<(), Failure> {
    block_on(async {
        let v = read_json(request(&args.socket, method, target).await?).await?;
        if args.json {
            let pretty = serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string());
            return print(&format!("{pretty}\n"));
        }
        let mut text = title.map(|t| format!("{t}\n")).unwrap_or_default();
        text.push_str(&render::key_values(&v));
        print(&text)
    })
}

/// `relaywatch status`: a summary, every field with `--raw`, the object with `--json`.
pub fn status(args: StatusArgs) -> ExitCode {
    // `--json` and `--raw` both print the object as the daemon sent it (as JSON, as lines).
    if args.connect.json || args.raw {
        return finish(show_object(&args.connect, Method::GET, "/v1/status", None));
    }
    finish(block_on(async {
        let v = read_json(request(&args.connect.socket, Method::GET, "/v1/status").await?).await?;
        print(&render::status_summary(&v, SystemTime::now()))
    }))
}

/// `relaywatch blocklist list`: the active lists from the daemon's status, as a table.
pub fn blocklist_list(args: ConnectArgs) -> ExitCode {
    finish(block_on(async {
        let status = read_json(request(&args.socket, Method::GET, "/v1/status").await?).await?;
        let lists = &status["blocklists"];
        if args.json {
            let v = serde_json::json!({ "blocklists": lists, "relay_discovery": status["relay_discovery"] });
            return print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
        print(&render::blocklists(lists, &status["relay_discovery"]))
    }))
}

/// `relaywatch relays`: the relays learned from the requests sent to them.
pub fn relays(args: ConnectArgs) -> ExitCode {
    finish(block_on(async {
        let v = read_json(request(&args.socket, Method::GET, "/v1/relays").await?).await?;
        let relays = v["relays"].as_array().cloned().unwrap_or_default();
        if args.json {
            let mut out = String::new();
            for r in &relays {
                out.push_str(&r.to_string());
                out.push('\n');
            }
            return print(&out);
        }
        print(&render::relays(&relays))
    }))
}

pub fn reload(args: ConnectArgs) -> ExitCode {
    finish(show_object(
        &args,
        Method::POST,
        "/v1/reload",
        Some("reloaded"),
    ))
}

pub fn alerts(args: AlertsArgs) -> ExitCode {
    finish(list(ListKind::Alerts, &args.list, args.category.as_deref()))
}

pub fn connections(args: ListArgs) -> ExitCode {
    finish(list(ListKind::Connections, &args, None))
}

fn cells(kind: ListKind, item: &Value, now: SystemTime) -> Result<Vec<Cell>, Failure> {
    Ok(match kind {
        ListKind::Alerts => render::alert_cells(item, now),
        ListKind::Connections => {
            let row: ConnectionRow = serde_json::from_value(item.clone()).map_err(|e| {
                Failure::Reply(format!(
                    "the daemon sent a connection row this CLI cannot read: {e}"
                ))
            })?;
            render::connection_cells(&row, now)
        }
    })
}

fn columns(kind: ListKind) -> (&'static [render::Column], &'static [usize]) {
    match kind {
        ListKind::Alerts => (render::ALERT_COLUMNS, render::ALERT_FOLLOW_WIDTHS),
        ListKind::Connections => (render::CONNECTION_COLUMNS, render::CONNECTION_FOLLOW_WIDTHS),
    }
}

fn list(kind: ListKind, args: &ListArgs, category: Option<&str>) -> Result<(), Failure> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            pairs.push((name.to_owned(), v));
        }
    };
    add("since", args.since.clone());
    add("until", args.until.clone());
    add("category", category.map(str::to_owned));
    add("process", args.process.clone());
    add("pid", args.pid.map(|p| p.to_string()));
    add("user", args.user.clone());
    add("domain", args.domain.clone());
    add("limit", args.limit.map(|n| n.to_string()));
    add("follow", args.follow.then(|| "1".to_owned()));
    // The daemon checks again; checking here makes a bad flag a usage error (exit 2).
    api::parse_list_params(kind, &pairs, SystemTime::now())
        .map_err(|e| Failure::Usage(format!("--{e}")))?;
    let target = format!("{}?{}", kind.path(), api::encode_query(&pairs));
    let json = args.connect.json;
    let color = !json && render::use_color();
    block_on(async move {
        let response = request(&args.connect.socket, Method::GET, &target).await?;
        if args.follow {
            return follow(kind, response, json, color).await;
        }
        let v = read_json(response).await?;
        let items = v
            .get(kind.name())
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Failure::Reply(format!("the daemon's answer has no '{}' list", kind.name()))
            })?;
        if json {
            return print(&items.iter().map(|i| format!("{i}\n")).collect::<String>());
        }
        if items.is_empty() {
            return print(&format!("no {} match\n", kind.name()));
        }
        let now = SystemTime::now();
        let rows = match kind {
            // A flow end joins its alert's row.
            ListKind::Alerts => render::alert_rows(items, now),
            ListKind::Connections => items
                .iter()
                .map(|i| cells(kind, i, now))
                .collect::<Result<Vec<_>, _>>()?,
        };
        print(&render::table(columns(kind).0, &rows, color))
    })
}

/// Print a JSON-lines stream as it arrives, until the daemon ends it.
async fn follow(
    kind: ListKind,
    response: Response<Incoming>,
    json: bool,
    color: bool,
) -> Result<(), Failure> {
    let (cols, widths) = columns(kind);
    if !json {
        print(&format!("{}\n", render::header(cols, widths, color)))?;
    }
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Failure::Unreachable(format!("the stream from the daemon broke: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue; // heartbeat
            }
            let item: Value = serde_json::from_slice(line).map_err(|e| {
                Failure::Reply(format!("the daemon sent a line that is not JSON: {e}"))
            })?;
            if let Some(warning) = item.get("warning").and_then(Value::as_str) {
                eprintln!("relaywatch: {warning}");
            } else if json {
                print(&format!("{item}\n"))?;
            } else {
                let row = cells(kind, &item, SystemTime::now())?;
                print(&format!("{}\n", render::line(cols, widths, &row, color)))?;
            }
        }
    }
    Err(Failure::Reply(
        "the daemon ended the stream (is it shutting down?)".into(),
    ))
}
