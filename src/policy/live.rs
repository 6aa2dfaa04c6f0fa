//! The policy in force: one reloadable snapshot that new sessions, the admin listener,
//! delivery and callouts all read, and that a reload swaps atomically.

use super::Policy;
use crate::config::{Config, CurrentConfig};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The current policy snapshot (and through it the current configuration).
#[derive(Debug)]
pub struct LivePolicy(ArcSwap<Policy>);

impl LivePolicy {
    /// Starts with `policy`.
    pub fn new(policy: Arc<Policy>) -> LivePolicy {
        LivePolicy(ArcSwap::new(policy))
    }

    /// The snapshot to keep for a whole piece of work (a session keeps it to its end).
    pub fn get(&self) -> Arc<Policy> {
        self.0.load_full()
    }

    /// A short look at the snapshot without taking a reference count (accept loop).
    pub fn peek(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.0.load()
    }

    /// Puts `policy` in force; returns the one it replaced. Work already running keeps
    /// the snapshot it took.
    pub fn swap(&self, policy: Arc<Policy>) -> Arc<Policy> {
        self.0.swap(policy)
    }
}

impl CurrentConfig for LivePolicy {
    fn current(&self) -> Arc<Config> {
        self.0.load().config().clone()
    }
}
