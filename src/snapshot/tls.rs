//! The TLS material of one snapshot: the certificates the TLS listeners present, found by
//! SNI with Kong's precedence, and each service's upstream TLS settings (its trusted CAs,
//! verification depth and client certificate). Everything is parsed and checked here, when
//! the snapshot compiles: a PEM that does not parse, a key that does not match its
//! certificate or a chain out of order is an error at the field it was written in, and the
//! serving snapshot stays.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::model::{Model, Origin, Pem, Service};
use crate::config::vault::Vaults;
use crate::proxy::client::{ClientCert, UpstreamTls, UpstreamTlsSettings};

/// One certificate entity's key pairs: `cert`/`key`, then `cert_alt`/`key_alt`.
#[derive(Debug)]
pub struct Keys(Vec<Arc<CertifiedKey>>);

impl Keys {
    /// The first pair the client can verify a signature of (ECDSA or RSA), else the first.
    pub fn choose(&self, schemes: &[SignatureScheme]) -> Arc<CertifiedKey> {
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .unwrap_or(&self.0[0])
            .clone()
    }
}

/// The certificates of the snapshot by SNI name (exact, `*.suffix` or `prefix.*`).
#[derive(Default, Debug)]
pub struct Certificates {
    by_name: HashMap<String, Arc<Keys>>,
}

