//! `datadog` (PRIORITY 10): in Kong, sends request counts, latencies and sizes, tagged by
//! service, status and consumer, to a Datadog agent (DogStatsD over UDP), batched through a
//! plugin queue. Not served yet: its config is checked against Kong's schema, and the routes
//! it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::schema::queue::Queue;
use super::schema::typedefs::{
    check_host, check_items, check_port, is_reference, non_empty_fields,
};
use super::statsd::ConsumerIdentifier;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/datadog/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: i64,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_service_name_tag")]
    pub service_name_tag: String,
    #[serde(default = "default_status_tag")]
    pub status_tag: String,
    #[serde(default = "default_consumer_tag")]
    pub consumer_tag: String,
    /// Deprecated: no effect since Kong 3.3 (`queue.max_retry_time` replaces it).
    pub retry_count: Option<i64>,
    /// Deprecated: `queue.max_batch_size`.
    pub queue_size: Option<i64>,
    /// Deprecated: `queue.max_coalescing_delay`.
    pub flush_timeout: Option<f64>,
    #[serde(default)]
    pub queue: Queue,
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
}

/// One metric to send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metric {
    pub name: MetricName,
    pub stat_type: StatType,
    /// `key:value` or `key` tags (a tag may not end with `:`).
    pub tags: Option<Vec<String>>,
    pub sample_rate: Option<f64>,
    pub consumer_identifier: Option<ConsumerIdentifier>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    KongLatency,
    Latency,
    RequestCount,
    RequestSize,
    ResponseSize,
    UpstreamLatency,
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
    Distribution,
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

fn default_service_name_tag() -> String {
    "name".to_string()
}

fn default_status_tag() -> String {
    "status".to_string()
}

fn default_consumer_tag() -> String {
    "consumer".to_string()
}

/// Kong's `DEFAULT_METRICS`: all tagged `app:kong`, consumers by `custom_id`.
fn default_metrics() -> Vec<Metric> {
    use MetricName::*;
    use StatType::*;
    [
        (RequestCount, Counter),
        (Latency, Timer),
        (RequestSize, Timer),
        (ResponseSize, Timer),
        (UpstreamLatency, Timer),
        (KongLatency, Timer),
    ]
    .into_iter()
    .map(|(name, stat_type)| Metric {
        name,
        stat_type,
        tags: Some(vec!["app:kong".to_string()]),
        sample_rate: (stat_type == Counter).then_some(1.0),
        consumer_identifier: Some(ConsumerIdentifier::CustomId),
    })
    .collect()
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        if !is_reference(&self.host) {
            check_host(c, "host", &self.host);
        }
        check_port(c, "port", self.port);
        non_empty_fields(
            c,
            "",
            &[
                ("prefix", Some(&self.prefix)),
                ("service_name_tag", Some(&self.service_name_tag)),
                ("status_tag", Some(&self.status_tag)),
                ("consumer_tag", Some(&self.consumer_tag)),
            ],
        );
        self.queue.check(c, "queue");
        for (i, m) in self.metrics.iter().enumerate() {
            // Kong's `match = "^.*[^:]$"`: not empty, not ending with `:`.
            let tags = m.tags.as_deref().unwrap_or_default();
            check_items(c, &format!("metrics[{i}].tags"), tags, |tag| {
                if tag.ends_with(':') {
                    Err(format!("invalid value: {tag}"))
                } else {
                    Ok(())
                }
            });
            let field = format!("metrics[{i}].sample_rate");
            if let Some(rate) = m.sample_rate {
                c.between(&field, rate, 0.0, 1.0);
            }
            // Kong's conditional: counters and gauges need a sample rate.
            c.required_if(
                &field,
                m.sample_rate.is_some(),
                matches!(m.stat_type, StatType::Counter | StatType::Gauge),
                "failed conditional validation given value of field 'stat_type'",
            );
        }
    }
}

/// `datadog` (PRIORITY 10).
pub struct Datadog;

impl PluginSpec for Datadog {
    const NAME: &'static str = "datadog";
    const PRIORITY: i32 = 10;
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
        assert_eq!(
            (
                c.service_name_tag.as_str(),
                c.status_tag.as_str(),
                c.consumer_tag.as_str()
            ),
            ("name", "status", "consumer")
        );
        assert_eq!(c.metrics.len(), 6);
        assert_eq!(c.metrics[0].sample_rate, Some(1.0));
        assert_eq!(c.metrics[2].name, MetricName::RequestSize);
        assert_eq!(c.metrics[2].stat_type, StatType::Timer);
        assert_eq!(
            c.metrics[5].tags.as_deref(),
            Some(&["app:kong".to_string()][..])
        );
        assert_eq!(
            c.metrics[5].consumer_identifier,
            Some(ConsumerIdentifier::CustomId)
        );
        assert_eq!(c.queue, Queue::default());
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            r#"
host: "{vault://env/dd-agent}"
port: 8126
prefix: gateway
service_name_tag: service
status_tag: http_status
consumer_tag: user
queue: {max_batch_size: 10, max_coalescing_delay: 2}
metrics:
- name: request_count
  stat_type: distribution
  tags: [env:prod, team]
  sample_rate: 0.25
  consumer_identifier: username
- {name: upstream_latency, stat_type: gauge, sample_rate: 1}
"#,
        )
        .unwrap();
        assert_eq!(c.metrics[0].stat_type, StatType::Distribution);
        assert_eq!(c.metrics[0].tags.as_ref().unwrap()[1], "team");
        assert_eq!(c.queue.max_coalescing_delay, 2.0);
        let c: Config = parse("metrics: []").unwrap();
        assert!(c.metrics.is_empty());
    }

    #[test]
    fn legacy_queue_fields_still_load() {
        let c: Config = parse("retry_count: 10\nqueue_size: 1\nflush_timeout: 2").unwrap();
        assert_eq!(c.queue_size, Some(1));
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            r#"
host: "bad host"
port: -5
queue: {max_batch_size: 0}
metrics:
- {name: request_count, stat_type: counter, tags: ["env:", ""]}
- {name: latency, stat_type: timer, sample_rate: 2}
"#,
        )
        .unwrap_err();
        let want = [
            "host: invalid value: bad host",
            "port: value should be between 0 and 65535",
            "queue.max_batch_size: value should be between 1 and 1000000",
            "metrics[0].tags[0]: invalid value: env:",
            "metrics[0].tags[1]: length must be at least 1",
            "metrics[0].sample_rate: required field missing (failed conditional validation given value of field 'stat_type')",
            "metrics[1].sample_rate: value should be between 0 and 1",
        ];
        assert_eq!(errs, want);
        let errs =
            parse::<Config>("metrics: [{name: status_count, stat_type: counter, sample_rate: 1}]")
                .unwrap_err();
        assert_eq!(
            errs,
            [
                "metrics[0].name: `status_count` is not one of: kong_latency, latency, request_count, request_size, response_size, upstream_latency"
            ]
        );
        let errs = parse::<Config>("service_tag: x").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("service_tag: unknown field `service_tag`"),
            "{errs:?}"
        );
    }
}
