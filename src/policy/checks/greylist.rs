//! Greylisting, counted tier-wide in the state backend: a first attempt from a client
//! network (or, when SPF passes, from the sender's domain, since large providers retry
//! from other addresses) for a sender and recipient is refused with `451 4.7.1`; a retry
//! after `delay` and within `window` passes and keeps passing for `pass_ttl`. At the data
//! stage only messages scoring `min_score` or more are delayed. Trusted and allowlisted
//! clients, DNS-allowlisted ones, `exempt` networks and (at RCPT) the null sender skip it.

use crate::auth::{Authenticator, SpfResult};
use crate::config::{network_of, GreylistConfig, GreylistStage, OnFailure};
use crate::mail::Reply;
use crate::metrics::Metrics;
use crate::policy::{Check, Context, Decision, Stage, Verdict};
use crate::state::{digest, GreylistAnswer, State, Unavailable};
use async_trait::async_trait;
use std::sync::Arc;

/// What a triplet is keyed by besides its sender and recipients.
enum Origin {
    /// The sender's SPF-verified domain: big providers retry from other addresses.
    SenderDomain(String),
    /// The client network.
    Network(ipnet::IpNet),
}

impl Origin {
    /// As it goes into the triplet's digest.
    fn key(&self) -> String {
        match self {
            Origin::SenderDomain(domain) => format!("spf:{domain}"),
            Origin::Network(net) => format!("net:{net}"),
        }
    }
}

/// The greylisting check.
#[derive(Debug)]
pub struct Greylist {
    state: State,
    config: GreylistConfig,
    metrics: Option<Arc<Metrics>>,
    /// The thresholds, for the `reject` that applies to a transaction.
    policy: Arc<crate::config::Config>,
    /// This check greylists only the null sender's messages, at the end of data (see
    /// [`Greylist::null_sender_at_data`]).
    null_sender_only: bool,
    /// Asks whether an SPF pass is one its record gives every client (naming us, for the
    /// `%{r}` macro, by `policy`'s host name); `None` without SPF checks, when no pass can
    /// key a triplet.
    spf: Option<Authenticator>,
}

impl Greylist {
    /// Greylisting per `config` with `state`; `policy` gives the thresholds and our host
    /// name; `auth` is the SPF checks' authenticator, when they run.
    pub fn new(
        state: State,
        config: GreylistConfig,
        metrics: Option<Arc<Metrics>>,
        policy: Arc<crate::config::Config>,
        auth: Option<Authenticator>,
    ) -> Greylist {
        Greylist {
            state,
            config,
            metrics,
            policy,
            null_sender_only: false,
            spf: auth,
        }
    }

    /// For greylisting at RCPT, the check that greylists the null sender's messages at
    /// the end of data: exempt at RCPT, where other servers' sender-verification callouts
    /// (`MAIL FROM:<>`, `RCPT`, `QUIT`) must be answered, it let ratware sending from
    /// `<>` pass ungreylisted to any number of recipients (review). A bounce is retried
    /// like any message. Every such message is greylisted, whatever its score, unless
    /// the verdict refuses it anyway.
    pub fn null_sender_at_data(&self) -> Greylist {
        Greylist {
            state: self.state.clone(),
            config: GreylistConfig {
                stage: GreylistStage::Data,
                min_score: f64::NEG_INFINITY,
                ..self.config.clone()
            },
            metrics: self.metrics.clone(),
            policy: self.policy.clone(),
            null_sender_only: true,
            spf: self.spf.clone(),
        }
    }

    /// Whether the verdict will refuse this message whatever greylisting says.
    fn refused_anyway(&self, ctx: &Context) -> bool {
        crate::policy::verdict::judged(&self.policy.policy, ctx).0 == Verdict::Reject
    }

    fn count(&self, result: &str) {
        if let Some(m) = &self.metrics {
            m.greylist_total.with_label_values(&[result]).inc();
        }
    }

    /// Where the sender comes from: its SPF-verified domain, else the client network. A
    /// pass from a record that authorizes every client (`+all`) verifies nothing: keyed
    /// by such a domain, any bot of a spammer's retried for another (review). Finding that
    /// out is a second SPF evaluation, so it is asked here, the only place that reads it,
    /// once a transaction: the answer is kept in the SPF result.
    async fn origin(&self, ctx: &mut Context) -> Origin {
        let deadline = ctx.deadline;
        let spf = ctx.auth.as_mut().and_then(|a| a.spf_mail_from.as_mut());
        match spf {
            Some(check) if check.result == SpfResult::Pass && !check.domain.is_empty() => {
                let anyone = match (check.authorizes_anyone, &self.spf) {
                    (Some(known), _) => known,
                    (None, Some(auth)) => {
                        let known = auth
                            .passes_anyone(
                                check,
                                &self.policy.server.hostname,
                                auth.deadline(deadline),
                            )
                            .await;
                        check.authorizes_anyone = Some(known);
                        known
                    }
                    (None, None) => true,
                };
                if anyone {
                    Origin::Network(self.network(ctx))
                } else {
                    Origin::SenderDomain(check.domain.clone())
                }
            }
            _ => Origin::Network(self.network(ctx)),
        }
    }

