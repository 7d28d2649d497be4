//! `tcp-log` (PRIORITY 7): in Kong, sends every request's log entry (JSON) to a TCP server,
//! optionally over TLS. Not served yet: its config is checked against Kong's schema, and the
//! routes it applies to are warned about (it only observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::typedefs::{check_host, check_lua_code, check_port, non_empty_fields};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/tcp-log/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub host: String,
    pub port: i64,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "default_keepalive")]
    pub keepalive: f64,
    #[serde(default)]
    pub tls: bool,
    pub tls_sni: Option<String>,
    pub custom_fields_by_lua: Option<IndexMap<String, String>>,
}

fn default_timeout() -> f64 {
    10000.0
}

fn default_keepalive() -> f64 {
    60000.0
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_host(c, "host", &self.host);
        check_port(c, "port", self.port);
        non_empty_fields(c, "", &[("tls_sni", self.tls_sni.as_deref())]);
        check_lua_code(
            c,
            "custom_fields_by_lua",
            self.custom_fields_by_lua.as_ref(),
        );
    }
}

/// `tcp-log` (PRIORITY 7).
pub struct TcpLog;

impl PluginSpec for TcpLog {
    const NAME: &'static str = "tcp-log";
    const PRIORITY: i32 = 7;
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
        let c: Config = parse("host: logs.internal\nport: 5000").unwrap();
        assert_eq!((c.timeout, c.keepalive, c.tls), (10000.0, 60000.0, false));
        assert!(c.tls_sni.is_none());
        let c: Config = parse(
            "host: 10.0.0.5\nport: 6514\ntimeout: 500\nkeepalive: 1000\ntls: true\ntls_sni: logs.example.com\ncustom_fields_by_lua: {a: return 1}",
        )
        .unwrap();
        assert!(c.tls);
        assert_eq!(c.tls_sni.as_deref(), Some("logs.example.com"));
        let errs = parse::<Config>("{}").unwrap_err();
        assert_eq!(errs, [": missing field `host`"]);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("host: logs:5000\nport: 70000").unwrap_err();
        assert_eq!(
            errs,
            [
                "host: must not have a port",
                "port: value should be between 0 and 65535"
            ]
        );
        let errs = parse::<Config>("host: \"bad host\"\nport: \"80\"").unwrap_err();
        assert_eq!(errs, ["port: expected an integer, found `80`"]);
        let errs = parse::<Config>("host: \"bad host\"\nport: 80").unwrap_err();
        assert_eq!(errs, ["host: invalid value: bad host"]);
        let errs = parse::<Config>("host: a\nport: 1\ntls_sni: \"\"").unwrap_err();
        assert_eq!(errs, ["tls_sni: length must be at least 1"]);
        let errs = parse::<Config>("host: a\nport: 1\nsni: x").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("sni: unknown field `sni`"), "{errs:?}");
    }
}
