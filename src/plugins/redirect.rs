//! `redirect` (PRIORITY 779). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/redirect/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `redirect` (PRIORITY 779).
pub struct Redirect;

impl PluginSpec for Redirect {
    const NAME: &'static str = "redirect";
    const PRIORITY: i32 = 779;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
