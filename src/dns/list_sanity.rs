//! DNS lists that answer "listed" for everyone: a list shut down by wildcarding its zone
//! (AHBL did in 2015) would score, or refuse, every client. Now and then each list is asked
//! for a name no list may list, an address of TEST-NET-3 (RFC 5737) or a name under the
//! domain `invalid` (RFC 5782 §5), and set aside while it lists it. The name is new each
//! time: an answer cached (here, or by the local resolver, for up to the zone's negative
//! TTL, hours) would keep a list that began listing everyone trusted that long, and one
//! that stopped set aside.

use super::dnsbl::{self, Listing};
use super::{Dns, Outcome};
use crate::config::DnsListConfig;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a list is asked for the name no list may list.
const PROBE_EVERY: Duration = Duration::from_secs(600);
/// Addresses no list may list: documentation only (RFC 5737: TEST-NET-1, -2 and -3), never
/// a mail client; one of 762 each time, so a probe seldom meets the cached answer to an
/// earlier one. Not `127.0.0.1`, RFC 5782's own test point, which a test harness's clients
/// share.
fn never_listed_address() -> Ipv4Addr {
    let [a, b, c] = TEST_NETS[rand::random_range(0..TEST_NETS.len())];
    Ipv4Addr::new(a, b, c, rand::random_range(1..=254))
}

/// The documentation networks (RFC 5737), each a /24.
const TEST_NETS: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];

/// RFC 5782 §5: a domain list must not list `invalid`, nor so any name under it.
fn never_listed_domain() -> String {
    format!("{:016x}.invalid", rand::random::<u64>())
}

/// What a list is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Client addresses (DNSBL, DNSWL).
    Address,
    /// Domains (URIBL, DBL).
    Domain,
}

/// The last probe of each zone.
#[derive(Debug, Default)]
pub(super) struct ListSanity {
    zones: Mutex<HashMap<String, Probe>>,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    /// When the last probe started.
    at: Instant,
    /// The last probe that got an answer found the never-listed name listed.
    lists_everyone: bool,
}

impl ListSanity {
    /// Whether `zone` was last found listing everyone; whether a probe is due now (then
    /// its start is recorded, so one runs at a time).
    fn check(&self, zone: &str) -> (bool, bool) {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match zones.get_mut(zone) {
            Some(probe) if probe.at.elapsed() < PROBE_EVERY => (probe.lists_everyone, false),
            Some(probe) => {
                probe.at = now;
                (probe.lists_everyone, true)
            }
            None => {
                zones.insert(
                    zone.to_owned(),
                    Probe {
                        at: now,
                        lists_everyone: false,
                    },
                );
                (false, true)
            }
        }
    }

    fn record(&self, zone: &str, lists_everyone: bool) -> bool {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let probe = zones.entry(zone.to_owned()).or_insert(Probe {
            at: Instant::now(),
            lists_everyone: false,
        });
        let changed = probe.lists_everyone != lists_everyone;
        probe.lists_everyone = lists_everyone;
        changed
    }
}

/// What a probe's answer says: `Some(true)` listed (the list lists everyone),
/// `Some(false)` not listed, `None` no answer to judge by (a timeout keeps the last word).
fn judge(outcome: &Outcome<Listing>) -> Option<bool> {
    match outcome {
        Outcome::Found(Listing::Listed(_)) => Some(true),
        Outcome::Found(Listing::Unusable(_)) | Outcome::NotFound => Some(false),
        _ => None,
    }
}

impl Dns {
    /// Whether `list` was last found listing a name no list may list: then its answers
    /// mean nothing and the caller skips it. Asks the list again in the background when
    /// the last probe is [`PROBE_EVERY`] old (a list is trusted until a probe says not).
    pub fn lists_everyone(
        &self,
        check: &'static str,
        list: &DnsListConfig,
        kinds: &[ListKind],
    ) -> bool {
        if !list.sanity_probe {
            return false;
        }
        let (lists_everyone, due) = self.inner().list_sanity.check(&list.zone);
        if due {
            // What is asked about, apart from the query name: that holds the zone, and
            // with it an access key the log must not show. A list asked about both
            // addresses and names is probed with both: a domain list answers an address
            // query with a code of its own (Spamhaus DBL's 127.0.1.255), which would
            // otherwise pass for a listing of every address.
            let probes: Vec<(String, String)> = kinds
                .iter()
                .filter_map(|kind| match kind {
                    ListKind::Address => {
                        let address = IpAddr::V4(never_listed_address());
                        Some((address.to_string(), dnsbl::ip_query(address, &list.zone)))
                    }
                    ListKind::Domain => {
                        let domain = never_listed_domain();
                        dnsbl::domain_query(&domain, &list.zone).map(|name| (domain, name))
                    }
                })
                .collect();
            if !probes.is_empty() {
                let dns = self.clone();
                let list = list.clone();
                tokio::spawn(async move { dns.probe_list(check, &list, &probes).await });
            }
        }
        lists_everyone
    }

