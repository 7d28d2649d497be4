//! Listeners, workers and client connections. Each worker is one thread with its own
//! single-threaded runtime and its own `SO_REUSEPORT` socket per listen address, so the
//! kernel spreads connections and a request never crosses threads: the upstream pool, the
//! buffers, the random source and the snapshot handle are all worker-local.
//!
//! A client connection is one task: wait until readable (holding no buffer) ─▶ read and
//! parse the head (`http1`) ─▶ then, in one box per request (`exchange`): `handler::handle`
//! (the body is read on demand through `RequestBody`) ─▶ write the response head and stream
//! its body ─▶ discard what is left of the request body ─▶ next request, or close.

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;

use super::stream::{ClientRead, ClientStream, ClientWrite};
use tokio::time::Instant;

use super::Conn;
use super::body::ProxyBody;
use super::buffers;
use super::headers::Stamp;
use super::http1::{self, Decoder, Framing, RequestError, Step};
use super::pipeline::{Exchange, Response, into_proxy};
use crate::exchange::{RequestId, respond};
use crate::gateway::Gateway;
use crate::ip::RealIp;

/// How long a kept-alive connection may sit idle, and how long a client may take to take a
/// response (Kong's nginx: 60 s each). How long it may take to send a request head once
/// some of it came is the gateway's `client_header_timeout` (the same 60 s by default).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Response bodies up to this size leave in the same write as their head.
const COALESCE: u64 = 64 * 1024;
/// What is discarded of a request body nobody read before the connection is closed instead.
const MAX_DISCARD: u64 = 1 << 20;

/// Binds `addr` with `SO_REUSEPORT` so that every worker can bind it too.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds every address once per worker. Port 0 is resolved by the first bind, so all the
/// workers share the one port the kernel picked.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> std::io::Result<(Vec<SocketAddr>, Vec<Vec<std::net::TcpListener>>)> {
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in addrs {
        let first = bind_reuseport(*addr)?;
        let actual = first.local_addr()?;
        bound.push(actual);
        per_worker[0].push(first);
        for w in per_worker.iter_mut().skip(1) {
            w.push(bind_reuseport(actual)?);
        }
    }
    Ok((bound, per_worker))
}

/// Starts the worker threads; they serve until the process exits.
pub fn spawn_workers(
    gateway: Arc<Gateway>,
    listeners: Vec<Vec<std::net::TcpListener>>,
) -> Vec<std::thread::JoinHandle<()>> {
    spawn_workers_tls(gateway, listeners, None)
}

/// TLS listeners, each bound once per worker (`bind_all`), and their configuration.
pub struct TlsListeners {
    pub per_worker: Vec<Vec<std::net::TcpListener>>,
    pub config: Arc<rustls::ServerConfig>,
}

/// Starts the worker threads, each serving its plain listeners and its TLS ones.
pub fn spawn_workers_tls(
    gateway: Arc<Gateway>,
    listeners: Vec<Vec<std::net::TcpListener>>,
    tls: Option<TlsListeners>,
) -> Vec<std::thread::JoinHandle<()>> {
    let (mut tls_per_worker, acceptor) = match tls {
        Some(t) => (
            t.per_worker,
            Some(tokio_rustls::TlsAcceptor::from(t.config)),
        ),
        None => (Vec::new(), None),
    };
    tls_per_worker.resize_with(listeners.len(), Vec::new);
    listeners
        .into_iter()
        .zip(tls_per_worker)
        .enumerate()
        .map(|(i, (ls, tls_ls))| {
            let gw = gateway.clone();
            let acceptor = acceptor.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("worker runtime");
                    rt.block_on(async move {
                        let mut tasks = Vec::new();
                        for l in ls {
                            let l = tokio::net::TcpListener::from_std(l).expect("listener");
                            let real_ip = gw.real_ip.clone();
                            tasks.push(tokio::spawn(accept_loop(gw.clone(), l, real_ip)));
                        }
                        for l in tls_ls {
                            let Some(acceptor) = acceptor.clone() else {
                                break;
                            };
                            let l = tokio::net::TcpListener::from_std(l).expect("listener");
                            let real_ip = gw.real_ip.clone();
                            let accepting =
                                super::tls::accept_loop(gw.clone(), l, real_ip, acceptor);
                            tasks.push(tokio::spawn(accepting));
                        }
                        for t in tasks {
                            let _ = t.await;
                        }
                    });
                })
                .expect("spawn worker")
        })
        .collect()
}

