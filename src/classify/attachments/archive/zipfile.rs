//! Zip archives, opened in memory and read as streams: every name its headers carry is
//! judged, each entry decompressed chunk by chunk against the message's budget, and an
//! entry that is itself an archive opened one level deeper.

use super::entries::EntryWalker;
use super::sevenzip::MEMORY_LIMIT_KB;
use super::{AttachmentPolicy, Budget, Counted, Findings, NameJudge, Place, Symbol, Unread};
use std::cell::Cell;
use std::io::{Cursor, Read};
use std::rc::Rc;
use zip::ZipArchive;

/// Judges the zip in `data`.
pub(super) fn walk(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let path = place.shown;
    // The reader indexes every central-directory entry up front, at a cost in memory per
    // entry: count the headers first and leave an over-full archive to the streaming read
    // of its first entries. Only headers of the central directory count: the same four
    // bytes in a comment or in an entry's data are not entries (and would hide a real one
    // behind ARCHIVE_TOO_MANY_ENTRIES).
    judge_header_names(policy, data, path, findings, budget);
    let headers = central_headers(data, budget.entries_left.saturating_add(1));
    if headers > budget.entries_left {
        findings.add(Symbol::ArchiveTooManyEntries, path);
        let leading = budget.entries_left;
        walk_leading_entries(policy, data, place, budget, findings);
        budget.entries_left = 0;
        // The entries past those: named with the headers, not opened.
        let walker = EntryWalker::new(policy, place, Rc::new(Cell::new(0)));
        for name in central_names(data).skip(leading) {
            walker.left_unread(&String::from_utf8_lossy(name), Unread::Limits, findings);
        }
        return;
    }
    let consumed = Rc::new(Cell::new(0u64));
    let reader = Counted {
        inner: Cursor::new(data),
        consumed: consumed.clone(),
    };
    let Ok(mut zip) = ZipArchive::new(reader) else {
        // The reader refuses what unzip still extracts (an extra field declaring more
        // than it holds): read the entries as unzip does, so an archive inside is still
        // opened (review: `inner.zip` holding `evil.exe` gave only ARCHIVE_UNREADABLE).
        findings.add(Symbol::ArchiveUnreadable, path);
        walk_leading_entries(policy, data, place, budget, findings);
        return;
    };
    // Local headers naming other files than the central directory, entries the directory
    // does not list, overlapping entries, duplicate names (which the index collapses):
    // each tool would see another archive.
    if zip.validate_header_consistency().is_err() {
        findings.add(Symbol::ArchiveUnreadable, path);
    }
    let mut walker = EntryWalker::new(policy, place, consumed);
    let mut past_the_limit = false;
    for i in 0..zip.len() {
        let Ok(meta) = zip.by_index_data(i) else {
            findings.add(Symbol::ArchiveUnreadable, path);
            continue;
        };
        let name = match meta.name() {
            Ok(n) => n.into_owned(),
            Err(_) => String::from_utf8_lossy(meta.name_raw()).into_owned(),
        };
        let (encrypted, is_dir) = (meta.encrypted(), meta.is_dir());
        let lzma = meta.compression() == zip::CompressionMethod::Lzma;
        if past_the_limit || !budget.take_entry() {
            // Its name was judged with the headers; an archive in it is not opened.
            if !past_the_limit {
                findings.add(Symbol::ArchiveTooManyEntries, path);
                past_the_limit = true;
            }
            walker.left_unread(&name, Unread::Limits, findings);
            continue;
        }
        let Some(judged) = walker.judge_name(name, encrypted, is_dir, findings) else {
            continue;
        };
        // Out of bytes to expand: the names are still judged, they cost nothing.
        if budget.exhausted() {
            walker.left_unread(&judged.name, Unread::Limits, findings);
            continue;
        }
        if lzma && !lzma_dictionary_fits(&mut zip, i) {
            findings.add(Symbol::ArchiveUnreadable, &judged.shown);
            walker.left_unread(&judged.name, Unread::Unreadable, findings);
            continue;
        }
        let Ok(mut file) = zip.by_index(i) else {
            // An unsupported method (xz, zstd, ...) or a broken local header.
            findings.add(Symbol::ArchiveUnreadable, &judged.shown);
            walker.left_unread(&judged.name, Unread::Unreadable, findings);
            continue;
        };
        budget.at_cost(entry_cost(file.compression()), |budget| {
            walker.judge_content(&mut file, judged, budget, findings)
        });
    }
}

