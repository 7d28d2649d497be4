//! Kong `filter_chains`, compiled: each enabled chain's filters loaded from the filters
//! directory (`wasm::filters_path`) and checked, every problem reported at the filter's
//! position; then, per route, the plugin that runs the service chain's filters and the
//! route chain's (`chains::Resolver::route`).
//!
//! ```text
//! model.filter_chains ─▶ wasm::Loader (module per content hash, configure checked)
//!   ─▶ Compiled { per chain: its filters } ─▶ per route: wasm::FilterChain, last plugin
//! ```
//!
//! Without the `wasm` feature nothing loads, and a route with a filter chain is closed.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::model::{FilterChain as FilterChainEntity, Model};
use crate::plugins::Plugin;

use super::Report;

/// Each filter chain's filters, by position in `model.filter_chains` (`None`: disabled,
/// or it failed to load, which is an error reported already).
#[derive(Default)]
pub struct Compiled {
    #[cfg(feature = "wasm")]
    chains: Vec<Option<Vec<crate::wasm::Filter>>>,
    /// Each module file read, with its content hash, for a reload to compare.
    pub files: Vec<(PathBuf, [u8; 32])>,
}

#[cfg(feature = "wasm")]
impl Compiled {
    pub fn compile(model: &Model, report: &mut Report) -> Compiled {
        use crate::config::diag::Severity;
        if model.filter_chains.is_empty() {
            return Compiled::default();
        }
        let dir = crate::wasm::filters_path(model.config_dir.as_deref().unwrap_or(".".as_ref()));
        let mut loader = crate::wasm::Loader::new(dir);
        let mut chains = Vec::with_capacity(model.filter_chains.len());
        for fc in &model.filter_chains {
            let mut filters = Vec::new();
            let mut ok = fc.enabled;
            for f in fc.filters.iter().filter(|_| fc.enabled) {
                let (config, json) = config_bytes(f.config.as_ref());
                match loader.filter(&f.name, config, json) {
                    Ok(filter) => filters.push(filter),
                    Err(e) => {
                        ok = false;
                        report.push(Severity::Error, &f.origin, e.to_string());
                    }
                }
            }
            chains.push(ok.then_some(filters));
        }
        Compiled {
            chains,
            files: loader.files,
        }
    }

    /// The plugin running `chains`' filters in order (the service's chain first).
    pub fn plugin(&self, chains: &[usize]) -> Option<Arc<dyn Plugin>> {
        let filters: Vec<crate::wasm::Filter> = chains
            .iter()
            .filter_map(|&i| self.chains.get(i)?.as_ref())
            .flatten()
            .cloned()
            .collect();
        (!filters.is_empty())
            .then(|| Arc::new(crate::wasm::FilterChain::new(filters)) as Arc<dyn Plugin>)
    }

    /// The chain at `i` runs (it loaded).
    pub fn loaded(&self, i: usize) -> bool {
        self.chains.get(i).is_some_and(Option::is_some)
    }
}

#[cfg(not(feature = "wasm"))]
impl Compiled {
    pub fn compile(_: &Model, _: &mut Report) -> Compiled {
        Compiled::default()
    }
    pub fn plugin(&self, _: &[usize]) -> Option<Arc<dyn Plugin>> {
        None
    }
    pub fn loaded(&self, _: usize) -> bool {
        false
    }
}

/// A filter's config as the filter gets it, as Kong 3.5+ passes it: a string as its bytes,
/// nothing as no bytes, any other JSON value serialised. `true` when it was not a string.
#[cfg_attr(not(feature = "wasm"), allow(dead_code))]
fn config_bytes(config: Option<&crate::config::de::Captured>) -> (bytes::Bytes, bool) {
    let Some(c) = config.filter(|c| !c.node.is_null()) else {
        return (bytes::Bytes::new(), false);
    };
    match c.node.to_json() {
        serde_json::Value::String(s) => (s.into(), false),
        v => (serde_json::to_vec(&v).unwrap_or_default().into(), true),
    }
}

/// `filter chain 'name' with filters [a, b] (file:line path)`.
pub fn describe(fc: &FilterChainEntity) -> String {
    let names: Vec<&str> = fc.filters.iter().map(|f| f.name.as_str()).collect();
    format!(
        "filter chain {}with filters [{}] ({}:{} {})",
        fc.name
            .as_deref()
            .map(|n| format!("'{n}' "))
            .unwrap_or_default(),
        names.join(", "),
        fc.origin.file,
        fc.origin.line,
        fc.origin.path
    )
}

/// The module files still hold the bytes they were loaded with.
pub fn unchanged(files: &[(PathBuf, [u8; 32])]) -> bool {
    files.iter().all(|(path, hash)| {
        std::fs::read(path).is_ok_and(|b| {
            ring::digest::digest(&ring::digest::SHA256, &b).as_ref() == hash.as_slice()
        })
    })
}
