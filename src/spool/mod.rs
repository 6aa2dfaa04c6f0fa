//! Durable queue on disk: a message is acknowledged only once it survives a crash.
//!
//! Layout under the spool directory:
//! - `tmp/`   messages being written; anything here at start was never acknowledged and is removed;
//! - `queue/ID`        seal line, envelope JSON line, then the message bytes (never rewritten
//!   while queued; `seal.rs`);
//! - `queue/ID.state`  delivery state JSON, replaced atomically (write to `tmp/`, rename);
//! - `free/N`          files of delivered messages, written over by new ones (`recycle.rs`).
//!
//! `store` writes the file (a reused one from `free/`, else a new one in `tmp/`), renames
//! it into `queue/` and makes both durable before returning. Concurrent stores share the
//! expensive part (group commit, `commit.rs`): one committer thread flushes a whole batch
//! with one `syncfs`.

mod body;
mod capacity;
mod commit;
mod envelope;
mod map;
mod recycle;
mod seal;
mod spill;

pub use body::{BodyTail, BODY_HEAD_BYTES};
pub use capacity::{Capacity, CAPACITY_PROBE_LIMIT};
pub use envelope::{unix_now, DeliveryState, Envelope, FailedRecipient, QueueId, RcptStatus};
pub use map::Mapped;
pub use spill::{SpillFile, SpillReader};

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

const MAGIC: &str = "MXGUARD-SPOOL 1";

/// The text of a release's request to the running gateway (see [`FlushRequest`]).
const RELEASE_REQUEST: &[u8] = b"release\n";

/// What a request file (`flush-request` in the spool) asks of the running gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushRequest {
    /// `mxguard queue flush`: retry every queued message now.
    Flush,
    /// `mxguard quarantine release`: pick up the messages put into the queue; retrying
    /// every deferred one for it would be a retry storm.
    Release,
}

/// Spool failures; the session answers each with 452 4.3.1.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Any file-system operation failed.
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A queue file does not have the spool format.
    #[error("spool file {0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
    /// A message's delivery state file cannot be read as the state of that message; the
    /// message itself is intact.
    #[error("delivery state {0} is corrupt: {1}")]
    CorruptState(PathBuf, String),
    /// The committer thread is gone (shutting down).
    #[error("spool committer stopped")]
    Stopped,
    /// No such message.
    #[error("no message {0} in the queue")]
    NotFound(QueueId),
    /// No such message in quarantine.
    #[error("no message {0} in quarantine")]
    NotQuarantined(QueueId),
    /// An admin verb found no spool (or part of one) where the configuration says: it
    /// creates none, since one made by root (or in the wrong directory) would stop the
    /// gateway's user from opening it, or hide the real spool behind an empty one.
    #[error("no spool at {0} (missing {1}): the gateway makes it at its first start; check --config and spool.dir")]
    Missing(PathBuf, &'static str),
    /// Another gateway holds the spool (its `lock` file is locked).
    #[error("spool {0} is in use by another running gateway")]
    InUse(PathBuf),
    /// A release moved its message into the queue, then could not make that durable or
    /// ask the running gateway to pick it up (a release run again finds nothing to move).
    #[error("{0} is in the queue, but {1}: run `mxguard queue flush` once the spool works")]
    ReleasedUnannounced(QueueId, Box<SpoolError>),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A spooled message as read back for delivery or inspection.
#[derive(Debug, Clone)]
pub struct SpooledMessage {
    /// Its id.
    pub id: QueueId,
    /// Envelope fixed at acceptance.
    pub envelope: Envelope,
    /// Delivery bookkeeping.
    pub state: DeliveryState,
    /// The message bytes, CRLF line endings, not dot-stuffed: all of them, or (from
    /// [`Spool::open_message`]) the first ones, with the rest in `tail`.
    pub body: Vec<u8>,
    /// The bytes after `body` still on disk, streamed at delivery.
    pub tail: Option<BodyTail>,
}

/// Summary of one queued message for listings.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// Its id.
    pub id: QueueId,
    /// Envelope fixed at acceptance.
    pub envelope: Envelope,
    /// Delivery bookkeeping.
    pub state: DeliveryState,
    /// Size of the message bytes.
    pub size: u64,
}

/// Handle to the spool directory. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    tmp: PathBuf,
    queue: PathBuf,
    quarantine: PathBuf,
    committer: commit::Committer,
    recycler: Arc<recycle::Recycler>,
    ready: mpsc::UnboundedSender<QueueId>,
    /// A gateway's exclusive lock on `lock`, held while the spool is open: two gateways
    /// on one spool would each deliver the queue and wipe the other's files in `tmp/`.
    _lock: Option<fs::File>,
    /// Opened by an admin verb (`queue`, `quarantine`), which may run as another user
    /// than the gateway: the files it writes are handed to the spool's owner.
    admin: bool,
    /// The capacity probe running now (one at a time).
    capacity_probe: capacity::InFlight,
    /// The free space the last capacity probe measured.
    last_free: capacity::LastFree,
}

impl Spool {
    /// Opens (creating if needed) a spool; returns it with the channel on which every
    /// newly stored message id is announced, for the delivery scheduler.
    pub fn open(dir: &Path) -> Result<(Spool, mpsc::UnboundedReceiver<QueueId>), SpoolError> {
        Self::open_recycling(dir, crate::config::DEFAULT_RECYCLE_FILES)
    }

    /// [`Spool::open`] keeping up to `recycle_files` files of delivered messages
    /// for new ones (`spool.recycle_files`).
    pub fn open_recycling(
        dir: &Path,
        recycle_files: usize,
    ) -> Result<(Spool, mpsc::UnboundedReceiver<QueueId>), SpoolError> {
        Self::open_inner(dir, true, recycle_files)
    }

    /// Whether a running gateway holds the spool in `dir` (its lock is taken). Only a
    /// hint for an error message: the lock may be taken or let go right after.
    pub fn in_use(dir: &Path) -> bool {
        let Ok(file) = open_existing_lock_file(&dir.join("lock")) else {
            return false;
        };
        matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
    }

    /// Opens the spool of a gateway that may be running, for `mxguard queue`: files being
    /// written in `tmp/` are left alone.
    pub fn open_for_admin(dir: &Path) -> Result<Spool, SpoolError> {
        Self::open_inner(dir, false, 0).map(|(spool, _)| spool)
    }

    fn open_inner(
        dir: &Path,
        clean_tmp: bool,
        recycle_files: usize,
    ) -> Result<(Spool, mpsc::UnboundedReceiver<QueueId>), SpoolError> {
        let tmp = dir.join("tmp");
        let queue = dir.join("queue");
        let admin = !clean_tmp;
        if admin {
            for part in ["", "tmp", "queue", "quarantine", "free"] {
                let path = dir.join(part);
                match fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(SpoolError::Missing(dir.to_owned(), part_name(part))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(SpoolError::Missing(dir.to_owned(), part_name(part)))
                    }
                    Err(e) => return Err(io_err("stat", &path)(e)),
                }
            }
        }
        for d in [dir, &tmp, &queue] {
            private_dir(d).map_err(io_err("create", d))?;
        }
        let lock = if clean_tmp {
            Some(lock_spool(dir)?)
        } else {
            None
        };
        // Files left in tmp/ were never acknowledged to anyone.
        let leftovers = if clean_tmp {
            fs::read_dir(&tmp).map_err(io_err("read", &tmp))?.collect()
        } else {
            Vec::new()
        };
        for entry in leftovers {
            let path = entry.map_err(io_err("read", &tmp))?.path();
            let _ = fs::remove_file(&path);
        }
        let quarantine = dir.join("quarantine");
        private_dir(&quarantine).map_err(io_err("create", &quarantine))?;
        let free = dir.join("free");
        let recycler = recycle::Recycler::open(&free, recycle_files, clean_tmp)
            .map_err(io_err("open", &free))?;
        let recycler = Arc::new(recycler);
        let committer =
            commit::Committer::start(dir, recycler.clone()).map_err(io_err("open", dir))?;
        let (ready, ready_rx) = mpsc::unbounded_channel();
        Ok((
            Spool {
                dir: dir.to_owned(),
                tmp,
                queue,
                quarantine,
                committer,
                recycler,
                ready,
                _lock: lock,
                admin: !clean_tmp,
                capacity_probe: capacity::InFlight::default(),
                last_free: capacity::LastFree::default(),
            },
            ready_rx,
        ))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes a message durable and announces it for delivery. Returns only once the
    /// message file and its directory entry are on stable storage.
    pub async fn store(&self, envelope: &Envelope, message: &[u8]) -> Result<QueueId, SpoolError> {
        let id = QueueId::generate();
        self.store_as(&id, envelope, b"", message).await?;
        Ok(id)
    }

