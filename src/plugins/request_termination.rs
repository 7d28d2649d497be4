//! `request-termination` (PRIORITY 2, access): answers from the gateway with a fixed status
//! and message or body, optionally only when a trigger header or query argument is present,
//! or echoes the request back for debugging. Kong's fields and defaults.

use http::{HeaderValue, StatusCode, header};

use super::{Ctx, Fields, Flow, Plugin, RequestView};
use crate::config::diag::Path;
use crate::config::node::Node;
use crate::proxy::respond;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub status_code: StatusCode,
    pub message: Option<String>,
    pub body: Option<String>,
    pub content_type: Option<String>,
    pub echo: bool,
    pub trigger: Option<String>,
}

const FIELDS: &[&str] = &[
    "status_code",
    "message",
    "body",
    "content_type",
    "echo",
    "trigger",
];

impl Config {
    pub fn parse(node: &Node) -> Result<Config, Vec<(Path, String)>> {
        let mut f = Fields::new(node, FIELDS);
        let status = f.integer("status_code", 503, 100, 599);
        let message = f.string("message");
        let body = f.string("body");
        let content_type = f.string("content_type");
        let echo = f.boolean("echo", false);
        let trigger = f.string("trigger");
        if message.is_some() && (body.is_some() || content_type.is_some()) {
            f.error(
                "message",
                "message cannot be used with content_type or body",
            );
        }
        if content_type.is_some() && body.is_none() {
            f.error("content_type", "content_type requires a body");
        }
        if echo && (body.is_some() || content_type.is_some()) {
            f.error("echo", "echo cannot be used with content_type and body");
        }
        let status_code =
            StatusCode::from_u16(status as u16).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        f.finish(Config {
            status_code,
            message,
            body,
            content_type,
            echo,
            trigger,
        })
    }
}

pub struct RequestTermination {
    config: Config,
    /// The answer is the same for every request unless it echoes: built once.
    fixed_body: bytes::Bytes,
    fixed_type: HeaderValue,
}

impl RequestTermination {
    pub fn new(config: Config) -> Self {
        let (fixed_body, fixed_type) = match (&config.body, &config.message) {
            (Some(body), _) => (
                bytes::Bytes::from(body.clone()),
                config
                    .content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok())
                    .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
            ),
            (None, message) => {
                let message = message
                    .clone()
                    .unwrap_or_else(|| default_message(config.status_code).to_string());
                (
                    bytes::Bytes::from(serde_json::json!({ "message": message }).to_string()),
                    HeaderValue::from_static(respond::JSON),
                )
            }
        };
        RequestTermination {
            config,
            fixed_body,
            fixed_type,
        }
    }
}

/// Kong's default messages for `kong.response.error` (`kong/tools/http.lua`).
pub fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        409 => "Conflict",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        415 => "Unsupported media type",
        429 => "Too many requests",
        500 => "An unexpected error occurred",
        502 => "Bad Gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => status.canonical_reason().unwrap_or("Unknown status"),
    }
}

impl Plugin for RequestTermination {
    fn name(&self) -> &'static str {
        "request-termination"
    }

    fn priority(&self) -> i32 {
        2
    }

    fn access(&self, ctx: &mut Ctx, req: &mut RequestView<'_>) -> Flow {
        if let Some(trigger) = &self.config.trigger {
            let in_headers = req.headers.contains_key(trigger.as_str());
            let in_query = req.query.is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.split('=').next() == Some(trigger.as_str()))
            });
            if !in_headers && !in_query {
                return Flow::Continue;
            }
        }
        if self.config.echo {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        serde_json::Value::String(
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        ),
                    )
                })
                .collect();
            let query: serde_json::Map<String, serde_json::Value> = req
                .query
                .unwrap_or_default()
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), serde_json::Value::String(v.to_string()))
                })
                .collect();
            let body = serde_json::json!({
                "message": self.config.message,
                "request": {
                    "scheme": req.scheme,
                    "host": req.host,
                    "method": req.method.as_str(),
                    "path": req.path,
                    "query": query,
                    "headers": headers,
                },
                "matched_route": ctx.route_name.as_deref().map(|n| serde_json::json!({"name": n})),
                "matched_service": ctx.service_name.as_deref().map(|n| serde_json::json!({"name": n})),
            });
            return Flow::Respond(respond::json_value(self.config.status_code, &body));
        }
        let mut resp = respond::bytes(self.config.status_code, self.fixed_body.clone());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, self.fixed_type.clone());
        Flow::Respond(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse_yaml;

    #[test]
    fn schema_rules() {
        let ok = Config::parse(&parse_yaml("status_code: 418\nmessage: teapot").unwrap()).unwrap();
        assert_eq!(ok.status_code.as_u16(), 418);
        let errs = Config::parse(
            &parse_yaml("status_code: 700\nmessage: x\nbody: y\nstatuscode: 1").unwrap(),
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("did you mean `status_code`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("status_code: value should be between 100 and 599")),
            "{text:?}"
        );
    }
}
