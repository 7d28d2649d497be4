//! End-to-end test kit: real upstream servers on port 0, the real gateway stack started
//! in-process on port 0 over a temporary config directory, and a small HTTP/1.1 client.
//!
//! ```ignore
//! let up = Upstream::echo();
//! let gw = Gateway::with_kong(&format!("... url: http://{}/svc ...", up.addr())).start();
//! let r = gw.get("/path");
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an upstream saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A real HTTP/1.1 upstream on 127.0.0.1:0 that records requests and answers
/// `200 {"path": "<target>"}` (or the status in a `/status/NNN` segment).
pub struct Upstream {
    addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn echo() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let log = seen.clone();
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let log = log.clone();
                std::thread::spawn(move || serve_echo(stream, log));
            }
        });
        Upstream {
            addr,
            seen,
            accepted,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn serve_echo(stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let Some((method, target, headers, body)) = read_request(&mut reader) else {
            return;
        };
        let status = target
            .split('/')
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[0] == "status")
            .and_then(|w| w[1].split('?').next()?.parse::<u16>().ok())
            .unwrap_or(200);
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers,
            body: body.clone(),
        });
        let payload = serde_json::json!({ "path": target, "body_len": body.len() }).to_string();
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

type Parsed = (String, String, HashMap<String, String>, Vec<u8>);

fn read_request(r: &mut impl BufRead) -> Option<Parsed> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let headers = read_headers(r)?;
    let body = read_body(r, &headers)?;
    Some((method, target, headers, body))
}

fn read_headers(r: &mut impl BufRead) -> Option<HashMap<String, String>> {
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(headers);
        }
        let (k, v) = line.split_once(':')?;
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_string();
        headers
            .entry(k)
            .and_modify(|old: &mut String| *old = format!("{old}, {v}"))
            .or_insert(v);
    }
}

fn read_body(r: &mut impl BufRead, headers: &HashMap<String, String>) -> Option<Vec<u8>> {
    if let Some(n) = headers.get("content-length") {
        let mut body = vec![0; n.parse().ok()?];
        r.read_exact(&mut body).ok()?;
        return Some(body);
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                return Some(body);
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Vec::new())
}

/// A response as the test client read it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Sends one request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: example.com\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut BufReader::new(s), method == "HEAD").expect("a complete response")
}

pub fn read_response(r: &mut impl BufRead, head: bool) -> Option<Resp> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let headers = read_headers(r)?;
    let body = if head {
        Vec::new()
    } else if headers.contains_key("content-length") || headers.contains_key("transfer-encoding") {
        read_body(r, &headers)?
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b).ok()?;
        b
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// A gateway over a temporary config directory.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub gateway: Arc<switchyard::gateway::Gateway>,
}

impl TestGateway {
    /// Writes `files` (name, contents) and starts the gateway on 127.0.0.1:0 with one worker.
    pub fn start(files: &[(&str, &str)]) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Self::start_in(dir)
    }

    /// Starts the gateway on a directory the test laid out itself.
    pub fn start_in(dir: tempfile::TempDir) -> TestGateway {
        Self::start_built(dir, switchyard::gateway::Builder::new())
    }

    /// Starts a gateway with custom plugins (`builder`) on a directory laid out already.
    pub fn start_built(
        dir: tempfile::TempDir,
        builder: switchyard::gateway::Builder,
    ) -> TestGateway {
        let (gateway, _warnings) = builder.start(dir.path().to_path_buf()).unwrap_or_else(|e| {
            panic!(
                "config rejected: {:?}",
                e.0.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            )
        });
        let (bound, listeners) =
            switchyard::proxy::server::bind_all(&["127.0.0.1:0".parse().unwrap()], 1).unwrap();
        switchyard::proxy::server::spawn_workers(gateway.clone(), listeners);
        TestGateway {
            dir,
            addr: bound[0],
            gateway,
        }
    }

    pub fn kong(yaml: &str) -> TestGateway {
        Self::start(&[("kong.yaml", yaml)])
    }

    pub fn get(&self, target: &str) -> Resp {
        request(self.addr, "GET", target, &[], b"")
    }

    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr, method, target, headers, body)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The switchyard binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// A port that nothing listens on.
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl TestGateway {
    /// Like `start`, with the file watcher running (events, or polling every `poll`).
    pub fn start_watched(files: &[(&str, &str)], poll: Option<Duration>) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Self::start_watched_in(dir, poll)
    }

    pub fn start_watched_in(dir: tempfile::TempDir, poll: Option<Duration>) -> TestGateway {
        let gw = Self::start_in(dir);
        switchyard::watch::spawn(gw.gateway.clone(), poll).unwrap();
        // Let the watcher register its watches before the test edits anything.
        std::thread::sleep(Duration::from_millis(100));
        gw
    }

    /// The time of the last reload attempt, if any.
    pub fn last_reload_at(&self) -> Option<std::time::SystemTime> {
        self.gateway
            .last_reload
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r.at)
    }

    /// Polls `target` until it answers `status`, up to `within`; returns how long it took.
    pub fn wait_for(&self, target: &str, status: u16, within: Duration) -> Option<Duration> {
        let t = std::time::Instant::now();
        while t.elapsed() < within {
            if request(self.addr, "GET", target, &[], b"").status == status {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

/// `switchyard run --no-watch` in a child process on free ports (only `POST /reload`
/// reloads), its log (stdout and stderr) kept; killed when dropped.
pub struct Running {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Running {
    /// Starts `switchyard run` on `dir` with extra `args` and waits until both listeners
    /// answer.
    pub fn start(dir: &Path, args: &[&str]) -> Running {
        Self::start_bin(&binary(), dir, args)
    }

    /// Like `start`, with another build of the gateway (an example with custom plugins).
    pub fn start_bin(bin: &Path, dir: &Path, args: &[&str]) -> Running {
        Self::spawn(bin, dir, args, &[])
    }

    /// Like `start`, with these environment variables set for the gateway.
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        Self::spawn(&binary(), dir, args, env)
    }

    fn spawn(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        use std::process::{Command, Stdio};
        let addr: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
        let mut child = Command::new(bin)
            .arg("run")
            .arg("--config-dir")
            .arg(dir)
            .args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--workers", "1", "--no-watch"])
            .args(args)
            .env("SWITCHYARD_LOG", "info")
            .env_remove("SWITCHYARD_ENVIRONMENT")
            .env_remove("ASPNETCORE_ENVIRONMENT")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(admin).is_err() || TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                panic!("switchyard run exited ({status}):\n{}", log.lock().unwrap());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "switchyard never listened"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Running {
            child,
            addr,
            admin,
            log,
        }
    }

    pub fn admin(&self, method: &str, target: &str) -> Resp {
        request(self.admin, method, target, &[], b"")
    }

    pub fn get(&self, target: &str) -> Resp {
        request(self.addr, "GET", target, &[], b"")
    }

    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr, method, target, headers, body)
    }

    /// Waits for a log line containing every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self
                .log
                .lock()
                .unwrap()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `redis-server` on a free loopback port, without persistence; killed when dropped.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(dead_port())
    }

    pub fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &[])
    }

    /// With extra `redis-server` arguments (`--requirepass`, ...).
    pub fn start_with(port: u16, extra: &[&str]) -> Redis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
