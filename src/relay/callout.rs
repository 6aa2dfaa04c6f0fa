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
mod tests {
    use super::*;
    use crate::relay::testing::{config, dead_addr, FakeServer, Script};

    /// A callout with the configuration every question carries.
    struct Probe {
        callout: Callout,
        config: Arc<Config>,
    }

    impl Probe {
        async fn verify(&self, rcpt: &str) -> CalloutAnswer {
            self.callout.verify(rcpt, &self.config).await
        }
    }

    fn callout(servers: &[SocketAddr], overrides: &[(&str, &str)]) -> (Probe, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), servers, overrides);
        let metrics = Arc::new(Metrics::new());
        let callout = Callout::new(metrics.clone());
        (Probe { callout, config }, metrics)
    }

    /// A callout whose `[relay.recipients]` settings `edit` changed.
    fn with_recipients(
        servers: &[SocketAddr],
        edit: impl FnOnce(&mut crate::config::RecipientsConfig),
    ) -> Probe {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = (*config(dir.path(), servers, &[])).clone();
        edit(&mut cfg.relay.recipients);
        Probe {
            callout: Callout::new(Arc::new(Metrics::new())),
            config: Arc::new(cfg),
        }
    }

    /// [`directory`] waiting `delay` before each reply.
    fn slow_directory(delay: Duration) -> Script {
        Script {
            delay,
            ..directory()
        }
    }

    fn directory() -> Script {
        Script {
            rcpt: Arc::new(|a: &str| match a.to_lowercase().as_str() {
                "alice@example.test" => "250 2.1.5 Ok".into(),
                "busy@example.test" => "451 4.3.0 try later".into(),
                _ => "550 5.1.1 no such user".into(),
            }),
            ..Script::default()
        }
    }

    /// Regression (review): when the session running a probe was dropped mid-probe, every
    /// session waiting for its answer probed on its own, none of them joinable: as many
    /// probes of one address as there were waiters. One of them probes, the others join.
    #[tokio::test]
    async fn waiters_of_a_dropped_probe_share_the_next_one() {
        let server = FakeServer::start(slow_directory(Duration::from_millis(300))).await;
        let (c, _) = callout(&[server.addr], &[]);
        let c = Arc::new(c);
        let ask = |c: &Arc<Probe>| {
            let c = c.clone();
            tokio::spawn(async move { c.verify("alice@example.test").await })
        };
        let first = ask(&c);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiters = [ask(&c), ask(&c), ask(&c)];
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Dropped before its probe got past the (slow) greeting.
        first.abort();
        for w in waiters {
            assert_eq!(w.await.unwrap(), CalloutAnswer::Exists);
        }
        let probes = server
            .commands()
            .iter()
            .filter(|c| c.starts_with("RCPT"))
            .count();
        assert_eq!(probes, 1, "{:?}", server.commands());
    }

    /// Regression (review): a `552` at RCPT (a mailbox over quota, which RFC 5321
    /// §4.5.3.1.10 says to read as temporary) was "user unknown": the sender got `550 5.1.1`
    /// for a real user, cached for `negative_ttl`. It is unavailable for now, never cached.
    #[tokio::test]
    async fn a_full_mailbox_is_no_unknown_user() {
        let server = FakeServer::start(Script {
            rcpt: Arc::new(|a: &str| match a {
                "full@example.test" => "552 5.2.2 mailbox full".into(),
                _ => "550 5.1.1 no such user".into(),
            }),
            ..Script::default()
        })
        .await;
        let (c, _) = callout(&[server.addr], &[]);
        let full = c.verify("full@example.test").await;
        assert!(
            matches!(full, CalloutAnswer::Unavailable { .. }),
            "{full:?}"
        );
        assert!(matches!(
            c.verify("nobody@example.test").await,
            CalloutAnswer::Unknown { .. }
        ));
    }

    /// Regression (review): any 5xx to the probe's RCPT was "user unknown", cached for
    /// `negative_ttl`: an internal server refusing null-sender probes by policy
    /// (`554 5.7.1`) got real users answered `550 5.1.1`.
    #[tokio::test]
    async fn a_refusal_for_another_reason_is_no_unknown_user() {
        let server = FakeServer::start(Script {
            rcpt: Arc::new(|a: &str| match a {
                "policy@example.test" => "554 5.7.1 probes not accepted".into(),
                "plain@example.test" => "550 no such user".into(),
                _ => "553 5.1.3 bad address".into(),
            }),
            ..Script::default()
        })
        .await;
        let (c, _) = callout(&[server.addr], &[]);
        let refused = c.verify("policy@example.test").await;
        assert!(
            matches!(refused, CalloutAnswer::Unavailable { .. }),
            "{refused:?}"
        );
        for unknown in ["plain@example.test", "other@example.test"] {
            let answer = c.verify(unknown).await;
            assert!(
                matches!(answer, CalloutAnswer::Unknown { .. }),
                "{answer:?}"
            );
        }
    }

    /// Regression (review): the cache key was Unicode-lowercased, so a refused
    /// `\u{212A}im@example.test` (KELVIN SIGN) was cached as `kim@example.test`, and the
    /// real recipient was refused from the cache for `negative_ttl`.
    #[tokio::test]
    async fn a_unicode_look_alike_is_cached_apart_from_the_real_recipient() {
        let kim_only = Script {
            rcpt: Arc::new(|a: &str| {
                if a.eq_ignore_ascii_case("kim@example.test") {
                    "250 2.1.5 Ok".into()
                } else {
                    "550 5.1.1 no such user".into()
                }
            }),
            smtputf8: true,
            ..Script::default()
        };
        let server = FakeServer::start(kim_only).await;
        let (c, _) = callout(&[server.addr], &[]);
        let forged = c.verify("\u{212A}im@example.test").await;
        assert!(
            matches!(forged, CalloutAnswer::Unknown { .. }),
            "{forged:?}"
        );
        assert_eq!(c.verify("kim@example.test").await, CalloutAnswer::Exists);
    }

    /// Regression (review): the probe's `MAIL FROM:<>` never declared SMTPUTF8, so a
    /// server that offers it (Postfix) refused a non-ASCII recipient with `553 5.6.7`:
    /// a real mailbox got `550 5.1.1 user unknown`, cached for `negative_ttl`.
    #[tokio::test]
    async fn a_utf8_recipient_is_probed_with_smtputf8() {
        let server = FakeServer::start(Script {
            smtputf8: true,
            rcpt: Arc::new(|a: &str| match a {
                "j\u{f6}rg@example.test" => "250 2.1.5 Ok".into(),
                _ => "550 5.1.1 no such user".into(),
            }),
            ..Script::default()
        })
        .await;
        let (c, _) = callout(&[server.addr], &[]);
        let answer = c.verify("j\u{f6}rg@example.test").await;
        assert_eq!(answer, CalloutAnswer::Exists);
        // An ASCII recipient is probed as before.
        assert!(matches!(
            c.verify("nobody@example.test").await,
            CalloutAnswer::Unknown { .. }
        ));
        assert!(server.commands().iter().any(|l| l == "MAIL FROM:<>"));
    }

    /// Regression (review): a recipient past ASCII was probed raw at a server without
    /// SMTPUTF8 (RFC 6531 §3.2 forbids it; delivery never sends it there): a lenient
    /// server's 250 accepted mail that then bounced `5.6.7`, a strict one's `5.1.x` made a
    /// real user unknown though the next server would have taken the mail. Such a server
    /// is passed over; with none other, the answer is unavailable (a 4xx), never cached.
    #[tokio::test]
    async fn a_utf8_recipient_is_asked_only_of_a_server_with_smtputf8() {
        let takes_anything = Script {
            smtputf8: false,
            rcpt: Arc::new(|_: &str| "250 2.1.5 Ok".into()),
            ..Script::default()
        };
        let without = FakeServer::start(takes_anything.clone()).await;
        let (c, _) = callout(&[without.addr], &[]);
        let answer = c.verify("j\u{f6}rg@example.test").await;
        assert!(
            matches!(&answer, CalloutAnswer::Unavailable { reason } if reason.contains("SMTPUTF8")),
            "{answer:?}"
        );
        assert!(
            !without.commands().iter().any(|l| l.starts_with("RCPT")),
            "{:?}",
            without.commands()
        );
        let strict = FakeServer::start(Script {
            smtputf8: false,
            rcpt: Arc::new(|_: &str| "501 5.1.3 bad address syntax".into()),
            ..Script::default()
        })
        .await;
        let with = FakeServer::start(Script {
            smtputf8: true,
            ..takes_anything
        })
        .await;
        let (c, _) = callout(&[strict.addr, with.addr], &[]);
        assert_eq!(
            c.verify("j\u{f6}rg@example.test").await,
            CalloutAnswer::Exists
        );
        assert!(!strict.commands().iter().any(|l| l.starts_with("RCPT")));
    }

    /// Regression (review): the probe did not look for replies out of step, as delivery
    /// does: behind a server's second greeting line every reply was read one step late,
    /// the 250 to MAIL answered RCPT, and an unknown user "existed" (cached an hour:
    /// recipient verification off). Out of step, the server gives no answer.
    #[tokio::test]
    async fn a_probe_whose_replies_run_out_of_step_gets_no_answer() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = tcp.into_split();
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    let _ = w.write_all(b"220 one\r\n250 unsolicited\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply: &[u8] = if line.starts_with("EHLO") {
                            b"250-fake\r\n250 PIPELINING\r\n"
                        } else if line.starts_with("MAIL") {
                            b"250 2.1.0 Ok\r\n"
                        } else if line.starts_with("RCPT") {
                            b"550 5.1.1 no such user\r\n"
                        } else {
                            b"221 bye\r\n"
                        };
                        if w.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let (c, _) = callout(&[addr], &[]);
        let answer = c.verify("nobody@example.test").await;
        assert!(
            matches!(answer, CalloutAnswer::Unavailable { .. }),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn answers_are_probed_once_then_cached_case_insensitively() {
        let server = FakeServer::start(directory()).await;
        let (c, metrics) = callout(&[server.addr], &[]);
        assert_eq!(c.verify("Alice@Example.TEST").await, CalloutAnswer::Exists);
        assert_eq!(c.verify("alice@example.test").await, CalloutAnswer::Exists);
        assert_eq!(server.connections(), 1);
        let unknown = c.verify("nobody@example.test").await;
        assert!(
            matches!(&unknown, CalloutAnswer::Unknown { reply } if reply.contains("5.1.1")),
            "{unknown:?}"
        );
        assert_eq!(c.verify("NOBODY@example.test").await, unknown);
        assert_eq!(server.connections(), 2);
        assert!(server.commands().iter().any(|l| l == "MAIL FROM:<>"));
        let cached = metrics.callouts_total.with_label_values(&["cached"]).get();
        assert_eq!(cached, 2);
    }

    /// Regression (carried review finding): every RCPT of every session could open its
    /// own probe connection, so a dictionary attack over many sessions opened as many
    /// connections to the internal server at once.
    #[tokio::test]
    async fn probes_beyond_the_concurrency_limit_wait_for_a_slot() {
        let server = FakeServer::start(slow_directory(Duration::from_millis(50))).await;
        let c = with_recipients(&[server.addr], |rc| rc.callout_concurrency = 2);
        let rcpts: Vec<String> = (0..6).map(|i| format!("user{i}@example.test")).collect();
        let answers = futures::future::join_all(rcpts.iter().map(|r| c.verify(r))).await;
        for answer in &answers {
            assert!(
                matches!(answer, CalloutAnswer::Unknown { .. }),
                "{answer:?}"
            );
        }
        assert_eq!(server.connections(), 6);
        assert_eq!(server.record.lock().unwrap().most_rcpts_pending, 2);
    }

    /// Regression (review): sessions opened before a reload that changed the limit each
    /// made a fresh set of slots at every switch, so the limit stopped limiting.
    #[tokio::test]
    async fn sessions_of_two_configurations_share_one_set_of_slots() {
        let server = FakeServer::start(slow_directory(Duration::from_millis(100))).await;
        let old = with_recipients(&[server.addr], |rc| rc.callout_concurrency = 1);
        let mut new = (*old.config).clone();
        new.relay.recipients.callout_concurrency = 2;
        let new = Arc::new(new);
        let rcpts: Vec<String> = (0..8).map(|i| format!("user{i}@example.test")).collect();
        let answers = futures::future::join_all(rcpts.iter().enumerate().map(|(i, r)| {
            let config = if i % 2 == 0 { &old.config } else { &new };
            old.callout.verify(r, config)
        }))
        .await;
        assert!(answers
            .iter()
            .all(|a| matches!(a, CalloutAnswer::Unknown { .. })));
        let most = server.record.lock().unwrap().most_rcpts_pending;
        assert!(most <= 2, "{most} probes at once under limits of 1 and 2");
    }

    /// A probe that gets no slot before its deadline is unavailable (a 4xx), not unknown.
    #[tokio::test]
    async fn a_probe_with_no_slot_in_time_is_unavailable() {
        let server = FakeServer::start(slow_directory(Duration::from_millis(300))).await;
        // One slot; the first probe may take 5 s (it takes about 1 s), the second 200 ms.
        let patient = with_recipients(&[server.addr], |rc| {
            rc.callout_concurrency = 1;
            rc.callout_timeout = Duration::from_secs(5);
        });
        let mut hasty = (*patient.config).clone();
        hasty.relay.recipients.callout_timeout = Duration::from_millis(200);
        let hasty = Arc::new(hasty);
        let (first, second) = tokio::join!(patient.verify("first@example.test"), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            patient.callout.verify("second@example.test", &hasty).await
        });
        assert!(matches!(&first, CalloutAnswer::Unknown { .. }), "{first:?}");
        assert!(
            matches!(&second, CalloutAnswer::Unavailable { reason } if reason.contains("callout_concurrency")),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn temporary_answers_are_unavailable_and_never_cached() {
        let server = FakeServer::start(directory()).await;
        let (c, _) = callout(&[server.addr], &[]);
        for _ in 0..2 {
            let a = c.verify("busy@example.test").await;
            assert!(matches!(a, CalloutAnswer::Unavailable { .. }), "{a:?}");
        }
        assert_eq!(server.connections(), 2);
    }

    #[tokio::test]
    async fn unreachable_or_slow_servers_are_unavailable() {
        let dead = dead_addr().await;
        let (c, _) = callout(&[dead], &[]);
        let a = c.verify("alice@example.test").await;
        assert!(matches!(a, CalloutAnswer::Unavailable { .. }), "{a:?}");

        let slow = FakeServer::start(slow_directory(Duration::from_secs(2))).await;
        let c = with_recipients(&[slow.addr], |rc| {
            rc.callout_timeout = Duration::from_millis(100);
        });
        let a = c.verify("alice@example.test").await;
        assert_eq!(
            a,
            CalloutAnswer::Unavailable {
                reason: "callout timed out".into()
            }
        );
    }

    #[tokio::test]
    async fn the_second_server_answers_when_the_first_is_down() {
        let dead = dead_addr().await;
        let server = FakeServer::start(directory()).await;
        let (c, _) = callout(&[dead, server.addr], &[]);
        assert_eq!(c.verify("alice@example.test").await, CalloutAnswer::Exists);
    }

    /// Regression (review): `callout_timeout` bounded the probe of every server together,
    /// so a first internal server that took the connection and never answered (hung, or
    /// dropping packets, `connect_timeout` being longer) used it all: the next server was
    /// never asked and every recipient got `450 4.4.3` while it was up.
    #[tokio::test]
    async fn a_hung_first_server_leaves_time_for_the_next() {
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hung_addr = hung.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = hung.accept().await {
                held.push(stream);
            }
        });
        let server = FakeServer::start(directory()).await;
        let c = with_recipients(&[hung_addr, server.addr], |rc| {
            rc.callout_timeout = Duration::from_secs(1);
        });
        assert_eq!(c.verify("alice@example.test").await, CalloutAnswer::Exists);
        holder.abort();
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_probe() {
        let server = FakeServer::start(slow_directory(Duration::from_millis(50))).await;
        let (c, _) = callout(&[server.addr], &[]);
        let (a, b, d) = tokio::join!(
            c.verify("alice@example.test"),
            c.verify("ALICE@example.test"),
            c.verify("alice@example.test")
        );
        assert_eq!(
            [a, b, d],
            [
                CalloutAnswer::Exists,
                CalloutAnswer::Exists,
                CalloutAnswer::Exists
            ]
        );
        assert_eq!(server.connections(), 1);
    }

    /// Recipient settings with these TTLs and room for two answers.
    fn ttls(positive: Duration, negative: Duration) -> crate::config::RecipientsConfig {
        crate::config::RecipientsConfig {
            lists: Default::default(),
            list_files: Vec::new(),
            callout: true,
            callout_timeout: Duration::from_secs(5),
            positive_ttl: positive,
            negative_ttl: negative,
            cache_size: 2,
            callout_concurrency: 1,
        }
    }

    /// Regression (review): a TTL longer than the clock can count to (the configuration
    /// took `positive_ttl = "300000000000y"`; it now refuses more than a year) overflowed
    /// `Instant` in the cache and panicked: every session whose recipient existed died
    /// at RCPT.
    #[test]
    fn a_ttl_too_long_for_the_clock_keeps_the_answer() {
        let ttl = Duration::from_secs(300_000_000_000 * 365 * 86_400);
        let rc = ttls(ttl, ttl);
        let mut c = Cache::default();
        let now = Instant::now();
        c.put("a".into(), CalloutAnswer::Exists, now, &rc);
        let later = now + Duration::from_secs(3600);
        assert_eq!(c.get("a", later, &rc), Some(CalloutAnswer::Exists));
    }

    #[test]
    fn cache_evicts_oldest_and_expires() {
        let mut c = Cache::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        let rc = ttls(ttl, ttl);
        c.put("a".into(), CalloutAnswer::Exists, now, &rc);
        c.put("b".into(), CalloutAnswer::Exists, now, &rc);
        c.put("a".into(), CalloutAnswer::Exists, now, &rc);
        c.put("c".into(), CalloutAnswer::Exists, now, &rc);
        assert!(c.get("b", now, &rc).is_none());
        assert!(c.get("a", now, &rc).is_some());
        assert!(c.get("c", now, &rc).is_some());
        assert!(c.get("c", now + ttl, &rc).is_none());
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.order.len(), 1);
    }

    /// Regression (review): answers cached before a reload kept the TTL of the old
    /// configuration, and were keyed by the address alone: after `relay.internal` moved,
    /// the old server's answers decided RCPT for up to `positive_ttl`, and a shortened
    /// `negative_ttl` left refusals cached as long as before.
    #[test]
    fn a_reload_that_moves_the_servers_or_shortens_a_ttl_holds_for_cached_answers() {
        let old_server: std::net::SocketAddr = "192.0.2.1:25".parse().unwrap();
        let new_server: std::net::SocketAddr = "192.0.2.2:25".parse().unwrap();
        assert_ne!(
            cache_key("Kim@Example.test", &[old_server]),
            cache_key("kim@example.test", &[new_server])
        );
        assert_eq!(
            cache_key("Kim@Example.test", &[old_server]),
            cache_key("kim@example.test", &[old_server])
        );
        let hour = Duration::from_secs(3600);
        let before = ttls(hour, Duration::from_secs(600));
        let after = ttls(hour, Duration::from_secs(60));
        let mut c = Cache::default();
        let now = Instant::now();
        let refused = CalloutAnswer::Unknown {
            reply: "550 5.1.1 no such user".into(),
        };
        c.put("x".into(), refused.clone(), now, &before);
        let later = now + Duration::from_secs(120);
        assert_eq!(c.get("x", later, &before), Some(refused));
        assert_eq!(c.get("x", later, &after), None);
    }
}
