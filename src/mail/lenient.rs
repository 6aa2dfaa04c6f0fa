//! Lenient decoding of MIME part bodies that a strict parser gives up on, as SpamAssassin
//! decodes them: mail clients still show such parts, so spam relies on them, and the rules
//! and the classifier must read the same text a recipient sees.
//!
//! mail-parser flags a part `is_encoding_problem` and hands back the undecoded bytes when a
//! base64 body has stray characters (a blank or junk line, a signature, a missing closing
//! boundary). [`base64_decode`] decodes such a body the way SpamAssassin's
//! `Util::base64_decode` does: whitespace and characters outside the alphabet are dropped,
//! padding inside the data counts as zero bits, trailing padding ends it. A
//! quoted-printable body with a malformed escape (`==`, `=A=`) gets the same treatment
//! from [`quoted_printable_decode`].

use super::charsets;
use super::render_kind::{render_kind, RenderKind};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Encoding, HeaderName, Message, MessagePart, MimeHeaders, PartType};
use std::borrow::Cow;

/// The 6-bit value of a base64 alphabet character.
fn value(c: u8) -> Option<u8> {
    let v = BASE64_VALUES[usize::from(c)];
    (v != NOT_BASE64).then_some(v)
}

/// [`BASE64_VALUES`] of a byte outside the alphabet.
const NOT_BASE64: u8 = 0xFF;

/// Each byte's 6-bit base64 value, or [`NOT_BASE64`]: a table, as the decoder asks it of
/// every byte of every base64 part.
const BASE64_VALUES: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let mut c = 0;
    while c < 26 {
        table[b'A' as usize + c] = c as u8;
        table[b'a' as usize + c] = 26 + c as u8;
        c += 1;
    }
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    table[b'+' as usize] = 62;
    table[b'/' as usize] = 63;
    table
};

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
    let mut i = 0;
    while i < data.len() {
        // Most of a part is whole groups of four alphabet characters: three bytes at once.
        if bits == 0 {
            if let Some(group) = data.get(i..i + 4) {
                let [a, b, c, d] = [0, 1, 2, 3].map(|k| BASE64_VALUES[usize::from(group[k])]);
                if (a | b | c | d) < 64 {
                    let n =
                        u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
                    out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
                    i += 4;
                    continue;
                }
            }
        }
        let c = data[i];
        i += 1;
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

/// Decodes base64 the way mail clients save a file (Thunderbird, mail-parser): junk is
/// skipped, and a `=` ends the group of four it falls in, whose bytes are kept, decoding
/// going on with the next group. [`base64_decode`] reads the same `=` as zero bits, as
/// SpamAssassin does; a file padded in the middle reads otherwise, so both are judged.
///
/// ```
/// use mxguard::mail::lenient::base64_decode_by_group;
/// assert_eq!(base64_decode_by_group(b"SGk=SGk="), b"HiHi");
/// assert_eq!(base64_decode_by_group(b"SG*k=\r\nIQ=="), b"Hi!");
/// ```
pub fn base64_decode_by_group(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let (mut acc, mut held) = (0u32, 0u32);
    let finish = |acc: u32, held: u32, out: &mut Vec<u8>| {
        // Two characters hold one byte, three hold two.
        let bytes = (held * 6) / 8;
        let acc = acc << (6 * (4 - held));
        for i in 0..bytes {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    };
    for &c in data {
        if c == b'=' {
            finish(acc, held, &mut out);
            (acc, held) = (0, 0);
            continue;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | u32::from(v);
        held += 1;
        if held == 4 {
            finish(acc, held, &mut out);
            (acc, held) = (0, 0);
        }
    }
    finish(acc, held, &mut out);
    out
}

/// Whether base64 `raw` has padding before some of its data: then
/// [`base64_decode`] and [`base64_decode_by_group`] read it differently.
fn padded_midway(raw: &[u8]) -> bool {
    raw.iter()
        .position(|&c| c == b'=')
        .is_some_and(|at| raw[at..].iter().any(|&c| value(c).is_some()))
}

/// Text of `bytes` in the declared `charset`; without a known charset, UTF-8 where the
/// bytes are UTF-8 and each other byte as Windows-1252 ([`utf8_or_windows_1252`], what
/// mail clients fall back to; review: the whole text was read as Windows-1252 at the
/// first stray byte, Cyrillic words and all). A label clients read otherwise than
/// mail-parser's table (HZ, ISO-2022-KR/CN, `utf7`, UTF-32, blanks or quotes around it) is
/// read as they read it, in encoded words and file names as in bodies (header probe).
pub fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    if let Some(label) = charset {
        if let Some(reading) = charsets::client_reading(label, label, bytes.is_ascii()) {
            return reading.decode(bytes);
        }
        if let Some(decode) = charset_decoder(label.trim().as_bytes()) {
            return decode(bytes);
        }
    }
    utf8_or_windows_1252(bytes)
}

/// A text part's text as mail-parser decoded it (`text`), with 8-bit bytes that are not UTF-8 read as Windows-1252, as mail
/// clients (and SpamAssassin, guessing the charset) read them: mail-parser turns every
/// such byte into the same U+FFFD, and `caf\xe9` could not be told from `caf\xe8`. Only
/// for text that is UTF-8 or undeclared (another declared charset is mail-parser's to
/// decode), and byte by byte: the valid UTF-8 around a stray byte stays as it is.
pub fn text_as_clients_read<'t>(
    message: &Message<'_>,
    part: &MessagePart<'_>,
    text: &'t str,
) -> Cow<'t, str> {
    without_nul(decoded_as_clients_read(message, part, text))
}

