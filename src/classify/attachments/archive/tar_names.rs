//! The names a tar's headers carry, read from its bytes as they come, in pieces of any
//! size: each header's name (with its POSIX prefix), each GNU long name (`L`), and each
//! PAX record's `path` and `GNU.sparse.name`. Entry data is skipped, never kept, so the
//! names of a `.tar.gz` can be read past what the expansion budget lets the policy keep.

/// Tar header block size.
const BLOCK: usize = 512;
/// Longest name kept: a longer one keeps its last bytes, where its extension is.
const MAX_NAME: usize = 64 * 1024;

/// A record body (GNU long name, PAX extended header) being read.
struct Record {
    kind: u8,
    left: usize,
    padding: usize,
    /// A long name's bytes (`L`).
    name: Vec<u8>,
    /// A PAX header's records (`x`, `g`).
    pax: PaxReader,
}

/// Where a tar's reading stands between pieces.
#[derive(Default)]
pub(super) struct TarNames {
    /// Bytes still to skip: an entry's data and padding.
    skip: usize,
    /// The header block being gathered.
    block: Vec<u8>,
    record: Option<Record>,
    /// A PAX `size` record's value, for the file header after it.
    next_size: Option<usize>,
    /// The end marker was reached.
    done: bool,
    /// A block where a header should be failed its checksum: the blocks after it were
    /// read for the next header, as GNU tar does ("Skipping to next header").
    damaged: bool,
    /// A valid header came after such damage: its entry is one the `tar` crate, which
    /// stops at the damage, never showed.
    headers_after_damage: bool,
    /// A GNU sparse file's extension blocks are being read (each says whether another
    /// follows); after them, this many bytes of data and padding are skipped.
    sparse_data: Option<usize>,
    /// A Solaris `X` record gave a file's size, which the `tar` crate does not apply: its
    /// entries start elsewhere than where GNU tar reads them.
    sizes_the_crate_ignores: bool,
}

impl TarNames {
    /// Whether the reading has ended (the end marker).
    pub(super) fn done(&self) -> bool {
        self.done
    }

    /// Whether a valid header followed a damaged block.
    pub(super) fn headers_after_damage(&self) -> bool {
        self.headers_after_damage
    }

