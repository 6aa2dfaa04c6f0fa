//! The canonical forms of the header fields a stamp signs.
//!
//! Version 6: version 5's form, plus the header lines that are no field (a reader may end
//! the header section at one, and read what follows as the body), and a CR that ends no
//! line is kept (a reader may take it for a line end). Version 5 (and 4): values unfolded (line breaks dropped) with blank runs read as one
//! space, as a refold may change them; inside the quoted strings of `Content-Type` and
//! `Content-Disposition` (their parameters) a blank is part of a value and kept
//! (`boundary="b  1"` is another boundary than `"b 1"`); bytes as they are. Version 4
//! did not sign `Content-Disposition`, and version 3 also collapsed every blank run and
//! read values through a lossy UTF-8 decoding; their stamps are still checked where their
//! form cannot be told from this one (stamps made before an upgrade wait in queues and
//! quarantines, and a peer not yet upgraded keeps stamping in version 4).

use super::{HEADER, SIGNED_FIELDS};
use crate::mail::header_fields::{non_fields, remove_fields};

/// The canonical form a stamp's MAC was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// Every blank run collapsed, values read as UTF-8 (lossy); no `Content-Disposition`.
    V3,
    /// Blanks kept inside `Content-Type`'s quoted strings, values as bytes; no
    /// `Content-Disposition`.
    V4,
    /// Version 4's form over every one of [`SIGNED_FIELDS`], `Content-Disposition` too.
    V5,
    /// Version 5's form with the lines that are no field and the lone CRs signed too.
    V6,
}

impl Form {
    /// The form new stamps are made in.
    pub(super) const NEWEST: Form = Form::V6;

    /// The `v=` of stamps of this form.
    pub(super) fn version(self) -> &'static str {
        match self {
            Form::V3 => "3",
            Form::V4 => "4",
            Form::V5 => "5",
            Form::V6 => "6",
        }
    }

    /// The form of a stamp's `v=`; versions 1 and 2 signed too little to be trusted.
    pub(super) fn of_version(v: &str) -> Option<Form> {
        match v {
            "6" => Some(Form::V6),
            "5" => Some(Form::V5),
            "4" => Some(Form::V4),
            "3" => Some(Form::V3),
            _ => None,
        }
    }

    /// The header fields this form signs: before version 5, all but the last of
    /// [`SIGNED_FIELDS`] (`Content-Disposition`).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Form::V3 | Form::V4 => &SIGNED_FIELDS[..SIGNED_FIELDS.len() - 1],
            Form::V5 | Form::V6 => &SIGNED_FIELDS,
        }
    }

    /// Whether a stamp of this form over this header section vouches for what a version
    /// 6 stamp would: a field it does not sign must be absent (else anyone holding a
    /// stamped copy could add `Content-Disposition: attachment; filename="invoice.js"`,
    /// which the attachment policy would have refused), so must a line that is no field
    /// and a lone CR in a signed value before version 6 (else a line of text added after
    /// the signed fields read as the body's start), and version 3's lossy reading must
    /// have merged nothing (see [`v3_unambiguous`]).
    pub(super) fn vouches_for(self, headers: &[u8]) -> bool {
        let unsigned_absent = SIGNED_FIELDS
            .iter()
            .filter(|f| !self.fields().contains(f))
            .all(|f| values(headers, f, self).is_empty());
        let unsigned_lines_absent = self == Form::V6
            || (non_fields(headers).is_empty()
                && self
                    .fields()
                    .iter()
                    .all(|f| values(headers, f, Form::V6) == values(headers, f, Form::V5)));
        unsigned_absent && unsigned_lines_absent && (self != Form::V3 || v3_unambiguous(headers))
    }
}

/// The values of every stamp header of `message`, unfolded.
pub(super) fn stamp_values(message: &[u8]) -> Vec<Vec<u8>> {
    values(message, HEADER, Form::V4)
}

