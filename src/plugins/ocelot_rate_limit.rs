//! Ocelot `RateLimitOptions` (access), as Ocelot 24.1+ counts:
//! - the client is the value of `ClientIdHeader` (default `Oc-Client`); a request without it
//!   gets 503 `Rate limiting client could not be identified ...` with `Retry-After: -1`;
//!   clients in `ClientWhitelist` pass uncounted;
//! - a fixed window of `Period` per client and route; past `Limit`, requests are refused with
//!   `StatusCode` (429) and the body `QuotaMessage` (`{0}` = Limit, `{1}` = Period) until the
//!   window ends, or for `Wait` after the moment the limit was exceeded;
//! - `Retry-After` (seconds, as a decimal) on refusals, `X-RateLimit-Limit`, `-Remaining` and
//!   `-Reset` (ISO 8601) on allowed responses, unless headers are disabled.
//!
//! Counters live in `Store`, which `snapshot::State` keeps across reloads (keyed by the
//! route's id and rule), so a reload does not hand every client a fresh quota; or, with
//! `GlobalConfiguration.RateLimitOptions.Redis` (switchyard's extension), in Redis, shared by
//! every gateway process: one script call per request (`WINDOW_SCRIPT`) runs the same fixed
//! window and wait on Redis's clock, over the multiplexed connection Kong's rate-limiting
//! uses (`ratelimit::RedisLink`). Redis unreachable: the request passes without rate-limit
//! headers and a warning is logged at most once a second (Kong's `fault_tolerant` default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};

use serde::Deserialize;

use super::ratelimit::{OncePerSecond, RedisLink, RedisTarget, civil_from_days};
use super::{BuildCx, Ctx, Flow, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond;

/// Ocelot 24.1+ rate limiting of one route, legacy names folded in and checked by the Ocelot
/// loader, with the route's UpstreamPathTemplate (named in the unknown-client message).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub client_id_header: String,
    pub client_whitelist: Vec<String>,
    pub enable_headers: bool,
    pub status_code: u16,
    pub quota_message: String,
    pub key_prefix: String,
    pub period: String,
    pub period_ms: u64,
    pub wait: String,
    pub wait_ms: u64,
    pub limit: u64,
    pub template: String,
    #[serde(default)]
    /// Where the counters are shared (switchyard's `GlobalConfiguration.RateLimitOptions.Redis`).
    pub redis: Option<RedisTarget>,
    /// The route's load-balancing key: Ocelot's counter key names it.
    #[serde(default)]
    pub counter_key: String,
}

impl Validate for Config {}

/// `RateLimitOptions` (PRIORITY 1000). Counters are kept across reloads by route, key prefix
/// and rule.
pub struct RateLimitOptions;

impl PluginSpec for RateLimitOptions {
    const NAME: &'static str = "ocelot-rate-limiting";
    const PRIORITY: i32 = 1000;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let route = cx.route.map(|r| &*r.id).unwrap_or_default();
        let key = format!("{route}|{}|{}", config.key_prefix, rule_text(&config));
        let store = cx.state.kept::<Store>(&key);
        let redis = config.redis.clone().map(|target| {
            // One connection per distinct server, shared with Kong's rate-limiting.
            let link = cx.state.kept::<RedisLink>(&target.key());
            link.configure(target);
            link
        });
        RateLimit::new(&config, store, redis)
            .map(|p| Some(Arc::new(p) as Arc<dyn Plugin>))
            .ok_or_else(|| format!("`{}` is not a valid header name", config.client_id_header))
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    started: Instant,
    started_wall: SystemTime,
    exceeded_at: Option<Instant>,
    total: u64,
}

impl Counter {
    fn new(now: Instant, wall: SystemTime) -> Counter {
        Counter {
            started: now,
            started_wall: wall,
            exceeded_at: None,
            total: 1,
        }
    }
}

/// The counters of one route and rule, by client id.
#[derive(Default)]
pub struct Store {
    counters: Mutex<HashMap<String, Counter>>,
}

/// What counting decided for one request.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    total: u64,
    started_wall: SystemTime,
    /// Seconds to wait; set when refused.
    retry_after: Option<f64>,
}

struct Rule {
    limit: u64,
    period: Duration,
    wait: Duration,
}

