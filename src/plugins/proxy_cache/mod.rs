//! `proxy-cache` (PRIORITY 100, access, header_filter and body_filter), strategy `memory`:
//! caches upstream responses in memory by method, status and content type, keyed by the
//! request (with chosen query arguments and headers), for `cache_ttl` seconds or as
//! Cache-Control says, and marks answers with `X-Cache-Status` (Kong 3.x's
//! `kong/plugins/proxy-cache/handler.lua`).
//!
//! ```text
//! access: request cacheable? ─no─▶ Bypass
//!   key ─▶ store ─hit, fresh─▶ answer from the entry (Hit; the upstream is not contacted)
//!                ─none─▶ Miss (only-if-cached: 504)   ─stale for the request─▶ Refresh
//! response head (Miss/Refresh): response cacheable? ─no─▶ Bypass ─yes─▶ copy the headers
//! response body: each piece goes on to the client as it comes and is copied into the
//!   entry (up to the entry limit; past it the copy stops); stored at the body's end
//! ```
//!
//! The store (`store`) is one per process, bounded, least recently used out first; the
//! rules Kong applies (Cache-Control, TTLs, media types, the key) are in `rules`.

mod rules;
mod store;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use serde::Deserialize;

use super::schema::defaults::yes;
use super::{BodyFlow, BuildCx, Checks, Chunk, Ctx, Flow, Kind, Phases, Plugin, PluginSpec};
use super::{Request, ResponseHead, Validate};
use crate::exchange::respond;
use rules::{Directives, KeyParts};
use store::Namespace;
pub use store::{BodyCopy, Entry, MAX_BYTES, MAX_ENTRY, STORE_KEY, Store};

/// The plugin's `config` (Kong's `kong/plugins/proxy-cache/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_response_code")]
    pub response_code: Vec<i64>,
    #[serde(default = "default_request_method")]
    pub request_method: Vec<Method>,
    #[serde(default = "default_content_type")]
    pub content_type: Vec<String>,
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: i64,
    pub strategy: Strategy,
    #[serde(default)]
    pub cache_control: bool,
    #[serde(default)]
    pub ignore_uri_case: bool,
    pub storage_ttl: Option<i64>,
    #[serde(default)]
    pub memory: Memory,
    pub vary_query_params: Option<Vec<String>>,
    pub vary_headers: Option<Vec<String>>,
    #[serde(default)]
    pub response_headers: ResponseHeaders,
}

/// The cacheable request methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Head,
    Get,
    Post,
    Patch,
    Put,
}

/// Kong's `STRATEGY_TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Memory,
}

/// The `memory` strategy's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Memory {
    /// Kong's shared dict (`lua_shared_dict`) name.
    #[serde(default = "default_dictionary_name")]
    pub dictionary_name: String,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            dictionary_name: default_dictionary_name(),
        }
    }
}

/// Which diagnostic headers answers carry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseHeaders {
    #[serde(default = "yes")]
    pub age: bool,
    #[serde(rename = "X-Cache-Status", default = "yes")]
    pub x_cache_status: bool,
    #[serde(rename = "X-Cache-Key", default = "yes")]
    pub x_cache_key: bool,
}

impl Default for ResponseHeaders {
    fn default() -> Self {
        ResponseHeaders {
            age: true,
            x_cache_status: true,
            x_cache_key: true,
        }
    }
}

fn default_response_code() -> Vec<i64> {
    vec![200, 301, 404]
}

fn default_request_method() -> Vec<Method> {
    vec![Method::Get, Method::Head]
}

fn default_content_type() -> Vec<String> {
    vec!["text/plain".to_string(), "application/json".to_string()]
}

fn default_cache_ttl() -> i64 {
    300
}

fn default_dictionary_name() -> String {
    "kong_db_cache".to_string()
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        if self.response_code.is_empty() {
            c.error("response_code", "length must be at least 1");
        }
        for (i, code) in self.response_code.iter().enumerate() {
            c.between(&format!("response_code[{i}]"), *code, 100, 900);
        }
        c.greater_than("cache_ttl", self.cache_ttl, 0);
        // Kong's entity check that the memory strategy's shared dict exists has no
        // counterpart: switchyard has no nginx shared dicts.
    }
}