    /// Like [`Spool::store`] under an id chosen by the caller (who already named it in a
    /// `Received:` header), with `prefix` (such as that header) written before `message`.
    pub async fn store_as(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        prefix: &[u8],
        message: &[u8],
    ) -> Result<(), SpoolError> {
        self.store_unannounced(id, envelope, prefix, message)
            .await?;
        let _ = self.ready.send(id.clone());
        Ok(())
    }

    /// [`Spool::store_as`] without telling the delivery workers: the caller records what
    /// it stored first, then [`Spool::announce`]s it (a DSN delivered and removed before
    /// its original's state said it was queued would be queued again after a crash).
    pub async fn store_unannounced(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        prefix: &[u8],
        message: &[u8],
    ) -> Result<(), SpoolError> {
        self.write_durably(id, envelope, prefix, message, &self.queue)
            .await
    }

    /// Stores a message in the quarantine area instead of the delivery queue; same
    /// durability as [`Spool::store_as`].
    pub async fn quarantine_as(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        prefix: &[u8],
        message: &[u8],
    ) -> Result<(), SpoolError> {
        self.write_durably(id, envelope, prefix, message, &self.quarantine)
            .await
    }

    async fn write_durably(
        &self,
        id: &QueueId,
        envelope: &Envelope,
        prefix: &[u8],
        message: &[u8],
        dir: &Path,
    ) -> Result<(), SpoolError> {
        let tmp_path = self.tmp.join(id.as_str());
        let final_path = dir.join(id.as_str());
        let json = envelope_json(envelope)?;
        let seal = seal::Seal::of(id.as_str(), &json, &[prefix, message]);
        let mut bytes = encode_header(&json, Some(&seal));
        bytes.reserve(prefix.len() + message.len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(message);
        if let Err(e) = self
            .committer
            .write_and_commit(bytes, tmp_path.clone(), final_path)
            .await
        {
            // The committer removed what it wrote; a stop in between may have left a file.
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        Ok(())
    }

    /// Deletes quarantined messages put there more than `lifetime` before `now` (by the
    /// file's modification time: when it was quarantined); how many remain and how many
    /// went. Without it the quarantine, which takes most spam, grew until the disk was
    /// full and every message got 452.
    pub fn expire_quarantined(
        &self,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<(usize, usize), SpoolError> {
        let mut kept = 0;
        let mut removed = 0;
        for id in self.quarantined()? {
            let path = self.quarantine.join(id.as_str());
            let Ok(modified) = fs::metadata(&path).and_then(|m| m.modified()) else {
                continue;
            };
            let age = now.duration_since(modified).unwrap_or_default();
            if !lifetime.is_zero() && age > lifetime && fs::remove_file(&path).is_ok() {
                removed += 1;
            } else {
                kept += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.quarantine)?;
        }
        Ok((kept, removed))
    }

    /// Ids of quarantined messages, oldest first.
    pub fn quarantined(&self) -> Result<Vec<QueueId>, SpoolError> {
        list_ids(&self.quarantine)
    }

    /// The envelope of a quarantined message, read from the head of its file only (a
    /// listing of a full quarantine must not read gigabytes of message bodies).
    pub fn quarantined_envelope(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        let path = self.quarantine.join(id.as_str());
        self.envelope_at(&path, id)
            .map(|(envelope, _)| envelope)
            .map_err(|e| not_quarantined(e, id))
    }

    /// Reads a quarantined message.
    pub fn load_quarantined(&self, id: &QueueId) -> Result<SpooledMessage, SpoolError> {
        let (envelope, body) =
            read_message_file(&self.quarantine, id).map_err(|e| not_quarantined(e, id))?;
        let state = DeliveryState::new(envelope.rcpt_to.len());
        Ok(SpooledMessage {
            id: id.clone(),
            envelope,
            state,
            body,
            tail: None,
        })
    }

    /// Moves a quarantined message into the delivery queue (a rename: atomic, durable
    /// after the directory fsync) and asks the running gateway to pick it up.
    pub fn release(&self, id: &QueueId) -> Result<(), SpoolError> {
        let from = self.quarantine.join(id.as_str());
        let to = self.queue.join(id.as_str());
        // Its queue lifetime starts now: a message quarantined longer than
        // `max_queue_lifetime` ago would otherwise expire (silently: no DSN for mail
        // judged spam) at its first temporary failure. The state goes first; a crash
        // before the rename leaves it beside the quarantined message, which recovery
        // keeps and the next release overwrites.
        let _one_release_at_a_time = self.release_lock()?;
        let recipients = self
            .envelope_at(&from, id)
            .map_err(|e| not_quarantined(e, id))?
            .0
            .rcpt_to
            .len();
        // A message queued under the same id keeps its state: the rename below would be
        // refused, but only after the state was written over (review).
        if !surely_absent(&to) {
            return Err(io_err("rename", &from)(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )));
        }
        let mut state = DeliveryState::new(recipients);
        state.queued_since = Some(unix_now());
        self.save_state(id, &state)?;
        match commit::rename_no_replace(&from, &to) {
            Ok(()) => {}
            Err(e) => {
                // Never the state of a message already in the queue: its delivery reads it.
                if !to.exists() {
                    let _ = self.discard_state(id);
                }
                if e.kind() == io::ErrorKind::NotFound {
                    return Err(SpoolError::NotQuarantined(id.clone()));
                }
                return Err(io_err("rename", &from)(e));
            }
        }
        // The message is in the queue now: the request is placed whether or not the sync
        // worked, and a failure says what the operator has to do (a release run again
        // finds nothing to move, and the message would wait for a restart).
        // Both directories: a rename is not atomic on a file system without a journal,
        // and a crash could leave the name in both, a release run again then resetting
        // the state of recipients already served.
        let synced = self.sync_queue().and_then(|()| sync_dir(&self.quarantine));
        let _ = self.ready.send(id.clone());
        // A pending `queue flush` request is left as it is: it finds this message too.
        let placed = self.place_request(RELEASE_REQUEST, false);
        synced
            .and(placed)
            .map_err(|e| SpoolError::ReleasedUnannounced(id.clone(), Box::new(e)))
    }

    /// Held while a release moves a message (an advisory `flock`, gone with the process):
    /// two releases of one message at once (two operators, a script run twice) let the
    /// second, whose move then failed, remove the state the first one had just queued the
    /// message with, and the message expired silently at its first temporary failure.
    fn release_lock(&self) -> Result<fs::File, SpoolError> {
        let path = self.dir.join("release.lock");
        let mut file = open_lock_file(&path)?;
        // Handed to the spool's owner like the other files an admin verb writes, but
        // never removed when that fails (`hand_over` would): another release may hold it.
        if self.admin {
            use std::os::unix::fs::MetadataExt;
            let owner = fs::metadata(&self.dir).map_err(io_err("stat", &self.dir))?;
            // Opened without following a link (`open_lock_file`); a hard link to another
            // file is refused before its owner could change.
            (file, _) = own_plain_file(file).map_err(io_err("open", &path))?;
            let _ = std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()));
        }
        file.lock().map_err(io_err("lock", &path))?;
        Ok(file)
    }

