//! The policy: checks grouped by SMTP stage, each adding named symbols or demanding an action.
//!
//! The session never holds filter logic: at each [`Stage`] it calls [`Policy::evaluate`]
//! with the transaction's [`Context`] and acts on the [`Decision`]. A `Policy` is an
//! immutable snapshot; a reload builds a new one while running sessions keep theirs.

mod decision;
mod gtube;
mod recipients;
mod relay_control;
mod size;

pub use decision::{Decision, Reply, Verdict};
pub use recipients::RecipientVerifier;

use crate::config::Config;
use crate::smtp::Address;
use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;

/// The points in a session where the policy is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A client connected, before the banner.
    Connect,
    /// After HELO or EHLO.
    Helo,
    /// After MAIL FROM.
    Mail,
    /// After each RCPT TO (`Context::rcpt` holds the recipient).
    Rcpt,
    /// After the whole message arrived (`Context::message` holds it).
    Data,
}

impl Stage {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Helo => "helo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }
}

/// A named symbol a check emitted, with its score contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolHit {
    /// Upper-case name operators grep for (`GTUBE`, `RCPT_UNKNOWN`).
    pub name: String,
    /// Score contribution.
    pub score: f64,
}

/// Facts about the connected client.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Peer address.
    pub ip: IpAddr,
    /// Name given in HELO/EHLO, once given.
    pub helo: Option<String>,
    /// Whether the session is under TLS.
    pub tls: bool,
}

/// One transaction's input and the policy's running output.
#[derive(Debug, Clone)]
pub struct Context {
    /// The client.
    pub client: ClientInfo,
    /// Reverse path, once MAIL was accepted.
    pub mail_from: Option<Address>,
    /// `SIZE=` declared with MAIL.
    pub declared_size: Option<usize>,
    /// Recipients accepted so far.
    pub recipients: Vec<Address>,
    /// The recipient being judged at [`Stage::Rcpt`]; a check may qualify it
    /// (e.g. bare `postmaster`).
    pub rcpt: Option<Address>,
    /// The message as received (CRLF, unstuffed), at [`Stage::Data`].
    pub message: Vec<u8>,
    /// Symbols hit so far in this transaction.
    pub symbols: Vec<SymbolHit>,
}

impl Context {
    /// A fresh context for a client.
    pub fn new(client: ClientInfo) -> Context {
        Context {
            client,
            mail_from: None,
            declared_size: None,
            recipients: Vec::new(),
            rcpt: None,
            message: Vec::new(),
            symbols: Vec::new(),
        }
    }

    /// Clears the transaction (RSET, new MAIL); the client facts stay.
    pub fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.declared_size = None;
        self.recipients.clear();
        self.rcpt = None;
        self.message.clear();
        self.symbols.clear();
    }

    /// Records a symbol.
    pub fn hit(&mut self, name: &str, score: f64) {
        self.symbols.push(SymbolHit {
            name: name.to_owned(),
            score,
        });
    }

    /// Sum of all symbol scores.
    pub fn score(&self) -> f64 {
        self.symbols.iter().fold(0.0, |total, s| total + s.score)
    }
}

/// One check: runs at one stage, reads the context, adds symbols, may demand an action.
#[async_trait]
pub trait Check: Send + Sync + std::fmt::Debug {
    /// Short name for logs and timing metrics.
    fn name(&self) -> &'static str;
    /// The stage it runs at.
    fn stage(&self) -> Stage;
    /// Runs the check. `Decision::Continue` lets the next check run.
    async fn run(&self, ctx: &mut Context) -> Decision;
}

/// An immutable policy snapshot.
#[derive(Debug)]
pub struct Policy {
    config: Arc<Config>,
    checks: Vec<Box<dyn Check>>,
}

impl Policy {
    /// Builds the policy of a configuration. `verifier` settles recipients (lists, callout).
    pub fn new(config: Arc<Config>, verifier: Arc<RecipientVerifier>) -> Policy {
        let mut checks: Vec<Box<dyn Check>> = vec![
            Box::new(size::DeclaredSize::new(
                config.server.limits.message_size_bytes,
            )),
            Box::new(relay_control::RelayControl::new(&config)),
            Box::new(recipients::VerifyRecipient::new(verifier)),
        ];
        if config.policy.gtube {
            checks.push(Box::new(gtube::Gtube));
        }
        Policy { config, checks }
    }

    /// The configuration this snapshot was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Runs the checks of `stage` in order; the first that does not continue decides.
    pub async fn evaluate(&self, stage: Stage, ctx: &mut Context) -> Decision {
        for check in self.checks.iter().filter(|c| c.stage() == stage) {
            let decision = check.run(ctx).await;
            if decision != Decision::Continue {
                tracing::debug!(
                    check = check.name(),
                    stage = stage.as_str(),
                    ?decision,
                    "check decided"
                );
                return decision;
            }
        }
        Decision::Continue
    }

    /// The verdict of a message that passed every stage, from its score.
    pub fn verdict(&self, _ctx: &Context) -> Verdict {
        Verdict::Accept
    }
}
