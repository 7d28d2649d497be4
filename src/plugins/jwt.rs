//! `jwt` (PRIORITY 1450, access): identifies the consumer by a signed JSON Web Token read
//! from a query argument, cookie or header; the claim `key_claim_name` names the consumer's
//! `jwt_secrets` credential whose secret or public key verifies the signature, and the
//! registered claims in `claims_to_verify` (`exp`, `nbf`) are checked
//! (`kong/plugins/jwt/handler.lua`, `jwt_parser.lua`). Signatures are verified by
//! `jsonwebtoken`'s crypto with keys parsed once per snapshot.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::{self, Attempt};
use super::schema::defaults::yes;
use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::{Consumer, respond};
use crate::snapshot::Consumers;

/// The plugin's `config` (Kong's `kong/plugins/jwt/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Query arguments the token is looked for in.
    #[serde(default = "default_uri_param_names")]
    pub uri_param_names: Vec<String>,
    /// Cookies the token is looked for in.
    #[serde(default)]
    pub cookie_names: Vec<String>,
    /// The claim (payload first, then header) naming the credential's `key`.
    #[serde(default = "default_key_claim_name")]
    pub key_claim_name: String,
    #[serde(default)]
    pub secret_is_base64: bool,
    pub claims_to_verify: Option<Vec<Claim>>,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// The longest lifetime (`exp` from now, in seconds) a token may have; 0: no limit.
    #[serde(default)]
    pub maximum_expiration: f64,
    /// Headers the token is looked for in.
    #[serde(default = "default_header_names")]
    pub header_names: Vec<String>,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

/// A registered claim (RFC 7519) the plugin can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Claim {
    #[serde(rename = "exp")]
    Exp,
    #[serde(rename = "nbf")]
    Nbf,
}

fn default_uri_param_names() -> Vec<String> {
    vec!["jwt".to_string()]
}

fn default_key_claim_name() -> String {
    "iss".to_string()
}

fn default_header_names() -> Vec<String> {
    vec!["authorization".to_string()]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.between(
            "maximum_expiration",
            self.maximum_expiration,
            0.0,
            31_536_000.0,
        );
        // Kong's conditional: a maximum expiration needs `exp` verified.
        if self.maximum_expiration > 0.0
            && let Some(claims) = &self.claims_to_verify
            && !claims.contains(&Claim::Exp)
        {
            c.error(
                "claims_to_verify",
                "expected to contain: exp (failed conditional validation given value of field \
                 'config.maximum_expiration')",
            );
        }
        non_empty(
            c,
            &[
                ("key_claim_name", Some(&self.key_claim_name)),
                ("anonymous", self.anonymous.as_deref()),
                ("realm", self.realm.as_deref()),
            ],
        );
        for (field, list) in [
            ("uri_param_names", &self.uri_param_names),
            ("cookie_names", &self.cookie_names),
            ("header_names", &self.header_names),
        ] {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() {
                    c.error(&format!("{field}[{i}]"), "length must be at least 1");
                }
            }
        }
    }
}

/// Kong's strings are non-empty unless the schema says otherwise (an implicit `len_min = 1`).
fn non_empty(c: &mut Checks, fields: &[(&str, Option<&str>)]) {
    for (field, value) in fields {
        if *value == Some("") {
            c.error(field, "length must be at least 1");
        }
    }
}

/// `jwt` (PRIORITY 1450).
pub struct Jwt;

impl PluginSpec for Jwt {
    const NAME: &'static str = "jwt";
    const PRIORITY: i32 = 1450;
    const KIND: Kind = Kind::Authenticates;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let (base, with_error) = match &config.realm {
            Some(r) => (
                format!("Bearer realm=\"{r}\""),
                format!("Bearer realm=\"{r}\", error=\"invalid_token\""),
            ),
            None => ("Bearer".into(), "Bearer error=\"invalid_token\"".into()),
        };
        let value = |s: String| {
            HeaderValue::from_str(&s).map_err(|_| "realm: not a valid header value".to_string())
        };
        let mut claims = config.claims_to_verify.clone().unwrap_or_default();
        claims.dedup();
        Ok(Some(Arc::new(Handler {
            anonymous: auth::anonymous(cx.consumers, config.anonymous.as_deref())?,
            challenge: value(base)?,
            challenge_invalid: value(with_error)?,
            headers: config
                .header_names
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            claims,
            consumers: cx.consumers.clone(),
            config,
        })))
    }
}

struct Handler {
    config: Config,
    anonymous: Option<Arc<Consumer>>,
    /// `WWW-Authenticate` without a token, and with an invalid one.
    challenge: HeaderValue,
    challenge_invalid: HeaderValue,
    headers: Vec<HeaderName>,
    claims: Vec<Claim>,
    consumers: Arc<Consumers>,
}

/// A token's parts (Kong's `jwt_parser`).
struct Token<'t> {
    /// `header.claims`, what the signature signs.
    signed: &'t str,
    signature: &'t str,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

