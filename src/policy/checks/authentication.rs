//! Sender authentication in the pipeline: SPF (HELO and MAIL FROM) at MAIL, DKIM, DMARC and
//! ARC at end of data, all through [`crate::auth`]. Results become symbols scored in
//! `rules/17-auth.cf`; a DMARC failure of a `p=reject` domain is refused with 550 5.7.1
//! unless `policy.dmarc_reject = false`, and one of a `p=quarantine` domain is tagged at
//! least unless `policy.dmarc_quarantine = false`. The outcome also yields our
//! `Authentication-Results` header.

use crate::auth::{AuthOutcome, Authenticator};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage, Verdict};
use async_trait::async_trait;

/// SPF at MAIL FROM: the HELO and the envelope sender checked together.
#[derive(Debug)]
pub struct Spf {
    auth: Authenticator,
    hostname: String,
}

impl Spf {
    /// SPF with `auth`, naming us `hostname` in the results.
    pub fn new(auth: Authenticator, hostname: String) -> Spf {
        Spf { auth, hostname }
    }
}

#[async_trait]
impl Check for Spf {
    fn name(&self) -> &'static str {
        "spf"
    }

    fn stage(&self) -> Stage {
        Stage::Mail
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if ctx.client.tier_peer.is_some() {
            // A peer relays mail it took (a backup's backlog): SPF of the peer's own
            // address says nothing of the sender, whose SPF the peer checked on arrival,
            // and would fail every message it relays.
            return Decision::Continue;
        }
        let ip = ctx.client.ip;
        let helo = ctx.client.helo.clone().unwrap_or_default();
        let mail_from = ctx
            .mail_from
            .as_ref()
            .map(|a| a.to_path())
            .unwrap_or_default();
        let deadline = self.auth.deadline(ctx.deadline);
        let (helo_check, mail_check) = tokio::join!(
            self.auth.spf_helo(ip, &helo, &self.hostname, deadline),
            self.auth
                .spf_mail_from(ip, &helo, &mail_from, &self.hostname, deadline)
        );
        ctx.hit(helo_check.symbol(), 0.0);
        // The null sender's MAIL FROM identity is postmaster@HELO (RFC 7208 §2.4): the same
        // record and answer as the HELO check, so it is scored once, as `SPF_HELO_*` (as
        // SpamAssassin, which skips the MAIL FROM check then). Its result still goes into
        // Authentication-Results and DMARC.
        if !mail_from.is_empty() {
            ctx.hit(mail_check.symbol(), 0.0);
        }
        let mut outcome = AuthOutcome::new(ip);
        outcome.spf_helo = Some(helo_check);
        outcome.spf_mail_from = Some(mail_check);
        ctx.auth = Some(outcome);
        Decision::Continue
    }
}

/// DKIM, ARC and DMARC at end of data.
#[derive(Debug)]
pub struct MessageAuth {
    auth: Authenticator,
    dmarc_reject: bool,
    dmarc_quarantine: bool,
}

impl MessageAuth {
    /// Message authentication with `auth`; `dmarc_reject` honours `p=reject` with a
    /// refusal, `dmarc_quarantine` `p=quarantine` (and a `p=reject` not refused) with a
    /// `tag` floor.
    pub fn new(auth: Authenticator, dmarc_reject: bool, dmarc_quarantine: bool) -> MessageAuth {
        MessageAuth {
            auth,
            dmarc_reject,
            dmarc_quarantine,
        }
    }
}

