//! `mxguard check`: validate the configuration and rules; print what they resolve to and
//! the policy fingerprint; exit 1 naming every problem with its file:line.

use mxguard::config::Config;
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
    let mut failed = false;
    if let Some(tls) = &config.server.tls {
        if let Err(e) = mxguard::net::tls::load_acceptor(&tls.certificate, &tls.key) {
            eprintln!("{}: server.tls: {e}", path.display());
            failed = true;
        }
    }
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
        failed |= report_rules(dir)?;
    } else {
        println!("  rules:         none (policy.rules_dir not set)");
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    let tier_config = config.tier.clone();
    let policy = offline::build(config)?;
    println!("fingerprint: {}", policy.fingerprint());
    if tier {
        return compare_tier(tier_config.as_ref(), policy.fingerprint());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints rule counts and every diagnostic; true when a rules file has errors.
fn report_rules(dir: &Path) -> anyhow::Result<bool> {
    let set = RuleSet::from_dir(dir)?;
    let compiled = set.compile();
    let report = compiled.report();
    println!("rules from {}:", dir.display());
    for (kind, n) in &report.counts {
        println!("  {:<10} {n}", format!("{kind:?}").to_lowercase());
    }
    let total: usize = report.counts.values().sum();
    println!("  evaluated  {total}");
    println!("  skipped    {}", report.skipped.len());
    println!(
        "  disabled   {} (score 0 or unused sub-rules)",
        report.disabled.len()
    );
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
