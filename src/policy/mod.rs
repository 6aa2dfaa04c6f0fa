//! The policy: checks grouped by SMTP stage, each adding named symbols or demanding an action.
//!
//! The session never holds filter logic: at each [`Stage`] it calls [`Policy::evaluate`]
//! with the transaction's [`Context`] and acts on the [`Decision`]. A `Policy` is an
//! immutable snapshot; a reload builds a new one while running sessions keep theirs.

mod check;
mod checks;
mod context;
mod fingerprint;
mod headers;
pub mod journal;
mod live;
pub mod message;
pub mod offline;
pub mod shadow;
#[cfg(test)]
mod stage_deadline_tests;
mod symbols;
mod verdict;

pub use check::Check;
pub use checks::recipients::{RecipientProbe, RecipientVerifier, Verification};
pub use context::{AvScan, Classification, ClientInfo, Context, Stage, SymbolHit};
pub use journal::{Journal, Judged};
pub use live::LivePolicy;
pub use message::{MessageData, RawMessage, Stored};
pub use symbols::compile_options as rules_compile_options;
pub use verdict::{Decision, Verdict};

use crate::config::{Config, GreylistStage, RateAction, RateLimitConfig, RateStage};
use crate::rules::CompiledRules;
use checks::{
    antivirus, attachments, authentication, classifier, client_behaviour, date_shift, dnsbl,
    fcrdns, greylist, gtube, helo, message_id, mime_shape, networks, ratelimit, recipients,
    relay_control, rules as rules_check, scan_coverage, sender_domain, size, tier as tier_checks,
    uribl,
};

/// Checks about the client rather than the message: trusted and allowlisted clients
/// (`policy.trusted_networks`, `allow_networks`) skip them.
/// (`tier`, the connection memory, judges them inside: it still has to recognise a peer.)
const CLIENT_CHECKS: [&str; 8] = [
    "dnsbl",
    "dnsbl_verdict",
    "fcrdns",
    "helo",
    "client_behaviour",
    "greylist",
    "ratelimit",
    "tier_bypass",
];
use std::sync::Arc;

/// Why a policy snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The rules directory could not be read.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// The rules files have errors; each line names `file:line`.
    #[error("rules files have errors:\n{}", .0.join("\n"))]
    Broken(Vec<String>),
    /// The shadow policy (`policy.shadow`) could not be built.
    #[error("policy.shadow: {0}")]
    Shadow(String),
}

/// The shared services checks are handed when a snapshot is built (never reached through
/// globals). Offline tools build policies with none of them.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// Asks the internal server about recipients (the relay's callout).
    pub probe: Option<Arc<dyn RecipientProbe>>,
    /// The shared resolver; without it the DNS checks are left out.
    pub dns: Option<crate::dns::Dns>,
    /// SPF/DKIM/DMARC/ARC on the shared resolver.
    pub auth: Option<crate::auth::Authenticator>,
    /// The state backend; without it greylisting and rate limits are left out.
    pub state: Option<crate::state::State>,
    /// Where greylisting, rate limits and the virus scan count their decisions.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The learning classifier; without it no `BAYES_xx` symbol is added.
    pub classifier: Option<Arc<crate::classify::Classifier>>,
    /// Where the shadow policy's disagreements are kept (across reloads).
    pub shadow_log: Option<Arc<shadow::ShadowLog>>,
    /// This gateway's MX tier (peers, roles, stamps), when it is part of one.
    pub tier: Option<Arc<crate::tier::Tier>>,
    /// clamd, when `[antivirus]` names one; without it no virus scan runs.
    pub antivirus: Option<crate::classify::clamd::Clamd>,
    /// Turns to decode the attachments of messages on disk, one set for the process:
    /// a policy of its own per snapshot (every reload and classifier model) let sessions
    /// on older snapshots decode beside the new ones, past the memory bound. Without it
    /// a policy has its own (`scan`, tests).
    pub disk_inspections: Option<Arc<tokio::sync::Semaphore>>,
    /// Services the configuration asks for that the gateway could not set up (`dns`,
    /// `auth`): their checks do not run, and the fingerprint says so. Empty offline
    /// (`check`, `scan`), where no DNS is asked by design and the fingerprint is the
    /// configuration's.
    pub unavailable: Vec<&'static str>,
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
    /// The second policy every message is also judged by (`policy.shadow`).
    shadow: Option<Arc<Policy>>,
    shadow_log: Option<Arc<shadow::ShadowLog>>,
    shadow_disagreements: Option<prometheus::IntCounterVec>,
    /// The tier check, also asked to remember clients a connection limit turned away.
    tier_contact: Option<tier_checks::TierContact>,
    /// Where an accepted message's greylisting retry is credited to its network.
    greylist_credit: Option<greylist::GreylistCredit>,
}

