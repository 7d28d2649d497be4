//! Raw Ocelot file types (`FileConfiguration` and its parts, Ocelot 25.0 plus the pre-16 names
//! still found in the wild). They mirror the files; meaning, defaults and validation are
//! applied in `super`. Keys match case-insensitively (the deserializer canonicalises them to
//! the names below), and an old spelling is its own field so that both spellings in one object
//! can be reported.

use indexmap::IndexMap;
use serde::Deserialize;

use crate::config::de::Captured;

/// One route (`FileRoute`).
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawRoute {
    #[serde(rename = "DownstreamPathTemplate")]
    pub downstream_path_template: Option<String>,
    #[serde(rename = "UpstreamPathTemplate")]
    pub upstream_path_template: Option<String>,
    #[serde(rename = "UpstreamHttpMethod")]
    pub upstream_http_method: Option<Vec<String>>,
    #[serde(rename = "UpstreamHost")]
    pub upstream_host: Option<String>,
    #[serde(rename = "UpstreamHeaderTemplates")]
    pub upstream_header_templates: Option<IndexMap<String, String>>,
    #[serde(rename = "RouteIsCaseSensitive")]
    pub route_is_case_sensitive: Option<bool>,
    #[serde(rename = "ReRouteIsCaseSensitive")]
    pub reroute_is_case_sensitive: Option<bool>,
    #[serde(rename = "Priority")]
    pub priority: Option<i32>,
    #[serde(rename = "DownstreamScheme")]
    pub downstream_scheme: Option<String>,
    #[serde(rename = "DownstreamHostAndPorts")]
    pub downstream_host_and_ports: Option<Vec<RawHostAndPort>>,
    /// Ocelot < 5: one host and port instead of `DownstreamHostAndPorts`.
    #[serde(rename = "DownstreamHost")]
    pub downstream_host: Option<String>,
    #[serde(rename = "DownstreamPort")]
    pub downstream_port: Option<i64>,
    #[serde(rename = "DownstreamHttpMethod")]
    pub downstream_http_method: Option<String>,
    #[serde(rename = "DownstreamHttpVersion")]
    pub downstream_http_version: Option<String>,
    #[serde(rename = "DownstreamHttpVersionPolicy")]
    pub downstream_http_version_policy: Option<String>,
    #[serde(rename = "Key")]
    pub key: Option<String>,
    #[serde(rename = "Timeout")]
    pub timeout: Option<i64>,
    #[serde(rename = "QoSOptions")]
    pub qos_options: Option<RawQoS>,
    #[serde(rename = "LoadBalancerOptions")]
    pub load_balancer_options: Option<RawLoadBalancer>,
    /// Ocelot < 7: the balancer type as a string.
    #[serde(rename = "LoadBalancer")]
    pub load_balancer: Option<String>,
    #[serde(rename = "RateLimitOptions")]
    pub rate_limit_options: Option<RawRateLimit>,
    #[serde(rename = "CacheOptions")]
    pub cache_options: Option<RawCache>,
    #[serde(rename = "FileCacheOptions")]
    pub file_cache_options: Option<RawCache>,
    #[serde(rename = "HttpHandlerOptions")]
    pub http_handler_options: Option<RawHttpHandler>,
    #[serde(rename = "AuthenticationOptions")]
    pub authentication_options: Option<RawAuthentication>,
    #[serde(rename = "SecurityOptions")]
    pub security_options: Option<RawSecurity>,
    #[serde(rename = "RouteClaimsRequirement")]
    pub route_claims_requirement: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "AddHeadersToRequest")]
    pub add_headers_to_request: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "AddClaimsToRequest")]
    pub add_claims_to_request: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "AddQueriesToRequest")]
    pub add_queries_to_request: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "ChangeDownstreamPathTemplate")]
    pub change_downstream_path_template: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "UpstreamHeaderTransform")]
    pub upstream_header_transform: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "DownstreamHeaderTransform")]
    pub downstream_header_transform: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "RequestIdKey")]
    pub request_id_key: Option<String>,
    #[serde(rename = "DelegatingHandlers")]
    pub delegating_handlers: Option<Vec<String>>,
    #[serde(rename = "DangerousAcceptAnyServerCertificateValidator")]
    pub dangerous_accept_any_server_certificate_validator: Option<bool>,
    #[serde(rename = "ServiceName")]
    pub service_name: Option<String>,
    #[serde(rename = "ServiceNamespace")]
    pub service_namespace: Option<String>,
    /// Ocelot < 7: a flag next to ServiceName.
    #[serde(rename = "UseServiceDiscovery")]
    pub use_service_discovery: Option<bool>,
    #[serde(rename = "Metadata")]
    pub metadata: Option<Captured>,
    /// MMLib.SwaggerForOcelot's key; Ocelot ignores it.
    #[serde(rename = "SwaggerKey")]
    pub swagger_key: Option<Captured>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawHostAndPort {
    #[serde(rename = "Host")]
    pub host: Option<String>,
    #[serde(rename = "Port")]
    pub port: Option<i64>,
}

