//! TLS end to end, through the real server stack: TLS listeners with certificates chosen by
//! SNI from kong.yaml (exact, wildcards, default), load errors for bad material that keep
//! the serving snapshot, certificate reload, https routes and X-Forwarded-Proto, and HTTPS
//! upstreams with and without verification and with a client certificate. Every
//! certificate is made at test time (rcgen); upstreams listen on port 0.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use common::{Resp, Upstream, read_response};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use switchyard::proxy::tls::{DefaultCertificate, server_config};

// === Certificates ===

/// A CA that signs test certificates.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// An intermediate CA under this one.
    fn intermediate(&self, name: &str) -> (Ca, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let der = cert.der().to_vec();
        let ca = Ca {
            params,
            key,
            pem: cert.pem(),
        };
        (ca, der)
    }

    fn issue(&self, names: &[&str]) -> Cert {
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
        Cert {
            pem: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A certificate, its key and its DER (what a client sees).
#[derive(Clone)]
struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn self_signed(names: &[&str]) -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    Cert {
        pem: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A PEM as a YAML block scalar at `indent` spaces.
fn block(pem: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::from("|\n");
    for line in pem.lines() {
        out.push_str(&pad);
        out.push_str(line);
        out.push('\n');
    }
    out
}

// === The gateway ===

/// The real server stack on a config directory: a plain and a TLS listener on port 0.
struct TlsGateway {
    dir: tempfile::TempDir,
    plain: SocketAddr,
    tls: SocketAddr,
    gateway: Arc<switchyard::gateway::Gateway>,
    default_der: Vec<u8>,
}

impl TlsGateway {
    fn start(kong_yaml: &str) -> TlsGateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kong.yaml"), kong_yaml).unwrap();
        let (gateway, _) = switchyard::gateway::Builder::new()
            .start(dir.path().to_path_buf())
            .unwrap_or_else(|e| {
                panic!(
                    "config rejected: {:?}",
                    e.0.iter().map(|d| d.to_string()).collect::<Vec<_>>()
                )
            });
        let default = DefaultCertificate::load(None, None).unwrap();
        let default_der = default.key.cert[0].to_vec();
        let config = server_config(gateway.clone(), &default).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (plain, listeners) = switchyard::proxy::server::bind_all(&[any], 1).unwrap();
        let (tls, per_worker) = switchyard::proxy::server::bind_all(&[any], 1).unwrap();
        switchyard::proxy::server::spawn_workers_tls(
            gateway.clone(),
            listeners,
            Some(switchyard::proxy::server::TlsListeners { per_worker, config }),
        );
        TlsGateway {
            dir,
            plain: plain[0],
            tls: tls[0],
            gateway,
            default_der,
        }
    }

    /// Rewrites kong.yaml and reloads: the errors, as `check` prints them.
    fn reload(&self, kong_yaml: &str) -> Vec<String> {
        std::fs::write(self.dir.path().join("kong.yaml"), kong_yaml).unwrap();
        let r = self.gateway.reload();
        r.errors.iter().map(|d| d.to_string()).collect()
    }

    fn connect(&self, sni: &str) -> Client {
        Client::connect(self.tls, sni)
    }
}

/// A TLS client that accepts any certificate and shows which one it got.
struct Client {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr, sni: &str) -> Client {
        Self::connect_with(addr, sni, client_config())
    }

    fn connect_with(addr: SocketAddr, sni: &str, config: Arc<rustls::ClientConfig>) -> Client {
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Client { stream }
    }

    fn certificate(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    fn get(&mut self, path: &str, host: &str) -> Resp {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        self.stream.flush().unwrap();
        read_response(&mut BufReader::new(&mut self.stream), false).expect("a response")
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

/// Accepts any certificate, and offers only `schemes` for the server's signature.
#[derive(Debug)]
struct OnlySchemes(AcceptAny, Vec<rustls::SignatureScheme>);

impl rustls::client::danger::ServerCertVerifier for OnlySchemes {
    fn verify_server_cert(
        &self,
        e: &CertificateDer<'_>,
        i: &[CertificateDer<'_>],
        n: &ServerName<'_>,
        o: &[u8],
        t: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0.verify_server_cert(e, i, n, o, t)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.clone()
    }
}

/// A client config that accepts any certificate, speaks only `versions`, and offers only
/// `schemes` (all of the provider's when empty).
fn client_config_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
    schemes: Vec<rustls::SignatureScheme>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let any = AcceptAny(provider.clone());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if schemes.is_empty() {
        Arc::new(any)
    } else {
        Arc::new(OnlySchemes(any, schemes))
    };
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// kong.yaml: one service to `up` with a catch-all route, and these certificates.
fn config(up: SocketAddr, certificates: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{up}\n  routes:\n  - name: all\n    paths: [/]\n{certificates}"
    )
}

fn certificate_entry(c: &Cert, snis: &[&str]) -> String {
    let snis = snis
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "- cert: {}  key: {}  snis: [{snis}]\n",
        block(&c.pem, 4),
        block(&c.key, 4)
    )
}

// === Listener certificates ===

#[test]
fn sni_picks_the_exact_name_then_the_leading_then_the_trailing_wildcard_else_the_default() {
    let up = Upstream::echo();
    let exact = self_signed(&["api.example.com"]);
    let leading = self_signed(&["*.example.com"]);
    let trailing = self_signed(&["shop.example.org"]);
    let certs = format!(
        "certificates:\n{}{}{}",
        certificate_entry(&exact, &["api.example.com"]),
        certificate_entry(&leading, &["*.example.com"]),
        certificate_entry(&trailing, &["shop.example.*"]),
    );
    let gw = TlsGateway::start(&config(up.addr(), &certs));
    assert_eq!(gw.connect("api.example.com").certificate(), exact.der);
    assert_eq!(gw.connect("web.example.com").certificate(), leading.der);
    assert_eq!(gw.connect("shop.example.org").certificate(), trailing.der);
    assert_eq!(gw.connect("elsewhere.test").certificate(), gw.default_der);
    // A client that sends no SNI (an address) gets the default too.
    assert_eq!(gw.connect("127.0.0.1").certificate(), gw.default_der);
}

#[test]
fn cert_alt_serves_the_clients_that_cannot_verify_the_main_certificate() {
    let up = Upstream::echo();
    // The main pair is ECDSA P-256 (rcgen's default); the alternative Ed25519.
    let main = self_signed(&["alt.test"]);
    let alt_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let alt_cert = rcgen::CertificateParams::new(vec!["alt.test".to_string()])
        .unwrap()
        .self_signed(&alt_key)
        .unwrap();
    let certs = format!(
        "certificates:\n- cert: {}  key: {}  cert_alt: {}  key_alt: {}  snis: [alt.test]\n",
        block(&main.pem, 4),
        block(&main.key, 4),
        block(&alt_cert.pem(), 4),
        block(&alt_key.serialize_pem(), 4),
    );
    let gw = TlsGateway::start(&config(up.addr(), &certs));
    assert_eq!(gw.connect("alt.test").certificate(), main.der);
    let ed25519_only = client_config_with(
        &[&rustls::version::TLS13],
        vec![rustls::SignatureScheme::ED25519],
    );
    let c = Client::connect_with(gw.tls, "alt.test", ed25519_only);
    assert_eq!(c.certificate(), alt_cert.der().to_vec());
}

#[test]
fn tls_1_2_and_1_3_are_spoken_and_sessions_resume_with_tickets() {
    let up = Upstream::echo();
    let gw = TlsGateway::start(&config(up.addr(), ""));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_with(&[version], vec![]);
        let mut first = Client::connect_with(gw.tls, "localhost", config.clone());
        assert_eq!(first.stream.conn.protocol_version(), Some(version.version));
        assert_eq!(
            first.stream.conn.alpn_protocol(),
            None,
            "no ALPN asked, none chosen"
        );
        assert_eq!(first.get("/v", "localhost").status, 200);
        // TLS 1.3 tickets arrive after the handshake: the request above read them.
        let second = Client::connect_with(gw.tls, "localhost", config);
        assert_eq!(
            second.stream.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{version:?}"
        );
    }
    // ALPN: http/1.1 is offered; h2 is not served yet.
    let mut alpn = (*client_config_with(&[&rustls::version::TLS13], vec![])).clone();
    alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let c = Client::connect_with(gw.tls, "localhost", Arc::new(alpn));
    assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn tls_entities_are_checked_where_they_are_written() {
    let c = self_signed(&["x.test"]);
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: https://127.0.0.1:9\n  client_certificate: no-such-cert\n  ca_certificates: [no-such-ca]\n  routes:\n  - name: r\n    paths: [/]\ncertificates:\n- cert: {}  key: {}  snis: [\"x.test\", \"bad:443\", \"a.*.test\"]\n- cert: {}  key: {}  snis: [x.test]\nsnis:\n- name: y.test\n  certificate: missing\n",
        block(&c.pem, 4),
        block(&c.key, 4),
        block(&c.pem, 4),
        block(&c.key, 4),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), &yaml).unwrap();
    let err = switchyard::gateway::Builder::new()
        .start(dir.path().to_path_buf())
        .err()
        .expect("rejected");
    let text = err
        .0
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "services[0].client_certificate: invalid reference 'certificate: no-such-cert'",
        "services[0].ca_certificates[0]: invalid reference 'ca_certificate: no-such-ca'",
        "certificates[0].snis[1]: invalid SNI \"bad:443\"",
        "certificates[0].snis[2]: invalid SNI \"a.*.test\"",
        "certificates[1].snis[0]: uniqueness violation: 'snis' entity with name set to 'x.test'",
        "snis[0].certificate: invalid reference 'certificate: missing'",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(text.lines().all(|l| l.starts_with("kong.yaml:")), "{text}");
}

#[test]
fn a_top_level_sni_names_its_certificate_by_id() {
    let up = Upstream::echo();
    let c = self_signed(&["top.test"]);
    let certs = format!(
        "certificates:\n- id: 6f0e0c4a-8d6c-4c55-9a43-5a1f7f0a0001\n  cert: {}  key: {}snis:\n- name: top.test\n  certificate: 6f0e0c4a-8d6c-4c55-9a43-5a1f7f0a0001\n",
        block(&c.pem, 4),
        block(&c.key, 4)
    );
    let gw = TlsGateway::start(&config(up.addr(), &certs));
    assert_eq!(gw.connect("top.test").certificate(), c.der);
}

#[test]
fn requests_over_tls_are_proxied_with_x_forwarded_proto_https() {
    let up = Upstream::echo();
    let gw = TlsGateway::start(&config(up.addr(), ""));
    let mut c = gw.connect("localhost");
    let r = c.get("/hello", "localhost");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");
    // Kept alive: a second request on the same TLS connection.
    assert_eq!(c.get("/again", "localhost").status, 200);
    assert_eq!(up.last().target, "/again");
    // The plain listener still says http.
    assert_eq!(common::request(gw.plain, "GET", "/x", &[], b"").status, 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "http");
}

#[test]
fn request_bodies_stream_in_over_tls_by_length_and_chunked() {
    let up = Upstream::echo();
    let gw = TlsGateway::start(&config(up.addr(), ""));
    let mut c = gw.connect("localhost");
    let body = vec![b'x'; 1 << 20];
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.stream.write_all(head.as_bytes()).unwrap();
    c.stream.write_all(&body).unwrap();
    let r = read_response(&mut BufReader::new(&mut c.stream), false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 1 << 20);
    // Chunked, on the same connection.
    let mut chunked =
        b"POST /chunks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..64 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'y'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.stream.write_all(&chunked).unwrap();
    let r = read_response(&mut BufReader::new(&mut c.stream), false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 64 * 1024);
}

/// A plain upstream that answers every request with `size` bytes of `z`.
fn large_upstream(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(sock.try_clone().unwrap());
                let mut out = sock;
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                    if out.write_all(resp.as_bytes()).is_err()
                        || out.write_all(&vec![b'z'; size]).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_large_response_body_goes_out_over_tls_where_plain_would_splice() {
    let size = 1 << 20;
    let gw = TlsGateway::start(&config(large_upstream(size), ""));
    let mut c = gw.connect("localhost");
    for _ in 0..2 {
        let r = c.get("/big", "localhost");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), size);
        assert!(r.body.iter().all(|b| *b == b'z'));
    }
    let plain = common::request(gw.plain, "GET", "/big", &[], b"");
    assert_eq!(plain.body.len(), size);
}

