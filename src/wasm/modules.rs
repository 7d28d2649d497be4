//! Filter modules: found by name in the filters directory, compiled once per content hash
//! (shared by every snapshot naming the same bytes), and checked at load the way Kong checks
//! them: a known ABI marker, imports the host can link, and a `proxy_on_configure` that
//! accepts the filter's config.
//!
//! ```text
//! Loader::filter(name, config) ─▶ <dir>/<name>.wasm ─▶ sha256 ─▶ cache hit, or compile
//!   (cranelift) + ABI marker + link (InstancePre) ─▶ Module
//!   ─▶ scratch Vm: _initialize, context_create, vm_start, configure ─▶ Filter
//! ```

use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use wasmtime::{Config, Engine, InstancePre};

use super::EPOCH_TICK;
use super::abi::Abi;
use super::host::{self, HostState};
use super::vm::{Failure, Vm};

/// Why a filter cannot load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown filter '{name}': no {path} ({known})")]
    Unknown {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Wasm module that compiles: {message}")]
    Compile { path: PathBuf, message: String },
    #[error(
        "{path} has no known Proxy-Wasm ABI version marker ({found}); proxy_abi_version_0_2_1 and proxy_abi_version_0_2_0 are supported"
    )]
    Abi { path: PathBuf, found: String },
    #[error("{path} cannot be linked: {message}")]
    Link { path: PathBuf, message: String },
    #[error("filter '{name}': config must be a string, as no {meta} declares a config_schema")]
    ConfigNotString { name: String, meta: PathBuf },
    #[error("{path} is not valid JSON: {message}")]
    Meta { path: PathBuf, message: String },
    #[error("filter '{name}': config does not match the config_schema of {meta}: {problems}")]
    Schema {
        name: String,
        meta: PathBuf,
        problems: String,
    },
    #[error("filter '{name}': {failure}")]
    Configure { name: String, failure: Failure },
}

/// A compiled filter module, shared by every snapshot that loads the same bytes.
pub struct Module {
    /// The name it was first loaded as, for logs.
    pub name: Arc<str>,
    pub hash: [u8; 32],
    pub abi: Abi,
    pub(super) pre: InstancePre<HostState>,
}

/// One filter entry of a chain: its module and the config it is given.
#[derive(Clone)]
pub struct Filter {
    pub name: Arc<str>,
    pub module: Arc<Module>,
    pub config: Bytes,
    /// Identifies (name, config) in an instance: one root context each.
    pub key: u64,
}

/// The process' engine: epoch interruption on, its epoch advanced every `EPOCH_TICK` by a
/// thread of its own.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("the engine's config is valid");
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        engine
    })
}

/// Modules by content hash, for as long as a snapshot holds them.
fn cache() -> &'static Mutex<HashMap<[u8; 32], Weak<Module>>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Weak<Module>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Loads filters from one directory, for one compile.
pub struct Loader {
    dir: PathBuf,
    /// Each module file read, with its content hash (a reload compares them).
    pub files: Vec<(PathBuf, [u8; 32])>,
}

impl Loader {
    pub fn new(dir: PathBuf) -> Self {
        Loader {
            dir,
            files: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The filter `name` with `config` (`json`: the config was not a string), checked.
    pub fn filter(&mut self, name: &str, config: Bytes, json: bool) -> Result<Filter, LoadError> {
        let module = self.module(name)?;
        self.check_config(name, &config, json)?;
        let mut h = crate::fnv::Fnv::default();
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(&config);
        let filter = Filter {
            name: name.into(),
            module,
            config,
            key: h.finish(),
        };
        check(&filter)?;
        Ok(filter)
    }

    /// A JSON config is checked against the `config_schema` of `<name>.meta.json`; without
    /// one, the config must be a string (Kong 3.5+).
    fn check_config(&self, name: &str, config: &[u8], json: bool) -> Result<(), LoadError> {
        let meta = self.dir.join(format!("{name}.meta.json"));
        let schema = match std::fs::read(&meta) {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| LoadError::Meta {
                    path: meta.clone(),
                    message: e.to_string(),
                })?
                .get("config_schema")
                .cloned(),
            Err(_) => None,
        };
        let Some(schema) = schema.filter(|_| json) else {
            return match json {
                true => Err(LoadError::ConfigNotString {
                    name: name.into(),
                    meta,
                }),
                false => Ok(()),
            };
        };
        let value: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
        let problems = super::schema::check(&schema, &value);
        if problems.is_empty() {
            return Ok(());
        }
        Err(LoadError::Schema {
            name: name.into(),
            meta,
            problems: problems.join("; "),
        })
    }

    fn module(&mut self, name: &str) -> Result<Arc<Module>, LoadError> {
        let path = self.dir.join(format!("{name}.wasm"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::Unknown {
                    name: name.into(),
                    known: known(&self.dir),
                    path,
                });
            }
            Err(source) => return Err(LoadError::Read { path, source }),
        };
        let hash = sha256(&bytes);
        self.files.push((path.clone(), hash));
        let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(&hash).and_then(Weak::upgrade) {
            return Ok(m);
        }
        cache.retain(|_, m| m.strong_count() > 0);
        let m = Arc::new(compile(name, &path, &bytes, hash)?);
        cache.insert(hash, Arc::downgrade(&m));
        Ok(m)
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The filters in `dir`, for an unknown name's error.
fn known(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!("the filters directory {} cannot be read", dir.display());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".wasm").map(str::to_string)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        format!("{} holds no filters", dir.display())
    } else {
        format!("filters in {}: {}", dir.display(), names.join(", "))
    }
}

fn compile(name: &str, path: &Path, bytes: &[u8], hash: [u8; 32]) -> Result<Module, LoadError> {
    let engine = engine();
    let module = wasmtime::Module::new(engine, bytes).map_err(|e| LoadError::Compile {
        path: path.into(),
        message: format!("{e:#}"),
    })?;
    let abi = Abi::detect(module.exports().map(|e| e.name())).map_err(|other| LoadError::Abi {
        path: path.into(),
        found: other.map_or_else(|| "none".into(), |m| format!("found {m}")),
    })?;
    let link = |e: wasmtime::Error| LoadError::Link {
        path: path.into(),
        message: format!("{e:#}"),
    };
    let linker = host::linker(engine, &module).map_err(link)?;
    let pre = linker.instantiate_pre(&module).map_err(link)?;
    Ok(Module {
        name: name.into(),
        hash,
        abi,
        pre,
    })
}

/// Runs the filter's loading hooks on a scratch instance: a module that traps while it
/// starts, or a config it rejects, fails the load rather than the first request.
fn check(filter: &Filter) -> Result<(), LoadError> {
    let fail = |failure| LoadError::Configure {
        name: filter.name.to_string(),
        failure,
    };
    let mut vm = Vm::new(&filter.module, super::limits()).map_err(fail)?;
    vm.root(filter).map_err(fail)?;
    Ok(())
}