/// An aggregate (`FileAggregateRoute`).
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawAggregate {
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
    #[serde(rename = "ReRouteKeys")]
    pub reroute_keys: Option<Vec<String>>,
    #[serde(rename = "RouteKeysConfig")]
    pub route_keys_config: Option<Vec<RawRouteKeyConfig>>,
    #[serde(rename = "ReRouteKeysConfig")]
    pub reroute_keys_config: Option<Vec<RawRouteKeyConfig>>,
    #[serde(rename = "UpstreamPathTemplate")]
    pub upstream_path_template: Option<String>,
    #[serde(rename = "UpstreamHost")]
    pub upstream_host: Option<String>,
    #[serde(rename = "UpstreamHttpMethod")]
    pub upstream_http_method: Option<Vec<String>>,
    #[serde(rename = "UpstreamHeaderTemplates")]
    pub upstream_header_templates: Option<IndexMap<String, String>>,
    #[serde(rename = "RouteIsCaseSensitive")]
    pub route_is_case_sensitive: Option<bool>,
    #[serde(rename = "ReRouteIsCaseSensitive")]
    pub reroute_is_case_sensitive: Option<bool>,
    #[serde(rename = "Aggregator")]
    pub aggregator: Option<String>,
    #[serde(rename = "Priority")]
    pub priority: Option<i32>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawRouteKeyConfig {
    #[serde(rename = "RouteKey")]
    pub route_key: Option<String>,
    #[serde(rename = "ReRouteKey")]
    pub reroute_key: Option<String>,
    #[serde(rename = "JsonPath")]
    pub json_path: Option<String>,
    #[serde(rename = "Parameter")]
    pub parameter: Option<String>,
}

/// `GlobalConfiguration` (`FileGlobalConfiguration`).
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawGlobal {
    #[serde(rename = "BaseUrl")]
    pub base_url: Option<String>,
    #[serde(rename = "RequestIdKey")]
    pub request_id_key: Option<String>,
    #[serde(rename = "DownstreamScheme")]
    pub downstream_scheme: Option<String>,
    #[serde(rename = "DownstreamHttpVersion")]
    pub downstream_http_version: Option<String>,
    #[serde(rename = "DownstreamHttpVersionPolicy")]
    pub downstream_http_version_policy: Option<String>,
    #[serde(rename = "Timeout")]
    pub timeout: Option<i64>,
    #[serde(rename = "ServiceDiscoveryProvider")]
    pub service_discovery_provider: Option<RawServiceDiscovery>,
    #[serde(rename = "RateLimitOptions")]
    pub rate_limit_options: Option<RawRateLimit>,
    #[serde(rename = "QoSOptions")]
    pub qos_options: Option<RawQoS>,
    #[serde(rename = "LoadBalancerOptions")]
    pub load_balancer_options: Option<RawLoadBalancer>,
    #[serde(rename = "HttpHandlerOptions")]
    pub http_handler_options: Option<RawHttpHandler>,
    #[serde(rename = "AuthenticationOptions")]
    pub authentication_options: Option<RawAuthentication>,
    #[serde(rename = "CacheOptions")]
    pub cache_options: Option<RawCache>,
    #[serde(rename = "FileCacheOptions")]
    pub file_cache_options: Option<RawCache>,
    #[serde(rename = "SecurityOptions")]
    pub security_options: Option<RawSecurity>,
    #[serde(rename = "Metadata")]
    pub metadata: Option<Captured>,
    #[serde(rename = "MetadataOptions")]
    pub metadata_options: Option<Captured>,
    #[serde(rename = "UpstreamHeaderTransform")]
    pub upstream_header_transform: Option<IndexMap<String, Option<String>>>,
    #[serde(rename = "DownstreamHeaderTransform")]
    pub downstream_header_transform: Option<IndexMap<String, Option<String>>>,
    /// switchyard's JWT bearer providers (Ocelot registers them in C#): `super::auth`.
    #[serde(rename = "AuthenticationProviders")]
    pub authentication_providers: Option<IndexMap<String, super::auth::RawAuthProvider>>,
    /// Read by the Administration API setup (`AddAdministration`), not by routing.
    #[serde(rename = "AdministrationPath")]
    pub administration_path: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawServiceDiscovery {
    #[serde(rename = "Scheme")]
    pub scheme: Option<String>,
    #[serde(rename = "Host")]
    pub host: Option<String>,
    #[serde(rename = "Port")]
    pub port: Option<i64>,
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    #[serde(rename = "Token")]
    pub token: Option<String>,
    #[serde(rename = "ConfigurationKey")]
    pub configuration_key: Option<String>,
    #[serde(rename = "PollingInterval")]
    pub polling_interval: Option<i64>,
    #[serde(rename = "Namespace")]
    pub namespace: Option<String>,
}

/// `RateLimitOptions`: the 24.1+ names and the legacy ones (which win when both are set).
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawRateLimit {
    #[serde(rename = "EnableRateLimiting")]
    pub enable_rate_limiting: Option<bool>,
    #[serde(rename = "Limit")]
    pub limit: Option<i64>,
    #[serde(rename = "Period")]
    pub period: Option<String>,
    #[serde(rename = "Wait")]
    pub wait: Option<String>,
    #[serde(rename = "PeriodTimespan")]
    pub period_timespan: Option<f64>,
    #[serde(rename = "ClientIdHeader")]
    pub client_id_header: Option<String>,
    #[serde(rename = "ClientWhitelist")]
    pub client_whitelist: Option<Vec<String>>,
    #[serde(rename = "EnableHeaders")]
    pub enable_headers: Option<bool>,
    #[serde(rename = "DisableRateLimitHeaders")]
    pub disable_rate_limit_headers: Option<bool>,
    #[serde(rename = "StatusCode")]
    pub status_code: Option<i64>,
    #[serde(rename = "HttpStatusCode")]
    pub http_status_code: Option<i64>,
    #[serde(rename = "QuotaMessage")]
    pub quota_message: Option<String>,
    #[serde(rename = "QuotaExceededMessage")]
    pub quota_exceeded_message: Option<String>,
    #[serde(rename = "KeyPrefix")]
    pub key_prefix: Option<String>,
    #[serde(rename = "RateLimitCounterPrefix")]
    pub rate_limit_counter_prefix: Option<String>,
    /// ASP.NET Core rate limiter policy name (25.0); needs code registration.
    #[serde(rename = "Policy")]
    pub policy: Option<String>,
    /// Pre-25.0 development spelling of `Policy`: `DotNet` with `RateLimitPolicyName`.
    #[serde(rename = "RateLimitMiddlewareType")]
    pub rate_limit_middleware_type: Option<String>,
    #[serde(rename = "RateLimitPolicyName")]
    pub rate_limit_policy_name: Option<String>,
    /// Global group membership (24.1+): empty = every route.
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
    /// switchyard's extension (global only): counters in Redis, read as `RawRedis` by
    /// `super::redis` (strictly: unknown keys are errors).
    #[serde(rename = "Redis")]
    pub redis: Option<Captured>,
}

/// `GlobalConfiguration.RateLimitOptions.Redis` (switchyard's extension).
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawRedis {
    #[serde(rename = "Host")]
    pub host: Option<String>,
    #[serde(rename = "Port")]
    pub port: Option<i64>,
    #[serde(rename = "Username")]
    pub username: Option<String>,
    #[serde(rename = "Password")]
    pub password: Option<String>,
    #[serde(rename = "Database")]
    pub database: Option<i64>,
    #[serde(rename = "Ssl")]
    pub ssl: Option<bool>,
    #[serde(rename = "SslVerify")]
    pub ssl_verify: Option<bool>,
    /// Milliseconds.
    #[serde(rename = "Timeout")]
    pub timeout: Option<i64>,
}

impl RawRateLimit {
    /// The route's rule with what it leaves unset (or empty) taken from the global rule of
    /// its group.
    pub fn inherit(self, gl: &RawRateLimit) -> RawRateLimit {
        let mut m = self;
        m.client_id_header = m
            .client_id_header
            .filter(|s| !s.is_empty())
            .or(gl.client_id_header.clone());
        if m.client_whitelist.as_ref().is_none_or(|l| l.is_empty()) {
            m.client_whitelist = gl.client_whitelist.clone();
        }
        m.disable_rate_limit_headers = m
            .disable_rate_limit_headers
            .or(gl.disable_rate_limit_headers);
        m.enable_headers = m.enable_headers.or(gl.enable_headers);
        m.http_status_code = m.http_status_code.or(gl.http_status_code);
        m.status_code = m.status_code.or(gl.status_code);
        m.quota_exceeded_message = m
            .quota_exceeded_message
            .filter(|s| !s.is_empty())
            .or(gl.quota_exceeded_message.clone());
        m.quota_message = m
            .quota_message
            .filter(|s| !s.is_empty())
            .or(gl.quota_message.clone());
        m.rate_limit_counter_prefix = m
            .rate_limit_counter_prefix
            .filter(|s| !s.is_empty())
            .or(gl.rate_limit_counter_prefix.clone());
        m.key_prefix = m
            .key_prefix
            .filter(|s| !s.is_empty())
            .or(gl.key_prefix.clone());
        m.period = m
            .period
            .filter(|s| !s.trim().is_empty())
            .or(gl.period.clone());
        m.period_timespan = m.period_timespan.or(gl.period_timespan);
        m.wait = m.wait.filter(|s| !s.trim().is_empty()).or(gl.wait.clone());
        m.limit = m.limit.or(gl.limit);
        m.policy = m.policy.filter(|s| !s.is_empty()).or(gl.policy.clone());
        m.rate_limit_middleware_type = m
            .rate_limit_middleware_type
            .filter(|s| !s.is_empty())
            .or(gl.rate_limit_middleware_type.clone());
        m.rate_limit_policy_name = m
            .rate_limit_policy_name
            .filter(|s| !s.is_empty())
            .or(gl.rate_limit_policy_name.clone());
        m
    }

    /// The ASP.NET Core rate limiter policy this names, if any (`Policy`, or the earlier
    /// `RateLimitMiddlewareType: DotNet` + `RateLimitPolicyName`).
    pub fn aspnet_policy(&self) -> Option<&str> {
        let dotnet = self
            .rate_limit_middleware_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("DotNet"));
        self.policy.as_deref().filter(|p| !p.is_empty()).or(self
            .rate_limit_policy_name
            .as_deref()
            .filter(|p| dotnet && !p.is_empty()))
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawQoS {
    #[serde(rename = "MinimumThroughput")]
    pub minimum_throughput: Option<i64>,
    #[serde(rename = "ExceptionsAllowedBeforeBreaking")]
    pub exceptions_allowed_before_breaking: Option<i64>,
    #[serde(rename = "BreakDuration")]
    pub break_duration: Option<i64>,
    #[serde(rename = "DurationOfBreak")]
    pub duration_of_break: Option<i64>,
    #[serde(rename = "FailureRatio")]
    pub failure_ratio: Option<f64>,
    #[serde(rename = "SamplingDuration")]
    pub sampling_duration: Option<i64>,
    #[serde(rename = "Timeout")]
    pub timeout: Option<i64>,
    #[serde(rename = "TimeoutValue")]
    pub timeout_value: Option<i64>,
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
}

impl RawQoS {
    /// QoS is active when one of its thresholds is set (`QoSOptions.UseQos`).
    pub fn active(&self) -> bool {
        let throughput = self
            .exceptions_allowed_before_breaking
            .or(self.minimum_throughput)
            .unwrap_or(0);
        let timeout = self.timeout_value.or(self.timeout).unwrap_or(0);
        throughput > 0 || timeout > 0 || self.failure_ratio.unwrap_or(0.0) > 0.0
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawLoadBalancer {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    #[serde(rename = "Key")]
    pub key: Option<String>,
    #[serde(rename = "Expiry")]
    pub expiry: Option<i64>,
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawCache {
    #[serde(rename = "TtlSeconds")]
    pub ttl_seconds: Option<i64>,
    #[serde(rename = "Region")]
    pub region: Option<String>,
    #[serde(rename = "Header")]
    pub header: Option<String>,
    #[serde(rename = "EnableContentHashing")]
    pub enable_content_hashing: Option<bool>,
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawHttpHandler {
    #[serde(rename = "AllowAutoRedirect")]
    pub allow_auto_redirect: Option<bool>,
    #[serde(rename = "UseCookieContainer")]
    pub use_cookie_container: Option<bool>,
    #[serde(rename = "UseTracing")]
    pub use_tracing: Option<bool>,
    #[serde(rename = "UseProxy")]
    pub use_proxy: Option<bool>,
    #[serde(rename = "MaxConnectionsPerServer")]
    pub max_connections_per_server: Option<i64>,
    #[serde(rename = "PooledConnectionLifetimeSeconds")]
    pub pooled_connection_lifetime_seconds: Option<i64>,
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawAuthentication {
    #[serde(rename = "AuthenticationProviderKey")]
    pub authentication_provider_key: Option<String>,
    #[serde(rename = "AuthenticationProviderKeys")]
    pub authentication_provider_keys: Option<Vec<String>>,
    #[serde(rename = "AllowedScopes")]
    pub allowed_scopes: Option<Vec<String>>,
    #[serde(rename = "AllowAnonymous")]
    pub allow_anonymous: Option<bool>,
    #[serde(rename = "RouteKeys")]
    pub route_keys: Option<Vec<String>>,
}

impl RawAuthentication {
    /// Names at least one authentication scheme (an empty section authenticates nothing).
    pub fn has_provider(&self) -> bool {
        self.authentication_provider_key
            .as_deref()
            .is_some_and(|k| !k.trim().is_empty())
            || self
                .authentication_provider_keys
                .as_ref()
                .is_some_and(|ks| ks.iter().any(|k| !k.trim().is_empty()))
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawSecurity {
    #[serde(rename = "IPAllowedList")]
    pub ip_allowed_list: Option<Vec<String>>,
    #[serde(rename = "IPBlockedList")]
    pub ip_blocked_list: Option<Vec<String>>,
    #[serde(rename = "ExcludeAllowedFromBlocked")]
    pub exclude_allowed_from_blocked: Option<bool>,
}

/// A dynamic route (`FileDynamicRoute`): only used with service discovery, not served yet.
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawDynamicRoute {
    #[serde(rename = "ServiceName")]
    pub service_name: Option<String>,
    #[serde(rename = "ServiceNamespace")]
    pub service_namespace: Option<String>,
    #[serde(rename = "Key")]
    pub key: Option<String>,
    #[serde(rename = "RateLimitRule")]
    pub rate_limit_rule: Option<RawRateLimit>,
    #[serde(rename = "RateLimitOptions")]
    pub rate_limit_options: Option<RawRateLimit>,
    #[serde(rename = "DownstreamHttpVersion")]
    pub downstream_http_version: Option<String>,
    #[serde(rename = "DownstreamHttpVersionPolicy")]
    pub downstream_http_version_policy: Option<String>,
    #[serde(rename = "DownstreamScheme")]
    pub downstream_scheme: Option<String>,
    #[serde(rename = "Timeout")]
    pub timeout: Option<i64>,
    #[serde(rename = "AuthenticationOptions")]
    pub authentication_options: Option<RawAuthentication>,
    #[serde(rename = "CacheOptions")]
    pub cache_options: Option<RawCache>,
    #[serde(rename = "HttpHandlerOptions")]
    pub http_handler_options: Option<RawHttpHandler>,
    #[serde(rename = "LoadBalancerOptions")]
    pub load_balancer_options: Option<RawLoadBalancer>,
    #[serde(rename = "QoSOptions")]
    pub qos_options: Option<RawQoS>,
    #[serde(rename = "Metadata")]
    pub metadata: Option<Captured>,
}
