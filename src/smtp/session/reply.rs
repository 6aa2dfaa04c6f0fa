//! Sending replies: queued for pipelining or flushed, counted by stage and class, and
//! error replies counted against the client (tarpit, then disconnect).

use super::{End, Session, ABORT_WRITE_TIMEOUT};
use crate::mail::Reply;
use crate::policy::Stage;
use tokio::time::Instant;

/// The `stage` label a reply is counted under: a policy stage, or `other` for what is
/// outside the mail transaction (RSET, NOOP, HELP, VRFY, QUIT, syntax errors, timeouts).
#[derive(Debug, Clone, Copy)]
pub(super) enum At {
    Stage(Stage),
    Other,
}

impl From<Stage> for At {
    fn from(stage: Stage) -> At {
        At::Stage(stage)
    }
}

impl At {
    fn label(self) -> &'static str {
        match self {
            At::Stage(stage) => stage.as_str(),
            At::Other => "other",
        }
    }
}

impl Session {
    /// Queues a reply and counts it.
    pub(super) fn ok(&mut self, stage: impl Into<At>, reply: Reply) -> Option<End> {
        self.count_reply(stage, &reply);
        self.conn.queue(&reply.to_wire());
        None
    }

    /// Sends a reply now (with what is queued). A client that does not read it within
    /// the command timeout loses the connection: the command loop sees the failed write.
    pub(super) async fn send(&mut self, stage: impl Into<At>, reply: Reply) {
        let deadline = self.command_deadline();
        self.send_by(stage, reply, deadline).await;
    }

    /// Sends a reply that ends the session (QUIT, timeouts, too many errors, shutdown),
    /// waiting at most a moment for a client that does not read.
    pub(super) async fn close(&mut self, reply: Reply) {
        self.send_by(At::Other, reply, Instant::now() + ABORT_WRITE_TIMEOUT)
            .await;
    }

    /// Ends the session at `limit`, counted, with `reply`.
    pub(super) async fn close_at_limit(&mut self, limit: &'static str, reply: Reply) -> End {
        self.limit_hit(limit);
        self.close(reply).await;
        End::Closed(limit)
    }

    async fn send_by(&mut self, stage: impl Into<At>, reply: Reply, deadline: Instant) {
        self.count_reply(stage, &reply);
        self.conn.queue(&reply.to_wire());
        let _ = self.conn.flush(deadline).await;
    }

    pub(super) fn count_reply(&self, stage: impl Into<At>, reply: &Reply) {
        let class = match reply.class() {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.server
            .metrics
            .smtp_replies_total
            .with_label_values(&[stage.into().label(), class])
            .inc();
    }

    pub(super) fn limit_hit(&self, limit: &str) {
        tracing::info!(client = %self.peer, limit, "limit hit");
        self.server
            .metrics
            .limit_hits_total
            .with_label_values(&[limit])
            .inc();
    }

    pub(super) async fn bad_sequence(&mut self, stage: Stage, why: &str) -> Option<End> {
        self.error(
            stage,
            Reply::new(503, "5.5.1", format!("Bad sequence of commands: {why}")),
        )
        .await
    }

    /// Sends an error reply, counting it against the client: past the tarpit threshold
    /// each error is delayed; at the error limit the session is closed.
    pub(super) async fn error(&mut self, stage: impl Into<At>, reply: Reply) -> Option<End> {
        self.errors += 1;
        let limits = self.limits().clone();
        tracing::debug!(client = %self.peer, reply = %reply, errors = self.errors, "error reply");
        let stage = stage.into();
        if self.errors >= limits.errors_before_disconnect {
            self.limit_hit("errors");
            self.count_reply(stage, &reply);
            self.conn.queue(&reply.to_wire());
            self.close(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ))
            .await;
            return Some(End::Closed("too many errors"));
        }
        if self.errors > limits.errors_before_tarpit && !limits.tarpit_delay.is_zero() {
            let _ = self.conn.flush(self.command_deadline()).await;
            tokio::select! {
                _ = tokio::time::sleep(limits.tarpit_delay) => {}
                _ = self.server.stop_now.cancelled() => {}
            }
        }
        self.ok(stage, reply)
    }
}
