//! The shared resolver: one hickory `TokioResolver` built from `[dns]`, typed lookups that
//! tell "no such name" from "could not ask", and per-lookup metrics.

use crate::config::DnsConfig;
use crate::metrics::Metrics;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What one lookup came to. Only [`Outcome::NotFound`] is an authoritative "no": a DNSBL
/// check must treat it as "not listed" and everything else as "unknown".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The name has records of the asked type.
    Found(T),
    /// NXDOMAIN, or the name exists without records of this type (NODATA).
    NotFound,
    /// No answer in time: the resolver's timeout × attempts, or a stage deadline.
    Timeout,
    /// The server answered SERVFAIL.
    ServFail,
    /// Anything else (REFUSED, malformed name, transport error); the text is for logs.
    Error(String),
}

impl<T> Outcome<T> {
    /// The bounded metrics label: `ok`, `nxdomain`, `timeout`, `servfail` or `error`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Found(_) => "ok",
            Outcome::NotFound => "nxdomain",
            Outcome::Timeout => "timeout",
            Outcome::ServFail => "servfail",
            Outcome::Error(_) => "error",
        }
    }

    /// The records, if any were found.
    pub fn found(self) -> Option<T> {
        match self {
            Outcome::Found(v) => Some(v),
            _ => None,
        }
    }

    /// True when the lookup could not be answered (timeout, SERVFAIL, error): the caller
    /// knows nothing, which is different from a definite [`Outcome::NotFound`].
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Timeout | Outcome::ServFail | Outcome::Error(_)
        )
    }

    /// Transforms the found value, keeping every other outcome.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Found(v) => Outcome::Found(f(v)),
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Timeout => Outcome::Timeout,
            Outcome::ServFail => Outcome::ServFail,
            Outcome::Error(e) => Outcome::Error(e),
        }
    }
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Lower is preferred.
    pub preference: u16,
    /// The exchange host, without the trailing dot (`.` itself for a null MX, RFC 7505).
    pub exchange: String,
}

/// The resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    /// `dns.nameservers` is empty and the system configuration could not be read.
    #[error("dns: cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// hickory refused the configuration.
    #[error("dns: cannot build the resolver: {0}")]
    Build(String),
}

