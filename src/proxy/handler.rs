//! One request through the gateway:
//!
//! normalise ─▶ route ─▶ protocol checks ─▶ plugins (rewrite, access) ─▶ upstream path and
//! headers ─▶ upstream (retries on connect errors) ─▶ response headers ─▶ stream back
//!
//! Ocelot routes take their own branch after routing (`ocelot_forward`): options as plugins
//! (SecurityOptions, header transforms, RateLimitOptions, RequestIdKey), the downstream path
//! and query from the DownstreamPathTemplate and the placeholder values, DownstreamHttpMethod
//! and version, the downstream's own Host header, no X-Forwarded-* (Ocelot adds none), and
//! HttpHandlerOptions (redirects, cookie jar). Aggregates (`aggregate`) send their parts
//! through that same branch concurrently and answer one JSON document.
//!
//! Everything per route was compiled into the snapshot; here is only the per-request work.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};

use super::aggregate::{self, Aggregator};
use super::body::ProxyBody;
use super::buffers;
use super::client::{self, UpstreamError};
use super::headers::{self, *};
use super::http1::Wire;
use super::respond;
use super::{Conn, RequestId};
use crate::config::kong::split_host_port;
use crate::plugins::{Chain, Ctx, Flow, RequestView, Response};
use crate::router::ocelot::{Params, decoded_path};
use crate::router::path::{escape_upstream, normalize_path};
use crate::router::{Match, Request as RouteRequest};
use crate::snapshot::{
    AggregateRt, Closed, Dest, OcelotRt, Peer, RouteKind, RouteRt, ServiceRt, Snapshot,
};

/// Redirects followed for an Ocelot route with AllowAutoRedirect (HttpClient's default).
const MAX_REDIRECTS: usize = 50;
/// The largest part body an aggregate reads.
const MAX_PART_BODY: usize = 16 << 20;

