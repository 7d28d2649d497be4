//! The one pipeline. Every request, whatever answers it, takes the same steps:
//!
//! ```text
//! rewrite (global plugins) ─▶ route ─▶ closed? ─▶ access ─▶ forward ─▶ response head
//!   ─▶ response body ─▶ log
//! ```
//!
//! Only the forward step differs by kind of route: `kong` (the upstream path and the
//! forwarding headers, retries across targets), `ocelot` (the downstream URL from its
//! template, redirects) and `aggregate` (each part through access ─▶ forward ─▶ response head
//! of its own route, concurrently, combined into one JSON answer).
//!
//! A protocol engine (`server`, for HTTP/1) calls `Exchange::handle` for the response head,
//! writes it, pulls the body through `Exchange::response_chunk` when plugins filter it, and
//! calls `Exchange::log` once the last byte is out. A request on a route without plugins
//! makes no plugin context at all: its cost is routing and forwarding.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::body::ProxyBody;
use super::client::Outgoing;
use super::headers::{self, RESPONSE_LATENCY, Stamp, UpstreamMarks};
use super::http1::Wire;
use super::{Conn, aggregate, kong, ocelot};
use crate::config::kong::split_host_port;
use crate::config::ocelot::template::decoded_path;
use crate::exchange::{
    self, Answered, BodyFlow, Chunk, Ctx, Flow, IdentityHeaders, LogEntry, Placeholders, Request,
    RequestId, ResponseHead, UriCaptures, respond,
};
use crate::plugins::{Chain, Phases, Plugin, auth};
use crate::router::{PathRule, Request as RouteRequest};
use crate::snapshot::{Closed, RouteKind, RouteRt, Snapshot};
use crate::uri::normalize_path;

pub type Response = http::Response<ProxyBody>;

/// The largest request body a plugin may ask for (`Flow::ReadBody` asks for less).
const MAX_READ_BODY: usize = 64 << 20;

/// What every step of a request reads and none changes.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub snap: &'a Snapshot,
    pub conn: &'a Conn,
    pub id: &'a RequestId,
    pub started: Instant,
}

impl Env<'_> {
    /// A gateway error with the request id and the time it took.
    pub fn error(&self, status: StatusCode, msg: &str) -> Response {
        let mut r = into_proxy(respond::error(status, msg, self.id.as_str()));
        r.headers_mut().insert(
            &RESPONSE_LATENCY,
            headers::millis(self.started.elapsed().as_millis()),
        );
        r
    }
}

/// One request on its way through the gateway, held by the engine until the log phase.
pub struct Exchange<'a> {
    env: Env<'a>,
    /// The gateway's headers for the response, which the engine writes after its own.
    pub stamp: Stamp,
    /// Only when plugins run for this request. Inline, not boxed: the request's future is
    /// one box already, and a second allocation cost more than the bytes it would save a
    /// plugin-free request.
    run: Option<Run<'a>>,
}

impl<'a> Exchange<'a> {
    pub fn new(snap: &'a Snapshot, conn: &'a Conn, id: &'a RequestId) -> Self {
        Exchange {
            env: Env {
                snap,
                conn,
                id,
                started: Instant::now(),
            },
            stamp: Stamp::default(),
            run: None,
        }
    }

