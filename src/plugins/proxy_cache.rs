//! `proxy-cache` (PRIORITY 100, access, header_filter and body_filter): caches upstream
//! responses in memory by method, status and content type, keyed by the request (with chosen
//! query arguments and headers), for `cache_ttl` seconds or as Cache-Control says, and marks
//! answers with `X-Cache-Status`. Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/proxy-cache/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default = "default_response_code")]
    pub response_code: Vec<i64>,
    #[serde(default = "default_request_method")]
    pub request_method: Vec<Method>,
    #[serde(default = "default_content_type")]
    pub content_type: Vec<String>,
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: i64,
    pub strategy: Strategy,
    #[serde(default)]
    pub cache_control: bool,
    #[serde(default)]
    pub ignore_uri_case: bool,
    pub storage_ttl: Option<i64>,
    #[serde(default)]
    pub memory: Memory,
    pub vary_query_params: Option<Vec<String>>,
    pub vary_headers: Option<Vec<String>>,
    #[serde(default)]
    pub response_headers: ResponseHeaders,
}

/// The cacheable request methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Head,
    Get,
    Post,
    Patch,
    Put,
}

/// Kong's `STRATEGY_TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Memory,
}

/// The `memory` strategy's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Memory {
    /// Kong's shared dict (`lua_shared_dict`) name.
    #[serde(default = "default_dictionary_name")]
    pub dictionary_name: String,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            dictionary_name: default_dictionary_name(),
        }
    }
}

/// Which diagnostic headers answers carry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseHeaders {
    #[serde(default = "yes")]
    pub age: bool,
    #[serde(rename = "X-Cache-Status", default = "yes")]
    pub x_cache_status: bool,
    #[serde(rename = "X-Cache-Key", default = "yes")]
    pub x_cache_key: bool,
}

impl Default for ResponseHeaders {
    fn default() -> Self {
        ResponseHeaders {
            age: true,
            x_cache_status: true,
            x_cache_key: true,
        }
    }
}

fn default_response_code() -> Vec<i64> {
    vec![200, 301, 404]
}

fn default_request_method() -> Vec<Method> {
    vec![Method::Get, Method::Head]
}

fn default_content_type() -> Vec<String> {
    vec!["text/plain".to_string(), "application/json".to_string()]
}

fn default_cache_ttl() -> i64 {
    300
}

fn default_dictionary_name() -> String {
    "kong_db_cache".to_string()
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        if self.response_code.is_empty() {
            c.error("response_code", "length must be at least 1");
        }
        for (i, code) in self.response_code.iter().enumerate() {
            c.between(&format!("response_code[{i}]"), *code, 100, 900);
        }
        c.greater_than("cache_ttl", self.cache_ttl, 0);
        // Kong's entity check that the memory strategy's shared dict exists has no
        // counterpart: switchyard has no nginx shared dicts.
    }
}

/// `proxy-cache` (PRIORITY 100).
pub struct ProxyCache;

impl PluginSpec for ProxyCache {
    const NAME: &'static str = "proxy-cache";
    const PRIORITY: i32 = 100;
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
        let c: Config = parse("strategy: memory").unwrap();
        assert_eq!(c.strategy, Strategy::Memory);
        assert_eq!(c.response_code, [200, 301, 404]);
        assert_eq!(c.request_method, [Method::Get, Method::Head]);
        assert_eq!(c.content_type, ["text/plain", "application/json"]);
        assert_eq!(c.cache_ttl, 300);
        assert!(!c.cache_control && !c.ignore_uri_case);
        assert_eq!(c.storage_ttl, None);
        assert_eq!(c.memory.dictionary_name, "kong_db_cache");
        assert_eq!((c.vary_query_params, c.vary_headers), (None, None));
        assert_eq!(c.response_headers, ResponseHeaders::default());
        assert!(c.response_headers.x_cache_key);
    }

    #[test]
    fn all_fields() {
        let c: Config = parse(
            "response_code: [200, 203]\nrequest_method: [GET, POST]\n\
             content_type: ['application/json; charset=utf-8']\ncache_ttl: 60\nstrategy: memory\n\
             cache_control: true\nignore_uri_case: true\nstorage_ttl: 3600\n\
             memory: {dictionary_name: my_cache}\nvary_query_params: [page]\nvary_headers: [x-lang]\n\
             response_headers: {age: false, X-Cache-Status: true, X-Cache-Key: false}\n",
        )
        .unwrap();
        assert_eq!(c.request_method, [Method::Get, Method::Post]);
        assert_eq!(c.storage_ttl, Some(3600));
        assert_eq!(c.memory.dictionary_name, "my_cache");
        assert!(!c.response_headers.age && !c.response_headers.x_cache_key);
        assert_eq!(c.vary_headers, Some(vec!["x-lang".to_string()]));
    }

    #[test]
    fn rules() {
        assert_eq!(errors("cache_ttl: 30"), [": missing field `strategy`"]);
        assert_eq!(
            errors("strategy: redis"),
            ["strategy: `redis` is not one of: memory"]
        );
        assert_eq!(
            errors("strategy: memory\nresponse_code: [200, 99, 901]\ncache_ttl: 0"),
            [
                "response_code[1]: value should be between 100 and 900",
                "response_code[2]: value should be between 100 and 900",
                "cache_ttl: value must be greater than 0",
            ]
        );
        assert_eq!(
            errors("strategy: memory\nresponse_code: []"),
            ["response_code: length must be at least 1"]
        );
        assert_eq!(
            errors("strategy: memory\nrequest_method: [GET, DELETE]"),
            ["request_method[1]: `DELETE` is not one of: HEAD, GET, POST, PATCH, PUT"]
        );
    }

    #[test]
    fn unknown_field() {
        let errs = errors("strategy: memory\ncache_tll: 1");
        assert!(
            errs[0].starts_with("cache_tll: unknown field `cache_tll`"),
            "{errs:?}"
        );
        assert!(errs[0].contains("did you mean `cache_ttl`"), "{errs:?}");
        let errs = errors("strategy: memory\nresponse_headers: {x-cache-status: false}");
        assert!(
            errs[0].starts_with("response_headers.x-cache-status: unknown field"),
            "{errs:?}"
        );
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "strategy: memory",
            "strategy: memory\nresponse_code: [200]",
            "strategy: memory\ncache_ttl: 1",
            "strategy: memory\nvary_headers: [x-lang]",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
