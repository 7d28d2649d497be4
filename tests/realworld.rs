//! Real users' files (`../shared/realworld/`, copied from public repositories) must load. Each
//! one Kong or Ocelot would refuse too is listed here with the error switchyard gives; every
//! other file must pass `switchyard check`. Skipped where the corpus is not beside the repo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld");
    p.is_dir().then_some(p)
}

/// Files the peer itself would reject, with the start of our error.
const KONG_REJECTED: &[(&str, &str)] = &[
    (
        "Anylee2142__KongAPIGateway__kong.yml",
        "plugins[0]: uniqueness violation: 'plugins' entity with name 'key-auth'",
    ),
    (
        "Auggustto__Kong_Gateway_vps__kong.yml",
        "services[0].send_timeout: unknown field `send_timeout`",
    ),
    (
        "FIWARE__tutorials.PEP-Proxy__kong_kong.yaml",
        "plugin 'pep-plugin' not enabled",
    ),
    (
        "GSA-TTS__identity-idva-api-gateway__kong.yaml",
        "plugin 'oauth2' needs a database and cannot run in DB-less mode",
    ),
    (
        "Kong__deck__tests_integration_testdata_sync_016-consumer-groups-and-plugins_kong3x.yaml",
        "consumer_groups[0].plugins[0].name: plugin 'rate-limiting-advanced' not enabled",
    ),
    (
        "Fit-Rang__kong__kong.yml",
        "plugin 'token-introspect-plugin' not enabled",
    ),
    (
        "N5GEH__n5geh.tutorials.api-protection__config_kong.yml",
        "plugin 'multi-tenancy' not enabled",
    ),
    (
        "brad1193__kong-hmac-plugin__config_kong.yml",
        "plugin 'callrailhmacverify' not enabled",
    ),
    (
        "davidgrldo__kong-dynamic-upstream__config_kong.yml",
        "plugin 'dynamic-upstream' not enabled",
    ),
    (
        "eic-cefet__kong__config_kong.yml",
        "plugin 'go-powered-by' not enabled",
    ),
    (
        "erichsend__api.erichsen.dev__deck_kong.yaml",
        "plugin 'rate-limiting-advanced' not enabled",
    ),
    (
        "nkbud__personal-server__config_kong.yml",
        "acls[0]: required field missing: `consumer`",
    ),
];

const OCELOT_REJECTED: &[(&str, &str)] = &[(
    "auticus__IdentityServerExample__OcelotApiGateway_ocelot.json",
    "Routes[0].DownstreamHostAndPorts: When not using service discovery DownstreamHostAndPorts must be set",
)];

fn check(dir: &Path, env: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(common::binary());
    cmd.arg("check")
        .arg("--config-dir")
        .arg(dir)
        .env_remove("ASPNETCORE_ENVIRONMENT")
        .env_remove("SWITCHYARD_ENVIRONMENT");
    if let Some(e) = env {
        cmd.arg("--environment").arg(e);
    }
    // decK's vault test (`sync/012-vaults`) reads its certificate and key from these, as
    // its own CI sets them: a key pair made now.
    let (cert, key) = vault_certificate();
    cmd.env("MY_SECRET_CERT", cert).env("MY_SECRET_KEY", key);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed certificate and its key (PEM), made once per test binary.
fn vault_certificate() -> &'static (String, String) {
    static PAIR: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["vault.test".to_string()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    })
}

fn verify(entries: Vec<(String, PathBuf, Option<&str>)>, rejected: &[(&str, &str)]) -> usize {
    let mut passed = 0;
    for (name, dir, env) in entries {
        let (ok, err) = check(&dir, env);
        match rejected.iter().find(|(n, _)| *n == name) {
            Some((_, want)) => {
                assert!(!ok, "{name} should be rejected (the peer rejects it too)");
                assert!(err.contains(want), "{name}: expected {want:?} in:\n{err}");
            }
            None => {
                assert!(ok, "{name} must load:\n{err}");
                passed += 1;
            }
        }
    }
    passed
}

#[test]
fn real_kong_files_load() {
    let Some(root) = corpus() else {
        return eprintln!("no ../shared/realworld: skipped");
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for f in std::fs::read_dir(root.join("kong")).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        let dir = tmp.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        let target = if name.ends_with(".json") {
            "kong.json"
        } else {
            "kong.yaml"
        };
        std::fs::copy(f.path(), dir.join(target)).unwrap();
        entries.push((name, dir, None));
    }
    assert_eq!(entries.len(), 53);
    let passed = verify(entries, KONG_REJECTED);
    eprintln!(
        "real-world Kong files: {passed} load, {} rejected as Kong would",
        KONG_REJECTED.len()
    );
    assert_eq!(passed, 41);
}

