//! The SMTP session state machine: protocol only. At each stage it asks the policy and
//! acts on the decision; it never judges content itself. One `impl Session` is spread over
//! one file per stage: `ehlo` (HELO/EHLO, STARTTLS), `mail`, `rcpt`, `data` (DATA, BDAT),
//! `accept` (judging and spooling a complete message) and `reply` (sending and counting).

mod accept;
mod data;
mod ehlo;
mod mail;
mod rcpt;
mod reply;

use super::Server;
use crate::mail::Reply;
use crate::policy::{ClientInfo, Context, Decision, Policy, Stage};
use crate::smtp::command::{self, Command, CommandError, MailParams};
use crate::smtp::conn::{Conn, Line, ReadError};
use crate::smtp::content::ContentDecoder;
use reply::At;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// How long the final `421` may take to write when the shutdown grace has ended.
const ABORT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

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
    bdat: Option<ContentDecoder>,
    errors: u32,
    messages: usize,
    deadline: Instant,
}

impl Session {
    /// Prepares a session; the policy snapshot is fixed for its whole life.
    pub fn new(conn: Conn, server: Arc<Server>, peer: SocketAddr) -> Session {
        let policy = server.policy.get();
        let deadline = Instant::now() + policy.config().server.limits.session_duration;
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
        let abort = self.server.abort.clone();
        let served = tokio::select! {
            end = self.serve() => Some(end),
            _ = abort.cancelled() => None,
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
        let _ = tokio::time::timeout(ABORT_WRITE_TIMEOUT, self.conn.shutdown()).await;
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
                _ = self.server.shutdown.cancelled() => {
                    self.close(Reply::new(421, "4.3.2", "Service shutting down, try again later")).await;
                    return End::Closed("shutdown");
                }
            };
            let line = match line {
                Ok(Line::Complete(line)) => line,
                Ok(Line::TooLong) => {
                    self.limit_hit("command_line");
                    if let Some(end) = self
                        .error(At::Other, Reply::new(500, "5.5.2", "Line too long"))
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
        self.error(At::Other, reply).await
    }

    fn reset_transaction(&mut self) {
        self.ctx.reset_transaction();
        self.mail = None;
        self.bdat = None;
    }
}
