//! Ocelot output caching options (`FileCacheOptions`, its 24.1+ name `CacheOptions`, and
//! `GlobalConfiguration.CacheOptions`) as Ocelot 24.1+/25.0's `CacheOptionsCreator` merges
//! them. The runtime is `plugins::ocelot_cache`.

use super::raw::{RawCache, RawGlobal, RawLoadBalancer, RawRoute};
use super::{Cx, Entity, GlobalCx, in_group};
use crate::config::diag::Path;
use crate::config::model::OcelotCache;

/// `CacheOptions.Oc_Cache_Control`: the header read when `Header` is not set.
pub const DEFAULT_HEADER: &str = "OC-Cache-Control";

/// The largest TTL kept (about 31 years): `Instant` arithmetic stays in range.
const MAX_TTL_SECONDS: i64 = 1 << 30;

/// `string.IfEmpty`: `s` unless null or empty.
fn if_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The options in force for a route, before defaults: TtlSeconds, Region, Header and
/// EnableContentHashing as CacheOptionsCreator picks them.
struct Merged<'a> {
    ttl: Option<i64>,
    region: Option<&'a str>,
    header: Option<&'a str>,
    hashing: Option<bool>,
}

impl<'a> Merged<'a> {
    fn of(c: &'a RawCache) -> Merged<'a> {
        Merged {
            ttl: c.ttl_seconds,
            region: if_empty(&c.region),
            header: if_empty(&c.header),
            hashing: c.enable_content_hashing,
        }
    }

    /// `CacheOptionsCreator.Merge`: each field of the route's, else the global one's.
    fn merge(route: &'a RawCache, global: &'a RawCache) -> Merged<'a> {
        Merged {
            ttl: route.ttl_seconds.or(global.ttl_seconds),
            region: if_empty(&route.region).or(if_empty(&global.region)),
            header: if_empty(&route.header).or(if_empty(&global.header)),
            hashing: route
                .enable_content_hashing
                .or(global.enable_content_hashing),
        }
    }
}

impl Cx<'_> {
    /// The route's caching: `FileCacheOptions` (which wins, as in Ocelot 24.1's backward
    /// compatibility) or `CacheOptions`, merged field by field with the global
    /// `CacheOptions` when the route is in its group, or the global options alone. `None`
    /// when TtlSeconds ends up 0 or less (Ocelot's `UseCache` is false).
    pub(super) fn route_cache(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
        ok: &mut bool,
    ) -> Option<OcelotCache> {
        let (field, own) = match (&r.file_cache_options, &r.cache_options) {
            (Some(f), other) => {
                if other.is_some() {
                    self.warn(ent, &Path::root().key("CacheOptions"), "both FileCacheOptions and CacheOptions are set: FileCacheOptions is used, as Ocelot does");
                }
                ("FileCacheOptions", Some(f))
            }
            (None, Some(c)) => ("CacheOptions", Some(c)),
            (None, None) => ("CacheOptions", None),
        };
        let global = g.raw.cache_options.as_ref();
        let grouped = global.is_some_and(|gl| in_group(&gl.route_keys, r.key.as_deref()));
        let merged = match (own, global) {
            (Some(o), Some(gl)) if grouped => Merged::merge(o, gl),
            (Some(o), _) => Merged::of(o),
            (None, Some(gl)) if grouped => Merged::of(gl),
            (None, _) => return None,
        };
        if let Some(h) = merged.header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            *ok = false;
            let at = if own.is_some_and(|o| if_empty(&o.header).is_some()) {
                Path::root().key(field).key("Header")
            } else {
                Path::root()
            };
            self.error(
                ent,
                &at,
                format!("{field}.Header `{h}` is not a valid header name"),
            );
            return None;
        }
        let ttl = merged.ttl.unwrap_or(0);
        if ttl <= 0 {
            return None;
        }
        Some(OcelotCache {
            ttl_seconds: ttl.min(MAX_TTL_SECONDS) as u64,
            region: merged
                .region
                .map(str::to_string)
                .unwrap_or_else(|| load_balancing_key(r, &g.raw)),
            header: merged.header.unwrap_or(DEFAULT_HEADER).to_string(),
            enable_content_hashing: merged.hashing.unwrap_or(false),
        })
    }

    /// `GlobalConfiguration.FileCacheOptions` is not a key Ocelot reads (its global section
    /// has always been `CacheOptions`): warned about, and ignored as Ocelot ignores it.
    pub(super) fn global_cache(&mut self, g: &RawGlobal, ent: &Entity) {
        if g.file_cache_options.is_some() {
            self.warn(
                ent,
                &Path::root().key("FileCacheOptions"),
                "Ocelot does not read GlobalConfiguration.FileCacheOptions (the global section is CacheOptions); it is ignored",
            );
        }
        if let Some(c) = &g.cache_options
            && let Some(h) = if_empty(&c.header)
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            self.error(
                ent,
                &Path::root().key("CacheOptions").key("Header"),
                format!("CacheOptions.Header `{h}` is not a valid header name"),
            );
        }
    }
}

