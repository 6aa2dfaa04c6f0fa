//! Opening a queued message for delivery without reading all of it: the envelope, the
//! state and the first bytes of the body come into memory, the rest stays on disk and is
//! read in chunks while it is sent ([`BodyTail`]).

use super::spill::{parse_first_line, parse_trailer, FORMAT2_HEADER, MAGIC2};
use super::QueueId;
use super::{decode_header, header_end, io_err, Spool, SpoolError, SpooledMessage};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Body bytes read into memory when a message is opened; a message no longer than this
/// (plus our headers) is delivered without touching the disk again.
pub const BODY_HEAD_BYTES: usize = 64 * 1024;

/// The part of a message body left on disk: `len` bytes of `file` from `offset`.
#[derive(Debug, Clone)]
pub struct BodyTail {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// The seal's CRC-32 of the head and this tail, when the file is sealed: only the
    /// head was checked at opening.
    sealed_crc: Option<u32>,
}

impl BodyTail {
    /// A tail over `len` bytes of `file` from `offset`.
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> BodyTail {
        BodyTail {
            file,
            offset,
            len,
            sealed_crc: None,
        }
    }

    /// Whether `head` followed by this tail matches the file's seal (true for a file
    /// without one), read on a blocking thread. The spool reuses whole files, so a crash
    /// before the flush can leave old and new blocks mixed past the head too; such a file
    /// was never acknowledged and must not be delivered.
    async fn matches_seal(&self, head: &[u8]) -> io::Result<bool> {
        if self.sealed_crc.is_none() {
            return Ok(true);
        }
        let (tail, head) = (self.clone(), head.to_vec());
        tokio::task::spawn_blocking(move || tail.matches_seal_now(&head))
            .await
            .map_err(|_| io::Error::other("checksum task failed"))?
    }

    /// [`BodyTail::matches_seal`] on this thread (it reads the whole tail).
    pub(super) fn matches_seal_now(&self, head: &[u8]) -> io::Result<bool> {
        let Some(expected) = self.sealed_crc else {
            return Ok(true);
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(head);
        let (from, end) = (self.offset, self.offset + self.len);
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = from;
        while pos < end {
            let n = usize::try_from(end - pos).map_or(buf.len(), |left| left.min(buf.len()));
            self.file.read_exact_at(&mut buf[..n], pos)?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(hasher.finalize() == expected)
    }

    /// Bytes in the tail.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the tail is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads up to `max` bytes from `pos` (relative to the tail) on a blocking thread;
    /// an empty result means the end. A file shorter than recorded is an error.
    pub async fn read(&self, pos: u64, max: usize) -> io::Result<Vec<u8>> {
        if pos >= self.len {
            return Ok(Vec::new());
        }
        let want = max.min(usize::try_from(self.len - pos).unwrap_or(usize::MAX));
        let (file, at) = (self.file.clone(), self.offset + pos);
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; want];
            file.read_exact_at(&mut buf, at)?;
            Ok(buf)
        })
        .await
        .map_err(|_| io::Error::other("read task failed"))?
    }
}

impl Spool {
    /// Opens a queued message for delivery: `body` holds our headers and at least the
    /// first [`BODY_HEAD_BYTES`] of the message (so the header section for a DSN), and
    /// `tail` what is left on disk. Memory stays bounded whatever the message size.
    pub fn open_message(&self, id: &QueueId) -> Result<SpooledMessage, SpoolError> {
        let path = self.queue.join(id.as_str());
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.clone()))
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
        let (envelope, body, tail) = open_any(file, &path, file_len)?;
        let state = self.read_state(id, &envelope)?;
        Ok(SpooledMessage {
            id: id.clone(),
            envelope,
            state,
            body,
            tail,
        })
    }

    /// Checks what [`Spool::open_message`] left on disk unchecked, the tail of a sealed
    /// message, against the seal: `Corrupt` when they differ (torn by a crash), an I/O
    /// error when it cannot be read now. Read on a blocking thread.
    pub async fn check_seal(&self, msg: &SpooledMessage) -> Result<(), SpoolError> {
        let Some(tail) = &msg.tail else {
            return Ok(());
        };
        self.seal_verdict(msg, tail.matches_seal(&msg.body).await)
    }

    /// [`Spool::check_seal`] on this thread.
    pub(super) fn check_seal_now(&self, msg: &SpooledMessage) -> Result<(), SpoolError> {
        let Some(tail) = &msg.tail else {
            return Ok(());
        };
        self.seal_verdict(msg, tail.matches_seal_now(&msg.body))
    }

    fn seal_verdict(
        &self,
        msg: &SpooledMessage,
        matched: io::Result<bool>,
    ) -> Result<(), SpoolError> {
        let path = self.queue.join(msg.id.as_str());
        match matched {
            Ok(true) => Ok(()),
            Ok(false) => Err(SpoolError::Corrupt(path, super::seal::TORN.into())),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Size of a message's bytes (our headers included) without reading its body.
    pub(super) fn body_size(&self, path: &Path) -> Result<(super::Envelope, u64), SpoolError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let opened = file.metadata().map_err(io_err("stat", path))?;
        let (envelope, body, tail) = match open_any(file, path, opened.len()) {
            Err(e) if super::gone_since_opened(&e, path, &opened) => {
                return Err(io_err("read", path)(io::ErrorKind::NotFound.into()))
            }
            other => other?,
        };
        let size = body.len() as u64 + tail.map(|t| t.len).unwrap_or(0);
        Ok((envelope, size))
    }
}

