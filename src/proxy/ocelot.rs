//! The forward step of an Ocelot route, and what Ocelot's HttpClient keeps per route: the
//! downstream request built from the DownstreamPathTemplate, its method and version, the
//! cookie container (`UseCookieContainer`) and redirects (`AllowAutoRedirect`).

use std::sync::Mutex;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};

use super::body::ProxyBody;
use super::buffers;
use super::client::{self, UpstreamError};
use super::headers::{REQUEST_ID, append_via};
use super::pipeline::{Env, FilteredRequest, Response, Run, take_replaced, upstream_marks};
use super::upstream::send_with_retries;
use crate::config::ocelot::template::Params;
use crate::exchange::{Placeholders, RequestId};
use crate::plugins::Phases;
use crate::snapshot::{OcelotRt, RouteKind, ServiceRt};
use crate::uri::escape_upstream;

/// Redirects followed for an Ocelot route with AllowAutoRedirect (HttpClient's default).
const MAX_REDIRECTS: usize = 50;

/// The request as an Ocelot route sees it.
pub struct Head<'a> {
    pub method: Method,
    /// The decoded request path (Ocelot's `Request.Path`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderMap,
    /// The client's Host header as sent (`{UpstreamHost}`).
    pub host: Option<HeaderValue>,
}

/// Why an Ocelot request got no downstream response.
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// One request through an Ocelot route's forward step: the downstream URL from the template
/// and the placeholder values, DownstreamHttpMethod and version, the downstream's own Host,
/// no X-Forwarded-* (Ocelot adds none), the route's cookie jar and redirects. The access
/// phase has run (the pipeline's for a request, the aggregate's for a part). `Err` when
/// there is no downstream response (the caller answers it, or an aggregate makes the part
/// `null`).
pub async fn forward<'a>(
    env: Env<'a>,
    ridx: usize,
    mut head: Head<'_>,
    mut body: ProxyBody,
    params: &Params,
    mut run: Option<&mut Run<'a>>,
) -> Result<Response, Failure> {
    if let Some(r) = run.as_deref_mut() {
        r.identity_into(&mut head.headers);
    }
    let snap = env.snap;
    let route = &snap.routes[ridx];
    let RouteKind::Ocelot(o) = &route.kind else {
        return Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "an aggregate part is not an Ocelot route",
        ));
    };
    let Some(service) = route.service.map(|s| &snap.services[s]) else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Service found with those values",
        ));
    };

    let override_path = run.as_ref().and_then(|r| r.upstream_path.clone());
    // Plugins may have changed the placeholder values (ChangeDownstreamPathTemplate).
    let params = run
        .as_ref()
        .and_then(|r| r.ctx.extensions.get::<Placeholders>())
        .map_or(params, |p| &p.0);
    let downstream = match override_path {
        Some(p) => p,
        None => o.downstream.render(params, head.path, head.query),
    };
    let uri: Uri = escape_upstream(&downstream).parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "the downstream path cannot be built from this request",
        )
    })?;

    let h = &mut head.headers;
    h.remove(header::HOST);
    append_via(h, http::Version::HTTP_11);
    h.insert(&REQUEST_ID, env.id.header());
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
    let sent = match run {
        Some(r) if r.chain.has(Phases::REQUEST_BODY | Phases::UPSTREAM_REQUEST) => {
            r.upstream_request(&mut parts);
            let mut filtered = FilteredRequest::new(&mut body, r);
            let sent =
                send_with_retries(service, false, &mut parts, &[], &mut filtered, None, false)
                    .await;
            filtered.run.upstream_latency = Some(proxy_done.elapsed());
            sent
        }
        run => {
            let sent =
                send_with_retries(service, false, &mut parts, &[], &mut body, None, false).await;
            if let Some(r) = run {
                r.upstream_latency = Some(proxy_done.elapsed());
            }
            sent
        }
    };
    buffers::recycle(std::mem::take(&mut parts.headers));
    let mut resp = sent.map_err(|e| failure(service, &e, env.id))?;
    if let Some((method, headers)) = redirect_headers {
        resp = Box::pin(follow_redirects(service, o, resp, method, headers, env.id)).await?;
    }
    let upstream_latency = proxy_done.elapsed();

    let (mut rparts, rbody) = resp.into_parts();
    let rh = &mut rparts.headers;
    if let Some(jar) = &o.cookie_jar {
        jar.store(rh);
    }
    let prev_via = take_replaced(rh, rbody.gateway_set());
    let marks = upstream_marks(prev_via, upstream_latency, proxy_done - env.started);
    for (name, value) in marks.headers() {
        rh.insert(name, value);
    }
    Ok(http::Response::from_parts(
        rparts,
        ProxyBody::Upstream(rbody),
    ))
}

/// Ocelot's answers for a downstream that gives none: 502 when unreachable, 503 on timeout.
fn failure(service: &ServiceRt, e: &UpstreamError, id: &RequestId) -> Failure {
    if e.is_client_error() {
        tracing::info!(request_id = id.as_str(), error = %e, "client error");
        return Failure::new(StatusCode::BAD_REQUEST, super::server::CLIENT_BODY_BROKEN);
    }
    tracing::warn!(request_id = id.as_str(), service = &*service.identity.name, error = %e, "downstream failed");
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
                let Some(p) = service.dest.peers().first() else {
                    return Ok(resp);
                };
                let (host, port) = (p.host.to_string(), p.port);
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
            tls_settings: None,
            sni: "",
            connect_timeout: service.connect_timeout,
            read_timeout: service.read_timeout,
        };
        let conn = client::checkout(&target)
            .await
            .map_err(|e| failure(service, &e, id))?;
        resp = conn
            .send(&target, &parts, &[], &mut ProxyBody::Empty, false)
            .await
            .map_err(|e| failure(service, &e, id))?;
    }
    Ok(resp)
}

/// Ocelot's `UseCookieContainer`: one cookie jar shared by every client of the route (as in
/// Ocelot, where the route's HttpClient keeps it). Cookies are kept by name; attributes other
/// than the value are not tracked.
#[derive(Default)]
pub struct CookieJar {
    cookies: Mutex<Vec<(String, String)>>,
}

impl CookieJar {
    /// Stores the cookies of `Set-Cookie` response headers.
    pub fn store(&self, headers: &http::HeaderMap) {
        let mut jar = self.cookies.lock().unwrap_or_else(|e| e.into_inner());
        for v in headers.get_all(http::header::SET_COOKIE) {
            let Ok(text) = v.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            let expired = text
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            jar.retain(|(n, _)| *n != name);
            if !expired {
                jar.push((name, value));
            }
        }
    }

    /// The `Cookie` header for the next request, merged with the client's own cookies.
    pub fn cookie_header(&self, client: Option<&HeaderValue>) -> Option<HeaderValue> {
        let jar = self.cookies.lock().unwrap_or_else(|e| e.into_inner());
        if jar.is_empty() {
            return None;
        }
        let mut text = client
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default()
            .to_string();
        for (n, v) in jar.iter() {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(n);
            text.push('=');
            text.push_str(v);
        }
        HeaderValue::from_str(&text).ok()
    }
}
