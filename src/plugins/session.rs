//! `session` (PRIORITY 1900, access and response headers): keeps the consumer and
//! credential an authentication plugin identified in an encrypted session cookie (or in
//! Kong's database, `storage: kong`), so later requests carrying the cookie are
//! authenticated by it; renews the cookie as it rolls, and ends the session on a logout
//! request. Not served yet: its config is checked against Kong's schema, and the routes it
//! applies to are closed.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::schema::defaults::yes;
use super::schema::typedefs::non_empty_fields;
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/session/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// The key of the cookie's HMAC and encryption. Unset: a random one made once per
    /// process, as Kong makes one per node.
    #[serde(default = "default_secret")]
    pub secret: String,
    #[serde(default)]
    pub storage: Storage,
    /// The application the session is for.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Seconds; 0: no idle timeout.
    #[serde(default = "default_idling_timeout")]
    pub idling_timeout: f64,
    /// Seconds before the session must be renewed.
    #[serde(default = "default_rolling_timeout")]
    pub rolling_timeout: f64,
    /// Seconds the session may last in all.
    #[serde(default = "default_absolute_timeout")]
    pub absolute_timeout: f64,
    /// Seconds an old cookie stays valid after it was replaced.
    #[serde(default = "default_stale_ttl")]
    pub stale_ttl: f64,
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    #[serde(default = "default_cookie_path")]
    pub cookie_path: String,
    pub cookie_domain: Option<String>,
    #[serde(default)]
    pub cookie_same_site: SameSite,
    #[serde(default = "yes")]
    pub cookie_http_only: bool,
    #[serde(default = "yes")]
    pub cookie_secure: bool,
    /// Persistent sessions (a second, `remember` cookie).
    #[serde(default)]
    pub remember: bool,
    #[serde(default = "default_remember_cookie_name")]
    pub remember_cookie_name: String,
    #[serde(default = "default_remember_rolling_timeout")]
    pub remember_rolling_timeout: f64,
    #[serde(default = "default_remember_absolute_timeout")]
    pub remember_absolute_timeout: f64,
    /// Session information sent to the client as headers.
    pub response_headers: Option<Vec<SessionHeader>>,
    /// Session information sent upstream as headers.
    pub request_headers: Option<Vec<SessionHeader>>,
    #[serde(default)]
    pub read_body_for_logout: bool,
    #[serde(default = "default_logout_methods")]
    pub logout_methods: Vec<LogoutMethod>,
    #[serde(default = "default_logout_arg")]
    pub logout_query_arg: String,
    #[serde(default = "default_logout_arg")]
    pub logout_post_arg: String,
    #[serde(default)]
    pub hash_subject: bool,
    #[serde(default)]
    pub store_metadata: bool,

    // Kong's shorthands: the names before Kong 3.2 (session library 4). They override the
    // new fields (`resolved`).
    /// Deprecated: `rolling_timeout`.
    pub cookie_lifetime: Option<f64>,
    /// Deprecated: `idling_timeout`.
    pub cookie_idletime: Option<f64>,
    /// Deprecated and ignored (the session library computes it).
    pub cookie_renew: Option<f64>,
    /// Deprecated: `stale_ttl`.
    pub cookie_discard: Option<f64>,
    /// Deprecated: `cookie_same_site` (`off` is `Lax`).
    pub cookie_samesite: Option<String>,
    /// Deprecated: `cookie_http_only`.
    pub cookie_httponly: Option<bool>,
    /// Deprecated: `remember`.
    pub cookie_persistent: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Storage {
    /// The session data is in the cookie itself.
    #[default]
    #[serde(rename = "cookie")]
    Cookie,
    /// The session data is in Kong's database; the cookie holds its id.
    #[serde(rename = "kong")]
    Kong,
}

/// The cookie's `SameSite`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SameSite {
    #[default]
    Strict,
    Lax,
    None,
    /// No `SameSite` attribute.
    Default,
}

impl SameSite {
    const NAMES: [&str; 4] = ["Strict", "Lax", "None", "Default"];

    fn from_name(name: &str) -> Option<SameSite> {
        match name {
            "Strict" => Some(SameSite::Strict),
            "Lax" => Some(SameSite::Lax),
            "None" => Some(SameSite::None),
            "Default" => Some(SameSite::Default),
            _ => None,
        }
    }
}

