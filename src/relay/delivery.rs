//! Delivery workers: take spooled messages, relay them to the internal servers, retry, bounce, remove.
//!
//! One loop owns the [`Scheduler`]; `relay.workers` workers each keep one reusable
//! connection. A message leaves the spool only after the internal server's 250 for every
//! recipient (or a permanent failure, which produces a DSN to a real sender).

use super::client::{ClientError, ClientSettings, Connection, SettingsCache, Transaction};
use super::dsn::{self, FailedRecipient};
use super::scheduler::{arrival_from_id, Job, JobResult, Scheduler};
use crate::config::{Config, CurrentConfig};
use crate::mail::Reply;
use crate::metrics::Metrics;
use crate::spool::{unix_now, QueueId, RcptStatus, Spool, SpoolError, SpooledMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the loop looks for a `mxguard queue flush` request file.
const FLUSH_POLL: Duration = Duration::from_secs(2);

/// What every worker shares: the configuration in force (read per message, so a reload
/// reaches delivery at once), the spool and the metrics.
#[derive(Debug)]
pub(crate) struct Relay {
    live: Arc<dyn CurrentConfig>,
    settings: SettingsCache,
    pub(crate) spool: Arc<Spool>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Relay {
    pub(crate) fn new(
        live: Arc<dyn CurrentConfig>,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
    ) -> Relay {
        Relay {
            live,
            settings: SettingsCache::default(),
            spool,
            metrics,
        }
    }

    /// The configuration in force and its client settings.
    fn current(&self) -> (Arc<Config>, ClientSettings) {
        let config = self.live.current();
        let settings = self.settings.get(&config);
        (config, settings)
    }
}

/// Starts the relay: recovers the spool, then delivers everything found and every id
/// announced on `ready`, until `shutdown` is cancelled. After cancellation no new
/// delivery starts; running ones finish (each is bounded by the relay timeouts), idle
/// connections are closed with QUIT, and the returned task ends.
/// `relay.workers` is read once here (changing it needs a restart); everything else is
/// read from `live` for every message.
pub fn start(
    live: Arc<dyn CurrentConfig>,
    spool: Arc<Spool>,
    ready: mpsc::UnboundedReceiver<QueueId>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let relay = Arc::new(Relay::new(live, spool, metrics));
    tokio::spawn(run(relay, ready, shutdown))
}

async fn run(
    relay: Arc<Relay>,
    mut ready: mpsc::UnboundedReceiver<QueueId>,
    shutdown: CancellationToken,
) {
    let workers = relay.live.current().relay.workers.max(1);
    let (job_tx, job_rx) = mpsc::channel::<Job>(workers);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(QueueId, JobResult)>();
    let handles: Vec<JoinHandle<()>> = (0..workers)
        .map(|_| {
            tokio::spawn(worker(
                relay.clone(),
                job_rx.clone(),
                done_tx.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    drop(done_tx);

    let mut sched = Scheduler::new(workers);
    let spool = relay.spool.clone();
    match tokio::task::spawn_blocking(move || spool.recover()).await {
        Ok(Ok(ids)) => {
            if !ids.is_empty() {
                tracing::info!(messages = ids.len(), "recovered spooled messages");
            }
            for id in ids {
                sched.add(id, true);
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "spool recovery failed"),
        Err(e) => tracing::error!(error = %e, "spool recovery task failed"),
    }

    let mut flush_tick = tokio::time::interval(FLUSH_POLL);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ready_open = true;
    loop {
        sched.promote(Instant::now());
        while let Some(job) = sched.next_job() {
            if let Err(e) = job_tx.try_send(job) {
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                sched.unsend(job);
                break;
            }
        }
        update_gauges(&relay.metrics, &sched);
        let wake = sched.next_wakeup();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((id, outcome)) = done_rx.recv() => {
                sched.complete(id, outcome, Instant::now());
            }
            id = ready.recv(), if ready_open => match id {
                Some(id) => sched.add(id, false),
                None => ready_open = false,
            },
            _ = sleep_until_opt(wake) => {}
            _ = flush_tick.tick() => {
                if take_flush_request(&relay.spool) {
                    tracing::info!(messages = sched.len(), "queue flush requested");
                    sched.flush();
                    // Messages put into the queue by another process (`quarantine release`)
                    // are only known from the directory.
                    match relay.spool.ids() {
                        Ok(ids) => ids.into_iter().for_each(|id| sched.add(id, false)),
                        Err(e) => tracing::warn!(error = %e, "cannot list the queue on flush"),
                    }
                }
            }
        }
    }
    drop(job_tx);
    for h in handles {
        let _ = h.await;
    }
    update_gauges(&relay.metrics, &sched);
    tracing::info!("relay stopped");
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Removes the flush request file if present; true when there was one.
fn take_flush_request(spool: &Spool) -> bool {
    let path = spool.flush_request_path();
    if !path.exists() {
        return false;
    }
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove flush request");
        }
    }
    true
}

fn update_gauges(metrics: &Metrics, sched: &Scheduler) {
    metrics.spool_messages.set(sched.len() as i64);
    let oldest = sched
        .oldest()
        .and_then(arrival_from_id)
        .map(|t| unix_now().saturating_sub(t))
        .unwrap_or(0);
    metrics.spool_oldest_seconds.set(oldest as i64);
}

async fn worker(
    relay: Arc<Relay>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    done: mpsc::UnboundedSender<(QueueId, JobResult)>,
    shutdown: CancellationToken,
) {
    let mut conn: Option<Connection> = None;
    loop {
        let idle = relay.live.current().relay.idle_timeout;
        let idle_deadline = conn.as_ref().map(|c| c.last_used() + idle);
        let next = async { jobs.lock().await.recv().await };
        let job = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until_opt(idle_deadline) => {
                if let Some(c) = conn.take() {
                    tracing::debug!(server = %c.server(), "closing idle relay connection");
                    c.quit().await;
                }
                continue;
            }
            job = next => job,
        };
        let Some(job) = job else { break };
        let id = job.id.clone();
        let outcome = attempt(&relay, &mut conn, &job).await;
        let _ = done.send((id, outcome));
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// Retry delay after the `attempts`-th attempt:
/// `min(retry_initial * retry_factor^(attempts-1), retry_max)`, give or take 10 %.
pub(crate) fn retry_delay(config: &Config, attempts: u32) -> Duration {
    let r = &config.relay;
    let exp = attempts.saturating_sub(1).min(1000) as i32;
    let base = r.retry_initial.as_secs_f64() * r.retry_factor.powi(exp);
    let max = r.retry_max.as_secs_f64();
    let jittered = base.min(max) * rand::random_range(0.9..1.1);
    Duration::from_secs_f64(jittered.min(max).max(0.0))
}

/// One delivery attempt for one message, start to finish: load, deliver the pending
/// recipients, record the result, then remove, defer or bounce.
pub(crate) async fn attempt(relay: &Relay, conn: &mut Option<Connection>, job: &Job) -> JobResult {
    let (config, settings) = relay.current();
    let spool = relay.spool.clone();
    let id = job.id.clone();
    let mut msg = match tokio::task::spawn_blocking(move || spool.load(&id)).await {
        Ok(Ok(m)) => m,
        Ok(Err(SpoolError::NotFound(_))) => return JobResult::Abandoned,
        Ok(Err(e)) => {
            tracing::error!(queue_id = %job.id, error = %e, "cannot load spooled message; left in place");
            return JobResult::Abandoned;
        }
        Err(e) => {
            tracing::error!(queue_id = %job.id, error = %e, "spool load task failed");
            return JobResult::Abandoned;
        }
    };
    let now = unix_now();
    if job.honor_next_attempt && msg.state.next_attempt > now {
        return JobResult::Deferred(Duration::from_secs(msg.state.next_attempt - now));
    }
    if msg.state.rcpt_status.len() != msg.envelope.rcpt_to.len() {
        tracing::error!(queue_id = %msg.id, "delivery state does not match the envelope; left in place");
        return JobResult::Abandoned;
    }

    let started = Instant::now();
    let pending: Vec<usize> = msg.state.pending().collect();
    let recipients: Vec<String> = pending
        .iter()
        .map(|&i| msg.envelope.rcpt_to[i].clone())
        .collect();
    let mut failures = Vec::new();
    let mut temp_error: Option<String> = None;
    let mut server: Option<SocketAddr> = None;
    let mut reply_summary = String::new();
    if !pending.is_empty() {
        let targets = if msg.envelope.is_dsn {
            &config.relay.dsn_via
        } else {
            &config.relay.internal
        };
        let tx = Transaction {
            mail_from: &msg.envelope.mail_from,
            recipients: &recipients,
            body: &msg.body,
            body_8bit: msg.envelope.body_8bit,
            smtputf8: msg.envelope.smtputf8,
        };
        match deliver(&config, &settings, conn, targets, &tx).await {
            Ok((srv, replies)) => {
                server = Some(srv);
                reply_summary = summarize(&replies);
                for (k, reply) in replies.iter().enumerate() {
                    let Some(&i) = pending.get(k) else { continue };
                    if reply.is_positive() {
                        msg.state.rcpt_status[i] = RcptStatus::Delivered;
                    } else if reply.is_permanent() {
                        msg.state.rcpt_status[i] = RcptStatus::Failed;
                        failures.push(FailedRecipient::from_reply(
                            &msg.envelope.rcpt_to[i],
                            reply,
                            Some(srv),
                        ));
                    } else if temp_error.is_none() {
                        temp_error = Some(reply.to_string());
                    }
                }
            }
            Err((srv, e)) => {
                server = srv;
                reply_summary = e.to_string();
                temp_error = Some(e.to_string());
            }
        }
    }
    msg.state.attempts += 1;

    // A message past its lifetime that still fails temporarily is bounced.
    let still_pending: Vec<usize> = msg.state.pending().collect();
    let age = Duration::from_secs(now.saturating_sub(msg.envelope.received_at));
    let expired = !still_pending.is_empty() && age >= config.relay.max_queue_lifetime;
    if expired {
        let last = temp_error
            .clone()
            .or_else(|| msg.state.last_error.clone())
            .unwrap_or_else(|| "temporary failure".into());
        for &i in &still_pending {
            msg.state.rcpt_status[i] = RcptStatus::Failed;
            failures.push(FailedRecipient::expired(
                &msg.envelope.rcpt_to[i],
                &last,
                server,
            ));
        }
    }

    let deferred = !expired && !still_pending.is_empty();
    let result = if deferred {
        "deferred"
    } else if msg.state.rcpt_status.contains(&RcptStatus::Failed) {
        "failed"
    } else {
        "delivered"
    };
    let elapsed = started.elapsed();
    relay
        .metrics
        .relay_attempts_total
        .with_label_values(&[result])
        .inc();
    relay
        .metrics
        .relay_duration_seconds
        .with_label_values(&[result])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        queue_id = %msg.id,
        from = %msg.envelope.mail_from,
        to = %recipients.join(","),
        server = %server.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        result,
        reply = %reply_summary,
        attempt = msg.state.attempts,
        duration_ms = elapsed.as_millis() as u64,
        "delivery attempt"
    );

    if deferred {
        let delay = retry_delay(&config, msg.state.attempts);
        return defer(relay, &mut msg, temp_error, delay);
    }
    settle(relay, &config, &mut msg, failures).await
}

/// Records a temporary failure and returns when to try again.
fn defer(
    relay: &Relay,
    msg: &mut SpooledMessage,
    error: Option<String>,
    delay: Duration,
) -> JobResult {
    let ceil_secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    msg.state.next_attempt = unix_now() + ceil_secs;
    if error.is_some() {
        msg.state.last_error = error;
    }
    if let Err(e) = relay.spool.save_state(&msg.id, &msg.state) {
        tracing::error!(queue_id = %msg.id, error = %e, "cannot save delivery state");
    }
    JobResult::Deferred(delay)
}

/// Every recipient is settled: bounce the failures (when a DSN is due), then remove.
async fn settle(
    relay: &Relay,
    config: &Config,
    msg: &mut SpooledMessage,
    mut failures: Vec<FailedRecipient>,
) -> JobResult {
    let any_failed = msg.state.rcpt_status.contains(&RcptStatus::Failed);
    if any_failed {
        // Failures settled in an earlier attempt whose DSN was not stored (crash, full
        // disk) have no reply any more; report them with the last error known.
        for (i, status) in msg.state.rcpt_status.iter().enumerate() {
            let addr = &msg.envelope.rcpt_to[i];
            if *status == RcptStatus::Failed && !failures.iter().any(|f| &f.address == addr) {
                let diag = msg
                    .state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "delivery failed".into());
                failures.push(FailedRecipient::from_reply(
                    addr,
                    &Reply::new(554, "5.0.0", diag),
                    None,
                ));
            }
        }
        // Keep the settled statuses on disk first: a crash from here on must not lead
        // to a second delivery to recipients that already have the message.
        if let Some(f) = failures.first() {
            msg.state.last_error = Some(f.diagnostic.clone());
        }
        if let Err(e) = relay.spool.save_state(&msg.id, &msg.state) {
            tracing::error!(queue_id = %msg.id, error = %e, "cannot save delivery state");
        }
        if msg.envelope.is_dsn {
            tracing::warn!(
                queue_id = %msg.id,
                to = %msg.envelope.rcpt_to.join(","),
                "DSN failed permanently; dropped"
            );
        } else if msg.envelope.mail_from.is_empty() {
            tracing::info!(queue_id = %msg.id, "permanent failure for a null-sender message; no DSN");
        } else {
            let hostname = &config.server.hostname;
            if let Err(e) = dsn::queue(&relay.spool, &relay.metrics, hostname, msg, &failures).await
            {
                tracing::error!(queue_id = %msg.id, error = %e, "cannot queue DSN; will retry");
                let delay = retry_delay(config, msg.state.attempts);
                return defer(relay, msg, None, delay);
            }
        }
    }
    match relay.spool.remove(&msg.id) {
        Ok(()) | Err(SpoolError::NotFound(_)) => {}
        Err(e) => {
            tracing::error!(queue_id = %msg.id, error = %e, "cannot remove delivered message")
        }
    }
    JobResult::Finished
}

/// All distinct replies, in order, on one line.
fn summarize(replies: &[Reply]) -> String {
    let mut texts: Vec<String> = Vec::new();
    for r in replies {
        let t = r.to_string();
        if !texts.contains(&t) {
            texts.push(t);
        }
    }
    texts.join(" | ")
}

/// Hands one transaction to the first working server of `targets`, reusing the worker's
/// connection when it goes to one of them. A failure before the body was handed over
/// moves on to the next server; a reused connection the server had closed is replaced.
/// Returns the server that answered with the per-recipient replies.
async fn deliver(
    config: &Config,
    settings: &ClientSettings,
    slot: &mut Option<Connection>,
    targets: &[SocketAddr],
    tx: &Transaction<'_>,
) -> Result<(SocketAddr, Vec<Reply>), (Option<SocketAddr>, ClientError)> {
    let idle = config.relay.idle_timeout;
    let mut start = 0;
    let mut last: Option<(Option<SocketAddr>, ClientError)> = None;
    if let Some(mut c) = slot.take() {
        let server = c.server();
        if targets.contains(&server) && c.last_used().elapsed() < idle {
            match c.send(tx).await {
                Ok(replies) => {
                    *slot = Some(c);
                    return Ok((server, replies));
                }
                Err(e) if e.stale_connection() => {
                    tracing::debug!(%server, error = %e, "reused connection was closed; reconnecting");
                }
                Err(e) if e.after_body() => return Err((Some(server), e)),
                Err(e) => {
                    start = targets
                        .iter()
                        .position(|s| *s == server)
                        .map_or(0, |p| p + 1);
                    last = Some((Some(server), e));
                }
            }
        } else {
            c.quit().await;
        }
    }
    while start < targets.len() {
        let mut c = match Connection::connect_any(&targets[start..], settings).await {
            Ok(c) => c,
            Err(e) => {
                last = Some((None, e));
                break;
            }
        };
        let server = c.server();
        match c.send(tx).await {
            Ok(replies) => {
                *slot = Some(c);
                return Ok((server, replies));
            }
            Err(e) => {
                let after_body = e.after_body();
                last = Some((Some(server), e));
                if after_body {
                    break;
                }
                start += targets[start..]
                    .iter()
                    .position(|s| *s == server)
                    .map_or(targets.len(), |p| p + 1);
            }
        }
    }
    Err(last.unwrap_or((None, ClientError::NoServer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::testing::{config, dead_addr, envelope, wait_until, FakeServer, Script};
    use crate::spool::Envelope;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tempfile::TempDir;

    fn fixed(config: Arc<Config>) -> Arc<dyn CurrentConfig> {
        Arc::new(crate::config::FixedConfig(config))
    }

    struct Gateway {
        _dir: TempDir,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        handle: Option<JoinHandle<()>>,
    }

    impl Gateway {
        fn open() -> (Gateway, mpsc::UnboundedReceiver<QueueId>) {
            let dir = tempfile::tempdir().unwrap();
            let (spool, ready) = Spool::open(dir.path()).unwrap();
            let gw = Gateway {
                _dir: dir,
                spool: Arc::new(spool),
                metrics: Arc::new(Metrics::new()),
                shutdown: CancellationToken::new(),
                handle: None,
            };
            (gw, ready)
        }

        fn config(&self, internal: &[SocketAddr], overrides: &[(&str, &str)]) -> Arc<Config> {
            config(self.spool.dir(), internal, overrides)
        }

        fn start(&mut self, config: Arc<Config>, ready: mpsc::UnboundedReceiver<QueueId>) {
            self.handle = Some(start(
                fixed(config),
                self.spool.clone(),
                ready,
                self.metrics.clone(),
                self.shutdown.clone(),
            ));
        }

        async fn store(&self, env: &Envelope) -> QueueId {
            self.spool
                .store(env, b"Subject: test\r\n\r\nbody\r\n")
                .await
                .unwrap()
        }

        fn queue_len(&self) -> usize {
            self.spool.ids().unwrap().len()
        }

        fn count(&self, result: &str) -> u64 {
            self.metrics
                .relay_attempts_total
                .with_label_values(&[result])
                .get()
        }

        async fn stop(mut self) {
            self.shutdown.cancel();
            if let Some(h) = self.handle.take() {
                tokio::time::timeout(Duration::from_secs(10), h)
                    .await
                    .expect("relay stops after cancel")
                    .unwrap();
            }
        }
    }

    fn refuse(prefix: &'static str, reply: &'static str) -> Script {
        Script {
            rcpt: Arc::new(move |a: &str| {
                if a.starts_with(prefix) {
                    reply.into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            ..Script::default()
        }
    }

    #[tokio::test]
    async fn messages_are_delivered_over_one_connection_and_leave_the_spool() {
        let server = FakeServer::start(Script::default()).await;
        let (mut gw, ready) = Gateway::open();
        let cfg = gw.config(&[server.addr], &[("workers", "1")]);
        gw.start(cfg, ready);
        gw.store(&envelope("s@example.org", &["a@example.test"]))
            .await;
        gw.store(&envelope("s@example.org", &["b@example.test"]))
            .await;
        wait_until("both delivered", || server.messages().len() == 2).await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        wait_until("gauge updated", || gw.metrics.spool_messages.get() == 0).await;
        assert_eq!(server.connections(), 1);
        assert_eq!(gw.count("delivered"), 2);
        gw.stop().await;
        // The idle connection was closed politely on shutdown.
        wait_until("QUIT sent", || {
            server.commands().last().map(String::as_str) == Some("QUIT")
        })
        .await;
    }

    #[tokio::test]
    async fn messages_found_at_start_are_delivered() {
        let server = FakeServer::start(Script::default()).await;
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _ready) = Spool::open(dir.path()).unwrap();
            spool
                .store(&envelope("s@example.org", &["a@example.test"]), b"x\r\n")
                .await
                .unwrap();
        }
        let (spool, ready) = Spool::open(dir.path()).unwrap();
        let spool = Arc::new(spool);
        let shutdown = CancellationToken::new();
        let handle = start(
            fixed(config(dir.path(), &[server.addr], &[])),
            spool.clone(),
            ready,
            Arc::new(Metrics::new()),
            shutdown.clone(),
        );
        wait_until("recovered message delivered", || {
            server.messages().len() == 1
        })
        .await;
        wait_until("spool empty", || spool.ids().unwrap().is_empty()).await;
        shutdown.cancel();
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn delivery_fails_over_to_the_second_server() {
        let dead = dead_addr().await;
        let server = FakeServer::start(Script::default()).await;
        let (mut gw, ready) = Gateway::open();
        let cfg = gw.config(&[dead, server.addr], &[]);
        gw.start(cfg, ready);
        gw.store(&envelope("s@example.org", &["a@example.test"]))
            .await;
        wait_until("delivered via the second server", || {
            server.messages().len() == 1
        })
        .await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        gw.stop().await;
    }

    /// A server that answers the first RCPT with `first` and every later one with 250.
    fn rcpt_fails_once(first: &'static str) -> Script {
        let calls = Arc::new(AtomicUsize::new(0));
        Script {
            rcpt: Arc::new(move |_| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    first.into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            ..Script::default()
        }
    }

    #[tokio::test]
    async fn temporary_failure_defers_with_backoff_then_delivers() {
        let server = FakeServer::start(rcpt_fails_once("451 4.3.0 try again later")).await;
        let (mut gw, ready) = Gateway::open();
        let cfg = gw.config(&[server.addr], &[]);
        let id = gw
            .store(&envelope("s@example.org", &["a@example.test"]))
            .await;

        let before = unix_now();
        let relay = Relay::new(fixed(cfg.clone()), gw.spool.clone(), gw.metrics.clone());
        let job = Job {
            id: id.clone(),
            honor_next_attempt: false,
        };
        let outcome = attempt(&relay, &mut None, &job).await;
        assert!(matches!(outcome, JobResult::Deferred(_)), "{outcome:?}");
        let state = gw.spool.load(&id).unwrap().state;
        assert_eq!(state.attempts, 1);
        assert!(state.next_attempt > before);
        assert_eq!(state.rcpt_status, vec![RcptStatus::Pending]);
        assert!(state.last_error.unwrap().contains("451 4.3.0"));
        assert_eq!(gw.count("deferred"), 1);
        assert!(server.messages().is_empty());

        gw.start(cfg, ready);
        wait_until("delivered on retry", || server.messages().len() == 1).await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        assert_eq!(gw.count("delivered"), 1);
        gw.stop().await;
    }

    #[tokio::test]
    async fn broken_or_slow_servers_defer_the_message() {
        let dropper = FakeServer::start(Script {
            drop_connection: true,
            ..Script::default()
        })
        .await;
        let slow = FakeServer::start(Script {
            delay: Duration::from_millis(500),
            ..Script::default()
        })
        .await;
        for (server, expect) in [(&dropper, "banner"), (&slow, "timed out")] {
            let (gw, _ready) = Gateway::open();
            let cfg = gw.config(&[server.addr], &[("command_timeout", "\"100ms\"")]);
            let id = gw
                .store(&envelope("s@example.org", &["a@example.test"]))
                .await;
            let relay = Relay::new(fixed(cfg), gw.spool.clone(), gw.metrics.clone());
            let job = Job {
                id: id.clone(),
                honor_next_attempt: false,
            };
            let outcome = attempt(&relay, &mut None, &job).await;
            assert!(matches!(outcome, JobResult::Deferred(_)), "{outcome:?}");
            let state = gw.spool.load(&id).unwrap().state;
            assert_eq!(state.attempts, 1);
            let err = state.last_error.unwrap();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[tokio::test]
    async fn one_refused_recipient_bounces_while_the_others_are_delivered() {
        let server =
            FakeServer::start(refuse("bad@", "550 5.1.1 <bad@example.test>: no such user")).await;
        let (mut gw, ready) = Gateway::open();
        let cfg = gw.config(&[server.addr], &[]);
        gw.start(cfg, ready);
        gw.store(&envelope(
            "s@example.org",
            &["a@example.test", "bad@example.test", "c@example.test"],
        ))
        .await;
        wait_until("message and DSN delivered", || server.messages().len() == 2).await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        let msgs = server.messages();
        assert_eq!(msgs[0].rcpt_to, ["a@example.test", "c@example.test"]);
        let dsn = &msgs[1];
        assert_eq!(dsn.mail_from, "");
        assert_eq!(dsn.rcpt_to, ["s@example.org"]);
        let text = String::from_utf8_lossy(&dsn.data);
        assert!(text.contains("report-type=delivery-status"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; bad@example.test"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(!text.contains("Final-Recipient: rfc822; a@example.test"));
        assert_eq!(gw.metrics.dsn_sent_total.get(), 1);
        gw.stop().await;
    }

    #[tokio::test]
    async fn no_dsn_for_the_null_sender_or_about_a_dsn() {
        let server = FakeServer::start(refuse("bad@", "550 5.1.1 no such user")).await;
        let (mut gw, ready) = Gateway::open();
        let cfg = gw.config(&[server.addr], &[]);
        gw.start(cfg, ready);
        gw.store(&envelope("", &["a@example.test", "bad@example.test"]))
            .await;
        let mut dsn = envelope("", &["bad@example.test"]);
        dsn.is_dsn = true;
        gw.store(&dsn).await;
        wait_until("first message delivered", || server.messages().len() == 1).await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        assert_eq!(gw.count("failed"), 2);
        assert_eq!(gw.metrics.dsn_sent_total.get(), 0);
        assert_eq!(server.messages().len(), 1);
        gw.stop().await;
    }

    #[tokio::test]
    async fn a_message_past_its_lifetime_is_bounced_via_dsn_via() {
        let internal = FakeServer::start(refuse("", "451 4.3.0 mailbox busy")).await;
        let dsn_server = FakeServer::start(Script::default()).await;
        let (mut gw, ready) = Gateway::open();
        let via = format!("[\"{}\"]", dsn_server.addr);
        let cfg = gw.config(
            &[internal.addr],
            &[("max_queue_lifetime", "\"1h\""), ("dsn_via", &via)],
        );
        gw.start(cfg, ready);
        let mut env = envelope("s@example.org", &["a@example.test"]);
        env.received_at -= 2 * 3600;
        gw.store(&env).await;
        wait_until("DSN delivered", || dsn_server.messages().len() == 1).await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        let dsn = &dsn_server.messages()[0];
        assert_eq!(dsn.mail_from, "");
        assert_eq!(dsn.rcpt_to, ["s@example.org"]);
        let text = String::from_utf8_lossy(&dsn.data);
        assert!(text.contains("Status: 5.4.7"), "{text}");
        assert!(text.contains("451 4.3.0 mailbox busy"), "{text}");
        assert!(internal.messages().is_empty());
        gw.stop().await;
    }

    #[tokio::test]
    async fn a_flush_request_retries_deferred_messages_at_once() {
        let server = FakeServer::start(rcpt_fails_once("451 4.3.0 later")).await;
        let (mut gw, ready) = Gateway::open();
        let cfg = gw.config(
            &[server.addr],
            &[("retry_initial", "\"1h\""), ("retry_max", "\"1h\"")],
        );
        gw.start(cfg, ready);
        gw.store(&envelope("s@example.org", &["a@example.test"]))
            .await;
        wait_until("first attempt deferred", || gw.count("deferred") == 1).await;
        std::fs::write(gw.spool.flush_request_path(), b"").unwrap();
        wait_until("delivered after flush", || server.messages().len() == 1).await;
        wait_until("spool empty", || gw.queue_len() == 0).await;
        assert!(!gw.spool.flush_request_path().exists());
        gw.stop().await;
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &["127.0.0.1:25".parse().unwrap()],
            &[("retry_initial", "\"60s\""), ("retry_max", "\"1h\"")],
        );
        let d1 = retry_delay(&cfg, 1).as_secs_f64();
        let d3 = retry_delay(&cfg, 3).as_secs_f64();
        let d50 = retry_delay(&cfg, 50).as_secs_f64();
        assert!((54.0..=66.0).contains(&d1), "{d1}");
        assert!((216.0..=264.0).contains(&d3), "{d3}");
        assert!((3240.0..=3600.0).contains(&d50), "{d50}");
    }
}
