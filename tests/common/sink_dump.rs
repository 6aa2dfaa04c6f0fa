//! What Postfix's `smtp-sink -d DIR/%M.` wrote: one file per message, read whole.

use std::fs;
use std::path::{Path, PathBuf};

/// The files smtp-sink dumped (one per message), sorted by path, each with its text (bytes
/// that are not UTF-8 replaced). A file smtp-sink has created but not yet written reads
/// empty.
pub fn sink_dumps(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .map(|p| {
                    let text =
                        String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()).into_owned();
                    (p, text)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
