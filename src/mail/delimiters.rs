//! Multipart delimiters as RFC 2046 §5.1.1 and mail clients read them, for mail-parser,
//! which reads them otherwise.
//!
//! A delimiter is a whole line: `--`, the boundary, `--` when it closes the multipart, and
//! blanks. mail-parser takes `--boundary` anywhere in a line and as the start of a longer
//! word, seeks a multipart's first delimiter through the whole rest of the message, and
//! then seeks only the innermost multipart's boundary, where Thunderbird, Python's `email`
//! and SpamAssassin end a part at the delimiter of any enclosing multipart. So the text
//! `x--b--` ended a multipart whose next part, `invoice.js`, a client still shows, and a
//! nested multipart left unclosed swallowed every part after it (review): neither the
//! attachment policy nor clamd saw the file. [`as_clients_read`] gives the parser the
//! message with such look-alikes defused (one byte changed) and the structure made
//! explicit where the parser would read it otherwise (inner multiparts closed before an
//! enclosing delimiter, a first delimiter that closes given an empty part, a header
//! section ended before a delimiter), so the parser's parts are a client's.
//!
//! The walk reads header sections as mail-parser does (where a field starts and where the
//! section ends), so both agree on which multiparts are open. Where they could still
//! disagree (a `Content-Type` past [`MAX_FIELD`], more than [`MAX_OPEN`] multiparts open
//! or dormant) the message is given to the parser as it is, and the caller is told.

use memchr::memmem::Finder;
use std::borrow::Cow;

/// Multiparts open at once that are followed, and multiparts that never began (dormant)
/// that are kept; past either the walk stops following the message.
const MAX_OPEN: usize = 32;
/// Bytes of a part's `Content-Type` (or `Content-Transfer-Encoding`) field read; past them
/// the walk stops following the message (a boundary cut short would make every real
/// delimiter a look-alike).
const MAX_FIELD: usize = 64 * 1024;
/// What a defused look-alike's last byte becomes: a byte no boundary holds (the parser
/// gives boundaries as text, and 0xFF is never in UTF-8), so no look-alike of any
/// boundary, open or dormant, can hold it.
const DEFUSED: u8 = 0xFF;

/// The message as the parser should read it.
#[derive(Debug)]
pub struct AsRead<'r> {
    /// Each `--boundary` of a multipart the parser seeks there that is not a whole
    /// delimiter line has its last byte changed, and the structure is written out where
    /// the parser would read it otherwise. Borrowed when nothing needed a change, which is
    /// all well-formed mail, or when the walk could not follow the message.
    pub bytes: Cow<'r, [u8]>,
    /// The walk followed the whole message. When not, `bytes` is the message as it came,
    /// which the parser may read as holding fewer parts than a client shows: callers judge
    /// the file names in its raw fields too.
    pub followed: bool,
}

/// `raw` as the parser should read it (see [`AsRead`]).
pub fn as_clients_read(raw: &[u8]) -> AsRead<'_> {
    if memchr::memmem::find(raw, b"--").is_none() {
        return AsRead {
            bytes: Cow::Borrowed(raw),
            followed: true,
        };
    }
    let mut walk = Walk {
        raw,
        out: None,
        copied: 0,
        open: Vec::new(),
        dormant: Vec::new(),
        state: State::headers(false),
        lost: false,
    };
    let mut start = 0;
    while start < raw.len() && !walk.lost {
        let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i + 1);
        walk.line(start, end);
        start = end;
    }
    let bytes = match walk.out {
        Some(mut out) if !walk.lost => {
            out.extend_from_slice(&raw[walk.copied..]);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(raw),
    };
    AsRead {
        bytes,
        followed: !walk.lost,
    }
}

/// `--boundary` and how to find it.
struct Needle {
    bytes: Vec<u8>,
    finder: Finder<'static>,
}

impl Needle {
    fn new(boundary: &[u8]) -> Needle {
        let mut bytes = b"--".to_vec();
        bytes.extend_from_slice(boundary);
        let finder = Finder::new(&bytes).into_owned();
        Needle { bytes, finder }
    }