/// One request, start to response head. The caller made the request id and stamps the
/// response with it (`finish`); a plugin-free upstream response leaves its Via and latency
/// headers in `stamp` too, for the caller to write after the upstream's.
///
/// The request is borrowed from the caller, which holds it anyway: owned, it would sit in
/// this future beside the caller's copy, and both are in the box each request is served
/// from. For the same reason, what is needed only until the upstream request is built lives
/// in blocks that end before it is sent. Inlined, so that the future is built where the
/// caller keeps it instead of being built apart and copied there.
#[inline(always)]
pub fn handle<'c>(
    snap: Arc<Snapshot>,
    conn: &'c Conn,
    parts: &'c mut http::request::Parts,
    body: &'c mut ProxyBody,
    wire: &'c Wire,
    id: &'c RequestId,
    stamp: &'c mut Stamp,
) -> impl Future<Output = Response> + 'c {
    let started = Instant::now();
    async move {
        let snap = &*snap;
        let raw_path = parts.uri.path();
        // A clone of the header value shares its bytes: no copy, and `parts.headers` stays free
        // to be rewritten below.
        let host_value = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        let host_header = host_value
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (host, host_port) = split_host_port(host_header).unwrap_or((host_header, None));
        let path = normalize_path(raw_path);
        let Some(m) = snap.router.find(&RouteRequest {
            method: &parts.method,
            host,
            port: host_port.unwrap_or(conn.local.port()),
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
        }) else {
            return gateway_error(
                StatusCode::NOT_FOUND,
                "no Route matched with those values",
                id,
                started,
            );
        };
        let route = &snap.routes[m.route];
        if let Some(closed) = &route.closed {
            return closed_response(route, closed, id, started);
        }
        match &route.kind {
            RouteKind::Kong => {}
            RouteKind::Ocelot(_) => {
                let decoded = decoded_path(&path);
                let headers = std::mem::take(&mut parts.headers);
                let head = Head {
                    method: parts.method.clone(),
                    path: &decoded,
                    query: parts.uri.query(),
                    headers,
                };
                // Boxed: the Ocelot branch's state would otherwise weigh on every request.
                let body = std::mem::replace(body, ProxyBody::Empty);
                let forward =
                    ocelot_forward(snap, conn, m.route, head, body, &m.params, started, id);
                return Box::pin(forward)
                    .await
                    .unwrap_or_else(|f| gateway_error(f.status, &f.message, id, started));
            }
            RouteKind::Aggregate(agg) => {
                let decoded = decoded_path(&path);
                // Boxed, like the other rare paths, so that the common path's future stays small.
                return Box::pin(aggregate(
                    snap,
                    conn,
                    agg,
                    &decoded,
                    parts.uri.query(),
                    &parts.headers,
                    &m.params,
                    started,
                    id,
                ))
                .await;
            }
        }

        if route.https_only && !conn.tls {
            return https_required(route, host_header, &parts.uri, id, started);
        }

        let (mut ctx, service) = route_ctx(snap, route, conn, id, started, None);

        if !route.chain.is_empty() {
            let query = parts.uri.query().map(str::to_string);
            let raw = raw_path.to_string();
            let mut view = RequestView {
                method: &parts.method,
                path: &raw,
                query: query.as_deref(),
                headers: &mut parts.headers,
                scheme: conn.scheme(),
                host,
            };
            if let Some(mut resp) = access_phase(&route.chain, &mut ctx, &mut view).await {
                resp.headers_mut().insert(
                    &RESPONSE_LATENCY,
                    headers::millis(started.elapsed().as_millis()),
                );
                return resp;
            }
        }

        let Some(service) = service else {
            return gateway_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no Service found with those values",
                id,
                started,
            );
        };

        // Upstream request line.
        let uri = {
            let upstream_path = upstream_path(route, service, &path, &m);
            let upstream_path = escape_upstream(&upstream_path);
            if upstream_path == raw_path && parts.uri.scheme().is_none() {
                // Nothing to rewrite (no strip, no service path): the request line travels as
                // it came.
                parts.uri.clone()
            } else {
                match upstream_uri(&upstream_path, &parts.uri) {
                    Some(u) => u,
                    None => {
                        return gateway_error(
                            StatusCode::BAD_REQUEST,
                            "the request path cannot be forwarded",
                            id,
                            started,
                        );
                    }
                }
            }
        };

        // Upstream headers. The gateway's own go out after the client's (`Added`); the
        // client's of the same names are read and dropped only when there can be any: the
        // parser saw one, or a plugin may have set one.
        // Declared outside the block, which would hand it out by a copy.
        let mut added = Added::new();
        let client_host = {
            let client_version = parts.version;
            let h = &mut parts.headers;
            let replace = wire.gateway_set || !route.chain.is_empty();
            let client_ip = conn.peer_ip_header();
            let prev_xff = if replace {
                h.remove(&X_FORWARDED_FOR)
            } else {
                None
            };
            let xff = match prev_xff.as_ref().and_then(|v| v.to_str().ok()) {
                Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", conn.peer.ip()))
                    .unwrap_or(client_ip.clone()),
                None => client_ip.clone(),
            };
            added.push((&X_FORWARDED_FOR, xff));
            added.push((&X_REAL_IP, client_ip));
            added.push((&X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme())));
            // The host as sent shares the head's bytes; only one with capitals is copied.
            let forwarded_host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                HeaderValue::from_str(&host.to_ascii_lowercase()).ok()
            } else {
                HeaderValue::from_maybe_shared(shared(&wire.head, host)).ok()
            };
            if let Some(v) = forwarded_host {
                added.push((&X_FORWARDED_HOST, v));
            }
            added.push((&X_FORWARDED_PORT, conn.local_port_header.clone()));
            if let Ok(v) = HeaderValue::from_maybe_shared(shared(&wire.head, raw_path)) {
                added.push((&X_FORWARDED_PATH, v));
            }
            if let Some(n) = m.prefix_len
                && route.strip_path
                && n > 0
                && &path[..n] != "/"
                && let Ok(v) = HeaderValue::from_str(&path[..n])
            {
                added.push((&X_FORWARDED_PREFIX, v));
            }
            let prev_via = if replace { h.remove(header::VIA) } else { None };
            added.push((&VIA, headers::via(prev_via.as_ref(), client_version)));
            added.push((&REQUEST_ID, id.header()));
            if replace {
                // Whatever the gateway sets replaces the client's, and a prefix it does not set
                // is not the client's to claim.
                for (name, _) in &added {
                    h.remove(*name);
                }
                h.remove(&X_FORWARDED_PREFIX);
            }
            if route.preserve_host {
                h.get(header::HOST).cloned()
            } else {
                None
            }
        };
        parts.uri = uri;

        let proxy_done = Instant::now();
        let result = send_with_retries(
            service,
            route.preserve_host,
            parts,
            &added,
            body,
            client_host,
            route.chain.is_empty(),
        )
        .await;
        // The request head has gone out: its map serves the next request's head.
        buffers::recycle(std::mem::take(&mut parts.headers));
        let upstream_latency = proxy_done.elapsed();
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(request_id = id.as_str(), service = &*service.name, error = %e, "upstream failed");
                let (status, msg) = if e.is_timeout() {
                    (
                        StatusCode::GATEWAY_TIMEOUT,
                        "The upstream server is timing out",
                    )
                } else {
                    (
                        StatusCode::BAD_GATEWAY,
                        "An invalid response was received from the upstream server",
                    )
                };
                return gateway_error(status, msg, id, started);
            }
        };

        let (mut rparts, rbody) = resp.into_parts();
        let rh = &mut rparts.headers;
        let prev_via = match rbody.raw_head() {
            Some(raw) => raw.via(),
            None => take_replaced(rh, rbody.gateway_set()),
        };
        let marks = upstream_marks(prev_via, upstream_latency, proxy_done - started);
        if route.chain.is_empty() {
            // No plugin reads the response head: its lines go out as they came, and the
            // gateway's after them.
            stamp.upstream = Some(marks);
        } else {
            for (name, value) in marks.headers() {
                rh.insert(name, value);
            }
            header_filter_phase(&route.chain, &mut ctx, &mut rparts.status, rh);
        }
        http::Response::from_parts(rparts, ProxyBody::Upstream(rbody))
    }
}

