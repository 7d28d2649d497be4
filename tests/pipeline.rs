//! The one pipeline and the phase trait, through the real server stack with plugins written
//! the way a user writes a custom plugin (`PluginSpec`, registered on the builder): every hook
//! runs where it should, in PRIORITY order, for Kong routes; the log phase runs for every
//! request (answered by the upstream, a plugin, a 404 or an upstream failure); waits and body
//! reads resume into the context and the request; body hooks stream and buffer; and Kong's
//! plugin precedence with consumers and consumer groups holds.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use switchyard::exchange::{LogEntry, respond};
use switchyard::gateway::Builder;
use switchyard::plugins::{
    BodyFlow, BuildCx, Chunk, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, ResponseHead,
    Validate,
};
use switchyard::snapshot::Consumers;

use common::*;

/// What the log phases saw, as `tag status source`.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn logged(tag: &str) -> Vec<String> {
    LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&format!("{tag} ")))
        .cloned()
        .collect()
}

// === Test plugins ===

#[derive(Debug, Deserialize)]
struct TagConfig {
    value: String,
    #[serde(default = "x_tag")]
    header: String,
}

fn x_tag() -> String {
    "x-tag".into()
}

impl Validate for TagConfig {
    fn validate(&self, c: &mut switchyard::plugins::Checks) {
        c.header_name("header", &self.header);
    }
}

/// Appends `header: value` to the upstream request (access), `x-tag-seen: value` to the
/// response (response head), and logs `value status source` (log).
struct Tag {
    name: &'static str,
    priority: i32,
    header: HeaderName,
    value: HeaderValue,
}

impl Plugin for Tag {
    fn name(&self) -> &str {
        self.name
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS | Phases::RESPONSE_HEAD | Phases::LOG
    }
    fn access(&self, _ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        req.headers_mut()
            .append(self.header.clone(), self.value.clone());
        Flow::Continue
    }
    fn response_head(&self, _ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        resp.headers_mut().append("x-tag-seen", self.value.clone());
    }
    fn log(&self, _ctx: &Ctx<'_>, entry: &LogEntry) {
        LOGGED.lock().unwrap().push(format!(
            "{} {} {:?}",
            self.value.to_str().unwrap_or_default(),
            entry.status.as_u16(),
            entry.source
        ));
    }
}

fn tag(name: &'static str, priority: i32, c: TagConfig) -> Result<Option<Arc<dyn Plugin>>, String> {
    Ok(Some(Arc::new(Tag {
        name,
        priority,
        header: HeaderName::from_bytes(c.header.as_bytes()).map_err(|e| e.to_string())?,
        value: HeaderValue::from_str(&c.value).map_err(|e| e.to_string())?,
    })))
}

struct TagHigh;
impl PluginSpec for TagHigh {
    const NAME: &'static str = "test-tag";
    const PRIORITY: i32 = 900;
    type Config = TagConfig;
    fn build(c: TagConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        tag(Self::NAME, Self::PRIORITY, c)
    }
}

struct TagTop;
impl PluginSpec for TagTop {
    const NAME: &'static str = "test-tag-top";
    const PRIORITY: i32 = 2000;
    type Config = TagConfig;
    fn build(c: TagConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        tag(Self::NAME, Self::PRIORITY, c)
    }
}

struct TagLow;
impl PluginSpec for TagLow {
    const NAME: &'static str = "test-tag-low";
    const PRIORITY: i32 = 800;
    type Config = TagConfig;
    fn build(c: TagConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        tag(Self::NAME, Self::PRIORITY, c)
    }
}

#[derive(Debug, Deserialize, Default)]
struct NoConfig {}
impl Validate for NoConfig {}

/// Authenticates the consumer named in `x-login` (a stand-in for key-auth).
struct Login {
    consumers: Arc<Consumers>,
}

impl PluginSpec for Login {
    const NAME: &'static str = "test-login";
    const PRIORITY: i32 = 1250;
    const KIND: Kind = Kind::Authenticates;
    type Config = NoConfig;
    fn build(_: NoConfig, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Login {
            consumers: cx.consumers.clone(),
        })))
    }
}

impl Plugin for Login {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let who = req.header("x-login").unwrap_or_default();
        match self
            .consumers
            .list
            .iter()
            .find(|c| c.username.as_deref() == Some(who))
        {
            Some(c) => {
                ctx.authenticate(c.clone(), None);
                Flow::Continue
            }
            None => Flow::Respond(respond::message(StatusCode::UNAUTHORIZED, "Unauthorized")),
        }
    }
}

