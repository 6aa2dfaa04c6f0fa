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

const RULES: &str = "score URIBL_DBL_TEST 4.0\nscore RCVD_IN_BL_TEST 3.0\nscore RCVD_IN_WL_TEST -2.0\ntflags RCVD_IN_WL_TEST nice\nscore HELO_UNRESOLVABLE 1.0\nscore SENDER_DOMAIN_UNRESOLVABLE 3.0\n";

fn gateway(zone: &Zone, policy: &str) -> (InternalServer, Gateway) {
    gateway_with_rules(zone, policy, RULES)
}

fn gateway_with_rules(zone: &Zone, policy: &str, rules: &str) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal)
        .file("rules/dns.cf", rules)
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

/// Sends a message (Message-ID `id`) from `mail_from` to user@example.test through `gw`,
/// which must accept it; returns what the internal server got.
fn relay_one(
    gw: &Gateway,
    internal: &InternalServer,
    mail_from: &str,
    id: &str,
    subject: &str,
    body: &str,
) -> Received {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        mail_from,
        &["user@example.test"],
        &message(id, subject, body),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id(id)
}

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

/// Regression (review): the refusal named the zone as configured, and a zone carrying an
/// access key (Spamhaus DQS `KEY.zen.dq.spamhaus.net`) sent that key to every listed client.
#[test]
fn a_list_with_a_reply_name_is_named_by_it_not_by_its_zone() {
    let z = zone(|b| b.a("1.0.0.127.s3cr3tkey.bl.test", Ipv4Addr::new(127, 0, 0, 2)));
    let lists = "dnsbl_threshold = 3.0\n[[policy.dnsbl]]\nzone = \"s3cr3tkey.bl.test\"\nweight = 3.0\nsymbol = \"RCVD_IN_BL_TEST\"\nreply_name = \"bl.test\"\n";
    let (_internal, gw) = gateway(&z, lists);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
    let r = c.cmd("RCPT TO:<user@example.test>");
    r.expect(554, "5.7.1");
    assert!(r.text().contains("using bl.test"), "{r}");
    assert!(!r.text().contains("s3cr3tkey"), "{r}");
}

/// Regression (review): an allowlist that gave no answer (a timeout) added nothing to the
/// total, so a client on the blocklist and on the allowlist was refused for good (554)
/// whenever the allowlist was slow: a permanent refusal resting on what was not said.
#[test]
fn a_listing_an_unanswered_allowlist_could_outweigh_is_refused_for_now_only() {
    let z = zone(|b| {
        b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2))
            .silent_under("wl.test")
    });
    let (_internal, gw) = gateway(&z, LISTS);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
    let r = c.cmd("RCPT TO:<user@example.test>");
    r.expect(451, "4.7.1");
    assert!(r.text().contains("bl.test"), "{r}");
    c.quit();
    // An allowlist that answered "not listed" leaves the refusal permanent.
    let z = zone(|b| b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2)));
    let (_internal, gw) = gateway(&z, LISTS);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(554, "5.7.1");
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
    let m = relay_one(&gw, &internal, "a@sender.test", "wl@test", "hi", "body");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("RCVD_IN_WL_TEST=-2.00"), "{rules}");
    assert!(!rules.contains("HELO_UNRESOLVABLE"), "{rules}");
    assert!(!rules.contains("SENDER_DOMAIN_UNRESOLVABLE"), "{rules}");
}

#[test]
fn unresolvable_helo_and_sender_domain_are_scored() {
    let z = zone(|b| b.a("other.test", Ipv4Addr::new(192, 0, 2, 1)));
    let (internal, gw) = gateway(&z, "");
    let m = relay_one(&gw, &internal, "a@nowhere.test", "unres@test", "hi", "body");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("HELO_UNRESOLVABLE=1.00"), "{rules}");
    assert!(rules.contains("SENDER_DOMAIN_UNRESOLVABLE=3.00"), "{rules}");
}

