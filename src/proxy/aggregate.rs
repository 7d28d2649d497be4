//! Ocelot aggregates: the forward step of an aggregate (each part through its own route,
//! concurrently), the built-in aggregators, the JsonPath subset RouteKeysConfig uses, and a
//! small `join_all` so the parts run concurrently on the worker's thread.
//!
//! Built-in aggregators (named in `Aggregator`; none = the first):
//! - `SimpleJsonResponseAggregator`: `{"Key": <part body>, ...}` in RouteKeys order, Ocelot's
//!   default, except that a part that answers 404, fails or answers nothing is `null` (Ocelot
//!   pastes the empty body and writes invalid JSON); a body that is not JSON becomes a string;
//!   a key called several times (RouteKeysConfig) is an array of its answers;
//! - `JsonArrayAggregator`: `[<part body>, ...]` in RouteKeys order;
//! - `JsonMergeAggregator`: the members of every part that answers a JSON object, merged into
//!   one object (a later key wins).

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
use crate::plugins::Phases;
use crate::router::ocelot::Params;
use crate::snapshot::AggregateRt;

/// The largest part body an aggregate reads.
const MAX_PART_BODY: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregator {
    Object,
    Array,
    Merge,
}

impl Aggregator {
    pub const NAMES: [&'static str; 3] = [
        "SimpleJsonResponseAggregator",
        "JsonArrayAggregator",
        "JsonMergeAggregator",
    ];

    pub fn from_name(name: &str) -> Option<Aggregator> {
        match name.trim() {
            n if n.eq_ignore_ascii_case("SimpleJsonResponseAggregator") => Some(Aggregator::Object),
            n if n.eq_ignore_ascii_case("JsonArrayAggregator") => Some(Aggregator::Array),
            n if n.eq_ignore_ascii_case("JsonMergeAggregator") => Some(Aggregator::Merge),
            _ => None,
        }
    }

    /// Combines each key's answers (in RouteKeys order) into the response body.
    pub fn combine(self, parts: Vec<(&str, Vec<Value>, bool)>) -> Value {
        match self {
            Aggregator::Object => Value::Object(
                parts
                    .into_iter()
                    .map(|(k, vs, many)| (k.to_string(), one(vs, many)))
                    .collect(),
            ),
            Aggregator::Array => Value::Array(
                parts
                    .into_iter()
                    .map(|(_, vs, many)| one(vs, many))
                    .collect(),
            ),
            Aggregator::Merge => {
                let mut out = serde_json::Map::new();
                for (_, vs, _) in parts {
                    for v in vs {
                        if let Value::Object(m) = v {
                            out.extend(m);
                        }
                    }
                }
                Value::Object(out)
            }
        }
    }
}

/// A key called once is its answer; a key called per JsonPath value is the array of its
/// non-empty answers.
fn one(mut vs: Vec<Value>, many: bool) -> Value {
    if many {
        Value::Array(vs.into_iter().filter(|v| !v.is_null()).collect())
    } else {
        vs.pop().unwrap_or(Value::Null)
    }
}

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

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    Wildcard,
    /// `..name`: every `name` member at any depth.
    Descend(String),
}

