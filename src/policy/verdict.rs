//! What a policy answers: decisions at each stage (carrying the SMTP reply) and the
//! final verdict on a message.

use super::{headers, Context, Policy};
use crate::config::{PolicyConfig, RuleAction, Thresholds};
use crate::mail::Reply;
use std::fmt;

/// What the session does after a stage was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go on with the protocol.
    Continue,
    /// Refuse permanently with this (5xx) reply.
    Reject(Reply),
    /// Refuse temporarily with this (4xx) reply.
    Tempfail(Reply),
    /// Accept the message but drop it silently (end of data only).
    Discard,
}

/// The judgement on a whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Clean: relay unchanged.
    Accept,
    /// Relay with spam headers.
    Tag,
    /// Keep in the quarantine area.
    Quarantine,
    /// Refused in-session with 5xx.
    Reject,
    /// Refused in-session with 4xx.
    Tempfail,
    /// Accepted and dropped.
    Discard,
}

impl Verdict {
    /// Lower-case name used in logs, metrics and `scan --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Tag => "tag",
            Verdict::Quarantine => "quarantine",
            Verdict::Reject => "reject",
            Verdict::Tempfail => "tempfail",
            Verdict::Discard => "discard",
        }
    }
}

impl Verdict {
    /// The verdict a tier peer's stamp stands for. Only mail a member relays is stamped,
    /// so only `accept`, `tag` and `quarantine` are: any other (a stamp from a member with
    /// a bug, or made with a leaked key) is no verdict to keep, and was kept as `accept`.
    pub fn of_peer_stamp(stamped: &str) -> Option<Verdict> {
        match stamped {
            "accept" => Some(Verdict::Accept),
            "tag" => Some(Verdict::Tag),
            "quarantine" => Some(Verdict::Quarantine),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Policy {
    /// Thresholds that apply to this transaction: the strictest among its recipients'
    /// domains (a message is judged once for all of them).
    /// A recipient in a domain without thresholds of its own has the defaults; a domain's
    /// may be more lenient than the defaults as well as stricter.
    pub fn thresholds(&self, ctx: &Context) -> Thresholds {
        self.config
            .policy
            .thresholds_for(ctx.recipients.iter().map(|r| r.domain.as_str()))
    }

    /// Turns the end-of-data decision and the symbols into the verdict, with the reply
    /// for verdicts refused in-session.
    pub fn conclude(&self, decision: Decision, ctx: &Context) -> (Verdict, Option<Reply>) {
        match decision {
            Decision::Reject(r) => return (Verdict::Reject, Some(r)),
            Decision::Tempfail(r) => return (Verdict::Tempfail, Some(r)),
            Decision::Discard => return (Verdict::Discard, None),
            Decision::Continue => {}
        }
        // A peer of the tier judged it already: its verdict stands (a stamp carrying no
        // verdict a member stamps is not trusted in the first place).
        let stamped = ctx.peer_stamp.as_ref();
        if let Some(verdict) = stamped.and_then(|s| Verdict::of_peer_stamp(&s.verdict)) {
            return (verdict, None);
        }
        // Judged again without the client's evidence (a peer's relay skips the client
        // checks), a message a backup tagged for its DNS listings and held past
        // `stamp_max_age` came out clean (review): the stamped verdict is a floor.
        match (judged(&self.config.policy, ctx), ctx.floor) {
            ((Verdict::Accept, _), Some(floor @ (Verdict::Tag | Verdict::Quarantine)))
            | ((Verdict::Tag, _), Some(floor @ Verdict::Quarantine)) => (floor, None),
            // Quarantine ranks above discard (review: a message a backup quarantined was
            // dropped by a rule's `discard` action here, and nobody could release it).
            ((Verdict::Discard, _), Some(Verdict::Quarantine)) => (Verdict::Quarantine, None),
            (judgement, _) => judgement,
        }
    }

    /// Headers to prepend to a message accepted with `verdict`.
    pub fn verdict_headers(&self, ctx: &Context, verdict: Verdict) -> String {
        if ctx.peer_stamp.is_some() {
            // The peer's headers and stamp came with the message and stay as they are.
            return String::new();
        }
        let mut h = String::new();
        // With no authentication run (switched off, no resolver) the header still says so
        // (`HOST; none`, RFC 8601), where a missing one would leave the internal server to
        // guess. In a tier the results carry the member's tier name, the one every peer
        // removes from incoming mail: under a host name set apart from it, a sender's
        // forged `dmarc=pass` naming that host passed the other members (review).
        let host = match &self.config.tier {
            Some(tier) => &tier.name,
            None => &self.config.server.hostname,
        };
        h.push_str(&match &ctx.auth {
            Some(auth) => auth.authentication_results_header(host),
            None => {
                crate::auth::AuthOutcome::new(ctx.client.ip).authentication_results_header(host)
            }
        });
        h.push_str(&headers::verdict_headers(
            ctx,
            verdict,
            &self.thresholds(ctx),
        ));
        if let Some(t) = &self.config.tier {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let stamp = crate::tier::Stamp::new(
                &t.name,
                now,
                verdict.as_str(),
                ctx.score(),
                &self.fingerprint,
            );
            // A big message is mapped from its spool file for the body hash.
            // Hashing a big body holds the thread a while: off the session threads.
            match ctx.message.raw() {
                Ok(raw) => h.push_str(&crate::runtime::off_the_session_threads(raw.len(), || {
                    stamp.header(t.secret.bytes(), &raw)
                })),
                Err(e) => tracing::error!(error = %e, "cannot map the message to stamp it"),
            }
        }
        h
    }
}

/// The verdict the rules and the score give a message, with the reply for a refusal:
/// what [`Policy::conclude`] decides once no check decided, and what a check that must
/// know whether the message will be refused anyway asks (data-stage greylisting). A rule
/// with a configured action decides over tag and accept (the harshest action wins), but
/// never softens what the score earns: reject > tempfail > quarantine > discard (review:
/// a `quarantine`, `discard` or `tempfail` rule hit by GTUBE turned its 550 into a 250 or
/// endless retries).
pub(crate) fn judged(policy: &PolicyConfig, ctx: &Context) -> (Verdict, Option<Reply>) {
    let by_score = judged_by_score(policy, ctx);
    let actions = &policy.actions;
    let demanded = ctx
        .symbols
        .iter()
        .filter_map(|s| actions.get(&s.name).map(|a| (*a, s.name.as_str())))
        .max_by_key(|(a, _)| action_rank(*a));
    let Some((action, rule)) = demanded else {
        return by_score;
    };
    let score_rank = match by_score.0 {
        Verdict::Reject => action_rank(RuleAction::Reject),
        Verdict::Quarantine => action_rank(RuleAction::Quarantine),
        _ => 0,
    };
    if score_rank > action_rank(action) {
        return by_score;
    }
    match action {
        RuleAction::Reject => (
            Verdict::Reject,
            Some(Reply::new(
                550,
                "5.7.1",
                format!("Message rejected by policy ({rule})"),
            )),
        ),
        RuleAction::Tempfail => (
            Verdict::Tempfail,
            Some(Reply::new(
                451,
                "4.7.1",
                format!("Message deferred by policy ({rule}), try again later"),
            )),
        ),
        RuleAction::Quarantine => (Verdict::Quarantine, None),
        RuleAction::Discard => (Verdict::Discard, None),
    }
}

/// How harsh a rule's action is; the harsher decides (discard, the mildest, still outranks
/// tag and accept).
fn action_rank(action: RuleAction) -> u8 {
    match action {
        RuleAction::Reject => 4,
        RuleAction::Tempfail => 3,
        RuleAction::Quarantine => 2,
        RuleAction::Discard => 1,
    }
}

/// The verdict of the score alone, at the thresholds of the recipients' domains.
fn judged_by_score(policy: &PolicyConfig, ctx: &Context) -> (Verdict, Option<Reply>) {
    let score = ctx.score();
    let t = policy.thresholds_for(ctx.recipients.iter().map(|r| r.domain.as_str()));
    if score >= t.reject {
        let reply = Reply::new(
            550,
            "5.7.1",
            format!("Message rejected as spam (score {score:.1})"),
        );
        (Verdict::Reject, Some(reply))
    } else if score >= t.quarantine {
        (Verdict::Quarantine, None)
    } else if score >= t.tag {
        (Verdict::Tag, None)
    } else {
        (Verdict::Accept, None)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::policy::{ClientInfo, Context, Policy, Services, Verdict};
    use std::path::Path;
    use std::sync::Arc;

    /// Regression (review): a stale peer stamp's `quarantine` floor lifted only accept
    /// and tag, so a rule's `discard` action dropped a message a backup had quarantined.
    #[test]
    fn a_quarantine_floor_outranks_a_discard() {
        let text = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
                    [policy.actions]\nDROP_ME = \"discard\"\n";
        let config = Config::from_toml(Path::new("t.toml"), text).unwrap();
        let policy = Policy::build(Arc::new(config), &Services::default()).unwrap();
        let mut ctx = Context::new(ClientInfo::new([192, 0, 2, 1].into()));
        ctx.hit("DROP_ME", 0.0);
        assert_eq!(
            policy.conclude(crate::policy::Decision::Continue, &ctx).0,
            Verdict::Discard
        );
        ctx.floor = Some(Verdict::Quarantine);
        assert_eq!(
            policy.conclude(crate::policy::Decision::Continue, &ctx).0,
            Verdict::Quarantine
        );
    }

    /// Regression (review against GUIDE): with no authentication run (no resolver, or
    /// switched off) and no rule scored, relayed mail carried neither
    /// `Authentication-Results` nor `X-Spam-Rules`.
    #[test]
    fn relayed_mail_always_carries_results_and_rules() {
        let text = "[server]\nhostname = \"mx.a.test\"\n\
                    [relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let config = Arc::new(Config::from_toml(Path::new("t.toml"), text).unwrap());
        let policy = Policy::build(config, &Services::default()).unwrap();
        let ctx = Context::new(ClientInfo::new([192, 0, 2, 1].into()));
        let h = policy.verdict_headers(&ctx, Verdict::Accept);
        assert!(
            h.starts_with("Authentication-Results: mx.a.test; none\r\n"),
            "{h}"
        );
        assert!(h.contains("X-Spam-Rules: none\r\n"), "{h}");
    }

    /// Regression (review): a member wrote its results under `server.hostname` while its
    /// peers removed only results naming the members' tier names: with the two set apart
    /// (`tier.name = "bk1.example.test"` on host `host-17.dc1.internal`), a sender's
    /// `Authentication-Results: host-17.dc1.internal; dmarc=pass` passed gw1 untouched.
    #[test]
    fn in_a_tier_results_carry_the_member_name() {
        let text = "[server]\nhostname = \"host-17.dc1.internal\"\n\
                    [relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let mut config = Config::from_toml(Path::new("t.toml"), text).unwrap();
        config.tier = Some(crate::config::TierConfig::for_test(
            "bk1.example.test",
            crate::config::Role::Backup,
            &[("gw1.example.test", crate::config::Role::Primary)],
        ));
        let policy = Policy::build(Arc::new(config), &Services::default()).unwrap();
        let ctx = Context::new(ClientInfo::new([192, 0, 2, 1].into()));
        let h = policy.verdict_headers(&ctx, Verdict::Accept);
        assert!(
            h.starts_with("Authentication-Results: bk1.example.test; none\r\n"),
            "{h}"
        );
    }

    /// Regression (review): `HELO_IS_OURS` knew only `server.hostname` and the relay
    /// domains, so a client greeting with this member's public MX name or a peer's (which
    /// is known by its address and skips the check) was taken.
    #[tokio::test]
    async fn greeting_with_a_tier_members_name_is_helo_is_ours() {
        let text = "[server]\nhostname = \"host-17.dc1.internal\"\n\
                    [relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let mut config = Config::from_toml(Path::new("t.toml"), text).unwrap();
        config.tier = Some(crate::config::TierConfig::for_test(
            "bk1.example.test",
            crate::config::Role::Backup,
            &[("gw1.example.test", crate::config::Role::Primary)],
        ));
        let policy = Policy::build(Arc::new(config), &Services::default()).unwrap();
        for (helo, ours) in [
            ("bk1.example.test", true),
            ("GW1.example.test.", true),
            ("host-17.dc1.internal", true),
            ("mail.sender.test", false),
        ] {
            let mut ctx = Context::new(ClientInfo::new([192, 0, 2, 1].into()));
            ctx.client.helo = Some(helo.to_owned());
            policy.evaluate(crate::policy::Stage::Helo, &mut ctx).await;
            let hit = ctx
                .client
                .helo_symbols
                .iter()
                .chain(&ctx.symbols)
                .any(|s| s.name == "HELO_IS_OURS");
            assert_eq!(hit, ours, "{helo}");
        }
    }

    /// Regression (review): a rule with a milder action decided whatever the score, so
    /// GTUBE hitting a `quarantine`, `discard` or `tempfail` rule was stored, dropped or
    /// deferred instead of refused. An action still decides over tag and accept.
    #[test]
    fn a_milder_action_never_softens_what_the_score_earns() {
        let judge = |action: &str, gtube: bool| {
            let text = format!(
                "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n\
                 [policy.actions]\nMILD_RULE = \"{action}\"\n"
            );
            let config = Config::from_toml(Path::new("t.toml"), &text).unwrap();
            let mut ctx = Context::new(ClientInfo::new([192, 0, 2, 1].into()));
            ctx.hit("MILD_RULE", 0.1);
            if gtube {
                ctx.hit("GTUBE", 1000.0);
            }
            super::judged(&config.policy, &ctx)
        };
        for action in ["quarantine", "discard", "tempfail"] {
            let (verdict, reply) = judge(action, true);
            assert_eq!(verdict, Verdict::Reject, "{action}");
            let reply = reply.map(|r| r.to_string()).unwrap_or_default();
            assert!(reply.contains("rejected as spam"), "{action}: {reply}");
        }
        let (verdict, reply) = judge("reject", true);
        assert_eq!(verdict, Verdict::Reject);
        let reply = reply.map(|r| r.to_string()).unwrap_or_default();
        assert!(reply.contains("(MILD_RULE)"), "{reply}");
        let expected = [
            ("quarantine", Verdict::Quarantine),
            ("discard", Verdict::Discard),
            ("tempfail", Verdict::Tempfail),
            ("reject", Verdict::Reject),
        ];
        for (action, verdict) in expected {
            assert_eq!(judge(action, false).0, verdict, "{action} on a low score");
        }
    }

    #[test]
    fn only_verdicts_a_member_stamps_are_taken_from_a_stamp() {
        assert_eq!(Verdict::of_peer_stamp("accept"), Some(Verdict::Accept));
        assert_eq!(Verdict::of_peer_stamp("tag"), Some(Verdict::Tag));
        assert_eq!(
            Verdict::of_peer_stamp("quarantine"),
            Some(Verdict::Quarantine)
        );
        for other in ["reject", "tempfail", "discard", "Accept", "", "allow"] {
            assert_eq!(Verdict::of_peer_stamp(other), None, "{other:?}");
        }
    }

    /// Regression (review): a peer's valid stamp with a verdict no member stamps
    /// (`r=reject`, `r=whatever`) was kept as `accept`, and the message was not filtered.
    /// It is filtered as if it had no stamp; a stamped `tag` is still kept.
    #[tokio::test]
    async fn a_peer_stamp_with_a_verdict_no_member_stamps_is_not_trusted() {
        use crate::config::{Role, TierConfig};
        use crate::policy::Stage;
        let text = "[relay]\ndomains=[\"a.test\"]\ninternal=[\"127.0.0.1:2526\"]\n";
        let mut config = Config::from_toml(Path::new("t.toml"), text).unwrap();
        let tier = TierConfig::for_test("gw1", Role::Primary, &[("gw2", Role::Primary)]);
        let key = tier.secret.bytes().to_vec();
        config.tier = Some(tier);
        let policy = Policy::build(Arc::new(config), &Services::default()).unwrap();
        let message = b"From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let judge_aged = |verdict: &'static str, age: i64, fingerprint: &str| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let at = now.saturating_add_signed(-age);
            let stamp = crate::tier::Stamp::new("gw2", at, verdict, 9.0, fingerprint);
            let mut stamped = stamp.header(&key, message).into_bytes();
            stamped.extend_from_slice(message);
            let mut ctx = Context::new(ClientInfo::new([198, 51, 100, 1].into()));
            ctx.client.tier_peer = Some("gw2".into());
            ctx.message = stamped.into();
            let policy = &policy;
            async move {
                let decision = policy.evaluate(Stage::Data, &mut ctx).await;
                (ctx.peer_stamp.is_some(), policy.conclude(decision, &ctx).0)
            }
        };
        let ours = policy.fingerprint().to_owned();
        let judge = |verdict: &'static str| judge_aged(verdict, 0, &ours);
        assert_eq!(judge("tag").await, (true, Verdict::Tag));
        for untrusted in ["reject", "discard", "whatever"] {
            let (kept, _) = judge(untrusted).await;
            assert!(!kept, "a stamped {untrusted:?} was trusted");
        }
        // Regression (review): a stamp too old to stand, or made under another policy,
        // was thrown away whole: judged again without the client's evidence, a message
        // the backup tagged came out clean. Its verdict is a floor now.
        let old = policy.config.tier.as_ref().unwrap().stamp_max_age.as_secs() as i64 + 60;
        let fingerprint = policy.fingerprint().to_owned();
        assert_eq!(
            judge_aged("tag", old, &fingerprint).await,
            (false, Verdict::Tag)
        );
        assert_eq!(
            judge_aged("quarantine", 0, "ffffffffffffffff").await,
            (false, Verdict::Quarantine)
        );
        assert_eq!(
            judge_aged("accept", old, &fingerprint).await,
            (false, Verdict::Accept)
        );
        // Regression (review): nor one dated ahead (the peer's clock runs fast), which
        // lost its floor.
        assert_eq!(
            judge_aged("tag", -600, &fingerprint).await,
            (false, Verdict::Tag)
        );
    }
}
