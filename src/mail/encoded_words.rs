//! RFC 2047 encoded words in unstructured header text, decoded as SpamAssassin 4.0.1's
//! `_decode_header` does: anywhere in the text (also joined to plain text, as
//! `Vi=?utf-8?q?agra?=`, which a spammer writes so that readers show "Viagra" while a
//! strict decoder leaves it encoded), blanks between two encoded words dropped, and the
//! bytes of adjacent words in one charset joined before the charset is decoded, so a
//! character split across two words is one character.

use super::lenient::{base64_decode, decode_charset};

/// The text of a header value: folding undone (a line break and the blanks after it read
/// as one blank), encoded words decoded, surrounding blanks trimmed.
pub fn decode_unstructured(value: &str) -> String {
    let unfolded = unfold(value);
    if !unfolded.contains("=?") {
        return unfolded.trim().to_owned();
    }
    let mut out = String::with_capacity(unfolded.len());
    // Bytes of the encoded words met since the last plain text, and their charset.
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut rest = unfolded.as_str();
    while let Some(start) = rest.find("=?") {
        let Some((word, len)) = EncodedWord::read(&rest[start..]) else {
            flush(&mut pending, &mut out);
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        };
        let between = &rest[..start];
        // Blanks between two encoded words are no text (RFC 2047 §6.2).
        if !(pending.is_some() && between.chars().all(|c| c == ' ' || c == '\t')) {
            flush(&mut pending, &mut out);
            out.push_str(between);
        }
        match &mut pending {
            Some((charset, bytes)) if charset.eq_ignore_ascii_case(&word.charset) => {
                bytes.extend_from_slice(&word.bytes);
            }
            _ => {
                flush(&mut pending, &mut out);
                pending = Some((word.charset, word.bytes));
            }
        }
        rest = &rest[start + len..];
    }
    flush(&mut pending, &mut out);
    out.push_str(rest);
    out.trim().to_owned()
}

/// A line break and the blanks after it become one blank; other line breaks go.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut lines = value.split('\n');
    if let Some(first) = lines.next() {
        out.push_str(first.trim_end_matches('\r'));
    }
    for line in lines {
        let line = line.trim_end_matches('\r');
        match line.strip_prefix([' ', '\t']) {
            Some(continued) => {
                out.push(' ');
                out.push_str(continued.trim_start_matches([' ', '\t']));
            }
            None => out.push_str(line),
        }
    }
    out
}

fn flush(pending: &mut Option<(String, Vec<u8>)>, out: &mut String) {
    if let Some((charset, bytes)) = pending.take() {
        // RFC 2231 lets a language follow the charset (`utf-8*en`).
        let charset = charset.split('*').next().unwrap_or_default();
        out.push_str(&decode_charset(&bytes, Some(charset)));
    }
}

/// One `=?charset?B|Q?text?=`, decoded to bytes.
struct EncodedWord {
    charset: String,
    bytes: Vec<u8>,
}

impl EncodedWord {
    /// Reads the word at the start of `text` (which starts with `=?`): the word and its
    /// length in `text`. `=?charset?[BbQq]?[^?]*?=`, the charset any printable ASCII but
    /// `?` and `=`, blanks around it dropped, as clients read it (header probe:
    /// SpamAssassin's `[\w*-]+` left `ansi_x3.4-1968`, `iso_8859-1:1987` and `=? utf-8?`,
    /// which Thunderbird and Python decode, as written). The text runs to the next `?`,
    /// which must close the word. Every search stops at the next `?`, so reading a header
    /// is linear however many `=?` it holds (a search for `?=` over the rest of the value
    /// made a megabyte of `=?a?q?x` take seconds).
    fn read(text: &str) -> Option<(EncodedWord, usize)> {
        let body = text.strip_prefix("=?")?;
        let charset_end = body.find(|c: char| !is_charset_char(c))?;
        if body.as_bytes()[charset_end] != b'?' {
            return None;
        }
        let charset = body[..charset_end].trim_matches([' ', '\t']);
        if charset.is_empty() || charset.contains([' ', '\t']) {
            return None;
        }
        let after_charset = &body[charset_end + 1..];
        let encoding = after_charset.as_bytes().first()?;
        if after_charset.as_bytes().get(1) != Some(&b'?') {
            return None;
        }
        let encoded_and_rest = &after_charset[2..];
        let text_end = encoded_and_rest.find('?')?;
        if encoded_and_rest.as_bytes().get(text_end + 1) != Some(&b'=') {
            return None;
        }
        let encoded = &encoded_and_rest[..text_end];
        let bytes = match encoding {
            b'B' | b'b' => base64_decode(encoded.as_bytes()),
            b'Q' | b'q' => q_decode(encoded.as_bytes()),
            _ => return None,
        };
        let len = 2 + charset_end + 1 + 2 + text_end + 2;
        Some((
            EncodedWord {
                charset: charset.to_owned(),
                bytes,
            },
            len,
        ))
    }
}

