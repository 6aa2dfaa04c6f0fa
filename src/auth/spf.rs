//! SPF (RFC 7208) for the HELO identity and the MAIL FROM identity.

use super::Authenticator;
use hickory_resolver::proto::rr::{Name, RecordType};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{Parameters, RecordSet, ResolverCache, SpfOutput, Txt, MX};
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::time::Instant;

/// The result of one SPF check (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfResult {
    /// The client is authorized.
    Pass,
    /// The client is explicitly not authorized (`-all`).
    Fail,
    /// The client is probably not authorized (`~all`).
    SoftFail,
    /// The domain makes no assertion (`?all`).
    Neutral,
    /// No SPF record, or no domain to check.
    None,
    /// A transient DNS error (or the stage deadline passed).
    TempError,
    /// The record could not be interpreted.
    PermError,
}

impl SpfResult {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }

    fn from_mail_auth(result: mail_auth::SpfResult) -> SpfResult {
        match result {
            mail_auth::SpfResult::Pass => SpfResult::Pass,
            mail_auth::SpfResult::Fail => SpfResult::Fail,
            mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
            mail_auth::SpfResult::Neutral => SpfResult::Neutral,
            mail_auth::SpfResult::None => SpfResult::None,
            mail_auth::SpfResult::TempError => SpfResult::TempError,
            mail_auth::SpfResult::PermError => SpfResult::PermError,
        }
    }
}

/// Which identity an SPF check was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfIdentity {
    /// The HELO/EHLO name (`smtp.helo`).
    Helo,
    /// The MAIL FROM address (`smtp.mailfrom`); `postmaster@HELO` for the null sender.
    MailFrom,
}

/// One SPF check and what it needs for the `Authentication-Results` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    /// HELO or MAIL FROM.
    pub identity: SpfIdentity,
    /// The result.
    pub result: SpfResult,
    /// The domain that was checked (lower case; empty when there was none).
    pub domain: String,
    /// The client address.
    pub client_ip: IpAddr,
    /// The HELO name as given.
    pub helo: String,
    /// The MAIL FROM address as given (empty for `<>`; unused for a HELO check).
    pub mail_from: String,
    /// Whether this MAIL FROM pass is one the domain's record gives every client (`+all`,
    /// or the same by an `include:`, ranges or `exists:`), which says nothing of where the
    /// mail comes from; `None` until someone asks [`Authenticator::passes_anyone`]
    /// (greylisting, which keeps the answer here for the transaction's other recipients).
    pub authorizes_anyone: Option<bool>,
    pub(crate) output: SpfOutput,
}

impl SpfCheck {
    /// The symbol: `SPF_PASS`, `SPF_FAIL`, ... for MAIL FROM, `SPF_HELO_PASS`, ... for HELO.
    pub fn symbol(&self) -> &'static str {
        match (self.identity, self.result) {
            (SpfIdentity::MailFrom, SpfResult::Pass) => "SPF_PASS",
            (SpfIdentity::MailFrom, SpfResult::Fail) => "SPF_FAIL",
            (SpfIdentity::MailFrom, SpfResult::SoftFail) => "SPF_SOFTFAIL",
            (SpfIdentity::MailFrom, SpfResult::Neutral) => "SPF_NEUTRAL",
            (SpfIdentity::MailFrom, SpfResult::None) => "SPF_NONE",
            (SpfIdentity::MailFrom, SpfResult::TempError) => "SPF_TEMPERROR",
            (SpfIdentity::MailFrom, SpfResult::PermError) => "SPF_PERMERROR",
            (SpfIdentity::Helo, SpfResult::Pass) => "SPF_HELO_PASS",
            (SpfIdentity::Helo, SpfResult::Fail) => "SPF_HELO_FAIL",
            (SpfIdentity::Helo, SpfResult::SoftFail) => "SPF_HELO_SOFTFAIL",
            (SpfIdentity::Helo, SpfResult::Neutral) => "SPF_HELO_NEUTRAL",
            (SpfIdentity::Helo, SpfResult::None) => "SPF_HELO_NONE",
            (SpfIdentity::Helo, SpfResult::TempError) => "SPF_HELO_TEMPERROR",
            (SpfIdentity::Helo, SpfResult::PermError) => "SPF_HELO_PERMERROR",
        }
    }
}

