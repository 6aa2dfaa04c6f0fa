//! The SMTP session state machine: protocol only. At each stage it asks the policy and
//! acts on the decision; it never judges content itself.

use super::command::{self, Body, Command, CommandError, MailParams};
use super::conn::{Conn, Line, ReadError};
use super::data::{ContentDecoder, ContentProblem};
use super::received::received_header;
use super::Shared;
use crate::policy::{ClientInfo, Context, Decision, Policy, Reply, Stage, Verdict};
use crate::spool::{unix_now, Envelope, QueueId};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// How a session ended, for the log.
#[derive(Debug)]
enum End {
    Quit,
    ClientClosed,
    Closed(&'static str),
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Quit => "quit",
            End::ClientClosed => "client closed",
            End::Closed(why) => why,
        }
    }
}

/// Which HELO form the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    Helo,
    Ehlo,
}

/// One client connection from banner to close.
pub struct Session {
    conn: Conn,
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    peer: SocketAddr,
    ctx: Context,
    greeting: Option<Greeting>,
    mail: Option<MailParams>,
    bdat: Option<ContentDecoder>,
    errors: u32,
    messages: usize,
    deadline: Instant,
}

impl Session {
    /// Prepares a session; the policy snapshot is fixed for its whole life.
    pub fn new(conn: Conn, shared: Arc<Shared>, peer: SocketAddr) -> Session {
        let policy = shared.policy.load_full();
        let deadline = Instant::now() + policy.config().server.limits.session_duration;
        let ctx = Context::new(ClientInfo::new(peer.ip()));
        Session {
            conn,
            shared,
            policy,
            peer,
            ctx,
            greeting: None,
            mail: None,
            bdat: None,
            errors: 0,
            messages: 0,
            deadline,
        }
    }

    fn limits(&self) -> &crate::config::Limits {
        &self.policy.config().server.limits
    }

    fn hostname(&self) -> &str {
        &self.policy.config().server.hostname
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let end = self.serve().await;
        self.conn.shutdown().await;
        tracing::debug!(client = %self.peer, end = end.reason(), messages = self.messages, "session closed");
    }

    async fn serve(&mut self) -> End {
        match self
            .policy
            .clone()
            .evaluate(Stage::Connect, &mut self.ctx)
            .await
        {
            Decision::Continue | Decision::Discard => {}
            Decision::Reject(r) | Decision::Tempfail(r) => {
                self.send(Stage::Connect, r).await;
                return End::Closed("refused at connect");
            }
        }
        let greet_delay = self.policy.config().server.greet_delay;
        if !greet_delay.is_zero() {
            // Pre-greet test: a legitimate client waits for the banner; bots often do not.
            match tokio::time::timeout(greet_delay, self.conn.fill(self.deadline)).await {
                Ok(Ok(_)) => {
                    tracing::info!(client = %self.peer, "client talked before the banner");
                    self.ctx.client.early_talker = true;
                }
                Ok(Err(e)) => return self.read_failed(e).await,
                Err(_) => {}
            }
        }
        let banner = format!("{} {}", self.hostname(), self.policy.config().server.banner);
        self.send(Stage::Connect, Reply::new(220, "", banner)).await;
        loop {
            if !self.conn.has_buffered_input() && self.conn.flush().await.is_err() {
                return End::ClientClosed;
            }
            let line = tokio::select! {
                line = self.conn.read_line(self.limits().command_line_bytes, self.command_deadline()) => line,
                _ = self.shared.shutdown.cancelled() => {
                    self.close(Reply::new(421, "4.3.2", "Service shutting down, try again later")).await;
                    return End::Closed("shutdown");
                }
            };
            let line = match line {
                Ok(Line::Complete(line)) => line,
                Ok(Line::TooLong) => {
                    self.limit_hit("command_line");
                    if let Some(end) = self
                        .error(Stage::Connect, Reply::new(500, "5.5.2", "Line too long"))
                        .await
                    {
                        return end;
                    }
                    continue;
                }
                Err(e) => return self.read_failed(e).await,
            };
            let sent_ahead = self.conn.has_buffered_input();
            let outcome = match command::parse(&line) {
                Ok(cmd) => {
                    if sent_ahead {
                        self.note_sent_ahead(&cmd);
                    }
                    self.dispatch(cmd).await
                }
                Err(e) => self.command_error(e).await,
            };
            if let Some(end) = outcome {
                return end;
            }
        }
    }

