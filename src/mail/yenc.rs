//! yEnc files inside text: the `=ybegin line=128 size=… name=invoice.exe` blocks that
//! newsreaders and some mail clients (and the tools that decode pasted mail) turn into
//! files, while a reader of MIME structure sees only a text part.

use super::uuencode::{EncodedFile, MAX_DECODED};

/// The yEnc files in `text`, in order: every `=ybegin` line that names a file, decoded up
/// to its `=yend` line (or the end of the text). The first [`MAX_DECODED`] are decoded;
/// past them only names are taken, as for uuencode.
pub fn files(text: &[u8]) -> Vec<EncodedFile> {
    let starts: Vec<usize> = begin_lines(text).collect();
    let mut found = Vec::new();
    for (i, &at) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let block = text.get(at..end).unwrap_or_default();
        let mut lines = block.split(|&b| b == b'\n');
        let Some(name) = lines.next().and_then(name_of) else {
            continue;
        };
        if found.len() >= MAX_DECODED {
            found.push(EncodedFile {
                name,
                data: Vec::new(),
                data_left_out: true,
            });
            continue;
        }
        let mut data = Vec::new();
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"=yend") {
                break;
            }
            if line.starts_with(b"=ypart") {
                continue;
            }
            decode_line(line, &mut data);
        }
        found.push(EncodedFile {
            name,
            data,
            data_left_out: false,
        });
    }
    found
}

/// Offsets of the lines that open a yEnc block.
fn begin_lines(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let first = text.starts_with(b"=ybegin ").then_some(0);
    first
        .into_iter()
        .chain(memchr::memmem::find_iter(text, b"\n=ybegin ").map(|at| at + 1))
}

/// The file name of an `=ybegin` line: everything after ` name=`, the last keyword of the
/// line by the yEnc 1.3 draft, so a name may hold spaces.
fn name_of(line: &[u8]) -> Option<String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let at = memchr::memmem::find(line, b" name=")?;
    let name = line.get(at + 6..)?.trim_ascii();
    (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
}

/// Decodes one data line: each byte less 42, an `=` escaping the next byte, less 64 more.
fn decode_line(line: &[u8], out: &mut Vec<u8>) {
    let mut bytes = line.iter();
    while let Some(&b) = bytes.next() {
        let b = if b == b'=' {
            match bytes.next() {
                Some(&next) => next.wrapping_sub(64),
                None => break,
            }
        } else {
            b
        };
        out.push(b.wrapping_sub(42));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in data {
            let e = b.wrapping_add(42);
            if matches!(e, 0 | b'\n' | b'\r' | b'=') {
                out.push(b'=');
                out.push(e.wrapping_add(64));
            } else {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn a_yenc_block_in_text_is_a_named_file() {
        let program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00=\n\r\xd6\xff".to_vec();
        let mut text =
            b"Hi, the invoice is below.\r\n\r\n=ybegin line=128 size=15 name=Invoice 2024.exe\r\n"
                .to_vec();
        text.extend(encode(&program));
        text.extend(b"\r\n=yend size=15\r\nRegards\r\n");
        let files = files(&text);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "Invoice 2024.exe");
        assert_eq!(files[0].data, program);
        // Multi-part form, and a block at the very start.
        let mut part =
            b"=ybegin part=1 line=128 size=15 name=a.scr\n=ypart begin=1 end=15\n".to_vec();
        part.extend(encode(&program));
        let files = super::files(&part);
        assert_eq!(
            (files[0].name.as_str(), files[0].data.as_slice()),
            ("a.scr", &program[..])
        );
    }

    #[test]
    fn prose_and_nameless_lines_are_no_files() {
        assert!(files(b"We talked about =ybegin yesterday.\n").is_empty());
        assert!(files(b"=ybegin line=128 size=3\nabc\n=yend\n").is_empty());
        assert!(files(b"").is_empty());
        // Past the decoded limit only names are kept.
        let many: Vec<u8> = (0..MAX_DECODED + 2)
            .flat_map(|i| format!("=ybegin line=128 size=1 name=f{i}.exe\nk\n=yend\n").into_bytes())
            .collect();
        let files = files(&many);
        assert_eq!(files.len(), MAX_DECODED + 2);
        assert!(files[MAX_DECODED].data_left_out && files[MAX_DECODED].data.is_empty());
    }
}
