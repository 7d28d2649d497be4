//! Prints the process RSS while reloading a 1,000-route config many times: a quick way to
//! tell a leak (steady growth) from allocator settling (growth that stops).
//!
//! cargo run --release --example reload_rss -- 3000

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4
}

fn config(n: usize) -> String {
    let mut s = String::from(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n",
    );
    for i in 0..n {
        s.push_str(&format!("  - {{name: v{i}, paths: [/v{i}/]}}\n"));
    }
    s
}

fn main() {
    let reloads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let kong = dir.path().join("kong.yaml");
    std::fs::write(&kong, config(1000)).unwrap();
    let (gw, _) = switchyard::gateway::Builder::new()
        .start(dir.path().to_path_buf())
        .unwrap();
    for i in 0..reloads {
        std::fs::write(&kong, config(if i % 2 == 0 { 999 } else { 1000 })).unwrap();
        assert!(gw.reload().ok);
        if i % (reloads / 10).max(1) == 0 {
            println!("reload {i:5}: RSS {} KiB", rss_kib());
        }
    }
    println!("reload {reloads:5}: RSS {} KiB", rss_kib());
}
