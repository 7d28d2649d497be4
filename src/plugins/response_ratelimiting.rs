//! `response-ratelimiting` (PRIORITY 900, access and header_filter): named limits per
//! second..year that the upstream consumes by answering with a header
//! (`X-Kong-Limit: video=1`), counted per consumer, credential or IP, locally or in Redis;
//! requests past a limit get 429 (`kong/plugins/response-ratelimiting/`). Access reads the
//! counts (Redis: one `MGET`) and tells the upstream what remains
//! (`X-RateLimit-Remaining-<name>`); the response head applies the upstream's increments to
//! the client's headers and answers 429 without a body when a spent limit is used again; the
//! log phase counts (Redis: one script call, off the request path). Counters live where
//! rate-limiting's do (`ratelimit`), kept across reloads.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use indexmap::IndexMap;
use serde::Deserialize;

use super::rate_limiting::{
    CLUSTER_NEEDS_DATABASE, EMPTY_UUID, Policy, number, periods_order, redis_target, unix_now,
};
use super::ratelimit::{
    EXPIRATION, Ident, Local, OncePerSecond, PERIODS, RedisFailure, RedisLink, window_starts,
};
use super::schema::defaults::yes;
use super::schema::redis::{Redis, RedisShorthands, redis_shorthands};
use super::{
    BodyFlow, BuildCx, Checks, Chunk, Ctx, Flow, Kind, LogEntry, Phases, Plugin, PluginSpec,
    Request, ResponseHead, Validate,
};
use crate::exchange::respond::{self, push_json_string};

/// The plugin's `config` (Kong's `kong/plugins/response-ratelimiting/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_header_name")]
    pub header_name: String,
    #[serde(default)]
    pub limit_by: LimitBy,
    /// Kong offers `cluster` only with a database: DB-less Kong's schema refuses it, and so
    /// does `validate`.
    #[serde(default)]
    pub policy: Policy,
    #[serde(default = "yes")]
    pub fault_tolerant: bool,
    #[serde(default)]
    pub redis: Redis,
    #[serde(default)]
    pub block_on_first_violation: bool,
    #[serde(default)]
    pub hide_client_headers: bool,
    /// The limits by name (the name the upstream's header counts against).
    pub limits: IndexMap<String, Limit>,

    // Kong's deprecated shorthands (to be removed in Kong 4.0), written into `redis`.
    pub redis_host: Option<String>,
    pub redis_port: Option<i64>,
    pub redis_password: Option<String>,
    pub redis_username: Option<String>,
    pub redis_ssl: Option<bool>,
    pub redis_ssl_verify: Option<bool>,
    pub redis_server_name: Option<String>,
    pub redis_timeout: Option<i64>,
    pub redis_database: Option<i64>,
}

/// What the limits are counted by (the consumer or credential falls back to the IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    #[default]
    Consumer,
    Credential,
    Ip,
}

/// One named limit: at least one period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Limit {
    pub second: Option<f64>,
    pub minute: Option<f64>,
    pub hour: Option<f64>,
    pub day: Option<f64>,
    pub month: Option<f64>,
    pub year: Option<f64>,
}

impl Limit {
    /// The limits by period, shortest first.
    pub fn periods(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("second", self.second),
            ("minute", self.minute),
            ("hour", self.hour),
            ("day", self.day),
            ("month", self.month),
            ("year", self.year),
        ]
    }
}

fn default_header_name() -> String {
    "x-kong-limit".to_string()
}

impl Config {
    /// The deprecated flat `redis_*` fields as written.
    pub fn shorthands(&self) -> RedisShorthands {
        redis_shorthands!(self)
    }

