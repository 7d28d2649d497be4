//! The exchange core: one request through the gateway, in the types every layer shares. The
//! protocol engines (HTTP/1 today; TLS, HTTP/2 and upgraded connections beside it) hand a
//! request to the pipeline in these types; plugins and Proxy-Wasm filters see it in these
//! types; the pipeline carries it between them. This module depends on nothing of theirs
//! (only `http` and `bytes`), so that each can depend on it.
//!
//! ```text
//! engine ─▶ Ctx + Request ─▶ pipeline ─▶ plugin hooks ─▶ Flow ─▶ pipeline ─▶ Response ─▶ engine
//! ```
//!
//! - `Ctx`: what is known of the request beyond its head: its id, the client and local
//!   addresses, TLS facts, the route (and its regex path's captures), service, consumer and
//!   credential, headers hooks want on the response, the Host a hook wants upstream, and
//!   typed extensions where plugins keep per-request state.
//! - `Request`: the request head as hooks may change it, with its body once a hook asked
//!   for it (`Flow::ReadBody`).
//! - `ResponseHead`: the response head as `response_head` hooks see and change it; its
//!   header map is made on first use.
//! - `Flow`: what a request-side hook decided: go on, answer now, wait for I/O, or read the
//!   body first.
//! - `Body`: a body the gateway makes (plugin answers, gateway errors), in data frames and
//!   trailers.

pub mod body;
mod id;
pub mod respond;

/// The gateway's own marks on an answer (stamped by the proxy on every response): a plugin
/// that stores answers leaves them out, since they describe one exchange.
pub mod marks {
    use http::HeaderName;

    pub static UPSTREAM_LATENCY: HeaderName =
        HeaderName::from_static("x-switchyard-upstream-latency");
    pub static PROXY_LATENCY: HeaderName = HeaderName::from_static("x-switchyard-proxy-latency");
}

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

pub use body::{Body, Frame};
pub use id::RequestId;

/// A response made by the gateway or a plugin.
pub type Response = http::Response<Body>;

/// A route's or a service's identity, as the snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: Arc<str>,
    /// The name when it has one, else the id.
    pub name: Arc<str>,
}

/// A consumer as authentication identifies it (compiled from the config's `consumers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its position among the snapshot's consumers: consumer-scoped plugins are found by it.
    pub index: usize,
    pub id: Arc<str>,
    pub username: Option<Arc<str>>,
    pub custom_id: Option<Arc<str>>,
    /// Its `acls` groups, in file order (the acl plugin and `X-Consumer-Groups`).
    pub acl_groups: Vec<Arc<str>>,
    /// The consumer groups it belongs to, by position among the snapshot's consumer groups.
    pub consumer_groups: Vec<usize>,
    /// `id`, `custom_id` and `username` as header values, made once per snapshot: they go
    /// upstream on every authenticated request.
    pub id_header: HeaderValue,
    pub custom_id_header: Option<HeaderValue>,
    pub username_header: Option<HeaderValue>,
}

/// The credential a consumer authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: Arc<str>,
    /// `keyauth_credentials`, `basicauth_credentials`, `jwt_secrets`, `hmacauth_credentials`.
    pub kind: &'static str,
    /// What `X-Credential-Identifier` carries: the credential id (key-auth), the username
    /// (basic-auth, hmac-auth) or the key (jwt).
    pub identifier: Arc<str>,
    /// `identifier` as a header value, made once per snapshot.
    pub identifier_header: Option<HeaderValue>,
}

/// What the TLS handshake told, on a TLS connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub sni: Option<Arc<str>>,
    pub alpn: Option<Arc<[u8]>>,
}

/// The identity headers of an authenticated request. They are written into the request
/// head only when something will look at it (a later hook); otherwise they go upstream with
/// the gateway's own headers, which costs no header-map insertion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityHeaders {
    /// Nobody authenticated (or none were ever set).
    #[default]
    None,
    /// Set by an authentication and not in the head yet.
    Pending,
    /// Set by an authentication after an earlier one's were written into the head, which
    /// may hold some this one does not set.
    PendingOverWritten,
    /// In the head.
    Written,
}

