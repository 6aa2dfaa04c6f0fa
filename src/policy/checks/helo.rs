//! HELO/EHLO plausibility: a real MTA names itself with a resolvable FQDN or its own address
//! literal. Symbols: `HELO_BARE_IP`, `HELO_IP_MISMATCH`, `HELO_NOT_FQDN`, `HELO_IS_OURS`
//! (claims to be this gateway or a domain it serves), `HELO_UNRESOLVABLE`.

use crate::config::is_plausible_hostname;
use crate::dns::{only_loopback_for, within, Dns, Outcome};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;
use std::net::IpAddr;

/// The HELO check.
#[derive(Debug)]
pub struct HeloCheck {
    /// Our hostname and relay domains (lower case, no leading dot).
    ours: Vec<String>,
    dns: Option<Dns>,
    tempfail_on_failure: bool,
}

impl HeloCheck {
    /// `ours`: names a client must not claim; `dns`: for the resolvability test.
    pub fn new(ours: Vec<String>, dns: Option<Dns>, tempfail_on_failure: bool) -> HeloCheck {
        let ours = ours
            .into_iter()
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        HeloCheck {
            ours,
            dns,
            tempfail_on_failure,
        }
    }
}

/// The address in an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
fn literal_address(helo: &str) -> Option<IpAddr> {
    let inner = helo.strip_prefix('[')?.strip_suffix(']')?;
    // RFC 5321's ABNF strings match in any case: `IPv6:`, `IPV6:`, `ipv6:`.
    let inner = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    inner.parse().ok()
}

/// An address without its brackets: one Rust reads, or four dot-separated numbers however
/// written (`192.000.002.007`, which Rust refuses for its leading zeros, went to DNS and
/// scored as unresolvable instead; review). `name` has no trailing dot.
fn is_bare_ip(name: &str) -> bool {
    let quad = name.split('.').count() == 4
        && name
            .split('.')
            .all(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()));
    quad || name.parse::<IpAddr>().is_ok()
}

/// The symbols HELO syntax alone earns, and whether a DNS test makes sense.
fn syntax_symbols(helo: &str, client: IpAddr, ours: &[String]) -> (Vec<&'static str>, bool) {
    if helo.starts_with('[') {
        // `[IPv6:::ffff:192.0.2.7]` names the IPv4 client 192.0.2.7 (review).
        return match literal_address(helo) {
            Some(ip) if ip.to_canonical() == client.to_canonical() => (vec![], false),
            Some(_) => (vec!["HELO_IP_MISMATCH"], false),
            None => (vec!["HELO_NOT_FQDN"], false),
        };
    }
    let name = helo.trim_end_matches('.').to_ascii_lowercase();
    if is_bare_ip(&name) {
        return (vec!["HELO_BARE_IP"], false);
    }
    if ours.contains(&name) {
        return (vec!["HELO_IS_OURS"], false);
    }
    if !is_plausible_hostname(&name) {
        return (vec!["HELO_NOT_FQDN"], false);
    }
    (vec![], true)
}

