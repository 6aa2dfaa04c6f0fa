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
    let helo: String = envelope
        .helo
        .chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .take(255)
        .collect();
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

    #[test]
    fn header_names_client_protocol_and_single_recipient() {
        let env = Envelope {
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
        };
        let id = QueueId::parse("ABC123").unwrap();
        let h = received_header(&env, "mx.example.test", &id, true, true);
        assert!(h.starts_with("Received: from client.example ([192.0.2.7])\r\n\tby mx.example.test (mxguard) with ESMTPS id ABC123\r\n\tfor <u@example.test>;\r\n\t"), "{h}");
        assert!(h.ends_with("\r\n"));
        assert!(!h.contains("\n\n"));
    }
}
