//! Proxy-Wasm filter chains end to end: the real binary, a real filter built from
//! `filters/` with the proxy-wasm SDK (for wasm32-unknown-unknown), a real upstream.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Running, Upstream, binary};

/// Builds the test filter crate once per test binary; the module's path.
fn testkit() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("wasm-filters");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .arg("--manifest-path")
            .arg(root.join("filters/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo for the test filters");
        assert!(
            out.status.success(),
            "building filters/ failed (is the wasm32-unknown-unknown target installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-unknown-unknown/release/switchyard_test_filters.wasm")
    })
}

/// A config directory with `kong.yaml` and the test filter as `filters/testkit.wasm`.
fn dir_with(kong: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong).unwrap();
    std::fs::create_dir(dir.path().join("filters")).unwrap();
    std::fs::copy(testkit(), dir.path().join("filters/testkit.wasm")).unwrap();
    dir
}

/// `switchyard check --config-dir DIR`: (exit code, stdout + stderr).
fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(binary())
        .args(["check", "--config-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A service on `up` with one route per (path, testkit config) in `routes`, each with a
/// route filter chain running testkit with that config.
fn kong_routes(up: &Upstream, routes: &[(&str, &str)]) -> String {
    let mut out = format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{}\n  routes:\n",
        up.addr()
    );
    for (i, (path, config)) in routes.iter().enumerate() {
        out.push_str(&format!(
            "  - name: r{i}\n    paths: [{path}]\n    filter_chains:\n    - filters:\n      - name: testkit\n        config: \"{config}\"\n"
        ));
    }
    out
}

#[test]
fn filters_add_headers_both_ways_and_read_pseudo_headers_and_properties() {
    let up = Upstream::echo();
    let kong = kong_routes(
        &up,
        &[(
            "/f",
            "req-header=x-wasm-req:hello resp-header=x-wasm-resp:world echo-path=1 property=plugin_name",
        )],
    );
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    let r = gw.get("/f/x?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-wasm-resp"), Some("world"));
    assert_eq!(r.header("x-filter-property"), Some("testkit"));
    let seen = up.last();
    assert_eq!(
        seen.headers.get("x-wasm-req").map(String::as_str),
        Some("hello")
    );
    assert_eq!(
        seen.headers.get("x-filter-path").map(String::as_str),
        Some("/f/x?q=1")
    );
}

#[test]
fn a_filter_answers_with_a_local_response() {
    let up = Upstream::echo();
    let kong = kong_routes(&up, &[("/deny", "deny=403"), ("/late", "deny-late=418")]);
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    let r = gw.get("/deny");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("x-denied-by"), Some("testkit"));
    assert_eq!(r.json()["message"], "denied by filter");
    assert_eq!(up.count(), 0, "a denied request reached the upstream");
    let r = gw.send("GET", "/deny", &[("x-allow", "1")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 1);
    // From on_response_headers: the upstream answered, the filter's answer replaces it.
    let r = gw.get("/late");
    assert_eq!(r.status, 418, "{}", r.text());
    assert_eq!(r.header("x-denied-by"), Some("testkit-late"));
    assert_eq!(r.text(), "late");
    assert_eq!(up.count(), 2);
}

#[test]
fn chains_run_service_filters_then_route_filters_and_each_entry_of_the_same_filter() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://{}
  filter_chains:
  - name: outer
    filters:
    - {{name: testkit, config: "req-header=x-service:1 count=1"}}
  routes:
  - name: r
    paths: [/twice]
filter_chains:
- route: r
  filters:
  - {{name: testkit, config: "req-header=x-first:1"}}
  - {{name: testkit, config: "req-header=x-off:1", enabled: false}}
  - {{name: testkit, config: "req-header=x-second:2 resp-header=x-last:route"}}
"#,
        up.addr()
    );
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    for n in 1..=3 {
        let r = gw.get("/twice");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-last"), Some("route"));
        // One instance per worker, reused: the root context counts every request.
        assert_eq!(r.header("x-filter-count"), Some(n.to_string().as_str()));
        let seen = up.last();
        for h in ["x-service", "x-first", "x-second"] {
            assert!(
                seen.headers.contains_key(h),
                "{h} missing: {:?}",
                seen.headers
            );
        }
        assert!(!seen.headers.contains_key("x-off"));
    }
}

