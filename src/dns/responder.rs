//! A DNS responder on a loopback port that answers mail-auth from the shared resolver.
//!
//! mail-auth 0.13 resolves through a hickory `TokioResolver` of its own, and its
//! `ResolverCache` hook cannot stand in for it (the cache is asked by borrowed key, cannot
//! express a lookup error for MX or address records, and an empty address record set would
//! make SPF's `exists:` match). So mail-auth gets a resolver pointed at this responder, which
//! hands every question to [`Dns`]: SPF, DKIM, DMARC and ARC lookups share the cache, the
//! in-flight queries, the health gate and the metrics (under their own `check` label) with
//! every other check, and mail-auth still reads exact DNS answers. The responder answers
//! only loopback peers and stops when the resolver is dropped.

use super::query::Answer;
use super::resolver::{Dns, DnsSetupError, Inner};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::SOA;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the responder offers over UDP; larger answers are truncated, and hickory asks again
/// over TCP.
const UDP_PAYLOAD: u16 = 4096;
/// Answers kept by each of mail-auth's resolvers (one per check).
const AUTH_CACHE_ENTRIES: u64 = 4096;
/// Largest answer (as the shared cache weighs it) mail-auth's resolvers may keep: SPF,
/// DKIM and DMARC records are a few hundred bytes. A bigger one (up to 64 KiB, chosen by
/// whoever runs the sender's DNS) goes out with TTL 0, so four caches counting entries
/// cannot hold a gigabyte past `dns.cache_bytes`; asked again, it is one loopback round
/// trip to the shared cache.
const AUTH_CACHE_ANSWER_BYTES: usize = 4096;
/// An idle TCP connection from mail-auth's resolver is closed after this, and an answer
/// it does not take within this is given up.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Distinct questions one responder answers at once over UDP; past it datagrams are
/// dropped (the asker sends again). The port is open to every process of the host:
/// unbounded, a local user asking for random names under a silent zone held a socket per
/// question until the gateway ran out of descriptors, the resolver was marked down and
/// `accept` failed. A resend of a question being answered takes no place of this bound,
/// so the silent zones of a spam campaign's sender domains (each question resent every
/// third of a second until `dns.timeout`) do not fill it for everyone's lookups; resends
/// have as many places again of their own.
const UDP_IN_FLIGHT: usize = 1024;
/// TCP connections one responder serves at once (mail-auth's resolver opens one only
/// after a truncated UDP answer).
const TCP_CONNECTIONS: usize = 32;
/// The record types mail-auth asks for (SPF, DKIM, DMARC, ARC, and SPF's `a`, `mx`,
/// `ptr`, `exists`): anything else is refused, so the port resolves nothing else for
/// whoever finds it.
const ANSWERED_TYPES: [RecordType; 5] = [
    RecordType::TXT,
    RecordType::MX,
    RecordType::A,
    RecordType::AAAA,
    RecordType::PTR,
];

impl Dns {
    /// A hickory resolver for mail-auth whose every question goes through this resolver
    /// (counted as `check` in `mxguard_dns_lookups_total`, once per question its own small
    /// cache cannot answer). Must be called inside a Tokio runtime.
    pub fn auth_resolver(&self, check: &'static str) -> Result<TokioResolver, DnsSetupError> {
        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        let stop = self.inner().stop.clone();
        let asking = Asking::default();
        tokio::spawn(serve_udp(
            Arc::new(udp),
            self.downgrade(),
            Label {
                check,
                asking: asking.clone(),
            },
            stop.clone(),
        ));
        tokio::spawn(serve_tcp(
            tcp,
            self.downgrade(),
            Label { check, asking },
            stop,
        ));
        client(addr, self.timeout() + Duration::from_secs(1))
    }
}

/// Questions being answered now, by query id and question, with the number of requests
/// waiting for each. hickory sends the same request again from a new socket when an answer
/// takes longer than a third of a second; such a duplicate is answered but not counted as
/// another lookup.
#[derive(Clone, Default)]
struct Asking(Arc<Mutex<HashMap<Question, usize>>>);

/// A request's id and question.
type Question = (u16, Name, RecordType);

/// The `check` label of one responder and its questions in progress.
#[derive(Clone)]
struct Label {
    check: &'static str,
    asking: Asking,
}

impl Asking {
    /// Registers a request; true when it is the first for its question.
    fn enter(&self, key: &Question) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(key.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Whether a request for `key` is being answered now (hickory's resend of a slow
    /// question from a new socket).
    fn answering(&self, key: &Question) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.contains_key(key)
    }

    fn leave(&self, key: &Question) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                map.remove(key);
            }
        }
    }
}

