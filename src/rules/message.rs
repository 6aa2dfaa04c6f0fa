//! The parsed message all rule kinds share: headers (decoded and raw), rendered body lines,
//! raw body parts, URIs and the full raw bytes, built once per message with mail-parser.
//!
//! Shapes follow SpamAssassin so its rules keep their meaning: `body` is the Subject followed
//! by paragraphs of the decoded text parts (HTML rendered to text), each paragraph one line with
//! whitespace collapsed; `rawbody` is each decoded text part as is (HTML markup kept); `uri`
//! is every URL from text and from HTML attributes (`href`, `src`, ...), `www.` hosts also as
//! `http://`; `full` is the message exactly as received.
//!
//! Longer than most files here (~680 lines): the view's fields and the one pass that fills
//! them belong together, and splitting the pass would scatter SpamAssassin's shapes.

use super::html_text::{decode_entities, render_html};
use super::model::{AddrPart, HeaderSource, HeaderTarget, Instance};
use super::uri_forms::{as_listed, uri_forms};
use crate::mail::lenient;
use crate::mail::qp_shape::QpShape;
use crate::mail::render_kind::{render_kind, RenderKind};
use crate::mail::url::both_ends;
use mail_parser::parsers::MessageStream;
use mail_parser::{
    ContentType, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
    PartType,
};
use regex::Regex;
use std::sync::LazyLock;

/// Default rendered text scanned at the head (and again at the tail) of each body part
/// (SpamAssassin's `body_part_scan_size`).
pub const BODY_PART_SCAN_SIZE: usize = 50_000;
/// Default decoded text scanned at the head (and tail) of each raw body part
/// (SpamAssassin's `rawbody_part_scan_size`).
pub const RAWBODY_PART_SCAN_SIZE: usize = 500_000;
/// Longest body line; longer paragraphs are split at a space (SpamAssassin's `MAX_BODY_LINE_LENGTH`).
pub const MAX_BODY_LINE_LENGTH: usize = 2048;
/// Most URIs kept per message.
pub const MAX_URIS: usize = 1000;
/// Entries of the `uri` list at most: the links as written and the other forms of them.
const MAX_URI_FORMS: usize = 4 * MAX_URIS;
/// Default deepest nesting of attached `message/rfc822` parts that is read.
pub const MAX_NESTING: usize = 8;

/// How much of each part a view scans (`[server.limits]` `scan_part_bytes`,
/// `scan_raw_part_bytes`, `scan_nesting_depth`, `scan_mime_parts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Rendered text scanned at the head and again at the tail of each text part.
    pub part_bytes: usize,
    /// Decoded text (HTML markup kept) scanned at the head and tail of each part.
    pub raw_part_bytes: usize,
    /// Deepest `message/rfc822` nesting read; deeper parts are not scanned.
    pub nesting_depth: usize,
    /// Most MIME parts parsed; the message is cut before the next one.
    pub mime_parts: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            part_bytes: BODY_PART_SCAN_SIZE,
            raw_part_bytes: RAWBODY_PART_SCAN_SIZE,
            nesting_depth: MAX_NESTING,
            mime_parts: crate::mail::mime::DEFAULT_MAX_PARTS,
        }
    }
}

/// One top-level header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name as written.
    pub name: String,
    /// The value as received: leading whitespace and the final line break removed, folding kept (`\n`).
    pub raw: String,
    /// The value unfolded and RFC 2047-decoded.
    pub decoded: String,
    /// The whole field as received, name, colon and blanks included (folding kept as
    /// `\n`, no final line break): what `ALL:raw` reads, as SpamAssassin's pristine header
    /// (`Subject:x` with no blank after the colon is a sign of a hand-rolled mailer).
    pub pristine: String,
}

/// The attachments decoded from a whole message (see [`MessageView::attachments_of`]).
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// The parts carrying files, in order.
    pub attachments: Vec<AttachmentPart>,
    /// The message had more MIME parts than the limit; the later ones were not looked at.
    pub too_many_parts: bool,
    /// A part repeats its MIME type or transfer encoding (see
    /// [`MessageView::repeats_mime_fields`]).
    pub repeats_mime_fields: bool,
}

/// A part carrying a file: every non-text part, every part whose disposition says
/// `attachment`, and text parts that name a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPart {
    /// The file names it gives: `Content-Disposition` filename, then a different
    /// `Content-Type` name (senders disagree with themselves to fool one of the readers).
    pub names: Vec<String>,
    /// Declared `type/subtype`, lower-case; empty when there is none.
    pub content_type: String,
    /// The content, transfer encoding removed (leniently, never charset-decoded).
    pub data: Vec<u8>,
    /// A mail client may read the part otherwise than `names`, `content_type` and `data`
    /// say: its MIME fields are repeated, or its transfer encoding is labelled sloppily or
    /// twice. A virus scanner should get the whole message and decode it itself.
    pub ambiguous: bool,
    /// The file's bytes were not decoded (a file past the cap of its TNEF or uuencoded
    /// part): `data` is empty, only the names tell what it is, and a virus scanner should
    /// get the whole message.
    pub content_left_out: bool,
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
    truncated: bool,
    too_deep: bool,
    too_many_parts: bool,
    repeats_mime_fields: bool,
    qp_shape: QpShape,
    /// The SMTP envelope sender, when the view judges a message in a session.
    envelope_from: Option<String>,
}

