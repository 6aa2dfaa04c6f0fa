//! Unit tests of the audit: findings from MX sets, probe results and fingerprints; the JSON
//! shape; exit codes; the small parsers.

use super::dns::{ip_literal, AddressLookup, MxKind, MxSet, Target};
use super::findings::{self, front_tier_of, FrontTier};
use super::fingerprint::{parse_policy_response, AdminFingerprint, FetchError};
use super::probe::{self, HostProbe, Outcome, Session, Stage, StepResult};
use super::report::{self, Report};
use super::*;
use crate::tier::http::HttpError;
use std::net::{IpAddr, Ipv4Addr};

fn target(preference: u16, host: &str) -> Target {
    Target {
        preference,
        host: host.to_owned(),
        cname: None,
        ip_literal: false,
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        lookup: AddressLookup::Found,
    }
}

fn published(targets: Vec<Target>) -> MxSet {
    MxSet {
        kind: MxKind::Published,
        null_mixed: false,
        targets,
    }
}

fn step(outcome: Outcome, stage: Stage, reply: &str) -> Option<StepResult> {
    Some(StepResult {
        outcome,
        stage,
        reply: Some(reply.to_owned()),
        error: None,
    })
}

/// A well-run MX: TLS, and every probe refused where it should be.
fn good_host(target: &str) -> HostProbe {
    HostProbe {
        target: target.to_owned(),
        address: "127.0.0.1:25".parse().unwrap_or_else(|_| unreachable!()),
        session: Session::Open {
            banner: "220 mx.example.test ESMTP".into(),
            esmtp: true,
            starttls_offered: true,
            tls: true,
        },
        unknown_recipient: step(Outcome::Refused, Stage::Rcpt, "550 5.1.1 no such user"),
        relay: step(Outcome::Refused, Stage::Rcpt, "550 5.7.1 relay denied"),
        gtube: step(Outcome::Refused, Stage::EndOfData, "550 5.7.1 spam"),
    }
}

fn fingerprint(name: &str, fp: Option<&str>) -> AdminFingerprint {
    AdminFingerprint {
        name: name.to_owned(),
        address: "127.0.0.1:9425".parse().unwrap_or_else(|_| unreachable!()),
        fingerprint: fp.map(str::to_owned),
        error: fp.is_none().then(|| "connection refused".to_owned()),
    }
}

fn kinds(found: &[Finding]) -> Vec<&'static str> {
    found.iter().map(|f| f.kind.name()).collect()
}

fn report(mx: MxSet, hosts: Vec<HostProbe>, fingerprints: Vec<AdminFingerprint>) -> Report {
    let findings = findings::all("example.test", &mx, &hosts, &[], &fingerprints);
    Report {
        domain: "example.test".into(),
        resolver: "127.0.0.1:53".into(),
        port: 25,
        rcpt: "postmaster@example.test".into(),
        unknown_rcpt: "mxguard-audit-x@example.test".into(),
        front_tier: findings::front_tier(&mx),
        mx,
        hosts,
        apex: Vec::new(),
        fingerprints,
        findings,
    }
}

#[test]
fn front_tier_is_the_lowest_repeated_preference() {
    assert_eq!(
        front_tier_of(&[10, 10, 20]),
        FrontTier::Equal {
            preference: 10,
            hosts: 2
        }
    );
    assert_eq!(
        front_tier_of(&[20, 10, 15, 10, 15]),
        FrontTier::Equal {
            preference: 10,
            hosts: 2
        }
    );
    assert_eq!(front_tier_of(&[5]), FrontTier::Single { preference: 5 });
    assert_eq!(front_tier_of(&[]), FrontTier::None);
    // A lone primary with backups: the primaries are not equal.
    assert_eq!(
        front_tier_of(&[10, 20]),
        FrontTier::Unequal {
            preferences: vec![10, 20]
        }
    );
    // A preferred host in front of an equal pair: that pair is not the front.
    assert_eq!(
        front_tier_of(&[20, 10, 20]),
        FrontTier::Unequal {
            preferences: vec![10, 20]
        }
    );
    assert_eq!(
        front_tier_of(&[30, 10, 20]),
        FrontTier::Unequal {
            preferences: vec![10, 20, 30]
        }
    );
}

