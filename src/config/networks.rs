//! Lists of networks (`ipnet`) with membership tests in logarithmic time: the admin
//! listener's `metrics.allow` and every allow, deny, trusted or exempt list of the policy.

use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;

/// A set of IPv4 and IPv6 networks. Membership is a binary search over sorted, merged
/// address ranges, so a list of thousands of entries costs a handful of comparisons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkList {
    networks: Vec<IpNet>,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetworkList {
    /// Builds the list; networks are normalised (`10.1.2.3/8` → `10.0.0.0/8`).
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> NetworkList {
        let mut networks: Vec<IpNet> = networks
            .into_iter()
            .map(|n| canonical_network(n.trunc()))
            .collect();
        networks.sort();
        networks.dedup();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in &networks {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        NetworkList {
            networks,
            v4: merge(v4, |x: u32| x.saturating_add(1)),
            v6: merge(v6, |x: u128| x.saturating_add(1)),
        }
    }

    /// Parses entries written as `CIDR` or a single address; the error names the bad one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<NetworkList, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            nets.push(parse_network(entry.as_ref())?);
        }
        Ok(NetworkList::new(nets))
    }

    /// Builds the list of a configuration key: each entry is a network, an address, or a
    /// file (an entry starting with `/`, `./` or `../`) holding one entry per line (`#`
    /// starts a comment). Files are read again on every reload. Every bad entry is
    /// reported under `key`.
    pub(super) fn load<S: AsRef<str>>(
        key: &str,
        entries: &[S],
        problems: &mut super::problems::Problems,
    ) -> NetworkList {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if is_file_entry(entry) {
                let text = super::read_plain_file(std::path::Path::new(entry)).and_then(|b| {
                    String::from_utf8(b).map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
                    })
                });
                match text {
                    Ok(text) => {
                        for (n, line) in text.lines().enumerate() {
                            let line = line.split('#').next().unwrap_or("").trim();
                            if line.is_empty() {
                                continue;
                            }
                            match parse_network(line) {
                                Ok(net) => nets.push(net),
                                Err(e) => problems.bad(key, &format!("{entry}:{}: {e}", n + 1)),
                            }
                        }
                    }
                    Err(e) => problems.bad(key, &format!("{entry}: {e}")),
                }
            } else {
                match parse_network(entry) {
                    Ok(net) => nets.push(net),
                    Err(e) => problems.bad(key, &e),
                }
            }
        }
        NetworkList::new(nets)
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => within(&self.v6, u128::from(a)),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The networks, sorted and normalised (for display and the policy fingerprint).
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }
}

/// The network of `ip` at the given prefix lengths (`192.0.2.77` at /24 → `192.0.2.0/24`);
/// an IPv4-mapped IPv6 address counts as IPv4.
pub fn network_of(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpNet {
    let ip = ip.to_canonical();
    let prefix = match ip {
        IpAddr::V4(_) => ipv4_prefix.min(32),
        IpAddr::V6(_) => ipv6_prefix.min(128),
    };
    IpNet::new(ip, prefix)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

/// The files among a network list's entries (see [`NetworkList::load`]), for the reload
/// watch.
pub(super) fn file_entries<S: AsRef<str>>(entries: &[S]) -> impl Iterator<Item = PathBuf> + '_ {
    entries
        .iter()
        .map(|e| e.as_ref().trim())
        .filter(|e| is_file_entry(e))
        .map(PathBuf::from)
}

fn is_file_entry(entry: &str) -> bool {
    entry.starts_with('/') || entry.starts_with("./") || entry.starts_with("../")
}

/// An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`, as dual-stack logs show clients)
/// is the IPv4 network it maps: clients are matched as IPv4, so it would never match.
fn canonical_network(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address as a host network.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or network (CIDR)"))
}

/// Sorts ranges and merges overlapping or adjacent ones; `next` is the successor of a
/// range end (saturating), which is what makes adjacent ranges touch.
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> T) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= next(last.1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && x <= ranges[i - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> NetworkList {
        NetworkList::parse(entries).unwrap()
    }

    #[test]
    fn membership_by_prefix_for_both_families() {
        let l = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]);
        for yes in [
            "10.255.1.1",
            "192.0.2.7",
            "2001:db8:1::5",
            "::ffff:10.1.2.3",
        ] {
            assert!(l.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "127.0.0.1"] {
            assert!(!l.contains(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge() {
        let l = list(&["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "0.0.0.0/0"]);
        assert_eq!(l.v4, vec![(0, u32::MAX)]);
        assert!(l.contains("203.0.113.9".parse().unwrap()));
        assert!(!l.contains("::1".parse().unwrap()));
    }

    #[test]
    fn host_bits_are_cleared_and_bad_entries_named() {
        assert_eq!(
            list(&["10.1.2.3/8"]).networks()[0].to_string(),
            "10.0.0.0/8"
        );
        let err = NetworkList::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(NetworkList::parse(&["example.test"]).is_err());
    }

    #[test]
    fn files_are_read_line_by_line_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nets");
        std::fs::write(
            &file,
            "# partners\n198.51.100.0/24\n\n2001:db8::1 # one host\nnonsense\n",
        )
        .unwrap();
        let mut problems = crate::config::problems::Problems::default();
        let entries = [file.display().to_string(), "10.0.0.0/8".to_owned()];
        let l = NetworkList::load("policy.allow_networks", &entries, &mut problems);
        assert!(l.contains("198.51.100.7".parse().unwrap()));
        assert!(l.contains("2001:db8::1".parse().unwrap()));
        assert!(l.contains("10.9.9.9".parse().unwrap()));
        let lines = problems.into_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("policy.allow_networks: ") && lines[0].contains(":5:"),
            "{lines:?}"
        );
    }

    #[test]
    fn empty_list_contains_nothing() {
        assert!(!NetworkList::default().contains("127.0.0.1".parse().unwrap()));
    }

    /// Regression (review): an entry written as an IPv4-mapped IPv6 network was kept as
    /// IPv6, while clients are matched as IPv4: it silently never matched.
    #[test]
    fn ipv4_mapped_entries_are_ipv4_networks() {
        let list = NetworkList::parse(&["::ffff:192.0.2.0/120", "::ffff:198.51.100.7"]).unwrap();
        assert!(list.contains("::ffff:192.0.2.7".parse().unwrap()));
        assert!(list.contains("192.0.2.200".parse().unwrap()));
        assert!(list.contains("198.51.100.7".parse().unwrap()));
        assert!(!list.contains("198.51.100.8".parse().unwrap()));
        assert_eq!(list.networks()[0].to_string(), "192.0.2.0/24");
    }
}
