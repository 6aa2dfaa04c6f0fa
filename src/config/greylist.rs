//! `[greylist]`: temporary refusal of first contacts, counted tier-wide in the state backend.

use super::networks::NetworkList;
use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::time::Duration;

/// Where greylisting happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreylistStage {
    /// At each RCPT (classic): the message is never transferred on a first attempt.
    Rcpt,
    /// At end of data, only for messages whose score reaches `min_score`: clean mail is
    /// never delayed.
    Data,
}

/// The validated `[greylist]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct GreylistConfig {
    /// Greylisting is on.
    pub enabled: bool,
    /// How long a retry must wait.
    pub delay: Duration,
    /// How long after the first attempt a retry still passes.
    pub window: Duration,
    /// How long a triplet (and an auto-allowed network) stays known after it passed.
    pub pass_ttl: Duration,
    /// Prefix length of the client network in the key (IPv4).
    pub ipv4_prefix: u8,
    /// Prefix length of the client network in the key (IPv6).
    pub ipv6_prefix: u8,
    /// Passes from one network after which the whole network skips greylisting (0: never).
    pub auto_allow_after: u32,
    /// Where greylisting happens.
    pub stage: GreylistStage,
    /// At the data stage, the score from which a message is greylisted.
    pub min_score: f64,
    /// Client networks never greylisted.
    pub exempt: NetworkList,
}

/// `[greylist]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGreylist {
    enabled: bool,
    #[serde(with = "humantime_serde")]
    delay: Duration,
    #[serde(with = "humantime_serde")]
    window: Duration,
    #[serde(with = "humantime_serde")]
    pass_ttl: Duration,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    auto_allow_after: u32,
    stage: String,
    min_score: f64,
    exempt: Vec<String>,
}

impl Default for RawGreylist {
    fn default() -> Self {
        Self {
            enabled: false,
            delay: Duration::from_secs(300),
            window: Duration::from_secs(4 * 3600),
            pass_ttl: Duration::from_secs(35 * 86400),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            auto_allow_after: 5,
            stage: "rcpt".into(),
            min_score: 3.0,
            exempt: Vec::new(),
        }
    }
}

impl RawGreylist {
    /// The network-list files `exempt` names.
    pub(super) fn named_network_files(&self) -> impl Iterator<Item = std::path::PathBuf> + '_ {
        super::networks::file_entries(&self.exempt)
    }

    pub(super) fn validate(self, problems: &mut Problems) -> GreylistConfig {
        if self.window <= self.delay {
            problems.bad("greylist.window", "must be longer than greylist.delay");
        }
        time_limit(problems, "greylist.delay", self.delay, false);
        time_limit(problems, "greylist.window", self.window, false);
        time_limit(problems, "greylist.pass_ttl", self.pass_ttl, true);
        // A prefix of 0 makes every client one network: one auto-allow for the world.
        if !(1..=32).contains(&self.ipv4_prefix) {
            problems.bad("greylist.ipv4_prefix", "must be between 1 and 32");
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            problems.bad("greylist.ipv6_prefix", "must be between 1 and 128");
        }
        let stage = match self.stage.as_str() {
            "rcpt" => GreylistStage::Rcpt,
            "data" => GreylistStage::Data,
            _ => {
                problems.bad("greylist.stage", "must be \"rcpt\" or \"data\"");
                GreylistStage::Rcpt
            }
        };
        if !self.min_score.is_finite() {
            problems.bad("greylist.min_score", "must be a number");
        }
        let exempt = NetworkList::load("greylist.exempt", &self.exempt, problems);
        GreylistConfig {
            enabled: self.enabled,
            delay: self.delay,
            window: self.window,
            pass_ttl: self.pass_ttl,
            ipv4_prefix: self.ipv4_prefix.min(32),
            ipv6_prefix: self.ipv6_prefix.min(128),
            auto_allow_after: self.auto_allow_after,
            stage,
            min_score: self.min_score,
            exempt,
        }
    }
}
