//! Ocelot templates, compiled once per snapshot:
//!
//! - `UpstreamPathTemplate` ─▶ an anchored regex with one capture group per placeholder,
//!   built by Ocelot's rules (`UpstreamTemplatePatternCreator`, 25.0): `/{x}` alone is the
//!   catch-all `^/.*`; a placeholder with a `/` after it takes one segment (`[^/]+`), the last
//!   one takes the rest (`.*`); a last segment that starts with a placeholder is optional
//!   (`/a/{x}` matches `/a`); a trailing `/` is optional; `?` in the template makes the query
//!   part of the match (`(/$|/\?|\?|$)`); `(?i)` unless RouteIsCaseSensitive. Literal text is
//!   regex-escaped.
//! - `UpstreamHeaderTemplates` values ─▶ anchored regexes where `{header:name}` captures `.+`.
//! - `DownstreamPathTemplate` ─▶ pieces; placeholders are filled by name at request time and
//!   the query is merged with the client's (`DownstreamUrlCreatorMiddleware`).
//!
//! Placeholder values come from the capture groups of the one regex that matched, so they are
//! exactly what matched (Ocelot finds them again with a second, looser pattern, which loses
//! everything after a `&` in a path).

use std::borrow::Cow;
use std::sync::Arc;

use regex::Regex;

/// Placeholder values of one match, by name, in template order.
pub type Params = Vec<(Arc<str>, String)>;

/// A compiled UpstreamPathTemplate.
#[derive(Debug, Clone)]
pub struct UpstreamTemplate {
    pub template: String,
    pub regex: Regex,
    /// The placeholder name of each capture group, in order.
    pub names: Vec<Arc<str>>,
    /// The template has a query part: the regex sees `path?query`.
    pub with_query: bool,
    /// A placeholder that is the whole query part (`/x?{q}`): its value is always empty, the
    /// query travels through the query merge instead (as in Ocelot).
    pub query_catch_all: Option<usize>,
    /// `/{x}` alone: Ocelot's catch-all (priority forced to 0).
    pub catch_all: bool,
    /// Literal text every matching path starts with (only characters a normalised path
    /// carries unescaped), for the prefix trie.
    pub prefix: String,
    pub case_sensitive: bool,
}

/// A piece of a template: literal text or `{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    Lit(&'a str),
    Param(&'a str),
}

/// Splits a template into literals and `{name}` placeholders. An unclosed `{` is literal.
pub fn tokens(t: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        if open > 0 {
            out.push(Token::Lit(&rest[..open]));
        }
        out.push(Token::Param(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Token::Lit(rest));
    }
    out
}

/// Placeholder names in template order (with repeats, for the duplicate check).
pub fn placeholder_names(t: &str) -> Vec<&str> {
    tokens(t)
        .into_iter()
        .filter_map(|tk| {
            if let Token::Param(p) = tk {
                Some(p)
            } else {
                None
            }
        })
        .collect()
}

/// Characters that reach the router unescaped in a normalised path, so a literal prefix made
/// of them can be looked up in the trie.
fn trie_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')
}

fn safe_prefix(lit: &str) -> String {
    lit.chars().take_while(|c| trie_safe(*c)).collect()
}

