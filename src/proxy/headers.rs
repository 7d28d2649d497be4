//! Header work on both legs: hop-by-hop removal, the X-Forwarded-* family and X-Real-IP,
//! Via, and the gateway's own response headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const PRODUCT: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));
pub static SERVER: HeaderValue = HeaderValue::from_static(PRODUCT);

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-switchyard-request-id");
pub static UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-switchyard-upstream-latency");
pub static PROXY_LATENCY: HeaderName = HeaderName::from_static("x-switchyard-proxy-latency");
pub static RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-switchyard-response-latency");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY: HeaderName = HeaderName::from_static("proxy");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), those the Connection header names, and
/// `Proxy` (httpoxy). `TE: trailers` is the only TE that may travel on.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than eight lookups.
    let hop = |n: &HeaderName| {
        n == header::CONNECTION
            || n == header::TE
            || n == header::TRAILER
            || n == header::TRANSFER_ENCODING
            || n == header::UPGRADE
            || n == KEEP_ALIVE
            || n == PROXY_CONNECTION
            || n == PROXY
    };
    if !h.keys().any(hop) {
        return;
    }
    if let Some(conn) = h.get(header::CONNECTION).cloned()
        && let Ok(list) = conn.to_str()
    {
        for name in list.split(',') {
            let name = name.trim();
            if !name.is_empty()
                && !name.eq_ignore_ascii_case("close")
                && !name.eq_ignore_ascii_case("keep-alive")
            {
                h.remove(name);
            }
        }
    }
    let te_trailers = h
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &PROXY,
    ] {
        h.remove(name);
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// `<existing>, <version> switchyard/x.y.z`.
pub fn append_via(h: &mut HeaderMap, version: http::Version) {
    let ours = match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    let value = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {ours} {PRODUCT}")).ok(),
        None => Some(HeaderValue::from_static(match ours {
            "1.0" => concat!("1.0 switchyard/", env!("CARGO_PKG_VERSION")),
            "2" => concat!("2 switchyard/", env!("CARGO_PKG_VERSION")),
            "3" => concat!("3 switchyard/", env!("CARGO_PKG_VERSION")),
            _ => concat!("1.1 switchyard/", env!("CARGO_PKG_VERSION")),
        })),
    };
    if let Some(v) = value {
        h.insert(header::VIA, v);
    }
}

/// Milliseconds as a header value; small values come from a table built once.
pub fn millis(ms: u128) -> HeaderValue {
    static SMALL: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    let table = SMALL.get_or_init(|| (0..256u32).map(HeaderValue::from).collect());
    match table.get(ms as usize) {
        Some(v) => v.clone(),
        None => HeaderValue::from(ms as u64),
    }
}
