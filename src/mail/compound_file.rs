//! Compound files (CFB, the container of Outlook items and of Word, Excel and PowerPoint
//! 97–2003 files), as the readers of both open them: known by signature and directory,
//! their streams read within a bound the sender cannot raise.

use std::io::{Cursor, Read};
use std::path::Path;

/// A compound file opened over bytes held in memory.
pub type CompoundFile<'d> = cfb::CompoundFile<Cursor<&'d [u8]>>;

/// A compound file's first eight bytes.
const SIGNATURE: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Whether `data` starts with the compound-file signature (cheap; whether it reads as one
/// is [`is_compound_file`]).
pub fn starts_as_compound_file(data: &[u8]) -> bool {
    data.starts_with(&SIGNATURE)
}

/// Whether `data` is a compound file (an Outlook item, or a Word, Excel or PowerPoint
/// file of the 97–2003 formats): it starts as one and its header and directory read.
/// The signature alone is not enough: one put in front of a zip would make the zip no
/// archive to the policy while 7-Zip, failing to read a compound file, opens the zip
/// (review).
pub fn is_compound_file(data: &[u8]) -> bool {
    starts_as_compound_file(data) && opens_as_compound_file(data)
}

/// Whether the compound-file reader opens `data` (its faults taken as "no").
fn opens_as_compound_file(data: &[u8]) -> bool {
    std::panic::catch_unwind(|| cfb::CompoundFile::open(Cursor::new(data)).is_ok()).unwrap_or(false)
}

/// A stream's bytes as read within a limit.
#[derive(Debug)]
pub struct StreamBytes {
    /// The bytes read.
    pub bytes: Vec<u8>,
    /// The stream is no longer than what was read (not cut at the limit).
    pub whole: bool,
}

/// The bytes of a stream, at most `limit`; `None` when there is no such stream or it
/// does not read.
pub fn read_stream(file: &mut CompoundFile<'_>, path: &Path, limit: u64) -> Option<StreamBytes> {
    let stream = file.open_stream(path).ok()?;
    let whole = stream.len() <= limit;
    let mut bytes = Vec::new();
    stream.take(limit).read_to_end(&mut bytes).ok()?;
    Some(StreamBytes { bytes, whole })
}