/// NUL characters dropped: an HTML parser ignores them in text, and clients show plain
/// text through one, so `zqx=00word` in quoted-printable (or a NUL in base64) shows one
/// word that the rules and the classifier read as two (MIME probe). Raw NULs are refused
/// at SMTP; only encoded ones arrive.
fn without_nul<'t>(text: impl Into<Cow<'t, str>>) -> Cow<'t, str> {
    let text = text.into();
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        text
    }
}

fn decoded_as_clients_read<'t>(
    message: &Message<'_>,
    part: &MessagePart<'_>,
    text: &'t str,
) -> Cow<'t, str> {
    let parsed = part.content_type().and_then(|c| c.attribute("charset"));
    // A charset mail-parser reads otherwise than clients (HZ, ISO-2022-KR/CN, spellings
    // it lacks, a label it did not get), decoded as they read it (charset probe).
    // An HTML part the MIME header gives no charset is read by the `<meta>` charset of
    // its page, as clients render it (a browser's prescan).
    let declared = match parsed {
        Some(label) => Some(Cow::Borrowed(label)),
        // The `<meta>` tag is ASCII: the parser's reading shows it as the bytes do.
        None => raw_charset(message, part)
            .or_else(|| {
                matches!(part.body, PartType::Html(_))
                    .then(|| charsets::meta_charset(text.as_bytes()))
                    .flatten()
            })
            .map(Cow::Owned),
    };
    if let Some(reading) = declared
        .and_then(|label| charsets::client_reading(&label, parsed.unwrap_or(""), text.is_ascii()))
    {
        return Cow::Owned(reading.decode(&file_bytes(message, part).data));
    }
    if !text.contains('\u{FFFD}') {
        return Cow::Borrowed(text);
    }
    let charset = parsed.map(|c| c.trim().to_ascii_lowercase());
    let utf8_or_none = charset
        .as_deref()
        .is_none_or(|c| matches!(c, "utf-8" | "utf8" | "us-ascii" | "ascii"));
    if !utf8_or_none {
        return Cow::Borrowed(text);
    }
    let bytes = file_bytes(message, part).data;
    Cow::Owned(utf8_or_windows_1252(&bytes))
}

