//! The proxy: listeners and workers (`server`), the per-request pipeline (`handler`), the
//! upstream client and its pools (`client`), header rules (`headers`), bodies and the
//! gateway's own responses.

pub mod aggregate;
pub mod body;
mod buffers;
pub mod client;
pub mod handler;
pub mod headers;
pub mod http1;
pub mod respond;
pub mod server;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Poll, ready};

use bytes::Bytes;
use http::HeaderValue;
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

/// A connection as the handler needs to know it.
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// Built once per connection, reused by every request on it.
    pub local_port_header: HeaderValue,
    peer_ip: HeaderValue,
}

impl Conn {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        Conn {
            peer,
            local,
            tls,
            local_port_header: HeaderValue::from(local.port()),
            peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
        }
    }
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
    pub fn peer_ip_header(&self) -> HeaderValue {
        self.peer_ip.clone()
    }
}

/// 32 hex digits, unique enough to find a request in the logs; made without locks. Ids are
/// made 64 at a time into one buffer per worker and each is a slice of it, held as the header
/// value it goes out as: putting it on both legs costs two reference counts, not two
/// allocations and two validations.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

const ID_LEN: usize = 32;
const IDS_PER_BLOCK: usize = 64;

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let addr = &t as *const u64 as u64;
        (t ^ addr.rotate_left(32)) | 1
    });
    static IDS: RefCell<Bytes> = const { RefCell::new(Bytes::new()) };
}

fn next_random() -> u64 {
    RNG.with(|r| {
        // xorshift64*
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545F4914F6CDD1D)
    })
}

fn id_block() -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut block = vec![0u8; ID_LEN * IDS_PER_BLOCK];
    for digits in block.chunks_mut(16) {
        let v = next_random();
        for (i, c) in digits.iter_mut().enumerate() {
            *c = HEX[((v >> (i * 4)) & 0xf) as usize];
        }
    }
    Bytes::from(block)
}

impl RequestId {
    pub fn new() -> Self {
        let id = IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if ids.is_empty() {
                *ids = id_block();
            }
            ids.split_to(ID_LEN)
        });
        RequestId(HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("0")))
    }
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}
