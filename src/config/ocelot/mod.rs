//! Ocelot configuration: `ocelot.json`, `ocelot.*.json` and `ocelot.global.json` ─▶ one
//! merged FileConfiguration ─▶ checked entities in the shared `Model`.
//!
//! Merge (documented in the README):
//! 1. `ocelot.json` first, then every other `ocelot.*.json` by file name (case-insensitive),
//!    `ocelot.global.json` included; each file's Routes (or pre-16 ReRoutes), Aggregates and
//!    DynamicRoutes are appended in that order.
//! 2. GlobalConfiguration comes from `ocelot.global.json`, else from `ocelot.json`. One in any
//!    other file is an error naming both files (Ocelot would silently ignore it).
//! 3. With an environment NAME (`--environment`, `SWITCHYARD_ENVIRONMENT`,
//!    `ASPNETCORE_ENVIRONMENT`), `ocelot.NAME.json` is not a part file: it is layered over
//!    the merged result the way .NET configuration layers JSON files (keys override, arrays
//!    overlay by index).
//! 4. Ocelot writes its merge into `ocelot.json`; when every route of `ocelot.json` also
//!    stands in a part file, `ocelot.json` is taken for such a stale copy: a warning, and it
//!    is skipped.
//!
//! Validation follows Ocelot's FileConfigurationFluentValidator and RouteFluentValidator;
//! every problem is reported with its file, line, column and JSON path.

pub mod aggregate;
pub mod auth;
pub mod cache;
pub mod raw;
pub mod redis_options;
pub mod template;

use std::borrow::Cow;
use std::collections::HashMap;

use indexmap::IndexMap;
use regex::Regex;

use super::de::{self, DeError, Dialect};
use super::diag::{Diagnostics, Path, Seg, Severity, SourceFile, nearest};
use super::model::{
    Model, OcelotAggregate, OcelotRateLimit, OcelotRoute, OcelotRouteKeyConfig, OcelotSecurity,
    OcelotUpstream, Origin, Protocol, Service, Target, Unenforced, Upstream, derived_id,
};
use super::node::{Node, Value};
use raw::*;
use template::{HeaderTemplate, UpstreamTemplate, placeholder_names};

/// Ocelot's default `BaseUrl` for `{BaseUrl}` when GlobalConfiguration has none.
const DEFAULT_BASE_URL: &str = "http://localhost:5000";
/// Ocelot's default downstream timeout (24.1+), seconds.
const DEFAULT_TIMEOUT_S: i64 = 90;
/// The longest downstream timeout, seconds.
const MAX_DURATION_S: i64 = 86_400;
/// The longest rate-limit window or wait (a year), milliseconds.
const MAX_WINDOW_MS: f64 = 366.0 * 86_400_000.0;
/// Connect timeout for Ocelot destinations (HttpClient's connect is bounded by the request
/// timeout; a separate, shorter bound keeps a dead host from holding a request for 90 s).
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Environment names ASP.NET projects commonly use, for hints.
const ENVIRONMENT_NAMES: [&str; 9] = [
    "Development",
    "Staging",
    "Production",
    "Local",
    "Test",
    "Testing",
    "QA",
    "Docker",
    "Dev",
];

/// The top-level keys of an Ocelot file.
const TOP_KEYS: [&str; 7] = [
    "Routes",
    "ReRoutes",
    "Aggregates",
    "DynamicRoutes",
    "DynamicReRoutes",
    "GlobalConfiguration",
    "SwaggerEndPoints",
];

/// One merged entity (route, aggregate, dynamic route or the global section): its node after
/// layering and where each layer came from, so a problem is reported in the file that wrote
/// the offending value.
struct Entity {
    node: Node,
    /// (file index, path of the entity in that file); the first is the base.
    layers: Vec<(usize, Path)>,
}

/// The top-level sections of one file.
#[derive(Default)]
struct TopLevel {
    routes: Vec<(Path, Node)>,
    aggregates: Vec<(Path, Node)>,
    dynamic: Vec<(Path, Node)>,
    global: Option<(Path, Node)>,
    swagger: bool,
}

/// Loads every Ocelot file of one directory (already parsed) into `model`.
pub fn load(
    files: &[SourceFile],
    environment: Option<&str>,
    model: &mut Model,
    diags: &mut Diagnostics,
) {
    if files.is_empty() {
        return;
    }
    let mut layout = Layout::of(files, environment);
    let tops: Vec<TopLevel> = files.iter().map(|f| top_level(f, diags)).collect();
    let mut cx = Cx {
        files,
        diags,
        model,
        unenforced: Vec::new(),
    };
    cx.swagger(&tops);
    layout.skip_main = cx.stale_main(&layout, &tops);
    let mut merged = layout.merge(&tops);
    cx.misplaced_globals(&layout, &tops);
    merged.overlay_environment(&layout, &tops);
    cx.check_merged(&merged);
    cx.model.ocelot_merged = Some(merged_json(
        &merged.routes,
        &merged.aggregates,
        &merged.dynamic,
        merged.global.as_ref(),
    ));
}

/// Which file plays which part in the merge (indices into the directory's files).
struct Layout {
    /// `ocelot.json`.
    main: Option<usize>,
    /// `ocelot.global.json`.
    global_file: Option<usize>,
    /// `ocelot.NAME.json` of the environment NAME, layered over the merged result.
    env_file: Option<usize>,
    /// Every other file (`ocelot.global.json` included), in merge order.
    parts: Vec<usize>,
    /// `ocelot.json` is taken for a stale copy of Ocelot's own merge, and left out.
    skip_main: bool,
}

/// The merged entities, before they are checked.
struct Merged {
    routes: Vec<Entity>,
    aggregates: Vec<Entity>,
    dynamic: Vec<Entity>,
    global: Option<Entity>,
}

impl Entity {
    /// An entity of one file.
    fn new(file: usize, path: &Path, node: &Node) -> Entity {
        Entity {
            node: node.clone(),
            layers: vec![(file, path.clone())],
        }
    }
}

impl Layout {
    /// The roles of `files`, by name (case-insensitively); part files sorted by name.
    fn of(files: &[SourceFile], environment: Option<&str>) -> Layout {
        let lower: Vec<String> = files.iter().map(|f| f.name.to_ascii_lowercase()).collect();
        let main = lower.iter().position(|n| n == "ocelot.json");
        let global_file = lower.iter().position(|n| n == "ocelot.global.json");
        let env_name = environment.map(|e| format!("ocelot.{}.json", e.to_ascii_lowercase()));
        let env_file = env_name
            .as_ref()
            .and_then(|e| lower.iter().position(|n| n == e))
            .filter(|i| Some(*i) != main && Some(*i) != global_file);
        let mut parts: Vec<usize> = (0..files.len())
            .filter(|i| Some(*i) != main && Some(*i) != env_file)
            .collect();
        parts.sort_by(|a, b| lower[*a].cmp(&lower[*b]));
        Layout {
            main,
            global_file,
            env_file,
            parts,
            skip_main: false,
        }
    }

    /// Each file's Routes, Aggregates and DynamicRoutes appended in merge order (ocelot.json,
    /// unless skipped, then the part files), and the GlobalConfiguration.
    fn merge(&self, tops: &[TopLevel]) -> Merged {
        let order: Vec<usize> = self
            .main
            .filter(|_| !self.skip_main)
            .into_iter()
            .chain(self.parts.iter().copied())
            .collect();
        let mut merged = Merged {
            routes: Vec::new(),
            aggregates: Vec::new(),
            dynamic: Vec::new(),
            global: None,
        };
        for &f in &order {
            let entities = |list: &[(Path, Node)]| -> Vec<Entity> {
                list.iter().map(|(p, n)| Entity::new(f, p, n)).collect()
            };
            merged.routes.extend(entities(&tops[f].routes));
            merged.aggregates.extend(entities(&tops[f].aggregates));
            merged.dynamic.extend(entities(&tops[f].dynamic));
        }
        merged.global = self
            .global_source(tops)
            .and_then(|s| tops[s].global.as_ref().map(|(p, n)| Entity::new(s, p, n)));
        merged
    }

    /// The file GlobalConfiguration is read from: ocelot.global.json, else ocelot.json.
    fn global_source(&self, tops: &[TopLevel]) -> Option<usize> {
        self.global_file
            .filter(|g| tops[*g].global.is_some())
            .or(self.main.filter(|m| tops[*m].global.is_some()))
    }
}

impl Merged {
    /// The environment file, layered over the merged result.
    fn overlay_environment(&mut self, layout: &Layout, tops: &[TopLevel]) {
        let Some(e) = layout.env_file else {
            return;
        };
        overlay_list(&mut self.routes, &tops[e].routes, e);
        overlay_list(&mut self.aggregates, &tops[e].aggregates, e);
        overlay_list(&mut self.dynamic, &tops[e].dynamic, e);
        if let Some((p, n)) = &tops[e].global {
            self.global = Some(match self.global.take() {
                Some(mut g) => {
                    g.node = overlay(&g.node, n);
                    g.layers.push((e, p.clone()));
                    g
                }
                None => Entity::new(e, p, n),
            });
        }
    }
}

// === Files and layering ===

fn top_level(file: &SourceFile, diags: &mut Diagnostics) -> TopLevel {
    let mut out = TopLevel::default();
    let entries = match &file.root.value {
        Value::Map(entries) => entries,
        _ if file.root.is_null() => return out,
        _ => {
            diags.error(
                file,
                &Path::root(),
                "expected a JSON object with Routes, Aggregates and GlobalConfiguration",
            );
            return out;
        }
    };
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        let Some(canonical) = TOP_KEYS
            .iter()
            .copied()
            .find(|t| t.eq_ignore_ascii_case(key))
        else {
            let path = Path::root().key(key.to_string());
            let hint = if key.eq_ignore_ascii_case("ServiceDiscoveryProvider")
                || key.eq_ignore_ascii_case("BaseUrl")
                || key.eq_ignore_ascii_case("RequestIdKey")
            {
                format!("; `{key}` belongs inside GlobalConfiguration")
            } else {
                nearest(key, TOP_KEYS)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default()
            };
            diags.push(
                Severity::Warning,
                file,
                &path,
                format!("unknown key `{key}` is ignored{hint}"),
            );
            continue;
        };
        // Routes and ReRoutes (and the dynamic pair) name one list.
        let slot = match canonical {
            "ReRoutes" => "Routes",
            "DynamicReRoutes" => "DynamicRoutes",
            c => c,
        };
        if let Some(prev) = seen.insert(slot, canonical) {
            diags.error(file, &Path::root().key(canonical), format!("both `{prev}` and `{canonical}` are set; they are the same list (`{canonical}` is the pre-16 or current spelling of `{prev}`): keep one"));
            continue;
        }
        let path = Path::root().key(canonical);
        let list = |diags: &mut Diagnostics| -> Vec<(Path, Node)> {
            match &v.value {
                Value::Seq(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (path.index(i), n.clone()))
                    .collect(),
                _ if v.is_null() => Vec::new(),
                _ => {
                    diags.error(file, &path, "expected a list");
                    Vec::new()
                }
            }
        };
        match slot {
            "Routes" => out.routes = list(diags),
            "Aggregates" => out.aggregates = list(diags),
            "DynamicRoutes" => out.dynamic = list(diags),
            "GlobalConfiguration" => {
                if !matches!(v.value, Value::Map(_)) && !v.is_null() {
                    diags.error(file, &path, "expected an object");
                } else {
                    out.global = Some((path, v.clone()));
                }
            }
            _ => out.swagger = true,
        }
    }
    out
}

