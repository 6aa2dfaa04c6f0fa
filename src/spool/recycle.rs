//! Files of delivered messages kept for the next messages, so a store reuses an inode and
//! its blocks instead of allocating them, and a delivery frees none.
//!
//! Why: a message per file makes the spool churn through inodes at the message rate. On
//! ext4 without a journal, allocating an inode skips every inode freed in the last minute
//! (or five), and each skip reads an inode-table block: at a few thousand messages a
//! second that scan was a fifth of the gateway's CPU. Freeing blocks (delete, truncate) on
//! a `discard` mount is a device request the freeing thread waits for.
//!
//! So new bytes are written over a reused file's old ones; what a crash can leave of that
//! is caught by the seal (`seal.rs`). The committer empties a pooled file that has held a
//! delivered message for a while (and all of them when idle), so delivered mail does not
//! linger in `free/`; files left there by a stop are removed at start.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The pool of empty spool files under `free/`.
#[derive(Debug)]
pub(super) struct Recycler {
    dir: PathBuf,
    capacity: usize,
    names: Mutex<VecDeque<Pooled>>,
    next: AtomicU64,
}

/// A file of the pool, the bytes it still holds (0 once emptied) and since when.
#[derive(Debug)]
struct Pooled {
    path: PathBuf,
    len: u64,
    since: Instant,
}

/// A pooled file handed out for writing.
#[derive(Debug)]
pub(super) struct Reused {
    /// Where it is.
    pub path: PathBuf,
    /// Open for writing, positioned at the start.
    pub file: File,
    /// Bytes of an earlier message it still holds.
    pub old_len: u64,
}

impl Recycler {
    /// A pool of at most `capacity` files in `dir` (created, emptied of leftovers when
    /// `clean` is set). Capacity 0 recycles nothing.
    pub(super) fn open(dir: &Path, capacity: usize, clean: bool) -> io::Result<Recycler> {
        super::private_dir(dir)?;
        if clean {
            for entry in fs::read_dir(dir)? {
                let _ = fs::remove_file(entry?.path());
            }
        }
        Ok(Recycler {
            dir: dir.to_owned(),
            capacity: if clean { capacity } else { 0 },
            names: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            next: AtomicU64::new(0),
        })
    }

    fn names(&self) -> std::sync::MutexGuard<'_, VecDeque<Pooled>> {
        // The list is only pushed and popped: a panic elsewhere cannot leave it half-done.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `path` (a settled queue file of `len` bytes) into the pool; `Ok(false)` when the
    /// pool is full and the caller should delete it instead.
    pub(super) fn put(&self, path: &Path, len: u64) -> io::Result<bool> {
        if self.names().len() >= self.capacity {
            return Ok(false);
        }
        let slot = self.next_slot();
        fs::rename(path, &slot)?;
        self.names().push_back(Pooled {
            path: slot,
            len,
            since: Instant::now(),
        });
        Ok(true)
    }

