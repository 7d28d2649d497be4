//! Ocelot output caching (`FileCacheOptions` / `CacheOptions`), as Ocelot 25.0's
//! `OutputCacheMiddleware` does it, on the process's one response store (the one Kong's
//! proxy-cache uses: `proxy_cache::Store`).
//!
//! ```text
//! access (after every other Ocelot option, as the middleware sits just before the requester):
//!   key = digest(route, "<method>-<url>-<Header's value>[-<body>]") ─▶ store
//!     ─hit─▶ the stored response (the upstream is not contacted; response hooks still run)
//!     ─miss─▶ on to the upstream
//! response head, body (before any other hook changes them): the upstream's response is
//!   copied and stored for TtlSeconds under the route's Region
//! ```
//!
//! Two plugins share the work because hooks run in one PRIORITY order in every phase: the
//! lookup must come after authentication and rate limiting (`OutputCache`, PRIORITY 100),
//! and the copy must see the upstream's response before header transforms change it
//! (`OutputCacheStore`, the highest PRIORITY), as Ocelot caches the downstream response
//! before its own transforms and applies them again to a cached answer.
//!
//! Like Ocelot, every method and every status the upstream answers is cached (not the
//! gateway's own errors); the key is Ocelot's: the downstream method (DownstreamHttpMethod
//! when set), the URL the client asked for, the value of `Header` (`OC-Cache-Control` by
//! default), and with EnableContentHashing the request body. switchyard adds the route's id,
//! so that two routes never answer each other's requests from the cache. Entries of a
//! region live in a namespace of their own in the store, which the admin API's
//! `DELETE /outputcache/{region}` clears; they are kept across reloads, as Ocelot's cache
//! outlives a configuration change.

use std::hash::Hasher;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::proxy_cache::{BodyCopy, Entry, STORE_KEY, Store, stored_headers};
use super::{BodyFlow, BuildCx, Chunk, Ctx, Flow, Phases, Plugin, PluginSpec, Request};
use super::{ResponseHead, Validate};
use crate::exchange::marks::{PROXY_LATENCY, UPSTREAM_LATENCY};
use crate::exchange::{AggregatePart, Answered, respond};
use crate::snapshot::State;

/// The largest request body EnableContentHashing reads (past it the client gets 413).
const MAX_HASHED_BODY: usize = 8 << 20;

/// One route's caching, as the Ocelot loader merged it (`model::OcelotCache`), with the
/// route's DownstreamHttpMethod (part of the key).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub ttl_seconds: u64,
    pub region: String,
    pub header: String,
    pub enable_content_hashing: bool,
    pub method: Option<String>,
}

impl Validate for Config {}

/// The store's namespace of an Ocelot cache region: the same in every snapshot (entries
/// outlive reloads, as Ocelot's do), apart from proxy-cache's namespaces (numbered from 1).
pub fn region_namespace(region: &str) -> u64 {
    let mut h = crate::fnv::Fnv::default();
    h.write(b"ocelot-cache-region\0");
    h.write(region.as_bytes());
    h.finish() | 1 << 63
}

/// `DELETE /outputcache/{region}`: drops every entry of `region` (nothing when no snapshot
/// has a cache).
pub fn clear_region(state: &State, region: &str) {
    if let Some(store) = state.get::<Store>(STORE_KEY) {
        store.purge(region_namespace(region));
    }
}

/// The lookup: `FileCacheOptions` (PRIORITY 100, access).
pub struct OutputCache;

impl PluginSpec for OutputCache {
    const NAME: &'static str = "ocelot-cache";
    const PRIORITY: i32 = 100;
    type Config = Config;

    fn build(config: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let store = cx.state.kept::<Store>(STORE_KEY);
        Ok(Some(Arc::new(Lookup {
            ns: region_namespace(&config.region),
            route: cx.route.map(|r| r.id.to_string()).unwrap_or_default(),
            config,
            store,
        })))
    }
}

/// The copy: `FileCacheOptions` (highest PRIORITY, response head and body).
pub struct OutputCacheStore;

impl PluginSpec for OutputCacheStore {
    const NAME: &'static str = "ocelot-cache-store";
    const PRIORITY: i32 = i32::MAX;
    type Config = Config;

    fn build(_: Config, cx: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let store = cx.state.kept::<Store>(STORE_KEY);
        Ok(Some(Arc::new(Copier { store })))
    }
}

struct Lookup {
    config: Config,
    ns: u64,
    route: String,
    store: Arc<Store>,
}

/// A miss: what the copier stores the response under (in `Ctx::extensions`).
#[derive(Clone)]
struct Miss {
    ns: u64,
    key: [u8; 32],
    ttl: f64,
    head: bool,
}

