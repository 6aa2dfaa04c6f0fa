//! A complete message: judged at the DATA stage, made durable in the spool before the
//! 250, and logged in one summary line.

use super::data::Transfer;
use super::{End, Greeting, Session};
use crate::mail::Reply;
use crate::policy::{Judged, Stage, Stored, Verdict};
use crate::smtp::command::{Body, MailParams};
use crate::smtp::content::ContentProblem;
use crate::smtp::received::received_header;
use crate::smtp::sink::SinkError;
use crate::spool::{unix_now, Envelope, QueueId};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;

impl Session {
    /// Judges a complete message and, when it is accepted, makes it durable before the 250.
    pub(super) async fn finish_message(&mut self, transfer: Transfer) -> Option<End> {
        let Transfer { decoder, sink, .. } = transfer;
        let size = decoder.len();
        let eight_bit = decoder.saw_eight_bit();
        if let Some(problem) = decoder.problem() {
            let (limit, reply) = match problem {
                ContentProblem::TooBig => (
                    "message_size",
                    Reply::new(
                        552,
                        "5.3.4",
                        format!(
                            "Message size exceeds fixed limit of {} bytes",
                            self.limits().message_size_bytes
                        ),
                    ),
                ),
                ContentProblem::BareLineEnding => (
                    "bare_line_ending",
                    Reply::new(
                        550,
                        "5.6.0",
                        "Message contains bare CR or LF; lines must end with CRLF",
                    ),
                ),
                ContentProblem::LineTooLong => (
                    "text_line",
                    Reply::new(
                        550,
                        "5.6.0",
                        format!(
                            "Message line longer than {} bytes",
                            self.limits().text_line_bytes
                        ),
                    ),
                ),
                ContentProblem::Nul => (
                    "nul_byte",
                    Reply::new(550, "5.6.0", "Message contains NUL bytes"),
                ),
            };
            self.limit_hit(limit);
            self.log_message(None, size, Verdict::Reject, limit);
            self.reset_transaction();
            return self.error(Stage::Data, reply).await;
        }
        let (message, memory) = match sink.finish().await {
            Ok(received) => received,
            Err(e) => return self.not_received(e, size).await,
        };
        self.ctx.message = message;
        let limits = self.limits().clone();
        // What the judgement holds, within what the budget can ever give.
        let judging =
            crate::policy::message::judging_bytes(&limits).min(limits.message_memory_total_bytes);
        let on_disk = self.ctx.message.spool_id().is_some();
        let wanted = if on_disk {
            self.server.metrics.messages_on_disk_total.inc();
            // The sample the checks parse needs memory: wait for it holding none.
            drop(memory);
            Some(judging)
        } else {
            // Judging a message kept in memory holds about twice it again (its parse and
            // view, a copy when our own fields are stripped from it): reserved too, as for
            // one on disk (review: only its receive buffer was, and messages just under
            // `message_memory_bytes` held three times what the budget counted).
            let need = memory
                .bytes()
                .saturating_add(size.saturating_mul(2).min(judging))
                .min(limits.message_memory_total_bytes);
            let mut memory = memory;
            if memory.grow_to(need) {
                self.message_memory = Some(memory);
                None
            } else {
                // Waited for holding none, as on disk: sessions holding their buffers while
                // waiting for more could hold the whole budget between them.
                drop(memory);
                Some(need)
            }
        };
        if let Some(bytes) = wanted {
            let network = self.client_network();
            let wanted = self.server.budget.reserve_for(network, bytes);
            match tokio::time::timeout(limits.message_memory_wait, wanted).await {
                Ok(r) => self.message_memory = Some(r),
                Err(_) => {
                    self.memory_limit_hit(network, bytes);
                    self.log_message(None, size, Verdict::Tempfail, "no memory to scan");
                    self.reset_transaction();
                    // Logged above: one line and one count (review: two).
                    return self.busy_reply().await;
                }
            }
        }
        let policy = self.policy.clone();
        self.ctx.arrival = Some(i64::try_from(crate::spool::unix_now()).unwrap_or(i64::MAX));
        let judged = AssertUnwindSafe(policy.evaluate(Stage::Data, &mut self.ctx))
            .catch_unwind()
            .await;
        let Ok(decision) = judged else {
            return self.policy_panicked(size).await;
        };
        for s in &self.ctx.symbols {
            self.server
                .metrics
                .rule_hits_total
                .with_label_values(&[s.name.as_str()])
                .inc();
        }
        let (verdict, refusal) = self.policy.conclude(decision, &self.ctx);
        if let Some(reply) = refusal {
            self.log_message(None, size, verdict, &reply.to_string());
            self.reset_transaction();
            return self.answer_data(reply).await;
        }
        // A message already on disk keeps the id of its spool file.
        let id = self
            .ctx
            .message
            .spool_id()
            .cloned()
            .unwrap_or_else(QueueId::generate);
        let reply = if verdict == Verdict::Discard {
            self.log_message(Some(&id), size, verdict, "discarded");
            Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
        } else {
            self.committing.send_replace(true);
            match self.spool_message(&id, verdict, eight_bit).await {
                Ok(()) => {
                    self.server.metrics.message_size_bytes.observe(size as f64);
                    let result = if verdict == Verdict::Quarantine {
                        "quarantined"
                    } else {
                        "queued"
                    };
                    self.log_message(Some(&id), size, verdict, result);
                    self.policy.message_accepted(&mut self.ctx, verdict);
                    Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
                }
                Err(e) => {
                    tracing::error!(client = %self.peer, error = %e, "spool write failed");
                    self.server.metrics.spool_errors_total.inc();
                    self.log_message(None, size, Verdict::Tempfail, "spool write failed");
                    Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
                }
            }
        };
        if !reply.is_error() {
            // As Postfix does: a message accepted forgives the errors and the junk
            // commands before it (a connection cache sends RSET before each message).
            self.messages += 1;
            self.errors_unforgiven = 0;
            self.deferred_rcpts = 0;
            self.junk = 0;
        }
        self.reset_transaction();
        let mut answered = self.answer_data(reply).await;
        if answered.is_none() && *self.committing.borrow() {
            // Sent now, not only queued: the end of the grace waits for this answer.
            answered = self.flush_waiting().await;
        }
        self.committing.send_replace(false);
        answered
    }

