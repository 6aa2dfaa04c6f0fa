//! Delivery workers: take spooled messages, relay them to the internal servers, retry, bounce, remove.
//!
//! One loop owns the [`Scheduler`]; `relay.workers` workers each keep one reusable
//! connection. A message leaves the spool only after the internal server's 250 for every
//! recipient (or a permanent failure, which produces a DSN to a real sender).

mod attempt;

use attempt::attempt;

use super::client::{ClientSettings, Connection, SettingsCache};
use super::reachability::Reachability;
use super::scheduler::{arrival_from_id, Job, JobResult, Scheduler};
use crate::config::{Config, CurrentConfig};
use crate::metrics::Metrics;
use crate::spool::{unix_now, DeliveryState, FlushRequest, QueueId, Spool, SpoolError};
use futures::FutureExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the loop looks for a `mxguard queue flush` request file.
const FLUSH_POLL: Duration = Duration::from_secs(2);
/// Delivery attempts of one message that panic in a row before it is moved to `corrupt/`:
/// a panic may come from a passing state of the internal server, so one is not enough.
const PANICS_BEFORE_SET_ASIDE: u32 = 3;
/// How often the queue is listed for messages nothing announced.
const RELIST_EVERY: Duration = Duration::from_secs(600);
/// How often quarantined messages past `spool.quarantine_lifetime` are deleted.
const QUARANTINE_SWEEP: Duration = Duration::from_secs(600);

/// What every worker shares: the configuration in force (read per message, so a reload
/// reaches delivery at once), the spool and the metrics.
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) live: Arc<dyn CurrentConfig>,
    settings: SettingsCache,
    pub(crate) spool: Arc<Spool>,
    pub(crate) metrics: Arc<Metrics>,
    /// Delivery states that could not be saved (disk full), newer than the spool's: the
    /// next attempt starts from them, not from the stale file, so no recipient that
    /// already has the message gets it again.
    unsaved: std::sync::Mutex<HashMap<QueueId, DeliveryState>>,
    /// Internal servers that recently failed to take a connection.
    reachability: Reachability,
    /// Attempts in a row that panicked, per message (see [`Relay::attempt_panicked`]).
    panics: std::sync::Mutex<HashMap<QueueId, u32>>,
    /// DSNs stored but not yet recorded as queued in their original's state: a queue
    /// listing (a flush) must not schedule them, or one delivered and removed before a
    /// crash left that record unsaved would be queued and sent again.
    unannounced: std::sync::Mutex<std::collections::HashSet<QueueId>>,
}

/// A DSN kept out of queue listings while it lives (see `Relay::unannounced`).
pub(super) struct Unannounced<'r> {
    relay: &'r Relay,
    id: QueueId,
}

impl Drop for Unannounced<'_> {
    fn drop(&mut self) {
        self.relay.unannounced_ids().remove(&self.id);
    }
}

impl Relay {
    /// A relay whose transactions are given up before their end of data once
    /// `stopping` is cancelled.
    pub(crate) fn new(
        live: Arc<dyn CurrentConfig>,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
        stopping: CancellationToken,
    ) -> Relay {
        Relay {
            live,
            settings: SettingsCache::stopped_by(stopping),
            spool,
            metrics,
            unsaved: std::sync::Mutex::default(),
            reachability: Reachability::default(),
            panics: std::sync::Mutex::default(),
            unannounced: std::sync::Mutex::default(),
        }
    }

    /// `server` took a connection (the common case: the gauge moves only when it was
    /// failing).
    pub(crate) fn server_reached(&self, server: SocketAddr) {
        if self.reachability.reached(server) {
            self.publish_failing();
        }
    }

    /// A delivery went to a server placed before each of `after`: those whose hold ran
    /// out are no longer counted as unreachable (see [`Reachability::passed_over`]).
    pub(crate) fn servers_passed_over(&self, after: &[SocketAddr]) {
        if self.reachability.passed_over(after) {
            self.publish_failing();
        }
    }

    /// `server` did not take a TCP connection: held back for `relay.unreachable_hold`.
    pub(crate) fn server_unreachable(&self, config: &Config, server: SocketAddr) {
        self.reachability
            .unreachable(server, config.relay.unreachable_hold);
        self.publish_failing();
    }

    /// `mxguard_relay_servers_unreachable`: the servers the configuration in force names
    /// that are failing (not those of the configuration an attempt began with: one a
    /// reload removed since would be counted again).
    fn publish_failing(&self) {
        let config = self.live.current();
        let relay = &config.relay;
        let failing = self
            .reachability
            .failing(|s| relay.internal.contains(s) || relay.dsn_via.contains(s));
        self.metrics
            .relay_servers_unreachable
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
    }

    /// The configuration in force and its client settings.
    pub(crate) fn current(&self) -> (Arc<Config>, ClientSettings) {
        let config = self.live.current();
        let (settings, reloaded) = self.settings.get(&config);
        if reloaded {
            // The servers counted are the configured ones: a failing server a reload
            // removed is no longer one.
            self.publish_failing();
        }
        (config, settings)
    }

