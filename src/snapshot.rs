//! The compiled, immutable runtime form of one validated model: the router, each route's
//! plugin chain and each service's destination, ready to serve without further work.
//!
//! model ─▶ `Snapshot::compile` ─▶ `Arc<Snapshot>` (swapped in whole by `watch`)
//!
//! State that must outlive a reload (balancer positions now; counters and health later) is
//! not owned here: `State` keeps it by entity id, and each compile takes the entries of the
//! entities it still has.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode};

use crate::config::diag::Diagnostic;
use crate::config::model::{Model, OcelotRoute, PathHandling, Protocol};
use crate::plugins::ocelot_rate_limit::{self, Store as RateLimitStore};
use crate::plugins::{self, Chain, Plugin};
use crate::proxy::aggregate::{Aggregator, JsonPath};
use crate::router::ocelot::DownstreamTemplate;
use crate::router::{OcelotSpec, Router};

/// Runtime state kept across snapshots, keyed by entity identity.
#[derive(Default)]
pub struct State {
    balancer_positions: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// Ocelot rate-limit counters by route id and rule.
    rate_limits: Mutex<HashMap<String, Arc<RateLimitStore>>>,
    /// Ocelot `UseCookieContainer` jars by route id.
    cookie_jars: Mutex<HashMap<String, Arc<CookieJar>>>,
}

/// Hands out the kept entries of `map` for `keys` (new ones made fresh) and forgets the rest.
fn keep<T: Default, K: AsRef<str>>(
    map: &Mutex<HashMap<String, Arc<T>>>,
    keys: &[K],
) -> Vec<Arc<T>> {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let kept: HashMap<String, Arc<T>> = keys
        .iter()
        .map(|k| {
            let k = k.as_ref();
            (k.to_string(), map.get(k).cloned().unwrap_or_default())
        })
        .collect();
    let out = keys.iter().map(|k| kept[k.as_ref()].clone()).collect();
    *map = kept;
    out
}

/// Ocelot's `UseCookieContainer`: one cookie jar shared by every client of the route (as in
/// Ocelot, where the route's HttpClient keeps it). Cookies are kept by name; attributes other
/// than the value are not tracked.
#[derive(Default)]
pub struct CookieJar {
    cookies: Mutex<Vec<(String, String)>>,
}

impl CookieJar {
    /// Stores the cookies of `Set-Cookie` response headers.
    pub fn store(&self, headers: &http::HeaderMap) {
        let mut jar = self.cookies.lock().unwrap_or_else(|e| e.into_inner());
        for v in headers.get_all(http::header::SET_COOKIE) {
            let Ok(text) = v.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            let expired = text
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            jar.retain(|(n, _)| *n != name);
            if !expired {
                jar.push((name, value));
            }
        }
    }

    /// The `Cookie` header for the next request, merged with the client's own cookies.
    pub fn cookie_header(&self, client: Option<&HeaderValue>) -> Option<HeaderValue> {
        let jar = self.cookies.lock().unwrap_or_else(|e| e.into_inner());
        if jar.is_empty() {
            return None;
        }
        let mut text = client
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default()
            .to_string();
        for (n, v) in jar.iter() {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(n);
            text.push('=');
            text.push_str(v);
        }
        HeaderValue::from_str(&text).ok()
    }
}

pub struct Snapshot {
    pub version: u64,
    /// Hash of every config file's bytes: equal hashes mean an identical config.
    pub hash: u64,
    pub loaded_at: SystemTime,
    pub model: Model,
    pub router: Router,
    pub routes: Vec<RouteRt>,
    pub services: Vec<ServiceRt>,
    pub warnings: Vec<Diagnostic>,
}

pub struct RouteRt {
    pub name: Arc<str>,
    /// What kind of entity answers: a Kong route, an Ocelot route or an Ocelot aggregate.
    pub kind: RouteKind,
    pub service: Option<usize>,
    /// Allows https but not http: plain requests get 426 or a redirect.
    pub https_only: bool,
    pub https_redirect: StatusCode,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    pub chain: Chain,
    /// Set when something applies to the route that switchyard does not enforce: it then
    /// answers 503 naming it rather than serve traffic without it.
    pub closed: Option<Box<Closed>>,
}

