//! Names answered without asking anyone (RFC 6761 §6.3, RFC 6303): `localhost` and its
//! subdomains, and the loopback reverse zones. hickory's resolver did the same, and a client
//! on a loopback address (a local relay, a test, a benchmark) must not cost a query, or a
//! timeout when the resolver is dead.

use super::query::Answer;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::{A, AAAA, PTR};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::time::Instant;

/// How long a local answer counts as fresh (it never changes).
const TTL: u32 = 86_400;

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

static LOCALHOST: LazyLock<Name> = LazyLock::new(|| name("localhost."));
static LOOPBACK_V4: LazyLock<Name> = LazyLock::new(|| name("127.in-addr.arpa."));
static LOOPBACK_V6: LazyLock<Name> =
    LazyLock::new(|| Name::from(std::net::IpAddr::V6(Ipv6Addr::LOCALHOST)));

/// Whether a name that resolved to `addrs` proves nothing about `client`: it leads only to
/// the host asking (any name under `localhost` does, RFC 6761, and so can a sender's own
/// zone), which is no way to reach a remote client. A client on loopback (a local relay)
/// may use such names. The unspecified address (`0.0.0.0`, `::`) and loopback written as
/// an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) lead nowhere else either (review).
pub fn only_loopback_for(client: std::net::IpAddr, addrs: &[std::net::IpAddr]) -> bool {
    let nowhere = |a: &std::net::IpAddr| {
        let a = a.to_canonical();
        a.is_loopback() || a.is_unspecified()
    };
    !client.is_loopback() && !addrs.is_empty() && addrs.iter().all(nowhere)
}

/// The answer to `rtype` records of `qname` when it is a local name; `None` otherwise.
pub(crate) fn answer(qname: &Name, rtype: RecordType) -> Option<Answer> {
    let data = if LOCALHOST.zone_of(qname) {
        match rtype {
            RecordType::A => Some(RData::A(A(Ipv4Addr::LOCALHOST))),
            RecordType::AAAA => Some(RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
            _ => None,
        }
    } else if LOOPBACK_V4.zone_of(qname) || *qname == *LOOPBACK_V6 {
        match rtype {
            RecordType::PTR => Some(RData::PTR(PTR(LOCALHOST.clone()))),
            _ => None,
        }
    } else {
        return None;
    };
    let expires = Instant::now() + Duration::from_secs(u64::from(TTL));
    Some(match data {
        Some(data) => Answer::Records {
            records: vec![Record::from_rdata(qname.clone(), TTL, data)].into(),
            expires,
        },
        None => Answer::Negative {
            code: ResponseCode::NoError,
            expires,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(qname: &str, rtype: RecordType) -> Option<Vec<RData>> {
        match answer(&name(qname), rtype)? {
            Answer::Records { records, .. } => {
                Some(records.iter().map(|r| r.data.clone()).collect())
            }
            _ => Some(Vec::new()),
        }
    }

    #[test]
    fn localhost_and_loopback_reverse_names_are_local() {
        assert_eq!(
            records("LocalHost.", RecordType::A),
            Some(vec![RData::A(A(Ipv4Addr::LOCALHOST))])
        );
        assert_eq!(
            records("mail.localhost.", RecordType::AAAA),
            Some(vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))])
        );
        assert_eq!(records("localhost.", RecordType::MX), Some(vec![]));
        assert_eq!(
            records("9.0.0.127.in-addr.arpa.", RecordType::PTR),
            Some(vec![RData::PTR(PTR(name("localhost.")))])
        );
        let v6 = Name::from(std::net::IpAddr::V6(Ipv6Addr::LOCALHOST)).to_string();
        assert!(records(&v6, RecordType::PTR).is_some_and(|r| r.len() == 1));
    }

    /// Regression (review): a forger's domain with `A 0.0.0.0` or `AAAA ::ffff:127.0.0.1`
    /// counted as resolvable for a remote client.
    #[test]
    fn addresses_that_lead_nowhere_else_are_no_way_to_a_remote_client() {
        let remote: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        for nowhere in ["127.0.0.1", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1"] {
            let addrs = [nowhere.parse().unwrap()];
            assert!(only_loopback_for(remote, &addrs), "{nowhere}");
            assert!(!only_loopback_for("127.0.0.1".parse().unwrap(), &addrs));
        }
        let mixed = ["0.0.0.0".parse().unwrap(), "192.0.2.9".parse().unwrap()];
        assert!(!only_loopback_for(remote, &mixed));
    }

    #[test]
    fn other_names_go_to_the_resolver() {
        assert!(answer(&name("localhost.example."), RecordType::A).is_none());
        assert!(answer(&name("1.0.0.10.in-addr.arpa."), RecordType::PTR).is_none());
        assert!(answer(&name("example.test."), RecordType::A).is_none());
    }
}
