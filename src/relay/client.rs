//! SMTP client to the internal servers: connect, EHLO, STARTTLS, one pipelined transaction per message.
//!
//! This is the relay's hot path, so it is a small implementation of its own over tokio:
//! one buffered read side that parses (multiline) replies, one write per pipelined batch,
//! per-recipient results, and a connection that is kept for the next message.

use crate::config::{RelayConfig, RelayTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Longest reply (all lines together) accepted from a server before it is called broken.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Why talking to an internal server failed. Every variant is a temporary failure for the
/// message concerned: the server, not the message, is the problem.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("connect to {server}: {source}")]
    Connect {
        /// Server tried.
        server: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// The TCP connection was not made within `connect_timeout`.
    #[error("connect to {server}: timed out")]
    ConnectTimeout {
        /// Server tried.
        server: SocketAddr,
    },
    /// Reading or writing failed (including the server closing the connection).
    #[error("{stage}: {source}")]
    Io {
        /// Protocol step during which it happened.
        stage: &'static str,
        /// Underlying error.
        source: io::Error,
    },
    /// No reply within the deadline.
    #[error("{stage}: timed out waiting for the server")]
    Timeout {
        /// Protocol step during which it happened.
        stage: &'static str,
    },
    /// The server sent something that is not an SMTP reply.
    #[error("{stage}: protocol error: {detail}")]
    Protocol {
        /// Protocol step during which it happened.
        stage: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The server refused the session itself (banner, EHLO/HELO, or a 421 anywhere).
    #[error("{stage}: {reply}")]
    Refused {
        /// Protocol step during which it happened.
        stage: &'static str,
        /// The server's reply.
        reply: Reply,
    },
    /// `relay.tls = "required"` and the server does not offer STARTTLS.
    #[error("STARTTLS required but not offered by {server}")]
    TlsNotOffered {
        /// Server concerned.
        server: SocketAddr,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {server}: {detail}")]
    Tls {
        /// Server concerned.
        server: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// No server was configured to try.
    #[error("no internal server configured")]
    NoServer,
}

impl ClientError {
    /// The failure happened after the message body was handed over, while waiting for
    /// the final reply: the server may have the message, so it must not be offered to
    /// another server at once.
    pub fn after_body(&self) -> bool {
        matches!(
            self,
            ClientError::Io {
                stage: STAGE_DATA_END,
                ..
            } | ClientError::Timeout {
                stage: STAGE_DATA_END
            } | ClientError::Refused {
                stage: STAGE_DATA_END,
                ..
            }
        )
    }

    /// The failure happened on the first command of a reused connection (the server
    /// closed it while idle): a fresh connection should simply be tried.
    pub fn stale_connection(&self) -> bool {
        matches!(
            self,
            ClientError::Io {
                stage: STAGE_RSET,
                ..
            } | ClientError::Timeout { stage: STAGE_RSET }
                | ClientError::Protocol {
                    stage: STAGE_RSET,
                    ..
                }
                | ClientError::Refused {
                    stage: STAGE_RSET,
                    ..
                }
        )
    }
}

const STAGE_RSET: &str = "RSET";
const STAGE_DATA_END: &str = "end of data";

/// One SMTP reply, possibly of several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply made up locally (for failures that have no server reply).
    pub fn local(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_owned()],
        }
    }

    /// First digit of the code: 2 success, 3 intermediate, 4 temporary, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// 4xx.
    pub fn is_temporary(&self) -> bool {
        self.class() == 4
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.class() == 5
    }

    /// The RFC 3463 enhanced status code at the start of the first line, such as `5.1.1`.
    pub fn enhanced_code(&self) -> Option<String> {
        let first = self.lines.first()?;
        let token = first.split_whitespace().next()?;
        let mut parts = token.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        let ok = parts.next().is_none()
            && matches!(class, "2" | "4" | "5")
            && (1..=3).contains(&subject.len())
            && (1..=3).contains(&detail.len())
            && subject.bytes().all(|b| b.is_ascii_digit())
            && detail.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| token.to_owned())
    }

    /// The reply on one line, as logged and quoted in DSNs: `550 5.1.1 no such user`.
    pub fn text(&self) -> String {
        let mut s = self.code.to_string();
        for l in &self.lines {
            if !l.is_empty() {
                s.push(' ');
                s.push_str(l);
            }
        }
        s
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// ESMTP extensions the server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (false after a HELO fallback: no extensions at all).
    pub esmtp: bool,
    /// RFC 2920 command pipelining.
    pub pipelining: bool,
    /// RFC 1870 SIZE; the limit when one was given (0 means no fixed limit).
    pub size: Option<u64>,
    /// RFC 6152 8BITMIME.
    pub eight_bit_mime: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3207 STARTTLS.
    pub starttls: bool,
    /// RFC 3030 CHUNKING (recorded; BDAT is not used: DATA with pipelining is as fast).
    pub chunking: bool,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        // The first line is the greeting; each further line is one extension.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "CHUNKING" => caps.chunking = true,
                _ => {}
            }
        }
        caps
    }
}

