//! Delivery to the internal server: queued mail survives the internal server being down,
//! 4xx is retried, the failover list is used, and 5xx produces a DSN to the envelope
//! sender (through the internal server), never for a `<>` sender.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

fn send(gw: &Gateway, from: &str, rcpts: &[&str], id: &str, subject: &str) {
    send_body(gw, from, rcpts, id, subject, "body text");
}

fn send_body(gw: &Gateway, from: &str, rcpts: &[&str], id: &str, subject: &str, body: &str) {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(from, rcpts, &message(id, subject, body))
        .expect(250, "2.0.0");
    c.quit();
}

fn counts(msgs: &[Received]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in msgs {
        *m.entry(r.message_id().unwrap_or_default()).or_insert(0) += 1;
    }
    m
}

fn is_dsn(m: &Received) -> bool {
    m.mail_from.is_empty()
}

#[test]
fn internal_server_down_then_up_delivers_everything_once() {
    let mut internal = InternalServer::down();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let ids: Vec<String> = (0..6).map(|i| format!("queued-{i}@test")).collect();
    for id in &ids {
        send(&gw, "s@sender.test", &["user@example.test"], id, "queued");
    }
    // Let a few delivery attempts fail.
    thread::sleep(Duration::from_millis(1500));
    assert!(internal.messages().is_empty());
    internal.resume();
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| {
        let c = counts(m);
        ids.iter().all(|id| c.contains_key(id))
    });
    assert!(
        ok,
        "not all queued mail delivered after the internal server came back: {:?}",
        summarize(&msgs)
    );
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    let dups: Vec<_> = counts(&msgs).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert!(
        !msgs.iter().any(is_dsn),
        "DSN sent for a temporary failure: {:?}",
        summarize(&msgs)
    );
}

#[test]
fn temporary_failures_are_retried() {
    let internal = InternalServer::start();
    internal.set_script(Script {
        rcpt: vec![("later".into(), "451 4.3.0 try again later".into())],
        data: vec![("tempfail-data".into(), "451 4.3.0 data later".into())],
        ..Default::default()
    });
    let gw = Gateway::start(GatewayConfig::new(&internal));
    send(
        &gw,
        "s@sender.test",
        &["later@example.test"],
        "retry-rcpt@test",
        "x",
    );
    send(
        &gw,
        "s@sender.test",
        &["user@example.test"],
        "retry-data@test",
        "tempfail-data",
    );
    let seen = wait_until(DELIVERY_TIMEOUT, || {
        let r = internal.refused();
        r.iter().any(|x| x.contains("later@example.test"))
            && r.iter().any(|x| x.starts_with("DATA"))
    });
    assert!(
        seen,
        "the gateway never tried: refused so far {:?}",
        internal.refused()
    );
    internal.set_script(Script::default());
    let a = internal.expect_message_id("retry-rcpt@test");
    assert_eq!(a.rcpt_to, vec!["later@example.test".to_string()]);
    internal.expect_message_id("retry-data@test");
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(
        !msgs.iter().any(is_dsn),
        "DSN for a 4xx: {:?}",
        summarize(&msgs)
    );
}

#[test]
fn failover_to_the_next_internal_server() {
    let dead = InternalServer::down();
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal);
    cfg.internal = vec![dead.port, internal.port];
    let gw = Gateway::start(cfg);
    send(
        &gw,
        "s@sender.test",
        &["user@example.test"],
        "failover@test",
        "x",
    );
    internal.expect_message_id("failover@test");
}

