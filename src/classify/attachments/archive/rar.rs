//! RAR archives (versions 4 and 5), read for their names: every file header's name is
//! judged, an encrypted entry or encrypted headers flagged, and an entry stored without
//! compression read like a zip's (sniffed, opened one level deeper when it is an archive).
//! Compressed entries are not unpacked: RAR's codecs are proprietary, and clamd reads
//! them. Malware rides in `invoice.rar` holding `invoice.exe` as often as in a zip.
//!
//! Layouts as RARLAB documents them (the RAR 5.0 "archive format" page and RAR 4's
//! `technote.txt`): RAR 5 headers are CRC, size, type and flags as variable-length
//! integers, then the type's fields; RAR 4 headers a fixed 7-byte head and fixed fields.

use super::entries::EntryWalker;
use super::{AttachmentPolicy, Budget, Counted, Findings, Place, Symbol, Unread};
use crate::classify::attachments::magic::{RAR4_SIGNATURE, RAR5_SIGNATURE};
use std::cell::Cell;
use std::collections::HashSet;
use std::io::Cursor;
use std::rc::Rc;

/// One file entry as its header describes it.
struct FileEntry<'d> {
    name: String,
    directory: bool,
    encrypted: bool,
    /// The entry's data, when it is stored uncompressed, whole in this volume, in clear.
    stored: Option<&'d [u8]>,
    /// Its data runs past the end of the bytes: the name is judged, the archive broken.
    truncated: bool,
}

/// What reading the next header gave.
enum Next<'d> {
    /// A file entry, and where the header after it starts.
    File(FileEntry<'d>, usize),
    /// Any other header (archive, service, comment), skipped; `sized_alike` is false when
    /// unrar and libarchive would skip it by different sizes (RAR 4).
    Skip { next: usize, sized_alike: bool },
    /// Headers are encrypted from here on: no name can be read.
    EncryptedHeaders,
    /// The end-of-archive header, or the end of the bytes between headers.
    End,
    /// A header that does not fit the bytes, or makes no sense.
    Broken,
}

/// Judges the RAR archive in `data` (it starts with a RAR signature). A RAR 4 archive
/// whose blocks unrar and libarchive size differently (comment, AV, signature, old
/// service and recovery blocks) is walked both ways: each tool would list other files.
pub(super) fn walk(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let mut walk = HeaderWalk::new(policy, place);
    if data.starts_with(RAR5_SIGNATURE) {
        let read = |at| rar5_header(data, at);
        walk.run(read, RAR5_SIGNATURE.len(), budget, findings);
    } else if data.starts_with(RAR4_SIGNATURE) {
        let start = RAR4_SIGNATURE.len();
        let as_unrar = |at| rar4_header(data, at, Rar4Sizes::Unrar);
        if walk.run(as_unrar, start, budget, findings) {
            let as_libarchive = |at| rar4_header(data, at, Rar4Sizes::Libarchive);
            walk.run(as_libarchive, start, budget, findings);
        }
    } else {
        findings.add(Symbol::ArchiveUnreadable, place.shown);
    }
}

/// The walks over one archive's headers: the entries they judge and the files judged.
struct HeaderWalk<'a> {
    walker: EntryWalker<'a>,
    place: Place<'a>,
    /// Compressed bytes read (stored entries), for the expansion ratio.
    consumed: Rc<Cell<u64>>,
    /// Offsets of the file headers judged: a second walk (RAR 4 sized the other way)
    /// judges only files the first did not meet, so the entry count and budget are spent
    /// once per file.
    judged: HashSet<usize>,
}

impl<'a> HeaderWalk<'a> {
    fn new(policy: &'a AttachmentPolicy, place: Place<'a>) -> Self {
        let consumed = Rc::new(Cell::new(0u64));
        HeaderWalk {
            walker: EntryWalker::new(policy, place, consumed.clone()),
            place,
            consumed,
            judged: HashSet::new(),
        }
    }

