//! Kong's `rate-limiting` through the real binary: the counters' headers, Kong's 429, what a
//! limit is counted by, counters that outlive a reload, and Redis counters shared by two
//! gateway processes, with a real `redis-server` killed mid-test.

mod common;

use std::io::{BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use common::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A service on `up` with one route per `(name, path, plugins yaml)`, then `rest`.
fn kong(up: &Upstream, routes: &[(&str, &str, &str)], rest: &str) -> String {
    let mut y = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n",
        up.addr()
    );
    for (name, path, plugins) in routes {
        y.push_str(&format!(
            "  - name: {name}\n    paths: [{path}]\n    plugins: {plugins}\n"
        ));
    }
    y.push_str(rest);
    y
}

/// Minute limits count in calendar minutes: a test that needs its requests in one minute
/// starts early enough in it.
fn early_in_a_minute(needed: u64) {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if s + needed >= 60 {
        std::thread::sleep(Duration::from_millis((61 - s) * 1000));
    }
}

/// One request from the loopback address `from` (127.0.0.0/8 is all local).
fn send_from(gw: SocketAddr, from: &str, target: &str) -> Resp {
    let ip: IpAddr = from.parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    sock.connect(&gw.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(s), false).expect("a complete response")
}

fn assert_limited(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json(), json!({ "message": message }));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

fn seconds(r: &Resp, name: &str) -> i64 {
    let v = r.header(name).unwrap_or_else(|| panic!("no {name}: {r:?}"));
    v.parse().unwrap()
}

