//! The content of an opaque-signed S/MIME message (`application/pkcs7-mime;
//! smime-type=signed-data`, `smime.p7m`): the MIME entity a CMS SignedData carries inside
//! the signature. Outlook and Thunderbird open it and show that entity, attachments and
//! all, so what it holds is judged as an attached message would be. The signature is not
//! verified: a signature says who signed, not that the file is harmless.
//!
//! Signers write BER as well as DER: OpenSSL's `-stream` and Outlook use indefinite
//! lengths and cut the content into a constructed OCTET STRING of pieces. `asn1-rs` reads
//! the elements; the pieces are joined here.

use asn1_rs::{Any, Class, FromBer, Header, Length, Tag};
use mail_parser::{Message, MessagePart, MimeHeaders};

/// `id-signedData` (1.2.840.113549.1.7.2), as its content bytes.
const SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];

/// Deepest nesting of constructed OCTET STRING pieces followed; signers nest one level.
const MAX_PIECE_DEPTH: usize = 8;

/// Declared types of a CMS object sent as a MIME part.
const PKCS7_TYPES: [&str; 2] = ["application/pkcs7-mime", "application/x-pkcs7-mime"];

/// Whether a part is a CMS object by its declared type or a name ending `.p7m`, as mail
/// clients pick the parts they open as S/MIME.
pub fn is_pkcs7(content_type: &str, names: &[String]) -> bool {
    PKCS7_TYPES.contains(&content_type) || super::file_names::any_has_extension(names, "p7m")
}

/// The MIME entity inside `part` of `message` when the part is an opaque S/MIME
/// signature (by its type or a `.p7m` name), as a client opens it to show the text.
pub fn entity_in_part(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let content_type = part
        .content_type()
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let names: Vec<String> = part
        .attachment_name()
        .map(str::to_string)
        .into_iter()
        .collect();
    if !is_pkcs7(&content_type, &names) {
        return None;
    }
    signed_content(&super::lenient::file_bytes(message, part).data)
}

/// The content a CMS SignedData (`ContentInfo` of type `id-signedData`) encapsulates, or
/// `None` for any other object (an encrypted one, a detached signature) or bytes that do
/// not parse. The containers on the way are opened by their headers only: what follows
/// the content (certificates, signer infos, whose unsigned attributes a sender may nest
/// past the reader's depth limit) is never read, so it cannot make the content unreadable
/// (review).
pub fn signed_content(data: &[u8]) -> Option<Vec<u8>> {
    let info = open(data, Class::Universal, Tag::Sequence)?;
    let (kind, after_kind) = element(info)?;
    if universal(&kind, Tag::Oid)? != SIGNED_DATA {
        return None;
    }
    let explicit = open(after_kind, Class::ContextSpecific, Tag(0))?;
    let signed = open(explicit, Class::Universal, Tag::Sequence)?;
    // SignedData: version, digestAlgorithms, then encapContentInfo.
    let (_, after_version) = element(signed)?;
    let (_, after_digests) = element(after_version)?;
    let encap = open(after_digests, Class::Universal, Tag::Sequence)?;
    let (content_type, after_type) = element(encap)?;
    universal(&content_type, Tag::Oid)?;
    let explicit = open(after_type, Class::ContextSpecific, Tag(0))?;
    let (octets, _) = element(explicit)?;
    let mut content = Vec::new();
    join_pieces(&octets, 0, &mut content)?;
    (!content.is_empty()).then_some(content)
}

/// The content of the constructed element of this class and tag at the start of `data`,
/// by its header alone: a definite length's bytes, or for an indefinite one the rest of
/// `data` (its elements end at their end-of-contents mark, which is never needed here).
fn open(data: &[u8], class: Class, tag: Tag) -> Option<&[u8]> {
    let (rest, header) = Header::from_ber(data).ok()?;
    if header.class() != class || header.tag() != tag || !header.is_constructed() {
        return None;
    }
    match header.length() {
        Length::Definite(len) => rest.get(..len),
        Length::Indefinite => Some(rest),
    }
}

/// The element at the start of `data`, read whole, and what follows it.
fn element(data: &[u8]) -> Option<(Any<'_>, &[u8])> {
    let (rest, any) = Any::from_ber(data).ok()?;
    Some((any, rest))
}

/// The elements one after another in a constructed element's content; stops at the first
/// that does not parse.
fn elements(mut rest: &[u8]) -> impl Iterator<Item = Any<'_>> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (next, any) = Any::from_ber(rest).ok()?;
        rest = next;
        Some(any)
    })
}

/// The content of a universal element of this tag.
fn universal<'a>(any: &Any<'a>, tag: Tag) -> Option<&'a [u8]> {
    (any.class() == Class::Universal && any.tag() == tag).then_some(any.data)
}

