//! Interoperability with real SMTP software: Python's smtplib as a client, swaks with
//! pipelining, and Postfix's smtp-source (load) through the gateway into smtp-sink (as
//! the internal server). Missing programs fail under MXGUARD_INTEROP=1, else skip.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

const PY_CLIENT: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP('127.0.0.1', port, timeout=15)
code, _ = s.ehlo('py.sender.test')
assert code == 250, code
for ext in ('pipelining', 'size', '8bitmime', 'smtputf8', 'enhancedstatuscodes', 'chunking'):
    assert s.has_extn(ext), 'missing ' + ext
assert s.noop()[0] == 250
assert s.verify('postmaster')[0] == 252
msg = (b'From: <py@sender.test>\r\nTo: <a@example.test>\r\nSubject: from python\r\n'
       b'Message-ID: <python-1@test>\r\n\r\nline\r\n.leading dot\r\nend\r\n')
refused = s.sendmail('py@sender.test', ['a@example.test', 'b@elsewhere.test'], msg)
assert list(refused) == ['b@elsewhere.test'], refused
assert refused['b@elsewhere.test'][0] == 550, refused
utf = ('From: <jörg@sender.test>\r\nTo: <müller@example.test>\r\nSubject: Grüße\r\n'
       'Message-ID: <python-utf8@test>\r\n\r\nSchöne Grüße\r\n').encode('utf-8')
s.sendmail('jörg@sender.test', ['müller@example.test'], utf, mail_options=['SMTPUTF8'])
gtube = (b'From: <py@sender.test>\r\nSubject: gtube\r\nMessage-ID: <python-gtube@test>\r\n\r\n'
         b'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n')
try:
    s.sendmail('py@sender.test', ['a@example.test'], gtube)
    raise SystemExit('GTUBE accepted')
except smtplib.SMTPDataError as e:
    assert e.smtp_code == 550, e
try:
    s.sendmail('py@sender.test', ['x@elsewhere.test'], msg)
    raise SystemExit('relay accepted')
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients['x@elsewhere.test'][0] == 550, e
s.quit()
print('python smtplib: ok')
"#;

