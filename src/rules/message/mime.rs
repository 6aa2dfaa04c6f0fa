//! What the MIME tree says beyond its text: the attachments and the names they are
//! given (also past the parser's cut), and fields a part repeats.

use super::AttachmentPart;
use crate::mail::lenient;
use crate::mail::uuencode::EncodedFile;
use mail_parser::{ContentType, HeaderName, Message, MessagePart, MimeHeaders, PartType};

/// Collects the parts carrying files, descending into attached messages down to
/// `max_depth` (the scan's nesting limit).
pub(super) fn collect_attachments(
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
            // The files in a `winmail.dat`, or in an Outlook item saved as `.msg`, which
            // Outlook shows as attachments.
            let mut wrapped = crate::mail::tnef::files(&data);
            wrapped.extend(crate::mail::outlook_item::files(&data));
            // A message saved as `.eml` and sent as a file, which Thunderbird and Outlook
            // open as a message by its name (attachment probe: the `invoice.exe` in it was
            // judged only when sent as `message/rfc822`).
            // An opaque-signed S/MIME message, which clients open and show with its
            // attachments (attachment probe: the `invoice.exe` in it went unjudged), read
            // first: clients go by its type, so an `.eml` name must not hide it (review).
            let in_saved_message =
                if let Some(signed) = opaque_signed_entity(&content_type, &names, &data) {
                    saved_message_attachments(&signed, depth + 1, max_depth)
                } else if names_a_saved_message(&names) {
                    saved_message_attachments(&data, depth + 1, max_depth)
                } else {
                    Vec::new()
                };
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
            out.extend(in_saved_message);
        }
        for file in files_in_text(part) {
            out.push(AttachmentPart {
                names: vec![file.name],
                content_type: String::new(),
                data: file.data,
                ambiguous: false,
                content_left_out: file.data_left_out,
            });
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

/// Whether a file's names say it is a saved message (`.eml`), which mail clients open as
/// one.
fn names_a_saved_message(names: &[String]) -> bool {
    crate::mail::file_names::any_has_extension(names, "eml")
}

/// The MIME entity an opaque-signed S/MIME part (`smime.p7m`, signed-data) carries.
fn opaque_signed_entity(content_type: &str, names: &[String], data: &[u8]) -> Option<Vec<u8>> {
    if !crate::mail::smime::is_pkcs7(content_type, names) {
        return None;
    }
    crate::mail::smime::signed_content(data)
}

/// The attachments of a saved message's bytes, read as an attached message at `depth`:
/// past the nesting limit (or when its structure is not followed) by the names in it.
fn saved_message_attachments(data: &[u8], depth: usize, max_depth: usize) -> Vec<AttachmentPart> {
    let mut out = Vec::new();
    if depth > max_depth {
        named_only(crate::mail::file_names::in_raw_fields(data), &mut out);
        return out;
    }
    let as_read = crate::mail::delimiters::as_clients_read(data);
    if let Some(message) = mail_parser::MessageParser::default().parse(&as_read.bytes) {
        collect_attachments(&message, depth, max_depth, &mut out);
    }
    named_if_not_followed(&as_read, &mut out);
    out
}

/// The files named in the part of a message past the parser's part limit (`cut` bytes
/// were parsed), judged by name: a client shows them (review: a 40 KB message of 1,000
/// empty parts hid `evil.exe` behind `SCAN_PART_LIMIT`).
pub(super) fn named_past_the_cut(raw: &[u8], cut: usize, out: &mut Vec<AttachmentPart>) {
    if let Some(rest) = raw.get(cut..).filter(|r| !r.is_empty()) {
        named_only(crate::mail::file_names::in_raw_fields(rest), out);
    }
}

/// The files named anywhere in a message whose MIME structure the delimiter walk could
/// not follow (the parser may read fewer parts than a client shows), judged by name.
pub(super) fn named_if_not_followed(
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
pub(super) fn repeats_mime_fields(message: &Message<'_>, depth: usize, max_depth: usize) -> bool {
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

/// The files a part carries in a text encoding that clients decode and show as
/// attachments: uuencode (see [`holds_uuencode`]), and yEnc in a text part (attachment
/// probe: `=ybegin … name=invoice.exe` in an untyped body went unjudged).
fn files_in_text(part: &MessagePart<'_>) -> Vec<EncodedFile> {
    let mut files = if holds_uuencode(part) {
        crate::mail::uuencode::files(part.contents())
    } else {
        Vec::new()
    };
    if matches!(part.body, PartType::Text(_)) {
        files.extend(crate::mail::yenc::files(part.contents()));
    }
    files
}

/// Whether a part may hold uuencoded files a mail client shows as attachments: any text
/// part (`begin 644 invoice.exe` in the body, which no MIME reader lists), and any part
/// declaring a uuencode transfer encoding, which mail-parser leaves encoded.
fn holds_uuencode(part: &MessagePart<'_>) -> bool {
    match &part.body {
        PartType::Text(_) => true,
        // Declared so, or a file that is one from its first line (attachment probe: an
        // `invoice.uue` sent as `application/octet-stream` held an unjudged `.exe`).
        PartType::Binary(_) | PartType::InlineBinary(_) => {
            part.content_transfer_encoding()
                .is_some_and(|e| e.to_ascii_lowercase().contains("uu"))
                || crate::mail::uuencode::is_uuencoded_file(part.contents())
        }
        PartType::Html(_) | PartType::Message(_) | PartType::Multipart(_) => false,
    }
}
