//! `response-transformer` (PRIORITY 800, header_filter and body_filter): rewrites the
//! response before it reaches the client: removes, renames, replaces, adds and appends
//! headers and top-level properties of a JSON body (with the JSON type of each added value).
//! Not served yet: its config is checked against Kong's schema, and the routes it applies to
//! are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::request_transformer::{check_colon_pair, check_header_pair};
use super::schema::typedefs::{check_items, non_empty_items};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/response-transformer/schema.lua`). Each list
/// holds `name` (remove) or `name:value` (the others) entries; `rename` values are the new
/// names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub remove: Remove,
    #[serde(default)]
    pub rename: Rename,
    #[serde(default)]
    pub replace: Fields,
    #[serde(default)]
    pub add: Fields,
    #[serde(default)]
    pub append: Fields,
}

/// The `remove` record: names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Remove {
    #[serde(default)]
    pub json: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
}

/// The `rename` record: `old:new`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Rename {
    #[serde(default)]
    pub json: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
}

/// The `replace`, `add` and `append` records: `name:value`, and the JSON type of the n-th
/// `json` value (a string where none is given).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Fields {
    #[serde(default)]
    pub json: Vec<String>,
    #[serde(default)]
    pub json_types: Vec<JsonType>,
    #[serde(default)]
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    Boolean,
    Number,
    String,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        non_empty_items(c, "remove.json", &self.remove.json);
        non_empty_items(c, "remove.headers", &self.remove.headers);
        check_items(c, "rename.json", &self.rename.json, check_colon_pair);
        check_items(c, "rename.headers", &self.rename.headers, |v| {
            check_colon_pair(v).and_then(|_| check_header_pair(v, true))
        });
        for (record, fields) in [
            ("replace", &self.replace),
            ("add", &self.add),
            ("append", &self.append),
        ] {
            check_items(c, &format!("{record}.json"), &fields.json, check_colon_pair);
            check_items(
                c,
                &format!("{record}.headers"),
                &fields.headers,
                check_colon_pair,
            );
        }
    }
}

/// `response-transformer` (PRIORITY 800).
pub struct ResponseTransformer;

impl PluginSpec for ResponseTransformer {
    const NAME: &'static str = "response-transformer";
    const PRIORITY: i32 = 800;
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
        assert_eq!(c.remove, Remove::default());
        assert_eq!(c.rename, Rename::default());
        assert_eq!(c.add, Fields::default());
        assert!(c.append.json_types.is_empty() && c.replace.headers.is_empty());
    }

    #[test]
    fn all_fields() {
        let c: Config = parse(
            "remove: {json: [secret], headers: [x-internal]}\n\
             rename: {json: ['a:b'], headers: ['x-old:x-new']}\n\
             replace: {json: ['n:1'], json_types: [number], headers: ['x-v:2']}\n\
             add: {json: ['ok:true', 'who:me'], json_types: [boolean, string], headers: ['x-a:1']}\n\
             append: {json: ['tags:x'], headers: ['Cache-Control: no-store']}\n",
        )
        .unwrap();
        assert_eq!(c.add.json_types, [JsonType::Boolean, JsonType::String]);
        assert_eq!(c.replace.json_types, [JsonType::Number]);
        assert_eq!(c.append.headers, ["Cache-Control: no-store"]);
    }

    #[test]
    fn rules() {
        assert_eq!(
            errors("add: {json: ['nocolon'], headers: [':x', 'x-ok:1']}"),
            [
                "add.json[0]: invalid value: nocolon",
                "add.headers[0]: invalid value: :x",
            ]
        );
        assert_eq!(
            errors("rename: {headers: ['x-a:x b'], json: ['a']}"),
            [
                "rename.json[0]: invalid value: a",
                "rename.headers[0]: 'x b' is not a valid header",
            ]
        );
        assert_eq!(
            errors("append: {json_types: [object]}"),
            ["append.json_types[0]: `object` is not one of: boolean, number, string"]
        );
        assert_eq!(
            errors("remove: {json: [''], headers: [x, '']}\nadd: {json: ['']}"),
            [
                "remove.json[0]: length must be at least 1",
                "remove.headers[1]: length must be at least 1",
                "add.json[0]: length must be at least 1",
            ]
        );
        // Kong checks only the shape of added header entries, not the name.
        assert!(parse::<Config>("add: {headers: ['x y:1']}").is_ok());
    }

    #[test]
    fn unknown_field() {
        let errs = errors("remove: {json_types: [string]}");
        assert!(
            errs[0].starts_with("remove.json_types: unknown field"),
            "{errs:?}"
        );
        let errs = errors("add: {body: ['a:1']}");
        assert!(
            errs[0].starts_with("add.body: unknown field `body`"),
            "{errs:?}"
        );
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "add: {headers: ['X-Powered-By: RTA CCTV System', 'X-Kong-Upstream-Status: $(upstream_status)']}",
            "add: {headers: ['X-Powered-By: telco-intelligence']}",
            "add: {headers: ['Cache-Control: no-store']}",
            "add: {headers: ['x-added:yes', 'Content-Type:text/html']}",
            "remove: {headers: [x-internal, x-debug]}",
            "replace: {headers: ['x-version:v2', 'x-absent:nope']}",
            "add: {json: ['greeting:hello', 'path:ignored']}",
            "remove: {json: [path]}\nadd: {json: ['ok:yes']}",
            "append: {headers: ['x-via-plugin:one']}",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
