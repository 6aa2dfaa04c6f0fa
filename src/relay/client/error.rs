//! Why talking to an internal server failed, and at which protocol step.

use crate::mail::Reply;
use std::io;
use std::net::SocketAddr;

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
    /// The message needs SMTPUTF8 (a UTF-8 address or header field, sent with
    /// `SMTPUTF8`) and the server does not offer it, so RFC 6531 §3.2 forbids sending it;
    /// or it has 8-bit header fields, declared or not, and the server offers neither
    /// 8BITMIME nor SMTPUTF8, so they have no form it may take (RFC 6152 §3, RFC 6532
    /// §3). Nothing was sent. Another server may offer it.
    #[error("SMTPUTF8 is required, but was not offered by {server}")]
    Smtputf8NotOffered {
        /// Server concerned.
        server: SocketAddr,
    },
    /// The session ended amid the recipients, or at the DATA after them (a server at its
    /// error limit answers `421` after refusing some): the refusals it gave before are
    /// final for their recipients, as Postfix's client takes them, or a message with many
    /// stale addresses would be sent the same way at every attempt until it expired.
    #[error("{cause}")]
    RecipientsCutShort {
        /// Why the session ended.
        cause: Box<ClientError>,
        /// The reply to each recipient of the transaction that had one.
        replies: Vec<Option<Reply>>,
    },
    /// No server was configured to try.
    #[error("no internal server configured")]
    NoServer,
    /// The gateway is stopping: the transaction was given up before its end of data
    /// was sent, so no server has the message and it stays queued for after the restart.
    /// An end of data sent during the drain could be answered after the drain's bound;
    /// cut off then, the message would be delivered a second time.
    #[error("gateway stopping: transaction given up before its end of data")]
    Stopping,
    /// Every server failed to take a connection moments ago (`relay.unreachable_hold`),
    /// so none was tried.
    #[error("delivery suspended: no internal server took a connection in the last {hold:?}")]
    Suspended {
        /// How long a failing server is held back.
        hold: std::time::Duration,
    },
}

impl ClientError {
    /// `cause`, carrying `replies` when some of them already refused a recipient for good.
    pub(super) fn amid_recipients(cause: ClientError, replies: &[Option<Reply>]) -> ClientError {
        if replies.iter().flatten().any(Reply::is_permanent) {
            ClientError::RecipientsCutShort {
                cause: Box::new(cause),
                replies: replies.to_vec(),
            }
        } else {
            cause
        }
    }

    /// The replies the recipients had before the session ended (see
    /// [`ClientError::RecipientsCutShort`]), in the transaction's order.
    pub fn replies_before_the_end(&self) -> Option<&[Option<Reply>]> {
        match self {
            ClientError::RecipientsCutShort { replies, .. } => Some(replies),
            _ => None,
        }
    }

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
            } | ClientError::Protocol {
                stage: STAGE_DATA_END,
                ..
            }
        )
    }

    /// No other server may be tried in this delivery: the server may have the message
    /// ([`Self::after_body`]), or the gateway is stopping.
    pub fn ends_the_delivery(&self) -> bool {
        self.after_body() || matches!(self, ClientError::Stopping)
    }

    /// Waiting will not help: the message cannot go to a server like this one. When no
    /// server can take it, its recipients fail (`5.6.7`, settled here, not by a server).
    pub fn permanent(&self) -> bool {
        matches!(self, ClientError::Smtputf8NotOffered { .. })
    }

    /// After a failure on a reused connection before the body, whether one fresh
    /// connection to the same server is worth trying: the connection rather than the
    /// server may be at fault (a `421` at an error limit counted per connection, a line a
    /// firewall cut while idle, replies out of step). Not after a timeout: a server that
    /// did not answer within `command_timeout` would most likely keep the next one
    /// waiting as long.
    pub fn worth_a_fresh_connection(&self) -> bool {
        match self {
            ClientError::RecipientsCutShort { cause, .. } => cause.worth_a_fresh_connection(),
            ClientError::Timeout { .. } => false,
            other => !other.permanent() && !other.ends_the_delivery(),
        }
    }

    /// The server did not take a TCP connection, or took it and never greeted within
    /// `command_timeout` (a server at its process limit): other attempts should not wait
    /// on it too. With the RFC 5321 five minutes, every worker would otherwise spend them
    /// on a hung primary before each failover (review).
    pub fn unreachable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::ConnectTimeout { .. } => true,
            ClientError::Timeout { stage } => *stage == STAGE_BANNER || *stage == STAGE_GREETING,
            _ => false,
        }
    }

    /// The failure happened on the first command of a reused connection (the server
    /// closed it while idle), or the server closed the session at its MAIL (a 421 there,
    /// as servers that cap messages per connection answer, or the connection gone): a
    /// fresh connection should simply be tried. Only asked of a reused connection.
    pub fn stale_connection(&self) -> bool {
        match self {
            ClientError::Io { stage, .. } => *stage == STAGE_RSET || *stage == STAGE_MAIL,
            ClientError::Timeout { stage } | ClientError::Protocol { stage, .. } => {
                *stage == STAGE_RSET
            }
            ClientError::Refused { stage, reply } => {
                *stage == STAGE_RSET || (*stage == STAGE_MAIL && reply.code == 421)
            }
            _ => false,
        }
    }
}

/// Waiting for a fresh connection's banner.
pub(super) const STAGE_BANNER: &str = "banner";
pub(super) const STAGE_RSET: &str = "RSET";
pub(super) const STAGE_MAIL: &str = "MAIL";
pub(super) const STAGE_DATA_END: &str = "end of data";
/// After the greeting of a fresh connection, before its first MAIL.
pub(super) const STAGE_GREETING: &str = "EHLO";
/// After the 354, before the content.
pub(super) const STAGE_DATA: &str = "DATA";
/// Sending the content before its end-of-data line: a failure there delivers nothing.
pub(super) const STAGE_BODY: &str = "message content";
