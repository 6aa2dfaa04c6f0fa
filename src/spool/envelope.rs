//! What the spool keeps beside the message bytes: envelope, and per-recipient delivery state.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// Identifier of a spooled message: sortable by arrival, unique per gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(String);

impl QueueId {
    /// A fresh id: microseconds since the epoch and 32 random bits, in upper-case hex.
    pub fn generate() -> QueueId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        QueueId(format!("{micros:014X}{:08X}", rand::random::<u32>()))
    }

    /// Parses an id given by an operator; only the characters ids are made of are accepted,
    /// so an id can never name a path outside the queue.
    pub fn parse(s: &str) -> Option<QueueId> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| QueueId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SMTP envelope and the facts about the client, fixed when the message is accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Reverse path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// Forward paths, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// Address of the sending client.
    pub client_ip: IpAddr,
    /// Name the client gave in HELO/EHLO.
    pub helo: String,
    /// Unix seconds when the message was accepted.
    pub received_at: u64,
    /// The content has 8-bit bytes: the client declared `BODY=8BITMIME`, or sent them
    /// without (seen at acceptance; a message spooled before that was recorded is checked
    /// again when relayed).
    pub body_8bit: bool,
    /// The client declared `SMTPUTF8`.
    pub smtputf8: bool,
    /// Verdict given by the policy at acceptance (`accept`, `tag`, ...).
    pub verdict: String,
    /// Policy score at acceptance.
    pub score: f64,
    /// True for delivery status notifications this gateway generated itself.
    #[serde(default)]
    pub is_dsn: bool,
    /// Symbols hit at acceptance (shown by `quarantine list`).
    #[serde(default)]
    pub rules: Vec<String>,
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not yet delivered.
    Pending,
    /// The internal server answered 250.
    Delivered,
    /// Failed permanently; a DSN was (or will be) generated.
    Failed,
}

/// Mutable delivery bookkeeping, rewritten atomically after each attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Status of each recipient, in envelope order.
    pub rcpt_status: Vec<RcptStatus>,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Unix seconds before which no new attempt is made.
    pub next_attempt: u64,
    /// Last error text from an attempt, for `queue list`.
    pub last_error: Option<String>,
    /// Why each failed recipient failed, kept from the attempt that failed it: the DSN
    /// goes out only once every recipient is settled, maybe attempts later.
    #[serde(default)]
    pub failures: Vec<FailedRecipient>,
    /// Unix seconds since which the message waits for delivery, when not since it was
    /// received (a quarantined message released later): `max_queue_lifetime` counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_since: Option<u64>,
    /// The queue id its DSN is stored under, chosen and saved before the DSN is: after a
    /// crash between storing the DSN and removing this message, recovery sees the DSN
    /// queued and removes this message instead of bouncing it a second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<QueueId>,
    /// The DSN is stored (saved before this message is removed): a removal that failed,
    /// or a crash before it, must not bounce the message again once the DSN has been
    /// delivered and is no longer in the queue to be seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dsn_queued: bool,
    /// Recipients (indexes) that failed temporarily in the round of transactions under
    /// way: a message to more recipients than one transaction carries tries every pending
    /// one once, the next transaction following at once, before it waits out a retry
    /// delay. Without it one full mailbox among the first recipients held back every
    /// recipient after it for each retry delay, until they expired untried (review).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub put_off_this_round: Vec<usize>,
}

/// One recipient that failed permanently, as the DSN reports it (built by
/// `relay::dsn`); kept in the delivery state from the attempt that failed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRecipient {
    /// The recipient address, without brackets.
    pub address: String,
    /// RFC 3463 status, always of class 5 (`5.1.1`).
    pub status: String,
    /// The server's reply (or our own explanation), on one line.
    pub diagnostic: String,
    /// The internal server that gave the reply, when one did.
    pub remote_mta: Option<SocketAddr>,
}

impl DeliveryState {
    /// The state of a message that was never tried.
    pub fn new(recipients: usize) -> DeliveryState {
        DeliveryState {
            rcpt_status: vec![RcptStatus::Pending; recipients],
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            failures: Vec::new(),
            queued_since: None,
            bounce: None,
            dsn_queued: false,
            put_off_this_round: Vec::new(),
        }
    }

    /// Indexes of recipients still waiting for delivery.
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.rcpt_status
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == RcptStatus::Pending)
            .map(|(i, _)| i)
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_parse_back() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert_ne!(a, b);
        assert_eq!(QueueId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn ids_that_could_escape_the_queue_are_refused() {
        assert!(QueueId::parse("../etc/passwd").is_none());
        assert!(QueueId::parse("a/b").is_none());
        assert!(QueueId::parse("").is_none());
    }
}