/// Kong's `decode_token`, with its error texts.
fn decode(token: &str) -> Result<Token<'_>, &'static str> {
    let mut parts = token.splitn(3, '.');
    let (h, c, sig) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    let b64 =
        |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let json = |s: Option<&str>| -> Result<Value, &'static str> {
        let bytes = b64(s.ok_or("invalid JSON")?).map_err(|_| "invalid JSON")?;
        serde_json::from_slice(&bytes).map_err(|_| "invalid JSON")
    };
    let header = json(Some(h))?;
    let claims = json(c)?;
    let Value::Object(header) = header else {
        return Err("invalid alg");
    };
    if !header
        .get("alg")
        .and_then(Value::as_str)
        .is_some_and(supported)
    {
        return Err("invalid alg");
    }
    let Value::Object(claims) = claims else {
        return Err("invalid claims");
    };
    let signature = sig.ok_or("invalid signature")?;
    if b64(signature).is_err() {
        return Err("invalid signature");
    }
    Ok(Token {
        signed: &token[..h.len() + 1 + c.map_or(0, str::len)],
        signature: signature.trim_end_matches('='),
        header,
        claims,
    })
}

/// The algorithms Kong's parser knows.
fn supported(alg: &str) -> bool {
    matches!(
        alg,
        "HS256"
            | "HS384"
            | "HS512"
            | "RS256"
            | "RS384"
            | "RS512"
            | "ES256"
            | "ES384"
            | "ES512"
            | "PS256"
            | "PS384"
            | "PS512"
            | "EdDSA"
    )
}

impl Handler {
    fn unauthorized(&self, message: &str) -> Attempt {
        Attempt::Failed(auth::unauthorized(message, &self.challenge_invalid))
    }

    /// Kong's `retrieve_tokens`: every distinct token in the query, cookies and headers.
    fn tokens(&self, req: &Request<'_>) -> HashSet<String> {
        let mut set = HashSet::new();
        if let Some(q) = req.query() {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                if !v.is_empty() && self.config.uri_param_names.iter().any(|n| *n == k) {
                    set.insert(v.into_owned());
                }
            }
        }
        for name in &self.config.cookie_names {
            if let Some(v) = cookie(req, name).filter(|v| !v.is_empty()) {
                set.insert(v.to_string());
            }
        }
        for name in &self.headers {
            if let Some(t) = req
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer)
            {
                set.insert(t.to_string());
            }
        }
        set
    }

    fn attempt(&self, req: &Request<'_>) -> Attempt {
        let tokens = self.tokens(req);
        let token = match tokens.len() {
            0 => return Attempt::Failed(auth::unauthorized("Unauthorized", &self.challenge)),
            1 => tokens.into_iter().next().unwrap_or_default(),
            _ => return self.unauthorized("Multiple tokens provided"),
        };
        let jwt = match decode(&token) {
            Ok(t) => t,
            Err(e) => return self.unauthorized(&format!("Bad token; {e}")),
        };
        let claim = &self.config.key_claim_name;
        let key = match jwt.claims.get(claim).or_else(|| jwt.header.get(claim)) {
            None | Some(Value::Null) => {
                return self.unauthorized(&format!("No mandatory '{claim}' in claims"));
            }
            Some(Value::String(s)) if s.is_empty() => {
                return self.unauthorized(&format!("Invalid '{claim}' in claims"));
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let Some((found, secret)) = self.consumers.by_jwt_key(&key) else {
            return self.unauthorized(&format!("No credentials found for given '{claim}'"));
        };
        if jwt.header.get("alg").and_then(Value::as_str) != Some(alg_name(secret.algorithm)) {
            return self.unauthorized("Invalid algorithm");
        }
        let key = if self.config.secret_is_base64 {
            secret.base64_key.as_ref()
        } else {
            Some(&secret.key)
        };
        let Some(key) = key else {
            return self.unauthorized("Invalid key/secret");
        };
        let verified = jsonwebtoken::crypto::verify(
            jwt.signature,
            jwt.signed.as_bytes(),
            key,
            secret.algorithm,
        );
        if !matches!(verified, Ok(true)) {
            return self.unauthorized("Invalid signature");
        }
        if let Some(errors) = self.claim_errors(&jwt.claims) {
            let mut resp =
                respond::json(StatusCode::UNAUTHORIZED, Value::Object(errors).to_string());
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, self.challenge_invalid.clone());
            return Attempt::Failed(resp);
        }
        Attempt::Authenticated(found.clone())
    }

    /// `verify_registered_claims` and `check_maximum_expiration`: each problem by claim.
    fn claim_errors(&self, claims: &Map<String, Value>) -> Option<Map<String, Value>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64);
        let mut errors = Map::new();
        for c in &self.claims {
            let name = match c {
                Claim::Exp => "exp",
                Claim::Nbf => "nbf",
            };
            let problem = match (c, claims.get(name).and_then(Value::as_f64)) {
                (_, None) => Some("must be a number"),
                (Claim::Exp, Some(exp)) => (exp <= now).then_some("token expired"),
                (Claim::Nbf, Some(nbf)) => (nbf > now).then_some("token not valid yet"),
            };
            if let Some(p) = problem {
                errors.insert(name.into(), p.into());
            }
        }
        if errors.is_empty() && self.config.maximum_expiration > 0.0 {
            let exp = claims.get("exp").and_then(Value::as_f64);
            if exp.is_none_or(|e| e - now > self.config.maximum_expiration) {
                errors.insert("exp".into(), "exceeds maximum allowed expiration".into());
            }
        }
        (!errors.is_empty()).then_some(errors)
    }
}

