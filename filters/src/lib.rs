//! `testkit`: one Proxy-Wasm filter whose behaviour its configuration picks, so that the
//! end-to-end tests exercise the host with a real SDK-built module (no mocks). The config is
//! whitespace-separated `key=value` pairs, as Kong's own test filters read theirs:
//!
//! | pair | what the filter does |
//! |---|---|
//! | `req-header=name:value` | adds a request header (repeatable) |
//! | `resp-header=name:value` | adds a response header (repeatable) |
//! | `deny=STATUS` | answers STATUS itself unless the request has `x-allow` |
//! | a JSON config (`{...}`) | is sent back as it arrived in `x-config` on the response |
//! | `deny-late=STATUS` | answers STATUS itself from `on_response_headers` |
//! | `trap=PHASE` | panics in PHASE (`request_headers`, `response_headers`) |
//! | `loop=PHASE` | loops forever in PHASE |
//! | `hog=PHASE` | allocates without bound in PHASE |
//! | `configure=reject` | `proxy_on_configure` returns false |
//! | `echo-path=1` | sends `x-filter-path: <:path>` upstream |
//! | `resp-body=TEXT` | buffers the response body (Pause) and replaces it with TEXT |
//! | `req-body-upper=1` | buffers the request body and upper-cases it |
//! | `count=1` | `x-filter-count` on the response: requests this root context saw |
//! | `property=PATH` | `x-filter-property` on the response: property PATH (dotted) |
//! | `shared=KEY` | counts requests in shared data KEY (compare-and-swap), `x-shared` on the response |
//! | `metric=NAME` | a counter NAME, incremented per request |
//! | `tick=MS` | a timer every MS counts its ticks in shared data `ticks`; `x-ticks` on the response |
//! | `tick-call=HOST:PORT/PATH` | each tick makes an HTTP call; answers counted in `tick-answers`, `x-tick-answers` on the response |
//! | `call=HOST:PORT/PATH` | pauses the request for an HTTP call, then sends the answer's status and body upstream (`x-call-status`, `x-call-body`) |

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { config: Rc::new(Config::default()), seen: Rc::new(Cell::new(0)), metric: None })
    });
}}

#[derive(Default)]
struct Config {
    req_headers: Vec<(String, String)>,
    resp_headers: Vec<(String, String)>,
    deny: Option<u32>,
    deny_late: Option<u32>,
    trap: Option<String>,
    spin: Option<String>,
    hog: Option<String>,
    reject: bool,
    echo_path: bool,
    resp_body: Option<String>,
    req_body_upper: bool,
    count: bool,
    property: Option<String>,
    shared: Option<String>,
    metric: Option<String>,
    call: Option<(String, String)>,
    tick: Option<u64>,
    tick_call: Option<(String, String)>,
    /// The config as it arrived, when it is JSON.
    json: Option<String>,
}

impl Config {
    fn parse(text: &str) -> Config {
        let mut c = Config::default();
        if text.starts_with('{') {
            c.json = Some(text.to_string());
            return c;
        }
        for pair in text.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let header = || {
                let (n, v) = v.split_once(':').unwrap_or((v, ""));
                (n.to_string(), v.to_string())
            };
            match k {
                "req-header" => c.req_headers.push(header()),
                "resp-header" => c.resp_headers.push(header()),
                "deny" => c.deny = v.parse().ok(),
                "deny-late" => c.deny_late = v.parse().ok(),
                "trap" => c.trap = Some(v.to_string()),
                "loop" => c.spin = Some(v.to_string()),
                "hog" => c.hog = Some(v.to_string()),
                "configure" => c.reject = v == "reject",
                "echo-path" => c.echo_path = true,
                "resp-body" => c.resp_body = Some(v.replace('_', " ")),
                "req-body-upper" => c.req_body_upper = true,
                "count" => c.count = true,
                "property" => c.property = Some(v.to_string()),
                "shared" => c.shared = Some(v.to_string()),
                "metric" => c.metric = Some(v.to_string()),
                "tick" => c.tick = v.parse().ok(),
                "tick-call" => {
                    let (host, path) = v.split_once('/').unwrap_or((v, ""));
                    c.tick_call = Some((host.to_string(), format!("/{path}")));
                }
                "call" => {
                    let (host, path) = v.split_once('/').unwrap_or((v, ""));
                    c.call = Some((host.to_string(), format!("/{path}")));
                }
                _ => {}
            }
        }
        c
    }

    /// Misbehaves in `phase` as configured.
    fn misbehave(&self, phase: &str) {
        if self.trap.as_deref() == Some(phase) {
            panic!("testkit: trap in {phase}");
        }
        if self.spin.as_deref() == Some(phase) {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if self.hog.as_deref() == Some(phase) {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(Vec::with_capacity(1 << 20));
                std::hint::black_box(&kept);
            }
        }
    }
}

