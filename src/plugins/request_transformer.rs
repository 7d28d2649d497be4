//! `request-transformer` (PRIORITY 801, access): rewrites the request before it is proxied,
//! as Kong's `kong/plugins/request-transformer/access.lua` does: the URI (`replace.uri`),
//! the method (`http_method`), then headers, body parameters (JSON, form or multipart) and
//! query arguments, each through remove, rename, replace, add and append. Values may be
//! templates (`$(headers.x)`, `$(query_params.x)`, `$(uri_captures[1])`: `template`),
//! compiled when the plugin is built; a template switchyard does not evaluate leaves the
//! plugin unbuilt and its routes closed.

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

// === Serving ===

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde_json::{Map, Value};

use super::args::{ArgValue, Args, MAX_ARGS, Multipart};
use super::template::{Env, Source, Template};
use super::{Ctx, Flow, Phases, Request};
use crate::exchange::{UriCaptures, respond};

/// `request-transformer` (PRIORITY 801).
pub struct RequestTransformer;

impl PluginSpec for RequestTransformer {
    const NAME: &'static str = "request-transformer";
    const PRIORITY: i32 = 801;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(
        config: Self::Config,
        cx: &mut BuildCx<'_>,
    ) -> Result<Option<Arc<dyn Plugin>>, String> {
        match Handler::compile(&config) {
            Ok(h) => Ok(Some(Arc::new(h))),
            Err(why) => {
                tracing::warn!(
                    plugin = Self::NAME,
                    id = cx.id,
                    "{why}; the plugin is not served and the routes it applies to are closed"
                );
                Ok(None)
            }
        }
    }
}

/// The largest request body read to transform it (Kong reads what fits its body buffer and
/// treats a larger body as empty; a larger one is refused with 413 here).
const BODY_LIMIT: usize = 8 << 20;

/// Kong's `get_content_type`: by substring of the lower-cased Content-Type, JSON first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyType {
    Json,
    Multipart,
    Form,
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn body_type(headers: &HeaderMap) -> Option<BodyType> {
    let ct = headers.get(header::CONTENT_TYPE)?.as_bytes();
    if contains_ci(ct, b"application/json") {
        Some(BodyType::Json)
    } else if contains_ci(ct, b"multipart/form-data") {
        Some(BodyType::Multipart)
    } else if contains_ci(ct, b"application/x-www-form-urlencoded") {
        Some(BodyType::Form)
    } else {
        None
    }
}

/// An entry's value: none (`name` alone, or `name:`), text, or a template.
#[derive(Debug)]
enum Val {
    Absent,
    Text(Bytes),
    Template(Template),
}

impl Val {
    fn compile(value: Option<&str>) -> Result<Val, String> {
        let Some(v) = value.filter(|v| !v.is_empty()) else {
            return Ok(Val::Absent);
        };
        let t = Template::compile(v)?;
        Ok(match t.constant() {
            Some(text) => Val::Text(Bytes::copy_from_slice(text)),
            None => Val::Template(t),
        })
    }

    /// Kong's `iter`: the value rendered (before the entry is used, whatever it is for).
    fn render(&self, env: &mut Env, src: &Source<'_>) -> Result<Option<Bytes>, String> {
        match self {
            Val::Absent => Ok(None),
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Template(t) => t.render(env, src).map(|v| Some(Bytes::from(v))),
        }
    }

    fn reads_headers(&self) -> bool {
        matches!(self, Val::Template(t) if t.reads_headers())
    }
}

/// A query or body entry: `name` is `None` where the entry does not split (Kong's nil name,
/// an error where it is used as a key).
#[derive(Debug)]
struct Entry {
    name: Option<Vec<u8>>,
    value: Val,
}

/// A header name as Kong's header table finds it: the exact (lower-cased) name, else with
/// `_` as `-`.
#[derive(Debug, Clone)]
struct HName {
    exact: HeaderName,
    alt: Option<HeaderName>,
    host: bool,
}

impl HName {
    fn new(name: &str) -> Result<HName, String> {
        let lower = name.to_ascii_lowercase();
        let exact = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| format!("'{name}' is not a valid header"))?;
        let alt = lower
            .contains('_')
            .then(|| HeaderName::from_bytes(lower.replace('_', "-").as_bytes()).ok())
            .flatten();
        Ok(HName {
            host: exact == header::HOST,
            exact,
            alt,
        })
    }

    fn is(&self, name: &HeaderName) -> bool {
        self.exact == name || self.alt.as_ref() == Some(name)
    }
}

#[derive(Debug)]
struct HeaderEntry {
    name: HName,
    value: Val,
}

#[derive(Debug)]
struct HeaderRename {
    /// The names as configured: equal ones rename nothing.
    same: bool,
    old: HName,
    new: HName,
    /// The new name, rendered as Kong renders every value.
    value: Val,
}

#[derive(Debug, Default)]
struct Lists<T> {
    remove: Vec<T>,
    rename: Vec<T>,
    replace: Vec<T>,
    add: Vec<T>,
    append: Vec<T>,
}

impl<T> Lists<T> {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}

/// `http_method`.
#[derive(Debug)]
struct MethodChange {
    /// `None`: not one Kong's `set_method` accepts (it errors on every request).
    method: Option<Method>,
    name: String,
    /// GET, HEAD or TRACE: a form body's parameters join the query.
    to_query: bool,
}

struct Handler {
    uri: Option<Template>,
    method: Option<MethodChange>,
    headers: Lists<HeaderEntry>,
    header_renames: Vec<HeaderRename>,
    /// Some header value reads `headers`: it sees them as they were before this step.
    header_values_read_headers: bool,
    /// Some header entry names Content-Type: the body's kind may change before it is read.
    headers_touch_content_type: bool,
    query: Lists<Entry>,
    body: Lists<Entry>,
}

fn entries(list: &[String]) -> Result<Vec<Entry>, String> {
    list.iter()
        .map(|e| {
            Ok(match split_pair(e) {
                Some((name, value)) => Entry {
                    name: Some(name.as_bytes().to_vec()),
                    value: Val::compile(Some(value))?,
                },
                None => Entry {
                    name: None,
                    value: Val::Absent,
                },
            })
        })
        .collect()
}

fn header_entries(list: &[String]) -> Result<Vec<HeaderEntry>, String> {
    list.iter()
        .map(|e| {
            let (name, value) =
                split_pair(e).ok_or_else(|| format!("invalid header entry: {e}"))?;
            Ok(HeaderEntry {
                name: HName::new(name)?,
                value: Val::compile(Some(value))?,
            })
        })
        .collect()
}

