//! The local control API: HTTP/1.1 + JSON over a unix socket (default
//! /run/relaywatch/relaywatch.sock), used by the `relaywatch` query commands.
//!
//! Who may connect: the socket file is mode 0660, owned by root:relaywatch (the group is
//! `agent.socket_group`) when that group exists; in addition every connection's peer
//! credentials (SO_PEERCRED) are checked, so a loosened file mode does not open the API: uid 0,
//! or a process whose primary group or supplementary groups (/proc/PID/status `Groups:`)
//! include the group, is served; anyone else gets 403 on every request and the attempt is
//! logged with uid and pid. The socket is bound (`listen`) before the daemon reports that it
//! is up, and served (`Listener::serve`) from its event loop.
//!
//! HTTP is hyper's (http1 server): a hand-written parser would have to get request smuggling,
//! chunked encoding and pipelining right for little gain. Its limits: 16 KiB for the request
//! head (larger: 431/414), 10 s to send it, 64 KiB for a declared request body (larger: 413),
//! 64 connections at once (more are closed on accept). Parse errors get hyper's 400.
//!
//! Endpoints (all JSON; errors are `{"error": "..."}`):
//! - `GET /v1/status`: the daemon's status, plus `store` statistics.
//! - `GET /v1/alerts?since=&until=&category=&process=&pid=&user=&domain=&limit=&follow=`
//! - `GET /v1/connections?` the same parameters except `category`.
//!   Lists answer `{"alerts": [...]}` / `{"connections": [...]}`: the most recent `limit`
//!   items (default 100, at most 10000), oldest first. With `follow=1` the answer is a chunked
//!   stream of JSON lines instead: those items, then every new matching item as it is
//!   committed, until the client disconnects. Empty lines are heartbeats; a line
//!   `{"warning": "..."}` says items were skipped because the client read too slowly.
//! - `POST /v1/reload`: the daemon's reload hook; 200 with its result or 500 with its error.
use std::{
    collections::HashSet,
    convert::Infallible,
    ffi::CString,
    fmt, fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Frame, Incoming, SizeHint},
    header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::{
    net::{UnixListener, UnixStream, unix::UCred},
    sync::{broadcast, mpsc},
};

use super::accept;
use crate::output::store::{self, ConnectionRow, Query, StoreHandle};

pub const DEFAULT_SOCKET: &str = "/run/relaywatch/relaywatch.sock";
pub const DEFAULT_GROUP: &str = "relaywatch";
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;
const MAX_REQUEST_BODY: u64 = 64 * 1024;
const MAX_REQUEST_HEAD: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 64;
/// A follow stream writes an empty line this often, so a vanished client is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What the API needs from the running daemon.
pub trait Daemon: Send + Sync + 'static {
    fn status(&self) -> serde_json::Value;
    fn reload(&self) -> Result<serde_json::Value, String>;
    /// New alerts, as stored (`StoreHandle::subscribe_alerts` is the natural source).
    fn subscribe_alerts(&self) -> tokio::sync::broadcast::Receiver<serde_json::Value>;
    /// Updated connection rows as `ConnectionRow` JSON (`StoreHandle::subscribe_connections`).
    fn subscribe_connections(&self) -> tokio::sync::broadcast::Receiver<serde_json::Value>;
}

/// The two list endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Alerts,
    Connections,
}

impl ListKind {
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Alerts => "alerts",
            ListKind::Connections => "connections",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            ListKind::Alerts => "/v1/alerts",
            ListKind::Connections => "/v1/connections",
        }
    }

    fn matches(self, query: &Query, item: &Value) -> bool {
        match self {
            ListKind::Alerts => store::alert_matches(query, item),
            ListKind::Connections => serde_json::from_value::<ConnectionRow>(item.clone())
                .is_ok_and(|row| query.matches(&row.subject())),
        }
    }
}

/// A query parameter that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub name: String,
    pub reason: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

