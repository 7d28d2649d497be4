//! Route matching, compiled once per snapshot.
//!
//! Every route becomes one or more `Matcher`s (Kong splits a route's paths into one matcher
//! per regex group and per plain-path length), ranked once at compile time by Kong 3.x's
//! traditional_compatible priority. A request walks a byte trie of path prefixes (plain
//! prefixes, and the literal prefix of every regex) to collect its few candidates, adds the
//! path-less matchers of its host, and checks them in rank order: the first full match wins.
//!
//! Ocelot routes and aggregates are matchers too (`PathRule::Ocelot`): their compiled
//! UpstreamPathTemplate regex is indexed by its literal prefix (case-insensitive templates in
//! a second trie walked with ASCII case folding), and a match returns the placeholder values.
//!
//! Precedence across dialects, decided once at compile time:
//! 1. a route that matches only through a catch-all (a Kong route whose only condition is the
//!    prefix `/`; an Ocelot `/{x}` template without UpstreamHost or header templates) loses to
//!    every other match, of either dialect;
//! 2. otherwise a matching Kong route wins over an Ocelot route;
//! 3. Kong routes among themselves rank by traditional_compatible priority, then file order;
//! 4. Ocelot routes among themselves rank as Ocelot's DownstreamRouteFinder picks: routes
//!    with an UpstreamHost first, then by Priority (highest first; default 1, `/{x}` is 0),
//!    then in merge order, aggregates after routes.

mod trie;

use std::cmp::Reverse;
use std::collections::HashMap;

use http::{HeaderMap, Method};
use regex::Regex;
use smallvec::SmallVec;

use crate::config::model::{OcelotUpstream, Route, RoutePath};
use crate::config::ocelot::template::{HeaderTemplate, Params, Subject, UpstreamTemplate};
use trie::Trie;