    /// The Redis settings in effect: `redis` with the shorthands written into it.
    pub fn effective_redis(&self) -> Redis {
        self.redis.with_shorthands(&self.shorthands())
    }
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        if self.limits.is_empty() {
            c.error("limits", "length must be at least 1");
        }
        for (name, limit) in &self.limits {
            let at = format!("limits.{name}");
            let periods = limit.periods();
            let mut valid = true;
            for (period, v) in periods {
                if let Some(v) = v {
                    valid &= v > 0.0;
                    c.greater_than(&format!("{at}.{period}"), v, 0.0);
                }
            }
            if periods.iter().all(|(_, v)| v.is_none()) {
                c.error(
                    &at,
                    "at least one of these fields must be non-empty: 'second', 'minute', 'hour', \
                     'day', 'month', 'year'",
                );
            }
            if valid && let Some((period, message)) = periods_order(&periods, "the") {
                c.error(&format!("{at}.{period}"), message);
            }
        }
        if self.policy == Policy::Cluster {
            c.error("policy", CLUSTER_NEEDS_DATABASE);
        }
        let redis = self.redis.check_with_shorthands(&self.shorthands(), c);
        // `redis.port` and `redis.timeout` are required with the redis policy too, but they
        // have defaults (and `null` leaves them at it), so are always set.
        c.required_if(
            "redis.host",
            redis.host.is_some(),
            self.policy == Policy::Redis,
            "policy is redis",
        );
    }
}

/// `response-ratelimiting` (PRIORITY 900).
pub struct ResponseRatelimiting;

impl PluginSpec for ResponseRatelimiting {
    const NAME: &'static str = "response-ratelimiting";
    const PRIORITY: i32 = 900;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(
        config: Self::Config,
        cx: &mut BuildCx<'_>,
    ) -> Result<Option<Arc<dyn Plugin>>, String> {
        let route = cx.route.map_or(EMPTY_UUID, |r| &*r.id);
        let service = cx.service.map_or(EMPTY_UUID, |s| &*s.id);
        let scope = format!("{route}:{service}");
        let mut limits = Vec::with_capacity(config.limits.len());
        for (name, limit) in &config.limits {
            // A limit name that cannot be part of a header name: the route stays closed
            // rather than unlimited.
            let Some(named) = Named::new(name, limit) else {
                return Ok(None);
            };
            limits.push(named);
        }
        let store = match config.policy {
            Policy::Cluster => return Err(CLUSTER_NEEDS_DATABASE.to_string()),
            Policy::Local => Store::Local(
                limits
                    .iter()
                    .map(|l| {
                        cx.state
                            .kept::<Local>(&format!("response-ratelimiting:{scope}:{}", l.name))
                    })
                    .collect(),
            ),
            Policy::Redis => {
                let Some(target) = redis_target(&config.effective_redis()) else {
                    return Ok(None);
                };
                let link = cx.state.kept::<RedisLink>(&target.key());
                link.configure(target);
                Store::Redis(link)
            }
        };
        Ok(Some(Arc::new(Limiter {
            inner: Arc::new(Inner {
                header: HeaderName::from_bytes(config.header_name.as_bytes())
                    .map_err(|_| format!("`{}` is not a valid header name", config.header_name))?,
                limit_by: config.limit_by,
                block_on_first_violation: config.block_on_first_violation,
                hide_client_headers: config.hide_client_headers,
                fault_tolerant: config.fault_tolerant,
                scope,
                limits,
                store,
                last_warning: OncePerSecond::default(),
            }),
        })))
    }
}

/// One named limit (`config.limits.<name>`), its header names made once.
struct Named {
    name: String,
    periods: Vec<usize>,
    limits: Vec<f64>,
    limit_values: Vec<HeaderValue>,
    /// Upstream: `X-RateLimit-Remaining-<name>`.
    upstream_remaining: HeaderName,
    /// Client: `X-RateLimit-Limit-<name>-<period>` and `X-RateLimit-Remaining-<name>-<period>`.
    limit_headers: Vec<HeaderName>,
    remaining_headers: Vec<HeaderName>,
    /// Kong's 429 with `block_on_first_violation`.
    violation_body: Bytes,
}

impl Named {
    fn new(name: &str, limit: &Limit) -> Option<Named> {
        let (periods, limits): (Vec<usize>, Vec<f64>) = limit
            .periods()
            .iter()
            .enumerate()
            .filter_map(|(i, (_, l))| l.map(|l| (i, l)))
            .unzip();
        let header = |s: String| HeaderName::from_bytes(s.as_bytes()).ok();
        let per_period = |prefix: &str| -> Option<Vec<HeaderName>> {
            periods
                .iter()
                .map(|&p| header(format!("{prefix}-{name}-{}", PERIODS[p])))
                .collect()
        };
        let mut body = String::from("{\"message\":");
        push_json_string(&mut body, &format!("API rate limit exceeded for '{name}'"));
        body.push('}');
        Some(Named {
            name: name.to_string(),
            limit_values: limits.iter().map(|&l| number(l)).collect(),
            upstream_remaining: header(format!("x-ratelimit-remaining-{name}"))?,
            limit_headers: per_period("x-ratelimit-limit")?,
            remaining_headers: per_period("x-ratelimit-remaining")?,
            violation_body: Bytes::from(body),
            periods,
            limits,
        })
    }
}

