//! Ocelot authentication and claims options, checked and merged into the model:
//! - `GlobalConfiguration.AuthenticationProviders` (a switchyard extension): the JWT bearer
//!   providers that Ocelot deployments register in C# with `AddJwtBearer(name, ...)`, with
//!   their issuers, audiences, lifetime rules and signing keys (inline PEM or JWK, a JWKS
//!   file, a JWKS URL or an OpenID Connect authority). Keys themselves are read and parsed
//!   when a snapshot compiles (`{vault://...}` references are resolved then).
//! - A route's `AuthenticationOptions`, merged with the global ones as Ocelot's
//!   AuthenticationOptionsCreator merges them; a provider name that no provider defines is an
//!   error (Ocelot's FileAuthenticationOptionsValidator).
//! - `RouteClaimsRequirement`, `AddClaimsToRequest`, `AddHeadersToRequest`,
//!   `AddQueriesToRequest` and `ChangeDownstreamPathTemplate`, whose `Claims[type] >
//!   value[index] > delimiter` instructions are parsed as Ocelot's
//!   ClaimToThingConfigurationParser parses them (one it cannot parse is ignored, as Ocelot
//!   ignores it, with a warning).

use indexmap::IndexMap;
use serde::Deserialize;

use super::raw::{RawAuthentication, RawGlobal, RawRoute};
use super::{Cx, Entity, GlobalCx, in_group, pairs};
use crate::config::de::Captured;
use crate::config::diag::{Path, nearest};
use crate::config::model::{ClaimToThing, KeySource, Located, OcelotAuth, OcelotAuthProvider};

/// ASP.NET's TokenValidationParameters.ClockSkew default.
const DEFAULT_CLOCK_SKEW_S: u64 = 300;
/// How often a JWKS is fetched again in the background (an hour; ASP.NET's
/// ConfigurationManager waits 12 hours, which is long for a gateway to miss a rotation).
const DEFAULT_JWKS_REFRESH_S: u64 = 3_600;
/// The shortest time between two fetches made for a token whose `kid` is unknown.
const DEFAULT_JWKS_MIN_REFETCH_S: u64 = 10;

/// One provider of `GlobalConfiguration.AuthenticationProviders`.
#[derive(Deserialize, Debug, Default, Clone)]
pub struct RawAuthProvider {
    /// `JwtBearer`, the only kind (and the default).
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    #[serde(rename = "Issuer")]
    pub issuer: Option<String>,
    #[serde(rename = "Issuers")]
    pub issuers: Option<Vec<String>>,
    #[serde(rename = "ValidateIssuer")]
    pub validate_issuer: Option<bool>,
    #[serde(rename = "Audience")]
    pub audience: Option<String>,
    #[serde(rename = "Audiences")]
    pub audiences: Option<Vec<String>>,
    #[serde(rename = "ValidateAudience")]
    pub validate_audience: Option<bool>,
    #[serde(rename = "ValidateLifetime")]
    pub validate_lifetime: Option<bool>,
    #[serde(rename = "RequireExpirationTime")]
    pub require_expiration_time: Option<bool>,
    #[serde(rename = "ClockSkewSeconds")]
    pub clock_skew_seconds: Option<u64>,
    #[serde(rename = "Algorithms")]
    pub algorithms: Option<Vec<String>>,
    /// PEM strings, JWK objects (or JWK JSON strings), `{"Secret": ...}` symmetric keys.
    #[serde(rename = "Keys")]
    pub keys: Option<Vec<Captured>>,
    #[serde(rename = "JwksFile")]
    pub jwks_file: Option<String>,
    #[serde(rename = "JwksUrl")]
    pub jwks_url: Option<String>,
    #[serde(rename = "Authority")]
    pub authority: Option<String>,
    #[serde(rename = "RequireHttpsMetadata")]
    pub require_https_metadata: Option<bool>,
    #[serde(rename = "JwksRefreshSeconds")]
    pub jwks_refresh_seconds: Option<u64>,
    #[serde(rename = "JwksMinimumRefetchSeconds")]
    pub jwks_minimum_refetch_seconds: Option<u64>,
}

