//! Everything one message's authentication came to: [`AuthOutcome`], its symbols, the
//! `Authentication-Results` header (RFC 8601) naming us, and the removal of incoming
//! `Authentication-Results` headers that claim our name.

use super::dmarc::{is_dmarc_record, DmarcVerdict, LenientRecords};
use super::{
    ArcCheck, Authenticator, DkimCheck, DkimSignatureResult, DmarcCheck, DmarcPolicy, SpfCheck,
};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DkimOutput, SpfOutput};
use std::borrow::Cow;
use std::net::IpAddr;

/// SPF, DKIM, DMARC and ARC results of one message. Fields are `None` until checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The client address (for `smtp.remote-ip`).
    pub client_ip: IpAddr,
    /// SPF of the HELO name.
    pub spf_helo: Option<SpfCheck>,
    /// SPF of the MAIL FROM address (also feeds DMARC).
    pub spf_mail_from: Option<SpfCheck>,
    /// DKIM signatures.
    pub dkim: Option<DkimCheck>,
    /// DMARC.
    pub dmarc: Option<DmarcCheck>,
    /// ARC chain.
    pub arc: Option<ArcCheck>,
    /// The `dkim=` and `arc=` resinfo parts of the header, built by mail-auth while its
    /// borrowed outputs were alive (each starts with `;`).
    message_results: String,
    /// The `dmarc=` resinfo parts, likewise.
    dmarc_results: String,
}

impl AuthOutcome {
    /// Nothing checked yet for a client at `client_ip`.
    pub fn new(client_ip: IpAddr) -> AuthOutcome {
        AuthOutcome {
            client_ip,
            spf_helo: None,
            spf_mail_from: None,
            dkim: None,
            dmarc: None,
            arc: None,
            message_results: String::new(),
            dmarc_results: String::new(),
        }
    }

    /// The symbols of every check done, in the order SPF HELO, SPF MAIL FROM, DKIM, DMARC, ARC.
    pub fn symbols(&self) -> Vec<&'static str> {
        let mut symbols = Vec::new();
        symbols.extend(self.spf_helo.as_ref().map(SpfCheck::symbol));
        symbols.extend(self.spf_mail_from.as_ref().map(SpfCheck::symbol));
        if let Some(dkim) = &self.dkim {
            symbols.extend(dkim.symbols());
        }
        if let Some(dmarc) = &self.dmarc {
            symbols.extend(dmarc.symbols());
        }
        symbols.extend(self.arc.as_ref().map(ArcCheck::symbol));
        symbols
    }

    /// Whether a check was left at temperror (a DNS failure): its verdict is unknown.
    pub fn any_temperror(&self) -> bool {
        self.symbols().iter().any(|s| s.ends_with("_TEMPERROR"))
    }

    /// Leaves DMARC unjudged unless it passed, in the symbols and the header: of mail
    /// whose MAIL FROM was not checked here (a tier peer relaying what it took, whose own
    /// results are removed as claiming a member's name), a failure says only that SPF,
    /// which the domain may rely on alone, was not asked.
    pub fn leave_dmarc_unjudged_unless_passed(&mut self) {
        if self
            .dmarc
            .as_ref()
            .is_some_and(|d| d.verdict != DmarcVerdict::Pass)
        {
            self.dmarc = None;
            self.dmarc_results.clear();
        }
    }

    /// DMARC failed and the From domain publishes `p=reject`.
    pub fn dmarc_reject_requested(&self) -> bool {
        self.dmarc
            .as_ref()
            .is_some_and(DmarcCheck::reject_requested)
    }

    /// DMARC could not be judged for a temporary failure and the From domain publishes
    /// `p=reject` ([`DmarcCheck::deferral_requested`]).
    pub fn dmarc_deferral_requested(&self) -> bool {
        self.dmarc
            .as_ref()
            .is_some_and(DmarcCheck::deferral_requested)
    }

    /// DMARC failed and the From domain publishes `p=quarantine` (or `p=reject` with a `pct`
    /// below 100, read as quarantine).
    pub fn dmarc_quarantine_requested(&self) -> bool {
        self.dmarc
            .as_ref()
            .is_some_and(DmarcCheck::quarantine_requested)
    }

    /// The complete `Authentication-Results` header field naming `hostname` as authserv-id,
    /// folded, ending in CRLF, ready to prepend to the message (`HOSTNAME; none` when nothing
    /// was checked).
    pub fn authentication_results_header(&self, hostname: &str) -> String {
        let mut results = AuthenticationResults::new(hostname);
        // A HELO of which nothing is left as a property value (`EHLO (;=)`) would be written
        // `smtp.helo=;`, which RFC 8601 does not allow and a strict reader rejects with the
        // whole field, DMARC included; its SPF result says nothing (it names no host).
        let helo_of_helo_check = self.spf_helo.as_ref().and_then(|s| ascii_helo(&s.helo));
        if let (Some(spf), Some(helo)) = (&self.spf_helo, &helo_of_helo_check) {
            if has_pvalue_text(helo) {
                results = results.with_spf_ehlo_result(&spf.output, spf.client_ip, helo);
            }
        }
        if let Some(spf) = &self.spf_mail_from {
            results = results.with_spf_mailfrom_result(
                &spf.output,
                spf.client_ip,
                &spf.mail_from,
                &ascii_helo(&spf.helo).unwrap_or_default(),
            );
        }
        // `Display` writes the authserv-id followed by the resinfo parts.
        let mut header = format!(
            "Authentication-Results: {results}{}{}",
            self.message_results, self.dmarc_results
        );
        if header.len() == "Authentication-Results: ".len() + hostname.len() {
            header.push_str("; none");
        }
        let mut header = fold_safely(&header);
        header.push_str("\r\n");
        header
    }
}

