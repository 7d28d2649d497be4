//! `http-log` (PRIORITY 12). Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/http-log/schema.lua`).
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `http-log` (PRIORITY 12).
pub struct HttpLog;

impl PluginSpec for HttpLog {
    const NAME: &'static str = "http-log";
    const PRIORITY: i32 = 12;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
