//! `acme` (PRIORITY 1705, global only): obtains and renews TLS certificates from an ACME CA
//! (Let's Encrypt by default) for the requested SNIs in `domains`, answering the CA's
//! HTTP-01 challenges on `/.well-known/acme-challenge/` and keeping account keys and
//! certificates in `storage` (shm, Redis, Consul or Vault). Not served yet: its config is
//! checked against Kong's schema, and the routes it applies to are closed.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::schema::defaults::yes;
use super::schema::redis::{Redis, Shorthand, mismatch, pick, pick_defaulted};
use super::schema::typedefs::{
    check_host, check_port, check_sni, check_url, check_wildcard_host, is_reference, non_empty,
};
use super::schema::{Record, concat_fields, deserialize_record};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/acme/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// The ACME account's email address (or a vault reference).
    pub account_email: String,
    pub account_key: Option<AccountKey>,
    /// The CA's directory URL.
    #[serde(default = "default_api_uri")]
    pub api_uri: String,
    /// Let's Encrypt's terms of service are accepted.
    #[serde(default)]
    pub tos_accepted: bool,
    /// External account binding key id.
    pub eab_kid: Option<String>,
    /// External account binding HMAC key (base64url).
    pub eab_hmac_key: Option<String>,
    #[serde(default)]
    pub cert_type: CertType,
    /// 2048, 3072 or 4096.
    #[serde(default = "default_rsa_key_size")]
    pub rsa_key_size: f64,
    #[serde(default = "default_renew_threshold_days")]
    pub renew_threshold_days: f64,
    /// The domains certificates may be requested for (`*.example.com` allowed).
    pub domains: Option<Vec<String>>,
    /// Any domain may get a certificate; `domains` is ignored.
    #[serde(default)]
    pub allow_any_domain: bool,
    #[serde(default = "default_fail_backoff_minutes")]
    pub fail_backoff_minutes: f64,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub storage_config: StorageConfig,
    pub preferred_chain: Option<String>,
    #[serde(default = "yes")]
    pub enable_ipv4_common_name: bool,
}

/// The ACME account's private key, from a key set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AccountKey {
    pub key_id: String,
    pub key_set: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum CertType {
    #[default]
    #[serde(rename = "rsa")]
    Rsa,
    #[serde(rename = "ecc")]
    Ecc,
}

/// Where account keys and certificates are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Storage {
    #[serde(rename = "kong")]
    Kong,
    #[default]
    #[serde(rename = "shm")]
    Shm,
    #[serde(rename = "redis")]
    Redis,
    #[serde(rename = "consul")]
    Consul,
    #[serde(rename = "vault")]
    Vault,
}

/// Settings of each storage (Kong fills all of them with their defaults).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    pub shm: ShmStorage,
    pub kong: NoFields,
    pub redis: RedisStorage,
    pub consul: ConsulStorage,
    pub vault: VaultStorage,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ShmStorage {
    /// The shared memory zone (an nginx `lua_shared_dict` in Kong).
    pub shm_name: String,
}

impl Default for ShmStorage {
    fn default() -> Self {
        ShmStorage {
            shm_name: "kong".to_string(),
        }
    }
}

/// acme's Redis settings: Kong's shared Redis record (`kong/tools/redis/schema.lua`, which
/// they deref to) plus acme's `extra_options`, and the names acme used before 3.6 (Kong's
/// `LEGACY_SCHEMA_TRANSLATIONS`: a deprecated name and its new one may both be given only
/// with the same value; the new one wins), all in one mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisStorage {
    pub shared: Redis,
    pub extra_options: RedisExtraOptions,
    /// Deprecated: `password`.
    pub auth: Option<String>,
    /// Deprecated: `server_name`.
    pub ssl_server_name: Option<String>,
    /// Deprecated: `extra_options.namespace`.
    pub namespace: Option<String>,
    /// Deprecated: `extra_options.scan_count`.
    pub scan_count: Option<i64>,
}

impl Deref for RedisStorage {
    type Target = Redis;

