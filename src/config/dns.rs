//! `[dns]`: the shared resolver every DNS check uses.

use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The shared DNS resolver (`[dns]`; every key optional).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `IP:PORT`; empty means the system configuration (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Longest one lookup waits for an answer, retransmissions included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Wait before the first retransmission of an unanswered query; each later one waits
    /// twice as long as the one before.
    #[serde(with = "humantime_serde")]
    pub retransmit: Duration,
    /// Transmissions of one query at most (the first one and its retransmissions).
    pub attempts: usize,
    /// Cached answers.
    pub cache_size: usize,
    /// Bytes the cached answers may weigh together: the names looked up are often the
    /// sender's to choose, and one answer can weigh 64 KiB.
    pub cache_bytes: usize,
    /// Shortest time a negative answer (NXDOMAIN, NODATA) is cached, whatever its SOA says
    /// (or when it has none).
    #[serde(with = "humantime_serde")]
    pub negative_ttl_min: Duration,
    /// All DNS checks of one SMTP stage together never take longer than this.
    #[serde(with = "humantime_serde")]
    pub stage_deadline: Duration,
    /// Consecutive lookups without an answer (timed out, refused or unreachable) after
    /// which the resolver is marked down and lookups answer "unavailable" at once. A lookup
    /// that timed out while the resolver answered nothing at all marks it down by itself.
    pub down_after: u32,
    /// How long the resolver stays marked down before a background probe asks it again
    /// (and again after each unanswered probe).
    #[serde(with = "humantime_serde")]
    pub down_backoff: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            retransmit: Duration::from_millis(300),
            attempts: 3,
            cache_size: 10_000,
            cache_bytes: 32 << 20,
            negative_ttl_min: Duration::from_secs(60),
            stage_deadline: Duration::from_secs(5),
            down_after: 5,
            down_backoff: Duration::from_secs(5),
        }
    }
}

impl DnsConfig {
    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.attempts == 0 {
            problems.bad("dns.attempts", "must be greater than 0");
        }
        problems.at_most("dns.cache_size", self.cache_size, 10_000_000);
        problems.at_most("dns.cache_bytes", self.cache_bytes, 4 << 30);
        if let Some(a) = self.nameservers.iter().find(|a| a.port() == 0) {
            problems.bad(
                "dns.nameservers",
                &format!("{a}: port 0 is no resolver's port"),
            );
        }
        // Each lookup and each stage adds these to the clock: a century would panic there.
        time_limit(problems, "dns.timeout", self.timeout, true);
        if self.retransmit.is_zero() {
            problems.bad("dns.retransmit", "must be greater than 0");
        } else if self.retransmit > self.timeout {
            problems.bad("dns.retransmit", "must not be longer than dns.timeout");
        }
        if self.negative_ttl_min > Duration::from_secs(86_400) {
            problems.bad("dns.negative_ttl_min", "must not be longer than 1 day");
        }
        time_limit(problems, "dns.stage_deadline", self.stage_deadline, true);
        if self.down_after == 0 {
            problems.bad("dns.down_after", "must be greater than 0");
        }
        time_limit(problems, "dns.down_backoff", self.down_backoff, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &DnsConfig) -> Vec<String> {
        let mut p = Problems::default();
        config.validate(&mut p);
        p.into_lines()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(problems(&DnsConfig::default()).is_empty());
    }

    #[test]
    fn every_bad_key_is_named() {
        let config = DnsConfig {
            attempts: 0,
            retransmit: Duration::from_secs(3),
            down_after: 0,
            down_backoff: Duration::ZERO,
            negative_ttl_min: Duration::from_secs(7 * 86_400),
            ..DnsConfig::default()
        };
        let lines = problems(&config).join("\n");
        for key in [
            "dns.attempts",
            "dns.retransmit",
            "dns.down_after",
            "dns.down_backoff",
            "dns.negative_ttl_min",
        ] {
            assert!(lines.contains(key), "{key} missing from {lines}");
        }
    }

    /// Regression (review): `dns.stage_deadline = "300000000000y"` (meant as "never") was
    /// taken, and every session panicked adding it to the clock; the same `dns.timeout`
    /// panicked every lookup task, so nothing was ever scored.
    #[test]
    fn time_limits_past_a_year_are_refused_by_name() {
        let century = Duration::from_secs(100 * 365 * 86_400);
        let config = DnsConfig {
            timeout: century,
            retransmit: Duration::from_secs(1),
            stage_deadline: century,
            down_backoff: century,
            ..DnsConfig::default()
        };
        let lines = problems(&config).join("\n");
        for key in ["dns.timeout", "dns.stage_deadline", "dns.down_backoff"] {
            assert!(
                lines.contains(&format!("{key}: must be at most a year")),
                "{lines}"
            );
        }
    }
}
