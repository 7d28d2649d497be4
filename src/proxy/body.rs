//! The one body type the proxy moves: nothing, bytes the gateway made, the client's request
//! body, an upstream's response body, or a body a plugin streams; all but the bytes are
//! streamed piece by piece as they arrive (never collected).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame as HttpFrame, SizeHint};

use super::client::UpstreamBody;
use super::server::RequestBody;
use crate::exchange::body::{Body, Frame, Source};

pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    /// The client's request body, read from its connection on demand.
    Request(RequestBody),
    /// An upstream's response, which returns its connection to the pool when done.
    Upstream(UpstreamBody),
    /// A body a plugin produces piece by piece.
    Stream(Pin<Box<dyn Source>>),
}

impl From<Body> for ProxyBody {
    fn from(b: Body) -> Self {
        match b {
            Body::Empty => ProxyBody::Empty,
            Body::Full(b) => ProxyBody::Full(Some(b)),
            Body::Stream(s) => ProxyBody::Stream(s),
        }
    }
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(b.into()))
    }

    /// An upstream response's header lines as they came, when its head was kept raw
    /// (`UpstreamBody::raw_head`).
    pub fn raw_head(&self) -> Option<&super::http1::RawHeaders> {
        match self {
            ProxyBody::Upstream(u) => u.raw_head(),
            _ => None,
        }
    }

    /// Takes the raw header lines off an upstream body, whose head then goes out from its
    /// map like any other.
    pub fn take_raw_head(&mut self) -> Option<Box<super::http1::RawHeaders>> {
        match self {
            ProxyBody::Upstream(u) => u.take_raw_head(),
            _ => None,
        }
    }

    /// The exact length, when it is known before reading.
    pub fn length(&self) -> Option<u64> {
        match self {
            ProxyBody::Empty => Some(0),
            ProxyBody::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Request(r) => r.length(),
            ProxyBody::Upstream(u) => u.length(),
            ProxyBody::Stream(s) => s.length(),
        }
    }

    /// The body is in memory, so the request carrying it can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self, ProxyBody::Empty | ProxyBody::Full(_))
    }

    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        match self {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(Ok)),
            ProxyBody::Request(r) => r.poll_data(cx),
            ProxyBody::Upstream(u) => u.poll_data(cx),
            // HTTP/1 carries no trailers here: they are dropped.
            ProxyBody::Stream(s) => loop {
                match std::task::ready!(s.as_mut().poll_frame(cx)) {
                    Some(Ok(Frame::Data(d))) => return Poll::Ready(Some(Ok(d))),
                    Some(Ok(Frame::Trailers(_))) => continue,
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => return Poll::Ready(None),
                }
            },
        }
    }

    /// The next piece of the body; `None` at its end.
    pub async fn data(&mut self) -> Option<std::io::Result<Bytes>> {
        poll_fn(|cx| self.poll_data(cx)).await
    }
}

/// For the admin listener, which hyper serves.
impl HttpBody for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<HttpFrame<Bytes>, std::io::Error>>> {
        self.get_mut()
            .poll_data(cx)
            .map(|d| d.map(|r| r.map(HttpFrame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Request(r) => r.length() == Some(0),
            ProxyBody::Upstream(u) => u.is_end(),
            ProxyBody::Stream(s) => s.length() == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.length() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