    fn deref(&self) -> &Redis {
        &self.shared
    }
}

impl DerefMut for RedisStorage {
    fn deref_mut(&mut self) -> &mut Redis {
        &mut self.shared
    }
}

impl Record for RedisStorage {
    const NAME: &'static str = "RedisStorage";
    const FIELDS: &'static [&'static str] = &concat_fields::<9, 5, 14>(
        Redis::FIELD_NAMES,
        [
            "extra_options",
            "auth",
            "ssl_server_name",
            "namespace",
            "scan_count",
        ],
    );

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "extra_options" => self.extra_options = map.next_value()?,
            "auth" => self.auth = map.next_value()?,
            "ssl_server_name" => self.ssl_server_name = map.next_value()?,
            "namespace" => self.namespace = map.next_value()?,
            "scan_count" => self.scan_count = map.next_value()?,
            _ => return self.shared.read_field(key, map),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for RedisStorage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_record(d)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RedisExtraOptions {
    /// Prepended to every key (may be empty).
    pub namespace: String,
    /// Keys per `SCAN` call.
    pub scan_count: f64,
}

impl Default for RedisExtraOptions {
    fn default() -> Self {
        RedisExtraOptions {
            namespace: String::new(),
            scan_count: 10.0,
        }
    }
}

impl RedisStorage {
    /// The settings with the deprecated names moved to their new places, as Kong reads them:
    /// a new name that is set wins (for `extra_options`, "set" is "not the default").
    pub fn resolved(mut self) -> Self {
        self.shared.password = pick(&self.shared.password, &self.auth.take());
        self.shared.server_name = pick(&self.shared.server_name, &self.ssl_server_name.take());
        let defaults = RedisExtraOptions::default();
        let extra = &mut self.extra_options;
        extra.namespace = pick_defaulted(&extra.namespace, defaults.namespace, &self.namespace);
        extra.scan_count = pick_defaulted(
            &extra.scan_count,
            defaults.scan_count,
            &self.scan_count.map(|n| n as f64),
        );
        (self.namespace, self.scan_count) = (None, None);
        self
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConsulStorage {
    pub https: bool,
    pub host: Option<String>,
    pub port: Option<i64>,
    /// KV prefix path.
    pub kv_path: Option<String>,
    /// Milliseconds.
    pub timeout: Option<f64>,
    /// Consul ACL token.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VaultStorage {
    pub https: bool,
    pub host: Option<String>,
    pub port: Option<i64>,
    /// KV prefix path.
    pub kv_path: Option<String>,
    /// Milliseconds.
    pub timeout: Option<f64>,
    pub token: Option<String>,
    pub tls_verify: bool,
    /// SNI sent (the host when unset).
    pub tls_server_name: Option<String>,
    pub auth_method: VaultAuthMethod,
    pub auth_path: Option<String>,
    pub auth_role: Option<String>,
    pub jwt_path: Option<String>,
}

impl Default for VaultStorage {
    fn default() -> Self {
        VaultStorage {
            https: false,
            host: None,
            port: None,
            kv_path: None,
            timeout: None,
            token: None,
            tls_verify: true,
            tls_server_name: None,
            auth_method: VaultAuthMethod::Token,
            auth_path: None,
            auth_role: None,
            jwt_path: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum VaultAuthMethod {
    #[default]
    #[serde(rename = "token")]
    Token,
    #[serde(rename = "kubernetes")]
    Kubernetes,
}

/// A record without fields (`storage_config.kong`). Lua's empty table is also an empty list,
/// and decK writes it so (`kong: []`): both are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoFields;

impl<'de> Deserialize<'de> for NoFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record without fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoFields, A::Error> {
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if !key.starts_with('_') {
                        return Err(de::Error::custom(format!(
                            "unknown field `{key}`: this record has no fields"
                        )));
                    }
                }
                Ok(NoFields)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoFields, A::Error> {
                match seq.next_element::<IgnoredAny>()? {
                    None => Ok(NoFields),
                    Some(_) => Err(de::Error::custom("expected a record, found a list")),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<NoFields, E> {
                Ok(NoFields)
            }
        }
        d.deserialize_any(V)
    }
}

fn default_api_uri() -> String {
    "https://acme-v02.api.letsencrypt.org/directory".to_string()
}

fn default_rsa_key_size() -> f64 {
    4096.0
}

fn default_renew_threshold_days() -> f64 {
    14.0
}

fn default_fail_backoff_minutes() -> f64 {
    5.0
}

/// Key prefixes the plugin uses itself (`kong/plugins/acme/reserved_words.lua`).
const RESERVED_PREFIXES: [&str; 3] = [
    "kong_acme:renew_config:",
    "kong_acme:renew_last_run",
    "kong_acme:cert_key:",
];

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        non_empty(c, "account_email", Some(&self.account_email));
        if !self.account_email.is_empty()
            && !is_reference(&self.account_email)
            && !self.account_email.contains('@')
        {
            // Kong's `match = "%w*%p*@+%w*%.?%w*"`: in effect, an `@`.
            c.error(
                "account_email",
                format!("invalid value: {}", self.account_email),
            );
        }
        if let Some(key) = &self.account_key {
            non_empty(c, "account_key.key_id", Some(&key.key_id));
            non_empty(c, "account_key.key_set", key.key_set.as_deref());
        }
        check_url(c, "api_uri", &self.api_uri);
        non_empty(c, "eab_kid", self.eab_kid.as_deref());
        non_empty(c, "eab_hmac_key", self.eab_hmac_key.as_deref());
        if ![2048.0, 3072.0, 4096.0].contains(&self.rsa_key_size) {
            c.error("rsa_key_size", "expected one of: 2048, 3072, 4096");
        }
        for (i, d) in self.domains.iter().flatten().enumerate() {
            check_wildcard_host(c, &format!("domains[{i}]"), d);
        }
        non_empty(c, "preferred_chain", self.preferred_chain.as_deref());
        self.storage_config.validate(c);

        // Kong's entity checks.
        if [
            "https://acme-v02.api.letsencrypt.org",
            "https://acme-staging-v02.api.letsencrypt.org",
        ]
        .contains(&self.api_uri.as_str())
            && !self.tos_accepted
        {
            c.error(
                "tos_accepted",
                "terms of service must be accepted, see https://letsencrypt.org/repository/",
            );
        }
        if self.storage == Storage::Redis && self.storage_config.redis.host.is_none() {
            c.error(
                "storage_config.redis.host",
                "required field missing (storage is redis)",
            );
        }
        // switchyard has no database: Kong's check for DB-less mode always applies.
        if self.storage == Storage::Kong {
            c.error("storage", "\"kong\" storage can't be used with dbless mode");
        }
    }
}

impl StorageConfig {
    fn validate(&self, c: &mut Checks) {
        non_empty(c, "storage_config.shm.shm_name", Some(&self.shm.shm_name));

        let r = &self.redis;
        let p = "storage_config.redis";
        r.check(c, |field| format!("{p}.{field}"));
        check_namespace(
            c,
            &format!("{p}.extra_options.namespace"),
            &r.extra_options.namespace,
        );
        // The deprecated names.
        non_empty(
            c,
            &format!("{p}.ssl_server_name"),
            r.ssl_server_name.as_deref(),
        );
        if let Some(ns) = &r.namespace {
            check_namespace(c, &format!("{p}.namespace"), ns);
        }
        if let Some(sni) = &r.ssl_server_name
            && r.server_name.is_none()
            && !sni.is_empty()
        {
            check_sni(c, &format!("{p}.ssl_server_name"), sni);
        }
        let extra = &r.extra_options;
        let defaults = RedisExtraOptions::default();
        let legacy = [
            (
                "auth",
                Shorthand::optional(&r.password, &r.auth),
                "password",
                None,
            ),
            (
                "ssl_server_name",
                Shorthand::optional(&r.server_name, &r.ssl_server_name),
                "server_name",
                r.ssl_server_name.clone().zip(r.server_name.clone()),
            ),
            (
                "namespace",
                Shorthand::defaulted(&extra.namespace, defaults.namespace, &r.namespace),
                "extra_options.namespace",
                r.namespace.clone().map(|ns| (ns, extra.namespace.clone())),
            ),
            (
                "scan_count",
                Shorthand::defaulted(
                    &extra.scan_count,
                    defaults.scan_count,
                    &r.scan_count.map(|n| n as f64),
                ),
                "extra_options.scan_count",
                r.scan_count
                    .map(|n| (n.to_string(), extra.scan_count.to_string())),
            ),
        ];
        for (old, source, new, values) in legacy {
            if source.mismatch {
                c.error(&format!("{p}.{old}"), mismatch(old, new, values));
            }
        }

        for (p, host, port, kv_path, token) in [
            (
                "storage_config.consul",
                &self.consul.host,
                self.consul.port,
                &self.consul.kv_path,
                &self.consul.token,
            ),
            (
                "storage_config.vault",
                &self.vault.host,
                self.vault.port,
                &self.vault.kv_path,
                &self.vault.token,
            ),
        ] {
            if let Some(host) = host {
                check_host(c, &format!("{p}.host"), host);
            }
            if let Some(port) = port {
                check_port(c, &format!("{p}.port"), port);
            }
            non_empty(c, &format!("{p}.kv_path"), kv_path.as_deref());
            non_empty(c, &format!("{p}.token"), token.as_deref());
        }
        let v = &self.vault;
        for (field, value) in [
            ("tls_server_name", &v.tls_server_name),
            ("auth_path", &v.auth_path),
            ("auth_role", &v.auth_role),
            ("jwt_path", &v.jwt_path),
        ] {
            non_empty(
                c,
                &format!("storage_config.vault.{field}"),
                value.as_deref(),
            );
        }
    }
}

/// acme's `namespace`: may be empty, may not start with a key prefix the plugin uses.
fn check_namespace(c: &mut Checks, field: &str, namespace: &str) {
    if let Some(word) = RESERVED_PREFIXES.iter().find(|w| namespace.starts_with(*w)) {
        c.error(
            field,
            format!("namespace can't be prefixed with reserved word: {word}"),
        );
    }
}

/// `acme` (PRIORITY 1705).
pub struct Acme;

impl PluginSpec for Acme {
    const NAME: &'static str = "acme";
    const PRIORITY: i32 = 1705;
    const KIND: Kind = Kind::Acts;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("account_email: ops@example.com").unwrap();
        assert_eq!(c.api_uri, "https://acme-v02.api.letsencrypt.org/directory");
        assert_eq!(c.cert_type, CertType::Rsa);
        assert_eq!(c.rsa_key_size, 4096.0);
        assert_eq!(c.renew_threshold_days, 14.0);
        assert_eq!(c.fail_backoff_minutes, 5.0);
        assert_eq!(c.storage, Storage::Shm);
        assert!(!c.tos_accepted && !c.allow_any_domain && c.enable_ipv4_common_name);
        let s = &c.storage_config;
        assert_eq!(s.shm.shm_name, "kong");
        assert_eq!(
            (s.redis.port, s.redis.timeout, s.redis.database),
            (6379, 2000, 0)
        );
        assert_eq!(s.redis.extra_options.scan_count, 10.0);
        assert!(s.vault.tls_verify);
        assert_eq!(s.vault.auth_method, VaultAuthMethod::Token);
        assert_eq!(
            parse::<Config>("{}").unwrap_err(),
            [": missing field `account_email`"]
        );
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            r#"
account_email: ops@example.com
account_key: {key_id: k1, key_set: set1}
api_uri: https://acme.zerossl.com/v2/DV90
tos_accepted: true
eab_kid: kid
eab_hmac_key: hmac
cert_type: ecc
rsa_key_size: 2048
renew_threshold_days: 30
domains: [example.com, '*.example.org', 'api.*']
allow_any_domain: false
fail_backoff_minutes: 10
storage: vault
storage_config:
  shm: {shm_name: acme}
  kong: {}
  redis:
    host: redis.internal
    port: 6380
    timeout: 1000
    username: u
    password: p
    database: 2
    ssl: true
    ssl_verify: true
    server_name: redis.internal
    extra_options: {namespace: ns, scan_count: 20}
  consul: {https: true, host: consul, port: 8500, kv_path: acme, timeout: 100, token: t}
  vault:
    https: true
    host: vault
    port: 8200
    kv_path: secret/acme
    timeout: 100
    token: t
    tls_verify: false
    tls_server_name: vault.internal
    auth_method: kubernetes
    auth_path: kubernetes
    auth_role: acme
    jwt_path: /var/run/secrets/token
preferred_chain: ISRG Root X1
enable_ipv4_common_name: false
"#,
        )
        .unwrap();
        assert_eq!(c.account_key.unwrap().key_set.as_deref(), Some("set1"));
        assert_eq!(c.cert_type, CertType::Ecc);
        assert_eq!(c.storage, Storage::Vault);
        assert_eq!(
            c.storage_config.vault.auth_method,
            VaultAuthMethod::Kubernetes
        );
        assert_eq!(c.storage_config.redis.extra_options.namespace, "ns");
        assert_eq!(c.storage_config.consul.port, Some(8500));
        assert_eq!(c.domains.unwrap().len(), 3);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            r#"
account_email: nobody
api_uri: acme.example.com/directory
rsa_key_size: 1024
domains: ['*.*.example.com', 'a.*.example.com', 'bad_host!', 'example.com:99999']
storage: redis
storage_config:
  redis: {port: 70000, timeout: -1, server_name: 10.0.0.1, extra_options: {namespace: 'kong_acme:cert_key:x'}}
  vault: {host: 'vault:8200'}
"#,
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "account_email: invalid value: nobody",
                "api_uri: missing host in url",
                "rsa_key_size: expected one of: 2048, 3072, 4096",
                "domains[0]: invalid wildcard: must have at most one wildcard",
                "domains[1]: invalid wildcard: must be placed at leftmost or rightmost label",
                "domains[2]: invalid hostname: bad_host!",
                "domains[3]: invalid port number",
                "storage_config.redis.port: value should be between 0 and 65535",
                "storage_config.redis.timeout: value should be between 0 and 2147483646",
                "storage_config.redis.server_name: must not be an IP",
                "storage_config.redis.extra_options.namespace: namespace can't be prefixed with reserved word: kong_acme:cert_key:",
                "storage_config.vault.host: must not have a port",
                "storage_config.redis.host: required field missing (storage is redis)",
            ]
        );
        let errs = parse::<Config>(
            "account_email: a@b.c\napi_uri: https://acme-v02.api.letsencrypt.org\nstorage: kong",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "tos_accepted: terms of service must be accepted, see https://letsencrypt.org/repository/",
                "storage: \"kong\" storage can't be used with dbless mode",
            ]
        );
        assert_eq!(
            parse::<Config>("account_email: a@b.c\ncert_type: dsa").unwrap_err(),
            ["cert_type: `dsa` is not one of: rsa, ecc"]
        );
        assert_eq!(
            parse::<Config>("account_email: a@b.c\nstorage_config: {kong: {x: 1}}").unwrap_err(),
            ["storage_config.kong: unknown field `x`: this record has no fields"]
        );
        assert_eq!(
            parse::<Config>("account_email: a@b.c\nstorage_config: {redis: {hots: h}}")
                .unwrap_err(),
            ["storage_config.redis.hots: unknown field `hots`; did you mean `host`?"]
        );
        // A vault reference is not checked as an email.
        parse::<Config>("account_email: '{vault://env/ACME_EMAIL}'").unwrap();
    }

    #[test]
    fn deprecated_redis_names() {
        let c: Config = parse(
            "account_email: a@b.c\nstorage: redis\nstorage_config:\n  redis:\n    host: r\n    \
             auth: secret\n    ssl_server_name: redis.internal\n    namespace: ns\n    scan_count: 5",
        )
        .unwrap();
        let r = c.storage_config.redis.resolved();
        assert_eq!(r.password.as_deref(), Some("secret"));
        assert_eq!(r.server_name.as_deref(), Some("redis.internal"));
        assert_eq!(r.extra_options.namespace, "ns");
        assert_eq!(r.extra_options.scan_count, 5.0);
        assert_eq!((r.auth, r.namespace), (None, None));
        let errs = parse::<Config>(
            "account_email: a@b.c\nstorage_config:\n  redis:\n    auth: a\n    password: b\n    \
             namespace: x\n    extra_options: {namespace: y}",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "storage_config.redis.auth: both deprecated and new field are used but their values mismatch: auth vs password",
                "storage_config.redis.namespace: both deprecated and new field are used but their values mismatch: namespace = x vs extra_options.namespace = y",
            ]
        );
    }

    #[test]
    fn real_config() {
        // A decK dump (erichsend/api.erichsen.dev): every field spelled, `kong: []`, the
        // deprecated Redis names next to the new ones, vault references.
        let c: Config = parse(
            r#"
account_email: dave@example.com
account_key: null
allow_any_domain: true
api_uri: https://acme.zerossl.com/v2/DV90
cert_type: rsa
domains: []
eab_hmac_key: "{vault://env/ZEROSSL_EAB_HMAC_KEY}"
eab_kid: "{vault://env/ZEROSSL_EAB_KID}"
enable_ipv4_common_name: true
fail_backoff_minutes: 5
preferred_chain: null
renew_threshold_days: 14
rsa_key_size: 4096
storage: redis
storage_config:
  consul: {host: null, https: false, kv_path: null, port: null, timeout: null, token: null}
  kong: []
  redis:
    auth: "{vault://env/REDIS_PASSWORD}"
    database: 0
    extra_options: {namespace: "", scan_count: 10}
    host: konnect-kong-redis-master
    namespace: ""
    password: "{vault://env/REDIS_PASSWORD}"
    port: 6379
    scan_count: 10
    server_name: null
    ssl: false
    ssl_server_name: null
    ssl_verify: false
    timeout: 2000
    username: null
  shm: {shm_name: kong}
  vault: {auth_method: token, auth_path: null, auth_role: null, host: null, https: false, jwt_path: null, kv_path: null, port: null, timeout: null, tls_server_name: null, tls_verify: true, token: null}
tos_accepted: false
"#,
        )
        .unwrap();
        assert_eq!(c.storage_config.kong, NoFields);
        assert_eq!(
            c.storage_config.redis.host.as_deref(),
            Some("konnect-kong-redis-master")
        );
    }

    #[test]
    fn addresses() {
        let mut c = Checks::default();
        for ok in [
            "example.com",
            "10.1.2.3",
            "::1",
            "fe80::1",
            "localhost",
            "a_b.example.com.",
        ] {
            check_host(&mut c, ok, ok);
        }
        for ok in [
            "*.example.com",
            "example.*",
            "example.com:8443",
            "[::1]:80",
            "10.0.0.1:80",
        ] {
            check_wildcard_host(&mut c, ok, ok);
        }
        for ok in ["https://x.test/dir", "http://10.0.0.1:14000/dir"] {
            check_url(&mut c, ok, ok);
        }
        assert!(c.is_empty(), "{:?}", c.into_problems());
        let mut c = Checks::default();
        check_host(&mut c, "a", "300.1.1.1");
        check_host(&mut c, "b", "-.example.com");
        check_host(&mut c, "c", "[::1]:80");
        check_sni(&mut c, "d", "::1");
        check_url(&mut c, "e", "//host/only");
        let p: Vec<String> = c
            .into_problems()
            .iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect();
        assert_eq!(
            p,
            [
                "a: invalid value: 300.1.1.1",
                "b: invalid value: -.example.com",
                "c: must not have a port",
                "d: must not be an IP",
                "e: missing scheme in url",
            ]
        );
    }
}
