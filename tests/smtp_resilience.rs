//! Defects a hostile test run found in the SMTP session, each with its regression test:
//! BDAT sizes nobody can read, recipients past the limit counted as client errors, a
//! transfer cut off without 421 at the end of the shutdown grace, and content the scan
//! never looked at (behind filler, nested too deep).

mod common;

use common::admin::scrape;
use common::*;
use std::time::Duration;

fn gateway_with(cfg: impl FnOnce(GatewayConfig) -> GatewayConfig) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let base = GatewayConfig::new(&internal);
    let gw = Gateway::start(cfg(base));
    (internal, gw)
}

fn nothing_relayed(internal: &InternalServer) {
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(msgs.is_empty(), "relayed: {:?}", summarize(&msgs));
}

/// `BDAT 99999999999999999999999` does not parse as a size: what follows is the chunk
/// of a client that believes otherwise, never commands. The session ends at once.
#[test]
fn unparsable_bdat_size_ends_the_session_without_running_the_chunk() {
    let (internal, gw) = gateway_with(|c| c);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let chunk = "RSET\r\nMAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.test>\r\n\
                 DATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\n";
    c.send(format!("BDAT 99999999999999999999999 LAST\r\n{chunk}").as_bytes());
    c.read_reply().expect(501, "5.5.4");
    c.read_reply().expect(421, "4.5.0");
    assert!(c.is_closed());
    nothing_relayed(&internal);
}

/// A size that parses but exceeds the message size limit is refused unread (reading
/// 2^64 bytes to stay in step is not an option) and the session closes. Also a
/// regression: unlike a message refused for size after DATA, it was not counted in
/// `mxguard_messages_total` nor given a message line.
#[test]
fn bdat_size_past_the_limit_is_refused_and_the_session_closes() {
    let (internal, gw) = gateway_with(|c| c);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.send(b"BDAT 18446744073709551615 LAST\r\nRSET\r\nMAIL FROM:<smuggler@evil.test>\r\n");
    c.read_reply().expect(552, "5.3.4");
    c.read_reply().expect(421, "4.7.0");
    assert!(c.is_closed());
    nothing_relayed(&internal);
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_messages_total", &[("verdict", "reject")]),
        1.0
    );
    // Regression (review): the 552 went out uncounted in the replies.
    assert_eq!(
        m.value(
            "mxguard_smtp_replies_total",
            &[("stage", "data"), ("class", "5xx")]
        ),
        1.0
    );
}

/// A legitimate MTA sends 130 recipients to a gateway that takes 100 per message: the
/// 30 extra get 452 and go in a second transaction. They are not client errors, so the
/// session is neither tarpitted nor closed.
#[test]
fn recipients_past_the_limit_are_not_client_errors() {
    let (internal, gw) = gateway_with(|c| {
        c.limit("errors_before_tarpit", "5")
            .limit("tarpit_delay", "\"3s\"")
            .limit("errors_before_disconnect", "20")
    });
    let rcpts: Vec<String> = (0..130).map(|i| format!("user{i}@example.test")).collect();
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    let mut batch = String::new();
    for r in &rcpts {
        batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    c.send(batch.as_bytes());
    let replies = c.read_replies(130);
    assert!(replies[..100].iter().all(|r| r.code == 250));
    for r in &replies[100..] {
        r.expect(452, "4.5.3");
    }
    c.cmd("DATA").expect(354, "");
    c.send(&dot_stuffed(&message("first@test", "first 100", "hi")));
    c.read_reply().expect(250, "2.0.0");
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    for r in &rcpts[100..] {
        c.cmd(&format!("RCPT TO:<{r}>")).expect(250, "");
    }
    c.cmd("DATA").expect(354, "");
    c.send(&dot_stuffed(&message("rest@test", "last 30", "hi")));
    c.read_reply().expect(250, "2.0.0");
    c.quit();
    assert_eq!(internal.expect_message_id("first@test").rcpt_to.len(), 100);
    assert_eq!(internal.expect_message_id("rest@test").rcpt_to.len(), 30);
}

/// Past `recipient_overshoot_limit` the extra recipients count as errors again.
#[test]
fn recipients_past_the_overshoot_limit_count_as_errors() {
    let (_internal, gw) = gateway_with(|c| {
        c.limit("recipients_per_message", "2")
            .limit("recipient_overshoot_limit", "3")
            .limit("errors_before_disconnect", "2")
    });
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    for i in 0..2 {
        c.cmd(&format!("RCPT TO:<u{i}@example.test>"))
            .expect(250, "");
    }
    for i in 2..6 {
        c.cmd(&format!("RCPT TO:<u{i}@example.test>"))
            .expect(452, "4.5.3");
    }
    // The fifth extra recipient is the second error: the session is closed.
    c.send(b"RCPT TO:<u6@example.test>\r\n");
    c.read_reply().expect(452, "4.5.3");
    c.read_reply().expect(421, "4.7.0");
    assert!(c.is_closed());
}

/// A client still sending its message when the shutdown grace is over gets 421 before
/// the connection closes, and nothing half-received is delivered.
#[test]
fn message_in_transfer_when_the_shutdown_grace_ends_gets_421() {
    let (internal, mut gw) = gateway_with(|c| c.limit("shutdown_grace", "\"1s\""));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("DATA").expect(354, "");
    c.send(b"Subject: slow\r\n\r\nthe first half of a message\r\n");
    let status = gw.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    c.read_reply().expect(421, "4.3.2");
    assert!(c.is_closed());
    nothing_relayed(&internal);
}

/// Regression (review): SIGTERM ended a BDAT transfer between its chunks with 421 at once
/// (the next command was read as between transactions), throwing away the chunks already
/// taken, while a DATA transfer runs on within the grace. CHUNKING senders resent whole
/// big messages after every graceful restart.
#[test]
fn a_bdat_transfer_runs_on_within_the_shutdown_grace() {
    let (_internal, mut gw) = gateway_with(|c| c.limit("shutdown_grace", "\"20s\""));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let head = "Subject: chunked\r\nMessage-ID: <chunked@test>\r\n\r\n";
    c.send(format!("BDAT {}\r\n{head}", head.len()).as_bytes());
    c.read_reply().expect(250, "");
    gw.signal(libc::SIGTERM);
    assert!(
        gw.wait_log_line(Duration::from_secs(10), "shutting down", 0)
            .is_some(),
        "no shutdown in the log"
    );
    let tail = "the rest of the message\r\n";
    c.send(format!("BDAT {} LAST\r\n{tail}", tail.len()).as_bytes());
    c.read_reply().expect(250, "2.0.0");
    let status = gw.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
}

/// Rules with a custom body rule, for the scan-limit tests.
fn scanning_gateway() -> (InternalServer, Gateway) {
    gateway_with(|c| {
        c.toml("[policy]\nrules_dir = \"rules\"\n").file(
            "rules/local.cf",
            "body LOCAL_PILLS /cheap pills now/i\nscore LOCAL_PILLS 20.0\n\
             describe SCAN_TRUNCATED scan cut\nscore SCAN_TRUNCATED 1.0\n\
             describe SCAN_NESTING_LIMIT nested too deep\nscore SCAN_NESTING_LIMIT 2.5\n",
        )
    })
}

fn filler(bytes: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!(
            "Harmless filler paragraph number {i} about the weather.\r\n\r\n"
        ));
        i += 1;
    }
    s
}

