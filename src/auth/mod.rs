//! Sender authentication with mail-auth: SPF (HELO and MAIL FROM), DKIM, DMARC and ARC, their
//! symbols, the `Authentication-Results` header (RFC 8601) and the removal of forged ones.
//!
//! One [`Authenticator`] shares the gateway's [`Dns`]: mail-auth's lookups go through the same
//! cache, in-flight queries, health gate and metrics as every other DNS check (counted as
//! `spf`, `dkim`, `dmarc` and `arc`). The policy calls [`Authenticator::spf_helo`] and
//! [`Authenticator::spf_mail_from`] at MAIL FROM, then [`Authenticator::verify_message`] at end
//! of DATA, and combines everything in an [`AuthOutcome`]. Every call takes the deadline of
//! its stage, shared with the stage's other checks: a dead DNS server turns into temperror
//! results, never into a stuck session.

pub mod arc;
pub mod dkim;
pub mod dmarc;
pub mod results;
pub mod signed_fields;
pub mod spf;

pub use arc::ArcCheck;
pub use dkim::{DkimCheck, DkimSignatureResult};
pub use dmarc::{DmarcCheck, DmarcPolicy};
pub use results::{strip_authentication_results, AuthOutcome};
pub use spf::{SpfCheck, SpfResult};

use crate::dns::{Dns, DnsSetupError};
use mail_auth::MessageAuthenticator;
use std::fmt;
use std::future::Future;
use tokio::time::Instant;

/// SPF, DKIM, DMARC and ARC verification on the gateway's shared resolver. Cheap to clone;
/// meant to be built once per resolver and shared.
#[derive(Clone)]
pub struct Authenticator {
    spf: MessageAuthenticator,
    dkim: MessageAuthenticator,
    dmarc: MessageAuthenticator,
    arc: MessageAuthenticator,
    dns: Dns,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("dns", &self.dns)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Verifies through `dns` (same servers, cache and health as every other DNS check).
    /// Fails only when the loopback responders mail-auth asks cannot bind.
    pub fn new(dns: &Dns) -> Result<Authenticator, DnsSetupError> {
        let verifier = |check| dns.auth_resolver(check).map(MessageAuthenticator);
        Ok(Authenticator {
            spf: verifier("spf")?,
            dkim: verifier("dkim")?,
            dmarc: verifier("dmarc")?,
            arc: verifier("arc")?,
            dns: dns.clone(),
        })
    }

    /// Whether the resolver is marked down: a temporary failure then says nothing of the
    /// sender's records.
    pub fn dns_is_down(&self) -> bool {
        self.dns.is_down()
    }

    /// The deadline to verify by: the stage's, or a fresh `dns.stage_deadline` from now.
    pub fn deadline(&self, stage: Option<Instant>) -> Instant {
        self.dns.deadline(stage)
    }

    /// Runs `check` until `deadline`; `None` when the deadline passed.
    pub(crate) async fn bounded<T>(
        &self,
        deadline: Instant,
        check: impl Future<Output = T>,
    ) -> Option<T> {
        tokio::time::timeout_at(deadline, check).await.ok()
    }
}

/// Whether `c` may stand in a property value of our `Authentication-Results` (RFC 8601):
/// mail-auth drops white space, controls and `( ) ; = " \` from the values it writes, and
/// the values written here keep to the same rule.
pub(crate) fn is_pvalue_char(c: char) -> bool {
    !matches!(c, '\0'..=' ' | '\u{7f}'..='\u{9f}' | '(' | ')' | ';' | '=' | '"' | '\\')
}

/// Lower-case domain of an address (`user@Example.COM` → `example.com`); `None` without `@`.
pub(crate) fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests;