    fn network(&self, ctx: &Context) -> ipnet::IpNet {
        network_of(
            ctx.client.ip,
            self.config.ipv4_prefix,
            self.config.ipv6_prefix,
        )
    }

    fn exempt(&self, ctx: &Context) -> bool {
        self.config.exempt.contains(ctx.client.ip)
            || ctx.client.dnsbl_total < 0.0
            || (self.config.stage == GreylistStage::Rcpt
                && ctx.mail_from.as_ref().is_none_or(|a| a.is_null()))
    }

    /// Whether `network` has earned its auto-allow; if so its `pass_ttl` is refreshed, as
    /// use keeps a network allowed (its mail no longer passes triplets, which would).
    async fn still_allowed(&self, network: &str) -> Result<bool, Unavailable> {
        if self.config.auto_allow_after == 0 {
            return Ok(false);
        }
        let key = format!("gl:net:{network}");
        let passes = self.state.counter(&key).await?;
        if passes < i64::from(self.config.auto_allow_after) {
            return Ok(false);
        }
        let _ = self.state.incr(&key, 0, self.config.pass_ttl).await;
        Ok(true)
    }

    fn unavailable(&self, ctx: &mut Context, failure: Unavailable) -> Decision {
        // Counted like the rate limits' failures: a backend refusing one key's calls keeps
        // `mxguard_state_up` at 1 while greylisting is off.
        self.count("unavailable");
        match failure.0 {
            OnFailure::Open => {
                ctx.hit_once("STATE_UNAVAILABLE", 0.0);
                Decision::Continue
            }
            OnFailure::Closed => Decision::Tempfail(Reply::new(
                451,
                "4.3.0",
                "Temporary local problem, try again later",
            )),
        }
    }
}

#[async_trait]
impl Check for Greylist {
    fn name(&self) -> &'static str {
        "greylist"
    }

    fn stage(&self) -> Stage {
        match self.config.stage {
            GreylistStage::Rcpt => Stage::Rcpt,
            GreylistStage::Data => Stage::Data,
        }
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if self.null_sender_only && !ctx.mail_from.as_ref().is_some_and(|a| a.is_null()) {
            return Decision::Continue;
        }
        let network = self.network(ctx).to_string();
        if self.config.stage == GreylistStage::Data
            && (ctx.score() < self.config.min_score || self.refused_anyway(ctx))
        {
            // A message the verdict refuses anyway is refused now, not delayed first: its
            // retry would only be refused, and its triplet would pass the next one. Clean
            // mail is not delayed, but it is use that keeps an allowed network allowed.
            if ctx.score() < self.config.min_score && !self.exempt(ctx) {
                let _ = self.still_allowed(&network).await;
            }
            return Decision::Continue;
        }
        if self.exempt(ctx) {
            self.count("exempt");
            return Decision::Continue;
        }
        let pass_ttl = self.config.pass_ttl;
        match self.still_allowed(&network).await {
            Ok(true) => {
                self.count("exempt");
                return Decision::Continue;
            }
            Ok(false) => {}
            Err(e) => return self.unavailable(ctx, e),
        }
        let origin = self.origin(ctx).await;
        let sender = ctx
            .mail_from
            .as_ref()
            .map(|a| triplet_sender(&origin, &a.local, &a.domain))
            .unwrap_or_default();
        let recipients = match self.config.stage {
            GreylistStage::Rcpt => ctx
                .rcpt
                .as_ref()
                .map(|a| a.to_path().to_lowercase())
                .unwrap_or_default(),
            GreylistStage::Data => {
                let mut all: Vec<String> = ctx
                    .recipients
                    .iter()
                    .map(|a| a.to_path().to_lowercase())
                    .collect();
                all.sort();
                all.join(",")
            }
        };
        let key = format!("gl:t:{}", digest(&[&origin.key(), &sender, &recipients]));
        let answer = self
            .state
            .greylist(&key, self.config.delay, self.config.window, pass_ttl)
            .await;
        match answer {
            Ok(GreylistAnswer::New { retry_after }) | Ok(GreylistAnswer::Early { retry_after }) => {
                let result = if matches!(answer, Ok(GreylistAnswer::New { .. })) {
                    "new"
                } else {
                    "early"
                };
                self.count(result);
                let from = ctx
                    .mail_from
                    .as_ref()
                    .map(|a| a.to_path())
                    .unwrap_or_default();
                tracing::info!(client = %ctx.client.ip, from = from.as_str(), to = recipients.as_str(), result, "greylisted");
                Decision::Tempfail(Reply::new(
                    451,
                    "4.7.1",
                    format!(
                        "Greylisted, please try again in {} seconds",
                        retry_after.as_secs().max(1)
                    ),
                ))
            }
            Ok(GreylistAnswer::Passed) => {
                self.count("passed");
                // One message passing for many recipients is one sign of a real MTA, not
                // many: the network's count grows once per transaction.
                let first_pass = ctx.hit_once("GREYLIST", 0.0);
                // Only a retry the network itself made is its credit: a triplet keyed by
                // the sender's SPF domain passes for whichever network sends second, and
                // any domain (`v=spf1 +all`) would earn a fresh /24 its auto-allow.
                let retried_here = matches!(origin, Origin::Network(_));
                if self.config.auto_allow_after > 0 && first_pass && retried_here {
                    ctx.greylist_credit = Some(format!("gl:net:{network}"));
                }
                Decision::Continue
            }
            Ok(GreylistAnswer::Known) => {
                self.count("passed");
                Decision::Continue
            }
            Err(e) => self.unavailable(ctx, e),
        }
    }
}

