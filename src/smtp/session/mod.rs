//! The SMTP session state machine: protocol only. At each stage it asks the policy and
//! acts on the decision; it never judges content itself. One `impl Session` is spread over
//! one file per stage: `ehlo` (HELO/EHLO, STARTTLS), `mail`, `rcpt`, `data` (DATA, BDAT),
//! `accept` (judging and spooling a complete message) and `reply` (sending and counting).

mod accept;
mod data;
mod ehlo;
mod mail;
mod rcpt;
mod refused;
mod reply;

use super::admission::SessionHandle;
use super::budget::Reservation;
use super::Server;
use crate::config::BareLineEnding;
use crate::mail::Reply;
use crate::policy::{ClientInfo, Context, Decision, Policy, Stage};
use crate::smtp::command::{self, Command, CommandError, MailParams};
use crate::smtp::conn::{Conn, Line, ReadError};
use data::Transfer;
use reply::At;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// How long the final `421` may take to write when the shutdown grace has ended.
const ABORT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Replies held back for pipelined commands before they are sent anyway.
const MAX_QUEUED_REPLY_BYTES: usize = 8 * 1024;

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
    server: Arc<Server>,
    policy: Arc<Policy>,
    peer: SocketAddr,
    ctx: Context,
    greeting: Option<Greeting>,
    mail: Option<MailParams>,
    bdat: Option<Transfer>,
    /// A BDAT chunk failed and its transaction is over: the chunks the client had already
    /// pipelined are read and refused without counting as errors (RFC 3030 §3), until a
    /// `BDAT LAST` or another command.
    bdat_failed: bool,
    /// Memory of the budget the transaction's message holds until it is settled.
    message_memory: Option<Reservation>,
    /// RCPTs refused past `recipients_per_message` in this transaction.
    overshoot: usize,
    /// The paths of the transaction's recipients, to find a repeated one at once (a
    /// search of the list made each RCPT cost as many as came before it; review).
    accepted_paths: HashSet<String>,
    /// Set when the last MAIL, or an RCPT of this transaction, was deferred by us: the
    /// commands the client pipelined behind it are not its errors (see
    /// `out_of_sequence`), and this counts those answered so far.
    after_deferral: Option<usize>,
    /// RCPTs the policy deferred (greylisting, a rate limit, a callout it could not
    /// make) since the session began or a message was last accepted.
    deferred_rcpts: usize,
    /// Message bytes received since progress was last reported.
    unreported: usize,
    handle: Arc<SessionHandle>,
    /// Client errors in the session (for its log line).
    errors: u32,
    /// Client errors since the last message accepted: what the tarpit and the error
    /// limit count. A message accepted forgives the errors before it, as in Postfix: a
    /// list server reusing its connection for many messages, each with a stale address
    /// or two, is not cut off.
    errors_unforgiven: u32,
    /// Commands that move no mail (see `is_junk`).
    junk: usize,
    /// Messages accepted (250 at end of data).
    messages: usize,
    /// Transactions begun (MAIL answered 250), however they ended: what
    /// `messages_per_session` limits.
    transactions: usize,
    started: Instant,
    deadline: Instant,
    /// True from the spool commit of an accepted message until its answer is sent: the end
    /// of the shutdown grace waits for that (see [`Session::run`]).
    committing: tokio::sync::watch::Sender<bool>,
}

