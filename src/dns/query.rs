//! The one path every lookup takes: the answer cache, then the health gate, then at most one
//! query in flight per name and type (concurrent sessions asking the same thing wait for
//! the same answer), then the transport. Negative answers are cached at least
//! `dns.negative_ttl_min`, so a resolver that sends NXDOMAIN without an SOA is not asked the
//! same question again and again.

use super::cache::TtlCache;
use super::health::{Failure, Health};
use super::transport::{is_referral, ExchangeError, Transport};
use crate::config::query_name_for_logs;
use crate::metrics::LogEvery;
use futures::future::{BoxFuture, FutureExt, Shared};
use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::BinEncodable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Positive answers are kept at most this long, whatever their TTL.
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Negative answers are kept at most this long (RFC 2308 §5 suggests 1–3 hours), unless
/// `dns.negative_ttl_min` asks for more.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3 * 3600);

/// What the resolver made of one question.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// NOERROR with answer records (CNAMEs included, as the server sent them).
    Records {
        /// The answer section.
        records: Arc<[Record]>,
        /// When the cached copy expires.
        expires: Instant,
    },
    /// NXDOMAIN, or NOERROR without answers (NODATA).
    Negative {
        /// `NXDomain` or `NoError`.
        code: ResponseCode,
        /// When the cached copy expires.
        expires: Instant,
    },
    /// The server answered SERVFAIL.
    ServFail,
    /// No server answered in time.
    Timeout,
    /// The resolver is marked down; nothing was asked.
    Unavailable,
    /// A refused or unreachable server, another response code, a referral from a server
    /// that does not recurse, or a failed lookup task.
    Error(Arc<str>),
}

impl Answer {
    /// About what the cached copy of this answer for `key` weighs in memory, in bytes: each
    /// record parsed, plus the key and the map's own overhead.
    pub(super) fn weight(&self, key: &Key) -> usize {
        const OVERHEAD: usize = 128;
        let records = match self {
            Answer::Records { records, .. } => records.iter().map(record_weight).sum(),
            _ => 0,
        };
        OVERHEAD + key.0.len() + records
    }
}

/// What a parsed record holds in memory: the record itself, its data as it travels, and
/// for TXT each piece of text as an allocation of its own. Weighed as it travels, a TXT
/// record of 3,800 empty pieces counted 4 KB and held 61 KB, so a sender's wildcard zone
/// grew the 32 MiB cache to about 500 MB.
fn record_weight(record: &Record) -> usize {
    let wire = record.to_bytes().map_or(RECORD_WEIGHT_UNKNOWN, |b| b.len());
    let pieces = match &record.data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|piece| std::mem::size_of::<Box<[u8]>>() + allocation(piece.len()))
            .sum(),
        _ => 0,
    };
    std::mem::size_of::<Record>() + wire + pieces
}

/// About what an allocation of `len` bytes takes from the allocator (none for 0).
fn allocation(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).max(32).next_multiple_of(16)
    }
}

/// The weight counted for a record that does not encode: as much as a big TXT answer.
const RECORD_WEIGHT_UNKNOWN: usize = 4096;

pub(super) type Key = (Name, RecordType);
type InFlight = Shared<BoxFuture<'static, Answer>>;

/// Cache, health and transport of one resolver.
#[derive(Debug)]
pub(crate) struct Core {
    transport: Transport,
    cache: TtlCache<Key, Answer>,
    in_flight: Mutex<HashMap<Key, InFlight>>,
    pub(crate) health: Health,
    negative_ttl_min: Duration,
    down_backoff: Duration,
    confirm_within: Duration,
    error_log: LogEvery,
    /// The last probe asked after a REFUSED answer (when, and whether the resolver
    /// answered it): reused for [`REFUSAL_PROBE_REUSE`], so a burst of refusals (a
    /// resolver refusing over its rate limit) does not bring a burst of probes.
    refusal_probe: Mutex<Option<(Instant, bool)>>,
}

/// How long the outcome of a probe after a REFUSED answer stands for later refusals.
const REFUSAL_PROBE_REUSE: Duration = Duration::from_secs(1);

/// Settings of a [`Core`] besides its parts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreSettings {
    pub(crate) cache_size: usize,
    pub(crate) cache_bytes: usize,
    pub(crate) negative_ttl_min: Duration,
    pub(crate) down_backoff: Duration,
    /// How long a lookup that timed out in silence waits for the probe that tells a dead
    /// resolver from a live one whose question's servers are silent.
    pub(crate) confirm_within: Duration,
}

