//! The admin listener under abuse (issue 12 defects): a slow-request flood must not make
//! `/healthz` unreachable, and `/healthz` must fail while the spool still has a little
//! room, not only once every message gets 452.

mod common;

use common::admin::*;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Slowloris: `n` connections that each send one more header byte per round and never
/// finish their request; a connection the server closes is opened again at once.
struct SlowFlood {
    stop: Arc<AtomicBool>,
    /// Connections opened so far (the first `n`, then every reconnect).
    opened: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SlowFlood {
    fn start(port: u16, n: usize, round: Duration) -> SlowFlood {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let (stop2, opened2) = (stop.clone(), opened.clone());
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let connect = move || -> Option<TcpStream> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").ok()?;
            s.set_nonblocking(true).ok()?;
            opened2.fetch_add(1, Ordering::SeqCst);
            Some(s)
        };
        let thread = thread::spawn(move || {
            let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| connect()).collect();
            while !stop2.load(Ordering::SeqCst) {
                for slot in conns.iter_mut() {
                    let alive = slot.as_mut().is_some_and(|s| {
                        let mut buf = [0u8; 512];
                        let open = match s.read(&mut buf) {
                            Ok(0) => false,
                            Ok(_) => true,
                            Err(e) => e.kind() == ErrorKind::WouldBlock,
                        };
                        open && s.write_all(b"a").is_ok()
                    });
                    if !alive {
                        *slot = connect();
                    }
                }
                thread::sleep(round);
            }
        });
        SlowFlood {
            stop,
            opened,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /healthz` that reports a refused, reset or unanswered request instead of
/// panicking; `Some(status)` when it was answered within the reply timeout.
fn try_healthz(port: u16) -> Option<u16> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).ok()?;
    s.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Regression: with 32 slots and a 10 s header deadline, 40 clients sending one header
/// byte every 2 s made `/healthz` time out half the time and 100 made it unreachable.
#[test]
fn healthz_keeps_answering_under_a_slow_header_flood() {
    const FLOODERS: usize = 150;
    const PROBES: usize = 20;
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let admin = admin_port(&gw);
    let flood = SlowFlood::start(admin, FLOODERS, Duration::from_millis(500));
    // Every flooder has connected and sent part of a request before the probes start.
    assert!(
        wait_until(Duration::from_secs(30), || flood
            .opened
            .load(Ordering::SeqCst)
            >= FLOODERS),
        "the flood never got going"
    );
    thread::sleep(Duration::from_secs(2));
    let mut answered = 0;
    let mut failures = Vec::new();
    for i in 0..PROBES {
        match try_healthz(admin) {
            Some(200) => answered += 1,
            other => failures.push(format!("probe {i}: {other:?}")),
        }
    }
    let reconnects = flood.opened.load(Ordering::SeqCst) - FLOODERS;
    drop(flood);
    println!(
        "{FLOODERS} slow clients: {answered} of {PROBES} /healthz probes answered 200; \
         the flood had to reconnect {reconnects} times"
    );
    assert!(
        failures.is_empty(),
        "/healthz unreachable under a slow-request flood: {failures:?}"
    );
    // And the gateway itself never noticed.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("after-flood@test", "f", "b"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("after-flood@test");
}

/// Regression: `/healthz` said `200 ok` with 4 KB left on the spool's file system while
/// every message got 452. Here the threshold is set above any disk's size.
#[test]
fn healthz_fails_when_spool_free_space_is_below_min_free_bytes() {
    let internal = InternalServer::start();
    let low = Gateway::start(
        GatewayConfig::new(&internal).spool_key("min_free_bytes", "9000000000000000000"),
    );
    let r = get(admin_port(&low), "/healthz");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.starts_with("spool low on space\n"), "{}", r.body);
    assert!(r.body.contains("spool.min_free_bytes"), "{}", r.body);

    // The default threshold (100 MiB) on a disk with room: healthy, with the free space.
    let ok = Gateway::start(GatewayConfig::new(&internal));
    let r = get(admin_port(&ok), "/healthz");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("bytes free"), "{}", r.body);
}