#[test]
fn mx_sets_map_to_their_findings() {
    let equal = published(vec![
        target(10, "gw1"),
        target(10, "gw2"),
        target(20, "bk1"),
    ]);
    assert!(findings::mx_findings("d", &equal).is_empty());

    let single = published(vec![target(10, "gw1")]);
    assert_eq!(kinds(&findings::mx_findings("d", &single)), ["single_mx"]);

    let unequal = published(vec![target(10, "gw1"), target(20, "bk1")]);
    assert_eq!(
        kinds(&findings::mx_findings("d", &unequal)),
        ["unequal_front_preferences"]
    );

    let null = MxSet {
        kind: MxKind::Null,
        null_mixed: false,
        targets: vec![],
    };
    assert_eq!(kinds(&findings::mx_findings("d", &null)), ["null_mx"]);

    let implicit = MxSet {
        kind: MxKind::Implicit,
        null_mixed: false,
        targets: vec![target(0, "d")],
    };
    let found = findings::mx_findings("d", &implicit);
    assert_eq!(kinds(&found), ["no_mx"]);
    assert!(found[0].detail.contains("127.0.0.1"), "{found:?}");

    let mut alias = target(10, "alias");
    alias.cname = Some("gw1".into());
    let mut literal = target(10, "192.0.2.1");
    literal.ip_literal = true;
    let mut nowhere = target(10, "nowhere");
    nowhere.addresses.clear();
    nowhere.lookup = AddressLookup::NoAddress;
    let mut lost = target(20, "lost");
    lost.addresses.clear();
    lost.lookup = AddressLookup::Failed("A lost: timed out".into());
    let mut odd = published(vec![alias, literal, nowhere, lost]);
    odd.null_mixed = true;
    assert_eq!(
        kinds(&findings::mx_findings("d", &odd)),
        [
            "null_mx_mixed",
            "cname_target",
            "ip_literal_target",
            "target_without_address",
            "target_lookup_failed"
        ]
    );
}

