//! `mxguard check`: validate the configuration and rules; print what they resolve to and
//! the policy fingerprint; exit 1 naming every problem with its file:line.

use mxguard::config::{Config, NOT_A_HOST_NAME};
use mxguard::policy::offline;
use mxguard::rules::{RuleSet, Severity};
use std::path::Path;
use std::process::ExitCode;

/// Loads configuration and rules and prints a summary.
pub fn run(path: &Path, tier: bool) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // A certificate that does not load stops `serve` as a bad key does: not "ok".
    if let Some(tls) = &config.server.tls {
        if let Err(e) = mxguard::net::tls::load_acceptor(&tls.certificate, &tls.key) {
            eprintln!("{}: server.tls: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut failed = false;
    println!("{}: configuration ok", path.display());
    let listen: Vec<String> = config.server.listen.iter().map(|a| a.to_string()).collect();
    println!("  listen:        {}", listen.join(", "));
    println!("  hostname:      {}", config.server.hostname);
    println!("  relay domains: {}", config.relay.domains.join(", "));
    let internal: Vec<String> = config
        .relay
        .internal
        .iter()
        .map(|a| a.to_string())
        .collect();
    println!("  internal:      {}", internal.join(", "));
    let lists: Vec<&str> = config
        .relay
        .recipients
        .lists
        .keys()
        .map(|s| s.as_str())
        .collect();
    println!(
        "  recipients:    lists for [{}], callout {}",
        lists.join(", "),
        if config.relay.recipients.callout {
            "on"
        } else {
            "off"
        }
    );
    if lists.is_empty() && !config.relay.recipients.callout {
        println!(
            "  warning: no recipient verification: every recipient of a relay domain is accepted"
        );
    }
    let (largest, streamed) = (
        config.server.limits.message_size_bytes,
        config.antivirus.max_stream_bytes,
    );
    if config.antivirus.clamd.is_some() && largest > streamed {
        println!(
            "  warning: server.limits.message_size_bytes ({largest}) is above \
             antivirus.max_stream_bytes ({streamed}): clamd reads a message bigger than that \
             only up to {streamed} bytes (ANTIVIRUS_TRUNCATED)"
        );
    }
    for (key, why) in config.doubtful_settings() {
        println!("  warning: {key}: {why}");
    }
    if let Some(tier) = &config.tier {
        for (key, name) in tier.names_not_host_names() {
            println!("  warning: {key} {name:?} is {NOT_A_HOST_NAME}");
        }
    }
    println!("  spool:         {}", config.spool.dir.display());
    println!(
        "  starttls:      {}",
        if config.server.tls.is_some() {
            "offered"
        } else {
            "not offered"
        }
    );
    let t = config.policy.thresholds;
    println!(
        "  thresholds:    tag {} quarantine {} reject {}",
        t.tag, t.quarantine, t.reject
    );

    if let Some(dir) = &config.policy.rules_dir {
        failed |= report_rules(dir, &config)?;
    } else {
        println!("  rules:         none (policy.rules_dir not set)");
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    let tier_config = config.tier.clone();
    let offline = offline::build(config)?;
    for action in offline.policy().actions_naming_nothing() {
        println!(
            "  warning: policy.actions.{action}: no rule, score or describe line names it, \
             nor a DNS-list, rate-limit or built-in check symbol: it never applies (a typo?)"
        );
    }
    print_classifier(&offline);
    println!("fingerprint: {}", offline.policy().fingerprint());
    if tier {
        return compare_tier(tier_config.as_ref(), offline.policy().fingerprint());
    }
    Ok(ExitCode::SUCCESS)
}

/// Says where the classifier's model comes from.
fn print_classifier(offline: &offline::Offline) {
    use offline::ClassifierSource;
    let c = &offline.policy().config().classifier;
    let seed = c.seed.as_ref().map_or("a seed".to_string(), |p| {
        format!("the seed {}", p.display())
    });
    let source = match offline.classifier_source() {
        ClassifierSource::Disabled => "disabled".to_string(),
        ClassifierSource::Store => "the state store".to_string(),
        ClassifierSource::Seed { unanswered: None } => {
            format!("{seed} (the store was never used: the gateway seeds it)")
        }
        ClassifierSource::Seed {
            unanswered: Some(why),
        } => format!("{seed} (the store did not answer: {why})"),
        ClassifierSource::None { unanswered: None } => {
            "nothing learned and no seed: it does not vote".to_string()
        }
        ClassifierSource::None {
            unanswered: Some(why),
        } => format!("the store did not answer ({why}) and there is no seed: it does not vote"),
    };
    println!("classifier:      {source}");
    if let Some(v) = offline.model_version() {
        println!("  model version: {v}");
    }
}

/// Prints rule counts and every diagnostic; true when a rules file has errors.
fn report_rules(dir: &Path, config: &Config) -> anyhow::Result<bool> {
    let set = RuleSet::from_dir(dir)?;
    let compiled = set.compile_with(&mxguard::policy::rules_compile_options(config));
    let report = compiled.report();
    println!("rules from {}:", dir.display());
    for (kind, n) in &report.counts {
        println!("  {:<10} {n}", format!("{kind:?}").to_lowercase());
    }
    let total: usize = report.counts.values().sum();
    println!("  evaluated  {total}");
    println!("  skipped    {}", report.skipped.len());
    // Every name, on one line for tools (block diagnostics list only the first few).
    if !report.skipped.is_empty() {
        println!("  skipped rules: {}", report.skipped.join(" "));
    }
    println!(
        "  disabled   {} (score 0 or unused sub-rules)",
        report.disabled.len()
    );
    let skipping = config.policy.skipped_rule_metas == mxguard::config::SkippedRuleMetas::Skip;
    println!(
        "  metas reading skipped rules: {} ({})",
        report.skipped_metas.len(),
        if skipping {
            "skipped too, policy.skipped_rule_metas = \"skip\""
        } else {
            "evaluated with those rules not hit, policy.skipped_rule_metas = \"evaluate\""
        }
    );
    for (meta, dep) in &report.skipped_metas {
        println!("    {meta}: reads {dep}");
    }
    println!("  backtracking engine: {}", report.backtracking.len());
    for (name, why) in &report.backtracking {
        println!("    {name}: {why}");
    }
    let mut errors = 0;
    for d in compiled.diagnostics() {
        if d.severity == Severity::Error {
            errors += 1;
            eprintln!("{d}");
        } else {
            println!("  {d}");
        }
    }
    if errors > 0 {
        eprintln!("{errors} error(s) in rules files");
    }
    Ok(errors > 0)
}

/// `--tier`: every peer's fingerprint (from its `/policy`) beside ours; exit 1 when a
/// reachable peer judges differently.
fn compare_tier(
    tier: Option<&mxguard::config::TierConfig>,
    ours: &str,
) -> anyhow::Result<ExitCode> {
    let Some(tier) = tier else {
        println!("tier: none ([tier] is not configured)");
        return Ok(ExitCode::SUCCESS);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("tier {} ({}):", tier.name, tier.role.as_str());
    println!(
        "  {:<16} {:<8} {:<22} fingerprint",
        "member", "role", "admin"
    );
    println!(
        "  {:<16} {:<8} {:<22} {ours}  (this gateway)",
        tier.name,
        tier.role.as_str(),
        "-"
    );
    let mut differs = false;
    for peer in &tier.peers {
        let admin = peer
            .admin
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into());
        let theirs = match peer.admin {
            Some(addr) => runtime.block_on(mxguard::tier::policy_fingerprint(addr)),
            None => None,
        };
        let shown = match &theirs {
            Some(fp) if fp == ours => format!("{fp}  same"),
            Some(fp) => {
                differs = true;
                format!("{fp}  DIFFERENT")
            }
            None if peer.admin.is_some() => "unreachable".to_owned(),
            None => "unknown (no admin address)".to_owned(),
        };
        println!(
            "  {:<16} {:<8} {admin:<22} {shown}",
            peer.name,
            peer.role.as_str()
        );
    }
    Ok(if differs {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