/// `.NET` configuration layering: keys override (case-insensitively), arrays overlay by index.
fn overlay(base: &Node, top: &Node) -> Node {
    match (&base.value, &top.value) {
        (Value::Map(b), Value::Map(t)) => {
            let mut out = b.clone();
            for (k, v) in t {
                let key = k.as_str().unwrap_or_default();
                match out
                    .iter()
                    .position(|(bk, _)| bk.as_str().is_some_and(|s| s.eq_ignore_ascii_case(key)))
                {
                    Some(i) => out[i].1 = overlay(&out[i].1, v),
                    None => out.push((k.clone(), v.clone())),
                }
            }
            Node {
                span: base.span,
                value: Value::Map(out),
            }
        }
        (Value::Seq(b), Value::Seq(t)) => {
            let mut out = b.clone();
            for (i, v) in t.iter().enumerate() {
                match out.get_mut(i) {
                    Some(slot) => *slot = overlay(slot, v),
                    None => out.push(v.clone()),
                }
            }
            Node {
                span: base.span,
                value: Value::Seq(out),
            }
        }
        _ => top.clone(),
    }
}

fn overlay_list(list: &mut Vec<Entity>, env: &[(Path, Node)], file: usize) {
    for (i, (p, n)) in env.iter().enumerate() {
        match list.get_mut(i) {
            Some(ent) => {
                ent.node = overlay(&ent.node, n);
                ent.layers.push((file, p.clone()));
            }
            None => list.push(Entity::new(file, p, n)),
        }
    }
}

/// What makes two routes "the same route" for the stale-ocelot.json check: how they match
/// (template, verbs, host, header templates). The part file is the source of truth; a stale
/// copy may carry downstream values the part file has changed since.
fn identity(n: &Node) -> String {
    let (raw, _) = de::from_node::<RawRoute>(n, Dialect::Ocelot);
    let Some(r) = raw else {
        return format!("{:?}", n.to_json());
    };
    let mut methods: Vec<String> = r
        .upstream_http_method
        .unwrap_or_default()
        .iter()
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    methods.sort();
    methods.dedup();
    let mut headers: Vec<(String, String)> = r
        .upstream_header_templates
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    headers.sort();
    format!(
        "{:?}|{:?}|{:?}|{:?}",
        r.upstream_path_template,
        methods,
        r.upstream_host.filter(|h| !h.is_empty()),
        headers
    )
}

/// JSON with keys lower-cased, to compare sections the way .NET binds them.
fn folded_json(n: &Node) -> serde_json::Value {
    match &n.value {
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap_or_default().to_ascii_lowercase(),
                        folded_json(v),
                    )
                })
                .collect(),
        ),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(folded_json).collect()),
        _ => n.to_json(),
    }
}

fn node_at<'a>(root: &'a Node, path: &Path) -> Option<&'a Node> {
    let mut node = root;
    for seg in &path.0 {
        node = match seg {
            Seg::Key(k) => node.get(k, true)?,
            Seg::Index(i) => node.index(*i)?,
        };
    }
    Some(node)
}

fn join(a: &Path, b: &Path) -> Path {
    let mut p = a.clone();
    p.0.extend(b.0.iter().cloned());
    p
}

// === Global settings as routes see them ===

/// GlobalConfiguration, with what routes inherit from it resolved once.
struct GlobalCx {
    raw: RawGlobal,
    base_url: String,
    scheme: Option<String>,
    /// `RateLimitOptions.Redis` (switchyard's extension), checked.
    redis: Option<super::model::OcelotRedis>,
}

/// The upstream side as routes and aggregates both write it.
struct UpstreamFields<'a> {
    template: &'a Option<String>,
    methods: &'a Option<Vec<String>>,
    host: &'a Option<String>,
    headers: &'a Option<IndexMap<String, String>>,
    /// `RouteIsCaseSensitive` and its pre-16 spelling `ReRouteIsCaseSensitive`.
    case_sensitive: (Option<bool>, Option<bool>),
    priority: Option<i32>,
}

/// The `UpstreamFields` of a raw route or aggregate (both name the fields alike).
macro_rules! upstream_fields {
    ($raw:expr) => {
        UpstreamFields {
            template: &$raw.upstream_path_template,
            methods: &$raw.upstream_http_method,
            host: &$raw.upstream_host,
            headers: &$raw.upstream_header_templates,
            case_sensitive: ($raw.route_is_case_sensitive, $raw.reroute_is_case_sensitive),
            priority: $raw.priority,
        }
    };
}

/// An aggregate's RouteKeys, and the name it wrote them under (RouteKeys or ReRouteKeys).
struct RouteKeys {
    names: Vec<String>,
    field: &'static str,
}

/// The routes aggregates refer to: each merged route, what it deserialized to, and its
/// index in model.ocelot_routes once built.
struct RouteSet<'r> {
    entities: &'r [Entity],
    raws: &'r [Option<RawRoute>],
    built: &'r [Option<usize>],
}

/// Where a route sends its requests.
struct Destination {
    protocol: Protocol,
    /// Service discovery's name for the hosts (not served: the route is closed).
    service_name: Option<String>,
    hosts: Vec<(String, u16)>,
    /// Several hosts are balanced round-robin, else the first one is used.
    round_robin: bool,
}

/// A route's header transforms with the global ones merged in, and its request id header.
struct HeaderTransforms {
    upstream: Vec<(String, String)>,
    downstream: Vec<(String, String)>,
    request_id_key: Option<String>,
}

/// A route's pairs, then the global ones it does not name (names compared
/// case-insensitively, as HTTP header names are).
fn merge_pairs(
    route: &Option<IndexMap<String, Option<String>>>,
    global: &Option<IndexMap<String, Option<String>>>,
) -> Vec<(String, String)> {
    let mut out = pairs(route);
    for (k, v) in pairs(global) {
        if !out.iter().any(|(rk, _)| rk.eq_ignore_ascii_case(&k)) {
            out.push((k, v));
        }
    }
    out
}

/// A global option group applies to a route when its RouteKeys is missing, empty, or lists
/// the route's Key (24.1+).
fn in_group(route_keys: &Option<Vec<String>>, key: Option<&str>) -> bool {
    match route_keys {
        None => true,
        Some(keys) if keys.is_empty() => true,
        Some(keys) => key.is_some_and(|k| keys.iter().any(|x| x == k)),
    }
}

/// A rate-limit duration (`1s`, `10.5m`, `500ms`); a bare number is milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<f64> {
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let value: f64 = t[..digits_end].parse().ok()?;
    let factor = match t[digits_end..].to_ascii_lowercase().as_str() {
        "ms" | "" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(value * factor)
}

/// RouteFluentValidator's Period check: a number with a unit.
fn valid_period(p: &str) -> bool {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^\d+(\.\d+)?(ms|s|m|h|d)$").expect("period regex"))
        .is_match(p.trim())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// One IP rule of SecurityOptions: an address, a range `a-b`, a short range `10.0.0.1-20`,
/// `addr/mask` or CIDR. Checked here; the runtime form is `plugins::ocelot_ip`.
fn valid_ip_rule(s: &str) -> bool {
    crate::ip::IpRule::parse(s).is_some()
}

/// Pairs of a string map in file order, null values left out.
fn pairs(map: &Option<IndexMap<String, Option<String>>>) -> Vec<(String, String)> {
    map.iter()
        .flatten()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect()
}

// === Building the model ===

struct Cx<'a> {
    files: &'a [SourceFile],
    diags: &'a mut Diagnostics,
    model: &'a mut Model,
    /// What the route being built carries and switchyard does not enforce (`close`).
    unenforced: Vec<Unenforced>,
}

