//! `proxy-cache` (strategy memory) through the real server stack: a real upstream on port 0
//! that answers what the path asks for (status, headers, body size) and counts what reaches
//! it, and the gateway in-process on port 0. The behaviours follow Kong's
//! `spec/03-plugins/31-proxy-cache/02-access_spec.lua` and the `proxy-cache-*` conformance
//! cases.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const ROUTE_ID: &str = "5f0a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b";

/// An upstream that answers by its path's segments: `/status/NNN` (the status),
/// `/resp-header/Name:value` (a response header, value percent-decoded; it may replace the
/// default `Content-Type: application/json`), `/big/N` (a text/plain body of N bytes sent
/// in pieces, chunked). Otherwise the body is `{"path": ..., "n": <request number>}`, so a
/// cached body is told from a fresh one.
struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// `/slow` sends its first piece, then waits for this before the rest.
    release: Arc<AtomicBool>,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<AtomicUsize> = Arc::default();
        let release: Arc<AtomicBool> = Arc::default();
        let (count, gate) = (hits.clone(), release.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (count, gate) = (count.clone(), gate.clone());
                std::thread::spawn(move || serve(stream, &count, &gate));
            }
        });
        Origin {
            addr,
            hits,
            release,
        }
    }

    fn count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, hits: &AtomicUsize, release: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("/").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = if target.starts_with("/slow") {
            slow(&mut out, release)
        } else {
            answer(&mut out, &method, &target, n)
        };
        if sent.is_err() {
            return;
        }
    }
}

fn answer(out: &mut TcpStream, method: &str, target: &str, n: usize) -> std::io::Result<()> {
    let path = target.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').collect();
    let mut status = 200;
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let mut big = None;
    for w in segments.windows(2) {
        match w[0] {
            "status" => status = w[1].parse().unwrap(),
            "big" => big = Some(w[1].parse::<usize>().unwrap()),
            "resp-header" => {
                let (k, v) = w[1].split_once(':').unwrap();
                let v = decode(v);
                headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
                headers.push((k.to_string(), v));
            }
            _ => {}
        }
    }
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    if let Some(size) = big {
        headers.retain(|(k, _)| k != "Content-Type");
        headers.push(("Content-Type".into(), "text/plain".into()));
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        out.write_all(head.as_bytes())?;
        if method == "HEAD" {
            return Ok(());
        }
        // In pieces, flushed one by one: the gateway sees the body arrive over time.
        let piece = vec![b'x'; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let k = left.min(piece.len());
            out.write_all(format!("{k:x}\r\n").as_bytes())?;
            out.write_all(&piece[..k])?;
            out.write_all(b"\r\n")?;
            left -= k;
        }
        return out.write_all(b"0\r\n\r\n");
    }
    let body = serde_json::json!({ "path": target, "n": n }).to_string();
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// `first` in one chunk, then (once released, or after 5 s) `second` and the end.
fn slow(out: &mut TcpStream, release: &AtomicBool) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    )?;
    out.flush()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    out.write_all(b"6\r\nsecond\r\n0\r\n\r\n")
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A Kong config with one service on `origin` and one route per `(name, path, config)`,
/// each with proxy-cache (strategy memory plus `config`, a YAML flow mapping's inside).
fn kong(origin: &Origin, routes: &[(&str, &str, &str)]) -> String {
    let mut s = format!(
        "_format_version: '3.0'\nservices:\n- name: s1\n  url: http://{}\n  routes:\n",
        origin.addr
    );
    for (i, (name, path, config)) in routes.iter().enumerate() {
        let id = if i == 0 {
            format!(", id: {ROUTE_ID}")
        } else {
            String::new()
        };
        let sep = if config.is_empty() { "" } else { ", " };
        s.push_str(&format!(
            "  - {{name: {name}{id}, paths: ['{path}'], strip_path: false, plugins: [{{name: proxy-cache, config: {{strategy: memory{sep}{config}}}}}]}}\n"
        ));
    }
    s
}

fn get(gw: &TestGateway, target: &str, headers: &[(&str, &str)]) -> Resp {
    gw.send("GET", target, headers, b"")
}

fn status(r: &Resp) -> &str {
    r.header("x-cache-status").unwrap_or("<none>")
}

