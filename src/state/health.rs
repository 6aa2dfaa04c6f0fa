//! Whether the state backend answers: logged once per change (down / up), exported as
//! `mxguard_state_up`, read by `/healthz`.

use super::StateError;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Up/down of the state backend, as last seen by a call.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Health {
    /// Starts up (the first failing call says otherwise).
    pub fn new(metrics: Arc<Metrics>) -> Health {
        metrics.state_up.set(1);
        Health {
            up: AtomicBool::new(true),
            metrics,
        }
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A call succeeded.
    pub fn succeeded(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("state backend is up again");
            self.metrics.state_up.set(1);
        }
    }

    /// A call failed.
    pub fn failed(&self, error: &StateError) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(error = %error, "state backend is down");
            self.metrics.state_up.set(0);
        }
    }
}
