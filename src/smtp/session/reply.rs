//! Sending replies: queued for pipelining or flushed, counted by stage and class, and
//! error replies counted against the client (tarpit, then disconnect).

use super::{wait_client, End, Session, Wait, ABORT_WRITE_TIMEOUT};
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

    /// Sends a reply now (with what is queued). `Some` end when it could not be written:
    /// the client does not read it within the command timeout, or was evicted meanwhile.
    #[must_use]
    pub(super) async fn send(&mut self, stage: impl Into<At>, reply: Reply) -> Option<End> {
        self.count_reply(stage, &reply);
        self.conn.queue(&reply.to_wire());
        self.flush_waiting().await
    }

    /// Sends what is queued by the command deadline, as a wait for the client: one that
    /// does not take its replies is as idle as one that sends nothing, and under stress
    /// it is evicted instead of holding its slot until the command timeout. An eviction,
    /// or the end of the shutdown grace, gives up the replies for good. `Some` end when
    /// the replies did not go out.
    pub(super) async fn flush_waiting(&mut self) -> Option<End> {
        let deadline = self.command_deadline();
        if *self.committing.borrow() {
            // The answer to a message the spool holds: not given up at the end of the
            // grace, which waits for it a moment (`Session::run`), nor by an eviction.
            return match self.conn.flush(deadline).await {
                Ok(()) => None,
                Err(_) => Some(self.write_failed()),
            };
        }
        let flush = self.conn.flush(deadline);
        let why = match wait_client(&self.handle, &self.server, false, flush).await {
            Wait::Ready(Ok(())) => return None,
            Wait::Ready(Err(_)) => return Some(self.write_failed()),
            Wait::Evicted => {
                self.limit_hit("stress_idle");
                "stress_idle"
            }
            Wait::Shutdown => "shutdown grace ended",
        };
        self.conn.abandon_writes();
        Some(End::Closed(why))
    }

    /// Sends a reply that ends the session (QUIT, timeouts, too many errors, shutdown),
    /// waiting at most a moment for a client that does not read.
    pub(super) async fn close(&mut self, reply: Reply) {
        self.count_reply(At::Other, &reply);
        self.conn.queue(&reply.to_wire());
        let _ = self.conn.flush(Instant::now() + ABORT_WRITE_TIMEOUT).await;
    }

    /// Ends the session at `limit`, counted, with `reply`.
    pub(super) async fn close_at_limit(&mut self, limit: &'static str, reply: Reply) -> End {
        self.limit_hit(limit);
        self.close(reply).await;
        End::Closed(limit)
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

    /// [`Session::bad_sequence`], unless the MAIL or an RCPT of the transaction was
    /// deferred by us (a limit, greylisting, the spool short of room): the commands a
    /// pipelining client sent behind a deferral (RFC 2920 §3.1) then fail as expected,
    /// answered alike and not counted (review: each greylisted transaction's DATA counted
    /// an error, and a list server reusing its connection met the tarpit and 421; counted
    /// as junk, it met them fifty messages later). Up to a transaction's worth (its
    /// recipients and its DATA); past that they count as junk.
    pub(super) async fn out_of_sequence(&mut self, stage: Stage, why: &str) -> Option<End> {
        let Some(answered) = self.after_deferral.as_mut() else {
            return self.bad_sequence(stage, why).await;
        };
        *answered += 1;
        let answered = *answered;
        let reply = Reply::new(503, "5.5.1", format!("Bad sequence of commands: {why}"));
        if answered <= self.limits().recipients_per_message + 1 {
            return self.ok(stage, reply);
        }
        self.junk_reply(stage, reply).await
    }

    /// Sends an error reply, counting it against the client: past the tarpit threshold
    /// each error is delayed; at the error limit the session is closed.
    pub(super) async fn error(&mut self, stage: impl Into<At>, reply: Reply) -> Option<End> {
        tracing::debug!(client = %self.peer, reply = %reply, errors = self.errors_unforgiven + 1, "error reply");
        let stage = stage.into();
        if let Some(end) = self.count_error(stage, Some(&reply)).await {
            return Some(end);
        }
        self.ok(stage, reply)
    }

    /// Counts a client error: past the tarpit threshold it waits `tarpit_delay`; at the
    /// error limit it closes the session with 421, after `reply` when there is one.
    pub(super) async fn count_error(&mut self, stage: At, reply: Option<&Reply>) -> Option<End> {
        self.errors += 1;
        self.errors_unforgiven += 1;
        let limits = self.limits().clone();
        if self.errors_unforgiven >= limits.errors_before_disconnect {
            self.limit_hit("errors");
            if let Some(reply) = reply {
                self.count_reply(stage, reply);
                self.conn.queue(&reply.to_wire());
            }
            self.close(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ))
            .await;
            return Some(End::Closed("too many errors"));
        }
        if self.errors_unforgiven > limits.errors_before_tarpit && !limits.tarpit_delay.is_zero() {
            if let Some(end) = self.flush_waiting().await {
                return Some(end);
            }
            // A wait for the client like any other (review): under stress a tarpitted
            // client is the first to make room, and SIGTERM ends the pause.
            // Never past the session's end (review: a long `tarpit_delay` let a session
            // outlive `session_duration` by up to `errors_before_disconnect` pauses).
            let pause =
                tokio::time::sleep_until((Instant::now() + limits.tarpit_delay).min(self.deadline));
            match super::wait_client(&self.handle, &self.server, true, pause).await {
                super::Wait::Ready(()) => {}
                super::Wait::Shutdown => return Some(self.shut_down().await),
                super::Wait::Evicted => return Some(self.evicted().await),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Session;
    use crate::smtp::conn::Conn;
    use crate::smtp::testing;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// Regression (transport review): the reply the tarpit sends before its pause (like
    /// the 354 and STARTTLS's 220) was written outside any wait for the client, so a
    /// client that sent bad commands and never read the replies could not be evicted: it
    /// held its slot under stress until `command_timeout`.
    #[tokio::test]
    async fn a_client_that_never_reads_its_replies_can_be_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let (server, limits) = testing::server(
            dir.path(),
            "max_sessions=1\nstress_idle_timeout=\"1s\"\ncommand_timeout=\"60s\"\n\
             errors_before_tarpit=0\ntarpit_delay=\"1ms\"\nerrors_before_disconnect=1000000",
        );
        // Small buffers at both ends (an accepted socket inherits the listener's), so a
        // few hundred unread replies fill the connection.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let mut client = client
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let slot = server.admission.admit(&server, peer.ip(), &limits).unwrap();
        let session = Session::new(Conn::new(tcp), server.clone(), peer, slot.handle());
        let running = tokio::spawn(async move {
            let _slot = slot;
            session.run().await
        });
        let commands = 4000;
        client
            .write_all(&b"XYZZY\r\n".repeat(commands))
            .await
            .unwrap();
        // Wait until the replies stop: the session is stuck writing one.
        let errors = || {
            server
                .metrics
                .smtp_replies_total
                .with_label_values(&["other", "5xx"])
                .get()
        };
        let mut seen = u64::MAX;
        while errors() != seen {
            seen = errors();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(
            seen < commands as u64 / 2,
            "the replies did not fill the connection: {seen}"
        );
        tokio::time::sleep(limits.stress_idle_timeout).await;
        assert_eq!(
            server.admission.evict_idle(&limits),
            1,
            "the session writing to a client that does not read was not waiting for it"
        );
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the evicted session did not end")
            .unwrap();
        assert_eq!(server.admission.in_use(), 0);
        let evicted = server
            .metrics
            .limit_hits_total
            .with_label_values(&["stress_idle"])
            .get();
        assert_eq!(evicted, 1);
        drop(client);
    }
}