/// Why a route is closed: each thing configured on it (or on its service, globally, or for
/// a consumer it can identify) that is not enforced, as `what (file:line path)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Closed {
    pub reasons: Vec<String>,
}

impl Closed {
    fn of(reasons: Vec<String>) -> Option<Box<Closed>> {
        (!reasons.is_empty()).then(|| Box::new(Closed { reasons }))
    }

    /// The answer's message, naming the route and what it carries.
    pub fn message(&self, route: &str) -> String {
        format!(
            "route {route} is closed: it carries {}, which switchyard does not enforce yet, so it answers 503 rather than pass traffic unchecked",
            self.reasons.join("; ")
        )
    }
}

pub enum RouteKind {
    Kong,
    Ocelot(Box<OcelotRt>),
    Aggregate(Box<AggregateRt>),
}

/// The downstream side of an Ocelot route, compiled.
pub struct OcelotRt {
    pub template: Arc<str>,
    pub downstream: DownstreamTemplate,
    pub method: Option<Method>,
    pub version: http::Version,
    pub allow_auto_redirect: bool,
    pub cookie_jar: Option<Arc<CookieJar>>,
    /// A service-discovery route (not served yet: it is closed, see `RouteRt::closed`).
    pub service_name: Option<String>,
}

/// An Ocelot aggregate, compiled.
pub struct AggregateRt {
    pub template: Arc<str>,
    /// Route key and snapshot route index of each part, in RouteKeys order.
    pub parts: Vec<(Arc<str>, usize)>,
    /// RouteKeysConfig: part position, the JsonPath read from the first part, the placeholder.
    pub configs: Vec<(usize, JsonPath, Arc<str>)>,
    /// `Err(name)`: a custom aggregator that cannot run.
    pub aggregator: Result<Aggregator, String>,
}

pub struct ServiceRt {
    pub name: Arc<str>,
    pub tls: bool,
    /// Verify the upstream's certificate (Ocelot routes unless
    /// DangerousAcceptAnyServerCertificateValidator; Kong services with `tls_verify: true`).
    pub tls_verify: bool,
    pub dest: Dest,
    /// `service.path`, `/` when unset.
    pub base_path: String,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

pub enum Dest {
    Direct(Peer),
    Balanced(Arc<Balancer>),
}

/// One upstream address and the Host header that goes with it.
#[derive(Clone)]
pub struct Peer {
    pub host: Arc<str>,
    pub port: u16,
    pub host_header: HeaderValue,
}

/// Weighted round-robin over an upstream's targets.
pub struct Balancer {
    pub name: String,
    pub peers: Vec<Peer>,
    /// Peer indices, each repeated weight/gcd times, interleaved.
    wheel: Vec<u32>,
    position: Arc<AtomicUsize>,
}

impl Balancer {
    /// The next peer, or `None` when every target has weight 0.
    pub fn next(&self) -> Option<&Peer> {
        if self.wheel.is_empty() {
            return None;
        }
        let i = self
            .position
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(&self.peers[self.wheel[i % self.wheel.len()] as usize])
    }
}

fn host_header(host: &str, port: u16, tls: bool) -> HeaderValue {
    let default = if tls { 443 } else { 80 };
    let text = if port == default {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("invalid"))
}

fn wheel(weights: &[u32]) -> Vec<u32> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = weights
        .iter()
        .copied()
        .filter(|w| *w > 0)
        .fold(0, gcd)
        .max(1);
    let mut left: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let mut out = Vec::new();
    // Interleave instead of runs, so consecutive requests spread across targets.
    while left.iter().any(|w| *w > 0) {
        for (i, w) in left.iter_mut().enumerate() {
            if *w > 0 {
                out.push(i as u32);
                *w -= 1;
            }
        }
    }
    out
}

