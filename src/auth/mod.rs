//! Sender authentication with mail-auth: SPF (HELO and MAIL FROM), DKIM, DMARC and ARC, their
//! symbols, the `Authentication-Results` header (RFC 8601) and the removal of forged ones.
//!
//! One [`Authenticator`] is built from `[dns]` and shared behind an `Arc`. The policy calls
//! [`Authenticator::spf_helo`] and [`Authenticator::spf_mail_from`] at MAIL FROM, then
//! [`Authenticator::verify_message`] at end of DATA, and combines everything in an
//! [`AuthOutcome`]. Every call is bounded by `dns.stage_deadline`: a dead DNS server turns into
//! temperror results, never into a stuck session.

pub mod arc;
pub mod dkim;
pub mod dmarc;
pub mod results;
pub mod spf;

pub use arc::ArcCheck;
pub use dkim::{DkimCheck, DkimSignatureResult};
pub use dmarc::{DmarcCheck, DmarcPolicy};
pub use results::{strip_authentication_results, AuthOutcome};
pub use spf::{SpfCheck, SpfResult};

use crate::config::DnsConfig;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use mail_auth::MessageAuthenticator;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// The authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// `dns.nameservers` is empty and the system configuration could not be read.
    #[error("auth: cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// hickory refused the configuration.
    #[error("auth: cannot build the resolver: {0}")]
    Build(String),
}

/// SPF, DKIM, DMARC and ARC verification on one resolver built from `[dns]`. Cheap to clone
/// (the resolver is reference-counted); meant to be built once and shared behind an `Arc`.
#[derive(Clone)]
pub struct Authenticator {
    inner: MessageAuthenticator,
    deadline: Duration,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the resolver from `[dns]`: the listed name servers (each over UDP and TCP on its
    /// own port, `/etc/hosts` ignored), or the system configuration when the list is empty.
    /// Each verification call is bounded by `stage_deadline`. Must be called inside a Tokio
    /// runtime.
    pub fn new(config: &DnsConfig) -> Result<Authenticator, AuthSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| AuthSetupError::SystemConfig(e.to_string()))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                provider,
            );
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        opts.cache_size = config.cache_size as u64;
        opts.try_tcp_on_error = true;
        let resolver = builder
            .build()
            .map_err(|e| AuthSetupError::Build(e.to_string()))?;
        Ok(Authenticator {
            inner: MessageAuthenticator(resolver),
            deadline: config.stage_deadline,
        })
    }

    /// The underlying mail-auth verifier.
    pub(crate) fn verifier(&self) -> &MessageAuthenticator {
        &self.inner
    }

    /// Runs `check` within the stage deadline; `None` when the deadline passed.
    pub(crate) async fn bounded<T>(&self, check: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.deadline, check).await.ok()
    }
}

/// Lower-case domain of an address (`user@Example.COM` → `example.com`); `None` without `@`.
pub(crate) fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests;
