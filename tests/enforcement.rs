//! Nothing configured is silently skipped. A plugin, option or filter chain that switchyard
//! does not enforce closes the routes it applies to (503 with a JSON body naming it and the
//! route, never the upstream); a plugin that only observes passes traffic with a warning;
//! oauth2 is refused at load; and no secret is ever printed. Through the real binary.

mod common;

use serde_json::{Value, json};

use common::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// `switchyard <args> --config-dir DIR`: (exit code, stdout, stderr).
fn switchyard(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .arg("--config-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `target` is closed: 503, JSON naming `route` and each of `unenforced` (in
/// that order), and the upstream not called.
fn assert_closed(gw: &Running, up: &Upstream, target: &str, route: &str, unenforced: &[&str]) {
    let before = up.count();
    let r = gw.get(target);
    assert_eq!(r.status, 503, "{target}: {}", r.text());
    assert_eq!(up.count(), before, "{target} reached the upstream");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(body["route"], route, "{body}");
    let got: Vec<&str> = body["unenforced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(got.len(), unenforced.len(), "{target}: {got:?}");
    for (g, want) in got.iter().zip(unenforced) {
        assert!(
            g.starts_with(want),
            "{target}: `{g}` should start with `{want}`"
        );
    }
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "route {route} is closed: it carries {}",
            unenforced[0]
        )),
        "{message}"
    );
    assert_eq!(
        body["request_id"],
        r.header("x-switchyard-request-id").unwrap()
    );
}

fn assert_open(gw: &Running, up: &Upstream, target: &str) {
    let before = up.count();
    let r = gw.get(target);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    assert_eq!(
        up.count(),
        before + 1,
        "{target} did not reach the upstream"
    );
}

#[test]
fn unserved_plugins_close_their_routes_and_observers_pass_with_a_warning() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: up
  url: http://{u}
  routes:
  - {{name: limited, paths: [/rl], plugins: [{{name: grpc-gateway}}]}}
  - {{name: cached, paths: [/cache], plugins: [{{name: session}}]}}
  - {{name: sized, paths: [/size], plugins: [{{name: grpc-gateway}}]}}
  - {{name: resp, paths: [/resp], plugins: [{{name: aws-lambda, config: {{function_name: fn1, aws_region: us-east-1}}}}]}}
  - {{name: gweb, paths: [/gweb], plugins: [{{name: grpc-web}}]}}
  - {{name: corr, paths: [/corr], plugins: [{{name: session}}]}}
  - {{name: observed, paths: [/prom], plugins: [{{name: prometheus}}, {{name: http-log, config: {{http_endpoint: "http://127.0.0.1:9/log"}}}}]}}
  - {{name: off, paths: [/off], plugins: [{{name: key-auth, enabled: false}}]}}
  - {{name: teapot, paths: [/tea], plugins: [{{name: request-termination, config: {{status_code: 418, message: tea}}}}]}}
  - {{name: plain, paths: [/plain]}}
- name: ldap-everywhere
  url: http://{u}
  plugins: [{{name: ldap-auth, config: {{ldap_host: ldap.test, base_dn: "dc=test", attribute: uid}}}}]
  routes:
  - {{name: c1, paths: [/c1]}}
  - {{name: c2, paths: [/c2]}}