#[test]
fn a_minute_limit_counts_then_answers_kongs_429_with_its_headers() {
    let up = Upstream::echo();
    let yaml = kong(
        &up,
        &[(
            "r",
            "/rl",
            "[{name: rate-limiting, config: {minute: 3, hour: 10, policy: local}}]",
        )],
        "",
    );
    let dir = dir_with(&[("kong.yaml", &yaml)]);
    let gw = Running::start(dir.path(), &[]);
    early_in_a_minute(10);
    for remaining in ["2", "1", "0"] {
        let r = gw.get("/rl");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit-minute"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining-minute"), Some(remaining));
        assert_eq!(r.header("x-ratelimit-limit-hour"), Some("10"));
        // The most restrictive period is the minute's.
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        assert_eq!(r.header("ratelimit-remaining"), Some(remaining));
        let reset = seconds(&r, "ratelimit-reset");
        assert!((1..=60).contains(&reset), "{reset}");
        assert_eq!(r.header("retry-after"), None);
    }
    assert_eq!(
        gw.get("/rl").header("x-ratelimit-remaining-hour"),
        Some("7"),
        "a refused request is not counted"
    );
    let r = gw.get("/rl");
    assert_limited(&r, 429, "API rate limit exceeded");
    assert_eq!(
        up.count(),
        3,
        "a refused request never reaches the upstream"
    );
    assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("0"));
    assert_eq!(r.header("x-ratelimit-remaining-hour"), Some("7"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let retry = seconds(&r, "retry-after");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(seconds(&r, "ratelimit-reset"), retry);
}

#[test]
fn limits_count_by_header_ip_or_consumer() {
    let up = Upstream::echo();
    let yaml = kong(
        &up,
        &[
            (
                "hdr",
                "/hdr",
                "[{name: rate-limiting, config: {minute: 1, limit_by: header, header_name: X-Tenant}}]",
            ),
            (
                "ip",
                "/ip",
                "[{name: rate-limiting, config: {minute: 1, limit_by: ip}}]",
            ),
            (
                "who",
                "/who",
                "[{name: key-auth}, {name: rate-limiting, config: {minute: 1}}]",
            ),
        ],
        "consumers:\n- username: alice\n  keyauth_credentials: [{key: alice-key}]\n\
         - username: bob\n  keyauth_credentials: [{key: bob-key}]\n",
    );
    let dir = dir_with(&[("kong.yaml", &yaml)]);
    let gw = Running::start(dir.path(), &[]);
    early_in_a_minute(10);
    let tenant = |t: &str| gw.send("GET", "/hdr", &[("X-Tenant", t)], b"").status;
    assert_eq!([tenant("a"), tenant("a"), tenant("b")], [200, 429, 200]);
    // Without the header, the client's address counts (Kong's fallback).
    assert_eq!([gw.get("/hdr").status, gw.get("/hdr").status], [200, 429]);

    let from = |ip: &str| send_from(gw.addr, ip, "/ip").status;
    assert_eq!(
        [from("127.0.0.2"), from("127.0.0.2"), from("127.0.0.3")],
        [200, 429, 200]
    );

    let key = |k: &str| gw.send("GET", "/who", &[("apikey", k)], b"").status;
    assert_eq!(
        [key("alice-key"), key("alice-key"), key("bob-key")],
        [200, 429, 200]
    );
    assert_eq!(key("bob-key"), 429);
}

#[test]
fn hidden_headers_and_a_custom_error() {
    let up = Upstream::echo();
    let yaml = kong(
        &up,
        &[
            (
                "hidden",
                "/hidden",
                "[{name: rate-limiting, config: {minute: 1, hide_client_headers: true}}]",
            ),
            (
                "custom",
                "/custom",
                "[{name: rate-limiting, config: {hour: 1, error_code: 404, error_message: Fake Not Found}}]",
            ),
        ],
        "",
    );
    let dir = dir_with(&[("kong.yaml", &yaml)]);
    let gw = Running::start(dir.path(), &[]);
    early_in_a_minute(10);
    for (i, r) in [gw.get("/hidden"), gw.get("/hidden")].iter().enumerate() {
        assert_eq!(r.status, [200, 429][i], "{}", r.text());
        let names: Vec<&String> = r
            .headers
            .keys()
            .filter(|k| k.contains("ratelimit"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        assert_eq!(r.header("retry-after"), None);
    }
    assert_eq!(gw.get("/custom").status, 200);
    let r = gw.get("/custom");
    assert_limited(&r, 404, "Fake Not Found");
    assert_eq!(r.header("x-ratelimit-remaining-hour"), Some("0"));
    assert!(r.header("retry-after").is_some());
}

#[test]
fn local_counters_outlive_a_reload() {
    let up = Upstream::echo();
    let routes = [("r", "/rl", "[{name: rate-limiting, config: {minute: 3}}]")];
    let dir = dir_with(&[("kong.yaml", &kong(&up, &routes, ""))]);
    let gw = Running::start(dir.path(), &[]);
    early_in_a_minute(15);
    assert_eq!([gw.get("/rl").status, gw.get("/rl").status], [200, 200]);

    // An unrelated change: a new route.
    let more = [routes[0], ("other", "/other", "[]")];
    std::fs::write(dir.path().join("kong.yaml"), kong(&up, &more, "")).unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.get("/other").status, 200, "the reload took effect");

    let r = gw.get("/rl");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("0"));
    assert_eq!(
        gw.get("/rl").status,
        429,
        "the count went on across the reload"
    );
}

#[test]
fn the_cluster_policy_is_refused_at_load_with_its_position() {
    let yaml = "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:1\n  routes:\n  - name: r\n    paths: [/]\n    plugins:\n    - name: rate-limiting\n      config:\n        minute: 5\n        policy: cluster\n";
    let dir = dir_with(&[("kong.yaml", yaml)]);
    let out = Command::new(binary())
        .arg("check")
        .arg("--config-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kong.yaml:12:17: services[0].routes[0].plugins[0].config.policy: plugin 'rate-limiting': `cluster` is not one of: local, redis (the cluster policy keeps its counters in a database; Kong refuses it in DB-less mode)"),
        "{err}"
    );
}

fn start_gateway(dir: &Path) -> Running {
    Running::start(dir, &[])
}

#[test]
fn two_gateways_share_one_limit_on_redis() {
    let redis = Redis::start();
    let up = Upstream::echo();
    let plugin = format!(
        "[{{name: rate-limiting, config: {{minute: 4, limit_by: ip, policy: redis, redis: {{host: 127.0.0.1, port: {}}}}}}}]",
        redis.port
    );
    let yaml = kong(&up, &[("r", "/rl", &plugin)], "");
    let (d1, d2) = (
        dir_with(&[("kong.yaml", &yaml)]),
        dir_with(&[("kong.yaml", &yaml)]),
    );
    let (g1, g2) = (start_gateway(d1.path()), start_gateway(d2.path()));
    early_in_a_minute(10);
    for (i, remaining) in ["3", "2", "1", "0"].into_iter().enumerate() {
        let gw = if i % 2 == 0 { &g1 } else { &g2 };
        let r = gw.get("/rl");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-remaining-minute"), Some(remaining));
    }
    assert_limited(&g1.get("/rl"), 429, "API rate limit exceeded");
    assert_limited(&g2.get("/rl"), 429, "API rate limit exceeded");
    assert_eq!(up.count(), 4);
}

