//! Tests of the verdict stamp: signing, verifying, the canonical forms, re-signing.
use super::*;

const MSG: &[u8] =
    b"From: a@b.test\r\nMessage-ID: <m1@b.test>\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n\r\n";

fn key() -> &'static [u8] {
    b"tier-key"
}

fn stamped(msg: &[u8]) -> Vec<u8> {
    let stamp = Stamp::new("gw1", 1_000, "accept", 0.5, "abcdef0123456789abcdef");
    let mut out = stamp.header(key(), msg).into_bytes();
    out.extend_from_slice(msg);
    out
}

#[test]
fn a_fresh_stamp_verifies_and_survives_lf_line_ends() {
    let m = stamped(MSG);
    let s = Stamp::verify(&[key()], &m, 1_100, Duration::from_secs(3600)).unwrap();
    assert_eq!(
        (s.gateway.as_str(), s.verdict.as_str(), s.score.as_str()),
        ("gw1", "accept", "0.50")
    );
    assert_eq!(s.fingerprint, "abcdef0123456789");
    let lf: Vec<u8> = String::from_utf8(m)
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    assert!(Stamp::verify(&[key()], &lf, 1_100, Duration::from_secs(3600)).is_ok());
}

#[test]
fn forgery_tampering_other_keys_and_age_are_refused() {
    let m = stamped(MSG);
    let day = Duration::from_secs(86_400);
    let other: &[u8] = b"another-key";
    assert_eq!(
        Stamp::verify(&[other], &m, 1_100, day),
        Err(StampError::BadSignature)
    );
    let tampered = String::from_utf8(m.clone())
        .unwrap()
        .replace("line two", "line 2");
    assert_eq!(
        Stamp::verify(&[key()], tampered.as_bytes(), 1_100, day),
        Err(StampError::BadSignature)
    );
    let verdict_changed = String::from_utf8(m.clone())
        .unwrap()
        .replace("r=accept", "r=tag");
    assert_eq!(
        Stamp::verify(&[key()], verdict_changed.as_bytes(), 1_100, day),
        Err(StampError::BadSignature)
    );
    assert!(matches!(
        Stamp::verify(&[key()], &m, 100_000, Duration::from_secs(60)),
        Err(StampError::Stale { .. })
    ));
    assert_eq!(
        Stamp::verify(&[key()], MSG, 1_100, day),
        Err(StampError::Missing)
    );
    let forged = b"X-Mxguard-Stamp: v=4; g=gw1; t=1000; r=accept; s=0.00; f=ab; b=AAAA\r\n";
    let mut f = forged.to_vec();
    f.extend_from_slice(MSG);
    assert_eq!(
        Stamp::verify(&[key()], &f, 1_100, day),
        Err(StampError::BadSignature)
    );
}

/// Regression (suspected last round, shown here): a message without a Message-ID was
/// stamped over an empty id, and an internal Postfix adds one to mail from its own
/// host (`local_header_rewrite_clients`), so the stamp no longer verified there. The
/// id still binds a stamp made over one.
#[test]
fn a_stamp_made_without_a_message_id_survives_one_added_downstream() {
    let no_id = b"From: a@b.test\r\nSubject: hi\r\n\r\nline one\r\n";
    let day = Duration::from_secs(86_400);
    let added = String::from_utf8(stamped(no_id)).unwrap().replace(
        "Subject: hi\r\n",
        "Subject: hi\r\nMessage-ID: <q1@internal.test>\r\n",
    );
    assert!(Stamp::verify(&[key()], added.as_bytes(), 1_100, day).is_ok());
    let other_id = String::from_utf8(stamped(MSG))
        .unwrap()
        .replace("<m1@b.test>", "<m2@b.test>");
    assert_eq!(
        Stamp::verify(&[key()], other_id.as_bytes(), 1_100, day),
        Err(StampError::BadSignature)
    );
}