/// What a byte of an entry compressed by `method` costs the budget ([`super::cost`]): a
/// zip of bzip2 entries must not decode at deflate's price (review).
fn entry_cost(method: zip::CompressionMethod) -> u64 {
    match method {
        zip::CompressionMethod::Bzip2 => super::cost::BZIP2,
        zip::CompressionMethod::Lzma => super::cost::LZMA,
        _ => super::cost::PLAIN,
    }
}

/// Whether the LZMA entry `i` declares a dictionary within the decoders' memory limit:
/// the zip reader allocates whatever the entry's properties declare (up to 4 GiB).
fn lzma_dictionary_fits(zip: &mut ZipArchive<Counted<'_>>, i: usize) -> bool {
    let Ok(mut raw) = zip.by_index_raw(i) else {
        return false;
    };
    // Version (2 bytes), properties' size (2), properties: lc/lp/pb, dictionary size.
    let mut head = [0u8; 9];
    if raw.read_exact(&mut head).is_err() {
        return false;
    }
    let dictionary = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    u64::from(dictionary) <= MEMORY_LIMIT_KB as u64 * 1024
}

/// Reads the first entries of a zip over the entry limit (as many as the message's count
/// still allows), without the zip reader, whose index of every entry is why the archive
/// is not opened: `docs.zip` holding `invoice.exe`, listed first of 1,001 entries, is
/// still opened. The entries are taken from the central directory, as unzip takes them,
/// each read where its local header says, with the sizes the directory gives (so entries
/// written by a streaming zipper, whose local headers carry no sizes, are read too). A zip
/// without a plain directory (zip64, damaged) is read by its local headers instead, as a
/// streaming unzipper reads it.
fn walk_leading_entries(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let Some(entries) = central_entries(data, budget.entries_left) else {
        stream_leading_entries(policy, data, place, budget, findings);
        return;
    };
    let consumed = Rc::new(Cell::new(0u64));
    let mut walker = EntryWalker::new(policy, place, consumed.clone());
    for entry in entries {
        if !budget.take_entry() {
            return;
        }
        let name = String::from_utf8_lossy(entry.name).into_owned();
        let is_dir = entry.name.ends_with(b"/");
        let Some(judged) = walker.judge_name(name, entry.encrypted, is_dir, findings) else {
            continue;
        };
        if entry.encrypted {
            continue;
        }
        if budget.exhausted() {
            walker.left_unread(&judged.name, Unread::Limits, findings);
            continue;
        }
        let Some(stored) = entry_data(data, &entry) else {
            findings.add(Symbol::ArchiveUnreadable, &judged.shown);
            walker.left_unread(&judged.name, Unread::Unreadable, findings);
            continue;
        };
        let counted = Counted {
            inner: Cursor::new(stored),
            consumed: consumed.clone(),
        };
        match entry.method {
            0 => walker.judge_content(&mut counted.take(entry.size), judged, budget, findings),
            8 => walker.judge_content(
                &mut flate2::read::DeflateDecoder::new(counted).take(entry.size),
                judged,
                budget,
                findings,
            ),
            _ => {
                findings.add(Symbol::ArchiveUnreadable, &judged.shown);
                walker.left_unread(&judged.name, Unread::Unreadable, findings);
            }
        }
    }
}

/// One entry as the central directory describes it.
struct CentralEntry<'a> {
    name: &'a [u8],
    method: usize,
    encrypted: bool,
    compressed_size: usize,
    size: u64,
    /// Where its local header starts in the data.
    local_header: usize,
}

/// The first `limit` entries of the zip's central directory, found from its end record;
/// `None` without a plain one (zip64, damaged). Offsets are taken from where the directory
/// really is, so bytes before the zip (a self-extractor, junk) do not move them.
fn central_entries(data: &[u8], limit: usize) -> Option<Vec<CentralEntry<'_>>> {
    let dir = Directory::of(data)?;
    let base = dir.start.checked_sub(dir.offset)?;
    let mut at = dir.start;
    let mut entries = Vec::new();
    while at < dir.end && entries.len() < limit {
        let Some(next) = record_end(data, at) else {
            break;
        };
        entries.push(CentralEntry {
            name: data.get(at + 46..at + 46 + u16_at(data, at + 28)?)?,
            method: u16_at(data, at + 10)?,
            encrypted: u16_at(data, at + 8)? & 1 == 1,
            compressed_size: u32_at(data, at + 20)? as usize,
            size: u64::from(u32_at(data, at + 24)?),
            local_header: base.checked_add(u32_at(data, at + 42)? as usize)?,
        });
        at = next;
    }
    Some(entries)
}

