//! The JWT bearer providers Ocelot routes authenticate with (`AuthenticationProviders`):
//! built once per snapshot (`snapshot::auth` reads the config, resolves `{vault://...}`
//! references and key files), with their signing keys parsed here (PEM, JWK, JWKS,
//! symmetric secrets), and for a JWKS URL or an OpenID Connect authority, a key cache that
//! outlives reloads (`Remote`).
//!
//! ```text
//! token ─▶ header (kid, alg) ─▶ keys of that kid (else every key) ─▶ jsonwebtoken::decode
//!        ─▶ iss, aud, exp/nbf with clock skew ─▶ claims
//! ```
//!
//! Remote keys (`Remote`) are fetched with reqwest: on first use, every `JwksRefreshSeconds`
//! in the background, and on demand when a token names a `kid` the cache lacks (at most once
//! every `JwksMinimumRefetchSeconds`). A fetch that fails keeps the keys already held; with
//! none, tokens fail to authenticate (401), never pass.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::diag::Path;

/// The longest a JWKS or discovery fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS or discovery document read.
const MAX_DOCUMENT: usize = 1 << 20;

/// One signing key and the algorithms it verifies.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// A verified token's payload.
pub type Payload = Map<String, Value>;

/// Why a provider did not authenticate a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    /// No key of the provider verified the signature.
    Signature,
    /// The signature is good; a claim is not (expired, issuer, audience, ...).
    Claims(String),
    /// The provider has no key at all (a remote JWKS never fetched, or unreachable).
    NoKeys(String),
}

impl Rejected {
    pub fn describe(&self, provider: &str) -> String {
        match self {
            Rejected::Signature => {
                format!("{provider}: the signature is not verified by any of its keys")
            }
            Rejected::Claims(why) => format!("{provider}: {why}"),
            Rejected::NoKeys(why) => format!("{provider}: no signing keys ({why})"),
        }
    }
}

/// A compiled provider.
pub struct Provider {
    pub name: Arc<str>,
    /// The issuer accepted is the one the authority's discovery document names.
    issuer_from_authority: bool,
    /// Issuers, audiences and lifetime, per key family with the algorithms of that family the
    /// provider accepts (jsonwebtoken wants a validation's algorithms in the key's family).
    validations: Vec<(AlgorithmFamily, Validation)>,
    /// Accepted `alg` values (the `Algorithms` setting, else every one).
    algorithms: Vec<Algorithm>,
    keys: Vec<Key>,
    pub remote: Option<Arc<Remote>>,
}

/// The providers of one snapshot, by name.
#[derive(Default)]
pub struct Providers {
    by_name: HashMap<String, Arc<Provider>>,
    /// Files the keys were read from, with a hash of their bytes: a reload re-reads the
    /// config when one changed.
    pub files: Vec<(PathBuf, u64)>,
}

impl Providers {
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    pub fn insert(&mut self, provider: Provider) {
        self.by_name
            .insert(provider.name.to_string(), Arc::new(provider));
    }

    /// Some file a provider read has changed (or gone) since.
    pub fn files_changed(&self) -> bool {
        self.files
            .iter()
            .any(|(path, hash)| std::fs::read(path).ok().map(|b| fnv(&b)) != Some(*hash))
    }
}

/// FNV-1a of a key file's bytes, to tell a changed file.
pub fn fnv(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::fnv::Fnv::default();
    h.write(b);
    h.finish()
}

/// A provider's token rules, as the snapshot compiles them from the config.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub name: String,
    /// Accepted `iss` values; empty: not checked (unless `issuer_from_authority`).
    pub issuers: Vec<String>,
    /// The issuer accepted is the one the authority's discovery document names.
    pub issuer_from_authority: bool,
    /// Accepted `aud` values; empty: not checked.
    pub audiences: Vec<String>,
    pub validate_lifetime: bool,
    pub require_expiration: bool,
    pub clock_skew_s: u64,
    /// Accepted `alg` names; empty: any the key allows.
    pub algorithms: Vec<String>,
}

impl Provider {
    pub fn new(rules: &Rules, keys: Vec<Key>, remote: Option<Arc<Remote>>) -> Provider {
        Provider {
            name: rules.name.as_str().into(),
            issuer_from_authority: rules.issuer_from_authority,
            validations: validations(rules),
            algorithms: accepted(rules),
            keys,
            remote,
        }
    }
}

