//! SMTP probes of every MX address: the session itself (banner, EHLO, STARTTLS), then an
//! unknown recipient, a relay attempt and the GTUBE message, each on a fresh connection.
//!
//! The gateway's own relay client does the talking (opportunistic STARTTLS, reply
//! parsing, deadlines). Every probe uses the null sender: RFC 5321 §4.5.5 obliges an MX to
//! accept it, and no sender domain of ours can then trip sender checks and hide what the
//! probe is about. A fresh connection per probe keeps one refusal (and any tarpit or error
//! limit it triggers) from colouring the next answer.

use super::dns::MxSet;
use crate::mail::{date, Reply};
use crate::relay::client::dot_stuff;
use crate::relay::{ClientError, ClientSettings, Connection};
use futures::StreamExt;
use serde::Serialize;
use std::net::SocketAddr;

/// The GTUBE string (Generic Test for Unsolicited Bulk Email): every spam filter treats a
/// message carrying it as spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Addresses probed at once: enough to keep a slow MX from holding up the rest, few
/// enough not to look like a connection flood.
const PARALLEL_PROBES: usize = 4;

/// Longest reply or banner text kept: replies come from whoever runs the MX.
const MAX_TEXT: usize = 200;

/// What to send and where.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    /// SMTP port on every address.
    pub port: u16,
    /// A recipient in the audited domain that does not exist.
    pub unknown_rcpt: String,
    /// A recipient in a domain nobody relays for.
    pub relay_rcpt: String,
    /// The recipient of the GTUBE message.
    pub gtube_rcpt: String,
    /// The GTUBE message (CRLF line endings, not dot-stuffed).
    pub message: Vec<u8>,
    /// Client settings: EHLO name, STARTTLS policy, deadlines.
    pub settings: ClientSettings,
}

/// Everything learnt from one address of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostProbe {
    /// The MX target name.
    pub target: String,
    /// The address and port probed.
    pub address: SocketAddr,
    /// How the session went.
    pub session: Session,
    /// RCPT of a random local part at the domain; `None` when no session was possible.
    pub unknown_recipient: Option<StepResult>,
    /// RCPT of [`super::RELAY_PROBE_RCPT`].
    pub relay: Option<StepResult>,
    /// The GTUBE message to the probe recipient.
    pub gtube: Option<StepResult>,
}

/// How the first session with an address went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Session {
    /// Greeted and ready for mail.
    Open {
        /// The 220 greeting.
        banner: String,
        /// EHLO was accepted (otherwise HELO was).
        esmtp: bool,
        /// STARTTLS was announced.
        starttls_offered: bool,
        /// The probes ran under TLS.
        tls: bool,
    },
    /// The server answered but refused the session (banner or EHLO/HELO not 2xx).
    Refused {
        /// The refusal.
        reply: String,
    },
    /// No SMTP session: connection refused or timed out, or not SMTP.
    Unreachable {
        /// Why.
        error: String,
    },
}

impl HostProbe {
    /// Some connection to this address got past the greeting: its first session, or one
    /// of the probes' own. A first session refused by a passing limit (`421` to one
    /// connection too many) does not make an address that takes mail look closed.
    pub fn took_a_session(&self) -> bool {
        self.session.is_open()
            || [&self.unknown_recipient, &self.relay, &self.gtube]
                .into_iter()
                .flatten()
                .any(|probe| probe.stage != Stage::Connect)
    }
}

impl Session {
    /// A session was opened: this address can take mail.
    pub fn is_open(&self) -> bool {
        matches!(self, Session::Open { .. })
    }
}

/// What one probe came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    /// The decisive answer.
    pub outcome: Outcome,
    /// The protocol step that gave it.
    pub stage: Stage,
    /// The reply, when the server sent one.
    pub reply: Option<String>,
    /// The transport or protocol failure, for [`Outcome::Error`].
    pub error: Option<String>,
}

