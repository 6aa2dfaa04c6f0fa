//! Message files given on the command line: directories walked, files read and worked on
//! by several threads, results in file order.

use anyhow::Context as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every file under `paths` (directories walked), sorted. A directory reached again (a
/// symlink to it or to one above it) is walked only the first time: following such links
/// made a path per combination of links, until the kernel's limit of 40 links per path.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt as _;
    let mut files = Vec::new();
    let mut walked: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    let first_visit = |walked: &mut std::collections::HashSet<(u64, u64)>, dir: &PathBuf| {
        std::fs::metadata(dir).map_or(true, |m| walked.insert((m.dev(), m.ino())))
    };
    for p in paths {
        if p.is_dir() {
            if !first_visit(&mut walked, p) {
                continue;
            }
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for entry in
                    std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
                {
                    let path = entry
                        .with_context(|| format!("reading {}", dir.display()))?
                        .path();
                    if path.is_dir() {
                        if first_visit(&mut walked, &path) {
                            stack.push(path);
                        }
                    } else {
                        files.push(path);
                    }
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    Ok(files)
}

/// Threads to use: `jobs`, or one per core for 0.
pub fn threads(jobs: usize) -> usize {
    match jobs {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// Why a file has no result.
#[derive(Debug)]
pub enum FileError {
    /// It could not be read.
    Read(std::io::Error),
    /// The work panicked on it: a defect, reported for this file only, as the gateway
    /// answers 451 for the one message and goes on.
    Panicked,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Read(e) => write!(f, "{e}"),
            FileError::Panicked => f.write_str("the checks panicked on this message (a defect)"),
        }
    }
}

/// Reads and works on every file with `jobs` threads; the results in file order.
pub fn scan_parallel<T: Send>(
    files: &[PathBuf],
    jobs: usize,
    work: impl Fn(&[u8]) -> T + Sync,
) -> Vec<Result<T, FileError>> {
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<T, FileError>>> = Vec::new();
    slots.resize_with(files.len(), || None);
    let slots = std::sync::Mutex::new(slots);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else { return };
                let result = match std::fs::read(file) {
                    Ok(raw) => catch_unwind(AssertUnwindSafe(|| work(&raw)))
                        .map_err(|_| FileError::Panicked),
                    Err(e) => Err(FileError::Read(e)),
                };
                let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
                slots[i] = Some(result);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or(Err(FileError::Panicked)))
        .collect()
}
