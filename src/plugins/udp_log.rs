//! `udp-log` (PRIORITY 8): in Kong, sends every request's log entry (JSON) to a UDP server.
//! Not served yet: its config is checked against Kong's schema, and the routes it applies to
//! are warned about (it only observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::typedefs::{check_host, check_lua_code, check_port};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/udp-log/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub host: String,
    pub port: i64,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    pub custom_fields_by_lua: Option<IndexMap<String, String>>,
}

fn default_timeout() -> f64 {
    10000.0
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_host(c, "host", &self.host);
        check_port(c, "port", self.port);
        check_lua_code(
            c,
            "custom_fields_by_lua",
            self.custom_fields_by_lua.as_ref(),
        );
    }
}

/// `udp-log` (PRIORITY 8).
pub struct UdpLog;

impl PluginSpec for UdpLog {
    const NAME: &'static str = "udp-log";
    const PRIORITY: i32 = 8;
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
        let c: Config = parse("host: 127.0.0.1\nport: 514").unwrap();
        assert_eq!((c.port, c.timeout), (514, 10000.0));
        let c: Config =
            parse("host: logs\nport: 9999\ntimeout: 100\ncustom_fields_by_lua: {a: return 1}")
                .unwrap();
        assert_eq!(c.timeout, 100.0);
        let errs = parse::<Config>("host: logs").unwrap_err();
        assert_eq!(errs, [": missing field `port`"]);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("host: \"[::1]:514\"\nport: -1").unwrap_err();
        assert_eq!(
            errs,
            [
                "host: must not have a port",
                "port: value should be between 0 and 65535"
            ]
        );
        let errs = parse::<Config>("host: a\nport: 1\nkeepalive: 1").unwrap_err();
        assert_eq!(errs, ["keepalive: unknown field `keepalive`"]);
    }
}
