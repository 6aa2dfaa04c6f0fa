//! The gateway with a broken resolver, end to end: a refused DNS port costs no stage a
//! timeout, a silent resolver is marked down (logged once, `mxguard_dns_up 0`) and later
//! sessions no longer ask it, and SPF/DKIM/DMARC wait no longer than their stage's deadline.
//! Every lookup timeout here is an hour, so a stage that waited for one would never reply
//! within the client's read timeout; what is asserted are replies, symbols and counters.

mod common;

use common::admin::scrape;
use common::*;
use mxguard::dns::testing::TestDns;

/// Keeps the runtime that serves the test DNS server alive for the test's duration.
struct Zone {
    _rt: tokio::runtime::Runtime,
    dns: TestDns,
}

fn silent_zone() -> Zone {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dns = rt.block_on(TestDns::silent()).expect("silent DNS server");
    Zone { _rt: rt, dns }
}

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address").port()
}

const RULES: &str = "score RCVD_IN_BL_TEST 3.0\nscore HELO_UNRESOLVABLE 1.0\nscore SENDER_DOMAIN_UNRESOLVABLE 3.0\n";

const LISTS: &str = r#"[[policy.dnsbl]]
zone = "bl.test"
weight = 3.0
symbol = "RCVD_IN_BL_TEST"
"#;

fn gateway(nameserver: u16, dns: &str) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal)
        .file("rules/dns.cf", RULES)
        .toml(&format!(
            "[dns]\nnameservers = [\"127.0.0.1:{nameserver}\"]\n{dns}\n[policy]\nrules_dir = \"rules\"\n{LISTS}"
        ));
    (internal, Gateway::start(config))
}

/// One whole transaction, every reply checked; returns the relayed message's spam rules.
fn send(gw: &Gateway, internal: &InternalServer, sender: &str, id: &str) -> String {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(sender, &["user@example.test"], &message(id, "hi", "body"))
        .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id(id);
    m.header("X-Spam-Rules").unwrap_or_default()
}

fn dns_lookups(gw: &Gateway, result: &str) -> f64 {
    scrape(admin_port(gw)).value("mxguard_dns_lookups_total", &[("result", result)])
}

#[test]
fn a_refused_dns_port_fails_at_once_in_every_stage_and_scores_nothing() {
    let (internal, gw) = gateway(
        closed_port(),
        "timeout = \"1h\"\nretransmit = \"30m\"\nstage_deadline = \"1h\"\ndown_after = 3\ndown_backoff = \"1h\"\n",
    );
    let rules = send(&gw, &internal, "a@sender.test", "refused@test");
    assert!(!rules.contains("RCVD_IN_BL_TEST"), "{rules}");
    assert!(!rules.contains("UNRESOLVABLE"), "{rules}");
    assert_eq!(dns_lookups(&gw, "timeout"), 0.0);
    assert!(dns_lookups(&gw, "error") >= 3.0);
    assert!(
        dns_lookups(&gw, "unavailable") >= 1.0,
        "marked down after 3"
    );
    assert_eq!(
        scrape(admin_port(&gw)).value("mxguard_dns_up", &[]),
        0.0,
        "a refused port is a dead resolver"
    );
}

#[test]
fn a_silent_resolver_is_marked_down_once_and_later_sessions_do_not_ask_it() {
    let zone = silent_zone();
    let (internal, gw) = gateway(
        zone.dns.addr().port(),
        "timeout = \"300ms\"\nretransmit = \"100ms\"\nattempts = 2\nstage_deadline = \"2s\"\ndown_after = 3\ndown_backoff = \"1h\"\n",
    );
    send(&gw, &internal, "a@sender.test", "first@test");
    let s = scrape(admin_port(&gw));
    assert_eq!(s.value("mxguard_dns_up", &[]), 0.0);
    assert!(s.value("mxguard_dns_lookups_total", &[("result", "timeout")]) >= 1.0);
    let asked = zone.dns.queries();

    let rules = send(&gw, &internal, "b@other-sender.test", "second@test");
    assert!(!rules.contains("RCVD_IN_BL_TEST"), "{rules}");
    assert_eq!(
        zone.dns.queries(),
        asked,
        "nothing asked a resolver marked down"
    );
    let s = scrape(admin_port(&gw));
    // (FCrDNS of a loopback client is answered locally: it never needs the resolver.)
    for check in ["dnsbl", "helo", "sender_domain", "spf", "dmarc"] {
        assert!(
            s.value(
                "mxguard_dns_lookups_total",
                &[("check", check), ("result", "unavailable")]
            ) >= 1.0,
            "{check}: {:?}",
            s.label_values("mxguard_dns_lookups_total", "check")
        );
    }
    assert_eq!(gw.log_count("DNS resolver marked down"), 1, "{}", gw.logs());
}

#[test]
fn spf_dkim_and_dmarc_wait_no_longer_than_their_stage_deadline() {
    let zone = silent_zone();
    // An hour per lookup and never marked down: only the stage deadline ends a stage.
    let (internal, gw) = gateway(
        zone.dns.addr().port(),
        "timeout = \"1h\"\nretransmit = \"30m\"\nstage_deadline = \"1s\"\ndown_after = 1000\n",
    );
    let rules = send(&gw, &internal, "a@sender.test", "slow@test");
    assert!(!rules.contains("RCVD_IN_BL_TEST"), "{rules}");
    assert!(!rules.contains("UNRESOLVABLE"), "{rules}");
    let m = internal.expect_message_id("slow@test");
    let results = m.header("Authentication-Results").unwrap_or_default();
    assert!(results.contains("spf=temperror"), "{results}");
    assert!(results.contains("dmarc=temperror"), "{results}");
    assert_eq!(scrape(admin_port(&gw)).value("mxguard_dns_up", &[]), 1.0);
}

/// Regression (review): a resolver answering every question with a referral (not
/// recursive), FORMERR or NOTIMP turned every DNS check off and stayed "up", with nothing
/// in the log: the error texts were built and dropped. The first such answer is logged at
/// warn (then once a minute).
#[test]
fn a_resolver_answering_with_errors_is_named_in_the_log() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dns = rt
        .block_on(
            TestDns::builder()
                .mode(mxguard::dns::testing::Mode::Referral)
                .start(),
        )
        .expect("referral DNS server");
    let (internal, gw) = gateway(dns.addr().port(), "");
    send(&gw, &internal, "a@sender.test", "referral@test");
    assert!(dns_lookups(&gw, "error") >= 1.0);
    let logs = gw.logs();
    assert!(
        logs.contains("DNS lookup failed") && logs.contains("referral"),
        "{logs}"
    );
}
