//! request-transformer through the real server stack: what the upstream receives (method,
//! target, headers, body and its length) after each kind of change, as Kong's
//! `spec/03-plugins/36-request-transformer/02-access_spec.lua` expects it.

mod common;

use common::*;
use serde_json::json;

/// A service on `up` with one route per `(name, paths yaml, plugin config yaml)`.
fn kong(up: &Upstream, routes: &[(&str, &str, &str)]) -> String {
    let mut y = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n",
        up.addr()
    );
    for (name, paths, config) in routes {
        y.push_str(&format!(
            "  - name: {name}\n    paths: {paths}\n    strip_path: false\n    plugins:\n    - name: request-transformer\n      config: {config}\n"
        ));
    }
    y
}

fn body_json(seen: &Seen) -> serde_json::Value {
    serde_json::from_slice(&seen.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&seen.body)))
}

fn query_of(target: &str) -> Vec<(String, String)> {
    let q = target.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

#[test]
fn a_route_with_the_plugin_is_served() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(&up, &[("r", "[/]", "{}")]));
    let r = gw.get("/any?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/any?x=1");
}

#[test]
fn headers_remove_rename_replace_add_append_in_kong_order() {
    let up = Upstream::echo();
    let cfg = "{remove: {headers: [x-to-remove, X-Other]}, rename: {headers: ['x-old:x-new', 'x-a:x-b']}, \
               replace: {headers: ['x-tier:gold', 'x-b:replaced', 'x-absent:never']}, \
               add: {headers: ['x-added:a1', 'x-present:from-plugin', 'x-a:added', 'h2:value:2']}, \
               append: {headers: ['x-trace:t1', 'x-multi:m2', 'x-multi:m3']}}";
    let gw = TestGateway::kong(&kong(&up, &[("r", "[/]", cfg)]));
    let r = gw.send(
        "GET",
        "/h",
        &[
            ("X-To-Remove", "secret"),
            ("x-other", "2"),
            ("X-Kept", "1"),
            ("X-Old", "v1"),
            ("X-A", "orig"),
            ("X-Tier", "bronze"),
            ("X-Present", "from-client"),
            ("X-Multi", "m1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let h = |n: &str| seen.headers.get(n).map(String::as_str);
    assert_eq!(h("x-to-remove"), None);
    assert_eq!(h("x-other"), None);
    assert_eq!(h("x-kept"), Some("1"));
    assert_eq!(h("x-old"), None);
    assert_eq!(h("x-new"), Some("v1"));
    // rename before replace before add.
    assert_eq!(h("x-b"), Some("replaced"));
    assert_eq!(h("x-a"), Some("added"));
    assert_eq!(h("x-tier"), Some("gold"));
    assert_eq!(h("x-absent"), None);
    assert_eq!(h("x-added"), Some("a1"));
    assert_eq!(h("x-present"), Some("from-client"));
    assert_eq!(h("h2"), Some("value:2"));
    assert_eq!(h("x-trace"), Some("t1"));
    assert_eq!(h("x-multi"), Some("m1, m2, m3"));
    // The gateway's own headers are still the gateway's.
    assert_eq!(h("x-forwarded-host"), Some("example.com"));
}

#[test]
fn replacing_host_changes_the_host_the_upstream_gets() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "replace",
                "[/replace]",
                "{replace: {headers: ['host:backend.internal']}}",
            ),
            ("add", "[/add]", "{add: {headers: ['host:never']}}"),
        ],
    ));
    let r = gw.send("GET", "/replace", &[("Host", "client.test")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["host"], "backend.internal");
    assert_eq!(seen.headers["x-forwarded-host"], "client.test");
    // add never touches Host: the service's goes, as without the plugin.
    gw.send("GET", "/add", &[("Host", "client.test")], b"");
    assert_eq!(up.last().headers["host"], up.addr().to_string());
}

#[test]
fn query_remove_rename_replace_add_append() {
    let up = Upstream::echo();
    let cfg = "{remove: {querystring: [drop]}, rename: {querystring: ['old:new']}, \
               replace: {querystring: ['r:1', 'absent:x']}, \
               add: {querystring: ['q1:added', 'keep:plugin', 'uri_param2[i][1]:a b']}, \
               append: {querystring: ['p1:a2', 'p2:b1']}}";
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            ("q", "[/q]", cfg),
            ("plain", "[/plain]", "{add: {headers: ['x:1']}}"),
        ],
    ));
    let r = gw.get("/q?zz=1&drop=1&keep=client&old=o&r=0&p1=a1");
    assert_eq!(r.status, 200, "{}", r.text());
    // Kong's set_query: sorted, escaped as nginx escapes.
    assert_eq!(
        up.last().target,
        "/q?keep=client&new=o&p1=a1&p1=a2&p2=b1&q1=added&r=1&uri_param2%5Bi%5D%5B1%5D=a%20b&zz=1"
    );
    // Without query steps the query goes byte for byte.
    gw.get("/plain?expected=$&+,/:;?@");
    assert_eq!(up.last().target, "/plain?expected=$&+,/:;?@");
}

