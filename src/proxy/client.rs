//! The upstream client: HTTP/1.1 connections (plain or TLS) kept alive in a pool owned by
//! each worker thread, so taking and returning a connection needs no lock and no atomic, and
//! no task of its own: the request's task writes the request and reads the response itself.
//!
//! checkout (pooled and still open, or connect with a timeout) ─▶ write head and body ─▶
//! read the response head (read timeout) ─▶ `UpstreamBody` streams the rest and puts the
//! connection back in the pool once the response has been read to its end.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::BuildHasherDefault;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Deadline;
use super::body::ProxyBody;
use super::buffers;
use super::http1::{self, Decoder, Framing, Step};
use super::server::ClientBodyError;

/// Why the upstream could not give a response, and whether another try is safe.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: String },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within the read timeout")]
    ReadTimeout { addr: String },
    #[error("{addr} broke the exchange: {source}")]
    Protocol {
        addr: String,
        source: std::io::Error,
    },
    /// The client's fault, not the upstream's: answered 400.
    #[error("the client's request body is broken: {source}")]
    ClientBody { source: ClientBodyError },
    /// The request body failed on its way for another reason (a plugin's body hook).
    #[error("the request body could not be sent: {source}")]
    RequestBody { source: std::io::Error },
    #[error("{addr} is not a valid TLS server name")]
    ServerName { addr: String },
}

impl UpstreamError {
    /// Nothing reached the upstream, so trying again (elsewhere) cannot repeat a request.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Tls { .. }
        )
    }
    /// The client broke the request, not the upstream.
    pub fn is_client_error(&self) -> bool {
        matches!(self, UpstreamError::ClientBody { .. })
    }
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ReadTimeout { .. }
        )
    }
}

#[derive(PartialEq, Eq, Clone)]
struct Key {
    host: Arc<str>,
    port: u16,
    tls: bool,
    /// A connection made without certificate checks never serves a request that wants them.
    tls_verify: bool,
    /// The service's own TLS settings (`UpstreamTls::id`; 0 for the defaults) mixed with a
    /// hash of the SNI sent: a connection serves only requests that would have made the
    /// same. 0 on plain connections.
    tls_made: u64,
}

/// A plain connection's key hashes its address and nothing of TLS.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.host.hash(h);
        self.port.hash(h);
        if self.tls {
            self.tls_verify.hash(h);
            self.tls_made.hash(h);
        }
    }
}

/// Idle connections kept per upstream address and worker (nginx's `keepalive 1024` is the
/// usual setting for a busy upstream).
const MAX_IDLE_PER_KEY: usize = 1024;

/// A TCP or TLS stream to an upstream.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream connection and what has been read from it but not yet used.
struct UpConn {
    io: Stream,
    buf: BytesMut,
    key: Key,
    /// It served a request before, so the upstream may have closed it meanwhile.
    reused: bool,
    /// The read timeout, restarted by each exchange and each read.
    deadline: Deadline,
}

impl UpConn {
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        buffers::poll_read(&mut self.io, &mut self.buf, cx, want)
    }

    /// An idle connection has nothing to say: anything readable (data, EOF, an error)
    /// means the upstream closed it or broke it. Costs no syscall while readiness is clear.
    fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut rb)
            .is_pending()
    }
}

thread_local! {
    // Boxed: a connection moves between the pool and requests as one pointer.
    #[allow(clippy::vec_box)]
    static POOL: RefCell<HashMap<Key, Vec<Box<UpConn>>, BuildHasherDefault<crate::fnv::Fnv>>> =
        RefCell::new(HashMap::default());
}

/// The most recently idled connection that is still open (its socket is the warmest).
fn take_pooled(key: &Key) -> Option<Box<UpConn>> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(key)?;
        while let Some(mut c) = list.pop() {
            if c.still_open() {
                return Some(c);
            }
        }
        None
    })
}

fn give_back(mut conn: Box<UpConn>) {
    conn.reused = true;
    if conn.buf.is_empty() {
        buffers::give(std::mem::take(&mut conn.buf));
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.entry(conn.key.clone()).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(conn);
        }
    })
}

fn tls_config(verify: bool) -> Arc<rustls::ClientConfig> {
    static VERIFIED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static UNVERIFIED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    if verify {
        VERIFIED
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                Arc::new(
                    rustls::ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .expect("ring supports TLS 1.2 and 1.3")
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            })
            .clone()
    } else {
        UNVERIFIED
            .get_or_init(|| {
                Arc::new(
                    rustls::ClientConfig::builder_with_provider(provider())
                        .with_safe_default_protocol_versions()
                        .expect("ring supports TLS 1.2 and 1.3")
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
                        .with_no_client_auth(),
                )
            })
            .clone()
    }
}

