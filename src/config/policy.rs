//! `[policy]`: rules, thresholds, rule actions and which checks run.

use super::dns_lists::{self, DnsListConfig, RawDnsList};
use super::networks::NetworkList;
use super::problems::{time_limit, Problems};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Score thresholds: `accept` < `tag` ≤ `quarantine` ≤ `reject`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// From this score on, mail is tagged.
    pub tag: f64,
    /// From this score on, mail is quarantined.
    pub quarantine: f64,
    /// From this score on, mail is rejected in-session.
    pub reject: f64,
}

/// An action a rule demands whatever the total score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// 550 5.7.1 at end of data.
    Reject,
    /// 451 4.7.1 at end of data.
    Tempfail,
    /// Accept and drop.
    Discard,
    /// Accept into the quarantine.
    Quarantine,
}

impl PolicyConfig {
    /// Whether a check this policy turns on asks DNS: the client and HELO lookups, the
    /// sender domain, authentication, the DNS lists.
    pub fn asks_for_dns(&self) -> bool {
        self.fcrdns
            || self.sender_domain_check
            || self.helo_checks
            || self.auth
            || !self.dnsbl.is_empty()
            || !self.uribl.is_empty()
    }

    /// Thresholds for a message to these recipient domains: the strictest among them (a
    /// message is judged once for all). A domain without thresholds of its own has the
    /// defaults; a domain's may be more lenient than the defaults as well as stricter.
    pub fn thresholds_for<'d>(&self, mut domains: impl Iterator<Item = &'d str>) -> Thresholds {
        let mut each = std::iter::from_fn(|| {
            domains
                .next()
                .map(|d| self.domain_thresholds.get(d).unwrap_or(&self.thresholds))
        });
        let Some(first) = each.next() else {
            return self.thresholds;
        };
        each.fold(*first, |t, d| Thresholds {
            tag: t.tag.min(d.tag),
            quarantine: t.quarantine.min(d.quarantine),
            reject: t.reject.min(d.reject),
        })
    }
}

impl RuleAction {
    /// Name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Reject => "reject",
            RuleAction::Tempfail => "tempfail",
            RuleAction::Discard => "discard",
            RuleAction::Quarantine => "quarantine",
        }
    }
}

/// Policy settings: rules, thresholds, rule actions.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Score the GTUBE test string (symbol `GTUBE`, 1000 unless rescored).
    pub gtube: bool,
    /// Directory of `*.cf` rules files; `None` runs without rules.
    pub rules_dir: Option<PathBuf>,
    /// Default thresholds.
    pub thresholds: Thresholds,
    /// Per-domain thresholds (lower-case domain).
    pub domain_thresholds: BTreeMap<String, Thresholds>,
    /// Rule name → action when it hits.
    pub actions: BTreeMap<String, RuleAction>,
    /// DNS lists queried at connect.
    pub dnsbl: Vec<DnsListConfig>,
    /// Weighted DNS-list total from which recipients are refused (554 5.7.1).
    pub dnsbl_threshold: Option<f64>,
    /// Domain block lists for the domains of URLs in messages.
    pub uribl: Vec<DnsListConfig>,
    /// Most domains looked up per message.
    pub uribl_max_domains: usize,
    /// Forward-confirmed reverse DNS of the client.
    pub fcrdns: bool,
    /// SPF, DKIM, DMARC and ARC.
    pub auth: bool,
    /// Refuse (550 5.7.1) DMARC failures of domains publishing `p=reject`.
    pub dmarc_reject: bool,
    /// Tag at least (a verdict floor) DMARC failures of domains publishing `p=quarantine`,
    /// and those of `p=reject` domains not refused.
    pub dmarc_quarantine: bool,
    /// HELO syntax and plausibility.
    pub helo_checks: bool,
    /// The sender domain must resolve (MX or A/AAAA).
    pub sender_domain_check: bool,
    /// Checks (`dnsbl`, `fcrdns`, `helo`, `sender_domain`) whose lookup failures tempfail.
    pub dns_tempfail: Vec<String>,
    /// Clients of our own (the internal server sending DSNs, monitoring) that skip every
    /// client check; their mail is still judged on content.
    pub trusted_networks: NetworkList,
    /// Clients that skip client checks and greylisting and get `CLIENT_ALLOWLISTED`.
    pub allow_networks: NetworkList,
    /// Clients refused at connect with `554 5.7.1`.
    pub deny_networks: NetworkList,
    /// What a meta does when it reads a rule the engine skips.
    pub skipped_rule_metas: SkippedRuleMetas,
    /// How long the backtracking rule searches of one message may take together.
    pub backtrack_budget: Duration,
    /// A second configuration every message is also judged by, never acting on it.
    pub shadow: Option<PathBuf>,
}

