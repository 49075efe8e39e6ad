//! Short-lived in-process caches for the hot path (`/resume/{id}`): sessions, users and resume
//! references. Like Django's `cached_db` session engine, the database stays the source of
//! truth: this process's own writes update or drop the cached entry at once, and what another
//! process changed is seen within the TTL (`CACHE_TTL_SECS`, default 5 s; 0 turns caching off).
//! On PostgreSQL, the changes that end sessions also reach every process at once (see
//! [`crate::db::invalidation`]); while that channel is down, the caches' [`CacheGate`] is shut
//! and every look-up goes to the database.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether the caches of one database may be trusted; shared by all of them, open by default.
#[derive(Debug, Clone)]
pub struct CacheGate(Arc<AtomicBool>);

impl Default for CacheGate {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl CacheGate {
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub fn set_open(&self, open: bool) {
        self.0.store(open, Ordering::Release);
    }
}

/// A bounded cache whose entries live at most `ttl`, answering only while its gate is open.
#[derive(Clone)]
pub struct TtlCache<K, V> {
    inner: Option<moka::sync::Cache<K, V>>,
    gate: CacheGate,
}

impl<K, V> fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlCache")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries, each kept at most `ttl`; disabled when `ttl` is 0.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self::gated(ttl, capacity, CacheGate::default())
    }

    /// [`TtlCache::new`], answering only while `gate` is open.
    pub fn gated(ttl: Duration, capacity: u64, gate: CacheGate) -> Self {
        let inner = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        Self { inner, gate }
    }

    /// A cache that never keeps anything.
    pub fn disabled() -> Self {
        Self {
            inner: None,
            gate: CacheGate::default(),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if !self.gate.is_open() {
            return None;
        }
        self.inner.as_ref()?.get(key)
    }

    pub fn insert(&self, key: K, value: V) {
        if let Some(cache) = &self.inner
            && self.gate.is_open()
        {
            cache.insert(key, value);
        }
    }

    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
    }

    pub fn invalidate(&self, key: &K) {
        if let Some(cache) = &self.inner {
            cache.invalidate(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_dropped() {
        let cache = TtlCache::new(Duration::from_millis(50), 10);
        cache.insert(1, "a");
        assert_eq!(cache.get(&1), Some("a"));
        cache.invalidate(&1);
        assert_eq!(cache.get(&1), None);
        cache.insert(2, "b");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(cache.get(&2), None);
    }

    #[test]
    fn a_shut_gate_keeps_nothing_and_answers_nothing() {
        let gate = CacheGate::default();
        let cache = TtlCache::gated(Duration::from_secs(60), 10, gate.clone());
        cache.insert(1, "a");
        gate.set_open(false);
        assert_eq!(cache.get(&1), None);
        cache.insert(2, "b");
        gate.set_open(true);
        assert_eq!(cache.get(&2), None);
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let cache = TtlCache::new(Duration::ZERO, 10);
        cache.insert(1, "a");
        assert_eq!(cache.get(&1), None);
    }
}
