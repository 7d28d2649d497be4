//! `response-transformer` (PRIORITY 800, header_filter and body_filter): rewrites the
//! response before it reaches the client: removes, renames, replaces, adds and appends
//! headers and top-level properties of a JSON body (with the JSON type of each added value),
//! as Kong's `header_transformer.lua` and `body_transformer.lua` do.
//!
//! The body is held only when the config changes JSON and the response says it is JSON,
//! and only up to `BODY_LIMIT`: past it the exchange fails (502) rather than let through a
//! body the config meant to change (Kong buffers without a bound). The engine frames the
//! changed body with its new Content-Length.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::request_transformer::{check_colon_pair, check_header_pair, split_pair};
use super::schema::typedefs::{check_items, non_empty_items};
use super::{
    BodyFlow, BuildCx, Checks, Chunk, Ctx, Kind, Phases, Plugin, PluginSpec, ResponseHead, Validate,
};

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

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Handler::compile(&config))))
    }
}

/// The largest response body held to change its JSON.
pub const BODY_LIMIT: usize = 16 << 20;

/// A `name:value` entry as Kong's `iter` splits it: the name up to the first colon, the
/// value after the colons, an empty value none.
fn pair(entry: &str) -> (&str, Option<&str>) {
    match split_pair(entry) {
        Some((n, v)) => (n, (!v.is_empty()).then_some(v)),
        None => (entry, None),
    }
}

/// A header entry; one whose name or value cannot be a header is left out (Kong's
/// `set_header` would refuse it too).
fn header_entry(entry: &str) -> Option<(HeaderName, Option<HeaderValue>)> {
    let (name, value) = pair(entry);
    let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
    let value = match value {
        Some(v) => Some(HeaderValue::from_str(v.trim()).ok()?),
        None => None,
    };
    Some((name, value))
}

fn header_entries(list: &[String]) -> Vec<(HeaderName, Option<HeaderValue>)> {
    list.iter().filter_map(|e| header_entry(e)).collect()
}

/// Kong's `json_value`: the text as cjson would escape it inside a string (but with `"`
/// and `/` left bare), then cast to the entry's JSON type. A missing value is the text
/// `null`. `None`: a number that is not one (Kong skips the entry).
fn json_value(value: Option<&str>, ty: Option<JsonType>) -> Option<Value> {
    let text = match value {
        None => "null".to_string(),
        Some(v) => cjson_escaped(v),
    };
    match ty {
        Some(JsonType::Number) => lua_tonumber(&text),
        Some(JsonType::Boolean) => Some(Value::Bool(text == "true")),
        Some(JsonType::String) | None => Some(Value::String(text)),
    }
}

fn cjson_escaped(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Lua's `tonumber` on a string, as cjson then encodes it (integers without a fraction).
fn lua_tonumber(text: &str) -> Option<Value> {
    let t = text.trim();
    let f = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else {
        let lower = t.to_ascii_lowercase();
        if lower.contains("inf") || lower.contains("nan") {
            return None;
        }
        t.parse::<f64>().ok()?
    };
    if f.fract() == 0.0 && f.abs() < 1e15 {
        Some(Value::from(f as i64))
    } else {
        serde_json::Number::from_f64(f).map(Value::Number)
    }
}

fn json_entries(list: &[String], types: &[JsonType]) -> Vec<(String, Option<Value>)> {
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let (name, value) = pair(e);
            (name.to_string(), json_value(value, types.get(i).copied()))
        })
        .collect()
}

type HeaderOps = Vec<(HeaderName, Option<HeaderValue>)>;

struct Handler {
    remove_headers: Vec<HeaderName>,
    rename_headers: HeaderOps,
    replace_headers: HeaderOps,
    add_headers: HeaderOps,
    append_headers: HeaderOps,
    remove_json: Vec<String>,
    rename_json: Vec<(String, Option<String>)>,
    /// The values are made once here: Kong's `json_value` depends on the config alone.
    replace_json: Vec<(String, Option<Value>)>,
    add_json: Vec<(String, Option<Value>)>,
    append_json: Vec<(String, Option<Value>)>,
    /// Some JSON operation is configured (Kong's `is_body_transform_set`).
    changes_body: bool,
}

/// Set by the response-head hook when this response's JSON body is to be changed.
#[derive(Clone, Copy)]
struct TransformBody;