#[async_trait]
impl Check for HeloCheck {
    fn name(&self) -> &'static str {
        "helo"
    }

    fn stage(&self) -> Stage {
        Stage::Helo
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let Some(helo) = ctx.client.helo.clone() else {
            return Decision::Continue;
        };
        let (symbols, resolvable_test) = syntax_symbols(&helo, ctx.client.ip, &self.ours);
        for s in symbols {
            ctx.hit(s, 0.0);
        }
        let Some(dns) = self.dns.as_ref().filter(|_| resolvable_test) else {
            return Decision::Continue;
        };
        match within(
            dns.deadline(ctx.deadline),
            dns.lookup_ip("helo", helo.trim_end_matches('.')),
        )
        .await
        {
            // `anything.localhost` resolves, but never to a remote client's host.
            Outcome::Found(addrs) if only_loopback_for(ctx.client.ip, &addrs) => {
                ctx.hit("HELO_UNRESOLVABLE", 0.0)
            }
            Outcome::Found(_) => {}
            Outcome::NotFound => ctx.hit("HELO_UNRESOLVABLE", 0.0),
            _ if self.tempfail_on_failure => {
                return Decision::Tempfail(Reply::new(
                    450,
                    "4.4.3",
                    "HELO name lookup failed, try again later",
                ))
            }
            _ => {}
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms(helo: &str) -> Vec<&'static str> {
        let ours = vec!["mx.example.test".to_string(), "example.test".to_string()];
        syntax_symbols(helo, "192.0.2.7".parse().unwrap(), &ours).0
    }

    #[test]
    fn helo_syntax_and_plausibility() {
        assert!(syms("mail.sender.example").is_empty());
        assert!(syms("[192.0.2.7]").is_empty());
        assert_eq!(syms("[192.0.2.8]"), ["HELO_IP_MISMATCH"]);
        assert_eq!(syms("192.0.2.7"), ["HELO_BARE_IP"]);
        assert_eq!(syms("localhost"), ["HELO_NOT_FQDN"]);
        assert_eq!(syms("MX.example.test."), ["HELO_IS_OURS"]);
        assert_eq!(syms("example.test"), ["HELO_IS_OURS"]);
        assert_eq!(syms("[garbage]"), ["HELO_NOT_FQDN"]);
        assert!(syms("[IPv6:2001:db8::1]").contains(&"HELO_IP_MISMATCH"));
        // Regression (review): the IPv4-mapped form of the client's own address was a
        // mismatch, and a bare address with a trailing dot or leading zeros went to DNS.
        assert!(syms("[IPv6:::ffff:192.0.2.7]").is_empty());
        assert_eq!(syms("192.0.2.7."), ["HELO_BARE_IP"]);
        assert_eq!(syms("192.000.002.007"), ["HELO_BARE_IP"]);
        assert_eq!(syms("2001:db8::7"), ["HELO_BARE_IP"]);
        assert!(syms("mail1.192-0-2-7.example").is_empty());
    }

    /// Regression (review): only `IPv6:` and `ipv6:` were read as the tag, so
    /// `[IPV6:2001:db8::1]` from that very client scored `HELO_NOT_FQDN`.
    #[test]
    fn the_ipv6_tag_matches_in_any_case() {
        let client = "2001:db8::1".parse().unwrap();
        for helo in [
            "[IPv6:2001:db8::1]",
            "[IPV6:2001:db8::1]",
            "[ipV6:2001:db8::1]",
        ] {
            assert!(syntax_symbols(helo, client, &[]).0.is_empty(), "{helo}");
        }
    }

    /// Regression (review): `HELO anything.localhost` (answered 127.0.0.1 by the resolver
    /// itself) counted as resolvable for a remote client, which dodged `HELO_UNRESOLVABLE`.
    #[tokio::test]
    async fn a_helo_that_leads_only_to_loopback_is_unresolvable_for_a_remote_client() {
        use crate::dns::testing::TestDns;
        let server = TestDns::builder()
            .a("mail.real.test", std::net::Ipv4Addr::new(192, 0, 2, 25))
            .start()
            .await
            .unwrap();
        let check = HeloCheck::new(Vec::new(), Some(server.resolver().unwrap()), false);
        let judge = |client: &str, helo: &str| {
            let mut ctx = Context::new(crate::policy::ClientInfo::new(client.parse().unwrap()));
            ctx.client.helo = Some(helo.to_string());
            ctx
        };
        for (client, helo, unresolvable) in [
            ("192.0.2.7", "mail.localhost", true),
            ("192.0.2.7", "mail.real.test", false),
            ("127.0.0.1", "mail.localhost", false),
        ] {
            let mut ctx = judge(client, helo);
            check.run(&mut ctx).await;
            let hit = ctx.symbols.iter().any(|s| s.name == "HELO_UNRESOLVABLE");
            assert_eq!(hit, unresolvable, "{client} {helo}");
        }
    }
}
