//! `pre-function` (runs first) and `post-function` (runs last): Lua code, given as source
//! strings per phase, run in that phase. switchyard runs no Lua: their configs are checked
//! against Kong's schema, and the routes they apply to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// Both plugins' `config` (Kong's `kong/plugins/pre-function/_schema.lua`): Lua chunks per
/// phase, run in order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub certificate: Vec<String>,
    #[serde(default)]
    pub rewrite: Vec<String>,
    #[serde(default)]
    pub access: Vec<String>,
    #[serde(default)]
    pub header_filter: Vec<String>,
    #[serde(default)]
    pub body_filter: Vec<String>,
    #[serde(default)]
    pub log: Vec<String>,
}

impl Validate for Config {
    /// Kong also compiles each chunk (`loadstring`); switchyard has no Lua to do it with.
    fn validate(&self, c: &mut Checks) {
        c.at_least_one_of(&[
            ("certificate", !self.certificate.is_empty()),
            ("rewrite", !self.rewrite.is_empty()),
            ("access", !self.access.is_empty()),
            ("header_filter", !self.header_filter.is_empty()),
            ("body_filter", !self.body_filter.is_empty()),
            ("log", !self.log.is_empty()),
        ]);
    }
}

/// `pre-function` (PRIORITY 1000000).
pub struct PreFunction;

impl PluginSpec for PreFunction {
    const NAME: &'static str = "pre-function";
    const PRIORITY: i32 = 1000000;
    const KIND: Kind = Kind::Acts;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// `post-function` (PRIORITY -1000).
pub struct PostFunction;

impl PluginSpec for PostFunction {
    const NAME: &'static str = "post-function";
    const PRIORITY: i32 = -1000;
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
    fn schema() {
        let c: Config = parse("access: ['kong.log.err(1)']").unwrap();
        assert_eq!(c.access.len(), 1);
        assert!(c.certificate.is_empty() && c.rewrite.is_empty() && c.log.is_empty());
        let c: Config = parse(
            "certificate: [a]\nrewrite: [b]\naccess: [c, d]\nheader_filter: [e]\nbody_filter: [f]\nlog: [g]",
        )
        .unwrap();
        assert_eq!(c.access, ["c", "d"]);
        assert_eq!(c.log, ["g"]);
    }

    #[test]
    fn rules() {
        let want = ": at least one of these fields must be non-empty: 'config.certificate', \
                    'config.rewrite', 'config.access', 'config.header_filter', \
                    'config.body_filter', 'config.log'";
        assert_eq!(parse::<Config>("{}").unwrap_err(), [want]);
        assert_eq!(
            parse::<Config>("access: []\nlog: null").unwrap_err(),
            [want]
        );
        // Kong 2.x's `functions` is gone in 3.x.
        let errs = parse::<Config>("functions: [x]\naccess: [y]").unwrap_err();
        assert!(
            errs[0].starts_with("functions: unknown field `functions`"),
            "{errs:?}"
        );
        let errs = parse::<Config>("access: 'return 1'").unwrap_err();
        assert!(errs[0].starts_with("access: expected a list"), "{errs:?}");
    }

    #[test]
    fn no_consumer() {
        let registry = crate::plugins::Registry::bundled();
        for name in ["pre-function", "post-function"] {
            assert!(registry.info(name).unwrap().no_consumer, "{name}");
        }
    }

    /// Configs from real users' files.
    #[test]
    fn real_configs() {
        for yaml in [
            "access:\n- |\n  local path = kong.request.get_path()\n  local gwid = path:match(\"^/serverless%-health/(.+)\")\n  \
             if gwid then\n    kong.service.set_upstream(\"healthcheck\")\n  else\n    \
             kong.response.exit(400, { message = \"Missing gateway host in path\" })\n  end",
            "access:\n- |\n  local auth = kong.request.get_header(\"authorization\")\n  \
             if auth == nil or auth == \"\" or auth:find(\"^%s*$\") then\n    \
             kong.service.request.clear_header(\"authorization\")\n  end\n",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
