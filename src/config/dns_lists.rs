//! DNS list entries of `[[policy.dnsbl]]` and `[[policy.uribl]]`: zone, weight, symbol and
//! the return-code map.

use super::problems::{is_plausible_hostname, is_symbol, Problems};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// One DNS list (DNSBL, or DNSWL with a negative weight).
#[derive(Debug, Clone)]
pub struct DnsListConfig {
    /// Zone queried as `reversed-ip.zone`.
    pub zone: String,
    /// Contribution to the weighted total (negative: allowlist).
    pub weight: f64,
    /// Symbol for a listing no code map entry names.
    pub symbol: String,
    /// Return codes → symbols and weights (`"127.0.0.2"`, `"127.0.0.[2..11]"`, `"&4"`, `"*"`).
    pub codes: Vec<CodeEntry>,
    /// How the DNSBL refusal names the list to the client: `reply_name`, else the zone. A
    /// zone with an access key in it (Spamhaus DQS, Abusix) must not be sent to spammers.
    pub reply_name: String,
    /// Whether the list is asked, now and then, for a name no list may list (see
    /// `dns::list_sanity`): off for a list that lists documentation addresses by design
    /// (a bogon list).
    pub sanity_probe: bool,
    /// URIBL only: whether the list is asked about links' domains, their IP addresses, or
    /// both.
    pub lookup: UriLookup,
}

/// What a URIBL is asked about. Domain lists (Spamhaus DBL) list names only; SURBL and
/// URIBL.com's lists also list the addresses of links written as IP addresses, and an IP
/// list (Spamhaus ZEN, SBL) lists the hosts that serve spam sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UriLookup {
    /// The registrable domains of the links' hosts.
    #[default]
    Domains,
    /// The addresses of links whose host is an IP address, reversed as a DNSBL is asked.
    Ips,
    /// Both.
    Both,
}

impl UriLookup {
    /// Whether the list is asked about domains.
    pub fn domains(self) -> bool {
        matches!(self, UriLookup::Domains | UriLookup::Both)
    }

    /// Whether the list is asked about IP addresses.
    pub fn addresses(self) -> bool {
        matches!(self, UriLookup::Ips | UriLookup::Both)
    }
}

/// One entry of a list's code map.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeEntry {
    /// The return codes it covers.
    pub matches: CodeMatch,
    /// The symbol a listing with one of them scores.
    pub symbol: String,
    /// Its weight toward `dnsbl_threshold` instead of the list's (postscreen's
    /// `zone=127.0.0.[10..11]*1`): Spamhaus ZEN's policy listings (PBL, dynamic
    /// addresses) can count less than its spam sources, or nothing.
    pub weight: Option<f64>,
}

/// The domains of lists whose zone starts with the subscriber's access key
/// (`KEY.zen.dq.spamhaus.net`, Spamhaus DQS; `KEY.combined.mail.abusix.zone`, Abusix).
const KEYED_LIST_DOMAINS: [&str; 2] = [".dq.spamhaus.net", ".mail.abusix.zone"];

impl DnsListConfig {
    /// How `/metrics` labels and logs name the list: its `reply_name` when one is written
    /// (the name an operator gives a keyed zone, see the README), else its zone, without
    /// the leading access key of a Spamhaus DQS or Abusix zone (a URIBL cannot have a
    /// `reply_name`). Metrics and logs are scraped and shipped where the key, which buys
    /// queries on the operator's account, must not go.
    pub fn public_name(&self) -> &str {
        if self.reply_name != self.zone {
            return &self.reply_name;
        }
        without_access_key(&self.zone)
    }

    /// Whether one of the list's code map entries names `code` itself (see
    /// [`CodeMatch::names`]): then it is a listing here even where it is none in general.
    pub fn names(&self, code: Ipv4Addr) -> bool {
        self.codes.iter().any(|e| e.matches.names(code))
    }

    /// The most a listing on this list could lower the client's total (0 for a
    /// blocklist): what an allowlist that gave no answer might have taken off.
    pub fn most_lowering_weight(&self) -> f64 {
        self.codes
            .iter()
            .filter_map(|e| e.weight)
            .fold(self.weight.min(0.0), f64::min)
    }

