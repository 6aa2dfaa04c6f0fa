//! Archives, opened in memory within one budget per message: zip (`zipfile`), gzip and tar
//! (`tarball`, also `.tar.gz`), bzip2, xz and lzma (`compressed`, also `.tar.xz`), RAR
//! (`rar`, names and stored entries), 7-Zip (`sevenzip`). Each entry's name is judged, its content decompressed chunk
//! by chunk and counted against the budget, its first bytes sniffed, and an entry that is
//! itself an archive opened one level deeper while levels remain.

mod compressed;
mod entries;
mod members;
mod rar;
mod sevenzip;
pub(super) mod sevenzip_header;
mod tar_names;
mod tarball;
mod zipfile;

use super::{
    magic, name_claims_archive, names_claim_archive, office, shown_name, AttachmentPolicy,
    Findings, Symbol,
};
use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;

/// Expansion (expanded / compressed bytes) from which running out of budget means a bomb:
/// ordinary files deflate a few times, text perhaps twenty; bombs a thousand.
const BOMB_RATIO: u64 = 100;
/// Bytes decompressed per read.
const READ_CHUNK: usize = 64 * 1024;

/// What decompressing a byte costs the budget, in bytes of deflate (and of stored data):
/// the budget bounds the work of an inspection, not only the size it expands to (pipeline
/// cost probe: 64 MiB decoded took 9.6 s of CPU from PPMd, 2.7 s from bzip2, 1.3 s from
/// xz, 0.1–0.25 s from deflate, so one sender's 7-Zip archives held both inspection slots
/// and other messages' archives waited past `inspection_wait`).
pub(super) mod cost {
    /// Deflate, stored entries, anything not listed.
    pub const PLAIN: u64 = 1;
    /// LZMA, LZMA2, xz.
    pub const LZMA: u64 = 4;
    /// bzip2.
    pub const BZIP2: u64 = 8;
    /// PPMd (7-Zip).
    pub const PPMD: u64 = 32;
}

/// What one message may still cost: entries looked at and bytes decompressed, over every
/// archive and level.
#[derive(Debug)]
pub(super) struct Budget {
    entries_left: usize,
    bytes_left: u64,
    expanded: u64,
    compressed: u64,
    exhausted: bool,
    /// The read during which the byte budget ran out expanded like a bomb by its own ratio.
    bomb_read: bool,
    /// Bytes a `.tar.gz` may still be decompressed for its names only, once the budget
    /// above ran out: as much again, over every archive of the message.
    names_bytes_left: u64,
    /// Distinct names still to be read from raw archive headers, over every archive.
    header_names_left: usize,
    /// Bytes of raw header names still to be scanned, over every archive.
    header_name_bytes_left: usize,
    /// 7-Zip archive headers still to be read, over every archive.
    seven_zip_reads_left: usize,
    /// What a byte decompressed now costs ([`cost`]).
    cost: u64,
    /// What reading the message's Office documents may still cost (macro source, a
    /// presentation's storages), over every attachment and archive.
    pub(in crate::classify::attachments) documents: office::DocumentBudget,
}

impl Budget {
    pub(super) fn new(entries: usize, bytes: u64) -> Budget {
        Budget {
            entries_left: entries,
            bytes_left: bytes,
            expanded: 0,
            compressed: 0,
            exhausted: false,
            bomb_read: false,
            names_bytes_left: bytes,
            header_names_left: MAX_HEADER_NAMES,
            header_name_bytes_left: MAX_HEADER_NAME_BYTES,
            seven_zip_reads_left: sevenzip::MAX_HEADER_READS,
            documents: office::DocumentBudget::default(),
            cost: cost::PLAIN,
        }
    }

    /// Runs `decode` with each byte decompressed costing `cost` ([`cost`]), and sets the
    /// cost back after, whatever path `decode` leaves by.
    pub(super) fn at_cost<T>(&mut self, cost: u64, decode: impl FnOnce(&mut Budget) -> T) -> T {
        let before = std::mem::replace(&mut self.cost, cost.max(1));
        let done = decode(self);
        self.cost = before;
        done
    }