#[test]
fn an_https_only_route_answers_426_on_plain_and_is_served_over_tls() {
    let up = Upstream::echo();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{}\n  routes:\n  - name: secure\n    protocols: [https]\n    paths: [/secure]\n",
        up.addr()
    );
    let gw = TlsGateway::start(&yaml);
    let plain = common::request(gw.plain, "GET", "/secure", &[], b"");
    assert_eq!(plain.status, 426, "{}", plain.text());
    let r = gw.connect("localhost").get("/secure", "localhost");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");
}

#[test]
fn routes_snis_match_the_handshakes_server_name_and_are_ignored_on_plain() {
    let up = Upstream::echo();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{}\n  routes:\n  - name: by-sni\n    snis: [\"*.sni.test\"]\n    paths: [/s]\n  - name: sni-only\n    protocols: [https]\n    snis: [only.test]\n",
        up.addr()
    );
    let gw = TlsGateway::start(&yaml);
    assert_eq!(gw.connect("a.sni.test").get("/s", "x").status, 200);
    assert_eq!(gw.connect("other.test").get("/s", "x").status, 404);
    assert_eq!(common::request(gw.plain, "GET", "/s", &[], b"").status, 200);
    // A route with only `snis` takes every request of that server name.
    assert_eq!(gw.connect("only.test").get("/anything", "x").status, 200);
    assert_eq!(up.last().target, "/anything");
    assert_eq!(gw.connect("other.test").get("/anything", "x").status, 404);
}

