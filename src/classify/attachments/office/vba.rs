//! VBA module sources: found in a module stream, decompressed (MS-OVBA 2.4.1) and read for
//! macros that run by themselves and reach outside Office.
//!
//! A module stream holds the compiled code first and the compressed source after it, at an
//! offset the project's `dir` stream records. The source always begins with
//! `Attribute VB_Name`, whose first eight letters have no repeat to copy and are written
//! as literals after a zero flag byte (or raw, in a chunk left uncompressed): that is
//! where the source is looked for when the project's `dir` stream does not say.

use super::{vba_source, Facts};

/// Decompressed source read per compound file at most.
pub(super) const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes a decompressed chunk holds (all but the last of a container hold this many).
const CHUNK: usize = 4096;

/// Candidate sources read per module stream at most when `dir` gives no offset.
const MAX_CANDIDATES: usize = 8;

/// Reads the source of a module stream at `offset` (where the project's `dir` puts it),
/// within `budget` bytes of source (lowered by what was read).
pub(super) fn read_module_at(stream: &[u8], offset: usize, budget: &mut usize) -> Facts {
    let mut facts = Facts {
        macros: true,
        ..Facts::default()
    };
    let source = decompress(stream.get(offset..).unwrap_or_default(), *budget);
    *budget = budget.saturating_sub(source.len());
    // Cut at the message's allowance: the rest of the module is unread (review: a module
    // cut to its first 30 bytes hid its `Document_Open`).
    facts.uninspected = *budget == 0;
    vba_source::read(&source, &mut facts);
    facts
}

/// Reads every source found in a module stream (see the module doc), for a project whose
/// `dir` does not read: a decoy source in front cannot hide the real one.
pub(super) fn read_module_anywhere(stream: &[u8], budget: &mut usize) -> Facts {
    let mut facts = Facts {
        macros: true,
        ..Facts::default()
    };
    for start in source_starts(stream).take(MAX_CANDIDATES) {
        if *budget == 0 {
            break;
        }
        facts.merge(read_module_at(stream, start, budget));
    }
    facts
}

/// Where compressed source containers of a module stream may begin: a signature byte in
/// front of a chunk that starts with `Attribut` (see the module doc).
fn source_starts(stream: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memmem::find_iter(stream, b"Attribut").filter_map(|at| {
        // Compressed: signature, 2-byte header, a zero flag byte, then the letters.
        let compressed = at.checked_sub(4).filter(|&s| {
            stream.get(s) == Some(&1)
                && stream.get(s + 3) == Some(&0)
                && header(stream, s + 1).is_some_and(|h| h & 0x8000 != 0)
        });
        // Raw: signature, a 2-byte header saying "4,096 bytes, not compressed".
        let raw = at
            .checked_sub(3)
            .filter(|&s| stream.get(s) == Some(&1) && header(stream, s + 1) == Some(0x3FFF));
        compressed.or(raw)
    })
}

/// The chunk header at `at`, when its signature bits are right (`0b011`).
fn header(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at + 2)?;
    let h = u16::from_le_bytes([bytes[0], bytes[1]]);
    ((h >> 12) & 0b111 == 0b011).then_some(h)
}