/// The sender as a triplet holds it. Bulk senders give each message a bounce address of
/// its own (Amazon SES `0100018c5f2b…-000000@`, `bounces+uid-hash@`, BATV `prvs=tag=user@`,
/// SRS): taken as written, every message was a new triplet, greylisted for good. So the
/// BATV tag and the SRS wrapping go, an extension after `+` goes, and each token of the
/// local part that is a number, or hexadecimal with a digit in it, becomes `#` (postgrey
/// collapses whole-word numbers; `user1` and `user2` stay apart). With SPF passing the
/// domain is the verified one (the origin names it too).
fn triplet_sender(origin: &Origin, local: &str, domain: &str) -> String {
    if local.is_empty() {
        return String::new();
    }
    let mut local = local.to_lowercase();
    // BATV (`prvs=TAG=user`, also `btv1==TAG==user`): the user is past the last `=`.
    if local.starts_with("prvs=") || local.starts_with("btv1=") {
        if let Some((_, user)) = local.rsplit_once('=') {
            local = user.to_owned();
        }
    }
    // SRS (`SRS0=HHH=TT=domain=user`, `SRS1=HHH=forwarder==HHH=TT=domain=user`): the
    // original address is in the last two fields.
    if local.starts_with("srs0=") || local.starts_with("srs1=") {
        let fields: Vec<&str> = local.rsplitn(3, '=').collect();
        if let [user, original_domain, _] = fields[..] {
            local = format!("{user}={original_domain}");
        }
    }
    if let Some((user, _extension)) = local.split_once('+') {
        local = user.to_owned();
    }
    let mut out = String::with_capacity(local.len() + domain.len() + 1);
    let mut token = String::new();
    let end_token = |token: &mut String, out: &mut String| {
        let generated = token.bytes().any(|b| b.is_ascii_digit())
            && token.bytes().all(|b| b.is_ascii_hexdigit());
        out.push_str(if generated { "#" } else { token.as_str() });
        token.clear();
    };
    for c in local.chars() {
        if c.is_ascii_alphanumeric() {
            token.push(c);
        } else {
            end_token(&mut token, &mut out);
            out.push(c);
        }
    }
    end_token(&mut token, &mut out);
    out.push('@');
    match origin {
        Origin::SenderDomain(verified) => out.push_str(&verified.to_lowercase()),
        Origin::Network(_) => out.push_str(&domain.to_lowercase()),
    }
    out
}

/// Credits a network with a retry once the message that passed greylisting is accepted:
/// counted when the triplet passed, a retry whose message was then refused for its content
/// earned its /24 the auto-allow (five rejected spam exempted the network for `pass_ttl`).
#[derive(Debug, Clone)]
pub struct GreylistCredit {
    state: State,
    pass_ttl: std::time::Duration,
}

impl GreylistCredit {
    /// Credits kept in `state` for `pass_ttl`.
    pub fn new(state: State, pass_ttl: std::time::Duration) -> GreylistCredit {
        GreylistCredit { state, pass_ttl }
    }

