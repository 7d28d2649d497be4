//! The consumers of a snapshot and the indexes authentication finds them by: from a presented
//! key-auth key, basic-auth or hmac-auth username, or jwt key (`iss`) to its credential and
//! consumer in constant time, and from an id or username to a consumer (anonymous consumers).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::model::{Model, Origin, Secret};
use crate::config::vault::Vaults;
use crate::exchange::{Consumer, Credential};

/// A credential and the consumer it identifies.
#[derive(Debug, Clone)]
pub struct Found {
    pub consumer: Arc<Consumer>,
    pub credential: Arc<Credential>,
}

/// What a jwt credential verifies with, parsed once per snapshot.
#[derive(Clone)]
pub struct JwtKey {
    pub algorithm: Algorithm,
    /// The secret (HS*) or the public key.
    pub key: DecodingKey,
    /// HS* only: the secret read as base64url, for plugins with `secret_is_base64` (`None`
    /// when it is not base64).
    pub base64_key: Option<DecodingKey>,
}

impl JwtKey {
    /// Kong's `jwt_secrets` algorithms, but ES512 (no maintained verifier in the crypto
    /// backend this build uses).
    fn compile(algorithm: &str, secret: &str, public_key: Option<&str>) -> Result<JwtKey, String> {
        use Algorithm::*;
        let algorithm = match algorithm {
            "HS256" => HS256,
            "HS384" => HS384,
            "HS512" => HS512,
            "RS256" => RS256,
            "RS384" => RS384,
            "RS512" => RS512,
            "PS256" => PS256,
            "PS384" => PS384,
            "PS512" => PS512,
            "ES256" => ES256,
            "ES384" => ES384,
            "EdDSA" => EdDSA,
            other => {
                return Err(format!(
                    "algorithm {other} is not supported (use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA)"
                ));
            }
        };
        if matches!(algorithm, HS256 | HS384 | HS512) {
            let base64_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret.trim_end_matches('='))
                .ok()
                .and_then(|b| DecodingKey::from_secret(&b).ok());
            let key = DecodingKey::from_secret(secret.as_bytes())
                .map_err(|e| format!("secret: not usable for {algorithm:?}: {e}"))?;
            return Ok(JwtKey {
                algorithm,
                key,
                base64_key,
            });
        }
        let pem = public_key
            .ok_or("rsa_public_key: required field missing for an asymmetric algorithm")?
            .as_bytes();
        let key = match algorithm {
            ES256 | ES384 => DecodingKey::from_ec_pem(pem),
            EdDSA => DecodingKey::from_ed_pem(pem),
            _ => DecodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| format!("rsa_public_key: not a usable public key for {algorithm:?}: {e}"))?;
        Ok(JwtKey {
            algorithm,
            key,
            base64_key: None,
        })
    }
}

/// A problem found while compiling credentials: where the credential was written, and what.
pub type CredentialProblem = (Origin, String);

/// Credential lookups by a string the config holds: FNV, since clients only look keys up and
/// cannot add any, so SipHash's flood resistance buys nothing on the request path.
type ByKey<V> = HashMap<Box<str>, V, std::hash::BuildHasherDefault<crate::fnv::Fnv>>;

/// Every consumer, by position in the config, and the lookups over their credentials.
#[derive(Default)]
pub struct Consumers {
    pub list: Vec<Arc<Consumer>>,
    key_auth: ByKey<Found>,
    basic_auth: ByKey<(Found, Box<str>)>,
    hmac_auth: ByKey<(Found, Box<str>)>,
    jwt: ByKey<(Found, JwtKey)>,
    /// Ids and usernames.
    refs: ByKey<usize>,
}