/// What a view collects from the parts, with the limits that apply.
struct Collector<'l> {
    limits: &'l ScanLimits,
    rendered: Vec<String>,
    /// The rendered text of every leaf part joined as SpamAssassin joins it: a newline
    /// before each leaf (text or not) once some text is collected.
    body: String,
    raw: Vec<String>,
    html_raw: Vec<String>,
    truncated: bool,
    too_deep: bool,
    qp_shape: QpShape,
}

impl MessageView {
    /// Parses raw RFC 5322 bytes with the default [`ScanLimits`]. Never fails: unparsable
    /// input is treated as a headerless body.
    pub fn parse(raw: &[u8]) -> MessageView {
        Self::parse_with(raw, &ScanLimits::default())
    }

    /// Parses raw RFC 5322 bytes, scanning what `limits` allow of each part.
    pub fn parse_with(raw: &[u8], limits: &ScanLimits) -> MessageView {
        let mut view = MessageView {
            full: raw.to_vec(),
            ..MessageView::default()
        };
        let mut c = Collector {
            limits,
            rendered: Vec::new(),
            body: String::new(),
            raw: Vec::new(),
            html_raw: Vec::new(),
            truncated: false,
            too_deep: false,
            qp_shape: QpShape::default(),
        };
        let (parsed_bytes, cut) = crate::mail::mime::cut_to_parts(raw, limits.mime_parts);
        view.too_many_parts = cut;
        let as_read = crate::mail::delimiters::as_clients_read(parsed_bytes);
        let parsed = MessageParser::default().parse(&as_read.bytes);
        match &parsed {
            Some(message) => {
                view.headers = read_headers(message);
                c.parts(message, 0);
                collect_attachments(message, 0, limits.nesting_depth, &mut view.attachments);
                named_past_the_cut(raw, parsed_bytes.len(), &mut view.attachments);
                named_if_not_followed(&as_read, &mut view.attachments);
                view.repeats_mime_fields = repeats_mime_fields(message, 0, limits.nesting_depth);
            }
            None => c.text(&normalize_newlines(&String::from_utf8_lossy(raw))),
        }
        let Collector {
            rendered,
            body,
            raw: rawbody_parts,
            html_raw,
            truncated,
            too_deep,
            qp_shape,
            ..
        } = c;
        view.qp_shape = qp_shape;
        view.rawbody_parts = rawbody_parts;
        view.truncated = truncated;
        view.too_deep = too_deep;
        // The last Subject, as SpamAssassin 4.0.1 puts it on the first body line (checked
        // with `spamassassin -t` on a message with two).
        let subject = view
            .headers
            .iter()
            .rfind(|h| h.name.eq_ignore_ascii_case("subject"))
            .map(|h| h.decoded.clone())
            .unwrap_or_default();
        view.body_lines = render_body_lines(&subject, &body);
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

    /// What `rawbody` rules read: every raw part cut into pieces of one to two
    /// [`MAX_BODY_LINE_LENGTH`], as SpamAssassin cuts them. A pattern matches inside one
    /// piece, and a backtracking one gets its step limit per piece, not per part.
    pub fn rawbody_pieces(&self) -> Vec<&[u8]> {
        let mut pieces = Vec::new();
        for part in &self.rawbody_parts {
            cut_into_pieces(part.as_bytes(), &mut pieces);
        }
        pieces
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

    /// A part was longer than the scan limits allow at head and tail, so its middle was
    /// not scanned.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Attached messages were nested deeper than the scan limit; the deeper ones were not
    /// scanned.
    pub fn too_deep(&self) -> bool {
        self.too_deep
    }

    /// How its quoted-printable parts (of the scanned sample) were written, together.
    pub fn qp_shape(&self) -> QpShape {
        self.qp_shape
    }

    /// The message had more MIME parts than the scan limit; the later ones were not
    /// parsed.
    pub fn too_many_parts(&self) -> bool {
        self.too_many_parts
    }

    /// A part (the root, a multipart container, any leaf, down to the nesting limit)
    /// repeats its `Content-Type` or `Content-Transfer-Encoding`. The parser reads the
    /// last field, mail clients the first: `multipart/mixed; boundary=a` then `text/plain`
    /// made the whole message one text part here and a set of attachments in a client,
    /// so no attachment was judged. Every part and file here may be what a client never
    /// shows, and what it shows may be missing.
    pub fn repeats_mime_fields(&self) -> bool {
        self.repeats_mime_fields
    }

    /// Sets the SMTP envelope sender (`MAIL FROM`, no brackets), which the `EnvelopeFrom`
    /// pseudo-header then reads: at the MX the message's own `Return-Path` or
    /// `X-Envelope-From` are whatever the sender wrote. A null sender (a bounce) makes it
    /// empty: falling back to those headers would let a bounce name any sender.
    pub fn set_envelope_from(&mut self, address: &str) {
        self.envelope_from = Some(address.to_string());
    }

    /// Marks the view as built from a sample that left content out.
    pub fn mark_truncated(&mut self, truncated: bool, too_deep: bool) {
        self.truncated |= truncated;
        self.too_deep |= too_deep;
    }

    /// The parts carrying files of raw RFC 5322 bytes, attached messages included down to
    /// `max_depth`, without the rest of a view: for a message kept on disk, whose view is
    /// built from a sample that leaves attachment bytes out.
    pub fn attachments_of(raw: &[u8], max_depth: usize, max_parts: usize) -> Decoded {
        let whole = raw;
        let (raw, cut) = crate::mail::mime::cut_to_parts(raw, max_parts);
        let mut attachments = Vec::new();
        let mut repeats = false;
        let as_read = crate::mail::delimiters::as_clients_read(raw);
        if let Some(message) = MessageParser::default().parse(&as_read.bytes) {
            collect_attachments(&message, 0, max_depth, &mut attachments);
            repeats = repeats_mime_fields(&message, 0, max_depth);
        }
        named_if_not_followed(&as_read, &mut attachments);
        named_past_the_cut(whole, raw.len(), &mut attachments);
        Decoded {
            attachments,
            too_many_parts: cut,
            repeats_mime_fields: repeats,
        }
    }

    /// The parts carrying files, attached messages included, in order.
    pub fn attachments(&self) -> &[AttachmentPart] {
        &self.attachments
    }

    /// The header fields with this name (case-insensitive), top first.
    pub fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a HeaderField> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    }

    /// Whether a header with this name (case-insensitive) is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.fields(name).next().is_some()
    }

