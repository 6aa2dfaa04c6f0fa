//! Rules and built-in symbols of the shipped rule set (`rules/`) that read trace headers
//! (Received, Date), through `mxguard scan` with the shipped rules and no classifier: each
//! must fire on the form it is written for and stay quiet on the look-alikes that
//! legitimate mail carries.

mod common;

use common::*;
use std::fs;
use std::path::Path;

/// A message whose only routing header is `received` (one hop, as written by the relay).
fn message_via(received: &str) -> String {
    format!(
        "Received: {received}\r\n\tby mx.relay.example (8.11.6/8.11.6) with ESMTP id g8; \
         Mon, 29 Jul 2002 12:21:13 -0700\r\n\
         From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: minutes\r\n\
         Date: Mon, 29 Jul 2002 12:21:13 -0700\r\nMessage-ID: <1@example.org>\r\n\r\n\
         The minutes of the meeting are below.\r\n"
    )
}

/// Writes `mxguard.toml` in `root`: the shipped rules, the classifier off.
fn write_config(root: &Path) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    fs::write(
        root.join("mxguard.toml"),
        format!(
            "[relay]\ndomains = [\"example.test\"]\ninternal = [\"127.0.0.1:2\"]\n\
             [spool]\ndir = \"spool\"\n[policy]\nrules_dir = {:?}\n[classifier]\nenabled = false\n",
            rules.to_str().unwrap()
        ),
    )
    .unwrap();
}

/// The rules each file hits, scanned with the shipped rules and the classifier off.
fn hits(messages: &[(&str, String)]) -> Vec<(String, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_config(root);
    fs::create_dir(root.join("mail")).unwrap();
    for (name, text) in messages {
        fs::write(root.join("mail").join(name), text).unwrap();
    }
    let out = run_mxguard(
        root,
        &["scan", "--json", "mail", "--config", "mxguard.toml"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: Vec<(String, Vec<String>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let file = v["file"].as_str().unwrap().rsplit('/').next().unwrap();
            (file.to_string(), scan_rules(&v))
        })
        .collect();
    found.sort();
    found
}

/// The rules `hits` found in the file `name`.
fn rules_of<'a>(found: &'a [(String, Vec<String>)], name: &str) -> &'a [String] {
    &found
        .iter()
        .find(|(file, _)| file == name)
        .unwrap_or_else(|| panic!("{name} not scanned: {found:?}"))
        .1
}

/// The rules `hits` found in the file `name` whose names start with `prefix`.
fn rules_starting<'a>(
    found: &'a [(String, Vec<String>)],
    name: &str,
    prefix: &str,
) -> Vec<&'a str> {
    rules_of(found, name)
        .iter()
        .map(String::as_str)
        .filter(|r| r.starts_with(prefix))
        .collect()
}

#[test]
fn rcvd_numeric_helo_fires_on_a_bare_public_address_greeting_only() {
    let cases = [
        // Ratware through an open relay: the greeting names an address, not a host.
        ("bare-ip", "from 82.60.152.190 ([82.60.152.190])", true),
        (
            "bare-ip-other",
            "from 210.99.184.3 (unknown [210.100.202.125])",
            true,
        ),
        // An address literal in brackets is what RFC 5321 asks for.
        (
            "literal",
            "from [82.60.152.190] (dsl.example.net [82.60.152.190])",
            false,
        ),
        // A host behind NAT naming itself by its LAN address, a filter on localhost.
        (
            "lan-helo",
            "from 192.168.1.2 (smtp.example.edu [216.204.12.219])",
            false,
        ),
        ("localhost", "from 10.0.0.7 (localhost [127.0.0.1])", false),
        // qmail writes the greeting after the address, in its own format.
        (
            "qmail",
            "from 65.189.7.13 (HELO alumni.example.edu) (209.228.33.241)",
            false,
        ),
        (
            "named",
            "from mail.example.org (mail.example.org [198.51.100.7])",
            false,
        ),
    ];
    let messages: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, hop, _)| (*name, message_via(hop)))
        .collect();
    let found = hits(&messages);
    assert_eq!(found.len(), cases.len(), "{found:?}");
    for (name, _, expected) in cases {
        assert_eq!(
            rules_of(&found, name)
                .iter()
                .any(|r| r == "RCVD_NUMERIC_HELO"),
            expected,
            "{name}: {found:?}"
        );
    }
}

