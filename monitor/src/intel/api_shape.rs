//! Whether a request read from a TLS connection's first plaintext bytes is a call to an AI
//! provider's API (OpenAI, Anthropic, Gemini) or to a relay that speaks one of them, and which.
//! The answer, [`ApiEvidence`], is reported as `relaywatch.api`.
//!
//! Rules, in order:
//! 1. Routes are matched on the path's segments, under an optional prefix of at most
//!    [`MAX_PREFIX_SEGMENTS`] segments (`/openai/v1/chat/completions`,
//!    `/api/claude/v1/messages`): relays mount the provider's API under a path of their own.
//!    The shortest prefix that gives a match wins. Identifiers in a path (model, deployment,
//!    thread, file ids) become placeholders in the route template and are not kept, except the
//!    model, which the request head already holds.
//! 2. Specific routes are API-shaped on their own: they exist only in these APIs
//!    (`/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/moderations`,
//!    `/v1/audio/{op}`, `/v1/images/{op}`, Azure's `/openai/deployments/{deployment}/...`,
//!    `/v1/messages`, `/v1/messages/count_tokens`, `/v1/messages/batches`, Gemini's
//!    `/{v1,v1beta}/models/{model}:{generateContent,streamGenerateContent,countTokens,
//!    embedContent,batchEmbedContents}`).
//! 3. Generic routes are words other APIs use too (`/v1/models`, `/v1/models/{model}`,
//!    `/v1/completions`, `/v1/complete`, `/v1/responses/{id}`, `/v1/assistants`, `/v1/threads`,
//!    `/v1/files`, `/v1/batches`, `/v1beta/models`): they count only with a corroborating
//!    signal, a decisive header (below) or a provider key format, or a POST whose JSON body
//!    names a model. A bare `GET /v1/models` is the health check of many unrelated services;
//!    a security team reading these records wants few false positives, and a real SDK call
//!    carries its headers anyway.
//! 4. Without a matching route, decisive headers alone make a request API-shaped (route
//!    `None`): `anthropic-version`, `anthropic-beta`, `x-goog-api-key`, `openai-organization`,
//!    `openai-project`, `openai-beta`, any `x-stainless-*` (the official SDKs), or a credential
//!    in a provider's key format (`sk-ant-`, `sk-proj-`, `sk-or-`, `sk-`, `AIza`).
//!    `Authorization` and `x-api-key` alone are not decisive: every API has them.
//! 5. Documents are never API-shaped, whatever their headers: `/`, and paths ending in
//!    `.html`, `.htm`, `.js`, `.css`, `.ico`, `.png`, `.jpg`, `.svg`, `.txt`.
//!
//! Family: from the route when the route belongs to one provider; else from the headers:
//! `anthropic-*` or an `sk-ant-` key is Anthropic (the Anthropic SDK also sends `x-stainless-*`),
//! `x-goog-api-key` or an `AIza` key is Gemini, other decisive headers are OpenAI (OpenRouter's
//! `sk-or-` keys call its OpenAI-compatible API). Routes that two providers share (`/v1/models`,
//! `/v1/files`, `/v1/batches`) take the headers' family, OpenAI when the headers say nothing.
use serde::Serialize;

use crate::naming::request::{ApiHeader, RequestHead};

/// Path segments a relay may put before a provider's route.
pub const MAX_PREFIX_SEGMENTS: usize = 3;
/// Longest prefix kept (bytes).
pub const MAX_PREFIX_LEN: usize = 96;
const MAX_PREFIX_SEGMENT_LEN: usize = 32;
/// The longest route (`/v1/threads/{id}/runs/{id}/steps`).
const MAX_ROUTE_SEGMENTS: usize = 6;

const GEMINI_ACTIONS: [&str; 5] = [
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiFamily {
    OpenAi,
    Anthropic,
    Gemini,
}

impl ApiFamily {
    /// The name records use (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::OpenAi => "openai",
            ApiFamily::Anthropic => "anthropic",
            ApiFamily::Gemini => "gemini",
        }
    }
}