/// The greeting as our header may carry it: its A-label (any non-ASCII left dropped). The
/// header goes on mail that may not be SMTPUTF8, where an 8-bit field breaks RFC 6532, as
/// the `Received:` line's greeting is converted.
fn ascii_helo(helo: &str) -> Option<Cow<'_, str>> {
    if helo.is_ascii() {
        return Some(Cow::Borrowed(helo));
    }
    // A greeting IDNA refuses is left out: with its non-ASCII dropped, `paypal\u{200D}.com`
    // would be written as a name the client never gave.
    idna::domain_to_ascii(helo)
        .ok()
        .filter(|a_label| a_label.is_ascii())
        .map(Cow::Owned)
}

/// Whether anything of `value` is left once mail-auth drops what a property value may not
/// hold.
fn has_pvalue_text(value: &str) -> bool {
    value.chars().any(super::is_pvalue_char)
}

/// Parses `raw` for DKIM and ARC. Parsing hashes the body once for each canonicalization
/// and hash algorithm the signatures name (up to four), before any key is fetched: for a
/// message of tens of megabytes, mapped from the spool, that is a fifth of a second of CPU
/// and page faults, which a big message does off the session threads.
fn parse_off_the_session_threads(raw: &[u8]) -> Option<AuthenticatedMessage<'_>> {
    crate::runtime::off_the_session_threads(raw.len(), || AuthenticatedMessage::parse(raw))
}

