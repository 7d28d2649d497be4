//! `examples/custom_plugin.rs` run as its users run it: the same command line as
//! `switchyard`, with one plugin more. A real file from the corpus that names the plugin loads
//! with that build and is refused by plain `switchyard`; the plugin's config errors read like
//! a bundled plugin's; and the plugin serves.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// The example's binary, beside the `switchyard` binary: `cargo test` builds examples; a
/// run of this test alone builds it here.
fn example() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let bin = binary();
    let path = bin
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("custom_plugin{}", std::env::consts::EXE_SUFFIX));
    BUILT.call_once(|| {
        if path.exists() {
            return;
        }
        let release = bin.parent().unwrap().ends_with("release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--example", "custom_plugin"]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().unwrap();
        assert!(status.success(), "building the example failed");
    });
    path
}

fn check(bin: &std::path::Path, dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin)
        .arg("check")
        .arg("--config-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

fn dir_with(kong: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong).unwrap();
    dir
}

#[test]
fn the_example_loads_a_real_file_that_plain_switchyard_refuses() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/realworld/kong/eic-cefet__kong__config_kong.yml");
    let Ok(text) = std::fs::read_to_string(&corpus) else {
        return eprintln!("no ../shared/realworld: skipped");
    };
    let dir = dir_with(&text);
    let (ok, out) = check(&binary(), dir.path());
    assert!(!ok);
    assert!(out.contains("plugin 'go-powered-by' not enabled"), "{out}");
    let (ok, out) = check(&example(), dir.path());
    assert!(ok, "{out}");
}

#[test]
fn the_example_checks_its_plugins_config_like_a_bundled_one() {
    let kong = "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:1\n  routes:\n  - name: r\n    paths: [/]\n    plugins:\n    - name: go-powered-by\n      config: {header: 'not a header', powered_by: x}\n";
    let dir = dir_with(kong);
    let (ok, out) = check(&example(), dir.path());
    assert!(!ok);
    for want in [
        "kong.yaml:10:52: services[0].routes[0].plugins[0].config.powered_by: plugin 'go-powered-by': unknown field `powered_by`; did you mean `poweredby`?",
        "kong.yaml:10:15: services[0].routes[0].plugins[0].config: plugin 'go-powered-by': missing field `poweredby`",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
}

#[test]
fn the_example_serves_its_plugin() {
    let up = Upstream::echo();
    let kong = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes:\n  - name: powered\n    paths: [/powered]\n    plugins: [{{name: go-powered-by, config: {{poweredby: EIC Kong}}}}]\n  - name: plain\n    paths: [/plain]\n",
        up.addr()
    );
    let dir = dir_with(&kong);
    let gw = Running::start_bin(&example(), dir.path(), &[]);
    let r = gw.get("/powered");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-powered-by"), Some("EIC Kong"));
    let r = gw.get("/plain");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-powered-by"), None);
}
