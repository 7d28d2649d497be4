//! Plugins: Kong's phase model as one trait, one file per plugin, one registry.
//!
//! Each request runs the chain compiled for its route, in descending PRIORITY within each
//! phase:
//!
//! ```text
//! rewrite (global plugins, before routing)
//!   ─▶ route ─▶ access ─▶ request body (streamed) ─▶ upstream_request
//!   ─▶ (upstream) ─▶ response_head ─▶ response body (streamed) ─▶ trailers
//!   ─▶ log (every request: answered by the upstream, a plugin, a 404 or a failure)
//! ```
//!
//! Every hook has a default that does nothing, so a plugin implements only its phases and
//! says which they are (`Plugin::phases`): a chain whose plugins never touch the response
//! keeps the proxy's fast path for it (the upstream's header lines go out as they came, a
//! large body goes kernel to kernel), and one that only logs costs the log call alone.
//!
//! A plugin file declares the plugin's name, PRIORITY, config schema (a serde type read from
//! the spanned config tree, checked by `Validate`) and how to build it (`PluginSpec`); the
//! registry (`registry::Registry::bundled`) has one line per plugin. A custom plugin is the
//! same: a type the user registers on `crate::gateway::Builder`.

pub mod registry;
pub mod schema;

pub mod acl;
pub mod acme;
pub mod ai;
pub mod args;
pub mod auth;
pub mod aws_lambda;
pub mod azure_functions;
pub mod basic_auth;
pub mod bot_detection;
pub mod correlation_id;
pub mod cors;
pub mod datadog;
pub mod file_log;
pub mod functions;
pub mod grpc_gateway;
pub mod grpc_web;
pub mod hmac_auth;
pub mod http_log;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod ldap_auth;
pub mod loggly;
pub mod oauth2;
pub mod ocelot_auth;
pub mod ocelot_cache;
pub mod ocelot_headers;
pub mod ocelot_ip;
pub mod ocelot_jwt;
pub mod ocelot_rate_limit;
pub mod opentelemetry;
pub mod prometheus;
pub mod proxy_cache;
pub mod rate_limiting;
pub mod ratelimit;
pub mod redirect;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_ratelimiting;
pub mod response_transformer;
pub mod session;
pub mod standard_webhooks;
pub mod statsd;
pub mod syslog;
pub mod tcp_log;
pub mod template;
pub mod udp_log;
pub mod zipkin;

use std::sync::Arc;

use http::HeaderMap;

pub use crate::exchange::{BodyFlow, Chunk, Ctx, Flow, LogEntry, Request, ResponseHead};
pub use registry::{BuildCx, Kind, PluginSpec, Registry};
pub use schema::{Checks, Validate};

/// The hooks a plugin implements, so that the pipeline calls only those and keeps its fast
/// paths where no plugin needs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases(u16);

impl Phases {
    pub const NONE: Phases = Phases(0);
    pub const REWRITE: Phases = Phases(1);
    pub const ACCESS: Phases = Phases(1 << 1);
    pub const UPSTREAM_REQUEST: Phases = Phases(1 << 2);
    pub const REQUEST_BODY: Phases = Phases(1 << 3);
    pub const REQUEST_TRAILERS: Phases = Phases(1 << 4);
    pub const RESPONSE_HEAD: Phases = Phases(1 << 5);
    pub const RESPONSE_BODY: Phases = Phases(1 << 6);
    pub const RESPONSE_TRAILERS: Phases = Phases(1 << 7);
    pub const LOG: Phases = Phases(1 << 8);
    pub const ALL: Phases = Phases((1 << 9) - 1);
    /// Every phase that sees or changes the response on its way to the client.
    pub const RESPONSE: Phases =
        Phases(Self::RESPONSE_HEAD.0 | Self::RESPONSE_BODY.0 | Self::RESPONSE_TRAILERS.0);

    pub const fn union(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }
    /// Any of `other`'s phases.
    pub const fn any(self, other: Phases) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Phases {
    type Output = Phases;
    fn bitor(self, rhs: Phases) -> Phases {
        self.union(rhs)
    }
}

/// The phase hooks. Each default does nothing; `phases` says which ones a plugin implements.
///
/// A hook that answers the client returns `Flow::Respond`: the rest of the phase and the
/// upstream are skipped, and the answer still goes through `response_head` and `log`. A hook
/// that must wait for I/O (Redis, a key fetch) returns `Flow::wait(io, then)`, whose `then`
/// may change the context and the request once the I/O is done. Hooks must not block.
pub trait Plugin: Send + Sync + 'static {
    /// The name the config uses (`key-auth`).
    fn name(&self) -> &str;

