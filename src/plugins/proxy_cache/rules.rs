//! The pure parts of `proxy-cache`, as Kong 3.x computes them: Cache-Control directives
//! (`kong.tools.http.parse_directive_header`), a resource's TTL (`calculate_resource_ttl`),
//! media types (`kong.tools.mime_type.parse_mime_type`) and the cache key
//! (`kong/plugins/proxy-cache/cache_key.lua`). Nothing here knows about the store or the
//! pipeline, so each rule is tested on its own.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, EXPIRES};

/// A directive's value: Kong keeps a number when the token reads as one, else the text,
/// and `true` for a directive without `=value`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Flag,
    Num(f64),
    Text(String),
}

/// Parsed Cache-Control directives, by lower-cased name (the last one of a name wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives(Vec<(String, Value)>);

impl Directives {
    /// Every `Cache-Control` header of `headers`, joined with ", " as Kong joins a
    /// repeated header before parsing it.
    pub fn of(headers: &HeaderMap) -> Directives {
        let mut joined = String::new();
        for v in headers.get_all(CACHE_CONTROL) {
            if !joined.is_empty() {
                joined.push_str(", ");
            }
            joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        Directives::parse(&joined)
    }

    /// Kong's parse: split on commas; each piece is `^\s*([^=]+)(?:=(.+))?`. The name keeps
    /// any space before `=` (Kong does not trim it) and is lower-cased; the value is a
    /// number when Lua's `tonumber` would read one.
    pub fn parse(header: &str) -> Directives {
        let mut out: Vec<(String, Value)> = Vec::new();
        for piece in header.split(',').filter(|p| !p.is_empty()) {
            let piece = piece.trim_start();
            let (name, value) = match piece.split_once('=') {
                Some((n, v)) => (n, (!v.is_empty()).then_some(v)),
                None => (piece, None),
            };
            // Kong's pattern needs at least one character before `=`.
            if name.is_empty() {
                continue;
            }
            let value = match value {
                None => Value::Flag,
                Some(v) => lua_number(v).map_or_else(|| Value::Text(v.to_string()), Value::Num),
            };
            let name = name.to_ascii_lowercase();
            out.retain(|(n, _)| *n != name);
            out.push((name, value));
        }
        Directives(out)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The directive is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The directive's numeric value. Kong compares these with numbers, which fails on a
    /// text or flag value; such a directive is taken as absent here.
    pub fn num(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }
}

/// Lua's `tonumber` on a directive value, for the decimal forms HTTP headers carry
/// (surrounding spaces allowed; no `inf`/`nan`, which Lua does not read either).
fn lua_number(v: &str) -> Option<f64> {
    let t = v.trim();
    let numeric = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if numeric { t.parse().ok() } else { None }
}

/// Kong's `calculate_resource_ttl`: `s-maxage`, else `max-age`, else `Expires` minus now;
/// never below 0. A directive present with a value that is not a number counts as 0 (Kong
/// fails comparing it, and caches nothing).
pub fn resource_ttl(cc: &Directives, headers: &HeaderMap, now: SystemTime) -> f64 {
    let max_age = cc.get("s-maxage").or_else(|| cc.get("max-age"));
    let ttl = match max_age {
        Some(Value::Num(n)) => *n,
        Some(_) => 0.0,
        None => {
            // The last Expires header, as Kong takes the last of a repeated one.
            let expires = headers.get_all(EXPIRES).iter().next_back();
            match expires
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
            {
                Some(at) => whole_secs(at) - whole_secs(now),
                None => 0.0,
            }
        }
    };
    ttl.max(0.0)
}

/// Seconds since the epoch, floored (Kong's `ngx.time()` and `ngx.parse_http_time`).
fn whole_secs(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as f64,
        Err(e) => -(e.duration().as_secs() as f64),
    }
}

/// A media type as Kong's `parse_mime_type` reads it: type and subtype lower-cased,
/// parameter names lower-cased, values as written (quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mime {
    pub kind: String,
    pub subtype: String,
    pub params: BTreeMap<String, String>,
}