async fn accept_loop(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    real_ip: Option<Arc<RealIp>>,
) {
    loop {
        let (stream, conn) = accept(&listener, real_ip.as_ref(), false).await;
        tokio::spawn(serve(gw.clone(), stream, conn));
    }
}

/// The next client connection of `listener` (plain, or to be handshaken when `tls`).
pub async fn accept(
    listener: &tokio::net::TcpListener,
    real_ip: Option<&Arc<RealIp>>,
    tls: bool,
) -> (tokio::net::TcpStream, Conn) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(peer);
                return (stream, Conn::new(peer, local, tls, real_ip));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A client connection's read side: its socket, what was read and not yet used, and the
/// framing of the current request's body. The connection task and the body it lends the
/// handler share it; they never run at the same time, so its lock is never contended.
pub struct Reader<R = OwnedReadHalf> {
    io: R,
    buf: BytesMut,
    body: Decoder,
    /// The request body broke (`ClientBodyError`): the connection cannot carry another
    /// request.
    broken: bool,
}

/// The answer's message for a request body the client broke.
pub const CLIENT_BODY_BROKEN: &str = "Bad request: the request body is malformed or incomplete";

/// The client broke its request body: the client's fault, answered 400 when the response
/// has not begun, never blamed on the upstream. Travels inside the `std::io::Error` a body
/// read gives (`ClientBodyError::take` gets it back out).
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// Bad chunked framing: a bad chunk size, a size line or trailers too long.
    #[error("bad request body framing: {0}")]
    Framing(http1::ProtoError),
    /// The client closed its side before the body ended.
    #[error("the client closed the connection before the request body ended")]
    Truncated,
    /// Reading from the client failed (a reset).
    #[error("reading the request body failed: {0}")]
    Read(std::io::Error),
}

impl ClientBodyError {
    fn into_io(self) -> std::io::Error {
        let kind = match &self {
            ClientBodyError::Framing(_) => std::io::ErrorKind::InvalidData,
            ClientBodyError::Truncated => std::io::ErrorKind::UnexpectedEof,
            ClientBodyError::Read(e) => e.kind(),
        };
        std::io::Error::new(kind, self)
    }

    /// The client's error that `e` carries, or `e` itself when it is something else (a
    /// plugin's body hook failing, say).
    pub fn take(e: std::io::Error) -> Result<ClientBodyError, std::io::Error> {
        if !e.get_ref().is_some_and(|i| i.is::<ClientBodyError>()) {
            return Err(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|i| i.downcast::<ClientBodyError>()) {
            Some(Ok(c)) => Ok(*c),
            _ => Err(kind.into()),
        }
    }
}

fn lock<R>(r: &Mutex<Reader<R>>) -> std::sync::MutexGuard<'_, Reader<R>> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R: ClientRead> Reader<R> {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() == 0 {
            // Idle: take a buffer only once there is something to read.
            ready!(self.io.poll_readable(cx))?;
        }
        let read = buffers::poll_read(&mut self.io, &mut self.buf, cx, buffers::SIZE);
        if R::READS_TO_KNOW && read.is_pending() && self.buf.is_empty() {
            // Nothing came after all: an idle connection holds no buffer.
            buffers::give(std::mem::take(&mut self.buf));
        }
        read
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let failed = loop {
            if self.broken {
                return Poll::Ready(Some(Err(ClientBodyError::Truncated.into_io())));
            }
            match self.body.decode(&mut self.buf) {
                Ok(Step::Data(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(e) => break ClientBodyError::Framing(e),
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => match self.body.eof() {
                    Ok(()) => return Poll::Ready(None),
                    Err(_) => break ClientBodyError::Truncated,
                },
                Ok(_) => {}
                Err(e) => break ClientBodyError::Read(e),
            }
        };
        self.broken = true;
        Poll::Ready(Some(Err(failed.into_io())))
    }

    /// Between requests: the buffer goes back to the worker unless a pipelined request
    /// is already in it.
    fn idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            buffers::give(std::mem::take(&mut self.buf));
        }
    }
}

