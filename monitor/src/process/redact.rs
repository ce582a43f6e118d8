//! Keeping secrets out of records: command-line arguments are redacted before they are written.
//!
//! Command lines are process context a security team needs, but they often carry credentials:
//! `curl -H "Authorization: Bearer sk-..."`, `--api-key sk-...`, `https://host/?key=AIza...`.
//! Anything that looks like one is replaced by `[REDACTED]`, keeping the shape (header name,
//! flag, parameter name) so the record still says what was passed:
//! - header-style arguments whose name is a credential header (Authorization, Proxy-Authorization,
//!   X-Api-Key, Api-Key, Cookie, ...): the value;
//! - `--flag=value` and `--flag value` where the flag names a credential (api-key, token,
//!   secret, password, auth...): the value;
//! - `NAME=value` where NAME names a credential (OPENAI_API_KEY=..., token=...), also inside URL
//!   query strings: the value;
//! - well-known key formats anywhere in an argument (sk-..., sk-ant-..., AIza..., xai-...,
//!   ghp_..., Bearer tokens, JWTs): the key.

pub const REDACTED: &str = "[REDACTED]";

const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "x-auth-token",
];

/// Does a flag, parameter or variable name name a credential?
fn names_credential(name: &str) -> bool {
    let n = name
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('_', "-");
    [
        "api-key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "credential",
        "access-key",
        "private-key",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n == "key"
        || n.ends_with("-key")
}

/// Known credential formats: (prefix, minimum total length).
const KEY_PREFIXES: &[(&str, usize)] = &[
    ("sk-", 20),
    ("xai-", 20),
    ("AIza", 30),
    ("ghp_", 30),
    ("gho_", 30),
    ("hf_", 20),
    ("eyJ", 40), // JWT
];

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=')
}

/// Replace well-known key formats and `Bearer <token>` inside `s`.
fn redact_known_formats(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for (prefix, min_len) in KEY_PREFIXES {
            if rest.starts_with(prefix) && out.chars().last().is_none_or(|c| !is_token_char(c)) {
                let len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
                if len >= *min_len {
                    out.push_str(REDACTED);
                    rest = &rest[len..];
                    continue 'outer;
                }
            }
        }
        for scheme in ["Bearer ", "bearer ", "Basic ", "basic "] {
            if let Some(after) = rest.strip_prefix(scheme) {
                let len = after
                    .find(|c: char| !is_token_char(c))
                    .unwrap_or(after.len());
                if len > 0 {
                    out.push_str(scheme);
                    out.push_str(REDACTED);
                    rest = &after[len..];
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Redact `name=value` pairs (URL query strings, environment-style assignments, form data).
fn redact_assignments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '=' {
            let name_start = s[..i]
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                .map_or(0, |(p, c)| p + c.len_utf8());
            if name_start < i && names_credential(&s[name_start..i]) {
                let value_end = s[i + 1..]
                    .find(['&', ' ', ';', ',', '"', '\''])
                    .map_or(s.len(), |p| i + 1 + p);
                if value_end > i + 1 && start <= i {
                    out.push_str(&s[start..=i]);
                    out.push_str(REDACTED);
                    start = value_end;
                }
            }
        }
    }
    if start < s.len() {
        out.push_str(&s[start..]);
    }
    out
}

fn redact_one(arg: &str) -> String {
    // Header-style: "Name: value".
    if let Some((name, _)) = arg.split_once(':')
        && CREDENTIAL_HEADERS.contains(&name.trim().to_ascii_lowercase().as_str())
    {
        return format!("{name}: {REDACTED}");
    }
    redact_known_formats(&redact_assignments(arg))
}

/// The arguments with credentials replaced by `[REDACTED]`.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut redact_next = false;
    for arg in args {
        if redact_next {
            redact_next = false;
            if !arg.starts_with('-') {
                out.push(REDACTED.to_owned());
                continue;
            }
        }
        if arg.starts_with('-') && !arg.contains('=') && arg.len() > 2 && names_credential(arg) {
            redact_next = true; // `--api-key VALUE`
        }
        out.push(redact_one(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Vec<String> {
        redact_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn credential_headers() {
        assert_eq!(
            r(&[
                "curl",
                "-H",
                "Authorization: Bearer sk-abcdefghijklmnopqrstuv"
            ]),
            ["curl", "-H", "Authorization: [REDACTED]"]
        );
        assert_eq!(
            r(&["-H", "x-api-key: abc123"]),
            ["-H", "x-api-key: [REDACTED]"]
        );
        assert_eq!(
            r(&["-H", "Content-Type: application/json"]),
            ["-H", "Content-Type: application/json"]
        );
    }

    #[test]
    fn credential_flags() {
        assert_eq!(
            r(&["tool", "--api-key", "hunter2", "--model", "gpt"]),
            ["tool", "--api-key", "[REDACTED]", "--model", "gpt"]
        );
        assert_eq!(
            r(&["tool", "--api-key=hunter2"]),
            ["tool", "--api-key=[REDACTED]"]
        );
        assert_eq!(
            r(&["tool", "--token", "--verbose"]),
            ["tool", "--token", "--verbose"],
            "a flag is not a value"
        );
        assert_eq!(
            r(&["mysql", "--password=pw", "--user=bob"]),
            ["mysql", "--password=[REDACTED]", "--user=bob"]
        );
    }

    #[test]
    fn assignments_and_query_strings() {
        assert_eq!(
            r(&[
                "env",
                "OPENAI_API_KEY=sk-proj-0123456789abcdefghij",
                "python"
            ]),
            ["env", "OPENAI_API_KEY=[REDACTED]", "python"]
        );
        assert_eq!(
            r(&[
                "https://generativelanguage.googleapis.com/v1/models?key=AIzaSyA-0123456789abcdefghijklmnopqrstu&alt=json"
            ]),
            ["https://generativelanguage.googleapis.com/v1/models?key=[REDACTED]&alt=json"]
        );
        assert_eq!(r(&["a=1", "b=two"]), ["a=1", "b=two"]);
    }

    #[test]
    fn known_key_formats_anywhere() {
        assert_eq!(
            r(&["run", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"]),
            ["run", "[REDACTED]"]
        );
        assert_eq!(
            r(&["{\"k\":\"sk-0123456789abcdefghijkl\"}"]),
            ["{\"k\":\"[REDACTED]\"}"]
        );
        assert_eq!(
            r(&["task-runner", "disk-usage"]),
            ["task-runner", "disk-usage"],
            "short sk- words stay"
        );
        assert_eq!(r(&["echo Bearer abc.def-ghi"]), ["echo Bearer [REDACTED]"]);
    }

    #[test]
    fn unicode_is_safe() {
        assert_eq!(r(&["привет=мир", "键=值"]), ["привет=мир", "键=值"]);
        assert_eq!(r(&["token=ключ"]), ["token=[REDACTED]"]);
    }
}