    /// Whether the (pseudo-)header of `target` is present, as `exists:` tests it: `ToCc`
    /// when a To or a Cc header is, `EnvelopeFrom` when the envelope sender is recorded.
    pub fn has_target(&self, target: &HeaderTarget) -> bool {
        match (&target.source, target.part) {
            (HeaderSource::Named(name), AddrPart::Whole) => self.has_header(name),
            _ => self.header_text(target).is_some(),
        }
    }

    /// The text a `header` rule sees for `target`, or `None` when the header is missing
    /// (the caller then uses `[if-unset: ...]` or the empty string, as SpamAssassin does).
    /// Several instances or addresses are joined with `\n`.
    pub fn header_text(&self, target: &HeaderTarget) -> Option<String> {
        let names: &[&str] = match &target.source {
            HeaderSource::Named(n) => return self.named(&[n.as_str()], target),
            HeaderSource::ToCc => &["to", "cc"],
            HeaderSource::MessageId => {
                // SpamAssassin's order, whatever the message's: a list that moved the real
                // id to X-Message-Id or X-Original-Message-ID is read there first. As in
                // SpamAssassin 4.0.1 (`get_header` in list context), every field of each name
                // counts, an empty one too, raw or not (its value still carries its line
                // break when SpamAssassin drops empty ones); `:first`/`:last` pick among
                // those.
                let mut found: Vec<String> = [
                    "x-message-id",
                    "resent-message-id",
                    "x-original-message-id",
                    "message-id",
                ]
                .iter()
                .flat_map(|name| self.fields(name))
                .map(|h| {
                    if target.raw {
                        // Unfolded, blanks kept, as SpamAssassin 4.0.1 gives the pseudo-
                        // header (`MESSAGEID:raw =~ /^ </` hits on `Message-ID:\r\n <id>`).
                        h.raw.replace(['\r', '\n'], "")
                    } else {
                        h.decoded.clone()
                    }
                })
                .collect();
                match target.instance {
                    Instance::All => {}
                    Instance::First => found.truncate(1),
                    Instance::Last => {
                        let last = found.pop();
                        found = last.into_iter().collect();
                    }
                }
                return (!found.is_empty()).then(|| found.join("\n"));
            }
            HeaderSource::EnvelopeFrom => {
                // The address alone, as SpamAssassin reads it; the null sender of a
                // bounce is no address, so the pseudo-header is missing (`exists:` false).
                if let Some(sender) = &self.envelope_from {
                    return (!sender.is_empty()).then(|| sender.clone());
                }
                // A stored message (`mxguard scan`): the headers the delivery wrote, their
                // address without the brackets (`Return-Path: <>` is no address).
                let mut address = target.clone();
                if address.part == AddrPart::Whole {
                    address.part = AddrPart::Addr;
                }
                // The topmost, as SpamAssassin reads it (the delivery's own).
                if address.instance == Instance::All {
                    address.instance = Instance::First;
                }
                return self.stored_envelope_sender(&address);
            }
            HeaderSource::All => {
                if self.headers.is_empty() {
                    return None;
                }
                let lines: Vec<String> = self
                    .headers
                    .iter()
                    .map(|h| {
                        if target.raw {
                            h.pristine.clone()
                        } else {
                            format!("{}: {}", h.name, h.decoded)
                        }
                    })
                    .collect();
                return Some(lines.join("\n"));
            }
        };
        self.named(names, target)
    }

    /// The envelope sender a delivery recorded in a stored message, as SpamAssassin's
    /// `get_envelope_from` finds it: the first of `X-Envelope-From`, `Envelope-Sender` and
    /// `Return-Path` present, passing over one written below a `Received` field (a relay
    /// on the way, a mailing list, may have sent the message on with a new sender); an
    /// `X-Envelope-From` below one ends the search with no sender. An empty address (the
    /// null sender) is found, and is no address.
    fn stored_envelope_sender(&self, target: &HeaderTarget) -> Option<String> {
        let first_received = self
            .headers
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case("received"));
        for name in ["x-envelope-from", "envelope-sender", "return-path"] {
            let Some(last) = self
                .headers
                .iter()
                .rposition(|h| h.name.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if first_received.is_some_and(|r| r < last) {
                if name == "x-envelope-from" {
                    return None;
                }
                continue;
            }
            return self.named(&[name], target).filter(|v| !v.is_empty());
        }
        None
    }

