//! Fault injection with a hostile internal server written here: lines nobody asked for
//! after the greeting or after STARTTLS's 220, replies far too long, TLS closed in the
//! middle of DATA. Whatever it does, a message counts as delivered only when a server
//! really has all of it; otherwise it is retried or failed over, never bounced, never lost.

mod common;

use common::admin::{scrape, scrape_until};
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the hostile server does wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Misbehaviour {
    /// A second greeting line right after the first, as a proxy in front of the server
    /// might send: every reply the client reads afterwards is one step behind.
    SecondGreeting,
    /// Plaintext lines sent with STARTTLS's `220`, in the same segment: a client that
    /// keeps them reads them as replies inside TLS (the CVE-2011-0411 family, client side).
    InjectionAfterStarttls,
    /// A banner of 1 MiB without an end.
    OversizedBanner,
    /// An EHLO reply of 100,000 continuation lines.
    EndlessEhloReply,
    /// TLS closed (close_notify, then the TCP connection) after part of the data.
    TlsClosedInData,
}

/// One message the hostile server received completely and acknowledged.
#[derive(Debug, Clone)]
struct Got {
    message_id: String,
    tls: bool,
}

struct Shared {
    got: Mutex<Vec<Got>>,
    connections: AtomicUsize,
    stop: AtomicBool,
}