/// For `tls_verify: false` (Kong's default for services) and Ocelot's
/// DangerousAcceptAnyServerCertificateValidator.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client certificate for mTLS to an upstream: its chain and key.
pub struct ClientCert {
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// A service's own upstream TLS settings (Kong's `tls_verify`, `tls_verify_depth`,
/// `ca_certificates` and `client_certificate`), when it has any besides `tls_verify`.
pub struct UpstreamTlsSettings {
    pub verify: bool,
    /// Trusted roots; the webpki roots when empty.
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub depth: Option<u8>,
    pub client: Option<ClientCert>,
}

/// The client configuration made from `UpstreamTlsSettings`, and what identifies them.
pub struct UpstreamTls {
    config: Arc<rustls::ClientConfig>,
    /// Equal for equal settings (across reloads too); never 0.
    pub id: u64,
}

impl UpstreamTls {
    pub fn new(s: UpstreamTlsSettings, id: u64) -> Result<UpstreamTls, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if s.verify {
            let mut roots = rustls::RootCertStore::empty();
            if s.roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            for r in s.roots {
                roots.add(r)?;
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
            let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match s.depth {
                Some(depth) => Arc::new(DepthLimited {
                    inner: webpki,
                    depth,
                }),
                None => webpki,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        };
        let config = match s.client {
            Some(c) => builder.with_client_auth_cert(c.chain, c.key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(UpstreamTls {
            config: Arc::new(config),
            id,
        })
    }
}

/// Kong's `tls_verify_depth` (nginx's `proxy_ssl_verify_depth`, OpenSSL's verify depth): at
/// most `depth` intermediates between the upstream's certificate and a trusted root.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    depth: u8,
}

impl rustls::client::danger::ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if intermediates.len() > usize::from(self.depth) {
            return Err(rustls::Error::General(format!(
                "the upstream's chain is longer than tls_verify_depth {}",
                self.depth
            )));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where and how to send one request.
pub struct Target<'a> {
    pub host: &'a Arc<str>,
    pub port: u16,
    pub tls: bool,
    pub tls_verify: bool,
    /// The service's own TLS settings, else the defaults for `tls_verify`.
    pub tls_settings: Option<&'a UpstreamTls>,
    /// The server name sent (the Host the upstream gets, without its port); `host` when
    /// empty.
    pub sni: &'a str,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Target<'_> {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    fn server_name(&self) -> &str {
        if self.sni.is_empty() {
            self.host
        } else {
            self.sni
        }
    }
    fn key(&self) -> Key {
        let tls_made = if self.tls {
            let mut h = crate::fnv::Fnv::with_seed(self.tls_settings.map_or(0, |t| t.id));
            std::hash::Hasher::write(&mut h, self.sni.as_bytes());
            std::hash::Hasher::finish(&h)
        } else {
            0
        };
        Key {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
            tls_verify: self.tls && self.tls_verify,
            tls_made,
        }
    }
}

async fn connect(t: &Target<'_>) -> Result<Box<UpConn>, UpstreamError> {
    let tcp = match tokio::time::timeout(
        t.connect_timeout,
        TcpStream::connect((t.host.as_ref(), t.port)),
    )
    .await
    {
        Err(_) => return Err(UpstreamError::ConnectTimeout { addr: t.addr() }),
        Ok(Err(source)) => {
            return Err(UpstreamError::Connect {
                addr: t.addr(),
                source,
            });
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let io = if t.tls {
        let name = rustls::pki_types::ServerName::try_from(t.server_name().to_string())
            .map_err(|_| UpstreamError::ServerName { addr: t.addr() })?;
        let config = match t.tls_settings {
            Some(s) => s.config.clone(),
            None => tls_config(t.tls_verify),
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(t.connect_timeout, connector.connect(name, tcp)).await {
            Err(_) => return Err(UpstreamError::ConnectTimeout { addr: t.addr() }),
            Ok(Err(source)) => {
                return Err(UpstreamError::Tls {
                    addr: t.addr(),
                    source,
                });
            }
            Ok(Ok(s)) => Stream::Tls(Box::new(s)),
        }
    } else {
        Stream::Tcp(tcp)
    };
    Ok(Box::new(UpConn {
        io,
        buf: BytesMut::new(),
        key: t.key(),
        reused: false,
        deadline: Deadline::new(t.read_timeout),
    }))
}

/// A connection ready for one request: from the pool, or freshly connected.
pub struct Checkout(Box<UpConn>);

/// Gets a connection to `t`. Errors here mean nothing was sent, so the caller may try again.
pub async fn checkout(t: &Target<'_>) -> Result<Checkout, UpstreamError> {
    match take_pooled(&t.key()) {
        Some(c) => Ok(Checkout(c)),
        // Boxed: a TLS handshake's state would otherwise weigh on every request's future.
        None => Ok(Checkout(Box::pin(connect(t)).await?)),
    }
}

/// A request body on its way upstream: the client's as it streams in (`ProxyBody`), or one
/// that plugins see piece by piece on its way.
pub trait Outgoing: Send {
    /// The exact length, when known before reading.
    fn length(&self) -> Option<u64>;
    /// There is no body at all (not even an empty one).
    fn is_absent(&self) -> bool;
    /// The body is in memory, so the request carrying it can be sent again.
    fn is_replayable(&self) -> bool;
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>>;
}

impl Outgoing for ProxyBody {
    fn length(&self) -> Option<u64> {
        ProxyBody::length(self)
    }
    fn is_absent(&self) -> bool {
        matches!(self, ProxyBody::Empty)
    }
    fn is_replayable(&self) -> bool {
        ProxyBody::is_replayable(self)
    }
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        ProxyBody::poll_data(self, cx)
    }
}

/// How one exchange on a connection failed.
enum Exchange {
    /// Failed before a byte of response came back.
    Unanswered(std::io::Error),
    Failed(UpstreamError),
}

impl Checkout {
    /// Sends the request (`parts`, then the gateway's `added` headers, and `body`) and waits
    /// for the response head. A reused connection that turns out to have been closed by the
    /// upstream before it answered is replaced by a fresh one when the request can be sent
    /// again (its body was not streamed from the client).
    ///
    /// The head is written out before the `async` block, which keeps only the written bytes:
    /// neither the request nor a second copy of the arguments is in this future. Inlined, as
    /// `handler::handle` is.
    #[inline(always)]
    pub fn send<'a, B: Outgoing>(
        self,
        t: &'a Target<'a>,
        parts: &http::request::Parts,
        added: &[(&HeaderName, HeaderValue)],
        body: &'a mut B,
        raw_head: bool,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + 'a {
        let framing = match body.length() {
            Some(_) if body.is_absent() => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        };
        let mut head = buffers::HeadBuf::take();
        http1::write_request_head(
            &mut head.0,
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            added,
            framing,
        );
        let head_request = parts.method == Method::HEAD;
        let mut conn = self.0;
        async move {
            // Set when a reused connection turns out closed; the new one is made at the top of
            // the loop, where the failed attempt is gone: an await inside its `match` would keep
            // the attempt in this future, beside the exchange's state.
            let mut stale = false;
            loop {
                if stale {
                    tracing::debug!(
                        upstream = t.addr(),
                        "kept-alive connection was closed; reconnecting"
                    );
                    conn = Box::pin(connect(t)).await?;
                }
                let replayable = body.is_replayable();
                conn.deadline.restart(t.read_timeout);
                let attempt = {
                    let UpConn {
                        io, buf, deadline, ..
                    } = &mut *conn;
                    let exchange =
                        exchange(io, buf, &head.0, body, framing, head_request, raw_head, t);
                    let mut exchange = std::pin::pin!(exchange);
                    poll_fn(|cx| {
                        if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
                            return Poll::Ready(Some(r));
                        }
                        ready!(deadline.poll_expired(cx));
                        Poll::Ready(None)
                    })
                    .await
                };
                let resp = match attempt {
                    None => return Err(UpstreamError::ReadTimeout { addr: t.addr() }),
                    Some(Ok(r)) => r,
                    Some(Err(Exchange::Unanswered(_))) if conn.reused && replayable => {
                        stale = true;
                        continue;
                    }
                    Some(Err(Exchange::Unanswered(source))) => {
                        return Err(UpstreamError::Protocol {
                            addr: t.addr(),
                            source,
                        });
                    }
                    Some(Err(Exchange::Failed(e))) => return Err(e),
                };
                let (head, keep_alive) = resp;
                conn.deadline.progress();
                let mut ub = UpstreamBody {
                    conn: Some(conn),
                    decoder: head.decoder,
                    keep_alive,
                    gateway_set: head.gateway_set,
                    raw: head.raw.map(Box::new),
                };
                if ub.decoder.is_done() {
                    ub.release();
                }
                return Ok(Response::from_parts(head.parts, ub));
            }
        }
    }
}

/// Writes the request and reads the response head, skipping interim (1xx) responses; the
/// final one keeps its header lines as they came with `raw_head`.
#[allow(clippy::too_many_arguments)]
async fn exchange<B: Outgoing>(
    io: &mut Stream,
    buf: &mut BytesMut,
    head: &[u8],
    body: &mut B,
    framing: Framing,
    head_request: bool,
    raw_head: bool,
    t: &Target<'_>,
) -> Result<(http1::ResponseHead, bool), Exchange> {
    write_request(io, head, body, framing).await?;
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            let parsed = http1::parse_response(buf, head_request, raw_head).map_err(|e| {
                Exchange::Failed(UpstreamError::Protocol {
                    addr: t.addr(),
                    source: e.into(),
                })
            })?;
            match parsed {
                Some(h) if h.parts.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(Exchange::Failed(UpstreamError::Protocol {
                        addr: t.addr(),
                        source: std::io::Error::other("101 Switching Protocols is not proxied"),
                    }));
                }
                Some(h) if h.parts.status.is_informational() => continue,
                Some(h) => {
                    let keep_alive = h.keep_alive;
                    return Ok((h, keep_alive));
                }
                None => {}
            }
        }
        let n = poll_fn(|cx| buffers::poll_read(io, buf, cx, buffers::SIZE)).await;
        match n {
            Ok(0) if !received => {
                return Err(Exchange::Unanswered(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(0) => {
                return Err(Exchange::Failed(UpstreamError::Protocol {
                    addr: t.addr(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed in the middle of the response head",
                    ),
                }));
            }
            Ok(_) => {}
            Err(e) if !received => return Err(Exchange::Unanswered(e)),
            Err(source) => {
                return Err(Exchange::Failed(UpstreamError::Protocol {
                    addr: t.addr(),
                    source,
                }));
            }
        }
    }
}

/// The head, then the body as it comes from the client; a small body leaves in the same
/// write as the head.
async fn write_request<B: Outgoing>(
    io: &mut Stream,
    head: &[u8],
    body: &mut B,
    framing: Framing,
) -> Result<(), Exchange> {
    let unsent = |e: std::io::Error| Exchange::Unanswered(e);
    let mut pending: Option<&[u8]> = Some(head);
    let chunked = framing == Framing::Chunked;
    let mut size_line = Vec::new();
    loop {
        let data = match poll_fn(|cx| body.poll_data(cx)).await {
            None => break,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                return Err(Exchange::Failed(match ClientBodyError::take(e) {
                    Ok(source) => UpstreamError::ClientBody { source },
                    Err(source) => UpstreamError::RequestBody { source },
                }));
            }
        };
        if data.is_empty() {
            continue;
        }
        let first = pending.take().unwrap_or(&[]);
        if chunked {
            size_line.clear();
            http1::chunk_size_line(data.len(), &mut size_line);
            super::write_all(io, &mut [first, &size_line, &data, b"\r\n"], None)
                .await
                .map_err(unsent)?;
        } else {
            super::write_all(io, &mut [first, &data], None)
                .await
                .map_err(unsent)?;
        }
    }
    let first = pending.take().unwrap_or(&[]);
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    super::write_all(io, &mut [first, end], None)
        .await
        .map_err(unsent)?;
    io.flush().await.map_err(unsent)
}

/// An upstream response body, read on demand from the connection; the connection goes back
/// to the pool once the body has been read to its end (a body dropped half-read takes its
/// connection with it, since the rest of that response would still be on the wire).
pub struct UpstreamBody {
    conn: Option<Box<UpConn>>,
    decoder: Decoder,
    keep_alive: bool,
    gateway_set: bool,
    /// Boxed: a response is moved through the connection's task, which stays small.
    raw: Option<Box<http1::RawHeaders>>,
}

impl UpstreamBody {
    /// The head's header lines as the upstream sent them, when they were asked for
    /// (`Checkout::send`'s `raw_head`): the response's header map is empty then.
    pub fn raw_head(&self) -> Option<&http1::RawHeaders> {
        self.raw.as_deref()
    }

    pub fn take_raw_head(&mut self) -> Option<Box<http1::RawHeaders>> {
        self.raw.take()
    }

    /// The response head has a header the gateway sets on responses itself (Via, its
    /// latency and request-id headers): those must be read or replaced, not only added.
    pub fn gateway_set(&self) -> bool {
        self.gateway_set
    }

    fn release(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            give_back(conn);
        }
    }

    /// The body's length when the upstream declared it (what is left of it, once some has
    /// been taken).
    pub fn length(&self) -> Option<u64> {
        match self.conn {
            Some(_) => self.decoder.remaining(),
            None => Some(0),
        }
    }

    pub fn is_end(&self) -> bool {
        self.conn.is_none()
    }

    /// What has arrived already, without reading: most responses come whole with their
    /// head, and then go out to the client in one write.
    pub fn take_buffered(&mut self) -> Option<Result<Bytes, http1::ProtoError>> {
        match self.decode_buffered() {
            Ok(Step::Data(b)) => Some(Ok(b)),
            Ok(Step::End | Step::More) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The next piece of body from what has been read; the connection goes back to the pool
    /// as soon as the body is complete, and is dropped when its framing is broken.
    fn decode_buffered(&mut self) -> Result<Step, http1::ProtoError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Step::End);
        };
        let step = self.decoder.decode(&mut conn.buf);
        match &step {
            Ok(Step::Data(_)) if self.decoder.is_done() => self.release(),
            Ok(Step::End) => self.release(),
            Err(_) => self.conn = None,
            _ => {}
        }
        step
    }

