//! Reload on change. Watches the config directory — never the files themselves, because editors
//! replace files by rename and Kubernetes swaps a ConfigMap by re-pointing the `..data` symlink,
//! and a watch on a file dies with the first swap — plus, for every config file that is a
//! symlink, the directory of its resolved target. Any change, creation, removal, rename or
//! touch starts a short quiet window; when it closes, the whole directory is loaded again
//! (`Gateway::reload`), off the serving threads.
//!
//! The window is shorter once the last event is one that ends a change (a file closed after
//! writing, a rename, a removal, a touch): an editor's rename-over and a ConfigMap's `..data`
//! swap end with a rename, `> kong.yaml` ends with the close, so a change is applied ~15 ms
//! after it is complete. While a file is still being written (created or written, not yet
//! closed) the window stays at 60 ms.
//!
//! events ─▶ debounce ─▶ `Gateway::reload` ─▶ (valid) one atomic swap │ (invalid) errors kept
//!
//! The Proxy-Wasm filters directory (`wasm::filters_path`) is watched as well: a changed
//! `.wasm` reloads (the snapshot compares the modules' content hashes).
//!
//! `--watch-poll MS` replaces events by a poll of file metadata, for NFS and bind mounts
//! whose events never arrive.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::config::loader;
use crate::gateway::Gateway;

/// The quiet time after an event that ends a change: the steps of one save or swap are
/// system calls microseconds apart, and a tool that writes several files (git, kubelet) goes
/// from one to the next faster than this.
const SETTLED: Duration = Duration::from_millis(15);
/// The quiet time after an event in the middle of a change (a file created or written, not
/// yet closed or renamed into place): a writer may pause between chunks.
const QUIET: Duration = Duration::from_millis(60);
/// A burst that never goes quiet still reloads this often.
const MAX_DELAY: Duration = Duration::from_millis(400);

/// The directories to watch: the config directory and the parents of every config file's
/// resolved symlink target.
fn watch_set(dir: &Path) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::new();
    set.insert(dir.to_path_buf());
    if let Ok(files) = loader::config_files(dir) {
        for f in files {
            if let Ok(real) = std::fs::canonicalize(&f)
                && let Some(parent) = real.parent()
            {
                set.insert(parent.to_path_buf());
            }
        }
    }
    // The `..data` symlink of a ConfigMap mount points at the current timestamped directory.
    if let Ok(real) = std::fs::canonicalize(dir.join("..data")) {
        set.insert(real);
    }
    // Proxy-Wasm filter modules are watched like config files.
    let filters = crate::wasm::filters_path(dir);
    if filters.is_dir() {
        set.insert(filters);
    }
    set
}

/// The filter modules (`*.wasm`) and their metadata files in the filters directory.
fn filter_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(crate::wasm::filters_path(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm" || e == "json"))
        .collect();
    out.sort();
    out
}

/// What an event says about the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Nothing changed: a read (ours included).
    None,
    /// A change is under way: a file created or written and not yet closed.
    Underway,
    /// A change is complete: a file closed after writing, renamed, removed or touched.
    Done,
}

fn change(kind: &EventKind) -> Change {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Done,
        EventKind::Access(_) => Change::None,
        EventKind::Modify(ModifyKind::Name(_) | ModifyKind::Metadata(_)) | EventKind::Remove(_) => {
            Change::Done
        }
        _ => Change::Underway,
    }
}

/// Starts the watcher thread for `gw`.
pub fn spawn(
    gw: Arc<Gateway>,
    poll: Option<Duration>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || match poll {
            Some(every) => poll_loop(gw, every),
            None => event_loop(gw),
        })
}

fn reload(gw: &Gateway) {
    let report = gw.reload();
    if !report.ok {
        tracing::error!(
            version = report.version,
            errors = report.errors.len(),
            "reload rejected; still serving the previous config"
        );
        for e in &report.errors {
            tracing::error!("{e}");
        }
    }
}

fn event_loop(gw: Arc<Gateway>) {
    let (tx, rx) = mpsc::channel::<Change>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let c = change(&ev.kind);
            if c != Change::None {
                let _ = tx.send(c);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the config directory; falling back to polling every second");
            return poll_loop(gw, Duration::from_secs(1));
        }
    };
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    // Returns whether the set changed.
    let rewatch =
        |watcher: &mut notify::RecommendedWatcher, watched: &mut BTreeSet<PathBuf>| -> bool {
            let wanted = watch_set(&gw.config_dir);
            if wanted == *watched {
                return false;
            }
            for gone in watched.difference(&wanted) {
                let _ = watcher.unwatch(gone);
            }
            for new in wanted.difference(watched) {
                if let Err(e) = watcher.watch(new, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %new.display(), error = %e, "cannot watch");
                }
            }
            *watched = wanted;
            true
        };
    rewatch(&mut watcher, &mut watched);
    while let Ok(mut last) = rx.recv() {
        let first = std::time::Instant::now();
        // Debounce: wait for a quiet window after the last event, bounded by MAX_DELAY.
        loop {
            let quiet = if last == Change::Done { SETTLED } else { QUIET };
            let left = MAX_DELAY.saturating_sub(first.elapsed());
            match rx.recv_timeout(quiet.min(left)) {
                Ok(c) if !left.is_zero() => last = c,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                _ => break,
            }
        }
        reload(&gw);
        // Symlink targets move with every ConfigMap swap: follow them, and load once more in
        // case a write landed in a new target before it was watched (a no-op when the bytes
        // are the ones just loaded).
        if rewatch(&mut watcher, &mut watched) {
            reload(&gw);
        }
    }
}

/// What the poll compares: every config file's (and filter module's) resolved path, size,
/// modification time and inode, and the directory listing itself.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let files = loader::config_files(dir).unwrap_or_default();
    for f in files.into_iter().chain(filter_files(dir)) {
        let real = std::fs::canonicalize(&f).unwrap_or(f);
        if let Ok(m) = std::fs::metadata(&real) {
            out.push((real, m.len(), m.modified().ok(), m.ino()));
        }
    }
    out
}

fn poll_loop(gw: Arc<Gateway>, every: Duration) {
    let mut last = fingerprint(&gw.config_dir);
    loop {
        std::thread::sleep(every);
        let now = fingerprint(&gw.config_dir);
        if now != last {
            last = now;
            reload(&gw);
        }
    }
}