/// The `charset` of the part's first `Content-Type` field as written, for the forms
/// mail-parser reads no charset from (`charset=⏎ utf-16`: blanks after the `=`, which RFC
/// 2045's grammar allows and Python and clients read).
fn raw_charset(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    static CHARSET: std::sync::LazyLock<Option<regex::bytes::Regex>> = std::sync::LazyLock::new(
        || {
            regex::bytes::Regex::new(
                r#"(?i)(?:^|\n)content-type[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*?;\s*charset\s*=\s*"?([a-z0-9._:+\-]{1,40})"#,
            )
            .ok()
        },
    );
    let raw: &[u8] = message.raw_message.as_ref();
    let start = (part.raw_header_offset() as usize).min(raw.len());
    let end = (part.raw_body_offset() as usize).clamp(start, raw.len());
    let header = raw.get(start..end)?;
    let caps = CHARSET.as_ref()?.captures(header)?;
    let label = caps.get(1)?.as_bytes();
    Some(String::from_utf8_lossy(label).into_owned())
}

/// UTF-8 where the bytes are UTF-8, and each byte that is not read as Windows-1252: what a
/// reader makes of UTF-8 text with a stray 8-bit byte in it, or of Latin-1 text sent
/// without a charset. Decoding the whole text as Windows-1252 at the first stray byte
/// turned every Cyrillic word into mojibake, and U+FFFD for each made `caf\xe9` and
/// `caf\xe8` one word.
///
/// ```
/// use mxguard::mail::lenient::utf8_or_windows_1252;
/// assert_eq!(utf8_or_windows_1252("Купить \u{e9}".as_bytes()), "Купить \u{e9}");
/// assert_eq!(utf8_or_windows_1252(b"caf\xe9 \x80 \xd0\x9a"), "caf\u{e9} \u{20ac} \u{41a}");
/// ```
pub fn utf8_or_windows_1252(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len()).max(1).min(after.len());
                for &b in &after[..bad] {
                    out.push(windows_1252_char(b));
                }
                rest = &after[bad..];
            }
        }
    }
}

/// One byte read as Windows-1252.
fn windows_1252_char(b: u8) -> char {
    // The 0x80-0x9F row, where Windows-1252 differs from Latin-1 (five holes read as C1).
    const ROW_80: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    match b {
        0x80..=0x9f => ROW_80[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// Decodes quoted-printable leniently, never failing, as SpamAssassin's `qp_decode` does:
/// blanks at line ends go, soft line breaks (`=` at a line end) join lines, every `=XX`
/// (either case) is decoded, and anything else (`==`, `=A=`, a lone `=`) stays as it is.
/// mail-parser gives up on such a body and hands back the encoded text, which a mail
/// client still shows decoded: one `==` line hid a whole spam from every body rule.
///
/// ```
/// use mxguard::mail::lenient::quoted_printable_decode;
/// assert_eq!(quoted_printable_decode(b"Buy=20n=\r\now =3D cheap =XY\r\n"), b"Buy now = cheap =XY\r\n");
/// ```
pub fn quoted_printable_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        let (text, end): (&[u8], &[u8]) = if let Some(t) = line.strip_suffix(b"\r\n") {
            (t, b"\r\n")
        } else if let Some(t) = line.strip_suffix(b"\n") {
            (t, b"\n")
        } else {
            (line, b"")
        };
        let text = if end.is_empty() {
            text
        } else {
            let kept = text
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(0, |i| i + 1);
            &text[..kept]
        };
        let (text, soft) = match text.strip_suffix(b"=") {
            Some(t) if !end.is_empty() => (t, true),
            _ => (text, false),
        };
        let mut i = 0;
        while i < text.len() {
            let escaped = (text[i] == b'=')
                .then(|| escaped_byte(&text[i + 1..]))
                .flatten();
            match escaped {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    out.push(text[i]);
                    i += 1;
                }
            }
        }
        if !soft {
            out.extend_from_slice(end);
        }
    }
    out
}

/// The byte a quoted-printable escape stands for, read from what follows its `=`: two hex
/// digits (either case) and nothing else, as SpamAssassin's `=([0-9A-Fa-f]{2})`.
pub fn escaped_byte(after: &[u8]) -> Option<u8> {
    let digit = |i: usize| char::from(*after.get(i)?).to_digit(16);
    let byte = digit(0)? * 16 + digit(1)?;
    u8::try_from(byte).ok()
}

