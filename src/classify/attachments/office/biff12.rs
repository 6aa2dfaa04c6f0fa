//! Excel binary workbooks (`.xlsb`): the defined names of `xl/workbook.bin` (BIFF12
//! records, MS-XLSB), where the `Auto_Open` name that runs an Excel 4 macro sheet is kept,
//! and the external links of `xl/externalLinks/*.bin`, where a DDE link is. The `.xlsx`
//! form keeps the same in XML ([`super::parts`]).

use super::Facts;

/// `BrtName`: a defined name.
const BRT_NAME: u32 = 39;
/// `BrtBeginBook`: the first record of a workbook part.
const BRT_BEGIN_BOOK: u32 = 131;
/// `BrtBeginSupBook`: an external link begins; its first field says of which kind.
const BRT_BEGIN_SUP_BOOK: u32 = 360;
/// The kind of a `BrtBeginSupBook` that links to a program through DDE (`=cmd|'…'!A1`).
const SUP_BOOK_DDE: u16 = 1;
/// Records read at most (each takes at least two bytes, so the part's size bounds the walk
/// too).
const MAX_RECORDS: usize = 1_000_000;
/// Characters of a name read (Excel's limit is 255).
const MAX_NAME_CHARS: usize = 255;

/// Reads a workbook part's records for a name Excel runs on opening: `Auto_Open` (built in
/// or a plain name of that form), as the XML form is read.
pub(super) fn read_workbook(data: &[u8]) -> Facts {
    let mut facts = Facts::default();
    for (kind, record) in records(data) {
        if kind == BRT_NAME && runs_on_open(record) {
            facts.excel_4_runs_on_open();
        }
    }
    facts
}

/// Reads an external link part for a DDE link, which starts the program it names when
/// the workbook's links are updated.
pub(super) fn read_external_link(data: &[u8]) -> Facts {
    let dde = records(data).any(|(kind, record)| {
        kind == BRT_BEGIN_SUP_BOOK && record.get(..2) == Some(&SUP_BOOK_DDE.to_le_bytes()[..])
    });
    Facts {
        dde,
        ..Facts::default()
    }
}

/// The records of a part, each as its type and data, up to the first that does not read.
fn records(data: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let (kind, used) = varint(data, at, 2)?;
        let (size, used_size) = varint(data, at + used, 4)?;
        let start = at + used + used_size;
        let end = start.saturating_add(size as usize);
        let record = data.get(start..end)?;
        at = end;
        Some((kind, record))
    })
    .take(MAX_RECORDS)
}

/// A record's type (at most 2 bytes) or size (at most 4): 7 bits a byte, the high bit
/// saying another byte follows. Returns the value and the bytes it took.
fn varint(data: &[u8], at: usize, max_bytes: usize) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for i in 0..max_bytes {
        let b = *data.get(at + i)?;
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    Some((value, max_bytes))
}

/// Whether a `BrtName` names `Auto_Open`: flags (4 bytes), `chKey` (1), `itab` (4), then
/// the name as a count of UTF-16 characters (4 bytes) and the characters.
fn runs_on_open(record: &[u8]) -> bool {
    let Some(count) = record.get(9..13) else {
        return false;
    };
    let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let chars = record.get(13..).unwrap_or_default();
    let chars = &chars[..chars.len().min(2 * count.min(MAX_NAME_CHARS))];
    super::biff::is_auto_open_name(&crate::mail::tnef::name_text(chars, true))
}

/// Whether a part is a binary workbook: its first record is `BrtBeginBook` (type 131).
pub(super) fn is_workbook(data: &[u8]) -> bool {
    records(data)
        .next()
        .is_some_and(|(kind, _)| kind == BRT_BEGIN_BOOK)
}

/// Whether a part is a binary external link: its first record is `BrtBeginSupBook`.
pub(super) fn is_external_link(data: &[u8]) -> bool {
    records(data)
        .next()
        .is_some_and(|(kind, _)| kind == BRT_BEGIN_SUP_BOOK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_record(name: &str) -> Vec<u8> {
        let mut data = vec![0x20, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        let units: Vec<u16> = name.encode_utf16().collect();
        data.extend_from_slice(&(units.len() as u32).to_le_bytes());
        for u in units {
            data.extend_from_slice(&u.to_le_bytes());
        }
        data.extend_from_slice(&[0x0B, 0, 0, 0]);
        let mut record = vec![BRT_NAME as u8, data.len() as u8];
        record.extend(data);
        record
    }

    #[test]
    fn an_auto_open_name_is_found_among_the_records() {
        // BrtBeginBook (0x83 0x01: a two-byte type), then the names.
        let mut part = vec![0x83, 0x01, 0x00];
        part.extend(name_record("Print_Area"));
        assert_eq!(read_workbook(&part), Facts::default());
        part.extend(name_record("Auto_Opening_Balance"));
        assert_eq!(read_workbook(&part), Facts::default());
        assert!(is_workbook(&part));
        part.extend(name_record("auto_OPEN21"));
        assert!(read_workbook(&part).autorun_macro());
        // Cut anywhere: no panic, and the names before the cut still count.
        for cut in 0..part.len() {
            let _ = read_workbook(&part[..cut]);
        }
        assert!(!read_workbook(&[0xFF; 64]).runs_on_open);
    }

    #[test]
    fn a_dde_link_is_found_among_the_external_links() {
        // BrtBeginSupBook (type 360, written 0xE8 0x02) of kind DDE: `cmd`, `/c calc.exe`.
        let mut data = vec![1, 0, 3, 0, 0, 0];
        data.extend("cmd".encode_utf16().flat_map(u16::to_le_bytes));
        let mut part = vec![0xE8, 0x02, data.len() as u8];
        part.extend(&data);
        assert!(read_external_link(&part).dde);
        assert!(is_external_link(&part) && !is_workbook(&part));
        // A link to another workbook (kind 0): no DDE.
        part[3] = 0;
        assert!(!read_external_link(&part).dde);
    }
}
