//! The `Received:` trace header (RFC 5321 §4.4) we prepend to every accepted message.

use crate::mail::date::rfc5322_now;
use crate::spool::{Envelope, QueueId};
use std::net::IpAddr;

/// Builds the header, CRLF-terminated and folded.
pub fn received_header(
    envelope: &Envelope,
    hostname: &str,
    id: &QueueId,
    esmtp: bool,
    tls: bool,
) -> String {
    let literal = match envelope.client_ip {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    // RFC 3848 / RFC 6531 protocol names.
    let protocol = match (envelope.smtputf8, esmtp, tls) {
        (true, _, true) => "UTF8SMTPS",
        (true, _, false) => "UTF8SMTP",
        (false, true, true) => "ESMTPS",
        (false, true, false) => "ESMTP",
        (false, false, true) => "SMTPS",
        (false, false, false) => "SMTP",
    };
    let helo = trace_helo(&envelope.helo, envelope.smtputf8);
    let date = rfc5322_now();
    let mut header = format!(
        "Received: from {helo} ({literal})\r\n\tby {hostname} (mxguard) with {protocol} id {id}"
    );
    if let [only] = envelope.rcpt_to.as_slice() {
        header.push_str(&format!("\r\n\tfor <{only}>"));
    }
    header.push_str(&format!(";\r\n\t{date}\r\n"));
    header
}

/// Longest greeting written into the header: a domain name's 255 octets.
const MAX_TRACE_HELO: usize = 255;

/// The client's greeting as the header shows it: without SMTPUTF8 the message is 7-bit, so
/// a UTF-8 greeting is written as its A-label; then only what a domain name or an address
/// literal holds is kept (with SMTPUTF8, any non-ASCII character but blanks and
/// controls), anything else written `?`, and the result is cut to 255 octets.
/// Checked after the conversion, whose UTS-46 mapping turns fullwidth `（；）` into
/// `(;)`, some characters into a space, and `㌖` into six letters: read before it, a
/// greeting closed our own comment and wrote a `Received:` line over 998 octets.
fn trace_helo(helo: &str, smtputf8: bool) -> String {
    let converted = if !smtputf8 && !helo.is_ascii() {
        idna::domain_to_ascii(helo).unwrap_or_else(|_| helo.to_string())
    } else {
        helo.to_string()
    };
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
            || (smtputf8 && !c.is_ascii() && !c.is_whitespace() && !c.is_control())
    };
    let mut out = String::new();
    for c in converted.chars().map(|c| if allowed(c) { c } else { '?' }) {
        if out.len() + c.len_utf8() > MAX_TRACE_HELO {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_envelope() -> Envelope {
        Envelope {
            mail_from: "a@b.example".into(),
            rcpt_to: vec!["u@example.test".into()],
            client_ip: "192.0.2.7".parse().unwrap(),
            helo: "client.example".into(),
            received_at: 0,
            body_8bit: false,
            smtputf8: false,
            verdict: "accept".into(),
            score: 0.0,
            is_dsn: false,
            rules: Vec::new(),
        }
    }

    #[test]
    fn header_names_client_protocol_and_single_recipient() {
        let env = test_envelope();
        let id = QueueId::parse("ABC123").unwrap();
        let h = received_header(&env, "mx.example.test", &id, true, true);
        assert!(h.starts_with("Received: from client.example ([192.0.2.7])\r\n\tby mx.example.test (mxguard) with ESMTPS id ABC123\r\n\tfor <u@example.test>;\r\n\t"), "{h}");
        assert!(h.ends_with("\r\n"));
        assert!(!h.contains("\n\n"));
    }

    /// Regression (review): a UTF-8 greeting went raw into the header of a message sent
    /// without SMTPUTF8, which is 7-bit: the internal server may refuse or mangle it.
    #[test]
    fn a_utf8_greeting_is_written_as_ascii_without_smtputf8() {
        let mut envelope = Envelope {
            helo: "j\u{f6}rg.example".into(),
            ..test_envelope()
        };
        let id = QueueId::generate();
        let header = received_header(&envelope, "gw.example.test", &id, true, false);
        assert!(header.is_ascii(), "{header}");
        assert!(
            header.starts_with("Received: from xn--jrg-sna.example ("),
            "{header}"
        );
        envelope.helo = "bad name \u{2603}".into();
        let header = received_header(&envelope, "gw.example.test", &id, true, false);
        assert!(header.is_ascii(), "{header}");
        envelope.smtputf8 = true;
        envelope.helo = "j\u{f6}rg.example".into();
        let header = received_header(&envelope, "gw.example.test", &id, true, false);
        assert!(header.contains("j\u{f6}rg.example"), "{header}");
    }

    /// Regression (review): the greeting was filtered before its IDNA conversion, which
    /// maps fullwidth brackets and semicolons to ASCII and expands some characters, so a
    /// greeting closed our comment, wrote a `;` into the from clause, or made the line
    /// longer than 998 octets (the internal server refused it after we said 250).
    #[test]
    fn a_greeting_cannot_break_the_header_after_conversion() {
        let id = QueueId::generate();
        for helo in [
            "mail.google.com\u{ff08}\u{ff3b}209.85.220.41\u{ff3d}\u{ff09}\u{ff1b}",
            "x\u{ff09}\u{ff1b}by\u{a8}gmail.com",
            &"\u{3316}.".repeat(80),
            "a(b)c;d e\tf",
        ] {
            let envelope = Envelope {
                helo: helo.to_string(),
                ..test_envelope()
            };
            let header = received_header(&envelope, "gw.example.test", &id, true, false);
            let from = header
                .strip_prefix("Received: from ")
                .and_then(|h| h.split_once(" ([192.0.2.7])"))
                .map(|(from, _)| from)
                .unwrap_or_else(|| panic!("{header}"));
            assert!(from.len() <= 255, "{helo:?}: {from}");
            assert!(
                !from.contains(['(', ')', ';', ' ', '\t']),
                "{helo:?}: {from}"
            );
            assert!(header.lines().all(|l| l.len() <= 998), "{header}");
        }
        let bracketed = Envelope {
            helo: "[IPv6:2001:db8::1]".into(),
            ..test_envelope()
        };
        let header = received_header(&bracketed, "gw.example.test", &id, true, false);
        assert!(
            header.starts_with("Received: from [IPv6:2001:db8::1] ("),
            "{header}"
        );
    }
}