/// Whether `part` declares the transfer encoding `name` (any case, blanks around), whatever
/// mail-parser made of its body.
pub fn declares_encoding(part: &MessagePart<'_>, name: &str) -> bool {
    part.content_transfer_encoding()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(name))
}

/// The body of `part` of `message` as it was sent, still transfer-encoded.
pub fn raw_body<'m>(message: &'m Message<'_>, part: &MessagePart<'_>) -> Option<&'m [u8]> {
    let raw: &[u8] = message.raw_message.as_ref();
    let start = part.raw_body_offset() as usize;
    let end = (part.raw_end_offset() as usize).min(raw.len());
    raw.get(start..end.max(start))
}

/// A part rendered as text whose base64 or quoted-printable body mail-parser did not
/// decode as a mail client does: data it could not decode (it then hands back the encoded
/// bytes as text), or a label a client reads as that encoding and mail-parser does not
/// (`base64;`, `"base64"`). Decoded leniently from the raw part by the first label, as
/// SpamAssassin and mail clients do. The text and whether it is declared HTML; `None` for
/// every other part. A part rendered as text is what SpamAssassin renders (review: only
/// declared `text/…` parts were repaired, so a page sent as `application/octet-stream;
/// name="invoice.html"` with one stray character in its base64 reached the rules and the
/// classifier still encoded).
pub fn repaired_text(message: &Message<'_>, part: &MessagePart<'_>) -> Option<(String, bool)> {
    if !matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
        return None;
    }
    let encoding = first_label(part);
    let undecoded = part.is_encoding_problem || !encoding.is_parsers(part);
    if encoding == TransferEncoding::Identity
        || !undecoded
        || render_kind(message, part) == RenderKind::Skipped
    {
        return None;
    }
    let ctype = part.content_type();
    let is_html = ctype
        .and_then(|c| c.subtype())
        .is_some_and(|s| s.eq_ignore_ascii_case("html"));
    let bytes = raw_body(message, part)?;
    let charset = ctype.and_then(|c| c.attribute("charset"));
    // Base64 padded midway (a mailer that encodes each line on its own) reads as a mail
    // client shows it, group by group: read as zero bits, the padding put a NUL inside
    // words (review: `Cheap Vi\0agra`).
    let decoded = if encoding == TransferEncoding::Base64 && padded_midway(bytes) {
        base64_decode_by_group(bytes)
    } else {
        encoding.decode(bytes)
    };
    Some((
        without_nul(decode_charset(&decoded, charset)).into_owned(),
        is_html,
    ))
}

/// The text of a page a binary part holds (an `.html` file sent as
/// `application/octet-stream`, shown as a page): its bytes as a client saves the file
/// ([`file_bytes`]; a label mail-parser does not act on, such as `base64;`, left it
/// encoded: review), read in its declared charset.
pub fn page_text(message: &Message<'_>, part: &MessagePart<'_>) -> String {
    let charset = part.content_type().and_then(|c| c.attribute("charset"));
    without_nul(decode_charset(&file_bytes(message, part).data, charset)).into_owned()
}

/// The encoding a part's first `Content-Transfer-Encoding` field names, as mail clients
/// read it (Thunderbird and Python's `email` take the first field).
fn first_label(part: &MessagePart<'_>) -> TransferEncoding {
    part.headers
        .iter()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
        .and_then(|h| h.value.as_text())
        .map_or(TransferEncoding::Identity, TransferEncoding::of)
}

/// The token of a `Content-Transfer-Encoding` label that mail clients act on: its first,
/// without quotes, parameters or comments (`base64;`, `"8bit"`, `8bit (converted)`).
pub fn label_token(label: &str) -> &str {
    label
        .trim()
        .trim_start_matches('"')
        .split(|c: char| c == ';' || c == '(' || c == '"' || c.is_whitespace())
        .next()
        .unwrap_or_default()
}

/// A content transfer encoding, as a mail client acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    /// `7bit`, `8bit`, `binary`, none, or a label no client decodes.
    Identity,
    /// `base64`.
    Base64,
    /// `quoted-printable`.
    QuotedPrintable,
    /// `x-uuencode`, `uuencode`, `x-uue` or `uue`: Thunderbird decodes a part so labelled
    /// (Python's `email` too), and mail-parser leaves it encoded (review: a page or a zip
    /// sent so was judged as its encoded text).
    Uuencode,
}

