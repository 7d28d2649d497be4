//! `http-log` (PRIORITY 12): in Kong, sends every request's log entry (JSON) to an HTTP
//! endpoint, batched through a plugin queue. Not served yet: its config is checked against
//! Kong's schema, and the routes it applies to are warned about (it only observes).
//!
//! The Kong typedefs the logging, metrics and tracing plugins share (`typedefs.url`, `host`,
//! `port`, `timeout`, `lua_code`, the plugin queue record of `kong/tools/queue_schema.lua`) are
//! checked here, beside the first plugin that uses them all; the other plugin files call them.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

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
        check_url(c, "http_endpoint", &self.http_endpoint);
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

// === Kong typedefs shared by the logging, metrics and tracing plugins ===

/// Kong's plugin queue (`typedefs.queue`, `kong/tools/queue_schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Queue {
    #[serde(default = "queue_one")]
    pub max_batch_size: i64,
    #[serde(default = "queue_one_second")]
    pub max_coalescing_delay: f64,
    #[serde(default = "queue_max_entries")]
    pub max_entries: i64,
    pub max_bytes: Option<i64>,
    #[serde(default = "queue_sixty_seconds")]
    pub max_retry_time: f64,
    #[serde(default = "queue_initial_retry_delay")]
    pub initial_retry_delay: f64,
    #[serde(default = "queue_sixty_seconds")]
    pub max_retry_delay: f64,
    #[serde(default = "queue_one")]
    pub concurrency_limit: i64,
}

fn queue_one() -> i64 {
    1
}

fn queue_one_second() -> f64 {
    1.0
}

fn queue_max_entries() -> i64 {
    10000
}

fn queue_sixty_seconds() -> f64 {
    60.0
}

fn queue_initial_retry_delay() -> f64 {
    0.01
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            max_batch_size: queue_one(),
            max_coalescing_delay: queue_one_second(),
            max_entries: queue_max_entries(),
            max_bytes: None,
            max_retry_time: queue_sixty_seconds(),
            initial_retry_delay: queue_initial_retry_delay(),
            max_retry_delay: queue_sixty_seconds(),
            concurrency_limit: queue_one(),
        }
    }
}

impl Queue {
    /// The queue record's rules, with `at` the record's path inside `config`.
    pub fn check(&self, c: &mut Checks, at: &str) {
        let f = |name: &str| join(at, name);
        c.between(&f("max_batch_size"), self.max_batch_size, 1, 1_000_000);
        c.between(
            &f("max_coalescing_delay"),
            self.max_coalescing_delay,
            0.0,
            3600.0,
        );
        c.between(&f("max_entries"), self.max_entries, 1, 1_000_000);
        c.between(
            &f("initial_retry_delay"),
            self.initial_retry_delay,
            0.001,
            1_000_000.0,
        );
        c.between(
            &f("max_retry_delay"),
            self.max_retry_delay,
            0.001,
            1_000_000.0,
        );
        if ![-1, 1].contains(&self.concurrency_limit) {
            c.error(&f("concurrency_limit"), "expected one of: -1, 1");
        }
    }
}

/// Kong's message for an empty string: a string field has `len_min = 1` unless it says
/// otherwise.
pub const EMPTY: &str = "length must be at least 1";

/// Kong's implicit `len_min = 1` of string fields, for the fields under `at` that are set.
pub fn not_empty(c: &mut Checks, at: &str, fields: &[(&str, Option<&str>)]) {
    for (name, value) in fields {
        if value.is_some_and(str::is_empty) {
            c.error(&join(at, name), EMPTY);
        }
    }
}

/// The same for each string of a list (`at` is the list's path).
pub fn not_empty_items<S: AsRef<str>>(c: &mut Checks, at: &str, items: Option<&Vec<S>>) {
    for (i, item) in items.into_iter().flatten().enumerate() {
        if item.as_ref().is_empty() {
            c.error(&format!("{at}[{i}]"), EMPTY);
        }
    }
}

