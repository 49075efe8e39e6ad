//! Short-lived in-process caches for the hot path (`/resume/{id}`): sessions, users and resume
//! references. Like Django's `cached_db` session engine, the database stays the source of
//! truth: this process's own writes update or drop the cached entry at once, and what another
//! process changed is seen within the TTL (`CACHE_TTL_SECS`, default 5 s; 0 turns caching off).

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

/// A bounded cache whose entries live at most `ttl`.
#[derive(Clone)]
pub struct TtlCache<K, V> {
    inner: Option<moka::sync::Cache<K, V>>,
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
        let inner = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        Self { inner }
    }

    /// A cache that never keeps anything.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.as_ref()?.get(key)
    }

    pub fn insert(&self, key: K, value: V) {
        if let Some(cache) = &self.inner {
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
    fn a_zero_ttl_disables_the_cache() {
        let cache = TtlCache::new(Duration::ZERO, 10);
        cache.insert(1, "a");
        assert_eq!(cache.get(&1), None);
    }
}
