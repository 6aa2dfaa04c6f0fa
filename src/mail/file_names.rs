//! File names a mail client may give a part, read from its raw header fields as leniently
//! as the most lenient client reads them.
//!
//! mail-parser reads `Content-Disposition` and `Content-Type` parameters strictly, and a
//! client reads them another way: Thunderbird prefers RFC 2231 values with or without
//! continuations over a plain one, takes a name after a comma instead of a semicolon or
//! without a disposition type, and falls back to the `Content-Name` and `X-Sun-Data-Name`
//! fields. With `filename="ok.txt"; filename*0="evil."; filename*1="exe"` mail-parser gave
//! `ok.txtexe` and `evil.` while Thunderbird saves `evil.exe`. Every reading is returned
//! here, so the attachment policy judges the name whichever a client shows.

use crate::mail::encoded_words::decode_unstructured;
use crate::mail::lenient::decode_charset;
use std::collections::BTreeMap;

/// Fields whose whole value is a file name.
const NAME_FIELDS: [&str; 2] = ["content-name", "x-sun-data-name"];
/// Fields whose `filename` and `name` parameters are file names.
const PARAMETER_FIELDS: [&str; 2] = ["content-disposition", "content-type"];
/// `filename` and `name` parameters kept from a field's value, at most: a hostile field
/// of thousands of them costs no more (the others are skipped, never kept).
const MAX_PARAMETERS: usize = 64;
/// Continuation pieces of one name, at most: Thunderbird's (Gecko's `MAX_CONTINUATIONS`,
/// pieces 0 to 999; RFC 2231 sets no limit), since a name cut shorter than a client saves
/// it loses its extension (review: 64 pieces of `a`, then `.js`, were read as `aaa…a`).
/// Each client stops at a gap too.
const MAX_PIECES: usize = 1000;

/// Whether a field of this name may give a file a name (the cheap test before reading
/// its value).
pub fn may_name_a_file(name: &str) -> bool {
    NAME_FIELDS
        .iter()
        .chain(&PARAMETER_FIELDS)
        .any(|f| f.eq_ignore_ascii_case(name.trim()))
}

/// Whether one of `names` has the extension `ext` (any case) once the trailing dots and
/// blanks Windows drops are dropped: how clients pick a saved message (`.eml`) or an
/// S/MIME object (`.p7m`) by its name.
pub fn any_has_extension(names: &[String], ext: &str) -> bool {
    names.iter().any(|name| {
        name.trim_end_matches(['.', ' '])
            .rsplit_once('.')
            .is_some_and(|(_, e)| e.eq_ignore_ascii_case(ext))
    })
}

