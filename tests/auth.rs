//! Kong's authentication and access-control plugins through the real server stack: what the
//! client gets (status, Kong's message, `WWW-Authenticate`) and what the upstream sees (the
//! consumer headers, the credential hidden or not). Keys, tokens and signatures are made
//! here, at test time.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A service on `up` with one route per `(name, path, plugins yaml)` and the consumers yaml.
fn kong(up: &Upstream, routes: &[(&str, &str, &str)], consumers: &str) -> String {
    let mut y = format!(
        "_format_version: '3.0'\nservices:\n- name: s\n  url: http://{}\n  routes:\n",
        up.addr()
    );
    for (name, path, plugins) in routes {
        y.push_str(&format!(
            "  - name: {name}\n    paths: [{path}]\n    strip_path: false\n    plugins: {plugins}\n"
        ));
    }
    y.push_str(consumers);
    y
}

const CONSUMERS: &str = "consumers:
- username: alice
  id: 11111111-1111-4111-8111-111111111111
  custom_id: cust-a
  keyauth_credentials: [{id: 21111111-1111-4111-8111-111111111111, key: alice-key}]
  basicauth_credentials: [{username: alice, password: 'open sesame'}]
  jwt_secrets: [{key: alice-iss, secret: alice-jwt-secret}]
  hmacauth_credentials: [{username: alice-hmac, secret: alice-hmac-secret}]
  acls: [{group: admin}, {group: ops}]
- username: bob
  id: 22222222-2222-4222-8222-222222222222
  keyauth_credentials: [{key: bob-key}]
  basicauth_credentials: [{username: bob, password: hunter2}]
- username: guest
  id: 33333333-3333-4333-8333-333333333333
";

fn assert_401(r: &Resp, message: &str, challenge: &str) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json(), json!({ "message": message }));
    assert_eq!(r.header("www-authenticate"), Some(challenge));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[test]
