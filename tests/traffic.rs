//! cors, correlation-id, request-size-limiting and response-transformer through the real
//! `switchyard` binary (and, for what only a plugin can see, the real server stack
//! in-process): real upstreams on port 0, requests on real sockets, as Kong's
//! `spec/03-plugins/{13-cors,11-correlation-id,12-request-size-limiting,15-response-transformer}`
//! expect them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// A config directory with one service on `up` and one route per `(name, path, plugins)`;
/// `plugins` is YAML flow text for the route's `plugins` list.
fn start(up: SocketAddr, routes: &[(&str, &str, &str)]) -> (tempfile::TempDir, Running) {
    let mut y =
        format!("_format_version: '3.0'\nservices:\n- name: s\n  url: http://{up}\n  routes:\n");
    for (name, path, plugins) in routes {
        y.push_str(&format!(
            "  - {{name: {name}, paths: ['{path}'], strip_path: false, plugins: {plugins}}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), y).unwrap();
    let gw = Running::start(dir.path(), &[]);
    (dir, gw)
}

// === cors ===

#[test]
fn cors_preflight_is_answered_by_the_gateway_with_kongs_defaults() {
    let up = Upstream::echo();
    let (_d, gw) = start(up.addr(), &[("r", "/", "[{name: cors}]")]);
    let r = gw.send(
        "OPTIONS",
        "/cors",
        &[
            ("Origin", "http://example.test"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "origin,accepts"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 0, "a preflight must not reach the upstream");
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
    );
    // No configured headers: the requested ones are echoed.
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("origin,accepts")
    );
    for absent in [
        "vary",
        "access-control-max-age",
        "access-control-allow-credentials",
        "access-control-expose-headers",
    ] {
        assert_eq!(r.header(absent), None, "{absent}");
    }
    // An OPTIONS without Access-Control-Request-Method is not a preflight: proxied.
    let r = gw.send(
        "OPTIONS",
        "/cors",
        &[("Origin", "http://example.test")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), None);
}

#[test]
fn cors_configured_preflight_and_actual_requests() {
    let up = Upstream::echo();
    let cfg = "[{name: cors, config: {origins: ['http://example.test'], methods: [GET, POST], \
               headers: [origin, type, accepts], exposed_headers: [x-auth-token], max_age: 23, \
               credentials: true, private_network: true}}]";
    let (_d, gw) = start(up.addr(), &[("r", "/", cfg)]);
    let r = gw.send(
        "OPTIONS",
        "/cors",
        &[
            ("Origin", "http://example.test"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Private-Network", "true"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 0);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://example.test")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("origin,type,accepts")
    );
    assert_eq!(r.header("access-control-max-age"), Some("23"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    // Exposed headers go on actual responses only.
    assert_eq!(r.header("access-control-expose-headers"), None);

    let r = gw.send("GET", "/cors", &[("Origin", "http://example.test")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://example.test")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-auth-token")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-allow-methods"), None);
    assert_eq!(r.header("access-control-max-age"), None);
}

#[test]
fn cors_origins_match_exactly_or_by_regex() {
    let up = Upstream::echo();
    let cfg = r"[{name: cors, config: {origins: ['http://my-site.test', 'http://other.test:8000', '.*\.example\.org']}}]";
    let (_d, gw) = start(up.addr(), &[("r", "/", cfg)]);
    let acao = |origin: &str| {
        let r = gw.send("GET", "/x", &[("Origin", origin)], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("vary"), Some("Origin"), "{origin}");
        r.header("access-control-allow-origin").map(str::to_string)
    };
    assert_eq!(
        acao("http://my-site.test").as_deref(),
        Some("http://my-site.test")
    );
    // Default ports are normalised away before comparing.
    assert_eq!(
        acao("http://my-site.test:80").as_deref(),
        Some("http://my-site.test")
    );
    assert_eq!(
        acao("http://other.test:8000").as_deref(),
        Some("http://other.test:8000")
    );
    assert_eq!(acao("http://other.test"), None);
    // A regex without ':' is matched against the origin's host, anchored at both ends.
    assert_eq!(
        acao("https://api.example.org").as_deref(),
        Some("https://api.example.org")
    );
    assert_eq!(acao("https://api.example.org.evil.test"), None);
    assert_eq!(acao("http://evil.test"), None);

    // A preflight from a refused origin is still answered, without an allowed origin.
    let r = gw.send(
        "OPTIONS",
        "/x",
        &[
            ("Origin", "http://evil.test"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("vary"), Some("Origin"));
}

#[test]
fn cors_credentials_with_any_origin_reflect_the_origin() {
    let up = Upstream::echo();
    let cfg = "[{name: cors, config: {origins: ['*'], credentials: true}}]";
    let (_d, gw) = start(up.addr(), &[("r", "/", cfg)]);
    let r = gw.send("GET", "/x", &[("Origin", "http://app.test")], b"");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    // No origin: `*`, and credentials cannot go with it.
    let r = gw.get("/x");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
}

#[test]
fn cors_preflight_continue_proxies_the_preflight() {
    let up = Upstream::echo();
    let cfg = "[{name: cors, config: {preflight_continue: true}}]";
    let (_d, gw) = start(up.addr(), &[("r", "/", cfg)]);
    let r = gw.send(
        "OPTIONS",
        "/cors",
        &[
            ("Origin", "http://example.test"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(r.json()["path"], "/cors");
    // The upstream answers the preflight: the plugin adds nothing to it.
    assert_eq!(r.header("access-control-allow-methods"), None);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = gw.send("GET", "/cors", &[("Origin", "http://example.test")], b"");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn cors_runs_before_authentication_and_marks_its_refusals() {
    let up = Upstream::echo();
    let y = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n  - {{name: r, paths: [/], plugins: [{{name: key-auth}}, {{name: cors, config: {{origins: ['http://app.test']}}}}]}}\n",
        up.addr()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), y).unwrap();
    let gw = Running::start(dir.path(), &[]);
    // cors (PRIORITY 2000) answers the preflight before key-auth (1250) asks for a key.
    let r = gw.send(
        "OPTIONS",
        "/x",
        &[
            ("Origin", "http://app.test"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    // key-auth's 401 still carries the CORS headers, so that the browser can read it.
    let r = gw.send("GET", "/x", &[("Origin", "http://app.test")], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(up.count(), 0);
}

// === correlation-id ===

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && s.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && &s[14..15] == "4"
}

#[test]
fn correlation_id_defaults_count_on_one_uuid_and_do_not_echo() {
    let up = Upstream::echo();
    let (_d, gw) = start(up.addr(), &[("r", "/", "[{name: correlation-id}]")]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = gw.get("/ci");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("kong-request-id"), None);
        ids.push(up.last().headers["kong-request-id"].clone());
    }
    let (base0, n0) = ids[0].split_once('#').unwrap();
    let (base1, n1) = ids[1].split_once('#').unwrap();
    assert!(is_uuid(base0), "{}", ids[0]);
    assert_eq!(base0, base1);
    assert_eq!(n1.parse::<u64>().unwrap(), n0.parse::<u64>().unwrap() + 1);
}

#[test]
fn correlation_id_uuid_echo_and_a_clients_id_kept() {
    let up = Upstream::echo();
    let (_d, gw) = start(
        up.addr(),
        &[
            (
                "echo",
                "/echo",
                "[{name: correlation-id, config: {header_name: X-Call-ID, generator: uuid, echo_downstream: true}}]",
            ),
            (
                "tracker",
                "/tracker",
                "[{name: correlation-id, config: {generator: tracker}}]",
            ),
        ],
    );
    let r = gw.get("/echo");
    let sent = up.last().headers["x-call-id"].clone();
    assert!(is_uuid(&sent), "{sent}");
    assert_eq!(r.header("x-call-id"), Some(sent.as_str()));
    assert!(!up.last().headers.contains_key("kong-request-id"));
    let r = gw.get("/echo");
    assert_ne!(
        r.header("x-call-id"),
        Some(sent.as_str()),
        "a new id per request"
    );

    let r = gw.send("GET", "/echo", &[("X-Call-ID", "my-own-id-1")], b"");
    assert_eq!(up.last().headers["x-call-id"], "my-own-id-1");
    assert_eq!(r.header("x-call-id"), Some("my-own-id-1"));

    gw.get("/tracker");
    let t = up.last().headers["kong-request-id"].clone();
    let fields: Vec<&str> = t.split('-').collect();
    assert_eq!(fields.len(), 6, "{t}");
    assert_eq!(fields[0], "127.0.0.1");
    assert_eq!(fields[1], gw.addr.port().to_string());
    assert!(fields[5].contains('.'), "{t}");
}

/// The id reaches the log phase: a log plugin registered beside the bundled ones reads it.
mod log_phase {
    use std::sync::{Arc, Mutex};

    use serde::Deserialize;
    use switchyard::plugins::correlation_id::CorrelationIdValue;
    use switchyard::plugins::{BuildCx, Ctx, Kind, LogEntry, Phases, Plugin, PluginSpec};

    pub static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[derive(Deserialize)]
    pub struct NoConfig {}
    impl switchyard::plugins::Validate for NoConfig {}

    pub struct IdLog;
    impl PluginSpec for IdLog {
        const NAME: &'static str = "id-log";
        const PRIORITY: i32 = 1;
        const KIND: Kind = Kind::Observes;
        type Config = NoConfig;
        fn build(_: NoConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
            Ok(Some(Arc::new(IdLog)))
        }
    }
    impl Plugin for IdLog {
        fn name(&self) -> &str {
            "id-log"
        }
        fn priority(&self) -> i32 {
            1
        }
        fn phases(&self) -> Phases {
            Phases::LOG
        }
        fn log(&self, ctx: &Ctx<'_>, _: &LogEntry) {
            let id = ctx.extensions.get::<CorrelationIdValue>();
            let text = id.map_or("none".to_string(), |v| v.0.to_str().unwrap().to_string());
            LOGGED.lock().unwrap().push(text);
        }
    }
}

#[test]
fn correlation_id_reaches_the_log_phase() {
    let up = Upstream::echo();
    let y = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n  - {{name: r, paths: [/], plugins: [{{name: correlation-id, config: {{generator: uuid}}}}, {{name: id-log}}]}}\n",
        up.addr()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), y).unwrap();
    let gw = TestGateway::start_built(
        dir,
        switchyard::gateway::Builder::new().plugin::<log_phase::IdLog>(),
    );
    gw.get("/a");
    let sent = up.last().headers["kong-request-id"].clone();
    gw.send("GET", "/b", &[("Kong-Request-ID", "client-id-7")], b"");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while log_phase::LOGGED.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        *log_phase::LOGGED.lock().unwrap(),
        [sent, "client-id-7".to_string()]
    );
}

// === request-size-limiting ===

/// Sends `raw` (a whole request, framed by the caller) and reads the response.
fn raw(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, raw).unwrap();
    read_response(&mut std::io::BufReader::new(s), false).expect("a complete response")
}

/// A chunked request body in pieces of `piece` bytes.
fn chunked(target: &str, body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = format!(
        "POST {target} HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in body.chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn request_size_limiting_by_content_length() {
    let up = Upstream::echo();
    let (_d, gw) = start(
        up.addr(),
        &[
            (
                "b",
                "/b",
                "[{name: request-size-limiting, config: {allowed_payload_size: 10, size_unit: bytes}}]",
            ),
            (
                "k",
                "/k",
                "[{name: request-size-limiting, config: {allowed_payload_size: 1, size_unit: kilobytes}}]",
            ),
        ],
    );
    let r = gw.send("POST", "/b", &[], b"0123456789");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body, b"0123456789");
    // Counted or not, a body with a Content-Length goes upstream with it, not chunked.
    assert_eq!(up.last().headers["content-length"], "10");
    assert!(!up.last().headers.contains_key("transfer-encoding"));
    let r = gw.send("POST", "/b", &[], b"0123456789A");
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Request size limit exceeded"})
    );
    assert_eq!(up.count(), 1);
    assert_eq!(gw.send("POST", "/k", &[], &[b'x'; 1024]).status, 200);
    assert_eq!(gw.send("POST", "/k", &[], &[b'x'; 1025]).status, 413);
    assert_eq!(up.count(), 2);
}

#[test]
fn request_size_limiting_cuts_a_chunked_body_past_the_limit() {
    let up = Upstream::echo();
    let (_d, gw) = start(
        up.addr(),
        &[(
            "b",
            "/",
            "[{name: request-size-limiting, config: {allowed_payload_size: 1, size_unit: kilobytes}}]",
        )],
    );
    // Under the limit, in pieces: it streams through whole.
    let body = vec![b'a'; 1000];
    let r = raw(gw.addr, &chunked("/up", &body, 100));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, body);
    assert_eq!(up.count(), 1);

    // Past the limit: 413 with Kong's message, and the upstream never gets the request
    // whole.
    let body = vec![b'b'; 4096];
    let r = raw(gw.addr, &chunked("/over", &body, 512));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Request size limit exceeded"})
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.count(), 1, "the cut request reached the upstream");

    // The gateway stays up for the next one.
    assert_eq!(gw.get("/after").status, 200);
}

#[test]
fn request_size_limiting_require_content_length() {
    let up = Upstream::echo();
    let (_d, gw) = start(
        up.addr(),
        &[(
            "b",
            "/",
            "[{name: request-size-limiting, config: {allowed_payload_size: 1, require_content_length: true}}]",
        )],
    );
    let r = raw(
        gw.addr,
        b"GET /none HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 411);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "A valid Content-Length header is required"})
    );
    assert_eq!(up.count(), 0);
    // A chunked body carries no Content-Length: Kong lets it through (and counts it).
    let r = raw(gw.addr, &chunked("/chunked", b"small", 2));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, b"small");
    assert_eq!(gw.send("POST", "/cl", &[], b"small").status, 200);
}

// === response-transformer ===

/// An upstream that answers every request with `response` (a whole HTTP/1.1 response).
fn fixed_upstream(response: String) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let response = response.clone();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                while read_request_head(&mut r) {
                    if std::io::Write::write_all(&mut out, response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one bodiless request head (the tests' requests to `fixed_upstream` are GETs).
fn read_request_head(r: &mut impl std::io::BufRead) -> bool {
    let mut any = false;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return any,
            Ok(_) => any = true,
        }
    }
}

#[test]
fn response_transformer_changes_headers_in_kongs_order() {
    let body = r#"{"a":1}"#;
    let addr = fixed_upstream(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-internal: 1\r\nx-old: o\r\n\
         x-version: v1\r\nx-present: up\r\nx-multi: m1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    let cfg = "[{name: response-transformer, config: {remove: {headers: [x-internal]}, \
               rename: {headers: ['x-old:x-new']}, replace: {headers: ['x-version:v2', 'x-absent:nope']}, \
               add: {headers: ['x-present:plugin', 'x-added:yes', 'Content-Type:text/html']}, \
               append: {headers: ['x-multi:m2']}}}]";
    let (_d, gw) = start(addr, &[("r", "/", cfg)]);
    let r = gw.get("/rs");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(r.header("x-old"), None);
    assert_eq!(r.header("x-new"), Some("o"));
    assert_eq!(r.header("x-version"), Some("v2"));
    assert_eq!(r.header("x-absent"), None, "replace only what is there");
    assert_eq!(r.header("x-present"), Some("up"), "add only what is absent");
    assert_eq!(r.header("x-added"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // The test client joins repeated headers with ", ".
    assert_eq!(r.header("x-multi"), Some("m1, m2"));
    assert_eq!(
        r.text(),
        body,
        "no JSON change configured: the body is untouched"
    );
}

#[test]
fn response_transformer_changes_a_json_body_and_its_length() {
    let body =
        r#"{"path":"/rs","secret":"s","old":1,"version":1,"flag":false,"tags":"t1","n":null}"#;
    // The upstream's body comes chunked, in two pieces: the plugin holds it to change it.
    let (half1, half2) = body.split_at(20);
    let addr = fixed_upstream(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x}\r\n{half1}\r\n{:x}\r\n{half2}\r\n0\r\n\r\n",
        half1.len(),
        half2.len()
    ));
    let cfg = "[{name: response-transformer, config: {remove: {json: [secret]}, \
               rename: {json: ['old:new']}, replace: {json: ['version:2', 'absent:x'], json_types: [number]}, \
               add: {json: ['greeting:hello', 'path:ignored', 'flag:true', 'ok:true'], json_types: [string, string, boolean, boolean]}, \
               append: {json: ['tags:t2', 'list:a/b']}}}]";
    let (_d, gw) = start(addr, &[("r", "/", cfg)]);
    let r = gw.get("/rs");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "the new body's length"
    );
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "path": "/rs",
            "new": 1,
            "version": 2,
            // `false` counts as absent for add, as in Lua.
            "flag": true,
            "tags": ["t1", "t2"],
            "n": null,
            "greeting": "hello",
            "ok": true,
            "list": ["a/b"],
        })
    );
}

#[test]
fn response_transformer_refuses_a_json_body_past_its_buffer_limit() {
    // 17 MiB of JSON: more than the plugin holds (16 MiB).
    let body = format!("{{\"big\":\"{}\"}}", "x".repeat(17 << 20));
    let addr = fixed_upstream(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    let cfg = "[{name: response-transformer, config: {remove: {json: [big]}}}]";
    let (_d, gw) = start(addr, &[("r", "/", cfg)]);
    let r = gw.get("/big");
    // Not the body the config meant to change: the gateway's 502 instead.
    assert_eq!(r.status, 502, "{}", &r.text()[..r.text().len().min(200)]);
    assert!(r.body.len() < 1024);
}

#[test]
fn response_transformer_leaves_other_bodies_alone() {
    let text = "plain text, not JSON";
    let addr = fixed_upstream(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    ));
    let up_json = Upstream::echo();
    let cfg =
        "[{name: response-transformer, config: {add: {json: ['x:1'], headers: ['x-seen:1']}}}]";
    let (_d, gw) = start(addr, &[("r", "/", cfg)]);
    let r = gw.get("/t");
    assert_eq!(r.text(), text);
    assert_eq!(r.header("x-seen"), Some("1"));

    // A JSON object from the echo upstream is changed, and framed with its new length.
    let (_d2, gw2) = start(up_json.addr(), &[("r", "/", cfg)]);
    let r = gw2.get("/echo");
    assert_eq!(r.json()["x"], "1");
    assert_eq!(r.json()["path"], "/echo");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

// === headers plugins set over an upstream head that goes out as it came ===

#[test]
fn headers_a_plugin_sets_replace_the_upstreams_of_the_same_name() {
    // The upstream counts too: its own RateLimit-Limit and X-RateLimit-Limit-Hour must not
    // reach the client beside the gateway's (Kong's `set_header` replaces them).
    let addr = fixed_upstream(
        "HTTP/1.1 200 OK\r\nRateLimit-Limit: 999\r\nX-Upstream: kept\r\nx-ratelimit-limit-hour: 999\r\ncontent-length: 2\r\n\r\nok"
            .to_string(),
    );
    let cfg = "[{name: rate-limiting, config: {hour: 100000, policy: local}}]";
    let (_d, gw) = start(addr, &[("r", "/", cfg)]);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /rl HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let values = |name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(values("ratelimit-limit"), ["100000"], "{text}");
    assert_eq!(values("x-ratelimit-limit-hour"), ["100000"], "{text}");
    assert_eq!(values("x-ratelimit-remaining-hour"), ["99999"], "{text}");
    assert_eq!(values("x-upstream"), ["kept"], "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}
