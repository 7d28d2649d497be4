//! Secret references (Kong's `{vault://NAME/RESOURCE[/KEY][?OPTIONS][#VERSION]}`), so that
//! configs kept in git hold no secret in clear. Resolved when a snapshot is compiled (and
//! again on every reload): a credential or plugin setting written as a reference gets the
//! secret's value; the model keeps the reference, so nothing that prints a config can print
//! the secret.
//!
//! The `env` vault reads environment variables as Kong's does (`kong/vaults/env`): the
//! variable is the resource upper-cased with `-` as `_`, after the vault's `prefix`;
//! `#2` reads `NAME_PREVIOUS`; a KEY reads that field of a JSON value. A `vaults` entity
//! of `name: env` adds its own `prefix` (the reference's NAME) with its `config.prefix`;
//! `?prefix=X_` sets it in one reference. `?base64_decode=true` decodes the value.

use std::collections::HashMap;

use base64::Engine;

use super::diag::Path;
use super::node::{Node, Value};

/// One vault a reference may name: Kong's `env`, or a `vaults` entity of that kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvVault {
    /// Prepended to the variable name (`config.prefix`).
    pub prefix: Option<String>,
}

/// The vaults references can name, by the name they use.
#[derive(Clone, Debug, PartialEq)]
pub struct Vaults {
    env: HashMap<String, EnvVault>,
    /// Vault entities of kinds switchyard cannot read (aws, gcp, hcv, azure, ...).
    other: HashMap<String, String>,
}

impl Default for Vaults {
    fn default() -> Self {
        let mut env = HashMap::new();
        env.insert("env".to_string(), EnvVault::default());
        Vaults {
            env,
            other: HashMap::new(),
        }
    }
}

/// A string that is a reference: `{vault://...}` and nothing else.
pub fn is_reference(s: &str) -> bool {
    s.starts_with("{vault://") && s.ends_with('}')
}

impl Vaults {
    /// Adds a `vaults` entity: `kind` is its `name` (the vault it uses), `prefix` the name
    /// references give it.
    pub fn add(&mut self, kind: &str, prefix: &str, env_prefix: Option<String>) {
        if kind == "env" {
            self.env
                .insert(prefix.to_string(), EnvVault { prefix: env_prefix });
        } else {
            self.other.insert(prefix.to_string(), kind.to_string());
        }
    }

    /// The value `s` stands for: `Ok(None)` when it is no reference, the secret when it is
    /// one, or why it cannot be read (naming the variable).
    pub fn resolve(&self, s: &str) -> Result<Option<String>, String> {
        if !is_reference(s) {
            return Ok(None);
        }
        self.read(&s[1..s.len() - 1], |name| std::env::var(name))
            .map(Some)
    }

    /// `node` with every reference among its strings replaced by its value; `None` when it
    /// holds no reference (nothing to copy). Each reference that cannot be read is a
    /// problem at its path below `at`, naming the variable.
    pub fn resolve_tree(&self, node: &Node) -> Result<Option<Node>, Vec<(Path, String)>> {
        if !holds_reference(node) {
            return Ok(None);
        }
        let mut out = node.clone();
        let mut problems = Vec::new();
        self.resolve_in(&mut out, Path::root(), &mut problems);
        if problems.is_empty() {
            Ok(Some(out))
        } else {
            Err(problems)
        }
    }

    fn resolve_in(&self, node: &mut Node, at: Path, problems: &mut Vec<(Path, String)>) {
        match &mut node.value {
            Value::Scalar(s) if !s.plain => match self.resolve(&s.text) {
                Ok(Some(v)) => s.text = v.into(),
                Ok(None) => {}
                Err(e) => problems.push((at, format!("cannot resolve {}: {e}", s.text))),
            },
            Value::Scalar(_) => {}
            Value::Seq(items) => {
                for (i, n) in items.iter_mut().enumerate() {
                    self.resolve_in(n, at.index(i), problems);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    let key = k.as_str().unwrap_or_default().to_string();
                    self.resolve_in(v, at.key(key), problems);
                }
            }
        }
    }

