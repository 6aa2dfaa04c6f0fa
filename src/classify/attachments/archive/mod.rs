//! Archives, opened in memory within one budget per message: zip (`zipfile`), gzip and tar
//! (`tarball`, also `.tar.gz`). Each entry's name is judged, its content decompressed chunk
//! by chunk and counted against the budget, its first bytes sniffed, and an entry that is
//! itself an archive opened one level deeper while levels remain.

mod tarball;
mod zipfile;

use super::{magic, shown_name, AttachmentPolicy, Findings, Symbol};
use std::cell::Cell;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;

/// Expansion (expanded / compressed bytes) from which running out of budget means a bomb:
/// ordinary files deflate a few times, text perhaps twenty; bombs a thousand.
const BOMB_RATIO: u64 = 100;
/// Bytes decompressed per read.
const READ_CHUNK: usize = 64 * 1024;

/// What one message may still cost: entries looked at and bytes decompressed, over every
/// archive and level.
#[derive(Debug)]
pub(super) struct Budget {
    entries_left: usize,
    bytes_left: u64,
    expanded: u64,
    compressed: u64,
    exhausted: bool,
}

impl Budget {
    pub(super) fn new(entries: usize, bytes: u64) -> Budget {
        Budget {
            entries_left: entries,
            bytes_left: bytes,
            expanded: 0,
            compressed: 0,
            exhausted: false,
        }
    }

    /// The byte budget ran out: inspection stopped there.
    pub(super) fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// What was read expanded like a bomb, not like ordinary data.
    pub(super) fn looks_like_bomb(&self) -> bool {
        self.expanded >= self.compressed.max(1).saturating_mul(BOMB_RATIO)
    }

    fn take_entry(&mut self) -> bool {
        if self.entries_left == 0 {
            return false;
        }
        self.entries_left -= 1;
        true
    }

    /// Counts `n` decompressed bytes; false (and exhausted) once over the limit.
    fn take_bytes(&mut self, n: usize) -> bool {
        let n = n as u64;
        self.expanded = self.expanded.saturating_add(n);
        if n > self.bytes_left {
            self.bytes_left = 0;
            self.exhausted = true;
            return false;
        }
        self.bytes_left -= n;
        true
    }
}

/// An archive's bytes, counting what the zip reader consumes: the compressed side of the
/// expansion ratio (an entry's declared compressed size says nothing about how much of
/// it was read before the budget ran out).
struct Counted<'a> {
    inner: Cursor<&'a [u8]>,
    consumed: Rc<Cell<u64>>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed
            .set(self.consumed.get().saturating_add(n as u64));
        Ok(n)
    }
}

impl Seek for Counted<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Judges the archive in `data` at nesting `depth` (1 for an attachment): gzip and tar
/// by their first bytes, anything else as a zip (a part claiming to be one that is not is
/// unreadable). A panic inside a reader on a malformed archive is caught and reported as
/// unreadable: one hostile attachment must not take the gateway down.
pub(super) fn inspect(
    policy: &AttachmentPolicy,
    data: &[u8],
    depth: usize,
    path: &str,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match magic::sniff(data.get(..magic::SNIFF_LEN).unwrap_or(data)) {
            magic::Content::Gzip => tarball::walk_gzip(policy, data, depth, path, budget, findings),
            magic::Content::Tar => tarball::walk(policy, data, depth, path, budget, findings),
            _ => zipfile::walk(policy, data, depth, path, budget, findings),
        }
    }));
    if walked.is_err() {
        findings.add(Symbol::ArchiveUnreadable, path);
    }
}

/// An entry whose content is an archive this policy opens is opened one level deeper,
/// while levels and budget remain; past the last level it is `ARCHIVE_TOO_DEEP`.
fn open_nested(
    policy: &AttachmentPolicy,
    content: magic::Content,
    whole: Option<&[u8]>,
    depth: usize,
    shown: &str,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    if !content.opens() {
        return;
    }
    if depth >= policy.max_depth {
        findings.add(Symbol::ArchiveTooDeep, shown);
    } else if let Some(inner) = whole.filter(|_| !budget.exhausted()) {
        inspect(policy, inner, depth + 1, shown, budget, findings);
    }
}

/// One entry as read: its first bytes, all of it when it may be an archive to open, and
/// whether decompression failed.
struct Entry {
    head: Vec<u8>,
    whole: Option<Vec<u8>>,
    broken: bool,
}

/// Streams an entry through `buf`, counting every byte against the budget and stopping
/// when it runs out. The whole entry is kept (when `keep` says so) only while it may still
/// be an archive to open.
fn read_entry(file: &mut impl Read, buf: &mut [u8], keep: bool, budget: &mut Budget) -> Entry {
    let mut entry = Entry {
        head: Vec::new(),
        whole: keep.then(Vec::new),
        broken: false,
    };
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                entry.broken = true;
                break;
            }
        };
        if !budget.take_bytes(n) {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        let room = magic::SNIFF_LEN.saturating_sub(entry.head.len());
        entry
            .head
            .extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
        if let Some(whole) = entry.whole.as_mut() {
            whole.extend_from_slice(chunk);
        }
        if entry.whole.is_some() && !magic::may_open(&entry.head) {
            entry.whole = None;
        }
    }
    entry
}