/// The client's request body, read from its connection as the handler asks for it.
pub struct RequestBody {
    reader: BodyReader,
}

/// The connection a request body is read from, by kind of stream: the body type stays one
/// for every listener, and the plain one pays a branch, not a call through a pointer.
pub(super) enum BodyReader {
    Tcp(Arc<Mutex<Reader>>),
    Tls(Arc<Mutex<Reader<super::stream::TlsRead>>>),
}

impl RequestBody {
    pub(super) fn new(reader: BodyReader) -> Self {
        RequestBody { reader }
    }

    /// What is left of a body with a Content-Length; `None` for a chunked one.
    pub fn length(&self) -> Option<u64> {
        match &self.reader {
            BodyReader::Tcp(r) => lock(r).body.remaining(),
            BodyReader::Tls(r) => lock(r).body.remaining(),
        }
    }
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        match &self.reader {
            BodyReader::Tcp(r) => lock(r).poll_body(cx),
            BodyReader::Tls(r) => lock(r).poll_body(cx),
        }
    }
}

/// Moves the client timer's deadline to a full timeout from now; within a second of that
/// already, it is left alone, so a busy connection does not touch the timer wheel.
fn arm(timer: Pin<&mut tokio::time::Sleep>) {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    if deadline.saturating_duration_since(timer.deadline()) > Duration::from_secs(1) {
        timer.reset(deadline);
    }
}

/// A client connection's task. Not an `async fn`, which would keep a second copy of its
/// arguments in the task: the block uses them in place.
#[allow(clippy::manual_async_fn)]
pub(super) fn serve<S: ClientStream>(
    gw: Arc<Gateway>,
    stream: S,
    conn: Conn,
) -> impl Future<Output = ()> {
    async move {
        let (r, mut w) = stream.split();
        let reader = Arc::new(Mutex::new(Reader {
            io: r,
            buf: BytesMut::new(),
            body: Decoder::Done,
            broken: false,
        }));
        let timer = tokio::time::sleep(CLIENT_TIMEOUT);
        tokio::pin!(timer);
        loop {
            // What one request needs (its head, the handler's and the writer's state) lives
            // in one box per request, and the task holds only this loop's state: an idle
            // connection's task is a few hundred bytes. The box is the request's largest
            // cost in cache misses with hundreds in flight: its 2.3 KB are copied whole into
            // memory another request used last (README, Performance), which is why the
            // futures under it keep nothing twice. Both outcomes are boxed as one type so
            // that the read's result is gone before the request runs; awaited inside the
            // match, it would stay in the task.
            let request: Pin<Box<dyn Future<Output = Next> + Send + '_>> =
                match read_head(&reader, gw.client_header_timeout, timer.as_mut()).await {
                    Ok(Some(head)) => {
                        Box::pin(exchange(&gw, &conn, head, &reader, &mut w, timer.as_mut()))
                    }
                    Ok(None) => return,
                    Err(e) => Box::pin(refuse(e, &mut w, timer.as_mut())),
                };
            match request.await {
                Next::Request => {}
                Next::Close => return,
                Next::Linger => return Box::pin(linger(w, &reader)).await,
            }
        }
    }
}

/// What a connection does after a response.
enum Next {
    /// Waits for the next request.
    Request,
    /// Closes at once.
    Close,
    /// Closes, reading for a moment what the client may still be sending (`linger`).
    Linger,
}

