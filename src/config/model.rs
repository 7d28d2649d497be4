//! The validated model: what both dialects mean, with no file syntax left in it. Kong
//! services and routes, Ocelot routes and aggregates, upstreams, plugins and consumers all
//! end up here; `snapshot` compiles it into the runtime form.

use serde::Serialize;

use super::de::Captured;

/// Where an entity was declared, for messages, `explain` and the admin API.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Origin {
    pub file: String,
    pub line: u32,
    pub path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
    Tcp,
    Tls,
    #[serde(rename = "tls_passthrough")]
    TlsPassthrough,
    Udp,
    Ws,
    Wss,
}

impl Protocol {
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Https | Protocol::Grpcs | Protocol::Wss | Protocol::Tls | Protocol::TlsPassthrough => 443,
            _ => 80,
        }
    }
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs | Protocol::Wss | Protocol::Tls | Protocol::TlsPassthrough)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::TlsPassthrough => "tls_passthrough",
            Protocol::Udp => "udp",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Service {
    pub id: String,
    pub name: Option<String>,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
    pub retries: u32,
    pub connect_timeout: u64,
    pub write_timeout: u64,
    pub read_timeout: u64,
    pub enabled: bool,
    pub tls_verify: Option<bool>,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

impl Service {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// A route path as Kong reads it: a plain prefix, or a regex (written with a leading `~`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoutePath {
    Prefix(String),
    Regex(String),
}

impl Serialize for RoutePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RoutePath::Prefix(p) => s.serialize_str(p),
            RoutePath::Regex(r) => s.serialize_str(&format!("~{r}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum PathHandling {
    #[serde(rename = "v0")]
    V0,
    #[serde(rename = "v1")]
    V1,
}

/// A Kong route (or an Ocelot route translated to the same matching fields).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Route {
    pub id: String,
    pub name: Option<String>,
    /// Index into `Model::services`.
    #[serde(skip)]
    pub service: Option<usize>,
    pub protocols: Vec<Protocol>,
    pub methods: Vec<String>,
    pub hosts: Vec<String>,
    pub paths: Vec<RoutePath>,
    /// Header name (lower-cased) and accepted values, in file order.
    pub headers: Vec<(String, Vec<String>)>,
    pub snis: Vec<String>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub regex_priority: i64,
    pub path_handling: PathHandling,
    pub https_redirect_status_code: u16,
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

impl Route {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Upstream {
    pub id: String,
    pub name: String,
    pub algorithm: String,
    pub hash_on: String,
    pub hash_fallback: String,
    pub slots: u32,
    pub host_header: Option<String>,
    pub targets: Vec<Target>,
    pub healthchecks: Option<serde_json::Value>,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, Serialize, PartialEq, Default)]
pub struct PluginScope {
    #[serde(skip)]
    pub service: Option<usize>,
    #[serde(skip)]
    pub route: Option<usize>,
    #[serde(skip)]
    pub consumer: Option<usize>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Plugin {
    pub id: String,
    pub name: String,
    pub instance_name: Option<String>,
    pub enabled: bool,
    pub protocols: Vec<Protocol>,
    pub config: Captured,
    #[serde(flatten)]
    pub scope: PluginScope,
    /// The file the plugin was declared in, for errors found in its `config`.
    #[serde(skip)]
    pub file: String,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Consumer {
    pub id: String,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Vec<String>,
    /// Credentials by kind (`keyauth_credentials`, `acls`, ...), as written.
    pub credentials: Vec<(String, serde_json::Value)>,
}

/// The whole validated configuration of one load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Model {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub plugins: Vec<Plugin>,
    pub consumers: Vec<Consumer>,
    /// Entities that parse and are checked but not served yet, by kind, for warnings.
    #[serde(skip)]
    pub unserved: Vec<(String, Origin)>,
}

/// A stable id for entities written without one: the same name gives the same id on every
/// load, so state keyed by id survives reloads.
pub fn derived_id(kind: &str, key: &str) -> String {
    fn fnv(seed: u64, data: &[u8]) -> u64 {
        let mut h = seed;
        for b in data {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }
    let data = format!("{kind}\0{key}");
    let a = fnv(0xcbf29ce484222325, data.as_bytes());
    let b = fnv(0x84222325cbf29ce4, data.as_bytes());
    format!(
        "{:08x}-{:04x}-5{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}