impl TransferEncoding {
    /// The encoding a label's first token names: `base64;`, `"base64"` and `base64 (x)`
    /// read as `base64`, as mail clients read them.
    fn of(label: &str) -> TransferEncoding {
        let token = label_token(label);
        if token.eq_ignore_ascii_case("base64") {
            TransferEncoding::Base64
        } else if token.eq_ignore_ascii_case("quoted-printable") {
            TransferEncoding::QuotedPrintable
        } else if ["x-uuencode", "uuencode", "x-uue", "uue"]
            .iter()
            .any(|u| token.eq_ignore_ascii_case(u))
        {
            TransferEncoding::Uuencode
        } else {
            TransferEncoding::Identity
        }
    }

    /// Whether `label` says no more than this encoding's name: no comment, quote or
    /// parameter a reader could take otherwise.
    fn is_plain(label: &str) -> bool {
        let label = label.trim();
        label.eq_ignore_ascii_case("base64")
            || label.eq_ignore_ascii_case("quoted-printable")
            || matches!(
                TransferEncoding::of(label),
                TransferEncoding::Identity | TransferEncoding::Uuencode
            ) && !label.contains([';', '(', '"', ' ', '\t'])
    }

    /// Whether mail-parser decoded the part by this encoding.
    fn is_parsers(self, part: &MessagePart<'_>) -> bool {
        part.encoding
            == match self {
                TransferEncoding::Base64 => Encoding::Base64,
                TransferEncoding::QuotedPrintable => Encoding::QuotedPrintable,
                TransferEncoding::Identity => Encoding::None,
                // The parser has no uudecoder: what it gave is still encoded.
                TransferEncoding::Uuencode => return false,
            }
    }

    /// `raw` decoded leniently by this encoding.
    fn decode(self, raw: &[u8]) -> Vec<u8> {
        match self {
            TransferEncoding::Base64 => base64_decode(raw),
            TransferEncoding::QuotedPrintable => quoted_printable_decode(raw),
            // The first uuencoded block's file, as Thunderbird saves the part; a part with
            // no block stays as it is.
            TransferEncoding::Uuencode => super::uuencode::files(raw)
                .into_iter()
                .next()
                .map_or_else(|| raw.to_vec(), |f| f.data),
            TransferEncoding::Identity => raw.to_vec(),
        }
    }
}

/// A file-carrying part's bytes, as the readers that may save it decode them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBytes {
    /// As mail clients save it: by its first `Content-Transfer-Encoding` field (as
    /// Thunderbird and Python's `email` take it; mail-parser takes the last).
    pub data: Vec<u8>,
    /// By each other encoding its fields name, when they disagree with the first: a reader
    /// that takes the last field (mail-parser, and what is built on it) saves those.
    pub other_readings: Vec<Vec<u8>>,
    /// A reader may decode the part otherwise: a label with more than its token, fields
    /// naming different encodings, data mail-parser could not decode, or base64 padded
    /// midway.
    pub doubtful: bool,
}

