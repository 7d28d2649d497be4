//! The forward step of a Kong route: the upstream path (strip_path and the service path
//! joined as Kong's `traditional_compatible` router does), the forwarding headers
//! (X-Forwarded-*, X-Real-IP, Via, the request id), the Host the upstream gets, then the
//! send, retried across targets on connection errors.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{StatusCode, Uri};

use super::body::ProxyBody;
use super::buffers;
use super::client::{UpstreamBody, UpstreamError};
use super::headers::{self, *};
use super::http1::Wire;
use super::pipeline::{Env, FilteredRequest, Response, Run, take_replaced, upstream_marks};
use super::upstream::send_with_retries;
use crate::plugins::Phases;
use crate::router::Match;
use crate::snapshot::{RouteRt, ServiceRt};
use crate::uri::escape_upstream;

/// A matched Kong route on its way to its service. Copied into each step of `send`, so that
/// no step borrows it: what the steps before the send read is not kept in the request's
/// future.
#[derive(Clone, Copy)]
pub struct Forward<'a, 'p> {
    pub env: Env<'a>,
    pub route: &'a RouteRt,
    pub service: &'a ServiceRt,
    /// The normalised request path.
    pub path: &'p str,
    pub m: &'p Match,
    /// The Host the client sent, without its port.
    pub host: &'p str,
}

impl<'a> Forward<'a, '_> {
    /// Sends the request upstream; `Err` is the gateway's answer when it could not (502,
    /// 504). What is needed only until the upstream request is built is computed by steps
    /// that end before it is sent, so that the request's future does not keep it. Inlined,
    /// as the pipeline's `handle` is; not an `async fn`, for the same reason as `handle`.
    #[inline(always)]
    #[allow(clippy::manual_async_fn)]
    pub fn send<'c>(
        self,
        parts: &'c mut http::request::Parts,
        body: &'c mut ProxyBody,
        wire: &'c Wire,
        mut run: Option<&'c mut Run<'a>>,
        stamp: &'c mut Stamp,
    ) -> impl Future<Output = Result<Response, Response>> + 'c
    where
        'a: 'c,
        Self: 'c,
    {
        async move {
            let Some(uri) = self.request_uri(&parts.uri, run.as_deref_mut()) else {
                return Err(self.env.error(
                    StatusCode::BAD_REQUEST,
                    "the request path cannot be forwarded",
                ));
            };
            // The gateway's headers go out after the client's. Declared here: a step that
            // returned it would hand it out by a copy.
            let mut added = Added::new();
            if let Some(r) = run.as_deref_mut() {
                r.identity_upstream(&mut parts.headers, &mut added);
            }
            // The client's headers of the gateway's names are read and dropped only when
            // there can be any: the parser saw one, or a plugin changed the head.
            let replace = wire.gateway_set
                || (run.as_deref().is_some_and(|r| r.head_changed)
                    && headers::has_forwarding(&parts.headers));
            let client_host = self.forwarding_headers(parts, wire, replace, &mut added);
            parts.uri = uri;
            let Forward {
                env,
                route,
                service,
                ..
            } = self;
            // A plugin that set the Host the upstream gets (request-transformer) wins over
            // preserve_host, as Kong's `upstream_host` does.
            let host_override = run.as_deref_mut().and_then(|r| r.ctx.upstream_host.take());
            let preserve_host = route.preserve_host || host_override.is_some();
            let client_host = host_override.or(client_host);

            let proxy_done = std::time::Instant::now();
            // No plugin filters the response body: the head's lines go out as they came, and
            // the gateway's after them. Head hooks turn them into a map only if they ask for
            // the headers (`ResponseHead`).
            let raw_head = run.as_deref().is_none_or(|r| {
                !r.chain
                    .has(Phases::RESPONSE_BODY | Phases::RESPONSE_TRAILERS)
            });
            let result = match run.as_deref_mut() {
                Some(r) if r.chain.has(Phases::REQUEST_BODY | Phases::UPSTREAM_REQUEST) => {
                    r.upstream_request(parts);
                    if headers::has_forwarding(&parts.headers) {
                        // Set by the hook: the gateway's own replace them.
                        for (name, _) in &added {
                            parts.headers.remove(*name);
                        }
                    }
                    let mut filtered = FilteredRequest::new(body, r);
                    let target = &mut filtered;
                    Box::pin(send_with_retries(
                        service,
                        preserve_host,
                        parts,
                        &added,
                        target,
                        client_host,
                        raw_head,
                    ))
                    .await
                }
                _ => {
                    send_with_retries(
                        service,
                        preserve_host,
                        parts,
                        &added,
                        body,
                        client_host,
                        raw_head,
                    )
                    .await
                }
            };
            // The request head has gone out: its map serves the next request's head.
            buffers::recycle(std::mem::take(&mut parts.headers));
            let upstream_latency = proxy_done.elapsed();
            if let Some(r) = run.as_deref_mut() {
                r.upstream_latency = Some(upstream_latency);
            }
            match result {
                Ok(resp) => {
                    let proxy_latency = proxy_done - env.started;
                    Ok(with_marks(
                        resp,
                        upstream_latency,
                        proxy_latency,
                        raw_head,
                        stamp,
                    ))
                }
                Err(e) => Err(upstream_failed(env, service, &e)),
            }
        }
    }

    /// The upstream request line: the path a plugin set, else the route's and service's
    /// (`upstream_path`), escaped, with the client's query. `None`: it cannot be one.
    #[inline]
    fn request_uri(self, client: &Uri, run: Option<&mut Run<'_>>) -> Option<Uri> {
        let override_path = run.and_then(|r| r.upstream_path.take());
        let upstream_path = match &override_path {
            Some(p) => std::borrow::Cow::Borrowed(p.as_str()),
            None => upstream_path(self.route, self.service, self.path, self.m),
        };
        let upstream_path = escape_upstream(&upstream_path);
        if upstream_path == client.path() && client.scheme().is_none() {
            // Nothing to rewrite (no strip, no service path): the request line travels as it
            // came.
            return Some(client.clone());
        }
        upstream_uri(&upstream_path, client)
    }

    /// The forwarding headers (X-Forwarded-*, X-Real-IP, Via, the request id) into `added`;
    /// with `replace`, the client's of the same names are dropped (their X-Forwarded-For
    /// and Via are extended). Gives the client's Host when the route preserves it.
    #[inline]
    fn forwarding_headers(
        self,
        parts: &mut http::request::Parts,
        wire: &Wire,
        replace: bool,
        added: &mut Added,
    ) -> Option<HeaderValue> {
        let Forward {
            env,
            route,
            path,
            m,
            host,
            ..
        } = self;
        let raw_path = parts.uri.path();
        let client_version = parts.version;
        let h = &mut parts.headers;
        let conn = env.conn;
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
        added.push((&REQUEST_ID, env.id.header()));
        if replace {
            // Whatever the gateway sets replaces the client's, and a prefix it does not set
            // is not the client's to claim.
            for (name, _) in added.iter() {
                h.remove(*name);
            }
            h.remove(&X_FORWARDED_PREFIX);
        }
        if route.preserve_host {
            h.get(header::HOST).cloned()
        } else {
            None
        }
    }
}

