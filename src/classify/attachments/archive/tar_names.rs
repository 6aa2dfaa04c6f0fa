//! The names a tar's headers carry, read from its bytes as they come, in pieces of any
//! size: each header's name (with its POSIX prefix), each GNU long name (`L`), and each
//! PAX record's `path` and `GNU.sparse.name`. Entry data is skipped, never kept, so the
//! names of a `.tar.gz` can be read past what the expansion budget lets the policy keep.

/// Tar header block size.
const BLOCK: usize = 512;
/// Longest long-name or PAX record body kept; the rest is skipped.
const MAX_RECORD: usize = 64 * 1024;

/// A long-name or PAX record body being gathered.
struct Record {
    kind: u8,
    left: usize,
    body: Vec<u8>,
    padding: usize,
}

/// Where a tar's reading stands between pieces.
#[derive(Default)]
pub(super) struct TarNames {
    /// Bytes still to skip: an entry's data and padding.
    skip: usize,
    /// The header block being gathered.
    block: Vec<u8>,
    record: Option<Record>,
    /// A PAX `size` record's value, for the header after it.
    next_size: Option<usize>,
    /// The end marker, or a header whose checksum fails, was reached.
    done: bool,
}

impl TarNames {
    /// Whether the reading has ended (end marker or a broken header).
    pub(super) fn done(&self) -> bool {
        self.done
    }

    /// Reads the next piece of the tar, calling `found` with each name it completes.
    pub(super) fn feed(&mut self, mut piece: &[u8], found: &mut impl FnMut(&[u8])) {
        while !piece.is_empty() && !self.done {
            if self.skip > 0 {
                let n = self.skip.min(piece.len());
                self.skip -= n;
                piece = &piece[n..];
            } else if let Some(record) = self.record.as_mut() {
                let n = record.left.min(piece.len());
                let room = MAX_RECORD.saturating_sub(record.body.len());
                record.body.extend_from_slice(&piece[..n.min(room)]);
                record.left -= n;
                piece = &piece[n..];
                if record.left == 0 {
                    if let Some(record) = self.record.take() {
                        self.skip = record.padding;
                        self.end_record(&record, found);
                    }
                }
            } else {
                let n = (BLOCK - self.block.len()).min(piece.len());
                self.block.extend_from_slice(&piece[..n]);
                piece = &piece[n..];
                if self.block.len() == BLOCK {
                    let header = std::mem::take(&mut self.block);
                    self.header(&header, found);
                }
            }
        }
    }

    fn header(&mut self, header: &[u8], found: &mut impl FnMut(&[u8])) {
        if header.iter().all(|&b| b == 0) || !super::magic::tar_checksum_holds(header) {
            self.done = true;
            return;
        }
        let size = self
            .next_size
            .take()
            .or_else(|| number(&header[124..136]))
            .unwrap_or(0);
        let padding = size.next_multiple_of(BLOCK).saturating_sub(size);
        match header[156] {
            kind @ (b'L' | b'x' | b'g') => {
                self.record = Some(Record {
                    kind,
                    left: size,
                    body: Vec::new(),
                    padding,
                });
                if size == 0 {
                    if let Some(record) = self.record.take() {
                        self.end_record(&record, found);
                    }
                }
            }
            _ => {
                let name = c_string(&header[0..100]);
                let prefix = c_string(&header[345..500]);
                if header[257..262] == *b"ustar" && !prefix.is_empty() {
                    let mut full = prefix.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(name);
                    found(&full);
                } else {
                    found(name);
                }
                self.skip = size.saturating_add(padding);
            }
        }
    }

    fn end_record(&mut self, record: &Record, found: &mut impl FnMut(&[u8])) {
        if record.kind == b'L' {
            found(c_string(&record.body));
            return;
        }
        for (key, value) in pax_records(&record.body) {
            match key {
                b"path" | b"GNU.sparse.name" => found(value),
                b"size" if record.kind == b'x' => {
                    self.next_size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                }
                _ => {}
            }
        }
    }
}

/// The bytes of a NUL-terminated header field.
fn c_string(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

/// A tar number: octal digits (space or NUL padded), or GNU's base-256 form (high bit of
/// the first byte set).
fn number(field: &[u8]) -> Option<usize> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 != 0 {
        return rest.iter().try_fold(usize::from(first & 0x7f), |n, &b| {
            n.checked_mul(256)?.checked_add(usize::from(b))
        });
    }
    let digits = std::str::from_utf8(field).ok()?;
    let digits = digits.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    usize::from_str_radix(digits, 8).ok()
}

/// The records of a PAX extended header: `LEN KEY=VALUE\n` each.
fn pax_records(mut body: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut records = Vec::new();
    while !body.is_empty() {
        let Some(space) = body.iter().position(|&b| b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&body[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l > space && l <= body.len())
        else {
            break;
        };
        let record = &body[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            records.push((&record[..eq], &record[eq + 1..]));
        }
        body = &body[len..];
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_numbers_in_both_forms() {
        assert_eq!(number(b"00000000644\0"), Some(0o644));
        assert_eq!(number(b"     12 "), Some(0o12));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"9"), None);
    }

    #[test]
    fn pax_records_are_read_by_their_lengths() {
        let body = b"18 path=a b=c.exe\n11 size=42\n";
        assert_eq!(
            pax_records(body),
            vec![
                (&b"path"[..], &b"a b=c.exe"[..]),
                (&b"size"[..], &b"42"[..])
            ]
        );
        assert!(pax_records(b"99 path=short\n").is_empty());
    }

    /// The same names whatever the size of the pieces the tar comes in.
    #[test]
    fn names_are_the_same_in_pieces_of_any_size() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("{}/setup.exe", "d".repeat(150));
        for (name, data) in [
            ("a.txt", &b"hello"[..]),
            (long.as_str(), &[7u8; 700][..]),
            ("b.js", b""),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let names_in = |piece: usize| {
            let mut names: Vec<String> = Vec::new();
            let mut reader = TarNames::default();
            for chunk in tar.chunks(piece) {
                reader.feed(chunk, &mut |n| {
                    names.push(String::from_utf8_lossy(n).into_owned())
                });
            }
            assert!(reader.done(), "the end marker is reached");
            names
        };
        let whole = names_in(tar.len());
        assert!(whole.contains(&"a.txt".to_string()), "{whole:?}");
        assert!(whole.contains(&long), "{whole:?}");
        assert!(whole.contains(&"b.js".to_string()), "{whole:?}");
        for piece in [1, 7, 511, 512, 513, 4096] {
            assert_eq!(names_in(piece), whole, "pieces of {piece}");
        }
    }
}
