//! Where the classifier's model lives: the key layout in the state backend, and the two
//! sources of token counts (the backend, or a seed held in memory by `scan`).
//!
//! Keys (after `state.key_prefix`):
//! - `bayes:t:<hash, 16 hex>`: one counter per token, both classes packed into it
//!   (see [`Counts::pack`]); `bayes:totals` the same for the learned messages;
//! - `bayes:generation`: a counter bumped by every learn, forget or move;
//! - `bayes:ledger:<00..ff>`: 256 maps sharded by the first byte of the body digest, field
//!   = digest in hex, value = [`Entry`] (class and the exact token hashes counted);
//! - `bayes:model`: map with `lr` (the published [`LrModel`]) and `version`, and
//!   `seeding` (the [`Seed::id`](super::Seed::id) of a seed being imported into an empty
//!   store) until that import is complete;
//! - `bayes:lock`: held (`SET NX` with an expiry) by the node that retrains.
//!
//! Counters never expire; keys a cluster shards freely (no script touches two slots).

use super::bayes::Counts;
use super::ftrl::LrModel;
use super::ledger::{hex, Entry};
use super::ClassifyError;
use crate::state::{State, Unavailable};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Counter of learned messages.
pub const TOTALS: &str = "bayes:totals";
/// Counter of autolearned ledger entries: autolearn stops past `classifier.autolearn_max`
/// (and a margin) until a retraining forgets the oldest, and sets it to the ledger's
/// count.
pub const AUTOLEARNED: &str = "bayes:autolearned";
/// Counter of ledger changes.
pub const GENERATION: &str = "bayes:generation";
/// Map of the published logistic model.
pub const MODEL: &str = "bayes:model";
/// Field of [`MODEL`] naming the seed an unfinished import into an empty store was
/// filling it from.
pub const SEEDING: &str = "seeding";
/// Lock of the retraining node.
pub const LOCK: &str = "bayes:lock";
/// Most tokens looked up per message (p99 of the corpus is 875).
pub const MAX_LOOKUPS: usize = 2000;

/// The counter key of a token.
pub fn token_key(hash: u64) -> String {
    // Written by hand: one key per token of every classified message.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(TOKEN_KEY_PREFIX.len() + 16);
    key.push_str(TOKEN_KEY_PREFIX);
    key.extend(
        (0..16)
            .rev()
            .map(|i| char::from(HEX[((hash >> (i * 4)) & 0xf) as usize])),
    );
    key
}

/// What every token counter's key starts with.
const TOKEN_KEY_PREFIX: &str = "bayes:t:";

/// The ledger shard of a digest.
pub fn ledger_shard(digest: &[u8; 32]) -> String {
    format!("bayes:ledger:{:02x}", digest[0])
}

/// Every ledger shard.
pub fn ledger_shards() -> impl Iterator<Item = String> {
    (0..=255u8).map(|b| format!("bayes:ledger:{b:02x}"))
}

/// Token counts held in memory (a seed read by `scan` when the store has none).
#[derive(Debug, Default)]
pub struct Memory {
    /// Counts per token hash.
    pub counts: HashMap<u64, Counts, super::features::HashBuild>,
    /// Learned messages per class.
    pub totals: Counts,
}

/// Where token counts come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The state backend: the gateway, `learn`, and `scan` over a learned store.
    State(State),
    /// Counts in memory, read-only.
    Memory(Arc<Memory>),
}

impl Source {
    /// The learned totals and the counts of `hashes`, in one backend round trip.
    pub async fn counts(&self, hashes: &[u64]) -> Result<(Counts, Vec<Counts>), Unavailable> {
        match self {
            Source::Memory(m) => Ok((
                m.totals,
                hashes
                    .iter()
                    .map(|h| m.counts.get(h).copied().unwrap_or_default())
                    .collect(),
            )),
            Source::State(state) => {
                let keys: Vec<String> = std::iter::once(TOTALS.to_string())
                    .chain(hashes.iter().map(|&h| token_key(h)))
                    .collect();
                let values = state.get_counters(&keys).await?;
                let mut counts = values.into_iter().map(Counts::unpack);
                let totals = counts.next().unwrap_or_default();
                Ok((totals, counts.collect()))
            }
        }
    }

