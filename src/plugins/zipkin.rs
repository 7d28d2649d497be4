//! `zipkin` (PRIORITY 100000). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/zipkin/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `zipkin` (PRIORITY 100000).
pub struct Zipkin;

impl PluginSpec for Zipkin {
    const NAME: &'static str = "zipkin";
    const PRIORITY: i32 = 100000;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
