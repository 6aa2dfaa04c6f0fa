//! A small async clamd client: one `zINSTREAM` per stream over TCP or a Unix socket.
//!
//! The protocol: `zINSTREAM\0`, then chunks of a 4-byte big-endian length and that many
//! bytes, then a zero-length chunk; clamd answers one NUL-terminated line, `stream: OK`,
//! `stream: NAME FOUND` or `... ERROR`, and closes. No crate on crates.io does this on
//! tokio and is kept up, and the exchange is small enough to own.

use crate::config::{AntivirusConfig, ClamdAddress};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// Bytes per INSTREAM chunk (well under any `StreamMaxLength`).
const CHUNK: usize = 64 * 1024;
/// Longest answer read; clamd's are one short line.
const MAX_REPLY: usize = 4096;

/// Why a stream could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    /// clamd could not be reached.
    #[error("cannot connect to clamd at {0}: {1}")]
    Connect(String, std::io::Error),
    /// The connection failed while talking.
    #[error("clamd connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// clamd did not answer within the configured timeout.
    #[error("clamd did not answer within {0:?}")]
    Timeout(Duration),
    /// clamd answered with an error (size limit, out of memory, ...).
    #[error("clamd error: {0}")]
    Scanner(String),
    /// The answer is not one clamd gives.
    #[error("unexpected clamd answer: {0:?}")]
    Protocol(String),
}

/// What clamd found in one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanVerdict {
    /// Nothing.
    Clean,
    /// A signature matched; its name as clamd reports it.
    Infected(String),
}

/// The outcome of scanning the streams of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// `Infected` as soon as one stream is.
    pub verdict: ScanVerdict,
    /// Some stream was longer than `max_stream_bytes` and was scanned up to there.
    pub truncated: bool,
}

/// A clamd to send streams to. Cheap to clone; connects once per stream.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
    timeout: Duration,
    max_stream_bytes: usize,
    /// The smallest stream clamd refused for its `StreamMaxLength` lately, so that later
    /// big streams start below it instead of being sent whole first (about twice the
    /// bytes for every big message), and the mismatch is said once, not per message.
    refused: std::sync::Arc<RefusedSize>,
}

/// How long a size clamd refused is remembered: clamd may be reconfigured meanwhile.
const REFUSAL_MEMORY: Duration = Duration::from_secs(3600);

/// The smallest stream size clamd refused, and when.
#[derive(Debug, Default)]
struct RefusedSize(std::sync::Mutex<Option<(usize, std::time::Instant)>>);

impl RefusedSize {
    /// The smallest size refused within the hour.
    fn remembered(&self) -> Option<usize> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        fresh(*guard)
    }

    /// Where to cut a stream of `len` bytes first, given `max` (`max_stream_bytes`): at
    /// half the size refused within the hour when the stream is at least that long.
    fn first_cut(&self, len: usize, max: usize) -> usize {
        let cut = len.min(max);
        match self.remembered() {
            Some(size) if cut >= size => (size / 2).max(MIN_STREAM_BYTES),
            _ => cut,
        }
    }

    /// Records a refusal of `size` bytes; whether it is news (none remembered), which is
    /// when the mismatch is worth an error line.
    fn note(&self, size: usize) -> bool {
        // Read and written under one lock: two refusals at once make one error line.
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let known = fresh(*guard);
        *guard = Some((
            known.map_or(size, |k| k.min(size)),
            std::time::Instant::now(),
        ));
        known.is_none()
    }
}

/// The size of a refusal still remembered (within [`REFUSAL_MEMORY`]).
fn fresh(refusal: Option<(usize, std::time::Instant)>) -> Option<usize> {
    refusal
        .filter(|(_, at)| at.elapsed() < REFUSAL_MEMORY)
        .map(|(size, _)| size)
}

/// Fewest bytes a stream is cut to when clamd refuses it for size.
const MIN_STREAM_BYTES: usize = 64 * 1024;

/// Whether clamd refused a stream for its `StreamMaxLength`.
fn refused_for_size(error: &ClamdError) -> bool {
    matches!(error, ClamdError::Scanner(reply) if reply.contains("size limit exceeded"))
}

impl Clamd {
    /// A client for `address` bounding each message's scan by `timeout`.
    pub fn new(address: ClamdAddress, timeout: Duration, max_stream_bytes: usize) -> Clamd {
        Clamd {
            address,
            timeout,
            max_stream_bytes: max_stream_bytes.max(1),
            refused: std::sync::Arc::default(),
        }
    }

    /// The client `[antivirus]` asks for, or `None` when no clamd is configured.
    pub fn from_config(config: &AntivirusConfig) -> Option<Clamd> {
        let address = config.clamd.clone()?;
        Some(Clamd::new(address, config.timeout, config.max_stream_bytes))
    }

    /// Where it connects.
    pub fn address(&self) -> &ClamdAddress {
        &self.address
    }