    /// Changes the last byte of each look-alike in `line` in `copy` (made at the first).
    /// Every look-alike overlapping one holds its last byte, which none can hold once
    /// changed, so the search goes on past it: one pass over the line.
    fn defuse(&self, line: &[u8], copy: &mut Option<Vec<u8>>) {
        let mut from = 0;
        while let Some(i) = self.finder.find(&line[from..]) {
            let last = from + i + self.bytes.len() - 1;
            copy.get_or_insert_with(|| line.to_vec())[last] = DEFUSED;
            from = last + 1;
        }
    }
}

/// A multipart being read.
struct Open {
    needle: Needle,
    /// `multipart/digest`: a part without a `Content-Type` is a message.
    digest: bool,
    /// Its first delimiter was seen.
    started: bool,
}

impl Open {
    fn boundary(&self) -> &[u8] {
        &self.needle.bytes[2..]
    }
}

/// The field a header line belongs to, as mail-parser splits a section into fields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// No field: the section's start, or a line mail-parser read no field name in.
    None,
    ContentType,
    TransferEncoding,
    Other,
}

/// What a header section says of its body: the last `Content-Type` and
/// `Content-Transfer-Encoding` values, as the parser takes them.
#[derive(Default)]
struct Fields {
    content_type: Option<Vec<u8>>,
    transfer_encoding: Option<Vec<u8>>,
}

enum State {
    /// A header section: what it says so far, the field the last line was part of, and
    /// whether the section is a part of a digest.
    Headers {
        fields: Fields,
        field: Field,
        in_digest: bool,
    },
    /// A preamble, a leaf part's body or an epilogue.
    Body,
}

impl State {
    fn headers(in_digest: bool) -> State {
        State::Headers {
            fields: Fields::default(),
            field: Field::None,
            in_digest,
        }
    }
}

struct Walk<'r> {
    raw: &'r [u8],
    /// The message with the changes so far, up to `copied` of `raw`; `None` until the
    /// first change.
    out: Option<Vec<u8>>,
    copied: usize,
    open: Vec<Open>,
    /// Boundaries of multiparts that ended before their first delimiter: the parser seeks
    /// that delimiter through the rest of the message, so their look-alikes are defused
    /// everywhere after.
    dormant: Vec<Needle>,
    state: State,
    /// The walk can no longer follow the message as the parser does.
    lost: bool,
}

