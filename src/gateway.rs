//! The running gateway's shared state: the serving snapshot (swapped atomically), the state
//! that outlives snapshots, the plugins it can load, and the result of the last load.
//! `Builder` makes one, with custom plugins registered beside the bundled ones.
//!
//! ```text
//! Builder (registry: bundled + custom plugins) ─▶ Gateway::start ─▶ load ─▶ compile ─▶ serve
//!                                     reload (watch, SIGHUP, POST /reload) ─▶ load ─▶ compile ─▶ swap
//! ```

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::diag::{Diagnostic, SourceFile};
use crate::config::loader::{self, Loaded};
use crate::config::model::Model;
use crate::ip::RealIp;
use crate::plugins::{PluginSpec, Registry};
use crate::snapshot::{Snapshot, State};

/// A gateway with its plugins: the bundled ones and any registered here. A custom plugin is
/// a `PluginSpec` type; a binary built with it loads configs naming it and checks them as it
/// checks a bundled plugin's.
///
/// ```no_run
/// # use switchyard::gateway::Builder;
/// // fn main() -> std::process::ExitCode { Builder::new().plugin::<MyPlugin>().main() }
/// fn main() -> std::process::ExitCode { Builder::new().main() }
/// ```
pub struct Builder {
    registry: Registry,
    real_ip: Option<RealIp>,
    client_header_timeout: Option<std::time::Duration>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Kong's bundled plugins and switchyard's own.
    pub fn new() -> Self {
        install_crypto_provider();
        Builder {
            registry: Registry::bundled(),
            real_ip: None,
            client_header_timeout: None,
        }
    }

    /// Adds a plugin (replacing a bundled one of the same name).
    pub fn plugin<P: PluginSpec>(mut self) -> Self {
        self.registry.register::<P>();
        self
    }

    /// Which client address plugins see: trusted proxies may name it in a header (Kong's
    /// `trusted_ips` and `real_ip_header`).
    pub fn real_ip(mut self, real_ip: RealIp) -> Self {
        self.real_ip = Some(real_ip);
        self
    }

    /// How long a client may take to finish a request head it began before it is answered
    /// 408 (default `CLIENT_TIMEOUT`, 60 s).
    pub fn client_header_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.client_header_timeout = Some(timeout);
        self
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs the command line (`run`, `check`, `config`, `explain`) with these plugins.
    pub fn main(self) -> std::process::ExitCode {
        crate::cli::main_with(self)
    }

    /// Loads `dir` and makes the gateway that serves it.
    pub fn start(self, dir: PathBuf) -> Result<(Arc<Gateway>, Vec<Diagnostic>), LoadFailed> {
        let (gw, warnings) = Gateway::start(dir, Arc::new(self.registry))?;
        let mut gw = Arc::into_inner(gw).expect("no other handle yet");
        gw.real_ip = self.real_ip.map(Arc::new);
        if let Some(t) = self.client_header_timeout {
            gw.client_header_timeout = t;
        }
        Ok((Arc::new(gw), warnings))
    }
}

/// rustls' process-wide crypto provider: ring, the only one this build has. Every TLS
/// client here is built with it explicitly; installed as the default too, no library that
/// asks rustls for the default (reqwest, for JWKS fetches) can panic on a missing one.
/// Every entry point calls it (`Builder::new`, `Gateway::start`, `compile_dir`).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already (by the embedding program): it stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Loads and compiles a config directory once, as `run` does (for `check`, `config` and
/// `explain`).
pub fn compile_dir(
    dir: &std::path::Path,
    registry: &Registry,
) -> Result<(Snapshot, usize), LoadFailed> {
    install_crypto_provider();
    let loaded = loader::load_dir(dir);
    let files = loaded.files.len();
    compile_loaded(loaded, registry, &State::default(), 0)
        .map(|s| (s, files))
        .map_err(LoadFailed)
}

/// Compiles what a load read. A load with errors is compiled too, so that the plugin
/// problems the compile finds are listed with the file's own: every error at once.
fn compile_loaded(
    loaded: Loaded,
    registry: &Registry,
    state: &State,
    version: u64,
) -> Result<Snapshot, Vec<Diagnostic>> {
    let load_failed = loaded.diagnostics.has_errors();
    let load_errors = loaded.errors();
    let compiled = Snapshot::compile(
        loaded.model,
        loaded.diagnostics.items,
        registry,
        state,
        version,
        loaded.hash,
    );
    match compiled {
        Ok(snap) if !load_failed => Ok(snap),
        Ok(_) => Err(load_errors),
        Err(mut errors) => {
            errors.extend(load_errors);
            errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(errors)
        }
    }
}