    /// Adds the transaction's credit, if it earned one, without holding up the reply (a
    /// failure only delays the network's auto-allow).
    pub fn credit(&self, ctx: &mut Context) {
        if let Some(key) = ctx.greylist_credit.take() {
            let credit = self.clone();
            tokio::spawn(async move {
                let _ = credit.state.incr(&key, 1, credit.pass_ttl).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testing::TestDns;
    use crate::mail::address::parse_path;
    use crate::policy::ClientInfo;

    /// The SPF check asked whether a pass passes everyone (a second evaluation) for every
    /// message while greylisting was on, though only the greylist key reads it: now
    /// greylisting asks, once a transaction, and its answer still keys the triplet.
    #[tokio::test]
    async fn greylisting_asks_whether_a_pass_passes_anyone_once_a_transaction() {
        // `exists:` of the client's address: every evaluation for another address asks
        // the server a name of its own, so the queries count the evaluations.
        let server = TestDns::builder()
            .txt("sender.test", "v=spf1 exists:%{i}.ok.sender.test -all")
            .a("192.0.2.1.ok.sender.test", [127, 0, 0, 2].into())
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let auth = Authenticator::new(&dns).unwrap();
        let config = Arc::new(
            crate::config::Config::from_toml(
                std::path::Path::new("t.toml"),
                "[relay]\ndomains=[\"example.test\"]\ninternal=[\"127.0.0.1:2526\"]\n[greylist]\nenabled=true\n",
            )
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let spf = crate::policy::checks::authentication::Spf::new(auth.clone(), "gw.test".into());
        let greylist = Greylist::new(
            state,
            config.greylist.clone(),
            None,
            config.clone(),
            Some(auth),
        );
        let mut ctx = Context::new(ClientInfo::new([192, 0, 2, 1].into()));
        ctx.client.helo = Some("client.sender.test".into());
        ctx.mail_from = Some(parse_path("news@sender.test").unwrap());
        let before = server.queries();
        spf.run(&mut ctx).await;
        let after_spf = server.queries();
        let check = |ctx: &Context| {
            ctx.auth
                .as_ref()
                .and_then(|a| a.spf_mail_from.as_ref())
                .map(|c| (c.result, c.authorizes_anyone))
        };
        assert_eq!(check(&ctx), Some((SpfResult::Pass, None)));
        let mut asked = Vec::new();
        for rcpt in ["a@example.test", "b@example.test"] {
            let before_rcpt = server.queries();
            ctx.rcpt = Some(parse_path(rcpt).unwrap());
            let decision = greylist.run(&mut ctx).await;
            assert!(matches!(decision, Decision::Tempfail(_)), "{decision:?}");
            assert_eq!(check(&ctx), Some((SpfResult::Pass, Some(false))));
            asked.push(server.queries() - before_rcpt);
        }
        // The probe's own names, asked for the first recipient only.
        assert!(after_spf > before);
        assert!(asked[0] > 0 && asked[1] == 0, "{asked:?}");
        // Keyed by the verified domain: the provider's retry from another network passes.
        assert!(
            matches!(greylist.origin(&mut ctx).await, Origin::SenderDomain(d) if d == "sender.test")
        );
    }

    /// Regression (review): the triplet held the sender as written, so every message of a
    /// bulk sender with a bounce address per message (Amazon SES, SendGrid, BATV, SRS) was
    /// a new triplet: greylisted on every message, for ever.
    #[test]
    fn per_message_bounce_addresses_make_one_triplet() {
        let net = Origin::Network("192.0.2.0/24".parse().unwrap());
        let same = |a: (&str, &str), b: (&str, &str)| {
            assert_eq!(
                triplet_sender(&net, a.0, a.1),
                triplet_sender(&net, b.0, b.1),
                "{a:?} {b:?}"
            )
        };
        same(
            ("bounces+1234-abcd=example.test", "em.sender.test"),
            ("bounces+9876-ef01=other.test", "em.sender.test"),
        );
        same(
            ("prvs=0123abcd=alice", "example.test"),
            ("prvs=4567ef01=Alice", "Example.TEST"),
        );
        same(
            ("list-bounce-1001", "lists.test"),
            ("list-bounce-2", "lists.test"),
        );
        same(
            ("0100018c5f2b1c3d-1a2b3c4d-5e6f-7a8b-000000", "ses.test"),
            ("0100018c9e8d7c6b-9f8e7d6c-5b4a-3c2d-000000", "ses.test"),
        );
        same(
            ("SRS0=HhH=TT=orig.test=bob", "fwd.test"),
            ("srs0=xYz=Q2=orig.test=bob", "fwd.test"),
        );
        for (a, b) in [
            ("alice", "bob"),
            ("user1", "user2"),
            ("john1234", "john5678"),
        ] {
            // People, not generated addresses: postgrey keeps names with digits apart.
            assert_ne!(
                triplet_sender(&net, a, "example.test"),
                triplet_sender(&net, b, "example.test")
            );
        }
        assert_eq!(triplet_sender(&net, "", ""), "");
        // With SPF passing, one sender of a domain passing opens no door to the others.
        let spf = Origin::SenderDomain("gmail.test".into());
        assert_ne!(
            triplet_sender(&spf, "alice", "gmail.test"),
            triplet_sender(&spf, "bob", "gmail.test"),
        );
    }
}