    /// Puts a request for the running gateway in place whole (written aside, then linked
    /// or renamed), so the gateway never takes one half-written: an empty release request
    /// read as a flush retried every deferred message. `replace`: a request already there
    /// is replaced, else kept.
    fn place_request(&self, text: &[u8], replace: bool) -> Result<(), SpoolError> {
        let path = self.flush_request_path();
        let aside = self.tmp.join(format!("request.{}", QueueId::generate()));
        let written = write_new_file(&aside, &[], text)
            .and_then(|()| self.hand_over(&aside))
            .map_err(io_err("write", &aside));
        let placed = written.and_then(|()| {
            let placed = if replace {
                fs::rename(&aside, &path)
            } else {
                fs::hard_link(&aside, &path)
            };
            match placed {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    Err(io_err("write", &path)(e))
                }
                _ => Ok(()),
            }
        });
        let _ = fs::remove_file(&aside);
        placed
    }

    /// Moves a queue file that is not a message (see [`SpoolError::Corrupt`]) out of the
    /// queue into `corrupt/`, with its state, for a person to look at: left in place it was
    /// read again at every start, flush and release, and `queue list` failed on it.
    pub fn set_aside(&self, id: &QueueId) -> Result<PathBuf, SpoolError> {
        let corrupt = self.queue.with_file_name("corrupt");
        private_dir(&corrupt).map_err(io_err("create", &corrupt))?;
        let from = self.queue.join(id.as_str());
        let to = corrupt.join(id.as_str());
        fs::rename(&from, &to).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpoolError::NotFound(id.clone()),
            _ => io_err("rename", &from)(e),
        })?;
        let _ = self.discard_state(id);
        sync_dir(&corrupt)?;
        self.sync_queue()?;
        Ok(to)
    }

    /// Asks the running gateway to read the queue directory again (`mxguard queue
    /// delete`): it forgets deferred messages no longer there, so its queue gauges and
    /// console stop counting them. The same request a release places.
    pub fn request_listing(&self) -> Result<(), SpoolError> {
        self.place_request(RELEASE_REQUEST, false)
    }

    /// Asks the running gateway to retry every queued message now (`mxguard queue flush`);
    /// it supersedes a pending release request, which it covers.
    pub fn request_flush(&self) -> Result<(), SpoolError> {
        self.place_request(b"flush\n", true)
    }

    /// Takes the pending request, if any. Taken by a rename, so a request written while
    /// this one is read is not lost; any text but a release's asks for a flush.
    pub fn take_flush_request(&self) -> Option<FlushRequest> {
        let path = self.flush_request_path();
        let taken = path.with_extension("taken");
        match fs::rename(&path, &taken) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot take flush request");
                return Some(FlushRequest::Flush);
            }
        }
        let text = fs::read(&taken).unwrap_or_default();
        let _ = fs::remove_file(&taken);
        if text.trim_ascii() == RELEASE_REQUEST.trim_ascii() {
            Some(FlushRequest::Release)
        } else {
            Some(FlushRequest::Flush)
        }
    }

    /// Deletes a quarantined message, durably (it must not come back after a crash).
    pub fn delete_quarantined(&self, id: &QueueId) -> Result<(), SpoolError> {
        let path = self.quarantine.join(id.as_str());
        fs::remove_file(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpoolError::NotQuarantined(id.clone()),
            _ => io_err("remove", &path)(e),
        })?;
        sync_dir(&self.quarantine)
    }

    /// Announces an existing queued message for delivery again (e.g. after `flush`).
    pub fn announce(&self, id: QueueId) {
        let _ = self.ready.send(id);
    }

    /// Ids of every message in the queue, oldest first.
    pub fn ids(&self) -> Result<Vec<QueueId>, SpoolError> {
        list_ids(&self.queue)
    }

    /// Whether message `id` is in the delivery queue.
    pub fn holds(&self, id: &QueueId) -> bool {
        self.queue.join(id.as_str()).exists()
    }

    /// Reads a whole message with its state.
    pub fn load(&self, id: &QueueId) -> Result<SpooledMessage, SpoolError> {
        let (envelope, body) = read_message_file(&self.queue, id)?;
        let state = self.read_state(id, &envelope)?;
        Ok(SpooledMessage {
            id: id.clone(),
            envelope,
            state,
            body,
            tail: None,
        })
    }

    /// Reads the envelope and state of a message without keeping its body.
    pub fn entry(&self, id: &QueueId) -> Result<QueueEntry, SpoolError> {
        let path = self.queue.join(id.as_str());
        let (envelope, size) = self.envelope_at(&path, id)?;
        let state = self.read_state(id, &envelope)?;
        Ok(QueueEntry {
            id: id.clone(),
            envelope,
            state,
            size,
        })
    }

    fn read_state(&self, id: &QueueId, envelope: &Envelope) -> Result<DeliveryState, SpoolError> {
        let path = self.state_path(id);
        let state: DeliveryState = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| SpoolError::CorruptState(path.clone(), e.to_string()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(DeliveryState::new(envelope.rcpt_to.len()))
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        if state.rcpt_status.len() != envelope.rcpt_to.len() {
            return Err(SpoolError::CorruptState(
                path,
                format!(
                    "{} recipient statuses for {} recipients",
                    state.rcpt_status.len(),
                    envelope.rcpt_to.len()
                ),
            ));
        }
        Ok(state)
    }

    /// Deletes a message's delivery state (one that cannot be read): the message is then
    /// tried again for every recipient, the one way on from there that loses no mail.
    pub fn discard_state(&self, id: &QueueId) -> Result<(), SpoolError> {
        let path = self.state_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Replaces the delivery state of a message atomically and durably. A failed save
    /// (disk full) leaves the previous state in place and nothing behind in `tmp/`.
    /// Blocking (two fsyncs): call it off the async threads.
    pub fn save_state(&self, id: &QueueId, state: &DeliveryState) -> Result<(), SpoolError> {
        let path = self.state_path(id);
        let tmp = self.tmp.join(format!("{id}.state"));
        let json = serde_json::to_vec(state)
            .map_err(|e| SpoolError::Corrupt(path.clone(), e.to_string()))?;
        // A file left by an earlier failed save would make the exclusive create below fail
        // for this message until the next restart.
        let _ = fs::remove_file(&tmp);
        // The file is synced before the rename, so a crash leaves the old state or the
        // new one, never an empty file (a first save renames to a new name, which
        // delayed allocation does not guard); the directory after it, so a state that
        // says who already has the message is not forgotten, which would deliver to
        // them again.
        let saved = write_new_file(&tmp, &[], &json)
            .and_then(|()| self.hand_over(&tmp))
            .and_then(|()| fs::File::open(&tmp).and_then(|f| f.sync_all()))
            .map_err(io_err("write", &tmp))
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err("rename", &path)))
            .and_then(|()| self.sync_queue());
        if saved.is_err() {
            // On a full disk the create succeeds and the write fails: without this, every
            // failed attempt leaves an empty `tmp/ID.state`.
            let _ = fs::remove_file(&tmp);
        }
        saved
    }

    /// Removes the delivery state of a message no longer in the queue: `queue delete`
    /// during a delivery removed the message (then its state) while the attempt ran, and
    /// the attempt's deferral saved a state after that, an orphan until the next start.
    /// Called after that save: either the delete's own removal of the state came later,
    /// or the message file is already gone here. Returns whether it was gone.
    pub fn drop_state_if_deleted(&self, id: &QueueId) -> Result<bool, SpoolError> {
        let message = self.queue.join(id.as_str());
        match fs::symlink_metadata(&message) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.discard_state(id).map(|()| true),
            Err(e) => Err(io_err("stat", &message)(e)),
        }
    }

    /// Gives a file an admin verb wrote to the spool directory's owner, when they differ:
    /// run as root (`sudo mxguard quarantine release`), a release's state file was
    /// root's, mode 0600, and the gateway could never read it, so the message stayed
    /// queued for good. A user who may not hand it over (neither root nor the owner) is
    /// refused before anything is in place.
    fn hand_over(&self, path: &Path) -> io::Result<()> {
        if !self.admin {
            return Ok(());
        }
        give_to_owner_of(&self.dir, path)
    }

    /// Removes a message once every recipient is settled (its file moved into the
    /// recycling pool, or deleted). The message file goes first: a crash in between leaves
    /// only a state file, which `recover` discards.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let path = self.queue.join(id.as_str());
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.clone()))
            }
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        // A full pool, or a file that could not be moved into it, is deleted. So is a file
        // without a seal (see `is_sealed`).
        if !is_sealed(&path) || !self.recycler.put(&path, len).unwrap_or(false) {
            fs::remove_file(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => SpoolError::NotFound(id.clone()),
                _ => io_err("remove", &path)(e),
            })?;
        }
        let _ = fs::remove_file(self.state_path(id));
        Ok(())
    }

    /// The envelope and message size of the file at `path` (message `id`), read from its
    /// head only. A message delivered or recycled since it was listed is not found, not
    /// unreadable (`queue list` would say "unreadable" and exit 1).
    fn envelope_at(&self, path: &Path, id: &QueueId) -> Result<(Envelope, u64), SpoolError> {
        self.body_size(path).map_err(|e| match e {
            SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                SpoolError::NotFound(id.clone())
            }
            other => other,
        })
    }

    /// Makes the queue directory's entries durable (a removal, most of all). Blocking.
    pub fn sync_queue(&self) -> Result<(), SpoolError> {
        sync_dir(&self.queue)
    }

    /// Deletes orphaned state files and removes messages settled before a crash whose DSN
    /// is queued (see [`DeliveryState::bounce`]); returns the ids of messages waiting for
    /// delivery.
    pub fn recover(&self) -> Result<Vec<QueueId>, SpoolError> {
        let mut ids = self.ids()?;
        // Tidying only: an entry that cannot be read is left for the next start, not a
        // reason to lose the list of messages to deliver.
        let Ok(entries) = fs::read_dir(&self.queue) else {
            return Ok(ids);
        };
        let mut bounced = Vec::new();
        for path in entries.flatten().map(|e| e.path()) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".state") else {
                continue;
            };
            // A release writes the state before it moves the message out of the
            // quarantine: a state whose message is still there is a release under way
            // (or cut short, which the next release overwrites). Looked for in the order
            // the message moves, so a release between the two looks finds it in one; a
            // look that fails for another reason than absence finds it too.
            let orphan =
                surely_absent(&self.quarantine.join(stem)) && surely_absent(&self.queue.join(stem));
            if orphan {
                let _ = fs::remove_file(&path);
            } else if let Some(id) = self.bounced_before(stem, &path) {
                bounced.push(id);
            }
        }
        for id in &bounced {
            if self.remove(id).is_ok() {
                tracing::info!(queue_id = %id, "settled and bounced before the restart; removed");
                ids.retain(|queued| queued != id);
            }
        }
        if !bounced.is_empty() {
            self.sync_queue()?;
        }
        Ok(ids)
    }

    /// The queued message `stem` when its state at `path` says every recipient is settled
    /// and its DSN is stored (in the queue, or delivered since: the state says so): a crash
    /// or a failed removal came between storing the DSN and removing the message.
    fn bounced_before(&self, stem: &str, path: &Path) -> Option<QueueId> {
        let id = QueueId::parse(stem)?;
        let state: DeliveryState = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        let bounce = state.bounce.as_ref().filter(|b| **b != id)?;
        let settled = state.pending().next().is_none();
        // The DSN's file is read last, and only for a settled message still queued.
        (settled && self.holds(&id) && self.dsn_stored(&state, bounce) == Some(true)).then_some(id)
    }

    /// Whether the DSN `bounce` of a message in `state` is stored: delivered since (the
    /// state says so), or held whole in the queue ([`Spool::holds_whole`]); `None` when
    /// that cannot be told now.
    pub fn dsn_stored(&self, state: &DeliveryState, bounce: &QueueId) -> Option<bool> {
        if state.dsn_queued {
            return Some(true);
        }
        self.holds_whole(bounce)
    }

    /// Whether the queue holds message `id` whole, not only its name: its envelope reads,
    /// and its seal names it and matches its length and checksum (the whole file is read,
    /// on this thread: meant for DSNs, which are small). A power loss while it was
    /// written can leave the name over a recycled file's old bytes, or over none, or a
    /// new head over an old tail (review: such a DSN was taken as stored, and its bounced
    /// message removed). `None` when that cannot be told now (an I/O error).
    fn holds_whole(&self, id: &QueueId) -> Option<bool> {
        match self
            .open_message(id)
            .and_then(|msg| self.check_seal_now(&msg))
        {
            Ok(()) => Some(true),
            Err(SpoolError::NotFound(_) | SpoolError::Corrupt(..)) => Some(false),
            Err(_) => None,
        }
    }

    /// Path of the file whose presence asks a running gateway to retry everything now.
    pub fn flush_request_path(&self) -> PathBuf {
        self.dir.join("flush-request")
    }

    fn state_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.state"))
    }
}

