//! One question to the configured name servers: UDP with a fast first retransmission and
//! exponential back-off inside `dns.timeout`, TCP when an answer is truncated.
//!
//! hickory's resolver cannot do this: it sends each attempt from a fresh unconnected socket
//! and waits a whole `timeout` before the next, so one lost datagram costs the full timeout,
//! a late answer to the first attempt is thrown away, and a server that is not listening is
//! noticed only when the timeout expires (an unconnected UDP socket never sees the ICMP
//! "port unreachable"). Here every server gets one *connected* socket per question, kept for
//! the whole exchange: every retransmission carries the same id, any of their answers is
//! accepted, and a refused or unreachable server fails at once.

use futures::stream::{FuturesUnordered, StreamExt};
use hickory_resolver::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// The UDP payload we advertise (EDNS0): the size the DNS flag day 2020 settled on, which
/// avoids IP fragmentation; larger answers come over TCP.
const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer: a server may ignore our EDNS size. A datagram that fills it may have been
/// cut; one that carries our query's id is then asked again over TCP ([`is_cut_answer`]).
const RECV_BUFFER: usize = 4096;

/// Why an exchange brought no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// No server answered in time.
    #[error("no answer in time")]
    Timeout,
    /// Every server refused the datagram or could not be reached (ICMP, no route).
    #[error("name server unreachable: {0}")]
    Unreachable(String),
    /// The server answered over UDP with a truncated answer and the TCP retry failed: the
    /// server lives, but this answer could not be had.
    #[error("truncated answer, and TCP failed: {0}")]
    Truncated(String),
    /// The question could not be encoded.
    #[error("cannot encode the query: {0}")]
    Query(String),
    /// No socket could be opened here (out of file descriptors or buffers): nothing says
    /// the servers are unreachable.
    #[error("cannot open a socket to ask: {0}")]
    Local(String),
}

/// The name servers and how patiently to ask them.
#[derive(Debug)]
pub(crate) struct Transport {
    servers: Vec<Server>,
    timeout: Duration,
    retransmit: Duration,
    attempts: usize,
}

#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    /// Exchanges in a row this server did not answer; the least failing one is asked first.
    failures: AtomicU32,
}

/// One server's socket in an exchange.
struct Leg {
    socket: Option<Arc<UdpSocket>>,
    /// Refused, unreachable, or answered with an error while others may do better.
    done: bool,
    /// When the first datagram went to this server.
    asked: Option<Instant>,
}

type Received = (usize, Arc<UdpSocket>, io::Result<usize>, Vec<u8>);