/// Regression (review): `mxguard_relay_servers_unreachable` said 0 with a dead server
/// when `relay.unreachable_hold` was 0 (nothing was held, so nothing counted), and kept
/// counting a dead server a reload had removed from `relay.internal`.
#[test]
fn the_unreachable_gauge_counts_dead_servers_without_a_hold_and_forgets_removed_ones() {
    let dead = InternalServer::down();
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal).relay_key("unreachable_hold", "\"0s\"");
    cfg.internal = vec![dead.port, internal.port];
    let gw = Gateway::start(cfg);
    let gauge =
        || common::admin::scrape(admin_port(&gw)).value("mxguard_relay_servers_unreachable", &[]);
    send(
        &gw,
        "s@sender.test",
        &["user@example.test"],
        "one@test",
        "x",
    );
    internal.expect_message_id("one@test");
    assert!(
        wait_until(Duration::from_secs(5), || gauge() == 1.0),
        "{}",
        gauge()
    );
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("internal = "))
        .unwrap()
        .to_owned();
    let without_dead = text.replace(
        &line,
        &format!("internal = [\"127.0.0.1:{}\"]", internal.port),
    );
    assert_ne!(text, without_dead, "{line}");
    let before = gw.log_count("policy reloaded");
    write_atomically(&gw.config_path(), &without_dead);
    gw.signal(libc::SIGHUP);
    gw.wait_log_line(Duration::from_secs(10), "policy reloaded", before)
        .unwrap_or_else(|| panic!("no reload:\n{}", gw.logs()));
    send(
        &gw,
        "s@sender.test",
        &["user@example.test"],
        "two@test",
        "x",
    );
    internal.expect_message_id("two@test");
    assert!(
        wait_until(Duration::from_secs(5), || gauge() == 0.0),
        "{}",
        gauge()
    );
}

#[test]
fn failover_when_the_first_server_tempfails_at_greeting() {
    let busy = InternalServer::start();
    busy.set_script(Script {
        greeting: Some("421 4.3.2 too busy".into()),
        ..Default::default()
    });
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal);
    cfg.internal = vec![busy.port, internal.port];
    let gw = Gateway::start(cfg);
    send(
        &gw,
        "s@sender.test",
        &["user@example.test"],
        "busy@test",
        "x",
    );
    internal.expect_message_id("busy@test");
    assert!(busy.messages().is_empty());
}

#[test]
fn permanent_rcpt_failure_sends_a_dsn_to_the_sender() {
    let internal = InternalServer::start();
    internal.set_script(Script {
        rcpt: vec![(
            "bad@".into(),
            "550 5.1.1 <bad@example.test>: no such user".into(),
        )],
        ..Default::default()
    });
    let gw = Gateway::start(GatewayConfig::new(&internal));
    send(
        &gw,
        "sender@sender.test",
        &["good@example.test", "bad@example.test"],
        "partly@test",
        "partly bad",
    );
    let good = internal.expect_message_id("partly@test");
    assert_eq!(good.rcpt_to, vec!["good@example.test".to_string()]);
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| m.iter().any(is_dsn));
    assert!(ok, "no DSN arrived; got {:?}", summarize(&msgs));
    let (_, msgs) = internal.wait_for(Duration::from_millis(700), |_| false);
    let dsns: Vec<&Received> = msgs.iter().filter(|m| is_dsn(m)).collect();
    assert_eq!(dsns.len(), 1, "expected one DSN: {:?}", summarize(&msgs));
    let dsn = dsns[0];
    assert_eq!(dsn.rcpt_to, vec!["sender@sender.test".to_string()]);
    let text = dsn.text();
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("multipart/report") && lower.contains("report-type=delivery-status"),
        "DSN is not an RFC 3464 report:\n{text}"
    );
    assert!(
        lower.contains("bad@example.test"),
        "DSN does not name the failed recipient:\n{text}"
    );
    assert!(
        !lower.contains("final-recipient: rfc822; good@example.test")
            && !lower.contains("final-recipient: rfc822;good@example.test"),
        "DSN reports the delivered recipient as failed:\n{text}"
    );
    assert!(lower.contains("5.1.1"), "DSN lacks the status:\n{text}");
}

