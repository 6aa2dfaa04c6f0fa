//! DDE fields in a Word 97–2003 document: the `WordDocument` stream keeps the text with
//! each field's instruction right after a field-begin character (0x13), in 8-bit or
//! UTF-16LE text. Word shows the result, not the instruction, so `DDEAUTO` runs unseen.

/// The field-begin character.
const FIELD_BEGIN: u8 = 0x13;
/// Characters read after a field-begin: spaces, then the command.
const LOOK_AHEAD: usize = 32;

/// The word document stream's identifier (`wIdent` of its FIB).
const WORD_IDENT: u16 = 0xA5EC;
/// `fEncrypted` in the FIB's flags (the 16 bits at offset 10).
const ENCRYPTED: u16 = 0x0100;

/// Whether the document is encrypted (its FIB says so): its text, fields included, is
/// then unreadable here.
pub(super) fn is_encrypted(stream: &[u8]) -> bool {
    let word = |at: usize| {
        stream
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    word(0) == Some(WORD_IDENT) && word(10).is_some_and(|flags| flags & ENCRYPTED != 0)
}

/// Whether a field's instruction is `DDE` or `DDEAUTO` (any case).
pub(super) fn has_dde_field(stream: &[u8]) -> bool {
    memchr::memchr_iter(FIELD_BEGIN, stream).any(|at| {
        let rest = stream.get(at + 1..).unwrap_or_default();
        // UTF-16LE: the begin character's high byte is zero, and every other byte after it.
        let wide = rest.first() == Some(&0);
        let chars: Vec<u8> = if wide {
            rest.get(1..)
                .unwrap_or_default()
                .chunks_exact(2)
                .take(LOOK_AHEAD)
                .map(|c| if c[1] == 0 { c[0] } else { 0xFF })
                .collect()
        } else {
            rest.iter().take(LOOK_AHEAD).copied().collect()
        };
        let text: Vec<u8> = chars.into_iter().skip_while(|&c| c == b' ').collect();
        let command: Vec<u8> = text
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(u8::to_ascii_uppercase)
            .collect();
        command == b"DDE" || command == b"DDEAUTO"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dde_fields_are_found_in_8_bit_and_utf_16_text() {
        assert!(has_dde_field(
            b"text \x13DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \x14result\x15"
        ));
        assert!(has_dde_field(b"\x13 ddeauto x \x14"));
        let wide: Vec<u8> = "\u{13} DDE c:\\x.exe"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(has_dde_field(&wide));
        assert!(!has_dde_field(b"\x13 PAGE \x14 3\x15 DDE is a protocol"));
        assert!(!has_dde_field(b"\x13 DDEX \x14"));
        assert!(!has_dde_field(b"\x13"));
    }

    #[test]
    fn an_encrypted_document_is_told_by_its_fib() {
        let mut fib = vec![0u8; 32];
        fib[..2].copy_from_slice(&WORD_IDENT.to_le_bytes());
        assert!(!is_encrypted(&fib));
        fib[10..12].copy_from_slice(&0x0300u16.to_le_bytes());
        assert!(is_encrypted(&fib));
        assert!(!is_encrypted(b"\xec\xa5"));
    }
}
