//! Group commit: one thread makes batches of new spool files durable together.
//!
//! Messages held in memory are handed over with their bytes and written here, so a store
//! costs one hand-off between threads rather than two (a blocking-pool write, then this
//! thread). For a batch it writes those files and renames each into its directory (queue or
//! quarantine). On Linux one `syncfs` then makes data and names durable together;
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
    tx: std_mpsc::Sender<Request>,
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
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(dir, rx, &recycler))?;
        Ok(Committer { tx })
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
        self.tx
            .send(Request {
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

fn run(dir: File, rx: std_mpsc::Receiver<Request>, recycler: &Recycler) {
    let mut quiet = false;
    loop {
        let first = match rx.try_recv() {
            Ok(r) => r,
            Err(std_mpsc::TryRecvError::Disconnected) => return,
            Err(std_mpsc::TryRecvError::Empty) => {
                if idle_work(recycler, quiet) {
                    continue;
                }
                // Quiet already: nothing left to do until the next store.
                let wait = if quiet { Duration::MAX } else { QUIET };
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
        commit_batch(&dir, batch, recycler);
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

fn commit_batch(dir: &File, batch: Vec<Request>, recycler: &Recycler) {
    let batch = write_files(batch, recycler);
    if batch.is_empty() {
        return;
    }
    if cfg!(target_os = "linux") {
        // One `syncfs` after the renames makes the files' data and the new directory
        // entries durable in one journal commit (data first, then names, then a directory
        // fsync would take two). Until it returns nobody is answered; a crash before can
        // leave an unacknowledged message in the queue, which is then delivered (the
        // at-least-once side that a crash between fsync and reply has anyway).
        let renamed = rename_all(batch);
        let synced = flush_data(dir, &renamed);
        answer(renamed, synced);
        return;
    }
    if let Err(e) = flush_data(dir, &batch) {
        let path = batch.first().map(|r| r.tmp.clone()).unwrap_or_default();
        for r in batch {
            r.fail(
                "fsync",
                path.clone(),
                io::Error::new(e.kind(), e.to_string()),
            );
        }
        return;
    }
    let renamed = rename_all(batch);
    let mut parents: Vec<PathBuf> = renamed
        .iter()
        .filter_map(|r| r.target.parent().map(Path::to_path_buf))
        .collect();
    parents.sort();
    parents.dedup();
    let synced = parents
        .iter()
        .try_for_each(|p| File::open(p).and_then(|d| d.sync_all()));
    answer(renamed, synced);
}

/// Moves each file into its directory; answers the ones that fail and returns the rest.
fn rename_all(batch: Vec<Request>) -> Vec<Request> {
    let mut renamed = Vec::with_capacity(batch.len());
    for r in batch {
        match fs::rename(&r.tmp, &r.target) {
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

#[cfg(target_os = "linux")]
fn flush_data(dir: &File, _batch: &[Request]) -> io::Result<()> {
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
fn flush_data(_dir: &File, batch: &[Request]) -> io::Result<()> {
    for r in batch {
        File::open(&r.tmp)?.sync_all()?;
    }
    Ok(())
}
