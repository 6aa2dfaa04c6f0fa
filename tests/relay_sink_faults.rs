//! Fault injection at the internal server with Postfix's `smtp-sink` (`-r` 4xx, `-f` 5xx,
//! `-q` disconnect without reply, `-Q` 421 and disconnect, `-w` slow DATA reply): delivery
//! retries temporary trouble, fails over before the body is handed over, bounces (DSN) only
//! what was refused permanently, and loses nothing.
//!
//! The faulty server is the first (or only) `relay.internal`; the test's recording server
//! takes over its port afterwards, or stands behind it in the failover list, and a second
//! recording server is `relay.dsn_via`, so every DSN is seen.

mod common;

use common::admin::scrape;
use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn is_dsn(m: &Received) -> bool {
    m.mail_from.is_empty()
}

/// Delivery attempts of one result so far, from the gateway's metrics.
fn attempts(gw: &Gateway, result: &str) -> f64 {
    scrape(admin_port(gw)).value("mxguard_relay_attempts_total", &[("result", result)])
}

/// A gateway relaying to `internal` (ports, in order), its DSNs to `dsn`.
fn gateway(internal: &[u16], dsn: &InternalServer) -> Gateway {
    let mut cfg =
        GatewayConfig::default().relay_key("dsn_via", &format!("[\"127.0.0.1:{}\"]", dsn.port));
    cfg.internal = internal.to_vec();
    Gateway::start(cfg)
}

/// Sends one message per id from `from`; each must be accepted.
fn send_all(gw: &Gateway, from: &str, ids: &[String]) {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    for id in ids {
        c.send_mail(from, &["user@example.test"], &message(id, "fault", "body"))
            .expect(250, "2.0.0");
    }
    c.quit();
}

fn ids(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}@test")).collect()
}

/// Per-Message-ID delivery counts.
fn counts(msgs: &[Received]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in msgs.iter().filter(|m| !is_dsn(m)) {
        *m.entry(r.message_id().unwrap_or_default()).or_insert(0) += 1;
    }
    m
}

/// A temporary fault at the only internal server: the messages are deferred (and
/// retried) while it lasts, then delivered exactly once by the recovered server on the
/// same port; no DSN at any point.
fn temporary_fault_then_recovery(faults: &[&str], tag: &str) {
    let Some(sink) = SmtpSink::start(faults) else {
        return;
    };
    let dsn = InternalServer::start();
    let gw = gateway(&[sink.port], &dsn);
    let ids = ids(tag, 3);
    send_all(&gw, "sender@sender.test", &ids);
    assert!(
        wait_until(DELIVERY_TIMEOUT, || attempts(&gw, "deferred") >= 6.0),
        "the faulty server was not retried: deferred attempts {}",
        attempts(&gw, "deferred")
    );
    assert_eq!(
        attempts(&gw, "failed"),
        0.0,
        "a temporary fault was treated as permanent"
    );
    let port = sink.port;
    drop(sink);
    let internal = InternalServer::start_on(port);
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| {
        let c = counts(m);
        ids.iter().all(|id| c.contains_key(id))
    });
    assert!(ok, "not delivered after recovery: {:?}", summarize(&msgs));
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    let dups: Vec<_> = counts(&msgs).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        dups.is_empty(),
        "delivered twice by the recovered server: {dups:?}"
    );
    assert!(!msgs.iter().any(is_dsn), "DSN for a temporary fault");
    assert!(
        dsn.messages().is_empty(),
        "DSN for a temporary fault: {:?}",
        summarize(&dsn.messages())
    );
}

#[test]
fn smtp_sink_4xx_at_rcpt_is_retried_until_the_server_recovers_without_dsn() {
    temporary_fault_then_recovery(&["-r", "RCPT"], "sink-4xx-rcpt");
}

#[test]
fn smtp_sink_4xx_at_end_of_data_is_retried_without_dsn() {
    temporary_fault_then_recovery(&["-r", "."], "sink-4xx-dot");
}

/// The server vanishes after the data without answering: the message may or may not have
/// arrived, so it is retried (a possible duplicate is the RFC 1047 trade-off), never lost
/// and never bounced.
#[test]
fn smtp_sink_disconnect_without_reply_after_end_of_data_is_retried_not_bounced() {
    temporary_fault_then_recovery(&["-q", "."], "sink-drop-dot");
}