// === Load errors and reload ===

#[test]
fn bad_pem_and_a_key_of_another_certificate_are_errors_at_their_field_and_keep_serving() {
    let up = Upstream::echo();
    let good = self_signed(&["a.test"]);
    let gw = TlsGateway::start(&config(
        up.addr(),
        &format!("certificates:\n{}", certificate_entry(&good, &["a.test"])),
    ));
    let other = self_signed(&["b.test"]);
    let mismatched = Cert {
        key: other.key.clone(),
        ..good.clone()
    };
    let broken = Cert {
        pem: "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n".into(),
        ..good.clone()
    };
    let yaml = config(
        up.addr(),
        &format!(
            "certificates:\n{}{}",
            certificate_entry(&broken, &["c.test"]),
            certificate_entry(&mismatched, &["d.test"])
        ),
    );
    let errors = gw.reload(&yaml);
    let line_of = |needle: &str, nth: usize| {
        yaml.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap()
    };
    // Block scalars: the position is the value's first line, under its key.
    let cert_line = line_of("- cert:", 0) + 1;
    let key_line = line_of("key:", 1) + 1;
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("kong.yaml:{cert_line}:"))
                && e.contains("certificates[0].cert")
                && e.contains("base64")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("kong.yaml:{key_line}:"))
                && e.contains("certificates[1].key")
                && e.contains("does not match")),
        "{errors:#?}"
    );
    // No error quotes a key.
    assert!(
        !errors.iter().any(|e| e.contains("PRIVATE KEY")),
        "{errors:#?}"
    );
    // The serving snapshot stayed: a.test still has its certificate.
    assert_eq!(gw.connect("a.test").certificate(), good.der);
}

