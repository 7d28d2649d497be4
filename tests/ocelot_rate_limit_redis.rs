//! Ocelot RateLimitOptions counted in Redis (`GlobalConfiguration.RateLimitOptions.Redis`,
//! switchyard's extension) through the real binary, with a real `redis-server`: two gateway
//! processes share one limit with Ocelot's fixed window and wait, Redis down lets requests
//! pass (warned at most once a second), and the block is read strictly.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

fn route(to: SocketAddr, upstream: &str, rl: Value) -> Value {
    json!({
        "UpstreamPathTemplate": upstream,
        "DownstreamPathTemplate": "/svc",
        "DownstreamScheme": "http",
        "DownstreamHostAndPorts": [{"Host": "127.0.0.1", "Port": to.port()}],
        "UpstreamHttpMethod": ["Get"],
        "RateLimitOptions": rl,
    })
}

fn doc(up: &Upstream, redis: &Redis, timeout_ms: u64) -> String {
    json!({
        "Routes": [
            route(up.addr(), "/rl", json!({"Limit": 3, "Period": "1m"})),
            route(up.addr(), "/wait", json!({"Limit": 1, "Period": "1s", "Wait": "30s"})),
        ],
        "GlobalConfiguration": {"RateLimitOptions": {
            "Redis": {"Host": "127.0.0.1", "Port": redis.port, "Timeout": timeout_ms},
        }},
    })
    .to_string()
}

fn dir_with(text: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ocelot.json"), text).unwrap();
    d
}

fn retry_after(r: &Resp) -> f64 {
    r.header("retry-after").unwrap().parse().unwrap()
}

#[test]
fn two_gateways_share_one_limit_with_ocelots_window_and_wait() {
    let redis = Redis::start();
    let up = Upstream::echo();
    let text = doc(&up, &redis, 2000);
    let (d1, d2) = (dir_with(&text), dir_with(&text));
    let (g1, g2) = (
        Running::start(d1.path(), &[]),
        Running::start(d2.path(), &[]),
    );
    let a = [("Oc-Client", "a")];
    let mut reset = None;
    for (i, remaining) in ["2", "1", "0"].into_iter().enumerate() {
        let gw = if i % 2 == 0 { &g1 } else { &g2 };
        let r = gw.send("GET", "/rl", &a, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
        let this = r.header("x-ratelimit-reset").unwrap().to_string();
        // One window, started once on Redis's clock, whichever process answers.
        assert_eq!(reset.get_or_insert(this.clone()), &this);
    }
    for gw in [&g1, &g2] {
        let r = gw.send("GET", "/rl", &a, b"");
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(
            r.text(),
            "API calls quota exceeded! Maximum admitted 3 per 1m."
        );
        let retry = retry_after(&r);
        assert!(retry > 50.0 && retry <= 60.0, "Retry-After {retry}");
    }
    assert_eq!(up.count(), 3);
    // Another client has its own quota.
    let r = g2.send("GET", "/rl", &[("Oc-Client", "b")], b"");
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (200, Some("2"))
    );

    // Wait outlasts the period: refused for 30 s from the moment the limit was passed.
    let c = [("Oc-Client", "c")];
    assert_eq!(g1.send("GET", "/wait", &c, b"").status, 200);
    let r = g2.send("GET", "/wait", &c, b"");
    assert_eq!(r.status, 429);
    let retry = retry_after(&r);
    assert!(retry > 28.0 && retry <= 30.0, "Retry-After {retry}");
    std::thread::sleep(Duration::from_millis(1300));
    let r = g1.send("GET", "/wait", &c, b"");
    assert_eq!(r.status, 429, "still waiting after the period");
    assert!(retry_after(&r) < retry);
    assert_eq!(up.count(), 5);
}

#[test]
fn redis_down_lets_requests_pass_with_a_warning_at_most_once_a_second() {
    let mut redis = Redis::start();
    let up = Upstream::echo();
    let dir = dir_with(&doc(&up, &redis, 300));
    let gw = Running::start(dir.path(), &[]);
    let a = [("Oc-Client", "a")];
    let r = gw.send("GET", "/rl", &a, b"");
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (200, Some("2"))
    );

    redis.stop();
    let before = up.count();
    for _ in 0..6 {
        let r = gw.send("GET", "/rl", &a, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            None,
            "no count, no headers"
        );
    }
    assert_eq!(
        up.count(),
        before + 6,
        "past the limit of 3: nothing was counted"
    );
    let warning = "ocelot rate limiting: Redis gave no count";
    assert!(gw.logged(&["WARN", warning]));
    let warnings = gw.log.lock().unwrap().matches(warning).count();
    assert!(
        (1..=3).contains(&warnings),
        "at most one a second: {warnings}"
    );

    // Redis back on the same address: the kept connection reconnects and counting resumes
    // (the new server starts empty).
    let _back = Redis::start_on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = gw.send("GET", "/rl", &a, b"");
        if r.header("x-ratelimit-remaining").is_some() || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"), "{}", r.text());
}

#[test]
fn the_redis_block_is_read_strictly_and_only_globally() {
    let up = Upstream::echo();
    let text = json!({
        "Routes": [route(up.addr(), "/rl", json!({"Limit": 3, "Period": "1m", "Redis": {"Host": "h"}}))],
        "GlobalConfiguration": {"RateLimitOptions": {
            "Redis": {"Host": "127.0.0.1", "Pasword": "x", "Port": 70000},
        }},
    })
    .to_string();
    let dir = dir_with(&text);
    let out = std::process::Command::new(binary())
        .args(["check", "--config-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    for want in [
        "ocelot.json:1:",
        "GlobalConfiguration.RateLimitOptions.Redis.Pasword: Redis: unknown key `Pasword`; did you mean `Password`?",
        "GlobalConfiguration.RateLimitOptions.Redis.Port: Redis.Port 70000 is not between 1 and 65535",
        "Routes[0].RateLimitOptions.Redis: RateLimitOptions.Redis is read from GlobalConfiguration.RateLimitOptions only",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn the_password_may_be_a_vault_reference() {
    let redis = Redis::start_with(dead_port(), &["--requirepass", "s3cret"]);
    let up = Upstream::echo();
    let text = |var: &str| {
        json!({
            "Routes": [route(up.addr(), "/rl", json!({"Limit": 3, "Period": "1m"}))],
            "GlobalConfiguration": {"RateLimitOptions": {"Redis": {
                "Host": "127.0.0.1", "Port": redis.port, "Password": format!("{{vault://env/{var}}}"),
            }}},
        })
        .to_string()
    };
    let dir = dir_with(&text("SWITCHYARD_TEST_OCELOT_REDIS_PW"));
    let gw = Running::start_env(
        dir.path(),
        &[],
        &[("SWITCHYARD_TEST_OCELOT_REDIS_PW", "s3cret")],
    );
    let a = [("Oc-Client", "a")];
    let r = gw.send("GET", "/rl", &a, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // Counted in Redis: the server took the password.
    assert_eq!(
        r.header("x-ratelimit-remaining"),
        Some("2"),
        "{}",
        gw.log.lock().unwrap()
    );

    let dir = dir_with(&text("SWITCHYARD_TEST_OCELOT_REDIS_PW_UNSET"));
    let out = std::process::Command::new(binary())
        .args(["check", "--config-dir"])
        .arg(dir.path())
        .env_remove("SWITCHYARD_TEST_OCELOT_REDIS_PW_UNSET")
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("SWITCHYARD_TEST_OCELOT_REDIS_PW_UNSET"),
        "{err}"
    );
    assert!(err.contains("redis.password"), "{err}");
}
