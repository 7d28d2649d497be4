//! `syslog` (PRIORITY 4). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/syslog/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `syslog` (PRIORITY 4).
pub struct Syslog;

impl PluginSpec for Syslog {
    const NAME: &'static str = "syslog";
    const PRIORITY: i32 = 4;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