#[test]
fn filters_rewrite_request_and_response_bodies() {
    let up = Upstream::echo();
    let kong = kong_routes(
        &up,
        &[
            ("/upper", "req-body-upper=1"),
            ("/replace", "resp-body=replaced_by_filter"),
        ],
    );
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    let r = gw.send("POST", "/upper", &[], b"hello body");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, b"HELLO BODY");
    let r = gw.get("/replace");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "replaced by filter");
}

/// Failing filters fail their own request with 500 and a JSON body; the gateway, the other
/// routes and later requests on the same route (a new instance) go on.
#[test]
fn traps_runaway_loops_and_memory_hogs_fail_only_their_request() {
    let up = Upstream::echo();
    let kong = kong_routes(
        &up,
        &[
            ("/ok", "resp-header=x-ok:1"),
            ("/trap", "trap=request_headers"),
            ("/loop", "loop=request_headers"),
            ("/hog", "hog=request_headers"),
            ("/late", "trap=response_headers"),
        ],
    );
    let dir = dir_with(&kong);
    let limits = ["--wasm-hook-timeout", "30", "--wasm-memory-limit", "16"];
    let gw = Running::start(dir.path(), &limits);
    assert_eq!(gw.get("/ok").status, 200);
    for target in ["/trap", "/loop", "/hog", "/late"] {
        let t = Instant::now();
        let r = gw.get(target);
        assert_eq!(r.status, 500, "{target}: {}", r.text());
        assert_eq!(
            r.json()["message"],
            "An unexpected error occurred",
            "{target}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{target} took {:?}",
            t.elapsed()
        );
        let ok = gw.get("/ok");
        assert_eq!(ok.status, 200, "after {target}: {}", ok.text());
        assert_eq!(ok.header("x-ok"), Some("1"));
    }
    let log = || gw.log.lock().unwrap().clone();
    // The SDK's panic message (logged by the filter), then the host's line naming the filter.
    assert!(
        gw.logged(&["testkit", "trap in request_headers"]),
        "{}",
        log()
    );
    assert!(
        gw.logged(&["testkit", "Proxy-Wasm filter failed", "unreachable"]),
        "{}",
        log()
    );
    assert!(
        gw.logged(&["Proxy-Wasm filter failed", "deadline"]),
        "{}",
        log()
    );
    assert!(
        gw.logged(&["Proxy-Wasm filter failed", "memory"]),
        "{}",
        log()
    );
    // The upstream saw only the /ok requests (and /late, which failed on the way back).
    assert_eq!(up.count(), 6);
}

#[test]
fn filter_errors_are_reported_at_load_with_their_position() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://{}
  routes:
  - name: r
    paths: [/]
    filter_chains:
    - filters:
      - name: nope
      - name: testkit
        config: "configure=reject"
      - name: testkit
        config: {{a: 1}}
"#,
        up.addr()
    );
    let dir = dir_with(&kong);
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("kong.yaml:10:9: services[0].routes[0].filter_chains[0].filters[0]: unknown filter 'nope'")
            && out.contains("filters in ")
            && out.contains(": testkit)"),
        "{out}"
    );
    assert!(
        out.contains("kong.yaml:11:9: services[0].routes[0].filter_chains[0].filters[1]: filter 'testkit': proxy_on_configure returned false"),
        "{out}"
    );
    assert!(
        out.contains("filters[2]: filter 'testkit': config must be a string"),
        "{out}"
    );
}

