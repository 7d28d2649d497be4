//! Table-driven checks of Kong route precedence and of upstream path joining (Kong's
//! `router_path_handling_tests.lua` fixture rows), through the real router and proxy.

mod common;

use common::*;

/// (routes as YAML flow mappings, request method, host, path, extra headers, winning route)
type Row = (
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

const PRECEDENCE: &[Row] = &[
    // Longest plain prefix wins.
    (
        &[
            "{name: a, paths: [/my-route]}",
            "{name: b, paths: [/my-route/hello]}",
        ],
        "GET",
        "x.test",
        "/my-route/hello/x",
        &[],
        "b",
    ),
    // A regex beats a plain prefix, even an exact one.
    (
        &[
            "{name: a, paths: [/route/fixture]}",
            "{name: b, paths: ['~/route/(fixture)']}",
        ],
        "GET",
        "x.test",
        "/route/fixture",
        &[],
        "b",
    ),
    // Higher regex_priority wins among regexes.
    (
        &[
            "{name: a, paths: ['~/s/\\w+']}",
            "{name: b, paths: ['~/s/\\d+'], regex_priority: 5}",
        ],
        "GET",
        "x.test",
        "/s/1",
        &[],
        "b",
    ),
    // regex_priority is ignored for plain paths.
    (
        &[
            "{name: a, paths: [/], regex_priority: 9}",
            "{name: b, paths: [/v1]}",
        ],
        "GET",
        "x.test",
        "/v1",
        &[],
        "b",
    ),
    // More fields win: host + path over path.
    (
        &[
            "{name: a, paths: [/x]}",
            "{name: b, paths: [/x], hosts: [x.test]}",
        ],
        "GET",
        "x.test",
        "/x",
        &[],
        "b",
    ),
    // A plain host beats a wildcard host.
    (
        &["{name: a, hosts: ['*.test']}", "{name: b, hosts: [x.test]}"],
        "GET",
        "x.test",
        "/",
        &[],
        "b",
    ),
    // traditional_compatible: a path route beats a wildcard-host-only route.
    (
        &[
            "{name: a, hosts: ['*.example.com']}",
            "{name: b, paths: [/api]}",
        ],
        "GET",
        "a.example.com",
        "/api",
        &[],
        "b",
    ),
    // More headers beat a regex path with fewer headers.
    (
        &[
            "{name: a, paths: ['~/r/\\d+'], headers: {x-a: ['1']}}",
            "{name: b, paths: [/r], headers: {x-a: ['1'], x-b: ['2']}}",
        ],
        "GET",
        "x.test",
        "/r/1",
        &[("x-a", "1"), ("x-b", "2")],
        "b",
    ),
    // A methods-only route is the fallback.
    (
        &[
            "{name: a, methods: [GET]}",
            "{name: b, paths: [/p], methods: [GET]}",
        ],
        "GET",
        "x.test",
        "/p",
        &[],
        "b",
    ),
    (
        &[
            "{name: a, methods: [GET]}",
            "{name: b, paths: [/p], methods: [POST]}",
        ],
        "GET",
        "x.test",
        "/p",
        &[],
        "a",
    ),
    // Equal rank: the route declared first.
    (
        &["{name: a, paths: [/same]}", "{name: b, paths: [/same]}"],
        "GET",
        "x.test",
        "/same",
        &[],
        "a",
    ),
    // A catch-all loses to everything.
    (
        &["{name: a, paths: [/]}", "{name: b, methods: [GET]}"],
        "GET",
        "x.test",
        "/z",
        &[],
        "b",
    ),
];

#[test]
fn kong_precedence_table() {
    let up = Upstream::echo();
    for (i, (routes, method, host, path, header, want)) in PRECEDENCE.iter().enumerate() {
        // Each route gets its own service whose path is the route's name, so the winner shows
        // in the upstream path.
        let mut yaml = String::from("_format_version: '3.0'\nservices:\n");
        for r in routes.iter() {
            let name = r.split("name: ").nth(1).unwrap().split(',').next().unwrap();
            let close = r.rfind('}').unwrap();
            yaml.push_str(&format!("- name: svc-{name}\n  url: http://{}/{name}\n  routes: [{}, strip_path: false}}]\n", up.addr(), &r[..close]));
        }
        let gw = TestGateway::kong(&yaml);
        let mut headers = vec![("Host", *host)];
        headers.extend_from_slice(header);
        let r = gw.send(method, path, &headers, b"");
        assert_eq!(r.status, 200, "row {i}: {}", r.text());
        let got = up.last().target;
        assert!(
            got.starts_with(&format!("/{want}/")) || got == format!("/{want}"),
            "row {i}: expected route {want}, upstream saw {got}"
        );
    }
}

/// (service path, route path, strip_path, request path, upstream path): rows of Kong's
/// `spec/fixtures/router_path_handling_tests.lua` for path_handling v0.
const JOIN: &[(&str, &str, bool, &str, &str)] = &[
    ("/", "/", false, "/", "/"),
    ("/", "/", true, "/route", "/route"),
    ("/", "/route", false, "/route", "/route"),
    ("/", "/route", false, "/routereq", "/routereq"),
    ("/", "/route", true, "/route", "/"),
    ("/", "/route", true, "/route/", "/"),
    ("/", "/route", true, "/routereq", "/req"),
    ("/srv", "/rou", false, "/roureq", "/srv/roureq"),
    ("/srv", "/rou", true, "/roureq", "/srv/req"),
    ("/service", "/route", true, "/route", "/service"),
    ("/service", "/route", true, "/route/", "/service/"),
    ("/service", "/route", true, "/routereq", "/service/req"),
    ("/service", "/route/", true, "/route/", "/service/"),
    ("/service", "/route/", true, "/route/req", "/service/req"),
    ("/service/", "/", true, "/route/", "/service/route/"),
    ("/service/", "/route", true, "/route", "/service"),
    ("/service/", "/route", true, "/route/", "/service/"),
    ("/service/", "/route", true, "/routereq", "/service/req"),
    (
        "/service/",
        "/route/",
        false,
        "/route/req",
        "/service/route/req",
    ),
];

#[test]
fn kong_path_joining_table() {
    let up = Upstream::echo();
    for (i, (svc, route, strip, req, want)) in JOIN.iter().enumerate() {
        let gw = TestGateway::kong(&format!(
            "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}{svc}\n  routes: [{{name: r, paths: ['{route}'], strip_path: {strip}}}]\n",
            up.addr()
        ));
        let r = gw.get(req);
        assert_eq!(r.status, 200, "row {i}");
        assert_eq!(
            up.last().target,
            *want,
            "row {i}: service {svc}, route {route}, strip {strip}, request {req}"
        );
    }
}
