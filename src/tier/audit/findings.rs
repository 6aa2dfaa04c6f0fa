//! What the audit saw, judged: every finding kind with its severity, and the rules that
//! turn an MX set, the probe results and the fingerprints into findings.
//!
//! Serious findings are the ones that let spam or a spammer through (or mean no mail gets
//! in at all); they make `mxguard audit` exit 1. Warnings are weaknesses a bypass can use
//! or inconclusive probes; info is context.

use super::dns::{AddressLookup, MxKind, MxSet};
use super::fingerprint::AdminFingerprint;
use super::probe::{HostProbe, Outcome, Session, Stage, StepResult};
use serde::Serialize;
use std::cmp::Reverse;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context; nothing to fix.
    Info,
    /// A weakness or an inconclusive probe; exit code unaffected.
    Warning,
    /// Spam or spammers get through, or no mail does; exit code 1.
    Serious,
}

impl Severity {
    /// The lower-case name used in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Serious => "serious",
        }
    }
}

/// Every kind of finding. The snake_case names are a contract (JSON `kind`, README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// No MX records: senders fall back to the domain's A/AAAA (RFC 5321 §5.1), which
    /// usually leads straight to a web server or the internal server, past the filter.
    NoMx,
    /// A null MX (RFC 7505): the domain declares it takes no mail.
    NullMx,
    /// A null MX next to real MX records, which RFC 7505 forbids.
    NullMxMixed,
    /// An MX target is a CNAME (RFC 2181 §10.3); some senders refuse or mishandle it.
    CnameTarget,
    /// An MX target is an IP address written as a name; most MTAs skip it, ratware uses it.
    IpLiteralTarget,
    /// An MX target has no A/AAAA: senders move on to the next target.
    TargetWithoutAddress,
    /// An MX target's address lookups were not answered.
    TargetLookupFailed,
    /// One MX host only: no redundancy, and nothing to compare it with.
    SingleMx,
    /// The most preferred MX hosts do not share one preference, so senders do not spread
    /// over them and a lone primary is the tier.
    UnequalFrontPreferences,
    /// No MX address accepted an SMTP session: no mail can arrive.
    NoReachableMx,
    /// One MX address could not be reached (connection refused or timed out, not SMTP).
    Unreachable,
    /// One MX address refused the session (banner or EHLO/HELO not 2xx).
    SessionRefused,
    /// The MX refused EHLO and took HELO: no ESMTP, so no STARTTLS either.
    NoEsmtp,
    /// The MX does not offer STARTTLS: mail reaches it in plaintext.
    NoStarttls,
    /// STARTTLS is offered but the handshake (or the command) failed.
    StarttlsFailed,
    /// The MX refused `MAIL FROM:<>`, which RFC 5321 §4.5.5 requires it to take; the
    /// probes behind it are inconclusive.
    NullSenderRefused,
    /// A random local part at the domain was accepted at RCPT: the MX accepts mail for
    /// anyone and bounces later (backscatter), or delivers it all.
    UnknownRecipientAccepted,
    /// A recipient in another domain was accepted: an open relay.
    RelayAccepted,
    /// The GTUBE message got a 2xx after DATA: this MX does not filter spam.
    GtubeAccepted,
    /// The GTUBE message was refused before its content was sent (at RCPT or DATA), so
    /// content filtering was not exercised; `--rcpt` with an existing address tests it.
    GtubeNotExercised,
    /// The GTUBE message got a 4xx at RCPT, DATA or the end of data: the content filter
    /// was never shown to refuse it (a backup that greylists and then accepts anything
    /// would pass as well).
    GtubeDeferred,
    /// A probe got a 4xx (greylisting, a recipient callout that failed) or no usable
    /// answer: nothing can be concluded from it.
    ProbeInconclusive,
    /// Every probe of one MX address was inconclusive: the audit tested nothing there (a
    /// backup that defers everything may still be an open relay or filter nothing).
    NothingTested,
    /// The domain's own address (not an MX address) takes SMTP sessions: a spammer who
    /// connects there skips the MX tier, and whatever that host does with mail is not the
    /// tier's filter.
    ApexTakesSmtp,
    /// The domain's own A/AAAA lookups were not answered: whether a host there takes
    /// SMTP was not tested.
    ApexLookupFailed,
    /// Admin endpoints report different policy fingerprints: the tier members do not
    /// filter alike.
    FingerprintMismatch,
    /// An admin endpoint gave no fingerprint (unreachable, not 200, no `fingerprint`).
    AdminUnreachable,
    /// Fewer than two fingerprints were fetched: there was nothing to compare.
    FingerprintNotCompared,
}