fn alg_name(a: jsonwebtoken::Algorithm) -> &'static str {
    use jsonwebtoken::Algorithm::*;
    match a {
        HS256 => "HS256",
        HS384 => "HS384",
        HS512 => "HS512",
        RS256 => "RS256",
        RS384 => "RS384",
        RS512 => "RS512",
        PS256 => "PS256",
        PS384 => "PS384",
        PS512 => "PS512",
        ES256 => "ES256",
        ES384 => "ES384",
        EdDSA => "EdDSA",
        _ => "",
    }
}

/// Kong's `\s*[Bb]earer\s+(.+)`: the token after the scheme.
fn bearer(value: &str) -> Option<&str> {
    let at = value
        .find("earer")
        .filter(|&i| i > 0 && matches!(&value[i - 1..i], "B" | "b"))?;
    let rest = &value[at + 5..];
    let token = rest.trim_start();
    (token.len() < rest.len() && !token.is_empty()).then_some(token)
}

/// The first cookie named `name` (nginx's `$cookie_NAME`).
fn cookie<'r>(req: &'r Request<'_>, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        Jwt::NAME
    }
    fn priority(&self) -> i32 {
        Jwt::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        auth::access(
            ctx,
            req,
            self.config.run_on_preflight,
            self.anonymous.as_ref(),
            |_, req| self.attempt(req),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.uri_param_names, ["jwt"]);
        assert!(c.cookie_names.is_empty());
        assert_eq!(c.key_claim_name, "iss");
        assert_eq!(c.header_names, ["authorization"]);
        assert_eq!(c.maximum_expiration, 0.0);
        assert!(c.run_on_preflight && !c.secret_is_base64);
        assert_eq!(c.claims_to_verify, None);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "uri_param_names: [token]\ncookie_names: [jwt]\nkey_claim_name: kid\n\
             secret_is_base64: true\nclaims_to_verify: [exp, nbf]\nanonymous: guest\n\
             run_on_preflight: false\nmaximum_expiration: 3600\nheader_names: [x-jwt]\n\
             realm: api",
        )
        .unwrap();
        assert_eq!(c.claims_to_verify, Some(vec![Claim::Exp, Claim::Nbf]));
        assert_eq!(c.maximum_expiration, 3600.0);
        assert_eq!(c.key_claim_name, "kid");
        assert_eq!(c.header_names, ["x-jwt"]);
        assert_eq!(c.realm.as_deref(), Some("api"));
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("maximum_expiration: 31536001").unwrap_err(),
            ["maximum_expiration: value should be between 0 and 31536000"]
        );
        assert_eq!(
            parse::<Config>("maximum_expiration: 60\nclaims_to_verify: [nbf]").unwrap_err(),
            [
                "claims_to_verify: expected to contain: exp (failed conditional validation given \
                 value of field 'config.maximum_expiration')"
            ]
        );
        // As in Kong, the conditional only looks at a list that is set.
        parse::<Config>("maximum_expiration: 60").unwrap();
        parse::<Config>("maximum_expiration: 60\nclaims_to_verify: [exp]").unwrap();
        assert_eq!(
            parse::<Config>("claims_to_verify: [iat]").unwrap_err(),
            ["claims_to_verify[0]: `iat` is not one of: exp, nbf"]
        );
        assert_eq!(
            parse::<Config>("header_names: ['']\nkey_claim_name: ''").unwrap_err(),
            [
                "key_claim_name: length must be at least 1",
                "header_names[0]: length must be at least 1"
            ]
        );
        assert_eq!(
            parse::<Config>("claims_to_verfy: [exp]").unwrap_err(),
            ["claims_to_verfy: unknown field `claims_to_verfy`; did you mean `claims_to_verify`?"]
        );
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "claims_to_verify: [exp]\nkey_claim_name: iss",
            "claims_to_verify: [exp]\nkey_claim_name: iss\nsecret_is_base64: false",
            "secret_is_base64: false",
            "claims_to_verify: [exp]",
            "anonymous: null\nclaims_to_verify: null\ncookie_names: []\nheader_names: [authorization]\n\
             key_claim_name: iss\nmaximum_expiration: 0\nrealm: null\nrun_on_preflight: true\n\
             secret_is_base64: false\nuri_param_names: [jwt]",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
