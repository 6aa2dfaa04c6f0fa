//! Shared harness for the integration tests: runs the real `mxguard` binary against a
//! scriptable internal SMTP server and talks to it over raw TCP.
//!
//! Everything here is bounded in time: every read has a timeout, every wait has a deadline,
//! and every child process is killed when its handle is dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Hostname every test gateway announces.
pub const HOSTNAME: &str = "mx.example.test";
/// The relayed domain of every test gateway.
pub const DOMAIN: &str = "example.test";
/// How long a client waits for any one reply before failing the test.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a test waits for relayed mail to arrive at the internal server.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The GTUBE test string.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// External programs (interop rule)
// ---------------------------------------------------------------------------------------

/// Finds `program` in PATH or /usr/sbin. When missing: panics if `MXGUARD_INTEROP=1`
/// (CI must run the interop tests), otherwise prints `SKIP: ...` and returns `None`.
pub fn interop_required(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let candidate = d.join(program);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    if std::env::var("MXGUARD_INTEROP").as_deref() == Ok("1") {
        panic!("MXGUARD_INTEROP=1 but {program} is not installed");
    }
    println!("SKIP: {program} not installed");
    None
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// A small RFC 5322 message with CRLF line endings (not dot-stuffed).
pub fn message(message_id: &str, subject: &str, body: &str) -> Vec<u8> {
    let mut m = String::new();
    m.push_str("From: Sender <sender@sender.test>\r\n");
    m.push_str("To: <user@example.test>\r\n");
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Message-ID: <{message_id}>\r\n"));
    m.push_str("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n");
    m.push_str("\r\n");
    for line in body.split('\n') {
        m.push_str(line.trim_end_matches('\r'));
        m.push_str("\r\n");
    }
    m.into_bytes()
}

/// Dot-stuffs a CRLF message and appends the end-of-data marker.
pub fn dot_stuffed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// True when `data` holds a CR not followed by LF or an LF not preceded by CR.
pub fn has_bare_cr_or_lf(data: &[u8]) -> bool {
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' && data.get(i + 1) != Some(&b'\n') {
            return true;
        }
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            return true;
        }
    }
    false
}

/// Finds `needle` in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// SMTP replies and the raw client
// ---------------------------------------------------------------------------------------

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

/// Extracts the queue id from `250 2.0.0 Ok: queued as ID`.
pub fn queue_id(reply: &Reply) -> Option<String> {
    let text = reply.text();
    let pos = text.find("queued as ")?;
    text[pos + "queued as ".len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------
// The scriptable internal server
// ---------------------------------------------------------------------------------------

/// One message the internal server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM address (without brackets; empty for `<>`).
    pub mail_from: String,
    /// MAIL FROM parameters as sent.
    pub mail_params: String,
    /// Accepted RCPT TO addresses.
    pub rcpt_to: Vec<String>,
    /// Message bytes, dot-unstuffed, including the CRLF of the last line.
    pub data: Vec<u8>,
    /// The DATA section exactly as it came over the wire (before the end marker).
    pub raw: Vec<u8>,
}

impl Received {
    /// The message as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let mut found: Option<String> = None;
        for line in text.split("\r\n") {
            if line.is_empty() {
                break;
            }
            if let Some(v) = found.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found
    }

    /// The Message-ID without angle brackets.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID").map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    }
}

/// How the internal server answers. Matching is on lower-cased substrings.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// When set, the greeting (e.g. `421 4.3.2 busy`) after which the connection is closed.
    pub greeting: Option<String>,
    /// `(substring of the RCPT address, reply)`: the first match answers RCPT.
    pub rcpt: Vec<(String, String)>,
    /// `(substring of the message data, reply)`: the first match answers end of data.
    pub data: Vec<(String, String)>,
}

struct Shared {
    messages: Mutex<Vec<Received>>,
    changed: Condvar,
    script: Mutex<Script>,
    /// RCPT addresses refused with a 4xx/5xx, and data refused, for diagnostics.
    refused: Mutex<Vec<String>>,
    connections: AtomicUsize,
    stop: AtomicBool,
}

