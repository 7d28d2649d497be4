//! `ldap-auth` (PRIORITY 1200, access): authenticates the username and password of an
//! `Authorization` (or `Proxy-Authorization`) header of type `header_type` by binding to an
//! LDAP server (plain, StartTLS or LDAPS) and searching `attribute=username` under
//! `base_dn`, caching the result for `cache_ttl` seconds; optionally lets the request
//! through as an `anonymous` consumer. Not served yet: its config is checked against Kong's
//! schema, and the routes it applies to are closed.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::typedefs::{check_host, check_port, non_empty_fields};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/ldap-auth/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub ldap_host: String,
    #[serde(default = "default_ldap_port")]
    pub ldap_port: i64,
    /// LDAP over TLS (port 636, usually); not with `start_tls`.
    #[serde(default)]
    pub ldaps: bool,
    #[serde(default)]
    pub start_tls: bool,
    #[serde(default)]
    pub verify_ldap_host: bool,
    /// Where the search starts (`dc=example,dc=com`).
    pub base_dn: String,
    /// The attribute the username is searched by (`cn`).
    pub attribute: String,
    /// How long (in seconds) an authentication is cached.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: f64,
    #[serde(default)]
    pub hide_credentials: bool,
    /// Connection timeout in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// How long (in milliseconds) an idle connection is kept.
    #[serde(default = "default_keepalive")]
    pub keepalive: f64,
    /// A consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    /// The scheme of the `Authorization` header (`ldap username:password` in base64).
    #[serde(default = "default_header_type")]
    pub header_type: String,
    /// The `realm` of the `WWW-Authenticate` header sent when authentication fails.
    pub realm: Option<String>,
}

fn default_ldap_port() -> i64 {
    389
}

fn default_cache_ttl() -> f64 {
    60.0
}

fn default_timeout() -> f64 {
    10_000.0
}

fn default_keepalive() -> f64 {
    60_000.0
}

fn default_header_type() -> String {
    "ldap".to_string()
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_host(c, "ldap_host", &self.ldap_host);
        check_port(c, "ldap_port", self.ldap_port);
        non_empty_fields(
            c,
            "",
            &[
                ("base_dn", Some(&self.base_dn)),
                ("attribute", Some(&self.attribute)),
                ("anonymous", self.anonymous.as_deref()),
                ("header_type", Some(&self.header_type)),
                ("realm", self.realm.as_deref()),
            ],
        );
        if self.ldaps && self.start_tls {
            c.error(
                "start_tls",
                "'ldaps' and 'start_tls' cannot be enabled simultaneously",
            );
        }
    }
}

/// `ldap-auth` (PRIORITY 1200).
pub struct LdapAuth;

impl PluginSpec for LdapAuth {
    const NAME: &'static str = "ldap-auth";
    const PRIORITY: i32 = 1200;
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

    const MINIMAL: &str = "ldap_host: ldap.example.com\nbase_dn: dc=example,dc=com\nattribute: cn";

    #[test]
    fn defaults() {
        let c: Config = parse(MINIMAL).unwrap();
        assert_eq!(c.ldap_port, 389);
        assert_eq!(c.cache_ttl, 60.0);
        assert_eq!(c.timeout, 10_000.0);
        assert_eq!(c.keepalive, 60_000.0);
        assert_eq!(c.header_type, "ldap");
        assert!(!c.ldaps && !c.start_tls && !c.verify_ldap_host && !c.hide_credentials);
    }

    #[test]
    fn required_fields() {
        let errs = parse::<Config>("{}").unwrap_err();
        assert_eq!(errs, [": missing field `ldap_host`"]);
        let errs = parse::<Config>("ldap_host: h\nbase_dn: x").unwrap_err();
        assert_eq!(errs, [": missing field `attribute`"]);
    }

    #[test]
    fn every_field() {
        let c: Config = parse(&format!(
            "{MINIMAL}\nldap_port: 636\nldaps: true\nstart_tls: false\nverify_ldap_host: true\n\
             cache_ttl: 30\nhide_credentials: true\ntimeout: 500\nkeepalive: 1000\n\
             anonymous: guest\nheader_type: basic\nrealm: corp"
        ))
        .unwrap();
        assert_eq!(c.ldap_port, 636);
        assert!(c.ldaps && c.verify_ldap_host && c.hide_credentials);
        assert_eq!(c.header_type, "basic");
        assert_eq!(c.realm.as_deref(), Some("corp"));
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            "ldap_host: 'ldap.example.com:389'\nldap_port: 70000\nbase_dn: ''\nattribute: cn\n\
             ldaps: true\nstart_tls: true",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "ldap_host: must not have a port",
                "ldap_port: value should be between 0 and 65535",
                "base_dn: length must be at least 1",
                "start_tls: 'ldaps' and 'start_tls' cannot be enabled simultaneously",
            ]
        );
        let errs =
            parse::<Config>("ldap_host: 'bad host!'\nbase_dn: dc=x\nattribute: cn\nldap_prot: 1")
                .unwrap_err();
        assert_eq!(
            errs,
            [
                "ldap_prot: unknown field `ldap_prot`; did you mean `ldap_port`?",
                "ldap_host: invalid value: bad host!",
            ]
        );
        for host in ["10.0.0.1", "::1", "ldap-1.corp.example.com", "ldap"] {
            parse::<Config>(&format!(
                "ldap_host: '{host}'\nbase_dn: dc=x\nattribute: cn"
            ))
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        }
    }
}