    /// Walks the headers `read` finds from `at` on, judging each file entry not judged
    /// yet; true when a block was met whose size RAR 4's readers disagree on.
    fn run<'d>(
        &mut self,
        read: impl Fn(usize) -> Next<'d>,
        mut at: usize,
        budget: &mut Budget,
        findings: &mut Findings,
    ) -> bool {
        let shown = self.place.shown;
        let mut ambiguous = false;
        loop {
            match read(at) {
                Next::File(entry, next) => {
                    let here = at;
                    at = next;
                    if entry.directory || !self.judged.insert(here) {
                        continue;
                    }
                    if !budget.take_entry() {
                        // Past the entry limit names are still judged (within the
                        // message's bound on names); contents are not read.
                        findings.add(Symbol::ArchiveTooManyEntries, shown);
                        if !budget.take_header_name() {
                            findings.add(Symbol::ArchiveUninspected, shown);
                            return ambiguous;
                        }
                        if let Some(judged) =
                            self.walker
                                .judge_name(entry.name, entry.encrypted, false, findings)
                        {
                            self.walker
                                .left_unread(&judged.name, Unread::Limits, findings);
                        }
                        continue;
                    }
                    let name = self
                        .walker
                        .judge_name(entry.name, entry.encrypted, false, findings);
                    if entry.truncated {
                        findings.add(Symbol::ArchiveUnreadable, shown);
                        return ambiguous;
                    }
                    let Some(name) = name else {
                        continue;
                    };
                    let Some(stored) = entry.stored.filter(|_| !budget.exhausted()) else {
                        // Compressed (RAR's codecs are not read here: clamd reads them) or
                        // past the budget.
                        self.walker
                            .left_unread(&name.name, Unread::Limits, findings);
                        continue;
                    };
                    let mut reader = Counted {
                        inner: Cursor::new(stored),
                        consumed: self.consumed.clone(),
                    };
                    self.walker
                        .judge_content(&mut reader, name, budget, findings);
                }
                Next::Skip { next, sized_alike } => {
                    at = next;
                    ambiguous |= !sized_alike;
                }
                Next::EncryptedHeaders => {
                    findings.add(Symbol::ArchiveEncrypted, shown);
                    return ambiguous;
                }
                Next::End => return ambiguous,
                Next::Broken => {
                    findings.add(Symbol::ArchiveUnreadable, shown);
                    return ambiguous;
                }
            }
        }
    }
}

/// RAR 5's variable-length integer at `*at` (seven bits a byte, low first; at most ten
/// bytes), moving `*at` past it.
fn vint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `at + len` as a position inside `data` (at most its length).
fn advance(data: &[u8], at: usize, len: u64) -> Option<usize> {
    let end = u64::try_from(at).ok()?.checked_add(len)?;
    usize::try_from(end).ok().filter(|&e| e <= data.len())
}

/// Where the data of a header ending at `header_end` ends, and whether it was cut: a
/// file's data running past the bytes ends with them (its name is still judged, then the
/// archive is broken); any other header's makes the archive broken (`None`).
fn data_end(data: &[u8], header_end: usize, size: u64, file: bool) -> Option<(usize, bool)> {
    match advance(data, header_end, size) {
        Some(end) => Some((end, false)),
        None => file.then_some((data.len(), true)),
    }
}

/// The file entry a header read (`None`: broken), cut when its data was, then the next
/// header at `next`.
fn file_next(entry: Option<FileEntry<'_>>, cut: bool, next: usize) -> Next<'_> {
    match entry {
        Some(entry) => Next::File(
            FileEntry {
                truncated: cut || entry.truncated,
                ..entry
            },
            next,
        ),
        None => Next::Broken,
    }
}

/// RAR 5 header types.
const RAR5_FILE: u64 = 2;
const RAR5_ENCRYPTION: u64 = 4;
const RAR5_END: u64 = 5;

/// Reads the RAR 5 header at `at`: CRC32, header size, then (inside the size) type,
/// flags, extra-area size (flag 0x01), data size (flag 0x02) and the type's fields; the
/// extra area ends the header, and the data follows it.
fn rar5_header(data: &[u8], at: usize) -> Next<'_> {
    if at >= data.len() {
        return Next::End;
    }
    let mut pos = at + 4;
    let Some(size) = vint(data, &mut pos) else {
        return Next::Broken;
    };
    let Some(header_end) = advance(data, pos, size) else {
        return Next::Broken;
    };
    let header = &data[..header_end];
    let fields = (|| {
        let kind = vint(header, &mut pos)?;
        let flags = vint(header, &mut pos)?;
        let extra = if flags & 0x01 != 0 {
            vint(header, &mut pos)?
        } else {
            0
        };
        let data_size = if flags & 0x02 != 0 {
            vint(header, &mut pos)?
        } else {
            0
        };
        Some((kind, flags, extra, data_size))
    })();
    let Some((kind, flags, extra, data_size)) = fields else {
        return Next::Broken;
    };
    let Some((next, cut)) = data_end(data, header_end, data_size, kind == RAR5_FILE) else {
        return Next::Broken;
    };
    match kind {
        RAR5_ENCRYPTION => Next::EncryptedHeaders,
        RAR5_END => Next::End,
        RAR5_FILE => {
            let extra_start = usize::try_from(extra)
                .ok()
                .and_then(|e| header_end.checked_sub(e))
                .filter(|&s| s >= pos);
            let Some(extra_start) = extra_start else {
                return Next::Broken;
            };
            let whole = flags & (0x08 | 0x10) == 0;
            let body = &data[header_end..next];
            let entry = rar5_file(
                &header[..extra_start],
                pos,
                &header[extra_start..],
                body,
                whole,
            );
            file_next(entry, cut, next)
        }
        _ => Next::Skip {
            next,
            sized_alike: true,
        },
    }
}