/// Waits (as a Redis call or a key fetch would), then changes the request and the context
/// in its continuation.
struct Wait;

impl PluginSpec for Wait {
    const NAME: &'static str = "test-wait";
    const PRIORITY: i32 = 1000;
    type Config = NoConfig;
    fn build(_: NoConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Wait)))
    }
}

impl Plugin for Wait {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, _ctx: &mut Ctx<'_>, _req: &mut Request<'_>) -> Flow {
        Flow::wait(
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                "waited-20ms"
            },
            |out, ctx, req| {
                req.headers_mut()
                    .insert("x-waited", HeaderValue::from_static(out));
                ctx.response_headers.push((
                    HeaderName::from_static("x-waited-too"),
                    HeaderValue::from_static("yes"),
                ));
                Flow::Continue
            },
        )
    }
}

/// Reads the whole request body (`Flow::ReadBody`) and names its length upstream; past 16
/// bytes the pipeline answers 413.
struct ReadBody;

impl PluginSpec for ReadBody {
    const NAME: &'static str = "test-read-body";
    const PRIORITY: i32 = 1000;
    type Config = NoConfig;
    fn build(_: NoConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(ReadBody)))
    }
}

impl Plugin for ReadBody {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, _ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let Some(body) = req.body.as_ref() else {
            return Flow::ReadBody { limit: 16 };
        };
        let len = HeaderValue::from(body.len());
        req.headers_mut().insert("x-body-len", len);
        Flow::Continue
    }
}

/// Upper-cases both bodies piece by piece.
struct Upper;

impl PluginSpec for Upper {
    const NAME: &'static str = "test-upper";
    const PRIORITY: i32 = 700;
    type Config = NoConfig;
    fn build(_: NoConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Upper)))
    }
}

impl Plugin for Upper {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::REQUEST_BODY | Phases::RESPONSE_BODY
    }
    fn request_body(&self, _ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        chunk.data = Bytes::from(chunk.data.to_ascii_uppercase());
        BodyFlow::Continue
    }
    fn response_body(&self, _ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        chunk.data = Bytes::from(chunk.data.to_ascii_uppercase());
        BodyFlow::Continue
    }
}

/// Buffers the whole response body and wraps it in `<<` `>>`.
struct Wrap;

impl PluginSpec for Wrap {
    const NAME: &'static str = "test-wrap";
    const PRIORITY: i32 = 600;
    type Config = NoConfig;
    fn build(_: NoConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Wrap)))
    }
}

impl Plugin for Wrap {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::RESPONSE_BODY
    }
    fn response_body(&self, _ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        if !chunk.end {
            return BodyFlow::Buffer { limit: 1 << 20 };
        }
        let mut out = b"<<".to_vec();
        out.extend_from_slice(&chunk.data);
        out.extend_from_slice(b">>");
        chunk.data = Bytes::from(out);
        BodyFlow::Continue
    }
}

/// Global, before routing: `/old/...` is routed as `/new/...`; after routing, marks the
/// upstream request with the target it goes out with.
struct Rewrite;

impl PluginSpec for Rewrite {
    const NAME: &'static str = "test-rewrite";
    const PRIORITY: i32 = 5000;
    type Config = NoConfig;
    fn build(_: NoConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Rewrite)))
    }
}

impl Plugin for Rewrite {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::REWRITE | Phases::UPSTREAM_REQUEST
    }
    fn rewrite(&self, _ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        if let Some(rest) = req.path().strip_prefix("/old/") {
            let query = req.query().map(|q| format!("?{q}")).unwrap_or_default();
            req.head_mut().uri = format!("/new/{rest}{query}").parse().unwrap();
        }
        Flow::Continue
    }
    fn upstream_request(&self, _ctx: &mut Ctx<'_>, req: &mut http::request::Parts) {
        let target = HeaderValue::from_str(&req.uri.to_string()).unwrap();
        req.headers.insert("x-upstream-target", target);
    }
}

#[derive(Debug, Deserialize, Default)]
struct PeekConfig {
    #[serde(default)]
    touch: bool,
}
impl Validate for PeekConfig {}

/// A response-head hook that reads the headers (`x-peek: <first x-up>`) only when `touch`;
/// otherwise it changes the status of a 203 to 200 and nothing else.
struct Peek {
    touch: bool,
}

impl PluginSpec for Peek {
    const NAME: &'static str = "test-peek";
    const PRIORITY: i32 = 700;
    type Config = PeekConfig;
    fn build(c: PeekConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Peek { touch: c.touch })))
    }
}