/// One request on a client connection: the handler, then the response, then what is left
/// of the request body. The head is taken apart before the `async` block, which would
/// otherwise keep it beside its parts.
fn exchange<'a, R: ClientRead, W: ClientWrite>(
    gw: &'a Gateway,
    conn: &'a Conn,
    head: http1::RequestHead,
    reader: &'a Arc<Mutex<Reader<R>>>,
    w: &'a mut W,
    mut timer: Pin<&'a mut tokio::time::Sleep>,
) -> impl Future<Output = Next> + 'a {
    let http1::RequestHead {
        mut parts,
        decoder,
        mut keep_alive,
        expect_continue,
        wire,
    } = head;
    let has_body = !decoder.is_done();
    lock(reader).body = decoder;
    if expect_continue {
        parts.headers.remove(header::EXPECT);
    }
    let head_request = parts.method == Method::HEAD;
    let version = parts.version;
    let mut body = if has_body {
        ProxyBody::Request(R::body(reader.clone()))
    } else {
        ProxyBody::Empty
    };
    async move {
        // Answered here, so the upstream never waits for a 100 of its own.
        if expect_continue
            && has_body
            && w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
        {
            return Next::Close;
        }
        // Each request takes the snapshot current when it starts: a reload never changes a
        // request in flight, and the next request sees the new config.
        let snap = gw.snapshot();
        let id = RequestId::new();
        let mut x = Exchange::new(&snap, conn, &id);
        let resp = x.handle(&mut parts, &mut body, &wire).await;

        // A body nobody read (the request was refused, or the upstream answered early) is
        // discarded when small; a large one ends the connection, and so does a broken one.
        let (unread, broken) = {
            let r = lock(reader);
            (r.body.remaining(), r.broken)
        };
        let discard = match unread {
            _ if broken => {
                keep_alive = false;
                false
            }
            Some(0) => false,
            Some(n) if n > MAX_DISCARD => {
                keep_alive = false;
                false
            }
            _ => true,
        };
        let mut status = resp.status();
        let leaving = Leaving {
            version,
            head_request,
            keep_alive: &mut keep_alive,
            status: &mut status,
        };
        let written = write_response(w, resp, &mut x, leaving, timer.as_mut()).await;
        x.log(status, *written.as_ref().unwrap_or(&0));
        if written.is_err() {
            return Next::Close;
        }
        if !keep_alive {
            return if unread == Some(0) {
                Next::Close
            } else {
                Next::Linger
            };
        }
        if discard && !discard_body(reader, timer.as_mut()).await {
            return Next::Close;
        }
        lock(reader).idle();
        Next::Request
    }
}

/// Answers a request head that could not be read with its 4xx; the connection closes.
async fn refuse<W: ClientWrite>(
    e: RequestError,
    w: &mut W,
    timer: Pin<&mut tokio::time::Sleep>,
) -> Next {
    let id = RequestId::new();
    let resp = into_proxy(respond::error(e.status(), &e.to_string(), id.as_str()));
    let mut keep_alive = false;
    let mut status = e.status();
    let leaving = Leaving {
        version: Version::HTTP_11,
        head_request: false,
        keep_alive: &mut keep_alive,
        status: &mut status,
    };
    match write_response(w, resp, &mut Stamp::default(), leaving, timer).await {
        Ok(_) => Next::Linger,
        Err(_) => Next::Close,
    }
}

