//! `basic-auth` (PRIORITY 1100, access): identifies the consumer by the username and
//! password of an `Authorization: Basic` (or `Proxy-Authorization`) header, against the
//! consumers' `basicauth_credentials`; optionally strips the header before proxying, or lets
//! the request through as an `anonymous` consumer. Not served yet: its config is checked
//! against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::non_empty_fields;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

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
        non_empty_fields(
            c,
            "",
            &[
                ("anonymous", self.anonymous.as_deref()),
                ("realm", Some(&self.realm)),
            ],
        );
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
