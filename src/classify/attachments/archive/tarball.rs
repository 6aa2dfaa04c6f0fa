//! gzip and tar. A gzip holds one file: its name (from the gzip header, and the
//! attachment's own name without `.gz`) is judged, its content decompressed against the
//! budget. A tar is a run of headers and stored files in the bytes already at hand: each
//! name is judged (GNU and PAX long names too), each file sniffed, and an archive inside
//! opened one level deeper. A `.tar.gz` is one archive: its tar is read at the gzip's level.

use super::{
    open_nested, read_entry, shown_name, AttachmentPolicy, Budget, Counted, Findings, Symbol,
    READ_CHUNK,
};
use crate::classify::attachments::magic;
use flate2::read::MultiGzDecoder;
use std::cell::Cell;
use std::io::Cursor;
use std::rc::Rc;

/// Judges the gzip in `data` at nesting `depth`; `path` names it.
pub(super) fn walk_gzip(
    policy: &AttachmentPolicy,
    data: &[u8],
    depth: usize,
    path: &str,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    if !budget.take_entry() {
        findings.add(Symbol::ArchiveTooManyEntries, path);
        return;
    }
    let consumed = Rc::new(Cell::new(0u64));
    // Members one after another decompress as one file, as gunzip writes them.
    let mut decoder = MultiGzDecoder::new(Counted {
        inner: Cursor::new(data),
        consumed: consumed.clone(),
    });
    let mut buf = vec![0u8; READ_CHUNK];
    let entry = read_entry(&mut decoder, &mut buf, true, budget);
    budget.compressed = budget.compressed.saturating_add(consumed.get());
    let stored = decoder
        .header()
        .and_then(|h| h.filename())
        .map(|n| String::from_utf8_lossy(n).into_owned());
    let mut names: Vec<String> = stored.into_iter().collect();
    if let Some(derived) = unzipped_name(path) {
        if !names.contains(&derived) {
            names.push(derived);
        }
    }
    let shown = format!(
        "{path}/{}",
        names
            .first()
            .map_or_else(|| "(content)".to_string(), |n| shown_name(n))
    );
    let exts: Vec<Option<String>> = names
        .iter()
        .map(|n| policy.check_name(n, true, findings, &shown))
        .collect();
    if entry.broken {
        findings.add(Symbol::ArchiveUnreadable, path);
    }
    let content = magic::sniff(&entry.head);
    if exts
        .iter()
        .any(|e| magic::contradicts(content, magic::promise(e.as_deref(), "")))
    {
        findings.add(Symbol::ArchiveTypeMismatch, &shown);
    }
    match (content, entry.whole) {
        // What was decompressed before the budget ran out still names its files.
        (magic::Content::Tar, Some(tar)) => walk(policy, &tar, depth, &shown, budget, findings),
        (content, whole) => open_nested(
            policy,
            content,
            whole.as_deref(),
            depth,
            &shown,
            budget,
            findings,
        ),
    }
}

/// The name gunzip gives the file of a gzip named `path`'s last component: `.gz` dropped,
/// `.tgz` read as `.tar`. A gzip made from a pipe (or with `-n`) stores no name of its own.
fn unzipped_name(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    let base = |suffix: &str| name.get(..name.len() - suffix.len());
    if lower.ends_with(".tgz") {
        base(".tgz").map(|b| format!("{b}.tar"))
    } else if lower.ends_with(".gz") {
        base(".gz").filter(|b| !b.is_empty()).map(str::to_string)
    } else {
        None
    }
}

/// Judges the tar in `data` at nesting `depth`; `path` names it.
pub(super) fn walk(
    policy: &AttachmentPolicy,
    data: &[u8],
    depth: usize,
    path: &str,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else {
        findings.add(Symbol::ArchiveUnreadable, path);
        return;
    };
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
        if !budget.take_entry() {
            findings.add(Symbol::ArchiveTooManyEntries, path);
            return;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let shown = format!("{path}/{}", shown_name(&name));
        let ext = policy.check_name(&name, true, findings, &shown);
        // Links, devices and the like carry names only.
        if !(kind.is_file() || kind.is_contiguous()) {
            continue;
        }
        let start = usize::try_from(entry.raw_file_position()).unwrap_or(usize::MAX);
        let size = entry
            .header()
            .entry_size()
            .ok()
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0);
        let file = data
            .get(start..)
            .map_or(&[][..], |rest| &rest[..size.min(rest.len())]);
        let content = magic::sniff(file.get(..magic::SNIFF_LEN).unwrap_or(file));
        if magic::contradicts(content, magic::promise(ext.as_deref(), "")) {
            findings.add(Symbol::ArchiveTypeMismatch, &shown);
        }
        open_nested(policy, content, Some(file), depth, &shown, budget, findings);
    }
}

#[cfg(test)]
mod tests {
    use super::unzipped_name;

    #[test]
    fn the_name_gunzip_gives() {
        assert_eq!(
            unzipped_name("invoice.exe.gz").as_deref(),
            Some("invoice.exe")
        );
        assert_eq!(
            unzipped_name("a.zip/docs/Setup.GZ").as_deref(),
            Some("Setup")
        );
        assert_eq!(unzipped_name("backup.tgz").as_deref(), Some("backup.tar"));
        assert_eq!(unzipped_name(".gz"), None);
        assert_eq!(unzipped_name("report.pdf"), None);
    }
}
