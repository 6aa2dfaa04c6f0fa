//! Whether the state backend answers: logged once per change (down / up), exported as
//! `mxguard_state_up`, read by `/healthz`.

use super::StateError;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Timeouts in a row that make the backend down: one slow call under load is no outage,
/// and marking it down flapped `/healthz` (503 under `on_failure = "closed"`) and the
/// error log. Any other error (refused, reset) says down at once.
const TIMEOUTS_BEFORE_DOWN: u32 = 3;

/// Up/down of the state backend, as last seen by its calls.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    timeouts_in_a_row: AtomicU32,
    metrics: Arc<Metrics>,
}

impl Health {
    /// Starts up (the first failing call says otherwise).
    pub fn new(metrics: Arc<Metrics>) -> Health {
        metrics.state_up.set(1);
        Health {
            up: AtomicBool::new(true),
            timeouts_in_a_row: AtomicU32::new(0),
            metrics,
        }
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A call succeeded.
    pub fn succeeded(&self) {
        self.timeouts_in_a_row.store(0, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("state backend is up again");
            self.metrics.state_up.set(1);
        }
    }

    /// A call failed.
    pub fn failed(&self, error: &StateError) {
        if matches!(error, StateError::Timeout) {
            let timeouts = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
            if timeouts < TIMEOUTS_BEFORE_DOWN {
                return;
            }
        }
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
        health.failed(&StateError::Timeout);
        health.failed(&StateError::Timeout);
        assert!(health.is_up());
        health.succeeded();
        health.failed(&StateError::Timeout);
        health.failed(&StateError::Timeout);
        assert!(health.is_up(), "timeouts must be in a row");
        health.failed(&StateError::Timeout);
        assert!(!health.is_up());
        health.succeeded();
        health.failed(&StateError::Backend("connection refused".into()));
        assert!(!health.is_up());
    }
}
