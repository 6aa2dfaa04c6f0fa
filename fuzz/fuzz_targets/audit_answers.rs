//! What `mxguard audit` reads from servers it does not control → its parsers, end to end
//! without the network: the admin endpoint's HTTP response to `GET /policy`
//! (`tier::http::parse_response`, `fingerprint::parse_policy_response`), and an MX's SMTP
//! replies as the probe reads them (`mail::Reply::parse`, `Capabilities::from_ehlo`,
//! `probe::from_reply`), turned into findings and a report (table and JSON).
//!
//! The same bytes feed both readers. Properties: never panics; an HTTP body is never longer
//! than the response and is exactly `Content-Length` bytes when that is given; a
//! fingerprint is only taken from a 200 and is short lower-case alphanumerics; remote text
//! that reaches the report has no control characters (terminal escapes) and is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::mail::Reply;
use mxguard::relay::Capabilities;
use mxguard::tier::audit::dns::{MxKind, MxSet};
use mxguard::tier::audit::fingerprint::{parse_policy_response, AdminFingerprint, FetchError};
use mxguard::tier::audit::findings;
use mxguard::tier::audit::probe::{from_reply, HostProbe, Session, Stage};
use mxguard::tier::audit::report::Report;
use mxguard::tier::http::parse_response;

/// Remote text the probe keeps: 200 characters plus an ellipsis.
const MAX_TEXT: usize = 201;

fn clean(text: &str) {
    assert!(!text.chars().any(char::is_control), "control character kept: {text:?}");
    assert!(text.chars().count() <= MAX_TEXT, "{} characters kept", text.chars().count());
}

fn http(data: &[u8]) -> AdminFingerprint {
    if let Ok((status, body)) = parse_response(data) {
        let _ = status;
        let start = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a parsed response has an end of headers")
            + 4;
        let after = &data[start..];
        assert!(after.starts_with(&body), "body is not what follows the headers");
        let head = std::str::from_utf8(&data[..start - 4]).expect("parsed headers are UTF-8");
        let lengths: Vec<usize> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim().parse::<usize>().expect("parsed lengths are numbers"))
            .collect();
        if let Some(&length) = lengths.first() {
            assert!(
                lengths.iter().all(|&l| l == length),
                "conflicting Content-Length values accepted: {lengths:?}"
            );
            assert_eq!(body.len(), length, "body differs from Content-Length");
        }
    }
    let result = parse_policy_response(data);
    match &result {
        Ok(fp) => {
            assert!(!fp.is_empty() && fp.len() <= 128, "fingerprint {fp:?}");
            assert!(fp.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
            assert!(matches!(parse_response(data), Ok((200, _))));
        }
        Err(FetchError::Status(code)) => assert_ne!(*code, 200),
        Err(_) => {}
    }
    AdminFingerprint {
        name: "fuzz".into(),
        address: ([192, 0, 2, 1], 9425).into(),
        error: result.as_ref().err().map(ToString::to_string),
        fingerprint: result.ok(),
    }
}

fn smtp(data: &[u8]) -> Option<HostProbe> {
    let mut replies = Vec::new();
    let mut rest = data;
    while replies.len() < 8 {
        let Ok(Some((reply, used))) = Reply::parse(rest) else {
            break;
        };
        replies.push(reply);
        rest = &rest[used..];
    }
    let banner = replies.first()?;
    let ehlo = replies.get(1);
    let caps = ehlo.map(Capabilities::from_ehlo).unwrap_or_default();
    let step = |i: usize, stage| {
        replies.get(i).map(|r| {
            let result = from_reply(stage, r);
            clean(result.reply.as_deref().unwrap_or(""));
            result
        })
    };
    let banner_text = mxguard::tier::audit::probe::clean_text(&banner.to_string());
    clean(&banner_text);
    Some(HostProbe {
        target: "mx.fuzz.test".into(),
        address: ([192, 0, 2, 2], 25).into(),
        session: Session::Open {
            banner: banner_text,
            esmtp: caps.esmtp,
            starttls_offered: caps.starttls,
            tls: false,
        },
        unknown_recipient: step(2, Stage::Rcpt),
        relay: step(3, Stage::Mail),
        gtube: step(4, Stage::EndOfData),
    })
}

fuzz_target!(|data: &[u8]| {
    let admin = http(data);
    let hosts: Vec<HostProbe> = smtp(data).into_iter().collect();
    // The domain's own addresses answer as its MX hosts do.
    let apex = hosts.clone();
    let mx = MxSet {
        kind: MxKind::Published,
        null_mixed: false,
        targets: Vec::new(),
    };
    let fingerprints = vec![admin.clone(), admin];
    let findings = findings::all("fuzz.test", &mx, &hosts, &apex, &fingerprints);
    for f in &findings {
        assert!(!f.detail.chars().any(|c| c == '\u{1b}'), "escape in {:?}", f.detail);
    }
    let report = Report {
        domain: "fuzz.test".into(),
        resolver: "system".into(),
        port: 25,
        rcpt: "postmaster@fuzz.test".into(),
        unknown_rcpt: "x@fuzz.test".into(),
        front_tier: findings::front_tier(&mx),
        mx,
        hosts,
        apex,
        fingerprints,
        findings,
    };
    let table = report.to_table();
    assert!(!table.contains('\u{1b}'), "terminal escape in the table");
    let json = report.to_json().expect("report serializes");
    assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
});
