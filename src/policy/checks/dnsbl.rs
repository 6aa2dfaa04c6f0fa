//! DNS lists at connect: every configured DNSBL/DNSWL zone queried at once under the
//! stage deadline; each listing is a symbol, each zone's weight adds to a total that, over
//! `dnsbl_threshold`, refuses recipients at RCPT (postscreen's `zone*weight`, without
//! waiting for DATA). A negative weight (an allowlist) lowers the total.

use crate::config::DnsListConfig;
use crate::dns::dnsbl::{self, Listing};
use crate::dns::{Dns, ListKind, Outcome};
use crate::mail::Reply;
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;

/// The check's name: its metrics' and logs' `check` label.
pub(crate) const CHECK: &str = "dnsbl";

/// Queries the lists at connect and records symbols and the weighted total.
#[derive(Debug)]
pub struct DnsLists {
    dns: Dns,
    lists: Vec<DnsListConfig>,
    tempfail_on_failure: bool,
}

impl DnsLists {
    /// A check over `lists`, resolving with `dns`.
    pub fn new(dns: Dns, lists: Vec<DnsListConfig>, tempfail_on_failure: bool) -> DnsLists {
        DnsLists {
            dns,
            lists,
            tempfail_on_failure,
        }
    }
}

#[async_trait]
impl Check for DnsLists {
    fn name(&self) -> &'static str {
        CHECK
    }

    fn stage(&self) -> Stage {
        Stage::Connect
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let ip = ctx.client.ip;
        let deadline = self.dns.deadline(ctx.deadline);
        // A list that lists everyone (retired, wildcarded) means nothing.
        let lists: Vec<&DnsListConfig> = self
            .lists
            .iter()
            .filter(|list| !self.dns.lists_everyone(CHECK, list, &[ListKind::Address]))
            .collect();
        let lookups = lists.iter().map(|list| {
            let name = dnsbl::ip_query(ip, &list.zone);
            let dns = self.dns.clone();
            async move { dnsbl::lookup(&dns, CHECK, &name, list).await }
        });
        let outcomes = crate::dns::all_within(deadline, lookups).await;
        let mut failed = false;
        for (list, outcome) in lists.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Found(Listing::Listed(codes)) => {
                    for symbol in list.symbols_for(&codes) {
                        ctx.hit(&symbol, 0.0);
                    }
                    let weight = list.weight_for(&codes);
                    ctx.client.dnsbl_total += weight;
                    // Named without an access key, which the refusal would hand to
                    // every listed client (review).
                    if weight > 0.0 {
                        ctx.client.dnsbl_listed.push(list.public_name().to_owned());
                    }
                }
                // Counted and logged by the lookup; never scored. An answer that is no
                // listing (dnswl's 127.0.0.255, "your resolver is blocked") is no gap to
                // wait out either: it holds for as long as the resolver is blocked (review).
                Outcome::Found(Listing::Unusable(_)) | Outcome::NotFound => {}
                other => {
                    tracing::debug!(
                        list = list.public_name(),
                        result = other.label(),
                        "DNS list lookup failed"
                    );
                    ctx.client.dnsbl_unanswered += list.most_lowering_weight();
                    // An allowlist's silence only leaves a score higher than it would be.
                    ctx.client.dns_list_failed |= list.may_raise();
                    // Nor is it a reason to refuse at connect: a dnswl outage turned every
                    // client away with 421 (review).
                    failed |= list.may_raise();
                }
            }
        }
        if failed && self.tempfail_on_failure {
            return Decision::Tempfail(Reply::new(
                421,
                "4.4.3",
                "DNS list lookup failed, try again later",
            ));
        }
        Decision::Continue
    }
}

/// At RCPT: refuses recipients of a client whose weighted DNS-list total reached the
/// threshold, naming the lists, before any DATA is sent. When an allowlist that gave no
/// answer could have brought the total under the threshold, the refusal is temporary: a
/// permanent one would rest on what the lists did not say, and the retry asks again.
#[derive(Debug)]
pub struct DnsListVerdict {
    threshold: f64,
}

impl DnsListVerdict {
    /// Refuses from `threshold` on.
    pub fn new(threshold: f64) -> DnsListVerdict {
        DnsListVerdict { threshold }
    }
}