    /// The state backend, for operations that write.
    pub fn state(&self) -> Result<&State, ClassifyError> {
        match self {
            Source::State(s) => Ok(s),
            Source::Memory(_) => Err(ClassifyError::ReadOnly),
        }
    }
}

/// The ledger entry of a digest, with its stored bytes (for a later compare-and-swap).
pub async fn ledger_get(
    state: &State,
    digest: &[u8; 32],
) -> Result<Option<(Vec<u8>, Entry)>, ClassifyError> {
    match state.map_get(&ledger_shard(digest), &hex(digest)).await? {
        Some(bytes) => {
            let entry = Entry::from_bytes(&bytes)?;
            Ok(Some((bytes, entry)))
        }
        None => Ok(None),
    }
}

/// Every ledger entry, sorted by digest (the canonical training order).
pub async fn ledger_all(state: &State) -> Result<Vec<(String, Entry)>, ClassifyError> {
    let shards: Vec<String> = ledger_shards().collect();
    let mut out = Vec::new();
    let mut unreadable: Vec<(String, ClassifyError)> = Vec::new();
    for chunk in shards.chunks(16) {
        let reads = chunk.iter().map(|shard| state.map_entries(shard));
        for entries in futures::future::join_all(reads).await {
            for (digest, bytes) in entries? {
                match Entry::from_bytes(&bytes) {
                    Ok(entry) => out.push((digest, entry)),
                    Err(e) => unreadable.push((digest, e)),
                }
            }
        }
    }
    // One damaged entry (a foreign writer, a half-restored dump) must not stop every
    // retraining of the tier: it is left out, and said once per read.
    if let Some((digest, error)) = unreadable.first() {
        tracing::warn!(
            skipped = unreadable.len(),
            first = %digest,
            %error,
            "classifier ledger entries unreadable, left out"
        );
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The key that picks which tokens of a long message are looked up (see
/// [`super::classifier`]'s `pick_lookups`), shared by every gateway of the store.
pub const LOOKUP_KEY: &str = "bayes:lookup";

/// The store's lookup key, made (at random) by the first gateway that asks. It carries an
/// expiry of ten years only because the state backend's `set_nx` asks for one: a key
/// evicted or expired is made anew, which changes no more than which tokens of a message
/// with more than [`MAX_LOOKUPS`] are read.
pub async fn lookup_key(state: &State) -> Result<[u8; 16], ClassifyError> {
    const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);
    if let Some(key) = state.get(LOOKUP_KEY).await?.and_then(|k| k.try_into().ok()) {
        return Ok(key);
    }
    let fresh: [u8; 16] = rand::random();
    state.set_nx(LOOKUP_KEY, &fresh, TEN_YEARS).await?;
    // Another gateway may have made it first: every gateway reads the one that stands.
    match state.get(LOOKUP_KEY).await?.and_then(|k| k.try_into().ok()) {
        Some(key) => Ok(key),
        None => Ok(fresh),
    }
}

/// The published model's version, if one is published.
pub async fn published_version(state: &State) -> Result<Option<String>, ClassifyError> {
    let raw = state.map_get(MODEL, "version").await?;
    Ok(raw.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The published model, if one is published.
pub async fn published_model(state: &State) -> Result<Option<LrModel>, ClassifyError> {
    match state.map_get(MODEL, "lr").await? {
        Some(bytes) => Ok(Some(LrModel::from_bytes(&bytes)?)),
        None => Ok(None),
    }
}

/// Publishes a model: the weights first, then the version gateways poll, so a gateway
/// that sees the new version finds the weights.
pub async fn publish(state: &State, model: &LrModel) -> Result<(), ClassifyError> {
    state.map_set(MODEL, "lr", &model.to_bytes()).await?;
    state
        .map_set(MODEL, "version", model.version().as_bytes())
        .await?;
    Ok(())
}

/// The seed an import into an empty store was filling it from, while unfinished.
pub async fn seeding(state: &State) -> Result<Option<String>, ClassifyError> {
    let raw = state.map_get(MODEL, SEEDING).await?;
    Ok(raw.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Whether seed `id` goes into this store as a first filling (its model published as it
/// is): the store is empty, or an import of that seed into an empty store was cut.
pub async fn takes_seed(state: &State, id: &str) -> Result<bool, ClassifyError> {
    Ok(generation(state).await? == 0 || seeding(state).await?.as_deref() == Some(id))
}

/// Records that seed `id` is being imported into an empty store, before its first entry:
/// a start after an import cut half-way finds the store not empty, and by this knows to
/// finish it.
pub async fn mark_seeding(state: &State, id: &str) -> Result<(), ClassifyError> {
    Ok(state.map_set(MODEL, SEEDING, id.as_bytes()).await?)
}

/// Clears [`mark_seeding`]'s mark once the import of seed `id` is complete (left alone
/// when it names another seed).
pub async fn unmark_seeding(state: &State, id: &str) -> Result<(), ClassifyError> {
    state
        .map_swap(MODEL, SEEDING, Some(id.as_bytes()), None, &[])
        .await?;
    Ok(())
}

/// The ledger generation (how many changes were ever made).
pub async fn generation(state: &State) -> Result<i64, ClassifyError> {
    Ok(state
        .get_counters(&[GENERATION.to_string()])
        .await?
        .first()
        .copied()
        .unwrap_or(0))
}

/// The retraining lock, held by one retraining at a time across the tier.
#[derive(Debug)]
pub struct Lock {
    /// The node's name and a random part: two processes of one node (a gateway and a
    /// `learn` beside it) each know their own hold.
    token: String,
}

/// Takes the retraining lock for `hold`; `None` when another holds it.
pub async fn lock(
    state: &State,
    node: &str,
    hold: Duration,
) -> Result<Option<Lock>, ClassifyError> {
    let token = format!("{node}/{:016x}", rand::random::<u64>());
    match state.set_nx(LOCK, token.as_bytes(), hold).await {
        Ok(taken) => Ok(taken.then_some(Lock { token })),
        Err(e) => {
            release_unowned(state.clone(), token, hold);
            Err(e.into())
        }
    }
}

/// First wait between the tries of [`release_unowned`] (doubled after each, up to
/// [`RELEASE_RETRY_MAX`]): a backend known down lets one call through a second.
const RELEASE_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between those tries.
const RELEASE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Deletes, in the background, a lock a failed `set_nx` may still take: a call cut at
/// `state.timeout` is not withdrawn from the backend, so it could be applied after its
/// caller was told it failed, and the lock stayed held for its whole `hold` with nobody
/// retraining. A compare-and-delete of this attempt's own token touches no other holder's
/// lock; it queues behind the `set_nx` on the same connection (or the embedded writer's
/// queue), and it is tried until the backend answers, for at most `hold`.
fn release_unowned(state: State, token: String, hold: Duration) {
    tokio::spawn(async move {
        let until = tokio::time::Instant::now() + hold;
        let mut wait = RELEASE_RETRY;
        while state.delete_if(LOCK, token.as_bytes()).await.is_err() {
            if tokio::time::Instant::now() + wait >= until {
                tracing::debug!(
                    "classifier: a retraining lock a failed call may hold is left to expire"
                );
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RELEASE_RETRY_MAX);
        }
    });
}

/// Releases the retraining lock if this holder still has it: a retraining that outlived
/// its hold must not release the lock another node has taken since.
pub async fn unlock(state: &State, lock: Lock) -> Result<(), ClassifyError> {
    state.delete_if(LOCK, lock.token.as_bytes()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The counters' keys are shared by every release and gateway of a tier: the hand-made
    /// key is the one `format!("bayes:t:{hash:016x}")` wrote before.
    #[test]
    fn token_keys_are_the_hash_in_sixteen_hex_digits() {
        for hash in [0, 1, 0xf, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(super::token_key(hash), format!("bayes:t:{hash:016x}"));
        }
    }
}
