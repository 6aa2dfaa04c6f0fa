//! The parsed message all rule kinds share: headers (decoded and raw), rendered body lines,
//! raw body parts, URIs and the full raw bytes, built once per message with mail-parser.
//!
//! Shapes follow SpamAssassin so its rules keep their meaning: `body` is the Subject followed
//! by paragraphs of the decoded text parts (HTML rendered to text), each paragraph one line with
//! whitespace collapsed; `rawbody` is each decoded text part as is (HTML markup kept); `uri`
//! is every URL from text and from HTML attributes (`href`, `src`, ...), `www.` hosts also as
//! `http://`; `full` is the message exactly as received.
//!
//! The view's fields and the one pass over the MIME tree that fills them are here; how each
//! kind of text is shaped is beside it: header fields and rule targets (`headers`), body
//! lines and raw pieces (`lines`), attachments and MIME structure (`mime`), the URI list
//! (`uris`).

mod headers;
mod lines;
mod mime;
mod uris;

use headers::read_headers;
use lines::{cut_into_pieces, head_and_tail, normalize_newlines, render_body_lines};
use mime::{collect_attachments, named_if_not_followed, named_past_the_cut, repeats_mime_fields};
use uris::extract_uris;

use super::html_text::render_html;
use super::model::{AddrPart, HeaderSource, HeaderTarget};
use crate::mail::qp_shape::QpShape;
use crate::mail::render_kind::{render_kind, RenderKind};
use crate::mail::{flowed, lenient};
use mail_parser::{Message, MessageParser, MessagePart, PartType};

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
                self.text_leaf(part, render_kind(message, part), &normalize_newlines(&text));
                continue;
            }
            match &part.body {
                PartType::Text(text) | PartType::Html(text) => {
                    let kind = render_kind(message, part);
                    let text =
                        normalize_newlines(&lenient::text_as_clients_read(message, part, text));
                    self.text_leaf(part, kind, &text);
                }
                PartType::Message(inner) if depth < self.limits.nesting_depth => {
                    self.parts(inner, depth + 1);
                }
                PartType::Message(_) => {
                    self.too_deep = true;
                    self.leaf(None);
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => {
                    // The text of an opaque S/MIME signature, which clients show as the
                    // message (SpamAssassin reads none of it): spam signed so would hide
                    // every word from the rules.
                    if let Some(entity) = crate::mail::smime::entity_in_part(message, part) {
                        if depth < self.limits.nesting_depth {
                            // Bounded and delimited as the message itself is (review).
                            let (bytes, cut) =
                                crate::mail::mime::cut_to_parts(&entity, self.limits.mime_parts);
                            self.truncated |= cut;
                            let as_read = crate::mail::delimiters::as_clients_read(bytes);
                            if let Some(inner) = MessageParser::default().parse(&as_read.bytes) {
                                self.parts(&inner, depth + 1);
                                continue;
                            }
                        }
                    }
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

    /// A text leaf of `part`. In `format=flowed; delsp=yes` plain text the links are read
    /// as its reader sees them, joined at soft breaks, in the text's own place among the
    /// parts' (review: read after every part's, a joined link was cut from the middle of
    /// the list); bounded as the raw text is, for links only (SpamAssassin's body rules see
    /// the lines as sent).
    fn text_leaf(&mut self, part: &MessagePart<'_>, kind: RenderKind, text: &str) {
        self.leaf_text(kind, text);
        if kind == RenderKind::Plain && flowed::deletes_soft_break_spaces(part) {
            let (shown, cut) =
                head_and_tail(&flowed::unflow_delsp(text), self.limits.raw_part_bytes);
            self.truncated |= cut;
            if let Some(links) = self.rendered.last_mut() {
                *links = shown;
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

#[cfg(test)]
mod tests;