#[test]
fn json_body_every_step_with_its_length() {
    let up = Upstream::echo();
    let cfg = "{add: {body: ['added:yes', 'count:from-plugin']}, remove: {body: [secret]}, \
               replace: {body: ['mode:live', 'absent:never']}, rename: {body: ['old:new']}, \
               append: {body: ['tags:b', 'list:x']}}";
    let gw = TestGateway::kong(&kong(&up, &[("j", "[/]", cfg)]));
    let body = json!({"count": 7, "secret": "s", "mode": "test", "nested": {"a": 1}, "old": "o",
        "tags": ["a"], "emptyarray": []});
    let r = gw.send(
        "POST",
        "/j",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        body_json(&seen),
        json!({"count": 7, "mode": "live", "nested": {"a": 1}, "new": "o", "tags": ["a", "b"],
            "emptyarray": [], "added": "yes", "list": ["x"]})
    );
    assert_eq!(seen.headers["content-length"], seen.body.len().to_string());
    assert!(String::from_utf8_lossy(&seen.body).contains("\"emptyarray\":[]"));
    // Malformed JSON passes as it came.
    gw.send(
        "POST",
        "/j",
        &[("Content-Type", "application/json")],
        b"malformed json body",
    );
    assert_eq!(up.last().body, b"malformed json body");
    // An empty JSON body gets what add and append put in.
    gw.send("POST", "/j", &[("Content-Type", "application/json")], b"");
    assert_eq!(
        body_json(&up.last()),
        json!({"added": "yes", "count": "from-plugin", "tags": ["b"], "list": ["x"]})
    );
}

#[test]
fn form_body_every_step_with_its_length() {
    let up = Upstream::echo();
    let cfg = "{add: {body: ['added:1']}, remove: {body: [pw]}, rename: {body: ['old:new']}, \
               replace: {body: ['mode:live']}, append: {body: ['p1:v1', 'p2:value:1']}}";
    let gw = TestGateway::kong(&kong(&up, &[("f", "[/]", cfg)]));
    let r = gw.send(
        "POST",
        "/f",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"user=u1&pw=hunter2&old=o&mode=test&p1=v0",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let body = String::from_utf8(seen.body.clone()).unwrap();
    assert_eq!(seen.headers["content-length"], body.len().to_string());
    let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("user"), ["u1"]);
    assert!(get("pw").is_empty());
    assert!(get("old").is_empty());
    assert_eq!(get("new"), ["o"]);
    assert_eq!(get("mode"), ["live"]);
    assert_eq!(get("added"), ["1"]);
    assert_eq!(get("p1"), ["v0", "v1"]);
    assert_eq!(get("p2"), ["value:1"]);
}

#[test]
fn multipart_body_every_step_with_its_length() {
    let up = Upstream::echo();
    let cfg = "{add: {body: ['p1:v1', 'hello:never']}, remove: {body: [toremove]}, \
               rename: {body: ['old:renamed']}, replace: {body: ['mode:live']}, \
               append: {body: ['hello:ignored']}}";
    let gw = TestGateway::kong(&kong(&up, &[("m", "[/]", cfg)]));
    let part = |n: &str, v: &str| {
        format!("--XX\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n")
    };
    let body = [
        part("hello", "world"),
        part("toremove", "yes"),
        part("old", "o"),
        part("mode", "test"),
    ]
    .concat()
        + "--XX--\r\n";
    let r = gw.send(
        "POST",
        "/m",
        &[("Content-Type", "multipart/form-data; boundary=XX")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["content-length"], seen.body.len().to_string());
    // lua-multipart writes the parts back in place, new ones last.
    assert_eq!(
        String::from_utf8(seen.body).unwrap(),
        [
            part("hello", "world"),
            part("renamed", "o"),
            part("mode", "live"),
            part("p1", "v1"),
        ]
        .concat()
            + "--XX--\r\n"
    );
}

#[test]
fn http_method_and_a_form_body_moved_to_the_query() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            ("post", "[/post]", "{http_method: POST}"),
            ("get", "[/get]", "{http_method: GET}"),
            (
                "json",
                "[/json]",
                "{http_method: POST, add: {headers: ['Content-Type:application/json'], body: ['body:somecontent']}}",
            ),
        ],
    ));
    gw.get("/post?hello=world&name=marco");
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/post?hello=world&name=marco");
    let r = gw.send(
        "POST",
        "/get?hello=world",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=marco",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/get?hello=world&name=marco");
    // GET to POST with a JSON body made from nothing.
    gw.get("/json");
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(body_json(&seen), json!({"body": "somecontent"}));
}

