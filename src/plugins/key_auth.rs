//! `key-auth` (PRIORITY 1250, access): identifies the consumer by an API key looked up in
//! the request's headers, query string or body (under `key_names`), against the consumers'
//! `keyauth_credentials`; optionally strips the key before proxying, or lets the request
//! through as an `anonymous` consumer (`kong/plugins/key-auth/handler.lua`).

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::args::{Arg, BodyKind, query_arg, without_query_arg};
use super::auth::{self, Attempt};
use super::schema::defaults::yes;
use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::Consumer;
use crate::snapshot::Consumers;

/// The plugin's `config` (Kong's `kong/plugins/key-auth/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Header, query argument or body field names the key is looked for under.
    #[serde(default = "default_key_names")]
    pub key_names: Vec<String>,
    #[serde(default)]
    pub hide_credentials: bool,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    #[serde(default = "yes")]
    pub key_in_header: bool,
    #[serde(default = "yes")]
    pub key_in_query: bool,
    #[serde(default)]
    pub key_in_body: bool,
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

fn default_key_names() -> Vec<String> {
    vec!["apikey".to_string()]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (i, name) in self.key_names.iter().enumerate() {
            let field = format!("key_names[{i}]");
            if name.is_empty() {
                c.error(&field, "length must be at least 1");
            } else {
                c.header_name(&field, name);
            }
        }
        non_empty(
            c,
            &[
                ("anonymous", self.anonymous.as_deref()),
                ("realm", self.realm.as_deref()),
            ],
        );
    }
}

/// Kong's strings are non-empty unless the schema says otherwise (an implicit `len_min = 1`).
fn non_empty(c: &mut Checks, fields: &[(&str, Option<&str>)]) {
    for (field, value) in fields {
        if *value == Some("") {
            c.error(field, "length must be at least 1");
        }
    }
}

/// `key-auth` (PRIORITY 1250).
pub struct KeyAuth;

impl PluginSpec for KeyAuth {
    const NAME: &'static str = "key-auth";
    const PRIORITY: i32 = 1250;
    const KIND: Kind = Kind::Authenticates;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let anonymous = auth::anonymous(cx.consumers, config.anonymous.as_deref())?;
        let names = config
            .key_names
            .iter()
            .map(|n| KeyName {
                header: header_names(n),
                name: n.clone(),
            })
            .collect();
        Ok(Some(Arc::new(Handler {
            names,
            challenge: auth::challenge("Key", config.realm.as_deref()),
            anonymous,
            consumers: cx.consumers.clone(),
            config,
        })))
    }
}

/// The largest body read for a key in it (`key_in_body`).
const BODY_LIMIT: usize = 8 << 20;

struct KeyName {
    name: String,
    /// The header it is looked for under: the name, and with `_` as `-` (nginx's lookup
    /// treats them alike).
    header: Vec<HeaderName>,
}

fn header_names(name: &str) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = HeaderName::from_bytes(name.as_bytes())
        .into_iter()
        .collect();
    if name.contains('_') {
        out.extend(HeaderName::from_bytes(name.replace('_', "-").as_bytes()));
    }
    out
}

struct Handler {
    config: Config,
    names: Vec<KeyName>,
    challenge: HeaderValue,
    anonymous: Option<Arc<Consumer>>,
    consumers: Arc<Consumers>,
}

impl Handler {
    fn fail(&self, message: &str) -> Attempt {
        Attempt::Failed(auth::unauthorized(message, &self.challenge))
    }

    /// Kong's `do_authentication`: each name in turn in the headers, the query, the body.
    fn attempt(&self, req: &mut Request<'_>) -> Attempt {
        let c = &self.config;
        let body_kind = if c.key_in_body {
            BodyKind::of(req.headers())
        } else {
            None
        };
        if c.hide_credentials && body_kind.is_some() && req.body.is_none() {
            // Kong takes the key out of the body wherever it was found.
            return Attempt::NeedsBody { limit: BODY_LIMIT };
        }
        for key in &self.names {
            let mut found = Arg::Missing;
            if c.key_in_header {
                found = header_arg(req, &key.header);
            }
            if found == Arg::Missing && c.key_in_query {
                found = query_arg(req.query(), &key.name);
            }
            if found == Arg::Missing
                && let Some(kind) = &body_kind
            {
                let Some(body) = req.body.as_ref() else {
                    return Attempt::NeedsBody { limit: BODY_LIMIT };
                };
                found = kind.arg(body, &key.name);
            }
            match found {
                Arg::One(k) => {
                    if c.hide_credentials {
                        self.hide(req, key, body_kind.as_ref());
                    }
                    return self.lookup(&k);
                }
                Arg::Many => return self.fail("Duplicate API key found"),
                Arg::Missing | Arg::NotText => {}
            }
        }
        self.fail("No API key found in request")
    }