/// The gateway's answer when the upstream could not be reached or did not answer in time.
fn upstream_failed(env: Env<'_>, service: &ServiceRt, e: &UpstreamError) -> Response {
    if e.is_client_error() {
        tracing::info!(request_id = env.id.as_str(), error = %e, "client error");
        return env.error(StatusCode::BAD_REQUEST, super::server::CLIENT_BODY_BROKEN);
    }
    tracing::warn!(request_id = env.id.as_str(), service = &*service.identity.name, error = %e, "upstream failed");
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
    env.error(status, msg)
}

/// The upstream's response with the gateway's marks (its Via, the latencies): in its
/// headers, or, when its head goes out as it came (`raw_head`), in `stamp` for the writer.
fn with_marks(
    resp: http::Response<UpstreamBody>,
    upstream_latency: Duration,
    proxy_latency: Duration,
    raw_head: bool,
    stamp: &mut Stamp,
) -> Response {
    let (mut rparts, rbody) = resp.into_parts();
    let rh = &mut rparts.headers;
    let prev_via = match rbody.raw_head() {
        Some(raw) => raw.via(),
        None => take_replaced(rh, rbody.gateway_set()),
    };
    let marks = upstream_marks(prev_via, upstream_latency, proxy_latency);
    if raw_head {
        stamp.upstream = Some(marks);
    } else {
        for (name, value) in marks.headers() {
            rh.insert(name, value);
        }
    }
    http::Response::from_parts(rparts, ProxyBody::Upstream(rbody))
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

/// A route that allows https only, asked over http: 426, or the configured redirect.
pub fn https_required(env: &Env<'_>, route: &RouteRt, host_header: &str, uri: &Uri) -> Response {
    if route.https_redirect == StatusCode::UPGRADE_REQUIRED {
        let mut r = env.error(StatusCode::UPGRADE_REQUIRED, "Please use HTTPS protocol");
        r.headers_mut().insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        return r;
    }
    let host = crate::config::kong::split_host_port(host_header).map_or(host_header, |(h, _)| h);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut r = http::Response::new(ProxyBody::Empty);
    *r.status_mut() = route.https_redirect;
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{target}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
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
