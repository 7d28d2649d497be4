//! Kong's shared Redis record (`kong/tools/redis/schema.lua`): `config.redis` of
//! `rate-limiting` and `response-ratelimiting`, and the base of `acme`'s
//! `storage_config.redis`. With Kong's rule for the deprecated names these plugins still
//! read into it (a schema's `shorthand_fields`): the flat `redis_host`, `redis_port`, ... of
//! the two rate-limiting plugins, and acme's `auth`, `ssl_server_name`, ... inside its record.

use serde::de::{Deserialize, Deserializer, MapAccess};

use super::typedefs::{check_host, check_port, check_sni, check_timeout, non_empty};
use super::{Checks, Record, deserialize_record};

pub const DEFAULT_PORT: i64 = 6379;
/// Milliseconds.
pub const DEFAULT_TIMEOUT: i64 = 2000;

/// Kong's shared Redis record.
#[derive(Debug, Clone, PartialEq)]
pub struct Redis {
    pub host: Option<String>,
    pub port: i64,
    /// Milliseconds.
    pub timeout: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    pub ssl: bool,
    pub ssl_verify: bool,
    pub server_name: Option<String>,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            host: None,
            port: DEFAULT_PORT,
            timeout: DEFAULT_TIMEOUT,
            username: None,
            password: None,
            database: 0,
            ssl: false,
            ssl_verify: false,
            server_name: None,
        }
    }
}

impl Redis {
    /// The record's fields, in Kong's order.
    pub const FIELD_NAMES: [&'static str; 9] = [
        "host",
        "port",
        "timeout",
        "username",
        "password",
        "database",
        "ssl",
        "ssl_verify",
        "server_name",
    ];

    /// The record's rules, each problem at `at(field)`: where that field's value was
    /// written. (`password` may be empty: Kong gives it `len_min = 0`.)
    pub fn check(&self, c: &mut Checks, at: impl Fn(&str) -> String) {
        if let Some(host) = &self.host {
            check_host(c, &at("host"), host);
        }
        check_port(c, &at("port"), self.port);
        check_timeout(c, &at("timeout"), self.timeout);
        non_empty(c, &at("username"), self.username.as_deref());
        if let Some(sni) = &self.server_name {
            check_sni(c, &at("server_name"), sni);
        }
    }

    /// The settings in effect with a config's deprecated flat fields: each fills the field
    /// it stands for where that is not set.
    pub fn with_shorthands(&self, sh: &RedisShorthands) -> Redis {
        Redis {
            host: pick(&self.host, &sh.host),
            port: pick_defaulted(&self.port, DEFAULT_PORT, &sh.port),
            timeout: pick_defaulted(&self.timeout, DEFAULT_TIMEOUT, &sh.timeout),
            username: pick(&self.username, &sh.username),
            password: pick(&self.password, &sh.password),
            database: pick_defaulted(&self.database, 0, &sh.database),
            ssl: pick_defaulted(&self.ssl, false, &sh.ssl),
            ssl_verify: pick_defaulted(&self.ssl_verify, false, &sh.ssl_verify),
            server_name: pick(&self.server_name, &sh.server_name),
        }
    }

    /// Checks `self` (a config's `redis`) with the config's deprecated flat fields `sh`:
    /// a flat field and its nested one both set must agree, and each value in effect is
    /// checked where it was written (`redis_port` or `redis.port`). Gives the settings in
    /// effect.
    pub fn check_with_shorthands(&self, sh: &RedisShorthands, c: &mut Checks) -> Redis {
        let fields = [
            Written::optional("host", &self.host, &sh.host),
            Written::defaulted("port", self.port, DEFAULT_PORT, sh.port),
            Written::defaulted("timeout", self.timeout, DEFAULT_TIMEOUT, sh.timeout),
            Written::optional("username", &self.username, &sh.username),
            // Kong shows both values; a password is not repeated in a message.
            Written {
                values: None,
                ..Written::optional("password", &self.password, &sh.password)
            },
            Written::defaulted("database", self.database, 0, sh.database),
            Written::defaulted("ssl", self.ssl, false, sh.ssl),
            Written::defaulted("ssl_verify", self.ssl_verify, false, sh.ssl_verify),
            Written::optional("server_name", &self.server_name, &sh.server_name),
        ];
        for w in &fields {
            if w.source.mismatch {
                let old = format!("redis_{}", w.field);
                let new = format!("redis.{}", w.field);
                c.error(&old, mismatch(&old, &new, w.values.clone()));
            }
        }
        let effective = self.with_shorthands(sh);
        effective.check(c, |field| {
            if fields.iter().any(|w| w.field == field && w.source.from_old) {
                format!("redis_{field}")
            } else {
                format!("redis.{field}")
            }
        });
        effective
    }
}