/// Regression: a bounce (`MAIL FROM:<>`) scored both `SPF_HELO_FAIL` and `SPF_FAIL`, one
/// SPF answer counted twice: the null sender's MAIL FROM identity is postmaster@HELO.
#[test]
fn the_null_sender_scores_its_helo_spf_result_once() {
    let z = zone(|b| b.txt("client.sender.test", "v=spf1 -all"));
    let spf_rules = "score SPF_FAIL 2.5\nscore SPF_HELO_FAIL 1.5\n";
    let (internal, gw) = gateway_with_rules(&z, "", spf_rules);
    let m = relay_one(&gw, &internal, "", "bounce@test", "Undeliverable", "body");
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("SPF_HELO_FAIL=1.50"), "{rules}");
    assert!(!rules.contains("SPF_FAIL="), "{rules}");
    let ar = m.header("Authentication-Results").unwrap_or_default();
    assert!(ar.contains("spf=fail"), "{ar}");
}

#[test]
fn a_dead_dns_server_only_costs_the_deadline_and_scores_nothing() {
    let z = silent_zone();
    let (internal, gw) = gateway(&z, LISTS);
    let m = relay_one(&gw, &internal, "a@sender.test", "dead@test", "hi", "body");
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
    let m = relay_one(&gw, &internal, "a@sender.test", "uribl@test", "hi", body);
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("URIBL_DBL_TEST=4.00"), "{rules}");
}

/// A link written as an IP address, in the one-number form a browser opens too, is looked
/// up reversed in a list that lists addresses (`lookup = "ips"`), and only there: a
/// domain list is never asked about it.
#[test]
fn addresses_of_links_are_looked_up_in_lists_that_list_them() {
    let z = zone(|b| {
        b.a("7.100.51.198.multi.test", Ipv4Addr::new(127, 0, 0, 2))
            .a("7.100.51.198.dbl.test", Ipv4Addr::new(127, 0, 1, 2))
    });
    let policy = "[[policy.uribl]]\nzone = \"multi.test\"\nsymbol = \"URIBL_MULTI_IP\"\n\
                  lookup = \"ips\"\n\
                  [[policy.uribl]]\nzone = \"dbl.test\"\nsymbol = \"URIBL_DBL_TEST\"\n";
    let rules = "score URIBL_MULTI_IP 2.0\nscore URIBL_DBL_TEST 3.0\n";
    let (internal, gw) = gateway_with_rules(&z, policy, rules);
    let body = "Order now at http://3325256711/buy today";
    let m = relay_one(&gw, &internal, "a@sender.test", "ip@test", "hi", body);
    let hits = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(hits.contains("URIBL_MULTI_IP=2.00"), "{hits}");
    assert!(!hits.contains("URIBL_DBL_TEST"), "{hits}");
    let body = "Order now at http://198.51.100.8/buy today";
    let m = relay_one(&gw, &internal, "a@sender.test", "ip2@test", "hi", body);
    let hits = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(!hits.contains("URIBL_MULTI_IP"), "{hits}");
}

/// Regression (review of this stop's diff): a list asked about names and addresses alike
/// was probed with a name only. A domain list given `lookup = "both"` answers every
/// address query with a code of its own (Spamhaus DBL's `127.0.1.255`), which passed for
/// a listing of every linked address. Both kinds are probed, and such a list is set aside.
#[test]
fn a_list_asked_about_names_and_addresses_is_probed_with_both() {
    let z = zone(|b| {
        let mut b = b.a("7.100.51.198.dbl.test", Ipv4Addr::new(127, 0, 1, 255));
        for net in ["2.0.192", "100.51.198", "113.0.203"] {
            for n in 1..=254 {
                b = b.a(
                    &format!("{n}.{net}.dbl.test"),
                    Ipv4Addr::new(127, 0, 1, 255),
                );
            }
        }
        b
    });
    let policy = "[[policy.uribl]]\nzone = \"dbl.test\"\nsymbol = \"URIBL_DBL_TEST\"\n\
                  lookup = \"both\"\n";
    let (internal, gw) = gateway(&z, policy);
    let mut n = 0;
    let set_aside = wait_until(std::time::Duration::from_secs(10), || {
        n += 1;
        let id = format!("both{n}@test");
        let body = "Order now at http://198.51.100.7/buy today";
        let m = relay_one(&gw, &internal, "a@sender.test", &id, "hi", body);
        !m.header("X-Spam-Rules")
            .unwrap_or_default()
            .contains("URIBL_DBL_TEST")
    });
    assert!(
        set_aside,
        "every linked address still earned the list's symbol"
    );
}