/// Where the counters live: a local store per named limit, or Redis.
enum Store {
    Local(Vec<Arc<Local>>),
    Redis(Arc<RedisLink>),
}

pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// The upstream's response header with the increments (`x-kong-limit`).
    header: HeaderName,
    limit_by: LimitBy,
    block_on_first_violation: bool,
    hide_client_headers: bool,
    fault_tolerant: bool,
    scope: String,
    limits: Vec<Named>,
    store: Store,
    last_warning: OncePerSecond,
}

/// What access found, for the response head and the log (Kong's `kong.ctx.plugin`).
#[derive(Clone)]
struct Usage {
    id: Owned,
    now: i64,
    /// Per named limit, per configured period: the limit minus the count.
    remaining: Vec<Vec<f64>>,
    /// Per named limit: what the upstream's header asked to count.
    increments: Vec<Option<f64>>,
    stop: bool,
}

/// The identifier, owned for the phases after access.
#[derive(Clone)]
enum Owned {
    Ip(std::net::IpAddr),
    Text(String),
}

impl Owned {
    fn ident(&self) -> Ident<'_> {
        match self {
            Owned::Ip(ip) => Ident::Ip(*ip),
            Owned::Text(t) => Ident::Text(t),
        }
    }
}

impl Inner {
    /// Kong's `get_identifier` for this plugin: consumer (or credential), credential, else
    /// the client's address.
    fn identifier(&self, ctx: &Ctx<'_>) -> Owned {
        let text = match self.limit_by {
            LimitBy::Ip => None,
            LimitBy::Consumer => ctx
                .consumer
                .as_ref()
                .map(|c| &*c.id)
                .or(ctx.credential.as_ref().map(|c| &*c.id)),
            LimitBy::Credential => ctx.credential.as_ref().map(|c| &*c.id),
        };
        text.map_or(Owned::Ip(ctx.client.ip()), |t| Owned::Text(t.to_string()))
    }

    fn keys(&self, id: Ident<'_>, named: &Named, now: i64) -> (Vec<String>, Vec<i64>) {
        let starts = window_starts(now);
        named
            .periods
            .iter()
            .map(|&p| {
                let key = format!(
                    "response-ratelimit:{}:{id}:{}:{}:{}",
                    self.scope,
                    starts[p] * 1000,
                    named.name,
                    PERIODS[p]
                );
                (key, EXPIRATION[p])
            })
            .unzip()
    }

    /// Kong's access once the counts are known: block on the first violation if asked, and
    /// tell the upstream what remains of each limit.
    fn after_usage(
        &self,
        ctx: &mut Ctx<'_>,
        req: &mut Request<'_>,
        id: Owned,
        now: i64,
        counts: &[f64],
    ) -> Flow {
        let mut remaining = Vec::with_capacity(self.limits.len());
        let mut at = 0;
        for named in &self.limits {
            let left: Vec<f64> = named
                .limits
                .iter()
                .zip(&counts[at..])
                .map(|(l, c)| l - c)
                .collect();
            at += named.limits.len();
            if self.block_on_first_violation && left.contains(&0.0) {
                return Flow::Respond(respond::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    named.violation_body.clone(),
                ));
            }
            let least = left.iter().copied().fold(f64::INFINITY, f64::min);
            req.headers_mut()
                .insert(named.upstream_remaining.clone(), number(least));
            remaining.push(left);
        }
        ctx.extensions.insert(Usage {
            id,
            now,
            increments: vec![None; self.limits.len()],
            remaining,
            stop: false,
        });
        Flow::Continue
    }

    fn redis_failed(&self, ctx: &Ctx<'_>, err: &RedisFailure, now: i64) -> Flow {
        let log = self.last_warning.due(now);
        if log {
            tracing::warn!(error = %err, fault_tolerant = self.fault_tolerant, "response-ratelimiting: failed to get usage");
        }
        if self.fault_tolerant {
            return Flow::Continue;
        }
        Flow::Respond(respond::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An unexpected error occurred",
            ctx.request_id.as_str(),
        ))
    }

    /// Kong's `parse_header`: `name=n` pairs separated by commas, for configured names.
    fn increments(&self, headers: &http::HeaderMap) -> Vec<Option<f64>> {
        let mut out = vec![None; self.limits.len()];
        for v in headers.get_all(&self.header) {
            let Ok(v) = v.to_str() else { continue };
            for part in v.split(',') {
                let mut kv = part.splitn(3, '=');
                let (Some(k), Some(n), None) = (kv.next(), kv.next(), kv.next()) else {
                    continue;
                };
                if let Some(i) = self.limits.iter().position(|l| l.name == k.trim()) {
                    out[i] = n.trim().parse::<f64>().ok();
                }
            }
        }
        out
    }
}