#[test]
fn a_date_far_from_the_delivery_hop_scores_and_a_near_one_does_not() {
    let hop = "from mail.example.org (mail.example.org [198.51.100.7])";
    let dated = |date: &str| {
        message_via(hop).replace(
            "Mon, 29 Jul 2002 12:21:13 -0700\r\nMessage",
            &format!("{date}\r\nMessage"),
        )
    };
    let messages = [
        ("minutes-before", dated("Mon, 29 Jul 2002 12:15:00 -0700")),
        ("hours-ahead", dated("Mon, 29 Jul 2002 19:21:13 -0700")),
        ("days-ahead", dated("Fri, 2 Aug 2002 12:21:13 -0700")),
        ("weeks-behind", dated("Mon, 1 Jul 2002 12:21:13 -0700")),
        ("tm-year-bug", dated("Sat, 02 Feb 0102 11:39:51 +0200")),
    ];
    let found = hits(&messages);
    let dates = |name: &str| rules_starting(&found, name, "DATE_IN_");
    assert!(dates("minutes-before").is_empty(), "{found:?}");
    assert_eq!(dates("hours-ahead"), ["DATE_IN_FUTURE_03_12"]);
    assert_eq!(dates("days-ahead"), ["DATE_IN_FUTURE_12_XX"]);
    assert_eq!(dates("weeks-behind"), ["DATE_IN_PAST_07D"]);
    assert_eq!(dates("tm-year-bug"), ["DATE_IN_PAST_07D"]);
}

/// In collected mail a message the sender sent without a Message-ID carries the one its MX
/// made from the MX's queue id; it reads as at the gateway, where it has none.
#[test]
fn a_message_id_the_receiving_mx_made_counts_as_missing() {
    let with_id = |hop: &str, id: &str| {
        message_via(hop)
            .replace("id g8;", "id g6TJLDQ21542;")
            .replace("Message-ID: <1@example.org>", &format!("Message-ID: {id}"))
    };
    let remote = "from mail.example.org (mail.example.org [198.51.100.7])";
    let local = "(from alice@localhost)";
    let messages = [
        (
            "mx-made",
            with_id(remote, "<200207291921.g6TJLDQ21542@mx.relay.example>"),
        ),
        (
            "senders-own",
            with_id(remote, "<3D48C4C1.CE967A1E@example.org>"),
        ),
        // Made on the MX host for mail that began there (cron, a local user's mail).
        (
            "local-submission",
            with_id(local, "<200207291921.g6TJLDQ21542@mx.relay.example>"),
        ),
        (
            "none",
            message_via(remote).replace("Message-ID: <1@example.org>\r\n", ""),
        ),
    ];
    let found = hits(&messages);
    let missing = |name: &str| rules_of(&found, name).iter().any(|r| r == "MISSING_MSGID");
    assert!(missing("mx-made"), "{found:?}");
    assert!(!missing("senders-own"), "{found:?}");
    assert!(!missing("local-submission"), "{found:?}");
    assert!(missing("none"), "{found:?}");
}

#[test]
fn quoted_printable_written_against_rfc_2045_scores() {
    let qp = |body: &str| {
        message_via("from mail.example.org (mail.example.org [198.51.100.7])").replace(
            "Message-ID: <1@example.org>\r\n\r\nThe minutes of the meeting are below.\r\n",
            &format!(
                "Message-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=iso-8859-1\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n{body}\r\n"
            ),
        )
    };
    let messages = [
        (
            "mail-program",
            qp("The minutes =E0 la carte, 2 =3D 1=2E\r\nsoft=\r\nbreak"),
        ),
        (
            "one-line",
            qp(&"The minutes of the meeting are below. ".repeat(5)),
        ),
        (
            "escaped",
            qp("=22Free=22 m=2Eoney, write to info=40example=2Ecom"),
        ),
    ];
    let found = hits(&messages);
    let shape = |name: &str| rules_starting(&found, name, "MIME_QP_");
    assert!(shape("mail-program").is_empty(), "{found:?}");
    assert_eq!(shape("one-line"), ["MIME_QP_LONG_LINE"]);
    assert_eq!(shape("escaped"), ["MIME_QP_NEEDLESS"]);
}