fn param_error(name: &str, reason: impl Into<String>) -> ParamError {
    ParamError {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// A parsed list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    pub query: Query,
    pub follow: bool,
}

const LIST_PARAMS: &[&str] = &[
    "since", "until", "category", "process", "pid", "user", "domain", "limit", "follow",
];

/// `30s`, `15m`, `1h`, `2d` ago, or an RFC 3339 time. Empty means unset.
fn parse_when(name: &str, value: &str, now: SystemTime) -> Result<Option<SystemTime>, ParamError> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(Some(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)));
    }
    humantime::parse_rfc3339_weak(value).map(Some).map_err(|_| {
        param_error(
            name,
            format!("'{value}' is neither a duration ago (30s, 15m, 1h, 2d) nor an RFC 3339 time (2026-01-02T03:04:05Z)"),
        )
    })
}

/// Validate list parameters (already percent-decoded). Shared by the server and the CLI, so
/// the CLI reports a bad flag as a usage error before asking the daemon.
pub fn parse_list_params(
    kind: ListKind,
    pairs: &[(String, String)],
    now: SystemTime,
) -> Result<ListRequest, ParamError> {
    let mut query = Query::default();
    let mut follow = false;
    let mut seen = HashSet::new();
    for (name, value) in pairs {
        let name = name.as_str();
        if !LIST_PARAMS.contains(&name) {
            return Err(param_error(
                name,
                format!("unknown parameter (known: {})", LIST_PARAMS.join(", ")),
            ));
        }
        if !seen.insert(name) {
            return Err(param_error(name, "given more than once"));
        }
        let text = || (!value.is_empty()).then(|| value.clone());
        match name {
            "since" => query.since = parse_when(name, value, now)?,
            "until" => query.until = parse_when(name, value, now)?,
            "category" if kind == ListKind::Connections => {
                return Err(param_error(
                    name,
                    "connections have no category (it filters alerts)",
                ));
            }
            "category" => query.category = text(),
            "process" => query.process = text(),
            "user" => query.user = text(),
            "domain" => query.domain = text(),
            "pid" if value.is_empty() => {}
            "pid" => {
                query.pid =
                    Some(value.parse().map_err(|_| {
                        param_error(name, format!("'{value}' is not a process id"))
                    })?);
            }
            "limit" if value.is_empty() => {}
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => query.limit = Some(n),
                _ => {
                    return Err(param_error(
                        name,
                        format!("'{value}' is not a number from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
            "follow" => {
                follow = match value.as_str() {
                    "1" | "true" | "yes" => true,
                    "" | "0" | "false" | "no" => false,
                    _ => return Err(param_error(name, format!("'{value}' is not 1 or 0"))),
                }
            }
            _ => unreachable!("every name in LIST_PARAMS is handled"),
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since > until
    {
        return Err(param_error("until", "is before since"));
    }
    Ok(ListRequest { query, follow })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => out.push(hex(bytes.next()?)? << 4 | hex(bytes.next()?)?),
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// `a=1&b=x%20y` to pairs.
pub fn decode_query(raw: &str) -> Result<Vec<(String, String)>, ParamError> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s| {
                percent_decode(s)
                    .ok_or_else(|| param_error(name, "bad percent-encoding or not UTF-8"))
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

pub fn encode_query(pairs: &[(String, String)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Response bodies: a whole JSON document, or a stream of JSON lines.
pub enum ApiBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ApiBody::Stream(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ApiBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ApiBody::Stream(_) => SizeHint::default(),
        }
    }
}

fn json_line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn json_response(status: StatusCode, v: &Value) -> Response<ApiBody> {
    let mut r = Response::new(ApiBody::Full(Some(json_line(v))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(status: StatusCode, message: impl fmt::Display) -> Response<ApiBody> {
    json_response(status, &json!({ "error": message.to_string() }))
}

/// The gid of group `name`, if it exists.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut size = 4096;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: an all-zero `group` is a valid out-parameter; getgrnam_r fills it with
        // pointers into `buf`, which outlives the call; we only read gr_gid.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        return (rc == 0 && !result.is_null()).then_some(grp.gr_gid);
    }
}

/// The name of group `gid`, if it has one.
pub fn group_name(gid: u32) -> Option<String> {
    let mut size = 4096;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: as in `group_id`: getgrgid_r fills `grp` with pointers into `buf`, which
        // outlives the call; gr_name is read (copied) before `buf` goes.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return None;
        }
        // SAFETY: gr_name points to a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(grp.gr_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// The gids on the `Groups:` line of /proc/PID/status.
pub fn parse_status_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

/// Root, or a member of `gid` by primary or supplementary group.
fn authorised(cred: &UCred, gid: Option<u32>) -> bool {
    if cred.uid() == 0 {
        return true;
    }
    let Some(gid) = gid else { return false };
    cred.gid() == gid
        || cred
            .pid()
            .and_then(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| parse_status_groups(&s))
            .is_some_and(|groups| groups.contains(&gid))
}

/// The bound socket file; removed when dropped, unless something else replaced it meanwhile.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn bind(socket: &Path, gid: Option<u32>) -> anyhow::Result<(UnixListener, SocketFile)> {
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::dirs::ensure_dir(parent, 0o755, "the socket directory")?;
    }
    match fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                bail!(
                    "{} is in use: another relaywatch is already serving there",
                    socket.display()
                );
            }
            fs::remove_file(socket)
                .with_context(|| format!("removing the stale socket {}", socket.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket: refusing to replace it",
            socket.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", socket.display())),
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("binding the API socket {}", socket.display()))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", socket.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(socket, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", socket.display()))?;
    }
    let m =
        fs::symlink_metadata(socket).with_context(|| format!("checking {}", socket.display()))?;
    Ok((
        listener,
        SocketFile {
            path: socket.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
        },
    ))
}

struct Server {
    daemon: Arc<dyn Daemon>,
    store: StoreHandle,
    group: String,
    gid: Option<u32>,
}

/// The bound API socket (see `listen`); the socket file is removed when it is dropped.
pub struct Listener {
    listener: UnixListener,
    socket_file: SocketFile,
    group: String,
    gid: Option<u32>,
}

/// Bind the API socket at `socket` (mode 0660, group `group` when it exists). Clients can
/// connect as soon as this returns, so the daemon binds before it says it is up; they are
/// answered once `Listener::serve` runs. Only root and members of `group` are served.
pub fn listen(socket: &Path, group: &str) -> anyhow::Result<Listener> {
    let gid = group_id(group);
    let (listener, socket_file) = bind(socket, gid)?;
    match gid {
        Some(gid) => log::info!(
            "api: listening on {} (root and group {group}, gid {gid})",
            socket.display()
        ),
        None => log::warn!(
            "api: listening on {}; group {group} does not exist, so only root may connect",
            socket.display()
        ),
    }
    Ok(Listener {
        listener,
        socket_file,
        group: group.to_owned(),
        gid,
    })
}

impl Listener {
    /// Serve the API until the returned future is dropped (the socket file is removed then)
    /// or accepting fails for good.
    pub async fn serve(self, daemon: Arc<dyn Daemon>, store: StoreHandle) -> anyhow::Result<()> {
        let Listener {
            listener,
            socket_file: _socket_file,
            group,
            gid,
        } = self;
        let server = Arc::new(Server {
            daemon,
            store,
            group,
            gid,
        });
        let limits = accept::Limits {
            name: "api",
            max_connections: MAX_CONNECTIONS,
            retry_after: Duration::from_millis(200),
            full_log_level: log::Level::Warn,
        };
        match accept::serve(listener, limits, |stream| server.clone().connection(stream)).await {}
    }
}

impl Server {
    async fn connection(self: Arc<Self>, stream: UnixStream) {
        let allowed = match stream.peer_cred() {
            Ok(cred) if authorised(&cred, self.gid) => true,
            Ok(cred) => {
                let pid = cred.pid().map_or_else(|| "?".to_owned(), |p| p.to_string());
                let exe = cred
                    .pid()
                    .and_then(|p| fs::read_link(format!("/proc/{p}/exe")).ok());
                log::warn!(
                    "api: refused uid {} gid {} pid {pid} ({}): only root and members of group {} may use the API",
                    cred.uid(),
                    cred.gid(),
                    exe.as_deref()
                        .map_or_else(|| "?".into(), Path::to_string_lossy),
                    self.group
                );
                false
            }
            Err(e) => {
                log::warn!("api: refused a connection whose credentials cannot be read: {e}");
                false
            }
        };
        let server = self.clone();
        let service = service_fn(move |req| {
            let server = server.clone();
            async move {
                Ok::<_, Infallible>(if allowed {
                    server.route(req).await
                } else {
                    let msg = format!(
                        "permission denied: only root and members of group {} may use this API",
                        server.group
                    );
                    error_response(StatusCode::FORBIDDEN, msg)
                })
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(MAX_REQUEST_HEAD)
            .keep_alive(allowed)
            .serve_connection(TokioIo::new(stream), service);
        if let Err(e) = conn.await {
            log::debug!("api: connection ended: {e}");
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Response<ApiBody> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(n) = declared.filter(|&n| n > MAX_REQUEST_BODY) {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body of {n} bytes is over the limit of {MAX_REQUEST_BODY}"),
            );
        }
        let path = req.uri().path();
        let (allowed, list) = match path {
            "/v1/status" => (Method::GET, None),
            "/v1/alerts" => (Method::GET, Some(ListKind::Alerts)),
            "/v1/connections" => (Method::GET, Some(ListKind::Connections)),
            "/v1/reload" => (Method::POST, None),
            "/v1/relays" => (Method::GET, None),
            _ => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no such endpoint: {path} (there are /v1/status, /v1/alerts, /v1/connections, /v1/relays, /v1/reload)"
                    ),
                );
            }
        };
        if req.method() != allowed {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} takes {allowed}, not {}", req.method()),
            );
            r.headers_mut().insert(
                ALLOW,
                HeaderValue::from_str(allowed.as_str())
                    .expect("a method name is a valid header value"),
            );
            return r;
        }
        match (list, path) {
            (Some(kind), _) => self.list(kind, req.uri().query().unwrap_or("")).await,
            (None, "/v1/status") => self.status().await,
            (None, "/v1/relays") => self.relays().await,
            (None, _) => self.reload().await,
        }
    }

    /// The relays learned from the requests sent to them (the store's copy), most recently
    /// seen first.
    async fn relays(&self) -> Response<ApiBody> {
        match self.store.relays().await {
            Ok(relays) => json_response(StatusCode::OK, &json!({ "relays": relays })),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the known relays: {e:#}"),
            ),
        }
    }

    async fn status(&self) -> Response<ApiBody> {
        let mut status = self.daemon.status();
        let stats = match self.store.stats().await {
            Ok(s) => json!(s),
            Err(e) => json!({ "error": format!("{e:#}") }),
        };
        if let Some(object) = status.as_object_mut() {
            object.entry("store").or_insert(stats);
        }
        json_response(StatusCode::OK, &status)
    }

    async fn reload(&self) -> Response<ApiBody> {
        let daemon = self.daemon.clone();
        match tokio::task::spawn_blocking(move || daemon.reload()).await {
            Ok(Ok(result)) => json_response(StatusCode::OK, &result),
            Ok(Err(e)) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload failed: {e}"),
            ),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload failed: the reload hook panicked ({e})"),
            ),
        }
    }

    async fn list(&self, kind: ListKind, raw_query: &str) -> Response<ApiBody> {
        let request = decode_query(raw_query)
            .and_then(|pairs| parse_list_params(kind, &pairs, SystemTime::now()));
        let ListRequest { mut query, follow } = match request {
            Ok(r) => r,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
        };
        query.limit = Some(query.limit.unwrap_or(DEFAULT_LIMIT));
        // Subscribe before reading history, so nothing committed in between is missed.
        let live = follow.then(|| match kind {
            ListKind::Alerts => self.daemon.subscribe_alerts(),
            ListKind::Connections => self.daemon.subscribe_connections(),
        });
        let history = match kind {
            ListKind::Alerts => self.store.alerts(query.clone()).await,
            ListKind::Connections => self.store.connections(query.clone()).await.map(|rows| {
                rows.iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect()
            }),
        };
        let history = match history {
            Ok(h) => h,
            Err(e) => {
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the store: {e:#}"),
                );
            }
        };
        match live {
            None => json_response(StatusCode::OK, &json!({ kind.name(): history })),
            Some(live) => follow_response(kind, query, history, live),
        }
    }
}

