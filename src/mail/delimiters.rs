//! Multipart delimiters as RFC 2046 §5.1.1 and mail clients read them, for mail-parser,
//! which reads them otherwise.
//!
//! A delimiter is a whole line: `--`, the boundary, `--` when it closes the multipart, and
//! blanks. mail-parser takes `--boundary` anywhere in a line and as the start of a longer
//! word, and seeks only the innermost multipart's boundary, where Thunderbird, Python's
//! `email` and SpamAssassin end a part at the delimiter of any enclosing multipart. So the
//! text `x--b--` ended a multipart whose next part, `invoice.js`, a client still shows, and
//! a nested multipart left unclosed swallowed every part after it (review): neither the
//! attachment policy nor clamd saw the file. [`as_clients_read`] gives the parser the
//! message with such look-alikes defused (one dash changed) and the inner multiparts
//! closed before the delimiter of an enclosing one, so the parser's parts are a client's.

use aho_corasick::AhoCorasick;
use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;
use std::borrow::Cow;

/// Multiparts open at once that are followed; deeper ones are left as the parser reads
/// them (real mail nests a handful, and each open one costs a search automaton).
const MAX_OPEN: usize = 32;
/// Bytes of a part's `Content-Type` field kept (a boundary past them is not read).
const MAX_FIELD: usize = 64 * 1024;
/// What the second dash of a defused look-alike becomes: not a dash, so neither this nor
/// an overlapping look-alike can start a delimiter there.
const DEFUSED: u8 = b'_';

/// `raw` as the parser should read it: every `--boundary` of the innermost open multipart
/// that is not a whole delimiter line has its second dash changed, and before a delimiter
/// of an enclosing multipart the inner ones are closed as written. Borrowed when nothing
/// needed a change, which is all well-formed mail.
pub fn as_clients_read(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memmem::find(raw, b"--").is_none() {
        return Cow::Borrowed(raw);
    }
    let mut walk = Walk {
        open: Vec::new(),
        state: State::headers(),
        edits: Vec::new(),
    };
    let mut start = 0;
    while start < raw.len() {
        let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i + 1);
        walk.line(start, &raw[start..end]);
        start = end;
    }
    apply(raw, walk.edits)
}

/// A multipart being read: its boundary and the search for `--boundary` in its text.
struct Open {
    boundary: Vec<u8>,
    /// `None` when the automaton could not be built (a boundary too big for it).
    look_alikes: Option<AhoCorasick>,
}

enum State {
    /// A header section: the last `Content-Type` value, and whether the last line began it
    /// (a folded line continues it).
    Headers {
        content_type: Option<Vec<u8>>,
        in_content_type: bool,
    },
    /// A preamble, a leaf part's body or an epilogue.
    Body,
}

impl State {
    fn headers() -> State {
        State::Headers {
            content_type: None,
            in_content_type: false,
        }
    }
}

enum Edit {
    /// Change the byte at this offset to [`DEFUSED`].
    Defuse(usize),
    /// Insert these bytes before this offset.
    Insert(usize, Vec<u8>),
}

struct Walk {
    open: Vec<Open>,
    state: State,
    edits: Vec<Edit>,
}