/// Regression (review): URIBL took only the first code-map entry matching each return
/// code, in the map's name order, where DNSBL takes every entry that matches: a bitmask
/// list's `127.0.0.24` (bits 8 and 16) earned only the symbol of `&16`.
#[test]
fn a_uribl_bitmask_answer_earns_every_symbol_it_carries() {
    let z = zone(|b| b.a("spammy.test.multi.test", Ipv4Addr::new(127, 0, 0, 24)));
    let policy = "[[policy.uribl]]\nzone = \"multi.test\"\nsymbol = \"URIBL_MULTI\"\n\
                  codes = { \"&8\" = \"URIBL_MULTI_PH\", \"&16\" = \"URIBL_MULTI_MW\" }\n";
    let rules = "score URIBL_MULTI_PH 2.0\nscore URIBL_MULTI_MW 3.0\nscore URIBL_MULTI 1.0\n";
    let (internal, gw) = gateway_with_rules(&z, policy, rules);
    let body = "See http://www.spammy.test/x today";
    let m = relay_one(&gw, &internal, "a@sender.test", "multi@test", "hi", body);
    let rules = m.header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("URIBL_MULTI_PH=2.00"), "{rules}");
    assert!(rules.contains("URIBL_MULTI_MW=3.00"), "{rules}");
    assert!(!rules.contains("URIBL_MULTI="), "{rules}");
}

/// Regression (review): dnswl.org answers `127.0.0.255` to a querier it blocks (over its
/// query limit, or through a public resolver); that was read as a listing, so an
/// allowlist's negative weight vouched for every client, and a listed spammer got in.
#[test]
fn an_allowlist_that_blocks_our_queries_vouches_for_no_one() {
    let z = zone(|b| {
        b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2))
            .a("1.0.0.127.wl.test", Ipv4Addr::new(127, 0, 0, 255))
    });
    let (_internal, gw) = gateway(&z, LISTS);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
    let r = c.cmd("RCPT TO:<user@example.test>");
    r.expect(554, "5.7.1");
    assert!(r.text().contains("bl.test"), "{r}");
    let m = common::admin::scrape(admin_port(&gw));
    let refused = [("check", "dnsbl"), ("zone", "wl.test")];
    assert!(m.value("mxguard_dns_list_refused_total", &refused) >= 1.0);
}

/// Standard base64 (for the DKIM public key record).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A message from `alice@signed.test`, DKIM-signed for signed.test with a fresh key;
/// returns it with the key's DNS record.
fn signed_message(message_id: &str) -> (Vec<u8>, String) {
    signed_message_with(message_id, "")
}

/// The same, with `extra` (header lines, CRLF-terminated) in the header section and the
/// signature covering an `X-Spam-Status` field too.
fn signed_message_with(message_id: &str, extra: &str) -> (Vec<u8>, String) {
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let record = format!("v=DKIM1; k=ed25519; p={}", base64(&key.public_key()));
    let msg = format!(
        "From: Alice <alice@signed.test>\r\nTo: user@example.test\r\nSubject: signed\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n{extra}\r\nhello\r\n"
    );
    let signature = mail_auth::dkim::DkimSigner::from_key(key)
        .domain("signed.test")
        .selector("sel")
        .headers([
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "X-Spam-Status",
        ])
        .sign(msg.as_bytes())
        .unwrap();
    (
        format!("{}{msg}", signature.to_header()).into_bytes(),
        record,
    )
}

fn auth_zone(record: &str) -> Zone {
    zone(|b| {
        b.txt("sel._domainkey.signed.test", record)
            .txt("_dmarc.signed.test", "v=DMARC1; p=reject")
            .txt("signed.test", "v=spf1 -all")
            .mx("signed.test", 10, "mx.signed.test")
            .a("mx.signed.test", Ipv4Addr::new(192, 0, 2, 25))
    })
}

/// Sends `msg` from alice@signed.test (DKIM key `record` published) through a gateway,
/// which must accept it; returns what the internal server got.
fn relay_from_signed_test(msg: &[u8], record: &str, message_id: &str) -> Received {
    let z = auth_zone(record);
    let (internal, gw) = gateway(&z, "");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("alice@signed.test", &["user@example.test"], msg)
        .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id(message_id)
}

#[test]
fn signed_aligned_message_passes_dkim_and_dmarc_end_to_end() {
    let (msg, record) = signed_message("dkim-ok@test");
    // SPF fails (-all), but the aligned DKIM signature makes DMARC pass.
    let m = relay_from_signed_test(&msg, &record, "dkim-ok@test");
    let ar = m.header("Authentication-Results").unwrap_or_default();
    assert!(ar.starts_with("mx.example.test"), "{ar}");
    assert!(ar.contains("dkim=pass"), "{ar}");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    assert!(ar.contains("spf=fail"), "{ar}");
}

