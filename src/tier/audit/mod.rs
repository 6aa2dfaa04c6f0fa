//! `mxguard audit`: the published MX tier of a domain as a sender (or a spammer looking for
//! a way around the filter) sees it from outside.
//!
//! Four steps, one module each: resolve the MX set through a resolver of the audit's own
//! ([`dns`]); probe every address of every target over SMTP ([`probe`]); fetch the policy
//! fingerprints of the admin endpoints the operator named ([`fingerprint`]); turn what was
//! seen into findings with a severity ([`findings`]). [`report`] renders the result as a
//! table or one JSON document. Only the fingerprint comparison is specific to mxguard; the
//! rest works against any MX software.

pub mod dns;
pub mod findings;
pub mod fingerprint;
pub mod probe;
pub mod report;

#[cfg(test)]
mod tests;

pub use findings::{Finding, FindingKind, Severity};
pub use report::Report;

use crate::config::RelayTls;
use crate::relay::ClientSettings;
use rand::distr::{Alphanumeric, SampleString};
use std::net::SocketAddr;
use std::time::Duration;

/// The recipient of the relay probe: a domain that can never be ours (RFC 2606).
pub const RELAY_PROBE_RCPT: &str = "other@outside.invalid";

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The mail domain whose MX set is audited.
    pub domain: String,
    /// The DNS server to ask; `None` for the system resolver.
    pub resolver: Option<SocketAddr>,
    /// SMTP port probed on every MX address (25 in real life; tests use others).
    pub port: u16,
    /// Recipient of the GTUBE probe; `None` for `postmaster@DOMAIN`.
    pub rcpt: Option<String>,
    /// Admin endpoints whose `/policy` fingerprints are compared.
    pub admins: Vec<AdminEndpoint>,
    /// Deadline of every network step (one DNS lookup, one connect, one SMTP reply, one
    /// HTTP exchange).
    pub timeout: Duration,
    /// Name sent in EHLO: a real host name, since MXes may refuse implausible ones.
    pub helo: String,
}

/// One admin listener named on the command line (`--admin NAME=IP:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEndpoint {
    /// The MX host name or any label the operator chose.
    pub name: String,
    /// Where its admin listener answers.
    pub address: SocketAddr,
}

/// Why the audit could not run (exit code 2); findings about the domain are not errors.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The domain is not a DNS name.
    #[error("{0:?} is not a domain name (use the ASCII form, e.g. xn--…)")]
    InvalidDomain(String),
    /// The GTUBE recipient is not a plain `local@domain` address.
    #[error("{0:?} is not a usable recipient address (local@domain)")]
    InvalidRecipient(String),
    /// The EHLO name would not fit on an SMTP command line.
    #[error("{0:?} is not a usable EHLO name")]
    InvalidHelo(String),
    /// The resolver could not be set up (e.g. no usable system configuration).
    #[error("cannot set up the resolver: {0}")]
    Resolver(String),
    /// The MX question got no answer: without it nothing can be judged.
    #[error("cannot resolve the MX records of {domain}: {detail}")]
    Dns {
        /// The audited domain.
        domain: String,
        /// What went wrong (timeout, SERVFAIL, transport error).
        detail: String,
    },
}

/// Runs the whole audit. Findings, however serious, are in the report; an `Err` means
/// the audit itself could not be carried out.
pub async fn run(options: AuditOptions) -> Result<Report, AuditError> {
    let domain = normalize_domain(&options.domain)
        .ok_or_else(|| AuditError::InvalidDomain(options.domain.clone()))?;
    let rcpt = options
        .rcpt
        .clone()
        .unwrap_or_else(|| format!("postmaster@{domain}"));
    if !is_plain_address(&rcpt) {
        return Err(AuditError::InvalidRecipient(rcpt));
    }
    if !is_command_word(&options.helo) {
        return Err(AuditError::InvalidHelo(options.helo.clone()));
    }
    let resolver = dns::AuditResolver::new(options.resolver, options.timeout)?;
    let mx = resolver.mx_set(&domain).await?;

    let plan = probe::ProbePlan {
        port: options.port,
        unknown_rcpt: format!("{}@{domain}", random_local_part()),
        relay_rcpt: RELAY_PROBE_RCPT.to_owned(),
        gtube_rcpt: rcpt.clone(),
        message: probe::gtube_message(&rcpt, &options.helo),
        settings: ClientSettings::for_probe(
            &options.helo,
            RelayTls::Opportunistic,
            options.timeout,
        ),
    };
    let apex = async {
        // Only beside published MX records: without them the apex is the MX, probed as one.
        if mx.kind != dns::MxKind::Published {
            return (Vec::new(), None);
        }
        let (addresses, unresolved) = resolver.apex_addresses(&domain).await;
        let addresses = apex_only(&mx, addresses, options.port);
        (
            probe::probe_each(&domain, &addresses, &plan).await,
            unresolved,
        )
    };
    let (hosts, (apex, apex_unresolved), fingerprints) = futures::join!(
        probe::probe_all(&mx, &plan),
        apex,
        fingerprint::fetch_all(&options.admins, options.timeout),
    );
    let mut findings = findings::all(&domain, &mx, &hosts, &apex, &fingerprints);
    if let Some(detail) = apex_unresolved {
        findings.push(Finding::new(FindingKind::ApexLookupFailed, &domain, detail));
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }
    Ok(Report {
        domain,
        resolver: resolver.description().to_owned(),
        port: options.port,
        rcpt,
        unknown_rcpt: plan.unknown_rcpt,
        front_tier: findings::front_tier(&mx),
        mx,
        hosts,
        apex,
        fingerprints,
        findings,
    })
}

/// The addresses of the domain itself to probe: those not among the MX targets' (a
/// gateway on the apex is probed as an MX already).
fn apex_only(mx: &dns::MxSet, apex: Vec<std::net::IpAddr>, port: u16) -> Vec<SocketAddr> {
    apex.into_iter()
        .filter(|ip| !mx.targets.iter().any(|t| t.addresses.contains(ip)))
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// Lower case, without the root dot; `None` unless every label is a plausible DNS label.
pub fn normalize_domain(input: &str) -> Option<String> {
    let name = input.trim().strip_suffix('.').unwrap_or(input.trim());
    (!name.is_empty() && crate::mail::address::is_lookup_name(name))
        .then(|| name.to_ascii_lowercase())
}

/// `local@domain` with nothing that could break out of `RCPT TO:<…>`: the address goes
/// onto the wire as it is.
pub fn is_plain_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && address.len() <= 254
        && address
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '<' && c != '>')
        && normalize_domain(domain).is_some()
}

/// One word that can follow `EHLO ` on a command line.
fn is_command_word(word: &str) -> bool {
    !word.is_empty() && word.len() <= 255 && word.chars().all(|c| c.is_ascii_graphic())
}

/// A local part nobody has: the unknown-recipient probe must hit a non-existent mailbox.
fn random_local_part() -> String {
    let tag = Alphanumeric
        .sample_string(&mut rand::rng(), 12)
        .to_ascii_lowercase();
    format!("mxguard-audit-{tag}")
}