/// Everything a connection needs to know, taken once from [`RelayConfig`].
#[derive(Clone)]
pub struct ClientSettings {
    /// Name sent in EHLO/HELO.
    pub helo_name: String,
    /// STARTTLS policy.
    pub tls: RelayTls,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Deadline for each reply other than the one after the message body.
    pub command_timeout: Duration,
    /// Deadline for writing the body and for the reply after it.
    pub data_timeout: Duration,
    tls_connector: TlsConnector,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("helo_name", &self.helo_name)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("data_timeout", &self.data_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientSettings {
    /// Settings for delivery connections, from the relay configuration.
    pub fn from_config(relay: &RelayConfig) -> ClientSettings {
        ClientSettings {
            helo_name: relay.helo_name.clone(),
            tls: relay.tls,
            connect_timeout: relay.connect_timeout,
            command_timeout: relay.command_timeout,
            data_timeout: relay.data_timeout,
            tls_connector: tls_connector(),
        }
    }
}

/// A TLS connector that accepts any server certificate (see [`AcceptAnyCert`]).
fn tls_connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AcceptAnyCert {
        provider: provider.clone(),
    });
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
        // The default provider always supports the default versions; should that ever
        // change, fall back to the process default so the relay still starts.
        Err(_) => rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// Certificate verifier that accepts whatever certificate the internal server shows.
///
/// Why this is acceptable: the hop is to our own internal server, addressed by IP, on a
/// network we control, and STARTTLS here is opportunistic protection against passive
/// sniffing. Internal servers commonly run self-signed certificates and there is no CA
/// configuration for this hop; refusing them would only push delivery back to plaintext.
/// The handshake signature is still checked, so the peer must hold the key of the
/// certificate it presents.
#[derive(Debug)]
pub struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The byte stream under a connection: plain TCP, or TCP after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the stream, or after a failed handshake.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is closed")
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
            Stream::Gone => Poll::Ready(Err(gone())),
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
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// One message to hand over: envelope and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// Reverse path without brackets; empty for `<>`.
    pub mail_from: &'a str,
    /// Forward paths without brackets.
    pub recipients: &'a [String],
    /// Message bytes with CRLF line endings, not dot-stuffed.
    pub body: &'a [u8],
    /// The body has 8-bit content (declare `BODY=8BITMIME` when offered).
    pub body_8bit: bool,
    /// The envelope or headers need SMTPUTF8 (declare it when offered).
    pub smtputf8: bool,
}