/// Waits for and parses the next request head. `Ok(None)`: the client closed the
/// connection or let it sit idle past the timeout. A head begun and not finished within
/// `header_timeout` is `RequestError::Timeout` (408, as HAProxy answers); a connection with
/// no byte of a new request closes silently (HAProxy's `http-ignore-probes`, nginx).
async fn read_head<R: ClientRead>(
    reader: &Mutex<Reader<R>>,
    header_timeout: Duration,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> Result<Option<http1::RequestHead>, RequestError> {
    arm(timer.as_mut());
    let mut begun = false;
    loop {
        {
            let mut r = lock(reader);
            if !r.buf.is_empty() {
                if let Some(h) = http1::parse_request(&mut r.buf)? {
                    return Ok(Some(h));
                }
                if !begun {
                    // Part of a head: from now on it has `header_timeout` to come whole.
                    // Most heads come in one read and never get here.
                    begun = true;
                    let due = Instant::now() + header_timeout;
                    let idle_due = timer.deadline();
                    if due < idle_due || due - idle_due > Duration::from_secs(1) {
                        timer.as_mut().reset(due);
                    }
                }
            }
        }
        let filled = tokio::select! {
            biased;
            n = poll_fn(|cx| lock(reader).poll_fill(cx)) => n,
            _ = timer.as_mut() => {
                return if begun { Err(RequestError::Timeout) } else { Ok(None) };
            }
        };
        match filled {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Reads the rest of a request body nobody wanted, so that the next request can follow.
async fn discard_body<R: ClientRead>(
    reader: &Mutex<Reader<R>>,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> bool {
    arm(timer.as_mut());
    let mut seen = 0u64;
    loop {
        let piece = tokio::select! {
            biased;
            p = poll_fn(|cx| lock(reader).poll_body(cx)) => p,
            _ = timer.as_mut() => return false,
        };
        match piece {
            None => return true,
            Some(Ok(b)) => {
                seen += b.len() as u64;
                if seen > MAX_DISCARD {
                    return false;
                }
            }
            Some(Err(_)) => return false,
        }
    }
}

/// Closes a connection the client may still be sending on: our side is shut first and
/// what arrives is read and dropped for a moment, because closing with unread bytes would
/// reset the connection and could destroy the response before the client reads it.
async fn linger<R: ClientRead, W: ClientWrite>(mut w: W, reader: &Mutex<Reader<R>>) {
    let _ = w.shutdown().await;
    let drain = async {
        loop {
            let n = poll_fn(|cx| {
                let mut r = lock(reader);
                r.buf.clear();
                r.poll_fill(cx)
            })
            .await;
            if !matches!(n, Ok(n) if n > 0) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// What writing a response needs from the request it answers: the gateway's stamp, and the
/// plugins' body hooks when they filter the body (`Exchange`); a refused head has only a
/// stamp.
pub trait Answering {
    fn stamp(&self) -> &Stamp;
    /// The body goes through `chunk` piece by piece.
    fn filters(&self) -> bool {
        false
    }
    /// One piece through the body hooks: what goes out now (`None` while they hold it).
    fn chunk(&mut self, data: Bytes, _end: bool) -> Result<Option<Bytes>, String> {
        Ok(Some(data))
    }
}

impl Answering for Stamp {
    fn stamp(&self) -> &Stamp {
        self
    }
}

impl Answering for Exchange<'_> {
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
    fn filters(&self) -> bool {
        self.filters_response_body()
    }
    fn chunk(&mut self, data: Bytes, end: bool) -> Result<Option<Bytes>, String> {
        self.response_chunk(data, end)
    }
}

/// How a response leaves: the request's version and method, and whether the connection
/// stays open after it (cleared when the response must be closed-delimited).
struct Leaving<'k> {
    version: Version,
    head_request: bool,
    keep_alive: &'k mut bool,
    /// The status that went out, for the log: a 502 replaces a response whose upstream
    /// body broke before its head was written.
    status: &'k mut StatusCode,
}

/// Writes a response: the head, then the body as it comes, framed by its length when
/// known and chunked otherwise (or until close, for an HTTP/1.0 client). What is already
/// at hand of the body leaves in the same write as the head. Returns the body bytes written.
async fn write_response<A: Answering, W: ClientWrite>(
    w: &mut W,
    resp: Response,
    answering: &mut A,
    leaving: Leaving<'_>,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> std::io::Result<u64> {
    let Leaving {
        version,
        head_request,
        keep_alive,
        status: written_status,
    } = leaving;
    let (parts, mut body) = resp.into_parts();
    *written_status = parts.status;
    let status = parts.status;
    let bodyless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if answering.filters() && !bodyless && !head_request {
        let leaving = Leaving {
            version,
            head_request,
            keep_alive,
            status: written_status,
        };
        return Box::pin(write_filtered(w, parts, body, answering, leaving, timer)).await;
    }
    let framing = if bodyless {
        Framing::None
    } else if head_request {
        // The length a GET would have, when the headers do not say it already.
        match body.length() {
            Some(n)
                if !parts.headers.contains_key(header::CONTENT_LENGTH)
                    && !matches!(body, ProxyBody::Upstream(_)) =>
            {
                Framing::Length(n)
            }
            _ => Framing::None,
        }
    } else {
        match body.length() {
            Some(n) => Framing::Length(n),
            None if version == Version::HTTP_11 => Framing::Chunked,
            None => {
                *keep_alive = false;
                Framing::None
            }
        }
    };
    // From the worker's pool, not the connection's own: an idle connection would keep it,
    // and with hundreds of connections in flight it would be cold at every response.
    let mut head = buffers::HeadBuf::take();
    let out = &mut head.0;
    let lines = match body.raw_head() {
        Some(raw) => http1::Lines::Raw(raw, &answering.stamp().response),
        None => http1::Lines::Map(&parts.headers),
    };
    http1::write_response_head(
        out,
        status,
        version,
        lines,
        &answering.stamp().headers(),
        framing,
        *keep_alive,
        &date(),
    );
    buffers::recycle(parts.headers);
    if head_request || bodyless {
        super::write_all(w, &mut [out], Some(timer)).await?;
        return Ok(0);
    }
    let chunked = framing == Framing::Chunked;
    // An upstream body that breaks before the head has gone out (cut short, bad framing)
    // is answered 502 instead; once the head is out, the connection is cut, so that the
    // client sees a body short of its length, or without its last chunk.
    let leaving = Leaving {
        version,
        head_request,
        keep_alive,
        status: written_status,
    };
    let mut next = match &mut body {
        ProxyBody::Upstream(u) => match u.take_buffered().transpose() {
            Ok(d) => d,
            Err(e) => return upstream_broke(w, e.into(), answering, leaving, timer).await,
        },
        ProxyBody::Full(b) => b.take(),
        _ => None,
    };
    // A small body that did not come whole with its head is waited for, so that the
    // client still gets the response in one write.
    if framing.small_body(COALESCE) && matches!(body, ProxyBody::Upstream(_)) {
        let head_len = out.len();
        if let Some(d) = next.take() {
            out.extend_from_slice(&d);
        }
        while let Some(d) = body.data().await {
            match d {
                Ok(d) => out.extend_from_slice(&d),
                Err(e) => return upstream_broke(w, e, answering, leaving, timer).await,
            }
        }
        let sent = (out.len() - head_len) as u64;
        super::write_all(w, &mut [out], Some(timer)).await?;
        return Ok(sent);
    }
    let mut sent = 0u64;
    if let ProxyBody::Upstream(u) = &mut body
        && let Framing::Length(total) = framing
    {
        // Head and what came with it first; then the rest, kernel to kernel, when it can.
        let first = next.take().unwrap_or_default();
        super::write_all(w, &mut [out, &first], Some(timer.as_mut())).await?;
        sent += first.len() as u64;
        out.clear();
        if let Some(tcp) = w.tcp()
            && let Some(done) = u.splice_to(tcp, CLIENT_TIMEOUT).await
        {
            return done.map(|()| total);
        }
    }
    let mut pending: &[u8] = out;
    let mut size_line = Vec::new();
    loop {
        let data = match next.take() {
            Some(d) => d,
            None => match body.data().await {
                None => break,
                Some(Ok(d)) => d,
                Some(Err(e)) if !pending.is_empty() => {
                    return upstream_broke(w, e, answering, leaving, timer).await;
                }
                Some(Err(e)) => return Err(e),
            },
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if chunked {
            size_line.clear();
            http1::chunk_size_line(data.len(), &mut size_line);
            super::write_all(
                w,
                &mut [pending, &size_line, &data, b"\r\n"],
                Some(timer.as_mut()),
            )
            .await?;
        } else {
            super::write_all(w, &mut [pending, &data], Some(timer.as_mut())).await?;
        }
        pending = &[];
    }
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    super::write_all(w, &mut [pending, end], Some(timer)).await?;
    Ok(sent)
}

/// The upstream's body broke before any of the response went out: the client gets a 502
/// in its place.
async fn upstream_broke<A: Answering, W: ClientWrite>(
    w: &mut W,
    e: std::io::Error,
    answering: &A,
    leaving: Leaving<'_>,
    timer: Pin<&mut tokio::time::Sleep>,
) -> std::io::Result<u64> {
    let id = answering.stamp().request_id.clone();
    let id_str = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::warn!(request_id = id_str, error = %e, "upstream response body broken before the head was sent");
    let resp = into_proxy(respond::error(
        StatusCode::BAD_GATEWAY,
        "An invalid response was received from the upstream server",
        id_str,
    ));
    let mut plain = Stamp {
        request_id: id,
        ..Stamp::default()
    };
    Box::pin(write_response(w, resp, &mut plain, leaving, timer)).await
}

/// A response whose body plugins filter: the body's pieces go through their hooks before
/// they are written. The head waits for the first piece to come out of them: when a hook
/// held the whole body, its length is known and goes in the head; otherwise the body is
/// chunked (or close-delimited for HTTP/1.0), since hooks may change its length. A hook's
/// buffer overrun before the head is out answers 502; after it, the connection is cut.
async fn write_filtered<A: Answering, W: ClientWrite>(
    w: &mut W,
    mut parts: http::response::Parts,
    mut body: ProxyBody,
    answering: &mut A,
    leaving: Leaving<'_>,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> std::io::Result<u64> {
    let overrun = |plugin: String| {
        std::io::Error::other(format!(
            "response body over the buffer limit of plugin {plugin}"
        ))
    };
    // Pull until the hooks give something out or the body ends.
    let (first, ended) = loop {
        let (data, end) = match body.data().await {
            Some(d) => (d?, false),
            None => (Bytes::new(), true),
        };
        match answering.chunk(data, end) {
            Ok(Some(out)) => break (out, end),
            Ok(None) if end => break (Bytes::new(), true),
            Ok(None) => {}
            Err(plugin) => {
                tracing::warn!(plugin, "response body over the plugin's buffer limit");
                let resp = into_proxy(crate::exchange::respond::message(
                    StatusCode::BAD_GATEWAY,
                    "An invalid response was received from the upstream server",
                ));
                let mut plain = Stamp {
                    request_id: answering.stamp().request_id.clone(),
                    ..Stamp::default()
                };
                return Box::pin(write_response(w, resp, &mut plain, leaving, timer)).await;
            }
        }
    };
    let framing = if ended {
        Framing::Length(first.len() as u64)
    } else if leaving.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        *leaving.keep_alive = false;
        Framing::None
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut head = buffers::HeadBuf::take();
    let out = &mut head.0;
    http1::write_response_head(
        out,
        parts.status,
        leaving.version,
        http1::Lines::Map(&parts.headers),
        &answering.stamp().headers(),
        framing,
        *leaving.keep_alive,
        &date(),
    );
    let chunked = framing == Framing::Chunked;
    let mut size_line = Vec::new();
    let mut sent = 0u64;
    let mut pending: &[u8] = out;
    let mut next = Some(first);
    let mut done = ended;
    loop {
        let data = match next.take() {
            Some(d) => d,
            None if done => break,
            None => {
                let (data, end) = match body.data().await {
                    Some(d) => (d?, false),
                    None => (Bytes::new(), true),
                };
                done = end;
                match answering.chunk(data, end).map_err(overrun)? {
                    Some(d) => d,
                    None => continue,
                }
            }
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if chunked {
            size_line.clear();
            http1::chunk_size_line(data.len(), &mut size_line);
            super::write_all(
                w,
                &mut [pending, &size_line, &data, b"\r\n"],
                Some(timer.as_mut()),
            )
            .await?;
        } else {
            super::write_all(w, &mut [pending, &data], Some(timer.as_mut())).await?;
        }
        pending = &[];
    }
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    super::write_all(w, &mut [pending, end], Some(timer)).await?;
    Ok(sent)
}

/// The Date header, formatted once a second per worker.
fn date() -> HeaderValue {
    thread_local! {
        static DATE: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let text = httpdate::fmt_http_date(now);
            d.1 = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            d.0 = secs;
        }
        d.1.clone()
    })
}