    /// Counts `n` bytes decompressed for names only; false once those ran out.
    fn take_names_bytes(&mut self, n: usize) -> bool {
        let n = (n as u64).saturating_mul(self.cost);
        if n > self.names_bytes_left {
            self.names_bytes_left = 0;
            return false;
        }
        self.names_bytes_left -= n;
        true
    }

    /// The byte budget ran out: inspection stopped there.
    pub(super) fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// What was read expanded like a bomb, not like ordinary data: all of it, or the read
    /// during which the budget ran out. Over the message alone, 1 % of the budget in
    /// ordinary data ahead of a 4 GB bomb (a second attachment) made it `ARCHIVE_TOO_LARGE`
    /// (review).
    pub(super) fn looks_like_bomb(&self) -> bool {
        self.bomb_read || self.expanded >= self.compressed.max(1).saturating_mul(BOMB_RATIO)
    }

    /// Where the budget stood before one entry's or stream's read, for [`Budget::end_read`].
    pub(super) fn start_read(&self) -> ReadStart {
        ReadStart {
            expanded: self.expanded,
            exhausted: self.exhausted,
        }
    }

    /// Counts the `compressed` bytes the read begun at `start` consumed, and whether it
    /// ran the budget out expanding like a bomb.
    pub(super) fn end_read(&mut self, start: ReadStart, compressed: u64) {
        self.compressed = self.compressed.saturating_add(compressed);
        let expanded = self.expanded.saturating_sub(start.expanded);
        if !start.exhausted
            && self.exhausted
            && expanded >= compressed.max(1).saturating_mul(BOMB_RATIO)
        {
            self.bomb_read = true;
        }
    }

    /// Counts one name judged apart from the entry limit against the message's bound on
    /// header names; false once that is reached.
    fn take_header_name(&mut self) -> bool {
        if self.header_names_left == 0 {
            return false;
        }
        self.header_names_left -= 1;
        true
    }

    fn take_entry(&mut self) -> bool {
        if self.entries_left == 0 {
            return false;
        }
        self.entries_left -= 1;
        true
    }

    /// Counts `n` decompressed bytes, at what they cost; false (and exhausted) once over
    /// the limit.
    fn take_bytes(&mut self, n: usize) -> bool {
        self.expanded = self.expanded.saturating_add(n as u64);
        let n = (n as u64).saturating_mul(self.cost);
        if n > self.bytes_left {
            self.bytes_left = 0;
            self.exhausted = true;
            return false;
        }
        self.bytes_left -= n;
        true
    }
}

/// The budget before one read (see [`Budget::start_read`]).
pub(super) struct ReadStart {
    expanded: u64,
    exhausted: bool,
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

/// Where an archive sits: its nesting level (1 for an attachment), its path as findings
/// show it, and the names it goes by in full (what gunzip makes of them).
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    pub(super) depth: usize,
    pub(super) shown: &'a str,
    pub(super) names: &'a [String],
}

/// Judges the archive in `data` with every reader that would take it, as the tools a
/// recipient has would: gzip, tar, RAR and 7-Zip by their first bytes (a tar also by its header
/// checksum), zip by its first bytes or by the end record zip readers look for at the end
/// (a gzip member in front of a zip hides nothing from `unzip`), and as a zip whatever
/// else claims to be an archive (unreadable when it is not one). A panic inside a reader
/// on a malformed archive is caught and reported as unreadable: one hostile attachment
/// must not take the gateway down.
pub(super) fn inspect(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        walk_all(policy, data, place, budget, findings);
    }));
    if walked.is_err() {
        findings.add(Symbol::ArchiveUnreadable, place.shown);
    }
}