/// A closed route's answer: 503, naming the route and what it carries that is not enforced.
fn closed_response(route: &RouteRt, closed: &Closed, id: &RequestId, started: Instant) -> Response {
    let name = match &route.kind {
        RouteKind::Ocelot(o) => &o.template,
        RouteKind::Aggregate(a) => &a.template,
        RouteKind::Kong => &route.name,
    };
    tracing::debug!(
        request_id = id.as_str(),
        route = &**name,
        "closed route answered 503"
    );
    let mut r = respond::json_value(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({
            "message": closed.message(name),
            "route": &**name,
            "unenforced": closed.reasons,
            "request_id": id.as_str(),
        }),
    );
    r.headers_mut().insert(
        &RESPONSE_LATENCY,
        headers::millis(started.elapsed().as_millis()),
    );
    r
}

fn gateway_error(status: StatusCode, msg: &str, id: &RequestId, started: Instant) -> Response {
    let mut r = respond::error(status, msg, id.as_str());
    r.headers_mut().insert(
        &RESPONSE_LATENCY,
        headers::millis(started.elapsed().as_millis()),
    );
    r
}

/// The gateway's stamp on every response it sends: the request id, and its name unless
/// the response has one. No response reaches here with the request id in its map: an
/// upstream's is dropped, and so is one a plugin set (`header_filter_phase`).
pub fn finish(resp: &Response, id: &RequestId, stamp: &mut Stamp) {
    stamp.request_id = Some(id.header());
    stamp.server = match resp.body().raw_head() {
        Some(raw) => !raw.server,
        None => !resp.headers().contains_key(header::SERVER),
    };
}

/// The plugin context of a request on `route`, and the route's service.
fn route_ctx<'s>(
    snap: &'s Snapshot,
    route: &RouteRt,
    conn: &Conn,
    id: &RequestId,
    started: Instant,
    upstream_host: Option<HeaderValue>,
) -> (Ctx, Option<&'s ServiceRt>) {
    let service = route.service.map(|s| &snap.services[s]);
    let ctx = Ctx {
        request_id: id.clone(),
        client: conn.peer,
        started,
        route_name: Some(route.name.clone()),
        service_name: service.map(|s| s.name.clone()),
        upstream_host,
        response_headers: Vec::new(),
    };
    (ctx, service)
}

