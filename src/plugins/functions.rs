//! `pre-function` and `post-function`: Lua code run in a phase. switchyard runs no Lua:
//! their configs are checked against Kong's schema, and the routes they apply to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// Both plugins' `config` (Kong's `kong/plugins/pre-function/_schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `pre-function` (PRIORITY 1000000).
pub struct PreFunction;

impl PluginSpec for PreFunction {
    const NAME: &'static str = "pre-function";
    const PRIORITY: i32 = 1000000;
    const KIND: Kind = Kind::Acts;
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
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
