//! An 8-bit message made 7-bit for a server that does not offer 8BITMIME. RFC 6152 §3
//! leaves a relay two choices, convert or return the message; Postfix converts, and so do
//! we: every MIME part whose content has 8-bit bytes is re-encoded quoted-printable, which
//! its reader decodes back to the same bytes.
//!
//! Header fields are left as they are (Postfix leaves them too): raw 8-bit text in a
//! header has no declared charset to encode it with.

use super::mime::{cut_to_parts, DEFAULT_MAX_PARTS};
use mail_builder::encoders::QuotedPrintableEncoder;
use mail_parser::{HeaderName, MessageParser, MessagePart, MimeHeaders, PartType};
use std::ops::Range;

/// Deepest message in a message that is converted; a deeper one travels as it is.
const MAX_NESTED_MESSAGES: usize = 8;

const ENCODING_FIELD: &[u8] = b"Content-Transfer-Encoding: ";

/// `message` with the content of every part that holds 8-bit bytes encoded
/// quoted-printable and labelled so, or `None` when nothing needs converting (the body is
/// ASCII, or its 8-bit bytes sit in parts already labelled base64 or quoted-printable,
/// where nothing would make them readable). A message without MIME headers gets
/// `MIME-Version: 1.0` so that its reader decodes the new encoding.
pub fn to_seven_bit(message: &[u8]) -> Option<Vec<u8>> {
    convert(message, 0)
}

/// One replacement of `range` of the message by `with` (an insertion when empty).
struct Edit {
    range: Range<usize>,
    with: Vec<u8>,
}

fn convert(raw: &[u8], depth: usize) -> Option<Vec<u8>> {
    if raw.is_ascii() {
        return None;
    }
    // Parts past the parser's bound travel as they are, like a deeper nested message.
    let (parsed_raw, _) = cut_to_parts(raw, DEFAULT_MAX_PARTS);
    let parsed = MessageParser::new().parse(parsed_raw)?;
    let mut edits = Vec::new();
    for part in &parsed.parts {
        let Some(body) = part_body(parsed_raw, part) else {
            continue;
        };
        let label = part
            .content_transfer_encoding()
            .map(|l| l.trim().to_ascii_lowercase());
        let label = label.as_deref();
        match &part.body {
            // The children are converted one by one; a container labelled 8-bit then
            // holds 7-bit content only.
            PartType::Multipart(_) => {
                if matches!(label, Some("8bit" | "binary")) {
                    relabel(parsed_raw, part, "7bit", &mut edits);
                }
            }
            PartType::Message(_) => {
                if body.is_ascii() || depth >= MAX_NESTED_MESSAGES {
                    continue;
                }
                let Some(inner) = convert(body, depth + 1) else {
                    continue;
                };
                edits.push(Edit {
                    range: body_range(part),
                    with: inner,
                });
                // RFC 2046 §5.2.1: only 7bit, 8bit or binary may label a message.
                if label.is_some() {
                    relabel(parsed_raw, part, "7bit", &mut edits);
                }
            }
            _ => {
                if body.is_ascii() || matches!(label, Some("base64" | "quoted-printable")) {
                    continue;
                }
                let encoder = QuotedPrintableEncoder::new();
                // Text keeps its lines as lines; `binary` content has no lines to keep.
                let encoder = if label == Some("binary") {
                    encoder
                } else {
                    encoder.preserve_line_breaks()
                };
                let mut encoded = Vec::with_capacity(body.len() + body.len() / 4);
                encoder.encode_into(body, &mut encoded);
                edits.push(Edit {
                    range: body_range(part),
                    with: encoded,
                });
                relabel(parsed_raw, part, "quoted-printable", &mut edits);
            }
        }
    }
    if edits.is_empty() {
        return None;
    }
    let root = parsed.parts.first()?;
    if !root
        .headers
        .iter()
        .any(|h| h.name == HeaderName::MimeVersion)
    {
        edits.push(Edit {
            range: 0..0,
            with: b"MIME-Version: 1.0\r\n".to_vec(),
        });
    }
    let mut out = apply(parsed_raw, edits)?;
    out.extend_from_slice(&raw[parsed_raw.len()..]);
    Some(out)
}

