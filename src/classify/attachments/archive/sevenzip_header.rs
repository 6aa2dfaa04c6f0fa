//! The coders of a 7-Zip archive's encoded (compressed) header, read before the 7-Zip
//! reader runs. The reader refuses a header whose decoder declares a dictionary over its
//! memory limit, and that limit is also the bound on the decoded header (what the reader
//! allocates entries by). Writers differ: 7-Zip declares 1 MiB for headers, libarchive's
//! `bsdtar` 8 MiB, py7zr 16 MiB. A dictionary is only a window over what was decoded, so
//! the copy given to the reader declares at most [`HEADER_DICTIONARY`]: a header of up to
//! that size (some 10,000 entries) decodes alike, a bigger one whose matches reach further
//! back fails its CRC (unreadable), and the bound on the decoded header stays.
//!
//! Reading this layout wrong costs nothing but the names: a byte changed elsewhere leaves
//! a header the reader refuses or decodes wrongly (unreadable), and the reader's own bound
//! on the decoded header holds whatever is changed here.

use std::ops::Range;

/// The dictionary the header's decoder is given (the reader's header limit is twice it).
pub(super) const HEADER_DICTIONARY: u32 = 1024 * 1024;
/// LZMA2's dictionary property for [`HEADER_DICTIONARY`] (2 << (16 / 2 + 11)).
const LZMA2_HEADER_PROPERTY: u8 = 16;
const LZMA: &[u8] = &[0x03, 0x01, 0x01];
const LZMA2: &[u8] = &[0x21];
/// Folders, coders and streams an encoded header has (one, one or two); more is unusual.
const MAX_ITEMS: u64 = 16;

/// A copy of the archive in `data` whose encoded header's LZMA or LZMA2 coders declare a
/// dictionary of at most [`HEADER_DICTIONARY`], its CRCs made right; `None` when there is
/// nothing to change or the layout is not the usual one.
pub(super) fn with_small_header_dictionary(data: &[u8]) -> Option<Vec<u8>> {
    const ENCODED_HEADER: u8 = 0x17;
    let next = next_header(data)?;
    let header = data.get(next.clone())?;
    if header.first() != Some(&ENCODED_HEADER) {
        return None;
    }
    let mut reader = Reader {
        bytes: header,
        at: 1,
    };
    let coders = reader.header_coders()?;
    let mut copy = data.to_vec();
    let mut changed = false;
    for coder in coders {
        let props = copy.get_mut(next.start + coder.props.0..next.start + coder.props.1)?;
        if coder.id == LZMA && props.len() == 5 {
            let dict = u32::from_le_bytes(props[1..5].try_into().ok()?);
            if dict > HEADER_DICTIONARY {
                props[1..5].copy_from_slice(&HEADER_DICTIONARY.to_le_bytes());
                changed = true;
            }
        } else if coder.id == LZMA2 && props.len() == 1 && props[0] > LZMA2_HEADER_PROPERTY {
            props[0] = LZMA2_HEADER_PROPERTY;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    fix_crcs(&mut copy);
    Some(copy)
}

/// Where the signature header says the next header is: 32 bytes in, plus its offset (at
/// 12), for its size (at 20).
fn next_header(data: &[u8]) -> Option<Range<usize>> {
    const SIGNATURE_HEADER: usize = 32;
    let field = |at: usize| -> Option<usize> {
        let value = u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?);
        usize::try_from(value).ok()
    };
    let start = SIGNATURE_HEADER.checked_add(field(12)?)?;
    Some(start..start.checked_add(field(20)?)?)
}

/// Makes the CRCs right after bytes of the archive changed: the next header's (at 28,
/// when the header is within the bytes) and the signature header's (at 8, over 12..32).
pub(in crate::classify::attachments) fn fix_crcs(archive: &mut [u8]) {
    if let Some(crc) = next_header(archive)
        .and_then(|next| archive.get(next))
        .map(crc32fast::hash)
    {
        if let Some(field) = archive.get_mut(28..32) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
    }
    if let Some(crc) = archive.get(12..32).map(crc32fast::hash) {
        if let Some(field) = archive.get_mut(8..12) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// A 7-Zip archive of nothing but a signature header pointing at `header` right after
/// it, its CRCs right.
#[cfg(test)]
pub(in crate::classify::attachments) fn archive_with(header: &[u8]) -> Vec<u8> {
    let mut out = crate::classify::attachments::magic::SEVEN_ZIP_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x00, 0x04]);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(header);
    fix_crcs(&mut out);
    out
}

/// One coder of the header's folders: its method id and where its properties are in the
/// header (start, end).
struct Coder<'a> {
    id: &'a [u8],
    props: (usize, usize),
}

