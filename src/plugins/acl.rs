//! `acl` (PRIORITY 950, access): lets a request through only if the authenticated consumer
//! (or, with `always_use_authenticated_groups`, the authenticated groups) belongs to one of
//! the `allow` groups, or to none of the `deny` groups, from the consumers' `acls`; sends the
//! groups upstream in `X-Consumer-Groups` unless `hide_groups_header`
//! (`kong/plugins/acl/handler.lua`). switchyard has no authentication that yields groups
//! without a consumer (LDAP, OpenID Connect), so only the consumer's `acls` count.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::auth::X_CONSUMER_GROUPS;
use super::schema::typedefs::non_empty_items;
use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond;

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

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        // Kong: a non-empty `deny` makes it a deny list, else `allow` is the allow list.
        let (deny, groups) = match config.deny.filter(|d| !d.is_empty()) {
            Some(d) => (true, d),
            None => (false, config.allow.unwrap_or_default()),
        };
        Ok(Some(Arc::new(Handler {
            deny,
            groups: groups.into_iter().map(Arc::from).collect(),
            hide_groups_header: config.hide_groups_header,
        })))
    }
}

struct Handler {
    deny: bool,
    groups: Vec<Arc<str>>,
    hide_groups_header: bool,
}

fn cannot_consume() -> Flow {
    Flow::Respond(respond::message(
        StatusCode::FORBIDDEN,
        "You cannot consume this service",
    ))
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        Acl::NAME
    }
    fn priority(&self) -> i32 {
        Acl::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let Some(consumer) = &ctx.consumer else {
            return Flow::Respond(respond::message(StatusCode::UNAUTHORIZED, "Unauthorized"));
        };
        let groups = &consumer.acl_groups;
        if groups.is_empty() && !self.deny {
            if ctx.credential.is_some() {
                return cannot_consume();
            }
            return Flow::Respond(respond::message(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        let in_group = groups.iter().any(|g| self.groups.contains(g));
        if in_group == self.deny {
            return cannot_consume();
        }
        if !self.hide_groups_header {
            let joined = groups.join(", ");
            if let Ok(v) = HeaderValue::from_str(&joined) {
                req.headers_mut().insert(X_CONSUMER_GROUPS.clone(), v);
            }
        }
        Flow::Continue
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
