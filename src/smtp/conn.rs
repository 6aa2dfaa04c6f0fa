//! The client connection: plaintext or TLS stream, our own read buffer (so STARTTLS can
//! throw away pipelined plaintext), line framing with a length limit, and reply batching
//! for PIPELINING.

use crate::net::Stream;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection.
    #[error("connection closed by client")]
    Closed,
    /// No data before the deadline.
    #[error("timeout")]
    Timeout,
    /// Transport error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One framed command line.
#[derive(Debug)]
pub enum Line {
    /// A line without its line ending (CRLF).
    Complete(Vec<u8>),
    /// A line that ended in a bare LF, without it. RFC 5321 §2.3.8 ends lines in CRLF
    /// only; whether such a line is taken is the session's choice (`bare_line_ending`).
    BareLf(Vec<u8>),
    /// A line over the limit; it was read to its end and discarded. Its first
    /// [`TOO_LONG_HEAD`] bytes are kept, to tell which command it was.
    TooLong(Vec<u8>),
}

/// Bytes kept of a line over the limit.
pub const TOO_LONG_HEAD: usize = 8;

/// Adds to `head` what the head of an over-long line is judged by: its first bytes after
/// any leading blanks (which the command parser skips too; review: `     BDAT 6 LAST` and
/// 520 blanks kept only `"     BDA"`, so its chunk ran as commands), up to
/// [`TOO_LONG_HEAD`] in all, over as many pieces of the line as that takes.
fn extend_head(head: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = if head.is_empty() {
        let start = bytes
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(bytes.len());
        &bytes[start..]
    } else {
        bytes
    };
    let room = TOO_LONG_HEAD.saturating_sub(head.len());
    head.extend(bytes.iter().take(room));
}

/// Bytes a read may bring in at once.
const READ_SIZE: usize = 16 * 1024;

/// A session's connection with buffered input and output. An idle connection holds no
/// read buffer: it waits for readability first, so ten thousand idle sessions cost little.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    /// How much of `wbuf` is on the wire already (a flush cut short resumes there).
    wpos: usize,
    /// A write failed or ran out of time: nothing more is queued or sent.
    write_failed: bool,
    /// The line being read is over the limit and is being skipped to its end.
    discarding: bool,
    /// The first bytes of the line being skipped, to tell what it was.
    discarded_head: Vec<u8>,
}

impl Conn {
    /// Wraps an accepted TCP stream.
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            write_failed: false,
            discarding: false,
            discarded_head: Vec::new(),
        }
    }

    /// Whether the client sent bytes we have not consumed yet.
    pub fn has_buffered_input(&self) -> bool {
        self.rpos < self.rbuf.len()
    }

    /// Unconsumed input.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.rpos = (self.rpos + n).min(self.rbuf.len());
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Drops all unconsumed input (used at STARTTLS: plaintext sent ahead must not be
    /// interpreted inside the TLS session).
    pub fn discard_input(&mut self) -> usize {
        let n = self.rbuf.len() - self.rpos;
        self.rbuf.clear();
        self.rpos = 0;
        self.discarding = false;
        self.discarded_head.clear();
        n
    }

    /// Reads more bytes into the buffer, waiting until `deadline`. Cancel-safe: dropping
    /// the future (a timeout, a shutdown) leaves the buffer exactly as it was.
    pub async fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        if self.rpos > 0 && self.rpos * 2 > self.rbuf.capacity() {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        if self.rbuf.is_empty() {
            // Nothing pending: give the buffer back while waiting for the client.
            self.rbuf = Vec::new();
            match tokio::time::timeout_at(deadline, self.stream.readable()).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Err(e)) => return Err(ReadError::Io(e)),
                Ok(Ok(())) => {}
            }
        }
        self.rbuf.reserve(READ_SIZE);
        // `read_buf` appends only the bytes actually read.
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Reads one line (CRLF or bare LF terminated) of at most `max` bytes including the ending.
    /// Cancel-safe: a dropped call leaves the partial line (or the skipping of an
    /// over-long one) for the next.
    pub async fn read_line(&mut self, max: usize, deadline: Instant) -> Result<Line, ReadError> {
        loop {
            let buffered = &self.rbuf[self.rpos..];
            if let Some(lf) = memchr::memchr(b'\n', buffered) {
                let too_long = std::mem::take(&mut self.discarding) || lf + 1 > max;
                let line = &buffered[..lf];
                let result = if too_long {
                    let mut head = std::mem::take(&mut self.discarded_head);
                    extend_head(&mut head, line);
                    Line::TooLong(head)
                } else if let Some(line) = line.strip_suffix(b"\r") {
                    Line::Complete(line.to_vec())
                } else {
                    Line::BareLf(line.to_vec())
                };
                self.consume(lf + 1);
                return Ok(result);
            }
            if buffered.len() >= max {
                // Keep memory bounded: drop what we have and remember the line is bad.
                extend_head(&mut self.discarded_head, buffered);
                self.discarding = true;
                let n = buffered.len();
                self.consume(n);
            }
            self.fill(deadline).await?;
        }
    }

    /// Queues a reply; it is sent at the next [`Conn::flush`]. Dropped once a write has
    /// failed: a client that does not read must not make us hold its replies.
    pub fn queue(&mut self, wire: &str) {
        if !self.write_failed {
            self.wbuf.extend_from_slice(wire.as_bytes());
        }
    }

    /// Bytes of replies queued and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// A write failed or missed its deadline: the client is gone or does not read.
    pub fn write_failed(&self) -> bool {
        self.write_failed
    }

    /// Gives up on the client's replies, sent or to come (a write cut short by the end of
    /// the session): nothing more is queued or written, as after a failed write.
    pub fn abandon_writes(&mut self) {
        self.write_failed = true;
        self.wbuf = Vec::new();
        self.wpos = 0;
    }

    /// Sends queued replies by `deadline`. Cancel-safe: what was written is not written
    /// again by the next call. A failure or a missed deadline is final for the connection.
    pub async fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        if self.write_failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed",
            ));
        }
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let written = tokio::time::timeout_at(deadline, self.write_queued()).await;
        let result = match written {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client does not read its replies",
            )),
        };
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > 4096 {
            // A big reply (EHLO, HELP) is rare: do not keep its buffer for the session.
            self.wbuf = Vec::new();
        }
        if result.is_err() {
            self.write_failed = true;
        }
        result
    }

    async fn write_queued(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            let n = self.stream.write(&self.wbuf[self.wpos..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.wpos += n;
        }
        self.stream.flush().await
    }

    /// Performs the server side of a TLS handshake; the caller has flushed the 220 reply.
    /// Plaintext the client sent ahead is discarded first (STARTTLS injection). Returns
    /// the negotiated protocol version name.
    pub async fn start_tls(
        &mut self,
        acceptor: &TlsAcceptor,
        deadline: Instant,
    ) -> io::Result<&'static str> {
        self.discard_input();
        tokio::time::timeout_at(deadline, self.stream.accept_tls(acceptor))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        Ok(self.stream.tls_version().unwrap_or("unknown"))
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Closes the write side after flushing what is queued by `deadline`.
    pub async fn shutdown(&mut self, deadline: Instant) {
        if self.flush(deadline).await.is_ok() {
            let _ = tokio::time::timeout_at(deadline, self.stream.shutdown()).await;
        }
    }
}