/// The outcome of the last reload attempt, for `GET /status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    pub ok: bool,
    pub at: SystemTime,
    pub version: u64,
    pub errors: Vec<Diagnostic>,
    pub compile_ms: f64,
}

pub struct Gateway {
    pub config_dir: PathBuf,
    snapshot: ArcSwap<Snapshot>,
    pub state: State,
    pub registry: Arc<Registry>,
    /// Trusted proxies and the header they name the client in (`Builder::real_ip`).
    pub real_ip: Option<Arc<RealIp>>,
    /// How long a client may take to finish a request head it began (`Builder::client_header_timeout`).
    pub client_header_timeout: std::time::Duration,
    versions: AtomicU64,
    pub last_reload: Mutex<Option<ReloadReport>>,
    /// Held for a whole reload, so two triggers never race to store; it keeps the thread
    /// still finishing the previous reload's leftovers (see `Retired`).
    reloading: Mutex<Option<JoinHandle<()>>>,
}

/// Added, removed and changed entities between two models, by id.
#[derive(Default)]
pub struct Counts {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{} -{} ~{}", self.added, self.removed, self.changed)
    }
}

pub struct Diff {
    pub routes: Counts,
    pub services: Counts,
}

impl Diff {
    pub fn between(old: &Model, new: &Model) -> Diff {
        fn count<T: PartialEq>(old: &[T], new: &[T], id: impl Fn(&T) -> &str) -> Counts {
            let before: HashMap<&str, &T> = old.iter().map(|x| (id(x), x)).collect();
            let mut c = Counts::default();
            for n in new {
                match before.get(id(n)) {
                    None => c.added += 1,
                    Some(o) if *o != n => c.changed += 1,
                    Some(_) => {}
                }
            }
            let after: HashSet<&str> = new.iter().map(&id).collect();
            c.removed = old.iter().filter(|o| !after.contains(id(o))).count();
            c
        }
        Diff {
            routes: count(&old.routes, &new.routes, |r| &r.id),
            services: count(&old.services, &new.services, |s| &s.id),
        }
    }
}

/// A failed load: every error, and the serving snapshot (if any) left untouched.
#[derive(Debug)]
pub struct LoadFailed(pub Vec<Diagnostic>);