#[test]
fn redis_down_passes_with_fault_tolerance_and_fails_without() {
    let mut redis = Redis::start();
    let up = Upstream::echo();
    let plugin = |ft: bool| {
        format!(
            "[{{name: rate-limiting, config: {{minute: 100, policy: redis, fault_tolerant: {ft}, redis: {{host: 127.0.0.1, port: {}, timeout: 300}}}}}}]",
            redis.port
        )
    };
    let yaml = kong(
        &up,
        &[
            ("ft", "/ft", &plugin(true)),
            ("strict", "/strict", &plugin(false)),
        ],
        "",
    );
    let dir = dir_with(&[("kong.yaml", &yaml)]);
    let gw = start_gateway(dir.path());
    early_in_a_minute(20);
    for target in ["/ft", "/strict"] {
        let r = gw.get(target);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("99"));
    }

    redis.stop();
    let before = up.count();
    for _ in 0..6 {
        let r = gw.get("/ft");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("x-ratelimit-remaining-minute"),
            None,
            "no counts, no headers"
        );
    }
    assert_eq!(up.count(), before + 6);
    assert!(gw.logged(&["WARN", "rate-limiting: failed to get usage"]));
    let warnings = gw
        .log
        .lock()
        .unwrap()
        .matches("rate-limiting: failed to get usage; requests pass")
        .count();
    assert!(
        (1..=3).contains(&warnings),
        "at most one a second: {warnings}"
    );

    let r = gw.get("/strict");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    assert_eq!(
        up.count(),
        before + 6,
        "a failed count never reaches the upstream"
    );

    // Redis back on the same address: the kept connection reconnects and counting resumes
    // (the new server starts empty).
    let _back = Redis::start_on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = gw.get("/strict");
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("99"));
}

/// An upstream that uses one `video` per response (`X-Kong-Limit: video=1`) and records the
/// `X-RateLimit-Remaining-Video` it was told.
struct VideoUpstream {
    addr: SocketAddr,
    told: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl VideoUpstream {
    fn start() -> VideoUpstream {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let told: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>> = Default::default();
        let log = told.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut remaining = None;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some((k, v)) = line.trim_end().split_once(':')
                        && k.eq_ignore_ascii_case("x-ratelimit-remaining-video")
                    {
                        remaining = Some(v.trim().to_string());
                    }
                    line.clear();
                }
                log.lock().unwrap().push(remaining);
                let mut out = stream;
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nX-Kong-Limit: video=1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
            }
        });
        VideoUpstream { addr, told }
    }

    fn told(&self) -> Vec<Option<String>> {
        self.told.lock().unwrap().clone()
    }
}

fn response_ratelimiting_counts_what_the_upstream_uses(config: &str) {
    let up = VideoUpstream::start();
    let yaml = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n  \
         - name: r\n    paths: [/v]\n    plugins: [{{name: response-ratelimiting, config: {{limits: {{video: {{minute: 2}}}}{config}}}}}]\n  \
         - name: b\n    paths: [/b]\n    plugins: [{{name: response-ratelimiting, config: {{block_on_first_violation: true, limits: {{video: {{minute: 2}}}}{config}}}}}]\n",
        up.addr
    );
    let dir = dir_with(&[("kong.yaml", &yaml)]);
    let gw = Running::start(dir.path(), &[]);
    early_in_a_minute(15);
    for remaining in ["1", "0"] {
        let r = gw.get("/v");
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.header("x-ratelimit-limit-video-minute"), Some("2"));
        assert_eq!(
            r.header("x-ratelimit-remaining-video-minute"),
            Some(remaining)
        );
        assert_eq!(
            r.header("x-kong-limit"),
            None,
            "the upstream's header stays inside"
        );
        // Counted in the log phase, after the response went out.
        std::thread::sleep(Duration::from_millis(100));
    }
    // Spent: the upstream is still called (its answer says what it used), the client gets
    // 429 without a body.
    let r = gw.get("/v");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.text(), "");
    let told: Vec<Option<String>> = up.told();
    assert_eq!(told, [Some("2".into()), Some("1".into()), Some("0".into())]);

    for _ in 0..2 {
        assert_eq!(gw.get("/b").status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = gw.get("/b");
    assert_limited(&r, 429, "API rate limit exceeded for 'video'");
    assert_eq!(
        up.told().len(),
        5,
        "block_on_first_violation never calls the upstream"
    );
}

#[test]
fn response_ratelimiting_counts_locally() {
    response_ratelimiting_counts_what_the_upstream_uses("");
}

#[test]
fn response_ratelimiting_counts_on_redis() {
    let redis = Redis::start();
    response_ratelimiting_counts_what_the_upstream_uses(&format!(
        ", policy: redis, redis: {{host: 127.0.0.1, port: {}}}",
        redis.port
    ));
}