/// UDP and TCP on the same free loopback port.
fn bind_pair() -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loopback port pair")))
}

/// mail-auth's resolver: this responder only, one try (hickory's `attempts` counts retries
/// after the first; the shared path does the retransmitting), EDNS so most answers fit one
/// datagram. It keeps answers as long as the shared cache said they may live (record TTLs
/// and the negative SOA are cut to what is left there), so a busy gateway's repeated SPF
/// and DMARC questions do not each cost a loopback round trip; failures are not cached.
fn client(addr: SocketAddr, timeout: Duration) -> Result<TokioResolver, DnsSetupError> {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    );
    let opts = builder.options_mut();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = timeout;
    opts.attempts = 0;
    opts.cache_size = AUTH_CACHE_ENTRIES;
    opts.edns0 = true;
    opts.edns_payload_len = UDP_PAYLOAD;
    opts.try_tcp_on_error = false;
    opts.num_concurrent_reqs = 1;
    builder
        .build()
        .map_err(|e| DnsSetupError::Build(e.to_string()))
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    dns: Weak<Inner>,
    label: Label,
    stop: CancellationToken,
) {
    let mut buffer = vec![0u8; usize::from(UDP_PAYLOAD)];
    let turns = Arc::new(tokio::sync::Semaphore::new(UDP_IN_FLIGHT));
    // Resends past the bound have turns of their own, as many again: without a bound, a
    // local process resending one question in a flood spawned a task per datagram (review).
    let resend_turns = Arc::new(tokio::sync::Semaphore::new(UDP_IN_FLIGHT));
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "DNS responder receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        let Some(request) = buffer.get(..len).and_then(|b| Message::from_vec(b).ok()) else {
            continue;
        };
        // A resend of a question being answered goes in even past the bound (asked only
        // then: the lookup takes a lock).
        let resend = || {
            request.queries.first().is_some_and(|q| {
                let key = (request.metadata.id, q.name().clone(), q.query_type());
                label.asking.answering(&key)
            })
        };
        let Some(turn) = take_turn(&turns, &resend_turns, resend) else {
            continue;
        };
        let Some(dns) = Dns::upgrade(&dns) else {
            return;
        };
        let socket = socket.clone();
        let label = label.clone();
        tokio::spawn(async move {
            let _turn = turn;
            let reply = respond(&dns, &label, &request, true).await;
            if let Some(bytes) = encode(reply, request.max_payload()) {
                let _ = socket.send_to(&bytes, peer).await;
            }
        });
    }
}

/// A place for a datagram: one of `turns`, else one of `resend_turns` when the datagram
/// is a resend of a question being answered (`resend`, asked only then), else none.
fn take_turn(
    turns: &Arc<tokio::sync::Semaphore>,
    resend_turns: &Arc<tokio::sync::Semaphore>,
    resend: impl FnOnce() -> bool,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match turns.clone().try_acquire_owned() {
        Ok(turn) => Some(turn),
        Err(_) if resend() => resend_turns.clone().try_acquire_owned().ok(),
        Err(_) => None,
    }
}

