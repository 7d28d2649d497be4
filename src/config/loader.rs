//! Reads a config directory: finds the files of both dialects, parses each into its spanned
//! tree, hands them to their dialect's loader and collects every diagnostic. Nothing is ever
//! written to the directory (it is often a read-only mount).

use std::hash::Hasher;
use std::path::{Path as FsPath, PathBuf};
use std::sync::RwLock;

use super::de::{self, DeError, Dialect};
use super::diag::{Diagnostic, Diagnostics, Severity, SourceFile};
use super::kong;
use super::model::Model;
use super::node;
use super::ocelot;
use crate::fnv::Fnv;

/// The environment set on the command line (`--environment`), for every later load.
static ENVIRONMENT: RwLock<Option<String>> = RwLock::new(None);

/// Sets the environment name (`--environment NAME`) that later loads use: `ocelot.NAME.json`
/// is then layered over the merged Ocelot files instead of being merged as a part file.
pub fn set_environment(name: Option<String>) {
    *ENVIRONMENT.write().unwrap_or_else(|e| e.into_inner()) = name.filter(|n| !n.trim().is_empty());
}

/// The environment: `--environment`, else `SWITCHYARD_ENVIRONMENT`, else
/// `ASPNETCORE_ENVIRONMENT` (which Ocelot deployments already set).
pub fn environment() -> Option<String> {
    let set = ENVIRONMENT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    set.or_else(|| {
        ["SWITCHYARD_ENVIRONMENT", "ASPNETCORE_ENVIRONMENT"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
    })
}

/// One load of a config directory.
pub struct Loaded {
    pub model: Model,
    pub diagnostics: Diagnostics,
    /// FNV-1a over every file's name and bytes: equal hashes, identical config.
    pub hash: u64,
    pub files: Vec<PathBuf>,
    /// The files' parse trees, done with once the model is built. A reload frees them after
    /// the new snapshot serves: freeing 10,000 routes' trees takes milliseconds.
    pub spent: Vec<SourceFile>,
}

impl Loaded {
    pub fn errors(&self) -> Vec<Diagnostic> {
        self.diagnostics.errors().cloned().collect()
    }
}

/// Kong's declarative file names.
const KONG_FILES: [&str; 3] = ["kong.yaml", "kong.yml", "kong.json"];

/// Config files in `dir`, in load order: Kong files, then `ocelot.json`, then the other
/// `ocelot.*.json` by name, `ocelot.global.json` last.
pub fn config_files(dir: &FsPath) -> std::io::Result<Vec<PathBuf>> {
    let mut kong = Vec::new();
    let mut ocelot = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        // `..data`-style entries and editor temp files are not config.
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        if KONG_FILES.contains(&lower.as_str()) {
            kong.push(entry.path());
        } else if lower == "ocelot.json"
            || (lower.starts_with("ocelot.") && lower.ends_with(".json"))
        {
            ocelot.push(entry.path());
        }
    }
    kong.sort();
    ocelot.sort_by_key(|p| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        (
            if n == "ocelot.json" {
                0
            } else if n == "ocelot.global.json" {
                2
            } else {
                1
            },
            n,
        )
    });
    kong.extend(ocelot);
    Ok(kong)
}

fn push_de_problems(diags: &mut Diagnostics, file: &SourceFile, problems: Vec<DeError>) {
    for p in problems {
        let span = p.span.unwrap_or_default();
        diags.items.push(Diagnostic {
            severity: if p.warning {
                Severity::Warning
            } else {
                Severity::Error
            },
            file: file.name.clone(),
            line: span.line,
            column: span.col,
            path: p.path.to_string(),
            message: p.message,
        });
    }
}

/// Loads every config file of `dir` into one model, with the environment of `environment()`.
pub fn load_dir(dir: &FsPath) -> Loaded {
    load_dir_env(dir, environment().as_deref())
}

/// Loads every config file of `dir` into one model: Kong files first, then the Ocelot files
/// merged as `config::ocelot` describes (with `environment`'s `ocelot.NAME.json` layered on top).
pub fn load_dir_env(dir: &FsPath, environment: Option<&str>) -> Loaded {
    read_dir_env(dir, environment).load(environment)
}

