//! Ocelot output caching (`FileCacheOptions` / `CacheOptions`) through the real binary with
//! a real upstream: what is answered from the cache (the upstream's request count says),
//! for how long, what the key tells apart, how the admin API clears a region, and that
//! routes without caching are untouched. The cases follow the conformance suite's
//! `ocelot-cache-*` and Ocelot's acceptance tests (Caching/CachingTests.cs).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

/// A route from `upstream` to `downstream` on `to`, with the fields of `extra` added.
fn route(to: SocketAddr, upstream: &str, downstream: &str, extra: Value) -> Value {
    let mut r = json!({
        "UpstreamPathTemplate": upstream,
        "DownstreamPathTemplate": downstream,
        "DownstreamScheme": "http",
        "DownstreamHostAndPorts": [{"Host": to.ip().to_string(), "Port": to.port()}],
        "UpstreamHttpMethod": ["Get"],
    });
    r.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    r
}

/// `switchyard run` over one ocelot.json (the directory lives as long as the process).
fn run(doc: Value) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ocelot.json"), doc.to_string()).unwrap();
    (Running::start(dir.path(), &[]), dir)
}

/// Sends a request and returns the response with how many requests reached the upstream.
fn call(
    gw: &Running,
    up: &Upstream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Resp, usize) {
    let before = up.count();
    let r = gw.send(method, target, headers, body);
    (r, up.count() - before)
}

fn get(gw: &Running, up: &Upstream, target: &str) -> (Resp, usize) {
    call(gw, up, "GET", target, &[], b"")
}

#[test]
fn second_request_is_answered_from_the_cache_until_the_ttl_expires() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/cached/{all}", "/svc-cache/{all}", json!({"FileCacheOptions": {"TtlSeconds": 100, "Region": "europe"}})),
            route(a, "/short/{all}", "/svc-cache/{all}", json!({"FileCacheOptions": {"TtlSeconds": 1}})),
        ],
        "GlobalConfiguration": {},
    }));
    let (r, n) = get(&gw, &up, "/cached/a");
    assert_eq!((r.status, n), (200, 1), "{}", r.text());
    assert_eq!(r.json()["path"], "/svc-cache/a");
    let (r, n) = get(&gw, &up, "/cached/a");
    assert_eq!((r.status, n), (200, 0), "from the cache: {}", r.text());
    assert_eq!(r.json()["path"], "/svc-cache/a");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let (r, n) = get(&gw, &up, "/cached/b");
    assert_eq!((r.status, n), (200, 1));
    assert_eq!(r.json()["path"], "/svc-cache/b");

    // TtlSeconds 1: cached for a second, then fetched again.
    assert_eq!(get(&gw, &up, "/short/t").1, 1);
    assert_eq!(get(&gw, &up, "/short/t").1, 0);
    std::thread::sleep(Duration::from_millis(2200));
    let (r, n) = get(&gw, &up, "/short/t");
    assert_eq!((r.status, n), (200, 1), "expired: {}", r.text());
    assert_eq!(get(&gw, &up, "/short/t").1, 0, "stored again");
}

#[test]
fn the_key_is_method_url_and_header() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/cached/{all}", "/svc-cache/{all}", json!({
                "UpstreamHttpMethod": ["Get", "Delete"],
                "CacheOptions": {"TtlSeconds": 100},
            })),
            route(a, "/tenant/{all}", "/svc-tenant/{all}", json!({
                "CacheOptions": {"TtlSeconds": 100, "Header": "X-Tenant"},
            })),
        ],
        "GlobalConfiguration": {},
    }));
    // The URL, query included.
    assert_eq!(get(&gw, &up, "/cached/q?x=1").1, 1);
    let (r, n) = get(&gw, &up, "/cached/q?x=2");
    assert_eq!(n, 1);
    assert_eq!(r.json()["path"], "/svc-cache/q?x=2");
    let (r, n) = get(&gw, &up, "/cached/q?x=1");
    assert_eq!(n, 0);
    assert_eq!(r.json()["path"], "/svc-cache/q?x=1");
    // The method: Ocelot caches whatever the method, keyed by it.
    let (r, n) = call(&gw, &up, "DELETE", "/cached/q?x=1", &[], b"");
    assert_eq!((r.status, n), (200, 1));
    assert_eq!(up.last().method, "DELETE");
    assert_eq!(call(&gw, &up, "DELETE", "/cached/q?x=1", &[], b"").1, 0);
    // The default header, OC-Cache-Control: a new value is a new entry.
    let oc = [("OC-Cache-Control", "v2")];
    assert_eq!(call(&gw, &up, "GET", "/cached/q?x=1", &oc, b"").1, 1);
    assert_eq!(call(&gw, &up, "GET", "/cached/q?x=1", &oc, b"").1, 0);

    // A configured Header.
    let t = |v: &'static str| [("X-Tenant", v)];
    assert_eq!(call(&gw, &up, "GET", "/tenant/x", &t("a"), b"").1, 1);
    assert_eq!(call(&gw, &up, "GET", "/tenant/x", &t("b"), b"").1, 1);
    assert_eq!(call(&gw, &up, "GET", "/tenant/x", &t("a"), b"").1, 0);
    assert_eq!(call(&gw, &up, "GET", "/tenant/x", &t("b"), b"").1, 0);
    assert_eq!(
        get(&gw, &up, "/tenant/x").1,
        1,
        "no header is a value of its own"
    );
    // OC-Cache-Control is not read when another Header is configured.
    assert_eq!(call(&gw, &up, "GET", "/tenant/x", &oc, b"").1, 0);
}

