//! What a policy answers: decisions at each stage, the SMTP reply that carries them,
//! and the final verdict on a message.

use std::fmt;

/// An SMTP reply with its RFC 3463 enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Enhanced status code such as `5.7.1`; empty for replies that carry none (220, 221 banner lines).
    pub status: &'static str,
    /// Human-readable text; may contain `\n` for multi-line replies.
    pub text: String,
}

impl Reply {
    /// Builds a reply.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            text: text.into(),
        }
    }

    /// `2`, `3`, `4` or `5`: the reply class.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// Whether this is a 4xx or 5xx reply.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Wire form, CRLF-terminated, one line per text line.
    pub fn to_wire(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        let lines: Vec<&str> = self.text.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            if self.status.is_empty() {
                out.push_str(&format!("{}{}{}\r\n", self.code, sep, line));
            } else {
                out.push_str(&format!("{}{}{} {}\r\n", self.code, sep, self.status, line));
            }
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, self.text.replace('\n', " / "))
        } else {
            write!(
                f,
                "{} {} {}",
                self.code,
                self.status,
                self.text.replace('\n', " / ")
            )
        }
    }
}

/// What the session does after a stage was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go on with the protocol.
    Continue,
    /// Refuse permanently with this (5xx) reply.
    Reject(Reply),
    /// Refuse temporarily with this (4xx) reply.
    Tempfail(Reply),
    /// Accept the message but drop it silently (end of data only).
    Discard,
}

/// The judgement on a whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Clean: relay unchanged.
    Accept,
    /// Relay with spam headers.
    Tag,
    /// Keep in the quarantine area.
    Quarantine,
    /// Refused in-session with 5xx.
    Reject,
    /// Refused in-session with 4xx.
    Tempfail,
    /// Accepted and dropped.
    Discard,
}

impl Verdict {
    /// Lower-case name used in logs, metrics and `scan --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Tag => "tag",
            Verdict::Quarantine => "quarantine",
            Verdict::Reject => "reject",
            Verdict::Tempfail => "tempfail",
            Verdict::Discard => "discard",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_reply_uses_dash_continuation() {
        let r = Reply::new(250, "", "mx.example.test\nPIPELINING\nSIZE 10");
        assert_eq!(
            r.to_wire(),
            "250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn enhanced_code_follows_reply_code() {
        let r = Reply::new(550, "5.7.1", "no");
        assert_eq!(r.to_wire(), "550 5.7.1 no\r\n");
        assert!(r.is_error());
        assert_eq!(r.class(), 5);
    }
}
