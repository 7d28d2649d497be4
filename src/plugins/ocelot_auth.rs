//! Ocelot authentication and claims (`ocelot-authentication`, access, PRIORITY 800: after
//! SecurityOptions, header transforms, rate limiting and RequestIdKey, as in Ocelot's
//! pipeline). For one route, in Ocelot's middleware order:
//!
//! 1. AuthenticationMiddleware: the `Authorization: Bearer` token is verified by the route's
//!    providers in order, the first that authenticates wins; none: 401. OPTIONS requests
//!    are not authenticated (nor authorized), as in Ocelot.
//! 2. ClaimsToClaimsMiddleware (`AddClaimsToRequest`): claims copied under other types.
//! 3. AuthorizationMiddleware: `AllowedScopes` (the `scope` claim, one space-separated
//!    value or several claims, must hold one of them) and `RouteClaimsRequirement` (each
//!    claim must hold the value, or a `{placeholder}`'s value): 403.
//! 4. ClaimsToHeaders, ClaimsToQueryString, ClaimsToDownstreamPath: claim values into
//!    upstream headers, the query and the DownstreamPathTemplate's placeholders. A claim that
//!    is not there is 403 (Ocelot's CannotFindClaimError), a placeholder the template lacks
//!    404.
//!
//! Answers are switchyard's JSON `{"message", "request_id"}` with Ocelot's status codes (Ocelot
//! itself sends them with an empty body). The verified claims stay in the context's
//! extensions as `OcelotUser` for plugins after this one.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use jsonwebtoken::Header;
use serde::Deserialize;
use serde_json::Value;

use super::ocelot_jwt::{Payload, Provider, Rejected};
use super::{BuildCx, Checks, Ctx, Flow, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::{Placeholders, respond};

/// The route's options, as the Ocelot loader merged and checked them (`OcelotAuth`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub providers: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub claims_requirement: Vec<(String, String)>,
    pub claims_to_claims: Vec<ClaimToThing>,
    pub claims_to_headers: Vec<ClaimToThing>,
    pub claims_to_queries: Vec<ClaimToThing>,
    pub claims_to_path: Vec<ClaimToThing>,
    /// The route's DownstreamPathTemplate, for ChangeDownstreamPathTemplate's check.
    pub downstream_template: String,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (i, h) in self.claims_to_headers.iter().enumerate() {
            if HeaderName::from_bytes(h.existing_key.as_bytes()).is_err() {
                c.error(
                    &format!("claims_to_headers[{i}]"),
                    format!("`{}` is not a valid header name", h.existing_key),
                );
            }
        }
    }
}

/// One `Claims[type] > value[index] > delimiter` instruction, as the Ocelot loader parsed
/// it: the value of claim `new_key` goes under `existing_key`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClaimToThing {
    pub existing_key: String,
    pub new_key: String,
    /// Empty: the whole value; else split on any of its characters and taken at `index`.
    pub delimiter: String,
    pub index: i32,
}

/// `AuthenticationOptions` and the claims options of an Ocelot route.
pub struct Authentication;

impl PluginSpec for Authentication {
    const NAME: &'static str = "ocelot-authentication";
    const PRIORITY: i32 = 800;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let mut providers = Vec::with_capacity(config.providers.len());
        for name in &config.providers {
            match cx.auth_providers.get(name) {
                Some(p) => providers.push(p.clone()),
                None => return Err(format!("authentication provider `{name}` is not defined")),
            }
        }
        let requirement = config
            .claims_requirement
            .iter()
            .map(|(claim, value)| {
                let wanted = match value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                    Some(name) if !name.is_empty() => Wanted::Placeholder(name.to_string()),
                    _ => Wanted::Value(value.clone()),
                };
                (claim.clone(), wanted)
            })
            .collect();
        let headers = config
            .claims_to_headers
            .iter()
            .filter_map(|c| {
                Some((
                    HeaderName::from_bytes(c.existing_key.as_bytes()).ok()?,
                    c.clone(),
                ))
            })
            .collect();
        let path = config
            .claims_to_path
            .iter()
            .map(|c| {
                let present = config
                    .downstream_template
                    .contains(&format!("{{{}}}", c.existing_key));
                (c.clone(), present)
            })
            .collect();
        Ok(Some(Arc::new(OcelotAuthentication(Arc::new(Inner {
            providers,
            scopes: config.allowed_scopes,
            requirement,
            to_claims: config.claims_to_claims,
            to_headers: headers,
            to_queries: config.claims_to_queries,
            to_path: path,
        })))))
    }
}