/// RFC 2045 token characters: US-ASCII without controls, space or separators.
fn is_token(b: u8) -> bool {
    b.is_ascii() && !b.is_ascii_control() && !b"()<>@,;:\\\"/[]?={} \t".contains(&b)
}

fn token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|b| !is_token(b)).unwrap_or(s.len());
    s.split_at(end)
}

/// `type "/" subtype *(spaces ";" spaces attribute "=" value)` and nothing after (no
/// trailing space or `;`), or a lone `*` (`*/*`). `None` where Kong's grammar fails.
pub fn parse_mime(s: &str) -> Option<Mime> {
    let (kind, rest) = token(s);
    if kind.is_empty() {
        return None;
    }
    let (kind, subtype, mut rest) = match rest.strip_prefix('/') {
        Some(r) => {
            let (sub, r) = token(r);
            if sub.is_empty() {
                return None;
            }
            (kind.to_ascii_lowercase(), sub.to_ascii_lowercase(), r)
        }
        // A lone `*` only (a `*` is a token character, so `kind` is the whole token).
        None if kind == "*" => ("*".to_string(), "*".to_string(), rest),
        None => return None,
    };
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let r = rest.trim_start_matches([' ', '\t']);
        let r = r.strip_prefix(';')?.trim_start_matches([' ', '\t']);
        let (name, r) = token(r);
        if name.is_empty() {
            return None;
        }
        let r = r.strip_prefix('=')?;
        let (value, r) = if let Some(q) = r.strip_prefix('"') {
            quoted(q)?
        } else {
            let (v, r) = token(r);
            if v.is_empty() {
                return None;
            }
            (v.to_string(), r)
        };
        params.insert(name.to_ascii_lowercase(), value);
        rest = r;
    }
    Some(Mime {
        kind,
        subtype,
        params,
    })
}

/// The inside of a quoted string (after its opening quote): its text as written (Kong
/// keeps quoted pairs as they are) and what follows the closing quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((s[..i].to_string(), &s[i + 1..])),
            b'\\' if i + 1 < bytes.len() && bytes[i + 1].is_ascii() => i += 2,
            b if b.is_ascii_control() => return None,
            _ => i += 1,
        }
    }
    None
}

/// Kong's content-type rule for cacheable responses: the response's type matches one of
/// `allowed` when type and subtype are equal (or `*` in the allowed one) and the parameters
/// are exactly the same set with the same values. An unparsable allowed entry matches
/// nothing; an unparsable response type is never cacheable.
pub fn content_type_allowed(content_type: &str, allowed: &[String]) -> bool {
    let Some(actual) = parse_mime(content_type) else {
        return false;
    };
    allowed.iter().filter_map(|a| parse_mime(a)).any(|exp| {
        (exp.kind == "*" || exp.kind == actual.kind)
            && (exp.subtype == "*" || exp.subtype == actual.subtype)
            && exp.params == actual.params
    })
}

/// What a cache key is made from.
pub struct KeyParts<'a> {
    pub consumer: Option<&'a str>,
    pub route: Option<&'a str>,
    pub method: &'a str,
    /// The request line with everything from its `?` removed (Kong's `$request` through
    /// `gsub("\?.*", "")`): `GET /p HTTP/1.1` without a query, `GET /p` with one.
    pub uri: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Kong's request-line part of the key: `$request` cut at its first `?`.
pub fn request_line_uri(method: &str, path: &str, query: Option<&str>, version: &str) -> String {
    let mut out = String::with_capacity(method.len() + path.len() + version.len() + 2);
    out.push_str(method);
    out.push(' ');
    out.push_str(path);
    if query.is_none() {
        out.push(' ');
        out.push_str(version);
    }
    out
}