/// The JsonPath subset aggregates need: `$`, `.name`, `['name']`, `[n]`, `[*]`, `.*`,
/// `..name`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(p: &str) -> Result<JsonPath, String> {
        let p = p.trim();
        let rest = p.strip_prefix('$').ok_or("a JsonPath starts with `$`")?;
        let b = rest.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        let name_end = |from: usize| {
            rest[from..]
                .find(['.', '['])
                .map_or(rest.len(), |e| from + e)
        };
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    let end = name_end(i + 2);
                    let name = &rest[i + 2..end];
                    if name.is_empty() {
                        return Err("`..` needs a member name".into());
                    }
                    steps.push(Step::Descend(name.to_string()));
                    i = end;
                }
                b'.' => {
                    let end = name_end(i + 1);
                    match &rest[i + 1..end] {
                        "" => return Err("`.` needs a member name".into()),
                        "*" => steps.push(Step::Wildcard),
                        name => steps.push(Step::Key(name.to_string())),
                    }
                    i = end;
                }
                b'[' => {
                    let close = rest[i..].find(']').map(|c| i + c).ok_or("unclosed `[`")?;
                    let inner = rest[i + 1..close].trim();
                    if inner == "*" {
                        steps.push(Step::Wildcard);
                    } else if let Some(q) = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    {
                        steps.push(Step::Key(q.to_string()));
                    } else {
                        steps.push(Step::Index(inner.parse().map_err(|_| {
                            format!("`[{inner}]` is not an index, `*` or a quoted name")
                        })?));
                    }
                    i = close + 1;
                }
                c => return Err(format!("unexpected `{}`", c as char)),
            }
        }
        Ok(JsonPath { steps })
    }

    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Key(k) => next.extend(v.get(k.as_str())),
                    Step::Index(n) => {
                        if let Value::Array(a) = v {
                            let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                            next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                        }
                    }
                    Step::Wildcard => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Descend(k) => descend(v, k, &mut next),
                }
            }
            cur = next;
        }
        cur
    }

    /// The distinct values the path selects, as placeholder text (strings unquoted).
    pub fn values(&self, root: &Value) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in self.select(root) {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            if !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }
}

fn descend<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == key {
                    out.push(child);
                }
                descend(child, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| descend(c, key, out)),
        _ => {}
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
    let mut run =
        (!route.chain.is_empty()).then(|| Run::new(env, Resolved::Route(&route.chain), &parts));
    if let Some(mut r) = run.take() {
        r.enter(route, route.service.map(|s| &env.snap.services[s]));
        r.ctx.host = parts.headers.get(header::HOST).cloned();
        if let Some(resp) = r.phase(Phases::ACCESS, &mut parts, &mut body).await {
            let (mut rparts, rbody) = into_proxy(resp).into_parts();
            r.response_head(&mut rparts);
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
            run.response_head(&mut rparts);
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
    fn jsonpath_table() {
        let doc = json!({"path": "/a", "comments": [{"authorId": 1}, {"authorId": 2}, {"authorId": 1}], "n": {"deep": {"authorId": 3}}});
        for (p, want) in [
            ("$.path", vec!["/a"]),
            ("$.comments[*].authorId", vec!["1", "2"]),
            ("$.comments[1].authorId", vec!["2"]),
            ("$.comments[-1].authorId", vec!["1"]),
            ("$['path']", vec!["/a"]),
            ("$..authorId", vec!["1", "2", "3"]),
            ("$.missing", vec![]),
        ] {
            assert_eq!(JsonPath::parse(p).unwrap().values(&doc), want, "{p}");
        }
        assert!(JsonPath::parse("path").is_err());
        assert!(JsonPath::parse("$.a[x]").is_err());
        assert_eq!(
            JsonPath::parse("$[*].writerId")
                .unwrap()
                .values(&json!([{"writerId": "w"}])),
            vec!["w"]
        );
    }

    #[test]
    fn aggregation_shapes() {
        assert_eq!(part_value(Some(404), b"{}"), Value::Null);
        assert_eq!(part_value(None, b""), Value::Null);
        assert_eq!(part_value(Some(200), b""), Value::Null);
        assert_eq!(part_value(Some(200), b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(part_value(Some(500), b"oops"), json!("oops"));
        let parts = vec![
            ("Tom", vec![json!({"Age": 19})], false),
            ("Laura", vec![Value::Null], false),
            ("C", vec![json!(1), Value::Null, json!(2)], true),
        ];
        let v = Aggregator::Object.combine(parts);
        assert_eq!(
            v.to_string(),
            r#"{"Tom":{"Age":19},"Laura":null,"C":[1,2]}"#
        );
        assert_eq!(
            Aggregator::Merge.combine(vec![
                ("a", vec![json!({"x": 1})], false),
                ("b", vec![json!({"y": 2})], false)
            ]),
            json!({"x": 1, "y": 2})
        );
        assert_eq!(
            Aggregator::from_name("jsonarrayaggregator"),
            Some(Aggregator::Array)
        );
        assert_eq!(Aggregator::from_name("UsersPostsAggregator"), None);
    }
}