/// What a RouteClaimsRequirement entry requires of its claim.
#[derive(Debug, Clone)]
enum Wanted {
    Value(String),
    /// `{name}`: the value of the route's placeholder `name`.
    Placeholder(String),
}

struct Inner {
    /// Empty: the route does not authenticate.
    providers: Vec<Arc<Provider>>,
    scopes: Vec<String>,
    requirement: Vec<(String, Wanted)>,
    to_claims: Vec<ClaimToThing>,
    to_headers: Vec<(HeaderName, ClaimToThing)>,
    to_queries: Vec<ClaimToThing>,
    /// With whether the DownstreamPathTemplate has the placeholder.
    to_path: Vec<(ClaimToThing, bool)>,
}

/// The plugin: its settings behind an `Arc`, so that a hook waiting for a key fetch can
/// carry them into its continuation.
pub struct OcelotAuthentication(Arc<Inner>);

/// The authenticated user: the provider that verified the token and its claims, as .NET's
/// ClaimsPrincipal holds them (an array claim is one claim per element).
#[derive(Debug, Clone, Default)]
pub struct OcelotUser {
    pub provider: Option<Arc<str>>,
    pub claims: Vec<(String, String)>,
}

impl OcelotUser {
    fn from_payload(provider: &Arc<str>, payload: Payload) -> OcelotUser {
        let mut claims = Vec::with_capacity(payload.len());
        for (k, v) in payload {
            match v {
                Value::Array(items) => {
                    for item in items {
                        claims.push((k.clone(), claim_text(item)));
                    }
                }
                Value::Null => {}
                v => claims.push((k, claim_text(v))),
            }
        }
        OcelotUser {
            provider: Some(provider.clone()),
            claims,
        }
    }

    /// ClaimsParser.GetValuesByClaimType.
    fn values<'a>(&'a self, claim: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.claims
            .iter()
            .filter(move |(t, _)| t == claim)
            .map(|(_, v)| v.as_str())
    }

    /// ClaimsParser.GetValue: the claim's values joined with `,`, then split on any character
    /// of the delimiter and indexed (when there is one).
    fn value(&self, c: &ClaimToThing) -> Result<String, String> {
        let values: Vec<&str> = self.values(&c.new_key).collect();
        if values.is_empty() {
            return Err(format!("Cannot find claim for key: {}", c.new_key));
        }
        let joined = values.join(",");
        if c.delimiter.is_empty() {
            return Ok(joined);
        }
        let part = usize::try_from(c.index)
            .ok()
            .and_then(|i| joined.split(|ch| c.delimiter.contains(ch)).nth(i));
        part.map(String::from).ok_or_else(|| {
            format!(
                "Cannot find claim for key: {}, delimiter: {}, index: {}",
                c.new_key, c.delimiter, c.index
            )
        })
    }
}

/// A claim's text as .NET's token handler makes it: strings as they are, other values as
/// their JSON.
fn claim_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        v => v.to_string(),
    }
}

impl Plugin for OcelotAuthentication {
    fn name(&self) -> &str {
        Authentication::NAME
    }

