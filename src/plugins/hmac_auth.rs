//! `hmac-auth` (PRIORITY 1030, access): identifies the consumer by an HTTP signature
//! (`Authorization: hmac username="…", algorithm="…", headers="…", signature="…"`) made with
//! the secret of one of the consumers' `hmacauth_credentials`, checking the `Date` against
//! `clock_skew` and optionally the body's `Digest` (`kong/plugins/hmac-auth/access.lua`).

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use base64::Engine;
use http::{HeaderValue, header};
use regex::Regex;
use ring::{digest, hmac};
use serde::Deserialize;

use super::auth::{self, Attempt};
use super::schema::typedefs::{non_empty_fields, non_empty_items};
use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::Consumer;
use crate::snapshot::Consumers;

/// The plugin's `config` (Kong's `kong/plugins/hmac-auth/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub hide_credentials: bool,
    /// How far (in seconds) the request's date may be from the gateway's clock.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: f64,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    #[serde(default)]
    pub validate_request_body: bool,
    /// Headers the signature must at least cover.
    #[serde(default)]
    pub enforce_headers: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

/// The HMAC digests a signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "hmac-sha1")]
    HmacSha1,
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

fn default_clock_skew() -> f64 {
    300.0
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::HmacSha1,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ]
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        c.greater_than("clock_skew", self.clock_skew, 0.0);
        non_empty_fields(
            c,
            "",
            &[
                ("anonymous", self.anonymous.as_deref()),
                ("realm", self.realm.as_deref()),
            ],
        );
        non_empty_items(c, "enforce_headers", &self.enforce_headers);
    }
}

/// `hmac-auth` (PRIORITY 1030).
pub struct HmacAuth;

impl PluginSpec for HmacAuth {
    const NAME: &'static str = "hmac-auth";
    const PRIORITY: i32 = 1030;
    const KIND: Kind = Kind::Authenticates;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(Handler {
            anonymous: auth::anonymous(cx.consumers, config.anonymous.as_deref())?,
            challenge: auth::challenge("hmac", config.realm.as_deref()),
            consumers: cx.consumers.clone(),
            config,
        })))
    }
}

/// The largest body whose `Digest` is checked (`validate_request_body`).
const BODY_LIMIT: usize = 8 << 20;

const NOT_VALID: &str = "HMAC signature cannot be verified";
const NOT_SAME: &str = "HMAC signature does not match";

struct Handler {
    config: Config,
    challenge: HeaderValue,
    anonymous: Option<Arc<Consumer>>,
    consumers: Arc<Consumers>,
}

/// The fields of an `hmac` authorization header.
struct Params {
    username: String,
    algorithm: String,
    headers: Vec<String>,
    signature: String,
}

/// Kong's pattern for the header, greedy fields and all.
fn params(value: &str) -> Option<Params> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"\s*[Hh]mac\s*username="(.+)",\s*algorithm="(.+)",\s*headers="(.+)",\s*signature="(.+)""#)
            .expect("the hmac header pattern compiles")
    });
    let m = re.captures(value)?;
    Some(Params {
        username: m[1].to_string(),
        algorithm: m[2].to_string(),
        headers: m[3].split(' ').map(str::to_string).collect(),
        signature: m[4].to_string(),
    })
}

