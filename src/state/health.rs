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

/// Up/down of the state backend, as last seen by its calls.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    timeouts_in_a_row: AtomicU32,
    /// When the current run of timeouts began.
    timeouts_since: Mutex<Option<Instant>>,
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
            metrics,
        }
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A call succeeded.
    pub fn succeeded(&self) {
        if self.timeouts_in_a_row.swap(0, Ordering::Relaxed) > 0 {
            *self.since() = None;
        }
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("state backend is up again");
            self.metrics.state_up.set(1);
        }
    }

    /// A call failed.
    pub fn failed(&self, error: &StateError) {
        if matches!(error, StateError::Timeout) {
            self.failed_at(Instant::now());
            return;
        }
        self.mark_down(error);
    }

    fn failed_at(&self, now: Instant) {
        let timeouts = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let since = *self.since().get_or_insert(now);
        if timeouts >= TIMEOUTS_BEFORE_DOWN && now.duration_since(since) >= TIMEOUTS_FOR {
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
            tracing::error!(error = %error, "state backend is down");
            self.metrics.state_up.set(0);
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
        health.succeeded();
        health.failed_at(start);
        health.failed_at(later);
        assert!(health.is_up(), "timeouts must be in a row, three of them");
        health.failed_at(later);
        assert!(!health.is_up());
        health.succeeded();
        health.failed(&StateError::Backend("connection refused".into()));
        assert!(!health.is_up());
    }
}