/// True when `helo` can name an SPF domain: not an address literal, not a bare IP, has a dot.
fn is_domain(helo: &str) -> bool {
    !helo.starts_with('[') && helo.parse::<IpAddr>().is_err() && helo.contains('.')
}

impl Authenticator {
    /// SPF for the HELO identity. `hostname` is our own name (for the `%{r}` macro). A HELO
    /// that is an address literal or has no dot gives `none` without a lookup; past
    /// `deadline` the result is `temperror`.
    pub async fn spf_helo(
        &self,
        client_ip: IpAddr,
        helo: &str,
        hostname: &str,
        deadline: Instant,
    ) -> SpfCheck {
        let domain = helo.trim_end_matches('.').to_ascii_lowercase();
        let result = if is_domain(&domain) {
            let params = SpfParameters::verify_ehlo(client_ip, &domain, hostname);
            self.bounded(deadline, self.verify_strictly(&domain, client_ip, params))
                .await
        } else {
            Some(no_domain())
        };
        finish(SpfIdentity::Helo, result, domain, client_ip, helo, "")
    }

    /// SPF for the MAIL FROM identity (`mail_from` without angle brackets, empty for the null
    /// sender, which is checked as `postmaster@HELO`, RFC 7208 §2.4); past `deadline` the
    /// result is `temperror`.
    pub async fn spf_mail_from(
        &self,
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
        hostname: &str,
        deadline: Instant,
    ) -> SpfCheck {
        let (helo_domain, sender) = mail_from_identity(helo, mail_from);
        let domain = super::domain_of(&sender).unwrap_or_default();
        let result = if is_domain(&domain) {
            let params =
                SpfParameters::verify_mail_from(client_ip, &helo_domain, hostname, &sender);
            self.bounded(deadline, self.verify_strictly(&domain, client_ip, params))
                .await
        } else {
            Some(no_domain())
        };
        finish(
            SpfIdentity::MailFrom,
            result,
            domain,
            client_ip,
            helo,
            mail_from,
        )
    }

    /// Whether the MAIL FROM `check`, a pass, is one the sender's record gives every
    /// client (`+all`, or the same by an `include:` or `redirect=`, `ip4:0.0.0.0/1` twice,
    /// `exists:` of a wildcard): a client that cannot be the sender's, a random public
    /// address, is asked about too, which finds every form where no reading of the text
    /// would (review). Random, so that no record can leave it out (review: a fixed
    /// documentation address was, by `-ip4:192.0.2.0/24 +all`). A probe that gives no
    /// answer (the deadline, a temporary error) is taken as a yes: the triplet then keeps
    /// the client's network, as without SPF. A second evaluation: asked only by those who
    /// read the answer.
    pub async fn passes_anyone(&self, check: &SpfCheck, hostname: &str, deadline: Instant) -> bool {
        if check.identity != SpfIdentity::MailFrom || check.result != SpfResult::Pass {
            return false;
        }
        let (helo_domain, sender) = mail_from_identity(&check.helo, &check.mail_from);
        let nobody = random_stranger(check.client_ip);
        let params = SpfParameters::verify_mail_from(nobody, &helo_domain, hostname, &sender);
        let probe = self.bounded(deadline, self.spf.verify_spf(params)).await;
        probe.is_none_or(|p| {
            matches!(
                p.result(),
                mail_auth::SpfResult::Pass
                    | mail_auth::SpfResult::TempError
                    | mail_auth::SpfResult::PermError
            )
        })
    }
}

/// A random public address of `client`'s family, outside its /16 (IPv4) or /32 (IPv6):
/// IPv4 in 11.0.0.0–99.255.255.255, which holds no private or special-purpose block, and
/// IPv6 in 2400::/6, inside the global unicast 2000::/3 and clear of the documentation and
/// 6to4 prefixes.
fn random_stranger(client: IpAddr) -> IpAddr {
    use rand::Rng;
    let mut rng = rand::rng();
    match client {
        IpAddr::V4(own) => loop {
            let candidate = std::net::Ipv4Addr::new(
                rng.random_range(11..=99),
                rng.random(),
                rng.random(),
                rng.random_range(1..=254),
            );
            if candidate.octets()[..2] != own.octets()[..2] {
                return IpAddr::V4(candidate);
            }
        },
        IpAddr::V6(own) => loop {
            let mut segments: [u16; 8] = rng.random();
            segments[0] = 0x2400 | (segments[0] & 0x03ff);
            if segments[..2] != own.segments()[..2] {
                return IpAddr::from(segments);
            }
        },
    }
}