/// Why a request looks like an AI API call, as reported (`relaywatch.api`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiEvidence {
    pub family: ApiFamily,
    /// The route template matched (`/v1/messages`, `/v1beta/models/{model}:generateContent`),
    /// `None` when only the headers identify the API.
    pub route: Option<String>,
    /// What came before the route in the path (`/openai`, `/api/claude`).
    pub prefix: Option<String>,
    pub method: String,
    pub host: Option<String>,
    pub api_headers: Vec<ApiHeader>,
    pub key_prefix: Option<&'static str>,
    pub user_agent: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Exists only in these APIs.
    Specific,
    /// Needs a corroborating signal (rule 3).
    Generic,
}

/// A route that matched: its family (`None` when providers share it), template and strength.
struct RouteMatch {
    family: Option<ApiFamily>,
    template: String,
    strength: Strength,
}

/// The evidence that `head` is an AI API call, or `None` when it does not look like one.
pub fn classify(head: &RequestHead) -> Option<ApiEvidence> {
    let path = head.path.as_str();
    if is_document(path) {
        return None;
    }
    let headers_family = header_family(head);
    let routed = find_route(path).filter(|(_, route)| match route.strength {
        Strength::Specific => true,
        Strength::Generic => {
            headers_family.is_some() || (head.method == "POST" && head.model.is_some())
        }
    });
    let (family, route, prefix) = match routed {
        Some((prefix, route)) => (
            route.family.or(headers_family).unwrap_or(ApiFamily::OpenAi),
            Some(route.template),
            prefix,
        ),
        None => (headers_family?, None, None),
    };
    Some(ApiEvidence {
        family,
        route,
        prefix,
        method: head.method.clone(),
        host: head.host.clone(),
        api_headers: head.api_headers.clone(),
        key_prefix: head.key_prefix,
        user_agent: head.user_agent.clone(),
        model: head.model.clone(),
    })
}

/// Rule 5: a web page or static file.
fn is_document(path: &str) -> bool {
    const SUFFIXES: [&str; 9] = [
        ".html", ".htm", ".js", ".css", ".ico", ".png", ".jpg", ".svg", ".txt",
    ];
    let lower = path.to_ascii_lowercase();
    path == "/" || path == "*" || SUFFIXES.iter().any(|suffix| lower.ends_with(suffix))
}

/// The family the headers decide, if any header (or the key format) is decisive.
fn header_family(head: &RequestHead) -> Option<ApiFamily> {
    let has = |name: &str| head.api_headers.iter().any(|h| h.name == name);
    let key = head.key_prefix;
    if has("anthropic-version") || has("anthropic-beta") || key == Some("sk-ant-") {
        Some(ApiFamily::Anthropic)
    } else if has("x-goog-api-key") || key == Some("AIza") {
        Some(ApiFamily::Gemini)
    } else if has("openai-organization")
        || has("openai-project")
        || has("openai-beta")
        || head
            .api_headers
            .iter()
            .any(|h| h.name.starts_with("x-stainless-"))
        || key.is_some()
    {
        Some(ApiFamily::OpenAi)
    } else {
        None
    }
}

/// The route under the shortest valid prefix, with that prefix (`None` when empty).
fn find_route(path: &str) -> Option<(Option<String>, RouteMatch)> {
    let path = path.strip_prefix('/')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_PREFIX_SEGMENTS + MAX_ROUTE_SEGMENTS {
        return None;
    }
    for skip in 0..=MAX_PREFIX_SEGMENTS.min(segments.len()) {
        let (prefix, rest) = segments.split_at(skip);
        if !prefix.iter().all(|s| valid_prefix_segment(s)) {
            return None;
        }
        if let Some(route) = route(rest) {
            let prefix = (!prefix.is_empty()).then(|| format!("/{}", prefix.join("/")));
            if prefix.as_ref().is_some_and(|p| p.len() > MAX_PREFIX_LEN) {
                return None;
            }
            return Some((prefix, route));
        }
    }
    None
}

