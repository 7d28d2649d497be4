//! The Ocelot dialect through the real server stack, with real downstreams: how templates
//! match and fill placeholders, which route a request takes, what the downstream receives,
//! how ocelot.json, ocelot.*.json, ocelot.global.json and an environment file become one
//! configuration, the route options (header transforms, RequestIdKey, SecurityOptions,
//! RateLimitOptions), aggregates, errors, and Kong and Ocelot routes in one snapshot.
//! `switchyard check` and `switchyard run` go through the real binary where the command line
//! is the point.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

// === Building configs ===

/// An Ocelot route from `upstream` (UpstreamPathTemplate) to `downstream`
/// (DownstreamPathTemplate) on `to`, with the fields of `extra` added.
fn route(to: SocketAddr, upstream: &str, downstream: &str, extra: Value) -> Value {
    let mut r = json!({
        "UpstreamPathTemplate": upstream,
        "DownstreamPathTemplate": downstream,
        "DownstreamScheme": "http",
        "DownstreamHostAndPorts": [{"Host": to.ip().to_string(), "Port": to.port()}],
    });
    if let (Value::Object(r), Value::Object(extra)) = (&mut r, extra) {
        r.extend(extra);
    }
    r
}

/// A gateway serving one ocelot.json.
fn ocelot(doc: Value) -> TestGateway {
    TestGateway::start(&[("ocelot.json", &doc.to_string())])
}

/// A gateway serving these routes (and an empty GlobalConfiguration).
fn routes(list: Vec<Value>) -> TestGateway {
    ocelot(json!({"Routes": list, "GlobalConfiguration": {}}))
}

// === Looking at the outcome ===

/// What became of a request: `Ok(path and query the downstream saw)` when it was proxied
/// (with a 200), `Err(status)` when the gateway answered it without the downstream.
fn outcome(
    gw: &TestGateway,
    up: &Upstream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<String, u16> {
    let before = up.count();
    let r = gw.send(method, target, headers, b"");
    if up.count() == before {
        return Err(r.status);
    }
    assert_eq!(
        up.count(),
        before + 1,
        "{method} {target}: sent downstream twice"
    );
    assert_eq!(r.status, 200, "{method} {target}: {}", r.text());
    Ok(up.last().target)
}

/// (method, target, request headers, expected outcome)
type Row<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Result<&'a str, u16>,
);

/// Sends every row and reports every row whose outcome differs, at once.
fn expect_rows(gw: &TestGateway, up: &Upstream, rows: &[Row<'_>]) {
    let mut wrong = Vec::new();
    for (method, target, headers, want) in rows {
        let got = outcome(gw, up, method, target, headers);
        if got.as_deref().map_err(|s| *s) != *want {
            wrong.push(format!(
                "{method} {target} {headers:?}: expected {want:?}, got {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

// === A scripted downstream ===

/// A request as a scripted downstream saw it (header names lower-cased).
#[derive(Clone, Debug)]
struct Req {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

/// (status, extra response headers, JSON body)
type Answer = (u16, Vec<(String, String)>, String);

/// A downstream on 127.0.0.1:0 that answers each request with what `answer` returns, one
/// thread per connection (so requests can overlap), recording what it saw.
struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Scripted {
    fn start(answer: impl Fn(&Req) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
        let (log, answer) = (seen.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, answer) = (log.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    while let Some(req) = read_request_head(&mut reader) {
                        log.lock().unwrap().push(req.clone());
                        let (status, headers, body) = answer(&req);
                        let mut head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        if out.write_all(head.as_bytes()).is_err()
                            || out.write_all(body.as_bytes()).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { addr, seen }
    }

    fn targets(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|r| r.target.clone()).collect()
    }
}

/// Reads a request line and headers, and skips a Content-Length body.
fn read_request_head(r: &mut impl BufRead) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .map_or(Some(0), |n| n.parse().ok())?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        target,
        headers,
    })
}

// === The binary ===

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

/// The binary with `args` on `dir`, with no environment name from the test's environment.
fn switchyard(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .arg("--config-dir")
        .arg(dir)
        .env_remove("SWITCHYARD_ENVIRONMENT")
        .env_remove("ASPNETCORE_ENVIRONMENT");
    cmd
}

/// `switchyard check` on a directory holding `files`, with extra environment variables:
/// (exit code, stdout, stderr).
fn check(files: &[(&str, &str)], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = dir_with(files);
    let mut cmd = switchyard(&["check"], dir.path());
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// === Templates and placeholders ===

#[test]
fn placeholders_fill_whole_and_partial_segments_and_the_query() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(u, "/products/{id}", "/svc/api/{id}", json!({})),
        route(
            u,
            "/{variantId}/products/{productId}",
            "/svc/variants/{variantId}/products/{productId}",
            json!({}),
        ),
        route(
            u,
            "/api/products_{category}/{subcategory}_details/{itemId}?filter={filter}",
            "/svc/products/{category}-{subcategory}/{filter}",
            json!({}),
        ),
        route(
            u,
            "/upstream/{version}/test",
            "/svc/downstream/{version}/test",
            json!({}),
        ),
        route(
            u,
            "/files/v{major}.{minor}/{name}",
            "/svc/files/{major}/{minor}/{name}",
            json!({}),
        ),
        route(
            u,
            "/api/subs/{subscriptionId}/updates?unitId={unitId}",
            "/svc/units/{unitId}/subs/{subscriptionId}",
            json!({}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            // A whole segment; the client's query rides along.
            ("GET", "/products/1?x=2", &[], Ok("/svc/api/1?x=2")),
            ("GET", "/products/42", &[], Ok("/svc/api/42")),
            // The last placeholder spans segments, and may be empty (with or without the
            // slash before it; the downstream keeps a trailing slash only if the request had one).
            ("GET", "/products/a/b.js", &[], Ok("/svc/api/a/b.js")),
            ("GET", "/products/", &[], Ok("/svc/api/")),
            ("GET", "/products", &[], Ok("/svc/api")),
            // Leading placeholders.
            (
                "GET",
                "/23/products/1",
                &[],
                Ok("/svc/variants/23/products/1"),
            ),
            ("GET", "/23/items/1", &[], Err(404)),
            // Placeholders inside segments, and one in the query.
            (
                "GET",
                "/api/products_electronics/computers_details/123?filter=active",
                &[],
                Ok("/svc/products/electronics-computers/active"),
            ),
            (
                "GET",
                "/files/v2.1/readme.md",
                &[],
                Ok("/svc/files/2/1/readme.md"),
            ),
            ("GET", "/files/v2/readme.md", &[], Err(404)),
            // A middle placeholder is exactly one non-empty segment.
            (
                "GET",
                "/upstream/v1/test",
                &[],
                Ok("/svc/downstream/v1/test"),
            ),
            ("GET", "/upstream/test", &[], Err(404)),
            ("GET", "/upstream/a/b/test", &[], Err(404)),
            // A query placeholder takes its value from the query, whose first parameter it
            // must be; the client's parameter named like a placeholder is not sent on.
            (
                "GET",
                "/api/subs/s1/updates?unitId=u1",
                &[],
                Ok("/svc/units/u1/subs/s1"),
            ),
            (
                "GET",
                "/api/subs/s1/updates?unitId=u1&x=2",
                &[],
                Ok("/svc/units/u1/subs/s1?x=2"),
            ),
            (
                "GET",
                "/api/subs/s1/updates?productId=1&unitId=u1",
                &[],
                Err(404),
            ),
        ],
    );
}

#[test]
fn everything_catch_all_takes_every_path_with_its_query() {
    let up = Upstream::echo();
    let gw = routes(vec![route(
        up.addr(),
        "/{everything}",
        "/svc-all/{everything}",
        json!({"UpstreamHttpMethod": []}),
    )]);
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/", &[], Ok("/svc-all/")),
            ("GET", "/test/toot", &[], Ok("/svc-all/test/toot")),
            ("GET", "/a/b?x=1&y=2", &[], Ok("/svc-all/a/b?x=1&y=2")),
            (
                "DELETE",
                "/swagger/v1/x.json",
                &[],
                Ok("/svc-all/swagger/v1/x.json"),
            ),
        ],
    );
    assert_eq!(up.last().method, "DELETE");
}

#[test]
fn priority_decides_then_file_order_and_the_catch_all_comes_last() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        // No "most specific wins": the first of equal priority takes both.
        route(u, "/goods/{url}", "/all-goods/{url}", json!({})),
        route(u, "/goods/delete", "/goods-delete", json!({})),
        // Priority 0 lets a later, default-priority (1) route win.
        route(u, "/items/{id}", "/items-any/{id}", json!({"Priority": 0})),
        route(u, "/items/special", "/items-special", json!({})),
        // `/{x}` alone is forced to priority 0, whatever it says and wherever it stands.
        route(
            u,
            "/{everything}",
            "/rest/{everything}",
            json!({"Priority": 5}),
        ),
        route(u, "/vip/{x}", "/vip-any/{x}", json!({})),
        route(u, "/", "/home", json!({})),
        // Higher priority beats file order.
        route(u, "/high/one", "/high-one", json!({})),
        route(u, "/high/{x}", "/high-any/{x}", json!({"Priority": 2})),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/goods/delete", &[], Ok("/all-goods/delete")),
            ("GET", "/goods/1", &[], Ok("/all-goods/1")),
            ("GET", "/items/special", &[], Ok("/items-special")),
            ("GET", "/items/7", &[], Ok("/items-any/7")),
            ("GET", "/vip/a", &[], Ok("/vip-any/a")),
            ("GET", "/", &[], Ok("/home")),
            ("GET", "/other/x", &[], Ok("/rest/other/x")),
            ("GET", "/high/one", &[], Ok("/high-any/one")),
        ],
    );
}

