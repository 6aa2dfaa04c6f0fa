//! Delivery to the internal mail servers: workers, SMTP client, retries, DSNs, recipient callout.
//!
//! Flow: the spool announces every stored message on a channel; [`start`] runs a loop
//! that feeds a [`scheduler::Scheduler`] (new messages first come, deferred ones by due
//! time, never one id to two workers) and `relay.workers` workers. A worker loads the
//! message, hands its pending recipients to the internal servers through
//! [`client::Connection`] (failover in list order, connection reuse, PIPELINING,
//! STARTTLS), and records each recipient's result. 2xx settles a recipient, 5xx fails it,
//! 4xx or a broken connection defers it with exponential backoff. Once every recipient is
//! settled the message leaves the spool, after a [`dsn`] for the failures has been
//! spooled (never to `<>`, never about a DSN). Messages past `relay.max_queue_lifetime`
//! are bounced. [`Callout`] reuses the client for RCPT probes at session time.

pub mod callout;
pub mod client;
pub mod delivery;
pub mod dsn;
mod reachability;
pub mod scheduler;

#[cfg(test)]
mod testing;

/// Longest wait the relay schedules, whatever the configuration says (it takes durations
/// such as `"300000000000y"`): a callout answer's cache time and a retry delay. A
/// `Duration` or an `Instant` much further away cannot be built or added without panic,
/// and the next attempt's time must fit in a `u64` of Unix seconds.
const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

pub use callout::{Callout, CalloutAnswer};
pub use client::{Answers, Capabilities, ClientError, ClientSettings, Connection, Transaction};
pub use delivery::start;
pub use dsn::FailedRecipient;
