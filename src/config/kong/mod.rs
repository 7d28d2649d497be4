//! Kong declarative config: raw file types (`raw`) ─▶ checked entities in the shared `Model`.
//! Defaults, references, uniqueness and value rules are Kong 3.x's (`kong/db/schema/entities/*`),
//! and every violation is collected with its file position.

mod certs;
pub mod raw;

use std::collections::{HashMap, HashSet};

use regex::Regex;

use super::de::Entities;
use super::diag::{Diagnostics, Path, SourceFile};
use super::model::{
    Consumer, ConsumerGroup, Credential, Filter, FilterChain, Model, Origin, PathHandling, Plugin,
    PluginScope, Protocol, Route, RoutePath, Secret, Service, Target, Upstream, derived_id,
};
use crate::uri::{is_normalized, normalize_path};
use raw::*;

/// Field defaults (`kong/db/schema/entities/services.lua`, `routes.lua`).
const DEFAULT_RETRIES: u32 = 5;
const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// The format versions Kong 3.x loads; 1.1 and 2.1 are migrated on load.
const FORMAT_VERSIONS: [&str; 3] = ["1.1", "2.1", "3.0"];

/// Loads one Kong file into `model`.
pub fn load_file(file: &SourceFile, raw: RawKong, model: &mut Model, diags: &mut Diagnostics) {
    let legacy_paths = check_format_version(file, &raw, diags);
    let mut cx = Cx::new(file, &raw, model, diags, legacy_paths);
    // Certificates first: services name them.
    cx.tls_entities(&raw);
    // Services (with nested routes and plugins) first, so that top-level entities can refer
    // to them.
    let nested_routes = cx.services(&raw);
    cx.routes(&raw, nested_routes);
    cx.upstreams(&raw);
    cx.consumers(&raw);
    // Plugins last: they may name any entity above.
    cx.plugins(&raw);
    cx.top_filter_chains(&raw);
    cx.unserved_entities(&raw);
}

/// Checks `_format_version`: true for the 1.1 and 2.1 formats, whose regex paths are
/// migrated on load.
fn check_format_version(file: &SourceFile, raw: &RawKong, diags: &mut Diagnostics) -> bool {
    let root = Path::root();
    match raw.format_version.as_deref() {
        Some(v) if FORMAT_VERSIONS.contains(&v) => v != "3.0",
        Some(v) => {
            diags.error(
                file,
                &root.key("_format_version"),
                format!(
                    "unsupported _format_version \"{v}\"; expected one of \"1.1\", \"2.1\", \"3.0\""
                ),
            );
            false
        }
        None => {
            diags.error(file, &root, "expected a declarative configuration with a `_format_version` key (\"3.0\" for Kong 3.x files)");
            false
        }
    }
}

/// A consumer's credential lists (nested in it), or the top-level ones.
struct Credentials<'r> {
    key_auth: &'r Entities<RawKeyAuth>,
    basic_auth: &'r Entities<RawBasicAuth>,
    hmac_auth: &'r Entities<RawHmacAuth>,
    jwt: &'r Entities<RawJwtSecret>,
    acls: &'r Entities<RawAcl>,
    oauth2: &'r Entities<super::de::Captured>,
}

/// jwt algorithms Kong accepts, and those that verify with a public key.
const JWT_ALGORITHMS: [&str; 13] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA",
];

/// A value Kong would generate for a field left out (`auto = true`): unknowable, so a
/// credential without its key or secret can never be presented.
fn generated() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl<'r> Credentials<'r> {
    /// Loads every credential of these lists into the consumer `nested_in` (or the one each
    /// names), under `parent` in the file.
    fn load(&self, cx: &mut Cx<'_, 'r>, nested_in: Option<usize>, parent: &Path) {
        for (i, c) in self.key_auth.iter() {
            let path = parent.key("keyauth_credentials").index(i);
            let Some(owner) =
                cx.owner(nested_in, c.consumer.as_ref(), &path, "keyauth_credentials")
            else {
                continue;
            };
            let key = c
                .key
                .clone()
                .filter(|k| !k.is_empty())
                .unwrap_or_else(generated);
            cx.add_credential(
                owner,
                c.id.as_deref(),
                Secret::KeyAuth { key },
                c.tags.as_ref(),
                &path,
            );
        }
        for (i, c) in self.basic_auth.iter() {
            let path = parent.key("basicauth_credentials").index(i);
            let Some(owner) = cx.owner(
                nested_in,
                c.consumer.as_ref(),
                &path,
                "basicauth_credentials",
            ) else {
                continue;
            };
            let (Some(username), Some(password)) = (
                cx.required(&c.username, &path, "username"),
                cx.required(&c.password, &path, "password"),
            ) else {
                continue;
            };
            let secret = Secret::BasicAuth {
                username: username.to_string(),
                password: password.to_string(),
            };
            cx.add_credential(owner, c.id.as_deref(), secret, c.tags.as_ref(), &path);
        }
        for (i, c) in self.hmac_auth.iter() {
            let path = parent.key("hmacauth_credentials").index(i);
            let Some(owner) = cx.owner(
                nested_in,
                c.consumer.as_ref(),
                &path,
                "hmacauth_credentials",
            ) else {
                continue;
            };
            let Some(username) = cx.required(&c.username, &path, "username") else {
                continue;
            };
            let secret = Secret::HmacAuth {
                username: username.to_string(),
                secret: c.secret.clone().unwrap_or_else(generated),
            };
            cx.add_credential(owner, c.id.as_deref(), secret, c.tags.as_ref(), &path);
        }
        for (i, c) in self.jwt.iter() {
            let path = parent.key("jwt_secrets").index(i);
            let Some(owner) = cx.owner(nested_in, c.consumer.as_ref(), &path, "jwt_secrets") else {
                continue;
            };
            let Some(secret) = jwt_secret(cx, c, &path) else {
                continue;
            };
            cx.add_credential(owner, c.id.as_deref(), secret, c.tags.as_ref(), &path);
        }
        for (i, c) in self.acls.iter() {
            let path = parent.key("acls").index(i);
            let Some(owner) = cx.owner(nested_in, c.consumer.as_ref(), &path, "acls") else {
                continue;
            };
            let Some(group) = cx.required(&c.group, &path, "group") else {
                continue;
            };
            let secret = Secret::Acl {
                group: group.to_string(),
            };
            cx.add_credential(owner, c.id.as_deref(), secret, c.tags.as_ref(), &path);
        }
        self.load_oauth2(cx, nested_in, parent);
    }

    /// oauth2 credentials: kept (in the model, not served: oauth2 needs a database).
    fn load_oauth2(&self, cx: &mut Cx<'_, 'r>, nested_in: Option<usize>, parent: &Path) {
        for (i, c) in self.oauth2.iter() {
            let path = parent.key("oauth2_credentials").index(i);
            let named = c
                .node
                .get("consumer", false)
                .and_then(|n| n.as_str().map(|s| RawRef::Key(s.to_string())));
            let Some(owner) = cx.owner(nested_in, named.as_ref(), &path, "oauth2_credentials")
            else {
                continue;
            };
            let id = c
                .node
                .get("id", false)
                .and_then(|n| n.as_str())
                .map(str::to_string);
            cx.add_credential(
                owner,
                id.as_deref(),
                Secret::OAuth2(c.node.to_json()),
                None,
                &path,
            );
            cx.mark_unserved("oauth2_credentials (oauth2 needs a database)", &path);
        }
    }
}

