//! `hmac-auth` (PRIORITY 1030, access): identifies the consumer by an HTTP signature
//! (`Authorization: hmac username="…", algorithm="…", headers="…", signature="…"`) made with
//! the secret of one of the consumers' `hmacauth_credentials`, checking the `Date` against
//! `clock_skew` and optionally the body's `Digest`. Not served yet: its config is checked
//! against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::{non_empty_fields, non_empty_items};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/hmac-auth/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub hide_credentials: bool,
    /// How far (in seconds) the request's date may be from the gateway's clock.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: f64,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    #[serde(default)]
    pub validate_request_body: bool,
    /// Headers the signature must at least cover.
    #[serde(default)]
    pub enforce_headers: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

/// The HMAC digests a signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "hmac-sha1")]
    HmacSha1,
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

fn default_clock_skew() -> f64 {
    300.0
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::HmacSha1,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.greater_than("clock_skew", self.clock_skew, 0.0);
        non_empty_fields(
            c,
            "",
            &[
                ("anonymous", self.anonymous.as_deref()),
                ("realm", self.realm.as_deref()),
            ],
        );
        non_empty_items(c, "enforce_headers", &self.enforce_headers);
    }
}

/// `hmac-auth` (PRIORITY 1030).
pub struct HmacAuth;

impl PluginSpec for HmacAuth {
    const NAME: &'static str = "hmac-auth";
    const PRIORITY: i32 = 1030;
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
        assert_eq!(c.clock_skew, 300.0);
        assert_eq!(c.algorithms.len(), 4);
        assert!(c.enforce_headers.is_empty());
        assert!(!c.hide_credentials && !c.validate_request_body);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "hide_credentials: true\nclock_skew: 30\nanonymous: guest\n\
             validate_request_body: true\nenforce_headers: [date, request-line]\n\
             algorithms: [hmac-sha256, hmac-sha512]\nrealm: api",
        )
        .unwrap();
        assert_eq!(c.clock_skew, 30.0);
        assert_eq!(c.algorithms, [Algorithm::HmacSha256, Algorithm::HmacSha512]);
        assert_eq!(c.enforce_headers, ["date", "request-line"]);
        assert!(c.hide_credentials && c.validate_request_body);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("clock_skew: 0").unwrap_err(),
            ["clock_skew: value must be greater than 0"]
        );
        assert_eq!(
            parse::<Config>("algorithms: [hmac-md5]").unwrap_err(),
            [
                "algorithms[0]: `hmac-md5` is not one of: hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512"
            ]
        );
        assert_eq!(
            parse::<Config>("enforce_headers: [date, '']").unwrap_err(),
            ["enforce_headers[1]: length must be at least 1"]
        );
        assert_eq!(
            parse::<Config>("clock_skew: '300'").unwrap_err(),
            ["clock_skew: expected a number, found the string \"300\""]
        );
        assert_eq!(
            parse::<Config>("algorithm: [hmac-sha1]").unwrap_err(),
            ["algorithm: unknown field `algorithm`; did you mean `algorithms`?"]
        );
    }

    #[test]
    fn real_configs() {
        parse::<Config>(
            "algorithms: [hmac-sha256]\nanonymous: null\nclock_skew: 300\nenforce_headers: []\n\
             hide_credentials: false\nrealm: null\nvalidate_request_body: false",
        )
        .unwrap();
    }
}