/// Per-request state that every hook of every plugin sees.
pub struct Ctx<'s> {
    pub request_id: RequestId,
    /// The client's address (Kong's `client_ip`).
    pub client: SocketAddr,
    /// The gateway's address the client connected to.
    pub local: SocketAddr,
    /// When the request's head was read.
    pub started: Instant,
    /// `None` on a plain connection.
    pub tls: Option<&'s Tls>,
    /// The client's Host header (or the authority of an absolute-form target), as sent.
    pub host: Option<HeaderValue>,
    /// Known once routing matched.
    pub route: Option<&'s Identity>,
    pub service: Option<&'s Identity>,
    /// Set by authentication (`authenticate`).
    pub consumer: Option<Arc<Consumer>>,
    pub credential: Option<Arc<Credential>>,
    /// Set with `authenticate_anonymous`: the consumer is the configured anonymous one.
    pub anonymous: bool,
    /// Where the identity headers authentication sets (X-Consumer-ID & co.) stand.
    pub identity: IdentityHeaders,
    /// Headers a request-side hook wants on the response, whoever answers it (rate-limit
    /// counters, ...). Added after the response-head phase.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Set by a hook to send the upstream this Host whatever the route's `preserve_host`
    /// says (Kong's `kong.service.request.set_header("host", ...)`).
    pub upstream_host: Option<HeaderValue>,
    /// The captures of the route's regex path, when it has groups and one took part (Kong's
    /// `router_matches.uri_captures`). Filled only for routes with plugins.
    pub uri_captures: Option<UriCaptures<'s>>,
    /// The request body's length as the client framed it: `Some(n)` with a Content-Length
    /// (`Some(0)` without a body), `None` for a chunked one. Kong's plugins read
    /// `Transfer-Encoding` for this, which the engine keeps out of the headers. Set before
    /// the access phase.
    pub body_length: Option<u64>,
    /// Who answered the request, for the response-side hooks (set before the
    /// response-head phase): an output cache stores only what the upstream answered.
    pub answered: Answered,
    /// Per-request state of plugins and filters, by type.
    pub extensions: http::Extensions,
}

impl<'s> Ctx<'s> {
    /// The context of a request whose head was read at `started`.
    pub fn new(
        request_id: RequestId,
        client: SocketAddr,
        local: SocketAddr,
        started: Instant,
    ) -> Self {
        Ctx {
            request_id,
            client,
            local,
            started,
            tls: None,
            host: None,
            route: None,
            service: None,
            consumer: None,
            credential: None,
            anonymous: false,
            identity: IdentityHeaders::None,
            response_headers: Vec::new(),
            upstream_host: None,
            uri_captures: None,
            body_length: Some(0),
            answered: Answered::Gateway,
            extensions: http::Extensions::new(),
        }
    }

    /// Records who the request authenticated as. The pipeline then resolves the plugins
    /// still to run with this consumer, as Kong does.
    pub fn authenticate(&mut self, consumer: Arc<Consumer>, credential: Option<Arc<Credential>>) {
        self.consumer = Some(consumer);
        self.credential = credential;
        self.anonymous = false;
    }

    /// Records that authentication failed and the request goes on as `consumer`, the
    /// plugin's configured anonymous consumer.
    pub fn authenticate_anonymous(&mut self, consumer: Arc<Consumer>) {
        self.consumer = Some(consumer);
        self.credential = None;
        self.anonymous = true;
    }