    /// Whether the `tar` crate reads the entries elsewhere than GNU tar (a size from a
    /// Solaris `X` record).
    pub(super) fn sizes_the_crate_ignores(&self) -> bool {
        self.sizes_the_crate_ignores
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
                let part = &piece[..n];
                if record.kind == b'L' {
                    keep_tail(&mut record.name, part);
                } else {
                    record.pax.feed(part, &mut |key, value| match key {
                        b"path" | b"GNU.sparse.name" => found(value),
                        b"size" if matches!(record.kind, b'x' | b'X') => {
                            self.next_size =
                                std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                            self.sizes_the_crate_ignores |= record.kind == b'X';
                        }
                        _ => {}
                    });
                }
                record.left -= n;
                piece = &piece[n..];
                if record.left == 0 {
                    if let Some(record) = self.record.take() {
                        self.end_record(&record, found);
                    }
                }
            } else {
                let n = (BLOCK - self.block.len()).min(piece.len());
                self.block.extend_from_slice(&piece[..n]);
                piece = &piece[n..];
                if self.block.len() == BLOCK {
                    let block = std::mem::take(&mut self.block);
                    match self.sparse_data {
                        // Byte 504 of an extension block: whether another follows.
                        Some(data) if block[504] == 0 => {
                            self.sparse_data = None;
                            self.skip = data;
                        }
                        Some(_) => {}
                        None => self.header(&block, found),
                    }
                }
            }
        }
    }

    fn header(&mut self, header: &[u8], found: &mut impl FnMut(&[u8])) {
        if header.iter().all(|&b| b == 0) {
            self.done = true;
            return;
        }
        // A block of junk where a header should be: GNU tar skips to the next block
        // whose checksum holds and extracts on (review: `evil.exe` after 512 bytes of
        // junk was never named).
        if !super::magic::tar_checksum_holds(header) {
            self.damaged = true;
            return;
        }
        self.headers_after_damage |= self.damaged;
        let own_size = super::magic::tar_number(&header[124..136]).unwrap_or(0);
        let kind = header[156];
        // `X` is Solaris tar's `x`: GNU tar, libarchive and Python's `tarfile` apply its
        // records alike (review: its `path` was never judged).
        let is_record = matches!(kind, b'L' | b'K' | b'x' | b'X' | b'g');
        // A PAX `size` is the size of the file the records describe, not of a record
        // between them (GNU tar and Python's tarfile read it so).
        let size = if is_record {
            own_size
        } else {
            self.next_size.take().unwrap_or(own_size)
        };
        let padding = size
            .checked_next_multiple_of(BLOCK)
            .map_or(0, |padded| padded - size);
        if is_record {
            let record = Record {
                kind,
                left: size,
                padding,
                name: Vec::new(),
                pax: PaxReader::default(),
            };
            if size == 0 {
                self.end_record(&record, found);
            } else {
                self.record = Some(record);
            }
            return;
        }
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
        let data = size.saturating_add(padding);
        // A GNU sparse file whose map goes on in extension blocks: they come before its
        // data (review: read as the data, they put the reading out of step, and a block of
        // zeros in the data ended it before the names after).
        // Only in GNU format: in a POSIX header byte 482 is part of the name's prefix, and
        // GNU tar, libarchive and the `tar` crate read no extension blocks there.
        if kind == b'S' && header[257..265] == *b"ustar  \0" && header[482] != 0 {
            self.sparse_data = Some(data);
        } else {
            self.skip = data;
        }
    }

    fn end_record(&mut self, record: &Record, found: &mut impl FnMut(&[u8])) {
        self.skip = record.padding;
        if record.kind == b'L' {
            found(c_string(&record.name));
        }
    }
}

/// Appends `part` to `kept`, keeping at most the last [`MAX_NAME`] bytes.
fn keep_tail(kept: &mut Vec<u8>, part: &[u8]) {
    kept.extend_from_slice(part);
    if kept.len() > 2 * MAX_NAME {
        kept.drain(..kept.len() - MAX_NAME);
    }
}

/// The records of a PAX extended header read as they come, `LEN KEY=VALUE\n` each: a
/// record's length is read first, so a long record of no interest (a comment of
/// megabytes) is skipped without hiding the records after it.
#[derive(Default)]
struct PaxReader {
    /// Digits of the record's length read so far.
    length: Vec<u8>,
    /// Bytes of the record after the length's space, still to come.
    left: usize,
    /// The record's text after the length (key, `=`, value), its value's tail kept.
    text: Vec<u8>,
    /// The records cannot be read on (a length that is no number).
    broken: bool,
}

impl PaxReader {
    fn feed(&mut self, mut part: &[u8], record: &mut impl FnMut(&[u8], &[u8])) {
        while !part.is_empty() && !self.broken {
            if self.left == 0 {
                let c = part[0];
                part = &part[1..];
                if c.is_ascii_digit() && self.length.len() < 20 {
                    self.length.push(c);
                    continue;
                }
                let length = std::str::from_utf8(&self.length)
                    .ok()
                    .and_then(|l| l.parse::<usize>().ok());
                let said = self.length.len() + 1;
                match length.filter(|&l| c == b' ' && l > said) {
                    Some(l) => {
                        self.left = l - said;
                        self.length.clear();
                        self.text.clear();
                    }
                    None => self.broken = true,
                }
                continue;
            }
            let n = self.left.min(part.len());
            keep_tail(&mut self.text, &part[..n]);
            self.left -= n;
            part = &part[n..];
            if self.left == 0 {
                let text = self.text.strip_suffix(b"\n").unwrap_or(&self.text);
                if let Some(eq) = text.iter().position(|&b| b == b'=') {
                    record(&text[..eq], &text[eq + 1..]);
                }
            }
        }
    }
}