fn key_auth_finds_the_key_wherever_kong_does_and_hides_it() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            ("plain", "/plain", "[{name: key-auth}]"),
            (
                "hidden",
                "/hidden",
                "[{name: key-auth, config: {key_names: [api_key, token], hide_credentials: true, key_in_body: true}}]",
            ),
        ],
        CONSUMERS,
    ));
    // Header, with the consumer headers upstream; a client's own copies never get there.
    let r = gw.send(
        "GET",
        "/plain",
        &[
            ("apikey", "alice-key"),
            ("X-Consumer-Username", "root"),
            ("X-Anonymous-Consumer", "false"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-consumer-username"], "alice");
    assert_eq!(
        seen.headers["x-consumer-id"],
        "11111111-1111-4111-8111-111111111111"
    );
    assert_eq!(seen.headers["x-consumer-custom-id"], "cust-a");
    assert_eq!(
        seen.headers["x-credential-identifier"],
        "21111111-1111-4111-8111-111111111111"
    );
    assert!(!seen.headers.contains_key("x-anonymous-consumer"));
    assert_eq!(seen.headers["apikey"], "alice-key");
    // No key, a wrong key, a key given twice.
    assert_401(&gw.get("/plain"), "No API key found in request", "Key");
    let r = gw.send("GET", "/plain", &[("apikey", "nope")], b"");
    assert_401(&r, "Unauthorized", "Key");
    assert_401(
        &gw.get("/plain?apikey=a&apikey=b"),
        "Duplicate API key found",
        "Key",
    );
    let r = gw.send("GET", "/plain", &[("X-Consumer-Username", "alice")], b"");
    assert_eq!(r.status, 401, "identity headers do not authenticate");

    // `api_key` is also read as `api-key`; hidden from the upstream.
    let n = up.count();
    let r = gw.send("GET", "/hidden?x=1", &[("api-key", "bob-key")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), n + 1);
    let seen = up.last();
    assert_eq!(seen.headers["x-consumer-username"], "bob");
    assert!(!seen.headers.contains_key("api-key"));
    // In the query, hidden; the other arguments keep their order.
    gw.get("/hidden?b=2&token=alice-key&a=1");
    let seen = up.last();
    assert_eq!(seen.target, "/hidden?b=2&a=1");
    assert_eq!(seen.headers["x-consumer-username"], "alice");
    // In a JSON, form and multipart body, hidden.
    let json_ct = [("Content-Type", "application/json")];
    let r = gw.send("POST", "/hidden", &json_ct, br#"{"token":"bob-key","n":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-consumer-username"], "bob");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&seen.body).unwrap(),
        json!({"n": 1})
    );
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    gw.send("POST", "/hidden", &form, b"n=1&token=alice-key");
    assert_eq!(up.last().body, b"n=1");
    assert_eq!(up.last().headers["x-consumer-username"], "alice");
    let mp = [("Content-Type", "multipart/form-data; boundary=BB")];
    let body = b"--BB\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nbob-key\r\n--BB\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n1\r\n--BB--\r\n";
    let r = gw.send("POST", "/hidden", &mp, body);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-consumer-username"], "bob");
    assert!(!String::from_utf8_lossy(&seen.body).contains("bob-key"));
    assert!(String::from_utf8_lossy(&seen.body).contains("name=\"n\""));
    let r = gw.send("POST", "/hidden", &json_ct, br#"{"token":"wrong"}"#);
    assert_401(&r, "Unauthorized", "Key");
}

#[test]
fn key_auth_anonymous_realm_and_preflight() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "anon",
                "/anon",
                "[{name: key-auth, config: {anonymous: guest}}]",
            ),
            (
                "realm",
                "/realm",
                "[{name: key-auth, config: {realm: inventory, run_on_preflight: false}}]",
            ),
        ],
        CONSUMERS,
    ));
    let r = gw.send("GET", "/anon", &[("apikey", "wrong")], b"");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-consumer-username"], "guest");
    assert_eq!(seen.headers["x-anonymous-consumer"], "true");
    assert!(!seen.headers.contains_key("x-credential-identifier"));
    assert_401(
        &gw.get("/realm"),
        "No API key found in request",
        "Key realm=\"inventory\"",
    );
    let n = up.count();
    let r = gw.send("OPTIONS", "/realm", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), n + 1, "preflights pass without a key");

    // An anonymous consumer that does not exist is a load error naming it.
    let dir = tempfile::tempdir().unwrap();
    let yaml = kong(
        &up,
        &[("r", "/r", "[{name: key-auth, config: {anonymous: nobody}}]")],
        "",
    );
    std::fs::write(dir.path().join("kong.yaml"), yaml).unwrap();
    let out = std::process::Command::new(binary())
        .args(["check", "--config-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kong.yaml:")
            && err.contains("anonymous consumer nobody is configured but doesn't exist"),
        "{err}"
    );
}

