//! `request-transformer` (PRIORITY 801, access): rewrites the request before it is proxied:
//! removes, renames, replaces, adds and appends headers, query arguments and body parameters
//! (JSON, form or multipart), replaces the URI and the method; values may be templates
//! (`$(headers.x)`, `$(uri_captures[1])`). Not served yet: its config is checked against
//! Kong's schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::{
    check_items, check_string, is_header_name, non_empty, non_empty_items,
};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/request-transformer/schema.lua`). Each list
/// holds `name` (remove) or `name:value` (the others) entries; `rename` values are the new
/// names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Uppercase letters only (Kong's `typedefs.http_method`).
    pub http_method: Option<String>,
    #[serde(default)]
    pub remove: Fields,
    #[serde(default)]
    pub rename: Fields,
    #[serde(default)]
    pub replace: Replace,
    #[serde(default)]
    pub add: Fields,
    #[serde(default)]
    pub append: Fields,
}

/// The `remove`, `rename`, `add` and `append` records.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Fields {
    #[serde(default)]
    pub body: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub querystring: Vec<String>,
}

/// The `replace` record: the same lists, and the URI.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Replace {
    #[serde(default)]
    pub body: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub querystring: Vec<String>,
    pub uri: Option<String>,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        // Kong's `typedefs.http_method`: `match = "^%u+$"`.
        if let Some(m) = &self.http_method {
            check_string(c, "http_method", m, |m| {
                if m.bytes().all(|b| b.is_ascii_uppercase()) {
                    Ok(())
                } else {
                    Err(format!("invalid value: {m}"))
                }
            });
        }
        // remove: names only; headers must be header names.
        non_empty_items(c, "remove.body", &self.remove.body);
        check_items(c, "remove.headers", &self.remove.headers, |v| {
            check_header_pair(v, false)
        });
        non_empty_items(c, "remove.querystring", &self.remove.querystring);
        // rename: `old:new`, both header names for headers.
        check_items(c, "rename.body", &self.rename.body, check_for_value);
        check_items(c, "rename.headers", &self.rename.headers, |v| {
            check_colon_pair(v).and_then(|_| check_header_pair(v, true))
        });
        check_items(
            c,
            "rename.querystring",
            &self.rename.querystring,
            check_for_value,
        );
        // replace, add, append: `name:value`.
        let records = [
            (
                "replace",
                &self.replace.body,
                &self.replace.headers,
                &self.replace.querystring,
            ),
            (
                "add",
                &self.add.body,
                &self.add.headers,
                &self.add.querystring,
            ),
            (
                "append",
                &self.append.body,
                &self.append.headers,
                &self.append.querystring,
            ),
        ];
        for (record, body, headers, querystring) in records {
            check_items(c, &format!("{record}.body"), body, check_for_value);
            check_items(c, &format!("{record}.headers"), headers, |v| {
                check_colon_pair(v).and_then(|_| check_header_pair(v, false))
            });
            check_items(
                c,
                &format!("{record}.querystring"),
                querystring,
                check_for_value,
            );
        }
        non_empty(c, "replace.uri", self.replace.uri.as_deref());
    }
}

/// Kong's `pair:match("^([^:]+):*(.-)$")`: the name before the first colon and the value
/// after the colons; `None` for an entry that is empty or starts with a colon.
pub(super) fn split_pair(entry: &str) -> Option<(&str, &str)> {
    let (name, value) = match entry.split_once(':') {
        Some((name, rest)) => (name, rest.trim_start_matches(':')),
        None => (entry, ""),
    };
    (!name.is_empty()).then_some((name, value))
}

/// Kong's `match = "^[^:]+:.*$"`: `name:value`.
pub(super) fn check_colon_pair(entry: &str) -> Result<(), String> {
    match entry.find(':') {
        Some(i) if i > 0 => Ok(()),
        _ => Err(format!("invalid value: {entry}")),
    }
}

/// Kong's `validate_headers`: the name (and with `value_too`, the value) is a header name.
pub(super) fn check_header_pair(entry: &str, value_too: bool) -> Result<(), String> {
    let Some((name, value)) = split_pair(entry) else {
        return Err("'nil' is not a valid header".to_string());
    };
    if !is_header_name(name) {
        return Err(format!("'{name}' is not a valid header"));
    }
    if value_too && !is_header_name(value) {
        return Err(format!("'{value}' is not a valid header"));
    }
    Ok(())
}

/// Kong's `check_for_value`: `name:value` with a value. (Kong also compiles the value as a
/// Penlight template, which runs Lua: not checked here.)
fn check_for_value(entry: &str) -> Result<(), String> {
    match split_pair(entry) {
        Some((_, value)) if !value.is_empty() => Ok(()),
        Some((name, _)) => Err(format!("key '{name}' has no value")),
        None => Err(format!("invalid value: {entry}")),
    }
}

/// `request-transformer` (PRIORITY 801).
pub struct RequestTransformer;

impl PluginSpec for RequestTransformer {
    const NAME: &'static str = "request-transformer";
    const PRIORITY: i32 = 801;
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
        assert_eq!(c.http_method, None);
        assert_eq!(c.remove, Fields::default());
        assert_eq!(c.replace, Replace::default());
        assert!(c.add.headers.is_empty() && c.append.body.is_empty());
        // decK writes the empty lists out, or `null`.
        let c: Config =
            parse("add: {body: [], headers: null, querystring: []}\nremove: null").unwrap();
        assert!(c.add.headers.is_empty());
    }

    #[test]
    fn all_fields() {
        let c: Config = parse(
            "http_method: POST\n\
             remove: {body: [secret], headers: [x-internal], querystring: [debug]}\n\
             rename: {body: ['old:new'], headers: ['x-old:x-new'], querystring: ['q:query']}\n\
             replace: {body: ['mode:live'], headers: ['x-tier:gold'], querystring: ['page:1'], uri: '/v2/$(uri_captures[1])'}\n\
             add: {body: ['a:1'], headers: ['x-a:b:c'], querystring: ['k:v']}\n\
             append: {body: ['a:2'], headers: ['x-trace:$(headers.x-id)'], querystring: ['k:w']}\n",
        )
        .unwrap();
        assert_eq!(c.http_method.as_deref(), Some("POST"));
        assert_eq!(c.replace.uri.as_deref(), Some("/v2/$(uri_captures[1])"));
        assert_eq!(c.add.headers, ["x-a:b:c"]);
        assert_eq!(split_pair("x-a:b:c"), Some(("x-a", "b:c")));
        assert_eq!(split_pair("x-a::b"), Some(("x-a", "b")));
    }

    #[test]
    fn rules() {
        assert_eq!(
            errors("http_method: post"),
            ["http_method: invalid value: post"]
        );
        assert_eq!(
            errors("add: {headers: ['x-ok:1', 'x-no-value', 'x bad:1', ':v']}"),
            [
                "add.headers[1]: invalid value: x-no-value",
                "add.headers[2]: 'x bad' is not a valid header",
                "add.headers[3]: invalid value: :v",
            ]
        );
        assert_eq!(
            errors("rename: {headers: ['x-old:x new']}"),
            ["rename.headers[0]: 'x new' is not a valid header"]
        );
        assert_eq!(
            errors("remove: {headers: ['x.y']}"),
            ["remove.headers[0]: 'x.y' is not a valid header"]
        );
        assert_eq!(
            errors("append: {body: ['a']}\nreplace: {querystring: ['q:']}\nrename: {body: ['b']}"),
            [
                "rename.body[0]: key 'b' has no value",
                "replace.querystring[0]: key 'q' has no value",
                "append.body[0]: key 'a' has no value",
            ]
        );
        // Kong's implicit `len_min = 1` comes before each entry's own rule.
        assert_eq!(
            errors(
                "http_method: ''\nremove: {body: [''], headers: [''], querystring: ['']}\n\
                 rename: {headers: ['']}\nadd: {body: [''], headers: ['']}\nreplace: {uri: ''}"
            ),
            [
                "http_method: length must be at least 1",
                "remove.body[0]: length must be at least 1",
                "remove.headers[0]: length must be at least 1",
                "remove.querystring[0]: length must be at least 1",
                "rename.headers[0]: length must be at least 1",
                "add.body[0]: length must be at least 1",
                "add.headers[0]: length must be at least 1",
                "replace.uri: length must be at least 1",
            ]
        );
        let errs = errors("add: {headers: x-a:1}");
        assert!(
            errs[0].starts_with("add.headers: expected a list"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_field() {
        let errs = errors("add: {header: ['x:1']}");
        assert!(
            errs[0].starts_with("add.header: unknown field `header`"),
            "{errs:?}"
        );
        assert!(errs[0].contains("did you mean `headers`"), "{errs:?}");
        let errs = errors("remove: {uri: /x}");
        assert!(errs[0].starts_with("remove.uri: unknown field"), "{errs:?}");
    }

    /// Configs from real users' files and the conformance cases.
    #[test]
    fn real_configs() {
        for yaml in [
            "add: {headers: ['x-added-header:example']}",
            "replace: {uri: /v3/paths/list}",
            "replace: {uri: '/v3/paths/$(uri_captures[1])'}",
            "add: {headers: ['Authorization: $LUA_AUTH_EXPR']}\nreplace: {headers: ['Authorization: $LUA_AUTH_EXPR']}",
            "add: {headers: ['Content-Profile: graphql_public', 'Authorization: $LUA_AUTH_EXPR']}\n\
             replace: {headers: ['Authorization: $LUA_AUTH_EXPR']}",
            "add: {headers: ['x-api-key:$LUA_RT_WS_EXPR']}\nreplace: {querystring: ['apikey:$LUA_RT_WS_EXPR']}",
            "remove: {headers: [sb-api-key]}\nadd: {headers: ['sb-api-key:$LUA_FUNCTIONS_EXPR']}",
            "add: {headers: ['x-added:a1', 'x-present:from-plugin']}",
            "remove: {headers: [x-to-remove, X-Other]}",
            "replace: {headers: ['x-tier:gold']}",
            "rename: {headers: ['x-old:x-new']}",
            "add: {querystring: ['q1:added', 'keep:plugin']}\nremove: {querystring: [drop]}",
            "add: {body: ['added:yes', 'count:from-plugin']}\nremove: {body: [secret]}\n\
             replace: {body: ['mode:live', 'absent:never']}",
            "add: {body: ['added:1']}\nremove: {body: [pw]}",
            "append: {headers: ['x-trace:t1']}",
            "rename: {headers: ['x-a:x-b']}\nreplace: {headers: ['x-b:replaced']}\n\
             add: {headers: ['x-a:added']}\nremove: {headers: [x-c]}",
            "add: {headers: ['x-scope:service']}",
        ] {
            if let Err(e) = parse::<Config>(yaml) {
                panic!("{yaml}\n{e:?}");
            }
        }
    }
}