#[test]
fn matching_ignores_case_unless_route_is_case_sensitive() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(u, "/products/{id}", "/svc-ci/{id}", json!({})),
        route(
            u,
            "/Orders/{id}",
            "/svc-cs/{id}",
            json!({"RouteIsCaseSensitive": true}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            // Placeholder values keep the client's case.
            ("GET", "/PRODUCTS/AbC", &[], Ok("/svc-ci/AbC")),
            ("GET", "/Products/1", &[], Ok("/svc-ci/1")),
            ("GET", "/Orders/1", &[], Ok("/svc-cs/1")),
            ("GET", "/orders/1", &[], Err(404)),
            ("GET", "/ORDERS/1", &[], Err(404)),
        ],
    );
}

// === Which route: verbs, hosts, headers ===

#[test]
fn upstream_http_method_filters_and_empty_or_missing_means_every_verb() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(
            u,
            "/getonly",
            "/svc-getonly",
            json!({"UpstreamHttpMethod": ["Get"]}),
        ),
        route(
            u,
            "/verbs",
            "/svc-verbs",
            json!({"UpstreamHttpMethod": ["get", "POST", "Put"]}),
        ),
        route(u, "/any", "/svc-any", json!({"UpstreamHttpMethod": []})),
        route(u, "/omitted", "/svc-omitted", json!({})),
        route(
            u,
            "/things",
            "/things-read",
            json!({"UpstreamHttpMethod": ["Get"]}),
        ),
        route(
            u,
            "/things",
            "/things-write",
            json!({"UpstreamHttpMethod": ["Post", "Put"]}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/getonly", &[], Ok("/svc-getonly")),
            // A wrong verb is 404, never 405.
            ("POST", "/getonly", &[], Err(404)),
            ("GET", "/verbs", &[], Ok("/svc-verbs")),
            ("POST", "/verbs", &[], Ok("/svc-verbs")),
            ("PUT", "/verbs", &[], Ok("/svc-verbs")),
            ("DELETE", "/verbs", &[], Err(404)),
            ("DELETE", "/omitted", &[], Ok("/svc-omitted")),
            ("GET", "/things", &[], Ok("/things-read")),
            ("PUT", "/things", &[], Ok("/things-write")),
            ("DELETE", "/things", &[], Err(404)),
        ],
    );
    for verb in ["GET", "POST", "DELETE", "PATCH", "OPTIONS"] {
        assert_eq!(
            outcome(&gw, &up, verb, "/any", &[]).as_deref(),
            Ok("/svc-any")
        );
        assert_eq!(up.last().method, verb, "the verb is forwarded as sent");
    }
}