/// `part` as a slice of `whole` when it lies within it (no copy), else a copy of it.
fn shared(whole: &Bytes, part: &str) -> Bytes {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    if p >= w && p + part.len() <= w + whole.len() {
        whole.slice_ref(part.as_bytes())
    } else {
        Bytes::copy_from_slice(part.as_bytes())
    }
}

/// The origin-form URI `path?query`, keeping the client's query byte for byte (a bare
/// trailing `?` included).
fn upstream_uri(path: &str, client: &Uri) -> Option<Uri> {
    let query = client
        .path_and_query()
        .and_then(|pq| pq.as_str().find('?').map(|i| &pq.as_str()[i..]))
        .unwrap_or("");
    let mut s = String::with_capacity(path.len() + query.len());
    s.push_str(path);
    s.push_str(query);
    http::uri::PathAndQuery::from_maybe_shared(Bytes::from(s))
        .ok()
        .map(Uri::from)
}

/// Removes the upstream's copies of the headers the gateway sets on a response (its
/// request id too: the client gets the gateway's, `finish`), returning its Via. Only a head
/// that has one of those names (`gateway_set`) is searched.
fn take_replaced(h: &mut HeaderMap, gateway_set: bool) -> Option<HeaderValue> {
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

/// The gateway's part of a proxied response head: Via, extending the upstream's
/// (`prev_via`), and the latencies.
fn upstream_marks(
    prev_via: Option<HeaderValue>,
    upstream: std::time::Duration,
    proxy: std::time::Duration,
) -> UpstreamMarks {
    let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    UpstreamMarks {
        via: headers::via(prev_via.as_ref(), http::Version::HTTP_11),
        upstream_ms: ms(upstream),
        proxy_ms: ms(proxy),
    }
}

/// The access phase: each plugin in turn, waiting where one must; the first that answers
/// ends it, and its response goes through every plugin's header_filter. A request that
/// goes on loses any hop-by-hop header a plugin added, as the client's were at parsing.
async fn access_phase(
    chain: &Chain,
    ctx: &mut Ctx,
    view: &mut RequestView<'_>,
) -> Option<Response> {
    for plugin in &chain.plugins {
        let mut flow = plugin.access(ctx, view);
        while let Flow::Wait(fut) = flow {
            flow = fut.await;
        }
        if let Flow::Respond(mut resp) = flow {
            finish_plugin_response(chain, ctx, &mut resp);
            return Some(resp);
        }
    }
    strip_hop_by_hop(view.headers);
    None
}

/// A response a plugin made goes through the header_filter phase too.
fn finish_plugin_response(chain: &Chain, ctx: &mut Ctx, resp: &mut Response) {
    let mut status = resp.status();
    header_filter_phase(chain, ctx, &mut status, resp.headers_mut());
    *resp.status_mut() = status;
}

/// The header_filter phase: every plugin's hook, then the headers hooks asked for earlier.
fn header_filter_phase(chain: &Chain, ctx: &mut Ctx, status: &mut StatusCode, h: &mut HeaderMap) {
    for p in &chain.plugins {
        p.header_filter(ctx, status, h);
    }
    for (k, v) in ctx.response_headers.drain(..) {
        h.insert(k, v);
    }
    if !chain.is_empty() {
        // The request id is the gateway's to set (`finish`).
        h.remove(&REQUEST_ID);
    }
}

/// The request as an Ocelot route sees it.
struct Head<'a> {
    method: Method,
    /// The decoded request path (Ocelot's `Request.Path`).
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderMap,
}