impl Transport {
    /// Asks `servers` (tried in order of recent success), transmitting a question at most
    /// `attempts` times: the first retransmission after `retransmit`, each later one after
    /// twice the previous wait, all within `timeout`.
    pub(crate) fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        retransmit: Duration,
        attempts: usize,
    ) -> Transport {
        Transport {
            servers: servers
                .iter()
                .map(|addr| Server {
                    addr: *addr,
                    failures: AtomicU32::new(0),
                })
                .collect(),
            timeout,
            retransmit,
            attempts: attempts.max(1),
        }
    }

    /// The configured servers.
    pub(crate) fn servers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.servers.iter().map(|s| s.addr)
    }

    /// Asks for `rtype` records of `name` and returns the first response that answers the
    /// question (any response code).
    pub(crate) async fn exchange(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Message, ExchangeError> {
        if self.servers.is_empty() {
            return Err(ExchangeError::Unreachable("no name servers".into()));
        }
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        query.set_edns(edns);
        let bytes = query
            .to_vec()
            .map_err(|e| ExchangeError::Query(e.to_string()))?;
        let result = self.udp_exchange(&query, &bytes).await;
        if let Err(ExchangeError::Timeout) = &result {
            tracing::debug!(
                name = %crate::config::query_name_for_logs(&name.to_string()),
                ?rtype,
                "DNS query unanswered"
            );
        }
        result
    }

    /// Server indices, the ones that failed least recently first (stable for ties).
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.servers.len()).collect();
        order.sort_by_key(|&i| self.servers[i].failures.load(Ordering::Relaxed).min(3));
        order
    }

    async fn udp_exchange(&self, query: &Message, bytes: &[u8]) -> Result<Message, ExchangeError> {
        let order = self.order();
        let mut legs: Vec<Leg> = (0..self.servers.len())
            .map(|_| Leg {
                socket: None,
                done: false,
                asked: None,
            })
            .collect();
        let deadline = Instant::now() + self.timeout;
        let mut receiving: FuturesUnordered<
            std::pin::Pin<Box<dyn std::future::Future<Output = Received> + Send>>,
        > = FuturesUnordered::new();
        let mut sent = 0usize;
        let mut next_send = Instant::now();
        let mut wait = self.retransmit;
        let mut last_error = String::new();
        // An error answer (SERVFAIL, REFUSED) is kept while another server may answer better.
        let mut fallback: Option<Message> = None;

        let result = loop {
            let now = Instant::now();
            if sent < self.attempts && now >= next_send {
                // Rotate over the servers still worth asking.
                let live: Vec<usize> = order.iter().copied().filter(|&i| !legs[i].done).collect();
                let Some(&index) = live.get(sent % live.len().max(1)) else {
                    break fallback.ok_or(ExchangeError::Unreachable(last_error));
                };
                match self.send(index, &mut legs[index], bytes).await {
                    Ok(Some(socket)) => receiving.push(Box::pin(receive(index, socket))),
                    Ok(None) => {}
                    // With nothing asked yet, the shortage is the whole story; with a
                    // question in flight (a retransmit's socket failing), its answer is
                    // still waited for.
                    Err(Sent::NoSocket(e)) if receiving.is_empty() && fallback.is_none() => {
                        break Err(ExchangeError::Local(e.to_string()))
                    }
                    Err(Sent::NoSocket(e) | Sent::Failed(e)) => {
                        last_error = format!("{}: {e}", self.servers[index].addr);
                        legs[index].done = true;
                        continue;
                    }
                }
                sent += 1;
                next_send = now + wait;
                wait = wait.saturating_mul(2);
            }
            let wake = if sent < self.attempts {
                next_send.min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        break fallback.ok_or(ExchangeError::Timeout);
                    }
                }
                Some((index, socket, received, buffer)) = receiving.next(), if !receiving.is_empty() => {
                    match received {
                        Ok(len) => {
                            let answer = buffer
                                .get(..len)
                                .and_then(|b| Message::from_vec(b).ok())
                                .filter(|a| answers(query, a));
                            // Truncated by the server (TC), or cut by our buffer.
                            let truncated = match &answer {
                                Some(answer) => answer.metadata.truncation,
                                None => is_cut_answer(query, &buffer, len),
                            };
                            match answer {
                                _ if truncated => {
                                    let addr = self.servers[index].addr;
                                    self.servers[index].failures.store(0, Ordering::Relaxed);
                                    break tcp_exchange(addr, query, deadline)
                                        .await
                                        .map_err(|e| ExchangeError::Truncated(e.to_string()));
                                }
                                Some(answer) if is_error_answer(&answer)
                                    && self.another_may_answer(&legs, index, sent) =>
                                {
                                    legs[index].done = true;
                                    fallback = Some(answer);
                                    next_send = Instant::now();
                                }
                                Some(answer) => {
                                    self.note_silence(&legs, Some(index));
                                    self.servers[index].failures.store(0, Ordering::Relaxed);
                                    break Ok(answer);
                                }
                                // Not an answer to this question (stray or spoofed): keep listening.
                                None => receiving.push(Box::pin(receive(index, socket))),
                            }
                        }
                        Err(e) => {
                            // ICMP port or host unreachable, reported on the connected socket.
                            last_error = format!("{}: {e}", self.servers[index].addr);
                            legs[index].done = true;
                            if !self.another_may_answer(&legs, index, sent) {
                                break fallback.ok_or(ExchangeError::Unreachable(last_error));
                            }
                            next_send = Instant::now();
                        }
                    }
                }
            }
        };
        if matches!(
            result,
            Err(ExchangeError::Timeout | ExchangeError::Unreachable(_))
        ) {
            self.note_silence(&legs, None);
        }
        result
    }

    /// Whether a server other than `index` may still answer: one asked that has not failed,
    /// or one that the `sent` transmissions so far leave room to ask. Waiting for any other
    /// would wait out the whole timeout for nothing.
    fn another_may_answer(&self, legs: &[Leg], index: usize, sent: usize) -> bool {
        legs.iter().enumerate().any(|(i, leg)| {
            i != index && !leg.done && (leg.asked.is_some() || sent < self.attempts)
        })
    }

    /// Counts a failure for every server other than `answered` that had at least one
    /// retransmission interval to answer and did not, so the next question goes to a
    /// server that answers first.
    fn note_silence(&self, legs: &[Leg], answered: Option<usize>) {
        let now = Instant::now();
        for (i, (leg, server)) in legs.iter().zip(&self.servers).enumerate() {
            let silent = leg.asked.is_some_and(|at| now >= at + self.retransmit);
            if Some(i) != answered && (silent || leg.done) {
                server.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends `bytes` to server `index`, opening its socket on first use; returns the socket
    /// when it is new (its receiver must be started).
    async fn send(
        &self,
        index: usize,
        leg: &mut Leg,
        bytes: &[u8],
    ) -> Result<Option<Arc<UdpSocket>>, Sent> {
        let addr = self.servers[index].addr;
        let (socket, new) = match &leg.socket {
            Some(socket) => (socket.clone(), false),
            None => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local).await.map_err(Sent::NoSocket)?;
                socket.connect(addr).await.map_err(Sent::Failed)?;
                let socket = Arc::new(socket);
                leg.socket = Some(socket.clone());
                (socket, true)
            }
        };
        leg.asked.get_or_insert_with(Instant::now);
        socket.send(bytes).await.map_err(Sent::Failed)?;
        Ok(new.then_some(socket))
    }
}

