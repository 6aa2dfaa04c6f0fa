//! The parsed message all rule kinds share: headers (decoded and raw), rendered body lines,
//! raw body parts, URIs and the full raw bytes, built once per message with mail-parser.
//!
//! Shapes follow SpamAssassin so its rules keep their meaning: `body` is the Subject followed
//! by paragraphs of the decoded text parts (HTML rendered to text), each paragraph one line with
//! whitespace collapsed; `rawbody` is each decoded text part as is (HTML markup kept); `uri`
//! is every URL from text and from HTML attributes (`href`, `src`, ...), `www.` hosts also as
//! `http://`; `full` is the message exactly as received.

use super::model::{AddrPart, HeaderSource, HeaderTarget, Instance};
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};
use regex::Regex;
use std::sync::LazyLock;

/// Rendered text kept per body part (SpamAssassin's `body_part_scan_size`).
pub const BODY_PART_SCAN_SIZE: usize = 50_000;
/// Decoded text kept per raw body part (SpamAssassin's `rawbody_part_scan_size`).
pub const RAWBODY_PART_SCAN_SIZE: usize = 500_000;
/// Longest body line; longer paragraphs are split at a space (SpamAssassin's `MAX_BODY_LINE_LENGTH`).
pub const MAX_BODY_LINE_LENGTH: usize = 2048;
/// Most URIs kept per message.
pub const MAX_URIS: usize = 1000;
/// Deepest nesting of attached `message/rfc822` parts that is read.
const MAX_NESTING: usize = 8;

/// One top-level header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name as written.
    pub name: String,
    /// The value as received: leading whitespace and the final line break removed, folding kept (`\n`).
    pub raw: String,
    /// The value unfolded and RFC 2047-decoded.
    pub decoded: String,
}

/// A part carrying a file: every non-text part, and text parts that name a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPart {
    /// The file names it gives: `Content-Disposition` filename, then a different
    /// `Content-Type` name (senders disagree with themselves to fool one of the readers).
    pub names: Vec<String>,
    /// Declared `type/subtype`, lower-case; empty when there is none.
    pub content_type: String,
    /// The content, transfer encoding removed.
    pub data: Vec<u8>,
}

/// A message prepared once for every rule kind.
#[derive(Debug, Clone, Default)]
pub struct MessageView {
    headers: Vec<HeaderField>,
    body_lines: Vec<String>,
    body_joined: String,
    rawbody_parts: Vec<String>,
    uris: Vec<String>,
    uris_joined: String,
    full: Vec<u8>,
    attachments: Vec<AttachmentPart>,
}

