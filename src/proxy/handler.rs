//! One request through the gateway:
//!
//! normalise ─▶ route ─▶ protocol checks ─▶ plugins (rewrite, access) ─▶ upstream path and
//! headers ─▶ upstream (retries on connect errors) ─▶ response headers ─▶ stream back
//!
//! Everything per route was compiled into the snapshot; here is only the per-request work.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::client::{self, UpstreamError};
use super::headers::{self, *};
use super::respond;
use super::{Conn, RequestId};
use crate::config::kong::split_host_port;
use crate::plugins::{Ctx, Flow, RequestView, Response};
use crate::router::path::{escape_upstream, normalize_path};
use crate::router::{Match, Request as RouteRequest};
use crate::snapshot::{Dest, Peer, RouteRt, ServiceRt, Snapshot};

pub async fn handle(snap: Arc<Snapshot>, conn: &Conn, req: Request<Incoming>) -> Response {
    let started = Instant::now();
    let request_id = RequestId::new();
    let mut resp = proxy(&snap, conn, req, started, &request_id).await;
    let h = resp.headers_mut();
    h.insert(&REQUEST_ID, request_id.header());
    if !h.contains_key(header::SERVER) {
        h.insert(header::SERVER, SERVER.clone());
    }
    resp
}

fn gateway_error(status: StatusCode, msg: &str, id: &RequestId, started: Instant) -> Response {
    let mut r = respond::error(status, msg, id.as_str());
    r.headers_mut().insert(&RESPONSE_LATENCY, headers::millis(started.elapsed().as_millis()));
    r
}

async fn proxy(snap: &Snapshot, conn: &Conn, req: Request<Incoming>, started: Instant, id: &RequestId) -> Response {
    let (mut parts, body) = req.into_parts();
    let raw_path = parts.uri.path();
    let host_header = parts.uri.host().map(str::to_string).or_else(|| parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)).unwrap_or_default();
    let (host, host_port) = split_host_port(&host_header).unwrap_or((&host_header, None));
    let path = normalize_path(raw_path);
    let route_req = RouteRequest { method: &parts.method, host, port: host_port.unwrap_or(conn.local.port()), path: &path, headers: &parts.headers };
    let Some(m) = snap.router.find(&route_req) else {
        return gateway_error(StatusCode::NOT_FOUND, "no Route matched with those values", id, started);
    };
    let route = &snap.routes[m.route];

    if route.https_only && !conn.tls {
        return https_required(route, &host_header, &parts.uri, id, started);
    }

    let mut ctx = Ctx { request_id: *id, client: conn.peer, started, route_name: Some(route.name.clone()), service_name: None };
    let service = route.service.map(|s| &snap.services[s]);
    ctx.service_name = service.map(|s| s.name.clone());

    if !route.chain.is_empty() {
        let query = parts.uri.query().map(str::to_string);
        let raw = raw_path.to_string();
        let mut view = RequestView { method: &parts.method, path: &raw, query: query.as_deref(), headers: &mut parts.headers, scheme: conn.scheme(), host };
        for plugin in &route.chain.plugins {
            let mut flow = plugin.access(&mut ctx, &mut view);
            while let Flow::Wait(fut) = flow {
                flow = fut.await;
            }
            if let Flow::Respond(mut resp) = flow {
                let mut status = resp.status();
                for p in &route.chain.plugins {
                    p.header_filter(&mut ctx, &mut status, resp.headers_mut());
                }
                *resp.status_mut() = status;
                resp.headers_mut().insert(&RESPONSE_LATENCY, headers::millis(started.elapsed().as_millis()));
                return resp;
            }
        }
    }

    let Some(service) = service else {
        return gateway_error(StatusCode::SERVICE_UNAVAILABLE, "no Service found with those values", id, started);
    };

    // Upstream request line.
    let upstream_path = upstream_path(route, service, &path, m);
    let upstream_path = escape_upstream(&upstream_path);
    let pq = match parts.uri.query() {
        Some(q) => format!("{upstream_path}?{q}"),
        None if parts.uri.path_and_query().is_some_and(|pq| pq.as_str().ends_with('?')) => format!("{upstream_path}?"),
        None => upstream_path.into_owned(),
    };
    let uri: Uri = match pq.parse() {
        Ok(u) => u,
        Err(_) => return gateway_error(StatusCode::BAD_REQUEST, "the request path cannot be forwarded", id, started),
    };

    // Upstream headers.
    let client_version = parts.version;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    let client_ip = conn.peer_ip_header();
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", conn.peer.ip())).unwrap_or(client_ip.clone()),
        None => client_ip.clone(),
    };
    h.insert(&X_FORWARDED_FOR, xff);
    h.insert(&X_REAL_IP, client_ip);
    h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme()));
    if let Ok(v) = HeaderValue::from_str(&host.to_ascii_lowercase()) {
        h.insert(&X_FORWARDED_HOST, v);
    }
    h.insert(&X_FORWARDED_PORT, conn.local_port_header.clone());
    if let Ok(v) = HeaderValue::from_str(raw_path) {
        h.insert(&X_FORWARDED_PATH, v);
    }
    match m.prefix_len {
        Some(n) if route.strip_path && n > 0 && &path[..n] != "/" => {
            if let Ok(v) = HeaderValue::from_str(&path[..n]) {
                h.insert(&X_FORWARDED_PREFIX, v);
            }
        }
        _ => {
            h.remove(&X_FORWARDED_PREFIX);
        }
    }
    append_via(h, client_version);
    h.insert(&REQUEST_ID, id.header());
    let client_host = h.get(header::HOST).cloned();

    let mut upstream_req = Request::new(ProxyBody::Stream(body));
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = std::mem::take(&mut parts.headers);

    let proxy_done = Instant::now();
    let result = send_with_retries(service, route, upstream_req, client_host).await;
    let upstream_latency = proxy_done.elapsed();
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(request_id = id.as_str(), service = &*service.name, error = %e, "upstream failed");
            let (status, msg) = if e.is_timeout() {
                (StatusCode::GATEWAY_TIMEOUT, "The upstream server is timing out")
            } else {
                (StatusCode::BAD_GATEWAY, "An invalid response was received from the upstream server")
            };
            return gateway_error(status, msg, id, started);
        }
    };

    let (mut rparts, rbody) = resp.into_parts();
    let rh = &mut rparts.headers;
    strip_hop_by_hop(rh);
    append_via(rh, http::Version::HTTP_11);
    rh.insert(&UPSTREAM_LATENCY, headers::millis(upstream_latency.as_millis()));
    rh.insert(&PROXY_LATENCY, headers::millis((proxy_done - started).as_millis()));
    if !route.chain.is_empty() {
        let mut status = rparts.status;
        for p in &route.chain.plugins {
            p.header_filter(&mut ctx, &mut status, rh);
        }
        rparts.status = status;
    }
    http::Response::from_parts(rparts, ProxyBody::Stream(rbody))
}

