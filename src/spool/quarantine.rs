//! The quarantine: messages judged spam kept aside, listed, released into the queue or
//! deleted by `mxguard quarantine`, and expired after their lifetime.

use super::commit;
use super::files::{own_plain_file, surely_absent, sync_dir};
use super::format::read_message_file;
use super::lock::open_lock_file;
use super::requests::RELEASE_REQUEST;
use super::{
    io_err, list_ids, unix_now, DeliveryState, Envelope, QueueId, Spool, SpoolError, SpooledMessage,
};
use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

impl Spool {
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
    pub(super) fn release_lock(&self) -> Result<fs::File, SpoolError> {
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

    /// Deletes a quarantined message, durably (it must not come back after a crash).
    pub fn delete_quarantined(&self, id: &QueueId) -> Result<(), SpoolError> {
        let path = self.quarantine.join(id.as_str());
        fs::remove_file(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpoolError::NotQuarantined(id.clone()),
            _ => io_err("remove", &path)(e),
        })?;
        sync_dir(&self.quarantine)
    }
}

/// A message missing from quarantine is reported as such, not as missing from the queue.
pub(super) fn not_quarantined(e: SpoolError, id: &QueueId) -> SpoolError {
    match e {
        SpoolError::NotFound(_) => SpoolError::NotQuarantined(id.clone()),
        other => other,
    }
}
