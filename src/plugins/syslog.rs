//! `syslog` (PRIORITY 4): in Kong, writes every request's log entry to the local system log,
//! at a severity chosen by the response status class. Not served yet: its config is checked
//! against Kong's schema, and the routes it applies to are warned about (it only observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::typedefs::check_lua_code;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/syslog/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub log_level: Severity,
    #[serde(default)]
    pub successful_severity: Severity,
    #[serde(default)]
    pub client_errors_severity: Severity,
    #[serde(default)]
    pub server_errors_severity: Severity,
    pub custom_fields_by_lua: Option<IndexMap<String, String>>,
    #[serde(default)]
    pub facility: Facility,
}

/// A syslog severity (`syslog` and `loggly`; Kong's default is `info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Debug,
    #[default]
    Info,
    Notice,
    Warning,
    Err,
    Crit,
    Alert,
    Emerg,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Auth,
    Authpriv,
    Cron,
    Daemon,
    Ftp,
    Kern,
    Lpr,
    Mail,
    News,
    Syslog,
    #[default]
    User,
    Uucp,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_lua_code(
            c,
            "custom_fields_by_lua",
            self.custom_fields_by_lua.as_ref(),
        );
    }
}

/// `syslog` (PRIORITY 4).
pub struct Syslog;

impl PluginSpec for Syslog {
    const NAME: &'static str = "syslog";
    const PRIORITY: i32 = 4;
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
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.log_level, Severity::Info);
        assert_eq!(c.server_errors_severity, Severity::Info);
        assert_eq!(c.facility, Facility::User);
        let c: Config = parse(
            "log_level: debug\nsuccessful_severity: notice\nclient_errors_severity: warning\nserver_errors_severity: emerg\nfacility: local7\ncustom_fields_by_lua: {a: return 1}",
        )
        .unwrap();
        assert_eq!(c.client_errors_severity, Severity::Warning);
        assert_eq!(c.server_errors_severity, Severity::Emerg);
        assert_eq!(c.facility, Facility::Local7);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("log_level: error").unwrap_err();
        assert_eq!(
            errs,
            [
                "log_level: `error` is not one of: debug, info, notice, warning, err, crit, alert, emerg"
            ]
        );
        let errs = parse::<Config>("facility: local8").unwrap_err();
        assert!(
            errs[0].starts_with("facility: `local8` is not one of: auth,"),
            "{errs:?}"
        );
        let errs = parse::<Config>("custom_fields_by_lua: {a: \"\"}").unwrap_err();
        assert_eq!(errs, ["custom_fields_by_lua.a: length must be at least 1"]);
        let errs = parse::<Config>("loglevel: info").unwrap_err();
        assert_eq!(
            errs,
            ["loglevel: unknown field `loglevel`; did you mean `log_level`?"]
        );
    }
}
