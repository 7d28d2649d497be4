//! Kong's trace-context propagation record (`typedefs.propagation`,
//! `kong/observability/tracing/propagation/schema.lua`) and the legacy `header_type` it
//! replaces: how `opentelemetry` and `zipkin` read and write trace headers.

use serde::Deserialize;

use super::typedefs::{check_items, header_name_problem};
use super::{Checks, join};

/// A trace-context header format (`kong.observability.tracing.propagation.utils.FORMATS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    W3c,
    B3,
    B3Single,
    Jaeger,
    Ot,
    Datadog,
    Aws,
    Gcp,
    Instana,
}

/// A format to extract the trace context from (`b3` reads `b3-single` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Extract {
    W3c,
    B3,
    Jaeger,
    Ot,
    Datadog,
    Aws,
    Gcp,
    Instana,
}

/// A format to inject the trace context in; `preserve` is the incoming request's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Inject {
    Preserve,
    W3c,
    B3,
    B3Single,
    Jaeger,
    Ot,
    Datadog,
    Aws,
    Gcp,
    Instana,
}

/// The legacy tracing header setting (`opentelemetry` and `zipkin`; `propagation` replaces
/// it): `preserve` keeps the incoming format, `ignore` ignores incoming headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum HeaderType {
    #[default]
    #[serde(rename = "preserve")]
    Preserve,
    #[serde(rename = "ignore")]
    Ignore,
    #[serde(rename = "b3")]
    B3,
    #[serde(rename = "b3-single")]
    B3Single,
    #[serde(rename = "w3c")]
    W3c,
    #[serde(rename = "jaeger")]
    Jaeger,
    #[serde(rename = "ot")]
    Ot,
    #[serde(rename = "aws")]
    Aws,
    #[serde(rename = "datadog")]
    Datadog,
    #[serde(rename = "gcp")]
    Gcp,
    #[serde(rename = "instana")]
    Instana,
}

/// Kong's `typedefs.propagation` (`kong/observability/tracing/propagation/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Propagation {
    /// Formats tried in order on incoming requests; none: no context is extracted.
    pub extract: Option<Vec<Extract>>,
    /// Header names removed after extraction.
    pub clear: Option<Vec<String>>,
    /// Formats written to the upstream request; none: no context is injected.
    pub inject: Option<Vec<Inject>>,
    /// The format `preserve` injects when no incoming format was found.
    pub default_format: Format,
}

impl Propagation {
    /// The record as a plugin's default writes it: only `default_format`.
    pub fn with_default(default_format: Format) -> Self {
        Propagation {
            extract: None,
            clear: None,
            inject: None,
            default_format,
        }
    }

    /// The record's rules, with `at` its path inside `config`.
    pub fn check(&self, c: &mut Checks, at: &str) {
        let clear = self.clear.as_deref().unwrap_or_default();
        check_items(c, &join(at, "clear"), clear, header_name_problem);
    }
}