/// The bytes of a part carrying a file as mail clients save them: transfer-decoded
/// leniently (a stray character in base64, or a sloppy label, does not leave the file
/// encoded, as mail-parser leaves it) and never charset-decoded (mail-parser turns a text
/// part's bytes into text, which corrupts a file sent as `text/plain; name=docs.zip`).
pub fn file_bytes(message: &Message<'_>, part: &MessagePart<'_>) -> FileBytes {
    let labels: Vec<&str> = part
        .headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentTransferEncoding)
        .filter_map(|h| h.value.as_text())
        .collect();
    let first = labels
        .first()
        .map_or(TransferEncoding::Identity, |l| TransferEncoding::of(l));
    let mut others: Vec<TransferEncoding> = Vec::new();
    for encoding in labels.iter().map(|l| TransferEncoding::of(l)) {
        if encoding != first && !others.contains(&encoding) {
            others.push(encoding);
        }
    }
    // A part mail-parser could not decode (a stray character in base64) is read otherwise
    // by some reader too.
    let doubtful = !others.is_empty()
        || !labels.iter().all(|l| TransferEncoding::is_plain(l))
        || part.is_encoding_problem;
    let binary = matches!(part.body, PartType::Binary(_) | PartType::InlineBinary(_));
    let raw = raw_body(message, part);
    let decoded_here = raw.is_some() && (!binary || doubtful || !first.is_parsers(part));
    let data = match raw {
        Some(raw) if decoded_here => first.decode(raw),
        _ => part.contents().to_vec(),
    };
    let mut other_readings: Vec<Vec<u8>> = match raw {
        Some(raw) => others.into_iter().map(|e| e.decode(raw)).collect(),
        None => Vec::new(),
    };
    // Padding inside base64 data: as SpamAssassin reads it and as mail clients save it.
    let mut doubtful = doubtful;
    if let Some(raw) = raw.filter(|raw| first == TransferEncoding::Base64 && padded_midway(raw)) {
        // `data` is the first reading already when it was decoded here.
        let first_reading = (!decoded_here).then(|| base64_decode(raw));
        for reading in first_reading
            .into_iter()
            .chain([base64_decode_by_group(raw)])
        {
            if reading != data && !other_readings.contains(&reading) {
                other_readings.push(reading);
                doubtful = true;
            }
        }
    }
    FileBytes {
        data,
        other_readings,
        doubtful,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder (its fast path for whole groups included) reads as an independent
    /// decoder does: over random mixes of the alphabet, padding, blanks and junk.
    #[test]
    fn whole_groups_decode_as_an_independent_decoder_does() {
        /// The same reading through the `base64` crate: the data up to its last alphabet
        /// character, `=` read as `A`, other bytes dropped; a lone last character holds
        /// no byte.
        fn through_the_crate(data: &[u8]) -> Vec<u8> {
            use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
            use base64::Engine;
            let lenient = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_padding_mode(DecodePaddingMode::RequireNone)
                    .with_decode_allow_trailing_bits(true),
            );
            let last = data.iter().rposition(|&c| value(c).is_some());
            let data = last.map_or(&data[..0], |i| &data[..=i]);
            let mut clean: Vec<u8> = data
                .iter()
                .filter_map(|&c| match c {
                    b'=' => Some(b'A'),
                    _ => value(c).map(|_| c),
                })
                .collect();
            if clean.len() % 4 == 1 {
                clean.pop();
            }
            lenient.decode(&clean).unwrap()
        }
        let alphabet = b"ABCXYZabcxyz0189+/=\r\n \t*-.";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Mostly the alphabet, as real parts are.
                    let pick = (seed % 64) as usize;
                    alphabet[if pick < 48 {
                        pick % 12
                    } else {
                        pick % alphabet.len()
                    }]
                })
                .collect();
            assert_eq!(
                base64_decode(&data),
                through_the_crate(&data),
                "{:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }

    /// Review of the shared escape reader: `u8::from_str_radix` takes a leading `+`, so
    /// `=+A` was decoded as a line feed; SpamAssassin keeps it as written.
    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        assert_eq!(escaped_byte(b"3d"), Some(b'='));
        assert_eq!(escaped_byte(b"E9x"), Some(0xe9));
        assert_eq!(escaped_byte(b"+A"), None);
        assert_eq!(escaped_byte(b"4"), None);
        assert_eq!(quoted_printable_decode(b"a=+Ab"), b"a=+Ab");
    }

    #[test]
    fn quoted_printable_is_decoded_as_spamassassin_does() {
        assert_eq!(
            quoted_printable_decode(
                b"=44=65=61=72 =66riend  \r\nsoft=\r\nbreak=3d=3D\n==\r\n=A=\r\nend="
            ),
            // `=` at a line end is a soft break, so `==` keeps one `=` and joins lines.
            b"Dear friend\r\nsoftbreak==\n==Aend="
        );
        assert_eq!(quoted_printable_decode(b""), b"");
        assert_eq!(quoted_printable_decode(b"=\n=\r\nx"), b"x");
    }

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
