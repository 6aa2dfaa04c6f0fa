//! VBA module sources: found in a module stream, decompressed (MS-OVBA 2.4.1) and read for
//! macros that run by themselves and reach outside Office.
//!
//! A module stream holds the compiled code first and the compressed source after it, at an
//! offset the project's `dir` stream records. The source always begins with
//! `Attribute VB_Name`, whose first eight letters have no repeat to copy and are written
//! as literals after a zero flag byte (or raw, in a chunk left uncompressed): that is
//! where the source is looked for, so a `dir` stream the sender wrote is not needed.

use super::Facts;

/// Decompressed source read per compound file at most.
pub(super) const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;
/// Bytes a decompressed chunk holds (all but the last of a container hold this many).
const CHUNK: usize = 4096;

/// Routines Office runs by themselves: when a document opens, closes or is made from a
/// template (Word's `Auto*` macros and `Document_*` events, Excel's `Auto_*` and
/// `Workbook_*`), lower-case.
const RUNS_ON_OPEN: &[&str] = &[
    "autoopen",
    "autoexec",
    "autonew",
    "autoclose",
    "autoexit",
    "auto_open",
    "auto_close",
    "auto_exec",
    "document_open",
    "document_close",
    "document_new",
    "document_contentcontrolonenter",
    "documentopen",
    "documentbeforeclose",
    "workbook_open",
    "workbook_activate",
    "workbook_close",
    "workbook_beforeclose",
    "workbook_deactivate",
    "app_documentopen",
    "app_workbookopen",
];

/// Event suffixes of ActiveX controls that fire while a document is shown, with no click:
/// a control on the page runs its handler as soon as the document opens.
const RUNS_WHEN_SHOWN: &[&str] = &["_layout", "_painted", "_resize", "_gotfocus"];

/// Words of source that reach outside Office (lower-case; each must stand as a word).
const REACHES_OUT: &[&str] = &[
    "shell",
    "shellexecute",
    "shellexecutea",
    "wscript",
    "createobject",
    "getobject",
    "callbyname",
    "urldownloadtofile",
    "urldownloadtofilea",
    "xmlhttp",
    "serverxmlhttp",
    "winhttprequest",
    "adodb",
    "powershell",
    "mshta",
    "rundll32",
    "regsvr32",
    "certutil",
    "bitsadmin",
    "executeexcel4macro",
    "macscript",
    "virtualalloc",
    "virtualallocex",
    "createthread",
    "createremotethread",
    "rtlmovememory",
    "writeprocessmemory",
    "lib",
];

/// Reads a module stream: every source found in it, decompressed within `budget` bytes of
/// source (lowered by what was read).
pub(super) fn read_module(stream: &[u8], budget: &mut usize) -> Facts {
    let mut facts = Facts {
        macros: true,
        ..Facts::default()
    };
    if let Some(start) = source_start(stream) {
        let source = decompress(stream.get(start..).unwrap_or_default(), *budget);
        *budget = budget.saturating_sub(source.len());
        read_source(&source, &mut facts);
    }
    facts
}

/// Where the compressed source container of a module stream begins: its signature byte
/// in front of the first chunk, which starts with `Attribut` (see the module doc).
fn source_start(stream: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(stream, b"Attribut").find_map(|at| {
        // Compressed: signature, 2-byte header, a zero flag byte, then the letters.
        let compressed = at.checked_sub(4).filter(|&s| {
            stream.get(s) == Some(&1)
                && stream.get(s + 3) == Some(&0)
                && header(stream, s + 1).is_some_and(|h| h & 0x8000 != 0)
        });
        // Raw: signature, a 2-byte header saying "4,096 bytes, not compressed".
        let raw = at
            .checked_sub(3)
            .filter(|&s| stream.get(s) == Some(&1) && header(stream, s + 1) == Some(0x3FFF));
        compressed.or(raw)
    })
}

/// The chunk header at `at`, when its signature bits are right (`0b011`).
fn header(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at + 2)?;
    let h = u16::from_le_bytes([bytes[0], bytes[1]]);
    ((h >> 12) & 0b111 == 0b011).then_some(h)
}

