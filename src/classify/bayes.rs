//! Robinson–Fisher ("chi-square") Bayes with SpamAssassin's constants: per-token message
//! counts per class, Robinson's smoothed token probability, the most extreme tokens
//! combined with Fisher's inverse chi-square method.
//!
//! The state is nothing but additive counts, so learning is commutative (safe on several
//! gateways at once) and forgetting is exact. This file only computes; the counts come
//! from the state backend (`store.rs`) or a loaded seed.

/// Robinson's strength of the prior: how many observations the prior `X` is worth.
const S: f64 = 0.16;
/// Robinson's prior probability of a token with no evidence.
const X: f64 = 0.538;
/// Tokens closer than this to 0.5 say nothing and are left out.
const MIN_DEV: f64 = 0.346;
/// At most this many of the most extreme tokens are combined.
const MAX_TOKENS: usize = 150;

/// How many learned messages of each class contained a token (or, for the totals, how
/// many messages of each class were learned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spam messages.
    pub spam: u32,
    /// Ham messages.
    pub ham: u32,
}

impl Counts {
    /// One stored counter holds both classes: spam in the low 32 bits, ham above, so one
    /// `INCRBY` learns a token and one `MGET` key reads it (half the keys of two counters).
    pub fn pack(self) -> i64 {
        i64::from(self.spam) | (i64::from(self.ham) << 32)
    }

    /// The counts of a stored counter. The low half is read as signed, so a half driven
    /// below zero (a forget whose learn lost its counts: a Redis Cluster learn cut between
    /// its ledger swap and its counters) reads as 0 and borrows nothing from the other
    /// class. Each half holds up to 2^31 - 1.
    pub fn unpack(v: i64) -> Counts {
        let spam = i64::from(v as i32);
        let ham = v.wrapping_sub(spam) >> 32;
        Counts {
            spam: spam.clamp(0, i64::from(i32::MAX)) as u32,
            ham: ham.clamp(0, i64::from(u32::MAX)) as u32,
        }
    }

    /// The packed delta that adds (`sign` 1) or removes (`sign` -1) one message of a class.
    pub fn delta(is_spam: bool, sign: i64) -> i64 {
        if is_spam {
            sign
        } else {
            sign << 32
        }
    }
}

/// One token's contribution to a verdict, for `scan --explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The token (`s:free`, `u:d:example.com`).
    pub name: String,
    /// Its spam probability minus 0.5: positive pushes towards spam.
    pub weight: f64,
}

/// What Bayes concluded about a message.
#[derive(Debug, Clone, PartialEq)]
pub struct BayesScore {
    /// Spam probability in `[0, 1]` (0.5 when no token says anything).
    pub probability: f64,
    /// Tokens that took part.
    pub used: usize,
    /// The strongest tokens, most extreme first (as many as asked for).
    pub top: Vec<Contribution>,
}

/// Robinson's smoothed spam probability of a token.
fn token_probability(c: Counts, totals: Counts) -> f64 {
    let spam_ratio = f64::from(c.spam) / f64::from(totals.spam.max(1));
    let ham_ratio = f64::from(c.ham) / f64::from(totals.ham.max(1));
    if spam_ratio + ham_ratio == 0.0 {
        return X;
    }
    let f = spam_ratio / (spam_ratio + ham_ratio);
    let n = f64::from(c.spam) + f64::from(c.ham);
    (S * X + n * f) / (S + n)
}

/// `ln` of the survival function of a chi-square variable with `2n` degrees of freedom at
/// `x2`, `ln(e^-m Σ_{i<n} m^i / i!)` with `m = x2 / 2`, computed in log space so that 150
/// extreme tokens do not underflow to 0.
pub fn ln_chi2q(x2: f64, n: usize) -> f64 {
    let m = x2 / 2.0;
    if m <= 0.0 || n == 0 {
        return 0.0;
    }
    let ln_m = m.ln();
    let terms = || {
        (0..n).scan(-m, move |t, i| {
            if i > 0 {
                *t += ln_m - (i as f64).ln();
            }
            Some(*t)
        })
    };
    let max = terms().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).min(0.0)
}

