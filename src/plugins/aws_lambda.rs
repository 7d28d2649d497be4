//! `aws-lambda` (PRIORITY 750, access): answers requests by invoking an AWS Lambda
//! function (with static keys, an assumed role or the instance's credentials), passing the
//! request as JSON and turning the function's result into the response. Not served yet: its
//! config is checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::schema::typedefs::{check_host, check_port, check_url, non_empty_fields, url_problem};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/aws-lambda/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Milliseconds.
    #[serde(default = "default_keepalive")]
    pub keepalive: f64,
    pub aws_key: Option<String>,
    pub aws_secret: Option<String>,
    pub aws_assume_role_arn: Option<String>,
    #[serde(default = "default_role_session_name")]
    pub aws_role_session_name: String,
    pub aws_sts_endpoint_url: Option<String>,
    pub aws_region: Option<String>,
    pub function_name: Option<String>,
    pub qualifier: Option<String>,
    #[serde(default)]
    pub invocation_type: InvocationType,
    #[serde(default)]
    pub log_type: LogType,
    pub host: Option<String>,
    #[serde(default = "default_port")]
    pub port: i64,
    #[serde(default)]
    pub disable_https: bool,
    pub unhandled_status: Option<i64>,
    #[serde(default)]
    pub forward_request_method: bool,
    #[serde(default)]
    pub forward_request_uri: bool,
    #[serde(default)]
    pub forward_request_headers: bool,
    #[serde(default)]
    pub forward_request_body: bool,
    #[serde(default)]
    pub is_proxy_integration: bool,
    #[serde(default)]
    pub awsgateway_compatible: bool,
    pub proxy_url: Option<String>,
    #[serde(default = "yes")]
    pub skip_large_bodies: bool,
    #[serde(default = "yes")]
    pub base64_encode_body: bool,
    #[serde(default)]
    pub aws_imds_protocol_version: ImdsVersion,
    #[serde(default)]
    pub empty_arrays_mode: EmptyArraysMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum InvocationType {
    #[default]
    RequestResponse,
    Event,
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum LogType {
    #[default]
    Tail,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImdsVersion {
    #[default]
    V1,
    V2,
}

/// How an empty array in the function's JSON result is sent on: `legacy` as `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyArraysMode {
    #[default]
    Legacy,
    Correct,
}

fn default_timeout() -> f64 {
    60000.0
}

fn default_keepalive() -> f64 {
    60000.0
}

fn default_role_session_name() -> String {
    "kong".to_string()
}

fn default_port() -> i64 {
    443
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        non_empty_fields(
            c,
            "",
            &[
                ("aws_key", self.aws_key.as_deref()),
                ("aws_secret", self.aws_secret.as_deref()),
                ("aws_assume_role_arn", self.aws_assume_role_arn.as_deref()),
                ("aws_role_session_name", Some(&self.aws_role_session_name)),
                ("function_name", self.function_name.as_deref()),
                ("qualifier", self.qualifier.as_deref()),
            ],
        );
        if let Some(u) = &self.aws_sts_endpoint_url {
            check_url(c, "aws_sts_endpoint_url", u);
        }
        if let Some(r) = &self.aws_region {
            check_host(c, "aws_region", r);
        }
        if let Some(h) = &self.host {
            check_host(c, "host", h);
        }
        check_port(c, "port", self.port);
        if let Some(s) = self.unhandled_status {
            c.between("unhandled_status", s, 100, 999);
        }
        if let Some(u) = &self.proxy_url {
            match url_problem(u) {
                Err(e) => c.error("proxy_url", e),
                // Kong's custom entity check.
                Ok(()) => {
                    if let Some((scheme, _)) = u.split_once("://")
                        && scheme != "http"
                    {
                        c.error("proxy_url", "proxy_url scheme must be http");
                    }
                }
            }
        }
        c.mutually_required(&[
            ("aws_key", self.aws_key.is_some()),
            ("aws_secret", self.aws_secret.is_some()),
        ]);
    }
}

/// `aws-lambda` (PRIORITY 750).
pub struct AwsLambda;

