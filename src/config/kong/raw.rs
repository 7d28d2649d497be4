//! Raw Kong declarative config (`kong.yaml`, `kong.yml`, `kong.json`): serde types that mirror
//! the file exactly. Defaults and meaning are applied in `super::load`, not here.

use serde::Deserialize;

use crate::config::de::{Captured, Entities};

#[derive(Deserialize, Debug, Default)]
pub struct RawKong {
    #[serde(rename = "_format_version")]
    pub format_version: Option<String>,
    #[serde(rename = "_transform")]
    pub transform: Option<bool>,
    #[serde(default)]
    pub services: Entities<RawService>,
    #[serde(default)]
    pub routes: Entities<RawRoute>,
    #[serde(default)]
    pub consumers: Entities<RawConsumer>,
    #[serde(default)]
    pub plugins: Entities<RawPlugin>,
    #[serde(default)]
    pub upstreams: Entities<RawUpstream>,
    #[serde(default)]
    pub targets: Entities<RawTarget>,
    #[serde(default)]
    pub certificates: Entities<RawCertificate>,
    #[serde(default)]
    pub snis: Entities<RawSni>,
    #[serde(default)]
    pub ca_certificates: Entities<RawCaCertificate>,
    #[serde(default)]
    pub vaults: Entities<RawVault>,
    #[serde(default)]
    pub key_sets: Entities<Captured>,
    #[serde(default)]
    pub keys: Entities<Captured>,
    #[serde(default)]
    pub filter_chains: Entities<RawFilterChain>,
    #[serde(default)]
    pub consumer_groups: Entities<RawConsumerGroup>,
    #[serde(default)]
    pub keyauth_credentials: Entities<RawKeyAuth>,
    #[serde(default)]
    pub basicauth_credentials: Entities<RawBasicAuth>,
    #[serde(default)]
    pub hmacauth_credentials: Entities<RawHmacAuth>,
    #[serde(default)]
    pub jwt_secrets: Entities<RawJwtSecret>,
    #[serde(default)]
    pub acls: Entities<RawAcl>,
    #[serde(default)]
    pub oauth2_credentials: Entities<Captured>,
}

/// A foreign key: a name or id string, or `{id: ...}` / `{name: ...}`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum RawRef {
    Key(String),
    Object {
        id: Option<String>,
        name: Option<String>,
        username: Option<String>,
    },
}

impl RawRef {
    pub fn key(&self) -> Option<&str> {
        match self {
            RawRef::Key(k) => Some(k),
            RawRef::Object { id, name, username } => {
                id.as_deref().or(name.as_deref()).or(username.as_deref())
            }
        }
    }
}