impl UpstreamTemplate {
    pub fn compile(template: &str, case_sensitive: bool) -> Result<UpstreamTemplate, String> {
        let flags = if case_sensitive { "(?s)" } else { "(?si)" };
        let toks = tokens(template);
        // Ocelot's "/{url}" hack: one placeholder right after the leading slash and nothing else.
        if let [Token::Lit("/"), Token::Param(name)] = toks.as_slice() {
            let regex = Regex::new(&format!("^{flags}/(.*)$")).map_err(|e| e.to_string())?;
            return Ok(UpstreamTemplate {
                template: template.to_string(),
                regex,
                names: vec![Arc::from(*name)],
                with_query: false,
                query_catch_all: None,
                catch_all: true,
                prefix: "/".into(),
                case_sensitive,
            });
        }
        let (path_part, query_part) = match template.find('?') {
            Some(i) => (&template[..i], Some(&template[i + 1..])),
            None => (template, None),
        };
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut re = String::new();
        let mut prefix = String::new();
        let mut prefix_open = true;

        if query_part.is_none() && path_part == "/" {
            re.push('/');
            prefix.push('/');
        } else {
            // The last segment is optional when it starts with a multi-segment placeholder.
            let optional_from = if query_part.is_none() {
                path_part.rfind('/').filter(|&i| {
                    let after = &path_part[i + 1..];
                    after.starts_with('{') && after.find('}').is_some() && !after.contains('/')
                })
            } else {
                None
            };
            let trailing_slash =
                query_part.is_none() && path_part.len() > 1 && path_part.ends_with('/');
            // With a query part, the slash before `?` belongs to the `(/$|/\?|\?|$)` group.
            let body = if query_part.is_some() {
                path_part.strip_suffix('/').unwrap_or(path_part)
            } else {
                path_part
            };
            let body = if trailing_slash {
                &body[..body.len() - 1]
            } else {
                body
            };
            let mut offset = 0usize;
            let toks = tokens(body);
            let mut opened_optional = false;
            for tk in &toks {
                match *tk {
                    Token::Lit(l) => {
                        let mut lit = l;
                        if let Some(at) =
                            optional_from.filter(|at| *at >= offset && *at < offset + l.len())
                        {
                            // Split the literal at the optional segment's slash.
                            let before = &l[..at - offset];
                            re.push_str(&regex::escape(before));
                            if prefix_open {
                                push_prefix(&mut prefix, &mut prefix_open, before);
                                prefix_open = false;
                            }
                            re.push_str("(?:|/");
                            opened_optional = true;
                            lit = &l[at - offset + 1..];
                        }
                        re.push_str(&regex::escape(lit));
                        if prefix_open {
                            push_prefix(&mut prefix, &mut prefix_open, lit);
                        }
                        offset += l.len();
                    }
                    Token::Param(name) => {
                        prefix_open = false;
                        names.push(Arc::from(name));
                        let slash_after = path_part[offset..]
                            .find('}')
                            .is_some_and(|c| path_part[offset + c..].contains('/'));
                        let multi = query_part.is_none() && !slash_after;
                        // With a query part, a path placeholder stops at the `?` (Ocelot's
                        // placeholder finder cuts values there; a greedy `[^/]+` would take the
                        // query into the path as well).
                        re.push_str(match (multi, query_part.is_some()) {
                            (true, _) => "(.*)",
                            (false, true) => "([^/?]+)",
                            (false, false) => "([^/]+)",
                        });
                        offset += name.len() + 2;
                    }
                }
            }
            if opened_optional {
                re.push(')');
            }
            if trailing_slash {
                re.push_str("(?:/)?");
            }
        }

        let mut query_catch_all = None;
        if let Some(q) = query_part {
            re.push_str(r"(?:/$|/\?|\?|$)");
            let qt = tokens(q);
            if let [Token::Param(name)] = qt.as_slice() {
                query_catch_all = Some(names.len());
                names.push(Arc::from(*name));
                re.push_str("(.*)");
            } else {
                for (i, tk) in qt.iter().enumerate() {
                    match *tk {
                        Token::Lit(l) => re.push_str(&regex::escape(l)),
                        // A last placeholder that is a whole parameter (`?a={a}&{rest}`)
                        // catches the rest of the query, which reaches the upstream through
                        // the query merge, once.
                        Token::Param(name)
                            if i + 1 == qt.len()
                                && matches!(qt.get(i.wrapping_sub(1)), Some(Token::Lit(l)) if l.ends_with('&')) =>
                        {
                            query_catch_all = Some(names.len());
                            names.push(Arc::from(name));
                            re.push_str("(.*)");
                        }
                        Token::Param(name) => {
                            names.push(Arc::from(name));
                            re.push_str("([^&]*)");
                        }
                    }
                }
                if query_catch_all.is_none() && matches!(qt.last(), Some(Token::Param(_))) {
                    re.push_str("(?:&.*)?");
                }
            }
        }
        if prefix.is_empty() {
            prefix.push('/');
        }
        let regex = Regex::new(&format!("^{flags}{re}$")).map_err(|e| e.to_string())?;
        Ok(UpstreamTemplate {
            template: template.to_string(),
            regex,
            names,
            with_query: query_part.is_some(),
            query_catch_all,
            catch_all: false,
            prefix: if case_sensitive {
                prefix
            } else {
                prefix.to_ascii_lowercase()
            },
            case_sensitive,
        })
    }