fn algorithm(name: &str) -> Option<(Algorithm, hmac::Algorithm)> {
    Some(match name {
        "hmac-sha1" => (Algorithm::HmacSha1, hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        "hmac-sha256" => (Algorithm::HmacSha256, hmac::HMAC_SHA256),
        "hmac-sha384" => (Algorithm::HmacSha384, hmac::HMAC_SHA384),
        "hmac-sha512" => (Algorithm::HmacSha512, hmac::HMAC_SHA512),
        _ => return None,
    })
}

impl Handler {
    fn fail(&self, message: &str) -> Attempt {
        Attempt::Failed(auth::unauthorized(message, &self.challenge))
    }

    fn attempt(&self, req: &mut Request<'_>) -> Attempt {
        let c = &self.config;
        let headers = req.headers();
        if !headers.contains_key(header::AUTHORIZATION)
            && !headers.contains_key(header::PROXY_AUTHORIZATION)
        {
            return self.fail("Unauthorized");
        }
        if c.validate_request_body && req.body.is_none() {
            // Before anything changes the request: the hook runs again with the body.
            return Attempt::NeedsBody { limit: BODY_LIMIT };
        }
        if !self.date_ok(req, "x-date") && !self.date_ok(req, "date") {
            return self.fail("HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication");
        }
        let (from, p) = match req.header("proxy-authorization").and_then(params) {
            Some(p) => (header::PROXY_AUTHORIZATION, Some(p)),
            None => (
                header::AUTHORIZATION,
                req.header("authorization").and_then(params),
            ),
        };
        if c.hide_credentials {
            req.headers_mut().remove(&from);
        }
        let Some(p) = p else {
            return self.fail(NOT_VALID);
        };
        let enforced = c.enforce_headers.iter().all(|h| p.headers.contains(h));
        let algorithm = algorithm(&p.algorithm).filter(|(a, _)| c.algorithms.contains(a));
        let Some((_, key_algo)) = algorithm.filter(|_| enforced) else {
            return self.fail(NOT_VALID);
        };
        let Some((found, secret)) = self.consumers.by_hmac_username(&p.username) else {
            return self.fail(NOT_VALID);
        };
        let key = hmac::Key::new(key_algo, secret.as_bytes());
        let expected = hmac::sign(&key, signing_string(req, &p.headers).as_bytes());
        let given = base64::engine::general_purpose::STANDARD
            .decode(&p.signature)
            .unwrap_or_default();
        if !auth::secrets_match(&given, expected.as_ref()) {
            return self.fail(NOT_SAME);
        }
        if c.validate_request_body && !body_matches(req) {
            return self.fail(NOT_SAME);
        }
        Attempt::Authenticated(found.clone())
    }

    /// The date in header `name` is within `clock_skew` of now.
    fn date_ok(&self, req: &Request<'_>, name: &str) -> bool {
        let Some(t) = req
            .header(name)
            .and_then(|d| httpdate::parse_http_date(d).ok())
        else {
            return false;
        };
        let now = SystemTime::now();
        let skew = match now.duration_since(t) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        skew.as_secs_f64().floor() <= self.config.clock_skew
    }
}

/// Kong's signing string: `name: value` per signed header, `@request-target` and
/// `request-line` made from the request when no such header was sent.
fn signing_string(req: &Request<'_>, names: &[String]) -> String {
    let target = match req.query() {
        Some(q) => format!("{}?{q}", req.path()),
        None => req.path().to_string(),
    };
    let lines: Vec<String> = names
        .iter()
        .map(|name| match req.header(name) {
            Some(v) => format!("{name}: {v}"),
            None if name == "@request-target" => {
                format!("{name}: {} {target}", req.method().as_str().to_lowercase())
            }
            None if name == "request-line" => {
                let version = match req.head().version {
                    http::Version::HTTP_10 => "1.0",
                    http::Version::HTTP_2 => "2.0",
                    _ => "1.1",
                };
                format!("{} {target} HTTP/{version}", req.method())
            }
            None => format!("{name}:"),
        })
        .collect();
    lines.join("\n")
}

/// `validate_request_body`: the body's SHA-256 as `Digest` says, or no body without one.
fn body_matches(req: &Request<'_>) -> bool {
    let body = req.body.as_deref().unwrap_or_default();
    match req.header("digest") {
        None => body.is_empty(),
        Some(d) => {
            let sum = digest::digest(&digest::SHA256, body);
            let made = format!(
                "SHA-256={}",
                base64::engine::general_purpose::STANDARD.encode(sum.as_ref())
            );
            auth::secrets_match(made.as_bytes(), d.as_bytes())
        }
    }
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        HmacAuth::NAME
    }
    fn priority(&self) -> i32 {
        HmacAuth::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        auth::access(ctx, req, true, self.anonymous.as_ref(), |_, req| {
            self.attempt(req)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.clock_skew, 300.0);
        assert_eq!(c.algorithms.len(), 4);
        assert!(c.enforce_headers.is_empty());
        assert!(!c.hide_credentials && !c.validate_request_body);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "hide_credentials: true\nclock_skew: 30\nanonymous: guest\n\
             validate_request_body: true\nenforce_headers: [date, request-line]\n\
             algorithms: [hmac-sha256, hmac-sha512]\nrealm: api",
        )
        .unwrap();
        assert_eq!(c.clock_skew, 30.0);
        assert_eq!(c.algorithms, [Algorithm::HmacSha256, Algorithm::HmacSha512]);
        assert_eq!(c.enforce_headers, ["date", "request-line"]);
        assert!(c.hide_credentials && c.validate_request_body);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("clock_skew: 0").unwrap_err(),
            ["clock_skew: value must be greater than 0"]
        );
        assert_eq!(
            parse::<Config>("algorithms: [hmac-md5]").unwrap_err(),
            [
                "algorithms[0]: `hmac-md5` is not one of: hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512"
            ]
        );
        assert_eq!(
            parse::<Config>("enforce_headers: [date, '']").unwrap_err(),
            ["enforce_headers[1]: length must be at least 1"]
        );
        assert_eq!(
            parse::<Config>("clock_skew: '300'").unwrap_err(),
            ["clock_skew: expected a number, found the string \"300\""]
        );
        assert_eq!(
            parse::<Config>("algorithm: [hmac-sha1]").unwrap_err(),
            ["algorithm: unknown field `algorithm`; did you mean `algorithms`?"]
        );
    }

    #[test]
    fn real_configs() {
        parse::<Config>(
            "algorithms: [hmac-sha256]\nanonymous: null\nclock_skew: 300\nenforce_headers: []\n\
             hide_credentials: false\nrealm: null\nvalidate_request_body: false",
        )
        .unwrap();
    }
}
