//! Durable queue on disk: a message is acknowledged only once it survives a crash.
//!
//! Layout under the spool directory:
//! - `tmp/`   messages being written; anything here at start was never acknowledged and is removed;
//! - `queue/ID`        seal line, envelope JSON line, then the message bytes (never rewritten
//!   while queued; `format.rs`, `seal.rs`);
//! - `queue/ID.state`  delivery state JSON, replaced atomically (write to `tmp/`, rename);
//! - `free/N`          files of delivered messages, written over by new ones (`recycle.rs`);
//! - `quarantine/ID`   messages judged spam, kept aside (`quarantine.rs`);
//! - `lock`, `flush-request`  one gateway per spool (`lock.rs`), and what the admin verbs
//!   ask of it (`requests.rs`).
//!
//! `store` writes the file (a reused one from `free/`, else a new one in `tmp/`), renames
//! it into `queue/` and makes both durable before returning. Concurrent stores share the
//! expensive part (group commit, `commit.rs`): one committer thread flushes a whole batch
//! with one `syncfs`.

mod body;
mod capacity;
mod commit;
mod envelope;
mod files;
mod format;
mod lock;
mod map;
mod quarantine;
mod recycle;
mod requests;
mod seal;
mod spill;

pub use body::{BodyTail, BODY_HEAD_BYTES};
pub use capacity::{Capacity, CAPACITY_PROBE_LIMIT};
pub use envelope::{unix_now, DeliveryState, Envelope, FailedRecipient, QueueId, RcptStatus};
pub use files::give_to_owner_of;
pub use map::Mapped;
pub use requests::FlushRequest;
pub use spill::{SpillFile, SpillReader};

use files::{private_dir, private_file, surely_absent, sync_dir, write_new_file};
use format::{
    decode_header, encode_header, envelope_json, gone_since_opened, header_end, is_sealed,
    read_message_file,
};
use lock::{lock_spool, open_existing_lock_file};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

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

    fn state_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.state"))
    }
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

/// How [`SpoolError::Missing`] names a missing part of the spool.
fn part_name(part: &'static str) -> &'static str {
    if part.is_empty() {
        "the directory itself"
    } else {
        part
    }
}

#[cfg(test)]
mod tests;