/// Regression (review): the MAC covered the body and the Message-ID only, so a stamp
/// obtained for one message (a bounce used to return it) vouched for the same body
/// under any author, subject or recipients, sent straight to the internal server.
#[test]
fn a_stamp_binds_the_author_recipients_and_subject() {
    let day = Duration::from_secs(86_400);
    let m = String::from_utf8(stamped(MSG)).unwrap();
    for (from, to) in [
        ("From: a@b.test\r\n", "From: ceo@bank.test\r\n"),
        ("Subject: hi\r\n", "Subject: urgent wire transfer\r\n"),
        (
            "Subject: hi\r\n",
            "Subject: hi\r\nReply-To: thief@x.test\r\n",
        ),
        (
            "Subject: hi\r\n",
            "Subject: hi\r\nTo: victim@example.test\r\n",
        ),
        ("Subject: hi\r\n", "Subject: hi\r\nFrom: second@x.test\r\n"),
        // Regression (review): the MIME fields were unsigned, so a body judged as
        // text could be re-read as a multipart with an attachment.
        (
            "Subject: hi\r\n",
            "Subject: hi\r\nContent-Type: multipart/mixed; boundary=B\r\n",
        ),
        (
            "Subject: hi\r\n",
            "Subject: hi\r\nContent-Transfer-Encoding: base64\r\n",
        ),
        ("Subject: hi\r\n", "Subject: hi\r\nMIME-Version: 1.0\r\n"),
        // Regression (review): `Content-Disposition` was unsigned, so a stamped text
        // body could be turned into an attachment the attachment policy refuses.
        (
            "Subject: hi\r\n",
            "Subject: hi\r\nContent-Disposition: attachment; filename=\"invoice.js\"\r\n",
        ),
    ] {
        let changed = m.replacen(from, to, 1);
        assert_eq!(
            Stamp::verify(&[key()], changed.as_bytes(), 1_100, day),
            Err(StampError::BadSignature),
            "{to:?}"
        );
    }
    // Refolding a signed field, or adding fields it does not sign, keeps it valid.
    let refolded = m.replacen("Subject: hi\r\n", "Subject:\r\n   hi\r\n", 1);
    assert!(Stamp::verify(&[key()], refolded.as_bytes(), 1_100, day).is_ok());
    let added = m.replacen("Subject: hi\r\n", "Subject: hi\r\nDelivered-To: u@x\r\n", 1);
    assert!(Stamp::verify(&[key()], added.as_bytes(), 1_100, day).is_ok());
    // Version 1 and 2 stamps (which signed less) are no longer trusted.
    for old in ["v=1;", "v=2;"] {
        let old = m.replacen("v=6;", old, 1);
        assert!(matches!(
            Stamp::verify(&[key()], old.as_bytes(), 1_100, day),
            Err(StampError::Malformed(_))
        ));
    }
}

/// Regression (review): a stamp dated in the future had age 0, so a member whose clock
/// ran a day ahead issued stamps valid for a day more than `stamp_max_age`.
#[test]
fn a_stamp_dated_ahead_of_the_clock_is_refused() {
    let m = stamped(MSG);
    let hour = Duration::from_secs(3600);
    assert!(Stamp::verify(&[key()], &m, 1_000 - CLOCK_SKEW, hour).is_ok());
    assert_eq!(
        Stamp::verify(&[key()], &m, 1_000 - CLOCK_SKEW - 1, hour),
        Err(StampError::Future {
            ahead: CLOCK_SKEW + 1
        })
    );
}

/// Regression (review): blanks were collapsed inside quoted strings too, and values
/// read through a lossy UTF-8 decoding: a stamped message whose `boundary="b  1"` the
/// tier read as plain text verified with `boundary="b 1"`, under which a reader finds
/// the attachment the tier never judged; and two different invalid bytes read alike.
#[test]
fn blanks_inside_quotes_and_raw_bytes_are_signed_as_they_are() {
    let day = Duration::from_secs(86_400);
    let msg = b"From: a@b.test\r\nContent-Type: multipart/mixed;\r\n boundary=\"b  1\"\r\nSubject: caf\xe9\r\n\r\nbody\r\n";
    let m = stamped(msg);
    assert!(Stamp::verify(&[key()], &m, 1_100, day).is_ok());
    let text = |m: &[u8]| m.to_vec();
    let replace = |m: &[u8], from: &[u8], to: &[u8]| {
        let at = m.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = m[..at].to_vec();
        out.extend_from_slice(to);
        out.extend_from_slice(&m[at + from.len()..]);
        out
    };
    let one_blank = replace(&text(&m), b"\"b  1\"", b"\"b 1\"");
    assert_eq!(
        Stamp::verify(&[key()], &one_blank, 1_100, day),
        Err(StampError::BadSignature)
    );
    let other_byte = replace(&text(&m), b"caf\xe9", b"caf\xff");
    assert_eq!(
        Stamp::verify(&[key()], &other_byte, 1_100, day),
        Err(StampError::BadSignature)
    );
    // Refolding and blanks outside quotes still do not matter.
    let refolded = replace(&text(&m), b";\r\n boundary", b";   boundary");
    assert!(Stamp::verify(&[key()], &refolded, 1_100, day).is_ok());
}

