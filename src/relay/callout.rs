//! Recipient callout: ask the internal server with an RCPT probe whether a recipient exists, and cache the answer.
//!
//! Used at RCPT time so the gateway never accepts mail it would later have to bounce.
//! Positive and negative answers are cached (case-insensitively) for their TTLs;
//! "unavailable" never is, so a recovering internal server is noticed at once.
//! Concurrent lookups of one address share a single probe, and at most
//! `callout_concurrency` probes run at once; a probe that cannot get a slot within its
//! deadline is "unavailable".

use super::client::{ClientSettings, Connection, SettingsCache};
use crate::config::Config;
use crate::metrics::Metrics;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout, Instant};

/// What the internal server said about a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutAnswer {
    /// The server accepted RCPT (2xx): the recipient exists.
    Exists,
    /// The server refused RCPT permanently (5xx): the recipient does not exist.
    Unknown {
        /// The server's reply, on one line.
        reply: String,
    },
    /// No answer could be had (4xx, unreachable, timeout): the session should tempfail.
    Unavailable {
        /// Why, for logs and the 4xx reply.
        reason: String,
    },
}

impl CalloutAnswer {
    fn label(&self) -> &'static str {
        match self {
            CalloutAnswer::Exists => "exists",
            CalloutAnswer::Unknown { .. } => "unknown",
            CalloutAnswer::Unavailable { .. } => "unavailable",
        }
    }
}

/// Bounded cache of definite answers, oldest entry evicted first. An entry keeps when it
/// was stored, and lives as long as the TTL of the configuration asking allows, so a
/// reload that shortens `negative_ttl` shortens the answers cached before it (review).
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<String, (CalloutAnswer, Instant, u64)>,
    order: BTreeMap<u64, String>,
    seq: u64,
}

/// How long an answer may be cached under `rc`; `None` for one that is not cached.
fn ttl_of(answer: &CalloutAnswer, rc: &crate::config::RecipientsConfig) -> Option<Duration> {
    match answer {
        CalloutAnswer::Exists => Some(rc.positive_ttl),
        CalloutAnswer::Unknown { .. } => Some(rc.negative_ttl),
        CalloutAnswer::Unavailable { .. } => None,
    }
    .map(|ttl| ttl.min(super::LONGEST_WAIT))
}

/// The cache's key for `rcpt` asked of `servers`: an answer of one set of internal
/// servers says nothing of another's mailboxes (review: after a reload that moved
/// `relay.internal`, the old server's answers decided RCPT for up to `positive_ttl`).
/// ASCII case only: Unicode lowercasing folds look-alikes onto ASCII (KELVIN SIGN to
/// `k`), and a refused `\u{212A}im@` would be cached as the real `kim@`.
fn cache_key(rcpt: &str, servers: &[std::net::SocketAddr]) -> String {
    let mut key = rcpt.to_ascii_lowercase();
    for server in servers {
        key.push(' ');
        key.push_str(&server.to_string());
    }
    key
}

impl Cache {
    fn get(
        &mut self,
        key: &str,
        now: Instant,
        rc: &crate::config::RecipientsConfig,
    ) -> Option<CalloutAnswer> {
        let (answer, stored, seq) = self.entries.get(key)?;
        let fresh =
            ttl_of(answer, rc).is_some_and(|ttl| now.saturating_duration_since(*stored) < ttl);
        if fresh {
            return Some(answer.clone());
        }
        let seq = *seq;
        self.entries.remove(key);
        self.order.remove(&seq);
        None
    }

