//! The scored filter pipeline end to end over real SMTP: rules files (header, body, uri,
//! meta) and thresholds put messages in each verdict; verdict headers at the internal
//! server; forged verdict headers stripped; quarantine list/release; per-domain
//! thresholds; rule actions; GTUBE.

mod common;

use common::*;

const RULES: &str = r#"# test rules
header SUBJ_WIN     Subject =~ /\bwinner\b/i
describe SUBJ_WIN   Subject announces a winner
score SUBJ_WIN      3.0

body BODY_PILLS     /cheap pills/i
describe BODY_PILLS Sells pills
score BODY_PILLS    6.0

uri URI_BAD         /bad-site\.example/i
describe URI_BAD    Links to the bad site
score URI_BAD       2.5

meta META_WIN_URI   (SUBJ_WIN && URI_BAD)
describe META_WIN_URI Winner subject with the bad link
score META_WIN_URI  5.0

body BIG_SPAM       /zz-reject-me-zz/
score BIG_SPAM      20.0

score DATE_IN_FUTURE_12_XX 2.0

body ACT_DISCARD    /zz-discard-token-zz/
score ACT_DISCARD   0.5
body ACT_TEMPFAIL   /zz-tempfail-token-zz/
score ACT_TEMPFAIL  0.5
# Scored 0 (off, in SpamAssassin's terms) but tied to an action: the action still runs.
body ACT_REJECT     /zz-policy-reject-zz/
score ACT_REJECT    0
body ACT_QUARANTINE /zz-quarantine-token-zz/
score ACT_QUARANTINE 0.5
body NEARLY_TEN     /zz-nearly-ten-zz/
score NEARLY_TEN    9.496
"#;

const POLICY: &str = r#"[policy]
rules_dir = "rules"
gtube = true
tag = 5.0
quarantine = 10.0
reject = 15.0
actions = { ACT_DISCARD = "discard", ACT_TEMPFAIL = "tempfail", ACT_REJECT = "reject", ACT_QUARANTINE = "quarantine" }

[policy.domains."strict.test"]
tag = 1.0
quarantine = 3.0
reject = 5.0

[policy.domains."lenient.test"]
tag = 8.0
quarantine = 25.0
reject = 30.0
"#;

fn start() -> (InternalServer, Gateway) {
    let internal = InternalServer::start();
    let mut cfg = GatewayConfig::new(&internal)
        .toml(POLICY)
        .file("rules/local.cf", RULES);
    cfg.domains = vec![DOMAIN.into(), "strict.test".into(), "lenient.test".into()];
    let gw = Gateway::start(cfg);
    (internal, gw)
}

fn send(gw: &Gateway, rcpt: &str, msg: &[u8]) -> Reply {
    let mut c = SmtpClient::connect_ehlo(gw.port);
    let r = c.send_mail("sender@sender.test", &[rcpt], msg);
    c.quit();
    r
}

/// All values of header `name` in the message's header section (unfolded).
fn headers(m: &Received, name: &str) -> Vec<String> {
    let text = m.text();
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<bool> = None;
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if current == Some(true) {
                out.last_mut().unwrap().push_str(line);
            }
            continue;
        }
        let matches = line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name));
        if matches {
            out.push(line.split_once(':').unwrap().1.trim().to_string());
        }
        current = Some(matches);
    }
    out
}

/// Header names in order.
fn header_names(m: &Received) -> Vec<String> {
    m.text()
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

fn one_header(m: &Received, name: &str) -> String {
    let v = headers(m, name);
    assert_eq!(
        v.len(),
        1,
        "expected exactly one {name} header, got {v:?} in:\n{}",
        m.text()
    );
    v[0].clone()
}

/// Parses `X-Spam-Rules: A=1.00, B=2.00` (or `none`) into (name, score).
fn rules_header(m: &Received) -> Vec<(String, f64)> {
    let v = one_header(m, "X-Spam-Rules");
    if v.trim() == "none" {
        return Vec::new();
    }
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (n, sc) = s
                .split_once('=')
                .unwrap_or_else(|| panic!("bad X-Spam-Rules entry {s:?} in {v:?}"));
            (n.trim().to_string(), sc.trim().parse().unwrap())
        })
        .collect()
}

fn check_score_format(v: &str) -> f64 {
    let (int, frac) = v
        .split_once('.')
        .unwrap_or_else(|| panic!("X-Spam-Score {v:?} is not N.NN"));
    assert!(
        frac.len() == 2 && frac.chars().all(|c| c.is_ascii_digit()) && !int.is_empty(),
        "X-Spam-Score {v:?} is not N.NN"
    );
    v.parse().unwrap()
}

