//! `basic-auth` (PRIORITY 1100, access): identifies the consumer by the username and
//! password of an `Authorization: Basic` (or `Proxy-Authorization`) header, against the
//! consumers' `basicauth_credentials`; optionally strips the header before proxying, or lets
//! the request through as an `anonymous` consumer (`kong/plugins/basic-auth/access.lua`).
//! Passwords are compared in constant time.

use std::sync::Arc;

use base64::Engine;
use http::{HeaderName, HeaderValue, header};
use serde::Deserialize;

use super::auth::{self, Attempt};
use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::Consumer;
use crate::snapshot::Consumers;

/// The plugin's `config` (Kong's `kong/plugins/basic-auth/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    #[serde(default)]
    pub hide_credentials: bool,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    #[serde(default = "default_realm")]
    pub realm: String,
}

fn default_realm() -> String {
    "service".to_string()
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        non_empty(
            c,
            &[
                ("anonymous", self.anonymous.as_deref()),
                ("realm", Some(&self.realm)),
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

/// `basic-auth` (PRIORITY 1100).
pub struct BasicAuth;

impl PluginSpec for BasicAuth {
    const NAME: &'static str = "basic-auth";
    const PRIORITY: i32 = 1100;
    const KIND: Kind = Kind::Authenticates;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Handler {
            anonymous: auth::anonymous(cx.consumers, config.anonymous.as_deref())?,
            challenge: auth::challenge("Basic", Some(&config.realm)),
            hide_credentials: config.hide_credentials,
            consumers: cx.consumers.clone(),
        })))
    }
}

struct Handler {
    anonymous: Option<Arc<Consumer>>,
    challenge: HeaderValue,
    hide_credentials: bool,
    consumers: Arc<Consumers>,
}

impl Handler {
    /// Kong's `do_authentication`: `Proxy-Authorization` first, then `Authorization`.
    fn attempt(&self, req: &mut Request<'_>) -> Attempt {
        let fail = || Attempt::Failed(auth::unauthorized("Unauthorized", &self.challenge));
        let headers = req.headers();
        if !headers.contains_key(header::AUTHORIZATION)
            && !headers.contains_key(header::PROXY_AUTHORIZATION)
        {
            return fail();
        }
        let mut found = None;
        if let Some((user, password)) = self.retrieve(req, &header::PROXY_AUTHORIZATION) {
            found = self
                .consumers
                .by_basic_username(&user)
                .map(|f| (f, password));
        }
        if found.is_none() {
            let Some((user, password)) = self.retrieve(req, &header::AUTHORIZATION) else {
                return fail();
            };
            found = self
                .consumers
                .by_basic_username(&user)
                .map(|f| (f, password));
        }
        match found {
            Some(((f, configured), given))
                if auth::secrets_match(given.as_bytes(), configured.as_bytes()) =>
            {
                Attempt::Authenticated(f.clone())
            }
            _ => fail(),
        }
    }

    /// The username and password in header `name` (`[Bb]asic base64(user:password)`); the
    /// header leaves the request with `hide_credentials`, readable or not.
    fn retrieve(&self, req: &mut Request<'_>, name: &HeaderName) -> Option<(String, String)> {
        let found = req.header(name.as_str()).and_then(parse_basic);
        if self.hide_credentials {
            req.headers_mut().remove(name);
        }
        found
    }
}

/// Kong's `\s*[Bb]asic\s*(.+)` then `([^:]+):(.*)` over the decoded text.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let at = value
        .find("asic")
        .filter(|&i| i > 0 && matches!(&value[i - 1..i], "B" | "b"))?;
    let encoded = value[at + 4..].trim_start();
    if encoded.is_empty() {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_end())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.trim_start_matches(':').split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        BasicAuth::NAME
    }
    fn priority(&self) -> i32 {
        BasicAuth::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        auth::access(ctx, req, true, self.anonymous.as_ref(), |_, req| {
            self.attempt(req)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_read_as_kong_reads_it() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let p = |v: String| parse_basic(&v);
        assert_eq!(
            p(format!("Basic {}", b64("bob:kong"))),
            Some(("bob".into(), "kong".into()))
        );
        assert_eq!(
            p(format!("basic {}", b64("u:pass:word"))),
            Some(("u".into(), "pass:word".into()))
        );
        assert_eq!(
            p(format!("Basic {}", b64("u:"))),
            Some(("u".into(), "".into()))
        );
        assert_eq!(p(format!("Basic {}", b64("nocolon"))), None);
        assert_eq!(p("Basic !!!".into()), None);
        assert_eq!(p(format!("Bearer {}", b64("bob:kong"))), None);
    }
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.realm, "service");
        assert!(!c.hide_credentials);
        assert_eq!(c.anonymous, None);
        assert_eq!(parse::<Config>("realm: null").unwrap().realm, "service");
    }

    #[test]
    fn every_field() {
        let c: Config =
            parse("anonymous: guest\nhide_credentials: true\nrealm: test-realm").unwrap();
        assert_eq!(c.anonymous.as_deref(), Some("guest"));
        assert!(c.hide_credentials);
        assert_eq!(c.realm, "test-realm");
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("realm: ''\nanonymous: ''").unwrap_err(),
            [
                "anonymous: length must be at least 1",
                "realm: length must be at least 1"
            ]
        );
        assert_eq!(
            parse::<Config>("hide_credential: true").unwrap_err(),
            ["hide_credential: unknown field `hide_credential`; did you mean `hide_credentials`?"]
        );
        let errs = parse::<Config>("realm: [a]").unwrap_err();
        assert_eq!(errs, ["realm: expected a string, found a list"]);
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "anonymous: null\nhide_credentials: false\nrealm: service",
            "hide_credentials: true",
            "realm: test-realm",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
