//! `jwt` (PRIORITY 1450, access): identifies the consumer by a signed JSON Web Token read
//! from a query argument, cookie or header; the claim `key_claim_name` names the consumer's
//! `jwt_secrets` credential whose secret or public key verifies the signature, and the
//! registered claims in `claims_to_verify` (`exp`, `nbf`) are checked. Not served yet: its
//! config is checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::schema::typedefs::{non_empty_fields, non_empty_items};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/jwt/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Query arguments the token is looked for in.
    #[serde(default = "default_uri_param_names")]
    pub uri_param_names: Vec<String>,
    /// Cookies the token is looked for in.
    #[serde(default)]
    pub cookie_names: Vec<String>,
    /// The claim (payload first, then header) naming the credential's `key`.
    #[serde(default = "default_key_claim_name")]
    pub key_claim_name: String,
    #[serde(default)]
    pub secret_is_base64: bool,
    pub claims_to_verify: Option<Vec<Claim>>,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// The longest lifetime (`exp` from now, in seconds) a token may have; 0: no limit.
    #[serde(default)]
    pub maximum_expiration: f64,
    /// Headers the token is looked for in.
    #[serde(default = "default_header_names")]
    pub header_names: Vec<String>,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

/// A registered claim (RFC 7519) the plugin can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Claim {
    #[serde(rename = "exp")]
    Exp,
    #[serde(rename = "nbf")]
    Nbf,
}

fn default_uri_param_names() -> Vec<String> {
    vec!["jwt".to_string()]
}

fn default_key_claim_name() -> String {
    "iss".to_string()
}

fn default_header_names() -> Vec<String> {
    vec!["authorization".to_string()]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.between(
            "maximum_expiration",
            self.maximum_expiration,
            0.0,
            31_536_000.0,
        );
        // Kong's conditional: a maximum expiration needs `exp` verified.
        if self.maximum_expiration > 0.0
            && let Some(claims) = &self.claims_to_verify
            && !claims.contains(&Claim::Exp)
        {
            c.error(
                "claims_to_verify",
                "expected to contain: exp (failed conditional validation given value of field \
                 'config.maximum_expiration')",
            );
        }
        non_empty_fields(
            c,
            "",
            &[
                ("key_claim_name", Some(&self.key_claim_name)),
                ("anonymous", self.anonymous.as_deref()),
                ("realm", self.realm.as_deref()),
            ],
        );
        for (field, list) in [
            ("uri_param_names", &self.uri_param_names),
            ("cookie_names", &self.cookie_names),
            ("header_names", &self.header_names),
        ] {
            non_empty_items(c, field, list);
        }
    }
}

/// `jwt` (PRIORITY 1450).
pub struct Jwt;

impl PluginSpec for Jwt {
    const NAME: &'static str = "jwt";
    const PRIORITY: i32 = 1450;
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
        assert_eq!(c.uri_param_names, ["jwt"]);
        assert!(c.cookie_names.is_empty());
        assert_eq!(c.key_claim_name, "iss");
        assert_eq!(c.header_names, ["authorization"]);
        assert_eq!(c.maximum_expiration, 0.0);
        assert!(c.run_on_preflight && !c.secret_is_base64);
        assert_eq!(c.claims_to_verify, None);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "uri_param_names: [token]\ncookie_names: [jwt]\nkey_claim_name: kid\n\
             secret_is_base64: true\nclaims_to_verify: [exp, nbf]\nanonymous: guest\n\
             run_on_preflight: false\nmaximum_expiration: 3600\nheader_names: [x-jwt]\n\
             realm: api",
        )
        .unwrap();
        assert_eq!(c.claims_to_verify, Some(vec![Claim::Exp, Claim::Nbf]));
        assert_eq!(c.maximum_expiration, 3600.0);
        assert_eq!(c.key_claim_name, "kid");
        assert_eq!(c.header_names, ["x-jwt"]);
        assert_eq!(c.realm.as_deref(), Some("api"));
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("maximum_expiration: 31536001").unwrap_err(),
            ["maximum_expiration: value should be between 0 and 31536000"]
        );
        assert_eq!(
            parse::<Config>("maximum_expiration: 60\nclaims_to_verify: [nbf]").unwrap_err(),
            [
                "claims_to_verify: expected to contain: exp (failed conditional validation given \
                 value of field 'config.maximum_expiration')"
            ]
        );
        // As in Kong, the conditional only looks at a list that is set.
        parse::<Config>("maximum_expiration: 60").unwrap();
        parse::<Config>("maximum_expiration: 60\nclaims_to_verify: [exp]").unwrap();
        assert_eq!(
            parse::<Config>("claims_to_verify: [iat]").unwrap_err(),
            ["claims_to_verify[0]: `iat` is not one of: exp, nbf"]
        );
        assert_eq!(
            parse::<Config>("header_names: ['']\nkey_claim_name: ''").unwrap_err(),
            [
                "key_claim_name: length must be at least 1",
                "header_names[0]: length must be at least 1"
            ]
        );
        assert_eq!(
            parse::<Config>("claims_to_verfy: [exp]").unwrap_err(),
            ["claims_to_verfy: unknown field `claims_to_verfy`; did you mean `claims_to_verify`?"]
        );
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "claims_to_verify: [exp]\nkey_claim_name: iss",
            "claims_to_verify: [exp]\nkey_claim_name: iss\nsecret_is_base64: false",
            "secret_is_base64: false",
            "claims_to_verify: [exp]",
            "anonymous: null\nclaims_to_verify: null\ncookie_names: []\nheader_names: [authorization]\n\
             key_claim_name: iss\nmaximum_expiration: 0\nrealm: null\nrun_on_preflight: true\n\
             secret_is_base64: false\nuri_param_names: [jwt]",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
