//! SMTP client to the internal servers: connect, EHLO, STARTTLS, one pipelined transaction per message.
//!
//! This is the relay's hot path, so it is a small implementation of its own over tokio:
//! one buffered read side that parses (multiline) replies, one write per pipelined batch,
//! per-recipient results, and a connection that is kept for the next message.

mod capabilities;
mod error;
mod settings;
mod stuff;
mod tls;

pub use capabilities::Capabilities;
pub use error::ClientError;
pub use settings::{ClientSettings, SettingsCache};
pub use stuff::{dot_stuff, DotStuffer};
pub use tls::AcceptAnyCert;

use crate::config::{RelayTls, TierSecret};
use crate::mail::reply::MAX_REPLY_BYTES;
use crate::mail::seven_bit::to_seven_bit;
use crate::mail::Reply;
use crate::net::Stream;
use crate::spool::BodyTail;
use error::{
    STAGE_BANNER, STAGE_BODY, STAGE_DATA, STAGE_DATA_END, STAGE_GREETING, STAGE_MAIL, STAGE_RSET,
};
use rustls_pki_types::ServerName;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, Instant};

/// Bytes of message content per write while sending a body.
const WRITE_CHUNK: usize = 256 * 1024;

/// One message to hand over: envelope and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// Reverse path without brackets; empty for `<>`.
    pub mail_from: &'a str,
    /// Forward paths without brackets.
    pub recipients: &'a [String],
    /// Message bytes with CRLF line endings, not dot-stuffed (the first of them when
    /// `tail` holds the rest).
    pub body: &'a [u8],
    /// The rest of the message, read from the spool while it is sent.
    pub tail: Option<&'a BodyTail>,
    /// The body has 8-bit content (declare `BODY=8BITMIME` when offered, convert it to
    /// 7-bit MIME when not). Content found 8-bit when sent counts as if this were set.
    pub body_8bit: bool,
    /// The envelope or headers need SMTPUTF8 (declare it when offered).
    pub smtputf8: bool,
}