/// Decompresses a compressed container (MS-OVBA 2.4.1.3.1) into at most `limit` bytes;
/// a container broken midway gives what was decompressed before the break.
pub(super) fn decompress(container: &[u8], limit: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    if container.first() != Some(&1) {
        return out;
    }
    let mut at = 1;
    while let Some(h) = header(container, at) {
        let chunk_start = out.len();
        let size = usize::from(h & 0x0FFF) + 3;
        let end = (at + size).min(container.len());
        let data = container.get(at + 2..end).unwrap_or_default();
        at += size;
        if h & 0x8000 == 0 {
            // Stored: 4,096 bytes as they are.
            let take = data.len().min(CHUNK).min(limit.saturating_sub(out.len()));
            out.extend_from_slice(data.get(..take).unwrap_or_default());
        } else if !decompress_chunk(data, chunk_start, &mut out, limit) {
            break;
        }
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    out
}

/// Decompresses one chunk's tokens onto `out`; `false` when a copy points before the
/// chunk's start (a broken or hostile container).
fn decompress_chunk(data: &[u8], chunk_start: usize, out: &mut Vec<u8>, limit: usize) -> bool {
    let mut i = 0;
    while i < data.len() {
        let flags = data[i];
        i += 1;
        for bit in 0..8 {
            if i >= data.len() || out.len() >= limit {
                return true;
            }
            if flags & (1 << bit) == 0 {
                out.push(data[i]);
                i += 1;
                continue;
            }
            let Some(token) = data.get(i..i + 2) else {
                return true;
            };
            i += 2;
            let token = u16::from_le_bytes([token[0], token[1]]);
            let done = out.len() - chunk_start;
            // The offset takes as many bits as needed to reach back over what this chunk
            // decompressed so far (at least 4, at most 12); the length the rest.
            let mut bit_count = 4;
            while bit_count < 12 && (1usize << bit_count) < done {
                bit_count += 1;
            }
            let length_mask = 0xFFFFu16 >> bit_count;
            let length = usize::from(token & length_mask) + 3;
            let offset = usize::from(token >> (16 - bit_count)) + 1;
            if offset > done {
                return false;
            }
            for _ in 0..length {
                if out.len() >= limit {
                    return true;
                }
                let byte = out[out.len() - offset];
                out.push(byte);
            }
        }
    }
    true
}

/// Reads decompressed source: routines Office runs by itself, and words that reach out.
fn read_source(source: &[u8], facts: &mut Facts) {
    let text = source.to_ascii_lowercase();
    for line in text.split(|&b| b == b'\n' || b == b'\r') {
        if let Some(name) = routine_name(line) {
            if RUNS_ON_OPEN.contains(&name) || RUNS_WHEN_SHOWN.iter().any(|s| name.ends_with(s)) {
                facts.runs_on_open = true;
            }
        }
    }
    facts.reaches_out |= REACHES_OUT.iter().any(|word| has_word(&text, word));
}

/// The name a line declares as a `Sub` or `Function` (lower-case source), if it declares one.
fn routine_name(line: &[u8]) -> Option<&str> {
    let mut rest = std::str::from_utf8(line).ok()?.trim_start();
    for scope in ["private ", "public ", "friend ", "static "] {
        if let Some(after) = rest.strip_prefix(scope) {
            rest = after.trim_start();
        }
    }
    let rest = rest
        .strip_prefix("sub ")
        .or_else(|| rest.strip_prefix("function "))?;
    let name = rest.trim_start();
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    Some(&name[..end])
}

/// Whether `word` occurs in `text` with no letter, digit or `_` on either side.
fn has_word(text: &[u8], word: &str) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    memchr::memmem::find_iter(text, word.as_bytes()).any(|at| {
        let before = at.checked_sub(1).and_then(|i| text.get(i)).copied();
        let after = text.get(at + word.len()).copied();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MS-OVBA 3.2.1, "No Compression" (literals only).
    #[test]
    fn the_specification_s_literal_example_decompresses() {
        let container = [
            0x01, 0x19, 0xB0, 0x00, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x00, 0x69,
            0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x00, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76,
            0x2E,
        ];
        assert_eq!(decompress(&container, 1 << 20), b"abcdefghijklmnopqrstuv.");
    }

    /// MS-OVBA 3.2.2, "Normal Compression" (copy tokens of several lengths and offsets).
    #[test]
    fn the_specification_s_copy_example_decompresses() {
        let container = [
            0x01, 0x2F, 0xB0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66,
            0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6A, 0x01, 0x38, 0x08, 0x61, 0x6B, 0x6C, 0x00,
            0x30, 0x6D, 0x6E, 0x6F, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74,
            0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7A, 0x00, 0x3C,
        ];
        assert_eq!(
            decompress(&container, 1 << 20),
            b"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
    }

    #[test]
    fn hostile_containers_stay_bounded() {
        // A copy reaching before the chunk's start ends the container.
        assert_eq!(decompress(&[0x01, 0x03, 0xB0, 0x01, 0x00, 0x00], 100), b"");
        // A long run copied again and again is cut at the limit.
        let mut container = vec![0x01, 0xFF, 0xBF, 0x00, b'a', b'b', b'c'];
        container.extend(std::iter::repeat_n([0xFF, 0xF0, 0xFF], 300).flatten());
        assert!(decompress(&container, 1000).len() <= 1000);
        assert!(decompress(b"", 10).is_empty());
        assert!(decompress(&[0x01, 0xFF], 10).is_empty());
    }

    #[test]
    fn routines_that_run_alone_and_calls_outside_office_are_told_apart() {
        let mut facts = Facts::default();
        read_source(
            b"Attribute VB_Name = \"ThisDocument\"\r\nPrivate Sub Document_Open()\r\n  x = CreateObject(\"WScript.Shell\")\r\nEnd Sub\r\n",
            &mut facts,
        );
        assert!(facts.runs_on_open && facts.reaches_out);
        let mut facts = Facts::default();
        read_source(
            b"Attribute VB_Name = \"Module1\"\r\nSub Totals()\r\n  Range(\"A1\").Value = 2\r\nEnd Sub\r\n' Shelly's sheet\r\n",
            &mut facts,
        );
        assert!(!facts.runs_on_open && !facts.reaches_out, "{facts:?}");
        let mut facts = Facts::default();
        read_source(b"Sub InkPicture1_Painted(ByVal h As Long)\n", &mut facts);
        assert!(facts.runs_on_open);
    }
}