#[test]
fn python_smtplib_client() {
    let Some(python) = interop_required("python3") else {
        return;
    };
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let out = run_with_timeout(
        Command::new(python)
            .arg("-c")
            .arg(PY_CLIENT)
            .arg(gw.port.to_string()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "python smtplib client failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = internal.expect_message_id("python-1@test");
    assert_eq!(m.rcpt_to, vec!["a@example.test".to_string()]);
    assert!(m.text().contains("\r\n.leading dot\r\n"), "{}", m.text());
    let u = internal.expect_message_id("python-utf8@test");
    assert_eq!(u.mail_from, "jörg@sender.test");
    let (_, msgs) = internal.wait_for(Duration::from_millis(300), |_| false);
    assert!(!msgs
        .iter()
        .any(|m| m.message_id().as_deref() == Some("python-gtube@test")));
}

#[test]
fn swaks_with_pipelining() {
    let Some(swaks) = interop_required("swaks") else {
        return;
    };
    let internal = InternalServer::start();
    let gw = Gateway::start(GatewayConfig::new(&internal));
    let out = run_with_timeout(
        Command::new(&swaks)
            .args(["--server", &format!("127.0.0.1:{}", gw.port)])
            .args(["--from", "swaks@sender.test"])
            .args(["--to", "a@example.test,b@example.test"])
            .args(["--helo", "swaks.sender.test"])
            .arg("--pipeline")
            .args(["--header", "Message-Id: <swaks-1@test>"])
            .args(["--header", "Subject: swaks pipelined"])
            .args(["--body", "hello from swaks"])
            .args(["--timeout", "15"]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PIPELINING"),
        "swaks did not see PIPELINING:\n{stdout}"
    );
    let m = internal.expect_message_id("swaks-1@test");
    assert_eq!(m.rcpt_to.len(), 2, "{:?}", m.rcpt_to);

    // swaks sends exact bytes with --no-data-fixup: a bare-LF smuggling attempt.
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("smuggle.eml");
    fs::write(
        &eml,
        b"From: <swaks@sender.test>\r\nMessage-Id: <swaks-smuggle@test>\r\n\r\nhello\n.\n\
          MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\
          Subject: SMUGGLED\r\n\r\nx\r\n.\r\n",
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(&swaks)
            .args(["--server", &format!("127.0.0.1:{}", gw.port)])
            .args(["--from", "swaks@sender.test", "--to", "a@example.test"])
            .args(["--data", &format!("@{}", eml.display())])
            .arg("--no-data-fixup")
            .args(["--timeout", "15"]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("550 5.6.0"),
        "bare LF not rejected:\n{stdout}"
    );
    let (_, msgs) = internal.wait_for(Duration::from_millis(700), |_| false);
    assert!(
        !msgs.iter().any(|m| m.mail_from.contains("smuggler")),
        "smuggled message relayed: {:?}",
        summarize(&msgs)
    );
}

const PY_EIGHT_BIT: &str = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=15)
msg = ('From: <py@sender.test>\r\nTo: <a@example.test>\r\nSubject: eight bit\r\n'
       'Message-ID: <python-8bit@test>\r\nMIME-Version: 1.0\r\n'
       'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
       'Schöne Grüße aus Köln\r\n.leading dot\r\n').encode('utf-8')
s.sendmail('py@sender.test', ['a@example.test'], msg, mail_options=['BODY=8BITMIME'])
s.quit()
"#;

/// Regression: 8-bit mail went raw to an internal server without 8BITMIME (RFC 6152
/// forbids it). Through Postfix's smtp-sink with `-8`, the body arrives quoted-printable
/// and Python's `email` package reads back the text that was sent.
#[test]
fn eight_bit_mail_reaches_smtp_sink_without_8bitmime_as_quoted_printable() {
    let Some(python) = interop_required("python3") else {
        return;
    };
    let Some(sink) = SmtpSink::start(&["-8"]) else {
        return;
    };
    let gw = Gateway::start(GatewayConfig {
        internal: vec![sink.port],
        ..GatewayConfig::default()
    });
    let out = run_with_timeout(
        Command::new(&python)
            .arg("-c")
            .arg(PY_EIGHT_BIT)
            .arg(gw.port.to_string()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arrived = wait_until(Duration::from_secs(30), || sink.message_ids().len() == 1);
    assert!(arrived, "nothing reached smtp-sink");
    let (path, text) = sink_dumps(&sink.dump).remove(0);
    let raw = fs::read(&path).unwrap();
    let body_at = text.find("\r\n\r\n").or_else(|| text.find("\n\n")).unwrap();
    assert!(raw[body_at..].is_ascii(), "{text}");
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable"),
        "{text}"
    );
    let decoded = run_with_timeout(
        Command::new(&python)
            .arg("-c")
            .arg("import email,sys; m=email.message_from_binary_file(open(sys.argv[1],'rb')); sys.stdout.write(m.get_payload(decode=True).decode('utf-8'))")
            .arg(&path),
        Duration::from_secs(30),
    );
    assert_eq!(
        // smtp-sink ends each dump with an empty line of its own.
        String::from_utf8_lossy(&decoded.stdout)
            .replace("\r\n", "\n")
            .trim_end(),
        "Schöne Grüße aus Köln\n.leading dot",
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}

/// The distinct Message-IDs smtp-sink dumped (each carries smtp-source's unique one).
fn distinct_ids(sink: &SmtpSink) -> BTreeSet<String> {
    sink.message_ids().into_iter().collect()
}

#[test]
fn smtp_source_load_through_gateway_into_smtp_sink() {
    let Some(source) = interop_required("smtp-source") else {
        return;
    };
    const MESSAGES: usize = 500;
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let mut cfg = GatewayConfig::default()
        .limit("max_sessions_per_ip", "100")
        .limit("max_sessions", "200");
    cfg.internal = vec![sink.port];
    let gw = Gateway::start(cfg);
    let started = Instant::now();
    let out = run_with_timeout(
        Command::new(source)
            .args(["-s", "20", "-m", &MESSAGES.to_string(), "-l", "4096"])
            .args(["-t", "user@example.test"])
            .arg(format!("127.0.0.1:{}", gw.port)),
        Duration::from_secs(180),
    );
    let accepted_in = started.elapsed();
    assert!(
        out.status.success(),
        "smtp-source failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Waits on the Message-Ids, not on the files: smtp-sink creates a file before it has
    // written the message into it, and a file counted that early once read as a message
    // without one (499 distinct of 500).
    let all_in = wait_until(Duration::from_secs(120), || {
        distinct_ids(&sink).len() >= MESSAGES
    });
    let delivered_in = started.elapsed();
    let n = sink_dumps(&sink.dump).len();
    let ids = distinct_ids(&sink);
    println!(
        "smtp-source {MESSAGES} x 4096 B, 20 sessions: accepted in {accepted_in:?}, \
         at smtp-sink in {delivered_in:?}; {n} dumped, {} distinct Message-Ids",
        ids.len()
    );
    assert!(
        all_in,
        "only {} distinct messages of {MESSAGES} reached smtp-sink ({n} files)",
        ids.len()
    );
    assert_eq!(ids.len(), MESSAGES, "distinct messages at smtp-sink");
}
