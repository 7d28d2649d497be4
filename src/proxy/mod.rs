//! The proxy: the one pipeline every request takes (`pipeline`) with the forward step of each
//! kind of route (`kong`, `ocelot`, `aggregate`) and where it goes upstream (`upstream`: a
//! service's destination, balancing, retries); underneath, the protocol engine that knows
//! sockets and HTTP/1 framing (`server` for clients, `client` and its pools for upstreams,
//! `http1` on the wire), header rules (`headers`) and the body type it moves (`body`).
//!
//! ```text
//! server ─▶ pipeline ─▶ kong | ocelot | aggregate ─▶ upstream ─▶ client
//!        ◀─ response head, body, log ◀─────────────────────────────┘
//! ```

pub mod aggregate;
pub mod body;
mod buffers;
pub mod client;
pub mod headers;
pub mod http1;
pub mod kong;
pub mod ocelot;
pub mod pipeline;
pub mod server;
mod stream;
pub mod tls;
pub mod upstream;

use std::future::poll_fn;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Poll, ready};

use std::sync::Arc;

use http::HeaderValue;

use crate::ip::RealIp;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

/// How long one write may wait for the peer to take bytes, when a timer is given.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes every slice, with as few syscalls as the socket allows. With a timer, a peer
/// that takes nothing for `WRITE_TIMEOUT` fails the write; the timer is armed only when a
/// write has to wait.
async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: &mut [&[u8]],
    mut timer: Option<Pin<&mut Sleep>>,
) -> std::io::Result<()> {
    let mut slices: smallvec::SmallVec<[IoSlice<'_>; 4]> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let mut armed = false;
        let n = poll_fn(|cx| match Pin::new(&mut *w).poll_write_vectored(cx, rest) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let Some(t) = timer.as_mut() else {
                    return Poll::Pending;
                };
                if !armed {
                    t.as_mut()
                        .reset(tokio::time::Instant::now() + WRITE_TIMEOUT);
                    armed = true;
                }
                ready!(t.as_mut().poll(cx));
                Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
            }
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// A timeout that a long-lived connection restarts on every exchange and every read
/// without touching the timer wheel: its timer stays registered and is pushed back only
/// when it fires before the deadline that is current then (at most once per timeout).
pub struct Deadline {
    timer: Pin<Box<Sleep>>,
    due: Instant,
    timeout: std::time::Duration,
}

impl Deadline {
    pub fn new(timeout: std::time::Duration) -> Self {
        let due = Instant::now() + timeout;
        Deadline {
            timer: Box::pin(tokio::time::sleep_until(due)),
            due,
            timeout,
        }
    }

    /// A full `timeout` from now.
    pub fn restart(&mut self, timeout: std::time::Duration) {
        self.timeout = timeout;
        self.due = Instant::now() + timeout;
        // Later deadlines wait for the timer to fire; an earlier one (a shorter timeout
        // than the last user's) must move it now.
        if self.due < self.timer.deadline() {
            self.timer.as_mut().reset(self.due);
        }
    }

    /// Something arrived: the same timeout again, from now.
    pub fn progress(&mut self) {
        self.restart(self.timeout);
    }

    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// Ready once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.due {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(self.due);
        }
    }
}

/// A connection as the pipeline needs to know it.
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// Built once per connection, reused by every request on it.
    pub local_port_header: HeaderValue,
    peer_ip: HeaderValue,
    /// Set when the peer is a trusted proxy: it may name the client it forwards for.
    pub real_ip: Option<Arc<RealIp>>,
    /// What the TLS handshake told (SNI, ALPN), on a TLS connection.
    pub handshake: Option<crate::exchange::Tls>,
}

impl Conn {
    /// `real_ip` is kept only when it trusts `peer`.
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        real_ip: Option<&Arc<RealIp>>,
    ) -> Self {
        Conn {
            peer,
            local,
            tls,
            local_port_header: HeaderValue::from(local.port()),
            peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            real_ip: real_ip.filter(|r| r.trusts(peer.ip())).cloned(),
            handshake: None,
        }
    }

    /// The client's address as plugins see it: the peer's, or the one a trusted peer names.
    pub fn client(&self, headers: &http::HeaderMap) -> SocketAddr {
        match self.real_ip.as_ref().and_then(|r| r.client(headers)) {
            Some(ip) => SocketAddr::new(ip, 0),
            None => self.peer,
        }
    }
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
    /// What routing sees of the handshake: `None` on a plain connection, else the server
    /// name asked for (empty when the client sent none).
    pub fn sni_for_routing(&self) -> Option<&str> {
        let tls = self.handshake.as_ref()?;
        Some(tls.sni.as_deref().unwrap_or(""))
    }
    pub fn peer_ip_header(&self) -> HeaderValue {
        self.peer_ip.clone()
    }
}