/// The `alg` names jsonwebtoken verifies.
const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Parses one instruction as Ocelot's ClaimToThingConfigurationParser.Extract does; `None`
/// where Ocelot's parser fails (and the instruction is ignored).
pub fn claim_to_thing(existing_key: &str, value: &str) -> Option<ClaimToThing> {
    let instructions: Vec<&str> = value.split('>').collect();
    if instructions.len() <= 1 || !bracketed(instructions[0], "Claims[") {
        return None;
    }
    let new_key = index_value(instructions[0])?;
    let (mut index, mut delimiter) = (0, String::new());
    if instructions.len() > 2 && bracketed(instructions[1], "value[") {
        // int.Parse: surrounding white space and a sign are allowed.
        index = index_value(instructions[1])?.trim().parse::<i32>().ok()?;
        delimiter = instructions[2].trim().to_string();
    }
    Some(ClaimToThing {
        existing_key: existing_key.to_string(),
        new_key: new_key.to_string(),
        delimiter,
        index,
    })
}

/// Ocelot's `Claims\[.*\]` / `value\[.*\]` tests: `open` and then a `]` somewhere after it.
fn bracketed(s: &str, open: &str) -> bool {
    s.find(open).is_some_and(|i| {
        s[i + open.len()..]
            .lines()
            .next()
            .unwrap_or("")
            .contains(']')
    })
}

/// GetIndexValue: between the first `[` and the first `]` (`None` where C#'s Substring throws).
fn index_value(s: &str) -> Option<&str> {
    let first = s.find('[')?;
    let last = s.find(']')?;
    (last > first).then(|| &s[first + 1..last])
}

/// The route's options merged with the global ones (AuthenticationOptionsCreator): the
/// route's own win field by field, and without its own the global ones apply when the route
/// is in their group.
fn merged(r: &RawRoute, global: &Option<RawAuthentication>) -> Option<RawAuthentication> {
    let global = global
        .as_ref()
        .filter(|g| in_group(&g.route_keys, r.key.as_deref()));
    match (&r.authentication_options, global) {
        (None, g) => g.cloned(),
        (Some(o), None) => Some(o.clone()),
        (Some(o), Some(g)) => {
            let mut m = o.clone();
            m.allow_anonymous = m.allow_anonymous.or(g.allow_anonymous);
            m.allowed_scopes = m.allowed_scopes.or_else(|| g.allowed_scopes.clone());
            if m.authentication_provider_key
                .as_deref()
                .is_none_or(str::is_empty)
            {
                m.authentication_provider_key = g.authentication_provider_key.clone();
            }
            if m.authentication_provider_keys
                .as_ref()
                .is_none_or(Vec::is_empty)
            {
                m.authentication_provider_keys = g.authentication_provider_keys.clone();
            }
            Some(m)
        }
    }
}

/// AuthenticationOptions' provider names in Ocelot's order, the blank ones left out.
fn provider_names(a: &RawAuthentication) -> Vec<String> {
    a.authentication_provider_key
        .iter()
        .chain(a.authentication_provider_keys.iter().flatten())
        .filter(|k| !k.trim().is_empty())
        .cloned()
        .collect()
}

