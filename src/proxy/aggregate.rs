//! The forward step of an Ocelot aggregate: each part through its own route, concurrently
//! (a small `join_all` on the worker's thread), combined by the aggregator
//! (`config::ocelot::aggregate`).
//!

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::body::ProxyBody;
use super::headers::{self, RESPONSE_LATENCY};
use super::ocelot::{self, Head};
use super::pipeline::{Env, Resolved, Response, Run, into_proxy};
use crate::config::ocelot::aggregate::{Aggregator, JsonPath};
use crate::config::ocelot::template::Params;
use crate::exchange::{AggregatePart, Placeholders};
use crate::plugins::Phases;
use crate::snapshot::{AggregateRt, RouteKind};

/// The largest part body an aggregate reads.
const MAX_PART_BODY: usize = 16 << 20;

/// The answer of one part as aggregated JSON: `null` for 404 and failures and empty bodies,
/// the parsed body when it is JSON, otherwise the body as a string.
pub fn part_value(status: Option<u16>, body: &[u8]) -> Value {
    match status {
        None | Some(404) => Value::Null,
        Some(_) if body.iter().all(u8::is_ascii_whitespace) => Value::Null,
        Some(_) => serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    }
}

/// The outcome of one aggregate part: the status (`None` when it failed) and the body.
type PartResult = (Option<u16>, Bytes);

/// One aggregate part through its own route: access (its plugins, with a context of its
/// own), the Ocelot forward step, the response head; then its body, read whole.
async fn part<'a>(env: Env<'a>, ridx: usize, req: &PartRequest<'_>, params: Params) -> PartResult {
    let route = &env.snap.routes[ridx];
    let mut headers = req.headers.clone();
    // Parts are sent without a body.
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.headers = headers;
    let mut body = ProxyBody::Empty;
    let mut run = (!route.chain.is_empty())
        .then(|| Box::new(Run::new(env, Resolved::Route(&route.chain), &parts)));
    if let Some(mut r) = run.take() {
        r.enter(route, route.service.map(|s| &env.snap.services[s]));
        if let RouteKind::Ocelot(o) = &route.kind
            && o.plugins_use_placeholders
        {
            r.ctx.extensions.insert(Placeholders(params.clone()));
        }
        r.ctx.host = parts.headers.get(header::HOST).cloned();
        r.ctx.extensions.insert(AggregatePart);
        if let Some(resp) = r.phase(Phases::ACCESS, &mut parts, &mut body).await {
            let (mut rparts, rbody) = into_proxy(resp).into_parts();
            r.response_head(&mut rparts, None);
            let resp = http::Response::from_parts(rparts, rbody);
            return read_part(env, resp, Some(r)).await;
        }
        run = Some(r);
    }
    let head = Head {
        method: Method::GET,
        path: req.path,
        query: req.query,
        host: parts.headers.get(header::HOST).cloned(),
        headers: parts.headers,
    };
    let forwarded = ocelot::forward(env, ridx, head, body, &params, run.as_deref_mut()).await;
    match (forwarded, run) {
        (Err(_), _) => (None, Bytes::new()),
        (Ok(resp), None) => read_part(env, resp, None).await,
        (Ok(resp), Some(mut run)) => {
            let (mut rparts, rbody) = resp.into_parts();
            run.response_head(&mut rparts, None);
            let resp = http::Response::from_parts(rparts, rbody);
            read_part(env, resp, Some(run)).await
        }
    }
}

/// Reads a part's body whole (bounded), through its plugins' body hooks; their log phase
/// runs once it is read. A part that fails or is too large is `null`.
async fn read_part(env: Env<'_>, resp: Response, mut run: Option<Box<Run<'_>>>) -> PartResult {
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buf = bytes::BytesMut::new();
    loop {
        let (data, end) = match body.data().await {
            Some(Ok(d)) => (d, false),
            Some(Err(_)) => return (None, Bytes::new()),
            None => (Bytes::new(), true),
        };
        let data = match run.as_deref_mut() {
            Some(r) if r.chain.has(Phases::RESPONSE_BODY) => match r.filter_response(data, end) {
                Ok(d) => d.unwrap_or_default(),
                Err(_) => return (None, Bytes::new()),
            },
            _ => data,
        };
        if buf.len() + data.len() > MAX_PART_BODY {
            tracing::warn!(
                request_id = env.id.as_str(),
                "aggregate part body over {MAX_PART_BODY} bytes; the part is null"
            );
            return (None, Bytes::new());
        }
        buf.extend_from_slice(&data);
        if end {
            break;
        }
    }
    if let Some(run) = run.as_deref_mut() {
        run.log(status, buf.len() as u64);
    }
    (Some(status.as_u16()), buf.freeze())
}