    /// Empties up to `step` pooled files that have held a delivered message for at least
    /// `min_age`; returns how many it emptied (the committer calls this when it has nothing
    /// else to do). A busy gateway writes over most files within moments; the ones left
    /// below the top of the pool are emptied this way instead of keeping old mail.
    pub(super) fn scrub(&self, step: usize, min_age: Duration) -> usize {
        let mut done = 0;
        while done < step {
            // Files are pushed as they come, so the first one still holding bytes is the
            // oldest. Taken out while truncating, so no store gets a file being emptied.
            let dirty = {
                let mut names = self.names();
                match names.iter().position(|p| p.len > 0) {
                    Some(i) if names[i].since.elapsed() >= min_age => match names.remove(i) {
                        Some(p) => p,
                        None => break,
                    },
                    _ => break,
                }
            };
            let emptied = OpenOptions::new()
                .write(true)
                .open(&dirty.path)
                .and_then(|f| f.set_len(0));
            match emptied {
                Ok(()) => self.names().push_front(Pooled {
                    path: dirty.path,
                    len: 0,
                    since: dirty.since,
                }),
                Err(_) => {
                    let _ = fs::remove_file(&dirty.path);
                }
            }
            done += 1;
        }
        done
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
            match super::private_file()
                .write(true)
                .create_new(true)
                .open(&slot)
            {
                Ok(_) => self.names().push_front(Pooled {
                    path: slot,
                    len: 0,
                    since: Instant::now(),
                }),
                // A full disk or a read-only spool: new files are created on demand then.
                Err(_) => break,
            }
            created += 1;
        }
        created
    }

    /// A file of the pool opened for writing; `None` when the pool is empty (the caller
    /// creates a new file).
    pub(super) fn take(&self) -> Option<Reused> {
        loop {
            let pooled = self.names().pop_back()?;
            match OpenOptions::new().write(true).open(&pooled.path) {
                Ok(file) => {
                    // Private whatever it was made with: files of a spool written before
                    // spool files were 0600 (the umask's 0644) kept their mode in the pool.
                    use std::os::unix::fs::PermissionsExt;
                    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
                    return Some(Reused {
                        path: pooled.path,
                        file,
                        old_len: pooled.len,
                    });
                }
                // Removed behind our back (an operator cleaning up): try the next.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // Out of descriptors for a moment, or a file made unwritable: it leaves the
                // pool, and with it the delivered message it holds (review: it stayed in
                // `free/` until a restart, which no scrub reached).
                Err(_) => {
                    let _ = std::fs::remove_file(&pooled.path);
                    continue;
                }
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
    fn a_recycled_file_is_reused_whole_or_emptied_when_idle_and_the_pool_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Recycler::open(&dir.path().join("free"), 1, true).unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"delivered message").unwrap();
        fs::write(&b, b"another").unwrap();
        assert!(pool.put(&a, 17).unwrap());
        assert!(!pool.put(&b, 7).unwrap(), "over capacity");
        assert!(!a.exists() && b.exists());
        let mut reused = pool.take().unwrap();
        assert_eq!(reused.old_len, 17);
        // Regression (review): a file made 0644 (by an older build, under the umask) kept
        // its mode in the pool, holding the next message readable to every local user.
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&reused.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        reused.file.write_all(b"new").unwrap();
        assert!(fs::read(&reused.path).unwrap().starts_with(b"new"));
        assert!(pool.take().is_none());
        // Idle: a pooled file that still holds a message is emptied, an empty one is not.
        let c = dir.path().join("c");
        fs::write(&c, b"delivered").unwrap();
        assert!(pool.put(&c, 9).unwrap());
        assert_eq!(pool.scrub(8, Duration::from_secs(3600)), 0, "too recent");
        assert_eq!(pool.scrub(8, Duration::ZERO), 1);
        assert_eq!(pool.scrub(8, Duration::ZERO), 0);
        let emptied = pool.take().unwrap();
        assert_eq!(emptied.old_len, 0);
        assert_eq!(fs::metadata(&emptied.path).unwrap().len(), 0);
        assert_eq!(pool.len(), 0);
    }

    /// Regression (review): a pooled file that failed to open (out of descriptors for a
    /// moment) left the pool's list but stayed in `free/`, holding its delivered message
    /// until a restart: no scrub knew of it.
    #[test]
    fn a_pooled_file_that_cannot_be_opened_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let free = dir.path().join("free");
        let pool = Recycler::open(&free, 4, true).unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"delivered message").unwrap();
        assert!(pool.put(&a, 17).unwrap());
        let pooled: Vec<_> = fs::read_dir(&free)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(pooled.len(), 1);
        // A link to itself cannot be opened (ELOOP), as a file cannot while the process
        // is out of descriptors.
        fs::remove_file(&pooled[0]).unwrap();
        std::os::unix::fs::symlink(&pooled[0], &pooled[0]).unwrap();
        assert!(pool.take().is_none());
        assert_eq!(fs::read_dir(&free).unwrap().count(), 0);
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
        assert!(!admin.put(&f, 1).unwrap());
        let pool = Recycler::open(&free, 8, true).unwrap();
        assert!(!free.join("7").exists());
        assert!(pool.take().is_none());
    }
}