    /// Asks each `(probe, name)` (`name` is `probe` under the list's zone): the list lists
    /// everyone when it lists any of them; with no answer to any, the last word stands.
    /// The metric and the logs name the list by its
    /// [`public_name`](DnsListConfig::public_name), as its zone may hold a key.
    async fn probe_list(
        &self,
        check: &'static str,
        list: &DnsListConfig,
        probes: &[(String, String)],
    ) {
        let mut verdict: Option<bool> = None;
        let mut listed_probe = "";
        for (probe, name) in probes {
            let outcome = dnsbl::lookup(self, check, name, list).await;
            match judge(&outcome) {
                Some(true) => {
                    verdict = Some(true);
                    listed_probe = probe;
                    break;
                }
                Some(false) => verdict = Some(false),
                None => {}
            }
        }
        let Some(lists_everyone) = verdict else {
            return;
        };
        let probe = listed_probe;
        let changed = self.inner().list_sanity.record(&list.zone, lists_everyone);
        self.inner()
            .metrics
            .dns_list_lists_everyone
            .with_label_values(&[check, list.public_name()])
            .set(i64::from(lists_everyone));
        if changed && lists_everyone {
            tracing::error!(check, list = list.public_name(), probe, "DNS list lists a name no list may list: it answers \"listed\" for everyone (retired, or wildcarded); its answers are ignored until it stops");
        } else if changed {
            tracing::warn!(
                check,
                list = list.public_name(),
                "DNS list no longer lists everyone; its answers count again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_due_once_per_interval_and_its_word_stands() {
        let sanity = ListSanity::default();
        assert_eq!(sanity.check("bl.test"), (false, true), "first use probes");
        assert_eq!(sanity.check("bl.test"), (false, false), "one at a time");
        assert!(sanity.record("bl.test", true));
        assert_eq!(sanity.check("bl.test"), (true, false));
        assert!(!sanity.record("bl.test", true), "no change");
        assert_eq!(sanity.check("other.test"), (false, true), "per zone");
    }

    /// Regression (review): the probe asked one fixed name, whose "not listed" answer the
    /// cache (ours, and the local resolver's) kept for the zone's negative TTL, up to 3 h:
    /// a list that began listing everyone refused every client that long. Each probe asks
    /// a name of its own.
    #[test]
    fn each_probe_asks_a_name_of_its_own() {
        let addresses: std::collections::HashSet<Ipv4Addr> =
            (0..50).map(|_| never_listed_address()).collect();
        assert!(addresses.len() > 1);
        assert!(addresses.iter().all(|a| {
            let [a, b, c, d] = a.octets();
            TEST_NETS.contains(&[a, b, c]) && d != 0 && d != 255
        }));
        let (a, b) = (never_listed_domain(), never_listed_domain());
        assert_ne!(a, b);
        assert!(a.ends_with(".invalid") && b.ends_with(".invalid"));
    }

    /// Regression (review of the DNS lists): `mxguard_dns_list_refused_total` and
    /// `mxguard_dns_list_lists_everyone` were labelled (and their warn/error lines keyed)
    /// with the zone as written, so a Spamhaus DQS zone put the operator's access key in
    /// every `/metrics` scrape. Both series name the list without it.
    #[tokio::test]
    async fn a_keyed_zone_stays_out_of_the_list_metrics() {
        const KEY: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3";
        let server = crate::dns::testing::TestDns::builder()
            .start()
            .await
            .unwrap();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let config = crate::dns::testing::TestDns::dns_config(server.addr());
        let dns = Dns::new(&config, metrics.clone()).unwrap();
        let zone = format!("{KEY}.zen.dq.spamhaus.net");
        let list = DnsListConfig {
            zone: zone.clone(),
            weight: 1.0,
            symbol: "RCVD_IN_ZEN".into(),
            codes: Vec::new(),
            reply_name: zone.clone(),
            sanity_probe: true,
            lookup: Default::default(),
        };
        dns.note_list_refusal("dnsbl", &list, &[Ipv4Addr::new(127, 255, 255, 254)]);
        let probe = Ipv4Addr::new(203, 0, 113, 7);
        let name = dnsbl::ip_query(IpAddr::V4(probe), &zone);
        dns.probe_list("dnsbl", &list, &[(probe.to_string(), name)])
            .await;
        let text = metrics.render();
        let series = |metric: &str| {
            text.lines()
                .filter(|l| l.starts_with(metric))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for metric in [
            "mxguard_dns_list_refused_total{",
            "mxguard_dns_list_lists_everyone{",
        ] {
            let lines = series(metric);
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("zone=\"zen.dq.spamhaus.net\"")),
                "{metric}: {lines:?}"
            );
        }
        assert!(!text.contains(KEY), "the access key is in /metrics");
    }

    #[test]
    fn only_an_answer_judges_a_list() {
        let code = Ipv4Addr::new(127, 0, 0, 2);
        assert_eq!(
            judge(&Outcome::Found(Listing::Listed(vec![code]))),
            Some(true)
        );
        assert_eq!(judge(&Outcome::NotFound), Some(false));
        assert_eq!(
            judge(&Outcome::Found(Listing::Unusable(vec![code]))),
            Some(false)
        );
        assert_eq!(judge(&Outcome::Timeout), None);
    }
}
