//! The memory strategy's store: one per process (kept in `snapshot::State`, so every
//! worker thread and every snapshot shares it), bounded by bytes, least recently used out
//! first. It stands for Kong's `lua_shared_dict`: entries expire after their storage TTL as
//! the shared dict's do, and a full store makes room by dropping the least recently used.
//!
//! Each plugin instance stores under its own namespace (`Namespace`), kept across reloads
//! by the instance's id and a hash of its config: a reload that leaves the config alone
//! finds its entries again, and a changed config starts empty while the old namespace's
//! entries are purged once no snapshot uses them.
//!
//! The lock is a `std::sync::Mutex` held for a map lookup or insert only (never across an
//! await, never while a body is copied): a hit clones an `Arc` and leaves.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

/// The whole store's size by default: bodies, headers and bookkeeping of every entry of
/// every instance (Kong's memory strategy is bounded by its shared dict's size; 128 MiB is
/// a common `lua_shared_dict` size for it).
pub const MAX_BYTES: usize = 128 << 20;

/// The largest entry stored: a larger response still streams to the client whole, and is
/// not cached. It keeps one response from evicting most of the store.
pub const MAX_ENTRY: usize = 8 << 20;

/// The store's key in `snapshot::State`.
pub const STORE_KEY: &str = "proxy-cache:memory";

/// What each entry costs beyond its body and headers (key, map slot, order slot, `Arc`).
const OVERHEAD: usize = 160;

/// A cached response (Kong's stored `res` object).
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    /// As they are answered on a hit (hop-by-hop headers and the plugin's own removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whole seconds on the process clock when stored (Kong's `timestamp`, from
    /// `ngx.time()`): ages are differences of whole seconds, as in Kong.
    pub stored: u64,
    /// The resource's TTL (Kong's `res.ttl`): `cache_ttl`, or from Cache-Control.
    pub ttl: f64,
    /// When the store drops it (the storage TTL); `None`: never (Kong's TTL 0).
    expires: Option<Instant>,
    size: usize,
}

impl Entry {
    /// An entry stored at `now`, to be dropped `storage_ttl` seconds later (0: never).
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        ttl: f64,
        storage_ttl: f64,
        now: Instant,
    ) -> Entry {
        let head: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 8)
            .sum();
        let expires =
            (storage_ttl > 0.0).then(|| now + Duration::from_secs_f64(storage_ttl.min(1e9)));
        Entry {
            status,
            size: body.len() + head + OVERHEAD,
            headers,
            body,
            stored: secs(now),
            ttl,
            expires,
        }
    }

    /// Whole seconds since it was stored (Kong's `time() - res.timestamp`).
    pub fn age(&self, now: Instant) -> u64 {
        secs(now).saturating_sub(self.stored)
    }

    /// Its cost in the store's budget.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Whole seconds since the process clock's start: a monotonic stand-in for `ngx.time()`.
pub fn secs(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    at.saturating_duration_since(start).as_secs()
}

/// An entry's place: its instance's namespace and Kong's cache key.
type Key = (u64, [u8; 32]);

struct Slot {
    entry: Arc<Entry>,
    /// Its position in the recency order.
    tick: u64,
}

#[derive(Default)]
struct Lru {
    map: HashMap<Key, Slot>,
    /// Least recently used first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

impl Lru {
    fn remove(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.tick);
        self.bytes -= slot.entry.size;
        Some(slot)
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

/// The process's cache.
pub struct Store {
    lru: Mutex<Lru>,
    max_bytes: usize,
    max_entry: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_limits(MAX_BYTES, MAX_ENTRY)
    }
}

impl Store {
    pub fn with_limits(max_bytes: usize, max_entry: usize) -> Store {
        Store {
            lru: Mutex::default(),
            max_bytes,
            // An entry larger than the store could never be kept.
            max_entry: max_entry.min(max_bytes),
        }
    }

