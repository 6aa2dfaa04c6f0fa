//! The feature vocabulary shared by the tokenizer and the models: prefixed tokens and their
//! stable 64-bit hashes, which are the keys of the counts and weights in the state backend.

/// Stable 64-bit hash of a token: FNV-1a followed by a SplitMix64 finaliser.
///
/// The hash names a token's counters in the state backend and its weight in the logistic
/// model, so it must never change between releases or machines (std's `DefaultHasher` is
/// randomly keyed and would not do).
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// SplitMix64 finaliser: spreads entropy over all 64 bits, so `hash & mask` is uniform.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One token: `free`, `s:money`, `u:d:example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Stable hash of `name`: the storage key.
    pub hash: u64,
    /// The token text, kept for `scan --explain`.
    pub name: String,
}

/// Everything the models see of one message: distinct tokens, sorted by hash.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Distinct tokens, sorted by hash.
    pub tokens: Vec<Feature>,
}

impl Features {
    /// The token hashes in order.
    pub fn hashes(&self) -> Vec<u64> {
        self.tokens.iter().map(|f| f.hash).collect()
    }

    /// The name of the token with this hash, if the message has it.
    pub fn name_of(&self, hash: u64) -> Option<&str> {
        self.tokens
            .binary_search_by_key(&hash, |f| f.hash)
            .ok()
            .map(|i| self.tokens[i].name.as_str())
    }
}

/// A hasher for keys that are already uniform 64-bit hashes (token hashes, buckets): it
/// passes them through, where SipHash would spend more time than the lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = mix64(u64::from(v));
    }
}

/// Builds [`PassThrough`] hashers.
pub type HashBuild = std::hash::BuildHasherDefault<PassThrough>;

/// Deterministic in-place shuffle (Fisher–Yates driven by a SplitMix64 stream), so training
/// gives the same model on every machine for the same examples and seed.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut state = seed;
    for i in (1..v.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let j = (mix64(state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_frozen() {
        // Changing these orphans every stored count and weight: never change them.
        assert_eq!(hash_str(""), mix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(hash_str("free"), 0x4d5c_25d1_95e6_13fb);
        assert_ne!(hash_str("free"), hash_str("s:free"));
        let mut v: Vec<u32> = (0..10).collect();
        shuffle(&mut v, 7);
        let mut w: Vec<u32> = (0..10).collect();
        shuffle(&mut w, 7);
        assert_eq!(v, w);
        assert_ne!(v, (0..10).collect::<Vec<_>>());
    }
}