impl Snapshot {
    pub fn compile(
        model: Model,
        warnings: Vec<Diagnostic>,
        state: &State,
        version: u64,
        hash: u64,
    ) -> Snapshot {
        let upstream_ids: Vec<&str> = model.upstreams.iter().map(|u| u.id.as_str()).collect();
        let positions = keep(&state.balancer_positions, &upstream_ids);
        let balancers: HashMap<&str, Arc<Balancer>> = model
            .upstreams
            .iter()
            .zip(positions)
            .map(|(u, position)| {
                let peers = u
                    .targets
                    .iter()
                    .map(|t| Peer {
                        host: t.host.as_str().into(),
                        port: t.port,
                        host_header: host_header(
                            u.host_header.as_deref().unwrap_or(&t.host),
                            t.port,
                            false,
                        ),
                    })
                    .collect();
                let weights: Vec<u32> = u.targets.iter().map(|t| t.weight).collect();
                (
                    u.name.as_str(),
                    Arc::new(Balancer {
                        name: u.name.clone(),
                        peers,
                        wheel: wheel(&weights),
                        position,
                    }),
                )
            })
            .collect();

        let services: Vec<ServiceRt> = model
            .services
            .iter()
            .map(|s| {
                let tls = matches!(
                    s.protocol,
                    Protocol::Https | Protocol::Grpcs | Protocol::Wss | Protocol::Tls
                );
                let dest = match balancers.get(s.host.as_str()) {
                    Some(b) => Dest::Balanced(b.clone()),
                    None => Dest::Direct(Peer {
                        host: s.host.as_str().into(),
                        port: s.port,
                        host_header: host_header(&s.host, s.port, tls),
                    }),
                };
                ServiceRt {
                    name: s.display_name().into(),
                    tls,
                    tls_verify: s.tls_verify.unwrap_or(false),
                    dest,
                    base_path: s.path.clone().unwrap_or_else(|| "/".into()),
                    retries: s.retries,
                    connect_timeout: Duration::from_millis(s.connect_timeout),
                    read_timeout: Duration::from_millis(s.read_timeout),
                    write_timeout: Duration::from_millis(s.write_timeout),
                }
            })
            .collect();

        let built: Vec<Option<Arc<dyn Plugin>>> = model
            .plugins
            .iter()
            .map(|p| {
                if p.enabled {
                    plugins::build(&p.name, &p.config.node)
                } else {
                    None
                }
            })
            .collect();
        let scoped = PluginsByScope::new(&model);
        let mut routes: Vec<RouteRt> = model
            .routes
            .iter()
            .enumerate()
            .map(|(idx, r)| {
                let allows = |p: Protocol| r.protocols.contains(&p);
                let (chain, reasons) = route_chain(&model, &built, &scoped, idx);
                RouteRt {
                    name: r.display_name().into(),
                    kind: RouteKind::Kong,
                    service: r.service,
                    https_only: allows(Protocol::Https) && !allows(Protocol::Http),
                    https_redirect: StatusCode::from_u16(r.https_redirect_status_code)
                        .unwrap_or(StatusCode::UPGRADE_REQUIRED),
                    strip_path: r.strip_path,
                    preserve_host: r.preserve_host,
                    path_handling: r.path_handling,
                    chain,
                    closed: Closed::of(reasons),
                }
            })
            .collect();

        // Ocelot routes, then aggregates, after the Kong routes.
        let first_ocelot = routes.len();
        let rl_keys: Vec<String> = model
            .ocelot_routes
            .iter()
            .filter_map(|r| {
                r.rate_limit.as_ref().map(|o| {
                    format!(
                        "{}|{}|{}",
                        r.id,
                        o.key_prefix,
                        ocelot_rate_limit::rule_text(o)
                    )
                })
            })
            .collect();
        let mut rl_stores = keep(&state.rate_limits, &rl_keys).into_iter();
        let jar_keys: Vec<String> = model
            .ocelot_routes
            .iter()
            .filter(|r| r.use_cookie_container)
            .map(|r| r.id.clone())
            .collect();
        let mut jars = keep(&state.cookie_jars, &jar_keys).into_iter();
        for r in &model.ocelot_routes {
            let store = r.rate_limit.as_ref().and_then(|_| rl_stores.next());
            let jar = if r.use_cookie_container {
                jars.next()
            } else {
                None
            };
            routes.push(ocelot_route_rt(r, &model, &services, store, jar));
        }
        let first_aggregate = routes.len();
        for a in &model.ocelot_aggregates {
            let parts: Vec<(Arc<str>, usize)> = a
                .route_keys
                .iter()
                .zip(&a.parts)
                .map(|(k, p)| (Arc::from(k.as_str()), first_ocelot + p))
                .collect();
            let configs = a
                .route_keys_config
                .iter()
                .filter_map(|c| {
                    let pos = a.route_keys.iter().position(|k| *k == c.route_key)?;
                    Some((
                        pos,
                        JsonPath::parse(&c.json_path).ok()?,
                        Arc::from(c.parameter.as_str()),
                    ))
                })
                .collect();
            let aggregator = match &a.aggregator {
                None => Ok(Aggregator::Object),
                Some(n) => Aggregator::from_name(n).ok_or_else(|| n.clone()),
            };
            // A part that is closed closes the aggregate: its answer would be a `null` that
            // says nothing of why.
            let reasons: Vec<String> = parts
                .iter()
                .filter_map(|(key, ridx)| {
                    let closed = routes[*ridx].closed.as_ref()?;
                    Some(format!("part `{key}`: {}", closed.reasons.join("; ")))
                })
                .collect();
            routes.push(RouteRt {
                name: format!("{}:{}", a.origin.file, a.origin.path).into(),
                kind: RouteKind::Aggregate(Box::new(AggregateRt {
                    template: a.upstream.path_template.as_str().into(),
                    parts,
                    configs,
                    aggregator,
                })),
                service: None,
                https_only: false,
                https_redirect: StatusCode::UPGRADE_REQUIRED,
                strip_path: false,
                preserve_host: false,
                path_handling: PathHandling::V0,
                chain: Chain::default(),
                closed: Closed::of(reasons),
            });
        }

        // Routes of disabled services are left out of the router, as Kong does.
        let active: Vec<(usize, &crate::config::model::Route)> = model
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.service.is_none_or(|s| model.services[s].enabled))
            .collect();
        let mut specs: Vec<OcelotSpec<'_>> = model
            .ocelot_routes
            .iter()
            .enumerate()
            .map(|(i, r)| OcelotSpec {
                index: first_ocelot + i,
                upstream: &r.upstream,
                aggregate: false,
            })
            .collect();
        specs.extend(
            model
                .ocelot_aggregates
                .iter()
                .enumerate()
                .map(|(i, a)| OcelotSpec {
                    index: first_aggregate + i,
                    upstream: &a.upstream,
                    aggregate: true,
                }),
        );
        let router = Router::build_all(&active, &specs);
        Snapshot {
            version,
            hash,
            loaded_at: SystemTime::now(),
            router,
            routes,
            services,
            warnings,
            model,
        }
    }
}

