//! Plugins: Kong's phase model as one trait. Each request runs the chain compiled for its
//! route (global ▸ service ▸ route, the most specific instance of each plugin winning), in
//! descending PRIORITY, through the phases
//!
//! rewrite ─▶ access ─▶ (proxy) ─▶ header_filter ─▶ body_filter ─▶ log
//!
//! Every hook has a default that does nothing, so a plugin implements only its phases. A hook
//! that answers the client itself returns `Flow::Respond`; one that must wait (a Redis call, a
//! token fetch) returns `Flow::Wait` with its future, so plugins that never wait cost no
//! allocation.

pub mod ocelot_headers;
pub mod ocelot_ip;
pub mod ocelot_rate_limit;
pub mod request_termination;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};

use crate::config::diag::Path;
use crate::config::node::Node;
use crate::proxy::body::ProxyBody;

pub type Response = http::Response<ProxyBody>;

/// What a request-side hook decided.
pub enum Flow {
    Continue,
    /// Answer the client now; later request phases and the upstream are skipped.
    Respond(Response),
    /// The decision needs I/O.
    Wait(Pin<Box<dyn Future<Output = Flow> + Send>>),
}

/// The request as plugins see it in rewrite and access: the head, never the body, which
/// streams to the upstream untouched unless a body hook asks for it.
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// The raw path (not normalised) and query, as the client sent them.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a mut HeaderMap,
    pub scheme: &'static str,
    pub host: &'a str,
}

/// Per-request state shared by every hook of every plugin in the chain.
pub struct Ctx {
    pub request_id: crate::proxy::RequestId,
    pub client: SocketAddr,
    pub started: Instant,
    pub route_name: Option<Arc<str>>,
    pub service_name: Option<Arc<str>>,
    /// The client's Host header as sent (Ocelot's `{UpstreamHost}`).
    pub upstream_host: Option<http::HeaderValue>,
    /// Headers a request-side hook wants on the response, whoever answers (rate-limit
    /// counters, ...); added after `header_filter`.
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// The phase hooks. Defaults do nothing; see the module docs for the order.
pub trait Plugin: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Kong's PRIORITY: higher runs first in every phase.
    fn priority(&self) -> i32;

    /// Before routing decisions are final; only global plugins run here, as in Kong.
    fn rewrite(&self, _ctx: &mut Ctx, _req: &mut RequestView<'_>) -> Flow {
        Flow::Continue
    }

    /// After the route is known, before the upstream is contacted.
    fn access(&self, _ctx: &mut Ctx, _req: &mut RequestView<'_>) -> Flow {
        Flow::Continue
    }

    /// The response head, from the upstream or from a plugin that answered.
    fn header_filter(&self, _ctx: &mut Ctx, _status: &mut StatusCode, _headers: &mut HeaderMap) {}

    /// After the response is sent (or the client went away).
    fn log(&self, _ctx: &Ctx, _status: StatusCode) {}
}

/// The plugins of one route, in execution order.
#[derive(Clone, Default)]
pub struct Chain {
    pub plugins: Vec<Arc<dyn Plugin>>,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

/// What switchyard does with a configured plugin of a given name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Built: it runs in its phases.
    Served,
    /// Not built, and it only observes (metrics, logs, traces): traffic passes, with a
    /// warning at load and in `/status`.
    Observes,
    /// Not built, and it would change what passes or what the upstream or client sees: every
    /// route it applies to is closed (503 naming it) rather than served without it.
    Closes,
    /// Cannot work without a database: refused at load, as Kong refuses it in DB-less mode.
    NeedsDatabase,
}

/// What the catalog knows of a plugin name.
#[derive(Clone, Copy, Debug)]
pub struct PluginInfo {
    pub priority: i32,
    pub enforcement: Enforcement,
    /// It identifies a consumer: consumer-scoped plugins can apply on its routes.
    pub authenticates: bool,
}

use Enforcement::{Closes, NeedsDatabase, Observes, Served};

