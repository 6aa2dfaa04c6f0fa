//! Requests of the admin verbs to the running gateway (`flush-request` in the spool):
//! retry the queue now, or pick up what a release put in it.

use super::files::write_new_file;
use super::{io_err, QueueId, Spool, SpoolError};
use std::fs;
use std::io;
use std::path::PathBuf;

/// The text of a release's request to the running gateway (see [`FlushRequest`]).
pub(super) const RELEASE_REQUEST: &[u8] = b"release\n";

/// What a request file (`flush-request` in the spool) asks of the running gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushRequest {
    /// `mxguard queue flush`: retry every queued message now.
    Flush,
    /// `mxguard quarantine release`: pick up the messages put into the queue; retrying
    /// every deferred one for it would be a retry storm.
    Release,
}

impl Spool {
    /// Puts a request for the running gateway in place whole (written aside, then linked
    /// or renamed), so the gateway never takes one half-written: an empty release request
    /// read as a flush retried every deferred message. `replace`: a request already there
    /// is replaced, else kept.
    pub(super) fn place_request(&self, text: &[u8], replace: bool) -> Result<(), SpoolError> {
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

    /// Path of the file whose presence asks a running gateway to retry everything now.
    pub fn flush_request_path(&self) -> PathBuf {
        self.dir.join("flush-request")
    }
}