impl Handler {
    fn compile(c: &Config) -> Handler {
        let rename_headers = c
            .rename
            .headers
            .iter()
            .filter_map(|e| {
                let (old, new) = pair(e);
                let old = HeaderName::from_bytes(old.as_bytes()).ok()?;
                let new = new.and_then(|n| HeaderValue::from_str(n).ok());
                Some((old, new))
            })
            .collect();
        Handler {
            remove_headers: c
                .remove
                .headers
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            rename_headers,
            replace_headers: header_entries(&c.replace.headers),
            add_headers: header_entries(&c.add.headers),
            append_headers: header_entries(&c.append.headers),
            remove_json: c
                .remove
                .json
                .iter()
                .map(|e| pair(e).0.to_string())
                .collect(),
            rename_json: c
                .rename
                .json
                .iter()
                .map(|e| {
                    let (old, new) = pair(e);
                    (old.to_string(), new.map(str::to_string))
                })
                .collect(),
            replace_json: json_entries(&c.replace.json, &c.replace.json_types),
            add_json: json_entries(&c.add.json, &c.add.json_types),
            append_json: json_entries(&c.append.json, &c.append.json_types),
            changes_body: !(c.add.json.is_empty()
                && c.rename.json.is_empty()
                && c.remove.json.is_empty()
                && c.replace.json.is_empty()
                && c.append.json.is_empty()),
        }
    }

    /// Kong's `transform_headers`: remove, rename, replace, add, append. Whether a header is
    /// there is asked of the headers as they came (Kong reads them once, before changing
    /// any).
    fn transform_headers(&self, h: &mut HeaderMap) -> bool {
        let renamed: Vec<Vec<HeaderValue>> = self
            .rename_headers
            .iter()
            .map(|(old, _)| h.get_all(old).iter().cloned().collect())
            .collect();
        let replaced: Vec<bool> = self
            .replace_headers
            .iter()
            .map(|(n, _)| h.contains_key(n))
            .collect();
        let added: Vec<bool> = self
            .add_headers
            .iter()
            .map(|(n, _)| h.contains_key(n))
            .collect();
        let json = is_json_body(h);
        for name in &self.remove_headers {
            h.remove(name);
        }
        for ((old, new), values) in self.rename_headers.iter().zip(renamed) {
            let Some(new) = new
                .as_ref()
                .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            else {
                continue;
            };
            if values.is_empty() {
                continue;
            }
            h.remove(&new);
            for v in values {
                h.append(new.clone(), v);
            }
            // As Kong: the old name is cleared after the new one is set (even when equal).
            h.remove(old);
        }
        for ((name, value), present) in self.replace_headers.iter().zip(replaced) {
            if let (true, Some(v)) = (present, value) {
                h.insert(name.clone(), v.clone());
            }
        }
        for ((name, value), present) in self.add_headers.iter().zip(added) {
            if let (false, Some(v)) = (present, value) {
                h.insert(name.clone(), v.clone());
            }
        }
        for (name, value) in &self.append_headers {
            if let Some(v) = value {
                h.append(name.clone(), v.clone());
            }
        }
        let body = self.changes_body && json;
        if body {
            // The body is going to change.
            h.remove(header::CONTENT_LENGTH);
        }
        body
    }

    /// Kong's `transform_json_body`: remove, rename, replace, add, append on the top-level
    /// object. `None` when the body is not a JSON object: it goes on unchanged, as Kong
    /// lets a body it cannot parse through.
    fn transform_json(&self, body: &[u8]) -> Option<Bytes> {
        let mut doc: Value = serde_json::from_slice(body).ok()?;
        let map = doc.as_object_mut()?;
        for name in &self.remove_json {
            map.shift_remove(name);
        }
        for (old, new) in &self.rename_json {
            if let (Some(v), Some(new)) = (map.get(old).cloned(), new) {
                map.insert(new.clone(), v);
                map.shift_remove(old);
            }
        }
        // Lua truthiness: a missing property and `false` are false; `null` is not.
        let truthy = |v: Option<&Value>| !matches!(v, None | Some(Value::Bool(false)));
        for (name, value) in &self.replace_json {
            if let (true, Some(v)) = (truthy(map.get(name)), value) {
                map.insert(name.clone(), v.clone());
            }
        }
        for (name, value) in &self.add_json {
            if let (false, Some(v)) = (truthy(map.get(name)), value) {
                map.insert(name.clone(), v.clone());
            }
        }
        for (name, value) in &self.append_json {
            if let Some(v) = value {
                let appended = append_value(map.shift_remove(name), v.clone());
                map.insert(name.clone(), appended);
            }
        }
        serde_json::to_vec(&doc).ok().map(Bytes::from)
    }
}