    fn named(&self, names: &[&str], target: &HeaderTarget) -> Option<String> {
        // In the order of `names` (SpamAssassin's `ToCc` is every To, then every Cc).
        let mut fields: Vec<&HeaderField> = names.iter().flat_map(|n| self.fields(n)).collect();
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
                .flat_map(|h| addresses(&h.raw, target.part, target.raw))
                .collect(),
        };
        if values.is_empty() && target.part != AddrPart::Whole {
            // No address (or name) at all reads as a missing header, as in SpamAssassin:
            // `exists:` does not hit and `[if-unset: ...]` applies.
            return None;
        }
        Some(values.join("\n"))
    }
}

/// Keeps an encoded word (`=?utf-8?B?...?=`) from being decoded by the address parser:
/// `From:name:raw` is the name as written.
const ENCODED_WORD_GUARD: &str = "=\u{E000}?";

/// Addresses or display names of one header value; `raw` keeps names' encoded words.
fn addresses(raw: &str, part: AddrPart, keep_encoded: bool) -> Vec<String> {
    let guarded;
    let text = if keep_encoded && part == AddrPart::Name {
        guarded = raw.replace("=?", ENCODED_WORD_GUARD);
        guarded.as_str()
    } else {
        raw
    };
    let mut bytes = text.as_bytes().to_vec();
    bytes.extend_from_slice(b"\r\n");
    let mut out = Vec::new();
    if let HeaderValue::Address(list) = MessageStream::new(&bytes).parse_address() {
        for addr in list.iter() {
            let value = match part {
                AddrPart::Addr => addr.address().map(str::to_string),
                _ => addr.name().map(|n| {
                    // Whitespace runs are one space, as SpamAssassin normalises them.
                    let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
                    n.strip_prefix('\'')
                        .and_then(|n| n.strip_suffix('\''))
                        .map_or_else(|| n.clone(), str::to_string)
                }),
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                out.push(v.replace(ENCODED_WORD_GUARD, "=?"));
            }
        }
    }
    if out.is_empty() && part == AddrPart::Addr {
        // An odd value that still names an address: SpamAssassin falls back to the bare
        // text. A group with no member (`undisclosed-recipients:;`) or a bare word names
        // none.
        let bare = raw
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if bare.contains('@') && !bare.contains(char::is_whitespace) {
            out.push(bare.to_string());
        }
    }
    out
}

/// The root header fields, split by the message's own line structure: a line that starts
/// with a blank continues a field, any other line starts one. mail-parser's offsets were
/// trusted before, and its date parser reads two bytes past a one-letter zone
/// (`Date: ... Z` then CRLF) into the next line: that field (and, through a `;` in it, the
/// ones after) vanished from every header rule and `ALL`, so `Subject: FREE MONEY` scored
/// nothing (review).
fn read_headers(message: &Message<'_>) -> Vec<HeaderField> {
    let raw_message: &[u8] = message.raw_message.as_ref();
    let mut fields = Vec::new();
    crate::mail::header_fields::for_each_field(raw_message, |unit| {
        // A line that is no field to a reader (no colon on its first line, or not one
        // name before it) is skipped, as mail-parser skips it.
        let Some((name_len, colon)) = crate::mail::header_fields::as_readers_read(unit) else {
            return;
        };
        fields.push(header_field(
            &unit[..name_len],
            &unit[..=colon],
            &unit[colon + 1..],
        ));
    });
    fields
}

/// One header field for the rules from its name as written, its name and colon as sent
/// (blanks before the colon included), and its value (everything after the colon).
fn header_field(name: &[u8], name_and_colon: &[u8], value: &[u8]) -> HeaderField {
    // 8-bit bytes that are not UTF-8 read as Windows-1252 (see `eight_bit_text`).
    let as_read = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => crate::mail::lenient::utf8_or_windows_1252(bytes),
    };
    let as_sent = normalize_newlines(&as_read(value));
    let as_sent = as_sent.trim_end_matches(['\n', '\r']);
    // As SpamAssassin's `raw_header`: everything after the colon, the blanks after it
    // included (`Date:raw =~ /^\t/`, `From:raw =~ /^\s?"\s/` read them).
    let raw = as_sent.to_string();
    let pristine = format!("{}{as_sent}", as_read(name_and_colon));
    // The name as written: rules such as `ALL =~ /\nMessage-Id: /` look at the sender's
    // spelling.
    let name = as_read(name);
    let decoded = if left_encoded(&name) {
        unfold(&raw)
    } else {
        // Encoded words anywhere, joined across blanks and split characters, as
        // SpamAssassin decodes them: mail-parser read `Vi=?utf-8?q?agra?=` as
        // "Vi agra" and a character split over two words as two U+FFFD.
        crate::mail::encoded_words::decode_unstructured(&raw)
    };
    HeaderField {
        name,
        raw,
        decoded,
        pristine,
    }
}

