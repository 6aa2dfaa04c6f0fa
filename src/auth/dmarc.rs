//! DMARC (RFC 7489 / RFC 9989): identifier alignment of SPF and DKIM with the From domain,
//! and the policy the domain publishes.

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::{DmarcOutput, DmarcResult, ResolverCache, Txt};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// The DMARC verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcVerdict {
    /// An aligned SPF or DKIM pass.
    Pass,
    /// The domain publishes DMARC and nothing aligned passed.
    Fail,
    /// No DMARC record (or no single From domain).
    None,
    /// A DNS error (or the stage deadline) prevented a verdict.
    TempError,
    /// The record could not be interpreted.
    PermError,
}

impl DmarcVerdict {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcVerdict::Pass => "pass",
            DmarcVerdict::Fail => "fail",
            DmarcVerdict::None => "none",
            DmarcVerdict::TempError => "temperror",
            DmarcVerdict::PermError => "permerror",
        }
    }
}

/// A DMARC record mail-auth refuses whole for the value of one tag, read as RFC 7489 §6.3
/// reads it: syntax errors past `v=DMARC1` "SHOULD be discarded in favor of default values
/// (if any) or ignored outright". mail-auth fails the whole record instead (`adkim=relaxed`,
/// `fo=x`, an `np=` it does not know), so a forgery of a `p=reject` domain with such a
/// record got an unscored `permerror` and was delivered (review). Each tag is kept when
/// mail-auth reads it alone; an unreadable `p=` or `sp=` takes both with it, which leaves
/// `p=none` when the record has reporting addresses and no DMARC otherwise (RFC 7489
/// §6.6.3). `None` for a record mail-auth reads, or that is no DMARC record at all.
pub(crate) fn lenient_record(text: &str) -> Option<Dmarc> {
    if !matches!(
        Dmarc::parse(text.as_bytes()),
        Err(mail_auth::Error::ParseError)
    ) {
        return None;
    }
    let mut tags = text.split(';');
    let version = tags.next()?;
    let readable = |tag: &str| Dmarc::parse(format!("{version};{tag}").as_bytes()).is_ok();
    let tags: Vec<&str> = tags.filter(|tag| !tag.trim().is_empty()).collect();
    let is_policy = |tag: &str| {
        tag.split_once('=').is_some_and(|(name, _)| {
            let name = name.trim();
            name.eq_ignore_ascii_case("p") || name.eq_ignore_ascii_case("sp")
        })
    };
    let policy_unreadable = tags.iter().any(|tag| is_policy(tag) && !readable(tag));
    let kept: Vec<&str> = tags
        .into_iter()
        .filter(|tag| readable(tag) && !(policy_unreadable && is_policy(tag)))
        .collect();
    Dmarc::parse(format!("{version};{}", kept.join(";")).as_bytes()).ok()
}

/// DMARC records read leniently ([`lenient_record`]), by the name mail-auth asks
/// (`_dmarc.example.test.`), handed to mail-auth as its TXT cache: a name here is answered
/// with its lenient reading, every other one is looked up as usual.
#[derive(Default)]
pub(crate) struct LenientRecords(HashMap<Box<str>, Txt>);

impl LenientRecords {
    /// Adds the lenient reading of the DMARC records at `name` (`_dmarc.` and the domain),
    /// when mail-auth reads none of them and the first one reads leniently. True when added.
    pub(crate) fn add(&mut self, name: &str, records: &[String]) -> bool {
        let key: Box<str> = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase()).into();
        if self.0.contains_key(&key) {
            return false;
        }
        let dmarc: Vec<&String> = records.iter().filter(|r| is_dmarc_record(r)).collect();
        if dmarc.iter().any(|r| Dmarc::parse(r.as_bytes()).is_ok()) {
            return false;
        }
        let Some(record) = dmarc.first().and_then(|r| lenient_record(r)) else {
            return false;
        };
        self.0.insert(key, Txt::Dmarc(Arc::new(record)));
        true
    }
}

impl ResolverCache<Box<str>, Txt> for LenientRecords {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    /// mail-auth's own findings are not kept: the shared DNS cache keeps the answers.
    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: std::time::Instant) {}
}

/// Whether a TXT record is a DMARC record: its first tag `v=DMARC1`, white space around
/// the `=` and any case allowed, as mail-auth reads it.
pub(crate) fn is_dmarc_record(record: &str) -> bool {
    let first = record.split(';').next().unwrap_or_default();
    first.split_once('=').is_some_and(|(k, v)| {
        k.trim().eq_ignore_ascii_case("v") && v.trim().eq_ignore_ascii_case("DMARC1")
    })
}

