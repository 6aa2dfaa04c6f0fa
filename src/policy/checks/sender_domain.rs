//! The sender's domain must be able to receive replies: an MX, or else an A/AAAA record.
//! `SENDER_DOMAIN_UNRESOLVABLE` when neither exists, `SENDER_NULL_MX` for a domain that
//! publishes RFC 7505 "no mail". The null sender is exempt.

use crate::dns::{within, Dns, Outcome};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// The sender-domain check.
#[derive(Debug)]
pub struct SenderDomain {
    dns: Dns,
    tempfail_on_failure: bool,
}

impl SenderDomain {
    /// A check resolving with `dns`.
    pub fn new(dns: Dns, tempfail_on_failure: bool) -> SenderDomain {
        SenderDomain {
            dns,
            tempfail_on_failure,
        }
    }

    fn failed(&self) -> Decision {
        if self.tempfail_on_failure {
            Decision::Tempfail(Reply::new(
                451,
                "4.4.3",
                "Sender domain lookup failed, try again later",
            ))
        } else {
            Decision::Continue
        }
    }
}

#[async_trait]
impl Check for SenderDomain {
    fn name(&self) -> &'static str {
        "sender_domain"
    }

    fn stage(&self) -> Stage {
        Stage::Mail
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let Some(domain) = ctx.mail_from.as_ref().map(|a| a.domain.clone()) else {
            return Decision::Continue;
        };
        if domain.is_empty() || domain.starts_with('[') {
            return Decision::Continue;
        }
        let deadline = self.dns.deadline(ctx.deadline);
        match within(deadline, self.dns.lookup_mx("sender_domain", &domain)).await {
            Outcome::Found(mx)
                if mx.len() == 1 && mx[0].exchange.trim_end_matches('.').is_empty() =>
            {
                ctx.hit("SENDER_NULL_MX", 0.0);
                return Decision::Continue;
            }
            Outcome::Found(mx) if !mx.is_empty() => return Decision::Continue,
            Outcome::Found(_) | Outcome::NotFound => {}
            _ => return self.failed(),
        }
        match within(deadline, self.dns.lookup_ip("sender_domain", &domain)).await {
            Outcome::Found(addrs) if !addrs.is_empty() => {}
            Outcome::Found(_) | Outcome::NotFound => ctx.hit("SENDER_DOMAIN_UNRESOLVABLE", 0.0),
            _ => return self.failed(),
        }
        Decision::Continue
    }
}