/// Why an Ocelot request got no downstream response.
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// One request through an Ocelot route: options, downstream URL, forward, response.
/// `Err` when there is no downstream response (the caller answers it, or an aggregate makes
/// the part `null`).
#[allow(clippy::too_many_arguments)]
async fn ocelot_forward(
    snap: &Snapshot,
    conn: &Conn,
    ridx: usize,
    mut head: Head<'_>,
    mut body: ProxyBody,
    params: &Params,
    started: Instant,
    id: &RequestId,
) -> Result<Response, Failure> {
    let route = &snap.routes[ridx];
    let RouteKind::Ocelot(o) = &route.kind else {
        return Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "an aggregate part is not an Ocelot route",
        ));
    };
    if let Some(closed) = &route.closed {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            closed.message(&o.template),
        ));
    }
    let client_host = head.headers.get(header::HOST).cloned();
    let (mut ctx, service) = route_ctx(snap, route, conn, id, started, client_host);

    if !route.chain.is_empty() {
        let host_header = ctx.upstream_host.clone();
        let host = host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map_or("", |h| split_host_port(h).map_or(h, |(n, _)| n));
        let mut view = RequestView {
            method: &head.method,
            path: head.path,
            query: head.query,
            headers: &mut head.headers,
            scheme: conn.scheme(),
            host,
        };
        if let Some(resp) = access_phase(&route.chain, &mut ctx, &mut view).await {
            return Ok(resp);
        }
    }
    let Some(service) = service else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Service found with those values",
        ));
    };

    let downstream = o.downstream.render(params, head.path, head.query);
    let uri: Uri = escape_upstream(&downstream).parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "the downstream path cannot be built from this request",
        )
    })?;

    let h = &mut head.headers;
    h.remove(header::HOST);
    append_via(h, http::Version::HTTP_11);
    h.insert(&REQUEST_ID, id.header());
    let client_cookie = h.get(header::COOKIE).cloned();
    if let Some(jar) = &o.cookie_jar
        && let Some(c) = jar.cookie_header(client_cookie.as_ref())
    {
        h.insert(header::COOKIE, c);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = o.method.clone().unwrap_or_else(|| head.method.clone());
    parts.uri = uri;
    parts.version = o.version;
    let redirect_headers = if o.allow_auto_redirect && body.is_replayable() {
        // Each redirected request takes the jar's cookies as they are then.
        let mut hs = head.headers.clone();
        match client_cookie {
            Some(c) => hs.insert(header::COOKIE, c),
            None => hs.remove(header::COOKIE),
        };
        Some((parts.method.clone(), hs))
    } else {
        None
    };
    parts.headers = head.headers;

    let proxy_done = Instant::now();
    let sent = send_with_retries(service, false, &mut parts, &[], &mut body, None, false).await;
    buffers::recycle(std::mem::take(&mut parts.headers));
    let mut resp = sent.map_err(|e| ocelot_failure(service, &e, id))?;
    if let Some((method, headers)) = redirect_headers {
        resp = Box::pin(follow_redirects(service, o, resp, method, headers, id)).await?;
    }
    let upstream_latency = proxy_done.elapsed();

    let (mut rparts, rbody) = resp.into_parts();
    let rh = &mut rparts.headers;
    if let Some(jar) = &o.cookie_jar {
        jar.store(rh);
    }
    let prev_via = take_replaced(rh, rbody.gateway_set());
    let marks = upstream_marks(prev_via, upstream_latency, proxy_done - started);
    for (name, value) in marks.headers() {
        rh.insert(name, value);
    }
    header_filter_phase(&route.chain, &mut ctx, &mut rparts.status, rh);
    Ok(http::Response::from_parts(
        rparts,
        ProxyBody::Upstream(rbody),
    ))
}

/// Ocelot's answers for a downstream that gives none: 502 when unreachable, 503 on timeout.
fn ocelot_failure(service: &ServiceRt, e: &UpstreamError, id: &RequestId) -> Failure {
    tracing::warn!(request_id = id.as_str(), service = &*service.name, error = %e, "downstream failed");
    if e.is_timeout() {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The downstream service did not answer in time",
        )
    } else {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            "The downstream service could not be reached",
        )
    }
}

