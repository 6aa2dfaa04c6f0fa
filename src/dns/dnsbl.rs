//! DNSBL / DNSWL / URIBL building blocks: query names (reversed IPv4 octets, IPv6 nibbles,
//! domains under a zone) and the meaning of the `127.0.0.x` answers.

use super::{Dns, Outcome};
use crate::config::DnsListConfig;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// The query name for `ip` in `zone`: `2.0.0.127.zone.` for IPv4, the 32 reversed nibbles
/// of the address for IPv6 (RFC 5782 §2.4). Always absolute (trailing dot).
pub fn ip_query(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_matches('.');
    let mut name = String::with_capacity(80);
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(name, "{d}.{c}.{b}.{a}.");
        }
        IpAddr::V6(v6) => {
            // An IPv4-mapped address (`::ffff:1.2.3.4`) is an IPv4 client.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return ip_query(IpAddr::V4(v4), zone);
            }
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
        }
    }
    name.push_str(zone);
    name.push('.');
    name
}

/// The query name for a domain in a URIBL/DBL-style zone: `example.com.dbl.zone.`
/// (lower-cased, surrounding dots removed); `None` for a domain that is not letters,
/// digits, `-`, `_` and dots, whose text (a `\.` escape) could make a name outside the
/// list's zone.
pub fn domain_query(domain: &str, zone: &str) -> Option<String> {
    let domain = domain.trim_matches('.');
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if domain.is_empty() || !domain.chars().all(plain) {
        return None;
    }
    Some(format!(
        "{}.{}.",
        domain.to_ascii_lowercase(),
        zone.trim_matches('.')
    ))
}

/// What a list's A answers mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Listed, with the return codes (all in `127.0.0.0/8`; `127.0.0.1` only where the
    /// list names it).
    Listed(Vec<Ipv4Addr>),
    /// The list answered with something that is not a listing: `127.0.0.1` (unless the
    /// list names it), a `127.255.255.x` error code (Spamhaus: query refused, e.g. through
    /// a public resolver), or addresses outside `127.0.0.0/8` (a wildcarding resolver).
    /// Never score it.
    Unusable(Vec<Ipv4Addr>),
}

impl Listing {
    /// Interprets the A records of a list query: return codes, and the codes `named` by
    /// the list's code map (a whitelist may answer `127.0.0.1` for a listing). Valid codes
    /// win over unusable ones in a mixed answer.
    pub fn from_answers(answers: &[Ipv4Addr], named: impl Fn(Ipv4Addr) -> bool) -> Listing {
        let (valid, unusable): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = answers
            .iter()
            .partition(|a| crate::config::is_return_code(**a) || named(**a));
        if valid.is_empty() {
            Listing::Unusable(unusable)
        } else {
            Listing::Listed(valid)
        }
    }

    /// The return codes of a listing (empty when unusable).
    pub fn codes(&self) -> &[Ipv4Addr] {
        match self {
            Listing::Listed(codes) => codes,
            Listing::Unusable(_) => &[],
        }
    }
}

/// Queries `name` (built with [`ip_query`] or [`domain_query`]) and interprets the answer:
/// [`Outcome::NotFound`] is "not listed"; [`Outcome::Found`] carries the [`Listing`];
/// timeouts and SERVFAIL stay what they are (unknown, not "not listed").
pub async fn lookup(
    dns: &Dns,
    check: &'static str,
    name: &str,
    list: &DnsListConfig,
) -> Outcome<Listing> {
    let outcome = dns
        .lookup_a(check, name)
        .await
        .map(|answers| Listing::from_answers(&answers, |code| list.names(code)));
    if let Outcome::Found(Listing::Unusable(answers)) = &outcome {
        dns.note_list_refusal(check, list, answers);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn ipv4_query_reverses_the_octets() {
        let ip: IpAddr = "127.0.0.2"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(ip_query(ip, "bl.test"), "2.0.0.127.bl.test.");
        assert_eq!(ip_query(ip, "bl.test."), "2.0.0.127.bl.test.");
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
        assert_eq!(ip_query(ip, "zen.example"), "99.2.0.192.zen.example.");
    }

    #[test]
    fn ipv6_query_uses_reversed_nibbles() {
        // RFC 5782 §2.4 example.
        let ip: Ipv6Addr = "2001:db8:1:2:3:4:567:89ab"
            .parse()
            .unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            ip_query(IpAddr::V6(ip), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_queried_as_ipv4() {
        let ip: Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(ip_query(IpAddr::V6(ip), "bl.test"), "1.2.0.192.bl.test.");
    }

    #[test]
    fn domain_query_prefixes_the_zone() {
        assert_eq!(
            domain_query("Example.COM", "dbl.test").as_deref(),
            Some("example.com.dbl.test.")
        );
        assert_eq!(
            domain_query("example.com.", ".dbl.test.").as_deref(),
            Some("example.com.dbl.test.")
        );
    }

    /// Regression (review, latent: URIBL's hosts pass IDNA first): `x\` made the query
    /// name `x\.dbl.zone.`, which the DNS library reads as the labels `x.dbl` and `zone`,
    /// one label outside the list's zone.
    #[test]
    fn a_domain_that_could_escape_the_zone_is_not_queried() {
        for domain in ["x\\", "a\\.b", "a b.test", "", "...", "a;b.test"] {
            assert_eq!(domain_query(domain, "dbl.test"), None, "{domain:?}");
        }
    }

    #[test]
    fn answers_become_listings_or_unusable() {
        let code = |d| Ipv4Addr::new(127, 0, 0, d);
        assert_eq!(
            Listing::from_answers(&[code(2), code(4)], |_| false),
            Listing::Listed(vec![code(2), code(4)])
        );
        assert_eq!(
            Listing::from_answers(&[code(1)], |_| false),
            Listing::Unusable(vec![code(1)])
        );
        assert_eq!(
            Listing::from_answers(&[code(255)], |_| false),
            Listing::Unusable(vec![code(255)]),
            "dnswl.org's answer to a querier it blocks"
        );
        let refused = Ipv4Addr::new(127, 255, 255, 254);
        assert_eq!(
            Listing::from_answers(&[refused], |_| false),
            Listing::Unusable(vec![refused])
        );
        let wildcard = Ipv4Addr::new(198, 51, 100, 7);
        assert!(Listing::from_answers(&[wildcard], |_| false)
            .codes()
            .is_empty());
        assert_eq!(
            Listing::from_answers(&[wildcard, code(10)], |_| false).codes(),
            &[code(10)]
        );
    }
}
