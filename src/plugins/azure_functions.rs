//! `azure-functions` (PRIORITY 749, access): answers requests by calling an Azure Function
//! over HTTP(S) (`https://<appname>.<hostdomain>/<routeprefix>/<functionname>`), passing
//! the request through with the function's key or client id. Not served yet: its config is
//! checked against Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::{BuildCx, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/azure-functions/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Milliseconds.
    #[serde(default = "default_keepalive")]
    pub keepalive: f64,
    #[serde(default = "yes")]
    pub https: bool,
    #[serde(default)]
    pub https_verify: bool,
    /// Sent as `x-functions-key`.
    pub apikey: Option<String>,
    /// Sent as `x-functions-clientid`.
    pub clientid: Option<String>,
    pub appname: String,
    #[serde(default = "default_hostdomain")]
    pub hostdomain: String,
    #[serde(default = "default_routeprefix")]
    pub routeprefix: String,
    pub functionname: String,
}

fn default_timeout() -> f64 {
    600000.0
}

fn default_keepalive() -> f64 {
    60000.0
}

fn default_hostdomain() -> String {
    "azurewebsites.net".to_string()
}

fn default_routeprefix() -> String {
    "api".to_string()
}

impl Validate for Config {}

/// `azure-functions` (PRIORITY 749).
pub struct AzureFunctions;

impl PluginSpec for AzureFunctions {
    const NAME: &'static str = "azure-functions";
    const PRIORITY: i32 = 749;
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

    #[test]
    fn schema() {
        let c: Config = parse("appname: myapp\nfunctionname: hello").unwrap();
        assert_eq!((c.timeout, c.keepalive), (600000.0, 60000.0));
        assert!(c.https && !c.https_verify);
        assert_eq!(c.hostdomain, "azurewebsites.net");
        assert_eq!(c.routeprefix, "api");
        assert_eq!((c.apikey, c.clientid), (None, None));

        let c: Config = parse(
            "timeout: 1000\nkeepalive: 500\nhttps: false\nhttps_verify: true\napikey: k\n\
             clientid: id\nappname: a\nhostdomain: example.net\nrouteprefix: ''\nfunctionname: f",
        )
        .unwrap();
        assert_eq!(c.routeprefix, "");
        assert_eq!(c.apikey.as_deref(), Some("k"));

        let errs = parse::<Config>("appname: a").unwrap_err();
        assert_eq!(errs, [": missing field `functionname`"]);
        let errs = parse::<Config>("appname: a\nfunctionname: f\nfunction_name: f").unwrap_err();
        assert!(
            errs[0].starts_with("function_name: unknown field"),
            "{errs:?}"
        );
        let errs = parse::<Config>("appname: a\nfunctionname: f\ntimeout: '1000'").unwrap_err();
        assert!(
            errs[0].starts_with("timeout: expected a number"),
            "{errs:?}"
        );
    }
}
