//! `jwt` (PRIORITY 1450). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/jwt/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `jwt` (PRIORITY 1450).
pub struct Jwt;

impl PluginSpec for Jwt {
    const NAME: &'static str = "jwt";
    const PRIORITY: i32 = 1450;
    const KIND: Kind = Kind::Authenticates;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