/// Why a question could not be sent to one server.
enum Sent {
    /// No socket could be opened (a local shortage, the same for every server).
    NoSocket(io::Error),
    /// Sending to that server failed (ICMP refusal, no route).
    Failed(io::Error),
}

async fn receive(index: usize, socket: Arc<UdpSocket>) -> Received {
    let mut buffer = vec![0u8; RECV_BUFFER];
    let received = socket.recv(&mut buffer).await;
    (index, socket, received, buffer)
}

/// A datagram that filled the receive buffer (so the kernel may have cut the rest) and
/// carries the id of `query` in a response header: a server that ignored our EDNS size. Its
/// answer is not readable whole, but the server lives and has one: TCP will carry it.
fn is_cut_answer(query: &Message, buffer: &[u8], len: usize) -> bool {
    const QR_BIT: u8 = 0x80;
    len >= RECV_BUFFER
        && buffer.get(..2) == Some(&query.metadata.id.to_be_bytes()[..])
        && buffer.get(2).is_some_and(|flags| flags & QR_BIT != 0)
}

/// The same question, over TCP to `addr` (RFC 7766 framing), within `deadline`.
async fn tcp_exchange(
    addr: SocketAddr,
    query: &Message,
    deadline: Instant,
) -> Result<Message, ExchangeError> {
    let unreachable = |e: io::Error| ExchangeError::Unreachable(format!("{addr} (TCP): {e}"));
    let bytes = query
        .to_vec()
        .map_err(|e| ExchangeError::Query(e.to_string()))?;
    let length = u16::try_from(bytes.len())
        .map_err(|_| ExchangeError::Query("query too long for TCP".into()))?;
    let work = async {
        let mut stream = TcpStream::connect(addr).await.map_err(unreachable)?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await.map_err(unreachable)?;
        loop {
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await.map_err(unreachable)?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut body).await.map_err(unreachable)?;
            if let Some(answer) = Message::from_vec(&body).ok().filter(|a| answers(query, a)) {
                return Ok(answer);
            }
        }
    };
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or(Err(ExchangeError::Timeout))
}

/// `response` answers `query`: same id, a response, the same question (names compare
/// without regard to case). An error response may leave the question out (a server that
/// cannot parse the query, e.g. its EDNS, says FORMERR without it): it answers too, so the
/// next server is asked at once instead of after this one's timeout.
fn answers(query: &Message, response: &Message) -> bool {
    let bare_error = response.queries.is_empty()
        && !matches!(
            response.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        );
    response.metadata.id == query.metadata.id
        && response.metadata.message_type == MessageType::Response
        && (response.queries == query.queries || bare_error)
}

