//! Inbound SMTP: the listener with its admission control, and one session per client
//! that speaks the protocol and asks the policy at every stage.

pub mod admission;
pub mod budget;
pub mod command;
pub mod conn;
pub mod content;
pub mod framing;
pub mod listener;
pub mod proxied;
mod received;
mod session;
pub mod sink;
#[cfg(test)]
mod testing;

pub use admission::Admission;
pub use budget::MemoryBudget;
pub use listener::accept_loop;

use crate::metrics::Metrics;
use crate::policy::{Journal, LivePolicy};
use crate::spool::Spool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every session shares: the policy in force and the gateway's services.
pub struct Server {
    /// The policy in force; a session takes a snapshot when it starts.
    pub policy: Arc<LivePolicy>,
    /// The spool accepted messages go to.
    pub spool: Arc<Spool>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// STARTTLS acceptor, when configured; a reload swaps in one with the certificate
    /// files read again (a renewed certificate needs no restart).
    pub tls: Arc<crate::net::tls::LiveTls>,
    /// Cancelled when the gateway stops.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown grace is over: transfers still running get 421.
    pub stop_now: CancellationToken,
    /// Who may hold a session slot.
    pub admission: Admission,
    /// Memory for messages being received, shared by all sessions.
    pub budget: MemoryBudget,
    /// The last judged messages, for the tier console.
    pub journal: Arc<Journal>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("spool", &self.spool)
            .field("tls", &self.tls.is_on())
            .finish_non_exhaustive()
    }
}