/// The config files of a directory as read, before any parsing: enough to tell an unchanged
/// directory (same `hash`) for the cost of the reads alone.
pub struct Sources {
    /// The directory read.
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// FNV-1a over every file's name and bytes (and the environment's name).
    pub hash: u64,
    /// Each file's name and text, in load order (files that could not be read are left out).
    texts: Vec<(String, String)>,
    diagnostics: Diagnostics,
}

impl Sources {
    /// Some file could not be listed or read, or is not UTF-8.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.has_errors()
    }

    /// Parses, checks and merges the files into one model.
    pub fn load(self, environment: Option<&str>) -> Loaded {
        load_sources(self, environment)
    }
}

/// Reads the config files of `dir`, hashing names and bytes, and `environment`'s name.
pub fn read_dir_env(dir: &FsPath, environment: Option<&str>) -> Sources {
    let mut diagnostics = Diagnostics::default();
    let mut hash = Fnv::default();
    let files = match config_files(dir) {
        Ok(f) => f,
        Err(e) => {
            diagnostics.file_error(
                &dir.display().to_string(),
                format!("cannot read the config directory: {e}"),
            );
            return Sources {
                dir: dir.to_path_buf(),
                files: Vec::new(),
                hash: 0,
                texts: Vec::new(),
                diagnostics,
            };
        }
    };
    let mut texts = Vec::with_capacity(files.len());
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read(path) {
            Ok(bytes) => {
                hash.write(name.as_bytes());
                hash.write(&bytes);
                match String::from_utf8(bytes) {
                    Ok(t) => texts.push((name, t)),
                    Err(_) => diagnostics.file_error(&name, "the file is not valid UTF-8"),
                }
            }
            Err(e) => diagnostics.file_error(&name, format!("cannot read the file: {e}")),
        }
    }
    if let Some(env) = environment {
        hash.write(b"\0environment\0");
        hash.write(env.as_bytes());
    }
    Sources {
        dir: dir.to_path_buf(),
        files,
        hash: hash.finish(),
        texts,
        diagnostics,
    }
}

fn load_sources(sources: Sources, environment: Option<&str>) -> Loaded {
    let Sources {
        dir,
        files,
        hash,
        texts,
        diagnostics: mut diags,
    } = sources;
    let mut ocelot_files: Vec<SourceFile> = Vec::new();
    let mut spent: Vec<SourceFile> = Vec::new();
    let mut model = Model {
        config_dir: Some(dir),
        ..Model::default()
    };
    for (name, text) in texts {
        let lower = name.to_ascii_lowercase();
        let is_kong = KONG_FILES.contains(&lower.as_str());
        let parsed = if lower.ends_with(".json") {
            node::parse_jsonc(&text)
        } else {
            node::parse_yaml(&text)
        };
        let root = match parsed {
            Ok(n) => n,
            Err(e) => {
                diags.items.push(Diagnostic {
                    severity: Severity::Error,
                    file: name.clone(),
                    line: e.span.line,
                    column: e.span.col,
                    path: String::new(),
                    message: format!("syntax error: {}", e.message),
                });
                continue;
            }
        };
        if is_kong {
            let file = SourceFile {
                name,
                root,
                case_insensitive: false,
            };
            if file.root.is_null() {
                diags.error(&file, &super::diag::Path::root(), "the file is empty; expected a declarative configuration with `_format_version`");
                continue;
            }
            let (raw, problems) = de::from_node::<kong::raw::RawKong>(&file.root, Dialect::Kong);
            push_de_problems(&mut diags, &file, problems);
            if let Some(raw) = raw {
                kong::load_file(&file, raw, &mut model, &mut diags);
            }
            spent.push(file);
        } else {
            ocelot_files.push(SourceFile {
                name,
                root,
                case_insensitive: true,
            });
        }
    }
    ocelot::load(&ocelot_files, environment, &mut model, &mut diags);
    spent.append(&mut ocelot_files);
    // Files in load order, then by position: the order a reader fixes them in.
    let order: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    diags.items.sort_by_key(|d| {
        (
            order
                .iter()
                .position(|f| *f == d.file)
                .unwrap_or(usize::MAX),
            d.line,
            d.column,
        )
    });
    Loaded {
        model,
        diagnostics: diags,
        hash,
        files,
        spent,
    }
}
