//! `acl` (PRIORITY 950, access): lets a request through only if the authenticated consumer
//! (or, with `always_use_authenticated_groups`, the authenticated groups) belongs to one of
//! the `allow` groups, or to none of the `deny` groups, from the consumers' `acls`; sends the
//! groups upstream in `X-Consumer-Groups` unless `hide_groups_header`. Not served yet: its
//! config is checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::non_empty_items;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/acl/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Groups allowed (one of `allow` and `deny`).
    pub allow: Option<Vec<String>>,
    /// Groups denied (one of `allow` and `deny`).
    pub deny: Option<Vec<String>>,
    #[serde(default)]
    pub hide_groups_header: bool,
    #[serde(default)]
    pub always_use_authenticated_groups: bool,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (field, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            non_empty_items(c, field, list.as_deref().unwrap_or_default());
        }
        // Kong's entity checks; an empty list counts as not set.
        let fields = [
            ("allow", self.allow.as_ref().is_some_and(|l| !l.is_empty())),
            ("deny", self.deny.as_ref().is_some_and(|l| !l.is_empty())),
        ];
        c.only_one_of(&fields);
        c.at_least_one_of(&fields);
    }
}

/// `acl` (PRIORITY 950).
pub struct Acl;

impl PluginSpec for Acl {
    const NAME: &'static str = "acl";
    const PRIORITY: i32 = 950;
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
        let c: Config = parse("allow: [admin]").unwrap();
        assert_eq!(c.allow, Some(vec!["admin".to_string()]));
        assert_eq!(c.deny, None);
        assert!(!c.hide_groups_header && !c.always_use_authenticated_groups);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "deny: [banned, bots]\nhide_groups_header: true\nalways_use_authenticated_groups: true",
        )
        .unwrap();
        assert_eq!(c.deny.unwrap(), ["banned", "bots"]);
        assert!(c.hide_groups_header && c.always_use_authenticated_groups);
    }

    #[test]
    fn rules() {
        // Conformance case plugin-schema-acl-allow-and-deny.
        assert_eq!(
            parse::<Config>("allow: [a]\ndeny: [b]").unwrap_err(),
            [": exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"]
        );
        // Neither: both of Kong's entity checks fail.
        let none = [
            ": exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
            ": at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ];
        assert_eq!(parse::<Config>("{}").unwrap_err(), none);
        assert_eq!(parse::<Config>("allow: []\ndeny: null").unwrap_err(), none);
        // An empty list is not set: with the other one set, it is fine.
        parse::<Config>("allow: []\ndeny: [b]").unwrap();
        assert_eq!(
            parse::<Config>("allow: [a, '']").unwrap_err(),
            ["allow[1]: length must be at least 1"]
        );
        assert_eq!(
            parse::<Config>("allow: [a]\nwhitelist: [b]").unwrap_err(),
            ["whitelist: unknown field `whitelist`"]
        );
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "allow: [anon, service_role]",
            "allow: [admin, anon]\nhide_groups_header: true",
            "allow: [admin]",
            "deny: [admin]",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