    fn priority(&self) -> i32 {
        Authentication::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let inner = &self.0;
        let options = req.method() == Method::OPTIONS;
        if inner.providers.is_empty() || options {
            return inner.authorized(OcelotUser::default(), options, ctx, req);
        }
        let Some(token) = bearer(req) else {
            return unauthenticated(ctx, req.path(), "no bearer token");
        };
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) => return unauthenticated(ctx, req.path(), "the bearer token is not a JWT"),
        };
        let now = Instant::now();
        let first = inner.authenticate(token, &header);
        let refetch: Vec<_> = match &first {
            Ok(_) => Vec::new(),
            Err(_) => inner
                .providers
                .iter()
                .filter(|p| p.may_refetch(&header, now))
                .filter_map(|p| p.remote.clone())
                .collect(),
        };
        if refetch.is_empty() {
            return inner.finish(first, ctx, req);
        }
        // A key this token may need is not held: fetch, then verify again.
        let inner = self.0.clone();
        let token = token.to_string();
        let fetches = async move {
            for r in refetch {
                r.refetch().await;
            }
        };
        Flow::wait(fetches, move |(), ctx, req| {
            let second = inner.authenticate(&token, &header);
            inner.finish(second, ctx, req)
        })
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme case-insensitive).
fn bearer<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let v = req.header("authorization")?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Ocelot's UnauthenticatedError: 401.
fn unauthenticated(ctx: &Ctx<'_>, path: &str, why: &str) -> Flow {
    Flow::Respond(respond::error(
        StatusCode::UNAUTHORIZED,
        &format!("Request for authenticated route '{path}' was unauthenticated! ({why})"),
        ctx.request_id.as_str(),
    ))
}

fn answer(ctx: &Ctx<'_>, status: StatusCode, message: &str) -> Flow {
    Flow::Respond(respond::error(status, message, ctx.request_id.as_str()))
}

impl Inner {
    /// The first provider that authenticates the token; else every provider's reason.
    fn authenticate(&self, token: &str, header: &Header) -> Result<OcelotUser, Vec<String>> {
        let mut why = Vec::with_capacity(self.providers.len());
        for p in &self.providers {
            match p.verify(token, header) {
                Ok(payload) => return Ok(OcelotUser::from_payload(&p.name, payload)),
                Err(r) => {
                    // A key fetch that failed is logged where it fails, once per attempt,
                    // not once per request.
                    if let Rejected::NoKeys(_) = &r {
                        tracing::debug!(provider = &*p.name, reason = %r.describe(&p.name), "no keys to verify a token");
                    }
                    why.push(r.describe(&p.name));
                }
            }
        }
        Err(why)
    }

    fn finish(
        &self,
        result: Result<OcelotUser, Vec<String>>,
        ctx: &mut Ctx<'_>,
        req: &mut Request<'_>,
    ) -> Flow {
        match result {
            Ok(user) => self.authorized(user, false, ctx, req),
            Err(why) => unauthenticated(ctx, req.path(), &why.join("; ")),
        }
    }

    /// Everything after authentication: claims to claims, scopes and required claims (not
    /// for OPTIONS), then claims into headers, the query and the downstream path.
    fn authorized(
        &self,
        mut user: OcelotUser,
        options: bool,
        ctx: &mut Ctx<'_>,
        req: &mut Request<'_>,
    ) -> Flow {
        for c in &self.to_claims {
            let value = match user.value(c) {
                Ok(v) => v,
                Err(e) => return answer(ctx, StatusCode::FORBIDDEN, &e),
            };
            // AddClaimsToRequest: the first claim of that type is replaced.
            if let Some(i) = user.claims.iter().position(|(t, _)| *t == c.existing_key) {
                user.claims.remove(i);
            }
            user.claims.push((c.existing_key.clone(), value));
        }
        if !options {
            if let Err(e) = self.check_scopes(&user) {
                return answer(ctx, StatusCode::FORBIDDEN, &e);
            }
            if let Err(e) = self.check_claims(&user, ctx) {
                return answer(ctx, StatusCode::FORBIDDEN, &e);
            }
        }
        if let Err((status, e)) = self.apply(&user, ctx, req) {
            return answer(ctx, status, &e);
        }
        if user.provider.is_some() {
            ctx.extensions.insert(user);
        }
        Flow::Continue
    }

