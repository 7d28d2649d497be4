//! The compiled, immutable runtime form of one validated model: the router, each route's
//! plugin chain (or why it is closed), each service's destination and the consumers, ready
//! to serve without further work.
//!
//! ```text
//! model ─▶ Snapshot::compile (plugins built through the registry, every error collected)
//!       ─▶ Arc<Snapshot> (swapped in whole by `gateway`)
//! ```
//!
//! State that must outlive a reload (balancer positions, rate-limit counters, cookie jars) is
//! not owned here: `State` keeps it by entity identity, and each compile takes the entries of
//! the entities it still has.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};

use crate::config::de::Captured;
use crate::config::diag::{Diagnostic, Path, Severity};
use crate::config::model::{
    Model, OcelotRoute, Origin, PathHandling, Plugin as PluginEntity, Protocol,
};
use crate::config::ocelot::aggregate::{Aggregator, JsonPath};
use crate::config::ocelot::template::DownstreamTemplate;
use crate::exchange::{Consumer, Identity};
mod auth;
mod chains;
mod consumers;
mod filters;
pub mod tls;

pub use consumers::{Consumers, Found, JwtKey};

use crate::plugins::ocelot_jwt::Providers;
use crate::plugins::registry::{BuildCx, Kind, Registry};
use crate::plugins::{Chain, Plugin};
use crate::proxy::ocelot::CookieJar;
use crate::proxy::upstream::{Balancer, Dest, Peer};
use crate::router::{OcelotSpec, Router};

// === State kept across snapshots ===

/// Runtime state kept across snapshots, keyed by entity identity (and the state's type).
/// Each compile asks for what its entities need (`kept`); once its snapshot serves, what
/// no entity asked for is dropped (`sweep`).
#[derive(Default)]
pub struct State {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// The compile under way; an entry is live when the last compile asked for it.
    generation: u64,
    entries: HashMap<(TypeId, String), (u64, Arc<dyn Any + Send + Sync>)>,
}

impl State {
    /// The state of type `T` under `key`: the one the previous snapshots used, or a new one.
    pub fn kept<T: Any + Default + Send + Sync>(&self, key: &str) -> Arc<T> {
        let mut k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let generation = k.generation;
        let entry = k
            .entries
            .entry((TypeId::of::<T>(), key.to_string()))
            .or_insert_with(|| (generation, Arc::new(T::default())));
        entry.0 = generation;
        entry.1.clone().downcast::<T>().unwrap_or_default()
    }

    /// The state of type `T` under `key` when a snapshot asked for it, without keeping it
    /// (for the admin API, which must not make state the next sweep would not drop).
    pub fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (_, v) = k.entries.get(&(TypeId::of::<T>(), key.to_string()))?;
        v.clone().downcast::<T>().ok()
    }

    /// Starts a compile: what it asks for is marked as its.
    fn begin(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation += 1;
    }

    /// Drops what the last compile did not ask for; called once its snapshot serves.
    pub fn sweep(&self) {
        let mut k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let generation = k.generation;
        k.entries.retain(|_, (g, _)| *g == generation);
    }
}

// === The snapshot ===

pub struct Snapshot {
    pub version: u64,
    /// Hash of every config file's bytes: equal hashes mean an identical config.
    pub hash: u64,
    pub loaded_at: SystemTime,
    pub model: Model,
    pub router: Router,
    pub routes: Vec<RouteRt>,
    pub services: Vec<ServiceRt>,
    pub consumers: Arc<Consumers>,
    /// The enabled global plugins: their rewrite hooks run before routing, and they are the
    /// chain of a request no route matched (its response head and log).
    pub global: Chain,
    pub warnings: Vec<Diagnostic>,
    /// What parses and is checked but is not served, and lets traffic pass without it.
    pub unserved: Vec<(String, Origin)>,
    /// The Ocelot authentication providers, with the key files they read.
    pub auth_providers: Providers,
    /// What the TLS listeners present, by SNI (`certificates` and their `snis`).
    pub certificates: tls::Certificates,
    /// The filter modules the filter chains loaded, with their content hashes.
    pub filter_files: Vec<(std::path::PathBuf, [u8; 32])>,
}