impl FindingKind {
    /// Every kind, in the order of the README table.
    pub const ALL: [FindingKind; 28] = [
        FindingKind::NoMx,
        FindingKind::NullMx,
        FindingKind::NullMxMixed,
        FindingKind::CnameTarget,
        FindingKind::IpLiteralTarget,
        FindingKind::TargetWithoutAddress,
        FindingKind::TargetLookupFailed,
        FindingKind::SingleMx,
        FindingKind::UnequalFrontPreferences,
        FindingKind::NoReachableMx,
        FindingKind::Unreachable,
        FindingKind::SessionRefused,
        FindingKind::NoEsmtp,
        FindingKind::NoStarttls,
        FindingKind::StarttlsFailed,
        FindingKind::NullSenderRefused,
        FindingKind::UnknownRecipientAccepted,
        FindingKind::RelayAccepted,
        FindingKind::GtubeAccepted,
        FindingKind::GtubeNotExercised,
        FindingKind::GtubeDeferred,
        FindingKind::ProbeInconclusive,
        FindingKind::NothingTested,
        FindingKind::ApexTakesSmtp,
        FindingKind::ApexLookupFailed,
        FindingKind::FingerprintMismatch,
        FindingKind::AdminUnreachable,
        FindingKind::FingerprintNotCompared,
    ];

    /// How much this kind matters.
    pub fn severity(self) -> Severity {
        use FindingKind::*;
        match self {
            NoReachableMx
            | UnknownRecipientAccepted
            | RelayAccepted
            | GtubeAccepted
            | GtubeDeferred
            | NothingTested
            | FingerprintMismatch => Severity::Serious,
            GtubeNotExercised | FingerprintNotCompared => Severity::Info,
            _ => Severity::Warning,
        }
    }

    /// The snake_case name (as in the JSON).
    pub fn name(self) -> &'static str {
        use FindingKind::*;
        match self {
            NoMx => "no_mx",
            NullMx => "null_mx",
            NullMxMixed => "null_mx_mixed",
            CnameTarget => "cname_target",
            IpLiteralTarget => "ip_literal_target",
            TargetWithoutAddress => "target_without_address",
            TargetLookupFailed => "target_lookup_failed",
            SingleMx => "single_mx",
            UnequalFrontPreferences => "unequal_front_preferences",
            NoReachableMx => "no_reachable_mx",
            Unreachable => "unreachable",
            SessionRefused => "session_refused",
            NoEsmtp => "no_esmtp",
            NoStarttls => "no_starttls",
            StarttlsFailed => "starttls_failed",
            NullSenderRefused => "null_sender_refused",
            UnknownRecipientAccepted => "unknown_recipient_accepted",
            RelayAccepted => "relay_accepted",
            GtubeAccepted => "gtube_accepted",
            GtubeNotExercised => "gtube_not_exercised",
            GtubeDeferred => "gtube_deferred",
            ProbeInconclusive => "probe_inconclusive",
            NothingTested => "nothing_tested",
            ApexTakesSmtp => "apex_takes_smtp",
            ApexLookupFailed => "apex_lookup_failed",
            FingerprintMismatch => "fingerprint_mismatch",
            AdminUnreachable => "admin_unreachable",
            FingerprintNotCompared => "fingerprint_not_compared",
        }
    }
}

/// One finding: what, about which record, host or endpoint, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters (always `kind.severity()`).
    pub severity: Severity,
    /// What was found.
    pub kind: FindingKind,
    /// The domain, MX target, `target address` or admin name concerned.
    pub subject: String,
    /// The evidence, for a human.
    pub detail: String,
}

impl Finding {
    /// A finding of `kind` with its severity.
    pub fn new(kind: FindingKind, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            severity: kind.severity(),
            kind,
            subject: subject.into(),
            detail: detail.into(),
        }
    }
}

/// The shape of the most preferred MX hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum FrontTier {
    /// No published MX targets (no MX, or null MX).
    None,
    /// A single MX host.
    Single {
        /// Its preference.
        preference: u16,
    },
    /// The lowest preference is shared by several hosts and nothing is preferred to them.
    Equal {
        /// The shared preference.
        preference: u16,
        /// How many MX hosts share it.
        hosts: usize,
    },
    /// Several distinct preferences among what looks like the primaries.
    Unequal {
        /// Those preferences, lowest first.
        preferences: Vec<u16>,
    },
}

/// The front tier of a published MX set.
pub fn front_tier(mx: &MxSet) -> FrontTier {
    if mx.kind != MxKind::Published {
        return FrontTier::None;
    }
    let preferences: Vec<u16> = mx.targets.iter().map(|t| t.preference).collect();
    front_tier_of(&preferences)
}