    /// ScopesAuthorizer.
    fn check_scopes(&self, user: &OcelotUser) -> Result<(), String> {
        if self.scopes.is_empty() || user.provider.is_none() {
            return Ok(());
        }
        let values: Vec<&str> = user.values("scope").collect();
        // One space-separated value (RFC 8693) or one claim per scope.
        let scopes: Vec<&str> = match values.as_slice() {
            [one] if one.contains(' ') => one.split(' ').filter(|s| !s.is_empty()).collect(),
            _ => values,
        };
        if self.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
            Ok(())
        } else {
            Err(format!(
                "no one user scope: '{}' match with some allowed scope: '{}'",
                scopes.join(","),
                self.scopes.join(",")
            ))
        }
    }

    /// ClaimsAuthorizer.
    fn check_claims(&self, user: &OcelotUser, ctx: &Ctx<'_>) -> Result<(), String> {
        for (claim, wanted) in &self.requirement {
            let values: Vec<&str> = user.values(claim).collect();
            if values.is_empty() {
                return Err(format!("user does not have claim {claim}"));
            }
            match wanted {
                Wanted::Value(v) => {
                    if !values.contains(&v.as_str()) {
                        return Err(format!(
                            "claim value: {} is not the same as required value: {v} for type: {claim}",
                            values.join(", ")
                        ));
                    }
                }
                Wanted::Placeholder(name) => {
                    let actual = ctx
                        .extensions
                        .get::<Placeholders>()
                        .and_then(|p| p.get(name));
                    match actual {
                        Some(a) if values.contains(&a) => {}
                        Some(a) => {
                            return Err(format!(
                                "dynamic claim value for {{{name}}} of {} is not the same as required value: {a}",
                                values.join(", ")
                            ));
                        }
                        None => {
                            return Err(format!(
                                "config error: requires variable claim value: {{{name}}} placeholders does not contain that variable"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// ClaimsToHeaders, ClaimsToQueryString, ClaimsToDownstreamPath.
    fn apply(
        &self,
        user: &OcelotUser,
        ctx: &mut Ctx<'_>,
        req: &mut Request<'_>,
    ) -> Result<(), (StatusCode, String)> {
        let forbidden = |e: String| (StatusCode::FORBIDDEN, e);
        for (name, c) in &self.to_headers {
            let value = user.value(c).map_err(forbidden)?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("claim {} cannot be sent as header {name}", c.new_key),
                )
            })?;
            req.headers_mut().insert(name.clone(), value);
        }
        if !self.to_queries.is_empty() {
            let mut query = req.query().unwrap_or_default().to_string();
            for c in &self.to_queries {
                let value = user.value(c).map_err(forbidden)?;
                query = with_query_value(&query, &c.existing_key, &value);
            }
            req.set_query(Some(&query)).map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "the query cannot carry these claims".to_string(),
                )
            })?;
        }
        for (c, present) in &self.to_path {
            let value = user.value(c).map_err(forbidden)?;
            if !present {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("Unable to find placeholder called {{{}}}", c.existing_key),
                ));
            }
            match ctx.extensions.get_mut::<Placeholders>() {
                Some(p) => p.set(&c.existing_key, value),
                None => {
                    let mut p = Placeholders::default();
                    p.set(&c.existing_key, value);
                    ctx.extensions.insert(p);
                }
            }
        }
        Ok(())
    }
}

