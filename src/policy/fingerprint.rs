//! The policy fingerprint: SHA-256 over everything that decides a verdict (relay domains,
//! recipient lists, thresholds, rule actions, content limits, the canonical rule set).
//! Two gateways with equal fingerprints judge every message alike, whatever the order,
//! comments or whitespace of their files; listeners, paths and timeouts do not count.

use crate::config::Config;
use crate::rules::CompiledRules;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The canonical text of a policy, one fact per line.
pub fn canonical(config: &Config, rules: Option<&CompiledRules>) -> String {
    let mut out = String::new();
    let mut domains = config.relay.domains.clone();
    domains.sort();
    domains.dedup();
    let _ = writeln!(out, "relay.domains={}", domains.join(","));
    let r = &config.relay.recipients;
    let _ = writeln!(out, "recipients.callout={}", r.callout);
    for (domain, list) in &r.lists {
        let _ = writeln!(
            out,
            "recipients.list.{domain}={}",
            list.canonical().replace('\n', ",")
        );
    }
    let s = &config.server;
    let _ = writeln!(out, "bare_line_ending={:?}", s.bare_line_ending);
    let _ = writeln!(out, "message_size_bytes={}", s.limits.message_size_bytes);
    let _ = writeln!(out, "text_line_bytes={}", s.limits.text_line_bytes);
    let _ = writeln!(
        out,
        "recipients_per_message={}",
        s.limits.recipients_per_message
    );
    let p = &config.policy;
    let _ = writeln!(out, "gtube={}", p.gtube);
    let t = p.thresholds;
    let _ = writeln!(out, "thresholds={}/{}/{}", t.tag, t.quarantine, t.reject);
    for (domain, t) in &p.domain_thresholds {
        let _ = writeln!(
            out,
            "thresholds.{domain}={}/{}/{}",
            t.tag, t.quarantine, t.reject
        );
    }
    for (rule, action) in &p.actions {
        let _ = writeln!(out, "action.{rule}={}", action.as_str());
    }
    match rules {
        Some(rules) => out.push_str(&rules.canonical_text()),
        None => out.push_str("rules=none\n"),
    }
    out
}

/// SHA-256 of [`canonical`], 64 lower-case hex digits.
pub fn compute(config: &Config, rules: Option<&CompiledRules>) -> String {
    let digest = Sha256::digest(canonical(config, rules).as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[relay]\ndomains=[\"b.test\",\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n{extra}"
        );
        Config::from_toml(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn listeners_and_order_do_not_matter_but_thresholds_do() {
        let base = compute(&config(""), None);
        let other_listener = compute(&config("[server]\nlisten=[\"127.0.0.1:9999\"]\n"), None);
        assert_eq!(base, other_listener);
        let reordered = Config::from_toml(
            Path::new("t.toml"),
            "[relay]\ndomains=[\"a.test\",\"b.test\"]\ninternal=[\"127.0.0.1:1\"]\n",
        )
        .unwrap();
        assert_eq!(base, compute(&reordered, None));
        assert_ne!(base, compute(&config("[policy]\nreject=12.0\n"), None));
    }

    #[test]
    fn a_score_change_changes_the_fingerprint() {
        let c = config("");
        let a = RuleSet::parse_text(Path::new("a.cf"), "body X /x/\nscore X 1\n").compile();
        let b = RuleSet::parse_text(Path::new("a.cf"), "# comment\nbody  X  /x/\nscore X 1\n")
            .compile();
        let c2 = RuleSet::parse_text(Path::new("a.cf"), "body X /x/\nscore X 2\n").compile();
        assert_eq!(compute(&c, Some(&a)), compute(&c, Some(&b)));
        assert_ne!(compute(&c, Some(&a)), compute(&c, Some(&c2)));
    }
}
