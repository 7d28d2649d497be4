//! `zipkin` (PRIORITY 100000): in Kong, traces each request (a span for the request, the
//! proxy and each balancer try, with Kong's phases as annotations or tags) and reports the
//! spans to a Zipkin-compatible collector, batched through a plugin queue; it also propagates
//! the trace context to the upstream. Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use serde::Deserialize;

use super::schema::propagation::{Format, HeaderType, Propagation};
use super::schema::queue::Queue;
use super::schema::typedefs::{check_timeout, check_url, non_empty_fields};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/zipkin/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_local_service_name")]
    pub local_service_name: String,
    /// Where spans go; none: spans are not reported.
    pub http_endpoint: Option<String>,
    /// How often a request without a trace id is sampled (0 to 1).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    pub default_service_name: Option<String>,
    #[serde(default = "super::schema::defaults::yes")]
    pub include_credential: bool,
    #[serde(default = "default_traceid_byte_count")]
    pub traceid_byte_count: i64,
    /// Deprecated: `propagation` replaces it.
    #[serde(default)]
    pub header_type: HeaderType,
    /// Deprecated: `propagation.default_format` replaces it.
    #[serde(default = "default_header_type")]
    pub default_header_type: Format,
    #[serde(default = "default_tags_header")]
    pub tags_header: String,
    pub static_tags: Option<Vec<StaticTag>>,
    #[serde(default)]
    pub http_span_name: SpanName,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: i64,
    #[serde(default = "default_io_timeout")]
    pub send_timeout: i64,
    #[serde(default = "default_io_timeout")]
    pub read_timeout: i64,
    pub http_response_header_for_traceid: Option<String>,
    #[serde(default)]
    pub phase_duration_flavor: PhaseDurationFlavor,
    #[serde(default)]
    pub queue: Queue,
    #[serde(default = "default_propagation")]
    pub propagation: Propagation,
}

/// A tag added to every span.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StaticTag {
    pub name: String,
    pub value: String,
}

/// The span's name: the method, or the method and the path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanName {
    #[default]
    Method,
    MethodPath,
}

/// How Kong's phase durations are reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseDurationFlavor {
    #[default]
    Annotations,
    Tags,
}

/// Tags the plugin sets itself.
const PROTECTED_TAGS: [&str; 13] = [
    "error",
    "http.method",
    "http.path",
    "http.status_code",
    "kong.balancer.state",
    "kong.balancer.try",
    "kong.consumer",
    "kong.credential",
    "kong.node.id",
    "kong.route",
    "kong.service",
    "lc",
    "peer.hostname",
];

fn default_local_service_name() -> String {
    "kong".to_string()
}

fn default_sample_ratio() -> f64 {
    0.001
}

fn default_traceid_byte_count() -> i64 {
    16
}

fn default_header_type() -> Format {
    Format::B3
}

fn default_tags_header() -> String {
    "Zipkin-Tags".to_string()
}

fn default_connect_timeout() -> i64 {
    2000
}

fn default_io_timeout() -> i64 {
    5000
}

