//! Protocol behaviour turned into symbols: the pre-greet test (`EARLY_TALKER`) and
//! commands sent ahead of replies the client must wait for (`PIPELINING_ABUSE`).

mod common;

use common::*;
use std::time::Duration;

const RULES: &str = "score EARLY_TALKER 4.0\nscore PIPELINING_ABUSE 3.0\n";

fn gateway(greet_delay: &str) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal)
        .server_key("greet_delay", &format!("{greet_delay:?}"))
        .file("rules/client.cf", RULES)
        .toml("[policy]\nrules_dir = \"rules\"\n");
    (internal, Gateway::start(config))
}

fn rules_of(m: &Received) -> String {
    m.header("X-Spam-Rules").unwrap_or_default()
}

#[test]
fn client_that_waits_for_every_reply_is_clean() {
    let (internal, gw) = gateway("300ms");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "a@sender.test",
        &["user@example.test"],
        &message("polite@test", "hi", "body"),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("polite@test");
    assert!(!rules_of(&m).contains("EARLY_TALKER"), "{}", rules_of(&m));
    assert!(
        !rules_of(&m).contains("PIPELINING_ABUSE"),
        "{}",
        rules_of(&m)
    );
}

#[test]
fn talking_before_the_banner_is_an_early_talker() {
    let (internal, gw) = gateway("500ms");
    let mut c = SmtpClient::connect_raw(gw.port);
    // Speak at once, before the 220 arrives.
    c.send(b"EHLO rude.example\r\n");
    c.read_reply().expect(220, "");
    c.read_reply().expect(250, "");
    c.send_mail(
        "a@sender.test",
        &["user@example.test"],
        &message("early@test", "hi", "body"),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("early@test");
    assert!(
        rules_of(&m).contains("EARLY_TALKER=4.00"),
        "{}",
        rules_of(&m)
    );
}

#[test]
fn commands_sent_before_the_ehlo_reply_are_pipelining_abuse() {
    let (internal, gw) = gateway("0s");
    let mut c = SmtpClient::connect_raw(gw.port);
    c.read_reply().expect(220, "");
    let msg = dot_stuffed(&message("ahead@test", "hi", "body"));
    let mut burst =
        b"EHLO bot.example\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n"
            .to_vec();
    burst.extend_from_slice(&msg);
    c.send(&burst);
    let replies = c.read_replies(5);
    assert_eq!(replies[3].code, 354, "{replies:?}");
    assert_eq!(replies[4].code, 250, "{replies:?}");
    c.quit();
    let m = internal.expect_message_id("ahead@test");
    assert!(
        rules_of(&m).contains("PIPELINING_ABUSE=3.00"),
        "{}",
        rules_of(&m)
    );
}

/// Regression (review): the pre-greet wait was not a wait for the client, so a session
/// in it could not be evicted under stress (nor ended by SIGTERM): silent clients
/// reconnecting as each banner came held every slot, and real senders got `421 4.3.2`.
#[test]
fn a_client_silent_before_the_banner_is_evicted_under_stress() {
    let internal = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .server_key("greet_delay", "\"4s\"")
            .limit("max_sessions", "2")
            .limit("stress_threshold_percent", "100")
            .limit("stress_idle_timeout", "\"2s\""),
    );
    let mut silent = Vec::new();
    for i in 1..=2 {
        silent.push(SmtpClient::connect_from(gw.port, &format!("127.0.10.{i}")));
        std::thread::sleep(Duration::from_millis(300));
    }
    send_one(gw.port, "127.0.11.1", "after-silent@test").expect(250, "2.0.0");
    internal.expect_message_id("after-silent@test");
    silent[0].read_reply().expect(421, "4.4.2");
}

/// Regression (review): the tarpit's pause was not a wait for the client, so a session
/// paused there could not be evicted under stress: clients sending junk held every slot
/// through their pauses, and real senders got `421 4.3.2`.
#[test]
fn a_tarpitted_client_is_evicted_under_stress() {
    let internal = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .limit("max_sessions", "2")
            .limit("stress_threshold_percent", "100")
            .limit("stress_idle_timeout", "\"2s\"")
            .limit("errors_before_tarpit", "0")
            .limit("tarpit_delay", "\"20s\""),
    );
    let mut junk = Vec::new();
    for i in 1..=2 {
        let mut c = SmtpClient::connect_from(gw.port, &format!("127.0.10.{i}"));
        c.read_reply().expect(220, "");
        c.send(b"XYZZY\r\n");
        junk.push(c);
        std::thread::sleep(Duration::from_millis(300));
    }
    send_one(gw.port, "127.0.11.1", "after-junk@test").expect(250, "2.0.0");
    internal.expect_message_id("after-junk@test");
}
