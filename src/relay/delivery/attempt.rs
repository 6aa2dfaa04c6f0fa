//! One delivery attempt for one message: hand the pending recipients to the internal
//! servers, record each result, then remove, defer or bounce.

use super::Relay;
use crate::config::Config;
use crate::mail::Reply;
use crate::relay::client::{Answers, ClientError, ClientSettings, Connection, Transaction};
use crate::relay::dsn::{self, FailedRecipient};
use crate::relay::scheduler::{arrival_from_id, Job, JobResult};
use crate::spool::{unix_now, DeliveryState, QueueId, RcptStatus, SpoolError, SpooledMessage};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The scheduled wait after the `attempts`-th attempt, in seconds:
/// `min(retry_initial * retry_factor^(attempts-1), retry_max)`.
fn scheduled_wait(config: &Config, attempts: u32) -> f64 {
    let r = &config.relay;
    let exp = attempts.saturating_sub(1).min(1000) as i32;
    let base = r.retry_initial.as_secs_f64() * r.retry_factor.powi(exp);
    base.min(r.retry_max.min(crate::relay::LONGEST_WAIT).as_secs_f64())
}

/// Retry delay after the `attempts`-th attempt: the scheduled wait, give or take 10 %.
pub(crate) fn retry_delay(config: &Config, attempts: u32) -> Duration {
    let max = config
        .relay
        .retry_max
        .min(crate::relay::LONGEST_WAIT)
        .as_secs_f64();
    let jittered = scheduled_wait(config, attempts) * rand::random_range(0.9..1.1);
    Duration::from_secs_f64(jittered.min(max).max(0.0))
}

/// How many tries the retry schedule makes in `age`: the attempt count of a message whose
/// state cannot be read.
pub(super) fn tries_in(config: &Config, age: Duration) -> u32 {
    let mut elapsed = 0.0;
    let mut tries = 1;
    while tries < 1000 {
        elapsed += scheduled_wait(config, tries).max(1.0);
        if elapsed > age.as_secs_f64() {
            break;
        }
        tries += 1;
    }
    tries
}

/// Whether the message's last deferral was for every server being held back
/// ([`ClientError::Suspended`], whose text starts so).
fn was_suspended(state: &DeliveryState) -> bool {
    state
        .last_error
        .as_deref()
        .is_some_and(|e| e.starts_with(SUSPENDED_TEXT))
}

/// How [`ClientError::Suspended`]'s text begins (a test holds the two together).
const SUSPENDED_TEXT: &str = "delivery suspended";

/// The shortest wait of a message deferred while every server is held back: a hold that
/// ended between the plan and the wait's reckoning must not make it come back at once.
const SUSPENDED_RECHECK: Duration = Duration::from_secs(1);