/// The bytes of a NUL-terminated header field.
fn c_string(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pax_of(body: &[u8], piece: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut reader = PaxReader::default();
        for chunk in body.chunks(piece) {
            reader.feed(chunk, &mut |k, v| {
                out.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            });
        }
        out
    }

    #[test]
    fn pax_records_are_read_by_their_lengths_in_any_pieces() {
        let body = b"18 path=a b=c.exe\n11 size=42\n";
        let want = vec![
            ("path".to_string(), "a b=c.exe".to_string()),
            ("size".to_string(), "42".to_string()),
        ];
        for piece in [1, 2, 5, body.len()] {
            assert_eq!(pax_of(body, piece), want, "pieces of {piece}");
        }
        assert!(pax_of(b"x path=short\n", 64).is_empty());
    }

    /// Regression (review): a record body was kept to 64 KiB and read after, so a long
    /// comment record hid the `path` after it.
    #[test]
    fn a_long_record_hides_nothing_after_it() {
        let comment = format!(" comment={}\n", "A".repeat(100_000));
        let mut body = format!("{}{comment}", comment.len() + 6).into_bytes();
        assert_eq!(pax_of(&body, body.len()).len(), 1, "the length is right");
        body.extend_from_slice(b"20 path=invoice.exe\n");
        let records = pax_of(&body, 4096);
        assert_eq!(records[1], ("path".to_string(), "invoice.exe".to_string()));
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

    /// A header block: `name`, type `kind`, `size`, GNU magic, `extended` set at 482 (a
    /// sparse map continued in extension blocks), checksum set.
    fn gnu_header(name: &[u8], kind: u8, size: usize, extended: bool) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = kind;
        h[257..265].copy_from_slice(b"ustar  \0");
        h[482] = u8::from(extended);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// Regression (review): a GNU sparse file's extension blocks (its map, when it does
    /// not fit the header) were read as its data, which put the reading out of step: a
    /// block of zeros in the data read as the end, and the names after it (which the
    /// `tar` crate does not show past the entry limit) were never judged.
    #[test]
    fn a_sparse_file_s_extension_blocks_hide_no_name() {
        let mut tar = gnu_header(b"b.dat", b'S', BLOCK, true);
        // One extension block (offset 0, 512 bytes; no other follows), then the data.
        let mut extension = vec![0u8; BLOCK];
        extension[..12].copy_from_slice(b"00000000000\0");
        extension[12..24].copy_from_slice(b"00000001000\0");
        tar.extend_from_slice(&extension);
        tar.extend_from_slice(&[0u8; BLOCK]);
        tar.extend_from_slice(&gnu_header(b"evil.js", b'0', 1, false));
        tar.extend_from_slice(&[b'x'; BLOCK]);
        tar.extend_from_slice(&[0u8; 2 * BLOCK]);
        let mut names: Vec<String> = Vec::new();
        let mut reader = TarNames::default();
        reader.feed(&tar, &mut |n| {
            names.push(String::from_utf8_lossy(n).into_owned())
        });
        assert_eq!(names, ["b.dat", "evil.js"]);
        assert!(reader.done());
        // In a POSIX header the byte is part of the name's prefix: no extension blocks.
        let mut posix = gnu_header(b"c.dat", b'S', 0, false);
        posix[257..265].copy_from_slice(b"ustar\x0000");
        posix[345..500].fill(b'p');
        posix[148..156].copy_from_slice(b"        ");
        let sum: u32 = posix.iter().map(|&b| u32::from(b)).sum();
        posix[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        posix.extend_from_slice(&gnu_header(b"evil.js", b'0', 0, false));
        posix.extend_from_slice(&[0u8; 2 * BLOCK]);
        let mut names: Vec<String> = Vec::new();
        TarNames::default().feed(&posix, &mut |n| {
            names.push(String::from_utf8_lossy(n).into_owned())
        });
        assert!(names.iter().any(|n| n == "evil.js"), "{names:?}");
    }
}