    /// Saves a message's delivery state off the async threads (it fsyncs). When the save
    /// fails the state is kept in memory for the next attempt. Returns whether the message
    /// was found deleted from the queue (`queue delete` during the attempt).
    pub(crate) async fn save_state(&self, id: &QueueId, state: &DeliveryState) -> bool {
        let (key, copy) = (id.clone(), state.clone());
        match self
            .blocking(move |spool| {
                spool.save_state(&key, &copy)?;
                Ok(spool.drop_state_if_deleted(&key).unwrap_or_else(|error| {
                    // The state is saved; at worst it stays an orphan until `recover`.
                    tracing::warn!(queue_id = %key, %error, "cannot check whether the message was deleted");
                    false
                }))
            })
            .await
        {
            Ok(deleted) => {
                self.forget_state(id);
                deleted
            }
            Err(error) => {
                tracing::error!(queue_id = %id, error, "cannot save delivery state; kept in memory");
                self.unsaved_states().insert(id.clone(), state.clone());
                false
            }
        }
    }

    /// Runs spool work that fsyncs on a blocking thread; its error (or the task's) as text.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, String> {
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || work(&spool)).await {
            Ok(done) => done.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The state a failed save left in memory, newer than the spool's.
    pub(crate) fn unsaved_state(&self, id: &QueueId) -> Option<DeliveryState> {
        self.unsaved_states().get(id).cloned()
    }

    /// Drops a state kept in memory (saved after all, or the message is gone).
    pub(crate) fn forget_state(&self, id: &QueueId) {
        self.unsaved_states().remove(id);
    }

    /// Clears a message's run of panicked attempts.
    fn attempt_survived(&self, id: &QueueId) {
        self.panic_counts().remove(id);
    }

    /// Drops everything kept in memory about a message that left the queue by another way
    /// than an attempt's end (set aside, deleted by `mxguard queue delete`).
    fn forget_message(&self, id: &QueueId) {
        self.panic_counts().remove(id);
        self.forget_state(id);
    }

    /// What becomes of a message whose attempt panicked. A panic is most likely the
    /// message's own, so it is tried again after the longest delay, not every
    /// `retry_initial`; after [`PANICS_BEFORE_SET_ASIDE`] in a row it leaves the queue for
    /// `corrupt/`. Retried for ever it never expired (the expiry and the DSN are part of
    /// the attempt that panics) and held its place in the queue across restarts.
    async fn attempt_panicked(&self, id: &QueueId) -> JobResult {
        self.metrics
            .relay_attempts_total
            .with_label_values(&["panicked"])
            .inc();
        let panics = {
            let mut counts = self.panic_counts();
            let n = counts.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if panics < PANICS_BEFORE_SET_ASIDE {
            tracing::error!(queue_id = %id, panics, "a delivery attempt panicked; deferred");
            return JobResult::Deferred(self.live.current().relay.retry_max);
        }
        let key = id.clone();
        match self.blocking(move |spool| spool.set_aside(&key)).await {
            Ok(path) => {
                self.forget_message(id);
                self.metrics.spool_corrupt_total.inc();
                tracing::error!(queue_id = %id, panics, moved_to = %path.display(), "delivery attempts of this message panicked again and again; moved out of the queue");
                JobResult::Abandoned
            }
            Err(error) => {
                tracing::error!(queue_id = %id, panics, error, "a delivery attempt panicked; cannot move the message out of the queue; deferred");
                JobResult::Deferred(self.live.current().relay.retry_max)
            }
        }
    }

    /// Keeps DSN `id` out of queue listings until the guard is dropped.
    pub(super) fn unannounced(&self, id: &QueueId) -> Unannounced<'_> {
        self.unannounced_ids().insert(id.clone());
        Unannounced {
            relay: self,
            id: id.clone(),
        }
    }

    fn unannounced_ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<QueueId>> {
        self.unannounced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn panic_counts(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, u32>> {
        self.panics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unsaved_states(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, DeliveryState>> {
        // Nothing panics while holding the lock; a poisoned map is still a valid map.
        self.unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the relay: recovers the spool, then delivers everything found and every id
/// announced on `ready`, until `shutdown` is cancelled. After cancellation no new
/// delivery starts; running ones give up before their end of data, or, when it is sent
/// already, wait for its answer (bounded by `relay.data_timeout`); idle connections are
/// closed with QUIT, and the returned task ends.
/// `relay.workers` is read once here (changing it needs a restart); everything else is
/// read from `live` for every message.
pub fn start(
    live: Arc<dyn CurrentConfig>,
    spool: Arc<Spool>,
    ready: mpsc::UnboundedReceiver<QueueId>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let relay = Arc::new(Relay::new(live, spool, metrics, shutdown.clone()));
    tokio::spawn(sweep_quarantine(relay.clone(), shutdown.clone()));
    tokio::spawn(run(relay, ready, shutdown))
}

/// Deletes quarantined messages past their lifetime, at start and every
/// [`QUARANTINE_SWEEP`], and counts what stays.
async fn sweep_quarantine(relay: Arc<Relay>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(QUARANTINE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let lifetime = relay.live.current().spool.quarantine_lifetime;
        let spool = relay.spool.clone();
        let swept = tokio::task::spawn_blocking(move || {
            spool.expire_quarantined(lifetime, std::time::SystemTime::now())
        })
        .await;
        match swept {
            Ok(Ok((kept, removed))) => {
                relay.metrics.quarantine_messages.set(kept as i64);
                relay
                    .metrics
                    .quarantine_expired_total
                    .inc_by(removed as u64);
                if removed > 0 {
                    tracing::info!(
                        removed,
                        kept,
                        "quarantined messages past spool.quarantine_lifetime deleted"
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot sweep the quarantine"),
            Err(e) => tracing::warn!(error = %e, "quarantine sweep failed"),
        }
    }
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
    // A flush or release request taken whose queue listing is still to be done (whether
    // it was a flush).
    let mut listing: Option<bool> = None;
    let mut recovered = match recover_queue(&relay.spool, &mut sched).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "spool recovery failed; retried every few seconds");
            false
        }
    };

    let mut flush_tick = tokio::time::interval(FLUSH_POLL);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listed_at = Instant::now();
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
            // Stored messages honour their retry time: a new one's is 0, and one stored
            // while recovery listed the queue arrives here a second time, maybe after its
            // first attempt was deferred, which must not be retried at once.
            id = ready.recv(), if ready_open => match id {
                Some(id) => sched.add(id, true),
                None => ready_open = false,
            },
            _ = sleep_until_opt(wake) => {}
            _ = flush_tick.tick() => {
                if !recovered {
                    // The queue of before the start could not be listed: every message
                    // deferred then would wait for the next restart or `queue flush`.
                    recovered = recover_queue(&relay.spool, &mut sched).await.is_ok();
                }
                if let Some(request) = relay.spool.take_flush_request() {
                    let flush = request == FlushRequest::Flush;
                    if flush {
                        tracing::info!(messages = sched.len(), "queue flush requested");
                        sched.flush();
                    }
                    listing = Some(listing.unwrap_or(false) || flush);
                }
                // Now and then whatever the requests: a release cut short between its
                // move and its request (Ctrl-C, a dropped SSH session) left a message in
                // the queue that nothing announced (review).
                if listed_at.elapsed() >= RELIST_EVERY {
                    listing = Some(listing.unwrap_or(false));
                }
                if listing.is_some() {
                    listed_at = Instant::now();
                }
                // Messages put into the queue by another process (`quarantine release`)
                // are only known from the directory. The request is taken already: a
                // listing that fails is tried again at the next tick, or the released
                // message would wait for a restart.
                if let Some(flush) = listing {
                    // Once the flush itself is done, a listing tried again only adds what
                    // the gateway does not know yet.
                    listing = (!add_listed(&relay, &mut sched, flush)).then_some(false);
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
        let outcome = match AssertUnwindSafe(attempt(&relay, &mut conn, &job))
            .catch_unwind()
            .await
        {
            Ok(outcome) => {
                relay.attempt_survived(&id);
                outcome
            }
            Err(_) => {
                // A defect of ours: the worker lives on (a dead one would leave its message
                // in flight for good, and with every worker gone nothing would be delivered
                // while SMTP still accepts). The connection may be mid-transaction.
                conn = None;
                relay.attempt_panicked(&id).await
            }
        };
        let _ = done.send((id, outcome));
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// Schedules the messages found in the queue at start ([`Spool::recover`], off the async
/// threads), each at its saved retry time.
/// Adds the queued messages the scheduler does not know (every one on a flush); false
/// when the queue could not be listed.
fn add_listed(relay: &Relay, sched: &mut Scheduler, flush: bool) -> bool {
    match relay.spool.ids() {
        Ok(ids) => {
            let listed: std::collections::BTreeSet<QueueId> = ids.into_iter().collect();
            // Gone from the queue (`queue delete`): no attempt will come to clear what
            // the relay keeps about them (review).
            for id in sched.forget_deferred_missing(&listed) {
                relay.forget_message(&id);
            }
            let unannounced = relay.unannounced_ids().clone();
            for id in listed {
                if (flush || !sched.knows(&id)) && !unannounced.contains(&id) {
                    sched.add(id, false);
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the queue on flush; will retry");
            false
        }
    }
}

async fn recover_queue(spool: &Arc<Spool>, sched: &mut Scheduler) -> Result<(), String> {
    let spool = spool.clone();
    let ids = tokio::task::spawn_blocking(move || spool.recover())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if !ids.is_empty() {
        tracing::info!(messages = ids.len(), "recovered spooled messages");
    }
    for id in ids {
        if !sched.knows(&id) {
            sched.add(id, true);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
