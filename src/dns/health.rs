//! Resolver health: the resolver is marked down when a lookup timed out while the resolver
//! answered nothing at all (not to other questions, nor to a probe sent when it timed out)
//! for as long as it waited, or after `dns.down_after` consecutive lookups that could not
//! reach it (refused, unreachable). A timeout while it answered others counts for nothing:
//! it is the silence of the name's own servers, which a sender chooses.
//! While down, lookups the cache cannot answer return "unavailable" at once instead of each
//! waiting out `dns.timeout`. A background probe asks again every `dns.down_backoff`; the
//! first answer (the probe's or a late one) marks it up. Each change is logged once and
//! exported as `mxguard_dns_up`.
//!
//! The silence rule is what makes a dead resolver cheap: concurrent sessions share their
//! questions (one query in flight per name and type), so a burst of sessions waiting on a
//! dead resolver produces only a few distinct timeouts, one stage after another; counting to
//! `down_after` would cost several stage waits, the silence rule costs one.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use tokio::time::Instant;

/// Consecutive failures, the last answer, and the up/down state of the resolver.
#[derive(Debug)]
pub(crate) struct Health {
    consecutive: AtomicU32,
    down: AtomicBool,
    down_after: u32,
    origin: Instant,
    /// [`Health::stamp`] of the last response from any server (0: none yet).
    last_answer: AtomicU64,
    gauge: IntGauge,
    /// Replaced by a reload's resolver: sessions that started before may still use this
    /// one, but `mxguard_dns_up` speaks for the resolver in force only.
    retired: AtomicBool,
}

/// How a lookup failed, for the health count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer within `dns.timeout` to a question asked at this time.
    Timeout {
        /// When the question was first sent.
        asked: Instant,
    },
    /// Refused or unreachable: noticed at once, so only the count applies.
    Unreachable,
}

impl Health {
    /// Healthy to begin with; `gauge` follows the state (1 up, 0 down) once published.
    pub(crate) fn new(down_after: u32, gauge: IntGauge) -> Health {
        Health {
            consecutive: AtomicU32::new(0),
            down: AtomicBool::new(false),
            down_after: down_after.max(1),
            origin: Instant::now(),
            last_answer: AtomicU64::new(0),
            gauge,
            retired: AtomicBool::new(false),
        }
    }

    /// Makes the gauge say this resolver's state: it is the one in force.
    pub(crate) fn publish(&self) {
        self.retired.store(false, Ordering::Release);
        self.set_gauge();
    }

    /// Stops this resolver from writing the gauge: a reload replaced it.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Makes the gauge say the state, unless retired, after each flip (a lookup marking it
    /// down while another's answer marked it up could leave the gauge saying the opposite).
    fn set_gauge(&self) {
        crate::metrics::follow_flag(&self.gauge, || {
            (!self.retired.load(Ordering::Acquire)).then(|| !self.is_down())
        });
    }

    /// Milliseconds after `origin`, plus one so that 0 can mean "never".
    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Whether lookups should skip the network.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A server answered (any response code): the resolver works.
    pub(crate) fn answered(&self) {
        self.last_answer
            .fetch_max(self.stamp(Instant::now()), Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        if self.down.swap(false, Ordering::AcqRel) {
            self.set_gauge();
            tracing::warn!("DNS resolver answers again: DNS checks resume");
        }
    }

    /// Whether no server has answered anything since `asked`.
    pub(crate) fn silent_since(&self, asked: Instant) -> bool {
        self.last_answer.load(Ordering::Relaxed) < self.stamp(asked)
    }

    /// A lookup got no answer. True when this one marked the resolver down: the caller then
    /// starts the probe.
    pub(crate) fn failed(&self, failure: Failure) -> bool {
        let silent = match failure {
            // An answer in the same millisecond as the question counts as one during it.
            Failure::Timeout { asked } => self.silent_since(asked),
            Failure::Unreachable => false,
        };
        // A timeout during which the resolver answered (another question, or the probe
        // sent when it timed out) is the name's own servers' silence, not the resolver's:
        // counted, five lookups under a zone that drops packets, asked together, marked a
        // live resolver down, and every DNS check with it (with `dns_tempfail`, all mail).
        if matches!(failure, Failure::Timeout { .. }) && !silent {
            return false;
        }
        let failures = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if !(silent || failures >= self.down_after) || self.down.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.set_gauge();
        tracing::error!(
            failures,
            silent,
            "DNS resolver marked down: it stopped answering; DNS checks answer unavailable \
             (scoring nothing) until a background probe gets an answer"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn health(down_after: u32) -> (Health, IntGauge) {
        let gauge = IntGauge::new("t_dns_up", "test").unwrap_or_else(|e| panic!("{e}"));
        let health = Health::new(down_after, gauge.clone());
        health.publish();
        (health, gauge)
    }

    /// Regression (review): every resolver wrote the one process-wide gauge, so after a
    /// reload replaced the resolver, the old one (still used by sessions that started
    /// before) going down set `mxguard_dns_up` 0 while the one in force answered.
    #[test]
    fn a_replaced_resolver_does_not_move_the_gauge() {
        let gauge = IntGauge::new("t_dns_up", "test").unwrap_or_else(|e| panic!("{e}"));
        let old = Health::new(1, gauge.clone());
        old.publish();
        let new = Health::new(1, gauge.clone());
        old.retire();
        new.publish();
        assert!(old.failed(Failure::Unreachable));
        assert!(old.is_down());
        assert_eq!(gauge.get(), 1, "the resolver in force answers");
        assert!(new.failed(Failure::Unreachable));
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn down_after_consecutive_failures_up_after_an_answer() {
        let (health, gauge) = health(3);
        assert_eq!(gauge.get(), 1);
        assert!(!health.failed(Failure::Unreachable));
        assert!(!health.failed(Failure::Unreachable));
        health.answered();
        assert!(!health.failed(Failure::Unreachable));
        assert!(!health.failed(Failure::Unreachable));
        assert!(!health.is_down(), "an answer resets the count");
        assert!(health.failed(Failure::Unreachable), "the third in a row");
        assert!(health.is_down());
        assert_eq!(gauge.get(), 0);
        assert!(
            !health.failed(Failure::Unreachable),
            "only the transition starts a probe"
        );
        health.answered();
        assert!(!health.is_down());
        assert_eq!(gauge.get(), 1);
    }

    #[tokio::test]
    async fn a_timeout_with_no_answer_at_all_while_waiting_marks_it_down_at_once() {
        let (health, _) = health(100);
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Another question was answered while this one waited: the resolver lives.
        health.answered();
        assert!(!health.failed(Failure::Timeout { asked }));
        assert!(!health.is_down());
        // Regression (review): such timeouts counted towards `down_after`, so a few
        // lookups under a zone that drops packets, asked together, marked it down.
        for _ in 0..200 {
            assert!(!health.failed(Failure::Timeout { asked }));
        }
        assert!(
            !health.is_down(),
            "timeouts while it answers are not its fault"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(health.failed(Failure::Timeout { asked }));
        assert!(health.is_down());
    }
}