pub struct RouteRt {
    pub identity: Identity,
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
    /// By consumer index: the chain once authentication identified a consumer that has
    /// plugins of its own on this route (`chains`).
    pub for_consumer: HashMap<usize, Arc<Chain>>,
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
    /// Its plugins read or change the placeholder values (`exchange::Placeholders`).
    pub plugins_use_placeholders: bool,
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
    pub identity: Identity,
    pub tls: bool,
    /// Verify the upstream's certificate (Ocelot routes unless
    /// DangerousAcceptAnyServerCertificateValidator; Kong services with `tls_verify: true`).
    pub tls_verify: bool,
    /// The service's own upstream TLS settings (CAs, depth, client certificate), if any.
    pub tls_settings: Option<Arc<crate::proxy::client::UpstreamTls>>,
    pub dest: Dest,
    /// `service.path`, `/` when unset.
    pub base_path: String,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

/// What one compile collects besides the snapshot: errors and warnings, each with its
/// position.
#[derive(Default)]
struct Report {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Plugins that parse and are checked, only observe, and are not served.
    unserved: Vec<(String, Origin)>,
}

impl Report {
    fn push(&mut self, severity: Severity, origin: &Origin, message: String) {
        let d = Diagnostic {
            severity,
            file: origin.file.clone(),
            line: origin.line,
            column: origin.column,
            path: origin.path.clone(),
            message,
        };
        match severity {
            Severity::Error => self.errors.push(d),
            Severity::Warning => self.warnings.push(d),
        }
    }

    /// A problem inside a plugin's `config`, at the position it was written.
    fn config_problem(&mut self, p: &PluginEntity, sub: &Path, message: &str) {
        let span = p.config.span_at(sub);
        let mut path = p.config.path.clone();
        path.0.extend(sub.0.iter().cloned());
        let origin = Origin {
            file: p.file.clone(),
            line: span.line,
            column: span.col,
            path: path.render(),
        };
        self.push(
            Severity::Error,
            &origin,
            format!("plugin '{}': {message}", p.name),
        );
    }
}

impl Snapshot {
    /// Compiles `model`, building every plugin through `registry`. Every problem is reported
    /// at once; `Err` means this config cannot serve (the serving snapshot stays).
    pub fn compile(
        mut model: Model,
        mut warnings: Vec<Diagnostic>,
        registry: &Registry,
        state: &State,
        version: u64,
        hash: u64,
    ) -> Result<Snapshot, Vec<Diagnostic>> {
        state.begin();
        let mut report = Report::default();
        let mut services = compile_services(&model, state);
        let (tls, problems) = tls::compile(&model, &model.vaults);
        for (origin, message) in problems {
            report.push(Severity::Error, &origin, message);
        }
        for (s, t) in services.iter_mut().zip(tls.upstream) {
            s.tls_settings = t;
        }
        let (consumers, problems) = Consumers::compile(&model, &model.vaults);
        for (origin, message) in problems {
            report.push(Severity::Error, &origin, message);
        }
        let consumers = Arc::new(consumers);
        let (auth_providers, problems) = auth::compile(&model, state, &model.vaults);
        for (origin, message) in problems {
            report.push(Severity::Error, &origin, message);
        }
        let route_ids: Vec<Identity> = model
            .routes
            .iter()
            .map(|r| Identity {
                id: r.id.as_str().into(),
                name: r.display_name().into(),
            })
            .collect();
        let env = BuildEnv {
            registry,
            state,
            consumers: &consumers,
            services: &services,
            vaults: &model.vaults,
            auth_providers: &auth_providers,
        };
        let built = env.kong_plugins(&model, &route_ids, &mut report);
        let filters = filters::Compiled::compile(&model, &mut report);
        let resolver = chains::Resolver::new(&model, &built, registry, &filters);
        let mut routes: Vec<RouteRt> = route_ids
            .into_iter()
            .enumerate()
            .map(|(idx, identity)| {
                let r = &model.routes[idx];
                let allows = |p: Protocol| r.protocols.contains(&p);
                let chains = resolver.route(idx);
                RouteRt {
                    identity,
                    kind: RouteKind::Kong,
                    service: r.service,
                    https_only: allows(Protocol::Https) && !allows(Protocol::Http),
                    https_redirect: StatusCode::from_u16(r.https_redirect_status_code)
                        .unwrap_or(StatusCode::UPGRADE_REQUIRED),
                    strip_path: r.strip_path,
                    preserve_host: r.preserve_host,
                    path_handling: r.path_handling,
                    chain: chains.chain,
                    for_consumer: chains.for_consumer,
                    closed: Closed::of(chains.closing),
                }
            })
            .collect();
        let global = resolver.global();

        // Ocelot routes, then aggregates, after the Kong routes.
        let first_ocelot = routes.len();
        for r in &model.ocelot_routes {
            routes.push(env.ocelot_route(r, &mut report));
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
                identity: Identity {
                    id: a.id.as_str().into(),
                    name: a.upstream.path_template.as_str().into(),
                },
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
                for_consumer: HashMap::new(),
                closed: Closed::of(reasons),
            });
        }