/// Kong's `append_value`: a string becomes a list of both, a list (or an object, which Lua's
/// `table.insert` gives the key 1) gets the value, anything else becomes a list of it.
fn append_value(current: Option<Value>, v: Value) -> Value {
    match current {
        Some(Value::String(s)) => Value::Array(vec![Value::String(s), v]),
        Some(Value::Array(mut a)) => {
            a.push(v);
            Value::Array(a)
        }
        Some(Value::Object(mut o)) => {
            o.insert("1".to_string(), v);
            Value::Object(o)
        }
        _ => Value::Array(vec![v]),
    }
}

/// Kong's `is_json_body`: one of the Content-Type's comma-separated media types is
/// `application/json` or `application/*+json`.
fn is_json_body(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    ct.split(',').any(|m| {
        let essence = m.split(';').next().unwrap_or_default().trim();
        let Some((ty, sub)) = essence.split_once('/') else {
            return false;
        };
        let sub = sub.trim().to_ascii_lowercase();
        ty.trim().eq_ignore_ascii_case("application") && (sub == "json" || sub.ends_with("+json"))
    })
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        ResponseTransformer::NAME
    }
    fn priority(&self) -> i32 {
        ResponseTransformer::PRIORITY
    }
    fn phases(&self) -> Phases {
        if self.changes_body {
            Phases::RESPONSE_HEAD | Phases::RESPONSE_BODY
        } else {
            Phases::RESPONSE_HEAD
        }
    }

    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        if self.transform_headers(resp.headers_mut()) {
            ctx.extensions.insert(TransformBody);
        }
    }

    /// Holds a JSON body to be changed until its end, then changes it whole; any other body
    /// passes piece by piece.
    fn response_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        if ctx.extensions.get::<TransformBody>().is_none() {
            return BodyFlow::Continue;
        }
        if !chunk.end {
            return BodyFlow::Buffer { limit: BODY_LIMIT };
        }
        match self.transform_json(&chunk.data) {
            Some(changed) => chunk.data = changed,
            None => tracing::warn!(
                "response-transformer: body transform failed: failed parsing json body"
            ),
        }
        BodyFlow::Continue
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

    #[test]
    fn json_values_as_kongs_json_value() {
        use serde_json::json;
        assert_eq!(json_value(Some("a/b\"c"), None), Some(json!("a/b\"c")));
        assert_eq!(json_value(Some("a\\b"), None), Some(json!("a\\\\b")));
        assert_eq!(json_value(None, None), Some(json!("null")));
        assert_eq!(
            json_value(Some("12"), Some(JsonType::Number)),
            Some(json!(12))
        );
        assert_eq!(
            json_value(Some("1.5"), Some(JsonType::Number)),
            Some(json!(1.5))
        );
        assert_eq!(
            json_value(Some("0x10"), Some(JsonType::Number)),
            Some(json!(16))
        );
        assert_eq!(json_value(Some("many"), Some(JsonType::Number)), None);
        assert_eq!(json_value(Some("inf"), Some(JsonType::Number)), None);
        assert_eq!(
            json_value(Some("true"), Some(JsonType::Boolean)),
            Some(json!(true))
        );
        assert_eq!(
            json_value(Some("yes"), Some(JsonType::Boolean)),
            Some(json!(false))
        );
    }

    #[test]
    fn json_media_types() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_json_body(&m)
        };
        assert!(h("application/json"));
        assert!(h("Application/JSON; charset=utf-8"));
        assert!(h("application/problem+json"));
        assert!(h("text/plain, application/json"));
        assert!(!h("text/json"));
        assert!(!h("application/jsonx"));
        assert!(!is_json_body(&HeaderMap::new()));
    }

    #[test]
    fn json_body_steps() {
        let c: Config = parse(
            "remove: {json: [a]}\nrename: {json: ['b:c']}\nreplace: {json: ['n:x', 'f:x']}\n\
             add: {json: ['f:y', 'n:z']}\nappend: {json: ['s:2', 'l:3', 'o:4']}",
        )
        .unwrap();
        let h = Handler::compile(&c);
        let out = h
            .transform_json(br#"{"a":1,"b":2,"n":null,"f":false,"s":"1","l":[1],"o":{}}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"c":2,"n":"x","f":"y","s":["1","2"],"l":[1,"3"],"o":{"1":"4"}})
        );
        assert_eq!(h.transform_json(b"[1,2]"), None);
        assert_eq!(h.transform_json(b"not json"), None);
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
