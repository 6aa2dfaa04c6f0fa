//! What the checks see and write: the stage, the client, one transaction's envelope and
//! message, and the symbols hit so far.

use super::message::MessageData;
use crate::mail::Address;
use crate::rules::{MessageView, ScanLimits};
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
    /// The client talked before our banner (pre-greet test).
    pub early_talker: bool,
    /// The client sent commands ahead without PIPELINING, or before the reply to
    /// EHLO/HELO or DATA.
    pub pipelining_abuse: bool,
    /// Forward-confirmed reverse DNS name, when it confirmed.
    pub ptr: Option<String>,
    /// Weighted total of the DNS lists that list the client.
    pub dnsbl_total: f64,
    /// How much the allowlists whose lookup failed (a timeout, an error) could have lowered
    /// `dnsbl_total` (0 or less).
    pub dnsbl_unanswered: f64,
    /// A DNS list lookup of the client failed (a timeout, an error): the listing it
    /// might have found is missing from every score of the session.
    pub dns_list_failed: bool,
    /// How the refusal names the lists listing the client (positive weight): each
    /// list's `reply_name`, by default its zone.
    pub dnsbl_listed: Vec<String>,
    /// Inside `policy.trusted_networks`: no client check runs.
    pub trusted: bool,
    /// Inside `policy.allow_networks`: no client check and no greylisting.
    pub allowlisted: bool,
    /// The tier member this client is (by its SMTP address), when it is one.
    pub tier_peer: Option<String>,
    /// Talking to a backup while a primary is up.
    pub mx_bypass: bool,
    /// Symbols of the connect stage: they count in every transaction of the session.
    pub connect_symbols: Vec<SymbolHit>,
    /// Symbols of the last HELO/EHLO: they count in every transaction after it.
    pub helo_symbols: Vec<SymbolHit>,
}

impl ClientInfo {
    /// What is known of a client as it connects.
    pub fn new(ip: IpAddr) -> ClientInfo {
        ClientInfo {
            ip,
            helo: None,
            tls: false,
            early_talker: false,
            pipelining_abuse: false,
            ptr: None,
            dnsbl_total: 0.0,
            dnsbl_unanswered: 0.0,
            dns_list_failed: false,
            dnsbl_listed: Vec::new(),
            trusted: false,
            allowlisted: false,
            tier_peer: None,
            mx_bypass: false,
            connect_symbols: Vec::new(),
            helo_symbols: Vec::new(),
        }
    }
}

/// One clamd scan of a message: which clamd and what was sent (`key`), and its answer or
/// why there was none.
#[derive(Debug, Clone)]
pub struct AvScan {
    /// The clamd address and the scope scanned.
    pub key: Arc<str>,
    /// The report, or the error that stood in for it.
    pub result: Result<crate::classify::clamd::ScanReport, String>,
}

/// What one attachment policy found in a message (`key`: the policy and limits it ran
/// with), so that a shadow policy with the same `[attachments]` does not decode it again.
#[derive(Debug, Clone)]
pub struct AttachmentScan {
    /// The attachment policy's settings and the scan limits it ran with.
    pub key: Arc<str>,
    /// The symbols it added, in order.
    pub hits: Vec<SymbolHit>,
}

/// What the learning classifier said about a message, and which classifier, model and vote
/// threshold said it (`by`), so that a shadow policy classifying alike reuses the answer
/// instead of tokenizing again and asking the state backend again.
#[derive(Debug, Clone)]
pub struct Classification {
    /// The classifier, model version and `min_learned` that answered.
    pub by: Arc<str>,
    /// The answer.
    pub judged: crate::classify::Judged,
}

