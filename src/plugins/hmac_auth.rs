//! `hmac-auth` (PRIORITY 1030). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/hmac-auth/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `hmac-auth` (PRIORITY 1030).
pub struct HmacAuth;

impl PluginSpec for HmacAuth {
    const NAME: &'static str = "hmac-auth";
    const PRIORITY: i32 = 1030;
    const KIND: Kind = Kind::Authenticates;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