    /// Kong's PRIORITY: higher runs first in every phase.
    fn priority(&self) -> i32;

    /// The hooks this plugin implements. The default, every phase, is always correct; a
    /// narrower set keeps the proxy's fast paths for the routes the plugin is on.
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    /// Before routing, so it may still change what is routed (the path, the Host). Only
    /// global plugins run here, as in Kong: neither route nor service is known yet.
    fn rewrite(&self, _ctx: &mut Ctx<'_>, _req: &mut Request<'_>) -> Flow {
        Flow::Continue
    }

    /// Once the route is known, before the upstream is contacted: authentication, access
    /// control, limits, request changes. Authentication sets `Ctx::consumer`; plugins after
    /// it are then resolved for that consumer.
    fn access(&self, _ctx: &mut Ctx<'_>, _req: &mut Request<'_>) -> Flow {
        Flow::Continue
    }

    /// The request as it goes upstream: its method, target (path and query after routing
    /// rewrote them) and headers. The gateway's forwarding headers (X-Forwarded-*, Via, the
    /// request id) are added after this hook and replace any of the same names.
    fn upstream_request(&self, _ctx: &mut Ctx<'_>, _req: &mut http::request::Parts) {}

    /// Each piece of the request body on its way upstream (Kong's `kong.request.get_body`
    /// needs the whole body: see `Flow::ReadBody`).
    fn request_body(&self, _ctx: &mut Ctx<'_>, _chunk: &mut Chunk) -> BodyFlow {
        BodyFlow::Continue
    }

    /// This plugin's `request_body` never changes the body's length (it only looks, or
    /// refuses): a request with a Content-Length then keeps it upstream instead of being
    /// sent chunked. The default, `false`, is always correct.
    fn keeps_request_length(&self) -> bool {
        false
    }

    /// The request's trailers, when its protocol has them.
    fn request_trailers(&self, _ctx: &mut Ctx<'_>, _trailers: &mut HeaderMap) {}

    /// The response head (Kong's `header_filter`), from the upstream, a plugin or the
    /// gateway itself. Its header map is made when the hook first asks for it
    /// (`ResponseHead::headers`): a hook that returns without looking costs no parse.
    fn response_head(&self, _ctx: &mut Ctx<'_>, _resp: &mut ResponseHead<'_>) {}

    /// Each piece of the response body (Kong's `body_filter`). `BodyFlow::Buffer` holds the
    /// body until its end, and the response head with it, so that the length may change.
    fn response_body(&self, _ctx: &mut Ctx<'_>, _chunk: &mut Chunk) -> BodyFlow {
        BodyFlow::Continue
    }

    /// The response's trailers, when its protocol has them.
    fn response_trailers(&self, _ctx: &mut Ctx<'_>, _trailers: &mut HeaderMap) {}

    /// After the last byte went to the client (or the client went away).
    fn log(&self, _ctx: &Ctx<'_>, _entry: &LogEntry) {}
}

/// The plugins of one route (or the global rewrite chain), in execution order, with the
/// union of their phases.
#[derive(Clone, Default)]
pub struct Chain {
    plugins: Vec<Arc<dyn Plugin>>,
    /// Each plugin's phases, asked once here rather than per request.
    each: Vec<Phases>,
    phases: Phases,
}

impl Chain {
    /// Orders `plugins` by descending PRIORITY (stable: equal priorities keep their order).
    pub fn new(mut plugins: Vec<Arc<dyn Plugin>>) -> Chain {
        plugins.sort_by_key(|p| std::cmp::Reverse(p.priority()));
        let each: Vec<Phases> = plugins.iter().map(|p| p.phases()).collect();
        let phases = each.iter().fold(Phases::NONE, |acc, p| acc | *p);
        Chain {
            plugins,
            each,
            phases,
        }
    }

    /// The plugin at `i` in execution order, with its phases.
    pub fn get(&self, i: usize) -> Option<(&Arc<dyn Plugin>, Phases)> {
        Some((self.plugins.get(i)?, self.each[i]))
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    pub fn phases(&self) -> Phases {
        self.phases
    }

    /// Some plugin implements one of `phases`.
    pub fn has(&self, phases: Phases) -> bool {
        self.phases.any(phases)
    }

    pub fn plugins(&self) -> &[Arc<dyn Plugin>] {
        &self.plugins
    }

    /// The plugins implementing any of `phases`.
    pub fn with(&self, phases: Phases) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.plugins
            .iter()
            .zip(&self.each)
            .filter(move |(_, p)| p.any(phases))
            .map(|(p, _)| p)
    }
}