/// One transaction's input and the policy's running output.
#[derive(Debug)]
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
    pub message: MessageData,
    /// What the content checks scan of each part (set by the policy at [`Stage::Data`]).
    pub scan: ScanLimits,
    /// Symbols hit so far in this transaction.
    pub symbols: Vec<SymbolHit>,
    /// The message parsed once, shared by every content check (see [`Context::view`]).
    parsed: Option<Arc<MessageView>>,
    /// When the message reached this gateway (Unix seconds), for a message judged in an
    /// SMTP session. Our own `Received` hop is added only when it is stored, so until then
    /// the topmost hop is the client's, which the client writes; offline (`scan`) the
    /// arrival is read from the trace fields.
    pub arrival: Option<i64>,
    /// SPF/DKIM/DMARC/ARC results of this transaction, once checked.
    pub auth: Option<crate::auth::AuthOutcome>,
    /// The message as received, kept when removing headers in our name changed a message
    /// held in memory: signatures cover the bytes the sender sent, so DKIM, ARC and DMARC
    /// verify these.
    pub as_received: Option<Vec<u8>>,
    /// What the learning classifier said about the message, once asked (kept by
    /// [`Context::fork`], so a shadow policy that classifies alike reuses it).
    pub classification: Option<Classification>,
    /// What clamd said about the message, once asked (kept by [`Context::fork`], so a
    /// shadow policy scanning with the same clamd does not send the message again).
    pub antivirus: Option<AvScan>,
    /// What the attachment policy found, once it ran (kept by [`Context::fork`], so a
    /// shadow policy with the same `[attachments]` neither decodes the message again nor
    /// takes an inspection turn from live sessions).
    pub attachments: Option<AttachmentScan>,
    /// A tier peer's valid, fresh verdict stamp: the message is not judged again.
    pub peer_stamp: Option<crate::tier::Stamp>,
    /// The mildest verdict the message may get (see [`crate::policy::Policy::conclude`]):
    /// that of a tier peer's authentic stamp too old, or made under another policy, to
    /// stand (the message is judged again), or `tag` for a DMARC failure of a domain asking
    /// for quarantine. Raised with [`Context::raise_floor`].
    pub floor: Option<super::Verdict>,
    /// The deadline of the stage being evaluated, fixed once by [`crate::policy::Policy::evaluate`]
    /// and shared by every check of the stage, so together they never take longer than
    /// `dns.stage_deadline`.
    pub deadline: Option<tokio::time::Instant>,
    /// The greylisting counter (`gl:net:…`) a retry in this transaction earns its network,
    /// credited only once the message is accepted (see
    /// [`crate::policy::Policy::message_accepted`]): spam refused on its retry earns no
    /// auto-allow.
    pub greylist_credit: Option<String>,
    /// The symbols a refused HELO or RCPT found: no part of the session or the message
    /// (see [`crate::policy::Policy::evaluate`]), kept only for the refusal's log line,
    /// which names what refused and takes them.
    pub refused_symbols: Vec<SymbolHit>,
    /// A URI list lookup of this transaction failed (a timeout, an error): the listing it
    /// might have found is missing from the score.
    pub uri_list_failed: bool,
}

impl Context {
    /// A copy for a second judgement (the shadow policy): everything found so far, and the
    /// message as this context reads it (see [`MessageData::fork`]).
    pub fn fork(&self) -> Context {
        Context {
            client: self.client.clone(),
            mail_from: self.mail_from.clone(),
            declared_size: self.declared_size,
            recipients: self.recipients.clone(),
            rcpt: self.rcpt.clone(),
            message: self.message.fork(),
            scan: self.scan,
            symbols: self.symbols.clone(),
            parsed: self.parsed.clone(),
            arrival: self.arrival,
            auth: self.auth.clone(),
            as_received: self.as_received.clone(),
            classification: self.classification.clone(),
            antivirus: self.antivirus.clone(),
            attachments: self.attachments.clone(),
            peer_stamp: self.peer_stamp.clone(),
            floor: self.floor,
            deadline: self.deadline,
            greylist_credit: None,
            refused_symbols: Vec::new(),
            uri_list_failed: self.uri_list_failed,
        }
    }

    /// A fresh context for a client.
    pub fn new(client: ClientInfo) -> Context {
        Context {
            client,
            mail_from: None,
            declared_size: None,
            recipients: Vec::new(),
            rcpt: None,
            message: MessageData::default(),
            scan: ScanLimits::default(),
            symbols: Vec::new(),
            parsed: None,
            arrival: None,
            auth: None,
            as_received: None,
            classification: None,
            antivirus: None,
            attachments: None,
            peer_stamp: None,
            floor: None,
            deadline: None,
            greylist_credit: None,
            refused_symbols: Vec::new(),
            uri_list_failed: false,
        }
    }

    /// Whether a check that can only raise the score went unanswered: a DNS list of the
    /// client, a URI list, an authentication check left at temperror, clamd. The score
    /// then says less than it seems to (autolearn learns no ham from it).
    pub fn checks_unanswered(&self) -> bool {
        self.client.dns_list_failed
            || self.uri_list_failed
            || self.auth.as_ref().is_some_and(|a| a.any_temperror())
            || self.antivirus.as_ref().is_some_and(|a| a.result.is_err())
    }

    /// How the message's trace fields read: at the gateway when it arrived here (a
    /// session, or a copy this gateway stored, whose arrival its own hop dates), else as
    /// mail collected elsewhere (`scan` of a mailbox).
    pub fn reading(&self) -> crate::mail::trace::Reading {
        use crate::mail::trace::Reading;
        if self.arrival.is_some() {
            Reading::AtTheGateway
        } else {
            Reading::Collected
        }
    }