impl Core {
    pub(crate) fn new(transport: Transport, health: Health, settings: CoreSettings) -> Core {
        Core {
            transport,
            cache: TtlCache::new(settings.cache_size, settings.cache_bytes),
            in_flight: Mutex::new(HashMap::new()),
            health,
            negative_ttl_min: settings.negative_ttl_min,
            down_backoff: settings.down_backoff,
            confirm_within: settings.confirm_within,
            error_log: LogEvery::new(Duration::from_secs(60)),
            refusal_probe: Mutex::new(None),
        }
    }

    /// Whether the resolver answers questions at all after it refused or failed one: a probe, or
    /// the outcome of one asked within [`REFUSAL_PROBE_REUSE`].
    async fn answers_others(&self) -> bool {
        let recent = self
            .refusal_probe
            .lock()
            .ok()
            .and_then(|p| *p)
            .filter(|(at, _)| at.elapsed() < REFUSAL_PROBE_REUSE);
        if let Some((_, answered)) = recent {
            return answered;
        }
        let answered = matches!(
            tokio::time::timeout(self.confirm_within, self.probe()).await,
            Ok(true)
        );
        if let Ok(mut p) = self.refusal_probe.lock() {
            *p = Some((Instant::now(), answered));
        }
        answered
    }

    /// The answer to `rtype` records of `name` (absolute): local names first, then the
    /// cache, the health gate, the query in flight or a new one.
    pub(crate) async fn resolve(self: &Arc<Self>, name: Name, rtype: RecordType) -> Answer {
        if let Some(answer) = super::local::answer(&name, rtype) {
            return answer;
        }
        let key = (name, rtype);
        if let Some((answer, _)) = self.cache.get(&key) {
            return answer;
        }
        if self.health.is_down() {
            return Answer::Unavailable;
        }
        self.join(key).await
    }

    /// The cached answer to `rtype` records of `name`, if any: no query, nothing counted.
    pub(crate) fn cached(&self, name: Name, rtype: RecordType) -> Option<Answer> {
        self.cache.get(&(name, rtype)).map(|(answer, _)| answer)
    }

