//! Answers the gateway and plugins make themselves, in Kong's JSON shape
//! `{"message": ...}` with `application/json; charset=utf-8`.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use super::{Body, Response};

pub const JSON: &str = "application/json; charset=utf-8";

/// `status` with `body` and no headers.
pub fn bytes(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(Body::Full(body.into()));
    *r.status_mut() = status;
    r
}

/// `status` with a JSON document already serialised.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut r = bytes(status, body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

/// Kong's `{"message": "..."}`.
pub fn message(status: StatusCode, message: &str) -> Response {
    let mut out = String::with_capacity(message.len() + 16);
    out.push_str("{\"message\":");
    push_json_string(&mut out, message);
    out.push('}');
    json(status, out)
}

/// A gateway error: the message, and the request id to find it in the logs.
pub fn error(status: StatusCode, message: &str, request_id: &str) -> Response {
    let mut out = String::with_capacity(message.len() + request_id.len() + 32);
    out.push_str("{\"message\":");
    push_json_string(&mut out, message);
    out.push_str(",\"request_id\":");
    push_json_string(&mut out, request_id);
    out.push('}');
    json(status, out)
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_valid_json() {
        let r = super::error(
            http::StatusCode::NOT_FOUND,
            "a \"quoted\"\n\u{1}path",
            "id1",
        );
        let super::Body::Full(b) = r.body() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v["message"], "a \"quoted\"\n\u{1}path");
        assert_eq!(v["request_id"], "id1");
    }
}