fn accepted(p: &Rules) -> Vec<Algorithm> {
    p.algorithms
        .iter()
        .filter_map(|a| a.parse::<Algorithm>().ok())
        .collect()
}

/// The provider's token rules as jsonwebtoken checks them, per key family: ASP.NET's defaults
/// are ValidateIssuer, ValidateAudience, ValidateLifetime and RequireExpirationTime, so a
/// token without `iss`/`aud` fails where they are checked, and `nbf` is checked when present.
fn validations(p: &Rules) -> Vec<(AlgorithmFamily, Validation)> {
    let accepted = accepted(p);
    [
        AlgorithmFamily::Hmac,
        AlgorithmFamily::Rsa,
        AlgorithmFamily::Ec,
        AlgorithmFamily::Ed,
    ]
    .into_iter()
    .filter_map(|family| {
        let algorithms: Vec<Algorithm> = family
            .algorithms()
            .iter()
            .copied()
            .filter(|a| accepted.is_empty() || accepted.contains(a))
            .collect();
        (!algorithms.is_empty()).then(|| (family, validation(p, algorithms)))
    })
    .collect()
}

fn validation(p: &Rules, algorithms: Vec<Algorithm>) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.algorithms = algorithms;
    v.leeway = p.clock_skew_s;
    v.validate_exp = p.validate_lifetime;
    v.validate_nbf = p.validate_lifetime;
    v.required_spec_claims.clear();
    if p.require_expiration {
        v.required_spec_claims.insert("exp".into());
    }
    if p.issuers.is_empty() {
        v.iss = None;
    } else {
        v.set_issuer(&p.issuers);
        v.required_spec_claims.insert("iss".into());
    }
    if p.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&p.audiences);
        v.required_spec_claims.insert("aud".into());
    }
    v
}

impl Provider {
    /// Verifies `token` with the provider's keys for its `header`: those of its `kid` when
    /// it names one they have, else all of them (ASP.NET tries every key then), that accept
    /// its `alg`; then its claims.
    pub fn verify(&self, token: &str, header: &Header) -> Result<Payload, Rejected> {
        let remote = self.remote.as_ref().map(|r| r.snapshot());
        let remote_keys: &[Key] = remote.as_ref().map_or(&[], |r| &r.keys[..]);
        if self.keys.is_empty() && remote_keys.is_empty() {
            let why = remote
                .as_ref()
                .map(|r| r.describe_missing())
                .unwrap_or_else(|| "none configured".into());
            return Err(Rejected::NoKeys(why));
        }
        if !self.algorithms.is_empty() && !self.algorithms.contains(&header.alg) {
            return Err(Rejected::Claims(format!(
                "the token's algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let Some((_, validation)) = self
            .validations
            .iter()
            .find(|(f, _)| *f == header.alg.family())
        else {
            return Err(Rejected::Claims(format!(
                "the token's algorithm {:?} is not accepted",
                header.alg
            )));
        };
        let all = self.keys.iter().chain(remote_keys);
        let by_kid = |k: &&Key| header.kid.is_some() && k.kid == header.kid;
        let named = all.clone().any(|k| by_kid(&k));
        for key in all
            .filter(|k| !named || by_kid(k))
            .filter(|k| k.algorithms.contains(&header.alg))
        {
            match jsonwebtoken::decode::<Payload>(token, &key.key, validation) {
                Ok(data) => return self.check_discovered_issuer(data.claims, remote.as_deref()),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidEddsaKey => {}
                    kind => return Err(Rejected::Claims(claim_error(kind))),
                },
            }
        }
        Err(Rejected::Signature)
    }

    /// With an Authority and no Issuer, the issuer is the one its discovery document names.
    fn check_discovered_issuer(
        &self,
        claims: Payload,
        remote: Option<&KeySet>,
    ) -> Result<Payload, Rejected> {
        if !self.issuer_from_authority {
            return Ok(claims);
        }
        let issuer = remote.and_then(|r| r.issuer.as_deref());
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if Some(iss) == issuer => Ok(claims),
            _ => Err(Rejected::Claims(format!(
                "the token's issuer is not {}",
                issuer.unwrap_or("the one the authority names")
            ))),
        }
    }

    /// A fetch of the remote keys may give this token a key it lacks: the provider has a
    /// remote source whose keys do not name the token's `kid` (or are none), and the last
    /// attempt is older than the minimum interval.
    pub fn may_refetch(&self, header: &Header, now: Instant) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let set = remote.snapshot();
        let known = match &header.kid {
            Some(kid) => set.keys.iter().any(|k| k.kid.as_ref() == Some(kid)),
            None => !set.keys.is_empty(),
        };
        !known && remote.due(now)
    }
}

/// jsonwebtoken's claim failures in ASP.NET's words.
fn claim_error(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("the token's `{c}` claim is malformed"),
        other => format!("the token is invalid ({other:?})"),
    }
}