#[test]
fn basic_auth_checks_passwords_from_either_header() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            ("basic", "/basic", "[{name: basic-auth}]"),
            (
                "hide",
                "/hide",
                "[{name: basic-auth, config: {hide_credentials: true, realm: shop}}]",
            ),
        ],
        CONSUMERS,
    ));
    let auth = |u: &str, p: &str| format!("Basic {}", B64.encode(format!("{u}:{p}")));
    let r = gw.send(
        "GET",
        "/basic",
        &[("Authorization", &auth("alice", "open sesame"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-consumer-username"], "alice");
    assert_eq!(up.last().headers["x-credential-identifier"], "alice");
    assert!(up.last().headers.contains_key("authorization"));
    let r = gw.send(
        "GET",
        "/basic",
        &[("Proxy-Authorization", &auth("bob", "hunter2"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-consumer-username"], "bob");
    let challenge = "Basic realm=\"service\"";
    assert_401(&gw.get("/basic"), "Unauthorized", challenge);
    let wrong = auth("alice", "open sesamE");
    assert_401(
        &gw.send("GET", "/basic", &[("Authorization", &wrong)], b""),
        "Unauthorized",
        challenge,
    );
    let unknown = auth("mallory", "x");
    assert_401(
        &gw.send("GET", "/basic", &[("Authorization", &unknown)], b""),
        "Unauthorized",
        challenge,
    );
    let garbage = [("Authorization", "Basic %%%")];
    assert_401(
        &gw.send("GET", "/basic", &garbage, b""),
        "Unauthorized",
        challenge,
    );

    let r = gw.send(
        "GET",
        "/hide",
        &[("Authorization", &auth("bob", "hunter2"))],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(!up.last().headers.contains_key("authorization"));
    assert_401(&gw.get("/hide"), "Unauthorized", "Basic realm=\"shop\"");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// A P-256 key pair made now: the signing key, and the public key as PEM.
fn es256_keys() -> (jsonwebtoken::EncodingKey, String) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SubjectPublicKeyInfo for a P-256 point: a fixed prefix, then the point.
    let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(pair.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(&spki)
    );
    (jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), pem)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn jwt_verifies_tokens_made_now_with_kongs_errors() {
    let up = Upstream::echo();
    let (ec_signing, ec_public) = es256_keys();
    let pem_yaml: String = ec_public.lines().map(|l| format!("      {l}\n")).collect();
    let b64_secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"raw \x01 bytes");
    let consumers = format!(
        "{CONSUMERS}- username: ec-user\n  jwt_secrets:\n  - key: ec-iss\n    algorithm: ES256\n    rsa_public_key: |\n{pem_yaml}\
         - username: b64-user\n  jwt_secrets: [{{key: b64-iss, secret: '{b64_secret}'}}]\n"
    );
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "jwt",
                "/jwt",
                "[{name: jwt, config: {claims_to_verify: [exp, nbf], cookie_names: [session]}}]",
            ),
            (
                "max",
                "/max",
                "[{name: jwt, config: {claims_to_verify: [exp], maximum_expiration: 600}}]",
            ),
            (
                "b64",
                "/b64",
                "[{name: jwt, config: {secret_is_base64: true, realm: api}}]",
            ),
        ],
        &consumers,
    ));
    let bearer = |t: &str| format!("Bearer {t}");
    let good = hs256(
        json!({"iss": "alice-iss", "exp": now() + 60, "nbf": now() - 5}),
        b"alice-jwt-secret",
    );
    let r = gw.send("GET", "/jwt", &[("Authorization", &bearer(&good))], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-consumer-username"], "alice");
    assert_eq!(up.last().headers["x-credential-identifier"], "alice-iss");
    // From a cookie and the query too.
    let cookie = format!("a=b; session={good}");
    assert_eq!(
        gw.send("GET", "/jwt", &[("Cookie", &cookie)], b"").status,
        200
    );
    assert_eq!(gw.get(&format!("/jwt?jwt={good}")).status, 200);
    // ES256 with a key pair made for this test.
    let ec = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &json!({"iss": "ec-iss", "exp": now() + 60, "nbf": now()}),
        &ec_signing,
    )
    .unwrap();
    let r = gw.send("GET", "/jwt", &[("Authorization", &bearer(&ec))], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-consumer-username"], "ec-user");

    let invalid = "Bearer error=\"invalid_token\"";
    let send =
        |path: &str, token: &str| gw.send("GET", path, &[("Authorization", &bearer(token))], b"");
    let r = gw.get("/jwt");
    assert_401(&r, "Unauthorized", "Bearer");
    let expired = hs256(
        json!({"iss": "alice-iss", "exp": now() - 10, "nbf": now() - 20}),
        b"alice-jwt-secret",
    );
    let r = send("/jwt", &expired);
    assert_eq!((r.status, r.json()), (401, json!({"exp": "token expired"})));
    assert_eq!(r.header("www-authenticate"), Some(invalid));
    let early = hs256(
        json!({"iss": "alice-iss", "exp": now() + 60, "nbf": now() + 600}),
        b"alice-jwt-secret",
    );
    assert_eq!(
        send("/jwt", &early).json(),
        json!({"nbf": "token not valid yet"})
    );
    let no_claims = hs256(json!({"iss": "alice-iss"}), b"alice-jwt-secret");
    assert_eq!(
        send("/jwt", &no_claims).json(),
        json!({"exp": "must be a number", "nbf": "must be a number"})
    );
    let forged = hs256(
        json!({"iss": "alice-iss", "exp": now() + 60, "nbf": now()}),
        b"not the secret",
    );
    assert_401(&send("/jwt", &forged), "Invalid signature", invalid);
    let stranger = hs256(json!({"iss": "who", "exp": now() + 60}), b"x");
    assert_401(
        &send("/jwt", &stranger),
        "No credentials found for given 'iss'",
        invalid,
    );
    // An HS256 token for the ES256 credential: the algorithm must be the credential's.
    let confused = hs256(json!({"iss": "ec-iss"}), ec_public.as_bytes());
    assert_401(&send("/jwt", &confused), "Invalid algorithm", invalid);
    assert_401(&send("/jwt", "a.b"), "Bad token; invalid JSON", invalid);
    let two = gw.send(
        "GET",
        &format!("/jwt?jwt={expired}"),
        &[("Authorization", &bearer(&good))],
        b"",
    );
    assert_401(&two, "Multiple tokens provided", invalid);

    // maximum_expiration.
    let far = hs256(
        json!({"iss": "alice-iss", "exp": now() + 3600}),
        b"alice-jwt-secret",
    );
    assert_eq!(
        send("/max", &far).json(),
        json!({"exp": "exceeds maximum allowed expiration"})
    );
    let near = hs256(
        json!({"iss": "alice-iss", "exp": now() + 60}),
        b"alice-jwt-secret",
    );
    assert_eq!(send("/max", &near).status, 200);

    // secret_is_base64: the secret is the decoded bytes.
    let t = hs256(json!({"iss": "b64-iss"}), b"raw \x01 bytes");
    assert_eq!(send("/b64", &t).status, 200);
    let t = hs256(json!({"iss": "b64-iss"}), b64_secret.as_bytes());
    assert_401(
        &send("/b64", &t),
        "Invalid signature",
        "Bearer realm=\"api\", error=\"invalid_token\"",
    );
}

/// Kong's hmac-auth signature over `headers` of a request.
fn hmac_header(user: &str, secret: &str, algo: &str, lines: &[(&str, String)]) -> String {
    let names: Vec<&str> = lines.iter().map(|(n, _)| *n).collect();
    let signing: Vec<String> = lines.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    let alg = match algo {
        "hmac-sha1" => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        "hmac-sha256" => ring::hmac::HMAC_SHA256,
        _ => ring::hmac::HMAC_SHA512,
    };
    let sig = ring::hmac::sign(
        &ring::hmac::Key::new(alg, secret.as_bytes()),
        signing.join("\n").as_bytes(),
    );
    format!(
        "hmac username=\"{user}\", algorithm=\"{algo}\", headers=\"{}\", signature=\"{}\"",
        names.join(" "),
        B64.encode(sig.as_ref())
    )
}

#[test]
fn hmac_auth_verifies_signatures_dates_and_digests() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "h",
                "/h",
                "[{name: hmac-auth, config: {enforce_headers: [date], algorithms: [hmac-sha256, hmac-sha512]}}]",
            ),
            (
                "body",
                "/body",
                "[{name: hmac-auth, config: {validate_request_body: true, hide_credentials: true}}]",
            ),
        ],
        CONSUMERS,
    ));
    let date = httpdate::fmt_http_date(SystemTime::now());
    let signed = |algo: &str, target: &str, method: &str| {
        hmac_header(
            "alice-hmac",
            "alice-hmac-secret",
            algo,
            &[
                ("date", date.clone()),
                (
                    "@request-target",
                    format!("{} {target}", method.to_lowercase()),
                ),
            ],
        )
    };
    let auth = signed("hmac-sha256", "/h?q=1", "GET");
    let r = gw.send(
        "GET",
        "/h?q=1",
        &[("Date", &date), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-consumer-username"], "alice");
    assert_eq!(up.last().headers["x-credential-identifier"], "alice-hmac");
    let r = gw.send(
        "GET",
        "/h?q=2",
        &[("Date", &date), ("Authorization", &auth)],
        b"",
    );
    assert_401(&r, "HMAC signature does not match", "hmac");
    // sha1 is not among this route's algorithms; `date` must be signed.
    let sha1 = signed("hmac-sha1", "/h", "GET");
    let r = gw.send(
        "GET",
        "/h",
        &[("Date", &date), ("Authorization", &sha1)],
        b"",
    );
    assert_401(&r, "HMAC signature cannot be verified", "hmac");
    let unsigned_date = hmac_header(
        "alice-hmac",
        "alice-hmac-secret",
        "hmac-sha256",
        &[("@request-target", "get /h".into())],
    );
    let r = gw.send(
        "GET",
        "/h",
        &[("Date", &date), ("Authorization", &unsigned_date)],
        b"",
    );
    assert_401(&r, "HMAC signature cannot be verified", "hmac");
    let old = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let r = gw.send(
        "GET",
        "/h",
        &[
            ("Date", &old),
            ("Authorization", &signed("hmac-sha256", "/h", "GET")),
        ],
        b"",
    );
    assert_401(
        &r,
        "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication",
        "hmac",
    );
    assert_401(&gw.get("/h"), "Unauthorized", "hmac");

    // The body's Digest, and the header hidden.
    let body = br#"{"amount": 10}"#;
    let digest = format!(
        "SHA-256={}",
        B64.encode(ring::digest::digest(&ring::digest::SHA256, body).as_ref())
    );
    let auth = hmac_header(
        "alice-hmac",
        "alice-hmac-secret",
        "hmac-sha256",
        &[("x-date", date.clone()), ("digest", digest.clone())],
    );
    let h = [
        ("X-Date", date.as_str()),
        ("Digest", digest.as_str()),
        ("Authorization", auth.as_str()),
    ];
    let r = gw.send("POST", "/body", &h, body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, body);
    assert!(!up.last().headers.contains_key("authorization"));
    let r = gw.send("POST", "/body", &h, br#"{"amount": 1000}"#);
    assert_401(&r, "HMAC signature does not match", "hmac");
}

#[test]
fn acl_ip_restriction_and_bot_detection() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            (
                "admins",
                "/admins",
                "[{name: key-auth}, {name: acl, config: {allow: [admin]}}]",
            ),
            (
                "no-ops",
                "/no-ops",
                "[{name: key-auth}, {name: acl, config: {deny: [ops], hide_groups_header: true}}]",
            ),
            (
                "v6",
                "/v6",
                "[{name: ip-restriction, config: {allow: ['::1', 10.0.0.0/8]}}]",
            ),
            (
                "local",
                "/local",
                "[{name: ip-restriction, config: {allow: [127.0.0.0/8], deny: [127.0.0.1], status: 451, message: go away}}]",
            ),
            (
                "bots",
                "/bots",
                "[{name: bot-detection, config: {allow: ['Googlebot/2'], deny: ['^curl/']}}]",
            ),
        ],
        CONSUMERS,
    ));
    let key = |k: &'static str| [("apikey", k)];
    assert_eq!(
        gw.send("GET", "/admins", &key("alice-key"), b"").status,
        200
    );
    assert_eq!(up.last().headers["x-consumer-groups"], "admin, ops");
    let r = gw.send("GET", "/admins", &key("bob-key"), b"");
    assert_eq!(
        (r.status, r.json()),
        (403, json!({"message": "You cannot consume this service"}))
    );
    let r = gw.send("GET", "/no-ops", &key("alice-key"), b"");
    assert_eq!(r.status, 403);
    assert_eq!(gw.send("GET", "/no-ops", &key("bob-key"), b"").status, 200);
    assert!(!up.last().headers.contains_key("x-consumer-groups"));

    let r = gw.get("/v6");
    assert_eq!(
        (r.status, r.json()),
        (403, json!({"message": "IP address not allowed: 127.0.0.1"}))
    );
    let r = gw.get("/local");
    assert_eq!((r.status, r.json()), (451, json!({"message": "go away"})));

    let ua = |agent: &'static str| [("User-Agent", agent)];
    assert_eq!(
        gw.send(
            "GET",
            "/bots",
            &ua("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"),
            b""
        )
        .status,
        200
    );
    assert_eq!(
        gw.send(
            "GET",
            "/bots",
            &ua("Googlebot/2.1 (+http://www.google.com/bot.html)"),
            b""
        )
        .status,
        200
    );
    let r = gw.send("GET", "/bots", &ua("bingbot/2.0"), b"");
    assert_eq!((r.status, r.json()), (403, json!({"message": "Forbidden"})));
    assert_eq!(gw.send("GET", "/bots", &ua("curl/8.0"), b"").status, 403);
    assert_eq!(
        gw.get("/bots").status,
        200,
        "no User-Agent, nothing to judge"
    );
    let two = [("User-Agent", "a"), ("User-Agent", "b")];
    let r = gw.send("GET", "/bots", &two, b"");
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"message": "Only one User-Agent header allowed"})
        )
    );
}