impl Snapshot {
    /// Every closed route, as `route_label` names it, with why it is closed.
    pub fn closed_routes(&self) -> impl Iterator<Item = (String, &Closed)> {
        self.routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((self.route_label(i), r.closed.as_deref()?)))
    }

    /// A route of the snapshot (Kong route, Ocelot route or aggregate) for people:
    /// `route NAME (file:line)` (Kong) / `ocelot route TEMPLATE (file:line Routes[3])`.
    pub fn route_label(&self, idx: usize) -> String {
        let kong = self.model.routes.len();
        let ocelot = self.model.ocelot_routes.len();
        if let Some(r) = self.model.routes.get(idx) {
            format!(
                "route {} ({}:{})",
                r.display_name(),
                r.origin.file,
                r.origin.line
            )
        } else if let Some(r) = self.model.ocelot_routes.get(idx - kong) {
            format!(
                "ocelot route {} ({}:{} {})",
                r.upstream.path_template, r.origin.file, r.origin.line, r.origin.path
            )
        } else if let Some(a) = self.model.ocelot_aggregates.get(idx - kong - ocelot) {
            format!(
                "ocelot aggregate {} ({}:{} {})",
                a.upstream.path_template, a.origin.file, a.origin.line, a.origin.path
            )
        } else {
            format!("route #{idx}")
        }
    }

    /// Where a match would go: the Kong service, the Ocelot downstream URL (with the
    /// placeholder values of `m`), or the parts of an aggregate.
    pub fn route_destination(
        &self,
        m: &crate::router::Match,
        path: &str,
        query: Option<&str>,
    ) -> String {
        let route = &self.routes[m.route];
        match &route.kind {
            RouteKind::Kong => match route.service {
                Some(s) => format!("service {}", self.services[s].name),
                None => "(no service: 503)".into(),
            },
            _ if route.closed.is_some() => {
                let reasons = route.closed.as_ref().map(|c| c.reasons.join("; "));
                format!(
                    "(closed, 503: {} not enforced yet)",
                    reasons.unwrap_or_default()
                )
            }
            RouteKind::Ocelot(o) => {
                let Some(svc) = route.service.map(|s| &self.services[s]) else {
                    return "(no destination: 503)".into();
                };
                let (host, port) = match &svc.dest {
                    Dest::Direct(p) => (p.host.to_string(), p.port),
                    Dest::Balanced(b) => (
                        b.peers
                            .iter()
                            .map(|p| format!("{}:{}", p.host, p.port))
                            .collect::<Vec<_>>()
                            .join("|"),
                        0,
                    ),
                };
                let scheme = if svc.tls { "https" } else { "http" };
                let hostport = if port == 0 {
                    format!("({host})")
                } else {
                    format!("{host}:{port}")
                };
                let method = o
                    .method
                    .as_ref()
                    .map(|m| format!("{m} "))
                    .unwrap_or_default();
                let decoded = crate::router::ocelot::decoded_path(path);
                let params: Vec<String> =
                    m.params.iter().map(|(n, v)| format!("{n}={v}")).collect();
                format!(
                    "{method}{scheme}://{hostport}{} (placeholders: {})",
                    o.downstream.render(&m.params, &decoded, query),
                    if params.is_empty() {
                        "none".into()
                    } else {
                        params.join(", ")
                    }
                )
            }
            RouteKind::Aggregate(a) => {
                let keys: Vec<String> = a
                    .parts
                    .iter()
                    .map(|(k, i)| format!("{k} = {}", self.route_label(*i)))
                    .collect();
                format!("aggregate of [{}]", keys.join("; "))
            }
        }
    }
}

