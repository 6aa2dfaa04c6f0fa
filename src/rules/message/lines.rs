//! The texts of `body` and `rawbody` rules: a part's head and tail within the scan limits,
//! paragraphs as lines of bounded length, raw text cut into pieces as SpamAssassin cuts it.

use super::MAX_BODY_LINE_LENGTH;

/// `s` itself when it is at most `2 * max` bytes, else its first and last `max` bytes
/// (at character boundaries) as separate paragraphs, and whether anything was left out.
pub(super) fn head_and_tail(s: &str, max: usize) -> (String, bool) {
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

pub(super) fn normalize_newlines(s: &str) -> String {
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
pub(super) fn render_body_lines(subject: &str, text: &str) -> Vec<String> {
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
pub(super) fn cut_into_pieces<'a>(mut text: &'a [u8], out: &mut Vec<&'a [u8]>) {
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
