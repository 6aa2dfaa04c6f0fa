//! Excel 4 macros in a 97–2003 workbook: the `Workbook` stream's records (BIFF8) name a
//! sheet of type "macro sheet", and a built-in name `Auto_Open` runs it when the workbook
//! opens (the way such macros reach a recipient, no VBA project needed).

use super::Facts;

/// `BOUNDSHEET`: a sheet's position, visibility, type and name.
const BOUNDSHEET: u16 = 0x0085;
/// `FILEPASS`: the workbook is encrypted (with Excel's default password too, which
/// opens it without asking and hides its sheets and names from a reader).
const FILEPASS: u16 = 0x002F;
/// `NAME` (`Lbl`): a defined name.
const NAME: u16 = 0x0018;
/// `BOF`: a substream begins; its first field is the format's version.
const BOF: u16 = 0x0809;
/// The version a BIFF5/BIFF7 `BOF` gives (Excel 5 and 95), whose names are 8-bit text
/// without BIFF8's flag byte in front.
const BIFF5: u16 = 0x0500;
/// The sheet type of an Excel 4 macro sheet.
const MACRO_SHEET: u8 = 0x01;
/// `fBuiltin` in a `NAME` record's flags.
const BUILT_IN: u16 = 0x0020;
/// The built-in name `Auto_Open` (one character, code 1).
const AUTO_OPEN: u8 = 0x01;
/// Records read at most (each is at least four bytes, so the stream's size bounds the walk
/// too; the sheets' records after the globals are walked as well, cheaply).
const MAX_RECORDS: usize = 1_000_000;

/// Reads a workbook stream's records for macro sheets and an `Auto_Open` name.
pub(super) fn read(stream: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let mut at = 0;
    let mut version = None;
    for _ in 0..MAX_RECORDS {
        let Some(head) = stream.get(at..at + 4) else {
            break;
        };
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let data = stream.get(at + 4..at + 4 + len).unwrap_or_default();
        at += 4 + len;
        match kind {
            BOUNDSHEET if data.get(5) == Some(&MACRO_SHEET) => facts.macros = true,
            FILEPASS => {
                // What follows is encrypted: nothing more to read.
                facts.encrypted = true;
                break;
            }
            BOF if version.is_none() => {
                version = data.get(..2).map(|v| u16::from_le_bytes([v[0], v[1]]));
            }
            NAME => {
                let flags = data.get(..2).map(|f| u16::from_le_bytes([f[0], f[1]]));
                // One character at offset 14: after the string's flag byte in BIFF8, at
                // once in BIFF5 (Excel 5 workbooks still run their Auto_Open; review of
                // the `oletools` samples).
                let name_at = if version == Some(BIFF5) { 14 } else { 15 };
                let built_in = flags.is_some_and(|f| f & BUILT_IN != 0);
                if built_in && data.get(3) == Some(&1) && data.get(name_at) == Some(&AUTO_OPEN) {
                    facts.runs_on_open = true;
                }
                // A plain name `Auto_Open…` runs too (as in the newer formats; review).
                let plain = plain_name(data, version == Some(BIFF5));
                if !built_in && plain.is_some_and(|n| is_auto_open_name(&n)) {
                    facts.runs_on_open = true;
                }
            }
            _ => {}
        }
    }
    // An `Auto_Open` on a macro sheet calls whatever its formulas say (`EXEC`, `CALL`,
    // `REGISTER`): unlike VBA there is no source to read, and running on open is the sign.
    if facts.macros && facts.runs_on_open {
        facts.reaches_out = true;
    }
    facts
}

/// Whether a defined name is one Excel runs on opening: `Auto_Open`, built in
/// (`_xlnm.Auto_Open`) or plain, in any case, alone or with a suffix that is no word
/// going on (`Auto_Open2`, `Auto_Open_2`; `Auto_Opening_Balance` is a range's name).
pub(super) fn is_auto_open_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("_xlnm.auto_open")
        .or_else(|| lower.strip_prefix("auto_open"));
    rest.is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// The text of a `NAME` record's name: `cch` (byte 3) characters at offset 14, 8-bit in
