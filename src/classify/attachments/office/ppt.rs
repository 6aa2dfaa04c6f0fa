//! Objects inside a PowerPoint 97–2003 presentation: PowerPoint keeps its VBA project, and
//! embedded OLE objects, as compressed storages (`ExOleObjStg` records, zlib) inside the
//! `PowerPoint Document` stream rather than as storages of the compound file.

use std::io::Read;

/// An `ExOleObjStg` record's header: version 0 and instance 1 (compressed), type 0x1011.
const COMPRESSED_STORAGE: [u8; 4] = [0x10, 0x00, 0x11, 0x10];
/// Storages inflated per presentation at most.
const MAX_STORAGES: usize = 256;
/// Bytes inflated per presentation at most.
pub(super) const MAX_INFLATED: u64 = 64 * 1024 * 1024;

/// The compound files inside a presentation stream.
#[derive(Debug, Default)]
pub(super) struct Storages {
    /// Those inflated, each a compound file.
    pub found: Vec<Vec<u8>>,
    /// Some were left (past [`MAX_STORAGES`]) or not inflated whole (past the message's
    /// allowance): what they hold went unjudged.
    pub cut: bool,
}

/// The storages (each a compound file) inside a presentation stream, inflated within
/// `left` bytes (the message's allowance, [`MAX_INFLATED`] at first; lowered by what was
/// inflated).
pub(super) fn storages(stream: &[u8], left: &mut u64) -> Storages {
    let mut out = Storages::default();
    let mut tried = 0;
    for at in memchr::memmem::find_iter(stream, &COMPRESSED_STORAGE) {
        // Only a zlib stream counts against the bound: 32 look-alike byte runs in front
        // cannot hide the real storage (review).
        if stream.get(at + 12) != Some(&0x78) {
            continue;
        }
        if tried == MAX_STORAGES || *left == 0 {
            out.cut = true;
            break;
        }
        tried += 1;
        let Some(len) = u32_at(stream, at + 4) else {
            continue;
        };
        let Some(declared) = u32_at(stream, at + 8) else {
            continue;
        };
        let end = (at + 8).saturating_add(len as usize).min(stream.len());
        let Some(deflated) = stream.get(at + 12..end) else {
            continue;
        };
        let limit = u64::from(declared).min(*left);
        let mut inflated = Vec::new();
        // A stream that breaks off midway gives what was inflated before the break.
        let _ = flate2::read::ZlibDecoder::new(deflated)
            .take(limit)
            .read_to_end(&mut inflated);
        *left -= inflated.len() as u64;
        out.cut |= limit < u64::from(declared) && inflated.len() as u64 == limit;
        if super::starts_as_compound_file(&inflated) {
            out.found.push(inflated);
        }
    }
    out
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A presentation stream holding `storage` as a compressed `ExOleObjStg` record among
    /// other records.
    pub(crate) fn presentation_with(storage: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(storage).unwrap();
        let deflated = z.finish().unwrap();
        let mut stream = vec![0x0F, 0x00, 0xE8, 0x03, 0, 0, 0, 0];
        stream.extend_from_slice(&COMPRESSED_STORAGE);
        stream.extend_from_slice(&(deflated.len() as u32 + 4).to_le_bytes());
        stream.extend_from_slice(&(storage.len() as u32).to_le_bytes());
        stream.extend_from_slice(&deflated);
        stream
    }

    #[test]
    fn compressed_storages_are_inflated_within_bounds() {
        let storage =
            crate::classify::attachments::office::tests::compound(&[("/x", b"y".as_slice())]);
        let found = storages(&presentation_with(&storage), &mut MAX_INFLATED.clone());
        assert_eq!(found.found, vec![storage.clone()]);
        assert!(!found.cut);
        // Past the message's allowance: nothing more, and said so.
        let spent = storages(&presentation_with(&storage), &mut 0);
        assert!(spent.found.is_empty() && spent.cut);
        let short = storages(&presentation_with(&storage), &mut 100);
        assert!(short.found.len() <= 1 && short.cut);
        // Not a compound file, or not zlib: nothing.
        let plain = storages(
            &presentation_with(b"plain bytes"),
            &mut MAX_INFLATED.clone(),
        );
        assert!(plain.found.is_empty() && !plain.cut);
        let mut broken = presentation_with(&[0u8; 4096]);
        broken.truncate(30);
        assert!(storages(&broken, &mut MAX_INFLATED.clone())
            .found
            .is_empty());
        // Past the storages read per presentation.
        let mut many = Vec::new();
        for _ in 0..=MAX_STORAGES {
            many.extend(presentation_with(&storage));
        }
        let capped = storages(&many, &mut MAX_INFLATED.clone());
        assert_eq!(capped.found.len(), MAX_STORAGES);
        assert!(capped.cut);
    }
}
