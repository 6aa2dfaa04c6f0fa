//! The message view's shapes, checked against what SpamAssassin's rules expect.

use super::uris::fair_shares;
use super::*;
use crate::mail::url::both_ends;
use crate::rules::model::Instance;

fn target(name: &str, part: AddrPart) -> HeaderTarget {
    HeaderTarget {
        source: HeaderSource::Named(name.into()),
        raw: false,
        part,
        instance: Instance::All,
        if_unset: None,
    }
}

/// Regression (review): a text part decoded leniently (one stray character in its base64)
/// read padding in the middle of the data as zero bits, so a mailer that encodes each line
/// on its own put a NUL inside words: `Cheap Vi\0agra`, where a client shows `Cheap Viagra`.
#[test]
fn base64_padded_midway_reads_as_clients_show_it() {
    let raw =
        b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        Q2hlYXAgVmk=\r\nYWdyYQ==\r\n!\r\n";
    let v = MessageView::parse(raw);
    assert!(
        v.body_text().contains("Cheap Viagra"),
        "{:?}",
        v.body_text()
    );
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
    // As SpamAssassin 4.0.1 reads `:raw`: the blank after the colon stays.
    assert_eq!(v.header_text(&t).unwrap(), " =?utf-8?q?Hello_W=C3=B6rld?=");
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

/// Regression (review): `From:name:raw` gave the decoded name (SpamAssassin gives it as
/// written, encoded words and all), and `To:addr` took a group without members
/// (`undisclosed-recipients:;`) or a bare word for an address, where SpamAssassin has none.
#[test]
fn raw_names_keep_their_encoded_words_and_non_addresses_are_no_addresses() {
    let raw = b"From: =?utf-8?B?SsO2cmc=?= <j@b.test>\r\nTo: undisclosed-recipients:;\r\nCc: foo\r\nReply-To: <odd@example.test\r\n\r\nbody\r\n";
    let v = MessageView::parse(raw);
    assert_eq!(
        v.header_text(&target("from", AddrPart::Name)).unwrap(),
        "J\u{f6}rg"
    );
    let mut raw_name = target("from", AddrPart::Name);
    raw_name.raw = true;
    assert_eq!(v.header_text(&raw_name).unwrap(), "=?utf-8?B?SsO2cmc=?=");
    assert_eq!(
        v.header_text(&target("from", AddrPart::Addr)).unwrap(),
        "j@b.test"
    );
    assert!(v.header_text(&target("to", AddrPart::Addr)).is_none());
    assert!(v.header_text(&target("cc", AddrPart::Addr)).is_none());
    assert_eq!(
        v.header_text(&target("reply-to", AddrPart::Addr)).unwrap(),
        "odd@example.test"
    );
}

/// Regression (review): 8-bit text that is not UTF-8 (no charset declared) became
/// U+FFFD byte for byte in headers and bodies, so no rule could tell `caf\xe9` from any
/// other such word; SpamAssassin (`normalize_charset`) and mail clients read Latin-1.
#[test]
fn eight_bit_text_without_a_charset_is_read_as_latin_1() {
    let mut raw = b"Subject: caf\xe9 \xa3100\r\n\r\nun caf\xe9 cr\xe8me\r\n".to_vec();
    let v = MessageView::parse(&raw);
    assert_eq!(
        v.header_text(&target("subject", AddrPart::Whole)).unwrap(),
        "caf\u{e9} \u{a3}100"
    );
    assert!(
        v.body_lines()
            .iter()
            .any(|l| l.contains("un caf\u{e9} cr\u{e8}me")),
        "{:?}",
        v.body_lines()
    );
    // Regression (review of the fix): one stray byte in UTF-8 text turned the whole part
    // into Windows-1252 mojibake, and no rule written in Cyrillic matched it any more.
    let word = "\u{41a}\u{443}\u{43f}\u{438}\u{442}\u{44c}";
    raw = format!("Subject: {word} ").into_bytes();
    raw.extend_from_slice(b"\xff\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    raw.extend_from_slice(format!("{word} now ").as_bytes());
    raw.extend_from_slice(b"\xff\r\n");
    let v = MessageView::parse(&raw);
    let wanted = format!("{word} now \u{ff}");
    assert!(
        v.body_lines().iter().any(|l| l.contains(&wanted)),
        "{:?}",
        v.body_lines()
    );
    assert_eq!(
        v.header_text(&target("subject", AddrPart::Whole)).unwrap(),
        format!("{word} \u{ff}")
    );
    // The same for a part decoded leniently (a stray character in its base64), whose
    // charset is not declared.
    let mut text = format!("{word} now ").into_bytes();
    text.extend_from_slice(b"\xff");
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &text);
    raw = format!(
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n!\r\n"
    )
    .into_bytes();
    let v = MessageView::parse(&raw);
    assert!(
        v.body_lines().iter().any(|l| l.contains(&wanted)),
        "{:?}",
        v.body_lines()
    );
    // UTF-8 stays UTF-8.
    raw = "Subject: caf\u{e9}\r\n\r\ncr\u{e8}me\r\n"
        .as_bytes()
        .to_vec();
    let v = MessageView::parse(&raw);
    assert_eq!(
        v.header_text(&target("subject", AddrPart::Whole)).unwrap(),
        "caf\u{e9}"
    );
    assert!(v.body_lines().iter().any(|l| l.contains("cr\u{e8}me")));
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

/// Regression (review): the URI list differed from SpamAssassin's: a `www.` host was
/// listed bare as well (so `/^[^:A-Z]+[A-Z]/` read it as a path and hit 38 ham), and
/// neither the percent-decoded form nor a redirector's target was listed.
#[test]
fn uris_are_listed_in_spamassassin_s_forms() {
    let raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<a href=\"www.Shop.test/Deals\">a</a> <a href=\"http://8%31.9.8.4/%70age\">b</a> <a href=\"http://track.test/r?u=http://target.test/x&y=1\">c</a>\r\n";
    let v = MessageView::parse(raw);
    let uris = v.uris();
    assert!(
        uris.iter().any(|u| u == "http://www.Shop.test/Deals"),
        "{uris:?}"
    );
    assert!(!uris.iter().any(|u| u.starts_with("www.")), "{uris:?}");
    assert!(uris.iter().any(|u| u == "http://81.9.8.4/page"), "{uris:?}");
    assert!(uris.iter().any(|u| u == "http://target.test/x"), "{uris:?}");
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
/// Regression (review): `body` text was built only from parts mail-parser labelled plain
/// or HTML, so a `Content-Type` without its `;` (`text/plain charset=us-ascii`), another
/// text type (`text/enriched`), or a page sent as `application/octet-stream;
/// name="p.html"` hid the whole text from `body` rules, where SpamAssassin renders each.
#[test]
fn every_part_spamassassin_renders_is_body_text() {
    let part = |ct: &str, body: &str| format!("--b\r\nContent-Type: {ct}\r\n\r\n{body}\r\n");
    let raw = format!(
        "Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n{}{}{}{}{}{}--b--\r\n",
        part("text/plain charset=us-ascii", "one plain"),
        part("text/html charset=utf-8", "<p>two <b>html</b></p>"),
        part("text/enriched", "three enriched"),
        part("text/plainfoo", "four junk"),
        part("application/octet-stream; name=\"p.html\"", "<p>five <i>page</i></p>"),
        part("text/plain; name=\"q.htm\"", "<p>six <b>named</b></p>"),
    );
    let v = MessageView::parse(raw.as_bytes());
    let body = v.body_lines().join("\n");
    for words in [
        "one plain",
        "two html",
        "three enriched",
        "four junk",
        "five page",
        "six named",
    ] {
        assert!(body.contains(words), "{words:?} not in body: {body:?}");
    }
    assert!(!body.contains("<p>"), "markup left in body: {body:?}");
    let raw_text = v.rawbody_parts().join("\n");
    assert!(raw_text.contains("<p>five <i>page</i></p>"), "{raw_text:?}");
}

#[test]
fn vcards_are_rawbody_only_and_calendars_neither() {
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

#[test]
fn each_source_of_links_has_a_fair_share_and_keeps_both_ends() {
    assert_eq!(fair_shares(&[10, 20, 0, 5], 100), [10, 20, 0, 5]);
    assert_eq!(fair_shares(&[5000, 3, 5000, 0], 1000), [499, 3, 498, 0]);
    assert_eq!(fair_shares(&[5000, 5000, 5000, 5000], 10), [3, 3, 2, 2]);
    assert_eq!(fair_shares(&[], 10), Vec::<usize>::new());
    let list: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(both_ends(list.clone(), 4), ["0", "1", "8", "9"]);
    assert_eq!(both_ends(list.clone(), 3), ["0", "1", "9"]);
    assert_eq!(both_ends(list.clone(), 20), list);
}

/// Regression (review): a megabyte of `Content -Type: message/rfc822` levels (a spelling
/// only mail-parser reads as Content-Type) was not cut at the part limit, and parsing it
/// overflowed a session thread's stack (2 MiB), aborting the gateway.
#[test]
fn a_megabyte_of_oddly_spelled_nested_messages_is_parsed_on_a_session_stack() {
    let mut m = b"Subject: x\r\n".to_vec();
    for _ in 0..32_700 {
        m.extend_from_slice(b"Content -Type:message/rfc822\r\n\r\n");
    }
    let parsed = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || MessageView::parse(&m).too_many_parts)
        .unwrap()
        .join()
        .unwrap();
    assert!(parsed, "cut at the part limit");
}

/// Regression (review): a part labelled `x-uuencode` (or `uuencode`, `x-uue`, `uue`),
/// which Thunderbird decodes, was left encoded by mail-parser: a spam page sent so
/// reached the rules as encoded text, its link unseen.
#[test]
fn a_uuencoded_page_is_read_as_clients_show_it() {
    let page = b"<html><body><p>Cheap viagra <a href=\"http://spam.example/buy\">buy</a></p></body></html>\n";
    let encoded = String::from_utf8(uuencoding::encode(page, "page.html", 0o644)).unwrap();
    let raw = format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\
         Content-Transfer-Encoding: x-uuencode\r\n\r\n{encoded}"
    );
    let v = MessageView::parse(raw.as_bytes());
    assert!(
        v.body_text().contains("Cheap viagra"),
        "{:?}",
        v.body_text()
    );
    assert!(
        v.uris().iter().any(|u| u.contains("spam.example")),
        "{:?}",
        v.uris()
    );
}

/// Regression (attachment probe): an opaque-signed S/MIME message, which clients show as
/// its signed content, gave the rules no text at all, so spam signed so hid every word.
/// OpenSSL signed the fixtures, in DER and in streamed BER.
#[test]
fn the_text_of_an_opaque_signed_message_is_read() {
    for signed in [
        &include_bytes!("../../../tests/data/smime/signed-der.eml")[..],
        &include_bytes!("../../../tests/data/smime/signed-ber.eml")[..],
    ] {
        let v = MessageView::parse(signed);
        assert!(
            v.body_text().contains("Your invoice is attached."),
            "{:?}",
            v.body_text()
        );
        assert!(v.attachments().iter().any(|a| a.names == ["invoice.exe"]));
    }
}

/// A host written without a scheme or `www.` is listed as SpamAssassin lists it (its
/// "schemeless" URIs, which feed `uri` rules and URI blocklists): spam writes
/// `cheap-meds.biz` so that no link filter sees it. File names (`report.pdf`, `node.js`)
/// are not hosts, hosts inside links and addresses are read as those, and one not followed
/// by a blank or a mark that ends a link (`(x.example.com)`, `x.example.com,`) is not
/// listed, as SpamAssassin's pattern does not list it.
#[test]
fn hosts_written_without_a_scheme_are_listed() {
    let v = MessageView::parse(
        b"Subject: x\r\n\r\nOrder at cheap-meds.biz/order?id=7 today.\r\n\
          see pills.example.com or spam.example.net:8080/x\r\n\
          Read report.pdf with node.js, then mail bob@mail.example.org or \
          http://link.example.com/a (paren.example.com) comma.example.com, end\r\n",
    );
    let uris = v.uris();
    for listed in [
        "http://cheap-meds.biz/order?id=7",
        "http://pills.example.com",
        "http://spam.example.net:8080/x",
        "http://link.example.com/a",
        "mailto:bob@mail.example.org",
    ] {
        assert!(uris.iter().any(|u| u == listed), "{listed}: {uris:?}");
    }
    for unlisted in [
        "report.pdf",
        "node.js",
        "http://mail.example.org",
        "http://example.com/a",
        "http://paren.example.com",
        "http://comma.example.com",
    ] {
        assert!(
            !uris.iter().any(|u| u.ends_with(unlisted) || u == unlisted),
            "{unlisted}: {uris:?}"
        );
    }
    // What `spamassassin -D uri` (4.0) lists of names whose last label is a top-level
    // domain, and not of one whose last label is none.
    let v = MessageView::parse(
        b"Subject: x\r\n\r\nedit sendmail.cf and boot.zip and README.md and x.hta then\r\n",
    );
    let listed: Vec<String> = v.uris().iter().map(|u| u.to_ascii_lowercase()).collect();
    for host in ["sendmail.cf", "boot.zip", "readme.md"] {
        assert!(
            listed.contains(&format!("http://{host}")),
            "{host}: {listed:?}"
        );
    }
    assert!(!listed.iter().any(|u| u.contains("x.hta")), "{listed:?}");
    // A name that is no host does not hide one after a start mark inside it (review), as
    // SpamAssassin's scan starts again there.
    for text in [
        "see notes.txt/cheap-meds.biz/order now",
        "%a.com/x,cheap-meds.biz/order now",
    ] {
        let v = MessageView::parse(format!("Subject: x\r\n\r\n{text}\r\n").as_bytes());
        assert!(
            v.uris().iter().any(|u| u == "http://cheap-meds.biz/order"),
            "{text}: {:?}",
            v.uris()
        );
    }
}