#[async_trait]
impl Check for DnsListVerdict {
    fn name(&self) -> &'static str {
        "dnsbl_verdict"
    }

    fn stage(&self) -> Stage {
        Stage::Rcpt
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        if ctx.client.dnsbl_total < self.threshold || ctx.client.dnsbl_listed.is_empty() {
            return Decision::Continue;
        }
        let lists = ctx.client.dnsbl_listed.join(", ");
        if ctx.client.dnsbl_total + ctx.client.dnsbl_unanswered < self.threshold {
            let text = format!(
                "Service temporarily unavailable; client [{}] listed by {lists} and an allowlist did not answer, try again later",
                ctx.client.ip,
            );
            return Decision::Tempfail(Reply::new(451, "4.7.1", text));
        }
        let text = format!(
            "Service unavailable; client [{}] blocked using {lists}",
            ctx.client.ip,
        );
        Decision::Reject(Reply::new(554, "5.7.1", text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CodeMatch;

    fn entry(code: &str, symbol: &str) -> crate::config::CodeEntry {
        crate::config::CodeEntry {
            matches: code.parse::<CodeMatch>().unwrap(),
            symbol: symbol.into(),
            weight: None,
        }
    }

    /// A list of `zone` weighing `weight`, scoring `symbol` by default and by `codes`.
    fn list_of(
        zone: &str,
        weight: f64,
        symbol: &str,
        codes: Vec<crate::config::CodeEntry>,
    ) -> DnsListConfig {
        DnsListConfig {
            zone: zone.into(),
            reply_name: zone.into(),
            sanity_probe: true,
            lookup: Default::default(),
            weight,
            symbol: symbol.into(),
            codes,
        }
    }

    #[test]
    fn code_map_names_symbols_and_the_default_covers_the_rest() {
        let list = list_of(
            "bl.test",
            3.0,
            "RCVD_IN_BL",
            vec![
                entry("127.0.0.2", "RCVD_IN_BL_SBL"),
                entry("127.0.0.[4..7]", "RCVD_IN_BL_XBL"),
            ],
        );
        assert_eq!(
            list.symbols_for(&["127.0.0.2".parse().unwrap()]),
            ["RCVD_IN_BL_SBL"]
        );
        assert_eq!(
            list.symbols_for(&["127.0.0.2".parse().unwrap(), "127.0.0.5".parse().unwrap()]),
            ["RCVD_IN_BL_SBL", "RCVD_IN_BL_XBL"]
        );
        assert_eq!(
            list.symbols_for(&["127.0.0.10".parse().unwrap()]),
            ["RCVD_IN_BL"]
        );
    }

    /// Regression (review): a list that answers `127.0.0.1` for a listing (hostkarma's
    /// whitelist) could never score, and its `codes` entry for it was a dead letter.
    #[test]
    fn a_code_map_naming_127_0_0_1_makes_it_a_listing_for_that_list_only() {
        let one: std::net::Ipv4Addr = "127.0.0.1".parse().unwrap();
        let whitelist = list_of(
            "wl.test",
            -3.0,
            "RCVD_IN_WL",
            vec![entry("127.0.0.1", "RCVD_IN_WL_HI")],
        );
        let answer = Listing::from_answers(&[one], |_| false);
        assert_eq!(
            answer,
            Listing::Unusable(vec![one]),
            "not a listing in general"
        );
        let listed = Listing::from_answers(&[one], |c| whitelist.names(c));
        assert_eq!(listed, Listing::Listed(vec![one]));
        assert_eq!(whitelist.symbols_for(listed.codes()), ["RCVD_IN_WL_HI"]);
        let generic = DnsListConfig {
            codes: vec![entry("*", "RCVD_IN_ANY")],
            ..whitelist
        };
        assert_eq!(
            Listing::from_answers(&[one], |c| generic.names(c)),
            answer,
            "`*` names no code"
        );
    }

    /// Regression (review): every listing added the list's whole weight, whatever its
    /// code: with ZEN at weight 3 and a threshold of 3, a client only in its policy range
    /// (PBL, `127.0.0.10`) was refused like a spam source. A code map entry can carry a
    /// weight of its own.
    #[test]
    fn a_code_can_weigh_other_than_its_list() {
        let mut pbl = entry("127.0.0.[10..11]", "RCVD_IN_ZEN_PBL");
        pbl.weight = Some(1.0);
        let list = list_of(
            "zen.test",
            3.0,
            "RCVD_IN_ZEN",
            vec![entry("127.0.0.2", "RCVD_IN_ZEN_SBL"), pbl],
        );
        let code = |d| std::net::Ipv4Addr::new(127, 0, 0, d);
        assert_eq!(list.weight_for(&[code(10)]), 1.0);
        assert_eq!(list.weight_for(&[code(2)]), 3.0);
        assert_eq!(list.weight_for(&[code(4)]), 3.0, "the list's default");
        assert_eq!(
            list.weight_for(&[code(4), code(11)]),
            3.0,
            "a spam source in a policy range weighs as the source"
        );
        assert_eq!(list.weight_for(&[code(10), code(11)]), 1.0);
    }

    /// Regression (review): the default symbol was given only when no code of the answer
    /// was named, so a spam source also in the named policy range (`127.0.0.4` and
    /// `127.0.0.10`) scored only `RCVD_IN_ZEN_PBL` while it weighed as the source.
    #[test]
    fn a_code_no_entry_names_earns_the_default_symbol_beside_the_named_ones() {
        let list = list_of(
            "zen.test",
            3.0,
            "RCVD_IN_ZEN",
            vec![entry("127.0.0.[10..11]", "RCVD_IN_ZEN_PBL")],
        );
        let code = |d| std::net::Ipv4Addr::new(127, 0, 0, d);
        assert_eq!(
            list.symbols_for(&[code(4), code(10)]),
            ["RCVD_IN_ZEN", "RCVD_IN_ZEN_PBL"]
        );
        assert_eq!(list.symbols_for(&[code(10), code(11)]), ["RCVD_IN_ZEN_PBL"]);
        assert_eq!(list.symbols_for(&[code(4)]), ["RCVD_IN_ZEN"]);
    }

    /// Regression (review): any list that gave no answer refused at connect under
    /// `dns_tempfail = ["dnsbl"]`, allowlists too, whose silence can only leave a score
    /// higher: a dnswl outage turned every client away with 421.
    #[tokio::test]
    async fn a_silent_allowlist_does_not_refuse_at_connect() {
        use crate::dns::testing::TestDns;
        use crate::policy::ClientInfo;
        let server = TestDns::builder()
            .silent_under("wl.test")
            .a("2.0.0.127.bl.test", std::net::Ipv4Addr::new(127, 0, 0, 2))
            .start()
            .await
            .unwrap();
        let list = |zone: &str, weight: f64| DnsListConfig {
            zone: zone.into(),
            reply_name: zone.into(),
            sanity_probe: false,
            lookup: Default::default(),
            weight,
            symbol: format!("RCVD_IN_{zone}"),
            codes: vec![],
        };
        let check = DnsLists::new(
            server.resolver().unwrap(),
            vec![list("bl.test", 3.0), list("wl.test", -5.0)],
            true,
        );
        let mut ctx = Context::new(ClientInfo::new("192.0.2.99".parse().unwrap()));
        assert!(matches!(check.run(&mut ctx).await, Decision::Continue));
        assert!(!ctx.client.dns_list_failed);
        assert_eq!(ctx.client.dnsbl_total, 0.0);
        // A silent blocklist still refuses.
        let check = DnsLists::new(server.resolver().unwrap(), vec![list("wl.test", 3.0)], true);
        let mut ctx = Context::new(ClientInfo::new("192.0.2.99".parse().unwrap()));
        assert!(matches!(check.run(&mut ctx).await, Decision::Tempfail(_)));
    }

    /// Regression (review of the DNS lists): the refusal named a list by its
    /// `reply_name`, which is the zone as written when none is set, so a Spamhaus DQS
    /// zone's access key went to every client it refused.
    #[tokio::test]
    async fn the_refusal_names_a_keyed_list_without_its_key() {
        use crate::dns::testing::TestDns;
        use crate::policy::ClientInfo;
        let zone = "s3cr3tkey.zen.dq.spamhaus.net";
        let server = TestDns::builder()
            .a(
                &format!("99.2.0.192.{zone}"),
                std::net::Ipv4Addr::new(127, 0, 0, 2),
            )
            .start()
            .await
            .unwrap();
        let mut keyed = list_of(zone, 5.0, "RCVD_IN_ZEN", vec![]);
        keyed.sanity_probe = false;
        let check = DnsLists::new(server.resolver().unwrap(), vec![keyed], true);
        let mut ctx = Context::new(ClientInfo::new("192.0.2.99".parse().unwrap()));
        assert!(matches!(check.run(&mut ctx).await, Decision::Continue));
        let Decision::Reject(reply) = DnsListVerdict::new(5.0).run(&mut ctx).await else {
            panic!("not refused: {:?}", ctx.client.dnsbl_listed);
        };
        let text = format!("{reply:?}");
        assert!(!text.contains("s3cr3tkey"), "{text}");
        assert!(text.contains("zen.dq.spamhaus.net"), "{text}");
    }
}