impl PluginSpec for AwsLambda {
    const NAME: &'static str = "aws-lambda";
    const PRIORITY: i32 = 750;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    fn errors(yaml: &str) -> Vec<String> {
        parse::<Config>(yaml).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!((c.timeout, c.keepalive), (60000.0, 60000.0));
        assert_eq!(c.aws_role_session_name, "kong");
        assert_eq!(c.invocation_type, InvocationType::RequestResponse);
        assert_eq!(c.log_type, LogType::Tail);
        assert_eq!(c.port, 443);
        assert!(!c.disable_https && !c.forward_request_body && !c.is_proxy_integration);
        assert!(c.skip_large_bodies && c.base64_encode_body);
        assert_eq!(c.aws_imds_protocol_version, ImdsVersion::V1);
        assert_eq!(c.empty_arrays_mode, EmptyArraysMode::Legacy);
        assert_eq!((c.function_name, c.aws_key), (None, None));
    }

    #[test]
    fn most_fields() {
        let c: Config = parse(
            "timeout: 5000\nkeepalive: 1000.5\naws_key: AKIA\naws_secret: '{vault://env/secret}'\n\
             aws_assume_role_arn: 'arn:aws:iam::123:role/x'\naws_role_session_name: gw\n\
             aws_sts_endpoint_url: https://sts.eu-west-1.amazonaws.com\naws_region: eu-west-1\n\
             function_name: my-fn\nqualifier: prod\ninvocation_type: Event\nlog_type: None\n\
             host: lambda.local\nport: 4566\ndisable_https: true\nunhandled_status: 412\n\
             forward_request_method: true\nforward_request_uri: true\nforward_request_headers: true\n\
             forward_request_body: true\nis_proxy_integration: true\nawsgateway_compatible: true\n\
             proxy_url: 'http://proxy:3128'\nskip_large_bodies: false\nbase64_encode_body: false\n\
             aws_imds_protocol_version: v2\nempty_arrays_mode: correct\n",
        )
        .unwrap();
        assert_eq!(c.invocation_type, InvocationType::Event);
        assert_eq!(c.log_type, LogType::None);
        assert_eq!(c.aws_imds_protocol_version, ImdsVersion::V2);
        assert_eq!(c.keepalive, 1000.5);
        assert_eq!(c.unhandled_status, Some(412));
    }

    #[test]
    fn rules() {
        assert_eq!(
            errors("aws_key: k"),
            [
                "aws_secret: all or none of these fields must be set: 'config.aws_key', 'config.aws_secret'"
            ]
        );
        assert_eq!(
            errors("aws_key: ''\naws_secret: s\nfunction_name: ''\nqualifier: ''"),
            [
                "aws_key: length must be at least 1",
                "function_name: length must be at least 1",
                "qualifier: length must be at least 1",
            ]
        );
        assert_eq!(
            errors("proxy_url: 'https://proxy:3128'"),
            ["proxy_url: proxy_url scheme must be http"]
        );
        assert_eq!(
            errors("proxy_url: proxy:3128"),
            ["proxy_url: missing host in url"]
        );
        assert_eq!(
            errors("unhandled_status: 1000\nport: 70000"),
            [
                "port: value should be between 0 and 65535",
                "unhandled_status: value should be between 100 and 999",
            ]
        );
        assert_eq!(
            errors("aws_region: 'eu west'\nhost: 'lambda:443'"),
            [
                "aws_region: invalid value: eu west",
                "host: must not have a port"
            ]
        );
        assert_eq!(
            errors("invocation_type: Async"),
            ["invocation_type: `Async` is not one of: RequestResponse, Event, DryRun"]
        );
        assert_eq!(
            errors("log_type: tail"),
            ["log_type: `tail` is not one of: Tail, None"]
        );
        assert_eq!(
            errors("empty_arrays_mode: strict"),
            ["empty_arrays_mode: `strict` is not one of: legacy, correct"]
        );
        let errs = errors("function: f");
        assert!(errs[0].starts_with("function: unknown field"), "{errs:?}");
        assert!(errs[0].contains("did you mean `function_name`"), "{errs:?}");
    }
}