/// The front tier is the lowest preference present more than once; preferences below it
/// mean the would-be primaries are not equal. With no repeated preference every host has
/// its own rank, and all of them count.
pub fn front_tier_of(preferences: &[u16]) -> FrontTier {
    let mut sorted = preferences.to_vec();
    sorted.sort_unstable();
    match sorted.as_slice() {
        [] => FrontTier::None,
        [only] => FrontTier::Single { preference: *only },
        _ => {
            let repeated = sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]);
            let mut primaries: Vec<u16> = match repeated {
                Some(front) => sorted.iter().copied().filter(|&p| p <= front).collect(),
                None => sorted.clone(),
            };
            primaries.dedup();
            match (repeated, primaries.as_slice()) {
                (Some(front), [_]) => FrontTier::Equal {
                    preference: front,
                    hosts: sorted.iter().filter(|&&p| p == front).count(),
                },
                _ => FrontTier::Unequal {
                    preferences: primaries,
                },
            }
        }
    }
}

/// Every finding, serious first (otherwise in the order found).
pub fn all(
    domain: &str,
    mx: &MxSet,
    hosts: &[HostProbe],
    apex: &[HostProbe],
    fingerprints: &[AdminFingerprint],
) -> Vec<Finding> {
    let mut found = mx_findings(domain, mx);
    if mx.kind != MxKind::Null && !hosts.iter().any(HostProbe::took_a_session) {
        let detail = if hosts.is_empty() {
            "no MX target has an address".to_owned()
        } else {
            format!(
                "no MX address took an SMTP session ({} probed)",
                hosts.len()
            )
        };
        found.push(Finding::new(FindingKind::NoReachableMx, domain, detail));
    }
    for host in hosts {
        found.extend(host_findings(host));
    }
    for host in apex {
        found.extend(apex_findings(host));
    }
    found.extend(fingerprint_findings(fingerprints));
    found.sort_by_key(|f| Reverse(f.severity));
    found
}

/// Findings about the published records alone.
pub fn mx_findings(domain: &str, mx: &MxSet) -> Vec<Finding> {
    use FindingKind::*;
    let mut found = Vec::new();
    match mx.kind {
        MxKind::Null => {
            found.push(Finding::new(
                NullMx,
                domain,
                "null MX (RFC 7505): the domain accepts no mail; nothing was probed",
            ));
            return found;
        }
        MxKind::Implicit => {
            let addresses: Vec<String> = mx
                .targets
                .iter()
                .flat_map(|t| t.addresses.iter().map(ToString::to_string))
                .collect();
            let detail = if addresses.is_empty() {
                "no MX records and no A/AAAA either".to_owned()
            } else {
                format!(
                    "no MX records: senders deliver to the domain's own address ({})",
                    addresses.join(", ")
                )
            };
            found.push(Finding::new(NoMx, domain, detail));
        }
        MxKind::Published => {}
    }
    if mx.null_mixed {
        found.push(Finding::new(
            NullMxMixed,
            domain,
            "a null MX record is published next to real MX records (ignored)",
        ));
    }
    for target in &mx.targets {
        if let Some(alias) = &target.cname {
            found.push(Finding::new(
                CnameTarget,
                &target.host,
                format!("MX target is an alias (CNAME) for {alias}"),
            ));
        }
        if target.ip_literal {
            found.push(Finding::new(
                IpLiteralTarget,
                &target.host,
                "MX target is an IP address, not a host name",
            ));
        }
        match &target.lookup {
            AddressLookup::Found => {}
            AddressLookup::NoAddress => found.push(Finding::new(
                TargetWithoutAddress,
                &target.host,
                "no A or AAAA record",
            )),
            AddressLookup::Failed(detail) => {
                found.push(Finding::new(TargetLookupFailed, &target.host, detail))
            }
            AddressLookup::Partial(detail) => found.push(Finding::new(
                TargetLookupFailed,
                &target.host,
                format!("{detail}; only the addresses found were probed"),
            )),
        }
    }
    match front_tier(mx) {
        FrontTier::Single { preference } => found.push(Finding::new(
            SingleMx,
            domain,
            format!("one MX host only (preference {preference})"),
        )),
        FrontTier::Unequal { preferences } => {
            let list: Vec<String> = preferences.iter().map(ToString::to_string).collect();
            found.push(Finding::new(
                UnequalFrontPreferences,
                domain,
                format!(
                    "the most preferred MX hosts have distinct preferences ({}); publish \
                     the front gateways at one preference",
                    list.join(", ")
                ),
            ));
        }
        FrontTier::None | FrontTier::Equal { .. } => {}
    }
    found
}