/// [`inspect`] without catching a reader's panic (tests call it to see them).
pub(super) fn walk_all(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let content = magic::sniff(data.get(..magic::SNIFF_LEN).unwrap_or(data));
    match content {
        magic::Content::Gzip => tarball::walk_gzip(policy, data, place, budget, findings),
        magic::Content::Bzip2 | magic::Content::Xz | magic::Content::Lzma => {
            compressed::walk(content, policy, data, place, budget, findings)
        }
        magic::Content::Tar => tarball::walk(policy, data, place, budget, findings),
        magic::Content::Rar => rar::walk(policy, data, place, budget, findings),
        magic::Content::SevenZip => sevenzip::walk(policy, data, place, budget, findings),
        // zstd, lzip, a RAR of an unknown version: opened by the recipient's tools, not by
        // this policy. A CAB named as one is not flagged: blocked by name, and the
        // container of OneNote and InfoPath files (review); named otherwise (`.zip`,
        // `.rar`), it is, as 7-Zip and WinRAR open it by its content (review).
        magic::Content::OtherArchive
            if !(magic::is_cab(data) && names_a_cab_format(place.names)) =>
        {
            findings.add(Symbol::ArchiveUninspected, place.shown)
        }
        _ => {}
    }
    let mut other_reader = matches!(
        content,
        magic::Content::Gzip
            | magic::Content::Bzip2
            | magic::Content::Xz
            | magic::Content::Lzma
            | magic::Content::Tar
            | magic::Content::Rar
            | magic::Content::SevenZip
            | magic::Content::OtherArchive
    );
    // Named a tar but not one by its first block (junk there, which GNU tar skips): its
    // headers are read all the same.
    if !other_reader && content != magic::Content::Zip && names_a_tar(place.names) {
        tarball::walk(policy, data, place, budget, findings);
        other_reader = true;
    }
    if !other_reader {
        if let Some((found, at)) = behind_a_prefix(data, place.names) {
            let archive = data.get(at..).unwrap_or_default();
            match found {
                magic::Content::Rar => rar::walk(policy, archive, place, budget, findings),
                _ => sevenzip::walk(policy, archive, place, budget, findings),
            }
            other_reader = true;
        }
    }
    if !other_reader || zipfile::has_end_record(data) {
        zipfile::walk(policy, data, place, budget, findings);
    }
}

/// Whether a name says CAB or a format built on it (OneNote packages, InfoPath forms).
fn names_a_cab_format(names: &[String]) -> bool {
    names.iter().any(|name| {
        matches!(
            super::names::analyse(name).ext.as_deref(),
            Some("cab" | "onepkg" | "xsn")
        )
    })
}

/// How far into a file named `.rar` or `.7z` its archive is looked for: unrar and 7-Zip
/// find one behind a self-extractor's program or other bytes (unrar within 4 MiB).
const MAX_PREFIX: usize = 4 * 1024 * 1024;

/// A RAR or 7-Zip archive that a file named as one holds behind other bytes (a
/// self-extractor's program, junk): its kind and where it starts.
fn behind_a_prefix(data: &[u8], names: &[String]) -> Option<(magic::Content, usize)> {
    let window = data.get(..MAX_PREFIX).unwrap_or(data);
    names.iter().find_map(|name| {
        let (signature, kind) = match super::names::analyse(name).ext.as_deref() {
            Some("rar") => (magic::RAR_MARK, magic::Content::Rar),
            Some("7z") => (magic::SEVEN_ZIP_SIGNATURE, magic::Content::SevenZip),
            _ => return None,
        };
        memchr::memmem::find(window, signature).map(|at| (kind, at))
    })
}

/// Whether one of `names` says tar.
fn names_a_tar(names: &[String]) -> bool {
    names
        .iter()
        .any(|name| super::names::analyse(name).ext.as_deref() == Some("tar"))
}