/// An open, greeted SMTP connection to one internal server, reusable across messages.
pub struct Connection {
    stream: Stream,
    rbuf: Vec<u8>,
    server: SocketAddr,
    banner: Reply,
    caps: Capabilities,
    tls_active: bool,
    settings: ClientSettings,
    /// A transaction was run on this connection: the next one starts with RSET.
    used: bool,
    last_used: Instant,
    opened_at: Instant,
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
            banner: Reply::new(0, "", ""),
            caps: Capabilities::default(),
            tls_active: false,
            settings: settings.clone(),
            used: false,
            last_used: Instant::now(),
            opened_at: Instant::now(),
        };
        let banner = conn
            .read_reply(STAGE_BANNER, settings.command_timeout)
            .await?;
        if !banner.is_positive() {
            return Err(ClientError::Refused {
                stage: STAGE_BANNER,
                reply: banner,
            });
        }
        conn.banner = banner;
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
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.is_positive() {
            // Only 250 answers EHLO: any other 2xx (a second greeting, say) means every
            // reply from here on would be read one step late.
            return Err(out_of_step("EHLO", &reply));
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
        if self.stream.is_tls() {
            return Err(ClientError::Protocol {
                stage: "STARTTLS",
                detail: "TLS is already active".into(),
            });
        }
        let name = ServerName::IpAddress(self.server.ip().into());
        let handshake = self.stream.connect_tls(&self.settings.tls_connector, name);
        match timeout(self.settings.command_timeout, handshake).await {
            Ok(Ok(())) => {}
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
        }
        self.tls_active = true;
        // RFC 3207: forget everything learnt before TLS and greet again.
        self.greet().await
    }

    /// The server this connection goes to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The server's greeting (220 reply).
    pub fn banner(&self) -> &Reply {
        &self.banner
    }

    /// What the server announced.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether STARTTLS is in effect.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// Whether this connection was opened on the terms of `settings` (see
    /// [`ClientSettings::same_terms`]).
    pub fn opened_with(&self, settings: &ClientSettings) -> bool {
        self.settings.same_terms(settings)
    }

    /// When the connection was last used (opened, or a transaction finished).
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// When the connection was opened.
    pub fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// Sends one command line (CRLF included) and reads its reply within `command_timeout`.
    pub async fn command(
        &mut self,
        stage: &'static str,
        line: &[u8],
    ) -> Result<Reply, ClientError> {
        self.write(stage, line, self.settings.command_timeout)
            .await?;
        self.read_reply_checked(stage, self.settings.command_timeout)
            .await
    }

    /// One command of a transaction without PIPELINING. Input waiting before it is a
    /// reply nobody asked for: one that came just after the check before MAIL would make
    /// each reply answer the command before, up to a refused recipient's 550 read as the
    /// answer to DATA and bouncing the recipients the server took.
    async fn lockstep_command(
        &mut self,
        stage: &'static str,
        line: &[u8],
    ) -> Result<Reply, ClientError> {
        self.expect_no_input(stage).await?;
        self.command(stage, line).await
    }

    /// DATA without PIPELINING, as [`Self::lockstep_command`], its reply awaited for
    /// `data_init_timeout` (RFC 5321 §4.5.3.2.4).
    async fn lockstep_data(&mut self) -> Result<Reply, ClientError> {
        self.expect_no_input("DATA").await?;
        self.write("DATA", b"DATA\r\n", self.settings.command_timeout)
            .await?;
        self.read_reply_checked("DATA", self.settings.data_init_timeout)
            .await
    }

    /// Runs one mail transaction and returns one final reply per recipient, in order:
    /// the RCPT reply for a refused recipient, otherwise the reply to the end of data
    /// (or to MAIL / DATA when those failed). A 5xx for one recipient never affects the
    /// others. An `Err` means the connection is unusable and nothing was delivered (or,
    /// when [`ClientError::after_body`], that the outcome is unknown).
    ///
    /// What this server cannot carry is settled first: mail that needs SMTPUTF8 when the
    /// server does not offer it is not sent ([`ClientError::Smtputf8NotOffered`]; RFC 6531
    /// §3.2), and an 8-bit body for a server without 8BITMIME is converted to 7-bit MIME
    /// (RFC 6152 §3), as Postfix does both. Content with 8-bit bytes counts as 8-bit
    /// whether or not it was declared (see [`Connection::eight_bit`]); 8-bit header
    /// fields, which no conversion makes 7-bit, do not go to a server without 8BITMIME.
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Answers, ClientError> {
        if (tx.smtputf8 && !self.caps.smtputf8 && needs_smtputf8(tx)) || self.refuses_header(tx) {
            return Err(ClientError::Smtputf8NotOffered {
                server: self.server,
            });
        }
        let tx = Transaction {
            body_8bit: self.eight_bit(tx).await?,
            ..*tx
        };
        // The turn is held until the converted copy is sent: it is what fills memory.
        let (seven_bit, _turn);
        let tx = if tx.body_8bit && !self.caps.eight_bit_mime {
            (seven_bit, _turn) = self.seven_bit_copy(&tx).await?;
            Transaction {
                body: &seven_bit,
                tail: None,
                body_8bit: false,
                ..tx
            }
        } else {
            tx
        };
        let result = self.send_inner(&tx).await;
        self.used = true;
        self.last_used = Instant::now();
        result
    }

    /// Whether `tx`'s content is 8-bit: as recorded, or seen in the head in memory (clients
    /// often send 8-bit content without `BODY=8BITMIME`; review: it went raw to a server
    /// without 8BITMIME). The tail on disk is read for it only for such a server, where
    /// raw 8-bit bytes must not go: the flag of a message spooled before the session
    /// recorded undeclared 8-bit content is unset.
    async fn eight_bit(&self, tx: &Transaction<'_>) -> Result<bool, ClientError> {
        if tx.body_8bit || !tx.body.is_ascii() {
            return Ok(true);
        }
        match tx.tail {
            Some(tail) if !self.caps.eight_bit_mime => tail_is_eight_bit(tail).await,
            _ => Ok(false),
        }
    }

    /// Whether `tx` has 8-bit header fields this server cannot take: it offers no
    /// 8BITMIME, and no SMTPUTF8 the message declares. The 7-bit conversion leaves header
    /// fields as they are (raw UTF-8 there needs SMTPUTF8, RFC 6532 §3), so such mail is
    /// settled as mail that needs SMTPUTF8 is, declared or not.
    fn refuses_header(&self, tx: &Transaction<'_>) -> bool {
        let utf8_declared = tx.smtputf8 && self.caps.smtputf8;
        !self.caps.eight_bit_mime && !utf8_declared && !header_section(tx.body).is_ascii()
    }

    /// The whole of `tx`'s message (its tail read from the spool) made 7-bit by
    /// [`to_seven_bit`] on a blocking thread, as a big message takes a while to parse, and
    /// the conversion turn. The message, its parse and its encoding are all in memory, so
    /// one conversion runs at a time (the blocking task keeps the turn until it ends, even
    /// when the delivery is given up); a price paid only for a server without 8BITMIME.
    async fn seven_bit_copy(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<(Vec<u8>, OwnedSemaphorePermit), ClientError> {
        let conversion_failed = |detail: String| ClientError::Io {
            stage: STAGE_BODY,
            source: io::Error::other(detail),
        };
        let turn = self
            .settings
            .conversions
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| conversion_failed(e.to_string()))?;
        let mut whole = tx.body.to_vec();
        if let Some(tail) = tx.tail {
            let mut pos = 0;
            while pos < tail.len() {
                let chunk = tail_chunk(tail, pos).await?;
                pos += chunk.len() as u64;
                whole.extend_from_slice(&chunk);
            }
        }
        let stamp_keys = self.settings.stamp_keys.clone();
        let (converted, turn) = tokio::task::spawn_blocking(move || {
            let keys: Vec<&[u8]> = stamp_keys.iter().map(TierSecret::bytes).collect();
            // The stamp made at acceptance signed the 8-bit body and its MIME fields.
            let converted = to_seven_bit(&whole).map(|converted| {
                crate::mail::stamp::resign(&keys, &whole, &converted).unwrap_or(converted)
            });
            (converted.ok_or(whole), turn)
        })
        .await
        .map_err(|e| conversion_failed(format!("7-bit conversion failed: {e}")))?;
        let (converted, changed) = match converted {
            Ok(converted) => (converted, true),
            // Nothing held 8-bit content to encode (an ASCII body declared 8BITMIME).
            Err(unchanged) => (unchanged, false),
        };
        // A preamble, or bytes under base64 keep theirs, as Postfix leaves them (8-bit
        // header fields do not come here: see `refuses_header`).
        let left = converted.iter().filter(|b| !b.is_ascii()).count();
        if left > 0 {
            tracing::warn!(server = %self.server, eight_bit_bytes = left, "8-bit body sent to a server without 8BITMIME: what has no encoding to take (a preamble, bytes under base64, a part the parser could not read) still holds 8-bit bytes");
        } else if changed {
            tracing::info!(server = %self.server, "8-bit body converted to 7-bit MIME: the server does not offer 8BITMIME");
        }
        Ok((converted, turn))
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
            let size = tx.body.len() as u64 + tx.tail.map(BodyTail::len).unwrap_or(0);
            mail.push_str(&format!(" SIZE={size}"));
        }
        mail.push_str("\r\n");
        mail
    }

    async fn send_inner(&mut self, tx: &Transaction<'_>) -> Result<Answers, ClientError> {
        self.unless_stopping()?;
        let cmd_timeout = self.settings.command_timeout;
        let reset = self.used;
        // Bytes waiting before MAIL (a reused connection's, or a fresh one's after its
        // EHLO: a reply of `250 ` lines, or a line after it) would make every reply of
        // this transaction one step late, and a good recipient would get the next one's
        // 550.
        self.expect_no_input(if reset { STAGE_RSET } else { STAGE_GREETING })
            .await?;
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
            let first_stage = if reset { STAGE_RSET } else { STAGE_MAIL };
            self.write(first_stage, &batch, cmd_timeout).await?;
            if reset {
                self.expect_reply(STAGE_RSET, cmd_timeout).await?;
            }
            let mail_reply = self.read_reply_checked(STAGE_MAIL, cmd_timeout).await?;
            for i in 0..n {
                let reply = self
                    .read_reply_checked("RCPT", cmd_timeout)
                    .await
                    .map_err(|e| ClientError::amid_recipients(e, &results))?;
                let reply = rcpt_552_as_452(reply);
                if mail_reply.is_positive() && reply.is_positive() {
                    accepted.push(i);
                } else if mail_reply.is_positive() {
                    results[i] = Some(reply);
                }
            }
            let data_reply = self
                .read_reply_checked("DATA", self.settings.data_init_timeout)
                .await
                .map_err(|e| ClientError::amid_recipients(e, &results))?;
            if data_reply.is_positive() {
                return Err(out_of_step("DATA", &data_reply));
            }
            if !mail_reply.is_positive() {
                if data_reply.code == 354 {
                    self.abort_data().await?;
                }
                return Ok(Answers::message_refused(&mail_reply, n));
            }
            if data_reply.code != 354 {
                let of_message = !accepted.is_empty();
                return Ok(Answers::filled(results, &data_reply, of_message));
            }
            if accepted.is_empty() {
                // Some servers answer 354 even with no valid recipient: end the empty
                // data section at once; its reply does not matter.
                self.abort_data().await?;
                return Ok(Answers::filled(results, &data_reply, false));
            }
        } else {
            if reset {
                self.expect_reply_to(STAGE_RSET, b"RSET\r\n", cmd_timeout)
                    .await?;
            }
            let mail_reply = self.lockstep_command(STAGE_MAIL, mail.as_bytes()).await?;
            if !mail_reply.is_positive() {
                return Ok(Answers::message_refused(&mail_reply, n));
            }
            for (i, r) in rcpts.iter().enumerate() {
                let reply = self
                    .lockstep_command("RCPT", r.as_bytes())
                    .await
                    .map_err(|e| ClientError::amid_recipients(e, &results))?;
                let reply = rcpt_552_as_452(reply);
                if reply.is_positive() {
                    accepted.push(i);
                } else {
                    results[i] = Some(reply);
                }
            }
            if accepted.is_empty() {
                let none = Reply::new(554, "5.5.1", "no valid recipients");
                return Ok(Answers::filled(results, &none, false));
            }
            let data_reply = self
                .lockstep_data()
                .await
                .map_err(|e| ClientError::amid_recipients(e, &results))?;
            if data_reply.is_positive() {
                return Err(out_of_step("DATA", &data_reply));
            }
            if data_reply.code != 354 {
                return Ok(Answers::filled(results, &data_reply, true));
            }
        }

        // A reply already there after the 354 would be taken for the answer to the end of
        // data: a message the server refuses counted as delivered.
        self.expect_no_input(STAGE_DATA).await?;
        self.send_body(tx).await?;
        let final_reply = self
            .read_reply_checked(STAGE_DATA_END, self.settings.data_timeout)
            .await?;
        Ok(Answers::filled(results, &final_reply, true))
    }

    /// Sends the content dot-stuffed, in chunks of about [`WRITE_CHUNK`] (a small message
    /// goes out in one write with its end-of-data line), reading any tail from the spool
    /// as it goes, so memory stays bounded whatever the size.
    async fn send_body(&mut self, tx: &Transaction<'_>) -> Result<(), ClientError> {
        let limit = self.settings.data_timeout;
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(tx.body.len().min(WRITE_CHUNK) + 1024);
        for piece in tx.body.chunks(WRITE_CHUNK) {
            stuffer.push(piece, &mut out);
            if out.len() >= WRITE_CHUNK {
                // The end of data is not sent yet: a failure here delivers nothing.
                self.write_content(STAGE_BODY, &out, limit).await?;
                out.clear();
            }
        }
        if let Some(tail) = tx.tail {
            let mut pos = 0;
            while pos < tail.len() {
                let chunk = tail_chunk(tail, pos).await?;
                pos += chunk.len() as u64;
                stuffer.push(&chunk, &mut out);
                if out.len() >= WRITE_CHUNK {
                    self.write_content(STAGE_BODY, &out, limit).await?;
                    out.clear();
                }
            }
        }
        stuffer.finish(&mut out);
        self.write_content(STAGE_DATA_END, &out, limit).await
    }

    /// Writes a piece of the content, unless the gateway is stopping
    /// ([`Self::unless_stopping`]).
    async fn write_content(
        &mut self,
        stage: &'static str,
        bytes: &[u8],
        limit: Duration,
    ) -> Result<(), ClientError> {
        self.unless_stopping()?;
        self.write(stage, bytes, limit).await
    }

    /// [`ClientError::Stopping`] once the gateway is stopping. Asked before the
    /// transaction and before each write of its content: given up there, the message is
    /// on no server (the connection is dropped mid-data, which the server discards).
    fn unless_stopping(&self) -> Result<(), ClientError> {
        if self.settings.stopping.is_cancelled() {
            return Err(ClientError::Stopping);
        }
        Ok(())
    }

    /// The probe's `MAIL FROM:<>`, declaring SMTPUTF8 when the recipient is not ASCII (such
    /// a recipient is asked only of a server that offers it): without it the server refuses
    /// the address itself (`553 5.6.7`, RFC 6531 §3.4), which would make a real mailbox look
    /// unknown.
    fn probe_mail_command(rcpt: &str) -> &'static str {
        if !rcpt.is_ascii() {
            "MAIL FROM:<> SMTPUTF8\r\n"
        } else {
            "MAIL FROM:<>\r\n"
        }
    }

    /// Recipient probe for callouts and the audit: `MAIL FROM:<>` and `RCPT TO:<rcpt>`
    /// (pipelined when offered). Returns the MAIL reply and, when MAIL was accepted, the
    /// RCPT reply; the transaction is left open (the audit sends a message in it).
    ///
    /// A recipient past ASCII is not asked of a server without SMTPUTF8
    /// ([`ClientError::Smtputf8NotOffered`]), as delivery would not send it there (RFC 6531
    /// §3.2): a lenient server's 250 would accept mail bound to bounce, a strict one's
    /// `5.1.x` refuse a real user. Input waiting before a command is replies out of step
    /// (a server's stray line), an error: read one step late, the 250 to MAIL answered an
    /// unknown user's RCPT. It shows only when it came in time; [`Self::reset_in_step`]
    /// shows it always.
    pub async fn probe_recipient(
        &mut self,
        rcpt: &str,
    ) -> Result<(Reply, Option<Reply>), ClientError> {
        if !rcpt.is_ascii() && !self.caps.smtputf8 {
            return Err(ClientError::Smtputf8NotOffered {
                server: self.server,
            });
        }
        let limit = self.settings.command_timeout;
        let mail = Self::probe_mail_command(rcpt);
        let rcpt_line = format!("RCPT TO:<{rcpt}>\r\n");
        self.expect_no_input(if self.used {
            STAGE_RSET
        } else {
            STAGE_GREETING
        })
        .await?;
        self.used = true;
        if self.caps.pipelining {
            let batch = format!("{mail}{rcpt_line}");
            self.write(STAGE_MAIL, batch.as_bytes(), limit).await?;
            let mail_reply = self.read_reply_checked(STAGE_MAIL, limit).await?;
            let rcpt_reply = self.read_reply_checked("RCPT", limit).await?;
            let rcpt_reply = mail_reply.is_positive().then_some(rcpt_reply);
            return Ok((mail_reply, rcpt_reply));
        }
        let mail_reply = self.command(STAGE_MAIL, mail.as_bytes()).await?;
        if !mail_reply.is_positive() {
            return Ok((mail_reply, None));
        }
        let rcpt_reply = self.lockstep_command("RCPT", rcpt_line.as_bytes()).await?;
        Ok((mail_reply, Some(rcpt_reply)))
    }

    /// Ends the transaction with `RSET`, whose reply must be positive: with replies out of
    /// step, the reply read last (a RCPT's refusal, read as the next command's) answers it,
    /// so a probe's answer that was another command's is caught.
    pub async fn reset_in_step(&mut self) -> Result<(), ClientError> {
        let reset = self.lockstep_command(STAGE_RSET, b"RSET\r\n").await?;
        if reset.is_positive() {
            return Ok(());
        }
        Err(ClientError::Protocol {
            stage: STAGE_RSET,
            detail: format!("RSET answered {reset}: replies out of step with commands"),
        })
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

    /// Before a reused connection's next transaction: the server has nothing more to say.
    /// A reply nobody asked for (a second answer to the last end of data) would be read
    /// as the answer to the next command, and every reply after it one step late, up to a
    /// recipient's 550 taken for the answer to DATA, failing them all.
    async fn expect_no_input(&mut self, stage: &'static str) -> Result<(), ClientError> {
        if self.rbuf.is_empty() {
            // One poll of the read: only bytes already there count. (Not a zero timeout:
            // arming a timer for every message cost a quarter of the relay's rate.)
            let mut chunk = [0u8; 512];
            match futures::FutureExt::now_or_never(self.stream.read(&mut chunk)) {
                None => return Ok(()),
                Some(Ok(0)) => return Err(closed_by_server(stage)),
                Some(Ok(n)) => self.rbuf.extend_from_slice(&chunk[..n]),
                Some(Err(source)) => return Err(ClientError::Io { stage, source }),
            }
        }
        Err(ClientError::Protocol {
            stage,
            detail: format!(
                "unexpected input before {stage} was answered ({:?}): replies out of step with commands",
                String::from_utf8_lossy(&self.rbuf[..self.rbuf.len().min(80)])
            ),
        })
    }

    /// Reads one complete (possibly multiline) reply within `limit`.
    async fn read_reply(
        &mut self,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + limit;
        loop {
            match Reply::parse(&self.rbuf) {
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
                Err(e) => {
                    return Err(ClientError::Protocol {
                        stage,
                        detail: e.to_string(),
                    })
                }
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(closed_by_server(stage)),
                Ok(Ok(n)) => n,
                Ok(Err(source)) => return Err(ClientError::Io { stage, source }),
                Err(_) => return Err(ClientError::Timeout { stage }),
            };
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The server closed the connection while we read at `stage`.
fn closed_by_server(stage: &'static str) -> ClientError {
    ClientError::Io {
        stage,
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ),
    }
}

/// A 2xx where the protocol has none (DATA answers 354 or an error): the replies are out
/// of step with the commands, so none of them can be trusted, least of all as a delivery.
fn out_of_step(stage: &'static str, reply: &Reply) -> ClientError {
    ClientError::Protocol {
        stage,
        detail: format!("unexpected reply {reply}: replies out of step with commands"),
    }
}

/// A `552` to RCPT is read as `452`, as RFC 5321 §4.5.3.1.10 asks and Postfix does: servers
/// still send it for "too many recipients" or a mailbox over quota, both of which pass, and
/// read as permanent it bounced a recipient who would have had the mail an hour later.
fn rcpt_552_as_452(reply: Reply) -> Reply {
    if reply.code != 552 {
        return reply;
    }
    let status = match reply.status.strip_prefix('5') {
        Some(rest) => std::borrow::Cow::Owned(format!("4{rest}")),
        None => reply.status,
    };
    Reply {
        code: 452,
        status,
        text: reply.text,
    }
}

/// What a server answered one transaction.
#[derive(Debug)]
pub struct Answers {
    /// One reply per recipient, in the transaction's order.
    pub replies: Vec<Reply>,
    /// The reply that refused the message as a whole (at MAIL, at DATA once recipients
    /// were taken, or at the end of data), not only some of its recipients: a temporary
    /// one is most likely met by the next transaction too. Identical refusals of every
    /// RCPT are the recipients' own (`452 4.2.2 Mailbox full` names no mailbox; review:
    /// read as the message's, they ended every round before the later recipients were
    /// tried).
    pub message_refusal: Option<Reply>,
}

impl Answers {
    /// `reply` for every one of `n` recipients: the message was refused.
    fn message_refused(reply: &Reply, n: usize) -> Answers {
        Answers {
            replies: vec![reply.clone(); n],
            message_refusal: Some(reply.clone()),
        }
    }

    /// Recipients already answered keep theirs, the rest get `common`, which refused the
    /// message as a whole when `of_message` (and is no success).
    fn filled(results: Vec<Option<Reply>>, common: &Reply, of_message: bool) -> Answers {
        let replies = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| common.clone()))
            .collect();
        let message_refusal = (of_message && !common.is_positive()).then(|| common.clone());
        Answers {
            replies,
            message_refusal,
        }
    }
}