    /// Waits for the query of `key` already in flight, or starts it. The query runs as its
    /// own task, so it finishes (and fills the cache) even if every caller gave up at a
    /// stage deadline, and a panic in it is an error answer, not a dead gateway.
    fn join(self: &Arc<Self>, key: Key) -> InFlight {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(waiting) = in_flight.get(&key) {
            return waiting.clone();
        }
        let core = self.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let _done = Landed {
                core: &core,
                key: &task_key,
            };
            core.ask(&task_key).await
        });
        let shared = async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "DNS lookup task failed");
                Answer::Error("lookup task failed".into())
            })
        }
        .boxed()
        .shared();
        in_flight.insert(key, shared.clone());
        shared
    }

    /// Asks the servers, logging an error answer (throttled).
    async fn ask(self: &Arc<Self>, key: &Key) -> Answer {
        let answer = self.exchange(key).await;
        if let Answer::Error(why) = &answer {
            // A resolver answering FORMERR, NOTIMP or referrals to every question turns
            // every DNS check off while it looks up: say so, once a minute.
            let (name, rtype) = key;
            if self.error_log.due() {
                tracing::warn!(name = %query_name_for_logs(&name.to_string()), %rtype, error = %why, "DNS lookup failed: the resolver answered with an error, or no socket could be opened here (see mxguard_dns_lookups_total{{result=\"error\"}})");
            } else {
                tracing::debug!(name = %query_name_for_logs(&name.to_string()), %rtype, error = %why, "DNS lookup failed");
            }
        }
        answer
    }

    /// Asks the servers, caches what can be cached, and keeps the health count.
    async fn exchange(self: &Arc<Self>, (name, rtype): &Key) -> Answer {
        let asked = Instant::now();
        match self.transport.exchange(name, *rtype).await {
            Ok(message) if message.metadata.response_code == ResponseCode::Refused => {
                // A resolver that refuses us (an access list that leaves the gateway out)
                // answers but resolves nothing: counted as not reaching it, so it is marked
                // down after `down_after` refusals, not shown as up while every check
                // silently scores nothing. One that refuses only some names (a policy
                // zone, a view) still answers the probe: a sender naming five such names
                // (SPF includes, DKIM selectors) must not switch every DNS check off.
                if !self.answers_others().await && self.health.failed(Failure::Unreachable) {
                    self.start_probe();
                }
                Answer::Error("response code REFUSED".into())
            }
            Ok(message) if message.metadata.response_code == ResponseCode::ServFail => {
                // A resolver that fails every question (unbound with a broken trust anchor
                // or a wrong clock, no upstream) answered and looked up, while every check
                // scored nothing and `mxguard_dns_up` said 1 (review). A name's own broken
                // servers fail only that name: the probe tells the two apart, as for
                // REFUSED.
                if self.answers_others().await {
                    tracing::debug!(name = %query_name_for_logs(&name.to_string()), %rtype, "SERVFAIL for one name while the resolver answers others");
                } else {
                    if self.error_log.due() {
                        tracing::warn!(name = %query_name_for_logs(&name.to_string()), %rtype, "DNS lookup failed: the resolver answered SERVFAIL to this name and to the probe (see mxguard_dns_lookups_total{{result=\"servfail\"}})");
                    }
                    if self.health.failed(Failure::Unreachable) {
                        self.start_probe();
                    }
                }
                Answer::ServFail
            }
            Ok(message) => {
                self.health.answered();
                let answer = self.interpret(&message);
                match &answer {
                    Answer::Records { expires, .. } | Answer::Negative { expires, .. } => {
                        let key = (name.clone(), *rtype);
                        let weight = answer.weight(&key);
                        self.cache.insert(key, answer.clone(), *expires, weight);
                    }
                    _ => {}
                }
                answer
            }
            Err(ExchangeError::Timeout) => {
                if self.health.silent_since(asked) {
                    self.confirm_silence().await;
                }
                if self.health.failed(Failure::Timeout { asked }) {
                    self.start_probe();
                }
                Answer::Timeout
            }
            Err(e @ ExchangeError::Unreachable(_)) => {
                if self.health.failed(Failure::Unreachable) {
                    self.start_probe();
                }
                Answer::Error(e.to_string().into())
            }
            Err(e @ ExchangeError::Truncated(_)) => {
                // The server answered: that is a sign of life, not of trouble.
                self.health.answered();
                Answer::Error(e.to_string().into())
            }
            // A shortage of our own (descriptors, buffers) says nothing of the resolver:
            // counted as down, it would have turned every DNS check off until a probe.
            Err(e @ (ExchangeError::Query(_) | ExchangeError::Local(_))) => {
                Answer::Error(e.to_string().into())
            }
        }
    }

    /// A response as an [`Answer`], with the time its cached copy expires.
    fn interpret(&self, message: &Message) -> Answer {
        let now = Instant::now();
        match message.metadata.response_code {
            ResponseCode::NoError if !message.answers.is_empty() => {
                let ttl = message.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
                let mut ttl = Duration::from_secs(u64::from(ttl)).min(MAX_TTL);
                let asked = message.queries.first().map(|q| q.query_type());
                if !message
                    .answers
                    .iter()
                    .any(|r| Some(r.record_type()) == asked)
                {
                    // Only a CNAME chain, whose target has no records of the type asked:
                    // that part is a negative answer, kept as long as its SOA says
                    // (RFC 2308 §5), not for the CNAME's TTL.
                    ttl = ttl.min(self.negative_ttl(message));
                }
                Answer::Records {
                    records: message.answers.clone().into(),
                    expires: now + ttl,
                }
            }
            ResponseCode::NoError if is_referral(message) => Answer::Error(
                "referral: the name server does not resolve recursively \
                 (dns.nameservers must be recursive resolvers)"
                    .into(),
            ),
            code @ (ResponseCode::NoError | ResponseCode::NXDomain) => Answer::Negative {
                code,
                expires: now + self.negative_ttl(message),
            },
            ResponseCode::ServFail => Answer::ServFail,
            code => Answer::Error(format!("response code {code}").into()),
        }
    }

    /// RFC 2308 §5: the smaller of the SOA's TTL and its MINIMUM; never below
    /// `dns.negative_ttl_min` (also when there is no SOA at all).
    fn negative_ttl(&self, message: &Message) -> Duration {
        let from_soa = message.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        });
        let ttl = Duration::from_secs(u64::from(from_soa.unwrap_or(0)));
        ttl.clamp(
            self.negative_ttl_min,
            MAX_NEGATIVE_TTL.max(self.negative_ttl_min),
        )
    }

    /// Asks the resolver a question any live one answers from its cache (the root's name
    /// servers) before a silent timeout marks it down. A recursive resolver stays silent
    /// while the servers of the name asked about do (a lame or firewalled zone, which any
    /// spam source can arrange for its reverse zone): that is no reason to stop asking it
    /// about other names. An answer counts as one from the resolver.
    async fn confirm_silence(&self) {
        if let Ok(true) = tokio::time::timeout(self.confirm_within, self.probe()).await {
            tracing::debug!("a DNS lookup timed out while the resolver answers: the name's own servers are silent");
        }
    }

    /// Asks for the root's name servers, which any live resolver has cached; an answer
    /// counts as one from the resolver. Whether it came.
    async fn probe(&self) -> bool {
        let answered = self
            .transport
            .exchange(&Name::root(), RecordType::NS)
            .await
            .map_err(|e| tracing::debug!(error = %e, "DNS probe unanswered"))
            .is_ok_and(|m| {
                !matches!(
                    m.metadata.response_code,
                    ResponseCode::Refused | ResponseCode::ServFail
                )
            });
        if answered {
            self.health.answered();
        }
        answered
    }

    /// Asks the servers every `dns.down_backoff` until one answers; stops when the resolver
    /// is dropped (a reload built a new one) or marked up by a late answer.
    fn start_probe(self: &Arc<Self>) {
        let weak: Weak<Core> = Arc::downgrade(self);
        let backoff = self.down_backoff;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(backoff).await;
                let Some(core) = weak.upgrade() else { return };
                if !core.health.is_down() {
                    return;
                }
                if core.probe().await {
                    return;
                }
            }
        });
    }

    /// The configured servers, for logs.
    pub(crate) fn servers(&self) -> Vec<std::net::SocketAddr> {
        self.transport.servers().collect()
    }
}

