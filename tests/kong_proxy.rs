//! Kong routing and proxying through the real server stack, with real upstreams.

mod common;

use std::io::Write;
use std::net::TcpListener;

use common::*;

fn svc(up: &Upstream, path: &str, routes: &str) -> String {
    format!(
        "_format_version: '3.0'\nservices:\n- name: s1\n  url: http://{}{path}\n  routes:\n{routes}",
        up.addr()
    )
}

#[test]
fn longest_prefix_regex_and_404_body() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&format!(
        "_format_version: '3.0'
services:
- name: a
  url: http://{0}/a
  routes: [{{name: short, paths: [/api]}}]
- name: b
  url: http://{0}/b
  routes: [{{name: long, paths: [/api/v1]}}]
- name: c
  url: http://{0}/c
  routes: [{{name: re, paths: ['~/api/v\\d+/users$'], strip_path: false}}]
",
        up.addr()
    ));
    assert_eq!(gw.get("/api/x").json()["path"], "/a/x");
    assert_eq!(gw.get("/api/v1/x").json()["path"], "/b/x");
    assert_eq!(gw.get("/api/v1/users").json()["path"], "/c/api/v1/users");
    let r = gw.get("/nope");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.json()["message"], "no Route matched with those values");
    assert_eq!(r.json()["request_id"].as_str().map(str::len), Some(32));
    assert!(r.header("server").unwrap().starts_with("switchyard/"));
}

#[test]
fn forwarded_headers_via_and_hop_by_hop() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(&up, "/svc", "  - {name: r, paths: [/foo]}\n"));
    let r = gw.send(
        "GET",
        "/foo/bar?q=1",
        &[
            ("Host", "Example.COM:9999"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Via", "1.0 other"),
            ("Connection", "close, X-Secret"),
            ("X-Secret", "s"),
            ("Proxy", "evil"),
            ("Keep-Alive", "timeout=5"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("via")
            .unwrap()
            .ends_with(concat!("1.1 switchyard/", env!("CARGO_PKG_VERSION")))
    );
    assert!(r.header("x-switchyard-upstream-latency").is_some());
    assert!(r.header("x-switchyard-proxy-latency").is_some());
    assert_eq!(r.header("x-switchyard-request-id").map(str::len), Some(32));
    let seen = up.last();
    assert_eq!(seen.target, "/svc/bar?q=1");
    let h = &seen.headers;
    assert_eq!(h["host"], up.addr().to_string());
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.com");
    assert_eq!(h["x-forwarded-port"], gw.addr.port().to_string());
    assert_eq!(h["x-forwarded-path"], "/foo/bar");
    assert_eq!(h["x-forwarded-prefix"], "/foo");
    assert_eq!(
        h["via"],
        concat!("1.0 other, 1.1 switchyard/", env!("CARGO_PKG_VERSION"))
    );
    for gone in ["x-secret", "proxy", "keep-alive"] {
        assert!(!h.contains_key(gone), "{gone} must not reach the upstream");
    }
}

#[test]
fn the_gateways_forwarding_headers_replace_what_a_client_sent() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(
        &up,
        "",
        "  - {name: r, paths: [/p], strip_path: false}\n",
    ));
    let ours = |h: &std::collections::HashMap<String, String>| {
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-forwarded-port"], gw.addr.port().to_string());
        assert_eq!(h["x-forwarded-path"], "/p/x");
        let id = &h["x-switchyard-request-id"];
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        // No prefix was stripped, so none is announced.
        assert!(!h.contains_key("x-forwarded-prefix"));
    };

    // A client that sends none of them: each is added once.
    assert_eq!(gw.get("/p/x").status, 200);
    let h = up.last().headers;
    ours(&h);
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        h["via"],
        concat!("1.1 switchyard/", env!("CARGO_PKG_VERSION"))
    );

    // A client that sends its own: the gateway's replace them (the joined value of a
    // repeated header would show a comma), and the chains it extends are extended.
    let r = gw.send(
        "GET",
        "/p/x",
        &[
            ("X-Real-IP", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Port", "1"),
            ("X-Forwarded-Path", "/evil"),
            ("X-Forwarded-Prefix", "/evil"),
            ("X-Switchyard-Request-Id", "client"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Via", "1.0 other"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let h = up.last().headers;
    ours(&h);
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(
        h["via"],
        concat!("1.0 other, 1.1 switchyard/", env!("CARGO_PKG_VERSION"))
    );
    assert_ne!(
        r.header("x-switchyard-request-id"),
        Some("client"),
        "the client's id is not echoed back"
    );
}

#[test]
fn preserve_host_and_strip_false() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(
        &up,
        "",
        "  - {name: r, paths: [/keep], preserve_host: true, strip_path: false}\n",
    ));
    let r = gw.send("GET", "/keep/x", &[("Host", "Client.Example:81")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/keep/x");
    assert_eq!(up.last().headers["host"], "Client.Example:81");
}

#[test]
fn https_only_route_gets_426_or_redirect() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(
        &up,
        "",
        "  - {name: a, paths: [/a], protocols: [https]}\n  - {name: b, paths: [/b], protocols: [https], https_redirect_status_code: 308}\n",
    ));
    let r = gw.get("/a");
    assert_eq!(r.status, 426);
    assert_eq!(r.json()["message"], "Please use HTTPS protocol");
    let r = gw.send("GET", "/b/x?y=1", &[("Host", "shop.test:8000")], b"");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://shop.test/b/x?y=1"));
    assert_eq!(up.count(), 0);
}

#[test]
fn serviceless_route_is_503() {
    let gw = TestGateway::kong("_format_version: '3.0'\nroutes:\n- {name: lonely, paths: [/x]}\n");
    let r = gw.get("/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["message"], "no Service found with those values");
}

#[test]
fn dead_upstream_is_502_with_json_after_retries() {
    let port = dead_port();
    let gw = TestGateway::kong(&format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:{port}\n  retries: 2\n  routes: [{{name: r, paths: [/]}}]\n"
    ));
    let r = gw.get("/x");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.json()["message"],
        "An invalid response was received from the upstream server"
    );
}

