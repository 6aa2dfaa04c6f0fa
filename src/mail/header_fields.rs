//! Header fields of a raw message: finding whole fields (folded lines included) and
//! removing the ones a caller names, without touching the body.

use std::borrow::Cow;

/// The raw value of a field mail-parser found (after the colon, folding included), sliced
/// from the message it parsed; cut at the message's end, empty if its offsets are not there.
pub fn raw_value<'m>(message: &'m [u8], field: &mail_parser::Header<'_>) -> &'m [u8] {
    let end = (field.offset_end as usize).min(message.len());
    message
        .get(field.offset_start as usize..end)
        .unwrap_or_default()
}

/// [`raw_value`] as text, 8-bit bytes that are not UTF-8 read as Windows-1252, as mail
/// clients (and SpamAssassin) read a raw Latin-1 field: what the rules and the
/// classifier's tokens both read of a field.
pub fn value_as_read<'m>(message: &'m [u8], field: &mail_parser::Header<'_>) -> Cow<'m, str> {
    let bytes = raw_value(message, field);
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(super::lenient::utf8_or_windows_1252(bytes)),
    }
}

/// Removes every header field for which `drop(name, value)` is true. `name` is the field
/// name as written (compare case-insensitively), `value` everything after the colon,
/// continuation lines included. CRLF or LF line ends; the header section ends at the first
/// empty line. Lines before the first field that start with a blank continue no field: they
/// are removed too, or they would continue whatever header is put before the message.
/// Borrowed when nothing was removed.
pub fn remove_fields<'m>(
    message: &'m [u8],
    mut drop: impl FnMut(&[u8], &[u8]) -> bool,
) -> Cow<'m, [u8]> {
    let (kept, rest) = keep_fields(message, |field| {
        // The name ends at the first colon, wherever it is (a name folded before its
        // colon is still that field to a reader that unfolds first).
        let dropped = memchr::memchr(b':', field)
            .is_some_and(|colon| drop(field[..colon].trim_ascii(), &field[colon + 1..]));
        if dropped {
            Field::Drop
        } else {
            Field::Keep
        }
    });
    match kept {
        Some(mut out) => {
            out.extend_from_slice(&message[rest..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(message),
    }
}

/// The header section as mail readers read it, for a parser stricter than they are, and
/// where the rest of the message (the empty line, then the body) starts; `None` when it
/// is already so. mail-auth ends the header section at a line that is no field (no colon,
/// as `X-Junk`), and knows a field only by a name followed at once by its colon, where
/// mail-parser (the rules) and readers skip such a line and take `From :` or `From\t:`
/// (RFC 5322 §4.5's obsolete syntax, which a reader must accept) as the From field: a
/// `From` written so was shown to the reader but never judged by DMARC. A name folded
/// before its colon is no field to mail-parser either, and goes. So lines that are no field go, with their continuation lines, and a
/// name's blanks before its colon go (relaxed DKIM drops them too). Only the header
/// section is copied: the body may be a mapped file of many megabytes.
pub fn header_as_readers_read(message: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (kept, rest) = keep_fields(message, |field| match as_readers_read(field) {
        None => Field::Drop,
        Some((name, colon)) if name == colon => Field::Keep,
        Some((name, colon)) => {
            let mut out = Vec::with_capacity(field.len());
            out.extend_from_slice(&field[..name]);
            out.extend_from_slice(&field[colon..]);
            Field::Replace(out)
        }
    });
    kept.map(|header| (header, rest))
}

/// How readers read a header unit (a line and its continuation lines): the length of its
/// field name and where its colon is, or `None` for a line that is no field to them (no
/// colon on its first line, or not one name before it).
pub fn as_readers_read(unit: &[u8]) -> Option<(usize, usize)> {
    let colon = memchr::memchr(b':', first_line(unit))?;
    let name = unit[..colon].trim_ascii_end();
    let one_name = !name.is_empty() && !name.iter().any(|b| b.is_ascii_whitespace());
    one_name.then_some((name.len(), colon))
}

/// A field's first line (all of it when it has one line).
pub fn first_line(field: &[u8]) -> &[u8] {
    match memchr::memchr(b'\n', field) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// Calls `each` with every whole field of the header section at the start of `message`
/// (folded lines included; the section ends at the first empty line), as
/// [`remove_fields`] walks them.
pub fn for_each_field(message: &[u8], mut each: impl FnMut(&[u8])) {
    keep_fields(message, |field| {
        each(field);
        Field::Keep
    });
}

/// `message` for mail-parser, whose date parser reads two bytes past a zone of one or two
/// letters (`Date: ... Z` then CRLF, `... UT` then LF) into the next field, which then
/// vanishes from its header list: two blanks are put before the line end of each `Date`
/// and `Resent-Date` field that ends in a letter. Borrowed when there is none.
pub fn with_date_zones_padded(message: &[u8]) -> Cow<'_, [u8]> {
    let (kept, rest) = keep_fields(message, |field| {
        let Some((len, _)) = as_readers_read(field) else {
            return Field::Keep;
        };
        let name = &field[..len];
        let is_date =
            name.eq_ignore_ascii_case(b"date") || name.eq_ignore_ascii_case(b"resent-date");
        let value = field.trim_ascii_end();
        if !is_date || !value.last().is_some_and(u8::is_ascii_alphabetic) {
            return Field::Keep;
        }
        let mut out = Vec::with_capacity(field.len() + 2);
        out.extend_from_slice(value);
        out.extend_from_slice(b"  ");
        out.extend_from_slice(&field[value.len()..]);
        Field::Replace(out)
    });
    match kept {
        Some(mut out) => {
            out.extend_from_slice(&message[rest..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(message),
    }
}

/// The lines of the header section that some reader may take for no field, each with its
/// continuation lines and line end: all but a strict RFC 5322 field (a name of printable
/// ASCII, its colon right after it, on the first line). Mail-auth and Python's `email` end
/// the header section at such a line and read what follows as the body (`URGENT wire:
/// today`, `Note : wire now`, a name with 8-bit bytes; reviews). Lines before the first
/// field that start with a blank are among them. What signs these lines may take a field
/// a lenient reader reads (`Subject : x`) twice, which is harmless.
pub fn non_fields(message: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(end) = unit_end(message, pos) {
        let unit = &message[pos..end];
        if !is_strict_field(unit) {
            out.push(unit);
        }
        pos = end;
    }
    out
}

/// A field every reader reads as one: printable ASCII other than `:` up to a colon on the
/// unit's first line.
fn is_strict_field(unit: &[u8]) -> bool {
    match memchr::memchr(b':', first_line(unit)) {
        Some(colon) => colon > 0 && unit[..colon].iter().all(|b| matches!(b, 0x21..=0x7e)),
        None => false,
    }
}

/// The end of the header unit starting at `pos` (a line plus every continuation line, which
/// starts with SP or HT); `None` where the header section ends (an empty line or the end).
fn unit_end(message: &[u8], pos: usize) -> Option<usize> {
    let rest = message.get(pos..).filter(|r| !r.is_empty())?;
    if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
        return None;
    }
    let mut end = pos;
    loop {
        end = match memchr::memchr(b'\n', &message[end..]) {
            Some(i) => end + i + 1,
            None => message.len(),
        };
        if end >= message.len() || !matches!(message[end], b' ' | b'\t') {
            return Some(end);
        }
    }
}

/// What becomes of one header field.
enum Field {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

/// Walks the header section (CRLF or LF line ends; it ends at the first empty line),
/// keeping, dropping or replacing each field as `keep` says. Returns the fields that
/// result when one was dropped or replaced (`None` when all were kept), and where the
/// header section ends. Lines before the first field that start with a blank continue no
/// field and are always left out.
fn keep_fields(message: &[u8], mut keep: impl FnMut(&[u8]) -> Field) -> (Option<Vec<u8>>, usize) {
    let mut kept: Option<Vec<u8>> = None;
    let mut pos = 0;
    while let Some(end) = unit_end(message, pos) {
        let field = &message[pos..end];
        let orphan = matches!(field.first(), Some(b' ' | b'\t'));
        match if orphan { Field::Drop } else { keep(field) } {
            Field::Drop => {
                kept.get_or_insert_with(|| message[..pos].to_vec());
            }
            Field::Replace(new) => {
                kept.get_or_insert_with(|| message[..pos].to_vec())
                    .extend_from_slice(&new);
            }
            Field::Keep => {
                if let Some(out) = kept.as_mut() {
                    out.extend_from_slice(field);
                }
            }
        }
        pos = end;
    }
    (kept, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mail-parser took the field after a `Date` with a one-letter zone into it.
    #[test]
    fn date_zones_are_padded_for_the_parser() {
        for m in [
            &b"Date: Mon, 1 Jan 2024 00:00:00 Z\r\nSubject: x\r\n\r\nb\r\n"[..],
            b"Resent-Date: Mon, 1 Jan 2024 00:00:00 UT\nSubject: x\n\nb\n",
        ] {
            let padded = with_date_zones_padded(m);
            assert_eq!(padded.len(), m.len() + 2);
            let parsed = mail_parser::MessageParser::default()
                .parse(&padded)
                .unwrap();
            assert_eq!(parsed.subject(), Some("x"));
        }
        let plain = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: Z\r\n\r\nDate: Z\r\n";
        assert!(matches!(with_date_zones_padded(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn folded_fields_go_whole_and_the_body_stays() {
        let m = b"A: 1\r\nX-Drop: a\r\n\tb\r\nB: 2\r\n\r\nX-Drop: body\r\n";
        let out = remove_fields(m, |name, _| name.eq_ignore_ascii_case(b"x-drop"));
        assert_eq!(&*out, b"A: 1\r\nB: 2\r\n\r\nX-Drop: body\r\n");
    }

    #[test]
    fn lines_that_are_no_field_go_with_their_continuations() {
        let m = b"Subject: x\r\nX-Junk\r\n more: y\r\nFrom: a@b.test\r\n\r\nNo colon\r\n";
        let (header, rest) = header_as_readers_read(m).unwrap();
        assert_eq!(header, b"Subject: x\r\nFrom: a@b.test\r\n");
        assert_eq!(&m[rest..], b"\r\nNo colon\r\n");
        let clean = b"A: 1\r\nB: 2\r\n\r\nbody\r\n";
        assert!(header_as_readers_read(clean).is_none());
        // To `remove_fields` a name folded before its colon is still that field.
        let folded = b"X-Drop\r\n : a\r\nB: 2\r\n\r\nbody\r\n";
        let out = remove_fields(folded, |name, _| name.starts_with(b"X-Drop"));
        assert_eq!(&*out, b"B: 2\r\n\r\nbody\r\n");
    }

    /// Regression (review): `From : ceo@victim.test` escaped DMARC, which knew no field
    /// of that name, while mail-parser and readers show it as the From field.
    #[test]
    fn blanks_before_a_names_colon_go_as_readers_read_the_field() {
        for m in [
            &b"From : a@victim.test\r\nTo: b@x.test\r\n\r\nbody\r\n"[..],
            b"From\t: a@victim.test\r\nTo: b@x.test\r\n\r\nbody\r\n",
        ] {
            let (header, rest) = header_as_readers_read(m).unwrap();
            assert_eq!(header, b"From: a@victim.test\r\nTo: b@x.test\r\n", "{m:?}");
            assert_eq!(&m[rest..], b"\r\nbody\r\n");
            // The reading mail-parser (the rules) makes of the same message.
            let parsed = mail_parser::MessageParser::default().parse(m).unwrap();
            let from = parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address());
            assert_eq!(from, Some("a@victim.test"), "{m:?}");
        }
        // Two words before a colon are no field name.
        let m = b"X-Junk\r\n more: y\r\nA: 1\r\n\r\n";
        assert_eq!(header_as_readers_read(m).unwrap().0, b"A: 1\r\n");
    }

    #[test]
    fn continuation_lines_of_no_field_go() {
        let m = b"\tforged ALL_TRUSTED=-100\r\n more\r\nA: 1\r\n\r\n\tbody\r\n";
        let out = remove_fields(m, |_, _| false);
        assert_eq!(&*out, b"A: 1\r\n\r\n\tbody\r\n");
    }

    #[test]
    fn nothing_removed_borrows() {
        let m = b"A: 1\n\nbody\n";
        assert!(matches!(remove_fields(m, |_, _| false), Cow::Borrowed(_)));
    }
}
