//! An in-process authoritative test DNS server (hickory-server) on a loopback port, so tests
//! serve their own zones and never query the internet.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mxguard::dns::testing::TestDns;
//! let server = TestDns::builder()
//!     .a("mx.example.test", "127.0.0.11".parse().unwrap())
//!     .a("2.0.0.127.bl.test", "127.0.0.2".parse().unwrap())
//!     .start()
//!     .await?;
//! let mut config = TestDns::dns_config(server.addr());
//! # let _ = config; Ok(()) }
//! ```

use crate::config::DnsConfig;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, MX, NS, PTR, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// How the server treats every query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer from the records: the records, NODATA or NXDOMAIN (both with an SOA whose
    /// minimum is the negative TTL).
    Authoritative,
    /// Like `Authoritative`, but NODATA and NXDOMAIN come without an SOA, so nothing says
    /// how long to cache them (what some forwarders, dnsmasq among them, send).
    NoSoa,
    /// Never answer (a dead or firewalled server): lookups time out.
    Silent,
    /// Answer SERVFAIL to everything.
    ServFail,
    /// Answer REFUSED to everything (a resolver whose access list leaves the gateway out).
    Refused,
    /// Like `Authoritative`, but never answer queries of this type (a lookup of one
    /// family times out while the other's answers).
    SilentFor(RecordType),
    /// Answer like a server that does not recurse for us: NOERROR, no answer, the root's
    /// name servers to ask next (a referral).
    Referral,
}

/// Records for a [`TestDns`], added one by one or as zone text. The record methods panic on
/// an invalid DNS name: this is a test helper, and a typo should fail the test loudly.
#[derive(Debug, Clone)]
pub struct TestDnsBuilder {
    records: Vec<Record>,
    ttl: u32,
    negative_ttl: u32,
    mode: Mode,
    silent_zones: Vec<LowerName>,
    error_zones: Vec<(LowerName, ResponseCode)>,
}

/// A running test DNS server; stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    _server: Server<Handler>,
}

impl std::fmt::Debug for TestDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDns")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

impl TestDns {
    /// An empty authoritative server to add records to (TTL 300, negative TTL 300).
    pub fn builder() -> TestDnsBuilder {
        TestDnsBuilder {
            records: Vec::new(),
            ttl: 300,
            negative_ttl: 300,
            mode: Mode::Authoritative,
            silent_zones: Vec::new(),
            error_zones: Vec::new(),
        }
    }

    /// A server that never answers.
    pub async fn silent() -> io::Result<TestDns> {
        Self::builder().mode(Mode::Silent).start().await
    }

    /// A server that answers SERVFAIL to everything.
    pub async fn servfail() -> io::Result<TestDns> {
        Self::builder().mode(Mode::ServFail).start().await
    }

    /// The loopback address it listens on (UDP and TCP, same port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far (over UDP and TCP), answered or not.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// A `[dns]` configuration that uses only `addr`, with a short timeout (300 ms, first
    /// retransmission after 100 ms, 2 transmissions), a cache, a 2 s stage deadline, and the
    /// default health settings.
    pub fn dns_config(addr: SocketAddr) -> DnsConfig {
        DnsConfig {
            nameservers: vec![addr],
            timeout: Duration::from_millis(300),
            retransmit: Duration::from_millis(100),
            attempts: 2,
            cache_size: 1024,
            stage_deadline: Duration::from_secs(2),
            ..DnsConfig::default()
        }
    }

    /// A resolver asking only this server (with [`TestDns::dns_config`]), recording into
    /// metrics of its own. Must be called inside a Tokio runtime.
    pub fn resolver(&self) -> Result<crate::dns::Dns, crate::dns::DnsSetupError> {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        crate::dns::Dns::new(&TestDns::dns_config(self.addr()), metrics)
    }
}