/// A tiny SMTP server standing in for the internal mail server. It accepts PIPELINING,
/// records every message it answers 250 to, and is deliberately *lenient* about the end
/// of data (any line that is `.` up to LF ends it), like the receivers smuggling attacks
/// target: whatever the gateway forwards wrongly shows up here as a second message.
pub struct InternalServer {
    /// Listening port (kept across stop/start).
    pub port: u16,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl InternalServer {
    /// Starts on a free port, accepting everything.
    pub fn start() -> InternalServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let mut s = Self::new(listener.local_addr().unwrap().port());
        s.serve(listener);
        s
    }

    /// Starts on `port` (which must be free).
    pub fn start_on(port: u16) -> InternalServer {
        let mut s = Self::new(port);
        s.listen();
        s
    }

    fn new(port: u16) -> InternalServer {
        let shared = Arc::new(Shared {
            messages: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            script: Mutex::new(Script::default()),
            refused: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        InternalServer {
            port,
            shared,
            accept_thread: None,
        }
    }

    /// A handle for a port where nothing listens yet; `resume` starts listening.
    pub fn down() -> InternalServer {
        let mut s = Self::start();
        s.stop();
        s
    }

    fn listen(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("internal server cannot bind port {}: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        self.shared.stop.store(false, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.accept_thread = Some(thread::spawn(move || {
            while !shared.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        shared.connections.fetch_add(1, Ordering::SeqCst);
                        let shared = shared.clone();
                        thread::spawn(move || {
                            let _ = serve_connection(stream, &shared);
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }

    /// Stops listening and drops open connections (within ~250 ms).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }

    /// Starts listening again on the same port.
    pub fn resume(&mut self) {
        if self.accept_thread.is_none() {
            self.listen();
        }
    }

    /// Replaces the script.
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap() = script;
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// Refusals so far (RCPT addresses and `DATA:` entries).
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the received messages (or `timeout` passes) and
    /// returns the messages at that point together with whether `pred` held.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> (bool, Vec<Received>) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.messages.lock().unwrap();
        loop {
            if pred(&guard) {
                return (true, guard.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return (false, guard.clone());
            }
            guard = self
                .shared
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits for at least `n` messages; panics with what did arrive otherwise.
    #[track_caller]
    pub fn expect_messages(&self, n: usize) -> Vec<Received> {
        let (ok, msgs) = self.wait_for(DELIVERY_TIMEOUT, |m| m.len() >= n);
        assert!(
            ok,
            "expected {n} message(s) at the internal server within {DELIVERY_TIMEOUT:?}, got {}: {:?}",
            msgs.len(),
            summarize(&msgs)
        );
        msgs
    }

    /// Waits for a message whose Message-ID is `id`; panics otherwise.
    #[track_caller]
    pub fn expect_message_id(&self, id: &str) -> Received {
        let (ok, msgs) = self.wait_for(DELIVERY_TIMEOUT, |m| {
            m.iter().any(|r| r.message_id().as_deref() == Some(id))
        });
        assert!(
            ok,
            "message <{id}> never reached the internal server; got {:?}; refused {:?}",
            summarize(&msgs),
            self.refused()
        );
        msgs.into_iter()
            .find(|r| r.message_id().as_deref() == Some(id))
            .unwrap()
    }
}

impl Drop for InternalServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Short description of received messages for assertion messages.
pub fn summarize(msgs: &[Received]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            format!(
                "from=<{}> to={:?} id={:?} subject={:?} bytes={}",
                m.mail_from,
                m.rcpt_to,
                m.message_id(),
                m.header("Subject"),
                m.data.len()
            )
        })
        .collect()
}

fn angle_addr(arg: &str) -> (String, String) {
    // arg is what follows "FROM:" / "TO:".
    let arg = arg.trim_start();
    if let Some(rest) = arg.strip_prefix('<') {
        if let Some(end) = rest.rfind('>') {
            let addr = rest[..end].to_string();
            let params = rest[end + 1..].trim().to_string();
            return (addr, params);
        }
    }
    let mut it = arg.splitn(2, ' ');
    let addr = it.next().unwrap_or("").to_string();
    (addr, it.next().unwrap_or("").trim().to_string())
}

/// Reads one line up to LF, tolerating read timeouts (used to notice `stop`).
fn read_line_until_stop(
    reader: &mut BufReader<TcpStream>,
    shared: &Shared,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                if line.ends_with(b"\n") {
                    return Ok(Some(line));
                }
                return Ok(None); // EOF mid-line
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let script = shared.script.lock().unwrap().clone();
    if let Some(g) = &script.greeting {
        out.write_all(format!("{g}\r\n").as_bytes())?;
        return Ok(());
    }
    out.write_all(b"220 internal.test ESMTP test-internal\r\n")?;
    let mut mail_from: Option<(String, String)> = None;
    let mut rcpts: Vec<String> = Vec::new();
    while let Some(line) = read_line_until_stop(&mut reader, shared)? {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let upper = text.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-internal.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
             250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES"
                .into()
        } else if upper.starts_with("HELO") || upper.starts_with("LHLO") {
            "250 internal.test".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = Some(angle_addr(&text[10..]));
            rcpts.clear();
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let (addr, _) = angle_addr(&text[8..]);
            let script = shared.script.lock().unwrap().clone();
            let lower = addr.to_ascii_lowercase();
            match script
                .rcpt
                .iter()
                .find(|(pat, _)| lower.contains(pat.as_str()))
            {
                Some((_, r)) => {
                    shared.refused.lock().unwrap().push(addr.clone());
                    r.clone()
                }
                None if mail_from.is_none() => "503 5.5.1 MAIL first".into(),
                None => {
                    rcpts.push(addr);
                    "250 2.1.5 Ok".into()
                }
            }
        } else if upper == "DATA" {
            if mail_from.is_none() || rcpts.is_empty() {
                "554 5.5.1 No valid recipients".into()
            } else {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut raw = Vec::new();
                let mut data = Vec::new();
                loop {
                    let Some(l) = read_line_until_stop(&mut reader, shared)? else {
                        return Ok(()); // connection lost in DATA: nothing recorded
                    };
                    let core = l.strip_suffix(b"\n").unwrap_or(&l);
                    let core = core.strip_suffix(b"\r").unwrap_or(core);
                    if core == b"." {
                        break;
                    }
                    raw.extend_from_slice(&l);
                    if l.starts_with(b".") {
                        data.extend_from_slice(&l[1..]);
                    } else {
                        data.extend_from_slice(&l);
                    }
                }
                let script = shared.script.lock().unwrap().clone();
                let lower = String::from_utf8_lossy(&data).to_ascii_lowercase();
                let reply = script
                    .data
                    .iter()
                    .find(|(pat, _)| lower.contains(pat.as_str()))
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| "250 2.0.0 Ok: stored".into());
                let (from, params) = mail_from.take().unwrap_or_default();
                let rcpt_to = std::mem::take(&mut rcpts);
                if reply.starts_with('2') {
                    shared.messages.lock().unwrap().push(Received {
                        mail_from: from,
                        mail_params: params,
                        rcpt_to,
                        data,
                        raw,
                    });
                    shared.changed.notify_all();
                } else {
                    shared
                        .refused
                        .lock()
                        .unwrap()
                        .push(format!("DATA: {reply}"));
                }
                reply
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpts.clear();
            "250 2.0.0 Ok".into()
        } else if upper.starts_with("NOOP") {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "500 5.5.2 Command not recognized".into()
        };
        out.write_all(format!("{reply}\r\n").as_bytes())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------

/// What to put in the test gateway's configuration file.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `relay.internal` ports on 127.0.0.1, in order.
    pub internal: Vec<u16>,
    /// `relay.domains`.
    pub domains: Vec<String>,
    /// `server.bare_line_ending`.
    pub bare_line_ending: String,
    /// `[server.limits]` keys with raw TOML values (e.g. `("command_timeout", "\"1s\"")`).
    pub limits: BTreeMap<String, String>,
    /// Extra `[server]` keys with raw TOML values.
    pub server: BTreeMap<String, String>,
    /// Extra `[relay]` keys with raw TOML values.
    pub relay: BTreeMap<String, String>,
    /// Domain → recipient local parts, written to list files.
    pub recipient_lists: BTreeMap<String, Vec<String>>,
    /// `relay.recipients.callout`.
    pub callout: bool,
    /// `[server.tls]` certificate and key PEM contents.
    pub tls: Option<(String, String)>,
    /// Extra arguments after `serve --config PATH`.
    pub serve_args: Vec<String>,
    /// Raw TOML appended at the end of the configuration (e.g. a `[policy]` section).
    pub extra_toml: String,
    /// Files (path relative to the working directory, contents) written before each start.
    pub files: Vec<(String, String)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let mut limits = BTreeMap::new();
        limits.insert("command_timeout".into(), "\"20s\"".into());
        limits.insert("data_rate_grace".into(), "\"20s\"".into());
        limits.insert("shutdown_grace".into(), "\"2s\"".into());
        limits.insert("errors_before_tarpit".into(), "1000".into());
        limits.insert("errors_before_disconnect".into(), "1000".into());
        let mut relay = BTreeMap::new();
        relay.insert("retry_initial".into(), "\"200ms\"".into());
        relay.insert("retry_max".into(), "\"1s\"".into());
        relay.insert("retry_factor".into(), "2.0".into());
        relay.insert("connect_timeout".into(), "\"2s\"".into());
        relay.insert("command_timeout".into(), "\"10s\"".into());
        relay.insert("data_timeout".into(), "\"10s\"".into());
        relay.insert("idle_timeout".into(), "\"1s\"".into());
        GatewayConfig {
            internal: Vec::new(),
            domains: vec![DOMAIN.into()],
            bare_line_ending: "reject".into(),
            limits,
            server: BTreeMap::new(),
            relay,
            recipient_lists: BTreeMap::new(),
            callout: false,
            tls: None,
            serve_args: Vec::new(),
            extra_toml: String::new(),
            files: Vec::new(),
        }
    }
}

impl GatewayConfig {
    /// Default test config relaying to `internal`.
    pub fn new(internal: &InternalServer) -> GatewayConfig {
        GatewayConfig {
            internal: vec![internal.port],
            ..Default::default()
        }
    }

    /// Sets a `[server.limits]` key (raw TOML value).
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.insert(key.into(), value.into());
        self
    }

    /// Sets a `[server]` key (raw TOML value).
    pub fn server_key(mut self, key: &str, value: &str) -> Self {
        self.server.insert(key.into(), value.into());
        self
    }

    /// Sets a `[relay]` key (raw TOML value).
    pub fn relay_key(mut self, key: &str, value: &str) -> Self {
        self.relay.insert(key.into(), value.into());
        self
    }

    /// Appends raw TOML (e.g. a `[policy]` section) to the configuration.
    pub fn toml(mut self, text: &str) -> Self {
        self.extra_toml.push_str(text);
        if !self.extra_toml.ends_with('\n') {
            self.extra_toml.push('\n');
        }
        self
    }

    /// Writes `contents` to `path` (relative to the working directory) before the start.
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }

    fn render(&self, dir: &Path, port: u16, metrics_port: u16) -> String {
        let q = |s: &str| format!("{s:?}");
        for (rel, contents) in &self.files {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(p, contents).unwrap();
        }
        let mut t = String::new();
        t.push_str("[server]\n");
        t.push_str(&format!("listen = [\"127.0.0.1:{port}\"]\n"));
        t.push_str(&format!("hostname = {}\n", q(HOSTNAME)));
        t.push_str(&format!(
            "bare_line_ending = {}\n",
            q(&self.bare_line_ending)
        ));
        for (k, v) in &self.server {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str("\n[server.limits]\n");
        for (k, v) in &self.limits {
            t.push_str(&format!("{k} = {v}\n"));
        }
        if let Some((cert, key)) = &self.tls {
            fs::write(dir.join("cert.pem"), cert).unwrap();
            fs::write(dir.join("key.pem"), key).unwrap();
            t.push_str("\n[server.tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\n");
        }
        t.push_str("\n[relay]\n");
        let domains: Vec<String> = self.domains.iter().map(|d| q(d)).collect();
        t.push_str(&format!("domains = [{}]\n", domains.join(", ")));
        let internal: Vec<String> = self
            .internal
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        t.push_str(&format!("internal = [{}]\n", internal.join(", ")));
        for (k, v) in &self.relay {
            t.push_str(&format!("{k} = {v}\n"));
        }
        t.push_str("\n[relay.recipients]\n");
        t.push_str(&format!("callout = {}\n", self.callout));
        t.push_str("callout_timeout = \"3s\"\n");
        if !self.recipient_lists.is_empty() {
            fs::create_dir_all(dir.join("lists")).unwrap();
            let mut entries = Vec::new();
            for (domain, locals) in &self.recipient_lists {
                let rel = format!("lists/{domain}");
                fs::write(dir.join(&rel), locals.join("\n") + "\n").unwrap();
                entries.push(format!("{} = {}", q(domain), q(&rel)));
            }
            t.push_str(&format!("lists = {{ {} }}\n", entries.join(", ")));
        }
        t.push_str("\n[spool]\ndir = \"spool\"\n");
        t.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ));
        t.push_str("\n[log]\nformat = \"text\"\n");
        // Gateways under test never ask a real resolver: unless a test brings its own DNS
        // server, every name is answered NXDOMAIN at once by a local stub.
        if !self.extra_toml.contains("[dns]") {
            t.push_str(&format!(
                "\n[dns]\nnameservers = [\"127.0.0.1:{}\"]\n",
                nxdomain_dns_port()
            ));
        }
        if !self.extra_toml.is_empty() {
            t.push('\n');
            t.push_str(&self.extra_toml);
        }
        t
    }
}

/// Path of the binary under test.
pub fn mxguard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mxguard")
}