    /// The scheme the client used.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// What the route's regex path captured (Kong's `uri_captures`): `[0]` the whole match, then
/// each group by position, and the named groups by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UriCaptures<'s> {
    /// The text the regex matched, from the start of the path.
    pub text: Box<str>,
    /// Each group's span in `text` by position (0: the whole match); `None` for a group that
    /// took no part.
    pub groups: Vec<Option<(usize, usize)>>,
    /// The named groups and their positions.
    pub names: Vec<(&'s str, usize)>,
}

impl UriCaptures<'_> {
    /// The group at `index`, when it took part.
    pub fn get(&self, index: usize) -> Option<&str> {
        let (a, b) = (*self.groups.get(index)?)?;
        self.text.get(a..b)
    }

    /// The group called `name`, when it took part.
    pub fn named(&self, name: &str) -> Option<&str> {
        let &(_, i) = self.names.iter().find(|(n, _)| *n == name)?;
        self.get(i)
    }
}

/// An Ocelot route's placeholder values (path, query, then header placeholders; names
/// without braces), in the context's extensions of a route whose plugins read or change them
/// (RouteClaimsRequirement's `{name}` values, ChangeDownstreamPathTemplate). The forward step
/// fills the DownstreamPathTemplate from these when they are there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders(pub Vec<(Arc<str>, String)>);

impl Placeholders {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (replacing its value, or adding it).
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((Arc::from(name), value)),
        }
    }
}

/// In the context's extensions of an Ocelot aggregate's part: the part is sent with the
/// aggregate's request, so what identifies a request to an output cache (its URL) does not
/// identify the part's.
#[derive(Debug, Clone, Copy, Default)]
pub struct AggregatePart;

/// The request head as request-side hooks see and change it, and its body once read.
pub struct Request<'a> {
    head: &'a mut http::request::Parts,
    /// The head was handed out for changing (`head_mut`, `headers_mut`): the pipeline then
    /// checks what a hook may have added that must not travel on (hop-by-hop headers).
    changed: bool,
    /// The whole body, once a hook asked for it with `Flow::ReadBody`; what is here then
    /// is what goes upstream. `None` while the body still streams from the client.
    pub body: &'a mut Option<Bytes>,
    /// Set by a hook to send the upstream this path instead of the one routing made.
    pub upstream_path: &'a mut Option<String>,
}

impl<'a> Request<'a> {
    pub fn new(
        head: &'a mut http::request::Parts,
        body: &'a mut Option<Bytes>,
        upstream_path: &'a mut Option<String>,
    ) -> Self {
        Request {
            head,
            changed: false,
            body,
            upstream_path,
        }
    }
    pub fn head(&self) -> &http::request::Parts {
        self.head
    }
    pub fn head_mut(&mut self) -> &mut http::request::Parts {
        self.changed = true;
        self.head
    }
    /// The head was handed out for changing.
    pub fn changed(&self) -> bool {
        self.changed
    }
    pub fn method(&self) -> &Method {
        &self.head.method
    }
    /// The path as the client sent it (not normalised).
    pub fn path(&self) -> &str {
        self.head.uri.path()
    }
    pub fn query(&self) -> Option<&str> {
        self.head.uri.query()
    }
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.head_mut().headers
    }
    /// A header's value as text, when it has one that is.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Replaces the query string (`None` removes it); the path stays as sent.
    pub fn set_query(&mut self, query: Option<&str>) -> Result<(), http::Error> {
        let path = self.head.uri.path();
        let pq = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let head = self.head_mut();
        let mut parts = std::mem::take(&mut head.uri).into_parts();
        parts.path_and_query = Some(pq.parse()?);
        head.uri = http::Uri::from_parts(parts)?;
        Ok(())
    }
}

/// The response head as `response_head` hooks see it: status and version as they are, the
/// header map made when a hook first asks for it. An upstream head the engine kept as the
/// lines it came in (nothing needed a map when it was read) is turned into a map only then,
/// so hooks that look at the status alone, or decide from the context that there is nothing
/// to do, leave the engine its fast path of writing those lines back out.
pub struct ResponseHead<'a> {
    pub status: StatusCode,
    pub version: Version,
    headers: &'a mut HeaderMap,
    /// Fills `headers` from the engine's lines; taken on first use.
    fill: Option<&'a mut dyn FnMut(&mut HeaderMap)>,
}