/// The HELO domain and the MAIL FROM identity of a check: the address, or
/// `postmaster@HELO` for the null sender (RFC 7208 §2.4).
fn mail_from_identity(helo: &str, mail_from: &str) -> (String, String) {
    let helo_domain = helo.trim_end_matches('.').to_ascii_lowercase();
    let sender = if mail_from.is_empty() {
        format!("postmaster@{helo_domain}")
    } else {
        mail_from.to_owned()
    };
    (helo_domain, sender)
}

impl Authenticator {
    /// SPF of `domain` by mail-auth, with the `permerror`s of RFC 7208 that mail-auth does
    /// not give: a domain the evaluation reached (its own, or by `include:` or `redirect=`,
    /// §5.2, §6.1) that publishes two SPF records (§4.5: mail-auth took the first that
    /// parses, so the verdict followed the order of the DNS answer) or one with a syntax
    /// error (§4.6: mail-auth reads past it, see [`syntax_error`]; a mistyped include of
    /// the domain's own mail gave `fail`), and more than [`MAX_VOID_LOOKUPS`] void lookups
    /// (§4.6.4: mail-auth counts none, so a record could ask any number of names that do
    /// not exist). What the evaluation asked comes from mail-auth's cache hooks ([`Trace`]),
    /// the answers from the shared cache, which has just had them
    /// ([`crate::dns::Dns::recall_txt`], [`crate::dns::Dns::cached_void`]).
    async fn verify_strictly(
        &self,
        domain: &str,
        client_ip: IpAddr,
        params: SpfParameters<'_>,
    ) -> SpfOutput {
        let trace = Trace::new(client_ip);
        let params = Parameters::new(params)
            .with_txt_cache(&trace)
            .with_mx_cache(&trace)
            .with_ipv4_cache(&trace)
            .with_ipv6_cache(&trace)
            .with_ptr_cache(&trace);
        let output = self.spf.verify_spf(params).await;
        // Only a verdict read from a record can have read it wrong.
        if matches!(
            output.result(),
            mail_auth::SpfResult::None
                | mail_auth::SpfResult::TempError
                | mail_auth::SpfResult::PermError
        ) {
            return output;
        }
        match self.misread(&trace).await {
            Ok(()) => output,
            Err(cause) => {
                tracing::debug!(domain, %cause, "SPF verdict is a permerror");
                SpfOutput::new(domain.to_owned()).with_result(mail_auth::SpfResult::PermError)
            }
        }
    }

    /// Why the evaluation of `trace` ends in `permerror` by RFC 7208, where mail-auth gave
    /// a verdict. mail-auth stops at the first mechanism that matches and reads an
    /// `include:` or `redirect=` target only when it gets there, so every record and lookup
    /// of the trace came before the verdict: any error among them is the check's.
    async fn misread(&self, trace: &Trace) -> Result<(), PermErrorCause> {
        for domain in trace.records() {
            let crate::dns::Outcome::Found(records) = self.dns.recall_txt("spf", &domain).await
            else {
                continue;
            };
            let spf: Vec<&String> = records.iter().filter(|r| is_spf_record(r)).collect();
            if spf.len() > 1 {
                return Err(PermErrorCause::Ambiguous {
                    domain,
                    records: spf.len(),
                });
            }
            if let Some(term) = spf.iter().find_map(|r| syntax_error(r)) {
                let term = term.to_owned();
                return Err(PermErrorCause::Syntax { domain, term });
            }
        }
        let voids = trace.void_lookups(&self.dns);
        if voids > MAX_VOID_LOOKUPS {
            return Err(PermErrorCause::VoidLookups { voids });
        }
        Ok(())
    }
}

/// Void lookups one evaluation may make (RFC 7208 §4.6.4 recommends two).
const MAX_VOID_LOOKUPS: usize = 2;

