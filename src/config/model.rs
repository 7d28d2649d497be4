//! The validated model: what both dialects mean, with no file syntax left in it. Kong
//! services and routes, Ocelot routes and aggregates, upstreams, plugins and consumers all
//! end up here; `snapshot` compiles it into the runtime form.

use std::hash::Hasher;

use serde::Serialize;

use crate::fnv::Fnv;

use super::de::Captured;

/// Where an entity was declared, for messages, `explain` and the admin API.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub path: String,
}

/// Where an entity stands is not part of what it is: positions move when lines are added
/// above it, and that is no change (a reload's diff compares entities with `==`).
impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
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
            Protocol::Https
            | Protocol::Grpcs
            | Protocol::Wss
            | Protocol::Tls
            | Protocol::TlsPassthrough => 443,
            _ => 80,
        }
    }
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Protocol::Https
                | Protocol::Grpcs
                | Protocol::Wss
                | Protocol::Tls
                | Protocol::TlsPassthrough
        )
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
    /// Kong's `tls_verify_depth`: how long a chain the upstream may present.
    pub tls_verify_depth: Option<u8>,
    /// Indexes into `Model::ca_certificates`: the roots that verify the upstream.
    #[serde(skip)]
    pub ca_certificates: Vec<usize>,
    /// Index into `Model::certificates`: presented to the upstream (mTLS).
    #[serde(skip)]
    pub client_certificate: Option<usize>,
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
    /// Index into `Model::consumer_groups`.
    #[serde(skip)]
    pub consumer_group: Option<usize>,
}

impl PluginScope {
    /// It applies only once a consumer is identified (by a consumer or its group).
    pub fn is_consumer_scoped(&self) -> bool {
        self.consumer.is_some() || self.consumer_group.is_some()
    }
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
    /// Where its `name` was written, for errors about the name.
    #[serde(skip)]
    pub name_origin: Origin,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Consumer {
    pub id: String,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Vec<String>,
    /// Its credentials and acl groups, in file order.
    #[serde(skip)]
    pub credentials: Vec<Credential>,
    /// The consumer groups it belongs to (indices into `Model::consumer_groups`).
    #[serde(skip)]
    pub groups: Vec<usize>,
    #[serde(skip)]
    pub origin: Origin,
}

impl Consumer {
    /// The username, else the custom id, else the id: how messages name it.
    pub fn label(&self) -> &str {
        self.username
            .as_deref()
            .or(self.custom_id.as_deref())
            .unwrap_or(&self.id)
    }
}

/// A consumer's credential (or acl group), checked: required fields present, Kong's
/// defaults applied, uniqueness held.
#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    pub id: String,
    pub secret: Secret,
    pub tags: Vec<String>,
    pub origin: Origin,
}

/// What a credential holds, by kind. The secrets are here as written; everything that prints
/// a config redacts them (`admin::config_json`).
#[derive(Clone, Debug, PartialEq)]
pub enum Secret {
    KeyAuth {
        key: String,
    },
    BasicAuth {
        username: String,
        password: String,
    },
    Jwt {
        key: String,
        secret: String,
        algorithm: String,
        rsa_public_key: Option<String>,
    },
    HmacAuth {
        username: String,
        secret: String,
    },
    Acl {
        group: String,
    },
    /// Kept only to be printed: oauth2 cannot run without a database.
    OAuth2(serde_json::Value),
}

impl Secret {
    /// The entity list Kong's declarative format keeps it in.
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::KeyAuth { .. } => "keyauth_credentials",
            Secret::BasicAuth { .. } => "basicauth_credentials",
            Secret::Jwt { .. } => "jwt_secrets",
            Secret::HmacAuth { .. } => "hmacauth_credentials",
            Secret::Acl { .. } => "acls",
            Secret::OAuth2(_) => "oauth2_credentials",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConsumerGroup {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

/// A Kong `filter_chains` entry: Proxy-Wasm filters on a service's or a route's traffic.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FilterChain {
    pub id: String,
    pub name: Option<String>,
    pub enabled: bool,
    /// The service or route it is attached to.
    #[serde(flatten)]
    pub scope: PluginScope,
    /// Its enabled filters, in chain order (disabled ones are left out, as Kong leaves them).
    pub filters: Vec<Filter>,
    #[serde(skip)]
    pub origin: Origin,
}

/// One entry of a filter chain: the module `<filters dir>/<name>.wasm` and its config.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Filter {
    pub name: String,
    /// As written; what reaches the filter is made from it when the snapshot compiles.
    pub config: Option<Captured>,
    #[serde(skip)]
    pub origin: Origin,
}