/// `proxy-cache` (PRIORITY 100).
pub struct ProxyCache;

impl PluginSpec for ProxyCache {
    const NAME: &'static str = "proxy-cache";
    const PRIORITY: i32 = 100;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(
        config: Self::Config,
        cx: &mut BuildCx<'_>,
    ) -> Result<Option<Arc<dyn Plugin>>, String> {
        // One store per process (every instance, every snapshot); each instance's entries
        // under a namespace kept by its id and config, so that a reload with the same
        // config finds them and a changed config starts empty.
        let store = cx.state.kept::<Store>(STORE_KEY);
        let ns = cx.state.kept::<Namespace>(&format!(
            "proxy-cache:{}:{:016x}",
            cx.id,
            config_hash(&config)
        ));
        let store = ns.attach(&store);
        Ok(Some(Arc::new(Cache { config, store, ns })))
    }
}

/// A stable hash of the whole config (its debug form lists every field).
fn config_hash(config: &Config) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::fnv::Fnv::default();
    h.write(format!("{config:?}").as_bytes());
    h.finish()
}

static X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
static X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");

/// The served plugin.
pub struct Cache {
    config: Config,
    store: Arc<Store>,
    /// Held for as long as a snapshot uses this instance: dropping the last one purges
    /// its entries.
    ns: Arc<Namespace>,
}

/// What the plugin knows of one request, between its hooks (in `Ctx::extensions`, which
/// asks for `Clone`; nothing clones it).
#[derive(Clone)]
struct Pending {
    /// The client sent `Kong-Debug`: every diagnostic header is sent, whatever the config.
    debug: bool,
    state: State,
}

#[derive(Clone)]
enum State {
    /// The request is not cacheable: `X-Cache-Status: Bypass`.
    Bypass,
    /// The plugin answered (a hit, or 504 for only-if-cached), or is done with it.
    Done,
    /// Not in the cache, or too old for this request: the response may be stored.
    Fetch(Box<Fetch>),
    /// The response is cacheable: its body is being copied.
    Collect(Box<Collect>),
}

#[derive(Clone)]
struct Fetch {
    key: [u8; 32],
    hex: HeaderValue,
    /// `Miss` or `Refresh`.
    status: &'static str,
    /// A HEAD request: the response has no body to wait for.
    head: bool,
}

#[derive(Clone)]
struct Collect {
    key: [u8; 32],
    status: StatusCode,
    headers: HeaderMap,
    ttl: f64,
    storage_ttl: f64,
    body: BodyCopy,
}

impl Cache {
    /// Kong's `set_header`: a diagnostic header, when configured or asked for.
    fn diagnostic(&self, debug: bool, h: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
        let on = match name.as_str() {
            "x-cache-status" => self.config.response_headers.x_cache_status,
            "x-cache-key" => self.config.response_headers.x_cache_key,
            _ => self.config.response_headers.age,
        };
        if debug || on {
            h.insert(name.clone(), value);
        }
    }

    /// Kong's `cacheable_request`. (Kong also looks at `ngx.var.authorization`, a variable
    /// nginx does not define, so an Authorization header never bypasses there: nor here.)
    fn cacheable_request(&self, method: &http::Method, cc: &Directives) -> bool {
        let listed = self
            .config
            .request_method
            .iter()
            .any(|m| m.as_str() == method.as_str());
        listed && !(self.config.cache_control && (cc.has("no-store") || cc.has("no-cache")))
    }

    /// Kong's `cacheable_response`; with it, the resource's TTL (Cache-Control's or
    /// `cache_ttl`).
    fn cacheable_response(&self, status: StatusCode, h: &HeaderMap) -> Option<f64> {
        if !self
            .config
            .response_code
            .contains(&i64::from(status.as_u16()))
        {
            return None;
        }
        // A missing, empty or repeated Content-Type cannot be examined.
        let mut types = h.get_all(header::CONTENT_TYPE).iter();
        let ct = types.next()?.to_str().ok()?;
        if ct.is_empty()
            || types.next().is_some()
            || !rules::content_type_allowed(ct, &self.config.content_type)
        {
            return None;
        }
        if !self.config.cache_control {
            return Some(self.config.cache_ttl as f64);
        }
        let cc = Directives::of(h);
        if cc.has("private") || cc.has("no-store") || cc.has("no-cache") {
            return None;
        }
        let ttl = rules::resource_ttl(&cc, h, SystemTime::now());
        (ttl > 0.0).then_some(ttl)
    }