/// The longest an attempt waits for another attempt's probe (see [`deliver`]): long enough
/// for a server that takes the connection at once, short enough that the workers held
/// behind a probe of a blackholed server (up to `connect_timeout`) are not all idle
/// meanwhile, with DSNs to other servers and flushes waiting behind them (review).
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// One delivery attempt for one message, start to finish: load, deliver the pending
/// recipients, record the result, then remove, defer or bounce.
pub(crate) async fn attempt(relay: &Relay, conn: &mut Option<Connection>, job: &Job) -> JobResult {
    #[cfg(test)]
    super::tests::panic_if_told(&job.id);
    let (config, settings) = relay.current();
    // Only the head of the message comes into memory; the rest is streamed while sent.
    // Read on this thread, like `remove` below: a file the spool wrote moments ago is
    // read from the page cache in microseconds, less than the hand-off to a blocking
    // thread and back would cost. (Saving a state fsyncs, so that goes off this thread.)
    let mut msg = match open(relay, &config, &job.id) {
        Ok(m) => m,
        Err(outcome) => return forget_state_if_gone(relay, &job.id, outcome),
    };
    if let Some(state) = relay.unsaved_state(&job.id) {
        msg.state = state;
    }
    let now = unix_now();
    if job.honor_next_attempt && msg.state.next_attempt > now {
        // The saved time came from this gateway's clock, which may have been wrong then
        // (a board that booted years ahead) or may be a hand-edited file: a wait is never
        // longer than a retry delay can be.
        let wait = Duration::from_secs(msg.state.next_attempt - now).min(config.relay.retry_max);
        return JobResult::Deferred(wait);
    }

    // Only the head was checked against the seal at opening; the rest is checked here,
    // off this thread, once the message is due.
    if let Err(error) = relay.spool.check_seal(&msg).await {
        let outcome = unusable(relay, &config, &job.id, error);
        return forget_state_if_gone(relay, &job.id, outcome);
    }

    let started = Instant::now();
    // At most `recipients_per_transaction` at a time: a pipelined batch of thousands
    // of RCPTs fills the server's replies up to a deadlock (RFC 2920 §3.1).
    let waiting: Vec<usize> = msg.state.pending().collect();
    let mut put_off: HashSet<usize> = msg.state.put_off_this_round.iter().copied().collect();
    if waiting.iter().all(|i| put_off.contains(i)) {
        // Every pending recipient had its try in the round: a new one starts.
        put_off.clear();
        msg.state.put_off_this_round.clear();
    }
    let untried: Vec<usize> = waiting
        .iter()
        .copied()
        .filter(|i| !put_off.contains(i))
        .collect();
    let per_transaction = config.relay.recipients_per_transaction.max(1);
    let pending: Vec<usize> = untried.iter().copied().take(per_transaction).collect();
    let left_for_next = untried.len() > pending.len();
    let recipients: Vec<String> = pending
        .iter()
        .map(|&i| msg.envelope.rcpt_to[i].clone())
        .collect();
    let mut temp_error: Option<String> = None;
    let mut server: Option<SocketAddr> = None;
    let mut reply_summary = String::new();
    // Recipients the server took none of only because the transaction had as many as it
    // takes (`452 4.5.3`), while it settled others (took them, or refused them for good):
    // they go in the next transaction at once, as Postfix sends them, not after a retry
    // delay (100 recipients to a server taking 10 at a time waited hours for the last
    // ones). Settling at least one is what keeps this from looping.
    let mut over_server_limit = false;
    let mut settled_now = false;
    let mut failed_now = false;
    let mut other_temp_failure = false;
    // The session failed (no connection, a timeout, a dropped line): the round ends there,
    // as the next transaction would most likely fail the same way.
    let mut session_failed = false;
    // A message released from quarantine has been queued since then, not since it came in.
    let queued_since = msg.state.queued_since.unwrap_or(msg.envelope.received_at);
    let age = Duration::from_secs(now.saturating_sub(queued_since));
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
            tail: msg.tail.as_ref(),
            body_8bit: msg.envelope.body_8bit,
            smtputf8: msg.envelope.smtputf8,
        };
        match deliver(relay, &config, &settings, conn, targets, &tx).await {
            Ok((srv, answers)) => {
                server = Some(srv);
                // A temporary refusal of the message itself (a 4xx to MAIL, DATA or the end
                // of data) is most likely met by the next transaction too (review: a big
                // message was sent once per batch at every retry). A recipient's own 4xx
                // beside a permanent refusal of the message does not end the round.
                session_failed = answers
                    .message_refusal
                    .as_ref()
                    .is_some_and(|r| !r.is_positive() && !r.is_permanent());
                let replies = answers.replies;
                reply_summary = summarize(&replies);
                for (k, reply) in replies.iter().enumerate() {
                    let Some(&i) = pending.get(k) else { continue };
                    if reply.is_positive() {
                        msg.state.rcpt_status[i] = RcptStatus::Delivered;
                        settled_now = true;
                    } else if reply.is_permanent() {
                        let failure =
                            FailedRecipient::from_reply(&msg.envelope.rcpt_to[i], reply, Some(srv));
                        fail(&mut msg.state, i, failure);
                        settled_now = true;
                        failed_now = true;
                    } else {
                        if is_over_recipient_limit(reply) {
                            over_server_limit = true;
                        } else {
                            other_temp_failure = true;
                            msg.state.put_off_this_round.push(i);
                        }
                        if temp_error.is_none() {
                            temp_error = Some(reply.to_string());
                        }
                    }
                }
            }
            Err((_, e @ ClientError::Suspended { .. }))
                if age < config.relay.max_queue_lifetime && !was_suspended(&msg.state) =>
            {
                // No server was contacted, every one being held back: no attempt, so the
                // retry delay does not grow, and the message comes back when the first
                // hold ends. Counted, a retry that fell inside a hold (with the defaults,
                // about half of the first ones) doubled its next delay for nothing
                // (review). Only the first in a row: suspended again, the servers are
                // most likely down, and the retries back off as attempts do (or every
                // queued message would come back every hold through a long outage).
                let wait = relay
                    .reachability
                    .next_release(targets)
                    .unwrap_or_default()
                    .max(SUSPENDED_RECHECK);
                tracing::info!(queue_id = %msg.id, wait_ms = wait.as_millis() as u64, "delivery suspended: every internal server is held back; no attempt counted");
                return defer(relay, &mut msg, Some(e.to_string()), wait).await;
            }
            Err((_, ClientError::Stopping)) => {
                // Not an attempt: no server has the message, and nothing is counted or
                // saved: its saved retry time has passed, so it is due at once after the
                // restart (in queue order with the others due then).
                tracing::info!(queue_id = %msg.id, "delivery given up for the stop before its end of data; it stays queued");
                return JobResult::Deferred(Duration::ZERO);
            }
            Err((srv, e)) if e.permanent() => {
                server = srv;
                reply_summary = e.to_string();
                // Settled here, not by a server: the DSN names no remote MTA.
                let reply = Reply::new(550, "5.6.7", e.to_string());
                for &i in &pending {
                    let failure =
                        FailedRecipient::from_reply(&msg.envelope.rcpt_to[i], &reply, None);
                    fail(&mut msg.state, i, failure);
                }
                // Failing them settles them: the next batch fails at once too, and the
                // DSN goes out in this round (review: the batches waited a retry delay each).
                failed_now = !pending.is_empty();
                settled_now = failed_now;
            }
            Err((srv, e)) => {
                server = srv;
                reply_summary = e.to_string();
                // Refusals the server gave before it ended the session stand.
                let before_the_end = e.replies_before_the_end().unwrap_or_default();
                for (k, reply) in before_the_end.iter().enumerate() {
                    let (Some(reply), Some(&i)) = (reply, pending.get(k)) else {
                        continue;
                    };
                    if reply.is_permanent() {
                        let failure =
                            FailedRecipient::from_reply(&msg.envelope.rcpt_to[i], reply, srv);
                        fail(&mut msg.state, i, failure);
                        settled_now = true;
                        failed_now = true;
                    }
                }
                temp_error = Some(e.to_string());
                other_temp_failure = true;
                session_failed = true;
            }
        }
    }
    // Settling or putting off at least one is what keeps this from looping (a server
    // refusing every RCPT with `452 4.5.3`, a throttle, would be asked again at once for
    // ever): each batch that follows at once has fewer recipients left to try.
    let progressed = settled_now || other_temp_failure;
    let next_batch_now = (over_server_limit || left_for_next) && progressed && !session_failed;
    // A batch followed at once by the next is part of one attempt: counted each, the
    // retry delays of a message to many recipients grew per batch (review).
    if !next_batch_now {
        msg.state.attempts += 1;
        msg.state.put_off_this_round.clear();
    }

    // A message past its lifetime that still fails temporarily is bounced.
    let still_pending: Vec<usize> = msg.state.pending().collect();
    // Recipients held back for the next transaction were not tried: not expired while
    // the round goes on (the next transaction follows at once).
    let expired =
        !still_pending.is_empty() && age >= config.relay.max_queue_lifetime && !next_batch_now;
    if expired {
        let last = temp_error
            .clone()
            .or_else(|| msg.state.last_error.clone())
            .unwrap_or_else(|| "temporary failure".into());
        for &i in &still_pending {
            let failure = FailedRecipient::expired(&msg.envelope.rcpt_to[i], &last, server);
            fail(&mut msg.state, i, failure);
        }
    }

    let deferred = !expired && !still_pending.is_empty();
    // This transaction's own outcome, from its recipients alone: one that failed in an
    // earlier transaction, or waits for a later one, does not make it "failed" or
    // "deferred" (review: a refusal followed by a delivery of the rest was never counted
    // failed, and each full batch of a message to many was counted deferred).
    let result = if failed_now || expired {
        "failed"
    } else if other_temp_failure || (over_server_limit && !next_batch_now) {
        "deferred"
    } else {
        "delivered"
    };
    let elapsed = started.elapsed();
    if pending.is_empty() {
        // Every recipient was settled before (a crash between settling and removal): no
        // attempt was made, and none is counted (review: it counted as delivered).
        tracing::info!(queue_id = %msg.id, "every recipient settled before; settling the message");
    } else {
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
            // Peer text as strings, which the log writes escaped: addresses and the internal
            // server's reply may hold any Unicode (review).
            from = msg.envelope.mail_from.as_str(),
            to = recipients.join(",").as_str(),
            server = %server.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            result,
            reply = reply_summary.as_str(),
            attempt = msg.state.attempts,
            duration_ms = elapsed.as_millis() as u64,
            "delivery attempt"
        );
    }

    if deferred {
        let delay = if next_batch_now {
            Duration::ZERO
        } else {
            retry_delay(&config, msg.state.attempts)
        };
        return defer(relay, &mut msg, temp_error, delay).await;
    }
    settle(relay, &config, &mut msg).await
}