#[test]
fn ip_restriction_sees_the_client_a_trusted_proxy_names() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kong(
        &up,
        &[(
            "r",
            "/r",
            "[{name: ip-restriction, config: {deny: [203.0.113.0/24]}}]",
        )],
        "",
    );
    std::fs::write(dir.path().join("kong.yaml"), yaml).unwrap();
    let gw = Running::start(
        dir.path(),
        &[
            "--trusted-ips",
            "127.0.0.1",
            "--real-ip-header",
            "X-Forwarded-For",
        ],
    );
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    let r = gw.send("GET", "/r", &xff("203.0.113.7"), b"");
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({"message": "IP address not allowed: 203.0.113.7"})
        )
    );
    assert_eq!(gw.send("GET", "/r", &xff("198.51.100.1"), b"").status, 200);
    // The last address is the one the trusted proxy saw; what the client wrote before it
    // does not count.
    assert_eq!(
        gw.send("GET", "/r", &xff("203.0.113.7, 198.51.100.1"), b"")
            .status,
        200
    );
}

#[test]
fn several_auth_plugins_combine_as_in_kong() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong(
        &up,
        &[
            // With anonymous: either authenticates (logical OR).
            (
                "or",
                "/or",
                "[{name: key-auth, config: {anonymous: guest}}, {name: basic-auth, config: {anonymous: guest}}, {name: acl, config: {deny: [nobody]}}]",
            ),
            // Without: both must pass (logical AND).
            ("and", "/and", "[{name: key-auth}, {name: basic-auth}]"),
        ],
        CONSUMERS,
    ));
    let basic = format!("Basic {}", B64.encode("bob:hunter2"));
    assert_eq!(
        gw.send("GET", "/or", &[("apikey", "alice-key")], b"")
            .status,
        200
    );
    assert_eq!(up.last().headers["x-consumer-username"], "alice");
    assert_eq!(
        gw.send("GET", "/or", &[("Authorization", &basic)], b"")
            .status,
        200
    );
    assert_eq!(up.last().headers["x-consumer-username"], "bob");
    assert!(!up.last().headers.contains_key("x-anonymous-consumer"));
    assert_eq!(gw.get("/or").status, 200);
    assert_eq!(up.last().headers["x-consumer-username"], "guest");
    assert_eq!(up.last().headers["x-anonymous-consumer"], "true");

    let r = gw.send("GET", "/and", &[("apikey", "alice-key")], b"");
    assert_401(&r, "Unauthorized", "Basic realm=\"service\"");
    let r = gw.send("GET", "/and", &[("Authorization", &basic)], b"");
    assert_401(&r, "No API key found in request", "Key");
    let both = [("apikey", "alice-key"), ("Authorization", basic.as_str())];
    assert_eq!(gw.send("GET", "/and", &both, b"").status, 200);
}

