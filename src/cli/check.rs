//! `mxguard check`: validate the configuration; exit 1 naming every problem.

use crate::config::Config;
use std::path::Path;
use std::process::ExitCode;

/// Loads the configuration and prints a summary of what it resolves to.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(tls) = &config.server.tls {
        if let Err(e) = crate::smtp::conn::load_acceptor(&tls.certificate, &tls.key) {
            eprintln!("{}: server.tls: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    println!("{}: ok", path.display());
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
    Ok(ExitCode::SUCCESS)
}