/// Whether SpamAssassin reads the field as written, RFC 2047 encoded words and all (its
/// `Node.pm`: trace and identifier fields, whose encoded-looking text is not meant as
/// encoded words, and the `List-` fields).
fn left_encoded(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let unprefixed = lower.strip_prefix("resent-").unwrap_or(&lower);
    matches!(unprefixed, "message-id" | "date")
        || matches!(
            lower.as_str(),
            "received" | "mime-version" | "references" | "in-reply-to"
        )
        || lower.starts_with("list-")
}

fn unfold(raw: &str) -> String {
    raw.split('\n')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Collector<'_> {
    /// Collects rendered text, raw text and raw HTML of every text leaf, descending into
    /// attached messages down to the nesting limit.
    fn parts(&mut self, message: &Message<'_>, depth: usize) {
        for part in &message.parts {
            if let Some(shape) = QpShape::of_part(message, part) {
                self.qp_shape.add(shape);
            }
            // A base64 part mail-parser could not decode (a blank line before its data,
            // stray junk), decoded as SpamAssassin does.
            if let Some((text, _)) = lenient::repaired_text(message, part) {
                self.leaf_text(render_kind(message, part), &normalize_newlines(&text));
                continue;
            }
            match &part.body {
                PartType::Text(text) | PartType::Html(text) => {
                    let kind = render_kind(message, part);
                    let text = lenient::text_as_clients_read(message, part, text);
                    self.leaf_text(kind, &normalize_newlines(&text));
                }
                PartType::Message(inner) if depth < self.limits.nesting_depth => {
                    self.parts(inner, depth + 1);
                }
                PartType::Message(_) => {
                    self.too_deep = true;
                    self.leaf(None);
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => {
                    // An `.html` file sent as `application/octet-stream` is shown, and
                    // rendered by SpamAssassin, as a page.
                    match render_kind(message, part) {
                        RenderKind::Skipped => self.leaf(None),
                        kind => {
                            let text = lenient::page_text(message, part);
                            self.leaf_text(kind, &normalize_newlines(&text));
                        }
                    }
                }
                PartType::Multipart(_) => {}
            }
        }
    }

    /// A text leaf, rendered as SpamAssassin renders `kind`.
    fn leaf_text(&mut self, kind: RenderKind, text: &str) {
        match kind {
            RenderKind::Plain => self.text(text),
            RenderKind::Html => self.html(text),
            RenderKind::RawOnly => self.raw_only(text),
            RenderKind::Skipped => self.leaf(None),
        }
    }

    /// Adds a leaf part's rendered text (`None` for a part that is not rendered) to the
    /// body text, after a newline once the body has text, as SpamAssassin does: text parts
    /// on either side of an attachment stay separate paragraphs.
    fn leaf(&mut self, rendered: Option<&str>) {
        if !self.body.is_empty() {
            self.body.push('\n');
        }
        if let Some(text) = rendered {
            self.body.push_str(text);
        }
    }

    fn html(&mut self, html: &str) {
        let (html, cut_raw) = head_and_tail(html, self.limits.raw_part_bytes);
        let (text, cut) = head_and_tail(&render_html(&html), self.limits.part_bytes);
        self.truncated |= cut_raw || cut;
        self.leaf(Some(&text));
        self.rendered.push(text);
        self.raw.push(html.clone());
        self.html_raw.push(html);
    }

    /// A text part SpamAssassin does not render: seen by `rawbody` rules, not `body` ones.
    fn raw_only(&mut self, text: &str) {
        let (raw, cut_raw) = head_and_tail(text, self.limits.raw_part_bytes);
        self.truncated |= cut_raw;
        self.leaf(None);
        self.raw.push(raw);
    }

    fn text(&mut self, text: &str) {
        let (rendered, cut) = head_and_tail(text, self.limits.part_bytes);
        let (raw, cut_raw) = head_and_tail(text, self.limits.raw_part_bytes);
        self.truncated |= cut || cut_raw;
        self.leaf(Some(&rendered));
        self.rendered.push(rendered);
        self.raw.push(raw);
    }
}

/// `s` itself when it is at most `2 * max` bytes, else its first and last `max` bytes
/// (at character boundaries) as separate paragraphs, and whether anything was left out.
fn head_and_tail(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max.saturating_mul(2) {
        return (s.to_string(), false);
    }
    let head = truncate(s, max);
    let start = s.ceil_char_boundary(s.len() - max);
    let tail = &s[start..];
    let mut out = String::with_capacity(head.len() + tail.len() + 2);
    out.push_str(head);
    // A blank line keeps the head's last and the tail's first paragraph apart.
    out.push_str("\n\n");
    out.push_str(tail);
    (out, true)
}

/// Collects the parts carrying files, descending into attached messages down to
/// `max_depth` (the scan's nesting limit).
fn collect_attachments(
    message: &Message<'_>,
    depth: usize,
    max_depth: usize,
    out: &mut Vec<AttachmentPart>,
) {
    for part in &message.parts {
        // Every value of each: a plain `filename` beside an RFC 2231 `filename*` (which
        // mail-parser keeps as a second `filename`, and which clients prefer) or a
        // repeated one each name a file a client may show; and every instance of the
        // fields (mail-parser keeps the last, mail clients read the first).
        let mut names: Vec<String> = Vec::new();
        let fields = |name: HeaderName<'static>| {
            part.headers
                .iter()
                .filter(move |h| h.name == name)
                .filter_map(|h| h.value.as_content_type())
        };
        let dispositions = fields(HeaderName::ContentDisposition).map(|d| (d, "filename"));
        let types = fields(HeaderName::ContentType).map(|t| (t, "name"));
        for (field, attribute) in dispositions.chain(types) {
            let values = field.attributes().unwrap_or_default().iter();
            for value in values.filter(|a| a.name == attribute).map(|a| &a.value) {
                if !names.iter().any(|n| n == value) {
                    names.push(value.to_string());
                }
            }
        }
        // And as the most lenient client reads the raw fields (continuations beside a
        // plain value, a comma for a semicolon, `Content-Name`): review.
        let naming = part
            .headers
            .iter()
            .filter(|h| crate::mail::file_names::may_name_a_file(h.name.as_str()));
        for header in naming {
            let raw = crate::mail::header_fields::raw_value(&message.raw_message, header);
            let value = String::from_utf8_lossy(raw);
            for name in crate::mail::file_names::in_field(header.name.as_str(), &value) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let carries_file = match &part.body {
            PartType::Binary(_) | PartType::InlineBinary(_) => true,
            // A part mail-parser could not decode (one stray character in base64) comes
            // back as text whatever it declares; a client still saves the file it
            // declares.
            PartType::Text(_) | PartType::Html(_) | PartType::Message(_) => {
                !names.is_empty()
                    || is_attachment(fields(HeaderName::ContentDisposition))
                    || (part.is_encoding_problem
                        && declares_a_file(fields(HeaderName::ContentType)))
            }
            PartType::Multipart(_) => false,
        };
        if carries_file {
            // The first type, as mail clients read it.
            let content_type = fields(HeaderName::ContentType)
                .next()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{sub}", ct.ctype()),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_default()
                .to_ascii_lowercase();
            let bytes = lenient::file_bytes(message, part);
            let repeated = |name: HeaderName<'static>| fields(name).nth(1).is_some();
            let ambiguous = repeated(HeaderName::ContentType)
                || repeated(HeaderName::ContentDisposition)
                || bytes.doubtful;
            let data = bytes.data;
            // The files in a `winmail.dat`, which Outlook shows as attachments.
            let wrapped = crate::mail::tnef::files(&data);
            // Encoding fields that disagree: every reading is judged.
            for other in bytes.other_readings {
                out.push(AttachmentPart {
                    names: names.clone(),
                    content_type: content_type.clone(),
                    data: other,
                    ambiguous,
                    content_left_out: false,
                });
            }
            out.push(AttachmentPart {
                names,
                content_type,
                data,
                ambiguous,
                content_left_out: false,
            });
            out.extend(wrapped.into_iter().map(|f| AttachmentPart {
                names: f.names,
                content_type: String::new(),
                data: f.data,
                ambiguous: false,
                content_left_out: f.data_left_out,
            }));
        }
        if holds_uuencode(part) {
            for file in crate::mail::uuencode::files(part.contents()) {
                out.push(AttachmentPart {
                    names: vec![file.name],
                    content_type: String::new(),
                    data: file.data,
                    ambiguous: false,
                    content_left_out: file.data_left_out,
                });
            }
        }
        if let PartType::Message(inner) = &part.body {
            if depth < max_depth {
                collect_attachments(inner, depth + 1, max_depth, out);
            } else {
                // Past the nesting limit nothing is parsed, but a client still shows the
                // files: their names are judged (review).
                named_only(
                    crate::mail::file_names::in_raw_fields(inner.raw_message()),
                    out,
                );
            }
        }
    }
}

/// The files named in the part of a message past the parser's part limit (`cut` bytes
/// were parsed), judged by name: a client shows them (review: a 40 KB message of 1,000
/// empty parts hid `evil.exe` behind `SCAN_PART_LIMIT`).
fn named_past_the_cut(raw: &[u8], cut: usize, out: &mut Vec<AttachmentPart>) {
    if let Some(rest) = raw.get(cut..).filter(|r| !r.is_empty()) {
        named_only(crate::mail::file_names::in_raw_fields(rest), out);
    }
}

/// The files named anywhere in a message whose MIME structure the delimiter walk could
/// not follow (the parser may read fewer parts than a client shows), judged by name.
fn named_if_not_followed(
    as_read: &crate::mail::delimiters::AsRead<'_>,
    out: &mut Vec<AttachmentPart>,
) {
    if !as_read.followed {
        named_only(crate::mail::file_names::in_raw_fields(&as_read.bytes), out);
    }
}

/// A part known by its names only (its bytes were not decoded).
fn named_only(names: Vec<String>, out: &mut Vec<AttachmentPart>) {
    if names.is_empty() {
        return;
    }
    out.push(AttachmentPart {
        names,
        content_type: String::new(),
        data: Vec::new(),
        ambiguous: false,
        content_left_out: true,
    });
}

/// Whether a part of `message` (the root and containers included, attached messages down
/// to `max_depth`) has more than one `Content-Type` or `Content-Transfer-Encoding` field.
fn repeats_mime_fields(message: &Message<'_>, depth: usize, max_depth: usize) -> bool {
    message.parts.iter().any(|part| {
        let count =
            |name: HeaderName<'static>| part.headers.iter().filter(|h| h.name == name).count();
        let inner_repeats = match &part.body {
            PartType::Message(inner) if depth < max_depth => {
                repeats_mime_fields(inner, depth + 1, max_depth)
            }
            _ => false,
        };
        count(HeaderName::ContentType) > 1
            || count(HeaderName::ContentTransferEncoding) > 1
            || repeats_boundary(part.content_type())
            || inner_repeats
    })
}

/// Whether a `Content-Type` names two boundaries: the parser takes the first, and a mail
/// client may take the last, so the parts each sees differ.
fn repeats_boundary(content_type: Option<&ContentType<'_>>) -> bool {
    content_type
        .and_then(|ct| ct.attributes())
        .is_some_and(|attrs| {
            attrs
                .iter()
                .filter(|a| a.name.eq_ignore_ascii_case("boundary"))
                .count()
                > 1
        })
}

/// Whether one of a part's `Content-Disposition` fields says `attachment`: mail clients
/// offer such a part as a file even when it names none (Outlook shows an HTML one as
/// `ATT00001.htm`, the carrier of HTML smuggling), whatever its type.
fn is_attachment<'a>(mut dispositions: impl Iterator<Item = &'a ContentType<'a>>) -> bool {
    dispositions.any(|d| d.ctype().eq_ignore_ascii_case("attachment"))
}