// === Keys ===

/// An inline key (its `{vault://...}` references already resolved): a PEM or JWK string, a
/// JWK object, a JWKS object, `{"Pem": ..., "Kid": ...}` or `{"Secret": ..., "Kid": ...}` (a
/// symmetric key, its UTF-8 bytes as ASP.NET's `SymmetricSecurityKey(Encoding.UTF8.
/// GetBytes(...))`). A problem comes with its path inside the key.
pub fn inline_key(value: &Value) -> Result<Vec<Key>, (Path, String)> {
    let keys = match value {
        Value::String(s) => text_key(s, None).map_err(|e| (Path::root(), e))?,
        Value::Object(o) => object_key(o)?,
        _ => {
            return Err((
                Path::root(),
                "a key is a PEM or JWK string, or a JWK object".into(),
            ));
        }
    };
    if keys.is_empty() {
        return Err((
            Path::root(),
            "the key set holds no signing key switchyard can use".into(),
        ));
    }
    Ok(keys)
}

fn object_key(o: &Map<String, Value>) -> Result<Vec<Key>, (Path, String)> {
    let get = |name: &str| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(k, v)| (k.clone(), v))
    };
    let kid = get("Kid").and_then(|(_, v)| v.as_str().map(String::from));
    if o.contains_key("kty") {
        return jwk_key(&Value::Object(o.clone()), true)
            .map(|k| k.into_iter().collect())
            .map_err(|e| (Path::root(), e));
    }
    if let Some((_, keys)) = o.get_key_value("keys") {
        return jwks(keys).map_err(|e| (Path::root().key("keys"), e));
    }
    if let Some((name, v)) = get("Pem") {
        let s = v.as_str().ok_or_else(|| {
            (
                Path::root().key(name.clone()),
                "expected a PEM string".to_string(),
            )
        })?;
        return text_key(s, kid).map_err(|e| (Path::root().key(name), e));
    }
    if let Some((name, v)) = get("Secret") {
        let s = v.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
            (
                Path::root().key(name.clone()),
                "expected the symmetric key as a non-empty string".to_string(),
            )
        })?;
        let key = DecodingKey::from_secret(s.as_bytes())
            .map_err(|e| (Path::root().key(name), e.to_string()))?;
        return Ok(vec![Key {
            kid,
            key,
            algorithms: AlgorithmFamily::Hmac.algorithms().to_vec(),
        }]);
    }
    Err((Path::root(), "a key object is a JWK (with `kty`), a JWKS (with `keys`), {\"Pem\": ...} or {\"Secret\": ...}".into()))
}

/// A PEM public key (RSA, EC or Ed25519; a certificate's key too) or a JWK/JWKS as JSON text.
fn text_key(s: &str, kid: Option<String>) -> Result<Vec<Key>, String> {
    let t = s.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("not a JWK: {e}"))?;
        let Value::Object(o) = v else {
            return Err("not a JWK object".into());
        };
        return object_key(&o).map_err(|(_, e)| e);
    }
    if !t.starts_with("-----BEGIN") {
        return Err("not a PEM key (-----BEGIN PUBLIC KEY-----...) nor a JWK".into());
    }
    if t.contains("PRIVATE KEY-----") {
        return Err("this is a private key: give the public key (a gateway only verifies)".into());
    }
    let b = t.as_bytes();
    let (key, family) = if let Ok(k) = DecodingKey::from_rsa_pem(b) {
        (k, AlgorithmFamily::Rsa)
    } else if let Ok(k) = DecodingKey::from_ec_pem(b) {
        (k, AlgorithmFamily::Ec)
    } else if let Ok(k) = DecodingKey::from_ed_pem(b) {
        (k, AlgorithmFamily::Ed)
    } else {
        return Err("the PEM block is not an RSA, EC or Ed25519 public key".into());
    };
    Ok(vec![Key {
        kid,
        key,
        algorithms: family.algorithms().to_vec(),
    }])
}