fn valid_prefix_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_PREFIX_SEGMENT_LEN
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// The provider route the segments form, if any.
fn route(segments: &[&str]) -> Option<RouteMatch> {
    use ApiFamily::{Anthropic, Gemini, OpenAi};
    use Strength::{Generic, Specific};
    let found = |family, template: &str, strength| {
        Some(RouteMatch {
            family,
            template: template.to_owned(),
            strength,
        })
    };
    match segments {
        ["v1", "chat", "completions"] => found(Some(OpenAi), "/v1/chat/completions", Specific),
        ["v1", "responses"] => found(Some(OpenAi), "/v1/responses", Specific),
        ["v1", "responses", id] if is_id(id) => found(Some(OpenAi), "/v1/responses/{id}", Generic),
        ["v1", "embeddings"] => found(Some(OpenAi), "/v1/embeddings", Specific),
        ["v1", "moderations"] => found(Some(OpenAi), "/v1/moderations", Specific),
        ["v1", "completions"] => found(Some(OpenAi), "/v1/completions", Generic),
        [
            "v1",
            "audio",
            op @ ("speech" | "transcriptions" | "translations"),
        ]
        | [
            "v1",
            "images",
            op @ ("generations" | "edits" | "variations"),
        ] => found(Some(OpenAi), &format!("/v1/{}/{op}", segments[1]), Specific),
        ["openai", "deployments", deployment, tail @ ..] if is_id(deployment) => {
            let tail = match tail {
                ["chat", "completions"] => "chat/completions",
                ["completions"] => "completions",
                ["embeddings"] => "embeddings",
                ["images", "generations"] => "images/generations",
                ["audio", "transcriptions"] => "audio/transcriptions",
                ["audio", "speech"] => "audio/speech",
                _ => return None,
            };
            found(
                Some(OpenAi),
                &format!("/openai/deployments/{{deployment}}/{tail}"),
                Specific,
            )
        }
        ["v1", "messages"] => found(Some(Anthropic), "/v1/messages", Specific),
        ["v1", "messages", "count_tokens"] => {
            found(Some(Anthropic), "/v1/messages/count_tokens", Specific)
        }
        ["v1", "messages", "batches", rest @ ..] => found(
            Some(Anthropic),
            &resource_template("/v1/messages/batches", rest)?,
            Specific,
        ),
        ["v1", "complete"] => found(Some(Anthropic), "/v1/complete", Generic),
        [version @ ("v1" | "v1beta"), "models", model] if model.contains(':') => {
            let (name, action) = model.split_once(':')?;
            if !is_id(name) || !GEMINI_ACTIONS.contains(&action) {
                return None;
            }
            found(
                Some(Gemini),
                &format!("/{version}/models/{{model}}:{action}"),
                Specific,
            )
        }
        ["v1", "models"] => found(None, "/v1/models", Generic),
        ["v1", "models", model] if is_id(model) => found(None, "/v1/models/{model}", Generic),
        ["v1beta", "models"] => found(Some(Gemini), "/v1beta/models", Generic),
        ["v1beta", "models", model] if is_id(model) => {
            found(Some(Gemini), "/v1beta/models/{model}", Generic)
        }
        ["v1", root @ ("assistants" | "threads"), rest @ ..] => found(
            Some(OpenAi),
            &resource_template(&format!("/v1/{root}"), rest)?,
            Generic,
        ),
        ["v1", root @ ("files" | "batches"), rest @ ..] => found(
            None,
            &resource_template(&format!("/v1/{root}"), rest)?,
            Generic,
        ),
        _ => None,
    }
}

/// A REST resource path under `root`: identifiers and sub-resource words alternate
/// (`/v1/threads/{id}/runs/{id}/steps`), at most four more segments.
fn resource_template(root: &str, rest: &[&str]) -> Option<String> {
    if rest.len() > 4 {
        return None;
    }
    let mut template = root.to_owned();
    for (i, segment) in rest.iter().enumerate() {
        if i % 2 == 0 {
            if !is_id(segment) {
                return None;
            }
            template.push_str("/{id}");
        } else {
            let word =
                segment.len() <= 24 && segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !word {
                return None;
            }
            template.push('/');
            template.push_str(segment);
        }
    }
    Some(template)
}