#[test]
fn a_bad_filter_edit_keeps_the_serving_snapshot_and_a_changed_module_reloads() {
    let up = Upstream::echo();
    let good = kong_routes(&up, &[("/f", "resp-header=x-v:1")]);
    let dir = dir_with(&good);
    let gw = Running::start(dir.path(), &[]);
    assert_eq!(gw.get("/f").header("x-v"), Some("1"));

    // A config the filter rejects: refused, the old one serves.
    let bad = kong_routes(&up, &[("/f", "configure=reject")]);
    std::fs::write(dir.path().join("kong.yaml"), bad).unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("proxy_on_configure returned false"),
        "{}",
        r.text()
    );
    assert_eq!(gw.get("/f").header("x-v"), Some("1"));

    // A reload that changes the filter's config.
    let changed = kong_routes(&up, &[("/f", "resp-header=x-v:2")]);
    std::fs::write(dir.path().join("kong.yaml"), changed).unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.get("/f").header("x-v"), Some("2"));
    let version = r.json()["version"].as_u64().unwrap();

    // Same config files, another module (an extra custom section): the reload compiles.
    let mut bytes = std::fs::read(testkit()).unwrap();
    bytes.extend_from_slice(&[0, 2, 1, b'x']);
    std::fs::write(dir.path().join("filters/testkit.wasm"), bytes).unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["version"].as_u64(),
        Some(version + 1),
        "{}",
        r.text()
    );
    assert_eq!(gw.get("/f").header("x-v"), Some("2"));

    // A module that is not Wasm: refused with its path, the old one serves.
    std::fs::write(dir.path().join("filters/testkit.wasm"), b"not wasm").unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("testkit.wasm is not a Wasm module"),
        "{}",
        r.text()
    );
    assert_eq!(gw.get("/f").header("x-v"), Some("2"));
}

#[test]
fn the_filters_path_can_be_set() {
    let up = Upstream::echo();
    let kong = kong_routes(&up, &[("/f", "resp-header=x-elsewhere:1")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong).unwrap();
    let filters = tempfile::tempdir().unwrap();
    std::fs::copy(testkit(), filters.path().join("testkit.wasm")).unwrap();
    let path = filters.path().to_str().unwrap();
    let gw = Running::start(dir.path(), &["--wasm-filters-path", path]);
    assert_eq!(gw.get("/f").header("x-elsewhere"), Some("1"));
}

#[test]
fn shared_data_and_metrics_are_shared_by_every_filter_and_exported() {
    let up = Upstream::echo();
    let kong = kong_routes(
        &up,
        &[
            ("/a", "shared=hits metric=requests"),
            ("/b", "shared=hits metric=requests resp-header=x-b:1"),
        ],
    );
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    for (n, target) in ["/a", "/b", "/a", "/b"].iter().enumerate() {
        let r = gw.get(target);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-shared"), Some((n + 1).to_string().as_str()));
    }
    let m = gw.admin("GET", "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.text()
            .contains("# TYPE pw_testkit_requests counter\npw_testkit_requests 4\n"),
        "{}",
        m.text()
    );
}

#[test]
fn a_filter_pauses_the_request_for_an_http_call_and_resumes_it() {
    let up = Upstream::echo();
    let other = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://{up}
  routes:
  - name: call
    paths: [/call]
    filter_chains:
    - filters:
      - {{name: testkit, config: "req-header=x-before:1"}}
      - {{name: testkit, config: "call={other}/status/201"}}
      - {{name: testkit, config: "req-header=x-after:1"}}
  - name: dead
    paths: [/dead]
    filter_chains:
    - filters:
      - {{name: testkit, config: "call=127.0.0.1:{dead}/x"}}
"#,
        up = up.addr(),
        other = other.addr(),
        dead = common::dead_port()
    );
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    let r = gw.get("/call");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(other.last().target, "/status/201");
    let seen = up.last();
    assert_eq!(
        seen.headers.get("x-call-status").map(String::as_str),
        Some("201")
    );
    assert!(
        seen.headers["x-call-body"].contains("/status/201"),
        "{:?}",
        seen.headers
    );
    // The filter before the pause ran, and so did the one after it, once resumed.
    assert_eq!(seen.headers.get("x-before").map(String::as_str), Some("1"));
    assert_eq!(seen.headers.get("x-after").map(String::as_str), Some("1"));
    // A call that fails reaches the filter as a failed answer (no status), and it goes on.
    let r = gw.get("/dead");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.last().headers.get("x-call-status").map(String::as_str),
        Some("")
    );
}