/// A jwt secret's `Secret`: its algorithm is one Kong knows, and an asymmetric one comes
/// with a PEM public key. `None` when it is not (reported).
fn jwt_secret(cx: &mut Cx<'_, '_>, c: &RawJwtSecret, path: &Path) -> Option<Secret> {
    let algorithm = c.algorithm.clone().unwrap_or_else(|| "HS256".into());
    if !JWT_ALGORITHMS.contains(&algorithm.as_str()) {
        cx.diags.error(
            cx.file,
            &path.key("algorithm"),
            format!("expected one of: {}", JWT_ALGORITHMS.join(", ")),
        );
        return None;
    }
    let asymmetric = !algorithm.starts_with("HS");
    if asymmetric && c.rsa_public_key.is_none() {
        cx.diags.error(cx.file, &path.key("rsa_public_key"), format!("required field missing: `rsa_public_key` (algorithm {algorithm} verifies with a public key)"));
        return None;
    }
    if let Some(pem) = &c.rsa_public_key
        && asymmetric
        && !pem.contains("-----BEGIN PUBLIC KEY-----")
    {
        cx.diags.error(
            cx.file,
            &path.key("rsa_public_key"),
            "invalid key: expected a PEM public key (-----BEGIN PUBLIC KEY-----)",
        );
        return None;
    }
    Some(Secret::Jwt {
        key: c
            .key
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(generated),
        secret: c.secret.clone().unwrap_or_else(generated),
        algorithm,
        rsa_public_key: c.rsa_public_key.clone(),
    })
}

/// What a route matches on, for Kong's entity checks.
struct Matching<'m> {
    protocols: &'m [Protocol],
    methods: &'m [String],
    hosts: &'m [String],
    headers: &'m [(String, Vec<String>)],
    snis: &'m [String],
}

/// A plugin's scope as a map key: service, route, consumer and consumer group.
type ScopeKey = (Option<usize>, Option<usize>, Option<usize>, Option<usize>);

fn scope_key(s: &PluginScope) -> ScopeKey {
    (s.service, s.route, s.consumer, s.consumer_group)
}

