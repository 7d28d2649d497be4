//! `http-log` (PRIORITY 12): in Kong, sends every request's log entry (JSON) to an HTTP
//! endpoint, batched through a plugin queue. Not served yet: its config is checked against
//! Kong's schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::queue::Queue;
use super::schema::typedefs::{check_headers, check_lua_code, check_url, is_reference, url_parts};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/http-log/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub http_endpoint: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub content_type: ContentType,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "default_keepalive")]
    pub keepalive: f64,
    /// Deprecated: no effect since Kong 3.3 (`queue.max_retry_time` replaces it).
    pub retry_count: Option<i64>,
    /// Deprecated: `queue.max_batch_size`.
    pub queue_size: Option<i64>,
    /// Deprecated: `queue.max_coalescing_delay`.
    pub flush_timeout: Option<f64>,
    pub headers: Option<IndexMap<String, String>>,
    #[serde(default)]
    pub queue: Queue,
    pub custom_fields_by_lua: Option<IndexMap<String, String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[default]
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "PATCH")]
    Patch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ContentType {
    #[default]
    #[serde(rename = "application/json")]
    Json,
    #[serde(rename = "application/json; charset=utf-8")]
    JsonUtf8,
}

fn default_timeout() -> f64 {
    10000.0
}

fn default_keepalive() -> f64 {
    60000.0
}

/// Headers Kong sets itself on the log request (`match_none` on the header names).
const RESERVED_HEADERS: [(&str, &str); 3] = [
    ("host", "cannot contain 'Host' header"),
    ("content-length", "cannot contain 'Content-Length' header"),
    ("content-type", "cannot contain 'Content-Type' header"),
];

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        if !is_reference(&self.http_endpoint) {
            check_url(c, "http_endpoint", &self.http_endpoint);
        }
        check_headers(c, "headers", self.headers.as_ref());
        for name in self.headers.iter().flat_map(|h| h.keys()) {
            let field = format!("headers.{name}");
            if let Some((_, err)) = RESERVED_HEADERS
                .iter()
                .find(|(h, _)| name.eq_ignore_ascii_case(h))
            {
                c.error(&field, *err);
            }
        }
        self.queue.check(c, "queue");
        check_lua_code(
            c,
            "custom_fields_by_lua",
            self.custom_fields_by_lua.as_ref(),
        );
        // Kong's custom validator: credentials in one place only.
        let userinfo = !is_reference(&self.http_endpoint)
            && url_parts(&self.http_endpoint).is_some_and(|u| u.userinfo.is_some());
        let authorization = self
            .headers
            .iter()
            .flat_map(|h| h.keys())
            .any(|h| h.eq_ignore_ascii_case("authorization"));
        if userinfo && authorization {
            c.error(
                "",
                "specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed",
            );
        }
    }
}

/// `http-log` (PRIORITY 12).
pub struct HttpLog;

