//! Relay control (GUIDE §6): every open-relay address form gets 5xx at RCPT and nothing
//! is ever relayed for it. D = a domain not relayed, S = the gateway's hostname,
//! IP = its address (127.0.0.1).

mod common;

use common::*;
use std::time::Duration;

const D: &str = "elsewhere.test";
const S: &str = HOSTNAME;
const IP: &str = "127.0.0.1";

fn forms() -> Vec<String> {
    [
        "to@D",
        "to%D@S",
        "to%D@[IP]",
        "\"to@D\"",
        "\"to%D\"",
        "\"to@D\"@[IP]",
        "to@D@S",
        "@S:to@D",
        "@[IP]:to@D",
        "D!to",
        "D!to@S",
        "D!to@[IP]",
        // The same tricks behind the relayed domain, where a lenient internal server
        // (percent hack, bang paths, quoted @) would forward them on.
        "to%D@example.test",
        "D!to@example.test",
        "\"to@D\"@example.test",
        "to@D@example.test",
        "@example.test:to@D",
        // Destinations that are not the relayed domain.
        "to@sub.example.test",
        "to@example.test.",
        "to@D.",
        "to@localhost",
        "to@[IP]",
        "postmaster@[IP]",
        "to@S",
        "to@example.test.elsewhere.test",
        "to@notexample.test",
        // A source route in front of the bare postmaster (RFC 5321 §4.5.1 lets the bare
        // form through): refused like every other source route.
        "@D:postmaster",
        "@S:postmaster",
        "@[IP]:postmaster",
        "@D,@S:postmaster",
    ]
    .iter()
    .map(|t| {
        t.replace("[IP]", &format!("[{IP}]"))
            .replace('D', D)
            .replace('S', S)
    })
    .collect()
}

#[test]
fn the_form_table_is_built_right() {
    let f = forms();
    assert!(
        f.contains(&"to%elsewhere.test@mx.example.test".to_string()),
        "{f:?}"
    );
    assert!(
        f.contains(&"@[127.0.0.1]:to@elsewhere.test".to_string()),
        "{f:?}"
    );
    assert!(f.contains(&"to@localhost".to_string()), "{f:?}");
}

#[test]
fn every_open_relay_form_is_refused_at_rcpt() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let mut failures = Vec::new();
    for form in forms() {
        c.cmd("RSET").expect(250, "2.0.0");
        c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
        let r = c.cmd(&format!("RCPT TO:<{form}>"));
        println!("RCPT TO:<{form}> -> {r}");
        let relay_refusal = (r.code == 550 && r.enhanced() == Some("5.7.1"))
            || (r.code == 553 && r.enhanced().is_some_and(|e| e.starts_with("5.1.")));
        if !relay_refusal {
            failures.push(format!("<{form}> -> {r} (want 550 5.7.1, or 553 5.1.x)"));
            if !(500..600).contains(&r.code) {
                continue;
            }
        }
        // Nothing may be left to deliver.
        let d = c.cmd("DATA");
        if d.code == 354 {
            c.send(&dot_stuffed(&message("relay@test", "relay", "x")));
            let end = c.read_reply();
            failures.push(format!(
                "<{form}>: DATA accepted after refused RCPT, then {end}"
            ));
        } else if d.code < 500 {
            failures.push(format!("<{form}>: DATA answered {d}"));
        }
    }
    // Positive controls in the same session: the relayed domain works, in any case.
    for ok in [
        "to@example.test",
        "To@EXAMPLE.TEST",
        "to@Example.Test",
        "postmaster",
        "PostMaster",
    ] {
        c.cmd("RSET").expect(250, "2.0.0");
        c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
        let r = c.cmd(&format!("RCPT TO:<{ok}>"));
        if r.code != 250 {
            failures.push(format!("relayed domain <{ok}> refused: {r}"));
        }
    }
    c.quit();
    assert!(
        failures.is_empty(),
        "open relay forms not refused:\n{}",
        failures.join("\n")
    );
    let (_, msgs) = internal.wait_for(Duration::from_millis(500), |_| false);
    assert!(msgs.is_empty(), "relayed: {:?}", summarize(&msgs));
}