/// The names the field `name: value` gives a file (`value` raw, folding included), in
/// the order read; none for other fields.
pub fn in_field(name: &str, value: &str) -> Vec<String> {
    let name = name.trim().to_ascii_lowercase();
    if NAME_FIELDS.contains(&name.as_str()) {
        // The last bytes after trimming, where a name ends: the first ones of a value
        // padded with 70 KB of blank folded lines held nothing, and ` evil.js` after
        // them, which a client that unfolds and trims shows, went unjudged (review).
        let value = value.trim();
        let from = value.ceil_char_boundary(value.len().saturating_sub(MAX_VALUE_BYTES));
        let plain = decode_unstructured(&unquote(value[from..].trim()));
        return Some(plain).filter(|n| !n.is_empty()).into_iter().collect();
    }
    if !PARAMETER_FIELDS.contains(&name.as_str()) {
        return Vec::new();
    }
    // The whole value, in one pass keeping only the parameters that name a file: padding
    // of any length (junk parameters, a quote that flips the reading of what follows)
    // hides no piece of the real name (review).
    // Read twice where a quote stands: with a quote opening a quoted string anywhere (as
    // mail-parser reads it), and only where a value starts (as Thunderbird reads it):
    // `x=a"b; filename="evil.js"` is one parameter to the first reading and a file to the
    // second (review). Without a quote both readings are the same.
    let mut names = names_in_parameters(parameters(value, Quotes::Anywhere));
    if !value.contains('"') {
        return names;
    }
    for name in names_in_parameters(parameters(value, Quotes::OpeningValues)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Where a double quote opens a quoted string in a parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quotes {
    /// Anywhere outside one (mail-parser).
    Anywhere,
    /// Only where a value starts, after `=` and blanks (Thunderbird); elsewhere a quote is
    /// a character of the value.
    OpeningValues,
}

/// Bytes of a whole-value name field (`Content-Name`) read, at most: a name is judged by
/// its last 4,096 bytes (`PATH_MAX`). Parameter fields are read whole in one pass that
/// keeps only what names a file (review: a 24 MB message's one field once took 900 MB to
/// split, and a cut at 64 KiB let padding hide the name's pieces).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Distinct names, at most, [`in_raw_fields`] returns: the attachment policy's bound on
/// names read from archive headers, judging each costing about a microsecond.
pub const MAX_NAMES_IN_RAW: usize = 100_000;

/// The names given by every field in `raw` that may name a file (a line starting with the
/// field's name and a colon, with its continuation lines), wherever it stands: for the
/// part of a message past the parser's limits (parts, nesting), whose attachments mail
/// clients still show and whose names must still be judged. At most
/// [`MAX_NAMES_IN_RAW`] distinct names.
pub fn in_raw_fields(raw: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    // One pass: a field's value is read to the end of its continuation lines and the
    // walk goes on after it, so no byte is read twice (review: a field continued by a
    // run of lines that each looked like a field again was read once per line, quadratic
    // in time and memory: 216 KB took 1.9 GB).
    let mut at = 0;
    while at < raw.len() {
        let line_end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |lf| at + lf);
        let line = &raw[at..line_end];
        let field = line
            .iter()
            .take(32)
            .position(|&b| b == b':')
            .filter(|_| !matches!(line.first(), Some(b' ' | b'\t')))
            .map(|colon| String::from_utf8_lossy(&line[..colon]))
            .filter(|name| may_name_a_file(name));
        let Some(name) = field else {
            at = line_end + 1;
            continue;
        };
        let value_start = at + name.len() + 1;
        // The value: to the end of the line, and the continuation lines after it.
        let mut end = line_end;
        while matches!(raw.get(end + 1), Some(b' ' | b'\t')) {
            end = memchr::memchr(b'\n', &raw[end + 1..]).map_or(raw.len(), |lf| end + 1 + lf);
        }
        let value = raw.get(value_start..end).unwrap_or_default();
        let value = String::from_utf8_lossy(value);
        for found in in_field(&name, &value) {
            if seen.insert(found.clone()) {
                if names.len() == MAX_NAMES_IN_RAW {
                    return names;
                }
                names.push(found);
            }
        }
        at = end + 1;
    }
    names
}

/// A plain or extended (`*=`) value as written: its name (lower case, without `*`),
/// whether it is percent-encoded, and its value.
struct WholeValue {
    name: String,
    extended: bool,
    value: String,
}

/// The parameters of a field's value that name a file: whole values, and continuation
/// pieces by name and number (the first of each: the one joined).
#[derive(Default)]
struct Parameters {
    whole: Vec<WholeValue>,
    pieces: BTreeMap<(String, usize), (bool, String)>,
}

/// The `filename` and `name` values of a parameter list: each plain value, each extended
/// (`*=`) one, and each run of continuation pieces joined in order.
fn names_in_parameters(parameters: Parameters) -> Vec<String> {
    let mut names: Vec<String> = parameters
        .whole
        .iter()
        .map(|w| {
            if w.extended {
                extended_value(&w.value, None)
            } else {
                decode_unstructured(&w.value)
            }
        })
        .collect();
    let pieces = &parameters.pieces;
    for attribute in ["filename", "name"] {
        let mut joined = String::new();
        let mut charset: Option<String> = None;
        let mut found = false;
        for n in 0..MAX_PIECES {
            let Some((extended, value)) = pieces.get(&(attribute.to_string(), n)) else {
                break;
            };
            found = true;
            if *extended {
                if n == 0 {
                    charset = value.split('\'').next().map(str::to_owned);
                    joined.push_str(&extended_value(value, None));
                } else {
                    joined.push_str(&percent_decoded(value, charset.as_deref()));
                }
            } else {
                joined.push_str(value);
            }
        }
        if found {
            names.push(joined);
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for name in names {
        // Encoded words in an RFC 2231 value without a charset, or in joined pieces, are
        // decoded by Thunderbird (review: `filename*=''%3D%3FUTF-8%3FB%3FZXZpbC5leGU%3D%3F%3D`
        // is saved as `evil.exe`): both readings are judged.
        let decoded = name.contains("=?").then(|| decode_unstructured(&name));
        for name in std::iter::once(name).chain(decoded) {
            let name = name.trim().to_string();
            if !name.is_empty() && !unique.contains(&name) {
                unique.push(name);
            }
        }
    }
    unique
}

/// The `filename` and `name` parameters of a field's value, separated by `;` or `,`
/// outside quotes (the first token, a disposition type or MIME type, has no `=` and is
/// skipped; a list without one is read too).
fn parameters(value: &str, quotes: Quotes) -> Parameters {
    let mut found = Parameters::default();
    // Whole values kept; repeats of one are skipped and count for nothing, and pieces of
    // a continuation never count: 64 copies of `filename="a.txt"` hid the pieces after
    // them (review).
    let mut last_skipped: BTreeMap<(String, bool), String> = BTreeMap::new();
    for_each_part_outside_quotes(value, quotes, |token| {
        let Some((key, raw)) = token.split_once('=') else {
            return;
        };
        // Folding is whitespace; a key that names no file is dropped before any copy.
        let key = key.trim_matches(|c: char| c.is_whitespace());
        let lower = key.get(..4).map(str::to_ascii_lowercase);
        if !matches!(lower.as_deref(), Some("file") | Some("name")) {
            return;
        }
        let key = key.to_ascii_lowercase();
        let (key, extended) = match key.strip_suffix('*') {
            Some(k) => (k.to_string(), true),
            None => (key, false),
        };
        let (name, piece) = match key.split_once('*') {
            Some((name, n)) => match n.parse::<usize>() {
                Ok(n) => (name.to_string(), Some(n)),
                Err(_) => return,
            },
            None => (key, None),
        };
        if name != "filename" && name != "name" {
            return;
        }
        let read = || unquote(raw.trim().replace(['\r', '\n'], " ").trim());
        match piece {
            // Past the pieces a name is joined from: never read.
            Some(n) if n >= MAX_PIECES => {}
            // The first of a piece is the one joined.
            Some(n) => {
                found
                    .pieces
                    .entry((name, n))
                    .or_insert_with(|| (extended, read()));
            }
            None if found.whole.len() >= MAX_PARAMETERS => {
                // A reader taking the last value saves this one.
                last_skipped.insert((name, extended), read());
            }
            None => {
                let value = read();
                let repeat = found
                    .whole
                    .iter()
                    .any(|w| w.name == name && w.extended == extended && w.value == value);
                if !repeat {
                    found.whole.push(WholeValue {
                        name,
                        extended,
                        value,
                    });
                }
            }
        }
    });
    for ((name, extended), value) in last_skipped {
        found.whole.push(WholeValue {
            name,
            extended,
            value,
        });
    }
    found
}

/// Calls `each` with every part of `s` between `;` and `,` outside double quotes (a
/// backslash escapes in quotes; `quotes` says where one opens), as it goes: nothing is
/// collected, whatever the length.
fn for_each_part_outside_quotes(s: &str, quotes: Quotes, mut each: impl FnMut(&str)) {
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    // After `=` and the blanks that follow it: where a value starts.
    let mut value_starts = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' && (quoted || quotes == Quotes::Anywhere || value_starts) {
            quoted = !quoted;
        } else if !quoted && (c == ';' || c == ',') {
            each(&s[start..i]);
            start = i + 1;
        }
        if !quoted {
            value_starts = c == '=' || (value_starts && c.is_whitespace());
        } else {
            value_starts = false;
        }
    }
    each(&s[start..]);
}

/// A value without its surrounding quotes and with its backslash escapes undone; a value
/// whose closing quote is missing is read to its end, as clients read it.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_string();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An RFC 2231 extended value `charset'language'percent-encoded`, decoded (a value
/// without the two quotes is taken as percent-encoded text in `charset`, else UTF-8).
fn extended_value(value: &str, charset: Option<&str>) -> String {
    let mut parts = value.splitn(3, '\'');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(cs), Some(_language), Some(text)) => {
            percent_decoded(text, Some(cs).filter(|c| !c.is_empty()))
        }
        _ => percent_decoded(value, charset),
    }
}

