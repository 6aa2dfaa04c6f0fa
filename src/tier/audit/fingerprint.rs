//! Policy fingerprints from the admin endpoints the operator named: `GET /policy` on each,
//! the `fingerprint` field of its JSON.
//!
//! A plain `HTTP/1.0` exchange over TCP is all this takes: one request, a body of a few
//! hundred bytes read until the server closes, every step under the audit's timeout and
//! the response size bounded (the endpoint may not be mxguard, or not even HTTP).

use super::AdminEndpoint;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest response read: `/policy` is well under a kilobyte.
const MAX_RESPONSE: usize = 64 * 1024;
/// Longest fingerprint accepted (mxguard's is 64 hex digits).
const MAX_FINGERPRINT: usize = 128;

/// The fingerprint one admin endpoint reported, or why it could not be had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminFingerprint {
    /// The name given on the command line.
    pub name: String,
    /// The admin endpoint asked.
    pub address: SocketAddr,
    /// The policy fingerprint, when the endpoint answered with one.
    pub fingerprint: Option<String>,
    /// Why there is no fingerprint.
    pub error: Option<String>,
}

/// Why `/policy` gave no fingerprint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(String),
    /// No complete answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The answer is larger than any `/policy` document.
    #[error("response larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// Not an HTTP response, or a framing this client does not read.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// Not 200 (403 means the audit host is outside `metrics.allow`).
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is not JSON with a string `fingerprint`.
    #[error("no fingerprint in the /policy document")]
    NoFingerprint,
}

/// Fetches every endpoint's fingerprint at once, keeping the command-line order.
pub async fn fetch_all(admins: &[AdminEndpoint], limit: Duration) -> Vec<AdminFingerprint> {
    futures::future::join_all(admins.iter().map(|admin| async move {
        let result = fetch(admin.address, limit).await;
        AdminFingerprint {
            name: admin.name.clone(),
            address: admin.address,
            error: result.as_ref().err().map(ToString::to_string),
            fingerprint: result.ok(),
        }
    }))
    .await
}

/// `GET /policy` on `address`; the fingerprint it reports.
pub async fn fetch(address: SocketAddr, limit: Duration) -> Result<String, FetchError> {
    let io_error = |e: std::io::Error| FetchError::Io(e.to_string());
    let mut stream = timeout(limit, TcpStream::connect(address))
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(io_error)?;
    let request = format!(
        "GET /policy HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    );
    let exchange = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(io_error)?;
        let mut raw = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.map_err(io_error)?;
            if n == 0 {
                return Ok(raw);
            }
            if raw.len() + n > MAX_RESPONSE {
                return Err(FetchError::TooLarge);
            }
            raw.extend_from_slice(&chunk[..n]);
        }
    };
    let raw = timeout(limit, exchange)
        .await
        .map_err(|_| FetchError::Timeout)??;
    parse_policy_response(&raw)
}

/// The fingerprint in a complete HTTP response to `GET /policy`.
pub fn parse_policy_response(raw: &[u8]) -> Result<String, FetchError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(FetchError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| FetchError::Malformed("headers"))?;
    let mut body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(FetchError::Malformed("status line"));
    }
    let status: u16 = words
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or(FetchError::Malformed("status code"))?;
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity")
        {
            // An HTTP/1.0 request must not get a chunked answer; this client does not
            // pretend to read one.
            return Err(FetchError::Malformed("transfer encoding"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .parse()
                .map_err(|_| FetchError::Malformed("content length"))?;
            body = body
                .get(..length)
                .ok_or(FetchError::Malformed("body shorter than its length"))?;
        }
    }
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| FetchError::NoFingerprint)?;
    match document.get("fingerprint").and_then(|f| f.as_str()) {
        Some(f)
            if !f.is_empty()
                && f.len() <= MAX_FINGERPRINT
                && f.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(f.to_ascii_lowercase())
        }
        _ => Err(FetchError::NoFingerprint),
    }
}