        if !report.errors.is_empty() {
            return Err(report.errors);
        }
        let router = build_router(&model, first_ocelot, first_aggregate);
        warnings.extend(report.warnings);
        let unserved = std::mem::take(&mut model.unserved);
        let mut snap = Snapshot {
            version,
            hash,
            loaded_at: SystemTime::now(),
            router,
            routes,
            services,
            consumers,
            global,
            warnings,
            unserved,
            auth_providers,
            certificates: tls.certificates,
            filter_files: filters.files,
            model,
        };
        snap.unserved.extend(report.unserved);
        Ok(snap)
    }
}

/// Routes of disabled services are left out of the router, as Kong does.
fn build_router(model: &Model, first_ocelot: usize, first_aggregate: usize) -> Router {
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
    Router::build_all(&active, &specs)
}

/// Each service's destination: one address, or an upstream's targets (balanced, the
/// position kept across reloads by upstream id).
fn compile_services(model: &Model, state: &State) -> Vec<ServiceRt> {
    let balancers: HashMap<&str, Arc<Balancer>> = model
        .upstreams
        .iter()
        .map(|u| {
            let peers = u
                .targets
                .iter()
                .map(|t| {
                    let name = u.host_header.as_deref().unwrap_or(&t.host);
                    Peer::new(&t.host, t.port, name, false)
                })
                .collect();
            let weights: Vec<u32> = u.targets.iter().map(|t| t.weight).collect();
            let position = state.kept::<AtomicUsize>(&format!("balancer:{}", u.id));
            (
                u.name.as_str(),
                Arc::new(Balancer::new(u.name.clone(), peers, &weights, position)),
            )
        })
        .collect();
    model
        .services
        .iter()
        .map(|s| {
            let tls = s.protocol.is_tls();
            let dest = match balancers.get(s.host.as_str()) {
                Some(b) => Dest::Balanced(b.clone()),
                None => Dest::Direct(Peer::new(&s.host, s.port, &s.host, tls)),
            };
            ServiceRt {
                identity: Identity {
                    id: s.id.as_str().into(),
                    name: s.display_name().into(),
                },
                tls,
                tls_verify: s.tls_verify.unwrap_or(false),
                tls_settings: None,
                dest,
                base_path: s.path.clone().unwrap_or_else(|| "/".into()),
                retries: s.retries,
                connect_timeout: Duration::from_millis(s.connect_timeout),
                read_timeout: Duration::from_millis(s.read_timeout),
                write_timeout: Duration::from_millis(s.write_timeout),
            }
        })
        .collect()
}

/// What building plugins needs from the compile.
struct BuildEnv<'a> {
    registry: &'a Registry,
    state: &'a State,
    consumers: &'a Arc<Consumers>,
    services: &'a [ServiceRt],
    vaults: &'a crate::config::vault::Vaults,
    auth_providers: &'a Providers,
}

