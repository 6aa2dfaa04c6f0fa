//! The scriptable internal SMTP server the gateway relays to: records what it accepts and
//! answers RCPT, end of data or the greeting as a test's `Script` says.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::DELIVERY_TIMEOUT;

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
    // Replies go out as separate small writes (each reply of a pipelined batch): with Nagle
    // on, the second waits for the client's delayed ACK and every message costs ~40 ms.
    stream.set_nodelay(true)?;
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