/// Loads a queued message for an attempt, or says what to do instead: forget an id whose
/// file is gone or is not a message, retry one that could not be read just now. A
/// delivery state that cannot be read is discarded: the message is tried again for every
/// recipient, which may deliver twice but never loses it.
fn open(relay: &Relay, config: &Config, id: &QueueId) -> Result<SpooledMessage, JobResult> {
    let opened = match relay.spool.open_message(id) {
        Err(error @ SpoolError::CorruptState(..)) => {
            tracing::error!(queue_id = %id, error = %error, "delivery state unreadable; discarded, every recipient is tried again");
            relay.metrics.spool_state_resets_total.inc();
            if let Err(e) = relay.spool.discard_state(id) {
                tracing::error!(queue_id = %id, error = %e, "cannot discard delivery state");
            }
            relay.spool.open_message(id)
        }
        other => other,
    };
    opened.map_err(|error| unusable(relay, config, id, error))
}

/// A delivery state that could not be saved is kept in memory so the recipients already
/// served are not sent the message again; only a message that left the queue lets it go.
/// A passing load error (EMFILE, EIO) is retried, and the retry must still find it.
fn forget_state_if_gone(relay: &Relay, id: &QueueId, outcome: JobResult) -> JobResult {
    if matches!(outcome, JobResult::Abandoned) {
        relay.forget_state(id);
    }
    outcome
}

