//! `mxguard audit DOMAIN`: runs the library's audit and maps its report to the exit code
//! (0 clean, 1 a serious finding, 2 the audit could not run).

use anyhow::Context as _;
use mxguard::config::Config;
use mxguard::tier::audit::{self, report, AdminEndpoint, AuditOptions};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The command-line arguments of `audit`, already parsed by clap.
#[derive(Debug)]
pub struct AuditArgs {
    /// `DOMAIN`.
    pub domain: String,
    /// `--resolver`.
    pub resolver: Option<SocketAddr>,
    /// `--port`.
    pub port: u16,
    /// `--rcpt`.
    pub rcpt: Option<String>,
    /// `--admin`, in order.
    pub admins: Vec<AdminEndpoint>,
    /// `--json`.
    pub json: bool,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--helo`.
    pub helo: Option<String>,
}

/// Runs the audit and prints the report; the exit code says how it went: 0 clean, 1
/// serious findings, 2 when the audit could not run or its report could not be written
/// (never 1, which a script would read as findings). Without `--admin`, the admin
/// endpoints are this gateway's and its `[[tier.peers]]`' from the configuration at
/// `config_path`, when it has a `[tier]`.
pub fn run(config_path: &Path, config_given: bool, args: AuditArgs) -> anyhow::Result<ExitCode> {
    match audit_and_report(config_path, config_given, args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("mxguard audit: {}", super::error_text(&e));
            Ok(ExitCode::from(report::EXIT_COULD_NOT_RUN))
        }
    }
}

fn audit_and_report(
    config_path: &Path,
    config_given: bool,
    mut args: AuditArgs,
) -> anyhow::Result<ExitCode> {
    if args.admins.is_empty() {
        if config_given {
            // A mistyped or broken `--config` compared no fingerprints and could still
            // exit 0.
            Config::load(config_path)?;
        }
        args.admins = admins_from_config(config_path);
    }
    let options = AuditOptions {
        domain: args.domain,
        resolver: args.resolver,
        port: args.port,
        rcpt: args.rcpt,
        admins: args.admins,
        timeout: args.timeout,
        helo: args.helo.unwrap_or_else(local_host_name),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(audit::run(options))?;
    let text = if args.json {
        report.to_json()?
    } else {
        report.to_table()
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the report")?;
    Ok(ExitCode::from(report.exit_code()))
}

/// This gateway and its peers, as the tier configuration names them; nothing when the
/// file is absent or has no `[tier]` (the audit then compares no fingerprints).
fn admins_from_config(path: &Path) -> Vec<AdminEndpoint> {
    if !path.exists() {
        return Vec::new();
    }
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!(
                "mxguard audit: {}: {e}; no admin endpoints from it",
                path.display()
            );
            return Vec::new();
        }
    };
    let Some(tier) = config.tier.as_ref() else {
        return Vec::new();
    };
    let own = config.metrics.listen.map(|address| AdminEndpoint {
        name: tier.name.clone(),
        address,
    });
    let peers = tier.peers.iter().filter_map(|peer| {
        peer.admin.map(|address| AdminEndpoint {
            name: peer.name.clone(),
            address,
        })
    });
    own.into_iter().chain(peers).collect()
}

/// `--admin NAME=IP:PORT`.
pub fn parse_admin(s: &str) -> Result<AdminEndpoint, String> {
    let (name, address) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=IP:PORT"))?;
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{name:?}: not a usable name"));
    }
    let address = address
        .parse()
        .map_err(|_| format!("{address:?}: expected IP:PORT"))?;
    Ok(AdminEndpoint {
        name: name.to_owned(),
        address,
    })
}

/// `--resolver IP:PORT` (or a bare IP for port 53).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?}: expected IP or IP:PORT"))
}

/// `--timeout 10s`, `500ms`, or a plain number of seconds.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let parsed = super::positive_duration(s, "the timeout")?;
    // Deadlines are the clock plus this: a timeout past the clock's end panicked.
    if parsed > LONGEST_TIMEOUT {
        return Err(format!("{s:?}: at most {} s", LONGEST_TIMEOUT.as_secs()));
    }
    Ok(parsed)
}

/// The longest `--timeout` taken: a day is more than any MX takes to answer.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(86_400);

/// This machine's host name for EHLO: remote MXes may refuse a made-up one.
fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    /// Regression (review): `audit --timeout 18446744073709551615` was taken, and the
    /// first deadline (now + timeout) overflowed the clock and panicked.
    #[test]
    fn a_timeout_past_a_day_is_refused() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("86400"), Ok(Duration::from_secs(86_400)));
        assert!(parse_timeout("18446744073709551615").is_err());
        assert!(parse_timeout("300000000000y").is_err());
        assert!(parse_timeout("0").is_err());
    }
}
