//! The signed verdict stamp: `X-Mxguard-Stamp: v=6; g=GATEWAY; t=UNIX; r=VERDICT; s=SCORE;
//! f=FINGERPRINT-PREFIX; b=MAC`, where MAC is HMAC-SHA256 with the tier's key over those
//! fields, the Message-ID, the author and recipient fields, Subject and the fields that
//! say how to read the body ([`SIGNED_FIELDS`])
//! and a hash of the body. The internal server (a Sieve or milter hook calling
//! `mxguard stamp verify`) or another tier member can tell a verdict of the tier from one
//! a spammer wrote, and a stamp taken from one message cannot vouch for another author or
//! subject over the same body.
//!
//! The body is hashed in a canonical form (LF line ends, trailing blank lines dropped), so
//! a stamp still verifies after a mail store rewrote CRLF to LF; header values are
//! unfolded with their blank runs collapsed outside quoted strings (a refold changes
//! those, while inside quotes a blank is part of a value: `boundary="b  1"` is another
//! boundary than `"b 1"`), and read as the bytes they are.
//!
//! Here, below the tier, so that the relay can sign again a copy it had to convert (7-bit
//! MIME for a server without 8BITMIME); the key is the tier's secret.

use crate::mail::header_fields::remove_fields;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use canonical::{message_id, signed_fields, stamp_values, Form};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::time::Duration;

/// The header's name.
pub const HEADER: &str = "X-Mxguard-Stamp";

/// Header fields whose every occurrence (or absence) the MAC covers: who wrote the message,
/// to whom, what about, and how its body is read (the body hash covers raw bytes: with
/// the MIME fields unsigned, a new `Content-Type` boundary or encoding would turn text
/// the tier judged into an attachment it never saw, and a `Content-Disposition` with a
/// file name a body the tier judged as text into an attachment its policy refuses). Not
/// Date, which an MTA downstream may add (as it may a Message-ID, which is bound apart).
/// `Content-Disposition` comes last: stamps before version 5 signed all the others.
pub const SIGNED_FIELDS: [&str; 9] = [
    "from",
    "reply-to",
    "to",
    "cc",
    "subject",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

/// How far ahead of the verifier's clock a stamp may be dated (clocks of a tier differ).
const CLOCK_SKEW: u64 = 300;

/// Hex digits of the policy fingerprint a stamp carries.
const FINGERPRINT_PREFIX: usize = 16;

/// What a stamp says.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    /// The gateway that judged the message.
    pub gateway: String,
    /// When (unix seconds).
    pub time: u64,
    /// The verdict (`accept`, `tag`, ...).
    pub verdict: String,
    /// The score, as written (two decimals).
    pub score: String,
    /// The start of the judging policy's fingerprint.
    pub fingerprint: String,
}

/// Why a stamp does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The message has no stamp.
    #[error("no {HEADER} header")]
    Missing,
    /// More than one stamp: only one can be ours.
    #[error("{0} {HEADER} headers (one expected)")]
    Several(usize),
    /// The stamp is not in the `v=1; ...` form.
    #[error("malformed stamp: {0}")]
    Malformed(String),
    /// The MAC does not match: forged, or the message was changed after stamping.
    #[error("bad signature: the stamp was not made with this tier's key for this message")]
    BadSignature,
    /// Dated ahead of the verifier's clock by more than clocks of a tier differ.
    #[error("stamp is dated {ahead}s in the future")]
    Future {
        /// How far ahead, in seconds.
        ahead: u64,
    },
    /// Older than allowed.
    #[error("stamp is {age}s old (at most {max}s accepted)")]
    Stale {
        /// Its age in seconds.
        age: u64,
        /// The limit.
        max: u64,
    },
}

impl Stamp {
    /// A stamp for a verdict given now by `gateway` under `fingerprint`.
    pub fn new(gateway: &str, time: u64, verdict: &str, score: f64, fingerprint: &str) -> Stamp {
        Stamp {
            gateway: gateway.to_owned(),
            time,
            verdict: verdict.to_owned(),
            score: crate::mail::score::hundredths_down(score),
            fingerprint: fingerprint.chars().take(FINGERPRINT_PREFIX).collect(),
        }
    }