/// Kong's `kong.service.request.set_method` accepts these only.
const METHODS: [&str; 15] = [
    "GET",
    "HEAD",
    "PUT",
    "POST",
    "DELETE",
    "OPTIONS",
    "MKCOL",
    "COPY",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
    "TRACE",
];

impl Handler {
    fn compile(c: &Config) -> Result<Handler, String> {
        let uri = match c.replace.uri.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => Some(Template::compile(u).map_err(|e| format!("replace.uri {e}"))?),
            None => None,
        };
        let method = c.http_method.as_ref().map(|m| MethodChange {
            method: METHODS
                .contains(&m.as_str())
                .then(|| Method::from_bytes(m.as_bytes()).ok())
                .flatten(),
            name: m.clone(),
            to_query: matches!(m.as_str(), "GET" | "HEAD" | "TRACE"),
        });
        let at = |what: &'static str| move |e: String| format!("{what}: {e}");
        let headers = Lists {
            remove: header_entries(&c.remove.headers).map_err(at("remove.headers"))?,
            rename: Vec::new(),
            replace: header_entries(&c.replace.headers).map_err(at("replace.headers"))?,
            add: header_entries(&c.add.headers).map_err(at("add.headers"))?,
            append: header_entries(&c.append.headers).map_err(at("append.headers"))?,
        };
        let header_renames = c
            .rename
            .headers
            .iter()
            .map(|e| {
                let (old, new) = split_pair(e).ok_or_else(|| format!("rename.headers: {e}"))?;
                Ok(HeaderRename {
                    same: old == new,
                    old: HName::new(old)?,
                    new: HName::new(new)?,
                    value: Val::compile(Some(new))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let all_headers = || {
            headers
                .remove
                .iter()
                .chain(&headers.replace)
                .chain(&headers.add)
                .chain(&headers.append)
        };
        let header_values_read_headers = all_headers().any(|e| e.value.reads_headers())
            || header_renames.iter().any(|r| r.value.reads_headers());
        let headers_touch_content_type = all_headers().any(|e| e.name.is(&header::CONTENT_TYPE))
            || header_renames
                .iter()
                .any(|r| r.old.is(&header::CONTENT_TYPE) || r.new.is(&header::CONTENT_TYPE));
        let query = Lists {
            remove: entries(&c.remove.querystring).map_err(at("remove.querystring"))?,
            rename: entries(&c.rename.querystring).map_err(at("rename.querystring"))?,
            replace: entries(&c.replace.querystring).map_err(at("replace.querystring"))?,
            add: entries(&c.add.querystring).map_err(at("add.querystring"))?,
            append: entries(&c.append.querystring).map_err(at("append.querystring"))?,
        };
        let body = Lists {
            remove: entries(&c.remove.body).map_err(at("remove.body"))?,
            rename: entries(&c.rename.body).map_err(at("rename.body"))?,
            replace: entries(&c.replace.body).map_err(at("replace.body"))?,
            add: entries(&c.add.body).map_err(at("add.body"))?,
            append: entries(&c.append.body).map_err(at("append.body"))?,
        };
        Ok(Handler {
            uri,
            method,
            headers,
            header_renames,
            header_values_read_headers,
            headers_touch_content_type,
            query,
            body,
        })
    }

    /// The steps ahead read the body: to move a form body into the query (`http_method`
    /// GET, HEAD, TRACE), or to transform it (the body's kind as it will be after the
    /// header step: when that step may change Content-Type, any body is read).
    fn needs_body(&self, headers: &HeaderMap) -> bool {
        let to_query = self.method.as_ref().is_some_and(|m| m.to_query)
            && body_type(headers) == Some(BodyType::Form);
        to_query
            || (!self.body.is_empty()
                && (self.headers_touch_content_type || body_type(headers).is_some()))
    }

    /// Kong's `execute`: URI, method, headers, body, query.
    fn execute(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Result<(), String> {
        let mut env = Env::default();
        let captures = ctx.uri_captures.as_ref();
        // Kong keeps a bare `?` the client sent even when the query ends up empty.
        let bare_mark = req
            .head()
            .uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().ends_with('?'));
        self.transform_uri(&mut env, captures, req)?;
        self.transform_method(req, bare_mark)?;
        let host = self.transform_headers(&mut env, captures, req)?;
        self.transform_body(&mut env, captures, req)?;
        self.transform_query(&mut env, captures, req, bare_mark)?;
        if let Some(h) = host {
            ctx.upstream_host = Some(h);
        }
        Ok(())
    }

    fn transform_uri(
        &self,
        env: &mut Env,
        captures: Option<&UriCaptures<'_>>,
        req: &mut Request<'_>,
    ) -> Result<(), String> {
        let Some(t) = &self.uri else {
            return Ok(());
        };
        let path = t.render(env, &source(req, captures))?;
        if path.first() != Some(&b'/') {
            return Err("path must start with /".into());
        }
        *req.upstream_path = Some(String::from_utf8_lossy(&path).into_owned());
        Ok(())
    }

    fn transform_method(&self, req: &mut Request<'_>, bare_mark: bool) -> Result<(), String> {
        let Some(m) = &self.method else {
            return Ok(());
        };
        let Some(method) = &m.method else {
            return Err(format!("invalid method: {}", m.name));
        };
        req.head_mut().method = method.clone();
        if !m.to_query || body_type(req.headers()) != Some(BodyType::Form) {
            return Ok(());
        }
        let params = Args::decode(req.body.as_deref().unwrap_or_default(), MAX_ARGS);
        if params.is_empty() {
            return Ok(());
        }
        let mut query = Args::decode(req.query().unwrap_or("").as_bytes(), MAX_ARGS);
        for (name, value) in params.0 {
            match query.get_mut(&name) {
                Some(ArgValue::List(list)) => list.push(value),
                Some(old) => {
                    let first = std::mem::replace(old, ArgValue::Flag);
                    *old = ArgValue::List(vec![first, value]);
                }
                None => query.0.push((name, value)),
            }
        }
        set_query(req, &query, bare_mark)
    }

    /// Kong's `transform_headers` over the request's header map: Host is out of the table
    /// (it is set only by replace, or rename to it, and then goes upstream too); names are
    /// looked up as nginx's table finds them and set as configured. Returns the Host to
    /// send upstream, when set.
    fn transform_headers(
        &self,
        env: &mut Env,
        captures: Option<&UriCaptures<'_>>,
        req: &mut Request<'_>,
    ) -> Result<Option<HeaderValue>, String> {
        // Templates read the headers as nginx holds them until the end of this step.
        let before = if self.header_values_read_headers && !env.has_headers() {
            req.headers().clone()
        } else {
            HeaderMap::new()
        };
        let head = req.head_mut();
        let src = Source {
            headers: &before,
            query: head.uri.query(),
            captures,
        };
        let h = &mut head.headers;
        let mut host: Option<Vec<HeaderValue>> = None;
        // The table Kong's rename/append read is a plain table: a host found there is
        // Kong's `headers.host`.
        let lookup = |h: &HeaderMap, host: &Option<Vec<HeaderValue>>, n: &HName| {
            if n.host {
                return host.clone();
            }
            for name in std::iter::once(&n.exact).chain(&n.alt) {
                let values: Vec<HeaderValue> = h.get_all(name).iter().cloned().collect();
                if !values.is_empty() {
                    return Some(values);
                }
            }
            None
        };
        let present = |h: &HeaderMap, host: &Option<Vec<HeaderValue>>, n: &HName| {
            if n.host {
                host.is_some()
            } else {
                h.contains_key(&n.exact) || n.alt.as_ref().is_some_and(|a| h.contains_key(a))
            }
        };
        let set = |h: &mut HeaderMap,
                   host: &mut Option<Vec<HeaderValue>>,
                   n: &HName,
                   v: Vec<HeaderValue>| {
            if n.host {
                *host = Some(v);
                return;
            }
            h.remove(&n.exact);
            for v in v {
                h.append(&n.exact, v);
            }
        };
        for e in &self.headers.remove {
            e.value.render(env, &src)?;
            if !e.name.host {
                h.remove(&e.name.exact);
            }
        }
        for r in &self.header_renames {
            r.value.render(env, &src)?;
            if r.same {
                continue;
            }
            if let Some(v) = lookup(h, &host, &r.old) {
                if r.old.host {
                    host = None;
                } else {
                    h.remove(&r.old.exact);
                }
                set(h, &mut host, &r.new, v);
            }
        }
        for e in &self.headers.replace {
            let v = header_value(e.value.render(env, &src)?)?;
            if e.name.host || present(h, &host, &e.name) {
                set(h, &mut host, &e.name, vec![v]);
            }
        }
        for e in &self.headers.add {
            let v = header_value(e.value.render(env, &src)?)?;
            if !e.name.host && !present(h, &host, &e.name) {
                h.insert(&e.name.exact, v);
            }
        }
        // Every appended value makes the header a list (Kong's `append_value`); a list for
        // Host cannot go upstream.
        let mut host_list = false;
        for e in &self.headers.append {
            let v = header_value(e.value.render(env, &src)?)?;
            if e.name.host {
                host.get_or_insert_with(Vec::new).push(v);
                host_list = true;
            } else if h.contains_key(&e.name.exact) {
                h.append(&e.name.exact, v);
            } else {
                let mut values = lookup(h, &host, &e.name).unwrap_or_default();
                values.push(v);
                set(h, &mut host, &e.name, values);
            }
        }
        let Some(mut host) = host else {
            return Ok(None);
        };
        if host_list || host.len() != 1 {
            return Err("bad value type for upstream_host".into());
        }
        let v = host.remove(0);
        if v.is_empty() {
            // An empty upstream Host is no Host: the service's goes.
            return Ok(None);
        }
        h.insert(header::HOST, v.clone());
        Ok(Some(v))
    }

    fn transform_body(
        &self,
        env: &mut Env,
        captures: Option<&UriCaptures<'_>>,
        req: &mut Request<'_>,
    ) -> Result<(), String> {
        if self.body.is_empty() {
            return Ok(());
        }
        let Some(kind) = body_type(req.headers()) else {
            return Ok(());
        };
        // Read by `access` whenever this step could need it.
        let Some(body) = req.body.clone() else {
            return Ok(());
        };
        let src = source(req, captures);
        let out = match kind {
            BodyType::Form => self.form_body(&body, env, &src)?,
            BodyType::Json => self.json_body(&body, env, &src)?,
            BodyType::Multipart => {
                let ct = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .map_or(&b""[..], |v| v.as_bytes());
                self.multipart_body(&body, ct, env, &src)?
            }
        };
        if let Some(new) = out {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(new.len()));
            *req.body = Some(Bytes::from(new));
        }
        Ok(())
    }

    /// Kong's `transform_url_encoded_body`.
    fn form_body(
        &self,
        body: &[u8],
        env: &mut Env,
        src: &Source<'_>,
    ) -> Result<Option<Vec<u8>>, String> {
        let b = &self.body;
        let filled = !body.is_empty();
        let mut params = Args::decode(body, MAX_ARGS);
        let mut changed = false;
        if filled {
            for e in &b.remove {
                e.value.render(env, src)?;
                params.remove(name(e)?);
                changed = true;
            }
            for e in &b.rename {
                if let Some(new) = e.value.render(env, src)? {
                    changed |= rename_arg(&mut params, e.name.as_deref(), &new);
                }
            }
            for e in &b.replace {
                let v = text(e.value.render(env, src)?);
                if let Some(n) = &e.name
                    && params.get(n).is_some()
                {
                    params.set(n, ArgValue::Text(v));
                    changed = true;
                }
            }
        }
        for e in &b.add {
            let v = text(e.value.render(env, src)?);
            let n = name(e)?;
            if params.get(n).is_none() {
                params.set(n, ArgValue::Text(v));
                changed = true;
            }
        }
        for e in &b.append {
            let v = text(e.value.render(env, src)?);
            append_arg(&mut params, name(e)?, v);
            changed = true;
        }
        if !changed {
            return Ok(None);
        }
        params
            .encode()
            .map(|s| Some(s.into_bytes()))
            .ok_or_else(|| "attempt to use table as query arg value".to_string())
    }

    /// Kong's `transform_multipart_body` (rename before remove; no append).
    fn multipart_body(
        &self,
        body: &[u8],
        content_type: &[u8],
        env: &mut Env,
        src: &Source<'_>,
    ) -> Result<Option<Vec<u8>>, String> {
        let b = &self.body;
        let filled = !body.is_empty();
        let mut parts = Multipart::parse(body, content_type);
        let mut changed = false;
        if filled {
            for e in &b.rename {
                let new = e.value.render(env, src)?.unwrap_or_default();
                let Some(old) = e.name.as_deref() else {
                    continue;
                };
                if let Some(p) = parts.get(old)
                    && old != &new[..]
                {
                    let value = p.value.clone();
                    parts.set_simple(&new, value);
                    parts.delete(old);
                    changed = true;
                }
            }
            for e in &b.remove {
                e.value.render(env, src)?;
                if let Some(n) = &e.name {
                    parts.delete(n);
                }
                changed = true;
            }
            for e in &b.replace {
                let v = text(e.value.render(env, src)?);
                if let Some(n) = &e.name
                    && parts.get(n).is_some()
                {
                    parts.delete(n);
                    parts.set_simple(n, v);
                    changed = true;
                }
            }
        }
        for e in &b.add {
            let v = text(e.value.render(env, src)?);
            if let Some(n) = &e.name
                && parts.get(n).is_none()
            {
                parts.set_simple(n, v);
                changed = true;
            }
        }
        Ok(changed.then(|| parts.to_bytes()))
    }

    /// Kong's `transform_json_body`, on the document as cjson decodes it: a malformed one
    /// is left alone; an empty one is `{}`; keys of an array are dropped when it is written
    /// back; indexing a string, number, boolean or null fails as Lua does.
    fn json_body(
        &self,
        body: &[u8],
        env: &mut Env,
        src: &Source<'_>,
    ) -> Result<Option<Vec<u8>>, String> {
        let b = &self.body;
        let filled = !body.is_empty();
        let mut doc: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) if filled => return Ok(None),
            Err(_) => Value::Object(Map::new()),
        };
        let mut changed = false;
        if filled {
            for e in &b.remove {
                e.value.render(env, src)?;
                json_set(&mut doc, name(e)?, None)?;
                changed = true;
            }
            for e in &b.rename {
                let Some(new) = e.value.render(env, src)? else {
                    continue;
                };
                let Some(old) = e.name.as_deref() else {
                    continue;
                };
                if old == &new[..] {
                    continue;
                }
                if let Some(v) = json_get(&doc, Some(old))?.filter(lua_truthy) {
                    json_set(&mut doc, old, None)?;
                    json_set(&mut doc, &new, Some(v))?;
                    changed = true;
                }
            }
            for e in &b.replace {
                let v = json_text(e.value.render(env, src)?);
                if json_get(&doc, e.name.as_deref())?.is_some_and(|v| lua_truthy(&v)) {
                    json_set(&mut doc, name(e)?, Some(v))?;
                    changed = true;
                }
            }
        }
        for e in &b.add {
            let v = json_text(e.value.render(env, src)?);
            if !json_get(&doc, e.name.as_deref())?.is_some_and(|v| lua_truthy(&v)) {
                json_set(&mut doc, name(e)?, Some(v))?;
                changed = true;
            }
        }
        for e in &b.append {
            let v = json_text(e.value.render(env, src)?);
            let old = json_get(&doc, e.name.as_deref())?;
            json_set(&mut doc, name(e)?, Some(json_append(old, v)))?;
            changed = true;
        }
        if !changed {
            return Ok(None);
        }
        serde_json::to_vec(&doc)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Kong's `transform_querystrings`: from `query_params` as templates loaded them (or
    /// now), set sorted.
    fn transform_query(
        &self,
        env: &mut Env,
        captures: Option<&UriCaptures<'_>>,
        req: &mut Request<'_>,
        bare_mark: bool,
    ) -> Result<(), String> {
        let q = &self.query;
        if q.is_empty() {
            return Ok(());
        }
        let src = source(req, captures);
        let mut args = env.query(&src).clone();
        for e in &q.remove {
            e.value.render(env, &src)?;
            args.remove(name(e)?);
        }
        for e in &q.rename {
            if let Some(new) = e.value.render(env, &src)? {
                rename_arg(&mut args, e.name.as_deref(), &new);
            }
        }
        for e in &q.replace {
            let v = text(e.value.render(env, &src)?);
            if let Some(n) = &e.name
                && args.get(n).is_some()
            {
                args.set(n, ArgValue::Text(v));
            }
        }
        for e in &q.add {
            let v = text(e.value.render(env, &src)?);
            let n = name(e)?;
            if args.get(n).is_none() {
                args.set(n, ArgValue::Text(v));
            }
        }
        for e in &q.append {
            let v = text(e.value.render(env, &src)?);
            append_arg(&mut args, name(e)?, v);
        }
        set_query(req, &args, bare_mark)
    }
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        RequestTransformer::NAME
    }