    /// Whether an entry of `age` seconds may answer this request (Kong: the request's
    /// max-age, max-stale and min-fresh with cache_control, else `cache_ttl`).
    fn fresh_enough(&self, entry: &Entry, age: u64, cc: &Directives) -> bool {
        let age = age as f64;
        if !self.config.cache_control {
            return age <= self.config.cache_ttl as f64;
        }
        let too_old = cc.num("max-age").is_some_and(|m| age > m)
            || cc.num("max-stale").is_some_and(|m| age - entry.ttl > m)
            || cc.num("min-fresh").is_some_and(|m| entry.ttl - age < m);
        !too_old
    }

    /// Kong's cache key of this request.
    fn key(&self, ctx: &Ctx<'_>, req: &Request<'_>) -> [u8; 32] {
        let version = match req.head().version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        };
        let method = req.method().as_str();
        let mut uri = rules::request_line_uri(method, req.path(), req.query(), version);
        if self.config.ignore_uri_case {
            // Lua's `string.lower`: ASCII letters only.
            uri = uri.to_ascii_lowercase();
        }
        let parts = KeyParts {
            consumer: ctx.consumer.as_ref().map(|c| &*c.id),
            route: ctx.route.map(|r| &*r.id),
            method,
            uri: &uri,
            query: req.query(),
            headers: req.headers(),
        };
        rules::cache_key(
            &parts,
            self.config.vary_query_params.as_deref(),
            self.config.vary_headers.as_deref(),
        )
    }

    /// A hit: the entry's response, with its age and the plugin's headers.
    fn hit(
        &self,
        entry: &Entry,
        age: u64,
        hex: HeaderValue,
        debug: bool,
    ) -> crate::exchange::Response {
        let mut resp = respond::bytes(entry.status, entry.body.clone());
        *resp.headers_mut() = entry.headers.clone();
        let h = resp.headers_mut();
        self.diagnostic(debug, h, &header::AGE, HeaderValue::from(age));
        self.diagnostic(debug, h, &X_CACHE_STATUS, HeaderValue::from_static("Hit"));
        self.diagnostic(debug, h, &X_CACHE_KEY, hex);
        resp
    }

    /// The response head of a request the cache may store: mark it, and start copying it
    /// when it is cacheable. `None`: nothing more to do for this request.
    fn start(&self, f: Fetch, debug: bool, resp: &mut ResponseHead<'_>) -> Option<Box<Collect>> {
        let status = resp.status;
        let h = resp.headers_mut();
        self.diagnostic(debug, h, &X_CACHE_KEY, f.hex);
        let Some(ttl) = self.cacheable_response(status, h) else {
            self.diagnostic(
                debug,
                h,
                &X_CACHE_STATUS,
                HeaderValue::from_static("Bypass"),
            );
            return None;
        };
        self.diagnostic(
            debug,
            h,
            &X_CACHE_STATUS,
            HeaderValue::from_static(f.status),
        );
        let storage_ttl = match self.config.storage_ttl {
            Some(t) => t as f64,
            None => ttl,
        };
        let collect = Box::new(Collect {
            key: f.key,
            status,
            headers: stored_headers(h),
            ttl,
            storage_ttl,
            body: BodyCopy::default(),
        });
        // No body will pass through the body hook: store the empty one now.
        let bodyless = f.head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if bodyless {
            self.store_entry(*collect, Bytes::new());
            return None;
        }
        Some(collect)
    }

    fn store_entry(&self, c: Collect, body: Bytes) {
        // Kong's shared dict refuses a negative TTL: nothing is stored.
        if c.storage_ttl < 0.0 {
            return;
        }
        let entry = Entry::new(
            c.status,
            c.headers,
            body,
            c.ttl,
            c.storage_ttl,
            Instant::now(),
        );
        if !self.store.put(self.ns.id, &c.key, entry) {
            tracing::debug!("proxy-cache: response over the entry limit, not stored");
        }
    }
}