impl Authenticator {
    /// Verifies the DKIM signatures (up to [`MAX_SIGNATURES`] that can align with the From
    /// domain and as many others), the ARC chain and DMARC of the raw message (CRLF line
    /// ends, as received) and records them in `outcome`. DMARC uses `outcome.spf_mail_from`
    /// (so run [`Authenticator::spf_mail_from`] first). Bounded by `deadline` (the stage's),
    /// after which what is unfinished is temperror. An unparsable message gets `none`
    /// everywhere.
    pub async fn verify_message(
        &self,
        raw: &[u8],
        outcome: &mut AuthOutcome,
        deadline: tokio::time::Instant,
    ) {
        // The header section as readers read it first: mail-auth ends it at a line that is
        // no field and knows no `From :`, so a From field written either way, which readers
        // show, went unjudged by DMARC (or nothing parsed at all, when such a line came
        // first).
        let fields_only = crate::mail::header_fields::header_as_readers_read(raw);
        let parsed = match &fields_only {
            Some((header, rest)) => crate::runtime::off_the_session_threads(raw.len(), || {
                // The header read first, then the rest: the empty line ends it at once and
                // the body is hashed where it lies.
                AuthenticatedMessage::parse_with_opts(&raw[*rest..], Some(header), true)
            }),
            None => parse_off_the_session_threads(raw),
        };
        let Some(mut message) = parsed else {
            outcome.dkim = Some(DkimCheck::default());
            outcome.dmarc = Some(DmarcCheck::default());
            outcome.arc = Some(ArcCheck::default());
            outcome.message_results = ";\r\n\tdkim=none;\r\n\tarc=none".to_owned();
            return;
        };
        // DMARC (mail-auth) and DKIM_VALID_AU read the same author domains, as a reader sees them.
        message.from.iter_mut().for_each(normalize_author);
        let (set_aside, set_aside_text) = super::signed_fields::set_aside_dkim(&mut message);
        let arc_refused = super::signed_fields::arc_refused(&message);
        let (authors, unjudged) = author_domains(&message);
        let from_domain = single_author(&authors);
        let client_ip = outcome.client_ip;
        let spf_output = outcome
            .spf_mail_from
            .as_ref()
            .map(|s| s.output.clone())
            .unwrap_or_else(|| SpfOutput::new(String::new()));
        let mail_from_domain = outcome
            .spf_mail_from
            .as_ref()
            .map(|s| s.domain.clone())
            .unwrap_or_default();
        let (aligned, others) = split_signatures(&message, &authors);
        // Three independent parts, each bounded by the deadline on its own: DMARC needs only
        // the signatures that can align with the From domain, so slow keys of any other
        // domain (or a slow ARC chain) cannot turn its verdict into `temperror`.
        let several_authors = authors.len() > 1 || !unjudged.is_empty();
        let dmarc_part = async {
            let outputs = self.dkim.verify_dkim(&aligned).await;
            let judged = if several_authors {
                None
            } else {
                let spf = spf_for_dmarc(&spf_output, &mail_from_domain, &from_domain);
                let identities = (&outputs[..], mail_from_domain.as_str(), &spf);
                // Only the author's own addresses: mail-auth reads one with no domain
                // (`ceo@victim.test, <x@>`) as a second author of domain "" and exempts
                // the message from DMARC as one of several authors (review).
                let one = AuthenticatedMessage {
                    from: authored_by(&message, &from_domain),
                    ..message.clone()
                };
                let one = if from_domain.is_empty() {
                    &message
                } else {
                    &one
                };
                Some(self.dmarc_of(one, identities).await)
            };
            let (dkim, text) = dkim_results(&outputs, &from_domain);
            (dkim, text, judged)
        };
        // Several author domains: each is judged on its own aligned signatures, under its
        // own bound. Judged together, slow keys of a second From domain (the forger's own,
        // added beside a `p=reject` victim's) ran the whole part out of time, and every
        // author, the victim too, became `temperror`: no 550.
        let per_author = async {
            if !several_authors {
                return Vec::new();
            }
            let each = authors.iter().map(|domain| {
                let (mine, _) = split_signatures(&message, std::slice::from_ref(domain));
                let one = AuthenticatedMessage {
                    from: authored_by(&message, domain),
                    ..message.clone()
                };
                let mail_from_domain = mail_from_domain.as_str();
                let spf = spf_for_dmarc(&spf_output, mail_from_domain, domain);
                async move {
                    let judged = self
                        .bounded(deadline, async {
                            let outputs = self.dkim.verify_dkim(&mine).await;
                            let identities = (&outputs[..], mail_from_domain, &spf);
                            self.dmarc_of(&one, identities).await
                        })
                        .await;
                    judged
                        .unwrap_or_else(|| (DmarcCheck::timed_out(domain), temperror_text(domain)))
                }
            });
            futures::future::join_all(each).await
        };
        let other_part = async {
            let outputs = self.dkim.verify_dkim(&others).await;
            dkim_results(&outputs, &from_domain)
        };
        let arc_part = async {
            if let Some(reason) = arc_refused {
                return ArcCheck::refused(message.ams_headers.len(), reason, client_ip);
            }
            let output = self.arc.verify_arc(&message).await;
            let text = AuthenticationResults::new("")
                .with_arc_result(&output, client_ip)
                .to_string();
            (ArcCheck::from_output(&output), text)
        };
        let (dmarc_part, per_author, other_part, arc_part) = tokio::join!(
            self.bounded(deadline, dmarc_part),
            per_author,
            self.bounded(deadline, other_part),
            self.bounded(deadline, arc_part)
        );

        let mut dkim = DkimCheck {
            from_domain: from_domain.clone(),
            timed_out: dmarc_part.is_none() || other_part.is_none(),
            ..DkimCheck::default()
        };
        let mut text = String::new();
        let mut dmarc_text = String::new();
        let mut judged = None;
        match dmarc_part {
            Some((signatures, dkim_text, one_author)) => {
                dkim.signatures.extend(signatures);
                text.push_str(&dkim_text);
                judged = one_author;
            }
            None if several_authors => {}
            None => {
                judged = Some((
                    DmarcCheck::timed_out(&from_domain),
                    temperror_text(&from_domain),
                ))
            }
        }
        if several_authors {
            let judged_too = unjudged.iter().map(Unjudged::result);
            let (checks, texts): (Vec<DmarcCheck>, Vec<String>) =
                per_author.into_iter().chain(judged_too).unzip();
            judged = Some((strictest(checks), texts.concat()));
        }
        if let Some((dmarc, result)) = judged {
            outcome.dmarc = Some(dmarc);
            dmarc_text = result;
        }
        if let Some((signatures, dkim_text)) = other_part {
            dkim.signatures.extend(signatures);
            text.push_str(&dkim_text);
        }
        dkim.signatures.extend(set_aside);
        text.push_str(&set_aside_text);
        if dkim.timed_out {
            text.push_str(";\r\n\tdkim=temperror (timed out)");
        } else if dkim.signatures.is_empty() {
            text.push_str(";\r\n\tdkim=none");
        }
        let (arc, arc_text) = arc_part.unwrap_or_else(|| {
            (
                ArcCheck::timed_out(),
                ";\r\n\tarc=temperror (timed out)".to_owned(),
            )
        });
        text.push_str(&arc_text);
        outcome.dkim = Some(dkim);
        outcome.arc = Some(arc);
        outcome.message_results = text;
        outcome.dmarc_results = dmarc_text;
    }