/// Whether the first `Content-Type` names a file's type: anything but text, a multipart
/// or a message.
fn declares_a_file<'a>(mut types: impl Iterator<Item = &'a ContentType<'a>>) -> bool {
    types.next().is_some_and(|t| {
        let top = t.ctype();
        !["text", "multipart", "message"]
            .iter()
            .any(|not_a_file| top.eq_ignore_ascii_case(not_a_file))
    })
}

/// Whether a part may hold uuencoded files a mail client shows as attachments: any text
/// part (`begin 644 invoice.exe` in the body, which no MIME reader lists), and any part
/// declaring a uuencode transfer encoding, which mail-parser leaves encoded.
fn holds_uuencode(part: &MessagePart<'_>) -> bool {
    match &part.body {
        PartType::Text(_) => true,
        PartType::Binary(_) | PartType::InlineBinary(_) => part
            .content_transfer_encoding()
            .is_some_and(|e| e.to_ascii_lowercase().contains("uu")),
        PartType::Html(_) | PartType::Message(_) | PartType::Multipart(_) => false,
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
    &s[..s.floor_char_boundary(max)]
}

/// SpamAssassin's body shape (parts already joined, see [`Collector::leaf`]): a run of newlines with only
/// whitespace between them ends a paragraph; every other whitespace run is one space (kept at
/// a paragraph's edges, as SpamAssassin keeps it); the Subject is the first line; long lines
/// are split.
fn render_body_lines(subject: &str, text: &str) -> Vec<String> {
    let mut lines = vec![subject.split_whitespace().collect::<Vec<_>>().join(" ")];
    let mut paragraph = String::new();
    // The whitespace run being read: space before its first newline, newlines, and space
    // after its last newline.
    let (mut trailing, mut newlines, mut leading) = (false, 0usize, false);
    let flush = |paragraph: &mut String, lines: &mut Vec<String>| {
        if !paragraph.is_empty() {
            split_long(paragraph, lines);
        }
        paragraph.clear();
    };
    for c in text.chars() {
        if c == '\n' {
            newlines += 1;
            leading = false;
            continue;
        }
        if c.is_whitespace() {
            if newlines == 0 {
                trailing = true;
            } else {
                leading = true;
            }
            continue;
        }
        if newlines >= 2 {
            if trailing {
                paragraph.push(' ');
            }
            flush(&mut paragraph, &mut lines);
            if leading {
                paragraph.push(' ');
            }
        } else if trailing || leading || newlines == 1 {
            paragraph.push(' ');
        }
        (trailing, newlines, leading) = (false, 0, false);
        paragraph.push(c);
    }
    if trailing || newlines == 1 {
        paragraph.push(' ');
    }
    flush(&mut paragraph, &mut lines);
    lines
}

/// Cuts `text` into pieces of one to two [`MAX_BODY_LINE_LENGTH`] (the last may be
/// shorter), each ending after the first line break past the minimum length, or failing
/// that the first `>` (HTML without line breaks), or a space, or at the minimum length.
fn cut_into_pieces<'a>(mut text: &'a [u8], out: &mut Vec<&'a [u8]>) {
    const MIN: usize = MAX_BODY_LINE_LENGTH;
    while text.len() > 2 * MIN {
        let window = &text[MIN..2 * MIN];
        let end = [b'\n', b'>', b' ']
            .iter()
            .find_map(|&d| memchr::memchr(d, window))
            .map_or(MIN, |i| MIN + i + 1);
        out.push(&text[..end]);
        text = &text[end..];
    }
    if !text.is_empty() {
        out.push(text);
    }
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

static TEXT_ADDRESS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+=\-]{0,63}@[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.[a-z]{2,}(?-u:\b)")
        .ok()
});