/// Something configured on a route that switchyard does not enforce yet. The route answers
/// 503 naming it rather than pass traffic that it would have stopped or changed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Unenforced {
    pub what: String,
    #[serde(skip)]
    pub origin: Origin,
}

impl Unenforced {
    /// `what (file:line path)`, as the closed route's answer and `check` name it.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}:{} {})",
            self.what, self.origin.file, self.origin.line, self.origin.path
        )
    }
}

/// A PEM value of a certificate entity and where it was written, for errors about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pem {
    /// As written: PEM text, or a `{vault://...}` reference to it.
    pub text: String,
    pub origin: Origin,
}

/// A Kong `certificates` entity: a key pair (and an optional second one, `cert_alt` and
/// `key_alt`, so that ECDSA and RSA clients both get one) and the SNIs it answers for.
/// Keys never leave through `Serialize`: they print as `<redacted>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Certificate {
    pub id: String,
    #[serde(serialize_with = "pem_text")]
    pub cert: Pem,
    #[serde(serialize_with = "redacted")]
    pub key: Pem,
    #[serde(serialize_with = "pem_pair")]
    pub alt: Option<(Pem, Pem)>,
    /// SNI names, lower-cased (`*.example.com`, `example.*` or exact), nested or top-level.
    pub snis: Vec<String>,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

/// A Kong `ca_certificates` entity: a trusted root services may verify upstreams with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaCertificate {
    pub id: String,
    #[serde(serialize_with = "pem_text")]
    pub cert: Pem,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

fn pem_text<S: serde::Serializer>(p: &Pem, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.text)
}

fn redacted<S: serde::Serializer>(_: &Pem, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

fn pem_pair<S: serde::Serializer>(p: &Option<(Pem, Pem)>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some((cert, _)) => {
            serde_json::json!({ "cert_alt": cert.text, "key_alt": "<redacted>" }).serialize(s)
        }
        None => s.serialize_none(),
    }
}

/// The whole validated configuration of one load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Model {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub plugins: Vec<Plugin>,
    pub consumers: Vec<Consumer>,
    pub consumer_groups: Vec<ConsumerGroup>,
    pub filter_chains: Vec<FilterChain>,
    pub certificates: Vec<Certificate>,
    pub ca_certificates: Vec<CaCertificate>,
    /// The vaults secret references may name (Kong's `env`, and `vaults` entities).
    #[serde(skip)]
    pub vaults: super::vault::Vaults,
    /// Entities that parse and are checked but not served yet, and change nothing that passes
    /// (or close what they apply to by other means), by kind, for warnings.
    #[serde(skip)]
    pub unserved: Vec<(String, Origin)>,
    /// Ocelot routes, in Ocelot's merge order; each forwards to its own entry of `services`.
    pub ocelot_routes: Vec<OcelotRoute>,
    /// Ocelot aggregates, after the routes (Ocelot appends them to the candidates).
    pub ocelot_aggregates: Vec<OcelotAggregate>,
    /// JWT bearer providers routes name in AuthenticationOptions (switchyard's
    /// `GlobalConfiguration.AuthenticationProviders`, Ocelot's `AddJwtBearer` in C#).
    pub ocelot_auth_providers: Vec<OcelotAuthProvider>,
    /// What Ocelot would write as its merged `ocelot.json` (for `switchyard config`).
    #[serde(skip)]
    pub ocelot_merged: Option<serde_json::Value>,
    /// The directory the config was read from: relative paths in it (`JwksFile`) are
    /// relative to it.
    #[serde(skip)]
    pub config_dir: Option<std::path::PathBuf>,
}

