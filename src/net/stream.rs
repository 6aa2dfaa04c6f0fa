//! One byte stream for both directions of SMTP: plain TCP until STARTTLS, TLS after it
//! (server side for inbound sessions, client side for the relay).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

/// Plain TCP, or TCP after a STARTTLS handshake.
#[derive(Debug)]
pub enum Stream {
    /// Before STARTTLS.
    Plain(TcpStream),
    /// After a successful handshake (either side).
    Tls(Box<TlsStream<TcpStream>>),
    /// During a handshake, or after a failed one: reads see end of file, writes fail.
    Closed,
}

fn not_plain() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no plaintext stream to secure")
}

impl Stream {
    /// Server side of STARTTLS. On failure the stream is closed.
    pub async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Closed) else {
            return Err(not_plain());
        };
        let tls = acceptor.accept(tcp).await?;
        *self = Stream::Tls(Box::new(TlsStream::Server(tls)));
        Ok(())
    }

    /// Client side of STARTTLS towards `name`. On failure the stream is closed.
    pub async fn connect_tls(
        &mut self,
        connector: &TlsConnector,
        name: rustls_pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Closed) else {
            return Err(not_plain());
        };
        let tls = connector.connect(name, tcp).await?;
        *self = Stream::Tls(Box::new(TlsStream::Client(tls)));
        Ok(())
    }

    /// Waits until the stream has something to read (data, end of file or an error), so an
    /// idle reader needs no buffer meanwhile. Over TLS that is plaintext rustls holds
    /// already, or else new bytes on the socket: an idle TLS session held a 16 KiB read
    /// buffer while it waited, 160 MB for ten thousand of them.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.readable().await,
            Stream::Tls(tls) => {
                // rustls wants to read exactly when it holds no plaintext for us.
                let (tcp, wants_read) = match tls.as_ref() {
                    TlsStream::Server(s) => (s.get_ref().0, s.get_ref().1.wants_read()),
                    TlsStream::Client(c) => (c.get_ref().0, c.get_ref().1.wants_read()),
                };
                if wants_read {
                    tcp.readable().await
                } else {
                    Ok(())
                }
            }
            Stream::Closed => Ok(()),
        }
    }

    /// Whether TLS is in effect.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The negotiated TLS version (`TLSv1_3`), once TLS is in effect.
    pub fn tls_version(&self) -> Option<&'static str> {
        let Stream::Tls(tls) = self else { return None };
        let version = match tls.as_ref() {
            TlsStream::Server(s) => s.get_ref().1.protocol_version(),
            TlsStream::Client(c) => c.get_ref().1.protocol_version(),
        };
        version.and_then(|v| v.as_str())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}
