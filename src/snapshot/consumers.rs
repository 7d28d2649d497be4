//! The consumers of a snapshot and the indexes authentication finds them by: from a presented
//! key-auth key, basic-auth or hmac-auth username, or jwt key (`iss`) to its credential and
//! consumer in constant time, and from an id or username to a consumer (anonymous consumers).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::model::{Model, Secret};
use crate::exchange::{Consumer, Credential};

/// A credential and the consumer it identifies.
#[derive(Debug, Clone)]
pub struct Found {
    pub consumer: Arc<Consumer>,
    pub credential: Arc<Credential>,
}

/// What a jwt credential verifies with.
#[derive(Debug, Clone)]
pub struct JwtKey {
    pub secret: Box<str>,
    pub algorithm: Box<str>,
    pub rsa_public_key: Option<Box<str>>,
}

/// Every consumer, by position in the config, and the lookups over their credentials.
#[derive(Default)]
pub struct Consumers {
    pub list: Vec<Arc<Consumer>>,
    key_auth: HashMap<Box<str>, Found>,
    basic_auth: HashMap<Box<str>, (Found, Box<str>)>,
    hmac_auth: HashMap<Box<str>, (Found, Box<str>)>,
    jwt: HashMap<Box<str>, (Found, JwtKey)>,
    /// Ids and usernames.
    refs: HashMap<Box<str>, usize>,
}

impl Consumers {
    pub fn compile(model: &Model) -> Consumers {
        let mut out = Consumers::default();
        for (index, c) in model.consumers.iter().enumerate() {
            let acl_groups = c
                .credentials
                .iter()
                .filter_map(|cred| match &cred.secret {
                    Secret::Acl { group } => Some(Arc::from(group.as_str())),
                    _ => None,
                })
                .collect();
            let consumer = Arc::new(Consumer {
                index,
                id: c.id.as_str().into(),
                username: c.username.as_deref().map(Arc::from),
                custom_id: c.custom_id.as_deref().map(Arc::from),
                acl_groups,
                consumer_groups: c.groups.clone(),
            });
            out.refs.insert(c.id.as_str().into(), index);
            if let Some(u) = &c.username {
                out.refs.insert(u.as_str().into(), index);
            }
            for cred in &c.credentials {
                let found = |identifier: &str| Found {
                    consumer: consumer.clone(),
                    credential: Arc::new(Credential {
                        id: cred.id.as_str().into(),
                        kind: cred.secret.kind(),
                        identifier: identifier.into(),
                    }),
                };
                match &cred.secret {
                    Secret::KeyAuth { key } => {
                        out.key_auth.insert(key.as_str().into(), found(&cred.id));
                    }
                    Secret::BasicAuth { username, password } => {
                        out.basic_auth.insert(
                            username.as_str().into(),
                            (found(username), password.as_str().into()),
                        );
                    }
                    Secret::HmacAuth { username, secret } => {
                        out.hmac_auth.insert(
                            username.as_str().into(),
                            (found(username), secret.as_str().into()),
                        );
                    }
                    Secret::Jwt {
                        key,
                        secret,
                        algorithm,
                        rsa_public_key,
                    } => {
                        let verify = JwtKey {
                            secret: secret.as_str().into(),
                            algorithm: algorithm.as_str().into(),
                            rsa_public_key: rsa_public_key.as_deref().map(Into::into),
                        };
                        out.jwt.insert(key.as_str().into(), (found(key), verify));
                    }
                    Secret::Acl { .. } | Secret::OAuth2(_) => {}
                }
            }
            out.list.push(consumer);
        }
        out
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
