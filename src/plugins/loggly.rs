//! `loggly` (PRIORITY 6): in Kong, sends every request's log entry to Loggly over UDP
//! (syslog format), at a severity chosen by the response status class. Not served yet: its
//! config is checked against Kong's schema, and the routes it applies to are warned about (it
//! only observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::typedefs::{
    check_host, check_lua_code, check_port, non_empty_fields, non_empty_items,
};
use super::syslog::Severity;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/loggly/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: i64,
    pub key: String,
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub log_level: Severity,
    #[serde(default)]
    pub successful_severity: Severity,
    #[serde(default)]
    pub client_errors_severity: Severity,
    #[serde(default)]
    pub server_errors_severity: Severity,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    pub custom_fields_by_lua: Option<IndexMap<String, String>>,
}

fn default_host() -> String {
    "logs-01.loggly.com".to_string()
}

fn default_port() -> i64 {
    514
}

fn default_tags() -> Vec<String> {
    vec!["kong".to_string()]
}

fn default_timeout() -> f64 {
    10000.0
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_host(c, "host", &self.host);
        check_port(c, "port", self.port);
        non_empty_fields(c, "", &[("key", Some(&self.key))]);
        non_empty_items(c, "tags", &self.tags);
        check_lua_code(
            c,
            "custom_fields_by_lua",
            self.custom_fields_by_lua.as_ref(),
        );
    }
}

/// `loggly` (PRIORITY 6).
pub struct Loggly;

impl PluginSpec for Loggly {
    const NAME: &'static str = "loggly";
    const PRIORITY: i32 = 6;
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
        let c: Config = parse("key: abc").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("logs-01.loggly.com", 514));
        assert_eq!(c.tags, ["kong"]);
        assert_eq!(c.successful_severity, Severity::Info);
        assert_eq!(c.timeout, 10000.0);
        let c: Config = parse(
            "key: \"{vault://env/loggly}\"\nhost: 10.1.1.1\nport: 6514\ntags: [a, b]\nlog_level: debug\nsuccessful_severity: notice\nclient_errors_severity: err\nserver_errors_severity: crit\ntimeout: 500\ncustom_fields_by_lua: {x: return 1}",
        )
        .unwrap();
        assert_eq!(c.tags, ["a", "b"]);
        assert_eq!(c.server_errors_severity, Severity::Crit);
        assert_eq!(
            parse::<Config>("{}").unwrap_err(),
            [": missing field `key`"]
        );
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("key: k\nhost: \"logs:514\"\nport: 65536").unwrap_err();
        assert_eq!(
            errs,
            [
                "host: must not have a port",
                "port: value should be between 0 and 65535"
            ]
        );
        let errs = parse::<Config>("key: k\nlog_level: fatal").unwrap_err();
        assert!(
            errs[0].starts_with("log_level: `fatal` is not one of: debug,"),
            "{errs:?}"
        );
        let errs = parse::<Config>("key: \"\"\ntags: [a, \"\"]").unwrap_err();
        assert_eq!(
            errs,
            [
                "key: length must be at least 1",
                "tags[1]: length must be at least 1"
            ]
        );
        let errs = parse::<Config>("key: k\ntag: [a]").unwrap_err();
        assert_eq!(errs, ["tag: unknown field `tag`; did you mean `tags`?"]);
    }
}