/// Kong's `build_cache_key`: sha256 of `prefix|method|uri|params|headers`.
pub fn cache_key(
    parts: &KeyParts<'_>,
    vary_query: Option<&[String]>,
    vary_headers: Option<&[String]>,
) -> [u8; 32] {
    let params = params_key(parts.query, vary_query);
    let headers = headers_key(parts.headers, vary_headers);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    match (parts.consumer, parts.route) {
        (Some(c), Some(r)) => {
            ctx.update(c.as_bytes());
            ctx.update(b":");
            ctx.update(r.as_bytes());
        }
        (_, Some(r)) => ctx.update(r.as_bytes()),
        _ => ctx.update(b"default"),
    }
    for piece in [parts.method, parts.uri, &params, &headers] {
        ctx.update(b"|");
        ctx.update(piece.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The key in lowercase hex, as Kong prints it (`X-Cache-Key`).
pub fn hex(key: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in key {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A query argument as `ngx.req.get_uri_args` gives it: `true` for a bare name, the
/// decoded text otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Arg {
    Flag,
    Text(String),
}

/// The query's arguments by decoded name, each with its values in order.
fn query_args(query: Option<&str>) -> BTreeMap<String, Vec<Arg>> {
    let mut args: BTreeMap<String, Vec<Arg>> = BTreeMap::new();
    for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, arg) = match piece.split_once('=') {
            Some((n, v)) => (decode(n), Arg::Text(decode(v))),
            None => (decode(piece), Arg::Flag),
        };
        // ngx drops arguments without a name.
        if !name.is_empty() {
            args.entry(name).or_default().push(arg);
        }
    }
    args
}

/// `application/x-www-form-urlencoded` decoding of one name or value (`+` is a space).
fn decode(s: &str) -> String {
    form_urlencoded::parse(s.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// Kong's `generate_key_from`: for each field present, `field` (a bare flag),
/// `field=value`, or `field=v1,v2` (several values, sorted); joined with `:`.
fn key_from<'f>(fields: impl Iterator<Item = &'f str>, get: impl Fn(&str) -> Vec<Arg>) -> String {
    let mut out: Vec<String> = Vec::new();
    for field in fields {
        let mut values = get(field);
        match values.len() {
            0 => {}
            1 => match &values[0] {
                Arg::Flag => out.push(field.to_string()),
                Arg::Text(v) => out.push(format!("{field}={v}")),
            },
            _ => {
                // Lua cannot sort a table mixing `true` and strings (it errors); a flag
                // among several values is taken as an empty value instead.
                values.sort();
                let joined: Vec<&str> = values
                    .iter()
                    .map(|v| match v {
                        Arg::Flag => "",
                        Arg::Text(t) => t.as_str(),
                    })
                    .collect();
                out.push(format!("{field}={}", joined.join(",")));
            }
        }
    }
    out.join(":")
}

/// Kong's `params_key`: the configured `vary_query_params`, or every argument (by name,
/// sorted) when none is configured.
fn params_key(query: Option<&str>, vary: Option<&[String]>) -> String {
    let args = query_args(query);
    let get = |f: &str| args.get(f).cloned().unwrap_or_default();
    match vary {
        Some(v) if !v.is_empty() => key_from(v.iter().map(String::as_str), get),
        _ => key_from(args.keys().map(String::as_str), get),
    }
}

/// Kong's `headers_key`: the configured `vary_headers` (found case-insensitively, named
/// as configured), or nothing.
fn headers_key(headers: &HeaderMap, vary: Option<&[String]>) -> String {
    let Some(vary) = vary.filter(|v| !v.is_empty()) else {
        return String::new();
    };
    let get = |f: &str| {
        headers
            .get_all(f)
            .iter()
            .map(|v| Arg::Text(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect()
    };
    key_from(vary.iter().map(String::as_str), get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    #[test]
    fn directives() {
        let d = Directives::parse("no-cache, Max-Age=60, private=\"x\", s-maxage=abc");
        assert_eq!(d.get("no-cache"), Some(&Value::Flag));
        assert_eq!(d.num("max-age"), Some(60.0));
        assert_eq!(d.get("private"), Some(&Value::Text("\"x\"".into())));
        assert_eq!(d.num("s-maxage"), None);
        assert!(d.has("s-maxage") && !d.has("no-store"));
        // The last of a name wins; an empty value is a flag; a piece without a name is
        // skipped; a space before `=` stays in the name, as in Kong.
        let d = Directives::parse("max-age=1,max-age=2,min-fresh=,=5, max-stale =3");
        assert_eq!(d.num("max-age"), Some(2.0));
        assert_eq!(d.get("min-fresh"), Some(&Value::Flag));
        assert!(!d.has("max-stale") && d.has("max-stale "));
        assert_eq!(Directives::parse("max-age= 7 ").num("max-age"), Some(7.0));
        assert_eq!(Directives::parse("max-age=1.5").num("max-age"), Some(1.5));
        assert_eq!(Directives::parse(""), Directives::default());
    }

    #[test]
    fn directives_from_repeated_headers() {
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, HeaderValue::from_static("public"));
        h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        let d = Directives::of(&h);
        assert!(d.has("public"));
        assert_eq!(d.num("max-age"), Some(5.0));
    }

    #[test]
    fn resource_ttls() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let none = HeaderMap::new();
        let ttl = |cc: &str, h: &HeaderMap| resource_ttl(&Directives::parse(cc), h, now);
        assert_eq!(ttl("max-age=30", &none), 30.0);
        assert_eq!(ttl("max-age=30, s-maxage=10", &none), 10.0);
        assert_eq!(ttl("max-age=-5", &none), 0.0);
        assert_eq!(ttl("max-age=abc", &none), 0.0);
        assert_eq!(ttl("public", &none), 0.0);
        let mut h = HeaderMap::new();
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        h.insert(EXPIRES, HeaderValue::from_str(&later).unwrap());
        assert_eq!(ttl("public", &h), 120.0);
        // max-age wins over Expires; a past or broken Expires gives 0.
        assert_eq!(ttl("max-age=3", &h), 3.0);
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(120));
        h.insert(EXPIRES, HeaderValue::from_str(&earlier).unwrap());
        assert_eq!(ttl("", &h), 0.0);
        h.insert(EXPIRES, HeaderValue::from_static("0"));
        assert_eq!(ttl("", &h), 0.0);
    }

    #[test]
    fn mime_types() {
        let m = parse_mime("Application/JSON; Charset=utf-8;q=\"1\"").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.subtype.as_str()),
            ("application", "json")
        );
        assert_eq!(m.params["charset"], "utf-8");
        assert_eq!(m.params["q"], "1");
        let star = parse_mime("*").unwrap();
        assert_eq!((star.kind.as_str(), star.subtype.as_str()), ("*", "*"));
        for bad in [
            "",
            "application",
            "application/",
            "application/xml;",
            "text/plain ",
            "a/b; c",
            "a/b; c=\"x",
        ] {
            assert_eq!(parse_mime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_types() {
        let defaults = ["text/plain".to_string(), "application/json".to_string()];
        assert!(content_type_allowed("application/json", &defaults));
        assert!(content_type_allowed("TEXT/Plain", &defaults));
        assert!(!content_type_allowed("text/html", &defaults));
        // Kong matches parameters exactly: a charset the config does not name fails.
        assert!(!content_type_allowed(
            "application/json; charset=utf-8",
            &defaults
        ));
        let with_charset = ["application/json; charset=utf-8".to_string()];
        assert!(content_type_allowed(
            "application/json;charset=utf-8",
            &with_charset
        ));
        assert!(!content_type_allowed("application/json", &with_charset));
        assert!(!content_type_allowed(
            "application/json; charset=UTF-8",
            &with_charset
        ));
        let any = ["*/*".to_string()];
        assert!(content_type_allowed("application/xml", &any));
        assert!(!content_type_allowed("application/xml;", &any));
        assert!(content_type_allowed(
            "image/png",
            &["image/*".to_string(), "bad entry;".to_string()]
        ));
    }

    fn key(query: Option<&str>, headers: &HeaderMap, vq: Option<&[String]>) -> String {
        let parts = KeyParts {
            consumer: None,
            route: Some("r1"),
            method: "GET",
            uri: "GET /p",
            query,
            headers,
        };
        hex(&cache_key(&parts, vq, None))
    }

    fn sha(text: &str) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        hex(d.as_ref().try_into().unwrap())
    }

    #[test]
    fn key_is_kongs_sha256() {
        let h = HeaderMap::new();
        let parts = KeyParts {
            consumer: None,
            route: Some("r1"),
            method: "GET",
            uri: "GET /p HTTP/1.1",
            query: None,
            headers: &h,
        };
        assert_eq!(
            hex(&cache_key(&parts, None, None)),
            sha("r1|GET|GET /p HTTP/1.1||")
        );
        let authed = KeyParts {
            consumer: Some("c1"),
            ..parts
        };
        assert_eq!(
            hex(&cache_key(&authed, None, None)),
            sha("c1:r1|GET|GET /p HTTP/1.1||")
        );
        let global = KeyParts {
            route: None,
            consumer: Some("c1"),
            ..authed
        };
        assert_eq!(
            hex(&cache_key(&global, None, None)),
            sha("default|GET|GET /p HTTP/1.1||")
        );
        assert_eq!(
            request_line_uri("GET", "/p", Some("a=1"), "HTTP/1.1"),
            "GET /p"
        );
        assert_eq!(
            request_line_uri("GET", "/p", None, "HTTP/1.0"),
            "GET /p HTTP/1.0"
        );
    }

    #[test]
    fn query_part_of_key() {
        let h = HeaderMap::new();
        // Every argument, sorted by name, when vary_query_params is not set.
        assert_eq!(
            key(Some("b=c&a=b"), &h, None),
            sha("r1|GET|GET /p|a=b:b=c|")
        );
        assert_eq!(
            key(Some("a=b&b=c"), &h, None),
            key(Some("b=c&a=b"), &h, None)
        );
        assert_eq!(key(Some("a&b"), &h, None), sha("r1|GET|GET /p|a:b|"));
        // Repeated: values sorted, joined with commas; decoded.
        assert_eq!(
            key(Some("x=2&x=1&y=a+b%21"), &h, None),
            sha("r1|GET|GET /p|x=1,2:y=a b!|")
        );
        assert_eq!(key(Some("a="), &h, None), sha("r1|GET|GET /p|a=|"));
        // Only the configured ones, in the configured order, when set.
        let vary = ["foo".to_string(), "bar".to_string()];
        assert_eq!(
            key(Some("b=d&foo=b&bar=1"), &h, Some(&vary)),
            sha("r1|GET|GET /p|foo=b:bar=1|")
        );
        assert_eq!(
            key(Some("foo=b&b=c"), &h, Some(&vary)),
            key(Some("b=d&foo=b"), &h, Some(&vary))
        );
        // An empty list is as if none were set.
        assert_eq!(key(Some("a=1"), &h, Some(&[])), key(Some("a=1"), &h, None));
    }

    #[test]
    fn headers_part_of_key() {
        let mut h = HeaderMap::new();
        h.insert("x-lang", HeaderValue::from_static("en"));
        h.append("x-multi", HeaderValue::from_static("b"));
        h.append("x-multi", HeaderValue::from_static("a"));
        let parts = KeyParts {
            consumer: None,
            route: Some("r1"),
            method: "GET",
            uri: "GET /p HTTP/1.1",
            query: None,
            headers: &h,
        };
        let k = |vary: &[String]| hex(&cache_key(&parts, None, Some(vary)));
        assert_eq!(
            k(&["X-Lang".to_string(), "x-absent".to_string()]),
            sha("r1|GET|GET /p HTTP/1.1||X-Lang=en")
        );
        assert_eq!(
            k(&["x-multi".to_string(), "x-lang".to_string()]),
            sha("r1|GET|GET /p HTTP/1.1||x-multi=a,b:x-lang=en")
        );
        // Headers count only when configured.
        assert_eq!(
            hex(&cache_key(&parts, None, None)),
            sha("r1|GET|GET /p HTTP/1.1||")
        );
    }
}
