//! Test support for the relay: a scripted fake SMTP server on loopback, and config/spool helpers.

use crate::config::Config;
use crate::spool::{unix_now, Envelope};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A reply decided per call.
pub type ReplyFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How the fake server behaves.
#[derive(Clone)]
pub struct Script {
    /// Announce PIPELINING.
    pub pipelining: bool,
    /// Answer EHLO with 502 (the client must fall back to HELO).
    pub refuse_ehlo: bool,
    /// Close each connection right after accepting it.
    pub drop_connection: bool,
    /// Wait this long before each reply after the banner.
    pub delay: Duration,
    /// Reply line (without CRLF) to `RCPT TO:<addr>`, given `addr`.
    pub rcpt: ReplyFn,
    /// Reply line to the end of data, given the sender.
    pub data_end: ReplyFn,
    /// Offer STARTTLS with this acceptor.
    pub tls: Option<TlsAcceptor>,
    /// Offer SMTPUTF8 and, as Postfix does, refuse a non-ASCII `RCPT` address with
    /// `553 5.6.7` unless `MAIL` declared it.
    pub smtputf8: bool,
    /// Offer 8BITMIME.
    pub eight_bit_mime: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            pipelining: true,
            refuse_ehlo: false,
            drop_connection: false,
            delay: Duration::ZERO,
            rcpt: Arc::new(|_| "250 2.1.5 Ok".into()),
            data_end: Arc::new(|_| "250 2.0.0 Ok: queued".into()),
            tls: None,
            smtputf8: false,
            eight_bit_mime: true,
        }
    }
}

/// One message the fake server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// Reverse path.
    pub mail_from: String,
    /// Recipients it accepted.
    pub rcpt_to: Vec<String>,
    /// The data section exactly as on the wire (still dot-stuffed), without `.\r\n`.
    pub data: Vec<u8>,
}

/// What the fake server saw.
#[derive(Debug, Default)]
pub struct Record {
    /// TCP connections accepted.
    pub connections: usize,
    /// Every command line, in order.
    pub commands: Vec<String>,
    /// Messages accepted.
    pub messages: Vec<Received>,
    /// A MAIL command arrived together with further commands (the client pipelined).
    pub pipelined: bool,
    /// TLS handshakes completed.
    pub tls_sessions: usize,
    /// RCPT commands waiting for their reply now.
    pub rcpts_pending: usize,
    /// The most RCPT commands that ever waited for their reply at once.
    pub most_rcpts_pending: usize,
}

/// A running fake server; stops when dropped.
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Starts a server on a loopback port.
    pub async fn start(script: Script) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = record.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                rec.lock().unwrap().connections += 1;
                if script.drop_connection {
                    drop(stream);
                    continue;
                }
                tokio::spawn(session(stream, script.clone(), rec.clone()));
            }
        });
        FakeServer { addr, record, task }
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.record.lock().unwrap().messages.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.record.lock().unwrap().connections
    }

    /// Commands seen so far.
    pub fn commands(&self) -> Vec<String> {
        self.record.lock().unwrap().commands.clone()
    }
}

/// An address on which nothing listens (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn between_brackets(s: &str) -> String {
    let start = s.find('<').map_or(0, |i| i + 1);
    let end = s[start..].find('>').map_or(s.len(), |i| start + i);
    s[start..end].to_owned()
}

async fn session(stream: TcpStream, script: Script, rec: Arc<Mutex<Record>>) {
    let Some(tcp) = dialogue(stream, &script, &rec, true).await else {
        return;
    };
    let Some(acceptor) = script.tls.clone() else {
        return;
    };
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    rec.lock().unwrap().tls_sessions += 1;
    dialogue(tls, &script, &rec, false).await;
}