#[test]
fn silent_upstream_is_504() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let gw = TestGateway::kong(&format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{addr}\n  read_timeout: 200\n  routes: [{{name: r, paths: [/]}}]\n"
    ));
    let t = std::time::Instant::now();
    let r = gw.get("/slow");
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["message"], "The upstream server is timing out");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn upstream_entity_balances_and_retries_past_a_dead_target() {
    let a = Upstream::echo();
    let b = Upstream::echo();
    let dead = dead_port();
    let gw = TestGateway::kong(&format!(
        "_format_version: '3.0'
services:
- name: s
  url: http://pool/base
  retries: 3
  routes: [{{name: r, paths: [/]}}]
upstreams:
- name: pool
  host_header: pool.internal
  targets:
  - {{target: '{}'}}
  - {{target: '{}'}}
  - {{target: '127.0.0.1:{dead}'}}
",
        a.addr(),
        b.addr()
    ));
    for _ in 0..9 {
        assert_eq!(gw.get("/x").status, 200);
    }
    assert!(
        a.count() >= 3 && b.count() >= 3,
        "a={} b={}",
        a.count(),
        b.count()
    );
    assert_eq!(a.count() + b.count(), 9);
    assert_eq!(
        a.last().headers["host"],
        format!("pool.internal:{}", a.addr().port())
    );
    assert_eq!(a.last().target, "/base/x");
}

#[test]
fn request_termination_variants() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(
        &up,
        "",
        "  - name: maint
    paths: [/maint]
    plugins: [{name: request-termination}]
  - name: body
    paths: [/body]
    plugins: [{name: request-termination, config: {status_code: 200, body: 'plain text', content_type: text/plain}}]
  - name: trig
    paths: [/trig]
    plugins: [{name: request-termination, config: {status_code: 403, message: stop, trigger: x-stop}}]
",
    ));
    let r = gw.get("/maint");
    assert_eq!(
        (r.status, r.json()),
        (503, serde_json::json!({"message": "Service unavailable"}))
    );
    let r = gw.get("/body");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("content-type")),
        (200, "plain text", Some("text/plain"))
    );
    assert_eq!(gw.get("/trig").status, 200, "no trigger: proxied");
    assert_eq!(gw.send("GET", "/trig", &[("X-Stop", "1")], b"").status, 403);
    assert_eq!(gw.get("/trig?x-stop").json()["message"], "stop");
    assert_eq!(up.count(), 1);
}

#[test]
fn global_and_service_plugins_resolve_most_specific() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(
        &format!(
            "_format_version: '3.0'
plugins:
- {{name: request-termination, config: {{status_code: 410, message: global}}}}
services:
- name: s
  url: http://{}
  plugins: [{{name: request-termination, config: {{status_code: 409, message: service}}}}]
  routes:
  - {{name: plain, paths: [/plain]}}
  - name: own
    paths: [/own]
    plugins: [{{name: request-termination, config: {{status_code: 408, message: route}}}}]
routes:
- {{name: other, paths: [/other], service: s2}}
- {{name: free, paths: [/free]}}
",
            up.addr()
        )
        .replace("service: s2", "service: s"),
    );
    assert_eq!(gw.get("/plain").json()["message"], "service");
    assert_eq!(gw.get("/own").json()["message"], "route");
    assert_eq!(gw.get("/other").json()["message"], "service");
    assert_eq!(gw.get("/free").json()["message"], "global");
}

#[test]
fn large_bodies_stream_both_ways() {
    // An upstream that reads the whole upload and answers with 8 MiB.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let Some(uploaded) = count_uploaded(&mut r) else {
                    return;
                };
                let body = vec![b'z'; 8 << 20];
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-got: {uploaded}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    /// Reads a request with a content-length body; counts the `u` bytes uploaded.
    fn count_uploaded(r: &mut impl std::io::BufRead) -> Option<usize> {
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            }
        }
        let mut buf = vec![0; len];
        std::io::Read::read_exact(r, &mut buf).ok()?;
        Some(buf.iter().filter(|b| **b == b'u').count())
    }
    let gw = TestGateway::kong(&format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{addr}\n  routes: [{{name: r, paths: [/]}}]\n"
    ));
    let upload = vec![b'u'; 6 << 20];
    let r = gw.send("POST", "/up", &[], &upload);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-got"), Some("6291456"));
    assert_eq!(r.body.len(), 8 << 20);
}

#[test]
fn keep_alive_connection_serves_many_requests() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(&up, "", "  - {name: r, paths: [/]}\n"));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    for i in 0..20 {
        write!(s, "GET /k{i} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["path"], format!("/k{i}"));
    }
}

#[test]
fn upstream_connections_are_reused_once_each_response_is_read() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&svc(&up, "", "  - {name: r, paths: [/]}\n"));
    for i in 0..30 {
        assert_eq!(gw.get(&format!("/seq{i}")).status, 200);
    }
    assert_eq!(
        up.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sequential requests share one upstream connection"
    );
    // Concurrent clients need more connections, but never one per request.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let addr = gw.addr;
            std::thread::spawn(move || {
                for i in 0..25 {
                    assert_eq!(
                        request(addr, "GET", &format!("/c{t}-{i}"), &[], b"").status,
                        200
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = up.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n <= 5, "{n} upstream connections for 4 concurrent clients");
}