    fn priority(&self) -> i32 {
        RequestTransformer::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        if req.body.is_none() && self.needs_body(req.headers()) {
            return Flow::ReadBody { limit: BODY_LIMIT };
        }
        match self.execute(ctx, req) {
            Ok(()) => Flow::Continue,
            Err(e) => {
                tracing::error!(
                    request_id = ctx.request_id.as_str(),
                    "[request-transformer] {e}"
                );
                Flow::Respond(respond::error(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "An unexpected error occurred",
                    ctx.request_id.as_str(),
                ))
            }
        }
    }
}

fn source<'a>(req: &'a Request<'_>, captures: Option<&'a UriCaptures<'a>>) -> Source<'a> {
    Source {
        headers: req.headers(),
        query: req.query(),
        captures,
    }
}

/// A rendered value as a header value (nginx refuses control characters).
fn header_value(v: Option<Bytes>) -> Result<HeaderValue, String> {
    HeaderValue::from_maybe_shared(v.unwrap_or_default())
        .map_err(|_| "invalid header value".to_string())
}

fn text(v: Option<Bytes>) -> Vec<u8> {
    v.map(|b| b.to_vec()).unwrap_or_default()
}

fn json_text(v: Option<Bytes>) -> Value {
    Value::String(String::from_utf8_lossy(&v.unwrap_or_default()).into_owned())
}

