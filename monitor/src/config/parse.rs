//! Reading a configuration file in two stages: TOML text to the file's structs (stops at the
//! first problem, with its line and column), then ranges and per-sink rules, collecting every
//! problem with its key path.
use super::*;

/// Stage 1: text to structs. Stops at the first problem (serde cannot go on past it).
pub(super) fn parse(text: &str) -> Result<FileConfig, Problem> {
    let at = |span: Option<std::ops::Range<usize>>| span.map(|s| line_col(text, s.start));
    let de = toml::Deserializer::parse(text).map_err(|e| Problem {
        position: at(e.span()),
        message: e.message().trim().to_owned(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        Problem {
            position: at(inner.span()),
            message: describe(&path, inner.message().trim()),
        }
    })
}

/// Phrase a serde message with its key path: unknown fields become `unknown key "a.b"`.
fn describe(path: &str, message: &str) -> String {
    if let Some((field, expected)) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        // serde_path_to_error's path already ends with the unknown key.
        let full = if path == "." || path.is_empty() {
            field
        } else {
            path
        };
        let expected = expected.trim_start_matches(',').trim();
        return if expected.is_empty() {
            format!("unknown key \"{full}\"")
        } else {
            format!("unknown key \"{full}\" ({expected})")
        };
    }
    if path == "." || path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Stage 2: ranges and sink rules; every problem is collected.
pub(super) fn validate(raw: FileConfig) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |message: String| {
        problems.push(Problem {
            position: None,
            message,
        })
    };

    let mut in_range = |key: &str, value: u64, (min, max): (u64, u64)| {
        if value < min {
            problem(format!("{key}: {value} is below the minimum {min}"));
        } else if value > max {
            problem(format!("{key}: {value} is above the maximum {max}"));
        }
    };
    in_range(
        "agent.udp_window_ms",
        raw.agent.udp_window_ms,
        UDP_WINDOW_MS,
    );
    in_range("agent.name_wait_ms", raw.agent.name_wait_ms, NAME_WAIT_MS);
    in_range(
        "blocklists.resolve_interval_s",
        raw.blocklists.resolve_interval_s,
        (1, u64::MAX),
    );
    in_range(
        "store.retention_days",
        raw.store.retention_days,
        (1, u64::MAX),
    );
    in_range("store.max_bytes", raw.store.max_bytes, (MIB, u64::MAX));

    let mut absolute = |key: &str, path: &Path| {
        if !path.is_absolute() {
            problem(format!(
                "{key}: \"{}\" is not an absolute path",
                path.display()
            ));
        }
    };
    absolute("agent.state_dir", &raw.agent.state_dir);
    absolute("agent.socket", &raw.agent.socket);
    for (i, f) in raw.blocklists.files.iter().enumerate() {
        absolute(&format!("blocklists.files[{i}]"), Path::new(f));
    }
    if raw.agent.socket_group.trim().is_empty() {
        problem("agent.socket_group: empty".into());
    }
    for (i, v) in raw.discovery.variables.iter().enumerate() {
        if let Err(why) = crate::intel::discovery::check_variable_name(v) {
            problem(format!("discovery.variables[{i}]: {why}"));
        }
    }
    for why in crate::intel::relays::RelayAllow::check(&raw.discovery) {
        problem(format!("discovery.{why}"));
    }

    let mut blocklists = raw.blocklists;
    for (i, feed) in blocklists.feeds.iter_mut().enumerate() {
        problems.extend(check_feed(feed, &format!("blocklists.feed[{i}]")));
    }
    for (i, feed) in blocklists.feeds.iter().enumerate() {
        if blocklists.feeds[..i].iter().any(|f| f.url == feed.url) {
            problems.push(Problem {
                position: None,
                message: format!(
                    "blocklists.feed[{i}].url: \"{}\" is already a feed",
                    redacted_url(&feed.url)
                ),
            });
        }
    }

    let mut sinks = Vec::new();
    for (i, s) in raw.sinks.into_iter().enumerate() {
        match sink(s, &format!("sink[{i}]")) {
            Ok(s) => sinks.push(s),
            Err(mut p) => problems.append(&mut p),
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Config {
        agent: raw.agent,
        output: raw.output,
        sinks,
        blocklists,
        alerts: raw.alerts,
        store: raw.store,
        metrics: raw.metrics,
        discovery: raw.discovery,
    })
}

/// Which optional keys each sink kind accepts, and which it requires.
fn sink(raw: RawSink, at: &str) -> Result<Sink, Vec<Problem>> {
    let kind = raw.kind.name();
    let mut problems = Vec::new();
    let mut problem = |key: &str, reason: String| {
        problems.push(Problem {
            position: None,
            message: format!("{at}.{key}: {reason}"),
        })
    };

    let (required, allowed): (&[&str], &[&str]) = match raw.kind {
        SinkKind::Syslog => (&["url"], &["queue_max_bytes", "ca_file"]),
        SinkKind::File => (&["path"], &["max_bytes", "max_files"]),
        SinkKind::SplunkHec => (
            &["url", "token_file"],
            &["index", "queue_max_bytes", "ca_file"],
        ),
        SinkKind::Elasticsearch => (
            &["url"],
            &["token_file", "index", "queue_max_bytes", "ca_file"],
        ),
    };
    let present = [
        ("url", raw.url.is_some()),
        ("path", raw.path.is_some()),
        ("token_file", raw.token_file.is_some()),
        ("max_bytes", raw.max_bytes.is_some()),
        ("max_files", raw.max_files.is_some()),
        ("queue_max_bytes", raw.queue_max_bytes.is_some()),
        ("index", raw.index.is_some()),
        ("ca_file", raw.ca_file.is_some()),
    ];
    for (key, is_set) in present {
        if !is_set && required.contains(&key) {
            problem(key, format!("missing (required for kind \"{kind}\")"));
        } else if is_set && !required.contains(&key) && !allowed.contains(&key) {
            problem(key, format!("not allowed for kind \"{kind}\""));
        }
    }

    if let Some(url) = &raw.url {
        let schemes: &[&str] = match raw.kind {
            SinkKind::Syslog => &["udp", "tcp", "tls"],
            _ => &["http", "https"],
        };
        if let Err(reason) = check_url(url, schemes, raw.kind == SinkKind::Syslog) {
            problem("url", reason);
        }
    }
    if raw.ca_file.is_some()
        && raw
            .url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("tls://") || u.starts_with("https://")))
    {
        problem("ca_file", "only used with tls:// or https:// URLs".into());
    }
    for (key, path) in [
        ("path", &raw.path),
        ("token_file", &raw.token_file),
        ("ca_file", &raw.ca_file),
    ] {
        if let Some(p) = path.as_ref().filter(|p| !p.is_absolute()) {
            problem(key, format!("\"{}\" is not an absolute path", p.display()));
        }
    }
    for (key, value) in [
        ("max_bytes", raw.max_bytes),
        ("queue_max_bytes", raw.queue_max_bytes),
        ("max_files", raw.max_files.map(u64::from)),
    ] {
        if value == Some(0) {
            problem(key, "must be greater than 0".into());
        }
    }
    if raw.index.as_deref().is_some_and(|i| i.trim().is_empty()) {
        problem("index", "empty".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let queue_max_bytes = raw.queue_max_bytes.unwrap_or(SINK_QUEUE_MAX_BYTES);
    // The checks above guarantee the required keys; `unwrap_or_default` only keeps this total.
    Ok(match raw.kind {
        SinkKind::Syslog => Sink::Syslog {
            url: raw.url.unwrap_or_default(),
            ca_file: raw.ca_file,
            queue_max_bytes,
        },
        SinkKind::File => Sink::File {
            path: raw.path.unwrap_or_default(),
            max_bytes: raw.max_bytes.unwrap_or(FILE_SINK_MAX_BYTES),
            max_files: raw.max_files.unwrap_or(FILE_SINK_MAX_FILES),
        },
        SinkKind::SplunkHec => Sink::SplunkHec {
            url: raw.url.unwrap_or_default(),
            token_file: raw.token_file.unwrap_or_default(),
            index: raw.index,
            ca_file: raw.ca_file,
            queue_max_bytes,
        },
        SinkKind::Elasticsearch => Sink::Elasticsearch {
            url: raw.url.unwrap_or_default(),
            token_file: raw.token_file,
            index: raw.index.unwrap_or_else(|| ELASTICSEARCH_INDEX.into()),
            ca_file: raw.ca_file,
            queue_max_bytes,
        },
    })
}

/// The rules of one `[[blocklists.feed]]`; the pin is put in lower case.
fn check_feed(feed: &mut Feed, at: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, reason: String| {
        problems.push(Problem {
            position: None,
            message: format!("{at}.{key}: {reason}"),
        })
    };
    if let Err(reason) = check_url(&feed.url, &["https"], false) {
        problem("url", reason);
    }
    if let Some(pin) = &mut feed.sha256 {
        if pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()) {
            pin.make_ascii_lowercase();
        } else {
            problem(
                "sha256",
                format!("\"{pin}\" is not a SHA-256 digest (64 hex digits)"),
            );
        }
    }
    for (key, value, (min, max)) in [
        ("interval_s", feed.interval_s, FEED_INTERVAL_S),
        ("max_bytes", feed.max_bytes, FEED_MAX_BYTES),
        ("timeout_s", feed.timeout_s, FEED_TIMEOUT_S),
    ] {
        if !(min..=max).contains(&value) {
            problem(key, format!("{value} is outside {min} to {max}"));
        }
    }
    if let Some(p) = feed.ca_file.as_ref().filter(|p| !p.is_absolute()) {
        problem(
            "ca_file",
            format!("\"{}\" is not an absolute path", p.display()),
        );
    }
    problems
}