/// Scores a message from its tokens' counts (`tokens` pairs a hash with its counts) and the
/// learned totals; `name` names a hash for the `explain` strongest tokens.
pub fn score<'n>(
    tokens: &[(u64, Counts)],
    totals: Counts,
    explain: usize,
    name: impl Fn(u64) -> Option<&'n str>,
) -> BayesScore {
    // (deviation, probability, hash)
    let mut clues: Vec<(f64, f64, u64)> = tokens
        .iter()
        .filter(|(_, c)| c.spam > 0 || c.ham > 0)
        .filter_map(|&(h, c)| {
            let p = token_probability(c, totals);
            let dev = (p - 0.5).abs();
            (dev >= MIN_DEV).then_some((dev, p, h))
        })
        .collect();
    if clues.len() > MAX_TOKENS {
        // Ties broken by hash, so every gateway picks the same tokens.
        clues.select_nth_unstable_by(MAX_TOKENS, |a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
        clues.truncate(MAX_TOKENS);
    }
    let n = clues.len();
    if n == 0 {
        return BayesScore {
            probability: 0.5,
            used: 0,
            top: Vec::new(),
        };
    }
    let (mut ln_ham, mut ln_spam) = (0.0f64, 0.0f64);
    for &(_, p, _) in &clues {
        let p = p.clamp(1e-9, 1.0 - 1e-9);
        ln_ham += p.ln();
        ln_spam += (1.0 - p).ln();
    }
    // A small q_s is strong spam evidence, a small q_h strong ham evidence.
    let q_s = ln_chi2q(-2.0 * ln_spam, n).exp();
    let q_h = ln_chi2q(-2.0 * ln_ham, n).exp();
    let probability = ((1.0 + q_h - q_s) / 2.0).clamp(0.0, 1.0);
    let mut top = Vec::new();
    if explain > 0 {
        clues.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
        top = clues
            .iter()
            .take(explain)
            .map(|&(_, p, h)| Contribution {
                name: name(h).map_or_else(|| format!("#{h:016x}"), str::to_string),
                weight: p - 0.5,
            })
            .collect();
    }
    BayesScore {
        probability,
        used: n,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2q_matches_closed_forms() {
        // Q(x2, 2) = exp(-x2/2).
        assert!((ln_chi2q(4.0, 1) - (-2.0)).abs() < 1e-12);
        // Q(x2, 4) = exp(-m)(1 + m).
        let m: f64 = 3.0;
        assert!((ln_chi2q(2.0 * m, 2) - (-m + (1.0 + m).ln())).abs() < 1e-12);
        assert!(ln_chi2q(5000.0, 150).is_finite());
    }

    #[test]
    fn packed_counts_round_trip() {
        let c = Counts { spam: 7, ham: 3 };
        assert_eq!(Counts::unpack(c.pack()), c);
        let learned = Counts::delta(true, 1) * 7 + Counts::delta(false, 1) * 3;
        assert_eq!(learned, c.pack());
        assert_eq!(Counts::unpack(-5), Counts::default());
    }

    /// Regression (review): a spam half taken below zero borrowed from the ham half (ham 3
    /// read as ham 2 and spam 4,294,967,295), and a ham half below zero zeroed the spam
    /// half too. Each half now stands alone.
    #[test]
    fn a_half_below_zero_reads_as_zero_and_leaves_the_other() {
        let ham3 = Counts { spam: 0, ham: 3 }.pack();
        assert_eq!(
            Counts::unpack(ham3 + Counts::delta(true, -1)),
            Counts { spam: 0, ham: 3 }
        );
        let spam5 = Counts { spam: 5, ham: 0 }.pack();
        assert_eq!(
            Counts::unpack(spam5 + Counts::delta(false, -1)),
            Counts { spam: 5, ham: 0 }
        );
        let both = Counts { spam: 7, ham: 9 }.pack() + Counts::delta(true, -1) * 8;
        assert_eq!(Counts::unpack(both), Counts { spam: 0, ham: 9 });
    }

    #[test]
    fn spammy_tokens_give_spam() {
        let totals = Counts {
            spam: 300,
            ham: 300,
        };
        let spammy: Vec<(u64, Counts)> =
            (0..20).map(|h| (h, Counts { spam: 100, ham: 1 })).collect();
        let s = score(&spammy, totals, 3, |_| Some("tok"));
        assert!(s.probability > 0.99, "{s:?}");
        assert_eq!(s.top.len(), 3);
        let hammy: Vec<(u64, Counts)> =
            (0..20).map(|h| (h, Counts { spam: 1, ham: 100 })).collect();
        assert!(score(&hammy, totals, 0, |_| None).probability < 0.01);
        assert_eq!(score(&[], totals, 0, |_| None).probability, 0.5);
    }
}