#[async_trait]
impl Check for MessageAuth {
    fn name(&self) -> &'static str {
        "dkim_dmarc_arc"
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let mut outcome = ctx
            .auth
            .take()
            .unwrap_or_else(|| AuthOutcome::new(ctx.client.ip));
        let spf_symbols: Vec<&str> = [&outcome.spf_helo, &outcome.spf_mail_from]
            .iter()
            .filter_map(|c| c.as_ref().map(|c| c.symbol()))
            .collect();
        // Verified already when this is the shadow policy's judgement of a message the live
        // one judged: the answers would only be asked again, under the shadow's deadline.
        if outcome.dkim.is_none() {
            // A big message is mapped from its spool file, not read onto the heap.
            let deadline = self.auth.deadline(ctx.deadline);
            let mapped = match ctx.raw_as_received() {
                Ok(raw) => {
                    self.auth.verify_message(&raw, &mut outcome, deadline).await;
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot map the message for DKIM/ARC");
                    false
                }
            };
            if !mapped {
                // Verified as an empty message, a `p=reject` forgery read as DMARC `none`
                // and went through (review): the sender tries again instead.
                ctx.auth = Some(outcome);
                return Decision::Tempfail(Reply::new(
                    451,
                    "4.3.0",
                    "Temporary local problem, try again later",
                ));
            }
        }
        if ctx.client.tier_peer.is_some() && outcome.spf_mail_from.is_none() {
            // A peer's relay: the sender's SPF was checked at the peer (see `Spf`), so a
            // domain's mail that passed DMARC by SPF alone would fail it here, scoring
            // `DMARC_FAIL` and its policy (6 points, over `tag`) on mail that passed.
            outcome.leave_dmarc_unjudged_unless_passed();
        }
        for symbol in outcome.symbols() {
            // SPF symbols were recorded at MAIL already.
            if !spf_symbols.contains(&symbol) {
                ctx.hit(symbol, 0.0);
            }
        }
        // A trusted client is our own (the internal server's DSNs from MAILER-DAEMON of a
        // `p=reject` domain, unsigned): judged on content, never refused for DMARC. Nor is
        // a peer's relay: without the sender's SPF (see `Spf`), a domain's mail that passed
        // DMARC by SPF alone at the peer would fail it here and be bounced.
        let judged_here = !ctx.client.trusted && ctx.client.tier_peer.is_none();
        let reject = self.dmarc_reject && outcome.dmarc_reject_requested() && judged_here;
        // A `p=reject` domain's mail DMARC could not judge for a temporary failure is
        // deferred, unless our own resolver is down (then it is taken as before, scored):
        // a sender can force such a failure through a macro of the domain's SPF record.
        let defer = self.dmarc_reject
            && outcome.dmarc_deferral_requested()
            && judged_here
            && !self.auth.dns_is_down();
        // The domain asks that its failing mail be treated as suspicious (RFC 7489 §6.3):
        // a score alone fell under `tag` with the forger's own SPF pass and DKIM
        // signature, which cost nothing (review).
        if self.dmarc_quarantine
            && judged_here
            && (outcome.dmarc_quarantine_requested() || outcome.dmarc_reject_requested())
        {
            ctx.raise_floor(Verdict::Tag);
        }
        // An author domain DMARC cannot evaluate published no policy: the reply says what
        // refused the message (review: "the sender domain's policy is reject" misled the
        // sender of an announcement from five organisations).
        let unjudged = outcome.dmarc.as_ref().is_some_and(|d| d.unjudged);
        ctx.auth = Some(outcome);
        if reject {
            let text = if unjudged {
                "Message rejected: an author domain of the From field cannot be checked by DMARC"
            } else {
                "Message rejected: DMARC policy of the sender domain is reject"
            };
            return Decision::Reject(Reply::new(550, "5.7.1", text));
        }
        if defer {
            return Decision::Tempfail(Reply::new(
                451,
                "4.7.1",
                "DMARC of the sender domain (policy reject) cannot be checked now, try again later",
            ));
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::DkimCheck;
    use crate::dns::testing::TestDns;
    use crate::policy::ClientInfo;

    /// Regression (review): the shadow policy verified DKIM again on its copy of the
    /// message, which for a message kept on disk is its header and sample: the body hash
    /// failed, the shadow scored `DKIM_INVALID` (and `DMARC_FAIL`, a reject for `p=reject`
    /// domains) and logged disagreements that were none.
    #[tokio::test]
    async fn a_message_verified_already_is_not_verified_again() {
        let server = TestDns::builder().start().await.unwrap();
        let dns = server.resolver().unwrap();
        let check = MessageAuth::new(Authenticator::new(&dns).unwrap(), true, true);
        let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
        ctx.message = b"From: a@sender.test\r\nSubject: hi\r\n\r\nbody\r\n"
            .to_vec()
            .into();
        let mut live = AuthOutcome::new(ctx.client.ip);
        // What the live judgement found on the whole message.
        live.dkim = Some(DkimCheck {
            signatures: Vec::new(),
            from_domain: "sender.test".into(),
            timed_out: true,
        });
        ctx.auth = Some(live);
        check.run(&mut ctx).await;
        let names: Vec<&str> = ctx.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"DKIM_TEMPERROR"), "{names:?}");
        assert!(!names.contains(&"DKIM_NONE"), "verified again: {names:?}");
    }

    /// Regression (review): an author domain DMARC cannot evaluate (no DNS name) fails under
    /// `reject`, and the refusal said the sender domain's policy is reject, which it never
    /// published.
    #[tokio::test]
    async fn an_unjudged_author_domain_is_refused_for_what_it_is() {
        let server = TestDns::builder()
            .txt("_dmarc.victim.test", "v=DMARC1; p=reject")
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let check = MessageAuth::new(Authenticator::new(&dns).unwrap(), true, true);
        let refusal = |from: &'static str| {
            let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
            ctx.message = format!("From: {from}\r\nSubject: hi\r\n\r\nbody\r\n")
                .into_bytes()
                .into();
            let check = &check;
            async move {
                match check.run(&mut ctx).await {
                    Decision::Reject(r) => r.to_string(),
                    other => panic!("{from}: {other:?}"),
                }
            }
        };
        let unjudged = refusal("ceo@victim..test").await;
        assert!(unjudged.contains("cannot be checked"), "{unjudged}");
        let published = refusal("ceo@victim.test").await;
        assert!(
            published.contains("policy of the sender domain is reject"),
            "{published}"
        );
    }

    /// Regression (review helper): the forgery of a `p=reject` domain that a sender-chosen
    /// name in its SPF record turned into DMARC `temperror` was delivered. It is deferred
    /// (451); with the check switched off it goes on as before.
    #[tokio::test]
    async fn a_reject_domain_dmarc_could_not_judge_is_deferred() {
        let server = TestDns::builder()
            .txt("victim.test", "v=spf1 exists:%{l}.u.victim.test -all")
            .txt("_dmarc.victim.test", "v=DMARC1; p=reject")
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let auth = Authenticator::new(&dns).unwrap();
        let judge = |dmarc_reject: bool, sender: &'static str| {
            let auth = auth.clone();
            async move {
                let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
                ctx.client.helo = Some("client.x.test".into());
                ctx.mail_from = Some(crate::mail::address::parse_path(sender).unwrap());
                Spf::new(auth.clone(), "mx.test".into()).run(&mut ctx).await;
                ctx.message = b"From: ceo@victim.test\r\nSubject: hi\r\n\r\nbody\r\n"
                    .to_vec()
                    .into();
                MessageAuth::new(auth, dmarc_reject, true)
                    .run(&mut ctx)
                    .await
            }
        };
        match judge(true, "a+b@victim.test").await {
            Decision::Tempfail(r) => assert!(r.to_string().starts_with("451 4.7.1"), "{r}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(true, "plain@victim.test").await,
            Decision::Reject(_)
        ));
        assert!(matches!(
            judge(false, "a+b@victim.test").await,
            Decision::Continue
        ));
    }

    /// Regression (review): a DMARC failure under `p=quarantine` was only scored, 5.0 with
    /// `DMARC_FAIL`, exactly `tag`: the forger's own SPF pass and DKIM signature (-0.2)
    /// took it under, and it was delivered as clean. It is a `tag` floor now, also for a
    /// `p=reject` failure not refused; not for a trusted client, nor when switched off.
    #[tokio::test]
    async fn a_dmarc_failure_asking_for_quarantine_is_tagged_at_least() {
        let server = TestDns::builder()
            .txt("_dmarc.victim.test", "v=DMARC1; p=quarantine")
            .txt("_dmarc.strict.test", "v=DMARC1; p=reject")
            .txt("_dmarc.relaxed.test", "v=DMARC1; p=none")
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let auth = Authenticator::new(&dns).unwrap();
        let floor = |check: MessageAuth, from: &'static str, trusted: bool| async move {
            let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
            ctx.client.trusted = trusted;
            ctx.message = format!("From: {from}\r\nSubject: hi\r\n\r\nbody\r\n")
                .into_bytes()
                .into();
            let decision = check.run(&mut ctx).await;
            assert!(!matches!(decision, Decision::Reject(_)), "{decision:?}");
            ctx.floor
        };
        let on = || MessageAuth::new(auth.clone(), false, true);
        assert_eq!(
            floor(on(), "ceo@victim.test", false).await,
            Some(Verdict::Tag)
        );
        assert_eq!(
            floor(on(), "ceo@strict.test", false).await,
            Some(Verdict::Tag)
        );
        assert_eq!(floor(on(), "ceo@relaxed.test", false).await, None);
        assert_eq!(floor(on(), "ceo@victim.test", true).await, None);
        let off = MessageAuth::new(auth.clone(), false, false);
        assert_eq!(floor(off, "ceo@victim.test", false).await, None);
    }

    /// Regression (review): mail a peer relays without a stamp that verifies (a backup's
    /// backlog older than `stamp_max_age`) was checked for SPF against the peer's own
    /// address: `SPF_FAIL` on every message, and under `p=reject` a 550 (the backup then
    /// bounced the mail it had taken) for a domain whose mail passes DMARC by SPF.
    #[tokio::test]
    async fn a_peers_relay_is_neither_spf_checked_nor_refused_for_dmarc() {
        let server = TestDns::builder()
            .txt("_dmarc.sender.test", "v=DMARC1; p=reject")
            .txt("sender.test", "v=spf1 ip4:198.51.100.7 -all")
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let auth = Authenticator::new(&dns).unwrap();
        let spf = Spf::new(auth.clone(), "gw1.example.test".into());
        let message_auth = MessageAuth::new(auth, true, true);
        let run = |peer: Option<&str>| {
            let mut ctx = Context::new(ClientInfo::new("192.0.2.1".parse().unwrap()));
            ctx.client.tier_peer = peer.map(str::to_owned);
            ctx.client.helo = Some("bk1.example.test".into());
            ctx.mail_from = Some(crate::mail::address::parse_path("a@sender.test").unwrap());
            ctx.message = b"From: a@sender.test\r\nSubject: hi\r\n\r\nbody\r\n"
                .to_vec()
                .into();
            ctx
        };
        let mut outsider = run(None);
        spf.run(&mut outsider).await;
        let refused = message_auth.run(&mut outsider).await;
        assert!(matches!(refused, Decision::Reject(_)), "{refused:?}");
        let mut peer = run(Some("bk1"));
        spf.run(&mut peer).await;
        let names: Vec<&str> = peer.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(!names.iter().any(|n| n.starts_with("SPF_")), "{names:?}");
        assert_eq!(message_auth.run(&mut peer).await, Decision::Continue);
        // Regression (review): nor scored for a DMARC failure that only says SPF was not
        // asked here (`DMARC_FAIL` and `DMARC_POLICY_REJECT`: 6 points, over `tag`), nor
        // written as one in our header.
        let names: Vec<&str> = peer.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(!names.iter().any(|n| n.starts_with("DMARC_")), "{names:?}");
        let header = peer
            .auth
            .as_ref()
            .unwrap()
            .authentication_results_header("gw1.example.test");
        assert!(!header.contains("dmarc="), "{header}");
        let names: Vec<&str> = outsider.symbols.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"DMARC_FAIL"), "{names:?}");
    }
}
