//! One `[[ratelimit]]`: counts an event per key (client address or network, sender,
//! sender domain, recipient, HELO) at its stage against a GCRA limit in the state
//! backend, so every gateway of the tier counts into the same bucket. Over the limit it
//! tempfails (`421 4.7.0` at connect, `450 4.7.1` later) or adds its symbol.

use crate::auth::SpfResult;
use crate::config::{network_of, OnFailure, RateAction, RateKey, RateLimitConfig, RateStage};
use crate::mail::Reply;
use crate::metrics::Metrics;
use crate::policy::{Check, Context, Decision, Stage};
use crate::state::{digest, State};
use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;

/// How a limit counts mail from the null sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NullSender {
    /// As anyone else's.
    Counted,
    /// Not at all: its twin [`NullSender::AtData`] counts it.
    Left,
    /// Only it, and only at the end of data, after greylisting: each recipient the
    /// message carries.
    AtData,
}

/// One rate limit.
#[derive(Debug)]
pub struct RateLimit {
    state: State,
    limit: RateLimitConfig,
    /// Prefix lengths of `client_net` (those of `[greylist]`).
    prefixes: (u8, u8),
    metrics: Option<Arc<Metrics>>,
    null_sender: NullSender,
}

impl RateLimit {
    /// The limit `limit` counted in `state`; `prefixes` are the IPv4/IPv6 prefix lengths
    /// of a client network.
    pub fn new(
        state: State,
        limit: RateLimitConfig,
        prefixes: (u8, u8),
        metrics: Option<Arc<Metrics>>,
    ) -> RateLimit {
        RateLimit {
            state,
            limit,
            prefixes,
            metrics,
            null_sender: NullSender::Counted,
        }
    }

    /// See [`RateLimitConfig::refuses_recipients`].
    pub fn refuses_recipients(&self) -> bool {
        self.limit.refuses_recipients()
    }

    /// This limit, leaving the null sender's recipients to [`RateLimit::null_sender_at_data`]
    /// where greylisting takes the null sender at the end of data: at RCPT a bounce that
    /// is then greylisted and never retried, or a sender-verification callout that never
    /// sends data, emptied the recipient's bucket (review: forged `ceo@` spam made other
    /// servers' callouts empty it, and `ceo@`'s real mail met `450`).
    pub fn leaving_null_sender(self) -> RateLimit {
        RateLimit {
            null_sender: NullSender::Left,
            ..self
        }
    }

    /// This limit's twin that counts the null sender's recipients at the end of data.
    pub fn null_sender_at_data(self) -> RateLimit {
        RateLimit {
            null_sender: NullSender::AtData,
            ..self
        }
    }

    fn count(&self, result: &str) {
        if let Some(m) = &self.metrics {
            m.ratelimit_total
                .with_label_values(&[self.limit.name.as_str(), result])
                .inc();
        }
    }

    /// The value counted per, when the transaction has it.
    fn subject(&self, ctx: &Context) -> Option<String> {
        let lower = |s: String| s.to_lowercase();
        match self.limit.key {
            // An IPv6 client is counted per /64, the least a subscriber is given: per
            // address, a host would pick a fresh bucket for each connection.
            RateKey::ClientIp => Some(match ctx.client.ip.to_canonical() {
                ip @ IpAddr::V4(_) => ip.to_string(),
                ip @ IpAddr::V6(_) => network_of(ip, 32, 64).to_string(),
            }),
            RateKey::ClientNet => {
                Some(network_of(ctx.client.ip, self.prefixes.0, self.prefixes.1).to_string())
            }
            // The null sender is no sender: bounces from every server of the internet
            // would share one bucket. The client keys still count them.
            RateKey::Sender => ctx
                .mail_from
                .as_ref()
                .filter(|a| !a.is_null())
                .map(|a| self.claimed_by(ctx, &bucket_domain(&a.domain), &bucket_path(a))),
            RateKey::SenderDomain => {
                ctx.mail_from
                    .as_ref()
                    .filter(|a| !a.domain.is_empty())
                    .map(|a| {
                        let domain = bucket_domain(&a.domain);
                        self.claimed_by(ctx, &domain, &domain)
                    })
            }
            RateKey::Recipient => ctx.rcpt.as_ref().map(bucket_path),
            RateKey::Helo => ctx.client.helo.clone().map(lower),
        }
    }

