//! `key-auth` (PRIORITY 1250, access): identifies the consumer by an API key looked up in
//! the request's headers, query string or body (under `key_names`), against the consumers'
//! `keyauth_credentials`; optionally strips the key before proxying, or lets the request
//! through as an `anonymous` consumer. Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

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

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
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