impl Cx<'_> {
    /// Where a sub-path of an entity was written: the last layer that has it, else the base.
    fn locate(&self, ent: &Entity, sub: &Path) -> (usize, Path) {
        for (f, p) in ent.layers.iter().rev() {
            let full = join(p, sub);
            if node_at(&self.files[*f].root, &full).is_some() {
                return (*f, full);
            }
        }
        let (f, p) = &ent.layers[0];
        (*f, join(p, sub))
    }

    fn report(&mut self, severity: Severity, ent: &Entity, sub: &Path, msg: impl Into<String>) {
        let (f, p) = self.locate(ent, sub);
        self.diags.push(severity, &self.files[f], &p, msg);
    }

    fn error(&mut self, ent: &Entity, sub: &Path, msg: impl Into<String>) {
        self.report(Severity::Error, ent, sub, msg)
    }

    fn warn(&mut self, ent: &Entity, sub: &Path, msg: impl Into<String>) {
        self.report(Severity::Warning, ent, sub, msg)
    }

    fn origin(&self, ent: &Entity, sub: &Path) -> Origin {
        let (f, p) = self.locate(ent, sub);
        let file = &self.files[f];
        let span = file.span_of(&p);
        Origin {
            file: file.name.clone(),
            line: span.line,
            column: span.col,
            path: p.render(),
        }
    }

    fn unserved(&mut self, ent: &Entity, sub: &Path, what: &str) {
        let origin = self.origin(ent, sub);
        self.model.unserved.push((what.to_string(), origin));
    }

    /// An option of the route being built that is not enforced yet: the route will answer
    /// 503 naming it instead of passing traffic the option would have stopped or changed.
    fn close(&mut self, ent: &Entity, sub: &Path, what: &str) {
        let origin = self.origin(ent, sub);
        self.unenforced.push(Unenforced {
            what: what.to_string(),
            origin,
        });
    }

    fn deserialize<T: serde::de::DeserializeOwned>(&mut self, ent: &Entity) -> Option<T> {
        let (value, problems) = de::from_node::<T>(&ent.node, Dialect::Ocelot);
        for DeError {
            path,
            message,
            warning,
            ..
        } in problems
        {
            self.report(
                if warning {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                ent,
                &path,
                message,
            );
        }
        value
    }

    /// SwaggerEndPoints: MMLib.SwaggerForOcelot's, not Ocelot's; ignored with a warning.
    fn swagger(&mut self, tops: &[TopLevel]) {
        for (i, t) in tops.iter().enumerate() {
            if t.swagger {
                self.diags.warn(&self.files[i], &Path::root(), "SwaggerEndPoints/SwaggerKey belong to MMLib.SwaggerForOcelot; switchyard does not serve Swagger documents and ignores them");
            }
        }
    }

    /// A stale generated ocelot.json: every route it has stands in a part file. Warned
    /// about; true when it is to be skipped.
    fn stale_main(&mut self, layout: &Layout, tops: &[TopLevel]) -> bool {
        let Some(m) = layout.main else {
            return false;
        };
        let route_parts: Vec<usize> = layout
            .parts
            .iter()
            .copied()
            .filter(|p| !tops[*p].routes.is_empty())
            .collect();
        if tops[m].routes.is_empty() || route_parts.is_empty() {
            return false;
        }
        let in_parts: Vec<String> = route_parts
            .iter()
            .flat_map(|p| tops[*p].routes.iter().map(|(_, n)| identity(n)))
            .collect();
        if !tops[m]
            .routes
            .iter()
            .all(|(_, n)| in_parts.contains(&identity(n)))
        {
            return false;
        }
        let files = self.files;
        let names: Vec<&str> = route_parts
            .iter()
            .map(|p| files[*p].name.as_str())
            .collect();
        self.diags.warn(
            &files[m],
            &Path::root(),
            format!(
                "every route of {} also stands in {}: this looks like the merged file Ocelot writes into ocelot.json, so it is skipped (delete it, or keep routes in one place)",
                files[m].name,
                names.join(", ")
            ),
        );
        true
    }

    /// GlobalConfiguration comes from ocelot.global.json, else ocelot.json: one in a part
    /// file is an error (a warning when nothing is lost), and ocelot.json's is ignored when
    /// ocelot.global.json has one.
    fn misplaced_globals(&mut self, layout: &Layout, tops: &[TopLevel]) {
        let source = layout.global_source(tops);
        for &f in &layout.parts {
            if Some(f) == layout.global_file {
                continue;
            }
            self.global_in_part(f, tops, source);
        }
        let files = self.files;
        if let (Some(g), Some(m)) = (layout.global_file, layout.main)
            && !layout.skip_main
            && tops[g].global.is_some()
            && let Some((p, n)) = &tops[m].global
            && matches!(&n.value, Value::Map(e) if !e.is_empty())
        {
            self.diags.warn(
                &files[m],
                p,
                format!(
                    "this GlobalConfiguration is ignored: the one in {} is used",
                    files[g].name
                ),
            );
        }
    }

    /// The GlobalConfiguration of the part file `f`, if it has one; `source` is the file
    /// the one in use comes from.
    fn global_in_part(&mut self, f: usize, tops: &[TopLevel], source: Option<usize>) {
        let Some((p, n)) = &tops[f].global else {
            return;
        };
        let files = self.files;
        let expected = source
            .map(|s| files[s].name.clone())
            .unwrap_or_else(|| "ocelot.global.json".into());
        let empty = matches!(&n.value, Value::Map(e) if e.is_empty()) || n.is_null();
        let same = source
            .and_then(|s| tops[s].global.as_ref())
            .is_some_and(|(_, g)| folded_json(g) == folded_json(n));
        let env_hint = files[f]
            .name
            .strip_prefix("ocelot.")
            .and_then(|n| n.strip_suffix(".json"))
            .filter(|n| ENVIRONMENT_NAMES.iter().any(|e| e.eq_ignore_ascii_case(n)))
            .map(|n| format!(" (if it is an environment file, run with --environment {n})"))
            .unwrap_or_default();
        let msg = format!(
            "GlobalConfiguration is read from ocelot.global.json (else ocelot.json), never from a part file like {}: move it to {expected}{env_hint}",
            files[f].name
        );
        if empty {
            self.diags.warn(
                &files[f],
                p,
                format!("{msg} (it is empty, so nothing is lost)"),
            );
        } else if same {
            self.diags.warn(
                &files[f],
                p,
                format!("{msg} (it repeats the one in {expected}, so nothing is lost)"),
            );
        } else {
            self.diags.error(&files[f], p, msg);
        }
    }

    /// Checks every merged entity into the model: GlobalConfiguration, the routes (then
    /// their duplicates), the aggregates (then theirs), the dynamic routes.
    fn check_merged(&mut self, merged: &Merged) {
        let raw_global = merged
            .global
            .as_ref()
            .and_then(|g| self.deserialize::<RawGlobal>(g))
            .unwrap_or_default();
        let gcx = self.global(&raw_global, merged.global.as_ref());
        self.auth_providers(&raw_global, merged.global.as_ref());

        let routes = &merged.routes;
        let route_raws: Vec<Option<RawRoute>> = routes
            .iter()
            .map(|ent| self.deserialize::<RawRoute>(ent))
            .collect();
        // Route index in `routes` ─▶ index in model.ocelot_routes.
        let built: Vec<Option<usize>> = routes
            .iter()
            .zip(&route_raws)
            .map(|(ent, raw)| raw.as_ref().and_then(|r| self.route(ent, r, &gcx)))
            .collect();
        self.duplicates(routes, &route_raws);

        let agg_raws: Vec<Option<RawAggregate>> = merged
            .aggregates
            .iter()
            .map(|a| self.deserialize::<RawAggregate>(a))
            .collect();
        let route_set = RouteSet {
            entities: routes,
            raws: &route_raws,
            built: &built,
        };
        for (ent, raw) in merged.aggregates.iter().zip(&agg_raws) {
            if let Some(raw) = raw {
                self.aggregate(ent, raw, &route_set);
            }
        }
        self.aggregate_duplicates(&merged.aggregates, &agg_raws, routes, &route_raws);

        for ent in &merged.dynamic {
            if self.deserialize::<RawDynamicRoute>(ent).is_some() {
                self.unserved(
                    ent,
                    &Path::root(),
                    "DynamicRoutes (dynamic routing through service discovery)",
                );
            }
        }
    }

    fn global(&mut self, g: &RawGlobal, ent: Option<&Entity>) -> GlobalCx {
        let redis = ent.and_then(|ent| {
            let rl = g.rate_limit_options.as_ref()?;
            self.global_redis(rl, ent)
        });
        if let Some(ent) = ent {
            if let Some(sd) = &g.service_discovery_provider
                && (sd.kind.as_deref().is_some_and(|t| !t.trim().is_empty()) || sd.host.is_some())
            {
                self.unserved(
                    ent,
                    &Path::root().key("ServiceDiscoveryProvider"),
                    "ServiceDiscoveryProvider (service discovery)",
                );
            }
            if let Some(v) = &g.downstream_http_version {
                self.check_version(ent, &Path::root().key("DownstreamHttpVersion"), v);
            }
            if let Some(p) = &g.downstream_http_version_policy {
                self.check_version_policy(ent, &Path::root().key("DownstreamHttpVersionPolicy"), p);
            }
            if let Some(s) = &g.downstream_scheme {
                self.check_scheme(ent, &Path::root().key("DownstreamScheme"), s);
            }
            if let Some(rl) = &g.rate_limit_options
                && let Some(p) = rl.period.as_deref().filter(|p| !p.trim().is_empty())
                && !valid_period(p)
            {
                self.error(
                    ent,
                    &Path::root().key("RateLimitOptions").key("Period"),
                    "RateLimitOptions.Period does not contain integer then ms (millisecond), s (second), m (minute), h (hour), d (day) e.g. 1m for 1 minute period",
                );
            }
            if let Some(sec) = &g.security_options {
                self.check_security(ent, &Path::root().key("SecurityOptions"), sec);
            }
            self.global_cache(g, ent);
            for (field, map) in [
                ("UpstreamHeaderTransform", &g.upstream_header_transform),
                ("DownstreamHeaderTransform", &g.downstream_header_transform),
            ] {
                self.check_header_names(ent, &Path::root().key(field), map);
            }
            if let Some(k) = &g.request_id_key
                && !k.is_empty()
                && http::HeaderName::from_bytes(k.as_bytes()).is_err()
            {
                self.error(
                    ent,
                    &Path::root().key("RequestIdKey"),
                    format!("`{k}` is not a valid header name"),
                );
            }
            if let Some(u) = &g.base_url
                && !u.is_empty()
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                self.warn(ent, &Path::root().key("BaseUrl"), format!("BaseUrl `{u}` is not an absolute http(s) URL; it is used as written for {{BaseUrl}}"));
            }
        }
        GlobalCx {
            raw: g.clone(),
            base_url: g
                .base_url
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            scheme: g.downstream_scheme.clone().filter(|s| !s.trim().is_empty()),
            redis,
        }
    }

    fn check_version(&mut self, ent: &Entity, path: &Path, v: &str) -> bool {
        static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let ok = v.is_empty()
            || RE
                .get_or_init(|| Regex::new(r"^[0-9]([.,][0-9])?$").expect("version regex"))
                .is_match(v);
        if !ok {
            self.error(
                ent,
                path,
                format!(
                    "DownstreamHttpVersion `{v}` must match ^[0-9]([.,][0-9])?$ (e.g. 1.1 or 2.0)"
                ),
            );
        }
        ok
    }

    fn check_version_policy(&mut self, ent: &Entity, path: &Path, p: &str) -> bool {
        let ok = p.is_empty()
            || [
                "RequestVersionExact",
                "RequestVersionOrLower",
                "RequestVersionOrHigher",
            ]
            .contains(&p);
        if !ok {
            self.error(ent, path, format!("DownstreamHttpVersionPolicy `{p}` must be one of RequestVersionExact, RequestVersionOrLower, RequestVersionOrHigher"));
        }
        ok
    }

    fn check_scheme(&mut self, ent: &Entity, path: &Path, s: &str) -> Option<Protocol> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            "ws" => Some(Protocol::Ws),
            "wss" => Some(Protocol::Wss),
            _ => {
                self.error(
                    ent,
                    path,
                    format!("DownstreamScheme `{s}` must be http, https, ws or wss"),
                );
                None
            }
        }
    }

    fn check_security(&mut self, ent: &Entity, path: &Path, sec: &RawSecurity) -> bool {
        let mut ok = true;
        for (field, list) in [
            ("IPAllowedList", &sec.ip_allowed_list),
            ("IPBlockedList", &sec.ip_blocked_list),
        ] {
            for (i, rule) in list.iter().flatten().enumerate() {
                if !valid_ip_rule(rule) {
                    ok = false;
                    self.error(ent, &path.key(field).index(i), format!("`{rule}` is not an IP address, range (a-b), subnet (a/255.255.255.0) or CIDR (a/24)"));
                }
            }
        }
        ok
    }

    fn check_header_names(
        &mut self,
        ent: &Entity,
        path: &Path,
        map: &Option<IndexMap<String, Option<String>>>,
    ) -> bool {
        let mut ok = true;
        for (name, _) in map.iter().flatten() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                ok = false;
                self.error(
                    ent,
                    &path.key(name.clone()),
                    format!("`{name}` is not a valid header name"),
                );
            }
        }
        ok
    }

    /// Checks an UpstreamPathTemplate or DownstreamPathTemplate the way Ocelot's validator
    /// does; `Some(template)` when it is usable.
    fn check_template(
        &mut self,
        ent: &Entity,
        field: &'static str,
        value: &Option<String>,
    ) -> Option<String> {
        let path = Path::root().key(field);
        let human = if field == "UpstreamPathTemplate" {
            "Upstream Path Template"
        } else {
            "Downstream Path Template"
        };
        let Some(t) = value.as_deref().filter(|t| !t.is_empty()) else {
            self.error(
                ent,
                &path,
                format!("{human} cannot be empty ({field} is required)"),
            );
            return None;
        };
        let mut ok = true;
        if !t.starts_with('/') {
            ok = false;
            self.error(
                ent,
                &path,
                format!("{field} '{t}' doesn't start with forward slash"),
            );
        }
        if t.contains("//") {
            ok = false;
            self.error(
                ent,
                &path,
                format!(
                    "{field} '{t}' contains double forward slash, which Ocelot does not support"
                ),
            );
        }
        if t.contains("http://") || t.contains("https://") {
            ok = false;
            self.error(ent, &path, format!("{field} '{t}' contains scheme; the scheme and host go in DownstreamScheme and DownstreamHostAndPorts"));
        }
        let names = placeholder_names(t);
        let mut seen: Vec<&str> = Vec::new();
        for n in &names {
            if seen.contains(n) {
                ok = false;
                self.error(
                    ent,
                    &path,
                    format!("{field} '{t}' has duplicated placeholder {{{n}}}"),
                );
                break;
            }
            seen.push(n);
        }
        ok.then(|| t.to_string())
    }

    /// Upstream side shared by routes and aggregates; `None` when it cannot be compiled.
    fn upstream(&mut self, ent: &Entity, u: &UpstreamFields) -> Option<OcelotUpstream> {
        let mut ok = true;
        let template = self.check_template(ent, "UpstreamPathTemplate", u.template);
        let case_sensitive = match u.case_sensitive {
            (Some(_), Some(_)) => {
                self.error(ent, &Path::root().key("ReRouteIsCaseSensitive"), "both `RouteIsCaseSensitive` and its pre-16 spelling `ReRouteIsCaseSensitive` are set: keep one");
                ok = false;
                false
            }
            (a, b) => a.or(b).unwrap_or(false),
        };
        if let Some(t) = &template
            && let Err(e) = UpstreamTemplate::compile(t, case_sensitive)
        {
            ok = false;
            self.error(
                ent,
                &Path::root().key("UpstreamPathTemplate"),
                format!("UpstreamPathTemplate '{t}' cannot be compiled: {e}"),
            );
        }
        let verbs = self.upstream_methods(ent, u.methods, &mut ok);
        let host = self.upstream_host(ent, u.host, &mut ok);
        let header_templates = self.header_templates(ent, u.headers, case_sensitive, &mut ok);
        if !ok {
            return None;
        }
        Some(OcelotUpstream {
            path_template: template?,
            methods: verbs,
            host,
            header_templates,
            case_sensitive,
            priority: u.priority.unwrap_or(1),
        })
    }

    /// UpstreamHttpMethod: upper-cased, without repeats.
    fn upstream_methods(
        &mut self,
        ent: &Entity,
        methods: &Option<Vec<String>>,
        ok: &mut bool,
    ) -> Vec<String> {
        let mut verbs: Vec<String> = Vec::new();
        for (i, m) in methods.iter().flatten().enumerate() {
            let v = m.trim().to_ascii_uppercase();
            if !is_token(&v) {
                *ok = false;
                self.error(
                    ent,
                    &Path::root().key("UpstreamHttpMethod").index(i),
                    format!("`{m}` is not an HTTP method"),
                );
            } else if !verbs.contains(&v) {
                verbs.push(v);
            }
        }
        verbs
    }

    /// UpstreamHost: a host with an optional port; blank is none.
    fn upstream_host(
        &mut self,
        ent: &Entity,
        host: &Option<String>,
        ok: &mut bool,
    ) -> Option<String> {
        let host = host
            .as_ref()
            .filter(|h| !h.trim().is_empty())
            .map(|h| h.trim().to_string());
        if let Some(h) = &host {
            let valid = crate::config::kong::split_host_port(h).is_some_and(|(name, _)| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            });
            if !valid {
                *ok = false;
                self.error(
                    ent,
                    &Path::root().key("UpstreamHost"),
                    format!("UpstreamHost `{h}` is not a host or host:port"),
                );
            }
        }
        host
    }

    /// UpstreamHeaderTemplates, each compiled once here so that a bad one is a load error.
    fn header_templates(
        &mut self,
        ent: &Entity,
        headers: &Option<IndexMap<String, String>>,
        case_sensitive: bool,
        ok: &mut bool,
    ) -> Vec<(String, String)> {
        let mut header_templates = Vec::new();
        for (name, value) in headers.iter().flatten() {
            match HeaderTemplate::compile(name, value, case_sensitive) {
                Ok(_) => header_templates.push((name.to_ascii_lowercase(), value.clone())),
                Err(e) => {
                    *ok = false;
                    self.error(
                        ent,
                        &Path::root()
                            .key("UpstreamHeaderTemplates")
                            .key(name.clone()),
                        e,
                    );
                }
            }
        }
        header_templates
    }

    /// A route: every problem of it is reported (in the order of its fields' concerns), and
    /// only a route without errors is added to the model.
    fn route(&mut self, ent: &Entity, r: &RawRoute, g: &GlobalCx) -> Option<usize> {
        // A route that failed to build leaves nothing for the next one.
        self.unenforced.clear();
        let mut ok = true;
        let upstream = self.upstream(ent, &upstream_fields!(r));
        ok &= upstream.is_some();
        let downstream =
            self.check_template(ent, "DownstreamPathTemplate", &r.downstream_path_template);
        ok &= downstream.is_some();
        let mut destination = self.destination(ent, r, g, &mut ok);
        let (downstream_method, downstream_version) = self.downstream_request(ent, r, g, &mut ok);
        let headers = self.header_transforms(ent, r, g, &mut ok);
        // AuthenticationOptions and the claims options (`auth`).
        let auth = self.route_auth(ent, r, g);
        ok &= auth.is_some();
        // Options served by later issues: checked, then named in a startup warning.
        self.qos(ent, r, g);
        let cache = self.route_cache(ent, r, g, &mut ok);
        destination.round_robin = self.load_balancer(ent, r, g, &destination);
        self.delegating_handlers(ent, r);
        let (allow_auto_redirect, use_cookie_container) = self.http_handler(ent, r, g);
        let security = self.security(ent, r, g, &mut ok);
        // The template as written: the Limit error names the route even when its template
        // is itself invalid.
        let template = r.upstream_path_template.as_deref().unwrap_or_default();
        let rate_limit = self.rate_limit(ent, r, g, template, &mut ok);
        if !ok {
            return None;
        }
        let upstream = upstream?;
        let downstream = downstream?;

        let origin = self.origin(ent, &Path::root());
        let methods_key = upstream.methods.join(",");
        let id = derived_id(
            "ocelot-routes",
            &format!(
                "{}|{}|{}|{:?}|{:?}",
                origin.file,
                upstream.path_template,
                methods_key,
                upstream.host,
                upstream.header_templates
            ),
        );
        let service = self.route_service(r, g, &destination, &id, &origin);
        let idx = self.model.ocelot_routes.len();
        self.model.ocelot_routes.push(OcelotRoute {
            id,
            service,
            key: r.key.clone().filter(|k| !k.is_empty()),
            upstream,
            downstream_path_template: downstream,
            downstream_method,
            downstream_version,
            upstream_header_transform: headers.upstream,
            downstream_header_transform: headers.downstream,
            auth: auth?,
            request_id_key: headers.request_id_key,
            security,
            rate_limit,
            cache,
            allow_auto_redirect,
            use_cookie_container,
            base_url: g.base_url.clone(),
            unenforced: std::mem::take(&mut self.unenforced),
            service_name: destination.service_name,
            origin,
        });
        Some(idx)
    }

    /// Where the route sends: DownstreamScheme (else the global one), then its hosts and
    /// ports, or a ServiceName (service discovery, not served: the route is closed).
    fn destination(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        ok: &mut bool,
    ) -> Destination {
        let root = Path::root();
        let scheme_text = r
            .downstream_scheme
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| g.scheme.clone());
        let protocol = match &scheme_text {
            Some(s) => self.check_scheme(ent, &root.key("DownstreamScheme"), s),
            None => Some(Protocol::Http),
        };
        *ok &= protocol.is_some();
        let protocol = protocol.unwrap_or(Protocol::Http);
        if matches!(protocol, Protocol::Ws | Protocol::Wss) {
            self.unserved(
                ent,
                &root.key("DownstreamScheme"),
                "WebSocket routes (DownstreamScheme ws/wss; proxied as plain HTTP for now)",
            );
        }
        let service_name = r
            .service_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .filter(|_| r.use_service_discovery != Some(false));
        let mut destination = Destination {
            protocol,
            service_name,
            hosts: Vec::new(),
            round_robin: false,
        };
        let listed = r.downstream_host_and_ports.as_ref();
        destination.hosts = if listed.is_none_or(|l| l.is_empty())
            && (r.downstream_host.is_some() || r.downstream_port.is_some())
        {
            self.legacy_host(ent, r, &destination, ok)
        } else {
            self.listed_hosts(ent, r, &destination, ok)
        };
        if destination.service_name.is_some() {
            self.close(
                ent,
                &root.key("ServiceName"),
                "ServiceName (service discovery)",
            );
        }
        destination
    }

    /// DownstreamHost and DownstreamPort (Ocelot < 5), read as one DownstreamHostAndPorts
    /// entry.
    fn legacy_host(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        to: &Destination,
        ok: &mut bool,
    ) -> Vec<(String, u16)> {
        let root = Path::root();
        self.warn(ent, &root.key("DownstreamHost"), "DownstreamHost/DownstreamPort are Ocelot < 5 keys; read as one DownstreamHostAndPorts entry (write DownstreamHostAndPorts: [{\"Host\": ..., \"Port\": ...}])");
        let mut hosts = Vec::new();
        match r
            .downstream_host
            .as_deref()
            .filter(|h| !h.trim().is_empty())
        {
            Some(h) => hosts.push((
                h.trim().to_string(),
                self.port(
                    ent,
                    &root.key("DownstreamPort"),
                    r.downstream_port,
                    to.protocol,
                    ok,
                ),
            )),
            None if to.service_name.is_none() => {
                *ok = false;
                self.error(ent, &root.key("DownstreamHost"), "When not using service discovery Host must be set on DownstreamHostAndPorts if you are not using Route.Host or Ocelot cannot find your service!");
            }
            None => {}
        }
        hosts
    }

    /// DownstreamHostAndPorts; without service discovery it must list at least one host.
    fn listed_hosts(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        to: &Destination,
        ok: &mut bool,
    ) -> Vec<(String, u16)> {
        let root = Path::root();
        if r.downstream_host.is_some() {
            self.warn(
                ent,
                &root.key("DownstreamHost"),
                "DownstreamHost is an Ocelot < 5 key and is ignored: DownstreamHostAndPorts is set",
            );
        }
        let listed = r.downstream_host_and_ports.as_deref().unwrap_or_default();
        let mut hosts = Vec::new();
        for (i, hp) in listed.iter().enumerate() {
            let p = root.key("DownstreamHostAndPorts").index(i);
            match hp.host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
                Some(h) => hosts.push((
                    h.to_string(),
                    self.port(ent, &p.key("Port"), hp.port, to.protocol, ok),
                )),
                None if to.service_name.is_none() => {
                    *ok = false;
                    self.error(ent, &p.key("Host"), "When not using service discovery Host must be set on DownstreamHostAndPorts if you are not using Route.Host or Ocelot cannot find your service!");
                }
                None => {}
            }
        }
        if listed.is_empty() && to.service_name.is_none() {
            *ok = false;
            self.missing_hosts(ent);
        }
        hosts
    }

    /// No DownstreamHostAndPorts and no service discovery; a key that looks like a
    /// misspelling of it is named, as Ocelot would silently ignore it too.
    fn missing_hosts(&mut self, ent: &Entity) {
        let typo = match &ent.node.value {
            Value::Map(entries) => entries.iter().filter_map(|(k, _)| k.as_str()).find(|k| {
                let l = k.to_ascii_lowercase();
                l != "downstreamhostandports"
                    && (l.contains("hostandport") || l.contains("hostsandport"))
            }),
            _ => None,
        };
        let hint = typo
            .map(|t| format!(" (`{t}` is not `DownstreamHostAndPorts`: Ocelot ignores it too)"))
            .unwrap_or_default();
        self.error(ent, &Path::root().key("DownstreamHostAndPorts"), format!("When not using service discovery DownstreamHostAndPorts must be set and not empty or Ocelot cannot find your service!{hint}"));
    }

    /// The downstream request's method, and its HTTP version (the route's, else the global
    /// one).
    fn downstream_request(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        ok: &mut bool,
    ) -> (Option<String>, Option<String>) {
        let root = Path::root();
        let downstream_method = match r
            .downstream_http_method
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            Some(m) if is_token(m) => Some(m.to_ascii_uppercase()),
            Some(m) => {
                *ok = false;
                self.error(
                    ent,
                    &root.key("DownstreamHttpMethod"),
                    format!("`{m}` is not an HTTP method"),
                );
                None
            }
            None => None,
        };
        let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let version = non_empty(&r.downstream_http_version)
            .or_else(|| non_empty(&g.raw.downstream_http_version));
        let policy = non_empty(&r.downstream_http_version_policy)
            .or_else(|| non_empty(&g.raw.downstream_http_version_policy));
        if let Some(v) = &r.downstream_http_version {
            *ok &= self.check_version(ent, &root.key("DownstreamHttpVersion"), v);
        }
        if let Some(p) = &r.downstream_http_version_policy {
            *ok &= self.check_version_policy(ent, &root.key("DownstreamHttpVersionPolicy"), p);
        }
        if let Some(v) = &version {
            let major = v.chars().next().unwrap_or('1');
            if major >= '2'
                && policy
                    .as_deref()
                    .is_some_and(|p| p != "RequestVersionOrLower")
            {
                self.unserved(ent, &root.key("DownstreamHttpVersion"), "DownstreamHttpVersion 2.0+ with an exact or higher version policy (HTTP/1.1 is used)");
            }
        }
        (downstream_method, version)
    }

    /// UpstreamHeaderTransform and DownstreamHeaderTransform (the global ones added where
    /// the route does not name the header), and RequestIdKey.
    fn header_transforms(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        ok: &mut bool,
    ) -> HeaderTransforms {
        let root = Path::root();
        *ok &= self.check_header_names(
            ent,
            &root.key("UpstreamHeaderTransform"),
            &r.upstream_header_transform,
        );
        *ok &= self.check_header_names(
            ent,
            &root.key("DownstreamHeaderTransform"),
            &r.downstream_header_transform,
        );
        let request_id_key = r
            .request_id_key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| g.raw.request_id_key.clone().filter(|k| !k.is_empty()));
        if let Some(k) = &r.request_id_key
            && !k.is_empty()
            && http::HeaderName::from_bytes(k.as_bytes()).is_err()
        {
            *ok = false;
            self.error(
                ent,
                &root.key("RequestIdKey"),
                format!("`{k}` is not a valid header name"),
            );
        }
        HeaderTransforms {
            upstream: merge_pairs(
                &r.upstream_header_transform,
                &g.raw.upstream_header_transform,
            ),
            downstream: merge_pairs(
                &r.downstream_header_transform,
                &g.raw.downstream_header_transform,
            ),
            request_id_key,
        }
    }

    /// QoSOptions (the route's, else the global group's): not served yet, so a route that
    /// has them active is closed.
    fn qos(&mut self, ent: &Entity, r: &RawRoute, g: &GlobalCx) {
        let qos = r.qos_options.clone().or_else(|| {
            g.raw
                .qos_options
                .clone()
                .filter(|q| in_group(&q.route_keys, r.key.as_deref()))
        });
        if qos.as_ref().is_some_and(|q| q.active()) {
            self.close(
                ent,
                &Path::root().key("QoSOptions"),
                "QoSOptions (circuit breaker and QoS timeout)",
            );
        }
    }

    /// LoadBalancerOptions: whether several hosts are balanced round-robin. The other
    /// balancers are not served yet and fall back to round-robin, with a warning where it
    /// makes a difference.
    fn load_balancer(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        to: &Destination,
    ) -> bool {
        let lb = r
            .load_balancer_options
            .as_ref()
            .and_then(|l| l.kind.clone())
            .or_else(|| r.load_balancer.clone())
            .or_else(|| {
                g.raw
                    .load_balancer_options
                    .as_ref()
                    .filter(|l| in_group(&l.route_keys, r.key.as_deref()))
                    .and_then(|l| l.kind.clone())
            })
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "NoLoadBalancer".into());
        match lb.to_ascii_lowercase().as_str() {
            "noloadbalancer" => false,
            "roundrobin" => true,
            _ => {
                if to.hosts.len() > 1 || to.service_name.is_some() {
                    self.unserved(
                        ent,
                        &Path::root().key("LoadBalancerOptions"),
                        &format!(
                            "LoadBalancerOptions Type {lb} (round-robin is used until served)"
                        ),
                    );
                }
                true
            }
        }
    }

    /// DelegatingHandlers are C# classes: a route that names any is closed.
    fn delegating_handlers(&mut self, ent: &Entity, r: &RawRoute) {
        if r.delegating_handlers
            .as_ref()
            .is_some_and(|d| !d.is_empty())
        {
            self.close(
                ent,
                &Path::root().key("DelegatingHandlers"),
                "DelegatingHandlers (handlers registered in C# code)",
            );
        }
    }

    /// HttpHandlerOptions: route fields win over the global ones. (AllowAutoRedirect,
    /// UseCookieContainer.)
    fn http_handler(&mut self, ent: &Entity, r: &RawRoute, g: &GlobalCx) -> (bool, bool) {
        let gh = g
            .raw
            .http_handler_options
            .as_ref()
            .filter(|h| in_group(&h.route_keys, r.key.as_deref()));
        let rh = r.http_handler_options.as_ref();
        let allow_auto_redirect = rh
            .and_then(|h| h.allow_auto_redirect)
            .or(gh.and_then(|h| h.allow_auto_redirect))
            .unwrap_or(false);
        let use_cookie_container = rh
            .and_then(|h| h.use_cookie_container)
            .or(gh.and_then(|h| h.use_cookie_container))
            .unwrap_or(false);
        if rh
            .and_then(|h| h.use_tracing)
            .or(gh.and_then(|h| h.use_tracing))
            .unwrap_or(false)
        {
            self.unserved(
                ent,
                &Path::root().key("HttpHandlerOptions").key("UseTracing"),
                "HttpHandlerOptions.UseTracing",
            );
        }
        (allow_auto_redirect, use_cookie_container)
    }

    /// SecurityOptions: the global lists only when the route has none.
    fn security(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        ok: &mut bool,
    ) -> Option<OcelotSecurity> {
        let security = match &r.security_options {
            Some(s) => {
                *ok &= self.check_security(ent, &Path::root().key("SecurityOptions"), s);
                Some(s.clone())
            }
            None => None,
        };
        let route_lists_empty = security.as_ref().is_none_or(|s| {
            s.ip_allowed_list.as_ref().is_none_or(|l| l.is_empty())
                && s.ip_blocked_list.as_ref().is_none_or(|l| l.is_empty())
        });
        let security = if route_lists_empty {
            g.raw.security_options.clone().or(security)
        } else {
            security
        };
        security.and_then(|s| {
            let allowed = s.ip_allowed_list.unwrap_or_default();
            let blocked = s.ip_blocked_list.unwrap_or_default();
            (!allowed.is_empty() || !blocked.is_empty()).then_some(OcelotSecurity {
                allowed,
                blocked,
                exclude_allowed_from_blocked: s.exclude_allowed_from_blocked.unwrap_or(false),
            })
        })
    }

    /// The service a checked route sends to (none with service discovery, or no host); with
    /// several hosts balanced round-robin, through an upstream of them.
    fn route_service(
        &mut self,
        r: &RawRoute,
        g: &GlobalCx,
        to: &Destination,
        id: &str,
        origin: &Origin,
    ) -> Option<usize> {
        if to.service_name.is_some() || to.hosts.is_empty() {
            return None;
        }
        let timeout_s = r
            .timeout
            .filter(|t| *t > 0)
            .or(g.raw.timeout.filter(|t| *t > 0))
            .unwrap_or(DEFAULT_TIMEOUT_S);
        // Longer than a day is a day: nothing downstream is waited on longer.
        let timeout_ms = (timeout_s.clamp(1, MAX_DURATION_S) as u64) * 1000;
        let idx = self.model.services.len();
        let (host, port) = if to.hosts.len() > 1 && to.round_robin {
            (
                self.round_robin_upstream(to, id, origin),
                to.protocol.default_port(),
            )
        } else {
            to.hosts[0].clone()
        };
        let verify = !r
            .dangerous_accept_any_server_certificate_validator
            .unwrap_or(false);
        self.model.services.push(Service {
            id: derived_id("ocelot-services", id),
            name: Some(format!("{}:{}", origin.file, origin.path)),
            protocol: match to.protocol {
                Protocol::Ws => Protocol::Http,
                Protocol::Wss => Protocol::Https,
                p => p,
            },
            host,
            port,
            path: None,
            retries: 0,
            connect_timeout: CONNECT_TIMEOUT_MS.min(timeout_ms),
            write_timeout: timeout_ms,
            read_timeout: timeout_ms,
            enabled: true,
            tls_verify: Some(verify),
            tls_verify_depth: None,
            ca_certificates: Vec::new(),
            client_certificate: None,
            tags: vec!["ocelot".into()],
            origin: origin.clone(),
        });
        Some(idx)
    }

    /// An upstream balancing the route's hosts round-robin; its name, for the service's host.
    fn round_robin_upstream(&mut self, to: &Destination, id: &str, origin: &Origin) -> String {
        let upstream_name = format!("ocelot-upstream-{id}");
        self.model.upstreams.push(Upstream {
            id: derived_id("ocelot-upstreams", id),
            name: upstream_name.clone(),
            algorithm: "round-robin".into(),
            hash_on: "none".into(),
            hash_fallback: "none".into(),
            slots: 10_000,
            host_header: None,
            targets: to
                .hosts
                .iter()
                .map(|(h, p)| Target {
                    host: h.clone(),
                    port: *p,
                    weight: 100,
                })
                .collect(),
            healthchecks: None,
            origin: origin.clone(),
        });
        upstream_name
    }

    fn port(
        &mut self,
        ent: &Entity,
        path: &Path,
        port: Option<i64>,
        protocol: Protocol,
        ok: &mut bool,
    ) -> u16 {
        match port {
            None | Some(0) => protocol.default_port(),
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                *ok = false;
                self.error(ent, path, format!("port {p} is out of range (1-65535)"));
                0
            }
        }
    }

    /// RateLimitOptionsCreator (24.1+): the route's rule, merged field by field with the
    /// global one when the route is in the global group; legacy names win over new ones.
    /// Unlike Ocelot, a global block that defines no rule (the pre-24.1 way of setting only
    /// ClientIdHeader, QuotaExceededMessage, ...) does not rate-limit routes that have no
    /// RateLimitOptions of their own (Ocelot 24.1+ blocks every request of those routes).
    fn rate_limit(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        template: &str,
        ok: &mut bool,
    ) -> Option<OcelotRateLimit> {
        let route = r.rate_limit_options.as_ref();
        let global = g
            .raw
            .rate_limit_options
            .as_ref()
            .filter(|gl| in_group(&gl.route_keys, r.key.as_deref()));
        if let Some(rl) = route {
            self.route_redis(rl, ent, ok);
        }
        if let Some(rl) = route
            && rl.enable_rate_limiting != Some(false)
            && rl.aspnet_policy().is_none()
        {
            self.check_rate_limit(ent, rl, global, template, ok);
        }
        if route.is_some_and(|rl| rl.enable_rate_limiting == Some(false))
            || global.is_some_and(|gl| gl.enable_rate_limiting == Some(false))
        {
            return None;
        }
        let merged = match (route, global) {
            (None, Some(gl)) => {
                if gl.limit.unwrap_or(0) <= 0 {
                    return None;
                }
                gl.clone()
            }
            (None, None) => return None,
            (Some(rl), Some(gl)) => rl.clone().inherit(gl),
            (Some(rl), None) => rl.clone(),
        };
        let mut rule = self.rate_limit_rule(ent, &merged, ok)?;
        // Redis keeps every rate-limited route's counters, whatever group it is in.
        rule.redis = g.redis.clone();
        rule.counter_key = cache::load_balancing_key(r, &g.raw);
        Some(rule)
    }

    /// The route's own RateLimitOptions as RouteFluentValidator checks them; its Period may
    /// come from the global rule of its group.
    fn check_rate_limit(
        &mut self,
        ent: &Entity,
        rl: &RawRateLimit,
        global: Option<&RawRateLimit>,
        template: &str,
        ok: &mut bool,
    ) {
        let path = Path::root().key("RateLimitOptions");
        if rl.limit.is_some_and(|l| l <= 0) {
            *ok = false;
            self.error(
                ent,
                &path.key("Limit"),
                format!("RateLimitOptions.Limit is negative or zero for the route {template}"),
            );
        }
        match rl
            .period
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            None if global
                .and_then(|gl| gl.period.as_deref())
                .is_none_or(|p| p.trim().is_empty()) =>
            {
                *ok = false;
                self.error(ent, &path.key("Period"), "RateLimitOptions.Period is empty");
            }
            Some(p) if !valid_period(p) => {
                *ok = false;
                self.error(ent, &path.key("Period"), "RateLimitOptions.Period does not contain integer then ms (millisecond), s (second), m (minute), h (hour), d (day) e.g. 1m for 1 minute period");
            }
            _ => {}
        }
        if let Some(w) = rl.wait.as_deref().filter(|w| !w.trim().is_empty())
            && parse_duration_ms(w).is_none()
        {
            *ok = false;
            self.error(
                ent,
                &path.key("Wait"),
                format!("RateLimitOptions.Wait `{w}` is not a duration (e.g. 500ms, 1s, 1m)"),
            );
        }
    }

    /// The rule a route's merged RateLimitOptions make, with Ocelot's defaults; `None` for
    /// an ASP.NET Core rate limiter policy, which is not served (the route is closed).
    fn rate_limit_rule(
        &mut self,
        ent: &Entity,
        merged: &RawRateLimit,
        ok: &mut bool,
    ) -> Option<OcelotRateLimit> {
        let path = Path::root().key("RateLimitOptions");
        if merged.aspnet_policy().is_some() {
            self.close(
                ent,
                &path.key("Policy"),
                "RateLimitOptions.Policy (ASP.NET Core rate limiter policies registered in code)",
            );
            return None;
        }
        let period = merged
            .period
            .clone()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "1s".into())
            .trim()
            .to_string();
        let wait = match merged.period_timespan {
            Some(s) => format!("{s}s"),
            None => merged
                .wait
                .clone()
                .filter(|w| !w.trim().is_empty())
                .unwrap_or_else(|| "0ms".into()),
        };
        let status = merged
            .http_status_code
            .or(merged.status_code)
            .unwrap_or(429);
        if !(100..=599).contains(&status) {
            *ok = false;
            self.error(
                ent,
                &path.key(if merged.http_status_code.is_some() {
                    "HttpStatusCode"
                } else {
                    "StatusCode"
                }),
                format!("status code {status} is not between 100 and 599"),
            );
        }
        Some(OcelotRateLimit {
            client_id_header: merged
                .client_id_header
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "Oc-Client".into()),
            client_whitelist: merged.client_whitelist.clone().unwrap_or_default(),
            enable_headers: match merged.disable_rate_limit_headers {
                Some(d) => !d,
                None => merged.enable_headers.unwrap_or(true),
            },
            status_code: status.clamp(100, 599) as u16,
            quota_message: merged
                .quota_exceeded_message
                .clone()
                .filter(|m| !m.is_empty())
                .or(merged.quota_message.clone().filter(|m| !m.is_empty()))
                .unwrap_or_else(|| {
                    "API calls quota exceeded! Maximum admitted {0} per {1}.".into()
                }),
            key_prefix: merged
                .rate_limit_counter_prefix
                .clone()
                .filter(|p| !p.is_empty())
                .or(merged.key_prefix.clone().filter(|p| !p.is_empty()))
                .unwrap_or_else(|| "Ocelot.RateLimiting".into()),
            period_ms: parse_duration_ms(&period)
                .unwrap_or(1000.0)
                .clamp(1.0, MAX_WINDOW_MS) as u64,
            period,
            wait_ms: parse_duration_ms(&wait)
                .unwrap_or(0.0)
                .clamp(0.0, MAX_WINDOW_MS) as u64,
            wait,
            limit: merged.limit.unwrap_or(0).unsigned_abs(),
            redis: None,
            counter_key: String::new(),
        })
    }

    /// `route <tpl> has duplicate` on each route `duplicate_routes` finds, naming where the
    /// others are.
    fn duplicates(&mut self, routes: &[Entity], raws: &[Option<RawRoute>]) {
        for i in duplicate_routes(raws) {
            let t = raws[i]
                .as_ref()
                .and_then(|r| r.upstream_path_template.clone())
                .unwrap_or_default();
            let others: Vec<String> = raws
                .iter()
                .enumerate()
                .filter(|(j, r)| {
                    *j != i
                        && r.as_ref().is_some_and(|r| {
                            r.upstream_path_template.as_deref() == Some(t.as_str())
                        })
                })
                .map(|(j, _)| {
                    let o = self.origin(&routes[j], &Path::root());
                    format!("{}:{}", o.file, o.line)
                })
                .collect();
            // A clash with a file named like an ASP.NET environment usually means that file
            // is an environment overlay, not a part file.
            let own = self.origin(&routes[i], &Path::root()).file;
            let env_file = std::iter::once(own.as_str())
                .chain(
                    others
                        .iter()
                        .map(|o| o.rsplit_once(':').map_or(o.as_str(), |(f, _)| f)),
                )
                .find_map(|f| {
                    let name = f
                        .strip_prefix("ocelot.")
                        .and_then(|n| n.strip_suffix(".json"))?;
                    ENVIRONMENT_NAMES
                        .iter()
                        .find(|e| e.eq_ignore_ascii_case(name))
                        .map(|_| name.to_string())
                });
            let hint = env_file
                .map(|e| format!("; if ocelot.{e}.json is an environment file, run with --environment {e} (or ASPNETCORE_ENVIRONMENT={e})"))
                .unwrap_or_default();
            self.error(
                &routes[i],
                &Path::root().key("UpstreamPathTemplate"),
                format!("route {t} has duplicate (same UpstreamPathTemplate, UpstreamHost, UpstreamHeaderTemplates and an overlapping UpstreamHttpMethod as {}){hint}", others.join(", ")),
            );
        }
    }

    /// An aggregate of checked routes: every problem of it is reported, and only an
    /// aggregate without errors is added to the model.
    fn aggregate(&mut self, ent: &Entity, a: &RawAggregate, routes: &RouteSet) {
        let root = Path::root();
        let upstream = self.upstream(ent, &upstream_fields!(a));
        let template = a.upstream_path_template.clone().unwrap_or_default();
        let Some(keys) = self.aggregate_keys(ent, a) else {
            return;
        };
        let mut ok = upstream.is_some();
        if keys.names.is_empty() {
            ok = false;
            self.error(ent, &root.key(keys.field), format!("aggregateRoute {template} has no RouteKeys: list the Key of each route to aggregate"));
        }
        if a.upstream_http_method
            .as_ref()
            .is_some_and(|m| m.iter().any(|v| !v.eq_ignore_ascii_case("get")))
        {
            self.warn(
                ent,
                &root.key("UpstreamHttpMethod"),
                "aggregates answer GET only; other verbs are ignored",
            );
        }
        let parts = self.aggregate_parts(ent, &template, &keys, routes, &mut ok);
        let Some(route_keys_config) = self.route_keys_config(ent, a, &keys, &mut ok) else {
            return;
        };
        let aggregator = a.aggregator.clone().filter(|n| !n.trim().is_empty());
        if let Some(name) = &aggregator
            && aggregate::Aggregator::from_name(name).is_none()
        {
            self.warn(
                ent,
                &root.key("Aggregator"),
                format!(
                    "Aggregator `{name}` is a custom Ocelot aggregator (a C# class) that switchyard cannot run; this aggregate answers 501 until it names a built-in one: {}",
                    aggregate::Aggregator::NAMES.join(", ")
                ),
            );
        }
        if !ok {
            return;
        }
        let Some(upstream) = upstream else { return };
        let origin = self.origin(ent, &root);
        let id = derived_id(
            "ocelot-aggregates",
            &format!(
                "{}|{}|{:?}",
                origin.file, upstream.path_template, upstream.host
            ),
        );
        self.model.ocelot_aggregates.push(OcelotAggregate {
            id,
            upstream,
            route_keys: keys.names,
            parts,
            route_keys_config,
            aggregator,
            origin,
        });
    }

    /// RouteKeys, or its pre-16 spelling ReRouteKeys; `None` (an error) when both are set.
    fn aggregate_keys(&mut self, ent: &Entity, a: &RawAggregate) -> Option<RouteKeys> {
        let (names, field) = match (&a.route_keys, &a.reroute_keys) {
            (Some(_), Some(_)) => {
                self.error(
                    ent,
                    &Path::root().key("ReRouteKeys"),
                    "both `RouteKeys` and its pre-16 spelling `ReRouteKeys` are set: keep one",
                );
                return None;
            }
            (Some(k), None) => (k.clone(), "RouteKeys"),
            (None, Some(k)) => (k.clone(), "ReRouteKeys"),
            (None, None) => (Vec::new(), "RouteKeys"),
        };
        Some(RouteKeys { names, field })
    }

    /// The routes an aggregate names by Key, as indices in model.ocelot_routes. Each must
    /// exist, have been built, and have no RequestIdKey of its own.
    fn aggregate_parts(
        &mut self,
        ent: &Entity,
        template: &str,
        keys: &RouteKeys,
        routes: &RouteSet,
        ok: &mut bool,
    ) -> Vec<usize> {
        let root = Path::root();
        let mut parts = Vec::new();
        let mut missing = Vec::new();
        for (i, k) in keys.names.iter().enumerate() {
            match routes.raws.iter().position(|r| {
                r.as_ref()
                    .is_some_and(|r| r.key.as_deref() == Some(k.as_str()))
            }) {
                Some(ri) => {
                    if routes.raws[ri]
                        .as_ref()
                        .and_then(|r| r.request_id_key.as_deref())
                        .is_some_and(|k| !k.is_empty())
                    {
                        *ok = false;
                        let o = self.origin(&routes.entities[ri], &root.key("RequestIdKey"));
                        self.error(
                            ent,
                            &root.key(keys.field).index(i),
                            format!("aggregateRoute {template} contains Route with specific RequestIdKey, this is not possible with Aggregates (route {k} at {}:{})", o.file, o.line),
                        );
                    }
                    match routes.built[ri] {
                        Some(b) => parts.push(b),
                        None => *ok = false,
                    }
                }
                None => {
                    missing.push((i, k.clone()));
                }
            }
        }
        for (i, k) in &missing {
            *ok = false;
            self.error(ent, &root.key(keys.field).index(*i), format!("Routes for aggregateRoute {template} either do not exist or do not have correct ServiceName property: no route has Key `{k}`"));
        }
        parts
    }

    /// RouteKeysConfig (or ReRouteKeysConfig): the JsonPath each later part's response is
    /// read with, and the placeholder it fills. `None` (an error) when both spellings are
    /// set.
    fn route_keys_config(
        &mut self,
        ent: &Entity,
        a: &RawAggregate,
        keys: &RouteKeys,
        ok: &mut bool,
    ) -> Option<Vec<OcelotRouteKeyConfig>> {
        let root = Path::root();
        let (configs, cfg_field) = match (&a.route_keys_config, &a.reroute_keys_config) {
            (Some(_), Some(_)) => {
                self.error(ent, &root.key("ReRouteKeysConfig"), "both `RouteKeysConfig` and its pre-16 spelling `ReRouteKeysConfig` are set: keep one");
                return None;
            }
            (Some(c), None) => (c.clone(), "RouteKeysConfig"),
            (None, Some(c)) => (c.clone(), "ReRouteKeysConfig"),
            (None, None) => (Vec::new(), "RouteKeysConfig"),
        };
        let mut route_keys_config = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let p = root.key(cfg_field).index(i);
            if let Some(config) = self.route_key_config(ent, &p, c, keys, ok) {
                route_keys_config.push(config);
            }
        }
        Some(route_keys_config)
    }

    /// One RouteKeysConfig entry, at `p`; `None` when it names no route key.
    fn route_key_config(
        &mut self,
        ent: &Entity,
        p: &Path,
        c: &RawRouteKeyConfig,
        keys: &RouteKeys,
        ok: &mut bool,
    ) -> Option<OcelotRouteKeyConfig> {
        let key = match (&c.route_key, &c.reroute_key) {
            (Some(_), Some(_)) => {
                *ok = false;
                self.error(
                    ent,
                    &p.key("ReRouteKey"),
                    "both `RouteKey` and its pre-16 spelling `ReRouteKey` are set: keep one",
                );
                return None;
            }
            (Some(k), None) | (None, Some(k)) => k.clone(),
            (None, None) => {
                *ok = false;
                self.error(ent, p, "RouteKey is required");
                return None;
            }
        };
        if !keys.names.contains(&key) {
            *ok = false;
            self.error(
                ent,
                &p.key("RouteKey"),
                format!("`{key}` is not one of this aggregate's RouteKeys"),
            );
        } else if keys.names.first() == Some(&key) {
            *ok = false;
            self.error(ent, &p.key("RouteKey"), format!("`{key}` is the first RouteKey, whose response the JsonPath reads; configure a later key"));
        }
        let json_path = c.json_path.clone().unwrap_or_default();
        if let Err(e) = aggregate::JsonPath::parse(&json_path) {
            *ok = false;
            self.error(
                ent,
                &p.key("JsonPath"),
                format!("JsonPath `{json_path}`: {e}"),
            );
        }
        let parameter = c.parameter.clone().unwrap_or_default();
        if parameter.is_empty() {
            *ok = false;
            self.error(
                ent,
                &p.key("Parameter"),
                "Parameter is required (the placeholder the JsonPath values fill)",
            );
        }
        Some(OcelotRouteKeyConfig {
            route_key: key,
            json_path,
            parameter,
        })
    }

    fn aggregate_duplicates(
        &mut self,
        aggs: &[Entity],
        raws: &[Option<RawAggregate>],
        routes: &[Entity],
        route_raws: &[Option<RawRoute>],
    ) {
        for (i, a) in raws.iter().enumerate() {
            let Some(a) = a else { continue };
            let t = a.upstream_path_template.clone().unwrap_or_default();
            let host = a.upstream_host.clone().filter(|h| !h.is_empty());
            let dup = raws.iter().enumerate().any(|(j, b)| {
                j != i
                    && b.as_ref().is_some_and(|b| {
                        b.upstream_path_template.as_deref() == Some(t.as_str())
                            && b.upstream_host.clone().filter(|h| !h.is_empty()) == host
                    })
            });
            if dup {
                self.error(&aggs[i], &Path::root().key("UpstreamPathTemplate"), format!("aggregate {t} has duplicate aggregate (same UpstreamPathTemplate and UpstreamHost)"));
            }
            for (j, r) in route_raws.iter().enumerate() {
                let Some(r) = r else { continue };
                let same = r.upstream_path_template.as_deref() == Some(t.as_str())
                    && r.upstream_host.clone().filter(|h| !h.is_empty()) == host;
                if same
                    && r.upstream_http_method
                        .iter()
                        .flatten()
                        .any(|m| m.trim().eq_ignore_ascii_case("get"))
                {
                    self.error(&routes[j], &Path::root().key("UpstreamPathTemplate"), format!("route {t} has duplicate aggregate (a GET route with the same UpstreamPathTemplate and UpstreamHost as an aggregate)"));
                }
            }
        }
    }
}