    /// One request, from its head to the response head. The request is borrowed from the
    /// engine, which holds it anyway; owned, it would sit in this future beside the engine's
    /// copy, in the box each request is served from. Not an `async fn`, which would keep a
    /// second copy of its arguments in its future, and inlined, so that the future is built
    /// where the engine keeps it.
    #[inline(always)]
    #[allow(clippy::manual_async_fn)]
    pub fn handle<'c>(
        &'c mut self,
        parts: &'c mut http::request::Parts,
        body: &'c mut ProxyBody,
        wire: &'c Wire,
    ) -> impl Future<Output = Response> + 'c {
        async move {
            let resp = self.route_and_forward(parts, body, wire).await;
            self.stamp.request_id = Some(self.env.id.header());
            self.stamp.server = match resp.body().raw_head() {
                Some(raw) => !raw.server,
                None => !resp.headers().contains_key(header::SERVER),
            };
            resp
        }
    }

    async fn route_and_forward(
        &mut self,
        parts: &mut http::request::Parts,
        body: &mut ProxyBody,
        wire: &Wire,
    ) -> Response {
        let env = self.env;
        let snap = env.snap;
        // A clone of the header value shares its bytes: no copy, and `parts.headers` stays
        // free to be rewritten below.
        let host_value = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        if snap
            .global
            .has(Phases::REWRITE | Phases::LOG | Phases::RESPONSE_HEAD)
        {
            let run = self
                .run
                .insert(Run::new(env, Resolved::Route(&snap.global), parts));
            run.ctx.host = host_value.clone();
            if let Some(resp) = run.phase(Phases::REWRITE, parts, body).await {
                return self.plugin_answer(resp);
            }
        }
        let host_header = host_value
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (host, host_port) = split_host_port(host_header).unwrap_or((host_header, None));
        // The path routing saw stays the route's for the forward step, whatever plugins do
        // to the request: it is read from a clone of the target's path and query (which
        // shares its bytes; `Uri::path` is this, or "" when there is none).
        let target = parts.uri.path_and_query().cloned();
        let path = normalize_path(target.as_ref().map_or("", |t| t.path()));
        let Some(m) = snap.router.find(&RouteRequest {
            method: &parts.method,
            host,
            port: host_port.unwrap_or(env.conn.local.port()),
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
            sni: env.conn.sni_for_routing(),
        }) else {
            let resp = env.error(StatusCode::NOT_FOUND, "no Route matched with those values");
            return self.gateway_answer(resp);
        };
        let route = &snap.routes[m.route];
        if wire.gateway_set {
            // Who the consumer is, only authentication says.
            auth::strip_identity(&mut parts.headers);
        }
        if let Some(closed) = &route.closed {
            let resp = closed_response(&env, route, closed);
            return self.gateway_answer(resp);
        }
        if route.https_only && !env.conn.tls {
            let resp = kong::https_required(&env, route, host_header, &parts.uri);
            return self.gateway_answer(resp);
        }
        let service = route.service.map(|s| &snap.services[s]);
        if !route.chain.is_empty() {
            let run = self.enter(route, service, parts, host_value.clone());
            if let PathRule::Regex(regexes) = &snap.router.matchers[m.matcher].paths {
                run.ctx.uri_captures = uri_captures(regexes, &path);
            }
            if let RouteKind::Ocelot(o) = &route.kind
                && o.plugins_use_placeholders
            {
                run.ctx.extensions.insert(Placeholders(m.params.clone()));
            }
            run.ctx.body_length = body.length();
            if let Some(resp) = run.phase(Phases::ACCESS, parts, body).await {
                return self.plugin_answer(resp);
            }
        }
        let forwarded = match &route.kind {
            RouteKind::Kong => {
                let Some(service) = service else {
                    let resp = env.error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no Service found with those values",
                    );
                    return self.gateway_answer(resp);
                };
                let fwd = kong::Forward {
                    env,
                    route,
                    service,
                    path: &path,
                    m: &m,
                    host,
                };
                fwd.send(parts, body, wire, self.run.as_mut(), &mut self.stamp)
                    .await
            }
            RouteKind::Ocelot(_) => {
                let decoded = decoded_path(&path);
                let head = ocelot::Head {
                    method: parts.method.clone(),
                    path: &decoded,
                    query: parts.uri.query(),
                    headers: std::mem::take(&mut parts.headers),
                    host: host_value,
                };
                let body = std::mem::replace(body, ProxyBody::Empty);
                // Boxed: the Ocelot branch's state would otherwise weigh on every request.
                Box::pin(ocelot::forward(
                    env,
                    m.route,
                    head,
                    body,
                    &m.params,
                    self.run.as_mut(),
                ))
                .await
                .map_err(|f| env.error(f.status, &f.message))
            }
            RouteKind::Aggregate(agg) => {
                let decoded = decoded_path(&path);
                let resp = Box::pin(aggregate::answer(
                    env,
                    agg,
                    &decoded,
                    parts.uri.query(),
                    &parts.headers,
                    &m.params,
                ))
                .await;
                Ok(resp)
            }
        };
        // A request-body hook that rejected the body answers instead of the failed send.
        if forwarded.is_err()
            && let Some((status, message)) = self.run.as_mut().and_then(|r| r.rejected.take())
        {
            return self.plugin_answer(respond::message(status, message));
        }
        match forwarded {
            Ok(resp) => self.upstream_answer(resp),
            Err(resp) => self.gateway_answer(resp),
        }
    }

    /// Makes the request's plugin context for `route` (or moves the one the rewrite phase
    /// made onto the route's chain).
    fn enter(
        &mut self,
        route: &'a RouteRt,
        service: Option<&'a crate::snapshot::ServiceRt>,
        parts: &http::request::Parts,
        host: Option<HeaderValue>,
    ) -> &mut Run<'a> {
        let env = self.env;
        let run = self
            .run
            .get_or_insert_with(|| Run::new(env, Resolved::Route(&route.chain), parts));
        run.chain = Resolved::Route(&route.chain);
        run.enter(route, service);
        run.ctx.host = host;
        run
    }

    /// An upstream's response: the response-head phase when plugins run on it. (When none
    /// reads it, its header lines went out as they came: `stamp.upstream`.)
    fn upstream_answer(&mut self, mut resp: Response) -> Response {
        if let Some(run) = self.run.as_mut() {
            run.source = Answered::Upstream;
            let (mut parts, mut body) = resp.into_parts();
            if body.raw_head().is_none() {
                run.response_head(&mut parts, None);
            } else if run.chain.has(Phases::RESPONSE_HEAD) {
                // The lines become a map only if a hook asks for the headers; the marks
                // the writer would have added go into it then.
                let stamp = &mut self.stamp;
                let mut fill = |map: &mut HeaderMap| {
                    if let Some(raw) = body.take_raw_head() {
                        *map = raw.to_map();
                        for (name, value) in stamp.upstream.take().iter().flat_map(|m| m.headers())
                        {
                            map.insert(name, value);
                        }
                    }
                };
                run.response_head(&mut parts, Some(&mut fill));
            }
            if body.raw_head().is_some() && !run.ctx.response_headers.is_empty() {
                self.stamp.response = last_of_each(std::mem::take(&mut run.ctx.response_headers));
            }
            resp = http::Response::from_parts(parts, body);
        }
        resp
    }

    /// A plugin's answer goes through the response-head phase too.
    fn plugin_answer(&mut self, resp: exchange::Response) -> Response {
        let mut resp = into_proxy(resp);
        resp.headers_mut().insert(
            &RESPONSE_LATENCY,
            headers::millis(self.env.started.elapsed().as_millis()),
        );
        if let Some(run) = self.run.as_mut() {
            run.source = Answered::Plugin;
            let (mut parts, body) = resp.into_parts();
            run.response_head(&mut parts, None);
            resp = http::Response::from_parts(parts, body);
        }
        resp
    }

    /// The gateway's own answer (404, a closed route, an upstream failure).
    fn gateway_answer(&mut self, resp: Response) -> Response {
        if let Some(run) = self.run.as_mut() {
            run.source = Answered::Gateway;
        }
        self.plugin_answer_head(resp)
    }

    fn plugin_answer_head(&mut self, resp: Response) -> Response {
        match self.run.as_mut() {
            Some(run) if run.chain.has(Phases::RESPONSE_HEAD) => {
                let (mut parts, body) = resp.into_parts();
                run.response_head(&mut parts, None);
                http::Response::from_parts(parts, body)
            }
            _ => resp,
        }
    }

    /// Plugins see the response body piece by piece on its way to the client.
    pub fn filters_response_body(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| r.chain.has(Phases::RESPONSE_BODY))
    }

    /// One piece of the response body through the plugins' body hooks: what goes to the
    /// client now, or `None` while a hook holds the body. `Err` names the plugin whose
    /// buffer limit the body passed.
    pub fn response_chunk(&mut self, data: Bytes, end: bool) -> Result<Option<Bytes>, String> {
        match self.run.as_mut() {
            Some(run) => run.filter_response(data, end),
            None => Ok(Some(data)),
        }
    }

    /// The log phase: every plugin's log hook, once the response is out (or the client went
    /// away).
    pub fn log(&mut self, status: StatusCode, bytes_sent: u64) {
        if let Some(run) = self.run.as_mut() {
            run.log(status, bytes_sent);
        }
    }
}

