//! Lenient decoding of MIME part bodies that a strict parser gives up on, as SpamAssassin
//! decodes them: mail clients still show such parts, so spam relies on them, and the rules
//! and the classifier must read the same text a recipient sees.
//!
//! mail-parser flags a part `is_encoding_problem` and hands back the undecoded bytes when a
//! base64 body has stray characters (a blank or junk line, a signature, a missing closing
//! boundary). [`base64_decode`] decodes such a body the way SpamAssassin's
//! `Util::base64_decode` does: whitespace and characters outside the alphabet are dropped,
//! padding inside the data counts as zero bits, trailing padding ends it.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// The 6-bit value of a base64 alphabet character.
fn value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

/// Decodes base64 leniently, never failing: whitespace and junk are skipped, a `=` inside
/// the data reads as zero bits (`A`), trailing `=` are dropped, and an incomplete last
/// group yields the bytes it holds.
///
/// ```
/// use mxguard::mail::lenient::base64_decode;
/// assert_eq!(base64_decode(b"\r\n\r\nSGVsbG8g\r\nd29ybGQ=\r\n"), b"Hello world");
/// ```
pub fn base64_decode(data: &[u8]) -> Vec<u8> {
    // Trailing padding (and whatever junk follows it) ends the data.
    let last_data = data.iter().rposition(|&c| value(c).is_some());
    let data = last_data.map_or(&data[..0], |i| &data[..=i]);
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let v = match c {
            b'=' => 0,
            _ => match value(c) {
                Some(v) => v,
                None => continue,
            },
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Text of `bytes` in the declared `charset`; without a known charset, UTF-8 when the
/// bytes are valid UTF-8, else Windows-1252 (what mail clients fall back to).
pub fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    if let Some(decode) = charset.and_then(|cs| charset_decoder(cs.trim().as_bytes())) {
        return decode(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => match charset_decoder(b"windows-1252") {
            Some(decode) => decode(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// A declared text part whose base64 body mail-parser could not decode (it then hands back
/// the encoded bytes as text): decoded leniently from the raw part, as SpamAssassin does.
/// The text and whether it is HTML; `None` for every other part.
pub fn repaired_text(message: &Message<'_>, part: &MessagePart<'_>) -> Option<(String, bool)> {
    if !part.is_encoding_problem || !matches!(part.body, PartType::Text(_)) {
        return None;
    }
    let base64 = part
        .content_transfer_encoding()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"));
    let ctype = part.content_type();
    let is_text = ctype.is_none_or(|c| c.ctype().eq_ignore_ascii_case("text"));
    if !base64 || !is_text {
        return None;
    }
    let is_html = ctype
        .and_then(|c| c.subtype())
        .is_some_and(|s| s.eq_ignore_ascii_case("html"));
    let raw: &[u8] = message.raw_message.as_ref();
    let start = part.raw_body_offset() as usize;
    let end = (part.raw_end_offset() as usize).min(raw.len());
    let bytes = raw.get(start..end.max(start))?;
    let charset = ctype.and_then(|c| c.attribute("charset"));
    let decoded = base64_decode(bytes);
    Some((decode_charset(&decoded, charset), is_html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_blank_lines_and_stray_characters_are_skipped() {
        assert_eq!(
            base64_decode(b"\n\n  SGVs\n bG8s\tIHdv\ncmxkIQ==\n"),
            b"Hello, world!"
        );
        assert_eq!(base64_decode(b"SGV*sbG8=\n"), b"Hello");
        // Trailing junk after the padding is not data.
        assert_eq!(base64_decode(b"SGVsbG8=\n-- \n"), b"Hello");
    }

    #[test]
    fn incomplete_and_empty_input() {
        assert_eq!(base64_decode(b"SGVsbA"), b"Hell");
        assert!(base64_decode(b"").is_empty());
        assert!(base64_decode(b"!!! ??? ***").is_empty());
    }

    #[test]
    fn charset_fallbacks() {
        assert_eq!(decode_charset(b"caf\xe9", Some("iso-8859-1")), "café");
        assert_eq!(decode_charset(b"caf\xe9", None), "café");
        assert_eq!(decode_charset("café".as_bytes(), Some("x-unknown")), "café");
    }
}
