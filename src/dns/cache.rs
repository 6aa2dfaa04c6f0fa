//! A bounded cache of entries that expire: the answers of the shared resolver.
//!
//! Bounded in entries and in bytes: the names a message makes the gateway look up (DKIM
//! selectors, SPF includes, link domains) are the sender's to choose, and one TXT answer can
//! weigh 64 KiB. Sharded so concurrent sessions rarely wait on one lock. A full shard first
//! drops what has expired, then the eighth of its entries least recently used, until it is
//! under both bounds: whoever fills the cache with answers of long TTLs that nobody reads
//! again sees them go first, not the short-lived answers (DNS lists, negative answers) that
//! every connection reads.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

const SHARDS: usize = 8;

/// One cached value: when it expires, what it weighs, when it was last read.
struct Entry<V> {
    value: V,
    expires: Instant,
    weight: usize,
    used: u64,
}

struct Shard<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Bytes held (the entries' weights).
    weight: usize,
    /// Ticks at every read and write: the entries' `used` order them.
    clock: u64,
}

impl<K: Hash + Eq, V> Shard<K, V> {
    fn tick(&mut self) -> u64 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry<V>) -> bool) {
        let mut weight = self.weight;
        self.map.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                weight = weight.saturating_sub(e.weight);
            }
            kept
        });
        self.weight = weight;
    }

    fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(e) = self.map.remove(key) {
            self.weight = self.weight.saturating_sub(e.weight);
        }
    }
}

/// A bounded map whose entries disappear at their expiry time.
pub(crate) struct TtlCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    per_shard: usize,
    bytes_per_shard: usize,
    hasher: RandomState,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("per_shard", &self.per_shard)
            .field("bytes_per_shard", &self.bytes_per_shard)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A cache of about `capacity` entries weighing about `bytes` together (either 0 caches
    /// nothing).
    pub(crate) fn new(capacity: usize, bytes: usize) -> Self {
        TtlCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        weight: 0,
                        clock: 0,
                    })
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS),
            bytes_per_shard: bytes / SHARDS,
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
        let tick = shard.tick();
        match shard.map.get_mut(key) {
            Some(e) if e.expires > Instant::now() => {
                e.used = tick;
                Some((e.value.clone(), e.expires))
            }
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value`, which weighs `weight` bytes, until `expires` (nothing when that is
    /// not in the future, or when it alone would fill a shard's byte budget).
    pub(crate) fn insert(&self, key: K, value: V, expires: Instant, weight: usize) {
        let now = Instant::now();
        if self.per_shard == 0 || expires <= now || weight > self.bytes_per_shard / 4 {
            return;
        }
        let mut shard = self.shard(&key);
        shard.remove(&key);
        let over = |s: &Shard<K, V>| {
            s.map.len() >= self.per_shard || s.weight + weight > self.bytes_per_shard
        };
        if over(&shard) {
            shard.retain(|e| e.expires > now);
        }
        while over(&shard) && !shard.map.is_empty() {
            let mut used: Vec<u64> = shard.map.values().map(|e| e.used).collect();
            let cut = (used.len() / 8).max(1) - 1;
            let (_, threshold, _) = used.select_nth_unstable(cut);
            let threshold = *threshold;
            shard.retain(|e| e.used > threshold);
        }
        let used = shard.tick();
        shard.weight += weight;
        shard.map.insert(
            key,
            Entry {
                value,
                expires,
                weight,
                used,
            },
        );
    }

    /// Entries held now, expired ones included until they are noticed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    /// Bytes held now (the entries' weights).
    #[cfg(test)]
    pub(crate) fn weight(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).weight)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn entries_expire() {
        let cache: TtlCache<String, u32> = TtlCache::new(100, MIB);
        cache.insert(
            "a".into(),
            1,
            Instant::now() + Duration::from_millis(20),
            10,
        );
        assert_eq!(cache.get("a").map(|(v, _)| v), Some(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.len(), 0, "an expired entry is dropped when noticed");
        assert_eq!(cache.weight(), 0);
    }

    #[tokio::test]
    async fn the_size_stays_bounded_and_what_is_read_stays() {
        let cache: TtlCache<u32, u32> = TtlCache::new(64, MIB);
        let now = Instant::now();
        cache.insert(0, 0, now + Duration::from_secs(60), 10);
        for i in 1..10_000u32 {
            cache.insert(i, i, now + Duration::from_secs(86_400), 10);
            // Read at every connection, like a DNS list's answer for a busy client.
            assert!(cache.get(&0).is_some(), "evicted after {i} inserts");
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert!(cache.get(&9_999).is_some(), "the newest entry stays");
        assert!(cache.get(&1).is_none(), "an old entry nobody reads goes");
    }

    /// Regression (review): the cache was bounded in entries only, and the names a message
    /// makes the gateway look up are the sender's to choose: 10,000 TXT answers of up to
    /// 64 KiB each, kept a day, were most of a gigabyte.
    #[tokio::test]
    async fn the_bytes_held_stay_within_the_budget() {
        let budget = 8 * 64 * 1024;
        let cache: TtlCache<u32, u32> = TtlCache::new(10_000, budget);
        let later = Instant::now() + Duration::from_secs(86_400);
        for i in 0..5_000u32 {
            cache.insert(i, i, later, 10 * 1024);
            assert!(cache.weight() <= budget, "{} bytes", cache.weight());
        }
        assert!(
            cache.len() >= 8,
            "the cache still holds answers: {}",
            cache.len()
        );
        // One answer that alone would fill a shard's share is not kept.
        cache.insert(u32::MAX, 0, later, 60 * 1024);
        assert!(cache.get(&u32::MAX).is_none());
    }

    #[tokio::test]
    async fn replacing_an_entry_keeps_the_weight_right() {
        let cache: TtlCache<u32, u32> = TtlCache::new(10, MIB);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert(1, 1, later, 100);
        cache.insert(1, 2, later, 300);
        assert_eq!(cache.weight(), 300);
        assert_eq!(cache.get(&1).map(|(v, _)| v), Some(2));
    }

    #[tokio::test]
    async fn nothing_is_kept_without_capacity_or_lifetime() {
        let cache: TtlCache<u32, u32> = TtlCache::new(0, MIB);
        cache.insert(1, 1, Instant::now() + Duration::from_secs(5), 1);
        assert_eq!(cache.get(&1), None);
        let cache: TtlCache<u32, u32> = TtlCache::new(10, 0);
        cache.insert(1, 1, Instant::now() + Duration::from_secs(5), 1);
        assert_eq!(cache.get(&1), None);
        let cache: TtlCache<u32, u32> = TtlCache::new(10, MIB);
        cache.insert(1, 1, Instant::now(), 1);
        assert_eq!(cache.get(&1), None);
    }
}
