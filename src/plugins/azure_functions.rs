//! `azure-functions` (PRIORITY 749). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/azure-functions/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `azure-functions` (PRIORITY 749).
pub struct AzureFunctions;

impl PluginSpec for AzureFunctions {
    const NAME: &'static str = "azure-functions";
    const PRIORITY: i32 = 749;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