    /// Matches the request (its query too when the template has a query part); appends the
    /// placeholder values to `out`.
    pub fn matches(&self, subject: &Subject<'_>, out: &mut Params) -> bool {
        let Some(caps) = self.regex.captures(subject.text(self.with_query)) else {
            return false;
        };
        for (i, name) in self.names.iter().enumerate() {
            let value = if Some(i) == self.query_catch_all {
                ""
            } else {
                caps.get(i + 1).map_or("", |m| m.as_str())
            };
            out.push((name.clone(), value.to_string()));
        }
        true
    }

    /// Matches without collecting values (for `explain`).
    pub fn is_match(&self, subject: &Subject<'_>) -> bool {
        self.regex.is_match(subject.text(self.with_query))
    }
}

/// What Ocelot templates match a request against: the decoded path, and `path?query` for
/// templates with a query part, built at most once per request.
pub struct Subject<'a> {
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
    joined: std::cell::OnceCell<String>,
}

impl<'a> Subject<'a> {
    /// `path` is the normalised request path (decoded here as Ocelot sees it).
    pub fn new(path: &'a str, query: Option<&'a str>) -> Self {
        Subject {
            path: decoded_path(path),
            query,
            joined: std::cell::OnceCell::new(),
        }
    }

    /// A subject whose path is taken as it is.
    pub fn undecoded(path: &'a str, query: Option<&'a str>) -> Self {
        Subject {
            path: Cow::Borrowed(path),
            query,
            joined: std::cell::OnceCell::new(),
        }
    }

    fn text(&self, with_query: bool) -> &str {
        match self.query {
            Some(q) if with_query && !q.is_empty() => {
                self.joined.get_or_init(|| format!("{}?{q}", self.path))
            }
            _ => &self.path,
        }
    }
}

fn push_prefix(prefix: &mut String, open: &mut bool, lit: &str) {
    let safe = safe_prefix(lit);
    let whole = safe.len() == lit.len();
    prefix.push_str(&safe);
    if !whole {
        *open = false;
    }
}

/// One `UpstreamHeaderTemplates` entry.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    pub name: http::HeaderName,
    pub regex: Regex,
    pub names: Vec<Arc<str>>,
}

impl HeaderTemplate {
    pub fn compile(
        name: &str,
        value: &str,
        case_sensitive: bool,
    ) -> Result<HeaderTemplate, String> {
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let mut re = String::from(if case_sensitive { "^(?s)" } else { "^(?si)" });
        let mut names = Vec::new();
        for tk in tokens(value) {
            match tk {
                Token::Param(p) if p.len() > 7 && p[..7].eq_ignore_ascii_case("header:") => {
                    names.push(Arc::from(&p[7..]));
                    re.push_str("(.+)");
                }
                Token::Param(p) => re.push_str(&regex::escape(&format!("{{{p}}}"))),
                Token::Lit(l) => re.push_str(&regex::escape(l)),
            }
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| e.to_string())?;
        Ok(HeaderTemplate {
            name: header,
            regex,
            names,
        })
    }