#[test]
fn content_hashing_puts_the_body_in_the_key() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/hashed", "/svc/hashed", json!({
                "UpstreamHttpMethod": ["Post"],
                "CacheOptions": {"TtlSeconds": 100, "EnableContentHashing": true},
            })),
            route(a, "/unhashed", "/svc/unhashed", json!({
                "UpstreamHttpMethod": ["Post"],
                "CacheOptions": {"TtlSeconds": 100},
            })),
        ],
        "GlobalConfiguration": {},
    }));
    let post = |path: &str, body: &[u8]| call(&gw, &up, "POST", path, &[], body);
    let (r, n) = post("/hashed", b"one");
    assert_eq!((r.status, n), (200, 1));
    assert_eq!(
        up.last().body,
        b"one",
        "the body read for the key still goes upstream"
    );
    assert_eq!(post("/hashed", b"two").1, 1);
    assert_eq!(post("/hashed", b"one").1, 0);
    assert_eq!(post("/hashed", b"two").1, 0);
    // Without EnableContentHashing, another body is the same entry (Ocelot 23+).
    assert_eq!(post("/unhashed", b"one").1, 1);
    let (r, n) = post("/unhashed", b"two");
    assert_eq!(n, 0);
    assert_eq!(r.json()["body_len"], 3);
}

#[test]
fn admin_api_clears_a_region() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/eu/{all}", "/svc/{all}", json!({"FileCacheOptions": {"TtlSeconds": 100, "Region": "europe"}})),
            route(a, "/as/{all}", "/svc/{all}", json!({"FileCacheOptions": {"TtlSeconds": 100, "Region": "asia"}})),
            route(a, "/def/{all}", "/svc/{all}", json!({"FileCacheOptions": {"TtlSeconds": 100}})),
        ],
        "GlobalConfiguration": {},
    }));
    for p in ["/eu/1", "/as/1", "/def/1"] {
        assert_eq!(get(&gw, &up, p).1, 1, "{p}");
        assert_eq!(get(&gw, &up, p).1, 0, "{p}");
    }
    let r = gw.admin("DELETE", "/outputcache/europe");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(get(&gw, &up, "/eu/1").1, 1, "europe was cleared");
    assert_eq!(get(&gw, &up, "/as/1").1, 0, "asia was not");
    assert_eq!(get(&gw, &up, "/def/1").1, 0);
    // The default region is Ocelot's load-balancing key of the route.
    let region = format!(
        "Get|/def/{{all}}|no-host|127.0.0.1:{}|no-svc-ns|no-svc-name|NoLoadBalancer|no-lb-key",
        a.port()
    );
    let encoded: String = region
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    assert_eq!(
        gw.admin("DELETE", &format!("/outputcache/{encoded}"))
            .status,
        204
    );
    assert_eq!(
        get(&gw, &up, "/def/1").1,
        1,
        "the default region was cleared"
    );
    assert_eq!(get(&gw, &up, "/as/1").1, 0);
    // An unknown region is cleared too (there is nothing in it); other methods are refused.
    assert_eq!(gw.admin("DELETE", "/outputcache/nowhere").status, 204);
    assert_eq!(gw.admin("GET", "/outputcache/asia").status, 405);
    assert_eq!(get(&gw, &up, "/as/1").1, 0);
}

#[test]
fn routes_without_caching_are_unaffected_and_global_options_apply_to_their_group() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/plain", "/svc/plain", json!({})),
            route(a, "/zero", "/svc/zero", json!({"FileCacheOptions": {"TtlSeconds": 0, "Region": "r"}})),
            route(a, "/grouped", "/svc/grouped", json!({"Key": "g", "CacheOptions": {}})),
            route(a, "/outside", "/svc/outside", json!({"Key": "o"})),
        ],
        "GlobalConfiguration": {"CacheOptions": {"TtlSeconds": 100, "RouteKeys": ["g"]}},
    }));
    for p in ["/plain", "/zero", "/outside"] {
        assert_eq!(get(&gw, &up, p).1, 1, "{p}");
        let (r, n) = get(&gw, &up, p);
        assert_eq!((r.status, n), (200, 1), "{p} is not cached");
    }
    assert_eq!(get(&gw, &up, "/grouped").1, 1);
    assert_eq!(
        get(&gw, &up, "/grouped").1,
        0,
        "TtlSeconds from the global group"
    );
}