    /// The message parsed with mail-parser: parsed on first use, then shared by every
    /// check of the transaction (rules, URIBL, ...).
    pub fn view(&mut self) -> Arc<MessageView> {
        if let Some(v) = &self.parsed {
            return v.clone();
        }
        let bytes = self.message.len();
        let mut view =
            crate::runtime::off_the_session_threads(bytes, || self.message.view(&self.scan));
        if let Some(sender) = &self.mail_from {
            view.set_envelope_from(&sender.to_path());
        }
        let v = Arc::new(view);
        self.parsed = Some(v.clone());
        v
    }

    /// Makes `verdict` the floor unless the floor is as high already: quarantine over tag
    /// over the rest, which floor nothing (a peer's stale `accept`).
    pub fn raise_floor(&mut self, verdict: super::Verdict) {
        use super::Verdict::{Quarantine, Tag};
        let rank = |v: Option<super::Verdict>| match v {
            Some(Quarantine) => 2,
            Some(Tag) => 1,
            _ => 0,
        };
        if rank(Some(verdict)) > rank(self.floor) {
            self.floor = Some(verdict);
        }
    }

    /// Clears the transaction (RSET, new MAIL); the client facts stay.
    pub fn reset_transaction(&mut self) {
        // Made anew from the client alone, so whatever a transaction found goes with it,
        // fields added later too (review: the attachment findings and a peer's verdict
        // floor, added without a line here, outlived their message: a clean first message
        // let every later one on the connection skip the attachment policy). Dropping a
        // message kept on disk removes its unaccepted spool file.
        let ip = self.client.ip;
        let client = std::mem::replace(&mut self.client, ClientInfo::new(ip));
        *self = Context::new(client);
        self.symbols
            .extend(self.client.connect_symbols.iter().cloned());
        self.symbols
            .extend(self.client.helo_symbols.iter().cloned());
    }

    /// The message as the client sent it (before our header removals), for what verifies
    /// the sender's signatures; a big message on disk as it is now.
    pub fn raw_as_received(&self) -> std::io::Result<super::message::RawMessage<'_>> {
        match &self.as_received {
            Some(bytes) => Ok(super::message::RawMessage::Memory(bytes)),
            None => self.message.raw(),
        }
    }

    /// Records a symbol once per transaction (for markers such as `STATE_UNAVAILABLE`
    /// that several checks may raise); true when this was the first.
    pub fn hit_once(&mut self, name: &str, score: f64) -> bool {
        let first = !self.symbols.iter().any(|s| s.name == name);
        if first {
            self.hit(name, score);
        }
        first
    }

    /// Records a symbol.
    pub fn hit(&mut self, name: &str, score: f64) {
        self.symbols.push(SymbolHit {
            name: name.to_owned(),
            score,
        });
    }

    /// Sum of all symbol scores, rounded to a thousandth.
    ///
    /// Scores are written with one decimal, but their binary sum is not exact: -3.7 + 4.1 +
    /// 4.6 adds up to 4.999999999999999. Rounded, a message whose score reads 5.0 is at a
    /// threshold of 5.0, whatever the order its symbols were found in (as SpamAssassin does).
    pub fn score(&self) -> f64 {
        self.score_of(|_| true)
    }

    /// Sum of the scores of the symbols `counted` keeps, rounded as [`Context::score`] is
    /// (autolearn leaves out the classifier's own symbol).
    pub fn score_of(&self, counted: impl Fn(&SymbolHit) -> bool) -> f64 {
        let total = self
            .symbols
            .iter()
            .filter(|s| counted(s))
            .fold(0.0, |total, s| total + s.score);
        (total * 1000.0).round() / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stale peer stamp's quarantine and a DMARC failure's tag meet in one message: the
    /// higher stands, whichever came first.
    #[test]
    fn a_floor_is_only_ever_raised() {
        use crate::policy::Verdict::{Quarantine, Tag};
        let ip = "192.0.2.1".parse().unwrap();
        let mut ctx = Context::new(ClientInfo::new(ip));
        ctx.raise_floor(crate::policy::Verdict::Accept);
        assert_eq!(ctx.floor, None);
        ctx.raise_floor(Tag);
        ctx.raise_floor(crate::policy::Verdict::Accept);
        assert_eq!(ctx.floor, Some(Tag));
        ctx.raise_floor(Quarantine);
        ctx.raise_floor(Tag);
        assert_eq!(ctx.floor, Some(Quarantine));
        ctx.reset_transaction();
        assert_eq!(ctx.floor, None);
    }

    #[test]
    fn a_score_that_reads_as_the_threshold_reaches_it_in_any_order() {
        let scores = [-3.7, 4.1, 4.6];
        assert!(
            scores.iter().sum::<f64>() < 5.0,
            "the binary sum falls short"
        );
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let mut ctx = Context::new(ClientInfo::new(IpAddr::from([192, 0, 2, 1])));
            for i in order {
                ctx.hit("R", scores[i]);
            }
            assert_eq!(ctx.score(), 5.0, "order {order:?}");
        }
    }
}
