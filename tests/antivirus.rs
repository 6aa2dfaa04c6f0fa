//! Virus scanning with a real clamd (interop; `MXGUARD_INTEROP=1` makes a missing clamd a
//! failure): a private clamd whose database holds only an EICAR signature; EICAR in an
//! attachment refused end to end over SMTP; clean mail relayed; clamd stopped → the
//! configured fallback (fail open with the symbol, or 451), and back when it returns.

mod common;

use common::admin::scrape;
use common::*;

fn gateway(internal: &InternalServer, clamd: &str, on_failure: &str) -> Gateway {
    Gateway::start(GatewayConfig::new(internal).toml(&format!(
        "[antivirus]\nclamd = {clamd:?}\ntimeout = \"10s\"\non_failure = {on_failure:?}\n"
    )))
}

fn send(gw: &Gateway, msg: &[u8]) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.send_mail("sender@sender.test", &["user@example.test"], msg);
    c.quit();
    r
}

fn eicar_mail(subject: &str) -> Vec<u8> {
    message_with_attachment(subject, "invoice.com.txt", "text/plain", EICAR.as_bytes())
}

fn clean_mail(subject: &str) -> Vec<u8> {
    message_with_attachment(
        subject,
        "report.pdf",
        "application/pdf",
        b"%PDF-1.4\n%%EOF\n",
    )
}

#[test]
fn eicar_attachment_is_refused_naming_the_signature_and_clean_mail_relayed() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let internal = InternalServer::start();
    let gw = gateway(&internal, &clamd.tcp(), "tempfail");
    let r = send(&gw, &eicar_mail("eicar"));
    assert_eq!(r.code, 554, "{r:?}");
    assert_eq!(r.enhanced(), Some("5.7.1"), "{r:?}");
    assert!(r.text().contains(EICAR_SIGNATURE), "{r:?}");
    let r = send(&gw, &clean_mail("clean"));
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(1);
    assert_eq!(got[0].message_id().as_deref(), Some("clean@sender.test"));
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "infected")]),
        1.0
    );
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "clean")]),
        1.0
    );
    assert_eq!(
        m.value("mxguard_rule_hits_total", &[("rule", "VIRUS_FOUND")]),
        1.0
    );
    assert_eq!(
        m.value("mxguard_antivirus_scan_duration_seconds_count", &[]),
        2.0
    );
}

#[test]
fn eicar_inside_a_zip_over_the_unix_socket_is_refused() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let internal = InternalServer::start();
    let gw = gateway(&internal, &clamd.unix(), "tempfail");
    let zip = {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(EICAR.as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    };
    let msg = message_with_attachment("zipped", "files.zip", "application/zip", &zip);
    let r = send(&gw, &msg);
    assert_eq!(r.code, 554, "{r:?}");
    assert!(r.text().contains(EICAR_SIGNATURE), "{r:?}");
    // Mail without attachments is not sent to clamd at all.
    let r = send(
        &gw,
        &message("plain@x", "plain", "EICAR is only named here"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "clean")]),
        0.0
    );
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "infected")]),
        1.0
    );
}

#[test]
fn clamd_stopped_fails_open_with_the_symbol() {
    let Some(mut clamd) = ClamdServer::start() else {
        return;
    };
    let internal = InternalServer::start();
    let gw = gateway(&internal, &clamd.tcp(), "open");
    clamd.stop();
    let r = send(&gw, &eicar_mail("unscanned"));
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(1);
    let rules = got[0].header("X-Spam-Rules").unwrap_or_default();
    assert!(rules.contains("ANTIVIRUS_UNAVAILABLE"), "{rules:?}");
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "unavailable")]),
        1.0
    );
    // Back again: scanned and refused.
    clamd.resume();
    let r = send(&gw, &eicar_mail("scanned again"));
    assert_eq!(r.code, 554, "{r:?}");
}

#[test]
fn clamd_stopped_tempfails_until_it_returns() {
    let Some(mut clamd) = ClamdServer::start() else {
        return;
    };
    let internal = InternalServer::start();
    let gw = gateway(&internal, &clamd.tcp(), "tempfail");
    clamd.stop();
    let r = send(&gw, &clean_mail("deferred"));
    assert_eq!(r.code, 451, "{r:?}");
    assert_eq!(r.enhanced(), Some("4.3.0"), "{r:?}");
    assert!(internal.messages().is_empty());
    clamd.resume();
    let r = send(&gw, &clean_mail("deferred"));
    assert_eq!(r.code, 250, "{r:?}");
    internal.expect_messages(1);
}

