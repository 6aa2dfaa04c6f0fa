//! Sender authentication with mail-auth: SPF (HELO and MAIL FROM), DKIM, DMARC and ARC, their
//! symbols, the `Authentication-Results` header (RFC 8601) and the removal of forged ones.
//!
//! One [`Authenticator`] wraps the shared [`Dns`] resolver and is shared behind an `Arc`. The policy calls
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

use crate::dns::Dns;
use mail_auth::MessageAuthenticator;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// SPF, DKIM, DMARC and ARC verification on the gateway's shared resolver. Cheap to clone
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
    /// Verifies through `dns`'s resolver (same servers, same cache as every other DNS
    /// check); each verification call is bounded by `dns.stage_deadline`.
    pub fn new(dns: &Dns) -> Authenticator {
        Authenticator {
            inner: MessageAuthenticator(dns.resolver()),
            deadline: dns.stage_deadline_duration(),
        }
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