/// The precedence rule across dialects, for `explain` and the README.
pub const PRECEDENCE: &str = "a route that matches only through a catch-all (a Kong route whose only condition is the prefix `/`, an Ocelot `/{x}` template alone) loses to every other match; otherwise a matching Kong route wins over an Ocelot route; Kong routes rank by traditional_compatible priority (more fields, plain hosts, more headers, regex paths, regex_priority, longer prefixes, then file order); Ocelot routes rank as Ocelot picks them (routes with an UpstreamHost first, then Priority, highest first, then merge order, aggregates after routes)";

/// An Ocelot route's runtime form: its options as a plugin chain (SecurityOptions,
/// header transforms, RateLimitOptions, RequestIdKey) and its downstream template.
fn ocelot_route_rt(
    r: &OcelotRoute,
    model: &Model,
    services: &[ServiceRt],
    store: Option<Arc<RateLimitStore>>,
    jar: Option<Arc<CookieJar>>,
) -> RouteRt {
    let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
    if let Some(sec) = &r.security {
        plugins.push(Arc::new(plugins::ocelot_ip::IpSecurity::new(sec)));
    }
    let bases: Vec<String> = match r.service.map(|s| (&model.services[s], &services[s])) {
        Some((svc, rt)) => {
            let scheme = svc.protocol.as_str();
            let peers: Vec<(String, u16)> = match &rt.dest {
                Dest::Direct(p) => vec![(p.host.to_string(), p.port)],
                Dest::Balanced(b) => b
                    .peers
                    .iter()
                    .map(|p| (p.host.to_string(), p.port))
                    .collect(),
            };
            peers
                .into_iter()
                .map(|(h, p)| {
                    if p == 80 || p == 443 {
                        format!("{scheme}://{h}")
                    } else {
                        format!("{scheme}://{h}:{p}")
                    }
                })
                .collect()
        }
        None => Vec::new(),
    };
    if let Some(t) = plugins::ocelot_headers::HeaderTransforms::new(
        &r.upstream_header_transform,
        &r.downstream_header_transform,
        &r.base_url,
        bases,
    ) {
        plugins.push(Arc::new(t));
    }
    if let (Some(o), Some(store)) = (&r.rate_limit, store)
        && let Some(p) =
            plugins::ocelot_rate_limit::RateLimit::new(o, &r.upstream.path_template, store)
    {
        plugins.push(Arc::new(p));
    }
    if let Some(p) = r
        .request_id_key
        .as_deref()
        .and_then(plugins::ocelot_headers::RequestIdKey::new)
    {
        plugins.push(Arc::new(p));
    }
    plugins.sort_by_key(|p| std::cmp::Reverse(p.priority()));
    let version = match r.downstream_version.as_deref() {
        Some("1.0") | Some("1,0") | Some("1") => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    RouteRt {
        name: format!("{}:{}", r.origin.file, r.origin.path).into(),
        kind: RouteKind::Ocelot(Box::new(OcelotRt {
            template: r.upstream.path_template.as_str().into(),
            downstream: DownstreamTemplate::compile(&r.downstream_path_template),
            method: r
                .downstream_method
                .as_deref()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok()),
            version,
            allow_auto_redirect: r.allow_auto_redirect,
            cookie_jar: jar,
            service_name: r.service_name.clone(),
        })),
        service: r.service,
        https_only: false,
        https_redirect: StatusCode::UPGRADE_REQUIRED,
        strip_path: false,
        preserve_host: false,
        path_handling: PathHandling::V0,
        chain: Chain { plugins },
        closed: Closed::of(r.unenforced.iter().map(|u| u.describe()).collect()),
    }
}

