//! SMTP replies (RFC 5321 §4.2) with their RFC 3463 enhanced status codes: the ones the
//! gateway sends to clients and the ones internal servers send back to the relay client.

use std::borrow::Cow;
use std::fmt;

/// Longest reply (all lines together) accepted from a server before it is called broken.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Most lines of one reply accepted from a server.
const MAX_REPLY_LINES: usize = 1000;

/// An SMTP reply, possibly of several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Enhanced status code such as `5.7.1`; empty for replies that carry none (the 220
    /// banner, EHLO lines, servers that do not speak ENHANCEDSTATUSCODES).
    pub status: Cow<'static, str>,
    /// Human-readable text without code and status; `\n` separates the lines of a
    /// multi-line reply.
    pub text: String,
}

/// Why bytes from a server are not an SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyParseError {
    /// A line does not start with three digits.
    #[error("not a reply line: {0:?}")]
    NotAReply(String),
    /// The continuation lines never end.
    #[error("reply has too many lines")]
    TooManyLines,
}

impl Reply {
    /// Builds a reply.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Cow::Borrowed(status),
            text: text.into(),
        }
    }

    /// `2`, `3`, `4` or `5`: the reply class.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
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

    /// The enhanced status code, when the reply carries one.
    pub fn enhanced_code(&self) -> Option<&str> {
        (!self.status.is_empty()).then_some(&*self.status)
    }

    /// The text lines (one for a single-line reply).
    pub fn lines(&self) -> std::str::Split<'_, char> {
        self.text.split('\n')
    }

    /// Wire form, CRLF-terminated, one line per text line, each carrying the status.
    pub fn to_wire(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut lines = self.lines().peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            out.push_str(&self.code.to_string());
            out.push(sep);
            if !self.status.is_empty() {
                out.push_str(&self.status);
                out.push(' ');
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out
    }

    /// Parses one complete reply at the start of `buf`; `Ok(None)` when more bytes are
    /// needed. Returns the reply and the number of bytes it took. An enhanced status code
    /// at the start of the first line is taken out into [`Reply::status`] (and the same
    /// code repeated on continuation lines is dropped).
    pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyParseError> {
        let mut pos = 0;
        let mut lines: Vec<String> = Vec::new();
        let code = loop {
            let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
                return Ok(None);
            };
            let mut line = &buf[pos..pos + nl];
            pos += nl + 1;
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            // RFC 5321 §4.2: the first digit is 2 to 5. Anything else is not a reply (and
            // "055" would come back out of `to_wire` as "55").
            if line.len() < 3
                || !(b'2'..=b'5').contains(&line[0])
                || !line[1..3].iter().all(u8::is_ascii_digit)
            {
                return Err(ReplyParseError::NotAReply(
                    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
                ));
            }
            let code = u16::from(line[0] - b'0') * 100
                + u16::from(line[1] - b'0') * 10
                + u16::from(line[2] - b'0');
            let more = line.get(3) == Some(&b'-');
            lines.push(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned());
            if !more {
                break code;
            }
            if lines.len() > MAX_REPLY_LINES {
                return Err(ReplyParseError::TooManyLines);
            }
        };
        let status = lines
            .first()
            .and_then(|first| enhanced_prefix(first))
            .map(str::to_owned);
        if let Some(status) = &status {
            for line in &mut lines {
                if let Some(rest) = line.strip_prefix(status.as_str()) {
                    if rest.is_empty() || rest.starts_with(' ') {
                        // One separator only: more spaces are the server's text, and
                        // `to_wire` must give them back.
                        *line = rest.strip_prefix(' ').unwrap_or(rest).to_owned();
                    }
                }
            }
        }
        let reply = Reply {
            code,
            status: status.map(Cow::Owned).unwrap_or(Cow::Borrowed("")),
            text: lines.join("\n"),
        };
        Ok(Some((reply, pos)))
    }
}

