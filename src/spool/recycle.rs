//! Spool files of delivered messages kept empty for the next messages, so a store reuses an
//! inode instead of allocating one and a delivery frees none.
//!
//! Why: a message per file makes the spool churn through inodes at the message rate. On
//! ext4 without a journal, allocating an inode skips every inode freed in the last minute
//! (or five), and each skip reads an inode-table block: at a few thousand messages a
//! second that scan was a fifth of the gateway's CPU. A renamed, truncated file costs
//! directory updates only.
//!
//! A recycled file is truncated before it joins `free/`, so no delivered message lingers
//! there. Files left in `free/` by a stop are removed at start (they hold nothing).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The pool of empty spool files under `free/`.
#[derive(Debug)]
pub(super) struct Recycler {
    dir: PathBuf,
    capacity: usize,
    names: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl Recycler {
    /// A pool of at most `capacity` files in `dir` (created, emptied of leftovers when
    /// `clean` is set). Capacity 0 recycles nothing.
    pub(super) fn open(dir: &Path, capacity: usize, clean: bool) -> io::Result<Recycler> {
        fs::create_dir_all(dir)?;
        if clean {
            for entry in fs::read_dir(dir)? {
                let _ = fs::remove_file(entry?.path());
            }
        }
        Ok(Recycler {
            dir: dir.to_owned(),
            capacity: if clean { capacity } else { 0 },
            names: Mutex::new(Vec::with_capacity(capacity.min(4096))),
            next: AtomicU64::new(0),
        })
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        // The list is only pushed and popped: a panic elsewhere cannot leave it half-done.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `path` (a settled queue file) into the pool, emptied; `Ok(false)` when the pool
    /// is full and the caller should delete it instead.
    pub(super) fn put(&self, path: &Path) -> io::Result<bool> {
        if self.names().len() >= self.capacity {
            return Ok(false);
        }
        let slot = self.next_slot();
        // Moved first: a crash before the truncation leaves the message in `free/`, which
        // is emptied at start, never an empty file in `queue/`.
        fs::rename(path, &slot)?;
        match OpenOptions::new()
            .write(true)
            .open(&slot)
            .and_then(|f| f.set_len(0))
        {
            Ok(()) => self.names().push(slot),
            Err(_) => {
                let _ = fs::remove_file(&slot);
            }
        }
        Ok(true)
    }

    fn next_slot(&self) -> PathBuf {
        self.dir
            .join(format!("{:x}", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    /// Creates up to `step` new empty files while the pool is under half its capacity (the
    /// committer calls this when it has nothing else to do, so inode allocation leaves the
    /// path of a message); returns how many it created. Half: a pool kept full would send
    /// every delivered file to `unlink` and every new message to a fresh file again.
    pub(super) fn top_up(&self, step: usize) -> usize {
        let mut created = 0;
        while created < step && self.names().len() < self.capacity / 2 {
            let slot = self.next_slot();
            match OpenOptions::new().write(true).create_new(true).open(&slot) {
                Ok(_) => self.names().push(slot),
                // A full disk or a read-only spool: new files are created on demand then.
                Err(_) => break,
            }
            created += 1;
        }
        created
    }

    /// An empty file of the pool opened for writing, with its path; `None` when the pool is
    /// empty (the caller creates a new file).
    pub(super) fn take(&self) -> Option<(PathBuf, File)> {
        loop {
            let path = self.names().pop()?;
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => return Some((path, file)),
                // Removed behind our back (an operator cleaning up): try the next.
                Err(_) => continue,
            }
        }
    }

    /// Files in the pool.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.names().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_recycled_file_comes_back_empty_and_the_pool_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Recycler::open(&dir.path().join("free"), 1, true).unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"delivered message").unwrap();
        fs::write(&b, b"another").unwrap();
        assert!(pool.put(&a).unwrap());
        assert!(!pool.put(&b).unwrap(), "over capacity");
        assert!(!a.exists() && b.exists());
        let (path, mut file) = pool.take().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        file.write_all(b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(pool.take().is_none());
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn leftovers_are_removed_at_start_and_an_admin_open_recycles_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let free = dir.path().join("free");
        fs::create_dir_all(&free).unwrap();
        fs::write(free.join("7"), b"").unwrap();
        let admin = Recycler::open(&free, 8, false).unwrap();
        assert!(
            free.join("7").exists(),
            "an admin open must not touch a live pool"
        );
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(!admin.put(&f).unwrap());
        let pool = Recycler::open(&free, 8, true).unwrap();
        assert!(!free.join("7").exists());
        assert!(pool.take().is_none());
    }
}
