//! `cors` (PRIORITY 2000, access and response headers): answers CORS preflight `OPTIONS`
//! requests itself (unless `preflight_continue`) and adds the `Access-Control-*` headers to
//! responses for origins in `origins` (exact values or regexes; `*` or none: any origin).
//! As Kong's `kong/plugins/cors/handler.lua`: the origins are sorted out once, when the plugin
//! is built (exact origins normalised, regexes compiled), never per request.

use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method as HttpMethod, StatusCode};
use serde::Deserialize;

use super::schema::defaults::yes;
use super::schema::typedefs::{check_items, is_regex, non_empty_items};
use super::{
    BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, ResponseHead, Validate,
};
use crate::exchange::respond;

/// The plugin's `config` (Kong's `kong/plugins/cors/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Allowed origins: `*`, exact values or regexes. Unset: any origin.
    pub origins: Option<Vec<String>>,
    /// `Access-Control-Allow-Headers` (unset: the request's `Access-Control-Request-Headers`).
    pub headers: Option<Vec<String>>,
    /// `Access-Control-Expose-Headers`.
    pub exposed_headers: Option<Vec<String>>,
    /// `Access-Control-Allow-Methods`.
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// `Access-Control-Max-Age`, in seconds.
    pub max_age: Option<f64>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub credentials: bool,
    /// `Access-Control-Allow-Private-Network: true`.
    #[serde(default)]
    pub private_network: bool,
    /// Preflight requests are proxied instead of answered.
    #[serde(default)]
    pub preflight_continue: bool,
    /// No CORS headers are added to requests without an `Origin`.
    #[serde(default = "yes")]
    pub allow_origin_absent: bool,
}

/// The methods `methods` may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "HEAD")]
    Head,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "PATCH")]
    Patch,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "OPTIONS")]
    Options,
    #[serde(rename = "TRACE")]
    Trace,
    #[serde(rename = "CONNECT")]
    Connect,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
        }
    }
}

fn default_methods() -> Vec<Method> {
    use Method::*;
    vec![Get, Head, Put, Patch, Post, Delete, Options, Trace, Connect]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        // Kong's `validate_asterisk_or_regex`.
        let origins = self.origins.as_deref().unwrap_or_default();
        check_items(c, "origins", origins, |origin| {
            if origin == "*" || is_regex(origin) {
                Ok(())
            } else {
                Err(format!("'{origin}' is not a valid regex"))
            }
        });
        for (field, list) in [
            ("headers", &self.headers),
            ("exposed_headers", &self.exposed_headers),
        ] {
            non_empty_items(c, field, list.as_deref().unwrap_or_default());
        }
    }
}

/// `cors` (PRIORITY 2000).
pub struct Cors;

impl PluginSpec for Cors {
    const NAME: &'static str = "cors";
    const PRIORITY: i32 = 2000;
    const KIND: Kind = Kind::Acts;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        // A regex the schema accepts (PCRE) but the regex crate cannot run keeps the
        // plugin unbuilt: its routes stay closed rather than match origins differently.
        Ok(Handler::compile(&config).map(|h| Arc::new(h) as Arc<dyn Plugin>))
    }
}

static ACAO: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ACAC: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static ACAH: HeaderName = HeaderName::from_static("access-control-allow-headers");
static ACAM: HeaderName = HeaderName::from_static("access-control-allow-methods");
static ACMA: HeaderName = HeaderName::from_static("access-control-max-age");
static ACEH: HeaderName = HeaderName::from_static("access-control-expose-headers");
static ACAPN: HeaderName = HeaderName::from_static("access-control-allow-private-network");
static ACRM: HeaderName = HeaderName::from_static("access-control-request-method");
static ACRH: HeaderName = HeaderName::from_static("access-control-request-headers");
static ACRPN: HeaderName = HeaderName::from_static("access-control-request-private-network");

/// How the configured origins decide `Access-Control-Allow-Origin` (Kong's
/// `configure_origin`).
enum Origins {
    /// No origins, or only `*`: `*`, and no `Vary`.
    Any,
    /// One origin that does not look like a regex: sent whatever the request's origin is.
    Fixed(HeaderValue),
    /// Matched against the request's origin, in order; a `*` among them allows any.
    List(Vec<Allowed>),
}