#[test]
fn probe_results_map_to_their_findings() {
    assert!(findings::host_findings(&good_host("gw1")).is_empty());

    let mut open = good_host("sink");
    open.session = Session::Open {
        banner: "220 sink".into(),
        esmtp: true,
        starttls_offered: false,
        tls: false,
    };
    open.unknown_recipient = step(Outcome::Accepted, Stage::Rcpt, "250 ok");
    open.relay = step(Outcome::Accepted, Stage::Rcpt, "250 ok");
    open.gtube = step(Outcome::Accepted, Stage::EndOfData, "250 queued");
    let found = findings::host_findings(&open);
    assert_eq!(
        kinds(&found),
        [
            "no_starttls",
            "unknown_recipient_accepted",
            "relay_accepted",
            "gtube_accepted"
        ]
    );
    assert!(found[1..].iter().all(|f| f.severity == Severity::Serious));
    assert!(found[3].detail.contains("250 queued"), "{found:?}");

    let mut picky = good_host("gw1");
    picky.session = Session::Open {
        banner: "220 old".into(),
        esmtp: true,
        starttls_offered: true,
        tls: false,
    };
    picky.unknown_recipient = step(Outcome::Deferred, Stage::Rcpt, "450 4.7.1 greylisted");
    picky.relay = step(Outcome::Refused, Stage::Mail, "550 no bounces");
    picky.gtube = step(Outcome::Refused, Stage::Mail, "550 no bounces");
    assert_eq!(
        kinds(&findings::host_findings(&picky)),
        [
            "starttls_failed",
            "probe_inconclusive",
            "null_sender_refused",
            "nothing_tested"
        ]
    );
    // Regression (review): a host that deferred every probe (a greylisting backup that
    // may still be an open relay) left only warnings, so the audit exited 0 having
    // tested nothing there.
    let mut deferring = good_host("bk1");
    for probe in [
        &mut deferring.unknown_recipient,
        &mut deferring.relay,
        &mut deferring.gtube,
    ] {
        *probe = step(Outcome::Deferred, Stage::Rcpt, "450 4.7.1 greylisted");
    }
    let found = findings::host_findings(&deferring);
    assert_eq!(
        kinds(&found),
        [
            "probe_inconclusive",
            "probe_inconclusive",
            "gtube_deferred",
            "nothing_tested"
        ]
    );
    assert_eq!(found[3].severity, Severity::Serious);

    // Regression (review): GTUBE deferred at the end of data (greylisting at DATA) beside
    // two conclusive probes left a warning and exit 0, the content filter never shown to
    // work.
    let mut late = good_host("bk2");
    late.gtube = step(Outcome::Deferred, Stage::EndOfData, "451 4.7.1 Greylisted");
    let found = findings::host_findings(&late);
    assert_eq!(kinds(&found), ["gtube_deferred"]);
    assert_eq!(found[0].severity, Severity::Serious);

    // Regression (review): a relay probe refused because `.invalid` does not exist says
    // nothing about relaying (a server checking recipient domains refuses it so and may
    // still relay to real ones): inconclusive, not a pass.
    let mut checks_domains = good_host("bk3");
    checks_domains.relay = step(
        Outcome::Refused,
        Stage::Rcpt,
        "550 5.1.2 <other@outside.invalid>: Recipient address rejected: Domain not found",
    );
    let found = findings::host_findings(&checks_domains);
    assert_eq!(kinds(&found), ["probe_inconclusive"]);
    assert!(
        found[0].detail.contains("may still relay"),
        "{}",
        found[0].detail
    );

    let mut strict = good_host("gw1");
    strict.gtube = step(Outcome::Refused, Stage::Rcpt, "550 5.1.1 unknown");
    let found = findings::host_findings(&strict);
    assert_eq!(kinds(&found), ["gtube_not_exercised"]);
    assert_eq!(found[0].severity, Severity::Info);

    let mut lost = good_host("gw1");
    lost.gtube = Some(StepResult {
        outcome: Outcome::Error,
        stage: Stage::EndOfData,
        reply: None,
        error: Some("end of data: timed out".into()),
    });
    assert_eq!(
        kinds(&findings::host_findings(&lost)),
        ["probe_inconclusive"]
    );

    let mut gone = good_host("gw1");
    gone.session = Session::Unreachable {
        error: "connection refused".into(),
    };
    gone.unknown_recipient = None;
    gone.relay = None;
    gone.gtube = None;
    assert_eq!(kinds(&findings::host_findings(&gone)), ["unreachable"]);
    gone.session = Session::Refused {
        reply: "554 go away".into(),
    };
    assert_eq!(kinds(&findings::host_findings(&gone)), ["session_refused"]);
}

#[test]
fn no_open_session_anywhere_is_serious_unless_the_domain_takes_no_mail() {
    let mx = published(vec![target(10, "gw1"), target(10, "gw2")]);
    let mut down = good_host("gw1");
    down.session = Session::Unreachable {
        error: "timed out".into(),
    };
    // Nothing listens there: the probes are not run.
    (down.unknown_recipient, down.relay, down.gtube) = (None, None, None);
    let found = findings::all("d", &mx, &[down.clone()], &[], &[]);
    assert_eq!(found[0].kind, FindingKind::NoReachableMx, "{found:?}");
    assert!(findings::all("d", &mx, &[down, good_host("gw2")], &[], &[])
        .iter()
        .all(|f| f.kind != FindingKind::NoReachableMx));
    // Regression (review): a first session refused by a passing limit, with the probes'
    // own sessions taken, was "no MX address took an SMTP session".
    let mut busy = good_host("gw1");
    busy.session = Session::Refused {
        reply: "421 4.3.2 Too many connections".into(),
    };
    let found = findings::all("d", &mx, &[busy], &[], &[]);
    assert!(
        found.iter().all(|f| f.kind != FindingKind::NoReachableMx),
        "{found:?}"
    );

    let null = MxSet {
        kind: MxKind::Null,
        null_mixed: false,
        targets: vec![],
    };
    assert_eq!(
        kinds(&findings::all("d", &null, &[], &[], &[])),
        ["null_mx"]
    );
}