consumers: [{{username: alice, keyauth_credentials: [{{key: alice-secret}}]}}]
"#,
        u = up.addr()
    );
    let dir = dir_with(&[("kong.yaml", &kong)]);
    let gw = Running::start(dir.path(), &[]);

    for (target, route, plugin) in [
        (
            "/rl/",
            "limited",
            "plugin 'grpc-gateway' (kong.yaml:6 services[0].routes[0].plugins[0])",
        ),
        ("/cache/", "cached", "plugin 'session' (kong.yaml:7"),
        ("/size", "sized", "plugin 'grpc-gateway'"),
        ("/resp", "resp", "plugin 'aws-lambda'"),
        ("/gweb", "gweb", "plugin 'grpc-web'"),
        ("/corr", "corr", "plugin 'session'"),
        (
            "/c1",
            "c1",
            "plugin 'ldap-auth' (kong.yaml:18 services[1].plugins[0])",
        ),
        ("/c2", "c2", "plugin 'ldap-auth'"),
    ] {
        assert_closed(&gw, &up, target, route, &[plugin]);
    }
    // Observers, disabled plugins and routes without plugins pass; served plugins run.
    assert_open(&gw, &up, "/prom");
    assert_open(&gw, &up, "/off");
    assert_open(&gw, &up, "/plain");
    let r = gw.get("/tea");
    assert_eq!((r.status, r.json()["message"].clone()), (418, json!("tea")));

    let status = gw.admin("GET", "/status").json();
    let closed: Vec<&str> = status["closed_routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["route"].as_str().unwrap())
        .collect();
    assert_eq!(closed.len(), 8, "{closed:?}");
    assert!(
        closed[0].starts_with("route limited (kong.yaml:6)"),
        "{closed:?}"
    );
    let unserved = status["unserved"].to_string();
    assert!(
        unserved.contains("plugin 'prometheus' (observes only"),
        "{unserved}"
    );
    assert!(
        unserved.contains("plugin 'http-log' (observes only"),
        "{unserved}"
    );
    assert!(gw.logged(&["closed: route limited (kong.yaml:6): answers 503"]));

    // `check` compiles as `run` does: it accepts the file and lists the closed routes apart.
    let (code, out, err) = switchyard(&["check"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("8 closed route(s)"), "{out}");
    assert!(
        err.contains(
            "closed routes (8): they carry plugins or options switchyard does not enforce yet"
        ),
        "{err}"
    );
    assert!(
        err.contains("  route c2 (kong.yaml:21): answers 503; not enforced yet: plugin 'ldap-auth' (kong.yaml:18 services[1].plugins[0])"),
        "{err}"
    );
    assert!(
        err.contains("warning: services[0].routes[6].plugins[0]: plugin 'prometheus'"),
        "{err}"
    );
}

#[test]
fn the_most_specific_enabled_instance_decides_and_a_disabled_one_hides_nothing() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{u}
  routes:
  - {{name: limited, paths: [/limited], plugins: [{{name: grpc-gateway, enabled: false}}]}}
  - {{name: terminated, paths: [/terminated], plugins: [{{name: request-termination, config: {{status_code: 410}}}}]}}
plugins:
- {{name: grpc-gateway}}
- {{name: request-termination, enabled: false}}
"#,
        u = up.addr()
    );
    let dir = dir_with(&[("kong.yaml", &kong)]);
    let gw = Running::start(dir.path(), &[]);
    // Kong skips disabled instances: the global rate limit applies to both routes.
    assert_closed(
        &gw,
        &up,
        "/limited",
        "limited",
        &["plugin 'grpc-gateway' (kong.yaml:9 plugins[0])"],
    );
    assert_closed(
        &gw,
        &up,
        "/terminated",
        "terminated",
        &["plugin 'grpc-gateway'"],
    );
}

#[test]
fn consumer_scoped_plugins_close_the_routes_that_can_identify_their_consumer() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{u}
  routes:
  - {{name: authed, paths: [/authed], plugins: [{{name: key-auth}}]}}
  - {{name: anonymous, paths: [/anonymous]}}
consumer_groups:
- name: gold
  plugins: [{{name: request-termination, config: {{status_code: 402}}}}]
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  plugins: [{{name: aws-lambda, config: {{function_name: fn1, aws_region: us-east-1}}}}]
plugins:
- {{name: grpc-gateway, consumer: alice, route: anonymous}}
"#,
        u = up.addr()
    );
    let dir = dir_with(&[("kong.yaml", &kong)]);
    let gw = Running::start(dir.path(), &[]);
    assert_closed(
        &gw,
        &up,
        "/authed",
        "authed",
        &[
            "plugin 'aws-lambda' (kong.yaml:14 consumers[0].plugins[0]) for consumer 'alice', who can be identified on this route",
        ],
    );
    // The group's request-termination is served: it is resolved for the group's members
    // once they authenticate, and closes nothing. No consumer can be identified where
    // nothing authenticates: nothing of theirs applies.
    assert_open(&gw, &up, "/anonymous");
}

