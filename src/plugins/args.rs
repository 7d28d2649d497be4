//! Request arguments as Kong's PDK reads them (`kong.request.get_query`, `get_body`): query
//! parameters and the fields of a form, JSON or multipart body, by name, telling a missing
//! argument from one given once or more than once (Kong's Lua table); and the same request
//! with one argument taken out (`hide_credentials`), everything else left byte for byte.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;

/// An argument's value(s) under one name.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg<'a> {
    Missing,
    One(Cow<'a, str>),
    /// Given more than once, or (JSON) not a string: Kong's `table` value.
    Many,
    /// JSON: present, but a number, boolean or null.
    NotText,
}

/// The query parameter `name` (decoded as `application/x-www-form-urlencoded`).
pub fn query_arg<'a>(query: Option<&'a str>, name: &str) -> Arg<'a> {
    form_arg(query.unwrap_or("").as_bytes(), name)
}

fn form_arg<'a>(form: &'a [u8], name: &str) -> Arg<'a> {
    let mut found = Arg::Missing;
    for (k, v) in form_urlencoded::parse(form) {
        if k == name {
            found = match found {
                Arg::Missing => Arg::One(v),
                _ => return Arg::Many,
            };
        }
    }
    found
}

/// `query` without the parameters named `name`; `None` when nothing is left.
pub fn without_query_arg(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !form_urlencoded::parse(key.as_bytes()).any(|(k, _)| k == name) || key.is_empty()
        })
        .collect();
    let out = kept.join("&");
    (!out.is_empty()).then_some(out)
}

/// The kinds of body whose fields Kong reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    Form,
    Json,
    Multipart { boundary: String },
}

impl BodyKind {
    /// From the request's `Content-Type`; `None` for bodies that have no fields.
    pub fn of(headers: &HeaderMap) -> Option<BodyKind> {
        let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
        let mut parts = ct.split(';');
        let mime = parts.next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-www-form-urlencoded" => Some(BodyKind::Form),
            "application/json" => Some(BodyKind::Json),
            m if m.ends_with("+json") => Some(BodyKind::Json),
            "multipart/form-data" => parts.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("boundary")).then(|| BodyKind::Multipart {
                    boundary: v.trim().trim_matches('"').to_string(),
                })
            }),
            _ => None,
        }
    }

    /// The field `name` of `body`.
    pub fn arg<'b>(&self, body: &'b [u8], name: &str) -> Arg<'b> {
        match self {
            BodyKind::Form => form_arg(body, name),
            BodyKind::Json => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(map)) => match map.get(name) {
                    None => Arg::Missing,
                    Some(serde_json::Value::String(s)) => Arg::One(s.clone().into()),
                    Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => Arg::Many,
                    Some(_) => Arg::NotText,
                },
                _ => Arg::Missing,
            },
            BodyKind::Multipart { boundary } => {
                let mut found = Arg::Missing;
                for part in multipart_parts(body, boundary) {
                    if part.name.as_deref() == Some(name) {
                        found = match found {
                            Arg::Missing => Arg::One(String::from_utf8_lossy(part.value)),
                            _ => return Arg::Many,
                        };
                    }
                }
                found
            }
        }
    }

    /// `body` without the field `name`; `None` when the body cannot be read as this kind.
    pub fn without(&self, body: &[u8], name: &str) -> Option<Bytes> {
        match self {
            BodyKind::Form => {
                let text = std::str::from_utf8(body).ok()?;
                Some(Bytes::from(
                    without_query_arg(text, name).unwrap_or_default(),
                ))
            }
            BodyKind::Json => {
                let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
                v.as_object_mut()?.remove(name);
                serde_json::to_vec(&v).ok().map(Bytes::from)
            }
            BodyKind::Multipart { boundary } => {
                let mut out = Vec::with_capacity(body.len());
                let mut rest = body;
                for part in multipart_parts(body, boundary) {
                    if part.name.as_deref() == Some(name) {
                        let start = part.whole.as_ptr() as usize - rest.as_ptr() as usize;
                        out.extend_from_slice(&rest[..start]);
                        rest = &rest[start + part.whole.len()..];
                    }
                }
                out.extend_from_slice(rest);
                Some(Bytes::from(out))
            }
        }
    }
}

