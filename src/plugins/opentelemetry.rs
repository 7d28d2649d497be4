//! `opentelemetry` (PRIORITY 14): in Kong, traces each request (spans for Kong's phases,
//! balancer tries and upstream calls) and optionally its logs, and exports them over
//! OTLP/HTTP (protobuf) to a collector, batched through a plugin queue; it also propagates the
//! trace context to the upstream in the configured header formats. Not served yet: its config
//! is checked against Kong's schema, and the routes it applies to are warned about (it only
//! observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::propagation::{Format, HeaderType, Propagation};
use super::schema::queue::Queue;
use super::schema::quoted_list;
use super::schema::typedefs::{
    check_headers, check_timeout, check_url, is_reference, non_empty_fields, non_empty_values,
};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/opentelemetry/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Where spans go (OTLP/HTTP).
    pub traces_endpoint: Option<String>,
    /// Where log records go (OTLP/HTTP).
    pub logs_endpoint: Option<String>,
    pub headers: Option<IndexMap<String, String>>,
    pub resource_attributes: Option<IndexMap<String, String>>,
    #[serde(default = "default_queue")]
    pub queue: Queue,
    /// Deprecated: `queue.max_batch_size`.
    pub batch_span_count: Option<i64>,
    /// Deprecated: `queue.max_coalescing_delay`.
    pub batch_flush_delay: Option<i64>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: i64,
    #[serde(default = "default_io_timeout")]
    pub send_timeout: i64,
    #[serde(default = "default_io_timeout")]
    pub read_timeout: i64,
    pub http_response_header_for_traceid: Option<String>,
    /// Deprecated: `propagation` replaces it.
    #[serde(default)]
    pub header_type: HeaderType,
    /// Overrides kong.conf's `tracing_sampling_rate`.
    pub sampling_rate: Option<f64>,
    #[serde(default = "default_propagation")]
    pub propagation: Propagation,
    /// Kong's shorthand field for `traces_endpoint` (deprecated, Kong 3.0 to 3.7's name):
    /// `traces_endpoint` wins when both are set.
    pub endpoint: Option<String>,
}

/// The queue's default: spans go out 200 at a time (the other queue fields keep their own
/// defaults, also when `queue` is written).
fn default_queue() -> Queue {
    Queue {
        max_batch_size: 200,
        ..Queue::default()
    }
}

fn default_connect_timeout() -> i64 {
    1000
}

fn default_io_timeout() -> i64 {
    5000
}

fn default_propagation() -> Propagation {
    Propagation::with_default(Format::W3c)
}

impl Config {
    /// The traces endpoint, from `traces_endpoint` or the legacy `endpoint`.
    pub fn traces_endpoint(&self) -> Option<&str> {
        self.traces_endpoint.as_deref().or(self.endpoint.as_deref())
    }
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (field, url) in [
            ("traces_endpoint", &self.traces_endpoint),
            ("logs_endpoint", &self.logs_endpoint),
            ("endpoint", &self.endpoint),
        ] {
            if let Some(url) = url
                && !is_reference(url)
            {
                check_url(c, field, url);
            }
        }
        check_headers(c, "headers", self.headers.as_ref());
        non_empty_values(c, "resource_attributes", self.resource_attributes.as_ref());
        non_empty_fields(
            c,
            "",
            &[(
                "http_response_header_for_traceid",
                self.http_response_header_for_traceid.as_deref(),
            )],
        );
        self.queue.check(c, "queue");
        check_timeout(c, "connect_timeout", self.connect_timeout);
        check_timeout(c, "send_timeout", self.send_timeout);
        check_timeout(c, "read_timeout", self.read_timeout);
        if let Some(rate) = self.sampling_rate {
            c.between("sampling_rate", rate, 0.0, 1.0);
        }
        self.propagation.check(c, "propagation");
        // The record's entity check (the legacy `endpoint` fills `traces_endpoint`).
        let set = |v: Option<&str>| v.is_some_and(|s| !s.is_empty());
        if !set(self.traces_endpoint()) && !set(self.logs_endpoint.as_deref()) {
            c.error(
                "",
                format!(
                    "at least one of these fields must be non-empty: {}",
                    quoted_list(&["traces_endpoint", "logs_endpoint"])
                ),
            );
        }
    }
}

/// `opentelemetry` (PRIORITY 14).
pub struct OpenTelemetry;

impl PluginSpec for OpenTelemetry {
    const NAME: &'static str = "opentelemetry";
    const PRIORITY: i32 = 14;
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
    use crate::plugins::schema::propagation::{Extract, Inject};

