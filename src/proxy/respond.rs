//! Responses the gateway writes itself: Kong's JSON error shape
//! `{"message": ..., "request_id": ...}` with `application/json; charset=utf-8`.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use super::body::ProxyBody;
use crate::plugins::Response;

pub const JSON: &str = "application/json; charset=utf-8";

pub fn bytes(status: StatusCode, body: Bytes) -> Response {
    let mut r = http::Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r
}

pub fn json_value(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut r = bytes(status, Bytes::from(value.to_string()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

/// A gateway error: the message, and the request id to find it in the logs.
pub fn error(status: StatusCode, message: &str, request_id: &str) -> Response {
    json_value(
        status,
        &serde_json::json!({ "message": message, "request_id": request_id }),
    )
}
