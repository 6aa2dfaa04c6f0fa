//! A complete message: judged at the DATA stage, made durable in the spool before the
//! 250, and logged in one summary line.

use super::{End, Greeting, Session};
use crate::mail::Reply;
use crate::policy::{Judged, Stage, Verdict};
use crate::smtp::command::{Body, MailParams};
use crate::smtp::content::{ContentDecoder, ContentProblem};
use crate::smtp::received::received_header;
use crate::spool::{unix_now, Envelope, QueueId};

impl Session {
    /// Judges a complete message and, when it is accepted, makes it durable before the 250.
    pub(super) async fn finish_message(&mut self, decoder: ContentDecoder) -> Option<End> {
        let size = decoder.len();
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
        self.ctx.message = decoder.into_content();
        let decision = self
            .policy
            .clone()
            .evaluate(Stage::Data, &mut self.ctx)
            .await;
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
            return self.error(Stage::Data, reply).await;
        }
        let id = QueueId::generate();
        let reply = if verdict == Verdict::Discard {
            self.log_message(Some(&id), size, verdict, "discarded");
            Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
        } else {
            match self.spool_message(&id, verdict).await {
                Ok(()) => {
                    self.server.metrics.message_size_bytes.observe(size as f64);
                    let result = if verdict == Verdict::Quarantine {
                        "quarantined"
                    } else {
                        "queued"
                    };
                    self.log_message(Some(&id), size, verdict, result);
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
        self.messages += 1;
        self.reset_transaction();
        if reply.is_error() {
            self.error(Stage::Data, reply).await
        } else {
            self.ok(Stage::Data, reply)
        }
    }

    pub(super) async fn spool_message(
        &mut self,
        id: &QueueId,
        verdict: Verdict,
    ) -> Result<(), crate::spool::SpoolError> {
        let mail = self.mail.clone().unwrap_or(MailParams {
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
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
            body_8bit: mail.body == Body::EightBitMime,
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
        if verdict == Verdict::Quarantine {
            spool
                .quarantine_as(id, &envelope, header.as_bytes(), &self.ctx.message)
                .await
        } else {
            spool
                .store_as(id, &envelope, header.as_bytes(), &self.ctx.message)
                .await
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
            from = %self.ctx.mail_from.as_ref().map(|a| a.to_path()).unwrap_or_default(),
            to = %self.recipient_list(),
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