/// The shared resolver. Cheap to clone (one `Arc`); every clone shares the cache.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    timeout: Duration,
    attempts: usize,
    stage_deadline: Duration,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.inner.timeout)
            .field("attempts", &self.inner.attempts)
            .field("stage_deadline", &self.inner.stage_deadline)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Builds the resolver from `[dns]`: the listed name servers (each over UDP and TCP on its
    /// own port), or the system configuration when the list is empty. Lookups record into
    /// `metrics`. Must be called inside a Tokio runtime.
    pub fn new(config: &DnsConfig, metrics: Arc<Metrics>) -> Result<Dns, DnsSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| DnsSetupError::SystemConfig(e.to_string()))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                provider,
            );
            // Explicit servers mean explicit answers: /etc/hosts must not leak in.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        opts.cache_size = config.cache_size as u64;
        // Try TCP when UDP fails (not only on truncation).
        opts.try_tcp_on_error = true;
        let resolver = builder
            .build()
            .map_err(|e| DnsSetupError::Build(e.to_string()))?;
        Ok(Dns {
            inner: Arc::new(Inner {
                resolver,
                timeout: config.timeout,
                attempts: config.attempts.max(1),
                stage_deadline: config.stage_deadline,
                metrics,
            }),
        })
    }

    /// The underlying resolver, for libraries that resolve themselves (mail-auth): clones
    /// share this resolver's cache and servers.
    pub fn resolver(&self) -> TokioResolver {
        self.inner.resolver.clone()
    }

    /// `dns.stage_deadline` as a duration.
    pub fn stage_deadline_duration(&self) -> std::time::Duration {
        self.inner.stage_deadline
    }

    /// The deadline of a stage that starts now (`dns.stage_deadline` from now); pass it to
    /// [`crate::dns::within`] for every lookup of that stage.
    pub fn stage_deadline(&self) -> Instant {
        Instant::now() + self.inner.stage_deadline
    }

    /// IPv4 addresses of `name`.
    pub async fn lookup_a(&self, check: &'static str, name: &str) -> Outcome<Vec<Ipv4Addr>> {
        self.records(check, name, RecordType::A, |rdata| match rdata {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// IPv6 addresses of `name`.
    pub async fn lookup_aaaa(&self, check: &'static str, name: &str) -> Outcome<Vec<Ipv6Addr>> {
        self.records(check, name, RecordType::AAAA, |rdata| match rdata {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// IPv4 and IPv6 addresses of `name` (A and AAAA together).
    pub async fn lookup_ip(&self, check: &'static str, name: &str) -> Outcome<Vec<IpAddr>> {
        let Some(fqdn) = fqdn(name) else {
            return self.record(check, Instant::now(), invalid(name));
        };
        let resolver = &self.inner.resolver;
        self.measured(check, || async {
            let result = resolver.lookup_ip(fqdn.clone()).await;
            result
                .map(|found| found.iter().collect::<Vec<IpAddr>>())
                .map_err(|e| classify(&e))
        })
        .await
    }

    /// Host names of `ip` (PTR in `in-addr.arpa` / `ip6.arpa`), without trailing dots.
    pub async fn lookup_ptr(&self, check: &'static str, ip: IpAddr) -> Outcome<Vec<String>> {
        let name = Name::from(ip).to_string();
        self.records(check, &name, RecordType::PTR, |rdata| match rdata {
            RData::PTR(ptr) => Some(display_name(&ptr.0)),
            _ => None,
        })
        .await
    }

    /// TXT records of `name`, each one's strings concatenated (RFC 7208 §3.3), decoded as
    /// UTF-8 with replacement.
    pub async fn lookup_txt(&self, check: &'static str, name: &str) -> Outcome<Vec<String>> {
        self.records(check, name, RecordType::TXT, |rdata| match rdata {
            RData::TXT(txt) => {
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        })
        .await
    }

    /// MX records of `name`, most preferred first.
    pub async fn lookup_mx(&self, check: &'static str, name: &str) -> Outcome<Vec<Mx>> {
        let mut outcome = self
            .records(check, name, RecordType::MX, |rdata| match rdata {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference,
                    exchange: display_name(&mx.exchange),
                }),
                _ => None,
            })
            .await;
        if let Outcome::Found(list) = &mut outcome {
            list.sort_by_key(|mx| mx.preference);
        }
        outcome
    }

    /// Looks `name` up as an absolute name (no search list) and extracts the records of
    /// `rtype` from the answer (CNAMEs followed by hickory are skipped).
    async fn records<T>(
        &self,
        check: &'static str,
        name: &str,
        rtype: RecordType,
        extract: fn(&RData) -> Option<T>,
    ) -> Outcome<Vec<T>> {
        let Some(fqdn) = fqdn(name) else {
            return self.record(check, Instant::now(), invalid(name));
        };
        let resolver = &self.inner.resolver;
        self.measured(check, || async {
            match resolver.lookup(fqdn.clone(), rtype).await {
                Ok(lookup) => {
                    let found: Vec<T> = lookup
                        .answers()
                        .iter()
                        .filter_map(|r| extract(&r.data))
                        .collect();
                    if found.is_empty() {
                        Err(Outcome::NotFound)
                    } else {
                        Ok(found)
                    }
                }
                Err(e) => Err(classify(&e)),
            }
        })
        .await
    }

    /// Runs one lookup with up to `attempts` tries of at most `timeout` each (retrying only
    /// timeouts), recording latency and outcome even if the caller drops it at a deadline.
    async fn measured<T, F>(&self, check: &'static str, lookup: impl Fn() -> F) -> Outcome<T>
    where
        F: Future<Output = Result<T, Outcome<T>>>,
    {
        let mut guard = Recorder {
            metrics: &self.inner.metrics,
            check,
            start: Instant::now(),
            result: "timeout",
        };
        let mut outcome = Outcome::Timeout;
        for _ in 0..self.inner.attempts {
            outcome = match tokio::time::timeout(self.inner.timeout, lookup()).await {
                Ok(Ok(found)) => Outcome::Found(found),
                Ok(Err(other)) => other,
                Err(_) => Outcome::Timeout,
            };
            if !matches!(outcome, Outcome::Timeout) {
                break;
            }
        }
        guard.result = outcome.label();
        outcome
    }

    fn record<T>(&self, check: &'static str, start: Instant, outcome: Outcome<T>) -> Outcome<T> {
        Recorder {
            metrics: &self.inner.metrics,
            check,
            start,
            result: outcome.label(),
        };
        outcome
    }
}

/// Records one lookup when dropped: on completion with its outcome, on cancellation (a stage
/// deadline dropped the future) as `timeout`.
struct Recorder<'a> {
    metrics: &'a Metrics,
    check: &'static str,
    start: Instant,
    result: &'static str,
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        self.metrics
            .dns_lookups_total
            .with_label_values(&[self.check, self.result])
            .inc();
        self.metrics
            .dns_lookup_duration_seconds
            .with_label_values(&[self.check])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// Maps a hickory error onto the outcome a check acts on.
pub(crate) fn classify<T>(e: &NetError) -> Outcome<T> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })) => {
            match *response_code {
                ResponseCode::NXDomain | ResponseCode::NoError => Outcome::NotFound,
                ResponseCode::ServFail => Outcome::ServFail,
                code => Outcome::Error(format!("response code {code}")),
            }
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Outcome::ServFail,
        NetError::Timeout => Outcome::Timeout,
        other => Outcome::Error(other.to_string()),
    }
}

/// `name` as an absolute DNS name: checks query exact names, never the search list.
fn fqdn(name: &str) -> Option<Name> {
    let mut parsed = Name::from_ascii(name).ok()?;
    parsed.set_fqdn(true);
    Some(parsed)
}

fn invalid<T>(name: &str) -> Outcome<T> {
    Outcome::Error(format!("invalid DNS name {name:?}"))
}

fn display_name(name: &Name) -> String {
    let text = name.to_string();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(Outcome::Found(()).label(), "ok");
        assert_eq!(Outcome::<()>::NotFound.label(), "nxdomain");
        assert_eq!(Outcome::<()>::Timeout.label(), "timeout");
        assert_eq!(Outcome::<()>::ServFail.label(), "servfail");
        assert_eq!(Outcome::<()>::Error("x".into()).label(), "error");
    }

    #[test]
    fn failures_are_not_answers() {
        assert!(!Outcome::<()>::NotFound.is_failure());
        assert!(!Outcome::Found(1).is_failure());
        assert!(Outcome::<()>::Timeout.is_failure());
        assert!(Outcome::<()>::ServFail.is_failure());
        assert_eq!(Outcome::Found(2).map(|v| v * 2), Outcome::Found(4));
    }

    #[test]
    fn classify_tells_nxdomain_from_timeout_and_servfail() {
        let query = hickory_resolver::proto::op::Query::query(
            Name::from_ascii("x.test.").unwrap_or_default(),
            RecordType::A,
        );
        let nx = NetError::from(DnsError::NoRecordsFound(NoRecords::new(
            query.clone(),
            ResponseCode::NXDomain,
        )));
        assert_eq!(classify::<()>(&nx), Outcome::NotFound);
        let nodata = NetError::from(DnsError::NoRecordsFound(NoRecords::new(
            query,
            ResponseCode::NoError,
        )));
        assert_eq!(classify::<()>(&nodata), Outcome::NotFound);
        assert_eq!(classify::<()>(&NetError::Timeout), Outcome::Timeout);
        let servfail = NetError::from(DnsError::ResponseCode(ResponseCode::ServFail));
        assert_eq!(classify::<()>(&servfail), Outcome::ServFail);
        let refused = NetError::from(DnsError::ResponseCode(ResponseCode::Refused));
        assert_eq!(classify::<()>(&refused).label(), "error");
    }

    #[test]
    fn names_are_absolute_and_displayed_without_the_root_dot() {
        assert!(fqdn("a.example.test").is_some_and(|n| n.is_fqdn()));
        assert!(fqdn("bad..name").is_none());
        let name = Name::from_ascii("mx.example.test.").unwrap_or_default();
        assert_eq!(display_name(&name), "mx.example.test");
        assert_eq!(display_name(&Name::root()), ".");
    }
}
