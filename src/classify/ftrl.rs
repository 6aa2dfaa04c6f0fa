//! Logistic regression over hashed tokens, trained with FTRL-Proximal (McMahan et al.,
//! 2013): per-coordinate adaptive learning rates and an L1 term that keeps most weights
//! exactly zero, so the trained model is small (about 12,000 weights for the training
//! corpus).
//!
//! An FTRL update depends on the current weights, so concurrent learning on several
//! gateways would race and could not be undone exactly. The model is therefore derived:
//! one node replays the learn ledger in a fixed order ([`train`]) and publishes the result
//! ([`LrModel`]), which every gateway scores with in memory.

use super::features::{hash_str, shuffle, HashBuild};
use super::ClassifyError;
use std::collections::HashMap;

/// log2 of the number of hash buckets.
const BITS: u32 = 22;
/// Learning-rate scale α.
const ALPHA: f64 = 2.0;
/// Learning-rate smoothing β.
const BETA: f64 = 1.0;
/// L1 regularisation (sparsity).
const L1: f64 = 0.1;
/// Passes over the examples.
const EPOCHS: u64 = 10;
/// Shuffle seed: the same ledger gives the same model on every node.
const SEED: u64 = 20_070_401;
/// Magic line of a serialised model.
const MAGIC: &[u8; 8] = b"MXLR002\n";
/// Magic line of a model trained while feature values counted every token, known or not:
/// its weights are scaled for that count, so it is not used but trained again.
const EARLIER_MAGIC: &[u8; 8] = b"MXLR001\n";

/// True for the bytes of a model of the earlier scaling ([`EARLIER_MAGIC`]), which a
/// store or a seed trains again from its ledger.
pub fn is_earlier_form(bytes: &[u8]) -> bool {
    bytes.starts_with(EARLIER_MAGIC)
}

/// The value of each present token's feature in a message with `known` tokens that
/// learned mail holds.
fn feature_value(known: usize) -> f64 {
    1.0 / (known.max(1) as f64).sqrt()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The bucket of the bias term.
fn bias_bucket() -> u32 {
    (hash_str("__bias__") & ((1 << BITS) - 1)) as u32
}

/// One training example: the token hashes of a learned message and its class.
#[derive(Debug, Clone, Copy)]
pub struct Example<'a> {
    /// Token hashes.
    pub hashes: &'a [u64],
    /// Learned as spam.
    pub is_spam: bool,
}

/// A trained model as gateways use it: its non-zero weights by bucket, in memory; scoring
/// needs no backend round trip.
#[derive(Debug, Clone, Default)]
pub struct LrModel {
    weights: Vec<(u32, f32)>,
    /// The same weights by bucket, for scoring.
    lookup: HashMap<u32, f32, HashBuild>,
    /// Ledger generation the model was trained at (see `store.rs`).
    generation: i64,
    /// Examples it was trained on.
    examples: u64,
    version: String,
}

impl LrModel {
    fn new(mut weights: Vec<(u32, f32)>, generation: i64, examples: u64) -> LrModel {
        weights.sort_unstable_by_key(|(b, _)| *b);
        let lookup = weights.iter().copied().collect();
        let mut model = LrModel {
            lookup,
            weights,
            generation,
            examples,
            version: String::new(),
        };
        model.version = version_of(&model.to_bytes());
        model
    }

    /// Log-odds of spam for a message's token hashes, `known` of which some learned
    /// message holds. Feature values are 1/√known, so long and short messages weigh alike,
    /// and tokens no learned message holds, which have no weight, dilute nothing: a
    /// thousand random words added to a spam leave its margin as it was. Training counts
    /// alike (the tokens of an example that another example holds).
    pub fn margin(&self, hashes: &[u64], known: usize) -> f64 {
        let mask = (1u64 << BITS) - 1;
        let x = feature_value(known);
        let lookup = |bucket: u32| self.lookup.get(&bucket).map_or(0.0, |&w| f64::from(w));
        let sum: f64 = hashes.iter().map(|&h| lookup((h & mask) as u32) * x).sum();
        lookup(bias_bucket()) + sum
    }