#[test]
fn canonical_values_keep_quoted_strings_whole() {
    use canonical::canonical_value;
    assert_eq!(canonical_value(b"  a \t b  ", true, true), b"a b");
    assert_eq!(
        canonical_value(b"x; b=\"p  q\"  r", true, true),
        b"x; b=\"p  q\" r"
    );
    assert_eq!(
        canonical_value(b"\"a\\\"  b\"  c", true, true),
        b"\"a\\\"  b\" c"
    );
    assert_eq!(canonical_value(b"a\r\n\tb", true, true), b"a b");
    // Free text keeps no quoted strings: a lone `"` leaves nothing raw.
    assert_eq!(
        canonical_value(b"12\" pizza  for  two", false, true),
        b"12\" pizza for two"
    );
}

/// A copy changed below the stamp (as the relay's 7-bit conversion changes it) is
/// signed again with the same fields; without a stamp of the key on the original (none,
/// several, another key's), nothing is made.
#[test]
fn resign_signs_the_message_as_it_is_now() {
    let day = Duration::from_secs(86_400);
    let m = String::from_utf8(stamped(MSG)).unwrap();
    let changed = m.replace("line two", "line 2");
    assert!(Stamp::verify(&[key()], changed.as_bytes(), 1_100, day).is_err());
    let again = resign(&[key()], m.as_bytes(), changed.as_bytes()).unwrap();
    let stamp = Stamp::verify(&[key()], &again, 1_100, day).unwrap();
    assert_eq!((stamp.gateway.as_str(), stamp.time), ("gw1", 1_000));
    assert_eq!(stamp.verdict, "accept");
    assert!(resign(&[key()], MSG, MSG).is_none());
    let twice = stamped(&stamped(MSG));
    assert!(resign(&[key()], &twice, &twice).is_none());
    // A stamp the key did not make is not made good.
    assert!(resign(&[b"another key"], m.as_bytes(), changed.as_bytes()).is_none());
    let forged = m.replace("b=", "b=AAAA");
    assert!(resign(&[key()], forged.as_bytes(), changed.as_bytes()).is_none());
}

/// Regression (review): stamps were checked against the tier's one key, so after a key
/// rotation every message stamped before it (queued, quarantined, converted to 7-bit on
/// its way) failed as forged. The key it replaced is still accepted, never used to sign.
#[test]
fn a_stamp_made_with_the_previous_key_verifies_and_is_signed_again_with_the_new_one() {
    let day = Duration::from_secs(86_400);
    let new: &[u8] = b"the-new-tier-key";
    let m = String::from_utf8(stamped(MSG)).unwrap();
    assert_eq!(
        Stamp::verify(&[new], m.as_bytes(), 1_100, day),
        Err(StampError::BadSignature)
    );
    assert!(Stamp::verify(&[new, key()], m.as_bytes(), 1_100, day).is_ok());
    let changed = m.replace("line two", "line 2");
    let again = resign(&[new, key()], m.as_bytes(), changed.as_bytes()).unwrap();
    assert!(Stamp::verify(&[new], &again, 1_100, day).is_ok());
    assert!(Stamp::verify(&[key()], &again, 1_100, day).is_err());
}

/// A stamp made over `msg` in an older `form`.
fn stamped_in(msg: &[u8], form: Form) -> Vec<u8> {
    let stamp = Stamp::new("gw1", 1_000, "accept", 0.5, "abcdef0123456789");
    let mut out = stamp.header_in(key(), msg, form).into_bytes();
    out.extend_from_slice(msg);
    out
}

/// A version 3 stamp made over `msg` (the form before blanks in quoted strings were kept).
fn stamped_v3(msg: &[u8]) -> Vec<u8> {
    stamped_in(msg, Form::V3)
}

