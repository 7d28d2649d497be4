//! Request arguments as Kong's PDK reads them (`kong.request.get_query`, `get_body`): query
//! parameters and the fields of a form, JSON or multipart body, by name, telling a missing
//! argument from one given once or more than once (Kong's Lua table); and the same request
//! with one argument taken out (`hide_credentials`), everything else left byte for byte.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;

/// An argument's value(s) under one name.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    Missing,
    One(String),
    /// Given more than once, or (JSON) not a string: Kong's `table` value.
    Many,
    /// JSON: present, but a number, boolean or null.
    NotText,
}

/// The query parameter `name` (decoded as `application/x-www-form-urlencoded`).
pub fn query_arg(query: Option<&str>, name: &str) -> Arg {
    form_arg(query.unwrap_or("").as_bytes(), name)
}

fn form_arg(form: &[u8], name: &str) -> Arg {
    let mut found = Arg::Missing;
    for (k, v) in form_urlencoded::parse(form) {
        if k == name {
            found = match found {
                Arg::Missing => Arg::One(v.into_owned()),
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
    pub fn arg(&self, body: &[u8], name: &str) -> Arg {
        match self {
            BodyKind::Form => form_arg(body, name),
            BodyKind::Json => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(map)) => match map.get(name) {
                    None => Arg::Missing,
                    Some(serde_json::Value::String(s)) => Arg::One(s.clone()),
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
                            Arg::Missing => Arg::One(String::from_utf8_lossy(part.value).into()),
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
}