    /// The largest entry stored, body and headers together.
    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // A panic while the lock was held leaves a consistent map (every change is one
        // step): the cache goes on.
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live entry under `key`, now the most recently used; an expired one is dropped.
    pub fn get(&self, ns: u64, key: &[u8; 32], now: Instant) -> Option<Arc<Entry>> {
        let k = (ns, *key);
        let mut lru = self.lock();
        let slot = lru.map.get(&k)?;
        if slot.entry.expires.is_some_and(|at| at <= now) {
            lru.remove(&k);
            return None;
        }
        let old = slot.tick;
        let tick = lru.next_tick();
        lru.order.remove(&old);
        lru.order.insert(tick, k);
        let slot = lru.map.get_mut(&k)?;
        slot.tick = tick;
        Some(slot.entry.clone())
    }

    /// Stores `entry` under `key`, replacing what was there and dropping the least
    /// recently used entries until it fits. `false`: larger than an entry may be.
    pub fn put(&self, ns: u64, key: &[u8; 32], entry: Entry) -> bool {
        if entry.size > self.max_entry {
            return false;
        }
        let k = (ns, *key);
        let size = entry.size;
        let mut lru = self.lock();
        lru.remove(&k);
        while lru.bytes + size > self.max_bytes {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(slot) = lru.map.remove(&oldest) {
                lru.bytes -= slot.entry.size;
            }
        }
        let tick = lru.next_tick();
        lru.order.insert(tick, k);
        lru.bytes += size;
        lru.map.insert(
            k,
            Slot {
                entry: Arc::new(entry),
                tick,
            },
        );
        true
    }

    /// Drops every entry of namespace `ns`. The store is walked in recency order a batch
    /// at a time, the lock taken per batch: a purge of a large store (after a reload) never
    /// holds up requests for the whole walk. Nothing adds to a namespace being purged (its
    /// last user is gone), so one pass finds all of its entries.
    pub fn purge(&self, ns: u64) {
        const BATCH: usize = 4096;
        let mut from = 0u64;
        loop {
            let mut lru = self.lock();
            let batch: Vec<(u64, Key)> = lru
                .order
                .range(from..)
                .take(BATCH)
                .map(|(t, k)| (*t, *k))
                .collect();
            let Some(&(last, _)) = batch.last() else {
                return;
            };
            for (_, k) in batch.iter().filter(|(_, k)| k.0 == ns) {
                lru.remove(k);
            }
            from = last + 1;
        }
    }

    /// Entries held, and their bytes (for status and tests).
    pub fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.map.len(), lru.bytes)
    }
}

/// One plugin instance's part of the store, kept across reloads (by the instance's id and
/// config hash) while a snapshot uses it; its entries are purged when the last snapshot
/// using it is gone.
pub struct Namespace {
    pub id: u64,
    store: OnceLock<Arc<Store>>,
}

impl Default for Namespace {
    fn default() -> Self {
        // Unique in the process: a namespace dropped and made again never finds the
        // entries of the one before.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Namespace {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            store: OnceLock::new(),
        }
    }
}

impl Namespace {
    /// The store this namespace's entries live in: `store`, unless it was tied to one
    /// already (by an earlier compile), which it keeps.
    pub fn attach(&self, store: &Arc<Store>) -> Arc<Store> {
        self.store.get_or_init(|| store.clone()).clone()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(store) = self.store.get() {
            store.purge(self.id);
        }
    }
}

/// A response body copied for the store while it streams on to the client, up to the
/// per-entry limit: past it the copy is dropped (the client still gets every piece) and
/// nothing is stored.
#[derive(Clone, Debug, Default)]
pub struct BodyCopy {
    body: BytesMut,
    over: bool,
}

impl BodyCopy {
    pub fn push(&mut self, data: &[u8], max: usize) {
        if self.over {
            return;
        }
        if self.body.len() + data.len() > max {
            self.over = true;
            self.body = BytesMut::new();
        } else {
            self.body.extend_from_slice(data);
        }
    }