async fn serve_tcp(listener: TcpListener, dns: Weak<Inner>, label: Label, stop: CancellationToken) {
    let turns = Arc::new(tokio::sync::Semaphore::new(TCP_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) if peer.ip().is_loopback() => {
                // Past the bound the connection is closed at once (dropped).
                let Ok(turn) = turns.clone().try_acquire_owned() else {
                    continue;
                };
                let (dns, label, stop) = (dns.clone(), label.clone(), stop.clone());
                tokio::spawn(async move {
                    serve_connection(stream, dns, label, stop).await;
                    drop(turn);
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "DNS responder accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Questions framed per RFC 7766 on one connection, until it idles or the resolver goes.
async fn serve_connection(
    mut stream: TcpStream,
    dns: Weak<Inner>,
    label: Label,
    stop: CancellationToken,
) {
    loop {
        let read = async {
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await?;
            let len = u16::from_be_bytes(prefix);
            // As the bytes come, not as announced: a bare `0xFFFF` prefix took 64 KiB.
            let mut body = Vec::new();
            (&mut stream)
                .take(u64::from(len))
                .read_to_end(&mut body)
                .await?;
            if body.len() < usize::from(len) {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok::<_, std::io::Error>(body)
        };
        let body = tokio::select! {
            _ = stop.cancelled() => return,
            read = tokio::time::timeout(TCP_IDLE, read) => match read {
                Ok(Ok(body)) => body,
                _ => return,
            },
        };
        let (Ok(request), Some(dns)) = (Message::from_vec(&body), Dns::upgrade(&dns)) else {
            return;
        };
        // mail-auth's resolver asks over TCP only after a truncated UDP answer, which was
        // counted already.
        let reply = respond(&dns, &label, &request, false).await;
        // Not held while the asker takes the answer: a reload's old resolver must go.
        drop(dns);
        let Some(bytes) = encode(reply, u16::MAX) else {
            return;
        };
        let Ok(length) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&bytes);
        // An asker that does not read is not waited for.
        let written = tokio::select! {
            _ = stop.cancelled() => return,
            written = tokio::time::timeout(TCP_IDLE, stream.write_all(&framed)) => written,
        };
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

/// The response to one request: the shared resolver's answer, NXDOMAIN/NODATA as such, any
/// failure (timeout, unavailable, SERVFAIL, error) as SERVFAIL, which mail-auth reads as a
/// temporary error. `count`: whether this request is a lookup of its own in the metrics.
async fn respond(dns: &Dns, label: &Label, request: &Message, count: bool) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD);
        reply.set_edns(edns);
    }
    let question = match request.queries.as_slice() {
        [question]
            if request.metadata.message_type == MessageType::Query
                && request.metadata.op_code == OpCode::Query =>
        {
            question
        }
        _ => {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        }
    };
    if question.query_class() != DNSClass::IN || !ANSWERED_TYPES.contains(&question.query_type()) {
        reply.metadata.response_code = ResponseCode::Refused;
        return reply;
    }
    let key = (
        request.metadata.id,
        question.name().clone(),
        question.query_type(),
    );
    let first = label.asking.enter(&key);
    let answer = dns
        .answer(
            (first && count).then_some(label.check),
            key.1.clone(),
            key.2,
        )
        .await;
    label.asking.leave(&key);
    let small = answer.weight(&(key.1.clone(), key.2)) <= AUTH_CACHE_ANSWER_BYTES;
    match answer {
        Answer::Records { records, expires } => {
            let left = expires.saturating_duration_since(Instant::now()).as_secs();
            let ttl = if small {
                u32::try_from(left).unwrap_or(u32::MAX)
            } else {
                0
            };
            reply.answers = records
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    record.ttl = record.ttl.min(ttl);
                    record
                })
                .collect();
        }
        Answer::Negative { code, expires } => {
            reply.metadata.response_code = code;
            // RFC 2308 §5: the SOA carries how long the negative answer may be kept, so
            // mail-auth's resolver caches it exactly as long as the shared cache does.
            let left = expires.saturating_duration_since(Instant::now()).as_secs();
            let ttl = u32::try_from(left).unwrap_or(u32::MAX);
            reply
                .authorities
                .push(negative_soa(question.name().clone(), ttl));
        }
        Answer::ServFail | Answer::Timeout | Answer::Unavailable | Answer::Error(_) => {
            reply.metadata.response_code = ResponseCode::ServFail;
        }
    }
    reply
}

/// An SOA whose TTL and minimum are both `ttl`, owned by the question's name (the zone's
/// apex is not known here; resolvers read only the two numbers).
fn negative_soa(name: Name, ttl: u32) -> Record {
    let soa = SOA::new(Name::root(), Name::root(), 0, 0, 0, 0, ttl);
    Record::from_rdata(name, ttl, RData::SOA(soa))
}

/// The wire form of `reply`, truncated (TC, no answers) when it exceeds `limit` bytes.
fn encode(mut reply: Message, limit: u16) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= usize::from(limit.max(512)) {
        return Some(bytes);
    }
    reply.answers.clear();
    reply.metadata.truncation = true;
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    /// Regression (review): a resend of a question being answered went in past the bound
    /// with no place at all, so a local process filling the bound and then resending one
    /// of its questions in a flood spawned a task per datagram. Resends have as many
    /// places again, and no more.
    #[test]
    fn resends_past_the_bound_have_a_bound_of_their_own() {
        let turns = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
        let resend_turns = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
        let mut held = Vec::new();
        for _ in 0..UDP_IN_FLIGHT * 3 {
            held.extend(take_turn(&turns, &resend_turns, || false));
        }
        assert_eq!(held.len(), UDP_IN_FLIGHT);
        let mut resends = Vec::new();
        for _ in 0..UDP_IN_FLIGHT * 3 {
            resends.extend(take_turn(&turns, &resend_turns, || true));
        }
        assert_eq!(resends.len(), UDP_IN_FLIGHT);
        // A place freed is taken by the next datagram, resend or not.
        held.pop();
        assert!(take_turn(&turns, &resend_turns, || false).is_some());
        resends.pop();
        assert!(take_turn(&turns, &resend_turns, || true).is_some());
    }
}