/// One part of a multipart body.
struct Part<'b> {
    name: Option<String>,
    value: &'b [u8],
    /// From its delimiter line up to the next delimiter: what removing it removes.
    whole: &'b [u8],
}

/// The parts of a `multipart/form-data` body (RFC 7578), leniently: a part that does not
/// parse is skipped.
fn multipart_parts<'b>(body: &'b [u8], boundary: &str) -> Vec<Part<'b>> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let starts: Vec<usize> = find_all(body, d);
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let whole = &body[w[0]..w[1]];
        let inner = &whole[d.len()..];
        let inner = inner.strip_prefix(b"\r\n").unwrap_or(inner);
        let Some(split) = find_all(inner, b"\r\n\r\n").first().copied() else {
            continue;
        };
        let head = String::from_utf8_lossy(&inner[..split]);
        let value = &inner[split + 4..];
        let value = value.strip_suffix(b"\r\n").unwrap_or(value);
        parts.push(Part {
            name: disposition_name(&head).map(Cow::into_owned),
            value,
            whole,
        });
    }
    parts
}

fn disposition_name(head: &str) -> Option<Cow<'_, str>> {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    line.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "name").then(|| Cow::Borrowed(v.trim().trim_matches('"')))
    })
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            out.push(i);
            i += needle.len();
        } else {
            i += 1;
        }
    }
    out
}

/// A value of an argument table as nginx decodes one (`ngx.decode_args`,
/// `ngx.req.get_uri_args`): a string, `true` for a name without `=`, or the values of a name
/// given more than once, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Text(Vec<u8>),
    Flag,
    /// Its elements are `Text` or `Flag` as nginx decodes them; a `List` among them (only
    /// made by merging one table into another) cannot be encoded.
    List(Vec<ArgValue>),
}

/// An argument table (Lua's, keyed by exact bytes), kept in the order names first appeared:
/// Lua's tables have no order, this one keeps the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(pub Vec<(Vec<u8>, ArgValue)>);

/// How many arguments nginx decodes by default (`ngx.decode_args`, `lua_max_uri_args`).
pub const MAX_ARGS: usize = 100;

