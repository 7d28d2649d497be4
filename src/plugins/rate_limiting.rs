//! `rate-limiting` (PRIORITY 910, access): limits how many requests a client can make per
//! second, minute, hour, day, month or year, counted per consumer, credential, IP, service,
//! header or path, locally or in Redis, and answers 429 (or the configured code and message)
//! past the limit (`kong/plugins/rate-limiting/handler.lua`).
//!
//! Local counters are this process's, shared by every worker and kept across reloads
//! (`ratelimit::Local`); Redis counters are shared by every replica, counted and read in one
//! round trip (`ratelimit::RedisLink`). `cluster` needs a database and is refused, as Kong
//! refuses it in DB-less mode. `sync_rate` is accepted; counting stays real-time (exact).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::ratelimit::{
    EXPIRATION, Ident, Local, OncePerSecond, RedisFailure, RedisLink, RedisTarget, window_starts,
};
use super::schema::defaults::yes;
use super::schema::redis::{Redis, RedisShorthands, redis_shorthands};
use super::schema::typedefs::check_path;
use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond::{self, push_json_string};

/// The plugin's `config` (Kong's `kong/plugins/rate-limiting/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub second: Option<f64>,
    pub minute: Option<f64>,
    pub hour: Option<f64>,
    pub day: Option<f64>,
    pub month: Option<f64>,
    pub year: Option<f64>,
    #[serde(default)]
    pub limit_by: LimitBy,
    pub header_name: Option<String>,
    pub path: Option<String>,
    /// Kong offers `cluster` only with a database: DB-less Kong's schema refuses it, and so
    /// does `validate`.
    #[serde(default)]
    pub policy: Policy,
    #[serde(default = "yes")]
    pub fault_tolerant: bool,
    #[serde(default)]
    pub redis: Redis,
    #[serde(default)]
    pub hide_client_headers: bool,
    #[serde(default = "default_error_code")]
    pub error_code: f64,
    #[serde(default = "default_error_message")]
    pub error_message: String,
    #[serde(default = "default_sync_rate")]
    pub sync_rate: f64,

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

/// What the limits are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    #[default]
    Consumer,
    Credential,
    Ip,
    Service,
    Header,
    Path,
}

/// Where the counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Local,
    Cluster,
    Redis,
}

fn default_error_code() -> f64 {
    429.0
}

fn default_error_message() -> String {
    "API rate limit exceeded".to_string()
}

/// Kong's `SYNC_RATE_REALTIME`.
const SYNC_RATE_REALTIME: f64 = -1.0;

fn default_sync_rate() -> f64 {
    SYNC_RATE_REALTIME
}

/// The periods, shortest first (Kong's `ORDERED_PERIODS`).
pub const PERIODS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

impl Config {
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
        let periods = self.periods();
        let mut periods_valid = true;
        for (name, v) in periods {
            if let Some(v) = v {
                periods_valid &= v > 0.0;
                c.greater_than(name, v, 0.0);
            }
        }
        c.at_least_one_of(&periods.map(|(name, v)| (name, v.is_some())));
        c.greater_than("error_code", self.error_code, 0.0);
        if let Some(h) = &self.header_name {
            c.header_name("header_name", h);
        }
        if let Some(p) = &self.path {
            check_path(c, "path", p);
        }
        let redis = self.redis.check_with_shorthands(&self.shorthands(), c);

        // Kong's `validate_periods_order` (the record's custom validator: its first problem,
        // once the fields themselves are valid).
        if periods_valid {
            if let Some((field, message)) = periods_order(&periods, "The") {
                c.error(field, message);
            } else if self.policy != Policy::Redis && self.sync_rate != SYNC_RATE_REALTIME {
                c.error(
                    "sync_rate",
                    "sync_rate can only be used with the redis policy",
                );
            } else if self.policy == Policy::Redis
                && self.sync_rate != SYNC_RATE_REALTIME
                && self.sync_rate < 0.02
            {
                c.error(
                    "sync_rate",
                    "sync_rate must be greater than 0.02, or -1 to disable",
                );
            }
        }

        if self.policy == Policy::Cluster {
            c.error("policy", CLUSTER_NEEDS_DATABASE);
        }

