//! The plugin registry: every plugin switchyard knows by name, how to check its config and
//! how to build it. The snapshot compile asks it for each configured plugin.
//!
//! ```text
//! plugin file: PluginSpec (NAME, PRIORITY, KIND, Config: serde + Validate, build)
//!   ─▶ Registry::register ─▶ Registry::build(name, config tree) ─▶ Arc<dyn Plugin> | not served | errors
//! ```
//!
//! Bundled plugins and custom ones go through the same door: a custom plugin is a
//! `PluginSpec` registered on `crate::gateway::Builder`, and its config errors read exactly
//! like a bundled plugin's (`file:line:column: path: plugin 'name': message`).

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::schema::{Checks, Validate};
use super::{Plugin, acl, acme, basic_auth, bot_detection, correlation_id, cors, datadog};
use super::{ai, aws_lambda, azure_functions, file_log, functions, grpc_gateway};
use super::{grpc_web, hmac_auth, http_log, ip_restriction, jwt, key_auth, ldap_auth, loggly};
use super::{
    oauth2, ocelot_auth, ocelot_cache, ocelot_headers, ocelot_ip, ocelot_jwt, ocelot_rate_limit,
};
use super::{opentelemetry, prometheus};
use super::{proxy_cache, rate_limiting, redirect, request_size_limiting, request_termination};
use super::{request_transformer, response_ratelimiting, response_transformer, session};
use super::{standard_webhooks, statsd, syslog, tcp_log, udp_log, zipkin};
use crate::config::de::{Captured, DeError, Dialect};
use crate::config::diag::Path;
use crate::exchange::Identity;
use crate::snapshot::{Consumers, State};

/// What a plugin is, for what happens while it is not served and for scoping rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// It changes what passes or what the upstream or client sees.
    Acts,
    /// It identifies a consumer (so consumer-scoped plugins can apply after it). It cannot
    /// itself be scoped to a consumer.
    Authenticates,
    /// It only observes (metrics, logs, traces): while not served, traffic passes with a
    /// warning instead of the route being closed.
    Observes,
    /// It cannot work without a database: refused at load, as Kong refuses it in DB-less
    /// mode.
    NeedsDatabase,
}

/// A plugin as its file declares it.
pub trait PluginSpec: 'static {
    /// The name configs use.
    const NAME: &'static str;
    /// Kong's PRIORITY: higher runs first in every phase.
    const PRIORITY: i32;
    const KIND: Kind = Kind::Acts;
    /// It may not be scoped to a consumer (Kong's `typedefs.no_consumer`).
    const NO_CONSUMER: bool = false;
    /// The `config` schema: a serde type (defaults with `#[serde(default)]`, unknown fields
    /// are errors) and the rules serde cannot say (`Validate`).
    type Config: DeserializeOwned + Validate;

    /// Builds the plugin from its checked config. `Ok(None)` while the plugin is not served:
    /// its config is still checked, and the routes it applies to are closed (or warned
    /// about, for observers). `Err` is a config problem found only while building.
    fn build(config: Self::Config, cx: &mut BuildCx<'_>)
    -> Result<Option<Arc<dyn Plugin>>, String>;
}

/// What a plugin instance knows while it is built: its identity and scope, the state kept
/// across reloads, and the snapshot's consumers.
pub struct BuildCx<'a> {
    /// The plugin entity's id (stable across reloads: state is kept by it).
    pub id: &'a str,
    pub route: Option<&'a Identity>,
    pub service: Option<&'a Identity>,
    pub state: &'a State,
    pub consumers: &'a Arc<Consumers>,
    /// The snapshot's Ocelot authentication providers (`ocelot-authentication` names them).
    pub auth_providers: &'a ocelot_jwt::Providers,
}

/// What the registry knows of a plugin name.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    pub name: &'static str,
    pub priority: i32,
    pub kind: Kind,
    pub no_consumer: bool,
}

/// A config problem: its path inside `config` and the message.
pub type Problem = (Path, String);

