//! The classifier service: classifies with Bayes over the shared counts plus the published
//! logistic model (log-odds averaged), learns and forgets idempotently through the ledger,
//! retrains and publishes the logistic model, and imports or exports seeds.
//!
//! Per classified message: one backend round trip (`MGET` of the message's token counters);
//! the logistic model is in memory. Per learn: one ledger read and one compare-and-swap
//! that also adds the counts, retried when another gateway changed the entry meanwhile.

use super::bands::{band, Band};
use super::bayes::{self, Contribution, Counts};
use super::features::Features;
use super::ftrl::{self, Example, LrModel};
use super::ledger::{body_digest, hex, Class, Entry, Outcome};
use super::seed::Seed;
use super::store::{self, Source, AUTOLEARNED, GENERATION, MAX_LOOKUPS, TOTALS};
use super::tokenize::Tokenizer;
use super::ClassifyError;
use crate::mail::trace::Reading;
use arc_swap::ArcSwapOption;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tries of a learn whose ledger entry other gateways keep changing.
const SWAP_TRIES: usize = 8;
/// Learns in flight during an import.
const IMPORT_CONCURRENCY: usize = 32;
/// Bound on maintenance calls that move the whole ledger.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(120);
/// `keep_autolearned` of a retraining that forgets nothing: an import or export works
/// on the ledger as it is; the running gateway's retraining applies the limit.
const KEEP_ALL: usize = usize::MAX;
/// How long the retraining lock is held at most (a crashed holder frees it then).
const LOCK_HOLD: Duration = Duration::from_secs(600);

/// Who this classifier is, for the tier.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name in the retraining lock.
    pub node: String,
}

/// A classification.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The combined spam probability the band is chosen by.
    pub probability: f64,
    /// Bayes' probability alone.
    pub bayes: f64,
    /// The logistic model's probability, when one is installed.
    pub lr: Option<f64>,
    /// The band (`BAYES_xx` symbol) of `probability`.
    pub band: &'static Band,
    /// The strongest Bayes tokens (probability minus 0.5), for `scan --explain`.
    pub top: Vec<Contribution>,
    /// Learned messages per class.
    pub learned: Counts,
}

/// What classifying a message gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    /// A vote.
    Verdict(Verdict),
    /// Too few messages of a class are learned: no vote.
    NotReady(Counts),
}

/// The classifier: token counts from a [`Source`], the installed logistic model, learning.
#[derive(Debug)]
pub struct Classifier {
    settings: Settings,
    source: Source,
    model: ArcSwapOption<LrModel>,
    /// Whether this gateway's seeding of the store is settled (seeded, not needed, or
    /// failed for good): until then autolearn waits, since one message learned into an
    /// empty store makes it look in use and the seed would never be imported.
    seed_settled: AtomicBool,
    /// Autolearns under way, for the whole process: each holds a copy of its message, so
    /// past [`AUTOLEARNS_AT_ONCE`] a message is not learned. Kept here, not in a policy
    /// snapshot, so reloads and new models do not add turns while older ones still learn.
    autolearn_turns: Arc<tokio::sync::Semaphore>,
    /// The secret that picks which tokens of a long message are looked up: the store's
    /// (read at each [`Classifier::refresh`]), or one of this process until then.
    lookup_key: arc_swap::ArcSwap<[u8; 16]>,
}