/// Regression (review): `Content-Disposition` was not signed, so anyone holding a stamped
/// copy could add `Content-Disposition: attachment; filename="invoice.js"` (which the
/// attachment policy refuses as `ATTACH_BLOCKED_EXT`) and `stamp verify` still said
/// valid. Version 5 signs it; stamps of versions 3 and 4 (mail queued before an upgrade, a
/// peer not yet upgraded) verify only on a message without that field at the top.
#[test]
fn content_disposition_is_signed_and_older_stamps_verify_only_without_it() {
    let day = Duration::from_secs(86_400);
    let disposition = "Content-Disposition: attachment; filename=\"invoice.js\"\r\n";
    let with_disposition = |m: &[u8]| {
        String::from_utf8(m.to_vec()).unwrap().replacen(
            "Subject: hi\r\n",
            &format!("Subject: hi\r\n{disposition}"),
            1,
        )
    };
    for form in [Form::V3, Form::V4] {
        let plain = stamped_in(MSG, form);
        assert!(
            Stamp::verify(&[key()], &plain, 1_100, day).is_ok(),
            "{form:?}"
        );
        let added = with_disposition(&plain);
        assert!(
            matches!(
                Stamp::verify(&[key()], added.as_bytes(), 1_100, day),
                Err(StampError::Malformed(_))
            ),
            "{form:?} stamp vouched for an added Content-Disposition"
        );
        // Even made over a message that had one, it is not trusted.
        let made_with = stamped_in(with_disposition(MSG).as_bytes(), form);
        assert!(
            Stamp::verify(&[key()], &made_with, 1_100, day).is_err(),
            "{form:?}"
        );
    }
    // A version 5 (or later) stamp signs it: kept, refolded or with blanks outside quotes, it
    // verifies; added, changed or removed, it does not.
    let signed = stamped(with_disposition(MSG).as_bytes());
    assert!(String::from_utf8_lossy(&signed).starts_with("X-Mxguard-Stamp: v=6;"));
    assert!(Stamp::verify(&[key()], &signed, 1_100, day).is_ok());
    let text = String::from_utf8(signed).unwrap();
    let refolded = text.replacen("attachment; filename", "attachment;\r\n  filename", 1);
    assert!(Stamp::verify(&[key()], refolded.as_bytes(), 1_100, day).is_ok());
    for changed in [
        text.replacen("invoice.js", "invoice.exe", 1),
        text.replacen("\"invoice.js\"", "\"invoice .js\"", 1),
        text.replacen(disposition, "", 1),
    ] {
        assert_eq!(
            Stamp::verify(&[key()], changed.as_bytes(), 1_100, day),
            Err(StampError::BadSignature)
        );
    }
    let added = with_disposition(&stamped(MSG));
    assert_eq!(
        Stamp::verify(&[key()], added.as_bytes(), 1_100, day),
        Err(StampError::BadSignature)
    );
    // A part's own disposition lies in the body, which the body hash covers: it does not
    // keep an older stamp from verifying.
    let multipart = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: inline\r\n\r\nhi\r\n--b--\r\n";
    assert!(Stamp::verify(&[key()], &stamped_in(multipart, Form::V4), 1_100, day).is_ok());
}

/// Regression (review): version 4 refused the version 3 stamps of mail waiting in a queue
/// or a quarantine at the upgrade (the internal server's hook called it forged). They are
/// checked where version 3's form says what version 4's does; a quoted blank run in the
/// MIME fields, or bytes that are not UTF-8, are still refused.
#[test]
fn version_3_stamps_verify_where_their_form_is_unambiguous() {
    let day = Duration::from_secs(86_400);
    let plain = stamped_v3(MSG);
    let s = Stamp::verify(&[key()], &plain, 1_100, day).unwrap();
    assert_eq!(s.gateway, "gw1");
    let tampered = String::from_utf8(plain.clone())
        .unwrap()
        .replace("line two", "line 2");
    assert_eq!(
        Stamp::verify(&[key()], tampered.as_bytes(), 1_100, day),
        Err(StampError::BadSignature)
    );
    let quoted_blanks = stamped_v3(
        b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"b  1\"\r\n\r\nbody\r\n",
    );
    assert!(matches!(
        Stamp::verify(&[key()], &quoted_blanks, 1_100, day),
        Err(StampError::Malformed(_))
    ));
    let not_utf8 = stamped_v3(b"From: a@b.test\r\nSubject: caf\xe9\r\n\r\nbody\r\n");
    assert!(matches!(
        Stamp::verify(&[key()], &not_utf8, 1_100, day),
        Err(StampError::Malformed(_))
    ));
    // Re-signed (a converted copy), it becomes the newest version.
    let again = resign(&[key()], &plain, &plain).unwrap();
    assert!(String::from_utf8_lossy(&again).starts_with("X-Mxguard-Stamp: v=6;"));
    assert!(Stamp::verify(&[key()], &again, 1_100, day).is_ok());
}

