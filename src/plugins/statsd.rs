//! `statsd` (PRIORITY 11): in Kong, sends request counts, latencies and sizes (per service,
//! consumer or workspace, as each metric says) to a StatsD server over UDP or TCP, batched
//! through a plugin queue. Not served yet: its config is checked against Kong's schema, and
//! the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::schema::queue::Queue;
use super::schema::typedefs::{check_host, check_items, check_port, non_empty_fields};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/statsd/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: i64,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// Status code ranges (`200-299`) whose requests are counted.
    pub allow_status_codes: Option<Vec<String>>,
    /// UDP packets are combined up to this size (bytes); 0 sends each metric alone.
    #[serde(default)]
    pub udp_packet_size: f64,
    #[serde(default)]
    pub use_tcp: bool,
    #[serde(default)]
    pub hostname_in_prefix: bool,
    #[serde(default = "default_consumer_identifier")]
    pub consumer_identifier_default: ConsumerIdentifier,
    #[serde(default = "default_service_identifier")]
    pub service_identifier_default: ServiceIdentifier,
    #[serde(default = "default_workspace_identifier")]
    pub workspace_identifier_default: WorkspaceIdentifier,
    /// Deprecated: no effect since Kong 3.3 (`queue.max_retry_time` replaces it).
    pub retry_count: Option<i64>,
    /// Deprecated: `queue.max_batch_size`.
    pub queue_size: Option<i64>,
    /// Deprecated: `queue.max_coalescing_delay`.
    pub flush_timeout: Option<f64>,
    pub tag_style: Option<TagStyle>,
    #[serde(default)]
    pub queue: Queue,
}

/// One metric to send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metric {
    pub name: MetricName,
    pub stat_type: StatType,
    pub sample_rate: Option<f64>,
    pub consumer_identifier: Option<ConsumerIdentifier>,
    pub service_identifier: Option<ServiceIdentifier>,
    pub workspace_identifier: Option<WorkspaceIdentifier>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    KongLatency,
    Latency,
    RequestCount,
    RequestPerUser,
    RequestSize,
    ResponseSize,
    StatusCount,
    StatusCountPerUser,
    UniqueUsers,
    UpstreamLatency,
    StatusCountPerWorkspace,
    StatusCountPerUserPerRoute,
    ShdictUsage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatType {
    Counter,
    Gauge,
    Histogram,
    Meter,
    Set,
    Timer,
}

/// How a consumer is named in metrics (`statsd` and `datadog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerIdentifier {
    ConsumerId,
    CustomId,
    Username,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceIdentifier {
    ServiceId,
    ServiceName,
    ServiceHost,
    ServiceNameOrHost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceIdentifier {
    WorkspaceId,
    WorkspaceName,
}

/// The StatsD tagging extension to use (none: the tags go into the metric names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagStyle {
    Dogstatsd,
    Influxdb,
    Librato,
    Signalfx,
}

fn default_host() -> String {
    "localhost".to_string()
}

fn default_port() -> i64 {
    8125
}

fn default_prefix() -> String {
    "kong".to_string()
}

fn default_consumer_identifier() -> ConsumerIdentifier {
    ConsumerIdentifier::CustomId
}

fn default_service_identifier() -> ServiceIdentifier {
    ServiceIdentifier::ServiceNameOrHost
}

fn default_workspace_identifier() -> WorkspaceIdentifier {
    WorkspaceIdentifier::WorkspaceId
}

/// Kong's `DEFAULT_METRICS`: counters and gauges sampled at 1, no identifier overrides.
fn default_metrics() -> Vec<Metric> {
    use MetricName::*;
    use StatType::*;
    [
        (RequestCount, Counter),
        (Latency, Timer),
        (RequestSize, Counter),
        (StatusCount, Counter),
        (ResponseSize, Counter),
        (UniqueUsers, Set),
        (RequestPerUser, Counter),
        (UpstreamLatency, Timer),
        (KongLatency, Timer),
        (StatusCountPerUser, Counter),
        (StatusCountPerWorkspace, Counter),
        (StatusCountPerUserPerRoute, Counter),
        (ShdictUsage, Gauge),
    ]
    .into_iter()
    .map(|(name, stat_type)| Metric {
        name,
        stat_type,
        sample_rate: matches!(stat_type, Counter | Gauge).then_some(1.0),
        consumer_identifier: None,
        service_identifier: None,
        workspace_identifier: None,
    })
    .collect()
}

/// Kong's `REGEX_STATUS_CODE_RANGE`: `^[0-9]+-[0-9]+$`.
fn status_code_range(range: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    range
        .split_once('-')
        .is_some_and(|(from, to)| digits(from) && digits(to))
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_host(c, "host", &self.host);
        check_port(c, "port", self.port);
        non_empty_fields(c, "", &[("prefix", Some(&self.prefix))]);
        for (i, m) in self.metrics.iter().enumerate() {
            let field = format!("metrics[{i}].sample_rate");
            if let Some(rate) = m.sample_rate {
                c.greater_than(&field, rate, 0.0);
            }
            // Kong's conditional: counters and gauges need a sample rate.
            c.required_if(
                &field,
                m.sample_rate.is_some(),
                matches!(m.stat_type, StatType::Counter | StatType::Gauge),
                "failed conditional validation given value of field 'stat_type'",
            );
        }
        let ranges = self.allow_status_codes.as_deref().unwrap_or_default();
        check_items(c, "allow_status_codes", ranges, |range| {
            if status_code_range(range) {
                Ok(())
            } else {
                Err(format!("invalid value: {range}"))
            }
        });
        c.between("udp_packet_size", self.udp_packet_size, 0.0, 65507.0);
        self.queue.check(c, "queue");
    }
}