impl Plugin for Limiter {
    fn name(&self) -> &str {
        ResponseRatelimiting::NAME
    }

    fn priority(&self) -> i32 {
        ResponseRatelimiting::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS | Phases::RESPONSE_HEAD | Phases::RESPONSE_BODY | Phases::LOG
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let inner = &self.inner;
        let now = unix_now();
        let id = inner.identifier(ctx);
        match &inner.store {
            Store::Local(stores) => {
                let starts = window_starts(now);
                let mut counts = Vec::new();
                for (named, store) in inner.limits.iter().zip(stores) {
                    let mut usage = [0.0; 6];
                    let usage = &mut usage[..named.periods.len()];
                    store.usage(id.ident(), &named.periods, &starts, now, usage);
                    counts.extend_from_slice(usage);
                }
                inner.after_usage(ctx, req, id, now, &counts)
            }
            Store::Redis(link) => {
                let keys: Vec<String> = inner
                    .limits
                    .iter()
                    .flat_map(|n| inner.keys(id.ident(), n, now).0)
                    .collect();
                let link = link.clone();
                let then = inner.clone();
                Flow::wait(
                    async move { link.read(&keys).await },
                    move |read, ctx, req| match read {
                        Ok(counts) => {
                            let counts: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
                            then.after_usage(ctx, req, id, now, &counts)
                        }
                        Err(err) => then.redis_failed(ctx, &err, now),
                    },
                )
            }
        }
    }

