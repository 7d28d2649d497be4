//! `oauth2` (PRIORITY 1400, access): an OAuth 2.0 authorization server inside the gateway
//! (authorization code with PKCE, implicit, client credentials and password grants), issuing
//! and checking access and refresh tokens it keeps in Kong's database. Not served yet: its
//! config is checked against Kong's schema, and the routes it applies to are refused at load
//! (it needs a database).

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::{non_empty_fields, non_empty_items};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/oauth2/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Scope names offered to the end user (needed with `mandatory_scope`).
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub mandatory_scope: bool,
    /// The key the authorization endpoint is called with. Kong generates one when it is
    /// missing (`auto = true`).
    pub provision_key: Option<String>,
    /// Access token lifetime in seconds; 0: tokens do not expire.
    #[serde(default = "default_token_expiration")]
    pub token_expiration: f64,
    #[serde(default)]
    pub enable_authorization_code: bool,
    #[serde(default)]
    pub enable_implicit_grant: bool,
    #[serde(default)]
    pub enable_client_credentials: bool,
    #[serde(default)]
    pub enable_password_grant: bool,
    #[serde(default)]
    pub hide_credentials: bool,
    #[serde(default)]
    pub accept_http_if_already_terminated: bool,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    /// Credentials of any service with `global_credentials` are valid here.
    #[serde(default)]
    pub global_credentials: bool,
    /// The header carrying the access token.
    #[serde(default = "default_auth_header_name")]
    pub auth_header_name: String,
    /// Refresh token lifetime in seconds; 0: they do not expire.
    #[serde(default = "default_refresh_token_ttl")]
    pub refresh_token_ttl: f64,
    #[serde(default)]
    pub reuse_refresh_token: bool,
    #[serde(default)]
    pub pkce: Pkce,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

/// How Proof Key for Code Exchange is required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Pkce {
    #[serde(rename = "none")]
    None,
    /// Required of public clients only.
    #[default]
    #[serde(rename = "lax")]
    Lax,
    #[serde(rename = "strict")]
    Strict,
}

fn default_token_expiration() -> f64 {
    7200.0
}

fn default_auth_header_name() -> String {
    "authorization".to_string()
}

fn default_refresh_token_ttl() -> f64 {
    1_209_600.0
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        // `typedefs.ttl`: between 0 and Kong's DAO_MAX_TTL.
        c.between(
            "refresh_token_ttl",
            self.refresh_token_ttl,
            0.0,
            100_000_000.0,
        );
        non_empty_fields(
            c,
            "",
            &[
                ("provision_key", self.provision_key.as_deref()),
                ("anonymous", self.anonymous.as_deref()),
                ("auth_header_name", Some(&self.auth_header_name)),
                ("realm", self.realm.as_deref()),
            ],
        );
        non_empty_items(c, "scopes", self.scopes.as_deref().unwrap_or_default());
        c.required_if(
            "scopes",
            self.scopes.is_some(),
            self.mandatory_scope,
            "mandatory_scope is true",
        );
        if !(self.enable_authorization_code
            || self.enable_implicit_grant
            || self.enable_client_credentials
            || self.enable_password_grant)
        {
            c.error(
                "",
                "at least one of these fields must be true: enable_authorization_code, \
                 enable_implicit_grant, enable_client_credentials, enable_password_grant",
            );
        }
    }
}

/// `oauth2` (PRIORITY 1400).
pub struct OAuth2;

impl PluginSpec for OAuth2 {
    const NAME: &'static str = "oauth2";
    const PRIORITY: i32 = 1400;
    const KIND: Kind = Kind::NeedsDatabase;
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
        let c: Config = parse("enable_client_credentials: true").unwrap();
        assert_eq!(c.token_expiration, 7200.0);
        assert_eq!(c.refresh_token_ttl, 1_209_600.0);
        assert_eq!(c.auth_header_name, "authorization");
        assert_eq!(c.pkce, Pkce::Lax);
        assert!(!c.mandatory_scope && !c.global_credentials && !c.reuse_refresh_token);
        assert_eq!((c.scopes, c.provision_key), (None, None));
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "scopes: [email, profile]\nmandatory_scope: true\nprovision_key: pk\n\
             token_expiration: 60\nenable_authorization_code: true\nenable_implicit_grant: true\n\
             enable_client_credentials: true\nenable_password_grant: true\n\
             hide_credentials: true\naccept_http_if_already_terminated: true\n\
             anonymous: guest\nglobal_credentials: true\nauth_header_name: x-token\n\
             refresh_token_ttl: 0\nreuse_refresh_token: true\npkce: strict\nrealm: api",
        )
        .unwrap();
        assert_eq!(c.scopes.unwrap(), ["email", "profile"]);
        assert_eq!(c.pkce, Pkce::Strict);
        assert_eq!(c.refresh_token_ttl, 0.0);
        assert_eq!(c.provision_key.as_deref(), Some("pk"));
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("{}").unwrap_err(),
            [
                ": at least one of these fields must be true: enable_authorization_code, \
              enable_implicit_grant, enable_client_credentials, enable_password_grant"
            ]
        );
        assert_eq!(
            parse::<Config>(
                "enable_password_grant: true\nmandatory_scope: true\nrefresh_token_ttl: 100000001"
            )
            .unwrap_err(),
            [
                "refresh_token_ttl: value should be between 0 and 100000000",
                "scopes: required field missing (mandatory_scope is true)",
            ]
        );
        assert_eq!(
            parse::<Config>("enable_password_grant: true\npkce: always").unwrap_err(),
            ["pkce: `always` is not one of: none, lax, strict"]
        );
        assert_eq!(
            parse::<Config>("enable_password_grant: true\nscope: [a]").unwrap_err(),
            ["scope: unknown field `scope`; did you mean `scopes`?"]
        );
    }

    #[test]
    fn real_configs() {
        parse::<Config>(
            "accept_http_if_already_terminated: true\nanonymous: null\n\
             auth_header_name: authorization\nenable_authorization_code: true\n\
             enable_client_credentials: true\nenable_implicit_grant: false\n\
             enable_password_grant: false\nglobal_credentials: true\nhide_credentials: false\n\
             mandatory_scope: true\npkce: lax\nrefresh_token_ttl: 1209600.0\n\
             reuse_refresh_token: false\nscopes: [rpname]\ntoken_expiration: 7200",
        )
        .unwrap();
    }
}
