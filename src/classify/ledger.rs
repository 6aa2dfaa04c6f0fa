//! The learn ledger: which messages were learned, as which class, with exactly which
//! tokens. Keyed by a digest of the message body, it makes learning idempotent (twice counts
//! once), turns a learn as the other class into a move, makes `--forget` subtract exactly
//! what was added (even after a tokenizer change) and is the training set the logistic
//! model is rebuilt from.

use super::ClassifyError;
use crate::mail::header_fields::{first_line, for_each_field};
use sha2::{Digest, Sha256};

/// SHA-256 of the message body (everything after the first empty line): the same message
/// delivered to several recipients, or with rewritten headers, has one digest. A body of
/// blanks only is told apart by the header fields that name the message (see
/// [`BodyHasher::finish_with`]).
pub fn body_digest(raw: &[u8]) -> [u8; 32] {
    let mut h = BodyHasher::default();
    let start = body_start(raw);
    h.update(start.map_or(raw, |i| &raw[i..]));
    h.finish_with(start.map_or(&[][..], |i| &raw[..i]))
}

/// The fields that name a message and no gateway rewrites (`Message-ID`, `Date`, `From`),
/// unfolded and trimmed, one per line.
fn naming_fields(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for_each_field(header, |field| {
        let Some(colon) = memchr::memchr(b':', first_line(field)) else {
            return;
        };
        let name = field[..colon].trim_ascii();
        let Some(wanted) = [&b"message-id"[..], b"date", b"from"]
            .into_iter()
            .find(|wanted| name.eq_ignore_ascii_case(wanted))
        else {
            return;
        };
        // Its lines trimmed and joined by one blank.
        let lines: Vec<&[u8]> = field[colon + 1..]
            .split(|&b| b == b'\n')
            .map(<[u8]>::trim_ascii)
            .collect();
        out.extend_from_slice(wanted);
        out.push(b':');
        out.extend_from_slice(lines.join(&b' ').trim_ascii());
        out.push(b'\n');
    });
    out
}

/// [`body_digest`] of a body fed in pieces (a message on disk, read in chunks).
#[derive(Default)]
pub struct BodyHasher {
    sha: Sha256,
    /// The last piece ended in a CR whose line end is not known yet.
    pending_cr: bool,
    /// A byte other than a blank or a line end was added.
    not_blank: bool,
}

impl BodyHasher {
    /// Adds the next bytes of the body.
    pub fn update(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.not_blank |= bytes.iter().any(|b| !b.is_ascii_whitespace());
        if self.pending_cr {
            self.pending_cr = false;
            if bytes.first() != Some(&b'\n') {
                self.sha.update(b"\r");
            }
        }
        // Files on disk may have LF line ends where the gateway saw CRLF: one digest for
        // both.
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', bytes) {
            let line = &bytes[start..i];
            self.sha.update(line.strip_suffix(b"\r").unwrap_or(line));
            self.sha.update(b"\n");
            start = i + 1;
        }
        bytes = &bytes[start..];
        if let Some(rest) = bytes.strip_suffix(b"\r") {
            self.pending_cr = true;
            bytes = rest;
        }
        self.sha.update(bytes);
    }

    /// The digest of everything added, for a body that is not blanks only; one of blanks
    /// only is the digest of the fields of `header` that name the message (review: every
    /// message without a body, subject-only spam among them, shared one digest, so 40
    /// learned as one, and a learn of another as ham moved the first).
    pub fn finish_with(mut self, header: &[u8]) -> [u8; 32] {
        if !self.not_blank {
            let mut sha = Sha256::new();
            sha.update(b"mxguard: a body of blanks only\n");
            sha.update(naming_fields(header));
            return sha.finalize().into();
        }
        if self.pending_cr {
            self.sha.update(b"\r");
        }
        self.sha.finalize().into()
    }
}

/// Where the body of `raw` starts for [`body_digest`], if it has an empty line.
pub fn body_start(raw: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(raw, b"\r\n\r\n").map(|p| p + 4);
    let lf = memchr::memmem::find(raw, b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A digest in hex, as the ledger's field names are.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A spam or ham message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Unwanted mail.
    Spam,
    /// Wanted mail.
    Ham,
}

impl Class {
    /// `spam` or `ham`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Spam => "spam",
            Class::Ham => "ham",
        }
    }

    /// True for spam.
    pub fn is_spam(self) -> bool {
        self == Class::Spam
    }
}

/// What a learn or forget request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// New: learned.
    Learned,
    /// Already learned as this class: nothing changed.
    AlreadyLearned,
    /// Was learned as the other class: moved.
    Moved,
    /// Forgotten.
    Forgotten,
    /// Forget of a message never learned: nothing changed.
    Unknown,
    /// An autolearn of a message learned by hand as the other class: the operator's word
    /// stands, nothing changed.
    KeptByHand,
}

impl Outcome {
    /// Lower-case name for progress lines and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Learned => "learned",
            Outcome::AlreadyLearned => "already learned",
            Outcome::Moved => "moved",
            Outcome::Forgotten => "forgotten",
            Outcome::Unknown => "not learned",
            Outcome::KeptByHand => "kept as learned by hand",
        }
    }
}

/// One ledger entry: the class, the exact token hashes that were counted, and whether the
/// gateway learned it by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The class it was learned as.
    pub class: Class,
    /// Token hashes counted (sorted).
    pub hashes: Vec<u64>,
    /// Learned by autolearn, not by `mxguard learn` (or a seed): an autolearn never moves
    /// an entry learned by hand, whatever a later copy of the message scores.
    pub autolearned: bool,
    /// When autolearn recorded it (unix seconds): past `classifier.autolearn_max` the
    /// oldest autolearned entries are forgotten. 0 for entries learned by hand, which are
    /// kept, and for autolearned ones stored before entries carried a time.
    pub learned_at: u64,
}

