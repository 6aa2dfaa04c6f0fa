//! A tiny HTTP/1.0 GET for a peer's admin listener (`/healthz`, `/policy`): one request,
//! one bounded response, one deadline. Enough for our own endpoints; not a general client.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No complete answer before the deadline.
    #[error("timed out")]
    Timeout,
    /// The answer is not HTTP.
    #[error("not an HTTP response")]
    Malformed,
}

/// `GET path` from `addr`: the status code and the body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    tokio::time::timeout(timeout, fetch(addr, path))
        .await
        .map_err(|_| HttpError::Timeout)?
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), HttpError> {
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 || raw.len() + n > MAX_RESPONSE {
            raw.extend_from_slice(&chunk[..n.min(MAX_RESPONSE.saturating_sub(raw.len()))]);
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<(u16, String), HttpError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(HttpError::Malformed)?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or(HttpError::Malformed)?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_body_are_read() {
        let (code, body) =
            parse(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\ndraining\n").unwrap();
        assert_eq!((code, body.as_str()), (503, "draining\n"));
        assert!(parse(b"garbage").is_err());
    }
}