/// Ocelot's default cache region: the route's load-balancing key (`RouteKeyCreator`),
/// `UpstreamHttpMethod|UpstreamPathTemplate|UpstreamHost|DownstreamHostAndPorts|
/// ServiceNamespace|ServiceName|LoadBalancerType|LoadBalancerKey`, or
/// `CookieStickySessions:<key>` for sticky sessions. Fields are as written in the file.
pub fn load_balancing_key(r: &RawRoute, g: &RawGlobal) -> String {
    let (kind, key) = load_balancer(r, g);
    if kind.eq_ignore_ascii_case("CookieStickySessions") {
        let key = key.unwrap_or(".AspNetCore.Session");
        return format!("CookieStickySessions:{key}");
    }
    let hosts = r
        .downstream_host_and_ports
        .iter()
        .flatten()
        .map(|h| {
            format!(
                "{}:{}",
                h.host.as_deref().unwrap_or_default(),
                h.port.unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let or = |s: &Option<String>, d: &'static str| if_empty(s).unwrap_or(d).to_string();
    let parts = [
        r.upstream_http_method
            .as_deref()
            .unwrap_or_default()
            .join(","),
        r.upstream_path_template.clone().unwrap_or_default(),
        or(&r.upstream_host, "no-host"),
        if hosts.is_empty() {
            "no-host-and-port".into()
        } else {
            hosts
        },
        or(&r.service_namespace, "no-svc-ns"),
        or(&r.service_name, "no-svc-name"),
        kind.to_string(),
        key.unwrap_or("no-lb-key").to_string(),
    ];
    // `StringBuilder.AppendNext`: the separator only once something is written, so an
    // empty first field leaves no leading `|`.
    let mut out = String::new();
    for p in parts {
        if !out.is_empty() {
            out.push('|');
        }
        out.push_str(&p);
    }
    out
}

/// The route's LoadBalancerOptions merged with the global ones of its group
/// (`LoadBalancerOptionsCreator`): the type (default `NoLoadBalancer`) and the key.
fn load_balancer<'a>(r: &'a RawRoute, g: &'a RawGlobal) -> (&'a str, Option<&'a str>) {
    let global = g
        .load_balancer_options
        .as_ref()
        .filter(|gl| in_group(&gl.route_keys, r.key.as_deref()));
    let pick = |f: fn(&RawLoadBalancer) -> &Option<String>| {
        r.load_balancer_options
            .as_ref()
            .and_then(|o| if_empty(f(o)))
            .or_else(|| global.and_then(|o| if_empty(f(o))))
    };
    let kind = pick(|o| &o.kind).unwrap_or("NoLoadBalancer");
    (kind, pick(|o| &o.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(json: serde_json::Value) -> RawRoute {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn default_region_is_the_load_balancing_key() {
        let r = route(serde_json::json!({
            "UpstreamHttpMethod": ["Get", "Post"],
            "UpstreamPathTemplate": "/cached/{all}",
            "DownstreamHostAndPorts": [{"Host": "localhost", "Port": 5001}, {"Host": "b", "Port": 80}],
        }));
        assert_eq!(
            load_balancing_key(&r, &RawGlobal::default()),
            "Get,Post|/cached/{all}|no-host|localhost:5001,b:80|no-svc-ns|no-svc-name|NoLoadBalancer|no-lb-key"
        );
        let r = route(serde_json::json!({
            "UpstreamPathTemplate": "/a",
            "UpstreamHost": "x.example",
            "LoadBalancerOptions": {"Type": "RoundRobin", "Key": "k"},
        }));
        // No methods: nothing written first, so no leading separator (AppendNext).
        assert_eq!(
            load_balancing_key(&r, &RawGlobal::default()),
            "/a|x.example|no-host-and-port|no-svc-ns|no-svc-name|RoundRobin|k"
        );
        let r = route(serde_json::json!({
            "UpstreamPathTemplate": "/a",
            "LoadBalancerOptions": {"Type": "CookieStickySessions"},
        }));
        assert_eq!(
            load_balancing_key(&r, &RawGlobal::default()),
            "CookieStickySessions:.AspNetCore.Session"
        );
    }

    #[test]
    fn global_load_balancer_type_applies_to_its_group() {
        let g: RawGlobal = serde_json::from_value(serde_json::json!({
            "LoadBalancerOptions": {"Type": "LeastConnection", "RouteKeys": ["r1"]},
        }))
        .unwrap();
        let r1 = route(serde_json::json!({"Key": "r1", "UpstreamPathTemplate": "/a"}));
        let r2 = route(serde_json::json!({"Key": "r2", "UpstreamPathTemplate": "/a"}));
        assert!(load_balancing_key(&r1, &g).ends_with("|LeastConnection|no-lb-key"));
        assert!(load_balancing_key(&r2, &g).ends_with("|NoLoadBalancer|no-lb-key"));
    }
}