/// One JWK. `strict`: an inline key that cannot be used is an error; in a fetched set it is
/// skipped (`Ok(None)`), as encryption keys and unknown types are.
fn jwk_key(v: &Value, strict: bool) -> Result<Option<Key>, String> {
    let jwk: Jwk = match serde_json::from_value(v.clone()) {
        Ok(j) => j,
        Err(e) if strict => return Err(format!("not a usable JWK: {e}")),
        Err(_) => return Ok(None),
    };
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return if strict {
            Err("this JWK is an encryption key (`use`: `enc`)".into())
        } else {
            Ok(None)
        };
    }
    let algorithms: Vec<Algorithm> = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(a), _) => match a.to_string().parse::<Algorithm>() {
            Ok(a) => vec![a],
            Err(_) if strict => {
                return Err(format!(
                    "the JWK's `alg` {a} is not a signing algorithm switchyard verifies"
                ));
            }
            Err(_) => return Ok(None),
        },
        (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ if strict => return Err("only P-256 and P-384 EC keys are verified".into()),
            _ => return Ok(None),
        },
        (None, AlgorithmParameters::RSA(_)) => AlgorithmFamily::Rsa.algorithms().to_vec(),
        (None, AlgorithmParameters::OctetKey(_)) => AlgorithmFamily::Hmac.algorithms().to_vec(),
        (None, AlgorithmParameters::OctetKeyPair(_)) => vec![Algorithm::EdDSA],
        (None, _) if strict => return Err("this JWK's key type is not supported".into()),
        (None, _) => return Ok(None),
    };
    match DecodingKey::from_jwk(&jwk) {
        Ok(key) => Ok(Some(Key {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms,
        })),
        Err(e) if strict => Err(format!("the JWK's key material is not usable: {e}")),
        Err(_) => Ok(None),
    }
}

/// The usable signing keys of a JWKS `keys` array.
fn jwks(keys: &Value) -> Result<Vec<Key>, String> {
    let Value::Array(items) = keys else {
        return Err("`keys` is not an array".into());
    };
    let mut out = Vec::new();
    for k in items {
        if let Some(key) = jwk_key(k, false)? {
            out.push(key);
        }
    }
    Ok(out)
}

/// A JWKS document's keys (a JwksFile's).
pub fn jwks_document(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let keys = v.get("keys").ok_or("not a JWKS (no `keys`)")?;
    let out = jwks(keys)?;
    if out.is_empty() {
        return Err("the JWKS holds no signing key switchyard can use".into());
    }
    Ok(out)
}

// === Remote keys ===

/// What a fetch got: the keys, and the issuer a discovery document named.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
    pub issuer: Option<String>,
    /// The last fetch's failure, while it has no keys.
    error: Option<String>,
    source: String,
}

impl KeySet {
    fn describe_missing(&self) -> String {
        match &self.error {
            Some(e) => format!("{} could not be fetched: {e}", self.source),
            None => format!("{} not fetched yet", self.source),
        }
    }
}

#[derive(Default)]
struct Settings {
    /// `jwks URL` or `oidc URL` (the discovery document).
    source: String,
    refresh: Duration,
    min_refetch: Duration,
}

/// A provider's remote keys, kept across reloads by source URL.
#[derive(Default)]
pub struct Remote {
    settings: Mutex<Settings>,
    set: Mutex<Arc<KeySet>>,
    attempted: Mutex<Option<Instant>>,
    /// One fetch at a time; waiters then find the fresh keys.
    fetching: tokio::sync::Mutex<()>,
    refresher: AtomicBool,
}

impl Remote {
    /// Where the keys come from (`jwks URL` or `oidc URL` of a discovery document), how often
    /// they are refreshed, and the shortest time between two fetches for unknown `kid`s.
    pub fn configure(&self, source: String, refresh: Duration, min_refetch: Duration) {
        let mut s = lock(&self.settings);
        s.source = source;
        s.refresh = refresh;
        s.min_refetch = min_refetch;
    }

    /// The keys held now.
    pub fn snapshot(&self) -> Arc<KeySet> {
        lock(&self.set).clone()
    }

    /// Never fetched, or the last attempt is older than the minimum interval.
    fn due(&self, now: Instant) -> bool {
        let min = lock(&self.settings).min_refetch;
        lock(&self.attempted).is_none_or(|t| now.duration_since(t) >= min)
    }

    /// Fetches the keys unless another fetch made them fresh meanwhile, and starts the
    /// background refresh once. Never fails: a failure keeps the keys held, and is logged.
    pub async fn refetch(self: Arc<Self>) {
        let _one = self.fetching.lock().await;
        if !self.due(Instant::now()) {
            return;
        }
        self.fetch_now().await;
        if !self.refresher.swap(true, Ordering::AcqRel) {
            tokio::spawn(refresh_loop(Arc::downgrade(&self)));
        }
    }