/// The entry's name as a table key; a nil key is Lua's error.
fn name(e: &Entry) -> Result<&[u8], String> {
    e.name
        .as_deref()
        .ok_or_else(|| "table index is nil".to_string())
}

/// Kong's `rename`: nothing when the names are equal or the old one is absent.
fn rename_arg(args: &mut Args, old: Option<&[u8]>, new: &[u8]) -> bool {
    let Some(old) = old else {
        return false;
    };
    if old == new {
        return false;
    }
    match args.remove(old) {
        Some(v) => {
            args.set(new, v);
            true
        }
        None => false,
    }
}

/// Kong's `append_value`: a string becomes a list of it and the value, a list grows, and
/// anything else (absent, `true`) becomes a list of the value.
fn append_arg(args: &mut Args, name: &[u8], v: Vec<u8>) {
    match args.get_mut(name) {
        Some(ArgValue::List(list)) => list.push(ArgValue::Text(v)),
        Some(slot @ ArgValue::Text(_)) => {
            let old = std::mem::replace(slot, ArgValue::Flag);
            *slot = ArgValue::List(vec![old, ArgValue::Text(v)]);
        }
        Some(slot) => *slot = ArgValue::List(vec![ArgValue::Text(v)]),
        None => args.set(name, ArgValue::List(vec![ArgValue::Text(v)])),
    }
}