impl Args {
    /// `ngx.decode_args(text, max)` (`ngx_http_lua_parse_args`): `&`-separated, the first `=`
    /// splits name from value, both percent-decoded with `+` as a space; a name without `=`
    /// is `true`, an empty name is dropped, a repeated one collects its values. Past `max`
    /// `&`-terminated pairs the rest is ignored.
    pub fn decode(text: &[u8], max: usize) -> Args {
        let mut args = Args::default();
        let mut take = |pair: &[u8]| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    unescape_component(&pair[..eq]),
                    ArgValue::Text(unescape_component(&pair[eq + 1..])),
                ),
                None => (unescape_component(pair), ArgValue::Flag),
            };
            if !key.is_empty() {
                args.add(key, value);
            }
        };
        let mut rest = text;
        let mut count = 0;
        loop {
            match rest.iter().position(|&b| b == b'&') {
                Some(i) => {
                    take(&rest[..i]);
                    count += 1;
                    if max > 0 && count == max {
                        break;
                    }
                    rest = &rest[i + 1..];
                }
                None => {
                    if !rest.is_empty() {
                        take(rest);
                    }
                    break;
                }
            }
        }
        args
    }

    /// nginx's `ngx_http_lua_set_multi_value_table`: a repeated name collects its values.
    fn add(&mut self, key: Vec<u8>, value: ArgValue) {
        match self.get_mut(&key) {
            Some(ArgValue::List(list)) => list.push(value),
            Some(old) => {
                let first = std::mem::replace(old, ArgValue::Flag);
                *old = ArgValue::List(vec![first, value]);
            }
            None => self.0.push((key, value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<&ArgValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut ArgValue> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `t[key] = value`: in place when the name is there, else last.
    pub fn set(&mut self, key: &[u8], value: ArgValue) {
        match self.get_mut(key) {
            Some(v) => *v = value,
            None => self.0.push((key.to_vec(), value)),
        }
    }

    /// `t[key] = nil`.
    pub fn remove(&mut self, key: &[u8]) -> Option<ArgValue> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// `ngx.encode_args(t)`, in the table's order. `None` when a list holds a list (nginx:
    /// "attempt to use table as query arg value").
    pub fn encode(&self) -> Option<String> {
        let mut out = String::new();
        for (k, v) in &self.0 {
            let piece = encode_pair(k, v)?;
            if !out.is_empty() && !piece.is_empty() {
                out.push('&');
            }
            out.push_str(&piece);
        }
        Some(out)
    }

    /// `kong.service.request.set_query(t)`: each name encoded on its own (`ngx.encode_args`),
    /// the pieces sorted bytewise and joined with `&`.
    pub fn encode_sorted(&self) -> Option<String> {
        let mut pieces = self
            .0
            .iter()
            .map(|(k, v)| encode_pair(k, v))
            .collect::<Option<Vec<String>>>()?;
        pieces.sort_unstable();
        Some(pieces.join("&"))
    }
}

/// `ngx.encode_args({[key] = value})`.
fn encode_pair(key: &[u8], value: &ArgValue) -> Option<String> {
    let mut out = String::new();
    match value {
        ArgValue::Text(v) => {
            escape_component(&mut out, key);
            out.push('=');
            escape_component(&mut out, v);
        }
        ArgValue::Flag => escape_component(&mut out, key),
        ArgValue::List(list) => {
            for v in list {
                if !out.is_empty() {
                    out.push('&');
                }
                match v {
                    ArgValue::Text(v) => {
                        escape_component(&mut out, key);
                        out.push('=');
                        escape_component(&mut out, v);
                    }
                    ArgValue::Flag => escape_component(&mut out, key),
                    ArgValue::List(_) => return None,
                }
            }
        }
    }
    Some(out)
}

/// nginx's `NGX_ESCAPE_URI_COMPONENT` (what `ngx.encode_args` uses): everything but ASCII
/// letters, digits and `-._~!*'()` is percent-encoded, in upper-case hex.
pub fn escape_component(out: &mut String, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~!*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// nginx's `NGX_UNESCAPE_URI_COMPONENT`: `%XX` is the byte, `+` a space; a `%` without two
/// hex digits stays.
pub fn unescape_component(s: &[u8]) -> Vec<u8> {
    let hex = |i: usize| s.get(i).and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A `multipart/form-data` body as Kong's `multipart` library (lua-multipart 0.5.9, which
/// `kong.request.get_body` and request-transformer use) reads, changes and writes it, its
/// quirks included: lines end at any CR or LF; a part is named by the `name=` of its
/// Content-Disposition with its first and last characters (the quotes) cut; text before
/// the first part and parts without a name run into the next part; deleting a repeated name
/// removes the wrong parts after the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    boundary: Option<Vec<u8>>,
    /// The parts, in order (Lua's `data`, 1-based there).
    parts: Vec<MultipartPart>,
    /// Each name's part positions (1-based), first one first.
    indexes: Vec<(Vec<u8>, Vec<usize>)>,
}

/// One part: its name, its header lines as they came, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartPart {
    pub name: Vec<u8>,
    pub headers: Vec<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Lua's `%s`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn lua_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// lua-multipart's `is_header`: `%S:%s*%S` somewhere in the line.
fn is_header_line(v: &[u8]) -> bool {
    (1..v.len()).any(|i| {
        v[i] == b':' && !lua_space(v[i - 1]) && {
            let rest = &v[i + 1..];
            rest.iter().position(|&b| !lua_space(b)).is_some()
        }
    })
}

impl Multipart {
    /// `multipart(body, content_type)`: the boundary is `;%s*boundary=(%S+)` of the content
    /// type (quotes stripped); without one there are no parts.
    pub fn parse(body: &[u8], content_type: &[u8]) -> Multipart {
        let boundary = Self::boundary_of(content_type);
        let mut m = Multipart {
            boundary,
            ..Multipart::default()
        };
        if let Some(b) = m.boundary.clone() {
            m.decode(body, &b);
        }
        m
    }

    fn boundary_of(ct: &[u8]) -> Option<Vec<u8>> {
        for (i, &c) in ct.iter().enumerate() {
            if c != b';' {
                continue;
            }
            let mut j = i + 1;
            while j < ct.len() && lua_space(ct[j]) {
                j += 1;
            }
            let Some(rest) = ct[j..].strip_prefix(b"boundary=") else {
                continue;
            };
            let n = rest
                .iter()
                .position(|&b| lua_space(b))
                .unwrap_or(rest.len());
            if n == 0 {
                continue;
            }
            let mut b = &rest[..n];
            if b.len() >= 2
                && ((b[0] == b'"' && b[b.len() - 1] == b'"')
                    || (b[0] == b'\'' && b[b.len() - 1] == b'\''))
            {
                b = &b[1..b.len() - 1];
            } else if b.len() == 1 && (b[0] == b'"' || b[0] == b'\'') {
                // Lua's sub(b, 2, -2) of a lone quote is empty.
                b = &[];
            }
            return (!b.is_empty()).then(|| b.to_vec());
        }
        None
    }

    /// lua-multipart's `decode`.
    fn decode(&mut self, body: &[u8], boundary: &[u8]) {
        let mut part_name: Option<Vec<u8>> = None;
        let mut headers: Vec<Vec<u8>> = Vec::new();
        let mut value: Vec<&[u8]> = Vec::new();
        let mut processing = false;
        let mut position = 0;
        loop {
            let s = body[position..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .map(|i| i + position);
            let line = match s {
                Some(s) => {
                    let l = &body[position..s];
                    position = s + 1;
                    l
                }
                None => &body[position..],
            };
            if line.is_empty() {
                if let Some(s) = s
                    && processing
                {
                    value.push(&body[s..=s]);
                }
            } else if line.starts_with(b"--")
                && line.len() >= boundary.len() + 2
                && &line[2..boundary.len() + 2] == boundary
            {
                processing = false;
                if let Some(name) = part_name.take() {
                    let n = value.len();
                    let mut drop_last = false;
                    let mut drop_before = false;
                    if n >= 1 && value[n - 1] == b"\n" {
                        drop_last = true;
                    }
                    if n >= 2 && value[n - 2] == b"\r" {
                        drop_before = true;
                    }
                    let mut v = Vec::new();
                    for (i, piece) in value.iter().enumerate() {
                        if (drop_last && i == n - 1) || (drop_before && i == n - 2) {
                            continue;
                        }
                        v.extend_from_slice(piece);
                    }
                    self.parts.push(MultipartPart {
                        name: name.clone(),
                        headers: std::mem::take(&mut headers),
                        value: v,
                    });
                    let index = self.parts.len();
                    match self.indexes.iter_mut().find(|(k, _)| *k == name) {
                        Some((_, list)) => list.push(index),
                        None => self.indexes.push((name, vec![index])),
                    }
                    value.clear();
                }
            } else if !processing
                && line.len() >= 19
                && line[..19].eq_ignore_ascii_case(b"content-disposition")
            {
                for v in line.split(|&b| b == b';').filter(|v| !v.is_empty()) {
                    if is_header_line(v) {
                        continue;
                    }
                    let start = v.iter().position(|&b| !lua_space(b)).unwrap_or(v.len());
                    let Some(after) = v[start..]
                        .get(..5)
                        .filter(|n| n.eq_ignore_ascii_case(b"name="))
                        .map(|_| &v[start + 5..])
                    else {
                        continue;
                    };
                    let after = &after[after
                        .iter()
                        .position(|&b| !lua_space(b))
                        .unwrap_or(after.len())..];
                    let mut cv =
                        &after[..after.iter().position(|&b| b == b'=').unwrap_or(after.len())];
                    while let [rest @ .., last] = cv
                        && lua_space(*last)
                    {
                        cv = rest;
                    }
                    part_name = Some(if cv.len() >= 2 {
                        cv[1..cv.len() - 1].to_vec()
                    } else {
                        Vec::new()
                    });
                }
                headers.push(line.to_vec());
                if let Some(s) = s
                    && body[s..].starts_with(b"\r\n\r\n")
                {
                    processing = true;
                    position = s + 4;
                }
            } else if !processing && is_header_line(line) {
                headers.push(line.to_vec());
                if let Some(s) = s
                    && body[s..].starts_with(b"\r\n\r\n")
                {
                    processing = true;
                    position = s + 4;
                }
            } else {
                processing = true;
                value.push(line);
                if let Some(s) = s {
                    value.push(&body[s..=s]);
                }
            }
            if s.is_none() {
                break;
            }
        }
        // A last part without a closing delimiter: kept as it is, the only one of its name.
        if let Some(name) = part_name {
            self.parts.push(MultipartPart {
                name: name.clone(),
                headers,
                value: value.concat(),
            });
            let index = self.parts.len();
            match self.indexes.iter_mut().find(|(k, _)| *k == name) {
                Some((_, list)) => *list = vec![index],
                None => self.indexes.push((name, vec![index])),
            }
        }
    }

    /// `get(name)`: the first part of that name.
    pub fn get(&self, name: &[u8]) -> Option<&MultipartPart> {
        let (_, list) = self.indexes.iter().find(|(k, _)| k == name)?;
        self.parts.get(list.first()?.checked_sub(1)?)
    }

    /// `set_simple(name, value)`: a plain field; it replaces the first part of that name, or
    /// comes after the last indexed part.
    pub fn set_simple(&mut self, name: &[u8], value: Vec<u8>) {
        let mut header = b"Content-Disposition: form-data; name=\"".to_vec();
        header.extend_from_slice(name);
        header.push(b'"');
        let part = MultipartPart {
            name: name.to_vec(),
            headers: vec![header],
            value,
        };
        let index = match self.indexes.iter().find(|(k, _)| k == name) {
            Some((_, list)) => list[0],
            None => {
                let max = self
                    .indexes
                    .iter()
                    .flat_map(|(_, l)| l.iter().copied())
                    .max()
                    .unwrap_or(0);
                self.indexes.push((name.to_vec(), vec![max + 1]));
                max + 1
            }
        };
        if index <= self.parts.len() {
            self.parts[index - 1] = part;
        } else {
            self.parts.push(part);
        }
    }

    /// `delete(name)`: removes the parts at the name's positions one after the other (Lua's
    /// `table.remove`, without accounting for the shift), then renumbers the other names.
    pub fn delete(&mut self, name: &[u8]) {
        let Some(at) = self.indexes.iter().position(|(k, _)| k == name) else {
            return;
        };
        let (_, deleted) = self.indexes.remove(at);
        for &i in &deleted {
            if i >= 1 && i <= self.parts.len() {
                self.parts.remove(i - 1);
            }
        }
        for (_, list) in &mut self.indexes {
            for v in list.iter_mut() {
                *v -= deleted.iter().filter(|&&d| *v > d).count();
            }
        }
    }

    /// `tostring()`: every part with the boundary, or nothing at all when there is none.
    pub fn to_bytes(&self) -> Vec<u8> {
        let boundary: &[u8] = self.boundary.as_deref().unwrap_or(b"switchyard-multipart");
        let mut out = Vec::new();
        for p in &self.parts {
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary);
            out.extend_from_slice(b"\r\n");
            for h in &p.headers {
                out.extend_from_slice(h);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&p.value);
            out.extend_from_slice(b"\r\n");
        }
        if !out.is_empty() {
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary);
            out.extend_from_slice(b"--\r\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_args_count_repeats_and_decode() {
        assert_eq!(
            query_arg(Some("a=1&apikey=k%20y"), "apikey"),
            Arg::One("k y".into())
        );
        assert_eq!(query_arg(Some("apikey=1&apikey=2"), "apikey"), Arg::Many);
        assert_eq!(query_arg(None, "apikey"), Arg::Missing);
        assert_eq!(
            without_query_arg("b=2&apikey=x&a=1", "apikey").as_deref(),
            Some("b=2&a=1")
        );
        assert_eq!(without_query_arg("apikey=x", "apikey"), None);
    }

    #[test]
    fn body_fields_of_each_kind() {
        let json = BodyKind::Json;
        assert_eq!(
            json.arg(br#"{"apikey":"k","n":1}"#, "apikey"),
            Arg::One("k".into())
        );
        assert_eq!(json.arg(br#"{"apikey":["a"]}"#, "apikey"), Arg::Many);
        assert_eq!(json.arg(br#"{"apikey":1}"#, "apikey"), Arg::NotText);
        assert_eq!(
            &json.without(br#"{"apikey":"k","n":1}"#, "apikey").unwrap()[..],
            br#"{"n":1}"#
        );
        let form = BodyKind::Form;
        assert_eq!(form.arg(b"x=1&apikey=k", "apikey"), Arg::One("k".into()));
        let mp = BodyKind::Multipart {
            boundary: "XX".into(),
        };
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nsecret\r\n--XX\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n1\r\n--XX--\r\n";
        assert_eq!(mp.arg(body, "apikey"), Arg::One("secret".into()));
        let stripped = mp.without(body, "apikey").unwrap();
        assert_eq!(mp.arg(&stripped, "apikey"), Arg::Missing);
        assert_eq!(mp.arg(&stripped, "n"), Arg::One("1".into()));
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "multipart/form-data; boundary=\"XX\"".parse().unwrap(),
        );
        assert_eq!(BodyKind::of(&h), Some(mp));
    }

    #[test]
    fn nginx_argument_tables() {
        let t = |v: &str| ArgValue::Text(v.as_bytes().to_vec());
        let a = Args::decode(b"a=1&b&c=&=x&a=2&&d=1=2&e=%41%zz+%4", MAX_ARGS);
        assert_eq!(a.get(b"a"), Some(&ArgValue::List(vec![t("1"), t("2")])));
        assert_eq!(a.get(b"b"), Some(&ArgValue::Flag));
        assert_eq!(a.get(b"c"), Some(&t("")));
        assert_eq!(a.get(b"d"), Some(&t("1=2")));
        assert_eq!(a.get(b"e"), Some(&t("A%zz %4")));
        assert_eq!(a.get(b""), None);
        assert_eq!(a.0.len(), 5);
        // Past 100 `&`-terminated pairs the rest is dropped.
        let many: Vec<String> = (0..101).map(|i| format!("k{i}=v")).collect();
        let a = Args::decode(many.join("&").as_bytes(), MAX_ARGS);
        assert_eq!(a.0.len(), 100);
        assert_eq!(Args::decode(b"", MAX_ARGS), Args::default());
        // ngx.encode_args: table order, nginx's component escaping.
        let mut a = Args::default();
        a.set(b"b", t("x y/z!*'()~"));
        a.set(b"a", ArgValue::List(vec![t("1"), ArgValue::Flag]));
        a.set(b"f", ArgValue::Flag);
        assert_eq!(a.encode().unwrap(), "b=x%20y%2Fz!*'()~&a=1&a&f");
        // set_query: each name's piece sorted bytewise.
        a.set(b"a-b", t("3"));
        assert_eq!(
            a.encode_sorted().unwrap(),
            "a-b=3&a=1&a&b=x%20y%2Fz!*'()~&f"
        );
        a.set(b"n", ArgValue::List(vec![ArgValue::List(vec![])]));
        assert_eq!(a.encode_sorted(), None);
    }

    #[test]
    fn lua_multipart_quirks() {
        let ct = b"multipart/form-data; boundary=\"XX\"";
        // A preamble runs into the first part; an unquoted name loses its first and last
        // characters; a value keeps its inner line breaks.
        let body = b"preamble\r\n--XX\r\nContent-Disposition: form-data; name=foo\r\n\r\na\r\nb\r\n--XX\r\ncontent-disposition: form-data; name=\"x\"\r\n\r\n1\r\n--XX--";
        let m = Multipart::parse(body, ct);
        assert_eq!(m.get(b"o").unwrap().value, b"preamble\r\na\r\nb");
        assert_eq!(m.get(b"x").unwrap().value, b"1");
        assert_eq!(m.get(b"foo"), None);
        // No boundary: no parts, and nothing written back.
        let m = Multipart::parse(body, b"multipart/form-data");
        assert_eq!(m.get(b"x"), None);
        assert_eq!(m.to_bytes(), b"");
        // Deleting a repeated name removes by stale positions, as lua-multipart does.
        let part = |n: &str, v: &str| {
            format!("--B\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n")
        };
        let body = [
            part("a", "1"),
            part("b", "2"),
            part("a", "3"),
            part("c", "4"),
        ]
        .concat()
            + "--B--\r\n";
        let mut m = Multipart::parse(body.as_bytes(), b"multipart/form-data; boundary=B");
        m.delete(b"a");
        assert_eq!(m.get(b"b").unwrap().value, b"2");
        let out = String::from_utf8(m.to_bytes()).unwrap();
        assert_eq!(out, [part("b", "2"), part("a", "3")].concat() + "--B--\r\n");
        // set_simple replaces the first part of a name, or comes last.
        m.set_simple(b"b", b"new".to_vec());
        m.set_simple(b"z", b"26".to_vec());
        let out = String::from_utf8(m.to_bytes()).unwrap();
        assert_eq!(
            out,
            [part("b", "new"), part("a", "3"), part("z", "26")].concat() + "--B--\r\n"
        );
    }
}