/// Removes a finished query from the in-flight map, also when its task panicked (the guard
/// is dropped while unwinding). The cache was filled first, so nobody asks again between.
struct Landed<'a> {
    core: &'a Core,
    key: &'a Key,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.core
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::rdata::SOA;

    fn core(negative_ttl_min: u64) -> Core {
        let gauge = prometheus::IntGauge::new("t_up", "t").unwrap_or_else(|e| panic!("{e}"));
        Core::new(
            Transport::new(&[], Duration::from_secs(1), Duration::from_secs(1), 1),
            Health::new(5, gauge),
            CoreSettings {
                cache_size: 10,
                cache_bytes: 1 << 20,
                negative_ttl_min: Duration::from_secs(negative_ttl_min),
                down_backoff: Duration::from_secs(1),
                confirm_within: Duration::from_secs(1),
            },
        )
    }

    /// Regression (review): a TXT answer was weighed as it travels; its pieces of text,
    /// each stored apart, made it hold 15 times more than the cache counted.
    #[test]
    fn a_txt_record_of_many_pieces_weighs_what_it_holds() {
        let name = Name::from_ascii("x.test.").unwrap_or_default();
        let empty: Vec<&[u8]> = vec![b""; 3800];
        let txt = RData::TXT(hickory_resolver::proto::rr::rdata::TXT::from_bytes(empty));
        let answer = Answer::Records {
            records: vec![Record::from_rdata(name.clone(), 300, txt)].into(),
            expires: Instant::now(),
        };
        let weight = answer.weight(&(name.clone(), RecordType::TXT));
        assert!(weight >= 3800 * 16 + 3800, "{weight}");
        let a = RData::A(std::net::Ipv4Addr::LOCALHOST.into());
        let one_a = Answer::Records {
            records: vec![Record::from_rdata(name.clone(), 300, a)].into(),
            expires: Instant::now(),
        };
        let weight = one_a.weight(&(name, RecordType::A));
        assert!(weight >= std::mem::size_of::<Record>(), "{weight}");
    }

    fn response(code: ResponseCode, soa: Option<(u32, u32)>) -> Message {
        let mut m = Message::response(1, hickory_resolver::proto::op::OpCode::Query);
        let name = Name::from_ascii("x.test.").unwrap_or_default();
        m.add_query(Query::query(name, RecordType::A));
        m.metadata.response_code = code;
        if let Some((ttl, minimum)) = soa {
            let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, minimum);
            m.add_authority(Record::from_rdata(Name::root(), ttl, RData::SOA(soa)));
        }
        m
    }

    fn ttl_of(answer: &Answer) -> u64 {
        match answer {
            Answer::Negative { expires, .. } | Answer::Records { expires, .. } => {
                expires.duration_since(Instant::now()).as_secs_f64().round() as u64
            }
            other => panic!("not cacheable: {other:?}"),
        }
    }

    #[tokio::test]
    async fn nxdomain_without_soa_is_cached_for_the_floor() {
        let c = core(60);
        let answer = c.interpret(&response(ResponseCode::NXDomain, None));
        assert!(matches!(
            answer,
            Answer::Negative {
                code: ResponseCode::NXDomain,
                ..
            }
        ));
        assert_eq!(ttl_of(&answer), 60);
    }

    #[tokio::test]
    async fn the_soa_sets_the_negative_ttl_above_the_floor() {
        let c = core(60);
        let answer = c.interpret(&response(ResponseCode::NoError, Some((900, 300))));
        assert_eq!(ttl_of(&answer), 300, "the smaller of SOA TTL and MINIMUM");
        let answer = c.interpret(&response(ResponseCode::NXDomain, Some((5, 5))));
        assert_eq!(ttl_of(&answer), 60, "raised to the floor");
        let answer = c.interpret(&response(ResponseCode::NXDomain, Some((999_999, 999_999))));
        assert_eq!(ttl_of(&answer), 3 * 3600, "capped");
    }

    /// Regression (review): a name whose CNAME leads to a target without records of the
    /// type asked was cached for the CNAME's TTL (up to a day), not the negative TTL of the
    /// target's SOA: an MX briefly missing stayed "not found" for the day.
    #[tokio::test]
    async fn a_cname_to_nothing_is_cached_as_a_negative_answer() {
        use hickory_resolver::proto::rr::rdata::CNAME;
        let c = core(60);
        let target = Name::from_ascii("target.test.").unwrap_or_default();
        let cname = Record::from_rdata(
            Name::from_ascii("x.test.").unwrap_or_default(),
            86_400,
            RData::CNAME(CNAME(target.clone())),
        );
        let mut chain = response(ResponseCode::NoError, Some((300, 300)));
        chain.add_answer(cname.clone());
        assert_eq!(ttl_of(&c.interpret(&chain)), 300);

        let mut resolved = response(ResponseCode::NoError, None);
        resolved.add_answer(cname);
        resolved.add_answer(Record::from_rdata(
            target,
            7_200,
            RData::A(std::net::Ipv4Addr::new(192, 0, 2, 1).into()),
        ));
        assert_eq!(ttl_of(&c.interpret(&resolved)), 7_200);
    }

    #[tokio::test]
    async fn error_codes_are_not_answers() {
        let c = core(60);
        assert!(matches!(
            c.interpret(&response(ResponseCode::ServFail, None)),
            Answer::ServFail
        ));
        assert!(matches!(
            c.interpret(&response(ResponseCode::Refused, None)),
            Answer::Error(_)
        ));
    }

    /// Regression (review): a server that does not recurse for us (an authoritative-only
    /// server, or a resolver whose ACL denies recursion) answers NOERROR with no answer and
    /// the NS records of a zone to ask next. That was read as NODATA, so every lookup was
    /// "not found": no DNSBL listed anyone, every client scored `RDNS_NONE` and every sender
    /// `SENDER_DOMAIN_UNRESOLVABLE`, while the resolver looked healthy.
    #[tokio::test]
    async fn a_referral_is_not_a_negative_answer() {
        use hickory_resolver::proto::rr::rdata::NS;
        let c = core(60);
        let mut referral = response(ResponseCode::NoError, None);
        let root_server = Name::from_ascii("a.root-servers.net.").unwrap_or_default();
        referral.add_authority(Record::from_rdata(
            Name::root(),
            518_400,
            RData::NS(NS(root_server.clone())),
        ));
        assert!(
            matches!(c.interpret(&referral), Answer::Error(_)),
            "a referral is no answer"
        );
        // NODATA may carry the zone's NS records beside its SOA: still NODATA.
        let mut nodata = response(ResponseCode::NoError, Some((300, 300)));
        nodata.add_authority(Record::from_rdata(
            Name::root(),
            518_400,
            RData::NS(NS(root_server)),
        ));
        assert!(matches!(
            c.interpret(&nodata),
            Answer::Negative {
                code: ResponseCode::NoError,
                ..
            }
        ));
        // NODATA without SOA or NS (dnsmasq) stays NODATA.
        assert!(matches!(
            c.interpret(&response(ResponseCode::NoError, None)),
            Answer::Negative { .. }
        ));
    }
}