fn sha256_hex(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn miss_then_hit_answers_without_the_upstream() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(&origin, &[("r1", "/", "")]));

    let first = get(&gw, "/pc", &[]);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(status(&first), "Miss");
    assert_eq!(first.header("age"), None);
    // Kong's key: sha256 of route id, method, the request line (no query: with its
    // version), and the empty query and header parts.
    let key = sha256_hex(&format!("{ROUTE_ID}|GET|GET /pc HTTP/1.1||"));
    assert_eq!(first.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(first.json()["n"], 1);

    let second = get(&gw, "/pc", &[]);
    assert_eq!(second.status, 200);
    assert_eq!(status(&second), "Hit");
    assert_eq!(second.header("x-cache-key"), Some(key.as_str()));
    assert_eq!(second.header("content-type"), Some("application/json"));
    let age: u64 = second.header("age").expect("Age on a hit").parse().unwrap();
    assert!(age <= 1, "{age}");
    assert_eq!(second.body, first.body, "the stored body");
    assert_eq!(origin.count(), 1, "a hit never reaches the upstream");

    // With a query, the request line part stops at the '?', and the arguments count.
    let q = get(&gw, "/pc?b=2&a=1", &[]);
    assert_eq!(status(&q), "Miss");
    let key = sha256_hex(&format!("{ROUTE_ID}|GET|GET /pc|a=1:b=2|"));
    assert_eq!(q.header("x-cache-key"), Some(key.as_str()));
    let q = get(&gw, "/pc?a=1&b=2", &[]);
    assert_eq!(status(&q), "Hit", "argument order does not matter");
    assert_eq!(status(&get(&gw, "/pc?a=2&b=2", &[])), "Miss");
    assert_eq!(origin.count(), 3);
}

#[test]
fn uncacheable_requests_and_responses_bypass() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(
        &origin,
        &[
            ("r1", "/", ""),
            ("only200", "/only200", "response_code: [200]"),
        ],
    ));

    for _ in 0..2 {
        let r = gw.send("POST", "/pc", &[], b"a");
        assert_eq!(r.status, 200);
        assert_eq!(status(&r), "Bypass");
        assert_eq!(
            r.header("x-cache-key"),
            None,
            "no key for a bypassed request"
        );
    }
    assert_eq!(origin.count(), 2);

    // Status, content type (Kong matches it exactly, parameters included): not stored.
    for target in [
        "/only200/status/418/resp-header/Content-Type:text%2Fplain",
        "/pc/resp-header/Content-Type:text%2Fhtml",
        "/pc/resp-header/Content-Type:application%2Fjson%3B%20charset%3Dutf-8",
        "/pc/status/500",
    ] {
        let before = origin.count();
        for _ in 0..2 {
            let r = get(&gw, target, &[]);
            assert_eq!(status(&r), "Bypass", "{target}");
            assert!(r.header("x-cache-key").is_some(), "{target}");
        }
        assert_eq!(origin.count(), before + 2, "{target}");
    }
    let r = get(
        &gw,
        "/only200/status/418/resp-header/Content-Type:text%2Fplain",
        &[],
    );
    assert_eq!(r.status, 418);

    // 404 is cacheable by default.
    assert_eq!(status(&get(&gw, "/pc/status/404", &[])), "Miss");
    let r = get(&gw, "/pc/status/404", &[]);
    assert_eq!((r.status, status(&r)), (404, "Hit"));
}

#[test]
fn vary_query_params_and_headers_make_separate_entries() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(
        &origin,
        &[
            ("lang", "/lang", "vary_headers: [x-lang]"),
            ("page", "/page", "vary_query_params: [page]"),
        ],
    ));

    let en = get(&gw, "/lang", &[("X-Lang", "en")]);
    assert_eq!(status(&en), "Miss");
    assert_eq!(status(&get(&gw, "/lang", &[("X-Lang", "fr")])), "Miss");
    let again = get(&gw, "/lang", &[("X-Lang", "en")]);
    assert_eq!(status(&again), "Hit");
    assert_eq!(again.body, en.body);
    assert_eq!(status(&get(&gw, "/lang", &[])), "Miss");
    assert_eq!(origin.count(), 3);

    assert_eq!(status(&get(&gw, "/page?page=1&x=1", &[])), "Miss");
    assert_eq!(status(&get(&gw, "/page?page=2&x=1", &[])), "Miss");
    // Only `page` counts: other arguments do not make another entry.
    let r = get(&gw, "/page?x=9&page=1", &[]);
    assert_eq!(status(&r), "Hit");
    assert_eq!(r.json()["path"], "/page?page=1&x=1");
    assert_eq!(origin.count(), 5);
}