impl MessageView {
    /// Parses raw RFC 5322 bytes. Never fails: unparsable input is treated as a headerless body.
    pub fn parse(raw: &[u8]) -> MessageView {
        let mut view = MessageView {
            full: raw.to_vec(),
            ..MessageView::default()
        };
        let parsed = MessageParser::default().parse(raw);
        let mut rendered: Vec<String> = Vec::new();
        let mut html_raw: Vec<String> = Vec::new();
        match &parsed {
            Some(message) => {
                view.headers = read_headers(message);
                collect_parts(
                    message,
                    0,
                    &mut rendered,
                    &mut view.rawbody_parts,
                    &mut html_raw,
                );
                collect_attachments(message, 0, &mut view.attachments);
            }
            None => {
                let text = normalize_newlines(&String::from_utf8_lossy(raw));
                rendered.push(truncate(&text, BODY_PART_SCAN_SIZE).to_string());
                view.rawbody_parts
                    .push(truncate(&text, RAWBODY_PART_SCAN_SIZE).to_string());
            }
        }
        let subject = view
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("subject"))
            .map(|h| h.decoded.clone())
            .unwrap_or_default();
        view.body_lines = render_body_lines(&subject, &rendered);
        view.body_joined = view.body_lines.join("\n");
        view.uris = extract_uris(&rendered, &view.rawbody_parts, &html_raw);
        view.uris_joined = view.uris.join("\n");
        view
    }

    /// The top-level header fields in order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// Body lines: the Subject first, then one line per paragraph (see the module doc).
    pub fn body_lines(&self) -> &[String] {
        &self.body_lines
    }

    /// The body lines joined with `\n`.
    pub fn body_text(&self) -> &str {
        &self.body_joined
    }

    /// Each decoded text part (HTML markup kept), line breaks normalised to `\n`.
    pub fn rawbody_parts(&self) -> &[String] {
        &self.rawbody_parts
    }

    /// URIs found in text and HTML parts, deduplicated, in order of appearance.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The URIs joined with `\n`.
    pub(crate) fn uris_text(&self) -> &str {
        &self.uris_joined
    }

    /// The whole message as received.
    pub fn full(&self) -> &[u8] {
        &self.full
    }

    /// The parts carrying files, attached messages included, in order.
    pub fn attachments(&self) -> &[AttachmentPart] {
        &self.attachments
    }

    /// Whether a header with this name (case-insensitive) is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// The text a `header` rule sees for `target`, or `None` when the header is missing
    /// (the caller then uses `[if-unset: ...]` or the empty string, as SpamAssassin does).
    /// Several instances or addresses are joined with `\n`.
    pub fn header_text(&self, target: &HeaderTarget) -> Option<String> {
        let names: &[&str] = match &target.source {
            HeaderSource::Named(n) => return self.named(&[n.as_str()], target),
            HeaderSource::ToCc => &["to", "cc"],
            HeaderSource::MessageId => &["message-id", "resent-message-id", "x-message-id"],
            HeaderSource::EnvelopeFrom => {
                let from_return_path = self.named(&["return-path"], target);
                return from_return_path.or_else(|| self.named(&["x-envelope-from"], target));
            }
            HeaderSource::All => {
                if self.headers.is_empty() {
                    return None;
                }
                let lines: Vec<String> = self
                    .headers
                    .iter()
                    .map(|h| {
                        let v = if target.raw { &h.raw } else { &h.decoded };
                        format!("{}: {}", h.name, v)
                    })
                    .collect();
                return Some(lines.join("\n"));
            }
        };
        self.named(names, target)
    }

    fn named(&self, names: &[&str], target: &HeaderTarget) -> Option<String> {
        let mut fields: Vec<&HeaderField> = self
            .headers
            .iter()
            .filter(|h| names.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
            .collect();
        if fields.is_empty() {
            return None;
        }
        match target.instance {
            Instance::All => {}
            Instance::First => fields.truncate(1),
            Instance::Last => {
                let last = fields.len() - 1;
                fields.drain(..last);
            }
        }
        let values: Vec<String> = match target.part {
            AddrPart::Whole => fields
                .iter()
                .map(|h| {
                    if target.raw {
                        h.raw.clone()
                    } else {
                        h.decoded.clone()
                    }
                })
                .collect(),
            AddrPart::Addr | AddrPart::Name => fields
                .iter()
                .flat_map(|h| addresses(&h.raw, target.part))
                .collect(),
        };
        Some(values.join("\n"))
    }
}

/// Addresses or display names of one header value.
fn addresses(raw: &str, part: AddrPart) -> Vec<String> {
    let mut bytes = raw.as_bytes().to_vec();
    bytes.extend_from_slice(b"\r\n");
    let mut out = Vec::new();
    if let HeaderValue::Address(list) = MessageStream::new(&bytes).parse_address() {
        for addr in list.iter() {
            let value = match part {
                AddrPart::Addr => addr.address().map(str::to_string),
                _ => addr.name().map(|n| {
                    let n = n.trim();
                    n.strip_prefix('\'')
                        .and_then(|n| n.strip_suffix('\''))
                        .unwrap_or(n)
                        .to_string()
                }),
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                out.push(v);
            }
        }
    }
    if out.is_empty() && part == AddrPart::Addr {
        // Return-Path: <> and odd values: SpamAssassin falls back to the bare text.
        let bare = raw
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if !bare.is_empty() && !bare.contains(char::is_whitespace) {
            out.push(bare.to_string());
        }
    }
    out
}

fn read_headers(message: &Message<'_>) -> Vec<HeaderField> {
    let raw_message: &[u8] = message.raw_message.as_ref();
    let Some(root) = message.parts.first() else {
        return Vec::new();
    };
    root.headers
        .iter()
        .map(|h| {
            let start = h.offset_start as usize;
            let end = (h.offset_end as usize).min(raw_message.len());
            let bytes = raw_message.get(start..end).unwrap_or_default();
            let raw = normalize_newlines(&String::from_utf8_lossy(bytes));
            let raw = raw.trim_start().trim_end_matches(['\n', '\r']).to_string();
            let decoded = match MessageStream::new(bytes).parse_unstructured() {
                HeaderValue::Text(t) => t.trim().to_string(),
                HeaderValue::TextList(list) => list.join(" "),
                _ => unfold(&raw),
            };
            HeaderField {
                name: h.name.as_str().to_string(),
                raw,
                decoded,
            }
        })
        .collect()
}