/// A RAR 5 file header's fields from `pos` of `header` (flags, sizes, times, compression,
/// host, name), its extra area (an encryption record, type 0x01, means the entry is
/// encrypted) and its data.
fn rar5_file<'d>(
    header: &[u8],
    mut pos: usize,
    extra: &[u8],
    body: &'d [u8],
    whole: bool,
) -> Option<FileEntry<'d>> {
    let file_flags = vint(header, &mut pos)?;
    let _unpacked = vint(header, &mut pos)?;
    let _attributes = vint(header, &mut pos)?;
    if file_flags & 0x02 != 0 {
        pos = advance(header, pos, 4)?;
    }
    if file_flags & 0x04 != 0 {
        pos = advance(header, pos, 4)?;
    }
    let compression = vint(header, &mut pos)?;
    let _host = vint(header, &mut pos)?;
    let name_len = vint(header, &mut pos)?;
    // A name running past its header is read to the header's end (as unrar reads it)
    // and judged, and the entry is broken.
    let name_end = advance(header, pos, name_len);
    let cut = name_end.is_none();
    let name_bytes = header.get(pos..name_end.unwrap_or(header.len()))?;
    let name = String::from_utf8_lossy(name_bytes).into_owned();
    let encrypted = rar5_extra_types(extra).any(|t| t == 0x01);
    let store = (compression >> 7) & 0x07 == 0;
    Some(FileEntry {
        name,
        directory: file_flags & 0x01 != 0,
        encrypted,
        stored: (store && whole && !encrypted && !cut).then_some(body),
        truncated: cut,
    })
}

/// The record types of a RAR 5 extra area (each record: size, then type and its data).
fn rar5_extra_types(extra: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let size = vint(extra, &mut pos)?;
        let start = pos;
        let kind = vint(extra, &mut pos)?;
        pos = advance(extra, start, size)?;
        Some(kind)
    })
}

/// RAR 4 block types.
const RAR4_ARCHIVE: u8 = 0x73;
const RAR4_FILE: u8 = 0x74;
const RAR4_COMMENT: u8 = 0x75;
const RAR4_AV: u8 = 0x76;
const RAR4_OLD_SERVICE: u8 = 0x77;
const RAR4_PROTECT: u8 = 0x78;
const RAR4_SIGN: u8 = 0x79;
const RAR4_SUBBLOCK: u8 = 0x7a;
const RAR4_END: u8 = 0x7b;