/// The fields `form` signs of a header section, in a form no other section shares: for
/// each name, how many occurrences, then each value (no line breaks remain).
pub(super) fn signed_fields(headers: &[u8], form: Form) -> Vec<u8> {
    let mut out = Vec::new();
    for wanted in form.fields() {
        let values = values(headers, wanted, form);
        out.extend_from_slice(format!("\n{wanted}:{}", values.len()).as_bytes());
        for value in values {
            out.push(b'\n');
            out.extend_from_slice(&value);
        }
    }
    if form == Form::V6 {
        // Under a name no field can have (it starts with the colon).
        let lines = non_fields(headers);
        out.extend_from_slice(format!("\n:no-field:{}", lines.len()).as_bytes());
        for line in lines {
            out.push(b'\n');
            out.extend_from_slice(&canonical_value(line, false, true));
        }
    }
    out
}

/// The Message-ID value, trimmed; empty when there is none.
pub(super) fn message_id(headers: &[u8], form: Form) -> Vec<u8> {
    values(headers, "message-id", form)
        .into_iter()
        .find(|id| !id.is_empty())
        .unwrap_or_default()
}

/// Whether a version 3 stamp over this header section says what it would say in version
/// 4: every signed value is UTF-8 (the lossy decoding merged nothing) and no quoted string
/// of `Content-Type` holds a blank run the collapse would have merged.
fn v3_unambiguous(headers: &[u8]) -> bool {
    let mut acceptable = true;
    let _ = remove_fields(headers, |name, value| {
        let signed = Form::V3
            .fields()
            .iter()
            .chain(["message-id"].iter())
            .any(|f| name.eq_ignore_ascii_case(f.as_bytes()));
        if signed {
            acceptable &= std::str::from_utf8(value).is_ok();
            if name.eq_ignore_ascii_case(b"content-type") {
                acceptable &= canonical_value(value, true, false) == legacy_value(value);
            }
        }
        false
    });
    acceptable
}

/// Fields whose parameters may hold quoted strings in which a blank is part of a value
/// (a boundary, a file name).
const QUOTED_PARAMETERS: [&str; 2] = ["content-type", "content-disposition"];

/// The value of every `wanted` field (any case) of a header section, in order, in `form`.
fn values(headers: &[u8], wanted: &str, form: Form) -> Vec<Vec<u8>> {
    let keep_quoted = QUOTED_PARAMETERS
        .iter()
        .any(|f| wanted.eq_ignore_ascii_case(f));
    let mut values = Vec::new();
    let _ = remove_fields(headers, |name, value| {
        if name.eq_ignore_ascii_case(wanted.as_bytes()) {
            values.push(match form {
                Form::V6 => canonical_value(value, keep_quoted, true),
                Form::V4 | Form::V5 => canonical_value(value, keep_quoted, false),
                Form::V3 => legacy_value(value),
            });
        }
        false
    });
    values
}

/// Version 3's form: read as UTF-8 (lossy), every run of white space one space.
fn legacy_value(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .into_bytes()
}

/// A field value unfolded (line breaks dropped), trimmed, with each run of blanks read as
/// one space; with `keep_quoted`, inside a quoted string (RFC 5322 §3.2.4, with its quoted
/// pairs) every byte is kept. Only the [`QUOTED_PARAMETERS`] fields keep them: in a free-text field a lone
/// `"` (`Subject: 12" pizza`) would leave the rest of the value raw, and a refold there
/// would break the stamp. With `keep_lone_cr` (version 6) a CR that ends no line is a byte
/// of the value like any other.
pub(super) fn canonical_value(value: &[u8], keep_quoted: bool, keep_lone_cr: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut quoted = false;
    let mut escaped = false;
    let mut blank = false;
    for (i, &b) in value.iter().enumerate() {
        let line_end =
            b == b'\n' || (b == b'\r' && (!keep_lone_cr || value.get(i + 1) == Some(&b'\n')));
        if line_end {
            continue;
        }
        if quoted {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        if b == b' ' || b == b'\t' {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push(b' ');
        }
        blank = false;
        quoted = keep_quoted && b == b'"';
        out.push(b);
    }
    out
}