    fn lookup(&self, key: &str) -> Attempt {
        if key.is_empty() {
            return self.fail("No API key found in request");
        }
        match self.consumers.by_key(key) {
            Some(found) => Attempt::Authenticated(found.clone()),
            None => self.fail("Unauthorized"),
        }
    }

    /// `hide_credentials`: the key leaves the request wherever it may be.
    fn hide(&self, req: &mut Request<'_>, key: &KeyName, body: Option<&BodyKind>) {
        for h in &key.header {
            req.headers_mut().remove(h);
        }
        if let Some(q) = req.query() {
            let kept = without_query_arg(q, &key.name);
            if kept.as_deref() != Some(q) {
                let _ = req.set_query(kept.as_deref());
            }
        }
        if let (Some(kind), Some(b)) = (body, req.body.as_ref())
            && let Some(stripped) = kind.without(b, &key.name)
        {
            *req.body = Some(stripped);
        }
    }
}

fn header_arg(req: &Request<'_>, names: &[HeaderName]) -> Arg {
    for name in names {
        let mut values = req.headers().get_all(name).iter();
        if let Some(v) = values.next() {
            if values.next().is_some() {
                return Arg::Many;
            }
            return match v.to_str() {
                Ok(s) => Arg::One(s.to_string()),
                Err(_) => Arg::NotText,
            };
        }
    }
    Arg::Missing
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        KeyAuth::NAME
    }
    fn priority(&self) -> i32 {
        KeyAuth::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        auth::access(
            ctx,
            req,
            self.config.run_on_preflight,
            self.anonymous.as_ref(),
            |_, req| self.attempt(req),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.key_names, ["apikey"]);
        assert!(!c.hide_credentials && !c.key_in_body);
        assert!(c.key_in_header && c.key_in_query && c.run_on_preflight);
        assert_eq!((c.anonymous, c.realm), (None, None));
        // An explicit null is "not set": the default applies.
        assert_eq!(
            parse::<Config>("key_names: null").unwrap().key_names,
            ["apikey"]
        );
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "key_names: [x-api-key, token]\nhide_credentials: true\nanonymous: guest\n\
             key_in_header: false\nkey_in_query: false\nkey_in_body: true\n\
             run_on_preflight: false\nrealm: inventory",
        )
        .unwrap();
        assert_eq!(c.key_names, ["x-api-key", "token"]);
        assert!(c.hide_credentials && c.key_in_body);
        assert!(!c.key_in_header && !c.key_in_query && !c.run_on_preflight);
        assert_eq!(c.anonymous.as_deref(), Some("guest"));
        assert_eq!(c.realm.as_deref(), Some("inventory"));
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("key_names: [ok, 'bad name', '']\nrealm: ''").unwrap_err();
        assert_eq!(
            errs,
            [
                "key_names[1]: bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
                "key_names[2]: length must be at least 1",
                "realm: length must be at least 1",
            ]
        );
        let errs = parse::<Config>("key_nmes: [apikey]").unwrap_err();
        assert_eq!(
            errs,
            ["key_nmes: unknown field `key_nmes`; did you mean `key_names`?"]
        );
        let errs = parse::<Config>("hide_credentials: 'true'").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("hide_credentials: expected true or false"));
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "key_names: [apikey]",
            "key_names: [X-Internal-Token]",
            "hide_credentials: true\nkey_names: [apikey]",
            "hide_credentials: false",
            "anonymous: guest",
            "realm: inventory",
            "run_on_preflight: false",
            "key_in_body: true",
            "key_in_query: false",
            "key_names: [svc-key]",
            "anonymous: null\nrealm: null\n_comment: decK metadata",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