        // The entity checks. `redis.port` and `redis.timeout` are required with the redis
        // policy too, but they have defaults (and `null` leaves them at it), so are always set.
        let is_redis = self.policy == Policy::Redis;
        c.required_if(
            "redis.host",
            redis.host.is_some(),
            is_redis,
            "policy is redis",
        );
        c.required_if(
            "header_name",
            self.header_name.is_some(),
            self.limit_by == LimitBy::Header,
            "limit_by is header",
        );
        c.required_if(
            "path",
            self.path.is_some(),
            self.limit_by == LimitBy::Path,
            "limit_by is path",
        );
    }
}

/// Kong's `validate_periods_order`: a longer period may not have a lower limit than a
/// shorter one. The first offending pair, on the longer period's field. `the` is how the
/// plugin's message starts (`The` here, `the` in response-ratelimiting).
pub(super) fn periods_order(
    periods: &[(&'static str, Option<f64>); 6],
    the: &str,
) -> Option<(&'static str, String)> {
    for (i, (lower, v1)) in periods.iter().enumerate() {
        let Some(v1) = v1 else { continue };
        for (upper, v2) in &periods[i + 1..] {
            if let Some(v2) = v2
                && v2 < v1
            {
                return Some((
                    upper,
                    format!(
                        "{the} limit for {upper}({v2:.1}) cannot be lower than the limit for {lower}({v1:.1})"
                    ),
                ));
            }
        }
    }
    None
}

/// `rate-limiting` (PRIORITY 910).
pub struct RateLimiting;

impl PluginSpec for RateLimiting {
    const NAME: &'static str = "rate-limiting";
    const PRIORITY: i32 = 910;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        // Kong's counter keys: the plugin's own route and service (all zeros when unset), so
        // that a service-wide or global plugin counts across its routes.
        let route = cx.route.map_or(EMPTY_UUID, |r| &*r.id);
        let service = cx.service.map_or(EMPTY_UUID, |s| &*s.id);
        let scope = format!("{route}:{service}");
        let store = match config.policy {
            // Refused by the schema's check already; kept so that the match is whole.
            Policy::Cluster => return Err(CLUSTER_NEEDS_DATABASE.to_string()),
            Policy::Local => {
                Store::Local(cx.state.kept::<Local>(&format!("rate-limiting:{scope}")))
            }
            Policy::Redis => {
                let redis = config.effective_redis();
                let Some(target) = redis_target(&redis) else {
                    // TLS with a server name other than the host: the client cannot send
                    // that SNI, so the route stays closed rather than unlimited.
                    return Ok(None);
                };
                let link = cx.state.kept::<RedisLink>(&target.key());
                link.configure(target);
                Store::Redis(link)
            }
        };
        Ok(Some(Arc::new(Limiter {
            inner: Arc::new(Inner::new(&config, scope, store)),
        })))
    }
}

/// Kong's `EMPTY_UUID`: the route or service of a plugin scoped to neither.
pub(super) const EMPTY_UUID: &str = "00000000-0000-0000-0000-000000000000";

pub(super) const CLUSTER_NEEDS_DATABASE: &str = "`cluster` is not one of: local, redis (the cluster policy keeps its counters in a database; Kong refuses it in DB-less mode)";

/// The connection settings of `redis`, or `None` when they cannot be honoured.
pub(super) fn redis_target(r: &Redis) -> Option<RedisTarget> {
    let host = r.host.clone()?;
    if r.ssl && r.server_name.as_ref().is_some_and(|sni| *sni != host) {
        return None;
    }
    Some(RedisTarget {
        host,
        port: u16::try_from(r.port).ok()?,
        username: r.username.clone(),
        password: r.password.clone(),
        database: r.database,
        ssl: r.ssl,
        ssl_verify: r.ssl_verify,
        timeout: Duration::from_millis(u64::try_from(r.timeout).unwrap_or(0).max(1)),
    })
}

/// Where one plugin's counters live.
enum Store {
    Local(Arc<Local>),
    Redis(Arc<RedisLink>),
}

static X_LIMIT: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-limit-second"),
    HeaderName::from_static("x-ratelimit-limit-minute"),
    HeaderName::from_static("x-ratelimit-limit-hour"),
    HeaderName::from_static("x-ratelimit-limit-day"),
    HeaderName::from_static("x-ratelimit-limit-month"),
    HeaderName::from_static("x-ratelimit-limit-year"),
];
static X_REMAINING: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-remaining-second"),
    HeaderName::from_static("x-ratelimit-remaining-minute"),
    HeaderName::from_static("x-ratelimit-remaining-hour"),
    HeaderName::from_static("x-ratelimit-remaining-day"),
    HeaderName::from_static("x-ratelimit-remaining-month"),
    HeaderName::from_static("x-ratelimit-remaining-year"),
];
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The served plugin; its state is shared with the continuation of a Redis count.
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// The configured periods (indexes into `PERIODS`), shortest first, with their limits
    /// and the limits as header values.
    periods: Vec<usize>,
    limits: Vec<f64>,
    limit_values: Vec<HeaderValue>,
    limit_by: LimitBy,
    header: Option<HeaderName>,
    path: Option<String>,
    hide_client_headers: bool,
    fault_tolerant: bool,
    status: StatusCode,
    /// Kong's `{"message": error_message}`, serialised once.
    error_body: Bytes,
    /// `<route id>:<service id>`, in the Redis keys.
    scope: String,
    store: Store,
    /// The Unix second of the last warning about Redis (at most one a second).
    last_warning: OncePerSecond,
}