/// The loading context of one file. Keys borrow from the raw file (`'r`), which outlives it.
struct Cx<'a, 'r> {
    file: &'a SourceFile,
    diags: &'a mut Diagnostics,
    model: &'a mut Model,
    legacy_paths: bool,
    services_by_key: HashMap<&'r str, usize>,
    routes_by_key: HashMap<&'r str, usize>,
    consumers_by_key: HashMap<&'r str, usize>,
    consumer_groups_by_key: HashMap<&'r str, usize>,
    upstreams_by_name: HashMap<&'r str, usize>,
    /// Certificates and CA certificates by id (given or derived), as model indexes.
    certificates_by_id: HashMap<String, usize>,
    ca_by_id: HashMap<String, usize>,
    /// SNI names declared so far (lower-cased): each is unique.
    sni_names: HashSet<String>,
    /// Credential values that must be unique (keys, usernames), by kind, with where each
    /// was declared.
    credential_values: HashMap<(&'static str, String), String>,
    /// Indices in `model.plugins` by scope (other files' plugins included), for Kong's
    /// uniqueness rule without comparing every pair of plugins.
    plugins_by_scope: HashMap<ScopeKey, Vec<usize>>,
    /// Plugins nested in services, routes, consumers and consumer groups, with the scope
    /// they get and their path: read once every entity a plugin may name is known.
    nested_plugins: Vec<(PluginScope, &'r Entities<RawPlugin>, Path)>,
}

impl<'a, 'r> Cx<'a, 'r> {
    /// The context of one file, its lookups sized for `raw`; `model` may already hold other
    /// files' entities (their plugins count in Kong's uniqueness rule).
    fn new(
        file: &'a SourceFile,
        raw: &RawKong,
        model: &'a mut Model,
        diags: &'a mut Diagnostics,
        legacy_paths: bool,
    ) -> Self {
        let route_count = raw.routes.len()
            + raw
                .services
                .iter()
                .map(|(_, s)| s.routes.len())
                .sum::<usize>();
        model.routes.reserve(route_count);
        model.services.reserve(raw.services.len());
        let mut cx = Cx {
            file,
            diags,
            model,
            legacy_paths,
            services_by_key: HashMap::with_capacity(raw.services.len()),
            routes_by_key: HashMap::with_capacity(route_count),
            consumers_by_key: HashMap::new(),
            consumer_groups_by_key: HashMap::new(),
            upstreams_by_name: HashMap::new(),
            certificates_by_id: HashMap::new(),
            ca_by_id: HashMap::new(),
            sni_names: HashSet::new(),
            credential_values: HashMap::new(),
            plugins_by_scope: HashMap::new(),
            nested_plugins: Vec::new(),
        };
        for (i, p) in cx.model.plugins.iter().enumerate() {
            cx.plugins_by_scope
                .entry(scope_key(&p.scope))
                .or_default()
                .push(i);
        }
        cx
    }
}

impl<'r> Cx<'_, 'r> {
    /// The services, with their nested plugins (kept for later) and filter chains; gives
    /// their nested routes, to be read once every service is known.
    fn services(&mut self, raw: &'r RawKong) -> Vec<(usize, &'r Entities<RawRoute>, Path)> {
        let mut nested_routes = Vec::new();
        for (i, s) in raw.services.iter() {
            let path = Path::root().key("services").index(i);
            if let Some(idx) = self.service(s, &path) {
                nested_routes.push((idx, &s.routes, path.key("routes")));
                if !s.plugins.is_empty() {
                    self.nested_plugins.push((
                        PluginScope {
                            service: Some(idx),
                            ..Default::default()
                        },
                        &s.plugins,
                        path.key("plugins"),
                    ));
                }
            }
            if let Some(idx) = self.model.services.len().checked_sub(1)
                && !s.filter_chains.is_empty()
            {
                let scope = PluginScope {
                    service: Some(idx),
                    ..Default::default()
                };
                self.filter_chains(&s.filter_chains, &scope, &path);
            }
        }
        nested_routes
    }

    /// The routes nested in services, then the top-level ones (which name their service).
    fn routes(
        &mut self,
        raw: &'r RawKong,
        nested_routes: Vec<(usize, &'r Entities<RawRoute>, Path)>,
    ) {
        for (svc, routes, path) in nested_routes {
            for (j, r) in routes.iter() {
                let rpath = path.index(j);
                if r.service.is_some() {
                    self.diags.error(
                        self.file,
                        &rpath.key("service"),
                        "a route nested in a service takes that service; remove `service`",
                    );
                }
                self.route_and_attachments(r, Some(svc), &rpath);
            }
        }
        for (i, r) in raw.routes.iter() {
            let path = Path::root().key("routes").index(i);
            let svc = r
                .service
                .as_ref()
                .and_then(|s| self.resolve("services", s, &path.key("service")));
            self.route_and_attachments(r, svc, &path);
        }
    }

    /// The upstreams, then the top-level targets (which name their upstream).
    fn upstreams(&mut self, raw: &'r RawKong) {
        let root = Path::root();
        for (i, u) in raw.upstreams.iter() {
            self.upstream(u, &root.key("upstreams").index(i));
        }
        for (i, t) in raw.targets.iter() {
            let path = root.key("targets").index(i);
            match t.upstream.as_ref() {
                Some(r) => {
                    if let Some(u) = self.resolve("upstreams", r, &path.key("upstream"))
                        && let Some(target) = self.target(t, &path)
                    {
                        self.model.upstreams[u].targets.push(target);
                    }
                }
                None => self.diags.error(
                    self.file,
                    &path,
                    "a top-level target needs `upstream` (the upstream's name or id)",
                ),
            }
        }
    }

    /// Consumer groups and consumers (with their nested plugins, kept for later), the
    /// top-level credentials, then the groups' members.
    fn consumers(&mut self, raw: &'r RawKong) {
        let root = Path::root();
        for (i, g) in raw.consumer_groups.iter() {
            let path = root.key("consumer_groups").index(i);
            if let Some(idx) = self.consumer_group(g, &path)
                && !g.plugins.is_empty()
            {
                self.nested_plugins.push((
                    PluginScope {
                        consumer_group: Some(idx),
                        ..Default::default()
                    },
                    &g.plugins,
                    path.key("plugins"),
                ));
            }
        }
        for (i, c) in raw.consumers.iter() {
            let path = root.key("consumers").index(i);
            if let Some(idx) = self.consumer(c, &path)
                && !c.plugins.is_empty()
            {
                self.nested_plugins.push((
                    PluginScope {
                        consumer: Some(idx),
                        ..Default::default()
                    },
                    &c.plugins,
                    path.key("plugins"),
                ));
            }
        }
        let top = Credentials {
            key_auth: &raw.keyauth_credentials,
            basic_auth: &raw.basicauth_credentials,
            hmac_auth: &raw.hmacauth_credentials,
            jwt: &raw.jwt_secrets,
            acls: &raw.acls,
            oauth2: &raw.oauth2_credentials,
        };
        top.load(self, None, &root);
        self.group_members(raw);
    }

    /// The `consumers` lists of consumer groups: each names a consumer that joins it.
    fn group_members(&mut self, raw: &'r RawKong) {
        for (i, g) in raw.consumer_groups.iter() {
            let path = Path::root()
                .key("consumer_groups")
                .index(i)
                .key("consumers");
            for (j, member) in g.consumers.iter() {
                let group = self
                    .consumer_groups_by_key
                    .get(g.name.as_deref().unwrap_or_default())
                    .copied();
                let consumer = self.resolve("consumers", member, &path.index(j));
                if let (Some(group), Some(consumer)) = (group, consumer) {
                    self.join_group(consumer, group);
                }
            }
        }
    }

    /// The plugins nested in other entities, then the top-level ones (scoped by the
    /// entities they name).
    fn plugins(&mut self, raw: &'r RawKong) {
        for (scope, list, path) in std::mem::take(&mut self.nested_plugins) {
            for (i, p) in list.iter() {
                self.plugin(p, scope.clone(), &path.index(i));
            }
        }
        for (i, p) in raw.plugins.iter() {
            let path = Path::root().key("plugins").index(i);
            let scope = PluginScope {
                service: p
                    .service
                    .as_ref()
                    .and_then(|r| self.resolve("services", r, &path.key("service"))),
                route: p
                    .route
                    .as_ref()
                    .and_then(|r| self.resolve("routes", r, &path.key("route"))),
                consumer: p
                    .consumer
                    .as_ref()
                    .and_then(|r| self.resolve("consumers", r, &path.key("consumer"))),
                consumer_group: p
                    .consumer_group
                    .as_ref()
                    .and_then(|r| self.resolve("consumer_groups", r, &path.key("consumer_group"))),
            };
            self.plugin(p, scope, &path);
        }
    }

    /// Top-level filter chains: each names exactly one service or route.
    fn top_filter_chains(&mut self, raw: &'r RawKong) {
        for (i, fc) in raw.filter_chains.iter() {
            let path = Path::root().key("filter_chains").index(i);
            let service = fc
                .service
                .as_ref()
                .and_then(|r| self.resolve("services", r, &path.key("service")));
            let route = fc
                .route
                .as_ref()
                .and_then(|r| self.resolve("routes", r, &path.key("route")));
            match (fc.service.is_some(), fc.route.is_some()) {
                (true, true) | (false, false) => self.diags.error(
                    self.file,
                    &path,
                    "a top-level filter chain needs exactly one of `service` or `route`",
                ),
                _ if service.is_some() || route.is_some() => {
                    let scope = PluginScope {
                        service,
                        route,
                        ..Default::default()
                    };
                    self.filter_chain(fc, scope, &path);
                }
                _ => {}
            }
        }
    }

    /// Key sets and keys (not served yet: recorded as such), and vaults.
    fn unserved_entities(&mut self, raw: &'r RawKong) {
        let root = Path::root();
        for (i, v) in raw.vaults.iter() {
            self.vault(v, &root.key("vaults").index(i));
        }
        self.unserved_list(&raw.key_sets, &root, "key_sets");
        self.unserved_list(&raw.keys, &root, "keys");
    }

    /// A route, then what hangs off it: its plugins, kept in `nested_plugins` to be read
    /// once every entity they may name is known, and its filter chains (not served yet).
    fn route_and_attachments(&mut self, r: &'r RawRoute, service: Option<usize>, path: &Path) {
        if let Some(ridx) = self.route(r, service, path)
            && !r.plugins.is_empty()
        {
            self.nested_plugins.push((
                PluginScope {
                    route: Some(ridx),
                    ..Default::default()
                },
                &r.plugins,
                path.key("plugins"),
            ));
        }
        if let Some(ridx) = self.model.routes.len().checked_sub(1)
            && !r.filter_chains.is_empty()
        {
            let scope = PluginScope {
                route: Some(ridx),
                ..Default::default()
            };
            self.filter_chains(&r.filter_chains, &scope, path);
        }
    }

    /// Filter chains nested in a service or route.
    fn filter_chains(
        &mut self,
        list: &Entities<RawFilterChain>,
        scope: &PluginScope,
        parent: &Path,
    ) {
        let path = parent.key("filter_chains");
        for (i, fc) in list.iter() {
            let fpath = path.index(i);
            if fc.service.is_some() || fc.route.is_some() {
                self.diags.error(
                    self.file,
                    &fpath,
                    "a filter chain nested in a service or route takes it; remove `service`/`route`",
                );
            }
            self.filter_chain(fc, scope.clone(), &fpath);
        }
    }

    /// A Proxy-Wasm filter chain on a service or route.
    fn filter_chain(&mut self, fc: &RawFilterChain, scope: PluginScope, path: &Path) {
        let mut filters = Vec::new();
        for (i, f) in fc.filters.iter().flatten().enumerate() {
            match &f.name {
                Some(n) if f.enabled.unwrap_or(true) => filters.push(Filter {
                    name: n.clone(),
                    config: f.config.clone(),
                    origin: self.origin(&path.key("filters").index(i)),
                }),
                Some(_) => {}
                None => self.diags.error(
                    self.file,
                    &path.key("filters").index(i),
                    "required field missing: `name`",
                ),
            }
        }
        if fc.filters.as_ref().is_none_or(|f| f.is_empty()) {
            self.diags.error(
                self.file,
                &path.key("filters"),
                "required field missing: `filters` (at least one filter)",
            );
        }
        let key = format!(
            "{}:{:?}:{:?}",
            fc.name.as_deref().unwrap_or(""),
            scope.service.map(|i| &self.model.services[i].id),
            scope.route.map(|i| &self.model.routes[i].id),
        );
        let origin = self.origin(path);
        self.model.filter_chains.push(FilterChain {
            id: fc
                .id
                .clone()
                .unwrap_or_else(|| derived_id("filter_chains", &key)),
            name: fc.name.clone(),
            enabled: fc.enabled.unwrap_or(true),
            scope,
            filters,
            origin,
        });
    }

    /// A `vaults` entity: references name it by its `prefix`. Only `env` vaults can be read;
    /// references to others fail when they are resolved.
    fn vault(&mut self, v: &RawVault, path: &Path) {
        let (Some(kind), Some(prefix)) = (&v.name, &v.prefix) else {
            self.diags.error(
                self.file,
                path,
                "required field missing: a vault needs `name` (its kind: env, aws, gcp, hcv, azure) and `prefix` (the name references use)",
            );
            return;
        };
        let env_prefix = v
            .config
            .as_ref()
            .and_then(|c| c.node.get("prefix", false))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        if kind != "env" {
            self.mark_unserved(
                &format!("vault `{prefix}` of kind `{kind}` (only env vaults are read)"),
                path,
            );
        }
        self.model.vaults.add(kind, prefix, env_prefix);
    }

    /// A consumer group: plugins scoped to it apply to its member consumers.
    fn consumer_group(&mut self, g: &'r RawConsumerGroup, path: &Path) -> Option<usize> {
        let Some(name) = &g.name else {
            self.diags
                .error(self.file, path, "required field missing: `name`");
            return None;
        };
        let idx = self.model.consumer_groups.len();
        self.register("consumer_groups", "name", name, idx, path);
        if let Some(id) = &g.id {
            self.register("consumer_groups", "id", id, idx, path);
        }
        self.model.consumer_groups.push(ConsumerGroup {
            id: g
                .id
                .clone()
                .unwrap_or_else(|| derived_id("consumer_groups", name)),
            name: name.clone(),
            tags: g.tags.clone().unwrap_or_default(),
            origin: self.origin(path),
        });
        Some(idx)
    }

    fn origin(&self, path: &Path) -> Origin {
        let span = self.file.span_of(path);
        Origin {
            file: self.file.name.clone(),
            line: span.line,
            column: span.col,
            path: path.render(),
        }
    }

    fn mark_unserved(&mut self, kind: &str, path: &Path) {
        let origin = self.origin(path);
        self.model.unserved.push((kind.to_string(), origin));
    }

    /// Marks every entry of `parent.kind` as not served.
    fn unserved_list<T>(&mut self, list: &Entities<T>, parent: &Path, kind: &'static str) {
        if list.is_empty() {
            return;
        }
        let path = parent.key(kind);
        for (i, _) in list.iter() {
            self.mark_unserved(kind, &path.index(i));
        }
    }

    fn keys(&mut self, kind: &str) -> &mut HashMap<&'r str, usize> {
        match kind {
            "services" => &mut self.services_by_key,
            "routes" => &mut self.routes_by_key,
            "consumers" => &mut self.consumers_by_key,
            "consumer_groups" => &mut self.consumer_groups_by_key,
            _ => &mut self.upstreams_by_name,
        }
    }

    /// Finds the entity a foreign key names (by name or id), or reports Kong's error.
    fn resolve(&mut self, kind: &str, r: &RawRef, path: &Path) -> Option<usize> {
        let key = r.key().unwrap_or_default();
        let found = self.keys(kind).get(key).copied();
        if found.is_none() {
            let singular = kind.trim_end_matches('s');
            self.diags.error(
                self.file,
                path,
                format!("invalid reference '{singular}: {key}' (no such entry in '{kind}')"),
            );
        }
        found
    }

    /// Registers `key` (a name or id) for `kind`, reporting Kong's uniqueness violation.
    fn register(&mut self, kind: &str, field: &'static str, key: &'r str, idx: usize, path: &Path) {
        if self.keys(kind).insert(key, idx).is_some() {
            self.diags.error(self.file, &path.key(field), format!("uniqueness violation: '{kind}' entity with {field} set to '{key}' already declared"));
        }
    }

    fn service(&mut self, s: &'r RawService, path: &Path) -> Option<usize> {
        let mut protocol = Protocol::Http;
        let mut host = s.host.clone();
        let mut port = s.port;
        let mut svc_path = s.path.clone();
        if let Some(p) = &s.protocol {
            match parse_protocol(p) {
                Some(p) => protocol = p,
                None => self.diags.error(self.file, &path.key("protocol"), format!("expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss; found \"{p}\"")),
            }
        }
        if let Some(url) = &s.url {
            match parse_url(url) {
                Ok(u) => {
                    protocol = u.protocol;
                    host = Some(u.host);
                    port = Some(u32::from(u.port));
                    svc_path = u.path;
                }
                Err(e) => self.diags.error(
                    self.file,
                    &path.key("url"),
                    format!("invalid url \"{url}\": {e}"),
                ),
            }
        }
        let Some(host) = host else {
            self.diags.error(
                self.file,
                path,
                "required field missing: `host` (or give `url`)",
            );
            return None;
        };
        let port = match port {
            None => protocol.default_port(),
            Some(p) if p <= 65535 => p as u16,
            Some(p) => {
                self.diags.error(
                    self.file,
                    &path.key("port"),
                    format!("value should be between 0 and 65535, found {p}"),
                );
                0
            }
        };
        if let Some(p) = &svc_path
            && !p.starts_with('/')
        {
            self.diags
                .error(self.file, &path.key("path"), "should start with: /");
        }
        let retries =
            self.ranged(s.retries, DEFAULT_RETRIES as i64, 0, 32767, path, "retries") as u32;
        let timeout = |cx: &mut Self, v: Option<i64>, field: &'static str| {
            cx.ranged(v, DEFAULT_TIMEOUT_MS as i64, 1, 2_147_483_646, path, field) as u64
        };
        let connect_timeout = timeout(self, s.connect_timeout, "connect_timeout");
        let write_timeout = timeout(self, s.write_timeout, "write_timeout");
        let read_timeout = timeout(self, s.read_timeout, "read_timeout");
        let tls_verify_depth = s
            .tls_verify_depth
            .map(|d| self.ranged(Some(d), 0, 0, 64, path, "tls_verify_depth") as u8);
        let (client_certificate, ca_certificates) = self.service_tls_refs(s, path);
        let idx = self.model.services.len();
        let id = s.id.clone().unwrap_or_else(|| match &s.name {
            Some(name) => derived_id("services", name),
            None => derived_id("services", &format!("{}#{}", self.file.name, path)),
        });
        if let Some(name) = &s.name {
            self.check_name(name, path);
            self.register("services", "name", name, idx, path);
        }
        if let Some(id) = &s.id {
            self.register("services", "id", id, idx, path);
        }
        self.model.services.push(Service {
            id,
            name: s.name.clone(),
            protocol,
            host,
            port,
            path: svc_path,
            retries,
            connect_timeout,
            write_timeout,
            read_timeout,
            enabled: s.enabled.unwrap_or(true),
            tls_verify: s.tls_verify,
            tls_verify_depth,
            ca_certificates,
            client_certificate,
            tags: s.tags.clone().unwrap_or_default(),
            origin: self.origin(path),
        });
        Some(idx)
    }

