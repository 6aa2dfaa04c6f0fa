//! Messages streamed to disk while they arrive (spool format 2), so a session never holds
//! a big message in memory: the session appends the bytes to `tmp/ID` as the client sends
//! them; at acceptance the envelope and our headers go after the message, the first line
//! is filled in, and the file is committed (flushed, renamed) like any other.
//!
//! A format-2 file:
//! ```text
//! MXGUARD-SPOOL 2 <start:16 hex> <end:16 hex>\n    fixed width (FORMAT2_HEADER bytes)
//! ...                                              unused: what header stripping removed
//! message bytes               (start..end)         the message as accepted
//! envelope JSON line, then our header lines        (end..)
//! ```
//! The bytes handed to the internal server are our header lines followed by the message.
//! Stripping headers (forged verdicts) rewrites the header section in place, flush with its
//! end, and moves `start` forward, so the accepted message is always one contiguous range.

use super::map::Mapped;
use super::{Envelope, QueueId, Spool, SpoolError};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// First bytes of a format-2 file.
pub(super) const MAGIC2: &[u8] = b"MXGUARD-SPOOL 2 ";
/// Length of the fixed first line of a format-2 file.
pub(super) const FORMAT2_HEADER: u64 = 50;

/// A message being written to `tmp/` as it arrives. Removed on drop unless committed.
#[derive(Debug)]
pub struct SpillFile {
    id: QueueId,
    path: PathBuf,
    file: Arc<File>,
    /// Offset of the message's first byte.
    start: u64,
    /// Offset just past the message's last byte.
    end: u64,
    committed: bool,
}

use super::io_err as io_at;

impl Spool {
    /// Starts a streamed message under a new id.
    pub async fn create_spill(&self) -> Result<SpillFile, SpoolError> {
        let id = QueueId::generate();
        let path = self.tmp.join(id.as_str());
        let created = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> io::Result<File> {
                let f = super::private_file()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                // A placeholder first line; the real offsets are written at commit. A file
                // that cannot take it (a full disk) is removed here: no `SpillFile` owns it
                // yet to remove it when dropped.
                if let Err(e) = f.write_all_at(&first_line(0, 0), 0) {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
                Ok(f)
            })
            .await
            .map_err(|_| SpoolError::Stopped)?
        };
        let file = created.map_err(io_at("create", &path))?;
        Ok(SpillFile {
            id,
            path,
            file: Arc::new(file),
            start: FORMAT2_HEADER,
            end: FORMAT2_HEADER,
            committed: false,
        })
    }

    /// Makes a streamed message durable in the queue (or the quarantine) with `envelope`
    /// and `prefix` (our header lines, sent before the message); same durability as
    /// [`Spool::store_as`]. Queued messages are announced for delivery.
    pub async fn commit_spill(
        &self,
        mut spill: SpillFile,
        envelope: &Envelope,
        prefix: &[u8],
        quarantine: bool,
    ) -> Result<(), SpoolError> {
        let mut trailer = serde_json::to_vec(envelope)
            .map_err(|e| SpoolError::Corrupt(spill.path.clone(), e.to_string()))?;
        trailer.push(b'\n');
        trailer.extend_from_slice(prefix);
        let (file, start, end) = (spill.file.clone(), spill.start, spill.end);
        let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
            file.write_all_at(&trailer, end)?;
            // Body and trailer reach the disk before the first line that makes the file a
            // message: write-back keeps no order, and a crash could otherwise leave a
            // valid first line over ranges never written (zeros), which recovery would
            // deliver (this file carries no seal). Only messages too big for memory pay
            // this sync, which the commit's flush would do anyway.
            file.sync_data()?;
            file.write_all_at(&first_line(start, end), 0)
        })
        .await
        .map_err(|_| SpoolError::Stopped)?;
        written.map_err(io_at("write", &spill.path))?;
        let dir = if quarantine {
            &self.quarantine
        } else {
            &self.queue
        };
        self.committer
            .commit(spill.path.clone(), dir.join(spill.id.as_str()))
            .await?;
        spill.committed = true;
        if !quarantine {
            let _ = self.ready.send(spill.id.clone());
        }
        Ok(())
    }
}