/// HttpHandlerOptions.AllowAutoRedirect: follows 301/302/303/307/308 like HttpClient (303,
/// and 301/302 after a POST, become GET). Only for requests without a body, which can be
/// sent again.
async fn follow_redirects(
    service: &ServiceRt,
    o: &OcelotRt,
    mut resp: http::Response<client::UpstreamBody>,
    mut method: Method,
    headers: HeaderMap,
    id: &RequestId,
) -> Result<http::Response<client::UpstreamBody>, Failure> {
    for _ in 0..MAX_REDIRECTS {
        // HttpClient's cookie container sees every response, redirects included.
        if let Some(jar) = &o.cookie_jar {
            jar.store(resp.headers());
        }
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(resp);
        }
        let Some(location) = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
        else {
            return Ok(resp);
        };
        if status == 303 || (matches!(status, 301 | 302) && method == Method::POST) {
            method = Method::GET;
        }
        let (tls, host, port, pq): (bool, String, u16, String) = match location.parse::<Uri>() {
            Ok(u) if u.scheme().is_some() => {
                let tls = u.scheme_str() == Some("https");
                let Some(host) = u.host() else {
                    return Ok(resp);
                };
                (
                    tls,
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    u.port_u16().unwrap_or(if tls { 443 } else { 80 }),
                    u.path_and_query()
                        .map_or("/".into(), |p| p.as_str().to_string()),
                )
            }
            Ok(u) => {
                let (host, port) = match &service.dest {
                    Dest::Direct(p) => (p.host.to_string(), p.port),
                    Dest::Balanced(b) => match b.peers.first() {
                        Some(p) => (p.host.to_string(), p.port),
                        None => return Ok(resp),
                    },
                };
                (
                    service.tls,
                    host,
                    port,
                    u.path_and_query()
                        .map_or("/".into(), |p| p.as_str().to_string()),
                )
            }
            Err(_) => return Ok(resp),
        };
        let Ok(uri) = pq.parse::<Uri>() else {
            return Ok(resp);
        };
        let default = if tls { 443 } else { 80 };
        let host_value = if port == default {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method.clone();
        parts.uri = uri;
        parts.headers = headers.clone();
        if let Ok(v) = HeaderValue::from_str(&host_value) {
            parts.headers.insert(header::HOST, v);
        }
        if let Some(c) = o
            .cookie_jar
            .as_ref()
            .and_then(|jar| jar.cookie_header(headers.get(header::COOKIE)))
        {
            parts.headers.insert(header::COOKIE, c);
        }
        let host: std::sync::Arc<str> = host.into();
        let target = client::Target {
            host: &host,
            port,
            tls,
            tls_verify: service.tls_verify,
            connect_timeout: service.connect_timeout,
            read_timeout: service.read_timeout,
        };
        let conn = client::checkout(&target)
            .await
            .map_err(|e| ocelot_failure(service, &e, id))?;
        resp = conn
            .send(&target, &parts, &[], &mut ProxyBody::Empty, false)
            .await
            .map_err(|e| ocelot_failure(service, &e, id))?;
    }
    Ok(resp)
}

/// The outcome of one aggregate part: the status (`None` when it failed) and the body.
type PartResult = (Option<u16>, Bytes);

/// Sends one aggregate part and reads its body.
#[allow(clippy::too_many_arguments)]
async fn part(
    snap: &Snapshot,
    conn: &Conn,
    ridx: usize,
    path: &str,
    query: Option<&str>,
    mut headers: HeaderMap,
    params: Params,
    started: Instant,
    id: &RequestId,
) -> PartResult {
    // Parts are sent without a body.
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let head = Head {
        method: Method::GET,
        path,
        query,
        headers,
    };
    match ocelot_forward(
        snap,
        conn,
        ridx,
        head,
        ProxyBody::Empty,
        &params,
        started,
        id,
    )
    .await
    {
        Err(_) => (None, Bytes::new()),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut buf = bytes::BytesMut::new();
            while let Some(piece) = body.data().await {
                match piece {
                    Ok(d) => {
                        if buf.len() + d.len() > MAX_PART_BODY {
                            tracing::warn!(
                                request_id = id.as_str(),
                                "aggregate part body over {MAX_PART_BODY} bytes; the part is null"
                            );
                            return (None, Bytes::new());
                        }
                        buf.extend_from_slice(&d);
                    }
                    Err(_) => return (None, Bytes::new()),
                }
            }
            (Some(status), buf.freeze())
        }
    }
}