/// A running `mxguard serve` child process in its own temporary directory (its working
/// directory: the spool is `DIR/spool`). Killed (SIGKILL) on drop; its log is printed
/// when the test is panicking.
pub struct Gateway {
    /// SMTP port on 127.0.0.1.
    pub port: u16,
    /// The working directory (config, spool, log).
    pub dir: PathBuf,
    /// The configuration used.
    pub config: GatewayConfig,
    child: Option<Child>,
    starts: usize,
    _tmp: Arc<tempfile::TempDir>,
}

impl Gateway {
    /// Starts a gateway with `config` in a fresh temporary directory.
    #[track_caller]
    pub fn start(config: GatewayConfig) -> Gateway {
        let tmp = tempfile::Builder::new()
            .prefix("mxguard-test-")
            .tempdir()
            .expect("tempdir");
        let mut gw = Gateway {
            port: 0,
            dir: tmp.path().to_path_buf(),
            config,
            child: None,
            starts: 0,
            _tmp: Arc::new(tmp),
        };
        gw.spawn(free_port());
        gw
    }

    /// Spool directory.
    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("mxguard.toml")
    }

    /// Log file of the current run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("gateway-{}.log", self.starts))
    }

    /// All logs written so far.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.dir.join(format!("gateway-{i}.log"));
            if let Ok(s) = fs::read_to_string(&p) {
                out.push_str(&format!("----- {} -----\n{s}", p.display()));
            }
        }
        out
    }

    #[track_caller]
    fn spawn(&mut self, port: u16) {
        self.port = port;
        let text = self.config.render(&self.dir, port, free_port());
        fs::write(self.config_path(), text).unwrap();
        self.starts += 1;
        let log = fs::File::create(self.log_path()).unwrap();
        let child = Command::new(mxguard_bin())
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .args(&self.config.serve_args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn mxguard");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // Another process took one of the free ports we picked: pick again.
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                if log.contains("in use") && self.starts < 5 {
                    self.child = None;
                    return self.spawn(free_port());
                }
                panic!(
                    "mxguard exited during startup with {status}; config:\n{}\nlog:\n{}",
                    fs::read_to_string(self.config_path()).unwrap_or_default(),
                    self.logs()
                );
            }
            let addr = ([127, 0, 0, 1], port).into();
            // Only our own process's "listening" line proves the port is ours: another
            // test's gateway may have picked the same free port and answer the probe.
            let ours = fs::read_to_string(self.log_path())
                .map(|log| log.contains(&format!("127.0.0.1:{port}")) && log.contains("listening"))
                .unwrap_or(false);
            if !ours {
                if Instant::now() >= deadline {
                    panic!(
                        "mxguard did not start listening on port {port} within 20 s; log:\n{}",
                        self.logs()
                    );
                }
                thread::sleep(Duration::from_millis(30));
                continue;
            }
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                // Read the banner and quit, so the probe session ends cleanly.
                let mut c = SmtpClient {
                    stream: s,
                    buf: Vec::new(),
                    timeout: Duration::from_secs(5),
                };
                c.stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                if c.try_read_reply().is_ok() {
                    let _ = c.try_cmd("QUIT");
                    let _ = c.is_closed();
                }
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "mxguard did not accept connections on port {port} within 20 s; log:\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the running child.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid().expect("gateway not running");
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }

    /// How many lines of the current run's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits up to `timeout` until more than `before` lines of the current log contain
    /// `needle`; returns the first such new entry: that line plus the continuation lines
    /// after it (lines that do not start with a `YYYY-` timestamp or a `{`).
    pub fn wait_log_line(&self, timeout: Duration, needle: &str, before: usize) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            let log = fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            found = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.contains(needle))
                .nth(before)
                .map(|(i, l)| {
                    let mut entry = l.to_string();
                    for next in &lines[i + 1..] {
                        let b = next.as_bytes();
                        let timestamp =
                            b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
                        if timestamp || next.starts_with('{') {
                            break;
                        }
                        entry.push('\n');
                        entry.push_str(next);
                    }
                    entry
                });
            found.is_some()
        });
        found
    }

    /// OS process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the status (or
    /// `None` after SIGKILLing a child that did not exit in time).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the child is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Starts again on the same spool and working directory, on `port`
    /// (or a new free port when `None`). Kills a running child first.
    #[track_caller]
    pub fn restart(&mut self, port: Option<u16>) {
        self.kill9();
        self.spawn(port.unwrap_or_else(free_port));
    }

    /// Runs `mxguard ARGS... --config CONFIG` in the gateway's directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        run_with_timeout(
            Command::new(mxguard_bin())
                .args(args)
                .arg("--config")
                .arg(self.config_path())
                .current_dir(&self.dir),
            Duration::from_secs(30),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let logs = self.logs();
            let tail: String = if logs.len() > 20_000 {
                logs[logs.len() - 20_000..].to_string()
            } else {
                logs
            };
            eprintln!("===== mxguard log (port {}) =====\n{tail}", self.port);
        }
    }
}