/// A self-signed certificate for `localhost`, as a STARTTLS acceptor.
pub fn tls_acceptor() -> TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// Runs the SMTP dialogue; returns the stream when the client asked for STARTTLS.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: &Script,
    rec: &Mutex<Record>,
    plaintext: bool,
) -> Option<S> {
    let mut r = BufReader::new(stream);
    if plaintext {
        r.write_all(b"220 fake.example.test ESMTP\r\n").await.ok()?;
    }
    let mut from = String::new();
    let mut mail_utf8 = false;
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        let buffered = !r.buffer().is_empty();
        rec.lock().unwrap().commands.push(line.clone());
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" if script.refuse_ehlo => "502 5.5.2 no EHLO here".to_owned(),
            "EHLO" => {
                let mut s = String::from("250-fake.example.test\r\n");
                if script.pipelining {
                    s.push_str("250-PIPELINING\r\n");
                }
                if plaintext && script.tls.is_some() {
                    s.push_str("250-STARTTLS\r\n");
                }
                if script.smtputf8 {
                    s.push_str("250-SMTPUTF8\r\n");
                }
                if script.eight_bit_mime {
                    s.push_str("250-8BITMIME\r\n");
                }
                s.push_str("250-SIZE 10000000\r\n250 ENHANCEDSTATUSCODES");
                s
            }
            "HELO" => "250 fake.example.test".to_owned(),
            "STARTTLS" if plaintext && script.tls.is_some() => {
                r.write_all(b"220 2.0.0 ready\r\n").await.ok()?;
                // Anything the client sent after STARTTLS is dropped with the buffer.
                return Some(r.into_inner());
            }
            "MAIL" => {
                if buffered {
                    rec.lock().unwrap().pipelined = true;
                }
                from = between_brackets(&line);
                mail_utf8 = line.to_ascii_uppercase().ends_with(" SMTPUTF8")
                    || line.to_ascii_uppercase().contains(" SMTPUTF8 ");
                rcpts.clear();
                "250 2.1.0 Ok".to_owned()
            }
            "RCPT" => {
                let mut record = rec.lock().unwrap();
                record.rcpts_pending += 1;
                record.most_rcpts_pending = record.most_rcpts_pending.max(record.rcpts_pending);
                drop(record);
                let addr = between_brackets(&line);
                let reply = if script.smtputf8 && !addr.is_ascii() && !mail_utf8 {
                    "553 5.6.7 Must declare SMTPUTF8 to send unicode address".to_owned()
                } else {
                    (script.rcpt)(&addr)
                };
                if reply.starts_with('2') {
                    rcpts.push(addr);
                }
                reply
            }
            "DATA" if rcpts.is_empty() => "554 5.5.1 no valid recipients".to_owned(),
            "DATA" => {
                if !script.delay.is_zero() {
                    tokio::time::sleep(script.delay).await;
                }
                r.write_all(b"354 go ahead\r\n").await.ok()?;
                r.flush().await.ok()?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await.ok()? == 0 {
                        return None;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                let reply = (script.data_end)(&from);
                if reply.starts_with('2') {
                    rec.lock().unwrap().messages.push(Received {
                        mail_from: from.clone(),
                        rcpt_to: std::mem::take(&mut rcpts),
                        data,
                    });
                }
                rcpts.clear();
                reply
            }
            "RSET" => {
                rcpts.clear();
                "250 2.0.0 Ok".to_owned()
            }
            "NOOP" => "250 2.0.0 Ok".to_owned(),
            "QUIT" => {
                let _ = r.write_all(b"221 2.0.0 Bye\r\n").await;
                // Drain until the client closes.
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink).await;
                return None;
            }
            _ => "500 5.5.2 unknown command".to_owned(),
        };
        if !script.delay.is_zero() && verb != "DATA" {
            tokio::time::sleep(script.delay).await;
        }
        let written = r.write_all(format!("{reply}\r\n").as_bytes()).await;
        let flushed = r.flush().await;
        if verb == "RCPT" {
            rec.lock().unwrap().rcpts_pending -= 1;
        }
        written.ok()?;
        flushed.ok()?;
        // A server closing the session (at its error limit, say) hangs up after its 421.
        if reply.starts_with("421") {
            return None;
        }
    }
}

/// A test configuration relaying to `internal`, with short timeouts and retry delays;
/// `overrides` replace or add `[relay]` keys (values are TOML).
pub fn config(
    spool_dir: &Path,
    internal: &[SocketAddr],
    overrides: &[(&str, &str)],
) -> Arc<Config> {
    let list = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut keys: Vec<(String, String)> = vec![
        ("domains".into(), "[\"example.test\"]".into()),
        ("internal".into(), format!("[{}]", list(internal))),
        ("tls".into(), "\"off\"".into()),
        ("workers".into(), "2".into()),
        ("retry_initial".into(), "\"50ms\"".into()),
        ("retry_max".into(), "\"200ms\"".into()),
        ("connect_timeout".into(), "\"2s\"".into()),
        ("command_timeout".into(), "\"2s\"".into()),
        ("data_timeout".into(), "\"2s\"".into()),
        ("idle_timeout".into(), "\"5s\"".into()),
    ];
    for (k, v) in overrides {
        keys.retain(|(key, _)| key != k);
        keys.push(((*k).into(), (*v).into()));
    }
    let mut text = String::from("[server]\nhostname = \"gw.example.test\"\n[relay]\n");
    for (k, v) in keys {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text.push_str(&format!(
        "[spool]\ndir = {:?}\n",
        spool_dir.display().to_string()
    ));
    Arc::new(Config::from_toml(Path::new("t.toml"), &text).unwrap())
}

/// An envelope from `from` to `to`, received now.
pub fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        mail_from: from.into(),
        rcpt_to: to.iter().map(|s| s.to_string()).collect(),
        client_ip: "192.0.2.1".parse().unwrap(),
        helo: "mx.example.org".into(),
        received_at: unix_now(),
        body_8bit: false,
        smtputf8: false,
        verdict: "accept".into(),
        score: 0.0,
        is_dsn: false,
        rules: Vec::new(),
    }
}

/// Polls `cond` until it holds; panics (naming `what`) if it does not within 15 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
