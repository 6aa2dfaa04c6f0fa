//! Security regressions: verdict and authentication headers a sender forges never reach
//! the internal server, whatever their spelling (tests/pipeline.rs and tests/dns_checks.rs
//! cover the plain forms): names in any case or with blanks before the colon, folded
//! values, `Authentication-Results` naming our host in another case, after a comment or
//! with a version, or naming another member of the tier. Third-party
//! `Authentication-Results` stay (RFC 8601 §5).

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

fn relay(raw: &str, id: &str) -> Received {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("s@sender.test", &["user@example.test"], raw.as_bytes())
        .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id(id)
}

/// The header section of a relayed message, unfolded, one field per entry.
fn fields(m: &Received) -> Vec<String> {
    let text = m.text();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let mut out: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match out.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => out.push(line.to_string()),
        }
    }
    out
}

#[test]
fn forged_verdict_headers_in_any_spelling_never_reach_the_internal_server() {
    let raw = "From: a@sender.test\r\n\
        X-SPAM-STATUS: No, score=-50 forged-upper\r\n\
        X-Spam-Status : No, forged-blank-before-colon\r\n\
        x-spam-flag:NO forged-no-space\r\n\
        X-Spam-Score:\r\n -99 forged-folded-empty-first-line\r\n\
        X-Spam-Rules: HAM=-100,\r\n\tforged-folded-tab\r\n\
        X-Spam-Level: ********** forged-level\r\n\
        Subject: header spellings\r\n\
        Message-ID: <hdr-spellings@t>\r\n\
        \r\n\
        X-Spam-Status: in the body stays\r\n";
    let m = relay(raw, "hdr-spellings@t");
    let text = m.text();
    assert!(
        !text.contains("forged-"),
        "a forged header survived:\n{text}"
    );
    assert!(
        text.contains("X-Spam-Status: in the body stays"),
        "the body was touched:\n{text}"
    );
    let ours: Vec<String> = fields(&m)
        .into_iter()
        .filter(|f| f.to_ascii_lowercase().starts_with("x-spam-status"))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(ours[0].starts_with("X-Spam-Status: No, score="), "{ours:?}");
}

#[test]
fn forged_authentication_results_for_our_host_in_any_spelling_are_removed() {
    let raw = format!(
        "Authentication-Results: MX.EXAMPLE.TEST; dkim=pass header.d=forged-upper.test\r\n\
         authentication-results: (comment first) {HOSTNAME}; spf=pass forged-comment\r\n\
         Authentication-Results: {HOSTNAME} 1; dmarc=pass forged-version\r\n\
         Authentication-Results:\r\n\t{HOSTNAME};\r\n\tdkim=pass forged-folded\r\n\
         Authentication-Results : {HOSTNAME}.; arc=pass forged-dot-blank\r\n\
         Authentication-Results: other.example.org; spf=pass third-party\r\n\
         From: a@sender.test\r\n\
         Subject: result spellings\r\n\
         Message-ID: <ar-spellings@t>\r\n\
         \r\n\
         body\r\n"
    );
    let m = relay(&raw, "ar-spellings@t");
    let text = m.text();
    assert!(
        !text.contains("forged-"),
        "a forged Authentication-Results survived:\n{text}"
    );
    let ar: Vec<String> = fields(&m)
        .into_iter()
        .filter(|f| f.to_ascii_lowercase().starts_with("authentication-results"))
        .collect();
    let ours: Vec<&String> = ar.iter().filter(|f| f.contains(HOSTNAME)).collect();
    assert_eq!(ours.len(), 1, "exactly our own header: {ar:?}");
    assert!(
        ar.iter().any(|f| f.contains("third-party")),
        "a third party's Authentication-Results was removed: {ar:?}"
    );
}

#[test]
fn forged_authentication_results_naming_a_tier_member_are_removed() {
    // The internal server trusts the results of every member of the tier, so a sender's
    // copy naming another member (or this one by its tier name) is as forged as one
    // naming this host.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("tier.key");
    std::fs::write(&key, b"a-test-tier-key-of-some-length").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal).toml(&format!(
        "[tier]\nname = \"gw1.example.test\"\nrole = \"primary\"\nsecret_file = {:?}\n\
         [[tier.peers]]\nname = \"gw2.example.test\"\nsmtp = \"127.0.0.2:25\"\nrole = \"primary\"\n",
        key.display().to_string()
    )));
    let raw = "Authentication-Results: gw2.example.test; dmarc=pass forged-peer\r\n\
         Authentication-Results: GW1.example.test.; dkim=pass forged-tier-name\r\n\
         Authentication-Results: other.example.org; spf=pass third-party\r\n\
         From: a@sender.test\r\n\
         Subject: tier results\r\n\
         Message-ID: <ar-tier@t>\r\n\
         \r\n\
         body\r\n";
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail("s@sender.test", &["user@example.test"], raw.as_bytes())
        .expect(250, "2.0.0");
    c.quit();
    let m = internal.expect_message_id("ar-tier@t");
    let text = m.text();
    assert!(
        !text.contains("forged-"),
        "a forged Authentication-Results in a tier member's name survived:\n{text}"
    );
    assert!(
        text.contains("third-party"),
        "a third party's Authentication-Results was removed:\n{text}"
    );
}

/// Regression (review): a message whose first line starts with a blank was written
/// straight after the headers the gateway prepends, so that line became a continuation of
/// the last of them (`X-Spam-Status` or `X-Spam-Rules`): a sender could write into our
/// verdict headers.
#[test]
fn a_leading_continuation_line_does_not_join_our_headers() {
    let raw = "\tforged-continuation ALL_TRUSTED=-100\r\n\
        From: a@sender.test\r\n\
        Subject: leading blank\r\n\
        Message-ID: <leading-blank@t>\r\n\
        \r\n\
        body\r\n";
    let m = relay(raw, "leading-blank@t");
    for f in fields(&m) {
        let lower = f.to_ascii_lowercase();
        if lower.starts_with("x-spam-") || lower.starts_with("received:") {
            assert!(
                !f.contains("forged-continuation"),
                "the sender's line joined our header: {f}\n{}",
                m.text()
            );
        }
    }
}