#[test]
fn upstream_host_with_and_without_port() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(
            u,
            "/hosted",
            "/svc-host",
            json!({"UpstreamHost": "example.com"}),
        ),
        route(
            u,
            "/hosted-port",
            "/svc-host-port",
            json!({"UpstreamHost": "example.com:8080"}),
        ),
        // A route bound to a host beats one without, even one listed first with a higher
        // priority.
        route(u, "/h", "/svc-nohost", json!({"Priority": 5})),
        route(
            u,
            "/h",
            "/svc-withhost",
            json!({"UpstreamHost": "example.com"}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            // Without a port, the port of the Host header does not matter.
            (
                "GET",
                "/hosted",
                &[("Host", "example.com")],
                Ok("/svc-host"),
            ),
            (
                "GET",
                "/hosted",
                &[("Host", "example.com:9999")],
                Ok("/svc-host"),
            ),
            ("GET", "/hosted", &[("Host", "other.com")], Err(404)),
            // With a port, the Host header must carry that port.
            (
                "GET",
                "/hosted-port",
                &[("Host", "example.com:8080")],
                Ok("/svc-host-port"),
            ),
            ("GET", "/hosted-port", &[("Host", "example.com")], Err(404)),
            (
                "GET",
                "/hosted-port",
                &[("Host", "example.com:9090")],
                Err(404),
            ),
            ("GET", "/h", &[("Host", "example.com")], Ok("/svc-withhost")),
            ("GET", "/h", &[("Host", "other.com")], Ok("/svc-nohost")),
        ],
    );
}

#[test]
fn upstream_header_templates_filter_and_capture() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(
            u,
            "/hdr",
            "/svc-pl",
            json!({"UpstreamHeaderTemplates": {"country_code": "PL"}}),
        ),
        route(
            u,
            "/products-h",
            "/svc/api.internal-{code}/products",
            json!({"UpstreamHeaderTemplates": {"Region": "{header:code}"}}),
        ),
        route(
            u,
            "/tier",
            "/svc-gold",
            json!({"UpstreamHeaderTemplates": {"X-Tier": "Gold"}, "RouteIsCaseSensitive": true}),
        ),
        route(
            u,
            "/langs",
            "/svc-langs",
            json!({"UpstreamHeaderTemplates": {"X-Lang": "pl,de"}}),
        ),
        // Header templates filter, they do not rank: a plain route listed first wins.
        route(u, "/s", "/svc-plain", json!({})),
        route(
            u,
            "/s",
            "/svc-admin",
            json!({"UpstreamHeaderTemplates": {"Origin": "admin.example.com"}}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            // Names and (by default) values compare case-insensitively.
            ("GET", "/hdr", &[("COUNTRY_CODE", "pl")], Ok("/svc-pl")),
            ("GET", "/hdr", &[("country_code", "DE")], Err(404)),
            ("GET", "/hdr", &[], Err(404)),
            (
                "GET",
                "/products-h",
                &[("Region", "uk")],
                Ok("/svc/api.internal-uk/products"),
            ),
            ("GET", "/products-h", &[], Err(404)),
            ("GET", "/tier", &[("X-Tier", "Gold")], Ok("/svc-gold")),
            ("GET", "/tier", &[("X-Tier", "gold")], Err(404)),
            // A header sent twice is matched as its values joined with `,`.
            (
                "GET",
                "/langs",
                &[("X-Lang", "pl"), ("X-Lang", "de")],
                Ok("/svc-langs"),
            ),
            (
                "GET",
                "/s",
                &[("Origin", "admin.example.com")],
                Ok("/svc-plain"),
            ),
        ],
    );
}

// === The downstream request ===

#[test]
fn downstream_gets_its_own_host_the_downstream_verb_and_no_forwarded_headers() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(u, "/m", "/svc-m", json!({"DownstreamHttpMethod": "post"})),
        route(
            u,
            "/put",
            "/svc-put",
            json!({"DownstreamHttpMethod": "PUT"}),
        ),
        route(u, "/plain", "/svc-plain", json!({})),
    ]);

    let r = gw.send("GET", "/m", &[("Host", "client.example:8443")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/svc-m")
    );
    assert_eq!(
        seen.headers["host"],
        u.to_string(),
        "the downstream's host:port"
    );
    for absent in [
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    ] {
        assert!(
            !seen.headers.contains_key(absent),
            "Ocelot adds no {absent}"
        );
    }

    let r = gw.send("POST", "/put", &[("X-Custom", "kept")], b"hello");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body, b"hello");
    assert_eq!(seen.headers["x-custom"], "kept");

    let r = gw.send("DELETE", "/plain", &[("Host", "client.example")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().method, "DELETE");
    assert_eq!(up.last().headers["host"], u.to_string());
}

#[test]
fn query_placeholders_with_a_catch_all_send_each_parameter_once_encoded_as_sent() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        // A path placeholder and the catch-all query in one template.
        route(u, "/b/{id}?{query}", "/svc-b/{id}?{query}", json!({})),
        // Query placeholders and a last, whole-parameter catch-all.
        route(
            u,
            "/c/{id}?x={x}&{rest}",
            "/svc-c/{id}?x={x}&{rest}",
            json!({}),
        ),
        // The catch-all query into a downstream query that also has a placeholder.
        route(
            u,
            "/d/{id}?{query}",
            "/svc-d?unitId={id}&{query}",
            json!({}),
        ),
        route(
            u,
            "/e/{id}?name={name}",
            "/svc-e/{id}?name={name}",
            json!({}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/b/5?x=1&y=a%20b", &[], Ok("/svc-b/5?x=1&y=a%20b")),
            ("GET", "/b/5", &[], Ok("/svc-b/5")),
            ("GET", "/c/5?x=1&y=2&z=3", &[], Ok("/svc-c/5?x=1&y=2&z=3")),
            (
                "GET",
                "/c/5?x=a%20b&y=c%26d",
                &[],
                Ok("/svc-c/5?x=a%20b&y=c%26d"),
            ),
            (
                "GET",
                "/d/5?a=1&b=x%2By",
                &[],
                Ok("/svc-d?unitId=5&a=1&b=x%2By"),
            ),
            // A query placeholder's value is written as the client encoded it, not twice.
            (
                "GET",
                "/e/1?name=a%20b&z=1",
                &[],
                Ok("/svc-e/1?name=a%20b&z=1"),
            ),
            ("GET", "/e/1?name=a+b", &[], Ok("/svc-e/1?name=a+b")),
        ],
    );
}

