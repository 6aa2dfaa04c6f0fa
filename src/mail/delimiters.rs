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
//! message with such look-alikes defused (one byte changed) and the inner multiparts
//! closed before the delimiter of an enclosing one, so the parser's parts are a client's.
//!
//! The walk reads header sections as mail-parser does (where a field starts and where the
//! section ends), so both agree on which multiparts are open. Where they could still
//! disagree (a `Content-Type` past [`MAX_FIELD`], more than [`MAX_OPEN`] multiparts open)
//! the message is given to the parser as it is.

use memchr::memmem::Finder;
use std::borrow::Cow;

/// Multiparts open at once that are followed, and multiparts that never began (dormant)
/// that are kept; past either the message is left as it is.
const MAX_OPEN: usize = 32;
/// Bytes of a part's `Content-Type` field read; past them the message is left as it is
/// (a boundary cut short would make every real delimiter a look-alike).
const MAX_FIELD: usize = 64 * 1024;
/// What a defused look-alike's last byte may become: the first of these its boundary
/// does not hold, so no look-alike can hold the changed byte.
const DEFUSED: &[u8] = b"_~#!*^%$@&";

/// `raw` as the parser should read it: each `--boundary` of the innermost open multipart
/// that is not a whole delimiter line has its last byte changed, and before a delimiter of
/// an enclosing multipart the inner ones that began are closed as written. Borrowed when
/// nothing needed a change, which is all well-formed mail, or when the walk could not
/// follow the message as the parser does.
pub fn as_clients_read(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memmem::find(raw, b"--").is_none() {
        return Cow::Borrowed(raw);
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
    match walk.out {
        Some(mut out) if !walk.lost => {
            out.extend_from_slice(&raw[walk.copied..]);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(raw),
    }
}

/// `--boundary` and how to find and defuse it.
struct Needle {
    bytes: Vec<u8>,
    finder: Finder<'static>,
    defused: u8,
}

impl Needle {
    /// Where to change `line` so that it holds no look-alike: the last byte of each, and
    /// what it becomes. Every look-alike overlapping one holds its last byte, which none
    /// can hold once changed, so the search goes on past it: one pass over the line.
    fn look_alikes(&self, line: &[u8]) -> Vec<(usize, u8)> {
        let mut found = Vec::new();
        if memchr::memmem::find(line, b"--").is_none() {
            return found;
        }
        let mut from = 0;
        while let Some(i) = self.finder.find(&line[from..]) {
            let last = from + i + self.bytes.len() - 1;
            found.push((last, self.defused));
            from = last + 1;
        }
        found
    }

    fn new(boundary: &[u8]) -> Option<Needle> {
        let mut bytes = b"--".to_vec();
        bytes.extend_from_slice(boundary);
        let defused = *DEFUSED.iter().find(|b| !boundary.contains(b))?;
        let finder = Finder::new(&bytes).into_owned();
        Some(Needle {
            bytes,
            finder,
            defused,
        })
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
    Other,
}

enum State {
    /// A header section: the last `Content-Type` value, the field the last line was part
    /// of, and whether the section is a part of a digest.
    Headers {
        content_type: Option<Vec<u8>>,
        field: Field,
        in_digest: bool,
    },
    /// A preamble, a leaf part's body or an epilogue.
    Body,
}

impl State {
    fn headers(in_digest: bool) -> State {
        State::Headers {
            content_type: None,
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
        if line.starts_with(b"--") {
            if let Some((level, close)) = self.delimiter(line) {
                if self.dormant_in(line) {
                    // A delimiter the parser would take for a dormant multipart's.
                    self.lost = true;
                    return;
                }
                self.close_inner(at, line, level);
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
        // The dormant boundaries' look-alikes anywhere, the innermost's in text: the
        // parser seeks only that one there.
        let mut look_alikes = Vec::new();
        for needle in &self.dormant {
            look_alikes.extend(needle.look_alikes(line));
        }
        if let (State::Body, Some(open)) = (&self.state, self.open.last()) {
            look_alikes.extend(open.needle.look_alikes(line));
        }
        self.defuse(at, look_alikes);
        match &mut self.state {
            State::Body => {}
            State::Headers {
                content_type,
                field,
                in_digest,
            } => match header_line(line, field, content_type) {
                HeaderLine::Field => {}
                HeaderLine::TooLong => self.lost = true,
                HeaderLine::End => {
                    let content_type = content_type.take();
                    let in_digest = *in_digest;
                    self.state = self.after_headers(content_type, in_digest);
                }
            },
        }
    }

    /// Which open multipart `line` delimits (innermost first), and whether it closes it.
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = &line[2..];
        self.open
            .iter()
            .enumerate()
            .rev()
            .find_map(|(level, open)| {
                let after = rest.strip_prefix(open.boundary())?;
                let (close, after) = match after.strip_prefix(b"--") {
                    Some(after) => (true, after),
                    None => (false, after),
                };
                after
                    .iter()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .then_some((level, close))
            })
    }

    /// Closes, as written before `line` at `at`, the multiparts inside the one at `level`
    /// that began; one that never began becomes dormant (a closing delimiter written for
    /// it would be its first, which the parser would open it at).
    fn close_inner(&mut self, at: usize, line: &[u8], level: usize) {
        if level + 1 >= self.open.len() {
            return;
        }
        let line_end: &[u8] = if line.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        let mut closing = Vec::new();
        for inner in self.open.drain(level + 1..).rev() {
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
        if !closing.is_empty() {
            self.copy_to(at).extend_from_slice(&closing);
        }
    }

    /// Whether a dormant boundary's look-alike is in `line`.
    fn dormant_in(&self, line: &[u8]) -> bool {
        self.dormant.iter().any(|d| d.finder.find(line).is_some())
    }

    /// Writes each `(offset in the line, byte)` of a line at `at`, in offset order.
    fn defuse(&mut self, at: usize, mut look_alikes: Vec<(usize, u8)>) {
        look_alikes.sort_unstable();
        look_alikes.dedup_by_key(|(offset, _)| *offset);
        for (offset, byte) in look_alikes {
            self.copy_to(at + offset).push(byte);
            self.copied = at + offset + 1;
        }
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

    /// What follows a header section with this `Content-Type`.
    fn after_headers(&mut self, content_type: Option<Vec<u8>>, in_digest: bool) -> State {
        let Some(content_type) = content_type else {
            // A digest's part without a type is a message, as the parser reads it.
            return if in_digest {
                State::headers(false)
            } else {
                State::Body
            };
        };
        let Some((kind, subtype, boundary)) = super::mime::type_and_boundary(&content_type) else {
            return State::Body;
        };
        match (kind.as_str(), boundary) {
            ("multipart", Some(boundary)) if !boundary.is_empty() => {
                let needle = match Needle::new(&boundary) {
                    Some(needle) if self.open.len() < MAX_OPEN => needle,
                    _ => {
                        self.lost = true;
                        return State::Body;
                    }
                };
                self.open.push(Open {
                    needle,
                    digest: subtype == "digest",
                    started: false,
                });
                State::Body
            }
            ("message", _) if matches!(subtype.as_str(), "rfc822" | "global") => {
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
    /// A `Content-Type` longer than [`MAX_FIELD`].
    TooLong,
}

/// Reads a header line as mail-parser does: a line that starts with a blank continues the
/// field before it; otherwise blanks are skipped, and a line of nothing else ends the
/// section (a whitespace-only line after a line with no field name too); a field's name
/// is what comes before its `:`, blanks left out, and a line with no `:` holds no field.
fn header_line(line: &[u8], field: &mut Field, content_type: &mut Option<Vec<u8>>) -> HeaderLine {
    let folded = matches!(line.first(), Some(b' ' | b'\t'));
    if folded && *field != Field::None {
        if *field == Field::ContentType {
            if let Some(value) = content_type.as_mut() {
                if value.len() + line.len() > MAX_FIELD {
                    return HeaderLine::TooLong;
                }
                value.extend_from_slice(line);
            }
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
    if name == b"content-type" {
        if value.len() > MAX_FIELD {
            return HeaderLine::TooLong;
        }
        *field = Field::ContentType;
        *content_type = Some(value.to_vec());
    } else {
        *field = Field::Other;
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
        let read = as_clients_read(LOOK_ALIKE.as_bytes());
        assert_eq!(attachment_names(&read), ["invoice.js"]);
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.contains("See attached x--_--\r\n"), "{text}");
    }

    #[test]
    fn a_longer_word_is_not_a_delimiter_and_overlapping_look_alikes_are_all_defused() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--bogus\r\n---b\r\n\
            --b\r\nContent-Type: application/zip; name=\"a.zip\"\r\n\r\nPK\r\n--b--\r\n";
        let read = as_clients_read(raw.as_bytes());
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(
            text.contains("hello\r\n--_ogus\r\n---_\r\n--b\r\n"),
            "{text}"
        );
        assert_eq!(attachment_names(&read), ["a.zip"]);
        // A boundary that overlaps itself: every look-alike in a run of dashes.
        let raw = "Content-Type: multipart/mixed; boundary=\"--\"\r\n\r\n\
            ----\r\n\r\n------x\r\n------\r\n";
        let read = as_clients_read(raw.as_bytes());
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.ends_with("\r\n---_--x\r\n------\r\n"), "{text}");
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
        let read = as_clients_read(raw.as_bytes());
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
        assert!(matches!(as_clients_read(raw.as_bytes()), Cow::Borrowed(_)));
        let single = "Subject: diff\r\n\r\n--- a/x\r\n+++ b/x\r\n";
        assert!(matches!(
            as_clients_read(single.as_bytes()),
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
        let read = as_clients_read(raw.as_bytes());
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.contains("x--_--\r\n--c\r\n"), "{text}");
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
        assert!(matches!(as_clients_read(raw.as_bytes()), Cow::Borrowed(_)));
        let late = raw.replace("MZ\r\n", "MZ x--c\r\n");
        assert!(
            attachment_names(late.as_bytes()).is_empty(),
            "the parser's reading"
        );
        let read = as_clients_read(late.as_bytes());
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
        assert!(matches!(as_clients_read(raw.as_bytes()), Cow::Borrowed(_)));
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
        let read = as_clients_read(digest.as_bytes());
        assert!(
            String::from_utf8_lossy(&read).contains("x--d_--"),
            "{read:?}"
        );
        // A blank-only line after a line with no field name ends the section.
        let blank = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nX-Junk\r\n \r\nSee x--b--\r\n\
            --b\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--b--\r\n";
        let read = as_clients_read(blank.as_bytes());
        assert_eq!(attachment_names(&read), ["evil.exe"]);
        // A field whose first line starts with a blank is a field.
        let indented = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\n Content-Type: multipart/alternative; boundary=\"c\"\r\n\r\n\
            --c\r\nContent-Type: text/plain\r\n\r\nx--c--\r\n\
            --c\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nMZ\r\n--c--\r\n--b--\r\n";
        let read = as_clients_read(indented.as_bytes());
        assert!(
            String::from_utf8_lossy(&read).contains("x--_--"),
            "{read:?}"
        );
        assert_eq!(attachment_names(&read), ["evil.exe"]);
    }
}