fn https_required(route: &RouteRt, host_header: &str, uri: &Uri, id: &RequestId, started: Instant) -> Response {
    if route.https_redirect == StatusCode::UPGRADE_REQUIRED {
        let mut r = gateway_error(StatusCode::UPGRADE_REQUIRED, "Please use HTTPS protocol", id, started);
        r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("TLS/1.2, HTTP/1.1"));
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
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
/// (the next balancer target each time), then sends the request once.
async fn send_with_retries(service: &ServiceRt, route: &RouteRt, mut req: Request<ProxyBody>, client_host: Option<HeaderValue>) -> Result<http::Response<Incoming>, UpstreamError> {
    let mut tries_left = service.retries;
    loop {
        let peer: Peer = match &service.dest {
            Dest::Direct(p) => p.clone(),
            Dest::Balanced(b) => match b.next() {
                Some(p) => p.clone(),
                None => {
                    return Err(UpstreamError::Connect { addr: b.name.clone(), source: std::io::Error::other("no target with a positive weight") });
                }
            },
        };
        let target = client::Target {
            host: &peer.host,
            port: peer.port,
            tls: service.tls,
            tls_verify: false,
            connect_timeout: service.connect_timeout,
            read_timeout: service.read_timeout,
        };
        match client::checkout(&target).await {
            Ok(conn) => {
                let host = match (&client_host, route.preserve_host) {
                    (Some(h), true) => h.clone(),
                    _ => peer.host_header.clone(),
                };
                req.headers_mut().insert(header::HOST, host);
                return conn.send(&target, req).await;
            }
            Err(e) if e.retryable() && tries_left > 0 => {
                tracing::debug!(error = %e, "retrying upstream");
                tries_left -= 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Kong's `get_upstream_uri_v0` (traditional_compatible applies v0 whatever path_handling
/// says): join the service path with what is left of the request path.
fn upstream_path(route: &RouteRt, service: &ServiceRt, path: &str, m: Match) -> String {
    let base = service.base_path.as_str();
    let postfix = match m.prefix_len {
        Some(n) if route.strip_path => &path[n..],
        _ => &path[1.min(path.len())..],
    };
    let postfix = match postfix {
        "." | ".." => "",
        p => p.strip_prefix("./").or_else(|| p.strip_prefix("../")).unwrap_or(p),
    };
    let strip = route.strip_path;
    if base.ends_with('/') {
        if strip {
            if postfix.is_empty() {
                if base == "/" {
                    "/".to_string()
                } else if path.ends_with('/') {
                    base.to_string()
                } else {
                    base[..base.len() - 1].to_string()
                }
            } else if postfix.starts_with('/') {
                format!("{}{postfix}", &base[..base.len() - 1])
            } else {
                format!("{base}{postfix}")
            }
        } else {
            format!("{base}{}", &path[1.min(path.len())..])
        }
    } else if strip {
        if postfix.is_empty() {
            if path.len() > 1 && path.ends_with('/') { format!("{base}/") } else { base.to_string() }
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
}
