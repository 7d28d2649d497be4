//! Where a request goes upstream: a service's destination, either one address or an upstream's
//! targets balanced by weighted round-robin, each with the Host header that goes with it.
//!
//! service ─▶ `Dest` ─▶ `Peer` (one per try: retries move to the next target) ─▶ `client`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{self, HeaderName, HeaderValue};

use super::client::{self, Outgoing, UpstreamError};
use crate::snapshot::ServiceRt;

pub enum Dest {
    Direct(Peer),
    Balanced(Arc<Balancer>),
}

/// One upstream address and the Host header that goes with it.
#[derive(Clone)]
pub struct Peer {
    pub host: Arc<str>,
    pub port: u16,
    pub host_header: HeaderValue,
}

impl Peer {
    pub fn new(host: &str, port: u16, host_header_name: &str, tls: bool) -> Peer {
        Peer {
            host: host.into(),
            port,
            host_header: host_header(host_header_name, port, tls),
        }
    }
}

/// Weighted round-robin over an upstream's targets. Its position is kept across reloads
/// (`snapshot::State`), so a reload does not send the next request to the first target.
pub struct Balancer {
    pub name: String,
    pub peers: Vec<Peer>,
    /// Peer indices, each repeated weight/gcd times, interleaved.
    wheel: Vec<u32>,
    position: Arc<AtomicUsize>,
}

impl Balancer {
    pub fn new(
        name: String,
        peers: Vec<Peer>,
        weights: &[u32],
        position: Arc<AtomicUsize>,
    ) -> Self {
        Balancer {
            name,
            peers,
            wheel: wheel(weights),
            position,
        }
    }

    /// The next peer, or `None` when every target has weight 0.
    pub fn next(&self) -> Option<&Peer> {
        if self.wheel.is_empty() {
            return None;
        }
        let i = self.position.fetch_add(1, Ordering::Relaxed);
        Some(&self.peers[self.wheel[i % self.wheel.len()] as usize])
    }
}

impl Dest {
    /// The peer for the next try, or `None` when an upstream has no target to give.
    pub fn next(&self) -> Option<&Peer> {
        match self {
            Dest::Direct(p) => Some(p),
            Dest::Balanced(b) => b.next(),
        }
    }

    /// Every address, for people (`explain`) and `{DownstreamBaseUrl}`.
    pub fn peers(&self) -> &[Peer] {
        match self {
            Dest::Direct(p) => std::slice::from_ref(p),
            Dest::Balanced(b) => &b.peers,
        }
    }
}

/// `host[:port]`, the port left out when it is the scheme's default.
fn host_header(host: &str, port: u16, tls: bool) -> HeaderValue {
    let default = if tls { 443 } else { 80 };
    let text = if port == default {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("invalid"))
}

fn wheel(weights: &[u32]) -> Vec<u32> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = weights
        .iter()
        .copied()
        .filter(|w| *w > 0)
        .fold(0, gcd)
        .max(1);
    let mut left: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let mut out = Vec::new();
    // Interleave instead of runs, so consecutive requests spread across targets.
    while left.iter().any(|w| *w > 0) {
        for (i, w) in left.iter_mut().enumerate() {
            if *w > 0 {
                out.push(i as u32);
                *w -= 1;
            }
        }
    }
    out
}

/// Connects to the service's destination, again on connection errors as `retries` allows
/// (the next balancer target each time), then sends the request once. With `raw_head` the
/// response's header lines stay as they came (`UpstreamBody::raw_head`).
///
/// Not an `async fn`, which would keep a second copy of its arguments in its future, and
/// inlined, as the pipeline's `handle` is.
#[inline(always)]
#[allow(clippy::manual_async_fn)]
pub fn send_with_retries<'a, B: Outgoing>(
    service: &'a ServiceRt,
    preserve_host: bool,
    parts: &'a mut http::request::Parts,
    added: &'a [(&'static HeaderName, HeaderValue)],
    body: &'a mut B,
    client_host: Option<HeaderValue>,
    raw_head: bool,
) -> impl Future<Output = Result<http::Response<client::UpstreamBody>, UpstreamError>> + 'a {
    async move {
        let mut tries_left = service.retries;
        loop {
            let Some(peer) = service.dest.next() else {
                let addr = match &service.dest {
                    Dest::Balanced(b) => b.name.clone(),
                    Dest::Direct(p) => p.host.to_string(),
                };
                return Err(UpstreamError::Connect {
                    addr,
                    source: std::io::Error::other("no target with a positive weight"),
                });
            };
            let host = match (&client_host, preserve_host) {
                (Some(h), true) => h.clone(),
                _ => peer.host_header.clone(),
            };
            parts.headers.insert(header::HOST, host);
            // The upstream's server name is the Host it gets (Kong's `$upstream_host`).
            let sni = match service.tls {
                true => upstream_sni(parts),
                false => "",
            };
            let target = client::Target {
                host: &peer.host,
                port: peer.port,
                tls: service.tls,
                tls_verify: service.tls_verify,
                tls_settings: service.tls_settings.as_deref(),
                sni,
                connect_timeout: service.connect_timeout,
                read_timeout: service.read_timeout,
            };
            // Bound before it is used, so that the checkout's result is gone while the request
            // is sent rather than kept in this future.
            let conn = match client::checkout(&target).await {
                Ok(conn) => conn,
                Err(e) if e.retryable() && tries_left > 0 => {
                    tracing::debug!(error = %e, "retrying upstream");
                    tries_left -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            return conn.send(&target, parts, added, body, raw_head).await;
        }
    }
}

/// The host part of the Host header going upstream.
fn upstream_sni(parts: &http::request::Parts) -> &str {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    crate::config::kong::split_host_port(host).map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::wheel;

    #[test]
    fn wheel_is_weighted_and_interleaved() {
        assert_eq!(wheel(&[100, 100]), vec![0, 1]);
        assert_eq!(wheel(&[200, 100]), vec![0, 1, 0]);
        assert_eq!(wheel(&[0, 50]), vec![1]);
        assert!(wheel(&[0, 0]).is_empty());
    }
}
