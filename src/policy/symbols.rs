//! The symbols the built-in checks can add, as the rules compiler needs to know them: a
//! SpamAssassin rule the engine skips (an `eval:` rule such as `SPF_FAIL`) is not missing
//! when a check of ours adds a symbol of the same name, so metas reading it still run.
//! A check that adds a new symbol lists it here.

use crate::config::{Config, SkippedRuleMetas};
use crate::rules::compile::{self, CompileOptions};
use std::collections::BTreeSet;

/// Symbols of the checks that run whatever the configuration says about DNS.
const ALWAYS: &[&str] = &[
    "GTUBE",
    "EARLY_TALKER",
    "PIPELINING_ABUSE",
    "CLIENT_TRUSTED",
    "CLIENT_ALLOWLISTED",
    "CLIENT_DENYLISTED",
    "GREYLIST",
    "STATE_UNAVAILABLE",
    "HELO_BARE_IP",
    "HELO_IP_MISMATCH",
    "HELO_NOT_FQDN",
    "HELO_IS_OURS",
    "HELO_UNRESOLVABLE",
    crate::rules::BACKTRACK_BUDGET_SYMBOL,
];

/// Symbols of the DNS and authentication checks.
const DNS: &[&str] = &[
    "RDNS_NONE",
    "RDNS_MISMATCH",
    "SENDER_DOMAIN_UNRESOLVABLE",
    "SENDER_NULL_MX",
    "SPF_PASS",
    "SPF_FAIL",
    "SPF_SOFTFAIL",
    "SPF_NEUTRAL",
    "SPF_NONE",
    "SPF_TEMPERROR",
    "SPF_PERMERROR",
    "SPF_HELO_PASS",
    "SPF_HELO_FAIL",
    "SPF_HELO_SOFTFAIL",
    "SPF_HELO_NEUTRAL",
    "SPF_HELO_NONE",
    "SPF_HELO_TEMPERROR",
    "SPF_HELO_PERMERROR",
    "DKIM_VALID",
    "DKIM_VALID_AU",
    "DKIM_INVALID",
    "DKIM_NONE",
    "DKIM_TEMPERROR",
    "DMARC_PASS",
    "DMARC_FAIL",
    "DMARC_NONE",
    "DMARC_TEMPERROR",
    "DMARC_PERMERROR",
    "DMARC_POLICY_NONE",
    "DMARC_POLICY_QUARANTINE",
    "DMARC_POLICY_REJECT",
    "ARC_PASS",
    "ARC_FAIL",
    "ARC_NONE",
    "ARC_TEMPERROR",
];

/// How the rules of `config` are compiled (`mxguard check` compiles them the same way).
pub fn compile_options(config: &Config) -> CompileOptions {
    let p = &config.policy;
    let mut provided: BTreeSet<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
    provided.extend(DNS.iter().map(|s| s.to_string()));
    for list in p.dnsbl.iter().chain(&p.uribl) {
        provided.insert(list.symbol.clone());
        provided.extend(list.codes.iter().map(|(_, symbol)| symbol.clone()));
    }
    provided.extend(config.ratelimits.iter().map(|r| r.symbol.clone()));
    if config.classifier.enabled {
        provided.extend(crate::classify::BANDS.iter().map(|b| b.symbol.to_string()));
    }
    CompileOptions {
        skipped_rule_metas: match p.skipped_rule_metas {
            SkippedRuleMetas::Skip => compile::SkippedRuleMetas::Skip,
            SkippedRuleMetas::Evaluate => compile::SkippedRuleMetas::Evaluate,
        },
        provided,
        acted_on: p.actions.keys().cloned().collect(),
        backtrack_budget: p.backtrack_budget,
    }
}