/// A 7-Zip header being read: bytes and 7-Zip's variable-length numbers (the count of high
/// one bits of the first byte is the count of bytes after it).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: u64) -> Option<(usize, usize)> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        if end > self.bytes.len() {
            return None;
        }
        let span = (self.at, end);
        self.at = end;
        Some(span)
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

    fn count(&mut self) -> Option<u64> {
        self.number().filter(|&n| n <= MAX_ITEMS)
    }

    /// The coders of the encoded header's folders (the streams info after the
    /// kEncodedHeader byte: pack info, then unpack info with its folders).
    fn header_coders(&mut self) -> Option<Vec<Coder<'a>>> {
        const END: u8 = 0x00;
        const PACK_INFO: u8 = 0x06;
        const UNPACK_INFO: u8 = 0x07;
        const SIZE: u8 = 0x09;
        const CRC: u8 = 0x0A;
        const FOLDER: u8 = 0x0B;
        let mut id = self.byte()?;
        if id == PACK_INFO {
            let _pack_pos = self.number()?;
            let streams = self.count()?;
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
        let folders = self.count()?;
        if self.byte()? != 0 {
            return None;
        }
        let mut coders = Vec::new();
        for _ in 0..folders {
            self.folder(&mut coders)?;
        }
        Some(coders)
    }

    /// Reads a folder's coders into `coders`, and its bindings.
    fn folder(&mut self, coders: &mut Vec<Coder<'a>>) -> Option<()> {
        let count = self.count().filter(|&n| n > 0)?;
        let (mut inputs, mut outputs) = (0u64, 0u64);
        for _ in 0..count {
            let flags = self.byte()?;
            if flags & 0xC0 != 0 {
                return None;
            }
            let (id_start, id_end) = self.take(u64::from(flags & 0x0F))?;
            let (i, o) = if flags & 0x10 != 0 {
                (self.count()?, self.count()?)
            } else {
                (1, 1)
            };
            inputs += i;
            outputs += o;
            let props = if flags & 0x20 != 0 {
                let len = self.number()?;
                self.take(len)?
            } else {
                (self.at, self.at)
            };
            coders.push(Coder {
                id: self.bytes.get(id_start..id_end)?,
                props,
            });
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
        Some(())
    }

    /// Skips a digests record of `count` streams: an all-defined byte, else a bit per
    /// stream (high bit first; bits past `count` are padding), then four bytes per
    /// defined stream.
    fn skip_digests(&mut self, count: u64) -> Option<()> {
        let defined = if self.byte()? != 0 {
            count
        } else {
            let (start, end) = self.take(count.div_ceil(8))?;
            let bits = self.bytes.get(start..end)?;
            (0..count)
                .filter(|&i| {
                    let i = usize::try_from(i).unwrap_or(usize::MAX);
                    bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
                })
                .count() as u64
        };
        self.take(defined.checked_mul(4)?).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_dictionary_over_a_mebibyte_is_declared_as_one() {
        // Pack info (one stream, its size, CRCs given by a bit vector with padding bits
        // set past the one stream), then one folder of one LZMA coder declaring 8 MiB.
        let header = [
            0x17, 0x06, 0x00, 0x01, 0x09, 0x05, 0x0a, 0x00, 0xff, 1, 2, 3, 4, 0x00, 0x07, 0x0b,
            0x01, 0x00, 0x01, 0x23, 0x03, 0x01, 0x01, 0x05, 0x5d, 0x00, 0x00, 0x80, 0x00, 0x0c,
            0x76, 0x00,
        ];
        let z = archive_with(&header);
        let copy = with_small_header_dictionary(&z).expect("changed");
        let props = 32 + 24;
        assert_eq!(&copy[props..props + 5], &[0x5d, 0x00, 0x00, 0x10, 0x00]);
        assert_eq!(
            u32::from_le_bytes(copy[28..32].try_into().unwrap()),
            crc32fast::hash(&copy[32..])
        );
        assert_eq!(
            u32::from_le_bytes(copy[8..12].try_into().unwrap()),
            crc32fast::hash(&copy[12..32])
        );
        // LZMA2 declaring 16 MiB (property 24), as py7zr writes it.
        let lzma2 = [
            0x17, 0x06, 0x00, 0x01, 0x09, 0x05, 0x00, 0x07, 0x0b, 0x01, 0x00, 0x01, 0x21, 0x21,
            0x01, 24, 0x0c, 0x76, 0x00,
        ];
        let copy = with_small_header_dictionary(&archive_with(&lzma2)).expect("changed");
        assert_eq!(copy[32 + 15], 16);
        // Already small, plain headers, and unusual layouts are left alone.
        let mut small = header;
        small[27] = 0x10;
        assert!(with_small_header_dictionary(&archive_with(&small)).is_none());
        assert!(with_small_header_dictionary(&archive_with(&[0x01, 0x00])).is_none());
        assert!(with_small_header_dictionary(&archive_with(&[0x17, 0x06])).is_none());
        assert!(with_small_header_dictionary(&z[..40]).is_none());
    }
}