impl Walk<'_> {
    fn line(&mut self, at: usize, end: usize) {
        let raw = self.raw;
        let line = &raw[at..end];
        let line_end: &[u8] = if line.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        if line.starts_with(b"--") {
            if let Some((level, close)) = self.delimiter(line) {
                if self.dormant_in(line) {
                    // A delimiter the parser would take for a dormant multipart's.
                    self.lost = true;
                    return;
                }
                if let State::Headers {
                    fields, in_digest, ..
                } = &mut self.state
                {
                    // The parser reads a delimiter inside a header section as a line of
                    // that section and goes on reading fields past it: the section is
                    // ended before it, as a client ends it (review).
                    let (fields, in_digest) = (std::mem::take(fields), *in_digest);
                    self.copy_to(at).extend_from_slice(line_end);
                    self.state = self.after_headers(fields, in_digest);
                }
                self.close_inner(at, line_end, level);
                if close && !self.open[level].started {
                    // The parser opens a multipart at its first delimiter whatever it
                    // says: a closing one gets an empty part to close (review).
                    let mut opening = self.open[level].needle.bytes.clone();
                    opening.extend_from_slice(line_end);
                    opening.extend_from_slice(line_end);
                    self.copy_to(at).extend_from_slice(&opening);
                }
                self.open[level].started = true;
                if close {
                    self.open.pop();
                    self.state = State::Body;
                } else {
                    self.state = State::headers(self.open[level].digest);
                }
                return;
            }
        }
        self.defuse(at, end);
        match &mut self.state {
            State::Body => {}
            State::Headers {
                fields,
                field,
                in_digest,
            } => match header_line(line, field, fields) {
                HeaderLine::Field => {}
                HeaderLine::TooLong => self.lost = true,
                HeaderLine::End => {
                    let (fields, in_digest) = (std::mem::take(fields), *in_digest);
                    self.state = self.after_headers(fields, in_digest);
                }
            },
        }
    }

    /// Defuses the look-alikes the parser seeks in the line `at..end`: the dormant
    /// boundaries' anywhere; in text, the innermost multipart's, and while it has not
    /// begun its parent's too (the parser reads it as a leaf its parent's delimiter ends).
    fn defuse(&mut self, at: usize, end: usize) {
        let line = &self.raw[at..end];
        if memchr::memmem::find(line, b"--").is_none() {
            return;
        }
        let mut copy = None;
        for needle in &self.dormant {
            needle.defuse(line, &mut copy);
        }
        if let State::Body = self.state {
            let mut sought = self.open.iter().rev();
            if let Some(innermost) = sought.next() {
                innermost.needle.defuse(line, &mut copy);
                if !innermost.started {
                    if let Some(parent) = sought.next() {
                        parent.needle.defuse(line, &mut copy);
                    }
                }
            }
        }
        if let Some(copy) = copy {
            self.copy_to(at).extend_from_slice(&copy);
            self.copied = end;
        }
    }

    /// Which open multipart `line` delimits (innermost first), and whether it closes it.
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        self.open
            .iter()
            .enumerate()
            .rev()
            .find_map(|(level, open)| {
                super::mime::delimits(line, open.boundary()).map(|close| (level, close))
            })
    }

    /// Closes, as written before the line at `at`, the multiparts inside the one at
    /// `level` that began; one that never began becomes dormant (a closing delimiter
    /// written for it would be its first, which the parser would open it at).
    fn close_inner(&mut self, at: usize, line_end: &[u8], level: usize) {
        if level + 1 >= self.open.len() {
            return;
        }
        let mut closing = Vec::new();
        let inner: Vec<Open> = self.open.drain(level + 1..).rev().collect();
        for inner in inner {
            if inner.started {
                closing.extend_from_slice(&inner.needle.bytes);
                closing.extend_from_slice(b"--");
                closing.extend_from_slice(line_end);
            } else if self.dormant.len() < MAX_OPEN {
                self.dormant.push(inner.needle);
            } else {
                // Each dormant boundary is sought in every later line.
                self.lost = true;
            }
        }
        if self.dormant_in(&closing) {
            // A closing line the parser would take for a dormant multipart's first.
            self.lost = true;
        }
        if !closing.is_empty() {
            self.copy_to(at).extend_from_slice(&closing);
        }
    }

    /// Whether a dormant boundary's look-alike is in `bytes`.
    fn dormant_in(&self, bytes: &[u8]) -> bool {
        self.dormant.iter().any(|d| d.finder.find(bytes).is_some())
    }

    /// The output with `raw` copied up to `upto`, made at the first change.
    fn copy_to(&mut self, upto: usize) -> &mut Vec<u8> {
        let raw = self.raw;
        let out = self
            .out
            .get_or_insert_with(|| Vec::with_capacity(raw.len() + 64));
        out.extend_from_slice(&raw[self.copied..upto]);
        self.copied = upto;
        out
    }

    /// What follows a header section that says `fields`.
    fn after_headers(&mut self, fields: Fields, in_digest: bool) -> State {
        let typed = fields
            .content_type
            .as_deref()
            .and_then(super::mime::type_and_boundary);
        let Some((kind, subtype, boundary)) = typed else {
            // A digest's part without a type (or with one the parser cannot read) is a
            // message, as the parser reads it.
            return if in_digest {
                State::headers(false)
            } else {
                State::Body
            };
        };
        match (kind.as_str(), boundary) {
            ("multipart", Some(boundary)) if !boundary.is_empty() => {
                if self.open.len() >= MAX_OPEN {
                    self.lost = true;
                    return State::Body;
                }
                self.open.push(Open {
                    needle: Needle::new(&boundary),
                    digest: subtype == "digest",
                    started: false,
                });
                State::Body
            }
            // A multipart whose boundary the parser does not read (`multipart/mixed,
            // boundary="b"`, which Thunderbird reads as `;`): the parser sees one body
            // where a client lists the parts (attachment probe: `invoice.exe` went
            // unjudged), so the caller judges the names in it.
            ("multipart", _) => {
                self.lost = true;
                State::Body
            }
            // An attached message sent encoded is decoded and read apart by the parser;
            // here its body is text that the parent's delimiter ends.
            ("message", _)
                if matches!(subtype.as_str(), "rfc822" | "global")
                    && !fields
                        .transfer_encoding
                        .as_deref()
                        .is_some_and(super::mime::encodes) =>
            {
                State::headers(false)
            }
            _ => State::Body,
        }
    }
}

