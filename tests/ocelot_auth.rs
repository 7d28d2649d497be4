//! Ocelot authentication end to end: JWT bearer providers (`GlobalConfiguration.
//! AuthenticationProviders`) with keys made at test time (RSA by the `rsa` crate, EC P-256 by
//! ring), tokens signed with jsonwebtoken, a JWKS served by a real local HTTP server that
//! counts its hits, the real gateway stack in front of a real echo upstream, and the real
//! binary for `check` and for environment-variable vault references.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use common::*;

// === Keys and tokens ===

/// A signing key: how tokens are signed, and the public half as a config names it.
#[derive(Clone)]
struct SigningKey {
    alg: Algorithm,
    encoding: EncodingKey,
    kid: String,
    /// The public key as a JWK (with `kid`).
    jwk: Value,
    /// The public key as PEM (RSA only).
    pem: Option<String>,
}

fn rsa_key(kid: &str) -> SigningKey {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    // One RSA key per test process: generating one is the slow part.
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    let (private, public) = KEY.get_or_init(|| {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (private, public)
    });
    let encoding = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    SigningKey {
        alg: Algorithm::RS256,
        jwk: jwk(&encoding, Algorithm::RS256, kid),
        encoding,
        kid: kid.into(),
        pem: Some(public.clone()),
    }
}

/// A fresh EC P-256 key.
fn ec_key(kid: &str) -> SigningKey {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    SigningKey {
        alg: Algorithm::ES256,
        jwk: jwk(&encoding, Algorithm::ES256, kid),
        encoding,
        kid: kid.into(),
        pem: None,
    }
}

