//! Forward-confirmed reverse DNS of the client: its PTR names must resolve back to its
//! address. `RDNS_NONE` (no PTR), `RDNS_MISMATCH` (no name resolves back); lookup failures
//! score nothing unless configured to tempfail.

use crate::dns::{within, Dns, Outcome};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;
use std::net::IpAddr;

/// Names checked per client at most (a PTR set can be large and attacker-controlled).
const MAX_NAMES: usize = 3;

/// The FCrDNS check.
#[derive(Debug)]
pub struct Fcrdns {
    dns: Dns,
    tempfail_on_failure: bool,
}

impl Fcrdns {
    /// A check resolving with `dns`.
    pub fn new(dns: Dns, tempfail_on_failure: bool) -> Fcrdns {
        Fcrdns {
            dns,
            tempfail_on_failure,
        }
    }

    fn failed(&self) -> Decision {
        if self.tempfail_on_failure {
            Decision::Tempfail(Reply::new(
                421,
                "4.4.3",
                "Reverse DNS lookup failed, try again later",
            ))
        } else {
            Decision::Continue
        }
    }
}

impl Fcrdns {
    /// The addresses of `name` in the family of `client`: only that family can confirm
    /// it, and the other's failure must not hide behind its success (an IPv6 client whose
    /// name has an A record but whose AAAA lookup timed out is unknown, not a mismatch).
    async fn addresses_like(&self, client: IpAddr, name: &str) -> Outcome<Vec<IpAddr>> {
        match client {
            IpAddr::V4(_) => self
                .dns
                .lookup_a("fcrdns", name)
                .await
                .map(|a| a.into_iter().map(IpAddr::V4).collect()),
            IpAddr::V6(_) => self
                .dns
                .lookup_aaaa("fcrdns", name)
                .await
                .map(|a| a.into_iter().map(IpAddr::V6).collect()),
        }
    }
}

#[async_trait]
impl Check for Fcrdns {
    fn name(&self) -> &'static str {
        "fcrdns"
    }

    fn stage(&self) -> Stage {
        Stage::Connect
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let ip = ctx.client.ip;
        let deadline = self.dns.deadline(ctx.deadline);
        let mut names = match within(deadline, self.dns.lookup_ptr("fcrdns", ip)).await {
            Outcome::Found(names) if !names.is_empty() => names,
            Outcome::Found(_) | Outcome::NotFound => {
                ctx.hit("RDNS_NONE", 0.0);
                return Decision::Continue;
            }
            _ => return self.failed(),
        };
        // In one order whatever order the server rotates them in: of an address with more
        // names than are tried, the same ones are tried on every connection (review: it
        // was confirmed on one and `RDNS_MISMATCH` on the next).
        for name in &mut names {
            *name = name.trim_end_matches('.').to_ascii_lowercase();
        }
        names.sort_unstable();
        names.dedup();
        let mut any_failure = false;
        for name in names.iter().take(MAX_NAMES) {
            match within(deadline, self.addresses_like(ip, name)).await {
                Outcome::Found(addrs) if addrs.contains(&ip) => {
                    ctx.client.ptr = Some(name.clone());
                    return Decision::Continue;
                }
                Outcome::Found(_) | Outcome::NotFound => {}
                _ => any_failure = true,
            }
        }
        if any_failure {
            return self.failed();
        }
        ctx.hit("RDNS_MISMATCH", 0.0);
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testing::TestDns;
    use crate::metrics::Metrics;
    use crate::policy::ClientInfo;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    async fn judge(ip: &str) -> (Context, Decision) {
        // 192.0.2.x: hickory answers 127.0.0.0/8 reverse lookups itself.
        let server = TestDns::builder()
            .ptr("192.0.2.10".parse().unwrap(), "mail.good.test")
            .a("mail.good.test", Ipv4Addr::new(192, 0, 2, 10))
            .ptr("192.0.2.20".parse().unwrap(), "forged.bad.test")
            .a("forged.bad.test", Ipv4Addr::new(198, 51, 100, 7))
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let mut ctx = Context::new(ClientInfo::new(ip.parse().unwrap()));
        let decision = Fcrdns::new(dns, false).run(&mut ctx).await;
        (ctx, decision)
    }

    fn names(ctx: &Context) -> Vec<&str> {
        ctx.symbols.iter().map(|s| s.name.as_str()).collect()
    }

    #[tokio::test]
    async fn matching_ptr_and_a_confirm_the_name() {
        let (ctx, d) = judge("192.0.2.10").await;
        assert_eq!(d, Decision::Continue);
        assert!(names(&ctx).is_empty());
        assert_eq!(ctx.client.ptr.as_deref(), Some("mail.good.test"));
    }

    #[tokio::test]
    async fn ptr_pointing_elsewhere_is_a_mismatch() {
        let (ctx, _) = judge("192.0.2.20").await;
        assert_eq!(names(&ctx), ["RDNS_MISMATCH"]);
        assert_eq!(ctx.client.ptr, None);
    }

    #[tokio::test]
    async fn no_ptr_at_all() {
        let (ctx, _) = judge("192.0.2.30").await;
        assert_eq!(names(&ctx), ["RDNS_NONE"]);
    }

    /// Regression (review): the name's A and AAAA were looked up together and either
    /// family's answer counted, so an IPv6 client whose name had an A record and whose
    /// AAAA lookup timed out scored `RDNS_MISMATCH` instead of "unknown" (with
    /// `dns_tempfail`, a 4xx).
    #[tokio::test]
    async fn a_lookup_of_the_clients_family_that_fails_is_no_mismatch() {
        let server = TestDns::builder()
            .ptr("2001:db8::10".parse().unwrap(), "mail.v6.test")
            .a("mail.v6.test", Ipv4Addr::new(192, 0, 2, 1))
            .mode(crate::dns::testing::Mode::SilentFor(
                hickory_server::proto::rr::RecordType::AAAA,
            ))
            .start()
            .await
            .unwrap();
        let mut config = TestDns::dns_config(server.addr());
        config.timeout = std::time::Duration::from_millis(300);
        let dns = Dns::new(&config, Arc::new(Metrics::new())).unwrap();
        let mut ctx = Context::new(ClientInfo::new("2001:db8::10".parse().unwrap()));
        let decision = Fcrdns::new(dns, true).run(&mut ctx).await;
        assert!(names(&ctx).is_empty(), "{:?}", names(&ctx));
        assert!(matches!(decision, Decision::Tempfail(_)), "{decision:?}");
    }

    /// Regression (review): of an address with more names than are tried, the first ones
    /// in the server's order were tried, and servers rotate that order: one connection
    /// confirmed, the next scored `RDNS_MISMATCH`. The names are tried in their own order.
    #[tokio::test]
    async fn the_names_tried_do_not_depend_on_the_answers_order() {
        let ip: std::net::IpAddr = "192.0.2.40".parse().unwrap();
        // Served in this order: the confirming name last, past the three tried.
        let server = TestDns::builder()
            .ptr(ip, "z1.other.test")
            .ptr(ip, "z2.other.test")
            .ptr(ip, "z3.other.test")
            .ptr(ip, "a.shared.test")
            .a("a.shared.test", Ipv4Addr::new(192, 0, 2, 40))
            .start()
            .await
            .unwrap();
        let dns = server.resolver().unwrap();
        let mut ctx = Context::new(ClientInfo::new(ip));
        Fcrdns::new(dns, false).run(&mut ctx).await;
        assert_eq!(ctx.client.ptr.as_deref(), Some("a.shared.test"));
    }
}
