//! Counting machinery of Kong's rate-limiting plugins: calendar windows as Kong's
//! `kong.tools.timestamp` cuts them (UTC), counters kept in this process (`Local`) or in
//! Redis (`RedisLink`).
//!
//! Both live in `snapshot::State`, beside the snapshot, so that a reload keeps every
//! client's count and the Redis connection:
//! - `Local` is keyed like Kong's shared dict (the plugin's route and service), so an edit of
//!   the plugin's limits keeps the counts, as Kong's does;
//! - `RedisLink` is keyed by the Redis settings: one multiplexed connection per distinct
//!   server, database and credentials, whatever the number of plugins using it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Kong's periods, shortest first (`ORDERED_PERIODS`).
pub const PERIODS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

/// Kong's `expiration.lua`: a period's length in seconds (a month is 30 days, a year 365,
/// whatever the calendar says: `RateLimit-Reset` and Redis expiries use these).
pub const EXPIRATION: [i64; 6] = [1, 60, 3600, 86_400, 2_592_000, 31_536_000];

/// The start (Unix seconds, UTC) of each period's current window at `now`: Kong's
/// `timestamp.get_timestamps`, calendar months and years included.
pub fn window_starts(now: i64) -> [i64; 6] {
    let day = now - now.rem_euclid(86_400);
    let days = day.div_euclid(86_400);
    let (y, m, _) = civil_from_days(days);
    [
        now,
        now - now.rem_euclid(60),
        now - now.rem_euclid(3600),
        day,
        days_from_civil(y, m, 1) * 86_400,
        days_from_civil(y, 1, 1) * 86_400,
    ]
}

/// A warning logged at most once a second, whatever the request rate: a Redis outage must
/// not flood the log.
#[derive(Debug, Default)]
pub struct OncePerSecond(AtomicI64);

impl OncePerSecond {
    /// Whether the warning is due at `now` (Unix seconds): true for one caller a second.
    pub fn due(&self, now: i64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        last != now
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Howard Hinnant's `civil_from_days`: (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Who a request is counted as: the client's address, or a text (consumer, credential or
/// service id, header value, path). Borrowed, so that counting allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ident<'a> {
    Ip(IpAddr),
    Text(&'a str),
}

impl std::fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ident::Ip(ip) => ip.fmt(f),
            Ident::Text(t) => f.write_str(t),
        }
    }
}

/// One client's counters, a slot per period: the window's start (Unix seconds) in the high
/// half, the count in the low half, so that a window's roll-over and a count are one atomic
/// update (Unix seconds fit 32 bits until 2106).
#[derive(Default)]
struct Slots([AtomicU64; 6]);

impl Slots {
    fn usage(&self, period: usize, start: i64) -> u64 {
        let v = self.0[period].load(Ordering::Relaxed);
        if v >> 32 == start as u64 & 0xffff_ffff {
            v & 0xffff_ffff
        } else {
            0
        }
    }

    fn add(&self, period: usize, start: i64, n: u64) {
        let start = (start as u64 & 0xffff_ffff) << 32;
        let n = n.min(0xffff_ffff);
        let _ = self.0[period].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(if v & !0xffff_ffff == start {
                start | (v & 0xffff_ffff).saturating_add(n).min(0xffff_ffff)
            } else {
                start | n
            })
        });
    }

    /// Some window is still current (a later request could read its count).
    fn live(&self, now: i64) -> bool {
        self.0.iter().zip(EXPIRATION).any(|(s, len)| {
            let start = (s.load(Ordering::Relaxed) >> 32) as i64;
            start != 0 && start + len > now
        })
    }
}

const SHARDS: usize = 32;
/// A shard sweeps its dead clients once it grows past this (then past twice what survived).
const SWEEP_AT: usize = 1024;

/// Clients of one key type, sharded by hash: a request takes one shard's read lock around
/// atomic updates; the write lock is only taken for a client new to its windows.
struct Sharded<K> {
    hasher: RandomState,
    shards: Vec<RwLock<Shard<K>>>,
}

struct Shard<K> {
    map: HashMap<K, Slots>,
    sweep_at: usize,
}

impl<K: Hash + Eq> Default for Sharded<K> {
    fn default() -> Self {
        Sharded {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::new(),
                        sweep_at: SWEEP_AT,
                    })
                })
                .collect(),
        }
    }
}

impl<K: Hash + Eq> Sharded<K> {
    /// Runs `f` on the client's slots, creating them (through `own`) when new.
    fn with<Q, R>(
        &self,
        key: &Q,
        own: impl FnOnce() -> K,
        now: i64,
        f: impl FnOnce(&Slots) -> R,
    ) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        {
            let s = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(slots) = s.map.get(key) {
                return f(slots);
            }
        }
        let mut s = shard.write().unwrap_or_else(|e| e.into_inner());
        if s.map.len() >= s.sweep_at {
            s.map.retain(|_, slots| slots.live(now));
            s.sweep_at = (s.map.len() * 2).max(SWEEP_AT);
        }
        f(s.map.entry(own()).or_default())
    }
}