#[test]
fn a_chain_out_of_order_is_a_load_error() {
    let ca = Ca::new("order CA");
    let leaf = ca.issue(&["o.test"]);
    let reversed = Cert {
        pem: format!("{}{}", ca.pem, leaf.pem),
        ..leaf.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let yaml = config(
        up,
        &format!(
            "certificates:\n{}",
            certificate_entry(&reversed, &["o.test"])
        ),
    );
    std::fs::write(dir.path().join("kong.yaml"), &yaml).unwrap();
    let err = switchyard::gateway::Builder::new()
        .start(dir.path().to_path_buf())
        .err()
        .expect("rejected");
    let text: Vec<String> = err.0.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("certificates[0].cert") && e.contains("out of order")),
        "{text:#?}"
    );
    // In order it loads.
    let ordered = Cert {
        pem: format!("{}{}", leaf.pem, ca.pem),
        ..leaf
    };
    let yaml = config(
        up,
        &format!(
            "certificates:\n{}",
            certificate_entry(&ordered, &["o.test"])
        ),
    );
    std::fs::write(dir.path().join("kong.yaml"), &yaml).unwrap();
    assert!(
        switchyard::gateway::Builder::new()
            .start(dir.path().to_path_buf())
            .is_ok()
    );
}

#[test]
fn a_key_from_a_vault_reference_is_read_from_the_environment() {
    let up = Upstream::echo();
    let c = self_signed(&["vault.test"]);
    // SAFETY of the test: the variable is this test's own.
    unsafe { std::env::set_var("SWITCHYARD_TLS_TEST_KEY", &c.key) };
    let certs = format!(
        "certificates:\n- cert: {}  key: \"{{vault://env/switchyard-tls-test-key}}\"\n  snis: [vault.test]\n",
        block(&c.pem, 4)
    );
    let gw = TlsGateway::start(&config(up.addr(), &certs));
    assert_eq!(gw.connect("vault.test").certificate(), c.der);
    // The config the admin API prints has no key in it.
    let printed = switchyard::admin::config_json(&gw.gateway.snapshot().model).to_string();
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
}