    /// DMARC of `message` (one author domain) with the aligned signatures' results, the
    /// MAIL FROM domain and its SPF result: the check and its `Authentication-Results` text.
    /// What mail-auth does not read of the record that applies is read here: several
    /// records mean no DMARC, and a `pct=` below 100 lowers the policy one level.
    async fn dmarc_of(
        &self,
        message: &AuthenticatedMessage<'_>,
        (dkim, mail_from_domain, spf): (&[DkimOutput<'_>], &str, &SpfOutput),
    ) -> (DmarcCheck, String) {
        let mut output = self
            .dmarc
            .verify_dmarc(DmarcParameters::new(message, dkim, mail_from_domain, spf))
            .await;
        // A record mail-auth refuses for one tag's value is read again leniently; each
        // round reads the records its walk has just had (a broken author record hid a
        // broken organizational one), at most once per name of the walk.
        let mut lenient = LenientRecords::default();
        let rounds = dmarc_walk(output.domain()).len();
        for _ in 0..rounds {
            if !matches!(output.result(), mail_auth::DmarcResult::PermError(_))
                || !self.read_leniently(output.domain(), &mut lenient).await
            {
                break;
            }
            let params = DmarcParameters::new(message, dkim, mail_from_domain, spf);
            output = self
                .dmarc
                .verify_dmarc(mail_auth::Parameters::new(params).with_txt_cache(&lenient))
                .await;
        }
        let mut text = String::new();
        if !output.domain().is_empty() {
            text = AuthenticationResults::new("")
                .with_dmarc_result(&output)
                .to_string();
        }
        let mut dmarc = DmarcCheck::from_output(&output);
        if output.dmarc_record().is_none() || dmarc.verdict == DmarcVerdict::None {
            return (dmarc, text);
        }
        match self.applied_dmarc_record(&dmarc.domain).await {
            AppliedRecord::Several => {
                let text = dmarc_text("none (several DMARC records)", &dmarc.domain);
                let none = DmarcCheck {
                    domain: dmarc.domain,
                    ..DmarcCheck::default()
                };
                return (none, text);
            }
            AppliedRecord::One(record)
                if samples(&record)
                    && dmarc.verdict == DmarcVerdict::Fail
                    && !output.dmarc_record().is_some_and(|r| r.t) =>
            {
                // RFC 7489 §6.6.4: mail left out of the sample gets the next lower policy
                // (what `t=y` does in RFC 9989, which mail-auth follows and which has no pct).
                let lower = match dmarc.policy {
                    DmarcPolicy::Reject => DmarcPolicy::Quarantine,
                    _ => DmarcPolicy::None,
                };
                // `policy.dmarc` is the policy applied (RFC 7489 §11.2), and the internal
                // server reads our header (review: it said `reject` of mail taken).
                text = text.replace(
                    &format!("policy.dmarc={}", dmarc.policy.as_str()),
                    &format!("policy.dmarc={}", lower.as_str()),
                );
                dmarc.policy = lower;
            }
            _ => {}
        }
        (dmarc, text)
    }
}

impl Authenticator {
    /// Adds to `lenient` the DMARC records of `domain`'s tree walk that mail-auth refuses
    /// but reads leniently, as the shared cache holds them after mail-auth's own lookups
    /// (no query, nothing counted twice), or asked again when the cache kept none: a record
    /// published with a TTL of 0 was never read leniently, so `p=reject; adkim=x` let a
    /// forgery through as `permerror` (review). True when one was added.
    async fn read_leniently(&self, domain: &str, lenient: &mut LenientRecords) -> bool {
        let mut added = false;
        for name in dmarc_walk(domain) {
            let name = format!("_dmarc.{name}");
            if let crate::dns::Outcome::Found(records) = self.dns.recall_txt("dmarc", &name).await {
                added |= lenient.add(&name, &records);
            }
        }
        added
    }
}

/// At most this many DKIM signatures of each kind (those that can align with the From
/// domain, and the others) are verified: each costs a key lookup, one after another, and
/// RFC 6376 §6.1 lets a verifier limit them. Signatures past the limit are left out.
const MAX_SIGNATURES: usize = 5;

/// Most author domains (From addresses of distinct domains) whose DMARC is evaluated, each
/// a tree walk of DNS lookups. Mail with more than one is rare and never needs more.
const MAX_AUTHOR_DOMAINS: usize = 4;

/// The distinct domains of the From addresses, in order, at most [`MAX_AUTHOR_DOMAINS`],
/// and those not judged: the first one past that limit, and any that is no DNS name.
/// mail-auth exempts a message with several from DMARC (RFC 9989), which let a forger of a
/// `p=reject` domain add a second From address (or field) of its own; RFC 7489 §6.6.1 lets
/// a receiver evaluate each domain and apply the strictest failing policy, as done here.
fn author_domains(message: &AuthenticatedMessage<'_>) -> (Vec<String>, Vec<Unjudged>) {
    let mut domains: Vec<String> = Vec::new();
    let mut unjudged = Vec::new();
    for domain in message.from.iter().filter_map(|f| super::domain_of(f)) {
        if domains.contains(&domain) {
            continue;
        }
        if !is_dns_name(&domain) {
            // One fails the message under `reject` already: more would only cost time
            // (a From field of a megabyte holds a hundred thousand) and header bytes.
            unjudged.push(Unjudged {
                domain,
                reason: "the author domain is not a DNS name".to_owned(),
            });
            break;
        } else if domains.len() == MAX_AUTHOR_DOMAINS {
            unjudged.push(Unjudged {
                domain,
                reason: format!("more than {MAX_AUTHOR_DOMAINS} author domains"),
            });
            break;
        } else {
            domains.push(domain);
        }
    }
    (domains, unjudged)
}

/// An author domain DMARC does not judge and that fails under `reject` instead (RFC 7489
/// §6.6.1 lets a receiver refuse mail whose From it cannot evaluate).
struct Unjudged {
    domain: String,
    reason: String,
}

impl Unjudged {
    /// Its DMARC check and `Authentication-Results` text. Left out unjudged, a `p=reject`
    /// victim's address written fifth went through (four domains of the forger's own
    /// before it), and a look-alike that is no DNS name got mail-auth's unscored
    /// `permerror`.
    fn result(&self) -> (DmarcCheck, String) {
        let check = DmarcCheck {
            verdict: DmarcVerdict::Fail,
            domain: self.domain.clone(),
            policy: DmarcPolicy::Reject,
            timed_out: false,
            unjudged: true,
        };
        let reason = format!("fail ({})", self.reason);
        let mut text = dmarc_text(&reason, &self.domain);
        if text.is_empty() {
            text = format!(";\r\n\tdmarc={reason}");
        }
        (check, text)
    }
}

/// The From addresses of `message` at `domain`.
fn authored_by(message: &AuthenticatedMessage<'_>, domain: &str) -> Vec<String> {
    message
        .from
        .iter()
        .filter(|f| super::domain_of(f).as_deref() == Some(domain))
        .cloned()
        .collect()
}

/// What one part's DKIM verification records: each signature's result and its
/// `Authentication-Results` text.
fn dkim_results(
    outputs: &[DkimOutput<'_>],
    from_domain: &str,
) -> (Vec<DkimSignatureResult>, String) {
    let text = AuthenticationResults::new("")
        .with_dkim_results(outputs, from_domain)
        .to_string();
    (
        DkimCheck::from_outputs(outputs, from_domain).signatures,
        text,
    )
}

/// The `Authentication-Results` text of a DMARC evaluation that ran out of time: said
/// rather than left out, for a domain that cannot bend the header's syntax.
fn temperror_text(domain: &str) -> String {
    dmarc_text("temperror (timed out)", domain)
}

/// The `dmarc=` part of our header for a result decided here rather than by mail-auth
/// (`result` with its reason), left out for a domain that could bend the header's syntax.
fn dmarc_text(result: &str, domain: &str) -> String {
    if crate::config::is_plausible_hostname(domain) {
        format!(";\r\n\tdmarc={result} header.from={domain}")
    } else {
        String::new()
    }
}

/// The SPF result DMARC may read for `author`: the MAIL FROM's when its domain has the
/// author's organizational domain by the public suffix list, as the DKIM side is filtered
/// ([`split_signatures`]); else none. mail-auth finds organizational domains by its DNS tree
/// walk (RFC 9989), where a shared suffix publishing a DMARC record of its own
/// (`_dmarc.dyndns.org`) makes every customer's subdomain align with every other's: SPF
/// passing for `attacker.dyndns.org` passed DMARC for mail From `victim.dyndns.org`.
fn spf_for_dmarc(spf: &SpfOutput, mail_from_domain: &str, author: &str) -> SpfOutput {
    if super::dkim::aligned(mail_from_domain, author) {
        spf.clone()
    } else {
        SpfOutput::new(mail_from_domain.to_owned())
    }
}

/// Of the DMARC results of each author domain, the one to act on: a failure under the
/// strictest policy, else a temporary error (which must not let a failure through
/// unseen), else a permanent error, else `none`; a pass only when every author passed
/// (the first then): an author with no DMARC record beside one that passes is not
/// authenticated, so the message must not earn `DMARC_PASS`.
fn strictest(checks: Vec<DmarcCheck>) -> DmarcCheck {
    let weight = |c: &DmarcCheck| match (c.verdict, c.policy) {
        (DmarcVerdict::Fail, DmarcPolicy::Reject) => 6,
        (DmarcVerdict::Fail, DmarcPolicy::Quarantine) => 5,
        (DmarcVerdict::Fail, DmarcPolicy::None) => 4,
        (DmarcVerdict::TempError, _) => 3,
        (DmarcVerdict::PermError, _) => 2,
        (DmarcVerdict::None, _) => 1,
        (DmarcVerdict::Pass, _) => 0,
    };
    let mut checks = checks.into_iter();
    let first = checks.next().unwrap_or_default();
    checks.fold(
        first,
        |best, c| if weight(&c) > weight(&best) { c } else { best },
    )
}

/// The message twice, with its DKIM signatures split: those whose `d=` can align with an
/// author domain (the same organizational domain, the only ones DMARC reads) and the others
/// (with the malformed ones), each list cut at [`MAX_SIGNATURES`].
fn split_signatures<'x>(
    message: &AuthenticatedMessage<'x>,
    authors: &[String],
) -> (AuthenticatedMessage<'x>, AuthenticatedMessage<'x>) {
    let (mut near, mut far): (Vec<_>, Vec<_>) =
        message.dkim_headers.iter().cloned().partition(|h| {
            authors
                .iter()
                .any(|author| super::dkim::aligned(&h.header.d, author))
        });
    near.truncate(MAX_SIGNATURES);
    far.truncate(MAX_SIGNATURES);
    let aligned = AuthenticatedMessage {
        dkim_headers: near,
        errors: Vec::new(),
        ..message.clone()
    };
    // mail-auth reports each malformed signature (and each with `l=`) as `neutral`: a
    // thousand `DKIM-Signature: x` fields wrote 45 KB of results into our header.
    let others = AuthenticatedMessage {
        dkim_headers: far,
        errors: message
            .errors
            .iter()
            .take(MAX_SIGNATURES)
            .cloned()
            .collect(),
        ..message.clone()
    };
    (aligned, others)
}

/// The DMARC record that applies to an author domain, as far as mail-auth does not say.
#[derive(Debug, PartialEq, Eq)]
enum AppliedRecord {
    /// One record: its text.
    One(String),
    /// Several records at the name that applies: DMARC does not apply (RFC 7489 §6.6.3).
    Several,
    /// No record, or a lookup failed.
    Unknown,
}

impl Authenticator {
    /// The DMARC record mail-auth applies to `domain` (RFC 9989 §4.10.1: the domain's own,
    /// else the organizational domain's, else the shortest name's found by the tree walk),
    /// read over the walk's own names as mail-auth's answers left them in the shared cache. mail-auth takes the first
    /// record that parses, so with two records the order of the DNS answer decided the
    /// policy; and `pct=` must be read from the record whose policy applies.
    async fn applied_dmarc_record(&self, domain: &str) -> AppliedRecord {
        let mut found: Vec<(&str, Vec<String>)> = Vec::new();
        for name in dmarc_walk(domain) {
            // mail-auth's tree walk has just asked these names.
            match self
                .dns
                .recall_txt("dmarc", &format!("_dmarc.{name}"))
                .await
            {
                crate::dns::Outcome::Found(records) => {
                    let records: Vec<String> =
                        records.into_iter().filter(|r| is_dmarc_record(r)).collect();
                    let Some(first) = records.first() else {
                        continue;
                    };
                    let stop = psd(first).is_some();
                    found.push((name, records));
                    if stop {
                        break;
                    }
                }
                crate::dns::Outcome::NotFound => {}
                _ => return AppliedRecord::Unknown,
            }
        }
        let org = organizational_domain(&found, domain);
        let chosen = found
            .iter()
            .find(|(name, _)| *name == domain)
            .or_else(|| found.iter().find(|(name, _)| Some(*name) == org))
            .or_else(|| found.last());
        match chosen.map(|(_, records)| &records[..]) {
            Some([one]) => AppliedRecord::One(one.clone()),
            Some([_, _, ..]) => AppliedRecord::Several,
            _ => AppliedRecord::Unknown,
        }
    }
}

/// The value of tag `name` in a DMARC record, trimmed, lower case tag names matched
/// without regard to case.
fn dmarc_tag<'r>(record: &'r str, name: &str) -> Option<&'r str> {
    record.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A record's `psd=` (RFC 9989), in any case: `Some(true)` for `y` (a public suffix
/// domain), `Some(false)` for `n` (an organizational domain); either ends the tree walk.
fn psd(record: &str) -> Option<bool> {
    let value = dmarc_tag(record, "psd")?;
    if value.eq_ignore_ascii_case("y") {
        Some(true)
    } else if value.eq_ignore_ascii_case("n") {
        Some(false)
    } else {
        None
    }
}

/// Where each label of `domain` starts.
fn label_starts(domain: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(domain.match_indices('.').map(|(at, _)| at + 1))
        .collect()
}

/// Whether a record samples (`pct=` below 100, RFC 7489 §6.5).
fn samples(record: &str) -> bool {
    dmarc_tag(record, "pct").is_some_and(|v| v.parse::<u8>().is_ok_and(|pct| pct < 100))
}

/// The organizational domain of `start` from the records its tree walk found (longest name
/// first), as mail-auth picks it (RFC 9989 §4.10.2): the first name with `psd=n`, one label
/// below the first other name with `psd=y`, else the shortest name found.
fn organizational_domain<'a>(found: &[(&'a str, Vec<String>)], start: &'a str) -> Option<&'a str> {
    for (name, records) in found {
        match records.first().and_then(|r| psd(r)) {
            Some(false) => return Some(name),
            Some(true) if *name != start => {
                // One label below the suffix, on the way to `start`.
                let labels = label_starts(start);
                let depth = name.split('.').count() + 1;
                return labels
                    .len()
                    .checked_sub(depth)
                    .and_then(|skip| labels.get(skip))
                    .map(|&at| &start[at..]);
            }
            _ => {}
        }
    }
    found.last().map(|(name, _)| *name)
}