/// An Ocelot route: how it matches (upstream side) and how it rewrites (downstream side).
/// The destination (scheme, hosts, timeouts, TLS verification) is its `service`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotRoute {
    pub id: String,
    /// Index into `Model::services`; `None` for service-discovery routes (not served yet).
    #[serde(skip)]
    pub service: Option<usize>,
    pub key: Option<String>,
    pub upstream: OcelotUpstream,
    pub downstream_path_template: String,
    /// Upper-case verb that replaces the client's (`DownstreamHttpMethod`).
    pub downstream_method: Option<String>,
    /// `DownstreamHttpVersion` as written (`1.0`, `1.1`, `2.0`, ...).
    pub downstream_version: Option<String>,
    /// Route keys first, then the global keys the route lacks.
    pub upstream_header_transform: Vec<(String, String)>,
    pub downstream_header_transform: Vec<(String, String)>,
    /// AuthenticationOptions (merged with the global ones) and the claims options.
    pub auth: OcelotAuth,
    /// The route's RequestIdKey, else the global one.
    pub request_id_key: Option<String>,
    pub security: Option<OcelotSecurity>,
    pub rate_limit: Option<OcelotRateLimit>,
    /// FileCacheOptions / CacheOptions merged with the global CacheOptions; `None` when
    /// the route does not cache (no options, or TtlSeconds 0).
    pub cache: Option<OcelotCache>,
    pub allow_auto_redirect: bool,
    pub use_cookie_container: bool,
    /// `GlobalConfiguration.BaseUrl`, for `{BaseUrl}`.
    pub base_url: String,
    /// Options the route carries that are not enforced yet: while any is, it answers 503.
    pub unenforced: Vec<Unenforced>,
    /// `ServiceName` of a service-discovery route (not served yet).
    pub service_name: Option<String>,
    #[serde(skip)]
    pub origin: Origin,
}

/// An Ocelot route's authentication and what it does with the claims, as Ocelot applies
/// them (AuthenticationMiddleware, ClaimsToClaims, AuthorizationMiddleware, ClaimsToHeaders,
/// ClaimsToQueryString, ClaimsToDownstreamPath, in that order).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct OcelotAuth {
    /// The providers to try, in order (AuthenticationProviderKey first); the first that
    /// authenticates wins. Empty: the route does not authenticate (no key, or AllowAnonymous).
    pub providers: Vec<String>,
    /// The `scope` claim must hold one of these (only on a route that authenticates).
    pub allowed_scopes: Vec<String>,
    /// RouteClaimsRequirement: claim type and required value (`{name}`: the placeholder's).
    pub claims_requirement: Vec<(String, String)>,
    pub claims_to_claims: Vec<ClaimToThing>,
    pub claims_to_headers: Vec<ClaimToThing>,
    pub claims_to_queries: Vec<ClaimToThing>,
    pub claims_to_path: Vec<ClaimToThing>,
}

impl OcelotAuth {
    /// Nothing to do for a request.
    pub fn is_empty(&self) -> bool {
        *self == OcelotAuth::default()
    }

    /// Something reads the route's placeholder values (a `{name}` requirement) or changes
    /// them (ChangeDownstreamPathTemplate).
    pub fn uses_placeholders(&self) -> bool {
        !self.claims_to_path.is_empty()
            || self
                .claims_requirement
                .iter()
                .any(|(_, v)| v.len() > 2 && v.starts_with('{') && v.ends_with('}'))
    }
}

/// One `Claims[type] > value[index] > delimiter` instruction (Ocelot's ClaimToThing): the
/// value of claim `new_key` (split on any character of `delimiter` and indexed, when there
/// is a delimiter) goes under `existing_key` (a header, query key, claim or placeholder).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ClaimToThing {
    pub existing_key: String,
    pub new_key: String,
    pub delimiter: String,
    pub index: i32,
}

/// A JWT bearer authentication provider (an ASP.NET `AddJwtBearer(name, ...)` scheme).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotAuthProvider {
    pub name: String,
    /// Accepted `iss` values; empty: the issuer is not checked (or, with `authority`, is
    /// the one its discovery document names).
    pub issuers: Vec<String>,
    /// No issuer named, one checked: the one the authority's discovery document names.
    pub issuer_from_authority: bool,
    /// Accepted `aud` values; empty: the audience is not checked.
    pub audiences: Vec<String>,
    pub validate_lifetime: bool,
    pub require_expiration: bool,
    pub clock_skew_s: u64,
    /// Accepted `alg` values; empty: any the key's type allows.
    pub algorithms: Vec<String>,
    /// Inline keys (PEM or JWK, possibly `{vault://...}` references), resolved and parsed
    /// when a snapshot compiles. Not printed: a symmetric key is a secret.
    #[serde(skip)]
    pub keys: Vec<KeySource>,
    pub jwks_file: Option<Located>,
    pub jwks_url: Option<Located>,
    /// OpenID Connect issuer whose discovery document names the JWKS (`Authority`).
    pub authority: Option<Located>,
    /// Background JWKS refresh period.
    pub jwks_refresh_s: u64,
    /// The shortest time between two fetches made for a token whose `kid` is unknown.
    pub jwks_min_refetch_s: u64,
    #[serde(skip)]
    pub origin: Origin,
}

