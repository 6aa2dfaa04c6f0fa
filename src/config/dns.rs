//! `[dns]`: the shared resolver every DNS check uses.

use super::problems::Problems;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The shared DNS resolver (`[dns]`; every key optional).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `IP:PORT`; empty means the system configuration (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Deadline of one query to one server.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// Cached answers.
    pub cache_size: usize,
    /// All DNS checks of one SMTP stage together never take longer than this.
    #[serde(with = "humantime_serde")]
    pub stage_deadline: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            cache_size: 10_000,
            stage_deadline: Duration::from_secs(5),
        }
    }
}

impl DnsConfig {
    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.attempts == 0 {
            problems.bad("dns.attempts", "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.bad("dns.timeout", "must be greater than 0");
        }
        if self.stage_deadline.is_zero() {
            problems.bad("dns.stage_deadline", "must be greater than 0");
        }
    }
}
