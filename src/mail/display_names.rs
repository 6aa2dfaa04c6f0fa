//! The mailboxes of an address header (From, To, Reply-To…) with their display names read
//! as clients show them. mail-parser decodes a name's encoded words with its own charset
//! table, which turns `=?hz-gb-2312?…?=`, UTF-32 or `utf16` names into U+FFFD or mojibake
//! that Outlook and Apple Mail show as text (header probe: `CASINO Pharmacy Deals` in such
//! a name gave the rules and the classifier nothing). Here the parser is kept from the
//! encoded words, and they are decoded as the Subject's are
//! ([`decode_unstructured`]).

use super::encoded_words::decode_unstructured;
use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

/// Stands for `=?` while the address parser reads the value, so that it leaves encoded
/// words as written.
const ENCODED_WORD_GUARD: &str = "=\u{E000}?";

/// One mailbox of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name: as written (encoded words kept) or as shown.
    pub name: Option<String>,
    /// The address (`local@domain`).
    pub address: Option<String>,
}

/// The mailboxes of address-list value `raw` (the text after the colon), group members
/// included; each name as written when `keep_encoded`, else decoded as clients show it.
pub fn mailboxes(raw: &str, keep_encoded: bool) -> Vec<Mailbox> {
    let mut bytes = raw.replace("=?", ENCODED_WORD_GUARD).into_bytes();
    bytes.extend_from_slice(b"\r\n");
    let HeaderValue::Address(list) = MessageStream::new(&bytes).parse_address() else {
        return Vec::new();
    };
    let unguard = |s: &str| s.replace(ENCODED_WORD_GUARD, "=?");
    list.iter()
        .map(|addr| Mailbox {
            name: addr.name().map(|n| {
                let written = unguard(n);
                if keep_encoded || !written.contains("=?") {
                    written
                } else {
                    decode_unstructured(&written)
                }
            }),
            address: addr.address().map(unguard),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_name(raw: &str) -> Option<String> {
        mailboxes(raw, false)
            .into_iter()
            .next()
            .and_then(|m| m.name)
    }

    #[test]
    fn names_in_charsets_clients_read_are_shown_as_they_read_them() {
        let hz = "=?hz-gb-2312?q?CASINO_Pharmacy_Deals?= <bob@example.org>";
        assert_eq!(first_name(hz).as_deref(), Some("CASINO Pharmacy Deals"));
        // "Pharmacy" in UTF-32LE with its byte-order mark.
        let utf32 = "=?utf-32?B?//4AAFAAAABoAAAAYQAAAHIAAABtAAAAYQAAAGMAAAB5AAAA?= <a@b.example>";
        assert_eq!(first_name(utf32).as_deref(), Some("Pharmacy"));
        let quoted = "\"=?utf-8?q?Cheap?= pills\" <a@b.example>";
        assert_eq!(first_name(quoted).as_deref(), Some("Cheap pills"));
    }

    #[test]
    fn names_as_written_keep_their_encoded_words() {
        let raw = "=?utf-8?q?Cheap?= <a@b.example>, c@d.example";
        let kept = mailboxes(raw, true);
        assert_eq!(kept[0].name.as_deref(), Some("=?utf-8?q?Cheap?="));
        assert_eq!(kept[0].address.as_deref(), Some("a@b.example"));
        assert_eq!(kept[1].address.as_deref(), Some("c@d.example"));
    }
}
