//! What an internal server announced in its EHLO reply.

use crate::mail::Reply;

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
    /// Reads the extensions from a 250 EHLO reply. Public so the audit's fuzz target
    /// reads EHLO answers from arbitrary servers the way the client does.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        // The first line is the greeting; each further line is one extension.
        for line in reply.lines().skip(1) {
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
