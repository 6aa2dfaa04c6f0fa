//! Resolver health: after `dns.down_after` consecutive lookups without an answer the resolver
//! is marked down, and lookups that the cache cannot answer return "unavailable" at once
//! instead of each waiting out `dns.timeout`. A background probe asks again every
//! `dns.down_backoff`; the first answer (the probe's or a late one) marks it up. Each
//! change is logged once and exported as `mxguard_dns_up`.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Consecutive failures and the up/down state of the resolver.
#[derive(Debug)]
pub(crate) struct Health {
    consecutive: AtomicU32,
    down: AtomicBool,
    down_after: u32,
    gauge: IntGauge,
}

impl Health {
    /// Healthy to begin with; `gauge` follows the state (1 up, 0 down).
    pub(crate) fn new(down_after: u32, gauge: IntGauge) -> Health {
        gauge.set(1);
        Health {
            consecutive: AtomicU32::new(0),
            down: AtomicBool::new(false),
            down_after: down_after.max(1),
            gauge,
        }
    }

    /// Whether lookups should skip the network.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A server answered (any response code): the resolver works.
    pub(crate) fn answered(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        if self.down.swap(false, Ordering::AcqRel) {
            self.gauge.set(1);
            tracing::warn!("DNS resolver answers again: DNS checks resume");
        }
    }

    /// A lookup got no answer (timeout, refused, unreachable). True when this one marked the
    /// resolver down: the caller then starts the probe.
    pub(crate) fn failed(&self) -> bool {
        let failures = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures < self.down_after || self.down.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.gauge.set(0);
        tracing::error!(
            failures,
            "DNS resolver marked down after consecutive lookups without an answer: DNS \
             checks answer unavailable (scoring nothing) until a background probe gets an answer"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_consecutive_failures_up_after_an_answer() {
        let gauge = IntGauge::new("t_dns_up", "test").unwrap_or_else(|e| panic!("{e}"));
        let health = Health::new(3, gauge.clone());
        assert_eq!(gauge.get(), 1);
        assert!(!health.failed());
        assert!(!health.failed());
        health.answered();
        assert!(!health.failed());
        assert!(!health.failed());
        assert!(!health.is_down(), "an answer resets the count");
        assert!(health.failed(), "the third in a row marks it down");
        assert!(health.is_down());
        assert_eq!(gauge.get(), 0);
        assert!(!health.failed(), "only the transition starts a probe");
        health.answered();
        assert!(!health.is_down());
        assert_eq!(gauge.get(), 1);
    }
}