impl Entry {
    /// Stored form: `S` or `H` (by hand), or `T` then `s` or `h` and the time as a
    /// little-endian u64 (autolearned); then the hashes as little-endian u64. (`s` or `h`
    /// alone is an autolearned entry stored before entries carried a time.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.hashes.len() * 8);
        match (self.class.is_spam(), self.autolearned) {
            (true, false) => out.push(b'S'),
            (false, false) => out.push(b'H'),
            (spam, true) => {
                out.extend_from_slice(if spam { b"Ts" } else { b"Th" });
                out.extend_from_slice(&self.learned_at.to_le_bytes());
            }
        }
        for h in &self.hashes {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }

    /// Reads [`Entry::to_bytes`]'s form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry, ClassifyError> {
        let (kind, rest) = bytes
            .split_first()
            .ok_or_else(|| ClassifyError::Format("empty ledger entry".into()))?;
        let (kind, timed, learned_at, rest) = match (kind, rest) {
            (b'T', [kind, rest @ ..]) => {
                let (time, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| ClassifyError::Format("truncated ledger entry".into()))?;
                (kind, true, u64::from_le_bytes(*time), rest)
            }
            (b'T', []) => return Err(ClassifyError::Format("truncated ledger entry".into())),
            _ => (kind, false, 0, rest),
        };
        let (class, autolearned) = match kind {
            b'S' => (Class::Spam, false),
            b'H' => (Class::Ham, false),
            b's' => (Class::Spam, true),
            b'h' => (Class::Ham, true),
            _ => return Err(ClassifyError::Format("ledger entry of no class".into())),
        };
        if timed && !autolearned {
            return Err(ClassifyError::Format("ledger entry of no class".into()));
        }
        if rest.len() % 8 != 0 {
            return Err(ClassifyError::Format("truncated ledger entry".into()));
        }
        let hashes = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Entry {
            class,
            hashes,
            autolearned,
            learned_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_old_autolearned_ones_read_without_a_time() {
        for (class, autolearned, learned_at) in [
            (Class::Spam, false, 0),
            (Class::Ham, false, 0),
            (Class::Spam, true, 1_700_000_000),
            (Class::Ham, true, 1_700_000_001),
        ] {
            let entry = Entry {
                class,
                hashes: vec![1, u64::MAX],
                autolearned,
                learned_at,
            };
            assert_eq!(Entry::from_bytes(&entry.to_bytes()).unwrap(), entry);
        }
        let mut old = vec![b's'];
        old.extend_from_slice(&7u64.to_le_bytes());
        let read = Entry::from_bytes(&old).unwrap();
        assert_eq!(
            (read.autolearned, read.learned_at, read.hashes),
            (true, 0, vec![7])
        );
        for bad in [&b"T"[..], b"Ts1234567", b"TS12345678", b"Tx12345678"] {
            assert!(Entry::from_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digest_ignores_headers_and_line_ends() {
        let a = body_digest(b"To: a@x\r\n\r\nsame body\r\nline 2\r\n");
        let b = body_digest(b"To: b@y\nX: 1\n\nsame body\nline 2\n");
        assert_eq!(a, b);
        assert_ne!(a, body_digest(b"To: a@x\r\n\r\nother body\r\n"));
        assert_eq!(hex(&a).len(), 64);
    }

    /// Regression (review): every message without a body shared one digest, so 40
    /// subject-only spam learned as one, and a learn of another such message as ham moved
    /// the first. A body of blanks only is told apart by `Message-ID`, `Date` and `From`.
    #[test]
    fn messages_without_a_body_are_told_apart_by_the_fields_that_name_them() {
        let a = body_digest(b"Message-ID: <1@x>\r\nSubject: cheap pills\r\n\r\n");
        let b = body_digest(b"Message-ID: <2@x>\r\nSubject: a meeting\r\n\r\n \r\n");
        assert_ne!(a, b);
        // The same message with other (or rewritten) fields around has one digest.
        let again =
            body_digest(b"X-Spam: yes\nSubject: [SPAM] cheap pills\nMessage-ID:\n <1@x>\n\n");
        assert_eq!(a, again);
    }

    #[test]
    fn a_body_fed_in_pieces_has_the_digest_of_the_whole() {
        let body: &[u8] = b"one\r\ntwo\r\r\nthree\nfour\rfive\r\n\r\nend\r";
        let whole = {
            let mut h = BodyHasher::default();
            h.update(body);
            h.finish_with(b"")
        };
        assert_eq!(
            whole,
            body_digest(&[b"A: b\r\n\r\n".as_slice(), body].concat())
        );
        for cut in 0..=body.len() {
            for second in cut..=body.len() {
                let mut h = BodyHasher::default();
                h.update(&body[..cut]);
                h.update(&body[cut..second]);
                h.update(&body[second..]);
                assert_eq!(h.finish_with(b""), whole, "cut at {cut} and {second}");
            }
        }
    }

    #[test]
    fn entries_round_trip_and_garbage_is_an_error() {
        for autolearned in [false, true] {
            let e = Entry {
                class: Class::Spam,
                hashes: vec![1, u64::MAX],
                autolearned,
                learned_at: u64::from(autolearned) * 5,
            };
            assert_eq!(Entry::from_bytes(&e.to_bytes()).unwrap(), e);
        }
        assert!(Entry::from_bytes(b"").is_err());
        assert!(Entry::from_bytes(b"X").is_err());
        assert!(Entry::from_bytes(b"S123").is_err());
    }
}