impl Certificates {
    /// The certificate for `sni` as Kong picks it (`kong/runloop/certificate.lua`): the exact
    /// name, then the name with its first label as `*`, then with its last label as `*`.
    pub fn find(&self, sni: &str) -> Option<&Arc<Keys>> {
        if self.by_name.is_empty() {
            return None;
        }
        let sni = sni.to_ascii_lowercase();
        if let Some(k) = self.by_name.get(&sni) {
            return Some(k);
        }
        if let Some(dot) = sni.find('.')
            && let Some(k) = self.by_name.get(&format!("*{}", &sni[dot..]))
        {
            return Some(k);
        }
        if let Some(dot) = sni.rfind('.')
            && let Some(k) = self.by_name.get(&format!("{}*", &sni[..=dot]))
        {
            return Some(k);
        }
        // Kong's catch-all SNI `*`, before the listener's default certificate.
        self.by_name.get("*")
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

type ChainAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A problem with TLS material, at the field it was written in.
pub type Problem = (Origin, String);

/// What `compile` makes of the model's TLS entities.
pub struct Compiled {
    pub certificates: Certificates,
    /// By service index: `None` when the service uses the default settings (or no TLS).
    pub upstream: Vec<Option<Arc<UpstreamTls>>>,
}

/// Compiles every certificate and every service's upstream TLS settings.
pub fn compile(model: &Model, vaults: &Vaults) -> (Compiled, Vec<Problem>) {
    let mut problems = Vec::new();
    let (certificates, pairs) = listener_certificates(model, vaults, &mut problems);
    let cas: Vec<Option<Vec<CertificateDer<'static>>>> = model
        .ca_certificates
        .iter()
        .map(|ca| {
            let text = resolved(&ca.cert, vaults, &mut problems)?;
            chain(&text)
                .map_err(|e| problems.push((ca.cert.origin.clone(), e)))
                .ok()
        })
        .collect();
    let upstream = model
        .services
        .iter()
        .map(|s| {
            let settings = upstream_settings(s, &cas, &pairs)?;
            let id = settings_id(&settings);
            UpstreamTls::new(settings, id)
                .map(Arc::new)
                .map_err(|e| {
                    problems.push((s.origin.clone(), format!("upstream TLS settings: {e}")))
                })
                .ok()
        })
        .collect();
    let compiled = Compiled {
        certificates,
        upstream,
    };
    (compiled, problems)
}

/// The certificates by SNI, and each certificate entity's main chain and key (for the
/// services that present it as their client certificate).
fn listener_certificates(
    model: &Model,
    vaults: &Vaults,
    problems: &mut Vec<Problem>,
) -> (Certificates, Vec<Option<ChainAndKey>>) {
    let mut by_name = HashMap::new();
    let mut pairs = Vec::with_capacity(model.certificates.len());
    for c in &model.certificates {
        let main = key_pair(&c.cert, &c.key, vaults, problems);
        let alt = c
            .alt
            .as_ref()
            .and_then(|(cert, key)| key_pair(cert, key, vaults, problems));
        let Some((chain, key, certified)) = main else {
            pairs.push(None);
            continue;
        };
        pairs.push(Some((chain, key)));
        let mut keys = vec![certified];
        keys.extend(alt.map(|(_, _, k)| k));
        let keys = Arc::new(Keys(keys));
        for sni in &c.snis {
            by_name.insert(sni.clone(), keys.clone());
        }
    }
    (Certificates { by_name }, pairs)
}

/// A TLS service's own settings; `None` when it has none beyond `tls_verify` (the shared
/// default configurations serve it).
fn upstream_settings(
    s: &Service,
    cas: &[Option<Vec<CertificateDer<'static>>>],
    pairs: &[Option<ChainAndKey>],
) -> Option<UpstreamTlsSettings> {
    let custom = s.tls_verify_depth.is_some()
        || !s.ca_certificates.is_empty()
        || s.client_certificate.is_some();
    if !s.protocol.is_tls() || !custom {
        return None;
    }
    Some(UpstreamTlsSettings {
        verify: s.tls_verify.unwrap_or(false),
        roots: s
            .ca_certificates
            .iter()
            .filter_map(|i| cas[*i].as_ref())
            .flatten()
            .cloned()
            .collect(),
        depth: s.tls_verify_depth,
        client: s.client_certificate.and_then(|i| {
            let (chain, key) = pairs[i].as_ref()?;
            Some(ClientCert {
                chain: chain.clone(),
                key: key.clone_key(),
            })
        }),
    })
}

/// Identifies TLS settings across reloads, so that pooled connections made with them serve
/// the next snapshot too (and never a service with other settings). Made of what the
/// settings hold once references are read, so a changed secret behind the same reference
/// is a change; never printed.
fn settings_id(s: &UpstreamTlsSettings) -> u64 {
    let mut h = crate::fnv::Fnv::with_seed(0x7115);
    h.write_u8(u8::from(s.verify));
    h.write_u16(s.depth.map_or(0xffff, u16::from));
    for r in &s.roots {
        h.write(r);
    }
    if let Some(c) = &s.client {
        c.chain.iter().for_each(|d| h.write(d));
        h.write(c.key.secret_der());
    }
    h.finish() | 1
}

/// The PEM text of a field, its `{vault://...}` reference read.
fn resolved(pem: &Pem, vaults: &Vaults, problems: &mut Vec<Problem>) -> Option<String> {
    match vaults.resolve(&pem.text) {
        Ok(Some(v)) => Some(v),
        Ok(None) => Some(pem.text.clone()),
        Err(e) => {
            problems.push((
                pem.origin.clone(),
                format!("cannot resolve {}: {e}", pem.text),
            ));
            None
        }
    }
}

/// A parsed chain, its key, and both ready to sign with.
pub type Pair = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Arc<CertifiedKey>,
);

/// A certificate chain and its key, parsed and checked against each other; a problem is
/// reported at the field it is in.
fn key_pair(cert: &Pem, key: &Pem, vaults: &Vaults, problems: &mut Vec<Problem>) -> Option<Pair> {
    let cert_text = resolved(cert, vaults, problems);
    let key_text = resolved(key, vaults, problems);
    match parse_pair(&cert_text?, &key_text?) {
        Ok(pair) => Some(pair),
        Err(Bad::Cert(e)) => {
            problems.push((cert.origin.clone(), e));
            None
        }
        Err(Bad::Key(e)) => {
            problems.push((key.origin.clone(), e));
            None
        }
    }
}

/// Which half of a key pair is wrong, and why (never quoting a key).
#[derive(Debug)]
pub enum Bad {
    Cert(String),
    Key(String),
}

/// Parses a PEM certificate chain and its PEM private key, and checks that they belong
/// together.
pub fn parse_pair(cert: &str, key: &str) -> Result<Pair, Bad> {
    let chain = chain(cert).map_err(Bad::Cert)?;
    let der = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
        Bad::Key(format!(
            "the private key does not parse as PEM (PKCS#8, PKCS#1 or SEC1): {}",
            pem_error(&e)
        ))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der.clone_key())
        .map_err(|e| Bad::Key(format!("unusable private key: {e}")))?;
    // The public keys are compared as DER, read here rather than by webpki, which refuses
    // X.509 v1 certificates that OpenSSL (and so Kong) serves.
    let matches = match (signing.public_key(), der::spki(&chain[0])) {
        (Some(key), Some(cert)) => key.as_ref() == cert,
        _ => true, // a key type whose public half cannot be told: as rustls, not an error
    };
    if !matches {
        return Err(Bad::Key(
            "the private key does not match the certificate".into(),
        ));
    }
    Ok((
        chain.clone(),
        der,
        Arc::new(CertifiedKey::new(chain, signing)),
    ))
}

/// What is wrong with a PEM value, without quoting it (it may hold a key).
fn pem_error(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "no PEM block found",
        Error::MissingSectionEnd { .. } => "a BEGIN line has no END line",
        Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        Error::Base64Decode(_) => "invalid base64 inside a PEM block",
        _ => "malformed PEM",
    }
}