/// The headers an entry answers with: the response's, less the hop-by-hop ones, the length
/// (a hit's comes from its body), rate-limit counters, and the plugin's own (Kong's
/// `overwritable_header` and `reset_res_header`).
pub(crate) fn stored_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (name, value) in h {
        let n = name.as_str();
        let dropped = matches!(
            n,
            "connection"
                | "keep-alive"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailers"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
                | "age"
                | "x-cache-status"
                | "x-cache-key"
        ) || n.contains("ratelimit-remaining");
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Head => "HEAD",
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Put => "PUT",
        }
    }
}

impl Plugin for Cache {
    fn name(&self) -> &str {
        ProxyCache::NAME
    }

    fn priority(&self) -> i32 {
        ProxyCache::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS | Phases::RESPONSE_HEAD | Phases::RESPONSE_BODY
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let debug = req.headers().contains_key("kong-debug");
        let cc = if self.config.cache_control {
            Directives::of(req.headers())
        } else {
            Directives::default()
        };
        if !self.cacheable_request(req.method(), &cc) {
            ctx.extensions.insert(Pending {
                debug,
                state: State::Bypass,
            });
            return Flow::Continue;
        }
        let key = self.key(ctx, req);
        let hex = HeaderValue::from_maybe_shared(Bytes::from(rules::hex(&key)))
            .expect("hex is a header value");
        let now = Instant::now();
        let status = match self.store.get(self.ns.id, &key, now) {
            Some(entry) => {
                let age = entry.age(now);
                if self.fresh_enough(&entry, age, &cc) {
                    ctx.extensions.insert(Pending {
                        debug,
                        state: State::Done,
                    });
                    return Flow::Respond(self.hit(&entry, age, hex, debug));
                }
                "Refresh"
            }
            None if self.config.cache_control && cc.has("only-if-cached") => {
                // RFC 9111 §5.2.1.7: nothing stored, and the client wants nothing else.
                let mut resp = respond::bytes(StatusCode::GATEWAY_TIMEOUT, Bytes::new());
                self.diagnostic(debug, resp.headers_mut(), &X_CACHE_KEY, hex);
                ctx.extensions.insert(Pending {
                    debug,
                    state: State::Done,
                });
                return Flow::Respond(resp);
            }
            None => "Miss",
        };
        let head = req.method() == http::Method::HEAD;
        let fetch = Fetch {
            key,
            hex,
            status,
            head,
        };
        ctx.extensions.insert(Pending {
            debug,
            state: State::Fetch(Box::new(fetch)),
        });
        Flow::Continue
    }

    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        let Some(p) = ctx.extensions.get_mut::<Pending>() else {
            return;
        };
        match std::mem::replace(&mut p.state, State::Done) {
            State::Bypass => {
                let h = resp.headers_mut();
                self.diagnostic(
                    p.debug,
                    h,
                    &X_CACHE_STATUS,
                    HeaderValue::from_static("Bypass"),
                );
            }
            State::Fetch(f) => {
                if let Some(c) = self.start(*f, p.debug, resp) {
                    p.state = State::Collect(c);
                }
            }
            State::Done | State::Collect(_) => {}
        }
    }

    fn response_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        let Some(p) = ctx.extensions.get_mut::<Pending>() else {
            return BodyFlow::Continue;
        };
        let State::Collect(c) = &mut p.state else {
            return BodyFlow::Continue;
        };
        c.body.push(&chunk.data, self.store.max_entry());
        if chunk.end
            && let State::Collect(mut c) = std::mem::replace(&mut p.state, State::Done)
            && let Some(body) = c.body.take()
        {
            self.store_entry(*c, body);
        }
        BodyFlow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    fn errors(yaml: &str) -> Vec<String> {
        parse::<Config>(yaml).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c: Config = parse("strategy: memory").unwrap();
        assert_eq!(c.strategy, Strategy::Memory);
        assert_eq!(c.response_code, [200, 301, 404]);
        assert_eq!(c.request_method, [Method::Get, Method::Head]);
        assert_eq!(c.content_type, ["text/plain", "application/json"]);
        assert_eq!(c.cache_ttl, 300);
        assert!(!c.cache_control && !c.ignore_uri_case);
        assert_eq!(c.storage_ttl, None);
        assert_eq!(c.memory.dictionary_name, "kong_db_cache");
        assert_eq!((c.vary_query_params, c.vary_headers), (None, None));
        assert_eq!(c.response_headers, ResponseHeaders::default());
        assert!(c.response_headers.x_cache_key);
    }

    #[test]
    fn all_fields() {
        let c: Config = parse(
            "response_code: [200, 203]\nrequest_method: [GET, POST]\n\
             content_type: ['application/json; charset=utf-8']\ncache_ttl: 60\nstrategy: memory\n\
             cache_control: true\nignore_uri_case: true\nstorage_ttl: 3600\n\
             memory: {dictionary_name: my_cache}\nvary_query_params: [page]\nvary_headers: [x-lang]\n\
             response_headers: {age: false, X-Cache-Status: true, X-Cache-Key: false}\n",
        )
        .unwrap();
        assert_eq!(c.request_method, [Method::Get, Method::Post]);
        assert_eq!(c.storage_ttl, Some(3600));
        assert_eq!(c.memory.dictionary_name, "my_cache");
        assert!(!c.response_headers.age && !c.response_headers.x_cache_key);
        assert_eq!(c.vary_headers, Some(vec!["x-lang".to_string()]));
    }

    #[test]
    fn rules() {
        assert_eq!(errors("cache_ttl: 30"), [": missing field `strategy`"]);
        assert_eq!(
            errors("strategy: redis"),
            ["strategy: `redis` is not one of: memory"]
        );
        assert_eq!(
            errors("strategy: memory\nresponse_code: [200, 99, 901]\ncache_ttl: 0"),
            [
                "response_code[1]: value should be between 100 and 900",
                "response_code[2]: value should be between 100 and 900",
                "cache_ttl: value must be greater than 0",
            ]
        );
        assert_eq!(
            errors("strategy: memory\nresponse_code: []"),
            ["response_code: length must be at least 1"]
        );
        assert_eq!(
            errors("strategy: memory\nrequest_method: [GET, DELETE]"),
            ["request_method[1]: `DELETE` is not one of: HEAD, GET, POST, PATCH, PUT"]
        );
    }

    #[test]
    fn unknown_field() {
        let errs = errors("strategy: memory\ncache_tll: 1");
        assert!(
            errs[0].starts_with("cache_tll: unknown field `cache_tll`"),
            "{errs:?}"
        );
        assert!(errs[0].contains("did you mean `cache_ttl`"), "{errs:?}");
        let errs = errors("strategy: memory\nresponse_headers: {x-cache-status: false}");
        assert!(
            errs[0].starts_with("response_headers.x-cache-status: unknown field"),
            "{errs:?}"
        );
    }

    fn cache(yaml: &str) -> Cache {
        Cache {
            config: parse(yaml).unwrap(),
            store: Arc::new(Store::default()),
            ns: Arc::new(Namespace::default()),
        }
    }

    fn head(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cacheable_requests() {
        let plain = cache("strategy: memory");
        let none = Directives::default();
        let no_cache = Directives::parse("no-cache");
        assert!(plain.cacheable_request(&http::Method::GET, &none));
        assert!(plain.cacheable_request(&http::Method::HEAD, &none));
        assert!(!plain.cacheable_request(&http::Method::POST, &none));
        // Request directives count only with cache_control.
        assert!(plain.cacheable_request(&http::Method::GET, &no_cache));
        let cc = cache("strategy: memory\ncache_control: true\nrequest_method: [POST]");
        assert!(cc.cacheable_request(&http::Method::POST, &none));
        assert!(!cc.cacheable_request(&http::Method::GET, &none));
        assert!(!cc.cacheable_request(&http::Method::POST, &no_cache));
        let no_store = Directives::parse("no-store");
        assert!(!cc.cacheable_request(&http::Method::POST, &no_store));
    }

    #[test]
    fn cacheable_responses() {
        let plain = cache("strategy: memory");
        let json = head(&[("content-type", "application/json")]);
        assert_eq!(plain.cacheable_response(StatusCode::OK, &json), Some(300.0));
        assert_eq!(
            plain.cacheable_response(StatusCode::NOT_FOUND, &json),
            Some(300.0)
        );
        assert_eq!(plain.cacheable_response(StatusCode::CREATED, &json), None);
        assert_eq!(plain.cacheable_response(StatusCode::OK, &head(&[])), None);
        let two = head(&[
            ("content-type", "text/plain"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(plain.cacheable_response(StatusCode::OK, &two), None);
        // Without cache_control, the response's directives do not matter.
        let private = head(&[
            ("content-type", "text/plain"),
            ("cache-control", "private, max-age=10"),
        ]);
        assert_eq!(
            plain.cacheable_response(StatusCode::OK, &private),
            Some(300.0)
        );

        let cc = cache("strategy: memory\ncache_control: true");
        assert_eq!(cc.cacheable_response(StatusCode::OK, &private), None);
        assert_eq!(
            cc.cacheable_response(StatusCode::OK, &json),
            None,
            "no lifetime"
        );
        let max = head(&[
            ("content-type", "text/plain"),
            ("cache-control", "public, max-age=10, s-maxage=20"),
        ]);
        assert_eq!(cc.cacheable_response(StatusCode::OK, &max), Some(20.0));
        let zero = head(&[
            ("content-type", "text/plain"),
            ("cache-control", "max-age=0"),
        ]);
        assert_eq!(cc.cacheable_response(StatusCode::OK, &zero), None);
    }

    #[test]
    fn freshness() {
        let now = Instant::now();
        let entry = |ttl: f64| {
            Entry::new(
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::new(),
                ttl,
                ttl,
                now,
            )
        };
        let plain = cache("strategy: memory\ncache_ttl: 5");
        let none = Directives::default();
        assert!(plain.fresh_enough(&entry(5.0), 5, &none));
        assert!(!plain.fresh_enough(&entry(5.0), 6, &none));
        // Without cache_control the request's directives are not read.
        let min_fresh = Directives::parse("min-fresh=100");
        assert!(plain.fresh_enough(&entry(5.0), 0, &min_fresh));

        let cc = cache("strategy: memory\ncache_control: true\ncache_ttl: 5");
        // Kong serves an entry older than its TTL while it is stored (storage_ttl), unless
        // the request says otherwise.
        assert!(cc.fresh_enough(&entry(10.0), 20, &none));
        let max_age = Directives::parse("max-age=3");
        assert!(cc.fresh_enough(&entry(10.0), 3, &max_age));
        assert!(!cc.fresh_enough(&entry(10.0), 4, &max_age));
        let max_stale = Directives::parse("max-stale=2");
        assert!(cc.fresh_enough(&entry(10.0), 12, &max_stale));
        assert!(!cc.fresh_enough(&entry(10.0), 13, &max_stale));
        assert!(!cc.fresh_enough(&entry(10.0), 0, &min_fresh));
        assert!(cc.fresh_enough(&entry(200.0), 0, &min_fresh));
        // A directive without a number is taken as absent.
        assert!(cc.fresh_enough(&entry(10.0), 9, &Directives::parse("max-age")));
    }

    #[test]
    fn stored_headers_drop_hop_by_hop_and_the_plugins_own() {
        let h = head(&[
            ("content-type", "text/plain"),
            ("content-length", "3"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("x-ratelimit-remaining-minute", "4"),
            ("ratelimit-remaining", "4"),
            ("x-ratelimit-limit-minute", "5"),
            ("age", "3"),
            ("x-cache-status", "Miss"),
            ("x-cache-key", "k"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        let kept = stored_headers(&h);
        let names: Vec<&str> = kept.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "x-ratelimit-limit-minute", "set-cookie"]
        );
        assert_eq!(kept.get_all("set-cookie").iter().count(), 2);
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "strategy: memory",
            "strategy: memory\nresponse_code: [200]",
            "strategy: memory\ncache_ttl: 1",
            "strategy: memory\nvary_headers: [x-lang]",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
