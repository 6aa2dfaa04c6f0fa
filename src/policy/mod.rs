//! The policy: checks grouped by SMTP stage, each adding named symbols or demanding an action.
//!
//! The session never holds filter logic: at each [`Stage`] it calls [`Policy::evaluate`]
//! with the transaction's [`Context`] and acts on the [`Decision`]. A `Policy` is an
//! immutable snapshot; a reload builds a new one while running sessions keep theirs.

mod authentication;
mod client_behaviour;
mod decision;
mod dnsbl;
mod fcrdns;
mod fingerprint;
mod gtube;
mod headers;
mod helo;
mod recipients;
mod relay_control;
mod rules_check;
mod sender_domain;
mod size;
mod uribl;

pub use decision::{Decision, Reply, Verdict};
pub use recipients::RecipientVerifier;

use crate::config::{Config, RuleAction, Thresholds};
use crate::rules::{CompiledRules, MessageView};
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
    /// The client talked before our banner (pre-greet test).
    pub early_talker: bool,
    /// The client sent commands ahead without PIPELINING, or before the reply to
    /// EHLO/HELO or DATA.
    pub pipelining_abuse: bool,
    /// Forward-confirmed reverse DNS name, when it confirmed.
    pub ptr: Option<String>,
    /// Weighted total of the DNS lists that list the client.
    pub dnsbl_total: f64,
    /// Zones listing the client (with positive weight).
    pub dnsbl_listed: Vec<String>,
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
            dnsbl_listed: Vec::new(),
            connect_symbols: Vec::new(),
            helo_symbols: Vec::new(),
        }
    }
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
    /// The message parsed once, shared by every content check (see [`Context::view`]).
    parsed: Option<Arc<MessageView>>,
    /// SPF/DKIM/DMARC/ARC results of this transaction, once checked.
    pub auth: Option<crate::auth::AuthOutcome>,
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
            parsed: None,
            auth: None,
        }
    }

    /// The message parsed with mail-parser: parsed on first use, then shared by every
    /// check of the transaction (rules, URIBL, ...).
    pub fn view(&mut self) -> Arc<MessageView> {
        if let Some(v) = &self.parsed {
            return v.clone();
        }
        let v = Arc::new(MessageView::parse(&self.message));
        self.parsed = Some(v.clone());
        v
    }

    /// Clears the transaction (RSET, new MAIL); the client facts stay.
    pub fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.declared_size = None;
        self.recipients.clear();
        self.rcpt = None;
        self.message.clear();
        self.parsed = None;
        self.auth = None;
        self.symbols.clear();
        self.symbols
            .extend(self.client.connect_symbols.iter().cloned());
        self.symbols
            .extend(self.client.helo_symbols.iter().cloned());
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

/// Why a policy snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The rules directory could not be read.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// The rules files have errors; each line names `file:line`.
    #[error("rules files have errors:\n{}", .0.join("\n"))]
    Broken(Vec<String>),
}

/// An immutable policy snapshot: configuration, compiled rules and their fingerprint.
#[derive(Debug)]
pub struct Policy {
    config: Arc<Config>,
    checks: Vec<Box<dyn Check>>,
    rules: Option<Arc<CompiledRules>>,
    fingerprint: String,
    loaded_at: std::time::SystemTime,
    check_duration: Option<prometheus::HistogramVec>,
}