/// Sends a clean marker message and waits for it: everything queued before it has had
/// the same chance to be delivered (no sleeping on a clock).
fn flush_marker(gw: &Gateway, internal: &InternalServer, id: &str) {
    send(
        gw,
        "user@example.test",
        &message(id, "marker", "nothing to see"),
    )
    .expect(250, "2.0.0");
    internal.expect_message_id(id);
}

#[test]
fn accept_verdict_relays_with_status_no() {
    let (internal, gw) = start();
    let r = send(
        &gw,
        "user@example.test",
        &message("clean@t", "lunch", "See you at noon."),
    );
    r.expect(250, "2.0.0");
    let m = internal.expect_message_id("clean@t");
    let status = one_header(&m, "X-Spam-Status");
    assert!(status.starts_with("No"), "X-Spam-Status: {status}");
    assert!(
        status.contains("tag=5")
            && status.contains("quarantine=10")
            && status.contains("reject=15"),
        "thresholds missing from X-Spam-Status: {status}"
    );
    let score = check_score_format(&one_header(&m, "X-Spam-Score"));
    assert_eq!(score, 0.0);
    // Regression (review against GUIDE): with no rule scored the header was left out.
    assert_eq!(one_header(&m, "X-Spam-Rules").trim(), "none");
    one_header(&m, "Authentication-Results");
    let names = header_names(&m);
    assert_eq!(
        names[0], "Received",
        "our Received: must come first: {names:?}"
    );
}

#[test]
fn tag_verdict_relays_with_headers() {
    let (internal, gw) = start();
    let r = send(
        &gw,
        "user@example.test",
        &message("tag@t", "offer", "Buy cheap pills today."),
    );
    r.expect(250, "2.0.0");
    let m = internal.expect_message_id("tag@t");
    let score = check_score_format(&one_header(&m, "X-Spam-Score"));
    assert!((score - 6.0).abs() < 0.001, "score {score}");
    let status = one_header(&m, "X-Spam-Status");
    assert!(status.starts_with("Yes"), "X-Spam-Status: {status}");
    assert!(status.contains("score=6"), "X-Spam-Status: {status}");
    let rules = rules_header(&m);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].0, "BODY_PILLS");
    assert!((rules[0].1 - 6.0).abs() < 0.001);
    // Headers are prepended right after our Received:, before the original ones.
    let names = header_names(&m);
    assert_eq!(names[0], "Received", "{names:?}");
    let pos = |n: &str| {
        names
            .iter()
            .position(|h| h.eq_ignore_ascii_case(n))
            .unwrap_or_else(|| panic!("{n} missing: {names:?}"))
    };
    assert!(pos("X-Spam-Status") < pos("From"), "{names:?}");
    assert!(pos("X-Spam-Score") < pos("From"), "{names:?}");
    assert!(pos("X-Spam-Rules") < pos("From"), "{names:?}");
}