impl Gateway {
    /// Loads `dir` for the first time.
    pub fn start(
        dir: PathBuf,
        registry: Arc<Registry>,
    ) -> Result<(Arc<Gateway>, Vec<Diagnostic>), LoadFailed> {
        install_crypto_provider();
        let state = State::default();
        let loaded = loader::load_dir(&dir);
        let snap = compile_loaded(loaded, &registry, &state, 1).map_err(LoadFailed)?;
        state.sweep();
        let warnings = snap.warnings.clone();
        let gw = Gateway {
            config_dir: dir,
            snapshot: ArcSwap::from_pointee(snap),
            state,
            registry,
            real_ip: None,
            client_header_timeout: crate::proxy::server::CLIENT_TIMEOUT,
            versions: AtomicU64::new(1),
            last_reload: Mutex::new(None),
            reloading: Mutex::new(None),
        };
        Ok((Arc::new(gw), warnings))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Re-reads the directory and swaps the new snapshot in only if the whole config is
    /// valid; otherwise the serving snapshot stays and the errors are kept for `/status`.
    /// Reloads are serialised, so two triggers never race to store.
    pub fn reload(&self) -> ReloadReport {
        let mut retiring = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        // The previous reload's frees end before this one allocates: interleaved, they leave
        // the heap fragmented and resident memory creeps up over many reloads.
        if let Some(previous) = retiring.take() {
            let _ = previous.join();
        }
        let t = Instant::now();
        let current = self.snapshot.load_full();
        let environment = loader::environment();
        let sources = loader::read_dir_env(&self.config_dir, environment.as_deref());
        // The bytes being served (a touch, the watcher's follow-up after a symlink swap, the
        // clean-up after a ConfigMap swap) are not worth a parse.
        let unchanged = sources.hash == current.hash
            && !sources.files.is_empty()
            && !sources.has_errors()
            && !current.auth_providers.files_changed()
            && !current.filters_changed();
        let report = if unchanged {
            unchanged_report(&current, t)
        } else {
            let loaded = sources.load(environment.as_deref());
            self.load_and_swap(loaded, current, &mut retiring, t)
        };
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }

    fn load_and_swap(
        &self,
        mut loaded: Loaded,
        current: Arc<Snapshot>,
        retiring: &mut Option<JoinHandle<()>>,
        t: Instant,
    ) -> ReloadReport {
        if loaded.files.is_empty() && !loaded.diagnostics.has_errors() {
            // Every file vanished at once: far likelier a mount in the middle of a swap or an
            // accident than a wish to serve nothing.
            loaded.diagnostics.file_error(
                &self.config_dir.display().to_string(),
                "no config file found; keeping the serving config",
            );
        }
        if loaded.files.is_empty() {
            return ReloadReport {
                ok: false,
                at: SystemTime::now(),
                version: current.version,
                errors: loaded.errors(),
                compile_ms: elapsed_ms(t),
            };
        }
        if loaded.hash == current.hash
            && !loaded.diagnostics.has_errors()
            && !current.auth_providers.files_changed()
            && !current.filters_changed()
        {
            return unchanged_report(&current, t);
        }
        let spent = std::mem::take(&mut loaded.spent);
        let version = self.versions.load(Ordering::Relaxed) + 1;
        let compiled = compile_loaded(loaded, &self.registry, &self.state, version);
        let snap = match compiled {
            Ok(snap) => Arc::new(snap),
            Err(errors) => {
                return ReloadReport {
                    ok: false,
                    at: SystemTime::now(),
                    version: current.version,
                    errors,
                    compile_ms: elapsed_ms(t),
                };
            }
        };
        self.versions.store(version, Ordering::Relaxed);
        self.snapshot.store(snap.clone());
        // What no entity of the new snapshot asked for goes; the old snapshot keeps its own
        // until it is retired.
        self.state.sweep();
        let compile_ms = elapsed_ms(t);
        *retiring = Retired {
            old: current,
            new: snap,
            spent,
            compile_ms,
        }
        .finish_elsewhere();
        ReloadReport {
            ok: true,
            at: SystemTime::now(),
            version,
            errors: Vec::new(),
            compile_ms,
        }
    }
}

/// What a reload has left once the new snapshot serves: the diff for the log line, and
/// freeing the old snapshot and the parse trees (together ~20 % of a 10,000-route reload).
/// `POST /reload` does not wait for it; the next reload does.
struct Retired {
    old: Arc<Snapshot>,
    new: Arc<Snapshot>,
    spent: Vec<SourceFile>,
    compile_ms: f64,
}

impl Retired {
    /// Finishes on a thread of its own. Without one (spawn failed), the closure's drop still
    /// frees everything; only the log line is lost.
    fn finish_elsewhere(self) -> Option<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("config-retire".into())
            .spawn(move || self.finish())
            .inspect_err(|e| tracing::warn!(error = %e, "no thread to finish the reload"))
            .ok()
    }

    fn finish(self) {
        drop(self.spent);
        let diff = Diff::between(&self.old.model, &self.new.model);
        tracing::info!(
            version = self.new.version,
            routes = %diff.routes,
            services = %diff.services,
            closed_routes = self.new.closed_routes().count(),
            compile_ms = format!("{:.1}", self.compile_ms),
            "reloaded"
        );
    }
}

fn elapsed_ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn unchanged_report(current: &Snapshot, t: Instant) -> ReloadReport {
    ReloadReport {
        ok: true,
        at: SystemTime::now(),
        version: current.version,
        errors: Vec::new(),
        compile_ms: elapsed_ms(t),
    }
}

#[cfg(test)]
mod tests {
    use super::Diff;
    use crate::config::loader;

    fn model(yaml: &str) -> crate::config::model::Model {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kong.yaml"), yaml).unwrap();
        let loaded = loader::load_dir(dir.path());
        assert!(!loaded.diagnostics.has_errors());
        loaded.model
    }

    const KONG: &str = "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:1\n  routes:\n  - name: r\n    paths: [/a]\n";

    #[test]
    fn moved_entities_are_not_changed_and_edited_ones_are() {
        let old = model(KONG);
        let moved = model(&format!("# a comment above\n\n{KONG}"));
        let d = Diff::between(&old, &moved);
        assert_eq!((d.routes.changed, d.services.changed), (0, 0));
        let edited = model(&KONG.replace("/a]", "/b]"));
        let d = Diff::between(&old, &edited);
        assert_eq!((d.routes.changed, d.services.changed), (1, 0));
    }
}