    /// The whole body, unless it outgrew the limit.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.over).then(|| std::mem::take(&mut self.body).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static str, storage_ttl: f64, now: Instant) -> Entry {
        Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            storage_ttl,
            storage_ttl,
            now,
        )
    }

    #[test]
    fn get_put_and_expiry() {
        let store = Store::default();
        let now = Instant::now();
        assert!(store.get(1, &[1; 32], now).is_none());
        assert!(store.put(1, &[1; 32], entry("hello", 2.0, now)));
        assert_eq!(&store.get(1, &[1; 32], now).unwrap().body[..], b"hello");
        // Another namespace or key does not see it.
        assert!(store.get(2, &[1; 32], now).is_none());
        assert!(store.get(1, &[2; 32], now).is_none());
        // Past its storage TTL it is gone, and its bytes with it.
        assert!(
            store
                .get(1, &[1; 32], now + Duration::from_secs(2))
                .is_none()
        );
        assert_eq!(store.usage(), (0, 0));
        // A TTL of 0 never expires (the shared dict's rule).
        assert!(store.put(1, &[1; 32], entry("x", 0.0, now)));
        let far = now + Duration::from_secs(1_000_000);
        assert!(store.get(1, &[1; 32], far).is_some());
    }

    #[test]
    fn ages_are_whole_seconds() {
        let now = Instant::now();
        let e = entry("x", 10.0, now);
        assert_eq!(e.age(now), 0);
        assert_eq!(e.age(now + Duration::from_millis(2500)), 2);
        assert!(e.age(now + Duration::from_millis(900)) <= 1);
    }

    #[test]
    fn least_recently_used_goes_first() {
        let now = Instant::now();
        let one = entry("aaaa", 0.0, now).size();
        let store = Store::with_limits(3 * one, one);
        for k in 1..=3u8 {
            assert!(store.put(1, &[k; 32], entry("aaaa", 0.0, now)));
        }
        // Key 1 is used, so key 2 is now the least recently used.
        assert!(store.get(1, &[1; 32], now).is_some());
        assert!(store.put(1, &[4; 32], entry("aaaa", 0.0, now)));
        assert!(store.get(1, &[2; 32], now).is_none());
        for k in [1u8, 3, 4] {
            assert!(store.get(1, &[k; 32], now).is_some(), "{k}");
        }
        assert_eq!(store.usage(), (3, 3 * one));
        // Replacing a key does not count it twice.
        assert!(store.put(1, &[4; 32], entry("aaaa", 0.0, now)));
        assert_eq!(store.usage(), (3, 3 * one));
    }

    #[test]
    fn too_large_is_refused() {
        let now = Instant::now();
        let small = entry("ab", 0.0, now).size();
        let store = Store::with_limits(1 << 20, small);
        assert!(store.put(1, &[1; 32], entry("ab", 0.0, now)));
        assert!(!store.put(1, &[2; 32], entry("abc", 0.0, now)));
        assert_eq!(store.usage().0, 1);
    }

    #[test]
    fn purge_walks_the_whole_store_in_batches() {
        let now = Instant::now();
        let store = Store::default();
        for i in 0..10_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            store.put(u64::from(i % 2), &key, entry("x", 0.0, now));
        }
        store.purge(1);
        assert_eq!(store.usage().0, 5_000);
        store.purge(0);
        assert_eq!(store.usage(), (0, 0));
    }

    #[test]
    fn namespace_purges_its_entries_when_dropped() {
        let now = Instant::now();
        let store = Arc::new(Store::default());
        let a = Namespace::default();
        let b = Namespace::default();
        assert_ne!(a.id, b.id);
        let sa = a.attach(&store);
        // Attached once, a namespace keeps its store.
        assert!(Arc::ptr_eq(&a.attach(&Arc::new(Store::default())), &store));
        sa.put(a.id, &[1; 32], entry("a", 0.0, now));
        store.put(b.id, &[1; 32], entry("b", 0.0, now));
        b.attach(&store);
        drop(a);
        assert_eq!(store.usage().0, 1);
        assert!(store.get(b.id, &[1; 32], now).is_some());
        drop(b);
        assert_eq!(store.usage(), (0, 0));
    }
}