#[test]
fn plain_relay_attempt_is_550_571() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    for form in [
        format!("to@{D}"),
        format!("to%{D}@{S}"),
        format!("{D}!to@{S}"),
        format!("to@[{IP}]"),
        "to@localhost".to_string(),
        "to@sub.example.test".to_string(),
        "to@example.test.".to_string(),
    ] {
        let r = c.cmd(&format!("RCPT TO:<{form}>"));
        assert!(
            (r.code == 550 && r.enhanced() == Some("5.7.1"))
                || (r.code == 553 && r.enhanced().is_some_and(|e| e.starts_with("5.1."))),
            "<{form}> answered {r} (want 550 5.7.1)"
        );
    }
    c.quit();
}

/// Regression: a refusal before DATA and a session that never reached a message left no
/// line at `info` (only a debug line and a counter): an operator could not tell a sender
/// why its mail was refused. Now each refusal has a `refused` line and each connection a
/// `session` line.
#[test]
fn refusals_and_sessions_are_logged_at_info() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd(&format!("RCPT TO:<to@{D}>")).expect(550, "5.7.1");
    c.quit();
    // The line holding `needle` must hold every one of `parts`.
    let expect_line = |needle: &str, parts: &[&str]| {
        let line = gw
            .wait_log_line(Duration::from_secs(10), needle, 0)
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", gw.logs()));
        for part in parts {
            assert!(line.contains(part), "{part:?} missing from {line}");
        }
    };
    expect_line(
        "rcpt=",
        &[
            "INFO",
            "refused",
            "stage=",
            "rcpt",
            "s@sender.test",
            "to@elsewhere.test",
            "5.7.1",
        ],
    );
    // The gateway's start-up probe (connect, QUIT) has a session line of its own.
    expect_line(
        "transactions=1",
        &[
            "INFO",
            "session",
            "duration_ms=",
            "messages=0",
            "errors=1",
            "quit",
        ],
    );
}

#[test]
fn subdomains_are_relayed_only_when_listed_with_a_dot() {
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal);
    cfg.domains = vec![DOMAIN.into(), ".sub.test".into()];
    let gw = Gateway::start(cfg);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<a@mail.sub.test>").expect(250, "");
    c.cmd("RCPT TO:<a@x.mail.sub.test>").expect(250, "");
    c.cmd("RCPT TO:<a@mail.example.test>").expect(550, "5.7.1");
    c.cmd("RCPT TO:<a@notsub.test>").expect(550, "5.7.1");
    c.quit();
}

/// Regression: `<@other.test:postmaster>` was accepted as the postmaster of our domain
/// (the bare-postmaster exception ignored the source route in front of it).
#[test]
fn source_routed_postmaster_is_refused_like_any_source_route() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    for route in ["@other.test:postmaster", "@mx.example.test:postmaster"] {
        let r = c.cmd(&format!("RCPT TO:<{route}>"));
        r.expect(550, "5.7.1");
        assert!(r.text().contains("source route"), "<{route}>: {r}");
    }
    c.cmd("RCPT TO:<postmaster>").expect(250, "");
    c.quit();
}

/// Regression (review): addresses reached the text log raw, so an SMTPUTF8 address
/// holding U+2028 (a line separator) or U+202E (right-to-left override) could forge a log
/// line or turn a name around in a terminal. They are written escaped, as `helo` was.
#[test]
fn addresses_in_log_lines_are_written_escaped() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<x\u{2028}verdict=accept\u{202e}gnp.exe@sender.test> SMTPUTF8")
        .expect(250, "");
    c.cmd("RCPT TO:<to@elsewhere.test>").expect(550, "5.7.1");
    c.quit();
    let line = gw
        .wait_log_line(Duration::from_secs(10), "refused", 0)
        .unwrap_or_else(|| panic!("no refusal line in\n{}", gw.logs()));
    assert!(
        !gw.logs().contains('\u{2028}') && !gw.logs().contains('\u{202e}'),
        "raw separator or override in the log:\n{line}"
    );
    assert!(line.contains("\\u{2028}"), "{line}");
    // Regression (review): a non-ASCII recipient without SMTPUTF8 was refused with no line.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<j\u{f6}rg@example.test>")
        .expect(553, "5.6.7");
    c.quit();
    gw.wait_log_line(Duration::from_secs(10), "5.6.7", 0)
        .unwrap_or_else(|| panic!("no line for the 553 in\n{}", gw.logs()));
    // Regression (review): the greylisting line wrote them raw still.
    let gw = Gateway::start(
        GatewayConfig::new(&internal).toml("[greylist]\nenabled = true\ndelay = \"1h\"\n"),
    );
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<x\u{2028}y\u{202e}gnp.exe@sender.test> SMTPUTF8")
        .expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(451, "4.7.1");
    c.quit();
    let line = gw
        .wait_log_line(Duration::from_secs(10), "greylisted", 0)
        .unwrap_or_else(|| panic!("no greylisting line in\n{}", gw.logs()));
    assert!(
        !gw.logs().contains('\u{2028}') && !gw.logs().contains('\u{202e}'),
        "raw separator or override in the log:\n{line}"
    );
}