    /// Whether the stamp was made under the policy whose fingerprint is `fingerprint`
    /// (the stamp holds its first 16 characters).
    pub fn made_under(&self, fingerprint: &str) -> bool {
        let prefix: String = fingerprint.chars().take(FINGERPRINT_PREFIX).collect();
        !prefix.is_empty() && prefix.eq_ignore_ascii_case(&self.fingerprint)
    }

    fn fields(&self, form: Form) -> String {
        format!(
            "v={}; g={}; t={}; r={}; s={}; f={}",
            form.version(),
            self.gateway,
            self.time,
            self.verdict,
            self.score,
            self.fingerprint
        )
    }

    /// The whole header line, CRLF-terminated, signed with `key` for `message` (its header
    /// section gives the Message-ID and the signed fields, the rest is the body).
    pub fn header(&self, key: &[u8], message: &[u8]) -> String {
        self.header_in(key, message, Form::NEWEST)
    }

    /// [`Stamp::header`] in `form` (the tests make older versions' stamps with it).
    fn header_in(&self, key: &[u8], message: &[u8], form: Form) -> String {
        let (headers, body) = split(message);
        let mac = mac(
            key,
            &self.fields(form),
            &message_id(headers, form),
            &signed_fields(headers, form),
            &body_hash(body),
        );
        let mac = BASE64.encode(mac.finalize().into_bytes());
        format!("{HEADER}: {}; b={mac}\r\n", self.fields(form))
    }

    /// Parses a header value (`v=6; g=...; b=...`) into the stamp, its MAC and the form
    /// it was made over.
    fn parse(value: &str) -> Result<(Stamp, Vec<u8>, Form), StampError> {
        let mut g = None;
        let mut t = None;
        let mut r = None;
        let mut s = None;
        let mut f = None;
        let mut b = None;
        let mut v = None;
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, val) = part
                .split_once('=')
                .ok_or_else(|| StampError::Malformed(format!("{part:?} is not key=value")))?;
            let val = val.trim().to_owned();
            let slot = match k.trim() {
                "v" => &mut v,
                "g" => &mut g,
                "t" => &mut t,
                "r" => &mut r,
                "s" => &mut s,
                "f" => &mut f,
                "b" => &mut b,
                other => return Err(StampError::Malformed(format!("unknown field {other:?}"))),
            };
            if slot.replace(val).is_some() {
                return Err(StampError::Malformed(format!("field {k:?} twice")));
            }
        }
        // Version 1 stamps left the author and subject unsigned, version 2 the MIME
        // fields: no longer trusted. Versions 3 and 4 are checked only where what they
        // left out cannot matter (`Form::vouches_for`).
        let form = v
            .as_deref()
            .and_then(Form::of_version)
            .ok_or_else(|| StampError::Malformed("not version 3, 4, 5 or 6".into()))?;
        let need = |x: Option<String>, name: &str| {
            x.ok_or_else(|| StampError::Malformed(format!("field {name} missing")))
        };
        let time = need(t, "t")?
            .parse()
            .map_err(|_| StampError::Malformed("t is not a number".into()))?;
        let mac = BASE64
            .decode(need(b, "b")?)
            .map_err(|_| StampError::Malformed("b is not base64".into()))?;
        Ok((
            Stamp {
                gateway: need(g, "g")?,
                time,
                verdict: need(r, "r")?,
                score: need(s, "s")?,
                fingerprint: need(f, "f")?,
            },
            mac,
            form,
        ))
    }

    /// Finds the one stamp of `message` and checks its signature (made with one of `keys`:
    /// the tier's key, then the one it replaced, so mail stamped before a rotation still
    /// verifies) and age at `now`.
    pub fn verify(
        keys: &[&[u8]],
        message: &[u8],
        now: u64,
        max_age: Duration,
    ) -> Result<Stamp, StampError> {
        let stamp = Stamp::signed(keys, message)?;
        if stamp.is_dated_ahead(now) {
            return Err(StampError::Future {
                ahead: stamp.time - now,
            });
        }
        let age = now.saturating_sub(stamp.time);
        if age > max_age.as_secs() {
            return Err(StampError::Stale {
                age,
                max: max_age.as_secs(),
            });
        }
        Ok(stamp)
    }

    /// Whether the stamp is dated further ahead of `now` than clocks may differ.
    pub fn is_dated_ahead(&self, now: u64) -> bool {
        self.time > now.saturating_add(CLOCK_SKEW)
    }

    /// The one stamp of `message`, once its MAC (made with one of `keys`) matches; its
    /// dates are not looked at (see [`Stamp::verify`] for a stamp that stands).
    pub fn signed(keys: &[&[u8]], message: &[u8]) -> Result<Stamp, StampError> {
        let values = stamp_values(message);
        let value = match values.as_slice() {
            [] => return Err(StampError::Missing),
            [one] => one,
            more => return Err(StampError::Several(more.len())),
        };
        let (stamp, tag, form) = Stamp::parse(&String::from_utf8_lossy(value))?;
        let (headers, body) = split(message);
        if !form.vouches_for(headers) {
            return Err(StampError::Malformed(format!(
                "a version {} stamp over fields its form does not sign or cannot tell apart",
                form.version()
            )));
        }
        let id = message_id(headers, form);
        let fields = signed_fields(headers, form);
        let body = body_hash(body);
        let signed_for = |id: &[u8]| {
            keys.iter().any(|key| {
                mac(key, &stamp.fields(form), id, &fields, &body)
                    .verify_slice(&tag)
                    .is_ok()
            })
        };
        // A message that reached the tier without a Message-ID was stamped over an empty
        // one; an MTA downstream may have added one since (Postfix does for mail from its
        // own host). A stamp made over a real id still binds it.
        if !signed_for(&id) && (id.is_empty() || !signed_for(b"")) {
            return Err(StampError::BadSignature);
        }
        Ok(stamp)
    }
}

