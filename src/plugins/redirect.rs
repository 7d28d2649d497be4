//! `redirect` (PRIORITY 779, access): answers every request with a redirect (301 by default)
//! to `location`, optionally carrying over the request's path and query string. Not served
//! yet: its config is checked against Kong's schema, and the routes it applies to are
//! closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::check_url;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/redirect/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_status_code")]
    pub status_code: i64,
    /// A URL with a scheme and a host (Kong's `typedefs.url`).
    pub location: String,
    #[serde(default)]
    pub keep_incoming_path: bool,
}

fn default_status_code() -> i64 {
    301
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.between("status_code", self.status_code, 100, 599);
        check_url(c, "location", &self.location);
    }
}

/// `redirect` (PRIORITY 779).
pub struct Redirect;

impl PluginSpec for Redirect {
    const NAME: &'static str = "redirect";
    const PRIORITY: i32 = 779;
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
        let c: Config = parse("location: https://example.com").unwrap();
        assert_eq!(c.status_code, 301);
        assert_eq!(c.location, "https://example.com");
        assert!(!c.keep_incoming_path);
        assert_eq!(errors("{}"), [": missing field `location`"]);
    }

    #[test]
    fn all_fields() {
        let c: Config = parse(
            "status_code: 308\nlocation: 'http://user@[::1]:8080/new?x=1'\nkeep_incoming_path: true",
        )
        .unwrap();
        assert_eq!(c.status_code, 308);
        assert!(c.keep_incoming_path);
    }

    #[test]
    fn rules() {
        assert_eq!(
            errors("status_code: 600\nlocation: https://example.com"),
            ["status_code: value should be between 100 and 599"]
        );
        assert_eq!(
            errors("location: /elsewhere"),
            ["location: missing host in url"]
        );
        assert_eq!(
            errors("location: example.com:8080"),
            ["location: missing host in url"]
        );
        assert_eq!(
            errors("location: //example.com/x"),
            ["location: missing scheme in url"]
        );
        let errs = errors("location: https://example.com\nstatus: 302");
        assert!(
            errs[0].starts_with("status: unknown field `status`"),
            "{errs:?}"
        );
        assert!(errs[0].contains("did you mean `status_code`"), "{errs:?}");
    }
}
