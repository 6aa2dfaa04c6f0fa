//! URIBL: the domains of the URLs in a message's text and HTML, reduced to their
//! registrable domain with the public suffix list, deduplicated, capped, and looked up in
//! domain block lists (`example.com.dbl.zone`); and the addresses of links written as IP
//! addresses, looked up reversed in the lists that list them (`lookup = "ips"`). Each
//! listing is a symbol.

use crate::config::{DnsListConfig, UriLookup};
use crate::dns::dnsbl::{self, Listing};
use crate::dns::{Dns, ListKind, Outcome};
use crate::mail::url::{host_address, mailto_address, BothEnds, Link};
use crate::policy::{Check, Context, Decision, Stage};
use async_trait::async_trait;
use std::net::IpAddr;

/// The check's name: its metrics' and logs' `check` label.
pub(crate) const CHECK: &str = "uribl";

/// The URIBL check.
#[derive(Debug)]
pub struct Uribl {
    dns: Dns,
    lists: Vec<DnsListConfig>,
    max_domains: usize,
}

impl Uribl {
    /// Looks up at most `max_domains` domains per message in `lists`.
    pub fn new(dns: Dns, lists: Vec<DnsListConfig>, max_domains: usize) -> Uribl {
        Uribl {
            dns,
            lists,
            max_domains,
        }
    }
}