impl Rule {
    /// `RetryAfter`: seconds until the request may be retried; negative when the windows
    /// have passed and counting starts again.
    fn retry_after(&self, c: &Counter, now: Instant) -> f64 {
        if c.total <= self.limit {
            return 0.0;
        }
        let Some(exceeded) = c.exceeded_at else {
            return 0.0;
        };
        if self.wait.is_zero() && c.started + self.period > now {
            return (c.started + self.period - now).as_secs_f64();
        }
        if exceeded + self.wait > now {
            return (exceeded + self.wait - now).as_secs_f64();
        }
        -1.0
    }
}

impl Store {
    fn process(&self, client: &str, rule: &Rule, now: Instant, wall: SystemTime) -> Verdict {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 4096 {
            let horizon = rule.period + rule.wait + Duration::from_secs(1);
            map.retain(|_, c| {
                now.duration_since(c.started) < horizon
                    || c.exceeded_at
                        .is_some_and(|e| now.duration_since(e) < horizon)
            });
        }
        let mut counter = match map.get(client) {
            None => Counter::new(now, wall),
            Some(prev) => {
                let mut c = *prev;
                c.total += 1;
                if c.total > rule.limit && c.exceeded_at.is_none() {
                    c.exceeded_at = Some(now);
                }
                let in_window = c.started + rule.period >= now;
                let in_wait = c.exceeded_at.is_some_and(|e| e + rule.wait >= now);
                if in_window || in_wait {
                    c
                } else {
                    Counter::new(now, wall)
                }
            }
        };
        if counter.total > rule.limit && rule.retry_after(&counter, now) < 0.0 {
            counter = Counter::new(now, wall);
        }
        map.insert(client.to_string(), counter);
        let retry = rule.retry_after(&counter, now);
        Verdict {
            total: counter.total,
            started_wall: counter.started_wall,
            retry_after: (counter.total > rule.limit).then_some(retry),
        }
    }
}

pub struct RateLimit {
    inner: Arc<Inner>,
}

struct Inner {
    header: HeaderName,
    whitelist: Vec<String>,
    enable_headers: bool,
    status: StatusCode,
    rule: Rule,
    store: Arc<Store>,
    quota_body: Bytes,
    unknown_client_body: Bytes,
    limit_header: HeaderValue,
    redis: Option<Redis>,
}

/// The Redis side of a rule: the link and what names the route's counters.
struct Redis {
    link: Arc<RedisLink>,
    /// `{KeyPrefix}_{ClientId}:{LoadBalancerKey}_{Rule}` is Ocelot's counter id; this is
    /// all of it but the client.
    prefix: String,
    suffix: String,
    /// Unix seconds of the last warning (one a second at most).
    last_warning: OncePerSecond,
}

static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// `string.Format(message, limit, period)`, except that other braces stay as written
/// (Ocelot throws on them, which answers 500).
pub fn quota_message(template: &str, limit: u64, period: &str) -> String {
    template
        .replace("{0}", &limit.to_string())
        .replace("{1}", period)
}

impl RateLimit {
    pub fn new(o: &Config, store: Arc<Store>, redis: Option<Arc<RedisLink>>) -> Option<Self> {
        Inner::new(o, store, redis).map(|inner| RateLimit {
            inner: Arc::new(inner),
        })
    }
}

impl Inner {
    fn new(o: &Config, store: Arc<Store>, redis: Option<Arc<RedisLink>>) -> Option<Self> {
        let template = &o.template;
        let header = HeaderName::from_bytes(o.client_id_header.as_bytes()).ok()?;
        let rule_text = rule_text(o);
        Some(Inner {
            header,
            whitelist: o.client_whitelist.clone(),
            enable_headers: o.enable_headers,
            status: StatusCode::from_u16(o.status_code).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            rule: Rule {
                limit: o.limit,
                period: Duration::from_millis(o.period_ms),
                wait: Duration::from_millis(o.wait_ms),
            },
            store,
            quota_body: Bytes::from(quota_message(&o.quota_message, o.limit, &o.period)),
            unknown_client_body: Bytes::from(format!(
                "Rate limiting client could not be identified for the route '{template}' due to a missing or unknown client ID header required by rule '{rule_text}'!"
            )),
            limit_header: HeaderValue::from(o.limit),
            redis: redis.map(|link| Redis {
                link,
                prefix: format!("{}_", o.key_prefix),
                suffix: format!(":{}_{rule_text}", o.counter_key),
                last_warning: OncePerSecond::default(),
            }),
        })
    }

