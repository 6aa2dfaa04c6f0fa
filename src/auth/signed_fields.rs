//! The bound on how many header fields one DKIM or ARC signature may sign (its `h=` list).
//!
//! mail-auth picks the signed fields of a signature by searching, for every `h=` entry, the
//! names seen before it and then the header section: work that grows with the square of the
//! list, synchronous on the session's worker and out of reach of the stage deadline. The
//! list is the sender's to write (a signature of its own domain, with any `b=`), so 80,000
//! names in half a megabyte of header held a worker for seconds, every session on it
//! waited, and a DMARC check running beside it ran out of time (`temperror`, no `550`).
//! A signature naming more fields than any signer needs is not verified: `permerror`.

use super::dkim::{DkimSignatureResult, DkimVerdict};
use mail_auth::AuthenticatedMessage;

/// Most header fields one signature may sign. Signers name a dozen or two, oversigning
/// ones (each name once more, so none can be added) about twice that.
pub const MAX_SIGNED_FIELDS: usize = 100;

/// How many of the set-aside signatures are reported (each is a line of our header).
const MAX_REPORTED: usize = 5;

/// The reason given for a signature set aside for its length.
fn too_many_fields() -> String {
    format!("signs more than {MAX_SIGNED_FIELDS} header fields")
}

/// The reason given for a signature that leaves a From field unsigned.
const FROM_UNSIGNED: &str = "does not sign every From field";

/// Takes out of `message` (so nothing verifies them) the DKIM signatures that sign too
/// many fields, and, of a message with several From fields, those that do not sign every
/// one, and returns their results (`permerror`, at most [`MAX_REPORTED`]) and their
/// `Authentication-Results` text. A signature names a field once for each instance it
/// signs, from the bottom up (RFC 6376 §5.4.2): a From field added above a signed message
/// (a newsletter of the domain, resent under `From: ceo@` of the same domain) left the
/// signature valid and aligned, so DMARC passed for an author the signer never wrote.
pub fn set_aside_dkim(
    message: &mut AuthenticatedMessage<'_>,
) -> (Vec<DkimSignatureResult>, String) {
    let from_fields = message
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"from"))
        .count();
    let mut results = Vec::new();
    let mut text = String::new();
    message.dkim_headers.retain(|h| {
        let signature = &h.header;
        let signed_froms = || {
            signature
                .h
                .iter()
                .filter(|n| n.eq_ignore_ascii_case("from"))
                .count()
        };
        let reason = if signature.h.len() > MAX_SIGNED_FIELDS {
            too_many_fields()
        } else if from_fields > 1 && signed_froms() < from_fields {
            FROM_UNSIGNED.to_owned()
        } else {
            return true;
        };
        if results.len() < MAX_REPORTED {
            let domain = pvalue(&signature.d.to_ascii_lowercase());
            let selector = pvalue(&signature.s);
            text.push_str(&format!(";\r\n\tdkim=permerror ({reason})"));
            if !domain.is_empty() {
                text.push_str(&format!(" header.d={domain}"));
            }
            if !selector.is_empty() {
                text.push_str(&format!(" header.s={selector}"));
            }
            results.push(DkimSignatureResult {
                verdict: DkimVerdict::PermError,
                domain,
                selector,
                reason,
            });
        }
        false
    });
    (results, text)
}

/// Why the ARC chain of `message` is not verified: its newest ARC-Message-Signature (the one
/// a verifier hashes) signs too many fields. Every one is checked, so a chain cannot be
/// made to pass by the order of its sets.
pub fn arc_refused(message: &AuthenticatedMessage<'_>) -> Option<String> {
    message
        .ams_headers
        .iter()
        .any(|h| h.header.h.len() > MAX_SIGNED_FIELDS)
        .then(too_many_fields)
}

/// `value` (the sender's to write) as a property value of our header, as mail-auth writes
/// its own; empty when nothing is left.
fn pvalue(value: &str) -> String {
    value
        .chars()
        .filter(|&c| super::is_pvalue_char(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(fields: usize) -> String {
        let h: Vec<String> = (0..fields).map(|n| format!("x-f{n}")).collect();
        format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=Evil.test; s=s1;\r\n \
             h={}; bh=AAAA; b=AAAA\r\nFrom: a@evil.test\r\nSubject: x\r\n\r\nHi.\r\n",
            h.join(":")
        )
    }

    #[test]
    fn a_signature_within_the_bound_stays() {
        let raw = signed(MAX_SIGNED_FIELDS);
        let mut message = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
        let (results, text) = set_aside_dkim(&mut message);
        assert_eq!(message.dkim_headers.len(), 1);
        assert!(results.is_empty());
        assert!(text.is_empty());
    }

    #[test]
    fn a_signature_past_the_bound_is_a_permerror_and_not_verified() {
        let raw = signed(MAX_SIGNED_FIELDS + 1);
        let mut message = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
        let (results, text) = set_aside_dkim(&mut message);
        assert!(message.dkim_headers.is_empty());
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].verdict, DkimVerdict::PermError);
        assert_eq!(results[0].domain, "evil.test");
        assert_eq!(
            text,
            ";\r\n\tdkim=permerror (signs more than 100 header fields) \
             header.d=evil.test header.s=s1"
        );
    }

    #[test]
    fn property_values_drop_what_a_pvalue_may_not_hold() {
        assert_eq!(pvalue("a.b-c_d"), "a.b-c_d");
        assert_eq!(pvalue("x; dkim=pass (y)"), "xdkimpassy");
        assert_eq!(pvalue("\"\\"), "");
    }
}
