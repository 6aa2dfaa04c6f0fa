//! Group commit: one thread makes batches of new spool files durable together.
//!
//! Messages held in memory are handed over with their bytes and written here, so a store
//! costs one hand-off between threads rather than two (a blocking-pool write, then this
//! thread). For a batch it writes those files and renames each into its directory (queue or
//! quarantine). On Linux from 5.8 one `syncfs` then makes data and names durable together;
//! elsewhere each file is fsynced before the renames and each directory after them.
//! Every waiting `store` is answered only once its message is durable.

use super::recycle::{Recycler, Reused};
use super::SpoolError;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

struct Request {
    /// Bytes to write first (into a reused file, else a new `tmp`); `None` when `tmp` is
    /// already written.
    contents: Option<Vec<u8>>,
    /// Where the file is written: renamed to `target` once written.
    tmp: PathBuf,
    target: PathBuf,
    done: oneshot::Sender<Result<(), SpoolError>>,
}

impl Request {
    /// Answers the waiting store with what failed.
    fn fail(self, op: &'static str, path: PathBuf, source: io::Error) {
        let _ = self.done.send(Err(SpoolError::Io { op, path, source }));
    }
}

/// Sender side of the committer thread; the thread ends when this is dropped.
#[derive(Debug)]
pub(super) struct Committer {
    /// `None` only while dropping.
    tx: Option<std_mpsc::Sender<Request>>,
    /// Disconnected when the thread has ended (in a mutex only to be `Sync`).
    ended: std::sync::Mutex<std_mpsc::Receiver<()>>,
}

/// How long a dropped committer waits for its thread: a hung file system must not hold a
/// gateway's shutdown for ever.
const END_WAIT: Duration = Duration::from_secs(2);

impl Drop for Committer {
    /// Waits for the thread (at most one batch or `TOP_UP_STEP` pool files, and at most
    /// [`END_WAIT`]), so nothing writes in the spool directory once its spool is gone: a
    /// directory removed after its spool (a test's) would otherwise get pool files again
    /// under the remover's feet and be left behind.
    fn drop(&mut self) {
        drop(self.tx.take());
        let ended = self.ended.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = ended.recv_timeout(END_WAIT);
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("tmp", &self.tmp).finish()
    }
}

impl Committer {
    pub(super) fn start(spool_dir: &Path, recycler: Arc<Recycler>) -> io::Result<Committer> {
        let dir = File::open(spool_dir)?;
        let (tx, rx) = std_mpsc::channel::<Request>();
        let flush = Flush::chosen();
        let (ending, ended) = std_mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || {
                run(dir, rx, &recycler, flush);
                drop(ending);
            })?;
        Ok(Committer {
            tx: Some(tx),
            ended: std::sync::Mutex::new(ended),
        })
    }

    /// Renames `tmp` to `target` durably; resolves after the directory fsync.
    pub(super) async fn commit(&self, tmp: PathBuf, target: PathBuf) -> Result<(), SpoolError> {
        self.request(None, tmp, target).await
    }

    /// Writes `contents` to the new file `tmp`, then commits it like [`Committer::commit`].
    /// A failed write leaves nothing in `tmp`.
    pub(super) async fn write_and_commit(
        &self,
        contents: Vec<u8>,
        tmp: PathBuf,
        target: PathBuf,
    ) -> Result<(), SpoolError> {
        self.request(Some(contents), tmp, target).await
    }

    async fn request(
        &self,
        contents: Option<Vec<u8>>,
        tmp: PathBuf,
        target: PathBuf,
    ) -> Result<(), SpoolError> {
        let (done, wait) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(SpoolError::Stopped)?;
        tx.send(Request {
            contents,
            tmp,
            target,
            done,
        })
        .map_err(|_| SpoolError::Stopped)?;
        wait.await.map_err(|_| SpoolError::Stopped)?
    }
}

/// Spool files emptied or made per pass while the committer is idle: a store arriving
/// meanwhile waits for at most this many.
const TOP_UP_STEP: usize = 16;
/// How long without a store before the committer counts as idle. Between the batches of a
/// busy gateway it never is, so emptying and making files stays off the message path.
const QUIET: Duration = Duration::from_millis(200);
/// A pooled file still holding a delivered message this long is emptied at the next pause
/// between batches, even on a gateway that is never quiet.
const STALE: Duration = Duration::from_secs(2);

/// How a batch is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// One `syncfs` of the spool's file system after the renames.
    FileSystem,
    /// `syncfs`, then an fsync of each directory the files entered: before Linux 5.17
    /// `syncfs` reported the files' write-back errors but not those of the file system's
    /// own commit (the ext4 journal, the XFS log) that makes the new names durable, which
    /// a directory's fsync does report.
    FileSystemThenDirectories,
    /// Each file before the renames, each directory after them.
    EachFile,
}

impl Flush {
    /// `syncfs` where it reports write-back errors: Linux before 5.8 returned success for
    /// data that failed to reach the disk, so a message lost to an I/O error would have
    /// been answered 250.
    fn chosen() -> Flush {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if !cfg!(target_os = "linux") || !syncfs_reports_errors(&release) {
            Flush::EachFile
        } else if kernel_at_least(&release, (5, 17)) {
            Flush::FileSystem
        } else {
            Flush::FileSystemThenDirectories
        }
    }
}