#[test]
fn forged_webmail_rcvd_fires_when_the_provider_is_not_on_the_path() {
    let from = |addr: &str, hop: &str, extra: &str| {
        message_via(hop)
            .replace(
                "From: Alice <alice@example.org>",
                &format!("From: Alice <{addr}>"),
            )
            .replace("Subject: minutes", &format!("{extra}Subject: minutes"))
    };
    let ratware = "from unknown (dsl.example.net [203.0.113.9])";
    let hotmail = "from hotmail.com (bay1-f2.bay1.hotmail.com [65.54.245.2])";
    let outlook = "from EUR01-VE1-obe.outbound.protection.outlook.com (mail-ve1eur01.outbound.protection.outlook.com [40.107.14.1])";
    let yahoo = "from web21405.mail.yahoo.com (web21405.mail.yahoo.com [216.136.232.75])";
    let cases = [
        (
            "hotmail-forged",
            from("jeff@hotmail.com", ratware, ""),
            true,
        ),
        ("yahoo-forged", from("ann@yahoo.com", ratware, ""), true),
        ("aol-forged", from("bo@aol.com", ratware, ""), true),
        ("hotmail-real", from("jeff@hotmail.com", hotmail, ""), false),
        // Today's Hotmail leaves through Outlook.com's relays.
        (
            "hotmail-outlook",
            from("jeff@hotmail.com", outlook, ""),
            false,
        ),
        ("yahoo-real", from("ann@yahoo.com", yahoo, ""), false),
        // A list re-sends the post with its own chain.
        (
            "via-list",
            from(
                "jeff@hotmail.com",
                ratware,
                "List-Id: <talk.lists.example.org>\r\n",
            ),
            false,
        ),
        (
            "via-yahoo-groups",
            from(
                "jeff@hotmail.com",
                ratware,
                "Mailing-List: list talk@yahoogroups.com; contact talk-owner@yahoogroups.com\r\n",
            ),
            false,
        ),
        // Not a provider the rule knows; gmail.com is not mail.com either.
        ("other-domain", from("jeff@example.org", ratware, ""), false),
        ("gmail", from("jeff@gmail.com", ratware, ""), false),
    ];
    let messages: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, text, _)| (*name, text.clone()))
        .collect();
    let found = hits(&messages);
    assert_eq!(found.len(), cases.len(), "{found:?}");
    for (name, _, expected) in &cases {
        assert_eq!(
            rules_of(&found, name)
                .iter()
                .any(|r| r == "FORGED_WEBMAIL_RCVD"),
            *expected,
            "{name}: {found:?}"
        );
    }
}

/// `tune.py fit` may take a classifier band below zero; the parser disables a negative score
/// without `tflags nice`, so the gateway would score 0 where the fit counted the band
/// negative (BAYES_40 and BAYES_50 were, until the fit wrote the flag). Every score the
/// shipped files set must be one the gateway applies.
#[test]
fn every_shipped_score_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let out = run_mxguard(dir.path(), &["check", "--config", "mxguard.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rules from"), "{stdout}");
    let disabled: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("rule disabled") || line.contains("99-scores.cf"))
        .collect();
    assert!(disabled.is_empty(), "{disabled:#?}");
}

/// Regression (review of the rules): `HDR_ODD_CASE` was a `full` rule, so a line of the
/// body such as `TO: All staff` counted as a header in odd case; `HYPE_CALL_TOLL_FREE` and
/// `OBFU_LEET_WORD` began with `\b` before `(` and `$`, so `(800) 555-1234` and ` $ex `
/// never matched those branches.
#[test]
fn shipped_rules_read_what_they_describe() {
    let body = |text: &str| {
        format!(
            "From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: minutes\r\n\
             Date: Mon, 29 Jul 2002 12:21:13 -0700\r\nMessage-ID: <1@example.org>\r\n\r\n{text}\r\n"
        )
    };
    let odd_header = body("Hello.").replacen("Subject:", "SUBJECT:", 1);
    let found = hits(&[
        (
            "memo",
            body("TO: All staff\r\nDATE: 05/01/2024\r\nThe meeting is moved."),
        ),
        ("odd", odd_header),
        ("toll", body("For details ring (800) 555-1234 any day.")),
        ("leet", body("Hot $ex pictures here.")),
    ]);
    assert!(
        !rules_of(&found, "memo").iter().any(|r| r == "HDR_ODD_CASE"),
        "{found:?}"
    );
    assert!(
        rules_of(&found, "odd").iter().any(|r| r == "HDR_ODD_CASE"),
        "{found:?}"
    );
    assert!(
        rules_of(&found, "toll")
            .iter()
            .any(|r| r == "HYPE_CALL_TOLL_FREE"),
        "{found:?}"
    );
    assert!(
        rules_of(&found, "leet")
            .iter()
            .any(|r| r == "OBFU_LEET_WORD"),
        "{found:?}"
    );
}
