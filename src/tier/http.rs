//! A tiny HTTP/1.0 GET for a gateway's admin listener (`/healthz`, `/policy`): one request,
//! one bounded response, one deadline. Used by the peer view and by `mxguard audit`; the
//! far end may not be mxguard, or not even HTTP, so every step is bounded and checked.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read: our admin documents are a few kilobytes.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why a GET failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(String),
    /// No complete answer before the deadline.
    #[error("timed out")]
    Timeout,
    /// The answer is larger than any admin document.
    #[error("response larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// Not an HTTP response, or a framing this client does not read.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e.to_string())
    }
}

/// `GET path` from `addr`: the status code and the body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let raw = tokio::time::timeout(timeout, exchange(addr, path))
        .await
        .map_err(|_| HttpError::Timeout)??;
    parse_response(&raw)
}

/// `addr` as a `Host` header names it: without a link-local address's zone
/// (`[fe80::1%2]:9425`), which belongs to this host's interfaces and has no place in `Host`
/// (RFC 9110 §7.2); the gateway refused such a `Host`, so a peer at a link-local admin
/// address always looked down.
fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

async fn exchange(addr: SocketAddr, path: &str) -> Result<Vec<u8>, HttpError> {
    let mut tcp = TcpStream::connect(addr).await?;
    let host = host_of(addr);
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(raw);
        }
        if raw.len() + n > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// The status and body of a complete HTTP/1.x response read until the server closed.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HttpError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| HttpError::Malformed("headers"))?;
    let mut body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or_default().split(' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(HttpError::Malformed("status line"));
    }
    let status: u16 = words
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or(HttpError::Malformed("status code"))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity")
        {
            // An HTTP/1.0 request must not get a chunked answer; this client does not
            // pretend to read one.
            return Err(HttpError::Malformed("transfer encoding"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            // 1*DIGIT only (no sign), and one value: a response that states two lengths
            // has no single body to read (RFC 9112 §6.3).
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed("content length"));
            }
            let length: usize = value
                .parse()
                .map_err(|_| HttpError::Malformed("content length"))?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(HttpError::Malformed("conflicting content lengths"));
            }
            content_length = Some(length);
        }
    }
    if let Some(length) = content_length {
        body = body
            .get(..length)
            .ok_or(HttpError::Malformed("body shorter than its length"))?;
    }
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_names_no_zone() {
        let host = |a: &str| host_of(a.parse().unwrap());
        assert_eq!(host("[fe80::1%2]:9425"), "[fe80::1]:9425");
        assert_eq!(host("[2001:db8::1]:9425"), "[2001:db8::1]:9425");
        assert_eq!(host("10.0.0.1:9425"), "10.0.0.1:9425");
    }

    #[test]
    fn status_and_body_are_read() {
        let (code, body) =
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\ndraining\n").unwrap();
        assert_eq!((code, body.as_slice()), (503, &b"draining\n"[..]));
        let (_, body) =
            parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!(body, b"ok");
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }

    /// Found by the `audit_answers` fuzz target: two different `Content-Length` values
    /// (and signed ones) were accepted, the last one winning, so the body depended on
    /// header order. Such a response has no single body: refused.
    #[test]
    fn conflicting_or_signed_content_length_is_malformed() {
        const FUZZ: &[u8] = b"HTTP/1.1 200 OKHTTP/\r\nConnt-t\r\nContent-Length:+43\r\n\rKHTTP/\r\nConnt-t\r\nContent-Length:+42\r\n\r\n{\"\x19fi))))44\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\aaaaaaaaaaHTTP/5150}\n{\"fi))))44\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\aaaaaamaaaaHTTP/5150}";
        assert_eq!(
            parse_response(FUZZ),
            Err(HttpError::Malformed("content length"))
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\nContent-Length: 2\r\n\r\nokok"
            ),
            Err(HttpError::Malformed("conflicting content lengths"))
        );
        assert!(parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: +2\r\n\r\nok").is_err());
        assert!(parse_response(b"HTTP/1.0 200 OK\r\nContent-Length:\r\n\r\nok").is_err());
        // The same length twice is one length.
        let (_, body) = parse_response(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nContent-length: 2\r\n\r\nokEXTRA",
        )
        .unwrap();
        assert_eq!(body, b"ok");
    }
}