/// A plugin-made response as the engine writes it.
pub fn into_proxy(resp: exchange::Response) -> Response {
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, ProxyBody::from(body))
}

/// The captures of the first of a route's regexes that matches `path` (the one routing
/// chose), when it has groups and one of them took part: Kong (traditional_compatible) hands
/// plugins no captures otherwise.
fn uri_captures<'s>(regexes: &'s [(regex::Regex, String)], path: &str) -> Option<UriCaptures<'s>> {
    for (re, _) in regexes {
        if re.captures_len() == 1 {
            if re.is_match(path) {
                return None;
            }
            continue;
        }
        let Some(c) = re.captures(path) else {
            continue;
        };
        let groups: Vec<Option<(usize, usize)>> =
            c.iter().map(|g| g.map(|g| (g.start(), g.end()))).collect();
        if groups[1..].iter().all(Option::is_none) {
            return None;
        }
        let names = re
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| Some((n?, i)))
            .collect();
        let end = groups[0].map_or(0, |(_, e)| e);
        return Some(UriCaptures {
            text: path[..end].into(),
            groups,
            names,
        });
    }
    None
}

/// A closed route's answer: 503, naming the route and what it carries that is not enforced.
fn closed_response(env: &Env<'_>, route: &RouteRt, closed: &Closed) -> Response {
    let name = &route.identity.name;
    tracing::debug!(
        request_id = env.id.as_str(),
        route = &**name,
        "closed route answered 503"
    );
    let body = serde_json::json!({
        "message": closed.message(name),
        "route": &**name,
        "unenforced": closed.reasons,
        "request_id": env.id.as_str(),
    });
    let mut r = into_proxy(respond::json(
        StatusCode::SERVICE_UNAVAILABLE,
        body.to_string(),
    ));
    r.headers_mut().insert(
        &RESPONSE_LATENCY,
        headers::millis(env.started.elapsed().as_millis()),
    );
    r
}

