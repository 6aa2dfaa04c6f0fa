//! Greylisting, counted tier-wide in the state backend: a first attempt from a client
//! network (or, when SPF passes, from the sender's domain, since large providers retry
//! from other addresses) for a sender and recipient is refused with `451 4.7.1`; a retry
//! after `delay` and within `window` passes and keeps passing for `pass_ttl`. At the data
//! stage only messages scoring `min_score` or more are delayed. Trusted and allowlisted
//! clients, DNS-allowlisted ones, `exempt` networks and (at RCPT) the null sender skip it.

use crate::auth::SpfResult;
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
}

impl Greylist {
    /// Greylisting per `config` with `state`; `policy` gives the thresholds.
    pub fn new(
        state: State,
        config: GreylistConfig,
        metrics: Option<Arc<Metrics>>,
        policy: Arc<crate::config::Config>,
    ) -> Greylist {
        Greylist {
            state,
            config,
            metrics,
            policy,
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

    /// Where the sender comes from: its SPF-verified domain, else the client network.
    fn origin(&self, ctx: &Context) -> Origin {
        let spf = ctx.auth.as_ref().and_then(|a| a.spf_mail_from.as_ref());
        match spf {
            Some(check) if check.result == SpfResult::Pass && !check.domain.is_empty() => {
                Origin::SenderDomain(check.domain.clone())
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

    fn unavailable(&self, ctx: &mut Context, failure: Unavailable) -> Decision {
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
        if self.config.stage == GreylistStage::Data
            && (ctx.score() < self.config.min_score || self.refused_anyway(ctx))
        {
            // A message the verdict refuses anyway is refused now, not delayed first: its
            // retry would only be refused, and its triplet would pass the next one.
            return Decision::Continue;
        }
        if self.exempt(ctx) {
            self.count("exempt");
            return Decision::Continue;
        }
        let network = self.network(ctx).to_string();
        let pass_ttl = self.config.pass_ttl;
        if self.config.auto_allow_after > 0 {
            let key = format!("gl:net:{network}");
            match self.state.counter(&key).await {
                Ok(passes) if passes >= i64::from(self.config.auto_allow_after) => {
                    // Use keeps the network allowed (`pass_ttl` is refreshed by use): its
                    // mail no longer passes triplets, which would refresh it otherwise.
                    let _ = self.state.incr(&key, 0, pass_ttl).await;
                    self.count("exempt");
                    return Decision::Continue;
                }
                Ok(_) => {}
                Err(e) => return self.unavailable(ctx, e),
            }
        }
        let sender = ctx
            .mail_from
            .as_ref()
            .map(|a| a.to_path().to_lowercase())
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
        let origin = self.origin(ctx);
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
                tracing::info!(client = %ctx.client.ip, from = %sender, to = %recipients, result, "greylisted");
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