    /// Every value of the header joined with `,` must match.
    pub fn matches(&self, headers: &http::HeaderMap, out: Option<&mut Params>) -> bool {
        let mut all = headers.get_all(&self.name).iter();
        let Some(first) = all.next() else {
            return false;
        };
        let joined: Cow<'_, str> = match all.next() {
            None => String::from_utf8_lossy(first.as_bytes()),
            Some(second) => {
                let mut s = String::from_utf8_lossy(first.as_bytes()).into_owned();
                for v in std::iter::once(second).chain(all) {
                    s.push(',');
                    s.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
                Cow::Owned(s)
            }
        };
        match out {
            None => self.regex.is_match(&joined),
            Some(out) => {
                let Some(caps) = self.regex.captures(&joined) else {
                    return false;
                };
                for (i, name) in self.names.iter().enumerate() {
                    out.push((
                        name.clone(),
                        caps.get(i + 1).map_or("", |m| m.as_str()).to_string(),
                    ));
                }
                true
            }
        }
    }
}

/// A piece of a compiled DownstreamPathTemplate.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Param(Arc<str>),
}

fn pieces(t: &str) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for tk in tokens(t) {
        match tk {
            Token::Lit(l) => match out.last_mut() {
                Some(Piece::Lit(prev)) => prev.push_str(l),
                _ => out.push(Piece::Lit(l.to_string())),
            },
            Token::Param(p) => out.push(Piece::Param(Arc::from(p))),
        }
    }
    out
}

fn lookup<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, v)| v.as_str())
}

/// A compiled DownstreamPathTemplate.
#[derive(Debug, Clone)]
pub struct DownstreamTemplate {
    path: Vec<Piece>,
    /// The part after `?`, when the template has one (the "merge" path).
    query: Option<Vec<Piece>>,
}

/// Bytes Ocelot's query encoder leaves alone (UrlEncoder.Default), for placeholder values
/// written into the downstream query.
fn query_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$()*,;@".contains(&b)
}

/// A placeholder value into the downstream query. Escapes already in the value (a query
/// placeholder's value is the query as sent) and `+` stay as they are: the parameter reaches
/// the upstream encoded as the client sent it, not encoded twice (Ocelot decodes the value
/// and encodes it again, which gives the same bytes for what clients send).
fn encode_query_value(v: &str, out: &mut String) {
    let b = v.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let escape = c == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if query_safe(c) || c == b'+' || escape {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of a key (`+` is a space), for comparisons.
fn decode_key(k: &str) -> Cow<'_, str> {
    if !k.contains(['%', '+']) {
        return Cow::Borrowed(k);
    }
    let b = k.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = (b[i + 1] as char).to_digit(16);
                let l = (b[i + 2] as char).to_digit(16);
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// One `key=value` pair of a query string, raw.
fn pairs(q: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        })
}

impl DownstreamTemplate {
    pub fn compile(template: &str) -> DownstreamTemplate {
        match template.split_once('?') {
            Some((p, q)) => DownstreamTemplate {
                path: pieces(p),
                query: Some(pieces(q)),
            },
            None => DownstreamTemplate {
                path: pieces(template),
                query: None,
            },
        }
    }