/// Without the `wasm` feature filter chains cannot run; with it they run (tests/wasm.rs).
#[cfg(not(feature = "wasm"))]
#[test]
fn filter_chains_close_the_routes_they_would_filter() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: filtered
  url: http://{u}
  filter_chains: [{{name: chain, filters: [{{name: add-header, config: "x"}}]}}]
  routes: [{{name: f1, paths: [/f1]}}]
- name: plain
  url: http://{u}
  routes:
  - {{name: p1, paths: [/p1]}}
  - {{name: p2, paths: [/p2]}}
filter_chains:
- {{route: p2, filters: [{{name: response-transformer}}]}}
"#,
        u = up.addr()
    );
    let dir = dir_with(&[("kong.yaml", &kong)]);
    let gw = Running::start(dir.path(), &[]);
    assert_closed(
        &gw,
        &up,
        "/f1",
        "f1",
        &[
            "filter chain 'chain' with filters [add-header] (kong.yaml:5 services[0].filter_chains[0])",
        ],
    );
    assert_open(&gw, &up, "/p1");
    assert_closed(
        &gw,
        &up,
        "/p2",
        "p2",
        &["filter chain with filters [response-transformer] (kong.yaml:13 filter_chains[0])"],
    );
}

#[test]
fn oauth2_is_refused_at_load_with_its_position() {
    let kong = r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes:
  - name: r
    paths: [/]
    plugins:
    - name: oauth2
      config: {enable_password_grant: true}
"#;
    let dir = dir_with(&[("kong.yaml", kong)]);
    let want = "kong.yaml:9:13: services[0].routes[0].plugins[0].name: plugin 'oauth2' needs a database and cannot run in DB-less mode";
    let (code, _, err) = switchyard(&["check"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains(want), "{err}");
    let (code, _, err) = switchyard(&["run", "--listen", "127.0.0.1:0"], dir.path());
    assert_eq!(code, 1, "run must refuse it too");
    assert!(err.contains(want), "{err}");
}

#[test]
fn config_and_the_admin_api_never_print_a_secret() {
    let kong = r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes: [{name: r, paths: [/]}]
plugins:
- name: rate-limiting
  config: {minute: 5, policy: redis, redis: {host: 127.0.0.1, password: redis-pass-1}}
- name: http-log
  config: {http_endpoint: "http://127.0.0.1:9", headers: {Authorization: "Bearer log-token-1"}}
consumers:
- username: alice
  keyauth_credentials: [{id: 0c9e8d7f-1b2a-4c3d-8e5f-6a7b8c9d0e11, key: alice-key-1}]
  basicauth_credentials: [{username: alice, password: alice-pass-1}]
  jwt_secrets: [{key: issuer-a, secret: jwt-secret-1}]
  hmacauth_credentials: [{username: alice-hmac, secret: hmac-secret-1}]
  acls: [{group: admins}]
"#;
    let secrets = [
        "redis-pass-1",
        "log-token-1",
        "alice-key-1",
        "alice-pass-1",
        "jwt-secret-1",
        "hmac-secret-1",
    ];
    let dir = dir_with(&[("kong.yaml", kong)]);
    let (code, out, err) = switchyard(&["config"], dir.path());
    assert_eq!(code, 0, "{err}");
    let gw = Running::start(dir.path(), &[]);
    let admin = gw.admin("GET", "/config").text();
    let status = gw.admin("GET", "/status").text();
    let check = switchyard(&["check"], dir.path());
    for text in [&out, &err, &admin, &status, &check.1, &check.2] {
        for s in secrets {
            assert!(!text.contains(s), "`{s}` printed in:\n{text}");
        }
    }
    let config: Value = serde_json::from_str(&out).unwrap();
    let alice = &config["kong"]["consumers"][0];
    let key = &alice["keyauth_credentials"][0];
    assert_eq!(key["key"], "<redacted>");
    assert_eq!(key["id"], "0c9e8d7f-1b2a-4c3d-8e5f-6a7b8c9d0e11");
    assert_eq!(alice["basicauth_credentials"][0]["password"], "<redacted>");
    assert_eq!(alice["basicauth_credentials"][0]["username"], "alice");
    assert!(
        alice["basicauth_credentials"][0]["id"].is_string(),
        "{alice}"
    );
    assert_eq!(alice["jwt_secrets"][0]["secret"], "<redacted>");
    assert_eq!(
        alice["jwt_secrets"][0]["key"], "issuer-a",
        "an issuer is no secret"
    );
    assert_eq!(alice["hmacauth_credentials"][0]["secret"], "<redacted>");
    assert_eq!(alice["acls"][0]["group"], "admins");
    let plugins = &config["kong"]["plugins"];
    assert_eq!(plugins[0]["config"]["redis"]["password"], "<redacted>");
    assert_eq!(plugins[0]["config"]["redis"]["host"], "127.0.0.1");
    assert_eq!(
        plugins[1]["config"]["headers"]["Authorization"],
        "<redacted>"
    );
    assert_eq!(serde_json::from_str::<Value>(&admin).unwrap(), config);
}

#[test]
fn ocelot_options_that_are_not_served_close_their_routes_and_aggregates() {
    let up = Upstream::echo();
    let route = |up_path: &str, key: &str, extra: Value| {
        let mut r = json!({
            "UpstreamPathTemplate": up_path,
            "DownstreamPathTemplate": "/svc",
            "DownstreamScheme": "http",
            "DownstreamHostAndPorts": [{"Host": "127.0.0.1", "Port": up.addr().port()}],
            "Key": key,
        });
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    let doc = json!({
        "Routes": [
            route("/qos", "qos", json!({"QoSOptions": {"ExceptionsAllowedBeforeBreaking": 2, "DurationOfBreak": 1000, "TimeoutValue": 500}})),
            route("/handlers", "handlers", json!({"DelegatingHandlers": ["AuditHandler"]})),
            route("/plain", "plain", json!({})),
            // A scheme the user's Ocelot registers in code, which these files do not define.
            route("/coded", "coded", json!({"AuthenticationOptions": {"AuthenticationProviderKey": "UsersKey"}, "RouteClaimsRequirement": {"role": "admin"}})),
            {
                "UpstreamPathTemplate": "/discovered",
                "DownstreamPathTemplate": "/svc",
                "DownstreamScheme": "http",
                "ServiceName": "orders",
            },
        ],
        "Aggregates": [
            {"UpstreamPathTemplate": "/both", "RouteKeys": ["plain", "qos"]},
            {"UpstreamPathTemplate": "/plains", "RouteKeys": ["plain", "plain"]},
        ],
        "GlobalConfiguration": {"ServiceDiscoveryProvider": {"Type": "Consul", "Host": "127.0.0.1", "Port": 8500}},
    });
    let dir = dir_with(&[("ocelot.json", &doc.to_string())]);
    let gw = Running::start(dir.path(), &[]);
    assert_closed(
        &gw,
        &up,
        "/qos",
        "/qos",
        &["QoSOptions (circuit breaker and QoS timeout) (ocelot.json:1 Routes[0].QoSOptions)"],
    );
    assert_closed(&gw, &up, "/handlers", "/handlers", &["DelegatingHandlers"]);
    assert_closed(
        &gw,
        &up,
        "/discovered",
        "/discovered",
        &["ServiceName (service discovery)"],
    );
    assert_open(&gw, &up, "/plain");
    assert_closed(
        &gw,
        &up,
        "/coded",
        "/coded",
        &[
            "AuthenticationOptions provider `UsersKey` (a scheme Ocelot registers in code: define it under GlobalConfiguration.AuthenticationProviders)",
        ],
    );
    assert_closed(&gw, &up, "/both", "/both", &["part `qos`: QoSOptions"]);
    let r = gw.get("/plains");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 3, "/plain, then both parts of /plains");
}

#[test]
fn a_reload_that_adds_an_unserved_plugin_closes_the_route() {
    let up = Upstream::echo();
    let base = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes:\n  - name: r\n    paths: [/r]\n",
        up.addr()
    );
    let dir = dir_with(&[("kong.yaml", &base)]);
    let gw = Running::start(dir.path(), &[]);
    assert_open(&gw, &up, "/r");
    std::fs::write(
        dir.path().join("kong.yaml"),
        format!("{base}    plugins: [{{name: grpc-gateway}}]\n"),
    )
    .unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_closed(&gw, &up, "/r", "r", &["plugin 'grpc-gateway'"]);
    assert_eq!(
        gw.admin("GET", "/status").json()["closed_routes"][0]["route"],
        "route r (kong.yaml:6)"
    );
}