#[test]
fn fingerprints_are_compared_against_the_majority() {
    let same = [
        fingerprint("gw1", Some("aaaa")),
        fingerprint("gw2", Some("aaaa")),
    ];
    assert!(findings::fingerprint_findings(&same).is_empty());

    let drifted = [
        fingerprint("gw1", Some("aaaa")),
        fingerprint("bk1", Some("bbbb")),
        fingerprint("gw2", Some("aaaa")),
    ];
    let found = findings::fingerprint_findings(&drifted);
    assert_eq!(kinds(&found), ["fingerprint_mismatch"]);
    assert!(found[0].subject.starts_with("bk1 "), "{found:?}");
    assert!(found[0].detail.contains("gw1, gw2"), "{found:?}");

    // A tie goes to the endpoint named first.
    let tie = [
        fingerprint("gw1", Some("aaaa")),
        fingerprint("gw2", Some("bbbb")),
    ];
    let found = findings::fingerprint_findings(&tie);
    assert_eq!(kinds(&found), ["fingerprint_mismatch"]);
    assert!(found[0].subject.starts_with("gw2 "), "{found:?}");

    let half = [fingerprint("gw1", Some("aaaa")), fingerprint("gw2", None)];
    let found = findings::fingerprint_findings(&half);
    assert_eq!(
        kinds(&found),
        ["admin_unreachable", "fingerprint_not_compared"]
    );
    assert!(findings::fingerprint_findings(&[]).is_empty());
}

#[test]
fn exit_code_follows_the_most_severe_finding() {
    let clean = report(
        published(vec![target(10, "gw1"), target(10, "gw2")]),
        vec![good_host("gw1"), good_host("gw2")],
        vec![],
    );
    assert_eq!(clean.findings, vec![]);
    assert_eq!(clean.exit_code(), report::EXIT_CLEAN);

    let warned = report(
        published(vec![target(10, "gw1")]),
        vec![good_host("gw1")],
        vec![],
    );
    assert_eq!(kinds(&warned.findings), ["single_mx"]);
    assert_eq!(warned.exit_code(), 0);

    let mut sink = good_host("gw2");
    sink.gtube = step(Outcome::Accepted, Stage::EndOfData, "250 ok");
    let serious = report(
        published(vec![target(10, "gw1"), target(10, "gw2")]),
        vec![good_host("gw1"), sink],
        vec![],
    );
    assert_eq!(serious.exit_code(), report::EXIT_SERIOUS);
    assert_eq!(serious.exit_code(), 1);
    assert_eq!(report::EXIT_COULD_NOT_RUN, 2);
}