    #[test]
    fn defaults() {
        let c: Config = parse("traces_endpoint: http://otel:4318/v1/traces").unwrap();
        assert_eq!(c.queue.max_batch_size, 200);
        assert_eq!(c.queue.max_entries, 10000);
        assert_eq!(
            (c.connect_timeout, c.send_timeout, c.read_timeout),
            (1000, 5000, 5000)
        );
        assert_eq!(c.header_type, HeaderType::Preserve);
        assert_eq!(c.propagation, Propagation::with_default(Format::W3c));
        assert_eq!(c.sampling_rate, None);
        // A written queue keeps the record's own defaults for what it leaves out.
        let c: Config =
            parse("logs_endpoint: http://otel/v1/logs\nqueue: {max_entries: 5}").unwrap();
        assert_eq!((c.queue.max_batch_size, c.queue.max_entries), (1, 5));
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            r#"
traces_endpoint: "{vault://env/otel-traces}"
logs_endpoint: http://otel:4318/v1/logs
headers: {Authorization: Bearer x}
resource_attributes: {service.name: gateway, deployment.environment: prod}
queue: {max_batch_size: 500, max_coalescing_delay: 3}
connect_timeout: 100
send_timeout: 200
read_timeout: 300
http_response_header_for_traceid: X-Trace-Id
header_type: w3c
sampling_rate: 0.25
propagation:
  extract: [w3c, b3, datadog]
  clear: [uber-trace-id]
  inject: [preserve, b3-single]
  default_format: b3
"#,
        )
        .unwrap();
        assert_eq!(
            c.resource_attributes.as_ref().unwrap()["service.name"],
            "gateway"
        );
        assert_eq!(c.header_type, HeaderType::W3c);
        assert_eq!(
            c.propagation.extract.as_deref(),
            Some(&[Extract::W3c, Extract::B3, Extract::Datadog][..])
        );
        assert_eq!(
            c.propagation.inject.as_deref(),
            Some(&[Inject::Preserve, Inject::B3Single][..])
        );
        assert_eq!(c.propagation.default_format, Format::B3);
    }

    #[test]
    fn legacy_fields_still_load() {
        let c: Config = parse(
            "endpoint: http://otel:4318/v1/traces\nbatch_span_count: 100\nbatch_flush_delay: 2\nheader_type: preserve",
        )
        .unwrap();
        assert_eq!(c.traces_endpoint(), Some("http://otel:4318/v1/traces"));
        assert_eq!(
            (c.batch_span_count, c.batch_flush_delay),
            (Some(100), Some(2))
        );
        let c: Config = parse("endpoint: http://old\ntraces_endpoint: http://new").unwrap();
        assert_eq!(c.traces_endpoint(), Some("http://new"));
        let errs = parse::<Config>("endpoint: otel:4318").unwrap_err();
        assert_eq!(errs, ["endpoint: missing host in url"]);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("{}").unwrap_err();
        assert_eq!(
            errs,
            [
                ": at least one of these fields must be non-empty: 'traces_endpoint', 'logs_endpoint'"
            ]
        );
        let errs = parse::<Config>(
            r#"
traces_endpoint: /v1/traces
headers: {"bad header": x}
resource_attributes: {service.name: ""}
queue: {concurrency_limit: 0}
connect_timeout: -1
send_timeout: 2147483647
sampling_rate: 1.5
propagation: {clear: ["bad header", ""], default_format: w3c}
"#,
        )
        .unwrap_err();
        let want = [
            "traces_endpoint: missing host in url",
            "headers.bad header: bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
            "resource_attributes.service.name: length must be at least 1",
            "queue.concurrency_limit: expected one of: -1, 1",
            "connect_timeout: value should be between 0 and 2147483646",
            "send_timeout: value should be between 0 and 2147483646",
            "sampling_rate: value should be between 0 and 1",
            "propagation.clear[0]: bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
            "propagation.clear[1]: length must be at least 1",
        ];
        assert_eq!(errs, want);
        let errs = parse::<Config>(
            "logs_endpoint: http://o\npropagation: {extract: [b3-single], default_format: b3}",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "propagation.extract[0]: `b3-single` is not one of: w3c, b3, jaeger, ot, datadog, aws, gcp, instana"
            ]
        );
        let errs =
            parse::<Config>("logs_endpoint: http://o\npropagation: {inject: [w3c]}").unwrap_err();
        assert_eq!(errs, ["propagation: missing field `default_format`"]);
        let errs = parse::<Config>("logs_endpoint: http://o\nheader_type: zipkin").unwrap_err();
        assert!(
            errs[0].starts_with("header_type: `zipkin` is not one of: preserve, ignore,"),
            "{errs:?}"
        );
        let errs =
            parse::<Config>("logs_endpoint: http://o\ntrace_endpoint: http://o").unwrap_err();
        assert_eq!(
            errs,
            ["trace_endpoint: unknown field `trace_endpoint`; did you mean `traces_endpoint`?"]
        );
    }
}
