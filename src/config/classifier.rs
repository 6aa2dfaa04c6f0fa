//! `[classifier]`: the learning classifier (Bayes plus a logistic model over shared token
//! counts in the state backend), its seed, when it votes, autolearning and retraining.

use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Most autolearned messages `classifier.autolearn_max` may keep: a retraining reads the
/// whole ledger into memory (a few kilobytes a message).
const MAX_AUTOLEARNED: usize = 1_000_000;

/// The validated `[classifier]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierConfig {
    /// Classify messages at end of data (symbols `BAYES_00` … `BAYES_999`).
    pub enabled: bool,
    /// A seed (ledger and model) imported into an empty store on start, and read by `scan`
    /// while the store was never used.
    pub seed: Option<PathBuf>,
    /// Learned messages of each class below which the classifier does not vote.
    pub min_learned: u32,
    /// Learn messages whose score (without the classifier's own symbol) is clear enough.
    pub autolearn: bool,
    /// Score from which a message is autolearned as spam.
    pub autolearn_spam: f64,
    /// Score at or below which a message is autolearned as ham.
    pub autolearn_ham: f64,
    /// Most learned messages of one class per message of the other before autolearn stops
    /// adding to the larger class (keeps the classes balanced).
    pub autolearn_balance: f64,
    /// Autolearned messages kept in the ledger; past it the oldest are forgotten at the
    /// next retraining (messages learned by hand are kept).
    pub autolearn_max: usize,
    /// How often a gateway checks whether the ledger changed and retrains the logistic model
    /// (one gateway of the tier does, under a lock).
    pub retrain_interval: Duration,
    /// How often a gateway looks for a newly published model.
    pub model_poll: Duration,
}

/// `[classifier]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawClassifier {
    enabled: bool,
    seed: Option<PathBuf>,
    min_learned: u32,
    autolearn: bool,
    autolearn_spam: f64,
    autolearn_ham: f64,
    autolearn_balance: f64,
    autolearn_max: usize,
    #[serde(with = "humantime_serde")]
    retrain_interval: Duration,
    #[serde(with = "humantime_serde")]
    model_poll: Duration,
}

impl Default for RawClassifier {
    fn default() -> Self {
        Self {
            enabled: true,
            seed: None,
            min_learned: 200,
            autolearn: false,
            autolearn_spam: 12.0,
            autolearn_ham: 0.0,
            autolearn_balance: 3.0,
            autolearn_max: 20_000,
            retrain_interval: Duration::from_secs(600),
            model_poll: Duration::from_secs(30),
        }
    }
}

impl RawClassifier {
    pub(super) fn validate(self, problems: &mut Problems) -> ClassifierConfig {
        if let Some(seed) = &self.seed {
            if !seed.is_file() {
                problems.gateway_file(
                    "classifier.seed",
                    &format!("{} is not a file", seed.display()),
                );
            }
        }
        if !(self.autolearn_spam.is_finite() && self.autolearn_ham.is_finite())
            || self.autolearn_ham >= self.autolearn_spam
        {
            problems.bad(
                "classifier.autolearn_ham",
                "must be a number below classifier.autolearn_spam",
            );
        }
        if !(self.autolearn_balance.is_finite() && self.autolearn_balance >= 1.0) {
            problems.bad("classifier.autolearn_balance", "must be 1.0 or more");
        }
        if !(1..=MAX_AUTOLEARNED).contains(&self.autolearn_max) {
            problems.bad(
                "classifier.autolearn_max",
                &format!("must be from 1 to {MAX_AUTOLEARNED}"),
            );
        }
        time_limit(
            problems,
            "classifier.retrain_interval",
            self.retrain_interval,
            true,
        );
        time_limit(problems, "classifier.model_poll", self.model_poll, true);
        ClassifierConfig {
            enabled: self.enabled,
            seed: self.seed,
            min_learned: self.min_learned,
            autolearn: self.autolearn,
            autolearn_spam: self.autolearn_spam,
            autolearn_ham: self.autolearn_ham,
            autolearn_balance: self.autolearn_balance,
            autolearn_max: self.autolearn_max,
            retrain_interval: self.retrain_interval,
            model_poll: self.model_poll,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2526\"]\n";

    #[test]
    fn defaults_and_bad_keys() {
        let c = Config::from_toml(Path::new("t.toml"), BASE).unwrap();
        assert!(c.classifier.enabled);
        assert_eq!(c.classifier.min_learned, 200);
        assert!(!c.classifier.autolearn);
        let bad = format!(
            "{BASE}[classifier]\nseed = \"/nonexistent/seed\"\nautolearn_ham = 20.0\n\
             autolearn_balance = 0.5\nmodel_poll = \"0s\"\nautolearn_max = 0\n"
        );
        let err = Config::from_toml(Path::new("t.toml"), &bad)
            .unwrap_err()
            .to_string();
        for key in [
            "classifier.seed",
            "classifier.autolearn_ham",
            "classifier.autolearn_balance",
            "classifier.model_poll",
            "classifier.autolearn_max",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
    }
}
