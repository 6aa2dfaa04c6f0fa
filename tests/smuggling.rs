//! SMTP smuggling (GUIDE §6): only CRLF.CRLF ends DATA. For every end-of-data lookalike,
//! a smuggled MAIL/RCPT/DATA after it must never become a second message at the internal
//! server — neither by the gateway ending DATA early nor by it forwarding the lookalike.
//!
//! Each variant runs in both bare-line-ending modes, through DATA and inside a BDAT chunk;
//! the same variants inside a TLS session are in `tests/starttls.rs`.
//!
//! The internal test server is deliberately lenient (any `.` line up to LF ends its DATA),
//! so whatever the gateway forwards badly turns into a visible second message there.

mod common;

use common::*;
use std::time::Duration;

const CARRIER_ID: &str = "carrier@sender.test";
const SMUGGLED: &str = "MAIL FROM:<smuggler@evil.test>\r\n\
RCPT TO:<victim@example.test>\r\n\
DATA\r\n\
From: <smuggler@evil.test>\r\n\
To: <victim@example.test>\r\n\
Subject: SMUGGLED\r\n\
Message-ID: <smuggled@evil.test>\r\n\
\r\n\
smuggled body\r\n";

fn carrier(variant: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(b"From: <sender@sender.test>\r\n");
    p.extend_from_slice(b"To: <user@example.test>\r\n");
    p.extend_from_slice(b"Subject: carrier\r\n");
    p.extend_from_slice(format!("Message-ID: <{CARRIER_ID}>\r\n").as_bytes());
    p.extend_from_slice(b"\r\nhello");
    p.extend_from_slice(variant);
    p.extend_from_slice(SMUGGLED.as_bytes());
    p
}

fn start(mode: &str) -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal);
    cfg.bare_line_ending = mode.into();
    let gw = Gateway::start(cfg);
    (internal, gw)
}

/// Sends a clean message in a new session and waits for it, so that anything the
/// gateway relays from the test before it has had time to arrive too.
fn sentinel(internal: &InternalServer, gw: &Gateway) -> Vec<Received> {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "sentinel@sender.test",
        &["user@example.test"],
        &message("sentinel@test", "sentinel", "after"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("sentinel@test");
    let (_, msgs) = internal.wait_for(Duration::from_millis(700), |_| false);
    msgs.into_iter()
        .filter(|m| m.message_id().as_deref() != Some("sentinel@test"))
        .collect()
}

fn assert_nothing_smuggled(msgs: &[Received]) {
    for m in msgs {
        assert!(
            m.mail_from != "smuggler@evil.test"
                && !m.rcpt_to.iter().any(|r| r.contains("victim"))
                && m.message_id().as_deref() != Some("smuggled@evil.test"),
            "SMUGGLED MESSAGE reached the internal server: {:?}",
            summarize(msgs)
        );
        assert!(
            !has_bare_cr_or_lf(&m.raw),
            "bare CR/LF forwarded to the internal server: {:?}",
            String::from_utf8_lossy(&m.raw)
        );
    }
}

/// DATA with `variant` + smuggled commands + the real CRLF.CRLF. Returns the final reply,
/// after checking that no extra reply (to smuggled commands) follows it.
fn send_via_data(gw: &Gateway, variant: &[u8]) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    c.cmd("DATA").expect(354, "");
    let mut payload = carrier(variant);
    payload.extend_from_slice(b"\r\n.\r\n");
    c.send(&payload);
    let r = c.read_reply();
    // The very next reply must answer our VRFY: a reply to a smuggled command would come first.
    let next = c.cmd("VRFY probe");
    assert!(
        next.code == 252,
        "extra reply after end of data (smuggled commands were executed): final {r}, then {next}"
    );
    c.quit();
    r
}

/// The same payload as one `BDAT LAST` chunk (octets, no end-of-data marker at all): the
/// gateway must apply the same bare-line-ending policy and, when it relays, dot-stuff so
/// the lookalike never ends the internal server's DATA.
fn send_via_bdat(gw: &Gateway, variant: &[u8]) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let mut body = carrier(variant);
    body.extend_from_slice(b"\r\n");
    let mut out = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    c.send(&out);
    let r = c.read_reply();
    let next = c.cmd("VRFY probe");
    assert!(
        next.code == 252,
        "extra reply after BDAT LAST (chunk octets were executed): final {r}, then {next}"
    );
    c.quit();
    r
}

type Send = fn(&Gateway, &[u8]) -> Reply;

fn run_reject(variant: &[u8], send: Send) {
    let (internal, gw) = start("reject");
    let r = send(&gw, variant);
    r.expect(550, "5.6.0");
    let msgs = sentinel(&internal, &gw);
    assert_nothing_smuggled(&msgs);
    assert!(
        msgs.is_empty(),
        "rejected message still relayed: {:?}",
        summarize(&msgs)
    );
}

