//! Read buffers, recycled per worker thread. A connection holds one only while bytes are
//! on their way; an idle keep-alive connection gives it back, so a thousand idle clients
//! cost a thousand sockets and not a thousand buffers, and a busy worker never mallocs one.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncRead;

/// What one read asks the kernel for: a whole request or response head, or a good slice
/// of a body.
pub const SIZE: usize = 16 * 1024;
/// Reads of a large body: fewer, larger copies (nginx's `proxy_buffers 8 64k` scale).
pub const LARGE: usize = 128 * 1024;
/// Buffers kept per worker.
const KEEP: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

pub fn take() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

/// Keeps `buf` for the next taker when nothing else still points into it and it is of the
/// usual size; otherwise it is simply freed.
pub fn give(mut buf: BytesMut) {
    buf.clear();
    if !buf.try_reclaim(SIZE) || buf.capacity() > 2 * SIZE {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(buf);
        }
    });
}

/// Reads what `io` has into `buf`, taking a pooled buffer if it holds none and growing it by
/// `want` when less than a quarter of that is free.
pub fn poll_read<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() == 0 {
        *buf = take();
    }
    if buf.capacity() - buf.len() < want / 4 {
        buf.reserve(want);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}
