//! The format-1 queue file: a magic line with the seal, the envelope line, then the
//! message bytes; read back whole, or its header alone.

use super::{io_err, seal, spill, Envelope, QueueId, SpoolError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(super) const MAGIC: &str = "MXGUARD-SPOOL 1";

/// Whether `path` is a format-1 file with a seal: only such a file may be recycled. One
/// without (written as it arrived, format 2, or by an earlier release), were a crash to
/// leave its old bytes under the name of the message written over it, would read as a
/// valid message and be delivered again.
pub(super) fn is_sealed(path: &Path) -> bool {
    use std::io::Read;
    // The seal is on the first line, within the first hundred bytes.
    let mut head = Vec::with_capacity(256);
    let read = fs::File::open(path).and_then(|f| f.take(256).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    let Some(rest) = head.strip_prefix(MAGIC.as_bytes()) else {
        return false;
    };
    let Some(end) = memchr::memchr(b'\n', rest) else {
        return false;
    };
    matches!(seal::Seal::parse(&rest[..end]), Some(Some(_)))
}

/// Reads `dir/ID` and splits it into envelope and message bytes.
pub(super) fn read_message_file(
    dir: &Path,
    id: &QueueId,
) -> Result<(Envelope, Vec<u8>), SpoolError> {
    use std::io::Read as _;
    let path = dir.join(id.as_str());
    let not_found = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.clone()),
        _ => io_err("read", &path)(e),
    };
    let mut file = fs::File::open(&path).map_err(not_found)?;
    let opened = file.metadata().map_err(not_found)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(not_found)?;
    let decoded = if bytes.starts_with(spill::MAGIC2) {
        spill::decode(&path, &bytes)
    } else {
        decode_header(&path, &bytes, bytes.len() as u64).map(|(envelope, offset, _)| {
            bytes.drain(..offset);
            (envelope, std::mem::take(&mut bytes))
        })
    };
    match decoded {
        Err(e) if gone_since_opened(&e, &path, &opened) => Err(SpoolError::NotFound(id.clone())),
        other => other,
    }
}

/// Whether `e`, a read of the file at `path` opened as `opened`, failed because the file
/// is no longer the one there. The gateway recycles a delivered message's file for a later
/// message (`recycle`): a reader that opened it before reads the later message's bytes,
/// which fail the seal, while the message it asked for was only delivered.
pub(super) fn gone_since_opened(e: &SpoolError, path: &Path, opened: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    matches!(e, SpoolError::Corrupt(..))
        && !fs::metadata(path)
            .is_ok_and(|now| now.dev() == opened.dev() && now.ino() == opened.ino())
}

/// The envelope line of a format-1 file, without its newline.
pub(super) fn envelope_json(envelope: &Envelope) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(envelope).map_err(|e| SpoolError::Corrupt(PathBuf::new(), e.to_string()))
}

/// The magic line with `seal`, then the envelope line `json`.
pub(super) fn encode_header(json: &[u8], seal: Option<&seal::Seal>) -> Vec<u8> {
    let seal = seal.map(seal::Seal::encode).unwrap_or_default();
    let mut header = Vec::with_capacity(json.len() + MAGIC.len() + seal.len() + 2);
    header.extend_from_slice(MAGIC.as_bytes());
    header.extend_from_slice(seal.as_bytes());
    header.push(b'\n');
    header.extend_from_slice(json);
    header.push(b'\n');
    header
}

/// A format-1 header split: what follows the magic on the first line (the seal), the
/// envelope line, and where the message bytes start. `None` until `bytes` holds both lines.
pub(super) fn header_parts(bytes: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let rest = bytes.strip_prefix(MAGIC.as_bytes())?;
    let first = memchr::memchr(b'\n', rest)?;
    let envelope = &rest[first + 1..];
    let nl = memchr::memchr(b'\n', envelope)?;
    Some((
        &rest[..first],
        &envelope[..nl],
        MAGIC.len() + first + 1 + nl + 1,
    ))
}

/// Where the envelope line of a format-1 file ends (just past its newline), once `bytes`
/// holds it.
pub(super) fn header_end(bytes: &[u8]) -> Option<usize> {
    header_parts(bytes).map(|(_, _, end)| end)
}

/// The envelope of a format-1 file of `file_len` bytes whose start is `bytes`, where its
/// message bytes start, and its seal when the checksum is still to be checked: the seal,
/// if any, is checked, its checksum only when `bytes` is the whole file.
pub(super) fn decode_header(
    path: &Path,
    bytes: &[u8],
    file_len: u64,
) -> Result<(Envelope, usize, Option<seal::Seal>), SpoolError> {
    let corrupt = |m: &str| SpoolError::Corrupt(path.to_owned(), m.to_owned());
    if !bytes.starts_with(MAGIC.as_bytes()) {
        return Err(corrupt("bad magic"));
    }
    let (seal, json, offset) = header_parts(bytes).ok_or_else(|| corrupt("no envelope line"))?;
    let seal = seal::Seal::parse(seal).ok_or_else(|| corrupt("bad magic line"))?;
    if let Some(seal) = &seal {
        seal.check_envelope(path, json)?;
    }
    let envelope: Envelope = serde_json::from_slice(json).map_err(|e| corrupt(&e.to_string()))?;
    let mut unchecked = None;
    if let Some(seal) = seal {
        let whole = (bytes.len() as u64 >= file_len).then(|| &bytes[offset..]);
        seal.check(path, file_len.saturating_sub(offset as u64), whole)?;
        if whole.is_none() {
            unchecked = Some(seal);
        }
    }
    Ok((envelope, offset, unchecked))
}
