//! `request-termination` (PRIORITY 2, access): answers from the gateway with a fixed status
//! and message or body, optionally only when a trigger header or query argument is present,
//! or echoes the request back for debugging. Kong's fields and defaults.

use std::sync::Arc;

use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::{BuildCx, Checks, Ctx, Flow, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond;

/// The plugin's `config` (Kong's `kong/plugins/request-termination/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_status")]
    pub status_code: u16,
    pub message: Option<String>,
    pub body: Option<String>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub echo: bool,
    pub trigger: Option<String>,
}

fn default_status() -> u16 {
    503
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.between("status_code", self.status_code, 100, 599);
        if let Some(t) = &self.trigger {
            c.header_name("trigger", t);
        }
        if self.message.is_some() && (self.body.is_some() || self.content_type.is_some()) {
            c.error(
                "message",
                "message cannot be used with content_type or body",
            );
        }
        if self.content_type.is_some() && self.body.is_none() {
            c.error("content_type", "content_type requires a body");
        }
        if self.echo && (self.body.is_some() || self.content_type.is_some()) {
            c.error("echo", "echo cannot be used with content_type and body");
        }
    }
}

pub struct RequestTermination {
    config: Config,
    status: StatusCode,
    /// The answer is the same for every request unless it echoes: built once.
    fixed_body: bytes::Bytes,
    fixed_type: HeaderValue,
}

impl PluginSpec for RequestTermination {
    const NAME: &'static str = "request-termination";
    const PRIORITY: i32 = 2;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(RequestTermination::new(config))))
    }
}

impl RequestTermination {
    pub fn new(config: Config) -> Self {
        let status =
            StatusCode::from_u16(config.status_code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
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
                    .unwrap_or_else(|| default_message(status).to_string());
                (
                    bytes::Bytes::from(serde_json::json!({ "message": message }).to_string()),
                    HeaderValue::from_static(respond::JSON),
                )
            }
        };
        RequestTermination {
            config,
            status,
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
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        Self::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        if let Some(trigger) = &self.config.trigger {
            let in_headers = req.headers().contains_key(trigger.as_str());
            let in_query = req.query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.split('=').next() == Some(trigger.as_str()))
            });
            if !in_headers && !in_query {
                return Flow::Continue;
            }
        }
        if self.config.echo {
            return Flow::Respond(self.echo(ctx, req));
        }
        let mut resp = respond::bytes(self.status, self.fixed_body.clone());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, self.fixed_type.clone());
        Flow::Respond(resp)
    }
}

impl RequestTermination {
    /// The request as Kong's `echo` shows it, for debugging.
    fn echo(&self, ctx: &Ctx<'_>, req: &Request<'_>) -> crate::exchange::Response {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let query: serde_json::Map<String, serde_json::Value> = req
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), serde_json::Value::String(v.to_string()))
            })
            .collect();
        let host = ctx
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let body = serde_json::json!({
            "message": self.config.message,
            "request": {
                "scheme": ctx.scheme(),
                "host": host.split(':').next().unwrap_or_default(),
                "method": req.method().as_str(),
                "path": req.path(),
                "query": query,
                "headers": headers,
            },
            "matched_route": ctx.route.map(|r| serde_json::json!({"id": &*r.id, "name": &*r.name})),
            "matched_service": ctx.service.map(|s| serde_json::json!({"id": &*s.id, "name": &*s.name})),
        });
        respond::json(self.status, body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn schema_rules() {
        let ok: Config = parse("status_code: 418\nmessage: teapot").unwrap();
        assert_eq!(ok.status_code, 418);
        assert_eq!(parse::<Config>("{}").unwrap().status_code, 503);
        let errs =
            parse::<Config>("status_code: 700\nmessage: x\nbody: y\nstatuscode: 1").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs.iter()
                .any(|t| t.contains("did you mean `status_code`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|t| t.starts_with("status_code: value should be between 100 and 599")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|t| t == "message: message cannot be used with content_type or body"),
            "{errs:?}"
        );
    }
}
