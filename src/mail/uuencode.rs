//! uuencoded files inside text: the `begin 644 invoice.exe` blocks that mail clients show
//! as attachments while a reader of MIME structure sees only a text part.

/// Most files taken from one text. A text with more goes to clamd whole anyway (it decodes
/// uuencode itself); this bounds what one part adds to the attachment list.
pub const MAX_FILES: usize = 32;

/// One uuencoded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UuFile {
    /// The name on its `begin` line.
    pub name: String,
    /// The decoded content, as far as it decodes (a block cut short keeps what came before).
    pub data: Vec<u8>,
}

/// Whether `text` has a line that opens a uuencoded file.
pub fn opens_file(text: &[u8]) -> bool {
    line_starts(text).any(|at| is_begin_line(&text[at..]))
}

/// The uuencoded files in `text`, at most [`MAX_FILES`], in order.
pub fn files(text: &[u8]) -> Vec<UuFile> {
    if !opens_file(text) {
        return Vec::new();
    }
    uuencoding::scan(text)
        .into_iter()
        .filter_map(Result::ok)
        // The scanner also takes `BEGIN`, a bare `begin` and prose such as "begin now:";
        // uudecode and mail clients want the mode and the name.
        .filter(|block| text.get(block.begin_offset..).is_some_and(is_begin_line))
        // "begin 2024 was a good year" has the shape of a begin line; prose after it
        // decodes to nothing, while a real block decodes or ends properly.
        .filter(|block| !(block.data.is_empty() && block.is_truncated))
        .take(MAX_FILES)
        .map(|block| UuFile {
            name: block.metadata.filename,
            data: block.data,
        })
        .collect()
}

/// Offsets at which lines start: 0 and after each `\n` followed by `begin `.
fn line_starts(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let first = text.starts_with(b"begin ").then_some(0);
    first
        .into_iter()
        .chain(memchr::memmem::find_iter(text, b"\nbegin ").map(|at| at + 1))
}

/// `begin`, a space, a three- or four-digit octal mode, a space and a name.
fn is_begin_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"begin ") else {
        return false;
    };
    let mode = rest
        .iter()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .count();
    let Some(after_mode) = rest.get(mode..) else {
        return false;
    };
    (3..=4).contains(&mode)
        && after_mode.first() == Some(&b' ')
        && after_mode.get(1).is_some_and(|b| !b.is_ascii_whitespace())
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
                UuFile {
                    name: "invoice.exe".into(),
                    data: b"MZ\x90\x00binary".to_vec()
                },
                UuFile {
                    name: "form.doc".into(),
                    data: b"plain".to_vec()
                },
            ]
        );
    }

    #[test]
    fn a_block_at_the_very_start_counts() {
        let text = block("a.js", b"alert(1)");
        assert_eq!(files(text.as_bytes())[0].name, "a.js");
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

    #[test]
    fn at_most_max_files_are_taken() {
        let text: String = (0..MAX_FILES + 5)
            .map(|i| block(&format!("f{i}.exe"), b"x"))
            .collect();
        assert_eq!(files(text.as_bytes()).len(), MAX_FILES);
    }
}