#[test]
fn permanent_data_failure_sends_a_dsn() {
    let internal = InternalServer::start();
    internal.set_script(Script {
        data: vec![("reject-me".into(), "554 5.7.1 content refused".into())],
        ..Default::default()
    });
    let gw = Gateway::start(GatewayConfig::new(&internal));
    // The trigger is in the body only: a DSN returns the original's headers, so the
    // internal server does not refuse the DSN itself.
    send_body(
        &gw,
        "sender@sender.test",
        &["user@example.test"],
        "refused@test",
        "content",
        "please reject-me",
    );
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| m.iter().any(is_dsn));
    assert!(
        ok,
        "no DSN arrived; refused {:?}; got {:?}",
        internal.refused(),
        summarize(&msgs)
    );
    let dsn = msgs.iter().find(|m| is_dsn(m)).unwrap();
    assert_eq!(dsn.rcpt_to, vec!["sender@sender.test".to_string()]);
    assert!(dsn
        .text()
        .to_ascii_lowercase()
        .contains("user@example.test"));
}

#[test]
fn no_dsn_for_a_null_sender() {
    let internal = InternalServer::start();
    internal.set_script(Script {
        rcpt: vec![("bad@".into(), "550 5.1.1 no such user".into())],
        ..Default::default()
    });
    let gw = Gateway::start(GatewayConfig::new(&internal));
    send(&gw, "", &["bad@example.test"], "bounce@test", "a bounce");
    let tried = wait_until(DELIVERY_TIMEOUT, || {
        internal
            .refused()
            .iter()
            .any(|r| r.contains("bad@example.test"))
    });
    assert!(tried, "the gateway never tried to deliver");
    // A later message arrives, and still no DSN for the first.
    send(
        &gw,
        "s@sender.test",
        &["user@example.test"],
        "after@test",
        "after",
    );
    internal.expect_message_id("after@test");
    let (_, msgs) = internal.wait_for(Duration::from_millis(1500), |_| false);
    assert!(
        !msgs.iter().any(is_dsn),
        "DSN generated for a <> sender: {:?}",
        summarize(&msgs)
    );
    // And the failed message is not retried forever.
    let attempts = internal
        .refused()
        .iter()
        .filter(|r| r.contains("bad@example.test"))
        .count();
    assert!(attempts <= 2, "5xx recipient retried {attempts} times");
}

#[test]
fn dsn_goes_through_dsn_via_when_set() {
    let internal = InternalServer::start();
    internal.set_script(Script {
        rcpt: vec![("bad@".into(), "550 5.1.1 no such user".into())],
        ..Default::default()
    });
    let dsn_server = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .relay_key("dsn_via", &format!("[\"127.0.0.1:{}\"]", dsn_server.port)),
    );
    send(
        &gw,
        "sender@sender.test",
        &["bad@example.test"],
        "via@test",
        "via",
    );
    let (ok, msgs) = dsn_server.wait_for(DELIVERY_TIMEOUT, |m| m.iter().any(is_dsn));
    assert!(ok, "no DSN at the dsn_via server: {:?}", summarize(&msgs));
    assert_eq!(msgs[0].rcpt_to, vec!["sender@sender.test".to_string()]);
    let (_, main) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(
        !main.iter().any(is_dsn),
        "DSN sent to the internal server despite dsn_via: {:?}",
        summarize(&main)
    );
}

#[test]
fn mail_that_keeps_tempfailing_bounces_after_max_queue_lifetime() {
    let internal = InternalServer::start();
    internal.set_script(Script {
        rcpt: vec![("stuck@".into(), "451 4.3.0 try again later".into())],
        ..Default::default()
    });
    let gw =
        Gateway::start(GatewayConfig::new(&internal).relay_key("max_queue_lifetime", "\"2s\""));
    send(
        &gw,
        "sender@sender.test",
        &["stuck@example.test"],
        "stuck@test",
        "stuck",
    );
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| m.iter().any(is_dsn));
    assert!(
        ok,
        "no DSN after the queue lifetime ran out; attempts {:?}",
        internal.refused()
    );
    let dsn = msgs.iter().find(|m| is_dsn(m)).unwrap();
    assert_eq!(dsn.rcpt_to, vec!["sender@sender.test".to_string()]);
    assert!(dsn
        .text()
        .to_ascii_lowercase()
        .contains("stuck@example.test"));
    // And the gateway stops trying.
    let before = internal.refused().len();
    std::thread::sleep(Duration::from_millis(2500));
    let after = internal.refused().len();
    assert!(
        after <= before + 1,
        "still retrying an expired message: {before} -> {after}"
    );
}