/// A 5xx: one DSN to the sender per message, no retries; none for a `<>` sender.
fn permanent_fault_bounces(faults: &[&str], tag: &str) {
    let Some(_sink) = SmtpSink::start(faults) else {
        return;
    };
    let dsn = InternalServer::start();
    let gw = gateway(&[_sink.port], &dsn);
    let ids = ids(tag, 2);
    send_all(&gw, "sender@sender.test", &ids);
    send_all(&gw, "", &[format!("{tag}-bounce@test")]);
    let (ok, msgs) = dsn.wait_for(DELIVERY_TIMEOUT, |m| {
        m.iter().filter(|m| is_dsn(m)).count() >= 2
    });
    assert!(ok, "expected 2 DSNs, got {:?}", summarize(&msgs));
    assert!(
        wait_until(DELIVERY_TIMEOUT, || attempts(&gw, "failed") >= 3.0),
        "the <> message was not settled"
    );
    let (_, msgs) = dsn.wait_for(Duration::from_millis(1000), |_| false);
    assert_eq!(
        msgs.len(),
        2,
        "one DSN per refused message: {:?}",
        summarize(&msgs)
    );
    for m in &msgs {
        assert!(is_dsn(m));
        assert_eq!(m.rcpt_to, vec!["sender@sender.test".to_string()]);
        assert!(
            m.text().contains("5."),
            "DSN without the status:\n{}",
            m.text()
        );
    }
    assert_eq!(attempts(&gw, "deferred"), 0.0, "a 5xx was retried");
}

#[test]
fn smtp_sink_5xx_at_rcpt_bounces_once_to_the_sender_never_for_a_null_sender() {
    permanent_fault_bounces(&["-f", "RCPT"], "sink-5xx-rcpt");
}

#[test]
fn smtp_sink_5xx_at_end_of_data_bounces_once_to_the_sender_never_for_a_null_sender() {
    permanent_fault_bounces(&["-f", "."], "sink-5xx-dot");
}

/// `421` at MAIL, and a server that hangs up after EHLO: both before the message was
/// handed over, so the next server of `relay.internal` gets it, at once and only once.
#[test]
fn smtp_sink_421_and_disconnect_before_data_fail_over_to_the_next_server() {
    let Some(busy) = SmtpSink::start(&["-Q", "MAIL"]) else {
        return;
    };
    let Some(rude) = SmtpSink::start(&["-q", "EHLO"]) else {
        return;
    };
    let internal = InternalServer::start();
    let dsn = InternalServer::start();
    let gw = gateway(&[busy.port, rude.port, internal.port], &dsn);
    let ids = ids("sink-failover", 4);
    send_all(&gw, "sender@sender.test", &ids);
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| {
        let c = counts(m);
        ids.iter().all(|id| c.contains_key(id))
    });
    assert!(
        ok,
        "failover did not deliver everything: {:?}",
        summarize(&msgs)
    );
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(
        counts(&msgs).values().all(|n| *n == 1),
        "{:?}",
        summarize(&msgs)
    );
    assert!(busy.message_ids().is_empty() && rude.message_ids().is_empty());
    assert!(dsn.messages().is_empty(), "DSN after a failover");
}

/// `-w 2`: the DATA reply takes 2 s, well inside `relay.command_timeout` and
/// `relay.data_init_timeout` (10 s here): delivered once, by the slow server itself.
#[test]
fn smtp_sink_slow_data_reply_within_the_timeout_is_delivered_once() {
    let Some(sink) = SmtpSink::start(&["-w", "2"]) else {
        return;
    };
    let dsn = InternalServer::start();
    let gw = gateway(&[sink.port], &dsn);
    let ids = ids("sink-slow", 2);
    send_all(&gw, "sender@sender.test", &ids);
    assert!(
        wait_until(DELIVERY_TIMEOUT, || {
            let got = sink.message_ids();
            ids.iter().all(|id| got.contains(id))
        }),
        "slow server never got the messages: {:?}",
        sink.message_ids()
    );
    assert_eq!(
        sink.message_ids().len(),
        ids.len(),
        "{:?}",
        sink.message_ids()
    );
    assert_eq!(attempts(&gw, "deferred"), 0.0);
    assert!(dsn.messages().is_empty());
}

/// `-w 4` against `relay.command_timeout` and `relay.data_init_timeout` of 1 s: the DATA
/// reply (and the pipelined replies smtp-sink holds back with it) comes too late, before
/// any of the body was sent, so the next server takes the message.
#[test]
fn smtp_sink_data_reply_slower_than_the_timeout_fails_over() {
    let Some(sink) = SmtpSink::start(&["-w", "4"]) else {
        return;
    };
    let internal = InternalServer::start();
    let dsn = InternalServer::start();
    let mut cfg = GatewayConfig::default()
        .relay_key("dsn_via", &format!("[\"127.0.0.1:{}\"]", dsn.port))
        .relay_key("command_timeout", "\"1s\"")
        .relay_key("data_init_timeout", "\"1s\"");
    cfg.internal = vec![sink.port, internal.port];
    let gw = Gateway::start(cfg);
    let ids = ids("sink-too-slow", 2);
    send_all(&gw, "sender@sender.test", &ids);
    let (ok, msgs) = internal.wait_for(DELIVERY_TIMEOUT, |m| {
        let c = counts(m);
        ids.iter().all(|id| c.contains_key(id))
    });
    assert!(ok, "not failed over: {:?}", summarize(&msgs));
    assert!(
        sink.message_ids().is_empty(),
        "the slow server got data: {:?}",
        sink.message_ids()
    );
    assert!(dsn.messages().is_empty());
    drop(gw);
}