fn run_normalize(variant: &[u8], send: Send) {
    let (internal, gw) = start("normalize");
    let r = send(&gw, variant);
    if variant.contains(&0) {
        // NUL is never normalised away.
        r.expect(550, "5.6.0");
        let msgs = sentinel(&internal, &gw);
        assert_nothing_smuggled(&msgs);
        assert!(msgs.is_empty(), "relayed: {:?}", summarize(&msgs));
        return;
    }
    r.expect(250, "2.0.0");
    internal.expect_message_id(CARRIER_ID);
    let msgs = sentinel(&internal, &gw);
    assert_nothing_smuggled(&msgs);
    assert_eq!(
        msgs.len(),
        1,
        "expected exactly the one carrier message: {:?}",
        summarize(&msgs)
    );
    let m = &msgs[0];
    assert_eq!(m.mail_from, "sender@sender.test");
    assert_eq!(m.rcpt_to, vec!["user@example.test".to_string()]);
    let text = m.text();
    assert!(
        text.contains("MAIL FROM:<smuggler@evil.test>") && text.contains("Subject: SMUGGLED"),
        "the smuggled text must stay inside the one message:\n{text}"
    );
}

macro_rules! smuggling_variants {
    ($($name:ident => $variant:expr,)*) => {
        mod reject_mode {
            $(
                #[test]
                fn $name() {
                    super::run_reject($variant, super::send_via_data);
                }
            )*
        }
        mod normalize_mode {
            $(
                #[test]
                fn $name() {
                    super::run_normalize($variant, super::send_via_data);
                }
            )*
        }
        mod bdat_reject_mode {
            $(
                #[test]
                fn $name() {
                    super::run_reject($variant, super::send_via_bdat);
                }
            )*
        }
        mod bdat_normalize_mode {
            $(
                #[test]
                fn $name() {
                    super::run_normalize($variant, super::send_via_bdat);
                }
            )*
        }
    };
}

smuggling_variants! {
    lf_dot_lf => b"\n.\n",
    lf_dot_cr => b"\n.\r",
    cr_dot_lf => b"\r.\n",
    cr_dot_cr => b"\r.\r",
    lf_dot_crlf => b"\n.\r\n",
    cr_dot_crlf => b"\r.\r\n",
    crlf_nul_dot_crlf => b"\r\n\x00.\r\n",
    crlf_dot_cr_crlf => b"\r\n.\r\r\n",
}

/// A BDAT chunk is taken as octets: an embedded CRLF.CRLF does not end anything, and the
/// relay must dot-stuff it so the internal server does not see an end of data either.
#[test]
fn bdat_chunk_with_end_marker_is_one_message() {
    let (internal, gw) = start("reject");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let mut body = carrier(b"\r\n.\r\n");
    body.extend_from_slice(b"the end\r\n");
    let mut out = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    c.send(&out);
    c.read_reply().expect(250, "2.0.0");
    c.cmd("VRFY probe").expect(252, "2.5.0");
    c.quit();
    internal.expect_message_id(CARRIER_ID);
    let msgs = sentinel(&internal, &gw);
    assert_nothing_smuggled(&msgs);
    assert_eq!(msgs.len(), 1, "{:?}", summarize(&msgs));
    assert!(
        msgs[0].text().contains("Subject: SMUGGLED") && msgs[0].text().ends_with("the end\r\n"),
        "BDAT content cut short at the internal server:\n{}",
        msgs[0].text()
    );
}

/// Bare line endings arriving through BDAT are never forwarded either.
fn bdat_bare_lf(mode: &str) {
    let (internal, gw) = start(mode);
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<user@example.test>").expect(250, "");
    let mut body = carrier(b"\n.\n");
    body.extend_from_slice(b"the end\r\n");
    let mut out = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    c.send(&out);
    let r = c.read_reply();
    c.cmd("VRFY probe").expect(252, "2.5.0");
    c.quit();
    if mode == "reject" {
        r.expect(550, "5.6.0");
    } else {
        r.expect(250, "2.0.0");
        internal.expect_message_id(CARRIER_ID);
    }
    let msgs = sentinel(&internal, &gw);
    assert_nothing_smuggled(&msgs);
    assert!(msgs.len() <= 1, "{:?}", summarize(&msgs));
}

#[test]
fn bdat_bare_lf_dot_reject_mode() {
    bdat_bare_lf("reject");
}

#[test]
fn bdat_bare_lf_dot_normalize_mode() {
    bdat_bare_lf("normalize");
}

/// A refused BDAT still announces a chunk: its octets must be skipped, not read as commands.
#[test]
fn refused_bdat_chunk_is_not_executed() {
    let (internal, gw) = start("reject");
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.cmd("MAIL FROM:<sender@sender.test>").expect(250, "");
    c.cmd("RCPT TO:<nobody@elsewhere.test>")
        .expect(550, "5.7.1");
    let smuggled = b"RSET\r\nMAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.test>\r\nBDAT 5 LAST\r\nhello";
    let mut out = format!("BDAT {} LAST\r\n", smuggled.len()).into_bytes();
    out.extend_from_slice(smuggled);
    c.send(&out);
    let r = c.read_reply();
    assert!(r.code >= 500, "BDAT without recipients answered {r}");
    c.cmd("VRFY probe").expect(252, "2.5.0");
    c.quit();
    let msgs = sentinel(&internal, &gw);
    assert_nothing_smuggled(&msgs);
    assert!(msgs.is_empty(), "{:?}", summarize(&msgs));
}