/// Regression (review): the `refused` line of a refused recipient named the rules hit
/// before it but not the one that refused it (the policy sets a refused recipient's
/// symbols aside before the line was written), and MAIL refused before the policy (a
/// non-ASCII sender without SMTPUTF8, parameters after HELO) had no line at all.
#[test]
fn refusal_lines_name_what_refused() {
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<to@elsewhere.test>").expect(550, "5.7.1");
    c.quit();
    let line = gw
        .wait_log_line(Duration::from_secs(10), "refused", 0)
        .unwrap_or_else(|| panic!("no refusal line in\n{}", gw.logs()));
    assert!(line.contains("RELAY_DENIED"), "{line}");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<j\u{f6}rg@sender.test>")
        .expect(553, "5.6.7");
    c.quit();
    let line = gw
        .wait_log_line(Duration::from_secs(10), "5.6.7", 0)
        .unwrap_or_else(|| panic!("no line for the 553 in\n{}", gw.logs()));
    assert!(
        line.contains("refused") && line.contains("sender.test"),
        "{line}"
    );
    let mut c = SmtpClient::connect(gw.port).0;
    c.cmd("HELO client.sender.test").expect(250, "");
    c.cmd("MAIL FROM:<s@sender.test> BODY=8BITMIME")
        .expect(555, "5.5.4");
    // Regression (review): `BODY=7BIT`, which changes nothing, was taken after HELO,
    // though HELO offers no extension (RFC 6152 §2).
    c.cmd("MAIL FROM:<s@sender.test> BODY=7BIT")
        .expect(555, "5.5.4");
    c.cmd("MAIL FROM:<s@sender.test>").expect(250, "2.1.0");
    c.quit();
    let line = gw
        .wait_log_line(Duration::from_secs(10), "5.5.4", 0)
        .unwrap_or_else(|| panic!("no line for the 555 in\n{}", gw.logs()));
    assert!(line.contains("refused"), "{line}");
}

/// Regression (review): a recipient repeated in another spelling (a Unicode domain after
/// its A-label, a bare `postmaster` after `postmaster@example.test`) was found to be a
/// repeat only after every RCPT check had run again: its buckets charged twice (here the
/// second count is over the limit), the greylist asked again.
#[test]
fn a_recipient_repeated_in_another_spelling_is_a_repeat_at_once() {
    let internal = InternalServer::start();
    // One recipient a day: a second count of the same one is refused.
    let limit =
        "[state]\ntimeout = \"3s\"\n[[ratelimit]]\nname = \"per_rcpt\"\nkey = \"recipient\"\n\
                 limit = 1\nper = \"1d\"\nstage = \"rcpt\"\n";
    let mut config = GatewayConfig::new(&internal).toml(limit);
    config.domains.push("xn--bcher-kva.test".into());
    let gw = Gateway::start(config);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<s@sender.test> SMTPUTF8").expect(250, "");
    c.cmd("RCPT TO:<u@xn--bcher-kva.test>").expect(250, "2.1.5");
    let r = c.cmd("RCPT TO:<u@b\u{fc}cher.test>");
    r.expect(250, "2.1.5");
    assert!(r.text().contains("duplicate"), "{r}");
    c.quit();
}