/// Spam behind 60 KB of filler was never scanned (the first 50 KB of a part only): the
/// tail of a long part is scanned too, and the truncated scan is scored.
#[test]
fn spam_behind_filler_is_scanned_at_the_tail_of_the_part() {
    let (internal, gw) = scanning_gateway();
    let body = format!("{}Buy cheap pills now!", filler(60_000));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &message("filler@test", "hello", &body),
    )
    .expect(550, "5.7.1");
    // Filler around the spam hides it from head and tail alike; the symbol is what is left.
    let body = format!(
        "{}Buy cheap pills now!\r\n\r\n{}",
        filler(60_000),
        filler(60_000)
    );
    c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &message("middle@test", "hello", &body),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("middle@test");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("SCAN_TRUNCATED"), "X-Spam-Rules: {rules}");
    assert!(!rules.contains("LOCAL_PILLS"), "X-Spam-Rules: {rules}");
}

/// Attached messages nested deeper than `scan_nesting_depth` are not scanned; that is
/// scored instead of passing silently.
#[test]
fn nesting_past_the_scan_limit_is_scored() {
    let (internal, gw) = scanning_gateway();
    let mut inner = b"Subject: innermost\r\n\r\nnothing to see\r\n".to_vec();
    for _ in 0..10 {
        let mut outer = b"Subject: fwd\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    let mut msg =
        b"From: <a@sender.test>\r\nTo: <user@example.test>\r\nMessage-ID: <nested@test>\r\n"
            .to_vec();
    msg.extend_from_slice(&inner);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("sender@sender.test", &["user@example.test"], &msg)
        .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("nested@test");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(
        rules.contains("SCAN_NESTING_LIMIT"),
        "X-Spam-Rules: {rules}"
    );
}

/// A message on which the content checks panic gets 451 (the sender keeps it), a log line
/// and `mxguard_policy_panics_total`, and the session goes on: the next message in it is
/// judged and relayed. The panic is a real one: in a test build, mail-parser's assertion
/// fires on `PARSER_DEBUG_ASSERT`. A release build compiles the assertion out and parses
/// past it, so there the message is simply judged and nothing is counted.
#[test]
fn a_panic_in_the_content_checks_is_answered_451_and_the_session_goes_on() {
    let (internal, gw) = gateway_with(|c| c);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        PARSER_DEBUG_ASSERT,
    );
    let panicked = PARSER_DEBUG_ASSERT_PANICS;
    if panicked {
        r.expect(451, "4.3.0");
    } else {
        assert_ne!(r.code / 100, 4, "{r:?}");
    }
    c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &message("after-panic@test", "hello", "An ordinary message."),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("after-panic@test");
    let m = scrape(admin_port(&gw));
    let counted = m.value("mxguard_policy_panics_total", &[]);
    assert_eq!(counted, if panicked { 1.0 } else { 0.0 });
    if panicked {
        let logs = gw.logs();
        assert!(logs.contains("the content checks panicked"), "{logs}");
        assert!(logs.contains("policy panicked"), "{logs}");
    }
}