/// What to do with a queued message that could not be read: forget an id whose file is
/// gone, move a file that is not a message out of the queue, retry one that could not be
/// read just now.
fn unusable(relay: &Relay, config: &Config, id: &QueueId, error: SpoolError) -> JobResult {
    match error {
        SpoolError::NotFound(_) => JobResult::Abandoned,
        SpoolError::Corrupt(..) => set_aside(relay, id, &error),
        _ => {
            // EMFILE under a flood, a passing I/O error: forgetting the id would leave the
            // message in the queue, undelivered, until a restart. A lasting one backs off
            // as failed deliveries do (no attempt count can be read: the message's age
            // stands for it, at most `retry_max`), never set aside: a released message's
            // queue lifetime is in the state that could not be read.
            let age = arrival_from_id(id)
                .map(|arrived| Duration::from_secs(unix_now().saturating_sub(arrived)))
                .unwrap_or_default();
            let delay = retry_delay(config, tries_in(config, age));
            tracing::error!(queue_id = %id, error = %error, retry_secs = delay.as_secs(), "cannot load spooled message; will retry");
            JobResult::Deferred(delay)
        }
    }
}

/// Moves a queued file that is not a message (`error` says why) out of the queue.
fn set_aside(relay: &Relay, id: &QueueId, error: &SpoolError) -> JobResult {
    relay.metrics.spool_corrupt_total.inc();
    match relay.spool.set_aside(id) {
        Ok(path) => {
            tracing::error!(queue_id = %id, error = %error, moved_to = %path.display(), "spooled file is not a message; moved out of the queue")
        }
        Err(e) => {
            tracing::error!(queue_id = %id, error = %error, move_error = %e, "spooled file is not a message; left in place")
        }
    }
    JobResult::Abandoned
}

/// Settles recipient `i` as failed, keeping why for the DSN.
fn fail(state: &mut DeliveryState, i: usize, failure: FailedRecipient) {
    state.rcpt_status[i] = RcptStatus::Failed;
    state.failures.retain(|f| f.address != failure.address);
    state.failures.push(failure);
}

/// Records a temporary failure and returns when to try again.
async fn defer(
    relay: &Relay,
    msg: &mut SpooledMessage,
    error: Option<String>,
    delay: Duration,
) -> JobResult {
    let ceil_secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    msg.state.next_attempt = unix_now() + ceil_secs;
    if let Some(error) = error {
        msg.state.last_error = Some(dsn::diagnostic_text(&error));
    }
    if relay.save_state(&msg.id, &msg.state).await {
        // Counted as queued until its retry found it gone, it kept the queue gauges (and
        // an old-message alert) up for minutes after the delete (review).
        tracing::info!(queue_id = %msg.id, "message deleted from the queue during the attempt; forgotten");
        return JobResult::Abandoned;
    }
    JobResult::Deferred(delay)
}