    /// Reads `vault://...` with `getenv`.
    fn read(
        &self,
        url: &str,
        getenv: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<String, String> {
        let rest = url.strip_prefix("vault://").unwrap_or(url);
        let (rest, version) = match rest.split_once('#') {
            Some((r, v)) => (
                r,
                Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("reference has an invalid version `#{v}`"))?,
                ),
            ),
            None => (rest, None),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (name, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("reference `{url}` names no resource"))?;
        let Some(vault) = self.env.get(name) else {
            return Err(match self.other.get(name) {
                Some(kind) => format!(
                    "vault `{name}` is a `{kind}` vault, which switchyard cannot read (only `env`)"
                ),
                None => format!("no vault named `{name}` (use `env`, or declare it in `vaults`)"),
            });
        };
        let (resource, key) = match path.rsplit_once('/') {
            Some((r, k)) if !k.is_empty() => (r, Some(k)),
            _ => (path.trim_end_matches('/'), None),
        };
        if resource.is_empty() {
            return Err(format!("reference `{url}` has an empty resource"));
        }
        let mut prefix = vault.prefix.clone().unwrap_or_default();
        let mut base64_decode = false;
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "prefix" => prefix = v.to_string(),
                "base64_decode" => base64_decode = v == "true",
                _ => {}
            }
        }
        let mut variable = format!("{prefix}{resource}")
            .replace('-', "_")
            .to_uppercase();
        if version == Some(2) {
            variable.push_str("_PREVIOUS");
        }
        let mut value =
            getenv(&variable).map_err(|_| format!("environment variable {variable} is not set"))?;
        if let Some(key) = key {
            let json: serde_json::Value = serde_json::from_str(&value).map_err(|_| {
                format!("environment variable {variable} is not JSON, so it has no `{key}`")
            })?;
            value = match json.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(format!(
                        "`{key}` of environment variable {variable} is not a string"
                    ));
                }
                None => return Err(format!("environment variable {variable} has no `{key}`")),
            };
        }
        if base64_decode {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| format!("environment variable {variable} is not base64"))?;
            value = String::from_utf8(bytes).map_err(|_| {
                format!("environment variable {variable} is not UTF-8 once decoded")
            })?;
        }
        Ok(value)
    }
}

fn holds_reference(node: &Node) -> bool {
    match &node.value {
        Value::Scalar(s) => !s.plain && is_reference(&s.text),
        Value::Seq(items) => items.iter().any(holds_reference),
        Value::Map(entries) => entries.iter().any(|(_, v)| holds_reference(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Result<String, std::env::VarError> {
        match name {
            "MY_SECRET" => Ok("s3cret".into()),
            "MY_SECRET_PREVIOUS" => Ok("old".into()),
            "SSL_CERT" => Ok(r#"{"key": "k1", "n": 1}"#.into()),
            "B64" => Ok("aGVsbG8=".into()),
            _ => Err(std::env::VarError::NotPresent),
        }
    }

    #[test]
    fn references_read_as_kongs_env_vault_reads_them() {
        let mut v = Vaults::default();
        v.add("env", "my-env", Some("ssl_".into()));
        v.add("aws", "aws-prod", None);
        let read = |r: &str| v.read(&r[1..r.len() - 1], env);
        assert_eq!(read("{vault://env/my-secret}").unwrap(), "s3cret");
        assert_eq!(read("{vault://env/my-secret#2}").unwrap(), "old");
        assert_eq!(read("{vault://env/cert/key?prefix=SSL_}").unwrap(), "k1");
        assert_eq!(read("{vault://my-env/cert/key}").unwrap(), "k1");
        assert_eq!(
            read("{vault://env/b64?base64_decode=true}").unwrap(),
            "hello"
        );
        assert_eq!(
            read("{vault://env/missing}").unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert!(
            read("{vault://env/cert/n?prefix=SSL_}")
                .unwrap_err()
                .contains("not a string")
        );
        assert!(
            read("{vault://aws-prod/x}")
                .unwrap_err()
                .contains("`aws` vault")
        );
        assert!(
            read("{vault://nope/x}")
                .unwrap_err()
                .contains("no vault named `nope`")
        );
        assert_eq!(Vaults::default().resolve("plain").unwrap(), None);
    }
}