/// The plugins that run for a request: the route's chain, or the chain resolved again once
/// authentication identified a consumer with plugins of its own.
#[derive(Clone)]
pub enum Resolved<'a> {
    Route(&'a Chain),
    Consumer(Arc<Chain>),
}

impl std::ops::Deref for Resolved<'_> {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        match self {
            Resolved::Route(c) => c,
            Resolved::Consumer(c) => c,
        }
    }
}

/// One request's plugins and their context.
pub struct Run<'a> {
    snap: &'a Snapshot,
    pub ctx: Ctx<'a>,
    pub chain: Resolved<'a>,
    /// The route, once matched (the consumer's chain is resolved for it).
    route: Option<&'a RouteRt>,
    /// The request body, once a hook asked for it (`Flow::ReadBody`).
    body: Option<Bytes>,
    /// A path a hook set for the upstream request.
    pub upstream_path: Option<String>,
    /// A request-side hook was handed the request head for changing: it may carry what the
    /// gateway must drop or replace (hop-by-hop and forwarding headers).
    pub head_changed: bool,
    /// What a response-body hook holds while it buffers, by the hook's position.
    holds: Vec<Option<(BytesMut, usize)>>,
    method: Method,
    path: String,
    source: Answered,
    pub upstream_latency: Option<Duration>,
    /// What a request-body hook answered with `BodyFlow::Reject`.
    rejected: Option<(StatusCode, &'static str)>,
}