    /// Moves the rest of a large length-framed body from a plain TCP upstream to the
    /// client `to` through a pipe, in the kernel: the bytes never enter user space, which is
    /// most of what a large body costs. `None`: this body cannot go that way (TLS, chunked,
    /// small, or bytes already buffered), and nothing was done.
    pub async fn splice_to(
        &mut self,
        to: &TcpStream,
        write_timeout: Duration,
    ) -> Option<std::io::Result<()>> {
        let conn = self.conn.as_mut()?;
        let Stream::Tcp(from) = &conn.io else {
            return None;
        };
        let Decoder::Length(left) = self.decoder else {
            return None;
        };
        if left < SPLICE_MIN || !conn.buf.is_empty() {
            return None;
        }
        let (pipe_r, pipe_w) = pipe().ok()?;
        let moved = splice_body(
            from,
            to,
            &pipe_r,
            &pipe_w,
            left,
            conn.deadline.timeout(),
            write_timeout,
        )
        .await;
        match moved {
            Ok(()) => {
                self.decoder = Decoder::Done;
                self.release();
                Some(Ok(()))
            }
            Err(e) => {
                self.conn = None;
                Some(Err(e))
            }
        }
    }

    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        loop {
            match self.decode_buffered() {
                Ok(Step::Data(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let want = match self.decoder.remaining() {
                Some(n) if n as usize >= buffers::LARGE => buffers::LARGE,
                Some(_) => buffers::SIZE,
                None => buffers::LARGE,
            };
            match conn.poll_fill(cx, want) {
                Poll::Pending => {
                    ready!(conn.deadline.poll_expired(cx));
                    self.conn = None;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream read timeout",
                    ))));
                }
                Poll::Ready(Ok(0)) => {
                    if let Err(e) = self.decoder.eof() {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    // Close-delimited: the connection ends with the body.
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => conn.deadline.progress(),
                Poll::Ready(Err(e)) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// Bodies from this size on are spliced rather than copied.
const SPLICE_MIN: u64 = 256 * 1024;
/// What one splice moves at most; the pipe is grown to hold it.
const PIPE_SIZE: usize = 1 << 20;

fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A larger pipe means fewer splices; at the default 64 KiB it still works.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
    Ok((r, w))
}

/// upstream socket ─▶ pipe ─▶ client socket, `left` bytes, waiting on each side's
/// readiness with its timeout.
async fn splice_body(
    from: &TcpStream,
    to: &TcpStream,
    pipe_r: &std::os::fd::OwnedFd,
    pipe_w: &std::os::fd::OwnedFd,
    mut left: u64,
    read_timeout: Duration,
    write_timeout: Duration,
) -> std::io::Result<()> {
    use nix::fcntl::{SpliceFFlags, splice};
    use tokio::io::Interest;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let timed_out =
        |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"));
    while left > 0 {
        let want = (left as usize).min(PIPE_SIZE);
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing yet.
        let mut in_pipe = loop {
            tokio::time::timeout(read_timeout, from.readable())
                .await
                .map_err(|_| timed_out("upstream read"))??;
            match from.try_io(Interest::READABLE, || {
                splice(from, None, pipe_w, None, want, flags).map_err(std::io::Error::from)
            }) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "upstream closed before the body ended",
                    ));
                }
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        left -= in_pipe as u64;
        while in_pipe > 0 {
            tokio::time::timeout(write_timeout, to.writable())
                .await
                .map_err(|_| timed_out("client write"))??;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe_r, None, to, None, in_pipe, flags).map_err(std::io::Error::from)
            }) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => in_pipe -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