/// Autolearns at once (see [`Classifier::autolearn_turn`]).
pub const AUTOLEARNS_AT_ONCE: usize = 8;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn logit(p: f64) -> f64 {
    // Bayes saturates at 0 and 1; clamped, one model cannot veto the other outright.
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// The counter changes of replacing ledger entry `old` by `new` (either may be absent).
fn deltas(old: Option<&Entry>, new: Option<&Entry>) -> Vec<(String, i64)> {
    let mut sum: BTreeMap<String, i64> = BTreeMap::new();
    for (entry, sign) in [(old, -1), (new, 1)] {
        let Some(e) = entry else { continue };
        let d = Counts::delta(e.class.is_spam(), sign);
        *sum.entry(TOTALS.to_string()).or_default() += d;
        if e.autolearned {
            *sum.entry(AUTOLEARNED.to_string()).or_default() += sign;
        }
        for &h in &e.hashes {
            *sum.entry(store::token_key(h)).or_default() += d;
        }
    }
    sum.retain(|_, d| *d != 0);
    sum.insert(GENERATION.to_string(), 1);
    sum.into_iter().collect()
}

/// Forgets the ledger entry of `digest`, or, with `only_autolearned`, only an entry
/// autolearned (one learned by hand since it was read is the operator's and stays).
async fn forget_entry(
    state: &crate::state::State,
    digest: &[u8; 32],
    only_autolearned: bool,
) -> Result<Outcome, ClassifyError> {
    let (shard, field) = (store::ledger_shard(digest), hex(digest));
    for _ in 0..SWAP_TRIES {
        let Some((bytes, old)) = store::ledger_get(state, digest).await? else {
            return Ok(Outcome::Unknown);
        };
        if only_autolearned && !old.autolearned {
            return Ok(Outcome::KeptByHand);
        }
        let changes = deltas(Some(&old), None);
        if state
            .map_swap(&shard, &field, Some(&bytes), None, &changes)
            .await?
        {
            return Ok(Outcome::Forgotten);
        }
    }
    Err(ClassifyError::Conflict)
}

/// Forgets the oldest autolearned entries of `entries` (the whole ledger) past `keep`
/// and takes them out of `entries`; how many it forgot. Autolearn adds for as long as
/// the gateway runs: unbounded, the ledger (a few kilobytes a message) and the time of
/// every retraining would grow with the gateway's age. Entries learned by hand are kept.
async fn forget_oldest_autolearned(
    state: &crate::state::State,
    entries: &mut Vec<(String, Entry)>,
    keep: usize,
) -> Result<Forgotten, ClassifyError> {
    let mut autolearned: Vec<(u64, usize)> = entries
        .iter()
        .enumerate()
        .filter(|(_, (_, e))| e.autolearned)
        .map(|(i, (_, e))| (e.learned_at, i))
        .collect();
    if autolearned.len() <= keep {
        return Ok(Forgotten::default());
    }
    // Oldest first; ties (entries stored before they carried a time) in ledger order.
    autolearned.sort_unstable();
    let mut gone = vec![false; entries.len()];
    let mut here = 0;
    let ledger: &[(String, Entry)] = entries;
    for chunk in autolearned[..autolearned.len() - keep].chunks(IMPORT_CONCURRENCY) {
        let forgets = chunk.iter().map(|&(_, i)| async move {
            let Some(digest) = parse_digest(&ledger[i].0) else {
                return Ok((i, Outcome::Unknown));
            };
            forget_entry(state, &digest, true).await.map(|o| (i, o))
        });
        for result in futures::future::join_all(forgets).await {
            let (i, outcome) = result?;
            // Gone by another hand counts as gone too: it is no longer in the ledger.
            gone[i] = matches!(outcome, Outcome::Forgotten | Outcome::Unknown);
            here += usize::from(outcome == Outcome::Forgotten);
        }
    }
    let gone_in_all = gone.iter().filter(|g| **g).count();
    let mut index = 0;
    entries.retain(|_| {
        index += 1;
        !gone[index - 1]
    });
    Ok(Forgotten {
        gone: gone_in_all,
        here,
    })
}

/// The changes that make the counters `from_ledger` what the ledger says, given `stored`:
/// the ledger generation, then each counter's stored value. `None` when the generation is
/// not `expected`: the ledger moved on after it was read, and the difference would undo
/// what moved it.
fn counter_corrections(
    expected: i64,
    stored: &[i64],
    from_ledger: &[(&str, i64)],
) -> Option<Vec<(String, i64)>> {
    if stored.first().copied().unwrap_or(0) != expected {
        return None;
    }
    let now = stored.iter().skip(1).copied().chain(std::iter::repeat(0));
    Some(
        from_ledger
            .iter()
            .zip(now)
            .filter(|((_, right), now)| right != now)
            .map(|((key, right), now)| (key.to_string(), right - now))
            .collect(),
    )
}

/// What forgetting the oldest autolearned entries did.
#[derive(Debug, Default, Clone, Copy)]
struct Forgotten {
    /// Entries no longer in the ledger (forgotten here or by another hand meanwhile).
    gone: usize,
    /// Entries this retraining forgot: each moved the ledger generation by one.
    here: usize,
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex_digest.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex_digest.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Classifier {
    /// A classifier over `source` with no logistic model yet.
    pub fn new(source: Source, settings: Settings) -> Classifier {
        Classifier {
            settings,
            source,
            model: ArcSwapOption::empty(),
            seed_settled: AtomicBool::new(false),
            autolearn_turns: Arc::new(tokio::sync::Semaphore::new(AUTOLEARNS_AT_ONCE)),
            lookup_key: arc_swap::ArcSwap::from_pointee(rand::random()),
        }
    }

    /// A turn to autolearn one message, if one of [`AUTOLEARNS_AT_ONCE`] is free.
    pub fn autolearn_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.autolearn_turns.clone().try_acquire_owned().ok()
    }

    /// Whether seeding the store is settled (see [`crate::classify::maintain`]).
    pub fn seed_settled(&self) -> bool {
        self.seed_settled.load(Ordering::Acquire)
    }

    /// Records that seeding the store is settled: autolearn may start.
    pub fn mark_seed_settled(&self) {
        self.seed_settled.store(true, Ordering::Release);
    }

    /// A read-only classifier over a seed held in memory (`scan` with an empty store).
    /// Its lookup key comes from the seed, so that `scan` judges a long message alike on
    /// every run (review: a random key of the process made five runs give five
    /// probabilities); offline, nobody is sending against it.
    pub fn from_seed(seed: &Seed, settings: Settings) -> Classifier {
        use sha2::Digest;
        let c = Classifier::new(Source::Memory(Arc::new(seed.memory())), settings);
        // A seed without a model (an earlier release trained it) has one trained here, as a
        // store it is imported into would: offline, so no session waits for it.
        let model = match &seed.model {
            Some(model) => Some(model.clone()),
            None => model_of(&seed.entries, seed.entries.len() as i64),
        };
        c.install(model);
        let digest = sha2::Sha256::digest(format!("lookup key of seed {}", seed.id()));
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        c.lookup_key.store(Arc::new(key));
        c
    }

    /// Where the counts come from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The installed logistic model.
    pub fn model(&self) -> Option<Arc<LrModel>> {
        self.model.load_full()
    }

    /// Installs a logistic model (or none).
    pub fn install(&self, model: Option<LrModel>) {
        self.model.store(model.map(Arc::new));
    }

    /// The tokens of a message collected elsewhere (a file to learn).
    pub fn features(&self, raw: &[u8]) -> Features {
        Tokenizer.features(raw)
    }

    /// The tokens of a message read as `reading` says.
    pub fn features_read(&self, raw: &[u8], reading: Reading) -> Features {
        Tokenizer.features_read(raw, reading)
    }

    /// Classifies raw message bytes, read as `reading` says, with `model` (a policy
    /// snapshot keeps the model it was built with); no vote below `min_learned` messages of
    /// either class; `explain` asks for that many strongest tokens.
    pub async fn classify(
        &self,
        raw: &[u8],
        reading: Reading,
        model: Option<&LrModel>,
        min_learned: u32,
        explain: usize,
    ) -> Result<Judged, ClassifyError> {
        // The keyed choice costs a hash per token (2 ms at 20,000): off the session threads
        // with the tokenising.
        let key = self.lookup_key.load_full();
        let (features, hashes, looked_up) =
            crate::runtime::off_the_session_threads(raw.len(), || {
                let features = self.features_read(raw, reading);
                let hashes = features.hashes();
                let looked_up = pick_lookups(&hashes, MAX_LOOKUPS, &key);
                (features, hashes, looked_up)
            });
        let (totals, counts) = self.source.counts(&looked_up).await?;
        // Never with a class empty, whatever `min_learned` says (0 is taken): every token
        // seen in spam then reads as spam, all mail lands in `BAYES_999`, and autolearn,
        // which never learns as ham what the classifier calls spam, can never mend it.
        let min_learned = min_learned.max(1);
        if totals.spam < min_learned || totals.ham < min_learned {
            return Ok(Judged::NotReady(totals));
        }
        let tokens: Vec<(u64, Counts)> = looked_up.iter().copied().zip(counts).collect();
        let b = bayes::score(&tokens, totals, explain, |h| features.name_of(h));
        let known = known_tokens(&tokens, hashes.len());
        let lr = model.map(|m| m.margin(&hashes, known));
        let probability = match lr {
            Some(z) => sigmoid(0.5 * logit(b.probability) + 0.5 * z),
            None => b.probability,
        };
        Ok(Judged::Verdict(Verdict {
            probability,
            bayes: b.probability,
            lr: lr.map(sigmoid),
            band: band(probability),
            top: b.top,
            learned: totals,
        }))
    }

    /// Learns a message as `class`: idempotent per body digest, a move when it was learned
    /// as the other class.
    pub async fn learn(&self, raw: &[u8], class: Class) -> Result<Outcome, ClassifyError> {
        // Read as the gateway and `scan` read it (review: 24 of the corpus's LF files gave
        // other tokens when learned than when scanned). The digest reads either alike.
        let crlf = crate::mail::line_endings::to_crlf(raw);
        let entry = Entry {
            class,
            hashes: crate::runtime::off_the_session_threads(raw.len(), || {
                self.features(&crlf).hashes()
            }),
            autolearned: false,
            learned_at: 0,
        };
        self.learn_entry(&body_digest(raw), &entry).await
    }

    /// Records a ledger entry and counts its tokens (see [`Classifier::learn`]).
    pub async fn learn_entry(
        &self,
        digest: &[u8; 32],
        entry: &Entry,
    ) -> Result<Outcome, ClassifyError> {
        // A learn moves thousands of counters (one call per node on a Redis Cluster,
        // after the ledger swap): under a session's bound of `state.timeout` it was cut
        // half-way on a loaded host, the ledger saying "learned" with counts missing.
        // Autolearn runs apart from the session, so it can wait.
        let state = &self.source.state()?.patient(MAINTENANCE_TIMEOUT);
        let (shard, field) = (store::ledger_shard(digest), hex(digest));
        let new = entry.to_bytes();
        for _ in 0..SWAP_TRIES {
            let prev = store::ledger_get(state, digest).await?;
            let outcome = match &prev {
                // A learn by hand of what the gateway learned by itself makes it the
                // operator's: recorded, so no later autolearn moves it.
                Some((_, p)) if p.class == entry.class && p.autolearned && !entry.autolearned => {
                    Outcome::AlreadyLearned
                }
                Some((_, p)) if p.class == entry.class => return Ok(Outcome::AlreadyLearned),
                Some((_, p)) if entry.autolearned && !p.autolearned => {
                    return Ok(Outcome::KeptByHand)
                }
                Some(_) => Outcome::Moved,
                None => Outcome::Learned,
            };
            let changes = deltas(prev.as_ref().map(|p| &p.1), Some(entry));
            let expected = prev.as_ref().map(|p| p.0.as_slice());
            if state
                .map_swap(&shard, &field, expected, Some(&new), &changes)
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(ClassifyError::Conflict)
    }

    /// Forgets a learned message: subtracts exactly what its learn added.
    pub async fn forget(&self, raw: &[u8]) -> Result<Outcome, ClassifyError> {
        let state = self.source.state()?;
        forget_entry(state, &body_digest(raw), false).await
    }

    /// Autolearned messages in the ledger (as counted by the learns since the last
    /// retraining set it).
    pub async fn autolearned(&self) -> Result<i64, ClassifyError> {
        let state = self.source.state()?;
        let values = state.get_counters(&[AUTOLEARNED.to_string()]).await?;
        Ok(values.first().copied().unwrap_or(0))
    }

    /// Whether autolearn may add to the ledger: it waits past [`autolearn_ceiling`] of
    /// `autolearn_max` until a retraining forgets the oldest (review: forgetting only at
    /// each retraining let autolearn at full speed grow Redis by gigabytes first).
    pub async fn autolearn_has_room(&self, autolearn_max: usize) -> Result<bool, ClassifyError> {
        Ok(self.autolearned().await? < autolearn_ceiling(autolearn_max))
    }

    /// Learned messages per class.
    pub async fn totals(&self) -> Result<Counts, ClassifyError> {
        Ok(self.source.counts(&[]).await?.0)
    }

    /// Rebuilds the logistic model from the whole ledger and publishes it, when this node
    /// gets the retraining lock; `None` when another node holds it or the ledger lacks a
    /// class. The model is installed here too.
    /// Past `keep_autolearned` autolearned entries (`classifier.autolearn_max`), the
    /// oldest are forgotten first.
    pub async fn retrain(
        &self,
        keep_autolearned: usize,
    ) -> Result<Option<Arc<LrModel>>, ClassifyError> {
        let state = self.source.state()?.patient(MAINTENANCE_TIMEOUT);
        let Some(lock) = store::lock(&state, &self.settings.node, LOCK_HOLD).await? else {
            return Ok(None);
        };
        let result = self.retrain_locked(&state, keep_autolearned).await;
        // The model is published and installed by now: an unlock that fails (a Redis blip)
        // must not hide it from the caller, which would then never put it in force on this
        // gateway. The lock runs out by itself after its hold.
        if let Err(e) = store::unlock(&state, lock).await {
            tracing::warn!(error = %e, "classifier: cannot release the retraining lock; it expires by itself");
        }
        result
    }

    async fn retrain_locked(
        &self,
        state: &crate::state::State,
        keep_autolearned: usize,
    ) -> Result<Option<Arc<LrModel>>, ClassifyError> {
        // Read first: a learn after this makes the model older than the ledger, so it is
        // retrained again at the next interval (the forgetting below does the same).
        let generation = store::generation(state).await?;
        let mut entries = store::ledger_all(state).await?;
        let forgotten = forget_oldest_autolearned(state, &mut entries, keep_autolearned).await?;
        if forgotten.gone > 0 {
            tracing::info!(
                forgotten = forgotten.gone,
                kept = keep_autolearned,
                "classifier: the oldest autolearned messages forgotten (classifier.autolearn_max)"
            );
        }
        // The counters the ledger says, made right from it: the count autolearn is held to
        // (a store older than the counter) and the learned-message totals (review: a learn
        // cut between its ledger swap and its counters on a Redis Cluster left them off for
        // good, and every Bayes probability with them; that learn's token counters stay as
        // they are). Made only when the ledger has not moved since it was read, save by
        // this retraining's own forgetting: read-then-add on counters minutes old undid
        // every learn and forget made meanwhile (review: 500 ham learned by hand during a
        // long forgetting were taken off the totals again, and the classifier stopped
        // voting).
        let spam = entries.iter().filter(|(_, e)| e.class.is_spam()).count();
        let autolearned = entries.iter().filter(|(_, e)| e.autolearned).count();
        let from_ledger = [
            (AUTOLEARNED, i64::try_from(autolearned).unwrap_or(i64::MAX)),
            (
                TOTALS,
                Counts {
                    spam: u32::try_from(spam).unwrap_or(u32::MAX),
                    ham: u32::try_from(entries.len() - spam).unwrap_or(u32::MAX),
                }
                .pack(),
            ),
        ];
        let keys: Vec<String> = std::iter::once(GENERATION)
            .chain(from_ledger.iter().map(|(k, _)| *k))
            .map(str::to_string)
            .collect();
        let stored = state.get_counters(&keys).await?;
        let expected = generation.saturating_add(i64::try_from(forgotten.here).unwrap_or(i64::MAX));
        let corrections = counter_corrections(expected, &stored, &from_ledger).unwrap_or_else(|| {
            tracing::debug!(
                "classifier: the ledger changed during the retraining; its counters are checked at the next"
            );
            Vec::new()
        });
        if !corrections.is_empty() {
            tracing::info!(
                ?corrections,
                "classifier: counters made right from the ledger"
            );
            state.add_counters(&corrections).await?;
        }
        // Labelled with the generation the store is at after this retraining's own
        // forgetting, when nothing else moved it: labelled with the one before, the next
        // interval retrained the same entries again and every gateway took a new version
        // of the same model, and a new fingerprint (review).
        let label = if stored.first() == Some(&expected) {
            expected
        } else {
            generation
        };
        // Training takes a fraction of a second per thousand messages: off the runtime.
        let model = tokio::task::spawn_blocking(move || model_of(&entries, label))
            .await
            .map_err(|e| ClassifyError::Format(format!("training failed: {e}")))?;
        let Some(model) = model else {
            return Ok(None);
        };
        store::publish(state, &model).await?;
        self.install(Some(model));
        Ok(self.model())
    }

    /// Retrains when the ledger changed since the installed (or published) model was
    /// trained; the new model, if this node made one.
    pub async fn retrain_if_due(
        &self,
        keep_autolearned: usize,
    ) -> Result<Option<Arc<LrModel>>, ClassifyError> {
        let state = self.source.state()?.patient(MAINTENANCE_TIMEOUT);
        let generation = store::generation(&state).await?;
        let trained = match self.model() {
            Some(m) => Some(m.generation()),
            None => published_or_none(&state).await?.map(|m| m.generation()),
        };
        // Past the bound autolearn waits for a retraining to forget the oldest, and while
        // it waits nothing changes the ledger: retrained then too, or it waited for ever
        // (review: `autolearn_max` lowered by a reload, or an import of many autolearned
        // entries).
        let over = self.autolearned().await? > i64::try_from(keep_autolearned).unwrap_or(i64::MAX);
        if (trained == Some(generation) || generation == 0) && !over {
            return Ok(None);
        }
        self.retrain(keep_autolearned).await
    }

    /// Installs the published model when its version differs from the installed one;
    /// whether it changed.
    pub async fn refresh(&self) -> Result<bool, ClassifyError> {
        let state = self.source.state()?.patient(MAINTENANCE_TIMEOUT);
        let key = store::lookup_key(&state).await?;
        if **self.lookup_key.load() != key {
            self.lookup_key.store(Arc::new(key));
        }
        let published = store::published_version(&state).await?;
        let installed = self.model().map(|m| m.version().to_string());
        if published.is_none() || published == installed {
            return Ok(false);
        }
        let model = store::published_model(&state).await?;
        let changed = model.as_ref().map(LrModel::version) != installed.as_deref();
        self.install(model);
        Ok(changed)
    }

    /// Imports a seed: every entry is learned (idempotently, so an interrupted or repeated
    /// import counts each message once). Into an empty store (or one an import of this seed
    /// into an empty store was cut in) the seed's model is published as it is; otherwise
    /// the model is retrained. Outcome counts of the entries.
    pub async fn import(&self, seed: &Seed) -> Result<BTreeMap<Outcome, usize>, ClassifyError> {
        let state = self.source.state()?.patient(MAINTENANCE_TIMEOUT);
        let id = seed.id();
        let was_empty = store::takes_seed(&state, &id).await?;
        if was_empty {
            store::mark_seeding(&state, &id).await?;
        }
        let patient = Classifier::new(Source::State(state.clone()), self.settings.clone());
        let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
        for chunk in seed.entries.chunks(IMPORT_CONCURRENCY) {
            let mut learns = Vec::with_capacity(chunk.len());
            for (digest, entry) in chunk {
                learns.push(patient.learn_entry(digest, entry));
            }
            for outcome in futures::future::join_all(learns).await {
                *outcomes.entry(outcome?).or_default() += 1;
            }
        }
        // The seed's model stands for the seed alone: a store that learned more while the
        // import was cut (or during it) is retrained, or what it learned stayed out of the
        // model until the ledger next changed, under a model dated as if trained on all.
        let generation = store::generation(&state).await?;
        let seed_alone = usize::try_from(generation).is_ok_and(|g| g == seed.entries.len());
        match &seed.model {
            Some(model) if was_empty && seed_alone => {
                let model = model.with_generation(generation);
                store::publish(&state, &model).await?;
                self.install(Some(model));
            }
            _ => {
                if self.retrain(KEEP_ALL).await?.is_none() {
                    // Another node holds the lock: the model in force is the published
                    // one (review: the summary read "model none").
                    self.refresh().await?;
                }
            }
        }
        if was_empty {
            store::unmark_seeding(&state, &id).await?;
        }
        Ok(outcomes)
    }

    /// The whole ledger with a model trained on it (the published one when current).
    pub async fn export(&self) -> Result<Seed, ClassifyError> {
        let state = self.source.state()?.patient(MAINTENANCE_TIMEOUT);
        let generation = store::generation(&state).await?;
        let mut model = published_or_none(&state).await?;
        if model.as_ref().map(LrModel::generation) != Some(generation) {
            model = self.retrain(KEEP_ALL).await?.map(|m| (*m).clone());
        }
        let ledger = store::ledger_all(&state).await?;
        // A learn between the model and the ledger read: the model is not of these
        // entries, and a store seeded from them alone would keep it as if it were (review).
        if store::generation(&state).await? != generation {
            model = None;
        }
        // A retraining another node holds the lock of (when one is due) gives no model: it
        // is trained here, from the very entries exported, and not published (review: the
        // seed was written without a model).
        if model.is_none() {
            model = crate::runtime::off_the_async_threads(|| model_of(&ledger, generation));
        }
        let entries = ledger
            .into_iter()
            .filter_map(|(digest, e)| Some((parse_digest(&digest)?, e)))
            .collect();
        Ok(Seed::new(entries, model))
    }
}

/// The logistic model of ledger `entries` (however they are named), labelled
/// `generation`: deterministic, so every node trains the same model from the same ledger.
/// None while a class is missing: every token would read as the other.
fn model_of<K>(entries: &[(K, Entry)], generation: i64) -> Option<LrModel> {
    let spam = entries.iter().filter(|(_, e)| e.class.is_spam()).count();
    if spam == 0 || spam == entries.len() {
        return None;
    }
    let examples: Vec<Example<'_>> = entries
        .iter()
        .map(|(_, e)| Example {
            hashes: &e.hashes,
            is_spam: e.class.is_spam(),
        })
        .collect();
    Some(ftrl::train(&examples, generation))
}

/// The published model, or none when its bytes do not read as one: a damaged blob made
/// every gateway without a model fail each retraining before it could write a good one
/// over it, for good (review). Logged; the retraining that follows replaces it.
async fn published_or_none(state: &crate::state::State) -> Result<Option<LrModel>, ClassifyError> {
    match store::published_model(state).await {
        Err(ClassifyError::Format(why)) => {
            tracing::warn!(error = %why, "classifier: the published model does not read; retraining");
            Ok(None)
        }
        other => other,
    }
}

/// Autolearned messages past which autolearn waits for the next retraining (which
/// forgets the oldest down to `autolearn_max`): a tenth more, at least 100, so that
/// autolearn goes on between retrainings without the ledger outgrowing its bound.
pub fn autolearn_ceiling(autolearn_max: usize) -> i64 {
    let margin = (autolearn_max / 10).max(100);
    i64::try_from(autolearn_max.saturating_add(margin)).unwrap_or(i64::MAX)
}

/// How many of a message's `all` tokens some learned message holds, from the counts of
/// those looked up (all of them, or a keyed sample of a long message's, scaled up).
fn known_tokens(looked_up: &[(u64, Counts)], all: usize) -> usize {
    let known = looked_up
        .iter()
        .filter(|(_, c)| c.spam > 0 || c.ham > 0)
        .count();
    if looked_up.len() >= all || looked_up.is_empty() {
        return known;
    }
    (known as f64 * all as f64 / looked_up.len() as f64).round() as usize
}

/// At most `max` of the token hashes, chosen by a keyed hash of each: the hash function
/// is public, so any choice a sender can compute lets him decide what is read. Taking the
/// lowest hashes let 2,000 junk words of low hashes push out every real token; taking
/// them evenly spread let 3,700 crafted words (one just below each real token, the body
/// padded to 4,000) do the same (review: 100 of 100 `BAYES_99` spam fell to `BAYES_50`
/// and `BAYES_60`). Sorted, as the hashes come.
fn pick_lookups(hashes: &[u64], max: usize, key: &[u8; 16]) -> Vec<u64> {
    use sha2::Digest;
    if hashes.len() <= max {
        return hashes.to_vec();
    }
    let keyed = sha2::Sha256::new().chain_update(key);
    let mut ranked: Vec<(u64, u64)> = hashes
        .iter()
        .map(|&h| {
            let digest = keyed.clone().chain_update(h.to_le_bytes()).finalize();
            let mut rank = [0u8; 8];
            rank.copy_from_slice(&digest[..8]);
            (u64::from_le_bytes(rank), h)
        })
        .collect();
    ranked.select_nth_unstable(max);
    let mut picked: Vec<u64> = ranked[..max].iter().map(|&(_, h)| h).collect();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests;