fn unfold(raw: &str) -> String {
    raw.split('\n')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Collects rendered text, raw text and raw HTML of every text leaf, descending into attached messages.
fn collect_parts(
    message: &Message<'_>,
    depth: usize,
    rendered: &mut Vec<String>,
    raw: &mut Vec<String>,
    html_raw: &mut Vec<String>,
) {
    for part in &message.parts {
        match &part.body {
            PartType::Text(text) => {
                let is_calendar = part
                    .headers
                    .iter()
                    .find(|h| h.name.as_str().eq_ignore_ascii_case("content-type"))
                    .and_then(|h| h.value.as_content_type())
                    .is_some_and(|ct| {
                        ct.c_subtype
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case("calendar"))
                    });
                if is_calendar {
                    continue;
                }
                let text = normalize_newlines(text);
                rendered.push(truncate(&text, BODY_PART_SCAN_SIZE).to_string());
                raw.push(truncate(&text, RAWBODY_PART_SCAN_SIZE).to_string());
            }
            PartType::Html(html) => {
                let html = normalize_newlines(html);
                let html = truncate(&html, RAWBODY_PART_SCAN_SIZE).to_string();
                let text = html_to_text(&html);
                rendered.push(truncate(&text, BODY_PART_SCAN_SIZE).to_string());
                raw.push(html.clone());
                html_raw.push(html);
            }
            PartType::Message(inner) if depth < MAX_NESTING => {
                collect_parts(inner, depth + 1, rendered, raw, html_raw);
            }
            _ => {}
        }
    }
}

/// Collects the parts carrying files, descending into attached messages.
fn collect_attachments(message: &Message<'_>, depth: usize, out: &mut Vec<AttachmentPart>) {
    use mail_parser::MimeHeaders;
    for part in &message.parts {
        let mut names: Vec<String> = Vec::new();
        let disposition = part
            .content_disposition()
            .and_then(|d| d.attribute("filename"));
        let type_name = part.content_type().and_then(|t| t.attribute("name"));
        for name in [disposition, type_name].into_iter().flatten() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let carries_file = match &part.body {
            PartType::Binary(_) | PartType::InlineBinary(_) => true,
            PartType::Text(_) | PartType::Html(_) | PartType::Message(_) => !names.is_empty(),
            PartType::Multipart(_) => false,
        };
        if carries_file {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{sub}", ct.ctype()),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_default()
                .to_ascii_lowercase();
            out.push(AttachmentPart {
                names,
                content_type,
                data: part.contents().to_vec(),
            });
        }
        if let PartType::Message(inner) = &part.body {
            if depth < MAX_NESTING {
                collect_attachments(inner, depth + 1, out);
            }
        }
    }
}

fn normalize_newlines(s: &str) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n")
    } else {
        s.to_string()
    }
}

/// The longest prefix of `s` not over `max` bytes, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// SpamAssassin's body shape: parts joined, paragraphs (blank-line separated) become single
/// lines with whitespace collapsed; the Subject is the first line; long lines are split.
fn render_body_lines(subject: &str, parts: &[String]) -> Vec<String> {
    let text = parts.join("\n");
    let mut lines = vec![subject.split_whitespace().collect::<Vec<_>>().join(" ")];
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, lines: &mut Vec<String>| {
        if paragraph.is_empty() {
            return;
        }
        let joined = paragraph
            .iter()
            .flat_map(|l| l.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ");
        paragraph.clear();
        split_long(&joined, lines);
    };
    for line in text.split('\n') {
        if line.trim().is_empty() {
            flush(&mut paragraph, &mut lines);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut lines);
    lines
}

fn split_long(mut line: &str, out: &mut Vec<String>) {
    while line.len() > MAX_BODY_LINE_LENGTH {
        let head = truncate(line, MAX_BODY_LINE_LENGTH);
        let cut = match head.rfind(' ') {
            Some(i) if i > 0 => i + 1,
            _ => head.len().max(1),
        };
        let cut = if line.is_char_boundary(cut) {
            cut
        } else {
            head.len()
        };
        out.push(line[..cut].to_string());
        line = &line[cut..];
    }
    if !line.is_empty() {
        out.push(line.to_string());
    }
}

static TEXT_URI: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:(?:https?|ftp)://[^\s<>"'`(){}\[\]\\^|]+|mailto:[^\s<>"'`(){}\[\]\\]+|www\d{0,3}\.[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:[/?#:][^\s<>"'`(){}\[\]\\^|]*)?)"#,
    )
    .ok()
});