    /// Whether a listing on this list could raise the client's total (a blocklist, or a
    /// list with a code that weighs against the client).
    pub fn may_raise(&self) -> bool {
        self.weight > 0.0 || self.codes.iter().filter_map(|e| e.weight).any(|w| w > 0.0)
    }

    /// What a listing with return `codes` adds to the client's total: each code weighs
    /// what a matching code map entry gives (the largest in size when several do), else
    /// the list's weight, and the answer weighs its heaviest code, so an answer listing
    /// both a spam source and a policy range counts as the source.
    pub fn weight_for(&self, codes: &[Ipv4Addr]) -> f64 {
        // Each code weighs what its entry says, else what the list says; the answer
        // weighs its heaviest code (review: a spam source also in a policy range took
        // the policy range's lighter weight).
        let by_size = |a: &f64, b: &f64| a.abs().total_cmp(&b.abs());
        codes
            .iter()
            .map(|code| {
                self.codes
                    .iter()
                    .filter(|e| e.matches.matches(*code))
                    .filter_map(|e| e.weight)
                    .max_by(by_size)
                    .unwrap_or(self.weight)
            })
            .max_by(by_size)
            .unwrap_or(self.weight)
    }

    /// The symbols a listing with return `codes` earns: every symbol a code map entry
    /// matching one of the codes names (a bitmask list's answer can carry several), and
    /// the list's default symbol for a code no entry matches, as [`Self::weight_for`]
    /// weighs each code. DNSBL and URIBL read the map alike.
    pub fn symbols_for(&self, codes: &[Ipv4Addr]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |symbol: &String| {
            if !out.contains(symbol) {
                out.push(symbol.clone());
            }
        };
        for code in codes {
            let mut named = false;
            for entry in self.codes.iter().filter(|e| e.matches.matches(*code)) {
                named = true;
                add(&entry.symbol);
            }
            // A spam source also in a named policy range kept only the range's symbol,
            // while it weighed as the source (review).
            if !named {
                add(&self.symbol);
            }
        }
        if out.is_empty() {
            out.push(self.symbol.clone());
        }
        out
    }
}

/// Which return codes a list entry matches, like postscreen's `zone=127.0.0.[2..11]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeMatch {
    /// Any return code (`*`, or no filter).
    Any,
    /// One exact code, `127.0.0.2`.
    Exact(Ipv4Addr),
    /// An inclusive range of the last octet under `127.0.0.`, `127.0.0.[2..11]`.
    LastOctet(u8, u8),
    /// An inclusive range of the last octet under another `127.A.B.`, such as Spamhaus
    /// DBL's `127.0.1.[2..99]`.
    OctetRange([u8; 3], u8, u8),
    /// Any code with one of these bits set in the last octet, `&4` (bitmask lists such as
    /// SURBL's multi zone).
    Mask(u8),
}

/// True for answers that are listings: `127.0.0.0/8`, except `127.0.0.1` (what URIBL-style
/// lists answer to a query they refuse), `127.0.0.255` (dnswl.org's answer to a querier it
/// blocks) and `127.255.255.0/24` (list error codes).
pub fn is_return_code(a: Ipv4Addr) -> bool {
    let [first, b, c, _] = a.octets();
    first == 127 && !is_listing_by_name(a) && !(b == 255 && c == 255)
}

/// `127.0.0.1` and `127.0.0.255`, which a list's `codes` may name to say they are listings
/// there (a DNSWL such as hostkarma's answers `127.0.0.1` for its whitelist); otherwise
/// they are a refusal to answer, which must never be read as a listing: on an allowlist,
/// whose weight is negative, it would vouch for every client.
fn is_listing_by_name(a: Ipv4Addr) -> bool {
    a == Ipv4Addr::new(127, 0, 0, 1) || a == Ipv4Addr::new(127, 0, 0, 255)
}

impl CodeMatch {
    /// True when this entry names `code` itself (one code or a range), as opposed to a
    /// mask or `*`: such an entry makes `127.0.0.1` a listing for its list.
    pub fn names(&self, code: Ipv4Addr) -> bool {
        matches!(
            self,
            CodeMatch::Exact(_) | CodeMatch::LastOctet(..) | CodeMatch::OctetRange(..)
        ) && self.matches(code)
    }