/// Whether `data` ends with a zip's end record, where zip readers look for it. Not in a
/// compound file (`.doc`, `.xls`, an Outlook `.msg`): a zip there is an object in one of
/// its streams (a `.docx` embedded in a `.doc`, an add-in's property of an Outlook item),
/// whose offsets are the stream's and which no reader opens as the file. Read as one, a
/// forwarded Outlook item was `ARCHIVE_UNREADABLE`.
pub(super) fn ends_like_zip(data: &[u8]) -> bool {
    // The end record first: it is a search of the tail, where reading a compound file's
    // directory is a parse, and every Word or Excel attachment starts as one (review).
    zipfile::has_end_record(data) && !crate::mail::compound_file::is_compound_file(data)
}

/// An entry that is an archive this policy opens is opened one level deeper, while levels
/// and budget remain; past the last level it is `ARCHIVE_TOO_DEEP`. An entry is one when
/// its first bytes say so, when it ends in a zip end record (which `unzip` and Python's
/// `zipfile` find whatever precedes it, at any level as at the top), or when its name says
/// zip, gzip or tar (`named_archive`; then it is unreadable if it is none). `entry` is the
/// entry's place in its archive (at the archive's level).
fn open_nested(
    policy: &AttachmentPolicy,
    content: magic::Content,
    named_archive: bool,
    whole: Option<&[u8]>,
    entry: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let is_archive = content.opens() || named_archive || whole.is_some_and(ends_like_zip);
    if !is_archive {
        return;
    }
    if entry.depth >= policy.max_depth {
        findings.add(Symbol::ArchiveTooDeep, entry.shown);
        // Archives nested past the depth are an attacker's, unless they are documents
        // (Word keeps a chart's data as an `.xlsx` inside the `.docx`; review).
        if named_archive || !entry.names.iter().any(|n| names_a_document(n)) {
            findings.add(Symbol::ArchiveUninspected, entry.shown);
        }
    } else if let Some(inner) = whole.filter(|_| !budget.exhausted()) {
        let deeper = Place {
            depth: entry.depth + 1,
            ..entry
        };
        inspect(policy, inner, deeper, budget, findings);
    } else if !entry.names.iter().any(|n| names_a_document(n)) {
        // The budget ran out reading it (or before): what it holds goes unjudged.
        findings.add(Symbol::ArchiveNestedSkipped, entry.shown);
    }
}

/// Why an entry's content is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unread {
    /// The message's entry or byte limits were spent, or RAR's codecs are not read here:
    /// big legitimate bundles get here too.
    Limits,
    /// A method the reader lacks, a dictionary past the limit, a read that broke off.
    Unreadable,
}

/// An entry whose content is not read: when its name says archive, what it holds goes
/// unjudged (`ARCHIVE_NESTED_SKIPPED` past the limits, `ARCHIVE_UNINSPECTED` otherwise).
fn left_unopened(name: &str, shown: &str, why: Unread, findings: &mut Findings) {
    if name_claims_archive(name) {
        let symbol = match why {
            Unread::Limits => Symbol::ArchiveNestedSkipped,
            Unread::Unreadable => Symbol::ArchiveUninspected,
        };
        findings.add(symbol, shown);
    }
}

/// Whether `name` says an Office or OpenDocument file: zips inside, but opened by their
/// application, never by the recipient as an archive.
fn names_a_document(name: &str) -> bool {
    matches!(
        super::names::analyse(name).ext.as_deref(),
        Some(
            "docx"
                | "docm"
                | "dotx"
                | "xlsx"
                | "xlsm"
                | "xltx"
                | "xlsb"
                | "pptx"
                | "pptm"
                | "potx"
                | "ppsx"
                | "vsdx"
                | "odt"
                | "ods"
                | "odp"
                | "odg"
                | "epub"
        )
    )
}