impl Policy {
    /// Builds the policy of a configuration, compiling its rules files. Fails when a
    /// rules file has errors, so a reload never activates half a policy.
    pub fn build(
        config: Arc<Config>,
        verifier: Arc<RecipientVerifier>,
        dns: Option<crate::dns::Dns>,
        auth: Option<crate::auth::Authenticator>,
    ) -> Result<Policy, PolicyError> {
        let rules = match &config.policy.rules_dir {
            Some(dir) => {
                let compiled = crate::rules::load_dir(dir)?;
                if compiled.has_errors() {
                    let errors = compiled
                        .diagnostics()
                        .iter()
                        .filter(|d| d.severity == crate::rules::Severity::Error)
                        .map(|d| d.to_string())
                        .collect();
                    return Err(PolicyError::Broken(errors));
                }
                Some(Arc::new(compiled))
            }
            None => None,
        };
        let p = &config.policy;
        let tempfail = |check: &str| p.dns_tempfail.iter().any(|c| c == check);
        let mut checks: Vec<Box<dyn Check>> = Vec::new();
        if let Some(dns) = &dns {
            if !p.dnsbl.is_empty() {
                checks.push(Box::new(dnsbl::DnsLists::new(
                    dns.clone(),
                    p.dnsbl.clone(),
                    tempfail("dnsbl"),
                )));
            }
            if p.fcrdns {
                checks.push(Box::new(fcrdns::Fcrdns::new(
                    dns.clone(),
                    tempfail("fcrdns"),
                )));
            }
            if p.sender_domain_check {
                checks.push(Box::new(sender_domain::SenderDomain::new(
                    dns.clone(),
                    tempfail("sender_domain"),
                )));
            }
        }
        if p.helo_checks {
            let mut ours = vec![config.server.hostname.clone()];
            ours.extend(
                config
                    .relay
                    .domains
                    .iter()
                    .map(|d| d.trim_start_matches('.').to_owned()),
            );
            checks.push(Box::new(helo::HeloCheck::new(
                ours,
                dns.clone(),
                tempfail("helo"),
            )));
        }
        if let Some(auth) = auth.as_ref().filter(|_| p.auth) {
            checks.push(Box::new(authentication::Spf::new(
                auth.clone(),
                config.server.hostname.clone(),
            )));
        }
        checks.push(Box::new(size::DeclaredSize::new(
            config.server.limits.message_size_bytes,
        )));
        checks.push(Box::new(relay_control::RelayControl::new(&config)));
        // Cheap refusals first: a listed client never costs a recipient callout.
        if let Some(threshold) = p.dnsbl_threshold {
            checks.push(Box::new(dnsbl::DnsListVerdict::new(threshold)));
        }
        checks.push(Box::new(recipients::VerifyRecipient::new(verifier)));
        checks.push(Box::new(client_behaviour::ClientBehaviour));
        if let Some(auth) = auth.as_ref().filter(|_| p.auth) {
            checks.push(Box::new(authentication::MessageAuth::new(
                auth.clone(),
                p.dmarc_reject,
            )));
        }
        if let Some(dns) = dns.as_ref().filter(|_| !p.uribl.is_empty()) {
            checks.push(Box::new(uribl::Uribl::new(
                dns.clone(),
                p.uribl.clone(),
                p.uribl_max_domains,
            )));
        }
        if config.policy.gtube {
            checks.push(Box::new(gtube::Gtube));
        }
        // Rules run last at end of data: their metas combine every other check's symbols.
        if let Some(rules) = &rules {
            checks.push(Box::new(rules_check::RulesCheck::new(rules.clone())));
        }
        let fingerprint = fingerprint::compute(&config, rules.as_deref());
        Ok(Policy {
            config,
            checks,
            rules,
            fingerprint,
            loaded_at: std::time::SystemTime::now(),
            check_duration: None,
        })
    }

    /// Records each check's run time in `metrics` (the gateway does; offline scans do not).
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Policy {
        self.check_duration = Some(metrics.check_duration_seconds.clone());
        self
    }

    /// The configuration this snapshot was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The compiled rules, when a rules directory is configured.
    pub fn rules(&self) -> Option<&Arc<CompiledRules>> {
        self.rules.as_ref()
    }

    /// SHA-256 (hex) of the effective policy: equal on every gateway that judges alike.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// When this snapshot was built.
    pub fn loaded_at(&self) -> std::time::SystemTime {
        self.loaded_at
    }

