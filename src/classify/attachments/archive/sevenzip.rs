//! 7-Zip archives, read with `sevenz-rust2`: every entry's name is judged, an entry in an
//! encrypted block or an encrypted header flagged, and each block decompressed entry by
//! entry against the message's budget (sniffed, opened one level deeper when it is an
//! archive), as zip entries are. Decoder dictionaries are held to [`MEMORY_LIMIT_KB`]: a
//! header declaring a 1.5 GiB dictionary is refused, not allocated.

use super::entries::{EntryWalker, Judged};
use super::{AttachmentPolicy, Budget, Counted, Findings, Place, Symbol};
use sevenz_rust2::{Archive, BlockDecoder, Error, Password};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Cursor;
use std::rc::Rc;

/// Memory one content decoder (LZMA dictionary, PPMd model) may take, in KiB: 7-Zip's
/// default and "maximum" levels use 16 and 64 MiB dictionaries.
const MEMORY_LIMIT_KB: usize = 64 * 1024;
/// The largest archive header read, decoded. The reader allocates about a hundred bytes
/// for each entry a header declares, and a declared entry takes as little as one header
/// byte: 1 MiB holds some 10,000 real entries and costs at most about 100 MB, which
/// [`AttachmentPolicy::seven_zip_headers`] lets one read take at a time.
const HEADER_MAX_BYTES: u64 = 1024 * 1024;
/// The reader's memory limit when the header's size could not be read before it (the
/// reader then bounds the header by its decoder's memory limit): the header's own LZMA
/// dictionary (1 MiB in 7-Zip's archives) fits, [`HEADER_MAX_BYTES`] holds.
const UNKNOWN_HEADER_LIMIT_KB: usize = 2 * 1024;
/// 7-Zip's method id of AES-256 with a SHA-256 key (an encrypted block).
const AES_METHOD: &[u8] = &[0x06, 0xF1, 0x07, 0x01];

/// Judges the 7-Zip archive in `data` (it starts with the 7-Zip signature).
pub(super) fn walk(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let consumed = Rc::new(Cell::new(0u64));
    let mut source = Counted {
        inner: Cursor::new(data),
        consumed: consumed.clone(),
    };
    let limit_kb = match header_size(data) {
        Some(size) if size > HEADER_MAX_BYTES => {
            findings.add(Symbol::ArchiveTooManyEntries, place.shown);
            return;
        }
        Some(_) => MEMORY_LIMIT_KB,
        None => UNKNOWN_HEADER_LIMIT_KB,
    };
    let password = Password::empty();
    let read = {
        // A poisoned lock only means another read panicked; the guard holds no data.
        let _one_at_a_time = policy
            .seven_zip_headers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Archive::read_with_memory_limit(&mut source, &password, limit_kb)
    };
    let archive = match read {
        Ok(archive) => archive,
        Err(Error::PasswordRequired | Error::MaybeBadPassword(_)) => {
            findings.add(Symbol::ArchiveEncrypted, place.shown);
            return;
        }
        Err(Error::MaxMemLimited { .. }) => {
            findings.add(Symbol::ArchiveTooLarge, place.shown);
            return;
        }
        Err(_) => {
            findings.add(Symbol::ArchiveUnreadable, place.shown);
            return;
        }
    };
    // The header's reading is not expansion of content.
    consumed.set(0);
    let encrypted_blocks: Vec<bool> = archive
        .blocks
        .iter()
        .map(|b| b.coders.iter().any(|c| c.encoder_method_id() == AES_METHOD))
        .collect();
    let walker = EntryWalker::new(policy, place, consumed);
    let mut to_read: HashMap<usize, Judged> = HashMap::new();
    for (index, file) in archive.files.iter().enumerate() {
        if file.is_directory() {
            continue;
        }
        if !budget.take_entry() {
            findings.add(Symbol::ArchiveTooManyEntries, place.shown);
            break;
        }
        let block = archive
            .stream_map
            .file_block_index
            .get(index)
            .copied()
            .flatten();
        let encrypted = block.is_some_and(|b| encrypted_blocks.get(b) == Some(&true));
        let name = file.name().to_owned();
        if let Some(judged) = walker.judge_name(name, encrypted, false, findings) {
            if block.is_some() {
                to_read.insert(index, judged);
            }
        }
    }
    let decoding = Decoding {
        archive: &archive,
        encrypted_blocks: &encrypted_blocks,
        path: place.shown,
    };
    decoding.read_blocks(to_read, walker, &mut source, budget, findings);
}

