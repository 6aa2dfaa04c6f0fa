//! Behind a load balancer: a gateway with `[server] proxy_protocol_from` takes the client
//! address from the PROXY protocol header (v1 and v2) of a listed balancer, and refuses
//! (closes, counts) every other connection and every connection without a valid header.

mod common;

use common::admin::{scrape, scrape_until, Scrape};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn behind_balancer(internal: &InternalServer, from: &str) -> Gateway {
    Gateway::start(
        GatewayConfig::new(internal)
            .server_key("proxy_protocol_from", from)
            .server_key("proxy_protocol_timeout", "\"1s\""),
    )
}

/// Connects and writes `header`; the SMTP client that follows.
fn through_balancer(port: u16, header: &[u8]) -> SmtpClient {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(header).unwrap();
    SmtpClient::from_stream(tcp, Duration::from_secs(10))
}

/// Whether the gateway closed the connection without a byte of SMTP.
fn closed_without_banner(port: u16, first: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = tcp.write_all(first);
    let mut got = Vec::new();
    // Unread bytes make the close a reset: closed all the same.
    match tcp.read_to_end(&mut got) {
        Ok(_) => got.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset && got.is_empty(),
    }
}

#[test]
fn a_listed_balancer_gives_the_real_client_to_checks_logs_and_headers() {
    let internal = InternalServer::start();
    let gw = behind_balancer(&internal, r#"["127.0.0.1/32"]"#);

    let mut c = through_balancer(gw.port, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    c.read_reply().expect(220, "");
    c.cmd("EHLO client.sender.test").expect(250, "");
    let reply = c.send_mail(
        "alice@sender.test",
        &["user@example.test"],
        &message("v1@t", "through a balancer", "hello"),
    );
    reply.expect(250, "2.0.0");
    c.quit();

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 23, 127, 0, 0, 1, 0x9c, 0x41, 0, 25]);
    let mut c = through_balancer(gw.port, &v2);
    c.read_reply().expect(220, "");
    c.cmd("EHLO client.sender.test").expect(250, "");
    c.send_mail(
        "bob@sender.test",
        &["user@example.test"],
        &message("v2@t", "through a balancer", "hello"),
    )
    .expect(250, "2.0.0");
    c.quit();

    let (_, received) = internal.wait_for(Duration::from_secs(20), |m| m.len() >= 2);
    let texts: Vec<String> = received.iter().map(|m| m.text()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("<v1@t>") && t.contains("192.0.2.7")),
        "the Received header names the real client: {texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("<v2@t>") && t.contains("198.51.100.23")),
        "{texts:?}"
    );
    let logs = gw.logs();
    assert!(logs.contains("192.0.2.7"), "{logs}");
    assert!(logs.contains("198.51.100.23"), "{logs}");
}

#[test]
fn no_header_a_bad_header_or_an_unlisted_peer_is_closed_and_counted() {
    let internal = InternalServer::start();
    let gw = behind_balancer(&internal, r#"["127.0.0.1/32"]"#);
    let before =
        scrape(admin_port(&gw)).value("mxguard_connections_total", &[("result", "proxy_refused")]);
    assert!(closed_without_banner(
        gw.port,
        b"EHLO client.sender.test\r\n"
    ));
    assert!(closed_without_banner(
        gw.port,
        b"PROXY TCP4 not-an-address 1.2.3.4 1 2\r\n"
    ));
    // Silence: the header never comes, the wait ends at proxy_protocol_timeout.
    assert!(closed_without_banner(gw.port, b""));
    let after = scrape_until(admin_port(&gw), "proxy_refused counted", |s| {
        s.value("mxguard_connections_total", &[("result", "proxy_refused")]) >= before + 3.0
    });
    assert!(
        after.value("mxguard_connections_total", &[("result", "proxy_refused")]) >= before + 3.0
    );
    // Regression (review): a balancer's TCP health check (connect, close) was counted and
    // logged as a refusal, so `proxy_refused` could not be alerted on. Counted apart.
    let value =
        |s: &Scrape, result: &str| s.value("mxguard_connections_total", &[("result", result)]);
    let was = scrape(admin_port(&gw));
    drop(std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap());
    // HAProxy closes its checks with a reset (SO_LINGER 0): as silent as a FIN.
    let reset = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    reset_on_close(&reset);
    drop(reset);
    let now = scrape_until(admin_port(&gw), "proxy_no_header counted", |s| {
        value(s, "proxy_no_header") >= value(&was, "proxy_no_header") + 2.0
    });
    assert_eq!(value(&now, "proxy_refused"), value(&was, "proxy_refused"));

    // A gateway whose balancer is elsewhere takes no connection from us, header or not.
    let elsewhere = behind_balancer(&internal, r#"["10.9.9.0/24"]"#);
    assert!(closed_without_banner(
        elsewhere.port,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n"
    ));
    assert!(elsewhere.logs().contains("PROXY protocol refused"));
    assert!(internal.messages().is_empty());
}

/// Makes closing `tcp` send a reset instead of a FIN (SO_LINGER with a zero timeout).
fn reset_on_close(tcp: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
}

/// Regression (review): a connection whose PROXY header had not come yet held a drain
/// (SIGTERM) until `proxy_protocol_timeout`, for a session that could only answer 421.
#[test]
fn a_drain_does_not_wait_for_a_header_still_coming() {
    let internal = InternalServer::start();
    let mut gw = Gateway::start(
        GatewayConfig::new(&internal)
            .server_key("proxy_protocol_from", "[\"127.0.0.1\"]")
            .server_key("proxy_protocol_timeout", "\"1h\"")
            // Long enough that only the header's reader giving up ends the drain.
            .limit("shutdown_grace", "\"1h\""),
    );
    let silent = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    // The header's reader is waiting (the connection was accepted) before the SIGTERM.
    std::thread::sleep(Duration::from_millis(300));
    // A minute is no measure of the drain, only a bound for one that waits for the hour.
    let status = gw.terminate(Duration::from_secs(60));
    assert!(status.is_some(), "the drain waited for the header");
    drop(silent);
}