/// A message bigger than `message_memory_bytes` goes to its spool file as it arrives, and
/// its checks parse a sample without attachment bytes: clamd still gets the whole message
/// (mapped from the spool) and finds EICAR behind 300 KB of text.
#[test]
fn eicar_in_a_message_kept_on_disk_is_refused() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let internal = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .limit("message_memory_bytes", "65536")
            .limit("message_header_bytes", "65536")
            .toml(&format!(
                "[antivirus]\nclamd = {:?}\ntimeout = \"10s\"\non_failure = \"tempfail\"\n",
                clamd.tcp()
            )),
    );
    let filler = "Quarterly figures, nothing to see here.\r\n".repeat(8_000);
    let big = |subject: &str, mail: Vec<u8>| -> Vec<u8> {
        let text = String::from_utf8(mail).unwrap();
        let text = text.replacen("Please see the attachment.\r\n", &filler, 1);
        assert!(text.len() > 300_000, "{subject} is not big");
        text.into_bytes()
    };
    let r = send(&gw, &big("big eicar", eicar_mail("big eicar")));
    assert_eq!(r.code, 554, "{r:?}");
    assert!(r.text().contains(EICAR_SIGNATURE), "{r:?}");
    let r = send(&gw, &big("big clean", clean_mail("big clean")));
    assert_eq!(r.code, 250, "{r:?}");
    let got = internal.expect_messages(1);
    assert_eq!(
        got[0].message_id().as_deref(),
        Some("big-clean@sender.test")
    );
    let m = scrape(admin_port(&gw));
    assert_eq!(m.value("mxguard_messages_on_disk_total", &[]), 2.0);
}

/// Review: the shadow policy reuses the live clamd scan (nothing is sent again), but its
/// antivirus check counted the reused result in `mxguard_antivirus_total` and the scan
/// duration histogram once more: with `policy.shadow` set, every message was counted
/// twice ("messages sent to clamd"). A clamd that is down needs no clamd installed.
#[test]
fn a_scan_the_shadow_policy_reuses_is_counted_once() {
    let internal = InternalServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let av = format!(
        "[antivirus]\nclamd = \"tcp://127.0.0.1:{port}\"\ntimeout = \"2s\"\non_failure = \"open\"\n"
    );
    let shadow_toml =
        format!("[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2\"]\n{av}");
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&format!("[policy]\nshadow = \"shadow.toml\"\n{av}"))
            .file("shadow.toml", &shadow_toml),
    );
    let r = send(&gw, &clean_mail("shadowed"));
    assert_eq!(r.code, 250, "{r:?}");
    internal.expect_messages(1);
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "unavailable")]),
        1.0,
        "one message, one (failed) scan"
    );
    assert_eq!(
        m.value("mxguard_antivirus_scan_duration_seconds_count", &[]),
        1.0
    );
}

/// Regression (review): a shadow policy with a clamd of its own counted its scans with
/// the live ones, and warned of what it never did: under `on_failure = "tempfail"` it
/// logged "deferring the message" for a message the live policy accepted.
#[test]
fn a_shadow_scan_of_its_own_is_neither_counted_nor_warned_of() {
    let internal = InternalServer::start();
    let down = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let av = |port: u16, on_failure: &str| {
        format!(
            "[antivirus]\nclamd = \"tcp://127.0.0.1:{port}\"\ntimeout = \"2s\"\non_failure = \"{on_failure}\"\n"
        )
    };
    let shadow_toml = format!(
        "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2\"]\n{}",
        av(down(), "tempfail")
    );
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml(&format!(
                "[policy]\nshadow = \"shadow.toml\"\n{}",
                av(down(), "open")
            ))
            .file("shadow.toml", &shadow_toml),
    );
    let r = send(&gw, &clean_mail("shadowed"));
    assert_eq!(r.code, 250, "{r:?}");
    internal.expect_messages(1);
    let m = scrape(admin_port(&gw));
    assert_eq!(
        m.value("mxguard_antivirus_total", &[("result", "unavailable")]),
        1.0,
        "the live scan only"
    );
    let logs = gw.logs();
    assert!(logs.contains("judging without it"), "{logs}");
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("WARN") && l.contains("deferring the message")),
        "{logs}"
    );
}
