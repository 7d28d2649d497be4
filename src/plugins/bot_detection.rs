//! `bot-detection` (PRIORITY 2500, access): refuses (403) requests whose `User-Agent` is a
//! known bot's (Kong's built-in list of crawler patterns) or matches one of the `deny`
//! regexes, unless it matches one of the `allow` regexes. Not served yet: its config is
//! checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::{check_items, regex_problem};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/bot-detection/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// `User-Agent` regexes let through.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `User-Agent` regexes refused.
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (field, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            check_items(c, field, list, regex_problem);
        }
    }
}

/// `bot-detection` (PRIORITY 2500).
pub struct BotDetection;

impl PluginSpec for BotDetection {
    const NAME: &'static str = "bot-detection";
    const PRIORITY: i32 = 2500;
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
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert!(c.allow.is_empty() && c.deny.is_empty());
    }

    #[test]
    fn every_field() {
        let c: Config =
            parse("allow: ['(Googlebot)']\ndeny: ['(libwww-perl)', '(?<!good)bot']").unwrap();
        assert_eq!(c.allow, ["(Googlebot)"]);
        assert_eq!(c.deny.len(), 2);
    }

    #[test]
    fn rules() {
        // Kong's `is_regex` message shows the value; PCRE-only syntax is accepted.
        assert_eq!(
            parse::<Config>("deny: ['(unclosed', '', '(?<=a)b']").unwrap_err(),
            [
                "deny[0]: not a valid regex: (unclosed",
                "deny[1]: length must be at least 1",
            ]
        );
        assert_eq!(
            parse::<Config>("blacklist: [curl]").unwrap_err(),
            ["blacklist: unknown field `blacklist`"]
        );
        assert_eq!(
            parse::<Config>("deny: curl").unwrap_err(),
            ["deny: expected a list, found a scalar"]
        );
    }

    #[test]
    fn real_configs() {
        parse::<Config>("deny: ['(libwww-perl)', '(Python-urllib)']").unwrap();
    }
}
