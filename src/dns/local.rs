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
/// may use such names.
pub fn only_loopback_for(client: std::net::IpAddr, addrs: &[std::net::IpAddr]) -> bool {
    !client.is_loopback() && !addrs.is_empty() && addrs.iter().all(|a| a.is_loopback())
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

    #[test]
    fn other_names_go_to_the_resolver() {
        assert!(answer(&name("localhost.example."), RecordType::A).is_none());
        assert!(answer(&name("1.0.0.10.in-addr.arpa."), RecordType::PTR).is_none());
        assert!(answer(&name("example.test."), RecordType::A).is_none());
    }
}