enum Allowed {
    Star,
    /// An origin normalised (`scheme://host[:port]`, default ports dropped).
    Exact(String),
    /// Anchored at both ends; matched against the origin's host when the entry has no `:`,
    /// else against the normalised origin.
    Regex {
        re: regex::Regex,
        by_host: bool,
    },
}

struct Handler {
    origins: Origins,
    credentials: bool,
    /// `Access-Control-Allow-Headers`, when configured (else the request's are echoed).
    headers: Option<HeaderValue>,
    exposed_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

/// Kong's test for an origin that is not a regex (`^[A-Za-z0-9.:/-]+$`).
fn plain_origin(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'-'))
}

/// A comma-joined list as one header value (`None` for an empty list or an invalid value).
fn joined<S: AsRef<str>>(items: &[S]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    let v: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    HeaderValue::from_str(&v.join(",")).ok()
}

/// Lua's `tostring` of a number: integers without a fraction.
fn lua_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl Handler {
    fn compile(c: &Config) -> Option<Handler> {
        let origins = match c.origins.as_deref().unwrap_or_default() {
            [] => Origins::Any,
            [one] if one == "*" => Origins::Any,
            [one] if plain_origin(one) => Origins::Fixed(HeaderValue::from_str(one).ok()?),
            many => Origins::List(many.iter().map(|o| allowed(o)).collect::<Option<_>>()?),
        };
        Some(Handler {
            origins,
            credentials: c.credentials,
            headers: c.headers.as_deref().and_then(joined),
            exposed_headers: c.exposed_headers.as_deref().and_then(joined),
            // An empty list is sent empty, as Kong's `concat` makes it.
            methods: HeaderValue::from_str(
                &c.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .ok()?,
            max_age: c
                .max_age
                .and_then(|n| HeaderValue::from_str(&lua_number(n)).ok()),
            private_network: c.private_network,
            preflight_continue: c.preflight_continue,
            allow_origin_absent: c.allow_origin_absent,
        })
    }

    /// Kong's `configure_origin` then `configure_credentials` on `headers`. `vary_add`:
    /// Kong adds `Vary: Origin` in header_filter and sets it on a preflight.
    fn configure(
        &self,
        headers: &mut http::HeaderMap,
        origin: Option<&HeaderValue>,
        vary_add: bool,
    ) {
        let vary = |h: &mut http::HeaderMap| {
            let v = HeaderValue::from_static("Origin");
            if vary_add {
                h.append(header::VARY, v);
            } else {
                h.insert(header::VARY, v);
            }
        };
        let origin = origin.filter(|o| !o.is_empty());
        let allow_all = match &self.origins {
            Origins::Any => {
                headers.insert(ACAO.clone(), HeaderValue::from_static("*"));
                true
            }
            Origins::Fixed(v) => {
                vary(headers);
                headers.insert(ACAO.clone(), v.clone());
                false
            }
            Origins::List(list) => {
                vary(headers);
                match origin
                    .and_then(|o| o.to_str().ok())
                    .map(|o| (o, matched(list, o)))
                {
                    Some((_, Match::Star)) => {
                        headers.insert(ACAO.clone(), HeaderValue::from_static("*"));
                        true
                    }
                    Some((_, Match::Origin(normalised))) => {
                        match HeaderValue::from_str(&normalised) {
                            Ok(v) => headers.insert(ACAO.clone(), v),
                            Err(_) => headers.remove(&ACAO),
                        };
                        false
                    }
                    _ => {
                        headers.remove(&ACAO);
                        false
                    }
                }
            }
        };
        if !self.credentials {
            return;
        }
        let t = HeaderValue::from_static("true");
        if !allow_all {
            headers.insert(ACAC.clone(), t);
        } else if let Some(o) = origin {
            // `*` cannot go with credentials: the request's origin is allowed instead.
            vary(headers);
            headers.insert(ACAO.clone(), o.clone());
            headers.insert(ACAC.clone(), t);
        }
    }

    /// Kong's access phase for a preflight it answers: 200, no body, the CORS headers.
    fn preflight(&self, req: &Request<'_>, origin: &HeaderValue) -> Flow {
        let mut resp = respond::bytes(StatusCode::OK, bytes::Bytes::new());
        let h = resp.headers_mut();
        self.configure(h, Some(origin), false);
        match (&self.headers, req.headers().get(&ACRH)) {
            (Some(v), _) | (None, Some(v)) => {
                h.insert(ACAH.clone(), v.clone());
            }
            (None, None) => {}
        }
        h.insert(ACAM.clone(), self.methods.clone());
        if let Some(v) = &self.max_age {
            h.insert(ACMA.clone(), v.clone());
        }
        if self.private_network
            && req
                .headers()
                .get(&ACRPN)
                .is_some_and(|v| v.as_bytes() == b"true")
        {
            h.insert(ACAPN.clone(), HeaderValue::from_static("true"));
        }
        Flow::Respond(resp)
    }
}

fn allowed(entry: &str) -> Option<Allowed> {
    if entry == "*" {
        return Some(Allowed::Star);
    }
    let by_host = !entry.contains(':');
    if plain_origin(entry) {
        return Some(Allowed::Exact(normalize_origin(entry).0));
    }
    // Kong 0.x did not anchor regexes: Kong anchors them at both ends, keeping a user's own
    // anchors.
    let body = entry.strip_prefix('^').unwrap_or(entry);
    let tail = if body.ends_with('$') { "" } else { "$" };
    let re = regex::Regex::new(&format!("^(?:{body}{tail})")).ok()?;
    Some(Allowed::Regex { re, by_host })
}

enum Match {
    Star,
    Origin(String),
    None,
}

fn matched(list: &[Allowed], origin: &str) -> Match {
    // A `*` anywhere allows any origin, before any origin is compared (Kong's cache build).
    if list.iter().any(|a| matches!(a, Allowed::Star)) {
        return Match::Star;
    }
    let (domain, host) = normalize_origin(origin);
    for a in list {
        let found = match a {
            Allowed::Star => true,
            Allowed::Exact(d) => *d == domain,
            Allowed::Regex { re, by_host } => re.is_match(if *by_host { host } else { &domain }),
        };
        if found {
            return Match::Origin(domain);
        }
    }
    Match::None
}

/// Kong's `normalize_origin` (LuaSocket's `url.parse`): `scheme://host[:port]` without the
/// scheme's default port, and the host; a value without `//` is its own domain and host.
fn normalize_origin(origin: &str) -> (String, &str) {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return (origin.to_string(), origin);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return (origin.to_string(), origin);
    }
    let port = port.filter(|p| !matches!((scheme, *p), ("http", "80") | ("https", "443")));
    let domain = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    (domain, host)
}

