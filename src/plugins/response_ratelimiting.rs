//! `response-ratelimiting` (PRIORITY 900, access and header_filter): named limits per
//! second..year that the upstream consumes by answering with a header
//! (`X-Kong-Limit: video=1`), counted per consumer, credential or IP, locally or in Redis;
//! requests past a limit get 429. Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::rate_limiting::{Policy, periods_order};
use super::schema::defaults::yes;
use super::schema::redis::{Redis, RedisShorthands, redis_shorthands};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/response-ratelimiting/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_header_name")]
    pub header_name: String,
    #[serde(default)]
    pub limit_by: LimitBy,
    /// Kong offers `cluster` only with a database; the schema accepts it here and building
    /// refuses it.
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

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
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
            parse::<Config>("policy: cluster\nlimits: {a: {day: 1}}")
                .unwrap()
                .policy,
            Policy::Cluster
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