/// Records and questions one [`Trace`] keeps. mail-auth's own limits keep an evaluation
/// well below it (10 terms with lookups, 10 exchanges each for `mx`); this bounds the
/// trace whatever a later version does.
const MAX_TRACED: usize = 256;

/// Why a verdict of mail-auth's is a `permerror` (RFC 7208), for the logs (names and terms
/// come from the sender's DNS: quoted and escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PermErrorCause {
    /// §4.5.
    #[error("{domain:?} publishes {records} SPF records")]
    Ambiguous { domain: String, records: usize },
    /// §4.6.
    #[error("the SPF record of {domain:?} has a syntax error at {term:?}")]
    Syntax { domain: String, term: String },
    /// §4.6.4.
    #[error("{voids} void DNS lookups, more than {MAX_VOID_LOOKUPS}")]
    VoidLookups { voids: usize },
}

/// What one evaluation by mail-auth read from the DNS, kept by its cache hooks, which
/// never answer (every lookup still goes to the shared resolver): the domains whose SPF
/// record it evaluated (its own, then `include:` and `redirect=` targets) and the names
/// whose addresses or MX it asked for, and the client's PTR, in order. mail-auth counts
/// DNS terms (at most 10, RFC 7208 §4.6.4) but neither reports what they found nor counts
/// void lookups.
struct Trace {
    /// The client's reverse name: the only PTR name mail-auth asks for.
    reverse: String,
    seen: Mutex<Seen>,
}

/// What a [`Trace`] has seen so far.
#[derive(Default)]
struct Seen {
    /// The domains whose SPF record was evaluated, in order.
    records: Vec<String>,
    questions: Vec<Question>,
    /// The names an `mx` or `ptr` term found (its exchanges, the client's names), whose
    /// addresses mail-auth asks next, in order: part of that term, which found something,
    /// so none of them is a void lookup (RFC 7208 §4.6.4 counts terms; review: three
    /// IPv4-only exchanges checked for an IPv6 client made a `permerror`).
    found: VecDeque<String>,
}

/// One lookup of an evaluation: the name, and the record types asked of it (A and then
/// AAAA for `exists:`, one term found by either).
struct Question {
    name: String,
    types: &'static [RecordType],
}

impl Trace {
    fn new(client_ip: IpAddr) -> Trace {
        Trace {
            reverse: Name::from(client_ip).to_string(),
            seen: Mutex::default(),
        }
    }

    /// What the trace has seen, also after a panic elsewhere: it is only ever appended to.
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The domains whose SPF record was evaluated, each once.
    fn records(&self) -> Vec<String> {
        let mut records = self.seen().records.clone();
        let mut seen = std::collections::HashSet::new();
        records.retain(|domain| seen.insert(domain.to_ascii_lowercase()));
        records
    }

    fn record(&self, domain: &str) {
        let records = &mut self.seen().records;
        if records.len() < MAX_TRACED {
            records.push(domain.to_owned());
        }
    }

    /// `names` an `mx` or `ptr` term found, whose address lookups are its own.
    fn found(&self, names: impl Iterator<Item = String>) {
        let found = &mut self.seen().found;
        found.clear();
        found.extend(names.take(MAX_TRACED));
    }

    fn ask(&self, name: String, types: &'static [RecordType]) {
        let mut seen = self.seen();
        // mail-auth asks the found names' addresses in the order it found them, and stops
        // at one that matches: anything else ends the term.
        let next = seen.found.pop_front();
        let of_the_term = matches!(types, [RecordType::A] | [RecordType::AAAA])
            && next.is_some_and(|next| same_name(&next, &name));
        if of_the_term {
            return;
        }
        seen.found.clear();
        let questions = &mut seen.questions;
        // `exists:` asks A and then AAAA of its name (mail-auth's `a` and `mx` ask only the
        // client's family): one term, void only if both answers are.
        if let (Some(last), [RecordType::AAAA]) = (questions.last_mut(), types) {
            if last.name == name && last.types == [RecordType::A] {
                last.types = &[RecordType::A, RecordType::AAAA];
                return;
            }
        }
        if questions.len() < MAX_TRACED {
            questions.push(Question { name, types });
        }
    }