/// `policy.skipped_rule_metas`: what a meta does when it reads a rule the engine skips
/// (an `eval:` rule, an unimplemented plugin's rule) that no built-in check provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkippedRuleMetas {
    /// The meta is skipped too, as it would evaluate differently from SpamAssassin.
    Skip,
    /// The meta is evaluated with the skipped rule reading as not hit.
    Evaluate,
}

/// `[policy]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPolicy {
    gtube: bool,
    rules_dir: Option<PathBuf>,
    tag: f64,
    quarantine: f64,
    reject: f64,
    /// Rule name → action demanded when it hits (`reject`, `tempfail`, `discard`, `quarantine`).
    actions: BTreeMap<String, String>,
    /// Domain → threshold overrides.
    domains: BTreeMap<String, RawThresholds>,
    dnsbl: Vec<RawDnsList>,
    dnsbl_threshold: Option<f64>,
    uribl: Vec<RawDnsList>,
    uribl_max_domains: usize,
    fcrdns: bool,
    auth: bool,
    dmarc_reject: bool,
    dmarc_quarantine: bool,
    helo_checks: bool,
    sender_domain_check: bool,
    /// Checks whose DNS lookup failures (timeout, SERVFAIL) tempfail instead of scoring nothing.
    dns_tempfail: Vec<String>,
    trusted_networks: Vec<String>,
    allow_networks: Vec<String>,
    deny_networks: Vec<String>,
    skipped_rule_metas: String,
    #[serde(with = "humantime_serde")]
    backtrack_budget: Duration,
    shadow: Option<PathBuf>,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            gtube: true,
            rules_dir: None,
            tag: 5.0,
            quarantine: 10.0,
            reject: 15.0,
            actions: BTreeMap::new(),
            domains: BTreeMap::new(),
            dnsbl: Vec::new(),
            dnsbl_threshold: None,
            uribl: Vec::new(),
            uribl_max_domains: 20,
            fcrdns: true,
            auth: true,
            dmarc_reject: true,
            dmarc_quarantine: true,
            helo_checks: true,
            sender_domain_check: true,
            dns_tempfail: Vec::new(),
            trusted_networks: Vec::new(),
            allow_networks: Vec::new(),
            deny_networks: Vec::new(),
            skipped_rule_metas: "skip".into(),
            backtrack_budget: Duration::from_secs(1),
            shadow: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawThresholds {
    tag: Option<f64>,
    quarantine: Option<f64>,
    reject: Option<f64>,
}

/// Checks whose lookup failures may be configured to tempfail.
const DNS_CHECKS: [&str; 4] = ["dnsbl", "fcrdns", "helo", "sender_domain"];

impl RawPolicy {
    /// The rules directory it names, whether or not it reads.
    pub(super) fn named_rules_dir(&self) -> Option<&PathBuf> {
        self.rules_dir.as_ref()
    }

    /// The shadow policy's file it names, whether or not it reads.
    pub(super) fn named_shadow(&self) -> Option<&PathBuf> {
        self.shadow.as_ref()
    }

