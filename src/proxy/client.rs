//! The upstream client: HTTP/1.1 connections (plain or TLS) kept alive in a pool owned by
//! each worker thread, so taking and returning a connection needs no lock and no atomic.
//!
//! send ─▶ pooled connection that is ready, or connect (timeout) ─▶ request ─▶ response head
//! (timeout) ─▶ the connection goes back to the pool; it is handed out again once hyper says
//! the previous response body is done.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::ProxyBody;

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
    Protocol { addr: String, source: hyper::Error },
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
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ReadTimeout { .. }
        )
    }
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct Key {
    host: Arc<str>,
    port: u16,
    tls: bool,
    /// A connection made without certificate checks never serves a request that wants them.
    tls_verify: bool,
}

/// Idle connections kept per upstream address and worker (nginx's `keepalive 1024` is the
/// usual setting for a busy upstream).
const MAX_IDLE_PER_KEY: usize = 1024;

thread_local! {
    static POOL: RefCell<HashMap<Key, Vec<SendRequest<ProxyBody>>>> = RefCell::new(HashMap::new());
}

/// The most recently idled connection (its socket is the warmest). Connections enter the
/// pool only once their previous response is complete, so the first open one is ready.
fn take_pooled(key: &Key) -> Option<SendRequest<ProxyBody>> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(key)?;
        // A connection whose response just ended may not have noticed yet: skip it rather
        // than drop it, but look at a few only, so taking stays O(1).
        let mut i = list.len();
        let mut looked = 0;
        while i > 0 && looked < 8 {
            i -= 1;
            looked += 1;
            if list[i].is_ready() {
                return Some(list.swap_remove(i));
            }
            if list[i].is_closed() {
                list.swap_remove(i);
            }
        }
        None
    })
}

fn give_back(key: Key, sender: SendRequest<ProxyBody>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(sender);
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

/// Where and how to send one request.
pub struct Target<'a> {
    pub host: &'a Arc<str>,
    pub port: u16,
    pub tls: bool,
    pub tls_verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

async fn connect(t: &Target<'_>) -> Result<SendRequest<ProxyBody>, UpstreamError> {
    let addr = || format!("{}:{}", t.host, t.port);
    let tcp = match tokio::time::timeout(
        t.connect_timeout,
        TcpStream::connect((t.host.as_ref(), t.port)),
    )
    .await
    {
        Err(_) => return Err(UpstreamError::ConnectTimeout { addr: addr() }),
        Ok(Err(source)) => {
            return Err(UpstreamError::Connect {
                addr: addr(),
                source,
            });
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder.max_buf_size(256 * 1024);
    let sender = if t.tls {
        let name = rustls::pki_types::ServerName::try_from(t.host.to_string())
            .map_err(|_| UpstreamError::ServerName { addr: addr() })?;
        let connector = tokio_rustls::TlsConnector::from(tls_config(t.tls_verify));
        let tls = match tokio::time::timeout(t.connect_timeout, connector.connect(name, tcp)).await
        {
            Err(_) => return Err(UpstreamError::ConnectTimeout { addr: addr() }),
            Ok(Err(source)) => {
                return Err(UpstreamError::Tls {
                    addr: addr(),
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        handshake(&builder, tls, addr).await?
    } else {
        handshake(&builder, tcp, addr).await?
    };
    Ok(sender)
}

/// HTTP/1.1 over an established stream; the connection is driven by a task of its own.
async fn handshake<IO>(
    builder: &http1::Builder,
    io: IO,
    addr: impl Fn() -> String,
) -> Result<SendRequest<ProxyBody>, UpstreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| UpstreamError::Protocol {
            addr: addr(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A connection ready for one request: from the pool, or freshly connected.
pub struct Checkout {
    key: Key,
    sender: SendRequest<ProxyBody>,
    pooled: bool,
}

/// Gets a connection to `t`. Errors here mean nothing was sent, so the caller may try again.
pub async fn checkout(t: &Target<'_>) -> Result<Checkout, UpstreamError> {
    let key = Key {
        host: t.host.clone(),
        port: t.port,
        tls: t.tls,
        tls_verify: t.tls && t.tls_verify,
    };
    if let Some(sender) = take_pooled(&key) {
        return Ok(Checkout {
            key,
            sender,
            pooled: true,
        });
    }
    Ok(Checkout {
        key,
        sender: connect(t).await?,
        pooled: false,
    })
}

impl Checkout {
    /// Sends `req` and waits for the response head; the connection then returns to the pool.
    /// A pooled connection the upstream closed meanwhile is replaced by a fresh one, since
    /// the request never left.
    pub async fn send(
        mut self,
        t: &Target<'_>,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let addr = || format!("{}:{}", t.host, t.port);
        let mut req = req;
        if self.pooled {
            match tokio::time::timeout(t.read_timeout, self.sender.try_send_request(req)).await {
                Err(_) => return Err(UpstreamError::ReadTimeout { addr: addr() }),
                Ok(Ok(resp)) => return Ok(UpstreamBody::wrap(resp, self.key, self.sender)),
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) => {
                        req = unsent;
                        self.sender = connect(t).await?;
                    }
                    None => {
                        return Err(UpstreamError::Protocol {
                            addr: addr(),
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
        match tokio::time::timeout(t.read_timeout, self.sender.send_request(req)).await {
            Err(_) => Err(UpstreamError::ReadTimeout { addr: addr() }),
            Ok(Ok(resp)) => Ok(UpstreamBody::wrap(resp, self.key, self.sender)),
            Ok(Err(source)) => Err(UpstreamError::Protocol {
                addr: addr(),
                source,
            }),
        }
    }
}

/// An upstream response body that hands its connection back to the pool when it has been
/// read to the end (a body dropped half-read takes its connection with it, since the rest of
/// that response would still be on the wire).
pub struct UpstreamBody {
    inner: Incoming,
    ret: Option<(Key, SendRequest<ProxyBody>)>,
}

impl UpstreamBody {
    fn wrap(
        resp: Response<Incoming>,
        key: Key,
        sender: SendRequest<ProxyBody>,
    ) -> Response<UpstreamBody> {
        resp.map(|inner| {
            let mut body = UpstreamBody {
                inner,
                ret: Some((key, sender)),
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body
        })
    }

    fn release(&mut self) {
        if let Some((key, sender)) = self.ret.take() {
            give_back(key, sender);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.release();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
