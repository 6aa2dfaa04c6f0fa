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
    /// A line without its line ending.
    Complete(Vec<u8>),
    /// A line over the limit; it was read to its end and discarded.
    TooLong,
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
    /// The line being read is over the limit and is being skipped to its end.
    discarding: bool,
}

impl Conn {
    /// Wraps an accepted TCP stream.
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            discarding: false,
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

    /// Reads one line (CRLF or LF terminated) of at most `max` bytes including the ending.
    /// Cancel-safe: a dropped call leaves the partial line (or the skipping of an
    /// over-long one) for the next.
    pub async fn read_line(&mut self, max: usize, deadline: Instant) -> Result<Line, ReadError> {
        loop {
            let buffered = &self.rbuf[self.rpos..];
            if let Some(lf) = memchr::memchr(b'\n', buffered) {
                let too_long = std::mem::take(&mut self.discarding) || lf + 1 > max;
                let mut line = &buffered[..lf];
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                let result = if too_long {
                    Line::TooLong
                } else {
                    Line::Complete(line.to_vec())
                };
                self.consume(lf + 1);
                return Ok(result);
            }
            if buffered.len() >= max {
                // Keep memory bounded: drop what we have and remember the line is bad.
                self.discarding = true;
                let n = buffered.len();
                self.consume(n);
            }
            self.fill(deadline).await?;
        }
    }

    /// Queues a reply; it is sent at the next [`Conn::flush`].
    pub fn queue(&mut self, wire: &str) {
        self.wbuf.extend_from_slice(wire.as_bytes());
    }

    /// Sends queued replies.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        if self.wbuf.capacity() > 4096 {
            // A big reply (EHLO, HELP) is rare: do not keep its buffer for the session.
            self.wbuf = Vec::new();
        }
        result?;
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

    /// Closes the write side after flushing.
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