/// Every recipient is settled: bounce the failures (when a DSN is due), then remove.
async fn settle(relay: &Relay, config: &Config, msg: &mut SpooledMessage) -> JobResult {
    let any_failed = msg.state.rcpt_status.contains(&RcptStatus::Failed);
    let mut dsn_queued = false;
    if any_failed {
        let failures = failed_recipients(msg);
        // Keep the settled statuses on disk first: a crash from here on must not lead
        // to a second delivery to recipients that already have the message.
        if let Some(f) = failures.first() {
            msg.state.last_error = Some(f.diagnostic.clone());
        }
        // The same test as `dsn::build`: a DSN judged due must be one it will write.
        let has_return_path = dsn::can_receive_dsn(&msg.envelope.mail_from);
        let bounce_due = !msg.envelope.is_dsn
            && has_return_path
            && !matches!(msg.envelope.verdict.as_str(), "tag" | "quarantine");
        // The DSN's id goes to disk with the statuses, before the DSN itself: see
        // `DeliveryState::bounce`.
        let bounce = match (&msg.state.bounce, bounce_due) {
            (Some(id), true) => Some(id.clone()),
            (None, true) => Some(QueueId::generate()),
            (_, false) => None,
        };
        msg.state.bounce = bounce.clone();
        relay.save_state(&msg.id, &msg.state).await;
        if msg.envelope.is_dsn {
            tracing::warn!(
                queue_id = %msg.id,
                to = msg.envelope.rcpt_to.join(",").as_str(),
                "DSN failed permanently; dropped"
            );
        } else if !relay.spool.holds(&msg.id) {
            // `queue delete` while this attempt ran: the operator wanted it gone, and a
            // DSN about it would say it was not delivered (review).
            tracing::info!(queue_id = %msg.id, "permanent failure for a message deleted from the queue during the attempt; no DSN");
        } else if !has_return_path {
            tracing::info!(queue_id = %msg.id, from = msg.envelope.mail_from.as_str(), "permanent failure for a message whose sender cannot receive mail (null or without a domain); no DSN");
        } else if let Some(bounce) = bounce {
            let _unlisted = relay.unannounced(&bounce);
            let stored = queue_bounce(relay, config, msg, &failures, &bounce).await;
            dsn_queued = stored != Bounce::Failed;
            if !dsn_queued {
                let delay = retry_delay(config, msg.state.attempts);
                return defer(relay, msg, None, delay).await;
            }
            if !msg.state.dsn_queued {
                // Once delivered, the DSN leaves the queue: only this says it went out.
                msg.state.dsn_queued = true;
                relay.save_state(&msg.id, &msg.state).await;
            }
            if stored == Bounce::Stored {
                // Only now may it be delivered (and leave the queue): a crash before the
                // state above was saved found no DSN and queued a second one (review).
                relay.spool.announce(bounce);
            }
        } else {
            // Judged spam: its sender is most likely forged, a DSN would be backscatter.
            tracing::info!(queue_id = %msg.id, verdict = %msg.envelope.verdict, "permanent failure for mail judged spam; no DSN");
        }
    }
    let mut removed = true;
    match relay.spool.remove(&msg.id) {
        Ok(()) | Err(SpoolError::NotFound(_)) => {}
        Err(e) if !dsn_queued => {
            // Every recipient has it: record that on disk (a delivered message's state was
            // never saved) and try the removal again, so that neither the retry nor a
            // restart delivers it a second time.
            tracing::error!(queue_id = %msg.id, error = %e, "cannot remove delivered message; will retry");
            let delay = retry_delay(config, msg.state.attempts);
            return defer(relay, msg, Some(format!("cannot remove: {e}")), delay).await;
        }
        Err(e) => {
            // Retrying now would queue a second DSN. The message stays queued: the next
            // listing or start must find its DSN recorded, and the save of that above may
            // have failed too (a full disk): saved again, else kept in memory (review: it
            // was forgotten, and the next listing queued a second DSN).
            tracing::error!(queue_id = %msg.id, error = %e, "cannot remove bounced message");
            relay.save_state(&msg.id, &msg.state).await;
            removed = false;
        }
    }
    if dsn_queued {
        // The DSN is durable already: a crash before the removal is durable too would
        // settle the message again on restart and send the sender a second DSN.
        if let Err(error) = relay.blocking(|spool| spool.sync_queue()).await {
            tracing::warn!(queue_id = %msg.id, error, "cannot sync the queue after a bounce");
        }
    }
    if removed {
        relay.forget_state(&msg.id);
    }
    JobResult::Finished
}

/// Spools the DSN of a settled message under the id its state recorded, unless a try
/// before this one stored it already (then a failure came after it, such as syncing the
/// queue). Whether the DSN is queued; on false, the message is to be retried.
/// What [`queue_bounce`] did.
#[derive(Debug, PartialEq, Eq)]
enum Bounce {
    /// Stored now, not yet announced to the delivery workers.
    Stored,
    /// Queued before (and announced then, or by the recovery after a restart).
    QueuedAlready,
    /// None was due after all (`dsn::build` wrote none).
    NotDue,
    /// Could not be stored.
    Failed,
}