    /// RFC 2920: without PIPELINING a client waits for every reply; with it, still for
    /// the replies to EHLO/HELO and DATA. Input already waiting breaks that.
    fn note_sent_ahead(&mut self, cmd: &Command) {
        let must_wait = matches!(cmd, Command::Ehlo(_) | Command::Helo(_) | Command::Data)
            || self.greeting != Some(Greeting::Ehlo);
        if must_wait && !matches!(cmd, Command::StartTls) && !self.ctx.client.pipelining_abuse {
            tracing::info!(client = %self.peer, "client sent commands ahead without waiting for a reply");
            self.ctx.client.pipelining_abuse = true;
        }
    }

    fn command_deadline(&self) -> Instant {
        (Instant::now() + self.limits().command_timeout).min(self.deadline)
    }

    async fn read_failed(&mut self, e: ReadError) -> End {
        match e {
            ReadError::Closed | ReadError::Io(_) => End::ClientClosed,
            ReadError::Timeout => {
                let (limit, text) = if Instant::now() >= self.deadline {
                    (
                        "session_duration",
                        "Session time limit exceeded, closing connection",
                    )
                } else {
                    ("command_timeout", "Timeout exceeded, closing connection")
                };
                self.limit_hit(limit);
                self.close(Reply::new(421, "4.4.2", text)).await;
                End::Closed(limit)
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> Option<End> {
        match cmd {
            Command::Ehlo(name) => self.hello(name, Greeting::Ehlo).await,
            Command::Helo(name) => self.hello(name, Greeting::Helo).await,
            Command::Mail(from, params) => self.mail_from(from, params).await,
            Command::Rcpt(to) => self.rcpt_to(to).await,
            Command::Data => self.data().await,
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::Rset => {
                self.reset_transaction();
                self.ok(Stage::Connect, Reply::new(250, "2.0.0", "Ok"))
            }
            Command::Noop => self.ok(Stage::Connect, Reply::new(250, "2.0.0", "Ok")),
            Command::Quit => {
                self.close(Reply::new(221, "2.0.0", "Bye")).await;
                Some(End::Quit)
            }
            Command::Help => self.ok(
                Stage::Connect,
                Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS",
                ),
            ),
            Command::Vrfy => self.ok(
                Stage::Connect,
                Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ),
            ),
            Command::Expn => {
                self.error(
                    Stage::Connect,
                    Reply::new(502, "5.5.1", "EXPN not available"),
                )
                .await
            }
            Command::StartTls => self.start_tls().await,
        }
    }

    async fn command_error(&mut self, e: CommandError) -> Option<End> {
        let reply = match &e {
            CommandError::Unknown => Reply::new(500, "5.5.2", "Command not recognized"),
            CommandError::Encoding => {
                Reply::new(500, "5.5.2", "Command contains invalid characters")
            }
            CommandError::Syntax(why) => Reply::new(501, "5.5.4", format!("Syntax error: {why}")),
            CommandError::Address(why) => {
                Reply::new(553, "5.1.3", format!("Bad address syntax: {why}"))
            }
            CommandError::Parameter(p) => {
                Reply::new(555, "5.5.4", format!("Unsupported parameter {p}"))
            }
        };
        self.error(Stage::Connect, reply).await
    }

    async fn hello(&mut self, name: String, greeting: Greeting) -> Option<End> {
        self.reset_transaction();
        self.ctx.client.helo = Some(name);
        self.greeting = None;
        match self
            .policy
            .clone()
            .evaluate(Stage::Helo, &mut self.ctx)
            .await
        {
            Decision::Continue | Decision::Discard => {}
            Decision::Reject(r) | Decision::Tempfail(r) => return self.error(Stage::Helo, r).await,
        }
        self.greeting = Some(greeting);
        let host = self.hostname().to_owned();
        let reply = match greeting {
            Greeting::Helo => Reply::new(250, "", host),
            Greeting::Ehlo => {
                let mut lines = vec![
                    host,
                    "PIPELINING".to_owned(),
                    format!("SIZE {}", self.limits().message_size_bytes),
                    "8BITMIME".to_owned(),
                    "SMTPUTF8".to_owned(),
                    "ENHANCEDSTATUSCODES".to_owned(),
                    "CHUNKING".to_owned(),
                ];
                if self.shared.tls.is_some() && !self.conn.is_tls() {
                    lines.push("STARTTLS".to_owned());
                }
                Reply::new(250, "", lines.join("\n"))
            }
        };
        self.ok(Stage::Helo, reply)
    }

    async fn mail_from(&mut self, from: crate::smtp::Address, params: MailParams) -> Option<End> {
        if self.greeting.is_none() {
            return self.bad_sequence(Stage::Mail, "Send HELO/EHLO first").await;
        }
        if self.ctx.mail_from.is_some() {
            return self
                .bad_sequence(Stage::Mail, "Sender already specified")
                .await;
        }
        if self.messages >= self.limits().messages_per_session {
            self.limit_hit("messages_per_session");
            self.close(Reply::new(
                421,
                "4.7.0",
                "Too many messages in one session, closing connection",
            ))
            .await;
            return Some(End::Closed("messages_per_session"));
        }
        if from.is_utf8() && !params.smtputf8 {
            return self
                .error(
                    Stage::Mail,
                    Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
                )
                .await;
        }
        if params.smtputf8 && self.greeting != Some(Greeting::Ehlo) {
            return self
                .bad_sequence(Stage::Mail, "SMTPUTF8 requires EHLO")
                .await;
        }
        self.ctx.declared_size = params.size;
        self.ctx.mail_from = Some(from);
        match self
            .policy
            .clone()
            .evaluate(Stage::Mail, &mut self.ctx)
            .await
        {
            Decision::Continue | Decision::Discard => {
                self.mail = Some(params);
                self.ok(Stage::Mail, Reply::new(250, "2.1.0", "Ok"))
            }
            Decision::Reject(r) | Decision::Tempfail(r) => {
                self.reset_transaction();
                self.error(Stage::Mail, r).await
            }
        }
    }

    async fn rcpt_to(&mut self, to: crate::smtp::Address) -> Option<End> {
        let Some(mail) = &self.mail else {
            return self
                .bad_sequence(Stage::Rcpt, "Need MAIL before RCPT")
                .await;
        };
        if self.bdat.is_some() {
            return self
                .bad_sequence(Stage::Rcpt, "RCPT not allowed during BDAT")
                .await;
        }
        if to.is_utf8() && !mail.smtputf8 {
            return self
                .error(
                    Stage::Rcpt,
                    Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
                )
                .await;
        }
        if self.ctx.recipients.len() >= self.limits().recipients_per_message {
            self.limit_hit("recipients_per_message");
            return self
                .error(Stage::Rcpt, Reply::new(452, "4.5.3", "Too many recipients"))
                .await;
        }
        self.ctx.rcpt = Some(to);
        let decision = self
            .policy
            .clone()
            .evaluate(Stage::Rcpt, &mut self.ctx)
            .await;
        let rcpt = self.ctx.rcpt.take();
        match (decision, rcpt) {
            (Decision::Continue | Decision::Discard, Some(rcpt)) => {
                self.ctx.recipients.push(rcpt);
                self.ok(Stage::Rcpt, Reply::new(250, "2.1.5", "Ok"))
            }
            (Decision::Reject(r) | Decision::Tempfail(r), _) => self.error(Stage::Rcpt, r).await,
            (_, None) => {
                self.error(Stage::Rcpt, Reply::new(451, "4.3.0", "Internal error"))
                    .await
            }
        }
    }

    async fn data(&mut self) -> Option<End> {
        if self.mail.is_none() {
            return self
                .bad_sequence(Stage::Data, "Need MAIL before DATA")
                .await;
        }
        if self.bdat.is_some() {
            return self
                .bad_sequence(Stage::Data, "DATA not allowed after BDAT")
                .await;
        }
        if self.ctx.recipients.is_empty() {
            return self.bad_sequence(Stage::Data, "No valid recipients").await;
        }
        self.send(
            Stage::Data,
            Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
        )
        .await;
        let limits = self.limits().clone();
        let mut decoder = ContentDecoder::data(
            limits.message_size_bytes,
            limits.text_line_bytes,
            self.policy.config().server.bare_line_ending,
        );
        let rate = RateGuard::new(&limits);
        let mut received = 0;
        loop {
            let used = decoder.feed(self.conn.buffered());
            self.conn.consume(used);
            received += used;
            if decoder.is_done() {
                break;
            }
            let deadline = rate.deadline(received, self.command_deadline());
            if let Err(e) = self.conn.fill(deadline).await {
                return Some(self.transfer_failed(e, &rate, received).await);
            }
        }
        self.finish_message(decoder).await
    }

    async fn bdat(&mut self, size: usize, last: bool) -> Option<End> {
        // The chunk follows the command whatever we think of it: read it to stay in sync.
        let limits = self.limits().clone();
        let usable = self.mail.is_some() && !self.ctx.recipients.is_empty();
        if usable && self.bdat.is_none() {
            self.bdat = Some(ContentDecoder::bdat(
                limits.message_size_bytes,
                limits.text_line_bytes,
                self.policy.config().server.bare_line_ending,
            ));
        }
        let rate = RateGuard::new(&limits);
        let mut remaining = size;
        let mut received = 0;
        while remaining > 0 {
            if !self.conn.has_buffered_input() {
                let deadline = rate.deadline(received, self.command_deadline());
                if let Err(e) = self.conn.fill(deadline).await {
                    return Some(self.transfer_failed(e, &rate, received).await);
                }
            }
            let take = self.conn.buffered().len().min(remaining);
            if let Some(decoder) = self.bdat.as_mut().filter(|_| usable) {
                decoder.feed(&self.conn.buffered()[..take]);
            }
            self.conn.consume(take);
            remaining -= take;
            received += take;
        }
        if !usable {
            let why = if self.mail.is_none() {
                "Need MAIL before BDAT"
            } else {
                "No valid recipients"
            };
            return self.bad_sequence(Stage::Data, why).await;
        }
        let too_big = self
            .bdat
            .as_ref()
            .is_some_and(|d| d.problem() == Some(ContentProblem::TooBig));
        if too_big {
            // Refuse now (RFC 3030 allows it) rather than after more chunks.
            if let Some(decoder) = self.bdat.take() {
                return self.finish_message(decoder).await;
            }
        }
        if !last {
            return self.ok(
                Stage::Data,
                Reply::new(250, "2.0.0", format!("{size} octets received")),
            );
        }
        let Some(mut decoder) = self.bdat.take() else {
            return self.bad_sequence(Stage::Data, "No BDAT transaction").await;
        };
        decoder.finish_bdat();
        self.finish_message(decoder).await
    }

    async fn transfer_failed(&mut self, e: ReadError, rate: &RateGuard, bytes: usize) -> End {
        if matches!(e, ReadError::Timeout)
            && rate.too_slow(bytes)
            && Instant::now() < self.command_deadline()
        {
            self.limit_hit("min_data_rate");
            self.close(Reply::new(
                421,
                "4.4.2",
                "Data transfer too slow, closing connection",
            ))
            .await;
            return End::Closed("min_data_rate");
        }
        self.read_failed(e).await
    }

    /// Judges a complete message and, when it is accepted, makes it durable before the 250.
    async fn finish_message(&mut self, decoder: ContentDecoder) -> Option<End> {
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
            self.shared
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
                    self.shared.metrics.message_size_bytes.observe(size as f64);
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
                    self.shared.metrics.spool_errors_total.inc();
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

    async fn spool_message(
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
        let spool = &self.shared.spool;
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

    async fn start_tls(&mut self) -> Option<End> {
        let Some(acceptor) = self.shared.tls.clone() else {
            return self
                .error(
                    Stage::Helo,
                    Reply::new(502, "5.5.1", "STARTTLS not available"),
                )
                .await;
        };
        if self.conn.is_tls() {
            return self.bad_sequence(Stage::Helo, "TLS already active").await;
        }
        self.send(Stage::Helo, Reply::new(220, "2.0.0", "Ready to start TLS"))
            .await;
        let dropped = self.conn.buffered().len();
        if dropped > 0 {
            tracing::info!(client = %self.peer, bytes = dropped, "discarded plaintext pipelined after STARTTLS");
            self.limit_hit("starttls_injection");
        }
        match self
            .conn
            .start_tls(&acceptor, self.command_deadline())
            .await
        {
            Ok(version) => {
                self.shared
                    .metrics
                    .tls_sessions_total
                    .with_label_values(&[version.as_str()])
                    .inc();
                // RFC 3207: forget everything learned before TLS.
                self.reset_transaction();
                self.greeting = None;
                self.ctx.client.helo = None;
                self.ctx.client.tls = true;
                None
            }
            Err(e) => {
                tracing::info!(client = %self.peer, error = %e, "TLS handshake failed");
                Some(End::Closed("tls handshake failed"))
            }
        }
    }

    fn reset_transaction(&mut self) {
        self.ctx.reset_transaction();
        self.mail = None;
        self.bdat = None;
    }

    /// Queues a reply and counts it.
    fn ok(&mut self, stage: Stage, reply: Reply) -> Option<End> {
        self.count_reply(stage, &reply);
        self.conn.queue(&reply.to_wire());
        None
    }

    async fn send(&mut self, stage: Stage, reply: Reply) {
        self.count_reply(stage, &reply);
        self.conn.queue(&reply.to_wire());
        let _ = self.conn.flush().await;
    }

    async fn close(&mut self, reply: Reply) {
        self.send(Stage::Connect, reply).await;
    }

    fn count_reply(&self, stage: Stage, reply: &Reply) {
        let class = match reply.class() {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.shared
            .metrics
            .smtp_replies_total
            .with_label_values(&[stage.as_str(), class])
            .inc();
    }

    fn limit_hit(&self, limit: &str) {
        tracing::info!(client = %self.peer, limit, "limit hit");
        self.shared
            .metrics
            .limit_hits_total
            .with_label_values(&[limit])
            .inc();
    }

    async fn bad_sequence(&mut self, stage: Stage, why: &str) -> Option<End> {
        self.error(
            stage,
            Reply::new(503, "5.5.1", format!("Bad sequence of commands: {why}")),
        )
        .await
    }

    /// Sends an error reply, counting it against the client: past the tarpit threshold
    /// each error is delayed; at the error limit the session is closed.
    async fn error(&mut self, stage: Stage, reply: Reply) -> Option<End> {
        self.errors += 1;
        let limits = self.limits().clone();
        tracing::debug!(client = %self.peer, reply = %reply, errors = self.errors, "error reply");
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
            let _ = self.conn.flush().await;
            tokio::time::sleep(limits.tarpit_delay).await;
        }
        self.ok(stage, reply)
    }

    fn recipient_list(&self) -> String {
        self.ctx
            .recipients
            .iter()
            .map(|a| a.to_path())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The one summary line per judged message.
    fn log_message(&self, id: Option<&QueueId>, size: usize, verdict: Verdict, result: &str) {
        self.shared
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
    }
}

/// Enforces the minimum transfer rate of DATA and BDAT after a grace period.
struct RateGuard {
    start: Instant,
    grace: Duration,
    bytes_per_second: u64,
}

impl RateGuard {
    fn new(limits: &crate::config::Limits) -> RateGuard {
        RateGuard {
            start: Instant::now(),
            grace: limits.data_rate_grace,
            bytes_per_second: limits.min_data_rate_bytes_per_second,
        }
    }

    /// The moment by which more than `bytes` must have arrived to keep the minimum rate.
    fn deadline(&self, bytes: usize, other: Instant) -> Instant {
        if self.bytes_per_second == 0 {
            return other;
        }
        let needed = Duration::from_secs_f64((bytes as f64 + 1.0) / self.bytes_per_second as f64);
        (self.start + self.grace.max(needed)).min(other)
    }

    fn too_slow(&self, bytes: usize) -> bool {
        self.bytes_per_second > 0
            && Instant::now() >= self.deadline(bytes, Instant::now() + Duration::from_secs(86400))
    }
}