static HTML_ATTR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:href|src|action|background|cite|longdesc)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"#,
    )
    .ok()
});

/// The links written in `texts` (`TEXT_URI`), in order.
fn text_links(texts: &[String]) -> impl Iterator<Item = &str> {
    TEXT_URI.as_ref().into_iter().flat_map(move |re| {
        texts
            .iter()
            .flat_map(move |text| re.find_iter(text).map(|m| m.as_str()))
    })
}

/// `doc` without its HTML comments (ended as a browser ends them).
fn without_comments(doc: &str) -> std::borrow::Cow<'_, str> {
    if !doc.contains("<!--") {
        return std::borrow::Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(open) = rest.find("<!--") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 4..];
        rest = &after[crate::mail::html::comment_len(after)..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Links of one source read at most before the list is chosen from them: a message of
/// megabytes of links costs no more than this.
const MAX_COLLECTED: usize = 16 * MAX_URIS;

/// The links of a message, as SpamAssassin's `uri_list_canonicalize` lists them (a URL
/// inside another one's path or query, a redirector's target, among them). At most
/// [`MAX_URIS`] links as written: each source (the text a reader sees, the markup's
/// links, the rest of the decoded text, the addresses written in the text) has its fair
/// share of them, and a source with more than its share keeps both its ends. Padding in
/// one source (1,000 links in an HTML comment, or in text hidden by CSS) does not push
/// out the links of another (review: hidden text filled the list before the one real
/// link, which no `uri` rule and no URIBL lookup then saw), and padding ahead of a link
/// in its own source does not either.
fn extract_uris(rendered: &[String], raw: &[String], html: &[String]) -> Vec<String> {
    let mut sources: [Links; 4] = Default::default();
    let [seen_text, in_markup, in_raw, addresses] = &mut sources;
    for uri in text_links(rendered) {
        seen_text.collect(uri);
    }
    if let Some(attr) = HTML_ATTR.as_ref() {
        for doc in html {
            // Outside comments, where they are markup no reader sees.
            let doc = without_comments(doc);
            for caps in attr.captures_iter(&doc) {
                if let Some(m) = caps.get(1).or(caps.get(2)).or(caps.get(3)) {
                    // An attribute's value as the browser reads it: references decoded, and
                    // tabs and line breaks dropped from a URL (`http://exa\nmple.com/` opens
                    // example.com, and SpamAssassin lists it so).
                    let value = decode_entities(m.as_str());
                    let value: String = value
                        .chars()
                        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
                        .collect();
                    in_markup.collect(&value);
                }
            }
        }
    }
    for uri in text_links(raw) {
        in_raw.collect(uri);
    }
    // SpamAssassin lists the addresses written in the text as `mailto:` URIs too.
    if let Some(re) = TEXT_ADDRESS.as_ref() {
        for text in rendered {
            for m in re.find_iter(text) {
                let start = m.start();
                if !text[..start].ends_with(':') && !text[..start].ends_with('/') {
                    addresses.collect(&format!("mailto:{}", m.as_str()));
                }
            }
        }
    }
    let lens: Vec<usize> = sources.iter().map(|s| s.list.len()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for (source, share) in sources.into_iter().zip(fair_shares(&lens, MAX_URIS)) {
        // Links an earlier source kept take none of this one's share: the links of a
        // plain part are in both its text and its raw text, and those of the markup in
        // the raw HTML (review: chosen before the copies were dropped, half the list went
        // to copies, and a link between 300 links on each side was cut).
        let fresh: Vec<String> = source
            .list
            .into_iter()
            .filter(|uri| !seen.contains(uri))
            .collect();
        for uri in both_ends(fresh, share) {
            if seen.insert(uri.clone()) {
                out.push(uri);
            }
        }
    }
    // The links as written first, then the other forms of each: a page of disguised links
    // (seven forms each) must not push a plain link out of the list.
    let mut all = out.clone();
    for link in &out {
        for form in uri_forms(link) {
            if all.len() >= MAX_URI_FORMS {
                return all;
            }
            if seen.insert(form.clone()) {
                all.push(form);
            }
        }
    }
    all
}

/// The links of one source, in order, each once.
#[derive(Default)]
struct Links {
    list: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl Links {
    /// Adds a link found in the source, as SpamAssassin lists it.
    fn collect(&mut self, uri: &str) {
        let uri = uri
            .trim()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"', ')', '>']);
        if uri.is_empty() || uri.starts_with('#') || self.list.len() >= MAX_COLLECTED {
            return;
        }
        let uri = as_listed(&uri.replace("&amp;", "&"));
        if self.seen.insert(uri.clone()) {
            self.list.push(uri);
        }
    }
}

/// How many of `total` each source gets: an equal share, what one does not need going to
/// the others.
fn fair_shares(lens: &[usize], total: usize) -> Vec<usize> {
    let mut shares = vec![0; lens.len()];
    let mut left = total;
    let mut open: Vec<usize> = (0..lens.len()).filter(|&i| lens[i] > 0).collect();
    while left > 0 && !open.is_empty() {
        let each = (left / open.len()).max(1);
        open.retain(|&i| {
            let give = (lens[i] - shares[i]).min(each).min(left);
            shares[i] += give;
            left -= give;
            shares[i] < lens[i]
        });
    }
    shares
}

#[cfg(test)]
mod tests;