#[test]
fn dmarc_reject_domain_failing_authentication_is_refused_at_data() {
    let (signed, record) = signed_message("dkim-bad@test");
    // Tamper with the body after signing.
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("hello", "HELLO, buy now");
    let z = auth_zone(&record);
    let (internal, gw) = gateway(&z, "");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.send_mail(
        "alice@signed.test",
        &["user@example.test"],
        tampered.as_bytes(),
    );
    r.expect(550, "5.7.1");
    assert!(r.text().contains("DMARC"), "{r}");
    c.quit();
    assert!(internal.messages().is_empty());
}

/// Regression (review): a trusted client (`trusted_networks`: the internal server handing
/// out DSNs from MAILER-DAEMON of the operator's own `p=reject` domain, unsigned) got the
/// DMARC 550 as any stranger did; it is judged on content only, its DMARC result kept.
#[test]
fn a_trusted_client_is_not_refused_for_dmarc() {
    let (signed, record) = signed_message("dkim-trusted@test");
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("hello", "HELLO, buy now");
    let z = auth_zone(&record);
    let (internal, gw) = gateway(&z, "trusted_networks = [\"127.0.0.0/8\"]\n");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "alice@signed.test",
        &["user@example.test"],
        tampered.as_bytes(),
    )
    .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("dkim-trusted@test");
    let ar = m.header("Authentication-Results").unwrap_or_default();
    assert!(ar.contains("dmarc=fail"), "{ar}");
}

#[test]
fn forged_authentication_results_claiming_our_name_are_removed() {
    let (msg, record) = signed_message("ar-forged@test");
    let forged = [
        b"Authentication-Results: mx.example.test; dkim=pass; dmarc=pass\r\n".as_slice(),
        &msg,
    ]
    .concat();
    let m = relay_from_signed_test(&forged, &record, "ar-forged@test");
    let text = m.text();
    assert_eq!(text.matches("Authentication-Results:").count(), 1, "{text}");
}

#[test]
fn swaks_is_refused_at_rcpt_with_the_list_name() {
    let Some(swaks) = interop_required("swaks") else {
        return;
    };
    let z = zone(|b| b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2)));
    let (internal, gw) = gateway(&z, LISTS);
    let out = std::process::Command::new(&swaks)
        .args(["--server", &format!("127.0.0.1:{}", gw.port)])
        .args(["--to", "user@example.test", "--from", "a@sender.test"])
        .args(["--helo", "client.sender.test", "--timeout", "20"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run swaks");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "swaks must fail:\n{text}");
    let refusal = text
        .lines()
        .find(|l| l.contains("554 5.7.1"))
        .unwrap_or_else(|| panic!("no 554 in swaks output:\n{text}"));
    assert!(refusal.contains("bl.test"), "{refusal}");
    assert!(internal.messages().is_empty());
}

/// Regression (review): DKIM, ARC and DMARC were verified on the message after the
/// gateway removed fields in its name, so a signature covering the `X-Spam-Status` of the
/// sender's own outbound filter broke, and a `p=reject` domain's good mail was refused.
#[test]
fn signatures_are_verified_on_the_message_as_received() {
    let (msg, record) = signed_message_with(
        "dkim-own-header@test",
        "X-Spam-Status: No, score=0.1 (the sender's outbound filter)\r\n",
    );
    let m = relay_from_signed_test(&msg, &record, "dkim-own-header@test");
    let ar = m.header("Authentication-Results").unwrap_or_default();
    assert!(ar.contains("dkim=pass"), "{ar}");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    // The sender's field is still not passed on as ours.
    let text = m.text();
    assert!(!text.contains("outbound filter"), "{text}");
}

/// Regression (review): whether a client is trusted or allowlisted was decided before the
/// check that finds it out had run, so at connect DNSBL, FCrDNS and rate limits still ran
/// for our own networks (and a DNS failure with `dns_tempfail` refused them).
#[test]
fn trusted_clients_skip_the_client_checks_at_connect_too() {
    // 127.0.0.3: the list's plain symbol (127.0.0.2 maps to its own, unscored here).
    let z = zone(|b| b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 3)));
    for networks in ["trusted_networks", "allow_networks"] {
        let (internal, gw) = gateway(&z, &format!("{networks} = [\"127.0.0.0/8\"]\n{LISTS}"));
        let mut c = SmtpClient::connect_ehlo(gw.port);
        let id = format!("{networks}@test");
        c.send_mail(
            "a@sender.test",
            &["user@example.test"],
            &message(&id, "hi", "body"),
        )
        .expect(250, "2.0.0");
        c.quit();
        let m = internal.expect_message_id(&id);
        let rules = m.header("X-Spam-Rules").unwrap_or_default();
        assert!(!rules.contains("RCVD_IN_BL_TEST"), "{networks}: {rules}");
    }
}