fn body_range(part: &MessagePart<'_>) -> Range<usize> {
    part.offset_body as usize..part.offset_end as usize
}

fn part_body<'m>(raw: &'m [u8], part: &MessagePart<'_>) -> Option<&'m [u8]> {
    raw.get(body_range(part))
}

/// Sets `part`'s Content-Transfer-Encoding to `encoding`: every such field is rewritten, or
/// one is added after the part's last field.
fn relabel(raw: &[u8], part: &MessagePart<'_>, encoding: &str, edits: &mut Vec<Edit>) {
    let mut field = ENCODING_FIELD.to_vec();
    field.extend_from_slice(encoding.as_bytes());
    field.extend_from_slice(b"\r\n");
    let mut found = false;
    for header in &part.headers {
        if header.name == HeaderName::ContentTransferEncoding {
            let start = header.offset_field as usize;
            edits.push(Edit {
                range: start..line_end(raw, header.offset_end as usize),
                with: field.clone(),
            });
            found = true;
        }
    }
    if !found {
        let at = part
            .headers
            .last()
            .map(|h| line_end(raw, h.offset_end as usize))
            .unwrap_or(part.offset_header as usize);
        edits.push(Edit {
            range: at..at,
            with: field,
        });
    }
}

/// The end of the line holding `at - 1` (just past its LF), or the end of `raw`.
fn line_end(raw: &[u8], at: usize) -> usize {
    let at = at.min(raw.len());
    if at > 0 && raw[at - 1] == b'\n' {
        return at;
    }
    memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |i| at + i + 1)
}