/// Stream `history`, then every new item of `live` that matches `query`, as JSON lines.
fn follow_response(
    kind: ListKind,
    query: Query,
    history: Vec<Value>,
    mut live: broadcast::Receiver<Value>,
) -> Response<ApiBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        // Items committed between subscribing and reading history arrive twice; they come
        // first on `live`, in commit order, so skip them until the first new one.
        let mut already_sent: HashSet<Bytes> = HashSet::new();
        for item in &history {
            let line = json_line(item);
            already_sent.insert(line.clone());
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            let line = tokio::select! {
                () = tx.closed() => return,
                _ = heartbeat.tick() => Bytes::from_static(b"\n"),
                item = live.recv() => match item {
                    Ok(item) => {
                        if !kind.matches(&query, &item) {
                            continue;
                        }
                        let line = json_line(&item);
                        if !already_sent.is_empty() && already_sent.remove(&line) {
                            continue;
                        }
                        already_sent.clear();
                        line
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        json_line(&json!({ "warning": format!("{n} {} skipped: this client read too slowly", kind.name()) }))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(ApiBody::Stream(rx));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn list_params_parse() {
        let now = SystemTime::now();
        let r = parse_list_params(
            ListKind::Alerts,
            &pairs(&[
                ("since", "1h"),
                ("until", ""),
                ("category", "ai_relay"),
                ("pid", "42"),
                ("limit", "5"),
                ("follow", "1"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(r.query.since, Some(now - Duration::from_secs(3600)));
        assert_eq!(r.query.until, None);
        assert_eq!(r.query.category.as_deref(), Some("ai_relay"));
        assert_eq!(
            (r.query.pid, r.query.limit, r.follow),
            (Some(42), Some(5), true)
        );
        let t = parse_list_params(
            ListKind::Alerts,
            &pairs(&[("since", "2026-01-02T03:04:05Z")]),
            now,
        )
        .unwrap();
        assert_eq!(
            crate::clock::rfc3339(t.query.since.unwrap()),
            "2026-01-02T03:04:05.000000Z"
        );
    }

    #[test]
    fn bad_list_params_name_the_parameter() {
        let err = |kind, list: &[(&str, &str)]| {
            parse_list_params(kind, &pairs(list), SystemTime::now()).unwrap_err()
        };
        assert_eq!(
            err(ListKind::Alerts, &[("since", "yesterday")]).name,
            "since"
        );
        assert_eq!(err(ListKind::Alerts, &[("pid", "-1")]).name, "pid");
        assert_eq!(err(ListKind::Alerts, &[("limit", "0")]).name, "limit");
        assert_eq!(err(ListKind::Alerts, &[("limit", "10001")]).name, "limit");
        assert_eq!(err(ListKind::Alerts, &[("follow", "maybe")]).name, "follow");
        assert_eq!(
            err(ListKind::Alerts, &[("colour", "1")])
                .reason
                .split(' ')
                .next(),
            Some("unknown")
        );
        assert_eq!(
            err(ListKind::Alerts, &[("pid", "1"), ("pid", "2")]).reason,
            "given more than once"
        );
        assert_eq!(
            err(ListKind::Alerts, &[("since", "1h"), ("until", "2h")]).name,
            "until"
        );
        assert_eq!(
            err(ListKind::Connections, &[("category", "x")]).name,
            "category"
        );
    }

    #[test]
    fn query_strings_round_trip() {
        let p = pairs(&[
            ("domain", "api.openai.com"),
            ("process", "/usr/bin/my tool&x=1"),
            ("since", "2026-01-02T03:04:05+08:00"),
        ]);
        let encoded = encode_query(&p);
        assert!(
            !encoded.contains(' ') && encoded.matches('&').count() == 2,
            "{encoded}"
        );
        assert_eq!(decode_query(&encoded).unwrap(), p);
        assert_eq!(
            decode_query("a=b+c&flag").unwrap(),
            pairs(&[("a", "b c"), ("flag", "")])
        );
        assert_eq!(decode_query("x=%zz").unwrap_err().name, "x");
        assert_eq!(decode_query("x=%ff").unwrap_err().name, "x", "not UTF-8");
        assert_eq!(decode_query("x=%4").unwrap_err().name, "x");
    }

    #[test]
    fn groups_line() {
        let status = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 998 \nNgid:\t0\n";
        assert_eq!(parse_status_groups(status), Some(vec![4, 27, 998]));
        assert_eq!(parse_status_groups("Groups:\t\n"), Some(vec![]));
        assert_eq!(parse_status_groups("Name:\tx\n"), None);
        assert_eq!(parse_status_groups("Groups:\tx\n"), None);
    }

    #[test]
    fn root_group_exists() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-relaywatch-test"), None);
        assert_eq!(group_id("nul\0byte"), None);
        assert_eq!(group_name(0).as_deref(), Some("root"));
    }
}