async fn queue_bounce(
    relay: &Relay,
    config: &Config,
    msg: &SpooledMessage,
    failures: &[FailedRecipient],
    bounce: &QueueId,
) -> Bounce {
    // A file under the DSN's name that does not open whole (left by a power loss) is
    // written over; one that cannot be read now is tried again later.
    match relay.spool.dsn_stored(&msg.state, bounce) {
        Some(true) => {
            tracing::info!(queue_id = %msg.id, dsn = %bounce, "DSN queued already");
            return Bounce::QueuedAlready;
        }
        None => {
            tracing::error!(queue_id = %msg.id, dsn = %bounce, "cannot tell whether the DSN is stored; will retry");
            return Bounce::Failed;
        }
        Some(false) => {
            // A store never replaces a queued name, so a damaged file under the DSN's name
            // is set aside first (its own delivery job may have done so already).
            match relay.spool.set_aside(bounce) {
                Ok(path) => {
                    tracing::warn!(queue_id = %msg.id, dsn = %bounce, path = %path.display(), "a damaged DSN file was set aside; storing the DSN again");
                }
                Err(SpoolError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(queue_id = %msg.id, dsn = %bounce, error = %e, "cannot set aside a damaged DSN file; will retry");
                    return Bounce::Failed;
                }
            }
        }
    }
    let hostname = &config.server.hostname;
    match dsn::queue(
        &relay.spool,
        &relay.metrics,
        hostname,
        msg,
        failures,
        bounce,
    )
    .await
    {
        Ok(true) => Bounce::Stored,
        Ok(false) => Bounce::NotDue,
        Err(e) => {
            tracing::error!(queue_id = %msg.id, error = %e, "cannot queue DSN; will retry");
            Bounce::Failed
        }
    }
}

/// Every failed recipient as the DSN reports it, with the reply recorded when it failed.
/// A state saved before failures were recorded has only the last error to show.
fn failed_recipients(msg: &SpooledMessage) -> Vec<FailedRecipient> {
    let state = &msg.state;
    let mut failures = Vec::new();
    for (i, status) in state.rcpt_status.iter().enumerate() {
        if *status != RcptStatus::Failed {
            continue;
        }
        let address = &msg.envelope.rcpt_to[i];
        let failure = match state.failures.iter().find(|f| &f.address == address) {
            Some(recorded) => recorded.clone(),
            None => {
                let diag = state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "delivery failed".into());
                FailedRecipient::from_reply(address, &Reply::new(554, "5.0.0", diag), None)
            }
        };
        failures.push(failure);
    }
    failures
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
/// moves on to the next server; a reused connection that failed so is replaced by a fresh
/// one to the same server first (see [`Reused::TryFrom`]). Servers that recently failed
/// to take a connection are tried last, or not at all while their hold lasts
/// (`Suspended` when that leaves none and no server said more). Returns the server that
/// answered with the per-recipient replies.
///
/// A server that cannot carry the message ([`ClientError::permanent`]) is passed over;
/// the error is final only when every target said so, since one held back or down for
/// now may offer what this one lacks.
pub(super) async fn deliver(
    relay: &Relay,
    config: &Config,
    settings: &ClientSettings,
    slot: &mut Option<Connection>,
    targets: &[SocketAddr],
    tx: &Transaction<'_>,
) -> Result<(SocketAddr, Answers), (Option<SocketAddr>, ClientError)> {
    let hold = config.relay.unreachable_hold;
    let mut failures = Failures::default();
    let start = match reuse(relay, config, settings, slot, targets, tx, &mut failures).await {
        Reused::Delivered(server, answers) => {
            relay.servers_passed_over(behind(targets, server));
            return Ok((server, answers));
        }
        Reused::Ended(server, e) => return Err((Some(server), e)),
        Reused::TryFrom(start) => start,
    };
    let candidates = &targets[start.min(targets.len())..];
    let mut waited_for_a_probe = false;
    loop {
        for server in relay.reachability.plan(candidates, hold) {
            if settings.is_stopping() {
                return Err((None, ClientError::Stopping));
            }
            // The turn to probe a server whose hold ran out is taken only now, as it is
            // contacted (another attempt may have taken it since the plan).
            if failures.cannot_carry.contains(&server) || !relay.reachability.probe(server, hold) {
                continue;
            }
            let probe = relay.reachability.connecting(server);
            let opened = Connection::open(server, settings).await;
            match &opened {
                Ok(_) => relay.server_reached(server),
                Err(e) if e.unreachable() => relay.server_unreachable(config, server),
                Err(_) => {}
            }
            drop(probe);
            let mut c = match opened {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%server, error = %e, "internal server unusable, trying next");
                    keep_the_telling(&mut failures.last, (None, e));
                    continue;
                }
            };
            match c.send(tx).await {
                Ok(replies) => {
                    *slot = Some(c);
                    relay.servers_passed_over(behind(targets, server));
                    return Ok((server, replies));
                }
                Err(e) if e.permanent() => {
                    c.quit().await;
                    failures.cannot_carry.push(server);
                    failures.refusal = Some((Some(server), e));
                }
                // Given up for the stop, not by the server: nothing it said is kept.
                Err(ClientError::Stopping) => return Err((Some(server), ClientError::Stopping)),
                Err(e) => {
                    let after_body = e.after_body();
                    keep_the_telling(&mut failures.last, (Some(server), e));
                    if after_body {
                        return Err(failures.outcome(targets, hold));
                    }
                }
            }
        }
        // Held back only by another attempt's probe: its outcome decides, so it is waited
        // for (once) and the servers planned again. Deferred instead, the messages that
        // came back when a hold ended were all deferred again but the probing one, and
        // counted, for a retry delay, even when the probe got in at once (review).
        if waited_for_a_probe || !failures.suspends(targets) {
            break;
        }
        match wait_for_a_probe(relay, settings, candidates).await {
            Ok(true) => waited_for_a_probe = true,
            Ok(false) => break,
            Err(e) => return Err((None, e)),
        }
    }
    Err(failures.outcome(targets, hold))
}

