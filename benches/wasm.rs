//! The per-request CPU cost of a Proxy-Wasm filter chain: the hooks one request runs
//! (access: context_create + on_request_headers; response_head: on_response_headers; log:
//! on_done, on_log, on_delete) on a warm per-thread instance of the SDK-built test filter
//! (`filters/`), against the same request through a chain-free plugin.
//!
//! ```text
//! cargo bench --bench wasm
//! ```
//!
//! `noop` is the filter with no config (every hook returns Continue); `headers` adds one
//! request header and one response header (the issue's budget: 5 µs per request).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, StatusCode, Version};
use switchyard::exchange::{Answered, Ctx, LogEntry, Request, RequestId, ResponseHead};
use switchyard::plugins::Plugin;

/// Builds the test filter crate (as tests/wasm.rs does); the module's path.
fn testkit() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-filters");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .arg("--manifest-path")
        .arg(root.join("filters/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo for the test filters");
    assert!(status.success(), "building filters/ failed");
    target.join("wasm32-unknown-unknown/release/switchyard_test_filters.wasm")
}

/// A plugin that does nothing: the request's own cost, to subtract.
struct Nothing;

impl Plugin for Nothing {
    fn name(&self) -> &str {
        "nothing"
    }
    fn priority(&self) -> i32 {
        0
    }
}

/// One request's hooks through `p`.
fn request(p: &dyn Plugin, addr: SocketAddr) {
    let (mut parts, ()) = http::Request::get("/bench?x=1")
        .header("host", "example.com")
        .header("user-agent", "bench")
        .body(())
        .unwrap()
        .into_parts();
    let mut ctx = Ctx::new(RequestId::new(), addr, addr, Instant::now());
    let (mut body, mut upstream_path) = (None, None);
    let mut req = Request::new(&mut parts, &mut body, &mut upstream_path);
    let _ = p.access(&mut ctx, &mut req);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let mut head = ResponseHead::new(StatusCode::OK, Version::HTTP_11, &mut headers, None);
    p.response_head(&mut ctx, &mut head);
    let entry = LogEntry {
        method: http::Method::GET,
        path: "/bench".into(),
        status: StatusCode::OK,
        bytes_sent: 0,
        upstream_latency: None,
        latency: std::time::Duration::ZERO,
        source: Answered::Upstream,
    };
    p.log(&ctx, &entry);
    std::hint::black_box(&parts);
}

/// Resident memory, from /proc (Linux).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testkit(), dir.path().join("testkit.wasm")).unwrap();
    let mut loader = switchyard::wasm::Loader::new(dir.path().to_path_buf());
    let mut chain = |config: &'static str| {
        let t = Instant::now();
        let f = loader
            .filter("testkit", Bytes::from_static(config.as_bytes()), false)
            .unwrap();
        eprintln!("load of testkit ({config:?}): {:?}", t.elapsed());
        switchyard::wasm::FilterChain::new(vec![f])
    };
    // The first load compiles (cranelift); the second finds the module by its hash.
    let noop = chain("");
    let headers = chain("req-header=x-a:1 resp-header=x-b:1");
    let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
    // A thread's first request makes its instance: what that adds to the resident set.
    let mut grew = Vec::new();
    for _ in 0..4 {
        let before = rss_kib();
        std::thread::scope(|s| {
            s.spawn(|| {
                request(&headers, addr);
                grew.push(rss_kib().saturating_sub(before));
            });
        });
    }
    eprintln!("resident memory per worker instance (KiB, 4 threads): {grew:?}");
    let mut g = c.benchmark_group("wasm_request");
    g.bench_function("no_chain", |b| b.iter(|| request(&Nothing, addr)));
    g.bench_function("noop", |b| b.iter(|| request(&noop, addr)));
    g.bench_function("headers", |b| b.iter(|| request(&headers, addr)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