/// Findings about one address of the domain itself: none when it takes no SMTP session
/// on any connection (refused, closed, unreachable: as it should be); else
/// `apex_takes_smtp`, and what its probes let through (spam, relay, unknown recipients),
/// as for an MX. Its TLS, a deferral and the like do not matter: senders are not meant
/// to go there at all.
pub fn apex_findings(host: &HostProbe) -> Vec<Finding> {
    if !host.took_a_session() {
        return Vec::new();
    }
    let greeting = match &host.session {
        Session::Open { banner, .. } => banner.clone(),
        Session::Refused { reply } => {
            format!("its first session was refused ({reply}), not its probes'")
        }
        Session::Unreachable { error } => {
            format!("its first session failed ({error}), not its probes'")
        }
    };
    let subject = format!("{} {}", host.target, host.address);
    let mut found = vec![Finding::new(
        FindingKind::ApexTakesSmtp,
        &subject,
        format!("the domain's own address takes SMTP ({greeting}): a way around the MX hosts"),
    )];
    let let_through = [
        FindingKind::UnknownRecipientAccepted,
        FindingKind::RelayAccepted,
        FindingKind::GtubeAccepted,
    ];
    found.extend(
        host_findings(host)
            .into_iter()
            .filter(|f| let_through.contains(&f.kind)),
    );
    found
}

/// Findings about one probed address.
pub fn host_findings(host: &HostProbe) -> Vec<Finding> {
    use FindingKind::*;
    let subject = format!("{} {}", host.target, host.address);
    let mut found = Vec::new();
    // A session refused or stalled may still have let the probes through on their own
    // connections: what they found counts, and none conclusive is `nothing_tested`.
    let probed = host.unknown_recipient.is_some() || host.relay.is_some() || host.gtube.is_some();
    match &host.session {
        Session::Unreachable { error } => {
            found.push(Finding::new(Unreachable, &subject, error));
            if !probed {
                return found;
            }
        }
        Session::Refused { reply } => {
            found.push(Finding::new(SessionRefused, &subject, reply));
            if !probed {
                return found;
            }
        }
        Session::Open {
            esmtp,
            starttls_offered,
            tls,
            ..
        } => {
            if !esmtp {
                found.push(Finding::new(NoEsmtp, &subject, "EHLO refused, HELO taken"));
            } else if !starttls_offered {
                found.push(Finding::new(NoStarttls, &subject, "STARTTLS not offered"));
            } else if !tls {
                found.push(Finding::new(
                    StarttlsFailed,
                    &subject,
                    "STARTTLS offered, but no TLS session could be set up",
                ));
            }
        }
    }
    let probes = [
        (
            "unknown recipient",
            &host.unknown_recipient,
            UnknownRecipientAccepted,
        ),
        ("relay", &host.relay, RelayAccepted),
        ("GTUBE", &host.gtube, GtubeAccepted),
    ];
    let mut null_sender_refused = false;
    let (mut run, mut conclusive) = (0, 0);
    for (name, result, accepted_kind) in probes {
        let Some(result) = result else { continue };
        run += 1;
        let evidence = describe(result);
        let domain_refused = accepted_kind == RelayAccepted && refuses_the_domain(result);
        let inconclusive = domain_refused
            || !matches!(
                (result.outcome, result.stage),
                (Outcome::Accepted, Stage::Rcpt | Stage::EndOfData)
                    | (
                        Outcome::Refused,
                        Stage::Rcpt | Stage::Data | Stage::EndOfData
                    )
            );
        if !inconclusive {
            conclusive += 1;
        }
        match (result.outcome, result.stage) {
            (Outcome::Refused, Stage::Mail) => null_sender_refused = true,
            _ if domain_refused => found.push(Finding::new(
                ProbeInconclusive,
                &subject,
                format!(
                    "{name} probe {evidence}: refused for the recipient's domain, which does \
                     not exist; a server that checks domains this way may still relay"
                ),
            )),
            (Outcome::Accepted, Stage::Rcpt | Stage::EndOfData) => found.push(Finding::new(
                accepted_kind,
                &subject,
                format!("{name} probe {evidence}"),
            )),
            (Outcome::Refused, Stage::Rcpt | Stage::Data) if accepted_kind == GtubeAccepted => {
                found.push(Finding::new(
                    GtubeNotExercised,
                    &subject,
                    format!("GTUBE probe {evidence}: its content was never sent"),
                ))
            }
            // Deferred before its content too (review: greylisting at RCPT, a Postfix with
            // postgrey that filters nothing, left one warning and exit 0).
            (Outcome::Deferred, Stage::Rcpt | Stage::Data | Stage::EndOfData)
                if accepted_kind == GtubeAccepted =>
            {
                found.push(Finding::new(
                    GtubeDeferred,
                    &subject,
                    format!(
                        "GTUBE probe {evidence}: the content filter was not shown to refuse it"
                    ),
                ))
            }
            // Refused at RCPT, DATA or after the content: what the probe tests. Refused
            // before MAIL (a 5xx banner or EHLO, a per-client limit): it never ran.
            (Outcome::Refused, Stage::Rcpt | Stage::Data | Stage::EndOfData) => {}
            _ => found.push(Finding::new(
                ProbeInconclusive,
                &subject,
                format!("{name} probe {evidence}"),
            )),
        }
    }
    if null_sender_refused {
        found.push(Finding::new(
            NullSenderRefused,
            &subject,
            "MAIL FROM:<> refused; the probes behind it are inconclusive",
        ));
    }
    if run > 0 && conclusive == 0 {
        found.push(Finding::new(
            NothingTested,
            &subject,
            format!("none of its {run} probes was conclusive: nothing was tested there"),
        ));
    }
    found
}

