//! `prometheus` (PRIORITY 13): in Kong, counts requests, latencies and bandwidth per service
//! and route (optionally per consumer, status code, upstream health, AI usage) for a
//! Prometheus scrape endpoint. Not served yet: its config is checked against Kong's schema,
//! and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/prometheus/schema.lua`). Every metric family
/// beyond the defaults is off unless asked for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub per_consumer: bool,
    #[serde(default)]
    pub status_code_metrics: bool,
    #[serde(default)]
    pub ai_metrics: bool,
    #[serde(default)]
    pub latency_metrics: bool,
    #[serde(default)]
    pub bandwidth_metrics: bool,
    #[serde(default)]
    pub upstream_health_metrics: bool,
    #[serde(default)]
    pub wasm_metrics: bool,
}

/// Kong's only other check is that nginx has the `prometheus_metrics` shared dict: a
/// property of Kong's runtime, not of the config.
impl Validate for Config {}

/// `prometheus` (PRIORITY 13).
pub struct Prometheus;

impl PluginSpec for Prometheus {
    const NAME: &'static str = "prometheus";
    const PRIORITY: i32 = 13;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults_and_fields() {
        assert_eq!(parse::<Config>("{}").unwrap(), Config::default());
        let c: Config = parse(
            "per_consumer: true\nstatus_code_metrics: true\nai_metrics: true\nlatency_metrics: true\nbandwidth_metrics: true\nupstream_health_metrics: true\nwasm_metrics: true",
        )
        .unwrap();
        assert!(c.per_consumer && c.ai_metrics && c.wasm_metrics && c.upstream_health_metrics);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("per_consumer: \"true\"").unwrap_err();
        assert_eq!(errs, ["per_consumer: expected true or false, found `true`"]);
        // Kong 3.0's early typo never shipped: it is unknown.
        let errs = parse::<Config>("lantency_metrics: true").unwrap_err();
        assert_eq!(
            errs,
            ["lantency_metrics: unknown field `lantency_metrics`; did you mean `latency_metrics`?"]
        );
    }

    /// Real users' files (`/work/shared/realworld/kong`).
    #[test]
    fn real_configs() {
        // BigFishIta/kong-observability-stack: no config at all (the registry reads `{}`).
        parse::<Config>("{}").unwrap();
        // luisforni/telco-api-gateway
        let c: Config = parse(
            "status_code_metrics: true\nlatency_metrics: true\nbandwidth_metrics: true\nupstream_health_metrics: true",
        )
        .unwrap();
        assert!(!c.per_consumer);
        // hyperdigitalplatform/cns-live
        let c: Config = parse(
            "per_consumer: true\nstatus_code_metrics: true\nlatency_metrics: true\nbandwidth_metrics: true\nupstream_health_metrics: true",
        )
        .unwrap();
        assert!(c.per_consumer);
    }
}