#[test]
fn quarantine_verdict_holds_message_until_release() {
    let (internal, gw) = start();
    // header + uri + meta: 3 + 2.5 + 5 = 10.5 → quarantine.
    let msg = message(
        "quar@t",
        "You are a WINNER",
        "Claim at http://bad-site.example/claim now.",
    );
    let r = send(&gw, "user@example.test", &msg);
    r.expect(250, "");
    let qid = queue_id(&r).unwrap_or_else(|| panic!("no queue id in {r}"));

    // A later clean message arrives; the quarantined one must not have.
    flush_marker(&gw, &internal, "after-quar@t");
    assert!(
        !internal
            .messages()
            .iter()
            .any(|m| m.message_id().as_deref() == Some("quar@t")),
        "quarantined message was relayed"
    );
    assert!(
        gw.spool().join("quarantine").join(&qid).exists()
            || std::fs::read_dir(gw.spool().join("quarantine"))
                .map(|d| d
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(&qid)))
                .unwrap_or(false),
        "nothing for {qid} under spool/quarantine"
    );

    let out = gw.cli(&["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "quarantine list failed: {listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = listing
        .lines()
        .find(|l| l.contains(&qid))
        .unwrap_or_else(|| panic!("{qid} not in quarantine list:\n{listing}"));
    for rule in ["SUBJ_WIN", "URI_BAD", "META_WIN_URI"] {
        assert!(
            line.contains(rule),
            "{rule} missing from list line {line:?}"
        );
    }
    assert!(line.contains("10.50"), "score missing from {line:?}");

    let out = gw.cli(&["quarantine", "release", &qid]);
    assert!(
        out.status.success(),
        "release failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = internal.expect_message_id("quar@t");
    assert!(contains(&m.data, b"bad-site.example"));
    let out = gw.cli(&["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !listing.contains(&qid),
        "released message still listed:\n{listing}"
    );
}

#[test]
fn reject_verdict_answers_550_and_relays_nothing() {
    let (internal, gw) = start();
    let r = send(
        &gw,
        "user@example.test",
        &message("rej@t", "hi", "zz-reject-me-zz"),
    );
    r.expect(550, "5.7.1");
    assert!(
        r.text().contains("rejected as spam") && r.text().contains("20"),
        "reply: {r}"
    );
    flush_marker(&gw, &internal, "after-rej@t");
    assert!(!internal
        .messages()
        .iter()
        .any(|m| m.message_id().as_deref() == Some("rej@t")));
}

#[test]
fn gtube_is_rejected() {
    let (internal, gw) = start();
    let r = send(
        &gw,
        "user@example.test",
        &message("gtube@t", "test", &format!("Hello\n{GTUBE}\n")),
    );
    r.expect(550, "5.7.1");
    flush_marker(&gw, &internal, "after-gtube@t");
    assert!(!internal
        .messages()
        .iter()
        .any(|m| m.message_id().as_deref() == Some("gtube@t")));
}

#[test]
fn forged_verdict_headers_are_replaced() {
    let (internal, gw) = start();
    let forged = "From: Sender <sender@sender.test>\r\n\
        To: <user@example.test>\r\n\
        X-Spam-Status: No, score=-100.0 forged=yes\r\n\
        X-Spam-Score: -100.00\r\n\
        X-Spam-Flag: NO\r\n\
        X-Spam-Level: \r\n\
        x-spam-rules: WHITELISTED=-100\r\n\
        X-Spam-Status: No,\r\n\tfolded=forged\r\n\
        Subject: offer\r\n\
        Message-ID: <forged@t>\r\n\
        \r\n\
        Buy cheap pills today.\r\n";
    send(&gw, "user@example.test", forged.as_bytes()).expect(250, "2.0.0");
    let m = internal.expect_message_id("forged@t");
    let text = m.text();
    assert!(
        !text.contains("forged=yes") && !text.contains("folded=forged"),
        "forged header survived:\n{text}"
    );
    assert!(!text.contains("-100"), "forged score survived:\n{text}");
    assert!(
        !text.contains("WHITELISTED"),
        "forged rules survived:\n{text}"
    );
    let status = one_header(&m, "X-Spam-Status");
    assert!(status.starts_with("Yes"), "X-Spam-Status: {status}");
    assert!(
        !headers(&m, "X-Spam-Flag").iter().any(|v| v == "NO"),
        "forged X-Spam-Flag survived:\n{text}"
    );
    assert!(headers(&m, "X-Spam-Level").iter().all(|v| !v.is_empty()));
    let rules = rules_header(&m);
    assert_eq!(
        rules.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["BODY_PILLS"]
    );
    // Also for a clean message.
    let forged_clean = "From: a@sender.test\r\nX-Spam-Status: Yes, forged\r\n\
        Subject: hi\r\nMessage-ID: <forged2@t>\r\n\r\nhello\r\n";
    send(&gw, "user@example.test", forged_clean.as_bytes()).expect(250, "2.0.0");
    let m = internal.expect_message_id("forged2@t");
    let status = one_header(&m, "X-Spam-Status");
    assert!(status.starts_with("No"), "X-Spam-Status: {status}");
}

#[test]
fn per_domain_thresholds_override_the_global_ones() {
    let (internal, gw) = start();
    // 6 points: tag for example.test, reject (≥ 5) for strict.test.
    let r = send(
        &gw,
        "user@strict.test",
        &message("strict@t", "offer", "Buy cheap pills today."),
    );
    r.expect(550, "5.7.1");
    let r = send(
        &gw,
        "user@example.test",
        &message("lenient@t", "offer", "Buy cheap pills today."),
    );
    r.expect(250, "2.0.0");
    let m = internal.expect_message_id("lenient@t");
    assert!(one_header(&m, "X-Spam-Status").starts_with("Yes"));
    // 3 points: accept for example.test, quarantine (≥ 3) for strict.test.
    let r = send(
        &gw,
        "user@strict.test",
        &message("strict-q@t", "you are a winner", "hello"),
    );
    r.expect(250, "");
    flush_marker(&gw, &internal, "after-strict@t");
    let msgs = internal.messages();
    assert!(
        !msgs
            .iter()
            .any(|m| m.message_id().as_deref() == Some("strict-q@t")),
        "strict.test message at 3 points should be quarantined, was relayed"
    );
    let out = gw.cli(&["quarantine", "list"]);
    let qid = queue_id(&r).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&qid),
        "{qid} not quarantined: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Its X-Spam-Status (when tagged) names the domain's thresholds.
    let r = send(
        &gw,
        "user@strict.test",
        &message("strict-tag@t", "hi", "http://bad-site.example/ only"),
    );
    r.expect(250, "2.0.0");
    let m = internal.expect_message_id("strict-tag@t");
    let status = one_header(&m, "X-Spam-Status");
    assert!(
        status.starts_with("Yes") && status.contains("tag=1") && status.contains("reject=5"),
        "X-Spam-Status for strict.test: {status}"
    );
}

/// Regression (review): a domain's thresholds were only ever taken where stricter than
/// the defaults, so a domain configured as more lenient was judged by the defaults even
/// when it was the only recipient domain.
#[test]
fn a_domain_may_be_more_lenient_than_the_defaults() {
    let (internal, gw) = start();
    let spam = || message("big@t", "offer", "zz-reject-me-zz");
    // 20 points: reject (≥ 15) by the defaults, tag (≥ 8, < 25) for lenient.test.
    send(&gw, "user@example.test", &spam()).expect(550, "5.7.1");
    send(&gw, "user@lenient.test", &spam()).expect(250, "2.0.0");
    let m = internal.expect_message_id("big@t");
    let status = one_header(&m, "X-Spam-Status");
    assert!(
        status.starts_with("Yes") && status.contains("reject=30"),
        "X-Spam-Status for lenient.test: {status}"
    );
    // For both domains at once, the strictest: the defaults reject it.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "sender@sender.test",
        &["user@lenient.test", "user@example.test"],
        &spam(),
    )
    .expect(550, "5.7.1");
    c.quit();
}

#[test]
fn rule_actions_override_the_score() {
    let (internal, gw) = start();
    let r = send(
        &gw,
        "user@example.test",
        &message("act-rej@t", "hi", "zz-policy-reject-zz"),
    );
    r.expect(550, "5.7.1");
    assert!(
        r.text().contains("rejected by policy") && r.text().contains("ACT_REJECT"),
        "reply: {r}"
    );

    let r = send(
        &gw,
        "user@example.test",
        &message("act-temp@t", "hi", "zz-tempfail-token-zz"),
    );
    r.expect(451, "4.7.1");

    let r = send(
        &gw,
        "user@example.test",
        &message("act-disc@t", "hi", "zz-discard-token-zz"),
    );
    assert_eq!(r.code, 250, "discard must look accepted: {r}");

    let r = send(
        &gw,
        "user@example.test",
        &message("act-quar@t", "hi", "zz-quarantine-token-zz"),
    );
    assert_eq!(r.code, 250, "quarantine must look accepted: {r}");
    let quar_id = queue_id(&r);

    flush_marker(&gw, &internal, "after-actions@t");
    let ids: Vec<Option<String>> = internal.messages().iter().map(|m| m.message_id()).collect();
    for id in ["act-rej@t", "act-temp@t", "act-disc@t", "act-quar@t"] {
        assert!(
            !ids.contains(&Some(id.to_string())),
            "{id} was relayed; got {ids:?}"
        );
    }
    if let Some(qid) = quar_id {
        let out = gw.cli(&["quarantine", "list"]);
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains(&qid), "{qid} not quarantined:\n{listing}");
    }
    // The discarded message is in neither the queue nor the quarantine.
    let out = gw.cli(&["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .filter(|l| l.contains("ACT_DISCARD"))
            .count()
            == 0,
        "discarded message quarantined:\n{listing}"
    );
    // The same session goes on after a tempfail/reject at end of data.
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &message("s1@t", "hi", "zz-tempfail-token-zz"),
    )
    .expect(451, "4.7.1");
    c.send_mail(
        "sender@sender.test",
        &["user@example.test"],
        &message("s2@t", "hi", "fine"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("s2@t");
}

#[test]
fn gtube_can_be_rescored_in_the_rules() {
    let internal = InternalServer::start();
    let gw = Gateway::start(
        GatewayConfig::new(&internal)
            .toml("[policy]\nrules_dir = \"rules\"\ngtube = true\n")
            .file("rules/local.cf", "score GTUBE 6.0\n"),
    );
    let r = send(
        &gw,
        "user@example.test",
        &message("gtube-rescored@t", "test", GTUBE),
    );
    r.expect(250, "2.0.0");
    let m = internal.expect_message_id("gtube-rescored@t");
    let status = one_header(&m, "X-Spam-Status");
    assert!(status.starts_with("Yes"), "X-Spam-Status: {status}");
    let rules = rules_header(&m);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].0, "GTUBE");
    assert!((rules[0].1 - 6.0).abs() < 0.001, "{rules:?}");
}

/// Also a regression: `quarantine show` printed the message through a lossy UTF-8
/// conversion, so a Latin-1 byte came out as U+FFFD: the copy an operator saved or
/// forwarded was not the message held.
#[test]
fn quarantine_show_and_delete() {
    let (internal, gw) = start();
    let mut msg = message(
        "quar-del@t",
        "You are a WINNER",
        "Claim at http://bad-site.example/claim now.",
    );
    msg.extend_from_slice(b"caf\xe9 in Latin-1\r\n");
    let r = send(&gw, "user@example.test", &msg);
    r.expect(250, "");
    let qid = queue_id(&r).unwrap_or_else(|| panic!("no queue id in {r}"));
    let out = gw.cli(&["quarantine", "show", &qid]);
    assert!(
        out.stdout
            .windows(b"caf\xe9 in Latin-1".len())
            .any(|w| w == b"caf\xe9 in Latin-1"),
        "the 8-bit line is not shown byte for byte"
    );
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "show failed: {shown}");
    assert!(shown.contains("quar-del@t"), "message not shown:\n{shown}");
    assert!(shown.contains("META_WIN_URI"), "rules not shown:\n{shown}");
    assert!(shown.contains("quarantine"), "verdict not shown:\n{shown}");

    let out = gw.cli(&["quarantine", "delete", &qid]);
    assert!(
        out.status.success(),
        "delete failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.cli(&["quarantine", "list"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&qid));
    // Releasing a deleted id fails and relays nothing.
    let out = gw.cli(&["quarantine", "release", &qid]);
    assert!(
        !out.status.success(),
        "release of a deleted message succeeded"
    );
    flush_marker(&gw, &internal, "after-del@t");
    assert!(!internal
        .messages()
        .iter()
        .any(|m| m.message_id().as_deref() == Some("quar-del@t")));
}

/// Regression (review): the Date was measured against the topmost `Received` the client
/// wrote (our own hop is added when the message is stored), so a message with none hid a
/// Date years ahead. In a session the arrival is now.
#[test]
fn a_date_years_ahead_is_measured_against_the_real_arrival() {
    let (internal, gw) = start();
    let msg = b"From: a@sender.test\r\nTo: user@example.test\r\nSubject: later\r\n\
                Date: Mon, 1 Jan 2035 00:00:00 +0000\r\nMessage-ID: <future@test>\r\n\r\nbody\r\n";
    send(&gw, &format!("user@{DOMAIN}"), msg).expect(250, "2.0.0");
    let m = internal.expect_message_id("future@test");
    let rules = headers(&m, "X-Spam-Rules").join(",");
    assert!(rules.contains("DATE_IN_FUTURE_12_XX"), "{rules}");
}

/// Regression (review): `quarantine list` wrote a quarantined message's score rounded to
/// nearest (`10.00` for 9.996), while `quarantine show`, `queue show`, `scan` and the
/// headers write it rounded down: one score writer everywhere.
#[test]
fn quarantine_list_writes_the_score_rounded_down() {
    let (_internal, gw) = start();
    let msg = message(
        "nearly-ten@t",
        "hello",
        "zz-quarantine-token-zz and zz-nearly-ten-zz",
    );
    let r = send(&gw, "user@example.test", &msg);
    r.expect(250, "");
    let qid = queue_id(&r).unwrap_or_else(|| panic!("no queue id in {r}"));
    let out = gw.cli(&["quarantine", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let line = listing
        .lines()
        .find(|l| l.contains(&qid))
        .unwrap_or_else(|| panic!("{qid} not in quarantine list:\n{listing}"));
    assert!(line.contains(" 9.99 "), "{line:?}");
}