/// Whether a refusal at RCPT names the recipient's domain itself (`5.1.2` bad destination
/// system, `5.1.10` null MX): the relay probe's domain can never exist, so a server that
/// checks recipient domains (Postfix's `reject_unknown_recipient_domain` with a 5xx code)
/// refuses it for that reason, and may still relay to domains that do.
fn refuses_the_domain(result: &StepResult) -> bool {
    result.outcome == Outcome::Refused
        && result.stage == Stage::Rcpt
        && result
            .reply
            .as_deref()
            .and_then(|r| r.split_whitespace().nth(1))
            .is_some_and(|status| matches!(status, "5.1.2" | "5.1.10"))
}

/// Findings about the fingerprints: unreachable endpoints, and every endpoint that runs
/// another policy than the majority (the first one named breaks ties).
pub fn fingerprint_findings(fingerprints: &[AdminFingerprint]) -> Vec<Finding> {
    use FindingKind::*;
    let mut found = Vec::new();
    let mut groups: Vec<(&str, Vec<&AdminFingerprint>)> = Vec::new();
    for admin in fingerprints {
        match (&admin.fingerprint, &admin.error) {
            (Some(fp), _) => match groups.iter_mut().find(|(g, _)| g == fp) {
                Some((_, members)) => members.push(admin),
                None => groups.push((fp, vec![admin])),
            },
            (None, error) => found.push(Finding::new(
                AdminUnreachable,
                format!("{} {}", admin.name, admin.address),
                error.clone().unwrap_or_else(|| "no fingerprint".into()),
            )),
        }
    }
    let fetched: usize = groups.iter().map(|(_, m)| m.len()).sum();
    if !fingerprints.is_empty() && fetched < 2 {
        found.push(Finding::new(
            FingerprintNotCompared,
            "fingerprints",
            format!("{fetched} fingerprint(s) fetched; at least two are needed to compare"),
        ));
    }
    let mut reference = 0;
    for (i, (_, members)) in groups.iter().enumerate() {
        if members.len() > groups[reference].1.len() {
            reference = i;
        }
    }
    let Some((reference_fp, reference_members)) = groups.get(reference) else {
        return found;
    };
    let reference_names: Vec<&str> = reference_members.iter().map(|a| a.name.as_str()).collect();
    for (i, (fp, members)) in groups.iter().enumerate() {
        if i == reference {
            continue;
        }
        for admin in members {
            found.push(Finding::new(
                FingerprintMismatch,
                format!("{} {}", admin.name, admin.address),
                format!(
                    "policy fingerprint {} differs from {} ({})",
                    short(fp),
                    short(reference_fp),
                    reference_names.join(", ")
                ),
            ));
        }
    }
    found
}

/// The first 12 hex digits, as `mxguard check` and the console show them.
pub fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// `refused at RCPT (550 5.1.1 …)`, or the transport error in the parentheses.
pub fn describe(result: &StepResult) -> String {
    let outcome = match result.outcome {
        Outcome::Accepted => "accepted",
        Outcome::Refused => "refused",
        Outcome::Deferred => "deferred",
        Outcome::Error => "failed",
    };
    let evidence = result
        .reply
        .as_deref()
        .or(result.error.as_deref())
        .unwrap_or("");
    format!("{outcome} at {} ({evidence})", result.stage.describe())
}