#[test]
fn replace_uri_and_values_from_templates() {
    let up = Upstream::echo();
    let regex = r"['~/requests/user1/(?<user1>\w+)/user2/(?<user2>\S+)']";
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "uri",
                r"['~/uri/user1/(?<user1>\w+)/user2/(\S+)']",
                "{replace: {uri: '/requests/user2/$(uri_captures[2])/user1/$(uri_captures.user1)'}}",
            ),
            (
                "index",
                r"['~/user1/(?P<user1>\w+)/user2/(?P<user2>\S+)']",
                "{replace: {uri: '/requests$(uri_captures[0])'}}",
            ),
            (
                "tpl",
                regex,
                "{add: {querystring: ['uri_param1:$(uri_captures.user1)', 'uri_param2:$(headers.host)', \
                 'q2:$(headers[\"x-remove-header\"])'], headers: ['x-test-header:$(query_params.q1)', \
                 'x-was:$(headers[\"x-remove-header\"])']}, \
                 remove: {querystring: [q1], headers: [x-remove-header]}}",
            ),
            (
                "default",
                "[/defaults/]",
                "{add: {querystring: [\"uri_param1:$(uri_captures.user1 or 'default1')\"]}}",
            ),
        ],
    ));
    let r = gw.get("/uri/user1/foo/user2/bar?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/requests/user2/bar/user1/foo?q=1");
    gw.get("/user1/foo/user2/bar");
    assert_eq!(up.last().target, "/requests/user1/foo/user2/bar");
    let r = gw.send(
        "GET",
        "/requests/user1/foo/user2/bar?q1=20",
        &[("Host", "test15.test"), ("x-remove-header", "its a test")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        query_of(&seen.target),
        [
            ("q2".to_string(), "its a test".to_string()),
            ("uri_param1".into(), "foo".into()),
            ("uri_param2".into(), "test15.test".into()),
        ]
    );
    assert_eq!(seen.headers["x-test-header"], "20");
    // A header step's template loads the headers as they were before that step, and every
    // later template reads that same table (Kong's lazily loaded `template_env`).
    assert_eq!(seen.headers["x-was"], "its a test");
    assert!(!seen.headers.contains_key("x-remove-header"));
    gw.get("/defaults/?q1=20");
    assert_eq!(up.last().target, "/defaults/?q1=20&uri_param1=default1");
}

#[test]
fn template_errors_answer_500_and_what_is_not_evaluated_closes_the_route() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "arith",
                r"['~/a/(?<user1>\w+)']",
                "{replace: {uri: '/x/$(10 * uri_captures.user1)'}}",
            ),
            ("call", "[/call]", "{add: {querystring: ['q1:$(ERROR())']}}"),
            (
                "shared",
                "[/shared]",
                "{add: {querystring: ['v:$(shared.my_version)']}}",
            ),
        ],
    ));
    for target in ["/a/foo", "/call"] {
        let before = up.count();
        let r = gw.get(target);
        assert_eq!(r.status, 500, "{target}: {}", r.text());
        assert_eq!(r.json()["message"], "An unexpected error occurred");
        assert_eq!(up.count(), before, "{target} reached the upstream");
    }
    // kong.ctx.shared is not switchyard's: the plugin is not built, its route closed.
    let r = gw.get("/shared");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("request-transformer")
    );
}

#[test]
fn consumer_plugins_apply_after_authentication() {
    let up = Upstream::echo();
    let yaml = format!(
        "_format_version: '3.0'
services:
- name: s
  url: http://{}
  routes:
  - name: r
    paths: [/]
    plugins: [{{name: key-auth}}]
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  plugins: [{{name: request-transformer, config: {{add: {{headers: ['x-who:alice']}}, remove: {{headers: [apikey]}}}}}}]
- username: bob
  keyauth_credentials: [{{key: bob-key}}]
plugins:
- name: request-transformer
  config: {{add: {{headers: ['x-who:everyone']}}}}
",
        up.addr()
    );
    let gw = TestGateway::kong(&yaml);
    gw.send("GET", "/x", &[("apikey", "alice-key")], b"");
    let seen = up.last();
    assert_eq!(seen.headers["x-who"], "alice");
    assert!(!seen.headers.contains_key("apikey"));
    gw.send("GET", "/x", &[("apikey", "bob-key")], b"");
    assert_eq!(up.last().headers["x-who"], "everyone");
}
