//! SPF (RFC 7208) for the HELO identity and the MAIL FROM identity.

use super::Authenticator;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::SpfOutput;
use std::net::IpAddr;
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
            self.bounded(deadline, self.verify_unless_ambiguous(&domain, params))
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
            self.bounded(deadline, self.verify_unless_ambiguous(&domain, params))
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
    /// SPF of `domain` by mail-auth, unless the domain publishes more than one SPF record:
    /// that is a `permerror` (RFC 7208 §4.5), where mail-auth takes the first record that
    /// parses, so the result followed the order of the DNS answer (`fail` or `pass` from
    /// one message to the next). So is a record with a syntax error (RFC 7208 §4.6), which
    /// mail-auth reads past ([`syntax_error`]). The records are those mail-auth's own
    /// lookup just had ([`crate::dns::Dns::recall_txt`]).
    async fn verify_unless_ambiguous(&self, domain: &str, params: SpfParameters<'_>) -> SpfOutput {
        let output = self.spf.verify_spf(params).await;
        // Only a verdict read from a record can have read the wrong one.
        if matches!(
            output.result(),
            mail_auth::SpfResult::None
                | mail_auth::SpfResult::TempError
                | mail_auth::SpfResult::PermError
        ) {
            return output;
        }
        match self.dns.recall_txt("spf", domain).await {
            crate::dns::Outcome::Found(records) => {
                let spf: Vec<&String> = records.iter().filter(|r| is_spf_record(r)).collect();
                if spf.len() > 1 || spf.iter().any(|r| syntax_error(r).is_some()) {
                    SpfOutput::new(domain.to_owned()).with_result(mail_auth::SpfResult::PermError)
                } else {
                    output
                }
            }
            _ => output,
        }
    }
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