#[test]
fn cache_ttl_expires_and_storage_ttl_keeps_stale_entries_for_refresh() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(
        &origin,
        &[
            ("short", "/short", "cache_ttl: 1"),
            ("kept", "/kept", "cache_ttl: 1, storage_ttl: 60"),
            ("cc", "/cc", "cache_control: true"),
        ],
    ));
    let cc1 = "/cc/resp-header/Cache-Control:max-age%3D1";
    for target in ["/short", "/kept", cc1] {
        assert_eq!(status(&get(&gw, target, &[])), "Miss", "{target}");
        assert_eq!(status(&get(&gw, target, &[])), "Hit", "{target}");
    }
    assert_eq!(origin.count(), 3);
    std::thread::sleep(Duration::from_millis(2200));
    // Stored for cache_ttl (or the response's max-age): gone.
    assert_eq!(status(&get(&gw, "/short", &[])), "Miss");
    assert_eq!(status(&get(&gw, cc1, &[])), "Miss");
    // Stored for storage_ttl, older than cache_ttl: fetched again.
    let r = get(&gw, "/kept", &[]);
    assert_eq!(status(&r), "Refresh");
    assert_eq!(r.json()["n"].as_u64(), Some(6));
    let r = get(&gw, "/kept", &[]);
    assert_eq!(status(&r), "Hit");
    assert_eq!(r.json()["n"].as_u64(), Some(6), "the refreshed entry");
    assert_eq!(origin.count(), 6);
}

#[test]
fn cache_control_of_requests_and_responses() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(&origin, &[("cc", "/", "cache_control: true")]));
    let max60 = "/a/resp-header/Cache-Control:max-age%3D60";

    // Without a lifetime from the response, nothing is stored.
    assert_eq!(status(&get(&gw, "/none", &[])), "Bypass");
    assert_eq!(status(&get(&gw, "/none", &[])), "Bypass");
    for target in [
        "/b/resp-header/Cache-Control:no-store%2C%20max-age%3D60",
        "/c/resp-header/Cache-Control:private%2C%20max-age%3D60",
        "/d/resp-header/Cache-Control:no-cache%2C%20max-age%3D60",
        "/e/resp-header/Cache-Control:max-age%3D0",
    ] {
        assert_eq!(status(&get(&gw, target, &[])), "Bypass", "{target}");
        assert_eq!(status(&get(&gw, target, &[])), "Bypass", "{target}");
    }
    assert_eq!(origin.count(), 10);

    // max-age, s-maxage and Expires give a lifetime.
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    let expires = format!("/f/resp-header/Expires:{}", later.replace(' ', "%20"));
    for target in [
        max60,
        "/g/resp-header/Cache-Control:s-maxage%3D60",
        &expires,
    ] {
        assert_eq!(status(&get(&gw, target, &[])), "Miss", "{target}");
        assert_eq!(status(&get(&gw, target, &[])), "Hit", "{target}");
    }
    assert_eq!(origin.count(), 13);

    // The request's no-cache and no-store bypass the cache (Kong's cacheable_request).
    for cc in ["no-cache", "no-store"] {
        let r = get(&gw, max60, &[("Cache-Control", cc)]);
        assert_eq!(status(&r), "Bypass", "{cc}");
    }
    assert_eq!(origin.count(), 15);
    // min-fresh beyond what is left of the entry's 60 s: fetched again and stored anew.
    let r = get(&gw, max60, &[("Cache-Control", "min-fresh=120")]);
    assert_eq!(status(&r), "Refresh");
    assert_eq!(origin.count(), 16);
    let r = get(&gw, max60, &[]);
    assert_eq!(status(&r), "Hit");
    assert_eq!(r.json()["n"].as_u64(), Some(16), "the refreshed entry");
    // A max-age the entry satisfies: a hit.
    assert_eq!(
        status(&get(&gw, max60, &[("Cache-Control", "max-age=30")])),
        "Hit"
    );

    // only-if-cached with nothing stored: 504, and the upstream is not asked.
    let r = get(&gw, "/h", &[("Cache-Control", "only-if-cached")]);
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-cache-status"), None);
    assert!(r.header("x-cache-key").is_some());
    let r = get(&gw, max60, &[("Cache-Control", "only-if-cached")]);
    assert_eq!((r.status, status(&r)), (200, "Hit"));
    assert_eq!(origin.count(), 16);
}

