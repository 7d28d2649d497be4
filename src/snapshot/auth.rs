//! The Ocelot authentication providers of a snapshot, from the model: each provider's rules,
//! its inline keys (`{vault://...}` references resolved now, on every compile, into copies
//! only this compile sees), its JWKS file (relative to the config directory), and for a JWKS
//! URL or an authority, the key cache kept across reloads by that URL. Every problem is
//! reported at the position of what caused it.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::de::Captured;
use crate::config::diag::Path;
use crate::config::model::{Model, OcelotAuthProvider, Origin};
use crate::config::vault::Vaults;
use crate::plugins::ocelot_jwt::{self, Provider, Providers, Remote, Rules};

use super::State;

/// Every provider of `model`; problems with their positions.
pub fn compile(
    model: &Model,
    state: &State,
    vaults: &Vaults,
) -> (Providers, Vec<(Origin, String)>) {
    let mut out = Providers::default();
    let mut problems = Vec::new();
    for p in &model.ocelot_auth_providers {
        let mut keys = Vec::new();
        for k in &p.keys {
            match inline_key(&k.key, vaults) {
                Ok(mut ks) => keys.append(&mut ks),
                Err((sub, msg)) => problems.push((at(&k.origin, &k.key, &sub), msg)),
            }
        }
        if let Some(f) = &p.jwks_file {
            let path = match &model.config_dir {
                Some(dir) => dir.join(&f.value),
                None => PathBuf::from(&f.value),
            };
            match jwks_file(&path) {
                Ok((mut ks, hash)) => {
                    keys.append(&mut ks);
                    out.files.push((path, hash));
                }
                Err(e) => problems.push((
                    f.origin.clone(),
                    format!("JwksFile `{}`: {e}", path.display()),
                )),
            }
        }
        let remote = remote_source(p).map(|source| {
            let r = state.kept::<Remote>(&format!("ocelot-jwks:{source}"));
            r.configure(
                source,
                Duration::from_secs(p.jwks_refresh_s),
                Duration::from_secs(p.jwks_min_refetch_s),
            );
            r
        });
        out.insert(Provider::new(&rules(p), keys, remote));
    }
    (out, problems)
}

fn rules(p: &OcelotAuthProvider) -> Rules {
    Rules {
        name: p.name.clone(),
        issuers: p.issuers.clone(),
        issuer_from_authority: p.issuer_from_authority,
        audiences: p.audiences.clone(),
        validate_lifetime: p.validate_lifetime,
        require_expiration: p.require_expiration,
        clock_skew_s: p.clock_skew_s,
        algorithms: p.algorithms.clone(),
    }
}

/// An inline key with its references resolved, parsed.
fn inline_key(key: &Captured, vaults: &Vaults) -> Result<Vec<ocelot_jwt::Key>, (Path, String)> {
    let resolved = vaults
        .resolve_tree(&key.node)
        .map_err(|mut p| p.remove(0))?;
    ocelot_jwt::inline_key(&resolved.as_ref().unwrap_or(&key.node).to_json())
}

fn jwks_file(path: &std::path::Path) -> Result<(Vec<ocelot_jwt::Key>, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    Ok((ocelot_jwt::jwks_document(&bytes)?, ocelot_jwt::fnv(&bytes)))
}

/// Where a problem inside an inline key was written: the key's position, or that of the
/// value at `sub` inside it.
fn at(origin: &Origin, key: &Captured, sub: &Path) -> Origin {
    if sub.0.is_empty() {
        return origin.clone();
    }
    let span = key.span_at(sub);
    Origin {
        file: origin.file.clone(),
        line: span.line,
        column: span.col,
        path: format!("{}.{}", origin.path, sub.render()),
    }
}

/// The JWKS URL or discovery URL of a provider, as the key cache's identity.
fn remote_source(p: &OcelotAuthProvider) -> Option<String> {
    match (&p.jwks_url, &p.authority) {
        (Some(u), _) => Some(format!("jwks {}", u.value)),
        (None, Some(a)) => Some(format!(
            "oidc {}/.well-known/openid-configuration",
            a.value.trim_end_matches('/')
        )),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_references_inside_keys_name_the_field_and_the_variable() {
        let node = crate::config::node::parse_jsonc(
            "{\"kty\": \"oct\",\n \"k\": \"{vault://env/SWITCHYARD_TEST_MISSING_KEY}\"}",
        )
        .unwrap();
        let key = Captured {
            node,
            path: Path::root(),
        };
        let (sub, msg) = inline_key(&key, &Vaults::default()).err().unwrap();
        assert_eq!(sub.render(), "k");
        assert!(
            msg.contains("environment variable SWITCHYARD_TEST_MISSING_KEY is not set"),
            "{msg}"
        );
        let origin = Origin {
            file: "ocelot.json".into(),
            line: 1,
            column: 1,
            path: "Keys[0]".into(),
        };
        let o = at(&origin, &key, &sub);
        assert_eq!((o.line, o.path.as_str()), (2, "Keys[0].k"));
    }
}
