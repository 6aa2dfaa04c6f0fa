//! The signed verdict stamp: `X-Mxguard-Stamp: v=4; g=GATEWAY; t=UNIX; r=VERDICT; s=SCORE;
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
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::time::Duration;

/// The header's name.
pub const HEADER: &str = "X-Mxguard-Stamp";

/// Header fields whose every occurrence (or absence) the MAC covers: who wrote the message,
/// to whom, what about, and how its body is read (the body hash covers raw bytes: with
/// the MIME fields unsigned, a new `Content-Type` boundary or encoding would turn text
/// the tier judged into an attachment it never saw). Not Date, which an MTA downstream
/// may add (as it may a Message-ID, which is bound apart).
pub const SIGNED_FIELDS: [&str; 8] = [
    "from",
    "reply-to",
    "to",
    "cc",
    "subject",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
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
            score: format!("{score:.2}"),
            fingerprint: fingerprint.chars().take(FINGERPRINT_PREFIX).collect(),
        }
    }

    fn fields(&self) -> String {
        format!(
            "v=4; g={}; t={}; r={}; s={}; f={}",
            self.gateway, self.time, self.verdict, self.score, self.fingerprint
        )
    }

    /// The whole header line, CRLF-terminated, signed with `key` for `message` (its header
    /// section gives the Message-ID and the signed fields, the rest is the body).
    pub fn header(&self, key: &[u8], message: &[u8]) -> String {
        let (headers, body) = split(message);
        let mac = mac(
            key,
            &self.fields(),
            &message_id(headers),
            &signed_fields(headers),
            &body_hash(body),
        );
        let mac = BASE64.encode(mac.finalize().into_bytes());
        format!("{HEADER}: {}; b={mac}\r\n", self.fields())
    }

    /// Parses a header value (`v=1; g=...; b=...`) into the stamp and its MAC.
    pub fn parse(value: &str) -> Result<(Stamp, Vec<u8>), StampError> {
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
        // fields, version 3 collapsed blanks inside quoted strings: no longer trusted.
        if v.as_deref() != Some("4") {
            return Err(StampError::Malformed("not version 4".into()));
        }
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
        ))
    }

    /// Finds the one stamp of `message` and checks its signature (made with `key`) and age
    /// at `now`.
    pub fn verify(
        key: &[u8],
        message: &[u8],
        now: u64,
        max_age: Duration,
    ) -> Result<Stamp, StampError> {
        let values = stamp_values(message);
        let value = match values.as_slice() {
            [] => return Err(StampError::Missing),
            [one] => one,
            more => return Err(StampError::Several(more.len())),
        };
        let (stamp, tag) = Stamp::parse(&String::from_utf8_lossy(value))?;
        let (headers, body) = split(message);
        let id = message_id(headers);
        let fields = signed_fields(headers);
        let body = body_hash(body);
        let signed_for = |id: &[u8]| {
            mac(key, &stamp.fields(), id, &fields, &body)
                .verify_slice(&tag)
                .is_ok()
        };
        // A message that reached the tier without a Message-ID was stamped over an empty
        // one; an MTA downstream may have added one since (Postfix does for mail from its
        // own host). A stamp made over a real id still binds it.
        if !signed_for(&id) && (id.is_empty() || !signed_for(b"")) {
            return Err(StampError::BadSignature);
        }
        if stamp.time > now.saturating_add(CLOCK_SKEW) {
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
}

/// `message` with its one stamp made again with `key` over the message as it is now (the
/// same gateway, time, verdict, score and policy): for a copy the relay converted to 7-bit
/// MIME, whose body and MIME fields the old MAC no longer matches. `None` when the message
/// has no stamp, several, or one that does not parse (then it goes as it is).
pub fn resign(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    let values = stamp_values(message);
    let [value] = values.as_slice() else {
        return None;
    };
    let (stamp, _) = Stamp::parse(&String::from_utf8_lossy(value)).ok()?;
    let bare = strip(message);
    let mut out = stamp.header(key, &bare).into_bytes();
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

/// The values of every stamp header of `message`, unfolded.
fn stamp_values(message: &[u8]) -> Vec<Vec<u8>> {
    unfolded_values(message, HEADER)
}

/// The value of every `wanted` field (any case) of a header section, in order, in the
/// canonical form of [`canonical_value`].
fn unfolded_values(headers: &[u8], wanted: &str) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let _ = remove_fields(headers, |name, value| {
        if name.eq_ignore_ascii_case(wanted.as_bytes()) {
            values.push(canonical_value(value));
        }
        false
    });
    values
}

/// A field value unfolded (line breaks dropped), trimmed, with each run of blanks outside
/// quoted strings read as one space; inside a quoted string (RFC 5322 §3.2.4, with its
/// quoted pairs) every byte is kept, since there a blank is part of the value.
fn canonical_value(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut quoted = false;
    let mut escaped = false;
    let mut blank = false;
    for &b in value {
        if b == b'\r' || b == b'\n' {
            continue;
        }
        if quoted {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        if b == b' ' || b == b'\t' {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push(b' ');
        }
        blank = false;
        quoted = b == b'"';
        out.push(b);
    }
    out
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

/// The [`SIGNED_FIELDS`] of a header section in a form no other section shares: for each
/// name, how many occurrences, then each value unfolded (no line breaks remain).
fn signed_fields(headers: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for wanted in SIGNED_FIELDS {
        let values = unfolded_values(headers, wanted);
        out.extend_from_slice(format!("\n{wanted}:{}", values.len()).as_bytes());
        for value in values {
            out.push(b'\n');
            out.extend_from_slice(&value);
        }
    }
    out
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

/// The Message-ID value, trimmed; empty when there is none.
fn message_id(headers: &[u8]) -> Vec<u8> {
    unfolded_values(headers, "message-id")
        .into_iter()
        .find(|id| !id.is_empty())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"From: a@b.test\r\nMessage-ID: <m1@b.test>\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n\r\n";

    fn key() -> &'static [u8] {
        b"tier-key"
    }

    fn stamped(msg: &[u8]) -> Vec<u8> {
        let stamp = Stamp::new("gw1", 1_000, "accept", 0.5, "abcdef0123456789abcdef");
        let mut out = stamp.header(key(), msg).into_bytes();
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn a_fresh_stamp_verifies_and_survives_lf_line_ends() {
        let m = stamped(MSG);
        let s = Stamp::verify(key(), &m, 1_100, Duration::from_secs(3600)).unwrap();
        assert_eq!(
            (s.gateway.as_str(), s.verdict.as_str(), s.score.as_str()),
            ("gw1", "accept", "0.50")
        );
        assert_eq!(s.fingerprint, "abcdef0123456789");
        let lf: Vec<u8> = String::from_utf8(m)
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        assert!(Stamp::verify(key(), &lf, 1_100, Duration::from_secs(3600)).is_ok());
    }

    #[test]
    fn forgery_tampering_other_keys_and_age_are_refused() {
        let m = stamped(MSG);
        let day = Duration::from_secs(86_400);
        let other: &[u8] = b"another-key";
        assert_eq!(
            Stamp::verify(other, &m, 1_100, day),
            Err(StampError::BadSignature)
        );
        let tampered = String::from_utf8(m.clone())
            .unwrap()
            .replace("line two", "line 2");
        assert_eq!(
            Stamp::verify(key(), tampered.as_bytes(), 1_100, day),
            Err(StampError::BadSignature)
        );
        let verdict_changed = String::from_utf8(m.clone())
            .unwrap()
            .replace("r=accept", "r=tag");
        assert_eq!(
            Stamp::verify(key(), verdict_changed.as_bytes(), 1_100, day),
            Err(StampError::BadSignature)
        );
        assert!(matches!(
            Stamp::verify(key(), &m, 100_000, Duration::from_secs(60)),
            Err(StampError::Stale { .. })
        ));
        assert_eq!(
            Stamp::verify(key(), MSG, 1_100, day),
            Err(StampError::Missing)
        );
        let forged = b"X-Mxguard-Stamp: v=4; g=gw1; t=1000; r=accept; s=0.00; f=ab; b=AAAA\r\n";
        let mut f = forged.to_vec();
        f.extend_from_slice(MSG);
        assert_eq!(
            Stamp::verify(key(), &f, 1_100, day),
            Err(StampError::BadSignature)
        );
    }

    /// Regression (suspected last round, shown here): a message without a Message-ID was
    /// stamped over an empty id, and an internal Postfix adds one to mail from its own
    /// host (`local_header_rewrite_clients`), so the stamp no longer verified there. The
    /// id still binds a stamp made over one.
    #[test]
    fn a_stamp_made_without_a_message_id_survives_one_added_downstream() {
        let no_id = b"From: a@b.test\r\nSubject: hi\r\n\r\nline one\r\n";
        let day = Duration::from_secs(86_400);
        let added = String::from_utf8(stamped(no_id)).unwrap().replace(
            "Subject: hi\r\n",
            "Subject: hi\r\nMessage-ID: <q1@internal.test>\r\n",
        );
        assert!(Stamp::verify(key(), added.as_bytes(), 1_100, day).is_ok());
        let other_id = String::from_utf8(stamped(MSG))
            .unwrap()
            .replace("<m1@b.test>", "<m2@b.test>");
        assert_eq!(
            Stamp::verify(key(), other_id.as_bytes(), 1_100, day),
            Err(StampError::BadSignature)
        );
    }

    /// Regression (review): the MAC covered the body and the Message-ID only, so a stamp
    /// obtained for one message (a bounce used to return it) vouched for the same body
    /// under any author, subject or recipients, sent straight to the internal server.
    #[test]
    fn a_stamp_binds_the_author_recipients_and_subject() {
        let day = Duration::from_secs(86_400);
        let m = String::from_utf8(stamped(MSG)).unwrap();
        for (from, to) in [
            ("From: a@b.test\r\n", "From: ceo@bank.test\r\n"),
            ("Subject: hi\r\n", "Subject: urgent wire transfer\r\n"),
            (
                "Subject: hi\r\n",
                "Subject: hi\r\nReply-To: thief@x.test\r\n",
            ),
            (
                "Subject: hi\r\n",
                "Subject: hi\r\nTo: victim@example.test\r\n",
            ),
            ("Subject: hi\r\n", "Subject: hi\r\nFrom: second@x.test\r\n"),
            // Regression (review): the MIME fields were unsigned, so a body judged as
            // text could be re-read as a multipart with an attachment.
            (
                "Subject: hi\r\n",
                "Subject: hi\r\nContent-Type: multipart/mixed; boundary=B\r\n",
            ),
            (
                "Subject: hi\r\n",
                "Subject: hi\r\nContent-Transfer-Encoding: base64\r\n",
            ),
            ("Subject: hi\r\n", "Subject: hi\r\nMIME-Version: 1.0\r\n"),
        ] {
            let changed = m.replacen(from, to, 1);
            assert_eq!(
                Stamp::verify(key(), changed.as_bytes(), 1_100, day),
                Err(StampError::BadSignature),
                "{to:?}"
            );
        }
        // Refolding a signed field, or adding fields it does not sign, keeps it valid.
        let refolded = m.replacen("Subject: hi\r\n", "Subject:\r\n   hi\r\n", 1);
        assert!(Stamp::verify(key(), refolded.as_bytes(), 1_100, day).is_ok());
        let added = m.replacen("Subject: hi\r\n", "Subject: hi\r\nDelivered-To: u@x\r\n", 1);
        assert!(Stamp::verify(key(), added.as_bytes(), 1_100, day).is_ok());
        // Version 1, 2 and 3 stamps (which signed less) are no longer trusted.
        for old in ["v=1;", "v=2;", "v=3;"] {
            let old = m.replacen("v=4;", old, 1);
            assert!(matches!(
                Stamp::verify(key(), old.as_bytes(), 1_100, day),
                Err(StampError::Malformed(_))
            ));
        }
    }

    /// Regression (review): a stamp dated in the future had age 0, so a member whose clock
    /// ran a day ahead issued stamps valid for a day more than `stamp_max_age`.
    #[test]
    fn a_stamp_dated_ahead_of_the_clock_is_refused() {
        let m = stamped(MSG);
        let hour = Duration::from_secs(3600);
        assert!(Stamp::verify(key(), &m, 1_000 - CLOCK_SKEW, hour).is_ok());
        assert_eq!(
            Stamp::verify(key(), &m, 1_000 - CLOCK_SKEW - 1, hour),
            Err(StampError::Future {
                ahead: CLOCK_SKEW + 1
            })
        );
    }

    /// Regression (review): blanks were collapsed inside quoted strings too, and values
    /// read through a lossy UTF-8 decoding: a stamped message whose `boundary="b  1"` the
    /// tier read as plain text verified with `boundary="b 1"`, under which a reader finds
    /// the attachment the tier never judged; and two different invalid bytes read alike.
    #[test]
    fn blanks_inside_quotes_and_raw_bytes_are_signed_as_they_are() {
        let day = Duration::from_secs(86_400);
        let msg = b"From: a@b.test\r\nContent-Type: multipart/mixed;\r\n boundary=\"b  1\"\r\nSubject: caf\xe9\r\n\r\nbody\r\n";
        let m = stamped(msg);
        assert!(Stamp::verify(key(), &m, 1_100, day).is_ok());
        let text = |m: &[u8]| m.to_vec();
        let replace = |m: &[u8], from: &[u8], to: &[u8]| {
            let at = m.windows(from.len()).position(|w| w == from).unwrap();
            let mut out = m[..at].to_vec();
            out.extend_from_slice(to);
            out.extend_from_slice(&m[at + from.len()..]);
            out
        };
        let one_blank = replace(&text(&m), b"\"b  1\"", b"\"b 1\"");
        assert_eq!(
            Stamp::verify(key(), &one_blank, 1_100, day),
            Err(StampError::BadSignature)
        );
        let other_byte = replace(&text(&m), b"caf\xe9", b"caf\xff");
        assert_eq!(
            Stamp::verify(key(), &other_byte, 1_100, day),
            Err(StampError::BadSignature)
        );
        // Refolding and blanks outside quotes still do not matter.
        let refolded = replace(&text(&m), b";\r\n boundary", b";   boundary");
        assert!(Stamp::verify(key(), &refolded, 1_100, day).is_ok());
    }

    #[test]
    fn canonical_values_keep_quoted_strings_whole() {
        assert_eq!(canonical_value(b"  a \t b  "), b"a b");
        assert_eq!(canonical_value(b"x; b=\"p  q\"  r"), b"x; b=\"p  q\" r");
        assert_eq!(canonical_value(b"\"a\\\"  b\"  c"), b"\"a\\\"  b\" c");
        assert_eq!(canonical_value(b"a\r\n\tb"), b"a b");
    }

    /// A copy changed below the stamp (as the relay's 7-bit conversion changes it) is
    /// signed again with the same fields; without a stamp, or with several, nothing is made.
    #[test]
    fn resign_signs_the_message_as_it_is_now() {
        let day = Duration::from_secs(86_400);
        let m = String::from_utf8(stamped(MSG)).unwrap();
        let changed = m.replace("line two", "line 2");
        assert!(Stamp::verify(key(), changed.as_bytes(), 1_100, day).is_err());
        let again = resign(key(), changed.as_bytes()).unwrap();
        let stamp = Stamp::verify(key(), &again, 1_100, day).unwrap();
        assert_eq!((stamp.gateway.as_str(), stamp.time), ("gw1", 1_000));
        assert_eq!(stamp.verdict, "accept");
        assert!(resign(key(), MSG).is_none());
        assert!(resign(key(), &stamped(&stamped(MSG))).is_none());
    }

    #[test]
    fn strip_removes_every_stamp_and_nothing_else() {
        let m = stamped(&stamped(MSG));
        assert!(matches!(
            Stamp::verify(key(), &m, 1_100, Duration::from_secs(60)),
            Err(StampError::Several(2))
        ));
        assert_eq!(&*strip(&m), MSG);
    }
}