/// An open, greeted SMTP connection to one internal server, reusable across messages.
pub struct Connection {
    stream: Stream,
    rbuf: Vec<u8>,
    server: SocketAddr,
    caps: Capabilities,
    tls_active: bool,
    settings: ClientSettings,
    /// A transaction was run on this connection: the next one starts with RSET.
    used: bool,
    last_used: Instant,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("caps", &self.caps)
            .field("tls", &self.tls_active)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Opens a connection to the first server of `servers` that accepts a session;
    /// connection failures, refusals (421 and the like) and timeouts move on to the next.
    /// Returns the last error when none works.
    pub async fn connect_any(
        servers: &[SocketAddr],
        settings: &ClientSettings,
    ) -> Result<Connection, ClientError> {
        let mut last = ClientError::NoServer;
        for &server in servers {
            match Connection::open(server, settings).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(%server, error = %e, "internal server unusable, trying next");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Connects to one server: banner, EHLO (HELO if EHLO is refused), STARTTLS per
    /// `settings.tls`, and EHLO again after TLS.
    pub async fn open(
        server: SocketAddr,
        settings: &ClientSettings,
    ) -> Result<Connection, ClientError> {
        match Self::open_with(server, settings, settings.tls).await {
            // Opportunistic TLS that fails in the handshake: the connection is unusable,
            // but the server is fine; deliver in plaintext as if TLS were not offered.
            Err(ClientError::Tls { detail, .. }) if settings.tls == RelayTls::Opportunistic => {
                tracing::warn!(%server, %detail, "opportunistic STARTTLS failed; retrying in plaintext");
                Self::open_with(server, settings, RelayTls::Off).await
            }
            other => other,
        }
    }

    async fn open_with(
        server: SocketAddr,
        settings: &ClientSettings,
        tls: RelayTls,
    ) -> Result<Connection, ClientError> {
        let tcp = match timeout(settings.connect_timeout, TcpStream::connect(server)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ClientError::Connect { server, source }),
            Err(_) => return Err(ClientError::ConnectTimeout { server }),
        };
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            rbuf: Vec::with_capacity(4096),
            server,
            caps: Capabilities::default(),
            tls_active: false,
            settings: settings.clone(),
            used: false,
            last_used: Instant::now(),
        };
        let banner = conn.read_reply("banner", settings.command_timeout).await?;
        if !banner.is_positive() {
            return Err(ClientError::Refused {
                stage: "banner",
                reply: banner,
            });
        }
        conn.greet().await?;
        if tls != RelayTls::Off {
            if conn.caps.starttls {
                conn.starttls(tls).await?;
            } else if tls == RelayTls::Required {
                return Err(ClientError::TlsNotOffered { server });
            }
        }
        conn.last_used = Instant::now();
        Ok(conn)
    }

    async fn greet(&mut self) -> Result<(), ClientError> {
        let ehlo = format!("EHLO {}\r\n", self.settings.helo_name);
        let reply = self.command("EHLO", ehlo.as_bytes()).await?;
        if reply.is_positive() {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.is_permanent() {
            let helo = format!("HELO {}\r\n", self.settings.helo_name);
            let reply = self.command("HELO", helo.as_bytes()).await?;
            if reply.is_positive() {
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(ClientError::Refused {
                stage: "HELO",
                reply,
            });
        }
        Err(ClientError::Refused {
            stage: "EHLO",
            reply,
        })
    }

    async fn starttls(&mut self, tls: RelayTls) -> Result<(), ClientError> {
        let reply = self.command("STARTTLS", b"STARTTLS\r\n").await?;
        if reply.code != 220 {
            if tls == RelayTls::Required {
                return Err(ClientError::Tls {
                    server: self.server,
                    detail: format!("STARTTLS refused: {reply}"),
                });
            }
            // Opportunistic: the session stays usable in plaintext.
            return Ok(());
        }
        // Anything the server sent after its 220 was not protected: discard it.
        self.rbuf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(ClientError::Protocol {
                stage: "STARTTLS",
                detail: "TLS is already active".into(),
            });
        };
        let name = ServerName::IpAddress(self.server.ip().into());
        let handshake = self.settings.tls_connector.connect(name, tcp);
        let stream = match timeout(self.settings.command_timeout, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(ClientError::Tls {
                    server: self.server,
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ClientError::Tls {
                    server: self.server,
                    detail: "handshake timed out".into(),
                })
            }
        };
        self.stream = Stream::Tls(Box::new(stream));
        self.tls_active = true;
        // RFC 3207: forget everything learnt before TLS and greet again.
        self.greet().await
    }

    /// The server this connection goes to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// What the server announced.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether STARTTLS is in effect.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// When the connection was last used (opened, or a transaction finished).
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// Sends one command line (CRLF included) and reads its reply within `command_timeout`.
    pub async fn command(
        &mut self,
        stage: &'static str,
        line: &[u8],
    ) -> Result<Reply, ClientError> {
        self.write(stage, line, self.settings.command_timeout)
            .await?;
        let reply = self
            .read_reply(stage, self.settings.command_timeout)
            .await?;
        if reply.code == 421 {
            return Err(ClientError::Refused { stage, reply });
        }
        Ok(reply)
    }

    /// Runs one mail transaction and returns one final reply per recipient, in order:
    /// the RCPT reply for a refused recipient, otherwise the reply to the end of data
    /// (or to MAIL / DATA when those failed). A 5xx for one recipient never affects the
    /// others. An `Err` means the connection is unusable and nothing was delivered (or,
    /// when [`ClientError::after_body`], that the outcome is unknown).
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Vec<Reply>, ClientError> {
        let result = self.send_inner(tx).await;
        self.used = true;
        self.last_used = Instant::now();
        result
    }

    fn mail_command(&self, tx: &Transaction<'_>) -> String {
        let mut mail = format!("MAIL FROM:<{}>", tx.mail_from);
        if tx.body_8bit && self.caps.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", tx.body.len()));
        }
        mail.push_str("\r\n");
        mail
    }