/// An aggregate: every part through `ocelot_forward` with the aggregate's request and
/// placeholder values, concurrently; with RouteKeysConfig the first part goes first and each
/// distinct value its JsonPath finds calls the configured part once. The answer is always 200
/// `application/json`, downstream headers dropped (as Ocelot).
#[allow(clippy::too_many_arguments)]
async fn aggregate(
    snap: &Snapshot,
    conn: &Conn,
    agg: &AggregateRt,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    params: &Params,
    started: Instant,
    id: &RequestId,
) -> Response {
    let aggregator = match &agg.aggregator {
        Ok(a) => *a,
        Err(name) => {
            let msg = format!(
                "aggregate {} names the custom aggregator `{name}`, which switchyard cannot run; use one of: {}",
                agg.template,
                Aggregator::NAMES.join(", ")
            );
            return gateway_error(StatusCode::NOT_IMPLEMENTED, &msg, id, started);
        }
    };
    let send = |ridx: usize, params: Params| {
        Box::pin(part(
            snap,
            conn,
            ridx,
            path,
            query,
            headers.clone(),
            params,
            started,
            id,
        )) as std::pin::Pin<Box<dyn std::future::Future<Output = PartResult> + Send + '_>>
    };
    let n = agg.parts.len();
    let mut results: Vec<Vec<serde_json::Value>> = vec![Vec::new(); n];
    let mut many = vec![false; n];
    if agg.configs.is_empty() {
        let futures = agg
            .parts
            .iter()
            .map(|(_, ridx)| send(*ridx, params.clone()))
            .collect();
        for (i, (status, body)) in aggregate::join_all(futures).await.into_iter().enumerate() {
            results[i].push(aggregate::part_value(status, &body));
        }
    } else {
        let (first_status, first_body) = send(agg.parts[0].1, params.clone()).await;
        let first_json: Option<serde_json::Value> = if first_status.is_some_and(|s| s != 404) {
            serde_json::from_slice(&first_body).ok()
        } else {
            None
        };
        results[0].push(aggregate::part_value(first_status, &first_body));
        let mut calls: Vec<(usize, Params)> = Vec::new();
        for (i, (_, ridx)) in agg.parts.iter().enumerate().skip(1) {
            let configs: Vec<&(usize, aggregate::JsonPath, std::sync::Arc<str>)> =
                agg.configs.iter().filter(|c| c.0 == i).collect();
            if configs.is_empty() {
                calls.push((*ridx, params.clone()));
                continue;
            }
            for (_, jp, param) in configs {
                let values = first_json
                    .as_ref()
                    .map(|j| jp.values(j))
                    .unwrap_or_default();
                many[i] = many[i] || values.len() > 1;
                for v in values {
                    let mut p = params.clone();
                    p.retain(|(n, _)| **n != **param);
                    p.push((param.clone(), v));
                    calls.push((*ridx, p));
                }
            }
        }
        let owners: Vec<usize> = calls
            .iter()
            .map(|(ridx, _)| {
                agg.parts
                    .iter()
                    .skip(1)
                    .position(|(_, r)| r == ridx)
                    .map_or(0, |p| p + 1)
            })
            .collect();
        let futures = calls.into_iter().map(|(ridx, p)| send(ridx, p)).collect();
        for (owner, (status, body)) in owners.into_iter().zip(aggregate::join_all(futures).await) {
            results[owner].push(aggregate::part_value(status, &body));
        }
    }
    let parts: Vec<(&str, Vec<serde_json::Value>, bool)> = agg
        .parts
        .iter()
        .zip(results)
        .zip(many)
        .map(|(((key, _), vs), m)| (&**key, vs, m))
        .collect();
    let body = aggregator.combine(parts);
    let mut r = respond::bytes(StatusCode::OK, Bytes::from(body.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        &RESPONSE_LATENCY,
        headers::millis(started.elapsed().as_millis()),
    );
    r
}

fn https_required(
    route: &RouteRt,
    host_header: &str,
    uri: &Uri,
    id: &RequestId,
    started: Instant,
) -> Response {
    if route.https_redirect == StatusCode::UPGRADE_REQUIRED {
        let mut r = gateway_error(
            StatusCode::UPGRADE_REQUIRED,
            "Please use HTTPS protocol",
            id,
            started,
        );
        r.headers_mut().insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        return r;
    }
    let host = split_host_port(host_header).map_or(host_header, |(h, _)| h);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut r = http::Response::new(ProxyBody::Empty);
    *r.status_mut() = route.https_redirect;
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{target}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Connects to the service's destination, again on connection errors as `retries` allows
/// (the next balancer target each time), then sends the request once. With `raw_head` the
/// response's header lines stay as they came (`UpstreamBody::raw_head`).
///
/// Not an `async fn`, which would keep a second copy of its arguments in its future, and
/// inlined, as `handle` is.
#[inline(always)]
#[allow(clippy::manual_async_fn)]
fn send_with_retries<'a>(
    service: &'a ServiceRt,
    preserve_host: bool,
    parts: &'a mut http::request::Parts,
    added: &'a [(&'static HeaderName, HeaderValue)],
    body: &'a mut ProxyBody,
    client_host: Option<HeaderValue>,
    raw_head: bool,
) -> impl Future<Output = Result<http::Response<client::UpstreamBody>, UpstreamError>> + 'a {
    async move {
        let mut tries_left = service.retries;
        loop {
            let peer: &Peer = match &service.dest {
                Dest::Direct(p) => p,
                Dest::Balanced(b) => match b.next() {
                    Some(p) => p,
                    None => {
                        return Err(UpstreamError::Connect {
                            addr: b.name.clone(),
                            source: std::io::Error::other("no target with a positive weight"),
                        });
                    }
                },
            };
            let target = client::Target {
                host: &peer.host,
                port: peer.port,
                tls: service.tls,
                tls_verify: service.tls_verify,
                connect_timeout: service.connect_timeout,
                read_timeout: service.read_timeout,
            };
            // Bound before it is used, so that the checkout's result is gone while the request
            // is sent rather than kept in this future.
            let conn = match client::checkout(&target).await {
                Ok(conn) => conn,
                Err(e) if e.retryable() && tries_left > 0 => {
                    tracing::debug!(error = %e, "retrying upstream");
                    tries_left -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let host = match (&client_host, preserve_host) {
                (Some(h), true) => h.clone(),
                _ => peer.host_header.clone(),
            };
            parts.headers.insert(header::HOST, host);
            return conn.send(&target, parts, added, body, raw_head).await;
        }
    }
}

/// Kong's `get_upstream_uri_v0` (traditional_compatible applies v0 whatever path_handling
/// says): join the service path with what is left of the request path.
fn upstream_path<'p>(
    route: &RouteRt,
    service: &ServiceRt,
    path: &'p str,
    m: &Match,
) -> std::borrow::Cow<'p, str> {
    let base = service.base_path.as_str();
    if base == "/" && !route.strip_path {
        // The common "pass everything through" route: the path as it is.
        return std::borrow::Cow::Borrowed(path);
    }
    let postfix = match m.prefix_len {
        Some(n) if route.strip_path => &path[n..],
        _ => &path[1.min(path.len())..],
    };
    let postfix = match postfix {
        "." | ".." => "",
        p => p
            .strip_prefix("./")
            .or_else(|| p.strip_prefix("../"))
            .unwrap_or(p),
    };
    let strip = route.strip_path;
    if let Some(trimmed) = base.strip_suffix('/') {
        if strip {
            if postfix.is_empty() {
                if base == "/" {
                    "/".to_string()
                } else if path.ends_with('/') {
                    base.to_string()
                } else {
                    trimmed.to_string()
                }
            } else if postfix.starts_with('/') {
                format!("{trimmed}{postfix}")
            } else {
                format!("{base}{postfix}")
            }
        } else {
            format!("{base}{}", &path[1.min(path.len())..])
        }
    } else if strip {
        if postfix.is_empty() {
            if path.len() > 1 && path.ends_with('/') {
                format!("{base}/")
            } else {
                base.to_string()
            }
        } else if postfix.starts_with('/') {
            format!("{base}{postfix}")
        } else {
            format!("{base}/{postfix}")
        }
    } else if path == "/" {
        base.to_string()
    } else {
        format!("{base}{path}")
    }
    .into()
}