#[test]
fn a_filter_timer_ticks_on_its_worker_and_makes_http_calls() {
    let up = Upstream::echo();
    let other = Upstream::echo();
    let config = format!("tick=20 tick-call={}/from-tick", other.addr());
    let kong = kong_routes(&up, &[("/tick", &config)]);
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    // The first request makes the worker's root context, which starts its timer.
    assert_eq!(gw.get("/tick").status, 200);
    std::thread::sleep(Duration::from_millis(400));
    let r = gw.get("/tick");
    let ticks: u64 = r.header("x-ticks").unwrap_or("0").parse().unwrap_or(0);
    assert!(
        (5..=40).contains(&ticks),
        "{ticks} ticks in 400 ms at 20 ms"
    );
    // Each tick's call was made and its answer went back to the root context.
    let answers: u64 = r
        .header("x-tick-answers")
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(answers >= 3, "{answers} answers for {ticks} ticks");
    assert_eq!(other.last().target, "/from-tick");
}

#[test]
fn a_megabyte_streams_through_a_chain_that_does_not_ask_for_bodies() {
    let up = Upstream::echo();
    let kong = kong_routes(&up, &[("/big", "req-header=x-big:1 resp-header=x-big:1")]);
    let dir = dir_with(&kong);
    let gw = Running::start(dir.path(), &[]);
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let r = gw.send("POST", "/big", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-big"), Some("1"));
    let seen = up.last();
    assert_eq!(seen.headers.get("x-big").map(String::as_str), Some("1"));
    assert!(
        seen.body == body,
        "the upstream got {} bytes",
        seen.body.len()
    );
}

/// The watcher reloads when a module changes, even with the config files untouched.
#[test]
fn the_watcher_reloads_a_changed_module() {
    let up = Upstream::echo();
    let kong = kong_routes(&up, &[("/w", "resp-header=x-w:1")]);
    let gw = common::TestGateway::start_watched_in(dir_with(&kong), None);
    assert_eq!(gw.get("/w").header("x-w"), Some("1"));
    let version = gw.gateway.snapshot().version;
    let mut bytes = std::fs::read(testkit()).unwrap();
    bytes.extend_from_slice(&[0, 2, 1, b'w']);
    std::fs::write(gw.path().join("filters/testkit.wasm"), bytes).unwrap();
    let t = Instant::now();
    while gw.gateway.snapshot().version == version && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gw.gateway.snapshot().version, version + 1, "no reload");
    assert_eq!(gw.get("/w").header("x-w"), Some("1"));
}

/// With a `config_schema` beside the module, a JSON config is checked at load and reaches
/// the filter serialised as Kong 3.5+ serialises it.
#[test]
fn a_json_config_is_checked_against_the_config_schema_and_passed_as_json() {
    let up = Upstream::echo();
    let kong = |config: &str| {
        format!(
            "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{}\n  routes:\n  - name: r\n    paths: [/j]\n    filter_chains:\n    - filters:\n      - name: testkit\n        config: {config}\n",
            up.addr()
        )
    };
    let dir = dir_with(&kong("{minute: 3, policy: local}"));
    let schema = r#"{"config_schema": {"type": "object",
        "properties": {"minute": {"type": "integer", "minimum": 1}, "policy": {"type": "string", "enum": ["local", "redis"]}},
        "required": ["minute"], "additionalProperties": false}}"#;
    std::fs::write(dir.path().join("filters/testkit.meta.json"), schema).unwrap();
    let gw = Running::start(dir.path(), &[]);
    let r = gw.get("/j");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-config"),
        Some(r#"{"minute":3,"policy":"local"}"#)
    );

    std::fs::write(
        dir.path().join("kong.yaml"),
        kong("{minute: 0, policy: x, extra: 1}"),
    )
    .unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("kong.yaml:10:9: services[0].routes[0].filter_chains[0].filters[0]: filter 'testkit': config does not match the config_schema of ")
            && out.contains("$.minute: must be at least 1; $.policy: must be one of [\"local\",\"redis\"]; $.extra: unknown field"),
        "{out}"
    );
}
