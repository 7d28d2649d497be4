//! Route matching and snapshot compile at 10, 1,000 and 10,000 routes.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use switchyard::config::loader::load_dir;
use switchyard::plugins::Registry;
use switchyard::router::Request;
use switchyard::snapshot::{RouteKind, Snapshot, State};

/// A Kong route of each kind, numbered `i`: the request for the `i`th is built alike.
fn kong_prefix(i: usize) -> String {
    format!("  - {{name: p{i}, paths: [/p{i:05}/items]}}\n")
}

fn kong_regex(i: usize) -> String {
    format!("  - {{name: x{i}, paths: ['~/x{i:05}/items/\\d+$']}}\n")
}

fn kong_host(i: usize) -> String {
    format!("  - {{name: h{i}, hosts: ['*.h{i:05}.example.com']}}\n")
}

fn kong_yaml(routes: impl Iterator<Item = String>) -> String {
    let mut s = String::from(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n",
    );
    routes.for_each(|r| s.push_str(&r));
    s
}

/// Ocelot routes with a placeholder each, case-insensitive as Ocelot's default.
fn ocelot_json(ids: impl Iterator<Item = usize>) -> String {
    let routes: Vec<String> = ids
        .map(|i| {
            format!(
                r#"{{"UpstreamPathTemplate": "/o{i:05}/items/{{id}}", "DownstreamPathTemplate": "/items/{{id}}", "DownstreamScheme": "http", "DownstreamHostAndPorts": [{{"Host": "127.0.0.1", "Port": 9}}]}}"#
            )
        })
        .collect();
    format!(r#"{{"Routes": [{}]}}"#, routes.join(",\n"))
}

/// `(file name, contents)` pairs loaded as one directory.
fn snapshot_of(files: &[(&str, String)]) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let loaded = load_dir(dir.path());
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.errors());
    Snapshot::compile(
        loaded.model,
        Vec::new(),
        &Registry::bundled(),
        &State::default(),
        1,
        0,
    )
    .unwrap()
}

/// Each kind alone, and `mixed`: a quarter of each kind in one snapshot, asked for the last
/// route of each; every request matches the last route of its kind.
fn bench_match(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let api = || "api.example.com".to_string();
    for n in [10usize, 1_000, 10_000] {
        let last = n - 1;
        let kong = |f: fn(usize) -> String| vec![("kong.yaml", kong_yaml((0..n).map(f)))];
        let q = n / 4;
        let mixed = vec![
            (
                "kong.yaml",
                kong_yaml(
                    (0..q)
                        .map(kong_prefix)
                        .chain((q..2 * q).map(kong_regex))
                        .chain((2 * q..3 * q).map(kong_host)),
                ),
            ),
            ("ocelot.json", ocelot_json(3 * q..n)),
        ];
        let template = |i: usize| format!("/o{i:05}/items/{{id}}");
        for (kind, files, path, host, want) in [
            (
                "prefix",
                kong(kong_prefix),
                format!("/p{last:05}/items/42"),
                api(),
                format!("p{last}"),
            ),
            (
                "regex",
                kong(kong_regex),
                format!("/x{last:05}/items/42"),
                api(),
                format!("x{last}"),
            ),
            (
                "wildcard-host",
                kong(kong_host),
                "/x".to_string(),
                format!("a.h{last:05}.example.com"),
                format!("h{last}"),
            ),
            (
                "ocelot-template",
                vec![("ocelot.json", ocelot_json(0..n))],
                format!("/o{last:05}/items/42"),
                api(),
                template(last),
            ),
            (
                "mixed-prefix",
                mixed.clone(),
                format!("/p{:05}/items/42", q - 1),
                api(),
                format!("p{}", q - 1),
            ),
            (
                "mixed-regex",
                mixed.clone(),
                format!("/x{:05}/items/42", 2 * q - 1),
                api(),
                format!("x{}", 2 * q - 1),
            ),
            (
                "mixed-wildcard-host",
                mixed.clone(),
                "/x".to_string(),
                format!("a.h{:05}.example.com", 3 * q - 1),
                format!("h{}", 3 * q - 1),
            ),
            (
                "mixed-ocelot-template",
                mixed.clone(),
                format!("/o{last:05}/items/42"),
                api(),
                template(last),
            ),
        ] {
            let snap = snapshot_of(&files);
            let req = Request {
                method: &Method::GET,
                host: &host,
                port: 80,
                path: &path,
                query: None,
                headers: &headers,
                sni: None,
            };
            // The route asked for, not just any: Kong routes by name, Ocelot ones by template.
            let found = snap
                .router
                .find(&req)
                .map(|m| match &snap.routes[m.route].kind {
                    RouteKind::Ocelot(o) => o.template.to_string(),
                    _ => snap.routes[m.route].identity.name.to_string(),
                });
            assert_eq!(
                found.as_deref(),
                Some(want.as_str()),
                "{kind} {n}: {host}{path}"
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
    let registry = Registry::bundled();
    for n in [1_000usize, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kong.yaml"),
            kong_yaml((0..n).map(kong_prefix)),
        )
        .unwrap();
        g.bench_function(format!("load+compile/{n}"), |b| {
            b.iter(|| {
                let loaded = load_dir(dir.path());
                black_box(Snapshot::compile(
                    loaded.model,
                    Vec::new(),
                    &registry,
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
                |m| {
                    let state = State::default();
                    black_box(Snapshot::compile(m, Vec::new(), &registry, &state, 1, 0))
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_match, bench_compile);
criterion_main!(benches);
