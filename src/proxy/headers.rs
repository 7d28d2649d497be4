//! Header work on both legs: hop-by-hop removal, the X-Forwarded-* family and X-Real-IP,
//! Via, and the gateway's own response headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub use crate::exchange::marks::{PROXY_LATENCY, UPSTREAM_LATENCY};

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
pub static RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-switchyard-response-latency");
pub static VIA: HeaderName = header::VIA;
pub static SERVER_NAME: HeaderName = header::SERVER;

/// Headers the gateway sets on a request it forwards (the forwarding headers, and the
/// identity headers of an authentication no later hook looked at), in the order they are
/// written: after the map's own, rather than inserted into it (a hash, a probe and later a drop each). The
/// map must not hold the same names; see `is_gateway_set`.
pub type Added = smallvec::SmallVec<[(&'static HeaderName, HeaderValue); 13]>;

/// The gateway's headers on a response to the client, written after the map's own. Kept
/// compact, as values rather than header lines, because a connection's task holds it.
#[derive(Default)]
pub struct Stamp {
    /// For an upstream response that no plugin saw (otherwise they are in the map).
    pub upstream: Option<UpstreamMarks>,
    pub request_id: Option<HeaderValue>,
    /// The response has no Server header of its own.
    pub server: bool,
    /// Headers plugins set on an upstream response whose lines go out as they came
    /// (`Ctx::response_headers`): they replace the upstream's of the same names.
    pub response: Vec<(HeaderName, HeaderValue)>,
}

impl Stamp {
    pub fn headers(&self) -> smallvec::SmallVec<[(&'static HeaderName, HeaderValue); 5]> {
        let mut out = smallvec::SmallVec::new();
        if let Some(marks) = &self.upstream {
            out.extend(marks.headers());
        }
        if let Some(id) = &self.request_id {
            out.push((&REQUEST_ID, id.clone()));
        }
        if self.server {
            out.push((&SERVER_NAME, SERVER.clone()));
        }
        out
    }
}

/// The names the gateway sets on what it forwards, in any case: X-Forwarded-*, X-Real-IP
/// and Via on requests, Via and its own `x-switchyard-*` on both, and the identity headers
/// authentication sets (`X-Consumer-*`, `X-Credential-Identifier`, `X-Anonymous-Consumer`).
/// A head that carries none needs no lookup of them.
pub fn is_gateway_set(name: &[u8]) -> bool {
    let starts = |p: &[u8]| name.len() > p.len() && name[..p.len()].eq_ignore_ascii_case(p);
    is_forwarding(name)
        || (matches!(name.first(), Some(b'x' | b'X'))
            && (starts(b"x-consumer-")
                || name.eq_ignore_ascii_case(b"x-credential-identifier")
                || name.eq_ignore_ascii_case(b"x-anonymous-consumer")))
}

/// The names of the forwarding headers the gateway adds to every upstream request
/// (X-Forwarded-*, X-Real-IP, Via, `x-switchyard-*`), which replace any of the same names.
pub fn is_forwarding(name: &[u8]) -> bool {
    let starts = |p: &[u8]| name.len() > p.len() && name[..p.len()].eq_ignore_ascii_case(p);
    matches!(name.first(), Some(b'x' | b'X' | b'v' | b'V'))
        && (starts(b"x-forwarded-")
            || starts(b"x-switchyard-")
            || name.eq_ignore_ascii_case(b"via")
            || name.eq_ignore_ascii_case(b"x-real-ip"))
}

/// Some header of `h` is a forwarding header: one pass over the names (a plugin may have
/// set one), cheaper than removing each forwarding name by lookup.
pub fn has_forwarding(h: &HeaderMap) -> bool {
    h.keys().any(|k| is_forwarding(k.as_str().as_bytes()))
}

/// An upstream's headers of these names do not reach the client: the gateway's own stand
/// in their place (its Via extends the upstream's).
pub static REPLACED_ON_RESPONSE: [&HeaderName; 4] =
    [&VIA, &UPSTREAM_LATENCY, &PROXY_LATENCY, &REQUEST_ID];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), those the Connection header names, and
/// `Proxy` (httpoxy). `TE: trailers` is the only TE that may travel on.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names, each compared as a string (a
    // length switch, then bytes), is cheaper than eight lookups or eight name compares.
    let hop = |n: &HeaderName| {
        matches!(
            n.as_str(),
            "connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "keep-alive"
                | "proxy-connection"
                | "proxy"
        )
    };
    // Usually just `Connection: keep-alive`: only what is there is removed.
    let present: smallvec::SmallVec<[HeaderName; 4]> =
        h.keys().filter(|n| hop(n)).cloned().collect();
    if present.is_empty() {
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
    for name in &present {
        h.remove(name);
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The gateway's part of a proxied response head: Via and the upstream and proxy latencies.
pub struct UpstreamMarks {
    pub via: HeaderValue,
    pub upstream_ms: u32,
    pub proxy_ms: u32,
}

impl UpstreamMarks {
    pub fn headers(&self) -> [(&'static HeaderName, HeaderValue); 3] {
        [
            (&VIA, self.via.clone()),
            (&UPSTREAM_LATENCY, millis(u128::from(self.upstream_ms))),
            (&PROXY_LATENCY, millis(u128::from(self.proxy_ms))),
        ]
    }
}

/// `<existing>, <version> switchyard/x.y.z`.
pub fn append_via(h: &mut HeaderMap, version: http::Version) {
    let v = via(h.get(header::VIA), version);
    h.insert(header::VIA, v);
}

/// The Via value of a message that came with `prev` over `version` and leaves through us.
pub fn via(prev: Option<&HeaderValue>, version: http::Version) -> HeaderValue {
    let (ours, i) = match version {
        http::Version::HTTP_10 => ("1.0", 0),
        http::Version::HTTP_2 => ("2", 2),
        http::Version::HTTP_3 => ("3", 3),
        _ => ("1.1", 1),
    };
    // Built once: `from_static` validates its bytes on every call.
    static OURS: [HeaderValue; 4] = [
        HeaderValue::from_static(concat!("1.0 switchyard/", env!("CARGO_PKG_VERSION"))),
        HeaderValue::from_static(concat!("1.1 switchyard/", env!("CARGO_PKG_VERSION"))),
        HeaderValue::from_static(concat!("2 switchyard/", env!("CARGO_PKG_VERSION"))),
        HeaderValue::from_static(concat!("3 switchyard/", env!("CARGO_PKG_VERSION"))),
    ];
    prev.and_then(|p| p.to_str().ok())
        .and_then(|prev| HeaderValue::from_str(&format!("{prev}, {ours} {PRODUCT}")).ok())
        .unwrap_or_else(|| OURS[i].clone())
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