#[test]
fn consumer_plugins_apply_after_authentication() {
    let up = Upstream::echo();
    let consumers = CONSUMERS.replace(
        "  acls: [{group: admin}, {group: ops}]\n",
        "  acls: [{group: admin}, {group: ops}]\n  plugins: [{name: request-termination, config: {status_code: 402, message: pay first}}]\n",
    );
    let gw = TestGateway::kong(&kong(&up, &[("r", "/r", "[{name: key-auth}]")], &consumers));
    let r = gw.send("GET", "/r", &[("apikey", "alice-key")], b"");
    assert_eq!((r.status, r.json()), (402, json!({"message": "pay first"})));
    assert_eq!(
        gw.send("GET", "/r", &[("apikey", "bob-key")], b"").status,
        200
    );
}

#[test]
fn vault_references_read_secrets_from_the_environment() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kong(
        &up,
        &[(
            "r",
            "/r",
            "[{name: key-auth, config: {key_names: [x-key]}}]",
        )],
        "consumers:\n- username: svc\n  keyauth_credentials: [{key: '{vault://env/svc-key}'}]\n",
    );
    std::fs::write(dir.path().join("kong.yaml"), &yaml).unwrap();
    let gw = Running::start_env(dir.path(), &[], &[("SVC_KEY", "from-the-env")]);
    assert_eq!(
        gw.send("GET", "/r", &[("x-key", "from-the-env")], b"")
            .status,
        200
    );
    assert_eq!(
        gw.send("GET", "/r", &[("x-key", "{vault://env/svc-key}")], b"")
            .status,
        401
    );
    // Printed configs keep the reference, never the secret.
    let config = gw.admin("GET", "/config").text();
    assert!(!config.contains("from-the-env"), "{config}");

    // Unset: a load error naming the field and the variable.
    let out = std::process::Command::new(binary())
        .args(["check", "--config-dir"])
        .arg(dir.path())
        .env_remove("SVC_KEY")
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kong.yaml:")
            && err.contains("key: cannot resolve")
            && err.contains("SVC_KEY is not set"),
        "{err}"
    );
}