/// The class of a probe's decisive answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx: the server took it.
    Accepted,
    /// 5xx: refused for good.
    Refused,
    /// 4xx (greylisting, a callout that could not be made, …): inconclusive.
    Deferred,
    /// No usable answer (connection lost, timeout, garbage): inconclusive.
    Error,
}

/// The protocol step a probe ended at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Opening the connection (TCP, banner, EHLO, STARTTLS).
    Connect,
    /// `MAIL FROM:<>`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// `DATA` (before the message).
    Data,
    /// The reply after the message.
    EndOfData,
}

impl Stage {
    /// Words for the table.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfData => "end of data",
        }
    }
}

/// Probes every address of every target, in order, a few at a time.
pub async fn probe_all(mx: &MxSet, plan: &ProbePlan) -> Vec<HostProbe> {
    let jobs = mx.targets.iter().flat_map(|t| {
        t.addresses
            .iter()
            .map(|ip| (t.host.clone(), SocketAddr::new(*ip, plan.port)))
    });
    probe_jobs(jobs, plan).await
}

/// Probes `addresses`, each named `name` (the domain's own addresses), as MX addresses
/// are probed.
pub async fn probe_each(name: &str, addresses: &[SocketAddr], plan: &ProbePlan) -> Vec<HostProbe> {
    probe_jobs(addresses.iter().map(|a| (name.to_owned(), *a)), plan).await
}

/// Probes each (name, address), a few at a time, in order.
async fn probe_jobs(
    jobs: impl Iterator<Item = (String, SocketAddr)>,
    plan: &ProbePlan,
) -> Vec<HostProbe> {
    futures::stream::iter(jobs)
        .map(|(target, address)| probe_address(target, address, plan))
        .buffered(PARALLEL_PROBES)
        .collect()
        .await
}

/// Probes one address: the session, then the three probes. An address without a session
/// gets no probes: there is nothing to learn from it.
pub async fn probe_address(target: String, address: SocketAddr, plan: &ProbePlan) -> HostProbe {
    let mut probe = HostProbe {
        target,
        address,
        session: Session::Unreachable {
            error: String::new(),
        },
        unknown_recipient: None,
        relay: None,
        gtube: None,
    };
    let first = match Connection::open(address, &plan.settings).await {
        Ok(conn) => {
            let caps = conn.capabilities();
            probe.session = Session::Open {
                banner: clean_text(&conn.banner().to_string()),
                esmtp: caps.esmtp,
                // After STARTTLS the server announces it no more: being under TLS proves it.
                starttls_offered: caps.starttls || conn.is_tls(),
                tls: conn.is_tls(),
            };
            Ok(conn)
        }
        Err(e) => {
            probe.session = failed_session(&e);
            // No TCP connection: nothing listens there. A session refused or stalled
            // after one (a `421` to a first contact, a slow greeting) may take the next:
            // each probe tries its own, or the audit would pass a backup it never tested
            // (review).
            if e.unreachable() {
                return probe;
            }
            Err(e)
        }
    };
    probe.unknown_recipient = Some(match first {
        Ok(conn) => recipient_probe(conn, &plan.unknown_rcpt).await,
        Err(_) => match Connection::open(address, &plan.settings).await {
            Ok(conn) => recipient_probe(conn, &plan.unknown_rcpt).await,
            Err(e) => from_error(Stage::Connect, &e),
        },
    });
    probe.relay = Some(match Connection::open(address, &plan.settings).await {
        Ok(conn) => recipient_probe(conn, &plan.relay_rcpt).await,
        Err(e) => from_error(Stage::Connect, &e),
    });
    probe.gtube = Some(match Connection::open(address, &plan.settings).await {
        Ok(conn) => gtube_probe(conn, &plan.gtube_rcpt, &plan.message).await,
        Err(e) => from_error(Stage::Connect, &e),
    });
    probe
}

