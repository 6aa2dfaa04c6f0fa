//! uuencoded files inside text: the `begin 644 invoice.exe` blocks that mail clients show
//! as attachments while a reader of MIME structure sees only a text part.

/// Files decoded from one text. A text with more goes to clamd whole anyway (it decodes
/// uuencode itself); past this, only names are taken.
pub const MAX_DECODED: usize = 32;
/// Distinct names taken from one text: the bound on the work of judging them.
pub const MAX_NAMES: usize = 100_000;

/// One file carried in text: uuencoded, or yEnc (`mail::yenc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFile {
    /// The name on its `begin` line.
    pub name: String,
    /// The decoded content, as far as it decodes (a block cut short keeps what came
    /// before); empty past [`MAX_DECODED`] files.
    pub data: Vec<u8>,
    /// The block was not decoded (it comes after [`MAX_DECODED`] others): only its name
    /// tells what it is.
    pub data_left_out: bool,
}

/// Whether `text` has a line that opens a uuencoded file.
pub fn opens_file(text: &[u8]) -> bool {
    begin_lines(text).next().is_some()
}

/// Whether `data` is a uuencoded file from its first line (leading blanks skipped): what
/// WinRAR and 7-Zip open as an archive of one file (a `.uue` attachment), whatever the
/// part's type says.
pub fn is_uuencoded_file(data: &[u8]) -> bool {
    let text = data.trim_ascii_start();
    begin_name(text).is_some() && opens_data(text)
}

/// The uuencoded files in `text`, in order: every block whose `begin` line uudecode
/// would take and whose next line is uuencoded data. The first [`MAX_DECODED`] are
/// decoded, and only an exact copy (same name, same bytes) of one is left out: two blocks
/// of one name are two files (uudecode writes both, the second over the first). Past
/// them each distinct name is taken once (at most [`MAX_NAMES`]), without its bytes.
pub fn files(text: &[u8]) -> Vec<EncodedFile> {
    let starts: Vec<(usize, &[u8])> = begin_lines(text).collect();
    let mut left_out_names = std::collections::HashSet::new();
    let mut found: Vec<EncodedFile> = Vec::new();
    for (i, &(at, name)) in starts.iter().enumerate() {
        // Each block is read up to the next begin line, so the whole text is read once
        // however many blocks it holds.
        let end = starts.get(i + 1).map_or(text.len(), |&(next, _)| next);
        let block = text.get(at..end).unwrap_or_default();
        if !opens_data(block) {
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if found.len() < MAX_DECODED {
            let data = uuencoding::decode(block)
                .map(|b| b.data)
                .unwrap_or_default();
            if !found.iter().any(|f| f.name == name && f.data == data) {
                found.push(EncodedFile {
                    name,
                    data,
                    data_left_out: false,
                });
            }
            continue;
        }
        if left_out_names.len() >= MAX_NAMES {
            break;
        }
        if left_out_names.insert(name.clone()) {
            found.push(EncodedFile {
                name,
                data: Vec::new(),
                data_left_out: true,
            });
        }
    }
    found
}

/// The lines that open a uuencoded file, as uudecode reads them: their offsets and the
/// names they give.
fn begin_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> + '_ {
    let first = text.starts_with(b"begin").then_some(0);
    first
        .into_iter()
        .chain(memchr::memmem::find_iter(text, b"\nbegin").map(|at| at + 1))
        .filter_map(|at| Some((at, begin_name(text.get(at..)?)?)))
}

/// The name on a `begin` line: `begin`, white space, an octal mode, white space and a
/// name (sharutils' uudecode reads it with `sscanf("begin %o %s")`). A line that merely
/// starts with the word ("begin now", "beginning") is none.
fn begin_name(text: &[u8]) -> Option<&[u8]> {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"begin")?;
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let after_space = rest.iter().take_while(|b| is_space(b)).count();
    let rest = rest.get(after_space..)?;
    let mode = rest
        .iter()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .count();
    let rest = rest.get(mode..)?;
    let before_name = rest.iter().take_while(|b| is_space(b)).count();
    let name = rest.get(before_name..)?.trim_ascii_end();
    (after_space > 0 && (1..=6).contains(&mode) && before_name > 0 && !name.is_empty())
        .then_some(name)
}

/// Whether the line after a block's begin line is uuencoded data or the end of an empty
/// file: "begin 2024 was a good year" followed by prose is no file.
fn opens_data(block: &[u8]) -> bool {
    let Some(next) = block.split(|&b| b == b'\n').nth(1) else {
        return false;
    };
    is_data_line(next.strip_suffix(b"\r").unwrap_or(next))
}