/// What every part of an aggregate is sent with: the aggregate's request.
struct PartRequest<'r> {
    path: &'r str,
    query: Option<&'r str>,
    headers: &'r HeaderMap,
}

/// An aggregate: every part through its own route with the aggregate's request and
/// placeholder values, concurrently; with RouteKeysConfig the first part goes first and each
/// distinct value its JsonPath finds calls the configured part once. The answer is always 200
/// `application/json`, downstream headers dropped (as Ocelot).
pub async fn answer(
    env: Env<'_>,
    agg: &AggregateRt,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    params: &Params,
) -> Response {
    let aggregator = match &agg.aggregator {
        Ok(a) => *a,
        Err(name) => {
            let msg = format!(
                "aggregate {} names the custom aggregator `{name}`, which switchyard cannot run; use one of: {}",
                agg.template,
                Aggregator::NAMES.join(", ")
            );
            return env.error(StatusCode::NOT_IMPLEMENTED, &msg);
        }
    };
    let req = PartRequest {
        path,
        query,
        headers,
    };
    let req = &req;
    let send = |ridx: usize, params: Params| {
        Box::pin(part(env, ridx, req, params))
            as std::pin::Pin<Box<dyn std::future::Future<Output = PartResult> + Send + '_>>
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
        for (i, (status, body)) in join_all(futures).await.into_iter().enumerate() {
            results[i].push(part_value(status, &body));
        }
    } else {
        let (first_status, first_body) = send(agg.parts[0].1, params.clone()).await;
        let first_json: Option<serde_json::Value> = if first_status.is_some_and(|s| s != 404) {
            serde_json::from_slice(&first_body).ok()
        } else {
            None
        };
        results[0].push(part_value(first_status, &first_body));
        let mut calls: Vec<(usize, Params)> = Vec::new();
        for (i, (_, ridx)) in agg.parts.iter().enumerate().skip(1) {
            let configs: Vec<&(usize, JsonPath, std::sync::Arc<str>)> =
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
        for (owner, (status, body)) in owners.into_iter().zip(join_all(futures).await) {
            results[owner].push(part_value(status, &body));
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
    let mut r = http::Response::new(ProxyBody::full(body.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        &RESPONSE_LATENCY,
        headers::millis(env.started.elapsed().as_millis()),
    );
    r
}

/// Polls every future until all are done; results in input order.
pub fn join_all<'a, T>(
    futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>,
) -> impl Future<Output = Vec<T>> + Send + 'a
where
    T: Send + 'a,
{
    struct JoinAll<'a, T> {
        futures: Vec<Option<Pin<Box<dyn Future<Output = T> + Send + 'a>>>>,
        results: Vec<Option<T>>,
    }
    // The results are never pinned: moving them is fine.
    impl<T> Unpin for JoinAll<'_, T> {}
    impl<T> Future for JoinAll<'_, T> {
        type Output = Vec<T>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
            let this = self.get_mut();
            let mut pending = false;
            for (slot, result) in this.futures.iter_mut().zip(this.results.iter_mut()) {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(v) => {
                            *result = Some(v);
                            *slot = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(this.results.iter_mut().filter_map(Option::take).collect())
            }
        }
    }
    let n = futures.len();
    JoinAll {
        futures: futures.into_iter().map(Some).collect(),
        results: (0..n).map(|_| None).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn part_values() {
        assert_eq!(part_value(Some(404), b"{}"), Value::Null);
        assert_eq!(part_value(None, b""), Value::Null);
        assert_eq!(part_value(Some(200), b""), Value::Null);
        assert_eq!(part_value(Some(200), b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(part_value(Some(500), b"oops"), json!("oops"));
    }
}