impl<'a> Run<'a> {
    pub fn new(env: Env<'a>, chain: Resolved<'a>, parts: &http::request::Parts) -> Self {
        let client = env.conn.client(&parts.headers);
        let mut ctx = Ctx::new(env.id.clone(), client, env.conn.local, env.started);
        ctx.tls = env.conn.handshake.as_ref();
        let logs = chain.has(Phases::LOG);
        Run {
            snap: env.snap,
            ctx,
            chain,
            route: None,
            body: None,
            upstream_path: None,
            head_changed: false,
            holds: Vec::new(),
            method: parts.method.clone(),
            // Kept only for the log phase.
            path: if logs {
                parts.uri.path().to_string()
            } else {
                String::new()
            },
            source: Answered::Gateway,
            upstream_latency: None,
            rejected: None,
        }
    }

    /// The run is for `route` now: its identity, its service's, and the route to resolve a
    /// consumer's plugins for.
    pub fn enter(&mut self, route: &'a RouteRt, service: Option<&'a crate::snapshot::ServiceRt>) {
        self.route = Some(route);
        self.ctx.route = Some(&route.identity);
        self.ctx.service = service.map(|s| &s.identity);
    }

    /// The request-side phase `which` (rewrite or access): each plugin's hook in turn,
    /// waiting where one must, reading the body where one asks for it; the first that
    /// answers ends it. A request that goes on loses any hop-by-hop header a plugin added,
    /// as the client's were at parsing, and carries the body a hook read.
    pub async fn phase(
        &mut self,
        which: Phases,
        parts: &mut http::request::Parts,
        body: &mut ProxyBody,
    ) -> Option<exchange::Response> {
        let mut i = 0;
        // A copy of the reference (or one count of the consumer's chain), taken again only
        // when authentication resolves another chain.
        let mut chain = self.chain.clone();
        while let Some((p, phases)) = chain.get(i) {
            i += 1;
            if !phases.any(which) {
                continue;
            }
            let consumer_before = self.ctx.consumer.is_some();
            // Most hooks decide at once: only one that waits or reads the body takes the
            // slower path, whose future is made (boxed) only then.
            match self.call(which, &**p, parts) {
                Flow::Continue => {}
                Flow::Respond(resp) => return Some(resp),
                flow => {
                    if let Some(resp) = Box::pin(self.settle(which, &**p, flow, parts, body)).await
                    {
                        return Some(resp);
                    }
                }
            }
            if which == Phases::ACCESS
                && !consumer_before
                && self.ctx.consumer.is_some()
                && let Some(resumed) = self.resolve_for_consumer(p.priority())
            {
                i = resumed;
                chain = self.chain.clone();
            }
        }
        if let Some(b) = &self.body {
            *body = ProxyBody::full(b.clone());
        }
        if self.head_changed {
            headers::strip_hop_by_hop(&mut parts.headers);
        }
        None
    }

    /// One plugin's request-side hook, called once.
    fn call(&mut self, which: Phases, p: &dyn Plugin, parts: &mut http::request::Parts) -> Flow {
        // The hook may read who authenticated from the head, as in Kong.
        auth::write_identity(&mut self.ctx, &mut parts.headers);
        let mut req = Request::new(parts, &mut self.body, &mut self.upstream_path);
        let flow = if which == Phases::REWRITE {
            p.rewrite(&mut self.ctx, &mut req)
        } else {
            p.access(&mut self.ctx, &mut req)
        };
        self.head_changed |= req.changed();
        flow
    }