    /// The network-list files its allow, deny and trusted lists name.
    pub(super) fn named_network_files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        [
            &self.trusted_networks,
            &self.allow_networks,
            &self.deny_networks,
        ]
        .into_iter()
        .flat_map(|list| super::networks::file_entries(list))
    }

    pub(super) fn validate(self, relayed: &[String], problems: &mut Problems) -> PolicyConfig {
        let thresholds = Thresholds {
            tag: self.tag,
            quarantine: self.quarantine,
            reject: self.reject,
        };
        check_thresholds("policy", &thresholds, problems);
        problems.at_most("policy.uribl_max_domains", self.uribl_max_domains, 1000);
        // `total < NaN` is false: every client on any positive-weight list would be refused.
        if self.dnsbl_threshold.is_some_and(|t| !t.is_finite()) {
            problems.bad("policy.dnsbl_threshold", "must be a number");
        }
        let mut domain_thresholds = BTreeMap::new();
        for (domain, t) in self.domains {
            let domain = super::problems::domain_key(&domain);
            let merged = Thresholds {
                tag: t.tag.unwrap_or(thresholds.tag),
                quarantine: t.quarantine.unwrap_or(thresholds.quarantine),
                reject: t.reject.unwrap_or(thresholds.reject),
            };
            let key = format!("policy.domains.{domain}");
            if domain_thresholds.contains_key(&domain) {
                problems.domain_named_twice(&key);
                continue;
            }
            // Thresholds are looked up by the recipient's domain as relayed (A-labels): a
            // typo or a domain mail never comes for would silently leave the defaults.
            if domain.starts_with('.') {
                // Looked up by the recipient's exact domain: `.example.test` matched none.
                problems.bad(
                    &key,
                    "name each domain (a leading dot matches nothing here)",
                );
            } else if !super::relay::relays_domain(relayed, &domain) {
                problems.bad(&key, "domain is not in relay.domains");
            }
            check_thresholds(&key, &merged, problems);
            domain_thresholds.insert(domain, merged);
        }
        let mut actions = BTreeMap::new();
        for (rule, action) in self.actions {
            // A name no rule could have (`attach blocked ext`) never applies; one that names
            // nothing (`attach_blocked_ext`: names are case-sensitive) is warned of where
            // the rules are known (`check`, start, reload).
            if !super::problems::is_rule_name(&rule) {
                problems.bad(
                    &format!("policy.actions.{rule}"),
                    "is not a rule name (letters, digits and _)",
                );
                continue;
            }
            let action = match action.as_str() {
                "reject" => RuleAction::Reject,
                "tempfail" => RuleAction::Tempfail,
                "discard" => RuleAction::Discard,
                "quarantine" => RuleAction::Quarantine,
                _ => {
                    problems.bad(
                        &format!("policy.actions.{rule}"),
                        "must be \"reject\", \"tempfail\", \"discard\" or \"quarantine\"",
                    );
                    continue;
                }
            };
            actions.insert(rule, action);
        }
        if let Some(dir) = &self.rules_dir {
            if !dir.is_dir() {
                problems.gateway_file(
                    "policy.rules_dir",
                    &format!("{} is not a directory", dir.display()),
                );
            }
        }
        for check in &self.dns_tempfail {
            if !DNS_CHECKS.contains(&check.as_str()) {
                problems.bad(
                    "policy.dns_tempfail",
                    &format!("{check:?} is not one of {}", DNS_CHECKS.join(", ")),
                );
            }
        }
        let skipped_rule_metas = match self.skipped_rule_metas.as_str() {
            "skip" => SkippedRuleMetas::Skip,
            "evaluate" => SkippedRuleMetas::Evaluate,
            _ => {
                problems.bad(
                    "policy.skipped_rule_metas",
                    "must be \"skip\" or \"evaluate\"",
                );
                SkippedRuleMetas::Skip
            }
        };
        if let Some(shadow) = &self.shadow {
            if !shadow.is_file() {
                problems.gateway_file(
                    "policy.shadow",
                    &format!("{} is not a file", shadow.display()),
                );
            }
        }
        time_limit(
            problems,
            "policy.backtrack_budget",
            self.backtrack_budget,
            true,
        );
        PolicyConfig {
            skipped_rule_metas,
            backtrack_budget: self.backtrack_budget,
            shadow: self.shadow,
            dnsbl: dns_lists::validate("policy.dnsbl", self.dnsbl, problems),
            dnsbl_threshold: self.dnsbl_threshold,
            uribl: dns_lists::validate("policy.uribl", self.uribl, problems),
            uribl_max_domains: self.uribl_max_domains,
            fcrdns: self.fcrdns,
            auth: self.auth,
            dmarc_reject: self.dmarc_reject,
            dmarc_quarantine: self.dmarc_quarantine,
            helo_checks: self.helo_checks,
            sender_domain_check: self.sender_domain_check,
            dns_tempfail: self.dns_tempfail,
            trusted_networks: NetworkList::load(
                "policy.trusted_networks",
                &self.trusted_networks,
                problems,
            ),
            allow_networks: NetworkList::load(
                "policy.allow_networks",
                &self.allow_networks,
                problems,
            ),
            deny_networks: NetworkList::load("policy.deny_networks", &self.deny_networks, problems),
            gtube: self.gtube,
            rules_dir: self.rules_dir,
            thresholds,
            domain_thresholds,
            actions,
        }
    }
}

fn check_thresholds(key: &str, t: &Thresholds, problems: &mut Problems) {
    if !(t.tag.is_finite() && t.quarantine.is_finite() && t.reject.is_finite()) {
        problems.bad(key, "thresholds must be numbers");
    } else if !(t.tag <= t.quarantine && t.quarantine <= t.reject) {
        problems.bad(key, "thresholds must satisfy tag <= quarantine <= reject");
    }
}
