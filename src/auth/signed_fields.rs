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

/// The reason given for a signature that does not sign From at all.
const NO_FROM_SIGNED: &str = "does not sign the From field";

/// The reason given for a signature made with SHA-1.
const SHA1_SIGNATURE: &str = "rsa-sha1 is not accepted (RFC 8301)";

/// Takes out of `message` (so nothing verifies them) the DKIM signatures that sign too
/// many fields, that do not sign From (RFC 6376 §5.4: `h=` MUST name it; mail-auth does
/// not check, so a From added to a signed message passed as the signer's), that are made
/// with `rsa-sha1` (RFC 8301 §3.1: verifiers MUST NOT take them as valid; SHA-1 collisions
/// are within reach), and, of a message with several From fields, those that do not sign
/// every one, and returns their results (`permerror`, at most [`MAX_REPORTED`]) and their
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
        } else if signature.a == mail_auth::common::crypto::Algorithm::RsaSha1 {
            SHA1_SIGNATURE.to_owned()
        } else if signed_froms() == 0 {
            NO_FROM_SIGNED.to_owned()
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
        // From first: a signature that does not sign it is set aside for that.
        let h: Vec<String> = std::iter::once("from".to_owned())
            .chain((1..fields).map(|n| format!("x-f{n}")))
            .collect();
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

    /// Regression (review): `rsa-sha1` signatures verified (RFC 8301 §3.1: a verifier MUST
    /// NOT take them as valid), and so did one whose `h=` leaves out From (RFC 6376 §5.4).
    #[test]
    fn sha1_signatures_and_signatures_without_from_are_set_aside() {
        let sha1 = signed(3).replace("a=rsa-sha256", "a=rsa-sha1");
        let mut message = AuthenticatedMessage::parse(sha1.as_bytes()).unwrap();
        let (results, text) = set_aside_dkim(&mut message);
        assert!(message.dkim_headers.is_empty());
        assert_eq!(results.len(), 1);
        assert!(
            text.contains("dkim=permerror (rsa-sha1 is not accepted (RFC 8301))"),
            "{text}"
        );
        let no_from = signed(3).replace("h=from:", "h=");
        let mut message = AuthenticatedMessage::parse(no_from.as_bytes()).unwrap();
        let (_, text) = set_aside_dkim(&mut message);
        assert!(message.dkim_headers.is_empty());
        assert!(
            text.contains("dkim=permerror (does not sign the From field)"),
            "{text}"
        );
    }

    #[test]
    fn property_values_drop_what_a_pvalue_may_not_hold() {
        assert_eq!(pvalue("a.b-c_d"), "a.b-c_d");
        assert_eq!(pvalue("x; dkim=pass (y)"), "xdkimpassy");
        assert_eq!(pvalue("\"\\"), "");
    }
}
