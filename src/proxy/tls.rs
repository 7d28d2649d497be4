//! TLS termination on the client side: the listeners' rustls configuration (TLS 1.2 and
//! 1.3, rustls's default suites, session tickets, ALPN `http/1.1`), the certificate each
//! handshake gets, and the accept loop that hands finished handshakes to the HTTP/1 engine.
//!
//! ```text
//! accept ─▶ handshake (certificate by SNI from the snapshot serving now: exact name,
//!           then `*.rest`, then `first.*`, then `*`, else the listener's default)
//!        ─▶ server::serve over the TLS stream, with the SNI on the connection
//! ```
//!
//! The resolver reads the current snapshot at each handshake: a reload changes the
//! certificate of the next handshake, and an established connection keeps its session.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Conn;
use crate::exchange::Tls;
use crate::gateway::Gateway;
use crate::ip::RealIp;
use crate::snapshot::tls::{Bad, parse_pair};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS listeners cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    Half,
    #[error("cannot generate the self-signed default certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate used when no SNI of the snapshot matches, and what it is, for the log.
pub struct DefaultCertificate {
    pub key: Arc<CertifiedKey>,
    pub description: String,
}

impl DefaultCertificate {
    /// From `--tls-cert`/`--tls-key` (PEM files), or, without them, a self-signed one for
    /// `localhost` generated now (as Kong does), so that a TLS listener works out of the box.
    pub fn load(cert: Option<&Path>, key: Option<&Path>) -> Result<Self, TlsError> {
        match (cert, key) {
            (Some(c), Some(k)) => Self::from_files(c, k),
            (None, None) => Self::generate(),
            _ => Err(TlsError::Half),
        }
    }

    fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let (cert_text, key_text) = (read(cert)?, read(key)?);
        let (chain, _, key) = parse_pair(&cert_text, &key_text).map_err(|bad| match bad {
            Bad::Cert(message) => TlsError::Pem {
                path: cert.display().to_string(),
                message,
            },
            Bad::Key(message) => TlsError::Pem {
                path: key.display().to_string(),
                message,
            },
        })?;
        Ok(DefaultCertificate {
            key,
            description: format!("{} (SHA-256 {})", cert.display(), fingerprint(&chain[0])),
        })
    }

    fn generate() -> Result<Self, TlsError> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let (chain, _, key) = parse_pair(&made.cert.pem(), &made.signing_key.serialize_pem())
            .map_err(|bad| {
                let (Bad::Cert(m) | Bad::Key(m)) = bad;
                TlsError::Config(rustls::Error::General(m))
            })?;
        Ok(DefaultCertificate {
            key,
            description: format!(
                "self-signed for localhost, generated at start (SHA-256 {}); give --tls-cert and --tls-key to use your own",
                fingerprint(&chain[0])
            ),
        })
    }
}

fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Picks each handshake's certificate from the snapshot serving at that moment.
struct SniResolver {
    gateway: Arc<Gateway>,
    default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snap = self.gateway.snapshot();
        match snap.certificates.find(hello.server_name().unwrap_or("")) {
            Some(keys) => Some(keys.choose(hello.signature_schemes())),
            None => Some(self.default.clone()),
        }
    }
}

/// The TLS listeners' configuration: TLS 1.3 and 1.2 with rustls's default suites (ring),
/// stateless session tickets and the session cache, ALPN `http/1.1` (the only protocol
/// served on them yet; an HTTP/2 engine adds `h2` here).
pub fn server_config(
    gateway: Arc<Gateway>,
    default: &DefaultCertificate,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            gateway,
            default: default.key.clone(),
        }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// Accepts TLS clients on `listener`: each handshake runs in the connection's own task,
/// then the HTTP/1 engine serves it.
pub async fn accept_loop(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    real_ip: Option<Arc<RealIp>>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    loop {
        let (stream, conn) = super::server::accept(&listener, real_ip.as_ref(), true).await;
        tokio::spawn(handshake_then_serve(
            gw.clone(),
            acceptor.clone(),
            stream,
            conn,
        ));
    }
}

async fn handshake_then_serve(
    gw: Arc<Gateway>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    mut conn: Conn,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, "TLS handshake timed out");
            return;
        }
    };
    let session = tls.get_ref().1;
    conn.handshake = Some(Tls {
        sni: session.server_name().map(Arc::from),
        alpn: session.alpn_protocol().map(Arc::from),
    });
    super::server::serve(gw, tls, conn).await;
}