#[test]
fn diagnostic_headers_follow_the_config_or_kong_debug() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(
        &origin,
        &[(
            "quiet",
            "/",
            "response_headers: {age: false, X-Cache-Status: false, X-Cache-Key: false}",
        )],
    ));
    for _ in 0..2 {
        let r = get(&gw, "/q", &[]);
        assert_eq!(r.status, 200);
        for h in ["age", "x-cache-status", "x-cache-key"] {
            assert_eq!(r.header(h), None, "{h}");
        }
    }
    assert_eq!(origin.count(), 1, "still cached");
    let r = get(&gw, "/q", &[("Kong-Debug", "1")]);
    assert_eq!(status(&r), "Hit");
    assert!(r.header("age").is_some() && r.header("x-cache-key").is_some());
}

#[test]
fn bodies_stream_and_only_those_within_the_entry_limit_are_stored() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(&origin, &[("r1", "/", "content_type: [text/plain]")]));

    // 1 MiB arrives in 64 KiB pieces: stored whole.
    let size = 1 << 20;
    let target = format!("/big/{size}");
    let first = get(&gw, &target, &[]);
    assert_eq!((first.status, status(&first)), (200, "Miss"));
    assert_eq!(first.body.len(), size);
    let second = get(&gw, &target, &[]);
    assert_eq!(status(&second), "Hit");
    assert_eq!(second.body, first.body);
    assert_eq!(origin.count(), 1);

    // Past the entry limit: the client still gets every byte; nothing is stored.
    let size = switchyard::plugins::proxy_cache::MAX_ENTRY + 1;
    let target = format!("/big/{size}");
    for _ in 0..2 {
        let r = get(&gw, &target, &[]);
        assert_eq!((r.status, status(&r)), (200, "Miss"));
        assert_eq!(r.body.len(), size);
        assert!(r.body.iter().all(|b| *b == b'x'));
    }
    assert_eq!(origin.count(), 3);
}

/// Waits until the gateway serves a snapshot newer than `version`.
fn wait_for_version(gw: &TestGateway, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.gateway.snapshot().version <= version {
        assert!(Instant::now() < deadline, "no reload after the edit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rewrite(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn entries_outlive_a_reload_with_the_same_config_and_not_a_changed_one() {
    let origin = Origin::start();
    let base = kong(&origin, &[("r1", "/", "cache_ttl: 300")]);
    let gw = TestGateway::start_watched(&[("kong.yaml", &base)], None);
    let file = gw.path().join("kong.yaml");
    assert_eq!(status(&get(&gw, "/pc", &[])), "Miss");
    assert_eq!(status(&get(&gw, "/pc", &[])), "Hit");

    // A touch (same bytes) and then a real edit elsewhere in the file: the cache stays.
    let v = gw.gateway.snapshot().version;
    rewrite(&file, &base);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&get(&gw, "/pc", &[])), "Hit");
    let edited = format!("{base}  - {{name: other, paths: ['/other'], strip_path: false}}\n");
    rewrite(&file, &edited);
    wait_for_version(&gw, v);
    assert_eq!(get(&gw, "/other", &[]).status, 200, "the edit is served");
    let r = get(&gw, "/pc", &[]);
    assert_eq!(
        status(&r),
        "Hit",
        "kept across a reload with the same config"
    );
    assert_eq!(r.json()["n"].as_u64(), Some(1));
    assert_eq!(origin.count(), 2);
    assert_eq!(entries(&gw), 1);

    // The plugin's config changes: its entries are gone.
    let v = gw.gateway.snapshot().version;
    rewrite(&file, &edited.replace("cache_ttl: 300", "cache_ttl: 200"));
    wait_for_version(&gw, v);
    let r = get(&gw, "/pc", &[]);
    assert_eq!(status(&r), "Miss", "a changed config starts empty");
    assert_eq!(status(&get(&gw, "/pc", &[])), "Hit");
    // /pc twice and /other once before, /pc once now.
    assert_eq!(origin.count(), 3);
    // The old config's entry leaves the store once the old snapshot is retired.
    let deadline = Instant::now() + Duration::from_secs(5);
    while entries(&gw) != 1 {
        assert!(Instant::now() < deadline, "{} entries", entries(&gw));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Entries in the gateway's (process-wide) cache store.
fn entries(gw: &TestGateway) -> usize {
    use switchyard::plugins::proxy_cache::{STORE_KEY, Store};
    gw.gateway.state.kept::<Store>(STORE_KEY).usage().0
}

#[test]
fn head_requests_are_cached_without_a_body() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(&origin, &[("r1", "/", "")]));
    let r = gw.send("HEAD", "/h", &[], b"");
    assert_eq!((r.status, status(&r)), (200, "Miss"));
    let r = gw.send("HEAD", "/h", &[], b"");
    assert_eq!((r.status, status(&r)), (200, "Hit"));
    assert_eq!(origin.count(), 1);
    // GET is another key: its own entry, with its body.
    let r = get(&gw, "/h", &[]);
    assert_eq!(status(&r), "Miss");
    assert_eq!(r.json()["n"], 2);
    assert_eq!(get(&gw, "/h", &[]).json()["n"], 2);
}

