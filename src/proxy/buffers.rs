//! Read buffers, header maps and head buffers (a request's to the upstream, a response's to
//! the client), recycled per worker thread. A connection holds a buffer only while bytes are
//! on their way; an idle keep-alive connection gives it back, so a thousand idle clients cost
//! a thousand sockets and not a thousand buffers. A busy worker mallocs none of them: the
//! buffers are kilobytes, which glibc serves only from its slow path.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::HeaderMap;
use tokio::io::AsyncRead;

/// What one read asks the kernel for: a whole request or response head, or a good slice
/// of a body.
pub const SIZE: usize = 16 * 1024;
/// Reads of a large body: fewer, larger copies (nginx's `proxy_buffers 8 64k` scale).
pub const LARGE: usize = 128 * 1024;
/// Buffers kept per worker: enough for a worker busy with several hundred requests, each
/// holding one on the client's leg and one on the upstream's, not to go to malloc (at 256
/// connections and a pool of 256, nearly every request did). glibc keeps freed buffers
/// resident anyway, so the larger pool costs little memory.
const KEEP: usize = 1024;

/// Header maps kept per worker, and the largest kept (in entries).
const KEEP_MAPS: usize = 512;
const MAP_ENTRIES: usize = 64;

/// Head buffers kept per worker, and the largest kept.
const KEEP_HEADS: usize = 256;
const HEAD_BYTES: usize = 4 * 1024;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer to write a head into (a response's with its body when that is small); it goes
/// back to the worker's pool when dropped, unless it grew large.
pub struct HeadBuf(pub Vec<u8>);

impl HeadBuf {
    pub fn take() -> Self {
        HeadBuf(
            HEADS
                .with(|h| h.borrow_mut().pop())
                .unwrap_or_else(|| Vec::with_capacity(512)),
        )
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        if self.0.capacity() > HEAD_BYTES {
            return;
        }
        let mut head = std::mem::take(&mut self.0);
        head.clear();
        HEADS.with(|h| {
            let mut h = h.borrow_mut();
            if h.len() < KEEP_HEADS {
                h.push(head);
            }
        });
    }
}

/// A buffer of at least `SIZE` bytes. One still shared when it was given back (a parsed head
/// points into it) is taken only once that head is gone; until then it is skipped.
pub fn take() -> BytesMut {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        while let Some(mut buf) = f.pop() {
            if buf.try_reclaim(SIZE) {
                return Some(buf);
            }
        }
        None
    })
    .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

/// Keeps `buf` for a later taker when it is of the usual size. The head parsed from it may
/// still be in use (a response head is written after its connection went back to the
/// pool), so whether it can be reused is settled when it is taken.
pub fn give(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() > 2 * SIZE {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(buf);
        }
    });
}

/// An empty header map, with room for `capacity` headers when a fresh one is made.
pub fn header_map(capacity: usize) -> HeaderMap {
    MAPS.with(|m| m.borrow_mut().pop())
        .unwrap_or_else(|| HeaderMap::with_capacity(capacity))
}

/// Keeps a map that is done with (its values are dropped now) for the next head.
pub fn recycle(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAP_ENTRIES {
        return;
    }
    map.clear();
    MAPS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < KEEP_MAPS {
            m.push(map);
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