#[test]
fn strip_removes_every_stamp_and_nothing_else() {
    let m = stamped(&stamped(MSG));
    assert!(matches!(
        Stamp::verify(&[key()], &m, 1_100, Duration::from_secs(60)),
        Err(StampError::Several(2))
    ));
    assert_eq!(&*strip(&m), MSG);
}

/// Regression (review): a line that is no field (no colon) was signed by no form, so anyone
/// holding a stamped copy could add `URGENT: wire the money today`-like text without a
/// colon after the signed fields: the stamp still verified, and a reader that ends the
/// header section at such a line (mail-auth, Python's `email`) showed it as the body's
/// start. A lone CR inside a signed value was dropped, so `Subject: hi \rContent-Type: …`
/// (a second field to a reader taking CR for a line end) verified as the original.
/// Version 6 signs both; older stamps verify only where neither is present.
#[test]
fn lines_that_are_no_field_and_lone_crs_are_signed() {
    let day = Duration::from_secs(86_400);
    let junk = "Subject: hi\r\nURGENT wire 10k to IBAN XX00 today\r\n";
    let lone_cr = "Subject: hi \rContent-Type: text/html\r\n";
    let m = String::from_utf8(stamped(MSG)).unwrap();
    assert!(m.starts_with("X-Mxguard-Stamp: v=6;"), "{m}");
    assert!(Stamp::verify(&[key()], m.as_bytes(), 1_100, day).is_ok());
    for changed in [
        m.replacen("Subject: hi\r\n", junk, 1),
        m.replacen("Subject: hi\r\n", lone_cr, 1),
        // A review of the fix: lines with a colon that are no field to readers either.
        m.replacen(
            "Subject: hi\r\n",
            "Subject: hi\r\nURGENT wire 10k to IBAN: XX00\r\n",
            1,
        ),
        m.replacen("Subject: hi\r\n", "Subject: hi\r\n: wire the money\r\n", 1),
        m.replacen(
            "Subject: hi\r\n",
            "Subject: hi\r\nURGENT wire\r\n to: x\r\n",
            1,
        ),
        // And a later review: lines Python's `email` ends the header section at too.
        m.replacen(
            "Subject: hi\r\n",
            "Subject: hi\r\nNote : wire to IBAN\r\n",
            1,
        ),
        m.replacen(
            "Subject: hi\r\n",
            "Subject: hi\r\nN\u{f6}te: wire to IBAN\r\n",
            1,
        ),
        m.replacen(
            "Subject: hi\r\n",
            "Subject: hi\r\nFrom the CEO: wire now\r\n",
            1,
        ),
    ] {
        assert_eq!(
            Stamp::verify(&[key()], changed.as_bytes(), 1_100, day),
            Err(StampError::BadSignature),
            "{changed:?}"
        );
    }
    // A message that came with such a line keeps a version 6 stamp made over it.
    for odd in [junk, lone_cr] {
        let msg = String::from_utf8(MSG.to_vec())
            .unwrap()
            .replacen("Subject: hi\r\n", odd, 1);
        let signed = stamped(msg.as_bytes());
        assert!(
            Stamp::verify(&[key()], &signed, 1_100, day).is_ok(),
            "{odd:?}"
        );
        // Older forms do not vouch for one: neither added, nor there when they were made.
        for form in [Form::V3, Form::V4, Form::V5] {
            let old = String::from_utf8(stamped_in(MSG, form)).unwrap();
            let added = old.replacen("Subject: hi\r\n", odd, 1);
            assert!(
                Stamp::verify(&[key()], added.as_bytes(), 1_100, day).is_err(),
                "{form:?} {odd:?}"
            );
            assert!(
                matches!(
                    Stamp::verify(&[key()], &stamped_in(msg.as_bytes(), form), 1_100, day),
                    Err(StampError::Malformed(_))
                ),
                "{form:?} {odd:?}"
            );
            assert!(
                Stamp::verify(&[key()], old.as_bytes(), 1_100, day).is_ok(),
                "{form:?}"
            );
        }
    }
}