    /// A sender's bucket: its own when SPF passes for its domain, else the one of its
    /// unverified claims, so spam forging a big provider's addresses never fills the
    /// bucket that provider's real mail counts in, and a forgery sprayed from a botnet
    /// still counts in one bucket tier-wide.
    /// `domain` is the sender's, as [`bucket_domain`] writes it.
    fn claimed_by(&self, ctx: &Context, domain: &str, sender: &str) -> String {
        let verified = ctx
            .auth
            .as_ref()
            .and_then(|a| a.spf_mail_from.as_ref())
            .is_some_and(|spf| {
                spf.result == SpfResult::Pass && bucket_domain(&spf.domain) == domain
            });
        if verified {
            sender.to_owned()
        } else {
            format!("{sender} unverified")
        }
    }

    fn refusal(&self, code: u16, status: &'static str, text: String) -> Decision {
        Decision::Tempfail(Reply::new(code, status, text))
    }
}

/// A domain as one bucket knows it, however it was written: lower case, no trailing dot,
/// its A-label (review: `corp.test.` and `corp.test`, `bücher.example` and its A-label were
/// each a bucket of their own, so one sender split its limit across up to four, and mail
/// passing SPF was counted as unverified).
fn bucket_domain(domain: &str) -> String {
    crate::mail::address::comparable_domain(domain)
}

/// An address as one bucket knows it: lower case, its domain as [`bucket_domain`], and
/// without a subaddress (`ceo+1@` is `ceo@`): each extension was a bucket of its own, so a
/// flood to `ceo+1@`, `ceo+2@`, … into one mailbox never met its limit (review).
fn bucket_path(address: &crate::mail::Address) -> String {
    let local = match address.local.split_once('+') {
        Some((user, _extension)) if !user.is_empty() => user.to_owned(),
        _ => address.local.clone(),
    };
    crate::mail::Address {
        local,
        domain: bucket_domain(&address.domain),
        ..address.clone()
    }
    .to_path()
    .to_lowercase()
}

#[async_trait]
impl Check for RateLimit {
    fn name(&self) -> &'static str {
        "ratelimit"
    }

    fn stage(&self) -> Stage {
        if self.null_sender == NullSender::AtData {
            return Stage::Data;
        }
        match self.limit.stage {
            RateStage::Connect => Stage::Connect,
            RateStage::Mail => Stage::Mail,
            RateStage::Rcpt => Stage::Rcpt,
            RateStage::Data => Stage::Data,
        }
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let null_sender = ctx.mail_from.as_ref().is_some_and(|a| a.is_null());
        match self.null_sender {
            NullSender::Counted => {}
            NullSender::Left if null_sender => return Decision::Continue,
            NullSender::Left => {}
            NullSender::AtData if !null_sender => return Decision::Continue,
            NullSender::AtData => {
                let mut subjects: Vec<String> = ctx.recipients.iter().map(bucket_path).collect();
                subjects.sort();
                subjects.dedup();
                for subject in subjects {
                    let decision = self.count_in_bucket(ctx, subject).await;
                    if decision != Decision::Continue {
                        return decision;
                    }
                }
                return Decision::Continue;
            }
        }
        let Some(subject) = self.subject(ctx) else {
            return Decision::Continue;
        };
        self.count_in_bucket(ctx, subject).await
    }
}