impl Policy {
    /// The DNS lists this policy (and its shadow) asks and probes for answering "listed"
    /// to everyone, as (check, [`public_name`](crate::config::DnsListConfig::public_name)):
    /// the series of `mxguard_dns_list_lists_everyone` it keeps up to date.
    pub fn probed_dns_lists(&self) -> Vec<(&'static str, String)> {
        let p = &self.config.policy;
        let probed = |check: &'static str, lists: &[crate::config::DnsListConfig]| {
            lists
                .iter()
                .filter(|l| l.sanity_probe)
                .map(move |l| (check, l.public_name().to_owned()))
                .collect::<Vec<_>>()
        };
        let mut lists = probed(dnsbl::CHECK, &p.dnsbl);
        lists.extend(probed(uribl::CHECK, &p.uribl));
        if let Some(shadow) = &self.shadow {
            lists.extend(shadow.probed_dns_lists());
        }
        lists
    }
}

/// The rules files of `config`, compiled; a file with an error refuses the whole policy.
fn compile_rules(config: &Config) -> Result<Option<Arc<CompiledRules>>, PolicyError> {
    let Some(dir) = &config.policy.rules_dir else {
        return Ok(None);
    };
    let compiled =
        crate::rules::RuleSet::from_dir(dir)?.compile_with(&symbols::compile_options(config));
    if compiled.has_errors() {
        let errors = compiled
            .diagnostics()
            .iter()
            .filter(|d| d.severity == crate::rules::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        return Err(PolicyError::Broken(errors));
    }
    Ok(Some(Arc::new(compiled)))
}

impl Policy {
    /// The names of its checks, in the order they run.
    #[cfg(test)]
    pub(crate) fn check_names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Builds the policy of a configuration, compiling its rules files. Fails when a
    /// rules file has errors, so a reload never activates half a policy.
    pub fn build(config: Arc<Config>, services: &Services) -> Result<Policy, PolicyError> {
        let rules = compile_rules(&config)?;
        let mut policy = Policy::assemble(config.clone(), services, false, rules)?;
        if let Some(path) = &config.policy.shadow {
            let shadow_config =
                Config::load(path).map_err(|e| PolicyError::Shadow(e.to_string()))?;
            let shadow_config = Arc::new(shadow_config);
            let rules =
                compile_rules(&shadow_config).map_err(|e| PolicyError::Shadow(e.to_string()))?;
            policy.attach_shadow(shadow_config, rules, services)?;
        }
        Ok(policy)
    }

    /// This snapshot built again on `services` (a newly published classifier model):
    /// the same configuration, compiled rules and shadow, nothing read from disk again, so
    /// a rules file edited since, or refused by a reload, does not slip in.
    pub fn rebuilt(&self, services: &Services) -> Result<Policy, PolicyError> {
        let mut policy =
            Policy::assemble(self.config.clone(), services, false, self.rules.clone())?;
        if let Some(shadow) = &self.shadow {
            policy.attach_shadow(shadow.config.clone(), shadow.rules.clone(), services)?;
        }
        Ok(policy)
    }

    /// Adds the shadow policy. It never acts: no recipient callouts, no greylisting or
    /// rate-limit counts, no autolearning (its own `policy.shadow` is ignored).
    fn attach_shadow(
        &mut self,
        config: Arc<Config>,
        rules: Option<Arc<CompiledRules>>,
        services: &Services,
    ) -> Result<(), PolicyError> {
        // Its own `[antivirus]`: a candidate that drops or adds clamd must be judged so
        // (the scan is still reused where it names the same clamd and scope).
        let quiet = Services {
            probe: None,
            state: None,
            antivirus: crate::classify::clamd::Clamd::from_config(&config.antivirus),
            ..services.clone()
        };
        let shadow = Policy::assemble(config, &quiet, true, rules)
            .map_err(|e| PolicyError::Shadow(e.to_string()))?;
        self.shadow = Some(Arc::new(shadow));
        self.shadow_log = services.shadow_log.clone();
        Ok(())
    }

    fn assemble(
        config: Arc<Config>,
        services: &Services,
        is_shadow: bool,
        rules: Option<Arc<CompiledRules>>,
    ) -> Result<Policy, PolicyError> {
        let dns = services.dns.clone();
        let auth = services.auth.clone();
        let verifier = Arc::new(RecipientVerifier::new(
            config.clone(),
            services.probe.clone(),
        ));
        let p = &config.policy;
        let tempfail = |check: &str| p.dns_tempfail.iter().any(|c| c == check);
        let mut checks: Vec<Box<dyn Check>> = Vec::new();
        checks.push(Box::new(networks::ClientNetworks::new(
            p.trusted_networks.clone(),
            p.allow_networks.clone(),
            p.deny_networks.clone(),
        )));
        let tier = services.tier.clone().filter(|_| config.tier.is_some());
        // Client contacts in a store no other member reads (the embedded one) are this
        // member's own: at a backup every client would be a first contact with the tier,
        // and no client could be seen at three members.
        let contacts = services
            .state
            .clone()
            .filter(crate::state::State::is_shared);
        let tier_contact = tier
            .as_ref()
            .map(|t| tier_checks::TierContact::new(t.clone(), contacts, services.metrics.clone()));
        if let Some(contact) = &tier_contact {
            checks.push(Box::new(contact.clone()));
        }
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
            // The tier's names too (this member's public MX name and its peers'): a peer
            // is known by its address and skips this check, so a client greeting with a
            // member's name forges it (review: `EHLO bk1.example.test` was taken).
            if let Some(tier) = &config.tier {
                ours.push(tier.name.clone());
                ours.extend(tier.peers.iter().map(|p| p.name.clone()));
            }
            checks.push(Box::new(helo::HeloCheck::new(
                ours,
                dns.clone(),
                tempfail("helo"),
            )));
        }
        let gl = &config.greylist;
        // The rate limits of one kind: on the client (`true`) or on the envelope.
        let rate_limits = |which: &dyn Fn(&RateLimitConfig) -> bool| -> Vec<ratelimit::RateLimit> {
            let Some(state) = &services.state else {
                return Vec::new();
            };
            config
                .ratelimits
                .iter()
                .filter(|l| which(l))
                .map(|limit| {
                    ratelimit::RateLimit::new(
                        state.clone(),
                        limit.clone(),
                        (gl.ipv4_prefix, gl.ipv6_prefix),
                        services.metrics.clone(),
                    )
                })
                .collect()
        };
        let boxed = |limits: Vec<ratelimit::RateLimit>| {
            limits
                .into_iter()
                .map(|l| -> Box<dyn Check> { Box::new(l) })
        };
        checks.extend(boxed(rate_limits(&|l| l.key.is_of_the_client())));
        // With greylisting at the end of data, an envelope limit that refuses there counts
        // after it: a message greylisted, then retried, counted twice (review). Only then:
        // after the content checks, each message over the limit costs them all (a review
        // of the fix). One that scores comes before the rules, which read its symbol.
        let greylists_at_data = gl.enabled && gl.stage == GreylistStage::Data;
        let after_greylisting = |l: &RateLimitConfig| {
            greylists_at_data
                && !l.key.is_of_the_client()
                && l.stage == RateStage::Data
                && l.action == RateAction::Tempfail
        };
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
        if let Some(t) = config.tier.as_ref().filter(|_| tier.is_some()) {
            if tier_checks::tempfails(t.bypass_action) {
                checks.push(Box::new(tier_checks::BypassTempfail));
            }
        }
        // Cheap refusals first: a listed client never costs a recipient callout.
        if let Some(threshold) = p.dnsbl_threshold {
            checks.push(Box::new(dnsbl::DnsListVerdict::new(threshold)));
        }
        checks.push(Box::new(recipients::VerifyRecipient::new(verifier)));
        let greylisting = services.state.as_ref().filter(|_| gl.enabled).map(|state| {
            greylist::Greylist::new(
                state.clone(),
                gl.clone(),
                services.metrics.clone(),
                config.clone(),
                auth.clone().filter(|_| p.auth),
            )
        });
        let greylist_credit = services
            .state
            .as_ref()
            .filter(|_| gl.enabled && gl.auto_allow_after > 0)
            .map(|state| greylist::GreylistCredit::new(state.clone(), gl.pass_ttl));
        // At RCPT greylisting comes after recipient verification: an unknown recipient
        // is refused for good, not greylisted first.
        let null_sender_greylisted_at_data =
            greylisting.is_some() && gl.stage == GreylistStage::Rcpt;
        let greylisting = match greylisting {
            Some(g) if gl.stage == crate::config::GreylistStage::Rcpt => {
                // The null sender, exempt at RCPT (other servers' sender-verification
                // callouts never send data), is greylisted at the end of data instead.
                let at_data = g.null_sender_at_data();
                checks.push(Box::new(g));
                Some(at_data)
            }
            other => other,
        };
        // Limits on the envelope (sender, sender domain, recipient) come after relay
        // control, the DNS-list verdict, recipient verification and greylisting: a
        // recipient refused or deferred by those never fills a sender's or a recipient's
        // bucket (review: one-shot spam to ceo@, greylisted and never retried, emptied
        // ceo@'s bucket and ceo@'s real mail met the limit). Limits on the client
        // (address, network, HELO) came before them: they also slow down what those
        // refuse, such as address harvesting and the callouts it costs.
        // The null sender's recipients, where it is greylisted at the end of data, are
        // counted there (see `leaving_null_sender`).
        let envelope_limits = rate_limits(&|l| !l.key.is_of_the_client() && !after_greylisting(l));
        checks.extend(boxed(
            envelope_limits
                .into_iter()
                .map(|l| {
                    if null_sender_greylisted_at_data && l.refuses_recipients() {
                        l.leaving_null_sender()
                    } else {
                        l
                    }
                })
                .collect(),
        ));
        checks.push(Box::new(client_behaviour::ClientBehaviour));
        // URIBL first: both share the stage deadline, and the DKIM keys message
        // authentication waits for are on the sender's name servers, which can be made
        // slow, where the list's are not: after it, URIBL was left no time at all.
        if let Some(dns) = dns.as_ref().filter(|_| !p.uribl.is_empty()) {
            checks.push(Box::new(uribl::Uribl::new(
                dns.clone(),
                p.uribl.clone(),
                p.uribl_max_domains,
            )));
        }
        if let Some(auth) = auth.as_ref().filter(|_| p.auth) {
            checks.push(Box::new(authentication::MessageAuth::new(
                auth.clone(),
                p.dmarc_reject,
                p.dmarc_quarantine,
            )));
        }
        if config.policy.gtube {
            checks.push(Box::new(gtube::Gtube));
        }
        if config.attachments.enabled {
            let policy = crate::classify::attachments::AttachmentPolicy::new(&config.attachments);
            let turns = services.disk_inspections.clone().unwrap_or_else(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    config.attachments.disk_inspections.max(1),
                ))
            });
            // The shadow takes a turn only when one is free: waiting, it would hold the live
            // reply and the turns live sessions wait for (review). Without one it defers
            // the message, counted as its `tempfail` (see `judge_in_shadow`).
            let wait = if is_shadow {
                std::time::Duration::ZERO
            } else {
                config.attachments.inspection_wait
            };
            checks.push(Box::new(attachments::Attachments::new(
                policy,
                turns,
                message::scan_limits(&config.server.limits),
                wait,
            )));
        }
        if let Some(clamd) = &services.antivirus {
            let av = &config.antivirus;
            let check = antivirus::Antivirus::new(
                clamd.clone(),
                av.on_failure,
                av.scan,
                services.metrics.clone(),
            );
            checks.push(Box::new(if is_shadow { check.in_shadow() } else { check }));
        }
        // Its symbols mean something only where the rules files score them.
        if rules.is_some() {
            checks.push(Box::new(date_shift::DateShift));
            checks.push(Box::new(message_id::MessageIdOrigin));
            checks.push(Box::new(mime_shape::MimeShape));
        }
        // Content is scanned (rules, URIBL): say what the scan limits left out.
        if rules.is_some() || (dns.is_some() && !p.uribl.is_empty()) {
            checks.push(Box::new(scan_coverage::ScanCoverage));
        }
        let classifier = services
            .classifier
            .as_ref()
            .filter(|_| config.classifier.enabled);
        // One read of the model for the check and the fingerprint that names it.
        let model = classifier.and_then(|c| c.model());
        if let Some(c) = classifier {
            checks.push(Box::new(classifier::Classify::new(
                c.clone(),
                model.clone(),
                config.classifier.min_learned,
                config.state.on_failure,
            )));
        }
        // Rules run last at end of data: their metas combine every other check's symbols.
        if let Some(rules) = &rules {
            checks.push(Box::new(rules_check::RulesCheck::new(rules.clone())));
        }
        // Score-aware greylisting (and the null sender's) needs the final score.
        if let Some(g) = greylisting {
            checks.push(Box::new(g));
        }
        checks.extend(boxed(rate_limits(&after_greylisting)));
        if null_sender_greylisted_at_data {
            let recipient_limits = rate_limits(&RateLimitConfig::refuses_recipients);
            checks.extend(boxed(
                recipient_limits
                    .into_iter()
                    .map(ratelimit::RateLimit::null_sender_at_data)
                    .collect(),
            ));
        }
        // Only a gateway learns: offline policies and the shadow have no state services.
        // Last: a message greylisted at the end of data is not learned (review: spam from
        // `<>` that no rule hits was learned as ham, then greylisted and never retried).
        let learning = config.classifier.autolearn && !is_shadow && services.state.is_some();
        if let Some(c) = classifier.filter(|_| learning) {
            let noautolearn = rules
                .as_ref()
                .map(|r| r.not_for_autolearn().clone())
                .unwrap_or_default();
            let autolearn = classifier::Autolearn::new(
                c.clone(),
                config.classifier.clone(),
                &config.policy.actions,
                &noautolearn,
                services.metrics.clone(),
            );
            checks.push(Box::new(match &rules {
                Some(r) => autolearn.with_metas_of(r),
                None => autolearn,
            }));
        }
        let fingerprint = fingerprint::compute(
            &config,
            rules.as_deref(),
            model.as_ref().map(|m| m.version()),
            &services.unavailable,
        );
        Ok(Policy {
            config,
            checks,
            rules,
            fingerprint,
            loaded_at: std::time::SystemTime::now(),
            check_duration: None,
            shadow: None,
            shadow_log: None,
            shadow_disagreements: None,
            tier_contact,
            greylist_credit,
        })
    }

    /// The message of `ctx` was stored with `verdict` and answered `250`: what its
    /// acceptance earns is recorded now (a greylisting retry credited to its network, for
    /// mail accepted or tagged, not quarantined).
    pub fn message_accepted(&self, ctx: &mut Context, verdict: Verdict) {
        if matches!(verdict, Verdict::Accept | Verdict::Tag) {
            if let Some(credit) = &self.greylist_credit {
                credit.credit(ctx);
            }
        }
    }

    /// This member turned a client away for lack of session room (see
    /// [`crate::tier::Tier::note_sessions_full`]).
    pub fn note_sessions_full(&self) {
        if let Some(contact) = &self.tier_contact {
            contact.note_sessions_full();
        }
    }

    /// A connection limit turned the client at `ip` away before any check ran: the tier
    /// still remembers that it reached this member (see
    /// [`tier_checks::TierContact::remember_turned_away`]).
    pub async fn remember_turned_away(&self, ip: std::net::IpAddr) {
        if let Some(contact) = &self.tier_contact {
            contact.remember_turned_away(ip).await;
        }
    }

    /// Records each check's run time in `metrics` (the gateway does; offline scans do not).
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Policy {
        self.check_duration = Some(metrics.check_duration_seconds.clone());
        self.shadow_disagreements = Some(metrics.shadow_disagreements_total.clone());
        self
    }

    /// The shadow policy every message is also judged by, if configured.
    pub fn shadow(&self) -> Option<&Arc<Policy>> {
        self.shadow.as_ref()
    }

    /// The configuration this snapshot was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// `to` as the RCPT checks judge it: a bare `postmaster` qualified, a Unicode domain
    /// as its A-label (see [`checks::relay_control::as_judged`]). A recipient repeated in
    /// another spelling is found by this form before any check counts it again (review:
    /// `postmaster` then `postmaster@example.test` took two tokens of every bucket).
    pub fn recipient_as_judged(&self, to: &crate::mail::Address) -> crate::mail::Address {
        let mut to = to.clone();
        let postmaster = checks::relay_control::postmaster_domain(&self.config);
        checks::relay_control::as_judged(&mut to, postmaster.as_deref());
        to
    }

    /// The compiled rules, when a rules directory is configured.
    pub fn rules(&self) -> Option<&Arc<CompiledRules>> {
        self.rules.as_ref()
    }

    /// `policy.actions` keys that no rule, `score` or `describe` line, DNS-list,
    /// rate-limit or check symbol names: an action is looked up by the exact symbol a hit
    /// carries, so a misspelt one never applies and the refusal it meant is off.
    pub fn actions_naming_nothing(&self) -> Vec<&str> {
        let provided = symbols::known_to_checks(&self.config);
        self.config
            .policy
            .actions
            .keys()
            .filter(|name| {
                let in_rules = self
                    .rules
                    .as_ref()
                    .is_some_and(|r| r.score(name).is_some() || r.description(name).is_some());
                !in_rules && !provided.contains(*name)
            })
            .map(String::as_str)
            .collect()
    }

    /// SHA-256 (hex) of the effective policy: equal on every gateway that judges alike.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Each hit with its score and its rule's description, highest score first: what
    /// `scan --explain` and the tier console show.
    pub fn explain(&self, hits: &[(String, f64)]) -> Vec<(f64, String, String)> {
        let mut out: Vec<(f64, String, String)> = hits
            .iter()
            .map(|(name, score)| {
                let description = self
                    .rules
                    .as_ref()
                    .and_then(|r| r.description(name))
                    .unwrap_or("")
                    .to_owned();
                (*score, name.clone(), description)
            })
            .collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        out
    }

    /// When this snapshot was built.
    pub fn loaded_at(&self) -> std::time::SystemTime {
        self.loaded_at
    }

    /// Runs the checks of `stage` in order; the first that does not continue decides. All of
    /// them share one deadline, `dns.stage_deadline` from when they start (at the end of
    /// data, after the message is read: reading and sampling a big one from the spool took
    /// from the time URIBL and DKIM share; review).
    pub async fn evaluate(&self, stage: Stage, ctx: &mut Context) -> Decision {
        if stage == Stage::Data {
            if let Err(e) = self.prepare_message(ctx).await {
                tracing::error!(error = %e, "cannot read the message from the spool");
                return Decision::Tempfail(crate::mail::Reply::new(
                    451,
                    "4.3.0",
                    "Local error reading the message, try again later",
                ));
            }
            if self.trust_peer_stamp(ctx) {
                return Decision::Continue;
            }
            if let Err(e) = self.strip_foreign_headers(ctx) {
                tracing::error!(error = %e, "cannot rewrite the message's header section");
                return Decision::Tempfail(crate::mail::Reply::new(
                    451,
                    "4.3.0",
                    "Local error reading the message, try again later",
                ));
            }
        }
        ctx.deadline = Some(tokio::time::Instant::now() + self.config.dns.stage_deadline);
        // A new HELO replaces what the previous one earned; a refused one leaves the
        // session as it was (RFC 5321 §4.1.4), so what it replaced is kept aside.
        let before_helo = (stage == Stage::Helo).then(|| {
            let symbols = std::mem::replace(&mut ctx.symbols, ctx.client.connect_symbols.clone());
            (std::mem::take(&mut ctx.client.helo_symbols), symbols)
        });
        let before = ctx.symbols.len();
        // The rules check puts the symbols in order of name, so the shadow gets what the
        // earlier stages found from a copy, not from a count (review: an identical shadow
        // disagreed, judging the first symbols by name instead).
        let before_data =
            (stage == Stage::Data && self.shadow.is_some()).then(|| ctx.symbols.clone());
        let decision = self.run_checks(stage, ctx).await;
        if matches!(decision, Decision::Reject(_) | Decision::Tempfail(_)) {
            match (stage, before_helo) {
                (Stage::Helo, Some((helo_symbols, symbols))) => {
                    ctx.client.helo_symbols = helo_symbols;
                    ctx.refused_symbols = std::mem::replace(&mut ctx.symbols, symbols);
                    return decision;
                }
                // A refused recipient is no part of the message: what its checks found
                // (`RCPT_UNKNOWN`, `RELAY_DENIED`) must not score, act on or teach the
                // message the accepted recipients get.
                (Stage::Rcpt, _) => {
                    let at = before.min(ctx.symbols.len());
                    ctx.refused_symbols = ctx.symbols.split_off(at);
                }
                _ => {}
            }
        }
        if let (Some(shadow), Some(before_data)) = (&self.shadow, before_data) {
            self.judge_in_shadow(shadow, ctx, before_data, &decision)
                .await;
        }
        // Connection-level facts outlive the transaction they were found in.
        let found = ctx.symbols.get(before..).unwrap_or_default().to_vec();
        match stage {
            Stage::Connect => ctx.client.connect_symbols.extend(found),
            Stage::Helo => ctx.client.helo_symbols.extend(found),
            _ => {}
        }
        decision
    }

    /// Gets the message ready for the content checks: what of it they scan, and its header
    /// section and sample when it is on disk.
    async fn prepare_message(&self, ctx: &mut Context) -> Result<(), crate::spool::SpoolError> {
        let limits = &self.config.server.limits;
        ctx.scan = message::scan_limits(limits);
        ctx.message.prepare(message::sample_limits(limits)).await
    }

    /// Removes headers in our name from outside (forged verdicts, tier stamps,
    /// `Authentication-Results` for our hostname or a tier member's); a message on disk is
    /// rewritten in place.
    fn strip_foreign_headers(&self, ctx: &mut Context) -> Result<(), crate::spool::SpoolError> {
        let authserv_ids = self.authserv_ids_of_ours();
        let in_memory = ctx.message.memory().is_some();
        let mut as_received = None;
        ctx.message.rewrite_header(|m| {
            let mut replace = |m: &mut Vec<u8>, new: Vec<u8>| {
                let old = std::mem::replace(m, new);
                // Kept for DKIM, ARC and DMARC (a message on disk is not copied: its
                // signatures are verified as rewritten).
                if in_memory && as_received.is_none() {
                    as_received = Some(old);
                }
            };
            if let std::borrow::Cow::Owned(new) = headers::strip_own_headers(m) {
                replace(m, new);
            }
            if let std::borrow::Cow::Owned(new) = crate::tier::stamp::strip(m) {
                replace(m, new);
            }
            if let std::borrow::Cow::Owned(new) =
                crate::auth::strip_authentication_results(m, &authserv_ids)
            {
                replace(m, new);
            }
        })?;
        ctx.as_received = as_received;
        Ok(())
    }

    /// The names whose `Authentication-Results` only the tier writes: our host name, and in
    /// a tier our member name and every peer's (a member's name defaults to its host name,
    /// the authserv-id its results carry). The internal server trusts them all, so a
    /// sender's copy naming any of them is forged.
    fn authserv_ids_of_ours(&self) -> Vec<&str> {
        let mut ids = vec![self.config.server.hostname.as_str()];
        if let Some(tier) = &self.config.tier {
            ids.push(tier.name.as_str());
            ids.extend(tier.peers.iter().map(|p| p.name.as_str()));
        }
        ids
    }

    /// A message from a tier peer that carries a valid, fresh stamp of the tier, made
    /// under the policy in force here, was judged already: it keeps that verdict (and its
    /// headers) and is not filtered twice.
    fn trust_peer_stamp(&self, ctx: &mut Context) -> bool {
        let (Some(peer), Some(tier)) = (&ctx.client.tier_peer, &self.config.tier) else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Verified whatever its dates: an authentic stamp too old to stand, or dated ahead
        // (the peer's clock runs fast), still says what the tier found, and is kept as a
        // floor (review: one dated ahead lost it, and a message the peer tagged for DNS
        // listings this member does not see came out clean).
        let verified = match ctx.message.raw() {
            // Hashing a big body holds the thread a while: off the session threads.
            Ok(raw) => crate::runtime::off_the_session_threads(raw.len(), || {
                crate::tier::Stamp::signed(&tier.stamp_keys(), &raw)
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot map the message to verify its stamp");
                return false;
            }
        };
        match verified {
            Ok(stamp) if crate::policy::Verdict::of_peer_stamp(&stamp.verdict).is_none() => {
                tracing::info!(peer = %peer, gateway = %stamp.gateway, verdict = %stamp.verdict, "tier peer's stamp carries a verdict no member stamps: filtered");
                false
            }
            // A verdict under another policy (a member not yet reloaded, one whose rules
            // were switched off) is not the tier's verdict: the message is judged here,
            // as with a broken stamp (carried from an earlier review: `f=` was read and
            // never compared). Nor one older than `stamp_max_age`. Either is a floor.
            Ok(stamp)
                if !stamp.made_under(&self.fingerprint)
                    || now.saturating_sub(stamp.time) > tier.stamp_max_age.as_secs()
                    || stamp.is_dated_ahead(now) =>
            {
                tracing::info!(peer = %peer, gateway = %stamp.gateway, verdict = %stamp.verdict, stamp_fingerprint = %stamp.fingerprint, stamp_time = stamp.time, now, "tier peer's stamp is too old, dated ahead or made under another policy: filtered, its verdict a floor");
                if let Some(verdict) = crate::policy::Verdict::of_peer_stamp(&stamp.verdict) {
                    ctx.raise_floor(verdict);
                }
                ctx.hit("TIER_STAMP_FLOOR", 0.0);
                false
            }
            Ok(stamp) => {
                tracing::debug!(peer = %peer, gateway = %stamp.gateway, verdict = %stamp.verdict, "tier peer's stamp verified: not filtered again");
                ctx.hit("TIER_STAMP_VERIFIED", 0.0);
                ctx.peer_stamp = Some(stamp);
                true
            }
            Err(e) => {
                tracing::info!(peer = %peer, error = %e, "mail from a tier peer without a valid stamp: filtered");
                false
            }
        }
    }

    async fn run_checks(&self, stage: Stage, ctx: &mut Context) -> Decision {
        for check in self.checks.iter().filter(|c| c.stage() == stage) {
            // Asked before each check: at connect the networks check, which runs first,
            // is what finds a client trusted or allowlisted, and the tier check, second,
            // a peer. A peer relaying what it held (a backup after an outage) is no client
            // to judge: greylisted, rate-limited and looked up in DNS lists it drained its
            // backlog in 4xx replies and counted every message twice in tier-wide limits.
            let skip_client_checks =
                ctx.client.trusted || ctx.client.allowlisted || ctx.client.tier_peer.is_some();
            if skip_client_checks && CLIENT_CHECKS.contains(&check.name()) {
                continue;
            }
            let started = tokio::time::Instant::now();
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
}
