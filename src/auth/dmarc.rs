//! DMARC (RFC 7489 / RFC 9989): identifier alignment of SPF and DKIM with the From domain,
//! and the policy the domain publishes.

use mail_auth::dmarc::Policy;
use mail_auth::{DmarcOutput, DmarcResult};

/// The DMARC verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcVerdict {
    /// An aligned SPF or DKIM pass.
    Pass,
    /// The domain publishes DMARC and nothing aligned passed.
    Fail,
    /// No DMARC record (or no single From domain).
    None,
    /// A DNS error (or the stage deadline) prevented a verdict.
    TempError,
    /// The record could not be interpreted.
    PermError,
}

impl DmarcVerdict {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcVerdict::Pass => "pass",
            DmarcVerdict::Fail => "fail",
            DmarcVerdict::None => "none",
            DmarcVerdict::TempError => "temperror",
            DmarcVerdict::PermError => "permerror",
        }
    }
}

/// The policy the From domain asks for on failure (after `sp=`/`np=` for subdomains and the
/// one-level downgrade of `t=y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `p=none` (or no policy).
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

impl DmarcPolicy {
    /// As `policy.dmarc=` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The DMARC result of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCheck {
    /// The verdict.
    pub verdict: DmarcVerdict,
    /// The RFC 5322 From domain evaluated (empty when there was none).
    pub domain: String,
    /// The published policy.
    pub policy: DmarcPolicy,
    /// Verification did not finish within the stage deadline.
    pub timed_out: bool,
    /// A failure under `reject` because the author domain could not be evaluated at all
    /// (no DNS name, past the number of author domains judged), not because it published
    /// that policy.
    pub unjudged: bool,
}

impl Default for DmarcCheck {
    fn default() -> Self {
        DmarcCheck {
            verdict: DmarcVerdict::None,
            domain: String::new(),
            policy: DmarcPolicy::None,
            timed_out: false,
            unjudged: false,
        }
    }
}

impl DmarcCheck {
    pub(crate) fn from_output(output: &DmarcOutput) -> DmarcCheck {
        let verdict = match output.result() {
            DmarcResult::Pass => DmarcVerdict::Pass,
            DmarcResult::Fail(_) => DmarcVerdict::Fail,
            DmarcResult::TempError(_) => DmarcVerdict::TempError,
            DmarcResult::PermError(_) => DmarcVerdict::PermError,
            DmarcResult::None => DmarcVerdict::None,
        };
        let policy = match output.policy() {
            Policy::Reject => DmarcPolicy::Reject,
            Policy::Quarantine => DmarcPolicy::Quarantine,
            Policy::None | Policy::Unspecified => DmarcPolicy::None,
        };
        DmarcCheck {
            verdict,
            domain: output.domain().to_owned(),
            policy,
            ..DmarcCheck::default()
        }
    }

    pub(crate) fn timed_out(domain: &str) -> DmarcCheck {
        DmarcCheck {
            verdict: DmarcVerdict::TempError,
            domain: domain.to_owned(),
            policy: DmarcPolicy::None,
            timed_out: true,
            unjudged: false,
        }
    }

    /// DMARC failed and the domain's policy is `reject`: the policy should answer 550 at end
    /// of DATA unless configured otherwise.
    pub fn reject_requested(&self) -> bool {
        self.verdict == DmarcVerdict::Fail && self.policy == DmarcPolicy::Reject
    }

    /// DMARC failed and the domain's policy is `quarantine`.
    pub fn quarantine_requested(&self) -> bool {
        self.verdict == DmarcVerdict::Fail && self.policy == DmarcPolicy::Quarantine
    }

    /// The symbols: `DMARC_PASS`, `DMARC_NONE`, `DMARC_TEMPERROR`, `DMARC_PERMERROR`, or
    /// `DMARC_FAIL` with one of `DMARC_POLICY_REJECT`, `DMARC_POLICY_QUARANTINE`,
    /// `DMARC_POLICY_NONE`.
    pub fn symbols(&self) -> Vec<&'static str> {
        match self.verdict {
            DmarcVerdict::Pass => vec!["DMARC_PASS"],
            DmarcVerdict::None => vec!["DMARC_NONE"],
            DmarcVerdict::TempError => vec!["DMARC_TEMPERROR"],
            DmarcVerdict::PermError => vec!["DMARC_PERMERROR"],
            DmarcVerdict::Fail => vec![
                "DMARC_FAIL",
                match self.policy {
                    DmarcPolicy::Reject => "DMARC_POLICY_REJECT",
                    DmarcPolicy::Quarantine => "DMARC_POLICY_QUARANTINE",
                    DmarcPolicy::None => "DMARC_POLICY_NONE",
                },
            ],
        }
    }
}
