//! The sender's domain must be able to receive replies: an MX, or else an A/AAAA record.
//! `SENDER_DOMAIN_UNRESOLVABLE` when neither exists, `SENDER_NULL_MX` for a domain that
//! publishes RFC 7505 "no mail", `SENDER_ADDRESS_LITERAL` for a sender at an address
//! literal (`x@[192.0.2.1]`), which names no domain. The null sender is exempt.

use crate::dns::{only_loopback_for, within, Dns, Outcome};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// Exchanges of a sender domain resolved to see whether its mail can reach anyone: the
/// most preferred few (each a lookup, mostly cached).
const MX_HOSTS_CHECKED: usize = 3;

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

    /// Whether the first [`MX_HOSTS_CHECKED`] exchanges of `mx` all lead only to loopback
    /// (`MX 10 localhost.`, or a name of the sender's own zone at 127.0.0.1), which is no
    /// way to reach a remote client: such a domain is as unresolvable as one whose own
    /// address is loopback. Any other answer, or a lookup error, leaves the domain be.
    async fn mx_leads_only_to_loopback(
        &self,
        ctx: &Context,
        mx: &[crate::dns::Mx],
        deadline: tokio::time::Instant,
    ) -> bool {
        if ctx.client.ip.is_loopback() {
            return false;
        }
        for host in mx.iter().take(MX_HOSTS_CHECKED) {
            let name = host.exchange.trim_end_matches('.');
            match within(deadline, self.dns.lookup_ip("sender_domain", name)).await {
                Outcome::Found(addrs) if only_loopback_for(ctx.client.ip, &addrs) => {}
                _ => return false,
            }
        }
        true
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
        if domain.is_empty() {
            return Decision::Continue;
        }
        if domain.starts_with('[') {
            // `x@[203.0.113.9]`: no domain to look up, and none for SPF either (`none`),
            // so it escaped both penalties a spammer's own domain would earn (review).
            // Mail systems do not send so; ratware can.
            ctx.hit("SENDER_ADDRESS_LITERAL", 0.0);
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
            Outcome::Found(mx) if !mx.is_empty() => {
                if self.mx_leads_only_to_loopback(ctx, &mx, deadline).await {
                    ctx.hit("SENDER_DOMAIN_UNRESOLVABLE", 0.0);
                }
                return Decision::Continue;
            }
            Outcome::Found(_) | Outcome::NotFound => {}
            _ => return self.failed(),
        }
        match within(deadline, self.dns.lookup_ip("sender_domain", &domain)).await {
            // `anything.localhost` resolves, but never to a remote sender's host.
            Outcome::Found(addrs) if only_loopback_for(ctx.client.ip, &addrs) => {
                ctx.hit("SENDER_DOMAIN_UNRESOLVABLE", 0.0)
            }
            Outcome::Found(addrs) if !addrs.is_empty() => {}
            Outcome::Found(_) | Outcome::NotFound => ctx.hit("SENDER_DOMAIN_UNRESOLVABLE", 0.0),
            _ => return self.failed(),
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testing::TestDns;
    use crate::mail::address::parse_path;
    use crate::policy::ClientInfo;
    use std::net::Ipv4Addr;

    async fn symbols(client: &str, sender: &str) -> Vec<String> {
        let server = TestDns::builder()
            .a("loopback.test", Ipv4Addr::LOCALHOST)
            .a("real.test", Ipv4Addr::new(192, 0, 2, 25))
            .mx("lo.test", 10, "localhost.")
            .mx("lo2.test", 10, "mx.lo2.test.")
            .a("mx.lo2.test", Ipv4Addr::LOCALHOST)
            .mx("mixed.test", 10, "localhost.")
            .mx("mixed.test", 20, "real.test.")
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let mut ctx = Context::new(ClientInfo::new(client.parse().unwrap()));
        ctx.mail_from = Some(parse_path(sender).unwrap());
        let decision = SenderDomain::new(dns, false).run(&mut ctx).await;
        assert_eq!(decision, Decision::Continue);
        ctx.symbols.iter().map(|s| s.name.clone()).collect()
    }

    /// Regression (review): `MAIL FROM:<x@anything.localhost>` (answered 127.0.0.1 by the
    /// resolver itself, RFC 6761) or a domain of the sender's own pointing at 127.0.0.1
    /// counted as resolvable, so a remote forger dodged `SENDER_DOMAIN_UNRESOLVABLE`.
    #[tokio::test]
    async fn a_sender_domain_that_leads_only_to_loopback_is_unresolvable_for_a_remote_client() {
        let unresolvable = vec!["SENDER_DOMAIN_UNRESOLVABLE".to_string()];
        assert_eq!(
            symbols("192.0.2.7", "x@anything.localhost").await,
            unresolvable
        );
        assert_eq!(symbols("192.0.2.7", "x@loopback.test").await, unresolvable);
        assert!(symbols("192.0.2.7", "x@real.test").await.is_empty());
        // Regression (review): an MX leading only to loopback dodged the check.
        assert_eq!(symbols("192.0.2.7", "x@lo.test").await, unresolvable);
        assert_eq!(symbols("192.0.2.7", "x@lo2.test").await, unresolvable);
        assert!(symbols("192.0.2.7", "x@mixed.test").await.is_empty());
        assert!(symbols("127.0.0.1", "x@lo.test").await.is_empty());
        // A local relay on this host may use its own names.
        assert!(symbols("127.0.0.1", "x@anything.localhost")
            .await
            .is_empty());
    }

    /// Regression (review): a sender at an address literal escaped both the sender-domain
    /// and the SPF penalties (nothing to look up, SPF `none`).
    #[tokio::test]
    async fn a_sender_at_an_address_literal_is_named() {
        assert_eq!(
            symbols("192.0.2.7", "x@[203.0.113.9]").await,
            ["SENDER_ADDRESS_LITERAL"]
        );
    }
}
