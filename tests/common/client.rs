//! The raw SMTP client the tests drive the gateway with: exact bytes out, parsed
//! (possibly multiline) replies in, every read bounded by a timeout.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::message::dot_stuffed;
use super::REPLY_TIMEOUT;

/// One (possibly multiline) SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code.
    pub code: u16,
    /// Text of each line, after `NNN-` / `NNN `.
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code of the first line, if it starts with one.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let word = first.split_whitespace().next()?;
        let parts: Vec<&str> = word.split('.').collect();
        (parts.len() == 3 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())))
            .then_some(word)
    }

    /// All lines joined, for messages and substring checks.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Panics unless the reply has this code and this enhanced code (`""` to skip it).
    #[track_caller]
    pub fn expect(&self, code: u16, enhanced: &str) -> &Self {
        let ok = self.code == code && (enhanced.is_empty() || self.enhanced() == Some(enhanced));
        assert!(ok, "expected {code} {enhanced}, got: {self}");
        self
    }

    /// True for 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// EHLO keywords (every line but the first, upper-cased).
    pub fn keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .map(|l| l.trim().to_ascii_uppercase())
            .collect()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.lines.iter().enumerate() {
            let sep = if i + 1 == self.lines.len() { ' ' } else { '-' };
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{}{}{}", self.code, sep, l)?;
        }
        Ok(())
    }
}

/// Parses `NNN-text` / `NNN text` / `NNN`; `None` for anything else.
fn parse_reply_line(line: &str) -> Option<(u16, bool, String)> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line[..3].parse().ok()?;
    match b.get(3) {
        None => Some((code, true, String::new())),
        Some(b' ') => Some((code, true, line[4..].to_string())),
        Some(b'-') => Some((code, false, line[4..].to_string())),
        _ => None,
    }
}

/// A plain-TCP SMTP client that sends exact bytes and reads replies with a timeout.
pub struct SmtpClient {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl SmtpClient {
    /// Connects to 127.0.0.1:`port` (panics after `REPLY_TIMEOUT`); the banner is not read.
    pub fn connect_raw(port: u16) -> SmtpClient {
        Self::try_connect_raw(port).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"))
    }

    /// Like `connect_raw` but returns the error.
    pub fn try_connect_raw(port: u16) -> io::Result<SmtpClient> {
        let addr = ([127, 0, 0, 1], port).into();
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)?;
        stream.set_nodelay(true)?;
        let c = SmtpClient {
            stream,
            buf: Vec::new(),
            timeout: REPLY_TIMEOUT,
        };
        c.stream.set_read_timeout(Some(c.timeout))?;
        c.stream.set_write_timeout(Some(c.timeout))?;
        Ok(c)
    }