    /// The content checks panicked on this message: a defect of ours or of a parser we use,
    /// not the sender's fault. The sender keeps the message (451) and the operator sees a
    /// log line and `mxguard_policy_panics_total`; the session goes on, since the panic
    /// unwound only the judgement of this one message.
    async fn policy_panicked(&mut self, size: usize) -> Option<End> {
        tracing::error!(client = %self.peer, size, "the content checks panicked; answered 451");
        self.server.metrics.policy_panics_total.inc();
        self.log_message(None, size, Verdict::Tempfail, "policy panicked");
        self.reset_transaction();
        let reply = Reply::new(451, "4.3.0", "Local error in processing, try again later");
        self.answer_data(reply).await
    }

    /// A transfer whose bytes could not be kept: the header section broke a limit (bytes,
    /// fields, hops), or the spool could not be written.
    async fn not_received(&mut self, e: SinkError, size: usize) -> Option<End> {
        let limits = self.limits();
        let header_limit = match &e {
            SinkError::HeaderTooLong => Some((
                "message_header",
                Reply::new(
                    552,
                    "5.3.4",
                    format!(
                        "Message header section exceeds {} bytes",
                        limits.message_header_bytes
                    ),
                ),
            )),
            SinkError::TooManyHeaderFields => Some((
                "message_header_fields",
                Reply::new(
                    552,
                    "5.3.4",
                    format!(
                        "Message header section has more than {} fields",
                        limits.message_header_fields
                    ),
                ),
            )),
            SinkError::TooManyHops => Some((
                "received_fields",
                Reply::new(
                    554,
                    "5.4.6",
                    format!(
                        "Too many hops: more than {} Received fields, a mail loop?",
                        limits.received_fields
                    ),
                ),
            )),
            _ => None,
        };
        let reply = match (&e, header_limit) {
            (_, Some((limit, reply))) => {
                self.limit_hit(limit);
                self.log_message(None, size, Verdict::Reject, limit);
                reply
            }
            (SinkError::Spool(err), None) => {
                tracing::error!(client = %self.peer, error = %err, "spool write failed");
                self.server.metrics.spool_errors_total.inc();
                self.log_message(None, size, Verdict::Tempfail, "spool write failed");
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
            }
            _ => {
                self.log_message(None, size, Verdict::Tempfail, "discarded");
                Reply::new(451, "4.3.0", "Local error in processing, try again later")
            }
        };
        self.reset_transaction();
        self.answer_data(reply).await
    }

    /// The answer to a message at the end of its transfer. A refusal (5xx) counts as a
    /// client error; a deferral does not: greylisting, a rate limit, a spool or memory
    /// short, a panic of ours are not the client's doing, and counted as errors they
    /// met a list server reusing its connection with the tarpit and the `421` (review).
    pub(super) async fn answer_data(&mut self, reply: Reply) -> Option<End> {
        if reply.is_permanent() {
            self.error(Stage::Data, reply).await
        } else {
            self.ok(Stage::Data, reply)
        }
    }