/// `query` with `key` set to `value` (AddQueriesToRequest): the first parameter of that key
/// (compared decoded) takes the value where it stands and the others of that key go, or the
/// parameter is appended. The rest of the query stays byte-exact (Ocelot decodes and
/// re-emits every parameter unescaped, a bug not copied).
fn with_query_value(query: &str, key: &str, value: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}={}", encode(key), encode(value));
    let mut out: Vec<String> = Vec::new();
    let mut placed = false;
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let raw_key = part.split_once('=').map_or(part, |(k, _)| k);
        let same = form_urlencoded::parse(raw_key.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == key);
        if !same {
            out.push(part.to_string());
        } else if !placed {
            out.push(pair.clone());
            placed = true;
        }
    }
    if !placed {
        out.push(pair);
    }
    out.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(claims: &[(&str, &str)]) -> OcelotUser {
        OcelotUser {
            provider: Some("Bearer".into()),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn thing(new_key: &str, delimiter: &str, index: i32) -> ClaimToThing {
        ClaimToThing {
            existing_key: "X".into(),
            new_key: new_key.into(),
            delimiter: delimiter.into(),
            index,
        }
    }

    #[test]
    fn claim_values_as_claims_parser_reads_them() {
        let u = user(&[("sub", "usr|42"), ("role", "a"), ("role", "b")]);
        assert_eq!(u.value(&thing("sub", "", 5)).unwrap(), "usr|42");
        assert_eq!(u.value(&thing("sub", "|", 1)).unwrap(), "42");
        assert_eq!(u.value(&thing("role", "", 0)).unwrap(), "a,b");
        assert_eq!(u.value(&thing("role", ",", 1)).unwrap(), "b");
        assert!(u.value(&thing("sub", "|", 2)).is_err());
        assert!(u.value(&thing("sub", "|", -1)).is_err());
        assert_eq!(
            u.value(&thing("email", "", 0)).unwrap_err(),
            "Cannot find claim for key: email"
        );
    }

    #[test]
    fn payload_claims_follow_the_dotnet_handler() {
        let payload: Payload = serde_json::from_str(
            r#"{"sub": "u1", "scope": ["a", "b"], "admin": true, "n": 3, "nil": null, "obj": {"x": 1}}"#,
        )
        .unwrap();
        let u = OcelotUser::from_payload(&Arc::from("B"), payload);
        let get = |k: &str| u.values(k).map(String::from).collect::<Vec<_>>();
        assert_eq!(get("scope"), ["a", "b"]);
        assert_eq!(get("admin"), ["true"]);
        assert_eq!(get("n"), ["3"]);
        assert!(get("nil").is_empty());
        assert_eq!(get("obj"), [r#"{"x":1}"#]);
    }

    #[test]
    fn scopes_space_separated_or_one_claim_each() {
        let inner = Inner {
            providers: Vec::new(),
            scopes: vec!["write".into(), "admin".into()],
            requirement: Vec::new(),
            to_claims: Vec::new(),
            to_headers: Vec::new(),
            to_queries: Vec::new(),
            to_path: Vec::new(),
        };
        assert!(
            inner
                .check_scopes(&user(&[("scope", "read write")]))
                .is_ok()
        );
        assert!(
            inner
                .check_scopes(&user(&[("scope", "read"), ("scope", "admin")]))
                .is_ok()
        );
        assert_eq!(
            inner
                .check_scopes(&user(&[("scope", "read openid")]))
                .unwrap_err(),
            "no one user scope: 'read,openid' match with some allowed scope: 'write,admin'"
        );
        assert!(inner.check_scopes(&user(&[])).is_err());
    }

    #[test]
    fn query_values_replace_in_place_or_append() {
        assert_eq!(with_query_value("", "id", "a b"), "id=a+b");
        assert_eq!(
            with_query_value("x=%2F&id=1&id=2&y", "id", "7"),
            "x=%2F&id=7&y"
        );
        assert_eq!(
            with_query_value("x=1", "user id", "7&8"),
            "x=1&user+id=7%268"
        );
    }
}