impl Record for Redis {
    const NAME: &'static str = "Redis";
    const FIELDS: &'static [&'static str] = &Redis::FIELD_NAMES;

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "host" => self.host = map.next_value()?,
            "port" => self.port = map.next_value()?,
            "timeout" => self.timeout = map.next_value()?,
            "username" => self.username = map.next_value()?,
            "password" => self.password = map.next_value()?,
            "database" => self.database = map.next_value()?,
            "ssl" => self.ssl = map.next_value()?,
            "ssl_verify" => self.ssl_verify = map.next_value()?,
            "server_name" => self.server_name = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for Redis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_record(d)
    }
}

/// One field of `Redis::check_with_shorthands`: where its value in effect comes from, and the
/// two values a mismatch shows (the deprecated one first).
struct Written {
    field: &'static str,
    source: Shorthand,
    values: Option<(String, String)>,
}

impl Written {
    fn optional(field: &'static str, new: &Option<String>, old: &Option<String>) -> Written {
        Written {
            field,
            source: Shorthand::optional(new, old),
            values: old.clone().zip(Some(new.clone().unwrap_or_default())),
        }
    }

    fn defaulted<T: PartialEq + Copy + std::fmt::Display>(
        field: &'static str,
        new: T,
        default: T,
        old: Option<T>,
    ) -> Written {
        Written {
            field,
            source: Shorthand::defaulted(&new, default, &old),
            values: old.map(|old| (old.to_string(), new.to_string())),
        }
    }
}

/// The deprecated flat fields (`redis_host`, `redis_port`, ...) that `rate-limiting` and
/// `response-ratelimiting` still read into `redis` (to be removed in Kong 4.0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisShorthands {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub password: Option<String>,
    pub username: Option<String>,
    pub ssl: Option<bool>,
    pub ssl_verify: Option<bool>,
    pub server_name: Option<String>,
    pub timeout: Option<i64>,
    pub database: Option<i64>,
}

/// The `RedisShorthands` of a plugin config, from its flat `redis_*` fields.
macro_rules! redis_shorthands {
    ($config:expr) => {
        $crate::plugins::schema::redis::RedisShorthands {
            host: $config.redis_host.clone(),
            port: $config.redis_port,
            password: $config.redis_password.clone(),
            username: $config.redis_username.clone(),
            ssl: $config.redis_ssl,
            ssl_verify: $config.redis_ssl_verify,
            server_name: $config.redis_server_name.clone(),
            timeout: $config.redis_timeout,
            database: $config.redis_database,
        }
    };
}
pub(crate) use redis_shorthands;

// === Kong's rule for deprecated names (`validate_deprecation_exclusiveness`) ===

/// Where the value in effect of a field that also has a deprecated name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shorthand {
    /// Taken from the deprecated name (the new field was not set).
    pub from_old: bool,
    /// Both set, to different values.
    pub mismatch: bool,
}

impl Shorthand {
    /// A field with no default: set or not.
    pub fn optional<T: PartialEq>(new: &Option<T>, old: &Option<T>) -> Shorthand {
        Shorthand {
            from_old: new.is_none() && old.is_some(),
            mismatch: matches!((new, old), (Some(n), Some(o)) if n != o),
        }
    }

    /// A field with a default: serde cannot tell a value written equal to the default from
    /// one left out, so a new field at its default counts as not set.
    pub fn defaulted<T: PartialEq>(new: &T, default: T, old: &Option<T>) -> Shorthand {
        let set = *new != default;
        Shorthand {
            from_old: !set && old.is_some(),
            mismatch: set && old.as_ref().is_some_and(|o| o != new),
        }
    }
}

/// The value in effect of a field without a default: the new one where set, else the old.
pub fn pick<T: Clone>(new: &Option<T>, old: &Option<T>) -> Option<T> {
    new.clone().or_else(|| old.clone())
}

/// The same for a field with a default (at its default, it counts as not set).
pub fn pick_defaulted<T: PartialEq + Clone>(new: &T, default: T, old: &Option<T>) -> T {
    match old {
        Some(o) if *new == default => o.clone(),
        _ => new.clone(),
    }
}

/// Kong's message for a deprecated name and its new field set to different values, with
/// both values (`None`: not shown, for a secret).
pub fn mismatch(old: &str, new: &str, values: Option<(String, String)>) -> String {
    match values {
        Some((o, n)) => format!(
            "both deprecated and new field are used but their values mismatch: {old} = {o} vs {new} = {n}"
        ),
        None => format!(
            "both deprecated and new field are used but their values mismatch: {old} vs {new}"
        ),
    }
}
