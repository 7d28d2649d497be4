//! The admin listener: `GET /status` (snapshot version, hash, load time, counts, the last
//! reload's result and errors), `GET /status/ready`, `POST /reload`, `GET /config` (the
//! serving config with its defaults, as `switchyard config` prints it), and Ocelot's
//! administration API's `DELETE /outputcache/{region}` (clears an output cache region).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::config::model::Model;
use crate::exchange::respond;
use crate::gateway::Gateway;
use crate::proxy::pipeline::{Response, into_proxy};

/// A JSON answer of the admin API.
fn json_value(status: StatusCode, value: &serde_json::Value) -> Response {
    into_proxy(respond::json(status, value.to_string()))
}

pub async fn serve(gw: Arc<Gateway>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(route(&gw, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn millis_since_epoch(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub fn status_json(gw: &Gateway) -> serde_json::Value {
    let snap = gw.snapshot();
    let last = gw
        .last_reload
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    serde_json::json!({
        "version": snap.version,
        "configuration_hash": format!("{:016x}", snap.hash),
        "loaded_at_ms": millis_since_epoch(snap.loaded_at),
        "counts": {
            "services": snap.model.services.len(),
            "routes": snap.model.routes.len(),
            "upstreams": snap.model.upstreams.len(),
            "plugins": snap.model.plugins.len(),
            "consumers": snap.model.consumers.len(),
            "certificates": snap.model.certificates.len(),
            "ca_certificates": snap.model.ca_certificates.len(),
        },
        "warnings": snap.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "unserved": snap.unserved.iter().map(|(what, o)| format!("{}:{}: {}: {what}", o.file, o.line, o.path)).collect::<Vec<_>>(),
        "closed_routes": snap.closed_routes().map(|(route, closed)| serde_json::json!({
            "route": route,
            "unenforced": closed.reasons,
        })).collect::<Vec<_>>(),
        "last_reload": last.map(|r| serde_json::json!({
            "ok": r.ok,
            "at_ms": millis_since_epoch(r.at),
            "version": r.version,
            "compile_ms": r.compile_ms,
            "errors": r.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        })),
    })
}

/// What the admin listener answers, and the one method each takes.
#[derive(Clone, Copy)]
enum Endpoint {
    Status,
    Ready,
    Reload,
    Config,
    /// `GET /metrics`: the metrics Proxy-Wasm filters define, in Prometheus' text format.
    Metrics,
    /// `DELETE /outputcache/{region}` (Ocelot's `OutputCacheController`).
    OutputCache,
}

impl Endpoint {
    fn of(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/status" => Endpoint::Status,
            "/status/ready" => Endpoint::Ready,
            "/reload" => Endpoint::Reload,
            "/config" => Endpoint::Config,
            "/metrics" => Endpoint::Metrics,
            _ if region_of(path).is_some() => Endpoint::OutputCache,
            _ => return None,
        })
    }

    fn method(self) -> &'static str {
        match self {
            Endpoint::Reload => "POST",
            Endpoint::OutputCache => "DELETE",
            _ => "GET",
        }
    }
}

/// The region a `/outputcache/{region}` path names, percent-decoded as ASP.NET decodes a
/// route value (one segment, not empty).
fn region_of(path: &str) -> Option<String> {
    let raw = path.strip_prefix("/outputcache/")?;
    if raw.is_empty() || raw.contains('/') {
        return None;
    }
    let bytes: Vec<u8> =
        form_urlencoded::parse(format!("r={}", raw.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

async fn route(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response {
    let Some(endpoint) = Endpoint::of(req.uri().path()) else {
        return json_value(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"message": "Not found"}),
        );
    };
    let (method, allowed) = (req.method(), endpoint.method());
    if method.as_str() != allowed && !(method == Method::HEAD && allowed == "GET") {
        let mut r = json_value(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"message": "Method not allowed"}),
        );
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
        return r;
    }
    match endpoint {
        Endpoint::Status => json_value(StatusCode::OK, &status_json(gw)),
        Endpoint::Ready => json_value(
            StatusCode::OK,
            &serde_json::json!({"ready": true, "version": gw.snapshot().version}),
        ),
        Endpoint::Reload => reload(gw).await,
        Endpoint::Config => json_value(StatusCode::OK, &config_json(&gw.snapshot().model)),
        Endpoint::Metrics => {
            let mut r = respond::bytes(StatusCode::OK, crate::wasm::metrics_text());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            into_proxy(r)
        }
        Endpoint::OutputCache => {
            let region = region_of(req.uri().path()).unwrap_or_default();
            crate::plugins::ocelot_cache::clear_region(&gw.state, &region);
            // Ocelot answers 204 NoContent, whether or not the region held anything.
            into_proxy(respond::bytes(StatusCode::NO_CONTENT, bytes::Bytes::new()))
        }
    }
}

/// Answers once the new snapshot serves (or was refused); what a reload leaves to free
/// afterwards is not waited for.
async fn reload(gw: &Arc<Gateway>) -> Response {
    let gw = gw.clone();
    match tokio::task::spawn_blocking(move || gw.reload()).await {
        Ok(r) if r.ok => json_value(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "version": r.version}),
        ),
        Ok(r) => json_value(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({
                "ok": false,
                "version": r.version,
                "errors": r.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            }),
        ),
        Err(_) => into_proxy(respond::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload task failed",
            "",
        )),
    }
}

