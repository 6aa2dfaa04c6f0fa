//! DKIM (RFC 6376): the result of every signature of a message, summed up as symbols.

use mail_auth::dkim::DkimError;
use mail_auth::{DkimOutput, DkimResult};

/// The verdict on one DKIM signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimVerdict {
    /// The signature verifies.
    Pass,
    /// The signature does not verify (bad body hash, bad signature, revoked or expired).
    Fail,
    /// The signature could not be interpreted, or its key record is broken.
    PermError,
    /// The key could not be fetched (DNS trouble or the stage deadline).
    TempError,
    /// The signature was ignored (e.g. `i=` outside `d=`).
    Neutral,
    /// The signature is of a form this gateway does not accept: an `l=` body length,
    /// which lets anyone append to a signed body (RFC 6376 §8.2). It proves nothing, and
    /// counts as if the message were unsigned: neither valid nor broken, since legitimate
    /// senders (mailing lists, older signers) still add it.
    Policy,
}

impl DkimVerdict {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimVerdict::Pass => "pass",
            DkimVerdict::Fail => "fail",
            DkimVerdict::PermError => "permerror",
            DkimVerdict::TempError => "temperror",
            DkimVerdict::Neutral => "neutral",
            DkimVerdict::Policy => "policy",
        }
    }
}

/// One signature's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimSignatureResult {
    /// The verdict.
    pub verdict: DkimVerdict,
    /// The signing domain (`d=`, lower case; empty when the signature did not parse).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// The reason, for logs (empty on a pass).
    pub reason: String,
}

/// Every DKIM signature of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkimCheck {
    /// One entry per `DKIM-Signature` header verified: those that can align with the From
    /// domain first, each kind in header order.
    pub signatures: Vec<DkimSignatureResult>,
    /// The RFC 5322 From domain (lower case; empty when there is none or several).
    pub from_domain: String,
    /// Verification did not finish within the stage deadline.
    pub timed_out: bool,
}

impl DkimCheck {
    pub(crate) fn from_outputs(outputs: &[DkimOutput<'_>], from_domain: &str) -> DkimCheck {
        let signatures = outputs
            .iter()
            .map(|output| {
                let (verdict, reason) = match output.result() {
                    DkimResult::Pass => (DkimVerdict::Pass, String::new()),
                    DkimResult::Fail(e) => (DkimVerdict::Fail, e.to_string()),
                    DkimResult::PermError(e) => (DkimVerdict::PermError, e.to_string()),
                    DkimResult::TempError(e) => (DkimVerdict::TempError, e.to_string()),
                    // mail-auth refuses `l=` (as it should), and reported it as a broken
                    // signature: `DKIM_INVALID` for a list's legitimate mail (review).
                    DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::SignatureLength)) => (
                        DkimVerdict::Policy,
                        "body length limit l= not accepted".to_owned(),
                    ),
                    DkimResult::Neutral(e) => (DkimVerdict::Neutral, e.to_string()),
                    DkimResult::None => (DkimVerdict::Neutral, "no signature".to_owned()),
                };
                let (domain, selector) = output
                    .signature()
                    .map(|s| (s.d.to_ascii_lowercase(), s.s.clone()))
                    .unwrap_or_default();
                DkimSignatureResult {
                    verdict,
                    domain,
                    selector,
                    reason,
                }
            })
            .collect();
        DkimCheck {
            signatures,
            from_domain: from_domain.to_owned(),
            timed_out: false,
        }
    }

    /// At least one signature verifies.
    pub fn valid(&self) -> bool {
        self.signatures
            .iter()
            .any(|s| s.verdict == DkimVerdict::Pass)
    }

    /// A verifying signature's `d=` aligns with the From domain: equal, or the same
    /// organizational domain by the public suffix list (relaxed alignment, [`aligned`]).
    pub fn valid_author(&self) -> bool {
        !self.from_domain.is_empty()
            && self
                .signatures
                .iter()
                .any(|s| s.verdict == DkimVerdict::Pass && aligned(&s.domain, &self.from_domain))
    }

    /// The symbols: `DKIM_NONE` (unsigned, or signed only in a form not accepted:
    /// [`DkimVerdict::Policy`]), `DKIM_VALID` (+ `DKIM_VALID_AU`) when a
    /// signature verifies, otherwise `DKIM_TEMPERROR` when a key could not be fetched and
    /// `DKIM_INVALID` when a signature is broken. A verification that ran out of time adds
    /// `DKIM_TEMPERROR` to what the signatures verified in time found: slow keys of other
    /// domains must neither hide a broken signature nor take an aligned pass away.
    pub fn symbols(&self) -> Vec<&'static str> {
        let only_refused = self
            .signatures
            .iter()
            .all(|s| s.verdict == DkimVerdict::Policy);
        if only_refused {
            return vec![if self.timed_out {
                "DKIM_TEMPERROR"
            } else {
                "DKIM_NONE"
            }];
        }
        let mut symbols = Vec::new();
        let has = |v: DkimVerdict| self.signatures.iter().any(|s| s.verdict == v);
        let valid = self.valid();
        if valid {
            symbols.push("DKIM_VALID");
            if self.valid_author() {
                symbols.push("DKIM_VALID_AU");
            }
        }
        if self.timed_out || (!valid && has(DkimVerdict::TempError)) {
            symbols.push("DKIM_TEMPERROR");
        }
        if !valid
            && (has(DkimVerdict::Fail) || has(DkimVerdict::PermError) || has(DkimVerdict::Neutral))
        {
            symbols.push("DKIM_INVALID");
        }
        symbols
    }
}

