//! The admin listener: `GET /status` (snapshot version, hash, load time, counts, the last
//! reload's result and errors), `GET /status/ready`, `POST /reload`, `GET /config`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::gateway::Gateway;
use crate::plugins::Response;
use crate::proxy::respond;

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
        },
        "warnings": snap.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "last_reload": last.map(|r| serde_json::json!({
            "ok": r.ok,
            "at_ms": millis_since_epoch(r.at),
            "version": r.version,
            "compile_ms": r.compile_ms,
            "errors": r.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        })),
    })
}

async fn route(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/status") => respond::json_value(StatusCode::OK, &status_json(gw)),
        (&Method::GET, "/status/ready") => respond::json_value(
            StatusCode::OK,
            &serde_json::json!({"ready": true, "version": gw.snapshot().version}),
        ),
        (&Method::POST, "/reload") => {
            let gw = gw.clone();
            let report = tokio::task::spawn_blocking(move || gw.reload()).await;
            match report {
                Ok(r) if r.ok => respond::json_value(
                    StatusCode::OK,
                    &serde_json::json!({"ok": true, "version": r.version}),
                ),
                Ok(r) => respond::json_value(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({"ok": false, "version": r.version, "errors": r.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()}),
                ),
                Err(_) => {
                    respond::error(StatusCode::INTERNAL_SERVER_ERROR, "reload task failed", "")
                }
            }
        }
        (&Method::GET, "/config") => respond::json_value(
            StatusCode::OK,
            &serde_json::to_value(&gw.snapshot().model).unwrap_or_default(),
        ),
        _ => respond::json_value(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"message": "Not found"}),
        ),
    }
}

pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