#[test]
fn query_merging_with_the_downstream_template() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(
            u,
            "/api/units/{subscriptionId}/{unitId}/updates",
            "/svc/subscriptions/{subscriptionId}/updates?unitId={unitId}",
            json!({}),
        ),
        route(
            u,
            "/users?userId={userid}",
            "/svc/persons?personId={userid}",
            json!({}),
        ),
        route(u, "/arr?{everything}", "/svc/arr?{everything}", json!({})),
        route(u, "/rawq", "/svc/rawq", json!({})),
        route(u, "/prod/{id}", "/svc/prod/{id}", json!({})),
        route(
            u,
            "/w/{city}",
            "/svc/weather?q={city}&units=metric",
            json!({}),
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            // Template parameters first, then the client's; a client parameter named like a
            // placeholder is dropped.
            (
                "GET",
                "/api/units/sub1/unit1/updates",
                &[],
                Ok("/svc/subscriptions/sub1/updates?unitId=unit1"),
            ),
            (
                "GET",
                "/api/units/sub1/unit1/updates?x=1",
                &[],
                Ok("/svc/subscriptions/sub1/updates?unitId=unit1&x=1"),
            ),
            (
                "GET",
                "/api/units/sub1/unit1/updates?unitId=zzz&x=1",
                &[],
                Ok("/svc/subscriptions/sub1/updates?unitId=unit1&x=1"),
            ),
            // Placeholder names compare case-sensitively here: userId is not {userid}.
            (
                "GET",
                "/users?userId=webley",
                &[],
                Ok("/svc/persons?personId=webley&userId=webley"),
            ),
            // A repeated key becomes one comma-joined value.
            ("GET", "/arr?a=1&a=2&b=3", &[], Ok("/svc/arr?a=1,2&b=3")),
            // Without a template query, a route without placeholders forwards the query
            // byte-exact...
            (
                "GET",
                "/rawq?q=a+b&name=O'Neil&t=10:30",
                &[],
                Ok("/svc/rawq?q=a+b&name=O'Neil&t=10:30"),
            ),
            // ...and one with placeholders drops the parameters named like one, whatever the case.
            ("GET", "/prod/1?id=5&x=1", &[], Ok("/svc/prod/1?x=1")),
            ("GET", "/prod/1?ID=5&x=1", &[], Ok("/svc/prod/1?x=1")),
            ("GET", "/prod/3?id1=2312", &[], Ok("/svc/prod/3?id1=2312")),
            // Placeholder values written into the query are encoded.
            (
                "GET",
                "/w/new%20york",
                &[],
                Ok("/svc/weather?q=new%20york&units=metric"),
            ),
            (
                "GET",
                "/w/oslo?lang=nb",
                &[],
                Ok("/svc/weather?q=oslo&units=metric&lang=nb"),
            ),
        ],
    );
}

#[test]
fn unreachable_downstream_is_502_json() {
    let gw = routes(vec![route(
        format!("127.0.0.1:{}", dead_port()).parse().unwrap(),
        "/dead",
        "/svc-dead",
        json!({}),
    )]);
    let r = gw.get("/dead");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.json()["message"],
        "The downstream service could not be reached"
    );
    assert_eq!(r.json()["request_id"].as_str().map(str::len), Some(32));
}

// === Files: merging, GlobalConfiguration, old keys, .NET JSON, validation ===

#[test]
fn part_files_merge_and_global_configuration_comes_from_ocelot_global_json() {
    let up = Upstream::echo();
    let u = up.addr();
    let file = |list: Vec<Value>| json!({ "Routes": list }).to_string();
    let gw = TestGateway::start(&[
        (
            "ocelot.json",
            &json!({
                "Routes": [route(u, "/main", "/svc-main", json!({}))],
                "GlobalConfiguration": {"BaseUrl": "http://ignored.example.com"},
            })
            .to_string(),
        ),
        (
            "ocelot.products.json",
            &file(vec![route(
                u,
                "/products/{id}",
                "/svc-products/{id}",
                json!({}),
            )]),
        ),
        (
            "ocelot.orders.json",
            &file(vec![route(
                u,
                "/orders/{id}",
                "/svc-orders/{id}",
                json!({"UpstreamHttpMethod": ["Get", "Post"]}),
            )]),
        ),
        (
            "ocelot.global.json",
            r#"{"GlobalConfiguration": {
                "BaseUrl": "http://gateway.example.com",
                "RequestIdKey": "X-Correlation-Id",
                "UpstreamHeaderTransform": {"X-Forwarded-Host": "{BaseUrl}"}
            }}"#,
        ),
    ]);
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/main", &[], Ok("/svc-main")),
            ("GET", "/products/7", &[], Ok("/svc-products/7")),
            ("POST", "/orders/9", &[], Ok("/svc-orders/9")),
            ("GET", "/nothing", &[], Err(404)),
        ],
    );
    // The global options reach the routes of every file.
    for target in ["/main", "/products/7", "/orders/9"] {
        let r = gw.get(target);
        assert_eq!(r.status, 200);
        let h = up.last().headers;
        assert_eq!(
            h["x-forwarded-host"], "http://gateway.example.com",
            "{target}"
        );
        assert_eq!(
            h.get("x-correlation-id").map(String::as_str),
            r.header("x-switchyard-request-id"),
            "{target}"
        );
    }
}

#[test]
fn a_different_global_configuration_in_a_part_file_is_an_error_naming_both_files() {
    let global = r#"{"GlobalConfiguration": {"BaseUrl": "http://gateway.example.com"}}"#;
    let orders =
        |global: &str| format!("{{\n  \"Routes\": [],\n  \"GlobalConfiguration\": {global}\n}}\n");
    let (code, _, err) = check(
        &[
            ("ocelot.global.json", global),
            (
                "ocelot.orders.json",
                &orders(r#"{"BaseUrl": "http://orders.example.com"}"#),
            ),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ocelot.orders.json:3:26: GlobalConfiguration: GlobalConfiguration is read from ocelot.global.json (else ocelot.json), never from a part file like ocelot.orders.json: move it to ocelot.global.json\n"),
        "{err}"
    );

    // The same section repeated (keys in any case) loses nothing: a warning.
    let (code, out, err) = check(
        &[
            ("ocelot.global.json", global),
            (
                "ocelot.orders.json",
                &orders(r#"{"baseUrl": "http://gateway.example.com"}"#),
            ),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: 2 file(s)"), "{out}");
    assert!(
        err.contains("ocelot.orders.json:3:26: warning: GlobalConfiguration: ")
            && err.contains("(it repeats the one in ocelot.global.json, so nothing is lost)"),
        "{err}"
    );
}

#[test]
fn pre_16_reroutes_keys_are_read_like_the_new_ones() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = ocelot(json!({
        "ReRoutes": [
            route(u, "/legacy/{id}", "/svc-legacy/{id}", json!({"ReRouteIsCaseSensitive": true})),
            route(u, "/ids", "/svc-ids/7", json!({"Key": "ids"})),
            route(u, "/detail/{p}", "/svc-detail{p}", json!({"Key": "detail"})),
        ],
        "Aggregates": [{
            "UpstreamPathTemplate": "/legacy-agg",
            "ReRouteKeys": ["ids", "detail"],
            "ReRouteKeysConfig": [{"ReRouteKey": "detail", "JsonPath": "$.path", "Parameter": "p"}],
        }],
        "GlobalConfiguration": {},
    }));
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/legacy/1", &[], Ok("/svc-legacy/1")),
            ("GET", "/LEGACY/1", &[], Err(404)),
        ],
    );
    let r = gw.get("/legacy-agg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "ids": {"path": "/svc-ids/7", "body_len": 0},
            "detail": {"path": "/svc-detail/svc-ids/7", "body_len": 0},
        })
    );
}