/// BIFF5, after a flag byte saying 8-bit or UTF-16 in BIFF8.
fn plain_name(data: &[u8], biff5: bool) -> Option<String> {
    let count = usize::from(*data.get(3)?);
    let (at, wide) = if biff5 {
        (14, false)
    } else {
        (15, data.get(14)? & 1 != 0)
    };
    let len = if wide { 2 * count } else { count };
    Some(crate::mail::tnef::name_text(data.get(at..at + len)?, wide))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn record(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend_from_slice(&(data.len() as u16).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    /// A workbook stream with one sheet of `sheet_type` and, if asked, an `Auto_Open` name.
    pub(crate) fn workbook(sheet_type: u8, auto_open: bool) -> Vec<u8> {
        let mut s = record(0x0809, &[0u8; 16]);
        s.extend(record(
            BOUNDSHEET,
            &[
                0, 0, 0, 0, 1, sheet_type, 6, 0, b'M', b'a', b'c', b'r', b'o', b'1',
            ],
        ));
        if auto_open {
            let mut name = vec![
                0x20, 0x00, 0, 1, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, AUTO_OPEN,
            ];
            name.extend_from_slice(&[0x3A, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
            s.extend(record(NAME, &name));
        }
        s.extend(record(0x000A, &[]));
        s
    }

    /// A workbook stream of `version` (its BOF) with one macro sheet; BIFF5 writes the
    /// sheet's name without BIFF8's flag byte.
    fn macro_sheet_stream(version: u16) -> Vec<u8> {
        let mut s = record(
            BOF,
            &[&version.to_le_bytes()[..], &[0x05, 0, 0, 0, 0, 0]].concat(),
        );
        let mut sheet = vec![0, 0, 0, 0, 1, MACRO_SHEET, 6];
        if version != BIFF5 {
            sheet.push(0);
        }
        sheet.extend_from_slice(b"Macro1");
        s.extend(record(BOUNDSHEET, &sheet));
        s
    }

    #[test]
    fn an_excel_5_workbook_s_auto_open_is_found() {
        // BIFF5: a BOF of version 0x0500, the name's one character at offset 14.
        let mut s = macro_sheet_stream(BIFF5);
        let mut name = vec![0x20, 0x00, 0, 1, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, AUTO_OPEN];
        name.extend_from_slice(&[0x3A, 0xFF, 0xFF, 0, 0]);
        s.extend(record(NAME, &name));
        assert!(read(&s).autorun_macro());
        // A plain name `Auto_Open2`, 8-bit in BIFF8 and as UTF-16.
        for wide in [false, true] {
            let mut s = macro_sheet_stream(0x0600);
            let mut name = vec![0, 0, 0, 10, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, u8::from(wide)];
            for c in "Auto_Open2".bytes() {
                name.push(c);
                if wide {
                    name.push(0);
                }
            }
            s.extend(record(NAME, &name));
            assert!(read(&s).autorun_macro(), "wide {wide}");
            // `Auto_Openi` goes on as a word: a range's name.
            let len = s.len();
            s[len - if wide { 2 } else { 1 }] = b'i';
            assert!(!read(&s).runs_on_open, "wide {wide}");
        }
        // The same bytes in a BIFF8 stream are a name whose flag byte says UTF-16 and
        // whose character is another: not Auto_Open.
        s[4..6].copy_from_slice(&[0x00, 0x06]);
        let facts = read(&s);
        assert!(facts.macros && !facts.runs_on_open, "{facts:?}");
    }

    #[test]
    fn a_macro_sheet_run_on_open_is_found() {
        let facts = read(&workbook(MACRO_SHEET, true));
        assert!(facts.autorun_macro(), "{facts:?}");
        let facts = read(&workbook(MACRO_SHEET, false));
        assert!(facts.macros && !facts.autorun_macro());
        assert_eq!(read(&workbook(0, false)), Facts::default());
        // A worksheet with an Auto_Open name and no macro sheet runs nothing.
        assert!(!read(&workbook(0, true)).autorun_macro());
        assert_eq!(read(b"\x85\x00\xff\xff"), Facts::default());
        let mut encrypted = record(FILEPASS, &[1, 0, 1, 0]);
        encrypted.extend(workbook(MACRO_SHEET, true));
        let facts = read(&encrypted);
        assert!(facts.encrypted && !facts.macros);
    }
}