    /// A hook's `flow` followed through whatever it asks for (I/O, the body), calling the
    /// hook again where it must, to its answer or `None` to go on.
    async fn settle(
        &mut self,
        which: Phases,
        p: &dyn Plugin,
        mut flow: Flow,
        parts: &mut http::request::Parts,
        body: &mut ProxyBody,
    ) -> Option<exchange::Response> {
        loop {
            match flow {
                Flow::Continue => return None,
                Flow::Respond(r) => return Some(r),
                Flow::Wait(pending) => {
                    let resume = pending.resolve().await;
                    auth::write_identity(&mut self.ctx, &mut parts.headers);
                    let mut req = Request::new(parts, &mut self.body, &mut self.upstream_path);
                    flow = resume(&mut self.ctx, &mut req);
                    self.head_changed |= req.changed();
                }
                Flow::ReadBody { .. } if self.body.is_some() => {
                    // Asked again with the body there: the hook cannot go on.
                    tracing::error!(plugin = p.name(), "asked for the request body twice");
                    return Some(respond::message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "An unexpected error occurred",
                    ));
                }
                Flow::ReadBody { limit } => {
                    match read_body(body, limit.min(MAX_READ_BODY)).await {
                        Ok(b) => self.body = Some(b),
                        Err(status) => {
                            let msg = crate::plugins::request_termination::default_message(status);
                            return Some(respond::message(status, msg));
                        }
                    }
                    flow = self.call(which, p, parts);
                }
            }
        }
    }

    /// Once authentication identified a consumer: the chain resolved again for it (Kong
    /// resolves each plugin when the iteration reaches it), and where to go on in it — the
    /// first plugin after `priority` that has not run.
    fn resolve_for_consumer(&mut self, priority: i32) -> Option<usize> {
        let route = self.route?;
        let consumer = self.ctx.consumer.as_ref()?;
        let chain = self.snap.chain_for_consumer(route, consumer)?;
        let at = chain
            .plugins()
            .iter()
            .position(|q| q.priority() < priority)
            .unwrap_or(chain.plugins().len());
        self.chain = Resolved::Consumer(chain);
        Some(at)
    }

    /// The log phase of this run.
    pub fn log(&mut self, status: StatusCode, bytes_sent: u64) {
        if !self.chain.has(Phases::LOG) {
            return;
        }
        let entry = LogEntry {
            method: self.method.clone(),
            path: self.path.clone(),
            status,
            bytes_sent,
            upstream_latency: self.upstream_latency,
            latency: self.ctx.started.elapsed(),
            source: self.source,
        };
        let chain = self.chain.clone();
        for p in chain.with(Phases::LOG) {
            p.log(&self.ctx, &entry);
        }
    }

    /// The identity headers an authentication left pending, into the request head.
    pub fn identity_into(&mut self, headers: &mut HeaderMap) {
        auth::write_identity(&mut self.ctx, headers);
    }

    /// The identity headers an authentication left pending, for the upstream request: with
    /// the gateway's own headers (`added`), unless upstream-request hooks will see the head
    /// or an earlier authentication's are in it to be replaced.
    pub fn identity_upstream(&mut self, headers: &mut HeaderMap, added: &mut headers::Added) {
        if self.ctx.identity == IdentityHeaders::Pending
            && !self.chain.has(Phases::UPSTREAM_REQUEST)
        {
            for (name, value) in auth::identity_headers(&self.ctx) {
                if let Some(v) = value {
                    added.push((name, v));
                }
            }
            self.ctx.identity = IdentityHeaders::Written;
        } else {
            auth::write_identity(&mut self.ctx, headers);
        }
    }

    /// The upstream-request phase.
    pub fn upstream_request(&mut self, parts: &mut http::request::Parts) {
        if self.chain.has(Phases::UPSTREAM_REQUEST) {
            let chain = self.chain.clone();
            for p in chain.with(Phases::UPSTREAM_REQUEST) {
                p.upstream_request(&mut self.ctx, parts);
            }
        }
    }

    /// The response-head phase, then the headers request-side hooks asked for. With `fill`,
    /// the head's headers are still the engine's raw lines, made into `parts.headers` only
    /// if a hook asks for them.
    pub fn response_head<'f>(
        &mut self,
        parts: &'f mut http::response::Parts,
        fill: Option<&'f mut dyn FnMut(&mut HeaderMap)>,
    ) {
        self.ctx.answered = self.source;
        let mut head = ResponseHead::new(parts.status, parts.version, &mut parts.headers, fill);
        let chain = self.chain.clone();
        for p in chain.with(Phases::RESPONSE_HEAD) {
            p.response_head(&mut self.ctx, &mut head);
        }
        // Over raw upstream lines they stay in the context, for the writer (`Stamp::response`).
        if !self.ctx.response_headers.is_empty() && head.has_map() {
            let h = head.headers_mut();
            for (k, v) in self.ctx.response_headers.drain(..) {
                h.insert(k, v);
            }
        }
        if head.has_map() {
            // The request id is the gateway's to set (the engine's stamp).
            head.headers_mut().remove(&headers::REQUEST_ID);
        }
        (parts.status, parts.version) = (head.status, head.version);
    }

    /// One piece of the response body through the body hooks in order; a hook that buffers
    /// holds what reaches it until the end, then sees it whole.
    pub fn filter_response(
        &mut self,
        mut data: Bytes,
        mut end: bool,
    ) -> Result<Option<Bytes>, String> {
        let chain = self.chain.clone();
        for (i, p) in chain.with(Phases::RESPONSE_BODY).enumerate() {
            if self.holds.len() <= i {
                self.holds.resize_with(i + 1, || None);
            }
            if let Some((held, limit)) = self.holds[i].as_mut() {
                if held.len() + data.len() > *limit {
                    return Err(p.name().to_string());
                }
                held.extend_from_slice(&data);
                if !end {
                    return Ok(None);
                }
                data = std::mem::take(held).freeze();
                self.holds[i] = None;
            }
            let mut chunk = Chunk { data, end };
            let flow = p.response_body(&mut self.ctx, &mut chunk);
            (data, end) = (chunk.data, chunk.end);
            if let BodyFlow::Reject { .. } = flow {
                return Err(p.name().to_string());
            }
            if let (BodyFlow::Buffer { limit }, false) = (flow, end) {
                if data.len() > limit {
                    return Err(p.name().to_string());
                }
                self.holds[i] = Some((BytesMut::from(&data[..]), limit));
                return Ok(None);
            }
        }
        Ok(Some(data))
    }
}