    /// True when `code` matches.
    pub fn matches(&self, code: Ipv4Addr) -> bool {
        let [a, b, c, d] = code.octets();
        match *self {
            CodeMatch::Any => true,
            CodeMatch::Exact(exact) => code == exact,
            CodeMatch::LastOctet(lo, hi) => (a, b, c) == (127, 0, 0) && (lo..=hi).contains(&d),
            CodeMatch::OctetRange(net, lo, hi) => [a, b, c] == net && (lo..=hi).contains(&d),
            CodeMatch::Mask(mask) => d & mask != 0,
        }
    }
}

impl FromStr for CodeMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<CodeMatch, String> {
        let s = s.trim();
        if s == "*" || s.is_empty() {
            return Ok(CodeMatch::Any);
        }
        if let Some(mask) = s.strip_prefix('&') {
            let mask = match mask.strip_prefix("0x") {
                Some(hex) => u8::from_str_radix(hex, 16),
                None => mask.parse(),
            };
            return match mask {
                Ok(m) if m != 0 => Ok(CodeMatch::Mask(m)),
                _ => Err(format!("bad return-code mask {s:?}")),
            };
        }
        if let Some((net, range)) = s.strip_suffix(']').and_then(|r| r.split_once(".[")) {
            let bad = || format!("bad return-code range {s:?} (want 127.A.B.[LO..HI])");
            let net: Vec<u8> = net
                .split('.')
                .map(|octet| octet.trim().parse::<u8>().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            let net: [u8; 3] = net.try_into().map_err(|_| bad())?;
            let (lo, hi) = range.split_once("..").ok_or_else(bad)?;
            let lo: u8 = lo.trim().parse().map_err(|_| bad())?;
            let hi: u8 = hi.trim().parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(format!("empty return-code range {s:?}"));
            }
            let [a, b, c] = net;
            return match net {
                [127, 0, 0] => Ok(CodeMatch::LastOctet(lo, hi)),
                _ if is_return_code(Ipv4Addr::new(a, b, c, lo)) => {
                    Ok(CodeMatch::OctetRange(net, lo, hi))
                }
                _ => Err(format!(
                    "return code range {s:?} is never a listing (only 127.0.0.0/8 is; \
                     127.255.255.x is a list error)"
                )),
            };
        }
        let code = s.parse::<Ipv4Addr>().map_err(|_| {
            format!("bad return code {s:?} (want 127.0.0.N, 127.A.B.[LO..HI], &MASK or *)")
        })?;
        if !is_return_code(code) && !is_listing_by_name(code) {
            return Err(format!(
                "return code {s:?} is never a listing (only 127.0.0.0/8 is; 127.255.255.x is a \
                 list error)"
            ));
        }
        Ok(CodeMatch::Exact(code))
    }
}

/// A DNS query name as logs may show it: the access key of a [`KEYED_LIST_DOMAINS`] list
/// (the label before the list's name, `2.0.0.127.KEY.zen.dq.spamhaus.net`) replaced by
/// `<key>`; any other name as it is.
pub fn query_name_for_logs(name: &str) -> String {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    for domain in KEYED_LIST_DOMAINS {
        let Some(before) = lower.strip_suffix(domain) else {
            continue;
        };
        let mut labels: Vec<&str> = before.split('.').collect();
        // The last label is the list's name (`zen`, `combined`); the one before, the key.
        if labels.len() >= 2 {
            let key = labels.len() - 2;
            labels[key] = "<key>";
            return format!("{}{domain}", labels.join("."));
        }
    }
    name.to_string()
}

/// `zone` without the access key a list of [`KEYED_LIST_DOMAINS`] starts with
/// (`KEY.zen.dq.spamhaus.net` → `zen.dq.spamhaus.net`); any other zone as it is.
fn without_access_key(zone: &str) -> &str {
    match zone.split_once('.') {
        Some((_key, list))
            if KEYED_LIST_DOMAINS
                .iter()
                .any(|domain| list.len() > domain.len() && list.ends_with(domain)) =>
        {
            list
        }
        _ => zone,
    }
}