    /// Connects to 127.0.0.1:`port` from the loopback address `source` (any of
    /// 127.0.0.0/8), so a test can stand for clients of many addresses and networks.
    pub fn try_connect_from(port: u16, source: &str) -> io::Result<SmtpClient> {
        let source: std::net::IpAddr = source
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            let connect = socket.connect(([127, 0, 0, 1], port).into());
            let tcp = tokio::time::timeout(REPLY_TIMEOUT, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            tcp.into_std()
        })?;
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(SmtpClient {
            stream,
            buf: Vec::new(),
            timeout: REPLY_TIMEOUT,
        })
    }

    /// Like [`SmtpClient::try_connect_from`]; panics on failure.
    #[track_caller]
    pub fn connect_from(port: u16, source: &str) -> SmtpClient {
        Self::try_connect_from(port, source)
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port} from {source}: {e}"))
    }

    /// Wraps an already connected stream (the gateway's readiness probe); reads time out
    /// after `timeout`.
    pub fn from_stream(stream: TcpStream, timeout: Duration) -> SmtpClient {
        stream.set_read_timeout(Some(timeout)).unwrap();
        SmtpClient {
            stream,
            buf: Vec::new(),
            timeout,
        }
    }

    /// Connects and reads the banner.
    pub fn connect(port: u16) -> (SmtpClient, Reply) {
        let mut c = Self::connect_raw(port);
        let banner = c.read_reply();
        (c, banner)
    }

    /// Connects, checks the banner is 220 and sends `EHLO client.sender.test` (must be 250).
    pub fn connect_ehlo(port: u16) -> SmtpClient {
        let (mut c, banner) = Self::connect(port);
        banner.expect(220, "");
        c.cmd("EHLO client.sender.test").expect(250, "");
        c
    }

    /// Changes the read timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Writes `bytes` as they are.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to gateway failed: {e}"));
    }

    /// Writes `bytes`, returning the error instead of panicking.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `line` + CRLF and reads one reply.
    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Sends `line` + CRLF and reads one reply, returning errors.
    pub fn try_cmd(&mut self, line: &str) -> Result<Reply, String> {
        self.try_send(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        self.try_read_reply()
    }

    /// Reads one raw line (without CRLF), or an error on timeout/EOF.
    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "connection closed (pending bytes: {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "read failed after {:?}: {e} (pending bytes: {:?})",
                        self.timeout,
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
    }

    /// Reads one reply, returning an error on timeout, EOF or garbage.
    pub fn try_read_reply(&mut self) -> Result<Reply, String> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line()?;
            let (c, last, text) =
                parse_reply_line(&line).ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
            if let Some(prev) = code {
                if prev != c {
                    return Err(format!("code changed inside a multiline reply: {line:?}"));
                }
            }
            code = Some(c);
            lines.push(text);
            if last {
                return Ok(Reply { code: c, lines });
            }
        }
    }

    /// Reads one reply; panics (with the reason) on timeout, EOF or garbage.
    #[track_caller]
    pub fn read_reply(&mut self) -> Reply {
        match self.try_read_reply() {
            Ok(r) => r,
            Err(e) => panic!("no SMTP reply: {e}"),
        }
    }

    /// Reads `n` replies.
    #[track_caller]
    pub fn read_replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Waits up to `wait` for any byte; returns what arrived (empty if nothing did).
    /// Restores the normal timeout afterwards.
    pub fn unsolicited(&mut self, wait: Duration) -> Vec<u8> {
        if !self.buf.is_empty() {
            return std::mem::take(&mut self.buf);
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 4096];
        let got = match self.stream.read(&mut chunk) {
            Ok(n) => chunk[..n].to_vec(),
            Err(_) => Vec::new(),
        };
        self.stream.set_read_timeout(Some(self.timeout)).unwrap();
        got
    }

    /// True when the server closes the connection (EOF or reset) within `REPLY_TIMEOUT`;
    /// any bytes still arriving are discarded.
    pub fn is_closed(&mut self) -> bool {
        let deadline = Instant::now() + self.timeout;
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }

    /// Runs MAIL, RCPT… and DATA one step at a time and sends `msg` (dot-stuffed here);
    /// every step before the final one must succeed. Returns the final reply.
    #[track_caller]
    pub fn send_mail(&mut self, from: &str, rcpts: &[&str], msg: &[u8]) -> Reply {
        self.cmd(&format!("MAIL FROM:<{from}>")).expect(250, "");
        for r in rcpts {
            self.cmd(&format!("RCPT TO:<{r}>")).expect(250, "");
        }
        self.cmd("DATA").expect(354, "");
        self.send(&dot_stuffed(msg));
        self.read_reply()
    }

    /// Like [`SmtpClient::send_mail`], but a refusal at any step is the answer: the first
    /// reply that is not the expected one (MAIL/RCPT 250, DATA 354), else the final reply.
    pub fn try_send_mail(&mut self, from: &str, rcpts: &[&str], msg: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if r.code != 250 {
            return r;
        }
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            if r.code != 250 {
                return r;
            }
        }
        let r = self.cmd("DATA");
        if r.code != 354 {
            return r;
        }
        self.send(&dot_stuffed(msg));
        self.read_reply()
    }

    /// Sends QUIT and checks 221 (the connection may already be gone: then nothing).
    pub fn quit(mut self) {
        if let Ok(r) = self.try_cmd("QUIT") {
            assert_eq!(r.code, 221, "QUIT answered {r}");
        }
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The underlying stream, for tests that need it.
    pub fn into_stream(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }
}

/// One message (id `id`) from a client at `source` to `user@example.test`: the reply at
/// the end of data, or the banner when the gateway would not serve the client.
pub fn send_one(port: u16, source: &str, id: &str) -> Reply {
    let mut c = SmtpClient::connect_from(port, source);
    let banner = c.read_reply();
    if banner.code != 220 {
        return banner;
    }
    c.cmd("EHLO sender.test").expect(250, "");
    let r = c.try_send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &super::message::message(id, "real mail", "hello"),
    );
    c.quit();
    r
}

/// Extracts the queue id from `250 2.0.0 Ok: queued as ID`.
pub fn queue_id(reply: &Reply) -> Option<String> {
    let text = reply.text();
    let pos = text.find("queued as ")?;
    text[pos + "queued as ".len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}
