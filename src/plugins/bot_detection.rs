//! `bot-detection` (PRIORITY 2500). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/bot-detection/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `bot-detection` (PRIORITY 2500).
pub struct BotDetection;

impl PluginSpec for BotDetection {
    const NAME: &'static str = "bot-detection";
    const PRIORITY: i32 = 2500;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
