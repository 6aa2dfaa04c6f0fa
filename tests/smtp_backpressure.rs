//! Clients that do not play by the session's pace (found in review): one that never lets
//! its input run dry, one that never reads its replies, one that trickles BDAT chunks, a
//! BDAT command line too long to frame its chunk, and ESMTP used after plain HELO.

mod common;

use common::*;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

/// Replies to pipelined commands may wait until the client's input runs dry (RFC 2920),
/// but a client that always ends its packets half-way through a command never lets it
/// run dry: the replies were held without limit (hundreds of MB for a few MB of HELP).
#[test]
fn replies_to_a_long_pipelined_burst_are_sent_before_the_input_runs_dry() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let mut burst = "HELP\r\n".repeat(2000).into_bytes();
    burst.extend_from_slice(b"NO");
    c.send(&burst);
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while got.len() < 8 * 1024 && Instant::now() < until {
        got.extend(c.unsolicited(Duration::from_millis(500)));
    }
    assert!(
        got.len() >= 8 * 1024,
        "only {} bytes of replies while the input never ran dry",
        got.len()
    );
    assert!(String::from_utf8_lossy(&got).starts_with("214"));
}

/// A client that sends and never reads filled the socket buffers, and the session then
/// waited in its write for ever: no command timeout, no session limit, not even the
/// 421 of a timeout could be sent.
#[test]
fn a_client_that_does_not_read_its_replies_is_disconnected() {
    let internal = InternalServer::start();
    // HELP is a junk command: past `junk_commands` each would count as an error, and the
    // error limit would end the session before its writes could block.
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .limit("command_timeout", "\"2s\"")
            .limit("junk_commands", "1000000"),
    );
    let c = SmtpClient::connect_ehlo(gw.port);
    let (mut stream, _) = c.into_stream();
    let before = gw.log_count("reply_write");
    // About 20 MB of replies for 1.2 MB of commands: far more than the socket buffers.
    let writer = thread::spawn(move || {
        let burst = "HELP\r\n".repeat(10_000).into_bytes();
        for _ in 0..20 {
            if stream.write_all(&burst).is_err() {
                return;
            }
        }
        // Hold the connection open (and unread) until the server gives up on it.
        thread::sleep(Duration::from_secs(30));
    });
    let line = gw.wait_log_line(Duration::from_secs(30), "reply_write", before);
    assert!(
        line.is_some(),
        "the session still waits on a client that does not read:\n{}",
        gw.logs()
    );
    drop(writer);
}

/// The minimum data rate held within one BDAT chunk only: a byte every few seconds, each
/// in a chunk of its own, kept a transfer open as long as the command timeout allowed.
#[test]
fn a_trickle_of_small_bdat_chunks_is_held_to_the_minimum_rate() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal).limit("data_rate_grace", "\"1s\""));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.send(b"BDAT 1\r\nx");
    c.read_reply().expect(250, "2.0.0");
    thread::sleep(Duration::from_millis(1500));
    c.send(b"BDAT 1\r\nx");
    c.read_reply().expect(421, "4.4.2");
    assert!(c.is_closed(), "connection not closed after 421");
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(msgs.is_empty(), "relayed: {:?}", summarize(&msgs));
}

/// A BDAT command line over the limit loses its chunk size with it: the chunk's bytes
/// were then read as commands (RFC 3030 says they are data, whatever they hold).
#[test]
fn a_bdat_line_too_long_to_frame_its_chunk_closes_the_session() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let mut out = format!("BDAT 26 LAST{}\r\n", " ".repeat(520)).into_bytes();
    out.extend_from_slice(b"NOOP chunk-byte-command\r\n");
    c.send(&out);
    c.read_reply().expect(500, "5.5.2");
    c.read_reply().expect(421, "4.5.0");
    assert!(c.is_closed(), "connection not closed after 421");
}

/// Parameters of extensions (SIZE, BODY, SMTPUTF8) and BDAT are offered in the EHLO reply
/// only; after HELO they were taken, and an 8-bit body relayed as if it were allowed.
#[test]
fn esmtp_after_plain_helo_is_refused() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let (mut c, banner) = SmtpClient::connect(gw.port);
    banner.expect(220, "");
    c.cmd("HELO client.sender.test").expect(250, "");
    c.cmd("MAIL FROM:<s@sender.test> BODY=8BITMIME")
        .expect(555, "5.5.4");
    c.cmd("MAIL FROM:<s@sender.test> SIZE=100")
        .expect(555, "5.5.4");
    c.cmd("MAIL FROM:<s@sender.test> SMTPUTF8")
        .expect(555, "5.5.4");
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.send(b"BDAT 2 LAST\r\nab");
    c.read_reply().expect(503, "5.5.1");
    // The chunk was read as data: the session is still in step.
    c.cmd("NOOP").expect(250, "2.0.0");
    c.quit();
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(msgs.is_empty(), "relayed: {:?}", summarize(&msgs));
}

/// Regression (review): `555 5.5.4 Unsupported parameter {p}` echoed the client's whole
/// parameter, raw UTF-8 included: reply lines of 516 octets and more, past RFC 5321's
/// 512. The echo is cut to 64 printable ASCII characters.
#[test]
fn an_unsupported_parameter_is_echoed_short_and_printable() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    // As long as a 512-octet command line allows.
    let long = format!("X-{}\u{e9}={}", "A".repeat(239), "b".repeat(240));
    let r = c.cmd(&format!("MAIL FROM:<s@sender.test> {long}"));
    r.expect(555, "5.5.4");
    for line in &r.lines {
        assert!(line.len() + 4 <= 512, "{} octets: {line}", line.len() + 4);
        assert!(line.is_ascii(), "{line}");
    }
    c.quit();
}