/// Which reader's rule sizes a RAR 4 block's data: unrar adds none after a comment, AV or
/// signature block and always adds it after an old service or recovery block; libarchive
/// adds it after any block flagged `RAR4_LONG_BLOCK`.
#[derive(Clone, Copy)]
enum Rar4Sizes {
    Unrar,
    Libarchive,
}
/// RAR 4 flags: a block with data after it; in the archive block, encrypted headers; in
/// a file block, split from or into another volume, encrypted, 64-bit sizes, a Unicode
/// name, and the directory value of the dictionary bits.
const RAR4_LONG_BLOCK: u16 = 0x8000;
const RAR4_HEADERS_ENCRYPTED: u16 = 0x0080;
const RAR4_SPLIT: u16 = 0x0001 | 0x0002;
const RAR4_ENCRYPTED: u16 = 0x0004;
const RAR4_LARGE: u16 = 0x0100;
const RAR4_UNICODE: u16 = 0x0200;
const RAR4_DIRECTORY: u16 = 0x00e0;
/// RAR 4's "store" method.
const RAR4_STORE: u8 = 0x30;

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the RAR 4 block at `at`: CRC (2 bytes), type (1), flags (2), header size (2);
/// a file or sub-block carries its data size at 7 (high half at 32 with `RAR4_LARGE`),
/// other blocks at 7 when `sizes`' reader counts one.
fn rar4_header(data: &[u8], at: usize, sizes: Rar4Sizes) -> Next<'_> {
    if at >= data.len() {
        return Next::End;
    }
    let (Some(&kind), Some(flags), Some(size)) =
        (data.get(at + 2), u16_at(data, at + 3), u16_at(data, at + 5))
    else {
        return Next::Broken;
    };
    let Some(header) = usize::from(size)
        .checked_sub(7)
        .and_then(|_| data.get(at..at + usize::from(size)))
    else {
        return Next::Broken;
    };
    let long_block = flags & RAR4_LONG_BLOCK != 0;
    let (unrar_sized, libarchive_sized) = match kind {
        RAR4_FILE | RAR4_SUBBLOCK => (true, true),
        RAR4_COMMENT | RAR4_AV | RAR4_SIGN => (false, long_block),
        RAR4_OLD_SERVICE | RAR4_PROTECT => (true, long_block),
        _ => (long_block, long_block),
    };
    let sized = match sizes {
        Rar4Sizes::Unrar => unrar_sized,
        Rar4Sizes::Libarchive => libarchive_sized,
    };
    let data_size = if sized {
        let low = u64::from(u32_at(header, 7).unwrap_or(0));
        let large = matches!(kind, RAR4_FILE | RAR4_SUBBLOCK) && flags & RAR4_LARGE != 0;
        let high = if large {
            u64::from(u32_at(header, 32).unwrap_or(0))
        } else {
            0
        };
        (high << 32) | low
    } else {
        0
    };
    let header_end = at + header.len();
    let Some((next, cut)) = data_end(data, header_end, data_size, kind == RAR4_FILE) else {
        return Next::Broken;
    };
    match kind {
        RAR4_ARCHIVE if flags & RAR4_HEADERS_ENCRYPTED != 0 => Next::EncryptedHeaders,
        RAR4_END => Next::End,
        RAR4_FILE => file_next(rar4_file(header, flags, &data[header_end..next]), cut, next),
        _ => Next::Skip {
            next,
            sized_alike: unrar_sized == libarchive_sized,
        },
    }
}

/// A RAR 4 file header: method at 25, name size at 26, the name at 32 (40 with
/// `RAR4_LARGE`); a Unicode name is the plain name, a NUL, and its encoded form.
fn rar4_file<'d>(header: &[u8], flags: u16, body: &'d [u8]) -> Option<FileEntry<'d>> {
    let method = *header.get(25)?;
    let name_len = usize::from(u16_at(header, 26)?);
    let name_at = if flags & RAR4_LARGE != 0 { 40 } else { 32 };
    // A name running past its header is read to the header's end, as unrar reads it.
    let cut = name_at + name_len > header.len();
    let raw = header.get(name_at..(name_at + name_len).min(header.len()))?;
    let name = match memchr::memchr(0, raw) {
        Some(nul) if flags & RAR4_UNICODE != 0 => decode_unicode_name(raw, nul),
        _ if flags & RAR4_UNICODE != 0 => String::from_utf8_lossy(raw).into_owned(),
        _ => raw.iter().map(|&b| char::from(b)).collect(),
    };
    let encrypted = flags & RAR4_ENCRYPTED != 0;
    let whole = flags & RAR4_SPLIT == 0;
    Some(FileEntry {
        name,
        directory: flags & RAR4_DIRECTORY == RAR4_DIRECTORY,
        encrypted,
        stored: (method == RAR4_STORE && whole && !encrypted && !cut).then_some(body),
        truncated: cut,
    })
}

