//! The shared resolver: typed lookups that tell "no such name" from "could not ask", per-lookup
//! metrics, and the stage deadline, over the one lookup path of [`super::query`].

use super::health::Health;
use super::outcome::{Mx, Outcome};
use super::query::{Answer, Core, CoreSettings};
use super::transport::Transport;
use crate::config::{DnsConfig, DnsListConfig};
use crate::metrics::{LogEvery, Metrics};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    /// `dns.nameservers` is empty and the system configuration could not be read.
    #[error("dns: cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// hickory refused the configuration of the resolver handed to mail-auth.
    #[error("dns: cannot build the resolver: {0}")]
    Build(String),
    /// The loopback responder for mail-auth could not bind.
    #[error("dns: cannot bind the loopback responder for mail-auth: {0}")]
    Responder(#[from] std::io::Error),
}

/// The shared resolver. Cheap to clone (one `Arc`); every clone shares the cache, the
/// queries in flight and the health state.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) core: Arc<Core>,
    timeout: Duration,
    stage_deadline: Duration,
    pub(super) metrics: Arc<Metrics>,
    /// Lists found answering "listed" for a name no list may list.
    pub(super) list_sanity: super::list_sanity::ListSanity,
    /// A DNS list's refusal is logged at warn once a minute: enough to tell the operator,
    /// every lookup would flood the log.
    list_refusal_log: LogEvery,
    /// Cancelled when the last clone goes: the loopback responders stop with it.
    pub(super) stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("servers", &self.inner.core.servers())
            .field("timeout", &self.inner.timeout)
            .field("stage_deadline", &self.inner.stage_deadline)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Builds the resolver from `[dns]`: the listed name servers, or those of the system
    /// configuration when the list is empty. Lookups record into `metrics`, and the resolver's
    /// health into `mxguard_dns_up`. Must be called inside a Tokio runtime.
    pub fn new(config: &DnsConfig, metrics: Arc<Metrics>) -> Result<Dns, DnsSetupError> {
        let servers = if config.nameservers.is_empty() {
            system_name_servers()?
        } else {
            config.nameservers.clone()
        };
        let transport =
            Transport::new(&servers, config.timeout, config.retransmit, config.attempts);
        let health = Health::new(config.down_after, metrics.dns_up.clone());
        let core = Core::new(
            transport,
            health,
            CoreSettings {
                cache_size: config.cache_size,
                cache_bytes: config.cache_bytes,
                negative_ttl_min: config.negative_ttl_min,
                down_backoff: config.down_backoff,
                // The probe's first transmission and one retransmission.
                confirm_within: config.retransmit.saturating_mul(2).min(config.timeout),
            },
        );
        Ok(Dns {
            inner: Arc::new(Inner {
                core: Arc::new(core),
                timeout: config.timeout,
                stage_deadline: config.stage_deadline,
                metrics,
                list_refusal_log: LogEvery::new(Duration::from_secs(60)),
                list_sanity: Default::default(),
                stop: CancellationToken::new(),
            }),
        })
    }

    pub(super) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(super) fn upgrade(weak: &Weak<Inner>) -> Option<Dns> {
        weak.upgrade().map(|inner| Dns { inner })
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// `dns.timeout`: the longest one lookup waits.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// `dns.stage_deadline` as a duration.
    pub fn stage_deadline_duration(&self) -> Duration {
        self.inner.stage_deadline
    }

    /// The deadline of a stage that starts now (`dns.stage_deadline` from now).
    pub fn stage_deadline(&self) -> Instant {
        Instant::now() + self.inner.stage_deadline
    }

    /// The deadline a check should use: the one its stage fixed (shared by every check of
    /// the stage), or a fresh stage deadline when it runs outside a policy evaluation.
    pub fn deadline(&self, stage: Option<Instant>) -> Instant {
        stage.unwrap_or_else(|| self.stage_deadline())
    }

    /// Makes `mxguard_dns_up` follow this resolver: the one in force (at start, and when
    /// a reload put it in force).
    pub fn publish_health(&self) {
        self.inner.core.health.publish();
    }

    /// Stops this resolver from moving `mxguard_dns_up`: a reload replaced it (sessions
    /// that started before may still use it).
    pub fn retire(&self) {
        self.inner.core.health.retire();
    }

    /// Records a DNS list answer that is no listing (`127.0.0.1`, `127.0.0.255`,
    /// `127.255.255.x`, or outside `127.0.0.0/8`): counted per list, and logged at warn at
    /// most once a minute, since a list refusing every query (a public resolver, a query
    /// limit passed) leaves that list silently off. The list goes by its
    /// [`public_name`](DnsListConfig::public_name): its zone may hold an access key.
    pub fn note_list_refusal(
        &self,
        check: &'static str,
        list: &DnsListConfig,
        answers: &[Ipv4Addr],
    ) {
        let list = list.public_name();
        self.inner
            .metrics
            .dns_list_refused_total
            .with_label_values(&[check, list])
            .inc();
        if self.inner.list_refusal_log.due() {
            tracing::warn!(check, list, ?answers, "DNS list answered with no listing (a refused query or a list error: a public resolver, or over the list's query limit?); ignored, see mxguard_dns_list_refused_total");
        } else {
            tracing::debug!(
                check,
                list,
                ?answers,
                "DNS list answered with no listing; ignored"
            );
        }
    }

    /// Whether the resolver is marked down (lookups the cache cannot answer are unavailable).
    pub fn is_down(&self) -> bool {
        self.inner.core.health.is_down()
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

    /// IPv4 and IPv6 addresses of `name` (A and AAAA asked together, counted as one lookup).
    pub async fn lookup_ip(&self, check: &'static str, name: &str) -> Outcome<Vec<IpAddr>> {
        let mut recorder = Recorder::new(&self.inner.metrics, check);
        let Some(fqdn) = fqdn(name) else {
            return recorder.finish(invalid(name));
        };
        let core = &self.inner.core;
        let (v4, v6) = tokio::join!(
            core.resolve(fqdn.clone(), RecordType::A),
            core.resolve(fqdn, RecordType::AAAA)
        );
        let v4 = outcome(v4, |rdata| match rdata {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        });
        let v6 = outcome(v6, |rdata| match rdata {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        });
        recorder.finish(match (v4, v6) {
            (Outcome::Found(mut a), Outcome::Found(b)) => {
                a.extend(b);
                Outcome::Found(a)
            }
            (found @ Outcome::Found(_), _) | (_, found @ Outcome::Found(_)) => found,
            (Outcome::NotFound, Outcome::NotFound) => Outcome::NotFound,
            (Outcome::NotFound, failure) | (failure, _) => failure,
        })
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
        self.records(check, name, RecordType::TXT, txt_text).await
    }

    /// [`Dns::lookup_txt`] for a second look at an answer a check has just had (mail-auth's,
    /// through the responder): read from the shared cache without a query and without
    /// counting a lookup; asked (and counted as `check`) only when no longer cached.
    pub async fn recall_txt(&self, check: &'static str, name: &str) -> Outcome<Vec<String>> {
        match self.cached_txt_outcome(name) {
            Some(outcome) => outcome,
            None => self.lookup_txt(check, name).await,
        }
    }

    /// The TXT records of `name` (strings concatenated, as [`Dns::lookup_txt`]) the shared
    /// cache holds now: no query, nothing counted, no waiting. `None` when it holds no
    /// answer with TXT records.
    pub fn cached_txt(&self, name: &str) -> Option<Vec<String>> {
        self.cached_txt_outcome(name)?.found()
    }

    /// Whether the shared cache holds a definite "no" to `rtype` records of `name` (no such
    /// name, or none of that type): what RFC 7208 §4.6.4 calls a void lookup, told apart
    /// from the failures, which are not. No query, nothing counted, no waiting; `false`
    /// when it holds no answer.
    pub fn cached_void(&self, name: &str, rtype: RecordType) -> bool {
        let found = self.cached_outcome(name, rtype, |rdata| {
            (rdata.record_type() == rtype).then_some(())
        });
        found == Some(Outcome::NotFound)
    }

    /// The shared cache's answer for `name`'s TXT records, when it holds one.
    fn cached_txt_outcome(&self, name: &str) -> Option<Outcome<Vec<String>>> {
        self.cached_outcome(name, RecordType::TXT, txt_text)
    }

    /// The shared cache's answer for `name`'s `rtype` records, each read by `pick`, when it
    /// holds one.
    fn cached_outcome<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Option<Outcome<Vec<T>>> {
        let answer = self.inner.core.cached(fqdn(name)?, rtype)?;
        Some(outcome(answer, pick))
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

    /// The whole answer to one question, for the loopback responder: counted under `check`,
    /// or not at all (a duplicate of a question already being answered).
    pub(super) async fn answer(
        &self,
        check: Option<&'static str>,
        name: Name,
        rtype: RecordType,
    ) -> Answer {
        let Some(check) = check else {
            return self.inner.core.resolve(name, rtype).await;
        };
        let mut recorder = Recorder::new(&self.inner.metrics, check);
        let answer = self.inner.core.resolve(name, rtype).await;
        recorder.result = match &answer {
            Answer::Records { .. } => "ok",
            Answer::Negative { .. } => "nxdomain",
            Answer::ServFail => "servfail",
            Answer::Timeout => "timeout",
            Answer::Unavailable => "unavailable",
            Answer::Error(_) => "error",
        };
        answer
    }

    /// Looks `name` up as an absolute name (no search list) and extracts the records of
    /// `rtype` from the answer (CNAMEs the server followed are skipped).
    async fn records<T>(
        &self,
        check: &'static str,
        name: &str,
        rtype: RecordType,
        extract: fn(&RData) -> Option<T>,
    ) -> Outcome<Vec<T>> {
        let mut recorder = Recorder::new(&self.inner.metrics, check);
        let Some(fqdn) = fqdn(name) else {
            return recorder.finish(invalid(name));
        };
        let answer = self.inner.core.resolve(fqdn, rtype).await;
        recorder.finish(outcome(answer, extract))
    }
}

/// A TXT record's strings concatenated, decoded as UTF-8 with replacement.
fn txt_text(rdata: &RData) -> Option<String> {
    match rdata {
        RData::TXT(txt) => {
            let bytes: Vec<u8> = txt
                .txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

/// The typed outcome of an answer: the records `extract` keeps, or why there are none.
fn outcome<T>(answer: Answer, extract: impl Fn(&RData) -> Option<T>) -> Outcome<Vec<T>> {
    match answer {
        Answer::Records { records, .. } => {
            let found: Vec<T> = records.iter().filter_map(|r| extract(&r.data)).collect();
            if found.is_empty() {
                Outcome::NotFound
            } else {
                Outcome::Found(found)
            }
        }
        Answer::Negative { .. } => Outcome::NotFound,
        Answer::ServFail => Outcome::ServFail,
        Answer::Timeout => Outcome::Timeout,
        Answer::Unavailable => Outcome::Unavailable,
        Answer::Error(text) => Outcome::Error(text.to_string()),
    }
}

/// Name servers of `/etc/resolv.conf` (port 53 unless configured otherwise).
fn system_name_servers() -> Result<Vec<SocketAddr>, DnsSetupError> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| DnsSetupError::SystemConfig(e.to_string()))?;
    let mut servers: Vec<SocketAddr> = Vec::new();
    for ns in config.name_servers() {
        let port = ns.connections.first().map_or(53, |c| c.port);
        let addr = SocketAddr::new(ns.ip, port);
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    if servers.is_empty() {
        return Err(DnsSetupError::SystemConfig("no name servers".into()));
    }
    Ok(servers)
}

/// Records one lookup when dropped: on completion with its outcome, on cancellation (a stage
/// deadline dropped the future) as `timeout`.
struct Recorder<'a> {
    metrics: &'a Metrics,
    check: &'static str,
    start: Instant,
    result: &'static str,
}

impl<'a> Recorder<'a> {
    fn new(metrics: &'a Metrics, check: &'static str) -> Recorder<'a> {
        Recorder {
            metrics,
            check,
            start: Instant::now(),
            result: "timeout",
        }
    }

    fn finish<T>(&mut self, outcome: Outcome<T>) -> Outcome<T> {
        self.result = outcome.label();
        outcome
    }
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

/// `name` as an absolute DNS name: checks query exact names, never the search list. A
/// name in Unicode (an SMTPUTF8 sender's `bücher.example`) is put in its A-label form
/// (IDNA), as the DNS holds it.
fn fqdn(name: &str) -> Option<Name> {
    // UTS-46 over the whole name, so the dots it maps (`。`, `．`, `｡`) part labels as
    // `.` does (review: `Name::from_utf8` splits on `.` first, and `bücher。example` was
    // one label, asked of the root).
    let ascii;
    let name = if name.is_ascii() {
        name
    } else {
        ascii = idna::domain_to_ascii(name).ok()?;
        ascii.as_str()
    };
    let mut parsed = Name::from_ascii(name).ok()?;
    parsed.set_fqdn(true);
    Some(parsed)
}

/// A name that cannot be a DNS name cannot exist there: not found, not a failure of the
/// DNS (which `dns_tempfail` would turn into a 4xx for ever).
fn invalid<T>(name: &str) -> Outcome<T> {
    tracing::debug!(name, "not a DNS name: not looked up");
    Outcome::NotFound
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
    fn names_are_absolute_and_displayed_without_the_root_dot() {
        assert!(fqdn("a.example.test").is_some_and(|n| n.is_fqdn()));
        assert!(fqdn("bad..name").is_none());
        // Regression (review): an SMTPUTF8 sender's domain was never put in its A-label
        // form, so it was never looked up, and with `dns_tempfail` got 451 for ever.
        assert_eq!(
            fqdn("b\u{fc}cher.example").map(|n| n.to_ascii()),
            Some("xn--bcher-kva.example.".to_owned())
        );
        // Regression (review): the dots UTS-46 maps to `.` part labels too.
        for dotted in ["b\u{fc}cher\u{3002}example", "b\u{fc}cher\u{ff0e}example"] {
            let name = fqdn(dotted);
            assert_eq!(
                name.as_ref().map(Name::to_ascii),
                Some("xn--bcher-kva.example.".to_owned())
            );
            assert_eq!(name.map(|n| n.num_labels()), Some(2), "{dotted}");
        }
        let name = Name::from_ascii("mx.example.test.").unwrap_or_default();
        assert_eq!(display_name(&name), "mx.example.test");
        assert_eq!(display_name(&Name::root()), ".");
    }

    #[test]
    fn answers_become_outcomes() {
        let a = |r: &RData| match r {
            RData::A(a) => Some(a.0),
            _ => None,
        };
        assert_eq!(outcome(Answer::Timeout, a), Outcome::Timeout);
        assert_eq!(outcome(Answer::ServFail, a), Outcome::ServFail);
        assert_eq!(outcome(Answer::Unavailable, a), Outcome::Unavailable);
        let negative = Answer::Negative {
            code: hickory_resolver::proto::op::ResponseCode::NXDomain,
            expires: Instant::now(),
        };
        assert_eq!(outcome(negative, a), Outcome::NotFound);
        let cname_only = Answer::Records {
            records: vec![hickory_resolver::proto::rr::Record::from_rdata(
                Name::root(),
                60,
                RData::CNAME(hickory_resolver::proto::rr::rdata::CNAME(Name::root())),
            )]
            .into(),
            expires: Instant::now(),
        };
        assert_eq!(outcome(cname_only, a), Outcome::NotFound);
    }
}
