//! `basic-auth` (PRIORITY 1100). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/basic-auth/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `basic-auth` (PRIORITY 1100).
pub struct BasicAuth;

impl PluginSpec for BasicAuth {
    const NAME: &'static str = "basic-auth";
    const PRIORITY: i32 = 1100;
    const KIND: Kind = Kind::Authenticates;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