/// Reads into `buf` from `at` until it is full or the file ends; returns the count.
fn read_full_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

type Opened = (super::Envelope, Vec<u8>, Option<BodyTail>);

/// Reads the start of a spool file and opens it by its format.
fn open_any(mut file: File, path: &Path, file_len: u64) -> Result<Opened, SpoolError> {
    let mut head = Vec::with_capacity(BODY_HEAD_BYTES + 4096);
    let mut chunk = vec![0u8; 16 * 1024];
    // Read until the envelope line is complete and the body head is in (or the file ends).
    loop {
        let n = file.read(&mut chunk).map_err(io_err("read", path))?;
        head.extend_from_slice(&chunk[..n]);
        if head.starts_with(MAGIC2) && head.len() >= FORMAT2_HEADER as usize {
            return open_format2(file, path, file_len, &head);
        }
        let envelope_end = header_end(&head);
        let enough = envelope_end.is_some_and(|end| head.len() >= end + BODY_HEAD_BYTES);
        if n == 0 || enough {
            break;
        }
    }
    open_format1(file, path, file_len, head)
}

/// Format 1: magic line, envelope line, then the bytes to deliver.
fn open_format1(
    file: File,
    path: &Path,
    file_len: u64,
    mut head: Vec<u8>,
) -> Result<Opened, SpoolError> {
    let (envelope, offset, unchecked) = decode_header(path, &head, file_len)?;
    let body = head.split_off(offset);
    let read_so_far = (offset + body.len()) as u64;
    let tail = (file_len > read_so_far).then(|| BodyTail {
        sealed_crc: unchecked.map(|seal| seal.crc()),
        ..BodyTail::new(Arc::new(file), read_so_far, file_len - read_so_far)
    });
    Ok((envelope, body, tail))
}

/// Format 2: fixed first line with the message range, message, then envelope and prefix.
fn open_format2(
    file: File,
    path: &Path,
    file_len: u64,
    first: &[u8],
) -> Result<Opened, SpoolError> {
    let (start, end) = parse_first_line(path, first)?;
    if end > file_len {
        return Err(SpoolError::Corrupt(
            path.to_owned(),
            "truncated message".into(),
        ));
    }
    let trailer_len = usize::try_from(file_len - end)
        .map_err(|_| SpoolError::Corrupt(path.to_owned(), "trailer too large".into()))?;
    let mut trailer = vec![0u8; trailer_len];
    read_full_at(&file, &mut trailer, end).map_err(io_err("read", path))?;
    let (envelope, prefix_at) = parse_trailer(path, &trailer)?;
    let mut body = trailer.split_off(prefix_at);
    let head_len = usize::try_from(end - start)
        .unwrap_or(usize::MAX)
        .min(BODY_HEAD_BYTES);
    let mut head = vec![0u8; head_len];
    let n = read_full_at(&file, &mut head, start).map_err(io_err("read", path))?;
    if n < head_len {
        return Err(SpoolError::Corrupt(
            path.to_owned(),
            "truncated message".into(),
        ));
    }
    body.extend_from_slice(&head);
    let rest_at = start + head_len as u64;
    let tail = (end > rest_at).then(|| BodyTail::new(Arc::new(file), rest_at, end - rest_at));
    Ok((envelope, body, tail))
}