impl RateLimit {
    /// Counts one event in `subject`'s bucket.
    async fn count_in_bucket(&self, ctx: &mut Context, subject: String) -> Decision {
        // `rlu:`: the arrival time is kept in microseconds; a member still counting in
        // milliseconds (during an upgrade) keeps to its own `rl:` keys.
        let key = format!("rlu:{}:{}", self.limit.name, digest(&[&subject]));
        let at_connect = self.limit.stage == RateStage::Connect;
        let l = &self.limit;
        match self.state.rate(&key, l.limit, l.per, l.burst).await {
            Ok(answer) if answer.allowed => {
                self.count("ok");
                Decision::Continue
            }
            Ok(answer) => {
                self.count("over");
                ctx.hit_once(&l.symbol, 0.0);
                tracing::info!(limit = %l.name, key = l.key.as_str(), subject = subject.as_str(), "rate limit exceeded");
                if l.action == RateAction::Score {
                    return Decision::Continue;
                }
                let wait = answer.retry_after.as_secs().max(1);
                let text = format!(
                    "Rate limit {} exceeded, try again in {wait} seconds",
                    l.name
                );
                if at_connect {
                    self.refusal(421, "4.7.0", text)
                } else {
                    self.refusal(450, "4.7.1", text)
                }
            }
            Err(failure) => {
                self.count("unavailable");
                match failure.0 {
                    OnFailure::Open => {
                        ctx.hit_once("STATE_UNAVAILABLE", 0.0);
                        Decision::Continue
                    }
                    OnFailure::Closed if at_connect => self.refusal(
                        421,
                        "4.3.0",
                        "Temporary local problem, try again later".into(),
                    ),
                    OnFailure::Closed => self.refusal(
                        451,
                        "4.3.0",
                        "Temporary local problem, try again later".into(),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RateAction, RateKey, RateStage};
    use crate::mail::address::parse_path;
    use crate::policy::ClientInfo;
    use std::time::Duration;

    fn limit(key: RateKey) -> RateLimitConfig {
        RateLimitConfig {
            name: "per_sender".into(),
            key,
            limit: 1,
            per: Duration::from_secs(3600),
            burst: 1,
            stage: RateStage::Rcpt,
            action: RateAction::Score,
            symbol: "RATELIMIT_PER_SENDER".into(),
        }
    }

    fn bounce(ip: [u8; 4], rcpt: &str) -> Context {
        let mut ctx = Context::new(ClientInfo::new(std::net::IpAddr::from(ip)));
        ctx.mail_from = Some(parse_path("").unwrap());
        ctx.rcpt = Some(parse_path(rcpt).unwrap());
        ctx
    }

    /// Regression (review): the null sender `<>` has no sender and no sender domain, yet
    /// it was counted as the sender "" / domain "", so every bounce from every MTA of the
    /// internet shared one bucket: past `limit` DSNs a tier-wide, each legitimate bounce
    /// was scored or refused as if one sender had flooded us.
    #[tokio::test]
    async fn bounces_from_unrelated_servers_do_not_share_a_sender_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        for key in [RateKey::Sender, RateKey::SenderDomain] {
            let check = RateLimit::new(state.clone(), limit(key), (24, 64), None);
            let mut first = bounce([192, 0, 2, 1], "alice@example.test");
            assert_eq!(check.run(&mut first).await, Decision::Continue);
            let mut second = bounce([198, 51, 100, 7], "bob@example.test");
            assert_eq!(check.run(&mut second).await, Decision::Continue);
            assert!(
                second
                    .symbols
                    .iter()
                    .all(|s| s.name != "RATELIMIT_PER_SENDER"),
                "{}: an unrelated bounce was over the limit: {:?}",
                key.as_str(),
                second.symbols
            );
        }
    }

    fn from_sender(ip: std::net::IpAddr, spf: Option<SpfResult>) -> Context {
        let mut ctx = Context::new(ClientInfo::new(ip));
        ctx.mail_from = Some(parse_path("news@bigmail.test").unwrap());
        ctx.rcpt = Some(parse_path("alice@example.test").unwrap());
        if let Some(result) = spf {
            let mut auth = crate::auth::AuthOutcome::new(ip);
            auth.spf_mail_from = Some(crate::auth::SpfCheck::mail_from_for_test(
                result,
                "bigmail.test",
                ip,
            ));
            ctx.auth = Some(auth);
        }
        ctx
    }

    /// Regression (review): a trailing dot or the Unicode form of a domain made a bucket
    /// of its own, and mail from `x@corp.test.` passing SPF for `corp.test` was counted
    /// as unverified.
    #[tokio::test]
    async fn one_domain_however_written_is_one_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let subject = |key: RateKey, from: &str, rcpt: &str, spf: Option<&str>| {
            let check = RateLimit::new(state.clone(), limit(key), (24, 64), None);
            let ip: std::net::IpAddr = [192, 0, 2, 1].into();
            let mut ctx = Context::new(ClientInfo::new(ip));
            ctx.mail_from = Some(parse_path(from).unwrap());
            ctx.rcpt = Some(parse_path(rcpt).unwrap());
            if let Some(domain) = spf {
                let mut auth = crate::auth::AuthOutcome::new(ip);
                auth.spf_mail_from = Some(crate::auth::SpfCheck::mail_from_for_test(
                    SpfResult::Pass,
                    domain,
                    ip,
                ));
                ctx.auth = Some(auth);
            }
            check.subject(&ctx).unwrap()
        };
        for key in [RateKey::Sender, RateKey::SenderDomain] {
            let plain = subject(key, "a@corp.test", "u@example.test", Some("corp.test"));
            let dotted = subject(key, "a@Corp.Test.", "u@example.test", Some("corp.test"));
            assert_eq!(plain, dotted);
            assert!(!plain.ends_with("unverified"), "{plain}");
            let unicode = subject(key, "a@b\u{fc}cher.example", "u@example.test", None);
            let a_label = subject(key, "a@xn--bcher-kva.example", "u@example.test", None);
            assert_eq!(unicode, a_label);
        }
        let rcpt = |to: &str| subject(RateKey::Recipient, "a@corp.test", to, None);
        assert_eq!(rcpt("CEO@example.test."), rcpt("ceo@example.test"));
        // Regression (review): each subaddress of one mailbox was a bucket of its own.
        assert_eq!(rcpt("ceo+1@example.test"), rcpt("ceo@example.test"));
        assert_eq!(rcpt("ceo+2@example.test"), rcpt("CEO+x@example.test"));
        assert_ne!(rcpt("+x@example.test"), rcpt("x@example.test"));
        let sender = |from: &str| subject(RateKey::Sender, from, "u@example.test", None);
        assert_eq!(sender("news+123@corp.test"), sender("news@corp.test"));
    }

    fn over(ctx: &Context) -> bool {
        ctx.symbols.iter().any(|s| s.name == "RATELIMIT_PER_SENDER")
    }

    /// Regression (review): sender and sender-domain buckets were keyed by the address a
    /// client claims, so spam forging a big provider's addresses from anywhere filled the
    /// bucket that provider's real mail counted in. Unverified, a sender counts per
    /// client network; with SPF passing, tier-wide wherever it comes from.
    #[tokio::test]
    async fn a_forged_sender_fills_no_bucket_of_the_real_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        for key in [RateKey::Sender, RateKey::SenderDomain] {
            let mut limit = limit(key);
            limit.name = format!("l_{}", key.as_str());
            let check = RateLimit::new(state.clone(), limit, (24, 64), None);
            let mut first = from_sender([203, 0, 113, 1].into(), None);
            check.run(&mut first).await;
            assert!(!over(&first));
            // The same unverified claim from elsewhere: the same bucket, tier-wide (review
            // of the fix: keyed per network, a forgery sprayed from a botnet was never
            // limited).
            let mut elsewhere = from_sender([198, 51, 100, 9].into(), Some(SpfResult::Fail));
            check.run(&mut elsewhere).await;
            assert!(
                over(&elsewhere),
                "{}: unverified claims are one bucket",
                key.as_str()
            );
            // The real sender, verified, counts in its own bucket tier-wide.
            let mut real = from_sender([192, 0, 2, 1].into(), Some(SpfResult::Pass));
            check.run(&mut real).await;
            assert!(
                !over(&real),
                "{}: forged mail filled the real bucket",
                key.as_str()
            );
            let mut real_again = from_sender([192, 0, 2, 77].into(), Some(SpfResult::Pass));
            check.run(&mut real_again).await;
            assert!(
                over(&real_again),
                "{}: verified mail is one bucket",
                key.as_str()
            );
        }
    }

    /// Regression (review): `client_ip` counted an IPv6 client per address, so a host
    /// with a /64 took a fresh bucket for every connection.
    #[tokio::test]
    async fn an_ipv6_client_is_counted_per_64() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::embedded_for_test(dir.path()).await;
        let check = RateLimit::new(state, limit(RateKey::ClientIp), (24, 64), None);
        let client = |ip: &str| Context::new(ClientInfo::new(ip.parse().unwrap()));
        let mut first = client("2001:db8:1:2::1");
        check.run(&mut first).await;
        assert!(!over(&first));
        let mut same_64 = client("2001:db8:1:2:ffff::9");
        check.run(&mut same_64).await;
        assert!(over(&same_64), "one /64, one bucket");
        let mut other_64 = client("2001:db8:1:3::1");
        check.run(&mut other_64).await;
        assert!(!over(&other_64));
        // IPv4 stays per address.
        let mut v4 = client("192.0.2.1");
        check.run(&mut v4).await;
        let mut v4_next = client("192.0.2.2");
        check.run(&mut v4_next).await;
        assert!(!over(&v4_next));
    }
}
