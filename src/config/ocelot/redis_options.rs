//! `GlobalConfiguration.RateLimitOptions.Redis`: switchyard's extension that keeps Ocelot
//! rate-limit counters in Redis, shared by every gateway process that names the same server.
//! Ocelot ignores the key. Being switchyard's own block, it is read strictly: an unknown key
//! is an error (a typo in `Password` must not leave counting to a server that refuses it).

use super::raw::{RawRateLimit, RawRedis};
use super::{Cx, Entity, join};
use crate::config::de::{self, Captured, Dialect};
use crate::config::diag::Path;
use crate::config::model::OcelotRedis;

/// Kong's Redis timeout default, in milliseconds.
const DEFAULT_TIMEOUT_MS: i64 = 2000;

impl Cx<'_> {
    /// The global block's Redis settings, checked; `None` when absent or invalid (errors
    /// reported).
    pub(super) fn global_redis(&mut self, rl: &RawRateLimit, ent: &Entity) -> Option<OcelotRedis> {
        let captured = rl.redis.as_ref()?;
        let at = Path::root().key("RateLimitOptions").key("Redis");
        let (raw, mut ok) = self.strict_redis(captured, ent, &at);
        // Every problem is reported at once, the block's own checks included.
        let raw = raw?;
        let host = raw.host.clone().unwrap_or_default();
        if host.trim().is_empty() {
            ok = false;
            self.error(ent, &at, "Redis.Host is required");
        }
        let port = raw.port.unwrap_or(6379);
        if !(1..=65535).contains(&port) {
            ok = false;
            self.error(
                ent,
                &at.key("Port"),
                format!("Redis.Port {port} is not between 1 and 65535"),
            );
        }
        let database = raw.database.unwrap_or(0);
        if database < 0 {
            ok = false;
            self.error(
                ent,
                &at.key("Database"),
                format!("Redis.Database {database} is negative"),
            );
        }
        let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout <= 0 {
            ok = false;
            self.error(
                ent,
                &at.key("Timeout"),
                format!("Redis.Timeout {timeout} must be a positive number of milliseconds"),
            );
        }
        ok.then(|| OcelotRedis {
            host: host.trim().to_string(),
            port: port as u16,
            username: raw.username.filter(|u| !u.is_empty()),
            password: raw.password.filter(|p| !p.is_empty()),
            database,
            ssl: raw.ssl.unwrap_or(false),
            ssl_verify: raw.ssl_verify.unwrap_or(true),
            timeout_ms: timeout as u64,
        })
    }

    /// The block as `RawRedis`, every problem (unknown keys included) an error; `true`
    /// when there was none.
    fn strict_redis(&mut self, c: &Captured, ent: &Entity, at: &Path) -> (Option<RawRedis>, bool) {
        let (value, problems) = de::from_node::<RawRedis>(&c.node, Dialect::Ocelot);
        let clean = problems.is_empty();
        for p in problems {
            let message = p.message.replace(" is ignored", "");
            self.error(ent, &join(at, &p.path), format!("Redis: {message}"));
        }
        (value, clean)
    }

    /// A route's own `RateLimitOptions.Redis`: Redis is the counters' store for the whole
    /// gateway, so it is only read from GlobalConfiguration.
    pub(super) fn route_redis(&mut self, rl: &RawRateLimit, ent: &Entity, ok: &mut bool) {
        if rl.redis.is_some() {
            *ok = false;
            self.error(
                ent,
                &Path::root().key("RateLimitOptions").key("Redis"),
                "RateLimitOptions.Redis is read from GlobalConfiguration.RateLimitOptions only",
            );
        }
    }
}
