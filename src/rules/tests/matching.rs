//! What each rule kind reads from a message: headers and their modifiers, body text,
//! URIs, the raw message.

use super::*;

#[test]
fn gtube_body_rule_hits() {
    let rules = compile(
        "body GTUBE /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/\n\
         score GTUBE 1000\n\
         describe GTUBE Generic Test for Unsolicited Bulk Email\n",
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let raw = format!("Subject: test\r\n\r\nThis is the GTUBE, the\r\n{GTUBE}\r\n");
    assert_eq!(
        hits(&rules, raw.as_bytes()),
        vec![("GTUBE".to_string(), 1000.0, 1)]
    );
    assert_eq!(
        rules.description("GTUBE"),
        Some("Generic Test for Unsolicited Bulk Email")
    );
    assert!(names(&rules, PLAIN).is_empty());
}

#[test]
fn header_operators_and_modifiers() {
    let rules = compile(
        r#"
header SUBJ_MEDS     Subject =~ /\bmeds\b/i
header SUBJ_NOT_MEDS Subject !~ /meds/
header HAS_MSGID     exists:Message-ID
header HAS_LISTID    exists:List-Id
header ALL_HEADERS   ALL =~ /^Cc: carol/m
header TOCC_CAROL    ToCc =~ /carol\@other\.test/
header FROM_ADDR     From:addr =~ /^alice\@example\.com$/
header FROM_NAME     From:name =~ /^Alice Example$/
header FROM_RAW_Q    From:raw =~ /^"Alice/
header NO_LIST_OK    List-Id !~ /./
header MISSING_EMPTY X-Missing =~ /^$/
header MISSING_UNSET X-Missing =~ /^NONE$/ [if-unset: NONE]
header MSGID_PSEUDO  MESSAGEID =~ /abc\@example/
"#,
    );
    assert!(!rules.has_errors(), "{:?}", rules.diagnostics());
    let got = names(&rules, PLAIN);
    for expected in [
        "ALL_HEADERS",
        "FROM_ADDR",
        "FROM_NAME",
        "FROM_RAW_Q",
        "HAS_MSGID",
        "MISSING_EMPTY",
        "MISSING_UNSET",
        "MSGID_PSEUDO",
        "NO_LIST_OK",
        "SUBJ_MEDS",
        "TOCC_CAROL",
    ] {
        assert!(
            got.contains(&expected.to_string()),
            "{expected} missing in {got:?}"
        );
    }
    assert!(!got.contains(&"SUBJ_NOT_MEDS".to_string()));
    assert!(!got.contains(&"HAS_LISTID".to_string()));
}

#[test]
fn missing_header_with_negated_match_hits() {
    // SpamAssassin reads a missing header as empty, so `!~ /./` hits and `=~ /./` does not.
    let rules = compile("header NO_DATE Date !~ /\\d/\nheader DATE_DIGIT Date =~ /\\d/\n");
    assert_eq!(
        names(&rules, b"Subject: x\r\n\r\nbody\r\n"),
        vec!["NO_DATE"]
    );
    assert_eq!(
        names(
            &rules,
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n"
        ),
        vec!["DATE_DIGIT"]
    );
}

#[test]
fn body_covers_base64_text_and_rendered_html() {
    // "Claim your FREE prize" in base64 in the text part; the HTML part hides its words in markup.
    let raw = b"Subject: offer\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
Q2xhaW0geW91ciBGUkVFIHByaXplCg==\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><p>Act <b>now</b> for <i>lowest</i> rates</p></body></html>\r\n\
--b1--\r\n";
    let rules = compile(
        "body FREE_PRIZE /claim your free prize/i\n\
         body HTML_TEXT /Act now for lowest rates/\n\
         body NO_MARKUP /<b>/\n\
         body SUBJECT_LINE /^offer$/\n\
         rawbody RAW_MARKUP /<b>now<\\/b>/\n\
         rawbody RAW_NOT_BASE64 /Q2xhaW0/\n",
    );
    let got = names(&rules, raw);
    assert_eq!(
        got,
        vec!["FREE_PRIZE", "HTML_TEXT", "RAW_MARKUP", "SUBJECT_LINE"]
    );
}

#[test]
fn body_matches_do_not_span_paragraphs() {
    let rules = compile("body SPAN /buy\\s+now/\nbody LINE_START /^now/\n");
    let raw = b"Subject: s\r\n\r\nplease buy\r\n\r\nnow or never\r\n";
    assert_eq!(names(&rules, raw), vec!["LINE_START"]);
}

#[test]
fn uri_from_href_and_text() {
    let raw = b"Subject: s\r\nContent-Type: text/html\r\n\r\n\
<p>Click <a href=\"https://bad.example/login?x=1&amp;y=2\">here</a></p>\r\n";
    let rules = compile(
        "uri BAD_HOST /^https?:\\/\\/bad\\.example\\//\n\
         uri QUERY /x=1&y=2$/\n\
         uri OTHER /good\\.example/\n",
    );
    assert_eq!(names(&rules, raw), vec!["BAD_HOST", "QUERY"]);
}

#[test]
fn full_sees_raw_message() {
    let rules = compile(
        "full RAW_B64 /^Content-Transfer-Encoding: base64/m\nfull FULL_START /\\AFrom: /\n",
    );
    let raw = b"From: a@b.test\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n";
    assert_eq!(names(&rules, raw), vec!["FULL_START", "RAW_B64"]);
}