impl SpillFile {
    /// The queue id the message will have.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Message bytes written so far (after any stripping).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Appends `bytes` (off the async threads: a write may wait for the disk); returns
    /// the buffer emptied, for reuse.
    pub async fn append(&mut self, mut bytes: Vec<u8>) -> Result<Vec<u8>, SpoolError> {
        let (file, at) = (self.file.clone(), self.end);
        let result = tokio::task::spawn_blocking(move || {
            let r = file.write_all_at(&bytes, at);
            let n = bytes.len() as u64;
            bytes.clear();
            r.map(|()| (bytes, n))
        })
        .await
        .map_err(|_| SpoolError::Stopped)?;
        let (bytes, n) = result.map_err(io_at("write", &self.path))?;
        self.end += n;
        Ok(bytes)
    }

    /// A handle for blocking reads on another thread.
    pub fn reader(&self) -> SpillReader {
        SpillReader {
            file: self.file.clone(),
            start: self.start,
            end: self.end,
        }
    }

    /// Replaces the first `old_len` message bytes (the header section) with `new`, which
    /// must not be longer; the message then starts where `new` does. Blocking.
    pub fn replace_head(&mut self, old_len: u64, new: &[u8]) -> Result<(), SpoolError> {
        let new_len = new.len() as u64;
        if new_len > old_len || old_len > self.len() {
            return Err(SpoolError::Corrupt(
                self.path.clone(),
                "header rewrite longer than the original".into(),
            ));
        }
        let at = self.start + (old_len - new_len);
        self.file
            .write_all_at(new, at)
            .map_err(io_at("write", &self.path))?;
        self.start = at;
        Ok(())
    }

    /// The whole message as one read-only slice from the page cache.
    pub fn map(&self) -> io::Result<Mapped<'_>> {
        map_message(&self.file, self.start, self.len())
    }
}

/// The `len` message bytes from `start` of `file`, mapped read-only.
fn map_message(file: &File, start: u64, len: u64) -> io::Result<Mapped<'_>> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    Mapped::new(file, start, len)
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        if !self.committed {
            // Never acknowledged: nothing may remain of it.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Blocking reads of a [`SpillFile`]'s message from another thread.
#[derive(Debug, Clone)]
pub struct SpillReader {
    file: Arc<File>,
    start: u64,
    end: u64,
}

impl SpillReader {
    /// The whole message as one read-only slice from the page cache.
    pub fn map(&self) -> io::Result<Mapped<'_>> {
        map_message(&self.file, self.start, self.len())
    }

    /// Message length.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Hands the message from `offset` (relative to its start) to `each`, `chunk` bytes at
    /// a time, until the end or until `each` says stop (returns false). Blocking.
    pub fn read_chunks(
        &self,
        offset: u64,
        chunk: usize,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; chunk];
        let mut pos = offset;
        loop {
            let n = self.read_at(pos, &mut buf)?;
            if n == 0 || !each(&buf[..n]) {
                return Ok(());
            }
            pos += n as u64;
        }
    }

    /// Reads message bytes from `offset` (relative to the message start) into `buf`;
    /// returns how many were read (0 at the end). Blocking.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.start.saturating_add(offset);
        if at >= self.end {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.end - at).unwrap_or(usize::MAX));
        self.file.read_at(&mut buf[..want], at)
    }
}

fn first_line(start: u64, end: u64) -> Vec<u8> {
    let mut line = MAGIC2.to_vec();
    line.extend_from_slice(format!("{start:016x} {end:016x}\n").as_bytes());
    line
}