/// `raw` with every edit made, or `None` when two overlap or one lies outside (offsets a
/// parser got wrong): the message then travels as it is rather than garbled.
fn apply(raw: &[u8], mut edits: Vec<Edit>) -> Option<Vec<u8>> {
    // Insertions at a position go before a replacement starting there.
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let grown: usize = edits.iter().map(|e| e.with.len()).sum();
    let mut out = Vec::with_capacity(raw.len() + grown);
    let mut pos = 0;
    for edit in edits {
        if edit.range.start < pos || edit.range.end > raw.len() || edit.range.start > edit.range.end
        {
            return None;
        }
        out.extend_from_slice(&raw[pos..edit.range.start]);
        out.extend_from_slice(&edit.with);
        pos = edit.range.end;
    }
    out.extend_from_slice(&raw[pos..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn text_of(message: &[u8], part: usize) -> Vec<u8> {
        let parsed = MessageParser::new().parse(message).unwrap();
        parsed.parts[part].contents().to_vec()
    }

    fn body_lines_are_seven_bit(message: &[u8]) {
        let body_at = memchr::memmem::find(message, b"\r\n\r\n").unwrap();
        let body = &message[body_at..];
        assert!(body.is_ascii(), "{}", String::from_utf8_lossy(message));
        for line in body.split(|&b| b == b'\n') {
            assert!(line.len() <= 78, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn an_ascii_message_needs_nothing() {
        assert!(to_seven_bit(b"Subject: a\r\n\r\nplain text\r\n").is_none());
    }

    #[test]
    fn an_eight_bit_text_part_is_quoted_printable_and_reads_the_same() {
        let original = "Subject: caf\u{e9}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\u{e9} cr\u{e8}me, tr\u{e8}s bien  \r\n= sign\r\n";
        let out = to_seven_bit(original.as_bytes()).unwrap();
        body_lines_are_seven_bit(&out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\n"),
            "{text}"
        );
        assert!(!text.contains("8bit"), "{text}");
        // The header keeps its raw 8-bit text (as Postfix leaves it).
        assert!(text.starts_with("Subject: caf\u{e9}\r\n"), "{text}");
        assert_eq!(
            text_of(&out, 0),
            text_of(original.as_bytes(), 0),
            "decoded content differs"
        );
    }

    #[test]
    fn a_message_without_mime_headers_gets_them() {
        let original = b"Subject: x\r\n\r\nna\xefve\r\n";
        let out = to_seven_bit(original).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("MIME-Version: 1.0\r\n"), "{text}");
        assert!(
            text.contains(
                "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve\r\n"
            ),
            "{text}"
        );
        let body_at = memchr::memmem::find(&out, b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            crate::mail::lenient::quoted_printable_decode(&out[body_at..]),
            b"na\xefve\r\n".to_vec()
        );
    }

    #[test]
    fn only_the_eight_bit_parts_of_a_multipart_change() {
        let original = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\u{fc}\u{df}e\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b\r\nContent-Type: text/plain\r\n\r\nascii only\r\n--b--\r\n";
        let out = to_seven_bit(original.as_bytes()).unwrap();
        body_lines_are_seven_bit(&out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains("boundary=\"b\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\npreamble"),
            "{text}"
        );
        assert!(
            text.contains("charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe"),
            "{text}"
        );
        assert!(
            text.contains(
                "base64\r\n\r\nAAEC\r\n--b\r\nContent-Type: text/plain\r\n\r\nascii only\r\n--b--"
            ),
            "{text}"
        );
        let (before, after) = (
            MessageParser::new().parse(original.as_bytes()).unwrap(),
            MessageParser::new().parse(&out).unwrap(),
        );
        assert_eq!(before.parts.len(), after.parts.len());
        for (a, b) in before.parts.iter().zip(&after.parts) {
            assert_eq!(a.contents(), b.contents());
        }
    }

    #[test]
    fn a_forwarded_message_is_converted_inside() {
        let inner = "Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nd\u{e9}j\u{e0} vu\r\n";
        let original = format!("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{inner}--o--\r\n");
        let out = to_seven_bit(original.as_bytes()).unwrap();
        body_lines_are_seven_bit(&out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains("message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nMIME-Version: 1.0\r\nSubject: inner\r\n"),
            "{text}"
        );
        assert!(text.contains("d=C3=A9j=C3=A0 vu"), "{text}");
        let nested_text = |m: &[u8]| {
            let parsed = MessageParser::new().parse(m).unwrap();
            let nested = parsed.attachment(0).unwrap().message().unwrap();
            nested.body_text(0).unwrap().into_owned()
        };
        assert!(nested_text(&out).starts_with("d\u{e9}j\u{e0} vu"));
        assert_eq!(nested_text(&out), nested_text(original.as_bytes()));
    }

    #[test]
    fn eight_bit_bytes_in_a_base64_part_are_left_alone() {
        let original =
            b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\xff\r\n";
        assert!(to_seven_bit(original).is_none());
    }

    #[test]
    fn binary_content_keeps_its_bytes_not_its_lines() {
        let original = b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\xff\nline\r\n";
        let out = to_seven_bit(original).unwrap();
        body_lines_are_seven_bit(&out);
        assert_eq!(text_of(&out, 0), text_of(original, 0));
    }

    #[test]
    fn a_folded_encoding_field_is_replaced_whole() {
        let original = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding:\r\n 8bit\r\nX-After: kept\r\n\r\n\xe9t\xe9\r\n";
        let out = to_seven_bit(original).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\nX-After: kept\r\n\r\n=E9t=E9\r\n"
        );
    }

    #[test]
    fn overlapping_edits_leave_the_message_as_it_is() {
        let edits = vec![
            Edit {
                range: 0..4,
                with: b"x".to_vec(),
            },
            Edit {
                range: 2..6,
                with: b"y".to_vec(),
            },
        ];
        assert!(apply(b"0123456789", edits).is_none());
    }
}
