//! The audit's view of the DNS: a domain's MX set and what each target resolves to.
//!
//! It has a resolver of its own, pointed at `--resolver` (or the system's), because the
//! question is what senders out there see, not what a gateway's configured resolver says.
//! Every lookup is cut off at the audit's timeout.

use super::AuditError;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Tries per lookup: the deadline is split between them, because resolvers on lossy paths
/// drop single queries and one lost datagram should not look like a missing record.
const ATTEMPTS: usize = 3;

/// How the domain says where its mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MxKind {
    /// MX records (at least one real target).
    Published,
    /// No MX records: senders fall back to the domain's own addresses (RFC 5321 §5.1).
    Implicit,
    /// A null MX (RFC 7505): the domain accepts no mail.
    Null,
}

/// The MX set as published, with every target resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxSet {
    /// How mail is routed.
    pub kind: MxKind,
    /// A null MX record was published next to real ones (it is ignored, as senders do).
    pub null_mixed: bool,
    /// The targets, most preferred first; for [`MxKind::Implicit`] the domain itself at
    /// preference 0; empty for [`MxKind::Null`].
    pub targets: Vec<Target>,
}

/// One MX target and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Lower is preferred.
    pub preference: u16,
    /// The exchange name as published, without the root dot.
    pub host: String,
    /// The name the target is an alias for, when it is a CNAME (forbidden for MX
    /// targets by RFC 2181 §10.3; some senders refuse it).
    pub cname: Option<String>,
    /// The target is an IP address written as a name; its address is probed directly.
    pub ip_literal: bool,
    /// A and AAAA addresses.
    pub addresses: Vec<IpAddr>,
    /// Whether the address lookups answered.
    pub lookup: AddressLookup,
}

/// What the address lookups of a target came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum AddressLookup {
    /// At least one address.
    Found,
    /// NXDOMAIN or no A/AAAA records: senders cannot use this target.
    NoAddress,
    /// Addresses of one family, while the other family's lookup was not answered: its
    /// addresses, if it has any, were not probed (senders may still reach them).
    Partial(String),
    /// Neither lookup was answered (timeout, SERVFAIL, …).
    Failed(String),
}

/// The answer to one question.
enum Answer<T> {
    Found(Vec<T>),
    /// NXDOMAIN, or the name exists without records of the type (NODATA).
    Nothing,
    Failed(String),
}

/// The audit's resolver.
pub struct AuditResolver {
    resolver: TokioResolver,
    timeout: Duration,
    description: String,
}