impl Walk {
    fn line(&mut self, at: usize, line: &[u8]) {
        if line.starts_with(b"--") {
            if let Some((level, close)) = self.delimiter(line) {
                self.close_inner(at, line, level);
                if close {
                    self.open.pop();
                    self.state = State::Body;
                } else {
                    self.state = State::headers();
                }
                return;
            }
        }
        match &mut self.state {
            State::Body => self.defuse(at, line),
            State::Headers {
                content_type,
                in_content_type,
            } => {
                if line == b"\n" || line == b"\r\n" {
                    let content_type = content_type.take();
                    self.state = self.after_headers(content_type);
                } else {
                    read_field(line, content_type, in_content_type);
                }
            }
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
                let after = rest.strip_prefix(open.boundary.as_slice())?;
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

    /// Closes, as written before `line` at `at`, the multiparts inside the one at `level`.
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
        for inner in self.open[level + 1..].iter().rev() {
            closing.extend_from_slice(b"--");
            closing.extend_from_slice(&inner.boundary);
            closing.extend_from_slice(b"--");
            closing.extend_from_slice(line_end);
        }
        self.edits.push(Edit::Insert(at, closing));
        self.open.truncate(level + 1);
    }

    /// Defuses the innermost boundary's look-alikes in a line of text: the parser seeks
    /// only that boundary here.
    fn defuse(&mut self, at: usize, line: &[u8]) {
        let Some(look_alikes) = self.open.last().and_then(|o| o.look_alikes.as_ref()) else {
            return;
        };
        if memchr::memmem::find(line, b"--").is_none() {
            return;
        }
        for found in look_alikes.find_overlapping_iter(line) {
            self.edits.push(Edit::Defuse(at + found.start() + 1));
        }
    }

    /// What follows a header section with this `Content-Type`.
    fn after_headers(&mut self, content_type: Option<Vec<u8>>) -> State {
        let Some((kind, subtype, boundary)) = content_type.as_deref().and_then(parse_type) else {
            return State::Body;
        };
        match (kind.as_str(), boundary) {
            ("multipart", Some(boundary)) if !boundary.is_empty() => {
                if self.open.len() < MAX_OPEN {
                    let mut needle = b"--".to_vec();
                    needle.extend_from_slice(&boundary);
                    self.open.push(Open {
                        boundary,
                        look_alikes: AhoCorasick::new([needle]).ok(),
                    });
                }
                State::Body
            }
            ("message", _) if matches!(subtype.as_str(), "rfc822" | "global") => State::headers(),
            _ => State::Body,
        }
    }
}

/// Reads a header line into the last `Content-Type` value.
fn read_field(line: &[u8], content_type: &mut Option<Vec<u8>>, in_content_type: &mut bool) {
    const NAME: &[u8] = b"content-type";
    if line.first().is_some_and(|b| matches!(b, b' ' | b'\t')) {
        if *in_content_type {
            if let Some(value) = content_type.as_mut() {
                let room = MAX_FIELD.saturating_sub(value.len());
                value.extend_from_slice(&line[..line.len().min(room)]);
            }
        }
        return;
    }
    let value = line
        .get(..NAME.len())
        .filter(|name| name.eq_ignore_ascii_case(NAME))
        .and_then(|_| line[NAME.len()..].trim_ascii_start().strip_prefix(b":"));
    *in_content_type = value.is_some();
    if let Some(value) = value {
        *content_type = Some(value[..value.len().min(MAX_FIELD)].to_vec());
    }
}

/// Type, subtype (lower case) and boundary of a `Content-Type` value, as mail-parser
/// reads them.
fn parse_type(value: &[u8]) -> Option<(String, String, Option<Vec<u8>>)> {
    let mut value = value.to_vec();
    if !value.ends_with(b"\n") {
        value.extend_from_slice(b"\r\n");
    }
    match MessageStream::new(&value).parse_content_type() {
        HeaderValue::ContentType(ct) => Some((
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
            ct.attribute("boundary").map(|b| b.as_bytes().to_vec()),
        )),
        _ => None,
    }
}

/// `raw` with `edits` (in offset order) made.
fn apply(raw: &[u8], edits: Vec<Edit>) -> Cow<'_, [u8]> {
    if edits.is_empty() {
        return Cow::Borrowed(raw);
    }
    let inserted: usize = edits
        .iter()
        .map(|e| match e {
            Edit::Insert(_, bytes) => bytes.len(),
            Edit::Defuse(_) => 0,
        })
        .sum();
    let mut out = Vec::with_capacity(raw.len() + inserted);
    let mut copied = 0;
    for edit in edits {
        match edit {
            Edit::Defuse(at) => {
                out.extend_from_slice(&raw[copied..at]);
                out.push(DEFUSED);
                copied = at + 1;
            }
            Edit::Insert(at, bytes) => {
                out.extend_from_slice(&raw[copied..at]);
                out.extend_from_slice(&bytes);
                copied = at;
            }
        }
    }
    out.extend_from_slice(&raw[copied..]);
    Cow::Owned(out)
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
        assert!(text.contains("See attached x-_b--\r\n"), "{text}");
    }

    #[test]
    fn a_longer_word_is_not_a_delimiter_and_overlapping_look_alikes_are_all_defused() {
        let raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--bogus\r\n---b\r\n\
            --b\r\nContent-Type: application/zip; name=\"a.zip\"\r\n\r\nPK\r\n--b--\r\n";
        let read = as_clients_read(raw.as_bytes());
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(
            text.contains("hello\r\n-_bogus\r\n--_b\r\n--b\r\n"),
            "{text}"
        );
        assert_eq!(attachment_names(&read), ["a.zip"]);
        // A boundary that overlaps itself: every look-alike in a run of dashes.
        let raw = "Content-Type: multipart/mixed; boundary=\"--\"\r\n\r\n\
            ----\r\n\r\n------x\r\n------\r\n";
        let read = as_clients_read(raw.as_bytes());
        let text = String::from_utf8_lossy(&read).into_owned();
        assert!(text.ends_with("\r\n-___--x\r\n------\r\n"), "{text}");
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
        assert!(text.contains("x-_c--\r\n--c\r\n"), "{text}");
    }
}
