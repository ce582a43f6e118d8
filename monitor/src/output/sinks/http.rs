//! The HTTP sinks: Splunk HTTP Event Collector and the Elasticsearch / OpenSearch bulk API,
//! over one kept-alive HTTP/1.1 connection per sink (hyper's connection-level client).
//!
//! Splunk HEC: one POST per batch to `/services/collector/event` (or the URL's own path), body =
//! the events' envelopes back to back (`{"time":..,"host":..,"source":"relaywatch",
//! "sourcetype":"relaywatch:alert","index":..,"event":{alert}}`), header `Authorization:
//! Splunk TOKEN`. 2xx: delivered. 408, 429 and 5xx: try the batch again. Other 4xx: the batch
//! is refused for good (counted as failed, logged with Splunk's reason; a wrong token refuses
//! every batch, which the log and `failed` counter make loud).
//!
//! Elasticsearch: POST `<url path>/_bulk` with `{"create":{"_index":INDEX}}` before each document
//! (`create` is what data streams accept), header `Authorization: ApiKey KEY` when a token_file
//! is set. The response is read per item: 2xx and 409 (already there) are delivered; 429 and 5xx
//! items are sent again (in a smaller batch: order among retried items is kept, but they land
//! after the rest of their batch); other item errors are refused for good. A request-level
//! failure is handled as for HEC.
//!
//! Secrets: the token is only ever put in the Authorization header; it is not logged, not in
//! errors, and `Debug` of the sink prints it redacted.
use std::{fmt, time::Duration};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use super::Outcome;
use crate::transport::{
    http::{Client, Limits},
    net::Connector,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE: usize = 8 * 1024 * 1024;
pub const HEC_PATH: &str = "/services/collector/event";

/// A secret read from a token file: shown as `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The first line of `path`, trimmed; it must not be empty.
    pub fn read(path: &std::path::Path) -> Result<Secret> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("token_file {}: cannot read: {e}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(anyhow!("token_file {}: empty", path.display()));
        }
        if token.chars().any(|c| c.is_control()) {
            return Err(anyhow!(
                "token_file {}: the token has control characters",
                path.display()
            ));
        }
        Ok(Secret(token.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

const SINK_LIMITS: Limits = Limits {
    timeout: REQUEST_TIMEOUT,
    max_body: MAX_RESPONSE,
};

impl Client {
    async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        authorization: Option<String>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(a) = authorization {
            let mut value = header::HeaderValue::from_str(&a)
                .map_err(|_| anyhow!("the token is not a valid header value"))?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        let answer = self
            .send(request.body(Full::new(body))?, SINK_LIMITS)
            .await?;
        Ok((answer.status, answer.body))
    }
}

/// A batch's request body, built from the records that parse as JSON; the others are refused.
struct ParsedBody {
    body: String,
    parsed: Vec<(usize, Value)>,
    unparsable: usize,
}

fn body_of_parsed(batch: &[&str], build: impl FnOnce(&[(usize, Value)]) -> String) -> ParsedBody {
    let (parsed, bad) = parse_all(batch);
    ParsedBody {
        body: if parsed.is_empty() {
            String::new()
        } else {
            build(&parsed)
        },
        parsed,
        unparsable: bad.len(),
    }
}

impl Client {
    /// POST one batch and judge the answer: request-level status first, then `on_success`
    /// (given a 2xx body and the number of records sent) for per-record results.
    async fn post_batch(
        &mut self,
        path: &str,
        content_type: &str,
        authorization: Option<String>,
        req: ParsedBody,
        on_success: impl FnOnce(&[u8], usize) -> Outcome,
    ) -> Outcome {
        let n = req.parsed.len();
        let mut outcome = if n == 0 {
            Outcome::default()
        } else {
            match self
                .post(path, content_type, authorization, Bytes::from(req.body))
                .await
            {
                Ok((status, body)) => {
                    classify(status, &body, n).unwrap_or_else(|| on_success(&body, n))
                }
                Err(e) => whole_batch_failed(e, n),
            }
        };
        outcome.map_indices(&req.parsed, req.unparsable);
        outcome
    }
}

/// How a request-level answer is handled.
fn classify(status: StatusCode, body: &[u8], n: usize) -> Option<Outcome> {
    let reason = || {
        format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
        )
    };
    if status.is_success() {
        None
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Some(Outcome {
            retry: (0..n).collect(),
            error: Some(reason()),
            ..Outcome::default()
        })
    } else {
        Some(Outcome {
            rejected: n,
            refused: Some(reason()),
            ..Outcome::default()
        })
    }
}

fn whole_batch_failed(e: anyhow::Error, n: usize) -> Outcome {
    Outcome {
        retry: (0..n).collect(),
        error: Some(format!("{e:#}")),
        ..Outcome::default()
    }
}

/// Epoch seconds (millisecond precision) of the alert's `@timestamp`, else now.
fn epoch_seconds(alert: &Value) -> f64 {
    let t = alert["@timestamp"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    ms as f64 / 1000.0
}

/// Splunk HTTP Event Collector.
pub struct SplunkHec {
    client: Client,
    path: String,
    token: Secret,
    index: Option<String>,
    local_host: String,
}

impl SplunkHec {
    pub fn new(
        connector: Connector,
        token: Secret,
        index: Option<String>,
        local_host: String,
    ) -> SplunkHec {
        let path = match connector.endpoint().path.as_str() {
            "/" | "" => HEC_PATH.to_owned(),
            p => p.to_owned(),
        };
        SplunkHec {
            client: Client::new(connector),
            path,
            token,
            index,
            local_host,
        }
    }

    /// The request body for `alerts`: one HEC envelope per alert, back to back.
    pub fn payload(&self, alerts: &[Value]) -> String {
        let mut body = String::new();
        for alert in alerts {
            let mut envelope = json!({
                "time": epoch_seconds(alert),
                "host": alert["host"]["name"].as_str().unwrap_or(&self.local_host),
                "source": "relaywatch",
                "sourcetype": "relaywatch:alert",
                "event": alert,
            });
            if let Some(i) = &self.index {
                envelope["index"] = json!(i);
            }
            body.push_str(&envelope.to_string());
            body.push('\n');
        }
        body
    }

    pub async fn deliver(&mut self, batch: &[&str]) -> Outcome {
        let auth = format!("Splunk {}", self.token.0);
        let body = |alerts: &[(usize, Value)]| {
            self.payload(&alerts.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())
        };
        let body = body_of_parsed(batch, body);
        self.client
            .post_batch(&self.path, "application/json", Some(auth), body, |_, _| {
                Outcome::default()
            })
            .await
    }
}

/// Elasticsearch / OpenSearch bulk API.
pub struct Elasticsearch {
    client: Client,
    path: String,
    api_key: Option<Secret>,
    index: String,
}

impl Elasticsearch {
    pub fn new(connector: Connector, api_key: Option<Secret>, index: String) -> Elasticsearch {
        let path = format!("{}/_bulk", connector.endpoint().path.trim_end_matches('/'));
        Elasticsearch {
            client: Client::new(connector),
            path,
            api_key,
            index,
        }
    }

    /// The NDJSON bulk body: an action line and a document line per alert.
    pub fn payload(&self, documents: &[&str]) -> String {
        let action = json!({ "create": { "_index": self.index } }).to_string();
        let mut body = String::new();
        for doc in documents {
            body.push_str(&action);
            body.push('\n');
            body.push_str(doc);
            body.push('\n');
        }
        body
    }

    pub async fn deliver(&mut self, batch: &[&str]) -> Outcome {
        let auth = self.api_key.as_ref().map(|k| format!("ApiKey {}", k.0));
        let body = body_of_parsed(batch, |alerts| {
            self.payload(&alerts.iter().map(|&(i, _)| batch[i]).collect::<Vec<_>>())
        });
        self.client
            .post_batch(&self.path, "application/x-ndjson", auth, body, bulk_items)
            .await
    }
}

/// Per-item results of a 2xx bulk response.
pub fn bulk_items(body: &[u8], n: usize) -> Outcome {
    let Ok(response) = serde_json::from_slice::<Value>(body) else {
        return Outcome {
            retry: (0..n).collect(),
            error: Some("bulk response is not JSON".into()),
            ..Outcome::default()
        };
    };
    if response["errors"] == false {
        return Outcome::default();
    }
    let items = response["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if items.len() != n {
        return Outcome {
            retry: (0..n).collect(),
            error: Some(format!(
                "bulk response has {} items for {n} documents",
                items.len()
            )),
            ..Outcome::default()
        };
    }
    let mut outcome = Outcome::default();
    for (i, item) in items.iter().enumerate() {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .unwrap_or(&Value::Null);
        let status = result["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) || status == 409 {
            continue;
        }
        let reason = &result["error"];
        let reason = format!(
            "item {status}: {} {}",
            reason["type"].as_str().unwrap_or(""),
            reason["reason"].as_str().unwrap_or("")
        )
        .trim()
        .to_owned();
        // The first reason of each kind: the log and health name why items are sent again
        // and why others are refused, each with its own.
        if status == 429 || status >= 500 || status == 0 {
            outcome.retry.push(i);
            outcome.error.get_or_insert(reason);
        } else {
            outcome.rejected += 1;
            outcome.refused.get_or_insert(reason);
        }
    }
    outcome
}

/// The records that parse as JSON (with their batch index), and the indices that do not.
fn parse_all(batch: &[&str]) -> (Vec<(usize, Value)>, Vec<usize>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        match serde_json::from_str(r) {
            Ok(v) => good.push((i, v)),
            Err(_) => bad.push(i),
        }
    }
    (good, bad)
}

impl Outcome {
    /// Indices into the parsed subset back to batch indices; unparsable records are refused.
    fn map_indices(&mut self, parsed: &[(usize, Value)], unparsable: usize) {
        self.retry = self
            .retry
            .iter()
            .filter_map(|&i| parsed.get(i).map(|p| p.0))
            .collect();
        self.rejected += unparsable;
        if unparsable > 0 && self.refused.is_none() {
            self.refused = Some("a queued record is not JSON".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::net::Endpoint;

    fn connector(url: &str) -> Connector {
        Connector::new(Endpoint::parse(url).unwrap(), None).unwrap()
    }

    #[test]
    fn hec_envelope_has_time_host_source_and_index() {
        let hec = SplunkHec::new(
            connector("http://127.0.0.1:8088"),
            Secret("t".into()),
            Some("security".into()),
            "me".into(),
        );
        assert_eq!(hec.path, HEC_PATH);
        let alerts = [
            json!({"@timestamp": "2026-09-01T08:15:30.123456Z", "host": {"name": "build-01"}, "n": 1}),
            json!({"n": 2}),
        ];
        let body = hec.payload(&alerts);
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            json!({"time": 1788250530.123, "host": "build-01", "source": "relaywatch", "sourcetype": "relaywatch:alert", "index": "security", "event": alerts[0]})
        );
        assert_eq!(lines[1]["host"], "me");
        assert!(lines[1]["time"].as_f64().unwrap() > 1.7e9);
        let custom = SplunkHec::new(
            connector("http://h:1/services/collector"),
            Secret("t".into()),
            None,
            "me".into(),
        );
        assert_eq!(custom.path, "/services/collector");
        assert!(
            custom
                .payload(&alerts)
                .lines()
                .all(|l| !l.contains("\"index\""))
        );
    }

    #[test]
    fn bulk_body_uses_create_actions() {
        let es = Elasticsearch::new(
            connector("http://h:9200/prefix/"),
            None,
            "logs-relaywatch-default".into(),
        );
        assert_eq!(es.path, "/prefix/_bulk");
        assert_eq!(
            es.payload(&["{\"a\":1}", "{\"b\":2}"]),
            "{\"create\":{\"_index\":\"logs-relaywatch-default\"}}\n{\"a\":1}\n{\"create\":{\"_index\":\"logs-relaywatch-default\"}}\n{\"b\":2}\n"
        );
        assert_eq!(
            Elasticsearch::new(connector("http://h:9200"), None, "i".into()).path,
            "/_bulk"
        );
    }

    #[test]
    fn bulk_response_is_read_per_item() {
        assert_eq!(
            bulk_items(br#"{"errors":false,"items":[]}"#, 3),
            Outcome::default()
        );
        let body = br#"{"errors":true,"items":[
            {"create":{"status":201}},
            {"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}},
            {"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},
            {"create":{"status":409}},
            {"create":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"x"}}}]}"#;
        let o = bulk_items(body, 5);
        assert_eq!(o.retry, [2, 4]);
        assert_eq!(o.rejected, 1);
        // Each kind of failure keeps its own reason, whatever the order of the items.
        assert_eq!(
            (o.error.as_deref(), o.refused.as_deref()),
            (
                Some("item 429: es_rejected_execution_exception busy"),
                Some("item 400: mapper_parsing_exception bad field")
            )
        );
        assert_eq!(bulk_items(b"<html>", 2).retry, [0, 1]);
        assert_eq!(
            bulk_items(br#"{"errors":true,"items":[]}"#, 2).retry,
            [0, 1]
        );
    }

    #[test]
    fn status_classes() {
        assert!(classify(StatusCode::OK, b"", 3).is_none());
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"busy", 2)
                .unwrap()
                .retry,
            [0, 1]
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, b"", 1)
                .unwrap()
                .retry,
            [0]
        );
        let o = classify(
            StatusCode::FORBIDDEN,
            br#"{"text":"Invalid token","code":4}"#,
            2,
        )
        .unwrap();
        assert_eq!((o.retry.len(), o.rejected, &o.error), (0, 2, &None));
        assert_eq!(
            o.refused.unwrap(),
            r#"HTTP 403 Forbidden: {"text":"Invalid token","code":4}"#
        );
    }

    #[test]
    fn token_file_is_read_and_never_shown() {
        let f = std::env::temp_dir().join(format!("relaywatch-token-{}", std::process::id()));
        std::fs::write(&f, "  s3cret-token \nsecond line\n").unwrap();
        let s = Secret::read(&f).unwrap();
        assert_eq!(s.0, "s3cret-token");
        assert_eq!(format!("{s:?}"), "[redacted]");
        std::fs::write(&f, "\n").unwrap();
        assert!(
            Secret::read(&f)
                .unwrap_err()
                .to_string()
                .ends_with(": empty")
        );
        let e = Secret::read(std::path::Path::new("/nonexistent/token"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("token_file /nonexistent/token: cannot read: "),
            "{e}"
        );
    }
}