    /// The lookups whose every answer was a definite "no" (no such name, or no records of
    /// the type asked), each term's once: the address lookups of the names an `mx` or
    /// `ptr` term found are part of that term ([`Seen::found`]). A lookup that failed
    /// (temporary error) is no void lookup.
    fn void_lookups(&self, dns: &crate::dns::Dns) -> usize {
        self.seen()
            .questions
            .iter()
            .filter(|q| q.types.iter().all(|&t| dns.cached_void(&q.name, t)))
            .count()
    }
}

/// The records mail-auth parsed: an SPF record is one it evaluates (an explanation, read
/// for `exp=`, is a macro string, and a TXT lookup without an SPF record ends the check).
impl ResolverCache<Box<str>, Txt> for Trace {
    fn get<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, domain: Box<str>, record: Txt, _: std::time::Instant) {
        if matches!(record, Txt::Spf(_)) {
            self.record(&domain);
        }
    }
}

/// The record type each of mail-auth's name-keyed cache hooks stands for, so that one
/// hook implementation records them all.
trait Asked {
    const TYPES: &'static [RecordType];

    /// The names found whose addresses mail-auth asks next, within the same term.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Asked for RecordSet<Ipv4Addr> {
    const TYPES: &'static [RecordType] = &[RecordType::A];
}

impl Asked for RecordSet<Ipv6Addr> {
    const TYPES: &'static [RecordType] = &[RecordType::AAAA];
}

impl Asked for RecordSet<MX> {
    const TYPES: &'static [RecordType] = &[RecordType::MX];

    fn names(&self) -> Vec<String> {
        let exchanges = self.rrset.iter().flat_map(|mx| mx.exchanges.iter());
        exchanges.map(|name| name.to_string()).collect()
    }
}

/// The questions mail-auth asks (the hook is asked before each lookup; only a lookup that
/// found something is inserted, and `exists:` inserts nothing).
impl<V: Asked> ResolverCache<Box<str>, V> for Trace {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ask(key_text(name), V::TYPES);
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<V>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, found: V, _: std::time::Instant) {
        // Addresses found (an exchange's, say) leave the names still to come.
        let names = found.names();
        if !names.is_empty() {
            self.found(names.into_iter());
        }
    }
}

/// The client's PTR, asked for the `ptr` mechanism and the `%{p}` macro.
impl ResolverCache<IpAddr, RecordSet<Box<str>>> for Trace {
    fn get<Q>(&self, _: &Q) -> Option<RecordSet<Box<str>>>
    where
        IpAddr: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ask(self.reverse.clone(), &[RecordType::PTR]);
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<Box<str>>>
    where
        IpAddr: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: IpAddr, names: RecordSet<Box<str>>, _: std::time::Instant) {
        self.found(names.rrset.iter().map(|name| name.to_string()));
    }
}

/// Whether two DNS names are the same, ignoring ASCII case and a final dot.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The name a cache hook of mail-auth's is asked about. The hook lends it only as some
/// `Q: Hash + Eq` (a `str`), so it is read back through `Hash`: a `str` hashes as its bytes
/// and then 0xff, which is no byte of UTF-8 (pinned by a test).
fn key_text<Q: Hash + ?Sized>(key: &Q) -> String {
    #[derive(Default)]
    struct Bytes(Vec<u8>);
    impl Hasher for Bytes {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }
    let mut bytes = Bytes::default();
    key.hash(&mut bytes);
    let text = bytes.0.strip_suffix(&[0xff]).unwrap_or(&bytes.0);
    String::from_utf8_lossy(text).into_owned()
}

/// The first term of an SPF record that is a syntax error (RFC 7208 §4.6: then the result
/// is `permerror`, whatever the other terms say): neither a mechanism of §5 nor a modifier
/// (`name=value`, no qualifier), or an `ip4:`/`ip6:` that is no network. mail-auth skips
/// an unknown term (and with `foo -all` the term after it) and reads a bad address as
/// some other: a record with a typo (`inlcude:`, `ipv4:`) gave the domain's own mail
/// `fail` (review).
fn syntax_error(record: &str) -> Option<&str> {
    record
        .split_ascii_whitespace()
        .skip(1)
        .find(|term| !is_valid_term(term))
}