#[test]
fn any_upstream_status_is_cached_and_response_transforms_run_once_on_a_hit() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/s/{all}", "/{all}", json!({
                "FileCacheOptions": {"TtlSeconds": 100},
                // Not idempotent: applied to an already transformed head, it would grow.
                "DownstreamHeaderTransform": {"Content-Type": "application/json, application/json+x"},
            })),
            route(a, "/down/{all}", "/{all}", json!({
                "FileCacheOptions": {"TtlSeconds": 100},
                "DownstreamHostAndPorts": [{"Host": "127.0.0.1", "Port": dead_port()}],
            })),
        ],
        "GlobalConfiguration": {},
    }));
    let (r, n) = get(&gw, &up, "/s/status/500");
    assert_eq!((r.status, n), (500, 1));
    assert_eq!(r.header("content-type"), Some("application/json+x"));
    let (r, n) = get(&gw, &up, "/s/status/500");
    assert_eq!((r.status, n), (500, 0), "Ocelot caches every status");
    assert_eq!(r.header("content-type"), Some("application/json+x"));
    // The gateway's own errors (the upstream unreachable) are not responses to cache.
    let first = gw.get("/down/x");
    assert_eq!(first.status, 502, "{}", first.text());
    let second = gw.get("/down/x");
    assert_eq!(second.status, 502);
    assert_ne!(
        first.header("x-switchyard-request-id"),
        second.header("x-switchyard-request-id")
    );
    assert_ne!(
        first.text(),
        second.text(),
        "each 502 names its own request id"
    );
}

#[test]
fn options_that_run_before_the_cache_still_run_on_a_hit() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [route(a, "/rl", "/svc/rl", json!({
            "FileCacheOptions": {"TtlSeconds": 100},
            "RateLimitOptions": {"Limit": 2, "Period": "1m"},
        }))],
        "GlobalConfiguration": {},
    }));
    let c = [("Oc-Client", "a")];
    let (r, n) = call(&gw, &up, "GET", "/rl", &c, b"");
    assert_eq!((r.status, n), (200, 1));
    let (r, n) = call(&gw, &up, "GET", "/rl", &c, b"");
    assert_eq!((r.status, n), (200, 0), "a hit");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"), "and counted");
    let (r, n) = call(&gw, &up, "GET", "/rl", &c, b"");
    assert_eq!(
        (r.status, n),
        (429, 0),
        "RateLimitOptions run before the cache"
    );
}

#[test]
fn aggregate_parts_are_fetched_every_time() {
    let up = Upstream::echo();
    let a = up.addr();
    let (gw, _dir) = run(json!({
        "Routes": [
            route(a, "/one", "/svc/one", json!({"Key": "one", "FileCacheOptions": {"TtlSeconds": 100}})),
            route(a, "/two", "/svc/two", json!({"Key": "two"})),
        ],
        "Aggregates": [{"UpstreamPathTemplate": "/both", "RouteKeys": ["one", "two"]}],
        "GlobalConfiguration": {},
    }));
    for _ in 0..2 {
        let (r, n) = get(&gw, &up, "/both");
        assert_eq!((r.status, n), (200, 2), "{}", r.text());
        assert_eq!(r.json()["one"]["path"], "/svc/one");
    }
    // The route itself caches.
    assert_eq!(get(&gw, &up, "/one").1, 1);
    assert_eq!(get(&gw, &up, "/one").1, 0);
}

/// `switchyard check` on one ocelot.json: (success, everything it printed).
fn check(doc: Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ocelot.json"), doc.to_string()).unwrap();
    let out = std::process::Command::new(binary())
        .args(["check", "--config-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let all =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), all)
}

#[test]
fn config_problems_name_their_place() {
    let up = Upstream::echo();
    let (ok, all) = check(json!({
        "Routes": [route(up.addr(), "/c", "/svc", json!({"FileCacheOptions": {"TtlSeconds": 10, "Header": "bad header"}}))],
        "GlobalConfiguration": {},
    }));
    assert!(!ok, "{all}");
    assert!(
        all.contains("ocelot.json:1:234: Routes[0].FileCacheOptions.Header: FileCacheOptions.Header `bad header` is not a valid header name"),
        "{all}"
    );
    // Ocelot never reads a global FileCacheOptions: a warning, not an error.
    let (ok, all) = check(json!({
        "Routes": [route(up.addr(), "/c", "/svc", json!({}))],
        "GlobalConfiguration": {"FileCacheOptions": {"TtlSeconds": 10}},
    }));
    assert!(ok, "{all}");
    assert!(
        all.contains("warning: GlobalConfiguration.FileCacheOptions: Ocelot does not read GlobalConfiguration.FileCacheOptions"),
        "{all}"
    );
}