    /// Scans `streams` one after the other, stopping at the first infected one, all within
    /// the timeout. A stream clamd refuses for its `StreamMaxLength` (set below
    /// `max_stream_bytes`) is scanned again cut to half, down to 64 KiB, and the scan marked
    /// truncated: a configuration mismatch must not make every big message unscannable
    /// (review: with `on_failure = "open"` EICAR in a 2 MB attachment went through). The
    /// size refused is remembered for an hour, so later streams start cut.
    ///
    /// Each stream may take at most half of the time left while others wait (all of it
    /// when it is the last), and one that fails or runs out of it does not end the scan: a file crafted to be slow for clamd, put first, left the
    /// infected one after it unscanned (review). A virus found wins; otherwise the first
    /// failure is the answer.
    pub async fn scan_all(&self, streams: &[&[u8]]) -> Result<ScanReport, ClamdError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut truncated = false;
        let mut failure: Option<ClamdError> = None;
        for (k, data) in streams.iter().enumerate() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                failure.get_or_insert(ClamdError::Timeout(self.timeout));
                break;
            }
            // At most half of what is left while others wait: a big file first keeps
            // most of the time it needs, and a slow one leaves the rest their half.
            let share = if k + 1 < streams.len() {
                left / 2
            } else {
                left
            };
            let verdict = match tokio::time::timeout(share, self.scan_stream(data)).await {
                Ok(Ok((verdict, cut))) => {
                    truncated |= cut;
                    verdict
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                    continue;
                }
                Err(_) => {
                    failure.get_or_insert(ClamdError::Timeout(self.timeout));
                    continue;
                }
            };
            if let ScanVerdict::Infected(name) = verdict {
                return Ok(ScanReport {
                    verdict: ScanVerdict::Infected(name),
                    truncated,
                });
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ScanReport {
                verdict: ScanVerdict::Clean,
                truncated,
            }),
        }
    }

    /// One stream, cut further each time clamd refuses it for its size; the verdict and
    /// whether the stream was cut.
    async fn scan_stream(&self, data: &[u8]) -> Result<(ScanVerdict, bool), ClamdError> {
        let mut cut = self.refused.first_cut(data.len(), self.max_stream_bytes);
        loop {
            let slice = data.get(..cut).unwrap_or(data);
            match self.scan_one(slice).await {
                Err(e) if refused_for_size(&e) && cut > MIN_STREAM_BYTES => {
                    if self.refused.note(cut) {
                        tracing::error!(refused_bytes = cut, "clamd refused a stream for its StreamMaxLength: set antivirus.max_stream_bytes to it or lower (streams are cut further meanwhile)");
                    }
                    cut = (cut / 2).max(MIN_STREAM_BYTES);
                }
                other => return other.map(|verdict| (verdict, cut < data.len())),
            }
        }
    }

    /// Scans one stream (at most `max_stream_bytes` of it) within the timeout.
    pub async fn scan(&self, data: &[u8]) -> Result<ScanReport, ClamdError> {
        self.scan_all(&[data]).await
    }

    async fn scan_one(&self, data: &[u8]) -> Result<ScanVerdict, ClamdError> {
        let connect_error = |e| ClamdError::Connect(self.address.to_string(), e);
        match &self.address {
            ClamdAddress::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(connect_error)?;
                // The short terminating chunk must not wait for an ACK (Nagle).
                let _ = stream.set_nodelay(true);
                instream(stream, data).await
            }
            ClamdAddress::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                instream(stream, data).await
            }
        }
    }
}

/// One INSTREAM exchange on a fresh connection.
async fn instream<S>(stream: S, data: &[u8]) -> Result<ScanVerdict, ClamdError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::with_capacity(CHUNK + 8, writer);
    let sent = send_stream(&mut writer, data).await;
    // clamd answers early and closes when it refuses a stream (size limit): read the
    // answer even when sending failed, and report the send error only without one.
    match read_reply(reader).await {
        Ok(reply) if !reply.is_empty() => parse_reply(&reply),
        Ok(_) => match sent {
            Err(e) => Err(ClamdError::Io(e)),
            Ok(()) => Err(ClamdError::Protocol(String::new())),
        },
        Err(e) => Err(ClamdError::Io(sent.err().unwrap_or(e))),
    }
}

async fn send_stream<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) -> std::io::Result<()> {
    writer.write_all(b"zINSTREAM\0").await?;
    for chunk in data.chunks(CHUNK) {
        // Chunks are at most CHUNK bytes, far below u32::MAX.
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        writer.write_all(&len.to_be_bytes()).await?;
        writer.write_all(chunk).await?;
    }
    writer.write_all(&[0, 0, 0, 0]).await?;
    writer.flush().await
}

async fn read_reply<R: AsyncRead + Unpin>(mut reader: R) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let got = buf.get(..n).unwrap_or_default();
        if let Some(end) = memchr::memchr(0, got) {
            reply.extend_from_slice(got.get(..end).unwrap_or_default());
            break;
        }
        reply.extend_from_slice(got);
        if reply.len() > MAX_REPLY {
            break;
        }
    }
    reply.truncate(MAX_REPLY);
    Ok(reply)
}

/// Reads `stream: OK`, `stream: NAME FOUND` or `... ERROR`.
fn parse_reply(reply: &[u8]) -> Result<ScanVerdict, ClamdError> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    // Unix-socket answers start with "stream: ", some versions with "1: stream: ".
    let body = text.split_once(": ").map_or(text, |(_, b)| b);
    let body = body.strip_prefix("stream: ").unwrap_or(body);
    if body == "OK" {
        return Ok(ScanVerdict::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return Ok(ScanVerdict::Infected(name.trim().to_string()));
    }
    if text.ends_with("ERROR") {
        return Err(ClamdError::Scanner(text.to_string()));
    }
    Err(ClamdError::Protocol(text.to_string()))
}

#[cfg(test)]
#[path = "clamd_tests.rs"]
mod tests;