/// Distinct names read from raw archive headers per message, at most: the bound on the
/// work of judging them (about a microsecond a name).
const MAX_HEADER_NAMES: usize = 100_000;
/// Bytes of raw header names one message's archives may have scanned. Header signatures
/// found anywhere may overlap, each naming up to 64 KiB (a zip's 16-bit length) that the
/// next one names again: without this bound a 200 KB attachment cost gigabytes. Real
/// archives' names add up to kilobytes.
const MAX_HEADER_NAME_BYTES: usize = 64 * 1024 * 1024;
/// Bytes a name is read for its end (a NUL, as C string APIs read it): at least the
/// longest name a tar record keeps (two of its 64 KiB windows).
const MAX_NAME_SCAN: usize = 128 * 1024;
/// The tail of a name that is judged: the longest path Linux takes (`PATH_MAX`), well past
/// Windows' 260 characters. The extension is at the end.
const MAX_JUDGED_NAME: usize = 4096;

/// The distinct names read from an archive's raw headers, within the message's bounds on
/// their number ([`MAX_HEADER_NAMES`]) and bytes scanned ([`MAX_HEADER_NAME_BYTES`]).
/// Names are remembered by a keyed hash, never copied: memory stays a few bytes a name.
struct HeaderNames {
    seen: HashSet<u64>,
    hasher: RandomState,
}

/// What [`HeaderNames::admit`] made of a raw name.
enum Admitted<'d> {
    /// A name not seen before, cut at its NUL and to its judged tail.
    New(&'d [u8]),
    /// Empty, or seen already.
    Skip,
    /// The bound on names or bytes is reached: this name and those after are not read.
    Full,
}

impl HeaderNames {
    fn new() -> HeaderNames {
        HeaderNames {
            seen: HashSet::new(),
            hasher: RandomState::new(),
        }
    }

    /// Reads the name starting `raw` (up to its NUL, as extracting tools read it, within
    /// [`MAX_NAME_SCAN`]) and says whether it is one to judge, counting it against the
    /// message's `budget`.
    fn admit<'d>(&mut self, raw: &'d [u8], budget: &mut Budget) -> Admitted<'d> {
        let raw = raw.get(..MAX_NAME_SCAN).unwrap_or(raw);
        let name = match memchr::memchr(0, raw) {
            Some(nul) => raw.get(..nul).unwrap_or_default(),
            None => raw,
        };
        let scanned = name.len() + usize::from(name.len() < raw.len());
        if budget.header_names_left == 0 || scanned > budget.header_name_bytes_left {
            budget.header_name_bytes_left = 0;
            return Admitted::Full;
        }
        budget.header_name_bytes_left -= scanned;
        let name = name
            .get(name.len().saturating_sub(MAX_JUDGED_NAME)..)
            .unwrap_or(name);
        if name.is_empty() || !self.seen.insert(self.hasher.hash_one(name)) {
            return Admitted::Skip;
        }
        budget.header_names_left -= 1;
        Admitted::New(name)
    }
}

/// Judges the names read from an archive's raw headers (apart from its reader, which
/// shows one name per entry): each distinct name once, within [`HeaderNames`]' bounds;
/// empty names and directories are skipped.
struct NameJudge<'a> {
    policy: &'a AttachmentPolicy,
    path: &'a str,
    names: HeaderNames,
}

impl<'a> NameJudge<'a> {
    fn new(policy: &'a AttachmentPolicy, path: &'a str) -> NameJudge<'a> {
        NameJudge {
            policy,
            path,
            names: HeaderNames::new(),
        }
    }

    /// Judges the name `raw` starts with unless it was judged already; false once the
    /// message's bounds are reached (the names past them are not judged), and then the
    /// archive is marked `ARCHIVE_TOO_MANY_ENTRIES` (once).
    fn judge(&mut self, raw: &[u8], findings: &mut Findings, budget: &mut Budget) -> bool {
        let name = match self.names.admit(raw, budget) {
            Admitted::New(name) => name,
            Admitted::Skip => return true,
            Admitted::Full => {
                findings.add(Symbol::ArchiveTooManyEntries, self.path);
                findings.add(Symbol::ArchiveUninspected, self.path);
                return false;
            }
        };
        if name.ends_with(b"/") {
            return true;
        }
        let name = String::from_utf8_lossy(name);
        let shown = format!("{}/{}", self.path, shown_name(&name));
        self.policy.check_name(&name, true, findings, &shown);
        true
    }
}