impl TestDnsBuilder {
    /// TTL of the records added after this call.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// The negative TTL (SOA minimum and SOA TTL) of NXDOMAIN and NODATA answers.
    pub fn negative_ttl(mut self, ttl: u32) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How the server answers.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Never answer a query for `zone` or a name under it (a lame or deliberately slow
    /// delegation), whatever the mode: those lookups time out, the others are answered.
    pub fn silent_under(mut self, zone: &str) -> Self {
        self.silent_zones.push(LowerName::new(&absolute(zone)));
        self
    }

    /// Answer REFUSED for names under `zone`, whatever the mode (a resolver's policy zone,
    /// or a view that serves only some names).
    pub fn refused_under(mut self, zone: &str) -> Self {
        let zone = LowerName::new(&absolute(zone));
        self.error_zones.push((zone, ResponseCode::Refused));
        self
    }

    /// Answer SERVFAIL for names under `zone`, whatever the mode (a zone whose own servers
    /// are broken: lame, or failing DNSSEC validation).
    pub fn servfail_under(mut self, zone: &str) -> Self {
        let zone = LowerName::new(&absolute(zone));
        self.error_zones.push((zone, ResponseCode::ServFail));
        self
    }

    fn push(mut self, name: &str, rdata: RData) -> Self {
        let name = absolute(name);
        self.records.push(Record::from_rdata(name, self.ttl, rdata));
        self
    }

    /// `name A ip`.
    pub fn a(self, name: &str, ip: Ipv4Addr) -> Self {
        self.push(name, RData::A(A(ip)))
    }

    /// `name AAAA ip`.
    pub fn aaaa(self, name: &str, ip: Ipv6Addr) -> Self {
        self.push(name, RData::AAAA(AAAA(ip)))
    }

    /// `ip PTR host` (the reverse name is derived from `ip`).
    pub fn ptr(self, ip: IpAddr, host: &str) -> Self {
        let owner = Name::from(ip).to_string();
        self.push(&owner, RData::PTR(PTR(absolute(host))))
    }

    /// `name TXT text` (split into 255-byte strings as needed).
    pub fn txt(self, name: &str, text: &str) -> Self {
        let chunks = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>();
        let chunks = if chunks.is_empty() {
            vec![String::new()]
        } else {
            chunks
        };
        self.push(name, RData::TXT(TXT::new(chunks)))
    }

    /// `name MX preference exchange`.
    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Self {
        self.push(name, RData::MX(MX::new(preference, absolute(exchange))))
    }

    /// Records as zone text, one per line: `NAME TYPE DATA` with TYPE one of `A`, `AAAA`,
    /// `PTR` (NAME is then an IP address), `TXT` (DATA is the rest of the line, optional
    /// surrounding quotes removed), `MX` (DATA is `PREFERENCE EXCHANGE`). Blank lines and
    /// `;` comments are skipped.
    pub fn zone(mut self, text: &str) -> Result<Self, String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.split(';').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("zone line {}: {what}: {line:?}", n + 1);
            let mut parts = line.splitn(3, char::is_whitespace);
            let name = parts.next().unwrap_or_default();
            let rtype = parts.next().ok_or_else(|| bad("missing type"))?;
            let data = parts.next().ok_or_else(|| bad("missing data"))?.trim();
            self = match rtype.to_ascii_uppercase().as_str() {
                "A" => self.a(name, data.parse().map_err(|_| bad("bad IPv4 address"))?),
                "AAAA" => self.aaaa(name, data.parse().map_err(|_| bad("bad IPv6 address"))?),
                "PTR" => self.ptr(
                    name.parse().map_err(|_| bad("PTR owner must be an IP"))?,
                    data,
                ),
                "TXT" => {
                    let text = data
                        .strip_prefix('"')
                        .and_then(|d| d.strip_suffix('"'))
                        .unwrap_or(data);
                    self.txt(name, text)
                }
                "MX" => {
                    let (pref, exchange) = data
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| bad("MX wants PREFERENCE EXCHANGE"))?;
                    let pref = pref.parse().map_err(|_| bad("bad MX preference"))?;
                    self.mx(name, pref, exchange.trim())
                }
                _ => return Err(bad("unsupported type")),
            };
        }
        Ok(self)
    }

    /// Binds UDP and TCP on one free loopback port and starts serving.
    pub async fn start(self) -> io::Result<TestDns> {
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr()?;
        let queries = Arc::new(AtomicUsize::new(0));
        let soa = Record::from_rdata(
            Name::root(),
            self.negative_ttl,
            RData::SOA(SOA::new(
                absolute("ns.test"),
                absolute("hostmaster.test"),
                1,
                3600,
                600,
                86400,
                self.negative_ttl,
            )),
        );
        let handler = Handler {
            records: self.records,
            soa,
            mode: self.mode,
            silent_zones: self.silent_zones,
            error_zones: self.error_zones,
            queries: queries.clone(),
        };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Ok(TestDns {
            addr,
            queries,
            _server: server,
        })
    }
}