/// Counters of one plugin scope in this process, shared by every worker (Kong's
/// `kong_rate_limiting_counters` shared dict).
#[derive(Default)]
pub struct Local {
    ips: Sharded<IpAddr>,
    texts: Sharded<Box<str>>,
}

impl Local {
    /// The client's count in each of `periods`' current windows (`starts` from
    /// `window_starts`), into `out`.
    pub fn usage(
        &self,
        id: Ident<'_>,
        periods: &[usize],
        starts: &[i64; 6],
        now: i64,
        out: &mut [f64],
    ) {
        let read = |slots: &Slots| {
            for (o, &p) in out.iter_mut().zip(periods) {
                *o = slots.usage(p, starts[p]) as f64;
            }
        };
        self.with(id, now, read);
    }

    /// Counts one request in each of `periods`' current windows.
    pub fn increment(&self, id: Ident<'_>, periods: &[usize], starts: &[i64; 6], now: i64) {
        self.add(id, periods, starts, now, 1);
    }

    /// Counts `n` in each of `periods`' current windows.
    pub fn add(&self, id: Ident<'_>, periods: &[usize], starts: &[i64; 6], now: i64, n: u64) {
        self.with(id, now, |slots| {
            for &p in periods {
                slots.add(p, starts[p], n);
            }
        });
    }

    fn with(&self, id: Ident<'_>, now: i64, f: impl FnOnce(&Slots)) {
        match id {
            Ident::Ip(ip) => self.ips.with(&ip, || ip, now, f),
            Ident::Text(t) => self.texts.with(t, || t.into(), now, f),
        }
    }
}

/// The Redis settings a connection is made with (also the Ocelot rate limiter's config, whose
/// loader writes the timeout in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    pub ssl: bool,
    pub ssl_verify: bool,
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
}

fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
}

impl RedisTarget {
    /// The state key: every setting that makes a different connection.
    pub fn key(&self) -> String {
        format!(
            "redis:{}:{}:{}:{}:{}:{}:{}:{}",
            self.host,
            self.port,
            self.database,
            self.username.as_deref().unwrap_or_default(),
            self.password.as_deref().unwrap_or_default(),
            self.ssl,
            self.ssl_verify,
            self.timeout.as_millis()
        )
    }

    /// The connection URL (`redis://` or `rediss://`, `#insecure` without verification).
    pub fn url(&self) -> String {
        let scheme = if self.ssl { "rediss" } else { "redis" };
        let mut auth = String::new();
        if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
            if let Some(u) = &self.username {
                auth.push_str(&userinfo(u));
            }
            auth.push(':');
            auth.push_str(&userinfo(p));
            auth.push('@');
        }
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        };
        let insecure = if self.ssl && !self.ssl_verify {
            "#insecure"
        } else {
            ""
        };
        format!(
            "{scheme}://{auth}{host}:{}/{}{insecure}",
            self.port, self.database
        )
    }
}

/// Percent-encodes a URL's user or password.
fn userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why Redis gave no counts.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// One Redis server's multiplexed connection, shared by every plugin that names the same
/// settings, kept across reloads. It connects on first use (inside the runtime that serves
/// the request), and again on a later request if that failed.
#[derive(Default)]
pub struct RedisLink {
    target: OnceLock<RedisTarget>,
    conn: tokio::sync::OnceCell<ConnectionManager>,
}

/// Counts one request in each key and gives the counts before it, creating each key with
/// its expiry: Kong's per-period `incr`/`expire` script, all periods in one round trip.
const COUNT_SCRIPT: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call("incr", key)
  if v == 1 then
    redis.call("expire", key, ARGV[i])
  end
  out[i] = v - 1
end
return out
"#;

fn count_script() -> &'static redis::Script {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(COUNT_SCRIPT))
}

impl RedisLink {
    /// Records the settings (the first build that asks for this link sets them; the key
    /// holds every setting, so later ones are equal).
    pub fn configure(&self, target: RedisTarget) {
        let _ = self.target.set(target);
    }

    fn timeout(&self) -> Duration {
        self.target
            .get()
            .map_or(Duration::from_secs(2), |t| t.timeout)
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisFailure> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let url = self.target.get().map(RedisTarget::url).unwrap_or_default();
                let client = redis::Client::open(url)?;
                let timeout = self.timeout();
                // Few reconnection attempts: a request waits for at most `timeout` anyway,
                // and the next request tries again.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client, config).await
            })
            .await?;
        Ok(conn.clone())
    }

    /// Counts one request under each of `keys` (with its expiry in seconds) and gives the
    /// counts before it, in one round trip, within the configured timeout.
    pub async fn count(&self, keys: &[String], expiries: &[i64]) -> Result<Vec<i64>, RedisFailure> {
        let timeout = self.timeout();
        let work = async {
            let mut conn = self.connection().await?;
            let mut call = count_script().key(keys);
            call.arg(expiries);
            Ok::<_, RedisFailure>(call.invoke_async::<Vec<i64>>(&mut conn).await?)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))?
    }
}