/// Whether `path` is known not to exist (an error other than "not found" leaves it open).
fn surely_absent(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Whether `path` is a format-1 file with a seal: only such a file may be recycled. One
/// without (written as it arrived, format 2, or by an earlier release), were a crash to
/// leave its old bytes under the name of the message written over it, would read as a
/// valid message and be delivered again.
fn is_sealed(path: &Path) -> bool {
    use std::io::Read;
    // The seal is on the first line, within the first hundred bytes.
    let mut head = Vec::with_capacity(256);
    let read = fs::File::open(path).and_then(|f| f.take(256).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    let Some(rest) = head.strip_prefix(MAGIC.as_bytes()) else {
        return false;
    };
    let Some(end) = memchr::memchr(b'\n', rest) else {
        return false;
    };
    matches!(seal::Seal::parse(&rest[..end]), Some(Some(_)))
}

/// A message missing from quarantine is reported as such, not as missing from the queue.
fn not_quarantined(e: SpoolError, id: &QueueId) -> SpoolError {
    match e {
        SpoolError::NotFound(_) => SpoolError::NotQuarantined(id.clone()),
        other => other,
    }
}

/// Reads `dir/ID` and splits it into envelope and message bytes.
fn read_message_file(dir: &Path, id: &QueueId) -> Result<(Envelope, Vec<u8>), SpoolError> {
    use std::io::Read as _;
    let path = dir.join(id.as_str());
    let not_found = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.clone()),
        _ => io_err("read", &path)(e),
    };
    let mut file = fs::File::open(&path).map_err(not_found)?;
    let opened = file.metadata().map_err(not_found)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(not_found)?;
    let decoded = if bytes.starts_with(spill::MAGIC2) {
        spill::decode(&path, &bytes)
    } else {
        decode_header(&path, &bytes, bytes.len() as u64).map(|(envelope, offset, _)| {
            bytes.drain(..offset);
            (envelope, std::mem::take(&mut bytes))
        })
    };
    match decoded {
        Err(e) if gone_since_opened(&e, &path, &opened) => Err(SpoolError::NotFound(id.clone())),
        other => other,
    }
}

/// Whether `e`, a read of the file at `path` opened as `opened`, failed because the file
/// is no longer the one there. The gateway recycles a delivered message's file for a later
/// message (`recycle`): a reader that opened it before reads the later message's bytes,
/// which fail the seal, while the message it asked for was only delivered.
fn gone_since_opened(e: &SpoolError, path: &Path, opened: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    matches!(e, SpoolError::Corrupt(..))
        && !fs::metadata(path)
            .is_ok_and(|now| now.dev() == opened.dev() && now.ino() == opened.ino())
}

fn list_ids(queue: &Path) -> Result<Vec<QueueId>, SpoolError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(queue).map_err(io_err("read", queue))? {
        let entry = entry.map_err(io_err("read", queue))?;
        if let Some(id) = entry.file_name().to_str().and_then(QueueId::parse) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// The envelope line of a format-1 file, without its newline.
fn envelope_json(envelope: &Envelope) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(envelope).map_err(|e| SpoolError::Corrupt(PathBuf::new(), e.to_string()))
}

/// The magic line with `seal`, then the envelope line `json`.
fn encode_header(json: &[u8], seal: Option<&seal::Seal>) -> Vec<u8> {
    let seal = seal.map(seal::Seal::encode).unwrap_or_default();
    let mut header = Vec::with_capacity(json.len() + MAGIC.len() + seal.len() + 2);
    header.extend_from_slice(MAGIC.as_bytes());
    header.extend_from_slice(seal.as_bytes());
    header.push(b'\n');
    header.extend_from_slice(json);
    header.push(b'\n');
    header
}

/// A format-1 header split: what follows the magic on the first line (the seal), the
/// envelope line, and where the message bytes start. `None` until `bytes` holds both lines.
fn header_parts(bytes: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let rest = bytes.strip_prefix(MAGIC.as_bytes())?;
    let first = memchr::memchr(b'\n', rest)?;
    let envelope = &rest[first + 1..];
    let nl = memchr::memchr(b'\n', envelope)?;
    Some((
        &rest[..first],
        &envelope[..nl],
        MAGIC.len() + first + 1 + nl + 1,
    ))
}

/// Where the envelope line of a format-1 file ends (just past its newline), once `bytes`
/// holds it.
pub(super) fn header_end(bytes: &[u8]) -> Option<usize> {
    header_parts(bytes).map(|(_, _, end)| end)
}

