//! What Kong's authentication plugins share (`kong/plugins/*-auth/handler.lua`): how a
//! success tells the upstream who the consumer is, the `anonymous` fallback, and how several
//! authentication plugins on one route combine:
//!
//! - with `anonymous` set, authentication is a logical OR: a plugin that finds the request
//!   already authenticated by another steps aside, and one that fails lets the request on as
//!   the anonymous consumer (a later plugin may still authenticate it);
//! - without it, a logical AND: a plugin that fails answers (401), whatever others found.
//!
//! The upstream learns the consumer from `X-Consumer-ID`, `X-Consumer-Custom-ID`,
//! `X-Consumer-Username`, `X-Credential-Identifier` and `X-Anonymous-Consumer`; a client's
//! copies of these never reach it (the pipeline drops them before the access phase).

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::{Ctx, Flow, Request};
use crate::exchange::{Consumer, Credential, IdentityHeaders, Response, respond};
use crate::snapshot::{Consumers, Found};

pub static X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub static X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub static X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub static X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub static X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");
pub static X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

/// Headers only the gateway sets upstream: who authenticated, and their acl groups.
pub static IDENTITY_HEADERS: [&HeaderName; 6] = [
    &X_CONSUMER_ID,
    &X_CONSUMER_CUSTOM_ID,
    &X_CONSUMER_USERNAME,
    &X_CREDENTIAL_IDENTIFIER,
    &X_ANONYMOUS_CONSUMER,
    &X_CONSUMER_GROUPS,
];

/// What one authentication attempt found.
pub enum Attempt {
    Authenticated(Found),
    /// Not authenticated: Kong's answer for it (401 and its `WWW-Authenticate`).
    Failed(Response),
    /// The attempt needs the request body (a key in the body).
    NeedsBody {
        limit: usize,
    },
}

/// A plugin's `anonymous` setting, resolved when it is built.
pub fn anonymous(
    consumers: &Consumers,
    name: Option<&str>,
) -> Result<Option<Arc<Consumer>>, String> {
    match name {
        None => Ok(None),
        Some(n) => consumers
            .by_ref(n)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("anonymous consumer {n} is configured but doesn't exist")),
    }
}

/// Kong's access flow for an authentication plugin: preflights pass when it does not run
/// on them; with `anonymous` the OR flow, else the AND flow around `attempt`.
pub fn access(
    ctx: &mut Ctx<'_>,
    req: &mut Request<'_>,
    run_on_preflight: bool,
    anonymous: Option<&Arc<Consumer>>,
    attempt: impl FnOnce(&mut Ctx<'_>, &mut Request<'_>) -> Attempt,
) -> Flow {
    if !run_on_preflight && req.method() == Method::OPTIONS {
        return Flow::Continue;
    }
    if anonymous.is_some() && ctx.credential.is_some() {
        // Already authenticated by another plugin of the OR.
        return Flow::Continue;
    }
    match (attempt(ctx, req), anonymous) {
        (Attempt::Authenticated(found), _) => {
            set_consumer(ctx, &found.consumer, Some(&found.credential));
            Flow::Continue
        }
        (Attempt::NeedsBody { limit }, _) => Flow::ReadBody { limit },
        (Attempt::Failed(_), Some(anon)) => {
            set_consumer(ctx, anon, None);
            Flow::Continue
        }
        (Attempt::Failed(resp), None) => Flow::Respond(resp),
    }
}

/// Kong's `set_consumer`: records who authenticated. The identity headers follow from it
/// (`identity_headers`): the pipeline writes them into the request head before any later
/// hook sees it, or sends them with its own headers. Without a credential the consumer is
/// the anonymous one.
pub fn set_consumer(
    ctx: &mut Ctx<'_>,
    consumer: &Arc<Consumer>,
    credential: Option<&Arc<Credential>>,
) {
    match credential {
        Some(c) => ctx.authenticate(consumer.clone(), Some(c.clone())),
        None => ctx.authenticate_anonymous(consumer.clone()),
    }
    ctx.identity = match ctx.identity {
        IdentityHeaders::Written | IdentityHeaders::PendingOverWritten => {
            IdentityHeaders::PendingOverWritten
        }
        IdentityHeaders::None | IdentityHeaders::Pending => IdentityHeaders::Pending,
    };
}

/// The identity headers of the request's consumer, as Kong's `set_consumer` sets them
/// (`None`: the header is not sent).
pub fn identity_headers(ctx: &Ctx<'_>) -> [(&'static HeaderName, Option<HeaderValue>); 5] {
    let consumer = ctx.consumer.as_deref();
    let credential = ctx.credential.as_deref();
    [
        (&X_CONSUMER_ID, consumer.map(|c| c.id_header.clone())),
        (
            &X_CONSUMER_CUSTOM_ID,
            consumer.and_then(|c| c.custom_id_header.clone()),
        ),
        (
            &X_CONSUMER_USERNAME,
            consumer.and_then(|c| c.username_header.clone()),
        ),
        (
            &X_CREDENTIAL_IDENTIFIER,
            credential.and_then(|c| c.identifier_header.clone()),
        ),
        (
            &X_ANONYMOUS_CONSUMER,
            ctx.anonymous.then(|| HeaderValue::from_static("true")),
        ),
    ]
}

/// Writes pending identity headers into `headers`, clearing those an earlier
/// authentication of this request wrote and this one does not set. Inlined: it is asked before every request-side hook, and mostly has nothing to do.
#[inline(always)]
pub fn write_identity(ctx: &mut Ctx<'_>, headers: &mut HeaderMap) {
    match ctx.identity {
        IdentityHeaders::Pending => write_pending(ctx, headers, false),
        IdentityHeaders::PendingOverWritten => write_pending(ctx, headers, true),
        IdentityHeaders::None | IdentityHeaders::Written => {}
    }
}

fn write_pending(ctx: &mut Ctx<'_>, headers: &mut HeaderMap, earlier: bool) {
    for (name, value) in identity_headers(ctx) {
        match value {
            Some(v) => {
                headers.insert(name, v);
            }
            None if earlier => {
                headers.remove(name);
            }
            None => {}
        }
    }
    ctx.identity = IdentityHeaders::Written;
}

/// 401 with Kong's message and `WWW-Authenticate` challenge.
pub fn unauthorized(message: &str, challenge: &HeaderValue) -> Response {
    let mut r = respond::message(StatusCode::UNAUTHORIZED, message);
    r.headers_mut()
        .insert(http::header::WWW_AUTHENTICATE, challenge.clone());
    r
}

/// `Scheme` or `Scheme realm="realm"`, as the plugins' `realm` settings make it.
pub fn challenge(scheme: &str, realm: Option<&str>) -> HeaderValue {
    let text = match realm {
        Some(r) => format!("{scheme} realm=\"{r}\""),
        None => scheme.to_string(),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

/// Compares a presented secret with the configured one in time that does not depend on
/// where they differ.
pub fn secrets_match(presented: &[u8], configured: &[u8]) -> bool {
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(presented, configured).is_ok()
}

/// Drops a client's copies of the identity headers: only authentication sets them.
pub fn strip_identity(headers: &mut HeaderMap) {
    for name in IDENTITY_HEADERS {
        headers.remove(name);
    }
}
