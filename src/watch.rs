//! Reload on change. Watches the config directory — never the files themselves, because editors
//! replace files by rename and Kubernetes swaps a ConfigMap by re-pointing the `..data` symlink,
//! and a watch on a file dies with the first swap — plus, for every config file that is a
//! symlink, the directory of its resolved target. Any change, creation, removal, rename or
//! touch starts a short quiet window; when it closes, the whole directory is loaded again
//! (`Gateway::reload`), off the serving threads.
//!
//! events ─▶ debounce ─▶ `Gateway::reload` ─▶ (valid) one atomic swap │ (invalid) errors kept
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

/// The quiet time after the last event before reloading: long enough to see a whole
/// editor save or ConfigMap swap as one change, short enough to apply it well within a second.
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
    set
}

/// Events that mean "something may have changed"; reads (ours included) do not.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {
            true
        }
        EventKind::Access(_) => false,
        _ => true,
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
    let (tx, rx) = mpsc::channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && is_change(&ev.kind)
        {
            let _ = tx.send(());
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
    while rx.recv().is_ok() {
        let first = std::time::Instant::now();
        // Debounce: wait for a quiet window, bounded by MAX_DELAY.
        loop {
            let left = MAX_DELAY.saturating_sub(first.elapsed());
            match rx.recv_timeout(QUIET.min(left)) {
                Ok(()) if !left.is_zero() => continue,
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

/// What the poll compares: every config file's resolved path, size, modification time and
/// inode, and the directory listing itself.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for f in loader::config_files(dir).unwrap_or_default() {
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