    fn put(
        &mut self,
        key: String,
        answer: CalloutAnswer,
        now: Instant,
        rc: &crate::config::RecipientsConfig,
    ) {
        let ttl = ttl_of(&answer, rc).unwrap_or_default();
        if rc.cache_size == 0 || ttl.is_zero() {
            return;
        }
        let capacity = rc.cache_size;
        self.seq += 1;
        if let Some((_, _, old)) = self.entries.insert(key.clone(), (answer, now, self.seq)) {
            self.order.remove(&old);
        }
        self.order.insert(self.seq, key);
        while self.entries.len() > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

type Waiters = HashMap<String, watch::Receiver<Option<CalloutAnswer>>>;

/// Recipient verification against the internal servers. Share it behind an `Arc`: it is
/// built once, so its cache survives reloads, and each question carries the configuration
/// of the session asking (its `relay.internal` and `relay.recipients`).
#[derive(Debug)]
pub struct Callout {
    settings: SettingsCache,
    cache: Mutex<Cache>,
    probing: Mutex<Waiters>,
    slots: Mutex<Slots>,
    metrics: Arc<Metrics>,
}

/// The probe slots: one set for the gateway's life, resized to the `callout_concurrency`
/// of the session asking. Sessions opened before a reload ask with the old limit, so a
/// set made afresh at each change handed out all its slots again at every switch between
/// an old and a new session (review: 4 probes at once under limits of 1 and 2). Resized,
/// the probes in flight stay within the largest limit in use.
#[derive(Debug)]
struct Slots {
    semaphore: Arc<Semaphore>,
    /// Permits the semaphore holds in all (free or taken).
    capacity: usize,
}

/// Removes the in-progress marker of a probe however the probing future ends.
struct ProbeGuard<'a> {
    probing: &'a Mutex<Waiters>,
    key: String,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        lock(self.probing).remove(&self.key);
    }
}

/// A poisoned lock only means another task panicked mid-update of a cache; the data
/// is still a valid map, so keep using it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Callout {
    /// A callout client with an empty cache.
    pub fn new(metrics: Arc<Metrics>) -> Callout {
        Callout {
            settings: SettingsCache::default(),
            cache: Mutex::new(Cache::default()),
            probing: Mutex::new(HashMap::new()),
            slots: Mutex::new(Slots {
                semaphore: Arc::new(Semaphore::new(0)),
                capacity: 0,
            }),
            metrics,
        }
    }

    /// Whether `rcpt` (an address without brackets) exists on the internal servers of
    /// `config`: from the cache when known, else by a probe bounded by `callout_timeout`.
    pub async fn verify(&self, rcpt: &str, config: &Arc<Config>) -> CalloutAnswer {
        let rc = &config.relay.recipients;
        let key = cache_key(rcpt, &config.relay.internal);
        if let Some(answer) = lock(&self.cache).get(&key, Instant::now(), rc) {
            self.metrics
                .callouts_total
                .with_label_values(&["cached"])
                .inc();
            return answer;
        }
        // Join a probe already running for this address, or become the one that runs it.
        let tx = loop {
            let joined = {
                let mut probing = lock(&self.probing);
                match probing.get(&key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        probing.insert(key.clone(), rx);
                        Ok(tx)
                    }
                }
            };
            match joined {
                Ok(tx) => break tx,
                Err(mut rx) => {
                    let shared = rx
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|v| v.clone());
                    if let Some(answer) = shared {
                        return answer;
                    }
                    // The probing session was dropped before it answered (its marker is
                    // gone with it): one of those waiting probes now, the others join it.
                    // Each probing on its own sent as many probes as there were waiters.
                }
            }
        };
        let _guard = ProbeGuard {
            probing: &self.probing,
            key: key.clone(),
        };
        let answer = self.probe_and_record(&key, rcpt, config).await;
        let _ = tx.send(Some(answer.clone()));
        answer
    }

    async fn probe_and_record(&self, key: &str, rcpt: &str, config: &Arc<Config>) -> CalloutAnswer {
        let (settings, _) = self.settings.get(config);
        let rc = &config.relay.recipients;
        let started = Instant::now();
        let slots = self.slots(rc.callout_concurrency);
        let answer = match timeout(rc.callout_timeout, slots.acquire_owned()).await {
            Ok(Ok(_slot)) => {
                let left = rc.callout_timeout.saturating_sub(started.elapsed());
                probe(&config.relay.internal, &settings, rcpt, left).await
            }
            _ => CalloutAnswer::Unavailable {
                reason: format!(
                    "{} callouts already running (relay.recipients.callout_concurrency)",
                    rc.callout_concurrency
                ),
            },
        };
        self.metrics
            .callouts_total
            .with_label_values(&[answer.label()])
            .inc();
        lock(&self.cache).put(key.to_owned(), answer.clone(), Instant::now(), rc);
        tracing::debug!(rcpt, answer = answer.label(), "callout");
        answer
    }

    /// The probe slots, resized for a limit of `limit` at once: grown at once, shrunk by
    /// the free slots (taken ones are not given back early).
    fn slots(&self, limit: usize) -> Arc<Semaphore> {
        let want = limit.min(Semaphore::MAX_PERMITS);
        let mut slots = lock(&self.slots);
        if want > slots.capacity {
            slots.semaphore.add_permits(want - slots.capacity);
            slots.capacity = want;
        } else if want < slots.capacity {
            let excess = slots.capacity - want;
            slots.capacity -= slots.semaphore.forget_permits(excess);
        }
        slots.semaphore.clone()
    }
}

