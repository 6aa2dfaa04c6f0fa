//! gzip and tar. A gzip holds one file: its name (from each member's header, and the
//! archive's own names as gunzip shortens them) is judged, its content decompressed
//! against the budget. A tar is a run of headers and stored files in the bytes already at
//! hand: every name its headers carry is judged (GNU long names and PAX records too), each
//! file sniffed, and an archive inside opened one level deeper. A `.tar.gz` is one
//! archive: its tar is read at the gzip's level.

use super::members::Members;
use super::tar_names::TarNames;
use super::{
    left_unopened, names_claim_archive, open_nested, read_entry, read_piece, shown_name, Admitted,
    AttachmentPolicy, Budget, Findings, HeaderNames, NameJudge, Place, Symbol, Unread, READ_CHUNK,
};
use crate::classify::attachments::{check_shortcut, magic, names};
use flate2::bufread::GzDecoder;
use std::io::Read;

/// Judges the gzip in `data`.
pub(super) fn walk_gzip(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let path = place.shown;
    // The name each member stores (the decoder shows only the last member's), then what
    // gunzip makes of the archive's own names.
    let mut inner_names = member_names(data, path, budget, findings);
    // Only a name the gzip stores is the file's own: `setup.tar.gz` need not hold a tar.
    let named_archive = names_claim_archive(&inner_names);
    for name in place.names.iter().filter_map(|n| names::gunzipped(n)) {
        if !inner_names.contains(&name) {
            inner_names.push(name);
        }
    }
    let Some((shown, exts)) = judge_stream_names(policy, path, &inner_names, budget, findings)
    else {
        return;
    };
    let mut decoder = Gunzip::new(data);
    let stream = Stream {
        path,
        shown: &shown,
        names: &inner_names,
        exts: &exts,
        named_archive,
        depth: place.depth,
    };
    judge_stream(
        policy,
        &mut decoder,
        Gunzip::consumed,
        stream,
        budget,
        findings,
    );
}

/// Judges the names of the one file of the compressed stream at `path`: its path as
/// findings show it and the extensions of `names`, or `None` when the entry limit stops
/// its content. Its names are judged all the same (review: past the entry limit
/// `invoice.exe.gz` was not even judged by name); when one says archive (`backup.tar`),
/// what it holds goes unjudged.
pub(super) fn judge_stream_names(
    policy: &AttachmentPolicy,
    path: &str,
    names: &[String],
    budget: &mut Budget,
    findings: &mut Findings,
) -> Option<(String, Vec<Option<String>>)> {
    let shown = format!(
        "{path}/{}",
        names
            .first()
            .map_or_else(|| "(content)".to_string(), |n| shown_name(n))
    );
    let exts = names
        .iter()
        .map(|n| policy.check_name(n, true, findings, &shown))
        .collect();
    if budget.take_entry() {
        return Some((shown, exts));
    }
    findings.add(Symbol::ArchiveTooManyEntries, path);
    if let Some(name) = names.iter().find(|n| super::name_claims_archive(n)) {
        left_unopened(name, &shown, Unread::Limits, findings);
    }
    None
}

/// The one file a compressed stream (gzip, bzip2, xz, lzma) decompresses to, as judged by
/// name before its content is read.
pub(super) struct Stream<'a> {
    /// The compressed file's path as findings show it.
    pub(super) path: &'a str,
    /// The decompressed file's path as findings show it.
    pub(super) shown: &'a str,
    /// The names the decompressed file goes by.
    pub(super) names: &'a [String],
    /// Their extensions.
    pub(super) exts: &'a [Option<String>],
    /// A name the stream itself stores says archive.
    pub(super) named_archive: bool,
    /// The compressed file's level: its content is one file at that level, as a tar's is.
    pub(super) depth: usize,
}