/// An archive whose names were judged, to be decompressed for its entries' content.
struct Decoding<'a> {
    archive: &'a Archive,
    encrypted_blocks: &'a [bool],
    /// The archive's path as findings show it.
    path: &'a str,
}

impl Decoding<'_> {
    /// Decompresses the blocks holding the entries in `to_read` (by file index), judging
    /// each entry's content, until the budget runs out. A block is decoded from its start
    /// (a solid block cannot be entered in the middle), every entry in it read in turn.
    /// The decoder decodes what a reader leaves unread before the next entry, so the walk
    /// stops the moment the budget does, or at an entry not to be read (past the entry
    /// limit): nothing is ever decompressed unaccounted.
    fn read_blocks(
        &self,
        mut to_read: HashMap<usize, Judged>,
        mut walker: EntryWalker<'_>,
        source: &mut Counted<'_>,
        budget: &mut Budget,
        findings: &mut Findings,
    ) {
        let password = Password::empty();
        let map = &self.archive.stream_map;
        for (block, &encrypted) in self.encrypted_blocks.iter().enumerate() {
            if to_read.is_empty() || budget.exhausted() {
                return;
            }
            if encrypted {
                continue;
            }
            // The decoder calls back for every file of the block's span, in order (those
            // without data with an empty reader).
            let mut index = map.block_first_file_index.get(block).copied().unwrap_or(0);
            let decoder = BlockDecoder::new_with_memory_limit(
                1,
                MEMORY_LIMIT_KB,
                block,
                self.archive,
                &password,
                source,
            );
            let decoded = decoder.for_each_entries(&mut |entry, reader| {
                let judged = to_read.remove(&index);
                index += 1;
                let Some(judged) = judged else {
                    // A directory or an empty file reads nothing; any other entry is
                    // past the entry limit, and so are those after it.
                    return Ok(!entry.has_stream());
                };
                walker.judge_content(&mut &mut *reader, judged, budget, findings);
                Ok(!budget.exhausted())
            });
            match decoded {
                Ok(_) | Err(Error::UnsupportedCompressionMethod(_)) => {}
                Err(Error::MaxMemLimited { .. }) => {
                    findings.add(Symbol::ArchiveTooLarge, self.path)
                }
                Err(_) => findings.add(Symbol::ArchiveUnreadable, self.path),
            }
        }
    }
}

/// The size of the archive's header once decoded, as it declares it, before the reader
/// allocates for it: a plain header's size, or the largest unpacked size the streams of an
/// encoded (compressed) header declare. `None` when the layout is not the usual one.
fn header_size(data: &[u8]) -> Option<u64> {
    const SIGNATURE_HEADER: u64 = 32;
    const HEADER: u8 = 0x01;
    const ENCODED_HEADER: u8 = 0x17;
    let offset = u64::from_le_bytes(data.get(12..20)?.try_into().ok()?);
    let size = u64::from_le_bytes(data.get(20..28)?.try_into().ok()?);
    let start = usize::try_from(SIGNATURE_HEADER.checked_add(offset)?).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    let mut header = Numbers {
        bytes: data.get(start..end)?,
    };
    match header.byte()? {
        HEADER => Some(size),
        ENCODED_HEADER => header.largest_unpack_size(),
        _ => None,
    }
}

/// A 7-Zip header being read: bytes and 7-Zip's variable-length numbers (the count of
/// high one bits of the first byte is the count of bytes after it).
struct Numbers<'a> {
    bytes: &'a [u8],
}