    /// The same weights stamped with another ledger generation (a seed imported into a
    /// store whose ledger now holds exactly the seed's entries).
    pub fn with_generation(&self, generation: i64) -> LrModel {
        LrModel::new(self.weights.clone(), generation, self.examples)
    }

    /// Non-zero weights.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when every weight is zero.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The ledger generation it was trained at.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The number of examples it was trained on.
    pub fn examples(&self) -> u64 {
        self.examples
    }

    /// Content hash (16 hex digits): equal models have equal versions on every node; it is
    /// part of the policy fingerprint.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The published form: magic, generation, examples, count, then (bucket, weight)
    /// pairs, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.weights.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.examples.to_le_bytes());
        out.extend_from_slice(&(self.weights.len() as u32).to_le_bytes());
        for (bucket, weight) in &self.weights {
            out.extend_from_slice(&bucket.to_le_bytes());
            out.extend_from_slice(&weight.to_le_bytes());
        }
        out
    }

    /// Reads [`LrModel::to_bytes`]'s form.
    pub fn from_bytes(bytes: &[u8]) -> Result<LrModel, ClassifyError> {
        let bad = |why: &str| ClassifyError::Format(format!("logistic model: {why}"));
        if is_earlier_form(bytes) {
            return Err(bad(
                "trained by an earlier release, whose feature values differ",
            ));
        }
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| bad("bad magic"))?;
        let (generation, rest) = rest.split_first_chunk::<8>().ok_or_else(|| bad("short"))?;
        let (examples, rest) = rest.split_first_chunk::<8>().ok_or_else(|| bad("short"))?;
        let (count, rest) = rest.split_first_chunk::<4>().ok_or_else(|| bad("short"))?;
        let count = u32::from_le_bytes(*count) as usize;
        if rest.len() != count.saturating_mul(8) {
            return Err(bad("length does not match the weight count"));
        }
        let weights: Vec<(u32, f32)> = rest
            .chunks_exact(8)
            .map(|c| {
                let (b, w) = c.split_at(4);
                let bucket = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (bucket, f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            })
            .collect();
        // Training only makes finite weights; one that is not (a damaged blob in the
        // backend or a seed file) would turn every vote it touches into NaN (`BAYES_50`).
        if weights.iter().any(|(_, w)| !w.is_finite()) {
            return Err(bad("a weight is not a finite number"));
        }
        Ok(LrModel::new(
            weights,
            i64::from_le_bytes(*generation),
            u64::from_le_bytes(*examples),
        ))
    }
}

impl PartialEq for LrModel {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.generation == other.generation
            && self.examples == other.examples
    }
}

fn version_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// FTRL-Proximal state: dense (z, n) arrays over the hash buckets.
struct Trainer {
    z: Vec<f32>,
    n: Vec<f32>,
}

impl Trainer {
    fn weight(&self, i: usize) -> f64 {
        let (z, n) = (f64::from(self.z[i]), f64::from(self.n[i]));
        if z.abs() <= L1 {
            0.0
        } else {
            -(z - z.signum() * L1) / ((BETA + n.sqrt()) / ALPHA)
        }
    }

    /// One FTRL step on `example`, `shared` of whose tokens another example holds.
    fn learn(&mut self, example: &Example<'_>, shared: usize) {
        let mask = (1u64 << BITS) - 1;
        let x = feature_value(shared);
        let inputs: Vec<(usize, f64)> = std::iter::once((bias_bucket() as usize, 1.0))
            .chain(example.hashes.iter().map(|&h| ((h & mask) as usize, x)))
            .collect();
        let margin: f64 = inputs.iter().map(|&(i, x)| self.weight(i) * x).sum();
        let label = if example.is_spam { 1.0 } else { 0.0 };
        let g = sigmoid(margin) - label;
        for &(i, x) in &inputs {
            let gi = g * x;
            let (z, n) = (f64::from(self.z[i]), f64::from(self.n[i]));
            let sigma = ((n + gi * gi).sqrt() - n.sqrt()) / ALPHA;
            self.z[i] = (z + gi - sigma * self.weight(i)) as f32;
            self.n[i] = (n + gi * gi) as f32;
        }
    }
}