/// Decompresses the file of a compressed stream against the budget (`consumed` tells the
/// compressed bytes the decoder read), sniffs it against its names, and reads a tar in it
/// at the stream's level (on for names past the budget) or opens another archive one
/// level deeper.
pub(super) fn judge_stream<R: Read>(
    policy: &AttachmentPolicy,
    decoder: &mut R,
    consumed: impl Fn(&R) -> u64,
    stream: Stream<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let Stream {
        path,
        shown,
        names: inner_names,
        exts,
        named_archive,
        depth,
    } = stream;
    let mut buf = vec![0u8; READ_CHUNK];
    let start = budget.start_read();
    let entry = read_entry(decoder, &mut buf, true, budget);
    budget.end_read(start, consumed(decoder));
    if entry.broken {
        findings.add(Symbol::ArchiveUnreadable, path);
        if entry.head.is_empty() && entry.unread.is_empty() {
            // Not a byte of the file came out (a dictionary past the limit, a broken
            // start): nothing of it was judged.
            findings.add(Symbol::ArchiveUninspected, path);
        }
    }
    // With the budget spent before this archive, nothing was kept: the piece read and not
    // counted still tells what it is.
    let first = if entry.head.is_empty() {
        &entry.unread
    } else {
        &entry.head
    };
    let content = magic::sniff(first);
    if exts
        .iter()
        .any(|e| magic::contradicts(content, magic::promise(e.as_deref(), "")))
    {
        findings.add(Symbol::ArchiveTypeMismatch, shown);
    }
    check_shortcut(exts, "", first, true, findings, shown);
    let inner = Place {
        depth,
        shown,
        names: inner_names,
    };
    match (content, entry.whole) {
        // What was decompressed before the budget ran out still names its files, and the
        // rest is read on for names.
        (magic::Content::Tar, Some(tar)) => {
            walk(policy, &tar, inner, budget, findings);
            if budget.exhausted() {
                let seen = (tar.as_slice(), entry.unread.as_slice());
                judge_names_past_the_budget(policy, decoder, seen, shown, budget, findings);
            }
        }
        (content, whole) => {
            let whole = whole.as_deref();
            open_nested(
                policy,
                content,
                named_archive,
                whole,
                inner,
                budget,
                findings,
            );
        }
    }
}

/// The file a gzip decompresses to, read as gunzip writes it (its members in turn).
type Gunzip<'a> = Members<'a, GzDecoder<&'a [u8]>>;

/// The names stored in the headers of the gzip members in `data` (RFC 1952 `FNAME`),
/// found by their signature anywhere: the decoder reports one member's header only, and
/// `gunzip -N` names the file after the first. Signatures inside compressed data give
/// junk names, judged as junk.
/// Past the message's bound on header names the reading stops, and the archive (at `path`)
/// is marked `ARCHIVE_TOO_MANY_ENTRIES`, as the other archives' header passes do.
fn member_names(
    data: &[u8],
    path: &str,
    budget: &mut Budget,
    findings: &mut Findings,
) -> Vec<String> {
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    let mut found = Vec::new();
    let mut names = HeaderNames::new();
    for at in memchr::memmem::find_iter(data, b"\x1f\x8b\x08") {
        let Some(&flags) = data.get(at + 3) else {
            continue;
        };
        if flags & FNAME == 0 || flags & 0xe0 != 0 {
            continue;
        }
        let mut name_at = at + 10;
        if flags & FEXTRA != 0 {
            let Some(len) = data.get(name_at..name_at + 2) else {
                continue;
            };
            name_at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
        }
        let Some(rest) = data.get(name_at..) else {
            continue;
        };
        match names.admit(rest, budget) {
            Admitted::New(name) => found.push(String::from_utf8_lossy(name).into_owned()),
            Admitted::Skip => {}
            Admitted::Full => {
                findings.add(Symbol::ArchiveTooManyEntries, path);
                findings.add(Symbol::ArchiveUninspected, path);
                break;
            }
        }
    }
    found
}