/// The enabled plugin instances by scope (consumer-scoped ones apart), so that each route's
/// chain looks only at the plugins that can apply to it, not at every plugin of the config.
/// Disabled instances are left out, as Kong leaves them out: they neither run nor hide a
/// less specific instance of the same plugin.
#[derive(Default)]
struct PluginsByScope {
    global: Vec<usize>,
    by_service: HashMap<usize, Vec<usize>>,
    by_route: HashMap<usize, Vec<usize>>,
    consumer_scoped: Vec<usize>,
}

impl PluginsByScope {
    fn new(model: &Model) -> Self {
        let mut out = PluginsByScope::default();
        for (i, p) in model.plugins.iter().enumerate() {
            if !p.enabled {
                continue;
            }
            if p.scope.is_consumer_scoped() {
                out.consumer_scoped.push(i);
                continue;
            }
            match (p.scope.route, p.scope.service) {
                (Some(r), _) => out.by_route.entry(r).or_default().push(i),
                (None, Some(s)) => out.by_service.entry(s).or_default().push(i),
                (None, None) => out.global.push(i),
            }
        }
        out
    }
}

/// How specific a plugin's route/service scope is for a route on `service`, or `None` when
/// it does not apply to that route: route+service ▸ route ▸ service ▸ global.
fn scope_rank(
    scope: &crate::config::model::PluginScope,
    route: usize,
    service: Option<usize>,
) -> Option<u8> {
    match (scope.route, scope.service) {
        (Some(r), _) if r != route => None,
        (Some(_), Some(s)) if Some(s) == service => Some(3),
        (Some(_), None) => Some(2),
        (None, Some(s)) if Some(s) == service => Some(1),
        (None, None) => Some(0),
        _ => None,
    }
}

/// `plugin 'name' (file:line path)`.
fn describe_plugin(p: &crate::config::model::Plugin) -> String {
    format!(
        "plugin '{}' ({}:{} {})",
        p.name, p.origin.file, p.origin.line, p.origin.path
    )
}