impl BuildEnv<'_> {
    /// Every Kong plugin entity checked and built, in model order: `None` for a disabled
    /// plugin, one that is not served, or one with errors (reported).
    fn kong_plugins(
        &self,
        model: &Model,
        routes: &[Identity],
        report: &mut Report,
    ) -> Vec<Option<Arc<dyn Plugin>>> {
        model
            .plugins
            .iter()
            .map(|p| {
                let name = &p.name;
                let Some(info) = self.registry.info(name) else {
                    report.push(Severity::Error, &p.name_origin, format!("plugin '{name}' not enabled; it is neither a bundled Kong OSS plugin nor a custom plugin registered on this build (Enterprise plugins cannot be loaded)"));
                    return None;
                };
                if info.kind == Kind::NeedsDatabase {
                    report.push(Severity::Error, &p.name_origin, format!("plugin '{name}' needs a database and cannot run in DB-less mode (Kong refuses it too); remove it or protect its routes with another authentication plugin"));
                    return None;
                }
                if info.no_consumer && p.scope.is_consumer_scoped() {
                    report.push(Severity::Error, &p.origin, format!("plugin '{name}' cannot be scoped to a consumer or consumer group (Kong: consumer must be null)"));
                    return None;
                }
                let mut cx = BuildCx {
                    id: &p.id,
                    route: p.scope.route.map(|r| &routes[r]),
                    service: p.scope.service.map(|s| &self.services[s].identity),
                    state: self.state,
                    consumers: self.consumers,
                    auth_providers: self.auth_providers,
                };
                // Secret references are read now, on every compile, into a copy only this
                // build sees: the model keeps the reference, so nothing that prints the
                // config prints a secret.
                let resolved = match self.vaults.resolve_tree(&p.config.node) {
                    Ok(node) => node.map(|node| Captured {
                        node,
                        path: p.config.path.clone(),
                    }),
                    Err(problems) => {
                        for (sub, msg) in problems {
                            report.config_problem(p, &sub, &msg);
                        }
                        return None;
                    }
                };
                match self.registry.build(name, resolved.as_ref().unwrap_or(&p.config), &mut cx) {
                    Err(problems) => {
                        for (sub, msg) in problems {
                            report.config_problem(p, &sub, &msg);
                        }
                        None
                    }
                    Ok(None) => {
                        if info.kind == Kind::Observes && p.enabled {
                            report.unserved.push((
                                format!("plugin '{name}' (observes only; traffic passes without it)"),
                                p.origin.clone(),
                            ));
                        }
                        None
                    }
                    Ok(Some(plugin)) => p.enabled.then_some(plugin),
                }
            })
            .collect()
    }

    /// An Ocelot route's runtime form: its options as plugins (SecurityOptions, header
    /// transforms, RateLimitOptions, RequestIdKey, AuthenticationOptions and claims,
    /// FileCacheOptions), built through the registry from the
    /// settings the Ocelot loader merged and checked, and its downstream template.
    fn ocelot_route(&self, r: &OcelotRoute, report: &mut Report) -> RouteRt {
        let identity = Identity {
            id: r.id.as_str().into(),
            name: r.upstream.path_template.as_str().into(),
        };
        let service = r.service.map(|s| &self.services[s]);
        let bases: Vec<String> = match service {
            Some(svc) => {
                let scheme = if svc.tls { "https" } else { "http" };
                svc.dest
                    .peers()
                    .iter()
                    .map(|p| match p.port {
                        80 | 443 => format!("{scheme}://{}", p.host),
                        port => format!("{scheme}://{}:{port}", p.host),
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let mut options: Vec<(&str, serde_json::Value)> = Vec::new();
        if let Some(sec) = &r.security {
            options.push((
                "ocelot-security-options",
                serde_json::to_value(sec).unwrap_or_default(),
            ));
        }
        if !r.upstream_header_transform.is_empty() || !r.downstream_header_transform.is_empty() {
            options.push((
                "ocelot-header-transforms",
                serde_json::json!({
                    "upstream": r.upstream_header_transform,
                    "downstream": r.downstream_header_transform,
                    "base_url": r.base_url,
                    "downstream_bases": bases,
                }),
            ));
        }
        if let Some(rl) = &r.rate_limit {
            let mut v = serde_json::to_value(rl).unwrap_or_default();
            v["template"] = r.upstream.path_template.as_str().into();
            options.push(("ocelot-rate-limiting", v));
        }
        if let Some(k) = &r.request_id_key {
            options.push(("ocelot-request-id", serde_json::json!({ "key": k })));
        }
        if let Some(c) = &r.cache {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["method"] = r.downstream_method.clone().into();
            // The lookup and the copy of a response are two plugins (their PRIORITY
            // differs: see `plugins::ocelot_cache`).
            options.push(("ocelot-cache", v.clone()));
            options.push(("ocelot-cache-store", v));
        }
        if !r.auth.is_empty() {
            let mut v = serde_json::to_value(&r.auth).unwrap_or_default();
            v["downstream_template"] = r.downstream_path_template.as_str().into();
            options.push(("ocelot-authentication", v));
        }
        let at = crate::config::node::Span {
            line: r.origin.line,
            col: r.origin.column,
        };
        let mut plugins = Vec::new();
        for (name, value) in options {
            let mut config = Captured::from_json(&value, at, Path::root());
            // RateLimitOptions.Redis.Password may be a secret reference
            // (`{vault://env/NAME}`), read on every compile into a copy only this build sees,
            // as Kong plugin settings are.
            if name == "ocelot-rate-limiting" {
                match self.vaults.resolve_tree(&config.node) {
                    Ok(Some(node)) => config.node = node,
                    Ok(None) => {}
                    Err(problems) => {
                        for (sub, msg) in problems {
                            report.push(
                                Severity::Error,
                                &r.origin,
                                format!("{name}: {sub}: {msg}"),
                            );
                        }
                        continue;
                    }
                }
            }
            let mut cx = BuildCx {
                id: &r.id,
                route: Some(&identity),
                service: service.map(|s| &s.identity),
                state: self.state,
                consumers: self.consumers,
                auth_providers: self.auth_providers,
            };
            match self.registry.build(name, &config, &mut cx) {
                Ok(p) => plugins.extend(p),
                Err(problems) => {
                    for (sub, msg) in problems {
                        report.push(Severity::Error, &r.origin, format!("{name}: {sub}: {msg}"));
                    }
                }
            }
        }
        let version = match r.downstream_version.as_deref() {
            Some("1.0") | Some("1,0") | Some("1") => http::Version::HTTP_10,
            _ => http::Version::HTTP_11,
        };
        let cookie_jar = r
            .use_cookie_container
            .then(|| self.state.kept::<CookieJar>(&format!("cookies:{}", r.id)));
        RouteRt {
            identity,
            kind: RouteKind::Ocelot(Box::new(OcelotRt {
                template: r.upstream.path_template.as_str().into(),
                downstream: DownstreamTemplate::compile(&r.downstream_path_template),
                method: r
                    .downstream_method
                    .as_deref()
                    .and_then(|m| Method::from_bytes(m.as_bytes()).ok()),
                version,
                allow_auto_redirect: r.allow_auto_redirect,
                cookie_jar,
                plugins_use_placeholders: r.auth.uses_placeholders(),
            })),
            service: r.service,
            https_only: false,
            https_redirect: StatusCode::UPGRADE_REQUIRED,
            strip_path: false,
            preserve_host: false,
            path_handling: PathHandling::V0,
            chain: Chain::new(plugins),
            for_consumer: HashMap::new(),
            closed: Closed::of(r.unenforced.iter().map(|u| u.describe()).collect()),
        }
    }
}

impl Snapshot {
    /// A filter module this snapshot loaded changed on disk (or went): a reload must
    /// compile again even when the config files are the same.
    pub fn filters_changed(&self) -> bool {
        !filters::unchanged(&self.filter_files)
    }

    /// The plugins of `route` for a request authenticated as `consumer`, when the consumer
    /// (or a group of theirs) has plugins of its own there; `None` when the route's chain
    /// stands.
    pub fn chain_for_consumer(&self, route: &RouteRt, consumer: &Consumer) -> Option<Arc<Chain>> {
        route.for_consumer.get(&consumer.index).cloned()
    }

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
                Some(s) => format!("service {}", self.services[s].identity.name),
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
                let (host, port) = match svc.dest.peers() {
                    [p] => (p.host.to_string(), p.port),
                    peers => (
                        peers
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
                let decoded = crate::config::ocelot::template::decoded_path(path);
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