impl Plugin for Peek {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn priority(&self) -> i32 {
        Self::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::RESPONSE_HEAD
    }
    fn response_head(&self, _ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        if resp.status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
            resp.status = StatusCode::OK;
        }
        if self.touch {
            let first = resp.headers().get("x-up").cloned();
            if let Some(v) = first {
                resp.headers_mut().insert("x-peek", v);
            }
        }
    }
}

fn builder() -> Builder {
    Builder::new()
        .plugin::<TagHigh>()
        .plugin::<TagLow>()
        .plugin::<TagTop>()
        .plugin::<Login>()
        .plugin::<Wait>()
        .plugin::<ReadBody>()
        .plugin::<Upper>()
        .plugin::<Wrap>()
        .plugin::<Rewrite>()
        .plugin::<Peek>()
}

fn gateway(kong: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong).unwrap();
    TestGateway::start_built(dir, builder())
}

fn service(up: &Upstream, routes: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes:\n{routes}",
        up.addr()
    )
}

// === Tests ===

#[test]
fn hooks_run_in_priority_order_and_log_runs_for_every_answer() {
    let up = Upstream::echo();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - {{name: ok, paths: [/ok]}}
  - {{name: denied, paths: [/denied]}}
- name: down
  url: http://127.0.0.1:{dead}
  routes: [{{name: dead, paths: [/dead]}}]
plugins:
- {{name: test-tag-low, config: {{value: lo-order}}}}
- {{name: test-tag, config: {{value: hi-order}}}}
- {{name: request-termination, route: denied, config: {{status_code: 403, message: no}}}}
"#,
        up = up.addr(),
        dead = dead_port()
    );
    let gw = gateway(&kong);

    // Upstream answer: access in PRIORITY order (900 before 800), response head likewise.
    let r = gw.get("/ok");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-tag"], "hi-order, lo-order");
    assert_eq!(r.header("x-tag-seen"), Some("hi-order, lo-order"));
    // A plugin's answer: the rest of access is skipped, response head and log still run.
    let before = up.count();
    let r = gw.get("/denied");
    assert_eq!(r.status, 403);
    assert_eq!(up.count(), before);
    assert_eq!(r.header("x-tag-seen"), Some("hi-order, lo-order"));
    // A 404 (global plugins only) and an upstream failure.
    let r = gw.get("/nowhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-tag-seen"), Some("hi-order, lo-order"));
    let r = gw.get("/dead");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-tag-seen"), Some("hi-order, lo-order"));

    // The engine logs once the response is out: give it a moment.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        logged("hi-order"),
        [
            "hi-order 200 Upstream",
            "hi-order 403 Plugin",
            "hi-order 404 Gateway",
            "hi-order 502 Gateway"
        ]
    );
    assert_eq!(logged("lo-order").len(), 4);
}

#[test]
fn a_wait_resumes_into_the_request_and_the_context() {
    let up = Upstream::echo();
    let gw = gateway(&service(
        &up,
        "  - {name: w, paths: [/w], plugins: [{name: test-wait}]}\n",
    ));
    let r = gw.get("/w");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-waited"], "waited-20ms");
    assert_eq!(r.header("x-waited-too"), Some("yes"));
}

#[test]
fn a_hook_reads_the_body_and_the_upstream_still_gets_it() {
    let up = Upstream::echo();
    let gw = gateway(&service(
        &up,
        "  - {name: b, paths: [/b], plugins: [{name: test-read-body}]}\n",
    ));
    let r = gw.send("POST", "/b", &[], b"hello body");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-body-len"], "10");
    assert_eq!(seen.body, b"hello body");
    // Past the hook's limit: 413 and nothing upstream.
    let before = up.count();
    let r = gw.send("POST", "/b", &[], b"seventeen bytes!!");
    assert_eq!(r.status, 413);
    assert_eq!(up.count(), before);
}

