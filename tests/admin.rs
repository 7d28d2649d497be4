//! The admin listener through the real binary: readiness, status, the serving config, and
//! `POST /reload` swapping a good edit in and refusing a bad one while the old config serves.

mod common;

use common::*;

fn kong(up: &Upstream, paths: &[&str]) -> String {
    let mut s = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n",
        up.addr()
    );
    for p in paths {
        s.push_str(&format!("  - {{name: r{}, paths: [{p}]}}\n", &p[1..]));
    }
    s
}

#[test]
fn status_ready_and_config_describe_the_serving_snapshot() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong(&up, &["/a", "/b"])).unwrap();
    let gw = Running::start(dir.path(), &[]);

    let ready = gw.admin("GET", "/status/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["version"], 1);

    let status = gw.admin("GET", "/status").json();
    assert_eq!(status["version"], 1);
    assert_eq!(status["counts"]["services"], 1);
    assert_eq!(status["counts"]["routes"], 2);
    assert_eq!(status["last_reload"], serde_json::Value::Null);
    let hash = status["configuration_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 16, "{hash}");

    let config = gw.admin("GET", "/config").json();
    let routes = config["kong"]["services"][0]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2, "{config}");
    assert_eq!(routes[0]["name"], "ra");

    // Known paths refuse other methods with the one they take; unknown paths are 404.
    let r = gw.admin("GET", "/reload");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = gw.admin("DELETE", "/config");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    assert_eq!(gw.admin("HEAD", "/status").status, 200);
    assert_eq!(gw.admin("GET", "/nope").status, 404);
}

#[test]
fn post_reload_swaps_a_good_edit_and_refuses_a_bad_one() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    std::fs::write(&file, kong(&up, &["/a"])).unwrap();
    let gw = Running::start(dir.path(), &[]);
    assert_eq!(gw.get("/b").status, 404);

    // The answer comes once the new snapshot serves: the very next request sees it.
    std::fs::write(&file, kong(&up, &["/a", "/b"])).unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"ok": true, "version": 2}));
    assert_eq!(gw.get("/b").status, 200);
    assert!(
        gw.logged(&["reloaded", "version=2", "routes=+1 -0 ~0"]),
        "no reload line in:\n{}",
        gw.log.lock().unwrap()
    );

    // A log collector gets plain text, not a terminal's colours.
    assert!(
        !gw.log.lock().unwrap().contains('\x1b'),
        "escape codes in the log"
    );

    // Nothing changed: no new version.
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.json(), serde_json::json!({"ok": true, "version": 2}));

    // A bad edit: 422 with every error located, and the old config keeps serving.
    std::fs::write(
        &file,
        kong(&up, &["/a", "/b"]) + "  - {name: bad, paths: [nope], methods: [get]}\n",
    )
    .unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!((&body["ok"], &body["version"]), (&false.into(), &2.into()));
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.starts_with("kong.yaml:8:")),
        "{errors:?}"
    );
    assert_eq!(gw.get("/b").status, 200);
    let status = gw.admin("GET", "/status").json();
    assert_eq!(status["version"], 2);
    assert_eq!(status["last_reload"]["ok"], false);
    assert_eq!(status["last_reload"]["errors"].as_array().unwrap().len(), 2);

    // The next good edit recovers.
    std::fs::write(&file, kong(&up, &["/c"])).unwrap();
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.json(), serde_json::json!({"ok": true, "version": 3}));
    assert_eq!((gw.get("/c").status, gw.get("/b").status), (200, 404));
}