/// Kong's answer when a hook fails without fault tolerance.
const UNEXPECTED: &str = "An unexpected error occurred";

impl Inner {
    fn new(config: &Config, scope: String, store: Store) -> Inner {
        let (periods, limits): (Vec<usize>, Vec<f64>) = config
            .periods()
            .iter()
            .enumerate()
            .filter_map(|(i, (_, limit))| limit.map(|l| (i, l)))
            .unzip();
        let mut body = String::from("{\"message\":");
        push_json_string(&mut body, &config.error_message);
        body.push('}');
        Inner {
            limit_values: limits.iter().map(|&l| number(l)).collect(),
            periods,
            limits,
            limit_by: config.limit_by,
            header: config
                .header_name
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            path: config.path.clone(),
            hide_client_headers: config.hide_client_headers,
            fault_tolerant: config.fault_tolerant,
            status: StatusCode::from_u16(config.error_code as u16)
                .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            error_body: Bytes::from(body),
            scope,
            store,
            last_warning: OncePerSecond::default(),
        }
    }

    /// Kong's `get_identifier`: what the limit is counted by, falling back to the client's
    /// address when the request has no such thing.
    fn identifier<'a>(&self, ctx: &'a Ctx<'_>, req: &'a Request<'_>) -> Ident<'a> {
        let text = match self.limit_by {
            LimitBy::Ip => None,
            LimitBy::Service => ctx.service.map(|s| &*s.id),
            LimitBy::Consumer => ctx
                .consumer
                .as_ref()
                .map(|c| &*c.id)
                .or(ctx.credential.as_ref().map(|c| &*c.id)),
            LimitBy::Credential => ctx.credential.as_ref().map(|c| &*c.id),
            LimitBy::Header => self
                .header
                .as_ref()
                .and_then(|h| req.headers().get(h))
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()),
            LimitBy::Path => {
                let path = req.path();
                (self.path.as_deref() == Some(path)).then_some(path)
            }
        };
        text.map_or(Ident::Ip(ctx.client.ip()), Ident::Text)
    }

    /// Some period's limit is reached by `usage` (Kong's `stop`).
    fn stops(&self, usage: &[f64]) -> bool {
        self.limits.iter().zip(usage).any(|(l, u)| l - u <= 0.0)
    }

    /// Kong's access after `get_usage`: the counters' headers (the most restrictive period
    /// in `RateLimit-*`) and, past a limit, the error with `Retry-After`.
    fn verdict(&self, ctx: &mut Ctx<'_>, usage: &[f64], now: i64) -> Flow {
        let stop = self.stops(usage);
        if !self.hide_client_headers {
            let starts = window_starts(now);
            // (remaining, window, limit, reset) of the most restrictive period so far.
            let mut best: Option<(f64, i64, usize, i64)> = None;
            for (i, (&p, &used)) in self.periods.iter().zip(usage).enumerate() {
                let left = self.limits[i] - used;
                // This request counts, unless it is refused.
                let left = if stop { left } else { left - 1.0 }.max(0.0);
                let window = EXPIRATION[p];
                if best.is_none_or(|(r, w, ..)| left < r || (left == r && window > w)) {
                    let reset = (window - (now - starts[p])).max(1);
                    best = Some((left, window, i, reset));
                }
                let h = &mut ctx.response_headers;
                h.push((X_LIMIT[p].clone(), self.limit_values[i].clone()));
                h.push((X_REMAINING[p].clone(), number(left)));
            }
            if let Some((left, _, i, reset)) = best {
                let h = &mut ctx.response_headers;
                h.push((RATELIMIT_LIMIT.clone(), self.limit_values[i].clone()));
                h.push((RATELIMIT_REMAINING.clone(), number(left)));
                h.push((RATELIMIT_RESET.clone(), HeaderValue::from(reset)));
                if stop {
                    h.push((header::RETRY_AFTER, HeaderValue::from(reset)));
                }
            }
        }
        if stop {
            return Flow::Respond(respond::json(self.status, self.error_body.clone()));
        }
        Flow::Continue
    }

    /// Redis gave no counts: with fault tolerance the request passes uncounted and without
    /// headers (a warning at most once a second), else Kong's 500.
    fn redis_failed(&self, ctx: &Ctx<'_>, err: &RedisFailure, now: i64) -> Flow {
        let log = self.last_warning.due(now);
        if !self.fault_tolerant {
            if log {
                tracing::error!(error = %err, "rate-limiting: failed to get usage; requests fail (fault_tolerant is off)");
            }
            return Flow::Respond(respond::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                UNEXPECTED,
                ctx.request_id.as_str(),
            ));
        }
        if log {
            tracing::warn!(error = %err, "rate-limiting: failed to get usage; requests pass (fault_tolerant)");
        }
        Flow::Continue
    }

    /// Kong's Redis keys: `ratelimit:<route>:<service>:<identifier>:<window ms>:<period>`.
    fn redis_keys(&self, id: Ident<'_>, now: i64) -> (Vec<String>, Vec<i64>) {
        let starts = window_starts(now);
        self.periods
            .iter()
            .map(|&p| {
                let key = format!(
                    "ratelimit:{}:{id}:{}:{}",
                    self.scope,
                    starts[p] * 1000,
                    PERIODS[p]
                );
                (key, EXPIRATION[p])
            })
            .unzip()
    }
}