/// The names mail-auth's DMARC tree walk (RFC 9989 §4.10) asks, in its order: `domain`,
/// then at most its last seven labels, one label fewer at a time, down to the top-level
/// domain (none for a single label). So the record lookups are the walk's own (answered
/// from the shared cache), at most nine: walking every parent, a From domain of 120 labels
/// cost 120 uncached lookups at the victim's name servers, and the stage deadline with them.
fn dmarc_walk(domain: &str) -> Vec<&str> {
    let labels = label_starts(domain);
    let total = labels.len();
    if total < 2 {
        return Vec::new();
    }
    let mut names = vec![domain];
    let mut count = total;
    while count > 1 {
        count = if count >= 8 { 7 } else { count - 1 };
        names.push(&domain[labels[total - count]..]);
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Keeps the header one field whatever a result text contained: control characters other
/// than tab are dropped and every line after the first starts with whitespace.
pub(crate) fn fold_safely(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    for (n, line) in header.split("\r\n").enumerate() {
        if n > 0 {
            out.push_str("\r\n");
            if !line.starts_with([' ', '\t']) {
                out.push('\t');
            }
        }
        let start = out.len();
        out.extend(line.chars().filter(|c| *c == '\t' || !c.is_control()));
        if out.len() - start > MAX_LINE {
            // A property value from the message (a DKIM `i=` folded over several lines of its
            // header) made the line too long (RFC 5322 §2.1.1): keep the method and result,
            // which are valid without their properties (RFC 8601 §2.2).
            let line = out.split_off(start);
            let end = [" header.", " smtp.", " policy."]
                .iter()
                .filter_map(|p| line.find(p))
                .min()
                .unwrap_or(MAX_LINE);
            let mut end = end.min(MAX_LINE - 1);
            // A cut inside a comment (a long greeting repeated in the SPF comment) or a
            // quoted string would leave it open, and every result after it read as
            // comment text: close what is open.
            let closers = loop {
                end = line.floor_char_boundary(end);
                let closers = still_open(&line[..end]);
                if end + closers.len() < MAX_LINE || end == 0 {
                    break closers;
                }
                end -= 1;
            };
            out.push_str(&line[..end]);
            out.push_str(&closers);
            if line.ends_with(';') {
                out.push(';');
            }
        }
    }
    out
}

/// What closes the comments (nested, RFC 5322 §3.2.2) and the quoted string left open at
/// the end of `text`.
fn still_open(text: &str) -> String {
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ => {}
        }
    }
    let mut closers = String::new();
    if escaped {
        // The cut took the character a backslash escaped: escape a harmless one.
        closers.push(' ');
    }
    if quoted {
        closers.push('"');
    }
    closers.extend(std::iter::repeat_n(')', depth));
    closers
}