/// Probes `servers` in order within `budget` (`callout_timeout`); one that cannot give a
/// definite answer passes the question to the next. Each server gets a fair share of the
/// time left (all of it for the last), so one that takes the connection and never answers
/// cannot use up the time of the servers behind it.
async fn probe(
    servers: &[SocketAddr],
    settings: &ClientSettings,
    rcpt: &str,
    budget: Duration,
) -> CalloutAnswer {
    if rcpt
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
    {
        return CalloutAnswer::Unknown {
            reply: "invalid address".into(),
        };
    }
    let started = Instant::now();
    let mut reason = String::from("no internal server configured");
    for (k, &server) in servers.iter().enumerate() {
        let left = budget.saturating_sub(started.elapsed());
        let share = fair_share(left, servers.len() - k);
        match timeout(share, ask(server, settings, rcpt)).await {
            Ok(Ok(answer)) => return answer,
            Ok(Err(why)) => reason = why,
            Err(_) => reason = "callout timed out".into(),
        }
    }
    CalloutAnswer::Unavailable { reason }
}

/// The time `left` divided among the `servers_left` still to be asked.
fn fair_share(left: Duration, servers_left: usize) -> Duration {
    let n = u32::try_from(servers_left.max(1)).unwrap_or(u32::MAX);
    left / n
}

/// One server's definite answer (exists or unknown), or why it gave none.
async fn ask(
    server: SocketAddr,
    settings: &ClientSettings,
    rcpt: &str,
) -> Result<CalloutAnswer, String> {
    let mut conn = Connection::open(server, settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut result = conn.probe_recipient(rcpt).await;
    if let Ok((_, Some(_))) = &result {
        if let Err(e) = conn.reset_in_step().await {
            result = Err(e);
        }
    }
    // The answer does not wait for the goodbye.
    tokio::spawn(conn.quit());
    match result {
        Ok((mail, _)) if !mail.is_positive() => {
            Err(format!("{server}: MAIL FROM:<> refused: {mail}"))
        }
        Ok((_, Some(reply))) if reply.is_positive() => Ok(CalloutAnswer::Exists),
        // `552` at RCPT (a mailbox over quota) is to be read as temporary (RFC 5321
        // §4.5.3.1.10): the user exists. Read as "unknown", a full mailbox got `550 5.1.1
        // user unknown`, cached for `negative_ttl`.
        Ok((_, Some(reply))) if reply.code == 552 => Err(format!("{server}: {reply}")),
        Ok((_, Some(reply))) if says_no_such_mailbox(&reply) => Ok(CalloutAnswer::Unknown {
            reply: reply.to_string(),
        }),
        // Refused for another reason (a policy on null-sender probes, `554 5.7.1`): no
        // word on the mailbox, so not "user unknown", cached for `negative_ttl` (review).
        Ok((_, Some(reply))) if reply.is_permanent() => {
            tracing::warn!(%server, %reply, "recipient callout refused for a reason other than the mailbox; check that the internal server takes MAIL FROM:<> probes");
            Err(format!("{server}: {reply}"))
        }
        Ok((_, Some(reply))) => Err(format!("{server}: {reply}")),
        Ok((_, None)) => Err(format!("{server}: no reply to RCPT")),
        Err(e) => Err(format!("{server}: {e}")),
    }
}

/// Whether a permanent RCPT refusal says the mailbox does not exist: an address status
/// (`5.1.x`), or, without enhanced codes, `550`, `551` or `553`.
fn says_no_such_mailbox(reply: &crate::mail::Reply) -> bool {
    if !reply.is_permanent() {
        return false;
    }
    if reply.status.is_empty() {
        matches!(reply.code, 550 | 551 | 553)
    } else {
        reply.status.starts_with("5.1.")
    }
}

#[cfg(test)]
mod tests;