impl RedisLink {
    /// Runs `script` over `keys` with `args` in one round trip, within the configured
    /// timeout (the Ocelot rate limiter's window script).
    pub async fn eval(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[i64],
    ) -> Result<Vec<i64>, RedisFailure> {
        let timeout = self.timeout();
        let work = async {
            let mut conn = self.connection().await?;
            let mut call = script.key(keys);
            call.arg(args);
            Ok::<_, RedisFailure>(call.invoke_async::<Vec<i64>>(&mut conn).await?)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))?
    }

    /// The counts under `keys` (0 where missing), in one round trip (`MGET`).
    pub async fn read(&self, keys: &[String]) -> Result<Vec<i64>, RedisFailure> {
        let timeout = self.timeout();
        let work = async {
            let mut conn = self.connection().await?;
            let values: Vec<Option<i64>> =
                redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
            Ok::<_, RedisFailure>(values.into_iter().map(Option::unwrap_or_default).collect())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))?
    }

    /// Adds `n` under each of `keys`, giving a new key its expiry (seconds), in one round
    /// trip: Kong's `exists`, `incrby` and `expire`, as one script.
    pub async fn add(&self, keys: &[String], expiries: &[i64], n: i64) -> Result<(), RedisFailure> {
        static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
        let script = SCRIPT.get_or_init(|| redis::Script::new(ADD_SCRIPT));
        let timeout = self.timeout();
        let work = async {
            let mut conn = self.connection().await?;
            let mut call = script.key(keys);
            call.arg(n).arg(expiries);
            call.invoke_async::<()>(&mut conn).await?;
            Ok::<_, RedisFailure>(())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))?
    }
}

/// `ARGV[1]` is the amount, `ARGV[i + 1]` the expiry of `KEYS[i]`.
const ADD_SCRIPT: &str = r#"
for i, key in ipairs(KEYS) do
  local new = redis.call("exists", key) == 0
  redis.call("incrby", key, ARGV[1])
  if new then
    redis.call("expire", key, ARGV[i + 1])
  end
end
return 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        // 2024-02-29T13:45:30Z
        let now = 1_709_214_330;
        let s = window_starts(now);
        assert_eq!(s[0], now);
        assert_eq!(s[1], 1_709_214_300); // 13:45:00
        assert_eq!(s[2], 1_709_211_600); // 13:00:00
        assert_eq!(s[3], 1_709_164_800); // 2024-02-29
        assert_eq!(s[4], 1_706_745_600); // 2024-02-01
        assert_eq!(s[5], 1_704_067_200); // 2024-01-01
    }

    #[test]
    fn local_counts_by_window_and_client() {
        let l = Local::default();
        let starts = window_starts(1_000_020);
        let periods = [1, 2];
        let a = Ident::Text("a");
        let mut out = [0.0; 2];
        for _ in 0..3 {
            l.increment(a, &periods, &starts, 1_000_020);
        }
        l.increment(
            Ident::Ip("10.0.0.1".parse().unwrap()),
            &periods,
            &starts,
            1_000_020,
        );
        l.usage(a, &periods, &starts, 1_000_020, &mut out);
        assert_eq!(out, [3.0, 3.0]);
        // The next minute: the minute counts from zero, the hour goes on.
        let later = window_starts(1_000_080);
        l.usage(a, &periods, &later, 1_000_080, &mut out);
        assert_eq!(out, [0.0, 3.0]);
        l.usage(Ident::Text("b"), &periods, &starts, 1_000_020, &mut out);
        assert_eq!(out, [0.0, 0.0]);
        l.usage(
            Ident::Ip("10.0.0.1".parse().unwrap()),
            &periods,
            &starts,
            1_000_020,
            &mut out,
        );
        assert_eq!(out, [1.0, 1.0]);
    }

    #[test]
    fn sweep_drops_dead_clients_only() {
        let l = Local::default();
        let old = window_starts(1_000_000);
        let now = 1_000_000 + 7200;
        let new = window_starts(now);
        for i in 0..(SHARDS * SWEEP_AT * 2) {
            let t = format!("c{i}");
            let (s, at) = if i % 2 == 0 {
                (&old, 1_000_000)
            } else {
                (&new, now)
            };
            l.increment(Ident::Text(&t), &[1], s, at);
        }
        let total: usize = l
            .texts
            .shards
            .iter()
            .map(|s| s.read().unwrap().map.len())
            .sum();
        assert!(total < SHARDS * SWEEP_AT * 2, "{total}");
        let mut out = [0.0];
        l.usage(Ident::Text("c1"), &[1], &new, now, &mut out);
        assert_eq!(out, [1.0]);
    }

    #[test]
    fn urls() {
        let t = RedisTarget {
            host: "::1".into(),
            port: 6380,
            username: Some("u".into()),
            password: Some("p@ss:w".into()),
            database: 2,
            ssl: true,
            ssl_verify: false,
            timeout: Duration::from_millis(100),
        };
        assert_eq!(t.url(), "rediss://u:p%40ss%3Aw@[::1]:6380/2#insecure");
        let t = RedisTarget {
            host: "redis".into(),
            username: None,
            password: None,
            ssl: false,
            ..t
        };
        assert_eq!(t.url(), "redis://redis:6380/2");
    }
}