impl<'a> ResponseHead<'a> {
    /// A head whose headers are in `headers`, or, with `fill`, are filled in on first use.
    pub fn new(
        status: StatusCode,
        version: Version,
        headers: &'a mut HeaderMap,
        fill: Option<&'a mut dyn FnMut(&mut HeaderMap)>,
    ) -> Self {
        ResponseHead {
            status,
            version,
            headers,
            fill,
        }
    }

    pub fn headers(&mut self) -> &HeaderMap {
        self.headers_mut()
    }

    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        if let Some(fill) = self.fill.take() {
            fill(self.headers);
        }
        self.headers
    }

    /// Some hook asked for the headers (or they were a map from the start).
    pub fn has_map(&self) -> bool {
        self.fill.is_none()
    }
}

/// A request-side hook's decision.
pub enum Flow {
    Continue,
    /// Answer the client with this; later hooks of the phase and the upstream are skipped.
    Respond(Response),
    /// The decision needs I/O: the pipeline awaits the future, then calls its continuation
    /// with the context and the request, which it may change as any hook does.
    Wait(Pending),
    /// The hook needs the request body: the pipeline reads it whole (a larger body gets
    /// 413), puts it in `Request::body`, and calls the same hook again.
    ReadBody {
        limit: usize,
    },
}

/// What a hook waits for, and what it does once it has it.
pub struct Pending(Pin<Box<dyn Future<Output = Resume> + Send>>);

/// The rest of a hook after its I/O.
pub type Resume =
    Box<dyn for<'c, 's, 'r> FnOnce(&'c mut Ctx<'s>, &'c mut Request<'r>) -> Flow + Send>;

impl Flow {
    /// Waits for `io`, then runs `then` with its output, the context and the request.
    pub fn wait<T, F, C>(io: F, then: C) -> Flow
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
        C: for<'c, 's, 'r> FnOnce(T, &'c mut Ctx<'s>, &'c mut Request<'r>) -> Flow + Send + 'static,
    {
        Flow::Wait(Pending(Box::pin(async move {
            let out = io.await;
            Box::new(move |ctx: &mut Ctx<'_>, req: &mut Request<'_>| then(out, ctx, req)) as Resume
        })))
    }
}

impl Pending {
    pub async fn resolve(self) -> Resume {
        self.0.await
    }
}

/// What a body hook decided about the chunk it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFlow {
    /// Pass the chunk (as the hook left it) on.
    Continue,
    /// Hold this chunk and the ones after it: the hook is called once more with the whole
    /// body and `end` set. Past `limit` bytes the exchange fails (a response answers 502)
    /// rather than pass a body the hook did not see. The response head waits for it, so
    /// that the hook may still change the length.
    Buffer { limit: usize },
    /// Stop here: the client is answered `status` with Kong's `{"message": message}` and
    /// the upstream request is abandoned (request-size-limiting on a chunked body). Only
    /// request bodies can be answered so; on a response body, whose head may be out
    /// already, it fails the exchange as a buffer overrun does.
    Reject {
        status: http::StatusCode,
        message: &'static str,
    },
}

/// A piece of a body as body hooks see it.
pub struct Chunk {
    pub data: Bytes,
    /// The last piece (with the whole body, after `BodyFlow::Buffer`).
    pub end: bool,
}

/// What the log phase knows of a finished exchange.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub method: Method,
    /// The path as the client sent it.
    pub path: String,
    pub status: http::StatusCode,
    /// Response body bytes written to the client.
    pub bytes_sent: u64,
    /// Until the upstream's response head, when the upstream was contacted.
    pub upstream_latency: Option<std::time::Duration>,
    /// The whole exchange, until the last byte was written (or the client went away).
    pub latency: std::time::Duration,
    /// Who answered.
    pub source: Answered,
}

/// Who answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Upstream,
    Plugin,
    Gateway,
}