    fn refuse(&self, status: StatusCode, body: Bytes, retry_after: f64) -> Flow {
        let mut r = respond::bytes(status, body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.enable_headers
            && let Ok(v) = HeaderValue::from_str(&format_seconds(retry_after))
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Flow::Respond(r)
    }
}

/// The rule as Ocelot prints it: `Limit/Period/wWait`.
pub fn rule_text(o: &Config) -> String {
    format!("{}/{}/w{}", o.limit, o.period, o.wait)
}

/// A double as .NET's invariant `ToString()` writes it (shortest round-trip form).
fn format_seconds(s: f64) -> String {
    let rounded = (s * 1000.0).round() / 1000.0;
    format!("{rounded}")
}

/// ISO 8601 round-trip ("o") form in UTC: `2024-05-01T12:34:56.1234567Z`.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos() / 100
    )
}

impl Plugin for RateLimit {
    fn name(&self) -> &str {
        RateLimitOptions::NAME
    }

    fn priority(&self) -> i32 {
        RateLimitOptions::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let me = &self.inner;
        let client = req
            .headers()
            .get(&me.header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if me.whitelist.iter().any(|w| w == client) {
            return Flow::Continue;
        }
        if client.is_empty() {
            return me.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                me.unknown_client_body.clone(),
                -1.0,
            );
        }
        let Some(redis) = &me.redis else {
            let v = me
                .store
                .process(client, &me.rule, Instant::now(), SystemTime::now());
            return me.verdict(ctx, v);
        };
        let key = redis.key(client);
        let args = [
            me.rule.limit.min(i64::MAX as u64) as i64,
            me.rule.period.as_millis() as i64,
            me.rule.wait.as_millis() as i64,
        ];
        let link = redis.link.clone();
        let then = self.inner.clone();
        Flow::wait(
            async move { link.eval(window_script(), &[key], &args).await },
            move |counted, ctx, _req| match counted {
                Ok(v) if v.len() == 3 => then.verdict(ctx, Verdict::of_redis(&v)),
                Ok(v) => then.redis_failed(&format!("unexpected script answer {v:?}")),
                Err(err) => then.redis_failed(&err),
            },
        )
    }
}

impl Inner {
    /// The answer to a counted request: refused past the limit, else on with the
    /// X-Rate-Limit headers.
    fn verdict(&self, ctx: &mut Ctx<'_>, v: Verdict) -> Flow {
        if let Some(retry) = v.retry_after {
            return self.refuse(self.status, self.quota_body.clone(), retry);
        }
        if self.enable_headers {
            ctx.response_headers
                .push((X_RATELIMIT_LIMIT.clone(), self.limit_header.clone()));
            ctx.response_headers.push((
                X_RATELIMIT_REMAINING.clone(),
                HeaderValue::from(self.rule.limit.saturating_sub(v.total)),
            ));
            if let Ok(reset) = HeaderValue::from_str(&iso8601(v.started_wall + self.rule.period)) {
                ctx.response_headers
                    .push((X_RATELIMIT_RESET.clone(), reset));
            }
        }
        Flow::Continue
    }

    /// Redis gave no verdict: the request passes uncounted and without headers, with a
    /// warning at most once a second (a Redis outage must not flood the log).
    fn redis_failed(&self, err: &dyn std::fmt::Display) -> Flow {
        if let Some(r) = &self.redis {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if r.last_warning.due(now) {
                tracing::warn!(error = %err, "ocelot rate limiting: Redis gave no count; requests pass uncounted");
            }
        }
        Flow::Continue
    }
}