/// Relaxed alignment (RFC 7489 §3.1.1): equal, or the same organizational domain by the
/// public suffix list. Without the list, `user.dyndns.org` (whose owner publishes its own
/// DKIM key) would align with mail From `dyndns.org` and every other user's subdomain.
/// Domains are compared in their A-label form: an SMTPUTF8 sender's MAIL FROM domain
/// arrives in Unicode while the author domain is normalised to A-labels (review: the SPF
/// pass of `bücher.test` never aligned with `xn--bcher-kva.test`, and its own mail got 550).
pub(crate) fn aligned(a: &str, b: &str) -> bool {
    let a = crate::mail::address::comparable_domain(a);
    let b = crate::mail::address::comparable_domain(b);
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    match (psl::domain_str(&a), psl::domain_str(&b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{aligned, DkimCheck, DkimSignatureResult, DkimVerdict};

    fn signed(verdict: DkimVerdict, domain: &str) -> DkimSignatureResult {
        DkimSignatureResult {
            verdict,
            domain: domain.into(),
            selector: "s".into(),
            reason: String::new(),
        }
    }

    /// Regression (review): when any part of the verification ran out of time the
    /// symbols were `DKIM_TEMPERROR` alone, so three signatures of a domain whose keys
    /// never answer took `DKIM_INVALID` off a broken aligned signature (and a pass's
    /// `DKIM_VALID_AU` off legitimate mail).
    #[test]
    fn a_timeout_adds_temperror_to_what_was_verified() {
        let check = |verdict| DkimCheck {
            signatures: vec![signed(verdict, "victim.test")],
            from_domain: "victim.test".into(),
            timed_out: true,
        };
        assert_eq!(
            check(DkimVerdict::Fail).symbols(),
            ["DKIM_TEMPERROR", "DKIM_INVALID"]
        );
        assert_eq!(
            check(DkimVerdict::Pass).symbols(),
            ["DKIM_VALID", "DKIM_VALID_AU", "DKIM_TEMPERROR"]
        );
        let nothing = DkimCheck {
            timed_out: true,
            ..DkimCheck::default()
        };
        assert_eq!(nothing.symbols(), ["DKIM_TEMPERROR"]);
        assert_eq!(DkimCheck::default().symbols(), ["DKIM_NONE"]);
    }

    #[test]
    fn alignment() {
        assert!(aligned("example.com", "Example.COM"));
        assert!(aligned("example.com", "news.example.com"));
        assert!(aligned("mail.example.com", "example.com"));
        assert!(!aligned("example.com", "badexample.com"));
        assert!(!aligned("evil.test", "example.com"));
        assert!(!aligned("", "example.com"));
        assert!(aligned("bücher.example", "xn--bcher-kva.example"));
        assert!(aligned("news.BÜCHER.example", "xn--bcher-kva.example"));
        assert!(!aligned("bucher.example", "xn--bcher-kva.example"));
        assert!(aligned("news.example.co.uk", "shop.example.co.uk"));
    }

    /// Regression (noticed two rounds ago): alignment ignored the public suffix list, so a
    /// signature by one user's subdomain of a shared suffix, whose owner controls its DNS
    /// and so its DKIM key, aligned with mail From the suffix itself.
    #[test]
    fn alignment_stops_at_the_public_suffix() {
        assert!(!aligned("attacker.dyndns.org", "dyndns.org"));
        assert!(!aligned("attacker.blogspot.com", "victim.blogspot.com"));
        assert!(!aligned("example.co.uk", "co.uk"));
        assert!(aligned("co.uk", "co.uk"));
    }

    /// Regression (review): a From domain in UTF-8 (RFC 6532) beside a signing domain of
    /// another length cut a `str` inside a character, and the content checks panicked:
    /// `451` for that message on every retry.
    #[test]
    fn alignment_of_non_ascii_names_does_not_panic() {
        assert!(!aligned("evil.test", "\u{e9}vil.test"));
        assert!(!aligned("x.test", "\u{e9}\u{e9}.x.tes"));
        assert!(aligned("\u{e9}.example.test", "example.test"));
    }
}