#[test]
fn a_reload_swaps_certificates_for_new_handshakes_and_keeps_established_connections() {
    let up = Upstream::echo();
    let first = self_signed(&["r.test"]);
    let gw = TlsGateway::start(&config(
        up.addr(),
        &format!("certificates:\n{}", certificate_entry(&first, &["r.test"])),
    ));
    let mut established = gw.connect("r.test");
    assert_eq!(established.certificate(), first.der);
    assert_eq!(established.get("/one", "r.test").status, 200);

    let second = self_signed(&["r.test"]);
    let errors = gw.reload(&config(
        up.addr(),
        &format!("certificates:\n{}", certificate_entry(&second, &["r.test"])),
    ));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(gw.connect("r.test").certificate(), second.der);
    // The connection made before the reload goes on, on its own session.
    assert_eq!(established.get("/two", "r.test").status, 200);
    assert_eq!(established.certificate(), first.der);
}

// === Upstream TLS ===

/// An HTTPS upstream on 127.0.0.1:0 that answers every request with what it saw: the
/// Host, the SNI, and whether the client presented a certificate.
struct HttpsUpstream {
    addr: SocketAddr,
}

impl HttpsUpstream {
    fn start(cert: &Cert, client_ca: Option<&Ca>) -> HttpsUpstream {
        Self::start_with_chain(cert, &[], client_ca)
    }

    /// Presents `cert` followed by `intermediates`.
    fn start_with_chain(
        cert: &Cert,
        intermediates: &[Vec<u8>],
        client_ca: Option<&Ca>,
    ) -> HttpsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut chain = vec![CertificateDer::from(cert.der.clone())];
        chain.extend(intermediates.iter().cloned().map(CertificateDer::from));
        let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).unwrap();
        let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || serve_https(config, sock));
            }
        });
        HttpsUpstream { addr }
    }
}

fn serve_https(config: Arc<rustls::ServerConfig>, sock: TcpStream) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let host = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("host: ")
                    .or_else(|| l.strip_prefix("Host: "))
            })
            .unwrap_or("")
            .to_string();
        let body = serde_json::json!({
            "host": host,
            "sni": tls.conn.server_name(),
            "client_cert": tls.conn.peer_certificates().is_some(),
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(resp.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
    }
}

use rustls::pki_types::pem::PemObject;

/// kong.yaml with one `https` service at `url` (and `extra` service fields) on /up, plus
/// `tail` (certificates, ca_certificates).
fn upstream_config(url: &str, extra: &str, tail: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: secure-up\n  url: {url}\n{extra}  routes:\n  - name: up\n    paths: [/up]\n{tail}"
    )
}

fn plain_get(gw: &TlsGateway, path: &str) -> Resp {
    common::request(gw.plain, "GET", path, &[], b"")
}

#[test]
fn an_https_upstream_is_not_verified_unless_tls_verify_is_set() {
    let upstream = HttpsUpstream::start(&self_signed(&["localhost"]), None);
    let url = format!("https://localhost:{}", upstream.addr.port());
    let gw = TlsGateway::start(&upstream_config(&url, "", ""));
    let r = plain_get(&gw, "/up");
    assert_eq!(r.status, 200, "{}", r.text());
    // The upstream was asked for its own name.
    assert_eq!(r.json()["sni"], "localhost");

    // tls_verify: true against the public roots: a self-signed upstream is refused.
    let errors = gw.reload(&upstream_config(&url, "  tls_verify: true\n", ""));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(plain_get(&gw, "/up").status, 502);
}