/// Runs a command with a deadline (killed after it), capturing its output.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_thread.join().unwrap();
            let stderr = err_thread.join().unwrap();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `mxguard ARGS...` in `dir` (with a 120 s deadline), capturing its output.
pub fn run_mxguard(dir: &Path, args: &[&str]) -> std::process::Output {
    run_with_timeout(
        Command::new(mxguard_bin()).args(args).current_dir(dir),
        Duration::from_secs(120),
    )
}

/// Writes `contents` to `path` the way editors save: a temporary file in the same
/// directory (not matching `*.cf`), then a rename over the target.
pub fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("swp-tmp");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The admin (metrics) port of a running test gateway, read from the configuration file of
/// its current run (a restart picks new ports).
pub fn admin_port(gw: &Gateway) -> u16 {
    let text = fs::read_to_string(gw.config_path()).expect("read gateway config");
    let section = text
        .split("[metrics]")
        .nth(1)
        .expect("no [metrics] section in the test config");
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("listen"))
        .expect("no metrics.listen in the test config");
    line.rsplit(':')
        .next()
        .map(|p| p.trim_matches(|c: char| !c.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad metrics.listen line: {line}"))
}

/// Port of a process-wide UDP DNS stub on 127.0.0.1 that answers every query with
/// NXDOMAIN, so gateways under test resolve nothing, quickly, and never leave the machine.
pub fn nxdomain_dns_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind DNS stub");
        let port = socket.local_addr().expect("DNS stub address").port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                let mut reply = buf[..n].to_vec();
                reply[2] = 0x80 | (buf[2] & 0x79) | 0x04; // QR, opcode/RD kept, AA
                reply[3] = 0x80 | 0x03; // RA, RCODE=NXDOMAIN
                reply[6..12].fill(0); // no answer, authority or additional records
                                      // Keep only the question section (drop an EDNS OPT record, if any).
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + buf[end] as usize;
                }
                reply.truncate((end + 5).min(n));
                let _ = socket.send_to(&reply, peer);
            }
        });
        port
    })
}
