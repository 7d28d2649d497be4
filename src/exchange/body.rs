//! Bodies the gateway makes itself (plugin answers, gateway errors), in the frames every
//! body is made of: data, then optionally trailers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;

/// One piece of a body.
#[derive(Debug)]
pub enum Frame {
    Data(Bytes),
    /// Header fields after the body (gRPC's status, for one); the last frame when present.
    Trailers(HeaderMap),
}

/// A body produced piece by piece, for answers that are not in memory at once.
pub trait Source: Send {
    /// The next frame; `None` at the end.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Frame>>>;

    /// The length of the data, when known before reading.
    fn length(&self) -> Option<u64> {
        None
    }
}

pub enum Body {
    Empty,
    Full(Bytes),
    Stream(Pin<Box<dyn Source>>),
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(b.into())
    }

    /// The data's length, when known before reading.
    pub fn length(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::Stream(s) => s.length(),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}
