//! `udp-log` (PRIORITY 8). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/udp-log/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `udp-log` (PRIORITY 8).
pub struct UdpLog;

impl PluginSpec for UdpLog {
    const NAME: &'static str = "udp-log";
    const PRIORITY: i32 = 8;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