/// The RFC 3463 code (`class.subject.detail`) a reply line starts with, if any.
fn enhanced_prefix(line: &str) -> Option<&str> {
    let token = line.split(' ').next()?;
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
    ok.then_some(token)
}

impl fmt::Display for Reply {
    /// One line, as logged and quoted in DSNs: `550 5.1.1 no such user`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.status.is_empty() {
            write!(f, " {}", self.status)?;
        }
        for (i, line) in self.lines().enumerate() {
            match (i, line.is_empty()) {
                (_, true) => {}
                (0, false) => write!(f, " {line}")?,
                (_, false) => write!(f, " / {line}")?,
            }
        }
        Ok(())
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

    #[test]
    fn parsed_reply_round_trips_through_the_wire_form() {
        let wire = b"550-5.1.1 first\r\n550 5.1.1 second\r\nrest";
        let (r, used) = Reply::parse(wire).unwrap().unwrap();
        assert_eq!(used, wire.len() - 4);
        assert_eq!(
            (r.code, &*r.status, r.text.as_str()),
            (550, "5.1.1", "first\nsecond")
        );
        assert_eq!(r.to_wire().as_bytes(), &wire[..used]);
        assert_eq!(r.to_string(), "550 5.1.1 first / second");
    }

    #[test]
    fn enhanced_codes_are_found_only_where_they_belong() {
        let code = |line: &str| {
            let wire = format!("550 {line}\r\n");
            Reply::parse(wire.as_bytes())
                .unwrap()
                .unwrap()
                .0
                .status
                .into_owned()
        };
        assert_eq!(code("5.1.1 <x@example.test>: no such user"), "5.1.1");
        assert_eq!(code("no such user"), "");
        assert_eq!(code("1.2.3 nope"), "");
    }

    /// Fuzzer find (reply_parse): "055 ..." parsed as code 55, which `to_wire` wrote as
    /// "55 ...", a line no parser reads back.
    #[test]
    fn reply_codes_start_with_2_to_5() {
        let wire = b"550-5.1.1 first\r\n055 5.1.1 s250 d\r\n354 go\r\n";
        assert!(Reply::parse(wire).is_err());
        for bad in [&b"055 x\r\n"[..], b"199 x\r\n", b"600 x\r\n", b"2x0 x\r\n"] {
            assert!(Reply::parse(bad).is_err(), "{bad:?}");
        }
        for good in [&b"200 x\r\n"[..], b"599 x\r\n", b"354 go\r\n"] {
            let (r, _) = Reply::parse(good).unwrap().unwrap();
            assert_eq!(Reply::parse(r.to_wire().as_bytes()).unwrap().unwrap().0, r);
        }
    }

    #[test]
    fn incomplete_and_broken_replies() {
        assert_eq!(Reply::parse(b"250-a\r\n250 b").unwrap(), None);
        assert!(Reply::parse(b"hello\r\n").is_err());
        let (r, _) = Reply::parse(b"220\r\n").unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str()), (220, ""));
    }

    /// Found by the `reply_parse` fuzz target: after the enhanced status code every
    /// leading space was dropped, so a line whose text starts with a space came back from
    /// `to_wire` and a second parse without it (what we log and quote in DSNs changed).
    #[test]
    fn text_after_the_status_keeps_its_own_spaces() {
        let raw = b"550-5.1.1 first\r\n550 5.1.1  indented\r\n";
        let (reply, used) = Reply::parse(raw).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(reply.text, "first\n indented");
        let wire = reply.to_wire();
        let (back, _) = Reply::parse(wire.as_bytes()).unwrap().unwrap();
        assert_eq!(back, reply, "round trip through {wire:?}");
        let fuzz: &[u8] = b"550-5.1.1 first\r@5\xff\xff50\xff1 sn\t\0\0d\x0c\n354s go\r\n";
        let (reply, _) = Reply::parse(fuzz).unwrap().unwrap();
        let (back, _) = Reply::parse(reply.to_wire().as_bytes()).unwrap().unwrap();
        assert_eq!(back, reply);
    }
}
