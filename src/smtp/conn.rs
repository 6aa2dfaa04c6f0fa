//! The client connection: plaintext or TLS stream, our own read buffer (so STARTTLS can
//! throw away pipelined plaintext), line framing with a length limit, and reply batching
//! for PIPELINING.

use super::framing::{Framed, Framer};
pub use super::framing::{Line, TOO_LONG_HEAD};
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
    /// Where the line being read stands (over the limit or not).
    framer: Framer,
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
            framer: Framer::default(),
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
        self.framer.reset();
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
            match self.framer.frame(&self.rbuf[self.rpos..], max) {
                Framed::Line(line, used) => {
                    self.consume(used);
                    return Ok(line);
                }
                Framed::NeedMore { drop } => self.consume(drop),
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
