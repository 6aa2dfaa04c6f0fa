//! DNS checks end to end, against an in-process test DNS server: DNSBL refusal at RCPT
//! naming the list, DNSWL weight, HELO and sender-domain symbols, and a dead DNS server
//! costing no more than the stage deadline.

mod common;

use common::*;
use mxguard::dns::testing::TestDns;
use std::net::Ipv4Addr;

/// Keeps the runtime that serves the test zone alive for the test's duration.
struct Zone {
    _rt: tokio::runtime::Runtime,
    dns: TestDns,
}

fn zone(
    build: impl FnOnce(mxguard::dns::testing::TestDnsBuilder) -> mxguard::dns::testing::TestDnsBuilder,
) -> Zone {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt.block_on(build(TestDns::builder()).start()).unwrap();
    Zone { _rt: rt, dns }
}

fn silent_zone() -> Zone {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt.block_on(TestDns::silent()).unwrap();
    Zone { _rt: rt, dns }
}

const RULES: &str = "score URIBL_DBL_TEST 4.0\nscore RCVD_IN_WL_TEST -2.0\ntflags RCVD_IN_WL_TEST nice\nscore HELO_UNRESOLVABLE 1.0\nscore SENDER_DOMAIN_UNRESOLVABLE 3.0\n";

fn gateway(zone: &Zone, policy: &str) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal)
        .file("rules/dns.cf", RULES)
        .toml(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"300ms\"\nattempts = 1\nstage_deadline = \"1s\"\n\n[policy]\nrules_dir = \"rules\"\n{policy}",
            zone.dns.addr()
        ));
    (internal, Gateway::start(config))
}

const LISTS: &str = r#"dnsbl_threshold = 3.0
[[policy.dnsbl]]
zone = "bl.test"
weight = 3.0
symbol = "RCVD_IN_BL_TEST"
codes = { "127.0.0.2" = "RCVD_IN_BL_TEST_SBL" }
[[policy.dnsbl]]
zone = "wl.test"
weight = -5.0
symbol = "RCVD_IN_WL_TEST"
"#;

#[test]
fn listed_client_is_refused_at_rcpt_naming_the_list() {
    let z = zone(|b| b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2)));
    let (_internal, gw) = gateway(&z, LISTS);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
    let r = c.cmd("RCPT TO:<user@example.test>");
    r.expect(554, "5.7.1");
    assert!(r.text().contains("bl.test"), "{r}");
}

#[test]
fn allowlisted_client_outweighs_a_listing() {
    let z = zone(|b| {
        b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2))
            .a("1.0.0.127.wl.test", Ipv4Addr::new(127, 0, 0, 10))
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", Ipv4Addr::new(192, 0, 2, 25))
            .a("client.sender.test", Ipv4Addr::new(127, 0, 0, 1))
    });
    let (internal, gw) = gateway(&z, LISTS);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "a@sender.test",
        &["user@example.test"],
        &message("wl@test", "hi", "body"),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("wl@test");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("RCVD_IN_WL_TEST=-2.00"), "{rules}");
    assert!(!rules.contains("HELO_UNRESOLVABLE"), "{rules}");
    assert!(!rules.contains("SENDER_DOMAIN_UNRESOLVABLE"), "{rules}");
}

#[test]
fn unresolvable_helo_and_sender_domain_are_scored() {
    let z = zone(|b| b.a("other.test", Ipv4Addr::new(192, 0, 2, 1)));
    let (internal, gw) = gateway(&z, "");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "a@nowhere.test",
        &["user@example.test"],
        &message("unres@test", "hi", "body"),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("unres@test");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("HELO_UNRESOLVABLE=1.00"), "{rules}");
    assert!(rules.contains("SENDER_DOMAIN_UNRESOLVABLE=3.00"), "{rules}");
}

#[test]
fn a_dead_dns_server_only_costs_the_deadline_and_scores_nothing() {
    let z = silent_zone();
    let (internal, gw) = gateway(&z, LISTS);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "a@sender.test",
        &["user@example.test"],
        &message("dead@test", "hi", "body"),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("dead@test");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(!rules.contains("RCVD_IN_BL_TEST"), "{rules}");
    assert!(!rules.contains("UNRESOLVABLE"), "{rules}");
}

#[test]
fn domains_of_links_are_looked_up_in_uribl_zones() {
    let z = zone(|b| b.a("spammy.test.dbl.test", Ipv4Addr::new(127, 0, 1, 2)));
    let policy = "[[policy.uribl]]\nzone = \"dbl.test\"\nsymbol = \"URIBL_DBL_TEST\"\n";
    let (internal, gw) = gateway(&z, policy);
    let body = "Cheap stuff at http://www.spammy.test/buy and http://clean.test/ today";
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "a@sender.test",
        &["user@example.test"],
        &message("uribl@test", "hi", body),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("uribl@test");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("URIBL_DBL_TEST=4.00"), "{rules}");
}