/// A zip's central directory as its (plain, not zip64) end record gives it.
struct Directory {
    /// Where its first header sits in the data.
    start: usize,
    /// Where the end record sits: the directory ends there.
    end: usize,
    /// The entries it says it holds.
    entries: usize,
    /// Where it says it starts, from the start of the zip: `start` less this is how many
    /// bytes come before the zip (a self-extractor, junk).
    offset: usize,
}

impl Directory {
    fn of(data: &[u8]) -> Option<Directory> {
        let end = end_record(data)?;
        let entries = u16_at(data, end + 10)?;
        let size = u32_at(data, end + 12)?;
        let offset = u32_at(data, end + 16)?;
        if entries == usize::from(u16::MAX) || size == u32::MAX || offset == u32::MAX {
            return None;
        }
        Some(Directory {
            start: end.checked_sub(size as usize)?,
            end,
            entries,
            offset: offset as usize,
        })
    }
}

/// Where the central-directory header at `at` ends (46 bytes, then its name, extra field
/// and comment); `None` when no header starts there.
fn record_end(data: &[u8], at: usize) -> Option<usize> {
    if data.get(at..at + 4) != Some(b"PK\x01\x02".as_slice()) {
        return None;
    }
    Some(at + 46 + u16_at(data, at + 28)? + u16_at(data, at + 30)? + u16_at(data, at + 32)?)
}

/// The stored (compressed) bytes of `entry`: after its local header, as long as the
/// directory says.
fn entry_data<'a>(data: &'a [u8], entry: &CentralEntry<'_>) -> Option<&'a [u8]> {
    let at = entry.local_header;
    if data.get(at..at + 4) != Some(b"PK\x03\x04".as_slice()) {
        return None;
    }
    let start = at + 30 + u16_at(data, at + 26)? + u16_at(data, at + 28)?;
    data.get(start..start.checked_add(entry.compressed_size)?)
}

/// [`walk_leading_entries`] for a zip without a plain directory: its entries one after
/// another by their local headers, stopping at the first it cannot take (a data
/// descriptor, an unknown method).
fn stream_leading_entries(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let Some(first) = memchr::memmem::find(data, b"PK\x03\x04") else {
        return;
    };
    let consumed = Rc::new(Cell::new(0u64));
    let mut reader = Counted {
        inner: Cursor::new(data.get(first..).unwrap_or_default()),
        consumed: consumed.clone(),
    };
    let mut walker = EntryWalker::new(policy, place, consumed);
    while budget.take_entry() && !budget.exhausted() {
        let Ok(Some(mut file)) = zip::read::read_zipfile_from_stream(&mut reader) else {
            return;
        };
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        let (encrypted, is_dir) = (file.encrypted(), file.is_dir());
        if let Some(judged) = walker.judge_name(name, encrypted, is_dir, findings) {
            budget.at_cost(entry_cost(file.compression()), |budget| {
                walker.judge_content(&mut file, judged, budget, findings)
            });
        }
    }
}