/// Kong's bundled plugins with their PRIORITY (`kong.md` §5), what switchyard does with each,
/// and whether it authenticates.
const CATALOG: &[(&str, i32, Enforcement, bool)] = &[
    ("pre-function", 1_000_000, Closes, false),
    ("correlation-id", 100_001, Closes, false),
    ("zipkin", 100_000, Observes, false),
    ("exit-transformer", 9999, Closes, false),
    ("bot-detection", 2500, Closes, false),
    ("cors", 2000, Closes, false),
    ("session", 1900, Closes, true),
    ("acme", 1705, Closes, false),
    ("jwt", 1450, Closes, true),
    ("oauth2", 1400, NeedsDatabase, true),
    ("key-auth", 1250, Closes, true),
    ("ldap-auth", 1200, Closes, true),
    ("basic-auth", 1100, Closes, true),
    ("hmac-auth", 1030, Closes, true),
    ("grpc-gateway", 998, Closes, false),
    ("ip-restriction", 990, Closes, false),
    ("request-size-limiting", 951, Closes, false),
    ("acl", 950, Closes, false),
    ("rate-limiting", 910, Closes, false),
    ("response-ratelimiting", 900, Closes, false),
    ("request-transformer", 801, Closes, false),
    ("response-transformer", 800, Closes, false),
    ("redirect", 779, Closes, false),
    ("ai-request-transformer", 777, Closes, false),
    ("ai-prompt-template", 773, Closes, false),
    ("ai-prompt-decorator", 772, Closes, false),
    ("ai-prompt-guard", 771, Closes, false),
    ("ai-proxy", 770, Closes, false),
    ("ai-response-transformer", 768, Closes, false),
    ("standard-webhooks", 760, Closes, false),
    ("aws-lambda", 750, Closes, false),
    ("azure-functions", 749, Closes, false),
    ("proxy-cache", 100, Closes, false),
    ("opentelemetry", 14, Observes, false),
    ("prometheus", 13, Observes, false),
    ("http-log", 12, Observes, false),
    ("statsd", 11, Observes, false),
    ("datadog", 10, Observes, false),
    ("file-log", 9, Observes, false),
    ("udp-log", 8, Observes, false),
    ("tcp-log", 7, Observes, false),
    ("loggly", 6, Observes, false),
    ("syslog", 4, Observes, false),
    ("grpc-web", 3, Closes, false),
    ("request-termination", 2, Served, false),
    ("post-function", -1000, Closes, false),
];

pub fn catalog(name: &str) -> Option<PluginInfo> {
    CATALOG
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(_, priority, enforcement, authenticates)| PluginInfo {
            priority,
            enforcement,
            authenticates,
        })
}

/// Checks a plugin's `config` against its schema: `(path inside config, message)` per problem.
pub fn validate(name: &str, config: &Node) -> Vec<(Path, String)> {
    match name {
        "request-termination" => request_termination::Config::parse(config)
            .err()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Builds a served plugin from its validated config. `None` for plugins not built yet.
pub fn build(name: &str, config: &Node) -> Option<Arc<dyn Plugin>> {
    match name {
        "request-termination" => request_termination::Config::parse(config)
            .ok()
            .map(|c| Arc::new(request_termination::RequestTermination::new(c)) as Arc<dyn Plugin>),
        _ => None,
    }
}

/// Reads a plugin config mapping field by field, collecting every problem with its path.
pub struct Fields<'a> {
    node: &'a Node,
    known: &'static [&'static str],
    pub errors: Vec<(Path, String)>,
}

impl<'a> Fields<'a> {
    pub fn new(node: &'a Node, known: &'static [&'static str]) -> Self {
        let mut errors = Vec::new();
        match &node.value {
            crate::config::node::Value::Map(entries) => {
                for (k, _) in entries {
                    let key = k.as_str().unwrap_or_default();
                    if !known.contains(&key) {
                        let hint = crate::config::diag::nearest(key, known.iter().copied())
                            .map(|n| format!("; did you mean `{n}`?"))
                            .unwrap_or_default();
                        errors.push((
                            Path::root().key(key.to_string()),
                            format!("unknown field `{key}`{hint}"),
                        ));
                    }
                }
            }
            _ if node.is_null() => {}
            _ => errors.push((Path::root(), "expected a mapping".into())),
        }
        Fields {
            node,
            known,
            errors,
        }
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        debug_assert!(self.known.contains(&key));
        self.node.get(key, false).filter(|n| !n.is_null())
    }

    pub fn string(&mut self, key: &'static str) -> Option<String> {
        let n = self.get(key)?;
        match n.as_str() {
            Some(s) if matches!(n.value, crate::config::node::Value::Scalar(_)) => {
                Some(s.to_string())
            }
            _ => {
                self.errors
                    .push((Path::root().key(key), "expected a string".into()));
                None
            }
        }
    }

    pub fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        match self.get(key).and_then(|n| n.as_str()) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.errors.push((
                    Path::root().key(key),
                    format!("expected a boolean, found `{other}`"),
                ));
                default
            }
        }
    }

    pub fn integer(&mut self, key: &'static str, default: i64, min: i64, max: i64) -> i64 {
        let Some(text) = self.get(key).and_then(|n| n.as_str()) else {
            return default;
        };
        match text.parse::<i64>().ok().or_else(|| {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        }) {
            Some(v) if (min..=max).contains(&v) => v,
            Some(v) => {
                self.errors.push((
                    Path::root().key(key),
                    format!("value should be between {min} and {max}, found {v}"),
                ));
                default
            }
            None => {
                self.errors.push((
                    Path::root().key(key),
                    format!("expected an integer, found `{text}`"),
                ));
                default
            }
        }
    }

    pub fn error(&mut self, key: &'static str, msg: impl Into<String>) {
        self.errors.push((Path::root().key(key), msg.into()));
    }

    pub fn finish<T>(self, value: T) -> Result<T, Vec<(Path, String)>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}