fn absolute(name: &str) -> Name {
    let mut parsed =
        Name::from_ascii(name).unwrap_or_else(|e| panic!("bad test name {name:?}: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// UDP and TCP on the same free loopback port (retrying if TCP's port is taken).
async fn bind_pair() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port pair")))
}

struct Handler {
    records: Vec<Record>,
    soa: Record,
    mode: Mode,
    silent_zones: Vec<LowerName>,
    error_zones: Vec<(LowerName, ResponseCode)>,
    queries: Arc<AtomicUsize>,
}

impl Handler {
    /// The error answered for `name`, when it is under a zone given one.
    fn error_for(&self, name: &LowerName) -> Option<ResponseCode> {
        self.error_zones
            .iter()
            .find(|(zone, _)| zone.zone_of(name))
            .map(|(_, code)| *code)
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let silent = ResponseInfo::from(Header {
            metadata,
            counts: HeaderCounts::default(),
        });
        let builder = MessageResponseBuilder::from_message_request(request);
        let send = match (self.mode, request.queries.queries().first()) {
            (Mode::Silent, _) => return silent,
            (_, Some(query)) if self.silent_zones.iter().any(|z| z.zone_of(query.name())) => {
                return silent
            }
            (Mode::SilentFor(mute), Some(query)) if query.query_type() == mute => return silent,
            (_, Some(query)) if self.error_for(query.name()).is_some() => {
                let code = self
                    .error_for(query.name())
                    .unwrap_or(ResponseCode::ServFail);
                let response = builder.error_msg(&request.metadata, code);
                response_handle.send_response(response).await
            }
            (Mode::Authoritative | Mode::NoSoa | Mode::SilentFor(_), Some(query)) => {
                metadata.authoritative = true;
                let qname: &LowerName = query.name();
                let qtype = query.query_type();
                let at_name: Vec<&Record> = self
                    .records
                    .iter()
                    .filter(|r| LowerName::new(&r.name) == *qname)
                    .collect();
                let answers: Vec<&Record> = at_name
                    .iter()
                    .copied()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .collect();
                if answers.is_empty() {
                    // NXDOMAIN when nothing lives at the name, NODATA otherwise; the SOA
                    // carries the negative TTL either way (RFC 2308).
                    let exists = !at_name.is_empty()
                        || self
                            .records
                            .iter()
                            .any(|r| qname.zone_of(&LowerName::new(&r.name)));
                    if !exists {
                        metadata.response_code = ResponseCode::NXDomain;
                    }
                    let soa = (self.mode != Mode::NoSoa).then_some(&self.soa);
                    let response = builder.build(
                        metadata,
                        std::iter::empty(),
                        std::iter::empty(),
                        soa,
                        std::iter::empty(),
                    );
                    response_handle.send_response(response).await
                } else {
                    let response = builder.build(
                        metadata,
                        answers,
                        std::iter::empty(),
                        std::iter::empty(),
                        std::iter::empty(),
                    );
                    response_handle.send_response(response).await
                }
            }
            (Mode::Referral, Some(_)) => {
                let root_server = Name::from_ascii("a.root-servers.net.").unwrap_or_default();
                let ns = Record::from_rdata(Name::root(), 518_400, RData::NS(NS(root_server)));
                let response = builder.build(
                    metadata,
                    std::iter::empty(),
                    std::iter::once(&ns),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                response_handle.send_response(response).await
            }
            (Mode::Refused, _) => {
                let response = builder.error_msg(&request.metadata, ResponseCode::Refused);
                response_handle.send_response(response).await
            }
            _ => {
                let response = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                response_handle.send_response(response).await
            }
        };
        send.unwrap_or(silent)
    }
}