/// What a header line was.
enum HeaderLine {
    /// A field's line, or a line the parser reads no field in.
    Field,
    /// The end of the section.
    End,
    /// A field read past [`MAX_FIELD`].
    TooLong,
}

/// Reads a header line as mail-parser does: a line that starts with a blank continues the
/// field before it; otherwise blanks are skipped, and a line of nothing else ends the
/// section (a whitespace-only line after a line with no field name too); a field's name
/// is what comes before its `:`, blanks left out, and a line with no `:` holds no field.
fn header_line(line: &[u8], field: &mut Field, fields: &mut Fields) -> HeaderLine {
    let folded = matches!(line.first(), Some(b' ' | b'\t'));
    if folded && *field != Field::None {
        let value = match field {
            Field::ContentType => fields.content_type.as_mut(),
            Field::TransferEncoding => fields.transfer_encoding.as_mut(),
            _ => None,
        };
        if let Some(value) = value {
            if value.len() + line.len() > MAX_FIELD {
                return HeaderLine::TooLong;
            }
            value.extend_from_slice(line);
        }
        return HeaderLine::Field;
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return HeaderLine::End;
    }
    let mut name = Vec::new();
    let mut value = None;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b':' if !name.is_empty() => {
                value = Some(&line[i + 1..]);
                break;
            }
            b'\n' => break,
            b if b == b':' || b.is_ascii_whitespace() => {}
            b => name.push(b.to_ascii_lowercase()),
        }
    }
    let Some(value) = value else {
        *field = Field::None;
        return HeaderLine::Field;
    };
    let slot = match name.as_slice() {
        b"content-type" => Some((Field::ContentType, &mut fields.content_type)),
        b"content-transfer-encoding" => {
            Some((Field::TransferEncoding, &mut fields.transfer_encoding))
        }
        _ => None,
    };
    match slot {
        Some(_) if value.len() > MAX_FIELD => return HeaderLine::TooLong,
        Some((kind, slot)) => {
            *field = kind;
            *slot = Some(value.to_vec());
        }
        None => *field = Field::Other,
    }
    HeaderLine::Field
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    /// The file names mail-parser finds in `raw`, all levels.
    fn attachment_names(raw: &[u8]) -> Vec<String> {
        let message = MessageParser::default().parse(raw).unwrap();
        message
            .parts
            .iter()
            .filter_map(|p| p.attachment_name().map(str::to_string))
            .collect()
    }

    const LOOK_ALIKE: &str = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nSee attached x--b--\r\n\
        --b\r\nContent-Type: application/octet-stream; name=\"invoice.js\"\r\n\r\n\
        WScript.Echo(1)\r\n--b--\r\n";

    #[test]
    fn a_boundary_inside_a_line_no_longer_ends_the_multipart() {
        assert!(
            attachment_names(LOOK_ALIKE.as_bytes()).is_empty(),
            "the parser's reading"
        );
        let read = as_clients_read(LOOK_ALIKE.as_bytes()).bytes;
        assert_eq!(attachment_names(&read), ["invoice.js"]);
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.contains("See attached x--\u{FFFD}--\r\n"), "{text}");
    }

    #[test]
    fn a_longer_word_is_not_a_delimiter_and_overlapping_look_alikes_are_all_defused() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--bogus\r\n---b\r\n\
            --b\r\nContent-Type: application/zip; name=\"a.zip\"\r\n\r\nPK\r\n--b--\r\n";
        let read = as_clients_read(raw.as_bytes()).bytes;
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(
            text.contains("hello\r\n--\u{FFFD}ogus\r\n---\u{FFFD}\r\n--b\r\n"),
            "{text}"
        );
        assert_eq!(attachment_names(&read), ["a.zip"]);
        // A boundary that overlaps itself: every look-alike in a run of dashes.
        let raw = "Content-Type: multipart/mixed; boundary=\"--\"\r\n\r\n\
            ----\r\n\r\n------x\r\n------\r\n";
        let read = as_clients_read(raw.as_bytes()).bytes;
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.ends_with("\r\n---\u{FFFD}--x\r\n------\r\n"), "{text}");
    }

    #[test]
    fn an_unclosed_inner_multipart_ends_at_the_enclosing_delimiter() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: multipart/alternative; boundary=\"c\"\r\n\r\n\
            --c\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
            --c\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n\
            --b\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n\
            --b--\r\n";
        assert!(
            attachment_names(raw.as_bytes()).is_empty(),
            "the parser's reading"
        );
        let read = as_clients_read(raw.as_bytes()).bytes;
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.contains("<p>html</p>\r\n--c--\r\n--b\r\n"), "{text}");
        assert_eq!(attachment_names(&read), ["evil.exe"]);
    }

    #[test]
    fn well_formed_mail_is_not_copied() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble -- b\r\n\
            --b \r\nContent-Type: text/plain\r\n\r\nsigned\r\n-- \r\nme --c\r\n\
            --b\r\nContent-Type: message/rfc822\r\n\r\n\
            Content-Type: multipart/alternative;\r\n boundary=\"c\"\r\n\r\n\
            --c\r\nContent-Type: text/plain\r\n\r\nx\r\n--c--\r\n\
            --b--  \r\nepilogue --b\r\n";
        assert!(matches!(
            as_clients_read(raw.as_bytes()).bytes,
            Cow::Borrowed(_)
        ));
        let single = "Subject: diff\r\n\r\n--- a/x\r\n+++ b/x\r\n";
        assert!(matches!(
            as_clients_read(single.as_bytes()).bytes,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn look_alikes_inside_an_attached_message_are_defused_too() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\
            Content-Type: multipart/mixed; boundary=\"c\"\r\n\r\n\
            --c\r\nContent-Type: text/plain\r\n\r\nx--c--\r\n\
            --c\r\nContent-Type: application/x-msdownload; name=\"a.scr\"\r\n\r\nMZ\r\n\
            --c--\r\n--b--\r\n";
        let read = as_clients_read(raw.as_bytes()).bytes;
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.contains("x--\u{FFFD}--\r\n--c\r\n"), "{text}");
    }

    /// Review of the fix: a closing delimiter written for an inner multipart that never
    /// began was its first delimiter to the parser, which opened it there and lost the
    /// parts after it; and the parser seeks that first delimiter through the rest of the
    /// message, so a look-alike anywhere later opened it too.
    #[test]
    fn an_inner_multipart_that_never_began_is_not_closed_and_its_look_alikes_are_defused() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: multipart/alternative; boundary=\"c\"\r\n\r\nhidden text\r\n\
            --b\r\nContent-Type: application/zip; name=\"a.zip\"\r\n\r\nPK\r\n\
            --b\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n\
            --b--\r\n";
        assert_eq!(attachment_names(raw.as_bytes()), ["a.zip", "evil.exe"]);
        assert!(matches!(
            as_clients_read(raw.as_bytes()).bytes,
            Cow::Borrowed(_)
        ));
        let late = raw.replace("MZ\r\n", "MZ x--c\r\n");
        assert!(
            attachment_names(late.as_bytes()).is_empty(),
            "the parser's reading"
        );
        let read = as_clients_read(late.as_bytes()).bytes;
        assert_eq!(attachment_names(&read), ["a.zip", "evil.exe"]);
    }

    /// Review of the fix: where the walk cannot read the message as the parser does, it
    /// changes nothing: a `Content-Type` cut at the bound would give a boundary cut short,
    /// and every real delimiter would have been defused as a look-alike.
    #[test]
    fn a_content_type_past_the_bound_leaves_the_message_as_it_is() {
        let padding = format!("\r\n x=\"{}\";", "a".repeat(70_000));
        let raw = format!(
            "Content-Type: multipart/mixed;{padding}\r\n boundary=\"abcdefgh\"\r\n\r\n\
             --abcdefgh\r\nContent-Type: text/plain\r\n\r\nx--abcdefgh--\r\n--abcdefgh--\r\n"
        );
        let read = as_clients_read(raw.as_bytes());
        assert!(matches!(read.bytes, Cow::Borrowed(_)));
        assert!(!read.followed);
    }

    /// Review of the fix: parts of a digest without a `Content-Type` are messages to the
    /// parser, and header sections end and fields begin where the parser says.
    #[test]
    fn digests_and_odd_header_sections_are_read_as_the_parser_reads_them() {
        let digest = "Content-Type: multipart/digest; boundary=\"d\"\r\n\r\n\
            --d\r\n\r\nContent-Type: multipart/mixed; boundary=\"d2\"\r\n\r\n\
            --d2\r\nContent-Type: text/plain\r\n\r\nx--d2--\r\n\
            --d2\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n\
            --d2--\r\n--d--\r\n";
        let read = as_clients_read(digest.as_bytes()).bytes;
        assert!(
            String::from_utf8_lossy(&read).contains("x--d\u{FFFD}--"),
            "{read:?}"
        );
        // A blank-only line after a line with no field name ends the section.
        let blank = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nX-Junk\r\n \r\nSee x--b--\r\n\
            --b\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--b--\r\n";
        let read = as_clients_read(blank.as_bytes()).bytes;
        assert_eq!(attachment_names(&read), ["evil.exe"]);
        // A field whose first line starts with a blank is a field.
        let indented = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\n Content-Type: multipart/alternative; boundary=\"c\"\r\n\r\n\
            --c\r\nContent-Type: text/plain\r\n\r\nx--c--\r\n\
            --c\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--c--\r\n--b--\r\n";
        let read = as_clients_read(indented.as_bytes()).bytes;
        assert!(
            String::from_utf8_lossy(&read).contains("x--\u{FFFD}--"),
            "{read:?}"
        );
        assert_eq!(attachment_names(&read), ["evil.exe"]);
    }

    /// Second review of the fix: the parent's look-alikes while the innermost multipart
    /// has not begun (the parser reads it as a leaf its parent's delimiter ends); a first
    /// delimiter that closes; a delimiter inside a header section; an attached message
    /// sent base64, whose body is no header section.
    #[test]
    fn structures_the_parser_reads_otherwise_are_written_out() {
        let file = "--b\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--b--\r\n";
        let unbegun = format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: multipart/mixed; boundary=\"c\"\r\n\r\nSee x--b--\r\n{file}"
        );
        assert!(
            attachment_names(unbegun.as_bytes()).is_empty(),
            "the parser's reading"
        );
        assert_eq!(
            attachment_names(&as_clients_read(unbegun.as_bytes()).bytes),
            ["evil.exe"]
        );
        let closing_first = format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: multipart/mixed; boundary=\"c\"\r\n\r\n--c--\r\n{file}"
        );
        let read = as_clients_read(closing_first.as_bytes()).bytes;
        assert!(String::from_utf8_lossy(&read).contains("\r\n\r\n--c\r\n\r\n--c--\r\n--b\r\n"));
        assert_eq!(attachment_names(&read), ["evil.exe"]);
        let in_headers = format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n{file}"
        );
        let read = as_clients_read(in_headers.as_bytes()).bytes;
        assert!(String::from_utf8_lossy(&read).contains("text/plain\r\n\r\n--b\r\n"));
        assert_eq!(attachment_names(&read), ["evil.exe"]);
        // Read as headers, the encoded body hid the look-alike from the walk.
        let encoded = format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             U3ViamVjdDogaGkNCg0KaGkNCg==\r\nx--b--\r\n{file}"
        );
        assert_eq!(
            attachment_names(&as_clients_read(encoded.as_bytes()).bytes),
            ["evil.exe"]
        );
    }

    /// Second review of the fix: a walk that stops following the message says so, so the
    /// caller can judge the names in its raw fields.
    #[test]
    fn a_walk_that_cannot_follow_says_so() {
        let mut raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_string();
        for i in 0..40 {
            raw.push_str(&format!(
                "--b\r\nContent-Type: multipart/mixed; boundary=\"u{i}\"\r\n\r\n"
            ));
        }
        raw.push_str("--b\r\nContent-Type: text/plain\r\n\r\nx--b--\r\n--b--\r\n");
        let read = as_clients_read(raw.as_bytes());
        assert!(!read.followed);
        assert!(matches!(read.bytes, Cow::Borrowed(_)));
    }
}