static HTML_ATTR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:href|src|action|background|cite|longdesc)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"#,
    )
    .ok()
});

fn extract_uris(rendered: &[String], raw: &[String], html: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    let mut push = |uri: &str, out: &mut Vec<String>| {
        let uri = uri
            .trim()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"', ')', '>']);
        if uri.is_empty() || uri.starts_with('#') || out.len() >= MAX_URIS {
            return;
        }
        let uri = uri.replace("&amp;", "&");
        let lower = uri.to_ascii_lowercase();
        let mut forms = vec![uri.clone()];
        if lower.starts_with("www") {
            forms.push(format!("http://{uri}"));
        }
        for form in forms {
            if seen.insert(form.clone()) {
                out.push(form);
            }
        }
    };
    if let Some(attr) = HTML_ATTR.as_ref() {
        for doc in html {
            for caps in attr.captures_iter(doc) {
                if let Some(m) = caps.get(1).or(caps.get(2)).or(caps.get(3)) {
                    push(m.as_str(), &mut out);
                }
            }
        }
    }
    if let Some(re) = TEXT_URI.as_ref() {
        for text in rendered.iter().chain(raw.iter()) {
            for m in re.find_iter(text) {
                push(m.as_str(), &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, part: AddrPart) -> HeaderTarget {
        HeaderTarget {
            source: HeaderSource::Named(name.into()),
            raw: false,
            part,
            instance: Instance::All,
            if_unset: None,
        }
    }

    #[test]
    fn headers_decoded_raw_and_addresses() {
        let raw = b"From: \"Foo Bar\" <foo@example.com>\r\nTo: a@x.test, B <b@y.test>\r\nSubject: =?utf-8?q?Hello_W=C3=B6rld?=\r\nReceived: one\r\nReceived: two\r\n\r\nbody\r\n";
        let v = MessageView::parse(raw);
        assert_eq!(
            v.header_text(&target("subject", AddrPart::Whole)).unwrap(),
            "Hello Wörld"
        );
        let mut t = target("subject", AddrPart::Whole);
        t.raw = true;
        assert_eq!(v.header_text(&t).unwrap(), "=?utf-8?q?Hello_W=C3=B6rld?=");
        assert_eq!(
            v.header_text(&target("from", AddrPart::Addr)).unwrap(),
            "foo@example.com"
        );
        assert_eq!(
            v.header_text(&target("from", AddrPart::Name)).unwrap(),
            "Foo Bar"
        );
        assert_eq!(
            v.header_text(&target("to", AddrPart::Addr)).unwrap(),
            "a@x.test\nb@y.test"
        );
        assert_eq!(
            v.header_text(&target("received", AddrPart::Whole)).unwrap(),
            "one\ntwo"
        );
        let mut last = target("received", AddrPart::Whole);
        last.instance = Instance::Last;
        assert_eq!(v.header_text(&last).unwrap(), "two");
        assert!(v
            .header_text(&target("x-missing", AddrPart::Whole))
            .is_none());
    }

    #[test]
    fn body_lines_follow_spamassassin() {
        let raw =
            b"Subject: Hi  there\r\n\r\nline one\r\ncontinues   here\r\n\r\n\r\nsecond para\r\n";
        let v = MessageView::parse(raw);
        assert_eq!(
            v.body_lines(),
            &["Hi there", "line one continues here", "second para"]
        );
    }

    #[test]
    fn uris_from_text_and_html() {
        let raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>see <a href=\"http://evil.test/a?b=1&amp;c=2\">here</a> or www.other.test/x.</p>\r\n";
        let v = MessageView::parse(raw);
        assert!(v.uris().iter().any(|u| u == "http://evil.test/a?b=1&c=2"));
        assert!(v.uris().iter().any(|u| u == "http://www.other.test/x"));
        assert!(v.body_text().contains("see here or"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for raw in [
            &b""[..],
            b"\xff\xfe\x00",
            b"no headers at all",
            b":\r\n\r\n",
        ] {
            let v = MessageView::parse(raw);
            assert_eq!(v.full(), raw);
        }
        let long = "a".repeat(10_000);
        let v = MessageView::parse(format!("Subject: x\r\n\r\n{long}\r\n").as_bytes());
        assert!(v
            .body_lines()
            .iter()
            .all(|l| l.len() <= MAX_BODY_LINE_LENGTH));
    }
}