/// The hosts of a URL (`scheme://[user@]host[:port]/...`) as a browser would open it, or
/// the domains of a `mailto:` link, one for each of its addresses
/// (`mailto:x@spam.example,y@gmail.com` has two, and only the last was looked up;
/// review): character references and percent-escapes decoded, an international name in
/// its ASCII form, lower case; none for URLs without a host or with an IP address as host
/// (domain lists do not list IPs).
fn hosts_of(uri: &str) -> Vec<String> {
    // The link as listed (a browser's reading: markup's references are decoded once
    // already), and once more decoded for a lenient reader; both, as a reference decoded
    // once too often can end the authority early (review: `http://x&sol;@spam.example/`
    // read as the host `x` alone).
    let decoded = crate::rules::decode_entities(uri);
    let mut hosts = hosts_as_written(uri);
    if decoded != uri {
        for host in hosts_as_written(&decoded) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    hosts
}

/// [`hosts_of`] one reading of a link.
fn hosts_as_written(uri: &str) -> Vec<String> {
    match Link::parse(uri) {
        Some(link) => usable_host(link.host).into_iter().collect(),
        // A mail address's domain is listed like a web host's, and looked up alike.
        None => {
            let Some(addresses) = mailto_address(uri) else {
                return Vec::new();
            };
            let addresses: Vec<&str> = addresses.split(',').collect();
            crate::mail::url::both_ends(addresses, MAILTO_ADDRESSES)
                .into_iter()
                .filter_map(|address| address.rsplit_once('@'))
                .filter_map(|(_, domain)| usable_host(domain.trim().to_string()))
                .collect()
        }
    }
}

/// Addresses of one `mailto:` link whose domains are taken (from both ends): a link of
/// thousands of addresses would otherwise fill the collection on its own.
const MAILTO_ADDRESSES: usize = 16;

/// A host as domain lists are asked about it, or `None` for an address or no host.
fn usable_host(host: String) -> Option<String> {
    if host.starts_with('[') {
        return None;
    }
    let host = percent_encoding::percent_decode_str(&host)
        .decode_utf8()
        .ok()?;
    let host = idna::domain_to_ascii(host.trim_end_matches('.')).ok()?;
    // A name no list can be asked about (`www.spammy&`, a reading cut at a reference)
    // takes no slot.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if host.is_empty() || ends_in_a_number(&host) || !host.contains('.') || !host.chars().all(plain)
    {
        return None;
    }
    Some(host)
}

/// True for a host a browser reads as an IPv4 address or refuses: its last label is a
/// number, decimal or `0x` hex (WHATWG URL's "ends in a number"). `1.2.3.04`, `0x7f.0.0.1`
/// and `1.2.3.4.5` were looked up in every URIBL zone as domains `3.04`, `0.1` and `4.5`,
/// each taking a `uribl_max_domains` slot (review).
fn ends_in_a_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// Registrable domains that mail links to in passing (markup namespaces, the largest
/// sites) and that no domain block list lists: they take no lookup (SpamAssassin's
/// `uridnsbl_skip_domain` is for the same).
const NEVER_LISTED: [&str; 16] = [
    "w3.org",
    "openxmlformats.org",
    "purl.org",
    "xmlns.com",
    "schema.org",
    "google.com",
    "microsoft.com",
    "apple.com",
    "yahoo.com",
    "facebook.com",
    "twitter.com",
    "linkedin.com",
    "youtube.com",
    "instagram.com",
    "wikipedia.org",
    "mozilla.org",
];

/// Most distinct domains collected from one message before the pick (a message holds at
/// most so many URIs anyway; this bounds the work).
const COLLECTED_DOMAINS: usize = 4096;

/// Registrable domains of `uris`, deduplicated, at most `max`: the first half of them
/// from the start of the message and the rest from its end, in order of appearance, with
/// [`NEVER_LISTED`] left out. Only the first ones were taken: twenty links to unlisted
/// domains ahead of the spammer's hid it from every list (review). Past
/// [`COLLECTED_DOMAINS`], the first half of them stays and the rest is the latest ones:
/// the collection stopped there, so padding that filled it hid every later link (review).
pub fn registrable_domains(uris: &[String], max: usize) -> Vec<String> {
    let domains = uris
        .iter()
        .flat_map(|uri| hosts_of(uri))
        .filter_map(|host| {
            psl::domain_str(&host)
                .filter(|domain| !NEVER_LISTED.contains(domain))
                .map(str::to_owned)
        });
    distinct_from_both_ends(domains, max)
}

/// The distinct addresses of links whose host is an IP address, as a browser reads the
/// host (`http://3325256711/` is 198.51.100.7), at most `max`, from both ends like the
/// domains. Addresses no list can list (loopback, private, link-local) take no lookup.
pub fn link_addresses(uris: &[String], max: usize) -> Vec<IpAddr> {
    let addresses = uris.iter().flat_map(|uri| {
        // Both readings, as for the domains (see `hosts_of`).
        let decoded = crate::rules::decode_entities(uri);
        [address_of(uri), address_of(&decoded)]
            .into_iter()
            .flatten()
            .filter(|&address| is_listable(address))
    });
    distinct_from_both_ends(addresses, max)
}

/// The distinct `items`, at most `max`, from both ends: while reading, at most
/// [`COLLECTED_DOMAINS`] are held (the first half and the latest; one that left may come
/// back), so padding ahead of the spammer's link does not push it out.
fn distinct_from_both_ends<T: Eq + std::hash::Hash + Clone>(
    items: impl IntoIterator<Item = T>,
    max: usize,
) -> Vec<T> {
    let mut kept = BothEnds::new(COLLECTED_DOMAINS);
    let mut held = std::collections::HashSet::new();
    for item in items {
        if !held.insert(item.clone()) {
            continue;
        }
        if let Some(gone) = kept.push(item) {
            held.remove(&gone);
        }
    }
    crate::mail::url::both_ends(kept.into_vec(), max)
}

/// The address a web link's host is, in its canonical form (an IPv4-mapped IPv6 address
/// as the IPv4 one a browser connects to).
fn address_of(uri: &str) -> Option<IpAddr> {
    let link = Link::parse(uri)?;
    if !link.is_web() {
        return None;
    }
    // Escapes are decoded in a name; a browser refuses them in an IPv6 literal.
    let host = if link.host.starts_with('[') {
        std::borrow::Cow::Borrowed(link.host.as_str())
    } else {
        percent_encoding::percent_decode_str(&link.host)
            .decode_utf8()
            .ok()?
    };
    host_address(&host).map(|address| address.to_canonical())
}

/// Whether a public list can list `address`: not one no host on the internet has. The
/// documentation networks stay: nothing is lost by asking, and tests use them.
fn is_listable(address: IpAddr) -> bool {
    !crate::net::scope::is_special_purpose(address)
}

#[async_trait]
impl Check for Uribl {
    fn name(&self) -> &'static str {
        CHECK
    }

    fn stage(&self) -> Stage {
        Stage::Data
    }

    async fn run(&self, ctx: &mut Context) -> Decision {
        let view = ctx.view();
        let wanted = |asks: fn(UriLookup) -> bool| self.lists.iter().any(|l| asks(l.lookup));
        let domains = if wanted(UriLookup::domains) {
            registrable_domains(view.uris(), self.max_domains)
        } else {
            Vec::new()
        };
        let addresses = if wanted(UriLookup::addresses) {
            link_addresses(view.uris(), self.max_domains)
        } else {
            Vec::new()
        };
        if domains.is_empty() && addresses.is_empty() {
            return Decision::Continue;
        }
        let mut queries = Vec::new();
        for list in &self.lists {
            // A list that lists everyone (retired, wildcarded) means nothing. It is probed
            // with what it is asked about: a name, an address, or both.
            let kinds: &[ListKind] = match list.lookup {
                UriLookup::Domains => &[ListKind::Domain],
                UriLookup::Ips => &[ListKind::Address],
                UriLookup::Both => &[ListKind::Domain, ListKind::Address],
            };
            if self.dns.lists_everyone(CHECK, list, kinds) {
                continue;
            }
            if list.lookup.domains() {
                for domain in &domains {
                    if let Some(name) = dnsbl::domain_query(domain, &list.zone) {
                        queries.push((list, name));
                    }
                }
            }
            if list.lookup.addresses() {
                for &address in &addresses {
                    queries.push((list, dnsbl::ip_query(address, &list.zone)));
                }
            }
        }
        let lookups = queries.iter().map(|(list, name)| {
            let dns = self.dns.clone();
            async move { dnsbl::lookup(&dns, CHECK, name, list).await }
        });
        let outcomes = crate::dns::all_within(self.dns.deadline(ctx.deadline), lookups).await;
        let mut hit: Vec<String> = Vec::new();
        for ((list, _), outcome) in queries.iter().zip(outcomes) {
            match outcome {
                Outcome::Found(Listing::Listed(codes)) => {
                    for symbol in list.symbols_for(&codes) {
                        if !hit.contains(&symbol) {
                            hit.push(symbol);
                        }
                    }
                }
                Outcome::Found(Listing::Unusable(_)) | Outcome::NotFound => {}
                _ => ctx.uri_list_failed = true,
            }
        }
        for symbol in hit {
            ctx.hit(&symbol, 0.0);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first of [`hosts_of`].
    fn host_of(uri: &str) -> Option<String> {
        hosts_of(uri).into_iter().next()
    }

    #[test]
    fn hosts_are_reduced_to_registrable_domains_once() {
        let uris: Vec<String> = [
            "http://www.Spammy.example.co.uk/buy?x=1",
            "https://user:pw@shop.spammy.example.co.uk:8080/",
            "http://192.0.2.1/x",
            "mailto:someone@example.org",
            "http://localhost/",
            "https://a.b.example.com./path",
            "http://[2001:db8::1]/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            registrable_domains(&uris, 10),
            ["example.co.uk", "example.org", "example.com"]
        );
        assert_eq!(registrable_domains(&uris, 1), ["example.co.uk"]);
    }

    /// Regression (review): hosts a browser reads as IPv4 addresses (leading zeros, hex)
    /// or refuses (a numeric last label) were looked up as domains.
    #[test]
    fn numeric_hosts_are_no_domains() {
        let uris: Vec<String> = [
            "http://1.2.3.04/x",
            "http://192.168.001.001/",
            "http://0x7f.0.0.1/",
            "http://1.2.3.4.5/",
            "http://10.0.0.1/",
            "http://spam4u.example/",
            "http://1.2.3.4.example/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            registrable_domains(&uris, 10),
            ["spam4u.example", "4.example"]
        );
    }

    /// Regression (review of this stop's diff): a reference decoded once more than a
    /// browser decodes it ended the authority early: `http://x&sol;@spam.example/` was
    /// looked up as the host `x` alone.
    #[test]
    fn a_reference_in_the_userinfo_does_not_hide_the_host() {
        assert_eq!(
            registrable_domains(&["http://x&sol;@www.spam.example/".to_string()], 10),
            ["spam.example"]
        );
    }

    /// Regression (review): a host written with character references or percent-escapes,
    /// which a browser decodes, was looked up as written and never matched its listing.
    #[test]
    fn hosts_are_looked_up_as_a_browser_opens_them() {
        let uris: Vec<String> = [
            "http://www.spammy&#46;test/",
            "http://www.spammy%2Etest/",
            "http://www&#x2e;SPAMMY&#46;test/",
            // Regression (review): without the `;` (a browser needs none) the reference
            // stayed literal and the host was cut at its `#`: never looked up.
            "http://spammer&#46test/buy",
            "http://bücher.example/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let hosts: Vec<Option<String>> = uris.iter().map(|u| host_of(u)).collect();
        assert_eq!(
            hosts,
            [
                Some("www.spammy.test".to_string()),
                Some("www.spammy.test".to_string()),
                Some("www.spammy.test".to_string()),
                Some("spammer.test".to_string()),
                Some("xn--bcher-kva.example".to_string()),
            ]
        );
        // An escape that hides an address is still an address, not a domain.
        assert_eq!(host_of("http://192.0.2%2E1/"), None);
    }

    /// Regression (review): of a `mailto:` link to several addresses only the last
    /// address's domain was looked up.
    #[test]
    fn every_address_of_a_mailto_link_is_looked_up() {
        let uris = vec!["mailto:x@spam.example,y@mail.example?subject=hi".to_string()];
        assert_eq!(
            registrable_domains(&uris, 10),
            ["spam.example", "mail.example"]
        );
    }

    /// Links written as IP addresses, in any form a browser opens, are looked up once
    /// each; addresses every network has are not.
    #[test]
    fn addresses_of_links_are_read_as_a_browser_opens_them() {
        let uris: Vec<String> = [
            "http://198.51.100.7/buy",
            "http://3325256711/again",
            "http://0xc6.0x33.0x64.7/",
            "http://198.51.100&#46;8/",
            "http://198.51.100%2E9/",
            "http://[2001:db8::7]/",
            "http://[::ffff:198.51.100.7]/",
            "http://x&sol;@198.51.100.11/",
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://[::ffff:10.1.2.3]/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://0.1.2.3/",
            "http://[2001%3adb8::8]/",
            "foo://198.51.100.12/",
            "http://spam.example/",
            "mailto:a@[198.51.100.10]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let found: Vec<String> = link_addresses(&uris, 20)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "198.51.100.7",
                "198.51.100.8",
                "198.51.100.9",
                "2001:db8::7",
                "198.51.100.11"
            ]
        );
        assert_eq!(link_addresses(&uris, 2).len(), 2);
        assert!(link_addresses(&uris, 0).is_empty());
    }

    /// Regression (review): `uribl_max_domains = 0` still looked up the first domain.
    #[test]
    fn the_domain_cap_holds_at_zero() {
        let uris = vec![
            "http://a.example/".to_string(),
            "http://b.example/".to_string(),
        ];
        assert!(registrable_domains(&uris, 0).is_empty());
        assert_eq!(registrable_domains(&uris, 1), ["a.example"]);
        assert_eq!(registrable_domains(&uris, 5), ["a.example", "b.example"]);
    }

    /// Regression (review): only the first `uribl_max_domains` domains were looked up, so
    /// twenty links to unlisted domains (or to w3.org and the like) ahead of the spammer's
    /// hid it. Domains no list lists take no lookup, and the pick takes both ends.
    #[test]
    fn padding_ahead_of_the_spammers_domain_does_not_hide_it() {
        let mut uris: Vec<String> = (0..30).map(|n| format!("http://pad{n}.example/")).collect();
        uris.push("https://www.w3.org/1999/xhtml".to_string());
        uris.push("http://buy.spammer.test/now".to_string());
        let picked = registrable_domains(&uris, 20);
        assert_eq!(picked.len(), 20);
        assert!(picked.contains(&"spammer.test".to_string()), "{picked:?}");
        assert!(!picked.contains(&"w3.org".to_string()), "{picked:?}");
        assert_eq!(picked[0], "pad0.example");
    }

    /// Regression (review): one `mailto:` of thousands of addresses on distinct domains
    /// filled the collection on its own, and it stopped there: the spammer's link after it
    /// was never looked up. Both ends of such a link count, and past the collection's
    /// bound the latest domains replace the older ones after its first half.
    #[test]
    fn a_link_that_fills_the_collection_does_not_hide_the_links_after_it() {
        let addresses: Vec<String> = (0..4100).map(|n| format!("a@p{n}.test")).collect();
        let mut uris = vec![format!("mailto:{}", addresses.join(","))];
        uris.push("http://buy.spammer.example/".to_string());
        let picked = registrable_domains(&uris, 20);
        assert!(
            picked.contains(&"spammer.example".to_string()),
            "{picked:?}"
        );
        assert!(picked.contains(&"p4099.test".to_string()), "{picked:?}");
        // Twice as many links as fill it, each to its own domain: a domain of the first
        // half is looked up once; the last link counts also when its domain appeared in
        // between and was pushed out since.
        let mut uris: Vec<String> = vec!["http://spammer.example/".to_string()];
        uris.extend((0..COLLECTED_DOMAINS * 2).map(|n| format!("http://p{n}.test/")));
        uris.push("http://www.spammer.example/".to_string());
        let picked = registrable_domains(&uris, 20);
        assert_eq!(picked[0], "spammer.example");
        assert_eq!(picked.iter().filter(|d| *d == "spammer.example").count(), 1);
        let mut uris: Vec<String> = (0..COLLECTED_DOMAINS)
            .map(|n| format!("http://p{n}.test/"))
            .collect();
        uris.push("http://spammer.example/".to_string());
        uris.extend((0..COLLECTED_DOMAINS).map(|n| format!("http://q{n}.test/")));
        uris.push("http://spammer.example/again".to_string());
        let picked = registrable_domains(&uris, 20);
        assert_eq!(
            picked.last().map(String::as_str),
            Some("spammer.example"),
            "{picked:?}"
        );
    }

    /// Regression (review): browsers (WHATWG URL) treat `\` as `/` in http(s)/ftp URLs,
    /// skip any run of slashes after the scheme, and drop ASCII tabs and newlines; a link
    /// written that way opened the spammer's host while the lookup went to another one
    /// (or none). The forms themselves are `mail::url`'s tests; here, that the lookup reads
    /// links through it, after character references are decoded.
    #[test]
    fn hosts_hidden_by_browser_url_normalisation_are_found() {
        for uri in [
            "http://spam.example\\@good.example/",
            "http://spam&#9;.example/",
        ] {
            assert_eq!(host_of(uri).as_deref(), Some("spam.example"), "{uri:?}");
        }
    }
}