/// Sets the query (`kong.service.request.set_query`): sorted, and without a `?` when empty
/// unless the client sent a bare one.
fn set_query(req: &mut Request<'_>, args: &Args, bare_mark: bool) -> Result<(), String> {
    let q = args
        .encode_sorted()
        .ok_or("attempt to use table as query arg value")?;
    let q = match (q.is_empty(), bare_mark) {
        (false, _) => Some(q.as_str()),
        (true, true) => Some(""),
        (true, false) => None,
    };
    req.set_query(q).map_err(|e| e.to_string())
}

/// Lua's truthiness of a decoded JSON value (cjson's `null` is a userdata: true).
fn lua_truthy(v: &Value) -> bool {
    !matches!(v, Value::Bool(false))
}

/// The string library's names: what indexing a Lua string finds.
const LUA_STRING_LIB: [&str; 14] = [
    "byte", "char", "dump", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep",
    "reverse", "sub", "upper",
];

/// `parameters[name]` on what cjson decoded (`None` name: Lua's nil key): `Some(value)`
/// when present (a string finds its library's functions, truthy); indexing a number,
/// boolean or null is an error.
fn json_get(doc: &Value, name: Option<&[u8]>) -> Result<Option<Value>, String> {
    let name = name.and_then(|n| std::str::from_utf8(n).ok());
    match doc {
        Value::Object(m) => Ok(name.and_then(|n| m.get(n)).cloned()),
        Value::Array(_) => Ok(None),
        Value::String(_) => Ok(name
            .filter(|n| LUA_STRING_LIB.contains(n))
            .map(|_| Value::Bool(true))),
        v => Err(format!("attempt to index a {} value", lua_type(v))),
    }
}

/// `parameters[name] = value` (`None`: nil). An array's string keys are not written back;
/// a string, number, boolean or null cannot be assigned to.
fn json_set(doc: &mut Value, name: &[u8], value: Option<Value>) -> Result<(), String> {
    match doc {
        Value::Object(m) => {
            let key = String::from_utf8_lossy(name).into_owned();
            match value {
                Some(v) => {
                    m.insert(key, v);
                }
                None => {
                    m.shift_remove(&key);
                }
            }
            Ok(())
        }
        Value::Array(_) => Ok(()),
        v => Err(format!("attempt to index a {} value", lua_type(v))),
    }
}

fn lua_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "userdata",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) | Value::Object(_) => "table",
    }
}

/// Kong's `append_value` on a decoded JSON value: a string becomes a list of it and the
/// value, a list grows, an object gets the value under its next integer key (an empty one
/// becomes a list), and anything else becomes a list of the value.
fn json_append(old: Option<Value>, v: Value) -> Value {
    match old {
        Some(Value::String(s)) => Value::Array(vec![Value::String(s), v]),
        Some(Value::Array(mut a)) => {
            a.push(v);
            Value::Array(a)
        }
        Some(Value::Object(mut m)) if !m.is_empty() => {
            let key = (1..)
                .map(|i: usize| i.to_string())
                .find(|k| !m.contains_key(k))
                .unwrap_or_default();
            m.insert(key, v);
            Value::Object(m)
        }
        _ => Value::Array(vec![v]),
    }
}

#[cfg(test)]
mod serving_tests {
    use super::*;
    use crate::exchange::RequestId;
    use crate::plugins::schema::parse;

    struct Out {
        /// `Some` when the plugin answered.
        status: Option<u16>,
        head: http::request::Parts,
        body: Option<Bytes>,
        path: Option<String>,
        upstream_host: Option<String>,
        read_body: bool,
    }