/// The message range of a format-2 file from its first line.
pub(super) fn parse_first_line(path: &Path, line: &[u8]) -> Result<(u64, u64), SpoolError> {
    let corrupt = |m: &str| SpoolError::Corrupt(path.to_owned(), m.to_owned());
    let rest = line
        .get(..FORMAT2_HEADER as usize)
        .and_then(|l| l.strip_prefix(MAGIC2))
        .and_then(|l| l.strip_suffix(b"\n"))
        .ok_or_else(|| corrupt("bad format-2 first line"))?;
    let text = std::str::from_utf8(rest).map_err(|_| corrupt("bad format-2 offsets"))?;
    let (s, e) = text
        .split_once(' ')
        .ok_or_else(|| corrupt("bad format-2 offsets"))?;
    let start = u64::from_str_radix(s, 16).map_err(|_| corrupt("bad start offset"))?;
    let end = u64::from_str_radix(e, 16).map_err(|_| corrupt("bad end offset"))?;
    if start < FORMAT2_HEADER || end < start {
        return Err(corrupt("message range out of order"));
    }
    Ok((start, end))
}

/// Splits the part after the message (`end..`) into envelope and our header lines.
pub(super) fn parse_trailer(path: &Path, trailer: &[u8]) -> Result<(Envelope, usize), SpoolError> {
    let nl = memchr::memchr(b'\n', trailer)
        .ok_or_else(|| SpoolError::Corrupt(path.to_owned(), "no envelope line".into()))?;
    let envelope: Envelope = serde_json::from_slice(&trailer[..nl])
        .map_err(|e| SpoolError::Corrupt(path.to_owned(), e.to_string()))?;
    Ok((envelope, nl + 1))
}

/// Decodes a whole format-2 file into envelope and the bytes to deliver.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<(Envelope, Vec<u8>), SpoolError> {
    let (start, end) = parse_first_line(path, bytes)?;
    let range = |a: u64, b: u64| {
        let (a, b) = (usize::try_from(a).ok()?, usize::try_from(b).ok()?);
        bytes.get(a..b)
    };
    let message = range(start, end)
        .ok_or_else(|| SpoolError::Corrupt(path.to_owned(), "truncated message".into()))?;
    let trailer = range(end, bytes.len() as u64).unwrap_or_default();
    let (envelope, prefix_at) = parse_trailer(path, trailer)?;
    let mut body = Vec::with_capacity(trailer.len() - prefix_at + message.len());
    body.extend_from_slice(&trailer[prefix_at..]);
    body.extend_from_slice(message);
    Ok((envelope, body))
}

#[cfg(test)]
mod tests {
    use super::super::{Envelope, Spool};
    use std::fs;

