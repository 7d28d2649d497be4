//! `standard-webhooks` (PRIORITY 760). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/standard-webhooks/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `standard-webhooks` (PRIORITY 760).
pub struct StandardWebhooks;

impl PluginSpec for StandardWebhooks {
    const NAME: &'static str = "standard-webhooks";
    const PRIORITY: i32 = 760;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