/// Whether a Linux kernel of this release (`6.1.0-18-amd64`) reports write-back errors
/// from `syncfs` (5.8 and later). An unreadable release reads as too old.
fn syncfs_reports_errors(release: &str) -> bool {
    kernel_at_least(release, (5, 8))
}

/// Whether a Linux release (`6.1.0-18-amd64`) is `version` or later; an unreadable one
/// reads as older.
fn kernel_at_least(release: &str, version: (u32, u32)) -> bool {
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= version,
        _ => false,
    }
}

fn run(dir: File, rx: std_mpsc::Receiver<Request>, recycler: &Recycler, flush: Flush) {
    let mut quiet = false;
    loop {
        let first = match rx.try_recv() {
            Ok(r) => r,
            Err(std_mpsc::TryRecvError::Disconnected) => return,
            Err(std_mpsc::TryRecvError::Empty) => {
                if idle_work(recycler, quiet) {
                    continue;
                }
                // Quiet already: nothing left to do until the next store, or until a
                // delivery parks a file still holding its message (`put` does not wake
                // this thread), which must not linger in `free/` nor hold the space a
                // low disk needs (regression, review: an idle gateway kept delivered mail
                // there and refused all mail at `min_free_bytes` until restarted).
                let wait = if quiet { STALE } else { QUIET };
                match rx.recv_timeout(wait) {
                    Ok(r) => r,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        quiet = true;
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        quiet = false;
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        commit_batch(&dir, batch, recycler, flush);
    }
}

/// One step of the work done between batches; true when there was some (the channel is
/// checked again before the next step). Stale pooled files are emptied at any pause; once
/// the spool is quiet, every pooled file is, and new ones are made.
fn idle_work(recycler: &Recycler, quiet: bool) -> bool {
    if quiet {
        recycler.scrub(TOP_UP_STEP, Duration::ZERO) > 0 || recycler.top_up(TOP_UP_STEP) > 0
    } else {
        recycler.scrub(TOP_UP_STEP, STALE) > 0
    }
}

fn commit_batch(dir: &File, batch: Vec<Request>, recycler: &Recycler, flush: Flush) {
    let batch = write_files(batch, recycler);
    if batch.is_empty() {
        return;
    }
    if flush != Flush::EachFile {
        // One `syncfs` after the renames makes the files' data and the new directory
        // entries durable in one journal commit (data first, then names, then a directory
        // fsync would take two). Until it returns nobody is answered; a crash before can
        // leave an unacknowledged message in the queue, which is then delivered (the
        // at-least-once side that a crash between fsync and reply has anyway).
        let renamed = rename_all(batch);
        let mut synced = sync_file_system(dir);
        if flush == Flush::FileSystemThenDirectories && synced.is_ok() {
            // Cheap once the journal is committed, and it reports a journal that failed.
            synced = sync_dirs(renamed.iter().filter_map(|r| r.target.parent()));
        }
        answer(renamed, synced);
        return;
    }
    if let Err(e) = sync_each_file(&batch) {
        let path = batch.first().map(|r| r.tmp.clone()).unwrap_or_default();
        for r in batch {
            // Not answered, so no one's: a reused file (`free/N`) already left the pool's
            // list and would stay in `free/` unaccounted, holding the unacknowledged bytes.
            let _ = fs::remove_file(&r.tmp);
            r.fail(
                "fsync",
                path.clone(),
                io::Error::new(e.kind(), e.to_string()),
            );
        }
        return;
    }
    let renamed = rename_all(batch);
    // The folders a file left count too: on a file system whose rename across folders is
    // not atomic (ext2, ext4 without a journal) a crash could leave the name in both, and
    // recovery, which removes leftovers from `tmp/` and `free/`, would free the inode of a
    // message already answered 250.
    let synced = sync_dirs(
        renamed
            .iter()
            .flat_map(|r| [r.target.parent(), r.tmp.parent()])
            .flatten(),
    );
    answer(renamed, synced);
}

/// Fsyncs each of `dirs` once.
fn sync_dirs<'a>(dirs: impl Iterator<Item = &'a Path>) -> io::Result<()> {
    let mut dirs: Vec<&Path> = dirs.collect();
    dirs.sort();
    dirs.dedup();
    dirs.iter()
        .try_for_each(|p| File::open(p).and_then(|d| d.sync_all()))
}

/// Moves each file into its directory; answers the ones that fail and returns the rest.
fn rename_all(batch: Vec<Request>) -> Vec<Request> {
    let mut renamed = Vec::with_capacity(batch.len());
    for r in batch {
        match rename_no_replace(&r.tmp, &r.target) {
            Ok(()) => renamed.push(r),
            Err(source) => {
                let _ = fs::remove_file(&r.tmp);
                let target = r.target.clone();
                r.fail("rename", target, source);
            }
        }
    }
    renamed
}

/// Answers the renamed files once the flush that makes them durable is done. When it
/// failed, the renames may or may not be durable: they are undone so nothing
/// unacknowledged is delivered, and every store gets the error.
fn answer(renamed: Vec<Request>, synced: io::Result<()>) {
    match synced {
        Ok(()) => {
            for r in renamed {
                let _ = r.done.send(Ok(()));
            }
        }
        Err(e) => {
            for r in renamed {
                let _ = fs::remove_file(&r.target);
                let target = r.target.clone();
                r.fail("fsync", target, io::Error::new(e.kind(), e.to_string()));
            }
        }
    }
}

/// Writes the files handed over with their bytes, into recycled files while there are
/// some; answers the ones that fail (removing what they left) and returns the rest.
fn write_files(batch: Vec<Request>, recycler: &Recycler) -> Vec<Request> {
    let mut written = Vec::with_capacity(batch.len());
    for mut r in batch {
        let Some(contents) = r.contents.take() else {
            written.push(r);
            continue;
        };
        let result = match recycler.take() {
            Some(reused) => {
                r.tmp = reused.path.clone();
                write_over(reused, &contents)
            }
            None => super::write_new_file(&r.tmp, &contents, b""),
        };
        match result {
            Ok(()) => written.push(r),
            Err(source) => {
                let _ = fs::remove_file(&r.tmp);
                let tmp = r.tmp.clone();
                r.fail("write", tmp, source);
            }
        }
    }
    written
}

/// Writes `contents` over a reused file. A message that is read whole at delivery (up to
/// [`BODY_HEAD_BYTES`](super::BODY_HEAD_BYTES)) is written over the old bytes, its seal's
/// checksum catching any a crash left; a bigger one, streamed and so checked by length
/// only, goes into an emptied file.
fn write_over(mut reused: Reused, contents: &[u8]) -> io::Result<()> {
    let len = contents.len() as u64;
    if contents.len() > super::BODY_HEAD_BYTES && reused.old_len > 0 {
        reused.file.set_len(0)?;
    }
    reused.file.write_all(contents)?;
    if reused.old_len > len {
        reused.file.set_len(len)?;
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then). A queue id met twice
/// (two in one microsecond with the same random bits, or a clock stepped back over ids
/// still queued) must fail that store, never replace a message already accepted.
#[cfg(target_os = "linux")]
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from_c = CString::new(from.as_os_str().as_bytes())?;
    let to_c = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // A file system without the flag: the check and the rename are two steps there.
        Some(libc::EINVAL | libc::ENOSYS) => rename_unless_present(from, to),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    rename_unless_present(from, to)
}

fn rename_unless_present(from: &Path, to: &Path) -> io::Result<()> {
    if !super::surely_absent(to) {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

#[cfg(target_os = "linux")]
fn sync_file_system(dir: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // One syncfs covers every file of the batch (tmp/ is on the spool's file system).
    // SAFETY: the descriptor is valid for the lifetime of `dir`.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_file_system(_dir: &File) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "syncfs is Linux only",
    ))
}

fn sync_each_file(batch: &[Request]) -> io::Result<()> {
    for r in batch {
        File::open(&r.tmp)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncfs_is_trusted_from_linux_5_8() {
        assert!(syncfs_reports_errors("5.8.0\n"));
        assert!(syncfs_reports_errors("6.1.0-18-amd64"));
        assert!(syncfs_reports_errors("5.10.102.1-microsoft-standard-WSL2"));
        assert!(!syncfs_reports_errors("5.4.0-150-generic"));
        assert!(!syncfs_reports_errors("4.19.0"));
        assert!(!syncfs_reports_errors("3.10.0-1160.el7.x86_64"));
        assert!(!syncfs_reports_errors(""));
        assert!(!syncfs_reports_errors("garbage"));
        // Its own commit's errors too only from 5.17.
        assert!(kernel_at_least("5.17.0", (5, 17)));
        assert!(kernel_at_least("6.18.44-fc-v1252", (5, 17)));
        assert!(!kernel_at_least("5.15.0-91-generic", (5, 17)));
    }

    /// The per-file way (older kernels, other systems) commits as the `syncfs` way does.
    #[tokio::test]
    async fn both_ways_of_syncing_commit_a_batch() {
        for flush in [
            Flush::FileSystem,
            Flush::FileSystemThenDirectories,
            Flush::EachFile,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (tmp, queue) = (dir.path().join("tmp"), dir.path().join("queue"));
            fs::create_dir(&tmp).unwrap();
            fs::create_dir(&queue).unwrap();
            let recycler = Recycler::open(&dir.path().join("free"), 0, true).unwrap();
            let (done, answer) = oneshot::channel();
            let request = Request {
                contents: Some(b"message".to_vec()),
                tmp: tmp.join("A1"),
                target: queue.join("A1"),
                done,
            };
            let root = File::open(dir.path()).unwrap();
            commit_batch(&root, vec![request], &recycler, flush);
            answer.await.unwrap().unwrap();
            assert_eq!(fs::read(queue.join("A1")).unwrap(), b"message", "{flush:?}");
            assert!(!tmp.join("A1").exists());
        }
    }
}