#[test]
fn json_document_has_the_documented_shape() {
    let mut sink = good_host("gw2");
    sink.gtube = step(Outcome::Accepted, Stage::EndOfData, "250 ok");
    let text = report(
        published(vec![target(10, "gw1"), target(10, "gw2")]),
        vec![good_host("gw1"), sink],
        vec![fingerprint("gw1", Some("ab12")), fingerprint("gw2", None)],
    )
    .to_json()
    .unwrap_or_default();
    // What the audit was about comes first, the verdict last.
    assert!(
        text.starts_with("{\n  \"domain\": \"example.test\""),
        "{text}"
    );
    let summary = text.find("\"summary\"").unwrap_or_default();
    assert!(
        summary > text.find("\"findings\"").unwrap_or(usize::MAX),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    for key in [
        "domain",
        "resolver",
        "port",
        "rcpt",
        "unknown_rcpt",
        "mx",
        "front_tier",
        "hosts",
        "fingerprints",
        "findings",
        "summary",
    ] {
        assert!(doc.get(key).is_some(), "missing {key}: {doc:#}");
    }
    assert_eq!(doc["mx"]["kind"], "published");
    assert_eq!(doc["mx"]["targets"][0]["host"], "gw1");
    assert_eq!(doc["mx"]["targets"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(doc["mx"]["targets"][0]["lookup"]["result"], "found");
    assert_eq!(doc["front_tier"]["shape"], "equal");
    assert_eq!(doc["front_tier"]["hosts"], 2);
    let host = &doc["hosts"][1];
    assert_eq!(host["address"], "127.0.0.1:25");
    assert_eq!(host["session"]["state"], "open");
    assert_eq!(host["session"]["tls"], true);
    assert_eq!(host["gtube"]["outcome"], "accepted");
    assert_eq!(host["gtube"]["stage"], "end_of_data");
    assert_eq!(host["gtube"]["reply"], "250 ok");
    assert_eq!(doc["fingerprints"][0]["fingerprint"], "ab12");
    assert_eq!(doc["fingerprints"][1]["error"], "connection refused");
    let first = &doc["findings"][0];
    assert_eq!(first["severity"], "serious");
    assert_eq!(first["kind"], "gtube_accepted");
    assert!(first["subject"].is_string() && first["detail"].is_string());
    assert_eq!(doc["summary"]["serious"], 1);
    assert_eq!(doc["summary"]["warning"], 1);
    assert_eq!(doc["summary"]["info"], 1);
    assert_eq!(doc["summary"]["exit_code"], 1);
}

#[test]
fn every_kind_has_a_stable_name_and_the_documented_severity() {
    let mut names = std::collections::HashSet::new();
    for kind in FindingKind::ALL {
        assert_eq!(serde_json::json!(kind), kind.name(), "{kind:?}");
        assert!(names.insert(kind.name()), "duplicate {}", kind.name());
    }
    let serious: Vec<&str> = FindingKind::ALL
        .iter()
        .filter(|k| k.severity() == Severity::Serious)
        .map(|k| k.name())
        .collect();
    assert_eq!(
        serious,
        [
            "no_reachable_mx",
            "unknown_recipient_accepted",
            "relay_accepted",
            "gtube_accepted",
            "gtube_deferred",
            "nothing_tested",
            "fingerprint_mismatch"
        ]
    );
}

#[test]
fn table_shows_records_probes_and_findings() {
    let mut sink = good_host("gw2");
    sink.gtube = step(Outcome::Accepted, Stage::EndOfData, "250 ok");
    let text = report(
        published(vec![target(10, "gw1"), target(10, "gw2")]),
        vec![good_host("gw1"), sink],
        vec![],
    )
    .to_table();
    assert!(
        text.contains("front tier: 2 hosts at preference 10 (equal)"),
        "{text}"
    );
    assert!(text.contains("refused 550 at end of data"), "{text}");
    assert!(text.contains("ACCEPTED 250 at end of data"), "{text}");
    assert!(text.contains("serious   gtube_accepted"), "{text}");
    assert!(
        text.ends_with("1 serious, 0 warning(s), 0 info: exit 1\n"),
        "{text}"
    );
}

#[test]
fn policy_responses_yield_a_fingerprint_or_say_why_not() {
    let body = r#"{"fingerprint":"ABCDEF0123","version":"0.1.0"}"#;
    let ok = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        parse_policy_response(ok.as_bytes()),
        Ok("abcdef0123".into())
    );
    let until_close = format!("HTTP/1.0 200 OK\r\n\r\n{body}");
    assert_eq!(
        parse_policy_response(until_close.as_bytes()),
        Ok("abcdef0123".into())
    );
    assert_eq!(
        parse_policy_response(b"HTTP/1.1 403 Forbidden\r\n\r\nno"),
        Err(FetchError::Status(403))
    );
    assert!(matches!(
        parse_policy_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"),
        Err(FetchError::Http(HttpError::Malformed(_)))
    ));
    assert_eq!(
        parse_policy_response(b"HTTP/1.1 200 OK\r\n\r\n{\"version\":\"1\"}"),
        Err(FetchError::NoFingerprint)
    );
    assert_eq!(
        parse_policy_response(b"HTTP/1.1 200 OK\r\n\r\n{\"fingerprint\":\"\\u001b[31m\"}"),
        Err(FetchError::NoFingerprint)
    );
    assert!(matches!(
        parse_policy_response(b"SSH-2.0-OpenSSH\r\n"),
        Err(FetchError::Http(HttpError::Malformed(_)))
    ));
}

#[test]
fn arguments_are_checked_before_anything_goes_on_the_wire() {
    assert_eq!(
        normalize_domain("Example.TEST."),
        Some("example.test".into())
    );
    assert_eq!(normalize_domain("a b.test"), None);
    assert_eq!(normalize_domain("a..test"), None);
    assert_eq!(normalize_domain(""), None);
    assert!(is_plain_address("postmaster@example.test"));
    assert!(!is_plain_address("postmaster"));
    assert!(!is_plain_address("a>\r\nDATA@example.test"));
    assert!(!is_plain_address("@example.test"));
    assert_eq!(
        ip_literal("[192.0.2.1]"),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert!(ip_literal("2001:db8::1").is_some());
    assert_eq!(ip_literal("mx.example.test"), None);
}

#[tokio::test]
async fn invalid_arguments_are_errors_not_findings() {
    let options = AuditOptions {
        domain: "not a domain".into(),
        resolver: Some("127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!())),
        port: 25,
        rcpt: None,
        admins: vec![],
        timeout: std::time::Duration::from_secs(1),
        helo: "audit.example.test".into(),
    };
    assert!(matches!(
        run(options.clone()).await,
        Err(AuditError::InvalidDomain(_))
    ));
    let bad_rcpt = AuditOptions {
        domain: "example.test".into(),
        rcpt: Some("x y@example.test".into()),
        ..options.clone()
    };
    assert!(matches!(
        run(bad_rcpt).await,
        Err(AuditError::InvalidRecipient(_))
    ));
    let bad_helo = AuditOptions {
        domain: "example.test".into(),
        helo: "two words".into(),
        ..options
    };
    assert!(matches!(
        run(bad_helo).await,
        Err(AuditError::InvalidHelo(_))
    ));
}

#[test]
fn remote_text_cannot_drive_the_terminal() {
    let cleaned = probe::clean_text("220 \u{1b}[2Jhello\r\n");
    assert!(!cleaned.contains('\u{1b}'), "{cleaned:?}");
    assert!(!cleaned.contains('\r'), "{cleaned:?}");
    assert!(probe::clean_text(&"x".repeat(10_000)).chars().count() <= 201);
}

#[test]
fn gtube_message_carries_the_test_string_with_crlf_lines() {
    let message = probe::gtube_message("postmaster@example.test", "audit.example.test");
    let text = String::from_utf8(message).unwrap_or_default();
    assert!(text.contains(probe::GTUBE));
    assert!(text.contains("To: <postmaster@example.test>\r\n"));
    assert!(!text.replace("\r\n", "").contains('\n'));
    assert!(text.contains("\r\n\r\n"), "headers end before the body");
}

/// Regression (review): a probe whose own connection was refused (a 5xx banner or EHLO, a
/// per-client connection limit) was taken for a refusal of what it tests: no finding, and
/// the audit passed an MX whose relay and GTUBE handling it never saw.
#[test]
fn a_probe_refused_before_it_ran_is_inconclusive() {
    let mut host = good_host("mx1.example.test");
    host.relay = step(
        Outcome::Refused,
        Stage::Connect,
        "554 5.7.1 too many connections",
    );
    host.gtube = step(
        Outcome::Refused,
        Stage::Connect,
        "554 5.7.1 too many connections",
    );
    let found = findings::host_findings(&host);
    assert_eq!(kinds(&found), ["probe_inconclusive", "probe_inconclusive"]);
    assert!(
        found[1].detail.contains("too many connections"),
        "{found:?}"
    );
}

/// Regression (README promised it): the domain's own address was probed only when no MX
/// was published, so a host on the apex taking SMTP (a forgotten Postfix on the web
/// server) went unreported: a way around the tier. A closed apex is no finding; an open
/// one is a warning, and what it lets through is serious, as on an MX.
#[test]
fn the_domain_own_address_taking_smtp_is_reported() {
    let mx = published(vec![target(10, "gw1"), target(10, "gw2")]);
    let hosts = [good_host("gw1"), good_host("gw2")];
    let closed = HostProbe {
        session: Session::Unreachable {
            error: "connection refused".into(),
        },
        unknown_recipient: None,
        relay: None,
        gtube: None,
        ..good_host("d")
    };
    assert!(findings::all("d", &mx, &hosts, &[closed], &[]).is_empty());
    let filtering = good_host("d");
    assert_eq!(
        kinds(&findings::all("d", &mx, &hosts, &[filtering], &[])),
        ["apex_takes_smtp"]
    );
    let open = HostProbe {
        gtube: step(Outcome::Accepted, Stage::EndOfData, "250 2.0.0 Ok"),
        ..good_host("d")
    };
    let found = findings::all("d", &mx, &hosts, &[open], &[]);
    assert_eq!(kinds(&found), ["gtube_accepted", "apex_takes_smtp"]);
    assert_eq!(found[0].subject, "d 127.0.0.1:25");
    // A host there that defers everything lets nothing through: no `nothing_tested`.
    let deferring = HostProbe {
        unknown_recipient: step(Outcome::Deferred, Stage::Rcpt, "451 4.7.1 later"),
        relay: step(Outcome::Deferred, Stage::Rcpt, "451 4.7.1 later"),
        gtube: step(Outcome::Deferred, Stage::Rcpt, "451 4.7.1 later"),
        ..good_host("d")
    };
    assert_eq!(
        kinds(&findings::all("d", &mx, &hosts, &[deferring], &[])),
        ["apex_takes_smtp"]
    );
    // Regression (review): what the probes found was dropped when the apex refused the
    // audit's first session (a passing `421`) and took the probes' own.
    let busy_then_open = HostProbe {
        session: Session::Refused {
            reply: "421 4.3.2 Too many connections".into(),
        },
        gtube: step(Outcome::Accepted, Stage::EndOfData, "250 2.0.0 Ok"),
        ..good_host("d")
    };
    let found = findings::all("d", &mx, &hosts, &[busy_then_open], &[]);
    assert_eq!(kinds(&found), ["gtube_accepted", "apex_takes_smtp"]);
    // Refused on every connection, it is as it should be.
    let refusing = HostProbe {
        session: Session::Refused {
            reply: "554 5.7.1 no mail here".into(),
        },
        unknown_recipient: step(Outcome::Refused, Stage::Connect, "554 5.7.1 no mail here"),
        relay: step(Outcome::Refused, Stage::Connect, "554 5.7.1 no mail here"),
        gtube: step(Outcome::Refused, Stage::Connect, "554 5.7.1 no mail here"),
        ..good_host("d")
    };
    assert!(findings::all("d", &mx, &hosts, &[refusing], &[]).is_empty());
}

/// An unanswered lookup of the domain's own addresses is said, not taken for "none": the
/// apex was not tested.
#[tokio::test]
async fn an_unanswered_apex_lookup_is_an_error_not_an_empty_answer() {
    // Bound and never read: every query to it goes unanswered.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = silent.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let resolver = dns::AuditResolver::new(Some(addr), std::time::Duration::from_millis(600))
        .unwrap_or_else(|e| panic!("{e}"));
    let (addresses, unresolved) = resolver.apex_addresses("example.test").await;
    assert!(addresses.is_empty() && unresolved.is_some());
    assert_eq!(FindingKind::ApexLookupFailed.severity(), Severity::Warning);
}

/// Regression (review): an A lookup answered beside an AAAA lookup lost counted as found,
/// and the failure was dropped: the IPv6 addresses were never probed, without a word.
#[tokio::test]
async fn a_lost_lookup_beside_an_answered_one_is_said() {
    use crate::dns::testing::{Mode, TestDns};
    let server = TestDns::builder()
        .mx("example.test", 10, "mx.example.test")
        .a("mx.example.test", Ipv4Addr::new(127, 0, 0, 11))
        .a("example.test", Ipv4Addr::new(127, 0, 0, 12))
        .mode(Mode::SilentFor(
            hickory_resolver::proto::rr::RecordType::AAAA,
        ))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let resolver =
        dns::AuditResolver::new(Some(server.addr()), std::time::Duration::from_millis(600))
            .unwrap_or_else(|e| panic!("{e}"));
    let (addresses, unresolved) = resolver.apex_addresses("example.test").await;
    assert_eq!(addresses, [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12))]);
    assert!(unresolved.is_some_and(|why| why.contains("AAAA")));
    let mx = resolver
        .mx_set("example.test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&mx.targets[0].lookup, AddressLookup::Partial(why) if why.contains("AAAA")),
        "{mx:?}"
    );
    let found = findings::mx_findings("example.test", &mx);
    assert!(
        found
            .iter()
            .any(|f| f.kind == FindingKind::TargetLookupFailed && f.subject == "mx.example.test"),
        "{found:?}"
    );
}

/// Regression (review): a first session refused or stalled ended the probing of that
/// address, and the audit reported only `session_refused` (a warning, exit 0) for a
/// backup that took the next connections: the three probes each try their own
/// connection, and none conclusive is `nothing_tested`.
#[test]
fn a_refused_first_session_still_leaves_the_probes_to_judge() {
    let mut deferring = good_host("bk1");
    deferring.session = Session::Refused {
        reply: "421 4.7.0 try again later".into(),
    };
    let deferred = step(Outcome::Deferred, Stage::Rcpt, "450 4.7.1 greylisted");
    deferring.unknown_recipient = deferred.clone();
    deferring.relay = deferred.clone();
    deferring.gtube = deferred;
    let found = kinds(&findings::host_findings(&deferring));
    assert!(found.contains(&"session_refused"), "{found:?}");
    assert!(found.contains(&"nothing_tested"), "{found:?}");
    let mut open_relay = good_host("bk1");
    open_relay.session = Session::Refused {
        reply: "421 4.7.0 try again later".into(),
    };
    open_relay.relay = step(Outcome::Accepted, Stage::Rcpt, "250 2.1.5 ok");
    let found = kinds(&findings::host_findings(&open_relay));
    assert!(found.contains(&"relay_accepted"), "{found:?}");
}

/// Regression (review): a backup that greylists at RCPT and filters nothing (Postfix with
/// postgrey and relay_recipient_maps: unknown recipient and relay refused, GTUBE deferred
/// at RCPT) left one `probe_inconclusive` warning and exit 0; a GTUBE deferred at the end
/// of data was serious for that very reason.
#[test]
fn a_gtube_probe_deferred_before_its_content_is_serious() {
    for stage in [Stage::Rcpt, Stage::Data] {
        let mut bk1 = good_host("bk1.example.test");
        bk1.gtube = step(Outcome::Deferred, stage, "450 4.2.0 Greylisted");
        let found = kinds(&findings::host_findings(&bk1));
        assert!(found.contains(&"gtube_deferred"), "{stage:?}: {found:?}");
        let r = report(
            published(vec![
                target(10, "gw1.example.test"),
                target(10, "gw2.example.test"),
                target(20, "bk1.example.test"),
            ]),
            vec![
                good_host("gw1.example.test"),
                good_host("gw2.example.test"),
                bk1,
            ],
            vec![],
        );
        assert_eq!(r.exit_code(), report::EXIT_SERIOUS, "{stage:?}");
    }
}