impl Numbers<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.bytes = self.bytes.get(usize::try_from(n).ok()?..)?;
        Some(())
    }

    fn number(&mut self) -> Option<u64> {
        let first = self.byte()?;
        let mut value = 0u64;
        for i in 0..8u32 {
            let mask = 0x80u8 >> i;
            if first & mask == 0 {
                let high = u64::from(first & mask.wrapping_sub(1));
                return Some(value | (high << (8 * i)));
            }
            value |= u64::from(self.byte()?) << (8 * i);
        }
        Some(value)
    }

    /// Reads the streams info of an encoded header (pack info, then the folders with
    /// their coders and unpacked sizes) and returns the largest unpacked size declared.
    fn largest_unpack_size(&mut self) -> Option<u64> {
        const END: u8 = 0x00;
        const PACK_INFO: u8 = 0x06;
        const SIZE: u8 = 0x09;
        const CRC: u8 = 0x0A;
        const UNPACK_INFO: u8 = 0x07;
        const FOLDER: u8 = 0x0B;
        const CODERS_UNPACK_SIZE: u8 = 0x0C;
        /// Folders and coders an encoded header has (one, one or two); more is not usual.
        const MAX_ITEMS: u64 = 16;
        let mut id = self.byte()?;
        if id == PACK_INFO {
            let _pack_pos = self.number()?;
            let streams = self.number()?.min(MAX_ITEMS + 1);
            loop {
                match self.byte()? {
                    END => break,
                    SIZE => {
                        for _ in 0..streams {
                            self.number()?;
                        }
                    }
                    CRC => self.skip_digests(streams)?,
                    _ => return None,
                }
            }
            id = self.byte()?;
        }
        if id != UNPACK_INFO || self.byte()? != FOLDER {
            return None;
        }
        let folders = self.number()?;
        if folders > MAX_ITEMS || self.byte()? != 0 {
            return None;
        }
        let mut outputs = Vec::new();
        for _ in 0..folders {
            outputs.push(self.folder_outputs(MAX_ITEMS)?);
        }
        if self.byte()? != CODERS_UNPACK_SIZE {
            return None;
        }
        let mut largest = 0u64;
        for _ in 0..outputs.iter().sum::<u64>() {
            largest = largest.max(self.number()?);
        }
        Some(largest)
    }

    /// Reads a folder's coders and bindings; returns how many output streams it has.
    fn folder_outputs(&mut self, max_items: u64) -> Option<u64> {
        let coders = self.number()?;
        if coders == 0 || coders > max_items {
            return None;
        }
        let (mut inputs, mut outputs) = (0u64, 0u64);
        for _ in 0..coders {
            let flags = self.byte()?;
            if flags & 0xC0 != 0 {
                return None;
            }
            self.skip(u64::from(flags & 0x0F))?;
            let (i, o) = if flags & 0x10 != 0 {
                (self.number()?, self.number()?)
            } else {
                (1, 1)
            };
            if i > max_items || o > max_items {
                return None;
            }
            inputs += i;
            outputs += o;
            if flags & 0x20 != 0 {
                let len = self.number()?;
                self.skip(len)?;
            }
        }
        let bind_pairs = outputs.checked_sub(1)?;
        for _ in 0..bind_pairs * 2 {
            self.number()?;
        }
        let packed = inputs.checked_sub(bind_pairs)?;
        if packed > 1 {
            for _ in 0..packed {
                self.number()?;
            }
        }
        Some(outputs)
    }

    /// Skips a digests record of `count` streams: an all-defined byte (else a bit per
    /// stream), then four bytes per defined stream.
    fn skip_digests(&mut self, count: u64) -> Option<()> {
        let defined = if self.byte()? != 0 {
            count
        } else {
            let bits = self.bytes.get(..usize::try_from(count.div_ceil(8)).ok()?)?;
            self.skip(count.div_ceil(8))?;
            bits.iter().map(|b| u64::from(b.count_ones())).sum()
        };
        self.skip(defined.checked_mul(4)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevenz_rust2::{ArchiveEntry, ArchiveWriter};

    fn written(names: &[&str]) -> Vec<u8> {
        let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).expect("writer");
        writer.set_encrypt_header(false);
        for name in names {
            let entry = ArchiveEntry::new_file(name);
            writer
                .push_archive_entry(entry, Some(b"data".as_slice()))
                .expect("entry");
        }
        writer.finish().expect("finish").into_inner()
    }

    #[test]
    fn the_decoded_header_size_is_read_before_the_reader_runs() {
        let z = written(&["a.txt", "docs/b.txt", "c.exe"]);
        let size = header_size(&z);
        assert!(size.is_some_and(|s| s > 20 && s < 1000), "{size:?}");
        // An encoded header (LZMA) declaring 2 MiB once decoded, and a plain one.
        let encoded = [
            0x17, 0x06, 0x00, 0x01, 0x09, 0x05, 0x00, 0x07, 0x0b, 0x01, 0x00, 0x01, 0x23, 0x03,
            0x01, 0x01, 0x05, 0x5d, 0x00, 0x00, 0x10, 0x00, 0x0c, 0xe0, 0x00, 0x00, 0x20, 0x00,
        ];
        assert_eq!(header_size(&archive_with(&encoded)), Some(2 << 20));
        assert_eq!(header_size(&archive_with(&[0x01, 0x00])), Some(2));
        assert_eq!(header_size(&archive_with(&[0x17, 0x06])), None);
        assert_eq!(header_size(&z[..30]), None);
    }

    /// A 7-Zip signature header pointing at `header` right after it.
    fn archive_with(header: &[u8]) -> Vec<u8> {
        let mut out = b"7z\xbc\xaf\x27\x1c\x00\x04".to_vec();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(header);
        out
    }
}