impl Consumers {
    /// Compiles the consumers and their credentials, reading secret references through
    /// `vaults`. A credential that cannot be used (a reference that cannot be read, a key that
    /// does not parse, a key another credential resolved to) is a problem, and left out.
    pub fn compile(model: &Model, vaults: &Vaults) -> (Consumers, Vec<CredentialProblem>) {
        let mut out = Consumers::default();
        let mut problems = Vec::new();
        for (index, c) in model.consumers.iter().enumerate() {
            let acl_groups = c
                .credentials
                .iter()
                .filter_map(|cred| match &cred.secret {
                    Secret::Acl { group } => Some(Arc::from(group.as_str())),
                    _ => None,
                })
                .collect();
            let header = |v: &str| http::HeaderValue::from_str(v).ok();
            let consumer = Arc::new(Consumer {
                index,
                id: c.id.as_str().into(),
                username: c.username.as_deref().map(Arc::from),
                custom_id: c.custom_id.as_deref().map(Arc::from),
                acl_groups,
                consumer_groups: c.groups.clone(),
                id_header: header(&c.id).unwrap_or_else(|| http::HeaderValue::from_static("")),
                custom_id_header: c.custom_id.as_deref().and_then(header),
                username_header: c.username.as_deref().and_then(header),
            });
            out.refs.insert(c.id.as_str().into(), index);
            if let Some(u) = &c.username {
                out.refs.insert(u.as_str().into(), index);
            }
            for cred in &c.credentials {
                let resolved = match resolve_secret(&cred.secret, vaults) {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push((cred.origin.clone(), e));
                        continue;
                    }
                };
                let found = |identifier: &str| Found {
                    consumer: consumer.clone(),
                    credential: Arc::new(Credential {
                        id: cred.id.as_str().into(),
                        kind: cred.secret.kind(),
                        identifier: identifier.into(),
                        identifier_header: http::HeaderValue::from_str(identifier).ok(),
                    }),
                };
                let duplicate = match resolved {
                    Secret::KeyAuth { key } => insert(&mut out.key_auth, &key, found(&cred.id)),
                    Secret::BasicAuth { username, password } => insert(
                        &mut out.basic_auth,
                        &username,
                        (found(&username), password.into()),
                    ),
                    Secret::HmacAuth { username, secret } => insert(
                        &mut out.hmac_auth,
                        &username,
                        (found(&username), secret.into()),
                    ),
                    Secret::Jwt {
                        key,
                        secret,
                        algorithm,
                        rsa_public_key,
                    } => match JwtKey::compile(&algorithm, &secret, rsa_public_key.as_deref()) {
                        Ok(verify) => insert(&mut out.jwt, &key, (found(&key), verify)),
                        Err(e) => {
                            problems.push((cred.origin.clone(), format!("jwt_secrets: {e}")));
                            false
                        }
                    },
                    Secret::Acl { .. } | Secret::OAuth2(_) => false,
                };
                if duplicate {
                    problems.push((
                        cred.origin.clone(),
                        format!(
                            "uniqueness violation: another '{}' entity resolves to the same value",
                            cred.secret.kind()
                        ),
                    ));
                }
            }
            out.list.push(consumer);
        }
        (out, problems)
    }

    /// The key-auth credential with this key.
    pub fn by_key(&self, key: &str) -> Option<&Found> {
        self.key_auth.get(key)
    }

    /// The basic-auth credential of this username, and its password as configured.
    pub fn by_basic_username(&self, username: &str) -> Option<(&Found, &str)> {
        self.basic_auth.get(username).map(|(f, p)| (f, &**p))
    }

    /// The hmac-auth credential of this username, and its secret.
    pub fn by_hmac_username(&self, username: &str) -> Option<(&Found, &str)> {
        self.hmac_auth.get(username).map(|(f, s)| (f, &**s))
    }

    /// The jwt credential with this key (the token's `iss`, or the configured claim).
    pub fn by_jwt_key(&self, key: &str) -> Option<(&Found, &JwtKey)> {
        self.jwt.get(key).map(|(f, k)| (f, k))
    }

    /// The consumer with this id or username (an `anonymous` setting).
    pub fn by_ref(&self, id_or_username: &str) -> Option<&Arc<Consumer>> {
        self.refs.get(id_or_username).map(|&i| &self.list[i])
    }
}

/// Adds `value` under `key`; `true` when the key was taken (the first stays).
fn insert<V>(map: &mut ByKey<V>, key: &str, value: V) -> bool {
    if map.contains_key(key) {
        return true;
    }
    map.insert(key.into(), value);
    false
}

/// The credential with its secret references read.
fn resolve_secret(secret: &Secret, vaults: &Vaults) -> Result<Secret, String> {
    let read = |field: &str, v: &String| -> Result<String, String> {
        match vaults.resolve(v) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Ok(v.clone()),
            Err(e) => Err(format!("{field}: cannot resolve {v}: {e}")),
        }
    };
    Ok(match secret {
        Secret::KeyAuth { key } => Secret::KeyAuth {
            key: read("key", key)?,
        },
        Secret::BasicAuth { username, password } => Secret::BasicAuth {
            username: read("username", username)?,
            password: read("password", password)?,
        },
        Secret::HmacAuth { username, secret } => Secret::HmacAuth {
            username: read("username", username)?,
            secret: read("secret", secret)?,
        },
        Secret::Jwt {
            key,
            secret,
            algorithm,
            rsa_public_key,
        } => Secret::Jwt {
            key: read("key", key)?,
            secret: read("secret", secret)?,
            algorithm: algorithm.clone(),
            rsa_public_key: rsa_public_key
                .as_ref()
                .map(|k| read("rsa_public_key", k))
                .transpose()?,
        },
        other => other.clone(),
    })
}