impl Cx<'_> {
    /// `GlobalConfiguration.AuthenticationProviders` into the model, each problem at its
    /// position; then the global AuthenticationOptions' names are checked against them.
    pub(super) fn auth_providers(&mut self, g: &RawGlobal, ent: Option<&Entity>) {
        let Some(ent) = ent else { return };
        let base = Path::root().key("AuthenticationProviders");
        for (name, raw) in g.authentication_providers.iter().flatten() {
            if let Some(p) = self.auth_provider(ent, &base.key(name.clone()), name, raw) {
                self.model.ocelot_auth_providers.push(p);
            }
        }
        if let Some(a) = &g.authentication_options {
            self.check_provider_names(ent, &Path::root().key("AuthenticationOptions"), a, g);
        }
    }

    fn auth_provider(
        &mut self,
        ent: &Entity,
        at: &Path,
        name: &str,
        raw: &RawAuthProvider,
    ) -> Option<OcelotAuthProvider> {
        let mut ok = true;
        if name.trim().is_empty() {
            self.error(
                ent,
                at,
                "an authentication provider needs a name (the AuthenticationProviderKey routes use)",
            );
            ok = false;
        }
        if let Some(k) = raw
            .kind
            .as_deref()
            .filter(|k| !k.eq_ignore_ascii_case("JwtBearer"))
        {
            self.error(ent, &at.key("Type"), format!("provider type `{k}` is not supported: switchyard's providers are JWT bearer providers (Type: JwtBearer)"));
            ok = false;
        }
        let require_https = raw.require_https_metadata.unwrap_or(true);
        let jwks_url = self.metadata_url(ent, &at.key("JwksUrl"), &raw.jwks_url, require_https);
        let authority = self.metadata_url(ent, &at.key("Authority"), &raw.authority, require_https);
        ok &= jwks_url.is_ok() && authority.is_ok();
        let (jwks_url, authority) = (jwks_url.ok().flatten(), authority.ok().flatten());
        let jwks_file = raw
            .jwks_file
            .as_ref()
            .filter(|f| !f.trim().is_empty())
            .map(|f| Located {
                value: f.trim().to_string(),
                origin: self.origin(ent, &at.key("JwksFile")),
            });
        let keys: Vec<KeySource> = raw
            .keys
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, k)| KeySource {
                key: k.clone(),
                origin: self.origin(ent, &at.key("Keys").index(i)),
            })
            .collect();
        let written = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        let remote = written(&raw.jwks_url) || written(&raw.authority);
        if keys.is_empty() && jwks_file.is_none() && !remote {
            self.error(ent, at, format!("provider `{name}` has no signing keys: set Keys (PEM or JWK), JwksFile, JwksUrl or Authority"));
            ok = false;
        }
        let issuers = strings(&raw.issuer, &raw.issuers);
        if raw.validate_issuer.unwrap_or(true) && issuers.is_empty() && authority.is_none() {
            self.error(ent, at, format!("provider `{name}` validates the issuer but names none: set Issuer (or Issuers), or ValidateIssuer: false to accept any issuer"));
            ok = false;
        }
        let audiences = strings(&raw.audience, &raw.audiences);
        if raw.validate_audience.unwrap_or(true) && audiences.is_empty() {
            self.error(ent, at, format!("provider `{name}` validates the audience but names none: set Audience (or Audiences), or ValidateAudience: false to accept any audience"));
            ok = false;
        }
        let mut algorithms = Vec::new();
        for (i, a) in raw.algorithms.iter().flatten().enumerate() {
            match ALGORITHMS.iter().find(|x| x.eq_ignore_ascii_case(a.trim())) {
                Some(x) => algorithms.push(x.to_string()),
                None => {
                    self.error(
                        ent,
                        &at.key("Algorithms").index(i),
                        format!(
                            "`{a}` is not a JWS algorithm switchyard verifies ({})",
                            ALGORITHMS.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        let validate_lifetime = raw.validate_lifetime.unwrap_or(true);
        let issuer_from_authority =
            raw.validate_issuer.unwrap_or(true) && issuers.is_empty() && authority.is_some();
        ok.then(|| OcelotAuthProvider {
            name: name.to_string(),
            issuer_from_authority,
            issuers: if raw.validate_issuer.unwrap_or(true) {
                issuers
            } else {
                Vec::new()
            },
            audiences: if raw.validate_audience.unwrap_or(true) {
                audiences
            } else {
                Vec::new()
            },
            validate_lifetime,
            require_expiration: validate_lifetime && raw.require_expiration_time.unwrap_or(true),
            clock_skew_s: raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_S),
            algorithms,
            keys,
            jwks_file,
            jwks_url,
            authority,
            jwks_refresh_s: raw
                .jwks_refresh_seconds
                .unwrap_or(DEFAULT_JWKS_REFRESH_S)
                .max(1),
            jwks_min_refetch_s: raw
                .jwks_minimum_refetch_seconds
                .unwrap_or(DEFAULT_JWKS_MIN_REFETCH_S),
            origin: self.origin(ent, at),
        })
    }

    /// A JwksUrl or Authority: an absolute http(s) URL, https unless RequireHttpsMetadata is
    /// false (ASP.NET's rule for metadata addresses).
    fn metadata_url(
        &mut self,
        ent: &Entity,
        at: &Path,
        value: &Option<String>,
        require_https: bool,
    ) -> Result<Option<Located>, ()> {
        let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let field = match at.0.last() {
            Some(crate::config::diag::Seg::Key(k)) => k.to_string(),
            _ => String::new(),
        };
        let parsed = v.parse::<http::Uri>().ok().filter(|u| {
            u.host().is_some() && matches!(u.scheme_str(), Some("http") | Some("https"))
        });
        let Some(uri) = parsed else {
            self.error(
                ent,
                at,
                format!("{field} `{v}` is not an absolute http(s) URL"),
            );
            return Err(());
        };
        if require_https && uri.scheme_str() != Some("https") {
            self.error(ent, at, format!("{field} `{v}` must use HTTPS unless disabled for development by setting RequireHttpsMetadata: false"));
            return Err(());
        }
        Ok(Some(Located {
            value: v.to_string(),
            origin: self.origin(ent, at),
        }))
    }

    /// Every provider name in `a` must be defined (FileAuthenticationOptionsValidator) once
    /// the files define providers: an unknown name is then a mistake, reported with the
    /// nearest one. Files that define none name schemes their Ocelot registers in code:
    /// those load, and `route_auth` closes the routes that use them.
    fn check_provider_names(
        &mut self,
        ent: &Entity,
        at: &Path,
        a: &RawAuthentication,
        g: &RawGlobal,
    ) -> bool {
        // Declared, valid or not: a provider with errors of its own fails the load already.
        let defined: Vec<String> = g
            .authentication_providers
            .iter()
            .flatten()
            .map(|(name, _)| name.clone())
            .collect();
        let mut named: Vec<(Path, &str)> = Vec::new();
        if let Some(k) = a.authentication_provider_key.as_deref() {
            named.push((at.key("AuthenticationProviderKey"), k));
        }
        for (i, k) in a.authentication_provider_keys.iter().flatten().enumerate() {
            named.push((at.key("AuthenticationProviderKeys").index(i), k));
        }
        if defined.is_empty() {
            return true;
        }
        let mut ok = true;
        for (path, k) in named {
            if k.trim().is_empty() || defined.iter().any(|d| d == k) {
                continue;
            }
            ok = false;
            let hint = match nearest(k, defined.iter().map(String::as_str)) {
                Some(n) => format!(" (did you mean `{n}`?)"),
                None => format!(" (defined: {})", defined.join(", ")),
            };
            self.error(ent, &path, format!("AuthenticationOptions: `{k}` is unsupported authentication provider: define it under GlobalConfiguration.AuthenticationProviders{hint}"));
        }
        ok
    }

    /// The route's authentication and claims options; `None` when they have errors.
    pub(super) fn route_auth(
        &mut self,
        ent: &Entity,
        r: &RawRoute,
        g: &GlobalCx,
    ) -> Option<OcelotAuth> {
        let root = Path::root();
        let mut ok = true;
        if let Some(a) = &r.authentication_options {
            ok &= self.check_provider_names(ent, &root.key("AuthenticationOptions"), a, &g.raw);
        }
        let options = merged(r, &g.raw.authentication_options);
        let providers: Vec<String> = options
            .as_ref()
            .filter(|a| a.allow_anonymous != Some(true))
            .map(provider_names)
            .unwrap_or_default();
        let scopes: Vec<String> = options
            .as_ref()
            .and_then(|a| a.allowed_scopes.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let declared = g.raw.authentication_providers.as_ref();
        if !providers.is_empty() && declared.is_none_or(|d| d.is_empty()) {
            // The route answers 503 naming its providers; nothing of its options is built.
            let at = match r.authentication_options {
                Some(_) => root.key("AuthenticationOptions"),
                None => root,
            };
            let names = providers.join("`, `");
            self.close(ent, &at, &format!("AuthenticationOptions provider `{names}` (a scheme Ocelot registers in code: define it under GlobalConfiguration.AuthenticationProviders)"));
            return Some(OcelotAuth::default());
        }
        let authenticates = !providers.is_empty();
        if !authenticates && !scopes.is_empty() {
            self.warn(ent, &root.key("AuthenticationOptions").key("AllowedScopes"), "AllowedScopes apply only to a route that authenticates (a provider key and no AllowAnonymous): Ocelot ignores them here, and so does switchyard");
        }
        let mut auth = OcelotAuth {
            allowed_scopes: if authenticates { scopes } else { Vec::new() },
            providers,
            claims_requirement: pairs(&r.route_claims_requirement),
            claims_to_claims: self.claims(ent, "AddClaimsToRequest", &r.add_claims_to_request),
            claims_to_headers: self.claims(ent, "AddHeadersToRequest", &r.add_headers_to_request),
            claims_to_queries: self.claims(ent, "AddQueriesToRequest", &r.add_queries_to_request),
            claims_to_path: self.claims(
                ent,
                "ChangeDownstreamPathTemplate",
                &r.change_downstream_path_template,
            ),
        };
        for c in &auth.claims_to_headers {
            if http::HeaderName::from_bytes(c.existing_key.as_bytes()).is_err() {
                ok = false;
                self.error(
                    ent,
                    &root.key("AddHeadersToRequest").key(c.existing_key.clone()),
                    format!("`{}` is not a valid header name", c.existing_key),
                );
            }
        }
        let template = r.downstream_path_template.as_deref().unwrap_or_default();
        for c in &auth.claims_to_path {
            if !template.contains(&format!("{{{}}}", c.existing_key)) {
                self.warn(ent, &root.key("ChangeDownstreamPathTemplate").key(c.existing_key.clone()), format!("DownstreamPathTemplate '{template}' has no placeholder {{{}}}: Ocelot answers every request that gets this far 404 (Unable to find placeholder), and so does switchyard", c.existing_key));
            }
        }
        if !authenticates {
            self.warn_claims_without_user(ent, &auth);
            auth.allowed_scopes.clear();
        }
        ok.then_some(auth)
    }

    /// Claims options on a route that does not authenticate find no claim: Ocelot answers
    /// 403 to every request there, and so does switchyard. Worth saying at load.
    fn warn_claims_without_user(&mut self, ent: &Entity, auth: &OcelotAuth) {
        for (field, set) in [
            (
                "RouteClaimsRequirement",
                !auth.claims_requirement.is_empty(),
            ),
            ("AddClaimsToRequest", !auth.claims_to_claims.is_empty()),
            ("AddHeadersToRequest", !auth.claims_to_headers.is_empty()),
            ("AddQueriesToRequest", !auth.claims_to_queries.is_empty()),
            (
                "ChangeDownstreamPathTemplate",
                !auth.claims_to_path.is_empty(),
            ),
        ] {
            if set {
                self.warn(ent, &Path::root().key(field), format!("{field} reads claims, but the route does not authenticate (no AuthenticationOptions provider key, or AllowAnonymous): every request finds no claim and gets 403, as in Ocelot"));
            }
        }
    }

    /// One claims option's instructions; one Ocelot cannot parse is ignored, with a warning.
    fn claims(
        &mut self,
        ent: &Entity,
        field: &'static str,
        map: &Option<IndexMap<String, Option<String>>>,
    ) -> Vec<ClaimToThing> {
        let mut out = Vec::new();
        for (k, v) in pairs(map) {
            match claim_to_thing(&k, &v) {
                Some(c) => out.push(c),
                None => self.warn(ent, &Path::root().key(field).key(k.clone()), format!("`{v}` is not a claims expression (`Claims[type] > value[index] > delimiter`); Ocelot ignores it, and so does switchyard")),
            }
        }
        out
    }
}

/// A single value and a list of them, the single one first.
fn strings(one: &Option<String>, many: &Option<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in one.iter().chain(many.iter().flatten()) {
        let s = s.trim();
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diag::{Diagnostics, SourceFile};
    use crate::config::model::Model;
    use crate::config::node::parse_jsonc;

    fn load(text: &str) -> (Model, Vec<String>) {
        let files = vec![SourceFile {
            name: "ocelot.json".into(),
            root: parse_jsonc(text).unwrap(),
            case_insensitive: true,
        }];
        let mut model = Model::default();
        let mut diags = Diagnostics::default();
        super::super::load(&files, None, &mut model, &mut diags);
        (model, diags.items.iter().map(|d| d.to_string()).collect())
    }

    fn route(up: &str, extra: &str) -> String {
        format!(
            r#"{{"DownstreamPathTemplate": "/d/{{id}}", "DownstreamHostAndPorts": [{{"Host": "h", "Port": 80}}], "UpstreamPathTemplate": "{up}"{extra}}}"#
        )
    }

    #[test]
    fn claim_instructions_parse_as_ocelot_parses_them() {
        let c = |v: &str| claim_to_thing("K", v).map(|c| (c.new_key, c.index, c.delimiter));
        assert_eq!(
            c("Claims[sub] > value[1] > |"),
            Some(("sub".into(), 1, "|".into()))
        );
        assert_eq!(
            c("Claims[sub] > value > |"),
            Some(("sub".into(), 0, String::new()))
        );
        assert_eq!(
            c("Claims[sub] > value"),
            Some(("sub".into(), 0, String::new()))
        );
        assert_eq!(
            c("Claims[sub]>value[ 2 ]>,;"),
            Some(("sub".into(), 2, ",;".into()))
        );
        assert_eq!(
            c("Claims[sub] > value[-1] > |"),
            Some(("sub".into(), -1, "|".into()))
        );
        assert_eq!(
            c("Claims[] > value"),
            Some((String::new(), 0, String::new()))
        );
        for bad in [
            "Claims[sub]",
            "{RemoteIpAddress}",
            "claims[sub] > value",
            "Claims[sub > value",
            "Claims[sub] > value[x] > |",
            "Claims[sub] > value[] > |",
        ] {
            assert_eq!(c(bad), None, "{bad}");
        }
    }

    #[test]
    fn providers_parse_with_defaults_and_positions() {
        let text = format!(
            r#"{{
  "Routes": [{}],
  "GlobalConfiguration": {{
    "AuthenticationProviders": {{
      "Bearer": {{"Issuer": "https://idp", "Audiences": ["api", "api2"], "Keys": ["{{vault://env/KEY}}", {{"kty": "oct", "k": "c2VjcmV0"}}]}},
      "Other": {{"ValidateIssuer": false, "ValidateAudience": false, "ValidateLifetime": false, "ClockSkewSeconds": 5, "JwksUrl": "http://127.0.0.1:1/jwks", "RequireHttpsMetadata": false, "Algorithms": ["rs256"]}}
    }}
  }}
}}"#,
            route(
                "/u/{id}",
                r#", "AuthenticationOptions": {"AuthenticationProviderKeys": ["Other", "Bearer"], "AllowedScopes": ["a"]}"#
            )
        );
        let (model, diags) = load(&text);
        assert!(diags.is_empty(), "{diags:?}");
        let [b, o] = &model.ocelot_auth_providers[..] else {
            panic!("{:?}", model.ocelot_auth_providers)
        };
        assert_eq!((b.name.as_str(), o.name.as_str()), ("Bearer", "Other"));
        assert_eq!(b.issuers, ["https://idp"]);
        assert_eq!(b.audiences, ["api", "api2"]);
        assert!(b.validate_lifetime && b.require_expiration);
        assert_eq!((b.clock_skew_s, b.jwks_min_refetch_s), (300, 10));
        assert_eq!(b.keys.len(), 2);
        assert_eq!(b.keys[0].origin.line, 5);
        assert_eq!(
            b.keys[0].origin.path,
            "GlobalConfiguration.AuthenticationProviders.Bearer.Keys[0]"
        );
        assert!(o.issuers.is_empty() && o.audiences.is_empty());
        assert!(!o.validate_lifetime && !o.require_expiration);
        assert_eq!(o.algorithms, ["RS256"]);
        assert_eq!(
            o.jwks_url.as_ref().unwrap().value,
            "http://127.0.0.1:1/jwks"
        );
        let auth = &model.ocelot_routes[0].auth;
        assert_eq!(auth.providers, ["Other", "Bearer"]);
        assert_eq!(auth.allowed_scopes, ["a"]);
    }

    #[test]
    fn provider_errors_are_all_reported_at_their_positions() {
        let text = format!(
            r#"{{
  "Routes": [{}],
  "GlobalConfiguration": {{
    "AuthenticationProviders": {{
      "Bearer": {{"Type": "Cookie", "Algorithms": ["none"]}},
      "Remote": {{"Issuer": "i", "Audience": "a", "JwksUrl": "http://idp/jwks"}}
    }}
  }}
}}"#,
            route(
                "/u/{id}",
                r#", "AuthenticationOptions": {"AuthenticationProviderKey": "bearer"}"#
            )
        );
        let (_, diags) = load(&text);
        let has = |s: &str| diags.iter().any(|d| d.contains(s));
        assert!(
            has("ocelot.json:5:") && has("Bearer.Type: provider type `Cookie` is not supported"),
            "{diags:?}"
        );
        assert!(
            has("Bearer: provider `Bearer` has no signing keys"),
            "{diags:?}"
        );
        assert!(
            has("provider `Bearer` validates the issuer but names none"),
            "{diags:?}"
        );
        assert!(
            has("provider `Bearer` validates the audience but names none"),
            "{diags:?}"
        );
        assert!(
            has("Bearer.Algorithms[0]: `none` is not a JWS algorithm"),
            "{diags:?}"
        );
        assert!(
            has("ocelot.json:6:")
                && has("Remote.JwksUrl: JwksUrl `http://idp/jwks` must use HTTPS"),
            "{diags:?}"
        );
        assert!(
            has("ocelot.json:2:")
                && has(
                    "Routes[0].AuthenticationOptions.AuthenticationProviderKey: AuthenticationOptions: `bearer` is unsupported authentication provider"
                ),
            "{diags:?}"
        );
    }

    #[test]
    fn global_options_merge_as_ocelot_merges_them() {
        let text = format!(
            r#"{{
  "Routes": [{}, {}, {}],
  "GlobalConfiguration": {{
    "AuthenticationProviders": {{"A": {{"ValidateIssuer": false, "ValidateAudience": false, "Keys": [{{"Secret": "s"}}]}}, "B": {{"ValidateIssuer": false, "ValidateAudience": false, "Keys": [{{"Secret": "t"}}]}}}},
    "AuthenticationOptions": {{"AuthenticationProviderKeys": ["A"], "AllowedScopes": ["g"], "RouteKeys": ["in", "anon"]}}
  }}
}}"#,
            route(
                "/u/{id}",
                r#", "Key": "in", "AuthenticationOptions": {"AuthenticationProviderKeys": ["B"]}"#
            ),
            route(
                "/anon/{id}",
                r#", "Key": "anon", "AuthenticationOptions": {"AllowAnonymous": true}, "AddHeadersToRequest": {"X-Sub": "Claims[sub] > value"}"#
            ),
            route("/out/{id}", r#", "Key": "out""#),
        );
        let (model, diags) = load(&text);
        assert!(diags.iter().all(|d| d.contains("warning")), "{diags:?}");
        let auths: Vec<&OcelotAuth> = model.ocelot_routes.iter().map(|r| &r.auth).collect();
        assert_eq!(auths[0].providers, ["B"]);
        assert_eq!(auths[0].allowed_scopes, ["g"]);
        assert!(auths[1].providers.is_empty() && auths[1].allowed_scopes.is_empty());
        assert!(auths[2].is_empty());
        assert!(
            diags.iter().any(|d| d.contains("Routes[1].AddHeadersToRequest: AddHeadersToRequest reads claims, but the route does not authenticate")),
            "{diags:?}"
        );
    }
}
