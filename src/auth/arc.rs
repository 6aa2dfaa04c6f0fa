//! ARC (RFC 8617): validation of the chain of custody added by intermediaries.

use mail_auth::{ArcOutput, DkimResult};

/// The verdict on a message's ARC chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArcVerdict {
    /// The chain validates.
    Pass,
    /// The chain is broken, malformed or does not verify.
    Fail,
    /// No ARC headers.
    None,
    /// A key could not be fetched (DNS trouble or the stage deadline).
    TempError,
}

impl ArcVerdict {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            ArcVerdict::Pass => "pass",
            ArcVerdict::Fail => "fail",
            ArcVerdict::None => "none",
            ArcVerdict::TempError => "temperror",
        }
    }
}

/// The ARC result of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcCheck {
    /// The verdict.
    pub verdict: ArcVerdict,
    /// ARC sets in the chain.
    pub sets: usize,
    /// Why it failed, for logs (empty otherwise).
    pub reason: String,
}

impl Default for ArcCheck {
    fn default() -> Self {
        ArcCheck {
            verdict: ArcVerdict::None,
            sets: 0,
            reason: String::new(),
        }
    }
}

impl ArcCheck {
    pub(crate) fn from_output(output: &ArcOutput<'_>) -> ArcCheck {
        let (verdict, reason) = match output.result() {
            DkimResult::Pass => (ArcVerdict::Pass, String::new()),
            DkimResult::None => (ArcVerdict::None, String::new()),
            DkimResult::TempError(e) => (ArcVerdict::TempError, e.to_string()),
            DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e) => {
                (ArcVerdict::Fail, e.to_string())
            }
        };
        ArcCheck {
            verdict,
            sets: output.sets().len(),
            reason,
        }
    }

    /// A chain not verified, for `reason`, and its `Authentication-Results` text (`fail`:
    /// RFC 8617 has no `permerror`).
    pub(crate) fn refused(
        sets: usize,
        reason: String,
        client: std::net::IpAddr,
    ) -> (ArcCheck, String) {
        let ip = match client {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("\"{v6}\""),
        };
        let text = format!(";\r\n\tarc=fail ({reason}) smtp.remote-ip={ip}");
        let check = ArcCheck {
            verdict: ArcVerdict::Fail,
            sets,
            reason,
        };
        (check, text)
    }

    pub(crate) fn timed_out() -> ArcCheck {
        ArcCheck {
            verdict: ArcVerdict::TempError,
            sets: 0,
            reason: "stage deadline".to_owned(),
        }
    }

    /// The symbol: `ARC_PASS`, `ARC_FAIL`, `ARC_NONE` or `ARC_TEMPERROR`.
    pub fn symbol(&self) -> &'static str {
        match self.verdict {
            ArcVerdict::Pass => "ARC_PASS",
            ArcVerdict::Fail => "ARC_FAIL",
            ArcVerdict::None => "ARC_NONE",
            ArcVerdict::TempError => "ARC_TEMPERROR",
        }
    }
}