/// The routes (indices in `raws`) that clash with another: same template text, host and
/// header templates, and overlapping verbs (an empty verb list overlaps everything); in
/// file order.
fn duplicate_routes(raws: &[Option<RawRoute>]) -> Vec<usize> {
    type Group = (String, Option<String>, Vec<(String, String)>);
    let mut groups: HashMap<Group, Vec<usize>> = HashMap::new();
    for (i, r) in raws.iter().enumerate() {
        let Some(r) = r else { continue };
        let Some(t) = r.upstream_path_template.clone().filter(|t| !t.is_empty()) else {
            continue;
        };
        let mut headers: Vec<(String, String)> = r
            .upstream_header_templates
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.sort();
        groups
            .entry((
                t,
                r.upstream_host.clone().filter(|h| !h.is_empty()),
                headers,
            ))
            .or_default()
            .push(i);
    }
    let mut flagged: Vec<usize> = Vec::new();
    for members in groups.values() {
        if members.len() < 2 {
            continue;
        }
        let verbs = |i: usize| -> Vec<String> {
            raws[i]
                .as_ref()
                .and_then(|r| r.upstream_http_method.clone())
                .unwrap_or_default()
                .iter()
                .map(|m| m.trim().to_ascii_lowercase())
                .collect()
        };
        for &a in members {
            let va = verbs(a);
            let clash = members.iter().any(|&b| {
                if a == b {
                    return false;
                }
                let vb = verbs(b);
                va.is_empty()
                    || vb.is_empty()
                    || va.iter().any(|m| vb.contains(m))
                    || has_repeat(&va)
            }) || has_repeat(&va);
            if clash {
                flagged.push(a);
            }
        }
    }
    flagged.sort_unstable();
    flagged
}