/// Waits while another attempt probes one of `candidates`, at most [`PROBE_WAIT`] and not
/// past that probe's hold; whether there was such a probe. `Err` when the gateway stops.
async fn wait_for_a_probe(
    relay: &Relay,
    settings: &ClientSettings,
    candidates: &[SocketAddr],
) -> Result<bool, ClientError> {
    let Some((mut probe_ends, longest)) = relay.reachability.probe_under_way(candidates) else {
        return Ok(false);
    };
    let deadline = Instant::now() + longest.min(PROBE_WAIT);
    // Any connection's end wakes the wait (another server's probe, a DSN's connection to
    // `dsn_via`): it goes on while a probe of these servers is under way (review: woken
    // so, the attempt was suspended and counted with its probe still going).
    loop {
        tokio::select! {
            woken = tokio::time::timeout_at(deadline, probe_ends) => {
                if woken.is_err() {
                    return Ok(true);
                }
            }
            () = settings.stopped() => return Err(ClientError::Stopping),
        }
        match relay.reachability.probe_under_way(candidates) {
            Some((next, _)) => probe_ends = next,
            None => return Ok(true),
        }
    }
}

/// What the servers of one delivery said when none took the message.
#[derive(Default)]
struct Failures {
    /// The failure that tells the most (see [`keep_the_telling`]).
    last: Option<(Option<SocketAddr>, ClientError)>,
    /// Servers that cannot carry this message ([`ClientError::permanent`]).
    cannot_carry: Vec<SocketAddr>,
    /// The last such refusal.
    refusal: Option<(Option<SocketAddr>, ClientError)>,
}

impl Failures {
    /// Whether [`Failures::outcome`] is [`ClientError::Suspended`]: no server said
    /// anything that decides.
    fn suspends(&self, targets: &[SocketAddr]) -> bool {
        !self.refused_by_all(targets) && self.last.is_none() && !targets.is_empty()
    }

    /// Whether every target refused the message for good.
    fn refused_by_all(&self, targets: &[SocketAddr]) -> bool {
        self.refusal.is_some() && targets.iter().all(|t| self.cannot_carry.contains(t))
    }

    /// The delivery's error: a refusal every target gave, else what a server said, else
    /// that the servers left were held back. A server's word comes before the hold of
    /// the others: refusals of recipients before it cut the session short settle them
    /// (review: behind a held-back backup they were dropped for `Suspended`, and the
    /// refused recipients were offered again at every retry).
    fn outcome(self, targets: &[SocketAddr], hold: Duration) -> (Option<SocketAddr>, ClientError) {
        let refused_by_all = self.refused_by_all(targets);
        match (self.refusal, self.last) {
            (Some(refused), _) if refused_by_all => refused,
            (_, Some(failure)) => failure,
            _ if targets.is_empty() => (None, ClientError::NoServer),
            // The others were held back: wait for them.
            _ => (None, ClientError::Suspended { hold }),
        }
    }
}

/// What became of the worker's kept connection.
enum Reused {
    /// The transaction went through it; it is kept again.
    Delivered(SocketAddr, Answers),
    /// It failed once the body was handed over (the server may have the message), or
    /// the gateway is stopping: no other server gets it now.
    Ended(SocketAddr, ClientError),
    /// The targets to try, from this index on. After a failure before the body it is the
    /// kept connection's server again, on a fresh connection: the connection may be at
    /// fault rather than the server (closed while idle, a `421` at an error limit counted
    /// per connection, replies out of step). Not after a timeout: waiting twice for a
    /// server that does not answer gains nothing.
    TryFrom(usize),
}