/// Whether one term of an SPF record (not the version) is a mechanism or a modifier.
fn is_valid_term(term: &str) -> bool {
    const MECHANISMS: [&str; 8] = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"];
    let (name, rest) = term.split_at(term.find([':', '/', '=']).unwrap_or(term.len()));
    if rest.starts_with('=') {
        // RFC 7208 §12: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
        return name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    }
    let name = name.strip_prefix(['+', '-', '~', '?']).unwrap_or(name);
    if name.eq_ignore_ascii_case("ip4") {
        return is_network::<std::net::Ipv4Addr>(rest, 32);
    }
    if name.eq_ignore_ascii_case("ip6") {
        return is_network::<std::net::Ipv6Addr>(rest, 128);
    }
    MECHANISMS.iter().any(|m| name.eq_ignore_ascii_case(m))
}

/// Whether `rest` of an `ip4`/`ip6` mechanism is `:ADDRESS` or `:ADDRESS/PREFIX` with a
/// prefix of at most `longest` bits.
fn is_network<A: std::str::FromStr>(rest: &str, longest: u8) -> bool {
    let Some(network) = rest.strip_prefix(':') else {
        return false;
    };
    let (address, prefix) = match network.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (network, None),
    };
    address.parse::<A>().is_ok()
        && prefix.is_none_or(|p| {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u8>().is_ok_and(|n| n <= longest)
        })
}

/// The `none` of an identity that names no domain to check.
fn no_domain() -> SpfOutput {
    SpfOutput::new(String::new()).with_result(mail_auth::SpfResult::None)
}

/// Whether a TXT record is an SPF record: `v=spf1` alone or followed by a space (RFC 7208
/// §4.5), in any case.
fn is_spf_record(record: &str) -> bool {
    let lower = record.get(..6).map(str::to_ascii_lowercase);
    lower.as_deref() == Some("v=spf1") && matches!(record.as_bytes().get(6), None | Some(b' '))
}

#[cfg(test)]
impl SpfCheck {
    /// A MAIL FROM check of `domain` that came out `result`, for the tests of its users.
    pub(crate) fn mail_from_for_test(
        result: SpfResult,
        domain: &str,
        client_ip: IpAddr,
    ) -> SpfCheck {
        let theirs = match result {
            SpfResult::Pass => mail_auth::SpfResult::Pass,
            SpfResult::Fail => mail_auth::SpfResult::Fail,
            SpfResult::SoftFail => mail_auth::SpfResult::SoftFail,
            SpfResult::Neutral => mail_auth::SpfResult::Neutral,
            SpfResult::None => mail_auth::SpfResult::None,
            SpfResult::TempError => mail_auth::SpfResult::TempError,
            SpfResult::PermError => mail_auth::SpfResult::PermError,
        };
        let output = SpfOutput::new(domain.to_owned()).with_result(theirs);
        let sender = format!("sender@{domain}");
        finish(
            SpfIdentity::MailFrom,
            Some(output),
            domain.to_owned(),
            client_ip,
            "mx.test",
            &sender,
        )
    }
}

fn finish(
    identity: SpfIdentity,
    output: Option<SpfOutput>,
    domain: String,
    client_ip: IpAddr,
    helo: &str,
    mail_from: &str,
) -> SpfCheck {
    let output = output.unwrap_or_else(|| {
        SpfOutput::new(domain.clone()).with_result(mail_auth::SpfResult::TempError)
    });
    SpfCheck {
        identity,
        result: SpfResult::from_mail_auth(output.result()),
        domain,
        client_ip,
        helo: helo.to_owned(),
        mail_from: mail_from.to_owned(),
        authorizes_anyone: None,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`key_text`] reads names the way mail-auth lends them (`str`, or the `Box<str>`
    /// key itself): were `str`'s `Hash` to change, void lookups would silently count none.
    #[test]
    fn a_borrowed_name_reads_back_as_its_text() {
        assert_eq!(key_text("nx1.Example.test."), "nx1.Example.test.");
        let boxed: Box<str> = "b\u{fc}cher.test.".into();
        assert_eq!(key_text(&boxed), "b\u{fc}cher.test.");
        assert_eq!(key_text(""), "");
    }
}