/// The certificates of a PEM value, end-entity first, each issued by the next.
pub fn chain(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate does not parse as PEM: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err("no `-----BEGIN CERTIFICATE-----` block found".into());
    }
    let mut names = Vec::with_capacity(certs.len());
    for (i, c) in certs.iter().enumerate() {
        names.push(
            der::issuer_subject(c).ok_or_else(|| {
                format!("certificate {} of the chain is not valid X.509 DER", i + 1)
            })?,
        );
    }
    for (i, pair) in names.windows(2).enumerate() {
        if pair[0].0 != pair[1].1 {
            return Err(format!(
                "the chain is out of order: certificate {} is not issued by certificate {} (each must be followed by its issuer)",
                i + 1,
                i + 2
            ));
        }
    }
    Ok(certs)
}

/// Just enough DER to read a certificate's issuer and subject names.
mod der {
    /// One TLV: (tag, whole encoding, contents, rest).
    type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let header = input.len() - rest.len();
        Some((tag, &input[..header + len], &rest[..len], &rest[len..]))
    }

    /// The issuer's and the subject's encoded names.
    pub fn issuer_subject(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        let (issuer, subject, _) = names_and_rest(cert)?;
        Some((issuer, subject))
    }

    /// The encoded SubjectPublicKeyInfo.
    pub fn spki(cert: &[u8]) -> Option<&[u8]> {
        let (_, _, rest) = names_and_rest(cert)?;
        let (SEQUENCE, spki, _, _) = tlv(rest)? else {
            return None;
        };
        Some(spki)
    }

    const SEQUENCE: u8 = 0x30;

    /// Issuer, subject, and what follows the subject in the TBSCertificate.
    fn names_and_rest(cert: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
        let (SEQUENCE, _, cert, _) = tlv(cert)? else {
            return None;
        };
        let (SEQUENCE, _, tbs, _) = tlv(cert)? else {
            return None;
        };
        let (tag, _, _, mut rest) = tlv(tbs)?;
        if tag == 0xa0 {
            rest = tlv(rest)?.3; // version, then the serial
        }
        let (_, _, _, rest) = tlv(rest)?; // signature algorithm
        let (SEQUENCE, issuer, _, rest) = tlv(rest)? else {
            return None;
        };
        let (_, _, _, rest) = tlv(rest)?; // validity
        let (SEQUENCE, subject, _, rest) = tlv(rest)? else {
            return None;
        };
        Some((issuer, subject, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Keys> {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let der = PrivateKeyDer::from_pem_slice(k.serialize_pem().as_bytes()).unwrap();
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .unwrap();
        Arc::new(Keys(vec![Arc::new(CertifiedKey::new(
            vec![c.der().clone()],
            signing,
        ))]))
    }

    #[test]
    fn sni_precedence_is_kongs_exact_then_leading_then_trailing_wildcard() {
        let (exact, lead, trail) = (keys(), keys(), keys());
        let mut by_name = HashMap::new();
        by_name.insert("api.example.com".to_string(), exact.clone());
        by_name.insert("*.example.com".to_string(), lead.clone());
        by_name.insert("api.example.*".to_string(), trail.clone());
        let c = Certificates { by_name };
        assert!(Arc::ptr_eq(c.find("API.example.com").unwrap(), &exact));
        assert!(Arc::ptr_eq(c.find("web.example.com").unwrap(), &lead));
        assert!(Arc::ptr_eq(c.find("api.example.org").unwrap(), &trail));
        // One label only: `*.example.com` is not `a.b.example.com`'s.
        assert!(c.find("a.b.example.com").is_none());
        assert!(c.find("example.com").is_none());
    }

    #[test]
    fn a_chain_must_run_from_the_leaf_to_its_issuers() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let ok = format!("{}{}", leaf.pem(), ca_cert.pem());
        assert_eq!(chain(&ok).unwrap().len(), 2);
        let reversed = format!("{}{}", ca_cert.pem(), leaf.pem());
        assert!(chain(&reversed).unwrap_err().contains("out of order"));
        assert!(
            chain("not a pem")
                .unwrap_err()
                .contains("BEGIN CERTIFICATE")
        );
    }
}
