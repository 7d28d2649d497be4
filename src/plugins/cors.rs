//! `cors` (PRIORITY 2000, access and response headers): answers CORS preflight `OPTIONS`
//! requests itself (unless `preflight_continue`) and adds the `Access-Control-*` headers to
//! responses for origins in `origins` (exact values or regexes; `*` or none: any origin).
//! Not served yet: its config is checked against Kong's schema, and the routes it applies to
//! are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::schema::typedefs::{check_items, is_regex, non_empty_items};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/cors/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Allowed origins: `*`, exact values or regexes. Unset: any origin.
    pub origins: Option<Vec<String>>,
    /// `Access-Control-Allow-Headers` (unset: the request's `Access-Control-Request-Headers`).
    pub headers: Option<Vec<String>>,
    /// `Access-Control-Expose-Headers`.
    pub exposed_headers: Option<Vec<String>>,
    /// `Access-Control-Allow-Methods`.
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// `Access-Control-Max-Age`, in seconds.
    pub max_age: Option<f64>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub credentials: bool,
    /// `Access-Control-Allow-Private-Network: true`.
    #[serde(default)]
    pub private_network: bool,
    /// Preflight requests are proxied instead of answered.
    #[serde(default)]
    pub preflight_continue: bool,
    /// No CORS headers are added to requests without an `Origin`.
    #[serde(default = "yes")]
    pub allow_origin_absent: bool,
}

/// The methods `methods` may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "HEAD")]
    Head,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "PATCH")]
    Patch,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "OPTIONS")]
    Options,
    #[serde(rename = "TRACE")]
    Trace,
    #[serde(rename = "CONNECT")]
    Connect,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
        }
    }
}

fn default_methods() -> Vec<Method> {
    use Method::*;
    vec![Get, Head, Put, Patch, Post, Delete, Options, Trace, Connect]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        // Kong's `validate_asterisk_or_regex`.
        let origins = self.origins.as_deref().unwrap_or_default();
        check_items(c, "origins", origins, |origin| {
            if origin == "*" || is_regex(origin) {
                Ok(())
            } else {
                Err(format!("'{origin}' is not a valid regex"))
            }
        });
        for (field, list) in [
            ("headers", &self.headers),
            ("exposed_headers", &self.exposed_headers),
        ] {
            non_empty_items(c, field, list.as_deref().unwrap_or_default());
        }
    }
}

/// `cors` (PRIORITY 2000).
pub struct Cors;

impl PluginSpec for Cors {
    const NAME: &'static str = "cors";
    const PRIORITY: i32 = 2000;
    const KIND: Kind = Kind::Acts;
    const NO_CONSUMER: bool = true;
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
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.methods.len(), 9);
        assert_eq!(c.methods[0].as_str(), "GET");
        assert_eq!(
            (c.origins, c.headers, c.exposed_headers, c.max_age),
            (None, None, None, None)
        );
        assert!(!c.credentials && !c.private_network && !c.preflight_continue);
        assert!(c.allow_origin_absent);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "origins: ['http://example.test', 'https://.*\\.example\\.org', '*']\n\
             headers: [origin, type, accepts]\nexposed_headers: [x-auth-token]\n\
             methods: [GET, POST]\nmax_age: 23\ncredentials: true\nprivate_network: true\n\
             preflight_continue: true\nallow_origin_absent: false",
        )
        .unwrap();
        assert_eq!(c.origins.unwrap().len(), 3);
        assert_eq!(c.methods, [Method::Get, Method::Post]);
        assert_eq!(c.max_age, Some(23.0));
        assert!(c.credentials && c.private_network && c.preflight_continue);
        assert!(!c.allow_origin_absent);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("origins: ['http://(unclosed', '']\nheaders: ['']").unwrap_err(),
            [
                "origins[0]: 'http://(unclosed' is not a valid regex",
                "origins[1]: length must be at least 1",
                "headers[0]: length must be at least 1",
            ]
        );
        assert_eq!(
            parse::<Config>("methods: [GET, get]").unwrap_err(),
            [
                "methods[1]: `get` is not one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"
            ]
        );
        // Conformance case plugin-schema-wrong-type.
        assert_eq!(
            parse::<Config>("max_age: one hour").unwrap_err(),
            ["max_age: expected a number, found `one hour`"]
        );
        assert_eq!(
            parse::<Config>("origin: ['*']").unwrap_err(),
            ["origin: unknown field `origin`; did you mean `origins`?"]
        );
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "credentials: true\nexposed_headers: [X-Auth-Token]\nheaders: [Accept, Accept-Version, Content-Length, Content-MD5, Content-Type, Date, X-Auth-Token, Authorization]\nmax_age: 3600\nmethods: [GET, POST, PUT, DELETE, PATCH, OPTIONS]\norigins: ['*']",
            "credentials: true\nheaders: [Accept, Authorization, Content-Type]\nmax_age: 3600\nmethods: [GET, POST, PUT, PATCH, DELETE, OPTIONS]\norigins: ['http://localhost:3000', 'http://127.0.0.1:3000', 'chrome-extension://pajdhnimlepbeghkjhphkkkjjjbopbne']",
            "credentials: false\nexposed_headers: null\nheaders: ['*']\nmax_age: null\nmethods: [GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT]\norigins: ['*']\npreflight_continue: false",
            "credentials: false\nexposed_headers: null\nheaders: null\nmax_age: null\nmethods: [GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT]\norigins: null\npreflight_continue: false",
            "credentials: true\nexposed_headers: null\nheaders: [apikey, Content-Type]\nmax_age: 3600\nmethods: [GET]\norigins: ['*']\npreflight_continue: false\nprivate_network: false",
            "origins: ['https://rta.ae', 'https://*.rta.ae', 'http://localhost:3000']",
            "origins: ['http://my-site.test', 'http://other.test']",
            "preflight_continue: true",
            "credentials: true\nexposed_headers: [x-auth-token]\nmax_age: 10\norigins: ['http://example.test']",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