/// An ocelot.json the way .NET projects keep it: comments, trailing commas, camelCase keys,
/// a port as a string, and a misspelt key.
fn dotnet_style(port: u16) -> String {
    format!(
        r#"// Gateway routes
{{
  /* products */
  "routes": [
    {{
      "upstreamPathTemplate": "/products/{{id}}",
      "upstreamHttpMethod": [ "Get", ],
      "downstreamPathTemplate": "/svc/{{id}}",
      "downstreamSchema": "http",
      "downstreamHostAndPorts": [ {{ "host": "127.0.0.1", "port": "{port}" }}, ],
    }},
  ],
  "globalConfiguration": {{ "requestIdKey": "X-Request-Id", }},
}}
"#
    )
}

#[test]
fn dotnet_style_json_is_served() {
    let up = Upstream::echo();
    let gw = TestGateway::start(&[("ocelot.json", &dotnet_style(up.addr().port()))]);
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/products/1", &[], Ok("/svc/1")),
            ("POST", "/products/1", &[], Err(404)),
        ],
    );
    assert!(up.last().headers.contains_key("x-request-id"));
}

#[test]
fn unknown_keys_warn_with_a_did_you_mean() {
    let (code, out, err) = check(&[("ocelot.json", &dotnet_style(8080))], &[]);
    assert_eq!(code, 0, "warnings do not fail: {err}");
    assert!(out.contains("1 ocelot route(s)"), "{out}");
    let warning = err
        .lines()
        .find(|l| l.contains("downstreamSchema"))
        .unwrap_or_else(|| panic!("no warning about downstreamSchema in:\n{err}"));
    assert!(
        warning.starts_with("ocelot.json:9:")
            && warning.ends_with(": warning: Routes[0].downstreamSchema: unknown key `downstreamSchema` is ignored; did you mean `DownstreamScheme`?"),
        "{warning}"
    );
}

const ORDERS_BROKEN: &str = r#"{
  "Routes": [
    {
      "UpstreamPathTemplate": "/orders/{id}",
      "UpstreamHttpMethod": ["Get"],
      "DownstreamPathTemplate": "/svc/orders/{id}",
      "DownstreamHostAndPorts": [{"Host": "orders.internal", "Port": 8080}]
    },
    {"UpstreamPathTemplate": "/orders", "UpstreamHttpMethod": ["Post"], "DownstreamPathTemplate": "/svc/orders", "DownstreamHostAndPorts": [{"Host": "orders.internal"}]},
    {"UpstreamPathTemplate": "/orders", "UpstreamHttpMethod": ["POST", "Put"], "DownstreamPathTemplate": "/svc/orders", "DownstreamHostAndPorts": [{"Host": "orders.internal"}]},
    {
      "UpstreamPathTemplate": "orders/{id}/lines/{id}",
      "DownstreamPathTemplate": "/svc//lines",
      "DownstreamHostAndPorts": [],
      "RateLimitOptions": {"Limit": 0, "Period": "1x"}
    }
  ]
}
"#;

const PRODUCTS_BROKEN: &str = r#"{"Routes": [
  {"UpstreamPathTemplate": "/products/{id}", "DownstreamPathTemplate": "/svc/products/{id}",
   "DownstreamScheme": "ftp", "DownstreamHostAndPorts": [{"Host": "products.internal", "Port": 70000}]}
]}
"#;

