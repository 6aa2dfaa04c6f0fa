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
use super::{AttachmentPolicy, Budget, Counted, Findings, Place, Symbol};
use std::cell::Cell;
use std::io::{Cursor, Read};
use std::rc::Rc;

/// A RAR 4 archive's first bytes (its marker block).
const RAR4_SIGNATURE: &[u8] = b"Rar!\x1a\x07\x00";
/// A RAR 5 archive's first bytes.
const RAR5_SIGNATURE: &[u8] = b"Rar!\x1a\x07\x01\x00";

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
    /// Any other header (archive, service, comment), skipped.
    Skip(usize),
    /// Headers are encrypted from here on: no name can be read.
    EncryptedHeaders,
    /// The end-of-archive header, or the end of the bytes between headers.
    End,
    /// A header that does not fit the bytes, or makes no sense.
    Broken,
}

/// Reads the header at a position of an archive's bytes (one reader per RAR version).
type HeaderReader = fn(&[u8], usize) -> Next<'_>;

/// Judges the RAR archive in `data` (it starts with a RAR signature).
pub(super) fn walk(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let (read, mut at): (HeaderReader, usize) = if data.starts_with(RAR5_SIGNATURE) {
        (rar5_header, RAR5_SIGNATURE.len())
    } else if data.starts_with(RAR4_SIGNATURE) {
        (rar4_header, RAR4_SIGNATURE.len())
    } else {
        findings.add(Symbol::ArchiveUnreadable, place.shown);
        return;
    };
    let consumed = Rc::new(Cell::new(0u64));
    let mut walker = EntryWalker::new(policy, place, consumed.clone());
    loop {
        match read(data, at) {
            Next::File(entry, next) => {
                at = next;
                if entry.directory {
                    continue;
                }
                if !budget.take_entry() {
                    findings.add(Symbol::ArchiveTooManyEntries, place.shown);
                    return;
                }
                let judged = walker.judge_name(entry.name, entry.encrypted, false, findings);
                if entry.truncated {
                    findings.add(Symbol::ArchiveUnreadable, place.shown);
                    return;
                }
                let (Some(judged), Some(stored)) = (judged, entry.stored) else {
                    continue;
                };
                if budget.exhausted() {
                    continue;
                }
                let mut reader = Counted {
                    inner: Cursor::new(stored),
                    consumed: consumed.clone(),
                };
                walker.judge_content(&mut reader.by_ref(), judged, budget, findings);
            }
            Next::Skip(next) => at = next,
            Next::EncryptedHeaders => {
                findings.add(Symbol::ArchiveEncrypted, place.shown);
                return;
            }
            Next::End => return,
            Next::Broken => {
                findings.add(Symbol::ArchiveUnreadable, place.shown);
                return;
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
    let next = advance(data, header_end, data_size);
    if next.is_none() && kind != RAR5_FILE {
        return Next::Broken;
    }
    let truncated = next.is_none();
    let next = next.unwrap_or(data.len());
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
            match rar5_file(
                &header[..extra_start],
                pos,
                &header[extra_start..],
                body,
                whole,
            ) {
                Some(entry) => Next::File(FileEntry { truncated, ..entry }, next),
                None => Next::Broken,
            }
        }
        _ => Next::Skip(next),
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
    let name_end = advance(header, pos, name_len)?;
    let name = String::from_utf8_lossy(&header[pos..name_end]).into_owned();
    let encrypted = rar5_extra_types(extra).any(|t| t == 0x01);
    let store = (compression >> 7) & 0x07 == 0;
    Some(FileEntry {
        name,
        directory: file_flags & 0x01 != 0,
        encrypted,
        stored: (store && whole && !encrypted).then_some(body),
        truncated: false,
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
const RAR4_SUBBLOCK: u8 = 0x7a;
const RAR4_END: u8 = 0x7b;
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
/// any other long block at 7.
fn rar4_header(data: &[u8], at: usize) -> Next<'_> {
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
    let has_pack_size = matches!(kind, RAR4_FILE | RAR4_SUBBLOCK);
    let data_size = if has_pack_size || flags & RAR4_LONG_BLOCK != 0 {
        let low = u64::from(u32_at(header, 7).unwrap_or(0));
        let high = if has_pack_size && flags & RAR4_LARGE != 0 {
            u64::from(u32_at(header, 32).unwrap_or(0))
        } else {
            0
        };
        (high << 32) | low
    } else {
        0
    };
    let header_end = at + header.len();
    let next = advance(data, header_end, data_size);
    if next.is_none() && kind != RAR4_FILE {
        return Next::Broken;
    }
    let truncated = next.is_none();
    let next = next.unwrap_or(data.len());
    match kind {
        RAR4_ARCHIVE if flags & RAR4_HEADERS_ENCRYPTED != 0 => Next::EncryptedHeaders,
        RAR4_END => Next::End,
        RAR4_FILE => match rar4_file(header, flags, &data[header_end..next]) {
            Some(entry) => Next::File(FileEntry { truncated, ..entry }, next),
            None => Next::Broken,
        },
        _ => Next::Skip(next),
    }
}

/// A RAR 4 file header: method at 25, name size at 26, the name at 32 (40 with
/// `RAR4_LARGE`); a Unicode name is the plain name, a NUL, and its encoded form.
fn rar4_file<'d>(header: &[u8], flags: u16, body: &'d [u8]) -> Option<FileEntry<'d>> {
    let method = *header.get(25)?;
    let name_len = usize::from(u16_at(header, 26)?);
    let name_at = if flags & RAR4_LARGE != 0 { 40 } else { 32 };
    let raw = header.get(name_at..name_at + name_len)?;
    let name = match memchr::memchr(0, raw) {
        Some(nul) if flags & RAR4_UNICODE != 0 => {
            decode_unicode_name(&raw[..nul], raw.get(nul + 1..).unwrap_or_default())
        }
        _ if flags & RAR4_UNICODE != 0 => String::from_utf8_lossy(raw).into_owned(),
        _ => raw.iter().map(|&b| char::from(b)).collect(),
    };
    let encrypted = flags & RAR4_ENCRYPTED != 0;
    let whole = flags & RAR4_SPLIT == 0;
    Some(FileEntry {
        name,
        directory: flags & RAR4_DIRECTORY == RAR4_DIRECTORY,
        encrypted,
        stored: (method == RAR4_STORE && whole && !encrypted).then_some(body),
        truncated: false,
    })
}

/// RAR 4's compressed Unicode name: a high byte, then per two flag bits one of a low
/// byte, a low byte under the high byte, a full UTF-16 unit, or a run copied from the
/// plain name (with a correction added to each byte, under the high byte).
fn decode_unicode_name(plain: &[u8], encoded: &[u8]) -> String {
    const MAX_UNITS: usize = 1024;
    let mut units: Vec<u16> = Vec::new();
    let mut bytes = encoded.iter().copied();
    let Some(high) = bytes.next() else {
        return String::from_utf8_lossy(plain).into_owned();
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
                    let Some(&b) = plain.get(units.len()) else {
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
    String::from_utf16_lossy(&units)
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
        // High byte 0x04 (Cyrillic); flags 00 01 10 11: a low byte, a low byte under the
        // high byte, a full unit, then a run of 2 copied from the plain name.
        let encoded = [0x04, 0b0001_1011, b'a', 0x30, 0x3c, 0x26, 0x00];
        assert_eq!(decode_unicode_name(b"xyzw.exe", &encoded), "aа☼w.");
        // A run with a correction: plain bytes plus 0x10, under the high byte.
        let encoded = [0x04, 0b1100_0000, 0x80, 0x10];
        assert_eq!(decode_unicode_name(b"\x20\x21", &encoded), "аб");
        // Truncated: what was decoded is kept.
        assert_eq!(decode_unicode_name(b"ab", &[0x00, 0b1000_0000, 0x41]), "");
    }
}
