//! 7-Zip archives, read with `sevenz-rust2`: every entry's name is judged, an entry in an
//! encrypted block or an encrypted header flagged, and each block decompressed entry by
//! entry against the message's budget (sniffed, opened one level deeper when it is an
//! archive), as zip entries are. Decoder dictionaries are held to [`MEMORY_LIMIT_KB`]: a
//! header declaring a 1.5 GiB dictionary is refused, not allocated. A block in a method
//! the reader lacks (Deflate64, zstd, ...) is unreadable: its content cannot be judged.

use super::entries::{EntryWalker, Judged};
use super::{sevenzip_header, AttachmentPolicy, Budget, Counted, Findings, Place, Symbol, Unread};
use sevenz_rust2::{Archive, BlockDecoder, Error, Password};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Cursor;
use std::rc::Rc;

/// Memory one content decoder (LZMA dictionary, PPMd model) may take, in KiB: 7-Zip's
/// default and "maximum" levels use 16 and 64 MiB dictionaries.
pub(super) const MEMORY_LIMIT_KB: usize = 64 * 1024;
/// The reader's memory limit while it reads the archive's header, in KiB: it bounds both
/// the decoded header and the header's own decoder, whose dictionary is declared as at
/// most 1 MiB to it (`sevenzip_header`). The reader allocates about a hundred bytes for
/// each entry a header declares, and a declared entry takes as little as one header byte:
/// 2 MiB holds some 20,000 real entries and costs at most about 200 MB, which
/// [`AttachmentPolicy::seven_zip_headers`] lets one read take at a time.
const HEADER_LIMIT_KB: usize = 2 * 1024;
/// 7-Zip archives one message may have read: each header read can cost a tenth of a
/// second and that memory, so a zip of hundreds of crafted ones must not add up.
pub(super) const MAX_HEADER_READS: usize = 16;
/// Where the signature header's CRC and fields sit: all zero, the reader would search the
/// archive backwards for a header, reparsing its tail at every candidate (quadratic time).
const START_HEADER: std::ops::Range<usize> = 8..32;
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
    if data
        .get(START_HEADER)
        .is_none_or(|h| h.iter().all(|&b| b == 0))
    {
        findings.add(Symbol::ArchiveUnreadable, place.shown);
        return;
    }
    if budget.seven_zip_reads_left == 0 {
        findings.add(Symbol::ArchiveTooManyEntries, place.shown);
        findings.add(Symbol::ArchiveUninspected, place.shown);
        return;
    }
    budget.seven_zip_reads_left -= 1;
    // Writers declare header dictionaries of 1 to 16 MiB; the reader's bound is 2 MiB.
    let patched = sevenzip_header::with_small_header_dictionary(data);
    let data = patched.as_deref().unwrap_or(data);
    let consumed = Rc::new(Cell::new(0u64));
    let mut source = Counted {
        inner: Cursor::new(data),
        consumed: consumed.clone(),
    };
    let password = Password::empty();
    let read = {
        // A poisoned lock only means another read panicked; the guard holds no data.
        let _one_at_a_time = policy
            .seven_zip_headers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Archive::read_with_memory_limit(&mut source, &password, HEADER_LIMIT_KB)
    };
    let archive = match read {
        Ok(archive) => archive,
        Err(Error::PasswordRequired | Error::MaybeBadPassword(_)) => {
            findings.add(Symbol::ArchiveEncrypted, place.shown);
            return;
        }
        // A header too big to read (or compressed with a dictionary past the limit).
        Err(Error::MaxMemLimited { .. }) => {
            findings.add(Symbol::ArchiveTooManyEntries, place.shown);
            findings.add(Symbol::ArchiveUninspected, place.shown);
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
        // Past the entry limit names are still judged (the header read bounds how many
        // there are); contents are not read.
        let within_limit = budget.take_entry();
        if !within_limit {
            findings.add(Symbol::ArchiveTooManyEntries, place.shown);
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
            if !within_limit {
                walker.left_unread(&judged.name, Unread::Limits, findings);
            } else if block.is_some() {
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

/// What a byte decoded from `block` costs the budget: its dearest coder's (see
/// [`super::cost`]).
fn block_cost(block: Option<&sevenz_rust2::Block>) -> u64 {
    use sevenz_rust2::EncoderMethod;
    block
        .into_iter()
        .flat_map(|b| &b.coders)
        .map(|coder| match coder.encoder_method_id() {
            EncoderMethod::ID_PPMD => super::cost::PPMD,
            EncoderMethod::ID_BZIP2 => super::cost::BZIP2,
            EncoderMethod::ID_LZMA | EncoderMethod::ID_LZMA2 => super::cost::LZMA,
            _ => super::cost::PLAIN,
        })
        .max()
        .unwrap_or(super::cost::PLAIN)
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
                break;
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
            let cost = block_cost(self.archive.blocks.get(block));
            let decoded = budget.at_cost(cost, |budget| {
                decoder.for_each_entries(&mut |entry, reader| {
                    let judged = to_read.remove(&index);
                    index += 1;
                    let Some(judged) = judged else {
                        // A directory or an empty file reads nothing; any other entry is
                        // past the entry limit, and so are those after it.
                        return Ok(!entry.has_stream());
                    };
                    walker.judge_content(&mut &mut *reader, judged, budget, findings);
                    Ok(!budget.exhausted())
                })
            });
            match decoded {
                Ok(_) => {}
                Err(Error::MaxMemLimited { .. }) => {
                    findings.add(Symbol::ArchiveTooLarge, self.path)
                }
                Err(_) => findings.add(Symbol::ArchiveUnreadable, self.path),
            }
        }
        // Entries the budget or a broken block left unread.
        let why = if budget.exhausted() {
            Unread::Limits
        } else {
            Unread::Unreadable
        };
        for judged in to_read.values() {
            walker.left_unread(&judged.name, why, findings);
        }
    }
}