impl Redis {
    /// The client's counter in Redis: Ocelot's counter id, digested (as Ocelot's storage key
    /// is) after the prefix, which stays readable.
    fn key(&self, client: &str) -> String {
        let mut d = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        d.update(self.prefix.as_bytes());
        d.update(client.as_bytes());
        d.update(self.suffix.as_bytes());
        let mut key = self.prefix.clone();
        for b in d.finish().as_ref() {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }
}

impl Verdict {
    /// The window script's answer: `{total, started (Unix ms), retry after (ms) or -1}`.
    fn of_redis(v: &[i64]) -> Verdict {
        Verdict {
            total: v[0].max(0) as u64,
            started_wall: SystemTime::UNIX_EPOCH + Duration::from_millis(v[1].max(0) as u64),
            retry_after: (v[2] >= 0).then(|| v[2] as f64 / 1000.0),
        }
    }
}

/// `Store::process` in Redis, on Redis's clock (every gateway process sees the same
/// time): the client's counter is a hash of its window start, the moment the limit was
/// exceeded (-1: not yet) and its count, expiring once neither the window nor the wait
/// can matter. `KEYS[1]`: the counter; `ARGV`: limit, period (ms), wait (ms).
const WINDOW_SCRIPT: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, period, wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local started, exceeded, total = now, -1, 1
local v = redis.call("HMGET", KEYS[1], "started", "exceeded", "total")
if v[1] and v[2] and v[3] then
  started, exceeded, total = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) + 1
  if total > limit and exceeded < 0 then exceeded = now end
  local in_window = started + period >= now
  local in_wait = exceeded >= 0 and exceeded + wait >= now
  if not (in_window or in_wait) then started, exceeded, total = now, -1, 1 end
end
local function retry()
  if total <= limit or exceeded < 0 then return 0 end
  if wait == 0 and started + period > now then return started + period - now end
  if exceeded + wait > now then return exceeded + wait - now end
  return -1
end
if total > limit and retry() < 0 then started, exceeded, total = now, -1, 1 end
local function int(x) return string.format("%.0f", x) end
redis.call("HSET", KEYS[1], "started", int(started), "exceeded", int(exceeded), "total", int(total))
redis.call("PEXPIRE", KEYS[1], int(math.max(started + period, exceeded + wait) - now + 1000))
if total > limit then return {total, started, retry()} end
return {total, started, -1}
"#;

fn window_script() -> &'static redis::Script {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(WINDOW_SCRIPT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_then_wait() {
        let store = Store::default();
        let rule = Rule {
            limit: 2,
            period: Duration::from_secs(10),
            wait: Duration::ZERO,
        };
        let t0 = Instant::now();
        let w = SystemTime::now();
        assert!(store.process("a", &rule, t0, w).retry_after.is_none());
        assert!(
            store
                .process("a", &rule, t0 + Duration::from_secs(1), w)
                .retry_after
                .is_none()
        );
        let refused = store
            .process("a", &rule, t0 + Duration::from_secs(2), w)
            .retry_after
            .unwrap();
        assert!((refused - 8.0).abs() < 0.01, "{refused}");
        assert!(
            store
                .process("b", &rule, t0 + Duration::from_secs(2), w)
                .retry_after
                .is_none()
        );
        // After the window, counting starts again.
        assert!(
            store
                .process("a", &rule, t0 + Duration::from_secs(11), w)
                .retry_after
                .is_none()
        );

        let store = Store::default();
        let rule = Rule {
            limit: 1,
            period: Duration::from_secs(1),
            wait: Duration::from_secs(60),
        };
        assert!(store.process("a", &rule, t0, w).retry_after.is_none());
        let r = store
            .process("a", &rule, t0 + Duration::from_millis(500), w)
            .retry_after
            .unwrap();
        assert!((r - 60.0).abs() < 0.01, "{r}");
        // Still waiting after the period ended.
        assert!(
            store
                .process("a", &rule, t0 + Duration::from_secs(5), w)
                .retry_after
                .is_some()
        );
        assert!(
            store
                .process("a", &rule, t0 + Duration::from_secs(62), w)
                .retry_after
                .is_none()
        );
    }

    #[test]
    fn messages_and_formats() {
        assert_eq!(
            quota_message(
                "API calls quota exceeded! Maximum admitted {0} per {1}.",
                5,
                "1m"
            ),
            "API calls quota exceeded! Maximum admitted 5 per 1m."
        );
        assert_eq!(quota_message("Exceeding! {x}", 5, "1m"), "Exceeding! {x}");
        assert_eq!(format_seconds(-1.0), "-1");
        assert_eq!(format_seconds(59.5), "59.5");
        assert_eq!(
            iso8601(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.1230000Z"
        );
    }
}