/// The request facts matching looks at.
pub struct Request<'a> {
    pub method: &'a Method,
    /// Host header without its port, as sent.
    pub host: &'a str,
    /// The Host header's port, else the port the request arrived on.
    pub port: u16,
    /// The normalised path, without query.
    pub path: &'a str,
    /// The raw query (after `?`), for Ocelot templates with a query part.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// On a TLS connection, the server name of its handshake (empty when the client sent
    /// none); `None` on a plain one, where routes' `snis` are not looked at (as in Kong).
    pub sni: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com` keeps `.example.com`.
    Suffix(String),
    /// `example.*` keeps `example.`.
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct HostRule {
    pub pattern: HostPattern,
    pub port: Option<u16>,
}

impl HostRule {
    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.pattern {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            HostPattern::Prefix(p) => host.len() > p.len() && host.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub name: http::HeaderName,
    /// Lower-cased literal values.
    pub values: Vec<String>,
    /// A `~*` value: matched, unanchored, against the lower-cased request value.
    pub regex: Option<Regex>,
}

impl HeaderRule {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            let Ok(v) = v.to_str() else { return false };
            self.values.iter().any(|want| want.eq_ignore_ascii_case(v))
                || self
                    .regex
                    .as_ref()
                    .is_some_and(|re| re.is_match(&v.to_ascii_lowercase()))
        })
    }
}

#[derive(Debug, Clone)]
pub enum PathRule {
    Any,
    /// Plain prefixes, all of one length.
    Prefix(Vec<String>),
    /// Start-anchored regexes; the literal prefix of each is indexed.
    Regex(Vec<(Regex, String)>),
    /// An Ocelot UpstreamPathTemplate (with its header templates).
    Ocelot(Box<OcelotRule>),
}

/// The Ocelot part of a matcher: the compiled templates and Ocelot's ranking facts.
#[derive(Debug, Clone)]
pub struct OcelotRule {
    pub template: UpstreamTemplate,
    pub headers: Vec<HeaderTemplate>,
    /// Priority as Ocelot uses it (the catch-all `/{x}` is forced to 0).
    pub priority: i32,
    pub has_host: bool,
    pub aggregate: bool,
}

/// One rankable unit of a route.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Index of the route in the snapshot.
    pub route: usize,
    pub methods: Vec<Method>,
    pub hosts: Vec<HostRule>,
    pub headers: Vec<HeaderRule>,
    /// A Kong route's `snis` (exact or wildcard, as hosts are), checked on TLS requests.
    pub snis: Vec<HostRule>,
    pub paths: PathRule,
    /// Kong's 64-bit traditional_compatible priority.
    pub priority: u64,
    /// Matches any path and nothing else narrows it: loses to every other match.
    pub catch_all: bool,
    /// Declaration order, the final tie-break.
    pub order: usize,
}

/// What a successful match tells the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub matcher: usize,
    pub route: usize,
    /// Bytes of the normalised path the route path consumed (for strip_path and
    /// X-Forwarded-Prefix); `None` when the route has no path.
    pub prefix_len: Option<usize>,
    /// Ocelot placeholder values (path, query, then header placeholders); empty for Kong.
    pub params: Params,
}

/// Why a matcher did not match a request (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    Method,
    Host,
    Header(String),
    Path,
    Sni,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Method => f.write_str("method does not match"),
            Miss::Host => f.write_str("host does not match"),
            Miss::Header(h) => write!(f, "header {h} does not match"),
            Miss::Path => f.write_str("path does not match"),
            Miss::Sni => f.write_str("TLS server name (SNI) does not match"),
        }
    }
}

impl Matcher {
    /// Checks every field; the path last, as it is the only one that yields data.
    pub fn check(&self, req: &Request<'_>) -> Result<Option<usize>, Miss> {
        self.check_with(req, &Subject::new(req.path, req.query), None)
    }

    /// `check`, with the Ocelot view of the path computed once per request by the caller;
    /// Ocelot placeholder values go to `params` when given.
    fn check_with(
        &self,
        req: &Request<'_>,
        subject: &Subject<'_>,
        params: Option<&mut Params>,
    ) -> Result<Option<usize>, Miss> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return Err(Miss::Method);
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.matches(req.host, req.port)) {
            return Err(Miss::Host);
        }
        if let Some(h) = self.headers.iter().find(|h| !h.matches(req.headers)) {
            return Err(Miss::Header(h.name.to_string()));
        }
        if let Some(sni) = req.sni
            && !self.snis.is_empty()
            && !self.snis.iter().any(|r| r.matches(sni, 0))
        {
            return Err(Miss::Sni);
        }
        match &self.paths {
            PathRule::Any => Ok(None),
            PathRule::Prefix(prefixes) => prefixes
                .iter()
                .find(|p| req.path.starts_with(p.as_str()))
                .map(|p| Some(p.len()))
                .ok_or(Miss::Path),
            PathRule::Regex(regexes) => regexes
                .iter()
                .find_map(|(re, _)| re.find(req.path))
                .map(|m| Some(m.end()))
                .ok_or(Miss::Path),
            PathRule::Ocelot(rule) => match params {
                None => {
                    if !rule.template.is_match(subject) {
                        return Err(Miss::Path);
                    }
                    match rule.headers.iter().find(|h| !h.matches(req.headers, None)) {
                        Some(h) => Err(Miss::Header(h.name.to_string())),
                        None => Ok(None),
                    }
                }
                Some(out) => {
                    let before = out.len();
                    if !rule.template.matches(subject, out) {
                        return Err(Miss::Path);
                    }
                    if let Some(h) = rule
                        .headers
                        .iter()
                        .find(|h| !h.matches(req.headers, Some(out)))
                    {
                        out.truncate(before);
                        return Err(Miss::Header(h.name.to_string()));
                    }
                    Ok(None)
                }
            },
        }
    }

    /// The priority as its parts, for `explain`.
    pub fn describe_priority(&self) -> String {
        if let PathRule::Ocelot(rule) = &self.paths {
            return format!(
                "ocelot {} template={} priority={}{}{}",
                if rule.aggregate { "aggregate" } else { "route" },
                rule.template.template,
                rule.priority,
                if rule.has_host { " upstream_host" } else { "" },
                if self.catch_all { " catch-all" } else { "" }
            );
        }
        let p = self.priority;
        format!(
            "fields={} plain_hosts={} headers={} regex={} regex_priority={} prefix_len={}{}",
            p >> 61,
            (p >> 60) & 1,
            (p >> 52) & 0xff,
            (p >> 51) & 1,
            ((p >> 19) & 0xffff_ffff) as i64 - (1 << 31),
            p & 0x7ffff,
            if self.catch_all { " catch-all" } else { "" }
        )
    }
}

#[derive(Default)]
pub struct Router {
    /// In precedence order: index is rank.
    pub matchers: Vec<Matcher>,
    trie: Trie,
    /// Literal prefixes of case-insensitive Ocelot templates, lower-cased.
    folded_trie: Trie,
    /// Some matcher is an Ocelot one (the decoded path is needed).
    has_ocelot: bool,
    /// Matchers without a path condition, indexed by what their hosts can match.
    pathless: PathlessIndex,
}

/// Path-less matchers by host: exact names, `*.suffix` by its suffix and `prefix.*` by its
/// prefix, so a request looks up its host and its few label boundaries instead of scanning
/// every wildcard route. A matcher whose hosts cannot be indexed (none, or a wildcard that is
/// not a whole label) is a candidate for every request.
#[derive(Default)]
struct PathlessIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    suffix: HashMap<Box<str>, Vec<u32>>,
    prefix: HashMap<Box<str>, Vec<u32>>,
    other: Vec<u32>,
}

impl PathlessIndex {
    fn insert(&mut self, hosts: &[HostRule], rank: u32) {
        let indexable = |h: &HostRule| match &h.pattern {
            HostPattern::Exact(_) => true,
            HostPattern::Suffix(s) => s.starts_with('.'),
            HostPattern::Prefix(p) => p.ends_with('.'),
        };
        if hosts.is_empty() || !hosts.iter().all(indexable) {
            self.other.push(rank);
            return;
        }
        for h in hosts {
            let (map, key) = match &h.pattern {
                HostPattern::Exact(e) => (&mut self.exact, e),
                HostPattern::Suffix(s) => (&mut self.suffix, s),
                HostPattern::Prefix(p) => (&mut self.prefix, p),
            };
            let list = map.entry(key.as_str().into()).or_default();
            // A matcher listing two ports of one host is one candidate.
            if list.last() != Some(&rank) {
                list.push(rank);
            }
        }
    }

    /// Appends the candidates for `host` (unordered, possibly repeated).
    fn collect(&self, host: &str, out: &mut SmallVec<[u32; 16]>) {
        if let Some(list) = self.exact.get(host) {
            out.extend_from_slice(list);
        }
        if !self.suffix.is_empty() || !self.prefix.is_empty() {
            // A wildcard stands for at least one character: `.example.com` is looked up from
            // `a.example.com` but not from `.example.com` itself.
            for (i, _) in host.match_indices('.') {
                if i > 0
                    && let Some(list) = self.suffix.get(&host[i..])
                {
                    out.extend_from_slice(list);
                }
                if i + 1 < host.len()
                    && let Some(list) = self.prefix.get(&host[..=i])
                {
                    out.extend_from_slice(list);
                }
            }
        }
        out.extend_from_slice(&self.other);
    }
}

const PLAIN_HOST_ONLY_BIT: u64 = 1 << 60;
const REGEX_URL_BIT: u64 = 1 << 51;

impl Router {
    /// Compiles routes (each with the index it has in the snapshot). Regexes were validated
    /// when the config was loaded.
    pub fn build(routes: &[(usize, &Route)]) -> Router {
        Self::build_all(routes, &[])
    }

    /// Compiles Kong routes and Ocelot routes/aggregates (each with its snapshot index) into
    /// one router. Ocelot templates were validated when the config was loaded; one that does
    /// not compile is left out.
    pub fn build_all(routes: &[(usize, &Route)], ocelot: &[OcelotSpec<'_>]) -> Router {
        let mut matchers = Vec::new();
        for &(idx, route) in routes {
            matchers.extend(kong_matchers(idx, route));
        }
        for spec in ocelot {
            if let Some(m) = ocelot_matcher(spec) {
                matchers.push(m);
            }
        }
        for (order, m) in matchers.iter_mut().enumerate() {
            m.order = order;
        }
        matchers.sort_by_key(|m| {
            let (is_ocelot, has_host, prio) = match &m.paths {
                PathRule::Ocelot(r) => (true, r.has_host, r.priority),
                _ => (false, false, 0),
            };
            (
                m.catch_all,
                is_ocelot,
                Reverse(m.priority),
                !has_host,
                Reverse(prio),
                m.order,
            )
        });
        // Kept for the life of the snapshot: without the growth slack (10,000 routes: 1 MB).
        matchers.shrink_to_fit();
        let mut router = Router {
            matchers,
            ..Default::default()
        };
        for (rank, m) in router.matchers.iter().enumerate() {
            let rank = rank as u32;
            match &m.paths {
                PathRule::Prefix(ps) => ps
                    .iter()
                    .for_each(|p| router.trie.insert(p.as_bytes(), rank)),
                PathRule::Regex(rs) => rs
                    .iter()
                    .for_each(|(_, lit)| router.trie.insert(lit.as_bytes(), rank)),
                PathRule::Ocelot(rule) => {
                    router.has_ocelot = true;
                    if rule.template.case_sensitive || rule.template.catch_all {
                        router.trie.insert(rule.template.prefix.as_bytes(), rank);
                    } else {
                        router
                            .folded_trie
                            .insert(rule.template.prefix.as_bytes(), rank);
                    }
                }
                PathRule::Any => router.pathless.insert(&m.hosts, rank),
            }
        }
        router
    }

    /// The candidates for a request, in rank order, deduplicated.
    fn candidates(&self, req: &Request<'_>) -> SmallVec<[u32; 16]> {
        let mut out: SmallVec<[u32; 16]> = SmallVec::new();
        self.trie.collect(req.path.as_bytes(), &mut out);
        if self.has_ocelot {
            self.folded_trie
                .collect_folded(req.path.as_bytes(), &mut out);
        }
        self.pathless.collect(req.host, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn find(&self, req: &Request<'_>) -> Option<Match> {
        // Only Ocelot matchers look at the subject: a Kong-only router never decodes.
        let subject = if self.has_ocelot {
            Subject::new(req.path, req.query)
        } else {
            Subject::undecoded(req.path, req.query)
        };
        let mut params = Params::new();
        for rank in self.candidates(req) {
            let m = &self.matchers[rank as usize];
            if let Ok(prefix_len) = m.check_with(req, &subject, Some(&mut params)) {
                return Some(Match {
                    matcher: rank as usize,
                    route: m.route,
                    prefix_len,
                    params,
                });
            }
        }
        None
    }

    /// Every matcher's verdict on a request, in precedence order (for `explain`).
    pub fn explain(&self, req: &Request<'_>) -> Vec<(usize, Result<Option<usize>, Miss>)> {
        self.matchers
            .iter()
            .enumerate()
            .map(|(rank, m)| (rank, m.check(req)))
            .collect()
    }
}

fn host_rule(h: &str) -> HostRule {
    let (name, port) = crate::config::kong::split_host_port(h).unwrap_or((h, None));
    let pattern = if let Some(s) = name.strip_prefix('*') {
        HostPattern::Suffix(s.to_string())
    } else if let Some(p) = name.strip_suffix('*') {
        HostPattern::Prefix(p.to_string())
    } else {
        HostPattern::Exact(name.to_string())
    };
    HostRule { pattern, port }
}

/// An Ocelot route or aggregate to compile into the router.
pub struct OcelotSpec<'a> {
    /// Index in the snapshot's routes.
    pub index: usize,
    pub upstream: &'a OcelotUpstream,
    pub aggregate: bool,
}

/// Compiles one Ocelot route or aggregate. Aggregates answer GET only.
fn ocelot_matcher(spec: &OcelotSpec<'_>) -> Option<Matcher> {
    let up = spec.upstream;
    let template = UpstreamTemplate::compile(&up.path_template, up.case_sensitive).ok()?;
    let headers: Vec<HeaderTemplate> = up
        .header_templates
        .iter()
        .filter_map(|(n, v)| HeaderTemplate::compile(n, v, up.case_sensitive).ok())
        .collect();
    let methods: Vec<Method> = if spec.aggregate {
        vec![Method::GET]
    } else {
        up.methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .collect()
    };
    let hosts: Vec<HostRule> = up.host.iter().map(|h| host_rule(h)).collect();
    let catch_all = template.catch_all && hosts.is_empty() && headers.is_empty();
    let priority = if template.catch_all { 0 } else { up.priority };
    Some(Matcher {
        route: spec.index,
        methods,
        hosts,
        headers: Vec::new(),
        snis: Vec::new(),
        paths: PathRule::Ocelot(Box::new(OcelotRule {
            template,
            headers,
            priority,
            has_host: up.host.is_some(),
            aggregate: spec.aggregate,
        })),
        priority: 0,
        catch_all,
        order: 0,
    })
}

/// The literal text a regex must start with, so it can share the prefix trie.
fn literal_prefix(re: &str) -> String {
    let mut lit = String::new();
    if re.contains('|') {
        // An alternative may start anywhere.
        return lit;
    }
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n) if n.is_ascii_punctuation() => {
                    lit.push(n);
                    chars.next();
                }
                _ => break,
            },
            '.' | '+' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => break,
            '*' | '?' => {
                lit.pop();
                break;
            }
            c => lit.push(c),
        }
        // A quantifier applies to the character before it.
        if matches!(chars.peek(), Some('*' | '?' | '{')) {
            lit.pop();
            break;
        }
    }
    lit
}

/// regex_priority as 32 ordered bits (negative values rank below zero).
fn regex_priority_bits(p: i64) -> u64 {
    (p.clamp(i32::MIN as i64, i32::MAX as i64) + (1 << 31)) as u64
}

/// Kong's route split and priority (`kong/router/compat.lua`, `transform.lua` get_priority).
fn kong_matchers(idx: usize, route: &Route) -> Vec<Matcher> {
    let methods: Vec<Method> = route
        .methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect();
    let hosts: Vec<HostRule> = route.hosts.iter().map(|h| host_rule(h)).collect();
    let snis: Vec<HostRule> = route
        .snis
        .iter()
        .map(|h| host_rule(&h.to_ascii_lowercase()))
        .collect();
    let headers: Vec<HeaderRule> = route
        .headers
        .iter()
        .filter_map(|(name, values)| {
            let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
            let regex = values
                .iter()
                .find_map(|v| v.strip_prefix("~*"))
                .and_then(|re| Regex::new(&re.to_ascii_lowercase()).ok());
            let values = values
                .iter()
                .filter(|v| !v.starts_with("~*"))
                .map(|v| v.to_ascii_lowercase())
                .collect();
            Some(HeaderRule {
                name,
                values,
                regex,
            })
        })
        .collect();

    let mut fields = 0u64;
    fields += u64::from(!methods.is_empty());
    fields += u64::from(!hosts.is_empty());
    fields += u64::from(!headers.is_empty());
    fields += u64::from(!route.snis.is_empty());
    let plain_hosts = !hosts.is_empty()
        && hosts
            .iter()
            .all(|h| matches!(h.pattern, HostPattern::Exact(_)));
    let header_count = (headers.len() as u64).min(255);
    let base = (if plain_hosts { PLAIN_HOST_ONLY_BIT } else { 0 }) | (header_count << 52);

    let mut groups: Vec<PathRule> = Vec::new();
    let regexes: Vec<(Regex, String)> = route
        .paths
        .iter()
        .filter_map(|p| match p {
            RoutePath::Regex(re) => crate::config::kong::compile_regex_path(re)
                .ok()
                .map(|r| (r, literal_prefix(re))),
            RoutePath::Prefix(_) => None,
        })
        .collect();
    if !regexes.is_empty() {
        groups.push(PathRule::Regex(regexes));
    }
    let mut by_len: Vec<Vec<String>> = Vec::new();
    for p in &route.paths {
        if let RoutePath::Prefix(p) = p {
            match by_len.iter_mut().find(|g| g[0].len() == p.len()) {
                Some(g) => g.push(p.clone()),
                None => by_len.push(vec![p.clone()]),
            }
        }
    }
    groups.extend(by_len.into_iter().map(PathRule::Prefix));
    if groups.is_empty() {
        groups.push(PathRule::Any);
    }

    let narrowed =
        !methods.is_empty() || !hosts.is_empty() || !headers.is_empty() || !snis.is_empty();
    groups
        .into_iter()
        .map(|paths| {
            let (has_path, prio) = match &paths {
                PathRule::Any => (false, 0),
                PathRule::Prefix(ps) => (true, ps[0].len() as u64 & 0x7ffff),
                PathRule::Regex(_) => (
                    true,
                    REGEX_URL_BIT | (regex_priority_bits(route.regex_priority) << 19),
                ),
                PathRule::Ocelot(_) => (true, 0),
            };
            let catch_all = !narrowed && matches!(&paths, PathRule::Prefix(ps) if ps[0] == "/");
            Matcher {
                route: idx,
                methods: methods.clone(),
                hosts: hosts.clone(),
                headers: headers.clone(),
                snis: snis.clone(),
                paths,
                priority: ((fields + u64::from(has_path)) << 61) | base | prio,
                catch_all,
                order: 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(r"/users/\d+"), "/users/");
        assert_eq!(literal_prefix(r"/[0]?route"), "/");
        assert_eq!(literal_prefix(r"/api/v\d+"), "/api/v");
        assert_eq!(literal_prefix(r"/ab?c"), "/a");
        assert_eq!(literal_prefix(r"/a\.b/(x)"), "/a.b/");
        assert_eq!(literal_prefix(r"/exact$"), "/exact");
        assert_eq!(literal_prefix(r"/x{2}"), "/");
        assert_eq!(literal_prefix(r"/foo|/bar"), "");
    }

    fn kong(path: &str) -> Route {
        Route {
            id: path.into(),
            name: Some(path.into()),
            service: None,
            protocols: vec![crate::config::model::Protocol::Http],
            methods: vec![],
            hosts: vec![],
            paths: vec![RoutePath::Prefix(path.into())],
            headers: vec![],
            snis: vec![],
            strip_path: true,
            preserve_host: false,
            regex_priority: 0,
            path_handling: crate::config::model::PathHandling::V0,
            https_redirect_status_code: 426,
            request_buffering: true,
            response_buffering: true,
            tags: vec![],
            origin: Default::default(),
        }
    }

    fn up(t: &str, host: Option<&str>, prio: i32, methods: &[&str]) -> OcelotUpstream {
        OcelotUpstream {
            path_template: t.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            host: host.map(str::to_string),
            header_templates: vec![],
            case_sensitive: false,
            priority: prio,
        }
    }

    /// Which entity wins, across dialects and within Ocelot (snapshot indices: Kong routes
    /// 0.., then the Ocelot ones in order).
    #[test]
    fn precedence_table() {
        let kong_routes = [kong("/"), kong("/k")];
        let kong_refs: Vec<(usize, &Route)> = kong_routes.iter().enumerate().collect();
        let ups = [
            up("/{everything}", None, 1, &[]),      // 2: catch-all, forced to 0
            up("/goods/{url}", None, 1, &["Get"]),  // 3
            up("/goods/delete", None, 1, &["Get"]), // 4: listed after, same priority
            up("/items/{id}", None, 1, &[]),        // 5
            up("/items/special", None, 2, &[]),     // 6: higher priority
            up("/h", None, 5, &[]),                 // 7
            up("/h", Some("example.com"), 1, &[]),  // 8: host wins over priority
            up("/k/{x}", None, 1, &[]),             // 9: Kong /k wins
            up("/post-only", None, 1, &["Post"]),   // 10
            up("/agg", None, 1, &["Post"]),         // 11: aggregate, GET only
        ];
        let specs: Vec<OcelotSpec<'_>> = ups
            .iter()
            .enumerate()
            .map(|(i, u)| OcelotSpec {
                index: 2 + i,
                upstream: u,
                aggregate: i == 9,
            })
            .collect();
        let router = Router::build_all(&kong_refs, &specs);
        let headers = HeaderMap::new();
        let find = |method: &Method, host: &str, path: &str| {
            let req = Request {
                method,
                host,
                port: 80,
                path,
                query: None,
                headers: &headers,
                sni: None,
            };
            router.find(&req).map(|m| m.route)
        };
        let get = Method::GET;
        let post = Method::POST;
        for (method, host, path, want) in [
            (&get, "x", "/anything", Some(0)), // both catch-alls: Kong's first
            (&get, "x", "/goods/delete", Some(3)), // Ocelot: first in file order
            (&get, "x", "/items/special", Some(6)), // Ocelot: higher Priority
            (&get, "x", "/items/1", Some(5)),
            (&get, "example.com", "/h", Some(8)), // UpstreamHost beats Priority
            (&get, "other", "/h", Some(7)),
            (&get, "x", "/k/1", Some(1)),       // Kong over Ocelot
            (&get, "x", "/post-only", Some(0)), // verb filters, then the catch-alls
            (&post, "x", "/post-only", Some(10)),
            (&get, "x", "/agg", Some(11)),
            (&post, "x", "/agg", Some(0)),
        ] {
            assert_eq!(find(method, host, path), want, "{method} {host} {path}");
        }
        // Without the Kong catch-all, Ocelot's catch-all takes what nothing else matches.
        let router = Router::build_all(&kong_refs[1..], &specs);
        let req = Request {
            method: &get,
            host: "x",
            port: 80,
            path: "/anything",
            query: None,
            headers: &headers,
            sni: None,
        };
        assert_eq!(
            router.find(&req).map(|m| (m.route, m.params)),
            Some((
                2,
                vec![(std::sync::Arc::from("everything"), "anything".to_string())]
            ))
        );
    }

    /// Path-less routes are found through the host index: wildcards at label boundaries,
    /// ports, plain hosts over wildcards, and routes without hosts for every request.
    #[test]
    fn pathless_routes_by_host() {
        let pathless = |hosts: &[&str], methods: &[Method]| Route {
            paths: vec![],
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ..kong("/")
        };
        let routes = [
            pathless(&["*.example.com"], &[]),
            pathless(&["api.*"], &[]),
            pathless(&["exact.example.com"], &[]),
            pathless(&["a.b.example.com:8080", "other.org"], &[]),
            pathless(&[], &[Method::POST]),
        ];
        let refs: Vec<(usize, &Route)> = routes.iter().enumerate().collect();
        let router = Router::build(&refs);
        let headers = HeaderMap::new();
        for (method, host, port, want) in [
            (Method::GET, "x.example.com", 80, Some(0)),
            (Method::GET, "a.b.example.com", 80, Some(0)),
            (Method::GET, "a.b.example.com", 8080, Some(3)),
            (Method::GET, "other.org", 80, Some(3)),
            (Method::GET, ".example.com", 80, None),
            (Method::GET, "example.com", 80, None),
            (Method::GET, "api.foo.net", 80, Some(1)),
            (Method::GET, "api.", 80, None),
            (Method::GET, "exact.example.com", 80, Some(2)),
            (Method::POST, "zzz", 80, Some(4)),
            (Method::POST, "x.example.com", 80, Some(0)),
        ] {
            let req = Request {
                method: &method,
                host,
                port,
                path: "/p",
                query: None,
                headers: &headers,
                sni: None,
            };
            assert_eq!(
                router.find(&req).map(|m| m.route),
                want,
                "{method} {host}:{port}"
            );
        }
    }
}