    async fn send_inner(&mut self, tx: &Transaction<'_>) -> Result<Vec<Reply>, ClientError> {
        let cmd_timeout = self.settings.command_timeout;
        let reset = self.used;
        let mail = self.mail_command(tx);
        let rcpts: Vec<String> = tx
            .recipients
            .iter()
            .map(|r| format!("RCPT TO:<{r}>\r\n"))
            .collect();
        let n = tx.recipients.len();
        let mut results: Vec<Option<Reply>> = vec![None; n];
        let mut accepted = Vec::with_capacity(n);

        if self.caps.pipelining {
            // RFC 2920: RSET, MAIL, every RCPT and DATA go out in one write.
            let mut batch = Vec::with_capacity(64 + mail.len() + rcpts.len() * 40);
            if reset {
                batch.extend_from_slice(b"RSET\r\n");
            }
            batch.extend_from_slice(mail.as_bytes());
            for r in &rcpts {
                batch.extend_from_slice(r.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            let first_stage = if reset { STAGE_RSET } else { "MAIL" };
            self.write(first_stage, &batch, cmd_timeout).await?;
            if reset {
                self.expect_reply(STAGE_RSET, cmd_timeout).await?;
            }
            let mail_reply = self.read_reply_checked("MAIL", cmd_timeout).await?;
            for (i, slot) in results.iter_mut().enumerate() {
                let reply = self.read_reply_checked("RCPT", cmd_timeout).await?;
                if mail_reply.is_positive() && reply.is_positive() {
                    accepted.push(i);
                } else if mail_reply.is_positive() {
                    *slot = Some(reply);
                }
            }
            let data_reply = self.read_reply_checked("DATA", cmd_timeout).await?;
            if !mail_reply.is_positive() {
                if data_reply.code == 354 {
                    self.abort_data().await?;
                }
                return Ok(vec![mail_reply; n]);
            }
            if data_reply.code != 354 {
                return Ok(fill(results, &data_reply));
            }
            if accepted.is_empty() {
                // Some servers answer 354 even with no valid recipient: end the empty
                // data section at once; its reply does not matter.
                self.abort_data().await?;
                return Ok(fill(results, &data_reply));
            }
        } else {
            if reset {
                self.expect_reply_to(STAGE_RSET, b"RSET\r\n", cmd_timeout)
                    .await?;
            }
            let mail_reply = self.command("MAIL", mail.as_bytes()).await?;
            if !mail_reply.is_positive() {
                return Ok(vec![mail_reply; n]);
            }
            for (i, r) in rcpts.iter().enumerate() {
                let reply = self.command("RCPT", r.as_bytes()).await?;
                if reply.is_positive() {
                    accepted.push(i);
                } else {
                    results[i] = Some(reply);
                }
            }
            if accepted.is_empty() {
                let none = Reply::local(554, "5.5.1 no valid recipients");
                return Ok(fill(results, &none));
            }
            let data_reply = self.command("DATA", b"DATA\r\n").await?;
            if data_reply.code != 354 {
                return Ok(fill(results, &data_reply));
            }
        }

        let body = dot_stuff(tx.body);
        self.write(STAGE_DATA_END, &body, self.settings.data_timeout)
            .await?;
        let final_reply = self
            .read_reply_checked(STAGE_DATA_END, self.settings.data_timeout)
            .await?;
        Ok(fill(results, &final_reply))
    }

    /// Recipient probe for callouts: `MAIL FROM:<>` and `RCPT TO:<rcpt>` (pipelined when
    /// offered). Returns the MAIL reply and, when MAIL was accepted, the RCPT reply. The
    /// transaction is left open; the caller resets it or quits.
    pub async fn probe_recipient(
        &mut self,
        rcpt: &str,
    ) -> Result<(Reply, Option<Reply>), ClientError> {
        let limit = self.settings.command_timeout;
        let mail = "MAIL FROM:<>\r\n";
        let rcpt_line = format!("RCPT TO:<{rcpt}>\r\n");
        self.used = true;
        if self.caps.pipelining {
            let batch = format!("{mail}{rcpt_line}");
            self.write("MAIL", batch.as_bytes(), limit).await?;
            let mail_reply = self.read_reply_checked("MAIL", limit).await?;
            let rcpt_reply = self.read_reply_checked("RCPT", limit).await?;
            let rcpt_reply = mail_reply.is_positive().then_some(rcpt_reply);
            return Ok((mail_reply, rcpt_reply));
        }
        let mail_reply = self.command("MAIL", mail.as_bytes()).await?;
        if !mail_reply.is_positive() {
            return Ok((mail_reply, None));
        }
        let rcpt_reply = self.command("RCPT", rcpt_line.as_bytes()).await?;
        Ok((mail_reply, Some(rcpt_reply)))
    }

    /// Ends a data section that should not have been opened (354 with nothing to send).
    async fn abort_data(&mut self) -> Result<(), ClientError> {
        self.write("DATA", b".\r\n", self.settings.command_timeout)
            .await?;
        self.read_reply_checked("DATA", self.settings.command_timeout)
            .await?;
        Ok(())
    }

    async fn expect_reply_to(
        &mut self,
        stage: &'static str,
        line: &[u8],
        limit: Duration,
    ) -> Result<(), ClientError> {
        self.write(stage, line, limit).await?;
        self.expect_reply(stage, limit).await
    }

    async fn expect_reply(
        &mut self,
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let reply = self.read_reply(stage, limit).await?;
        if reply.is_positive() {
            Ok(())
        } else {
            Err(ClientError::Refused { stage, reply })
        }
    }

    /// Reads a reply; a 421 (the server is closing the session) becomes an error.
    async fn read_reply_checked(
        &mut self,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        let reply = self.read_reply(stage, limit).await?;
        if reply.code == 421 {
            return Err(ClientError::Refused { stage, reply });
        }
        Ok(reply)
    }

    /// Sends QUIT and closes, without waiting long for the server's answer.
    pub async fn quit(mut self) {
        let limit = self.settings.command_timeout.min(Duration::from_secs(5));
        if self.write("QUIT", b"QUIT\r\n", limit).await.is_ok() {
            let _ = self.read_reply("QUIT", limit).await;
        }
        let _ = timeout(limit, self.stream.shutdown()).await;
    }

    async fn write(
        &mut self,
        stage: &'static str,
        bytes: &[u8],
        limit: Duration,
    ) -> Result<(), ClientError> {
        let stream = &mut self.stream;
        let io = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match timeout(limit, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ClientError::Io { stage, source }),
            Err(_) => Err(ClientError::Timeout { stage }),
        }
    }

    /// Reads one complete (possibly multiline) reply within `limit`.
    async fn read_reply(
        &mut self,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + limit;
        loop {
            match parse_reply(&self.rbuf) {
                Ok(Some((reply, used))) => {
                    self.rbuf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) if self.rbuf.len() > MAX_REPLY_BYTES => {
                    return Err(ClientError::Protocol {
                        stage,
                        detail: "reply too long".into(),
                    })
                }
                Ok(None) => {}
                Err(detail) => return Err(ClientError::Protocol { stage, detail }),
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    return Err(ClientError::Io {
                        stage,
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed by the server",
                        ),
                    })
                }
                Ok(Ok(n)) => n,
                Ok(Err(source)) => return Err(ClientError::Io { stage, source }),
                Err(_) => return Err(ClientError::Timeout { stage }),
            };
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Per-recipient replies: recipients already answered keep theirs, the rest get `common`.
fn fill(results: Vec<Option<Reply>>, common: &Reply) -> Vec<Reply> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| common.clone()))
        .collect()
}

