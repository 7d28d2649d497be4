//! The running gateway's shared state: the serving snapshot (swapped atomically), the state
//! that outlives snapshots, and the result of the last load.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::diag::Diagnostic;
use crate::config::loader;
use crate::snapshot::{Snapshot, State};

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
    versions: AtomicU64,
    pub last_reload: Mutex<Option<ReloadReport>>,
}

/// A failed load: every error, and the serving snapshot (if any) left untouched.
#[derive(Debug)]
pub struct LoadFailed(pub Vec<Diagnostic>);

impl Gateway {
    /// Loads `dir` for the first time.
    pub fn start(dir: PathBuf) -> Result<(Arc<Gateway>, Vec<Diagnostic>), LoadFailed> {
        let state = State::default();
        let loaded = loader::load_dir(&dir);
        if loaded.diagnostics.has_errors() {
            return Err(LoadFailed(loaded.diagnostics.items));
        }
        let warnings: Vec<Diagnostic> = loaded.diagnostics.items.clone();
        let snap = Snapshot::compile(loaded.model, warnings.clone(), &state, 1, loaded.hash);
        let gw = Gateway { config_dir: dir, snapshot: ArcSwap::from_pointee(snap), state, versions: AtomicU64::new(1), last_reload: Mutex::new(None) };
        Ok((Arc::new(gw), warnings))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Re-reads the directory and swaps the new snapshot in only if the whole config is
    /// valid; otherwise the serving snapshot stays and the errors are kept for `/status`.
    pub fn reload(&self) -> ReloadReport {
        let t = Instant::now();
        let loaded = loader::load_dir(&self.config_dir);
        let report = if loaded.diagnostics.has_errors() {
            ReloadReport { ok: false, at: SystemTime::now(), version: self.snapshot.load().version, errors: loaded.errors(), compile_ms: t.elapsed().as_secs_f64() * 1e3 }
        } else if loaded.hash == self.snapshot.load().hash {
            ReloadReport { ok: true, at: SystemTime::now(), version: self.snapshot.load().version, errors: Vec::new(), compile_ms: t.elapsed().as_secs_f64() * 1e3 }
        } else {
            let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
            let snap = Snapshot::compile(loaded.model, loaded.diagnostics.items, &self.state, version, loaded.hash);
            self.snapshot.store(Arc::new(snap));
            ReloadReport { ok: true, at: SystemTime::now(), version, errors: Vec::new(), compile_ms: t.elapsed().as_secs_f64() * 1e3 }
        };
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }
}
