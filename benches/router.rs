//! Route matching and snapshot compile at 10, 1,000 and 10,000 routes.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use switchyard::config::loader::load_dir;
use switchyard::router::Request;
use switchyard::snapshot::{Snapshot, State};

fn kong_prefix_config(n: usize) -> String {
    let mut s = String::from(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n",
    );
    for i in 0..n {
        s.push_str(&format!("  - {{name: r{i}, paths: [/r{i:05}/items]}}\n"));
    }
    s
}

fn kong_regex_config(n: usize) -> String {
    let mut s = String::from(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  - {{name: r{i}, paths: ['~/r{i:05}/items/\\d+$']}}\n"
        ));
    }
    s
}

fn kong_host_config(n: usize) -> String {
    let mut s = String::from(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  - {{name: r{i}, hosts: ['*.h{i:05}.example.com']}}\n"
        ));
    }
    s
}

fn snapshot_of(kong: &str) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong).unwrap();
    let loaded = load_dir(dir.path());
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.errors());
    Snapshot::compile(loaded.model, Vec::new(), &State::default(), 1, 0)
}

fn bench_match(c: &mut Criterion) {
    let headers = HeaderMap::new();
    for n in [10usize, 1_000, 10_000] {
        let last = n - 1;
        for (kind, config, path, host) in [
            (
                "prefix",
                kong_prefix_config(n),
                format!("/r{last:05}/items/42"),
                "api.example.com".to_string(),
            ),
            (
                "regex",
                kong_regex_config(n),
                format!("/r{last:05}/items/42"),
                "api.example.com".to_string(),
            ),
            (
                "wildcard-host",
                kong_host_config(n),
                "/x".to_string(),
                format!("a.h{last:05}.example.com"),
            ),
        ] {
            let snap = snapshot_of(&config);
            let req = Request {
                method: &Method::GET,
                host: &host,
                port: 80,
                path: &path,
                query: None,
                headers: &headers,
            };
            assert!(
                snap.router.find(&req).is_some(),
                "{kind} {n}: no match for {path}"
            );
            c.bench_function(&format!("match/{kind}/{n}/last"), |b| {
                b.iter(|| black_box(snap.router.find(black_box(&req))))
            });
        }
    }
}

/// The reload path at 1k and 10k routes, whole and split: `load` (read, YAML parse, spanned
/// tree, deserialize, validate, model), `compile` (model to snapshot: router, chains,
/// destinations) and `load+compile`, which is what a reload pays before the swap.
fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in [1_000usize, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kong.yaml"), kong_prefix_config(n)).unwrap();
        g.bench_function(format!("load+compile/{n}"), |b| {
            b.iter(|| {
                let loaded = load_dir(dir.path());
                black_box(Snapshot::compile(
                    loaded.model,
                    Vec::new(),
                    &State::default(),
                    1,
                    0,
                ))
            })
        });
        g.bench_function(format!("load/{n}"), |b| {
            b.iter(|| black_box(load_dir(dir.path())))
        });
        let model = load_dir(dir.path()).model;
        g.bench_function(format!("compile/{n}"), |b| {
            b.iter_batched(
                || model.clone(),
                |m| black_box(Snapshot::compile(m, Vec::new(), &State::default(), 1, 0)),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_match, bench_compile);
criterion_main!(benches);