/// Decompresses a compressed container (MS-OVBA 2.4.1.3.1) into at most `limit` bytes;
/// a container broken midway gives what was decompressed before the break.
pub(super) fn decompress(container: &[u8], limit: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    if container.first() != Some(&1) {
        return out;
    }
    let mut at = 1;
    while let Some(h) = header(container, at) {
        let chunk_start = out.len();
        let size = usize::from(h & 0x0FFF) + 3;
        let end = (at + size).min(container.len());
        let data = container.get(at + 2..end).unwrap_or_default();
        at += size;
        if h & 0x8000 == 0 {
            // Stored: 4,096 bytes as they are.
            let take = data.len().min(CHUNK).min(limit.saturating_sub(out.len()));
            out.extend_from_slice(data.get(..take).unwrap_or_default());
        } else if !decompress_chunk(data, chunk_start, &mut out, limit) {
            break;
        }
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    out
}

/// Decompresses one chunk's tokens onto `out`; `false` when a copy points before the
/// chunk's start (a broken or hostile container).
fn decompress_chunk(data: &[u8], chunk_start: usize, out: &mut Vec<u8>, limit: usize) -> bool {
    let mut i = 0;
    while i < data.len() {
        let flags = data[i];
        i += 1;
        for bit in 0..8 {
            if i >= data.len() || out.len() >= limit || out.len() - chunk_start >= CHUNK {
                return true;
            }
            if flags & (1 << bit) == 0 {
                out.push(data[i]);
                i += 1;
                continue;
            }
            let Some(token) = data.get(i..i + 2) else {
                return true;
            };
            i += 2;
            let token = u16::from_le_bytes([token[0], token[1]]);
            let done = out.len() - chunk_start;
            // The offset takes as many bits as needed to reach back over what this chunk
            // decompressed so far (at least 4, at most 12); the length the rest.
            let mut bit_count = 4;
            while bit_count < 12 && (1usize << bit_count) < done {
                bit_count += 1;
            }
            let length_mask = 0xFFFFu16 >> bit_count;
            let length = usize::from(token & length_mask) + 3;
            let offset = usize::from(token >> (16 - bit_count)) + 1;
            if offset > done {
                return false;
            }
            for _ in 0..length {
                if out.len() >= limit || out.len() - chunk_start >= CHUNK {
                    return true;
                }
                let byte = out[out.len() - offset];
                out.push(byte);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MS-OVBA 3.2.1, "No Compression" (literals only).
    #[test]
    fn the_specification_s_literal_example_decompresses() {
        let container = [
            0x01, 0x19, 0xB0, 0x00, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x00, 0x69,
            0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x00, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76,
            0x2E,
        ];
        assert_eq!(decompress(&container, 1 << 20), b"abcdefghijklmnopqrstuv.");
    }

    /// MS-OVBA 3.2.2, "Normal Compression" (copy tokens of several lengths and offsets).
    #[test]
    fn the_specification_s_copy_example_decompresses() {
        let container = [
            0x01, 0x2F, 0xB0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66,
            0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6A, 0x01, 0x38, 0x08, 0x61, 0x6B, 0x6C, 0x00,
            0x30, 0x6D, 0x6E, 0x6F, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74,
            0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7A, 0x00, 0x3C,
        ];
        assert_eq!(
            decompress(&container, 1 << 20),
            b"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
    }

    #[test]
    fn hostile_containers_stay_bounded() {
        // A copy reaching before the chunk's start ends the container.
        assert_eq!(decompress(&[0x01, 0x03, 0xB0, 0x01, 0x00, 0x00], 100), b"");
        // A long run copied again and again is cut at the limit.
        let mut container = vec![0x01, 0xFF, 0xBF, 0x00, b'a', b'b', b'c'];
        container.extend(std::iter::repeat_n([0xFF, 0xF0, 0xFF], 300).flatten());
        assert!(decompress(&container, 1000).len() <= 1000);
        assert!(decompress(b"", 10).is_empty());
        assert!(decompress(&[0x01, 0xFF], 10).is_empty());
        // One chunk holds 4,096 bytes at most, whatever its tokens say.
        let mut chunk = vec![0x00, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h'];
        for _ in 0..500 {
            chunk.extend_from_slice(&[0xFF]);
            chunk.extend(std::iter::repeat_n([0xFF, 0x0F], 8).flatten());
        }
        let header = 0xB000u16 | (chunk.len() as u16 + 2 - 3);
        let mut container = vec![1];
        container.extend_from_slice(&header.to_le_bytes());
        container.extend_from_slice(&chunk);
        assert_eq!(decompress(&container, 1 << 20).len(), 4096);
    }
}
