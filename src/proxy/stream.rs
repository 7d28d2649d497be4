//! The byte streams a client connection can be: plain TCP, or TLS over TCP. The HTTP/1
//! engine (`server`) is generic over them, so that the plain path is compiled for its own
//! socket halves (readiness without a buffer, splice for large bodies) and pays nothing for
//! TLS being possible.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::server::{BodyReader, Reader, RequestBody};

/// A client connection's stream, split into what the request reader and the response
/// writer each hold.
pub trait ClientStream: Send + 'static {
    type Read: ClientRead;
    type Write: ClientWrite;
    fn split(self) -> (Self::Read, Self::Write);
}

/// The read half of a client connection.
pub trait ClientRead: AsyncRead + Unpin + Send + Sized + 'static {
    /// Whether there is something to read can only be known by reading (TLS: records may
    /// carry no application data); a read that gets nothing then gives its buffer back.
    const READS_TO_KNOW: bool;
    /// Ready once there may be something to read, without taking a buffer.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    /// The request body that reads from this connection.
    fn body(reader: Arc<Mutex<Reader<Self>>>) -> RequestBody;
}

/// The write half of a client connection.
pub trait ClientWrite: AsyncWrite + Unpin + Send {
    /// The socket under it, when bytes may be spliced into it directly (plain TCP).
    fn tcp(&self) -> Option<&TcpStream>;
}

// === impl plain TCP ===

impl ClientStream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl ClientRead for OwnedReadHalf {
    const READS_TO_KNOW: bool = false;
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
    fn body(reader: Arc<Mutex<Reader<Self>>>) -> RequestBody {
        RequestBody::new(BodyReader::Tcp(reader))
    }
}

impl ClientWrite for OwnedWriteHalf {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

// === impl TLS ===

/// A TLS client connection, once its handshake is done.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;
pub type TlsRead = tokio::io::ReadHalf<TlsStream>;
pub type TlsWrite = tokio::io::WriteHalf<TlsStream>;

impl ClientStream for TlsStream {
    type Read = TlsRead;
    type Write = TlsWrite;
    fn split(self) -> (TlsRead, TlsWrite) {
        tokio::io::split(self)
    }
}

impl ClientRead for TlsRead {
    const READS_TO_KNOW: bool = true;
    fn poll_readable(&self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn body(reader: Arc<Mutex<Reader<Self>>>) -> RequestBody {
        RequestBody::new(BodyReader::Tls(reader))
    }
}

impl ClientWrite for TlsWrite {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}