/// `statsd` (PRIORITY 11).
pub struct Statsd;

impl PluginSpec for Statsd {
    const NAME: &'static str = "statsd";
    const PRIORITY: i32 = 11;
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
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("localhost", 8125, "kong")
        );
        assert_eq!(c.metrics.len(), 13);
        assert_eq!(c.metrics[0].name, MetricName::RequestCount);
        assert_eq!(c.metrics[0].sample_rate, Some(1.0));
        assert_eq!(c.metrics[1].stat_type, StatType::Timer);
        assert_eq!(c.metrics[1].sample_rate, None);
        assert_eq!(c.metrics[12].name, MetricName::ShdictUsage);
        assert_eq!(c.udp_packet_size, 0.0);
        assert!(!c.use_tcp && !c.hostname_in_prefix);
        assert_eq!(c.consumer_identifier_default, ConsumerIdentifier::CustomId);
        assert_eq!(
            c.service_identifier_default,
            ServiceIdentifier::ServiceNameOrHost
        );
        assert_eq!(
            c.workspace_identifier_default,
            WorkspaceIdentifier::WorkspaceId
        );
        assert_eq!(c.tag_style, None);
        assert_eq!(c.queue, Queue::default());
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            r#"
host: statsd.internal
port: 9125
prefix: gw
metrics:
- {name: request_count, stat_type: counter, sample_rate: 0.5, consumer_identifier: username, service_identifier: service_name, workspace_identifier: workspace_name}
- {name: latency, stat_type: histogram}
- {name: shdict_usage, stat_type: gauge, sample_rate: 1}
allow_status_codes: [200-299, 500-599]
udp_packet_size: 1400
use_tcp: true
hostname_in_prefix: true
consumer_identifier_default: consumer_id
service_identifier_default: service_host
workspace_identifier_default: workspace_name
tag_style: dogstatsd
queue: {max_batch_size: 50}
"#,
        )
        .unwrap();
        assert_eq!(c.metrics.len(), 3);
        assert_eq!(
            c.metrics[0].service_identifier,
            Some(ServiceIdentifier::ServiceName)
        );
        assert_eq!(c.tag_style, Some(TagStyle::Dogstatsd));
        assert_eq!(c.queue.max_batch_size, 50);
        assert_eq!(c.queue.max_entries, 10000);
    }

    #[test]
    fn legacy_queue_fields_still_load() {
        let c: Config = parse("retry_count: 10\nqueue_size: 5\nflush_timeout: 2").unwrap();
        assert_eq!(
            (c.retry_count, c.queue_size, c.flush_timeout),
            (Some(10), Some(5), Some(2.0))
        );
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            r#"
host: "statsd:8125"
port: 99999
prefix: ""
metrics:
- {name: request_count, stat_type: counter}
- {name: latency, stat_type: timer, sample_rate: 0}
- {name: shdict_usage, stat_type: gauge, sample_rate: -1}
allow_status_codes: [200-299, "2xx", "200", ""]
udp_packet_size: 70000
queue: {max_entries: 0}
"#,
        )
        .unwrap_err();
        let want = [
            "host: must not have a port",
            "port: value should be between 0 and 65535",
            "prefix: length must be at least 1",
            "metrics[0].sample_rate: required field missing (failed conditional validation given value of field 'stat_type')",
            "metrics[1].sample_rate: value must be greater than 0",
            "metrics[2].sample_rate: value must be greater than 0",
            "allow_status_codes[1]: invalid value: 2xx",
            "allow_status_codes[2]: invalid value: 200",
            "allow_status_codes[3]: length must be at least 1",
            "udp_packet_size: value should be between 0 and 65507",
            "queue.max_entries: value should be between 1 and 1000000",
        ];
        assert_eq!(errs, want);
        let errs =
            parse::<Config>("metrics: [{name: requests, stat_type: counter, sample_rate: 1}]")
                .unwrap_err();
        assert!(
            errs[0]
                .starts_with("metrics[0].name: `requests` is not one of: kong_latency, latency,"),
            "{errs:?}"
        );
        let errs = parse::<Config>("metrics: [{name: latency}]").unwrap_err();
        assert_eq!(errs, ["metrics[0]: missing field `stat_type`"]);
        let errs =
            parse::<Config>("metrics: [{name: latency, stat_type: timer, rate: 1}]").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("metrics[0].rate: unknown field `rate`"),
            "{errs:?}"
        );
        let errs = parse::<Config>("tag_style: graphite").unwrap_err();
        assert_eq!(
            errs,
            ["tag_style: `graphite` is not one of: dogstatsd, influxdb, librato, signalfx"]
        );
    }
}
