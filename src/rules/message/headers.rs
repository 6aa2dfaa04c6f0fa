//! Header fields as rules read them: each field decoded and raw, and a rule's target
//! (`From:addr`, `ToCc`, `EnvelopeFrom`, `ALL`, …) read from them as SpamAssassin reads it.

use super::lines::normalize_newlines;
use super::{HeaderField, MessageView};
use crate::rules::model::{AddrPart, HeaderSource, HeaderTarget, Instance};
use mail_parser::Message;

impl MessageView {
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

/// Addresses or display names of one header value; `raw` keeps names' encoded words
/// (`From:name:raw`), else they are decoded as clients show them.
fn addresses(raw: &str, part: AddrPart, keep_encoded: bool) -> Vec<String> {
    let mut out = Vec::new();
    for mailbox in crate::mail::display_names::mailboxes(raw, keep_encoded) {
        let value = match part {
            AddrPart::Addr => mailbox.address,
            _ => mailbox.name.map(|n| {
                // Whitespace runs are one space, as SpamAssassin normalises them.
                let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
                n.strip_prefix('\'')
                    .and_then(|n| n.strip_suffix('\''))
                    .map_or_else(|| n.clone(), str::to_string)
            }),
        };
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push(v);
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
pub(super) fn read_headers(message: &Message<'_>) -> Vec<HeaderField> {
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