/// A count as Lua's `tostring` writes it: no decimals when whole.
pub(super) fn number(v: f64) -> HeaderValue {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        HeaderValue::from(v as i64)
    } else {
        HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("0"))
    }
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Plugin for Limiter {
    fn name(&self) -> &str {
        RateLimiting::NAME
    }

    fn priority(&self) -> i32 {
        RateLimiting::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let inner = &self.inner;
        let now = unix_now();
        let id = inner.identifier(ctx, req);
        match &inner.store {
            Store::Local(local) => {
                let starts = window_starts(now);
                let mut usage = [0.0; 6];
                let usage = &mut usage[..inner.periods.len()];
                local.usage(id, &inner.periods, &starts, now, usage);
                // Kong counts a request once it is let through; a refused one is not counted.
                if !inner.stops(usage) {
                    local.increment(id, &inner.periods, &starts, now);
                }
                inner.verdict(ctx, usage, now)
            }
            Store::Redis(link) => {
                let (keys, expiries) = inner.redis_keys(id, now);
                let link = link.clone();
                let then = self.inner.clone();
                Flow::wait(
                    async move { link.count(&keys, &expiries).await },
                    move |counted, ctx, _req| match counted {
                        Ok(counts) => {
                            let usage: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
                            then.verdict(ctx, &usage, now)
                        }
                        Err(err) => then.redis_failed(ctx, &err, now),
                    },
                )
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

    fn has(errs: &[String], want: &str) -> bool {
        errs.iter().any(|e| e == want)
    }

    #[test]
    fn defaults() {
        let c: Config = parse("minute: 5").unwrap();
        assert_eq!(c.minute, Some(5.0));
        assert_eq!(c.second, None);
        assert_eq!(c.limit_by, LimitBy::Consumer);
        assert_eq!(c.policy, Policy::Local);
        assert!(c.fault_tolerant);
        assert!(!c.hide_client_headers);
        assert_eq!(c.error_code, 429.0);
        assert_eq!(c.error_message, "API rate limit exceeded");
        assert_eq!(c.sync_rate, -1.0);
        assert_eq!(c.redis, Redis::default());
        assert_eq!(
            (c.redis.port, c.redis.timeout, c.redis.database),
            (6379, 2000, 0)
        );
        assert!(!c.redis.ssl && !c.redis.ssl_verify);
    }

    #[test]
    fn most_fields() {
        let c: Config = parse(
            "second: 5\nminute: 100\nhour: 1000\nday: 10000\nmonth: 100000\nyear: 1000000\n\
             limit_by: header\nheader_name: X-Tenant\npath: /api/v1\npolicy: redis\n\
             fault_tolerant: false\nhide_client_headers: true\nerror_code: 503\n\
             error_message: slow down\nsync_rate: 0.5\n\
             redis:\n  host: redis.internal\n  port: 6380\n  timeout: 500\n  username: u\n  \
             password: p\n  database: 2\n  ssl: true\n  ssl_verify: true\n  server_name: redis.example.com\n",
        )
        .unwrap();
        assert_eq!(c.limit_by, LimitBy::Header);
        assert_eq!(c.policy, Policy::Redis);
        assert_eq!(c.redis.host.as_deref(), Some("redis.internal"));
        assert_eq!(c.redis.port, 6380);
        assert_eq!(c.sync_rate, 0.5);
        assert_eq!(c.error_code, 503.0);
        // Kong's `cluster` needs a database: DB-less Kong's schema refuses it.
        assert_eq!(
            errors("minute: 1\npolicy: cluster"),
            [format!("policy: {CLUSTER_NEEDS_DATABASE}")]
        );
    }

    #[test]
    fn at_least_one_limit() {
        let errs = errors("policy: local");
        assert_eq!(
            errs,
            [
                ": at least one of these fields must be non-empty: 'config.second', 'config.minute', \
                 'config.hour', 'config.day', 'config.month', 'config.year'"
            ]
        );
    }

    #[test]
    fn limits_are_positive() {
        let errs = errors("minute: -1");
        assert_eq!(errs, ["minute: value must be greater than 0"]);
        let errs = errors("second: 0\nhour: 0.5\nerror_code: 0");
        assert!(
            has(&errs, "second: value must be greater than 0"),
            "{errs:?}"
        );
        assert!(
            has(&errs, "error_code: value must be greater than 0"),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        let errs = errors("minute: lots");
        assert!(errs[0].starts_with("minute: expected a number"), "{errs:?}");
    }

    #[test]
    fn periods_in_order() {
        assert_eq!(
            errors("minute: 10\nhour: 5"),
            ["hour: The limit for hour(5.0) cannot be lower than the limit for minute(10.0)"]
        );
        assert_eq!(
            errors("second: 10\nminute: 20\nyear: 15"),
            ["year: The limit for year(15.0) cannot be lower than the limit for minute(20.0)"]
        );
        assert!(parse::<Config>("second: 1\nminute: 1\nhour: 60").is_ok());
    }

    #[test]
    fn sync_rate() {
        assert_eq!(
            errors("minute: 1\nsync_rate: 1"),
            ["sync_rate: sync_rate can only be used with the redis policy"]
        );
        assert_eq!(
            errors("minute: 1\nsync_rate: 0.01\npolicy: redis\nredis: {host: r}"),
            ["sync_rate: sync_rate must be greater than 0.02, or -1 to disable"]
        );
        assert!(
            parse::<Config>("minute: 1\nsync_rate: 0.02\npolicy: redis\nredis: {host: r}").is_ok()
        );
    }

    #[test]
    fn enums_and_conditionals() {
        let errs = errors("minute: 1\nlimit_by: tenant\npolicy: memory");
        assert!(
            has(
                &errs,
                "limit_by: `tenant` is not one of: consumer, credential, ip, service, header, path"
            ),
            "{errs:?}"
        );
        assert_eq!(
            errors("minute: 1\npolicy: memory"),
            ["policy: `memory` is not one of: local, cluster, redis"]
        );
        assert_eq!(
            errors("minute: 1\npolicy: redis"),
            ["redis.host: required field missing (policy is redis)"]
        );
        assert_eq!(
            errors("minute: 1\nlimit_by: header"),
            ["header_name: required field missing (limit_by is header)"]
        );
        assert_eq!(
            errors("minute: 1\nlimit_by: path"),
            ["path: required field missing (limit_by is path)"]
        );
    }

    #[test]
    fn typedefs() {
        assert_eq!(
            errors("minute: 1\nheader_name: 'x tenant'"),
            [
                "header_name: bad header name 'x tenant', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
            ]
        );
        assert_eq!(
            errors("minute: 1\nheader_name: ''"),
            ["header_name: length must be at least 1"]
        );
        assert_eq!(
            errors("minute: 1\npath: api"),
            ["path: should start with: /"]
        );
        assert_eq!(
            errors("minute: 1\npath: /a//b"),
            ["path: must not have empty segments"]
        );
        assert_eq!(
            errors("minute: 1\npath: '/a b'"),
            [
                "path: invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"
            ]
        );
        assert_eq!(
            errors("minute: 1\npath: /a%2"),
            ["path: invalid url-encoded value: '%2'"]
        );
        assert!(parse::<Config>("minute: 1\npath: /a%2Fb/~c").is_ok());
        assert_eq!(
            errors(
                "minute: 1\nredis: {host: 'redis:6379', port: 70000, timeout: -1, server_name: 10.0.0.1}"
            ),
            [
                "redis.host: must not have a port",
                "redis.port: value should be between 0 and 65535",
                "redis.timeout: value should be between 0 and 2147483646",
                "redis.server_name: must not be an IP",
            ]
        );
        assert_eq!(
            errors("minute: 1\nredis: {host: 'bad host'}"),
            ["redis.host: invalid value: bad host"]
        );
        for ok in [
            "redis",
            "10.0.0.1",
            "::1",
            "[::1]",
            "redis-0.redis.svc.cluster.local.",
        ] {
            let yaml = format!("minute: 1\nredis: {{host: '{ok}'}}");
            assert!(parse::<Config>(&yaml).is_ok(), "{ok}");
        }
    }

    #[test]
    fn unknown_field() {
        let errs = errors("minute: 1\nminutes: 2");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("minutes: unknown field `minutes`"),
            "{errs:?}"
        );
        assert!(errs[0].contains("did you mean `minute`"), "{errs:?}");
        let errs = errors("minute: 1\nredis: {hots: r}");
        assert!(errs[0].starts_with("redis.hots: unknown field"), "{errs:?}");
    }

    #[test]
    fn shorthands() {
        let c: Config = parse(
            "minute: 1\npolicy: redis\nredis_host: redis\nredis_port: 6380\nredis_password: pw\n\
             redis_username: u\nredis_ssl: true\nredis_ssl_verify: true\n\
             redis_server_name: redis.example.com\nredis_timeout: 100\nredis_database: 3",
        )
        .unwrap();
        let r = c.effective_redis();
        assert_eq!(r.host.as_deref(), Some("redis"));
        assert_eq!((r.port, r.timeout, r.database), (6380, 100, 3));
        assert_eq!(r.password.as_deref(), Some("pw"));
        assert_eq!(r.username.as_deref(), Some("u"));
        assert!(r.ssl && r.ssl_verify);
        assert_eq!(r.server_name.as_deref(), Some("redis.example.com"));

        // The nested field wins where set; the same value twice is fine, two differ is not.
        let c: Config =
            parse("minute: 1\nredis_port: 6379\nredis_host: a\nredis: {host: a, port: 6379}")
                .unwrap();
        assert_eq!(c.effective_redis().host.as_deref(), Some("a"));
        let errs = errors("minute: 1\nredis_host: a\nredis_port: 1\nredis: {host: b, port: 2}");
        assert_eq!(
            errs,
            [
                "redis_host: both deprecated and new field are used but their values mismatch: redis_host = a vs redis.host = b",
                "redis_port: both deprecated and new field are used but their values mismatch: redis_port = 1 vs redis.port = 2",
            ]
        );
        // A shorthand's value is checked where it is written.
        assert_eq!(
            errors("minute: 1\nredis_port: 99999"),
            ["redis_port: value should be between 0 and 65535"]
        );
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "minute: 100\nhour: 10000\npolicy: local",
            "second: 50\nminute: 1200\nhour: 50000\npolicy: local",
            "minute: 60\npolicy: local\nfault_tolerant: true",
            "second: 50\nminute: 2000\npolicy: redis\nredis_host: redis\nredis_port: 6379",
            // A decK dump: every unset field spelled `null`, the flat redis fields of Kong < 3.6.
            "day: null\nfault_tolerant: true\nheader_name: null\nhide_client_headers: false\n\
             hour: null\nlimit_by: consumer\nminute: 30\nmonth: null\npath: null\npolicy: local\n\
             redis_database: 0\nredis_host: null\nredis_password: null\nredis_port: 6379\n\
             redis_server_name: null\nredis_ssl: false\nredis_ssl_verify: false\nredis_timeout: 2000\n\
             redis_username: null\nsecond: null\nyear: null",
            "hour: 10000\nsecond: 10\nminute: null\nredis_port: 6379\nredis_timeout: 2000",
            "minute: 2\nhide_client_headers: true",
            "minute: 2\nlimit_by: header\nheader_name: X-Tenant",
            "minute: 2\nhour: 5",
            "hour: 1\nerror_code: 404\nerror_message: Fake Not Found",
            "minute: 2\npolicy: redis\nredis:\n  host: 127.0.0.1\n  port: 6380",
            "minute: 1\nlimit_by: path\npath: /rl/a",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