/// Kong's plugin resolution for one route: per plugin name the most specific instance
/// (route+service ▸ route ▸ service ▸ global; the first declared among equals), then
/// descending PRIORITY. Also what closes the route: a resolved plugin that is not built
/// and does more than observe; a consumer-scoped plugin that could apply once the route's
/// authentication identifies a consumer (not applied yet); a filter chain on the route or
/// its service (not run yet).
fn route_chain(
    model: &Model,
    built: &[Option<Arc<dyn Plugin>>],
    scoped: &PluginsByScope,
    route: usize,
) -> (Chain, Vec<String>) {
    let service = model.routes[route].service;
    let none = &Vec::new();
    let on_route = scoped.by_route.get(&route).unwrap_or(none);
    let on_service = service
        .and_then(|s| scoped.by_service.get(&s))
        .unwrap_or(none);
    let candidates = on_route
        .iter()
        .chain(on_service)
        .chain(&scoped.global)
        .filter_map(|&i| Some((scope_rank(&model.plugins[i].scope, route, service)?, i)));
    let mut best: Vec<(&str, u8, usize)> = Vec::new();
    for (rank, i) in candidates {
        let name = model.plugins[i].name.as_str();
        match best.iter_mut().find(|(n, _, _)| *n == name) {
            Some(b) if rank > b.1 || (rank == b.1 && i < b.2) => *b = (name, rank, i),
            Some(_) => {}
            None => best.push((name, rank, i)),
        }
    }
    best.sort_by_key(|b| b.2);
    let mut reasons = Vec::new();
    let mut authenticates = false;
    let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
    for &(name, _, i) in &best {
        let info = plugins::catalog(name);
        authenticates |= info.is_some_and(|i| i.authenticates);
        match &built[i] {
            Some(p) => plugins.push(p.clone()),
            None if info.is_some_and(|i| i.enforcement == plugins::Enforcement::Observes) => {}
            None => reasons.push(describe_plugin(&model.plugins[i])),
        }
    }
    if authenticates {
        for &i in &scoped.consumer_scoped {
            let p = &model.plugins[i];
            let observes = plugins::catalog(&p.name)
                .is_some_and(|i| i.enforcement == plugins::Enforcement::Observes);
            if observes || scope_rank(&p.scope, route, service).is_none() {
                continue;
            }
            let who = match (p.scope.consumer, p.scope.consumer_group) {
                (Some(c), _) => format!("consumer '{}'", consumer_label(&model.consumers[c])),
                (None, Some(g)) => format!("consumer group '{}'", model.consumer_groups[g].name),
                (None, None) => continue,
            };
            reasons.push(format!(
                "{} for {who}, who can be identified on this route",
                describe_plugin(p)
            ));
        }
    }
    for fc in model.filter_chains.iter().filter(|fc| fc.enabled) {
        if scope_rank(&fc.scope, route, service).is_some() {
            reasons.push(format!(
                "filter chain {}with filters [{}] ({}:{} {})",
                fc.name
                    .as_deref()
                    .map(|n| format!("'{n}' "))
                    .unwrap_or_default(),
                fc.filters.join(", "),
                fc.origin.file,
                fc.origin.line,
                fc.origin.path
            ));
        }
    }
    plugins.sort_by_key(|p| std::cmp::Reverse(p.priority()));
    (Chain { plugins }, reasons)
}

fn consumer_label(c: &crate::config::model::Consumer) -> &str {
    c.username
        .as_deref()
        .or(c.custom_id.as_deref())
        .unwrap_or(&c.id)
}

#[cfg(test)]
mod tests {
    use super::wheel;

    #[test]
    fn wheel_is_weighted_and_interleaved() {
        assert_eq!(wheel(&[100, 100]), vec![0, 1]);
        assert_eq!(wheel(&[200, 100]), vec![0, 1, 0]);
        assert_eq!(wheel(&[0, 50]), vec![1]);
        assert!(wheel(&[0, 0]).is_empty());
    }
}