    /// Makes the accepted message durable. `eight_bit`: its content has a byte past
    /// ASCII, declared or not (see [`crate::smtp::content::ContentDecoder::saw_eight_bit`]).
    pub(super) async fn spool_message(
        &mut self,
        id: &QueueId,
        verdict: Verdict,
        eight_bit: bool,
    ) -> Result<(), crate::spool::SpoolError> {
        let mail = self.mail.clone().unwrap_or(MailParams {
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
            given: false,
        });
        let envelope = Envelope {
            mail_from: self
                .ctx
                .mail_from
                .as_ref()
                .map(|a| a.to_path())
                .unwrap_or_default(),
            rcpt_to: self.ctx.recipients.iter().map(|a| a.to_path()).collect(),
            client_ip: self.peer.ip(),
            helo: self.ctx.client.helo.clone().unwrap_or_default(),
            received_at: unix_now(),
            body_8bit: mail.body == Body::EightBitMime || eight_bit,
            smtputf8: mail.smtputf8,
            verdict: verdict.as_str().to_owned(),
            score: self.ctx.score(),
            is_dsn: false,
            rules: self.ctx.symbols.iter().map(|s| s.name.clone()).collect(),
        };
        let mut header = received_header(
            &envelope,
            self.hostname(),
            id,
            self.greeting == Some(Greeting::Ehlo),
            self.conn.is_tls(),
        );
        header.push_str(&self.policy.verdict_headers(&self.ctx, verdict));
        let spool = &self.server.spool;
        let quarantine = verdict == Verdict::Quarantine;
        match std::mem::take(&mut self.ctx.message).into_stored()? {
            Stored::Spilled(file) => {
                spool
                    .commit_spill(file, &envelope, header.as_bytes(), quarantine)
                    .await
            }
            Stored::Memory(bytes) if quarantine => {
                spool
                    .quarantine_as(id, &envelope, header.as_bytes(), &bytes)
                    .await
            }
            Stored::Memory(bytes) => {
                spool
                    .store_as(id, &envelope, header.as_bytes(), &bytes)
                    .await
            }
        }
    }

    pub(super) fn recipient_list(&self) -> String {
        self.ctx
            .recipients
            .iter()
            .map(|a| a.to_path())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The one summary line per judged message.
    pub(super) fn log_message(
        &self,
        id: Option<&QueueId>,
        size: usize,
        verdict: Verdict,
        result: &str,
    ) {
        self.server
            .metrics
            .messages_total
            .with_label_values(&[verdict.as_str()])
            .inc();
        let rules: Vec<&str> = self.ctx.symbols.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(
            queue_id = id.map(|i| i.as_str()).unwrap_or("-"),
            client = %self.peer.ip(),
            helo = self.ctx.client.helo.as_deref().unwrap_or(""),
            // As strings, which the log writes escaped (quoted in text, JSON-escaped): an
            // address may hold U+2028 or U+202E, which `%` wrote raw (review).
            from = self.ctx.mail_from.as_ref().map(|a| a.to_path()).unwrap_or_default().as_str(),
            to = self.recipient_list().as_str(),
            size,
            verdict = verdict.as_str(),
            score = self.ctx.score(),
            rules = %rules.join(","),
            tls = self.conn.is_tls(),
            result,
            "message"
        );
        self.server.journal.record(
            id.map(|i| i.as_str()),
            Judged {
                id: String::new(),
                at: std::time::SystemTime::now(),
                client: self.peer.ip(),
                helo: self.ctx.client.helo.clone().unwrap_or_default(),
                from: self
                    .ctx
                    .mail_from
                    .as_ref()
                    .map(|a| a.to_path())
                    .unwrap_or_default(),
                to: self.ctx.recipients.iter().map(|a| a.to_path()).collect(),
                verdict,
                score: self.ctx.score(),
                hits: self
                    .ctx
                    .symbols
                    .iter()
                    .map(|s| (s.name.clone(), s.score))
                    .collect(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Session;
    use crate::smtp::conn::Conn;
    use crate::smtp::testing;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// Regression (review of the relay): the envelope said 8-bit only when the client
    /// declared `BODY=8BITMIME`, so undeclared 8-bit content (common) went raw to an
    /// internal server without 8BITMIME. What the session saw is recorded too.
    #[tokio::test]
    async fn undeclared_eight_bit_content_is_recorded_as_eight_bit() {
        let dir = tempfile::tempdir().unwrap();
        let (server, limits) = testing::server(dir.path(), "");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (tcp, peer) = accepted.unwrap();
        let slot = server.admission.admit(&server, peer.ip(), &limits).unwrap();
        let session = Session::new(Conn::new(tcp), server.clone(), peer, slot.handle());
        let running = tokio::spawn(async move {
            let _slot = slot;
            session.run().await
        });
        let (read, mut write) = client.unwrap().into_split();
        let mut lines = BufReader::new(read).lines();
        let mut queued = Vec::new();
        for body in ["caf\u{e9}", "plain"] {
            let data = format!("From: <s@example.org>\r\nSubject: t\r\n\r\n{body}\r\n.\r\n");
            let script = format!(
                "EHLO c.example.org\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<u@a.test>\r\nDATA\r\n{data}"
            );
            write.write_all(script.as_bytes()).await.unwrap();
            let reply = loop {
                let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                if line.starts_with("250 2.0.0") || line.starts_with('4') || line.starts_with('5') {
                    break line;
                }
            };
            let id = reply.rsplit(' ').next().unwrap_or_default().to_owned();
            assert!(reply.contains("queued as"), "{reply}");
            queued.push(crate::spool::QueueId::parse(&id).unwrap());
        }
        write.write_all(b"QUIT\r\n").await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
        let flag = |id| server.spool.load(id).unwrap().envelope.body_8bit;
        assert!(flag(&queued[0]), "8-bit content sent without BODY=8BITMIME");
        assert!(!flag(&queued[1]));
    }
}