/// One entry as read: its first bytes, all of it when it may be an archive to open, and
/// whether decompression failed.
struct Entry {
    head: Vec<u8>,
    whole: Option<Vec<u8>>,
    broken: bool,
    /// The piece read when the budget ran out, which it did not count (kept only with
    /// `whole`): a tar read on for names needs it.
    unread: Vec<u8>,
}

/// Streams an entry through `buf`, counting every byte against the budget and stopping
/// when it runs out. The whole entry is kept when `keep` says so (a level remains to open
/// it): its first bytes cannot rule out an archive, since a zip is found by the end record
/// at its end. What is kept counts against the budget like all that is read, so it stays
/// within `max_expanded_bytes`.
fn read_entry(file: &mut impl Read, buf: &mut [u8], keep: bool, budget: &mut Budget) -> Entry {
    let mut entry = Entry {
        head: Vec::new(),
        whole: keep.then(Vec::new),
        broken: false,
        unread: Vec::new(),
    };
    loop {
        let n = match read_piece(file, buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                entry.broken = true;
                break;
            }
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if !budget.take_bytes(n) {
            if entry.whole.is_some() {
                entry.unread = chunk.to_vec();
            }
            break;
        }
        let room = magic::SNIFF_LEN.saturating_sub(entry.head.len());
        entry
            .head
            .extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
        if let Some(whole) = entry.whole.as_mut() {
            whole.extend_from_slice(chunk);
        }
    }
    entry
}

/// The next piece of a decompressing stream into `buf` (0 at its end), read again when a
/// read is interrupted.
fn read_piece(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(names: &mut HeaderNames, raw: &[u8]) -> Option<Vec<u8>> {
        match names.admit(raw, &mut Budget::new(10, 10)) {
            Admitted::New(name) => Some(name.to_vec()),
            Admitted::Skip => None,
            Admitted::Full => Some(b"FULL".to_vec()),
        }
    }

    #[test]
    fn a_header_name_is_read_to_its_nul_and_judged_by_its_tail() {
        let mut names = HeaderNames::new();
        assert_eq!(
            admitted(&mut names, b"invoice.js\0.txt"),
            Some(b"invoice.js".to_vec())
        );
        assert_eq!(admitted(&mut names, b"invoice.js\0other"), None);
        assert_eq!(admitted(&mut names, b"\0x"), None);
        let mut long = vec![b'a'; 10_000];
        long.extend_from_slice(b".exe");
        let tail = admitted(&mut names, &long).unwrap_or_default();
        assert_eq!(tail.len(), MAX_JUDGED_NAME);
        assert!(tail.ends_with(b"a.exe"));
    }

    #[test]
    fn header_names_stop_at_the_byte_bound() {
        let mut names = HeaderNames::new();
        // One message's budget, shared by every archive.
        let mut budget = Budget::new(10, 10);
        let mut raw = vec![b'x'; MAX_NAME_SCAN + 100];
        let mut admitted_count = 0usize;
        for i in 0.. {
            // Distinct in the judged tail, which lies within the bytes read.
            let at = MAX_NAME_SCAN - 8;
            raw[at..at + 8].copy_from_slice(format!("{i:08x}").as_bytes());
            match names.admit(&raw, &mut budget) {
                Admitted::New(_) => admitted_count += 1,
                Admitted::Skip => {}
                Admitted::Full => break,
            }
        }
        assert_eq!(admitted_count, MAX_HEADER_NAME_BYTES / MAX_NAME_SCAN);
        assert!(matches!(
            names.admit(b"short.exe", &mut budget),
            Admitted::Full
        ));
        // Another archive of the same message finds the bound spent.
        assert!(matches!(
            HeaderNames::new().admit(b"other.exe", &mut budget),
            Admitted::Full
        ));
    }
}