fn has_repeat(v: &[String]) -> bool {
    v.iter().enumerate().any(|(i, m)| v[..i].contains(m))
}

/// The merged FileConfiguration as Ocelot would write it into its ocelot.json.
fn merged_json(
    routes: &[Entity],
    aggregates: &[Entity],
    dynamic: &[Entity],
    global: Option<&Entity>,
) -> serde_json::Value {
    let list =
        |l: &[Entity]| serde_json::Value::Array(l.iter().map(|e| canonical(&e.node)).collect());
    serde_json::json!({
        "Routes": list(routes),
        "DynamicRoutes": list(dynamic),
        "Aggregates": list(aggregates),
        "GlobalConfiguration": global.map(|g| canonical(&g.node)).unwrap_or_else(|| serde_json::json!({})),
    })
}

/// JSON of a node with the pre-16 key names renamed to the current ones.
fn canonical(n: &Node) -> serde_json::Value {
    match &n.value {
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().unwrap_or_default();
                    let key: Cow<'_, str> = match key.to_ascii_lowercase().as_str() {
                        "rerouteiscasesensitive" => "RouteIsCaseSensitive".into(),
                        "reroutekeys" => "RouteKeys".into(),
                        "reroutekeysconfig" => "RouteKeysConfig".into(),
                        "reroutekey" => "RouteKey".into(),
                        _ => key.into(),
                    };
                    (key.into_owned(), canonical(v))
                })
                .collect(),
        ),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(canonical).collect()),
        _ => n.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse_jsonc;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile {
            name: name.into(),
            root: parse_jsonc(text).unwrap(),
            case_insensitive: true,
        }
    }

    fn run(files: Vec<SourceFile>, env: Option<&str>) -> (Model, Diagnostics) {
        let mut model = Model::default();
        let mut diags = Diagnostics::default();
        load(&files, env, &mut model, &mut diags);
        (model, diags)
    }

    const ROUTE: &str = r#"{"DownstreamPathTemplate": "/d/{id}", "DownstreamScheme": "http", "DownstreamHostAndPorts": [{"Host": "h", "Port": 80}], "UpstreamPathTemplate": "/u/{id}", "UpstreamHttpMethod": ["Get"]}"#;

    #[test]
    fn parts_merge_in_name_order_after_ocelot_json() {
        let a = file(
            "ocelot.b.json",
            &format!(r#"{{"Routes": [{}]}}"#, ROUTE.replace("/u/", "/b/")),
        );
        let b = file(
            "ocelot.A.json",
            &format!(r#"{{"Routes": [{}]}}"#, ROUTE.replace("/u/", "/a/")),
        );
        let m = file("ocelot.json", &format!(r#"{{"ReRoutes": [{ROUTE}]}}"#));
        let (model, diags) = run(vec![a, b, m], None);
        assert!(!diags.has_errors(), "{:?}", diags.items);
        let t: Vec<&str> = model
            .ocelot_routes
            .iter()
            .map(|r| r.upstream.path_template.as_str())
            .collect();
        assert_eq!(t, ["/u/{id}", "/a/{id}", "/b/{id}"]);
    }

    #[test]
    fn global_in_a_part_file_names_both_files() {
        let g = file(
            "ocelot.global.json",
            r#"{"GlobalConfiguration": {"BaseUrl": "http://x"}}"#,
        );
        let p = file(
            "ocelot.orders.json",
            r#"{"Routes": [], "GlobalConfiguration": {"RequestIdKey": "X"}}"#,
        );
        let (_, diags) = run(vec![g, p], None);
        let e: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("ocelot.orders.json:1:") && e[0].contains("ocelot.global.json"),
            "{e:?}"
        );
    }

    #[test]
    fn environment_file_overlays_by_index() {
        let m = file(
            "ocelot.json",
            &format!(
                r#"{{"Routes": [{ROUTE}, {}]}}"#,
                ROUTE.replace("/u/", "/v/")
            ),
        );
        let env = file(
            "ocelot.Development.json",
            r#"{"Routes": [{"DownstreamHostAndPorts": [{"Host": "dev", "Port": "8080"}]}]}"#,
        );
        let (model, diags) = run(vec![m, env], Some("development"));
        assert!(!diags.has_errors(), "{:?}", diags.items);
        assert_eq!(model.ocelot_routes.len(), 2);
        let s = &model.services[model.ocelot_routes[0].service.unwrap()];
        assert_eq!((s.host.as_str(), s.port), ("dev", 8080));
        let s = &model.services[model.ocelot_routes[1].service.unwrap()];
        assert_eq!(s.host, "h");
    }

    #[test]
    fn environment_error_points_into_the_environment_file() {
        let m = file("ocelot.json", &format!(r#"{{"Routes": [{ROUTE}]}}"#));
        let env = file(
            "ocelot.Production.json",
            "{\n \"Routes\": [\n  {\"UpstreamPathTemplate\": \"u\"}]}",
        );
        let (_, diags) = run(vec![m, env], Some("Production"));
        let e: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        assert!(
            e.iter().any(|e| e.starts_with("ocelot.Production.json:3:")
                && e.contains("Routes[0].UpstreamPathTemplate")),
            "{e:?}"
        );
    }

    #[test]
    fn stale_generated_ocelot_json_is_skipped() {
        let m = file(
            "ocelot.json",
            &format!(
                r#"{{"Routes": [{}], "GlobalConfiguration": {{}}}}"#,
                ROUTE.replace("80", "\"80\"")
            ),
        );
        let p = file(
            "ocelot.products.json",
            &format!(r#"{{"Routes": [{ROUTE}]}}"#),
        );
        let (model, diags) = run(vec![m, p], None);
        assert!(!diags.has_errors(), "{:?}", diags.items);
        assert_eq!(model.ocelot_routes.len(), 1);
        assert!(
            diags
                .warnings()
                .any(|w| w.message.contains("merged file Ocelot writes"))
        );
    }

    #[test]
    fn validation_collects_every_error_with_positions() {
        let text = r#"{
  "Routes": [
    {"DownstreamPathTemplate": "/a", "DownstreamHostAndPorts": [{"Host": "h"}], "UpstreamPathTemplate": "/dup", "UpstreamHttpMethod": ["Get"]},
    {"DownstreamPathTemplate": "/b", "DownstreamHostAndPorts": [{"Host": "h"}], "UpstreamPathTemplate": "/dup", "UpstreamHttpMethod": ["GET"]},
    {"DownstreamPathTemplate": "x", "DownstreamHostAndPorts": [], "UpstreamPathTemplate": "/f/{a}/{a}"},
    {"DownstreamPathTemplate": "/c", "DownstreamStreamHostAndPorts": [{"Host": "h"}], "UpstreamPathTemplate": "/c", "RateLimitOptions": {"Period": "1x"}}
  ]
}"#;
        let (_, diags) = run(vec![file("ocelot.json", text)], None);
        let all: Vec<String> = diags.items.iter().map(|d| d.to_string()).collect();
        let has = |s: &str| all.iter().any(|e| e.contains(s));
        assert!(
            has("ocelot.json:3:") && has("route /dup has duplicate"),
            "{all:?}"
        );
        assert!(
            has("Routes[2].DownstreamPathTemplate: DownstreamPathTemplate 'x' doesn't start"),
            "{all:?}"
        );
        assert!(
            has("Routes[2].DownstreamHostAndPorts: When not using service discovery"),
            "{all:?}"
        );
        assert!(has("has duplicated placeholder {a}"), "{all:?}");
        assert!(
            has("warning: Routes[3].DownstreamStreamHostAndPorts: unknown key")
                && has("did you mean `DownstreamHostAndPorts`"),
            "{all:?}"
        );
        assert!(
            has("Routes[3].RateLimitOptions.Period: RateLimitOptions.Period does not contain"),
            "{all:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1s"), Some(1000.0));
        assert_eq!(parse_duration_ms("10.5s"), Some(10500.0));
        assert_eq!(parse_duration_ms("500"), Some(500.0));
        assert_eq!(parse_duration_ms("1x"), None);
        assert!(valid_period("1m") && !valid_period("1") && !valid_period("1x"));
    }
}