/// One list entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnsList {
    zone: String,
    #[serde(default)]
    weight: f64,
    symbol: String,
    #[serde(default)]
    codes: BTreeMap<String, RawCode>,
    #[serde(default)]
    reply_name: Option<String>,
    #[serde(default = "probed")]
    sanity_probe: bool,
    #[serde(default)]
    lookup: Option<UriLookup>,
}

fn probed() -> bool {
    true
}

/// A code map entry as written: a symbol, or a symbol and a weight.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCode {
    Symbol(String),
    Entry(RawCodeEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCodeEntry {
    symbol: String,
    weight: Option<f64>,
}

/// Validates the lists of one section (`policy.dnsbl`, `policy.uribl`).
pub(super) fn validate(
    section: &str,
    raw: Vec<RawDnsList>,
    problems: &mut Problems,
) -> Vec<DnsListConfig> {
    let mut lists = Vec::new();
    for (i, list) in raw.into_iter().enumerate() {
        let key = format!("{section}[{i}]");
        let zone = super::problems::domain_key(&list.zone);
        if !is_plausible_hostname(&zone) {
            problems.bad(&format!("{key}.zone"), "must be a domain name");
        }
        if !list.weight.is_finite() {
            problems.bad(&format!("{key}.weight"), "must be a number");
        }
        if !is_symbol(&list.symbol) {
            problems.bad(
                &format!("{key}.symbol"),
                "must be an upper-case symbol name like RCVD_IN_EXAMPLE",
            );
        }
        let mut codes = Vec::new();
        for (code, raw) in list.codes {
            let (symbol, weight) = match raw {
                RawCode::Symbol(symbol) => (symbol, None),
                RawCode::Entry(entry) => (entry.symbol, entry.weight),
            };
            let where_ = format!("{key}.codes.{code}");
            match weight {
                Some(_) if section != "policy.dnsbl" => problems.bad(
                    &where_,
                    "only a DNSBL (policy.dnsbl) weighs its codes toward dnsbl_threshold",
                ),
                Some(w) if !w.is_finite() => problems.bad(&where_, "weight must be a number"),
                _ => {}
            }
            match code.parse::<CodeMatch>() {
                Ok(matches) if is_symbol(&symbol) => codes.push(CodeEntry {
                    matches,
                    symbol,
                    weight,
                }),
                Ok(_) => problems.bad(&where_, "symbol must be an upper-case name"),
                Err(e) => problems.bad(&where_, &e),
            }
        }
        let printable = |c: char| c.is_ascii_graphic() || c == ' ';
        match &list.reply_name {
            Some(_) if section != "policy.dnsbl" => problems.bad(
                &format!("{key}.reply_name"),
                "only a DNSBL (policy.dnsbl) names its list in a refusal",
            ),
            Some(name) if name.is_empty() || name.len() > 100 || !name.chars().all(printable) => {
                problems.bad(
                    &format!("{key}.reply_name"),
                    "must be 1 to 100 printable ASCII characters",
                )
            }
            _ => {}
        }
        if list.lookup.is_some() && section != "policy.uribl" {
            problems.bad(
                &format!("{key}.lookup"),
                "only a URIBL (policy.uribl) is asked about links",
            );
        }
        let reply_name = list.reply_name.unwrap_or_else(|| zone.clone());
        lists.push(DnsListConfig {
            zone,
            weight: list.weight,
            symbol: list.symbol,
            codes,
            reply_name,
            sanity_probe: list.sanity_probe,
            lookup: list.lookup.unwrap_or_default(),
        });
    }
    // Metrics, logs and refusals tell the lists of a section apart by this name: two lists
    // sharing it would add up in one series and read as one list in the logs.
    // Only a DNSBL may have a `reply_name`; a URIBL's name is its zone, given once.
    let remedy = if section == "policy.dnsbl" {
        "give one a reply_name of its own"
    } else {
        "write the zone once, with every code in its codes"
    };
    for (i, list) in lists.iter().enumerate() {
        let name = list.public_name();
        if let Some(j) = lists[..i].iter().position(|l| l.public_name() == name) {
            problems.bad(
                &format!("{section}[{i}]"),
                &format!(
                    "names the same list as {section}[{j}] (\"{name}\"), the name metrics and logs tell lists apart by: {remedy}"
                ),
            );
        }
    }
    lists
}

#[cfg(test)]
mod tests {
    /// Regression: two lists of a section under one name (the same zone twice, or a
    /// `reply_name` written twice) shared one metric series and one name in the logs.
    #[test]
    fn two_lists_of_a_section_may_not_share_a_name() {
        use super::super::problems::Problems;
        let check_in = |section: &str, entries: &[&str]| {
            let raw = entries.iter().map(|e| toml::from_str(e).unwrap()).collect();
            let mut problems = Problems::default();
            super::validate(section, raw, &mut problems);
            problems.into_lines()
        };
        let check = |entries: &[&str]| check_in("policy.dnsbl", entries);
        let same_zone = check(&[
            "zone = \"a.test\"\nsymbol = \"A\"",
            "zone = \"A.test.\"\nsymbol = \"B\"",
        ]);
        assert!(
            same_zone
                .iter()
                .any(|p| p.contains("policy.dnsbl[1]") && p.contains("policy.dnsbl[0]")),
            "{same_zone:?}"
        );
        let same_reply_name = check(&[
            "zone = \"k1.zen.dq.spamhaus.net\"\nsymbol = \"A\"\nreply_name = \"zen\"",
            "zone = \"b.test\"\nsymbol = \"B\"\nreply_name = \"zen\"",
        ]);
        assert!(
            same_reply_name.iter().any(|p| p.contains("\"zen\"")),
            "{same_reply_name:?}"
        );
        assert!(
            !same_reply_name.iter().any(|p| p.contains("k1")),
            "no key in the message"
        );
        let distinct = check(&[
            "zone = \"a.test\"\nsymbol = \"A\"",
            "zone = \"b.test\"\nsymbol = \"B\"",
        ]);
        assert!(distinct.is_empty(), "{distinct:?}");
        // Regression (review of this stop's diff): a URIBL was told to take a reply_name,
        // which a URIBL is refused.
        let uribl = check_in(
            "policy.uribl",
            &[
                "zone = \"u.test\"\nsymbol = \"A\"",
                "zone = \"u.test\"\nsymbol = \"B\"",
            ],
        );
        assert!(
            uribl.len() == 1 && uribl[0].contains("policy.uribl[1]"),
            "{uribl:?}"
        );
        assert!(!uribl[0].contains("reply_name"), "{uribl:?}");
    }

    /// Only a URIBL is asked about links; a DNSBL given `lookup` is refused by name, and an
    /// unknown kind is a parse error.
    #[test]
    fn only_a_uribl_takes_a_lookup() {
        use super::super::problems::Problems;
        let validate = |section: &str, entry: &str| {
            let raw = vec![toml::from_str(entry).unwrap()];
            let mut problems = Problems::default();
            let lists = super::validate(section, raw, &mut problems);
            (lists, problems.into_lines())
        };
        let entry = "zone = \"multi.test\"\nsymbol = \"M\"\nlookup = \"both\"";
        let (lists, problems) = validate("policy.uribl", entry);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(lists[0].lookup, super::UriLookup::Both);
        let (_, problems) = validate("policy.dnsbl", entry);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("policy.dnsbl[0].lookup")),
            "{problems:?}"
        );
        let plain = "zone = \"dbl.test\"\nsymbol = \"D\"";
        assert_eq!(
            validate("policy.uribl", plain).0[0].lookup,
            super::UriLookup::Domains
        );
        let odd = "zone = \"a.test\"\nsymbol = \"A\"\nlookup = \"hosts\"";
        assert!(toml::from_str::<super::RawDnsList>(odd).is_err());
    }

    /// Regression (review of this stop's diff): the resolver's failure logs named the
    /// query in full, and a keyed list's query carries its access key.
    #[test]
    fn query_names_are_logged_without_an_access_key() {
        assert_eq!(
            super::query_name_for_logs("2.0.0.127.S3cr3t.zen.dq.spamhaus.net."),
            "2.0.0.127.<key>.zen.dq.spamhaus.net"
        );
        assert_eq!(
            super::query_name_for_logs("example.com.k3y.dbl.dq.spamhaus.net"),
            "example.com.<key>.dbl.dq.spamhaus.net"
        );
        assert_eq!(
            super::query_name_for_logs("2.0.0.127.k.combined.mail.abusix.zone"),
            "2.0.0.127.<key>.combined.mail.abusix.zone"
        );
        assert_eq!(
            super::query_name_for_logs("2.0.0.127.zen.spamhaus.org."),
            "2.0.0.127.zen.spamhaus.org."
        );
    }

    use super::*;

    #[test]
    fn the_reply_names_a_list_by_its_reply_name_or_its_zone() {
        let lists = |text: &str| {
            let raw: Vec<RawDnsList> = vec![toml::from_str(text).unwrap()];
            let mut problems = Problems::default();
            let lists = validate("policy.dnsbl", raw, &mut problems);
            (lists, problems.into_lines())
        };
        let (keyed, problems) =
            lists("zone = \"KEY.zen.dq.test\"\nsymbol = \"X\"\nreply_name = \"zen.test\"");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(keyed[0].reply_name, "zen.test");
        let (plain, _) = lists("zone = \"Zen.Test.\"\nsymbol = \"X\"");
        assert_eq!(plain[0].reply_name, "zen.test");
        for bad in ["\"\"", "\"a\\r\\nb\"", "\"caf\u{e9}\""] {
            let (_, problems) = lists(&format!(
                "zone = \"z.test\"\nsymbol = \"X\"\nreply_name = {bad}"
            ));
            assert!(
                problems.iter().any(|p| p.contains("reply_name")),
                "{bad}: {problems:?}"
            );
        }
        // A long zone of its own is no problem of a key not written.
        let long_zone = format!("{}.{}.test", "a".repeat(60), "b".repeat(60));
        let (_, problems) = lists(&format!("zone = \"{long_zone}\"\nsymbol = \"X\""));
        assert!(problems.is_empty(), "{problems:?}");
        let raw: Vec<RawDnsList> =
            vec![toml::from_str("zone = \"u.test\"\nsymbol = \"X\"\nreply_name = \"u\"").unwrap()];
        let mut problems = Problems::default();
        validate("policy.uribl", raw, &mut problems);
        assert!(!problems.is_empty(), "reply_name taken on a URIBL");
    }

    /// Regression (review of the DNS lists): `/metrics` labels and logs named a list by
    /// its zone as written, so a Spamhaus DQS or Abusix zone put the operator's access key
    /// in every scrape and log shipment. The name they use never holds the key.
    #[test]
    fn the_name_in_metrics_and_logs_holds_no_access_key() {
        const KEY: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3";
        let list = |section: &str, text: &str| {
            let raw: Vec<RawDnsList> = vec![toml::from_str(text).unwrap()];
            let mut problems = Problems::default();
            let lists = validate(section, raw, &mut problems);
            assert!(problems.is_empty(), "{text}: {:?}", problems.into_lines());
            lists.into_iter().next().unwrap()
        };
        let named = list(
            "policy.dnsbl",
            &format!("zone = \"{KEY}.zen.dq.spamhaus.net\"\nsymbol = \"X\"\nreply_name = \"zen.spamhaus.org\""),
        );
        assert_eq!(named.public_name(), "zen.spamhaus.org");
        for (section, zone, name) in [
            ("policy.dnsbl", "zen.dq.spamhaus.net", "zen.dq.spamhaus.net"),
            ("policy.uribl", "dbl.dq.spamhaus.net", "dbl.dq.spamhaus.net"),
            (
                "policy.dnsbl",
                "combined.mail.abusix.zone",
                "combined.mail.abusix.zone",
            ),
        ] {
            let keyed = list(section, &format!("zone = \"{KEY}.{zone}\"\nsymbol = \"X\""));
            assert_eq!(keyed.public_name(), name);
            assert!(!keyed.public_name().contains(KEY));
        }
        // A zone of no keyed service, and a keyed service's domain without a key, stay.
        for zone in ["zen.spamhaus.org", "zen.dq.spamhaus.net", "dq.spamhaus.net"] {
            let plain = list(
                "policy.dnsbl",
                &format!("zone = \"{zone}\"\nsymbol = \"X\""),
            );
            assert_eq!(plain.public_name(), zone);
        }
    }

    #[test]
    fn return_code_patterns() {
        let code = |d| Ipv4Addr::new(127, 0, 0, d);
        let parse = |s: &str| s.parse::<CodeMatch>();
        assert_eq!(parse("*"), Ok(CodeMatch::Any));
        assert_eq!(parse("127.0.0.2"), Ok(CodeMatch::Exact(code(2))));
        assert_eq!(parse("127.0.0.[2..11]"), Ok(CodeMatch::LastOctet(2, 11)));
        assert_eq!(parse("&0x08"), Ok(CodeMatch::Mask(8)));
        assert_eq!(parse("&4"), Ok(CodeMatch::Mask(4)));
        assert!(parse("127.0.0.[9..2]").is_err());
        // Ranges under another 127.A.B (Spamhaus DBL's 127.0.1.[2..99]).
        assert_eq!(
            parse("127.0.1.[2..99]"),
            Ok(CodeMatch::OctetRange([127, 0, 1], 2, 99))
        );
        assert!(CodeMatch::OctetRange([127, 0, 1], 2, 99).matches(Ipv4Addr::new(127, 0, 1, 2)));
        assert!(!CodeMatch::OctetRange([127, 0, 1], 2, 99).matches(code(2)));
        for dead in ["127.255.255.[0..9]", "10.0.0.[1..2]", "127.0.[1..2]"] {
            assert!(parse(dead).is_err(), "{dead}");
        }
        assert!(parse("&0").is_err());
        assert!(parse("listed").is_err());
        // Codes that are never taken for a listing would make a dead entry.
        for dead in ["127.255.255.254", "10.0.0.2"] {
            let e = parse(dead).unwrap_err();
            assert!(e.contains("never a listing"), "{dead}: {e}");
        }
        // 127.0.0.1 is a listing only where a list's codes name it.
        assert_eq!(parse("127.0.0.1"), Ok(CodeMatch::Exact(code(1))));
        assert!(CodeMatch::Exact(code(1)).names(code(1)));
        assert!(CodeMatch::LastOctet(1, 3).names(code(1)));
        assert!(!CodeMatch::Any.names(code(1)) && !CodeMatch::Mask(1).names(code(1)));

        assert!(CodeMatch::Any.matches(code(3)));
        assert!(CodeMatch::Exact(code(2)).matches(code(2)));
        assert!(!CodeMatch::Exact(code(2)).matches(code(3)));
        assert!(CodeMatch::LastOctet(2, 11).matches(code(11)));
        assert!(!CodeMatch::LastOctet(2, 11).matches(code(12)));
        assert!(CodeMatch::Mask(4).matches(code(6)));
        assert!(!CodeMatch::Mask(4).matches(code(2)));
    }

    #[test]
    fn a_code_map_entry_takes_a_symbol_or_a_symbol_and_a_weight() {
        let parse = |section: &str, text: &str| {
            let raw: Vec<RawDnsList> = vec![toml::from_str(text).unwrap()];
            let mut problems = Problems::default();
            let lists = validate(section, raw, &mut problems);
            (lists, problems.into_lines())
        };
        let text = "zone = \"zen.test\"\nsymbol = \"Z\"\nweight = 3.0\n\
                    codes = { \"127.0.0.2\" = \"Z_SBL\", \
                    \"127.0.0.[10..11]\" = { symbol = \"Z_PBL\", weight = 0.5 } }";
        let (lists, problems) = parse("policy.dnsbl", text);
        assert!(problems.is_empty(), "{problems:?}");
        let codes = &lists[0].codes;
        assert_eq!(codes.len(), 2);
        assert!(codes
            .iter()
            .any(|e| e.symbol == "Z_SBL" && e.weight.is_none()));
        assert!(codes
            .iter()
            .any(|e| e.symbol == "Z_PBL" && e.weight == Some(0.5)));
        let (_, problems) = parse("policy.uribl", text);
        assert!(
            problems.iter().any(|p| p.contains("only a DNSBL")),
            "{problems:?}"
        );
        // A list that can only lower the total is no gap in the score when it is silent.
        assert!(lists[0].may_raise());
        let allow = "zone = \"wl.test\"\nsymbol = \"W\"\nweight = -2.0\n\
                     codes = { \"127.0.0.3\" = { symbol = \"W_HI\", weight = -5.0 } }";
        let (lists, problems) = parse("policy.dnsbl", allow);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!lists[0].may_raise());
    }
}