/// The policy the From domain asks for on failure (after `sp=`/`np=` for subdomains and the
/// one-level downgrade of `t=y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `p=none` (or no policy).
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

impl DmarcPolicy {
    /// As `policy.dmarc=` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The DMARC result of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCheck {
    /// The verdict.
    pub verdict: DmarcVerdict,
    /// The RFC 5322 From domain evaluated (empty when there was none).
    pub domain: String,
    /// The published policy.
    pub policy: DmarcPolicy,
    /// Verification did not finish within the stage deadline.
    pub timed_out: bool,
    /// A failure under `reject` because the author domain could not be evaluated at all
    /// (no DNS name, past the number of author domains judged), not because it published
    /// that policy.
    pub unjudged: bool,
}

impl Default for DmarcCheck {
    fn default() -> Self {
        DmarcCheck {
            verdict: DmarcVerdict::None,
            domain: String::new(),
            policy: DmarcPolicy::None,
            timed_out: false,
            unjudged: false,
        }
    }
}

impl DmarcCheck {
    pub(crate) fn from_output(output: &DmarcOutput) -> DmarcCheck {
        let verdict = match output.result() {
            DmarcResult::Pass => DmarcVerdict::Pass,
            DmarcResult::Fail(_) => DmarcVerdict::Fail,
            DmarcResult::TempError(_) => DmarcVerdict::TempError,
            DmarcResult::PermError(_) => DmarcVerdict::PermError,
            DmarcResult::None => DmarcVerdict::None,
        };
        let policy = match output.policy() {
            Policy::Reject => DmarcPolicy::Reject,
            Policy::Quarantine => DmarcPolicy::Quarantine,
            Policy::None | Policy::Unspecified => DmarcPolicy::None,
        };
        DmarcCheck {
            verdict,
            domain: output.domain().to_owned(),
            policy,
            ..DmarcCheck::default()
        }
    }

    pub(crate) fn timed_out(domain: &str) -> DmarcCheck {
        DmarcCheck {
            verdict: DmarcVerdict::TempError,
            domain: domain.to_owned(),
            policy: DmarcPolicy::None,
            timed_out: true,
            unjudged: false,
        }
    }

    /// DMARC failed and the domain's policy is `reject`: the policy should answer 550 at end
    /// of DATA unless configured otherwise.
    pub fn reject_requested(&self) -> bool {
        self.verdict == DmarcVerdict::Fail && self.policy == DmarcPolicy::Reject
    }

    /// DMARC could not be judged for a temporary failure of its SPF or DKIM lookups while
    /// the domain publishes `p=reject`: the message should be deferred, not taken as if the
    /// domain had no DMARC. A forger can force that failure when the domain's SPF record
    /// puts a name the sender chooses into a lookup (`exists:%{l}.x.example`): a local part
    /// such as `a+b` makes a name the resolver refuses to ask, and the forgery of a
    /// `p=reject` domain read as `temperror` and was delivered (review).
    pub fn deferral_requested(&self) -> bool {
        self.verdict == DmarcVerdict::TempError && self.policy == DmarcPolicy::Reject
    }

    /// DMARC failed and the domain's policy is `quarantine`.
    pub fn quarantine_requested(&self) -> bool {
        self.verdict == DmarcVerdict::Fail && self.policy == DmarcPolicy::Quarantine
    }

    /// The symbols: `DMARC_PASS`, `DMARC_NONE`, `DMARC_TEMPERROR`, `DMARC_PERMERROR`, or
    /// `DMARC_FAIL` with one of `DMARC_POLICY_REJECT`, `DMARC_POLICY_QUARANTINE`,
    /// `DMARC_POLICY_NONE`.
    pub fn symbols(&self) -> Vec<&'static str> {
        match self.verdict {
            DmarcVerdict::Pass => vec!["DMARC_PASS"],
            DmarcVerdict::None => vec!["DMARC_NONE"],
            DmarcVerdict::TempError => vec!["DMARC_TEMPERROR"],
            DmarcVerdict::PermError => vec!["DMARC_PERMERROR"],
            DmarcVerdict::Fail => vec![
                "DMARC_FAIL",
                match self.policy {
                    DmarcPolicy::Reject => "DMARC_POLICY_REJECT",
                    DmarcPolicy::Quarantine => "DMARC_POLICY_QUARANTINE",
                    DmarcPolicy::None => "DMARC_POLICY_NONE",
                },
            ],
        }
    }
}