fn default_propagation() -> Propagation {
    Propagation::with_default(Format::B3)
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        if let Some(url) = &self.http_endpoint {
            check_url(c, "http_endpoint", url);
        }
        non_empty_fields(
            c,
            "",
            &[
                ("local_service_name", Some(&self.local_service_name)),
                ("default_service_name", self.default_service_name.as_deref()),
                ("tags_header", Some(&self.tags_header)),
                (
                    "http_response_header_for_traceid",
                    self.http_response_header_for_traceid.as_deref(),
                ),
            ],
        );
        c.between("sample_ratio", self.sample_ratio, 0.0, 1.0);
        if ![8, 16].contains(&self.traceid_byte_count) {
            c.error("traceid_byte_count", "expected one of: 8, 16");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, tag) in self.static_tags.iter().flatten().enumerate() {
            non_empty_fields(
                c,
                &format!("static_tags[{i}]"),
                &[("name", Some(&tag.name)), ("value", Some(&tag.value))],
            );
            if PROTECTED_TAGS.contains(&tag.name.as_str()) {
                c.error(
                    &format!("static_tags[{i}].name"),
                    format!("must not be one of: {}", PROTECTED_TAGS.join(", ")),
                );
            }
            if !seen.insert(tag.name.as_str()) {
                c.error(
                    "static_tags",
                    format!("repeated tags are not allowed: {}", tag.name),
                );
            }
        }
        check_timeout(c, "connect_timeout", self.connect_timeout);
        check_timeout(c, "send_timeout", self.send_timeout);
        check_timeout(c, "read_timeout", self.read_timeout);
        self.queue.check(c, "queue");
        self.propagation.check(c, "propagation");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;
    use crate::plugins::schema::propagation::{Extract, Inject};

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.local_service_name, "kong");
        assert_eq!(c.http_endpoint, None);
        assert_eq!(c.sample_ratio, 0.001);
        assert!(c.include_credential);
        assert_eq!(c.traceid_byte_count, 16);
        assert_eq!(c.header_type, HeaderType::Preserve);
        assert_eq!(c.default_header_type, Format::B3);
        assert_eq!(c.tags_header, "Zipkin-Tags");
        assert_eq!(c.http_span_name, SpanName::Method);
        assert_eq!(
            (c.connect_timeout, c.send_timeout, c.read_timeout),
            (2000, 5000, 5000)
        );
        assert_eq!(c.phase_duration_flavor, PhaseDurationFlavor::Annotations);
        assert_eq!(c.queue, Queue::default());
        assert_eq!(c.propagation, Propagation::with_default(Format::B3));
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            r#"
local_service_name: edge
http_endpoint: http://zipkin:9411/api/v2/spans
sample_ratio: 1
default_service_name: unknown
include_credential: false
traceid_byte_count: 8
header_type: b3-single
default_header_type: w3c
tags_header: X-Tags
static_tags: [{name: env, value: prod}, {name: region, value: eu}]
http_span_name: method_path
connect_timeout: 100
send_timeout: 100
read_timeout: 100
http_response_header_for_traceid: X-Trace
phase_duration_flavor: tags
queue: {max_batch_size: 20}
propagation: {extract: [b3, w3c], inject: [preserve], clear: [X-B3-Sampled], default_format: b3-single}
"#,
        )
        .unwrap();
        assert_eq!(c.traceid_byte_count, 8);
        assert_eq!(c.header_type, HeaderType::B3Single);
        assert_eq!(c.static_tags.as_ref().unwrap()[1].value, "eu");
        assert_eq!(
            c.propagation.extract.as_deref(),
            Some(&[Extract::B3, Extract::W3c][..])
        );
        assert_eq!(
            c.propagation.inject.as_deref(),
            Some(&[Inject::Preserve][..])
        );
        assert_eq!(c.propagation.default_format, Format::B3Single);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            r#"
http_endpoint: zipkin:9411
sample_ratio: 1.5
traceid_byte_count: 12
tags_header: ""
static_tags: [{name: lc, value: x}, {name: env, value: a}, {name: env, value: ""}]
read_timeout: -1
queue: {max_coalescing_delay: -1}
"#,
        )
        .unwrap_err();
        let want = [
            "http_endpoint: missing host in url",
            "tags_header: length must be at least 1",
            "sample_ratio: value should be between 0 and 1",
            "traceid_byte_count: expected one of: 8, 16",
            "static_tags[0].name: must not be one of: error, http.method, http.path, http.status_code, kong.balancer.state, kong.balancer.try, kong.consumer, kong.credential, kong.node.id, kong.route, kong.service, lc, peer.hostname",
            "static_tags[2].value: length must be at least 1",
            "static_tags: repeated tags are not allowed: env",
            "read_timeout: value should be between 0 and 2147483646",
            "queue.max_coalescing_delay: value should be between 0 and 3600",
        ];
        assert_eq!(errs, want);
        let errs = parse::<Config>("default_header_type: preserve").unwrap_err();
        assert!(
            errs[0].starts_with("default_header_type: `preserve` is not one of: w3c, b3,"),
            "{errs:?}"
        );
        let errs = parse::<Config>("static_tags: [{name: env}]").unwrap_err();
        assert_eq!(errs, ["static_tags[0]: missing field `value`"]);
        let errs = parse::<Config>("sample_rate: 1").unwrap_err();
        assert_eq!(
            errs,
            ["sample_rate: unknown field `sample_rate`; did you mean `sample_ratio`?"]
        );
    }

    /// Real users' files (`/work/shared/realworld/kong`).
    #[test]
    fn real_configs() {
        // Jose-cyber/kong-tracing-grafana-tempo
        let c: Config =
            parse("http_endpoint: http://tempo:9411/api/v2/spans\nsample_ratio: 1.0").unwrap();
        assert_eq!(c.sample_ratio, 1.0);
    }
}