/// Parses one complete reply at the start of `buf`; `Ok(None)` when more bytes are needed.
/// Returns the reply and the number of bytes it took.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let mut pos = 0;
    let mut lines = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        pos += nl + 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "not a reply line: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ));
        }
        let code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        let more = line.get(3) == Some(&b'-');
        let text = line.get(4..).unwrap_or_default();
        lines.push(String::from_utf8_lossy(text).into_owned());
        if !more {
            return Ok(Some((Reply { code, lines }, pos)));
        }
        if lines.len() > 1000 {
            return Err("reply has too many lines".into());
        }
    }
}

/// Dot-stuffs a message (RFC 5321 4.5.2), makes sure it ends with CRLF, and appends the
/// end-of-data line `.\r\n`.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 512 + 8);
    let mut at_line_start = true;
    let mut rest = body;
    while !rest.is_empty() {
        if at_line_start && rest[0] == b'.' {
            out.push(b'.');
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                out.extend_from_slice(&rest[..=i]);
                rest = &rest[i + 1..];
                at_line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                rest = &[];
                at_line_start = false;
            }
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        if out.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::testing::{config, dead_addr, tls_acceptor, FakeServer, Script};
    use std::sync::Arc;

    fn settings(server: SocketAddr, overrides: &[(&str, &str)]) -> ClientSettings {
        let dir = tempfile::tempdir().unwrap();
        ClientSettings::from_config(&config(dir.path(), &[server], overrides).relay)
    }

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn refuse_bad() -> Script {
        Script {
            rcpt: Arc::new(|a: &str| {
                if a.starts_with("bad@") {
                    "550 5.1.1 no such user".into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            }),
            ..Script::default()
        }
    }

    async fn deliver_three(script: Script) -> (FakeServer, Vec<Reply>) {
        let server = FakeServer::start(script).await;
        let s = settings(server.addr, &[]);
        let mut conn = Connection::open(server.addr, &s).await.unwrap();
        let to = rcpts(&["a@example.test", "bad@example.test", "c@example.test"]);
        let tx = Transaction {
            mail_from: "s@example.org",
            recipients: &to,
            body: b"Subject: t\r\n\r\nhello\r\n",
            body_8bit: false,
            smtputf8: false,
        };
        let replies = conn.send(&tx).await.unwrap();
        conn.quit().await;
        (server, replies)
    }

    #[tokio::test]
    async fn pipelined_delivery_gives_per_recipient_results() {
        let (server, replies) = deliver_three(refuse_bad()).await;
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 550, 250]);
        let msgs = server.messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            msgs[0].rcpt_to,
            rcpts(&["a@example.test", "c@example.test"])
        );
        assert!(server.record.lock().unwrap().pipelined);
    }

    #[tokio::test]
    async fn lock_step_delivery_without_pipelining() {
        let (server, replies) = deliver_three(Script {
            pipelining: false,
            ..refuse_bad()
        })
        .await;
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 550, 250]);
        assert_eq!(server.messages().len(), 1);
        assert!(!server.record.lock().unwrap().pipelined);
    }

    #[tokio::test]
    async fn body_is_dot_stuffed_on_the_wire_and_reaches_the_server_intact() {
        let server = FakeServer::start(Script::default()).await;
        let s = settings(server.addr, &[]);
        let mut conn = Connection::open(server.addr, &s).await.unwrap();
        let to = rcpts(&["a@example.test"]);
        let tx = Transaction {
            mail_from: "s@example.org",
            recipients: &to,
            body: b".leading\r\nmiddle\r\n..two\r\n.\r\nlast",
            body_8bit: true,
            smtputf8: false,
        };
        assert!(conn.send(&tx).await.unwrap()[0].is_positive());
        let msgs = server.messages();
        assert_eq!(
            msgs[0].data,
            b"..leading\r\nmiddle\r\n...two\r\n..\r\nlast\r\n".to_vec()
        );
        let mail = server
            .commands()
            .into_iter()
            .find(|c| c.starts_with("MAIL"))
            .unwrap();
        assert!(
            mail.contains("BODY=8BITMIME") && mail.contains("SIZE="),
            "{mail}"
        );
    }

    #[tokio::test]
    async fn two_messages_share_one_connection_with_rset_between() {
        let server = FakeServer::start(Script::default()).await;
        let s = settings(server.addr, &[]);
        let mut conn = Connection::open(server.addr, &s).await.unwrap();
        let to = rcpts(&["a@example.test"]);
        for body in [&b"one\r\n"[..], &b"two\r\n"[..]] {
            let tx = Transaction {
                mail_from: "s@example.org",
                recipients: &to,
                body,
                body_8bit: false,
                smtputf8: false,
            };
            assert!(conn.send(&tx).await.unwrap()[0].is_positive());
        }
        conn.quit().await;
        assert_eq!(server.messages().len(), 2);
        assert_eq!(server.connections(), 1);
        let cmds = server.commands();
        assert!(cmds.iter().any(|c| c == "RSET"));
        assert_eq!(cmds.last().map(String::as_str), Some("QUIT"));
    }

    #[tokio::test]
    async fn failover_to_the_second_server_when_the_first_refuses_connections() {
        let dead = dead_addr().await;
        let server = FakeServer::start(Script::default()).await;
        let s = settings(server.addr, &[]);
        let conn = Connection::connect_any(&[dead, server.addr], &s)
            .await
            .unwrap();
        assert_eq!(conn.server(), server.addr);
        let err = Connection::connect_any(&[dead], &s).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    }

    #[tokio::test]
    async fn helo_is_used_when_ehlo_is_refused() {
        let server = FakeServer::start(Script {
            refuse_ehlo: true,
            ..Script::default()
        })
        .await;
        let s = settings(server.addr, &[]);
        let mut conn = Connection::open(server.addr, &s).await.unwrap();
        assert!(!conn.capabilities().esmtp);
        let to = rcpts(&["a@example.test"]);
        let tx = Transaction {
            mail_from: "",
            recipients: &to,
            body: b"x\r\n",
            body_8bit: false,
            smtputf8: false,
        };
        assert!(conn.send(&tx).await.unwrap()[0].is_positive());
        assert!(server.commands().iter().any(|c| c.starts_with("HELO")));
        assert!(server.commands().iter().any(|c| c == "MAIL FROM:<>"));
    }

    #[tokio::test]
    async fn dropped_and_slow_servers_are_errors() {
        let dropper = FakeServer::start(Script {
            drop_connection: true,
            ..Script::default()
        })
        .await;
        let s = settings(dropper.addr, &[]);
        let err = Connection::open(dropper.addr, &s).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Io {
                    stage: "banner",
                    ..
                }
            ),
            "{err}"
        );

        let slow = FakeServer::start(Script {
            delay: Duration::from_millis(500),
            ..Script::default()
        })
        .await;
        let s = settings(slow.addr, &[("command_timeout", "\"100ms\"")]);
        let err = Connection::open(slow.addr, &s).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Timeout { stage: "EHLO" }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn opportunistic_starttls_is_used_when_offered_and_ehlo_repeated() {
        let server = FakeServer::start(Script {
            tls: Some(tls_acceptor()),
            ..Script::default()
        })
        .await;
        let s = settings(server.addr, &[("tls", "\"opportunistic\"")]);
        let mut conn = Connection::open(server.addr, &s).await.unwrap();
        assert!(conn.is_tls());
        assert!(!conn.capabilities().starttls);
        let to = rcpts(&["a@example.test"]);
        let tx = Transaction {
            mail_from: "s@example.org",
            recipients: &to,
            body: b"secret\r\n",
            body_8bit: false,
            smtputf8: false,
        };
        assert!(conn.send(&tx).await.unwrap()[0].is_positive());
        conn.quit().await;
        assert_eq!(server.record.lock().unwrap().tls_sessions, 1);
        assert_eq!(server.messages()[0].data, b"secret\r\n".to_vec());
        let cmds = server.commands();
        assert_eq!(cmds.iter().filter(|c| c.starts_with("EHLO")).count(), 2);
        assert!(cmds.iter().any(|c| c == "STARTTLS"));
    }

    #[tokio::test]
    async fn required_tls_fails_without_starttls_and_opportunistic_falls_back() {
        let plain = FakeServer::start(Script::default()).await;
        let s = settings(plain.addr, &[("tls", "\"required\"")]);
        let err = Connection::open(plain.addr, &s).await.unwrap_err();
        assert!(matches!(err, ClientError::TlsNotOffered { .. }), "{err}");
        let s = settings(plain.addr, &[("tls", "\"opportunistic\"")]);
        let conn = Connection::open(plain.addr, &s).await.unwrap();
        assert!(!conn.is_tls());

        let tls = FakeServer::start(Script {
            tls: Some(tls_acceptor()),
            ..Script::default()
        })
        .await;
        let s = settings(tls.addr, &[("tls", "\"required\"")]);
        assert!(Connection::open(tls.addr, &s).await.unwrap().is_tls());
    }

    #[tokio::test]
    async fn a_421_mid_transaction_is_an_error_not_a_recipient_result() {
        let server = FakeServer::start(Script {
            rcpt: Arc::new(|_| "421 4.3.2 shutting down".into()),
            ..Script::default()
        })
        .await;
        let s = settings(server.addr, &[]);
        let mut conn = Connection::open(server.addr, &s).await.unwrap();
        let to = rcpts(&["a@example.test"]);
        let tx = Transaction {
            mail_from: "s@example.org",
            recipients: &to,
            body: b"x\r\n",
            body_8bit: false,
            smtputf8: false,
        };
        let err = conn.send(&tx).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Refused { stage: "RCPT", .. }),
            "{err}"
        );
        assert!(!err.after_body());
    }

    #[test]
    fn multiline_reply_is_parsed_whole() {
        let buf =
            b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n220 next";
        let (reply, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines.len(), 4);
        assert_eq!(&buf[used..], b"220 next");
        let caps = Capabilities::from_ehlo(&reply);
        assert!(caps.pipelining && caps.eight_bit_mime && !caps.starttls);
        assert_eq!(caps.size, Some(1000));
        assert!(parse_reply(b"250-partial\r\n250").unwrap().is_none());
        assert!(parse_reply(b"hello\r\n").is_err());
    }

    #[test]
    fn enhanced_codes_are_found_only_where_they_belong() {
        let r = Reply::local(550, "5.1.1 <x@example.test>: no such user");
        assert_eq!(r.enhanced_code().as_deref(), Some("5.1.1"));
        assert_eq!(Reply::local(550, "no such user").enhanced_code(), None);
        assert_eq!(Reply::local(550, "1.2.3 nope").enhanced_code(), None);
        assert_eq!(r.text(), "550 5.1.1 <x@example.test>: no such user");
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"x\r\n.\r\ny"), b"x\r\n..\r\ny\r\n.\r\n");
        assert_eq!(dot_stuff(b"a.b\r\n"), b"a.b\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