/// `MAIL FROM:<>`, `RCPT TO:<rcpt>`: the RCPT answer (or MAIL's, if MAIL was refused).
async fn recipient_probe(mut conn: Connection, rcpt: &str) -> StepResult {
    let result = match conn.probe_recipient(rcpt).await {
        Ok((mail, None)) => from_reply(Stage::Mail, &mail),
        Ok((_, Some(rcpt))) => from_reply(Stage::Rcpt, &rcpt),
        Err(e) => from_error(Stage::Rcpt, &e),
    };
    conn.quit().await;
    result
}

/// The GTUBE message, step by step, so the report can say where it was stopped.
async fn gtube_probe(mut conn: Connection, rcpt: &str, message: &[u8]) -> StepResult {
    let result = gtube_steps(&mut conn, rcpt, message).await;
    conn.quit().await;
    result
}

async fn gtube_steps(conn: &mut Connection, rcpt: &str, message: &[u8]) -> StepResult {
    match conn.probe_recipient(rcpt).await {
        Ok((mail, None)) => return from_reply(Stage::Mail, &mail),
        Ok((_, Some(reply))) if !reply.is_positive() => return from_reply(Stage::Rcpt, &reply),
        Ok(_) => {}
        Err(e) => return from_error(Stage::Rcpt, &e),
    }
    match conn.command("DATA", b"DATA\r\n").await {
        Ok(reply) if reply.code == 354 => {}
        Ok(reply) => return from_reply(Stage::Data, &reply),
        Err(e) => return from_error(Stage::Data, &e),
    }
    match conn.command("end of data", &dot_stuff(message)).await {
        Ok(reply) => from_reply(Stage::EndOfData, &reply),
        Err(e) => from_error(Stage::EndOfData, &e),
    }
}

/// The session state for a connection that could not be opened.
fn failed_session(error: &ClientError) -> Session {
    match error {
        ClientError::Refused { reply, .. } => Session::Refused {
            reply: clean_text(&reply.to_string()),
        },
        other => Session::Unreachable {
            error: clean_text(&other.to_string()),
        },
    }
}

/// The probe's reading of one server reply at `stage`: its class decides the outcome, and
/// its text is cleaned before anyone prints it. Public so the fuzz target reads replies the
/// way the audit does.
pub fn from_reply(stage: Stage, reply: &Reply) -> StepResult {
    let outcome = match reply.class() {
        2 => Outcome::Accepted,
        4 => Outcome::Deferred,
        5 => Outcome::Refused,
        _ => Outcome::Error,
    };
    StepResult {
        outcome,
        stage,
        reply: Some(clean_text(&reply.to_string())),
        error: (outcome == Outcome::Error).then(|| "unexpected reply".to_owned()),
    }
}

fn from_error(stage: Stage, error: &ClientError) -> StepResult {
    match error {
        // A 421 (or a refused banner on a later connection) is still the server's answer.
        ClientError::Refused { reply, .. } => from_reply(stage, reply),
        other => StepResult {
            outcome: Outcome::Error,
            stage,
            reply: None,
            error: Some(clean_text(&other.to_string())),
        },
    }
}

/// Remote text made safe to print: control characters (terminal escapes) replaced,
/// length bounded.
pub fn clean_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_TEXT)
        .collect();
    if text.chars().nth(MAX_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// The GTUBE probe message for `rcpt`: it says what it is, for whoever finds it in a
/// mailbox because an MX let it through.
pub fn gtube_message(rcpt: &str, helo: &str) -> Vec<u8> {
    let id = rand::random::<u64>();
    format!(
        "From: mxguard audit <audit@{helo}>\r\n\
         To: <{rcpt}>\r\n\
         Subject: mxguard audit: GTUBE test message\r\n\
         Date: {date}\r\n\
         Message-ID: <audit.{id:016x}@{helo}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This message was sent by `mxguard audit` to check that every MX of the domain\r\n\
         rejects spam. It carries the GTUBE test string, which spam filters treat as spam:\r\n\
         \r\n\
         {GTUBE}\r\n\
         \r\n\
         If it reached a mailbox, the MX that accepted it does not filter.\r\n",
        date = date::rfc5322_now(),
    )
    .into_bytes()
}