    /// The downstream path and query (`/a/b?x=1`), unescaped where the client's path was.
    ///
    /// `request_path` is the (decoded) request path, for the trailing-slash rule;
    /// `request_query` the client's raw query. The query reaches the upstream byte-exact
    /// unless the template changes it: a template with a query part merges it with the
    /// client's (template parameters first, client parameters named like a placeholder
    /// dropped, repeated client keys joined with `,`); otherwise, when the route has
    /// placeholders, client parameters named like one of them are dropped.
    pub fn render(
        &self,
        params: &Params,
        request_path: &str,
        request_query: Option<&str>,
    ) -> String {
        let mut out = String::with_capacity(64);
        for p in &self.path {
            match p {
                Piece::Lit(l) => out.push_str(l),
                Piece::Param(name) => match lookup(params, name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                },
            }
        }
        // Since Ocelot 23.0 a trailing slash survives only if the request path has one.
        if out.len() > 1 && out.ends_with('/') && !request_path.ends_with('/') {
            let trimmed = out.trim_end_matches('/').len();
            out.truncate(trimmed.max(1));
        }
        if out.is_empty() {
            out.push('/');
        }
        let request_query = request_query.filter(|q| !q.is_empty());
        match &self.query {
            Some(tq) => {
                let mut template_query = String::new();
                for p in tq {
                    match p {
                        Piece::Lit(l) => template_query.push_str(l),
                        Piece::Param(name) => match lookup(params, name) {
                            Some(v) => encode_query_value(v, &mut template_query),
                            None => {
                                template_query.push('{');
                                template_query.push_str(name);
                                template_query.push('}');
                            }
                        },
                    }
                }
                let merged = match request_query {
                    None => template_query,
                    Some(rq) => merge_queries(&template_query, rq, params),
                };
                if !merged.is_empty() {
                    out.push('?');
                    out.push_str(&merged);
                }
            }
            None => {
                if let Some(rq) = request_query {
                    if params.is_empty() {
                        out.push('?');
                        out.push_str(rq);
                    } else {
                        let kept = drop_placeholder_keys(rq, params);
                        if !kept.is_empty() {
                            out.push('?');
                            out.push_str(&kept);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Client parameters whose key names a placeholder (case-insensitively) are dropped; the
/// rest stays byte-exact.
fn drop_placeholder_keys<'a>(rq: &'a str, params: &Params) -> Cow<'a, str> {
    let named = |k: &str| {
        let k = decode_key(k);
        params.iter().any(|(n, _)| n.eq_ignore_ascii_case(&k))
    };
    if !pairs(rq).any(|(k, _)| named(k)) {
        return Cow::Borrowed(rq);
    }
    let kept: Vec<&str> = rq
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !named(p.split('=').next().unwrap_or(p)))
        .collect();
    Cow::Owned(kept.join("&"))
}

/// The merge of a template query with the client's (`MergeQueryStringsWithoutDuplicateValues`):
/// template parameters first, then client parameters the template does not have; client
/// parameters named like a placeholder (case-sensitively) are dropped; a key the client
/// repeats becomes one comma-joined value (keys compare case-insensitively, as .NET's
/// NameValueCollection does).
fn merge_queries(tq: &str, rq: &str, params: &Params) -> String {
    let template_keys: Vec<Cow<'_, str>> = pairs(tq).map(|(k, _)| decode_key(k)).collect();
    // (decoded key, key as sent, values as sent)
    type Group<'q> = (Cow<'q, str>, &'q str, Vec<Option<&'q str>>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (k, v) in pairs(rq) {
        let dk = decode_key(k);
        if params.iter().any(|(n, _)| **n == *dk) {
            continue;
        }
        if template_keys.iter().any(|t| t.eq_ignore_ascii_case(&dk)) {
            continue;
        }
        match groups
            .iter_mut()
            .find(|(g, _, _)| g.eq_ignore_ascii_case(&dk))
        {
            Some((_, _, vs)) => vs.push(v),
            None => groups.push((dk, k, vec![v])),
        }
    }
    let mut out = String::from(tq.trim_matches('&'));
    for (_, raw_key, values) in groups {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(raw_key);
        match values.as_slice() {
            [None] => {}
            vs => {
                out.push('=');
                let mut first = true;
                for v in vs {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(v.unwrap_or(""));
                }
            }
        }
    }
    out
}

/// The request path as Ocelot matches it (ASP.NET Core's decoded `Request.Path`): the
/// normalised path with its remaining escapes decoded, except those that would change the
/// path's structure (`%2F`, `%3F`, `%23`, `%25`). Borrows when there is nothing to decode.
pub fn decoded_path(normalised: &str) -> Cow<'_, str> {
    if !normalised.contains('%') {
        return Cow::Borrowed(normalised);
    }
    let b = normalised.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                (b[i + 2] as char).to_digit(16),
            )
        {
            let c = (h * 16 + l) as u8;
            if !matches!(c, b'/' | b'?' | b'#' | b'%') {
                out.push(c);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(normalised),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_the_clients_encoding() {
        let enc = |v: &str| {
            let mut out = String::new();
            encode_query_value(v, &mut out);
            out
        };
        assert_eq!(enc("a%20b"), "a%20b");
        assert_eq!(enc("a+b"), "a+b");
        assert_eq!(enc("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(enc("100%"), "100%25");
        assert_eq!(enc("%zz"), "%25zz");
    }

    #[test]
    fn a_path_placeholder_stops_at_the_query_and_a_last_lone_query_placeholder_catches_the_rest() {
        let t = UpstreamTemplate::compile("/b/{id}?{query}", false).unwrap();
        let mut out = Params::new();
        assert!(t.matches(&Subject::new("/b/5", Some("x=1")), &mut out));
        assert_eq!(&*out[0].0, "id");
        assert_eq!(out[0].1, "5");
        let t = UpstreamTemplate::compile("/c/{id}?x={x}&{rest}", false).unwrap();
        let mut out = Params::new();
        assert!(t.matches(&Subject::new("/c/5", Some("x=1&y=2")), &mut out));
        let got: Vec<(&str, &str)> = out.iter().map(|(n, v)| (&**n, v.as_str())).collect();
        assert_eq!(got, [("id", "5"), ("x", "1"), ("rest", "")]);
        assert_eq!(t.query_catch_all, Some(2));
    }

    fn m(t: &str, cs: bool, path: &str, query: Option<&str>) -> Option<Vec<(String, String)>> {
        let tpl = UpstreamTemplate::compile(t, cs).unwrap();
        let mut out = Params::new();
        tpl.matches(&Subject::new(path, query), &mut out)
            .then(|| out.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
    }

    fn kv(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn upstream_template_matching_table() {
        let none: Option<Vec<(String, String)>> = None;
        for (t, cs, path, query, want) in [
            ("/", false, "/", None, kv(&[])),
            ("/", false, "/x", None, none.clone()),
            ("/{everything}", false, "/", None, kv(&[("everything", "")])),
            (
                "/{everything}",
                false,
                "/a/b",
                None,
                kv(&[("everything", "a/b")]),
            ),
            (
                "/products/{id}",
                false,
                "/products/1",
                None,
                kv(&[("id", "1")]),
            ),
            (
                "/products/{id}",
                false,
                "/PRODUCTS/AbC",
                None,
                kv(&[("id", "AbC")]),
            ),
            ("/products/{id}", true, "/PRODUCTS/1", None, none.clone()),
            (
                "/products/{id}",
                false,
                "/products",
                None,
                kv(&[("id", "")]),
            ),
            (
                "/products/{id}",
                false,
                "/products/",
                None,
                kv(&[("id", "")]),
            ),
            (
                "/products/{id}",
                false,
                "/products/a/b",
                None,
                kv(&[("id", "a/b")]),
            ),
            ("/products", false, "/products/", None, none.clone()),
            (
                "/upstream/{version}/test",
                false,
                "/upstream/test",
                None,
                none.clone(),
            ),
            (
                "/upstream/{version}/test",
                false,
                "/upstream/v1/test",
                None,
                kv(&[("version", "v1")]),
            ),
            ("/api/{a}/x", false, "/api/1/x/", None, none.clone()),
            (
                "/account/authenticate/",
                false,
                "/account/authenticate",
                None,
                kv(&[]),
            ),
            (
                "/account/authenticate/",
                false,
                "/account/authenticate/",
                None,
                kv(&[]),
            ),
            (
                "/a/{x}/b/{y}/",
                false,
                "/a/1/b/2/",
                None,
                kv(&[("x", "1"), ("y", "2")]),
            ),
            ("/a/{x}/b/{y}/", false, "/a/1/b/2/3", None, none.clone()),
            (
                "/{v}/products/{p}",
                false,
                "/23/products/1",
                None,
                kv(&[("v", "23"), ("p", "1")]),
            ),
            (
                "/api/products_{c}/{s}_details/{i}?filter={f}",
                false,
                "/api/products_e/c_details/1",
                Some("filter=active"),
                kv(&[("c", "e"), ("s", "c"), ("i", "1"), ("f", "active")]),
            ),
            (
                "/api/subs/{s}/updates?unitId={u}",
                false,
                "/api/subs/s1/updates",
                Some("productId=1&unitId=u1"),
                none.clone(),
            ),
            (
                "/api/units3/{s}/updates?unit={u}",
                false,
                "/api/units3/s1/updates",
                Some("unit=u1&x=xxx"),
                kv(&[("s", "s1"), ("u", "u1")]),
            ),
            (
                "/contracts2/?{everything}",
                false,
                "/contracts2/",
                None,
                kv(&[("everything", "")]),
            ),
            (
                "/contracts2/?{everything}",
                false,
                "/contracts2/",
                Some("p3=v3"),
                kv(&[("everything", "")]),
            ),
            (
                "/contracts3?{everything}",
                false,
                "/contracts3/",
                None,
                kv(&[("everything", "")]),
            ),
            (
                "/contracts3?{everything}",
                false,
                "/contracts3/x",
                None,
                none.clone(),
            ),
            ("/v{x}.json", false, "/v1.json", None, kv(&[("x", "1")])),
            ("/v{x}.json", false, "/v1xjson", None, none.clone()),
        ] {
            assert_eq!(m(t, cs, path, query), want, "{t} vs {path}?{query:?}");
        }
    }

    #[test]
    fn catch_all_and_prefixes() {
        let t = UpstreamTemplate::compile("/{url}", false).unwrap();
        assert!(t.catch_all);
        assert_eq!(t.prefix, "/");
        assert!(
            !UpstreamTemplate::compile("/goods/{url}", false)
                .unwrap()
                .catch_all
        );
        for (t, p) in [
            ("/Products/{id}", "/products"),
            ("/a/b/", "/a/b"),
            ("/x?{q}", "/x"),
            ("/x/?{q}", "/x"),
            ("/api/debug()", "/api/debug"),
            ("/", "/"),
            ("/v{x}", "/v"),
        ] {
            assert_eq!(
                UpstreamTemplate::compile(t, false).unwrap().prefix,
                p,
                "{t}"
            );
        }
        assert_eq!(
            UpstreamTemplate::compile("/Products/{id}", true)
                .unwrap()
                .prefix,
            "/Products"
        );
    }

    fn render(dt: &str, params: &[(&str, &str)], req_path: &str, q: Option<&str>) -> String {
        let params: Params = params
            .iter()
            .map(|(n, v)| (Arc::from(*n), v.to_string()))
            .collect();
        DownstreamTemplate::compile(dt).render(&params, req_path, q)
    }

    #[test]
    fn query_merging_table() {
        for (dt, params, req_path, q, want) in [
            (
                "/svc/api/{id}",
                &[("id", "1")][..],
                "/products/1",
                Some("x=2"),
                "/svc/api/1?x=2",
            ),
            (
                "/svc/{id}",
                &[("id", "1")][..],
                "/p/1",
                Some("id=5&x=1"),
                "/svc/1?x=1",
            ),
            (
                "/svc/{id}",
                &[("id", "3")][..],
                "/p/3",
                Some("id1=2312"),
                "/svc/3?id1=2312",
            ),
            (
                "/svc/{Id}/{id}",
                &[("id", "1"), ("Id", "2")][..],
                "/p",
                Some("id=3&Id=4&ID=5&extra=x"),
                "/svc/2/1?extra=x",
            ),
            (
                "/svc/{id}",
                &[("id", "1")][..],
                "/p",
                Some("a=1&a=2&b=3"),
                "/svc/1?a=1&a=2&b=3",
            ),
            (
                "/svc",
                &[][..],
                "/p",
                Some("q=a+b&name=O'Neil&t=10:30"),
                "/svc?q=a+b&name=O'Neil&t=10:30",
            ),
            (
                "/svc/{x}",
                &[("x", "a")][..],
                "/p",
                Some("q=a+b&name=O'Neil"),
                "/svc/a?q=a+b&name=O'Neil",
            ),
            (
                "/s/{sub}/updates?unitId={unitId}",
                &[("sub", "s1"), ("unitId", "u1")][..],
                "/p",
                Some("x=1"),
                "/s/s1/updates?unitId=u1&x=1",
            ),
            (
                "/s/{sub}/updates?unitId={unitId}",
                &[("sub", "s1"), ("unitId", "u1")][..],
                "/p",
                Some("unitId=zzz&x=1"),
                "/s/s1/updates?unitId=u1&x=1",
            ),
            (
                "/persons?personId={userid}",
                &[("userid", "webley")][..],
                "/p",
                Some("userId=webley"),
                "/persons?personId=webley&userId=webley",
            ),
            (
                "/u?unitId={unit}",
                &[("unit", "u1")][..],
                "/p",
                Some("unit=u1&x=xxx"),
                "/u?unitId=u1&x=xxx",
            ),
            (
                "/c/?{everything}",
                &[("everything", "")][..],
                "/contracts/",
                None,
                "/c/",
            ),
            (
                "/c/?{everything}",
                &[("everything", "")][..],
                "/contracts/",
                Some("p3=v3&p4=v4"),
                "/c/?p3=v3&p4=v4",
            ),
            (
                "/arr?{everything}",
                &[("everything", "")][..],
                "/arr",
                Some("a=1&a=2&b=3"),
                "/arr?a=1,2&b=3",
            ),
            (
                "/c?{e}",
                &[("e", "")][..],
                "/c",
                Some("$filter=Name%20eq%20'Sam'&x=10:30"),
                "/c?$filter=Name%20eq%20'Sam'&x=10:30",
            ),
            (
                "/w?q={city}&key=k",
                &[("city", "new york")][..],
                "/p",
                None,
                "/w?q=new%20york&key=k",
            ),
            ("/svc/", &[][..], "/p", None, "/svc"),
            ("/svc/", &[][..], "/p/", None, "/svc/"),
            ("/", &[][..], "/laura", None, "/"),
            ("/svc/{missing}", &[][..], "/p", None, "/svc/{missing}"),
        ] {
            assert_eq!(render(dt, params, req_path, q), want, "{dt} {q:?}");
        }
    }

    #[test]
    fn header_templates() {
        let h = HeaderTemplate::compile("Region", "{header:code}", false).unwrap();
        let mut map = http::HeaderMap::new();
        assert!(!h.matches(&map, None));
        map.insert("region", "uk".parse().unwrap());
        let mut out = Params::new();
        assert!(h.matches(&map, Some(&mut out)));
        assert_eq!(out[0].1, "uk");
        let lit = HeaderTemplate::compile("country_code", "PL", false).unwrap();
        map.insert("country_code", "pl".parse().unwrap());
        assert!(lit.matches(&map, None));
        assert!(
            !HeaderTemplate::compile("country_code", "PL", true)
                .unwrap()
                .matches(&map, None)
        );
        map.append("country_code", "de".parse().unwrap());
        assert!(
            HeaderTemplate::compile("country_code", "pl,de", false)
                .unwrap()
                .matches(&map, None)
        );
    }

    #[test]
    fn decoding_keeps_structure() {
        assert_eq!(decoded_path("/api/debug%28%29"), "/api/debug()");
        assert_eq!(decoded_path("/a%2Fb%3F"), "/a%2Fb%3F");
        assert!(matches!(decoded_path("/plain"), Cow::Borrowed(_)));
    }
}