    impl Out {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.headers.get(name).map(|v| v.to_str().unwrap())
        }
        fn all(&self, name: &str) -> Vec<&str> {
            self.head
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        }
        fn target(&self) -> String {
            self.head.uri.path_and_query().unwrap().as_str().to_string()
        }
        fn body_text(&self) -> String {
            String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
        }
        fn json(&self) -> Value {
            serde_json::from_slice(self.body.as_deref().unwrap()).unwrap()
        }
    }

    fn handler(yaml: &str) -> Handler {
        Handler::compile(&parse::<Config>(yaml).unwrap()).unwrap()
    }

    fn run_full(
        yaml: &str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        captures: Option<UriCaptures<'static>>,
    ) -> Out {
        let h = handler(yaml);
        let mut b = http::Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut head, ()) = b.body(()).unwrap().into_parts();
        let mut ctx = Ctx::new(
            RequestId::new(),
            "10.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:8000".parse().unwrap(),
            std::time::Instant::now(),
        );
        ctx.uri_captures = captures;
        let mut req_body = None;
        let mut path = None;
        let mut read_body = false;
        let status = loop {
            let mut req = Request::new(&mut head, &mut req_body, &mut path);
            match h.access(&mut ctx, &mut req) {
                Flow::Continue => break None,
                Flow::Respond(r) => break Some(r.status().as_u16()),
                Flow::ReadBody { limit } => {
                    assert_eq!(limit, BODY_LIMIT);
                    assert!(!read_body, "asked for the body twice");
                    read_body = true;
                    req_body = Some(Bytes::copy_from_slice(body));
                }
                Flow::Wait(_) => panic!("request-transformer does not wait"),
            }
        };
        Out {
            status,
            head,
            body: req_body,
            path,
            upstream_host: ctx.upstream_host.map(|v| v.to_str().unwrap().to_string()),
            read_body,
        }
    }

    fn run(yaml: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Out {
        run_full(yaml, method, target, headers, body, None)
    }

    fn get(yaml: &str, target: &str, headers: &[(&str, &str)]) -> Out {
        run(yaml, "GET", target, headers, b"")
    }

    #[test]
    fn headers_remove_rename_replace_add_append() {
        let cfg = "remove: {headers: [x-to-remove, X-Other]}\n\
                   rename: {headers: ['x-old:x-new']}\n\
                   replace: {headers: ['x-tier:gold', 'x-absent:never']}\n\
                   add: {headers: ['x-added:a1', 'x-present:from-plugin', 'h2:value:2']}\n\
                   append: {headers: ['x-trace:t1', 'x-multi:m2', 'x-multi:m3']}";
        let out = get(
            cfg,
            "/",
            &[
                ("X-To-Remove", "secret"),
                ("x-other", "2"),
                ("x-kept", "1"),
                ("X-Old", "v1"),
                ("x-tier", "bronze"),
                ("x-present", "from-client"),
                ("x-multi", "m1"),
            ],
        );
        assert_eq!(out.status, None);
        assert!(!out.read_body, "no body step: the body is not read");
        assert_eq!(out.header("x-to-remove"), None);
        assert_eq!(out.header("x-other"), None);
        assert_eq!(out.header("x-kept"), Some("1"));
        assert_eq!(out.header("x-old"), None);
        assert_eq!(out.header("x-new"), Some("v1"));
        assert_eq!(out.header("x-tier"), Some("gold"));
        assert_eq!(out.header("x-absent"), None);
        assert_eq!(out.header("x-added"), Some("a1"));
        assert_eq!(out.header("x-present"), Some("from-client"));
        assert_eq!(out.header("h2"), Some("value:2"));
        assert_eq!(out.all("x-trace"), ["t1"]);
        assert_eq!(out.all("x-multi"), ["m1", "m2", "m3"]);
        assert_eq!(out.upstream_host, None);
        // Nothing configured for the query or the body: both untouched.
        assert_eq!(out.target(), "/");
        assert_eq!(out.body, None);
    }

    #[test]
    fn header_steps_run_in_kong_order() {
        // rename, then replace sees the renamed header; add sees the old name gone.
        let cfg = "rename: {headers: ['x-a:x-b']}\nreplace: {headers: ['x-b:replaced']}\n\
                   add: {headers: ['x-a:added']}\nremove: {headers: [x-c]}";
        let out = get(cfg, "/", &[("X-A", "orig"), ("X-C", "gone")]);
        assert_eq!(out.header("x-b"), Some("replaced"));
        assert_eq!(out.header("x-a"), Some("added"));
        assert_eq!(out.header("x-c"), None);
        // A renamed header replaces the target's value; renaming to the same name keeps it.
        let cfg = "rename: {headers: ['x-to-rename:x-is-renamed', 'same:same', 'Case:case']}";
        let out = get(
            cfg,
            "/",
            &[
                ("x-to-rename", "new"),
                ("X-Is-Renamed", "old"),
                ("same", "1"),
                ("case", "2"),
            ],
        );
        assert_eq!(out.all("x-is-renamed"), ["new"]);
        assert_eq!(out.header("x-to-rename"), None);
        assert_eq!(out.header("same"), Some("1"));
        assert_eq!(out.header("case"), Some("2"));
        // Remove, then add: the header comes back with the configured value.
        let cfg =
            "remove: {headers: [Authorization]}\nadd: {headers: ['Authorization:Basic test']}";
        for h in [&[("authorization", "Basic dGVzdDp0ZXN0")][..], &[]] {
            assert_eq!(get(cfg, "/", h).header("authorization"), Some("Basic test"));
        }
        // Appending to an added header, whatever the case.
        let cfg = "add: {headers: ['X-aDDed:a1']}\nappend: {headers: ['X-aDDed:a2', 'x-added:a3']}";
        assert_eq!(get(cfg, "/", &[]).all("x-added"), ["a1", "a2", "a3"]);
        // A name with `_` finds the header with `-`, and sets the name as configured.
        let cfg = "replace: {headers: ['x_foo:new']}";
        let out = get(cfg, "/", &[("x-foo", "old")]);
        assert_eq!(out.header("x-foo"), Some("old"));
        assert_eq!(out.header("x_foo"), Some("new"));
    }

    #[test]
    fn host_is_set_only_by_replace_or_rename() {
        // add never changes Host.
        let out = get(
            "add: {headers: ['host:mark']}",
            "/",
            &[("host", "client.test")],
        );
        assert_eq!(out.header("host"), Some("client.test"));
        assert_eq!(out.upstream_host, None);
        // remove does not see it.
        let out = get("remove: {headers: [host]}", "/", &[("host", "client.test")]);
        assert_eq!(out.header("host"), Some("client.test"));
        // replace sets it (present or not), and the upstream gets it.
        let out = get("replace: {headers: ['Host:backend.internal']}", "/", &[]);
        assert_eq!(out.header("host"), Some("backend.internal"));
        assert_eq!(out.upstream_host.as_deref(), Some("backend.internal"));
        let out = get(
            "rename: {headers: ['x-host:host']}",
            "/",
            &[("x-host", "h.test")],
        );
        assert_eq!(out.upstream_host.as_deref(), Some("h.test"));
        assert_eq!(out.header("x-host"), None);
        // A list for Host cannot go upstream: Kong fails the request.
        let out = get(
            "append: {headers: ['host:h2']}",
            "/",
            &[("host", "client.test")],
        );
        assert_eq!(out.status, Some(500));
    }

    #[test]
    fn query_steps_set_a_sorted_query() {
        let cfg = "remove: {querystring: [drop]}\nrename: {querystring: ['old:new']}\n\
                   replace: {querystring: ['r:1', 'absent:x']}\n\
                   add: {querystring: ['q1:added', 'keep:plugin', 'p1:anything:1']}\n\
                   append: {querystring: ['p1:a2', 'p2:b1', 'flag:v']}";
        let out = get(cfg, "/rq?zz=1&drop=1&keep=client&old=o&r=0&flag", &[]);
        assert_eq!(
            out.target(),
            "/rq?flag=v&keep=client&new=o&p1=anything%3A1&p1=a2&p2=b1&q1=added&r=1&zz=1"
        );
        // Kong's spec: brackets and other reserved characters are escaped.
        let cfg = "add: {querystring: ['uri_param2[some_index][1]:a b/c']}";
        assert_eq!(
            get(cfg, "/p?q1=20", &[]).target(),
            "/p?q1=20&uri_param2%5Bsome_index%5D%5B1%5D=a%20b%2Fc"
        );
        // Without query steps the query travels byte for byte.
        let out = get("add: {headers: ['x:1']}", "/p?b=2&a=1&$&+,/:;@", &[]);
        assert_eq!(out.target(), "/p?b=2&a=1&$&+,/:;@");
        // Emptied: no `?`, unless the client sent a bare one.
        assert_eq!(
            get("remove: {querystring: [a]}", "/p?a=1", &[]).target(),
            "/p"
        );
        assert_eq!(
            get("remove: {querystring: [a]}", "/p?", &[]).target(),
            "/p?"
        );
        // A remove entry that is no name fails as Kong's nil key does.
        assert_eq!(
            get("remove: {querystring: [':x']}", "/p?a=1", &[]).status,
            Some(500)
        );
    }

    #[test]
    fn json_body() {
        let cfg = "add: {body: ['added:yes', 'count:from-plugin']}\nremove: {body: [secret]}\n\
                   replace: {body: ['mode:live', 'absent:never']}\n\
                   rename: {body: ['old:new']}\nappend: {body: ['tags:b', 'list:x', 's:2']}";
        let body = br#"{"count":7,"secret":"s","mode":"test","nested":{"a":1},"old":"o","tags":["a"],"s":"1","e":[]}"#;
        let out = run(
            cfg,
            "POST",
            "/",
            &[("content-type", "application/json")],
            body,
        );
        assert!(out.read_body);
        assert_eq!(
            out.json(),
            serde_json::json!({"count": 7, "mode": "live", "nested": {"a": 1}, "new": "o",
                "tags": ["a", "b"], "s": ["1", "2"], "e": [], "added": "yes", "list": ["x"]})
        );
        assert_eq!(
            out.header("content-length"),
            Some(out.body.as_ref().unwrap().len().to_string().as_str())
        );
        // Malformed: left alone. Empty: `{}` with what add and append put in.
        let out = run(
            cfg,
            "POST",
            "/",
            &[("content-type", "application/json")],
            b"not json",
        );
        assert_eq!(out.body_text(), "not json");
        assert_eq!(out.header("content-length"), None);
        let out = run(
            cfg,
            "POST",
            "/",
            &[("content-type", "application/json; charset=utf-8")],
            b"",
        );
        assert_eq!(
            out.json(),
            serde_json::json!({"added": "yes", "count": "from-plugin", "tags": ["b"], "list": ["x"], "s": ["2"]})
        );
        // Only remove on an empty body: nothing changes.
        let out = run(
            "remove: {body: [x]}",
            "POST",
            "/",
            &[("content-type", "application/json")],
            b"",
        );
        assert_eq!(out.body_text(), "");
        // Lua's truthiness: false counts as absent, null as present.
        let out = run(
            "add: {body: ['f:added', 'n:added']}\nreplace: {body: ['f:r', 'n:r']}",
            "POST",
            "/",
            &[("content-type", "application/json")],
            br#"{"f":false,"n":null}"#,
        );
        assert_eq!(out.json(), serde_json::json!({"f": "added", "n": "r"}));
        // A top-level array keeps its elements; a scalar cannot be indexed.
        let out = run(
            "add: {body: ['a:1']}",
            "POST",
            "/",
            &[("content-type", "application/json")],
            b"[1, 2]",
        );
        assert_eq!(out.body_text(), "[1,2]");
        let out = run(
            "add: {body: ['a:1']}",
            "POST",
            "/",
            &[("content-type", "application/json")],
            b"42",
        );
        assert_eq!(out.status, Some(500));
    }

    #[test]
    fn form_body() {
        let cfg = "add: {body: ['added:1', 'user:never']}\nremove: {body: [pw]}\n\
                   rename: {body: ['old:new']}\nreplace: {body: ['mode:live']}\n\
                   append: {body: ['p1:v1', 'p1:v2', 'p2:value:1']}";
        let ct = [("content-type", "application/x-www-form-urlencoded")];
        let out = run(
            cfg,
            "POST",
            "/",
            &ct,
            b"user=u1&pw=hunter2&old=a+b&mode=test&p1=v0",
        );
        assert_eq!(
            out.body_text(),
            "user=u1&mode=live&p1=v0&p1=v1&p1=v2&new=a%20b&added=1&p2=value%3A1"
        );
        assert_eq!(out.header("content-length"), Some("66"));
        // An empty body gets what add and append put in.
        let out = run(cfg, "POST", "/", &ct, b"");
        assert_eq!(
            out.body_text(),
            "added=1&user=never&p1=v1&p1=v2&p2=value%3A1"
        );
        // Any remove rewrites the body (Kong sets `removed` whatever was there), the same.
        let out = run("remove: {body: [x]}", "POST", "/", &ct, b"a=1&b");
        assert_eq!(out.header("content-length"), Some("5"));
        assert_eq!(out.body_text(), "a=1&b");
        // Replace of an absent field: not rewritten.
        let out = run("replace: {body: ['x:1']}", "POST", "/", &ct, b"a=%41");
        assert_eq!(out.header("content-length"), None);
        assert_eq!(out.body_text(), "a=%41");
        // Not a kind of body Kong transforms: not even read.
        let out = run(cfg, "POST", "/", &[("content-type", "text/plain")], b"x");
        assert!(!out.read_body);
    }

    #[test]
    fn multipart_body() {
        let cfg = "add: {body: ['p1:v1', 'hello:never']}\nremove: {body: [toremove]}\n\
                   rename: {body: ['old:renamed']}\nreplace: {body: ['mode:live']}\n\
                   append: {body: ['hello:ignored']}";
        let ct = [("content-type", "multipart/form-data; boundary=XX")];
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"hello\"\r\n\r\nworld\r\n\
--XX\r\nContent-Disposition: form-data; name=\"toremove\"\r\n\r\nyes\r\n\
--XX\r\nContent-Disposition: form-data; name=\"old\"\r\n\r\no\r\n\
--XX\r\nContent-Disposition: form-data; name=\"mode\"\r\n\r\ntest\r\n\
--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XX--\r\n";
        let out = run(cfg, "POST", "/", &ct, body);
        let parts = Multipart::parse(
            out.body.as_deref().unwrap(),
            b"multipart/form-data; boundary=XX",
        );
        let value = |n: &str| {
            parts
                .get(n.as_bytes())
                .map(|p| String::from_utf8(p.value.clone()).unwrap())
        };
        assert_eq!(value("hello").as_deref(), Some("world"));
        assert_eq!(value("toremove"), None);
        assert_eq!(value("old"), None);
        assert_eq!(value("renamed").as_deref(), Some("o"));
        assert_eq!(value("mode").as_deref(), Some("live"));
        assert_eq!(value("p1").as_deref(), Some("v1"));
        assert_eq!(value("file").as_deref(), Some("line1\r\nline2"));
        assert_eq!(
            parts.get(b"file").unwrap().headers,
            [
                b"Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"".to_vec(),
                b"Content-Type: text/plain".to_vec()
            ]
        );
        assert_eq!(
            out.header("content-length"),
            Some(out.body.as_ref().unwrap().len().to_string().as_str())
        );
        // An empty multipart body gets the added fields.
        let out = run("add: {body: ['p1:v1']}", "POST", "/", &ct, b"");
        assert_eq!(
            out.body_text(),
            "--XX\r\nContent-Disposition: form-data; name=\"p1\"\r\n\r\nv1\r\n--XX--\r\n"
        );
    }

    #[test]
    fn http_method() {
        let out = get("http_method: POST", "/r?hello=world&name=marco", &[]);
        assert_eq!(out.head.method, Method::POST);
        assert_eq!(out.target(), "/r?hello=world&name=marco");
        assert!(!out.read_body);
        // To GET: a form body's parameters join the query (which is set sorted).
        let out = run(
            "http_method: GET",
            "POST",
            "/r?hello=world&z=1",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"name=marco&z=2",
        );
        assert_eq!(out.head.method, Method::GET);
        assert_eq!(out.target(), "/r?hello=world&name=marco&z=1&z=2");
        assert_eq!(out.body_text(), "name=marco&z=2");
        // A method Kong's set_method refuses fails every request.
        assert_eq!(get("http_method: FETCH", "/", &[]).status, Some(500));
        // To POST with a JSON body added (the header step makes the body JSON).
        let out = get(
            "http_method: POST\nadd: {headers: ['Content-Type:application/json'], body: ['body:somecontent']}",
            "/r",
            &[],
        );
        assert_eq!(out.head.method, Method::POST);
        assert_eq!(out.json(), serde_json::json!({"body": "somecontent"}));
    }

    fn captures() -> UriCaptures<'static> {
        // `~/requests/user1/(?<user1>\w+)/user2/(?<user2>\S+)` on /requests/user1/foo/user2/bar
        UriCaptures {
            text: "/requests/user1/foo/user2/bar".into(),
            groups: vec![Some((0, 29)), Some((16, 19)), Some((26, 29))],
            names: vec![("user1", 1), ("user2", 2)],
        }
    }

    #[test]
    fn uri_and_templates() {
        let out = run_full(
            "replace: {uri: '/requests/user2/$(uri_captures.user2)/user1/$(uri_captures[1])'}",
            "GET",
            "/requests/user1/foo/user2/bar?q=1",
            &[],
            b"",
            Some(captures()),
        );
        assert_eq!(out.path.as_deref(), Some("/requests/user2/bar/user1/foo"));
        assert_eq!(out.target(), "/requests/user1/foo/user2/bar?q=1");
        // Kong's spec: captures, the Host header and the query feed other values; a
        // removed query argument and a removed or replaced header still read as they were.
        let cfg = "add: {querystring: ['uri_param1:$(uri_captures.user1)', 'uri_param2:$(headers.host)', \
                   'q3:$(headers[\"x-remove-header\"])'], headers: ['x-test-header:$(query_params.q1)', \
                   'x-old:$(headers[\"x-replace-header\"])']}\n\
                   remove: {querystring: [q1], headers: [x-remove-header]}\n\
                   replace: {headers: ['x-replace-header:the new value']}";
        let out = run_full(
            cfg,
            "GET",
            "/requests/user1/foo/user2/bar?q1=20",
            &[
                ("host", "test15.test"),
                ("x-remove-header", "its a test"),
                ("x-replace-header", "the old value"),
            ],
            b"",
            Some(captures()),
        );
        assert_eq!(
            out.target(),
            "/requests/user1/foo/user2/bar?q3=its%20a%20test&uri_param1=foo&uri_param2=test15.test"
        );
        assert_eq!(out.header("x-test-header"), Some("20"));
        assert_eq!(out.header("x-old"), Some("the old value"));
        assert_eq!(out.header("x-replace-header"), Some("the new value"));
        assert_eq!(out.header("x-remove-header"), None);
        // No captures: the `or` default.
        let out = get(
            "add: {querystring: [\"uri_param1:$(uri_captures.user1 or 'default1')\"]}",
            "/requests/?q1=20",
            &[],
        );
        assert_eq!(out.target(), "/requests/?q1=20&uri_param1=default1");
        // Run-time errors fail the request, as Kong's do (500).
        for cfg in [
            "replace: {uri: '/requests/user2/$(10 * uri_captures.user1)'}",
            "add: {querystring: ['q1:$(ERROR())']}",
            "replace: {uri: 'no-slash'}",
        ] {
            let out = run_full(
                cfg,
                "GET",
                "/requests/user1/foo/user2/bar",
                &[],
                b"",
                Some(captures()),
            );
            assert_eq!(out.status, Some(500), "{cfg}");
        }
        // An escaped template renders its text.
        let out = get(
            "add: {querystring: [\"q1:$('$(uri_captures.user1)')\"]}",
            "/",
            &[],
        );
        assert_eq!(out.target(), "/?q1=%24(uri_captures.user1)");
        // Body values from templates.
        let out = run(
            "add: {body: ['who:$(headers[\"x-user\"])']}",
            "POST",
            "/",
            &[("content-type", "application/json"), ("x-user", "ann")],
            b"{}",
        );
        assert_eq!(out.json(), serde_json::json!({"who": "ann"}));
    }

    #[test]
    fn templates_switchyard_does_not_evaluate_leave_the_plugin_unbuilt() {
        for cfg in [
            "add: {querystring: ['shared_param1:$(shared.my_version)']}",
            "add: {headers: ['X-Write-Attempt:$(shared.written = true)']}",
            "add: {headers: [\"x:$(string.format('%s', headers.host))\"]}",
            "replace: {uri: '/$(ngx.var.uri)'}",
        ] {
            let c = parse::<Config>(cfg).unwrap();
            assert!(Handler::compile(&c).is_err(), "{cfg}");
        }
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