/// Regression (review): a refused repeated EHLO (here a HELO lookup that timed out, with
/// `dns_tempfail`) dropped the earlier greeting and the open transaction, where RFC 5321
/// §4.1.4 says the server stays in the state it was in.
#[test]
fn a_refused_ehlo_leaves_the_session_as_it_was() {
    let z = zone(|b| {
        b.a("client.sender.test", Ipv4Addr::new(192, 0, 2, 1))
            .silent_under("slow.test")
    });
    let (internal, gw) = gateway(&z, "dns_tempfail = [\"helo\"]\n");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("EHLO host.slow.test").expect(450, "4.4.3");
    c.cmd("DATA").expect(354, "");
    c.send(&dot_stuffed(&message("kept@test", "kept", "hello")));
    c.read_reply().expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("kept@test");
    let text = m.text();
    assert!(text.contains("client.sender.test"), "{text}");
    assert!(!text.contains("host.slow.test"), "{text}");
}

/// Regression (review): a greeting deferred because its name's lookup failed on our side
/// (`dns_tempfail = ["helo"]`) counted as the client's error, towards the tarpit and the
/// error limit's 421, where a deferred sender or recipient does not.
#[test]
fn a_deferred_greeting_is_no_client_error() {
    let z = zone(|b| b.silent_under("slow.test"));
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal)
        .limit("errors_before_disconnect", "2")
        .toml(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"300ms\"\nattempts = 1\nstage_deadline = \"1s\"\n\n[policy]\ndns_tempfail = [\"helo\"]\n",
            z.dns.addr()
        ));
    let gw = Gateway::start(config);
    let (mut c, banner) = SmtpClient::connect(gw.port);
    banner.expect(220, "");
    for _ in 0..3 {
        c.cmd("EHLO host.slow.test").expect(450, "4.4.3");
    }
    c.cmd("NOOP").expect(250, "2.0.0");
}

/// Regression: a refused repeated EHLO past the junk limit counted as two errors (the
/// junk command's and the refusal's), so the session ended one error early.
#[test]
fn a_refused_repeated_ehlo_past_the_junk_limit_is_one_error() {
    let z = zone(|b| b.silent_under("slow.test"));
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal)
        .limit("junk_commands", "1")
        .limit("errors_before_disconnect", "3")
        .toml(&format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"300ms\"\nattempts = 1\nstage_deadline = \"1s\"\n\n[policy]\ndns_tempfail = [\"helo\"]\n",
            z.dns.addr()
        ));
    let gw = Gateway::start(config);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("NOOP").expect(250, "2.0.0");
    // Past the junk limit: each refused greeting is one error, the first and the second.
    c.cmd("EHLO host.slow.test").expect(450, "4.4.3");
    c.cmd("EHLO host.slow.test").expect(450, "4.4.3");
    // The third error ends the session.
    c.cmd("NOOP").expect(421, "4.7.0");
}