/// Longest line of a header field, CRLF excluded (RFC 5322 §2.1.1).
const MAX_LINE: usize = 998;

/// An author address with its domain as a reader sees it and as DNS names it: mail-parser
/// keeps the folding white space RFC 5322 allows around a domain's atoms (`a@ example.test`,
/// `a@example .test`) and a trailing dot, which mail-auth would look up as they are (no
/// record: DMARC `permerror` for a forgery of a `p=reject` domain); a UTF-8 domain (RFC 6532)
/// becomes its A-label, the form of every DKIM `d=`.
fn normalize_author(address: &mut String) {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return;
    };
    let domain: String = domain
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_lowercase();
    // Converted before the trailing dot goes: the mapping makes dots of `。`, `．` and
    // `｡` and drops invisible characters (`.\u{200B}`), and a dot it revealed was looked
    // up by mail-auth as `_dmarc.victim.test..`, a malformed name: `permerror`, no 550.
    let domain = if domain.is_ascii() {
        domain
    } else {
        idna::domain_to_ascii(&domain).unwrap_or(domain)
    };
    let domain = domain.trim_end_matches(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}']);
    *address = format!("{local}@{domain}");
}

/// Whether an author domain (as [`normalize_author`] left it) is a name DNS can hold and
/// DMARC can look up: labels of letters, digits, `-` and `_` (what the resolver takes), none
/// empty, none over 63 octets, and room for `_dmarc.` before it within 253. Anything else
/// cannot be looked up, and mail-auth's `permerror` would let a look-alike of a `p=reject`
/// domain by (review: `billing+x.victim.test`, `victim.test#`, a name of 250 octets).
fn is_dns_name(domain: &str) -> bool {
    crate::mail::address::is_lookup_name(&format!("_dmarc.{domain}"))
}