#[test]
fn real_ocelot_files_load() {
    let Some(root) = corpus() else {
        return eprintln!("no ../shared/realworld: skipped");
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for f in std::fs::read_dir(root.join("ocelot")).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if f.path().is_dir() {
            // A set: checked as it is, with its Development environment when it has one.
            let env = f
                .path()
                .join("ocelot.Development.json")
                .exists()
                .then_some("Development");
            entries.push((name, f.path(), env));
        } else {
            let dir = tmp.path().join(&name);
            std::fs::create_dir(&dir).unwrap();
            // `configuration.json` is Ocelot's pre-ocelot.json name; `ocelot.Development.json`
            // stands alone as the set's only file.
            std::fs::copy(f.path(), dir.join("ocelot.json")).unwrap();
            entries.push((name, dir, None));
        }
    }
    assert_eq!(entries.len(), 45);
    let passed = verify(entries, OCELOT_REJECTED);
    eprintln!(
        "real-world Ocelot files and sets: {passed} load, {} rejected as Ocelot would",
        OCELOT_REJECTED.len()
    );
    assert_eq!(passed, 44);
}

/// Where the block-YAML fast path answers, it must build the full parser's tree, spans
/// included, and it must never accept what the full parser rejects. Checked on every YAML file
/// of the corpus and the conformance suites, on each file's every prefix of lines, and with each
/// line indented one space deeper (mostly invalid YAML, or YAML of another shape).
#[test]
fn block_yaml_fast_path_agrees_with_the_full_parser() {
    use switchyard::config::{node::parse_yaml_full, yaml_block};
    let Some(root) = corpus() else {
        return eprintln!("no ../shared/realworld: skipped");
    };
    let yaml_in = |dir: PathBuf| -> Vec<PathBuf> {
        let files = std::fs::read_dir(dir).unwrap().flatten().map(|f| f.path());
        files
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect()
    };
    // Real users' files and the sample must take the fast path; the conformance suites (folded
    // scalars) are only compared.
    let mut kong_files = yaml_in(root.join("kong"));
    kong_files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("kong.yaml"));
    let files: Vec<PathBuf> = kong_files
        .iter()
        .cloned()
        .chain(yaml_in(root.join("../conformance")))
        .collect();
    let (mut slow, mut variants, mut fast_variants) = (Vec::new(), 0, 0);
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let agree = |text: &str| -> bool {
            let Some(fast) = yaml_block::parse(text) else {
                return false;
            };
            match parse_yaml_full(text) {
                Ok(full) if fast != full => {
                    let (fast, full) = (format!("{fast:#?}"), format!("{full:#?}"));
                    let at = fast.lines().zip(full.lines()).position(|(a, b)| a != b);
                    let around = |t: &str| {
                        let lines: Vec<&str> = t.lines().collect();
                        let i = at.unwrap_or(lines.len()).min(lines.len());
                        lines[i.saturating_sub(6)..(i + 2).min(lines.len())].join("\n")
                    };
                    panic!(
                        "{}: the trees differ\nfast:\n{}\nfull:\n{}\ntext:\n{text}",
                        path.display(),
                        around(&fast),
                        around(&full)
                    );
                }
                Ok(_) => {}
                Err(e) => panic!(
                    "{}: the fast path accepted what the full parser rejects ({}):\n{text}",
                    path.display(),
                    e.message
                ),
            }
            true
        };
        if !agree(&text) && kong_files.contains(path) {
            slow.push(path.display().to_string());
        }
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for i in 0..lines.len() {
            let prefix = lines[..=i].concat();
            let mut deeper = lines.clone();
            let indented = format!(" {}", lines[i]);
            deeper[i] = &indented;
            for variant in [prefix, deeper.concat()] {
                variants += 1;
                fast_variants += agree(&variant) as usize;
            }
        }
    }
    eprintln!(
        "fast path: {} real Kong files and the sample, {fast_variants} of {variants} variants",
        kong_files.len() - 1
    );
    // If the fast path stopped answering for them, reloads would be slow again even though
    // every file still loads.
    assert!(slow.is_empty(), "left to the full parser: {slow:?}");
}

/// The authentication and access-control plugins: every route of a real file that carries one
/// runs it.
const AUTH_AND_ACCESS: [&str; 7] = [
    "key-auth",
    "basic-auth",
    "jwt",
    "hmac-auth",
    "acl",
    "ip-restriction",
    "bot-detection",
];