/// A uuencoded line: its first character gives the count of bytes it holds, and the rest
/// are characters of the encoding (space to underscore, or a backquote for zero), four
/// for every three bytes; relays strip trailing spaces (zeros, in old encoders), so the
/// line may be shorter, never much longer.
fn is_data_line(line: &[u8]) -> bool {
    let Some((&first, rest)) = line.split_first() else {
        return false;
    };
    if first == b'`' || first == b' ' {
        return true;
    }
    if !(b' '..=b'`').contains(&first) {
        return false;
    }
    let count = usize::from((first - b' ') & 0x3f);
    let want = count.div_ceil(3) * 4;
    let valid = rest.iter().all(|b| (b' '..=b'`').contains(b));
    valid && !rest.is_empty() && rest.len() <= want + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, data: &[u8]) -> String {
        String::from_utf8(uuencoding::encode(data, name, 0o644)).unwrap()
    }

    #[test]
    fn files_in_prose_are_found_with_their_names() {
        let text = format!(
            "Hi,\nthe invoice:\n\n{}\nand the form\r\n{}thanks\n",
            block("invoice.exe", b"MZ\x90\x00binary"),
            block("form.doc", b"plain").replace('\n', "\r\n"),
        );
        assert!(opens_file(text.as_bytes()));
        let found = files(text.as_bytes());
        assert_eq!(
            found,
            vec![
                EncodedFile {
                    name: "invoice.exe".into(),
                    data: b"MZ\x90\x00binary".to_vec(),
                    data_left_out: false,
                },
                EncodedFile {
                    name: "form.doc".into(),
                    data: b"plain".to_vec(),
                    data_left_out: false,
                },
            ]
        );
    }

    #[test]
    fn a_block_at_the_very_start_counts() {
        let text = block("a.js", b"alert(1)");
        assert_eq!(files(text.as_bytes())[0].name, "a.js");
    }

    /// Regression (review): a decoy line starting with "begin" just before a block made
    /// the scanner read the real begin line as the decoy's data, and the file was lost.
    #[test]
    fn a_decoy_begin_line_does_not_swallow_the_block_after_it() {
        for decoy in ["begin here:\n", "Begin forwarded message:\n", "begin\n"] {
            let text = format!("{decoy}{}", block("invoice.exe", b"MZ"));
            let names: Vec<String> = files(text.as_bytes()).into_iter().map(|f| f.name).collect();
            assert_eq!(names, ["invoice.exe"], "{decoy:?}");
        }
    }

    /// uudecode reads `begin %o %s`: any white space, any octal mode.
    #[test]
    fn begin_lines_as_uudecode_reads_them() {
        for line in [
            "begin\t644 x.exe",
            "begin  644  x.exe",
            "begin 100644 x.exe",
            "begin 7 x.exe",
        ] {
            let text = block("x.exe", b"MZ").replacen("begin 644 x.exe", line, 1);
            assert_eq!(files(text.as_bytes()).len(), 1, "{line:?}");
        }
    }

    #[test]
    fn prose_that_begins_a_line_with_begin_is_no_file() {
        for text in [
            "Steps:\nbegin now, then stop\n",
            "begin 2029 was a good year\n",
            "BEGIN 644 shout.exe\nM\nend\n",
            "begin 644 \nM\nend\n",
            "begin 644\n",
            "the word\nbeginning 644 x.exe\n",
        ] {
            assert!(!opens_file(text.as_bytes()), "{text:?}");
            assert!(files(text.as_bytes()).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn a_begin_line_followed_by_prose_is_no_file() {
        let text = b"Dear all,\nbegin 2024 was a good year\nfor us all.\n";
        assert!(opens_file(text), "the shape of a begin line");
        assert!(files(text).is_empty());
    }

    #[test]
    fn a_block_cut_short_keeps_what_it_decoded() {
        let whole = block("a.bin", &[7u8; 100]);
        let cut: String = whole.lines().take(2).map(|l| format!("{l}\n")).collect();
        let found = files(cut.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].data, vec![7u8; 45]);
    }

    /// Regression (review): only the first 32 files were taken, so a blocked name after 32
    /// harmless ones was never judged. Every name is taken; the first 32 are decoded.
    #[test]
    fn names_past_the_decoded_files_are_still_taken() {
        let mut text: String = (0..MAX_DECODED + 5)
            .map(|i| block(&format!("f{i}.txt"), b"x"))
            .collect();
        text.push_str(&block("invoice.exe", b"MZ"));
        let found = files(text.as_bytes());
        assert_eq!(found.len(), MAX_DECODED + 6);
        assert_eq!(found[MAX_DECODED - 1].data, b"x");
        assert!(found[MAX_DECODED].data.is_empty());
        assert!(found[MAX_DECODED].data_left_out && !found[MAX_DECODED - 1].data_left_out);
        assert_eq!(found.last().unwrap().name, "invoice.exe");
    }

    /// Regression (review): blocks were told apart by name only, so of two `docs.zip`
    /// blocks, a harmless one then a zip of `invoice.exe` (which uudecode writes last), only
    /// the first was judged. Only an exact copy is left out.
    #[test]
    fn blocks_of_one_name_are_told_apart_by_their_content() {
        let text = [
            block("docs.zip", b"harmless"),
            block("docs.zip", b"PK evil"),
            block("docs.zip", b"PK evil"),
        ]
        .concat();
        let found = files(text.as_bytes());
        let data: Vec<&[u8]> = found.iter().map(|f| f.data.as_slice()).collect();
        assert_eq!(data, [b"harmless".as_slice(), b"PK evil".as_slice()]);
    }

    /// Regression (review): a block past the 32nd was handed over with empty data as if
    /// that were the file, even when its name was one decoded before.
    #[test]
    fn a_name_past_the_decoded_files_is_taken_even_if_decoded_before() {
        let mut text = block("docs.zip", b"harmless");
        for i in 1..MAX_DECODED {
            text.push_str(&block(&format!("f{i}.txt"), b"x"));
        }
        text.push_str(&block("docs.zip", b"PK evil"));
        let found = files(text.as_bytes());
        let last = found.last().unwrap();
        assert_eq!((last.name.as_str(), last.data_left_out), ("docs.zip", true));
    }

    /// Regression (review): a text of bare `begin` lines made the scanner allocate a
    /// block for each (1.67 million from 20 MB). They are no files and cost nothing.
    #[test]
    fn bare_begin_lines_make_no_blocks() {
        let text = "begin\n".repeat(100_000);
        assert!(files(text.as_bytes()).is_empty());
    }
}