/// And for each value of a map of strings (`at` is the map's path).
pub fn not_empty_values(c: &mut Checks, at: &str, map: Option<&IndexMap<String, String>>) {
    for (key, value) in map.into_iter().flatten() {
        if value.is_empty() {
            c.error(&join(at, key), EMPTY);
        }
    }
}

/// A map of header names (`typedefs.header_name`) to values (`at` is the map's path).
pub fn check_headers(c: &mut Checks, at: &str, headers: Option<&IndexMap<String, String>>) {
    for name in headers.into_iter().flat_map(|h| h.keys()) {
        if name.is_empty() {
            c.error(at, EMPTY);
        } else {
            c.header_name(&join(at, name), name);
        }
    }
    not_empty_values(c, at, headers);
}

/// `prefix.field`, or `field` at the top of `config`.
pub fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Kong's `quoted_list` for an entity check written inside a record: `'a', 'b'` (names
/// relative to that record, as Kong prints them).
pub fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kong's `mutually_required` written inside a record at `at` (its names relative to it):
/// reported at each missing field. Like Kong, it does not run when one of the values is a
/// vault reference.
pub fn mutually_required_in(c: &mut Checks, at: &str, fields: &[(&str, Option<&str>)]) {
    let set = |v: &Option<&str>| v.is_some_and(|s| !s.is_empty());
    let count = fields.iter().filter(|(_, v)| set(v)).count();
    if count == 0
        || count == fields.len()
        || fields.iter().any(|(_, v)| v.is_some_and(is_reference))
    {
        return;
    }
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let message = format!(
        "all or none of these fields must be set: {}",
        quoted_list(&names)
    );
    for (name, value) in fields {
        if !set(value) {
            c.error(&join(at, name), message.clone());
        }
    }
}

/// A Kong vault reference (`{vault://env/name}`): Kong skips the checks of a referenceable
/// field holding one, as its value is only known at run time.
pub fn is_reference(value: &str) -> bool {
    value.starts_with("{vault://") && value.ends_with('}')
}

/// What LuaSocket's `url.parse` finds in a URL (the parts Kong's checks look at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: Option<&'a str>,
    pub userinfo: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// LuaSocket's `url.parse`: the fragment goes, then `scheme:`, then `//authority` (up to the
/// next `/`), whose `userinfo@` and `:port` are split off what is left, the host. `None` for
/// an empty string, which it refuses.
pub fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    if url.is_empty() {
        return None;
    }
    let mut rest = url.split('#').next().unwrap_or_default();
    let mut parts = UrlParts {
        scheme: None,
        userinfo: None,
        host: None,
    };
    let bytes = rest.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_alphanumeric) {
        let end = bytes
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || b"+-.".contains(b)))
            .unwrap_or(bytes.len());
        if bytes.get(end) == Some(&b':') {
            parts.scheme = Some(&rest[..end]);
            rest = &rest[end + 1..];
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let mut authority = &after[..after.find('/').unwrap_or(after.len())];
        if let Some((userinfo, host)) = authority.split_once('@') {
            parts.userinfo = Some(userinfo);
            authority = host;
        }
        if let Some(colon) = authority.rfind(':')
            && !authority[colon + 1..].contains(']')
        {
            authority = &authority[..colon];
        }
        if !authority.is_empty() {
            let unbracketed = authority
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .filter(|a| !a.is_empty());
            parts.host = Some(unbracketed.unwrap_or(authority));
        }
    }
    Some(parts)
}

/// Kong's `typedefs.url`: LuaSocket must find a host and a scheme. Vault references pass.
pub fn check_url(c: &mut Checks, field: &str, url: &str) {
    if is_reference(url) {
        return;
    }
    match url_parts(url) {
        None => c.error(field, EMPTY),
        Some(u) if u.host.is_none() => c.error(field, "missing host in url"),
        Some(u) if u.scheme.is_none() => c.error(field, "missing scheme in url"),
        Some(_) => {}
    }
}