/// The From domain when the From addresses name exactly one domain (of
/// [`author_domains`]), else empty.
fn single_author(authors: &[String]) -> String {
    match authors {
        [one] => one.clone(),
        _ => String::new(),
    }
}

/// Removes every `Authentication-Results` header field of `message` (CRLF or LF line ends)
/// whose authserv-id is one of `ours` (RFC 8601 §5: this host, and in a tier every member,
/// since the internal server trusts them all): header names are matched case-insensitively,
/// folded fields are removed whole, the body is never touched. Borrowed when nothing matched.
pub fn strip_authentication_results<'m>(message: &'m [u8], ours: &[&str]) -> Cow<'m, [u8]> {
    crate::mail::header_fields::remove_fields(message, |name, value| {
        name.eq_ignore_ascii_case(b"Authentication-Results")
            && authserv_id(value).is_some_and(|id| {
                let id = id.trim_end_matches('.');
                ours.iter()
                    .any(|o| id.eq_ignore_ascii_case(o.trim_end_matches('.')))
            })
    })
}

/// The authserv-id: the first token (or quoted string) after optional whitespace, folding and
/// comments.
fn authserv_id(value: &[u8]) -> Option<String> {
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = value.get(i..)?;
    let id: Cow<'_, [u8]> = if let Some(quoted) = rest.strip_prefix(b"\"") {
        Cow::Owned(unquote(quoted)?)
    } else {
        let end = rest
            .iter()
            .position(|b| matches!(b, b';' | b'(' | b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(rest.len());
        Cow::Borrowed(&rest[..end])
    };
    (!id.is_empty()).then(|| String::from_utf8_lossy(&id).into_owned())
}

/// The content of a quoted string (RFC 5322 §3.2.4) whose opening quote is gone: up to the
/// closing quote, each quoted pair (`\x`) read as its character and folding removed, as a
/// reader decodes it (`"mx.example\.test"` names `mx.example.test`). `None` when it is
/// not closed.
fn unquote(quoted: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = quoted.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => return Some(out),
            b'\\' => out.push(*bytes.next()?),
            b'\r' | b'\n' => {}
            _ => out.push(b),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big message is parsed with the worker handed over on the multi-threaded runtime
    /// and directly elsewhere (`block_in_place` panics on a current-thread runtime, such as
    /// `#[tokio::test]`'s, and outside any runtime): the same signatures either way.
    #[test]
    fn big_messages_parse_alike_on_every_runtime() {
        let mut raw = String::new();
        for c in ["relaxed/relaxed", "simple/simple"] {
            raw.push_str(&format!(
                "DKIM-Signature: v=1; a=rsa-sha256; c={c}; d=example.com; s=s; h=from; \
                 bh=AAAA; b=AAAA\r\n"
            ));
        }
        raw.push_str("From: a@example.com\r\nSubject: x\r\n\r\n");
        while raw.len() <= crate::runtime::HEAVY_MESSAGE_BYTES {
            raw.push_str("some body text that is long enough to fill a line of mail\r\n");
        }
        let signatures =
            || parse_off_the_session_threads(raw.as_bytes()).map(|m| m.dkim_headers.len());
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(signatures(), Some(2));
        assert_eq!(current.block_on(async { signatures() }), Some(2));
        assert_eq!(multi.block_on(async { signatures() }), Some(2));
        let spawned = multi.block_on(async {
            let raw = raw.clone();
            tokio::spawn(async move {
                parse_off_the_session_threads(raw.as_bytes()).map(|m| m.dkim_headers.len())
            })
            .await
            .unwrap()
        });
        assert_eq!(spawned, Some(2));
    }

    /// Regression (review): the `pct=` lookups walked every parent of the From domain, one
    /// uncached lookup each (120 for a domain of 120 labels), where mail-auth's walk asks
    /// at most eight names.
    #[test]
    fn the_pct_lookups_follow_the_dmarc_tree_walk() {
        assert_eq!(dmarc_walk("example.com"), ["example.com", "com"]);
        assert_eq!(
            dmarc_walk("a.b.example.com"),
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
        assert!(dmarc_walk("localhost").is_empty());
        let deep = format!("{}victim.test", "a.".repeat(120));
        let walk = dmarc_walk(&deep);
        assert_eq!(walk.len(), 8);
        assert_eq!(walk[0], deep);
        assert_eq!(walk[1], "a.a.a.a.a.victim.test");
        assert_eq!(walk[6], "victim.test");
        assert_eq!(walk[7], "test");
    }

    /// Regression (review): only the first two From domains were compared, so
    /// `a@x, b@x, c@y` read as the single domain `x` (and could earn `DKIM_VALID_AU`).
    #[test]
    fn a_from_with_several_domains_has_no_single_domain() {
        let one = |raw: &str| {
            let message = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
            single_author(&author_domains(&message).0)
        };
        let head = "Subject: x\r\n\r\nHi.\r\n";
        assert_eq!(
            one(&format!("From: a@x.test, b@x.test, c@y.test\r\n{head}")),
            ""
        );
        assert_eq!(
            one(&format!("From: a@x.test, b@X.test\r\n{head}")),
            "x.test"
        );
        assert_eq!(one(&format!("From: a@x.test\r\n{head}")), "x.test");
    }
}