/// An inline key as written, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySource {
    pub key: Captured,
    pub origin: Origin,
}

/// A setting's value and where it was written.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Located {
    pub value: String,
    #[serde(skip)]
    pub origin: Origin,
}

/// The matching side shared by routes and aggregates.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotUpstream {
    pub path_template: String,
    /// Upper-case verbs; empty = every verb.
    pub methods: Vec<String>,
    /// `host` or `host:port`.
    pub host: Option<String>,
    /// Header name and value template, in file order.
    pub header_templates: Vec<(String, String)>,
    pub case_sensitive: bool,
    /// As written (default 1); the catch-all `/{x}` is forced to 0 when compiled.
    pub priority: i32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotSecurity {
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
    pub exclude_allowed_from_blocked: bool,
}

/// Ocelot 24.1+ rate limiting, legacy names already folded in.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotRateLimit {
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
    /// The counters' Redis (`GlobalConfiguration.RateLimitOptions.Redis`, switchyard's
    /// extension); `None`: counted in this process.
    pub redis: Option<OcelotRedis>,
    /// What Ocelot keys a route's counters by: its load-balancing key.
    pub counter_key: String,
}

/// Where Ocelot rate-limit counters are kept when they are shared.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct OcelotRedis {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    pub ssl: bool,
    pub ssl_verify: bool,
    pub timeout_ms: u64,
}

/// Ocelot output caching of one route (CacheOptionsCreator's result, with UseCache true).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotCache {
    pub ttl_seconds: u64,
    /// As written, else Ocelot's default: the route's load-balancing key.
    pub region: String,
    /// The request header whose value is part of the key (default `OC-Cache-Control`).
    pub header: String,
    pub enable_content_hashing: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotAggregate {
    pub id: String,
    pub upstream: OcelotUpstream,
    pub route_keys: Vec<String>,
    /// Index into `Model::ocelot_routes` per route key (the first route with that Key).
    #[serde(skip)]
    pub parts: Vec<usize>,
    pub route_keys_config: Vec<OcelotRouteKeyConfig>,
    pub aggregator: Option<String>,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OcelotRouteKeyConfig {
    pub route_key: String,
    pub json_path: String,
    pub parameter: String,
}

/// A stable id for entities written without one: the same name gives the same id on every
/// load, so state keyed by id survives reloads.
pub fn derived_id(kind: &str, key: &str) -> String {
    // Every route without an id gets one on every load: hashed and written out by hand,
    // since `format!` would be most of a 10,000-route load's cost here.
    fn fnv(seed: u64, parts: [&[u8]; 3]) -> u64 {
        let mut h = Fnv::with_seed(seed);
        parts.iter().for_each(|p| h.write(p));
        h.finish()
    }
    fn hex(out: &mut String, v: u64, digits: u32) {
        for i in (0..digits).rev() {
            let d = ((v >> (4 * i)) & 0xf) as u32;
            out.push(char::from_digit(d, 16).unwrap_or('0'));
        }
    }
    let data = [kind.as_bytes(), b"\0", key.as_bytes()];
    let a = fnv(Fnv::OFFSET, data);
    let b = fnv(0x84222325cbf29ce4, data);
    let mut id = String::with_capacity(36);
    hex(&mut id, a >> 32, 8);
    id.push('-');
    hex(&mut id, (a >> 16) & 0xffff, 4);
    id.push_str("-5");
    hex(&mut id, a & 0xfff, 3);
    id.push('-');
    hex(&mut id, 0x8000 | ((b >> 48) & 0x3fff), 4);
    id.push('-');
    hex(&mut id, b & 0xffff_ffff_ffff, 12);
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn derived_ids_are_stable() {
        // The ids of earlier releases: state kept by id must find its entries again.
        let old = |kind: &str, key: &str| {
            let fnv = |seed: u64, data: &[u8]| {
                data.iter()
                    .fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
            };
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
        };
        for (kind, key) in [("routes", "r1"), ("services", ""), ("plugins", "x:None:é")] {
            assert_eq!(super::derived_id(kind, key), old(kind, key));
        }
    }
}