fn jwk(encoding: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(encoding, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for the test issuer and audience, with `extra` merged in (a `null` removes
/// a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://idp.test",
        "aud": "orders-api",
        "sub": "u42",
        "exp": now() + 600,
        "iat": now(),
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

// === Configs ===

/// A provider for the test issuer and audience with `extra` settings.
fn provider(extra: Value) -> Value {
    let mut p = json!({"Issuer": "https://idp.test", "Audiences": ["orders-api"]});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    p
}

/// An Ocelot route from `upstream` to `downstream` on `to`, with the fields of `extra`.
fn route(to: SocketAddr, upstream: &str, downstream: &str, extra: Value) -> Value {
    let mut r = json!({
        "UpstreamPathTemplate": upstream,
        "DownstreamPathTemplate": downstream,
        "DownstreamScheme": "http",
        "DownstreamHostAndPorts": [{"Host": to.ip().to_string(), "Port": to.port()}],
    });
    r.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    r
}

fn ocelot(routes: Vec<Value>, providers: Value) -> String {
    json!({
        "Routes": routes,
        "GlobalConfiguration": {"AuthenticationProviders": providers},
    })
    .to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Status of a GET with `token` (none: no Authorization header).
fn status(gw: &TestGateway, target: &str, token: Option<&str>) -> u16 {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    gw.send("GET", target, &headers, b"").status
}

// === A JWKS server ===

/// A real HTTP server on 127.0.0.1:0 that serves `jwks` at any path and counts requests.
struct JwksServer {
    addr: SocketAddr,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(keys: &[&SigningKey]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = JwksServer {
            addr,
            jwks: Arc::new(Mutex::new(String::new())),
            hits: Arc::default(),
        };
        server.serve(keys);
        let (jwks, hits) = (server.jwks.clone(), server.hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // The request head, up to the empty line.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let body = jwks.lock().unwrap().clone();
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        server
    }

    /// Serves these keys from now on.
    fn serve(&self, keys: &[&SigningKey]) {
        let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
        *self.jwks.lock().unwrap() = json!({ "keys": keys }).to_string();
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

// === The binary ===

fn switchyard(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .arg("--config-dir")
        .arg(dir)
        .env_remove("SWITCHYARD_ENVIRONMENT")
        .env_remove("ASPNETCORE_ENVIRONMENT");
    cmd
}

/// `switchyard check` over `files`: (exit code, stderr).
fn check(files: &[(&str, &str)], env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = switchyard(&["check"], dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// === Tests ===

#[test]
fn a_valid_token_reaches_the_upstream_with_its_claims_in_headers_query_and_path() {
    let up = Upstream::echo();
    let key = rsa_key("rsa1");
    let doc = ocelot(
        vec![route(
            up.addr(),
            "/orders/{id}",
            "/svc/users/{userId}/orders/{id}",
            json!({
                "AuthenticationOptions": {"AuthenticationProviderKey": "Bearer"},
                "AddClaimsToRequest": {"customer": "Claims[sub] > value"},
                "RouteClaimsRequirement": {"customer": "u42"},
                "AddHeadersToRequest": {"X-Customer": "Claims[sub] > value", "X-Region": "Claims[tenant] > value[1] > |"},
                "AddQueriesToRequest": {"customer": "Claims[sub] > value"},
                "ChangeDownstreamPathTemplate": {"userId": "Claims[sub] > value"},
            }),
        )],
        json!({"Bearer": provider(json!({"Keys": [key.pem.clone().unwrap()]}))}),
    );
    let gw = TestGateway::start(&[("ocelot.json", &doc)]);
    let token = sign(&key, &claims(json!({"tenant": "acme|eu-west"})));
    let r = gw.send(
        "GET",
        "/orders/7?x=1&customer=forged",
        &[("Authorization", &bearer(&token)), ("X-Customer", "forged")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/svc/users/u42/orders/7?x=1&customer=u42");
    assert_eq!(seen.headers["x-customer"], "u42");
    assert_eq!(seen.headers["x-region"], "eu-west");
    assert_eq!(seen.headers["authorization"], bearer(&token));
}

#[test]
fn tokens_that_do_not_authenticate_get_401_and_never_reach_the_upstream() {
    let up = Upstream::echo();
    let key = rsa_key("rsa1");
    let other = ec_key("ec-other");
    let doc = ocelot(
        vec![route(
            up.addr(),
            "/orders",
            "/svc/orders",
            json!({"AuthenticationOptions": {"AuthenticationProviderKeys": ["Bearer"]}}),
        )],
        json!({"Bearer": provider(json!({"Keys": [key.jwk.clone()], "ClockSkewSeconds": 60}))}),
    );
    let gw = TestGateway::start(&[("ocelot.json", &doc)]);
    let t = now();
    let ok = sign(&key, &claims(json!({})));
    let within_skew = sign(&key, &claims(json!({"exp": t - 30})));
    assert_eq!(status(&gw, "/orders", Some(&ok)), 200);
    assert_eq!(status(&gw, "/orders", Some(&within_skew)), 200);
    let cases = [
        ("no token", None),
        ("not a JWT", Some("garbage".to_string())),
        (
            "expired",
            Some(sign(&key, &claims(json!({"exp": t - 120})))),
        ),
        (
            "not yet valid",
            Some(sign(&key, &claims(json!({"nbf": t + 600})))),
        ),
        ("no exp", Some(sign(&key, &claims(json!({"exp": null}))))),
        (
            "wrong issuer",
            Some(sign(&key, &claims(json!({"iss": "https://evil.test"})))),
        ),
        ("no issuer", Some(sign(&key, &claims(json!({"iss": null}))))),
        (
            "wrong audience",
            Some(sign(&key, &claims(json!({"aud": ["other-api"]})))),
        ),
        (
            "no audience",
            Some(sign(&key, &claims(json!({"aud": null})))),
        ),
        (
            "other key",
            Some(sign(
                &SigningKey {
                    kid: "rsa1".into(),
                    ..other.clone()
                },
                &claims(json!({})),
            )),
        ),
        (
            "HS256 with the public key as secret",
            Some(hs256(key.pem.as_deref().unwrap(), &claims(json!({})))),
        ),
    ];
    let before = up.count();
    for (what, token) in &cases {
        let auth = token.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let r = gw.send("GET", "/orders", &headers, b"");
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            msg.starts_with("Request for authenticated route '/orders' was unauthenticated!"),
            "{what}: {msg}"
        );
    }
    assert_eq!(up.count(), before, "nothing went upstream");
    // Why, in the message.
    let expired = sign(&key, &claims(json!({"exp": t - 120})));
    let r = gw.send(
        "GET",
        "/orders",
        &[("Authorization", &bearer(&expired))],
        b"",
    );
    assert!(
        r.text().contains("Bearer: the token expired"),
        "{}",
        r.text()
    );
    // OPTIONS is not authenticated, as in Ocelot.
    assert_eq!(gw.send("OPTIONS", "/orders", &[], b"").status, 200);
}

#[test]
fn missing_scopes_and_claims_get_403() {
    let up = Upstream::echo();
    let secret = "a-long-shared-secret-for-hs256-tokens";
    let doc = ocelot(
        vec![
            route(
                up.addr(),
                "/scoped",
                "/svc/scoped",
                json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Shared", "AllowedScopes": ["orders.write", "admin"]}}),
            ),
            route(
                up.addr(),
                "/admin",
                "/svc/admin",
                json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Shared"}, "RouteClaimsRequirement": {"role": "admin"}}),
            ),
            route(
                up.addr(),
                "/tenants/{tenantId}/orders",
                "/svc/{tenantId}",
                json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Shared"}, "RouteClaimsRequirement": {"tenant": "{tenantId}"}}),
            ),
            route(
                up.addr(),
                "/needs-email",
                "/svc/email",
                json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Shared"}, "AddHeadersToRequest": {"X-Email": "Claims[email] > value"}}),
            ),
        ],
        json!({"Shared": provider(json!({"Keys": [{"Secret": secret}]}))}),
    );
    let gw = TestGateway::start(&[("ocelot.json", &doc)]);
    let t = |extra: Value| hs256(secret, &claims(extra));
    let rows: Vec<(&str, String, u16)> = vec![
        (
            "/scoped",
            t(json!({"scope": "orders.read orders.write"})),
            200,
        ),
        (
            "/scoped",
            t(json!({"scope": ["orders.read", "admin"]})),
            200,
        ),
        ("/scoped", t(json!({"scope": "orders.read"})), 403),
        ("/scoped", t(json!({})), 403),
        ("/admin", t(json!({"role": ["user", "admin"]})), 200),
        ("/admin", t(json!({"role": "user"})), 403),
        ("/admin", t(json!({})), 403),
        ("/tenants/t1/orders", t(json!({"tenant": "t1"})), 200),
        ("/tenants/t2/orders", t(json!({"tenant": "t1"})), 403),
        ("/needs-email", t(json!({"email": "a@b.c"})), 200),
        ("/needs-email", t(json!({})), 403),
    ];
    let mut wrong = Vec::new();
    for (path, token, want) in &rows {
        let got = status(&gw, path, Some(token));
        if got != *want {
            wrong.push(format!("{path}: expected {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let r = gw.send(
        "GET",
        "/scoped",
        &[(
            "Authorization",
            &bearer(&t(json!({"scope": "orders.read"}))),
        )],
        b"",
    );
    assert_eq!(
        r.json()["message"],
        "no one user scope: 'orders.read' match with some allowed scope: 'orders.write,admin'"
    );
    assert_eq!(up.last().target, "/svc/email");
}

#[test]
fn the_first_provider_that_authenticates_wins_and_anonymous_routes_pass() {
    let up = Upstream::echo();
    let ec = ec_key("ec1");
    let doc = json!({
        "Routes": [
            route(up.addr(), "/any", "/svc/any", json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Ec", "AuthenticationProviderKeys": ["Shared"]}})),
            route(up.addr(), "/global", "/svc/global", json!({})),
            route(up.addr(), "/public", "/svc/public", json!({"AuthenticationOptions": {"AllowAnonymous": true}})),
        ],
        "GlobalConfiguration": {
            "AuthenticationOptions": {"AuthenticationProviderKeys": ["Ec"]},
            "AuthenticationProviders": {
                "Ec": provider(json!({"Keys": [ec.jwk.clone()]})),
                "Shared": provider(json!({"Keys": [{"Secret": "shared-secret-of-enough-length"}], "Issuer": "https://other.test"})),
            },
        },
    })
    .to_string();
    let gw = TestGateway::start(&[("ocelot.json", &doc)]);
    let by_ec = sign(&ec, &claims(json!({})));
    let by_shared = hs256(
        "shared-secret-of-enough-length",
        &claims(json!({"iss": "https://other.test"})),
    );
    assert_eq!(status(&gw, "/any", Some(&by_ec)), 200);
    assert_eq!(status(&gw, "/any", Some(&by_shared)), 200);
    assert_eq!(status(&gw, "/any", None), 401);
    // The global options apply to a route without its own.
    assert_eq!(status(&gw, "/global", None), 401);
    assert_eq!(status(&gw, "/global", Some(&by_ec)), 200);
    assert_eq!(status(&gw, "/global", Some(&by_shared)), 401);
    assert_eq!(status(&gw, "/public", None), 200);
}

#[test]
fn jwks_url_is_fetched_once_cached_and_refetched_for_an_unknown_kid() {
    let up = Upstream::echo();
    let k1 = ec_key("k1");
    let k2 = ec_key("k2");
    let k3 = ec_key("k3");
    let jwks = JwksServer::start(&[&k1]);
    let doc = ocelot(
        vec![route(
            up.addr(),
            "/orders",
            "/svc/orders",
            json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Idp"}}),
        )],
        json!({"Idp": provider(json!({"JwksUrl": jwks.url(), "RequireHttpsMetadata": false, "JwksMinimumRefetchSeconds": 2}))}),
    );
    let gw = TestGateway::start(&[("ocelot.json", &doc)]);
    assert_eq!(jwks.hits(), 0, "nothing is fetched before a token needs it");
    let t1 = sign(&k1, &claims(json!({})));
    assert_eq!(status(&gw, "/orders", Some(&t1)), 200);
    assert_eq!(status(&gw, "/orders", Some(&t1)), 200);
    assert_eq!(jwks.hits(), 1, "the keys are cached");
    // The identity provider rotates to k2.
    jwks.serve(&[&k2]);
    std::thread::sleep(Duration::from_millis(2100));
    let t2 = sign(&k2, &claims(json!({})));
    assert_eq!(status(&gw, "/orders", Some(&t2)), 200);
    assert_eq!(jwks.hits(), 2, "an unknown kid fetched the keys again");
    // A kid the provider does not have: one fetch at most per interval.
    let t3 = sign(&k3, &claims(json!({})));
    assert_eq!(status(&gw, "/orders", Some(&t3)), 401);
    assert_eq!(status(&gw, "/orders", Some(&t3)), 401);
    assert_eq!(jwks.hits(), 2, "no fetch within JwksMinimumRefetchSeconds");
    // k1 is gone with the rotation.
    assert_eq!(status(&gw, "/orders", Some(&t1)), 401);
    // The cache outlives a reload.
    let r = gw.gateway.reload();
    assert!(r.ok, "{:?}", r.errors);
    std::fs::write(
        gw.path().join("ocelot.json"),
        doc.replace("/svc/orders", "/svc/orders2"),
    )
    .unwrap();
    let r = gw.gateway.reload();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(status(&gw, "/orders", Some(&t2)), 200);
    assert_eq!(up.last().target, "/svc/orders2");
    assert_eq!(jwks.hits(), 2);
}

#[test]
fn an_unreachable_jwks_never_lets_a_request_through() {
    let up = Upstream::echo();
    let key = ec_key("k1");
    let doc = ocelot(
        vec![route(
            up.addr(),
            "/orders",
            "/svc/orders",
            json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Idp"}}),
        )],
        json!({"Idp": provider(json!({"JwksUrl": format!("http://127.0.0.1:{}/jwks", dead_port()), "RequireHttpsMetadata": false}))}),
    );
    let gw = TestGateway::start(&[("ocelot.json", &doc)]);
    let token = sign(&key, &claims(json!({})));
    for _ in 0..3 {
        let r = gw.send("GET", "/orders", &[("Authorization", &bearer(&token))], b"");
        assert_eq!(r.status, 401, "{}", r.text());
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("Idp: no signing keys (jwks http://127.0.0.1:")
                && msg.contains("could not be fetched"),
            "{msg}"
        );
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn keys_from_a_jwks_file_and_inline_jwk_and_pem_strings() {
    let up = Upstream::echo();
    let from_file = ec_key("file1");
    let inline_text = ec_key("text1");
    let rsa = rsa_key("rsa-pem");
    let doc = ocelot(
        vec![route(
            up.addr(),
            "/orders",
            "/svc/orders",
            json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Bearer"}}),
        )],
        json!({"Bearer": provider(json!({
            "JwksFile": "jwks.json",
            "Keys": [inline_text.jwk.to_string(), {"Pem": rsa.pem.clone().unwrap(), "Kid": "rsa-pem"}],
        }))}),
    );
    let jwks = json!({"keys": [from_file.jwk.clone()]}).to_string();
    let gw = TestGateway::start(&[("ocelot.json", &doc), ("jwks.json", &jwks)]);
    for key in [&from_file, &inline_text, &rsa] {
        let token = sign(key, &claims(json!({})));
        assert_eq!(status(&gw, "/orders", Some(&token)), 200, "{}", key.kid);
    }
    // A rotated file is read again on reload, though no config file changed.
    let rotated = ec_key("file2");
    std::fs::write(
        gw.path().join("jwks.json"),
        json!({"keys": [rotated.jwk.clone()]}).to_string(),
    )
    .unwrap();
    let r = gw.gateway.reload();
    assert!(r.ok, "{:?}", r.errors);
    assert_eq!(
        status(&gw, "/orders", Some(&sign(&rotated, &claims(json!({}))))),
        200
    );
    assert_eq!(
        status(&gw, "/orders", Some(&sign(&from_file, &claims(json!({}))))),
        401
    );
}

#[test]
fn a_vault_reference_in_an_inline_key_reads_the_environment() {
    let up = Upstream::echo();
    let key = rsa_key("rsa1");
    let doc = ocelot(
        vec![route(
            up.addr(),
            "/orders",
            "/svc/orders",
            json!({"AuthenticationOptions": {"AuthenticationProviderKey": "Bearer"}}),
        )],
        json!({"Bearer": provider(json!({"Keys": ["{vault://env/orders-jwt-public-key}"]}))}),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ocelot.json"), &doc).unwrap();
    let gw = Running::start_env(
        dir.path(),
        &[],
        &[("ORDERS_JWT_PUBLIC_KEY", key.pem.as_deref().unwrap())],
    );
    let token = sign(&key, &claims(json!({})));
    let r = gw.send("GET", "/orders", &[("Authorization", &bearer(&token))], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.get("/orders").status, 401);

    // Without the variable, the config does not load, and says which field and variable.
    let (code, err) = check(&[("ocelot.json", &doc)], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ocelot.json:1:")
            && err.contains("GlobalConfiguration.AuthenticationProviders.Bearer.Keys[0]: cannot resolve {vault://env/orders-jwt-public-key}: environment variable ORDERS_JWT_PUBLIC_KEY is not set"),
        "{err}"
    );
}

#[test]
fn config_errors_are_listed_at_once_with_file_line_and_column() {
    let global = r#"{
  "GlobalConfiguration": {
    "AuthenticationProviders": {
      "Bearer": {
        "Issuer": "https://idp.test",
        "Audience": "orders-api",
        "Keys": ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", {"kty": "RSA", "n": "x"}]
      },
      "Remote": {"ValidateIssuer": false, "ValidateAudience": false, "JwksUrl": "http://idp.test/jwks"},
      "Empty": {"ValidateIssuer": false, "ValidateAudience": false}
    }
  }
}"#;
    let routes = r#"{
  "Routes": [
    {
      "UpstreamPathTemplate": "/orders",
      "DownstreamPathTemplate": "/orders",
      "DownstreamHostAndPorts": [{"Host": "localhost", "Port": 5001}],
      "AuthenticationOptions": {"AuthenticationProviderKeys": ["Bearer", "Berear"]}
    }
  ]
}"#;
    let (code, err) = check(
        &[
            ("ocelot.global.json", global),
            ("ocelot.orders.json", routes),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let want = [
        "ocelot.global.json:7:18: GlobalConfiguration.AuthenticationProviders.Bearer.Keys[0]: the PEM block is not an RSA, EC or Ed25519 public key",
        "ocelot.global.json:7:80: GlobalConfiguration.AuthenticationProviders.Bearer.Keys[1]: this JWK's key type is not supported",
        "ocelot.global.json:9:81: GlobalConfiguration.AuthenticationProviders.Remote.JwksUrl: JwksUrl `http://idp.test/jwks` must use HTTPS unless disabled for development by setting RequireHttpsMetadata: false",
        "ocelot.global.json:10:16: GlobalConfiguration.AuthenticationProviders.Empty: provider `Empty` has no signing keys: set Keys (PEM or JWK), JwksFile, JwksUrl or Authority",
        "ocelot.orders.json:7:74: Routes[0].AuthenticationOptions.AuthenticationProviderKeys[1]: AuthenticationOptions: `Berear` is unsupported authentication provider: define it under GlobalConfiguration.AuthenticationProviders (did you mean `Bearer`?)",
    ];
    let missing: Vec<&&str> = want
        .iter()
        .filter(|w| !err.lines().any(|l| l.starts_with(**w)))
        .collect();
    assert!(missing.is_empty(), "missing {missing:#?} in:\n{err}");
    assert_eq!(err.lines().last(), Some("5 error(s)"), "{err}");
}
