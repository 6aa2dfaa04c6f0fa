//! Connections through a load balancer: the PROXY protocol header (v1 or v2) is read off
//! the socket before anything else, so admission, checks and logs see the real client.
//!
//! Exactly the header's bytes are consumed (a v1 line is read up to its CRLF, a v2 header
//! to its declared length): whatever the client sends next is SMTP and stays in the socket.

use crate::net::proxy::{self, ProxyError, V2_MAX};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Why a connection from a load balancer was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyRefusal {
    /// The peer is not a listed load balancer.
    #[error("not in server.proxy_protocol_from")]
    NotAllowed,
    /// No complete header before `server.proxy_protocol_timeout`.
    #[error("no PROXY header in time")]
    Timeout,
    /// The bytes are not a valid header.
    #[error(transparent)]
    Header(#[from] ProxyError),
    /// The connection failed or closed while the header was read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The balancer closed without sending a byte: a TCP health check, not a refusal.
    #[error("closed before sending anything")]
    Silent,
}

/// Shortest v1 header (`PROXY UNKNOWN\r\n`) and the v2 fixed part both fit in this.
const FIRST_READ: usize = 15;
/// Bytes of the v2 fixed part: signature (12), version/command, family, length (2).
const V2_FIXED: usize = 16;

/// The real client behind `peer`: from the header when `peer` is a listed balancer,
/// the socket's own address for a `LOCAL` header (the balancer's health check).
pub async fn real_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    allowed: &crate::config::NetworkList,
    limit: Duration,
) -> Result<SocketAddr, ProxyRefusal> {
    if !allowed.contains(peer.ip()) {
        return Err(ProxyRefusal::NotAllowed);
    }
    let header = tokio::time::timeout(limit, read_header(tcp))
        .await
        .map_err(|_| ProxyRefusal::Timeout)??;
    Ok(header.source.unwrap_or(peer))
}

async fn read_header(tcp: &mut TcpStream) -> Result<proxy::ProxyHeader, ProxyRefusal> {
    let mut buf = vec![0u8; FIRST_READ];
    // A check closed with a reset (HAProxy's linger-0 close) is as silent as a FIN.
    match tcp.read(&mut buf[..1]).await {
        Ok(0) => return Err(ProxyRefusal::Silent),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            return Err(ProxyRefusal::Silent)
        }
        Err(e) => return Err(e.into()),
    }
    tcp.read_exact(&mut buf[1..]).await?;
    if buf[0] == b'\r' {
        // v2: the fixed part says how much follows.
        buf.resize(V2_FIXED, 0);
        tcp.read_exact(&mut buf[FIRST_READ..]).await?;
        let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if V2_FIXED + length > V2_MAX {
            return Err(ProxyError::Malformed("v2 header too long").into());
        }
        buf.resize(V2_FIXED + length, 0);
        tcp.read_exact(&mut buf[V2_FIXED..]).await?;
    }
    loop {
        match proxy::parse(&buf)? {
            Some((header, used)) if used == buf.len() => return Ok(header),
            Some(_) => return Err(ProxyError::Malformed("bytes inside the header").into()),
            None => {
                // v1: one byte at a time up to the CRLF, so no SMTP byte is taken; the
                // parser bounds the line's length.
                let mut byte = [0u8; 1];
                tcp.read_exact(&mut byte).await?;
                buf.push(byte[0]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkList;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn through(
        bytes: &'static [u8],
        allowed: &[&str],
    ) -> Result<(SocketAddr, Vec<u8>), ProxyRefusal> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(bytes).await.unwrap();
            c.shutdown().await.unwrap();
            c
        });
        let (mut tcp, peer) = listener.accept().await.unwrap();
        let allowed = NetworkList::parse(allowed).unwrap();
        let real = real_client(&mut tcp, peer, &allowed, Duration::from_secs(5)).await;
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        drop(client.await);
        real.map(|r| (r, rest))
    }

    #[tokio::test]
    async fn v1_gives_the_client_and_leaves_smtp_bytes() {
        let (real, rest) = through(
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n",
            &["127.0.0.0/8"],
        )
        .await
        .unwrap();
        assert_eq!(real, "192.0.2.7:40000".parse().unwrap());
        assert_eq!(rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn v2_gives_the_client_and_local_keeps_the_socket_address() {
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        v2.extend_from_slice(&[203, 0, 113, 9, 198, 51, 100, 1, 0x9c, 0x40, 0, 25]);
        v2.extend_from_slice(b"QUIT\r\n");
        let (real, rest) = through(v2.leak(), &["127.0.0.1/32"]).await.unwrap();
        assert_eq!(real, "203.0.113.9:40000".parse().unwrap());
        assert_eq!(rest, b"QUIT\r\n");
        let (real, _) = through(b"PROXY UNKNOWN\r\n", &["127.0.0.1/32"])
            .await
            .unwrap();
        assert_eq!(real.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    }

    #[tokio::test]
    async fn others_and_bad_headers_are_refused() {
        let refused = through(
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r\n",
            &["10.0.0.0/8"],
        )
        .await;
        assert!(matches!(refused, Err(ProxyRefusal::NotAllowed)));
        let refused = through(b"EHLO client.example\r\n", &["127.0.0.0/8"]).await;
        assert!(matches!(refused, Err(ProxyRefusal::Header(_))));
        let refused = through(b"PROXY TCP4 1.2.3.4", &["127.0.0.0/8"]).await;
        assert!(matches!(refused, Err(ProxyRefusal::Io(_))));
        let long = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25 and a great deal more text than any header may carry xxxxxxxxxxxxxxxxxx\r\n";
        assert!(matches!(
            through(long, &["127.0.0.0/8"]).await,
            Err(ProxyRefusal::Header(_))
        ));
    }
}
