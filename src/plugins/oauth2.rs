//! `oauth2` (PRIORITY 1400). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are refused at load (it needs a database).

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/oauth2/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `oauth2` (PRIORITY 1400).
pub struct OAuth2;

impl PluginSpec for OAuth2 {
    const NAME: &'static str = "oauth2";
    const PRIORITY: i32 = 1400;
    const KIND: Kind = Kind::NeedsDatabase;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
