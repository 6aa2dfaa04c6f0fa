//! A bounded cache of entries that expire: the answers of the shared resolver, and the parsed
//! records mail-auth keeps (SPF, DKIM keys, DMARC policies).
//!
//! Sharded so concurrent sessions rarely wait on one lock. A full shard first drops what has
//! expired, then the eighth of its entries closest to expiry: cheap, and a DNS cache loses
//! little by forgetting what it would have forgotten soon anyway.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

const SHARDS: usize = 8;

type Shard<K, V> = HashMap<K, (V, Instant)>;

/// A bounded map whose entries disappear at their expiry time.
pub(crate) struct TtlCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A cache of about `capacity` entries (0 caches nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard only means a panic elsewhere mid-update of a plain map; the map
        // itself is still consistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of `key` and when it expires, unless absent or expired.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some((value, expires)) if *expires > Instant::now() => Some((value.clone(), *expires)),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `expires` (nothing when that is not in the future).
    pub(crate) fn insert(&self, key: K, value: V, expires: Instant) {
        let now = Instant::now();
        if self.per_shard == 0 || expires <= now {
            return;
        }
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, (_, e)| *e > now);
            if shard.len() >= self.per_shard {
                let mut expiries: Vec<Instant> = shard.values().map(|(_, e)| *e).collect();
                let cut = (expiries.len() / 8).max(1) - 1;
                let (_, threshold, _) = expiries.select_nth_unstable(cut);
                let threshold = *threshold;
                shard.retain(|_, (_, e)| *e > threshold);
            }
        }
        shard.insert(key, (value, expires));
    }

    /// Entries held now, expired ones included until they are noticed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS)
            .map(|i| {
                self.shards[i]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn entries_expire() {
        let cache: TtlCache<String, u32> = TtlCache::new(100);
        cache.insert("a".into(), 1, Instant::now() + Duration::from_millis(20));
        assert_eq!(cache.get("a").map(|(v, _)| v), Some(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.len(), 0, "an expired entry is dropped when noticed");
    }

    #[tokio::test]
    async fn the_size_stays_bounded_and_the_soonest_to_expire_go_first() {
        let cache: TtlCache<u32, u32> = TtlCache::new(64);
        let now = Instant::now();
        cache.insert(0, 0, now + Duration::from_secs(100_000));
        for i in 1..10_000u32 {
            cache.insert(i, i, now + Duration::from_secs(u64::from(i)));
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert!(cache.get(&9_999).is_some(), "the newest entry stays");
        assert!(cache.get(&0).is_some(), "the longest-lived entry stays");
    }

    #[tokio::test]
    async fn nothing_is_kept_without_capacity_or_lifetime() {
        let cache: TtlCache<u32, u32> = TtlCache::new(0);
        cache.insert(1, 1, Instant::now() + Duration::from_secs(5));
        assert_eq!(cache.get(&1), None);
        let cache: TtlCache<u32, u32> = TtlCache::new(10);
        cache.insert(1, 1, Instant::now());
        assert_eq!(cache.get(&1), None);
    }
}