/// How long the end of the shutdown grace waits for a message being committed to get its
/// answer: with the 421 and the close after it (a second each at most), within the
/// gateway's wait for sessions to close (5 s).
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The end of the shutdown grace met the session: a message being committed to the spool
/// still gets its answer, within [`COMMIT_WAIT`]. Cut short there, the session answered
/// `421` for a message the spool then held, and the client sent it again: delivered
/// twice. `Some` end when the session ended meanwhile.
async fn answer_what_is_committed(
    serve: std::pin::Pin<&mut impl std::future::Future<Output = End>>,
    committing: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<End> {
    if !*committing.borrow() {
        return None;
    }
    let answered = async {
        tokio::select! {
            end = serve => Some(end),
            _ = committing.wait_for(|c| !*c) => None,
        }
    };
    tokio::time::timeout(COMMIT_WAIT, answered)
        .await
        .ok()
        .flatten()
}

/// What a wait for the client ended with.
enum Wait<T> {
    Ready(T),
    /// SIGTERM (between commands) or the end of the shutdown grace (anywhere).
    Shutdown,
    /// Asked to make room under stress, without progress since.
    Evicted,
}

/// The parts of the session state that grow as a client gets somewhere; any growth
/// across a command is progress (NOOP, RSET, repeated EHLO and errors are not).
struct Milestones {
    greeted: bool,
    tls: bool,
    mail: bool,
    recipients: usize,
    messages: usize,
}

impl Milestones {
    fn advanced_from(&self, before: &Milestones) -> bool {
        (self.greeted && !before.greeted)
            || (self.tls && !before.tls)
            || (self.mail && !before.mail)
            || self.recipients > before.recipients
            || self.messages > before.messages
    }
}

/// Waits for `read` while the session waits for its client: the one time admission may
/// ask it to go. `between_commands` also stops at SIGTERM (a transfer runs on until the
/// shutdown grace ends).
async fn wait_client<T>(
    handle: &SessionHandle,
    server: &Server,
    between_commands: bool,
    read: impl std::future::Future<Output = T>,
) -> Wait<T> {
    handle.set_waiting(true);
    tokio::pin!(read);
    // Between commands SIGTERM ends the session; a transfer runs on until the grace is
    // over (which comes later, so one token is watched at a time).
    let stop = if between_commands {
        &server.shutdown
    } else {
        &server.stop_now
    };
    let outcome = loop {
        tokio::select! {
            r = &mut read => break Wait::Ready(r),
            _ = stop.cancelled() => break Wait::Shutdown,
            _ = handle.kicked() => {
                if handle.take_eviction() {
                    break Wait::Evicted;
                }
            }
        }
    };
    handle.set_waiting(false);
    outcome
}

impl Session {
    /// Prepares a session; the policy snapshot is fixed for its whole life.
    pub fn new(
        conn: Conn,
        server: Arc<Server>,
        peer: SocketAddr,
        handle: Arc<SessionHandle>,
    ) -> Session {
        let policy = server.policy.get();
        let started = Instant::now();
        let deadline = started + policy.config().server.limits.session_duration;
        let ctx = Context::new(ClientInfo::new(peer.ip()));
        Session {
            conn,
            server,
            policy,
            peer,
            ctx,
            greeting: None,
            mail: None,
            bdat: None,
            bdat_failed: false,
            message_memory: None,
            overshoot: 0,
            accepted_paths: HashSet::new(),
            after_deferral: None,
            deferred_rcpts: 0,
            unreported: 0,
            handle,
            errors: 0,
            errors_unforgiven: 0,
            junk: 0,
            messages: 0,
            transactions: 0,
            started,
            deadline,
            committing: tokio::sync::watch::Sender::new(false),
        }
    }

    fn milestones(&self) -> Milestones {
        Milestones {
            greeted: self.greeting.is_some(),
            tls: self.conn.is_tls(),
            mail: self.mail.is_some(),
            recipients: self.ctx.recipients.len(),
            messages: self.messages,
        }
    }

    /// Message data arrived: reported as progress every KiB, so a trickle is not.
    fn data_received(&mut self, bytes: usize) {
        self.unreported += bytes;
        if self.unreported >= 1024 {
            self.unreported = 0;
            self.handle.progress();
        }
    }

    /// Closes a session asked to make room for others.
    async fn evicted(&mut self) -> End {
        let text = "Idle too long while the server is busy, closing connection";
        self.close_at_limit("stress_idle", Reply::new(421, "4.4.2", text))
            .await
    }

    async fn shut_down(&mut self) -> End {
        self.close(Reply::new(
            421,
            "4.3.2",
            "Service shutting down, try again later",
        ))
        .await;
        End::Closed("shutdown")
    }

    /// Runs the policy's checks of a stage before DATA. A refusal gets its log line here,
    /// one place for every stage (a judged message has its own summary line).
    async fn evaluate(&mut self, stage: Stage) -> Decision {
        let decision = self.policy.clone().evaluate(stage, &mut self.ctx).await;
        // Taken for this refusal's line only: a later refusal made before the policy runs
        // (a non-ASCII recipient without SMTPUTF8) must not name them (review).
        let refused_by = std::mem::take(&mut self.ctx.refused_symbols);
        if let Decision::Reject(reply) | Decision::Tempfail(reply) = &decision {
            let rcpt = self.ctx.rcpt.as_ref();
            self.log_refusal(stage, None, rcpt, reply, &refused_by);
        }
        decision
    }

    /// What an operator greps for when a sender asks why its mail bounced; `rcpt` is the
    /// recipient refused, if any; `sender` the one refused at MAIL, if any. The rules are
    /// those hit so far and `refused_by`, those of a refused stage the policy set aside.
    fn log_refusal(
        &self,
        stage: Stage,
        sender: Option<&crate::mail::Address>,
        rcpt: Option<&crate::mail::Address>,
        reply: &Reply,
        refused_by: &[crate::policy::SymbolHit],
    ) {
        let mut rules: Vec<&str> = Vec::new();
        for s in self.ctx.symbols.iter().chain(refused_by) {
            if !rules.contains(&s.name.as_str()) {
                rules.push(&s.name);
            }
        }
        let sender = sender.or(self.ctx.mail_from.as_ref());
        tracing::info!(
            client = %self.peer.ip(),
            helo = self.ctx.client.helo.as_deref().unwrap_or(""),
            stage = stage.as_str(),
            // Peer text as strings, which the log writes escaped (see `log_message`).
            from = sender.map(|a| a.to_path()).unwrap_or_default().as_str(),
            rcpt = rcpt.map(|a| a.to_path()).unwrap_or_default().as_str(),
            reply = reply.to_string().as_str(),
            rules = %rules.join(","),
            "refused"
        );
    }

    fn limits(&self) -> &crate::config::Limits {
        &self.policy.config().server.limits
    }

    fn hostname(&self) -> &str {
        &self.policy.config().server.hostname
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let stop_now = self.server.stop_now.clone();
        let mut committing = self.committing.subscribe();
        let served = {
            let serve = self.serve();
            tokio::pin!(serve);
            tokio::select! {
                end = &mut serve => Some(end),
                _ = stop_now.cancelled() => answer_what_is_committed(serve, &mut committing).await,
            }
        };
        let end = match served {
            Some(end) => end,
            None => {
                // The grace period is over, whatever stage the session was in. A client
                // that does not read is not waited for long.
                let bye = Reply::new(421, "4.3.2", "Service shutting down, try again later");
                let _ = tokio::time::timeout(ABORT_WRITE_TIMEOUT, self.close(bye)).await;
                End::Closed("shutdown grace ended")
            }
        };
        self.conn
            .shutdown(Instant::now() + ABORT_WRITE_TIMEOUT)
            .await;
        // One line per connection, as Postfix's `disconnect from` line: how far the client
        // got and why it ended, also for sessions that never reached a message.
        tracing::info!(
            client = %self.peer.ip(),
            helo = self.ctx.client.helo.as_deref().unwrap_or(""),
            tls = self.conn.is_tls(),
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            transactions = self.transactions,
            messages = self.messages,
            errors = self.errors,
            end = end.reason(),
            "session"
        );
    }

    async fn serve(&mut self) -> End {
        match self.evaluate(Stage::Connect).await {
            Decision::Continue | Decision::Discard => {}
            Decision::Tempfail(r) => {
                // A 421 closes the channel (RFC 5321 §3.8); a refusal the client did not
                // take is counted as any reply it did not take.
                let _ = self.send(Stage::Connect, r).await;
                return End::Closed("refused at connect");
            }
            Decision::Reject(r) => {
                if let Some(end) = self.send(Stage::Connect, r).await {
                    return end;
                }
                return self.wait_for_quit_after_refusal().await;
            }
        }
        let greet_delay = self.policy.config().server.greet_delay;
        if !greet_delay.is_zero() {
            // Pre-greet test: a legitimate client waits for the banner; bots often do not.
            // A wait for the client like any other: SIGTERM ends it, and under stress it
            // may be evicted (review: silent clients held every slot through it).
            let early = tokio::time::timeout(greet_delay, self.conn.fill(self.deadline));
            match wait_client(&self.handle, &self.server, true, early).await {
                Wait::Ready(Ok(Ok(_))) => {
                    tracing::info!(client = %self.peer, "client talked before the banner");
                    self.ctx.client.early_talker = true;
                }
                Wait::Ready(Ok(Err(e))) => return self.read_failed(e).await,
                Wait::Ready(Err(_)) => {}
                Wait::Shutdown => return self.shut_down().await,
                Wait::Evicted => return self.evicted().await,
            }
        }
        let banner = format!("{} {}", self.hostname(), self.policy.config().server.banner);
        if let Some(end) = self.send(Stage::Connect, Reply::new(220, "", banner)).await {
            return end;
        }
        loop {
            // Before any wait for the client below (its next command, or its reading of
            // our replies).
            self.flush_open_transfer().await;
            // Replies wait while pipelined commands do (RFC 2920), but no longer than
            // until a few KiB are queued: a client that never lets its input run dry and
            // never reads would otherwise make us hold its replies without limit.
            if !self.conn.has_buffered_input() || self.conn.queued_bytes() >= MAX_QUEUED_REPLY_BYTES
            {
                let deadline = self.command_deadline();
                let idle = self.bdat.is_none();
                match wait_client(&self.handle, &self.server, idle, self.conn.flush(deadline)).await
                {
                    Wait::Ready(Ok(())) => {}
                    Wait::Ready(Err(_)) => return self.write_failed(),
                    Wait::Shutdown => return self.shut_down().await,
                    Wait::Evicted => return self.evicted().await,
                }
            }
            if self.conn.write_failed() {
                return self.write_failed();
            }
            let max = self.limits().command_line_bytes;
            let deadline = self.next_command_deadline();
            let read = self.conn.read_line(max, deadline);
            // An open BDAT transfer is a transfer like DATA: SIGTERM lets it finish within
            // the grace instead of throwing away the chunks received.
            let idle = self.bdat.is_none();
            let line = match wait_client(&self.handle, &self.server, idle, read).await {
                Wait::Ready(line) => line,
                Wait::Shutdown => return self.shut_down().await,
                Wait::Evicted => return self.evicted().await,
            };
            let line = match line {
                Ok(Line::Complete(line)) => line,
                Ok(Line::BareLf(line))
                    if self.policy.config().server.bare_line_ending
                        == BareLineEnding::Normalize =>
                {
                    line
                }
                Ok(Line::BareLf(line)) => {
                    let reply = Reply::new(500, "5.5.2", "Command line must end in CRLF");
                    match self.refuse_line("bare_line_ending", reply, &line).await {
                        Some(end) => return end,
                        None => continue,
                    }
                }
                Ok(Line::TooLong(head)) => {
                    let reply = Reply::new(500, "5.5.2", "Line too long");
                    match self.refuse_line("command_line", reply, &head).await {
                        Some(end) => return end,
                        None => continue,
                    }
                }
                Err(e) => {
                    let timeout = matches!(e, ReadError::Timeout);
                    if timeout && self.release_held_transfer_memory().await {
                        continue;
                    }
                    return self.command_not_read(e).await;
                }
            };
            let sent_ahead = self.conn.has_buffered_input();
            let before = self.milestones();
            let outcome = match command::parse(&line) {
                Ok(cmd) => {
                    if sent_ahead {
                        self.note_sent_ahead(&cmd);
                    }
                    // Boxed: the big futures of DATA and friends are not part of every
                    // idle session's state.
                    Box::pin(self.dispatch(cmd)).await
                }
                Err(e) => self.command_error(e).await,
            };
            if let Some(end) = outcome {
                return end;
            }
            if self.milestones().advanced_from(&before) {
                self.handle.progress();
            }
        }
    }

    /// Refuses a command line that cannot be taken as it came (over the limit, or ended in
    /// a bare LF), counting `limit`. A refused BDAT line ends the session: its chunk's
    /// size is not to be trusted, so what follows cannot be told from commands, and must
    /// never be run as commands (RFC 3030).
    async fn refuse_line(&mut self, limit: &'static str, reply: Reply, head: &[u8]) -> Option<End> {
        self.limit_hit(limit);
        if let Some(end) = self.error(At::Other, reply).await {
            return Some(end);
        }
        if command::starts_bdat(head) {
            let bye = "BDAT chunk cannot be framed, closing connection";
            self.close(Reply::new(421, "4.5.0", bye)).await;
            return Some(End::Closed("bdat size"));
        }
        None
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

    /// Counts a command that moved no mail: Postfix's `smtpd_junk_command_limit`, free up
    /// to a limit, then each counts as an error (tarpit, then 421). A repeated EHLO runs
    /// the HELO lookups again on a name the client picks; a repeated recipient, the whole
    /// RCPT policy.
    async fn count_junk(&mut self) -> Option<End> {
        self.junk += 1;
        let limit = self.limits().junk_commands;
        if self.junk > limit {
            if self.junk - 1 == limit {
                self.limit_hit("junk_commands");
            }
            return self.count_error(At::Other, None).await;
        }
        None
    }

    /// Answers `reply` to a command that moved no mail (a repeated recipient, a deferred
    /// MAIL), counted as a junk command: free up to the limit, then an error.
    async fn junk_reply(&mut self, stage: Stage, reply: Reply) -> Option<End> {
        if let Some(end) = self.count_junk().await {
            return Some(end);
        }
        self.ok(stage, reply)
    }

    /// NOOP, RSET, VRFY, HELP, and a greeting after the first.
    fn is_junk(&self, cmd: &Command) -> bool {
        match cmd {
            Command::Noop | Command::Rset | Command::Vrfy | Command::Help => true,
            Command::Ehlo(_) | Command::Helo(_) => self.greeting.is_some(),
            // Chunks refused behind a failed one are not errors, but they move no mail.
            Command::Bdat { .. } => self.bdat_failed,
            _ => false,
        }
    }

    /// A reply could not be written in time: the client is gone or does not read.
    fn write_failed(&self) -> End {
        self.limit_hit("reply_write");
        End::Closed("client does not read its replies")
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
                self.close_at_limit(limit, Reply::new(421, "4.4.2", text))
                    .await
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> Option<End> {
        if self.is_junk(&cmd) {
            if let Some(end) = self.count_junk().await {
                return Some(end);
            }
        }
        if !matches!(cmd, Command::Bdat { .. }) {
            self.bdat_failed = false;
        }
        // Only the rest of the transaction follows a deferral in a pipelined batch.
        if !matches!(cmd, Command::Rcpt(_) | Command::Data | Command::Bdat { .. }) {
            self.after_deferral = None;
        }
        match cmd {
            Command::Ehlo(name) => self.hello(name, Greeting::Ehlo).await,
            Command::Helo(name) => self.hello(name, Greeting::Helo).await,
            Command::Mail(from, params) => self.mail_from(from, params).await,
            Command::Rcpt(to) => self.rcpt_to(to).await,
            Command::Data => self.data().await,
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::Rset => {
                self.reset_transaction();
                self.ok(At::Other, Reply::new(250, "2.0.0", "Ok"))
            }
            Command::Noop => self.ok(At::Other, Reply::new(250, "2.0.0", "Ok")),
            Command::Quit => {
                self.close(Reply::new(221, "2.0.0", "Bye")).await;
                Some(End::Quit)
            }
            Command::Help => self.ok(
                At::Other,
                Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS",
                ),
            ),
            Command::Vrfy => self.ok(
                At::Other,
                Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ),
            ),
            Command::Expn => {
                self.error(At::Other, Reply::new(502, "5.5.1", "EXPN not available"))
                    .await
            }
            Command::StartTls => self.start_tls().await,
        }
    }

    async fn command_error(&mut self, e: CommandError) -> Option<End> {
        if e == CommandError::BdatSize {
            // The chunk that follows has a length we cannot know: any byte of it could
            // be taken for a command. Refuse and close, never resynchronise by guessing.
            self.limit_hit("bdat_size");
            self.reset_transaction();
            let _ = self.ok(
                Stage::Data,
                Reply::new(
                    501,
                    "5.5.4",
                    "Syntax error: BDAT needs a chunk size we can read",
                ),
            );
            self.close(Reply::new(
                421,
                "4.5.0",
                "Cannot tell where the BDAT chunk ends, closing connection",
            ))
            .await;
            return Some(End::Closed("bdat size"));
        }
        let reply = match &e {
            CommandError::Unknown => Reply::new(500, "5.5.2", "Command not recognized"),
            CommandError::Encoding => {
                Reply::new(500, "5.5.2", "Command contains invalid characters")
            }
            CommandError::Syntax(why) => Reply::new(501, "5.5.4", format!("Syntax error: {why}")),
            CommandError::Address(why) => {
                Reply::new(553, "5.1.3", format!("Bad address syntax: {why}"))
            }
            CommandError::SenderAddress(why) => {
                Reply::new(553, "5.1.7", format!("Bad sender address syntax: {why}"))
            }
            CommandError::Parameter(p) => Reply::new(
                555,
                "5.5.4",
                format!("Unsupported parameter {}", shown_parameter(p)),
            ),
            CommandError::BdatSize => Reply::new(501, "5.5.4", "Syntax error"),
        };
        self.error(At::Other, reply).await
    }

    fn reset_transaction(&mut self) {
        self.ctx.reset_transaction();
        self.mail = None;
        self.bdat = None;
        self.message_memory = None;
        self.overshoot = 0;
        self.accepted_paths = HashSet::new();
        self.after_deferral = None;
    }
}

/// Characters of a client's parameter echoed in a reply.
const SHOWN_PARAMETER_CHARS: usize = 64;

/// A client's parameter as a reply shows it: printable ASCII (others as `?`), cut to
/// [`SHOWN_PARAMETER_CHARS`], so the reply line stays within RFC 5321's 512 octets and
/// carries nothing the client chose but text.
fn shown_parameter(p: &str) -> String {
    let mut shown: String = p
        .chars()
        .take(SHOWN_PARAMETER_CHARS)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if p.chars().count() > SHOWN_PARAMETER_CHARS {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of the grace waits for a message being committed to be answered (the
    /// session goes on being served meanwhile), and for no more than that.
    #[tokio::test]
    async fn the_end_of_the_grace_waits_for_a_commit_to_be_answered() {
        let committing = tokio::sync::watch::Sender::new(true);
        let mut rx = committing.subscribe();
        let serve = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            committing.send_replace(false);
            std::future::pending::<End>().await
        };
        tokio::pin!(serve);
        assert!(answer_what_is_committed(serve, &mut rx).await.is_none());
        assert!(!*rx.borrow(), "returned before the answer went out");
        // A session that ends while its answer goes out ends as it ended.
        committing.send_replace(true);
        let serve = async { End::Quit };
        tokio::pin!(serve);
        let end = answer_what_is_committed(serve, &mut rx).await;
        assert!(matches!(end, Some(End::Quit)));
        // Nothing being committed: the session is not served any further.
        committing.send_replace(false);
        let serve = async { End::Quit };
        tokio::pin!(serve);
        assert!(answer_what_is_committed(serve, &mut rx).await.is_none());
    }
}