/// For each example, how many of its tokens another example holds: what a message
/// scored later counts as known (a token some learned message holds), seen from inside
/// the training set.
fn shared_tokens(examples: &[Example<'_>]) -> Vec<usize> {
    let mut holders: HashMap<u64, u32, HashBuild> = HashMap::default();
    for example in examples {
        for &h in example.hashes {
            *holders.entry(h).or_insert(0) += 1;
        }
    }
    examples
        .iter()
        .map(|e| {
            e.hashes
                .iter()
                .filter(|h| holders.get(h) > Some(&1))
                .count()
        })
        .collect()
}

/// Trains a model from `examples` (in a canonical order, e.g. sorted by ledger digest):
/// seeded passes, so any node produces the same model from the same ledger.
pub fn train(examples: &[Example<'_>], generation: i64) -> LrModel {
    let size = 1usize << BITS;
    let mut t = Trainer {
        z: vec![0.0; size],
        n: vec![0.0; size],
    };
    let shared = shared_tokens(examples);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    for epoch in 0..EPOCHS {
        shuffle(&mut order, SEED ^ (epoch + 1));
        for &i in &order {
            t.learn(&examples[i], shared[i]);
        }
    }
    let weights = (0..size)
        .filter_map(|i| {
            let w = t.weight(i);
            (w != 0.0).then_some((i as u32, w as f32))
        })
        .collect();
    LrModel::new(weights, generation, examples.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): a published model (from Redis) or a seed's model whose
    /// weights were not finite was installed: a NaN weight on the bias made every vote NaN,
    /// which reads as `BAYES_50` on every message, with nothing logged.
    #[test]
    fn a_model_with_a_weight_that_is_not_finite_is_refused() {
        let good = LrModel::new(vec![(bias_bucket(), 0.5)], 3, 1).to_bytes();
        assert!(LrModel::from_bytes(&good).is_ok());
        for w in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut bytes = good.clone();
            let at = bytes.len() - 4;
            bytes[at..].copy_from_slice(&w.to_le_bytes());
            let read = LrModel::from_bytes(&bytes);
            assert!(
                read.is_err(),
                "weight {w} accepted: margin {:?}",
                read.map(|m| m.margin(&[1], 1))
            );
        }
    }

    #[test]
    fn learns_separable_examples_and_round_trips() {
        let spam: Vec<u64> = (0..30).map(|i| hash_str(&format!("spam{i}"))).collect();
        let ham: Vec<u64> = (0..30).map(|i| hash_str(&format!("ham{i}"))).collect();
        let examples: Vec<Example<'_>> = (0..20)
            .flat_map(|_| {
                [
                    Example {
                        hashes: &spam,
                        is_spam: true,
                    },
                    Example {
                        hashes: &ham,
                        is_spam: false,
                    },
                ]
            })
            .collect();
        let m = train(&examples, 7);
        assert!(m.margin(&spam, 30) > 1.0, "{}", m.margin(&spam, 30));
        assert!(m.margin(&ham, 30) < -1.0, "{}", m.margin(&ham, 30));
        assert_eq!(m.generation(), 7);
        assert_eq!(m.examples(), 40);
        let again = LrModel::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(again, m);
        assert_eq!(train(&examples, 7).version(), m.version(), "deterministic");
        assert!(LrModel::from_bytes(b"MXLR002\nshort").is_err());
        let mut earlier = m.to_bytes();
        earlier[..8].copy_from_slice(EARLIER_MAGIC);
        assert!(is_earlier_form(&earlier));
        assert!(!is_earlier_form(&m.to_bytes()));
        assert!(LrModel::from_bytes(&earlier).is_err());
        assert!(LrModel::from_bytes(b"").is_err());
    }
}
