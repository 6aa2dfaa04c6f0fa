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
    let mut helo: String = envelope
        .helo
        .chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .take(255)
        .collect();
    // Without SMTPUTF8 the message is 7-bit: a UTF-8 greeting is written as its A-label,
    // or with `?` for what no A-label can carry.
    if !envelope.smtputf8 && !helo.is_ascii() {
        helo = idna::domain_to_ascii(&helo).unwrap_or_else(|_| {
            helo.chars()
                .map(|c| if c.is_ascii() { c } else { '?' })
                .collect()
        });
    }
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
}