    /// Runs the checks of `stage` in order; the first that does not continue decides.
    pub async fn evaluate(&self, stage: Stage, ctx: &mut Context) -> Decision {
        if stage == Stage::Data {
            headers::strip_own_headers(&mut ctx.message);
            let hostname = &self.config.server.hostname;
            if let std::borrow::Cow::Owned(stripped) =
                crate::auth::strip_authentication_results(&ctx.message, hostname)
            {
                ctx.message = stripped;
            }
        }
        if stage == Stage::Helo {
            // A new HELO replaces what the previous one earned.
            ctx.client.helo_symbols.clear();
            ctx.symbols = ctx.client.connect_symbols.clone();
        }
        let before = ctx.symbols.len();
        let decision = self.run_checks(stage, ctx).await;
        // Connection-level facts outlive the transaction they were found in.
        let found = ctx.symbols.get(before..).unwrap_or_default().to_vec();
        match stage {
            Stage::Connect => ctx.client.connect_symbols.extend(found),
            Stage::Helo => ctx.client.helo_symbols.extend(found),
            _ => {}
        }
        decision
    }

    async fn run_checks(&self, stage: Stage, ctx: &mut Context) -> Decision {
        for check in self.checks.iter().filter(|c| c.stage() == stage) {
            let started = std::time::Instant::now();
            let decision = check.run(ctx).await;
            if let Some(h) = &self.check_duration {
                h.with_label_values(&[check.name()])
                    .observe(started.elapsed().as_secs_f64());
            }
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

    /// Thresholds that apply to this transaction: the strictest among its recipients'
    /// domains (a message is judged once for all of them).
    pub fn thresholds(&self, ctx: &Context) -> Thresholds {
        let p = &self.config.policy;
        let mut t = p.thresholds;
        for rcpt in &ctx.recipients {
            if let Some(d) = p.domain_thresholds.get(&rcpt.domain) {
                t.tag = t.tag.min(d.tag);
                t.quarantine = t.quarantine.min(d.quarantine);
                t.reject = t.reject.min(d.reject);
            }
        }
        t
    }

    /// Turns the end-of-data decision and the symbols into the verdict, with the reply
    /// for verdicts refused in-session.
    pub fn conclude(&self, decision: Decision, ctx: &Context) -> (Verdict, Option<Reply>) {
        match decision {
            Decision::Reject(r) => return (Verdict::Reject, Some(r)),
            Decision::Tempfail(r) => return (Verdict::Tempfail, Some(r)),
            Decision::Discard => return (Verdict::Discard, None),
            Decision::Continue => {}
        }
        let score = ctx.score();
        // A rule with a configured action decides whatever the score; the harshest wins.
        let actions = &self.config.policy.actions;
        let demanded = ctx
            .symbols
            .iter()
            .filter_map(|s| actions.get(&s.name).map(|a| (*a, s.name.as_str())))
            .max_by_key(|(a, _)| match a {
                RuleAction::Reject => 3,
                RuleAction::Tempfail => 2,
                RuleAction::Quarantine => 1,
                RuleAction::Discard => 0,
            });
        if let Some((action, rule)) = demanded {
            return match action {
                RuleAction::Reject => (
                    Verdict::Reject,
                    Some(Reply::new(
                        550,
                        "5.7.1",
                        format!("Message rejected by policy ({rule})"),
                    )),
                ),
                RuleAction::Tempfail => (
                    Verdict::Tempfail,
                    Some(Reply::new(
                        451,
                        "4.7.1",
                        format!("Message deferred by policy ({rule}), try again later"),
                    )),
                ),
                RuleAction::Quarantine => (Verdict::Quarantine, None),
                RuleAction::Discard => (Verdict::Discard, None),
            };
        }
        let t = self.thresholds(ctx);
        if score >= t.reject {
            let reply = Reply::new(
                550,
                "5.7.1",
                format!("Message rejected as spam (score {score:.1})"),
            );
            (Verdict::Reject, Some(reply))
        } else if score >= t.quarantine {
            (Verdict::Quarantine, None)
        } else if score >= t.tag {
            (Verdict::Tag, None)
        } else {
            (Verdict::Accept, None)
        }
    }

    /// Headers to prepend to a message accepted with `verdict`.
    pub fn verdict_headers(&self, ctx: &Context, verdict: Verdict) -> String {
        let mut h = String::new();
        if let Some(auth) = &ctx.auth {
            h.push_str(&auth.authentication_results_header(&self.config.server.hostname));
        }
        h.push_str(&headers::verdict_headers(
            ctx,
            verdict,
            &self.thresholds(ctx),
        ));
        h
    }
}