/// Judges the tar in `data`.
pub(super) fn walk(
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let path = place.shown;
    judge_header_names(policy, data, path, findings, budget);
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else {
        findings.add(Symbol::ArchiveUnreadable, path);
        return;
    };
    let mut past_the_limit = false;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(_) => {
                // A tar cut where the budget stopped its gzip ends early; that is not the
                // sender's doing.
                if !budget.exhausted() {
                    findings.add(Symbol::ArchiveUnreadable, path);
                }
                return;
            }
        };
        let kind = entry.header().entry_type();
        // Directories, links and devices carry names only (judged above); every other
        // kind, unknown ones and sparse files included, GNU tar extracts as a file.
        if kind.is_dir()
            || kind.is_symlink()
            || kind.is_hard_link()
            || kind.is_character_special()
            || kind.is_block_special()
            || kind.is_fifo()
        {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let shown = format!("{path}/{}", shown_name(&name));
        if past_the_limit || !budget.take_entry() {
            // Its name was judged with the headers; an archive in it is not opened.
            findings.add(Symbol::ArchiveTooManyEntries, path);
            left_unopened(&name, &shown, Unread::Limits, findings);
            past_the_limit = true;
            continue;
        }
        let ext = policy.check_name(&name, true, findings, &shown);
        let start = usize::try_from(entry.raw_file_position()).unwrap_or(usize::MAX);
        // The size a PAX record gives overrides the header's.
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        let file = data
            .get(start..)
            .map_or(&[][..], |rest| &rest[..size.min(rest.len())]);
        let content = magic::sniff(file.get(..magic::SNIFF_LEN).unwrap_or(file));
        if magic::contradicts(content, magic::promise(ext.as_deref(), "")) {
            findings.add(Symbol::ArchiveTypeMismatch, &shown);
        }
        check_shortcut(&[ext], "", file, true, findings, &shown);
        policy.check_office_entry(&name, file, budget, findings, &shown);
        let names = [name];
        let entry_place = Place {
            depth: place.depth,
            shown: &shown,
            names: &names,
        };
        let named_archive = names_claim_archive(&names);
        open_nested(
            policy,
            content,
            named_archive,
            Some(file),
            entry_place,
            budget,
            findings,
        );
    }
}

/// Judges every name the headers of the tar in `data` carry, read apart from the `tar`
/// crate, which shows one name per entry by its own precedence while GNU tar and Python's
/// `tarfile` may extract under another.
fn judge_header_names(
    policy: &AttachmentPolicy,
    data: &[u8],
    path: &str,
    findings: &mut Findings,
    budget: &mut Budget,
) {
    let mut judge = NameJudge::new(policy, path);
    let mut full = false;
    let mut reader = TarNames::default();
    reader.feed(data, &mut |name| {
        if !full {
            full = !judge.judge(name, findings, budget);
        }
    });
    // Entries past damage GNU tar extracts and the `tar` crate never shows, or that start
    // elsewhere for GNU tar: their names were judged, their content was not.
    if reader.headers_after_damage() || reader.sizes_the_crate_ignores() {
        findings.add(Symbol::ArchiveUninspected, path);
    }
}

/// Judges the names of a `.tar.gz` whose expansion the budget cut: the tar is read on from
/// the decoder for its names only, skipping (never keeping) file data, while the message's
/// bytes for names last (`max_expanded_bytes` more, over all its archives), so a blocked
/// name after the cut is still found. `kept` and `unread` are what was decompressed
/// before: the part kept and the piece that ran over. When the bytes for names run out
/// first, the archive is marked `ARCHIVE_TOO_MANY_ENTRIES`: names were left unjudged.
fn judge_names_past_the_budget(
    policy: &AttachmentPolicy,
    decoder: &mut impl Read,
    (kept, unread): (&[u8], &[u8]),
    path: &str,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let mut judge = NameJudge::new(policy, path);
    let mut reader = TarNames::default();
    // The kept part's names were judged with it: it is read for where it ends only.
    reader.feed(kept, &mut |_| {});
    let mut piece = unread.to_vec();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        // Names of one piece at a time (each at most a tar record's longest).
        let mut names: Vec<Vec<u8>> = Vec::new();
        reader.feed(&piece, &mut |name| names.push(name.to_vec()));
        for name in &names {
            if !judge.judge(name, findings, budget) {
                return;
            }
        }
        if reader.done() {
            return;
        }
        let n = match read_piece(decoder, &mut buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        if !budget.take_names_bytes(n) {
            // Names past here are not judged: say so, as the header-name bounds do.
            findings.add(Symbol::ArchiveTooManyEntries, path);
            findings.add(Symbol::ArchiveUninspected, path);
            return;
        }
        piece.clear();
        piece.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_member_names_are_read_from_every_header() {
        let member = |flags: u8, extra: &[u8], name: &[u8]| {
            let mut m = vec![0x1f, 0x8b, 0x08, flags, 0, 0, 0, 0, 0, 3];
            m.extend_from_slice(extra);
            m.extend_from_slice(name);
            m.push(0);
            m
        };
        let mut data = member(0x08, &[], b"invoice.exe");
        data.extend(member(0x0c, &[2, 0, 0xaa, 0xbb], b"notes.txt"));
        data.extend(member(0x00, &[], b""));
        let mut findings = Findings::default();
        let names = member_names(&data, "a.gz", &mut Budget::new(10, 10), &mut findings);
        assert_eq!(names, ["invoice.exe", "notes.txt"]);
        assert!(findings.0.is_empty());
    }
}