/// Whether `tx` needs SMTPUTF8: a UTF-8 address, or UTF-8 in the header section (as
/// Postfix decides it; a part's header fields are not read). The head of the message is
/// in memory; a header section longer than it is taken whole as header, which can only
/// refuse, never send UTF-8 unannounced.
fn needs_smtputf8(tx: &Transaction<'_>) -> bool {
    let header = header_section(tx.body);
    !tx.mail_from.is_ascii() || tx.recipients.iter().any(|r| !r.is_ascii()) || !header.is_ascii()
}

/// The header section of a message whose first bytes are `head`: all of `head` when it
/// ends there or later.
fn header_section(head: &[u8]) -> &[u8] {
    memchr::memmem::find(head, b"\r\n\r\n").map_or(head, |end| &head[..end])
}

/// Whether the tail has a byte past ASCII, read from the spool a chunk at a time.
async fn tail_is_eight_bit(tail: &BodyTail) -> Result<bool, ClientError> {
    let mut pos = 0;
    while pos < tail.len() {
        let chunk = tail_chunk(tail, pos).await?;
        if !chunk.is_ascii() {
            return Ok(true);
        }
        pos += chunk.len() as u64;
    }
    Ok(false)
}

/// The next piece of a message's tail from `pos`; the file ending early is an error.
async fn tail_chunk(tail: &BodyTail, pos: u64) -> Result<Vec<u8>, ClientError> {
    let read_error = |source| ClientError::Io {
        stage: STAGE_BODY,
        source,
    };
    let chunk = tail.read(pos, WRITE_CHUNK).await.map_err(read_error)?;
    if chunk.is_empty() {
        return Err(read_error(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "spool file shorter than recorded",
        )));
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests;
