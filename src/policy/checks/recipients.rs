//! Recipient verification at RCPT on every gateway: static lists first, then a callout to
//! the internal server. Unknown → 550 5.1.1; cannot tell → 450 4.4.3 (never accept and
//! bounce later: that is backscatter).

use crate::config::Config;
use crate::mail::address::Address;
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;
use std::sync::Arc;

/// What verification concluded about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The recipient exists (or verification is not configured for its domain).
    Known,
    /// The recipient does not exist; the text says who said so.
    Unknown(String),
    /// Nobody could tell right now.
    Unavailable(String),
}

/// Asks the internal server whether a recipient exists (the relay's callout implements
/// it; the policy only knows this trait, so it never depends on the relay).
#[async_trait]
pub trait RecipientProbe: Send + Sync + std::fmt::Debug {
    /// Verifies `local@domain` with the internal servers of `config` (the asking
    /// session's snapshot).
    async fn probe(&self, address: &str, config: &Arc<Config>) -> Verification;
}

/// Settles recipients from static lists and, when enabled, callouts.
#[derive(Debug)]
pub struct RecipientVerifier {
    config: Arc<Config>,
    callout: Option<Arc<dyn RecipientProbe>>,
}

impl RecipientVerifier {
    /// Builds the verifier of a configuration; `callout` is used when it enables callouts.
    pub fn new(config: Arc<Config>, callout: Option<Arc<dyn RecipientProbe>>) -> RecipientVerifier {
        let callout = callout.filter(|_| config.relay.recipients.callout);
        RecipientVerifier { config, callout }
    }

    /// Verifies `rcpt`.
    ///
    /// A listed recipient is known without asking anyone. An unlisted one is asked of the
    /// internal server when callouts are on, else unknown. A domain without a list is
    /// verified by callout, or accepted when callouts are off.
    pub async fn verify(&self, rcpt: &Address) -> Verification {
        let list = self.config.relay.recipients.lists.get(&rcpt.domain);
        if list.is_some_and(|l| l.contains(&rcpt.local)) {
            return Verification::Known;
        }
        match (&self.callout, list) {
            // The probe names the recipient as a path, quoted where its local part needs
            // it: `"john smith"@example.test`, not a syntax error for the internal server.
            (Some(callout), _) => callout.probe(&rcpt.to_path(), &self.config).await,
            // Every domain we relay must take `postmaster` (RFC 5321 §4.5.1): a list that
            // leaves it out refused mail about mail problems, the reports most wanted
            // (review). The internal server, when asked, says for itself.
            (None, Some(_)) if rcpt.local.eq_ignore_ascii_case("postmaster") => Verification::Known,
            (None, Some(_)) => Verification::Unknown("not in the recipient list".into()),
            (None, None) => Verification::Known,
        }
    }
}

/// The RCPT-stage check around [`RecipientVerifier`].
#[derive(Debug)]
pub struct VerifyRecipient {
    verifier: Arc<RecipientVerifier>,
}

impl VerifyRecipient {
    /// Wraps a shared verifier.
    pub fn new(verifier: Arc<RecipientVerifier>) -> VerifyRecipient {
        VerifyRecipient { verifier }
    }
}

#[async_trait]
impl Check for VerifyRecipient {
    fn name(&self) -> &'static str {
        "verify_recipient"
    }

    fn stage(&self) -> Stage {
        Stage::Rcpt
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let Some(rcpt) = &ctx.rcpt else {
            return Decision::Continue;
        };
        let path = rcpt.to_path();
        match self.verifier.verify(rcpt).await {
            Verification::Known => Decision::Continue,
            Verification::Unknown(why) => {
                tracing::debug!(rcpt = path.as_str(), reason = %why, "unknown recipient");
                ctx.hit("RCPT_UNKNOWN", 0.0);
                Decision::Reject(Reply::new(
                    550,
                    "5.1.1",
                    format!("<{path}>: Recipient address rejected: user unknown"),
                ))
            }
            Verification::Unavailable(why) => {
                tracing::info!(rcpt = path.as_str(), reason = %why, "recipient verification unavailable");
                ctx.hit("RCPT_VERIFY_UNAVAILABLE", 0.0);
                Decision::Tempfail(Reply::new(
                    450,
                    "4.4.3",
                    format!("<{path}>: Recipient verification unavailable, try again later"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn recipients_config(list: &str) -> Arc<Config> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list");
        std::fs::write(&file, list).unwrap();
        let text = format!(
            "[relay]\ndomains=[\"example.test\",\"other.test\"]\ninternal=[\"127.0.0.1:2526\"]\n[relay.recipients]\nlists={{\"example.test\"={:?}}}\n",
            file.display().to_string()
        );
        Arc::new(Config::from_toml(Path::new("t.toml"), &text).unwrap())
    }

    fn rcpt(address: &str) -> Address {
        crate::mail::address::parse_path(address).unwrap()
    }

    #[tokio::test]
    async fn list_decides_for_its_domain_and_others_pass_without_callout() {
        let v = RecipientVerifier::new(recipients_config("alice\nsales-*\n"), None);
        assert_eq!(
            v.verify(&rcpt("Alice@example.test")).await,
            Verification::Known
        );
        assert_eq!(
            v.verify(&rcpt("sales-eu@example.test")).await,
            Verification::Known
        );
        assert!(matches!(
            v.verify(&rcpt("bob@example.test")).await,
            Verification::Unknown(_)
        ));
        assert_eq!(v.verify(&rcpt("bob@other.test")).await, Verification::Known);
        // Regression (review): a list without `postmaster` refused it (RFC 5321 §4.5.1).
        assert_eq!(
            v.verify(&rcpt("PostMaster@example.test")).await,
            Verification::Known
        );
        assert!(matches!(
            v.verify(&rcpt("postmaster2@example.test")).await,
            Verification::Unknown(_)
        ));
    }

    /// Regression (review): the callout probed `local@domain` rebuilt without quotes, so
    /// `"john smith"@example.test` became `RCPT TO:<john smith@example.test>`, a syntax
    /// error answered 5xx and cached: a valid recipient got `550 5.1.1`.
    #[tokio::test]
    async fn a_quoted_local_part_is_probed_quoted() {
        #[derive(Debug, Default)]
        struct Recording(std::sync::Mutex<Vec<String>>);
        #[async_trait]
        impl RecipientProbe for Recording {
            async fn probe(&self, address: &str, _: &Arc<Config>) -> Verification {
                self.0.lock().unwrap().push(address.to_owned());
                Verification::Known
            }
        }
        let text = "[relay]\ndomains=[\"example.test\"]\ninternal=[\"127.0.0.1:2526\"]\n[relay.recipients]\ncallout=true\n";
        let config = Arc::new(Config::from_toml(Path::new("t.toml"), text).unwrap());
        let probe = Arc::new(Recording::default());
        let v = RecipientVerifier::new(config, Some(probe.clone()));
        v.verify(&rcpt("\"john smith\"@example.test")).await;
        assert_eq!(
            probe.0.lock().unwrap().as_slice(),
            ["\"john smith\"@example.test".to_string()]
        );
    }
}