/// RAR 4's compressed Unicode name, decoded as unrar decodes it: the name field is the
/// plain name, a NUL at `nul`, then the encoded form: a high byte, then per two flag bits
/// one of a low byte, a low byte under the high byte, a full UTF-16 unit, or a run copied
/// from the name field (the whole field, past the plain name too; with a correction added
/// to each byte, under the high byte). The result ends at its first NUL; an empty one
/// leaves the plain name.
fn decode_unicode_name(field: &[u8], nul: usize) -> String {
    /// Units unrar decodes at most.
    const MAX_UNITS: usize = 2048;
    let plain = || field.iter().take(nul).map(|&b| char::from(b)).collect();
    let mut units: Vec<u16> = Vec::new();
    let mut bytes = field.iter().skip(nul + 1).copied();
    let Some(high) = bytes.next() else {
        return plain();
    };
    let high = u16::from(high) << 8;
    let (mut flags, mut flag_bits) = (0u8, 0u32);
    while units.len() < MAX_UNITS {
        if flag_bits == 0 {
            let Some(f) = bytes.next() else { break };
            flags = f;
            flag_bits = 8;
        }
        let step = match flags >> 6 {
            0 => bytes.next().map(|b| units.push(u16::from(b))),
            1 => bytes.next().map(|b| units.push(u16::from(b) | high)),
            2 => bytes
                .next()
                .zip(bytes.next())
                .map(|(lo, hi)| units.push(u16::from_le_bytes([lo, hi]))),
            _ => bytes.next().and_then(|len| {
                let (count, correction) = if len & 0x80 != 0 {
                    (usize::from(len & 0x7f) + 2, Some(bytes.next()?))
                } else {
                    (usize::from(len) + 2, None)
                };
                for _ in 0..count {
                    let Some(&b) = field.get(units.len()) else {
                        break;
                    };
                    units.push(match correction {
                        Some(c) => u16::from(b.wrapping_add(c)) | high,
                        None => u16::from(b),
                    });
                }
                Some(())
            }),
        };
        if step.is_none() {
            break;
        }
        flags <<= 2;
        flag_bits -= 2;
    }
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    if end == 0 {
        return plain();
    }
    String::from_utf16_lossy(&units[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vint_is_seven_bits_a_byte_low_first() {
        let mut at = 0;
        assert_eq!(vint(&[0x85, 0x02, 0x7f], &mut at), Some(0x105));
        assert_eq!(at, 2);
        assert_eq!(vint(&[0x85, 0x02, 0x7f], &mut at), Some(0x7f));
        assert_eq!(vint(&[0x80; 11], &mut 0), None);
        assert_eq!(vint(&[0x80], &mut 0), None);
    }

    #[test]
    fn a_unicode_name_decodes_each_form() {
        let decode = |plain: &[u8], encoded: &[u8]| {
            let mut field = plain.to_vec();
            field.push(0);
            field.extend_from_slice(encoded);
            decode_unicode_name(&field, plain.len())
        };
        // High byte 0x04 (Cyrillic); flags 00 01 10 11: a low byte, a low byte under the
        // high byte, a full unit, then a run of 2 copied from the name field.
        let encoded = [0x04, 0b0001_1011, b'a', 0x30, 0x3c, 0x26, 0x00];
        assert_eq!(decode(b"xyzw.exe", &encoded), "aа☼w.");
        // A run with a correction: field bytes plus 0x10, under the high byte.
        let encoded = [0x04, 0b1100_0000, 0x80, 0x10];
        assert_eq!(decode(b"\x20\x21", &encoded), "аб");
        // Truncated: what was decoded is kept; nothing decoded leaves the plain name.
        assert_eq!(decode(b"ab", &[0x00, 0b0010_0000, 0x41, 0x42]), "A");
        assert_eq!(decode(b"invoice.exe", &[0x00, 0x00]), "invoice.exe");
        // A run reaching past the plain name copies the field's NUL and encoded bytes,
        // and the name ends at the first NUL: unrar extracts `invoice.exe` from this.
        // A run reaching past the plain name copies from the rest of the field: here the
        // `.` at field offset 11 plus the correction 0xd2 is a NUL, so the name decoded
        // as `invoice.exe` NUL `Õ.txt` ends after `.exe`, as unrar extracts it.
        let mut encoded = vec![0x00, 0b0000_0000];
        encoded.extend_from_slice(b"invo");
        encoded.push(0b0000_0000);
        encoded.extend_from_slice(b"ice.");
        encoded.extend_from_slice(&[0b0000_0011, b'e', b'x', b'e', 0x80, 0xd2]);
        encoded.extend_from_slice(&[0b0000_0000, b'.', b't', b'x', b't']);
        assert_eq!(decode(b"", &encoded), "invoice.exe");
        let mut long = vec![0x00];
        for _ in 0..700 {
            long.extend_from_slice(&[0b0000_0000, b'a', b'a', b'a', b'a']);
        }
        assert_eq!(decode(b"", &long).chars().count(), 2048);
    }
}