    /// `v` if within `min..=max`, else `default` and an error at `entity.field`.
    fn ranged(
        &mut self,
        v: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
        entity: &Path,
        field: &'static str,
    ) -> i64 {
        match v {
            None => default,
            Some(v) if (min..=max).contains(&v) => v,
            Some(v) => {
                self.diags.error(
                    self.file,
                    &entity.key(field),
                    format!("value should be between {min} and {max}, found {v}"),
                );
                default
            }
        }
    }

    /// Checks the `name` of the entity at `entity`.
    fn check_name(&mut self, name: &str, entity: &Path) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'));
        if !ok {
            self.diags.error(
                self.file,
                &entity.key("name"),
                format!("invalid name \"{name}\": use only letters, digits and . - _ ~"),
            );
        }
    }

    fn route(&mut self, r: &'r RawRoute, service: Option<usize>, path: &Path) -> Option<usize> {
        let mut ok = true;
        let protocols = self.route_protocols(r, path, &mut ok);
        let methods = r.methods.clone().unwrap_or_default();
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                self.diags.error(
                    self.file,
                    &path.key("methods").index(i),
                    format!("invalid value: {m} (methods are upper-case, e.g. GET)"),
                );
                ok = false;
            }
        }
        let hosts = r.hosts.clone().unwrap_or_default();
        for (i, h) in hosts.iter().enumerate() {
            if let Err(e) = check_host(h) {
                self.diags.error(
                    self.file,
                    &path.key("hosts").index(i),
                    format!("invalid host \"{h}\": {e}"),
                );
                ok = false;
            }
        }
        let mut paths = Vec::new();
        for (i, p) in r.paths.iter().flatten().enumerate() {
            match self.route_path(p) {
                Ok(rp) => paths.push(rp),
                Err(e) => {
                    self.diags.error(self.file, &path.key("paths").index(i), e);
                    ok = false;
                }
            }
        }
        let headers = self.route_headers(r, path, &mut ok);
        let snis = r.snis.clone().unwrap_or_default();
        let matching = Matching {
            protocols: &protocols,
            methods: &methods,
            hosts: &hosts,
            headers: &headers,
            snis: &snis,
        };
        ok &= self.check_matching(r, &matching, path);
        let code = r.https_redirect_status_code.unwrap_or(426);
        if ![426, 301, 302, 307, 308].contains(&code) {
            self.diags.error(
                self.file,
                &path.key("https_redirect_status_code"),
                format!("expected one of: 426, 301, 302, 307, 308; found {code}"),
            );
            ok = false;
        }
        let path_handling = self.path_handling(r, path, &mut ok);
        if r.sources.is_some() || r.destinations.is_some() {
            self.mark_unserved("stream routes (sources/destinations)", path);
        }
        if !ok {
            return None;
        }
        let idx = self.register_route(r, path);
        self.model.routes.push(Route {
            id: r.id.clone().unwrap_or_else(|| match &r.name {
                Some(name) => derived_id("routes", name),
                None => derived_id("routes", &format!("{}#{}", self.file.name, path)),
            }),
            name: r.name.clone(),
            service,
            protocols,
            methods,
            hosts,
            paths,
            headers,
            snis,
            strip_path: r.strip_path.unwrap_or(true),
            preserve_host: r.preserve_host.unwrap_or(false),
            regex_priority: r.regex_priority.unwrap_or(0),
            path_handling,
            https_redirect_status_code: code as u16,
            request_buffering: r.request_buffering.unwrap_or(true),
            response_buffering: r.response_buffering.unwrap_or(true),
            tags: r.tags.clone().unwrap_or_default(),
            origin: self.origin(path),
        });
        Some(idx)
    }

    /// A route's `protocols` (http and https when not given); the unknown ones are left
    /// out, each an error.
    fn route_protocols(&mut self, r: &RawRoute, path: &Path, ok: &mut bool) -> Vec<Protocol> {
        match &r.protocols {
            None => vec![Protocol::Http, Protocol::Https],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let parsed = parse_protocol(p);
                    if parsed.is_none() {
                        self.diags.error(self.file, &path.key("protocols").index(i), format!("expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss; found \"{p}\""));
                        *ok = false;
                    }
                    parsed
                })
                .collect(),
        }
    }

    /// A route's `headers`: names lower-cased; `host` is not one of them, and a `~*` value
    /// is a regex that must compile.
    fn route_headers(
        &mut self,
        r: &RawRoute,
        path: &Path,
        ok: &mut bool,
    ) -> Vec<(String, Vec<String>)> {
        let mut headers = Vec::new();
        for (name, values) in r.headers.iter().flatten() {
            let hpath = path.key("headers").key(name.clone());
            if name.eq_ignore_ascii_case("host") {
                self.diags.error(self.file, &hpath, "cannot contain 'host' header, which must be specified in the 'hosts' attribute");
                *ok = false;
            }
            let values = values.0.clone();
            for v in &values {
                if let Some(re) = v.strip_prefix("~*")
                    && let Err(e) = Regex::new(re)
                {
                    self.diags
                        .error(self.file, &hpath, format!("regex does not compile: {e}"));
                    *ok = false;
                }
            }
            headers.push((name.to_ascii_lowercase(), values));
        }
        headers
    }

    /// Kong's route entity checks on what a route matches: an http-like route must match
    /// on something, and `snis` needs a TLS protocol. False on an error.
    fn check_matching(&mut self, r: &RawRoute, m: &Matching, path: &Path) -> bool {
        let mut ok = true;
        let http_like = m.protocols.iter().any(|p| {
            matches!(
                p,
                Protocol::Http
                    | Protocol::Https
                    | Protocol::Grpc
                    | Protocol::Grpcs
                    | Protocol::Ws
                    | Protocol::Wss
            )
        });
        let no_paths = r.paths.as_ref().is_none_or(|p| p.is_empty());
        if http_like
            && m.methods.is_empty()
            && m.hosts.is_empty()
            && no_paths
            && m.headers.is_empty()
            && m.snis.is_empty()
        {
            let list = m
                .protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            self.diags.error(self.file, path, format!("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is '{list}'"));
            ok = false;
        }
        if !m.snis.is_empty() && !m.protocols.iter().any(|p| p.is_tls()) {
            self.diags.error(self.file, &path.key("snis"), "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'");
            ok = false;
        }
        ok
    }

    /// A route's `path_handling` (v0 when not given).
    fn path_handling(&mut self, r: &RawRoute, path: &Path, ok: &mut bool) -> PathHandling {
        match r.path_handling.as_deref() {
            None | Some("v0") => PathHandling::V0,
            Some("v1") => PathHandling::V1,
            Some(other) => {
                self.diags.error(
                    self.file,
                    &path.key("path_handling"),
                    format!("expected one of: v0, v1; found \"{other}\""),
                );
                *ok = false;
                PathHandling::V0
            }
        }
    }

    /// The index a checked route gets in the model, registered under its name and id
    /// (which must be unique).
    fn register_route(&mut self, r: &'r RawRoute, path: &Path) -> usize {
        let idx = self.model.routes.len();
        if let Some(name) = &r.name {
            self.check_name(name, path);
            self.register("routes", "name", name, idx, path);
        }
        if let Some(id) = &r.id {
            self.register("routes", "id", id, idx, path);
        }
        idx
    }

    /// Kong's `router_path` rules; 1.1/2.1 files are migrated as Kong does on load.
    fn route_path(&self, p: &str) -> Result<RoutePath, String> {
        if self.legacy_paths {
            let plain = p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~/%-".contains(&b));
            if !plain {
                return compile_regex_path(p).map(|_| RoutePath::Regex(p.to_string()));
            }
            if !p.starts_with('/') {
                return Err("should start with: / (fixed path) or ~/ (regex path)".into());
            }
            return Ok(RoutePath::Prefix(normalize_path(p).into_owned()));
        }
        if let Some(re) = p.strip_prefix('~') {
            if !re.starts_with('/') {
                return Err("should start with: / (fixed path) or ~/ (regex path)".into());
            }
            compile_regex_path(re).map(|_| RoutePath::Regex(re.to_string()))
        } else if !p.starts_with('/') {
            Err("should start with: / (fixed path) or ~/ (regex path)".into())
        } else if p.contains("//") {
            Err("must not have empty segments".into())
        } else if !is_normalized(p) {
            Err(format!(
                "non-normalized path, consider use '{}' instead",
                normalize_path(p)
            ))
        } else {
            Ok(RoutePath::Prefix(p.to_string()))
        }
    }

    fn upstream(&mut self, u: &'r RawUpstream, path: &Path) {
        let Some(name) = u.name.clone() else {
            self.diags
                .error(self.file, path, "required field missing: `name`");
            return;
        };
        let algorithm = u.algorithm.clone().unwrap_or_else(|| "round-robin".into());
        if ![
            "round-robin",
            "consistent-hashing",
            "least-connections",
            "latency",
        ]
        .contains(&algorithm.as_str())
        {
            self.diags.error(self.file, &path.key("algorithm"), format!("expected one of: consistent-hashing, least-connections, round-robin, latency; found \"{algorithm}\""));
        }
        let hash_values = [
            "none",
            "consumer",
            "ip",
            "header",
            "cookie",
            "path",
            "query_arg",
            "uri_capture",
        ];
        for (field, v) in [("hash_on", &u.hash_on), ("hash_fallback", &u.hash_fallback)] {
            if let Some(v) = v
                && !hash_values.contains(&v.as_str())
            {
                self.diags.error(
                    self.file,
                    &path.key(field),
                    format!("expected one of: {}; found \"{v}\"", hash_values.join(", ")),
                );
            }
        }
        let slots = self.ranged(u.slots, 10_000, 10, 65_536, path, "slots") as u32;
        let idx = self.model.upstreams.len();
        self.register(
            "upstreams",
            "name",
            u.name.as_deref().unwrap_or_default(),
            idx,
            path,
        );
        if let Some(id) = &u.id {
            self.register("upstreams", "id", id, idx, path);
        }
        if algorithm != "round-robin" || u.hash_on.as_deref().is_some_and(|h| h != "none") {
            self.mark_unserved(
                "upstream algorithms other than round-robin",
                &path.key("algorithm"),
            );
        }
        let healthchecks = u.healthchecks.as_ref().map(|h| h.node.to_json());
        if healthchecks.is_some() {
            self.mark_unserved("upstream healthchecks", &path.key("healthchecks"));
        }
        let mut targets = Vec::new();
        for (i, t) in u.targets.iter() {
            let tpath = path.key("targets").index(i);
            if t.upstream.is_some() {
                self.diags.error(
                    self.file,
                    &tpath.key("upstream"),
                    "a target nested in an upstream takes that upstream; remove `upstream`",
                );
            }
            targets.extend(self.target(t, &tpath));
        }
        self.model.upstreams.push(Upstream {
            id: u
                .id
                .clone()
                .unwrap_or_else(|| derived_id("upstreams", &name)),
            name,
            algorithm,
            hash_on: u.hash_on.clone().unwrap_or_else(|| "none".into()),
            hash_fallback: u.hash_fallback.clone().unwrap_or_else(|| "none".into()),
            slots,
            host_header: u.host_header.clone(),
            targets,
            healthchecks,
            origin: self.origin(path),
        });
    }

    fn target(&mut self, t: &RawTarget, path: &Path) -> Option<Target> {
        let Some(target) = &t.target else {
            self.diags.error(
                self.file,
                path,
                "required field missing: `target` (host:port)",
            );
            return None;
        };
        let weight = self.ranged(t.weight, 100, 0, 65_535, path, "weight") as u32;
        match split_host_port(target) {
            Some((host, port)) => Some(Target {
                host: host.to_string(),
                port: port.unwrap_or(8000),
                weight,
            }),
            None => {
                self.diags.error(
                    self.file,
                    &path.key("target"),
                    format!("invalid target \"{target}\": expected host or host:port"),
                );
                None
            }
        }
    }

    fn consumer(&mut self, c: &'r RawConsumer, path: &Path) -> Option<usize> {
        if c.username.is_none() && c.custom_id.is_none() {
            self.diags.error(
                self.file,
                path,
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            );
            return None;
        }
        let idx = self.model.consumers.len();
        let id = c.id.clone().unwrap_or_else(|| {
            derived_id(
                "consumers",
                c.username
                    .as_deref()
                    .or(c.custom_id.as_deref())
                    .unwrap_or_default(),
            )
        });
        if let Some(u) = &c.username {
            self.register("consumers", "username", u, idx, path);
        }
        if let Some(id) = &c.id {
            self.register("consumers", "id", id, idx, path);
        }
        let origin = self.origin(path);
        self.model.consumers.push(Consumer {
            id,
            username: c.username.clone(),
            custom_id: c.custom_id.clone(),
            tags: c.tags.clone().unwrap_or_default(),
            credentials: Vec::new(),
            groups: Vec::new(),
            origin,
        });
        let nested = Credentials {
            key_auth: &c.keyauth_credentials,
            basic_auth: &c.basicauth_credentials,
            hmac_auth: &c.hmacauth_credentials,
            jwt: &c.jwt_secrets,
            acls: &c.acls,
            oauth2: &c.oauth2_credentials,
        };
        nested.load(self, Some(idx), path);
        for (i, g) in c.groups.iter() {
            if let Some(group) = self.resolve("consumer_groups", g, &path.key("groups").index(i)) {
                self.join_group(idx, group);
            }
        }
        Some(idx)
    }

    fn join_group(&mut self, consumer: usize, group: usize) {
        let groups = &mut self.model.consumers[consumer].groups;
        if !groups.contains(&group) {
            groups.push(group);
        }
    }

    /// The consumer a credential belongs to: the one it is nested in, else the one its
    /// `consumer` names.
    fn owner(
        &mut self,
        nested_in: Option<usize>,
        named: Option<&RawRef>,
        path: &Path,
        kind: &str,
    ) -> Option<usize> {
        match (nested_in, named) {
            (Some(c), None) => Some(c),
            (Some(_), Some(_)) => {
                self.diags.error(
                    self.file,
                    &path.key("consumer"),
                    "a credential nested in a consumer takes that consumer; remove `consumer`",
                );
                None
            }
            (None, Some(r)) => self.resolve("consumers", r, &path.key("consumer")),
            (None, None) => {
                self.diags.error(self.file, path, format!("required field missing: `consumer` ({kind} belong to a consumer; nest them in it or name it here)"));
                None
            }
        }
    }

    /// Adds a checked credential to its consumer. Unique values (keys, usernames) clash
    /// across consumers as in Kong; the message names the other one's position, never the
    /// value, which may be a secret.
    fn add_credential(
        &mut self,
        consumer: usize,
        id: Option<&str>,
        secret: Secret,
        tags: Option<&Vec<String>>,
        path: &Path,
    ) {
        let kind = secret.kind();
        let unique: Option<(&'static str, String)> = match &secret {
            Secret::KeyAuth { key } => Some(("key", key.clone())),
            Secret::BasicAuth { username, .. } | Secret::HmacAuth { username, .. } => {
                Some(("username", username.clone()))
            }
            Secret::Jwt { key, .. } => Some(("key", key.clone())),
            Secret::Acl { group } => Some(("group", format!("{consumer}\0{group}"))),
            Secret::OAuth2(_) => None,
        };
        let origin = self.origin(path);
        if let Some((field, value)) = unique {
            let at = format!("{}:{}", origin.file, origin.line);
            if let Some(first) = self.credential_values.insert((kind, value), at.clone()) {
                self.diags.error(self.file, &path.key(field), format!("uniqueness violation: '{kind}' entity with the same {field} already declared at {first}"));
                return;
            }
        }
        let id = id.map(str::to_string).unwrap_or_else(|| {
            let n = self.model.consumers[consumer].credentials.len();
            derived_id(kind, &format!("{}#{n}", self.model.consumers[consumer].id))
        });
        self.model.consumers[consumer].credentials.push(Credential {
            id,
            secret,
            tags: tags.cloned().unwrap_or_default(),
            origin,
        });
    }

    /// A required string field of a credential, or Kong's error.
    fn required<'v>(
        &mut self,
        value: &'v Option<String>,
        path: &Path,
        field: &'static str,
    ) -> Option<&'v str> {
        match value.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => Some(v),
            None => {
                self.diags.error(
                    self.file,
                    &path.key(field),
                    format!("required field missing: `{field}`"),
                );
                None
            }
        }
    }

    fn plugin(&mut self, p: &'r RawPlugin, scope: PluginScope, path: &Path) {
        let Some(name) = p.name.clone() else {
            self.diags
                .error(self.file, path, "required field missing: `name`");
            return;
        };
        let config = p.config.clone().unwrap_or_else(|| super::de::Captured {
            node: super::node::Node {
                span: self.file.span_of(path),
                value: super::node::Value::Map(Vec::new()),
            },
            path: path.key("config"),
        });
        let mut protocols = Vec::new();
        for (i, proto) in p.protocols.iter().flatten().enumerate() {
            match parse_protocol(proto) {
                Some(pr) => protocols.push(pr),
                None => self.diags.error(
                    self.file,
                    &path.key("protocols").index(i),
                    format!("unknown protocol \"{proto}\""),
                ),
            }
        }
        if protocols.is_empty() {
            protocols = vec![
                Protocol::Grpc,
                Protocol::Grpcs,
                Protocol::Http,
                Protocol::Https,
            ];
        }
        let scope_key = scope_key(&scope);
        let same_scope = self.plugins_by_scope.entry(scope_key).or_default();
        let clash = same_scope
            .iter()
            .map(|&i| &self.model.plugins[i])
            .find(|q| q.name == name && q.instance_name == p.instance_name);
        if let Some(q) = clash {
            let msg = format!(
                "uniqueness violation: 'plugins' entity with name '{name}' is already declared for the same scope at {}:{}",
                q.origin.file, q.origin.line
            );
            self.diags.error(self.file, path, msg);
            return;
        }
        let mut key = format!(
            "{name}:{:?}:{:?}:{:?}:{}",
            scope.service.map(|i| &self.model.services[i].id),
            scope.route.map(|i| &self.model.routes[i].id),
            scope.consumer.map(|i| &self.model.consumers[i].id),
            p.instance_name.as_deref().unwrap_or("")
        );
        if let Some(g) = scope.consumer_group {
            key.push_str(":group:");
            key.push_str(&self.model.consumer_groups[g].id);
        }
        let idx = self.model.plugins.len();
        self.plugins_by_scope
            .entry(scope_key)
            .or_default()
            .push(idx);
        self.model.plugins.push(Plugin {
            id: p.id.clone().unwrap_or_else(|| derived_id("plugins", &key)),
            name,
            instance_name: p.instance_name.clone(),
            enabled: p.enabled.unwrap_or(true),
            protocols,
            config,
            scope,
            file: self.file.name.clone(),
            name_origin: self.origin(&path.key("name")),
            origin: self.origin(path),
        });
    }
}

