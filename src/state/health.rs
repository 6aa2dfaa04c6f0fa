//! Whether the state backend answers: logged once per change (down / up), exported as
//! `mxguard_state_up`, read by `/healthz`.

use super::StateError;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Timeouts in a row that make the backend down, once they have gone on for
/// [`TIMEOUTS_FOR`] without a success: one slow moment under load (many concurrent calls
/// timing out together) is no outage, and marking it down flapped `/healthz` (503 under
/// `on_failure = "closed"`) and the error log. Any other error (refused, reset) says
/// down at once.
const TIMEOUTS_BEFORE_DOWN: u32 = 3;
/// See [`TIMEOUTS_BEFORE_DOWN`].
const TIMEOUTS_FOR: Duration = Duration::from_secs(1);
/// While the backend is down, one call in this long is let through to find out whether
/// it is back (the health watcher also pings); the others fail at once.
const TRY_WHILE_DOWN_EVERY: Duration = Duration::from_secs(1);

/// Up/down of the state backend, as last seen by its calls.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    timeouts_in_a_row: AtomicU32,
    /// When the current run of timeouts began.
    timeouts_since: Mutex<Option<Instant>>,
    /// The backend went down by timing out (not by refusing): calls would each wait out
    /// the timeout, so they fail at once instead (see [`Health::worth_trying`]).
    silent: AtomicBool,
    /// When a call was last let through while silent.
    last_try: Mutex<Option<Instant>>,
    /// The backend went down refusing a write: reads may still succeed (Redis over
    /// `maxmemory`, a replica), and only a write that succeeds brings it up.
    writes_refused: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Health {
    /// Starts up (the first failing call says otherwise).
    pub fn new(metrics: Arc<Metrics>) -> Health {
        metrics.state_up.set(1);
        Health {
            up: AtomicBool::new(true),
            timeouts_in_a_row: AtomicU32::new(0),
            timeouts_since: Mutex::new(None),
            silent: AtomicBool::new(false),
            last_try: Mutex::new(None),
            writes_refused: AtomicBool::new(false),
            metrics,
        }
    }

    /// Whether a call should go to the backend: always, unless it went down by timing out
    /// (a frozen Redis, a host gone without a reset); then one in
    /// [`TRY_WHILE_DOWN_EVERY`]. Each call waited out `state.timeout` before, one after
    /// another, so with Redis frozen a transaction of 50 recipients took 20 s though the
    /// backend was known to be down. A backend that refuses answers at once anyway, and
    /// one refusal (a reset connection) must not fail every call for a second.
    pub fn worth_trying(&self) -> bool {
        self.worth_trying_at(Instant::now())
    }

    fn worth_trying_at(&self, now: Instant) -> bool {
        if self.is_up() || !self.silent.load(Ordering::Relaxed) {
            return true;
        }
        let mut last = self.last_try.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(at) if now.saturating_duration_since(at) < TRY_WHILE_DOWN_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A call succeeded; `wrote` when it was a write.
    pub fn succeeded(&self, wrote: bool) {
        if self.timeouts_in_a_row.swap(0, Ordering::Relaxed) > 0 {
            *self.since() = None;
        }
        self.silent.store(false, Ordering::Relaxed);
        if wrote {
            self.writes_refused.store(false, Ordering::Relaxed);
        } else if self.writes_refused.load(Ordering::Relaxed) {
            // Reads answering says nothing of the writes every check needs: marking it up
            // here flapped `mxguard_state_up`, and the outage alert never fired.
            return;
        }
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("state backend is up again");
            self.publish();
        }
    }

    /// Makes `mxguard_state_up` say the state, after each flip (two calls flipping it at
    /// once left the gauge at 0 with the backend up, and the alert firing).
    fn publish(&self) {
        crate::metrics::follow_flag(&self.metrics.state_up, || Some(self.is_up()));
    }

    /// A call failed; `wrote` when it was a write.
    pub fn failed(&self, error: &StateError, wrote: bool) {
        if matches!(error, StateError::Timeout) {
            self.failed_at(Instant::now());
            return;
        }
        if wrote {
            self.writes_refused.store(true, Ordering::Relaxed);
        }
        self.mark_down(error);
    }

    fn failed_at(&self, now: Instant) {
        let timeouts = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let since = *self.since().get_or_insert(now);
        if timeouts >= TIMEOUTS_BEFORE_DOWN && now.duration_since(since) >= TIMEOUTS_FOR {
            self.silent.store(true, Ordering::Relaxed);
            self.mark_down(&StateError::Timeout);
        }
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A poisoned lock only means a panic elsewhere; the instant is still right.
        self.timeouts_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn mark_down(&self, error: &StateError) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.publish();
            tracing::error!(error = %error, "state backend is down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): one timed-out call under load marked the backend down:
    /// `/healthz` flapped to 503 under `on_failure = "closed"`, with an error logged.
    #[test]
    fn one_slow_call_is_no_outage_a_refusal_is() {
        let health = Health::new(Arc::new(Metrics::new()));
        let start = Instant::now();
        let later = start + TIMEOUTS_FOR;
        // A burst of concurrent timeouts at one moment is no outage.
        for _ in 0..20 {
            health.failed_at(start);
        }
        assert!(health.is_up());
        health.succeeded(true);
        health.failed_at(start);
        health.failed_at(later);
        assert!(health.is_up(), "timeouts must be in a row, three of them");
        health.failed_at(later);
        assert!(!health.is_up());
        health.succeeded(true);
        health.failed(&StateError::Backend("connection refused".into()), true);
        assert!(!health.is_up());
    }

    /// Regression (review): a Redis refusing writes (`OOM` over `maxmemory`, `READONLY`
    /// as a replica) while answering reads was marked down by each write and up by each
    /// read: `mxguard_state_up` flapped, and the shipped alert (down for 2 minutes) never
    /// fired while every greylisting and rate-limit call failed.
    #[test]
    fn reads_that_succeed_do_not_raise_a_backend_that_refuses_writes() {
        let health = Health::new(Arc::new(Metrics::new()));
        let oom = StateError::Backend("OOM command not allowed".into());
        for _ in 0..5 {
            health.failed(&oom, true);
            health.succeeded(false);
            assert!(!health.is_up(), "a read called the backend up");
        }
        // (A delete, or a rate script over its limit, succeeds under `OOM` too: the
        // state calls only count a write that surely wrote; see `proves_writes`.)
        health.succeeded(true);
        assert!(health.is_up());
        // Down by a refused read (a reset connection), any success brings it up.
        health.failed(&StateError::Backend("connection reset".into()), false);
        assert!(!health.is_up());
        health.succeeded(false);
        assert!(health.is_up());
    }

    /// Regression (review): every call waited out `state.timeout` while the backend was
    /// known to be down. Down, one call a second goes through; up, every one.
    #[test]
    fn a_backend_known_down_is_tried_once_a_second() {
        let health = Health::new(Arc::new(Metrics::new()));
        let start = Instant::now();
        assert!((0..5).all(|_| health.worth_trying_at(start)));
        // A refusal is no reason to stop trying: it costs nothing to find out.
        health.failed(&StateError::Backend("connection refused".into()), true);
        assert!((0..5).all(|_| health.worth_trying_at(start)));
        health.succeeded(true);
        // Timeouts in a row over a second: the backend is silent.
        for at in [start, start, start + TIMEOUTS_FOR] {
            health.failed_at(at);
        }
        assert!(!health.is_up());
        assert!(health.worth_trying_at(start));
        assert!(!health.worth_trying_at(start));
        assert!(!health.worth_trying_at(start + TRY_WHILE_DOWN_EVERY / 2));
        assert!(health.worth_trying_at(start + TRY_WHILE_DOWN_EVERY));
        assert!(!health.worth_trying_at(start + TRY_WHILE_DOWN_EVERY));
        health.succeeded(true);
        assert!((0..5).all(|_| health.worth_trying_at(start + TRY_WHILE_DOWN_EVERY)));
    }
}
