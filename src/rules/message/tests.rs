//! The message view's shapes, checked against what SpamAssassin's rules expect.

use super::*;

fn target(name: &str, part: AddrPart) -> HeaderTarget {
    HeaderTarget {
        source: HeaderSource::Named(name.into()),
        raw: false,
        part,
        instance: Instance::All,
        if_unset: None,
    }
}

#[test]
fn headers_decoded_raw_and_addresses() {
    let raw = b"From: \"Foo Bar\" <foo@example.com>\r\nTo: a@x.test, B <b@y.test>\r\nSubject: =?utf-8?q?Hello_W=C3=B6rld?=\r\nReceived: one\r\nReceived: two\r\n\r\nbody\r\n";
    let v = MessageView::parse(raw);
    assert_eq!(
        v.header_text(&target("subject", AddrPart::Whole)).unwrap(),
        "Hello Wörld"
    );
    let mut t = target("subject", AddrPart::Whole);
    t.raw = true;
    assert_eq!(v.header_text(&t).unwrap(), "=?utf-8?q?Hello_W=C3=B6rld?=");
    assert_eq!(
        v.header_text(&target("from", AddrPart::Addr)).unwrap(),
        "foo@example.com"
    );
    assert_eq!(
        v.header_text(&target("from", AddrPart::Name)).unwrap(),
        "Foo Bar"
    );
    assert_eq!(
        v.header_text(&target("to", AddrPart::Addr)).unwrap(),
        "a@x.test\nb@y.test"
    );
    assert_eq!(
        v.header_text(&target("received", AddrPart::Whole)).unwrap(),
        "one\ntwo"
    );
    let mut last = target("received", AddrPart::Whole);
    last.instance = Instance::Last;
    assert_eq!(v.header_text(&last).unwrap(), "two");
    assert!(v
        .header_text(&target("x-missing", AddrPart::Whole))
        .is_none());
}

#[test]
fn body_lines_follow_spamassassin() {
    let raw = b"Subject: Hi  there\r\n\r\nline one\r\ncontinues   here\r\n\r\n\r\nsecond para\r\n";
    let v = MessageView::parse(raw);
    assert_eq!(
        v.body_lines(),
        &["Hi there", "line one continues here", "second para "]
    );
    // Whitespace at a paragraph's edges stays, as in SpamAssassin.
    let raw = b"Subject: x\r\n\r\na  \r\n\r\n  b\r\n \r\nc";
    let v = MessageView::parse(raw);
    assert_eq!(v.body_lines(), &["x", "a ", " b", "c"]);
}

#[test]
fn uris_from_text_and_html() {
    let raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>see <a href=\"http://evil.test/a?b=1&amp;c=2\">here</a> or www.other.test/x.</p>\r\n";
    let v = MessageView::parse(raw);
    assert!(v.uris().iter().any(|u| u == "http://evil.test/a?b=1&c=2"));
    assert!(v.uris().iter().any(|u| u == "http://www.other.test/x"));
    assert!(v.body_text().contains("see here or"));
}

#[test]
fn garbage_does_not_panic() {
    for raw in [
        &b""[..],
        b"\xff\xfe\x00",
        b"no headers at all",
        b":\r\n\r\n",
    ] {
        let v = MessageView::parse(raw);
        assert_eq!(v.full(), raw);
    }
    let long = "a".repeat(10_000);
    let v = MessageView::parse(format!("Subject: x\r\n\r\n{long}\r\n").as_bytes());
    assert!(v
        .body_lines()
        .iter()
        .all(|l| l.len() <= MAX_BODY_LINE_LENGTH));
}

/// SpamAssassin puts a newline before every leaf part once some text is collected, text
/// or not: text parts on either side of an attachment are separate paragraphs (`/^bar/`
/// hits, `/foo bar/` does not), and an empty first part adds nothing (compared with
/// `spamassassin -t` 4.0.1).
#[test]
fn body_paragraphs_break_at_attachments_as_in_spamassassin() {
    let raw = b"Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nfoo\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nbar\r\n--b--\r\n";
    let v = MessageView::parse(raw);
    assert_eq!(v.body_lines(), &["hi", "foo", "bar"]);

    let raw = b"Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nfoo\r\n--b--\r\n";
    let v = MessageView::parse(raw);
    assert_eq!(v.body_lines(), &["hi", "foo"]);
}

/// SpamAssassin renders only text/plain and HTML into `body` (`Node::rendered`); another
/// text type such as a vCard is seen by `rawbody` rules only, and a calendar by neither.
/// Before, every text type was body text.
#[test]
fn only_plain_text_and_html_are_body_text() {
    let raw = b"Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nfoo\r\n\
--b\r\nContent-Type: text/x-vcard\r\n\r\nBEGIN:VCARD\r\nFN:Card Holder\r\nEND:VCARD\r\n\
--b\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n--b--\r\n";
    let v = MessageView::parse(raw);
    assert_eq!(v.body_lines(), &["hi", "foo"]);
    let raw_text = v.rawbody_parts().join("\n");
    assert!(raw_text.contains("FN:Card Holder"), "{raw_text:?}");
    assert!(!raw_text.contains("VCALENDAR"), "{raw_text:?}");
}

#[test]
fn raw_parts_are_cut_into_pieces_of_one_to_two_line_lengths() {
    let mut text = "word ".repeat(1000).into_bytes(); // spaces only
    text.extend_from_slice(&"<td>cell</td>".repeat(400).into_bytes()); // tags only
    text.extend_from_slice(&"line of text\n".repeat(700).into_bytes());
    text.extend_from_slice(&[b'x'; 9000]); // no place to cut
    let mut pieces = Vec::new();
    cut_into_pieces(&text, &mut pieces);
    assert_eq!(pieces.concat(), text);
    let (last, rest) = pieces.split_last().unwrap();
    assert!(last.len() <= 2 * MAX_BODY_LINE_LENGTH);
    for piece in rest {
        assert!((MAX_BODY_LINE_LENGTH..=2 * MAX_BODY_LINE_LENGTH).contains(&piece.len()));
        let end = piece[piece.len() - 1];
        assert!(matches!(end, b'\n' | b'>' | b' ' | b'x'), "{end}");
    }
    assert!(pieces.iter().any(|p| p.ends_with(b"</td>")));
    assert!(pieces.iter().any(|p| p.ends_with(b"text\n")));
    let mut short = Vec::new();
    cut_into_pieces(b"short", &mut short);
    assert_eq!(short, vec![b"short".as_slice()]);
}