    /// Kong's `header_filter`: the counts minus what this response uses, and 429 (no body)
    /// when a limit already reached is used again.
    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        let inner = &self.inner;
        let Some(usage) = ctx.extensions.get_mut::<Usage>() else {
            resp.headers_mut().remove(&inner.header);
            return;
        };
        let increments = inner.increments(resp.headers());
        let mut stop = false;
        for ((named, left), inc) in inner.limits.iter().zip(&usage.remaining).zip(&increments) {
            for (i, &l) in left.iter().enumerate() {
                if !inner.hide_client_headers {
                    let h = resp.headers_mut();
                    h.insert(
                        named.limit_headers[i].clone(),
                        named.limit_values[i].clone(),
                    );
                    let after = (l - inc.unwrap_or(0.0)).max(0.0);
                    h.insert(named.remaining_headers[i].clone(), number(after));
                }
                stop |= inc.is_some_and(|n| n > 0.0) && l <= 0.0;
            }
        }
        resp.headers_mut().remove(&inner.header);
        if stop {
            resp.status = StatusCode::TOO_MANY_REQUESTS;
            resp.headers_mut().remove(header::TRANSFER_ENCODING);
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        }
        usage.increments = increments;
        usage.stop = stop;
    }

    /// Kong's `kong.response.exit(429)` from the header filter: no body.
    fn response_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        if ctx.extensions.get::<Usage>().is_some_and(|u| u.stop) {
            chunk.data = Bytes::new();
        }
        BodyFlow::Continue
    }

    /// Kong's log phase: count what the upstream's header asked for, unless refused.
    fn log(&self, ctx: &Ctx<'_>, _entry: &LogEntry) {
        let Some(usage) = ctx.extensions.get::<Usage>() else {
            return;
        };
        if usage.stop {
            return;
        }
        let inner = &self.inner;
        let starts = window_starts(usage.now);
        for (i, named) in inner.limits.iter().enumerate() {
            let Some(n) = usage
                .increments
                .get(i)
                .copied()
                .flatten()
                .filter(|n| *n > 0.0)
            else {
                continue;
            };
            match &inner.store {
                Store::Local(stores) => {
                    stores[i].add(
                        usage.id.ident(),
                        &named.periods,
                        &starts,
                        usage.now,
                        n as u64,
                    );
                }
                Store::Redis(link) => {
                    let (keys, expiries) = inner.keys(usage.id.ident(), named, usage.now);
                    let link = link.clone();
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            if let Err(err) = link.add(&keys, &expiries, n as i64).await {
                                tracing::warn!(error = %err, "response-ratelimiting: failed to increment");
                            }
                        });
                    }
                }
            }
        }
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
        let c: Config = parse("limits: {video: {minute: 10}}").unwrap();
        assert_eq!(c.header_name, "x-kong-limit");
        assert_eq!(c.limit_by, LimitBy::Consumer);
        assert_eq!(c.policy, Policy::Local);
        assert!(c.fault_tolerant);
        assert!(!c.block_on_first_violation && !c.hide_client_headers);
        assert_eq!(c.redis, Redis::default());
        assert_eq!(c.limits["video"].minute, Some(10.0));
        assert_eq!(errors("{}"), [": missing field `limits`"]);
    }

    #[test]
    fn most_fields() {
        let c: Config = parse(
            "header_name: x-usage\nlimit_by: ip\npolicy: redis\nfault_tolerant: false\n\
             block_on_first_violation: true\nhide_client_headers: true\n\
             redis: {host: redis, port: 6380, timeout: 100, database: 1, ssl: true}\n\
             limits:\n  video: {second: 1, minute: 10, hour: 100, day: 1000, month: 10000, year: 100000}\n  \
             image: {minute: 5}\n",
        )
        .unwrap();
        assert_eq!(c.limit_by, LimitBy::Ip);
        assert_eq!(c.effective_redis().port, 6380);
        assert_eq!(c.limits.keys().collect::<Vec<_>>(), ["video", "image"]);
        assert_eq!(
            errors("policy: cluster\nlimits: {a: {day: 1}}"),
            [format!("policy: {CLUSTER_NEEDS_DATABASE}")]
        );
    }

    #[test]
    fn rules() {
        assert_eq!(errors("limits: {}"), ["limits: length must be at least 1"]);
        assert_eq!(
            errors("limits: {video: {}}"),
            [
                "limits.video: at least one of these fields must be non-empty: 'second', 'minute', 'hour', 'day', 'month', 'year'"
            ]
        );
        assert_eq!(
            errors("limits: {video: {minute: -2}}"),
            ["limits.video.minute: value must be greater than 0"]
        );
        assert_eq!(
            errors("limits: {video: {minute: 10, hour: 5}}"),
            [
                "limits.video.hour: the limit for hour(5.0) cannot be lower than the limit for minute(10.0)"
            ]
        );
        assert_eq!(
            errors("limits: {video: {minute: 1}}\npolicy: redis"),
            ["redis.host: required field missing (policy is redis)"]
        );
        assert_eq!(
            errors("limits: {video: {minute: 1}}\nlimit_by: service"),
            ["limit_by: `service` is not one of: consumer, credential, ip"]
        );
    }

    #[test]
    fn unknown_field() {
        let errs = errors("limits: {video: {minutes: 1}}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("limits.video.minutes: unknown field `minutes`")),
            "{errs:?}"
        );
        let errs = errors("limits: {video: {minute: 1}}\nheader: x");
        assert!(
            errs[0].starts_with("header: unknown field `header`"),
            "{errs:?}"
        );
    }

    #[test]
    fn shorthands() {
        let c: Config = parse(
            "limits: {video: {minute: 1}}\npolicy: redis\nredis_host: redis\nredis_port: 6380\n\
             redis_timeout: 50\nredis_database: 2\nredis_password: null\nredis_ssl: false\n\
             redis_ssl_verify: false\nredis_server_name: null\nredis_username: null",
        )
        .unwrap();
        let r = c.effective_redis();
        assert_eq!(r.host.as_deref(), Some("redis"));
        assert_eq!((r.port, r.timeout, r.database), (6380, 50, 2));
    }
}