/// An identifier or model name in a path segment.
fn is_id(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 128
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'%'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::request::{Protocol, parse_request};

    fn head(method: &str, path: &str) -> RequestHead {
        RequestHead {
            protocol: Protocol::Http1,
            method: method.to_owned(),
            path: path.to_owned(),
            host: Some("relay.example".to_owned()),
            port: None,
            api_headers: Vec::new(),
            key_prefix: None,
            user_agent: None,
            model: None,
            truncated: false,
        }
    }

    fn with_header(mut head: RequestHead, name: &str) -> RequestHead {
        head.api_headers.push(ApiHeader {
            name: name.to_owned(),
            value: None,
        });
        head
    }

    fn shape(head: &RequestHead) -> Option<(ApiFamily, Option<String>, Option<String>)> {
        classify(head).map(|e| (e.family, e.route, e.prefix))
    }

    fn routed(
        family: ApiFamily,
        route: &str,
        prefix: Option<&str>,
    ) -> Option<(ApiFamily, Option<String>, Option<String>)> {
        Some((family, Some(route.to_owned()), prefix.map(str::to_owned)))
    }

    #[test]
    fn specific_routes_alone() {
        use ApiFamily::*;
        for (path, family, route) in [
            ("/v1/chat/completions", OpenAi, "/v1/chat/completions"),
            ("/v1/chat/completions/", OpenAi, "/v1/chat/completions"),
            ("/v1/responses", OpenAi, "/v1/responses"),
            ("/v1/embeddings", OpenAi, "/v1/embeddings"),
            ("/v1/moderations", OpenAi, "/v1/moderations"),
            (
                "/v1/audio/transcriptions",
                OpenAi,
                "/v1/audio/transcriptions",
            ),
            ("/v1/images/generations", OpenAi, "/v1/images/generations"),
            (
                "/openai/deployments/gpt4o-prod/chat/completions",
                OpenAi,
                "/openai/deployments/{deployment}/chat/completions",
            ),
            ("/v1/messages", Anthropic, "/v1/messages"),
            (
                "/v1/messages/count_tokens",
                Anthropic,
                "/v1/messages/count_tokens",
            ),
            (
                "/v1/messages/batches/msgbatch_01",
                Anthropic,
                "/v1/messages/batches/{id}",
            ),
            (
                "/v1beta/models/gemini-2.0-flash:generateContent",
                Gemini,
                "/v1beta/models/{model}:generateContent",
            ),
            (
                "/v1beta/models/gemini-1.5-pro:streamGenerateContent",
                Gemini,
                "/v1beta/models/{model}:streamGenerateContent",
            ),
            (
                "/v1/models/gemini-pro:countTokens",
                Gemini,
                "/v1/models/{model}:countTokens",
            ),
            (
                "/v1beta/models/text-embedding-004:embedContent",
                Gemini,
                "/v1beta/models/{model}:embedContent",
            ),
        ] {
            assert_eq!(
                shape(&head("POST", path)),
                routed(family, route, None),
                "{path}"
            );
        }
    }

    #[test]
    fn prefixes_of_relays() {
        use ApiFamily::*;
        assert_eq!(
            shape(&head("POST", "/openai/v1/chat/completions")),
            routed(OpenAi, "/v1/chat/completions", Some("/openai"))
        );
        assert_eq!(
            shape(&head("POST", "/api/claude/v1/messages")),
            routed(Anthropic, "/v1/messages", Some("/api/claude"))
        );
        assert_eq!(
            shape(&head("POST", "/a/b/c/v1/messages")),
            routed(Anthropic, "/v1/messages", Some("/a/b/c"))
        );
        assert_eq!(
            shape(&head(
                "POST",
                "/gemini/v1beta/models/gemini-2.5-pro:generateContent"
            )),
            routed(
                Gemini,
                "/v1beta/models/{model}:generateContent",
                Some("/gemini")
            )
        );
        // Four segments of prefix is too deep; a prefix segment must look like a word.
        assert_eq!(shape(&head("POST", "/a/b/c/d/v1/messages")), None);
        assert_eq!(shape(&head("POST", "/a%2fb/v1/messages")), None);
        assert_eq!(shape(&head("POST", "//v1/messages")), None);
    }

    #[test]
    fn generic_routes_need_a_signal() {
        use ApiFamily::*;
        for path in [
            "/v1/models",
            "/v1/models/gpt-4o",
            "/v1/completions",
            "/v1/complete",
            "/v1/files",
            "/v1/batches/batch_abc",
            "/v1/threads/thread_1/runs",
            "/v1beta/models",
        ] {
            assert_eq!(shape(&head("GET", path)), None, "{path}");
            assert_eq!(shape(&head("POST", path)), None, "{path}");
            // Authorization and x-api-key are not decisive.
            let h = with_header(with_header(head("GET", path), "authorization"), "x-api-key");
            assert_eq!(shape(&h), None, "{path}");
        }
        // A provider key format corroborates.
        let mut h = head("GET", "/v1/models");
        h.key_prefix = Some("sk-");
        assert_eq!(shape(&h), routed(OpenAi, "/v1/models", None));
        // Shared routes take the headers' family.
        let h = with_header(head("GET", "/v1/models"), "anthropic-version");
        assert_eq!(shape(&h), routed(Anthropic, "/v1/models", None));
        let h = with_header(head("GET", "/v1/files/file-abc/content"), "anthropic-beta");
        assert_eq!(shape(&h), routed(Anthropic, "/v1/files/{id}/content", None));
        // A route's own family wins over the headers.
        let h = with_header(head("GET", "/v1beta/models"), "x-stainless-lang");
        assert_eq!(shape(&h), routed(Gemini, "/v1beta/models", None));
        // A POST naming a model corroborates a generic route.
        let mut h = head("POST", "/v1/completions");
        h.model = Some("gpt-3.5-turbo-instruct".into());
        assert_eq!(shape(&h), routed(OpenAi, "/v1/completions", None));
        let mut h = head("GET", "/v1/completions");
        h.model = Some("x".into());
        assert_eq!(shape(&h), None);
        assert_eq!(
            shape(&with_header(
                head("GET", "/v1/threads/thread_1/runs/run_2/steps"),
                "openai-beta"
            )),
            routed(OpenAi, "/v1/threads/{id}/runs/{id}/steps", None)
        );
    }

    #[test]
    fn headers_alone() {
        use ApiFamily::*;
        let h = with_header(head("POST", "/api/v3/chat"), "x-stainless-lang");
        assert_eq!(shape(&h), Some((OpenAi, None, None)));
        let h = with_header(h, "anthropic-version");
        assert_eq!(shape(&h), Some((Anthropic, None, None)));
        let h = with_header(head("POST", "/proxy"), "x-goog-api-key");
        assert_eq!(shape(&h), Some((Gemini, None, None)));
        for (key, family) in [
            ("sk-ant-", Anthropic),
            ("AIza", Gemini),
            ("sk-proj-", OpenAi),
            ("sk-or-", OpenAi),
            ("sk-", OpenAi),
        ] {
            let mut h = head("POST", "/anything");
            h.key_prefix = Some(key);
            assert_eq!(shape(&h), Some((family, None, None)), "{key}");
        }
        assert_eq!(
            shape(&with_header(head("POST", "/x"), "authorization")),
            None
        );
        assert_eq!(shape(&head("POST", "/x")), None);
    }

    #[test]
    fn documents_never() {
        for path in ["/", "/index.html", "/static/app.JS", "/favicon.ico", "*"] {
            let mut h = with_header(head("GET", path), "x-stainless-lang");
            h.key_prefix = Some("sk-");
            assert_eq!(shape(&h), None, "{path}");
        }
        assert_eq!(shape(&head("GET", "/v1/chat")), None);
        assert_eq!(shape(&head("POST", "/v1/messages/other")), None);
        assert_eq!(
            shape(&head("POST", "/v1beta/models/x:deleteEverything")),
            None
        );
        assert_eq!(shape(&head("POST", "/openai/deployments/d/other")), None);
        assert_eq!(shape(&head("GET", "/v1/threads/a/b/c/d/e")), None);
    }

    #[test]
    fn from_real_requests_and_serialized() {
        let raw = b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: api.relay.example:8443\r\nUser-Agent: OpenAI/Python 1.54.3\r\nX-Stainless-Lang: python\r\nAuthorization: Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUvWx\r\n\r\n{\"model\":\"gpt-4o\"}";
        let evidence = classify(&parse_request(raw).unwrap()).unwrap();
        let json = serde_json::to_value(&evidence).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "family": "openai",
                "route": "/v1/chat/completions",
                "prefix": "/openai",
                "method": "POST",
                "host": "api.relay.example",
                "api_headers": [
                    {"name": "x-stainless-lang", "value": "python"},
                    {"name": "authorization"}
                ],
                "key_prefix": "sk-proj-",
                "user_agent": "OpenAI/Python",
                "model": "gpt-4o"
            })
        );
        assert!(!json.to_string().contains("AbCdEf"));
        let plain = parse_request(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        assert_eq!(classify(&plain), None);
        let page = parse_request(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        assert_eq!(classify(&page), None);
    }
}