/// A request-body source that runs the request-body hooks on each piece on its way
/// upstream.
pub struct FilteredRequest<'x, 'a> {
    pub body: &'x mut ProxyBody,
    pub run: &'x mut Run<'a>,
    held: Vec<Option<(BytesMut, usize)>>,
    done: bool,
}

impl<'x, 'a> FilteredRequest<'x, 'a> {
    pub fn new(body: &'x mut ProxyBody, run: &'x mut Run<'a>) -> Self {
        FilteredRequest {
            body,
            run,
            held: Vec::new(),
            done: false,
        }
    }

    fn filter(&mut self, mut data: Bytes, mut end: bool) -> std::io::Result<Option<Bytes>> {
        let chain = self.run.chain.clone();
        for (i, p) in chain.with(Phases::REQUEST_BODY).enumerate() {
            if self.held.len() <= i {
                self.held.resize_with(i + 1, || None);
            }
            if let Some((held, limit)) = self.held[i].as_mut() {
                if held.len() + data.len() > *limit {
                    return Err(std::io::Error::other(format!(
                        "request body over the buffer limit of plugin {}",
                        p.name()
                    )));
                }
                held.extend_from_slice(&data);
                if !end {
                    return Ok(None);
                }
                data = std::mem::take(held).freeze();
                self.held[i] = None;
            }
            let mut chunk = Chunk { data, end };
            let flow = p.request_body(&mut self.run.ctx, &mut chunk);
            (data, end) = (chunk.data, chunk.end);
            if let BodyFlow::Reject { status, message } = flow {
                self.run.rejected = Some((status, message));
                return Err(std::io::Error::other(format!(
                    "request body rejected by plugin {}",
                    p.name()
                )));
            }
            if let (BodyFlow::Buffer { limit }, false) = (flow, end) {
                self.held[i] = Some((BytesMut::from(&data[..]), limit));
                return Ok(None);
            }
        }
        Ok(Some(data))
    }
}