/// The hostile server: its first `bad_connections` connections misbehave, later ones
/// behave (so a retry to the same server can succeed).
struct Hostile {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(misbehaviour: Misbehaviour, bad_connections: usize) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            got: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let tls = tls_config();
        let s = shared.clone();
        let thread = thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let n = s.connections.fetch_add(1, Ordering::SeqCst);
                        let bad = (n < bad_connections).then_some(misbehaviour);
                        let (s, tls) = (s.clone(), tls.clone());
                        thread::spawn(move || {
                            let _ = session(tcp, bad, &tls, &s);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Hostile {
            port,
            shared,
            thread: Some(thread),
        }
    }

    fn got(&self) -> Vec<Got> {
        self.shared.got.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_config() -> Arc<ServerConfig> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["hostile.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Arc::new(config)
}

/// The connection, plain or inside TLS.
enum Wire {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Wire {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Wire::Plain(s) => s.write_all(bytes),
            Wire::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    /// One line up to LF, read byte by byte so nothing behind it is consumed (STARTTLS
    /// must find the TLS handshake untouched); `None` at end of stream.
    fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            let n = match self {
                Wire::Plain(s) => s.read(&mut b),
                Wire::Tls(s) => s.read(&mut b),
            };
            match n {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    line.push(b[0]);
                    if b[0] == b'\n' {
                        return Ok(Some(line));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn session(
    tcp: TcpStream,
    bad: Option<Misbehaviour>,
    tls: &Arc<ServerConfig>,
    shared: &Shared,
) -> io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    let mut wire = Wire::Plain(tcp);
    match bad {
        Some(Misbehaviour::SecondGreeting) => {
            wire.write(b"220 hostile.test ESMTP\r\n220 hostile.test ESMTP again\r\n")?
        }
        Some(Misbehaviour::OversizedBanner) => {
            wire.write(b"220 ")?;
            for _ in 0..256 {
                wire.write(&[b'a'; 4096])?;
            }
            // Keep the connection open until the client gives up on it.
            while wire.line()?.is_some() {}
            return Ok(());
        }
        _ => wire.write(b"220 hostile.test ESMTP\r\n")?,
    }
    let mut in_tls = false;
    while let Some(line) = wire.line()? {
        let text = String::from_utf8_lossy(&line)
            .trim_end()
            .to_ascii_uppercase();
        if text.starts_with("EHLO") {
            if bad == Some(Misbehaviour::EndlessEhloReply) {
                for _ in 0..1000 {
                    wire.write(&b"250-x\r\n".repeat(100))?;
                }
                wire.write(b"250 x\r\n")?;
                continue;
            }
            let starttls = if in_tls { "" } else { "250-STARTTLS\r\n" };
            wire.write(
                format!("250-hostile.test\r\n250-PIPELINING\r\n{starttls}250 8BITMIME\r\n")
                    .as_bytes(),
            )?;
        } else if text == "STARTTLS" && !in_tls {
            if bad == Some(Misbehaviour::InjectionAfterStarttls) {
                wire.write(b"220 2.0.0 go ahead\r\n250-injected\r\n250 OK injected\r\n")?;
            } else {
                wire.write(b"220 2.0.0 go ahead\r\n")?;
            }
            let Wire::Plain(tcp) = wire else {
                unreachable!()
            };
            let conn = ServerConnection::new(tls.clone()).map_err(io::Error::other)?;
            wire = Wire::Tls(Box::new(StreamOwned::new(conn, tcp)));
            in_tls = true;
        } else if text.starts_with("MAIL FROM:") {
            wire.write(b"250 2.1.0 ok\r\n")?;
        } else if text.starts_with("RCPT TO:") {
            wire.write(b"250 2.1.5 ok\r\n")?;
        } else if text == "DATA" {
            wire.write(b"354 go ahead\r\n")?;
            let mut data = Vec::new();
            let mut lines = 0;
            loop {
                let Some(l) = wire.line()? else {
                    return Ok(()); // lost in DATA: nothing recorded
                };
                if l == b".\r\n" {
                    break;
                }
                lines += 1;
                if bad == Some(Misbehaviour::TlsClosedInData) && in_tls && lines == 3 {
                    if let Wire::Tls(s) = &mut wire {
                        s.conn.send_close_notify();
                        let _ = s.flush();
                        let _ = s.sock.shutdown(std::net::Shutdown::Both);
                    }
                    return Ok(());
                }
                data.extend_from_slice(&l);
            }
            let text = String::from_utf8_lossy(&data);
            let message_id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID:"))
                .map(|v| v.trim().trim_matches(['<', '>']).to_string())
                .unwrap_or_default();
            shared.got.lock().unwrap().push(Got {
                message_id,
                tls: in_tls,
            });
            wire.write(b"250 2.0.0 stored\r\n")?;
        } else if text == "RSET" || text == "NOOP" {
            wire.write(b"250 2.0.0 ok\r\n")?;
        } else if text == "QUIT" {
            wire.write(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            wire.write(b"500 5.5.2 what\r\n")?;
        }
    }
    Ok(())
}

fn is_dsn(m: &Received) -> bool {
    m.mail_from.is_empty()
}

/// A gateway relaying to `internal` (in order), DSNs to `dsn`.
fn gateway(internal: &[u16], dsn: &InternalServer) -> Gateway {
    let mut cfg =
        GatewayConfig::default().relay_key("dsn_via", &format!("[\"127.0.0.1:{}\"]", dsn.port));
    cfg.internal = internal.to_vec();
    Gateway::start(cfg)
}

fn send(gw: &Gateway, ids: &[String]) {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    for id in ids {
        c.send_mail(
            "sender@sender.test",
            &["user@example.test"],
            &message(
                id,
                "hostile",
                "line one\nline two\nline three\nline four\nEND",
            ),
        )
        .expect(250, "2.0.0");
    }
    c.quit();
}

/// Every id was received completely by the hostile server or the recorder, and nothing
/// was bounced.
#[track_caller]
fn assert_all_arrived(
    ids: &[String],
    hostile: &Hostile,
    recorder: &InternalServer,
    dsn: &InternalServer,
) {
    let arrived = |id: &String| {
        hostile.got().iter().any(|g| &g.message_id == id)
            || recorder
                .messages()
                .iter()
                .any(|m| m.message_id().as_deref() == Some(id.as_str()))
    };
    let all = wait_until(DELIVERY_TIMEOUT, || ids.iter().all(arrived));
    let missing: Vec<&String> = ids.iter().filter(|id| !arrived(id)).collect();
    assert!(
        all,
        "lost (never received whole by any server): {missing:?}; hostile got {:?}, recorder {:?}",
        hostile.got(),
        summarize(&recorder.messages())
    );
    let (_, bounced) = dsn.wait_for(Duration::from_millis(300), |_| false);
    assert!(
        !bounced.iter().any(is_dsn),
        "DSN for a server fault: {:?}",
        summarize(&bounced)
    );
}

fn ids(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}@test")).collect()
}

/// Regression: with a second greeting line every reply was read one step late, the 250
/// to RCPT was taken as the answer to DATA, and the message was settled as delivered
/// though the server never got its data.
#[test]
fn hostile_server_with_a_second_greeting_line_never_swallows_mail() {
    let hostile = Hostile::start(Misbehaviour::SecondGreeting, usize::MAX);
    let recorder = InternalServer::start();
    let dsn = InternalServer::start();
    let gw = gateway(&[hostile.port, recorder.port], &dsn);
    let ids = ids("second-greeting", 3);
    send(&gw, &ids);
    assert_all_arrived(&ids, &hostile, &recorder, &dsn);
    assert!(
        hostile.connections() >= 1,
        "the hostile server was never tried"
    );
}

/// Plaintext injected behind STARTTLS's 220 is discarded: the session continues inside
/// TLS with the server's real answers and delivers over TLS.
#[test]
fn hostile_server_injecting_after_starttls_is_ignored_and_mail_goes_over_tls() {
    let hostile = Hostile::start(Misbehaviour::InjectionAfterStarttls, usize::MAX);
    let recorder = InternalServer::start();
    let dsn = InternalServer::start();
    let gw = gateway(&[hostile.port], &dsn);
    let ids = ids("starttls-injection", 3);
    send(&gw, &ids);
    assert_all_arrived(&ids, &hostile, &recorder, &dsn);
    let got = hostile.got();
    assert!(got.iter().all(|g| g.tls), "delivered without TLS: {got:?}");
    assert_eq!(got.len(), ids.len(), "delivered more than once: {got:?}");
}

/// Replies far beyond any limit (a 1 MiB banner, 100,000 EHLO lines) end the attempt
/// with a protocol error before anything was handed over: the next server gets the mail,
/// and the gateway's memory is not at the mercy of its internal server.
#[test]
fn hostile_server_with_oversized_replies_fails_over_to_the_next_server() {
    for bad in [
        Misbehaviour::OversizedBanner,
        Misbehaviour::EndlessEhloReply,
    ] {
        let hostile = Hostile::start(bad, usize::MAX);
        let recorder = InternalServer::start();
        let dsn = InternalServer::start();
        let gw = gateway(&[hostile.port, recorder.port], &dsn);
        let ids = ids(&format!("{bad:?}"), 2);
        send(&gw, &ids);
        assert_all_arrived(&ids, &hostile, &recorder, &dsn);
        assert!(hostile.got().is_empty(), "{bad:?}: {:?}", hostile.got());
        // The recorder stores a message before it answers 250; the gateway counts after.
        scrape_until(admin_port(&gw), &format!("{bad:?}: 2 delivered"), |s| {
            s.value("mxguard_relay_attempts_total", &[("result", "delivered")]) >= 2.0
        });
    }
}

/// TLS closed in the middle of DATA (twice): the attempt is deferred, not failed over (the
/// body was on its way) and not bounced; the retry delivers it whole.
#[test]
fn hostile_server_closing_tls_in_the_middle_of_data_gets_a_retry_not_a_bounce() {
    let hostile = Hostile::start(Misbehaviour::TlsClosedInData, 2);
    let recorder = InternalServer::start();
    let dsn = InternalServer::start();
    let gw = gateway(&[hostile.port], &dsn);
    let ids = ids("tls-cut", 1);
    send(&gw, &ids);
    assert_all_arrived(&ids, &hostile, &recorder, &dsn);
    let got = hostile.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].tls);
    let s = scrape(admin_port(&gw));
    assert!(
        s.value("mxguard_relay_attempts_total", &[("result", "deferred")]) >= 1.0,
        "the cut attempt was not deferred"
    );
}