impl PluginSpec for HttpLog {
    const NAME: &'static str = "http-log";
    const PRIORITY: i32 = 12;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("http_endpoint: http://logs:9880/kong").unwrap();
        assert_eq!(c.method, Method::Post);
        assert_eq!(c.content_type, ContentType::Json);
        assert_eq!((c.timeout, c.keepalive), (10000.0, 60000.0));
        assert_eq!(c.queue, Queue::default());
        assert_eq!(c.queue.max_batch_size, 1);
        assert_eq!(c.queue.initial_retry_delay, 0.01);
        assert_eq!(c.queue.max_bytes, None);
        assert!(c.headers.is_none() && c.retry_count.is_none());
        let errs = parse::<Config>("{}").unwrap_err();
        assert_eq!(errs, [": missing field `http_endpoint`"]);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            r#"
http_endpoint: "https://user:pass@logs.example.com:8443/in?x=1"
method: PATCH
content_type: "application/json; charset=utf-8"
timeout: 2500
keepalive: 30000
headers: {X-Token: abc, X-Env: prod}
queue:
  max_batch_size: 100
  max_coalescing_delay: 0.5
  max_entries: 50000
  max_bytes: 1048576
  max_retry_time: -1
  initial_retry_delay: 0.5
  max_retry_delay: 30
  concurrency_limit: -1
custom_fields_by_lua: {env: "return 'prod'"}
"#,
        )
        .unwrap();
        assert_eq!(c.method, Method::Patch);
        assert_eq!(c.content_type, ContentType::JsonUtf8);
        assert_eq!(c.headers.as_ref().unwrap()["X-Env"], "prod");
        assert_eq!(c.queue.max_bytes, Some(1048576));
        assert_eq!(c.queue.concurrency_limit, -1);
        assert_eq!(c.custom_fields_by_lua.unwrap()["env"], "return 'prod'");
    }

    #[test]
    fn legacy_queue_fields_and_nulls_still_load() {
        let c: Config = parse(
            "http_endpoint: http://log-svc\nretry_count: 15\nqueue_size: 10\nflush_timeout: 2\nheaders: null\nqueue: null\n_comment: x",
        )
        .unwrap();
        assert_eq!(
            (c.retry_count, c.queue_size, c.flush_timeout),
            (Some(15), Some(10), Some(2.0))
        );
        assert_eq!(c.queue, Queue::default());
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            r#"
tiemout: 1
http_endpoint: "http://u:p@logs"
method: GET
headers: {Host: x, content-length: "1", Authorization: "Basic x", "bad header": y}
queue: {max_batch_size: 0, max_coalescing_delay: 4000, max_entries: 0, initial_retry_delay: 0, max_retry_delay: 0, concurrency_limit: 2}
custom_fields_by_lua: {x: ""}
"#,
        )
        .unwrap_err();
        let want = [
            "method: `GET` is not one of: POST, PUT, PATCH",
            "tiemout: unknown field `tiemout`; did you mean `timeout`?",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e == w), "{w} not in {errs:?}");
        }
        // A bad enum stops the value: the remaining rules are checked once it is fixed.
        let errs = parse::<Config>(
            r#"
http_endpoint: "http://u:p@logs"
headers: {Host: x, content-length: "1", Authorization: "Basic x", "bad header": y, X-Empty: ""}
queue: {max_batch_size: 0, max_coalescing_delay: 4000, max_entries: 0, initial_retry_delay: 0, max_retry_delay: 0, concurrency_limit: 2}
custom_fields_by_lua: {x: ""}
"#,
        )
        .unwrap_err();
        let want = [
            "headers.Host: cannot contain 'Host' header",
            "headers.content-length: cannot contain 'Content-Length' header",
            "headers.bad header: bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
            "headers.X-Empty: length must be at least 1",
            "queue.max_batch_size: value should be between 1 and 1000000",
            "queue.max_coalescing_delay: value should be between 0 and 3600",
            "queue.max_entries: value should be between 1 and 1000000",
            "queue.initial_retry_delay: value should be between 0.001 and 1000000",
            "queue.max_retry_delay: value should be between 0.001 and 1000000",
            "queue.concurrency_limit: expected one of: -1, 1",
            "custom_fields_by_lua.x: length must be at least 1",
            ": specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e == w), "{w} not in {errs:?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:?}");
    }

    #[test]
    fn urls() {
        let bad = [
            ("localhost:8080", "missing host in url"),
            ("//logs/x", "missing scheme in url"),
            ("/logs", "missing host in url"),
            ("", "length must be at least 1"),
            ("http://", "missing host in url"),
        ];
        for (url, why) in bad {
            let errs = parse::<Config>(&format!("http_endpoint: \"{url}\"")).unwrap_err();
            assert_eq!(errs, [format!("http_endpoint: {why}")], "{url}");
        }
        for url in [
            "http://logs",
            "https://[::1]:8080/x",
            "http://10.0.0.1:9/a#f",
            "{vault://env/log-url}",
        ] {
            parse::<Config>(&format!("http_endpoint: \"{url}\"")).unwrap();
        }
        let u = url_parts("https://a:b@[::1]:80/p").unwrap();
        assert_eq!(
            (u.scheme, u.userinfo, u.host),
            (Some("https"), Some("a:b"), Some("::1"))
        );
    }

    /// Real users' files (`/work/shared/realworld/kong`).
    #[test]
    fn real_configs() {
        // Kibria7533/kong-http-kong-yaml
        let c: Config = parse(
            "http_endpoint: http://log-svc\nmethod: POST\ntimeout: 1000\nkeepalive: 1000\nflush_timeout: 2\nretry_count: 15",
        )
        .unwrap();
        assert_eq!(c.retry_count, Some(15));
        // BigFishIta/kong-observability-stack
        parse::<Config>(
            "http_endpoint: http://fluent-bit:9880/kong\nmethod: POST\ntimeout: 1000\nkeepalive: 1000",
        )
        .unwrap();
        // switchyard's own enforcement test
        parse::<Config>(
            "{http_endpoint: \"http://127.0.0.1:9\", headers: {Authorization: \"Bearer log-token-1\"}}",
        )
        .unwrap();
    }
}