/// Every plugin of a real Kong file that applies to a route is served, only observes, or
/// closes that route: none is skipped. The outcome per file is printed for the closing note.
#[test]
fn real_kong_plugins_are_enforced_or_close_their_routes() {
    use switchyard::gateway::compile_dir;
    use switchyard::plugins::{Kind, Registry};
    let Some(root) = corpus() else {
        return eprintln!("no ../shared/realworld: skipped");
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut files_with_closed, mut closed_total) = (0, 0);
    let mut names: Vec<String> = std::fs::read_dir(root.join("kong"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let dir = tmp.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        let target = if name.ends_with(".json") {
            "kong.json"
        } else {
            "kong.yaml"
        };
        std::fs::copy(root.join("kong").join(&name), dir.join(target)).unwrap();
        let registry = Registry::bundled();
        let Ok((snap, _)) = compile_dir(&dir, &registry) else {
            continue;
        };
        let m = &snap.model;
        let mut closed_here = 0;
        let mut served_auth: std::collections::BTreeMap<&str, usize> = Default::default();
        for (i, r) in m.routes.iter().enumerate() {
            let rt = &snap.routes[i];
            let applies = m.plugins.iter().filter(|p| {
                p.enabled
                    && !p.scope.is_consumer_scoped()
                    && p.scope.route.is_none_or(|x| x == i)
                    && p.scope.service.is_none_or(|s| Some(s) == r.service)
            });
            for p in applies {
                let served = rt.chain.plugins().iter().any(|q| q.name() == p.name);
                let observes = registry
                    .info(&p.name)
                    .is_some_and(|c| c.kind == Kind::Observes);
                let closed = rt.closed.as_ref().is_some_and(|c| {
                    c.reasons
                        .iter()
                        .any(|why| why.starts_with(&format!("plugin '{}'", p.name)))
                });
                assert!(
                    served || observes || closed,
                    "{name}: route {} carries plugin '{}', which is neither served nor closes it",
                    r.display_name(),
                    p.name
                );
                if let Some(auth) = AUTH_AND_ACCESS.iter().find(|a| **a == p.name) {
                    assert!(
                        served,
                        "{name}: route {}: {auth} is not enforced",
                        r.display_name()
                    );
                    *served_auth.entry(auth).or_default() += 1;
                }
            }
            closed_here += usize::from(rt.closed.is_some());
        }
        if !served_auth.is_empty() {
            eprintln!("{name}: enforced on its routes: {served_auth:?}");
        }
        if closed_here > 0 {
            files_with_closed += 1;
            closed_total += closed_here;
            eprintln!(
                "{name}: {closed_here} of {} route(s) closed",
                m.routes.len()
            );
        }
    }
    eprintln!(
        "real-world Kong files: {files_with_closed} with closed routes, {closed_total} routes closed"
    );
    assert!(files_with_closed > 0);
}

/// The corpus file with `{vault://env/...}` references: each unset variable is an error
/// naming the field and the variable; once they are set, only its Enterprise plugins remain
/// (which switchyard refuses, as Kong OSS does).
#[test]
fn real_vault_references_resolve_once_their_variables_are_set() {
    let Some(root) = corpus() else {
        return eprintln!("no ../shared/realworld: skipped");
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("kong/erichsend__api.erichsen.dev__deck_kong.yaml"),
        dir.path().join("kong.yaml"),
    )
    .unwrap();
    let vars = ["ZEROSSL_EAB_HMAC_KEY", "ZEROSSL_EAB_KID", "REDIS_PASSWORD"];
    let run = |set: bool| {
        let mut cmd = Command::new(common::binary());
        cmd.arg("check").arg("--config-dir").arg(dir.path());
        for v in vars {
            if set {
                cmd.env(v, format!("value-of-{v}"));
            } else {
                cmd.env_remove(v);
            }
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stderr).into_owned()
    };
    let unset = run(false);
    assert!(
        unset.contains("kong.yaml:12:21: plugins[0].config.eab_hmac_key: plugin 'acme': cannot resolve {vault://env/ZEROSSL_EAB_HMAC_KEY}: environment variable ZEROSSL_EAB_HMAC_KEY is not set"),
        "{unset}"
    );
    assert!(unset.contains("7 error(s)"), "{unset}");
    let set = run(true);
    assert!(!set.contains("vault://"), "{set}");
    assert!(!set.contains("value-of-"), "a secret was printed:\n{set}");
    assert!(
        set.contains("3 error(s)") && set.contains("'rate-limiting-advanced' not enabled"),
        "{set}"
    );
}