/// Session information that can be sent as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SessionHeader {
    #[serde(rename = "id")]
    Id,
    #[serde(rename = "audience")]
    Audience,
    #[serde(rename = "subject")]
    Subject,
    #[serde(rename = "timeout")]
    Timeout,
    #[serde(rename = "idling-timeout")]
    IdlingTimeout,
    #[serde(rename = "rolling-timeout")]
    RollingTimeout,
    #[serde(rename = "absolute-timeout")]
    AbsoluteTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LogoutMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "DELETE")]
    Delete,
}

fn default_secret() -> String {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(random_secret).clone()
}

/// 44 random letters and digits, as Kong's default secret.
fn random_secret() -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 128];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        // The standard library's hasher keys come from the OS's randomness too.
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let h = state.hash_one((i, nanos)).to_le_bytes();
            chunk.copy_from_slice(&h[..chunk.len()]);
        }
    }
    // Rejection sampling keeps every character equally likely.
    bytes
        .iter()
        .filter(|b| usize::from(**b) < 4 * ALPHABET.len())
        .take(44)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn default_audience() -> String {
    "default".to_string()
}

fn default_idling_timeout() -> f64 {
    900.0
}

fn default_rolling_timeout() -> f64 {
    3600.0
}

fn default_absolute_timeout() -> f64 {
    86_400.0
}

fn default_stale_ttl() -> f64 {
    10.0
}

fn default_cookie_name() -> String {
    "session".to_string()
}

fn default_cookie_path() -> String {
    "/".to_string()
}

fn default_remember_cookie_name() -> String {
    "remember".to_string()
}

fn default_remember_rolling_timeout() -> f64 {
    604_800.0
}

fn default_remember_absolute_timeout() -> f64 {
    2_592_000.0
}

fn default_logout_methods() -> Vec<LogoutMethod> {
    vec![LogoutMethod::Post, LogoutMethod::Delete]
}

fn default_logout_arg() -> String {
    "session_logout".to_string()
}

impl Config {
    /// The config with the pre-3.2 names applied, as Kong reads them: each overrides the
    /// field it stands for.
    pub fn resolved(mut self) -> Self {
        if let Some(v) = self.cookie_lifetime.take() {
            self.rolling_timeout = v;
        }
        if let Some(v) = self.cookie_idletime.take() {
            self.idling_timeout = v;
        }
        self.cookie_renew = None;
        if let Some(v) = self.cookie_discard.take() {
            self.stale_ttl = v;
        }
        if let Some(v) = self.cookie_samesite.take() {
            let v = if v == "off" { "Lax" } else { v.as_str() };
            if let Some(s) = SameSite::from_name(v) {
                self.cookie_same_site = s;
            }
        }
        if let Some(v) = self.cookie_httponly.take() {
            self.cookie_http_only = v;
        }
        if let Some(v) = self.cookie_persistent.take() {
            self.remember = v;
        }
        self
    }
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        non_empty_fields(
            c,
            "",
            &[
                ("secret", Some(&self.secret)),
                ("audience", Some(&self.audience)),
                ("cookie_name", Some(&self.cookie_name)),
                ("cookie_path", Some(&self.cookie_path)),
                ("cookie_domain", self.cookie_domain.as_deref()),
                ("remember_cookie_name", Some(&self.remember_cookie_name)),
                ("logout_query_arg", Some(&self.logout_query_arg)),
                ("logout_post_arg", Some(&self.logout_post_arg)),
                ("cookie_samesite", self.cookie_samesite.as_deref()),
            ],
        );
        if let Some(v) = self.cookie_samesite.as_deref()
            && !v.is_empty()
            && v != "off"
            && SameSite::from_name(v).is_none()
        {
            c.one_of("cookie_samesite", v, &SameSite::NAMES);
        }
    }
}

/// `session` (PRIORITY 1900).
pub struct Session;