/// `SCHEME://HOST[:PORT][/PATH]`; syslog URLs take no path. Hosts may be names, IPv4 or [IPv6].
fn check_url(url: &str, schemes: &[&str], no_path: bool) -> Result<(), String> {
    // Errors show the URL without what may be a credential (user info, query, fragment).
    let shown = redacted_url(url);
    let expected = || {
        schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "\"{shown}\" is not a URL (expected {})",
            expected()
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "\"{shown}\": scheme \"{scheme}\" is not supported here (expected {})",
            expected()
        ));
    }
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if no_path && !path.is_empty() {
        return Err(format!("\"{shown}\": a {scheme}:// URL takes no path"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, tail)) if h.parse::<std::net::Ipv6Addr>().is_ok() => {
                (h, tail.strip_prefix(':'))
            }
            _ => return Err(format!("\"{shown}\": bad [IPv6] host")),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() || host.contains(['@', ' ', '/', '?', '#']) {
        return Err(format!("\"{shown}\": missing or bad host"));
    }
    if let Some(p) = port.filter(|p| p.parse::<u16>().ok().filter(|&p| p != 0).is_none()) {
        return Err(format!("\"{shown}\": bad port \"{p}\""));
    }
    Ok(())
}

/// `url` with user info replaced by `…@` and any query or fragment by `?…`: safe to show in
/// errors, logs and status.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let cut = rest.find(['?', '#']);
    let (before, hidden) = match cut {
        Some(i) => (&rest[..i], true),
        None => (rest, false),
    };
    let (authority, path) = before
        .split_once('/')
        .map_or((before, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_owned(),
    };
    let mut out = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    out.push_str(&authority);
    if let Some(p) = path {
        out.push('/');
        out.push_str(p);
    }
    if hidden {
        out.push_str("?…");
    }
    out
}