struct Root {
    config: Rc<Config>,
    seen: Rc<Cell<u64>>,
    metric: Option<u32>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, _size: usize, _trailers: usize) {
        if self.get_http_call_response_header(":status").is_some() {
            bump("tick-answers");
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = Config::parse(&String::from_utf8_lossy(&bytes));
        let ok = !config.reject;
        self.metric = config
            .metric
            .as_deref()
            .and_then(|name| hostcalls::define_metric(MetricType::Counter, name).ok());
        if let Some(ms) = config.tick {
            self.set_tick_period(Duration::from_millis(ms));
        }
        self.config = Rc::new(config);
        ok
    }

    fn on_tick(&mut self) {
        bump("ticks");
        if let Some((host, path)) = &self.config.tick_call {
            let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", host.as_str())];
            let _ = self.dispatch_http_call(host, headers, None, vec![], Duration::from_secs(5));
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
            seen: self.seen.clone(),
            metric: self.metric,
            shared: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    config: Rc<Config>,
    seen: Rc<Cell<u64>>,
    metric: Option<u32>,
    /// The shared count after this request's increment.
    shared: Option<u64>,
}

/// Adds one to the count under `key`, retrying on a compare-and-swap mismatch.
fn bump(key: &str) -> u64 {
    loop {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let n = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        match hostcalls::set_shared_data(key, Some(n.to_string().as_bytes()), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return n,
        }
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, size: usize, _trailers: usize) {
        let status = self.get_http_call_response_header(":status").unwrap_or_default();
        let body = self.get_http_call_response_body(0, size).unwrap_or_default();
        self.set_http_request_header("x-call-status", Some(&status));
        self.set_http_request_header("x-call-body", Some(&String::from_utf8_lossy(&body)));
        self.resume_http_request();
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        self.seen.set(self.seen.get() + 1);
        self.config.misbehave("request_headers");
        if let Some(id) = self.metric {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if let Some(key) = &self.config.shared {
            self.shared = Some(bump(key));
        }
        if let Some((host, path)) = &self.config.call {
            let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", host.as_str())];
            return match self.dispatch_http_call(host, headers, None, vec![], Duration::from_secs(5)) {
                Ok(_) => Action::Pause,
                Err(e) => {
                    self.set_http_request_header("x-call-error", Some(&format!("{e:?}")));
                    Action::Continue
                }
            };
        }
        if let Some(status) = self.config.deny
            && self.get_http_request_header("x-allow").is_none()
        {
            self.send_http_response(
                status,
                vec![("x-denied-by", "testkit"), ("content-type", "application/json")],
                Some(b"{\"message\":\"denied by filter\"}"),
            );
            return Action::Pause;
        }
        for (n, v) in &self.config.req_headers {
            self.add_http_request_header(n, v);
        }
        if self.config.echo_path {
            let path = self.get_http_request_header(":path").unwrap_or_default();
            self.set_http_request_header("x-filter-path", Some(&path));
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, end: bool) -> Action {
        if !self.config.req_body_upper {
            return Action::Continue;
        }
        if !end {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, size) {
            self.set_http_request_body(0, size, &body.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end: bool) -> Action {
        self.config.misbehave("response_headers");
        if let Some(status) = self.config.deny_late {
            self.send_http_response(status, vec![("x-denied-by", "testkit-late")], Some(b"late"));
            return Action::Pause;
        }
        for (n, v) in &self.config.resp_headers {
            self.add_http_response_header(n, v);
        }
        if self.config.tick.is_some() {
            let (ticks, _) = hostcalls::get_shared_data("ticks").unwrap_or((None, None));
            let ticks = String::from_utf8(ticks.unwrap_or_default()).unwrap_or_default();
            self.set_http_response_header("x-ticks", Some(&ticks));
            let (answers, _) = hostcalls::get_shared_data("tick-answers").unwrap_or((None, None));
            let answers = String::from_utf8(answers.unwrap_or_default()).unwrap_or_default();
            self.set_http_response_header("x-tick-answers", Some(&answers));
        }
        if let Some(json) = &self.config.json {
            self.set_http_response_header("x-config", Some(json));
        }
        if let Some(n) = self.shared {
            self.set_http_response_header("x-shared", Some(&n.to_string()));
        }
        if self.config.count {
            self.set_http_response_header("x-filter-count", Some(&self.seen.get().to_string()));
        }
        if let Some(path) = &self.config.property {
            let segments: Vec<&str> = path.split('.').collect();
            let value = self
                .get_property(segments)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "<none>".to_string());
            self.set_http_response_header("x-filter-property", Some(&value));
        }
        if self.config.resp_body.is_some() {
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end: bool) -> Action {
        let Some(text) = &self.config.resp_body else {
            return Action::Continue;
        };
        if !end {
            return Action::Pause;
        }
        self.set_http_response_body(0, size, text.as_bytes());
        Action::Continue
    }
}
