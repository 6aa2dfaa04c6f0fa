//! Big messages go to the spool file as they arrive: a message far past what is held in
//! memory is accepted, judged (on its sample, every byte searched for GTUBE, our header
//! stripping done in place) and delivered byte for byte; refused ones leave nothing in
//! `spool/tmp`. Memory itself is measured by `benches/memory_load.py`, not asserted here.

mod common;

use common::*;
use std::fs;

/// A MIME message of about `size` bytes: a text part and a base64 attachment of
/// pseudo-random bytes (deterministic, so a failure is reproducible).
fn big_message(id: &str, size: usize, extra_headers: &str, text: &str) -> Vec<u8> {
    let mut m = format!(
        "From: <sender@sender.test>\r\nTo: <user@example.test>\r\nSubject: big\r\n\
         Message-ID: <{id}>\r\n{extra_headers}MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\n{text}\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u32 = 0x9E37_79B9;
    while m.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            m.push(alphabet[(x % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b1--\r\n");
    m
}

fn gateway(limits: &[(&str, &str)]) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal)
        .limit("message_size_bytes", "60000000")
        .limit("command_timeout", "\"60s\"")
        .toml("[policy]\nrules_dir = \"rules\"\ngtube = true\n")
        .file(
            "rules/local.cf",
            "body LOCAL_PILLS /cheap pills now/i\nscore LOCAL_PILLS 20.0\n",
        );
    for (k, v) in limits {
        cfg = cfg.limit(k, v);
    }
    (internal, Gateway::start(cfg))
}

fn tmp_is_empty(gw: &Gateway) -> bool {
    fs::read_dir(gw.spool().join("tmp"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[track_caller]
fn assert_delivered_intact(m: &Received, original: &[u8]) {
    assert!(
        m.data.len() > original.len() && m.data.ends_with(original),
        "the relayed message differs from the one sent ({} bytes relayed, {} sent)",
        m.data.len(),
        original.len()
    );
    let ours = &m.data[..m.data.len() - original.len()];
    assert!(
        ours.starts_with(b"Received: "),
        "only our headers may precede the message: {:?}",
        String::from_utf8_lossy(ours)
    );
}

#[test]
fn forty_megabyte_message_is_accepted_and_delivered_byte_identical() {
    let (internal, gw) = gateway(&[]);
    let msg = big_message("forty@test", 40_000_000, "", "hello");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("forty@test");
    assert_delivered_intact(&m, &msg);
    assert!(tmp_is_empty(&gw));
}

#[test]
fn big_message_in_bdat_chunks_is_delivered_byte_identical() {
    let (internal, gw) = gateway(&[]);
    let msg = big_message("chunks@test", 6_000_000, "", "hello");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let chunks: Vec<&[u8]> = msg.chunks(1_000_003).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { " LAST" } else { "" };
        let mut out = format!("BDAT {}{last}\r\n", chunk.len()).into_bytes();
        out.extend_from_slice(chunk);
        c.send(&out);
        c.read_reply().expect(250, "2.0.0");
    }
    c.quit();
    let m = internal.expect_message_id("chunks@test");
    assert_delivered_intact(&m, &msg);
}

/// Regression (pipeline cost probe): once on disk, each chunk was written to the spool on
/// its own, 21 µs of CPU for a one-byte chunk. Small chunks pipelined behind each other
/// now gather before a write; the message must arrive whole and in order all the same.
#[test]
fn small_pipelined_bdat_chunks_of_a_message_on_disk_arrive_intact() {
    let (internal, gw) = gateway(&[
        ("message_memory_bytes", "70000"),
        ("message_header_bytes", "60000"),
    ]);
    let msg = big_message("small-chunks@test", 400_000, "", "hello");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let sizes = [1, 7, 100, 999, 4096, 1, 1, 30_000];
    let mut out = Vec::new();
    let (mut at, mut chunks) = (0, 0);
    while at < msg.len() {
        let size = sizes[chunks % sizes.len()].min(msg.len() - at);
        let last = if at + size == msg.len() { " LAST" } else { "" };
        out.extend_from_slice(format!("BDAT {size}{last}\r\n").as_bytes());
        out.extend_from_slice(&msg[at..at + size]);
        at += size;
        chunks += 1;
    }
    c.send(&out);
    for _ in 0..chunks {
        c.read_reply().expect(250, "2.0.0");
    }
    c.quit();
    let m = internal.expect_message_id("small-chunks@test");
    assert_delivered_intact(&m, &msg);
    assert!(tmp_is_empty(&gw));
}

#[test]
fn gtube_at_the_end_of_a_big_message_is_found() {
    let (internal, gw) = gateway(&[]);
    let mut msg = big_message("gtube-big@test", 3_000_000, "", "hello");
    msg.extend_from_slice(format!("trailing text {GTUBE}\r\n").as_bytes());
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(550, "5.7.1");
    c.quit();
    let (_, msgs) = internal.wait_for(std::time::Duration::from_millis(500), |_| false);
    assert!(msgs.is_empty(), "{:?}", summarize(&msgs));
    assert!(tmp_is_empty(&gw));
}

#[test]
fn spam_text_in_a_big_message_is_scanned() {
    let (internal, gw) = gateway(&[]);
    let msg = big_message("pills-big@test", 3_000_000, "", "Buy CHEAP PILLS NOW");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(550, "5.7.1");
    c.quit();
    let (_, msgs) = internal.wait_for(std::time::Duration::from_millis(300), |_| false);
    assert!(msgs.is_empty(), "{:?}", summarize(&msgs));
}

#[test]
fn forged_verdict_headers_are_stripped_from_a_big_message() {
    let (internal, gw) = gateway(&[]);
    let forged = "X-Spam-Status: No, score=-100\r\nX-Spam-Score: -100\r\n";
    let msg = big_message("forged-big@test", 2_500_000, forged, "hello");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("forged-big@test");
    let text = m.text();
    assert!(!text.contains("score=-100"), "forged header relayed");
    assert_eq!(text.matches("X-Spam-Status:").count(), 1);
    // Everything after the header section is untouched.
    let body_at = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(m.data.ends_with(&msg[body_at..]));
}

#[test]
fn an_endless_header_section_is_refused_and_leaves_nothing() {
    let (internal, gw) = gateway(&[
        ("message_header_bytes", "100000"),
        ("message_memory_bytes", "200000"),
    ]);
    let mut msg = Vec::new();
    while msg.len() < 400_000 {
        msg.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    msg.extend_from_slice(b"\r\nbody\r\n");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(552, "5.3.4");
    c.cmd("NOOP").expect(250, "2.0.0");
    c.quit();
    let (_, msgs) = internal.wait_for(std::time::Duration::from_millis(300), |_| false);
    assert!(msgs.is_empty(), "{:?}", summarize(&msgs));
    assert!(tmp_is_empty(&gw));
}

#[test]
fn a_big_transfer_cut_off_or_too_big_leaves_nothing_in_tmp() {
    let (internal, gw) = gateway(&[("message_size_bytes", "5000000")]);
    // Too big: refused at the end, the part on disk removed.
    let msg = big_message("too-big@test", 6_000_000, "", "hello");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(552, "5.3.4");
    c.quit();
    // Cut off in the middle: the client goes away with 3 MB sent.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("DATA").expect(354, "");
    c.send(&msg[..3_000_000]);
    drop(c);
    // A later message proves the session above has ended.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &message("after-cut@test", "after", "ok"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("after-cut@test");
    assert!(wait_until(DELIVERY_TIMEOUT, || tmp_is_empty(&gw)));
    assert_eq!(internal.messages().len(), 1);
}