/// Regression (review): a triplet keyed by the sender's SPF domain passed on a retry from
/// any network, and the pass was credited to that network's auto-allow: five senders of a
/// `v=spf1 +all` domain, greylisted from one /24 and retried from another, exempted the
/// second /24 (never greylisted) for every sender for `pass_ttl`.
#[test]
fn an_spf_keyed_pass_earns_no_network_its_auto_allow() {
    let z = zone(|b| {
        b.txt("spam.test", "v=spf1 ip4:127.0.0.0/8 -all")
            .txt("open.test", "v=spf1 +all")
            .txt("incl.test", "v=spf1 include:open.test -all")
            .txt(
                "evade.test",
                "v=spf1 -ip4:192.0.2.0/24 -ip6:2001:db8::/32 +all",
            )
    });
    let greylist = "[greylist]\nenabled = true\ndelay = \"3s\"\nwindow = \"1h\"\nauto_allow_after = 1\n[state]\ntimeout = \"3s\"\n";
    let internal = InternalServer::start();
    let config = GatewayConfig::new(&internal).toml(&format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"300ms\"\nattempts = 1\nstage_deadline = \"1s\"\n{greylist}",
        z.dns.addr()
    ));
    let gw = Gateway::start(config);
    let rcpt = |source: &str, from: &str, to: &str| {
        let mut c = SmtpClient::connect_from(gw.port, source);
        c.read_reply().expect(220, "");
        c.cmd("EHLO client.example").expect(250, "");
        c.cmd(&format!("MAIL FROM:<{from}>")).expect(250, "2.1.0");
        let r = c.cmd(&format!("RCPT TO:<{to}>"));
        c.quit();
        r
    };
    rcpt("127.0.5.1", "a1@spam.test", "alice@example.test").expect(451, "4.7.1");
    std::thread::sleep(std::time::Duration::from_millis(4100));
    // The domain's retry passes from another network, as a provider's would.
    rcpt("127.0.6.1", "a1@spam.test", "alice@example.test").expect(250, "2.1.5");
    // That network has not shown it retries: its other senders are still greylisted.
    rcpt("127.0.6.99", "x@nospf.test", "carol@example.test").expect(451, "4.7.1");
    // Regression (review): a domain whose record passes everyone (`+all`) verifies no
    // origin: its retry from another network is a first attempt there.
    // Nor one that does so by an include, which no reading of its own text shows.
    rcpt("127.0.5.1", "a1@open.test", "alice@example.test").expect(451, "4.7.1");
    rcpt("127.0.5.1", "a1@incl.test", "alice@example.test").expect(451, "4.7.1");
    // A later review: nor one that leaves out the documentation addresses a fixed probe
    // asked about.
    rcpt("127.0.5.1", "a1@evade.test", "alice@example.test").expect(451, "4.7.1");
    std::thread::sleep(std::time::Duration::from_millis(4100));
    rcpt("127.0.7.1", "a1@open.test", "alice@example.test").expect(451, "4.7.1");
    rcpt("127.0.7.1", "a1@incl.test", "alice@example.test").expect(451, "4.7.1");
    rcpt("127.0.7.1", "a1@evade.test", "alice@example.test").expect(451, "4.7.1");
}

/// Regression (review): nothing noticed a list that answers "listed" for everyone (a list
/// shut down by wildcarding its zone, as AHBL did in 2015): with its weight at the
/// threshold, every client was refused. A list found listing an address no list may list
/// (a documentation network's) is set aside while it does.
#[test]
fn a_list_that_lists_everyone_is_set_aside() {
    // The documentation networks listed, as a wildcard lists them: each probe asks a new
    // address of them (an answer cached for the zone's negative TTL kept a list that began
    // listing everyone trusted for hours).
    let z = zone(|b| {
        let mut b = b.a("1.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2));
        for net in ["2.0.192", "100.51.198", "113.0.203"] {
            for n in 1..=254 {
                b = b.a(&format!("{n}.{net}.bl.test"), Ipv4Addr::new(127, 0, 0, 2));
            }
        }
        b
    });
    let (_internal, gw) = gateway(&z, LISTS);
    let accepted = wait_until(std::time::Duration::from_secs(10), || {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
        let r = c.cmd("RCPT TO:<user@example.test>");
        c.quit();
        r.code == 250
    });
    assert!(
        accepted,
        "the list that lists everyone still refused the client"
    );
    // A list that lists documentation addresses by design (a bogon list) is not probed.
    let unprobed = LISTS.replace(
        "codes = { \"127.0.0.2\" = \"RCVD_IN_BL_TEST_SBL\" }",
        "codes = { \"127.0.0.2\" = \"RCVD_IN_BL_TEST_SBL\" }\nsanity_probe = false",
    );
    assert_ne!(unprobed, LISTS);
    let (_internal, gw) = gateway(&z, &unprobed);
    for _ in 0..5 {
        let mut c = SmtpClient::connect_ehlo(gw.port);
        c.cmd("MAIL FROM:<a@sender.test>").expect(250, "");
        c.cmd("RCPT TO:<user@example.test>").expect(554, "5.7.1");
        c.quit();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
