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
    // The MIME shape check runs wherever rules are compiled, and SpamAssassin's rule of
    // this name is an `eval:` one, which the engine skips (review: metas over it were
    // skipped with it).
    crate::policy::checks::mime_shape::QP_LONG_LINE,
    // Runs with it; read by `MISSING_MSGID` in the shipped rules.
    crate::policy::checks::message_id::MADE_AT_MX,
    crate::rules::BACKTRACK_BUDGET_SYMBOL,
];

/// Symbols of the DNS and authentication checks.
const DNS: &[&str] = &[
    "RDNS_NONE",
    "RDNS_MISMATCH",
    "SENDER_DOMAIN_UNRESOLVABLE",
    "SENDER_NULL_MX",
    "SENDER_ADDRESS_LITERAL",
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

/// Symbols the other built-in checks add (attachments, antivirus, scan coverage, MIME
/// shape, dates, the tier, recipients, size). Not needed to compile rules (no `eval:` rule
/// stands for them), but an action may name them: see [`known_to_checks`].
const CHECK_SYMBOLS: &[&str] = &[
    "ANTIVIRUS_TRUNCATED",
    "ANTIVIRUS_UNAVAILABLE",
    "VIRUS_FOUND",
    "ARCHIVE_BIDI_NAME",
    "ARCHIVE_BLOCKED_EXT",
    "ARCHIVE_BOMB",
    "ARCHIVE_DOUBLE_EXT",
    "ARCHIVE_ENCRYPTED",
    "ARCHIVE_TOO_DEEP",
    "ARCHIVE_TOO_LARGE",
    "ARCHIVE_TOO_MANY_ENTRIES",
    "ARCHIVE_TYPE_MISMATCH",
    "ARCHIVE_NESTED_SKIPPED",
    "ARCHIVE_SHORTCUT_TO_FILE",
    "ARCHIVE_UNINSPECTED",
    "ARCHIVE_UNREADABLE",
    "ATTACH_BIDI_NAME",
    "ATTACH_BLOCKED_EXT",
    "ATTACH_BLOCKED_TYPE",
    "ATTACH_DOUBLE_EXT",
    "ATTACH_MIME_REPEATED",
    "ATTACH_HTML_SMUGGLING",
    "ATTACH_SHORTCUT_TO_FILE",
    "ATTACH_SVG_ACTIVE",
    "ATTACH_TOO_MANY_FILES",
    "ATTACH_TYPE_MISMATCH",
    "DATE_IN_FUTURE_03_12",
    "DATE_IN_FUTURE_12_XX",
    "DATE_IN_PAST_07D",
    "MIME_QP_NEEDLESS",
    "MX_BYPASS_BACKUP",
    "MX_BYPASS_FIRST_CONTACT",
    "MX_FANOUT",
    "OFFICE_DDE",
    "OFFICE_EMBEDDED_PROGRAM",
    "OFFICE_ENCRYPTED",
    "OFFICE_EQUATION_EDITOR",
    "OFFICE_MACRO",
    "OFFICE_MACRO_AUTORUN",
    "OFFICE_REMOTE_OBJECT",
    "OFFICE_UNINSPECTED",
    "RCPT_UNKNOWN",
    "RCPT_VERIFY_UNAVAILABLE",
    "RELAY_DENIED",
    "SCAN_NESTING_LIMIT",
    "SCAN_PART_LIMIT",
    "SCAN_TRUNCATED",
    "SIZE_OVER_LIMIT",
    "TIER_STAMP_FLOOR",
    "TIER_STAMP_VERIFIED",
];

/// Every symbol a built-in check of `config` can add, whatever the rules files say: what a
/// `policy.actions` key may name without a rule of that name.
pub fn known_to_checks(config: &Config) -> BTreeSet<String> {
    let mut known = compile_options(config).provided;
    known.extend(CHECK_SYMBOLS.iter().map(|s| s.to_string()));
    known
}

/// How the rules of `config` are compiled (`mxguard check` compiles them the same way).
pub fn compile_options(config: &Config) -> CompileOptions {
    let p = &config.policy;
    let mut provided: BTreeSet<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
    provided.extend(DNS.iter().map(|s| s.to_string()));
    for list in p.dnsbl.iter().chain(&p.uribl) {
        provided.insert(list.symbol.clone());
        provided.extend(list.codes.iter().map(|e| e.symbol.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped rules describe every symbol a check adds (for `scan --explain` and the
    /// scores): each name they describe without defining a rule must be one the checks
    /// are known to add, or `check` would call an action on it a typo.
    #[test]
    fn every_symbol_the_shipped_rules_describe_is_known_to_the_checks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config/mxguard.toml")).unwrap();
        let known = known_to_checks(&config);
        let (mut described, mut defined) = (BTreeSet::new(), BTreeSet::new());
        for entry in std::fs::read_dir(root.join("rules")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                    continue;
                };
                match kind {
                    "describe" => described.insert(name.to_string()),
                    "header" | "body" | "rawbody" | "full" | "uri" | "meta" | "mimeheader" => {
                        defined.insert(name.to_string())
                    }
                    _ => false,
                };
            }
        }
        let unknown: Vec<&String> = described
            .difference(&defined)
            // Rate-limit symbols come with the `[[ratelimit]]` a deployment configures.
            .filter(|name| !known.contains(*name) && !name.starts_with("RATELIMIT_"))
            .collect();
        assert!(
            unknown.is_empty(),
            "described, added by no known check: {unknown:?}"
        );
    }

    /// Regression (review): SpamAssassin's `MIME_QP_LONG_LINE` is an `eval:` rule, which the
    /// engine skips; the MIME shape check adds the symbol, so a meta over it still runs.
    #[test]
    fn a_meta_over_the_qp_long_line_symbol_is_not_skipped() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config/mxguard.toml")).unwrap();
        assert!(compile_options(&config)
            .provided
            .contains("MIME_QP_LONG_LINE"));
        assert!(known_to_checks(&config).contains("MIME_QP_LONG_LINE"));
    }

    /// Regression (review): a DMARC failure of a domain asking for quarantine (or for
    /// rejection while it samples, `pct` below 100) scored 4 points, under `tag`: the
    /// domain's request reached the recipient as a clean message. A quarantine request is
    /// at least a tag (RFC 7489 §6.3: "suspicious"), a rejection request more.
    #[test]
    fn a_dmarc_failure_asking_for_quarantine_reaches_tag() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config/mxguard.toml")).unwrap();
        let rules = crate::rules::load_dir(&root.join("rules")).unwrap();
        let score = |names: &[&str]| -> f64 {
            names.iter().map(|n| rules.score_of(n).unwrap_or(0.0)).sum()
        };
        let tag = config.policy.thresholds.tag;
        assert!(score(&["DMARC_FAIL", "DMARC_POLICY_QUARANTINE"]) >= tag);
        assert!(score(&["DMARC_FAIL", "DMARC_POLICY_REJECT"]) > tag);
        assert!(score(&["DMARC_FAIL", "DMARC_POLICY_NONE"]) < tag);
    }
}
