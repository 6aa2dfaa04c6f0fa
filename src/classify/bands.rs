//! The classifier's probability as a symbol the policy scores (`BAYES_00` … `BAYES_999`),
//! so operators re-score bands in rules files and metas combine them with other evidence.

/// One probability band and the symbol it raises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Rule symbol, e.g. `BAYES_99`.
    pub symbol: &'static str,
    /// Inclusive lower bound.
    pub lo: f64,
    /// Exclusive upper bound (1.0 belongs to the last band).
    pub hi: f64,
}

/// The bands, lowest first, with SpamAssassin's edges so existing rules and intuition about
/// `BAYES_99` carry over. Their scores live in `rules/` (fitted with the other rules).
pub const BANDS: [Band; 10] = [
    Band {
        symbol: "BAYES_00",
        lo: 0.0,
        hi: 0.01,
    },
    Band {
        symbol: "BAYES_05",
        lo: 0.01,
        hi: 0.05,
    },
    Band {
        symbol: "BAYES_20",
        lo: 0.05,
        hi: 0.20,
    },
    Band {
        symbol: "BAYES_40",
        lo: 0.20,
        hi: 0.40,
    },
    Band {
        symbol: "BAYES_50",
        lo: 0.40,
        hi: 0.60,
    },
    Band {
        symbol: "BAYES_60",
        lo: 0.60,
        hi: 0.80,
    },
    Band {
        symbol: "BAYES_80",
        lo: 0.80,
        hi: 0.95,
    },
    Band {
        symbol: "BAYES_95",
        lo: 0.95,
        hi: 0.99,
    },
    Band {
        symbol: "BAYES_99",
        lo: 0.99,
        hi: 0.999,
    },
    Band {
        symbol: "BAYES_999",
        lo: 0.999,
        hi: 1.0,
    },
];

/// The band a probability falls in (NaN reads as 0.5, out-of-range values are clamped).
pub fn band(p: f64) -> &'static Band {
    let p = if p.is_nan() { 0.5 } else { p.clamp(0.0, 1.0) };
    BANDS
        .iter()
        .find(|b| p >= b.lo && p < b.hi)
        .unwrap_or(&BANDS[BANDS.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_the_unit_interval() {
        assert_eq!(band(0.0).symbol, "BAYES_00");
        assert_eq!(band(0.5).symbol, "BAYES_50");
        assert_eq!(band(0.995).symbol, "BAYES_99");
        assert_eq!(band(1.0).symbol, "BAYES_999");
        assert_eq!(band(f64::NAN).symbol, "BAYES_50");
        for w in BANDS.windows(2) {
            assert_eq!(w[0].hi, w[1].lo, "bands are contiguous");
        }
    }
}