/// Whether `c` may stand in an encoded word's charset field (blanks only around the label).
fn is_charset_char(c: char) -> bool {
    (c.is_ascii_graphic() && c != '?' && c != '=') || c == ' ' || c == '\t'
}

/// The `Q` encoding: `_` is a space, `=XX` a byte; anything else as written.
fn q_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let byte = text
                    .get(i + 1..i + 3)
                    .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                if let Some(b) = byte {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_joined_to_text_are_decoded() {
        assert_eq!(
            decode_unstructured("Cheap Vi=?utf-8?q?agra?= now"),
            "Cheap Viagra now"
        );
        assert_eq!(decode_unstructured("=?utf-8?q?Vi?=agra"), "Viagra");
    }

    /// Regression (review of this change): the word's text was searched to the next `?=`
    /// over the whole rest of the value, so a header of `=?a?q?x` repeated, with no `?=`,
    /// took quadratic time: a megabyte held a core for 18 s.
    #[test]
    fn many_unclosed_words_are_read_in_linear_time() {
        // 1.6 MB of unclosed words: read quadratically this would not end within the run.
        let value = "=?a?q?x ".repeat(200_000);
        assert_eq!(decode_unstructured(&value).len(), value.trim().len());
    }

    #[test]
    fn a_character_split_across_two_words_is_one_character() {
        assert_eq!(
            decode_unstructured("=?utf-8?b?Y2Fmww==?= =?utf-8?b?qQ==?="),
            "caf\u{e9}"
        );
    }

    #[test]
    fn blanks_between_encoded_words_go_and_others_stay() {
        assert_eq!(
            decode_unstructured("=?iso-8859-1?q?a?=  =?iso-8859-1?q?b?= c =?utf-8?q?d_e?="),
            "ab c d e"
        );
        assert_eq!(decode_unstructured(" plain\r\n\t folded "), "plain folded");
        assert_eq!(
            decode_unstructured("=?bogus charset?q?x?= =?utf-8?x?y?= =?"),
            "=?bogus charset?q?x?= =?utf-8?x?y?= =?"
        );
        // As SpamAssassin 4.0.1 reads them (checked with `spamassassin -t -L`).
        assert_eq!(
            decode_unstructured("=?utf-8?q?V?iagra?="),
            "=?utf-8?q?V?iagra?="
        );
        assert_eq!(decode_unstructured("=?utf-8?q?Via gra?="), "Via gra");
        assert_eq!(decode_unstructured("=?utf-8?b?Vmlh Z3Jh?="), "Viagra");
        // Unlike SpamAssassin, any printable label and blanks around it, as clients read
        // them (header probe); a blank inside a label is no label.
        assert_eq!(decode_unstructured("=?iso.8859-1?q?x?="), "x");
        assert_eq!(
            decode_unstructured("=?ansi_x3.4-1968?q?FREE_CASH?= =? utf-8 ?q?_now?="),
            "FREE CASH now"
        );
        assert_eq!(decode_unstructured("=?utf-8?q?a=+Fb?="), "a=+Fb");
        assert_eq!(decode_unstructured("=?koi8-r?b?8NLJ18XU?="), "Привет");
    }
}