/// The serving config as a Kong declarative file would write it (routes nested under their
/// service, every default filled in) and the merged Ocelot document: what `GET /config` and
/// `switchyard config` print.
pub fn config_json(m: &Model) -> serde_json::Value {
    let services: Vec<serde_json::Value> = m
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            let routes: Vec<serde_json::Value> = m
                .routes
                .iter()
                .filter(|r| r.service == Some(i))
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect();
            v["routes"] = serde_json::Value::Array(routes);
            v
        })
        .collect();
    let serviceless: Vec<serde_json::Value> = m
        .routes
        .iter()
        .filter(|r| r.service.is_none())
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    let plugins: Vec<serde_json::Value> = m
        .plugins
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["service"] = p
                .scope
                .service
                .map(|s| serde_json::Value::String(m.services[s].display_name().to_string()))
                .unwrap_or_default();
            v["route"] = p
                .scope
                .route
                .map(|r| serde_json::Value::String(m.routes[r].display_name().to_string()))
                .unwrap_or_default();
            v["consumer"] = p
                .scope
                .consumer
                .map(|c| serde_json::Value::String(m.consumers[c].id.clone()))
                .unwrap_or_default();
            v
        })
        .collect();
    let consumers: Vec<serde_json::Value> =
        m.consumers.iter().map(|c| consumer_json(m, c)).collect();
    let mut out = serde_json::json!({
        "kong": {
            "_format_version": "3.0",
            "services": services,
            "routes": serviceless,
            "upstreams": m.upstreams,
            "plugins": plugins,
            "consumers": consumers,
            "consumer_groups": m.consumer_groups,
            "filter_chains": m.filter_chains,
            // Private keys print as `<redacted>` (`model::Certificate`'s Serialize).
            "certificates": m.certificates,
            "ca_certificates": m.ca_certificates,
        },
        "ocelot": m.ocelot_merged.clone().unwrap_or(serde_json::Value::Null),
    });
    redact(&mut out["kong"]["plugins"]);
    redact(&mut out["ocelot"]);
    out
}

/// What stands in for a secret in everything the gateway prints.
pub const REDACTED: &str = "<redacted>";

/// A consumer with its credentials grouped by kind, each with its id and its secret
/// redacted: `config` output is read by people and pasted into tickets.
fn consumer_json(m: &Model, c: &crate::config::model::Consumer) -> serde_json::Value {
    use crate::config::model::Secret;
    use serde_json::json;
    let mut v = json!({
        "id": c.id,
        "username": c.username,
        "custom_id": c.custom_id,
        "tags": c.tags,
        "groups": c.groups.iter().map(|g| json!({"name": m.consumer_groups[*g].name})).collect::<Vec<_>>(),
    });
    for cred in &c.credentials {
        let mut entry = match &cred.secret {
            Secret::KeyAuth { .. } => json!({ "key": REDACTED }),
            Secret::BasicAuth { username, .. } => {
                json!({ "username": username, "password": REDACTED })
            }
            Secret::Jwt {
                key,
                algorithm,
                rsa_public_key,
                ..
            } => json!({
                "key": key,
                "secret": REDACTED,
                "algorithm": algorithm,
                "rsa_public_key": rsa_public_key,
            }),
            Secret::HmacAuth { username, .. } => {
                json!({ "username": username, "secret": REDACTED })
            }
            Secret::Acl { group } => json!({ "group": group }),
            Secret::OAuth2(raw) => {
                let mut raw = raw.clone();
                redact(&mut raw);
                raw
            }
        };
        entry["id"] = cred.id.clone().into();
        entry["tags"] = json!(cred.tags);
        let kind = cred.secret.kind();
        match v[kind].as_array_mut() {
            Some(list) => list.push(entry),
            None => v[kind] = serde_json::Value::Array(vec![entry]),
        }
    }
    v
}

/// Redacts, anywhere in `v`, values under keys that name a secret (passwords, secrets,
/// tokens, API keys, Authorization headers): plugin configs and provider settings hold
/// them under many names.
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_name(k) && !val.is_null() && !val.is_boolean() {
                    *val = REDACTED.into();
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    [
        "password",
        "secret",
        "token",
        "apikey",
        "api_key",
        "aws_key",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
        || k == "authorization"
        || k == "key"
}

pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
