//! The command line through the real binary: `check`, `config`, `explain`, and `run`'s
//! refusal to start on a bad config.

mod common;

use std::process::Command;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(d.path().join(n), t).unwrap();
    }
    d
}

fn run(args: &[&str], dir: &tempfile::TempDir) -> (i32, String, String) {
    let out = Command::new(common::binary())
        .args(args)
        .arg("--config-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BROKEN: &str = "_format_version: '3.0'
services:
- name: a
  url: http://127.0.0.1:1
  retries: -1
  routes:
  - name: r1
    paths: ['~/users/(\\d+']
  - name: r2
    paths: [/ok]
    methods: [get]
    stirp_path: true
- name: a
  url: http://127.0.0.1:2
routes:
- {name: r3, service: nowhere, paths: [/x]}
";

#[test]
fn check_lists_every_error_with_position() {
    let d = dir_with(&[("kong.yaml", BROKEN)]);
    let (code, _, err) = run(&["check"], &d);
    assert_eq!(code, 1, "{err}");
    for want in [
        "kong.yaml:5:12: services[0].retries: value should be between 0 and 32767, found -1",
        "kong.yaml:8:13: services[0].routes[0].paths[0]: regex does not compile",
        "kong.yaml:11:15: services[0].routes[1].methods[0]: invalid value: get",
        "kong.yaml:12:5: services[0].routes[1].stirp_path: unknown field `stirp_path`; did you mean `strip_path`?",
        "kong.yaml:13:9: services[1].name: uniqueness violation: 'services' entity with name set to 'a' already declared",
        "kong.yaml:16:23: routes[0].service: invalid reference 'service: nowhere' (no such entry in 'services')",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn check_accepts_a_good_file_and_run_refuses_a_bad_one() {
    let good = dir_with(&[(
        "kong.yaml",
        "_format_version: '3.0'\nservices:\n- {name: a, url: 'http://x', routes: [{name: r, paths: [/]}]}\n",
    )]);
    let (code, out, err) = run(&["check"], &good);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 service(s), 1 route(s)"), "{out}");

    let bad = dir_with(&[("kong.yaml", BROKEN)]);
    let (code, _, err) = run(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &bad,
    );
    assert_ne!(code, 0);
    assert!(err.contains("kong.yaml:8:13"), "{err}");
}

#[test]
fn syntax_errors_have_positions() {
    let d = dir_with(&[(
        "kong.yaml",
        "_format_version: '3.0'\nservices:\n  - name: a\n   url: x\n",
    )]);
    let (code, _, err) = run(&["check"], &d);
    assert_eq!(code, 1);
    assert!(err.starts_with("kong.yaml:4:"), "{err}");
}

#[test]
fn config_prints_defaults() {
    let d = dir_with(&[(
        "kong.yaml",
        "_format_version: '3.0'\nservices:\n- {name: a, url: 'https://api.test/v1', routes: [{name: r, paths: [/]}]}\n",
    )]);
    let (code, out, err) = run(&["config"], &d);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v["kong"]["services"][0];
    assert_eq!(s["protocol"], "https");
    assert_eq!(s["port"], 443);
    assert_eq!(s["path"], "/v1");
    assert_eq!(s["retries"], 5);
    assert_eq!(s["connect_timeout"], 60000);
    let r = &s["routes"][0];
    assert_eq!(r["strip_path"], true);
    assert_eq!(r["preserve_host"], false);
    assert_eq!(r["path_handling"], "v0");
    assert_eq!(r["https_redirect_status_code"], 426);
    assert_eq!(r["protocols"], serde_json::json!(["http", "https"]));
}

#[test]
fn explain_names_the_winner_and_the_losers() {
    let d = dir_with(&[(
        "kong.yaml",
        "_format_version: '3.0'
services:
- name: s
  url: http://x
  routes:
  - {name: short, paths: [/api]}
  - {name: long, paths: [/api/v1]}
  - {name: posts-only, paths: [/api/v1/users], methods: [POST]}
  - {name: other, paths: [/else]}
",
    )]);
    let (code, out, err) = run(&["explain", "GET", "http://example.com/api/v1/users"], &d);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("matched: route long"), "{out}");
    let short = out.find("route short").expect(&out);
    let posts = out.find("route posts-only").expect(&out);
    assert!(posts < short, "precedence order: {out}");
    assert!(
        out.contains("posts-only") && out.contains("method does not match"),
        "{out}"
    );
    assert!(out.contains("also matches, but ranks lower"), "{out}");
    assert!(!out.contains("route other"), "{out}");
}