#[derive(Deserialize, Debug, Default)]
pub struct RawService {
    pub id: Option<String>,
    pub name: Option<String>,
    pub url: Option<String>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
    pub retries: Option<i64>,
    pub connect_timeout: Option<i64>,
    pub write_timeout: Option<i64>,
    pub read_timeout: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub client_certificate: Option<RawRef>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<i64>,
    pub ca_certificates: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub routes: Entities<RawRoute>,
    #[serde(default)]
    pub plugins: Entities<RawPlugin>,
    #[serde(default)]
    pub filter_chains: Entities<RawFilterChain>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawRoute {
    pub id: Option<String>,
    pub name: Option<String>,
    pub service: Option<RawRef>,
    pub protocols: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<indexmap::IndexMap<String, StringOrList>>,
    pub snis: Option<Vec<String>>,
    pub sources: Option<Vec<Captured>>,
    pub destinations: Option<Vec<Captured>>,
    pub https_redirect_status_code: Option<i64>,
    pub regex_priority: Option<i64>,
    pub strip_path: Option<bool>,
    pub path_handling: Option<String>,
    pub preserve_host: Option<bool>,
    pub request_buffering: Option<bool>,
    pub response_buffering: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub plugins: Entities<RawPlugin>,
    #[serde(default)]
    pub filter_chains: Entities<RawFilterChain>,
}

/// Header values are a list; a single value is accepted as a list of one.
#[derive(Debug, Clone)]
pub struct StringOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v.to_string()]))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v.to_string()]))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v.to_string()]))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StringOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug, Default)]
pub struct RawPlugin {
    pub id: Option<String>,
    pub name: Option<String>,
    pub instance_name: Option<String>,
    pub config: Option<Captured>,
    pub enabled: Option<bool>,
    pub protocols: Option<Vec<String>>,
    pub service: Option<RawRef>,
    pub route: Option<RawRef>,
    pub consumer: Option<RawRef>,
    pub consumer_group: Option<RawRef>,
    pub ordering: Option<Captured>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawUpstream {
    pub id: Option<String>,
    pub name: Option<String>,
    pub algorithm: Option<String>,
    pub hash_on: Option<String>,
    pub hash_fallback: Option<String>,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    pub hash_on_cookie_path: Option<String>,
    pub hash_on_query_arg: Option<String>,
    pub hash_fallback_query_arg: Option<String>,
    pub hash_on_uri_capture: Option<String>,
    pub hash_fallback_uri_capture: Option<String>,
    pub slots: Option<i64>,
    pub healthchecks: Option<Captured>,
    pub tags: Option<Vec<String>>,
    pub host_header: Option<String>,
    pub client_certificate: Option<RawRef>,
    pub use_srv_name: Option<bool>,
    pub created_at: Option<i64>,
    #[serde(default)]
    pub targets: Entities<RawTarget>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawTarget {
    pub id: Option<String>,
    pub target: Option<String>,
    pub weight: Option<i64>,
    pub upstream: Option<RawRef>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<f64>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawConsumer {
    pub id: Option<String>,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    #[serde(default)]
    pub plugins: Entities<RawPlugin>,
    #[serde(default)]
    pub groups: Entities<RawRef>,
    #[serde(default)]
    pub keyauth_credentials: Entities<RawKeyAuth>,
    #[serde(default)]
    pub basicauth_credentials: Entities<RawBasicAuth>,
    #[serde(default)]
    pub hmacauth_credentials: Entities<RawHmacAuth>,
    #[serde(default)]
    pub jwt_secrets: Entities<RawJwtSecret>,
    #[serde(default)]
    pub acls: Entities<RawAcl>,
    #[serde(default)]
    pub oauth2_credentials: Entities<Captured>,
}

/// A key-auth credential (`keyauth_credentials`).
#[derive(Deserialize, Debug, Default)]
pub struct RawKeyAuth {
    pub id: Option<String>,
    pub key: Option<String>,
    pub ttl: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub consumer: Option<RawRef>,
    pub created_at: Option<f64>,
}

/// A basic-auth credential (`basicauth_credentials`).
#[derive(Deserialize, Debug, Default)]
pub struct RawBasicAuth {
    pub id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tags: Option<Vec<String>>,
    pub consumer: Option<RawRef>,
    pub created_at: Option<f64>,
}

/// A jwt credential (`jwt_secrets`).
#[derive(Deserialize, Debug, Default)]
pub struct RawJwtSecret {
    pub id: Option<String>,
    pub key: Option<String>,
    pub secret: Option<String>,
    pub algorithm: Option<String>,
    pub rsa_public_key: Option<String>,
    pub tags: Option<Vec<String>>,
    pub consumer: Option<RawRef>,
    pub created_at: Option<f64>,
}

/// An hmac-auth credential (`hmacauth_credentials`).
#[derive(Deserialize, Debug, Default)]
pub struct RawHmacAuth {
    pub id: Option<String>,
    pub username: Option<String>,
    pub secret: Option<String>,
    pub tags: Option<Vec<String>>,
    pub consumer: Option<RawRef>,
    pub created_at: Option<f64>,
}

/// An acl group membership (`acls`).
#[derive(Deserialize, Debug, Default)]
pub struct RawAcl {
    pub id: Option<String>,
    pub group: Option<String>,
    pub tags: Option<Vec<String>>,
    pub consumer: Option<RawRef>,
    pub created_at: Option<f64>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawConsumerGroup {
    pub id: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub plugins: Entities<RawPlugin>,
    #[serde(default)]
    pub consumers: Entities<RawRef>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawCertificate {
    pub id: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cert_alt: Option<String>,
    pub key_alt: Option<String>,
    pub tags: Option<Vec<String>>,
    pub created_at: Option<i64>,
    #[serde(default)]
    pub snis: Entities<RawSniOrName>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum RawSniOrName {
    Name(String),
    Sni {
        id: Option<String>,
        name: String,
        tags: Option<Vec<String>>,
    },
}

#[derive(Deserialize, Debug, Default)]
pub struct RawSni {
    pub id: Option<String>,
    pub name: Option<String>,
    pub certificate: Option<RawRef>,
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawCaCertificate {
    pub id: Option<String>,
    pub cert: Option<String>,
    pub cert_digest: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawVault {
    pub id: Option<String>,
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub description: Option<String>,
    pub config: Option<Captured>,
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawFilterChain {
    pub id: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub route: Option<RawRef>,
    pub service: Option<RawRef>,
    pub filters: Option<Vec<RawFilter>>,
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawFilter {
    pub name: Option<String>,
    pub config: Option<Captured>,
    pub enabled: Option<bool>,
}