/// The envelope of a format-1 file of `file_len` bytes whose start is `bytes`, where its
/// message bytes start, and its seal when the checksum is still to be checked: the seal,
/// if any, is checked, its checksum only when `bytes` is the whole file.
fn decode_header(
    path: &Path,
    bytes: &[u8],
    file_len: u64,
) -> Result<(Envelope, usize, Option<seal::Seal>), SpoolError> {
    let corrupt = |m: &str| SpoolError::Corrupt(path.to_owned(), m.to_owned());
    if !bytes.starts_with(MAGIC.as_bytes()) {
        return Err(corrupt("bad magic"));
    }
    let (seal, json, offset) = header_parts(bytes).ok_or_else(|| corrupt("no envelope line"))?;
    let seal = seal::Seal::parse(seal).ok_or_else(|| corrupt("bad magic line"))?;
    if let Some(seal) = &seal {
        seal.check_envelope(path, json)?;
    }
    let envelope: Envelope = serde_json::from_slice(json).map_err(|e| corrupt(&e.to_string()))?;
    let mut unchecked = None;
    if let Some(seal) = seal {
        let whole = (bytes.len() as u64 >= file_len).then(|| &bytes[offset..]);
        seal.check(path, file_len.saturating_sub(offset as u64), whole)?;
        if whole.is_none() {
            unchecked = Some(seal);
        }
    }
    Ok((envelope, offset, unchecked))
}

/// Makes the entries of directory `dir` durable (a rename, a create or a delete in it).
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Creates a spool directory (and its missing parents) readable by the gateway's user
/// alone: it holds other people's mail, whatever the umask of whoever started it.
pub(super) fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Gives `path`, a file an admin verb just made in (or below) the spool directory `dir`,
/// to that directory's owner, the gateway's user, when they differ; removes it when that
/// is not allowed (neither root nor the owner), so nothing the gateway cannot read is left.
///
/// The directory is the gateway user's, so whoever runs as that user could put a symbolic
/// or hard link to `/etc/shadow` at `path` before the change of owner (review): the file is
/// opened without following a link and changed through that descriptor, and only when it
/// is a plain file with no other name.
pub fn give_to_owner_of(dir: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(dir)?;
    let file = open_no_follow(path)?;
    let (file, meta) = match own_plain_file(file) {
        Ok(found) => found,
        Err(e) => {
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    // The owner's own files are readable to the gateway whatever their group (the owner
    // may not be in the directory's group, and could not change to it).
    if owner.uid() == meta.uid() {
        return Ok(());
    }
    std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid())).map_err(|e| {
        let _ = fs::remove_file(path);
        io::Error::new(
            e.kind(),
            format!(
                "{e}: run this as the spool's owner (uid {}), the gateway's user",
                owner.uid()
            ),
        )
    })
}

/// Opens `path` for reading without following a symbolic link in its last component, nor
/// waiting on a FIFO put there.
fn open_no_follow(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// `file` when it is a plain file with one name: not a device, a FIFO, or a hard link to
/// a file elsewhere, whose owner an admin verb must never change.
fn own_plain_file(file: fs::File) -> io::Result<(fs::File, fs::Metadata)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not the plain file this command wrote (a link or a special file was put there)",
        ));
    }
    Ok((file, meta))
}

/// How [`SpoolError::Missing`] names a missing part of the spool.
fn part_name(part: &'static str) -> &'static str {
    if part.is_empty() {
        "the directory itself"
    } else {
        part
    }
}

/// Takes the spool's `lock` file for this process (an advisory `flock`, released when the
/// process ends, however it ends), or says the spool is in use.
fn lock_spool(dir: &Path) -> Result<fs::File, SpoolError> {
    let path = dir.join("lock");
    let file = open_lock_file(&path)?;
    match try_for_a_moment(|| file.try_lock()) {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::InUse(dir.to_owned())),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// Tries to take a lock a few times while someone else holds it: [`Spool::in_use`] takes
/// the lock for an instant to look at it, and a gateway starting in that instant must not
/// give up (review).
fn try_for_a_moment(
    mut try_lock: impl FnMut() -> Result<(), fs::TryLockError>,
) -> Result<(), fs::TryLockError> {
    for pause in LOCK_RETRY_PAUSES {
        match try_lock() {
            Err(fs::TryLockError::WouldBlock) => std::thread::sleep(pause),
            done => return done,
        }
    }
    try_lock()
}

/// The pauses between tries of a spool's lock held by someone else (see [`lock_spool`]).
const LOCK_RETRY_PAUSES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// Opens (creating it, never truncating it) a file only locked, never written; never
/// through a symbolic link, which whoever runs as the gateway's user could put there for
/// an admin verb run as root to open.
fn open_lock_file(path: &Path) -> Result<fs::File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("open", path))
}

/// Opens an existing lock file to probe it: never creating it (a probe leaves no trace)
/// nor through a symbolic link.
fn open_existing_lock_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Opens for a new spool file: readable and writable by the gateway's user alone.
pub(super) fn private_file() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.mode(0o600);
    options
}