/// The little-endian `u16` at `at` of a zip's bytes (a header field), if they reach.
fn u16_at(data: &[u8], at: usize) -> Option<usize> {
    data.get(at..at + 2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// The little-endian `u32` at `at` of a zip's bytes, if they reach.
fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Judges every name the headers of the zip in `data` carry, as bytes, before and apart
/// from the reader: each central-directory header (`PK\x01\x02`: name length at 28, extra
/// length at 30, name at 46) and each local header (`PK\x03\x04`: at 26, 28 and 30) found
/// anywhere, with the Info-ZIP Unicode Path alias in its extra field. The reader shows one
/// name per entry, the central one or the alias in its place; a streaming unzipper uses
/// the local one; and an archive over the entry limit is never opened. Names cost little
/// to judge, so none of them is left out: a blocked file in a zip of 1,001 entries, or
/// named only in its local header or its alias, is found. Signatures in entry data give
/// junk names, which are judged as junk.
fn judge_header_names(
    policy: &AttachmentPolicy,
    data: &[u8],
    path: &str,
    findings: &mut Findings,
    budget: &mut Budget,
) {
    let mut judge = NameJudge::new(policy, path);
    // The directory's own names first, walked header by header: junk signatures in front
    // of them must not spend the bounds before the names every unzipper lists.
    for name in central_names(data) {
        if !judge.judge(name, findings, budget) {
            return;
        }
    }
    let headers = memchr::memmem::find_iter(data, b"PK\x01\x02")
        .map(|at| (at, 28, 46))
        .chain(memchr::memmem::find_iter(data, b"PK\x03\x04").map(|at| (at, 26, 30)));
    for (at, length_at, name_at) in headers {
        let Some(len) = u16_at(data, at + length_at) else {
            continue;
        };
        let Some(name) = data.get(at + name_at..at + name_at + len) else {
            continue;
        };
        let alias = u16_at(data, at + length_at + 2)
            .and_then(|extra_len| {
                let start = at + name_at + len;
                data.get(start..start + extra_len)
            })
            .and_then(unicode_path_alias);
        for name in std::iter::once(name).chain(alias) {
            if !judge.judge(name, findings, budget) {
                return;
            }
        }
    }
}

/// Info-ZIP's Unicode Path extra field (0x7075: version 1, the CRC-32 of the header name,
/// then the name in UTF-8), which `unzip` and the zip reader extract under in place of
/// the header name: its name, if `extra` holds one.
fn unicode_path_alias(extra: &[u8]) -> Option<&[u8]> {
    let mut rest = extra;
    while let (Some(id), Some(size)) = (u16_at(rest, 0), u16_at(rest, 2)) {
        let field = rest.get(4..4 + size)?;
        if id == 0x7075 {
            return field.get(5..).filter(|_| field.first() == Some(&1));
        }
        rest = rest.get(4 + size..)?;
    }
    None
}

/// Where the zip end record sits: the last one whose comment reaches exactly to the end
/// of the data, within the reach of the longest comment; failing that, the last whose
/// comment ends before the end and whose directory is where it says (unzip, 7-Zip and
/// Python's `zipfile` read a zip with bytes after it: `%%EOF` behind a zip in a PDF).
fn end_record(data: &[u8]) -> Option<usize> {
    let tail = data.len().saturating_sub(22 + usize::from(u16::MAX));
    let records = || {
        memchr::memmem::rfind_iter(data.get(tail..).unwrap_or_default(), b"PK\x05\x06")
            .map(|at| at + tail)
    };
    records()
        .find(|&at| u16_at(data, at + 20).is_some_and(|c| at + 22 + c == data.len()))
        .or_else(|| {
            records().find(|&at| {
                u16_at(data, at + 20).is_some_and(|c| at + 22 + c < data.len())
                    && directory_starts(data, at)
            })
        })
}

/// Whether the end record at `end` is followed back to a directory: an empty one, or a
/// central-directory header where its size says the directory starts.
fn directory_starts(data: &[u8], end: usize) -> bool {
    let (Some(entries), Some(size)) = (u16_at(data, end + 10), u32_at(data, end + 12)) else {
        return false;
    };
    if entries == 0 && size == 0 {
        return true;
    }
    end.checked_sub(size as usize)
        .is_some_and(|start| data.get(start..start + 4) == Some(b"PK\x01\x02".as_slice()))
}

/// The names in the zip's central directory, header by header from where the (plain) end
/// record says it starts; none without one.
fn central_names(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let dir = Directory::of(data);
    let mut at = dir.as_ref().map_or(0, |d| d.start);
    let end = dir.as_ref().map_or(0, |d| d.end);
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = record_end(data, at)?;
        let name = data.get(at + 46..at + 46 + u16_at(data, at + 28)?)?;
        at = next;
        Some(name)
    })
}

/// Whether zip readers, which look for the end record at the end, would read `data` as a
/// zip whatever its first bytes.
pub(super) fn has_end_record(data: &[u8]) -> bool {
    end_record(data).is_some()
}

/// Central-directory headers of the zip in `data`, counted up to `limit`: walked from the
/// start the end record gives, header by header, so the signature inside a name, comment,
/// extra field or entry data is not counted. Without a plain end record (zip64, damaged)
/// every signature counts.
fn central_headers(data: &[u8], limit: usize) -> usize {
    let every = || {
        memchr::memmem::find_iter(data, b"PK\x01\x02")
            .take(limit)
            .count()
    };
    let Some(dir) = Directory::of(data) else {
        return every();
    };
    let (mut at, mut count) = (dir.start, 0);
    while at < dir.end && count < limit {
        let Some(next) = record_end(data, at) else {
            break;
        };
        count += 1;
        at = next;
    }
    if count >= limit || (at == dir.end && count == dir.entries) {
        count
    } else {
        // A directory that does not add up: count the way that cannot undercount.
        every()
    }
}