/// Set on a preflight: the response-head phase adds no CORS headers to it (Kong's
/// `skip_response_headers`), whether the gateway answered it or the upstream did.
#[derive(Clone, Copy)]
struct Preflight;

/// The request's non-empty `Origin`, for the response-head phase.
#[derive(Clone)]
struct RequestOrigin(HeaderValue);

impl Plugin for Handler {
    fn name(&self) -> &str {
        Cors::NAME
    }
    fn priority(&self) -> i32 {
        Cors::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS | Phases::RESPONSE_HEAD
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let Some(origin) = req.headers().get(header::ORIGIN).filter(|o| !o.is_empty()) else {
            return Flow::Continue;
        };
        // The response-head hook does not see the request: it reads the origin from here.
        ctx.extensions.insert(RequestOrigin(origin.clone()));
        if req.method() != HttpMethod::OPTIONS || !req.headers().contains_key(&ACRM) {
            return Flow::Continue;
        }
        ctx.extensions.insert(Preflight);
        if self.preflight_continue {
            return Flow::Continue;
        }
        let origin = origin.clone();
        self.preflight(req, &origin)
    }

    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        if ctx.extensions.get::<Preflight>().is_some() {
            return;
        }
        let origin = ctx.extensions.get::<RequestOrigin>().map(|o| &o.0);
        if origin.is_none() && !self.allow_origin_absent {
            return;
        }
        self.configure(resp.headers_mut(), origin, true);
        if let Some(v) = &self.exposed_headers {
            resp.headers_mut().insert(ACEH.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.methods.len(), 9);
        assert_eq!(c.methods[0].as_str(), "GET");
        assert_eq!(
            (c.origins, c.headers, c.exposed_headers, c.max_age),
            (None, None, None, None)
        );
        assert!(!c.credentials && !c.private_network && !c.preflight_continue);
        assert!(c.allow_origin_absent);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "origins: ['http://example.test', 'https://.*\\.example\\.org', '*']\n\
             headers: [origin, type, accepts]\nexposed_headers: [x-auth-token]\n\
             methods: [GET, POST]\nmax_age: 23\ncredentials: true\nprivate_network: true\n\
             preflight_continue: true\nallow_origin_absent: false",
        )
        .unwrap();
        assert_eq!(c.origins.unwrap().len(), 3);
        assert_eq!(c.methods, [Method::Get, Method::Post]);
        assert_eq!(c.max_age, Some(23.0));
        assert!(c.credentials && c.private_network && c.preflight_continue);
        assert!(!c.allow_origin_absent);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("origins: ['http://(unclosed', '']\nheaders: ['']").unwrap_err(),
            [
                "origins[0]: 'http://(unclosed' is not a valid regex",
                "origins[1]: length must be at least 1",
                "headers[0]: length must be at least 1",
            ]
        );
        assert_eq!(
            parse::<Config>("methods: [GET, get]").unwrap_err(),
            [
                "methods[1]: `get` is not one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"
            ]
        );
        // Conformance case plugin-schema-wrong-type.
        assert_eq!(
            parse::<Config>("max_age: one hour").unwrap_err(),
            ["max_age: expected a number, found `one hour`"]
        );
        assert_eq!(
            parse::<Config>("origin: ['*']").unwrap_err(),
            ["origin: unknown field `origin`; did you mean `origins`?"]
        );
    }

    #[test]
    fn origins_are_normalised_as_kong_does() {
        assert_eq!(
            normalize_origin("http://a.test:80"),
            ("http://a.test".to_string(), "a.test")
        );
        assert_eq!(
            normalize_origin("https://a.test:443/x"),
            ("https://a.test".to_string(), "a.test")
        );
        assert_eq!(
            normalize_origin("https://a.test:8443"),
            ("https://a.test:8443".to_string(), "a.test")
        );
        assert_eq!(normalize_origin("null"), ("null".to_string(), "null"));
    }

    #[test]
    fn regex_origins_are_anchored_and_matched_on_the_host_without_a_colon() {
        let list: Vec<Allowed> = [r".*\.example\.org", r"^https://(a|b)\.test"]
            .iter()
            .map(|o| allowed(o).unwrap())
            .collect();
        let m = |o: &str| match matched(&list, o) {
            Match::Origin(d) => Some(d),
            _ => None,
        };
        assert_eq!(
            m("http://x.example.org").as_deref(),
            Some("http://x.example.org")
        );
        assert_eq!(m("http://x.example.org.evil"), None);
        assert_eq!(m("https://a.test").as_deref(), Some("https://a.test"));
        assert_eq!(m("https://a.test.evil"), None);
        assert_eq!(m("http://a.test"), None);
        assert!(matches!(
            matched(&[Allowed::Star], "http://any"),
            Match::Star
        ));
        assert_eq!(lua_number(23.0), "23");
        assert_eq!(lua_number(1.5), "1.5");
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "credentials: true\nexposed_headers: [X-Auth-Token]\nheaders: [Accept, Accept-Version, Content-Length, Content-MD5, Content-Type, Date, X-Auth-Token, Authorization]\nmax_age: 3600\nmethods: [GET, POST, PUT, DELETE, PATCH, OPTIONS]\norigins: ['*']",
            "credentials: true\nheaders: [Accept, Authorization, Content-Type]\nmax_age: 3600\nmethods: [GET, POST, PUT, PATCH, DELETE, OPTIONS]\norigins: ['http://localhost:3000', 'http://127.0.0.1:3000', 'chrome-extension://pajdhnimlepbeghkjhphkkkjjjbopbne']",
            "credentials: false\nexposed_headers: null\nheaders: ['*']\nmax_age: null\nmethods: [GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT]\norigins: ['*']\npreflight_continue: false",
            "credentials: false\nexposed_headers: null\nheaders: null\nmax_age: null\nmethods: [GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT]\norigins: null\npreflight_continue: false",
            "credentials: true\nexposed_headers: null\nheaders: [apikey, Content-Type]\nmax_age: 3600\nmethods: [GET]\norigins: ['*']\npreflight_continue: false\nprivate_network: false",
            "origins: ['https://rta.ae', 'https://*.rta.ae', 'http://localhost:3000']",
            "origins: ['http://my-site.test', 'http://other.test']",
            "preflight_continue: true",
            "credentials: true\nexposed_headers: [x-auth-token]\nmax_age: 10\norigins: ['http://example.test']",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