#[test]
fn body_hooks_stream_both_ways_and_a_buffering_hook_sees_the_whole_body() {
    let up = Upstream::echo();
    let gw = gateway(&service(
        &up,
        "  - {name: up, paths: [/up], plugins: [{name: test-upper}]}\n  - {name: wrap, paths: [/wrap], plugins: [{name: test-upper}, {name: test-wrap}]}\n",
    ));
    let r = gw.send("POST", "/up", &[], b"quiet words");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, b"QUIET WORDS");
    // The echo's JSON, upper-cased on its way back (streamed: chunked).
    assert_eq!(r.text(), r#"{"PATH":"/","BODY_LEN":11}"#);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // Buffered whole: wrapped once, and its new length in the head.
    let r = gw.get("/wrap");
    assert_eq!(r.text(), r#"<<{"PATH":"/","BODY_LEN":0}>>"#);
    assert_eq!(r.header("content-length"), Some("29"));
}

#[test]
fn rewrite_runs_before_routing_and_upstream_request_after_it() {
    let up = Upstream::echo();
    let kong = format!(
        "{}plugins:\n- name: test-rewrite\n",
        service(&up, "  - {name: new, paths: [/new], strip_path: false}\n")
    );
    let gw = gateway(&kong);
    let r = gw.get("/old/x?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/new/x?q=1");
    assert_eq!(seen.headers["x-upstream-target"], "/new/x?q=1");
}

#[test]
fn custom_plugin_configs_are_checked_like_bundled_ones() {
    let up = Upstream::echo();
    let kong = service(
        &up,
        "  - {name: r, paths: [/r], plugins: [{name: test-tag, config: {valeu: x, header: 'bad header'}}]}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), &kong).unwrap();
    let err = match builder().start(dir.path().to_path_buf()) {
        Ok(_) => panic!("a broken custom plugin config must be refused"),
        Err(e) => e.0.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
    };
    assert!(
        err.iter().any(|e| e.starts_with("kong.yaml:6:")
            && e.contains("services[0].routes[0].plugins[0].config.valeu: plugin 'test-tag': unknown field `valeu`; did you mean `value`?")),
        "{err:?}"
    );
    // Unregistered, the same name is not enabled, as Kong says of unknown plugins.
    let err = match Builder::new().start(dir.path().to_path_buf()) {
        Ok(_) => panic!("an unregistered plugin must be refused"),
        Err(e) => e.0.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
    };
    assert!(
        err.iter()
            .any(|e| e.contains("plugin 'test-tag' not enabled")),
        "{err:?}"
    );
}

/// Kong 3.x's precedence table, top to bottom: with the same plugin configured at every
/// level, the most specific wins; removing it, the next one does.
#[test]
fn plugin_precedence_with_consumers_and_groups_follows_kongs_table() {
    let up = Upstream::echo();
    let levels = [
        (
            "consumer+route+service",
            "consumer: bob, route: r, service: s",
        ),
        (
            "group+route+service",
            "consumer_group: gold, route: r, service: s",
        ),
        ("consumer+route", "consumer: bob, route: r"),
        ("consumer+service", "consumer: bob, service: s"),
        ("group+route", "consumer_group: gold, route: r"),
        ("group+service", "consumer_group: gold, service: s"),
        ("route+service", "route: r, service: s"),
        ("consumer", "consumer: bob"),
        ("group", "consumer_group: gold"),
        ("route", "route: r"),
        ("service", "service: s"),
        ("global", ""),
    ];
    let config = |from: usize| {
        let mut k = format!(
            "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes:\n  - {{name: r, paths: [/r], plugins: [{{name: test-login}}]}}\n  - {{name: other, paths: [/other]}}\nconsumer_groups: [{{name: gold}}]\nconsumers:\n- {{username: bob, groups: [{{name: gold}}]}}\n- {{username: carol}}\nplugins:\n",
            up.addr()
        );
        for (label, scope) in &levels[from..] {
            let sep = if scope.is_empty() { "" } else { ", " };
            k.push_str(&format!(
                "- {{name: test-tag, {scope}{sep}config: {{value: {label}}}}}\n"
            ));
        }
        k
    };
    let gw = gateway(&config(0));
    for (i, (label, _)) in levels.iter().enumerate() {
        if i > 0 {
            std::fs::write(gw.path().join("kong.yaml"), config(i)).unwrap();
            let report = gw.gateway.reload();
            assert!(report.ok, "{:?}", report.errors);
        }
        let r = gw.send("GET", "/r", &[("x-login", "bob")], b"");
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        assert_eq!(
            up.last().headers["x-tag"],
            *label,
            "bob on r with {label} the most specific"
        );
        // Carol is in no group and has no plugin of her own.
        let r = gw.send("GET", "/r", &[("x-login", "carol")], b"");
        assert_eq!(r.status, 200);
        let carol_wins = levels[i..]
            .iter()
            .find(|(_, scope)| !scope.contains("consumer"))
            .map(|(l, _)| *l)
            .unwrap();
        assert_eq!(
            up.last().headers["x-tag"],
            carol_wins,
            "carol with {label} left"
        );
    }
}

#[test]
fn consumer_plugins_run_after_the_authentication_and_not_before_it() {
    // Kong resolves each plugin when the iteration reaches it. Bob's test-wait (PRIORITY
    // 1000) comes after test-login (1250): it runs for him, not for carol. Bob's
    // test-tag-top (2000) comes before it, when no consumer is known: the route's instance
    // runs instead, for everyone.
    let up = Upstream::echo();
    let kong = format!(
        "{}consumers: [{{username: bob}}, {{username: carol}}]\nplugins:\n- {{name: test-wait, consumer: bob}}\n- {{name: test-tag-top, consumer: bob, config: {{value: bob}}}}\n",
        service(
            &up,
            "  - {name: r, paths: [/r], plugins: [{name: test-login}, {name: test-tag-top, config: {value: route}}]}\n"
        )
    );
    let gw = gateway(&kong);
    for (who, waited) in [("bob", true), ("carol", false)] {
        let r = gw.send("GET", "/r", &[("x-login", who)], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = up.last();
        assert_eq!(seen.headers["x-tag"], "route", "{who}");
        assert_eq!(seen.headers.contains_key("x-waited"), waited, "{who}");
    }
}

/// An upstream that answers every request with the same head: duplicate names, a hop-by-hop
/// header, its own Via and a request id of its own.
fn fixed_upstream() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let head = "HTTP/1.1 203 Fine\r\nX-Up: one\r\nKeep-Alive: timeout=5\r\n\
                        Via: 1.1 origin\r\nX-Up: two\r\nX-Switchyard-Request-Id: forged\r\n\
                        Content-Length: 5\r\n\r\nhello";
                    if out.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_head_hook_that_does_not_read_the_headers_leaves_them_as_one_that_does() {
    let up = fixed_upstream();
    let kong = format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - {{name: plain, paths: [/plain]}}
  - {{name: status-only, paths: [/status-only], plugins: [{{name: test-peek}}]}}
  - {{name: reads, paths: [/reads], plugins: [{{name: test-peek, config: {{touch: true}}}}]}}
"#
    );
    let gw = gateway(&kong);
    let plain = gw.get("/plain");
    let status_only = gw.get("/status-only");
    let reads = gw.get("/reads");
    assert_eq!(plain.status, 203);
    // The hook's status change takes, with or without the headers read.
    assert_eq!(status_only.status, 200);
    assert_eq!(reads.status, 200);
    assert_eq!(reads.header("x-peek"), Some("one"));
    assert_eq!(status_only.header("x-peek"), None);
    for r in [&plain, &status_only, &reads] {
        assert_eq!(r.text(), "hello");
        assert_eq!(r.header("x-up"), Some("one, two"), "{:?}", r.headers);
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(r.header("keep-alive"), None);
        let via = r.header("via").unwrap_or_default();
        assert!(via.starts_with("1.1 origin, 1.1 switchyard"), "{via}");
        assert_eq!(via.matches("switchyard").count(), 1, "{via}");
        assert_ne!(r.header("x-switchyard-request-id"), Some("forged"));
        assert!(r.header("x-switchyard-request-id").is_some());
        assert!(r.header("x-switchyard-upstream-latency").is_some());
        assert!(r.header("x-switchyard-proxy-latency").is_some());
    }
    // The same names either way, but for the hook's own.
    let names = |r: &Resp| {
        let mut n: Vec<String> = r
            .headers
            .keys()
            .filter(|k| *k != "x-peek")
            .cloned()
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&status_only), names(&plain));
    assert_eq!(names(&reads), names(&plain));
}

#[test]
fn what_an_access_hook_adds_cannot_smuggle_hop_by_hop_or_forwarding_headers() {
    let up = Upstream::echo();
    let gw = gateway(&service(
        &up,
        "  - {name: hop, paths: [/hop], plugins: [{name: test-tag, config: {value: h2c, header: upgrade}}]}\n\
         \x20 - {name: fwd, paths: [/fwd], plugins: [{name: test-tag, config: {value: 6.6.6.6, header: x-real-ip}}]}\n\
         \x20 - {name: ok, paths: [/ok], plugins: [{name: test-tag, config: {value: fine}}]}\n",
    ));
    assert_eq!(gw.get("/hop").status, 200);
    assert_eq!(up.last().headers.get("upgrade"), None);
    assert_eq!(gw.get("/fwd").status, 200);
    assert_eq!(up.last().headers["x-real-ip"], "127.0.0.1");
    assert_eq!(gw.get("/ok").status, 200);
    assert_eq!(up.last().headers["x-tag"], "fine");
}