/// `converted` (a copy of `original` the relay converted to 7-bit MIME, whose body and
/// MIME fields the stamp no longer matches) with the stamp of `original` made again with
/// the first of `keys` over it: the same gateway, time, verdict, score and policy, in the
/// newest version. `None` unless `original` carries exactly one stamp whose MAC one of
/// `keys` made (then the copy goes as it is): what was not signed by the tier is never
/// signed now.
pub fn resign(keys: &[&[u8]], original: &[u8], converted: &[u8]) -> Option<Vec<u8>> {
    // No key (no tier): nothing to look for, and the body is not hashed for nothing.
    let signing = keys.first()?;
    let stamp = Stamp::signed(keys, original).ok()?;
    let bare = strip(converted);
    let mut out = stamp.header(signing, &bare).into_bytes();
    out.extend_from_slice(&bare);
    Some(out)
}

/// The message without any stamp (incoming ones from outside the tier never reach the
/// internal server); borrowed when there was none.
pub fn strip(message: &[u8]) -> Cow<'_, [u8]> {
    remove_fields(message, |name, _| {
        name.eq_ignore_ascii_case(HEADER.as_bytes())
    })
}

/// A short public name of `key` (16 hex digits of an HMAC of a constant under it): members
/// publish the one they sign with, so a member holding another key is told apart without
/// the key leaving its host.
pub fn key_id(key: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"mxguard tier key id");
    let digest = mac.finalize().into_bytes();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC over the fields, the Message-ID, the signed header fields and the canonical body
/// hash.
fn mac(
    key: &[u8],
    fields: &str,
    message_id: &[u8],
    signed_fields: &[u8],
    body_hash: &[u8],
) -> Hmac<Sha256> {
    // An HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(fields.as_bytes());
    mac.update(b"\nm=");
    mac.update(message_id);
    mac.update(signed_fields);
    mac.update(b"\nh=");
    mac.update(body_hash);
    mac
}

/// Header section and body (after the first empty line).
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    while pos < message.len() {
        let end = memchr::memchr(b'\n', &message[pos..]).map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return (&message[..pos], &message[end..]);
        }
        pos = end;
    }
    (message, &[])
}

/// SHA-256 of the body with LF line ends and no trailing blank lines.
fn body_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut pending_blank = 0usize;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            pending_blank += 1;
            continue;
        }
        for _ in 0..pending_blank {
            h.update(b"\n");
        }
        pending_blank = 0;
        h.update(line);
        h.update(b"\n");
    }
    h.finalize().into()
}

mod canonical;
#[cfg(test)]
mod tests;