/// Sends `tx` over the worker's kept connection when it may be reused, recording in
/// `failures` why it did not go.
async fn reuse(
    relay: &Relay,
    config: &Config,
    settings: &ClientSettings,
    slot: &mut Option<Connection>,
    targets: &[SocketAddr],
    tx: &Transaction<'_>,
    failures: &mut Failures,
) -> Reused {
    let Some(mut c) = slot.take() else {
        return Reused::TryFrom(0);
    };
    let server = c.server();
    // A reload may have changed the terms (`relay.tls`, HELO name, deadlines): a
    // connection opened on the old ones is closed, not reused. Nor is one to a server
    // that is no longer the first choice (a backup taken while the primary was down),
    // or one older than `connection_reuse_time`.
    let hold = config.relay.unreachable_hold;
    let first_choice = relay.reachability.preferred(targets, hold) == Some(server);
    let young = c.opened_at().elapsed() < config.relay.connection_reuse_time;
    let idle_too_long = c.last_used().elapsed() >= config.relay.idle_timeout;
    if !first_choice || !young || idle_too_long || !c.opened_with(settings) {
        c.quit().await;
        return Reused::TryFrom(0);
    }
    let position = targets.iter().position(|s| *s == server).unwrap_or(0);
    match c.send(tx).await {
        Ok(answers) => {
            *slot = Some(c);
            Reused::Delivered(server, answers)
        }
        Err(e) if e.permanent() => {
            // Nothing was sent: the session is good, but not for this message.
            c.quit().await;
            failures.cannot_carry.push(server);
            failures.refusal = Some((Some(server), e));
            Reused::TryFrom(0)
        }
        Err(e) if e.stale_connection() => {
            tracing::debug!(%server, error = %e, "reused connection was closed; reconnecting");
            Reused::TryFrom(position)
        }
        Err(e) if e.ends_the_delivery() => Reused::Ended(server, e),
        Err(e) => {
            let again = e.worth_a_fresh_connection();
            if again {
                tracing::debug!(%server, error = %e, "reused connection failed; trying a fresh one");
            }
            keep_the_telling(&mut failures.last, (Some(server), e));
            Reused::TryFrom(position + usize::from(!again))
        }
    }
}

/// The servers placed after `server` in `targets`.
fn behind(targets: &[SocketAddr], server: SocketAddr) -> &[SocketAddr] {
    targets
        .iter()
        .position(|s| *s == server)
        .map_or(&[], |p| &targets[p + 1..])
}

/// Records `failure` as the last failure, unless the one recorded carries a server's
/// refusals of recipients before it cut the session short (`RecipientsCutShort`) and this
/// one does not: those refusals settle their recipients for good (review: a backup that
/// could not be reached next replaced them with its connect error, and the refused
/// recipients were offered again at every retry, then expired with `5.4.7`).
fn keep_the_telling(
    last: &mut Option<(Option<SocketAddr>, ClientError)>,
    failure: (Option<SocketAddr>, ClientError),
) {
    let told = last
        .as_ref()
        .is_some_and(|(_, e)| e.replies_before_the_end().is_some());
    if !told || failure.1.replies_before_the_end().is_some() {
        *last = Some(failure);
    }
}

/// A `452` that says the transaction has as many recipients as the server takes: `4.5.3`,
/// or, from a server without enhanced status codes (Exim), its words.
fn is_over_recipient_limit(reply: &Reply) -> bool {
    reply.code == 452
        && (reply.status == "4.5.3"
            || (reply.status.is_empty()
                && reply
                    .text
                    .to_ascii_lowercase()
                    .contains("too many recipients")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A suspension is told from the message's saved reason by its text's start.
    #[test]
    fn a_suspension_is_known_by_its_text() {
        let e = ClientError::Suspended {
            hold: Duration::from_secs(60),
        };
        let mut state = DeliveryState::new(1);
        state.last_error = Some(dsn::diagnostic_text(&e.to_string()));
        assert!(was_suspended(&state));
        state.last_error = Some("connect to 127.0.0.1:2526: refused".into());
        assert!(!was_suspended(&state));
    }

    /// Regression (review of the relay): what a server said was dropped for `Suspended` when the others were held back.
    #[test]
    fn a_servers_word_outranks_the_hold_of_the_others() {
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        );
        let hold = Duration::from_secs(60);
        let cut = ClientError::RecipientsCutShort {
            cause: Box::new(ClientError::Timeout { stage: "RCPT" }),
            replies: vec![Some(Reply::new(550, "5.1.1", "no such user")), None],
        };
        let failures = Failures {
            last: Some((Some(a), cut)),
            ..Failures::default()
        };
        let (server, e) = failures.outcome(&[a, b], hold);
        assert_eq!(server, Some(a));
        assert!(e.replies_before_the_end().is_some(), "{e:?}");
        let (_, e) = Failures::default().outcome(&[a, b], hold);
        assert!(matches!(e, ClientError::Suspended { .. }), "{e:?}");
        let (_, e) = Failures::default().outcome(&[], hold);
        assert!(matches!(e, ClientError::NoServer), "{e:?}");
    }
}