/// SERVFAIL, REFUSED and the like, or a referral: worth asking another server, if there
/// is one.
fn is_error_answer(answer: &Message) -> bool {
    !matches!(
        answer.metadata.response_code,
        ResponseCode::NoError | ResponseCode::NXDomain
    ) || is_referral(answer)
}

/// A NOERROR response without answers that names servers to ask next (NS records in its
/// authority section, and no SOA): a referral from a server that does not recurse for us,
/// not a statement that the name has no such records (RFC 2308 §2.2 tells the two apart).
pub(crate) fn is_referral(message: &Message) -> bool {
    let has = |rtype| message.authorities.iter().any(|r| r.record_type() == rtype);
    message.metadata.response_code == ResponseCode::NoError
        && message.answers.is_empty()
        && has(RecordType::NS)
        && !has(RecordType::SOA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::TXT;
    use hickory_resolver::proto::rr::{RData, Record};

    fn query() -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("a.example.").unwrap_or_default(),
            RecordType::A,
        ));
        q
    }

    /// Asks `servers` for `rtype` records of `name` with a one-hour timeout, waiting two
    /// minutes at most: `None` when the exchange waited for its timeout, which these tests
    /// show it must not.
    async fn exchange_patiently(
        servers: &[SocketAddr],
        attempts: usize,
        name: &str,
        rtype: RecordType,
    ) -> Option<Result<Message, ExchangeError>> {
        let transport = Transport::new(
            servers,
            Duration::from_secs(3600),
            Duration::from_secs(1800),
            attempts,
        );
        let name = Name::from_ascii(name).unwrap_or_default();
        let exchange = transport.exchange(&name, rtype);
        tokio::time::timeout(Duration::from_secs(120), exchange)
            .await
            .ok()
    }

    #[test]
    fn only_a_response_to_the_same_id_and_question_answers() {
        let q = query();
        let mut r = q.clone();
        r.metadata.message_type = MessageType::Response;
        assert!(answers(&q, &r));
        let mut upper = r.clone();
        upper.queries = vec![Query::query(
            Name::from_ascii("A.EXAMPLE.").unwrap_or_default(),
            RecordType::A,
        )];
        assert!(answers(&q, &upper), "names compare without case");
        let mut other_id = r.clone();
        other_id.metadata.id = q.metadata.id.wrapping_add(1);
        assert!(!answers(&q, &other_id));
        let mut other_type = r.clone();
        other_type.queries = vec![Query::query(
            Name::from_ascii("a.example.").unwrap_or_default(),
            RecordType::TXT,
        )];
        assert!(!answers(&q, &other_type));
        assert!(!answers(&q, &q), "a query is not a response");
        // Regression (carried finding): a FORMERR without the question was taken for a
        // stray, and the question waited out this server's whole timeout.
        let mut bare = r.clone();
        bare.queries.clear();
        bare.metadata.response_code = ResponseCode::FormErr;
        assert!(
            answers(&q, &bare),
            "an error response may omit the question"
        );
        bare.metadata.response_code = ResponseCode::NoError;
        assert!(!answers(&q, &bare), "an answer must carry the question");
        bare.metadata.response_code = ResponseCode::NXDomain;
        assert!(!answers(&q, &bare), "an answer must carry the question");
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_fails_without_waiting_for_the_timeout() {
        // Bind and drop a socket: its port is then (almost certainly) closed.
        let addr = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let transport = Transport::new(
            &[addr],
            Duration::from_secs(3600),
            Duration::from_secs(1800),
            2,
        );
        let name = Name::from_ascii("x.test.").unwrap_or_default();
        // A one-hour timeout: returning at all shows the refusal was noticed.
        let result = transport.exchange(&name, RecordType::A).await;
        assert!(
            matches!(result, Err(ExchangeError::Unreachable(_))),
            "{result:?}"
        );
    }

    /// Regression (review): a SERVFAIL was held back while any other server was "not
    /// done", even one that would never be asked (more servers than `attempts`), so an
    /// instant SERVFAIL cost the whole `dns.timeout`.
    #[tokio::test]
    async fn a_servfail_does_not_wait_for_a_server_that_will_never_be_asked() {
        let servfail = crate::dns::testing::TestDns::servfail().await.unwrap();
        let silent = crate::dns::testing::TestDns::silent().await.unwrap();
        let servers = [servfail.addr(), silent.addr()];
        let answer = exchange_patiently(&servers, 1, "x.test.", RecordType::A)
            .await
            .expect("the SERVFAIL was held for a server never asked");
        assert!(
            answer.is_ok_and(|m| m.metadata.response_code == ResponseCode::ServFail),
            "the SERVFAIL is the answer"
        );
        assert_eq!(silent.queries(), 0);
    }

    /// Regression (review suspicion): a server that ignores our EDNS size and sends a
    /// datagram bigger than the receive buffer had it cut; the cut answer did not parse and
    /// was dropped as a stray, so the lookup timed out (and could mark the resolver down)
    /// though the server had answered.
    #[tokio::test]
    async fn an_answer_too_big_for_the_buffer_is_asked_again_over_tcp() {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let big_answer = |query: &Message| {
            let mut response = query.clone();
            response.metadata.message_type = MessageType::Response;
            let name = query.queries[0].name().clone();
            for i in 0..40 {
                let text = format!("{i:03}{}", "x".repeat(200));
                response.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::TXT(TXT::new(vec![text])),
                ));
            }
            response.to_vec().unwrap()
        };
        let server = tokio::spawn(async move {
            let mut buffer = vec![0u8; 2048];
            let (len, peer) = udp.recv_from(&mut buffer).await.unwrap();
            let query = Message::from_vec(&buffer[..len]).unwrap();
            let bytes = big_answer(&query);
            assert!(bytes.len() > RECV_BUFFER, "the answer overflows the buffer");
            udp.send_to(&bytes, peer).await.unwrap();
            let (mut stream, _) = tcp.accept().await.unwrap();
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await.unwrap();
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut body).await.unwrap();
            let bytes = big_answer(&Message::from_vec(&body).unwrap());
            let length = u16::try_from(bytes.len()).unwrap().to_be_bytes();
            stream.write_all(&length).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
        });
        // One attempt: only the TCP answer can end it before the timeout.
        let answer = exchange_patiently(&[addr], 1, "big.test.", RecordType::TXT)
            .await
            .expect("the cut answer was dropped")
            .unwrap();
        assert_eq!(answer.answers.len(), 40);
        server.await.unwrap();
    }

    /// A server that does not recurse for us (an authoritative-only server listed by
    /// mistake) refers us elsewhere: the next configured server is asked, as after a
    /// SERVFAIL, rather than the lookup failing.
    #[tokio::test]
    async fn a_referral_is_followed_by_the_next_server() {
        use crate::dns::testing::{Mode, TestDns};
        let referral = TestDns::builder()
            .mode(Mode::Referral)
            .start()
            .await
            .unwrap();
        let good = TestDns::builder()
            .a("x.test", Ipv4Addr::new(192, 0, 2, 7))
            .start()
            .await
            .unwrap();
        let servers = [referral.addr(), good.addr()];
        let answer = exchange_patiently(&servers, 2, "x.test.", RecordType::A)
            .await
            .expect("the referral waited for the timeout")
            .unwrap();
        assert_eq!(answer.answers.len(), 1, "{answer:?}");
        assert_eq!(referral.queries(), 1);
        // With no other server, the referral is the answer (the lookup reads it as an error).
        let answer = exchange_patiently(&[referral.addr()], 2, "x.test.", RecordType::A)
            .await
            .expect("a lone referral is answered at once")
            .unwrap();
        assert!(is_referral(&answer));
    }

    /// Regression (review): a refusal (ICMP port unreachable) ended the exchange only when
    /// every server had refused, even those that would never be asked (more servers than
    /// `attempts`): a refused first server cost the whole `dns.timeout`, and the lookup was
    /// a timeout, which marks the resolver down at once.
    #[tokio::test]
    async fn a_refusal_does_not_wait_for_a_server_that_will_never_be_asked() {
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let silent = crate::dns::testing::TestDns::silent().await.unwrap();
        let result = exchange_patiently(&[closed, silent.addr()], 1, "x.test.", RecordType::A)
            .await
            .expect("the refusal waited for a server never asked");
        assert!(
            matches!(result, Err(ExchangeError::Unreachable(_))),
            "{result:?}"
        );
        assert_eq!(silent.queries(), 0);
    }
}
