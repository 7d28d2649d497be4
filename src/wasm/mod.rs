//! The Proxy-Wasm host: Kong's `filter_chains` run as Proxy-Wasm filters (ABI 0.2.1 and
//! 0.2.0) on wasmtime. This module owns the filter modules (loaded, checked and compiled
//! once per content hash), the per-worker instances that run them, the host functions they
//! call, and the plugin that runs a route's filters after its other plugins in each phase.
//!
//! ```text
//! load (snapshot compile, off the serving threads):
//!   <filters dir>/<name>.wasm ─▶ modules::Loader (sha256 ─▶ Module, compiled once and shared
//!     by every snapshot that names the same bytes) ─▶ Filter (module + config bytes, checked
//!     on a scratch instance: _initialize, context_create, vm_start, configure)
//!   ─▶ chain::FilterChain (service chain's filters, then the route's) ─▶ a Plugin, last in
//!     every phase of the route's plugin chain
//!
//! serve (each worker thread):
//!   vm::Vm per module (one instance; a root context per filter config, made on first use)
//!   per request and filter, one HTTP context:
//!     context_create ─▶ request_headers (┄ http calls ┄▶ http_call_response) ─▶ request_body*
//!       ─▶ response_headers ─▶ response_body* ─▶ done ─▶ log ─▶ delete
//!   per instance with timers: a ticker task on the worker ─▶ on_tick
//! shared (process-wide): key-value data with CAS, queues, metrics (admin GET /metrics)
//! ```
//!
//! A trap, an expired epoch deadline (a hook that runs too long) or a memory cap hit fails the
//! requests whose contexts live in that instance with 500, and the instance is dropped: the
//! next request gets a fresh one. Nothing else is touched.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

#[cfg(feature = "wasm")]
mod abi;
#[cfg(feature = "wasm")]
mod calls;
#[cfg(feature = "wasm")]
mod chain;
#[cfg(feature = "wasm")]
mod host;
#[cfg(feature = "wasm")]
mod maps;
#[cfg(feature = "wasm")]
mod modules;
#[cfg(feature = "wasm")]
mod schema;
#[cfg(feature = "wasm")]
mod shared;
#[cfg(feature = "wasm")]
mod vm;

#[cfg(feature = "wasm")]
pub use chain::FilterChain;
#[cfg(feature = "wasm")]
pub use modules::{Filter, LoadError, Loader, Module};

/// Where filter modules are looked up, when set (`--wasm-filters-path`,
/// `SWITCHYARD_WASM_FILTERS_PATH`, Kong's `wasm_filters_path`); otherwise
/// `<config dir>/filters`.
static FILTERS_PATH: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets the filters directory for every later load (`None`: `<config dir>/filters`).
pub fn set_filters_path(dir: Option<PathBuf>) {
    *FILTERS_PATH.write().unwrap_or_else(|e| e.into_inner()) = dir;
}

/// The filters directory for a config loaded from `config_dir`.
pub fn filters_path(config_dir: &Path) -> PathBuf {
    FILTERS_PATH
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| config_dir.join("filters"))
}

/// The metrics filters defined (`proxy_define_metric`), in Prometheus' text format, for the
/// admin listener's `GET /metrics`.
pub fn metrics_text() -> String {
    #[cfg(feature = "wasm")]
    return shared::prometheus_text();
    #[cfg(not(feature = "wasm"))]
    String::new()
}

/// What one filter may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long one hook may run before it is stopped (epoch interruption; the granularity
    /// is `EPOCH_TICK`).
    pub hook_deadline: Duration,
    /// How long loading hooks (`_initialize`, `proxy_on_vm_start`, `proxy_on_configure`)
    /// may run.
    pub load_deadline: Duration,
    /// Linear memory per instance.
    pub memory: usize,
    /// A body a filter holds (Pause in a body hook) may grow to this; past it the exchange
    /// fails.
    pub body_buffer: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        hook_deadline: Duration::from_millis(20),
        load_deadline: Duration::from_secs(2),
        memory: 64 << 20,
        body_buffer: 8 << 20,
    };
}

static LIMITS: RwLock<Limits> = RwLock::new(Limits::DEFAULT);

/// Sets what filter instances made from now on may cost (`--wasm-hook-timeout`,
/// `--wasm-memory-limit`).
pub fn set_limits(limits: Limits) {
    *LIMITS.write().unwrap_or_else(|e| e.into_inner()) = limits;
}

/// What a filter instance may cost.
pub fn limits() -> Limits {
    *LIMITS.read().unwrap_or_else(|e| e.into_inner())
}

/// How often the engine's epoch advances: the unit of the hook deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
