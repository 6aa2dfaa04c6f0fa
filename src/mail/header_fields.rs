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
        !memchr::memchr(b':', field)
            .is_some_and(|colon| drop(field[..colon].trim_ascii(), &field[colon + 1..]))
    });
    match kept {
        Some(mut out) => {
            out.extend_from_slice(&message[rest..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(message),
    }
}

/// The header section without its lines that are no field (no colon on the line, as
/// `X-Junk`), their continuation lines with them, and where the rest of the message (the
/// empty line, then the body) starts; `None` when there is no such line. mail-auth ends
/// the header section at one, where mail-parser (the rules) and many readers skip it: a
/// `From:` written after one was shown to the reader but never judged by DMARC. Only the
/// header section is copied: the body may be a mapped file of many megabytes.
pub fn header_without_nameless_lines(message: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (kept, rest) = keep_fields(message, |field| {
        memchr::memchr(b':', first_line(field)).is_some()
    });
    kept.map(|header| (header, rest))
}

/// A field's first line (all of it when it has one line).
fn first_line(field: &[u8]) -> &[u8] {
    match memchr::memchr(b'\n', field) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// Walks the header section (CRLF or LF line ends; it ends at the first empty line),
/// keeping the fields `keep` accepts. Returns the kept fields when some field was left
/// out (`None` when all were kept), and where the header section ends. Lines before the
/// first field that start with a blank continue no field and are always left out.
fn keep_fields(message: &[u8], mut keep: impl FnMut(&[u8]) -> bool) -> (Option<Vec<u8>>, usize) {
    let mut kept: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            break;
        }
        // One field: its first line plus every continuation line (starting with SP or HT).
        let mut end = pos;
        loop {
            end = match memchr::memchr(b'\n', &message[end..]) {
                Some(i) => end + i + 1,
                None => message.len(),
            };
            if end >= message.len() || !matches!(message[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &message[pos..end];
        let orphan = matches!(field.first(), Some(b' ' | b'\t'));
        if orphan || !keep(field) {
            kept.get_or_insert_with(|| message[..pos].to_vec());
        } else if let Some(out) = kept.as_mut() {
            out.extend_from_slice(field);
        }
        pos = end;
    }
    (kept, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_fields_go_whole_and_the_body_stays() {
        let m = b"A: 1\r\nX-Drop: a\r\n\tb\r\nB: 2\r\n\r\nX-Drop: body\r\n";
        let out = remove_fields(m, |name, _| name.eq_ignore_ascii_case(b"x-drop"));
        assert_eq!(&*out, b"A: 1\r\nB: 2\r\n\r\nX-Drop: body\r\n");
    }

    #[test]
    fn lines_that_are_no_field_go_with_their_continuations() {
        let m = b"Subject: x\r\nX-Junk\r\n more: y\r\nFrom: a@b.test\r\n\r\nNo colon\r\n";
        let (header, rest) = header_without_nameless_lines(m).unwrap();
        assert_eq!(header, b"Subject: x\r\nFrom: a@b.test\r\n");
        assert_eq!(&m[rest..], b"\r\nNo colon\r\n");
        let clean = b"A: 1\r\nB: 2\r\n\r\nbody\r\n";
        assert!(header_without_nameless_lines(clean).is_none());
        // To `remove_fields` a name folded before its colon is still that field.
        let folded = b"X-Drop\r\n : a\r\nB: 2\r\n\r\nbody\r\n";
        let out = remove_fields(folded, |name, _| name.starts_with(b"X-Drop"));
        assert_eq!(&*out, b"B: 2\r\n\r\nbody\r\n");
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