impl PluginSpec for Session {
    const NAME: &'static str = "session";
    const PRIORITY: i32 = 1900;
    const KIND: Kind = Kind::Authenticates;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert_eq!(c.storage, Storage::Cookie);
        assert_eq!(c.audience, "default");
        assert_eq!(
            (
                c.idling_timeout,
                c.rolling_timeout,
                c.absolute_timeout,
                c.stale_ttl
            ),
            (900.0, 3600.0, 86_400.0, 10.0)
        );
        assert_eq!(
            (c.cookie_name.as_str(), c.cookie_path.as_str()),
            ("session", "/")
        );
        assert_eq!(c.cookie_same_site, SameSite::Strict);
        assert!(c.cookie_http_only && c.cookie_secure && !c.remember);
        assert_eq!(c.logout_methods, [LogoutMethod::Post, LogoutMethod::Delete]);
        assert_eq!(c.logout_query_arg, "session_logout");
        assert_eq!(c.remember_absolute_timeout, 2_592_000.0);
        // The random secret: 44 letters and digits, the same for every instance.
        assert_eq!(c.secret.len(), 44);
        assert!(c.secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(parse::<Config>("{}").unwrap().secret, c.secret);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "secret: s3cr3t\nstorage: kong\naudience: app\nidling_timeout: 0\n\
             rolling_timeout: 60\nabsolute_timeout: 600\nstale_ttl: 5\ncookie_name: sid\n\
             cookie_path: /app\ncookie_domain: example.com\ncookie_same_site: None\n\
             cookie_http_only: false\ncookie_secure: false\nremember: true\n\
             remember_cookie_name: rem\nremember_rolling_timeout: 100\n\
             remember_absolute_timeout: 1000\nresponse_headers: [id, idling-timeout]\n\
             request_headers: [subject, absolute-timeout]\nread_body_for_logout: true\n\
             logout_methods: [GET]\nlogout_query_arg: bye\nlogout_post_arg: bye\n\
             hash_subject: true\nstore_metadata: true",
        )
        .unwrap();
        assert_eq!(c.secret, "s3cr3t");
        assert_eq!(c.storage, Storage::Kong);
        assert_eq!(c.cookie_same_site, SameSite::None);
        assert_eq!(
            c.response_headers.unwrap(),
            [SessionHeader::Id, SessionHeader::IdlingTimeout]
        );
        assert_eq!(c.logout_methods, [LogoutMethod::Get]);
        assert!(c.remember && c.hash_subject && c.store_metadata && c.read_body_for_logout);
    }

    #[test]
    fn shorthands() {
        let c = parse::<Config>(
            "cookie_lifetime: 7200\ncookie_idletime: 60\ncookie_renew: 600\ncookie_discard: 3\n\
             cookie_samesite: 'off'\ncookie_httponly: false\ncookie_persistent: true\n\
             rolling_timeout: 100",
        )
        .unwrap()
        .resolved();
        assert_eq!(
            (c.rolling_timeout, c.idling_timeout, c.stale_ttl),
            (7200.0, 60.0, 3.0)
        );
        assert_eq!(c.cookie_same_site, SameSite::Lax);
        assert!(!c.cookie_http_only && c.remember);
        assert_eq!((c.cookie_lifetime, c.cookie_samesite), (None, None));
        let c = parse::<Config>("cookie_samesite: None").unwrap().resolved();
        assert_eq!(c.cookie_same_site, SameSite::None);
    }

    #[test]
    fn rules() {
        assert_eq!(
            parse::<Config>("cookie_samesite: Sometimes\ncookie_name: ''").unwrap_err(),
            [
                "cookie_name: length must be at least 1",
                "cookie_samesite: expected one of: Strict, Lax, None, Default",
            ]
        );
        assert_eq!(
            parse::<Config>("cookie_same_site: off").unwrap_err(),
            ["cookie_same_site: `off` is not one of: Strict, Lax, None, Default"]
        );
        assert_eq!(
            parse::<Config>("logout_methods: [PUT]").unwrap_err(),
            ["logout_methods[0]: `PUT` is not one of: GET, POST, DELETE"]
        );
        assert_eq!(
            parse::<Config>("response_headers: [expiry]").unwrap_err(),
            [
                "response_headers[0]: `expiry` is not one of: id, audience, subject, timeout, idling-timeout, rolling-timeout, absolute-timeout"
            ]
        );
        assert_eq!(
            parse::<Config>("cookie_nmae: sid").unwrap_err(),
            ["cookie_nmae: unknown field `cookie_nmae`; did you mean `cookie_name`?"]
        );
    }

    #[test]
    fn real_configs() {
        parse::<Config>(
            "absolute_timeout: 86400\naudience: default\ncookie_domain: null\n\
             cookie_http_only: true\ncookie_name: user-session\ncookie_path: /\n\
             cookie_same_site: Strict\ncookie_secure: false\nidling_timeout: 900\n\
             logout_methods: [POST, DELETE]\nlogout_post_arg: session_logout\n\
             logout_query_arg: session_logout\nread_body_for_logout: false\nremember: false\n\
             remember_absolute_timeout: 2592000.0\nremember_cookie_name: remember\n\
             remember_rolling_timeout: 604800\nrequest_headers: null\nresponse_headers: null\n\
             rolling_timeout: 3600\nsecret: 0YdQapkblRVnBaoiE8zJJ93jTKutnwJn7oMKCW3xrnsv\n\
             stale_ttl: 10\nstorage: cookie",
        )
        .unwrap();
    }
}