impl Outgoing for FilteredRequest<'_, '_> {
    fn length(&self) -> Option<u64> {
        // Hooks may change the length: it is known only for no body at all, or when every
        // request-body hook says it keeps it.
        match self.body.length() {
            Some(0) => Some(0),
            Some(n)
                if self
                    .run
                    .chain
                    .with(Phases::REQUEST_BODY)
                    .all(|p| p.keeps_request_length()) =>
            {
                Some(n)
            }
            _ => None,
        }
    }
    fn is_absent(&self) -> bool {
        matches!(self.body, ProxyBody::Empty)
    }
    fn is_replayable(&self) -> bool {
        false
    }
    fn poll_data(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::io::Result<Bytes>>> {
        use std::task::{Poll, ready};
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let (data, end) = match ready!(self.body.poll_data(cx)) {
                Some(Ok(d)) => (d, false),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => (Bytes::new(), true),
            };
            self.done = end;
            match self.filter(data, end) {
                Ok(Some(d)) if !d.is_empty() => return Poll::Ready(Some(Ok(d))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

/// Reads a whole request body, up to `limit` bytes: past it 413, a broken one 400.
async fn read_body(body: &mut ProxyBody, limit: usize) -> Result<Bytes, StatusCode> {
    if body.length().is_some_and(|n| n > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let mut out = BytesMut::new();
    while let Some(piece) = poll_fn(|cx| body.poll_data(cx)).await {
        let piece = piece.map_err(|_| StatusCode::BAD_REQUEST)?;
        if out.len() + piece.len() > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

/// The gateway's part of a proxied response head: Via, extending the upstream's
/// (`prev_via`), and the latencies.
pub fn upstream_marks(
    prev_via: Option<HeaderValue>,
    upstream: Duration,
    proxy: Duration,
) -> UpstreamMarks {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    UpstreamMarks {
        via: headers::via(prev_via.as_ref(), http::Version::HTTP_11),
        upstream_ms: ms(upstream),
        proxy_ms: ms(proxy),
    }
}

/// Removes the upstream's copies of the headers the gateway sets on a response (its
/// request id too: the client gets the gateway's), returning its Via. Only a head that has
/// one of those names (`gateway_set`) is searched.
pub fn take_replaced(h: &mut HeaderMap, gateway_set: bool) -> Option<HeaderValue> {
    if !gateway_set {
        return None;
    }
    let mut via = None;
    for name in headers::REPLACED_ON_RESPONSE {
        let v = h.remove(name);
        if name == header::VIA {
            via = v;
        }
    }
    via
}

/// Headers set by name, the last value of each (a later `set` replaces an earlier one, as
/// inserting them into a map would).
fn last_of_each(
    mut set: Vec<(http::HeaderName, HeaderValue)>,
) -> Vec<(http::HeaderName, HeaderValue)> {
    let mut i = set.len();
    while i > 0 {
        i -= 1;
        if set[i + 1..].iter().any(|(n, _)| *n == set[i].0) {
            set.remove(i);
        }
    }
    set
}