type Build = dyn Fn(&Captured, &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, Vec<Problem>>
    + Send
    + Sync;

struct Entry {
    info: Info,
    build: Box<Build>,
}

/// Every plugin switchyard can load, by name.
#[derive(Default)]
pub struct Registry {
    entries: HashMap<&'static str, Entry>,
}

impl Registry {
    /// Kong's bundled plugins (`kong/constants.lua`) and switchyard's Ocelot options.
    pub fn bundled() -> Registry {
        let mut r = Registry::default();
        r.register::<acl::Acl>()
            .register::<acme::Acme>()
            .register::<ai::AiProxy>()
            .register::<ai::AiPromptDecorator>()
            .register::<ai::AiPromptGuard>()
            .register::<ai::AiPromptTemplate>()
            .register::<ai::AiRequestTransformer>()
            .register::<ai::AiResponseTransformer>()
            .register::<aws_lambda::AwsLambda>()
            .register::<azure_functions::AzureFunctions>()
            .register::<basic_auth::BasicAuth>()
            .register::<bot_detection::BotDetection>()
            .register::<correlation_id::CorrelationId>()
            .register::<cors::Cors>()
            .register::<datadog::Datadog>()
            .register::<file_log::FileLog>()
            .register::<functions::PreFunction>()
            .register::<functions::PostFunction>()
            .register::<grpc_gateway::GrpcGateway>()
            .register::<grpc_web::GrpcWeb>()
            .register::<hmac_auth::HmacAuth>()
            .register::<http_log::HttpLog>()
            .register::<ip_restriction::IpRestriction>()
            .register::<jwt::Jwt>()
            .register::<key_auth::KeyAuth>()
            .register::<ldap_auth::LdapAuth>()
            .register::<loggly::Loggly>()
            .register::<oauth2::OAuth2>()
            .register::<opentelemetry::OpenTelemetry>()
            .register::<prometheus::Prometheus>()
            .register::<proxy_cache::ProxyCache>()
            .register::<rate_limiting::RateLimiting>()
            .register::<redirect::Redirect>()
            .register::<request_size_limiting::RequestSizeLimiting>()
            .register::<request_termination::RequestTermination>()
            .register::<request_transformer::RequestTransformer>()
            .register::<response_ratelimiting::ResponseRatelimiting>()
            .register::<response_transformer::ResponseTransformer>()
            .register::<session::Session>()
            .register::<standard_webhooks::StandardWebhooks>()
            .register::<statsd::Statsd>()
            .register::<syslog::Syslog>()
            .register::<tcp_log::TcpLog>()
            .register::<udp_log::UdpLog>()
            .register::<zipkin::Zipkin>()
            .register::<ocelot_ip::SecurityOptions>()
            .register::<ocelot_headers::HeaderTransforms>()
            .register::<ocelot_headers::RequestIdKey>()
            .register::<ocelot_rate_limit::RateLimitOptions>()
            .register::<ocelot_auth::Authentication>()
            .register::<ocelot_cache::OutputCache>()
            .register::<ocelot_cache::OutputCacheStore>();
        r
    }

    /// Adds `P`, replacing a plugin of the same name.
    pub fn register<P: PluginSpec>(&mut self) -> &mut Self {
        let info = Info {
            name: P::NAME,
            priority: P::PRIORITY,
            kind: P::KIND,
            no_consumer: P::NO_CONSUMER || P::KIND == Kind::Authenticates,
        };
        let build = |config: &Captured, cx: &mut BuildCx<'_>| {
            let config: P::Config = parse_config(config)?;
            P::build(config, cx).map_err(|e| vec![(Path::root(), e)])
        };
        self.entries.insert(
            P::NAME,
            Entry {
                info,
                build: Box::new(build),
            },
        );
        self
    }

    pub fn info(&self, name: &str) -> Option<Info> {
        self.entries.get(name).map(|e| e.info)
    }

    /// Every registered name, sorted (for messages).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.entries.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Checks `config` against the plugin's schema and builds it. `Ok(None)`: checked, not
    /// served. `Err`: every problem found, with its path inside `config`.
    pub fn build(
        &self,
        name: &str,
        config: &Captured,
        cx: &mut BuildCx<'_>,
    ) -> Result<Option<Arc<dyn Plugin>>, Vec<Problem>> {
        match self.entries.get(name) {
            Some(e) => (e.build)(config, cx),
            None => Err(vec![(
                Path::root(),
                format!("plugin '{name}' is not registered"),
            )]),
        }
    }
}

/// Reads a config tree into `T`, then runs its checks: every problem with its path.
fn parse_config<T: DeserializeOwned + Validate>(config: &Captured) -> Result<T, Vec<Problem>> {
    let (value, problems) = config.deserialize::<T>(Dialect::Kong);
    let mut errors: Vec<Problem> = problems
        .into_iter()
        .filter(|p| !p.warning)
        .map(|DeError { path, message, .. }| (path, message))
        .collect();
    let Some(value) = value else {
        return Err(errors);
    };
    let mut checks = Checks::default();
    value.validate(&mut checks);
    errors.extend(checks.into_problems());
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}