#[test]
fn an_https_upstream_is_verified_with_the_services_ca_certificates() {
    let ca = Ca::new("upstream CA");
    let upstream = HttpsUpstream::start(&ca.issue(&["localhost"]), None);
    let url = format!("https://localhost:{}", upstream.addr.port());
    let cas = format!(
        "ca_certificates:\n- id: 0b5c1a57-0000-4000-8000-00000000ca01\n  cert: {}",
        block(&ca.pem, 4)
    );
    let verified = "  tls_verify: true\n  tls_verify_depth: 2\n  ca_certificates: [0b5c1a57-0000-4000-8000-00000000ca01]\n";
    let gw = TlsGateway::start(&upstream_config(&url, verified, &cas));
    let r = plain_get(&gw, "/up");
    assert_eq!(r.status, 200, "{}", r.text());

    // Another CA's certificate does not verify it.
    let other = Ca::new("other CA");
    let cas = format!(
        "ca_certificates:\n- id: 0b5c1a57-0000-4000-8000-00000000ca01\n  cert: {}",
        block(&other.pem, 4)
    );
    let errors = gw.reload(&upstream_config(&url, verified, &cas));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(plain_get(&gw, "/up").status, 502);
}

#[test]
fn tls_verify_depth_limits_the_intermediates_between_the_upstream_and_its_root() {
    let root = Ca::new("depth root");
    let (intermediate, intermediate_der) = root.intermediate("depth intermediate");
    let leaf = intermediate.issue(&["localhost"]);
    let upstream = HttpsUpstream::start_with_chain(&leaf, &[intermediate_der], None);
    let url = format!("https://localhost:{}", upstream.addr.port());
    let cas = format!(
        "ca_certificates:\n- id: 0b5c1a57-0000-4000-8000-00000000ca02\n  cert: {}",
        block(&root.pem, 4)
    );
    let with_depth = |d: u8| {
        format!(
            "  tls_verify: true\n  tls_verify_depth: {d}\n  ca_certificates: [0b5c1a57-0000-4000-8000-00000000ca02]\n"
        )
    };
    let gw = TlsGateway::start(&upstream_config(&url, &with_depth(1), &cas));
    let r = plain_get(&gw, "/up");
    assert_eq!(r.status, 200, "{}", r.text());
    let errors = gw.reload(&upstream_config(&url, &with_depth(0), &cas));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(plain_get(&gw, "/up").status, 502);
}

#[test]
fn preserve_host_sends_the_clients_host_as_the_upstreams_sni() {
    let upstream = HttpsUpstream::start(&self_signed(&["localhost"]), None);
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: https://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/up]\n    preserve_host: true\n",
        upstream.addr.port()
    );
    let gw = TlsGateway::start(&yaml);
    let r = common::request(
        gw.plain,
        "GET",
        "/up",
        &[("Host", "client.example:8080")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sni"], "client.example");
    assert_eq!(r.json()["host"], "client.example:8080");
}

#[test]
fn a_client_certificate_is_presented_to_the_upstream_for_mtls() {
    let ca = Ca::new("client CA");
    let upstream = HttpsUpstream::start(&self_signed(&["localhost"]), Some(&ca));
    let url = format!("https://localhost:{}", upstream.addr.port());
    let client = ca.issue(&["gateway.test"]);
    let certs = format!(
        "certificates:\n- id: 0b5c1a57-0000-4000-8000-0000000c1e01\n  cert: {}  key: {}",
        block(&client.pem, 4),
        block(&client.key, 4)
    );
    let with_cert = "  client_certificate: 0b5c1a57-0000-4000-8000-0000000c1e01\n";
    let gw = TlsGateway::start(&upstream_config(&url, with_cert, &certs));
    let r = plain_get(&gw, "/up");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["client_cert"], true);

    // Without it the upstream refuses the handshake.
    let errors = gw.reload(&upstream_config(&url, "", &certs));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(plain_get(&gw, "/up").status, 502);
}

// === The binary ===

#[test]
fn the_binary_listens_on_tls_with_a_generated_default_certificate() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let named = self_signed(&["named.test"]);
    let certs = format!(
        "certificates:\n{}",
        certificate_entry(&named, &["named.test"])
    );
    std::fs::write(dir.path().join("kong.yaml"), config(up.addr(), &certs)).unwrap();
    let tls_port = common::dead_port();
    let listen = format!("127.0.0.1:{tls_port}");
    let gw = common::Running::start(dir.path(), &["--listen-tls", &listen]);
    assert!(gw.logged(&["TLS default certificate", "self-signed"]));
    let addr: SocketAddr = listen.parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let r = Client::connect(addr, "localhost").get("/via-binary", "localhost");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");
    assert_eq!(Client::connect(addr, "named.test").certificate(), named.der);
    // The admin API counts the certificate and never prints its key.
    assert_eq!(
        gw.admin("GET", "/status").json()["counts"]["certificates"],
        1
    );
    let printed = gw.admin("GET", "/config").text();
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
}