/// The response being copied.
#[derive(Clone)]
struct Copying {
    miss: Miss,
    status: StatusCode,
    headers: HeaderMap,
    body: BodyCopy,
}

impl Lookup {
    /// `DefaultCacheKeyGenerator`: `<method>-<url>-<header value>[-<body>]`, where the URL
    /// is the one the client asked for (`DownstreamRequest.OriginalString`), digested with
    /// the route's id.
    fn key(&self, ctx: &Ctx<'_>, req: &Request<'_>) -> [u8; 32] {
        let method = self
            .config
            .method
            .as_deref()
            .unwrap_or(req.method().as_str());
        let host = ctx
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let mut text = format!("{method}-{}://{host}{}", ctx.scheme(), req.path());
        if let Some(q) = req.query() {
            text.push('?');
            text.push_str(q);
        }
        // HttpHeaders.TryGetValues: every value of the header, joined with nothing.
        text.push('-');
        for v in req.headers().get_all(self.config.header.as_str()) {
            text.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        let mut ctx_digest = ring::digest::Context::new(&ring::digest::SHA256);
        ctx_digest.update(self.route.as_bytes());
        ctx_digest.update(b"\n");
        ctx_digest.update(text.as_bytes());
        if self.config.enable_content_hashing
            && let Some(body) = req.body.as_ref()
        {
            ctx_digest.update(b"-");
            ctx_digest.update(body);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx_digest.finish().as_ref());
        key
    }
}

impl Plugin for Lookup {
    fn name(&self) -> &str {
        OutputCache::NAME
    }

    fn priority(&self) -> i32 {
        OutputCache::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        if ctx.extensions.get::<AggregatePart>().is_some() {
            // A part's URL is the aggregate's: Ocelot's key would mix parts up.
            return Flow::Continue;
        }
        // The body is part of the key only when there is one (`HasContent`).
        if self.config.enable_content_hashing && ctx.body_length != Some(0) && req.body.is_none() {
            return Flow::ReadBody {
                limit: MAX_HASHED_BODY,
            };
        }
        let key = self.key(ctx, req);
        let now = Instant::now();
        if let Some(entry) = self.store.get(self.ns, &key, now) {
            let mut resp = respond::bytes(entry.status, entry.body.clone());
            *resp.headers_mut() = entry.headers.clone();
            return Flow::Respond(resp);
        }
        ctx.extensions.insert(Miss {
            ns: self.ns,
            key,
            ttl: self.config.ttl_seconds as f64,
            head: req.method() == http::Method::HEAD,
        });
        Flow::Continue
    }
}

struct Copier {
    store: Arc<Store>,
}

impl Copier {
    fn put(&self, c: Copying, body: Bytes) {
        let entry = Entry::new(
            c.status,
            c.headers,
            body,
            c.miss.ttl,
            c.miss.ttl,
            Instant::now(),
        );
        if !self.store.put(c.miss.ns, &c.miss.key, entry) {
            tracing::debug!("ocelot cache: response over the entry limit, not stored");
        }
    }
}

impl Plugin for Copier {
    fn name(&self) -> &str {
        OutputCacheStore::NAME
    }

    fn priority(&self) -> i32 {
        OutputCacheStore::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE_HEAD | Phases::RESPONSE_BODY
    }

    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        let Some(miss) = ctx.extensions.remove::<Miss>() else {
            return;
        };
        // Ocelot stores nothing after a pipeline error (the gateway's 502, 504, ...).
        if ctx.answered != Answered::Upstream {
            return;
        }
        let status = resp.status;
        let mut headers = stored_headers(resp.headers());
        // The gateway's marks on this exchange are not the cached answer's.
        for name in [&http::header::VIA, &UPSTREAM_LATENCY, &PROXY_LATENCY] {
            headers.remove(name);
        }
        let copying = Copying {
            status,
            headers,
            body: BodyCopy::default(),
            miss,
        };
        let bodyless = copying.miss.head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if bodyless {
            self.put(copying, Bytes::new());
        } else {
            ctx.extensions.insert(copying);
        }
    }

    fn response_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        let Some(c) = ctx.extensions.get_mut::<Copying>() else {
            return BodyFlow::Continue;
        };
        c.body.push(&chunk.data, self.store.max_entry());
        if chunk.end
            && let Some(mut c) = ctx.extensions.remove::<Copying>()
            && let Some(body) = c.body.take()
        {
            self.put(c, body);
        }
        BodyFlow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_namespaces_are_stable_and_apart_from_proxy_caches() {
        assert_eq!(region_namespace("europe"), region_namespace("europe"));
        assert_ne!(region_namespace("europe"), region_namespace("asia"));
        assert!(region_namespace("europe") >= 1 << 63);
    }
}