#[test]
fn check_lists_every_error_at_once_with_file_line_column_and_json_path() {
    let (code, _, err) = check(
        &[
            ("ocelot.orders.json", ORDERS_BROKEN),
            ("ocelot.products.json", PRODUCTS_BROKEN),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let want = [
        "ocelot.orders.json:9:30: Routes[1].UpstreamPathTemplate: route /orders has duplicate (same UpstreamPathTemplate, UpstreamHost, UpstreamHeaderTemplates and an overlapping UpstreamHttpMethod as ocelot.orders.json:10)",
        "ocelot.orders.json:10:30: Routes[2].UpstreamPathTemplate: route /orders has duplicate (same UpstreamPathTemplate, UpstreamHost, UpstreamHeaderTemplates and an overlapping UpstreamHttpMethod as ocelot.orders.json:9)",
        "ocelot.orders.json:12:31: Routes[3].UpstreamPathTemplate: UpstreamPathTemplate 'orders/{id}/lines/{id}' doesn't start with forward slash",
        "ocelot.orders.json:12:31: Routes[3].UpstreamPathTemplate: UpstreamPathTemplate 'orders/{id}/lines/{id}' has duplicated placeholder {id}",
        "ocelot.orders.json:13:33: Routes[3].DownstreamPathTemplate: DownstreamPathTemplate '/svc//lines' contains double forward slash, which Ocelot does not support",
        "ocelot.orders.json:14:33: Routes[3].DownstreamHostAndPorts: When not using service discovery DownstreamHostAndPorts must be set and not empty or Ocelot cannot find your service!",
        "ocelot.orders.json:15:37: Routes[3].RateLimitOptions.Limit: RateLimitOptions.Limit is negative or zero for the route orders/{id}/lines/{id}",
        "ocelot.orders.json:15:50: Routes[3].RateLimitOptions.Period: RateLimitOptions.Period does not contain integer then ms (millisecond), s (second), m (minute), h (hour), d (day) e.g. 1m for 1 minute period",
        "ocelot.products.json:3:24: Routes[0].DownstreamScheme: DownstreamScheme `ftp` must be http, https, ws or wss",
        "ocelot.products.json:3:96: Routes[0].DownstreamHostAndPorts[0].Port: port 70000 is out of range (1-65535)",
    ];
    let lines: Vec<&str> = err.lines().collect();
    let missing: Vec<&&str> = want.iter().filter(|w| !lines.contains(w)).collect();
    assert!(missing.is_empty(), "missing {missing:#?} in:\n{err}");
    assert_eq!(lines.last(), Some(&"10 error(s)"), "{err}");
}

// === Environments ===

#[test]
fn environment_file_overlays_the_merged_routes_by_index() {
    let up = Upstream::echo();
    let u = up.addr();
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
    let main = json!({
        "Routes": [
            route(dead, "/e", "/base", json!({})),
            route(u, "/stay", "/stay", json!({})),
        ],
        "GlobalConfiguration": {"RequestIdKey": "X-Base-Id"},
    });
    let products = json!({"Routes": [route(u, "/products/{id}", "/v1/products/{id}", json!({}))]});
    let development = json!({
        "Routes": [
            // Merged Routes[0] (ocelot.json): a new path and only the port of its host.
            {"DownstreamPathTemplate": "/dev", "DownstreamHostAndPorts": [{"Port": u.port()}]},
            // Merged Routes[1] untouched.
            {},
            // Merged Routes[2] comes from ocelot.products.json.
            {"DownstreamPathTemplate": "/v2/products/{id}"},
            // Past the end: one more route.
            route(u, "/dev-only", "/dev-only", json!({})),
        ],
        "GlobalConfiguration": {"RequestIdKey": "X-Dev-Id"},
    });
    let (main, products, development) = (
        main.to_string(),
        products.to_string(),
        development.to_string(),
    );
    let files = [
        ("ocelot.json", main.as_str()),
        ("ocelot.products.json", products.as_str()),
        ("ocelot.Development.json", development.as_str()),
    ];
    let dir = dir_with(&files);

    let gw = Running::start(dir.path(), &["--environment", "Development"]);
    let mut wrong = Vec::new();
    for (target, want) in [
        ("/e", "/dev"),
        ("/stay", "/stay"),
        ("/products/1", "/v2/products/1"),
        ("/dev-only", "/dev-only"),
    ] {
        let r = request(gw.addr, "GET", target, &[], b"");
        let seen = up.last();
        if r.status != 200 || seen.target != want || !seen.headers.contains_key("x-dev-id") {
            wrong.push(format!(
                "{target}: {} {}, upstream saw {} {:?}",
                r.status,
                r.text(),
                seen.target,
                seen.headers.keys()
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    drop(gw);

    // Without the environment the file is a part file, which does not hold together, and the
    // errors say which flag was meant; ASPNETCORE_ENVIRONMENT names the environment too.
    let (code, _, err) = check(&files, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("(if it is an environment file, run with --environment Development)"),
        "{err}"
    );
    let (code, out, err) = check(&files, &[("ASPNETCORE_ENVIRONMENT", "Development")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 ocelot route(s)"), "{out}");
}

// === Route options ===

#[test]
fn header_transforms_set_replace_and_fill_placeholders() {
    let up = Upstream::echo();
    // A downstream that answers a redirect to itself.
    let redirecting = Scripted::start(|req| {
        let host = req.headers.get("host").cloned().unwrap_or_default();
        (
            201,
            vec![("Location".into(), format!("http://{host}/orders/1"))],
            "{}".into(),
        )
    });
    let gw = ocelot(json!({
        "Routes": [
            route(up.addr(), "/ht", "/svc-ht", json!({
                "UpstreamHeaderTransform": {
                    "X-Route": "ht",
                    "X-Original-Host": "{UpstreamHost}",
                    "X-Client-Ip": "{RemoteIpAddress}",
                    "Laz": "D, GP",
                    "Uncle": "Bob",
                },
                "DownstreamHeaderTransform": {"X-Gateway": "ocelot"},
            })),
            route(redirecting.addr, "/orders", "/orders", json!({
                "DownstreamHeaderTransform": {"Location": "{DownstreamBaseUrl}, {BaseUrl}"},
            })),
        ],
        "GlobalConfiguration": {
            "BaseUrl": "http://gateway.example.com",
            "UpstreamHeaderTransform": {"X-Forwarded-Host": "{BaseUrl}", "X-Route": "global"},
            "DownstreamHeaderTransform": {"X-Powered-By": "switchyard"},
        },
    }));

    let r = gw.send(
        "GET",
        "/ht",
        &[
            ("Host", "client.example.com:8443"),
            ("Laz", "D and D"),
            ("Uncle", "Alice"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let h = up.last().headers;
    for (name, want) in [
        ("x-route", "ht"), // the route's value wins over the global one
        ("x-forwarded-host", "http://gateway.example.com"),
        ("x-original-host", "client.example.com:8443"),
        ("x-client-ip", "127.0.0.1"),
        ("laz", "GP and GP"),
        ("uncle", "Bob"),
    ] {
        assert_eq!(h.get(name).map(String::as_str), Some(want), "{name}");
    }
    assert_eq!(r.header("x-gateway"), Some("ocelot"));
    assert_eq!(r.header("x-powered-by"), Some("switchyard"));

    // find/replace only applies to a header that is there.
    assert_eq!(gw.get("/ht").status, 200);
    assert!(!up.last().headers.contains_key("laz"));

    let r = gw.send("POST", "/orders", &[], b"{}");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("http://gateway.example.com/orders/1")
    );
}

#[test]
fn claims_options_on_a_route_that_does_not_authenticate_answer_403_as_ocelot_does() {
    // Claims come from an authenticated user: on a route without AuthenticationOptions no
    // claim is ever found, and Ocelot answers 403 (CannotFindClaimError, UserDoesNotHaveClaim).
    // AllowedScopes without a provider are ignored, as Ocelot ignores them. Authentication
    // itself is tested in tests/ocelot_auth.rs.
    let up = Upstream::echo();
    let u = up.addr();
    let doc = json!({
        "Routes": [
            route(u, "/claims", "/svc-claims", json!({
                "AddHeadersToRequest": {"X-Customer": "Claims[sub] > value", "X-Ip": "{RemoteIpAddress}"},
            })),
            route(u, "/required", "/svc-required", json!({
                "RouteClaimsRequirement": {"role": "admin"},
            })),
            route(u, "/scoped", "/svc-scoped", json!({
                "AuthenticationOptions": {"AllowedScopes": ["orders"]},
            })),
            route(u, "/open", "/svc-open", json!({})),
        ],
    });
    let gw = ocelot(doc.clone());
    assert_eq!(outcome(&gw, &up, "GET", "/claims", &[]), Err(403));
    assert_eq!(
        gw.get("/claims").json()["message"],
        "Cannot find claim for key: sub"
    );
    assert_eq!(outcome(&gw, &up, "GET", "/required", &[]), Err(403));
    assert_eq!(
        gw.get("/required").json()["message"],
        "user does not have claim role"
    );
    assert_eq!(
        outcome(&gw, &up, "GET", "/scoped", &[]).as_deref(),
        Ok("/svc-scoped")
    );
    assert_eq!(
        outcome(&gw, &up, "GET", "/open", &[]).as_deref(),
        Ok("/svc-open")
    );

    let (code, _, err) = check(&[("ocelot.json", &doc.to_string())], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("closed routes"), "{err}");
    for want in [
        "warning: Routes[0].AddHeadersToRequest.X-Ip: `{RemoteIpAddress}` is not a claims expression",
        "warning: Routes[0].AddHeadersToRequest: AddHeadersToRequest reads claims, but the route does not authenticate",
        "warning: Routes[1].RouteClaimsRequirement: RouteClaimsRequirement reads claims",
        "warning: Routes[2].AuthenticationOptions.AllowedScopes: AllowedScopes apply only to a route that authenticates",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[test]
fn request_id_key_forwards_the_request_id_under_that_header() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = ocelot(json!({
        "Routes": [
            route(u, "/own", "/svc-own", json!({"RequestIdKey": "X-Req"})),
            route(u, "/inherited", "/svc-inherited", json!({})),
        ],
        "GlobalConfiguration": {"RequestIdKey": "X-Correlation-Id"},
    }));

    let r = gw.get("/own");
    assert_eq!(r.status, 200);
    let id = r.header("x-switchyard-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(up.last().headers["x-req"], id);
    assert!(!up.last().headers.contains_key("x-correlation-id"));
    assert_eq!(r.header("x-req"), None, "not echoed to the client");

    // The client's own id is kept.
    let r = gw.send("GET", "/own", &[("X-Req", "mine")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers["x-req"], "mine");

    let r = gw.get("/inherited");
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last()
            .headers
            .get("x-correlation-id")
            .map(String::as_str),
        r.header("x-switchyard-request-id")
    );
}

#[test]
fn security_options_allow_and_block_client_addresses() {
    let up = Upstream::echo();
    let u = up.addr();
    let sec = |s: Value| json!({ "SecurityOptions": s });
    let gw = ocelot(json!({
        "Routes": [
            route(u, "/blocked", "/a", sec(json!({"IPBlockedList": ["127.0.0.0/8"]}))),
            route(u, "/allowed", "/b", sec(json!({"IPAllowedList": ["127.0.0.1"]}))),
            route(u, "/not-listed", "/c", sec(json!({"IPAllowedList": ["10.0.0.1-10"]}))),
            route(u, "/both", "/d", sec(json!({"IPAllowedList": ["127.0.0.1"], "IPBlockedList": ["127.0.0.1-127.0.0.9"]}))),
            route(u, "/excluded", "/e", sec(json!({
                "IPAllowedList": ["127.0.0.1"], "IPBlockedList": ["127.0.0.1-127.0.0.9"], "ExcludeAllowedFromBlocked": true,
            }))),
            // The global lists apply only to routes that have none of their own.
            route(u, "/global", "/f", json!({})),
            route(u, "/own-list", "/g", sec(json!({"IPAllowedList": ["127.0.0.0/255.0.0.0"]}))),
        ],
        "GlobalConfiguration": {"SecurityOptions": {"IPBlockedList": ["127.0.0.1"]}},
    }));
    expect_rows(
        &gw,
        &up,
        &[
            ("GET", "/blocked", &[], Err(403)),
            ("GET", "/allowed", &[], Ok("/b")),
            ("GET", "/not-listed", &[], Err(403)),
            ("GET", "/both", &[], Err(403)),
            ("GET", "/excluded", &[], Ok("/e")),
            ("GET", "/global", &[], Err(403)),
            ("GET", "/own-list", &[], Ok("/g")),
        ],
    );
    let r = gw.get("/blocked");
    assert_eq!(
        r.json()["message"],
        "Your IP address is not allowed on this route (SecurityOptions)"
    );
}

/// A .NET "o" timestamp: `2024-05-01T12:34:56.1234567Z`.
fn is_iso8601_round_trip(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 28
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            27 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn rate_limit_counts_per_client_answers_ocelots_429_and_spares_the_whitelist() {
    let up = Upstream::echo();
    let u = up.addr();
    let gw = routes(vec![
        route(
            u,
            "/rl",
            "/svc-rl",
            json!({"RateLimitOptions": {"Limit": 2, "Period": "1m", "ClientWhitelist": ["vip"]}}),
        ),
        route(
            u,
            "/rl-custom",
            "/svc-rl-custom",
            json!({"RateLimitOptions": {"Limit": 1, "Period": "1m", "Wait": "30s", "ClientIdHeader": "X-Client"}}),
        ),
    ]);
    let call = |target: &str, headers: &[(&str, &str)]| gw.send("GET", target, headers, b"");
    let a = [("Oc-Client", "a")];

    let r = call("/rl", &a);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    let reset = r.header("x-ratelimit-reset").unwrap();
    assert!(is_iso8601_round_trip(reset), "{reset}");
    let r = call("/rl", &a);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset"), Some(reset), "one window");

    let r = call("/rl", &a);
    assert_eq!(r.status, 429);
    assert_eq!(
        r.text(),
        "API calls quota exceeded! Maximum admitted 2 per 1m."
    );
    let retry: f64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 50.0 && retry <= 60.0, "Retry-After {retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), None);

    // Another client has its own quota; whitelisted clients are never counted.
    let r = call("/rl", &[("Oc-Client", "b")]);
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (200, Some("1"))
    );
    for _ in 0..4 {
        let r = call("/rl", &[("Oc-Client", "vip")]);
        assert_eq!((r.status, r.header("x-ratelimit-limit")), (200, None));
    }
    assert_eq!(
        up.count(),
        2 + 1 + 4,
        "refused requests never reach the downstream"
    );

    // ClientIdHeader names the header; a request without it cannot be counted.
    let r = call("/rl-custom", &a);
    assert_eq!(r.status, 503);
    assert_eq!(
        r.text(),
        "Rate limiting client could not be identified for the route '/rl-custom' due to a missing or unknown client ID header required by rule '1/1m/w30s'!"
    );
    assert_eq!(r.header("retry-after"), Some("-1"));
    assert_eq!(call("/rl-custom", &[("X-Client", "c")]).status, 200);
    let r = call("/rl-custom", &[("X-Client", "c")]);
    assert_eq!(r.status, 429);
    assert_eq!(
        r.text(),
        "API calls quota exceeded! Maximum admitted 1 per 1m."
    );
    let retry: f64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry > 25.0 && retry <= 30.0,
        "Wait decides: Retry-After {retry}"
    );
    assert_eq!(up.count(), 8);
}

#[test]
fn rate_limit_legacy_global_options_still_apply() {
    let up = Upstream::echo();
    let gw = ocelot(json!({
        "Routes": [route(up.addr(), "/rl", "/svc-rl", json!({
            "RateLimitOptions": {"EnableRateLimiting": true, "ClientWhitelist": [], "Limit": 1, "Period": "1m", "PeriodTimespan": 60},
        }))],
        "GlobalConfiguration": {"RateLimitOptions": {
            "ClientIdHeader": "ClientId", "QuotaExceededMessage": "Exceeding!",
            "RateLimitCounterPrefix": "ABC", "HttpStatusCode": 418, "DisableRateLimitHeaders": false,
        }},
    }));
    let client = [("ClientId", "ocelotclient1")];
    assert_eq!(gw.send("GET", "/rl", &client, b"").status, 200);
    let r = gw.send("GET", "/rl", &client, b"");
    assert_eq!((r.status, r.text().as_str()), (418, "Exceeding!"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(up.count(), 1);
}

// === Aggregates ===

#[test]
fn aggregate_sends_its_parts_concurrently_and_answers_keyed_json_in_route_keys_order() {
    // Each request waits (up to 3 s) until both parts have arrived: answered at once only
    // if the gateway sends them together.
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    let gate = arrived.clone();
    let down = Scripted::start(move |req| {
        let (count, cv) = &*gate;
        let mut n = count.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let (n, _) = cv
            .wait_timeout_while(n, Duration::from_secs(3), |n| *n < 2)
            .unwrap();
        let together = *n >= 2;
        (
            200,
            Vec::new(),
            format!(r#"{{"path":"{}","together":{together}}}"#, req.target),
        )
    });
    let d = down.addr;
    let gw = ocelot(json!({
        "Routes": [
            route(d, "/laura/{id}", "/svc-laura/{id}", json!({"Key": "Laura"})),
            route(d, "/tom/{id}", "/svc-tom/{id}", json!({"Key": "Tom"})),
        ],
        "Aggregates": [{"UpstreamPathTemplate": "/family/{id}", "RouteKeys": ["Tom", "Laura"]}],
    }));

    let t = Instant::now();
    let r = gw.send("GET", "/family/7?x=1", &[("X-Trace", "t1")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        r#"{"Tom":{"path":"/svc-tom/7?x=1","together":true},"Laura":{"path":"/svc-laura/7?x=1","together":true}}"#
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let seen = down.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            (
                s.method.as_str(),
                s.headers.get("x-trace").map(String::as_str)
            ),
            ("GET", Some("t1")),
            "{s:?}"
        );
    }
}

#[test]
fn aggregate_part_that_answers_404_or_fails_is_null() {
    let up = Upstream::echo();
    let u = up.addr();
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
    let gw = ocelot(json!({
        "Routes": [
            route(u, "/p1", "/ok", json!({"Key": "a"})),
            route(u, "/p2", "/status/404", json!({"Key": "b"})),
            route(dead, "/p3", "/x", json!({"Key": "c"})),
            route(u, "/p4", "/status/500", json!({"Key": "d"})),
            route(u, "/{everything}", "/all/{everything}", json!({})),
        ],
        "Aggregates": [{"UpstreamPathTemplate": "/agg", "RouteKeys": ["a", "b", "c", "d"]}],
    }));
    let r = gw.get("/agg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    // A 500 is an answer, kept as it came; only 404 and no answer at all are null.
    assert_eq!(
        r.json(),
        json!({
            "a": {"path": "/ok", "body_len": 0},
            "b": null,
            "c": null,
            "d": {"path": "/status/500", "body_len": 0},
        })
    );
    // Aggregates answer GET only; the catch-all takes the rest.
    assert_eq!(
        outcome(&gw, &up, "POST", "/agg", &[]).as_deref(),
        Ok("/all/agg")
    );
}

#[test]
fn route_keys_config_calls_the_next_route_once_per_json_path_value() {
    let down = Scripted::start(|req| {
        let body = match req.target.as_str() {
            "/posts/1" => {
                r#"{"id":1,"comments":[{"authorId":"a1"},{"authorId":"a2"},{"authorId":"a1"}]}"#
            }
            "/users/a1" => r#"{"name":"Ann"}"#,
            "/users/a2" => r#"{"name":"Bob"}"#,
            _ => return (404, Vec::new(), String::new()),
        };
        (200, Vec::new(), body.to_string())
    });
    let d = down.addr;
    let gw = ocelot(json!({
        "Routes": [
            route(d, "/posts/{postId}", "/posts/{postId}", json!({"Key": "post"})),
            route(d, "/users/{userId}", "/users/{userId}", json!({"Key": "authors"})),
        ],
        "Aggregates": [{
            "UpstreamPathTemplate": "/post-with-authors/{postId}",
            "RouteKeys": ["post", "authors"],
            "RouteKeysConfig": [{"RouteKey": "authors", "JsonPath": "$.comments[*].authorId", "Parameter": "userId"}],
        }],
    }));
    let r = gw.get("/post-with-authors/1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"post":{"id":1,"comments":[{"authorId":"a1"},{"authorId":"a2"},{"authorId":"a1"}]},"authors":[{"name":"Ann"},{"name":"Bob"}]}"#
    );
    let mut targets = down.targets();
    assert_eq!(targets[0], "/posts/1", "the first key goes first");
    targets.sort();
    assert_eq!(targets, ["/posts/1", "/users/a1", "/users/a2"]);
}

// === Both dialects in one snapshot ===

#[test]
fn kong_and_ocelot_routes_share_one_snapshot() {
    let up = Upstream::echo();
    let u = up.addr();
    let kong = format!(
        "_format_version: '3.0'
services:
- name: k
  url: http://{u}/kong
  routes:
  - {{name: root, paths: [/]}}
  - {{name: kx, paths: [/kx]}}
"
    );
    let ocelot = json!({
        "Routes": [
            route(u, "/api/{rest}", "/ocelot-api/{rest}", json!({})),
            route(u, "/kx", "/ocelot-kx", json!({})),
            route(u, "/{all}", "/ocelot-all/{all}", json!({})),
        ],
    });
    let gw = TestGateway::start(&[("kong.yaml", &kong), ("ocelot.json", &ocelot.to_string())]);
    expect_rows(
        &gw,
        &up,
        &[
            // Kong's `/` catch-all never shadows a more specific Ocelot route...
            ("GET", "/api/users", &[], Ok("/ocelot-api/users")),
            // ...a Kong route that matches beats an Ocelot one (strip_path: /kx is stripped)...
            ("GET", "/kx", &[], Ok("/kong")),
            ("GET", "/kx/deeper", &[], Ok("/kong/deeper")),
            // ...and between two catch-alls Kong's wins.
            ("GET", "/elsewhere", &[], Ok("/kong/elsewhere")),
        ],
    );
}