/// Appends an OCTET STRING's bytes: its content when primitive, its pieces in order when
/// constructed (BER).
fn join_pieces(octets: &Any<'_>, depth: usize, out: &mut Vec<u8>) -> Option<()> {
    let data = universal(octets, Tag::OctetString)?;
    if !octets.header.is_constructed() {
        out.extend_from_slice(data);
        return Some(());
    }
    if depth >= MAX_PIECE_DEPTH {
        return None;
    }
    for piece in elements(data) {
        join_pieces(&piece, depth + 1, out)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// The CMS object of one of the fixtures OpenSSL signed (`tests/data/smime`).
    fn p7m_of(fixture: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(fixture);
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        let compact: String = body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .unwrap()
    }

    /// OpenSSL signs in DER by default and in BER with `-stream` (indefinite lengths, the
    /// content cut into pieces, as Outlook writes it): both give the signed entity.
    #[test]
    fn the_signed_entity_is_read_from_der_and_ber() {
        for fixture in [
            &include_bytes!("../../tests/data/smime/signed-der.eml")[..],
            &include_bytes!("../../tests/data/smime/signed-ber.eml")[..],
        ] {
            let content = signed_content(&p7m_of(fixture)).unwrap();
            let text = String::from_utf8_lossy(&content);
            assert!(text.starts_with("Content-Type: multipart/mixed;"), "{text}");
            assert!(text.contains("filename=\"invoice.exe\""));
            assert!(text.ends_with("--inner--\r\n"));
        }
    }

    /// ContentInfo(signedData, [0] SignedData(1, {}, (data, [0] `octets`))), every length
    /// indefinite, as a streaming signer writes it.
    fn streamed_cms(octets: &[u8]) -> Vec<u8> {
        let mut cms = vec![0x30, 0x80, 0x06, 0x09];
        cms.extend_from_slice(SIGNED_DATA);
        cms.extend_from_slice(&[0xA0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x31, 0x00]);
        cms.extend_from_slice(&[0x30, 0x80, 0x06, 0x09]);
        cms.extend_from_slice(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01]);
        cms.extend_from_slice(&[0xA0, 0x80]);
        cms.extend_from_slice(octets);
        cms.extend_from_slice(&[0x00; 10]);
        cms
    }

    #[test]
    fn pieces_are_joined_in_order() {
        // The content in two pieces, the second nested one level deeper.
        let mut octets = vec![0x24, 0x80, 0x04, 0x03, b'a', b'b', b'c'];
        octets.extend_from_slice(&[0x24, 0x80, 0x04, 0x02, b'd', b'e', 0x00, 0x00]);
        octets.extend_from_slice(&[0x00, 0x00]);
        assert_eq!(
            signed_content(&streamed_cms(&octets)).as_deref(),
            Some(&b"abcde"[..])
        );
        // Pieces nested past the bound are refused, not followed.
        let mut deep = [0x24, 0x80].repeat(MAX_PIECE_DEPTH + 4);
        deep.extend_from_slice(&[0x04, 0x01, b'x']);
        deep.extend_from_slice(&[0x00, 0x00].repeat(MAX_PIECE_DEPTH + 4));
        assert_eq!(signed_content(&streamed_cms(&deep)), None);
    }

    /// Regression (review): what follows the content was read too, so 60 levels of
    /// indefinite lengths in an unsigned attribute (past the reader's depth limit of 50)
    /// made the whole object unreadable and the `invoice.exe` in it unjudged.
    #[test]
    fn what_follows_the_content_cannot_hide_it() {
        let mut octets = vec![0x04, 0x03, b'a', b'b', b'c', 0x00, 0x00];
        // After encapContentInfo's end: certificates and signer infos, deeply nested.
        octets.extend_from_slice(&[0x00, 0x00]);
        octets.extend_from_slice(&[0x31, 0x80].repeat(60));
        octets.extend_from_slice(&[0x00, 0x00].repeat(60));
        let cms = streamed_cms(&octets);
        assert_eq!(signed_content(&cms).as_deref(), Some(&b"abc"[..]));
    }

    #[test]
    fn other_objects_and_junk_give_nothing() {
        // Enveloped (encrypted) data: id-envelopedData, nothing to read.
        let mut enveloped = vec![0x30, 0x0D, 0x06, 0x09];
        enveloped.extend_from_slice(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03]);
        enveloped.extend_from_slice(&[0xA0, 0x00]);
        assert_eq!(signed_content(&enveloped), None);
        let junk: [&[u8]; 5] = [
            b"",
            b"MZ\x90\x00",
            &[0x30, 0x80],
            &[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0x30, 0x80].repeat(200),
        ];
        for bytes in junk {
            assert_eq!(signed_content(bytes), None);
        }
        // A signed object cut short.
        let cut = streamed_cms(&[0x04, 0x05, b'a']);
        assert_eq!(signed_content(&cut[..cut.len() - 10]), None);
    }

    #[test]
    fn pkcs7_parts_are_known_by_type_or_name() {
        assert!(is_pkcs7("application/pkcs7-mime", &[]));
        assert!(is_pkcs7("application/x-pkcs7-mime", &[]));
        assert!(is_pkcs7(
            "application/octet-stream",
            &["SMIME.P7M".to_string()]
        ));
        assert!(!is_pkcs7(
            "application/pkcs7-signature",
            &["smime.p7s".to_string()]
        ));
    }
}