/// Clients looping on keep-alive connections with `headers`, counting answers that are not
/// `want`.
fn authenticated_load(
    addr: std::net::SocketAddr,
    headers: &'static str,
    want: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize)> {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let (mut ok, mut wrong) = (0, 0);
        let mut conn: Option<(std::net::TcpStream, std::io::BufReader<std::net::TcpStream>)> = None;
        while !stop.load(Ordering::Relaxed) {
            let (s, r) = conn.get_or_insert_with(|| {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let r = std::io::BufReader::new(s.try_clone().unwrap());
                (s, r)
            });
            let sent = write!(s, "GET /acl HTTP/1.1\r\nHost: load\r\n{headers}\r\n").is_ok();
            match (sent, read_response(r, false)) {
                (true, Some(resp)) if resp.status == want => ok += 1,
                (_, resp) => {
                    eprintln!("unexpected: {:?}", resp.map(|r| (r.status, r.text())));
                    wrong += 1;
                    conn = None;
                }
            }
        }
        (ok, wrong)
    })
}

/// Kong has shipped a reload that lost a consumer's ACL groups (its requests got 403, Kong
/// issue 6447). Fifty reloads under authenticated load, some changing unrelated entities,
/// some invalid: every allowed request passes, every refused one stays refused.
#[test]
fn fifty_reloads_never_flap_authentication() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let up = Upstream::echo();
    let route = [(
        "acl",
        "/acl",
        "[{name: key-auth}, {name: acl, config: {allow: [admin]}}]",
    )];
    let base = kong(&up, &route, CONSUMERS);
    let gw = TestGateway::kong(&base);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let clients = [
        authenticated_load(gw.addr, "apikey: alice-key\r\n", 200, stop.clone()),
        authenticated_load(gw.addr, "apikey: alice-key\r\n", 200, stop.clone()),
        authenticated_load(gw.addr, "apikey: bob-key\r\n", 403, stop.clone()),
        authenticated_load(gw.addr, "apikey: nobody\r\n", 401, stop.clone()),
    ];
    let file = gw.path().join("kong.yaml");
    let (mut applied, mut refused) = (0, 0);
    for i in 1..=50 {
        let text = match i % 5 {
            // Invalid: the serving snapshot stays.
            0 => format!("{base}- username: [broken\n"),
            // Unrelated entities change: another consumer, another route.
            1 | 3 => format!(
                "{base}- username: extra-{i}\n  keyauth_credentials: [{{key: extra-{i}}}]\n"
            ),
            _ => kong(
                &up,
                &[route[0], ("other", &format!("/other-{i}"), "[]")],
                CONSUMERS,
            ),
        };
        std::fs::write(&file, text).unwrap();
        if gw.gateway.reload().ok {
            applied += 1;
        } else {
            refused += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(usize, usize)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    eprintln!(
        "50 reloads ({applied} applied, {refused} refused) under authenticated load: {results:?}"
    );
    assert_eq!((applied, refused), (40, 10));
    for (i, (ok, wrong)) in results.iter().enumerate() {
        assert_eq!(*wrong, 0, "client {i}: spurious answers during reloads");
        assert!(*ok > 20, "client {i} barely ran ({ok})");
    }
}
