//! `standard-webhooks` (PRIORITY 760): in Kong, verifies incoming webhooks signed as the
//! Standard Webhooks specification says (HMAC-SHA256 of `webhook-id`, `webhook-timestamp`
//! and the body, with a shared secret) and rejects stale timestamps. Not served yet: its
//! config is checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::non_empty_fields;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/standard-webhooks/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub secret_v1: String,
    /// Seconds a webhook's timestamp may be off.
    #[serde(default = "default_tolerance")]
    pub tolerance_second: i64,
}

fn default_tolerance() -> i64 {
    5 * 60
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        non_empty_fields(c, "", &[("secret_v1", Some(&self.secret_v1))]);
        c.greater_than("tolerance_second", self.tolerance_second, -1);
    }
}

/// `standard-webhooks` (PRIORITY 760).
pub struct StandardWebhooks;

impl PluginSpec for StandardWebhooks {
    const NAME: &'static str = "standard-webhooks";
    const PRIORITY: i32 = 760;
    const KIND: Kind = Kind::Acts;
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
    fn defaults_and_fields() {
        let c: Config = parse("secret_v1: whsec_abc").unwrap();
        assert_eq!(c.tolerance_second, 300);
        let c: Config = parse("secret_v1: \"{vault://env/wh}\"\ntolerance_second: 0").unwrap();
        assert_eq!(c.tolerance_second, 0);
        assert_eq!(
            parse::<Config>("{}").unwrap_err(),
            [": missing field `secret_v1`"]
        );
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("secret_v1: s\ntolerance_second: -1").unwrap_err();
        assert_eq!(errs, ["tolerance_second: value must be greater than -1"]);
        let errs = parse::<Config>("secret_v1: \"\"").unwrap_err();
        assert_eq!(errs, ["secret_v1: length must be at least 1"]);
        let errs = parse::<Config>("secret_v1: s\ntolerance_seconds: 1").unwrap_err();
        assert_eq!(
            errs,
            [
                "tolerance_seconds: unknown field `tolerance_seconds`; did you mean `tolerance_second`?"
            ]
        );
    }
}