pub fn parse_protocol(p: &str) -> Option<Protocol> {
    serde_json::from_value(serde_json::Value::String(p.to_string())).ok()
}

/// Compiles a Kong regex path the way traditional_compatible does: anchored at the start only.
pub fn compile_regex_path(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})")).map_err(|e| {
        format!(
            "regex does not compile: {}",
            e.to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ")
        )
    })
}

pub struct ParsedUrl {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
}

pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected scheme://host[:port][/path]")?;
    let protocol = parse_protocol(&scheme.to_ascii_lowercase())
        .ok_or_else(|| format!("unknown scheme \"{scheme}\""))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_host_port(authority).ok_or("invalid host or port")?;
    if host.is_empty() {
        return Err("missing host".into());
    }
    let path = path
        .map(|p| p.split('?').next().unwrap_or_default().to_string())
        .filter(|p| !p.is_empty());
    Ok(ParsedUrl {
        protocol,
        host: host.to_string(),
        port: port.unwrap_or(protocol.default_port()),
        path,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((h, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((h, None)),
            None => None,
        };
    }
    // Bytes, not a `char` pattern: every request's Host goes through here.
    let b = s.as_bytes();
    match b.iter().rposition(|&c| c == b':') {
        Some(i) if !b[..i].contains(&b':') => Some((&s[..i], Some(s[i + 1..].parse().ok()?))),
        _ => Some((s, None)),
    }
}

/// Kong's `typedefs.host_with_optional_port` plus wildcard rules.
fn check_host(h: &str) -> Result<(), String> {
    let (name, _) = split_host_port(h).ok_or("invalid port")?;
    let stars = name.matches('*').count();
    if stars > 1 {
        return Err("only one wildcard is allowed".into());
    }
    if stars == 1 && !(name.starts_with("*.") || name.ends_with(".*")) {
        return Err("the wildcard must be the whole leftmost or rightmost label".into());
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'))
    {
        return Err("not a valid hostname".into());
    }
    Ok(())
}
