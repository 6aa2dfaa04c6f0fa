//! STARTTLS: advertised only with a certificate, a working TLS session afterwards, and no
//! answer to plaintext commands pipelined behind STARTTLS (command injection).

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

#[derive(Clone)]
struct Pki {
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

/// A throwaway CA and a server certificate for the gateway's hostname.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mxguard test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf = CertificateParams::new(vec![HOSTNAME.to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, HOSTNAME);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_der: ca_cert.der().clone(),
        cert_pem: leaf_cert.pem() + &ca_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn tls_gateway() -> (InternalServer, Gateway, Pki) {
    let internal = InternalServer::start();
    let pki = pki();
    let mut cfg = GatewayConfig::new(&internal);
    cfg.tls = Some((pki.cert_pem.clone(), pki.key_pem.clone()));
    let gw = Gateway::start(cfg);
    (internal, gw, pki)
}

fn connector(pki: &Pki) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

const T: Duration = Duration::from_secs(15);

/// EHLO and STARTTLS on a new session to `port`, then the handshake trusting `pki`'s CA.
async fn start_tls(
    port: u16,
    pki: &Pki,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    reply(&mut tcp).await.expect(220, "");
    cmd(&mut tcp, "EHLO client.sender.test")
        .await
        .expect(250, "");
    cmd(&mut tcp, "STARTTLS").await.expect(220, "2.0.0");
    let name = ServerName::try_from(HOSTNAME).unwrap();
    timeout(T, connector(pki).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
}

/// Reads one reply byte by byte (never past its last CRLF, so nothing that follows is
/// consumed from the plaintext stream).
async fn reply<S: AsyncRead + Unpin>(s: &mut S) -> Reply {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        loop {
            let mut b = [0u8; 1];
            let n = timeout(T, s.read(&mut b))
                .await
                .expect("timed out waiting for a reply")
                .expect("read failed");
            assert!(
                n == 1,
                "connection closed; partial line {:?}",
                String::from_utf8_lossy(&line)
            );
            line.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        assert!(text.len() >= 3, "bad reply line {text:?}");
        let code: u16 = text[..3]
            .parse()
            .unwrap_or_else(|_| panic!("bad reply {text:?}"));
        let more = text.as_bytes().get(3) == Some(&b'-');
        lines.push(text.get(4..).unwrap_or("").to_string());
        if !more {
            return Reply { code, lines };
        }
    }
}

async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, line: &str) -> Reply {
    timeout(T, s.write_all(format!("{line}\r\n").as_bytes()))
        .await
        .unwrap()
        .unwrap();
    reply(s).await
}

#[test]
fn ehlo_offers_starttls_with_a_certificate() {
    let (_internal, gw, _pki) = tls_gateway();
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.cmd("EHLO again.sender.test");
    assert!(
        r.keywords().iter().any(|k| k == "STARTTLS"),
        "no STARTTLS: {r}"
    );
    c.quit();
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let (internal, gw, pki) = tls_gateway();
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    reply(&mut tcp).await.expect(220, "");
    cmd(&mut tcp, "EHLO client.sender.test")
        .await
        .expect(250, "");
    // One segment: STARTTLS and the injected command.
    tcp.write_all(b"STARTTLS\r\nEHLO injected.evil.test\r\n")
        .await
        .unwrap();
    reply(&mut tcp).await.expect(220, "2.0.0");
    let name = ServerName::try_from(HOSTNAME).unwrap();
    let mut tls = timeout(T, connector(&pki).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed (did the server answer the injected EHLO in plaintext?)");
    // The server must not have answered the injected EHLO, inside TLS either.
    let mut buf = [0u8; 512];
    match timeout(Duration::from_millis(1500), tls.read(&mut buf)).await {
        Err(_) => {} // nothing: good
        Ok(Ok(0)) => panic!("server closed the TLS session right after the handshake"),
        Ok(Ok(n)) => panic!(
            "server answered the injected plaintext command inside TLS: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(e)) => panic!("TLS read failed: {e}"),
    }
    // A real EHLO over TLS works, without STARTTLS on offer, and mail goes through.
    let r = cmd(&mut tls, "EHLO client.sender.test").await;
    r.expect(250, "");
    assert!(
        !r.keywords().iter().any(|k| k == "STARTTLS"),
        "STARTTLS offered again inside TLS: {r}"
    );
    cmd(&mut tls, "MAIL FROM:<s@sender.test>")
        .await
        .expect(250, "");
    cmd(&mut tls, "RCPT TO:<user@example.test>")
        .await
        .expect(250, "");
    cmd(&mut tls, "DATA").await.expect(354, "");
    tls.write_all(&dot_stuffed(&message("tls@test", "over tls", "secret")))
        .await
        .unwrap();
    reply(&mut tls).await.expect(250, "2.0.0");
    let again = cmd(&mut tls, "STARTTLS").await;
    assert!(again.code >= 500, "second STARTTLS answered {again}");
    cmd(&mut tls, "QUIT").await.expect(221, "2.0.0");
    let internal = tokio::task::spawn_blocking(move || {
        let m = internal.expect_message_id("tls@test");
        assert!(m.text().contains("secret"));
        internal
    })
    .await
    .unwrap();
    drop(internal);
    drop(gw);
}

#[tokio::test]
async fn session_state_is_reset_by_starttls() {
    let (internal, gw, pki) = tls_gateway();
    let mut tls = start_tls(gw.port, &pki)
        .await
        .expect("TLS handshake failed");
    // RFC 3207: the client must EHLO again; MAIL before that is a sequence error.
    cmd(&mut tls, "MAIL FROM:<s@sender.test>")
        .await
        .expect(503, "5.5.1");
    cmd(&mut tls, "EHLO client.sender.test")
        .await
        .expect(250, "");
    cmd(&mut tls, "QUIT").await.expect(221, "2.0.0");
    drop(internal);
    drop(gw);
}

/// Regression (review): STARTTLS was taken inside a mail transaction, and a BDAT transfer
/// left open kept its message memory through the handshake wait (up to the command
/// timeout), out of reach of the memory hold and the minimum rate. As Postfix, it is
/// refused until the transaction ends.
#[test]
fn starttls_inside_a_mail_transaction_is_refused() {
    let (_internal, gw, _pki) = tls_gateway();
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "2.1.0");
    c.cmd("STARTTLS").expect(503, "5.5.1");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "2.1.5");
    let mut chunk = b"BDAT 100\r\n".to_vec();
    chunk.extend_from_slice(&[b'x'; 100]);
    c.send(&chunk);
    c.read_reply().expect(250, "2.0.0");
    let r = c.cmd("STARTTLS");
    r.expect(503, "5.5.1");
    assert!(r.text().contains("transaction"), "{r}");
    c.cmd("RSET").expect(250, "2.0.0");
    c.cmd("STARTTLS").expect(220, "2.0.0");
}

#[test]
fn plaintext_mail_still_works_when_tls_is_offered() {
    let (internal, gw, _pki) = tls_gateway();
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("plain@test", "p", "b"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("plain@test");
}

/// STARTTLS command injection with a whole transaction behind it: the injected MAIL and
/// RCPT are discarded with the plaintext buffer, so inside TLS there is no transaction
/// to send DATA for, and nothing is ever relayed for the injected sender.
#[tokio::test]
async fn starttls_injected_transaction_never_becomes_mail() {
    let (internal, gw, pki) = tls_gateway();
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    reply(&mut tcp).await.expect(220, "");
    cmd(&mut tcp, "EHLO client.sender.test")
        .await
        .expect(250, "");
    tcp.write_all(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<user@example.test>\r\n")
        .await
        .unwrap();
    reply(&mut tcp).await.expect(220, "2.0.0");
    let name = ServerName::try_from(HOSTNAME).unwrap();
    let mut tls = timeout(T, connector(&pki).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed");
    cmd(&mut tls, "EHLO client.sender.test")
        .await
        .expect(250, "");
    cmd(&mut tls, "DATA").await.expect(503, "5.5.1");
    cmd(&mut tls, "QUIT").await.expect(221, "2.0.0");
    let internal = tokio::task::spawn_blocking(move || {
        let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
        assert!(
            !msgs.iter().any(|m| m.mail_from.contains("injected")),
            "injected transaction relayed: {}",
            summarize(&msgs).join("; ")
        );
        internal
    })
    .await
    .unwrap();
    drop(internal);
    drop(gw);
}

/// Regression (review): the TLS handshake after `220 Ready to start TLS` was not a wait
/// for the client, so a session stalled in it could not be evicted under stress and
/// held its slot for the whole `command_timeout`: clients that stall there fill every
/// slot and real senders get `421 4.3.2`, the silent-client flood through STARTTLS.
#[test]
fn a_client_stalled_in_the_tls_handshake_is_evicted_under_stress() {
    let internal = InternalServer::start();
    let pki = pki();
    let mut cfg = GatewayConfig::new(&internal)
        .limit("max_sessions", "2")
        .limit("stress_threshold_percent", "100")
        .limit("stress_idle_timeout", "\"2s\"");
    cfg.tls = Some((pki.cert_pem.clone(), pki.key_pem.clone()));
    let gw = Gateway::start(cfg);
    let mut stalled = Vec::new();
    for i in 1..=2 {
        let mut c = SmtpClient::connect_from(gw.port, &format!("127.0.10.{i}"));
        c.read_reply().expect(220, "");
        c.cmd("EHLO stalling.test").expect(250, "");
        c.cmd("STARTTLS").expect(220, "2.0.0");
        // No ClientHello follows.
        stalled.push(c);
        std::thread::sleep(Duration::from_millis(300));
    }
    send_one(gw.port, "127.0.11.1", "after-stalled-tls@test").expect(250, "2.0.0");
    internal.expect_message_id("after-stalled-tls@test");
    assert!(
        stalled[0].is_closed(),
        "the longest-stalled handshake kept its slot"
    );
}

/// Regression (review): the certificate was read once at start, so a renewed certificate
/// (certbot every two months) was not served until a restart: SIGHUP kept the old one.
#[tokio::test]
async fn a_reload_serves_a_renewed_certificate() {
    let (_internal, gw, old) = tls_gateway();
    let handshake = |pki: &Pki| {
        let (port, pki) = (gw.port, pki.clone());
        async move { start_tls(port, &pki).await.is_ok() }
    };
    assert!(handshake(&old).await);
    let renewed = pki();
    assert!(
        !handshake(&renewed).await,
        "the new CA trusted before the renewal"
    );
    let before = gw.log_count("policy reloaded");
    write_atomically(&gw.dir.join("cert.pem"), &renewed.cert_pem);
    write_atomically(&gw.dir.join("key.pem"), &renewed.key_pem);
    gw.signal(libc::SIGHUP);
    assert!(
        gw.wait_log_line(Duration::from_secs(10), "policy reloaded", before)
            .is_some(),
        "no reload:\n{}",
        gw.logs()
    );
    assert!(
        handshake(&renewed).await,
        "the renewed certificate is not served"
    );
    assert!(
        !handshake(&old).await,
        "the old certificate is still served"
    );
}

/// Regression (review): only handshakes that succeeded were counted, so a certificate
/// that verifying senders refuse (expired, an incomplete chain) showed nowhere in the
/// metrics while those senders deferred all their mail.
#[tokio::test]
async fn a_client_refusing_our_certificate_is_counted() {
    let (_internal, gw, _pki) = tls_gateway();
    let stranger = pki();
    assert!(start_tls(gw.port, &stranger).await.is_err());
    let admin = admin_port(&gw);
    let alerts = || {
        common::admin::scrape(admin).value(
            "mxguard_tls_handshake_failures_total",
            &[("reason", "alert")],
        )
    };
    assert!(
        common::wait_until(Duration::from_secs(5), || alerts() == 1.0),
        "counted {} alerts:\n{}",
        alerts(),
        gw.logs()
    );
}

/// Regression (review; RFC 3207 §4.2): commands sent ahead of the EHLO reply before TLS
/// (which an attacker on the path can add to a client's plaintext) marked the session
/// `PIPELINING_ABUSE`, and every message of the TLS session that followed was scored for
/// it. What the client did before TLS is forgotten with the rest.
#[tokio::test]
async fn commands_sent_ahead_before_starttls_are_forgotten_with_it() {
    let internal = InternalServer::start();
    let pki = pki();
    let mut cfg = GatewayConfig::new(&internal)
        .file("rules/client.cf", "score PIPELINING_ABUSE 3.0\n")
        .toml("[policy]\nrules_dir = \"rules\"\n");
    cfg.tls = Some((pki.cert_pem.clone(), pki.key_pem.clone()));
    let gw = Gateway::start(cfg);
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    reply(&mut tcp).await.expect(220, "");
    tcp.write_all(b"EHLO client.sender.test\r\nNOOP\r\n")
        .await
        .unwrap();
    reply(&mut tcp).await.expect(250, "");
    reply(&mut tcp).await.expect(250, "");
    cmd(&mut tcp, "STARTTLS").await.expect(220, "2.0.0");
    let name = ServerName::try_from(HOSTNAME).unwrap();
    let mut tls = timeout(T, connector(&pki).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed");
    cmd(&mut tls, "EHLO client.sender.test")
        .await
        .expect(250, "");
    cmd(&mut tls, "MAIL FROM:<s@sender.test>")
        .await
        .expect(250, "2.1.0");
    cmd(&mut tls, "RCPT TO:<user@example.test>")
        .await
        .expect(250, "2.1.5");
    cmd(&mut tls, "DATA").await.expect(354, "");
    let body = dot_stuffed(&message("after-tls@test", "hi", "body"));
    tls.write_all(&body).await.unwrap();
    reply(&mut tls).await.expect(250, "2.0.0");
    cmd(&mut tls, "QUIT").await.expect(221, "2.0.0");
    let internal = tokio::task::spawn_blocking(move || {
        let m = internal.expect_message_id("after-tls@test");
        let rules = m.header("X-Spam-Rules").unwrap_or_default();
        assert!(!rules.contains("PIPELINING_ABUSE"), "{rules}");
        internal
    })
    .await
    .unwrap();
    drop(internal);
    drop(gw);
}