    fn envelope() -> Envelope {
        Envelope {
            mail_from: "a@example.org".into(),
            rcpt_to: vec!["b@example.test".into()],
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

    async fn streamed(spool: &Spool, message: &[u8]) -> super::SpillFile {
        let mut file = spool.create_spill().await.unwrap();
        for chunk in message.chunks(10_000) {
            let emptied = file.append(chunk.to_vec()).await.unwrap();
            assert!(emptied.is_empty());
        }
        file
    }

    #[tokio::test]
    async fn a_streamed_message_is_delivered_with_our_headers_first() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut ready) = Spool::open(dir.path()).unwrap();
        let mut message = b"X-Spam-Status: No\r\nSubject: big\r\n\r\n".to_vec();
        message.extend((0..300_000u32).map(|i| b"abcdefghij\r\n"[(i % 12) as usize]));
        let mut file = streamed(&spool, &message).await;
        let id = file.id().clone();
        assert_eq!(file.len(), message.len() as u64);
        // Stripping the forged header rewrites the header section in place.
        file.replace_head(35, b"Subject: big\r\n\r\n").unwrap();
        assert!(*file.map().unwrap() == message[19..]);
        spool
            .commit_spill(file, &envelope(), b"Received: by us\r\n", false)
            .await
            .unwrap();
        assert_eq!(ready.recv().await, Some(id.clone()));
        let mut expected = b"Received: by us\r\n".to_vec();
        expected.extend_from_slice(&message[19..]);
        let whole = spool.load(&id).unwrap();
        assert_eq!(whole.envelope, envelope());
        assert!(whole.body == expected, "load() differs");
        let opened = spool.open_message(&id).unwrap();
        let tail = opened.tail.clone().unwrap();
        let mut streamed = opened.body.clone();
        let mut pos = 0;
        while pos < tail.len() {
            let chunk = tail.read(pos, 70_000).await.unwrap();
            pos += chunk.len() as u64;
            streamed.extend_from_slice(&chunk);
        }
        assert!(streamed == expected, "open_message() differs");
        assert_eq!(spool.entry(&id).unwrap().size, expected.len() as u64);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn an_unaccepted_stream_leaves_nothing_and_quarantine_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _ready) = Spool::open(dir.path()).unwrap();
        let dropped = streamed(&spool, b"Subject: no\r\n\r\nnever accepted\r\n").await;
        drop(dropped);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        let file = streamed(&spool, b"Subject: q\r\n\r\nheld\r\n").await;
        let id = file.id().clone();
        spool
            .commit_spill(file, &envelope(), b"", true)
            .await
            .unwrap();
        assert_eq!(spool.quarantined().unwrap(), vec![id.clone()]);
        let m = spool.load_quarantined(&id).unwrap();
        assert_eq!(m.body, b"Subject: q\r\n\r\nheld\r\n");
        spool.release(&id).unwrap();
        let opened = spool.open_message(&id).unwrap();
        assert_eq!(opened.body, b"Subject: q\r\n\r\nheld\r\n");
        assert!(opened.tail.is_none());
    }

    /// Regression (review): `sudo mxguard quarantine release` (root) wrote the release's
    /// state file as root, mode 0600: the gateway, running as its own user, could never
    /// read it, and the message stayed queued for good while the command said "released".
    #[tokio::test]
    async fn a_release_by_another_user_hands_its_files_to_the_spools_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (spool, _ready) = Spool::open(dir.path()).unwrap();
        let id = crate::spool::QueueId::generate();
        spool
            .quarantine_as(&id, &envelope(), b"", b"Subject: q\r\n\r\nheld\r\n")
            .await
            .unwrap();
        // The gateway's user: nobody (65534). Only root can make that so, and only root
        // can run the release as another user.
        let nobody = 65534;
        if std::os::unix::fs::chown(dir.path(), Some(nobody), Some(nobody)).is_err() {
            crate::interop_tests::skip("not root, cannot give the spool to another user");
            return;
        }
        Spool::open_for_admin(dir.path())
            .unwrap()
            .release(&id)
            .unwrap();
        let state = dir.path().join("queue").join(format!("{id}.state"));
        let meta = fs::metadata(&state).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody, nobody));
        let request = fs::metadata(dir.path().join("flush-request")).unwrap();
        assert_eq!(request.uid(), nobody);
    }

    #[tokio::test]
    async fn a_big_format_1_message_is_opened_with_a_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _ready) = Spool::open(dir.path()).unwrap();
        let message: Vec<u8> = (0..200_000u32)
            .map(|i| b"0123456789\r\n"[(i % 12) as usize])
            .collect();
        let id = spool.store(&envelope(), &message).await.unwrap();
        let opened = spool.open_message(&id).unwrap();
        let tail = opened.tail.clone().unwrap();
        assert_eq!(opened.body.len() as u64 + tail.len(), message.len() as u64);
        let rest = tail.read(0, usize::MAX).await.unwrap();
        assert!(
            [opened.body, rest].concat() == message,
            "format 1 tail differs"
        );
        assert!(opened.state.pending().count() == 1);
    }
}