#[test]
fn authenticated_requests_are_cached_per_consumer() {
    let origin = Origin::start();
    let yaml = format!(
        "_format_version: '3.0'
services:
- name: s1
  url: http://{}
  routes:
  - name: r1
    id: {ROUTE_ID}
    paths: ['/']
    plugins:
    - name: key-auth
    - name: proxy-cache
      config: {{strategy: memory}}
consumers:
- {{username: alice, id: 11111111-1111-4111-8111-111111111111, keyauth_credentials: [{{key: alice-key}}]}}
- {{username: bob, keyauth_credentials: [{{key: bob-key}}]}}
",
        origin.addr
    );
    let gw = TestGateway::kong(&yaml);

    // Rejected before the cache runs: no cache headers at all.
    let r = get(&gw, "/p", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-cache-status"), None);
    assert_eq!(origin.count(), 0);

    let alice = get(&gw, "/p", &[("apikey", "alice-key")]);
    assert_eq!(status(&alice), "Miss");
    let key = sha256_hex(&format!(
        "11111111-1111-4111-8111-111111111111:{ROUTE_ID}|GET|GET /p HTTP/1.1||"
    ));
    assert_eq!(alice.header("x-cache-key"), Some(key.as_str()));
    let bob = get(&gw, "/p", &[("apikey", "bob-key")]);
    assert_eq!(status(&bob), "Miss", "another consumer, another entry");
    assert_ne!(bob.header("x-cache-key"), alice.header("x-cache-key"));
    assert_eq!(status(&get(&gw, "/p", &[("apikey", "alice-key")])), "Hit");
    assert_eq!(status(&get(&gw, "/p", &[("apikey", "bob-key")])), "Hit");
    assert_eq!(origin.count(), 2);
}

#[test]
fn a_miss_streams_to_the_client_before_the_upstream_has_finished() {
    let origin = Origin::start();
    let gw = TestGateway::kong(&kong(&origin, &[("r1", "/", "content_type: [text/plain]")]));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // The first piece arrives while the upstream still holds the rest: nothing waits
    // for the whole body.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = s
            .read(&mut buf)
            .expect("the first piece before the upstream finished");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("x-cache-status: Miss"));
    assert!(!String::from_utf8_lossy(&seen).contains("second"));
    origin.release.store(true, Ordering::SeqCst);
    s.read_to_end(&mut seen).unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("second"));

    // Stored once the body ended: whole.
    let r = get(&gw, "/slow", &[]);
    assert_eq!(status(&r), "Hit");
    assert_eq!(r.text(), "firstsecond");
    assert_eq!(origin.count(), 1);
}

#[test]
fn every_worker_thread_shares_one_store() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kong.yaml"),
        kong(&origin, &[("r1", "/", "")]),
    )
    .unwrap();
    let (gateway, _) = switchyard::gateway::Builder::new()
        .start(dir.path().to_path_buf())
        .unwrap_or_else(|_| panic!("config rejected"));
    // Four workers on one port (SO_REUSEPORT): the kernel spreads the connections.
    let (bound, listeners) =
        switchyard::proxy::server::bind_all(&["127.0.0.1:0".parse().unwrap()], 4).unwrap();
    switchyard::proxy::server::spawn_workers(gateway, listeners);
    let addr = bound[0];

    let first = request(addr, "GET", "/shared", &[], b"");
    assert_eq!(status(&first), "Miss");
    // Forty connections from four client threads: each is a hit, whichever worker took it.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let r = request(addr, "GET", "/shared", &[], b"");
                        (r.header("x-cache-status").map(str::to_string), r.body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        for (st, body) in c.join().unwrap() {
            assert_eq!(st.as_deref(), Some("Hit"));
            assert_eq!(body, first.body);
        }
    }
    assert_eq!(origin.count(), 1);
}