/// Creates `path` exclusively and writes both parts; durability is the committer's job.
pub(super) fn write_new_file(path: &Path, header: &[u8], body: &[u8]) -> io::Result<()> {
    let mut f = private_file().write(true).create_new(true).open(path)?;
    f.write_all(header)?;
    f.write_all(body)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            mail_from: "a@example.org".into(),
            rcpt_to: vec!["b@example.test".into(), "c@example.test".into()],
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "mx.example.org".into(),
            received_at: 1,
            body_8bit: false,
            smtputf8: false,
            verdict: "accept".into(),
            score: 0.0,
            is_dsn: false,
            rules: Vec::new(),
        }
    }

    /// Regression: `queue show` of a message delivered while it read said "corrupt": the
    /// file it had opened was recycled for a later message, whose seal names another id.
    #[test]
    fn a_file_recycled_while_read_is_gone_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ID");
        std::fs::write(&path, b"first").unwrap();
        let opened = std::fs::metadata(&path).unwrap();
        let corrupt = SpoolError::Corrupt(path.clone(), "sealed for another id".into());
        assert!(
            !gone_since_opened(&corrupt, &path, &opened),
            "still there: corrupt"
        );
        let later = dir.path().join("later");
        std::fs::write(&later, b"later").unwrap();
        std::fs::rename(&later, &path).unwrap();
        assert!(
            gone_since_opened(&corrupt, &path, &opened),
            "replaced: gone"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(gone_since_opened(&corrupt, &path, &opened), "removed: gone");
        let other = SpoolError::NotFound(QueueId::generate());
        assert!(
            !gone_since_opened(&other, &path, &opened),
            "only a corrupt read is explained"
        );
    }

    /// Regression (review): a gateway starting while `quarantine release` ran (state
    /// written, message not yet moved) deleted the state as an orphan: the message's
    /// queue lifetime then counted from its arrival, and one quarantined longer than
    /// `max_queue_lifetime` expired, without a DSN, at its first temporary failure.
    #[tokio::test]
    async fn recovery_spares_the_state_of_a_release_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = QueueId::generate();
        spool
            .quarantine_as(&id, &envelope(), b"", b"Subject: held\r\n\r\nbody\r\n")
            .await
            .unwrap();
        let mut state = DeliveryState::new(2);
        state.queued_since = Some(unix_now());
        spool.save_state(&id, &state).unwrap();
        let orphan = QueueId::generate();
        spool.save_state(&orphan, &state).unwrap();
        assert!(spool.recover().unwrap().is_empty());
        assert!(spool.state_path(&id).exists());
        assert!(!spool.state_path(&orphan).exists());
    }

    /// Regression (review of the fix): `holds_whole` checked a message longer than what
    /// opening reads (64 KiB) by its seal's id and length only, so a DSN whose new head a
    /// power loss left over an old tail of the same length read as whole.
    #[tokio::test]
    async fn a_message_whole_only_up_to_its_head_is_not_held_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let mut message = b"Subject: long\r\n\r\n".to_vec();
        message.extend(std::iter::repeat_n(b'x', 200_000));
        message.extend_from_slice(b"\r\n");
        let id = QueueId::generate();
        spool
            .store_as(&id, &envelope(), b"", &message)
            .await
            .unwrap();
        assert_eq!(spool.holds_whole(&id), Some(true));
        let path = spool.queue.join(id.as_str());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 1000;
        bytes[at] = b'y';
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(spool.holds_whole(&id), Some(false));
        assert_eq!(spool.holds_whole(&QueueId::generate()), Some(false));
    }

    /// Regression (review): two releases of one message at once: the second, whose move
    /// failed (the first had moved it), removed the state the first had queued it with.
    /// Releases now take turns, and a failed move never removes the state of a message
    /// that is in the queue.
    #[tokio::test]
    async fn releases_of_one_message_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let spool = Arc::new(spool);
        let id = QueueId::generate();
        spool
            .quarantine_as(&id, &envelope(), b"", b"Subject: held\r\n\r\nbody\r\n")
            .await
            .unwrap();
        // A release under way elsewhere holds the lock.
        let held = spool.release_lock().unwrap();
        let (other, other_id) = (spool.clone(), id.clone());
        let second = std::thread::spawn(move || other.release(&other_id));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !second.is_finished(),
            "a release ran while another held the lock"
        );
        drop(held);
        second.join().unwrap().unwrap();
        let again = spool.release(&id);
        assert!(
            matches!(again, Err(SpoolError::NotQuarantined(_))),
            "{again:?}"
        );
        assert!(
            spool.state_path(&id).exists(),
            "the queued message lost its state"
        );
        assert!(spool.queue.join(id.as_str()).exists());
    }

    /// Regression (review): a bounced message whose removal failed (EIO) stayed queued;
    /// once its DSN had been delivered (and left the queue), the next start settled it
    /// again and sent the sender a second DSN. The state now records that the DSN is
    /// stored, and recovery removes such a message.
    #[tokio::test]
    async fn a_message_whose_dsn_went_out_is_not_bounced_again() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = spool
            .store(&envelope(), b"Subject: x\r\n\r\nbody\r\n")
            .await
            .unwrap();
        let mut state = DeliveryState::new(2);
        state.rcpt_status = vec![RcptStatus::Failed, RcptStatus::Delivered];
        state.bounce = Some(QueueId::generate());
        spool.save_state(&id, &state).unwrap();
        // The DSN is not in the queue (delivered, or never stored): without the record,
        // the message is delivered (bounced) again.
        assert_eq!(spool.recover().unwrap(), vec![id.clone()]);
        state.dsn_queued = true;
        spool.save_state(&id, &state).unwrap();
        assert!(spool.recover().unwrap().is_empty());
        assert!(!spool.holds(&id));
    }

    /// Regression (review): nothing kept two gateways off one spool (two containers on one
    /// volume): both delivered the queue, and each start wiped the other's `tmp/` files.
    #[tokio::test]
    async fn a_spool_in_use_by_a_gateway_is_refused_to_a_second() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Spool::in_use(dir.path()), "no spool yet");
        assert!(
            !dir.path().join("lock").exists(),
            "the probe made a lock file"
        );
        let (first, _rx) = Spool::open(dir.path()).unwrap();
        assert!(Spool::in_use(dir.path()));
        let mut file = first.create_spill().await.unwrap();
        file.append(b"Subject: x\r\n\r\nin flight\r\n".to_vec())
            .await
            .unwrap();
        assert!(matches!(Spool::open(dir.path()), Err(SpoolError::InUse(_))));
        assert!(fs::read_dir(dir.path().join("tmp")).unwrap().count() > 0);
        // `mxguard queue` and `quarantine` still work beside the running gateway.
        assert!(Spool::open_for_admin(dir.path()).is_ok());
        drop(file);
        drop(first);
        assert!(!Spool::in_use(dir.path()));
        assert!(Spool::open(dir.path()).is_ok());
    }

    /// Regression (review): a gateway starting while another process's
    /// [`Spool::in_use`] held the lock for its look refused to start, as if the spool
    /// were in use; it tries again for a moment first.
    #[test]
    fn a_lock_held_for_a_moment_is_tried_again() {
        let mut held_for = 2;
        let taken = try_for_a_moment(|| {
            if held_for == 0 {
                return Ok(());
            }
            held_for -= 1;
            Err(fs::TryLockError::WouldBlock)
        });
        assert!(taken.is_ok(), "{taken:?}");
        let mut tries = 0;
        let refused = try_for_a_moment(|| {
            tries += 1;
            Err(fs::TryLockError::WouldBlock)
        });
        assert!(matches!(refused, Err(fs::TryLockError::WouldBlock)));
        assert_eq!(
            tries,
            LOCK_RETRY_PAUSES.len() + 1,
            "a bounded number of tries"
        );
    }

    #[tokio::test]
    async fn stored_message_reads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut ready) = Spool::open(dir.path()).unwrap();
        let body = b"Subject: x\r\n\r\nhello\r\n".to_vec();
        let id = spool.store(&envelope(), &body).await.unwrap();
        assert_eq!(ready.recv().await, Some(id.clone()));
        let m = spool.load(&id).unwrap();
        assert_eq!(m.body, body);
        assert_eq!(m.envelope, envelope());
        assert_eq!(m.state, DeliveryState::new(2));
    }

    /// Regression (review): spool files and directories took their mode from the umask, so
    /// a gateway started by hand (umask 022) kept everyone's mail readable by every local
    /// user.
    #[tokio::test]
    async fn spool_files_and_directories_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: umask only sets the process's file creation mask; 022 is the usual one.
        unsafe { libc::umask(0o022) };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let (spool, _rx) = Spool::open(&root).unwrap();
        let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
        spool.save_state(&id, &DeliveryState::new(2)).unwrap();
        let mut spill = spool.create_spill().await.unwrap();
        spill.append(b"spilled\r\n".to_vec()).await.unwrap();
        let mut paths = vec![
            root.clone(),
            root.join("queue"),
            root.join("tmp"),
            root.join("quarantine"),
            root.join("free"),
            root.join("queue").join(id.as_str()),
            root.join("queue").join(format!("{id}.state")),
        ];
        paths.extend(
            fs::read_dir(root.join("tmp"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
        assert!(paths.len() > 7, "no spill file in tmp/");
        for path in paths {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
    }

    /// Regression (review): nothing ever left the quarantine, which takes most spam: it
    /// grew until the disk was full and every message got 452.
    #[tokio::test]
    async fn quarantined_messages_past_their_lifetime_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let (old, new) = (QueueId::generate(), QueueId::generate());
        for id in [&old, &new] {
            spool
                .quarantine_as(id, &envelope(), b"", b"Subject: spam\r\n\r\nbuy\r\n")
                .await
                .unwrap();
        }
        let now = SystemTime::now();
        let forty_days = Duration::from_secs(40 * 86_400);
        fs::File::options()
            .write(true)
            .open(dir.path().join("quarantine").join(old.as_str()))
            .unwrap()
            .set_modified(now - forty_days)
            .unwrap();
        let month = Duration::from_secs(30 * 86_400);
        assert_eq!(
            spool.expire_quarantined(Duration::ZERO, now).unwrap(),
            (2, 0)
        );
        assert_eq!(spool.expire_quarantined(month, now).unwrap(), (1, 1));
        assert_eq!(spool.quarantined().unwrap(), vec![new]);
    }

    #[tokio::test]
    async fn state_survives_reopen_and_removal_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let (spool, _rx) = Spool::open(dir.path()).unwrap();
            let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
            let mut st = DeliveryState::new(2);
            st.rcpt_status[0] = RcptStatus::Delivered;
            st.attempts = 1;
            spool.save_state(&id, &st).unwrap();
            id
        };
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.recover().unwrap(), vec![id.clone()]);
        let m = spool.load(&id).unwrap();
        assert_eq!(m.state.attempts, 1);
        assert_eq!(m.state.pending().collect::<Vec<_>>(), vec![1]);
        spool.remove(&id).unwrap();
        assert!(spool.ids().unwrap().is_empty());
        assert!(matches!(spool.load(&id), Err(SpoolError::NotFound(_))));
    }

    /// Whether this test process may change owners (root); says SKIP otherwise, and
    /// fails where the interop tests must run.
    fn can_change_owners() -> bool {
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        crate::interop_tests::skip("changing a file's owner needs root");
        false
    }

    /// Regression (review): an admin verb run as root gave `release.lock` and the files
    /// it wrote to the spool's owner by path, following links: whoever runs as the
    /// gateway's user could link `release.lock` (or swap a file it wrote) to
    /// `/etc/shadow`, and the next `sudo mxguard quarantine release` gave that file away.
    #[tokio::test]
    async fn an_admin_verb_gives_away_no_file_a_link_points_to() {
        use std::os::unix::fs::MetadataExt;
        if !can_change_owners() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        drop(Spool::open(&spool_dir).unwrap());
        let nobody = 65_534;
        std::os::unix::fs::chown(&spool_dir, Some(nobody), Some(nobody)).unwrap();
        let target = dir.path().join("shadow");
        fs::write(&target, b"secret").unwrap();
        let untouched = |what: &str| {
            assert_eq!(
                fs::metadata(&target).unwrap().uid(),
                0,
                "{what}: given away"
            );
        };
        // A symbolic link at the lock.
        std::os::unix::fs::symlink(&target, spool_dir.join("release.lock")).unwrap();
        let spool = Spool::open_for_admin(&spool_dir).unwrap();
        assert!(spool.release(&QueueId::generate()).is_err());
        untouched("release.lock, a symbolic link");
        fs::remove_file(spool_dir.join("release.lock")).unwrap();
        // A hard link at the lock.
        fs::hard_link(&target, spool_dir.join("release.lock")).unwrap();
        assert!(spool.release(&QueueId::generate()).is_err());
        untouched("release.lock, a hard link");
        fs::remove_file(spool_dir.join("release.lock")).unwrap();
        // A file an admin verb wrote, swapped for a link before its owner changes.
        let written = spool_dir.join("tmp").join("swapped");
        std::os::unix::fs::symlink(&target, &written).unwrap();
        assert!(give_to_owner_of(&spool_dir, &written).is_err());
        untouched("a written file, a symbolic link");
        let plain = spool_dir.join("tmp").join("plain");
        fs::write(&plain, b"x").unwrap();
        give_to_owner_of(&spool_dir, &plain).unwrap();
        assert_eq!(fs::metadata(&plain).unwrap().uid(), nobody);
    }

    /// Regression (review): `mxguard queue list` run (as root) before the gateway's first
    /// start made the spool's directories, root's and 0700, and the gateway's user could
    /// then not open its own spool; with a wrong `--config` it listed an empty new spool
    /// instead of failing. Admin verbs now create nothing and name what is missing.
    #[tokio::test]
    async fn admin_verbs_create_no_spool() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let missing = Spool::open_for_admin(&spool_dir);
        assert!(
            matches!(
                &missing,
                Err(SpoolError::Missing(_, "the directory itself"))
            ),
            "{missing:?}"
        );
        assert!(!spool_dir.exists());
        fs::create_dir(&spool_dir).unwrap();
        let empty = Spool::open_for_admin(&spool_dir);
        assert!(
            matches!(&empty, Err(SpoolError::Missing(_, "tmp"))),
            "{empty:?}"
        );
        assert_eq!(
            fs::read_dir(&spool_dir).unwrap().count(),
            0,
            "created something"
        );
        drop(Spool::open(&spool_dir).unwrap());
        let spool = Spool::open_for_admin(&spool_dir).unwrap();
        // A quarantine verb on a message that is not there says quarantine, not queue.
        let id = QueueId::generate();
        for missing in [
            spool.release(&id).unwrap_err(),
            spool.delete_quarantined(&id).unwrap_err(),
            spool.load_quarantined(&id).unwrap_err(),
            spool.quarantined_envelope(&id).unwrap_err(),
        ] {
            assert!(
                matches!(missing, SpoolError::NotQuarantined(_)),
                "{missing:?}"
            );
        }
    }

    /// Regression (review): `queue delete` during a delivery attempt removed the message
    /// and its state, and the attempt's deferral then saved a state that nothing removed
    /// until the next start. The delivery path drops it once the message is gone.
    #[tokio::test]
    async fn a_state_saved_after_queue_delete_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let kept = spool.store(&envelope(), b"x\r\n").await.unwrap();
        let deleted = spool.store(&envelope(), b"x\r\n").await.unwrap();
        spool.remove(&deleted).unwrap();
        for (id, gone) in [(&kept, false), (&deleted, true)] {
            spool.save_state(id, &DeliveryState::new(2)).unwrap();
            assert_eq!(spool.drop_state_if_deleted(id).unwrap(), gone);
        }
        assert!(spool.state_path(&kept).exists());
        assert!(!spool.state_path(&deleted).exists());
        assert_eq!(spool.ids().unwrap(), vec![kept]);
    }

    /// Regression: a save that failed half-way (ENOSPC after the create) left an empty
    /// `tmp/ID.state`, and every later save of that message failed on it.
    #[tokio::test]
    async fn failed_state_saves_leave_nothing_in_tmp_and_do_not_block_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
        let tmp_state = dir.path().join(format!("tmp/{id}.state"));
        fs::write(&tmp_state, b"").unwrap();
        let mut st = DeliveryState::new(2);
        st.attempts = 3;
        spool.save_state(&id, &st).unwrap();
        assert!(!tmp_state.exists(), "stale tmp state file left behind");
        assert_eq!(spool.load(&id).unwrap().state.attempts, 3);
        // A save whose rename fails (the target is a non-empty directory) cleans up too.
        let state_path = dir.path().join(format!("queue/{id}.state"));
        fs::remove_file(&state_path).unwrap();
        fs::create_dir_all(state_path.join("blocker")).unwrap();
        st.attempts = 4;
        assert!(spool.save_state(&id, &st).is_err());
        assert!(
            !tmp_state.exists(),
            "failed save left {}",
            tmp_state.display()
        );
        fs::remove_dir_all(&state_path).unwrap();
        spool.save_state(&id, &st).unwrap();
        assert_eq!(spool.load(&id).unwrap().state.attempts, 4);
    }

    /// An empty or mismatched state file is reported as such (the relay discards it and
    /// tries every recipient again), not as a broken message; a state saved before
    /// failures were recorded still reads.
    #[tokio::test]
    async fn unreadable_states_are_told_apart_from_broken_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
        let state_path = dir.path().join(format!("queue/{id}.state"));
        for bad in [
            &b""[..],
            br#"{"rcpt_status":["delivered"],"attempts":1,"next_attempt":0,"last_error":null}"#,
        ] {
            fs::write(&state_path, bad).unwrap();
            assert!(
                matches!(spool.load(&id), Err(SpoolError::CorruptState(..))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        spool.discard_state(&id).unwrap();
        assert_eq!(spool.load(&id).unwrap().state, DeliveryState::new(2));
        spool.discard_state(&id).unwrap();
        let older = br#"{"rcpt_status":["delivered","pending"],"attempts":1,"next_attempt":0,"last_error":null}"#;
        fs::write(&state_path, older).unwrap();
        let state = spool.load(&id).unwrap().state;
        assert_eq!(state.pending().collect::<Vec<_>>(), vec![1]);
        assert!(state.failures.is_empty());
    }

    #[tokio::test]
    async fn a_delivered_file_is_reused_for_the_next_message_with_nothing_of_the_old_one() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open_recycling(dir.path(), 2).unwrap();
        // Let the committer's idle top-up settle, then start from a known pool.
        let long = vec![b'x'; 10_000];
        let first = spool.store(&envelope(), &long).await.unwrap();
        let inode = fs::metadata(dir.path().join("queue").join(first.as_str()))
            .unwrap()
            .ino();
        spool.remove(&first).unwrap();
        let free: Vec<_> = fs::read_dir(dir.path().join("free")).unwrap().collect();
        assert!(free.len() <= 2, "pool over capacity: {}", free.len());
        let mut reused = false;
        for i in 0..3 {
            let body = format!("short {i}\r\n").into_bytes();
            let id = spool.store(&envelope(), &body).await.unwrap();
            let path = dir.path().join("queue").join(id.as_str());
            reused |= fs::metadata(&path).unwrap().ino() == inode;
            assert_eq!(
                spool.load(&id).unwrap().body,
                body,
                "old bytes leaked into {id}"
            );
        }
        assert!(reused, "the delivered message's file was not reused");
    }

    /// Regression (review): a file written as it arrived (format 2, unsealed), or by an
    /// earlier release (format 1 without a seal), went into the recycling pool like any
    /// other. Were a crash to leave its old bytes under the
    /// name of a new message written over it, they read as a valid message: the old one
    /// was delivered again. Such files are deleted, never reused.
    #[tokio::test]
    async fn a_file_written_as_it_arrived_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open_recycling(dir.path(), 8).unwrap();
        let mut spill = spool.create_spill().await.unwrap();
        spill
            .append(b"Subject: old\r\n\r\nalready delivered\r\n".to_vec())
            .await
            .unwrap();
        let old = spill.id().clone();
        spool
            .commit_spill(spill, &envelope(), b"Received: x\r\n", false)
            .await
            .unwrap();
        assert!(!is_sealed(&dir.path().join("queue").join(old.as_str())));
        // Regression (review): an unsealed file of an earlier release was reused too.
        let earlier = QueueId::generate();
        let mut bytes = encode_header(&envelope_json(&envelope()).unwrap(), None);
        bytes.extend_from_slice(b"from an earlier release\r\n");
        fs::write(dir.path().join("queue").join(earlier.as_str()), &bytes).unwrap();
        spool.remove(&earlier).unwrap();
        // A sealed file is reused.
        let sealed = spool.store(&envelope(), b"sealed\r\n").await.unwrap();
        assert!(is_sealed(&dir.path().join("queue").join(sealed.as_str())));
        spool.remove(&sealed).unwrap();
        let pooled = fs::read_dir(dir.path().join("free"))
            .unwrap()
            .filter(|e| fs::metadata(e.as_ref().unwrap().path()).unwrap().len() > 0)
            .count();
        assert_eq!(
            pooled, 1,
            "the sealed file is the pool's one file with bytes"
        );
        spool.remove(&old).unwrap();
        // A file taken into the pool keeps its bytes until it is written over.
        for entry in fs::read_dir(dir.path().join("free")).unwrap() {
            let path = entry.unwrap().path();
            assert!(
                is_sealed(&path) || fs::metadata(&path).unwrap().len() == 0,
                "an unsealed file went into the pool as {}",
                path.display()
            );
        }
        assert!(!dir.path().join("queue").join(old.as_str()).exists());
    }

    /// Regression (review): once the committer went quiet it slept until the next store, so
    /// a message delivered after that stayed whole in `free/` (and, on a low disk, its
    /// bytes kept every new message refused).
    #[tokio::test]
    async fn a_file_delivered_after_the_spool_went_quiet_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open_recycling(dir.path(), 8).unwrap();
        let id = spool
            .store(&envelope(), b"delivered mail\r\n")
            .await
            .unwrap();
        // Well past the committer's quiet pause, with the pool topped up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        spool.remove(&id).unwrap();
        let holding = || {
            fs::read_dir(dir.path().join("free"))
                .unwrap()
                .filter(|e| fs::metadata(e.as_ref().unwrap().path()).unwrap().len() > 0)
                .count()
        };
        assert_eq!(holding(), 1, "the delivered file went into the pool");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while holding() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(holding(), 0, "the delivered message lingers in free/");
    }

    #[tokio::test]
    async fn with_recycling_off_a_delivered_file_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open_recycling(dir.path(), 0).unwrap();
        let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
        spool.remove(&id).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("free")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("queue")).unwrap().count(), 0);
    }

    /// What a crash before the flush can leave when files are reused: the old message under
    /// a new name, or old and new bytes mixed. Neither is ever delivered; files written
    /// before seals existed still are.
    #[tokio::test]
    async fn a_file_that_does_not_match_its_seal_is_not_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let queue = dir.path().join("queue");
        let old = spool.store(&envelope(), b"old message\r\n").await.unwrap();
        let renamed = QueueId::generate();
        fs::copy(queue.join(old.as_str()), queue.join(renamed.as_str())).unwrap();
        assert!(matches!(spool.load(&renamed), Err(SpoolError::Corrupt(..))));
        assert!(matches!(
            spool.open_message(&renamed),
            Err(SpoolError::Corrupt(..))
        ));
        let mut torn = fs::read(queue.join(old.as_str())).unwrap();
        let at = torn.len() - 4;
        torn[at] ^= 0x20;
        fs::write(queue.join(old.as_str()), &torn).unwrap();
        assert!(matches!(spool.load(&old), Err(SpoolError::Corrupt(..))));
        assert!(matches!(
            spool.open_message(&old),
            Err(SpoolError::Corrupt(..))
        ));
        // Past the head read at opening (streamed while sent): torn there too.
        let big = vec![b'x'; 3 * body::BODY_HEAD_BYTES];
        let long = spool.store(&envelope(), &big).await.unwrap();
        let opened = spool.open_message(&long).unwrap();
        assert!(opened.tail.is_some());
        spool.check_seal(&opened).await.unwrap();
        let mut torn = fs::read(queue.join(long.as_str())).unwrap();
        let at = torn.len() - body::BODY_HEAD_BYTES;
        torn[at] = b'y';
        fs::write(queue.join(long.as_str()), &torn).unwrap();
        let opened = spool.open_message(&long).unwrap();
        assert!(matches!(
            spool.check_seal(&opened).await,
            Err(SpoolError::Corrupt(..))
        ));
        let unsealed = QueueId::generate();
        let mut bytes = encode_header(&envelope_json(&envelope()).unwrap(), None);
        bytes.extend_from_slice(b"from an earlier release\r\n");
        fs::write(queue.join(unsealed.as_str()), &bytes).unwrap();
        assert_eq!(
            spool.load(&unsealed).unwrap().body,
            b"from an earlier release\r\n"
        );
        assert_eq!(
            spool.open_message(&unsealed).unwrap().body,
            b"from an earlier release\r\n"
        );
    }

    /// Regression (review): the seal covered the bytes after the envelope only. A reused
    /// file written over in place, cut by a power loss, could keep an old envelope of the
    /// same length under the new seal, and the message went to the old recipients.
    #[tokio::test]
    async fn an_envelope_that_does_not_match_its_seal_is_not_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = spool.store(&envelope(), b"message\r\n").await.unwrap();
        let path = dir.path().join("queue").join(id.as_str());
        let bytes = fs::read(&path).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches("c@example.test").count(), 1);
        fs::write(&path, text.replace("c@example.test", "x@attacker.io0")).unwrap();
        assert!(matches!(spool.load(&id), Err(SpoolError::Corrupt(..))));
        assert!(matches!(
            spool.open_message(&id),
            Err(SpoolError::Corrupt(..))
        ));
    }

    /// Regression (review): a store under an id already queued replaced that message
    /// (a rename replaces its target), losing it without a word.
    #[tokio::test]
    async fn a_store_under_a_queued_id_fails_and_keeps_the_queued_message() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open_recycling(dir.path(), 4).unwrap();
        let id = QueueId::generate();
        spool
            .store_as(&id, &envelope(), b"", b"first\r\n")
            .await
            .unwrap();
        let again = spool.store_as(&id, &envelope(), b"", b"second\r\n").await;
        assert!(matches!(again, Err(SpoolError::Io { .. })), "{again:?}");
        assert_eq!(spool.load(&id).unwrap().body, b"first\r\n");
        // From a reused file of the pool too.
        let other = spool.store(&envelope(), b"x\r\n").await.unwrap();
        spool.remove(&other).unwrap();
        let again = spool.store_as(&id, &envelope(), b"", b"third\r\n").await;
        assert!(again.is_err());
        assert_eq!(spool.load(&id).unwrap().body, b"first\r\n");
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    /// Regression (review of the fix above): a release onto an id already queued was
    /// refused, but only after the queued message's delivery state had been written over.
    #[tokio::test]
    async fn a_release_onto_a_queued_id_leaves_its_state_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = QueueId::generate();
        spool
            .store_as(&id, &envelope(), b"", b"queued\r\n")
            .await
            .unwrap();
        let mut state = DeliveryState::new(2);
        state.rcpt_status[0] = RcptStatus::Delivered;
        spool.save_state(&id, &state).unwrap();
        spool
            .quarantine_as(&id, &envelope(), b"", b"quarantined\r\n")
            .await
            .unwrap();
        assert!(spool.release(&id).is_err());
        let queued = spool.load(&id).unwrap();
        assert_eq!(queued.body, b"queued\r\n");
        assert_eq!(queued.state.rcpt_status[0], RcptStatus::Delivered);
    }

    #[tokio::test]
    async fn leftovers_in_tmp_and_orphan_states_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        fs::create_dir_all(dir.path().join("queue")).unwrap();
        fs::write(dir.path().join("tmp/ABC"), b"partial").unwrap();
        fs::write(dir.path().join("queue/DEF.state"), b"{}").unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        assert!(spool.recover().unwrap().is_empty());
        assert!(!dir.path().join("tmp/ABC").exists());
        assert!(!dir.path().join("queue/DEF.state").exists());
    }

    #[tokio::test]
    async fn concurrent_stores_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let spool = std::sync::Arc::new(spool);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                spool
                    .store(&envelope(), format!("m{i}\r\n").as_bytes())
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(spool.ids().unwrap().len(), 50);
    }
}