/// Kong's `typedefs.host` (`validate_host` over `kong.tools.ip.normalize_ip`): an IPv4 or
/// IPv6 address or a host name, without a port. Vault references pass.
pub fn check_host(c: &mut Checks, field: &str, host: &str) {
    if is_reference(host) {
        return;
    }
    if host.is_empty() {
        c.error(field, EMPTY);
    } else if let Err(e) = host_problem(host) {
        c.error(field, e);
    }
}

fn host_problem(host: &str) -> Result<(), String> {
    let invalid = || Err(format!("invalid value: {host}"));
    let has_port = || Err("must not have a port".to_string());
    let colons = host.matches(':').count();
    if colons > 1 {
        // IPv6, bare or as `[addr]` with an optional `:port`.
        let (addr, port) = match host.strip_prefix('[').and_then(|h| h.split_once(']')) {
            Some((addr, "")) => (addr, None),
            Some((addr, rest)) => match rest.strip_prefix(':') {
                Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => (addr, Some(p)),
                _ => return invalid(),
            },
            None => (host, None),
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return invalid();
        }
        return if port.is_some() { has_port() } else { Ok(()) };
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (host, None),
    };
    if host
        .replace(':', "")
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.')
        && !host.is_empty()
    {
        // IPv4: four dotted numbers up to 255.
        let octets: Vec<&str> = name.split('.').collect();
        let valid = octets.len() == 4
            && octets
                .iter()
                .all(|o| (1..=3).contains(&o.len()) && o.parse::<u16>().is_ok_and(|n| n <= 255));
        if !valid || (host.contains(':') && port.is_none()) {
            return invalid();
        }
        return if port.is_some() { has_port() } else { Ok(()) };
    }
    let valid_chars = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    let segments: Vec<&str> = name.split('.').collect();
    let valid_segments = segments
        .iter()
        .enumerate()
        .all(|(i, s)| !s.ends_with('-') && (!s.is_empty() || i + 1 == segments.len()));
    if !valid_chars || !valid_segments {
        return invalid();
    }
    if port.is_some() { has_port() } else { Ok(()) }
}

/// Kong's `typedefs.port`.
pub fn check_port(c: &mut Checks, field: &str, port: i64) {
    c.between(field, port, 0, 65535);
}

/// Kong's `typedefs.timeout` (milliseconds).
pub fn check_timeout(c: &mut Checks, field: &str, timeout: i64) {
    c.between(field, timeout, 0, 2_147_483_646);
}

/// Kong's `typedefs.lua_code`: names and code must not be empty. (Kong also dry-runs the code
/// in its Lua sandbox; switchyard runs no Lua, so that part is not checked.)
pub fn check_lua_code(c: &mut Checks, field: &str, code: Option<&IndexMap<String, String>>) {
    for (name, lua) in code.into_iter().flatten() {
        if name.is_empty() {
            c.error(field, EMPTY);
        } else if lua.is_empty() {
            c.error(&join(field, name), EMPTY);
        }
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

    #[test]
    fn hosts() {
        for good in [
            "localhost",
            "logs-01.loggly.com",
            "example.com.",
            "10.0.0.1",
            "::1",
            "[::1]",
            "under_score",
        ] {
            assert_eq!(host_problem(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("example.com:80", "must not have a port"),
            ("10.0.0.1:80", "must not have a port"),
            ("[::1]:80", "must not have a port"),
            ("bad host", "invalid value: bad host"),
            ("a-.b", "invalid value: a-.b"),
            ("a..b", "invalid value: a..b"),
            ("300.1.1.1", "invalid value: 300.1.1.1"),
            ("1::2::3", "invalid value: 1::2::3"),
            ("", "invalid value: "),
        ] {
            assert_eq!(host_problem(bad), Err(why.to_string()), "{bad}");
        }
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