/// Percent-decoded bytes read in `charset` as a text part's are
/// ([`decode_charset`]).
fn percent_decoded(text: &str, charset: Option<&str>) -> String {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(text).collect();
    decode_charset(&bytes, charset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(field: &str, value: &str) -> Vec<String> {
        in_field(field, value)
    }

    #[test]
    fn continuations_beside_a_plain_value_are_joined_as_clients_join_them() {
        let got = names(
            "Content-Disposition",
            " attachment; filename=\"ok.txt\"; filename*0=\"evil.\"; filename*1=\"exe\"",
        );
        assert_eq!(got, ["ok.txt", "evil.exe"]);
        let got = names(
            "Content-Type",
            " application/octet-stream; name=\"ok.txt\"; name*1=\"exe\"; name*0=\"evil.\"",
        );
        assert_eq!(got, ["ok.txt", "evil.exe"]);
        // Extended pieces, in another charset.
        let got = names(
            "Content-Disposition",
            " attachment; filename*0*=iso-8859-1''r%E9sum%E9; filename*1*=%2Eexe",
        );
        assert_eq!(got, ["r\u{e9}sum\u{e9}.exe"]);
    }

    /// Regression (review): a quote inside an unquoted value opened a quoted string, so
    /// the `;` after it and the real name were one parameter of another name; Thunderbird
    /// opens a quote only where a value starts and saves `evil.js`.
    #[test]
    fn a_quote_inside_an_unquoted_value_hides_no_name() {
        assert_eq!(
            names(
                "Content-Disposition",
                " attachment; x=a\"b; filename=\"evil.js\""
            ),
            ["evil.js"]
        );
        // Quotes that open values read as before, by both readings.
        assert_eq!(
            names(
                "Content-Disposition",
                " attachment; x=\"a;b\"; filename= \"ok;.txt\""
            ),
            ["ok;.txt"]
        );
    }

    /// Regression (review): encoded words in an RFC 2231 value without a charset, or
    /// across joined pieces, were left encoded: no extension to judge, while Thunderbird
    /// decodes them and saves `evil.exe`.
    #[test]
    fn encoded_words_inside_rfc_2231_values_are_decoded_too() {
        let got = names(
            "Content-Disposition",
            " attachment; filename*=''%3D%3FUTF-8%3FB%3FZXZpbC5leGU%3D%3F%3D",
        );
        assert!(got.contains(&"evil.exe".to_string()), "{got:?}");
        let got = names(
            "Content-Disposition",
            " attachment; filename*0=\"=?UTF-8?B?ZXZpbDE\"; filename*1=\"uZXhl?=\"",
        );
        assert!(got.contains(&"evil1.exe".to_string()), "{got:?}");
    }

    #[test]
    fn names_without_a_type_after_a_comma_or_in_their_own_field_are_read() {
        assert_eq!(
            names("Content-Disposition", " filename=\"evil.exe\""),
            ["evil.exe"]
        );
        assert_eq!(
            names("Content-Disposition", " attachment, filename=\"evil.exe\""),
            ["evil.exe"]
        );
        assert_eq!(
            names("Content-Type", " application/octet-stream, name=evil.exe"),
            ["evil.exe"]
        );
        assert_eq!(names("Content-Name", " \"evil.exe\""), ["evil.exe"]);
        assert_eq!(names("X-Sun-Data-Name", " evil.exe\r\n"), ["evil.exe"]);
        assert!(names("Subject", " filename=evil.exe").is_empty());
    }

    #[test]
    fn quoting_encoded_words_and_extended_values_are_undone() {
        assert_eq!(
            names(
                "Content-Disposition",
                " attachment; filename=\"a \\\"b\\\".exe\""
            ),
            ["a \"b\".exe"]
        );
        assert_eq!(
            names(
                "Content-Disposition",
                " attachment; filename=\"=?utf-8?q?invoice=2Eexe?=\""
            ),
            ["invoice.exe"]
        );
        assert_eq!(
            names(
                "Content-Disposition",
                " attachment; filename*=UTF-8''evil%2Eexe"
            ),
            ["evil.exe"]
        );
        // A separator inside quotes is part of the name; a missing closing quote reads
        // to the end.
        assert_eq!(
            names("Content-Disposition", " attachment; filename=\"a;b.exe"),
            ["a;b.exe"]
        );
        // Folded.
        assert_eq!(
            names(
                "Content-Disposition",
                " attachment;\r\n\tfilename*0=\"ev\";\r\n filename*1=\"il.exe\""
            ),
            ["evil.exe"]
        );
    }

    #[test]
    fn other_parameters_in_front_hide_no_name() {
        let junk: String = (0..500).map(|i| format!("; x{i}=1")).collect();
        assert_eq!(
            names(
                "Content-Disposition",
                &format!(" attachment{junk}; filename=evil.exe")
            ),
            ["evil.exe"]
        );
    }

    #[test]
    fn names_are_read_from_fields_anywhere_in_raw_bytes() {
        let raw = b"--b\r\nContent-Type: text/plain\r\n\r\n.\r\n--b\r\n\
Content-Type: application/octet-stream;\r\n\tname=\"evil.exe\"\r\n\
content-disposition: attachment; filename=evil.exe\r\nX-Other: filename=x.js\r\n\r\nTVqQ\r\n--b--";
        assert_eq!(in_raw_fields(raw), ["evil.exe"]);
        assert!(in_raw_fields(b"no fields here\r\n").is_empty());
    }

    /// Regression (review): continuation lines that look like fields were each read as
    /// a field running to the end of the run: quadratic (216 KB took 1.9 GB and 8 s).
    #[test]
    fn a_run_of_continuation_lines_is_read_once() {
        let mut raw = b"Content-Name: a\r\n".to_vec();
        for _ in 0..200_000 {
            raw.extend_from_slice(b" Content-Name: a\r\n");
        }
        raw.extend_from_slice(b"Content-Name: evil.exe\r\n");
        let names = in_raw_fields(&raw);
        assert_eq!(names.len(), 2);
        assert_eq!(names[1], "evil.exe");
        assert!(names[0].len() <= MAX_VALUE_BYTES);
    }

    /// Regression (review): a `Content-Name` value padded with blank folded lines past
    /// the bytes read hid the name after them.
    #[test]
    fn a_name_after_padding_is_read() {
        let padding = "\r\n ".repeat(40_000);
        let got = names("Content-Name", &format!("{padding}evil.js"));
        assert_eq!(got, ["evil.js"]);
    }

    /// Regression (review): pieces past the 64th were dropped, so a name of 64 pieces and
    /// then `.js` was judged without its extension, where Thunderbird joins up to piece 999
    /// (and stops at the gap before a `.txt` piece that mail-parser joins too).
    #[test]
    fn a_name_of_many_pieces_keeps_its_extension() {
        let pieces: String = (0..64).map(|i| format!("; filename*{i}=\"a\"")).collect();
        let got = names(
            "Content-Disposition",
            &format!(" attachment{pieces}; filename*64=\".js\"; filename*1000=\".txt\""),
        );
        assert_eq!(got, [format!("{}.js", "a".repeat(64))]);
    }

    #[test]
    fn a_hostile_field_costs_a_bounded_reading() {
        let many: String = (0..10_000).map(|i| format!("; filename*{i}=x")).collect();
        let got = names("Content-Disposition", &format!(" attachment{many}"));
        assert_eq!(got.len(), 1);
        assert!(got[0].len() <= MAX_PIECES);
    }

    /// Regression (review): the reader stopped after 64 `filename`/`name` parameters,
    /// repeats included, and read only the first 64 KiB of a value: 64 copies of
    /// `filename="a.txt"` (or 64 KiB of junk parameters) before `filename*0="evil.";
    /// filename*1="js"` hid the name Thunderbird saves. Repeats count for nothing, pieces
    /// never count, the end of a long value is read too, and the last of many plain
    /// values is kept.
    #[test]
    fn padding_a_field_hides_no_name() {
        let copies = "filename=\"a.txt\"; ".repeat(64);
        let names = in_field(
            "Content-Disposition",
            &format!("attachment; {copies}filename*0=\"evil.\"; filename*1=\"js\""),
        );
        assert!(names.contains(&"evil.js".to_string()), "{names:?}");
        let junk = "x-junk=\"yyyyyyyyyyyyyyyy\"; ".repeat(5_000);
        let names = in_field(
            "Content-Disposition",
            &format!("attachment; filename*0=\"evil.\"; {junk}filename*1=\"js\""),
        );
        assert!(names.contains(&"evil.js".to_string()), "{names:?}");
        // Review of the fix: padding that puts a quote where a tail read from a fixed
        // offset would start flipped the reading of what followed.
        let flipping = "x=\"aaa;bbb\"; ".repeat(8_000);
        let names = in_field(
            "Content-Disposition",
            &format!("attachment; filename*0=\"evil.\"; {flipping}filename*1=\"js\""),
        );
        assert!(names.contains(&"evil.js".to_string()), "{names:?}");
        let distinct: String = (0..100)
            .map(|i| format!("filename=\"a{i}.txt\"; "))
            .collect();
        let names = in_field(
            "Content-Disposition",
            &format!("attachment; {distinct}filename=\"evil.exe\""),
        );
        assert!(names.contains(&"evil.exe".to_string()), "{names:?}");
        assert!(names.len() <= MAX_PARAMETERS + 1, "{}", names.len());
    }
}