impl fmt::Debug for AuditResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditResolver")
            .field("server", &self.description)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AuditResolver {
    /// A resolver asking `server` (over UDP, and TCP for long or failed answers), or the
    /// system's name servers when `None`. Each lookup gives up after `timeout`.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Self, AuditError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let servers = vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])];
                let mut builder = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(servers),
                    provider,
                );
                // An explicit server means explicit answers: /etc/hosts must not leak in.
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => {
                TokioResolver::builder(provider).map_err(|e| AuditError::Resolver(e.to_string()))?
            }
        };
        let opts = builder.options_mut();
        opts.timeout = (timeout / ATTEMPTS as u32).max(Duration::from_millis(200));
        opts.attempts = ATTEMPTS;
        opts.try_tcp_on_error = true;
        let resolver = builder
            .build()
            .map_err(|e| AuditError::Resolver(e.to_string()))?;
        Ok(AuditResolver {
            resolver,
            timeout,
            description: server.map_or_else(|| "system".to_owned(), |a| a.to_string()),
        })
    }

    /// `IP:PORT` of the server asked, or `system`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The MX set of `domain` with every target resolved. Only an unanswered MX question
    /// is an error: everything else is something to report.
    pub async fn mx_set(&self, domain: &str) -> Result<MxSet, AuditError> {
        let dns_error = |detail: String| AuditError::Dns {
            domain: domain.to_owned(),
            detail,
        };
        let name = absolute(domain).ok_or_else(|| dns_error("not a DNS name".into()))?;
        let records = match self
            .query(&name, RecordType::MX, |rdata| match rdata {
                RData::MX(mx) => Some((mx.preference, display(&mx.exchange))),
                _ => None,
            })
            .await
        {
            Answer::Found(records) => records,
            Answer::Nothing => Vec::new(),
            Answer::Failed(detail) => return Err(dns_error(detail)),
        };
        let (null, mut real): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|(_, host)| host == ".");
        if real.is_empty() && !null.is_empty() {
            return Ok(MxSet {
                kind: MxKind::Null,
                null_mixed: false,
                targets: Vec::new(),
            });
        }
        let kind = if real.is_empty() {
            real.push((0, domain.to_owned()));
            MxKind::Implicit
        } else {
            MxKind::Published
        };
        real.sort();
        real.dedup();
        let targets = futures::future::join_all(
            real.into_iter()
                .map(|(preference, host)| self.target(preference, host)),
        )
        .await;
        Ok(MxSet {
            kind,
            null_mixed: !null.is_empty(),
            targets,
        })
    }

    /// The domain's own A and AAAA addresses (empty when it has none), and why a lookup
    /// was not answered, when one was not. With MX records published, senders never use
    /// them; a spammer who connects there anyway reaches whatever takes SMTP on that
    /// host, past the tier.
    pub async fn apex_addresses(&self, domain: &str) -> (Vec<IpAddr>, Option<String>) {
        let apex = self.target(0, domain.to_owned()).await;
        match apex.lookup {
            AddressLookup::Failed(detail) | AddressLookup::Partial(detail) => {
                (apex.addresses, Some(detail))
            }
            AddressLookup::Found | AddressLookup::NoAddress => (apex.addresses, None),
        }
    }

    /// Resolves one target: its CNAME (if it is an alias), A and AAAA, all at once.
    async fn target(&self, preference: u16, host: String) -> Target {
        let mut target = Target {
            preference,
            host,
            cname: None,
            ip_literal: false,
            addresses: Vec::new(),
            lookup: AddressLookup::Found,
        };
        if let Some(ip) = ip_literal(&target.host) {
            target.ip_literal = true;
            target.addresses.push(ip);
            return target;
        }
        let Some(name) = absolute(&target.host) else {
            target.lookup = AddressLookup::Failed("not a DNS name".into());
            return target;
        };
        let (cname, v4, v6) = futures::join!(
            self.query(&name, RecordType::CNAME, |rdata| match rdata {
                RData::CNAME(alias) => Some(display(&alias.0)),
                _ => None,
            }),
            self.query(&name, RecordType::A, |rdata| match rdata {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            }),
            self.query(&name, RecordType::AAAA, |rdata| match rdata {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }),
        );
        if let Answer::Found(aliases) = cname {
            target.cname = aliases.into_iter().next();
        }
        let mut failures = Vec::new();
        for answer in [v4, v6] {
            match answer {
                Answer::Found(found) => target.addresses.extend(found),
                Answer::Nothing => {}
                Answer::Failed(detail) => failures.push(detail),
            }
        }
        target.addresses.sort();
        target.addresses.dedup();
        // An AAAA lookup lost while the A lookup answered left the IPv6 addresses
        // unprobed without a word (review): a failure is said whatever else was found.
        target.lookup = match (target.addresses.is_empty(), failures.is_empty()) {
            (false, true) => AddressLookup::Found,
            (false, false) => AddressLookup::Partial(failures.join("; ")),
            (true, true) => AddressLookup::NoAddress,
            (true, false) => AddressLookup::Failed(failures.join("; ")),
        };
        target
    }

    /// One question, answered within the audit's timeout; records of other types in the
    /// answer (a CNAME chain hickory followed) are left out.
    async fn query<T>(
        &self,
        name: &Name,
        rtype: RecordType,
        extract: fn(&RData) -> Option<T>,
    ) -> Answer<T> {
        let lookup = self.resolver.lookup(name.clone(), rtype);
        match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => Answer::Failed(format!("{rtype} {name}: timed out")),
            Ok(Ok(found)) => {
                let records: Vec<T> = found
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .filter_map(|r| extract(&r.data))
                    .collect();
                if records.is_empty() {
                    Answer::Nothing
                } else {
                    Answer::Found(records)
                }
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(NoRecords {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            })))) => Answer::Nothing,
            Ok(Err(e)) => Answer::Failed(format!("{rtype} {name}: {e}")),
        }
    }
}

/// The address of a target published as an IP address (`192.0.2.1` or `[192.0.2.1]`).
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

/// `name` as an absolute DNS name, so no search list is ever applied.
fn absolute(name: &str) -> Option<Name> {
    let mut parsed = Name::from_ascii(name).ok()?;
    parsed.set_fqdn(true);
    Some(parsed)
}

/// A name without its root dot, lower case; the root itself stays `.` (null MX).
fn display(name: &Name) -> String {
    let text = name.to_ascii().to_ascii_lowercase();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}