    async fn fetch_now(&self) {
        *lock(&self.attempted) = Some(Instant::now());
        let source = lock(&self.settings).source.clone();
        let result = fetch(&source).await;
        let mut set = lock(&self.set);
        match result {
            Ok((keys, issuer)) => {
                tracing::info!(source = %source, keys = keys.len(), "JWKS fetched");
                *set = Arc::new(KeySet {
                    keys,
                    issuer,
                    error: None,
                    source,
                });
            }
            Err(e) => {
                tracing::warn!(source = %source, error = %e, held = set.keys.len(), "JWKS fetch failed; keeping the keys held");
                if set.keys.is_empty() {
                    *set = Arc::new(KeySet {
                        keys: Vec::new(),
                        issuer: None,
                        error: Some(e),
                        source,
                    });
                }
            }
        }
    }
}

/// Refreshes the keys every `JwksRefreshSeconds` while a snapshot still keeps the cache.
async fn refresh_loop(remote: Weak<Remote>) {
    loop {
        let every = match remote.upgrade() {
            Some(r) => lock(&r.settings).refresh,
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(r) = remote.upgrade() else { return };
        let _one = r.fetching.lock().await;
        r.fetch_now().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HTTP client of every fetch: rustls with the process's one crypto provider (ring)
/// handed over explicitly, and the webpki roots.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let builder = match tls {
            Ok(config) => builder.use_preconfigured_tls(config),
            Err(e) => {
                tracing::error!(error = %e, "no TLS for JWKS fetches");
                builder
            }
        };
        builder.build().unwrap_or_default()
    })
}

/// One JSON document, bounded.
async fn get_json(url: &str) -> Result<Value, String> {
    let mut resp = client()
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url} sent more than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} sent no JSON: {e}"))
}

/// The keys of a source (`jwks URL` or `oidc URL`), and a discovery document's issuer.
async fn fetch(source: &str) -> Result<(Vec<Key>, Option<String>), String> {
    let (kind, url) = source.split_once(' ').unwrap_or(("jwks", source));
    let (jwks_url, issuer) = if kind == "oidc" {
        let doc = get_json(url).await?;
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url} names no jwks_uri"))?
            .to_string();
        let issuer = doc.get("issuer").and_then(Value::as_str).map(String::from);
        (jwks_uri, issuer)
    } else {
        (url.to_string(), None)
    };
    let doc = get_json(&jwks_url).await?;
    let keys = doc
        .get("keys")
        .ok_or_else(|| format!("{jwks_url} is not a JWKS (no `keys`)"))
        .and_then(|k| jwks(k).map_err(|e| format!("{jwks_url}: {e}")))?;
    if keys.is_empty() {
        return Err(format!(
            "{jwks_url} holds no signing key switchyard can use"
        ));
    }
    Ok((keys, issuer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_inline_form() {
        let secret = text_key(r#"{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}"#, None).unwrap();
        assert_eq!(secret[0].kid.as_deref(), Some("a"));
        assert_eq!(secret[0].algorithms, AlgorithmFamily::Hmac.algorithms());
        let o: Map<String, Value> =
            serde_json::from_str(r#"{"secret": "s3cret", "KID": "b"}"#).unwrap();
        let k = object_key(&o).unwrap();
        assert_eq!(k[0].kid.as_deref(), Some("b"));
        let o: Map<String, Value> =
            serde_json::from_str(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}, {"kty": "weird"}]}"#).unwrap();
        assert_eq!(object_key(&o).unwrap().len(), 1);
        assert!(
            text_key("not a key", None)
                .unwrap_err()
                .contains("not a PEM key")
        );
        assert!(
            text_key(
                "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----",
                None
            )
            .unwrap_err()
            .contains("private key")
        );
        assert!(
            text_key(
                "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----",
                None
            )
            .unwrap_err()
            .contains("not an RSA, EC or Ed25519")
        );
        assert!(
            jwk_key(
                &serde_json::json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn problems_name_their_place_inside_the_key() {
        let (path, msg) = inline_key(&serde_json::json!({"Pem": 3})).err().unwrap();
        assert_eq!(path.render(), "Pem");
        assert_eq!(msg, "expected a PEM string");
        assert!(inline_key(&serde_json::json!(3)).is_err());
    }
}
